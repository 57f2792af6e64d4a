//! `oauth2_resource_metadata`: RFC 9728 protected-resource metadata for the
//! server's APIs (the 401s of that server point here).

use ngx::ffi::ngx_int_t;
use ngx::http::{HttpModuleLocationConf, Request};
use oauth2_core::config::DpopMode;
use oauth2_core::resource;

use crate::http::RequestExt;
use crate::Module;

pub fn handler(r: &mut Request) -> ngx_int_t {
    let m = r.method();
    if m != ngx::http::Method::GET && m != ngx::http::Method::HEAD {
        r.push_header("Allow", "GET, HEAD");
        return r.send_page(405, "Method not allowed", None);
    }
    let Some(rt) = Module::location_conf(r).and_then(|lc| lc.runtime.clone()) else {
        return 500;
    };
    let mut servers: Vec<String> = Vec::new();
    for p in &rt.provs {
        if let Some(i) = &p.policy.issuer {
            if !servers.contains(i) {
                servers.push(i.clone());
            }
        }
    }
    // the DPoP algorithms of the server's providers that take DPoP
    let mut algs: Vec<&str> = Vec::new();
    for p in rt.provs.iter().filter(|p| p.dpop != DpopMode::Off) {
        for a in &p.policy.algorithms {
            let n = oauth2_core::keys::alg_name(*a);
            if !oauth2_core::config::is_hmac(*a) && !algs.contains(&n) {
                algs.push(n);
            }
        }
    }
    let body = resource::metadata(&r.origin(), &servers, &rt.required_scopes, &algs);
    r.send_body(200, "application/json", &body)
}
