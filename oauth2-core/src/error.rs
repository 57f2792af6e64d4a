//! One enum of reasons a request is not authenticated. Each reason maps to an
//! HTTP status, an RFC 6750 error code, a short description for
//! `WWW-Authenticate`, and the stable code exposed as `$oauth2_error`.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// No credentials at all.
    MissingToken,
    /// Not a compact JWS: wrong number of parts, bad base64, bad JSON, too long.
    Malformed,
    /// `alg` not in the configured list (always for `none`).
    BadAlgorithm,
    /// `crit` header names an extension we do not understand.
    UnsupportedCritical,
    /// `typ` is neither `JWT` nor `at+jwt`.
    BadType,
    /// No key with this `kid` (after a refetch, when one was allowed).
    UnknownKey,
    /// Signature does not verify.
    BadSignature,
    Expired,
    NotYetValid,
    IssuedInFuture,
    /// `exp` missing, or a time claim that is not a number.
    BadTimeClaim,
    WrongIssuer,
    WrongAudience,
    /// The ID token's `nonce` is not the one sent.
    BadNonce,
    /// Introspection says the token is not active (revoked, expired, unknown).
    Inactive,
    /// The token is not a JWT and no other validation applies.
    UnsupportedToken,
    /// A JWT with `nonce`: an ID token sent as an access token.
    IdToken,
    /// The provider could not be reached and nothing cached can decide.
    ProviderUnavailable,
    /// The DPoP proof is missing or does not pass RFC 9449 §4.3.
    DpopProof,
    /// A sender-constrained token without what it is bound to: a DPoP-bound
    /// token as `Bearer`, an unbound one as `DPoP`, another client
    /// certificate (RFC 8705), or `Bearer` where DPoP is required.
    Binding,
}

