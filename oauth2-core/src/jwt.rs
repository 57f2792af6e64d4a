//! Validation of JWT access tokens (RFC 7519, RFC 9068) against a key set.
//!
//! The allowed algorithms come from configuration, never from the token; the
//! key comes from the configured key set, never from `jku`, `x5u` or an
//! embedded `jwk` header (those are ignored).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;

use serde::de::{DeserializeSeed, MapAccess, Visitor};

pub use crate::claims::{Binding, Claims};
use crate::config::parse_algorithm;
use crate::error::Rejection;
use crate::json::{Any, AnyOf, Name, Names, Pick, Scalar};
use crate::keys::KeySet;

/// Tokens longer than this are rejected before any parsing.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

#[derive(Debug, Clone)]
pub struct Policy {
    /// Expected `iss`; `None` skips the check (no issuer configured).
    pub issuer: Option<String>,
    /// Accepted `aud` values; at least one must be present in the token.
    pub audiences: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub skew_secs: u64,
}

#[derive(Debug)]
pub struct Validated {
    pub claims: Claims,
    pub exp: u64,
    /// The payload has a `nonce` (an ID token's mark).
    pub nonce: bool,
}

/// A token split into its parts, with the header decoded.
pub struct Parsed<'a> {
    pub alg: Algorithm,
    pub kid: Option<String>,
    signing_input: &'a str,
    signature: &'a str,
    payload: &'a str,
}

impl<'a> Parsed<'a> {
    /// The parts of a JWS whose header the caller read itself (a DPoP
    /// proof's), for `verify`.
    pub(crate) fn of_parts(alg: Algorithm, signing_input: &'a str, signature: &'a str) -> Self {
        Parsed {
            alg,
            kid: None,
            signing_input,
            signature,
            payload: "",
        }
    }
}

/// The unverified `iss` of a JWT's payload: only to choose which provider's
/// keys and rules validate it (several providers at one location); the
/// validation that follows checks it again, signed.
pub fn peek_issuer(token: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    let payload = token.split('.').nth(1)?;
    if payload.len() > MAX_TOKEN_LEN {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice::<Iss>(&bytes).ok()?.iss
}

/// Does this look like a compact JWS (three base64url parts)? Used to pick
/// JWT validation over introspection for `oauth2_token_validation auto`.
pub fn looks_like_jwt(token: &str) -> bool {
    let b = token.as_bytes();
    memchr::memchr_iter(b'.', b).take(3).count() == 2
        && all_bytes(b, |c| b64url_byte(c) | (c == b'.'))
}

/// A base64url character, without branches or tables so that the scans
/// below compile to vector code (they run over every new token).
#[inline(always)]
fn b64url_byte(c: u8) -> bool {
    ((c | 0x20).wrapping_sub(b'a') < 26) | (c.wrapping_sub(b'0') < 10) | (c == b'-') | (c == b'_')
}

/// Every byte passes `pred`: checked 64 bytes at a time with no early exit
/// inside a block, which the compiler vectorizes.
#[inline(always)]
pub(crate) fn all_bytes(s: &[u8], pred: impl Fn(u8) -> bool + Copy) -> bool {
    s.chunks(64)
        .all(|c| c.iter().fold(0u8, |bad, &b| bad | u8::from(!pred(b))) == 0)
}

pub(crate) fn is_b64url(s: &str) -> bool {
    all_bytes(s.as_bytes(), b64url_byte)
}

/// Base64url-decode a part into `buf` when it fits, else onto the heap.
pub(crate) fn decode_part<'b>(
    part: &str,
    buf: &'b mut [u8],
    heap: &'b mut Vec<u8>,
) -> Option<&'b [u8]> {
    if part.len().div_ceil(4) * 3 <= buf.len() {
        let n = URL_SAFE_NO_PAD.decode_slice(part, buf).ok()?;
        Some(&buf[..n])
    } else {
        *heap = URL_SAFE_NO_PAD.decode(part).ok()?;
        Some(heap)
    }
}

