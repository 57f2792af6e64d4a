//! The browser login: the redirect to the provider, the `oauth2_callback`
//! and `oauth2_sign_out` content handlers, and the session cookie (open,
//! refresh, re-issue, strip from the upstream request).

use std::borrow::Cow;
use std::collections::HashMap;
use std::ptr;
use std::sync::Arc;

use ngx::core::Status;
use ngx::ffi::{
    ngx_http_discard_request_body, ngx_http_finalize_request, ngx_http_request_t, ngx_int_t,
    ngx_str_t, ngx_time, NGX_LOG_ERR, NGX_LOG_INFO, NGX_LOG_WARN,
};
use ngx::http::{HttpModuleLocationConf, Request};
use ngx::ngx_log_error;
use oauth2_core::keys::Metadata;
use oauth2_core::login::{self, ClientAuth};
use oauth2_core::session::{self, LoginState as Login, Purpose, Session};

use crate::access::{ctx_mut, push_header};
use crate::conf::{ClientConf, LocRuntime, SessionConf};
use crate::provider::{with_worker, KeyState};
use crate::Module;

/// State cookies older than this are refused (and expire in the browser).
const STATE_TTL: u64 = 600;
/// At most this many logins in progress per browser; the oldest go first.
const MAX_STATES: usize = 4;
/// A refreshed session is reused by requests carrying the old cookie for this long.
const REFRESH_REUSE: u64 = 60;

/// Per-worker state of the browser login.
#[derive(Default)]
pub struct LoginState {
    /// States already used at the callback (replay protection), until expiry.
    used_states: HashMap<String, u64>,
    /// Refreshes by a hash of the refresh token: in flight, or their outcome.
    refreshes: HashMap<String, Refresh>,
}

struct Refresh {
    job: Option<u64>,
    outcome: Option<Result<Session, RefreshError>>,
    at: u64,
}

/// Why a refresh failed: the provider could not be reached (the session is
/// kept, the request gets 503), or it refused (the session ends).
#[derive(Clone, Debug)]
pub struct RefreshError {
    transient: bool,
    msg: String,
}

/// Where a request is in the callback (kept in its ctx).
pub enum CallbackStep {
    /// Waiting for the provider metadata.
    Metadata,
    /// Waiting for the token endpoint.
    Token { login: Login, job: u64 },
    /// Waiting for a key refetch for the ID token.
    Keys { login: Login, tokens: login::TokenResponse },
}

fn now() -> u64 {
    ngx_time() as u64
}

// ---- small request helpers ---------------------------------------------

/// Every cookie of the request, in order.
pub fn request_cookies(r: &Request) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (k, v) in r.headers_in_iterator() {
        if k.as_bytes().eq_ignore_ascii_case(b"cookie") {
            if let Ok(v) = v.to_str() {
                out.extend(session::parse_cookies(v).map(|(a, b)| (a.to_string(), b.to_string())));
            }
        }
    }
    out
}

fn cookie<'a>(cookies: &'a [(String, String)], name: &str) -> Option<&'a str> {
    cookies.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn set_cookie(r: &mut Request, sc: &SessionConf, name: &str, value: &str, max_age: u64, lax: bool) {
    let mut v = format!("{name}={value}; Path={}", if lax { "/" } else { &sc.cookie_path });
    if let Some(d) = &sc.cookie_domain {
        v.push_str("; Domain=");
        v.push_str(d);
    }
    v.push_str(&format!("; Max-Age={max_age}; HttpOnly"));
    if sc.secure {
        v.push_str("; Secure");
    }
    v.push_str("; SameSite=");
    v.push_str(if lax && sc.samesite == "Strict" { "Lax" } else { sc.samesite });
    push_header(r, "Set-Cookie", &v);
}

fn delete_cookie(r: &mut Request, sc: &SessionConf, name: &str, lax: bool) {
    set_cookie(r, sc, name, "", 0, lax);
}

