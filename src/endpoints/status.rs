//! `oauth2_status`: the figures of every worker, summed (shm.rs), as JSON or,
//! with `?format=prometheus`, in the Prometheus text format 0.0.4. Ordinary
//! nginx access rules (`allow`, `deny`) guard it; its own requests are not
//! counted.

use ngx::core::Status;
use ngx::ffi::{ngx_int_t, ngx_time};
use ngx::http::{HttpModuleMainConf, Request};

use crate::http::RequestExt;
use crate::shm;
use crate::Module;

pub fn handler(r: &mut Request) -> ngx_int_t {
    let method = r.method();
    if method.as_str() != "GET" && method.as_str() != "HEAD" {
        return 405;
    }
    let Some(main) = Module::main_conf(r) else {
        return 500;
    };
    let names: Vec<String> = main
        .providers
        .iter()
        .map(|p| p.name().to_string())
        .collect();
    let mut snap = shm::snapshot(main.status_zone, &names, ngx_time() as u64);
    snap.sessions = main
        .session_zones
        .iter()
        .filter_map(|z| z.tables())
        .map(|t| t.sessions.len() as u64)
        .sum();
    let prometheus = url::form_urlencoded::parse(r.args().as_bytes())
        .any(|(k, v)| k == "format" && v == "prometheus");
    let body = shm::render(&snap, prometheus);
    let ct = if prometheus {
        "text/plain; version=0.0.4; charset=utf-8"
    } else {
        "application/json"
    };
    let rc = r.send_body(200, ct, &body);
    if rc == Status::NGX_ERROR.0 {
        return 500;
    }
    rc
}
