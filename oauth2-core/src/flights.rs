//! Work that several requests share, one per worker: the refresh of a
//! session (one POST per refresh token, its outcome reused for a minute by
//! requests still carrying the old cookie) and the introspection of a token
//! (one call per token at a time, refusals remembered briefly, a bounded
//! number in flight). A job's result is always recorded by its owner here,
//! whoever still waits for it: a request that comes later finds the outcome
//! instead of waiting for a job that already ended.

use std::collections::HashMap;
use std::sync::Arc;

use crate::cache::Key;
use crate::error::{FetchError, Rejection, TokenEndpointError};
use crate::login;
use crate::session::Session;
use crate::waits::JobId;

/// The provider's answer to a POST: status and body, or why there is none.
pub type JobResult = Result<(u16, Vec<u8>), FetchError>;

/// Why a refresh gave no new tokens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefreshError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Endpoint(#[from] TokenEndpointError),
    #[error("the provider metadata has no token_endpoint")]
    NoTokenEndpoint,
    /// The request's wait for the refresh passed its deadline.
    #[error("the provider did not answer in time")]
    TimedOut,
    /// Another worker (or nginx) refreshes this stored session right now.
    #[error("another worker is refreshing this session")]
    Elsewhere,
}

impl RefreshError {
    /// The provider could not be reached or is in trouble: the session is
    /// kept (`503` while its access token is expired). Otherwise the
    /// provider refused the refresh token and the session ends.
    pub fn transient(&self) -> bool {
        match self {
            RefreshError::Endpoint(e) => e.transient(),
            _ => true,
        }
    }
}

/// The session after a refresh: new tokens, the same identity (the ID
/// token validated at login), the same start.
pub fn refreshed_session(old: &Session, res: JobResult, now: u64) -> Result<Session, RefreshError> {
    let (status, body) = res?;
    let tokens = login::parse_token_response(status, &body)?;
    Ok(Session {
        claims: old.claims.clone(),
        access_token: tokens.access_token,
        access_exp: tokens.expires_in.map(|e| now + e).unwrap_or(0),
        refresh_token: tokens.refresh_token.or_else(|| old.refresh_token.clone()),
        id_token: old.id_token.clone(),
        scope: tokens.scope.or_else(|| old.scope.clone()),
        created: old.created,
        userinfo: old.userinfo.clone(),
        id: old.id,
    })
}

enum Refresh {
    InFlight {
        job: JobId,
        old: Arc<Session>,
        since: u64,
    },
    Done {
        outcome: Result<Session, RefreshError>,
        at: u64,
    },
}

/// What a request whose session is due for a refresh does.
#[derive(Debug, PartialEq)]
pub enum RefreshStep {
    /// Nobody refreshes this session: send the refresh (then `started`).
    Start,
    /// A refresh is in flight: wait for its job.
    Wait(JobId),
    /// A refresh ended less than a minute ago: use its outcome.
    Outcome(Result<Session, RefreshError>),
}

/// The refreshes of a worker, by a hash of the refresh token.
#[derive(Default)]
pub struct Refreshes {
    entries: HashMap<String, Refresh>,
    by_job: HashMap<JobId, String>,
}

impl Refreshes {
    /// Outcomes serve requests with the old cookie for this long.
    pub const REUSE_SECS: u64 = 60;
    /// A job in flight longer than this is given up (the fetcher answers
    /// every job within its timeout; this only bounds the table).
    pub const STALE_SECS: u64 = 300;

    pub fn step(&mut self, key: &str, now: u64) -> RefreshStep {
        self.prune(now);
        match self.entries.get(key) {
            None => RefreshStep::Start,
            Some(Refresh::InFlight { job, .. }) => RefreshStep::Wait(*job),
            Some(Refresh::Done { outcome, .. }) => RefreshStep::Outcome(outcome.clone()),
        }
    }

    pub fn started(&mut self, key: String, job: JobId, old: Arc<Session>, now: u64) {
        self.by_job.insert(job, key.clone());
        self.entries.insert(
            key,
            Refresh::InFlight {
                job,
                old,
                since: now,
            },
        );
    }

    /// Is this job a refresh in flight?
    pub fn owns(&self, job: JobId) -> bool {
        self.by_job.contains_key(&job)
    }

    /// Record a finished job's outcome, whether or not anyone still waits
    /// for it: whether the refresh brought new tokens; `None` when the job
    /// is not a refresh (in flight).
    pub fn finished(&mut self, job: JobId, res: JobResult, now: u64) -> Option<bool> {
        let key = self.by_job.remove(&job)?;
        if let Some(Refresh::InFlight { job: j, old, .. }) = self.entries.get(&key) {
            if *j == job {
                let outcome = refreshed_session(old, res, now);
                let ok = outcome.is_ok();
                self.entries.insert(key, Refresh::Done { outcome, at: now });
                return Some(ok);
            }
        }
        Some(false)
    }