/// `scheme://host[:port]` of the request, from its Host header.
fn origin(r: &Request) -> String {
    let raw: *const ngx_http_request_t = r.into();
    // SAFETY: connection and headers_in of a live request; `host` is null or
    // one of its headers (nginx has validated it).
    let (ssl, host, server) = unsafe {
        let c = (*raw).connection;
        let h = (*raw).headers_in.host;
        (!(*c).ssl.is_null(), h.as_ref().map(|h| h.value), (*raw).headers_in.server)
    };
    let host = host
        .and_then(|h| h.to_str().ok().map(str::to_string))
        .filter(|h| !h.is_empty())
        .or_else(|| server.to_str().ok().map(str::to_string))
        .unwrap_or_else(|| "localhost".into());
    format!("{}://{}", if ssl { "https" } else { "http" }, host)
}

fn absolute(r: &Request, uri: &str) -> String {
    if uri.starts_with('/') {
        format!("{}{}", origin(r), uri)
    } else {
        uri.to_string()
    }
}

fn redirect(r: &mut Request, location: &str) -> ngx_int_t {
    let h = push_header(r, "Location", location);
    push_header(r, "Cache-Control", "no-store");
    let raw: *mut ngx_http_request_t = r.into();
    // SAFETY: h is null or a header element in the request pool.
    unsafe { (*raw).headers_out.location = h };
    302
}

