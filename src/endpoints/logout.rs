//! `oauth2_backchannel_logout` and `oauth2_frontchannel_logout` (SPEC §9):
//! the provider ends sessions in the store, so every worker (and, with a
//! shared store, every nginx) refuses them from then on.

use ngx::ffi::{ngx_http_request_t, ngx_int_t, NGX_DONE, NGX_HTTP_SPECIAL_RESPONSE, NGX_LOG_INFO};
use ngx::http::{HttpModuleLocationConf, Request};
use ngx::ngx_log_error;
use oauth2_core::logout::{self, LogoutError};
use oauth2_core::waits::{Check, JobId, WaitFor};
use oauth2_core::FetchError;
use oauth2_core::{jwt, metrics};

use crate::conf::{LocRuntime, Prov, SessionConf};
use crate::http::{finalize, request, RequestExt};
use crate::kv::StoreOp;
use crate::session::{
    clear_session, end_stored, now, open_session, sealed_session, session_id, store_answer,
    store_health,
};
use crate::store::{RedisStore, Store, Tables};
use crate::worker::{timed_out, with_worker, KeyState};
use crate::Module;

/// Logout tokens are small; a body larger than this is refused.
const MAX_BODY: usize = 64 * 1024;

fn runtime(r: &Request) -> Option<std::sync::Arc<LocRuntime>> {
    Module::location_conf(r)?.runtime.clone()
}

fn tables(sc: &SessionConf) -> Option<Tables> {
    match &sc.store {
        Store::Shm(z) => z.tables(),
        Store::Cookie | Store::Redis(_) => None,
    }
}

/// Ask Redis to end the sessions of a tag (after marking `once`), parking
/// the request until it answers: `PARKED`, or 503 when it cannot be asked.
fn redis_end(
    r: &mut Request,
    rs: &RedisStore,
    provider: usize,
    once: Option<(String, u64)>,
    set: String,
) -> ngx_int_t {
    let op = StoreOp::EndTagged {
        once,
        set,
        record_prefix: rs.record_prefix(),
    };
    let job = with_worker(|w| {
        let job = w.submit_store(rs.index, op).ok()?;
        w.park(r, provider, WaitFor::Job(job)).then_some(job)
    })
    .flatten();
    match job {
        Some(job) => {
            if let Some(c) = r.ctx_mut() {
                c.store_job = Some(job);
            }
            PARKED
        }
        None => store_unavailable(r, rs, None),
    }
}

fn store_unavailable(r: &mut Request, rs: &RedisStore, e: Option<&FetchError>) -> ngx_int_t {
    store_health(r, rs, false, e);
    r.push_header("Retry-After", "5");
    json_error(
        r,
        503,
        "temporarily_unavailable",
        "the session store is unavailable",
    )
}

/// The answer Redis gave to `redis_end`: how many sessions ended, or 409
/// (the `jti` was used before).
fn redis_ended(
    r: &mut Request,
    sc: &SessionConf,
    rs: &RedisStore,
    job: JobId,
) -> Result<usize, ngx_int_t> {
    match store_answer(r, sc, job) {
        Some((200, n)) => Ok(String::from_utf8_lossy(&n).parse().unwrap_or(0)),
        Some(_) => {
            ngx_log_error!(
                NGX_LOG_INFO,
                r.log(),
                "oauth2: back-channel logout refused: {}",
                LogoutError::Replayed
            );
            Err(json_error(
                r,
                400,
                "invalid_request",
                &LogoutError::Replayed.to_string(),
            ))
        }
        None => Err(store_unavailable(r, rs, None)),
    }
}

/// The location's provider (with a client) whose issuer is `iss`, exactly.
fn prov_of<'a>(rt: &'a LocRuntime, iss: &str) -> Option<&'a std::sync::Arc<Prov>> {
    rt.provs
        .iter()
        .find(|p| p.client.as_ref().is_some_and(|c| c.issuer == iss))
}

