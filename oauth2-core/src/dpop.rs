//! DPoP (RFC 9449): the proof a client sends with a sender-constrained
//! access token, checked as §4.3 says, and the thumbprint (RFC 7638) the
//! token's `cnf.jkt` must name. The `jti`'s single use is the caller's (a
//! shared-memory table); everything else is here.

use aws_lc_rs::digest;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use crate::config::{is_hmac, parse_algorithm};
use crate::jwt::{self, Policy};
use crate::keys::{KeySet, KeySource};

/// Proofs longer than this are refused before any parsing.
pub const MAX_PROOF_LEN: usize = 8 * 1024;

/// Members of a JWK that only a private (or symmetric) key has.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Why a proof is refused: `error_description` of the `DPoP` challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DpopError {
    #[error("the DPoP proof is too large")]
    TooLarge,
    #[error("the DPoP proof is not a JWT")]
    Malformed,
    #[error("the DPoP proof's typ is not dpop+jwt")]
    Type,
    #[error("the DPoP proof's alg is not an allowed asymmetric algorithm")]
    Algorithm,
    #[error("the DPoP proof's jwk is missing or not a public key")]
    Key,
    #[error("the DPoP proof's signature does not verify with its jwk")]
    Signature,
    #[error("the DPoP proof's htm is not the request method")]
    Method,
    #[error("the DPoP proof's htu is not the request URL")]
    Url,
    #[error("the DPoP proof's iat is missing or outside the allowed window")]
    Time,
    #[error("the DPoP proof has no jti")]
    NoJti,
    #[error("the DPoP proof's ath is not the access token's hash")]
    TokenHash,
    #[error("the DPoP proof's key is not the one the access token is bound to")]
    KeyBinding,
    #[error("the DPoP proof was used before")]
    Replayed,
    #[error("one DPoP proof is expected")]
    Count,
}

/// What the request is, for the checks.
pub struct Request<'a> {
    pub method: &'a str,
    /// The request URL as the client sees it (scheme, host, port, path).
    pub url: &'a str,
    pub access_token: &'a str,
    /// Allowed algorithms (HMAC ones are never accepted for a proof).
    pub algorithms: &'a [Algorithm],
    /// How far `iat` may be from now, either way.
    pub window: u64,
    pub now: u64,
}

/// The proof keys a worker has parsed, by their JWK text: a client signs
/// every proof with the same key, so its parse and thumbprint are done once.
/// Bounded (emptied when full).
#[derive(Default)]
pub struct ProofKeys {
    keys: std::collections::HashMap<String, (std::sync::Arc<KeySet>, String)>,
}

/// Proof keys kept per worker before the cache starts over.
const MAX_PROOF_KEYS: usize = 4096;

impl ProofKeys {
    fn get_or_parse(
        &mut self,
        jwk: Map<String, Value>,
    ) -> Result<(std::sync::Arc<KeySet>, String), DpopError> {
        let text = Value::Object(jwk).to_string();
        if let Some((set, jkt)) = self.keys.get(&text) {
            return Ok((set.clone(), jkt.clone()));
        }
        let set = KeySet::parse(
            format!("{{\"keys\":[{text}]}}").as_bytes(),
            KeySource::Network,
        )
        .map_err(|_| DpopError::Key)?;
        if set.keys.len() != 1 {
            return Err(DpopError::Key);
        }
        let jwk: Jwk = serde_json::from_str(&text).map_err(|_| DpopError::Key)?;
        let jkt = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|_| DpopError::Key)?;
        if self.keys.len() >= MAX_PROOF_KEYS {
            self.keys.clear();
        }
        let set = std::sync::Arc::new(set);
        self.keys.insert(text, (set.clone(), jkt.clone()));
        Ok((set, jkt))
    }
}

/// A proof that passed: its key's thumbprint and its `jti`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    pub jkt: String,
    pub jti: String,
}

fn b64_json(part: &str) -> Result<Map<String, Value>, DpopError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| DpopError::Malformed)?;
    if !crate::json::strict(&bytes) {
        return Err(DpopError::Malformed);
    }
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(DpopError::Malformed),
    }
}