fn html_escape(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '&' => "&amp;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&#39;".to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// A small HTML page with a status; the text is escaped.
fn send_page(r: &mut Request, status: u16, text: &str) -> ngx_int_t {
    let title = match status {
        400 => "400 Bad Request",
        401 => "401 Unauthorized",
        403 => "403 Forbidden",
        502 => "502 Bad Gateway",
        503 => "503 Service Unavailable",
        _ => "Error",
    };
    let body = format!(
        "<html>\n<head><title>{title}</title></head>\n<body>\n<center><h1>{title}</h1></center>\n<p>{}</p>\n</body>\n</html>\n",
        html_escape(text)
    );
    let raw: *mut ngx_http_request_t = r.into();
    // SAFETY: discarding the body of a live request in its content handler.
    unsafe { ngx_http_discard_request_body(raw) };
    push_header(r, "Cache-Control", "no-store");
    let ct = "text/html; charset=utf-8";
    // SAFETY: headers_out of a live request; the static str outlives it.
    unsafe {
        (*raw).headers_out.status = status as usize;
        (*raw).headers_out.content_type = ngx_str_t { len: ct.len(), data: ct.as_ptr() as *mut u8 };
        (*raw).headers_out.content_type_len = ct.len();
        (*raw).headers_out.content_length_n = body.len() as i64;
    }
    let rc = r.send_header();
    if rc == Status::NGX_ERROR || rc.0 > 0 || r.header_only() {
        return rc.0;
    }
    let Some(mut buf) = r.pool().create_buffer_from_str(&body) else { return Status::NGX_ERROR.0 };
    use ngx::core::Buffer;
    buf.set_last_buf(true);
    buf.set_last_in_chain(true);
    let mut chain = ngx::ffi::ngx_chain_t { buf: buf.as_ngx_buf_mut(), next: ptr::null_mut() };
    r.output_filter(&mut chain).0
}

// ---- sessions -------------------------------------------------------------

/// The session in a sealed cookie value, if it opens and is within its lifetime.
pub fn open_session(sealed: &str, sc: &SessionConf) -> Option<Session> {
    let raw = sc.keys.open(Purpose::Session, sealed)?;
    let s = Session::from_json(&raw)?;
    if now() >= s.created.saturating_add(sc.lifetime) {
        return None;
    }
    Some(s)
}

/// Seal a session into its cookie(s), removing chunks the browser has left over.
pub fn issue_session(r: &mut Request, sc: &SessionConf, s: &Session) -> bool {
    let json = match serde_json::to_vec(s) {
        Ok(j) => j,
        Err(_) => return false,
    };
    let sealed = sc.keys.seal(Purpose::Session, &json);
    let Some(parts) = session::split_chunks(&sc.cookie_name, &sealed) else {
        ngx_log_error!(
            NGX_LOG_ERR,
            r.log(),
            "oauth2: the session is too large for {} cookies ({} bytes)",
            session::MAX_CHUNKS,
            sealed.len()
        );
        return false;
    };
    let max_age = s.created.saturating_add(sc.lifetime).saturating_sub(now());
    let n = parts.len();
    for (name, value) in parts {
        set_cookie(r, sc, &name, &value, max_age, false);
    }
    let cookies = request_cookies(r);
    for i in n.max(1)..session::MAX_CHUNKS {
        let name = format!("{}_{}", sc.cookie_name, i);
        if cookie(&cookies, &name).is_some() {
            delete_cookie(r, sc, &name, false);
        }
    }
    true
}

/// Clear the session cookie and its chunks.
fn clear_session(r: &mut Request, sc: &SessionConf, cookies: &[(String, String)]) {
    delete_cookie(r, sc, &sc.cookie_name, false);
    for i in 1..session::MAX_CHUNKS {
        let name = format!("{}_{}", sc.cookie_name, i);
        if cookie(cookies, &name).is_some() {
            delete_cookie(r, sc, &name, false);
        }
    }
}

fn is_module_cookie(sc: &SessionConf, name: &[u8]) -> bool {
    name.strip_prefix(sc.cookie_name.as_bytes())
        .is_some_and(|rest| rest.is_empty() || rest[0] == b'_')
}

/// Remove the module's cookies from the `Cookie` header(s) sent upstream.
pub fn strip_cookies(r: &mut Request, sc: &SessionConf) {
    let raw: *mut ngx_http_request_t = r.into();
    let pool = r.pool();
    // SAFETY: walks the request's own header list; replaced values are
    // allocated in the request pool.
    unsafe {
        let mut part: *mut ngx::ffi::ngx_list_part_t = &mut (*raw).headers_in.headers.part;
        while !part.is_null() {
            let elts = (*part).elts as *mut ngx::ffi::ngx_table_elt_t;
            for i in 0..(*part).nelts {
                let h = &mut *elts.add(i);
                if !h.key.as_bytes().eq_ignore_ascii_case(b"cookie") {
                    continue;
                }
                if let Some(nv) = session::without_cookies(h.value.as_bytes(), |k| is_module_cookie(sc, k)) {
                    if let Some(s) = ngx_str_t::from_bytes(pool.as_ptr(), &nv) {
                        h.value = s;
                    }
                }
            }
            part = (*part).next;
        }
    }
}

/// What the access phase gets from the session cookie.
pub enum SessionOutcome {
    Valid(Arc<Session>),
    /// No session, or one that ended (its cookies are cleared).
    None,
    Wait,
    /// The refresh could not reach the provider: 503 with Retry-After.
    Unavailable,
}

/// When the session's access token is due for a refresh (the last quarter
/// of its lifetime, at most its last minute); `u64::MAX` when unknown.
fn refresh_due(s: &Session) -> u64 {
    if s.access_exp == 0 {
        return u64::MAX;
    }
    let issued = s.created.max(s.access_exp.saturating_sub(3600));
    let margin = ((s.access_exp.saturating_sub(issued)) / 4).min(60);
    s.access_exp - margin
}

/// The sealed session value of the request (its chunks joined), read from
/// the Cookie headers without copying the other cookies (nor the value, when
/// it fits in one cookie).
fn sealed_session<'a>(r: &'a Request, sc: &SessionConf) -> Option<Cow<'a, str>> {
    let cookie_headers = || {
        r.headers_in_iterator()
            .filter(|(k, _)| k.as_bytes().eq_ignore_ascii_case(b"cookie"))
            .map(|(_, v)| v.as_bytes())
    };
    // the common case: the first cookie of that name holds the whole value
    let name = sc.cookie_name.as_bytes();
    let first = cookie_headers()
        .find_map(|v| session::cookie_pairs(v).find(|(k, _)| *k == name).map(|(_, v)| v))?;
    let first = session::unquote(first);
    if first.starts_with(b"v1.") {
        return std::str::from_utf8(first).ok().map(Cow::Borrowed);
    }
    let mine: Vec<(&[u8], &str)> = cookie_headers()
        .flat_map(session::cookie_pairs)
        .filter(|(k, _)| is_module_cookie(sc, k))
        .filter_map(|(k, v)| Some((k, std::str::from_utf8(session::unquote(v)).ok()?)))
        .collect();
    session::join_chunks(&sc.cookie_name, |n| mine.iter().find(|(k, _)| *k == n.as_bytes()).map(|(_, v)| *v))
}

