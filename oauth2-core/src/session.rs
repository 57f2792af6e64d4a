//! Cookie sealing (AES-256-GCM), chunking, the login state, PKCE, and the
//! small parsers the browser login needs (cookies, return paths).

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::digest;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Cookie values longer than this are split into numbered chunks.
pub const CHUNK_SIZE: usize = 4000;
/// At most this many chunks; a larger session is refused (and logged).
pub const MAX_CHUNKS: usize = 5;

/// What a sealed cookie is for; part of the AEAD's associated data, so a
/// state cookie never opens as a session and the other way round.
#[derive(Debug, Clone, Copy)]
pub enum Purpose {
    Session,
    State,
    /// The cookie of a session kept in a store: its id only.
    SessionId,
}

impl Purpose {
    fn aad(self) -> &'static [u8] {
        match self {
            Purpose::Session => b"ngx_http_oauth2_module session v1",
            Purpose::State => b"ngx_http_oauth2_module state v1",
            Purpose::SessionId => b"ngx_http_oauth2_module session id v1",
        }
    }
}

/// The associated data: the purpose, then the context (empty: none).
fn aad(purpose: Purpose, context: &[u8]) -> Vec<u8> {
    let mut a = purpose.aad().to_vec();
    if !context.is_empty() {
        a.push(0);
        a.extend_from_slice(context);
    }
    a
}

/// The keys of `oauth2_cookie_secret_file`: the first seals, all open.
pub struct CookieKeys {
    keys: Vec<LessSafeKey>,
}

impl std::fmt::Debug for CookieKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CookieKeys({} keys)", self.keys.len())
    }
}

impl CookieKeys {
    /// One base64 (standard or URL-safe) 32-byte key per line; blank lines
    /// and lines starting with `#` are skipped. The error never quotes a key.
    pub fn parse(text: &str) -> Result<CookieKeys, String> {
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let raw = STANDARD
                .decode(line)
                .or_else(|_| URL_SAFE_NO_PAD.decode(line.trim_end_matches('=')))
                .map_err(|_| format!("line {}: not base64", i + 1))?;
            if raw.len() != 32 {
                return Err(format!(
                    "line {}: the key is {} bytes, not 32",
                    i + 1,
                    raw.len()
                ));
            }
            let key = UnboundKey::new(&AES_256_GCM, &raw)
                .map_err(|_| format!("line {}: unusable key", i + 1))?;
            keys.push(LessSafeKey::new(key));
        }
        if keys.is_empty() {
            return Err("no key in the file".into());
        }
        Ok(CookieKeys { keys })
    }

    /// Seal with the first key: `v1.` + base64url(nonce || ciphertext || tag).
    pub fn seal(&self, purpose: Purpose, plaintext: &[u8]) -> String {
        self.seal_bound(purpose, b"", plaintext)
    }

    /// Open with any key; `None` for anything tampered, truncated, foreign.
    pub fn open(&self, purpose: Purpose, value: &str) -> Option<Vec<u8>> {
        self.open_bound(purpose, b"", value)
    }

    /// Seal for one context (the provider's issuer and the client id): the
    /// value opens only with the same context, so a session made for one
    /// client is nothing to another that shares the cookie key.
    pub fn seal_bound(&self, purpose: Purpose, context: &[u8], plaintext: &[u8]) -> String {
        let aad = aad(purpose, context);
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce);
        let mut buf = plaintext.to_vec();
        self.keys[0]
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad[..]),
                &mut buf,
            )
            .expect("AES-GCM sealing of an in-memory buffer");
        let mut out = Vec::with_capacity(NONCE_LEN + buf.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        format!("v1.{}", URL_SAFE_NO_PAD.encode(out))
    }

    /// Open what `seal_bound` sealed for the same context.
    pub fn open_bound(&self, purpose: Purpose, context: &[u8], value: &str) -> Option<Vec<u8>> {
        let aad = aad(purpose, context);
        let body = value.strip_prefix("v1.")?;
        if body.len() > CHUNK_SIZE * MAX_CHUNKS {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(body).ok()?;
        if raw.len() < NONCE_LEN + 16 {
            return None;
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
        for key in &self.keys {
            let mut buf = ct.to_vec();
            if let Ok(pt) = key.open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad[..]),
                &mut buf,
            ) {
                return Some(pt.to_vec());
            }
        }
        None
    }
}

pub fn fill_random(buf: &mut [u8]) {
    aws_lc_rs::rand::fill(buf).expect("the system random generator");
}

