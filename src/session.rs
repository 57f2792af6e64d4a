//! Session glue: the session cookie (open, refresh, re-issue, clear, strip
//! from the upstream request) and the start of the browser login (state
//! cookie and redirect). The refresh's bookkeeping is
//! `oauth2_core::flights::Refreshes`; this file moves cookies and waits.

use std::borrow::Cow;
use std::sync::Arc;

use ngx::core::Status;
use ngx::ffi::{ngx_int_t, ngx_time, NGX_LOG_ERR, NGX_LOG_INFO, NGX_LOG_NOTICE, NGX_LOG_WARN};
use ngx::http::Request;
use ngx::{ngx_log_debug_http, ngx_log_error};
use oauth2_core::flights::{RefreshError, RefreshStep};
use oauth2_core::keys::Metadata;
use oauth2_core::login::{self, ClientAuth};
use oauth2_core::logout;
use oauth2_core::metrics;
use oauth2_core::session::{self, LoginState as Login, Purpose, Session};
use oauth2_core::waits::{JobId, WaitFor};

use crate::conf::{ClientConf, LocRuntime, Prov, SessionConf, UriValue};
use crate::http::RequestExt;
use crate::kv::StoreOp;
use crate::store::{RedisStore, Store};
use crate::worker::{test_hook, with_worker, KeyState, Worker};

/// State cookies older than this are refused (and expire in the browser).
pub const STATE_TTL: u64 = 600;
/// At most this many logins in progress per browser; the oldest go first.
const MAX_STATES: usize = 4;

pub fn now() -> u64 {
    ngx_time() as u64
}

/// A URI directive's value for this request: its variables evaluated, a
/// path made absolute on the request's origin.
pub fn uri_for(r: &Request, v: &UriValue) -> String {
    match v.complex() {
        Some(cv) => {
            let s = r
                .get_complex_value(cv)
                .and_then(|s| s.to_str().ok())
                .unwrap_or("/")
                .to_string();
            r.absolute(&s)
        }
        None => r.absolute(&v.text),
    }
}

pub fn cookie<'a>(cookies: &'a [(String, String)], name: &str) -> Option<&'a str> {
    cookies
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

pub fn set_cookie(
    r: &mut Request,
    sc: &SessionConf,
    name: &str,
    value: &str,
    max_age: u64,
    lax: bool,
) {
    let mut v = format!(
        "{name}={value}; Path={}",
        if lax { "/" } else { &sc.cookie_path }
    );
    if let Some(d) = &sc.cookie_domain {
        v.push_str("; Domain=");
        v.push_str(d);
    }
    v.push_str(&format!("; Max-Age={max_age}; HttpOnly"));
    if sc.secure {
        v.push_str("; Secure");
    }
    v.push_str("; SameSite=");
    v.push_str(if lax && sc.samesite == "Strict" {
        "Lax"
    } else {
        sc.samesite
    });
    r.push_header("Set-Cookie", &v);
}

pub fn delete_cookie(r: &mut Request, sc: &SessionConf, name: &str, lax: bool) {
    set_cookie(r, sc, name, "", 0, lax);
}

/// The session in a sealed cookie value, if it opens for this provider and
/// is within its lifetime: the sealed session itself, or (a store) the
/// sealed id of its record.
pub fn open_session(sealed: &str, sc: &SessionConf, prov: &Prov) -> Option<Session> {
    let (raw, id) = match &sc.store {
        Store::Cookie => (
            sc.keys
                .open_bound(Purpose::Session, &prov.binding, sealed)?,
            None,
        ),
        Store::Shm(z) => {
            let id: [u8; 16] = sc
                .keys
                .open_bound(Purpose::SessionId, &prov.binding, sealed)?
                .try_into()
                .ok()?;
            let mut rec = Vec::new();
            if !z.tables()?.sessions.get(&id, now(), &mut rec) {
                return None;
            }
            let rec = std::str::from_utf8(&rec).ok()?;
            (
                sc.keys.open_bound(Purpose::Session, &prov.binding, rec)?,
                Some(id),
            )
        }
        // read by `stored_session` (a wait for Redis), never here
        Store::Redis(_) => return None,
    };
    let mut s = Session::from_json(&raw)?;
    s.id = id;
    if now() >= s.created.saturating_add(sc.lifetime) {
        return None;
    }
    Some(s)
}

