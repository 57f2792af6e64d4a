//! Request-side helpers: the module's per-request ctx, headers in and out,
//! cookies, small pages, and what a parked request needs from nginx (pool
//! cleanup, noticing a client that goes away, the resume). Every `unsafe`
//! touching a request lives here, behind the [`RequestExt`] trait, so the
//! handlers above read as plain Rust.

use std::ffi::c_void;
use std::ptr;
use std::sync::Arc;

use ngx::core::Status;
use ngx::ffi::{
    ngx_chain_t, ngx_http_block_reading, ngx_http_client_body_handler_pt,
    ngx_http_discard_request_body, ngx_http_event_handler_pt, ngx_http_finalize_request,
    ngx_http_read_client_request_body, ngx_http_request_t, ngx_http_send_special,
    ngx_http_test_reading, ngx_int_t, ngx_list_part_t, ngx_list_push, ngx_pool_cleanup_add,
    ngx_pool_cleanup_pt, ngx_post_event, ngx_posted_events, ngx_ssl_get_raw_certificate, ngx_str_t,
    ngx_table_elt_t, ngx_uint_t, NGX_HTTP_LAST,
};
use ngx::http::Request;
use oauth2_core::jwt::Claims;
use oauth2_core::login::CallbackStep;
use oauth2_core::session::{self, Session};
use oauth2_core::Rejection;

/// The raw request pointer: the key of a parked request.
pub type RawRequest = *mut ngx_http_request_t;

/// At most this many `Cookie` headers are restored after an internal
/// redirect (HTTP/1.1 sends one, nginx joins HTTP/2's into one).
const KEPT_COOKIE_HEADERS: usize = 4;

/// Per-request state, kept in the request pool (dropped with it). It
/// survives an internal redirect (nginx clears the module ctx slots then; it
/// is found again in the pool, as nginx's realip module finds its own).
#[derive(Default)]
pub struct Ctx {
    /// `Cookie` headers whose module cookies were removed for the upstream,
    /// with their values as they came: put back when the access phase runs
    /// again after an internal redirect (`index`, `try_files`,
    /// `error_page`), so the session is seen there too.
    stripped: [Option<(*mut ngx_table_elt_t, ngx_str_t)>; KEPT_COOKIE_HEADERS],
    /// `bearer`, `cookie`, or empty (`$oauth2_auth_method`).
    pub method: &'static str,
    /// The provider that authenticated it (`$oauth2_provider`; empty for
    /// the flat directives' provider).
    pub provider: &'static str,
    /// The worker state of the provider that decided (the status figures).
    pub prov_index: Option<usize>,
    pub claims: Option<Arc<Claims>>,
    pub token: Option<Token>,
    /// Why the request is not authenticated (`$oauth2_error`).
    pub error: Option<Rejection>,
    /// Authenticated but refused by a rule (`$oauth2_error`).
    pub denied: Option<&'static str>,
    /// A key refetch was already asked for this request.
    pub refetched: bool,
    /// Where an `oauth2_callback` request is.
    pub callback: Option<CallbackStep>,
    /// A session store operation this request waits for (its record, a
    /// logout), by job id.
    pub store_job: Option<oauth2_core::waits::JobId>,
}

