//! A table of records in a region of shared memory (an nginx zone) that
//! every worker maps: sessions, login states and replay marks of the
//! `shm` session store.
//!
//! The region is a header and fixed-size slots, open addressing with linear
//! probing on the key (keys are random ids or hashes, so their first bytes
//! are a good hash). Records expire; a full table drops expired records,
//! then the least recently used. One lock per table, held only to copy a
//! record in or out: its word is the holder's pid, so a worker that dies
//! holding it does not stop the others (the next one that waits long
//! enough and finds that process gone takes the lock over). Every removal
//! bumps a generation counter: a worker's cache of records read before is
//! good while the generation is unchanged.
//!
//! Nothing here knows nginx: the glue hands a region (`ngx_shm_zone_t`'s
//! memory) and how to tell whether a pid is alive.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

const MAGIC: u64 = 0x6f61_7574_6832_7462; // "oauth2tb"
/// Bytes of a slot before its data.
const SLOT_HEAD: usize = 64;
/// Spins before a waiter checks whether the holder is still alive.
const SPINS_BEFORE_CHECK: u32 = 2000;

pub type Key = [u8; 16];
/// Two 8-byte tags per record (the session store: a hash of the provider's
/// issuer and the session's `sid`, and one of the issuer and `sub`).
pub type Tags = [[u8; 8]; 2];

#[repr(C)]
struct Header {
    magic: u64,
    slot_size: u64,
    nslots: u64,
    lock: AtomicU32,
    _pad: u32,
    generation: AtomicU64,
    used: u64,
    clock: u64,
}

/// A slot's head: state (0 empty, 1 used), data length, key, two tags
/// (what back-channel logout finds sessions by), expiry, last use.
#[repr(C)]
struct SlotHead {
    used: u32,
    len: u32,
    key: Key,
    tags: Tags,
    expires: u64,
    last_used: u64,
}

const _: () = assert!(std::mem::size_of::<SlotHead>() <= SLOT_HEAD);
const HEADER: usize = 64;
const _: () = assert!(std::mem::size_of::<Header>() <= HEADER);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutError {
    /// The record does not fit in a slot.
    TooLarge,
}

/// What a `put` did besides storing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Put {
    /// Records dropped (least recently used) to make room.
    pub evicted: usize,
}

pub struct ShmTable {
    base: *mut u8,
    nslots: usize,
    slot_size: usize,
    me: u32,
    alive: fn(u32) -> bool,
}

// SAFETY: the table only touches its region under its lock (or through
// atomics); the region outlives every ShmTable made on it (the caller's
// promise in `new`).
unsafe impl Send for ShmTable {}

impl ShmTable {
    /// The bytes a table of `nslots` slots of `slot_size` needs.
    pub fn bytes_for(nslots: usize, slot_size: usize) -> usize {
        HEADER + nslots * slot_size
    }

    /// Largest record a slot of `slot_size` holds.
    pub fn capacity(slot_size: usize) -> usize {
        slot_size - SLOT_HEAD
    }

    /// A table on `len` bytes at `base` (8-byte aligned), kept as it is
    /// when it already holds one of the same geometry (a reload), else
    /// emptied. `me` is this process's pid; `alive` tells whether a pid
    /// still runs.
    ///
    /// # Safety
    /// `base..base+len` is mapped, writable, 8-byte aligned and stays so
    /// while the table is used; every process uses it only through
    /// `ShmTable`s of the same geometry. `init` runs while no other process
    /// uses the region (nginx: zone init, in the master).
    pub unsafe fn init(
        base: *mut u8,
        len: usize,
        slot_size: usize,
        me: u32,
        alive: fn(u32) -> bool,
    ) -> Option<ShmTable> {
        if slot_size < SLOT_HEAD + 8 || slot_size % 8 != 0 || len < HEADER + slot_size {
            return None;
        }
        let nslots = (len - HEADER) / slot_size;
        let h = base as *mut Header;
        // SAFETY: the caller's promise: the region is ours alone now.
        unsafe {
            if (*h).magic != MAGIC
                || (*h).slot_size != slot_size as u64
                || (*h).nslots != nslots as u64
            {
                std::ptr::write_bytes(base, 0, HEADER + nslots * slot_size);
                (*h).slot_size = slot_size as u64;
                (*h).nslots = nslots as u64;
                (*h).magic = MAGIC;
            }
            // a lock held by a process of the old cycle is no one's now
            (*h).lock.store(0, Ordering::Release);
        }
        Some(ShmTable {
            base,
            nslots,
            slot_size,
            me,
            alive,
        })
    }

