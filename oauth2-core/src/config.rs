//! Typed directive values and their parsing. Every parser returns a message
//! that the glue prints as `[emerg] oauth2_xxx: <message>`-style errors.

use std::time::Duration;

use jsonwebtoken::Algorithm;

/// Parse an nginx time value: `30`, `30s`, `500ms`, `5m`, `1h`, `1d`, or a
/// combination such as `1h30m`. A bare number is seconds, as in nginx.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid time value \"{s}\"");
    if s.is_empty() {
        return Err(bad());
    }
    let b = s.as_bytes();
    let mut i = 0;
    let mut total_ms: u128 = 0;
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return Err(bad());
        }
        let n: u128 = s[start..i].parse().map_err(|_| bad())?;
        let unit_start = i;
        while i < b.len() && b[i].is_ascii_alphabetic() {
            i += 1;
        }
        let mult: u128 = match &s[unit_start..i] {
            "" | "s" => 1000,
            "ms" => 1,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            _ => return Err(bad()),
        };
        total_ms = total_ms
            .checked_add(n.checked_mul(mult).ok_or_else(bad)?)
            .ok_or_else(bad)?;
        if total_ms > u64::MAX as u128 / 2 {
            return Err(bad());
        }
    }
    Ok(Duration::from_millis(total_ms as u64))
}

/// Parse an nginx size: `1000`, `64k`, `10m`, `1g`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || format!("invalid size \"{s}\"");
    let (num, mult) = match s.as_bytes().last() {
        Some(b'k' | b'K') => (&s[..s.len() - 1], 1024u64),
        Some(b'm' | b'M') => (&s[..s.len() - 1], 1024 * 1024),
        Some(b'g' | b'G') => (&s[..s.len() - 1], 1024 * 1024 * 1024),
        Some(_) => (s, 1),
        None => return Err(bad()),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(bad)
}

/// An absolute `http` or `https` URL with a host, no fragment, no user info.
pub fn parse_http_url(s: &str) -> Result<url::Url, String> {
    let u = url::Url::parse(s).map_err(|e| format!("invalid URL \"{s}\": {e}"))?;
    if u.scheme() != "http" && u.scheme() != "https" {
        return Err(format!(
            "invalid URL \"{s}\": the scheme must be http or https"
        ));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(format!("invalid URL \"{s}\": no host"));
    }
    if u.fragment().is_some() {
        return Err(format!("invalid URL \"{s}\": a fragment is not allowed"));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(format!(
            "invalid URL \"{s}\": credentials in the URL are not allowed"
        ));
    }
    Ok(u)
}

/// A URI given as a path on the request's origin (`/…`, not `//…`) or as an
/// absolute http(s) URL (`oauth2_redirect_uri`, `oauth2_post_logout_redirect_uri`).
pub fn parse_path_or_url(s: &str) -> Result<(), String> {
    if !s.starts_with('/') {
        return parse_http_url(s).map(|_| ());
    }
    if s.starts_with("//") || s.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(format!("invalid URI \"{s}\""));
    }
    Ok(())
}

/// Scope values (RFC 6749 §3.3: printable ASCII except space, `"` and `\`).
pub fn check_scopes(v: &[&str]) -> Result<(), String> {
    match v.iter().find(|s| {
        s.is_empty()
            || s.bytes()
                .any(|b| b <= b' ' || b > b'~' || b == b'"' || b == b'\\')
    }) {
        Some(bad) => Err(format!("invalid scope \"{bad}\"")),
        None => Ok(()),
    }
}

/// The discovery document URL of an issuer (OpenID Connect Discovery 1.0 §4).
pub fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// `oauth2_dpop off | optional | required` (RFC 9449).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum DpopMode {
    #[default]
    Off,
    Optional,
    Required,
}

impl DpopMode {
    pub fn parse(s: &str) -> Result<DpopMode, String> {
        match s {
            "off" => Ok(DpopMode::Off),
            "optional" => Ok(DpopMode::Optional),
            "required" => Ok(DpopMode::Required),
            _ => Err(format!(
                "invalid value \"{s}\", it must be \"off\", \"optional\" or \"required\""
            )),
        }
    }
}