/// The access token of an authenticated request, not copied: the request's
/// own `Authorization` header value (in the request's memory, which outlives
/// the ctx: both go with the request pool), or the session it came with.
pub enum Token {
    Header(&'static [u8]),
    Session(Arc<Session>),
}

impl Ctx {
    pub fn token(&self) -> Option<&str> {
        match self.token.as_ref()? {
            Token::Header(b) => std::str::from_utf8(b).ok(),
            Token::Session(s) => Some(&s.access_token),
        }
    }
}

/// What the module does with an nginx request.
pub trait RequestExt {
    fn raw(&self) -> RawRequest;
    /// Reached by an internal redirect?
    fn is_internal(&self) -> bool;
    /// The module's ctx, to read (variables).
    fn ctx(&self) -> Option<&Ctx>;
    /// The module's ctx, made on first use.
    fn ctx_mut(&mut self) -> Option<&mut Ctx>;
    /// The `Authorization` header's value, in the request's own memory.
    fn authorization(&self) -> Option<&'static [u8]>;
    /// The first request header of that name (case-insensitive).
    fn header_in(&self, name: &str) -> Option<&str>;
    /// Every request header of that name (a `DPoP` proof must come once).
    fn header_values(&self, name: &str) -> Vec<&str>;
    /// The PEM of the TLS client certificate, when the connection has one
    /// (`ssl_verify_client on | optional | optional_no_ca`).
    fn client_certificate(&self) -> Option<String>;
    /// The values of the `Cookie` headers, as sent.
    fn cookie_headers(&self) -> impl Iterator<Item = &[u8]>;
    /// Every cookie of the request, in order.
    fn cookies(&self) -> Vec<(String, String)>;
    /// Replace each `Cookie` header's value where `f` gives a new one,
    /// keeping the value as it came (see `restore_cookie_headers`).
    fn rewrite_cookie_headers(&mut self, f: impl Fn(&[u8]) -> Option<Vec<u8>>);
    /// After an internal redirect: the `Cookie` headers as the client sent
    /// them (before `rewrite_cookie_headers`).
    fn restore_cookie_headers(&mut self);
    /// Add a response header (value copied into the request pool).
    fn push_header(&mut self, key: &'static str, value: &str) -> *mut ngx_table_elt_t;
    fn set_www_authenticate(&mut self, challenge: &str);
    /// A `302` to `location` (not cached); returns the status.
    fn redirect(&mut self, location: &str) -> ngx_int_t;
    /// `scheme://host[:port]` of the request, from its Host header.
    fn origin(&self) -> String;
    /// A path made absolute on the request's origin; URLs as they are.
    fn absolute(&self, uri: &str) -> String;
    /// The query string.
    fn args(&self) -> &str;
    /// A small HTML page with a status, from a content handler; the text is
    /// escaped; `link`: a same-origin path to go on to ("Continue").
    fn send_page(&mut self, status: u16, text: &str, link: Option<&str>) -> ngx_int_t;
    /// A whole response from a content handler: status, type, body (not cached).
    fn send_body(&mut self, status: u16, content_type: &'static str, body: &str) -> ngx_int_t;
    fn discard_body(&mut self);
    /// Call `cleanup(data)` when the request's pool goes.
    fn on_pool_cleanup(&mut self, cleanup: ngx_pool_cleanup_pt, data: *mut c_void) -> bool;
    /// While parked: finalize the request (499) if the client goes away.
    fn watch_client_close(&mut self);
    /// Woken: stop watching; reading is blocked again, as in any phase.
    fn stop_watching_client(&mut self);
    /// A content handler that waits: keep the request (one more reference)
    /// and run `resume` when its write event is posted.
    fn hold_for_resume(&mut self, resume: ngx_http_event_handler_pt);

    /// `hold_for_resume` for a request that already holds a reference (a
    /// body handler's: nginx took one for the body read).
    fn resume_with(&mut self, resume: ngx_http_event_handler_pt);

    /// Start reading the request body; `done` runs when it is all there
    /// (nginx's return code: NGX_AGAIN while it reads, or an error status).
    fn read_body(&mut self, done: ngx_http_client_body_handler_pt) -> ngx_int_t;

    /// The body read by `read_body`, when it is in memory and at most
    /// `max` bytes (a body nginx wrote to a file is too large for us).
    fn body(&self, max: usize) -> Option<Vec<u8>>;
}

fn ctx_slot(r: &Request) -> *mut *mut c_void {
    let raw: *const ngx_http_request_t = r.into();
    // SAFETY: r is a live request; its ctx array has ctx_max_index slots and
    // this module's slot only ever holds a `Ctx` made by `ctx_mut` (or null).
    unsafe { (*raw).ctx.add(crate::module().ctx_index) }
}

// pool allocations are aligned to 8 bytes (NGX_ALIGNMENT)
const _: () = assert!(std::mem::align_of::<Ctx>() <= 8);

/// Drops the Ctx that lives in a pool cleanup's data.
unsafe extern "C" fn drop_ctx(data: *mut c_void) {
    // SAFETY: data is the Ctx `ctx_mut` wrote there; the pool runs each
    // cleanup once.
    unsafe { ptr::drop_in_place(data as *mut Ctx) }
}

/// The request's Ctx: its ctx slot, or, after an internal redirect cleared
/// the slot, the Ctx still in the request pool (put back in the slot).
fn find_ctx(r: &Request) -> *mut Ctx {
    let slot = ctx_slot(r);
    // SAFETY: see ctx_slot.
    let p = unsafe { *slot } as *mut Ctx;
    if !p.is_null() {
        return p;
    }
    let raw = r.raw();
    // SAFETY: a live request; its pool's cleanup list is nginx's, each entry
    // valid while the pool lives; an entry whose handler is drop_ctx holds
    // this request's Ctx (one per request pool).
    unsafe {
        if (*raw).internal() == 0 {
            return ptr::null_mut();
        }
        let mut c = (*(*raw).pool).cleanup;
        while !c.is_null() {
            // one handler, one module: its address identifies our entry
            let ours = (*c).handler.is_some_and(|h| {
                std::ptr::fn_addr_eq(h, drop_ctx as unsafe extern "C" fn(*mut c_void))
            });
            if ours {
                *slot = (*c).data;
                return (*c).data as *mut Ctx;
            }
            c = (*c).next;
        }
    }
    ptr::null_mut()
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

impl RequestExt for Request {
    fn raw(&self) -> RawRequest {
        let raw: *const ngx_http_request_t = self.into();
        raw as RawRequest
    }

    fn is_internal(&self) -> bool {
        // SAFETY: a flag of a live request.
        unsafe { (*self.raw()).internal() != 0 }
    }

    fn ctx(&self) -> Option<&Ctx> {
        // SAFETY: null or a Ctx in the request pool, alive as long as the request.
        unsafe { find_ctx(self).as_ref() }
    }

    fn ctx_mut(&mut self) -> Option<&mut Ctx> {
        let mut p = find_ctx(self);
        if p.is_null() {
            // SAFETY: the Ctx lives in the data of a pool cleanup that drops
            // it when the pool goes (8-byte aligned, checked above).
            unsafe {
                let c = ngx_pool_cleanup_add((*self.raw()).pool, std::mem::size_of::<Ctx>());
                if c.is_null() {
                    return None;
                }
                p = (*c).data as *mut Ctx;
                ptr::write(p, Ctx::default());
                (*c).handler = Some(drop_ctx);
                *ctx_slot(self) = p.cast();
            }
        }
        // SAFETY: as in ctx; exclusive through the caller's &mut Request.
        unsafe { p.as_mut() }
    }

    fn authorization(&self) -> Option<&'static [u8]> {
        // SAFETY: headers_in.authorization is null or a header element of
        // this request, valid for the request's lifetime; the slice is kept
        // only by the request's ctx, which is dropped with the request pool.
        unsafe {
            (*self.raw())
                .headers_in
                .authorization
                .as_ref()
                .map(|h| h.value.as_bytes())
        }
    }

    fn header_in(&self, name: &str) -> Option<&str> {
        self.headers_in_iterator()
            .find(|(k, _)| k.as_bytes().eq_ignore_ascii_case(name.as_bytes()))
            .and_then(|(_, v)| v.to_str().ok())
    }

    fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers_in_iterator()
            .filter(|(k, _)| k.as_bytes().eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.to_str().unwrap_or(""))
            .collect()
    }

    fn client_certificate(&self) -> Option<String> {
        let raw = self.raw();
        let mut s = ngx_str_t {
            len: 0,
            data: ptr::null_mut(),
        };
        // SAFETY: a live request; nginx reads the connection's peer
        // certificate (if any) into a string of the request pool.
        unsafe {
            let c = (*raw).connection;
            if (*c).ssl.is_null() {
                return None;
            }
            if ngx_ssl_get_raw_certificate(c, (*raw).pool, &mut s) != 0 || s.len == 0 {
                return None;
            }
        }
        s.to_str().ok().map(str::to_string)
    }

    fn cookie_headers(&self) -> impl Iterator<Item = &[u8]> {
        self.headers_in_iterator()
            .filter(|(k, _)| k.as_bytes().eq_ignore_ascii_case(b"cookie"))
            .map(|(_, v)| v.as_bytes())
    }

    fn cookies(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for v in self.cookie_headers() {
            if let Ok(v) = std::str::from_utf8(v) {
                out.extend(session::parse_cookies(v).map(|(a, b)| (a.to_string(), b.to_string())));
            }
        }
        out
    }

    fn restore_cookie_headers(&mut self) {
        let Some(ctx) = self.ctx_mut() else { return };
        for kept in ctx.stripped.iter_mut() {
            if let Some((h, v)) = kept.take() {
                // SAFETY: h is a header element of this request (its list
                // lives as long as the request); v its value as it came.
                unsafe { (*h).value = v };
            }
        }
    }

    fn rewrite_cookie_headers(&mut self, f: impl Fn(&[u8]) -> Option<Vec<u8>>) {
        let raw = self.raw();
        let pool = self.pool();
        let mut kept: [Option<(*mut ngx_table_elt_t, ngx_str_t)>; KEPT_COOKIE_HEADERS] =
            Default::default();
        let mut n = 0;
        // SAFETY: walks the request's own header list; replaced values are
        // allocated in the request pool, which outlives the headers' use.
        unsafe {
            let mut part: *mut ngx_list_part_t = &mut (*raw).headers_in.headers.part;
            while !part.is_null() {
                let elts = (*part).elts as *mut ngx_table_elt_t;
                for i in 0..(*part).nelts {
                    let h = &mut *elts.add(i);
                    if !h.key.as_bytes().eq_ignore_ascii_case(b"cookie") {
                        continue;
                    }
                    if let Some(nv) = f(h.value.as_bytes()) {
                        if let Some(s) = ngx_str_t::from_bytes(pool.as_ptr(), &nv) {
                            if n < KEPT_COOKIE_HEADERS {
                                kept[n] = Some((h as *mut ngx_table_elt_t, h.value));
                                n += 1;
                            }
                            h.value = s;
                        }
                    }
                }
                part = (*part).next;
            }
        }
        if n > 0 {
            if let Some(ctx) = self.ctx_mut() {
                ctx.stripped = kept;
            }
        }
    }

    fn push_header(&mut self, key: &'static str, value: &str) -> *mut ngx_table_elt_t {
        let raw = self.raw();
        let pool = self.pool();
        // SAFETY: headers_out.headers is the request's initialised header
        // list; the element and the value copy live in the request pool.
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
            (*h).key = ngx_str_t {
                len: key.len(),
                data: key.as_ptr() as *mut u8,
            };
            (*h).value = v;
            (*h).lowcase_key = ptr::null_mut();
            #[cfg(ngx_table_elt_next)]
            {
                (*h).next = ptr::null_mut();
            }
            h
        }
    }

