//! Request facts in, action out (SPEC §3). The nginx glue gathers the facts,
//! calls these functions and applies what they return; it decides nothing.

use crate::config::OnFailure;
use crate::error::Rejection;

/// What the `Authorization` header carries.
#[derive(Debug, PartialEq, Eq)]
pub enum Credential<'a> {
    /// No header, or a scheme other than Bearer (e.g. Basic).
    None,
    /// `Bearer <token>`; the token may be unusable (checked by validation).
    Bearer(&'a str),
    /// `Bearer` with nothing usable after it.
    MalformedBearer,
}

/// The `Authorization` header's bearer token before its syntax is checked:
/// the scheme and the whitespace only. A token found in the validated-token
/// cache skips the token68 scan (it passed it when it was first validated).
#[derive(Debug, PartialEq, Eq)]
pub enum Candidate<'a> {
    None,
    Malformed,
    Token(&'a [u8]),
}

/// RFC 6750 §2.1: `Bearer` (any case), one or more spaces, then the token.
pub fn bearer_candidate(authorization: Option<&[u8]>) -> Candidate<'_> {
    scheme_candidate(authorization, b"bearer")
}

/// The token of `Authorization: DPoP <token>` (RFC 9449 §7.1), like
/// `bearer_candidate`.
pub fn dpop_candidate(authorization: Option<&[u8]>) -> Candidate<'_> {
    scheme_candidate(authorization, b"dpop")
}

fn scheme_candidate<'a>(authorization: Option<&'a [u8]>, scheme: &[u8]) -> Candidate<'a> {
    let Some(h) = authorization else {
        return Candidate::None;
    };
    let h = trim_ows(h);
    let n = scheme.len();
    if h.len() < n || !h[..n].eq_ignore_ascii_case(scheme) {
        return Candidate::None;
    }
    let rest = &h[n..];
    if rest.is_empty() {
        return Candidate::Malformed;
    }
    if rest[0] != b' ' && rest[0] != b'\t' {
        // e.g. "BearerXYZ": another scheme name
        return Candidate::None;
    }
    let token = trim_ows(rest);
    if token.is_empty() {
        return Candidate::Malformed;
    }
    Candidate::Token(token)
}

/// The token68 syntax check (RFC 6750 §2.1) of a bearer candidate.
pub fn token68(token: &[u8]) -> Option<&str> {
    // the body, then any number of trailing `=`
    let body = &token[..token.iter().rposition(|&b| b != b'=').map_or(0, |i| i + 1)];
    if body.is_empty() || !crate::jwt::all_bytes(body, token68_byte) {
        return None;
    }
    // token68 is ASCII
    std::str::from_utf8(token).ok()
}

/// RFC 6750 §2.1: `Bearer` (any case), one or more spaces, a token68.
pub fn extract_bearer(authorization: Option<&[u8]>) -> Credential<'_> {
    match bearer_candidate(authorization) {
        Candidate::None => Credential::None,
        Candidate::Malformed => Credential::MalformedBearer,
        Candidate::Token(t) => token68(t).map_or(Credential::MalformedBearer, Credential::Bearer),
    }
}

/// RFC 6750 token68 characters (before any trailing `=`), without branches
/// or tables so that the scan compiles to vector code.
#[inline(always)]
fn token68_byte(c: u8) -> bool {
    ((c | 0x20).wrapping_sub(b'a') < 26)
        | (c.wrapping_sub(b'0') < 10)
        | (c == b'-')
        | (c == b'.')
        | (c == b'_')
        | (c == b'~')
        | (c == b'+')
        | (c == b'/')
}

fn trim_ows(mut b: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = b {
        b = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = b {
        b = rest;
    }
    b
}

/// Facts about a request that decide what an unauthenticated one gets.
#[derive(Debug, Default, Clone, Copy)]
pub struct RequestFacts<'a> {
    pub method: &'a str,
    pub accept: Option<&'a str>,
    pub sec_fetch_mode: Option<&'a str>,
    pub x_requested_with: bool,
    pub access_control_request_method: bool,
}

