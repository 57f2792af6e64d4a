//! Per-worker state: each provider's metadata and keys, the caches, the
//! shared work (refreshes, introspections), the wait registry of parked
//! requests with their deadline timer, and the wake-up channel from the
//! fetcher thread.
//!
//! A parked request is in the registry exactly once, from its first wait
//! until its pool goes (a pool cleanup forgets it, whatever else happened),
//! so every request this file wakes is alive. Each wait has a deadline
//! derived from `oauth2_provider_timeout`; one worker timer fires at the
//! earliest. While requests are parked that timer keeps a gracefully
//! exiting worker alive, so shutdown drops no parked request.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::ffi::c_void;
use std::ptr;
use std::sync::Arc;

use ngx::ffi::{
    ngx_add_timer, ngx_close_connection, ngx_connection_t, ngx_current_msec, ngx_cycle_t,
    ngx_del_timer, ngx_event_t, ngx_get_connection, ngx_handle_read_event, ngx_log_t, ngx_msec_t,
    ngx_time, NGX_LOG_ERR, NGX_LOG_INFO, NGX_LOG_NOTICE, NGX_LOG_WARN,
};
use ngx::http::Request;
use ngx::{ngx_log_debug, ngx_log_error};
use oauth2_core::cache::TokenCache;
use oauth2_core::flights::{Introspections, JobResult, Refreshes};
use oauth2_core::jwt::Claims;
use oauth2_core::keys::{KeySet, Metadata, RefetchThrottle};
use oauth2_core::provider::ProviderSpec;
use oauth2_core::session::SessionCache;
use oauth2_core::waits::{Check, JobId, Registry, WaitFor, Wake};
use oauth2_core::FetchError;

use crate::fetcher::{Fetcher, Hook, Job, Msg, StoreJob, Update};
use crate::http::{post_request, RawRequest, RequestExt};
use crate::kv::{StoreOp, StoreSpec};
use crate::shm::Stats;
use oauth2_core::metrics;

/// Introspection calls in flight per worker; more get `503`.
pub const MAX_INTROSPECTIONS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// The first fetch has not finished.
    Loading,
    /// Keys are there (possibly old ones while the provider is down).
    Ready,
    /// Never had keys, and the last attempt failed.
    Failed,
}

pub struct ProviderRt {
    pub spec: ProviderSpec,
    pub keys: Option<Arc<KeySet>>,
    pub metadata: Option<Metadata>,
    pub state: KeyState,
    /// Seconds until the fetcher tries again (`Retry-After`).
    pub retry_in: u64,
    /// Did the last fetch succeed?
    pub last_ok: bool,
    throttle: RefetchThrottle,
    /// When this worker first saw each `kid` (the status shows key ages).
    first_seen: HashMap<String, u64>,
}

impl ProviderRt {
    /// The key sets to validate with: fetched keys, then the static ones.
    pub fn with_key_sets<R>(&self, f: impl FnOnce(&[&KeySet]) -> R) -> R {
        match (self.keys.as_deref(), self.spec.static_keys.as_deref()) {
            (Some(a), Some(b)) => f(&[a, b]),
            (Some(a), None) | (None, Some(a)) => f(&[a]),
            (None, None) => f(&[]),
        }
    }

    pub fn has_keys(&self) -> bool {
        self.keys.is_some() || self.spec.static_keys.is_some()
    }
}