    fn set_www_authenticate(&mut self, challenge: &str) {
        let h = self.push_header("WWW-Authenticate", challenge);
        // SAFETY: h is null or a header element in the request pool.
        unsafe { (*self.raw()).headers_out.www_authenticate = h };
    }

    fn redirect(&mut self, location: &str) -> ngx_int_t {
        let h = self.push_header("Location", location);
        self.push_header("Cache-Control", "no-store");
        // SAFETY: h is null or a header element in the request pool.
        unsafe { (*self.raw()).headers_out.location = h };
        302
    }

    fn origin(&self) -> String {
        let raw = self.raw();
        // SAFETY: connection and headers_in of a live request; `host` is null
        // or one of its headers (nginx has validated it).
        let (ssl, host, server) = unsafe {
            let c = (*raw).connection;
            let h = (*raw).headers_in.host;
            (
                !(*c).ssl.is_null(),
                h.as_ref().map(|h| h.value),
                (*raw).headers_in.server,
            )
        };
        let host = host
            .and_then(|h| h.to_str().ok().map(str::to_string))
            .filter(|h| !h.is_empty())
            .or_else(|| server.to_str().ok().map(str::to_string))
            .unwrap_or_else(|| "localhost".into());
        format!("{}://{}", if ssl { "https" } else { "http" }, host)
    }

