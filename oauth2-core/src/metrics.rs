//! What `oauth2_status` shows: the figures the workers count (their names,
//! in a fixed order the shared-memory slots follow), a snapshot summed over
//! the workers, and its two renderings: JSON, and the Prometheus text
//! exposition format 0.0.4.

use std::fmt::Write;

use crate::error::Rejection;

/// How an access-phase decision ended (`requests_total{result}`).
pub const RESULTS: [&str; 6] = [
    "allowed",
    "unauthenticated",
    "forbidden",
    "redirected",
    "unavailable",
    "passed",
];

pub const ALLOWED: usize = 0;
pub const UNAUTHENTICATED: usize = 1;
pub const FORBIDDEN: usize = 2;
pub const REDIRECTED: usize = 3;
pub const UNAVAILABLE: usize = 4;
pub const PASSED: usize = 5;

/// Every `$oauth2_error` code (`requests_total{reason}`): the rejections,
/// then the refusals by a rule.
pub const REASONS: [&str; 23] = [
    "missing_token",
    "malformed_token",
    "bad_algorithm",
    "unsupported_crit",
    "bad_type",
    "unknown_key",
    "bad_signature",
    "expired",
    "not_yet_valid",
    "issued_in_future",
    "bad_time_claim",
    "wrong_issuer",
    "wrong_audience",
    "bad_nonce",
    "inactive_token",
    "unsupported_token",
    "id_token",
    "provider_unavailable",
    "invalid_dpop_proof",
    "token_binding",
    "claim_mismatch",
    "insufficient_scope",
    "other",
];

/// The index of an `$oauth2_error` code in `REASONS` (unknown: "other").
pub fn reason_index(code: &str) -> usize {
    REASONS
        .iter()
        .position(|r| *r == code)
        .unwrap_or(REASONS.len() - 1)
}

/// The index of a rejection in `REASONS`.
pub fn rejection_index(r: Rejection) -> usize {
    reason_index(r.code())
}

/// Worker-wide figures, in slot order: (name, type, help). The logouts
/// are rendered as one family with a `channel` label.
pub const GLOBAL: [(&str, &str, &str); 13] = [
    (
        "token_cache_hits_total",
        "counter",
        "Bearer tokens found in a worker's token cache.",
    ),
    (
        "token_cache_misses_total",
        "counter",
        "Bearer tokens not in the cache (validated anew).",
    ),
    (
        "token_cache_entries",
        "gauge",
        "Entries in the workers' token caches.",
    ),
    (
        "token_cache_evictions_total",
        "counter",
        "Entries evicted from the token caches to stay within their budget.",
    ),
    (
        "logins_started_total",
        "counter",
        "Browser logins sent to a provider.",
    ),
    (
        "logins_completed_total",
        "counter",
        "Logins that ended with a session.",
    ),
    (
        "logins_failed_total",
        "counter",
        "Callbacks that ended without a session.",
    ),
    (
        "refreshes_total",
        "counter",
        "Session refreshes that brought new tokens.",
    ),
    (
        "refresh_failures_total",
        "counter",
        "Session refreshes that failed.",
    ),
    (
        "logouts_total{channel=\"sign_out\"}",
        "counter",
        "Logouts by channel.",
    ),
    (
        "logouts_total{channel=\"backchannel\"}",
        "counter",
        "Logouts by channel.",
    ),
    (
        "logouts_total{channel=\"frontchannel\"}",
        "counter",
        "Logouts by channel.",
    ),
    (
        "parked_requests",
        "gauge",
        "Requests waiting for a provider now.",
    ),
];

pub const CACHE_HITS: usize = 0;
pub const CACHE_MISSES: usize = 1;
pub const CACHE_ENTRIES: usize = 2;
pub const CACHE_EVICTIONS: usize = 3;
pub const LOGINS_STARTED: usize = 4;
pub const LOGINS_COMPLETED: usize = 5;
pub const LOGINS_FAILED: usize = 6;
pub const REFRESHES: usize = 7;
pub const REFRESH_FAILURES: usize = 8;
pub const LOGOUTS_SIGN_OUT: usize = 9;
pub const LOGOUTS_BACKCHANNEL: usize = 10;
pub const LOGOUTS_FRONTCHANNEL: usize = 11;
pub const PARKED: usize = 12;

/// A provider's key: its `kid` and when this worker loaded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub kid: String,
    pub loaded_at: u64,
}

/// One provider, summed over the workers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderSnapshot {
    /// Its issuer (or key set location).
    pub name: String,
    /// `ready`, `loading` or `failed`: the worst of the workers' views.
    pub state: &'static str,
    /// Unix time of the last successful metadata and key fetch (any worker).
    pub last_success: u64,
    /// Consecutive failed fetches (the most of any worker).
    pub failures: u64,
    pub keys: Vec<KeyInfo>,
    pub results: [u64; RESULTS.len()],
    pub reasons: [u64; REASONS.len()],
    pub introspections: u64,
    pub introspection_failures: u64,
}

