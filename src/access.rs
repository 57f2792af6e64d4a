//! The access-phase handler: gathers request facts, asks `oauth2_core` what
//! to do, and applies the answer. NGX_OK allows, NGX_DECLINED passes on, a
//! status code denies, NGX_AGAIN parks the request until keys arrive.

use std::ptr;
use std::sync::Arc;

use ngx::core::Status;
use ngx::ffi::{
    ngx_http_request_t, ngx_int_t, ngx_list_push, ngx_str_t, ngx_table_elt_t, ngx_time,
    NGX_LOG_INFO,
};
use ngx::http::{HttpModuleLocationConf, HttpModuleServerConf, NgxHttpCoreModule, Request};
use ngx::{ngx_log_debug_http, ngx_log_error};
use oauth2_core::authz::{self, Denied};
use oauth2_core::cache;
use oauth2_core::config::TokenValidation;
use oauth2_core::introspection::{self, IntrospectionError};
use oauth2_core::decide::{self, Action, Candidate, RequestFacts};
use oauth2_core::jwt::{self, Claims};
use oauth2_core::Rejection;

use crate::conf::{LocConf, LocRuntime};
use crate::endpoints::SessionOutcome;
use crate::provider::{with_worker, KeyState};
use crate::Module;

/// Per-request state, kept in the request pool (dropped with it).
pub struct Ctx {
    r: *mut ngx_http_request_t,
    pub method: &'static str,
    pub claims: Option<Arc<Claims>>,
    pub token: Option<Token>,
    pub error: Option<Rejection>,
    /// A key refetch was already asked for this request.
    refetched: bool,
    /// The request is in a waiting list (keys, metadata or a job).
    pub waiting: bool,
    /// Where an `oauth2_callback` request is.
    pub callback: Option<crate::endpoints::CallbackStep>,
    /// Authenticated but refused by a rule (`$oauth2_error`).
    pub denied: Option<&'static str>,
}

/// The access token of an authenticated request, not copied: the request's
/// own `Authorization` header value (in the request's memory, which outlives
/// the ctx: both go with the request pool), or the session it came with.
pub enum Token {
    Header(&'static [u8]),
    Session(Arc<oauth2_core::session::Session>),
}

impl Ctx {
    pub fn token(&self) -> Option<&str> {
        match self.token.as_ref()? {
            Token::Header(b) => std::str::from_utf8(b).ok(),
            Token::Session(s) => Some(&s.access_token),
        }
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        if self.waiting {
            let r = self.r;
            with_worker(|w| w.forget(r));
        }
    }
}

fn ctx_ptr(r: &Request) -> *mut Ctx {
    // SAFETY: r is a live request; its ctx array has ctx_max_index slots and
    // this module's slot only ever holds a `Ctx` set by `ctx_mut` (or null).
    unsafe {
        let p = (*<&Request as Into<*const ngx_http_request_t>>::into(r)).ctx;
        (*p.add(crate::module().ctx_index)).cast()
    }
}

/// The request's ctx, to read (variables).
pub fn get_ctx(r: &Request) -> Option<&Ctx> {
    // SAFETY: null or a Ctx in the request pool, alive as long as the request.
    unsafe { ctx_ptr(r).as_ref() }
}

/// The request's ctx, made on first use; the `&mut Request` borrow keeps it unique.
pub fn ctx_mut(r: &mut Request) -> Option<&mut Ctx> {
    let raw: *mut ngx_http_request_t = r.into();
    if ctx_ptr(r).is_null() {
        let c = r.pool().allocate(Ctx {
            r: raw,
            method: "",
            claims: None,
            token: None,
            error: None,
            refetched: false,
            waiting: false,
            callback: None,
            denied: None,
        });
        if c.is_null() {
            return None;
        }
        r.set_module_ctx(c.cast(), crate::module());
    }
    // SAFETY: as in get_ctx; exclusive through the caller's &mut Request.
    unsafe { ctx_ptr(r).as_mut() }
}

fn header_value(h: *mut ngx_table_elt_t) -> Option<&'static [u8]> {
    // SAFETY: a non-null header element of the request is valid for the
    // request's lifetime; the slice is only kept by the request's ctx, which
    // is dropped with the request pool.
    unsafe { h.as_ref().map(|h| h.value.as_bytes()) }
}

fn find_header<'a>(r: &'a Request, name: &str) -> Option<&'a str> {
    r.headers_in_iterator()
        .find(|(k, _)| k.as_bytes().eq_ignore_ascii_case(name.as_bytes()))
        .and_then(|(_, v)| v.to_str().ok())
}

