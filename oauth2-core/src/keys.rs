//! JWK Set parsing, key lookup by `kid` and algorithm, provider metadata, and
//! the timing decisions of the fetcher (refetch throttling, backoff).

use std::time::Duration;

use aws_lc_rs::signature::{self as sig, ParsedPublicKey, RsaPublicKeyComponents};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

/// Which keys a set may hold: HMAC secrets only come from a local file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    Network,
    File,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
    Oct,
}

pub struct Key {
    pub kid: Option<String>,
    alg: Option<String>,
    kind: KeyKind,
    decoding: DecodingKey,
    /// The public key parsed once per algorithm it may verify, so a
    /// signature check does not rebuild it (for RSA: the modulus and its
    /// Montgomery constants) on every token. HMAC keys have none.
    parsed: Vec<(Algorithm, ParsedPublicKey)>,
}

impl std::fmt::Debug for Key {
    // never prints key material (HMAC secrets may be in here)
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("kind", &self.kind)
            .finish()
    }
}

impl Key {
    /// Can this key verify a signature made with `alg`?
    pub fn fits(&self, alg: Algorithm) -> bool {
        if let Some(a) = &self.alg {
            if a != alg_name(alg) {
                return false;
            }
        }
        matches!(
            (alg, self.kind),
            (
                Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512,
                KeyKind::Rsa
            ) | (Algorithm::ES256, KeyKind::EcP256)
                | (Algorithm::ES384, KeyKind::EcP384)
                | (Algorithm::EdDSA, KeyKind::Ed25519)
                | (
                    Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512,
                    KeyKind::Oct
                )
        )
    }

    pub fn decoding(&self) -> &DecodingKey {
        &self.decoding
    }

    /// The pre-parsed public key for `alg`, if this key has one.
    pub fn parsed(&self, alg: Algorithm) -> Option<&ParsedPublicKey> {
        self.parsed.iter().find(|(a, _)| *a == alg).map(|(_, k)| k)
    }
}

pub fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
        _ => "unsupported",
    }
}

#[derive(Debug, Default)]
pub struct KeySet {
    pub keys: Vec<Key>,
    /// Keys present in the document that could not be used, with why.
    pub skipped: Vec<String>,
}

/// The outcome of looking a key up for a token.
pub enum Lookup<'a> {
    /// Candidate keys (one when the token names a `kid`).
    Found(Vec<&'a Key>),
    /// The token names a `kid` the set does not have.
    UnknownKid,
    /// No key of the set fits the token's algorithm.
    NoFittingKey,
}

impl KeySet {
    /// The client secret as the key of HS* ID tokens (OpenID Connect Core
    /// §10.1: the octets of its UTF-8 form). Never used for access tokens.
    pub fn client_secret(secret: &str) -> Result<KeySet, String> {
        use base64::Engine;
        let k = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret.as_bytes());
        let doc = format!(r#"{{"keys":[{{"kty":"oct","k":"{k}"}}]}}"#);
        KeySet::parse(doc.as_bytes(), KeySource::File)
    }

    /// Parse a JWK Set document. Keys that cannot be used (unknown `kty`,
    /// encryption keys, HMAC keys from the network) are skipped and listed in
    /// `skipped`; a document with no usable key is an error.
    pub fn parse(doc: &[u8], source: KeySource) -> Result<KeySet, String> {
        #[derive(Deserialize)]
        struct Doc {
            keys: Vec<serde_json::Value>,
        }
        let doc: Doc = serde_json::from_slice(doc).map_err(|e| format!("invalid JWK Set: {e}"))?;
        let mut set = KeySet::default();
        for (i, v) in doc.keys.into_iter().enumerate() {
            match parse_key(v, source) {
                Ok(k) => set.keys.push(k),
                Err(e) => set.skipped.push(format!("key #{i}: {e}")),
            }
        }
        if set.keys.is_empty() {
            let why = if set.skipped.is_empty() {
                "it is empty".to_string()
            } else {
                set.skipped.join("; ")
            };
            return Err(format!("the JWK Set has no usable signature key ({why})"));
        }
        Ok(set)
    }