    fn absolute(&self, uri: &str) -> String {
        if uri.starts_with('/') {
            format!("{}{}", self.origin(), uri)
        } else {
            uri.to_string()
        }
    }

    fn args(&self) -> &str {
        // SAFETY: args of a live request, valid as long as it is.
        unsafe { (*self.raw()).args.to_str().unwrap_or("") }
    }

    fn send_page(&mut self, status: u16, text: &str, link: Option<&str>) -> ngx_int_t {
        let title = match status {
            400 => "400 Bad Request",
            401 => "401 Unauthorized",
            403 => "403 Forbidden",
            500 => "500 Internal Server Error",
            502 => "502 Bad Gateway",
            503 => "503 Service Unavailable",
            504 => "504 Gateway Time-out",
            _ => "Error",
        };
        let link = link
            .map(|l| format!("<p><a href=\"{}\">Continue</a></p>\n", html_escape(l)))
            .unwrap_or_default();
        let body = format!(
            "<html>\n<head><title>{title}</title></head>\n<body>\n<center><h1>{title}</h1></center>\n<p>{}</p>\n{link}</body>\n</html>\n",
            html_escape(text)
        );
        self.send_body(status, "text/html; charset=utf-8", &body)
    }

    fn send_body(&mut self, status: u16, content_type: &'static str, body: &str) -> ngx_int_t {
        self.discard_body();
        self.push_header("Cache-Control", "no-store");
        let ct = content_type;
        let raw = self.raw();
        // SAFETY: headers_out of a live request; the static str outlives it.
        unsafe {
            (*raw).headers_out.status = status as usize;
            (*raw).headers_out.content_type = ngx_str_t {
                len: ct.len(),
                data: ct.as_ptr() as *mut u8,
            };
            (*raw).headers_out.content_type_len = ct.len();
            (*raw).headers_out.content_length_n = body.len() as i64;
        }
        let rc = self.send_header();
        if rc == Status::NGX_ERROR || rc.0 > 0 || self.header_only() {
            return rc.0;
        }
        if body.is_empty() {
            // no data buffer (nginx refuses an empty one): just the end
            // SAFETY: a live request whose header was sent.
            return unsafe { ngx_http_send_special(self.raw(), NGX_HTTP_LAST as ngx_uint_t) };
        }
        let Some(mut buf) = self.pool().create_buffer_from_str(body) else {
            return Status::NGX_ERROR.0;
        };
        use ngx::core::Buffer;
        buf.set_last_buf(true);
        buf.set_last_in_chain(true);
        let mut chain = ngx_chain_t {
            buf: buf.as_ngx_buf_mut(),
            next: ptr::null_mut(),
        };
        self.output_filter(&mut chain).0
    }

