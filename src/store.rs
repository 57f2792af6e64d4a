//! Where sessions live (SPEC §8): in the cookie, in an `shm` zone every
//! worker of this nginx maps, or in Redis (every nginx of a fleet). The zone
//! holds two `oauth2_core::shmtable` tables: one of small records (login
//! states and logout `jti`s: single-use marks) and one of sessions. Redis is
//! spoken to by the fetcher thread (kv.rs); this file names its keys. What
//! goes in either is session.rs's and the endpoints'.

use std::ffi::c_void;
use std::ptr::NonNull;

use ngx::ffi::{
    ngx_conf_t, ngx_int_t, ngx_pagesize, ngx_pid, ngx_shared_memory_add, ngx_shm_zone_t,
    ngx_slab_alloc, ngx_slab_pool_t, ngx_str_t, NGX_ERROR, NGX_OK,
};
use oauth2_core::shmtable::ShmTable;

use crate::kv::StoreSpec;

/// Slot of the session table: the largest sealed session it holds is a
/// little less (`ShmTable::capacity`).
pub const SESSION_SLOT: usize = 8192;
/// Slot of the table of single-use marks.
const MARK_SLOT: usize = 128;
/// Slot of a marks-only zone (DPoP proofs: a key and an expiry, no data).
const BARE_MARK_SLOT: usize = 72;
/// Smallest `zone=NAME:SIZE`.
pub const MIN_ZONE: usize = 128 * 1024;
const MAGIC: u64 = 0x6f61_7574_6832_7a31; // "oauth2z1"

/// The start of the zone's data: where its two tables are.
#[repr(C)]
struct ZoneData {
    magic: u64,
    marks_len: u64,
    sessions_len: u64,
}

/// How the configuration keeps sessions.
#[derive(Clone)]
pub enum Store {
    Cookie,
    Shm(ShmZone),
    Redis(RedisStore),
}