/// Everything the endpoint shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub now: u64,
    /// Worker slots that have counted since the zone was made.
    pub workers: u64,
    pub global: [u64; GLOBAL.len()],
    pub providers: Vec<ProviderSnapshot>,
    /// Sessions in the configuration's `shm` session zones.
    pub sessions: u64,
}

/// The JSON form (documented in the README).
pub fn to_json(s: &Snapshot) -> String {
    let mut global = serde_json::Map::new();
    for (i, (name, _, _)) in GLOBAL.iter().enumerate() {
        let key = match name.strip_prefix("logouts_total{channel=\"") {
            Some(ch) => format!("logouts_{}_total", ch.trim_end_matches("\"}")),
            None => name.to_string(),
        };
        global.insert(key, s.global[i].into());
    }
    global.insert("sessions".into(), s.sessions.into());
    let providers: Vec<serde_json::Value> = s
        .providers
        .iter()
        .map(|p| {
            let results: serde_json::Map<_, _> =
                RESULTS.iter().zip(p.results).map(|(k, v)| (k.to_string(), v.into())).collect();
            let reasons: serde_json::Map<_, _> = REASONS
                .iter()
                .zip(p.reasons)
                .filter(|(_, v)| *v > 0)
                .map(|(k, v)| (k.to_string(), v.into()))
                .collect();
            let keys: Vec<serde_json::Value> = p
                .keys
                .iter()
                .map(|k| serde_json::json!({"kid": k.kid, "age_seconds": s.now.saturating_sub(k.loaded_at)}))
                .collect();
            serde_json::json!({
                "name": p.name,
                "state": p.state,
                "last_success": p.last_success,
                "consecutive_failures": p.failures,
                "keys": keys,
                "requests": results,
                "reasons": reasons,
                "introspections": p.introspections,
                "introspection_failures": p.introspection_failures,
            })
        })
        .collect();
    let v = serde_json::json!({
        "time": s.now,
        "workers": s.workers,
        "totals": global,
        "providers": providers,
    });
    format!("{v}\n")
}

/// A label value, escaped as the text format wants.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A family with one value per provider: name, type, help, the value.
type PerProvider = (
    &'static str,
    &'static str,
    &'static str,
    fn(&ProviderSnapshot) -> u64,
);

