//! The access-phase handler: gathers request facts, asks `oauth2_core` what
//! to do, and applies the answer. NGX_OK allows, NGX_DECLINED passes on, a
//! status code denies, NGX_AGAIN parks the request (see `worker`): every
//! run starts by asking the wait registry where the request is.

use std::sync::Arc;

use ngx::core::Status;
use ngx::ffi::{ngx_http_request_t, ngx_int_t, ngx_time, NGX_LOG_INFO, NGX_LOG_WARN};
use ngx::http::{
    HttpModuleLocationConf, HttpModuleMainConf, HttpModuleServerConf, NgxHttpCoreModule, Request,
};
use ngx::{ngx_log_debug_http, ngx_log_error};
use oauth2_core::authz::{self, Denied};
use oauth2_core::cache;
use oauth2_core::config::{DpopMode, TokenValidation};
use oauth2_core::decide::{self, Action, Candidate, RequestFacts, UnknownKid};
use oauth2_core::dpop::{self, DpopError};
use oauth2_core::flights::IntrospectStep;
use oauth2_core::introspection::{self, IntrospectionError};
use oauth2_core::jwt::{self, Claims};
use oauth2_core::logout;
use oauth2_core::metrics;
use oauth2_core::waits::{Check, WaitFor};
use oauth2_core::Rejection;

use crate::conf::{LocConf, LocRuntime, Prov};
use crate::http::{RequestExt, Token};
use crate::session::{self, SessionOutcome};
use crate::worker::{test_hook, timed_out, with_worker, KeyState, Worker};
use crate::Module;

fn realm<'a>(r: &'a Request, lc: &'a LocConf) -> &'a str {
    if let Some(realm) = &lc.realm {
        return realm;
    }
    NgxHttpCoreModule::server_conf(r)
        .and_then(|s| s.server_name.to_str().ok())
        .filter(|s| !s.is_empty())
        .unwrap_or("nginx")
}

/// The URL of the server's `oauth2_resource_metadata` location, if it has
/// one (RFC 9728 §5.1: named in every 401 of the server).
fn resource_metadata_url(r: &Request) -> Option<String> {
    let main = Module::main_conf(r)?;
    if main.resource_metadata.is_empty() {
        return None;
    }
    let srv = NgxHttpCoreModule::server_conf(r)? as *const _ as usize;
    let path = main
        .resource_metadata
        .iter()
        .find(|(s, _)| *s == srv)
        .map(|(_, p)| p.clone())?;
    Some(r.absolute(&path))
}

fn apply(r: &mut Request, lc: &LocConf, action: Action) -> Status {
    ngx_log_debug_http!(r, "oauth2: action {:?}", action);
    let session = lc.runtime.as_ref().and_then(|rt| rt.session.as_ref());
    match action {
        Action::Allow | Action::Pass => {
            if let Some(sc) = session {
                session::strip_cookies(r, sc);
            }
            if action == Action::Allow {
                Status::NGX_OK
            } else {
                Status::NGX_DECLINED
            }
        }
        Action::Unauthorized { mut challenge } => {
            // a location that takes DPoP says so in every challenge
            if let Some(rt) = lc.runtime.as_deref() {
                if let Some(rest) = challenge.strip_prefix("Bearer ") {
                    match rt.dpop {
                        DpopMode::Required => {
                            challenge = format!("DPoP algs=\"{}\", {rest}", rt.dpop_algs)
                        }
                        DpopMode::Optional => {
                            challenge.push_str(&format!(", DPoP algs=\"{}\"", rt.dpop_algs))
                        }
                        DpopMode::Off => {}
                    }
                }
            }
            if let Some(url) = resource_metadata_url(r) {
                challenge.push_str(&oauth2_core::resource::challenge_param(&url));
            }
            r.set_www_authenticate(&challenge);
            Status(401)
        }
        Action::Unavailable { retry_after } => {
            r.push_header("Retry-After", &retry_after.to_string());
            Status(503)
        }
        Action::Redirect => match (lc.runtime.as_deref(), session) {
            (Some(rt), Some(sc)) => Status(session::start_login(r, rt, sc)),
            _ => Status(401),
        },
    }
}

/// The provider could not decide in time: `503` + `Retry-After`.
fn unavailable(r: &mut Request, lc: &LocConf, retry_after: u64) -> Status {
    if let Some(ctx) = r.ctx_mut() {
        ctx.error = Some(Rejection::ProviderUnavailable);
    }
    apply(r, lc, Action::Unavailable { retry_after })
}