    /// Attach to a table `init` made (a worker, after fork: `me` is its pid).
    ///
    /// # Safety
    /// As for `init`, and `init` made a table on this region.
    pub unsafe fn attach(base: *mut u8, me: u32, alive: fn(u32) -> bool) -> Option<ShmTable> {
        let h = base as *const Header;
        // SAFETY: the caller's promise; geometry never changes after init.
        let (magic, slot_size, nslots) = unsafe { ((*h).magic, (*h).slot_size, (*h).nslots) };
        (magic == MAGIC).then_some(ShmTable {
            base,
            nslots: nslots as usize,
            slot_size: slot_size as usize,
            me,
            alive,
        })
    }

    fn lock_word(&self) -> &AtomicU32 {
        // SAFETY: base points at the table's header (init/attach); only the
        // atomic field is borrowed (the plain ones belong to the lock holder).
        unsafe { &*std::ptr::addr_of!((*(self.base as *const Header)).lock) }
    }

    fn generation_word(&self) -> &AtomicU64 {
        // SAFETY: as in `lock_word`.
        unsafe { &*std::ptr::addr_of!((*(self.base as *const Header)).generation) }
    }

    /// Removals and replacements so far (any worker): a copy read before a
    /// change of this may be stale.
    pub fn generation(&self) -> u64 {
        self.generation_word().load(Ordering::Acquire)
    }

    pub fn slots(&self) -> usize {
        self.nslots
    }