/// Parse JSON text completely (nothing may follow it) with `seed`.
pub(crate) fn read_json<'de, S: DeserializeSeed<'de>>(
    bytes: &'de [u8],
    seed: S,
) -> Option<S::Value> {
    let mut d = serde_json::Deserializer::from_slice(bytes);
    let v = seed.deserialize(&mut d).ok()?;
    d.end().ok()?;
    Some(v)
}

/// `typ` of an access token (RFC 9068) or a plain JWT.
fn access_token_type(t: &str) -> bool {
    t.eq_ignore_ascii_case("jwt") || t.eq_ignore_ascii_case("at+jwt")
}

/// Step one: split, decode the header, check `alg`, `typ` and `crit`.
pub fn parse<'a>(token: &'a str, policy: &Policy) -> Result<Parsed<'a>, Rejection> {
    parse_typed(token, policy, access_token_type)
}

/// `parse` for another kind of JWT: `typ` (without `application/`) must
/// pass `typ_ok` when present.
pub fn parse_typed<'a>(
    token: &'a str,
    policy: &Policy,
    typ_ok: fn(&str) -> bool,
) -> Result<Parsed<'a>, Rejection> {
    if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return Err(Rejection::Malformed);
    }
    let mut parts = token.splitn(4, '.');
    let (h, p, s) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) => (h, p, s),
        _ => return Err(Rejection::Malformed),
    };
    if h.is_empty() || p.is_empty() || !is_b64url(h) || !is_b64url(p) || !is_b64url(s) {
        return Err(Rejection::Malformed);
    }
    let (mut buf, mut heap) = ([0u8; 512], Vec::new());
    let bytes = decode_part(h, &mut buf, &mut heap).ok_or(Rejection::Malformed)?;
    let [alg, typ, kid, crit] =
        read_json(bytes, Pick(&["alg", "typ", "kid", "crit"])).ok_or(Rejection::Malformed)?;
    let alg_name = match &alg {
        Some(Scalar::Str(a)) => a,
        _ => return Err(Rejection::Malformed),
    };
    // `none` and anything unknown fail here; the list is the configuration's.
    let alg = parse_algorithm(alg_name).map_err(|_| Rejection::BadAlgorithm)?;
    if !policy.algorithms.contains(&alg) {
        return Err(Rejection::BadAlgorithm);
    }
    if s.is_empty() {
        return Err(Rejection::BadSignature);
    }
    // RFC 7515 §4.1.11: we understand no extension, so any `crit` is fatal.
    if crit.is_some() {
        return Err(Rejection::UnsupportedCritical);
    }
    match &typ {
        None => {}
        Some(Scalar::Str(t)) if typ_ok(t.strip_prefix("application/").unwrap_or(t)) => {}
        Some(_) => return Err(Rejection::BadType),
    }
    let kid = match kid {
        None => None,
        Some(Scalar::Str(k)) => Some(k.into_owned()),
        Some(_) => return Err(Rejection::Malformed),
    };
    Ok(Parsed {
        alg,
        kid,
        signing_input: &token[..h.len() + 1 + p.len()],
        signature: s,
        payload: p,
    })
}

/// Step two: verify the signature with the key sets (fetched keys, then the
/// static ones). `UnknownKey` only when no set has the token's `kid`.
pub fn verify(parsed: &Parsed<'_>, sets: &[&KeySet]) -> Result<(), Rejection> {
    let kid = parsed.kid.as_deref();
    // without a `kid` every key of the algorithm is a candidate
    let mut known = kid.is_none();
    let (mut buf, mut heap) = ([0u8; 768], Vec::new());
    let signature = decode_part(parsed.signature, &mut buf, &mut heap);
    let input = parsed.signing_input.as_bytes();
    for key in sets.iter().flat_map(|s| s.keys.iter()) {
        if kid.is_some() && key.kid.as_deref() != kid {
            continue;
        }
        known = true;
        if !key.fits(parsed.alg) {
            continue;
        }
        let ok = match key.parsed(parsed.alg) {
            Some(pk) => signature.is_some_and(|s| pk.verify_sig(input, s).is_ok()),
            // HMAC secrets: jsonwebtoken's constant-time check
            None => {
                jsonwebtoken::crypto::verify(parsed.signature, input, key.decoding(), parsed.alg)
                    .unwrap_or(false)
            }
        };
        if ok {
            return Ok(());
        }
    }
    if known {
        Err(Rejection::BadSignature)
    } else {
        Err(Rejection::UnknownKey)
    }
}