fn json_error(r: &mut Request, status: u16, error: &str, description: &str) -> ngx_int_t {
    let body = serde_json::json!({"error": error, "error_description": description}).to_string();
    r.send_body(status, "application/json", &body)
}

/// The content handler: POST only; reads the body, then answers from
/// `backchannel_body`.
pub fn backchannel(raw: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx passes a valid request to content handlers.
    let r = unsafe { request(raw) };
    if r.method() != ngx::http::Method::POST {
        r.push_header("Allow", "POST");
        return json_error(r, 405, "invalid_request", "use POST");
    }
    let rc = r.read_body(Some(backchannel_body));
    if rc >= NGX_HTTP_SPECIAL_RESPONSE as ngx_int_t {
        return rc;
    }
    NGX_DONE as ngx_int_t
}

/// The body is there (nginx holds a reference for it until `finalize`).
unsafe extern "C" fn backchannel_body(raw: *mut ngx_http_request_t) {
    crate::guard((), || {
        // SAFETY: nginx calls the body handler with the live request.
        let r = unsafe { request(raw) };
        match backchannel_answer(r) {
            Some(rc) => finalize(r, rc),
            None => r.resume_with(Some(backchannel_resume)),
        }
    })
}

/// The write handler of a request parked until the provider's keys are
/// there (or any other write event: then it waits on).
unsafe extern "C" fn backchannel_resume(raw: *mut ngx_http_request_t) {
    crate::guard((), || {
        // SAFETY: called by nginx (posted write event) with our live request.
        let r = unsafe { request(raw) };
        if let Some(rc) = backchannel_answer(r) {
            finalize(r, rc);
        }
    })
}

/// The answer, or `None` while the request waits for the provider's keys.
fn backchannel_answer(r: &mut Request) -> Option<ngx_int_t> {
    let check = with_worker(|w| w.check(r)).unwrap_or(Check::Fresh);
    if let Check::StillParked(_) = check {
        return None;
    }
    match backchannel_checked(r, timed_out(check)) {
        PARKED => None,
        rc => Some(rc),
    }
}

/// What `backchannel_checked` answers when it parked the request (nothing
/// it sends returns NGX_DONE).
const PARKED: ngx_int_t = NGX_DONE as ngx_int_t;