/// Open the session; refresh it when its access token is (nearly) expired.
/// Sessions already opened in this worker are reused until their access
/// token is due for a refresh or the session ends (matched on the whole
/// sealed value, so any other cookie opens afresh).
pub fn session_for_access(r: &mut Request, rt: &LocRuntime, sc: &SessionConf) -> SessionOutcome {
    let t = now();
    let sealed = sealed_session(r, sc);
    if let Some(v) = sealed.as_deref() {
        if let Some(s) = with_worker(|w| w.sessions.get(v, t)).flatten() {
            return SessionOutcome::Valid(s);
        }
    }
    let Some(s) = sealed.as_deref().and_then(|v| open_session(v, sc)) else {
        let cookies = request_cookies(r);
        if cookie(&cookies, &sc.cookie_name).is_some() {
            ngx_log_error!(NGX_LOG_INFO, r.log(), "oauth2: session cookie rejected");
            clear_session(r, sc, &cookies);
        }
        return SessionOutcome::None;
    };
    let s = Arc::new(s);
    if t < refresh_due(&s) {
        if let Some(v) = sealed.as_deref() {
            let until = refresh_due(&s).min(s.created.saturating_add(sc.lifetime));
            with_worker(|w| w.sessions.insert(v, s.clone(), until));
        }
        return SessionOutcome::Valid(s);
    }
    let can_refresh = sc.refresh && s.refresh_token.is_some() && sc.client.is_some();
    if !can_refresh {
        if t >= s.access_exp {
            clear_session(r, sc, &request_cookies(r));
            return SessionOutcome::None;
        }
        return SessionOutcome::Valid(s);
    }
    let client = sc.client.as_ref().expect("checked above");
    let key = session::short_hash(s.refresh_token.as_deref().unwrap_or(""));
    let raw: *mut ngx_http_request_t = r.into();
    let step = with_worker(|w| {
        // outcomes are reused for a minute; a refresh in flight longer than that is given up
        w.login.refreshes.retain(|_, e| e.at + REFRESH_REUSE > t);
        let entry = w.login.refreshes.get_mut(&key);
        match entry {
            Some(e) if e.outcome.is_some() => Ok(e.outcome.clone().expect("checked")),
            Some(e) => {
                let id = e.job.expect("in flight");
                if let Some(res) = w.job_results.remove(&id) {
                    let out = refreshed_session(&s, res, t);
                    e.job = None;
                    e.outcome = Some(out.clone());
                    e.at = t;
                    Ok(out)
                } else {
                    w.wait_job(id, raw);
                    Err(())
                }
            }
            None => {
                let p = &w.providers[rt.provider];
                if p.metadata.is_none() && p.state == KeyState::Loading {
                    // a worker just started: wait for the metadata first
                    w.wait(rt.provider, raw, false);
                    return Err(());
                }
                let Some(url) = p.metadata.as_ref().and_then(|m| m.token_endpoint.clone()) else {
                    return Ok(Err(RefreshError { transient: true, msg: "no provider metadata".into() }));
                };
                let mut form = vec![
                    ("grant_type".to_string(), "refresh_token".to_string()),
                    ("refresh_token".to_string(), s.refresh_token.clone().unwrap_or_default()),
                ];
                let auth = client_auth(client, p.metadata.as_ref(), &mut form);
                match w.submit(rt.provider, url, form, auth) {
                    Some(id) => {
                        w.login.refreshes.insert(key.clone(), Refresh { job: Some(id), outcome: None, at: t });
                        w.wait_job(id, raw);
                        Err(())
                    }
                    None => Ok(Err(RefreshError { transient: true, msg: "the fetcher is not running".into() })),
                }
            }
        }
    });
    match step {
        Some(Err(())) => {
            if let Some(ctx) = ctx_mut(r) {
                ctx.waiting = true;
            }
            SessionOutcome::Wait
        }
        Some(Ok(Ok(new))) => {
            issue_session(r, sc, &new);
            SessionOutcome::Valid(Arc::new(new))
        }
        Some(Ok(Err(e))) if e.transient && t < s.access_exp => {
            ngx_log_error!(NGX_LOG_WARN, r.log(), "oauth2: session refresh failed: {}, the access token is still valid", e.msg);
            SessionOutcome::Valid(s)
        }
        Some(Ok(Err(e))) if e.transient => {
            ngx_log_error!(NGX_LOG_WARN, r.log(), "oauth2: session refresh failed: {}", e.msg);
            SessionOutcome::Unavailable
        }
        Some(Ok(Err(e))) => {
            ngx_log_error!(NGX_LOG_WARN, r.log(), "oauth2: session refresh failed: {}, the session ends", e.msg);
            clear_session(r, sc, &request_cookies(r));
            SessionOutcome::None
        }
        None => SessionOutcome::None,
    }
}

