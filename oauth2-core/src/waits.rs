//! Parked requests: what each one waits for, until when, and how its wait
//! ended. One registry per worker; a request is in it at most once.
//!
//! The glue parks a request (the access handler or an endpoint answers
//! `NGX_AGAIN`/`NGX_DONE`), and wakes it when the thing it waits for arrives
//! or its deadline passes. Every run of a handler starts with [`Registry::check`]:
//! a request that is still parked (a spurious rerun of the phases) answers
//! `NGX_AGAIN` again without doing its work twice; a woken one learns whether
//! its wait ended or timed out. The entry goes only when the request's pool
//! goes ([`Registry::forget`]), whatever else happened.
//!
//! `R` is the glue's request handle (a pointer there, a number in tests);
//! times are milliseconds of a monotonic clock.

use std::collections::HashMap;
use std::hash::Hash;

/// Identifies a POST to the provider made on behalf of requests.
pub type JobId = u64;

/// What a parked request waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WaitFor {
    /// The provider's next metadata/key update (first load).
    Provider(usize),
    /// A key refetch that this request asked for (unknown `kid`): only an
    /// update made by such a refetch wakes it.
    Refetch(usize),
    /// A job: the token endpoint, a refresh, an introspection.
    Job(JobId),
}

/// How a wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// What it waited for is there (a result, a failure, an update).
    Done,
    /// Its deadline passed first.
    TimedOut,
}

/// What a handler run finds for its request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Not parked: do the work.
    Fresh,
    /// Still parked: answer `NGX_AGAIN` again, do nothing else.
    StillParked(WaitFor),
    /// Its wait ended this way: go on (the entry is idle again).
    Woken(WaitFor, Wake),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Idle,
    Parked { what: WaitFor, deadline: u64 },
    Woken { what: WaitFor, how: Wake },
}

/// The worker's parked requests.
#[derive(Debug)]
pub struct Registry<R> {
    entries: HashMap<R, State>,
}

impl<R> Default for Registry<R> {
    fn default() -> Self {
        Registry {
            entries: HashMap::new(),
        }
    }
}

impl<R: Copy + Eq + Hash> Registry<R> {
    /// Park `r` until `what` arrives or `deadline`. Returns true when `r`
    /// was not known before: the glue must then tie [`Registry::forget`] to
    /// the request's pool. Parking a parked request moves it (one place only).
    pub fn park(&mut self, r: R, what: WaitFor, deadline: u64) -> bool {
        self.entries
            .insert(r, State::Parked { what, deadline })
            .is_none()
    }

    /// At the start of every handler run for `r`.
    pub fn check(&mut self, r: R) -> Check {
        if self.entries.is_empty() {
            return Check::Fresh; // the common case: no hashing at all
        }
        match self.entries.get_mut(&r) {
            None => Check::Fresh,
            Some(s) => match *s {
                State::Idle => Check::Fresh,
                State::Parked { what, .. } => Check::StillParked(what),
                State::Woken { what, how } => {
                    *s = State::Idle;
                    Check::Woken(what, how)
                }
            },
        }
    }

    /// The request's pool is going: it is nowhere any more.
    pub fn forget(&mut self, r: R) {
        self.entries.remove(&r);
    }

    fn wake_where(&mut self, how: Wake, pred: impl Fn(WaitFor, u64) -> bool) -> Vec<(R, WaitFor)> {
        let mut out = Vec::new();
        for (r, s) in self.entries.iter_mut() {
            if let State::Parked { what, deadline } = *s {
                if pred(what, deadline) {
                    *s = State::Woken { what, how };
                    out.push((*r, what));
                }
            }
        }
        out
    }

    /// The provider has new metadata/keys, or failed to get them. `forced`:
    /// the update comes from a refetch that a request asked for.
    pub fn provider_updated(&mut self, provider: usize, forced: bool) -> Vec<R> {
        let woken = self.wake_where(Wake::Done, |w, _| {
            w == WaitFor::Provider(provider) || (forced && w == WaitFor::Refetch(provider))
        });
        woken.into_iter().map(|(r, _)| r).collect()
    }

    /// A job finished (with a result or a failure).
    pub fn job_done(&mut self, job: JobId) -> Vec<R> {
        let woken = self.wake_where(Wake::Done, |w, _| w == WaitFor::Job(job));
        woken.into_iter().map(|(r, _)| r).collect()
    }

