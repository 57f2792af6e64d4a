//! The login state: state cookies, callback query strings, return paths.
//! Must never panic; a path accepted as safe never leaves the origin.
#![no_main]
use libfuzzer_sys::fuzz_target;
use oauth2_core::login::{clean_error_code, parse_callback, parse_token_response};
use oauth2_core::session::{safe_return_path, CookieKeys, LoginState, Purpose};
use std::sync::LazyLock;

static KEYS: LazyLock<CookieKeys> =
    LazyLock::new(|| CookieKeys::parse("c3RhdGVzdGF0ZXN0YXRlc3RhdGVzdGF0ZXN0YXRlcyE=").unwrap());

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Some(raw) = KEYS.open(Purpose::State, s) {
        let _ = serde_json::from_slice::<LoginState>(&raw);
    }
    let p = parse_callback(s);
    if let Some(e) = p.error {
        let c = clean_error_code(&e);
        assert!(!c.contains('"') && !c.contains('<') || c.chars().all(|c| (' '..='~').contains(&c)));
    }
    if safe_return_path(s) {
        assert!(s.starts_with('/') && !s.starts_with("//") && !s.starts_with("/\\"));
        assert!(!s.contains('\r') && !s.contains('\n'));
    }
    let _ = parse_token_response(200, data);
    let _ = parse_token_response(400, data);
});
