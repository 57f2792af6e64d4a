//! `oauth2_callback`: check the state, exchange the code at the token
//! endpoint, verify the ID token, set the session cookie, and go back to
//! where the login started. It waits (parked, as the access phase does) for
//! the metadata, the token endpoint and, for a new signing key, a refetch;
//! a wait that passes its deadline gets `504`, never a session.

use std::sync::Arc;

use ngx::core::Status;
use ngx::ffi::{ngx_http_request_t, ngx_int_t, NGX_LOG_INFO};
use ngx::http::{HttpModuleLocationConf, Request};
use ngx::ngx_log_error;
use oauth2_core::decide::{self, UnknownKid};
use oauth2_core::login::{self, CallbackStep, TokenResponse};
use oauth2_core::session::{self, LoginState as Login, Purpose, Session};
use oauth2_core::waits::{Check, WaitFor};
use oauth2_core::Rejection;

use crate::conf::{ClientConf, LocRuntime, SessionConf};
use crate::http::{finalize, request, RawRequest, RequestExt};
use crate::session::{client_auth, cookie, delete_cookie, issue_session, now, STATE_TTL};
use crate::worker::{test_hook, timed_out, with_worker, KeyState};
use crate::Module;

enum Step {
    Done(ngx_int_t),
    Wait,
}

/// The content handler (via `lib.rs`).
pub fn handler(r: RawRequest) -> ngx_int_t {
    // SAFETY: nginx passes a valid request to content handlers.
    let req = unsafe { request(r) };
    match callback(req) {
        Step::Done(rc) => rc,
        Step::Wait => {
            req.hold_for_resume(Some(resume));
            Status::NGX_DONE.0
        }
    }
}

/// The write handler of a parked callback: runs when it is woken, or on any
/// other write event of its connection (then it is still parked and waits on).
unsafe extern "C" fn resume(r: *mut ngx_http_request_t) {
    crate::guard((), || {
        // SAFETY: called by nginx (posted write event) with our live request.
        let req = unsafe { request(r) };
        match callback(req) {
            Step::Wait => {}
            Step::Done(rc) => finalize(req, rc),
        }
    })
}

fn fail(r: &mut Request, status: u16, log: &str, page: &str) -> Step {
    ngx_log_error!(NGX_LOG_INFO, r.log(), "oauth2: callback: {}", log);
    Step::Done(r.send_page(status, page))
}

/// Park until `what`, remembering where the callback is.
fn park(r: &mut Request, provider: usize, what: WaitFor, step: CallbackStep) -> Step {
    if !with_worker(|w| w.park(r, provider, what)).unwrap_or(false) {
        return Step::Done(500);
    }
    if let Some(ctx) = r.ctx_mut() {
        ctx.callback = Some(step);
    }
    Step::Wait
}

fn callback(r: &mut Request) -> Step {
    let Some(lc) = Module::location_conf(r) else {
        return Step::Done(500);
    };
    let Some(rt) = lc.runtime.clone() else {
        return Step::Done(500);
    };
    let Some(sc) = rt.session.as_ref() else {
        return Step::Done(500);
    };
    let Some(client) = sc.client.as_ref() else {
        return Step::Done(500);
    };
    let check = with_worker(|w| w.check(r)).unwrap_or(Check::Fresh);
    if let Check::StillParked(_) = check {
        return Step::Wait;
    }
    let Some(ctx) = r.ctx_mut() else {
        return Step::Done(500);
    };
    let step = ctx.callback.take();
    if timed_out(check) {
        return fail(
            r,
            504,
            "the identity provider did not answer in time",
            "the identity provider did not answer in time",
        );
    }
    match step {
        None | Some(CallbackStep::Metadata) => callback_start(r, &rt, sc, client),
        Some(CallbackStep::Token { login, job }) => {
            match with_worker(|w| w.take_token_result(job)).flatten() {
                None => fail(
                    r,
                    502,
                    "no answer from the token endpoint",
                    "the identity provider could not be reached",
                ),
                Some(Err(e)) => fail(
                    r,
                    502,
                    &e.to_string(),
                    "the identity provider could not be reached",
                ),
                Some(Ok((status, body))) => match login::parse_token_response(status, &body) {
                    Err(e) => fail(
                        r,
                        502,
                        &e.to_string(),
                        "the identity provider refused the login",
                    ),
                    Ok(tokens) => finish_login(r, &rt, sc, client, login, tokens, false),
                },
            }
        }
        Some(CallbackStep::Keys { login, tokens }) => {
            finish_login(r, &rt, sc, client, login, tokens, true)
        }
    }
}