impl Rejection {
    /// The stable code for `$oauth2_error`.
    pub fn code(self) -> &'static str {
        match self {
            Rejection::MissingToken => "missing_token",
            Rejection::Malformed => "malformed_token",
            Rejection::BadAlgorithm => "bad_algorithm",
            Rejection::UnsupportedCritical => "unsupported_crit",
            Rejection::BadType => "bad_type",
            Rejection::UnknownKey => "unknown_key",
            Rejection::BadSignature => "bad_signature",
            Rejection::Expired => "expired",
            Rejection::NotYetValid => "not_yet_valid",
            Rejection::IssuedInFuture => "issued_in_future",
            Rejection::BadTimeClaim => "bad_time_claim",
            Rejection::WrongIssuer => "wrong_issuer",
            Rejection::WrongAudience => "wrong_audience",
            Rejection::BadNonce => "bad_nonce",
            Rejection::Inactive => "inactive_token",
            Rejection::UnsupportedToken => "unsupported_token",
            Rejection::IdToken => "id_token",
            Rejection::ProviderUnavailable => "provider_unavailable",
            Rejection::DpopProof => "invalid_dpop_proof",
            Rejection::Binding => "token_binding",
        }
    }

    /// Short human text for `error_description` (no token data in it).
    pub fn description(self) -> &'static str {
        match self {
            Rejection::MissingToken => "no access token",
            Rejection::Malformed => "the token is malformed",
            Rejection::BadAlgorithm => "the signing algorithm is not allowed",
            Rejection::UnsupportedCritical => "the token has unsupported critical headers",
            Rejection::BadType => "the token type is not accepted",
            Rejection::UnknownKey => "the signing key is unknown",
            Rejection::BadSignature => "the signature is invalid",
            Rejection::Expired => "the token has expired",
            Rejection::NotYetValid => "the token is not valid yet",
            Rejection::IssuedInFuture => "the token is issued in the future",
            Rejection::BadTimeClaim => "the token has missing or invalid time claims",
            Rejection::WrongIssuer => "the token issuer is not accepted",
            Rejection::WrongAudience => "the token audience is not accepted",
            Rejection::BadNonce => "the ID token nonce does not match",
            Rejection::Inactive => "the token is not active",
            Rejection::UnsupportedToken => "the token format is not supported",
            Rejection::IdToken => "an ID token is not an access token",
            Rejection::ProviderUnavailable => "the identity provider is unavailable",
            Rejection::DpopProof => "the DPoP proof is invalid",
            Rejection::Binding => "the token is not presented as it is bound",
        }
    }

    /// HTTP status for a request rejected for this reason.
    pub fn status(self) -> u16 {
        match self {
            Rejection::ProviderUnavailable => 503,
            _ => 401,
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_snake_case() {
        let all = [
            Rejection::MissingToken,
            Rejection::Malformed,
            Rejection::BadAlgorithm,
            Rejection::UnsupportedCritical,
            Rejection::BadType,
            Rejection::UnknownKey,
            Rejection::BadSignature,
            Rejection::Expired,
            Rejection::NotYetValid,
            Rejection::IssuedInFuture,
            Rejection::BadTimeClaim,
            Rejection::WrongIssuer,
            Rejection::WrongAudience,
            Rejection::BadNonce,
            Rejection::Inactive,
            Rejection::UnsupportedToken,
            Rejection::IdToken,
            Rejection::ProviderUnavailable,
            Rejection::DpopProof,
            Rejection::Binding,
        ];
        let mut seen = std::collections::HashSet::new();
        for r in all {
            assert!(seen.insert(r.code()), "duplicate code {}", r.code());
            assert!(r
                .code()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_'));
            assert!(!r.description().contains('"'));
        }
        assert_eq!(Rejection::ProviderUnavailable.status(), 503);
        assert_eq!(Rejection::Expired.status(), 401);
    }
}

/// Why a request to the provider (discovery, JWKS, a POST) gave no usable
/// answer. Messages are lowercase nginx-style fragments; none carries a
/// secret (URLs are the provider's public endpoints).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// Connection, TLS, timeout: the innermost cause as the client says it.
    #[error("{what} request to \"{url}\" failed ({cause})")]
    Transport {
        what: &'static str,
        url: String,
        cause: String,
    },
    #[error("{what} request to \"{url}\" failed (status {status})")]
    Status {
        what: &'static str,
        url: String,
        status: u16,
    },
    #[error("{what} request to \"{url}\" failed (response too large)")]
    TooLarge { what: &'static str, url: String },
    /// The document came but cannot be used.
    #[error("{reason} at \"{url}\"")]
    Document { url: String, reason: String },
    #[error("the provider metadata has no \"jwks_uri\"")]
    NoJwksUri,
    #[error("invalid oauth2_ssl_trusted_certificate: {0}")]
    Certificate(String),
    #[error("cannot create the HTTP client: {0}")]
    Client(String),
    #[error("cannot start the fetcher runtime: {0}")]
    Runtime(String),
    /// Another worker (or nginx) holds the lock of this job's work (a
    /// stored session's refresh).
    #[error("another worker is doing this already")]
    Busy,
    /// The fetcher's task for this job ended without an answer.
    #[error("the fetch task failed ({0})")]
    TaskFailed(String),
    /// The fetcher thread is not running (or no longer takes jobs).
    #[error("the fetcher is not running")]
    NotRunning,
}

/// Why the token endpoint's answer gives no tokens (RFC 6749 §5.2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenEndpointError {
    /// The provider refused: its status and `error` code (sanitized).
    #[error("the token endpoint answered {status} ({code})")]
    Refused { status: u16, code: String },
    #[error("invalid token response: {0}")]
    Invalid(String),
    #[error("unsupported token_type \"{0}\"")]
    TokenType(String),
}

impl TokenEndpointError {
    /// A refusal that may pass (the provider's own trouble), not a verdict.
    pub fn transient(&self) -> bool {
        matches!(self, TokenEndpointError::Refused { status, .. } if *status >= 500)
    }
}

/// A directive value that cannot be used; the glue adds the directive name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfError {
    #[error("is duplicate")]
    Duplicate,
    #[error("{0}")]
    Invalid(String),
}

impl From<String> for ConfError {
    fn from(s: String) -> Self {
        ConfError::Invalid(s)
    }
}

impl From<&str> for ConfError {
    fn from(s: &str) -> Self {
        ConfError::Invalid(s.to_string())
    }
}

#[cfg(test)]
mod typed_tests {
    use super::*;

    #[test]
    fn messages_read_like_nginx_log_lines() {
        let e = FetchError::Status {
            what: "JWKS",
            url: "https://op/jwks".into(),
            status: 500,
        };
        assert_eq!(
            e.to_string(),
            "JWKS request to \"https://op/jwks\" failed (status 500)"
        );
        let t = TokenEndpointError::Refused {
            status: 400,
            code: "invalid_grant".into(),
        };
        assert_eq!(
            t.to_string(),
            "the token endpoint answered 400 (invalid_grant)"
        );
        assert!(!t.transient());
        assert!(TokenEndpointError::Refused {
            status: 503,
            code: "x".into()
        }
        .transient());
        assert_eq!(ConfError::Duplicate.to_string(), "is duplicate");
    }
}