/// The id in a store session's cookie, if it opens for this provider.
pub fn session_id(sealed: &str, sc: &SessionConf, prov: &Prov) -> Option<[u8; 16]> {
    sc.keys
        .open_bound(Purpose::SessionId, &prov.binding, sealed)?
        .try_into()
        .ok()
}

/// A Redis record, opened for this provider and within its lifetime.
fn open_record(rec: &[u8], id: [u8; 16], sc: &SessionConf, prov: &Prov) -> Option<Session> {
    let rec = std::str::from_utf8(rec).ok()?;
    let raw = sc.keys.open_bound(Purpose::Session, &prov.binding, rec)?;
    let mut s = Session::from_json(&raw)?;
    s.id = Some(id);
    (now() < s.created.saturating_add(sc.lifetime)).then_some(s)
}

/// What reading a Redis session gave.
enum Stored {
    Found(Session, usize),
    None,
    Wait,
    Unavailable,
}

/// The session of a Redis store's cookie: its record read by the fetcher
/// (the request waits for it), or the answer it waited for.
fn stored_session(
    r: &mut Request,
    rt: &LocRuntime,
    sc: &SessionConf,
    rs: &RedisStore,
    sealed: &str,
) -> Stored {
    let Some((i, id)) = rt
        .provs
        .iter()
        .enumerate()
        .find_map(|(i, p)| session_id(sealed, sc, p).map(|id| (i, id)))
    else {
        return Stored::None;
    };
    let prov = &rt.provs[i];
    if let Some(job) = r.ctx_mut().and_then(|c| c.store_job.take()) {
        return match store_answer(r, sc, job) {
            Some((200, rec)) => match open_record(&rec, id, sc, prov) {
                Some(s) => Stored::Found(s, i),
                None => Stored::None,
            },
            Some(_) => Stored::None,
            None => Stored::Unavailable,
        };
    }
    let key = rs.record_key(&id);
    let parked = with_worker(|w| {
        let job = w.submit_store(rs.index, StoreOp::Get(key)).ok()?;
        w.park(r, prov.index, WaitFor::Job(job)).then_some(job)
    })
    .flatten();
    match parked {
        Some(job) => {
            if let Some(c) = r.ctx_mut() {
                c.store_job = Some(job);
            }
            Stored::Wait
        }
        None => Stored::Unavailable,
    }
}

/// The answer of a session-store job this request waited for, the store's
/// health noted: `None` when it failed (or never came).
pub fn store_answer(r: &Request, sc: &SessionConf, job: JobId) -> Option<(u16, Vec<u8>)> {
    let res = with_worker(|w| w.take_job_result(job)).flatten();
    if let Store::Redis(rs) = &sc.store {
        let err = res.as_ref().and_then(|x| x.as_ref().err());
        store_health(r, rs, matches!(res, Some(Ok(_))), err);
    }
    res.and_then(Result::ok)
}

/// Log a store going down (once per failure streak) and coming back.
pub fn store_health(r: &Request, rs: &RedisStore, ok: bool, err: Option<&oauth2_core::FetchError>) {
    let changed = with_worker(|w| w.store_state(rs.index, ok)).unwrap_or(false);
    if !changed {
        return;
    }
    if ok {
        ngx_log_error!(
            NGX_LOG_NOTICE,
            r.log(),
            "oauth2: the session store \"{}\" answers again",
            rs.spec.display
        );
    } else {
        ngx_log_error!(
            NGX_LOG_ERR,
            r.log(),
            "oauth2: the session store is unavailable: {}",
            err.map(|e| e.to_string())
                .unwrap_or_else(|| "no answer".into())
        );
    }
}