/// The asymmetric algorithms of a list, as `algs` names them.
pub fn algs(algorithms: &[Algorithm]) -> String {
    algorithms
        .iter()
        .filter(|a| !is_hmac(**a))
        .map(|a| crate::keys::alg_name(*a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `WWW-Authenticate` of a refused DPoP request (RFC 9449 §7.1).
pub fn challenge(algs: &str, error: &str, description: &str) -> String {
    format!(
        "DPoP algs=\"{}\", error=\"{}\", error_description=\"{}\"",
        algs,
        error,
        crate::decide::quote(description)
    )
}

/// RFC 8705 §3.1: the `x5t#S256` of a PEM certificate (base64url SHA-256
/// of its DER).
pub fn cert_thumbprint(pem: &str) -> Option<String> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE-----"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END CERTIFICATE-----"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .ok()
        .filter(|d| !d.is_empty())?;
    Some(URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, &der)))
}

/// The access token's hash as `ath` carries it.
pub fn ath(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, token.as_bytes()))
}

/// A URL without its query and fragment, normalised (scheme and host in
/// lower case, default port dropped) for comparing `htu`.
fn bare_url(u: &str) -> Option<String> {
    let mut u = url::Url::parse(u).ok()?;
    if !matches!(u.scheme(), "http" | "https") {
        return None;
    }
    u.set_query(None);
    u.set_fragment(None);
    Some(u.to_string())
}

/// RFC 9449 §4.3: check a proof for this request and access token.
pub fn check_proof(proof: &str, req: &Request<'_>) -> Result<Proof, DpopError> {
    check_proof_with(proof, req, &mut ProofKeys::default())
}