/// The Prometheus text exposition format 0.0.4: every family with `# HELP`
/// and `# TYPE`, names prefixed `nginx_oauth2_`, counters ending in `_total`.
pub fn to_prometheus(s: &Snapshot) -> String {
    let mut o = String::new();
    let family = |o: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(o, "# HELP nginx_oauth2_{name} {help}");
        let _ = writeln!(o, "# TYPE nginx_oauth2_{name} {kind}");
    };
    let mut last = "";
    for (i, (name, kind, help)) in GLOBAL.iter().enumerate() {
        let fam = name.split('{').next().unwrap_or(name);
        // a family's samples follow its one header (they are adjacent)
        if fam != last {
            family(&mut o, fam, kind, help);
            last = fam;
        }
        let _ = writeln!(o, "nginx_oauth2_{name} {}", s.global[i]);
    }
    family(
        &mut o,
        "sessions",
        "gauge",
        "Sessions in the shared-memory session stores (0: sessions live in their cookie).",
    );
    let _ = writeln!(o, "nginx_oauth2_sessions {}", s.sessions);
    family(
        &mut o,
        "workers",
        "gauge",
        "Worker slots that have counted since the status zone was made.",
    );
    let _ = writeln!(o, "nginx_oauth2_workers {}", s.workers);

    family(
        &mut o,
        "requests_total",
        "counter",
        "Access-phase decisions by provider and result.",
    );
    for p in &s.providers {
        for (r, v) in RESULTS.iter().zip(p.results) {
            let _ = writeln!(
                o,
                "nginx_oauth2_requests_total{{provider=\"{}\",result=\"{r}\"}} {v}",
                label(&p.name)
            );
        }
    }
    family(
        &mut o,
        "refusals_total",
        "counter",
        "Requests not allowed, by provider and reason ($oauth2_error).",
    );
    for p in &s.providers {
        for (r, v) in REASONS.iter().zip(p.reasons) {
            if v > 0 {
                let _ = writeln!(
                    o,
                    "nginx_oauth2_refusals_total{{provider=\"{}\",reason=\"{r}\"}} {v}",
                    label(&p.name)
                );
            }
        }
    }
    family(
        &mut o,
        "provider_state",
        "gauge",
        "The provider's state (1 for the current one).",
    );
    for p in &s.providers {
        for st in ["ready", "loading", "failed"] {
            let v = u8::from(p.state == st);
            let _ = writeln!(
                o,
                "nginx_oauth2_provider_state{{provider=\"{}\",state=\"{st}\"}} {v}",
                label(&p.name)
            );
        }
    }
    family(
        &mut o,
        "provider_key_age_seconds",
        "gauge",
        "Age of each signing key in use, by kid.",
    );
    for p in &s.providers {
        for k in &p.keys {
            let _ = writeln!(
                o,
                "nginx_oauth2_provider_key_age_seconds{{provider=\"{}\",kid=\"{}\"}} {}",
                label(&p.name),
                label(&k.kid),
                s.now.saturating_sub(k.loaded_at)
            );
        }
    }
    // one value per provider
    let per_provider: [PerProvider; 5] = [
        (
            "provider_up",
            "gauge",
            "1 when the provider's last metadata and key fetch succeeded in every worker.",
            |p| u64::from(p.state == "ready"),
        ),
        (
            "provider_last_success_timestamp_seconds",
            "gauge",
            "Unix time of the last successful metadata and key fetch.",
            |p| p.last_success,
        ),
        (
            "provider_consecutive_failures",
            "gauge",
            "Failed fetches in a row (the most of any worker).",
            |p| p.failures,
        ),
        (
            "introspections_total",
            "counter",
            "Introspection calls sent to the provider.",
            |p| p.introspections,
        ),
        (
            "introspection_failures_total",
            "counter",
            "Introspection calls that gave no usable answer.",
            |p| p.introspection_failures,
        ),
    ];
    for (name, kind, help, value) in per_provider {
        family(&mut o, name, kind, help);
        for p in &s.providers {
            let _ = writeln!(
                o,
                "nginx_oauth2_{name}{{provider=\"{}\"}} {}",
                label(&p.name),
                value(p)
            );
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap() -> Snapshot {
        let mut p = ProviderSnapshot {
            name: "https://op.test/\"x\"".into(),
            state: "ready",
            last_success: 90,
            failures: 0,
            keys: vec![KeyInfo {
                kid: "k1".into(),
                loaded_at: 40,
            }],
            ..Default::default()
        };
        p.results[ALLOWED] = 5;
        p.reasons[reason_index("expired")] = 2;
        let mut s = Snapshot {
            now: 100,
            workers: 2,
            providers: vec![p],
            ..Default::default()
        };
        s.global[CACHE_HITS] = 4;
        s
    }

    #[test]
    fn every_reason_has_an_index() {
        for r in [
            Rejection::MissingToken,
            Rejection::IdToken,
            Rejection::ProviderUnavailable,
            Rejection::Inactive,
        ] {
            assert_eq!(REASONS[rejection_index(r)], r.code());
        }
        assert_eq!(REASONS[reason_index("claim_mismatch")], "claim_mismatch");
        assert_eq!(REASONS[reason_index("something new")], "other");
    }

    #[test]
    fn prometheus_text() {
        let t = to_prometheus(&snap());
        assert!(t.contains("# TYPE nginx_oauth2_token_cache_hits_total counter\nnginx_oauth2_token_cache_hits_total 4\n"));
        assert!(t.contains("nginx_oauth2_requests_total{provider=\"https://op.test/\\\"x\\\"\",result=\"allowed\"} 5\n"));
        assert!(t.contains("nginx_oauth2_refusals_total{provider=\"https://op.test/\\\"x\\\"\",reason=\"expired\"} 2\n"));
        assert!(t.contains("nginx_oauth2_provider_key_age_seconds{provider=\"https://op.test/\\\"x\\\"\",kid=\"k1\"} 60\n"));
        assert!(t.contains("nginx_oauth2_logouts_total{channel=\"sign_out\"} 0\n"));
        assert!(t.contains("# TYPE nginx_oauth2_logouts_total counter\n"));
        // every family has HELP and TYPE, once; every counter ends in _total
        let types: Vec<&str> = t.lines().filter(|l| l.starts_with("# TYPE")).collect();
        let mut seen = std::collections::HashSet::new();
        for line in &types {
            assert!(seen.insert(*line), "one TYPE line per family: {line}");
        }
        for line in t.lines().filter(|l| l.starts_with("# TYPE")) {
            let f: Vec<&str> = line.split(' ').collect();
            assert!(t.contains(&format!("# HELP {} ", f[2])), "{line}");
            assert_eq!(f[3] == "counter", f[2].ends_with("_total"), "{line}");
        }
    }

    #[test]
    fn json_form() {
        let v: serde_json::Value = serde_json::from_str(&to_json(&snap())).unwrap();
        assert_eq!(v["totals"]["token_cache_hits_total"], 4);
        assert_eq!(v["providers"][0]["requests"]["allowed"], 5);
        assert_eq!(v["providers"][0]["reasons"]["expired"], 2);
        assert_eq!(v["providers"][0]["keys"][0]["age_seconds"], 60);
        assert_eq!(v["workers"], 2);
    }
}