/// What back-channel logout finds a session by: its `sid` and its subject
/// at its provider (`oauth2_core::logout::tag`).
fn session_tags(prov: &Prov, s: &Session) -> oauth2_core::shmtable::Tags {
    let iss = prov.policy.issuer.as_deref().unwrap_or("");
    let tag = |kind: &str| match s.claims.get(kind) {
        Some(serde_json::Value::String(v)) => logout::tag(kind, iss, v),
        _ => [0; 8],
    };
    [tag("sid"), tag("sub")]
}

/// The cache stamp of sessions read now: the store's generation (a record
/// removed or replaced anywhere changes it), 0 for cookies.
fn store_stamp(sc: &SessionConf) -> u64 {
    match &sc.store {
        Store::Cookie | Store::Redis(_) => 0,
        Store::Shm(z) => z.tables().map_or(u64::MAX, |t| t.sessions.generation()),
    }
}

/// What `issue_session` did.
pub enum Issued {
    Failed,
    Done,
    /// Sent to Redis: this job says when it is there.
    Sent(oauth2_core::waits::JobId),
}

/// Seal a session into its cookie(s), removing chunks the browser has left
/// over; with a store, put its record there and the sealed id in the cookie
/// (`unlock`: a Redis refresh lock to release with the write).
pub fn issue_session(
    r: &mut Request,
    sc: &SessionConf,
    prov: &Prov,
    s: &Session,
    unlock: Option<String>,
) -> Issued {
    let Ok(json) = serde_json::to_vec(s) else {
        return Issued::Failed;
    };
    let sealed = sc.keys.seal_bound(Purpose::Session, &prov.binding, &json);
    let mut sent = None;
    let sealed = match &sc.store {
        Store::Cookie => sealed,
        Store::Redis(rs) => {
            let id = s.id.unwrap_or_else(new_id);
            let ttl_ms = s
                .created
                .saturating_add(sc.lifetime)
                .saturating_sub(now())
                .max(1)
                * 1000;
            let iss = prov.policy.issuer.as_deref().unwrap_or("");
            let mut sets = Vec::new();
            for kind in ["sid", "sub"] {
                if let Some(serde_json::Value::String(v)) = s.claims.get(kind) {
                    sets.push(rs.tag_key(kind, &logout::tag(kind, iss, v)));
                }
            }
            let op = StoreOp::Put {
                key: rs.record_key(&id),
                value: sealed.into_bytes(),
                ttl_ms,
                member: RedisStore::id_hex(&id),
                sets,
                unlock,
            };
            match with_worker(|w| w.submit_store(rs.index, op)) {
                Some(Ok(job)) => sent = Some(job),
                _ => return Issued::Failed,
            }
            sc.keys.seal_bound(Purpose::SessionId, &prov.binding, &id)
        }
        Store::Shm(z) => {
            let id = s.id.unwrap_or_else(new_id);
            let Some(t) = z.tables() else {
                return Issued::Failed;
            };
            let until = s.created.saturating_add(sc.lifetime);
            match t
                .sessions
                .put(&id, sealed.as_bytes(), session_tags(prov, s), until, now())
            {
                Ok(p) if p.evicted > 0 => {
                    ngx_log_error!(
                        NGX_LOG_WARN,
                        r.log(),
                        "oauth2: session zone \"{}\" is full: {} least recently used session(s) dropped",
                        z.name,
                        p.evicted
                    );
                }
                Ok(_) => {}
                Err(_) => {
                    ngx_log_error!(
                        NGX_LOG_ERR,
                        r.log(),
                        "oauth2: the session ({} bytes) does not fit in a record of zone \"{}\" ({} bytes at most)",
                        sealed.len(),
                        z.name,
                        oauth2_core::shmtable::ShmTable::capacity(crate::store::SESSION_SLOT)
                    );
                    return Issued::Failed;
                }
            }
            sc.keys.seal_bound(Purpose::SessionId, &prov.binding, &id)
        }
    };
    let Some(parts) = session::split_chunks(&sc.cookie_name, &sealed) else {
        ngx_log_error!(
            NGX_LOG_ERR,
            r.log(),
            "oauth2: the session is too large for {} cookies ({} bytes)",
            session::MAX_CHUNKS,
            sealed.len()
        );
        return Issued::Failed;
    };
    let max_age = s.created.saturating_add(sc.lifetime).saturating_sub(now());
    let n = parts.len();
    for (name, value) in parts {
        set_cookie(r, sc, &name, &value, max_age, false);
    }
    let cookies = r.cookies();
    delete_chunks(r, sc, &cookies, n.max(1));
    match sent {
        Some(job) => Issued::Sent(job),
        None => Issued::Done,
    }
}

