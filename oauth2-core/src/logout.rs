//! Logout that reaches every nginx (SPEC §9): the back-channel logout token
//! (OpenID Connect Back-Channel Logout 1.0 §2.4, checked as §2.6 says), the
//! front-channel request (Front-Channel Logout 1.0 §2), and the hashes the
//! session store finds sessions by.

use aws_lc_rs::digest;
use serde_json::Value;

use crate::jwt::{self, Policy};
use crate::keys::KeySet;
use crate::Rejection;

/// The `events` member a logout token must carry.
pub const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// A logout token that passed every check: the sessions it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutToken {
    pub sid: Option<String>,
    pub sub: Option<String>,
    pub jti: String,
    pub iat: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogoutError {
    #[error("the logout token is not valid: {}", .0.code())]
    Token(Rejection),
    #[error("the logout token has no backchannel-logout event")]
    NoEvent,
    #[error("the logout token names neither sid nor sub")]
    NoSubject,
    #[error("the logout token carries a nonce")]
    Nonce,
    #[error("the logout token has no jti")]
    NoJti,
    #[error("the logout token's iat is missing or outside the allowed clock skew")]
    Iat,
    #[error("the logout token was used before")]
    Replayed,
}

/// `typ` of a logout token: `logout+jwt` (§2.4, explicit typing) or JWT.
fn logout_type(t: &str) -> bool {
    t.eq_ignore_ascii_case("logout+jwt") || t.eq_ignore_ascii_case("jwt")
}

/// §2.6: signed by the provider's keys with an allowed algorithm, `iss`
/// exactly the provider's, `aud` holding the client id, `iat` within the
/// clock skew, `exp` (when there) not passed, a `jti`, the event, `sid` or
/// `sub`, and no `nonce`. The `jti`'s single use is the caller's (the
/// store).
pub fn validate_logout_token(
    token: &str,
    sets: &[&KeySet],
    issuer: &str,
    client_id: &str,
    algorithms: &[jsonwebtoken::Algorithm],
    skew: u64,
    now: u64,
) -> Result<LogoutToken, LogoutError> {
    let policy = Policy {
        issuer: Some(issuer.to_string()),
        audiences: vec![client_id.to_string()],
        algorithms: algorithms.to_vec(),
        skew_secs: skew,
    };
    let parsed = jwt::parse_typed(token, &policy, logout_type).map_err(LogoutError::Token)?;
    jwt::verify(&parsed, sets).map_err(LogoutError::Token)?;
    let c = jwt::payload_map(&parsed).map_err(LogoutError::Token)?;
    match c.get("iss") {
        Some(Value::String(i)) if i == issuer => {}
        _ => return Err(LogoutError::Token(Rejection::WrongIssuer)),
    }
    let aud_ok = match c.get("aud") {
        Some(Value::String(a)) => a == client_id,
        Some(Value::Array(v)) => v.iter().any(|a| a.as_str() == Some(client_id)),
        _ => false,
    };
    if !aud_ok {
        return Err(LogoutError::Token(Rejection::WrongAudience));
    }
    let iat = c
        .get("iat")
        .and_then(Value::as_u64)
        .ok_or(LogoutError::Iat)?;
    if iat > now.saturating_add(skew) || now > iat.saturating_add(skew) {
        return Err(LogoutError::Iat);
    }
    match c.get("exp") {
        None => {}
        Some(v) => match v.as_u64() {
            Some(exp) if now < exp.saturating_add(skew) => {}
            Some(_) => return Err(LogoutError::Token(Rejection::Expired)),
            None => return Err(LogoutError::Token(Rejection::BadTimeClaim)),
        },
    }
    if c.contains_key("nonce") {
        return Err(LogoutError::Nonce);
    }
    let event_ok = matches!(
        c.get("events"),
        Some(Value::Object(e)) if matches!(e.get(EVENT), Some(Value::Object(_)))
    );
    if !event_ok {
        return Err(LogoutError::NoEvent);
    }
    let jti = match c.get("jti") {
        Some(Value::String(j)) if !j.is_empty() => j.clone(),
        _ => return Err(LogoutError::NoJti),
    };
    let text = |n: &str| match c.get(n) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    };
    let (sid, sub) = (text("sid"), text("sub"));
    if sid.is_none() && sub.is_none() {
        return Err(LogoutError::NoSubject);
    }
    Ok(LogoutToken { sid, sub, jti, iat })
}

