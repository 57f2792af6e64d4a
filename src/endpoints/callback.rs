//! `oauth2_callback`: check the state, exchange the code at the token
//! endpoint, verify the ID token, fetch UserInfo, set the session cookie,
//! and go back to where the login started. It waits (parked, as the access
//! phase does) for the metadata, the token endpoint, a key refetch for a new
//! signing key, and UserInfo; a wait that passes its deadline gets `504`,
//! never a session. Every failure page offers a way on (back to the page the
//! login started from, else `/`).

use std::sync::Arc;

use ngx::core::Status;
use ngx::ffi::{
    ngx_http_request_t, ngx_int_t, ngx_uint_t, NGX_LOG_ERR, NGX_LOG_INFO, NGX_LOG_WARN,
};
use ngx::http::{HttpModuleLocationConf, Request};
use ngx::ngx_log_error;
use oauth2_core::decide::{self, UnknownKid};
use oauth2_core::jwt::Claims;
use oauth2_core::login::{self, CallbackStep, TokenResponse};
use oauth2_core::logout;
use oauth2_core::metrics;
use oauth2_core::session::{self, joined_claims, LoginState as Login, Purpose, Session};
use oauth2_core::waits::{Check, WaitFor};
use oauth2_core::{Rejection, TokenEndpointError};

use crate::conf::{LocRuntime, Prov, SessionConf};
use crate::http::{finalize, request, RawRequest, RequestExt};
use crate::kv::StoreOp;
use crate::session::{
    client_auth, cookie, delete_cookie, issue_session, now, state_used_once, store_answer, uri_for,
    Issued, STATE_TTL,
};
use crate::store::Store;
use crate::worker::{test_hook, timed_out, with_worker, KeyState};
use crate::Module;

/// The claims of a UserInfo answer.
type ClaimMap = serde_json::Map<String, serde_json::Value>;

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