fn new_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    session::fill_random(&mut id);
    id
}

/// Delete a session's record from its store (sign-out, a session that
/// ended); cookies are cleared by the caller.
pub fn end_session(sc: &SessionConf, s: &Session) {
    match (&sc.store, s.id) {
        (Store::Shm(z), Some(id)) => {
            if let Some(t) = z.tables() {
                t.sessions.take(&id, now());
            }
        }
        (Store::Redis(rs), Some(id)) => end_stored(rs, &id),
        _ => {}
    }
}

/// Delete a Redis session's record (sent; nobody waits for it).
pub fn end_stored(rs: &RedisStore, id: &[u8; 16]) {
    let op = StoreOp::Del(vec![rs.record_key(id)]);
    with_worker(|w| w.submit_store(rs.index, op));
}

/// Mark a login state as issued (a store: single use across workers).
fn state_issued(sc: &SessionConf, state: &str) -> bool {
    match &sc.store {
        Store::Cookie => true,
        // sent; the callback, seconds later, takes it
        Store::Redis(rs) => {
            let op = StoreOp::Once {
                key: rs.once_key("st", &logout::once_key("state", "", state)),
                ttl_ms: STATE_TTL * 1000,
            };
            with_worker(|w| w.submit_store(rs.index, op).is_ok()).unwrap_or(false)
        }
        Store::Shm(z) => z.tables().is_some_and(|t| {
            let t0 = now();
            t.marks
                .insert_new(&logout::once_key("state", "", state), t0 + STATE_TTL, t0)
        }),
    }
}

/// Use a login state at the callback: false when a store says it was used
/// (or never issued). Cookie sessions: the worker's own list decides.
pub fn state_used_once(sc: &SessionConf, state: &str) -> bool {
    match &sc.store {
        // the callback asked Redis before (a wait of its own)
        Store::Cookie | Store::Redis(_) => true,
        Store::Shm(z) => z
            .tables()
            .is_some_and(|t| t.marks.take(&logout::once_key("state", "", state), now())),
    }
}

/// Clear the session cookie and its chunks.
pub fn clear_session(r: &mut Request, sc: &SessionConf, cookies: &[(String, String)]) {
    delete_cookie(r, sc, &sc.cookie_name, false);
    delete_chunks(r, sc, cookies, 1);
}

/// Delete the session's chunk cookies from number `from` on, those the
/// browser sent.
fn delete_chunks(r: &mut Request, sc: &SessionConf, cookies: &[(String, String)], from: usize) {
    for i in from..session::MAX_CHUNKS {
        let name = format!("{}_{}", sc.cookie_name, i);
        if cookie(cookies, &name).is_some() {
            delete_cookie(r, sc, &name, false);
        }
    }
}

fn is_module_cookie(sc: &SessionConf, name: &[u8]) -> bool {
    name.strip_prefix(sc.cookie_name.as_bytes())
        .is_some_and(|rest| rest.is_empty() || rest[0] == b'_')
}

/// Remove the module's cookies from the `Cookie` header(s) sent upstream.
pub fn strip_cookies(r: &mut Request, sc: &SessionConf) {
    r.rewrite_cookie_headers(|v| session::without_cookies(v, |k| is_module_cookie(sc, k)));
}