    /// Requests whose deadline is at or before `now`, with what they
    /// waited for.
    pub fn expire(&mut self, now: u64) -> Vec<(R, WaitFor)> {
        self.wake_where(Wake::TimedOut, |_, d| d <= now)
    }

    /// Does any parked request wait for `job`?
    pub fn waits_for_job(&self, job: JobId) -> bool {
        self.entries
            .values()
            .any(|s| matches!(s, State::Parked { what: WaitFor::Job(j), .. } if *j == job))
    }

    /// The earliest deadline of a parked request.
    pub fn next_deadline(&self) -> Option<u64> {
        self.entries
            .values()
            .filter_map(|s| match s {
                State::Parked { deadline, .. } => Some(*deadline),
                _ => None,
            })
            .min()
    }

    /// Requests parked now.
    pub fn parked(&self) -> usize {
        self.entries
            .values()
            .filter(|s| matches!(s, State::Parked { .. }))
            .count()
    }

    /// Requests known (parked, woken or idle, until their pool goes).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_parked_in_one_place_and_woken_once() {
        let mut reg = Registry::default();
        assert!(reg.park(1, WaitFor::Provider(0), 100));
        assert_eq!(reg.check(1), Check::StillParked(WaitFor::Provider(0)));
        // moved to a job: no longer waits for the provider
        assert!(!reg.park(1, WaitFor::Job(7), 200));
        assert!(reg.provider_updated(0, true).is_empty());
        assert!(reg.waits_for_job(7));
        assert_eq!(reg.job_done(7), vec![1]);
        assert!(!reg.waits_for_job(7));
        assert!(reg.job_done(7).is_empty(), "woken once");
        assert_eq!(reg.check(1), Check::Woken(WaitFor::Job(7), Wake::Done));
        assert_eq!(reg.check(1), Check::Fresh);
        assert_eq!(reg.len(), 1, "known until its pool goes");
        reg.forget(1);
        assert!(reg.is_empty());
    }

    #[test]
    fn a_rerun_while_parked_does_nothing() {
        let mut reg = Registry::default();
        reg.park(5, WaitFor::Job(1), 50);
        for _ in 0..3 {
            assert_eq!(reg.check(5), Check::StillParked(WaitFor::Job(1)));
        }
        assert_eq!(reg.parked(), 1);
    }

    #[test]
    fn refetch_waiters_wake_only_on_a_forced_update() {
        let mut reg = Registry::default();
        reg.park(1, WaitFor::Refetch(0), 100);
        reg.park(2, WaitFor::Provider(0), 100);
        reg.park(3, WaitFor::Provider(1), 100);
        assert_eq!(reg.provider_updated(0, false), vec![2]);
        let mut w = reg.provider_updated(0, true);
        w.sort();
        assert_eq!(w, vec![1]);
        assert_eq!(reg.check(3), Check::StillParked(WaitFor::Provider(1)));
    }

    #[test]
    fn deadlines() {
        let mut reg = Registry::default();
        assert_eq!(reg.next_deadline(), None);
        reg.park(1, WaitFor::Job(1), 100);
        reg.park(2, WaitFor::Job(2), 300);
        assert_eq!(reg.next_deadline(), Some(100));
        assert!(reg.expire(99).is_empty());
        assert_eq!(reg.expire(100), vec![(1, WaitFor::Job(1))]);
        assert_eq!(reg.next_deadline(), Some(300));
        assert_eq!(reg.check(1), Check::Woken(WaitFor::Job(1), Wake::TimedOut));
        // its job finishing later wakes nobody
        assert!(reg.job_done(1).is_empty());
        assert_eq!(reg.expire(1000), vec![(2, WaitFor::Job(2))]);
        assert_eq!(reg.next_deadline(), None);
        assert_eq!(reg.parked(), 0);
    }

    #[test]
    fn a_forgotten_request_is_never_woken() {
        let mut reg = Registry::default();
        reg.park(1, WaitFor::Refetch(0), 100);
        reg.forget(1);
        assert!(reg.provider_updated(0, true).is_empty());
        assert!(reg.expire(u64::MAX).is_empty());
        // a new request at the same address starts fresh
        assert_eq!(reg.check(1), Check::Fresh);
        assert!(reg.park(1, WaitFor::Job(3), 10));
    }
}
