//! `$oauth2_*` variables (SPEC §4). Evaluated on use, never cached, read
//! from the request's ctx; empty where the request was not authenticated.

use ngx::core::Status;
use ngx::ffi::{
    ngx_conf_t, ngx_http_add_variable, ngx_http_request_t, ngx_http_variable_value_t, ngx_int_t,
    ngx_pnalloc, ngx_str_t, ngx_uint_t, NGX_HTTP_VAR_NOCACHEABLE, NGX_HTTP_VAR_PREFIX,
};
use ngx::http::Request;
use oauth2_core::claims::{claim_value, sanitize};

use crate::http::RequestExt;

#[derive(Clone, Copy)]
enum Var {
    Sub,
    Email,
    AccessToken,
    AuthMethod,
    Provider,
    Error,
    Claim,
}

const VARS: &[(&str, Var)] = &[
    ("oauth2_sub", Var::Sub),
    ("oauth2_email", Var::Email),
    ("oauth2_access_token", Var::AccessToken),
    ("oauth2_auth_method", Var::AuthMethod),
    ("oauth2_provider", Var::Provider),
    ("oauth2_error", Var::Error),
    ("oauth2_claim_", Var::Claim),
];

const CLAIM_PREFIX: &str = "oauth2_claim_";

/// Register the variables (preconfiguration).
pub unsafe fn register(cf: *mut ngx_conf_t) -> Result<(), ()> {
    for (i, (name, var)) in VARS.iter().enumerate() {
        let mut n = ngx_str_t {
            len: name.len(),
            data: name.as_ptr() as *mut u8,
        };
        let mut flags = NGX_HTTP_VAR_NOCACHEABLE;
        if matches!(var, Var::Claim) {
            flags |= NGX_HTTP_VAR_PREFIX;
        }
        // SAFETY: cf is the configuration being read; nginx copies the name.
        let v = unsafe { ngx_http_add_variable(cf, &mut n, flags as ngx_uint_t) };
        if v.is_null() {
            return Err(());
        }
        // SAFETY: v is the variable nginx just created for us.
        unsafe {
            (*v).get_handler = Some(get_variable);
            (*v).data = i;
        }
    }
    Ok(())
}

fn value(r: &Request, var: Var, data: usize) -> Option<String> {
    let ctx = r.ctx()?;
    let claims = ctx.claims.as_deref();
    match var {
        Var::Sub => claims.and_then(|c| claim_value(c, "sub")),
        Var::Email => claims.and_then(|c| claim_value(c, "email")),
        Var::AccessToken => ctx.token().map(sanitize),
        Var::AuthMethod => Some(ctx.method.to_string()),
        Var::Provider => Some(ctx.provider.to_string()),
        Var::Error => ctx
            .error
            .map(|e| e.code())
            .or(ctx.denied)
            .map(str::to_string),
        Var::Claim => {
            // SAFETY: for prefix variables nginx passes the full name as data.
            let full = unsafe { (data as *const ngx_str_t).as_ref()? };
            let name = full.to_str().ok()?.get(CLAIM_PREFIX.len()..)?;
            claims.and_then(|c| claim_value(c, name))
        }
    }
}

unsafe extern "C" fn get_variable(
    r: *mut ngx_http_request_t,
    v: *mut ngx_http_variable_value_t,
    data: usize,
) -> ngx_int_t {
    crate::guard(Status::NGX_ERROR.0, || {
        // SAFETY: nginx passes a valid request and value slot to get handlers.
        let (req, v) = unsafe { (Request::from_ngx_http_request(r), &mut *v) };
        // prefix variables get the name as data; others their index
        let var = if data < VARS.len() {
            VARS[data].1
        } else {
            Var::Claim
        };
        let s = value(req, var, data).unwrap_or_default();
        let p = if s.is_empty() {
            std::ptr::NonNull::<u8>::dangling().as_ptr()
        } else {
            // SAFETY: allocation in the request pool, which outlives the value.
            let p = unsafe { ngx_pnalloc((*r).pool, s.len()) } as *mut u8;
            if p.is_null() {
                return Status::NGX_ERROR.0;
            }
            // SAFETY: p has room for s.len() bytes and does not overlap s.
            unsafe { std::ptr::copy_nonoverlapping(s.as_ptr(), p, s.len()) };
            p
        };
        v.set_len(s.len() as u32);
        v.set_valid(1);
        v.set_no_cacheable(1);
        v.set_not_found(0);
        v.data = p;
        Status::NGX_OK.0
    })
}
