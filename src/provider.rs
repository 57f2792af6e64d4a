//! Per-worker provider state: metadata and keys, the background fetcher, and
//! the wake-up of requests waiting for keys.
//!
//! The fetcher is a thread of its own (started in each worker at
//! `init_process`) running a single-threaded tokio runtime with reqwest. It
//! never touches nginx data: it pushes results into a mutex-protected queue
//! and writes to an eventfd that the worker's event loop watches. The event
//! handler then, on the nginx thread, installs the new keys and posts the
//! write events of the requests that were waiting for them.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ptr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ngx::ffi::{
    ngx_close_connection, ngx_connection_t, ngx_cycle_t, ngx_event_t, ngx_get_connection,
    ngx_handle_read_event, ngx_http_request_t, ngx_post_event, ngx_posted_events, ngx_time,
    NGX_LOG_ERR, NGX_LOG_INFO, NGX_LOG_NOTICE, NGX_LOG_WARN,
};
use ngx::ngx_log_error;
use oauth2_core::cache::TokenCache;
use oauth2_core::jwt::Claims;
use oauth2_core::keys::{backoff, KeySet, KeySource, Metadata, RefetchThrottle};
use tokio::sync::Notify;

use crate::conf::ProviderSpec;

/// Responses larger than this are refused.
const MAX_DOCUMENT: usize = 1024 * 1024;
/// Retry delays while the provider is down are capped at this.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What the fetcher reports for one provider.
struct Update {
    provider: usize,
    /// The fetch was asked for by the worker (unknown `kid`), not the timer.
    forced: bool,
    result: Result<(Option<Metadata>, KeySet), String>,
    /// Seconds until the fetcher tries again.
    next_in: u64,
}

/// A POST to the provider (token endpoint) on behalf of a request.
pub struct Job {
    pub id: u64,
    pub provider: usize,
    pub url: String,
    pub form: Vec<(String, String)>,
    /// `Authorization` header value (client_secret_basic), if any.
    pub authorization: Option<String>,
}

/// The provider's answer to a job: status and body, or a transport error.
pub type JobResult = Result<(u16, Vec<u8>), String>;

enum Msg {
    Keys(Update),
    Job(u64, JobResult),
}

struct Shared {
    queue: Mutex<Vec<Msg>>,
    efd: libc::c_int,
}

impl Shared {
    fn push(&self, u: Update) {
        self.push_msg(Msg::Keys(u));
    }

    fn push_msg(&self, u: Msg) {
        if let Ok(mut q) = self.queue.lock() {
            q.push(u);
        }
        let one: u64 = 1;
        // SAFETY: efd is an eventfd owned by this worker for its lifetime;
        // writing 8 bytes from a valid u64 is what eventfd expects.
        unsafe { libc::write(self.efd, (&one as *const u64).cast(), 8) };
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// The first fetch has not finished.
    Loading,
    /// Keys are there (possibly old ones while the provider is down).
    Ready,
    /// Never had keys, and the last attempt failed.
    Failed,
}

struct Waiter {
    r: *mut ngx_http_request_t,
    /// Wait for a fetch the worker asked for (unknown kid), not any update.
    forced: bool,
}

pub struct ProviderRt {
    pub spec: ProviderSpec,
    pub keys: Option<Arc<KeySet>>,
    pub metadata: Option<Metadata>,
    pub state: KeyState,
    pub retry_in: u64,
    /// Did the last fetch succeed?
    pub last_ok: bool,
    throttle: RefetchThrottle,
    notify: Arc<Notify>,
    waiters: Vec<Waiter>,
}

impl ProviderRt {
    /// The key sets to validate with: fetched keys, then the static ones.
    pub fn key_sets(&self) -> Vec<Arc<KeySet>> {
        self.keys.iter().chain(self.spec.static_keys.iter()).cloned().collect()
    }