/// A time claim as the payload had it.
#[derive(Clone, Copy)]
enum Time {
    At(u64),
    Bad,
}

fn time(v: Scalar<'_>) -> Time {
    match v {
        Scalar::U64(v) => Time::At(v),
        Scalar::F64(f) if f.is_finite() && f >= 0.0 => Time::At(f as u64),
        _ => Time::Bad,
    }
}

/// The registered claims of a payload, checked against the policy while it
/// is read (`iss` and `aud` are compared in place, nothing is copied).
#[derive(Default)]
struct Registered {
    exp: Option<Time>,
    nbf: Option<Time>,
    iat: Option<Time>,
    iss_ok: bool,
    aud_ok: bool,
    nonce: bool,
    /// `cnf`: `None` when absent, `Some(Err)` when not an object.
    cnf: Option<Result<Binding, ()>>,
}

/// `cnf` (RFC 7800): its `jkt` and `x5t#S256` members; every other member
/// walked strictly.
struct CnfSeed;

impl<'de> DeserializeSeed<'de> for CnfSeed {
    type Value = Result<Binding, ()>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for CnfSeed {
    type Value = Result<Binding, ()>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a confirmation object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
        let mut b = Binding::default();
        let mut names = Names::default();
        while let Some(Name(k)) = a.next_key::<Name<'de>>()? {
            names.add(k.clone())?;
            let v = a.next_value_seed(Any)?;
            let text = match v {
                Scalar::Str(s) => Some(Box::from(&*s)),
                _ => None,
            };
            match &*k {
                "jkt" => b.jkt = text,
                "x5t#S256" => b.x5t = text,
                _ => {}
            }
        }
        Ok(Ok(b))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, a: A) -> Result<Self::Value, A::Error> {
        Any.deserialize(serde::de::value::SeqAccessDeserializer::new(a))?;
        Ok(Err(()))
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Err(()))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Err(()))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Err(()))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Err(()))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Err(()))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Err(()))
    }
}

struct PayloadSeed<'p>(&'p Policy);

impl<'de> DeserializeSeed<'de> for PayloadSeed<'_> {
    type Value = Registered;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Registered, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PayloadSeed<'_> {
    type Value = Registered;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JWT claims set")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Registered, A::Error> {
        let mut r = Registered::default();
        let mut names = Names::default();
        while let Some(Name(k)) = a.next_key::<Name<'de>>()? {
            names.add(k.clone())?;
            match &*k {
                "aud" => r.aud_ok = a.next_value_seed(AnyOf(&self.0.audiences))?,
                "cnf" => r.cnf = Some(a.next_value_seed(CnfSeed)?),
                name => {
                    let v = a.next_value_seed(Any)?;
                    match name {
                        "exp" => r.exp = Some(time(v)),
                        "nbf" => r.nbf = Some(time(v)),
                        "iat" => r.iat = Some(time(v)),
                        "iss" => {
                            r.iss_ok =
                                matches!((&v, &self.0.issuer), (Scalar::Str(t), Some(i)) if t == i)
                        }
                        "nonce" => r.nonce = true,
                        _ => {}
                    }
                }
            }
        }
        Ok(r)
    }
}

