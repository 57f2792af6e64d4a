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
    /// The provider could not be reached and nothing cached can decide.
    ProviderUnavailable,
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
            Rejection::ProviderUnavailable => "provider_unavailable",
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
            Rejection::ProviderUnavailable => "the identity provider is unavailable",
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
            Rejection::ProviderUnavailable,
        ];
        let mut seen = std::collections::HashSet::new();
        for r in all {
            assert!(seen.insert(r.code()), "duplicate code {}", r.code());
            assert!(r.code().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
            assert!(!r.description().contains('"'));
        }
        assert_eq!(Rejection::ProviderUnavailable.status(), 503);
        assert_eq!(Rejection::Expired.status(), 401);
    }
}