pub fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!(
            "invalid value \"{s}\", it must be \"on\" or \"off\""
        )),
    }
}

/// What an unauthenticated request gets (SPEC §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    Redirect,
    Unauthorized,
    Auto,
    Pass,
}

impl OnFailure {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "redirect" => Ok(OnFailure::Redirect),
            "401" => Ok(OnFailure::Unauthorized),
            "auto" => Ok(OnFailure::Auto),
            "pass" => Ok(OnFailure::Pass),
            _ => Err(format!(
                "invalid value \"{s}\", it must be \"redirect\", \"401\", \"auto\" or \"pass\""
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenValidation {
    Jwt,
    Introspection,
    Auto,
}

impl TokenValidation {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "jwt" => Ok(TokenValidation::Jwt),
            "introspection" => Ok(TokenValidation::Introspection),
            "auto" => Ok(TokenValidation::Auto),
            _ => Err(format!(
                "invalid value \"{s}\", it must be \"jwt\", \"introspection\" or \"auto\""
            )),
        }
    }
}

/// The default `oauth2_algorithms` list (SPEC §2).
pub const DEFAULT_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Parse one JWS algorithm name. `none` is never accepted.
pub fn parse_algorithm(s: &str) -> Result<Algorithm, String> {
    let alg = match s {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        _ if s.eq_ignore_ascii_case("none") => {
            return Err("the \"none\" algorithm is never accepted".to_string())
        }
        _ => return Err(format!("unsupported algorithm \"{s}\"")),
    };
    Ok(alg)
}

pub fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("60").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86400));
        for bad in [
            "",
            "s",
            "10x",
            "-1",
            "1.5s",
            "10 s",
            "99999999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10m").unwrap(), 10 * 1024 * 1024);
        assert_eq!(parse_size("64k").unwrap(), 65536);
        assert_eq!(parse_size("100").unwrap(), 100);
        for bad in ["", "k", "1.5m", "-1", "10x"] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn urls() {
        assert!(parse_http_url("https://id.example.com/realms/x").is_ok());
        assert!(parse_http_url("http://127.0.0.1:9000").is_ok());
        for bad in [
            "ftp://x",
            "not a url",
            "https://u:p@x/",
            "https://x/#f",
            "/relative",
        ] {
            assert!(parse_http_url(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            discovery_url("https://a.example/"),
            "https://a.example/.well-known/openid-configuration"
        );
        assert_eq!(
            discovery_url("https://a.example/realms/x"),
            "https://a.example/realms/x/.well-known/openid-configuration"
        );
    }

    #[test]
    fn uris_and_scopes() {
        assert!(parse_path_or_url("/oauth2/callback").is_ok());
        assert!(parse_path_or_url("https://app.example/cb").is_ok());
        for bad in ["//evil/cb", "/a\r\nb", "ftp://x/", "cb", "/a b"] {
            assert!(parse_path_or_url(bad).is_err(), "{bad:?}");
        }
        assert!(check_scopes(&["openid", "api:read", "offline_access"]).is_ok());
        for bad in ["", "a b", "a\"b", "a\\b", "é"] {
            assert!(check_scopes(&["ok", bad]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn algorithms() {
        assert_eq!(parse_algorithm("RS256").unwrap(), Algorithm::RS256);
        assert_eq!(parse_algorithm("EdDSA").unwrap(), Algorithm::EdDSA);
        for none in ["none", "None", "NONE", "nOnE"] {
            assert!(parse_algorithm(none).unwrap_err().contains("never"));
        }
        assert!(parse_algorithm("rs256").is_err());
        assert!(parse_algorithm("ES512").is_err());
        assert!(!DEFAULT_ALGORITHMS.iter().any(|a| is_hmac(*a)));
    }

    #[test]
    fn enums() {
        assert_eq!(OnFailure::parse("401").unwrap(), OnFailure::Unauthorized);
        assert!(OnFailure::parse("403").is_err());
        assert_eq!(TokenValidation::parse("jwt").unwrap(), TokenValidation::Jwt);
        assert!(TokenValidation::parse("JWT").is_err());
        assert!(parse_on_off("on").unwrap());
        assert!(parse_on_off("yes").is_err());
    }
}
