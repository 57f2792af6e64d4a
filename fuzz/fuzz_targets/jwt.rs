//! Token parsing and validation: any bytes as a bearer token, against a
//! fixed key set (RSA and EC test keys) and policy. Must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use oauth2_core::config::DEFAULT_ALGORITHMS;
use oauth2_core::decide::{extract_bearer, Credential};
use oauth2_core::jwt::{self, Policy};
use oauth2_core::keys::{KeySet, KeySource};
use std::sync::LazyLock;

static KEYS: LazyLock<KeySet> = LazyLock::new(|| {
    KeySet::parse(include_bytes!("../../oauth2-core/testdata/rsa_jwks.json"), KeySource::Network)
        .unwrap()
        .merge(KeySet::parse(include_bytes!("../../oauth2-core/testdata/ec_jwks.json"), KeySource::Network).unwrap())
});

fuzz_target!(|data: &[u8]| {
    let policy = Policy {
        issuer: Some("https://op.test".into()),
        audiences: vec!["api".into()],
        algorithms: DEFAULT_ALGORITHMS.to_vec(),
        skew_secs: 60,
    };
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = jwt::validate(s, &[&KEYS], &policy, 1_800_000_000);
        let _ = jwt::looks_like_jwt(s);
    }
    if let Credential::Bearer(t) = extract_bearer(Some(data)) {
        let _ = jwt::validate(t, &[&KEYS], &policy, 1_800_000_000);
    }
});
