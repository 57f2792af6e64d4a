//! The status zone: a shared-memory zone the module makes itself (no
//! directive), with one slot per worker. Each worker adds to its own slot
//! only (relaxed atomic adds on memory no other worker writes: no lock, no
//! shared cache line on the request path); `oauth2_status` sums the slots.
//! The zone keeps its name and size across `nginx -s reload`, so nginx hands
//! the new configuration the same memory and the figures go on. During a
//! reload an old and a new worker of the same number share a slot; atomic
//! adds keep the sums right.

use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use ngx::ffi::{
    ngx_conf_t, ngx_int_t, ngx_shared_memory_add, ngx_shm_zone_t, ngx_slab_calloc, ngx_slab_pool_t,
    ngx_str_t, ngx_worker,
};
use oauth2_core::metrics::{self, KeyInfo, ProviderSnapshot, Snapshot, GLOBAL, REASONS, RESULTS};

pub const MAX_SLOTS: usize = 64;
pub const MAX_PROVIDERS: usize = 32;
const MAX_KEYS: usize = 8;
const KID_WORDS: usize = 8;
const MAGIC: u64 = 0x6f61_7574_6832_7331; // "oauth2s1"

#[repr(C)]
struct KeySlot {
    len: AtomicU64,
    kid: [AtomicU64; KID_WORDS],
    loaded_at: AtomicU64,
}

#[repr(C)]
struct ProvSlot {
    /// A hash of the provider's name: figures of another provider (the
    /// configuration changed at a reload) are not summed under this one.
    name_hash: AtomicU64,
    /// 0 unknown, 1 loading, 2 ready, 3 failed.
    state: AtomicU64,
    last_success: AtomicU64,
    failures: AtomicU64,
    results: [AtomicU64; RESULTS.len()],
    reasons: [AtomicU64; REASONS.len()],
    introspections: AtomicU64,
    introspection_failures: AtomicU64,
    nkeys: AtomicU64,
    keys: [KeySlot; MAX_KEYS],
}

#[repr(C)]
struct Slot {
    used: AtomicU64,
    global: [AtomicU64; GLOBAL.len()],
    provs: [ProvSlot; MAX_PROVIDERS],
}

#[repr(C)]
struct Zone {
    magic: AtomicU64,
    slots: [Slot; MAX_SLOTS],
}

/// FNV-1a: the same in every process (unlike std's keyed hashers).
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Make the status zone (postconfiguration).
///
/// # Safety
/// `cf` must be the configuration being read; `tag` the module.
pub unsafe fn add_zone(cf: *mut ngx_conf_t, tag: *mut c_void) -> Option<NonNull<ngx_shm_zone_t>> {
    let need = std::mem::size_of::<Zone>();
    // the slab allocator's page table and rounding
    let size = need + need / 8 + 64 * 1024;
    let name = "oauth2_status";
    let mut n = ngx_str_t {
        len: name.len(),
        data: name.as_ptr() as *mut u8,
    };
    // SAFETY: by the contract above; nginx copies nothing it needs later
    // from `n` (the name's bytes are static).
    unsafe {
        let z = ngx_shared_memory_add(cf, &mut n, size, tag);
        let z = NonNull::new(z)?;
        (*z.as_ptr()).init = Some(init_zone);
        Some(z)
    }
}

unsafe extern "C" fn init_zone(zone: *mut ngx_shm_zone_t, data: *mut c_void) -> ngx_int_t {
    crate::guard(ngx::ffi::NGX_ERROR as ngx_int_t, || {
        // SAFETY: nginx calls this with our zone, mapped, its slab pool
        // initialised; `data` is the previous configuration's zone data
        // (the same memory) on a reload.
        unsafe {
            if !data.is_null() {
                (*zone).data = data;
                return ngx::ffi::NGX_OK as ngx_int_t;
            }
            let pool = (*zone).shm.addr as *mut ngx_slab_pool_t;
            let z = ngx_slab_calloc(pool, std::mem::size_of::<Zone>()) as *mut Zone;
            if z.is_null() {
                return ngx::ffi::NGX_ERROR as ngx_int_t;
            }
            (*z).magic.store(MAGIC, Relaxed);
            (*zone).data = z.cast();
        }
        ngx::ffi::NGX_OK as ngx_int_t
    })
}

fn zone_of(zone: NonNull<ngx_shm_zone_t>) -> Option<&'static Zone> {
    // SAFETY: the zone's data is our Zone (init_zone), zero-initialised
    // atomics, mapped at the same address in every process for as long as
    // nginx runs with this zone; only atomics are touched through it.
    let z = unsafe { ((*zone.as_ptr()).data as *const Zone).as_ref()? };
    (z.magic.load(Relaxed) == MAGIC).then_some(z)
}

/// A worker's figures: its own slot.
pub struct Stats {
    slot: &'static Slot,
}

impl Stats {
    /// This worker's slot (`init_process`), with the names of the
    /// configuration's providers.
    pub fn for_worker(zone: Option<NonNull<ngx_shm_zone_t>>, names: &[String]) -> Option<Stats> {
        let z = zone_of(zone?)?;
        // SAFETY: ngx_worker is this worker's number, set before init_process.
        let n = unsafe { ngx_worker } % MAX_SLOTS;
        let slot = &z.slots[n];
        slot.used.store(1, Relaxed);
        for (i, name) in names.iter().enumerate().take(MAX_PROVIDERS) {
            let h = name_hash(name);
            let p = &slot.provs[i];
            if p.name_hash.swap(h, Relaxed) != h {
                // another provider had this place: start its figures anew
                for a in p.results.iter().chain(p.reasons.iter()) {
                    a.store(0, Relaxed);
                }
                p.introspections.store(0, Relaxed);
                p.introspection_failures.store(0, Relaxed);
            }
            p.state.store(1, Relaxed);
        }
        Some(Stats { slot })
    }

