//! The Redis session store's client, run by the fetcher thread (no nginx
//! types): one multiplexed connection per store per worker (redis-rs's
//! `ConnectionManager`, which reconnects with exponential backoff), at most
//! `MAX_IN_FLIGHT` commands at a time, every operation bounded by
//! `OP_TIMEOUT`. An operation answers like an HTTP job (status, body), so
//! the worker waits for it as for any job: 200 with the value (or a count),
//! 404 for a missing record, 409 when a single-use value was used before.

use std::sync::Arc;
use std::time::{Duration, Instant};

use oauth2_core::flights::JobResult;
use oauth2_core::FetchError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{Mutex, Semaphore};

/// Commands in flight per store per worker; more fail at once (503).
pub const MAX_IN_FLIGHT: usize = 64;
/// A command (connecting included) that takes longer fails (503).
pub const OP_TIMEOUT: Duration = Duration::from_millis(1000);
/// After a failed connection, the next attempt waits this long at first,
/// doubling up to `MAX_RETRY`.
const FIRST_RETRY: Duration = Duration::from_millis(200);
const MAX_RETRY: Duration = Duration::from_secs(2);

/// A store as the configuration names it.
#[derive(Clone, Debug)]
pub struct StoreSpec {
    /// `redis://…`, `rediss://…` or `redis+unix://…`, password included.
    pub url: String,
    /// For log lines: the URL without its password.
    pub display: String,
}

/// What one operation does.
#[derive(Debug)]
pub enum StoreOp {
    /// The value of a key: 200 and the value, or 404.
    Get(String),
    /// Set a key for `ttl_ms`, add `member` to each index set (kept as
    /// long) and delete `unlock` (a lock the write ends): 200.
    Put {
        key: String,
        value: Vec<u8>,
        ttl_ms: u64,
        member: String,
        sets: Vec<String>,
        unlock: Option<String>,
    },
    /// Delete keys: 200 and how many there were.
    Del(Vec<String>),
    /// Set a key only if it is not there: 200, or 409 when it was.
    Once { key: String, ttl_ms: u64 },
    /// Use a single-use key (delete it): 200, or 409 when it was not there.
    Take(String),
    /// Mark `once` (409 when it was there), then delete every record whose
    /// id is in the set `set` (ids are `record_prefix` + member) and the set:
    /// 200 and how many records went.
    EndTagged {
        once: Option<(String, u64)>,
        set: String,
        record_prefix: String,
    },
}

pub struct StoreClient {
    spec: StoreSpec,
    conn: Mutex<Conn>,
    slots: Semaphore,
}

struct Conn {
    manager: Option<ConnectionManager>,
    /// No new connection attempt before this (after a failure).
    not_before: Option<Instant>,
    backoff: Duration,
}

impl StoreClient {
    pub fn new(spec: StoreSpec) -> Arc<StoreClient> {
        Arc::new(StoreClient {
            spec,
            conn: Mutex::new(Conn {
                manager: None,
                not_before: None,
                backoff: FIRST_RETRY,
            }),
            slots: Semaphore::new(MAX_IN_FLIGHT),
        })
    }

    fn fail(&self, cause: impl std::fmt::Display) -> FetchError {
        FetchError::Transport {
            what: "session store",
            url: self.spec.display.clone(),
            cause: cause.to_string(),
        }
    }

    async fn manager(&self) -> Result<ConnectionManager, FetchError> {
        let mut c = self.conn.lock().await;
        if let Some(m) = &c.manager {
            return Ok(m.clone());
        }
        if c.not_before.is_some_and(|t| Instant::now() < t) {
            return Err(self.fail("not reachable (waiting before the next attempt)"));
        }
        let made = async {
            let client = redis::Client::open(self.spec.url.as_str())?;
            let cfg = ConnectionManagerConfig::new()
                .set_connection_timeout(OP_TIMEOUT)
                .set_response_timeout(OP_TIMEOUT)
                .set_number_of_retries(2)
                .set_factor(50)
                .set_max_delay(2000);
            ConnectionManager::new_with_config(client, cfg).await
        };
        match tokio::time::timeout(OP_TIMEOUT, made).await {
            Ok(Ok(m)) => {
                c.manager = Some(m.clone());
                c.not_before = None;
                c.backoff = FIRST_RETRY;
                Ok(m)
            }
            Ok(Err(e)) => {
                c.not_before = Some(Instant::now() + c.backoff);
                c.backoff = (c.backoff * 2).min(MAX_RETRY);
                Err(self.fail(e))
            }
            Err(_) => {
                c.not_before = Some(Instant::now() + c.backoff);
                c.backoff = (c.backoff * 2).min(MAX_RETRY);
                Err(self.fail("connecting timed out"))
            }
        }
    }