/// `check_proof`, with the keys parsed before.
pub fn check_proof_with(
    proof: &str,
    req: &Request<'_>,
    keys: &mut ProofKeys,
) -> Result<Proof, DpopError> {
    if proof.len() > MAX_PROOF_LEN {
        return Err(DpopError::TooLarge);
    }
    let mut parts = proof.split('.');
    let (Some(h), Some(p), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(DpopError::Malformed);
    };
    let header = b64_json(h)?;
    match header.get("typ") {
        Some(Value::String(t)) if t.eq_ignore_ascii_case("dpop+jwt") => {}
        _ => return Err(DpopError::Type),
    }
    let alg = match header.get("alg") {
        Some(Value::String(a)) => parse_algorithm(a).map_err(|_| DpopError::Algorithm)?,
        _ => return Err(DpopError::Algorithm),
    };
    if is_hmac(alg) || !req.algorithms.contains(&alg) {
        return Err(DpopError::Algorithm);
    }
    let jwk = match header.get("jwk") {
        Some(Value::Object(j)) => j,
        _ => return Err(DpopError::Key),
    };
    if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m))
        || !matches!(jwk.get("kty"), Some(Value::String(k)) if k == "RSA" || k == "EC" || k == "OKP")
    {
        return Err(DpopError::Key);
    }
    // the key only as the proof's: no kid, alg or use of its own to match
    let mut bare = jwk.clone();
    for m in ["kid", "alg", "use", "key_ops"] {
        bare.remove(m);
    }
    let (set, jkt) = keys.get_or_parse(bare)?;
    let policy = Policy {
        issuer: None,
        audiences: Vec::new(),
        algorithms: vec![alg],
        skew_secs: 0,
    };
    let parsed = jwt::parse_typed(proof, &policy, |t| t.eq_ignore_ascii_case("dpop+jwt"))
        .map_err(|_| DpopError::Malformed)?;
    jwt::verify(&parsed, &[&*set]).map_err(|_| DpopError::Signature)?;
    let claims = b64_json(p)?;
    let text = |n: &str| match claims.get(n) {
        Some(Value::String(s)) => Some(s.as_str()),
        _ => None,
    };
    let jti = text("jti").filter(|j| !j.is_empty() && j.len() <= 256);
    let Some(jti) = jti else {
        return Err(DpopError::NoJti);
    };
    if text("htm") != Some(req.method) {
        return Err(DpopError::Method);
    }
    match (text("htu").and_then(bare_url), bare_url(req.url)) {
        (Some(a), Some(b)) if a == b => {}
        _ => return Err(DpopError::Url),
    }
    let iat = claims
        .get("iat")
        .and_then(Value::as_u64)
        .ok_or(DpopError::Time)?;
    if iat > req.now.saturating_add(req.window) || req.now > iat.saturating_add(req.window) {
        return Err(DpopError::Time);
    }
    if text("ath") != Some(ath(req.access_token).as_str()) {
        return Err(DpopError::TokenHash);
    }
    Ok(Proof {
        jkt,
        jti: jti.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const EC_PRIV: &str = include_str!("../testdata/ec_priv.pem");
    const EC_JWKS: &str = include_str!("../testdata/ec_jwks.json");
    const RSA_PRIV: &str = include_str!("../testdata/rsa_priv.pem");
    const RSA_JWKS: &str = include_str!("../testdata/rsa_jwks.json");
    const NOW: u64 = 1_800_000_000;
    const TOKEN: &str = "access.token.here";
    const URL: &str = "https://api.example.com/data";

    fn ec_jwk() -> Map<String, Value> {
        let v: Value = serde_json::from_str(EC_JWKS).unwrap();
        v["keys"][0].as_object().unwrap().clone()
    }

    fn proof_with(header: impl FnOnce(&mut Header), claims: Value) -> String {
        let mut h = Header::new(Algorithm::ES256);
        h.typ = Some("dpop+jwt".into());
        h.jwk = Some(serde_json::from_value(Value::Object(ec_jwk())).unwrap());
        header(&mut h);
        encode(
            &h,
            &claims,
            &EncodingKey::from_ec_pem(EC_PRIV.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    fn good_claims() -> Value {
        json!({"jti": "j1", "htm": "GET", "htu": URL, "iat": NOW, "ath": ath(TOKEN)})
    }

    fn req() -> Request<'static> {
        Request {
            method: "GET",
            url: URL,
            access_token: TOKEN,
            algorithms: &[Algorithm::ES256, Algorithm::RS256, Algorithm::HS256],
            window: 60,
            now: NOW,
        }
    }

    fn with(f: impl FnOnce(&mut Map<String, Value>)) -> Value {
        let mut c = good_claims();
        f(c.as_object_mut().unwrap());
        c
    }

    #[test]
    fn certificate_thumbprints() {
        let der = b"not really DER but bytes";
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let pem = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n{}\n-----END CERTIFICATE-----\n",
            &b64[..10],
            &b64[10..]
        );
        assert_eq!(
            cert_thumbprint(&pem).unwrap(),
            URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, der))
        );
        assert_eq!(cert_thumbprint("garbage"), None);
    }

    #[test]
    fn a_good_proof() {
        let p = check_proof(&proof_with(|_| {}, good_claims()), &req()).unwrap();
        assert_eq!(p.jti, "j1");
        // RFC 7638 thumbprint of the key
        let jwk: Jwk = serde_json::from_value(Value::Object(ec_jwk())).unwrap();
        assert_eq!(p.jkt, jwk.thumbprint(ThumbprintHash::SHA256).unwrap());
        // query and fragment ignored on both sides
        let mut r = req();
        r.url = "https://API.example.com:443/data?x=1";
        let c = with(|m| drop(m.insert("htu".into(), json!(format!("{URL}#frag")))));
        assert!(check_proof(&proof_with(|_| {}, c), &r).is_ok());
    }

    #[test]
    fn the_hostile_catalogue() {
        use DpopError::*;
        let bad = |c: Value| check_proof(&proof_with(|_| {}, c), &req()).unwrap_err();
        assert_eq!(
            bad(with(|m| drop(m.insert("htm".into(), json!("POST"))))),
            Method
        );
        assert_eq!(
            bad(with(|m| drop(m.insert(
                "htu".into(),
                json!("https://api.example.com/other")
            )))),
            Url
        );
        assert_eq!(
            bad(with(|m| drop(m.insert(
                "htu".into(),
                json!("http://api.example.com/data")
            )))),
            Url
        );
        assert_eq!(
            bad(with(|m| drop(m.insert("iat".into(), json!(NOW - 61))))),
            Time
        );
        assert_eq!(
            bad(with(|m| drop(m.insert("iat".into(), json!(NOW + 61))))),
            Time
        );
        assert_eq!(bad(with(|m| drop(m.remove("iat")))), Time);
        assert_eq!(bad(with(|m| drop(m.remove("jti")))), NoJti);
        assert_eq!(
            bad(with(|m| drop(
                m.insert("ath".into(), json!(ath("another")))
            ))),
            TokenHash
        );
        assert_eq!(bad(with(|m| drop(m.remove("ath")))), TokenHash);
        // typ
        let t = proof_with(|h| h.typ = Some("JWT".into()), good_claims());
        assert_eq!(check_proof(&t, &req()).unwrap_err(), Type);
        // a private member in the jwk
        let mut priv_jwk = ec_jwk();
        priv_jwk.insert("d".into(), json!("AAAA"));
        let h = URL_SAFE_NO_PAD
            .encode(json!({"typ":"dpop+jwt","alg":"ES256","jwk": priv_jwk}).to_string());
        let good = proof_with(|_| {}, good_claims());
        let rest: Vec<&str> = good.split('.').collect();
        assert_eq!(
            check_proof(&format!("{h}.{}.{}", rest[1], rest[2]), &req()).unwrap_err(),
            Key
        );
        // a symmetric jwk, alg HS256, alg none
        let h = URL_SAFE_NO_PAD.encode(
            json!({"typ":"dpop+jwt","alg":"HS256","jwk":{"kty":"oct","k":"c2VjcmV0"}}).to_string(),
        );
        assert_eq!(
            check_proof(&format!("{h}.{}.{}", rest[1], rest[2]), &req()).unwrap_err(),
            Algorithm
        );
        let h = URL_SAFE_NO_PAD.encode(
            json!({"typ":"dpop+jwt","alg":"ES256","jwk":{"kty":"oct","k":"c2VjcmV0"}}).to_string(),
        );
        assert_eq!(
            check_proof(&format!("{h}.{}.{}", rest[1], rest[2]), &req()).unwrap_err(),
            Key
        );
        let h = URL_SAFE_NO_PAD
            .encode(json!({"typ":"dpop+jwt","alg":"none","jwk": ec_jwk()}).to_string());
        assert_eq!(
            check_proof(&format!("{h}.{}.", rest[1]), &req()).unwrap_err(),
            Algorithm
        );
        // signed by another key than its jwk (the RSA key, jwk of the EC key)
        let mut hd = Header::new(jsonwebtoken::Algorithm::RS256);
        hd.typ = Some("dpop+jwt".into());
        let rsa: Value = serde_json::from_str(RSA_JWKS).unwrap();
        let mut ec_as_rsa = ec_jwk();
        ec_as_rsa.remove("alg");
        hd.jwk = Some(serde_json::from_value(Value::Object(ec_as_rsa)).unwrap());
        let other = encode(
            &hd,
            &good_claims(),
            &EncodingKey::from_rsa_pem(RSA_PRIV.as_bytes()).unwrap(),
        )
        .unwrap();
        assert!(matches!(
            check_proof(&other, &req()).unwrap_err(),
            Signature | Key
        ));
        // the jwk of the RSA key, signed by the EC key
        let mut hd = Header::new(jsonwebtoken::Algorithm::ES256);
        hd.typ = Some("dpop+jwt".into());
        hd.jwk = Some(serde_json::from_value(rsa["keys"][0].clone()).unwrap());
        let swapped = encode(
            &hd,
            &good_claims(),
            &EncodingKey::from_ec_pem(EC_PRIV.as_bytes()).unwrap(),
        )
        .unwrap();
        assert!(matches!(
            check_proof(&swapped, &req()).unwrap_err(),
            Signature | Key
        ));
        // oversized, garbage
        assert_eq!(
            check_proof(&"A".repeat(MAX_PROOF_LEN + 1), &req()).unwrap_err(),
            TooLarge
        );
        assert_eq!(check_proof("a.b", &req()).unwrap_err(), Malformed);
        assert_eq!(check_proof("a.b.c.d", &req()).unwrap_err(), Malformed);
        // an algorithm the configuration does not allow
        let mut r = req();
        r.algorithms = &[jsonwebtoken::Algorithm::RS256];
        assert_eq!(check_proof(&good, &r).unwrap_err(), Algorithm);
    }
}