impl RequestFacts<'_> {
    /// A browser navigation (SPEC §3, `auto`).
    pub fn is_navigation(&self) -> bool {
        if self.method != "GET" && self.method != "HEAD" {
            return false;
        }
        if self.x_requested_with {
            return false;
        }
        match self.sec_fetch_mode {
            Some(m) => m.eq_ignore_ascii_case("navigate"),
            None => self
                .accept
                .is_some_and(|a| a.to_ascii_lowercase().contains("text/html")),
        }
    }

    /// A CORS preflight request.
    pub fn is_preflight(&self) -> bool {
        self.method == "OPTIONS" && self.access_control_request_method
    }
}

/// What the access phase does with a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Authenticated: identity variables are set; continue.
    Allow,
    /// Not authenticated, but let through with empty identity.
    Pass,
    /// Start the browser login.
    Redirect,
    /// `401` with this `WWW-Authenticate` value.
    Unauthorized { challenge: String },
    /// `503` with `Retry-After`.
    Unavailable { retry_after: u64 },
}

/// The `Bearer` challenge (RFC 6750 §3).
pub fn challenge(realm: &str, error: Option<Rejection>) -> String {
    let mut s = format!("Bearer realm=\"{}\"", quote(realm));
    if let Some(e) = error {
        s.push_str(", error=\"invalid_token\", error_description=\"");
        s.push_str(e.description());
        s.push('"');
    }
    s
}

/// RFC 6750 §3.1 `insufficient_scope`, naming the scopes required.
pub fn insufficient_scope(realm: &str, scope: &str) -> String {
    format!(
        "Bearer realm=\"{}\", error=\"insufficient_scope\", scope=\"{}\"",
        quote(realm),
        quote(scope)
    )
}

