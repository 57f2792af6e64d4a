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
    /// What the credential is bound to (`cnf`, RFC 7800): read once, when
    /// it was validated, so the cached path needs no map for it.
    pub binding: Binding,
}

/// A token's confirmation (`cnf`): the key a DPoP proof must be signed
/// with (RFC 9449 `jkt`), the client certificate of the TLS connection
/// (RFC 8705 `x5t#S256`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Binding {
    pub jkt: Option<Box<str>>,
    pub x5t: Option<Box<str>>,
}

impl Binding {
    pub fn is_none(&self) -> bool {
        self.jkt.is_none() && self.x5t.is_none()
    }

    /// From a claims map's `cnf` (introspection answers, RFC 7662 §2.2).
    pub fn of_map(m: &Map<String, Value>) -> Binding {
        let cnf = m.get("cnf").and_then(Value::as_object);
        let get = |k: &str| {
            cnf.and_then(|c| c.get(k))
                .and_then(Value::as_str)
                .map(Box::from)
        };
        Binding {
            jkt: get("jkt"),
            x5t: get("x5t#S256"),
        }
    }
}

impl Claims {
    /// From a JSON object's text whose strictness was already checked
    /// (`json::strict`).
    pub fn from_json(json: Vec<u8>) -> Claims {
        Claims::bound(json, Binding::default())
    }

    /// `from_json`, with the binding read from it.
    pub fn bound(json: Vec<u8>, binding: Binding) -> Claims {
        Claims {
            json: json.into_boxed_slice(),
            map: OnceLock::new(),
            binding,
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
            binding: Binding::of_map(&m),
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