/// A failure: a log line at `level`, a page with `status` and a link on
/// (to the page the login started from, when known, else `/`).
fn fail(
    r: &mut Request,
    status: u16,
    level: u32,
    log: &str,
    page: &str,
    back: Option<&str>,
) -> Step {
    ngx_log_error!(level as ngx_uint_t, r.log(), "oauth2: callback: {}", log);
    Step::Done(r.send_page(status, page, Some(back.unwrap_or("/"))))
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

/// The login's own page, where the error page links back to.
fn back(login: &Login) -> Option<&str> {
    Some(login.return_to.as_str()).filter(|p| session::safe_return_path(p))
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
    let check = with_worker(|w| w.check(r)).unwrap_or(Check::Fresh);
    if let Check::StillParked(_) = check {
        return Step::Wait;
    }
    let Some(ctx) = r.ctx_mut() else {
        return Step::Done(500);
    };
    let step = ctx.callback.take();
    if timed_out(check) {
        let to = match &step {
            Some(CallbackStep::Token { login, .. })
            | Some(CallbackStep::Keys { login, .. })
            | Some(CallbackStep::UserInfo { login, .. }) => back(login).map(str::to_string),
            _ => None,
        };
        let msg = "the identity provider did not answer in time";
        return fail(r, 504, NGX_LOG_WARN, msg, msg, to.as_deref());
    }
    match step {
        None => callback_start(r, &rt, sc, false),
        Some(CallbackStep::Metadata { state_taken }) => callback_start(r, &rt, sc, state_taken),
        Some(CallbackStep::State { job }) => match store_answer(r, sc, job) {
            Some((200, _)) => callback_start(r, &rt, sc, true),
            Some(_) => fail(
                r,
                400,
                NGX_LOG_INFO,
                "the state was already used",
                "invalid or expired login state",
                None,
            ),
            None => unavailable(r),
        },
        Some(CallbackStep::Stored { job, target }) => match store_answer(r, sc, job) {
            Some((200, _)) => {
                ngx_log_error!(NGX_LOG_INFO, r.log(), "oauth2: login completed");
                with_worker(|w| w.count(metrics::LOGINS_COMPLETED));
                Step::Done(r.redirect(&target))
            }
            _ => unavailable(r),
        },
        Some(CallbackStep::Token { login, job }) => {
            match with_worker(|w| w.take_job_result(job)).flatten() {
                None => fail(
                    r,
                    502,
                    NGX_LOG_WARN,
                    "no answer from the token endpoint",
                    "the identity provider could not be reached",
                    back(&login),
                ),
                Some(Err(e)) => fail(
                    r,
                    502,
                    NGX_LOG_WARN,
                    &e.to_string(),
                    "the identity provider could not be reached",
                    back(&login),
                ),
                Some(Ok((status, body))) => match login::parse_token_response(status, &body) {
                    Err(e) => {
                        let (level, hint) = token_error_hint(&e);
                        let log = format!("{e}{hint}");
                        fail(
                            r,
                            502,
                            level,
                            &log,
                            "the identity provider refused the login",
                            back(&login),
                        )
                    }
                    Ok(tokens) => finish_login(r, &rt, sc, login, tokens, false),
                },
            }
        }
        Some(CallbackStep::Keys { login, tokens }) => finish_login(r, &rt, sc, login, tokens, true),
        Some(CallbackStep::UserInfo {
            login,
            tokens,
            claims,
            job,
        }) => {
            let sub = claims
                .get("sub")
                .and_then(|s| s.as_str())
                .unwrap_or("")
                .to_string();
            let userinfo = match with_worker(|w| w.take_job_result(job)).flatten() {
                Some(Ok((status, body))) => {
                    login::userinfo_claims(status, &body, &sub).map_err(|e| e.to_string())
                }
                Some(Err(e)) => Err(e.to_string()),
                None => Err("no answer from the UserInfo endpoint".to_string()),
            };
            let userinfo = match userinfo {
                Ok(u) => Some(u),
                Err(e) => {
                    ngx_log_error!(
                        NGX_LOG_ERR,
                        r.log(),
                        "oauth2: callback: UserInfo failed: {}; the session has the ID token's claims only (check the \"openid\" scope and the client's access to UserInfo, or set \"oauth2_userinfo off\")",
                        e
                    );
                    None
                }
            };
            complete(r, &rt, sc, login, tokens, claims, userinfo)
        }
    }
}

/// The log level and what to check, for a token endpoint's refusal: a
/// refused code or client is a configuration mistake until shown otherwise.
fn token_error_hint(e: &TokenEndpointError) -> (u32, &'static str) {
    match e {
        TokenEndpointError::Refused { code, .. } if code == "invalid_client" || code == "unauthorized_client" => {
            (NGX_LOG_ERR, "; check oauth2_client_id and the client secret (and the client's authentication method)")
        }
        TokenEndpointError::Refused { code, .. } if code == "invalid_grant" => (
            NGX_LOG_ERR,
            "; the code was refused: check that the redirect URI is registered for the client exactly as nginx sends it",
        ),
        TokenEndpointError::Refused { status, .. } if *status >= 500 => (NGX_LOG_WARN, ""),
        _ => (NGX_LOG_ERR, "; check the client's registration at the provider"),
    }
}

/// The provider a login went to: named in its state (its issuer and client
/// id), one of those this callback serves.
fn login_prov(rt: &LocRuntime, login: &Login) -> Option<Arc<Prov>> {
    if login.provider.is_empty() {
        return rt.login_prov().cloned();
    }
    rt.provs
        .iter()
        .find(|p| p.client.is_some() && p.binding == login.provider.as_bytes())
        .cloned()
}

/// The session store is not reachable: 503, the login can be tried again.
fn unavailable(r: &mut Request) -> Step {
    r.push_header("Retry-After", "5");
    ngx_log_error!(
        NGX_LOG_WARN,
        r.log(),
        "oauth2: callback: the session store is unavailable"
    );
    Step::Done(r.send_page(
        503,
        "the session store is unavailable, try again",
        Some("/"),
    ))
}

fn callback_start(r: &mut Request, rt: &LocRuntime, sc: &SessionConf, state_taken: bool) -> Step {
    let p = login::parse_callback(r.args());
    if p.duplicate {
        return fail(
            r,
            400,
            NGX_LOG_INFO,
            "a parameter is repeated",
            "invalid login response",
            None,
        );
    }
    let cookies = r.cookies();
    // the state cookie of this login, if the response names one
    let state_cookie = p
        .state
        .as_deref()
        .map(|state| format!("{}_st_{}", sc.cookie_name, &session::short_hash(state)[..8]));
    let login: Option<Login> = state_cookie
        .as_deref()
        .and_then(|name| cookie(&cookies, name))
        .and_then(|v| sc.keys.open(Purpose::State, v))
        .and_then(|b| serde_json::from_slice(&b).ok());
    if let Some(err) = &p.error {
        // the login ended at the provider (Cancel, or a refusal): its state
        // is of no more use
        if let (Some(name), Some(_)) = (&state_cookie, &login) {
            delete_cookie(r, sc, name, true);
        }
        let code = login::clean_error_code(err);
        let status = if code == "access_denied" { 403 } else { 401 };
        let to = login.as_ref().and_then(back).map(str::to_string);
        return fail(
            r,
            status,
            NGX_LOG_INFO,
            &format!("the provider answered error \"{code}\""),
            &format!("login failed: {code}"),
            to.as_deref(),
        );
    }
    let (Some(code), Some(state), Some(name)) = (p.code, p.state, state_cookie) else {
        return fail(
            r,
            400,
            NGX_LOG_INFO,
            "no code or state",
            "invalid login response",
            None,
        );
    };
    let Some(login) = login else {
        // typically Back after a login: the state was used and its cookie is
        // gone; the user may well be signed in already
        return fail(
            r,
            400,
            NGX_LOG_INFO,
            "no valid state cookie for this state",
            "invalid or expired login state",
            None,
        );
    };
    let Some(prov) = login_prov(rt, &login) else {
        let msg = "the login's provider is not one this callback serves";
        return fail(
            r,
            400,
            NGX_LOG_ERR,
            msg,
            "invalid or expired login state",
            back(&login),
        );
    };
    let Some(client) = prov.client.as_ref() else {
        return Step::Done(500);
    };
    let t = now();
    if !session::ct_eq(login.state.as_bytes(), state.as_bytes()) || t > login.created + STATE_TTL {
        return fail(
            r,
            400,
            NGX_LOG_INFO,
            "state mismatch or expired",
            "invalid or expired login state",
            back(&login),
        );
    }
    // the metadata (token endpoint) is needed
    let meta = with_worker(|w| {
        let p = &w.providers[prov.index];
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
                prov.index,
                WaitFor::Provider(prov.index),
                CallbackStep::Metadata { state_taken: true },
            )
        }
        _ => {
            let msg = "the provider metadata is not available";
            return fail(
                r,
                503,
                NGX_LOG_WARN,
                msg,
                "the identity provider is unavailable",
                back(&login),
            );
        }
    };
    let Some(token_endpoint) = meta.token_endpoint.clone() else {
        let msg = "the provider metadata has no token_endpoint";
        return fail(
            r,
            503,
            NGX_LOG_ERR,
            msg,
            "the identity provider is unavailable",
            back(&login),
        );
    };
    // a Redis store: the state is used once across the fleet (a wait)
    if let (Store::Redis(rs), false) = (&sc.store, state_taken) {
        let key = rs.once_key("st", &logout::once_key("state", "", &state));
        let job = with_worker(|w| w.submit_store(rs.index, StoreOp::Take(key)).ok()).flatten();
        return match job {
            Some(job) => park(
                r,
                prov.index,
                WaitFor::Job(job),
                CallbackStep::State { job },
            ),
            None => unavailable(r),
        };
    }
    // the state is used once: replays in this worker are refused
    let replay = with_worker(|w| {
        w.used_states.retain(|_, exp| *exp > t);
        w.used_states
            .insert(session::short_hash(&state), t + STATE_TTL)
            .is_some()
    })
    .unwrap_or(true);
    // and, with a session store, once across every worker (and nginx)
    let replay = replay || !state_used_once(sc, &state);
    delete_cookie(r, sc, &name, true);
    if replay {
        return fail(
            r,
            400,
            NGX_LOG_INFO,
            "the state was already used",
            "invalid or expired login state",
            back(&login),
        );
    }
    // the very redirect_uri the login sent (RFC 6749 §4.1.3); a state made
    // before it was recorded falls back to this location's
    let redirect_uri = if login.redirect_uri.is_empty() {
        uri_for(r, &client.redirect_uri)
    } else {
        login.redirect_uri.clone()
    };
    let mut form = vec![
        ("grant_type".to_string(), "authorization_code".to_string()),
        ("code".to_string(), code),
        ("redirect_uri".to_string(), redirect_uri),
        ("code_verifier".to_string(), login.verifier.clone()),
    ];
    let auth = client_auth(client, Some(&meta), &mut form);
    let hook = test_hook(r);
    match with_worker(|w| w.submit(prov.index, "token", token_endpoint, Some(form), auth, hook)) {
        Some(Ok(job)) => park(
            r,
            prov.index,
            WaitFor::Job(job),
            CallbackStep::Token { login, job },
        ),
        Some(Err(e)) => fail(
            r,
            503,
            NGX_LOG_WARN,
            &e.to_string(),
            "the identity provider is unavailable",
            back(&login),
        ),
        None => fail(
            r,
            503,
            NGX_LOG_WARN,
            "no worker state",
            "the identity provider is unavailable",
            back(&login),
        ),
    }
}