/// What the access phase gets from the session cookie.
pub enum SessionOutcome {
    /// A session of the location's provider with this index.
    Valid(Arc<Session>, usize),
    /// No session, or one that ended (its cookies are cleared).
    None,
    /// Parked until the refresh (or the metadata) is there.
    Wait,
    /// The refresh could not reach the provider: 503 with Retry-After.
    Unavailable,
}

/// When the session's access token is due for a refresh (the last quarter
/// of its lifetime, at most its last minute); `u64::MAX` when unknown.
fn refresh_due(s: &Session) -> u64 {
    if s.access_exp == 0 {
        return u64::MAX;
    }
    let issued = s.created.max(s.access_exp.saturating_sub(3600));
    let margin = (s.access_exp.saturating_sub(issued) / 4).min(60);
    s.access_exp - margin
}

/// The sealed session value of the request (its chunks joined), read from
/// the Cookie headers without copying the other cookies (nor the value, when
/// it fits in one cookie).
pub fn sealed_session<'a>(r: &'a Request, sc: &SessionConf) -> Option<Cow<'a, str>> {
    // the common case: the first cookie of that name holds the whole value
    let name = sc.cookie_name.as_bytes();
    let first = r.cookie_headers().find_map(|v| {
        session::cookie_pairs(v)
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    })?;
    let first = session::unquote(first);
    if first.starts_with(b"v1.") {
        return std::str::from_utf8(first).ok().map(Cow::Borrowed);
    }
    let mine: Vec<(&[u8], &str)> = r
        .cookie_headers()
        .flat_map(session::cookie_pairs)
        .filter(|(k, _)| is_module_cookie(sc, k))
        .filter_map(|(k, v)| Some((k, std::str::from_utf8(session::unquote(v)).ok()?)))
        .collect();
    session::join_chunks(&sc.cookie_name, |n| {
        mine.iter()
            .find(|(k, _)| *k == n.as_bytes())
            .map(|(_, v)| *v)
    })
}