    /// Run one operation within the bounds.
    pub async fn run(self: Arc<Self>, op: StoreOp) -> JobResult {
        let Ok(_slot) = self.slots.try_acquire() else {
            return Err(self.fail("too many commands in flight"));
        };
        match tokio::time::timeout(OP_TIMEOUT, self.op(op)).await {
            Ok(r) => r,
            Err(_) => Err(self.fail("timed out")),
        }
    }

    async fn op(&self, op: StoreOp) -> JobResult {
        let mut m = self.manager().await?;
        let e = |err: redis::RedisError| self.fail(err);
        let ok = |n: u64| Ok((200, n.to_string().into_bytes()));
        match op {
            StoreOp::Get(key) => {
                let v: Option<Vec<u8>> = redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut m)
                    .await
                    .map_err(e)?;
                Ok(match v {
                    Some(v) => (200, v),
                    None => (404, Vec::new()),
                })
            }
            StoreOp::Put {
                key,
                value,
                ttl_ms,
                member,
                sets,
                unlock,
            } => {
                let mut p = redis::pipe();
                p.cmd("SET")
                    .arg(&key)
                    .arg(value)
                    .arg("PX")
                    .arg(ttl_ms)
                    .ignore();
                for s in &sets {
                    p.cmd("SADD").arg(s).arg(&member).ignore();
                    p.cmd("PEXPIRE").arg(s).arg(ttl_ms).ignore();
                }
                if let Some(u) = unlock {
                    p.cmd("DEL").arg(u).ignore();
                }
                p.query_async::<()>(&mut m).await.map_err(e)?;
                ok(1)
            }
            StoreOp::Del(keys) => {
                let n: u64 = redis::cmd("DEL")
                    .arg(&keys)
                    .query_async(&mut m)
                    .await
                    .map_err(e)?;
                ok(n)
            }
            StoreOp::Once { key, ttl_ms } => {
                Ok(if set_once(&mut m, &key, ttl_ms).await.map_err(e)? {
                    (200, b"1".to_vec())
                } else {
                    (409, Vec::new())
                })
            }
            StoreOp::Take(key) => {
                let n: u64 = redis::cmd("DEL")
                    .arg(&key)
                    .query_async(&mut m)
                    .await
                    .map_err(e)?;
                Ok(if n == 1 {
                    (200, b"1".to_vec())
                } else {
                    (409, Vec::new())
                })
            }
            StoreOp::EndTagged {
                once,
                set,
                record_prefix,
            } => {
                if let Some((key, ttl_ms)) = once {
                    if !set_once(&mut m, &key, ttl_ms).await.map_err(e)? {
                        return Ok((409, Vec::new()));
                    }
                }
                let ids: Vec<String> = redis::cmd("SMEMBERS")
                    .arg(&set)
                    .query_async(&mut m)
                    .await
                    .map_err(e)?;
                if ids.is_empty() {
                    return ok(0);
                }
                let mut keys: Vec<String> =
                    ids.iter().map(|i| format!("{record_prefix}{i}")).collect();
                keys.push(set);
                let n: u64 = redis::cmd("DEL")
                    .arg(&keys)
                    .query_async(&mut m)
                    .await
                    .map_err(e)?;
                // the set itself is one of the keys deleted
                ok(n.saturating_sub(1))
            }
        }
    }
}

/// `SET key 1 NX PX ttl`: true when the key was not there (set now).
async fn set_once(m: &mut ConnectionManager, key: &str, ttl_ms: u64) -> redis::RedisResult<bool> {
    let set: Option<String> = redis::cmd("SET")
        .arg(key)
        .arg(1)
        .arg("NX")
        .arg("PX")
        .arg(ttl_ms)
        .query_async(m)
        .await?;
    Ok(set.is_some())
}