/// The access phase: for a protected location, decide, then count the
/// decision (the status figures).
pub fn handler(r: &mut Request) -> Status {
    if !r.is_main() {
        return Status::NGX_DECLINED;
    }
    if crate::test_hooks() && r.header_in("X-Oauth2-Test-Panic").is_some() {
        panic!("forced by the X-Oauth2-Test-Panic test hook");
    }
    let Some(lc) = Module::location_conf(r) else {
        return Status::NGX_DECLINED;
    };
    if lc.endpoint.is_some() {
        // oauth2_callback / oauth2_sign_out / oauth2_status are never
        // subject to oauth2_auth
        return Status::NGX_DECLINED;
    }
    let Some(rt) = lc.runtime.as_deref() else {
        return Status::NGX_DECLINED;
    };
    let st = decide(r, lc, rt);
    count(r, rt, st.0);
    st
}

/// Count a decision in this worker's slot: its result, and why it was not
/// allowed, under the provider that decided.
fn count(r: &Request, rt: &LocRuntime, st: ngx_int_t) {
    let result = match st {
        0 => metrics::ALLOWED, // NGX_OK
        401 => metrics::UNAUTHENTICATED,
        403 => metrics::FORBIDDEN,
        302 => metrics::REDIRECTED,
        503 => metrics::UNAVAILABLE,
        x if x == Status::NGX_DECLINED.0 => metrics::PASSED,
        _ => return,
    };
    let (prov, reason) = match r.ctx() {
        Some(c) => (
            c.prov_index.unwrap_or(rt.provs[0].index),
            c.error
                .map(metrics::rejection_index)
                .or(c.denied.map(metrics::reason_index)),
        ),
        None => (rt.provs[0].index, None),
    };
    with_worker(|w| {
        if let Some(s) = &w.stats {
            s.result(prov, result);
            if let (Some(i), false) = (
                reason,
                result == metrics::ALLOWED || result == metrics::PASSED,
            ) {
                s.reason(prov, i);
            }
        }
    });
}

/// What a protected location does with this request.
fn decide(r: &mut Request, lc: &LocConf, rt: &LocRuntime) -> Status {
    if r.is_internal() {
        // an internal redirect (index, try_files, error_page) runs this
        // phase again: with the cookies as the client sent them
        r.restore_cookie_headers();
    }
    let now = ngx_time() as u64;
    let mut candidate = decide::bearer_candidate(r.authorization());
    // `Authorization: DPoP <token>` where a provider takes DPoP
    let mut dpop_scheme = false;
    if candidate == Candidate::None && rt.dpop != DpopMode::Off {
        let c = decide::dpop_candidate(r.authorization());
        if c != Candidate::None {
            candidate = c;
            dpop_scheme = true;
        }
    }
    // where the request is, and (the common case) a token validated before:
    // no scan, no parse, no copy, no hash of the whole token
    let (check, hit) = with_worker(|w| {
        let check = w.check(r);
        let hit = match (check, &candidate) {
            (Check::StillParked(_), _) => None,
            (_, Candidate::Token(t)) => {
                let hit = w.cache.get(rt.cache_id, t, now);
                if check == Check::Fresh {
                    w.count(if hit.is_some() {
                        metrics::CACHE_HITS
                    } else {
                        metrics::CACHE_MISSES
                    });
                }
                hit
            }
            _ => None,
        };
        (check, hit)
    })
    .unwrap_or((Check::Fresh, None));
    if let Check::StillParked(what) = check {
        ngx_log_debug_http!(r, "oauth2: still waiting for {:?}", what);
        return Status::NGX_AGAIN;
    }
    if timed_out(check) {
        ngx_log_error!(
            NGX_LOG_INFO,
            r.log(),
            "oauth2: the identity provider did not answer in time"
        );
        return unavailable(r, lc, 5);
    }
    match candidate {
        Candidate::Token(token) => {
            if let Some(claims) = hit {
                ngx_log_debug_http!(r, "oauth2: bearer token accepted (cached)");
                let i = cached_prov(rt, &claims);
                if let Err(st) = sender(r, lc, rt, i, dpop_scheme, token, &claims, now) {
                    return st;
                }
                return authorized(r, lc, rt, i, "bearer", Token::Header(token), claims);
            }
            bearer(r, lc, rt, token, dpop_scheme, now)
        }
        Candidate::Malformed => reject(r, lc, Rejection::Malformed, 1),
        Candidate::None => {
            if let Some(sc) = rt.session.as_ref() {
                match session::session_for_access(r, rt, sc) {
                    SessionOutcome::Wait => return Status::NGX_AGAIN,
                    SessionOutcome::Valid(s, i) => {
                        ngx_log_debug_http!(r, "oauth2: session accepted");
                        let claims = s.claims.clone();
                        return authorized(r, lc, rt, i, "cookie", Token::Session(s), claims);
                    }
                    SessionOutcome::None => {}
                    SessionOutcome::Unavailable => return unavailable(r, lc, 5),
                }
            }
            if let Some(ctx) = r.ctx_mut() {
                ctx.error = Some(Rejection::MissingToken);
            }
            let method = r.method();
            let facts = RequestFacts {
                method: method.as_str(),
                accept: r.header_in("Accept"),
                sec_fetch_mode: r.header_in("Sec-Fetch-Mode"),
                x_requested_with: r.header_in("X-Requested-With").is_some(),
                access_control_request_method: r
                    .header_in("Access-Control-Request-Method")
                    .is_some(),
            };
            let browser = rt.session.is_some() && rt.login_prov().is_some();
            let action = decide::unauthenticated(lc.on_failure(), &facts, browser, realm(r, lc));
            ngx_log_debug_http!(r, "oauth2: no credentials");
            apply(r, lc, action)
        }
    }
}