    fn lock(&self) -> Guard<'_> {
        let lock = self.lock_word();
        let mut spins = 0u32;
        loop {
            match lock.compare_exchange_weak(0, self.me, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => break,
                Err(holder) => {
                    spins += 1;
                    if spins % SPINS_BEFORE_CHECK == 0
                        && holder != 0
                        && !(self.alive)(holder)
                        && lock
                            .compare_exchange(holder, self.me, Ordering::Acquire, Ordering::Relaxed)
                            .is_ok()
                    {
                        break;
                    }
                    if spins % 64 == 0 {
                        std::thread::yield_now();
                    } else {
                        std::hint::spin_loop();
                    }
                }
            }
        }
        // SAFETY: the lock is held: no other process touches the slots or
        // the header's plain fields until the guard is dropped.
        let body = unsafe { Body::new(self) };
        Guard { t: self, body }
    }

    /// Copy the record of `key` into `out`; false when there is none (or it
    /// expired).
    pub fn get(&self, key: &Key, now: u64, out: &mut Vec<u8>) -> bool {
        let mut g = self.lock();
        let Some(i) = g.body.find(key) else {
            return false;
        };
        if g.body.head(i).expires <= now {
            g.body.remove(i);
            g.bump();
            return false;
        }
        let tick = g.body.tick();
        let h = g.body.head_mut(i);
        h.last_used = tick;
        let len = h.len as usize;
        out.clear();
        out.extend_from_slice(&g.body.data(i)[..len]);
        true
    }

    /// Store (or replace) the record of `key` until `expires`.
    pub fn put(
        &self,
        key: &Key,
        data: &[u8],
        tags: Tags,
        expires: u64,
        now: u64,
    ) -> Result<Put, PutError> {
        if data.len() > Self::capacity(self.slot_size) {
            return Err(PutError::TooLarge);
        }
        let mut g = self.lock();
        let mut put = Put::default();
        let i = match g.body.find(key) {
            Some(i) => {
                // a replaced record: readers' copies are stale
                g.bump();
                i
            }
            None => {
                put.evicted = g.make_room(now);
                g.body.free_slot(key)
            }
        };
        let tick = g.body.tick();
        let h = g.body.head_mut(i);
        h.used = 1;
        h.len = data.len() as u32;
        h.key = *key;
        h.tags = tags;
        h.expires = expires;
        h.last_used = tick;
        g.body.data_mut(i)[..data.len()].copy_from_slice(data);
        Ok(put)
    }

    /// Add `key` only if it is not there: false when it is (a replay).
    pub fn insert_new(&self, key: &Key, expires: u64, now: u64) -> bool {
        let mut g = self.lock();
        if let Some(i) = g.body.find(key) {
            if g.body.head(i).expires > now {
                return false;
            }
            g.body.remove(i);
            g.bump();
        }
        g.make_room(now);
        let i = g.body.free_slot(key);
        let tick = g.body.tick();
        let h = g.body.head_mut(i);
        *h = SlotHead {
            used: 1,
            len: 0,
            key: *key,
            tags: [[0; 8]; 2],
            expires,
            last_used: tick,
        };
        true
    }

    /// Remove the record of `key`: true when there was one that had not
    /// expired (a single-use value is used now).
    pub fn take(&self, key: &Key, now: u64) -> bool {
        let mut g = self.lock();
        let Some(i) = g.body.find(key) else {
            return false;
        };
        let live = g.body.head(i).expires > now;
        g.body.remove(i);
        g.bump();
        live
    }

    /// Remove every record whose tag number `which` (0 or 1) is `tag`;
    /// how many.
    pub fn remove_tagged(&self, which: usize, tag: [u8; 8]) -> usize {
        let mut g = self.lock();
        let mut n = 0;
        let mut i = 0;
        while i < self.nslots {
            let h = g.body.head(i);
            if h.used == 1 && h.tags[which & 1] == tag {
                // removal may shift a later record into i: look at i again
                g.body.remove(i);
                n += 1;
            } else {
                i += 1;
            }
        }
        if n > 0 {
            g.bump();
        }
        n
    }

    /// Records in the table (expired ones not yet dropped included).
    pub fn len(&self) -> usize {
        self.lock().body.used()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

struct Guard<'a> {
    t: &'a ShmTable,
    body: Body<'a>,
}

impl Guard<'_> {
    fn bump(&self) {
        self.t.generation_word().fetch_add(1, Ordering::AcqRel);
    }

    /// Keep the table at most 7/8 full: drop expired records, then the
    /// least recently used. Returns how many live records were dropped.
    fn make_room(&mut self, now: u64) -> usize {
        let max = (self.t.nslots * 7 / 8).max(1);
        if self.body.used() < max {
            return 0;
        }
        let mut i = 0;
        let mut changed = false;
        while i < self.t.nslots {
            let h = self.body.head(i);
            if h.used == 1 && h.expires <= now {
                self.body.remove(i);
                changed = true;
            } else {
                i += 1;
            }
        }
        let mut evicted = 0;
        if self.body.used() >= max && self.t.nslots >= 1024 {
            // a large table: drop about the least recently used eighth in
            // one pass (a threshold from a sample), not one record per pass
            let step = self.t.nslots / 256;
            let mut sample: Vec<u64> = (0..256)
                .map(|k| self.body.head(k * step))
                .filter(|h| h.used == 1)
                .map(|h| h.last_used)
                .collect();
            sample.sort_unstable();
            if let Some(&threshold) = sample.get(sample.len() / 8) {
                let mut i = 0;
                while i < self.t.nslots {
                    let h = self.body.head(i);
                    if h.used == 1 && h.last_used <= threshold {
                        self.body.remove(i);
                        evicted += 1;
                        changed = true;
                    } else {
                        i += 1;
                    }
                }
            }
        }
        while self.body.used() >= max {
            let oldest = (0..self.t.nslots)
                .filter(|&i| self.body.head(i).used == 1)
                .min_by_key(|&i| self.body.head(i).last_used);
            match oldest {
                Some(i) => {
                    self.body.remove(i);
                    evicted += 1;
                    changed = true;
                }
                None => break,
            }
        }
        if changed {
            self.bump();
        }
        evicted
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.t.lock_word().store(0, Ordering::Release);
    }
}