/// `n` random bytes, base64url.
pub fn random_token(n: usize) -> String {
    let mut b = vec![0u8; n];
    fill_random(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// PKCE S256 (RFC 7636 §4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()))
}

/// Constant-time equality.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A short, non-reversible tag of a token (for cache keys and cookie names).
pub fn short_hash(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(&digest::digest(&digest::SHA256, s.as_bytes()).as_ref()[..9])
}

/// The login in progress, sealed into a state cookie.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LoginState {
    pub state: String,
    pub nonce: String,
    pub verifier: String,
    /// Where the login started: a path (and query) on this origin.
    pub return_to: String,
    /// The provider the login went to (its issuer and client id).
    #[serde(default)]
    pub provider: String,
    /// The `redirect_uri` the authorization request sent: the token request
    /// must send the same (RFC 6749 §4.1.3), whatever the callback's own
    /// settings.
    #[serde(default)]
    pub redirect_uri: String,
    /// Unix time the login started.
    pub created: u64,
}

/// The session, sealed into the session cookie. The identity is the ID
/// token validated at login; its claims are not stored twice but read back
/// from it when the (authenticated, encrypted) cookie is opened.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Session {
    /// The ID token's claims (what the variables show).
    #[serde(skip)]
    pub claims: std::sync::Arc<crate::claims::Claims>,
    pub access_token: String,
    /// Unix time the access token expires (0: unknown).
    pub access_exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// The scope the provider granted (for `oauth2_require_scope`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Unix time the session started (for `oauth2_session_lifetime`).
    pub created: u64,
    /// Claims from the provider's UserInfo endpoint at login (they join the
    /// ID token's for the variables; the ID token's win).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userinfo: Option<serde_json::Map<String, serde_json::Value>>,
    /// Its id in a session store (`shm`, `redis`); none in a cookie.
    #[serde(skip)]
    pub id: Option<[u8; 16]>,
}

impl Session {
    /// Read a session from an opened cookie: the JSON, then the claims of
    /// its ID token (validated when the session was made).
    pub fn from_json(raw: &[u8]) -> Option<Session> {
        let mut s: Session = serde_json::from_slice(raw).ok()?;
        let payload = s.id_token.as_deref()?.split('.').nth(1)?;
        let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
        match serde_json::from_slice(&bytes).ok()? {
            serde_json::Value::Object(m) => {
                s.claims = std::sync::Arc::new(joined_claims(m, s.userinfo.as_ref()).into())
            }
            _ => return None,
        }
        Some(s)
    }
}

/// The ID token's claims, with those UserInfo adds (it never replaces one).
pub fn joined_claims(
    mut id: serde_json::Map<String, serde_json::Value>,
    userinfo: Option<&serde_json::Map<String, serde_json::Value>>,
) -> serde_json::Map<String, serde_json::Value> {
    for (k, v) in userinfo.into_iter().flatten() {
        if !id.contains_key(k) {
            id.insert(k.clone(), v.clone());
        }
    }
    id
}

/// Cookies of a request, in order (`Cookie: a=1; b=2`), values unquoted.
pub fn parse_cookies(header: &str) -> impl Iterator<Item = (&str, &str)> {
    cookie_pairs(header.as_bytes()).filter_map(|(k, v)| {
        Some((
            std::str::from_utf8(k).ok()?,
            std::str::from_utf8(unquote(v)).ok()?,
        ))
    })
}

/// The cookies of one `Cookie` header value as bytes, in order: names and
/// values trimmed of spaces, values still quoted if they were (`unquote`);
/// pieces without `=` or with an empty name are skipped. Scans with memchr,
/// no copy, no UTF-8 pass over long values.
pub fn cookie_pairs(header: &[u8]) -> CookiePairs<'_> {
    CookiePairs { rest: Some(header) }
}

pub struct CookiePairs<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> Iterator for CookiePairs<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let rest = self.rest?;
            let piece = match memchr::memchr(b';', rest) {
                Some(i) => {
                    self.rest = Some(&rest[i + 1..]);
                    &rest[..i]
                }
                None => {
                    self.rest = None;
                    rest
                }
            };
            let Some(eq) = memchr::memchr(b'=', piece) else {
                continue;
            };
            let name = piece[..eq].trim_ascii();
            if name.is_empty() {
                continue;
            }
            return Some((name, piece[eq + 1..].trim_ascii()));
        }
    }
}

/// A cookie value without its surrounding quotes.
pub fn unquote(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|&b| b != b'"').unwrap_or(v.len());
    let end = v.iter().rposition(|&b| b != b'"').map_or(start, |i| i + 1);
    &v[start..end.max(start)]
}

