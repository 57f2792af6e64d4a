//! Per-location authorization: `oauth2_require_claim` and
//! `oauth2_require_scope` (SPEC §2 Access).

use regex::Regex;
use serde_json::Value;

use crate::jwt::Claims;

/// One accepted value of a claim: exact, or a regex (`~pattern`).
#[derive(Debug, Clone)]
pub enum Matcher {
    Exact(String),
    Regex(Regex),
}

impl Matcher {
    /// `~re` is a regex (compiled now, so a bad one fails `nginx -t`).
    pub fn parse(v: &str) -> Result<Matcher, String> {
        match v.strip_prefix('~') {
            Some(re) => Regex::new(re).map(Matcher::Regex).map_err(|e| {
                format!(
                    "invalid regex \"{re}\": {}",
                    e.to_string().lines().last().unwrap_or("")
                )
            }),
            None => Ok(Matcher::Exact(v.to_string())),
        }
    }

    fn matches(&self, s: &str) -> bool {
        match self {
            Matcher::Exact(x) => x == s,
            Matcher::Regex(r) => r.is_match(s),
        }
    }
}

/// `oauth2_require_claim NAME VALUE...;`: the claim (dotted names reach into
/// objects: `realm_access.roles`) equals one of the values; an array claim
/// contains one.
#[derive(Debug, Clone)]
pub struct ClaimRule {
    pub name: String,
    path: Vec<String>,
    values: Vec<Matcher>,
}

impl ClaimRule {
    pub fn parse(name: &str, values: &[&str]) -> Result<ClaimRule, String> {
        if name.is_empty() || name.split('.').any(str::is_empty) {
            return Err(format!("invalid claim name \"{name}\""));
        }
        if values.is_empty() {
            return Err("no value".into());
        }
        Ok(ClaimRule {
            name: name.to_string(),
            path: name.split('.').map(str::to_string).collect(),
            values: values
                .iter()
                .map(|v| Matcher::parse(v))
                .collect::<Result<_, _>>()?,
        })
    }

    pub fn holds(&self, claims: &Claims) -> bool {
        let mut cur = match claims.get(&self.path[0]) {
            Some(v) => v,
            None => return false,
        };
        for p in &self.path[1..] {
            cur = match cur.get(p) {
                Some(v) => v,
                None => return false,
            };
        }
        let one = |v: &Value| match v {
            Value::String(s) => self.values.iter().any(|m| m.matches(s)),
            Value::Number(_) | Value::Bool(_) => {
                let s = v.to_string();
                self.values.iter().any(|m| m.matches(&s))
            }
            _ => false,
        };
        match cur {
            Value::Array(items) => items.iter().any(one),
            v => one(v),
        }
    }
}

/// Scopes a token carries: `scope` (space-separated string) or `scp`
/// (array, or string).
pub fn token_scopes(claims: &Claims) -> Vec<&str> {
    let mut out = Vec::new();
    for name in ["scope", "scp"] {
        match claims.get(name) {
            Some(Value::String(s)) => out.extend(s.split(' ').filter(|x| !x.is_empty())),
            Some(Value::Array(a)) => out.extend(a.iter().filter_map(|v| v.as_str())),
            _ => {}
        }
    }
    out
}

/// Why access is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Denied {
    /// A claim rule failed (its claim name).
    Claim(String),
    /// Scopes are missing (all required scopes, for the challenge).
    Scope(String),
}

impl Denied {
    pub fn code(&self) -> &'static str {
        match self {
            Denied::Claim(_) => "claim_mismatch",
            Denied::Scope(_) => "insufficient_scope",
        }
    }
}

/// Check every rule; `scopes` are the token's (for a session: the scope the
/// provider granted).
pub fn check(
    claims: &Claims,
    scopes: &[&str],
    rules: &[ClaimRule],
    required: &[String],
) -> Result<(), Denied> {
    for r in rules {
        if !r.holds(claims) {
            return Err(Denied::Claim(r.name.clone()));
        }
    }
    if !required.iter().all(|s| scopes.contains(&s.as_str())) {
        return Err(Denied::Scope(required.join(" ")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims() -> Claims {
        json!({
            "sub": "alice", "email": "alice@corp.example", "groups": ["dev", "ops"],
            "realm_access": {"roles": ["admin", "user"]}, "level": 3, "admin": true,
            "scope": "read write", "scp": ["extra"]
        })
        .as_object()
        .unwrap()
        .clone()
        .into()
    }

    fn rule(n: &str, v: &[&str]) -> ClaimRule {
        ClaimRule::parse(n, v).unwrap()
    }

    #[test]
    fn claim_rules() {
        let c = claims();
        assert!(rule("sub", &["bob", "alice"]).holds(&c));
        assert!(!rule("sub", &["bob"]).holds(&c));
        assert!(rule("groups", &["ops"]).holds(&c));
        assert!(!rule("groups", &["hr"]).holds(&c));
        assert!(rule("realm_access.roles", &["admin"]).holds(&c));
        assert!(!rule("realm_access.missing", &["admin"]).holds(&c));
        assert!(rule("email", &["~@corp\\.example$"]).holds(&c));
        assert!(!rule("email", &["~@evil\\.example$"]).holds(&c));
        assert!(rule("level", &["3"]).holds(&c));
        assert!(rule("admin", &["true"]).holds(&c));
        assert!(!rule("absent", &["x"]).holds(&c));
        assert!(
            !rule("realm_access", &["admin"]).holds(&c),
            "objects never match"
        );
        assert!(ClaimRule::parse("a..b", &["x"]).is_err());
        assert!(ClaimRule::parse("email", &["~(unclosed"])
            .unwrap_err()
            .contains("invalid regex"));
    }

    #[test]
    fn scopes_and_check() {
        let c = claims();
        let s = token_scopes(&c);
        assert_eq!(s, vec!["read", "write", "extra"]);
        assert_eq!(check(&c, &s, &[], &["read".into(), "extra".into()]), Ok(()));
        assert_eq!(
            check(&c, &s, &[], &["read".into(), "admin".into()]),
            Err(Denied::Scope("read admin".into()))
        );
        assert_eq!(
            check(
                &c,
                &s,
                &[rule("sub", &["alice"]), rule("groups", &["hr"])],
                &[]
            ),
            Err(Denied::Claim("groups".into()))
        );
        assert_eq!(Denied::Scope(String::new()).code(), "insufficient_scope");
    }
}