pub struct Worker {
    pub providers: Vec<ProviderRt>,
    waits: Registry<RawRequest>,
    pub refreshes: Refreshes,
    pub introspections: Introspections,
    /// Answers of the token endpoint at the callback, for their request.
    token_results: HashMap<JobId, JobResult>,
    next_job: JobId,
    fetcher: Option<Fetcher>,
    /// Validated tokens (JWT and introspection).
    pub cache: TokenCache<Arc<Claims>>,
    /// Opened sessions, by their sealed cookie value.
    pub sessions: SessionCache,
    /// States already used at the callback (replay protection), until expiry.
    pub used_states: HashMap<String, u64>,
    /// This worker's figures (the status zone).
    pub stats: Option<Stats>,
    /// Session stores (by index) whose last operation failed.
    stores_down: HashSet<usize>,
    /// DPoP proof keys parsed before (by their JWK).
    pub dpop_keys: oauth2_core::dpop::ProofKeys,
    conn: *mut ngx_connection_t,
    timer: Box<ngx_event_t>,
    log: *mut ngx_log_t,
}

thread_local! {
    static WORKER: RefCell<Option<Worker>> = const { RefCell::new(None) };
    /// Requests whose pool went while the worker state was in use.
    static GONE: RefCell<Vec<RawRequest>> = const { RefCell::new(Vec::new()) };
}

/// Run `f` with this worker's state; None outside a worker (or before init).
pub fn with_worker<R>(f: impl FnOnce(&mut Worker) -> R) -> Option<R> {
    WORKER.with(|w| {
        let mut w = w.try_borrow_mut().ok()?;
        let w = w.as_mut()?;
        for r in GONE.with(|g| std::mem::take(&mut *g.borrow_mut())) {
            w.forget(r);
        }
        Some(f(w))
    })
}

fn now_ms() -> ngx_msec_t {
    // SAFETY: nginx's cached clock, updated by the worker's own event loop
    // on this thread.
    unsafe { ngx_current_msec }
}

/// Pool cleanup of a request that was parked once: it is nowhere any more.
unsafe extern "C" fn forget_request(data: *mut c_void) {
    crate::guard((), || {
        let r = data as RawRequest;
        if with_worker(|w| w.forget(r)).is_none() {
            // the state is in use further up this stack: forget it at the
            // next use, before anything can be woken
            GONE.with(|g| g.borrow_mut().push(r));
        }
    })
}

impl Worker {
    /// Park a request until `what` arrives or its deadline passes; the
    /// caller then answers `NGX_AGAIN` (or `NGX_DONE` from a content
    /// handler). False when it cannot be parked (no memory): answer 500.
    pub fn park(&mut self, r: &mut Request, provider: usize, what: WaitFor) -> bool {
        let raw = r.raw();
        let wait = self.providers[provider].spec.max_wait(what);
        let deadline = now_ms() + wait.as_millis() as ngx_msec_t;
        if self.waits.park(raw, what, deadline as u64)
            && !r.on_pool_cleanup(Some(forget_request), raw.cast())
        {
            self.waits.forget(raw);
            return false;
        }
        r.watch_client_close();
        ngx_log_debug!(
            mask: ngx::log::DebugMask::Http,
            r.log(),
            "oauth2: request parked, waiting for {:?} up to {} ms ({} parked)",
            what,
            wait.as_millis(),
            self.waits.parked()
        );
        self.arm_timer();
        true
    }

    /// At the start of every handler run: is the request still parked (a
    /// rerun: answer NGX_AGAIN and do nothing), woken, or fresh?
    pub fn check(&mut self, r: &mut Request) -> Check {
        let c = self.waits.check(r.raw());
        if let Check::Woken(what, how) = c {
            r.stop_watching_client();
            ngx_log_debug!(mask: ngx::log::DebugMask::Http, r.log(), "oauth2: request resumed: {:?} {:?}", what, how);
        }
        c
    }

    fn forget(&mut self, r: RawRequest) {
        self.waits.forget(r);
        self.arm_timer();
    }

    /// Keep a validated token (and count what the cache did).
    pub fn cache_insert(&mut self, id: u32, credential: &[u8], claims: Arc<Claims>, exp: u64) {
        let evicted = self.cache.insert(id, credential, claims, exp);
        if let Some(s) = &self.stats {
            s.add_n(metrics::CACHE_EVICTIONS, evicted as u64);
            s.set(metrics::CACHE_ENTRIES, self.cache.len() as u64);
        }
    }

