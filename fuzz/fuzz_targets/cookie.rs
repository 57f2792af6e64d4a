//! Session cookie opening: a Cookie header (any bytes) is parsed, chunks are
//! joined, the value is opened and the session read. Must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use oauth2_core::session::{join_chunks, parse_cookies, CookieKeys, Purpose, Session};
use std::sync::LazyLock;

static KEYS: LazyLock<CookieKeys> =
    LazyLock::new(|| CookieKeys::parse("a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s=").unwrap());

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else { return };
    let cookies: Vec<(&str, &str)> = parse_cookies(header).collect();
    let get = |n: &str| cookies.iter().find(|(k, _)| *k == n).map(|(_, v)| *v);
    if let Some(v) = join_chunks("oauth2_session", get) {
        if let Some(raw) = KEYS.open(Purpose::Session, &v) {
            let _ = Session::from_json(&raw);
        }
    }
    // and a sealed cookie whose contents are the input: opening must give it back
    let sealed = KEYS.seal(Purpose::Session, data);
    assert_eq!(KEYS.open(Purpose::Session, &sealed).as_deref(), Some(data));
    let _ = Session::from_json(data);
});
