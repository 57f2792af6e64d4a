//! The fetcher: a thread of its own in each worker, running a
//! single-threaded tokio runtime with reqwest. It knows no nginx type: it
//! takes jobs from a channel, keeps each provider's metadata and keys fresh,
//! and hands every result to the worker through a queue plus a write to an
//! eventfd (its own `dup()` of it, so the worker closing its end never makes
//! this thread write to a closed or reused descriptor).
//!
//! Every job gets an answer: a result, or a `FetchError` when the request
//! failed, its task panicked, or the runtime could not start.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oauth2_core::flights::JobResult;
use oauth2_core::keys::{backoff, KeySet, KeySource, Metadata};
use oauth2_core::provider::ProviderSpec;
use oauth2_core::waits::JobId;
use oauth2_core::FetchError;
use tokio::sync::{mpsc, watch, Notify};

use crate::kv::{StoreClient, StoreOp, StoreSpec};

/// Responses larger than this are refused.
const MAX_DOCUMENT: usize = 1024 * 1024;
/// Retry delays while the provider is down are capped at this.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// A test-only misbehaviour of one job (set by the glue only where test
/// hooks are on, see `test_hooks` in lib.rs): the fetcher's own failures,
/// which no real provider can cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// The job's task panics.
    Panic,
    /// The job never ends (a fetcher bug): only the request's deadline helps.
    Stall,
}

/// A request to the provider on behalf of requests: a form POST (token
/// endpoint, refresh, introspection) or a GET (UserInfo).
pub struct Job {
    pub id: JobId,
    pub provider: usize,
    /// For log lines: "token", "refresh", "introspection", "UserInfo".
    pub what: &'static str,
    pub url: String,
    /// The form to POST; `None`: a GET.
    pub form: Option<Vec<(String, String)>>,
    /// `Authorization` header value (client_secret_basic, or the bearer
    /// access token for UserInfo), if any.
    pub authorization: Option<String>,
    pub hook: Option<Hook>,
    /// Take this single-use key of a store first (store, key, ms to live);
    /// when another holds it the job fails with `FetchError::Busy`.
    pub lock: Option<(usize, String, u64)>,
}

/// An operation on a session store, for the worker.
pub struct StoreJob {
    pub id: JobId,
    pub store: usize,
    pub op: StoreOp,
}

/// What the worker hands to the fetcher.
pub enum Work {
    Http(Job),
    Store(StoreJob),
}

/// A provider's new metadata and keys, or why there are none.
pub struct Update {
    pub provider: usize,
    /// The fetch was asked for by the worker (unknown `kid`), not the timer.
    pub forced: bool,
    pub result: Result<(Option<Metadata>, KeySet), FetchError>,
    /// Seconds until the fetcher tries again.
    pub next_in: u64,
}

/// What the fetcher hands to the worker.
pub enum Msg {
    Keys(Update),
    Job(JobId, JobResult),
}

struct Outbox {
    queue: Mutex<Vec<Msg>>,
    /// This thread's own descriptor of the worker's eventfd.
    wake: OwnedFd,
}