    /// Record how a store's last operation went: true when that changes
    /// its state (the caller logs the start and the end of a failure streak).
    pub fn store_state(&mut self, store: usize, ok: bool) -> bool {
        if ok {
            self.stores_down.remove(&store)
        } else {
            self.stores_down.insert(store)
        }
    }

    /// Count an introspection call sent to provider `p`, or one that failed.
    pub fn count_introspection(&self, p: usize, failed: bool) {
        if let Some(s) = &self.stats {
            s.introspection(p, failed);
        }
    }

    /// Count one of the figures of `oauth2_core::metrics::GLOBAL`.
    #[inline]
    pub fn count(&self, g: usize) {
        if let Some(s) = &self.stats {
            s.add(g);
        }
    }

    /// Send a POST to the provider; its answer wakes the requests parked on
    /// `WaitFor::Job(id)` and goes to the job's owner (refreshes,
    /// introspections) or, for the callback, to `take_job_result`.
    pub fn submit(
        &mut self,
        provider: usize,
        what: &'static str,
        url: String,
        form: Option<Vec<(String, String)>>,
        authorization: Option<String>,
        hook: Option<Hook>,
    ) -> Result<JobId, FetchError> {
        self.submit_locked(provider, what, url, form, authorization, hook, None)
    }

    /// `submit`, taking a store's single-use key first (`Job::lock`).
    #[allow(clippy::too_many_arguments)]
    pub fn submit_locked(
        &mut self,
        provider: usize,
        what: &'static str,
        url: String,
        form: Option<Vec<(String, String)>>,
        authorization: Option<String>,
        hook: Option<Hook>,
        lock: Option<(usize, String, u64)>,
    ) -> Result<JobId, FetchError> {
        let id = self.next_job_id()?;
        let f = self.fetcher.as_ref().ok_or(FetchError::NotRunning)?;
        f.submit(Job {
            id,
            provider,
            what,
            url,
            form,
            authorization,
            hook,
            lock,
        })?;
        Ok(id)
    }

    /// An operation on session store `store` (a Redis store's index); its
    /// answer wakes the requests parked on `WaitFor::Job(id)` and, when one
    /// waited, goes to `take_job_result`.
    pub fn submit_store(&mut self, store: usize, op: StoreOp) -> Result<JobId, FetchError> {
        let id = self.next_job_id()?;
        let f = self.fetcher.as_ref().ok_or(FetchError::NotRunning)?;
        f.submit_store(StoreJob { id, store, op })?;
        Ok(id)
    }

    /// A new job's id (when the fetcher runs to take it).
    fn next_job_id(&mut self) -> Result<JobId, FetchError> {
        if self.fetcher.is_none() {
            return Err(FetchError::NotRunning);
        }
        self.next_job += 1;
        Ok(self.next_job)
    }

    /// The answer of a job a callback request waited for (token endpoint,
    /// UserInfo).
    pub fn take_job_result(&mut self, job: JobId) -> Option<JobResult> {
        self.token_results.remove(&job)
    }

    /// Ask for a key refetch because a token named an unknown `kid`; false
    /// when one was made less than 30 s ago (or the provider has no network).
    pub fn refetch(&mut self, provider: usize) -> bool {
        let p = &mut self.providers[provider];
        if !p.spec.needs_network() || !p.throttle.try_acquire(ngx_time() as u64) {
            return false;
        }
        self.fetcher.as_ref().is_some_and(|f| f.refetch(provider))
    }

