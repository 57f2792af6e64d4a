//! A provider as the configuration names it: where its metadata and keys
//! come from, and how long requests to it may take. Locations with the same
//! provider settings share one entry, and so one set of keys per worker.

use std::sync::Arc;
use std::time::Duration;

use crate::keys::KeySet;
use crate::waits::WaitFor;

#[derive(Clone)]
pub struct ProviderSpec {
    pub issuer: Option<String>,
    pub jwks_uri: Option<String>,
    pub static_keys: Option<Arc<KeySet>>,
    /// `oauth2_provider_timeout`: each request to the provider.
    pub timeout: Duration,
    /// `oauth2_jwks_refresh`.
    pub refresh: Duration,
    /// `oauth2_ssl_trusted_certificate` (PEM).
    pub ca_pem: Option<Arc<Vec<u8>>>,
    /// Identifies the settings (providers are shared by equal idents).
    pub ident: String,
}

/// Time added to the fetcher's own timeouts before a parked request is
/// answered without its result.
pub const WAIT_MARGIN: Duration = Duration::from_millis(1000);

impl ProviderSpec {
    /// Does this provider fetch anything over the network?
    pub fn needs_network(&self) -> bool {
        self.issuer.is_some() || self.jwks_uri.is_some()
    }

    /// A name for log lines.
    pub fn name(&self) -> &str {
        self.issuer
            .as_deref()
            .or(self.jwks_uri.as_deref())
            .unwrap_or("oauth2_jwks_file")
    }

    /// How long a request may wait for `what` from this provider: metadata
    /// and keys are two requests (discovery, then JWKS), a job is one; each
    /// is bounded by `oauth2_provider_timeout`, then the margin.
    pub fn max_wait(&self, what: WaitFor) -> Duration {
        let n = match what {
            WaitFor::Provider(_) | WaitFor::Refetch(_) => 2,
            WaitFor::Job(_) => 1,
        };
        self.timeout * n + WAIT_MARGIN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_derived_from_the_timeout() {
        let p = ProviderSpec {
            issuer: Some("https://op".into()),
            jwks_uri: None,
            static_keys: None,
            timeout: Duration::from_millis(500),
            refresh: Duration::from_secs(3600),
            ca_pem: None,
            ident: String::new(),
        };
        assert!(p.needs_network());
        assert_eq!(p.name(), "https://op");
        assert_eq!(p.max_wait(WaitFor::Job(1)), Duration::from_millis(1500));
        assert_eq!(
            p.max_wait(WaitFor::Provider(0)),
            Duration::from_millis(2000)
        );
    }
}