/// Step three: the claims (`exp`, `nbf`, `iat`, `iss`, `aud`), read from
/// the payload's JSON in one pass. Returns `exp` and whether a `nonce` is
/// there.
fn check_payload(
    json: &[u8],
    policy: &Policy,
    now: u64,
) -> Result<(u64, bool, Binding), Rejection> {
    let r = read_json(json, PayloadSeed(policy)).ok_or(Rejection::Malformed)?;
    let skew = policy.skew_secs;
    let exp = match r.exp {
        Some(Time::At(v)) => v,
        _ => return Err(Rejection::BadTimeClaim),
    };
    if now >= exp.saturating_add(skew) {
        return Err(Rejection::Expired);
    }
    match r.nbf {
        Some(Time::Bad) => return Err(Rejection::BadTimeClaim),
        Some(Time::At(nbf)) if nbf > now.saturating_add(skew) => {
            return Err(Rejection::NotYetValid)
        }
        _ => {}
    }
    match r.iat {
        Some(Time::Bad) => return Err(Rejection::BadTimeClaim),
        Some(Time::At(iat)) if iat > now.saturating_add(skew) => {
            return Err(Rejection::IssuedInFuture)
        }
        _ => {}
    }
    if policy.issuer.is_some() && !r.iss_ok {
        return Err(Rejection::WrongIssuer);
    }
    if !r.aud_ok {
        return Err(Rejection::WrongAudience);
    }
    let binding = match r.cnf {
        None => Binding::default(),
        Some(Ok(b)) => b,
        // a confirmation we cannot read: bound to something unknown
        Some(Err(())) => return Err(Rejection::Malformed),
    };
    Ok((exp, r.nonce, binding))
}

/// A bearer token: `validate`, and it must not be an ID token (one carries
/// `nonce`, OpenID Connect Core §2): an ID token shown to an API is a login's
/// proof for the client, not an access grant.
pub fn validate_access_token(
    token: &str,
    sets: &[&KeySet],
    policy: &Policy,
    now: u64,
) -> Result<Validated, Rejection> {
    let v = validate(token, sets, policy, now)?;
    if v.nonce {
        return Err(Rejection::IdToken);
    }
    Ok(v)
}

/// The payload of a parsed (and verified) token: strict JSON of an object.
pub fn payload_map(
    parsed: &Parsed<'_>,
) -> Result<serde_json::Map<String, serde_json::Value>, Rejection> {
    let json = URL_SAFE_NO_PAD
        .decode(parsed.payload)
        .map_err(|_| Rejection::Malformed)?;
    if !crate::json::strict(&json) {
        return Err(Rejection::Malformed);
    }
    match serde_json::from_slice(&json) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        _ => Err(Rejection::Malformed),
    }
}