    /// Keep the deadline timer at the earliest deadline, or off (and the
    /// parked-requests figure up to date: every change of the registry
    /// comes through here).
    fn arm_timer(&mut self) {
        if let Some(s) = &self.stats {
            s.set(metrics::PARKED, self.waits.parked() as u64);
        }
        let ev: *mut ngx_event_t = &mut *self.timer;
        // SAFETY: the timer event lives in this worker state (boxed, so it
        // does not move) and is removed from the timer tree before it is
        // dropped (exit_worker).
        unsafe {
            match self.waits.next_deadline() {
                None => {
                    if (*ev).timer_set() != 0 {
                        ngx_del_timer(ev);
                    }
                }
                Some(d) => {
                    if (*ev).timer_set() != 0 && (*ev).timer.key == d as ngx_msec_t {
                        return;
                    }
                    if (*ev).timer_set() != 0 {
                        ngx_del_timer(ev);
                    }
                    ngx_add_timer(ev, (d as ngx_msec_t).saturating_sub(now_ms()).max(1));
                }
            }
        }
    }

    fn wake(&self, rs: Vec<RawRequest>, why: &str) {
        for r in rs {
            ngx_log_debug!(mask: ngx::log::DebugMask::Http, self.log, "oauth2: waking request {:p}: {}", r, why);
            // SAFETY: the registry held r, so r is alive (see post_request).
            unsafe { post_request(r) };
        }
    }

    fn on_message(&mut self, m: Msg) {
        match m {
            Msg::Keys(u) => {
                let (provider, forced) = (u.provider, u.forced);
                apply_update(self.log, &mut self.providers[provider], u);
                if let Some(s) = &self.stats {
                    let p = &self.providers[provider];
                    let keys: Vec<(String, u64)> = p
                        .keys
                        .iter()
                        .flat_map(|k| k.keys.iter())
                        .filter_map(|k| k.kid.clone())
                        .map(|kid| {
                            let at = p.first_seen.get(&kid).copied().unwrap_or(0);
                            (kid, at)
                        })
                        .collect();
                    s.provider(provider, p.last_ok, ngx_time() as u64, &keys);
                }
                let rs = self.waits.provider_updated(provider, forced);
                self.wake(rs, "provider update");
            }
            Msg::Job(id, result) => {
                let waited = self.waits.waits_for_job(id);
                if let Err(e) = &result {
                    ngx_log_debug!(mask: ngx::log::DebugMask::Http, self.log, "oauth2: job {} failed: {}", id, e);
                }
                if self.refreshes.owns(id) {
                    match self.refreshes.finished(id, result, ngx_time() as u64) {
                        Some(true) => self.count(metrics::REFRESHES),
                        Some(false) => self.count(metrics::REFRESH_FAILURES),
                        None => {}
                    }
                } else if self.introspections.owns(id) {
                    self.introspections.finished(id, result, waited);
                } else if waited {
                    self.token_results.insert(id, result);
                }
                let rs = self.waits.job_done(id);
                self.wake(rs, "job done");
            }
        }
    }
}