    /// Ask for a key refetch because a token named an unknown `kid`; false
    /// when one was made less than 30 s ago (or the provider has no network).
    pub fn request_refetch(&mut self) -> bool {
        if !self.spec.needs_network() {
            return false;
        }
        let now = ngx_time() as u64;
        if !self.throttle.try_acquire(now) {
            return false;
        }
        self.notify.notify_one();
        true
    }
}

pub struct Worker {
    pub providers: Vec<ProviderRt>,
    /// Finished jobs, until the request that waits for them takes them.
    pub job_results: HashMap<u64, JobResult>,
    /// Requests waiting for a job (several for a shared refresh).
    job_waiters: HashMap<u64, Vec<*mut ngx_http_request_t>>,
    next_job: u64,
    jobs: Option<tokio::sync::mpsc::UnboundedSender<Job>>,
    /// Per-worker state of the browser login (used states, refreshes).
    pub login: crate::endpoints::LoginState,
    /// Validated tokens (JWT and introspection), by a hash of the token.
    pub cache: TokenCache<Arc<Claims>>,
    /// Opened sessions, by their sealed cookie value.
    pub sessions: oauth2_core::session::SessionCache,
    /// Introspections in flight, by the token's cache key.
    pub introspections: HashMap<oauth2_core::cache::Key, u64>,
    shared: Arc<Shared>,
    conn: *mut ngx_connection_t,
    log: *mut ngx::ffi::ngx_log_t,
    // dropping it stops the fetcher's runtime
    _stop: tokio::sync::watch::Sender<bool>,
}

thread_local! {
    static WORKER: RefCell<Option<Worker>> = const { RefCell::new(None) };
}

/// Run `f` with this worker's state; None outside a worker (or before init).
pub fn with_worker<R>(f: impl FnOnce(&mut Worker) -> R) -> Option<R> {
    WORKER.with(|w| w.try_borrow_mut().ok().and_then(|mut w| w.as_mut().map(f)))
}

impl Worker {
    /// Park a request until the provider's next update (or, with `forced`,
    /// until the refetch it asked for). The caller returns NGX_AGAIN.
    pub fn wait(&mut self, provider: usize, r: *mut ngx_http_request_t, forced: bool) {
        self.providers[provider].waiters.push(Waiter { r, forced });
    }

    /// Forget a request that goes away (pool cleanup).
    pub fn forget(&mut self, r: *mut ngx_http_request_t) {
        for p in &mut self.providers {
            p.waiters.retain(|w| w.r != r);
        }
        for w in self.job_waiters.values_mut() {
            w.retain(|x| *x != r);
        }
    }

    /// Send a POST to the provider; the caller waits for `job_results[id]`
    /// (see `wait_job`). None when the fetcher is not running.
    pub fn submit(
        &mut self,
        provider: usize,
        url: String,
        form: Vec<(String, String)>,
        authorization: Option<String>,
    ) -> Option<u64> {
        let tx = self.jobs.as_ref()?;
        self.next_job += 1;
        let id = self.next_job;
        tx.send(Job { id, provider, url, form, authorization }).ok()?;
        Some(id)
    }

    /// Is job `id` still in flight (someone waits for it)?
    pub fn job_waiting(&self, id: u64) -> bool {
        self.job_waiters.contains_key(&id)
    }

