//! Directive values: every parser of `oauth2_core::config` and friends, on
//! any input. Must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use oauth2_core::authz::ClaimRule;
use oauth2_core::config::*;
use oauth2_core::keys::{KeySet, KeySource, Metadata};
use oauth2_core::session::CookieKeys;

fuzz_target!(|data: &[u8]| {
    let _ = KeySet::parse(data, KeySource::File);
    let _ = Metadata::parse(data, "https://op.test");
    let Ok(s) = std::str::from_utf8(data) else { return };
    let _ = parse_duration(s);
    let _ = parse_size(s);
    let _ = parse_http_url(s);
    let _ = parse_path_or_url(s);
    let _ = parse_algorithm(s);
    let _ = parse_on_off(s);
    let _ = OnFailure::parse(s);
    let _ = TokenValidation::parse(s);
    let words: Vec<&str> = s.split(' ').collect();
    let _ = check_scopes(&words);
    let _ = ClaimRule::parse(words[0], &words[1..]);
    let _ = CookieKeys::parse(s);
});