/// The whole check: parse, verify, claims. The payload is decoded once into
/// the buffer the claims then keep.
pub fn validate(
    token: &str,
    sets: &[&KeySet],
    policy: &Policy,
    now: u64,
) -> Result<Validated, Rejection> {
    let parsed = parse(token, policy)?;
    verify(&parsed, sets)?;
    let json = URL_SAFE_NO_PAD
        .decode(parsed.payload)
        .map_err(|_| Rejection::Malformed)?;
    let (exp, nonce, binding) = check_payload(&json, policy, now)?;
    Ok(Validated {
        claims: Claims::bound(json, binding),
        exp,
        nonce,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_free_scans_match_the_alphabet() {
        for c in 0..=255u8 {
            let b64 = c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
            assert_eq!(b64url_byte(c), b64, "byte {c:#04x}");
            for at in [0, 63, 64, 150] {
                let mut t = vec![b'A'; 151];
                t[at] = c;
                let s = String::from_utf8_lossy(&t).into_owned();
                if s.len() == t.len() {
                    assert_eq!(is_b64url(&s), b64, "byte {c:#04x} at {at}");
                }
                t[10] = b'.';
                t[120] = b'.';
                // the plain definition, byte by byte
                let reference = t
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                    && t.iter().filter(|&&b| b == b'.').count() == 2;
                if let Ok(s) = std::str::from_utf8(&t) {
                    assert_eq!(looks_like_jwt(s), reference, "byte {c:#04x} at {at}");
                }
            }
        }
        assert!(looks_like_jwt("a.b.c"));
        assert!(!looks_like_jwt("a.b.c.d"));
        assert!(!looks_like_jwt("a.b"));
        assert!(!looks_like_jwt("a.b+.c"));
    }

    use crate::config::DEFAULT_ALGORITHMS;
    use crate::keys::KeySource;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::{json, Value};

    // A throwaway RSA-2048 test key (generated for these tests only).
    const RSA_PRIV: &str = include_str!("../testdata/rsa_priv.pem");
    const RSA_JWKS: &str = include_str!("../testdata/rsa_jwks.json");
    const RSA_PUB_PEM: &str = include_str!("../testdata/rsa_pub.pem");
    const FOREIGN_PRIV: &str = include_str!("../testdata/foreign_priv.pem");
    const EC_PRIV: &str = include_str!("../testdata/ec_priv.pem");
    const EC_JWKS: &str = include_str!("../testdata/ec_jwks.json");
    const NOW: u64 = 1_800_000_000;

    fn policy() -> Policy {
        Policy {
            issuer: Some("https://op.test".into()),
            audiences: vec!["api".into()],
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
            skew_secs: 60,
        }
    }

    fn keys() -> KeySet {
        KeySet::parse(RSA_JWKS.as_bytes(), KeySource::Network)
            .unwrap()
            .merge(KeySet::parse(EC_JWKS.as_bytes(), KeySource::Network).unwrap())
    }

    fn claims() -> Value {
        json!({"iss":"https://op.test","aud":"api","sub":"alice","iat":NOW-10,"exp":NOW+300})
    }

    fn sign_with(c: &Value, alg: Algorithm, kid: Option<&str>, pem: &str) -> String {
        let mut h = Header::new(alg);
        h.kid = kid.map(str::to_string);
        h.typ = Some("at+jwt".into());
        let key = match alg {
            Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
            _ => EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        };
        encode(&h, c, &key).unwrap()
    }

    fn sign(c: &Value) -> String {
        sign_with(c, Algorithm::RS256, Some("test-rsa"), RSA_PRIV)
    }

    fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    fn check(t: &str) -> Result<Validated, Rejection> {
        validate(t, &[&keys()], &policy(), NOW)
    }

    #[test]
    fn valid_rs256_and_es256() {
        let v = check(&sign(&claims())).unwrap();
        assert_eq!(v.claims["sub"], "alice");
        assert_eq!(v.exp, NOW + 300);
        let es = sign_with(&claims(), Algorithm::ES256, Some("test-ec"), EC_PRIV);
        assert!(check(&es).is_ok());
        // without kid: every fitting key is tried
        let nokid = sign_with(&claims(), Algorithm::RS256, None, RSA_PRIV);
        assert!(check(&nokid).is_ok());
    }

    #[test]
    fn time_claims() {
        let mut c = claims();
        c["exp"] = json!(NOW - 61);
        assert_eq!(check(&sign(&c)).unwrap_err(), Rejection::Expired);
        c["exp"] = json!(NOW - 30); // within skew
        assert!(check(&sign(&c)).is_ok());
        let mut c = claims();
        c["nbf"] = json!(NOW + 120);
        assert_eq!(check(&sign(&c)).unwrap_err(), Rejection::NotYetValid);
        c["nbf"] = json!(NOW + 30);
        assert!(check(&sign(&c)).is_ok());
        let mut c = claims();
        c["iat"] = json!(NOW + 3600);
        assert_eq!(check(&sign(&c)).unwrap_err(), Rejection::IssuedInFuture);
        let mut c = claims();
        c.as_object_mut().unwrap().remove("exp");
        assert_eq!(check(&sign(&c)).unwrap_err(), Rejection::BadTimeClaim);
        let mut c = claims();
        c["exp"] = json!("1900000000");
        assert_eq!(check(&sign(&c)).unwrap_err(), Rejection::BadTimeClaim);
        let mut c = claims();
        c["exp"] = json!(-5);
        assert_eq!(check(&sign(&c)).unwrap_err(), Rejection::BadTimeClaim);
        let mut c = claims();
        c["exp"] = json!(u64::MAX);
        assert!(check(&sign(&c)).is_ok());
    }

    #[test]
    fn issuer_and_audience() {
        let mut c = claims();
        c["iss"] = json!("https://evil.test");
        assert_eq!(check(&sign(&c)).unwrap_err(), Rejection::WrongIssuer);
        c.as_object_mut().unwrap().remove("iss");
        assert_eq!(check(&sign(&c)).unwrap_err(), Rejection::WrongIssuer);
        // exact: the configured issuer plus a trailing "/" is another issuer
        let mut c = claims();
        let iss = c["iss"].as_str().unwrap().to_string();
        c["iss"] = json!(format!("{iss}/"));
        assert_eq!(check(&sign(&c)).unwrap_err(), Rejection::WrongIssuer);
        let mut c = claims();
        c["aud"] = json!("other");
        assert_eq!(check(&sign(&c)).unwrap_err(), Rejection::WrongAudience);
        c["aud"] = json!(["other", "api"]);
        assert!(check(&sign(&c)).is_ok());
        c["aud"] = json!([1, 2]);
        assert_eq!(check(&sign(&c)).unwrap_err(), Rejection::WrongAudience);
        c.as_object_mut().unwrap().remove("aud");
        assert_eq!(check(&sign(&c)).unwrap_err(), Rejection::WrongAudience);
    }

    #[test]
    fn every_rsa_algorithm_with_the_parsed_key() {
        // the same key, not pinned to RS256
        let jwks = RSA_JWKS
            .replace(r#""alg":"RS256","#, "")
            .replace(r#","alg":"RS256""#, "");
        assert!(!jwks.contains("RS256"));
        let set = KeySet::parse(jwks.as_bytes(), KeySource::Network).unwrap();
        let mut p = policy();
        p.algorithms.extend([
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
            Algorithm::RS384,
            Algorithm::RS512,
        ]);
        for alg in [
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ] {
            let t = sign_with(&claims(), alg, Some("test-rsa"), RSA_PRIV);
            assert!(validate(&t, &[&set], &p, NOW).is_ok(), "{alg:?}");
            let f = sign_with(&claims(), alg, Some("test-rsa"), FOREIGN_PRIV);
            assert_eq!(
                validate(&f, &[&set], &p, NOW).unwrap_err(),
                Rejection::BadSignature,
                "{alg:?}"
            );
        }
    }

    #[test]
    fn signatures() {
        let t = sign(&claims());
        // tampered signature
        let mut b = t.clone().into_bytes();
        let i = b.len() - 10;
        b[i] = if b[i] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            check(&String::from_utf8(b).unwrap()).unwrap_err(),
            Rejection::BadSignature
        );
        // tampered payload, original signature
        let parts: Vec<&str> = t.split('.').collect();
        let mut c = claims();
        c["sub"] = json!("mallory");
        let forged = format!("{}.{}.{}", parts[0], b64(&c), parts[2]);
        assert_eq!(check(&forged).unwrap_err(), Rejection::BadSignature);
        // foreign key, claiming our kid
        let f = sign_with(&claims(), Algorithm::RS256, Some("test-rsa"), FOREIGN_PRIV);
        assert_eq!(check(&f).unwrap_err(), Rejection::BadSignature);
        // unknown kid
        let u = sign_with(&claims(), Algorithm::RS256, Some("nope"), RSA_PRIV);
        assert_eq!(check(&u).unwrap_err(), Rejection::UnknownKey);
        // empty signature
        let e = format!("{}.{}.", parts[0], parts[1]);
        assert_eq!(check(&e).unwrap_err(), Rejection::BadSignature);
    }

    #[test]
    fn algorithm_attacks() {
        let body = b64(&claims());
        for alg in ["none", "None", "nOnE", "NONE"] {
            let h = b64(&json!({"alg": alg, "typ": "JWT"}));
            assert_eq!(
                check(&format!("{h}.{body}.")).unwrap_err(),
                Rejection::BadAlgorithm
            );
            assert_eq!(
                check(&format!("{h}.{body}.AAAA")).unwrap_err(),
                Rejection::BadAlgorithm
            );
        }
        // HS256 keyed with the RSA public key: not allowed by default...
        let hs = {
            let mut h = Header::new(Algorithm::HS256);
            h.kid = Some("test-rsa".into());
            encode(
                &h,
                &claims(),
                &EncodingKey::from_secret(RSA_PUB_PEM.as_bytes()),
            )
            .unwrap()
        };
        assert_eq!(check(&hs).unwrap_err(), Rejection::BadAlgorithm);
        // ...and even when HS256 is allowed, an RSA key never verifies it.
        let mut p = policy();
        p.algorithms.push(Algorithm::HS256);
        assert_eq!(
            validate(&hs, &[&keys()], &p, NOW).unwrap_err(),
            Rejection::BadSignature
        );
        // a restricted list is honoured
        let mut p = policy();
        p.algorithms = vec![Algorithm::ES256];
        assert_eq!(
            validate(&sign(&claims()), &[&keys()], &p, NOW).unwrap_err(),
            Rejection::BadAlgorithm
        );
    }

    #[test]
    fn header_rules() {
        let t = sign(&claims());
        let parts: Vec<&str> = t.split('.').collect();
        let with_header = |h: Value| format!("{}.{}.{}", b64(&h), parts[1], parts[2]);
        let crit = with_header(json!({"alg":"RS256","kid":"test-rsa","crit":["exp"],"exp":1}));
        assert_eq!(check(&crit).unwrap_err(), Rejection::UnsupportedCritical);
        let typ = with_header(json!({"alg":"RS256","kid":"test-rsa","typ":"JWE"}));
        assert_eq!(check(&typ).unwrap_err(), Rejection::BadType);
        // jku / x5u / jwk headers are ignored: the key is still ours, so the
        // (unchanged-header) signature check decides; here the header changed.
        let jku = with_header(json!({"alg":"RS256","kid":"test-rsa","jku":"https://evil/jwks"}));
        assert_eq!(check(&jku).unwrap_err(), Rejection::BadSignature);
        let kidnum = with_header(json!({"alg":"RS256","kid":5}));
        assert_eq!(check(&kidnum).unwrap_err(), Rejection::Malformed);
        // typ variants accepted
        for typ in ["JWT", "at+jwt", "application/at+jwt", "jwt"] {
            let mut h = Header::new(Algorithm::RS256);
            h.kid = Some("test-rsa".into());
            h.typ = Some(typ.into());
            let k = EncodingKey::from_rsa_pem(RSA_PRIV.as_bytes()).unwrap();
            assert!(check(&encode(&h, &claims(), &k).unwrap()).is_ok(), "{typ}");
        }
    }

    #[test]
    fn garbage() {
        let t = sign(&claims());
        let parts: Vec<&str> = t.split('.').collect();
        let cases = vec![
            String::new(),
            "abc".into(),
            "a.b".into(),
            "a.b.c.d".into(),
            format!("{t}.x"),
            "!!!.???.***".into(),
            format!("{}.{}.{}", "bm90IGpzb24", parts[1], parts[2]),
            format!("{}.{}.{}", b64(&json!("RS256")), parts[1], parts[2]),
            format!("{}.{}.{}", parts[0], parts[1].to_owned() + "=", parts[2]),
            "A".repeat(20 * 1024),
            format!("{}.{}.{}", parts[0], "A".repeat(20 * 1024), parts[2]),
            ".".repeat(3),
        ];
        for c in cases {
            assert_eq!(check(&c).unwrap_err(), Rejection::Malformed, "{:.60}", c);
        }
        // the signature is checked before the payload is read
        let p = format!("{}.{}.{}", parts[0], "bm90IGpzb24", parts[2]);
        assert_eq!(check(&p).unwrap_err(), Rejection::BadSignature);
        // a non-object payload with a valid signature is still malformed
        let h = Header {
            kid: Some("test-rsa".into()),
            ..Header::new(Algorithm::RS256)
        };
        let k = EncodingKey::from_rsa_pem(RSA_PRIV.as_bytes()).unwrap();
        let arr = encode(&h, &json!([1]), &k).unwrap();
        assert_eq!(check(&arr).unwrap_err(), Rejection::Malformed);
    }

    #[test]
    fn duplicate_member_names_are_malformed() {
        let k = EncodingKey::from_rsa_pem(RSA_PRIV.as_bytes()).unwrap();
        let h = Header {
            kid: Some("test-rsa".into()),
            ..Header::new(Algorithm::RS256)
        };
        let t = encode(&h, &claims(), &k).unwrap();
        let parts: Vec<&str> = t.split('.').collect();
        // re-sign a payload with "sub" twice
        let dup = format!(
            "{{\"iss\":\"https://op.test\",\"aud\":\"api\",\"exp\":{},\"sub\":\"alice\",\"sub\":\"admin\"}}",
            NOW + 300
        );
        let input = format!("{}.{}", parts[0], URL_SAFE_NO_PAD.encode(dup));
        let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &k, Algorithm::RS256).unwrap();
        assert_eq!(
            check(&format!("{input}.{sig}")).unwrap_err(),
            Rejection::Malformed
        );
        // nested duplicates too
        let nested = format!(
            "{{\"iss\":\"https://op.test\",\"aud\":\"api\",\"exp\":{},\"o\":{{\"a\":1,\"a\":2}}}}",
            NOW + 300
        );
        let input = format!("{}.{}", parts[0], URL_SAFE_NO_PAD.encode(nested));
        let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &k, Algorithm::RS256).unwrap();
        assert_eq!(
            check(&format!("{input}.{sig}")).unwrap_err(),
            Rejection::Malformed
        );
        // a duplicate in the header
        let hdr = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","alg":"none","kid":"test-rsa"}"#);
        assert_eq!(
            check(&format!("{hdr}.{}.{}", parts[1], parts[2])).unwrap_err(),
            Rejection::Malformed
        );
    }

    #[test]
    fn the_confirmation_is_read_with_the_claims() {
        let mut c = claims();
        c["cnf"] = json!({"jkt": "thumb", "x5t#S256": "cert", "other": [1, {"a": 2}]});
        let v = check(&sign(&c)).unwrap();
        assert_eq!(v.claims.binding.jkt.as_deref(), Some("thumb"));
        assert_eq!(v.claims.binding.x5t.as_deref(), Some("cert"));
        assert!(check(&sign(&claims())).unwrap().claims.binding.is_none());
        c["cnf"] = json!("not an object");
        assert_eq!(check(&sign(&c)).unwrap_err(), Rejection::Malformed);
        c["cnf"] = json!({"jkt": "a", "jkt": "b"});
        // (json! keeps one of them: build the duplicate by hand)
        let dup = format!(
            "{{\"iss\":\"https://op.test\",\"aud\":\"api\",\"exp\":{},\"cnf\":{{\"jkt\":\"a\",\"jkt\":\"b\"}}}}",
            NOW + 300
        );
        let k = EncodingKey::from_rsa_pem(RSA_PRIV.as_bytes()).unwrap();
        let h = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"test-rsa"}"#);
        let input = format!("{h}.{}", URL_SAFE_NO_PAD.encode(dup));
        let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &k, Algorithm::RS256).unwrap();
        assert_eq!(
            check(&format!("{input}.{sig}")).unwrap_err(),
            Rejection::Malformed
        );
    }

    #[test]
    fn jwt_shape() {
        assert!(looks_like_jwt(&sign(&claims())));
        assert!(!looks_like_jwt("opaque-token-value"));
        assert!(!looks_like_jwt("a.b.c.d"));
        assert!(!looks_like_jwt("a b.c.d"));
    }

    #[test]
    fn an_id_token_is_not_an_access_token() {
        let mut c = claims();
        assert!(validate_access_token(&sign(&c), &[&keys()], &policy(), NOW).is_ok());
        c["nonce"] = json!("n-0S6_WzA2Mj");
        assert_eq!(
            validate_access_token(&sign(&c), &[&keys()], &policy(), NOW).unwrap_err(),
            Rejection::IdToken
        );
        assert!(
            validate(&sign(&c), &[&keys()], &policy(), NOW).is_ok(),
            "an ID token still validates as a JWT"
        );
    }

    #[test]
    fn the_issuer_is_peeked_without_verifying() {
        let t = sign(&claims());
        assert_eq!(peek_issuer(&t).as_deref(), Some("https://op.test"));
        assert_eq!(peek_issuer("a.b.c"), None);
        assert_eq!(peek_issuer("nodots"), None);
        let mut c = claims();
        c.as_object_mut().unwrap().remove("iss");
        assert_eq!(peek_issuer(&sign(&c)), None);
    }
}
