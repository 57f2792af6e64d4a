//! The authorization code flow with PKCE (RFC 6749 §4.1, RFC 7636, OpenID
//! Connect Core §3.1): the authorization request, the token request, the
//! token response, and ID token validation.

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Rejection, TokenEndpointError};
use crate::jwt::{self, Claims, Policy};
use crate::keys::KeySet;
use crate::session::ct_eq;

/// The authorization endpoint URL with the request's parameters.
pub fn authorization_url(
    endpoint: &str,
    client_id: &str,
    redirect_uri: &str,
    scope: &str,
    state: &str,
    nonce: &str,
    code_challenge: &str,
) -> Result<String, String> {
    let mut u =
        url::Url::parse(endpoint).map_err(|e| format!("bad authorization_endpoint: {e}"))?;
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("scope", scope)
        .append_pair("state", state)
        .append_pair("nonce", nonce)
        .append_pair("code_challenge", code_challenge)
        .append_pair("code_challenge_method", "S256");
    Ok(u.into())
}

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    Basic,
    Post,
}

impl ClientAuth {
    /// `client_secret_basic` unless the provider lists only `client_secret_post`.
    pub fn choose(supported: &[String]) -> ClientAuth {
        let has = |m: &str| supported.iter().any(|s| s == m);
        if !has("client_secret_basic") && has("client_secret_post") {
            ClientAuth::Post
        } else {
            ClientAuth::Basic
        }
    }
}

/// RFC 6749 §2.3.1: the Basic credentials are the form-urlencoded id and secret.
pub fn basic_credentials(client_id: &str, secret: &str) -> String {
    use base64::Engine;
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let raw = format!("{}:{}", enc(client_id), enc(secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// The successful token response (RFC 6749 §5.1).
#[derive(Debug, Clone, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub token_type: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub id_token: Option<String>,
    /// The granted scope, when it differs from the requested one.
    #[serde(default)]
    pub scope: Option<String>,
}

/// Parse a token endpoint answer: the tokens, or the provider's error code.
pub fn parse_token_response(status: u16, body: &[u8]) -> Result<TokenResponse, TokenEndpointError> {
    if (200..300).contains(&status) {
        let t: TokenResponse =
            serde_json::from_slice(body).map_err(|e| TokenEndpointError::Invalid(e.to_string()))?;
        if let Some(tt) = &t.token_type {
            if !tt.eq_ignore_ascii_case("bearer") && !tt.eq_ignore_ascii_case("dpop") {
                return Err(TokenEndpointError::TokenType(crate::claims::sanitize(tt)));
            }
        }
        return Ok(t);
    }
    let code = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v.get("error")
                .and_then(|e| e.as_str())
                .map(crate::claims::sanitize)
        })
        .unwrap_or_else(|| "no error code".into());
    Err(TokenEndpointError::Refused { status, code })
}

/// Who the ID token must be for: the login's issuer, client and nonce, and
/// the client secret (the key of HS* ID tokens when `oauth2_algorithms` lists
/// them, OpenID Connect Core §10.1).
#[derive(Clone, Copy)]
pub struct IdTokenClient<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub nonce: &'a str,
    pub secret: Option<&'a str>,
}

/// OpenID Connect Core §3.1.3.7: signature, `iss`, `aud` contains the client
/// id, `azp` (when present, or when there are several audiences) is the
/// client id, `exp`, `iat`, and `nonce` equals the one sent.
pub fn validate_id_token(
    token: &str,
    sets: &[&KeySet],
    client: &IdTokenClient<'_>,
    algorithms: &[jsonwebtoken::Algorithm],
    skew_secs: u64,
    now: u64,
) -> Result<Claims, Rejection> {
    let IdTokenClient {
        issuer,
        client_id,
        nonce,
        secret,
    } = *client;
    // HS* ID tokens: the client secret is their key, only here
    let hmac = secret
        .filter(|_| algorithms.iter().any(|a| crate::config::is_hmac(*a)))
        .and_then(|s| KeySet::client_secret(s).ok());
    let mut all: Vec<&KeySet> = sets.to_vec();
    all.extend(hmac.as_ref());
    let sets = &all[..];
    let policy = Policy {
        issuer: Some(issuer.to_string()),
        audiences: vec![client_id.to_string()],
        algorithms: algorithms.to_vec(),
        skew_secs,
    };
    let v = jwt::validate(token, sets, &policy, now)?;
    let claims = v.claims;
    if !claims.contains_key("iat") {
        return Err(Rejection::BadTimeClaim);
    }
    let several = matches!(claims.get("aud"), Some(Value::Array(a)) if a.len() > 1);
    match claims.get("azp") {
        Some(Value::String(azp)) if azp == client_id => {}
        Some(_) => return Err(Rejection::WrongAudience),
        None if several => return Err(Rejection::WrongAudience),
        None => {}
    }
    match claims.get("nonce") {
        Some(Value::String(n)) if ct_eq(n.as_bytes(), nonce.as_bytes()) => {}
        _ => return Err(Rejection::BadNonce),
    }
    Ok(claims)
}