pub fn push_header(r: &mut Request, key: &'static str, value: &str) -> *mut ngx_table_elt_t {
    let raw: *mut ngx_http_request_t = r.into();
    let pool = r.pool();
    // SAFETY: headers_out.headers is the request's initialised header list;
    // the element and the value copy live in the request pool.
    unsafe {
        let h = ngx_list_push(&mut (*raw).headers_out.headers) as *mut ngx_table_elt_t;
        if h.is_null() {
            return ptr::null_mut();
        }
        let Some(v) = ngx_str_t::from_bytes(pool.as_ptr(), value.as_bytes()) else {
            (*h).hash = 0;
            return ptr::null_mut();
        };
        (*h).hash = 1;
        (*h).key = ngx_str_t { len: key.len(), data: key.as_ptr() as *mut u8 };
        (*h).value = v;
        (*h).lowcase_key = ptr::null_mut();
        (*h).next = ptr::null_mut();
        h
    }
}

fn realm<'a>(r: &'a Request, lc: &'a LocConf) -> &'a str {
    if let Some(realm) = &lc.realm {
        return realm;
    }
    NgxHttpCoreModule::server_conf(r)
        .and_then(|s| s.server_name.to_str().ok())
        .filter(|s| !s.is_empty())
        .unwrap_or("nginx")
}

fn apply(r: &mut Request, lc: &LocConf, action: Action) -> Status {
    ngx_log_debug_http!(r, "oauth2: action {:?}", action);
    let session = lc.runtime.as_ref().and_then(|rt| rt.session.as_ref());
    match action {
        Action::Allow | Action::Pass => {
            if let Some(sc) = session {
                crate::endpoints::strip_cookies(r, sc);
            }
            if action == Action::Allow {
                Status::NGX_OK
            } else {
                Status::NGX_DECLINED
            }
        }
        Action::Unauthorized { challenge } => {
            let h = push_header(r, "WWW-Authenticate", &challenge);
            let raw: *mut ngx_http_request_t = r.into();
            // SAFETY: h is null or a header element in the request pool.
            unsafe { (*raw).headers_out.www_authenticate = h };
            Status(401)
        }
        Action::Unavailable { retry_after } => {
            push_header(r, "Retry-After", &retry_after.to_string());
            Status(503)
        }
        Action::Redirect => match (lc.runtime.clone(), session) {
            (Some(rt), Some(sc)) => Status(crate::endpoints::start_login(r, &rt, sc)),
            _ => Status(401),
        },
    }
}

pub fn handler(r: &mut Request) -> Status {
    if !r.is_main() {
        return Status::NGX_DECLINED;
    }
    #[cfg(feature = "test-hooks")]
    if find_header(r, "X-Oauth2-Test-Panic").is_some() {
        panic!("forced by the X-Oauth2-Test-Panic test hook");
    }
    let Some(lc) = Module::location_conf(r) else { return Status::NGX_DECLINED };
    if lc.endpoint.is_some() {
        // oauth2_callback / oauth2_sign_out are never subject to oauth2_auth
        return Status::NGX_DECLINED;
    }
    let Some(rt) = lc.runtime.clone() else { return Status::NGX_DECLINED };
    let raw: *mut ngx_http_request_t = r.into();
    // SAFETY: headers_in.authorization is null or a header of this request.
    let authz = header_value(unsafe { (*raw).headers_in.authorization });
    match decide::bearer_candidate(authz) {
        Candidate::Token(token) => bearer(r, lc, &rt, token),
        Candidate::Malformed => reject(r, lc, Rejection::Malformed, 1),
        Candidate::None => {
            if let Some(sc) = rt.session.as_ref() {
                match crate::endpoints::session_for_access(r, &rt, sc) {
                    SessionOutcome::Wait => return Status::NGX_AGAIN,
                    SessionOutcome::Valid(s) => {
                        ngx_log_debug_http!(r, "oauth2: session accepted");
                        let claims = s.claims.clone();
                        return authorized(r, lc, &rt, "cookie", Token::Session(s), claims);
                    }
                    SessionOutcome::None => {}
                    SessionOutcome::Unavailable => {
                        if let Some(ctx) = ctx_mut(r) {
                            ctx.waiting = false;
                            ctx.error = Some(Rejection::ProviderUnavailable);
                        }
                        return apply(r, lc, Action::Unavailable { retry_after: 5 });
                    }
                }
            }
            if let Some(ctx) = ctx_mut(r) {
                ctx.waiting = false;
                ctx.error = Some(Rejection::MissingToken);
            }
            let method = r.method();
            let facts = RequestFacts {
                method: method.as_str(),
                accept: find_header(r, "Accept"),
                sec_fetch_mode: find_header(r, "Sec-Fetch-Mode"),
                x_requested_with: find_header(r, "X-Requested-With").is_some(),
                access_control_request_method: find_header(r, "Access-Control-Request-Method")
                    .is_some(),
            };
            let browser = rt.session.as_ref().is_some_and(|s| s.client.is_some());
            let action = decide::unauthenticated(lc.on_failure(), &facts, browser, realm(r, lc));
            ngx_log_debug_http!(r, "oauth2: no credentials");
            apply(r, lc, action)
        }
    }
}

