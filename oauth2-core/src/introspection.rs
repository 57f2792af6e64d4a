//! RFC 7662 token introspection: the answer, checked like a JWT's claims.

use serde_json::Value;

use crate::error::Rejection;
use crate::jwt::{Claims, Policy};

/// The introspection request form (the client authenticates as at the
/// token endpoint).
pub fn form(token: &str) -> Vec<(String, String)> {
    vec![
        ("token".into(), token.into()),
        ("token_type_hint".into(), "access_token".into()),
    ]
}

/// Check an introspection answer: `active`, then `exp`/`nbf` with the skew,
/// `iss` and `aud` when the answer names them.
pub fn check(
    status: u16,
    body: &[u8],
    policy: &Policy,
    now: u64,
) -> Result<(Claims, Option<u64>), IntrospectionError> {
    if !(200..300).contains(&status) {
        return Err(IntrospectionError::Provider(format!(
            "the introspection endpoint answered {status}"
        )));
    }
    let claims = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => m,
        _ => {
            return Err(IntrospectionError::Provider(
                "invalid introspection response".into(),
            ))
        }
    };
    if claims.get("active") != Some(&Value::Bool(true)) {
        return Err(IntrospectionError::Rejected(Rejection::Inactive));
    }
    let num = |n: &str| claims.get(n).and_then(Value::as_u64);
    let exp = num("exp");
    if let Some(exp) = exp {
        if now >= exp.saturating_add(policy.skew_secs) {
            return Err(IntrospectionError::Rejected(Rejection::Expired));
        }
    }
    if let Some(nbf) = num("nbf") {
        if nbf > now.saturating_add(policy.skew_secs) {
            return Err(IntrospectionError::Rejected(Rejection::NotYetValid));
        }
    }
    if let (Some(iss), Some(Value::String(t))) = (&policy.issuer, claims.get("iss")) {
        if t != iss {
            return Err(IntrospectionError::Rejected(Rejection::WrongIssuer));
        }
    }
    let aud_ok = match claims.get("aud") {
        None => true,
        Some(Value::String(a)) => policy.audiences.iter().any(|x| x == a),
        Some(Value::Array(v)) => v.iter().any(|a| {
            a.as_str()
                .is_some_and(|a| policy.audiences.iter().any(|x| x == a))
        }),
        Some(_) => false,
    };
    if !aud_ok {
        return Err(IntrospectionError::Rejected(Rejection::WrongAudience));
    }
    Ok((claims.into(), exp))
}

#[derive(Debug, PartialEq, Eq)]
pub enum IntrospectionError {
    /// The token is not acceptable.
    Rejected(Rejection),
    /// The provider's answer is unusable (treated as unavailable).
    Provider(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            issuer: Some("https://op".into()),
            audiences: vec!["api".into()],
            algorithms: vec![],
            skew_secs: 10,
        }
    }

    #[test]
    fn answers() {
        let p = policy();
        let ok =
            br#"{"active":true,"sub":"s","aud":"api","iss":"https://op","exp":200,"scope":"a b"}"#;
        let (c, exp) = check(200, ok, &p, 100).unwrap();
        assert_eq!(c["sub"], "s");
        assert_eq!(exp, Some(200));
        assert_eq!(
            check(200, br#"{"active":false}"#, &p, 100).unwrap_err(),
            IntrospectionError::Rejected(Rejection::Inactive)
        );
        assert_eq!(
            check(200, br#"{"active":"true"}"#, &p, 100).unwrap_err(),
            IntrospectionError::Rejected(Rejection::Inactive)
        );
        assert_eq!(
            check(200, ok, &p, 300).unwrap_err(),
            IntrospectionError::Rejected(Rejection::Expired)
        );
        assert_eq!(
            check(200, br#"{"active":true,"aud":"other"}"#, &p, 100).unwrap_err(),
            IntrospectionError::Rejected(Rejection::WrongAudience)
        );
        assert_eq!(
            check(200, br#"{"active":true,"iss":"https://evil"}"#, &p, 100).unwrap_err(),
            IntrospectionError::Rejected(Rejection::WrongIssuer)
        );
        assert!(matches!(
            check(500, b"{}", &p, 100),
            Err(IntrospectionError::Provider(_))
        ));
        assert!(matches!(
            check(200, b"[]", &p, 100),
            Err(IntrospectionError::Provider(_))
        ));
        assert!(check(200, br#"{"active":true}"#, &p, 100).is_ok());
    }
}