/// Split a value into chunk cookies: `NAME` holds the first chunk, or, when
/// chunked, `N.` + the first chunk, with the rest in `NAME_1` ... `NAME_{N-1}`.
/// `None` when more than `MAX_CHUNKS` would be needed.
pub fn split_chunks(name: &str, value: &str) -> Option<Vec<(String, String)>> {
    if value.len() <= CHUNK_SIZE {
        return Some(vec![(name.to_string(), value.to_string())]);
    }
    // the value is base64url + "v1." (ASCII), so byte slicing is safe
    let parts: Vec<&str> = value
        .as_bytes()
        .chunks(CHUNK_SIZE - 8)
        .map(|c| std::str::from_utf8(c).unwrap_or(""))
        .collect();
    if parts.len() > MAX_CHUNKS {
        return None;
    }
    let mut out = vec![(name.to_string(), format!("{}.{}", parts.len(), parts[0]))];
    for (i, p) in parts.iter().enumerate().skip(1) {
        out.push((format!("{name}_{i}"), p.to_string()));
    }
    Some(out)
}

/// Put chunk cookies back together; `None` if a chunk is missing or the
/// count is out of bounds.
pub fn join_chunks<'a>(name: &str, get: impl Fn(&str) -> Option<&'a str>) -> Option<Cow<'a, str>> {
    let first = get(name)?;
    if first.starts_with("v1.") {
        return Some(Cow::Borrowed(first));
    }
    let (n, rest) = first.split_once('.')?;
    let n: usize = n.parse().ok()?;
    if !(2..=MAX_CHUNKS).contains(&n) {
        return None;
    }
    let mut out = rest.to_string();
    for i in 1..n {
        out.push_str(get(&format!("{name}_{i}"))?);
    }
    Some(Cow::Owned(out))
}

/// Opened sessions, each found by its whole sealed value (`TokenCache`
/// hashes only the value's length and ends: its nonce and its AES-GCM tag),
/// with the binding it opened with (the issuer and client it belongs to):
/// the caller serves it only where that binding is one of its own.
///
/// Each entry also keeps the store's stamp it was read under (a session
/// store's generation; 0 for cookies): an entry whose stamp is not the
/// current one is not served.
pub struct SessionCache(crate::cache::TokenCache<(Arc<Session>, u32, u64)>);

/// Sessions are cached under a policy number of their own.
const SESSION_POLICY: u32 = u32::MAX;

impl SessionCache {
    pub fn new(budget: usize) -> Self {
        SessionCache(crate::cache::TokenCache::new(budget))
    }

    /// The session and the binding it opened with.
    pub fn get(&mut self, sealed: &str, now: u64, stamp: u64) -> Option<(Arc<Session>, u32)> {
        let (s, binding, at) = self.0.get(SESSION_POLICY, sealed.as_bytes(), now)?;
        (at == stamp).then_some((s, binding))
    }

    pub fn insert(&mut self, binding: u32, sealed: &str, s: Arc<Session>, until: u64, stamp: u64) {
        self.0.insert(
            SESSION_POLICY,
            sealed.as_bytes(),
            (s, binding, stamp),
            until,
        );
    }
}

/// The `Cookie` header without the cookies `drop` names (the others kept
/// as they came, quotes included), or `None` when it has none of them (the
/// common case costs no allocation). The result is sized exactly.
pub fn without_cookies(header: &[u8], drop: impl Fn(&[u8]) -> bool) -> Option<Vec<u8>> {
    let (mut dropped, mut kept, mut len) = (false, 0usize, 0usize);
    for (k, v) in cookie_pairs(header) {
        if drop(k) {
            dropped = true;
        } else {
            len += k.len() + 1 + v.len();
            kept += 1;
        }
    }
    if !dropped {
        return None;
    }
    let mut out = Vec::with_capacity(len + 2 * kept.saturating_sub(1));
    for (k, v) in cookie_pairs(header).filter(|(k, _)| !drop(k)) {
        if !out.is_empty() {
            out.extend_from_slice(b"; ");
        }
        out.extend_from_slice(k);
        out.push(b'=');
        out.extend_from_slice(v);
    }
    Some(out)
}

