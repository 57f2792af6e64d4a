//! How fast one worker validates JWTs it has not seen before (the cache-miss
//! path), next to the raw signature check of the same key. Run:
//! `cargo run --release -p oauth2-core --example verify_speed`
//! bench/run.sh prints these next to `openssl speed` in its report.

use std::time::{Duration, Instant};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use oauth2_core::config::DEFAULT_ALGORITHMS;
use oauth2_core::jwt::{self, Policy};
use oauth2_core::keys::{KeySet, KeySource};
use serde_json::json;

const RSA_PRIV: &str = include_str!("../testdata/rsa_priv.pem");
const RSA_JWKS: &str = include_str!("../testdata/rsa_jwks.json");
const EC_PRIV: &str = include_str!("../testdata/ec_priv.pem");
const EC_JWKS: &str = include_str!("../testdata/ec_jwks.json");
const NOW: u64 = 1_800_000_000;

fn rate(what: &str, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < Duration::from_millis(1500) {
        for _ in 0..100 {
            f();
        }
        n += 100;
    }
    let r = n as f64 / t.elapsed().as_secs_f64();
    println!("{what:<28} {r:>10.0}/s");
    r
}

/// Calls of `f` per second over about `ms` milliseconds.
fn slice(ms: u64, f: &mut impl FnMut()) -> f64 {
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < Duration::from_millis(ms) {
        for _ in 0..50 {
            f();
        }
        n += 50;
    }
    n as f64 / t.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `a` and `b` measured in turn, 15 slices of 200 ms each (the machine's
/// speed drifts between two long measurements): their median rates and the
/// median of the slices' ratios a/b.
fn paired(mut a: impl FnMut(), mut b: impl FnMut()) -> (f64, f64, f64) {
    let (mut ra, mut rb, mut q) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..15 {
        let x = slice(200, &mut a);
        let y = slice(200, &mut b);
        ra.push(x);
        rb.push(y);
        q.push(x / y);
    }
    (median(ra), median(rb), median(q))
}

fn main() {
    let policy = Policy {
        issuer: Some("https://op.test".into()),
        audiences: vec!["api".into()],
        algorithms: DEFAULT_ALGORITHMS.to_vec(),
        skew_secs: 60,
    };
    let claims = json!({"iss":"https://op.test","aud":"api","sub":"alice","scope":"read write",
        "client_id":"bench","iat":NOW-10,"exp":NOW+300,"jti":"0123456789abcdef"});
    for (name, alg, kid, pem, jwks) in [
        ("RS256", Algorithm::RS256, "test-rsa", RSA_PRIV, RSA_JWKS),
        ("ES256", Algorithm::ES256, "test-ec", EC_PRIV, EC_JWKS),
    ] {
        let mut h = Header::new(alg);
        h.kid = Some(kid.into());
        let key = match alg {
            Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
            _ => EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        };
        let token = encode(&h, &claims, &key).unwrap();
        let set = KeySet::parse(jwks.as_bytes(), KeySource::Network).unwrap();
        assert!(jwt::validate(&token, &[&set], &policy, NOW).is_ok());
        rate(&format!("{name} token syntax checks"), || {
            let t = oauth2_core::decide::token68(std::hint::black_box(token.as_bytes())).unwrap();
            assert!(jwt::looks_like_jwt(t));
        });
        rate(&format!("{name} jwt::parse"), || {
            std::hint::black_box(jwt::parse(std::hint::black_box(&token), &policy).unwrap());
        });
        let parsed = jwt::parse(&token, &policy).unwrap();
        let dk = set.keys[0].decoding();
        let (input, sig) = token.rsplit_once('.').unwrap();
        rate(&format!("{name} jsonwebtoken verify"), || {
            assert!(jsonwebtoken::crypto::verify(sig, input.as_bytes(), dk, alg).unwrap());
        });
        // the target: the whole validation within 10 % of the bare check
        let (whole, bare, q) = paired(
            || {
                std::hint::black_box(jwt::validate(&token, &[&set], &policy, NOW).unwrap());
            },
            || {
                jwt::verify(&parsed, &[&set]).unwrap();
            },
        );
        println!("{:<28} {whole:>10.0}/s", format!("{name} jwt::validate"));
        println!("{:<28} {bare:>10.0}/s", format!("{name} signature only"));
        println!("{name} validation / signature  {q:>10.2}");
    }
}
