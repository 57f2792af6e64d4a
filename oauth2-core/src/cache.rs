//! A bounded cache of validated credentials (bearer tokens, sealed session
//! cookies), entries never outliving their expiry, the oldest evicted first
//! when the byte budget is spent.
//!
//! A lookup hashes only the credential's length and its two ends (for a JWT:
//! the end of its signature; for a sealed cookie: its nonce and its AES-GCM
//! tag), so a hit costs no pass over a kilobyte of token. That hash is
//! aHash keyed with random keys drawn once per process (about 5 ns for the
//! 100 bytes, where std's SipHash-1-3 took 45): nobody can aim collisions
//! at it, and only validated credentials are ever stored; the map uses it
//! as it is. A hit counts only
//! when the stored credential equals the presented one byte for byte: a
//! value that shares the ends but differs anywhere else is a miss, never
//! someone else's entry.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::OnceLock;

use aws_lc_rs::digest;

pub type Key = [u8; 32];

/// The token cache's key: a keyed hash of the policy, the length and ends.
pub type LookupKey = u64;

/// A SHA-256 of a whole token for one validation policy (introspections in
/// flight are deduplicated by it).
pub fn key(policy: u32, token: impl AsRef<[u8]>) -> Key {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(&policy.to_le_bytes());
    ctx.update(token.as_ref());
    to_key(ctx.finish())
}

/// The lookup key of a credential for one policy: a keyed hash of its
/// length and its first and last `END` bytes.
pub fn lookup_key(policy: u32, credential: &[u8]) -> LookupKey {
    const END: usize = 48;
    static KEYS: OnceLock<ahash::RandomState> = OnceLock::new();
    let head = &credential[..credential.len().min(END)];
    let tail = &credential[credential.len().saturating_sub(END)..];
    let mut h = KEYS.get_or_init(ahash::RandomState::new).build_hasher();
    h.write_u32(policy);
    h.write_usize(credential.len());
    h.write(head);
    h.write(tail);
    h.finish()
}

/// The map's hasher: the lookup key is a keyed hash already.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // only u64 keys are hashed here; anything else is folded in
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

fn to_key(d: digest::Digest) -> Key {
    let mut k = [0u8; 32];
    k.copy_from_slice(d.as_ref());
    k
}

/// What an entry is charged against the budget: a fixed part (the map and
/// queue slots, the parsed claims' containers) plus twice the credential's
/// length (the stored copy, and the claims or session decoded from it).
pub fn entry_cost(credential_len: usize) -> usize {
    ENTRY_BASE + 2 * credential_len
}

pub const ENTRY_BASE: usize = 1536;

struct Entry<V> {
    credential: Box<[u8]>,
    value: V,
    exp: u64,
}

pub struct TokenCache<V> {
    map: HashMap<LookupKey, Entry<V>, BuildHasherDefault<KeyHasher>>,
    order: VecDeque<LookupKey>,
    budget: usize,
    used: usize,
}

impl<V: Clone> TokenCache<V> {
    /// A cache of at most `budget` bytes (as `entry_cost` counts them); 0
    /// keeps nothing.
    pub fn new(budget: usize) -> Self {
        TokenCache {
            map: HashMap::default(),
            order: VecDeque::new(),
            budget,
            used: 0,
        }
    }

    /// The value cached for exactly this credential under this policy, if
    /// `now` is before its expiry.
    pub fn get(&mut self, policy: u32, credential: &[u8], now: u64) -> Option<V> {
        let k = lookup_key(policy, credential);
        let e = self.map.get(&k)?;
        if *e.credential != *credential {
            return None;
        }
        if now < e.exp {
            return Some(e.value.clone());
        }
        self.remove(&k);
        None
    }

    /// Keep a value; returns how many entries were evicted to make room.
    pub fn insert(&mut self, policy: u32, credential: &[u8], value: V, exp: u64) -> usize {
        let cost = entry_cost(credential.len());
        if cost > self.budget {
            return 0;
        }
        let mut evicted = 0;
        let k = lookup_key(policy, credential);
        let e = Entry {
            credential: credential.into(),
            value,
            exp,
        };
        match self.map.insert(k, e) {
            // replaced in place: it keeps its place in the order
            Some(old) => self.used -= entry_cost(old.credential.len()),
            None => self.order.push_back(k),
        }
        self.used += cost;
        while self.used > self.budget {
            match self.order.pop_front() {
                Some(old) => {
                    if self.remove(&old) {
                        evicted += 1;
                    }
                }
                None => break,
            }
        }
        // keys that expired, were replaced or evicted leave stale places in
        // the order: drop them when they pile up
        if self.order.len() > 2 * self.map.len() + 16 {
            let map = &self.map;
            self.order.retain(|k| map.contains_key(k));
        }
        evicted
    }