impl Outbox {
    fn push(&self, m: Msg) {
        if let Ok(mut q) = self.queue.lock() {
            q.push(m);
        }
        let one: u64 = 1;
        // SAFETY: `wake` is an eventfd this Outbox owns (closed only when the
        // last holder drops it); writing 8 bytes from a valid u64 is what
        // eventfd expects. A full counter fails with EAGAIN: the worker is
        // woken anyway.
        unsafe { libc::write(self.wake.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }
}

/// The worker's handle on its fetcher. Dropping it stops the thread.
pub struct Fetcher {
    outbox: Arc<Outbox>,
    jobs: mpsc::UnboundedSender<Work>,
    notifies: HashMap<usize, Arc<Notify>>,
    _stop: watch::Sender<bool>,
}

impl Fetcher {
    /// Start the thread for the providers that need the network; results
    /// are signalled on `wake_fd` (duplicated: the caller keeps its own).
    pub fn start(
        specs: &[ProviderSpec],
        stores: &[StoreSpec],
        wake_fd: RawFd,
    ) -> Result<Fetcher, FetchError> {
        // SAFETY: dup of a descriptor the caller owns and keeps open during
        // this call; the new descriptor is owned by the OwnedFd.
        let dup = unsafe { libc::fcntl(wake_fd, libc::F_DUPFD_CLOEXEC, 0) };
        if dup < 0 {
            return Err(FetchError::Runtime(format!(
                "dup() failed: {}",
                std::io::Error::last_os_error()
            )));
        }
        // SAFETY: dup is a fresh descriptor nobody else owns.
        let wake = unsafe { OwnedFd::from_raw_fd(dup) };
        let outbox = Arc::new(Outbox {
            queue: Mutex::new(Vec::new()),
            wake,
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let (tx, rx) = mpsc::unbounded_channel();
        let mut notifies = HashMap::new();
        let mut loops = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            if spec.needs_network() {
                let n = Arc::new(Notify::new());
                notifies.insert(i, n.clone());
                loops.push((i, spec.clone(), n));
            }
        }
        let specs = specs.to_vec();
        let stores = stores.to_vec();
        let ob = outbox.clone();
        std::thread::Builder::new()
            .name("oauth2-fetch".into())
            .spawn(move || fetcher_main(specs, stores, loops, rx, ob, stop_rx))
            .map_err(|e| FetchError::Runtime(format!("cannot start the fetcher thread: {e}")))?;
        Ok(Fetcher {
            outbox,
            jobs: tx,
            notifies,
            _stop: stop_tx,
        })
    }

    /// Results since the last call.
    pub fn drain(&self) -> Vec<Msg> {
        match self.outbox.queue.lock() {
            Ok(mut q) => std::mem::take(&mut *q),
            Err(_) => Vec::new(),
        }
    }

    pub fn submit(&self, job: Job) -> Result<(), FetchError> {
        self.jobs
            .send(Work::Http(job))
            .map_err(|_| FetchError::NotRunning)
    }

    pub fn submit_store(&self, job: StoreJob) -> Result<(), FetchError> {
        self.jobs
            .send(Work::Store(job))
            .map_err(|_| FetchError::NotRunning)
    }

    /// Fetch the provider's metadata and keys now (its update is `forced`).
    pub fn refetch(&self, provider: usize) -> bool {
        match self.notifies.get(&provider) {
            Some(n) => {
                n.notify_one();
                true
            }
            None => false,
        }
    }
}

fn fetcher_main(
    specs: Vec<ProviderSpec>,
    stores: Vec<StoreSpec>,
    loops: Vec<(usize, ProviderSpec, Arc<Notify>)>,
    mut job_rx: mpsc::UnboundedReceiver<Work>,
    outbox: Arc<Outbox>,
    mut stop: watch::Receiver<bool>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            for (i, _, _) in &loops {
                outbox.push(Msg::Keys(Update {
                    provider: *i,
                    forced: false,
                    result: Err(FetchError::Runtime(e.to_string())),
                    next_in: 3600,
                }));
            }
            // every job sent before the worker notices gets its answer
            job_rx.close();
            while let Ok(work) = job_rx.try_recv() {
                let id = match work {
                    Work::Http(j) => j.id,
                    Work::Store(j) => j.id,
                };
                outbox.push(Msg::Job(id, Err(FetchError::Runtime(e.to_string()))));
            }
            return;
        }
    };
    let stores: Vec<Arc<StoreClient>> = stores.into_iter().map(StoreClient::new).collect();
    rt.block_on(async move {
        let mut clients: HashMap<usize, Result<reqwest::Client, FetchError>> = HashMap::new();
        for (i, spec) in specs.iter().enumerate() {
            if spec.needs_network() {
                clients.insert(i, build_client(spec));
            }
        }
        for (i, spec, notify) in loops {
            tokio::spawn(provider_loop(i, spec, notify, outbox.clone()));
        }
        // runs until the worker drops its handle (or exits)
        loop {
            tokio::select! {
                changed = stop.changed() => if changed.is_err() { break },
                work = job_rx.recv() => match work {
                    None => break,
                    Some(Work::Store(job)) => {
                        let ob = outbox.clone();
                        let client = stores.get(job.store).cloned();
                        tokio::spawn(async move {
                            let result = match client {
                                Some(c) => supervised(c.run(job.op)).await.and_then(|r| r),
                                None => Err(FetchError::NotRunning),
                            };
                            ob.push(Msg::Job(job.id, result));
                        });
                    }
                    Some(Work::Http(job)) => {
                        let client = match clients.get(&job.provider) {
                            Some(Ok(c)) => Ok(c.clone()),
                            Some(Err(e)) => Err(e.clone()),
                            None => Err(FetchError::Client("no HTTP client for this provider".into())),
                        };
                        let lock = job
                            .lock
                            .clone()
                            .and_then(|(s, key, ttl_ms)| Some((stores.get(s)?.clone(), key, ttl_ms)));
                        let ob = outbox.clone();
                        tokio::spawn(async move {
                            let id = job.id;
                            let result = match (client, lock) {
                                (Err(e), _) => Err(e),
                                (Ok(c), None) => supervised(run_job(c, job)).await.and_then(|r| r),
                                (Ok(c), Some((store, key, ttl_ms))) => {
                                    match store.run(StoreOp::Once { key, ttl_ms }).await {
                                        Ok((200, _)) => supervised(run_job(c, job)).await.and_then(|r| r),
                                        Ok(_) => Err(FetchError::Busy),
                                        Err(e) => Err(e),
                                    }
                                }
                            };
                            ob.push(Msg::Job(id, result));
                        });
                    }
                },
            }
        }
    });
}

/// Run `fut` as a task of its own: a panic in it becomes an error, never a
/// lost answer.
async fn supervised<T: Send + 'static>(
    fut: impl std::future::Future<Output = T> + Send + 'static,
) -> Result<T, FetchError> {
    tokio::spawn(fut).await.map_err(|e| {
        FetchError::TaskFailed(if e.is_panic() {
            "panic".into()
        } else {
            "cancelled".into()
        })
    })
}

