//! RFC 9728 protected-resource metadata: what a client that starts from
//! nothing (an MCP client, say) reads after a `401` to find the
//! authorization server.

use serde_json::{json, Map, Value};

/// The metadata document. `dpop_algs` empty: DPoP is not offered.
pub fn metadata(
    resource: &str,
    servers: &[String],
    scopes: &[String],
    dpop_algs: &[&str],
) -> String {
    let mut m = Map::new();
    m.insert("resource".into(), json!(resource));
    m.insert("authorization_servers".into(), json!(servers));
    if !scopes.is_empty() {
        m.insert("scopes_supported".into(), json!(scopes));
    }
    m.insert("bearer_methods_supported".into(), json!(["header"]));
    if !dpop_algs.is_empty() {
        m.insert("dpop_signing_alg_values_supported".into(), json!(dpop_algs));
    }
    Value::Object(m).to_string()
}

/// `resource_metadata="…"` for a `WWW-Authenticate` challenge (RFC 9728 §5.1).
pub fn challenge_param(url: &str) -> String {
    format!(", resource_metadata=\"{}\"", crate::decide::quote(url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document() {
        let d: Value = serde_json::from_str(&metadata(
            "https://api.example.com",
            &["https://id.example.com".into()],
            &["read".into()],
            &["ES256"],
        ))
        .unwrap();
        assert_eq!(d["resource"], "https://api.example.com");
        assert_eq!(d["authorization_servers"][0], "https://id.example.com");
        assert_eq!(d["scopes_supported"][0], "read");
        assert_eq!(d["bearer_methods_supported"][0], "header");
        assert_eq!(d["dpop_signing_alg_values_supported"][0], "ES256");
        let plain: Value = serde_json::from_str(&metadata("r", &[], &[], &[])).unwrap();
        assert!(plain.get("dpop_signing_alg_values_supported").is_none());
        assert!(plain.get("scopes_supported").is_none());
        assert_eq!(
            challenge_param("https://a/\"x"),
            ", resource_metadata=\"https://a/\\\"x\""
        );
    }
}
