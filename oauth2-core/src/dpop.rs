//! DPoP (RFC 9449): the proof a client sends with a sender-constrained
//! access token, checked as §4.3 says, and the thumbprint (RFC 7638) the
//! token's `cnf.jkt` must name. The `jti`'s single use is the caller's (a
//! shared-memory table); everything else is here.

use aws_lc_rs::digest;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::Algorithm;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;
use std::fmt;
use std::marker::PhantomData;

use crate::config::{is_hmac, parse_algorithm};
use crate::json::{Any, Name, Names, Pick, Scalar};
use crate::jwt::{self, Parsed};
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

/// The proof keys a worker has parsed, by their JWK's text as the proof
/// carries it: a client signs every proof with the same key, so its checks,
/// its parse and its thumbprint are done once. Bounded (emptied when full).
#[derive(Default)]
pub struct ProofKeys {
    keys: std::collections::HashMap<Box<str>, (std::sync::Arc<KeySet>, String)>,
}

/// Proof keys kept per worker before the cache starts over.
const MAX_PROOF_KEYS: usize = 4096;

impl ProofKeys {
    /// The key set and thumbprint of a proof's `jwk` (its JSON text): a
    /// public key of a known type, used as the proof's own key only.
    fn get_or_parse(&mut self, text: &str) -> Result<(std::sync::Arc<KeySet>, String), DpopError> {
        if let Some((set, jkt)) = self.keys.get(text) {
            return Ok((set.clone(), jkt.clone()));
        }
        if !crate::json::strict(text.as_bytes()) {
            return Err(DpopError::Malformed);
        }
        let Ok(Value::Object(mut jwk)) = serde_json::from_str::<Value>(text) else {
            return Err(DpopError::Key);
        };
        if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m))
            || !matches!(jwk.get("kty"), Some(Value::String(k)) if k == "RSA" || k == "EC" || k == "OKP")
        {
            return Err(DpopError::Key);
        }
        // the key only as the proof's: no kid, alg or use of its own to match
        for m in ["kid", "alg", "use", "key_ops"] {
            jwk.remove(m);
        }
        let bare = Value::Object(jwk).to_string();
        let set = KeySet::parse(
            format!("{{\"keys\":[{bare}]}}").as_bytes(),
            KeySource::Network,
        )
        .map_err(|_| DpopError::Key)?;
        if set.keys.len() != 1 {
            return Err(DpopError::Key);
        }
        let jwk: Jwk = serde_json::from_str(&bare).map_err(|_| DpopError::Key)?;
        let jkt = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|_| DpopError::Key)?;
        if self.keys.len() >= MAX_PROOF_KEYS {
            self.keys.clear();
        }
        let set = std::sync::Arc::new(set);
        self.keys.insert(text.into(), (set.clone(), jkt.clone()));
        Ok((set, jkt))
    }
}

/// A proof that passed: its key's thumbprint and its `jti`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    pub jkt: String,
    pub jti: String,
}

/// A proof's JOSE header as the checks read it, in one strict pass: the
/// `jwk` is kept as its text (a key seen before is found by it).
#[derive(Default)]
struct ProofHeader<'a> {
    typ: Option<Scalar<'a>>,
    alg: Option<Scalar<'a>>,
    jwk: Option<&'a RawValue>,
    crit: bool,
}

impl<'de> Deserialize<'de> for ProofHeader<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ProofHeaderVisitor)
    }
}

struct ProofHeaderVisitor;

impl<'de> Visitor<'de> for ProofHeaderVisitor {
    type Value = ProofHeader<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a DPoP proof's JOSE header")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
        let mut h = ProofHeader::default();
        let mut names = Names::default();
        while let Some(Name(k)) = a.next_key::<Name<'de>>()? {
            names.add(k.clone())?;
            match &*k {
                "typ" => h.typ = Some(a.next_value_seed(Any)?),
                "alg" => h.alg = Some(a.next_value_seed(Any)?),
                "jwk" => h.jwk = Some(a.next_value()?),
                "crit" => {
                    a.next_value_seed(Any)?;
                    h.crit = true;
                }
                _ => {
                    a.next_value_seed(Any)?;
                }
            }
        }
        Ok(h)
    }
}

