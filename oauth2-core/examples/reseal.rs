//! For the benchmark of a store's per-worker cache miss: the same session
//! cookie sealed again N times (each with its own nonce, so each is a value
//! no worker has cached: every request then reads the record from the
//! store). Run:
//! `cargo run --release -p oauth2-core --example reseal KEYFILE ISSUER CLIENT_ID COOKIE N`
//! (COOKIE: a store session's cookie value, sealed with the first key of
//! KEYFILE for that issuer and client id). Prints N values, one per line.

use oauth2_core::session::{CookieKeys, Purpose};

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let [keyfile, issuer, client_id, cookie, n] = a.as_slice() else {
        eprintln!("usage: reseal KEYFILE ISSUER CLIENT_ID COOKIE N");
        std::process::exit(2);
    };
    let text = std::fs::read_to_string(keyfile).expect("the key file");
    let keys = CookieKeys::parse(&text).expect("cookie keys");
    let binding = format!("{issuer}\n{client_id}").into_bytes();
    let id = keys
        .open_bound(Purpose::SessionId, &binding, cookie)
        .expect("a store session's cookie of this issuer and client");
    let n: usize = n.parse().expect("N");
    let mut out = String::new();
    for _ in 0..n {
        out.push_str(&keys.seal_bound(Purpose::SessionId, &binding, &id));
        out.push('\n');
    }
    print!("{out}");
}