fn reject(r: &mut Request, lc: &LocConf, why: Rejection, retry_after: u64) -> Status {
    if let Some(ctx) = ctx_mut(r) {
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
        ngx_log_error!(NGX_LOG_INFO, r.log(), "oauth2: bearer token rejected: {}", why.code());
    }
    let action = decide::rejected_bearer(why, realm(r, lc), retry_after);
    apply(r, lc, action)
}

/// An authenticated request: check the location's rules, then allow it
/// (NGX_OK) with its identity, or deny it (403).
fn authorized(
    r: &mut Request,
    lc: &LocConf,
    rt: &LocRuntime,
    method: &'static str,
    token: Token,
    claims: Arc<Claims>,
) -> Status {
    let checked = if rt.claim_rules.is_empty() && rt.required_scopes.is_empty() {
        Ok(())
    } else {
        let scopes = match &token {
            // the scope the token endpoint granted the session
            Token::Session(s) => {
                s.scope.as_deref().unwrap_or("").split(' ').filter(|x| !x.is_empty()).collect()
            }
            Token::Header(_) => authz::token_scopes(&claims),
        };
        authz::check(&claims, &scopes, &rt.claim_rules, &rt.required_scopes)
    };
    let Some(ctx) = ctx_mut(r) else { return Status(500) };
    ctx.waiting = false;
    ctx.method = method;
    ctx.token = Some(token);
    ctx.claims = Some(claims);
    match checked {
        Ok(()) => {
            ctx.error = None;
            apply(r, lc, Action::Allow)
        }
        Err(denied) => {
            ctx.error = None;
            ctx.denied = Some(denied.code());
            ngx_log_error!(NGX_LOG_INFO, r.log(), "oauth2: access denied: {}", denied.code());
            if let (Denied::Scope(scope), "bearer") = (&denied, method) {
                let challenge = decide::insufficient_scope(realm(r, lc), scope);
                push_header(r, "WWW-Authenticate", &challenge);
            }
            Status(403)
        }
    }
}

enum Outcome {
    Valid(Arc<Claims>),
    Invalid(Rejection, u64),
    Wait,
}

fn bearer(r: &mut Request, lc: &LocConf, rt: &LocRuntime, raw_token: &'static [u8]) -> Status {
    let now = ngx_time() as u64;
    // A token validated before: no scan, no parse, no copy, no hash of the
    // whole token (the cache hashes its ends and compares it whole).
    if let Some(claims) = with_worker(|w| w.cache.get(rt.policy_id, raw_token, now)).flatten() {
        ngx_log_debug_http!(r, "oauth2: bearer token accepted (cached)");
        return authorized(r, lc, rt, "bearer", Token::Header(raw_token), claims);
    }
    let Some(token) = decide::token68(raw_token) else {
        return reject(r, lc, Rejection::Malformed, 1);
    };
    let introspect = match rt.token_validation {
        TokenValidation::Jwt => false,
        TokenValidation::Introspection => true,
        TokenValidation::Auto => !jwt::looks_like_jwt(token),
    };
    if introspect && rt.introspection_client.is_none() {
        // an opaque token, and no way to introspect it here
        return reject(r, lc, Rejection::UnsupportedToken, 1);
    }
    let raw: *mut ngx_http_request_t = r.into();
    let Some(ctx) = ctx_mut(r) else { return Status(500) };
    let refetched = ctx.refetched;
    let outcome = with_worker(|w| {
        if introspect {
            return introspection_step(w, rt, token, raw, now);
        }
        let p = &mut w.providers[rt.provider];
        let sets = p.key_sets();
        if sets.is_empty() {
            return match p.state {
                KeyState::Loading => {
                    w.wait(rt.provider, raw, false);
                    Outcome::Wait
                }
                _ => Outcome::Invalid(Rejection::ProviderUnavailable, p.retry_in),
            };
        }
        let refs: Vec<_> = sets.iter().map(|s| &**s).collect();
        match jwt::validate(token, &refs, &rt.policy, now) {
            Ok(v) => {
                let claims = Arc::new(v.claims);
                w.cache.insert(rt.policy_id, raw_token, claims.clone(), v.exp);
                Outcome::Valid(claims)
            }
            Err(Rejection::UnknownKey) if !refetched && p.request_refetch() => {
                w.wait(rt.provider, raw, true);
                Outcome::Wait
            }
            Err(Rejection::UnknownKey) if refetched && !p.last_ok => {
                Outcome::Invalid(Rejection::ProviderUnavailable, p.retry_in)
            }
            Err(e) => Outcome::Invalid(e, 1),
        }
    })
    .unwrap_or(Outcome::Invalid(Rejection::ProviderUnavailable, 5));

    let Some(ctx) = ctx_mut(r) else { return Status(500) };
    match outcome {
        Outcome::Wait => {
            ctx.waiting = true;
            ctx.refetched = true;
            ngx_log_debug_http!(r, "oauth2: waiting for the provider");
            Status::NGX_AGAIN
        }
        Outcome::Valid(claims) => {
            ngx_log_debug_http!(r, "oauth2: bearer token accepted");
            authorized(r, lc, rt, "bearer", Token::Header(raw_token), claims)
        }
        Outcome::Invalid(why, retry) => {
            ctx.waiting = false;
            reject(r, lc, why, retry)
        }
    }
}