    pub fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> Lookup<'_> {
        match kid {
            Some(kid) => {
                let found: Vec<&Key> = self
                    .keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid))
                    .collect();
                if found.is_empty() {
                    return Lookup::UnknownKid;
                }
                let fit: Vec<&Key> = found.into_iter().filter(|k| k.fits(alg)).collect();
                if fit.is_empty() {
                    Lookup::NoFittingKey
                } else {
                    Lookup::Found(fit)
                }
            }
            None => {
                let fit: Vec<&Key> = self.keys.iter().filter(|k| k.fits(alg)).collect();
                if fit.is_empty() {
                    Lookup::NoFittingKey
                } else {
                    Lookup::Found(fit)
                }
            }
        }
    }

    pub fn has_hmac(&self) -> bool {
        self.keys.iter().any(|k| k.kind == KeyKind::Oct)
    }

    pub fn merge(mut self, other: KeySet) -> KeySet {
        self.keys.extend(other.keys);
        self.skipped.extend(other.skipped);
        self
    }
}

fn parse_key(v: serde_json::Value, source: KeySource) -> Result<Key, String> {
    if let Some(u) = v.get("use").and_then(|u| u.as_str()) {
        if u != "sig" {
            return Err(format!("\"use\" is \"{u}\", not \"sig\""));
        }
    }
    let jwk: Jwk = serde_json::from_value(v).map_err(|e| format!("{e}"))?;
    let kind = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => KeyKind::Rsa,
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => KeyKind::EcP256,
            EllipticCurve::P384 => KeyKind::EcP384,
            _ => return Err("unsupported elliptic curve".into()),
        },
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => KeyKind::Ed25519,
            _ => return Err("unsupported OKP curve".into()),
        },
        AlgorithmParameters::OctetKey(_) => {
            if source == KeySource::Network {
                return Err("symmetric keys are accepted only from oauth2_jwks_file".into());
            }
            KeyKind::Oct
        }
        _ => return Err("unsupported key type".into()),
    };
    let alg = jwk.common.key_algorithm.map(|a| format!("{a}"));
    let decoding = DecodingKey::from_jwk(&jwk).map_err(|e| format!("{e}"))?;
    let mut key = Key {
        kid: jwk.common.key_id.clone(),
        alg,
        kind,
        decoding,
        parsed: Vec::new(),
    };
    key.parsed = parse_public(&jwk.algorithm, &key)?;
    Ok(key)
}

fn b64_field(v: &str, what: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(v.trim_end_matches('='))
        .map_err(|_| format!("\"{what}\" is not base64url"))
}

/// Left-pad an EC coordinate to the field size (some JWKs drop leading zeros).
fn coordinate(v: &str, what: &str, size: usize) -> Result<Vec<u8>, String> {
    let b = b64_field(v, what)?;
    if b.len() > size {
        return Err(format!("\"{what}\" is longer than the curve's field"));
    }
    let mut out = vec![0u8; size - b.len()];
    out.extend(b);
    Ok(out)
}