fn hash(parts: &[&str]) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for p in parts {
        // length-prefixed: no two lists of parts hash alike
        ctx.update(&(p.len() as u64).to_le_bytes());
        ctx.update(p.as_bytes());
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// The 8-byte tag a store finds a provider's session by: of its `sid`
/// (`kind` "sid") or its subject (`kind` "sub").
pub fn tag(kind: &str, issuer: &str, value: &str) -> [u8; 8] {
    let mut t = [0u8; 8];
    t.copy_from_slice(&hash(&[kind, issuer, value])[..8]);
    t
}

/// The key of a single-use value in a store (login states, logout `jti`s,
/// DPoP proofs): a hash, so the store never holds the value itself.
pub fn once_key(kind: &str, scope: &str, value: &str) -> [u8; 16] {
    let mut k = [0u8; 16];
    k.copy_from_slice(&hash(&[kind, scope, value])[..16]);
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeySource;
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    use serde_json::json;

    const RSA_PRIV: &str = include_str!("../testdata/rsa_priv.pem");
    const RSA_JWKS: &str = include_str!("../testdata/rsa_jwks.json");
    const NOW: u64 = 1_800_000_000;
    const ISS: &str = "https://op.test";

    fn good() -> Value {
        json!({"iss": ISS, "aud": "nginx", "iat": NOW, "exp": NOW + 120, "jti": "j1",
               "sid": "s1", "sub": "alice", "events": {EVENT: {}}})
    }

    fn sign(c: &Value, typ: &str) -> String {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some("test-rsa".into());
        h.typ = Some(typ.into());
        encode(
            &h,
            c,
            &EncodingKey::from_rsa_pem(RSA_PRIV.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    fn check(t: &str) -> Result<LogoutToken, LogoutError> {
        let keys = KeySet::parse(RSA_JWKS.as_bytes(), KeySource::Network).unwrap();
        validate_logout_token(t, &[&keys], ISS, "nginx", &[Algorithm::RS256], 60, NOW)
    }

    fn with(f: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
        let mut v = good();
        f(v.as_object_mut().unwrap());
        v
    }

    #[test]
    fn a_good_token() {
        let t = check(&sign(&good(), "logout+jwt")).unwrap();
        assert_eq!(t.sid.as_deref(), Some("s1"));
        assert_eq!(t.sub.as_deref(), Some("alice"));
        assert_eq!(t.jti, "j1");
        assert!(check(&sign(&good(), "JWT")).is_ok());
        // sub alone, sid alone
        assert!(check(&sign(&with(|m| drop(m.remove("sid"))), "logout+jwt")).is_ok());
        assert!(check(&sign(&with(|m| drop(m.remove("sub"))), "logout+jwt")).is_ok());
        // no exp: older providers
        assert!(check(&sign(&with(|m| drop(m.remove("exp"))), "logout+jwt")).is_ok());
    }

    #[test]
    fn every_check_of_section_2_6() {
        use LogoutError::*;
        let bad = |v: Value| check(&sign(&v, "logout+jwt")).unwrap_err();
        assert_eq!(
            check(&sign(&good(), "at+jwt")).unwrap_err(),
            Token(Rejection::BadType)
        );
        assert_eq!(
            bad(with(|m| drop(
                m.insert("iss".into(), json!("https://op.test/"))
            ))),
            Token(Rejection::WrongIssuer)
        );
        assert_eq!(
            bad(with(|m| drop(m.insert("aud".into(), json!(["other"]))))),
            Token(Rejection::WrongAudience)
        );
        assert_eq!(bad(with(|m| drop(m.remove("iat")))), Iat);
        assert_eq!(
            bad(with(|m| drop(m.insert("iat".into(), json!(NOW - 61))))),
            Iat
        );
        assert_eq!(
            bad(with(|m| drop(m.insert("iat".into(), json!(NOW + 61))))),
            Iat
        );
        assert_eq!(
            bad(with(|m| drop(m.insert("exp".into(), json!(NOW - 61))))),
            Token(Rejection::Expired)
        );
        assert_eq!(
            bad(with(|m| drop(m.insert("nonce".into(), json!("n"))))),
            Nonce
        );
        assert_eq!(bad(with(|m| drop(m.remove("events")))), NoEvent);
        assert_eq!(
            bad(with(|m| drop(
                m.insert("events".into(), json!({EVENT: "x"}))
            ))),
            NoEvent
        );
        assert_eq!(
            bad(with(|m| drop(m.insert(
                "events".into(),
                json!({"http://schemas.openid.net/event/other": {}})
            )))),
            NoEvent
        );
        assert_eq!(bad(with(|m| drop(m.remove("jti")))), NoJti);
        assert_eq!(
            bad(with(|m| {
                m.remove("sid");
                m.remove("sub");
            })),
            NoSubject
        );
        // a signature by another key, and alg none
        let t = sign(&good(), "logout+jwt");
        let (input, _) = t.rsplit_once('.').unwrap();
        assert_eq!(
            check(&format!("{input}.AAAA")).unwrap_err(),
            Token(Rejection::BadSignature)
        );
        let none = format!(
            "{}.{}.",
            base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                r#"{"alg":"none"}"#
            ),
            input.split('.').nth(1).unwrap()
        );
        assert_eq!(check(&none).unwrap_err(), Token(Rejection::BadAlgorithm));
    }

    #[test]
    fn tags_and_keys() {
        assert_eq!(tag("sid", ISS, "s1"), tag("sid", ISS, "s1"));
        assert_ne!(tag("sid", ISS, "s1"), tag("sub", ISS, "s1"));
        assert_ne!(tag("sid", ISS, "s1"), tag("sid", "https://other", "s1"));
        // no ambiguity from where one part ends
        assert_ne!(once_key("a", "bc", "d"), once_key("a", "b", "cd"));
    }
}