    fn remove(&mut self, k: &LookupKey) -> bool {
        match self.map.remove(k) {
            Some(e) => {
                self.used -= entry_cost(e.credential.len());
                true
            }
            None => false,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Bytes charged against the budget.
    pub fn used(&self) -> usize {
        self.used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(n: usize, len: usize) -> usize {
        n * entry_cost(len)
    }

    #[test]
    fn expiry_and_bound() {
        let mut c = TokenCache::new(room(3, 1));
        c.insert(0, b"a", 1, 100);
        assert_eq!(c.get(0, b"a", 99), Some(1));
        assert_eq!(c.get(0, b"a", 100), None, "never beyond expiry");
        assert_eq!(c.used(), 0, "an expired entry is dropped when met");
        c.insert(0, b"a", 1, 100);
        assert_eq!(c.get(1, b"a", 50), None, "keys are per policy");
        for (i, t) in [b"b", b"c", b"d", b"e"].iter().enumerate() {
            c.insert(0, *t, i, 1000);
        }
        assert_eq!(c.len(), 3);
        assert_eq!(c.get(0, b"a", 1), None, "oldest evicted");
        assert_eq!(c.get(0, b"b", 1), None, "oldest evicted");
        assert_eq!(c.get(0, b"e", 1), Some(3));
        let mut off = TokenCache::new(0);
        off.insert(0, b"a", 1, 100);
        assert!(off.is_empty());
    }

    #[test]
    fn a_hit_needs_the_whole_credential() {
        let token: Vec<u8> = (0..900u32).map(|i| b'A' + (i % 26) as u8).collect();
        let mut c = TokenCache::new(room(4, token.len()));
        c.insert(7, &token, "alice", 100);
        assert_eq!(c.get(7, &token, 10), Some("alice"));
        // the same length and ends, another middle: the same lookup key,
        // and still no hit
        let mut forged = token.clone();
        forged[450] = b'z';
        assert_eq!(lookup_key(7, &forged), lookup_key(7, &token));
        assert_eq!(c.get(7, &forged, 10), None);
        // short credentials (shorter than both ends) are whole in the key
        c.insert(7, b"xy", "bob", 100);
        assert_eq!(c.get(7, b"xy", 10), Some("bob"));
        assert_eq!(c.get(7, b"x", 10), None);
        assert_ne!(lookup_key(7, b"xy"), lookup_key(7, b"yx"));
    }

    #[test]
    fn the_budget_counts_bytes() {
        let mut c = TokenCache::new(room(10, 100));
        for i in 0..10 {
            c.insert(0, format!("{i:0100}").as_bytes(), i, 1000);
        }
        assert_eq!(c.len(), 10);
        // one credential ten times longer takes the room of several short ones
        c.insert(0, &[b'L'; 1000], 99, 1000);
        assert!(c.used() <= room(10, 100));
        assert!(c.len() < 10);
        assert_eq!(c.get(0, &[b'L'; 1000], 1), Some(99));
        // one larger than the whole budget is not kept (and evicts nothing)
        let before = c.len();
        c.insert(0, &vec![b'H'; room(10, 100)], 1, 1000);
        assert_eq!(c.len(), before);
        // the same credential again replaces its entry, charged once
        let used = c.used();
        c.insert(0, &[b'L'; 1000], 100, 1000);
        assert_eq!(c.used(), used);
        assert_eq!(c.get(0, &[b'L'; 1000], 1), Some(100));
    }

    #[test]
    fn many_inserts_stay_bounded() {
        let mut c = TokenCache::new(room(100, 8));
        for i in 0..10_000u64 {
            c.insert(0, format!("{i:08}").as_bytes(), i, 1_000_000);
        }
        assert!(c.len() <= 100);
        assert!(c.used() <= room(100, 8));
        assert!(c.order.len() <= 2 * c.len() + 16);
        // replacing the same entries again and again leaves no pile either
        for _ in 0..1000 {
            c.insert(0, b"same", 1, 1_000_000);
        }
        assert!(c.order.len() <= 2 * c.len() + 16);
    }
}
