//! Claim values as nginx variables expose them (SPEC §4).
//!
//! Values end up in request headers (`proxy_set_header`), so control
//! characters (CR, LF, NUL, ...) are dropped: a claim can never inject a
//! header.

use serde_json::Value;

use crate::jwt::Claims;

/// `$oauth2_claim_NAME`: strings as they are, numbers and booleans as JSON,
/// arrays joined with `,`, objects as JSON, null and absent as `None`.
pub fn claim_value(claims: &Claims, name: &str) -> Option<String> {
    let v = claims.get(name)?;
    let s = match v {
        Value::Null => return None,
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(scalar).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    };
    Some(sanitize(&s))
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Drop control characters (they would break or inject header lines).
pub fn sanitize(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims() -> Claims {
        json!({
            "sub": "alice", "n": 42, "ok": true, "nil": null,
            "groups": ["admin", "dev"], "mixed": ["a", 1, {"k": "v"}],
            "obj": {"roles": ["x"]}, "evil": "a\r\nX-Injected: 1\u{0}"
        })
        .as_object()
        .unwrap()
        .clone()
    }

    #[test]
    fn values() {
        let c = claims();
        assert_eq!(claim_value(&c, "sub").as_deref(), Some("alice"));
        assert_eq!(claim_value(&c, "n").as_deref(), Some("42"));
        assert_eq!(claim_value(&c, "ok").as_deref(), Some("true"));
        assert_eq!(claim_value(&c, "nil"), None);
        assert_eq!(claim_value(&c, "absent"), None);
        assert_eq!(claim_value(&c, "groups").as_deref(), Some("admin,dev"));
        assert_eq!(
            claim_value(&c, "mixed").as_deref(),
            Some("a,1,{\"k\":\"v\"}")
        );
        assert_eq!(
            claim_value(&c, "obj").as_deref(),
            Some("{\"roles\":[\"x\"]}")
        );
    }

    #[test]
    fn no_header_injection() {
        let v = claim_value(&claims(), "evil").unwrap();
        assert_eq!(v, "aX-Injected: 1");
        assert!(!v.contains('\r') && !v.contains('\n') && !v.contains('\0'));
    }
}