async fn run_job(client: reqwest::Client, job: Job) -> JobResult {
    match job.hook {
        Some(Hook::Panic) => panic!("forced by a test hook"),
        Some(Hook::Stall) => std::future::pending::<()>().await,
        None => {}
    }
    send(&client, &job).await
}

async fn send(client: &reqwest::Client, job: &Job) -> JobResult {
    let fail = |cause: String| FetchError::Transport {
        what: job.what,
        url: job.url.clone(),
        cause,
    };
    let mut req = match &job.form {
        Some(form) => {
            let body = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(form.iter())
                .finish();
            client
                .post(&job.url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
        }
        None => client.get(&job.url),
    }
    .header("accept", "application/json");
    if let Some(a) = &job.authorization {
        req = req.header("authorization", a);
    }
    let mut resp = req.send().await.map_err(|e| fail(error_chain(&e)))?;
    let status = resp.status().as_u16();
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| fail(error_chain(&e)))? {
        if out.len() + chunk.len() > MAX_DOCUMENT {
            return Err(FetchError::TooLarge {
                what: job.what,
                url: job.url.clone(),
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok((status, out))
}

async fn provider_loop(i: usize, spec: ProviderSpec, notify: Arc<Notify>, outbox: Arc<Outbox>) {
    let client = match build_client(&spec) {
        Ok(c) => c,
        Err(e) => {
            outbox.push(Msg::Keys(Update {
                provider: i,
                forced: false,
                result: Err(e),
                next_in: 3600,
            }));
            return;
        }
    };
    let mut failures = 0u32;
    let mut forced = false;
    loop {
        let (c, s) = (client.clone(), spec.clone());
        let result = supervised(async move { fetch(&c, &s).await })
            .await
            .and_then(|r| r);
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
        outbox.push(Msg::Keys(Update {
            provider: i,
            forced,
            result,
            next_in: wait.as_secs(),
        }));
        forced = tokio::select! {
            _ = tokio::time::sleep(wait) => false,
            _ = notify.notified() => true,
        };
    }
}

fn build_client(spec: &ProviderSpec) -> Result<reqwest::Client, FetchError> {
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .timeout(spec.timeout)
        .connect_timeout(spec.timeout)
        .redirect(reqwest::redirect::Policy::limited(3))
        .user_agent(concat!(
            "ngx_http_oauth2_module/",
            env!("CARGO_PKG_VERSION")
        ));
    if let Some(pem) = &spec.ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| FetchError::Certificate(e.to_string()))?;
        b = b.tls_certs_only(certs);
    }
    b.build().map_err(|e| FetchError::Client(e.to_string()))
}

async fn get_document(
    client: &reqwest::Client,
    url: &str,
    what: &'static str,
) -> Result<Vec<u8>, FetchError> {
    let fail = |cause: String| FetchError::Transport {
        what,
        url: url.to_string(),
        cause,
    };
    let mut resp = client
        .get(url)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| fail(error_chain(&e)))?;
    if !resp.status().is_success() {
        return Err(FetchError::Status {
            what,
            url: url.to_string(),
            status: resp.status().as_u16(),
        });
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| fail(error_chain(&e)))? {
        if body.len() + chunk.len() > MAX_DOCUMENT {
            return Err(FetchError::TooLarge {
                what,
                url: url.to_string(),
            });
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
) -> Result<(Option<Metadata>, KeySet), FetchError> {
    let metadata = match &spec.issuer {
        Some(iss) => {
            let url = oauth2_core::config::discovery_url(iss);
            let doc = get_document(client, &url, "discovery").await?;
            Some(
                Metadata::parse(&doc, iss).map_err(|reason| FetchError::Document {
                    url: url.clone(),
                    reason,
                })?,
            )
        }
        None => None,
    };
    let jwks_uri = spec
        .jwks_uri
        .clone()
        .or_else(|| metadata.as_ref().and_then(|m| m.jwks_uri.clone()))
        .ok_or(FetchError::NoJwksUri)?;
    let doc = get_document(client, &jwks_uri, "JWKS").await?;
    let keys = KeySet::parse(&doc, KeySource::Network).map_err(|reason| FetchError::Document {
        url: jwks_uri.clone(),
        reason,
    })?;
    Ok((metadata, keys))
}