/// The session after a refresh: new tokens, the same identity.
fn refreshed_session(
    old: &Session,
    res: crate::provider::JobResult,
    t: u64,
) -> Result<Session, RefreshError> {
    let (status, body) = res.map_err(|msg| RefreshError { transient: true, msg })?;
    let tokens = login::parse_token_response(status, &body)
        .map_err(|msg| RefreshError { transient: status >= 500, msg })?;
    Ok(Session {
        claims: old.claims.clone(),
        access_token: tokens.access_token,
        access_exp: tokens.expires_in.map(|e| t + e).unwrap_or(0),
        refresh_token: tokens.refresh_token.or_else(|| old.refresh_token.clone()),
        // the identity stays the one validated at login
        id_token: old.id_token.clone(),
        scope: tokens.scope.or_else(|| old.scope.clone()),
        created: old.created,
    })
}

/// Client authentication at the token endpoint: the Basic header, or the
/// credentials in the form when the provider allows only that.
fn client_auth(
    client: &ClientConf,
    metadata: Option<&Metadata>,
    form: &mut Vec<(String, String)>,
) -> Option<String> {
    let supported = metadata.map(|m| m.token_endpoint_auth_methods_supported.as_slice()).unwrap_or(&[]);
    match &client.client_secret {
        Some(secret) => match ClientAuth::choose(supported) {
            ClientAuth::Basic => Some(login::basic_credentials(&client.client_id, &secret.0)),
            ClientAuth::Post => {
                form.push(("client_id".into(), client.client_id.clone()));
                form.push(("client_secret".into(), secret.0.to_string()));
                None
            }
        },
        None => {
            form.push(("client_id".into(), client.client_id.clone()));
            None
        }
    }
}