fn reject(r: &mut Request, lc: &LocConf, why: Rejection, retry_after: u64) -> Status {
    if let Some(ctx) = r.ctx_mut() {
        ctx.error = Some(why);
        ctx.method = "";
        ctx.claims = None;
        ctx.token = None;
    }
    if why == Rejection::ProviderUnavailable {
        ngx_log_error!(
            NGX_LOG_INFO,
            r.log(),
            "oauth2: cannot validate the bearer token: the identity provider is unavailable"
        );
    } else {
        ngx_log_error!(
            NGX_LOG_INFO,
            r.log(),
            "oauth2: bearer token rejected: {}",
            why.code()
        );
    }
    let action = decide::rejected_bearer(why, realm(r, lc), retry_after);
    apply(r, lc, action)
}

/// An authenticated request: check the location's rules, then allow it
/// (NGX_OK) with its identity, or deny it (403).
/// RFC 9449 and RFC 8705: a token bound to a key (`cnf.jkt`) is accepted
/// only with the `DPoP` scheme and a proof signed by that key, one bound to
/// a certificate (`cnf.x5t#S256`) only on a TLS connection presenting it;
/// where DPoP is required, nothing else.
#[allow(clippy::too_many_arguments)]
fn sender(
    r: &mut Request,
    lc: &LocConf,
    rt: &LocRuntime,
    i: usize,
    dpop_scheme: bool,
    raw_token: &[u8],
    claims: &Claims,
    now: u64,
) -> Result<(), Status> {
    let prov = &rt.provs[i];
    let b = &claims.binding;
    if b.is_none() && !dpop_scheme && prov.dpop != DpopMode::Required {
        // the common case: a plain bearer token
        return Ok(());
    }
    if let Some(x5t) = &b.x5t {
        let presented = r
            .client_certificate()
            .and_then(|p| dpop::cert_thumbprint(&p));
        if presented.as_deref() != Some(&**x5t) {
            return Err(unbound(
                r,
                lc,
                rt,
                dpop_scheme,
                "the token is bound to a client certificate this connection does not present",
            ));
        }
    }
    if !dpop_scheme {
        if b.jkt.is_some() {
            return Err(unbound(
                r,
                lc,
                rt,
                false,
                "a DPoP-bound token is sent with the DPoP scheme",
            ));
        }
        if prov.dpop == DpopMode::Required {
            return Err(unbound(r, lc, rt, true, "DPoP is required"));
        }
        return Ok(());
    }
    if prov.dpop == DpopMode::Off {
        return Err(unbound(
            r,
            lc,
            rt,
            false,
            "this provider's tokens are not DPoP tokens",
        ));
    }
    let Some(jkt) = &b.jkt else {
        return Err(unbound(
            r,
            lc,
            rt,
            true,
            "the token is not bound to a DPoP key",
        ));
    };
    let token = std::str::from_utf8(raw_token).unwrap_or("");
    let proofs = r.header_values("DPoP");
    let url = r.absolute(r.unparsed_uri().to_str().unwrap_or("/"));
    let method = r.method();
    let window = prov.policy.skew_secs.max(5);
    let checked = match proofs.as_slice() {
        [one] => {
            let req = dpop::Request {
                method: method.as_str(),
                url: &url,
                access_token: token,
                algorithms: &prov.policy.algorithms,
                window,
                now,
            };
            with_worker(|w| dpop::check_proof_with(one, &req, &mut w.dpop_keys))
                .unwrap_or(Err(DpopError::Key))
        }
        _ => Err(DpopError::Count),
    };
    let checked = checked.and_then(|p| {
        if *p.jkt != **jkt {
            return Err(DpopError::KeyBinding);
        }
        // its jti once, across the workers, for as long as its iat passes
        let fresh = Module::main_conf(r)
            .and_then(|m| m.dpop_zone.as_ref())
            .and_then(|z| z.tables())
            .is_some_and(|t| {
                t.marks.insert_new(
                    &logout::once_key("dpop", jkt, &p.jti),
                    now + 2 * window,
                    now,
                )
            });
        if fresh {
            Ok(p)
        } else {
            Err(DpopError::Replayed)
        }
    });
    match checked {
        Ok(_) => Ok(()),
        Err(e) => {
            if let Some(ctx) = r.ctx_mut() {
                ctx.error = Some(Rejection::DpopProof);
                ctx.method = "";
                ctx.claims = None;
                ctx.token = None;
            }
            ngx_log_error!(NGX_LOG_INFO, r.log(), "oauth2: DPoP proof rejected: {}", e);
            let challenge = dpop::challenge(&rt.dpop_algs, "invalid_dpop_proof", &e.to_string());
            Err(apply(r, lc, Action::Unauthorized { challenge }))
        }
    }
}