/// Open the session; refresh it when its access token is (nearly) expired.
/// Sessions already opened in this worker are reused until their access
/// token is due for a refresh or the session ends (matched on the whole
/// sealed value, so any other cookie opens afresh).
pub fn session_for_access(r: &mut Request, rt: &LocRuntime, sc: &SessionConf) -> SessionOutcome {
    let t = now();
    let sealed = sealed_session(r, sc);
    let stamp = store_stamp(sc);
    // a session opened before in this worker (maybe for another provider)
    let mut foreign = false;
    if let Some(v) = sealed.as_deref() {
        if let Some((s, binding)) = with_worker(|w| w.sessions.get(v, t, stamp)).flatten() {
            match rt.prov_by_binding(binding) {
                Some((i, _)) => return SessionOutcome::Valid(s, i),
                None => foreign = true,
            }
        }
    }
    // not in this worker's cache: the miss path may own the value
    let sealed: Option<String> = sealed.map(Cow::into_owned);
    let opened = match (&sc.store, sealed.as_deref().filter(|_| !foreign)) {
        (Store::Redis(rs), Some(v)) => match stored_session(r, rt, sc, rs, v) {
            Stored::Found(s, i) => Some((s, i)),
            Stored::None => None,
            Stored::Wait => return SessionOutcome::Wait,
            Stored::Unavailable => return SessionOutcome::Unavailable,
        },
        (_, v) => v.and_then(|v| {
            rt.provs
                .iter()
                .enumerate()
                .find_map(|(i, p)| open_session(v, sc, p).map(|s| (s, i)))
        }),
    };
    let Some((s, i)) = opened else {
        let cookies = r.cookies();
        if cookie(&cookies, &sc.cookie_name).is_some() {
            if rt.provs.iter().any(|p| !p.name.is_empty()) {
                // perhaps a session of a provider this location does not
                // list: left to its own locations
                ngx_log_error!(
                    NGX_LOG_INFO,
                    r.log(),
                    "oauth2: no session for this location's providers"
                );
            } else {
                ngx_log_error!(NGX_LOG_INFO, r.log(), "oauth2: session cookie rejected");
                clear_session(r, sc, &cookies);
            }
        }
        return SessionOutcome::None;
    };
    let prov = rt.provs[i].clone();
    let s = Arc::new(s);
    if t < refresh_due(&s) {
        if let Some(v) = sealed.as_deref() {
            let mut until = refresh_due(&s).min(s.created.saturating_add(sc.lifetime));
            if let Store::Redis(_) = sc.store {
                // another nginx may delete it: read again after a second
                until = until.min(t + 1);
            }
            with_worker(|w| {
                w.sessions
                    .insert(prov.binding_id, v, s.clone(), until, stamp)
            });
        }
        return SessionOutcome::Valid(s, i);
    }
    drop(sealed);
    let (Some(client), Some(refresh_token)) = (prov.client.as_ref(), s.refresh_token.as_deref())
    else {
        return expiring(r, sc, s, i, t);
    };
    if !sc.refresh {
        return expiring(r, sc, s, i, t);
    }
    let key = session::short_hash(refresh_token);
    let hook = test_hook(r);
    let step = with_worker(|w| match w.refreshes.step(&key, t) {
        RefreshStep::Outcome(o) => Some(o),
        RefreshStep::Wait(job) => {
            ngx_log_debug_http!(
                r,
                "oauth2: waiting for the refresh of this session (job {})",
                job
            );
            park_refresh(w, r, prov.index, WaitFor::Job(job))
        }
        RefreshStep::Start => {
            let p = &w.providers[prov.index];
            if p.metadata.is_none() && p.state == KeyState::Loading {
                // a worker just started: wait for the metadata first
                return park_refresh(w, r, prov.index, WaitFor::Provider(prov.index));
            }
            let Some(url) = p.metadata.as_ref().and_then(|m| m.token_endpoint.clone()) else {
                return Some(Err(RefreshError::NoTokenEndpoint));
            };
            if !refresh_lock(sc, &s, t) {
                return Some(Err(RefreshError::Elsewhere));
            }
            let mut form = vec![
                ("grant_type".to_string(), "refresh_token".to_string()),
                ("refresh_token".to_string(), refresh_token.to_string()),
            ];
            let auth = client_auth(client, p.metadata.as_ref(), &mut form);
            // a Redis session: refreshed by one nginx of the fleet at a time
            let lock = redis_lock(sc, &s);
            match w.submit_locked(prov.index, "refresh", url, Some(form), auth, hook, lock) {
                Ok(job) => {
                    w.refreshes.started(key.clone(), job, s.clone(), t);
                    ngx_log_debug_http!(r, "oauth2: refreshing the session (job {})", job);
                    park_refresh(w, r, prov.index, WaitFor::Job(job))
                }
                Err(e) => Some(Err(RefreshError::Fetch(e))),
            }
        }
    });
    if let Some(Some(Err(e))) = &step {
        // not a lock another one holds
        if !matches!(
            e,
            RefreshError::Elsewhere | RefreshError::Fetch(oauth2_core::FetchError::Busy)
        ) {
            refresh_unlock(sc, &s);
        }
    }
    match step {
        None => SessionOutcome::None,
        Some(None) => SessionOutcome::Wait,
        Some(Some(Ok(new))) => {
            // Redis: the lock goes with the write of the new record
            let unlock = redis_lock(sc, &s).map(|(_, k, _)| k);
            let redis = unlock.is_some();
            issue_session(r, sc, &prov, &new, unlock);
            if !redis {
                refresh_unlock(sc, &s);
            }
            ngx_log_error!(NGX_LOG_INFO, r.log(), "oauth2: session refreshed");
            SessionOutcome::Valid(Arc::new(new), i)
        }
        Some(Some(Err(e))) if e.transient() && t < s.access_exp => {
            ngx_log_error!(
                NGX_LOG_WARN,
                r.log(),
                "oauth2: session refresh failed: {}, the access token is still valid",
                e
            );
            SessionOutcome::Valid(s, i)
        }
        Some(Some(Err(e))) if e.transient() => {
            ngx_log_error!(
                NGX_LOG_WARN,
                r.log(),
                "oauth2: session refresh failed: {}",
                e
            );
            SessionOutcome::Unavailable
        }
        Some(Some(Err(e))) => {
            ngx_log_error!(
                NGX_LOG_WARN,
                r.log(),
                "oauth2: session refresh failed: {}, the session ends",
                e
            );
            end_session(sc, &s);
            clear_session(r, sc, &r.cookies());
            SessionOutcome::None
        }
    }
}