/// Start the worker's state and, if any provider needs the network, the
/// fetcher thread. Called from `init_process`.
pub fn init_worker(
    cycle: *mut ngx_cycle_t,
    specs: &[ProviderSpec],
    stores: &[StoreSpec],
    cache_bytes: usize,
    status_zone: Option<std::ptr::NonNull<ngx::ffi::ngx_shm_zone_t>>,
) -> Result<(), String> {
    // SAFETY: cycle is the worker's valid cycle.
    let log = unsafe { (*cycle).log };
    // SAFETY: plain syscall; the fd is owned by this worker from now on.
    let efd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if efd < 0 {
        return Err(format!(
            "eventfd() failed: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: efd is a valid descriptor; ngx_get_connection takes ownership
    // of it (ngx_close_connection closes it).
    let conn = unsafe { ngx_get_connection(efd, log) };
    if conn.is_null() {
        // SAFETY: efd was not handed over to nginx.
        unsafe { libc::close(efd) };
        return Err("no free connection for the oauth2 wake-up channel".into());
    }
    // SAFETY: conn is a fresh connection from nginx with valid read/write
    // events; we only set their handler and log before arming the read event.
    unsafe {
        (*conn).log = log;
        (*(*conn).read).log = log;
        (*(*conn).write).log = log;
        (*(*conn).read).handler = Some(wakeup_handler);
        (*conn).data = ptr::null_mut();
        if ngx_handle_read_event((*conn).read, 0) != 0 {
            ngx_close_connection(conn);
            return Err("cannot watch the oauth2 wake-up channel".into());
        }
    }
    let fetcher = if specs.iter().any(|s| s.needs_network()) || !stores.is_empty() {
        match Fetcher::start(specs, stores, efd) {
            Ok(f) => Some(f),
            Err(e) => {
                // SAFETY: conn is ours, made above.
                unsafe { ngx_close_connection(conn) };
                return Err(e.to_string());
            }
        }
    } else {
        None
    };
    let providers = specs
        .iter()
        .map(|spec| ProviderRt {
            spec: spec.clone(),
            keys: None,
            metadata: None,
            state: if spec.needs_network() {
                KeyState::Loading
            } else {
                KeyState::Ready
            },
            retry_in: 1,
            last_ok: !spec.needs_network(),
            throttle: RefetchThrottle::default(),
            first_seen: HashMap::new(),
        })
        .collect();
    // SAFETY: an all-zero ngx_event_t is its "not set" state (as nginx's
    // own ngx_pcalloc'ed events); handler, data and log are set below.
    let mut timer: Box<ngx_event_t> = Box::new(unsafe { std::mem::zeroed() });
    timer.handler = Some(deadline_handler);
    timer.log = log;
    timer.data = ptr::null_mut();
    // not cancelable: a worker that exits gracefully waits for its parked
    // requests to get their answer (the timer exists only while some wait)
    timer.set_cancelable(0);
    let names: Vec<String> = specs.iter().map(|s| s.name().to_string()).collect();
    let stats = Stats::for_worker(status_zone, &names);
    WORKER.with(|w| {
        *w.borrow_mut() = Some(Worker {
            providers,
            waits: Registry::default(),
            refreshes: Refreshes::default(),
            introspections: Introspections::new(MAX_INTROSPECTIONS),
            token_results: HashMap::new(),
            stores_down: HashSet::new(),
            dpop_keys: Default::default(),
            next_job: 0,
            fetcher,
            cache: TokenCache::new(cache_bytes),
            sessions: SessionCache::new(cache_bytes),
            used_states: HashMap::new(),
            stats,
            conn,
            timer,
            log,
        });
    });
    Ok(())
}

/// `exit_process`: stop the timer and the wake-up channel, let the fetcher
/// go. A graceful exit comes here only after every parked request ended
/// (the timer keeps the worker alive until then); on a fast shutdown the
/// requests still parked are named in the log.
pub fn exit_worker() {
    WORKER.with(|w| {
        let Ok(mut w) = w.try_borrow_mut() else {
            return;
        };
        let Some(mut worker) = w.take() else { return };
        let parked = worker.waits.parked();
        if parked > 0 {
            ngx_log_error!(
                NGX_LOG_NOTICE,
                worker.log,
                "oauth2: worker exits with {} request(s) still waiting for the provider",
                parked
            );
        }
        let ev: *mut ngx_event_t = &mut *worker.timer;
        // SAFETY: our timer event, in the tree only when timer_set.
        unsafe {
            if (*ev).timer_set() != 0 {
                ngx_del_timer(ev);
            }
        }
        // SAFETY: conn is the connection init_worker made; closing it closes
        // the worker's eventfd. The fetcher writes to its own dup of it.
        unsafe { ngx_close_connection(worker.conn) };
        drop(worker);
    });
}

/// The wake-up channel's read handler, on the nginx thread.
unsafe extern "C" fn wakeup_handler(ev: *mut ngx_event_t) {
    crate::guard((), || {
        with_worker(|w| {
            let mut buf = 0u64;
            // SAFETY: conn's fd is our non-blocking eventfd; reading 8 bytes
            // into a u64.
            while unsafe { libc::read((*w.conn).fd, (&mut buf as *mut u64).cast(), 8) } == 8 {}
            // SAFETY: ev is our connection's read event, valid until exit.
            unsafe { (*ev).set_ready(0) };
            let msgs = w.fetcher.as_ref().map(|f| f.drain()).unwrap_or_default();
            for m in msgs {
                w.on_message(m);
            }
            w.arm_timer();
        });
    })
}

/// The deadline timer: answer the requests whose wait took too long.
unsafe extern "C" fn deadline_handler(_ev: *mut ngx_event_t) {
    crate::guard((), || {
        with_worker(|w| {
            let expired = w.waits.expire(now_ms() as u64);
            if !expired.is_empty() {
                ngx_log_error!(
                    NGX_LOG_INFO,
                    w.log,
                    "oauth2: {} request(s) waited too long for the provider",
                    expired.len()
                );
            }
            // a job that outlived every wait for it is stuck: free its place
            for (_, what) in &expired {
                if let WaitFor::Job(job) = *what {
                    if !w.waits.waits_for_job(job) {
                        w.refreshes.give_up(job);
                        w.introspections.give_up(job);
                    }
                }
            }
            w.wake(
                expired.into_iter().map(|(r, _)| r).collect(),
                "deadline passed",
            );
            w.arm_timer();
        });
    })
}

fn apply_update(log: *mut ngx_log_t, p: &mut ProviderRt, u: Update) {
    p.retry_in = u.next_in.max(1);
    p.last_ok = u.result.is_ok();
    match u.result {
        Ok((metadata, keys)) => {
            let first = p.keys.is_none();
            let n = keys.keys.len();
            for s in &keys.skipped {
                ngx_log_error!(
                    NGX_LOG_INFO,
                    log,
                    "oauth2: skipped a key of \"{}\": {}",
                    p.spec.name(),
                    s
                );
            }
            if first || p.state != KeyState::Ready {
                ngx_log_error!(
                    NGX_LOG_NOTICE,
                    log,
                    "oauth2: loaded {} key(s) of \"{}\"",
                    n,
                    p.spec.name()
                );
            }
            p.metadata = metadata.or(p.metadata.take());
            let now = ngx_time() as u64;
            for kid in keys.keys.iter().filter_map(|k| k.kid.as_ref()) {
                p.first_seen.entry(kid.clone()).or_insert(now);
            }
            p.keys = Some(Arc::new(keys));
            p.state = KeyState::Ready;
        }
        Err(e) => {
            if p.keys.is_some() || p.spec.static_keys.is_some() {
                ngx_log_error!(
                    NGX_LOG_WARN,
                    log,
                    "oauth2: {}, keeping the keys in use, next attempt in {}s, while refreshing keys of \"{}\"",
                    e,
                    p.retry_in,
                    p.spec.name()
                );
                p.state = KeyState::Ready;
            } else {
                ngx_log_error!(
                    NGX_LOG_ERR,
                    log,
                    "oauth2: {}, next attempt in {}s, while loading keys of \"{}\"",
                    e,
                    p.retry_in,
                    p.spec.name()
                );
                p.state = KeyState::Failed;
            }
        }
    }
}

/// How a woken request learns that its wait timed out.
pub fn timed_out(c: Check) -> bool {
    matches!(c, Check::Woken(_, Wake::TimedOut))
}

/// The fetcher misbehaviour a test asks for with `X-Oauth2-Test-Fetcher:
/// panic | stall` (only where test hooks are on, see `crate::test_hooks`).
pub fn test_hook(r: &Request) -> Option<Hook> {
    if !crate::test_hooks() {
        return None;
    }
    match r.header_in("X-Oauth2-Test-Fetcher")? {
        "panic" => Some(Hook::Panic),
        "stall" => Some(Hook::Stall),
        _ => None,
    }
}