/// Introspection (RFC 7662): one call per token at a time per worker;
/// concurrent requests with the same token wait for it; results are cached
/// until the token's `exp`.
fn introspection_step(
    w: &mut crate::provider::Worker,
    rt: &LocRuntime,
    token: &str,
    raw: *mut ngx_http_request_t,
    now: u64,
) -> Outcome {
    let key = cache::key(rt.policy_id, token);
    if let Some(job) = w.introspections.get(&key).copied() {
        match w.job_results.remove(&job) {
            None if w.job_waiting(job) => {
                w.wait_job(job, raw);
                return Outcome::Wait;
            }
            None => {
                // the result went to a request that is gone: ask again
                w.introspections.remove(&key);
            }
            Some(res) => {
                w.introspections.remove(&key);
                return match res {
                    Err(_) => Outcome::Invalid(Rejection::ProviderUnavailable, 5),
                    Ok((status, body)) => match introspection::check(status, &body, &rt.policy, now) {
                        Ok((claims, exp)) => {
                            let claims = Arc::new(claims);
                            let until = exp.unwrap_or(now + 60).min(now + 3600);
                            w.cache.insert(rt.policy_id, token.as_bytes(), claims.clone(), until);
                            Outcome::Valid(claims)
                        }
                        Err(IntrospectionError::Rejected(why)) => Outcome::Invalid(why, 1),
                        Err(IntrospectionError::Provider(_)) => Outcome::Invalid(Rejection::ProviderUnavailable, 5),
                    },
                };
            }
        }
    }
    let p = &w.providers[rt.provider];
    let endpoint = match (&p.metadata, p.state) {
        (Some(m), _) => m.introspection_endpoint.clone(),
        (None, KeyState::Loading) => {
            w.wait(rt.provider, raw, false);
            return Outcome::Wait;
        }
        (None, _) => return Outcome::Invalid(Rejection::ProviderUnavailable, p.retry_in),
    };
    let Some(endpoint) = endpoint else {
        return Outcome::Invalid(Rejection::UnsupportedToken, 1);
    };
    let Some((client_id, secret)) = rt.introspection_client.as_ref() else {
        return Outcome::Invalid(Rejection::UnsupportedToken, 1);
    };
    let auth = oauth2_core::login::basic_credentials(client_id, &secret.0);
    match w.submit(rt.provider, endpoint, introspection::form(token), Some(auth)) {
        Some(job) => {
            w.introspections.insert(key, job);
            w.wait_job(job, raw);
            Outcome::Wait
        }
        None => Outcome::Invalid(Rejection::ProviderUnavailable, 5),
    }
}

/// The registered access-phase handler.
pub extern "C" fn access_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // Any panic becomes a 500 for this request, never an unwound worker.
    crate::guard(500, || {
        // SAFETY: nginx passes a valid request to phase handlers.
        let req = unsafe { Request::from_ngx_http_request(r) };
        handler(req).0
    })
}