    #[inline]
    pub fn add(&self, g: usize) {
        self.slot.global[g].fetch_add(1, Relaxed);
    }

    pub fn add_n(&self, g: usize, n: u64) {
        self.slot.global[g].fetch_add(n, Relaxed);
    }

    pub fn set(&self, g: usize, v: u64) {
        self.slot.global[g].store(v, Relaxed);
    }

    #[inline]
    pub fn result(&self, p: usize, r: usize) {
        if let Some(p) = self.slot.provs.get(p) {
            p.results[r].fetch_add(1, Relaxed);
        }
    }

    pub fn reason(&self, p: usize, i: usize) {
        if let Some(p) = self.slot.provs.get(p) {
            p.reasons[i].fetch_add(1, Relaxed);
        }
    }

    pub fn introspection(&self, p: usize, failed: bool) {
        if let Some(p) = self.slot.provs.get(p) {
            let a = if failed {
                &p.introspection_failures
            } else {
                &p.introspections
            };
            a.fetch_add(1, Relaxed);
        }
    }

    /// The provider as this worker sees it after a fetch.
    pub fn provider(&self, p: usize, ok: bool, now: u64, keys: &[(String, u64)]) {
        let Some(p) = self.slot.provs.get(p) else {
            return;
        };
        if ok {
            p.state.store(2, Relaxed);
            p.last_success.store(now, Relaxed);
            p.failures.store(0, Relaxed);
            let n = keys.len().min(MAX_KEYS);
            for (k, (kid, at)) in p.keys.iter().zip(keys) {
                let b = kid.as_bytes();
                let len = b.len().min(KID_WORDS * 8);
                for (w, chunk) in k.kid.iter().zip(b[..len].chunks(8)) {
                    let mut word = [0u8; 8];
                    word[..chunk.len()].copy_from_slice(chunk);
                    w.store(u64::from_le_bytes(word), Relaxed);
                }
                k.len.store(len as u64, Relaxed);
                k.loaded_at.store(*at, Relaxed);
            }
            p.nkeys.store(n as u64, Relaxed);
        } else {
            p.state.store(3, Relaxed);
            p.failures.fetch_add(1, Relaxed);
        }
    }
}

/// Sum every worker's slot, for the configuration's providers.
pub fn snapshot(zone: Option<NonNull<ngx_shm_zone_t>>, names: &[String], now: u64) -> Snapshot {
    let mut s = Snapshot {
        now,
        ..Default::default()
    };
    s.providers = names
        .iter()
        .take(MAX_PROVIDERS)
        .map(|n| ProviderSnapshot {
            name: n.clone(),
            state: "loading",
            ..Default::default()
        })
        .collect();
    let Some(z) = zone.and_then(zone_of) else {
        return s;
    };
    let mut worst = vec![0u64; s.providers.len()];
    let mut newest = vec![0u64; s.providers.len()];
    for slot in z.slots.iter().filter(|sl| sl.used.load(Relaxed) != 0) {
        s.workers += 1;
        for (g, a) in s.global.iter_mut().zip(slot.global.iter()) {
            *g += a.load(Relaxed);
        }
        for (i, p) in s.providers.iter_mut().enumerate() {
            let ps = &slot.provs[i];
            if ps.name_hash.load(Relaxed) != name_hash(&p.name) {
                continue;
            }
            for (r, a) in p.results.iter_mut().zip(ps.results.iter()) {
                *r += a.load(Relaxed);
            }
            for (r, a) in p.reasons.iter_mut().zip(ps.reasons.iter()) {
                *r += a.load(Relaxed);
            }
            p.introspections += ps.introspections.load(Relaxed);
            p.introspection_failures += ps.introspection_failures.load(Relaxed);
            // the worst state: failed over loading over ready
            let st = match ps.state.load(Relaxed) {
                3 => 3,
                1 => 2,
                2 => 1,
                _ => 0,
            };
            worst[i] = worst[i].max(st);
            p.failures = p.failures.max(ps.failures.load(Relaxed));
            let last = ps.last_success.load(Relaxed);
            if last > newest[i] {
                newest[i] = last;
                p.last_success = last;
                let n = (ps.nkeys.load(Relaxed) as usize).min(MAX_KEYS);
                p.keys = ps.keys[..n]
                    .iter()
                    .map(|k| {
                        let mut b: Vec<u8> = k
                            .kid
                            .iter()
                            .flat_map(|w| w.load(Relaxed).to_le_bytes())
                            .collect();
                        b.truncate((k.len.load(Relaxed) as usize).min(KID_WORDS * 8));
                        KeyInfo {
                            kid: String::from_utf8_lossy(&b).into_owned(),
                            loaded_at: k.loaded_at.load(Relaxed),
                        }
                    })
                    .collect();
            }
        }
    }
    for (p, w) in s.providers.iter_mut().zip(worst) {
        p.state = match w {
            3 => "failed",
            2 => "loading",
            1 => "ready",
            _ => "loading",
        };
    }
    s
}

/// The snapshot as the endpoint renders it.
pub fn render(s: &Snapshot, prometheus: bool) -> String {
    if prometheus {
        metrics::to_prometheus(s)
    } else {
        metrics::to_json(s)
    }
}