pub fn quote(v: &str) -> String {
    v.chars()
        .filter(|c| !c.is_control())
        .flat_map(|c| match c {
            '"' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect()
}

/// No credentials at all: the location's `oauth2_on_failure` decides.
/// `browser_login` says whether the redirect to the provider is possible.
pub fn unauthenticated(
    on_failure: OnFailure,
    facts: &RequestFacts<'_>,
    browser_login: bool,
    realm: &str,
) -> Action {
    let deny = || Action::Unauthorized {
        challenge: challenge(realm, None),
    };
    match on_failure {
        OnFailure::Pass => Action::Pass,
        OnFailure::Unauthorized | OnFailure::Auto if facts.is_preflight() => Action::Pass,
        OnFailure::Unauthorized => deny(),
        OnFailure::Redirect if browser_login => Action::Redirect,
        OnFailure::Auto if browser_login && facts.is_navigation() => Action::Redirect,
        OnFailure::Redirect | OnFailure::Auto => deny(),
    }
}

/// A bearer token was presented and rejected: never a redirect, whatever
/// `oauth2_on_failure` says (SPEC §3).
pub fn rejected_bearer(why: Rejection, realm: &str, retry_after: u64) -> Action {
    match why {
        Rejection::ProviderUnavailable => Action::Unavailable { retry_after },
        Rejection::MissingToken => Action::Unauthorized {
            challenge: challenge(realm, None),
        },
        other => Action::Unauthorized {
            challenge: challenge(realm, Some(other)),
        },
    }
}

/// What a token signed with an unknown `kid` gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownKid {
    /// A refetch of the key set was asked for: wait for it, then decide again.
    WaitForRefetch,
    /// The refetch this request waited for failed: nothing can decide (`503`).
    Unavailable,
    /// The key set is fresh (or was just refetched) and has no such key (`401`).
    Reject,
}

/// Refetch or wait or refuse, for a token whose `kid` the keys do not have.
/// `refetched`: this request already waited for a refetch; `last_fetch_ok`:
/// the provider's last fetch succeeded; `ask_refetch` asks for one (false
/// when throttled: at most one per worker per 30 s).
pub fn unknown_kid(
    refetched: bool,
    last_fetch_ok: bool,
    ask_refetch: impl FnOnce() -> bool,
) -> UnknownKid {
    if refetched {
        return if last_fetch_ok {
            UnknownKid::Reject
        } else {
            UnknownKid::Unavailable
        };
    }
    if ask_refetch() {
        UnknownKid::WaitForRefetch
    } else {
        UnknownKid::Reject
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_extraction() {
        assert_eq!(extract_bearer(None), Credential::None);
        // the candidate is the trimmed token, its syntax checked apart
        assert_eq!(
            bearer_candidate(Some(b" Bearer  a b ")),
            Candidate::Token(b"a b")
        );
        assert_eq!(token68(b"a b"), None);
        assert_eq!(token68(b"ab=="), Some("ab=="));
        assert_eq!(token68(b"=="), None);
        assert_eq!(token68(b""), None);
        assert_eq!(token68(b"a=b="), None, "= only at the end");
        // the branch-free scan agrees with RFC 6750's grammar on every byte,
        // in every position of a block (and across the 64-byte blocks)
        for c in 0..=255u8 {
            let rfc = c.is_ascii_alphanumeric() || b"-._~+/".contains(&c);
            assert_eq!(token68_byte(c), rfc, "byte {c:#04x}");
            for at in [0, 31, 63, 64, 100] {
                let mut t = vec![b'a'; 101];
                t[at] = c;
                let ok = rfc || (c == b'=' && at == 100);
                assert_eq!(token68(&t).is_some(), ok, "byte {c:#04x} at {at}");
            }
        }
        assert_eq!(bearer_candidate(Some(b"Bearer \t")), Candidate::Malformed);
        assert_eq!(
            extract_bearer(Some(b"Bearer abc.def-_~+/=")),
            Credential::Bearer("abc.def-_~+/=")
        );
        assert_eq!(
            extract_bearer(Some(b"bearer abc")),
            Credential::Bearer("abc")
        );
        assert_eq!(
            extract_bearer(Some(b"BEARER    abc  ")),
            Credential::Bearer("abc")
        );
        assert_eq!(
            extract_bearer(Some(b"Basic dXNlcjpwYXNz")),
            Credential::None
        );
        assert_eq!(extract_bearer(Some(b"BearerX abc")), Credential::None);
        assert_eq!(extract_bearer(Some(b"Bearer")), Credential::MalformedBearer);
        assert_eq!(
            extract_bearer(Some(b"Bearer   ")),
            Credential::MalformedBearer
        );
        assert_eq!(
            extract_bearer(Some(b"Bearer a b")),
            Credential::MalformedBearer
        );
        assert_eq!(
            extract_bearer(Some(b"Bearer a=b")),
            Credential::MalformedBearer
        );
        assert_eq!(
            extract_bearer(Some(b"Bearer \xff\xfe")),
            Credential::MalformedBearer
        );
        assert_eq!(
            extract_bearer(Some(b"Bearer a\r\nX: y")),
            Credential::MalformedBearer
        );
    }

    fn facts<'a>(
        method: &'a str,
        accept: Option<&'a str>,
        mode: Option<&'a str>,
    ) -> RequestFacts<'a> {
        RequestFacts {
            method,
            accept,
            sec_fetch_mode: mode,
            ..Default::default()
        }
    }

    #[test]
    fn navigation_detection() {
        assert!(facts("GET", Some("text/html,application/xhtml+xml"), None).is_navigation());
        assert!(facts("GET", Some("*/*"), Some("navigate")).is_navigation());
        assert!(facts("HEAD", Some("text/html"), None).is_navigation());
        assert!(!facts("GET", Some("text/html"), Some("cors")).is_navigation());
        assert!(!facts("GET", Some("application/json"), None).is_navigation());
        assert!(!facts("GET", Some("*/*"), None).is_navigation()); // curl
        assert!(!facts("GET", None, None).is_navigation());
        assert!(!facts("POST", Some("text/html"), Some("navigate")).is_navigation());
        let mut xhr = facts("GET", Some("text/html"), None);
        xhr.x_requested_with = true;
        assert!(!xhr.is_navigation());
    }

    #[test]
    fn unauthenticated_actions() {
        let nav = facts("GET", Some("text/html"), None);
        let api = facts("GET", Some("application/json"), None);
        let deny = Action::Unauthorized {
            challenge: "Bearer realm=\"r\"".into(),
        };
        assert_eq!(
            unauthenticated(OnFailure::Unauthorized, &nav, true, "r"),
            deny
        );
        assert_eq!(
            unauthenticated(OnFailure::Pass, &api, true, "r"),
            Action::Pass
        );
        assert_eq!(
            unauthenticated(OnFailure::Redirect, &api, true, "r"),
            Action::Redirect
        );
        assert_eq!(
            unauthenticated(OnFailure::Auto, &nav, true, "r"),
            Action::Redirect
        );
        assert_eq!(unauthenticated(OnFailure::Auto, &api, true, "r"), deny);
        // no browser login configured: never a redirect
        assert_eq!(unauthenticated(OnFailure::Auto, &nav, false, "r"), deny);
        assert_eq!(unauthenticated(OnFailure::Redirect, &nav, false, "r"), deny);
        let pre = RequestFacts {
            method: "OPTIONS",
            access_control_request_method: true,
            ..Default::default()
        };
        assert_eq!(
            unauthenticated(OnFailure::Unauthorized, &pre, true, "r"),
            Action::Pass
        );
        assert_eq!(
            unauthenticated(OnFailure::Auto, &pre, true, "r"),
            Action::Pass
        );
        let opt = RequestFacts {
            method: "OPTIONS",
            ..Default::default()
        };
        assert_eq!(
            unauthenticated(OnFailure::Unauthorized, &opt, true, "r"),
            deny
        );
    }

    #[test]
    fn rejected_bearer_never_redirects() {
        for why in [
            Rejection::Expired,
            Rejection::Malformed,
            Rejection::BadSignature,
        ] {
            match rejected_bearer(why, "api", 5) {
                Action::Unauthorized { challenge } => {
                    assert!(challenge.starts_with("Bearer realm=\"api\", error=\"invalid_token\""));
                    assert!(challenge.contains(why.description()));
                }
                a => panic!("{a:?}"),
            }
        }
        assert_eq!(
            rejected_bearer(Rejection::ProviderUnavailable, "api", 5),
            Action::Unavailable { retry_after: 5 }
        );
    }

    #[test]
    fn insufficient_scope_challenge() {
        assert_eq!(
            insufficient_scope("api", "read write"),
            "Bearer realm=\"api\", error=\"insufficient_scope\", scope=\"read write\""
        );
    }

    #[test]
    fn realm_is_quoted() {
        assert_eq!(
            challenge("a\"b\\c\r\n", None),
            "Bearer realm=\"a\\\"b\\\\c\""
        );
    }

    #[test]
    fn unknown_kid_refetches_once_then_decides() {
        assert_eq!(
            unknown_kid(false, true, || true),
            UnknownKid::WaitForRefetch
        );
        assert_eq!(
            unknown_kid(false, true, || false),
            UnknownKid::Reject,
            "throttled"
        );
        let mut asked = false;
        assert_eq!(
            unknown_kid(true, true, || {
                asked = true;
                true
            }),
            UnknownKid::Reject
        );
        assert!(!asked, "one refetch per request");
        assert_eq!(
            unknown_kid(true, false, || true),
            UnknownKid::Unavailable,
            "the refetch failed"
        );
    }
}