/// Start the browser login: a state cookie and a 302 to the provider.
/// Returns the status for the access phase (302, 503), or NGX_AGAIN when
/// the provider metadata is still loading.
pub fn start_login(r: &mut Request, rt: &LocRuntime, sc: &SessionConf) -> ngx_int_t {
    let Some(client) = sc.client.as_ref() else { return 401 };
    let raw: *mut ngx_http_request_t = r.into();
    let endpoint = with_worker(|w| {
        let p = &w.providers[rt.provider];
        match (&p.metadata, p.state) {
            (Some(m), _) => Ok(m.authorization_endpoint.clone()),
            (None, KeyState::Loading) => {
                w.wait(rt.provider, raw, false);
                Err(None)
            }
            (None, _) => Err(Some(p.retry_in)),
        }
    })
    .unwrap_or(Err(Some(5)));
    let endpoint = match endpoint {
        Ok(Some(e)) => e,
        Ok(None) => {
            ngx_log_error!(NGX_LOG_ERR, r.log(), "oauth2: the provider metadata has no authorization_endpoint");
            return 503;
        }
        Err(None) => {
            if let Some(ctx) = ctx_mut(r) {
                ctx.waiting = true;
            }
            return Status::NGX_AGAIN.0;
        }
        Err(Some(retry)) => {
            push_header(r, "Retry-After", &retry.to_string());
            return 503;
        }
    };
    let uri = r.unparsed_uri().to_str().unwrap_or("/").to_string();
    let return_to = if session::safe_return_path(&uri) { uri } else { "/".to_string() };
    let login = Login {
        state: session::random_token(32),
        nonce: session::random_token(32),
        verifier: session::random_token(32),
        return_to,
        created: now(),
    };
    let redirect_uri = absolute(r, &client.redirect_uri);
    let url = match login::authorization_url(
        &endpoint,
        &client.client_id,
        &redirect_uri,
        &client.scope,
        &login.state,
        &login.nonce,
        &session::pkce_challenge(&login.verifier),
    ) {
        Ok(u) => u,
        Err(e) => {
            ngx_log_error!(NGX_LOG_ERR, r.log(), "oauth2: {}", e);
            return 503;
        }
    };
    // keep at most MAX_STATES logins in progress: evict the oldest
    let prefix = format!("{}_st_", sc.cookie_name);
    let cookies = request_cookies(r);
    let mut states: Vec<(u64, String)> = cookies
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .map(|(k, v)| {
            let created = sc
                .keys
                .open(Purpose::State, v)
                .and_then(|b| serde_json::from_slice::<Login>(&b).ok())
                .map(|l| l.created)
                .unwrap_or(0);
            (created, k.clone())
        })
        .collect();
    states.sort();
    while states.len() >= MAX_STATES {
        let (_, name) = states.remove(0);
        delete_cookie(r, sc, &name, true);
    }
    let sealed = sc.keys.seal(Purpose::State, &serde_json::to_vec(&login).unwrap_or_default());
    let name = format!("{prefix}{}", &session::short_hash(&login.state)[..8]);
    set_cookie(r, sc, &name, &sealed, STATE_TTL, true);
    ngx_log_error!(NGX_LOG_INFO, r.log(), "oauth2: redirecting to the provider for login");
    redirect(r, &url)
}

// ---- oauth2_callback -------------------------------------------------------

enum Step {
    Done(ngx_int_t),
    Wait,
}

pub extern "C" fn callback_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    crate::guard(500, || {
        // SAFETY: nginx passes a valid request to content handlers.
        let req = unsafe { Request::from_ngx_http_request(r) };
        match callback(req) {
            Step::Done(rc) => rc,
            Step::Wait => {
                // SAFETY: a live main request; the extra reference keeps it
                // until callback_resume finalizes it.
                unsafe {
                    (*(*r).main).set_count((*(*r).main).count() + 1);
                    (*r).write_event_handler = Some(callback_resume);
                }
                Status::NGX_DONE.0
            }
        }
    })
}

unsafe extern "C" fn callback_resume(r: *mut ngx_http_request_t) {
    crate::guard((), || {
        // SAFETY: called by nginx (posted write event) with our live request.
        let req = unsafe { Request::from_ngx_http_request(r) };
        match callback(req) {
            Step::Wait => {}
            Step::Done(rc) => {
                // SAFETY: finalizes the request we kept with count + 1.
                unsafe { ngx_http_finalize_request(r, rc) };
            }
        }
    })
}

fn fail(r: &mut Request, status: u16, log: &str, page: &str) -> Step {
    ngx_log_error!(NGX_LOG_INFO, r.log(), "oauth2: callback: {}", log);
    Step::Done(send_page(r, status, page))
}

fn callback(r: &mut Request) -> Step {
    let Some(lc) = Module::location_conf(r) else { return Step::Done(500) };
    let Some(rt) = lc.runtime.clone() else { return Step::Done(500) };
    let Some(sc) = rt.session.as_ref() else { return Step::Done(500) };
    let Some(client) = sc.client.as_ref() else { return Step::Done(500) };
    let raw: *mut ngx_http_request_t = r.into();
    let Some(ctx) = ctx_mut(r) else { return Step::Done(500) };
    ctx.waiting = false;
    match ctx.callback.take() {
        None | Some(CallbackStep::Metadata) => callback_start(r, &rt, sc, client, raw),
        Some(CallbackStep::Token { login, job }) => {
            let res = with_worker(|w| w.job_results.remove(&job)).flatten();
            match res {
                None => {
                    with_worker(|w| w.wait_job(job, raw));
                    park(r, CallbackStep::Token { login, job })
                }
                Some(Err(e)) => fail(r, 502, &e, "the identity provider could not be reached"),
                Some(Ok((status, body))) => match login::parse_token_response(status, &body) {
                    Err(e) => fail(r, 502, &e, "the identity provider refused the login"),
                    Ok(tokens) => finish_login(r, &rt, sc, client, login, tokens, false),
                },
            }
        }
        Some(CallbackStep::Keys { login, tokens }) => finish_login(r, &rt, sc, client, login, tokens, true),
    }
}