/// A sender-constrained token presented without what it is bound to: 401
/// `invalid_token` (in the DPoP scheme where DPoP was used or is required).
fn unbound(r: &mut Request, lc: &LocConf, rt: &LocRuntime, dpop: bool, why: &str) -> Status {
    if let Some(ctx) = r.ctx_mut() {
        ctx.error = Some(Rejection::Binding);
        ctx.method = "";
        ctx.claims = None;
        ctx.token = None;
    }
    ngx_log_error!(
        NGX_LOG_INFO,
        r.log(),
        "oauth2: bearer token rejected: {}",
        why
    );
    let challenge = if dpop {
        dpop::challenge(&rt.dpop_algs, "invalid_token", why)
    } else {
        format!(
            "Bearer realm=\"{}\", error=\"invalid_token\", error_description=\"{}\"",
            decide::quote(realm(r, lc)),
            decide::quote(why)
        )
    };
    apply(r, lc, Action::Unauthorized { challenge })
}

/// Which of the location's providers accepted a cached token: the one
/// whose issuer its `iss` names (one provider: that one).
fn cached_prov(rt: &LocRuntime, claims: &Claims) -> usize {
    if rt.provs.len() == 1 {
        return 0;
    }
    let iss = claims.get("iss").and_then(|v| v.as_str());
    rt.provs
        .iter()
        .position(|p| p.policy.issuer.as_deref() == iss)
        .unwrap_or(0)
}

/// Which of the location's providers validates this token: the one whose
/// issuer the JWT's `iss` names, for an opaque token the first that can
/// introspect.
fn select_prov(rt: &LocRuntime, token: &str) -> Result<usize, Rejection> {
    if rt.provs.len() == 1 {
        return Ok(0);
    }
    if jwt::looks_like_jwt(token) {
        let iss = jwt::peek_issuer(token).ok_or(Rejection::WrongIssuer)?;
        return rt
            .provs
            .iter()
            .position(|p| p.policy.issuer.as_deref() == Some(iss.as_str()))
            .ok_or(Rejection::WrongIssuer);
    }
    rt.provs
        .iter()
        .position(|p| {
            p.introspection_client.is_some() && p.token_validation != TokenValidation::Jwt
        })
        .ok_or(Rejection::UnsupportedToken)
}