    fn discard_body(&mut self) {
        // SAFETY: discarding the body of a live request in its content handler.
        unsafe { ngx_http_discard_request_body(self.raw()) };
    }

    fn on_pool_cleanup(&mut self, cleanup: ngx_pool_cleanup_pt, data: *mut c_void) -> bool {
        // SAFETY: the request pool is valid; the cleanup runs when it is
        // destroyed, with `data` as given.
        unsafe {
            let c = ngx_pool_cleanup_add((*self.raw()).pool, 0);
            if c.is_null() {
                return false;
            }
            (*c).handler = cleanup;
            (*c).data = data;
        }
        true
    }

    fn watch_client_close(&mut self) {
        // SAFETY: a live main request in its phase handler; nginx's own
        // handler for requests that wait (it finalizes with 499 on EOF).
        unsafe { (*self.raw()).read_event_handler = Some(ngx_http_test_reading) };
    }

    fn stop_watching_client(&mut self) {
        // SAFETY: as above; the phase runner's own read handler.
        unsafe { (*self.raw()).read_event_handler = Some(ngx_http_block_reading) };
    }

    fn read_body(&mut self, done: ngx_http_client_body_handler_pt) -> ngx_int_t {
        // SAFETY: a live request in its content handler; nginx keeps a
        // reference for the body read and calls `done` once.
        unsafe { ngx_http_read_client_request_body(self.raw(), done) }
    }