fn refresh_key(id: &[u8; 16]) -> [u8; 16] {
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    logout::once_key("refresh", "", &hex)
}

/// A stored session is refreshed by one worker at a time (its refresh
/// token may be single-use): false when another one is at it.
fn refresh_lock(sc: &SessionConf, s: &Session, t: u64) -> bool {
    match (&sc.store, s.id) {
        (Store::Shm(z), Some(id)) => z
            .tables()
            .is_some_and(|tb| tb.marks.insert_new(&refresh_key(&id), t + 30, t)),
        _ => true,
    }
}

fn refresh_unlock(sc: &SessionConf, s: &Session) {
    match (&sc.store, s.id) {
        (Store::Shm(z), Some(id)) => {
            if let Some(tb) = z.tables() {
                tb.marks.take(&refresh_key(&id), now());
            }
        }
        (Store::Redis(rs), Some(id)) => {
            let op = StoreOp::Del(vec![rs.once_key("rl", &refresh_key(&id))]);
            with_worker(|w| w.submit_store(rs.index, op));
        }
        _ => {}
    }
}

/// The lock a Redis session's refresh takes in the store first (store,
/// key, ms): one nginx of the fleet refreshes it at a time.
fn redis_lock(sc: &SessionConf, s: &Session) -> Option<(usize, String, u64)> {
    match (&sc.store, s.id) {
        (Store::Redis(rs), Some(id)) => {
            Some((rs.index, rs.once_key("rl", &refresh_key(&id)), 30_000))
        }
        _ => None,
    }
}

/// Park a request for its session's refresh: `None` (it waits), or why it
/// cannot wait (then it is answered as a refresh that did not come in time).
fn park_refresh(
    w: &mut Worker,
    r: &mut Request,
    provider: usize,
    what: WaitFor,
) -> Option<Result<Session, RefreshError>> {
    if w.park(r, provider, what) {
        None
    } else {
        Some(Err(RefreshError::TimedOut))
    }
}

/// A session due for a refresh that cannot be refreshed: valid until its
/// access token expires, then gone.
fn expiring(
    r: &mut Request,
    sc: &SessionConf,
    s: Arc<Session>,
    i: usize,
    t: u64,
) -> SessionOutcome {
    if t >= s.access_exp {
        end_session(sc, &s);
        clear_session(r, sc, &r.cookies());
        return SessionOutcome::None;
    }
    SessionOutcome::Valid(s, i)
}

/// Client authentication at the token endpoint: the Basic header, or the
/// credentials in the form when the provider allows only that.
pub fn client_auth(
    client: &ClientConf,
    metadata: Option<&Metadata>,
    form: &mut Vec<(String, String)>,
) -> Option<String> {
    let supported = metadata
        .map(|m| m.token_endpoint_auth_methods_supported.as_slice())
        .unwrap_or(&[]);
    match &client.client_secret {
        Some(secret) => match ClientAuth::choose(supported) {
            ClientAuth::Basic => Some(login::basic_credentials(&client.client_id, &secret.0)),
            ClientAuth::Post => {
                form.push(("client_id".into(), client.client_id.clone()));
                form.push(("client_secret".into(), secret.0.to_string()));
                None
            }
        },
        None => {
            form.push(("client_id".into(), client.client_id.clone()));
            None
        }
    }
}