fn backchannel_checked(r: &mut Request, late: bool) -> ngx_int_t {
    let Some(rt) = runtime(r) else {
        return 500;
    };
    let Some(sc) = rt.session.as_ref() else {
        return 500;
    };
    // Redis answered (or its wait ran out)
    if let (Store::Redis(rs), Some(job)) = (&sc.store, r.ctx_mut().and_then(|c| c.store_job.take()))
    {
        if late {
            return store_unavailable(r, rs, None);
        }
        return match redis_ended(r, sc, rs, job) {
            Ok(n) => backchannel_done(r, n),
            Err(rc) => rc,
        };
    }
    let Some(body) = r.body(MAX_BODY) else {
        return json_error(r, 400, "invalid_request", "the request body is too large");
    };
    let tokens: Vec<String> = url::form_urlencoded::parse(&body)
        .filter(|(k, _)| k == "logout_token")
        .map(|(_, v)| v.into_owned())
        .collect();
    let [token] = tokens.as_slice() else {
        return json_error(
            r,
            400,
            "invalid_request",
            "exactly one logout_token parameter is expected",
        );
    };
    let t = now();
    let prov = jwt::peek_issuer(token).and_then(|iss| prov_of(&rt, &iss).cloned());
    let Some(prov) = prov else {
        ngx_log_error!(
            NGX_LOG_INFO,
            r.log(),
            "oauth2: back-channel logout: the token's issuer is not one of this location's providers"
        );
        return json_error(r, 400, "invalid_request", "unknown issuer");
    };
    let Some(client) = prov.client.as_ref() else {
        return 500;
    };
    let checked = with_worker(|w| {
        let p = &w.providers[prov.index];
        if !p.has_keys() {
            // a worker just started: wait for the keys (once)
            if p.state == KeyState::Loading && !late {
                return Err(w.park(r, prov.index, WaitFor::Provider(prov.index)));
            }
            return Err(false);
        }
        Ok(p.with_key_sets(|sets| {
            logout::validate_logout_token(
                token,
                sets,
                &client.issuer,
                &client.client_id,
                &prov.policy.algorithms,
                prov.policy.skew_secs,
                t,
            )
        }))
    })
    .unwrap_or(Err(false));
    let checked = match checked {
        Ok(c) => c,
        Err(true) => return PARKED,
        Err(false) => {
            r.push_header("Retry-After", "5");
            return json_error(
                r,
                503,
                "temporarily_unavailable",
                "the provider's keys are not available",
            );
        }
    };
    let lt = match checked {
        Ok(lt) => lt,
        Err(e) => {
            ngx_log_error!(
                NGX_LOG_INFO,
                r.log(),
                "oauth2: back-channel logout refused: {}",
                e
            );
            return json_error(r, 400, "invalid_request", &e.to_string());
        }
    };
    // the jti is used once, for as long as the token could be accepted
    let window = 2 * prov.policy.skew_secs + 60;
    let jti = logout::once_key("jti", &client.issuer, &lt.jti);
    let tag = match (&lt.sid, &lt.sub) {
        (Some(sid), _) => (0, "sid", logout::tag("sid", &client.issuer, sid)),
        (None, Some(sub)) => (1, "sub", logout::tag("sub", &client.issuer, sub)),
        (None, None) => return 500,
    };
    if let Store::Redis(rs) = &sc.store {
        let once = Some((rs.once_key("jti", &jti), window * 1000));
        return redis_end(r, rs, prov.index, once, rs.tag_key(tag.1, &tag.2));
    }
    let Some(tb) = tables(sc) else {
        return 500;
    };
    if !tb.marks.insert_new(&jti, t + window, t) {
        ngx_log_error!(
            NGX_LOG_INFO,
            r.log(),
            "oauth2: back-channel logout refused: {}",
            LogoutError::Replayed
        );
        return json_error(
            r,
            400,
            "invalid_request",
            &LogoutError::Replayed.to_string(),
        );
    }
    let ended = tb.sessions.remove_tagged(tag.0, tag.2);
    backchannel_done(r, ended)
}

fn backchannel_done(r: &mut Request, ended: usize) -> ngx_int_t {
    ngx_log_error!(
        NGX_LOG_INFO,
        r.log(),
        "oauth2: back-channel logout: {} session(s) ended",
        ended
    );
    with_worker(|w| w.count(metrics::LOGOUTS_BACKCHANNEL));
    r.send_body(200, "application/json", "")
}

/// `GET ?iss=…&sid=…` from the provider's logout page (an iframe): ends
/// the sessions of that `sid`; without parameters, the browser's own. The
/// content handler; with Redis it waits for the store's answer.
pub fn frontchannel(raw: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx passes a valid request to content handlers.
    let r = unsafe { request(raw) };
    match frontchannel_answer(r) {
        PARKED => {
            r.hold_for_resume(Some(frontchannel_resume));
            NGX_DONE as ngx_int_t
        }
        rc => rc,
    }
}

unsafe extern "C" fn frontchannel_resume(raw: *mut ngx_http_request_t) {
    crate::guard((), || {
        // SAFETY: called by nginx (posted write event) with our live request.
        let r = unsafe { request(raw) };
        match frontchannel_answer(r) {
            PARKED => {}
            rc => finalize(r, rc),
        }
    })
}