fn park(r: &mut Request, step: CallbackStep) -> Step {
    if let Some(ctx) = ctx_mut(r) {
        ctx.callback = Some(step);
        ctx.waiting = true;
    }
    Step::Wait
}

fn callback_start(
    r: &mut Request,
    rt: &LocRuntime,
    sc: &SessionConf,
    client: &ClientConf,
    raw: *mut ngx_http_request_t,
) -> Step {
    // SAFETY: args of a live request.
    let args = unsafe { (*raw).args };
    let query = args.to_str().unwrap_or("").to_string();
    let p = login::parse_callback(&query);
    if p.duplicate {
        return fail(r, 400, "a parameter is repeated", "invalid login response");
    }
    if let Some(err) = &p.error {
        let code = login::clean_error_code(err);
        let status = if code == "access_denied" { 403 } else { 401 };
        return fail(r, status, &format!("the provider answered error \"{code}\""), &format!("login failed: {code}"));
    }
    let (Some(code), Some(state)) = (p.code, p.state) else {
        return fail(r, 400, "no code or state", "invalid login response");
    };
    let cookies = request_cookies(r);
    let name = format!("{}_st_{}", sc.cookie_name, &session::short_hash(&state)[..8]);
    let login: Option<Login> = cookie(&cookies, &name)
        .and_then(|v| sc.keys.open(Purpose::State, v))
        .and_then(|b| serde_json::from_slice(&b).ok());
    let Some(login) = login else {
        return fail(r, 400, "no valid state cookie for this state", "invalid or expired login state");
    };
    let t = now();
    if !session::ct_eq(login.state.as_bytes(), state.as_bytes()) || t > login.created + STATE_TTL {
        return fail(r, 400, "state mismatch or expired", "invalid or expired login state");
    }
    // metadata (token endpoint) needed
    let meta = with_worker(|w| {
        let p = &w.providers[rt.provider];
        match (&p.metadata, p.state) {
            (Some(m), _) => Ok(Some(m.clone())),
            (None, KeyState::Loading) => {
                w.wait(rt.provider, raw, false);
                Ok(None)
            }
            (None, _) => Err(()),
        }
    });
    let meta = match meta {
        Some(Ok(Some(m))) => m,
        Some(Ok(None)) => return park(r, CallbackStep::Metadata),
        _ => return fail(r, 503, "the provider metadata is not available", "the identity provider is unavailable"),
    };
    let Some(token_endpoint) = meta.token_endpoint.clone() else {
        return fail(r, 503, "the provider metadata has no token_endpoint", "the identity provider is unavailable");
    };
    // the state is used once: replays in this worker are refused
    let replay = with_worker(|w| {
        w.login.used_states.retain(|_, exp| *exp > t);
        w.login.used_states.insert(session::short_hash(&state), t + STATE_TTL).is_some()
    })
    .unwrap_or(true);
    delete_cookie(r, sc, &name, true);
    if replay {
        return fail(r, 400, "the state was already used", "invalid or expired login state");
    }
    let mut form = vec![
        ("grant_type".to_string(), "authorization_code".to_string()),
        ("code".to_string(), code),
        ("redirect_uri".to_string(), absolute(r, &client.redirect_uri)),
        ("code_verifier".to_string(), login.verifier.clone()),
    ];
    let auth = client_auth(client, Some(&meta), &mut form);
    match with_worker(|w| w.submit(rt.provider, token_endpoint, form, auth)).flatten() {
        Some(job) => {
            with_worker(|w| w.wait_job(job, raw));
            park(r, CallbackStep::Token { login, job })
        }
        None => fail(r, 503, "the fetcher is not running", "the identity provider is unavailable"),
    }
}