/// A return path is accepted only as a same-origin path: `/…`, not `//…`,
/// not `/\…`, no scheme, no control characters (CR/LF), also after one
/// round of percent-decoding.
pub fn safe_return_path(p: &str) -> bool {
    fn ok(p: &str) -> bool {
        p.starts_with('/')
            && !p.starts_with("//")
            && !p.starts_with("/\\")
            && !p.chars().any(|c| c.is_control() || c == '\\')
    }
    if !ok(p) {
        return false;
    }
    match percent_decode(p) {
        Some(d) => ok(&d),
        None => false,
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_cache_needs_the_whole_value() {
        let keys = CookieKeys::parse(&key_line(1)).unwrap();
        let sealed = keys.seal(Purpose::Session, &[b'x'; 300]);
        let s = Arc::new(Session {
            claims: Arc::default(),
            access_token: "at".into(),
            access_exp: 0,
            refresh_token: None,
            id_token: None,
            scope: None,
            created: 0,
            userinfo: None,
            id: None,
        });
        let mut c = SessionCache::new(4 * crate::cache::entry_cost(sealed.len()));
        c.insert(7, &sealed, s.clone(), 100, 3);
        let (got, binding) = c.get(&sealed, 10, 3).unwrap();
        assert!(Arc::ptr_eq(&got, &s));
        assert_eq!(binding, 7, "with the binding it opened with");
        // the same ends and length, another middle: same key, no hit
        let mut forged = sealed.clone().into_bytes();
        let mid = forged.len() / 2;
        forged[mid] = if forged[mid] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        assert_eq!(
            crate::cache::lookup_key(SESSION_POLICY, forged.as_bytes()),
            crate::cache::lookup_key(SESSION_POLICY, sealed.as_bytes())
        );
        assert!(c.get(&forged, 10, 3).is_none());
        // not under another stamp (the store changed since)
        assert!(c.get(&sealed, 10, 4).is_none());
        // never past the entry's end
        assert!(c.get(&sealed, 100, 3).is_none());
    }

    #[test]
    fn cookies_are_dropped_without_copying_the_rest() {
        let drop = |k: &[u8]| k == b"s" || k.starts_with(b"s_");
        assert_eq!(without_cookies(b"a=1; b=2", drop), None);
        let out = without_cookies(b"a=1;s=xyz; b=\"2\" ;s_1=q;c=3", drop).unwrap();
        assert_eq!(
            out, b"a=1; b=\"2\"; c=3",
            "the others kept as they came, quotes included"
        );
        assert_eq!(out.capacity(), out.len(), "sized exactly");
        assert_eq!(without_cookies(b"s=xyz", drop).as_deref(), Some(&b""[..]));
        assert_eq!(without_cookies(b"s=xyz;s_1=q", drop).unwrap().capacity(), 0);
        // a value that is not UTF-8 does not hide the module's cookies
        assert_eq!(
            without_cookies(b"a=\xff; s=1", drop).as_deref(),
            Some(&b"a=\xff"[..])
        );
    }

    fn key_line(b: u8) -> String {
        STANDARD.encode([b; 32])
    }

    #[test]
    fn keys_file() {
        let k =
            CookieKeys::parse(&format!("# comment\n\n{}\n{}\n", key_line(1), key_line(2))).unwrap();
        assert_eq!(k.keys.len(), 2);
        assert!(CookieKeys::parse("").is_err());
        assert!(CookieKeys::parse("not base64 !!!")
            .unwrap_err()
            .contains("line 1"));
        let short = STANDARD.encode([1u8; 16]);
        let e = CookieKeys::parse(&short).unwrap_err();
        assert!(e.contains("16 bytes") && !e.contains(&short));
        // URL-safe base64 without padding is fine too
        assert!(CookieKeys::parse(&URL_SAFE_NO_PAD.encode([7u8; 32])).is_ok());
    }

    #[test]
    fn seal_open_rotation_and_tampering() {
        let old = CookieKeys::parse(&key_line(1)).unwrap();
        let rotated = CookieKeys::parse(&format!("{}\n{}", key_line(2), key_line(1))).unwrap();
        let foreign = CookieKeys::parse(&key_line(3)).unwrap();
        let v = old.seal(Purpose::Session, b"hello");
        assert_eq!(old.open(Purpose::Session, &v).unwrap(), b"hello");
        // old cookie still opens after a new key was added first
        assert_eq!(rotated.open(Purpose::Session, &v).unwrap(), b"hello");
        // new cookies are sealed with the new key
        let v2 = rotated.seal(Purpose::Session, b"x");
        assert!(old.open(Purpose::Session, &v2).is_none());
        assert!(foreign.open(Purpose::Session, &v).is_none());
        // purpose binding
        assert!(old.open(Purpose::State, &v).is_none());
        // tampered, truncated, garbage
        let mut t = v.clone().into_bytes();
        let i = t.len() - 3;
        t[i] = if t[i] == b'A' { b'B' } else { b'A' };
        assert!(old
            .open(Purpose::Session, std::str::from_utf8(&t).unwrap())
            .is_none());
        assert!(old.open(Purpose::Session, &v[..v.len() - 5]).is_none());
        assert!(old.open(Purpose::Session, "v1.").is_none());
        assert!(old.open(Purpose::Session, "garbage").is_none());
        assert!(old.open(Purpose::Session, "v1.!!!!").is_none());
        // two seals of the same text differ (random nonce)
        assert_ne!(old.seal(Purpose::Session, b"hello"), v);
    }

    #[test]
    fn sessions_are_bound_to_their_issuer_and_client() {
        let k = CookieKeys::parse(&key_line(1)).unwrap();
        let a = b"https://op.test\nclient-a";
        let v = k.seal_bound(Purpose::Session, a, b"s");
        assert_eq!(k.open_bound(Purpose::Session, a, &v).unwrap(), b"s");
        assert!(
            k.open_bound(Purpose::Session, b"https://op.test\nclient-b", &v)
                .is_none(),
            "another client"
        );
        assert!(
            k.open_bound(Purpose::Session, b"https://other.test\nclient-a", &v)
                .is_none(),
            "another issuer"
        );
        assert!(k.open(Purpose::Session, &v).is_none(), "no context");
        assert!(
            k.open_bound(Purpose::State, a, &v).is_none(),
            "another purpose"
        );
    }

    #[test]
    fn pkce() {
        // RFC 7636 appendix B
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert_eq!(random_token(32).len(), 43);
        assert_ne!(random_token(32), random_token(32));
    }

    #[test]
    fn chunks() {
        let small = "v1.abc";
        assert_eq!(
            split_chunks("s", small).unwrap(),
            vec![("s".into(), small.into())]
        );
        let big = format!("v1.{}", "A".repeat(9000));
        let parts = split_chunks("s", &big).unwrap();
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|(_, v)| v.len() <= CHUNK_SIZE));
        assert_eq!(parts[1].0, "s_1");
        let get = |n: &str| parts.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        assert_eq!(join_chunks("s", get).unwrap(), big);
        // a missing chunk
        let get_missing = |n: &str| if n == "s_2" { None } else { get(n) };
        assert!(join_chunks("s", get_missing).is_none());
        // a chunk-count bomb
        assert!(join_chunks("s", |n| if n == "s" { Some("99999.x") } else { Some("x") }).is_none());
        assert!(join_chunks("s", |n| if n == "s" { Some("1.x") } else { None }).is_none());
        // too large to store
        assert!(split_chunks("s", &"A".repeat(CHUNK_SIZE * MAX_CHUNKS + 100)).is_none());
    }

    #[test]
    fn session_claims_come_from_the_id_token() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"alice","email":"a@x"}"#);
        let s = Session {
            claims: Default::default(),
            access_token: "at".into(),
            access_exp: 10,
            refresh_token: None,
            id_token: Some(format!("h.{payload}.s")),
            scope: None,
            userinfo: None,
            created: 1,
            id: Some([7; 16]),
        };
        let json = serde_json::to_vec(&s).unwrap();
        assert!(!String::from_utf8_lossy(&json).contains("\"claims\""));
        let back = Session::from_json(&json).unwrap();
        assert_eq!(back.claims["sub"], "alice");
        assert_eq!(back.id, None, "a store id is never in the sealed session");
        let none = Session {
            id_token: None,
            ..s
        };
        assert!(Session::from_json(&serde_json::to_vec(&none).unwrap()).is_none());
    }

    #[test]
    fn cookies() {
        let c: Vec<_> = parse_cookies("a=1; b = 2 ;c=\"3\"; broken; =x; d=").collect();
        assert_eq!(c, vec![("a", "1"), ("b", "2"), ("c", "3"), ("d", "")]);
        let raw: Vec<_> = cookie_pairs(b" s=\"v\" ;;x;t=a=b; u=\xff").collect();
        assert_eq!(
            raw,
            vec![(&b"s"[..], &b"\"v\""[..]), (b"t", b"a=b"), (b"u", b"\xff")]
        );
        assert_eq!(unquote(b"\"v\""), b"v");
        assert_eq!(unquote(b"\"\""), b"");
        assert_eq!(unquote(b"\""), b"");
        assert_eq!(unquote(b"v"), b"v");
    }

    #[test]
    fn return_paths() {
        for good in ["/", "/app?x=1", "/a/b#frag", "/%2e%2e/x"] {
            assert!(safe_return_path(good), "{good}");
        }
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "evil",
            "",
            "/%2fevil.example",
            "/%5cevil.example",
            "/a\r\nSet-Cookie: x=1",
            "/%0d%0aX: y",
            "javascript:alert(1)",
            "/%zz",
        ] {
            assert!(!safe_return_path(bad), "{bad}");
        }
    }

    #[test]
    fn constant_time_eq() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
