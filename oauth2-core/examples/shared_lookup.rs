//! What a cache hit costs when the cache is shared by every worker (one
//! lock, entries other cores write) against a worker's own cache, with the
//! module's own `TokenCache`. Models a shared-memory cache of validated
//! tokens: N threads (workers) look up tokens of one set, under a lock, and
//! copy the entry's claims out (a shared zone cannot hand out pointers into
//! entries another worker may evict). Run:
//! `cargo run --release -p oauth2-core --example shared_lookup [THREADS]`
//! bench/run.sh prints these with the worker scenarios.

use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use oauth2_core::cache::TokenCache;

const TOKENS: usize = 1000;
const CLAIMS: usize = 300;
const RUN: Duration = Duration::from_millis(1500);

fn tokens() -> Vec<Vec<u8>> {
    (0..TOKENS)
        .map(|i| format!("eyJhbGciOiJSUzI1NiJ9.{:0>300}.sig{i}", i).into_bytes())
        .collect()
}

fn fill(cache: &mut TokenCache<Arc<Vec<u8>>>, tokens: &[Vec<u8>]) {
    for t in tokens {
        cache.insert(1, t, Arc::new(vec![7u8; CLAIMS]), u64::MAX / 2);
    }
}

/// ns per lookup of `threads` threads, each on its own cache.
fn local(threads: usize) -> f64 {
    run(threads, |_| {
        let tokens = tokens();
        let mut cache = TokenCache::new(64 << 20);
        fill(&mut cache, &tokens);
        let mut i = 0usize;
        move || {
            i = (i + 7) % TOKENS;
            cache.get(1, &tokens[i], 0).map(|c| c.len()).unwrap_or(0)
        }
    })
}

/// ns per lookup of `threads` threads sharing one cache under a lock, the
/// claims copied out.
fn shared(threads: usize) -> f64 {
    let tokens = tokens();
    let mut cache = TokenCache::new(64 << 20);
    fill(&mut cache, &tokens);
    let cache = Arc::new(Mutex::new(cache));
    run(threads, move |n| {
        let cache = cache.clone();
        let tokens = tokens.clone();
        let mut i = n * 13;
        move || {
            i = (i + 7) % TOKENS;
            let copy = cache
                .lock()
                .unwrap()
                .get(1, &tokens[i], 0)
                .map(|c| c.to_vec()); // out of the zone
            copy.map(|c| c.len()).unwrap_or(0)
        }
    })
}

fn run<F, G>(threads: usize, make: G) -> f64
where
    G: Fn(usize) -> F + Send + Sync + 'static,
    F: FnMut() -> usize + 'static,
{
    let make = Arc::new(make);
    let start = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|n| {
            let make = make.clone();
            let start = start.clone();
            std::thread::spawn(move || {
                let mut f = make(n);
                start.wait();
                let t = Instant::now();
                let (mut ops, mut sum) = (0u64, 0usize);
                while t.elapsed() < RUN {
                    for _ in 0..1000 {
                        sum += std::hint::black_box(f());
                    }
                    ops += 1000;
                }
                assert!(sum > 0);
                t.elapsed().as_nanos() as f64 / ops as f64
            })
        })
        .collect();
    let per: Vec<f64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    per.iter().sum::<f64>() / per.len() as f64
}

fn main() {
    let threads: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2);
    println!(
        "one worker, its own cache          {:>8.0} ns/hit",
        local(1)
    );
    println!(
        "{threads} workers, each its own cache      {:>8.0} ns/hit",
        local(threads)
    );
    println!(
        "{threads} workers, one shared locked cache {:>8.0} ns/hit",
        shared(threads)
    );
}