/// The header's plain fields and the slots, while the lock is held.
struct Body<'a> {
    used: &'a mut u64,
    clock: &'a mut u64,
    slots: &'a mut [u8],
    nslots: usize,
    slot_size: usize,
}

impl<'a> Body<'a> {
    /// # Safety
    /// The table's lock is held for as long as the Body lives.
    unsafe fn new(t: &'a ShmTable) -> Body<'a> {
        let h = t.base as *mut Header;
        // SAFETY: the lock gives this process the header's plain fields and
        // the slots until it is released (after this Body is gone); the
        // region is as large as init checked.
        unsafe {
            Body {
                used: &mut *std::ptr::addr_of_mut!((*h).used),
                clock: &mut *std::ptr::addr_of_mut!((*h).clock),
                slots: std::slice::from_raw_parts_mut(t.base.add(HEADER), t.nslots * t.slot_size),
                nslots: t.nslots,
                slot_size: t.slot_size,
            }
        }
    }

    fn used(&self) -> usize {
        *self.used as usize
    }

    fn tick(&mut self) -> u64 {
        *self.clock += 1;
        *self.clock
    }

    fn home(&self, key: &Key) -> usize {
        let k = u64::from_le_bytes(key[..8].try_into().unwrap_or([0; 8]));
        (k % self.nslots as u64) as usize
    }

    fn head(&self, i: usize) -> &SlotHead {
        let off = i * self.slot_size;
        let bytes = &self.slots[off..off + SLOT_HEAD];
        // SAFETY: slots start 8-byte aligned (base aligned, HEADER and
        // slot_size multiples of 8) and a SlotHead fits in SLOT_HEAD; every
        // bit pattern is a valid SlotHead (integers and byte arrays).
        unsafe { &*(bytes.as_ptr() as *const SlotHead) }
    }

    fn head_mut(&mut self, i: usize) -> &mut SlotHead {
        let off = i * self.slot_size;
        let bytes = &mut self.slots[off..off + SLOT_HEAD];
        // SAFETY: as in `head`, through a unique borrow of those bytes.
        unsafe { &mut *(bytes.as_mut_ptr() as *mut SlotHead) }
    }

    fn data(&self, i: usize) -> &[u8] {
        let off = i * self.slot_size;
        &self.slots[off + SLOT_HEAD..off + self.slot_size]
    }

    fn data_mut(&mut self, i: usize) -> &mut [u8] {
        let off = i * self.slot_size;
        &mut self.slots[off + SLOT_HEAD..off + self.slot_size]
    }

    fn find(&self, key: &Key) -> Option<usize> {
        let mut i = self.home(key);
        for _ in 0..self.nslots {
            let h = self.head(i);
            if h.used == 0 {
                return None;
            }
            if h.key == *key {
                return Some(i);
            }
            i = (i + 1) % self.nslots;
        }
        None
    }

    /// The empty slot `key` goes to (make_room left one).
    fn free_slot(&mut self, key: &Key) -> usize {
        let mut i = self.home(key);
        while self.head(i).used == 1 {
            i = (i + 1) % self.nslots;
        }
        *self.used += 1;
        i
    }

    /// Empty slot `i`, moving later records of the same probe run back so
    /// that every record stays reachable from its home slot.
    fn remove(&mut self, mut i: usize) {
        self.head_mut(i).used = 0;
        *self.used -= 1;
        let mut j = i;
        loop {
            j = (j + 1) % self.nslots;
            if self.head(j).used == 0 {
                return;
            }
            let home = self.home(&self.head(j).key);
            // j may move to i when its home is not cyclically in (i, j]
            let stays = if i <= j {
                i < home && home <= j
            } else {
                i < home || home <= j
            };
            if !stays {
                let (a, b) = (i * self.slot_size, j * self.slot_size);
                self.slots.copy_within(b..b + self.slot_size, a);
                self.head_mut(j).used = 0;
                i = j;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alive(_: u32) -> bool {
        true
    }

    struct Region(Vec<u64>);

    impl Region {
        fn new(bytes: usize) -> Region {
            Region(vec![0u64; bytes / 8])
        }
        fn table(&mut self, slot: usize) -> ShmTable {
            let len = self.0.len() * 8;
            // SAFETY: the Vec outlives the table in each test, is aligned
            // and used by nothing else.
            unsafe { ShmTable::init(self.0.as_mut_ptr().cast(), len, slot, 1, alive).unwrap() }
        }
    }

    fn key(n: u64) -> Key {
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&n.to_le_bytes());
        k[8] = 0xaa;
        k
    }

    #[test]
    fn put_get_take() {
        let mut r = Region::new(HEADER + 16 * 256);
        let t = r.table(256);
        assert_eq!(t.slots(), 16);
        let mut out = Vec::new();
        assert!(!t.get(&key(1), 10, &mut out));
        t.put(&key(1), b"one", [[0; 8]; 2], 100, 10).unwrap();
        t.put(&key(17), b"seventeen", [[0; 8]; 2], 100, 10).unwrap(); // same home
        assert!(t.get(&key(1), 10, &mut out));
        assert_eq!(out, b"one");
        assert!(t.get(&key(17), 10, &mut out));
        assert_eq!(out, b"seventeen");
        // replaced in place
        let g = t.generation();
        t.put(&key(1), b"uno", [[0; 8]; 2], 100, 10).unwrap();
        assert!(t.generation() > g);
        assert!(t.get(&key(1), 10, &mut out));
        assert_eq!(out, b"uno");
        assert_eq!(t.len(), 2);
        // single use
        assert!(t.take(&key(1), 10));
        assert!(!t.take(&key(1), 10));
        // the record that probed past it is still found
        assert!(t.get(&key(17), 10, &mut out));
        // expiry
        assert!(!t.get(&key(17), 100, &mut out));
        assert_eq!(t.len(), 0);
        assert_eq!(
            t.put(&key(2), &[0; 256], [[0; 8]; 2], 100, 10),
            Err(PutError::TooLarge)
        );
    }

    #[test]
    fn full_tables_drop_expired_then_least_recently_used() {
        let mut r = Region::new(HEADER + 8 * 128);
        let t = r.table(128);
        let mut out = Vec::new();
        for n in 0..7 {
            t.put(
                &key(n),
                b"x",
                [[0; 8]; 2],
                if n == 3 { 20 } else { 100 },
                10,
            )
            .unwrap();
        }
        assert_eq!(t.len(), 7);
        assert!(t.get(&key(0), 10, &mut out)); // 0 is used: not the oldest now
                                               // 7 = 7/8 of 8 slots: the next put first drops the expired record
        let p = t.put(&key(7), b"x", [[0; 8]; 2], 100, 30).unwrap();
        assert_eq!(p.evicted, 0);
        assert_eq!(t.len(), 7);
        // then the least recently used one
        let p = t.put(&key(8), b"x", [[0; 8]; 2], 100, 30).unwrap();
        assert_eq!(p.evicted, 1);
        assert!(!t.get(&key(3), 30, &mut out));
        assert!(
            !t.get(&key(1), 30, &mut out),
            "the least recently used goes"
        );
        assert!(t.get(&key(0), 30, &mut out));
        assert!(t.get(&key(8), 30, &mut out));
    }

    #[test]
    fn a_large_full_table_drops_an_eighth_at_once() {
        let mut r = Region::new(HEADER + 2048 * 72);
        let t = r.table(72);
        for n in 0..5000u64 {
            assert!(t.insert_new(&key(n * 7919 + 1), 1_000_000, 1));
        }
        // never more than 7/8 full, every recent mark still there
        assert!(t.len() < 2048 * 7 / 8);
        for n in 4900..5000u64 {
            assert!(
                !t.insert_new(&key(n * 7919 + 1), 1_000_000, 1),
                "{n} is a replay"
            );
        }
    }

    #[test]
    fn replay_marks_and_tags() {
        let mut r = Region::new(HEADER + 32 * 128);
        let t = r.table(128);
        assert!(t.insert_new(&key(5), 100, 10));
        assert!(!t.insert_new(&key(5), 100, 50));
        assert!(t.insert_new(&key(5), 200, 100), "an expired mark is gone");
        let mut out = Vec::new();
        let tag = [7u8; 8];
        for n in 10..20 {
            let tg = if n % 2 == 0 { tag } else { [0; 8] };
            t.put(&key(n), b"s", [[1; 8], tg], 100, 10).unwrap();
        }
        assert_eq!(t.remove_tagged(0, tag), 0, "the other tag");
        assert_eq!(t.remove_tagged(1, tag), 5);
        for n in 10..20 {
            assert_eq!(t.get(&key(n), 10, &mut out), n % 2 == 1, "{n}");
        }
    }

    #[test]
    fn a_reload_keeps_the_records_a_new_size_drops_them() {
        let mut r = Region::new(HEADER + 8 * 128);
        {
            let t = r.table(128);
            t.put(&key(1), b"kept", [[0; 8]; 2], 100, 10).unwrap();
        }
        let t = r.table(128);
        let mut out = Vec::new();
        assert!(t.get(&key(1), 10, &mut out));
        let t = r.table(64 + 64);
        assert!(t.get(&key(1), 10, &mut out));
        let t = r.table(256);
        assert!(!t.get(&key(1), 10, &mut out));
    }

    #[test]
    fn a_dead_holder_does_not_block_the_others() {
        let mut r = Region::new(HEADER + 8 * 128);
        let t = r.table(128);
        fn dead(pid: u32) -> bool {
            pid != 4242
        }
        // SAFETY: same region, same geometry
        let t2 = unsafe { ShmTable::attach(r.0.as_mut_ptr().cast(), 2, dead).unwrap() };
        t.lock_word().store(4242, Ordering::Release);
        t2.put(&key(1), b"x", [[0; 8]; 2], 100, 10).unwrap();
        assert_eq!(t.lock_word().load(Ordering::Acquire), 0);
    }

    #[test]
    fn threads_share_it() {
        let mut r = Region::new(HEADER + 1024 * 128);
        let t = r.table(128);
        let base = r.0.as_mut_ptr() as usize;
        std::thread::scope(|s| {
            for w in 0..4u64 {
                s.spawn(move || {
                    // SAFETY: the region outlives the scope
                    let t =
                        unsafe { ShmTable::attach(base as *mut u8, 10 + w as u32, alive).unwrap() };
                    let mut out = Vec::new();
                    for n in 0..200 {
                        let k = key(w * 1000 + n);
                        t.put(&k, &n.to_le_bytes(), [[0; 8]; 2], 100, 1).unwrap();
                        assert!(t.get(&k, 1, &mut out));
                        assert_eq!(out, n.to_le_bytes());
                    }
                });
            }
        });
        assert_eq!(t.len(), 800);
    }
}