fn frontchannel_answer(r: &mut Request) -> ngx_int_t {
    let check = with_worker(|w| w.check(r)).unwrap_or(Check::Fresh);
    if let Check::StillParked(_) = check {
        return PARKED;
    }
    let Some(rt) = runtime(r) else {
        return 500;
    };
    let Some(sc) = rt.session.as_ref() else {
        return 500;
    };
    if let (Store::Redis(rs), Some(job)) = (&sc.store, r.ctx_mut().and_then(|c| c.store_job.take()))
    {
        if timed_out(check) {
            return store_unavailable(r, rs, None);
        }
        return match redis_ended(r, sc, rs, job) {
            Ok(n) => frontchannel_done(r, n),
            Err(rc) => rc,
        };
    }
    r.discard_body();
    let m = r.method();
    if m != ngx::http::Method::GET && m != ngx::http::Method::HEAD {
        r.push_header("Allow", "GET, HEAD");
        return r.send_page(405, "Method not allowed", None);
    }
    let args: Vec<(String, String)> = url::form_urlencoded::parse(r.args().as_bytes())
        .into_owned()
        .collect();
    let one = |name: &str| {
        let mut it = args.iter().filter(|(k, _)| k == name);
        match (it.next(), it.next()) {
            (Some((_, v)), None) => Ok(Some(v.clone())),
            (None, _) => Ok(None),
            _ => Err(()),
        }
    };
    let (Ok(iss), Ok(sid)) = (one("iss"), one("sid")) else {
        return r.send_page(400, "Invalid logout request", None);
    };
    // the browser's own session, if its cookie came along
    let sealed = sealed_session(r, sc).map(|c| c.into_owned());
    let own: Option<(Option<String>, [u8; 16], std::sync::Arc<Prov>)> =
        sealed.as_deref().and_then(|v| {
            rt.provs.iter().find_map(|p| match &sc.store {
                Store::Redis(_) => session_id(v, sc, p).map(|id| (None, id, p.clone())),
                _ => open_session(v, sc, p).and_then(|s| {
                    let sid = s
                        .claims
                        .get("sid")
                        .and_then(|x| x.as_str())
                        .map(str::to_string);
                    Some((sid, s.id?, p.clone()))
                }),
            })
        });
    match (iss, sid) {
        (Some(iss), Some(sid)) => {
            let Some(prov) = prov_of(&rt, &iss).cloned() else {
                ngx_log_error!(
                    NGX_LOG_INFO,
                    r.log(),
                    "oauth2: front-channel logout: \"iss\" is not one of this location's providers"
                );
                return r.send_page(400, "Invalid logout request", None);
            };
            let issuer = prov
                .client
                .as_ref()
                .map(|c| c.issuer.as_str())
                .unwrap_or("");
            let tag = logout::tag("sid", issuer, &sid);
            // the browser's cookie goes if its session was one of them (a
            // Redis session's sid is in its record: the cookie goes when the
            // browser's own record is among those the store ends, unknown
            // here, so only when it is the browser's provider)
            if let Some((own_sid, _, p)) = &own {
                let mine = match own_sid {
                    Some(s) => *s == sid,
                    None => p.index == prov.index,
                };
                if mine {
                    clear_session(r, sc, &r.cookies());
                }
            }
            if let Store::Redis(rs) = &sc.store {
                return redis_end(r, rs, prov.index, None, rs.tag_key("sid", &tag));
            }
            let Some(tb) = tables(sc) else {
                return 500;
            };
            let n = tb.sessions.remove_tagged(0, tag);
            frontchannel_done(r, n)
        }
        (None, None) => match own {
            Some((_, id, _)) => {
                match &sc.store {
                    Store::Redis(rs) => end_stored(rs, &id),
                    _ => {
                        if let Some(tb) = tables(sc) {
                            tb.sessions.take(&id, now());
                        }
                    }
                }
                clear_session(r, sc, &r.cookies());
                frontchannel_done(r, 1)
            }
            None => frontchannel_done(r, 0),
        },
        _ => r.send_page(400, "Invalid logout request: iss and sid go together", None),
    }
}

fn frontchannel_done(r: &mut Request, ended: usize) -> ngx_int_t {
    ngx_log_error!(
        NGX_LOG_INFO,
        r.log(),
        "oauth2: front-channel logout: {} session(s) ended",
        ended
    );
    with_worker(|w| w.count(metrics::LOGOUTS_FRONTCHANNEL));
    r.send_page(200, "Signed out", None)
}