    fn body(&self, max: usize) -> Option<Vec<u8>> {
        let r = self.raw();
        let mut out = Vec::new();
        // SAFETY: a live request whose body nginx read (the body handler
        // runs after it); its chain and buffers live in the request pool.
        unsafe {
            let rb = (*r).request_body;
            if rb.is_null() {
                return Some(out);
            }
            if !(*rb).temp_file.is_null() {
                return None;
            }
            let mut cl = (*rb).bufs;
            while !cl.is_null() {
                let b = (*cl).buf;
                if !b.is_null() {
                    if (*b).in_file() != 0 {
                        return None;
                    }
                    let len = (*b).last.offset_from((*b).pos) as usize;
                    if out.len() + len > max {
                        return None;
                    }
                    if len > 0 {
                        out.extend_from_slice(std::slice::from_raw_parts((*b).pos, len));
                    }
                }
                cl = (*cl).next;
            }
        }
        Some(out)
    }

    fn resume_with(&mut self, resume: ngx_http_event_handler_pt) {
        // SAFETY: a live request; the reference it holds keeps it until the
        // resume handler finalizes it.
        unsafe { (*self.raw()).write_event_handler = resume };
    }

    fn hold_for_resume(&mut self, resume: ngx_http_event_handler_pt) {
        let r = self.raw();
        // SAFETY: a live request; the extra reference keeps it until the
        // resume handler finalizes it.
        unsafe {
            (*(*r).main).set_count((*(*r).main).count() + 1);
            (*r).write_event_handler = resume;
        }
    }
}

/// Resume a parked request: post its connection's write event, which calls
/// its `write_event_handler` (the phase runner, or an endpoint's resume).
///
/// # Safety
/// `r` must be a live request: the wait registry forgets a request when its
/// pool goes, before it is freed, so every request it wakes is alive.
pub unsafe fn post_request(r: RawRequest) {
    // SAFETY: by the contract above.
    unsafe {
        let c = (*r).connection;
        ngx_post_event((*c).write, ptr::addr_of_mut!(ngx_posted_events));
    }
}

/// Finalize a request a content handler kept with `hold_for_resume`.
pub fn finalize(r: &mut Request, rc: ngx_int_t) {
    // SAFETY: a live request that holds the extra reference.
    unsafe { ngx_http_finalize_request(r.raw(), rc) };
}

/// The request behind a raw pointer nginx handed us.
///
/// # Safety
/// `r` must be a valid request for the lifetime the caller uses.
pub unsafe fn request<'a>(r: RawRequest) -> &'a mut Request {
    // SAFETY: by the contract above.
    unsafe { Request::from_ngx_http_request(r) }
}