/// What to check when an ID token is refused.
fn id_token_hint(why: Rejection) -> &'static str {
    match why {
        Rejection::BadAlgorithm => {
            " (its algorithm is not in oauth2_algorithms; HS256/HS512 ID tokens need it listed, the client secret is their key)"
        }
        Rejection::WrongIssuer => " (check oauth2_issuer: it must equal the token's \"iss\" exactly)",
        Rejection::WrongAudience => " (check oauth2_client_id)",
        Rejection::UnknownKey | Rejection::BadSignature => " (check the provider's signing keys and oauth2_algorithms)",
        Rejection::Expired | Rejection::NotYetValid | Rejection::IssuedInFuture => {
            " (check this host's clock, or oauth2_clock_skew)"
        }
        _ => "",
    }
}

fn finish_login(
    r: &mut Request,
    rt: &LocRuntime,
    sc: &SessionConf,
    login: Login,
    tokens: TokenResponse,
    refetched: bool,
) -> Step {
    let Some(prov) = login_prov(rt, &login) else {
        return Step::Done(500);
    };
    let Some(client) = prov.client.as_ref() else {
        return Step::Done(500);
    };
    let Some(id_token) = tokens.id_token.clone() else {
        let msg = "the token response has no id_token (is \"openid\" in oauth2_scope?)";
        return fail(
            r,
            502,
            NGX_LOG_ERR,
            msg,
            "the identity provider refused the login",
            back(&login),
        );
    };
    let t = now();
    let checked = with_worker(|w| {
        let p = &w.providers[prov.index];
        let who = login::IdTokenClient {
            issuer: &client.issuer,
            client_id: &client.client_id,
            nonce: &login.nonce,
            secret: client.client_secret.as_ref().map(|s| s.0.as_str()),
        };
        let res = p.with_key_sets(|sets| {
            login::validate_id_token(
                &id_token,
                sets,
                &who,
                &prov.policy.algorithms,
                prov.policy.skew_secs,
                t,
            )
        });
        let last_ok = p.last_ok;
        let userinfo = p
            .metadata
            .as_ref()
            .and_then(|m| m.userinfo_endpoint.clone());
        let res = match res {
            Err(Rejection::UnknownKey) => {
                match decide::unknown_kid(refetched, last_ok, || w.refetch(prov.index)) {
                    UnknownKid::WaitForRefetch => None,
                    UnknownKid::Unavailable => Some(Err(Rejection::ProviderUnavailable)),
                    UnknownKid::Reject => Some(Err(Rejection::UnknownKey)),
                }
            }
            other => Some(other),
        };
        (res, userinfo)
    });
    let (claims, userinfo_endpoint) = match checked {
        None => {
            return fail(
                r,
                503,
                NGX_LOG_WARN,
                "no worker state",
                "the identity provider is unavailable",
                back(&login),
            )
        }
        Some((None, _)) => {
            return park(
                r,
                prov.index,
                WaitFor::Refetch(prov.index),
                CallbackStep::Keys { login, tokens },
            )
        }
        Some((Some(Err(Rejection::ProviderUnavailable)), _)) => {
            let msg = "the ID token's signing key cannot be fetched";
            return fail(
                r,
                503,
                NGX_LOG_WARN,
                msg,
                "the identity provider is unavailable",
                back(&login),
            );
        }
        Some((Some(Err(e)), _)) => {
            let log = format!("ID token rejected: {}{}", e.code(), id_token_hint(e));
            return fail(
                r,
                401,
                NGX_LOG_ERR,
                &log,
                "the login could not be verified",
                back(&login),
            );
        }
        Some((Some(Ok(c)), u)) => (c, u),
    };
    if let (true, Some(url)) = (client.userinfo, userinfo_endpoint) {
        let auth = format!("Bearer {}", tokens.access_token);
        let hook = test_hook(r);
        match with_worker(|w| w.submit(prov.index, "UserInfo", url, None, Some(auth), hook)) {
            Some(Ok(job)) => {
                return park(
                    r,
                    prov.index,
                    WaitFor::Job(job),
                    CallbackStep::UserInfo {
                        login,
                        tokens,
                        claims,
                        job,
                    },
                )
            }
            Some(Err(e)) => {
                ngx_log_error!(
                    NGX_LOG_ERR,
                    r.log(),
                    "oauth2: callback: UserInfo failed: {}",
                    e
                );
            }
            None => {}
        }
    }
    complete(r, rt, sc, login, tokens, claims, None)
}