    /// Park a request until job `id` is done.
    pub fn wait_job(&mut self, id: u64, r: *mut ngx_http_request_t) {
        self.job_waiters.entry(id).or_default().push(r);
    }
}

/// Start the worker's provider state and, if any provider needs the network,
/// the fetcher thread. Called from `init_process`.
pub fn init_worker(
    cycle: *mut ngx_cycle_t,
    specs: &[ProviderSpec],
    cache_bytes: usize,
) -> Result<(), String> {
    // SAFETY: cycle is the worker's valid cycle.
    let log = unsafe { (*cycle).log };
    // SAFETY: plain syscall; the fd is owned by this worker from now on.
    let efd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if efd < 0 {
        return Err(format!("eventfd() failed: {}", std::io::Error::last_os_error()));
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

    let shared = Arc::new(Shared { queue: Mutex::new(Vec::new()), efd });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut providers = Vec::with_capacity(specs.len());
    let mut jobs = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let notify = Arc::new(Notify::new());
        let state = if spec.needs_network() {
            jobs.push((i, spec.clone(), notify.clone()));
            KeyState::Loading
        } else {
            KeyState::Ready
        };
        providers.push(ProviderRt {
            spec: spec.clone(),
            keys: None,
            metadata: None,
            state,
            retry_in: 1,
            last_ok: !spec.needs_network(),
            throttle: RefetchThrottle::default(),
            notify,
            waiters: Vec::new(),
        });
    }
    let mut job_tx = None;
    if !jobs.is_empty() {
        let sh = shared.clone();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        job_tx = Some(tx);
        std::thread::Builder::new()
            .name("oauth2-fetch".into())
            .spawn(move || fetcher_main(jobs, rx, sh, stop_rx))
            .map_err(|e| format!("cannot start the fetcher thread: {e}"))?;
    }
    WORKER.with(|w| {
        *w.borrow_mut() = Some(Worker {
            providers,
            job_results: HashMap::new(),
            job_waiters: HashMap::new(),
            next_job: 0,
            jobs: job_tx,
            login: Default::default(),
            cache: TokenCache::new(cache_bytes),
            sessions: oauth2_core::session::SessionCache::new(cache_bytes),
            introspections: HashMap::new(),
            shared,
            conn,
            log,
            _stop: stop_tx,
        });
    });
    Ok(())
}

/// Stop watching the wake-up channel (`exit_process`).
pub fn exit_worker() {
    WORKER.with(|w| {
        if let Ok(mut w) = w.try_borrow_mut() {
            if let Some(worker) = w.take() {
                // SAFETY: conn is the connection init_worker made; closing it
                // closes the eventfd. The fetcher may still write to the
                // closed fd number; such a write fails harmlessly or hits an
                // fd reused at exit, which nginx no longer reads.
                unsafe { ngx_close_connection(worker.conn) };
                drop(worker);
            }
        }
    });
}

/// The wake-up channel's read handler, on the nginx thread.
unsafe extern "C" fn wakeup_handler(ev: *mut ngx_event_t) {
    crate::guard((), || {
        with_worker(|w| {
            let mut buf = 0u64;
            // SAFETY: efd is our non-blocking eventfd; reading 8 bytes into a u64.
            while unsafe { libc::read(w.shared.efd, (&mut buf as *mut u64).cast(), 8) } == 8 {}
            // SAFETY: ev is our connection's read event, valid until exit.
            unsafe { (*ev).set_ready(0) };
            let updates = match w.shared.queue.lock() {
                Ok(mut q) => std::mem::take(&mut *q),
                Err(_) => Vec::new(),
            };
            for m in updates {
                match m {
                    Msg::Keys(u) => apply_update(w.log, &mut w.providers[u.provider], u),
                    Msg::Job(id, result) => {
                        let waiters = w.job_waiters.remove(&id).unwrap_or_default();
                        if !waiters.is_empty() {
                            w.job_results.insert(id, result);
                        }
                        for r in waiters {
                            post_request(r);
                        }
                    }
                }
            }
        });
    })
}

fn apply_update(log: *mut ngx::ffi::ngx_log_t, p: &mut ProviderRt, u: Update) {
    p.retry_in = u.next_in.max(1);
    p.last_ok = u.result.is_ok();
    match u.result {
        Ok((metadata, keys)) => {
            let first = p.keys.is_none();
            let n = keys.keys.len();
            for s in &keys.skipped {
                ngx_log_error!(NGX_LOG_INFO, log, "oauth2: skipped a key of \"{}\": {}", p.spec.name(), s);
            }
            if first || p.state != KeyState::Ready {
                ngx_log_error!(NGX_LOG_NOTICE, log, "oauth2: loaded {} key(s) of \"{}\"", n, p.spec.name());
            }
            p.metadata = metadata.or(p.metadata.take());
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
    let mut keep = Vec::new();
    for w in p.waiters.drain(..) {
        if w.forced && !u.forced {
            keep.push(w);
            continue;
        }
        post_request(w.r);
    }
    p.waiters = keep;
}

/// Resume a waiting request: post its connection's write event, which calls
/// its `write_event_handler` (the phase runner, or an endpoint's resume).
fn post_request(r: *mut ngx_http_request_t) {
    // SAFETY: a waiting request is alive: its ctx removes it from every
    // waiting list when the request pool goes away, before it is freed.
    unsafe {
        let c = (*r).connection;
        ngx_post_event((*c).write, ptr::addr_of_mut!(ngx_posted_events));
    }
}

// ---- the fetcher thread ------------------------------------------------

fn fetcher_main(
    jobs: Vec<(usize, ProviderSpec, Arc<Notify>)>,
    mut job_rx: tokio::sync::mpsc::UnboundedReceiver<Job>,
    shared: Arc<Shared>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            for (i, _, _) in &jobs {
                shared.push(Update {
                    provider: *i,
                    forced: false,
                    result: Err(format!("cannot start the fetcher runtime: {e}")),
                    next_in: 3600,
                });
            }
            return;
        }
    };
    rt.block_on(async move {
        let mut clients: HashMap<usize, reqwest::Client> = HashMap::new();
        for (i, spec, notify) in jobs {
            if let Ok(c) = build_client(&spec) {
                clients.insert(i, c);
            }
            tokio::spawn(provider_loop(i, spec, notify, shared.clone()));
        }
        // runs until the worker drops the sender (or exits)
        loop {
            tokio::select! {
                changed = stop.changed() => if changed.is_err() { break },
                job = job_rx.recv() => match job {
                    None => break,
                    Some(job) => {
                        let client = clients.get(&job.provider).cloned();
                        let sh = shared.clone();
                        tokio::spawn(async move {
                            let id = job.id;
                            let result = match client {
                                Some(c) => post_form(&c, job).await,
                                None => Err("no HTTP client for this provider".into()),
                            };
                            sh.push_msg(Msg::Job(id, result));
                        });
                    }
                },
            }
        }
    });
}

async fn post_form(client: &reqwest::Client, job: Job) -> JobResult {
    let fail = |e: String| format!("request to \"{}\" failed ({e})", job.url);
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(job.form.iter())
        .finish();
    let mut req = client
        .post(&job.url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body(body);
    if let Some(a) = &job.authorization {
        req = req.header("authorization", a);
    }
    let mut resp = req.send().await.map_err(|e| fail(error_chain(&e)))?;
    let status = resp.status().as_u16();
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| fail(error_chain(&e)))? {
        if out.len() + chunk.len() > MAX_DOCUMENT {
            return Err(fail("response too large".into()));
        }
        out.extend_from_slice(&chunk);
    }
    Ok((status, out))
}

async fn provider_loop(i: usize, spec: ProviderSpec, notify: Arc<Notify>, shared: Arc<Shared>) {
    let client = match build_client(&spec) {
        Ok(c) => c,
        Err(e) => {
            shared.push(Update { provider: i, forced: false, result: Err(e), next_in: 3600 });
            return;
        }
    };
    let mut failures = 0u32;
    let mut forced = false;
    loop {
        let result = fetch(&client, &spec).await;
        let wait = match &result {
            Ok(_) => {
                failures = 0;
                spec.refresh
            }
            Err(_) => {
                failures += 1;
                backoff(failures, MAX_BACKOFF.min(spec.refresh))
            }
        };
        shared.push(Update { provider: i, forced, result, next_in: wait.as_secs() });
        forced = tokio::select! {
            _ = tokio::time::sleep(wait) => false,
            _ = notify.notified() => true,
        };
    }
}

fn build_client(spec: &ProviderSpec) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .timeout(spec.timeout)
        .connect_timeout(spec.timeout)
        .redirect(reqwest::redirect::Policy::limited(3))
        .user_agent(concat!("ngx_http_oauth2_module/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = &spec.ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| format!("invalid oauth2_ssl_trusted_certificate: {e}"))?;
        b = b.tls_certs_only(certs);
    }
    b.build().map_err(|e| format!("cannot create the HTTP client: {e}"))
}

async fn get_document(client: &reqwest::Client, url: &str, what: &str) -> Result<Vec<u8>, String> {
    let fail = |e: String| format!("{what} request to \"{url}\" failed ({e})");
    let mut resp = client
        .get(url)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| fail(error_chain(&e)))?;
    if !resp.status().is_success() {
        return Err(fail(format!("status {}", resp.status().as_u16())));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| fail(error_chain(&e)))? {
        if body.len() + chunk.len() > MAX_DOCUMENT {
            return Err(fail("response too large".into()));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The innermost cause is what an operator needs ("connection refused",
/// "certificate verify failed"); reqwest's top-level text is generic.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        cur = s.source();
    }
    parts.join(": ")
}

async fn fetch(
    client: &reqwest::Client,
    spec: &ProviderSpec,
) -> Result<(Option<Metadata>, KeySet), String> {
    let metadata = match &spec.issuer {
        Some(iss) => {
            let url = oauth2_core::config::discovery_url(iss);
            let doc = get_document(client, &url, "discovery").await?;
            Some(Metadata::parse(&doc, iss).map_err(|e| format!("{e} at \"{url}\""))?)
        }
        None => None,
    };
    let jwks_uri = spec
        .jwks_uri
        .clone()
        .or_else(|| metadata.as_ref().and_then(|m| m.jwks_uri.clone()))
        .ok_or_else(|| "the provider metadata has no \"jwks_uri\"".to_string())?;
    let doc = get_document(client, &jwks_uri, "JWKS").await?;
    let keys = KeySet::parse(&doc, KeySource::Network).map_err(|e| format!("{e} at \"{jwks_uri}\""))?;
    Ok((metadata, keys))
}