/// Start the browser login: a state cookie and a 302 to the provider.
/// Returns the status for the access phase (302, 503), or NGX_AGAIN when
/// the request is parked until the provider metadata is there.
pub fn start_login(r: &mut Request, rt: &LocRuntime, sc: &SessionConf) -> ngx_int_t {
    let Some(prov) = rt.login_prov().cloned() else {
        return 401;
    };
    let Some(client) = prov.client.as_ref() else {
        return 401;
    };
    let endpoint = with_worker(|w| {
        let p = &w.providers[prov.index];
        match (&p.metadata, p.state) {
            (Some(m), _) => Ok(m.authorization_endpoint.clone()),
            (None, KeyState::Loading) => {
                Err(if w.park(r, prov.index, WaitFor::Provider(prov.index)) {
                    None
                } else {
                    Some(1)
                })
            }
            (None, _) => Err(Some(p.retry_in)),
        }
    })
    .unwrap_or(Err(Some(5)));
    let endpoint = match endpoint {
        Ok(Some(e)) => e,
        Ok(None) => {
            ngx_log_error!(
                NGX_LOG_ERR,
                r.log(),
                "oauth2: the provider metadata has no authorization_endpoint"
            );
            return 503;
        }
        Err(None) => return Status::NGX_AGAIN.0,
        Err(Some(retry)) => {
            r.push_header("Retry-After", &retry.to_string());
            return 503;
        }
    };
    let uri = r.unparsed_uri().to_str().unwrap_or("/").to_string();
    let return_to = if session::safe_return_path(&uri) {
        uri
    } else {
        "/".to_string()
    };
    let login = Login {
        state: session::random_token(32),
        nonce: session::random_token(32),
        verifier: session::random_token(32),
        return_to,
        provider: String::from_utf8_lossy(&prov.binding).into_owned(),
        redirect_uri: uri_for(r, &client.redirect_uri),
        created: now(),
    };
    let redirect_uri = login.redirect_uri.clone();
    let url = match login::authorization_url(
        &endpoint,
        &client.client_id,
        &redirect_uri,
        &client.scope,
        &login.state,
        &login.nonce,
        &session::pkce_challenge(&login.verifier),
    ) {
        Ok(u) => u,
        Err(e) => {
            ngx_log_error!(NGX_LOG_ERR, r.log(), "oauth2: {}", e);
            return 503;
        }
    };
    if !state_issued(sc, &login.state) {
        ngx_log_error!(
            NGX_LOG_ERR,
            r.log(),
            "oauth2: the login state could not be stored"
        );
        return 503;
    }
    // keep at most MAX_STATES logins in progress: evict the oldest
    let prefix = format!("{}_st_", sc.cookie_name);
    let cookies = r.cookies();
    let mut states: Vec<(u64, String)> = cookies
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .map(|(k, v)| {
            let created = sc
                .keys
                .open(Purpose::State, v)
                .and_then(|b| serde_json::from_slice::<Login>(&b).ok())
                .map(|l| l.created)
                .unwrap_or(0);
            (created, k.clone())
        })
        .collect();
    states.sort();
    while states.len() >= MAX_STATES {
        let (_, name) = states.remove(0);
        delete_cookie(r, sc, &name, true);
    }
    // the state names its provider inside; the callback finds it there
    let sealed = sc.keys.seal(
        Purpose::State,
        &serde_json::to_vec(&login).unwrap_or_default(),
    );
    let name = format!("{prefix}{}", &session::short_hash(&login.state)[..8]);
    set_cookie(r, sc, &name, &sealed, STATE_TTL, true);
    with_worker(|w| w.count(metrics::LOGINS_STARTED));
    ngx_log_error!(
        NGX_LOG_INFO,
        r.log(),
        "oauth2: redirecting to the provider for login"
    );
    r.redirect(&url)
}