fn text<'s>(v: &'s Option<Scalar<'_>>) -> Option<&'s str> {
    match v {
        Some(Scalar::Str(s)) => Some(s),
        _ => None,
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

/// Is `claimed` the token's hash as `ath` carries it (base64url SHA-256)?
/// No allocation.
fn ath_matches(claimed: &str, token: &str) -> bool {
    let mut out = [0u8; 43];
    let d = digest::digest(&digest::SHA256, token.as_bytes());
    URL_SAFE_NO_PAD
        .encode_slice(d.as_ref(), &mut out)
        .is_ok_and(|n| out[..n] == *claimed.as_bytes())
}

/// RFC 9449 §4.3 step 9: `htu` names the request's URL, query and fragment
/// aside. The same text matches at once; other spellings are compared
/// normalised (`bare_url`).
fn same_target(htu: &str, url: &str) -> bool {
    let cut = |u: &str| u.find(['?', '#']).map_or(u.len(), |i| i);
    let (a, b) = (&htu[..cut(htu)], &url[..cut(url)]);
    if a == b && (a.starts_with("https://") || a.starts_with("http://")) {
        return true;
    }
    matches!((bare_url(htu), bare_url(url)), (Some(a), Some(b)) if a == b)
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
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(DpopError::Malformed);
    };
    let (mut hbuf, mut hheap) = ([0u8; 1024], Vec::new());
    let header = match jwt::decode_part(h, &mut hbuf, &mut hheap) {
        Some(bytes) => jwt::read_json(bytes, PhantomData::<ProofHeader>),
        None => None,
    };
    let Some(header) = header else {
        return Err(DpopError::Malformed);
    };
    match text(&header.typ) {
        Some(t) if t.eq_ignore_ascii_case("dpop+jwt") => {}
        _ => return Err(DpopError::Type),
    }
    let alg = match text(&header.alg) {
        Some(a) => parse_algorithm(a).map_err(|_| DpopError::Algorithm)?,
        None => return Err(DpopError::Algorithm),
    };
    if is_hmac(alg) || !req.algorithms.contains(&alg) {
        return Err(DpopError::Algorithm);
    }
    let Some(jwk) = header.jwk.filter(|j| j.get().starts_with('{')) else {
        return Err(DpopError::Key);
    };
    let (set, jkt) = keys.get_or_parse(jwk.get())?;
    // the JWS itself: base64url parts, no extension we would have to know
    if header.crit
        || h.is_empty()
        || p.is_empty()
        || s.is_empty()
        || !jwt::is_b64url(h)
        || !jwt::is_b64url(p)
        || !jwt::is_b64url(s)
    {
        return Err(DpopError::Malformed);
    }
    let parsed = Parsed::of_parts(alg, &proof[..h.len() + 1 + p.len()], s);
    jwt::verify(&parsed, &[&*set]).map_err(|_| DpopError::Signature)?;
    let (mut pbuf, mut pheap) = ([0u8; 1024], Vec::new());
    let claims = match jwt::decode_part(p, &mut pbuf, &mut pheap) {
        Some(bytes) => jwt::read_json(bytes, Pick(&["jti", "htm", "htu", "iat", "ath"])),
        None => None,
    };
    let Some([jti, htm, htu, iat, ath]) = claims else {
        return Err(DpopError::Malformed);
    };
    let Some(jti) = text(&jti).filter(|j| !j.is_empty() && j.len() <= 256) else {
        return Err(DpopError::NoJti);
    };
    if text(&htm) != Some(req.method) {
        return Err(DpopError::Method);
    }
    if !text(&htu).is_some_and(|u| same_target(u, req.url)) {
        return Err(DpopError::Url);
    }
    let iat = match iat {
        Some(Scalar::U64(n)) => n,
        _ => return Err(DpopError::Time),
    };
    if iat > req.now.saturating_add(req.window) || req.now > iat.saturating_add(req.window) {
        return Err(DpopError::Time);
    }
    if !text(&ath).is_some_and(|a| ath_matches(a, req.access_token)) {
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
    use serde_json::{json, Map};

    const EC_PRIV: &str = include_str!("../testdata/ec_priv.pem");
    const EC_JWKS: &str = include_str!("../testdata/ec_jwks.json");
    const RSA_PRIV: &str = include_str!("../testdata/rsa_priv.pem");
    const RSA_JWKS: &str = include_str!("../testdata/rsa_jwks.json");
    const NOW: u64 = 1_800_000_000;
    const TOKEN: &str = "access.token.here";

    /// The `ath` a client puts in its proof.
    fn ath(token: &str) -> String {
        URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, token.as_bytes()))
    }
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
    fn targets() {
        let u = "https://api.example.com/data";
        assert!(same_target(u, u));
        assert!(same_target(
            "https://api.example.com/data?a=1#f",
            "https://api.example.com/data?b"
        ));
        // other spellings of the same URL, normalised
        assert!(same_target("HTTPS://API.Example.com:443/data", u));
        assert!(same_target("https://api.example.com/x/../data", u));
        assert!(!same_target("https://api.example.com/data/", u));
        assert!(!same_target("https://api.example.com/dat", u));
        assert!(!same_target("http://api.example.com/data", u));
        assert!(!same_target("https://api.example.com:8443/data", u));
        assert!(!same_target(
            "ftp://api.example.com/data",
            "ftp://api.example.com/data"
        ));
        assert!(!same_target("", u));
        assert!(ath_matches(&ath("tok"), "tok"));
        assert!(!ath_matches(&ath("tok"), "tok2"));
        assert!(!ath_matches("", "tok"));
    }

    #[test]
    fn a_key_seen_before() {
        // the second proof of a key finds it parsed; another spelling of a
        // key, or a private member added, is read anew and judged anew
        let mut keys = ProofKeys::default();
        let first =
            check_proof_with(&proof_with(|_| {}, good_claims()), &req(), &mut keys).unwrap();
        let c = with(|m| drop(m.insert("jti".into(), json!("j2"))));
        let second = check_proof_with(&proof_with(|_| {}, c), &req(), &mut keys).unwrap();
        assert_eq!(first.jkt, second.jkt);
        assert_eq!(keys.keys.len(), 1);
        let good = proof_with(|_| {}, good_claims());
        let rest: Vec<&str> = good.split('.').collect();
        let mut priv_jwk = ec_jwk();
        priv_jwk.insert("d".into(), json!("AAAA"));
        let h = URL_SAFE_NO_PAD
            .encode(json!({"typ":"dpop+jwt","alg":"ES256","jwk": priv_jwk}).to_string());
        let forged = format!("{h}.{}.{}", rest[1], rest[2]);
        assert_eq!(
            check_proof_with(&forged, &req(), &mut keys).unwrap_err(),
            DpopError::Key
        );
        // a jwk that is not an object, a duplicate member inside it, crit
        let h = URL_SAFE_NO_PAD.encode(r#"{"typ":"dpop+jwt","alg":"ES256","jwk":"k"}"#);
        let p = format!("{h}.{}.{}", rest[1], rest[2]);
        assert_eq!(
            check_proof_with(&p, &req(), &mut keys).unwrap_err(),
            DpopError::Key
        );
        let dup = r#"{"typ":"dpop+jwt","alg":"ES256","jwk":{"kty":"EC","kty":"EC"}}"#;
        let p = format!("{}.{}.{}", URL_SAFE_NO_PAD.encode(dup), rest[1], rest[2]);
        assert_eq!(
            check_proof_with(&p, &req(), &mut keys).unwrap_err(),
            DpopError::Malformed
        );
        let dup = r#"{"typ":"dpop+jwt","typ":"dpop+jwt","alg":"ES256"}"#;
        let p = format!("{}.{}.{}", URL_SAFE_NO_PAD.encode(dup), rest[1], rest[2]);
        assert_eq!(
            check_proof_with(&p, &req(), &mut keys).unwrap_err(),
            DpopError::Malformed
        );
        let crit = proof_with(|h| h.crit = Some(vec!["x".into()]), good_claims());
        assert_eq!(
            check_proof_with(&crit, &req(), &mut keys).unwrap_err(),
            DpopError::Malformed
        );
        // whitespace around the jwk, as any JSON writer may put it
        let spaced = format!(
            r#"{{ "typ" : "dpop+jwt", "alg" : "ES256", "jwk" : {} }}"#,
            Value::Object(ec_jwk())
        );
        let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(spaced), rest[1]);
        let key = EncodingKey::from_ec_pem(EC_PRIV.as_bytes()).unwrap();
        let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::ES256).unwrap();
        assert!(check_proof_with(&format!("{input}.{sig}"), &req(), &mut keys).is_ok());
        // escaped strings in the claims read as their values
        let payload = format!(
            r#"{{"jti":"j\u0033","htm":"G\u0045T","htu":"https:\/\/api.example.com\/data","iat":{NOW},"ath":"{}"}}"#,
            ath(TOKEN)
        );
        let input = format!("{}.{}", rest[0], URL_SAFE_NO_PAD.encode(payload));
        let key = EncodingKey::from_ec_pem(EC_PRIV.as_bytes()).unwrap();
        let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::ES256).unwrap();
        let escaped = check_proof_with(&format!("{input}.{sig}"), &req(), &mut keys).unwrap();
        assert_eq!(escaped.jti, "j3");
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