    /// Every request waiting for this refresh passed its deadline: the job
    /// is stuck (the fetcher answers within its timeout otherwise). Forget
    /// it, so the next request starts a new refresh instead of waiting.
    pub fn give_up(&mut self, job: JobId) {
        if let Some(key) = self.by_job.remove(&job) {
            self.entries.remove(&key);
        }
    }

    fn prune(&mut self, now: u64) {
        let by_job = &mut self.by_job;
        self.entries.retain(|_, e| match e {
            Refresh::Done { at, .. } => *at + Self::REUSE_SECS > now,
            Refresh::InFlight { job, since, .. } => {
                let keep = *since + Self::STALE_SECS > now;
                if !keep {
                    by_job.remove(job);
                }
                keep
            }
        });
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

enum Flight {
    InFlight(JobId),
    /// The answer, for the first request that waited for it.
    Done(JobResult),
}

/// What a request with a token to introspect does.
#[derive(Debug, PartialEq)]
pub enum IntrospectStep {
    /// Refused less than `NEGATIVE_SECS` ago.
    Refused(Rejection),
    /// The same token is being introspected: wait for that job.
    Wait(JobId),
    /// The answer to the job it waited for (check it, then cache it).
    Answer(JobResult),
    /// Send an introspection (then `started`).
    Start,
    /// Too many introspections in flight in this worker: `503`.
    Busy,
}

/// Introspections of a worker, by the token's key (policy and token).
pub struct Introspections {
    flights: HashMap<Key, Flight>,
    by_job: HashMap<JobId, Key>,
    negative: HashMap<Key, (Rejection, u64)>,
    max_in_flight: usize,
}

impl Introspections {
    /// Refusals (inactive, expired, wrong audience) are remembered this long.
    pub const NEGATIVE_SECS: u64 = 10;
    /// At most this many refusals are remembered.
    pub const MAX_NEGATIVE: usize = 10_000;

    pub fn new(max_in_flight: usize) -> Self {
        Introspections {
            flights: HashMap::new(),
            by_job: HashMap::new(),
            negative: HashMap::new(),
            max_in_flight,
        }
    }

    pub fn step(&mut self, key: &Key, now: u64) -> IntrospectStep {
        if let Some((why, until)) = self.negative.get(key) {
            if *until > now {
                return IntrospectStep::Refused(*why);
            }
            self.negative.remove(key);
        }
        match self.flights.get(key) {
            Some(Flight::InFlight(job)) => return IntrospectStep::Wait(*job),
            Some(Flight::Done(_)) => {
                if let Some(Flight::Done(res)) = self.flights.remove(key) {
                    return IntrospectStep::Answer(res);
                }
            }
            None => {}
        }
        if self.in_flight() >= self.max_in_flight {
            return IntrospectStep::Busy;
        }
        IntrospectStep::Start
    }

    pub fn started(&mut self, key: Key, job: JobId) {
        self.by_job.insert(job, key);
        self.flights.insert(key, Flight::InFlight(job));
    }

    /// Is this job an introspection in flight?
    pub fn owns(&self, job: JobId) -> bool {
        self.by_job.contains_key(&job)
    }

    /// A job ended. Its answer is kept for the requests that wait for it
    /// (`waited`), dropped otherwise: no entry outlives its requests. False
    /// when the job is not an introspection.
    pub fn finished(&mut self, job: JobId, res: JobResult, waited: bool) -> bool {
        let Some(key) = self.by_job.remove(&job) else {
            return false;
        };
        if waited {
            self.flights.insert(key, Flight::Done(res));
        } else {
            self.flights.remove(&key);
        }
        true
    }

    /// Every request waiting for this introspection passed its deadline:
    /// free its slot (a late answer is dropped).
    pub fn give_up(&mut self, job: JobId) {
        if let Some(key) = self.by_job.remove(&job) {
            self.flights.remove(&key);
        }
    }

    /// Remember that the provider refused this token.
    pub fn refuse(&mut self, key: Key, why: Rejection, now: u64) {
        if self.negative.len() >= Self::MAX_NEGATIVE {
            self.negative.retain(|_, (_, until)| *until > now);
            if self.negative.len() >= Self::MAX_NEGATIVE {
                self.negative.clear();
            }
        }
        self.negative.insert(key, (why, now + Self::NEGATIVE_SECS));
    }

    /// Introspection calls in flight.
    pub fn in_flight(&self) -> usize {
        self.by_job.len()
    }

    /// Entries of every kind (in flight, answered, refused).
    pub fn entries(&self) -> usize {
        self.flights.len() + self.negative.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(refresh: &str) -> Arc<Session> {
        Arc::new(Session {
            claims: Arc::default(),
            access_token: "old".into(),
            access_exp: 100,
            refresh_token: Some(refresh.into()),
            id_token: Some("id".into()),
            scope: None,
            created: 10,
            userinfo: None,
            id: None,
        })
    }

    fn ok(body: &str) -> JobResult {
        Ok((200, body.as_bytes().to_vec()))
    }

    #[test]
    fn a_refresh_outcome_outlives_its_waiters() {
        let mut r = Refreshes::default();
        assert_eq!(r.step("k", 100), RefreshStep::Start);
        r.started("k".into(), 7, session("rt1"), 100);
        assert_eq!(r.step("k", 101), RefreshStep::Wait(7));
        // every waiter is gone (timed out, client closed); the job still ends
        let res = ok(r#"{"access_token":"new","expires_in":300,"refresh_token":"rt2"}"#);
        assert_eq!(r.finished(7, res, 102), Some(true));
        // the next request with the old cookie uses the outcome, no new job
        match r.step("k", 103) {
            RefreshStep::Outcome(Ok(s)) => {
                assert_eq!(s.access_token, "new");
                assert_eq!(s.access_exp, 402);
                assert_eq!(s.refresh_token.as_deref(), Some("rt2"));
                assert_eq!(s.created, 10);
            }
            other => panic!("{other:?}"),
        }
        // reused for a minute, then forgotten
        assert_eq!(r.step("k", 102 + Refreshes::REUSE_SECS), RefreshStep::Start);
        assert!(r.is_empty());
        assert_eq!(r.finished(99, ok("{}"), 0), None, "not a refresh job");
    }

    #[test]
    fn refresh_failures_are_typed() {
        let mut r = Refreshes::default();
        r.started("a".into(), 1, session("x"), 0);
        r.started("b".into(), 2, session("y"), 0);
        r.started("c".into(), 3, session("z"), 0);
        assert_eq!(
            r.finished(1, Ok((400, br#"{"error":"invalid_grant"}"#.to_vec())), 1),
            Some(false)
        );
        r.finished(2, Err(FetchError::NotRunning), 1);
        r.finished(3, Ok((503, b"busy".to_vec())), 1);
        let out = |r: &mut Refreshes, k| match r.step(k, 2) {
            RefreshStep::Outcome(Err(e)) => e,
            other => panic!("{other:?}"),
        };
        assert!(
            !out(&mut r, "a").transient(),
            "a refused refresh token ends the session"
        );
        assert!(out(&mut r, "b").transient());
        assert!(out(&mut r, "c").transient());
    }

    #[test]
    fn a_stuck_refresh_is_given_up() {
        let mut r = Refreshes::default();
        r.started("k".into(), 1, session("x"), 0);
        assert_eq!(r.step("k", Refreshes::STALE_SECS), RefreshStep::Start);
        // its late answer is no longer anyone's
        assert_eq!(r.finished(1, ok("{}"), Refreshes::STALE_SECS + 1), None);
    }

    #[test]
    fn introspection_dedup_and_bound() {
        let mut i = Introspections::new(2);
        let (a, b, c) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        assert_eq!(i.step(&a, 0), IntrospectStep::Start);
        i.started(a, 1);
        assert_eq!(i.step(&a, 0), IntrospectStep::Wait(1));
        assert_eq!(i.step(&b, 0), IntrospectStep::Start);
        i.started(b, 2);
        assert_eq!(i.step(&c, 0), IntrospectStep::Busy, "at most 2 in flight");
        assert!(i.finished(1, ok(r#"{"active":true}"#), true));
        assert_eq!(
            i.step(&a, 0),
            IntrospectStep::Answer(ok(r#"{"active":true}"#))
        );
        assert_eq!(i.step(&c, 0), IntrospectStep::Start, "a slot is free again");
        // nobody waits for b any more: its answer is dropped
        assert!(i.finished(2, ok("{}"), false));
        assert_eq!(i.entries(), 0);
        assert!(!i.finished(42, ok("{}"), true));
    }

    #[test]
    fn refusals_are_remembered_briefly() {
        let mut i = Introspections::new(4);
        let k = [9u8; 32];
        i.refuse(k, Rejection::Inactive, 100);
        assert_eq!(
            i.step(&k, 100),
            IntrospectStep::Refused(Rejection::Inactive)
        );
        assert_eq!(
            i.step(&k, 100 + Introspections::NEGATIVE_SECS - 1),
            IntrospectStep::Refused(Rejection::Inactive)
        );
        assert_eq!(
            i.step(&k, 100 + Introspections::NEGATIVE_SECS),
            IntrospectStep::Start
        );
        for n in 0..Introspections::MAX_NEGATIVE + 5 {
            let mut key = [0u8; 32];
            key[..8].copy_from_slice(&(n as u64).to_le_bytes());
            i.refuse(key, Rejection::Inactive, 200);
        }
        assert!(i.entries() <= Introspections::MAX_NEGATIVE, "bounded");
    }

    #[test]
    fn stuck_jobs_are_given_up() {
        let mut i = Introspections::new(1);
        let k = [5u8; 32];
        i.started(k, 1);
        assert_eq!(i.step(&[6u8; 32], 0), IntrospectStep::Busy);
        i.give_up(1);
        assert_eq!(i.entries(), 0);
        assert_eq!(i.step(&k, 0), IntrospectStep::Start, "the slot is free");
        assert!(!i.finished(1, ok("{}"), true), "a late answer is nobody's");
        let mut r = Refreshes::default();
        r.started("k".into(), 2, session("x"), 0);
        r.give_up(2);
        assert_eq!(r.step("k", 1), RefreshStep::Start);
    }
}