#[allow(clippy::too_many_arguments)]
fn authorized(
    r: &mut Request,
    lc: &LocConf,
    rt: &LocRuntime,
    prov: usize,
    method: &'static str,
    token: Token,
    claims: Arc<Claims>,
) -> Status {
    let checked = if rt.claim_rules.is_empty() && rt.required_scopes.is_empty() {
        Ok(())
    } else {
        let scopes = match &token {
            // the scope the token endpoint granted the session
            Token::Session(s) => s
                .scope
                .as_deref()
                .unwrap_or("")
                .split(' ')
                .filter(|x| !x.is_empty())
                .collect(),
            Token::Header(_) => authz::token_scopes(&claims),
        };
        authz::check(&claims, &scopes, &rt.claim_rules, &rt.required_scopes)
    };
    let Some(ctx) = r.ctx_mut() else {
        return Status(500);
    };
    ctx.method = method;
    ctx.token = Some(token);
    ctx.claims = Some(claims);
    ctx.prov_index = Some(rt.provs[prov].index);
    ctx.error = None;
    // SAFETY: the name lives in the configuration, which outlives every
    // request it serves (nginx frees a cycle's configuration only after its
    // requests are done); the ctx goes with this request.
    ctx.provider = unsafe { &*(rt.provs[prov].name.as_str() as *const str) };
    match checked {
        Ok(()) => apply(r, lc, Action::Allow),
        Err(denied) => {
            ctx.denied = Some(denied.code());
            ngx_log_error!(
                NGX_LOG_INFO,
                r.log(),
                "oauth2: access denied: {}",
                denied.code()
            );
            if let (Denied::Scope(scope), "bearer") = (&denied, method) {
                let challenge = decide::insufficient_scope(realm(r, lc), scope);
                r.push_header("WWW-Authenticate", &challenge);
            }
            Status(403)
        }
    }
}

enum Outcome {
    Valid(Arc<Claims>),
    Invalid(Rejection, u64),
    /// Parked; `refetch`: for a key refetch this request asked for.
    Wait {
        refetch: bool,
    },
    /// Could not be parked.
    Error,
}

fn park(w: &mut Worker, r: &mut Request, provider: usize, what: WaitFor) -> Outcome {
    if w.park(r, provider, what) {
        Outcome::Wait {
            refetch: matches!(what, WaitFor::Refetch(_)),
        }
    } else {
        Outcome::Error
    }
}

fn bearer(
    r: &mut Request,
    lc: &LocConf,
    rt: &LocRuntime,
    raw_token: &'static [u8],
    dpop_scheme: bool,
    now: u64,
) -> Status {
    let Some(token) = decide::token68(raw_token) else {
        return reject(r, lc, Rejection::Malformed, 1);
    };
    let pi = match select_prov(rt, token) {
        Ok(i) => i,
        Err(why) => return reject(r, lc, why, 1),
    };
    let prov = rt.provs[pi].clone();
    if let Some(c) = r.ctx_mut() {
        c.prov_index = Some(prov.index);
    }
    let introspect = match prov.token_validation {
        TokenValidation::Jwt => false,
        TokenValidation::Introspection => true,
        TokenValidation::Auto => !jwt::looks_like_jwt(token),
    };
    if introspect && prov.introspection_client.is_none() {
        // an opaque token, and no way to introspect it here
        return reject(r, lc, Rejection::UnsupportedToken, 1);
    }
    let refetched = r.ctx_mut().map(|c| c.refetched).unwrap_or(true);
    let outcome = with_worker(|w| {
        if introspect {
            return introspection_step(w, r, rt, &prov, token, now);
        }
        let p = &w.providers[prov.index];
        if !p.has_keys() {
            return match p.state {
                KeyState::Loading => park(w, r, prov.index, WaitFor::Provider(prov.index)),
                _ => Outcome::Invalid(Rejection::ProviderUnavailable, p.retry_in),
            };
        }
        let (last_ok, retry_in) = (p.last_ok, p.retry_in);
        let checked =
            p.with_key_sets(|sets| jwt::validate_access_token(token, sets, &prov.policy, now));
        match checked {
            Ok(v) => {
                let claims = Arc::new(v.claims);
                w.cache_insert(rt.cache_id, raw_token, claims.clone(), v.exp);
                Outcome::Valid(claims)
            }
            Err(Rejection::UnknownKey) => {
                match decide::unknown_kid(refetched, last_ok, || w.refetch(prov.index)) {
                    UnknownKid::WaitForRefetch => {
                        park(w, r, prov.index, WaitFor::Refetch(prov.index))
                    }
                    UnknownKid::Unavailable => {
                        Outcome::Invalid(Rejection::ProviderUnavailable, retry_in)
                    }
                    UnknownKid::Reject => Outcome::Invalid(Rejection::UnknownKey, 1),
                }
            }
            Err(e) => Outcome::Invalid(e, 1),
        }
    })
    .unwrap_or(Outcome::Invalid(Rejection::ProviderUnavailable, 5));

    match outcome {
        Outcome::Wait { refetch } => {
            if let Some(ctx) = r.ctx_mut() {
                ctx.refetched |= refetch;
            }
            Status::NGX_AGAIN
        }
        Outcome::Error => Status(500),
        Outcome::Valid(claims) => {
            ngx_log_debug_http!(r, "oauth2: bearer token accepted");
            if let Err(st) = sender(r, lc, rt, pi, dpop_scheme, raw_token, &claims, now) {
                return st;
            }
            authorized(r, lc, rt, pi, "bearer", Token::Header(raw_token), claims)
        }
        Outcome::Invalid(why, retry) => reject(r, lc, why, retry),
    }
}