fn callback_start(r: &mut Request, rt: &LocRuntime, sc: &SessionConf, client: &ClientConf) -> Step {
    let p = login::parse_callback(r.args());
    if p.duplicate {
        return fail(r, 400, "a parameter is repeated", "invalid login response");
    }
    if let Some(err) = &p.error {
        let code = login::clean_error_code(err);
        let status = if code == "access_denied" { 403 } else { 401 };
        return fail(
            r,
            status,
            &format!("the provider answered error \"{code}\""),
            &format!("login failed: {code}"),
        );
    }
    let (Some(code), Some(state)) = (p.code, p.state) else {
        return fail(r, 400, "no code or state", "invalid login response");
    };
    let cookies = r.cookies();
    let name = format!(
        "{}_st_{}",
        sc.cookie_name,
        &session::short_hash(&state)[..8]
    );
    let login: Option<Login> = cookie(&cookies, &name)
        .and_then(|v| sc.keys.open_bound(Purpose::State, &sc.binding, v))
        .and_then(|b| serde_json::from_slice(&b).ok());
    let Some(login) = login else {
        return fail(
            r,
            400,
            "no valid state cookie for this state",
            "invalid or expired login state",
        );
    };
    let t = now();
    if !session::ct_eq(login.state.as_bytes(), state.as_bytes()) || t > login.created + STATE_TTL {
        return fail(
            r,
            400,
            "state mismatch or expired",
            "invalid or expired login state",
        );
    }
    // the metadata (token endpoint) is needed
    let meta = with_worker(|w| {
        let p = &w.providers[rt.provider];
        match (&p.metadata, p.state) {
            (Some(m), _) => Ok(Some(m.clone())),
            (None, KeyState::Loading) => Ok(None),
            (None, _) => Err(()),
        }
    });
    let meta = match meta {
        Some(Ok(Some(m))) => m,
        Some(Ok(None)) => {
            return park(
                r,
                rt.provider,
                WaitFor::Provider(rt.provider),
                CallbackStep::Metadata,
            )
        }
        _ => {
            return fail(
                r,
                503,
                "the provider metadata is not available",
                "the identity provider is unavailable",
            )
        }
    };
    let Some(token_endpoint) = meta.token_endpoint.clone() else {
        return fail(
            r,
            503,
            "the provider metadata has no token_endpoint",
            "the identity provider is unavailable",
        );
    };
    // the state is used once: replays in this worker are refused
    let replay = with_worker(|w| {
        w.used_states.retain(|_, exp| *exp > t);
        w.used_states
            .insert(session::short_hash(&state), t + STATE_TTL)
            .is_some()
    })
    .unwrap_or(true);
    delete_cookie(r, sc, &name, true);
    if replay {
        return fail(
            r,
            400,
            "the state was already used",
            "invalid or expired login state",
        );
    }
    let mut form = vec![
        ("grant_type".to_string(), "authorization_code".to_string()),
        ("code".to_string(), code),
        // the very redirect_uri the login sent (RFC 6749 §4.1.3)
        ("redirect_uri".to_string(), login.redirect_uri.clone()),
        ("code_verifier".to_string(), login.verifier.clone()),
    ];
    let auth = client_auth(client, Some(&meta), &mut form);
    let hook = test_hook(r);
    match with_worker(|w| w.submit(rt.provider, "token", token_endpoint, form, auth, hook)) {
        Some(Ok(job)) => park(
            r,
            rt.provider,
            WaitFor::Job(job),
            CallbackStep::Token { login, job },
        ),
        Some(Err(e)) => fail(
            r,
            503,
            &e.to_string(),
            "the identity provider is unavailable",
        ),
        None => fail(
            r,
            503,
            "no worker state",
            "the identity provider is unavailable",
        ),
    }
}

fn finish_login(
    r: &mut Request,
    rt: &LocRuntime,
    sc: &SessionConf,
    client: &ClientConf,
    login: Login,
    tokens: TokenResponse,
    refetched: bool,
) -> Step {
    let Some(id_token) = tokens.id_token.clone() else {
        return fail(
            r,
            502,
            "the token response has no id_token",
            "the identity provider refused the login",
        );
    };
    let t = now();
    let checked = with_worker(|w| {
        let p = &w.providers[rt.provider];
        let sets = p.key_sets();
        let refs: Vec<_> = sets.iter().map(|s| &**s).collect();
        let who = login::IdTokenClient {
            issuer: &client.issuer,
            client_id: &client.client_id,
            nonce: &login.nonce,
        };
        let res = login::validate_id_token(
            &id_token,
            &refs,
            &who,
            &rt.policy.algorithms,
            rt.policy.skew_secs,
            t,
        );
        let last_ok = w.providers[rt.provider].last_ok;
        match res {
            Err(Rejection::UnknownKey) => {
                match decide::unknown_kid(refetched, last_ok, || w.refetch(rt.provider)) {
                    UnknownKid::WaitForRefetch => None,
                    UnknownKid::Unavailable => Some(Err(Rejection::ProviderUnavailable)),
                    UnknownKid::Reject => Some(Err(Rejection::UnknownKey)),
                }
            }
            other => Some(other),
        }
    });
    let claims = match checked {
        None => {
            return park(
                r,
                rt.provider,
                WaitFor::Refetch(rt.provider),
                CallbackStep::Keys { login, tokens },
            )
        }
        Some(None) => {
            return fail(
                r,
                503,
                "no worker state",
                "the identity provider is unavailable",
            )
        }
        Some(Some(Err(Rejection::ProviderUnavailable))) => {
            return fail(
                r,
                503,
                "the signing key cannot be fetched",
                "the identity provider is unavailable",
            )
        }
        Some(Some(Err(e))) => {
            return fail(
                r,
                401,
                &format!("ID token rejected: {}", e.code()),
                "the login could not be verified",
            )
        }
        Some(Some(Ok(c))) => c,
    };
    let s = Session {
        claims: Arc::new(claims),
        access_token: tokens.access_token,
        access_exp: tokens.expires_in.map(|e| t + e).unwrap_or(0),
        refresh_token: tokens.refresh_token,
        id_token: Some(id_token),
        scope: tokens.scope.or_else(|| Some(client.scope.clone())),
        created: t,
    };
    if !issue_session(r, sc, &s) {
        return fail(
            r,
            500,
            "cannot store the session",
            "the session could not be stored",
        );
    }
    ngx_log_error!(NGX_LOG_INFO, r.log(), "oauth2: login completed");
    let target = if session::safe_return_path(&login.return_to) {
        login.return_to
    } else {
        "/".into()
    };
    Step::Done(r.redirect(&target))
}