/// The login succeeded: the session cookie, and back where it started.
fn complete(
    r: &mut Request,
    rt: &LocRuntime,
    sc: &SessionConf,
    login: Login,
    tokens: TokenResponse,
    claims: Claims,
    userinfo: Option<ClaimMap>,
) -> Step {
    let Some(prov) = login_prov(rt, &login) else {
        return Step::Done(500);
    };
    let Some(client) = prov.client.as_ref() else {
        return Step::Done(500);
    };
    let t = now();
    // keep only what UserInfo adds (the ID token's claims win anyway): the
    // cookie stays small
    let userinfo: Option<ClaimMap> = userinfo
        .map(|u| {
            u.into_iter()
                .filter(|(k, _)| !claims.contains_key(k))
                .collect()
        })
        .filter(|u: &ClaimMap| !u.is_empty());
    let s = Session {
        claims: Arc::new(joined_claims(claims.map().clone(), userinfo.as_ref()).into()),
        access_token: tokens.access_token,
        access_exp: tokens.expires_in.map(|e| t + e).unwrap_or(0),
        refresh_token: tokens.refresh_token,
        id_token: tokens.id_token,
        scope: tokens.scope.or_else(|| Some(client.scope.clone())),
        created: t,
        userinfo,
        id: None,
    };
    let issued = issue_session(r, sc, &prov, &s, None);
    let target = if session::safe_return_path(&login.return_to) {
        login.return_to.clone()
    } else {
        "/".into()
    };
    match issued {
        Issued::Failed => {
            let msg = "the session could not be stored";
            fail(
                r,
                500,
                NGX_LOG_ERR,
                "cannot store the session",
                msg,
                back(&login),
            )
        }
        // the browser comes back at once, maybe to another nginx: the
        // record must be there first
        Issued::Sent(job) => park(
            r,
            prov.index,
            WaitFor::Job(job),
            CallbackStep::Stored { job, target },
        ),
        Issued::Done => {
            ngx_log_error!(NGX_LOG_INFO, r.log(), "oauth2: login completed");
            with_worker(|w| w.count(metrics::LOGINS_COMPLETED));
            Step::Done(r.redirect(&target))
        }
    }
}
