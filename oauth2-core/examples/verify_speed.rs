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
        let whole = rate(&format!("{name} jwt::validate"), || {
            std::hint::black_box(jwt::validate(&token, &[&set], &policy, NOW).unwrap());
        });
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
        let bare = rate(&format!("{name} signature only"), || {
            jwt::verify(&parsed, &[&set]).unwrap();
        });
        // the target: the whole validation within 10 % of the bare check
        println!("{name} validation / signature  {:>10.2}", whole / bare);
    }
}