/// An `oauth2_session_store redis …` store.
#[derive(Clone)]
pub struct RedisStore {
    pub spec: StoreSpec,
    /// Every key starts with it (`prefix=`, default `oauth2:`).
    pub prefix: String,
    /// Its place among the configuration's stores (the fetcher's clients).
    pub index: usize,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl RedisStore {
    /// A session's record.
    pub fn record_key(&self, id: &[u8; 16]) -> String {
        format!("{}s:{}", self.prefix, hex(id))
    }

    /// What `record_key` puts before the id (the index sets hold ids).
    pub fn record_prefix(&self) -> String {
        format!("{}s:", self.prefix)
    }

    /// The set of the sessions with a tag (`sid` or `sub`, see session.rs).
    pub fn tag_key(&self, kind: &str, tag: &[u8; 8]) -> String {
        format!("{}{kind}:{}", self.prefix, hex(tag))
    }

    /// A single-use mark (login state, logout `jti`, refresh lock).
    pub fn once_key(&self, kind: &str, key: &[u8; 16]) -> String {
        format!("{}{kind}:{}", self.prefix, hex(key))
    }

    pub fn id_hex(id: &[u8; 16]) -> String {
        hex(id)
    }
}

impl Store {
    pub fn is_server_side(&self) -> bool {
        !matches!(self, Store::Cookie)
    }
}

/// An `oauth2_session_store shm zone=NAME:SIZE` zone.
#[derive(Clone)]
pub struct ShmZone {
    zone: NonNull<ngx_shm_zone_t>,
    pub name: String,
}

// SAFETY: the zone record is nginx's, made while the configuration is read
// and never changed after; it is only used on nginx's own thread.
unsafe impl Send for ShmZone {}
// SAFETY: as above.
unsafe impl Sync for ShmZone {}

/// The zone's two tables, attached for this worker.
pub struct Tables {
    pub marks: ShmTable,
    pub sessions: ShmTable,
}

fn alive(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

impl ShmZone {
    /// Declare the zone (while the configuration is read); the same name
    /// and size in several places is the same zone.
    ///
    /// # Safety
    /// `cf` is the configuration being read; `tag` the module.
    pub unsafe fn add(
        cf: *mut ngx_conf_t,
        name: &str,
        size: usize,
        tag: *mut c_void,
    ) -> Result<ShmZone, String> {
        // SAFETY: the caller's promise, passed on.
        unsafe { Self::add_zone(cf, name, size, tag, false) }
    }

    /// A zone of single-use marks only (the DPoP proofs' `jti`s): its
    /// `marks` table has (nearly) all of it.
    ///
    /// # Safety
    /// As `add`.
    pub unsafe fn add_marks(
        cf: *mut ngx_conf_t,
        name: &str,
        size: usize,
        tag: *mut c_void,
    ) -> Result<ShmZone, String> {
        // SAFETY: the caller's promise, passed on.
        unsafe { Self::add_zone(cf, name, size, tag, true) }
    }

    unsafe fn add_zone(
        cf: *mut ngx_conf_t,
        name: &str,
        size: usize,
        tag: *mut c_void,
        marks_only: bool,
    ) -> Result<ShmZone, String> {
        if size < MIN_ZONE {
            return Err(format!(
                "zone \"{name}\" is too small: {size} bytes, at least {MIN_ZONE}"
            ));
        }
        // SAFETY: by the contract above; nginx copies the name into the
        // cycle's pool (ngx_shared_memory_add keeps `name` itself: the
        // bytes are made to live in the configuration pool first).
        unsafe {
            let Some(n) = ngx_str_t::from_bytes((*cf).pool, name.as_bytes()) else {
                return Err("out of memory".into());
            };
            let mut n = n;
            let z = ngx_shared_memory_add(cf, &mut n, size, tag);
            let z = NonNull::new(z).ok_or_else(|| format!("cannot add zone \"{name}\""))?;
            (*z.as_ptr()).init = Some(if marks_only {
                init_marks_zone
            } else {
                init_zone
            });
            Ok(ShmZone {
                zone: z,
                name: name.to_string(),
            })
        }
    }

    /// The zone's tables for this worker; none when the zone is not ready
    /// (its init failed: nginx would not have started).
    pub fn tables(&self) -> Option<Tables> {
        // SAFETY: the zone's data is our ZoneData followed by the two
        // tables (init_zone), mapped at the same address in every process
        // while nginx runs with this configuration.
        unsafe {
            let d = (*self.zone.as_ptr()).data as *mut ZoneData;
            if d.is_null() || (*d).magic != MAGIC {
                return None;
            }
            let me = ngx_pid as u32;
            let marks_at = (d as *mut u8).add(std::mem::size_of::<ZoneData>());
            let sessions_at = marks_at.add((*d).marks_len as usize);
            Some(Tables {
                marks: ShmTable::attach(marks_at, me, alive)?,
                sessions: ShmTable::attach(sessions_at, me, alive)?,
            })
        }
    }
}

unsafe extern "C" fn init_zone(zone: *mut ngx_shm_zone_t, data: *mut c_void) -> ngx_int_t {
    // SAFETY: nginx's call, passed on.
    unsafe { init(zone, data, false) }
}

unsafe extern "C" fn init_marks_zone(zone: *mut ngx_shm_zone_t, data: *mut c_void) -> ngx_int_t {
    // SAFETY: nginx's call, passed on.
    unsafe { init(zone, data, true) }
}

/// # Safety
/// nginx's zone init call: our zone, mapped, in the master.
unsafe fn init(zone: *mut ngx_shm_zone_t, data: *mut c_void, marks_only: bool) -> ngx_int_t {
    let (mark_slot, session_slot) = if marks_only {
        (BARE_MARK_SLOT, SESSION_SLOT)
    } else {
        (MARK_SLOT, SESSION_SLOT)
    };
    crate::guard(NGX_ERROR as ngx_int_t, || {
        // SAFETY: nginx calls this in the master with our zone, mapped, its
        // slab pool initialised, no worker running on it yet; `data` is the
        // previous configuration's zone data (the same memory: same name
        // and size) on a reload.
        unsafe {
            let d = if !data.is_null() {
                data as *mut ZoneData
            } else {
                let pool = (*zone).shm.addr as *mut ngx_slab_pool_t;
                // every free page but one (the slab's own rounding)
                let bytes = ((*pool).pfree.saturating_sub(1)) * ngx_pagesize;
                let d = ngx_slab_alloc(pool, bytes) as *mut ZoneData;
                if d.is_null() {
                    return NGX_ERROR as ngx_int_t;
                }
                let body = bytes - std::mem::size_of::<ZoneData>();
                let marks = if marks_only {
                    // the sessions table: its least (one slot, unused)
                    (body - 64 - session_slot) / 8 * 8
                } else {
                    (body / 16) / 8 * 8
                };
                std::ptr::write(
                    d,
                    ZoneData {
                        magic: MAGIC,
                        marks_len: marks as u64,
                        sessions_len: (body - marks) as u64,
                    },
                );
                d
            };
            let marks_at = (d as *mut u8).add(std::mem::size_of::<ZoneData>());
            let sessions_at = marks_at.add((*d).marks_len as usize);
            let me = ngx_pid as u32;
            // kept as they are on a reload (same geometry), emptied if new
            let ok = ShmTable::init(marks_at, (*d).marks_len as usize, mark_slot, me, alive)
                .is_some()
                && ShmTable::init(
                    sessions_at,
                    (*d).sessions_len as usize,
                    session_slot,
                    me,
                    alive,
                )
                .is_some();
            if !ok {
                return NGX_ERROR as ngx_int_t;
            }
            (*zone).data = d.cast();
        }
        NGX_OK as ngx_int_t
    })
}