fn finish_login(
    r: &mut Request,
    rt: &LocRuntime,
    sc: &SessionConf,
    client: &ClientConf,
    login: Login,
    tokens: login::TokenResponse,
    refetched: bool,
) -> Step {
    let Some(id_token) = tokens.id_token.clone() else {
        return fail(r, 502, "the token response has no id_token", "the identity provider refused the login");
    };
    let t = now();
    let raw: *mut ngx_http_request_t = r.into();
    let checked = with_worker(|w| {
        let p = &mut w.providers[rt.provider];
        let sets = p.key_sets();
        let refs: Vec<_> = sets.iter().map(|s| &**s).collect();
        let res = login::validate_id_token(
            &id_token,
            &refs,
            &client.issuer,
            &client.client_id,
            &rt.policy.algorithms,
            &login.nonce,
            rt.policy.skew_secs,
            t,
        );
        match res {
            Err(oauth2_core::Rejection::UnknownKey) if !refetched && p.request_refetch() => {
                w.wait(rt.provider, raw, true);
                None
            }
            other => Some(other),
        }
    });
    let claims = match checked {
        None => return park(r, CallbackStep::Keys { login, tokens }),
        Some(None) => return fail(r, 503, "no worker state", "the identity provider is unavailable"),
        Some(Some(Err(e))) => {
            return fail(r, 401, &format!("ID token rejected: {}", e.code()), "the login could not be verified")
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
        return fail(r, 500, "cannot store the session", "the session could not be stored");
    }
    ngx_log_error!(NGX_LOG_INFO, r.log(), "oauth2: login completed");
    let target = if session::safe_return_path(&login.return_to) { login.return_to } else { "/".into() };
    Step::Done(redirect(r, &target))
}

// ---- oauth2_sign_out -------------------------------------------------------

pub extern "C" fn sign_out_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    crate::guard(500, || {
        // SAFETY: nginx passes a valid request to content handlers.
        let req = unsafe { Request::from_ngx_http_request(r) };
        sign_out(req)
    })
}

fn sign_out(r: &mut Request) -> ngx_int_t {
    let Some(lc) = Module::location_conf(r) else { return 500 };
    let Some(rt) = lc.runtime.clone() else { return 500 };
    let Some(sc) = rt.session.as_ref() else { return 500 };
    let raw: *mut ngx_http_request_t = r.into();
    // SAFETY: discarding the body of a live request in its content handler.
    unsafe { ngx_http_discard_request_body(raw) };
    let s = sealed_session(r, sc).and_then(|v| open_session(&v, sc));
    let cookies = request_cookies(r);
    clear_session(r, sc, &cookies);
    let prefix = format!("{}_st_", sc.cookie_name);
    for (k, _) in cookies.iter().filter(|(k, _)| k.starts_with(&prefix)) {
        delete_cookie(r, sc, k, true);
    }
    ngx_log_error!(NGX_LOG_INFO, r.log(), "oauth2: signed out");
    let end_session = with_worker(|w| {
        w.providers[rt.provider].metadata.as_ref().and_then(|m| m.end_session_endpoint.clone())
    })
    .flatten();
    if let (Some(ep), Some(client)) = (end_session, sc.client.as_ref()) {
        if let Ok(mut u) = url::Url::parse(&ep) {
            let post = absolute(r, client.post_logout_redirect_uri.as_deref().unwrap_or("/"));
            {
                let mut q = u.query_pairs_mut();
                if let Some(h) = s.as_ref().and_then(|s| s.id_token.as_deref()) {
                    q.append_pair("id_token_hint", h);
                }
                q.append_pair("post_logout_redirect_uri", &post);
                q.append_pair("client_id", &client.client_id);
            }
            return redirect(r, u.as_str());
        }
    }
    // SAFETY: args of a live request.
    let args = unsafe { (*raw).args };
    let rd = url::form_urlencoded::parse(args.as_bytes())
        .find(|(k, _)| k == "rd")
        .map(|(_, v)| v.into_owned())
        .filter(|v| session::safe_return_path(v))
        .unwrap_or_else(|| "/".to_string());
    redirect(r, &rd)
}
