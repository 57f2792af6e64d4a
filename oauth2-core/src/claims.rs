//! Claim values as nginx variables expose them (SPEC §4).
//!
//! Values end up in request headers (`proxy_set_header`), so control
//! characters (CR, LF, NUL, ...) are dropped: a claim can never inject a
//! header.

use std::sync::OnceLock;

use serde_json::{Map, Value};

/// A credential's claims. A JWT access token's are kept as the payload's
/// JSON text (checked strictly when it was validated) and read into a map
/// only the first time something asks for a claim by name (a rule, a
/// variable): a token that nothing looks into costs no document. Claims
/// from elsewhere (ID tokens, introspection, UserInfo) come as a map.
/// Derefs to the map.
pub struct Claims {
    json: Box<[u8]>,
    map: OnceLock<Map<String, Value>>,
}

impl Claims {
    /// From a JSON object's text whose strictness was already checked
    /// (`json::strict`).
    pub fn from_json(json: Vec<u8>) -> Claims {
        Claims {
            json: json.into_boxed_slice(),
            map: OnceLock::new(),
        }
    }

    pub fn map(&self) -> &Map<String, Value> {
        self.map.get_or_init(|| {
            // checked when the token was validated; an error cannot happen,
            // and would only leave no claims to read (rules then deny)
            serde_json::from_slice(&self.json).unwrap_or_default()
        })
    }
}

impl From<Map<String, Value>> for Claims {
    fn from(m: Map<String, Value>) -> Claims {
        Claims {
            json: Box::default(),
            map: OnceLock::from(m),
        }
    }
}

impl Default for Claims {
    fn default() -> Claims {
        Claims::from(Map::new())
    }
}

impl Clone for Claims {
    fn clone(&self) -> Claims {
        Claims::from(self.map().clone())
    }
}

impl PartialEq for Claims {
    fn eq(&self, other: &Claims) -> bool {
        self.map() == other.map()
    }
}

impl std::fmt::Debug for Claims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.map().fmt(f)
    }
}

impl std::ops::Deref for Claims {
    type Target = Map<String, Value>;
    fn deref(&self) -> &Map<String, Value> {
        self.map()
    }
}

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
        let v = json!({
            "sub": "alice", "n": 42, "ok": true, "nil": null,
            "groups": ["admin", "dev"], "mixed": ["a", 1, {"k": "v"}],
            "obj": {"roles": ["x"]}, "evil": "a\r\nX-Injected: 1\u{0}"
        });
        // as a validated JWT's claims arrive: JSON text, read on demand
        Claims::from_json(serde_json::to_vec(&v).unwrap())
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