/// The `state`, `code` and `error` parameters of the callback, from its
/// query string. A parameter given twice makes the whole callback invalid.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CallbackParams {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub duplicate: bool,
}

pub fn parse_callback(query: &str) -> CallbackParams {
    let mut p = CallbackParams::default();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        let slot = match k.as_ref() {
            "code" => &mut p.code,
            "state" => &mut p.state,
            "error" => &mut p.error,
            _ => continue,
        };
        if slot.is_some() {
            p.duplicate = true;
        }
        *slot = Some(v.into_owned());
    }
    p
}

/// An error code from the provider, reduced to what RFC 6749 allows in
/// `error` (printable ASCII without `"` and `\`), and short.
pub fn clean_error_code(e: &str) -> String {
    e.chars()
        .filter(|c| matches!(*c as u32, 0x20..=0x7e) && *c != '"' && *c != '\\')
        .take(64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_url() {
        let u = authorization_url(
            "https://op.example/auth?x=1",
            "c",
            "https://app/cb",
            "openid email",
            "s",
            "n",
            "ch",
        )
        .unwrap();
        assert!(u.starts_with("https://op.example/auth?x=1&response_type=code&client_id=c"));
        assert!(u.contains("redirect_uri=https%3A%2F%2Fapp%2Fcb"));
        assert!(u.contains("scope=openid+email"));
        assert!(u.contains("code_challenge=ch&code_challenge_method=S256"));
    }

    #[test]
    fn client_auth_choice() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(ClientAuth::choose(&v(&[])), ClientAuth::Basic);
        assert_eq!(
            ClientAuth::choose(&v(&["client_secret_post"])),
            ClientAuth::Post
        );
        assert_eq!(
            ClientAuth::choose(&v(&["client_secret_post", "client_secret_basic"])),
            ClientAuth::Basic
        );
        use base64::Engine;
        let b = basic_credentials("a b", "p:w");
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&b["Basic ".len()..])
            .unwrap();
        assert_eq!(raw, b"a+b:p%3Aw");
        assert_eq!(basic_credentials("id", "secret"), "Basic aWQ6c2VjcmV0");
    }

    #[test]
    fn token_responses() {
        let ok = parse_token_response(
            200,
            br#"{"access_token":"a","token_type":"Bearer","expires_in":60,"id_token":"x.y.z"}"#,
        )
        .unwrap();
        assert_eq!(ok.access_token, "a");
        assert_eq!(ok.expires_in, Some(60));
        assert!(parse_token_response(200, b"not json").is_err());
        assert!(parse_token_response(200, br#"{"access_token":"a","token_type":"mac"}"#).is_err());
        let e = parse_token_response(400, br#"{"error":"invalid_grant"}"#).unwrap_err();
        assert_eq!(
            e,
            TokenEndpointError::Refused {
                status: 400,
                code: "invalid_grant".into()
            }
        );
        assert!(!e.transient());
        assert!(parse_token_response(500, b"<html>")
            .unwrap_err()
            .transient());
    }

    #[test]
    fn callback_params() {
        let p = parse_callback("code=abc&state=xyz&iss=http%3A%2F%2Fop");
        assert_eq!(p.code.as_deref(), Some("abc"));
        assert_eq!(p.state.as_deref(), Some("xyz"));
        assert!(!p.duplicate);
        assert!(parse_callback("state=a&state=b&code=c").duplicate);
        let e = parse_callback("error=access_denied&error_description=%3Cscript%3E");
        assert_eq!(e.error.as_deref(), Some("access_denied"));
        assert_eq!(clean_error_code("<b>\"x\"\r\n</b>"), "<b>x</b>");
    }

    #[test]
    fn userinfo_answers() {
        let ok = br#"{"sub":"alice","email":"alice@example.test"}"#;
        assert_eq!(
            userinfo_claims(200, ok, "alice").unwrap()["email"],
            "alice@example.test"
        );
        assert_eq!(
            userinfo_claims(200, ok, "bob").unwrap_err(),
            UserInfoError::Subject
        );
        assert_eq!(
            userinfo_claims(200, br#"{"email":"x"}"#, "alice").unwrap_err(),
            UserInfoError::Subject
        );
        assert_eq!(
            userinfo_claims(401, b"", "alice").unwrap_err(),
            UserInfoError::Status(401)
        );
        assert!(matches!(
            userinfo_claims(200, b"eyJ.a.b", "alice"),
            Err(UserInfoError::Invalid(_))
        ));
        assert!(matches!(
            userinfo_claims(200, b"[]", "alice"),
            Err(UserInfoError::Invalid(_))
        ));
    }

    #[test]
    fn hs256_id_tokens_are_verified_with_the_client_secret() {
        use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
        let secret = "nginx-hs-secret-0123456789abcdef0123456789abcdef";
        let claims = serde_json::json!({
            "iss": "https://op.test", "aud": "web", "sub": "alice", "nonce": "n1",
            "iat": 1_000, "exp": 2_000
        });
        let tok = |key: &str| {
            encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(key.as_bytes()),
            )
            .unwrap()
        };
        let who = IdTokenClient {
            issuer: "https://op.test",
            client_id: "web",
            nonce: "n1",
            secret: Some(secret),
        };
        let hs = [Algorithm::RS256, Algorithm::HS256];
        assert_eq!(
            validate_id_token(&tok(secret), &[], &who, &hs, 0, 1_500).unwrap()["sub"],
            "alice"
        );
        assert_eq!(
            validate_id_token(
                &tok("another-secret-another-secret-another"),
                &[],
                &who,
                &hs,
                0,
                1_500
            )
            .unwrap_err(),
            Rejection::BadSignature
        );
        // not listed in oauth2_algorithms: refused whatever the secret
        assert_eq!(
            validate_id_token(&tok(secret), &[], &who, &[Algorithm::RS256], 0, 1_500).unwrap_err(),
            Rejection::BadAlgorithm
        );
        // no secret: no key
        let no_secret = IdTokenClient {
            secret: None,
            ..who
        };
        assert!(validate_id_token(&tok(secret), &[], &no_secret, &hs, 0, 1_500).is_err());
    }
}

/// Why UserInfo gave no claims (OpenID Connect Core §5.3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserInfoError {
    #[error("the UserInfo endpoint answered {0}")]
    Status(u16),
    #[error("invalid UserInfo response: {0}")]
    Invalid(String),
    #[error("the UserInfo \"sub\" is not the ID token's (OpenID Connect Core §5.3.2)")]
    Subject,
}

/// The claims of a UserInfo answer, for the user the ID token names: a JSON
/// object whose `sub` equals the ID token's (a signed or encrypted answer is
/// not JSON and is refused).
pub fn userinfo_claims(
    status: u16,
    body: &[u8],
    id_sub: &str,
) -> Result<serde_json::Map<String, Value>, UserInfoError> {
    if !(200..300).contains(&status) {
        return Err(UserInfoError::Status(status));
    }
    let claims = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return Err(UserInfoError::Invalid("not a JSON object".into())),
        Err(e) => return Err(UserInfoError::Invalid(e.to_string())),
    };
    match claims.get("sub") {
        Some(Value::String(s)) if s == id_sub => Ok(claims),
        _ => Err(UserInfoError::Subject),
    }
}

/// Where a request is in the `oauth2_callback` (kept in its request ctx
/// while it waits).
#[derive(Debug)]
pub enum CallbackStep {
    /// Waiting for the provider metadata (the token endpoint); a session
    /// store already took the state (`State`) when `state_taken`.
    Metadata { state_taken: bool },
    /// Waiting for the token endpoint's answer.
    Token {
        login: crate::session::LoginState,
        job: crate::waits::JobId,
    },
    /// Waiting for a key refetch to verify the ID token.
    Keys {
        login: crate::session::LoginState,
        tokens: TokenResponse,
    },
    /// Waiting for UserInfo; the ID token is verified (its claims).
    UserInfo {
        login: crate::session::LoginState,
        tokens: TokenResponse,
        claims: Claims,
        job: crate::waits::JobId,
    },
    /// Waiting for a session store to take the login's state (single use
    /// across a fleet).
    State { job: crate::waits::JobId },
    /// Waiting for a session store to hold the new session; then back to
    /// `target`.
    Stored {
        job: crate::waits::JobId,
        target: String,
    },
}