/// Introspection (RFC 7662): one call per token at a time per worker, a
/// bounded number in flight, refusals remembered briefly, answers cached
/// until the token's `exp` (see `oauth2_core::flights::Introspections`).
fn introspection_step(
    w: &mut Worker,
    r: &mut Request,
    rt: &LocRuntime,
    prov: &Prov,
    token: &str,
    now: u64,
) -> Outcome {
    let key = cache::key(prov.policy_id, token);
    match w.introspections.step(&key, now) {
        IntrospectStep::Refused(why) => Outcome::Invalid(why, 1),
        IntrospectStep::Wait(job) => park(w, r, prov.index, WaitFor::Job(job)),
        IntrospectStep::Busy => {
            ngx_log_error!(
                NGX_LOG_WARN,
                r.log(),
                "oauth2: too many introspections in flight ({}), request refused",
                w.introspections.in_flight()
            );
            Outcome::Invalid(Rejection::ProviderUnavailable, 1)
        }
        IntrospectStep::Answer(Err(e)) => {
            ngx_log_error!(NGX_LOG_WARN, r.log(), "oauth2: introspection failed: {}", e);
            w.count_introspection(prov.index, true);
            Outcome::Invalid(Rejection::ProviderUnavailable, 5)
        }
        IntrospectStep::Answer(Ok((status, body))) => {
            match introspection::check(status, &body, &prov.policy, now) {
                Ok((claims, exp)) => {
                    let claims = Arc::new(claims);
                    let until = exp.unwrap_or(now + 60).min(now + 3600);
                    w.cache_insert(rt.cache_id, token.as_bytes(), claims.clone(), until);
                    Outcome::Valid(claims)
                }
                Err(IntrospectionError::Rejected(why)) => {
                    w.introspections.refuse(key, why, now);
                    Outcome::Invalid(why, 1)
                }
                Err(IntrospectionError::Provider(msg)) => {
                    w.count_introspection(prov.index, true);
                    ngx_log_error!(
                        NGX_LOG_WARN,
                        r.log(),
                        "oauth2: introspection failed: {}",
                        msg
                    );
                    Outcome::Invalid(Rejection::ProviderUnavailable, 5)
                }
            }
        }
        IntrospectStep::Start => {
            let p = &w.providers[prov.index];
            let endpoint = match (&p.metadata, p.state) {
                (Some(m), _) => m.introspection_endpoint.clone(),
                (None, KeyState::Loading) => {
                    return park(w, r, prov.index, WaitFor::Provider(prov.index))
                }
                (None, _) => return Outcome::Invalid(Rejection::ProviderUnavailable, p.retry_in),
            };
            let (Some(endpoint), Some((client_id, secret))) =
                (endpoint, prov.introspection_client.as_ref())
            else {
                return Outcome::Invalid(Rejection::UnsupportedToken, 1);
            };
            let auth = oauth2_core::login::basic_credentials(client_id, &secret.0);
            let hook = test_hook(r);
            match w.submit(
                prov.index,
                "introspection",
                endpoint,
                Some(introspection::form(token)),
                Some(auth),
                hook,
            ) {
                Ok(job) => {
                    w.introspections.started(key, job);
                    w.count_introspection(prov.index, false);
                    park(w, r, prov.index, WaitFor::Job(job))
                }
                Err(e) => {
                    w.count_introspection(prov.index, true);
                    ngx_log_error!(NGX_LOG_WARN, r.log(), "oauth2: introspection failed: {}", e);
                    Outcome::Invalid(Rejection::ProviderUnavailable, 5)
                }
            }
        }
    }
}

/// The registered access-phase handler.
pub extern "C" fn access_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // Any panic becomes a 500 for this request, never an unwound worker.
    crate::guard(500, || {
        // SAFETY: nginx passes a valid request to phase handlers.
        let req = unsafe { crate::http::request(r) };
        handler(req).0
    })
}