/// Parse the public key once for every algorithm the key may verify.
fn parse_public(
    params: &AlgorithmParameters,
    key: &Key,
) -> Result<Vec<(Algorithm, ParsedPublicKey)>, String> {
    let rejected = |e: aws_lc_rs::error::KeyRejected| format!("the public key is not usable: {e}");
    let mut out = Vec::new();
    match params {
        AlgorithmParameters::RSA(p) => {
            let n = b64_field(&p.n, "n")?;
            let e = b64_field(&p.e, "e")?;
            let strip = |b: &[u8]| b.iter().position(|&x| x != 0).map_or(0, |i| i);
            let c = RsaPublicKeyComponents {
                n: &n[strip(&n)..],
                e: &e[strip(&e)..],
            };
            let algs: [(Algorithm, &'static sig::RsaParameters); 6] = [
                (Algorithm::RS256, &sig::RSA_PKCS1_2048_8192_SHA256),
                (Algorithm::RS384, &sig::RSA_PKCS1_2048_8192_SHA384),
                (Algorithm::RS512, &sig::RSA_PKCS1_2048_8192_SHA512),
                (Algorithm::PS256, &sig::RSA_PSS_2048_8192_SHA256),
                (Algorithm::PS384, &sig::RSA_PSS_2048_8192_SHA384),
                (Algorithm::PS512, &sig::RSA_PSS_2048_8192_SHA512),
            ];
            for (alg, params) in algs {
                if key.fits(alg) {
                    out.push((alg, c.to_parsed_public_key(params).map_err(rejected)?));
                }
            }
        }
        AlgorithmParameters::EllipticCurve(p) => {
            let (alg, size, verify): (_, _, &'static sig::EcdsaVerificationAlgorithm) =
                match key.kind {
                    KeyKind::EcP256 => (Algorithm::ES256, 32, &sig::ECDSA_P256_SHA256_FIXED),
                    _ => (Algorithm::ES384, 48, &sig::ECDSA_P384_SHA384_FIXED),
                };
            if key.fits(alg) {
                let mut point = vec![4u8];
                point.extend(coordinate(&p.x, "x", size)?);
                point.extend(coordinate(&p.y, "y", size)?);
                out.push((alg, ParsedPublicKey::new(verify, point).map_err(rejected)?));
            }
        }
        AlgorithmParameters::OctetKeyPair(p) if key.fits(Algorithm::EdDSA) => {
            let x = b64_field(&p.x, "x")?;
            out.push((
                Algorithm::EdDSA,
                ParsedPublicKey::new(&sig::ED25519, x).map_err(rejected)?,
            ));
        }
        _ => {}
    }
    Ok(out)
}

/// The parts of the OpenID Provider metadata the module uses.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Metadata {
    pub issuer: String,
    pub jwks_uri: Option<String>,
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: Option<String>,
    pub introspection_endpoint: Option<String>,
    pub end_session_endpoint: Option<String>,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Vec<String>,
}

impl Metadata {
    /// Parse a discovery document and check that it names the configured
    /// issuer (OpenID Connect Discovery 1.0 §4.3: they must be identical,
    /// character for character).
    pub fn parse(doc: &[u8], expected_issuer: &str) -> Result<Metadata, String> {
        let m: Metadata =
            serde_json::from_slice(doc).map_err(|e| format!("invalid provider metadata: {e}"))?;
        if m.issuer != expected_issuer {
            return Err(format!(
                "provider metadata names issuer \"{}\", expected \"{}\"",
                m.issuer, expected_issuer
            ));
        }
        Ok(m)
    }
}

/// Unknown `kid`: refetch the key set at most once per `interval`.
#[derive(Debug, Default, Clone, Copy)]
pub struct RefetchThrottle {
    last: Option<u64>,
}

impl RefetchThrottle {
    pub const INTERVAL_SECS: u64 = 30;

    /// Returns true (and records it) when a refetch may start at `now`.
    pub fn try_acquire(&mut self, now: u64) -> bool {
        match self.last {
            Some(t) if now < t + Self::INTERVAL_SECS => false,
            _ => {
                self.last = Some(now);
                true
            }
        }
    }
}

/// Delay before the next attempt after `failures` consecutive failures:
/// 1s, 2s, 4s, ... capped at `cap`.
pub fn backoff(failures: u32, cap: Duration) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    Duration::from_secs(1u64 << exp).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA_JWK: &str = r#"{"kty":"RSA","kid":"r1","use":"sig","alg":"RS256","n":"sXchZ5x6-qQeIzfmvdMrJ8vjj1gsnjkmzCIZwm2lbvxm8QEHUGsJVhnAJ-3Y6_mXjoQQUwA5SVcwd6ZjzQe5sfZMbOqRb8zAXbIVWDKfu3I-nzdQwsa1qphVVtTeb3X8-xWoUHL-dd1Yrl_J1_W5MLbTOt9X5tXIUmjPz3GtYDlxHhwSH0Ad6cF8OHqPe7m2-SC7M8BOt0A1E6X_LCIsLsKTX3NAnvsqi4YbCQpDgcHXTD4BC0Hkj2hxNr3rS9mKwfvYajX4_JTPlGsBoC1sLpRGuIiTAG46YTclHyAsFcK4_vRLXdvjzEYzo3vDvpUJuDOtE6dYtm_LnYdibvy-mQ","e":"AQAB"}"#;
    const EC_JWK: &str = r#"{"kty":"EC","kid":"e1","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;

    fn set(keys: &[&str], src: KeySource) -> Result<KeySet, String> {
        KeySet::parse(format!("{{\"keys\":[{}]}}", keys.join(",")).as_bytes(), src)
    }

    #[test]
    fn parses_and_looks_up() {
        let s = set(&[RSA_JWK, EC_JWK], KeySource::Network).unwrap();
        assert_eq!(s.keys.len(), 2);
        assert!(matches!(s.lookup(Some("r1"), Algorithm::RS256), Lookup::Found(v) if v.len() == 1));
        assert!(matches!(
            s.lookup(Some("zz"), Algorithm::RS256),
            Lookup::UnknownKid
        ));
        // key alg is RS256: PS256 must not use it
        assert!(matches!(
            s.lookup(Some("r1"), Algorithm::PS256),
            Lookup::NoFittingKey
        ));
        // an RSA key never verifies HMAC
        assert!(matches!(
            s.lookup(Some("r1"), Algorithm::HS256),
            Lookup::NoFittingKey
        ));
        assert!(matches!(s.lookup(None, Algorithm::ES256), Lookup::Found(v) if v.len() == 1));
        assert!(matches!(
            s.lookup(None, Algorithm::ES384),
            Lookup::NoFittingKey
        ));
    }

    #[test]
    fn public_keys_are_parsed_once_per_algorithm() {
        let s = set(&[RSA_JWK, EC_JWK], KeySource::Network).unwrap();
        // "alg":"RS256" in the JWK: only that one
        assert!(s.keys[0].parsed(Algorithm::RS256).is_some());
        assert!(s.keys[0].parsed(Algorithm::PS256).is_none());
        assert!(s.keys[1].parsed(Algorithm::ES256).is_some());
        // without "alg": every RSA algorithm
        let any = RSA_JWK.replace(r#""alg":"RS256","#, "");
        let s = set(&[&any], KeySource::Network).unwrap();
        for a in [
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ] {
            assert!(s.keys[0].parsed(a).is_some(), "{a:?}");
        }
        // a point that is not on the curve is skipped, with why
        let off = EC_JWK.replace("x_FEzRu9", "AAAAAAAA");
        let s = set(&[RSA_JWK, &off], KeySource::Network).unwrap();
        assert_eq!(s.keys.len(), 1);
        assert!(s.skipped[0].contains("not usable"), "{:?}", s.skipped);
    }

    #[test]
    fn hmac_only_from_file() {
        let oct =
            r#"{"kty":"oct","kid":"h1","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"}"#;
        assert!(set(&[oct], KeySource::Network).is_err());
        let s = set(&[oct, RSA_JWK], KeySource::Network).unwrap();
        assert_eq!(s.keys.len(), 1);
        assert_eq!(s.skipped.len(), 1);
        let f = set(&[oct], KeySource::File).unwrap();
        assert!(f.has_hmac());
        assert!(format!("{:?}", f.keys[0]).find("c2Vj").is_none());
    }

    #[test]
    fn rejects_bad_documents() {
        assert!(KeySet::parse(b"garbage", KeySource::Network).is_err());
        assert!(KeySet::parse(b"{\"keys\":[]}", KeySource::Network)
            .unwrap_err()
            .contains("empty"));
        assert!(KeySet::parse(b"{\"keys\":{}}", KeySource::Network).is_err());
        let enc = r#"{"kty":"RSA","use":"enc","n":"AQAB","e":"AQAB"}"#;
        assert!(set(&[enc], KeySource::Network).is_err());
    }

    #[test]
    fn metadata_issuer_must_match() {
        let doc = br#"{"issuer":"https://op.example","jwks_uri":"https://op.example/jwks"}"#;
        assert!(Metadata::parse(doc, "https://op.example").is_ok());
        // compared character for character: a trailing "/" is part of an issuer
        assert!(Metadata::parse(doc, "https://op.example/").is_err());
        let auth0 = br#"{"issuer":"https://tenant.auth0.example/","jwks_uri":"https://tenant.auth0.example/jwks"}"#;
        assert!(Metadata::parse(auth0, "https://tenant.auth0.example/").is_ok());
        assert!(Metadata::parse(auth0, "https://tenant.auth0.example").is_err());
        assert!(Metadata::parse(doc, "https://evil.example")
            .unwrap_err()
            .contains("evil"));
        assert!(Metadata::parse(b"[]", "https://op.example").is_err());
    }

    #[test]
    fn throttle_and_backoff() {
        let mut t = RefetchThrottle::default();
        assert!(t.try_acquire(100));
        assert!(!t.try_acquire(101));
        assert!(!t.try_acquire(129));
        assert!(t.try_acquire(130));
        let cap = Duration::from_secs(60);
        assert_eq!(backoff(1, cap), Duration::from_secs(1));
        assert_eq!(backoff(3, cap), Duration::from_secs(4));
        assert_eq!(backoff(30, cap), cap);
    }
}
