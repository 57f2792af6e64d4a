//! A bounded cache of validated tokens, keyed by a SHA-256 of the token (the
//! token itself is never stored as a key), entries never outliving their
//! expiry. Oldest entries are evicted first when it is full.

use std::collections::{HashMap, VecDeque};

use aws_lc_rs::digest;

pub type Key = [u8; 32];

/// The cache key of a token for one validation policy.
pub fn key(policy: u32, token: impl AsRef<[u8]>) -> Key {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(&policy.to_le_bytes());
    ctx.update(token.as_ref());
    let d = ctx.finish();
    let mut k = [0u8; 32];
    k.copy_from_slice(d.as_ref());
    k
}

pub struct TokenCache<V> {
    map: HashMap<Key, (V, u64)>,
    order: VecDeque<Key>,
    cap: usize,
}

impl<V: Clone> TokenCache<V> {
    pub fn new(cap: usize) -> Self {
        TokenCache { map: HashMap::new(), order: VecDeque::new(), cap }
    }

    /// The value, if present and `now` is before its expiry.
    pub fn get(&mut self, k: &Key, now: u64) -> Option<V> {
        match self.map.get(k) {
            Some((v, exp)) if now < *exp => Some(v.clone()),
            Some(_) => {
                self.map.remove(k);
                None
            }
            None => None,
        }
    }

    pub fn insert(&mut self, k: Key, v: V, exp: u64) {
        if self.cap == 0 {
            return;
        }
        if self.map.insert(k, (v, exp)).is_none() {
            self.order.push_back(k);
        }
        while self.map.len() > self.cap {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
        // keys that expired (or were evicted) leave stale places in the
        // order: drop them when they pile up
        if self.order.len() > self.cap * 2 {
            let map = &self.map;
            self.order.retain(|k| map.contains_key(k));
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_and_bound() {
        let mut c = TokenCache::new(3);
        c.insert(key(0, "a"), 1, 100);
        assert_eq!(c.get(&key(0, "a"), 99), Some(1));
        assert_eq!(c.get(&key(0, "a"), 100), None, "never beyond expiry");
        assert_eq!(c.get(&key(1, "a"), 50), None, "keys are per policy");
        for (i, t) in ["b", "c", "d", "e"].iter().enumerate() {
            c.insert(key(0, t), i, 1000);
        }
        assert!(c.len() <= 3);
        assert_eq!(c.get(&key(0, "b"), 1), None, "oldest evicted");
        assert_eq!(c.get(&key(0, "e"), 1), Some(3));
        let mut off = TokenCache::new(0);
        off.insert(key(0, "a"), 1, 100);
        assert!(off.is_empty());
    }

    #[test]
    fn many_inserts_stay_bounded() {
        let mut c = TokenCache::new(100);
        for i in 0..10_000 {
            c.insert(key(0, &i.to_string()), i, 1_000_000);
        }
        assert!(c.len() <= 100);
        assert!(c.order.len() <= 200);
    }
}
