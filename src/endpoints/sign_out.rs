//! `oauth2_sign_out`: clear the session and its login states, then go to the
//! provider's `end_session_endpoint` (RP-Initiated Logout) or to `rd`.

use ngx::ffi::{ngx_int_t, NGX_LOG_INFO};
use ngx::http::{HttpModuleLocationConf, Request};
use ngx::ngx_log_error;
use oauth2_core::session;

use crate::http::RequestExt;
use crate::session::{
    clear_session, delete_cookie, end_session, end_stored, now, open_session, sealed_session,
    session_id, uri_for,
};
use crate::store::Store;
use crate::worker::with_worker;
use crate::Module;

pub fn handler(r: &mut Request) -> ngx_int_t {
    let Some(lc) = Module::location_conf(r) else {
        return 500;
    };
    let Some(rt) = lc.runtime.clone() else {
        return 500;
    };
    let Some(sc) = rt.session.as_ref() else {
        return 500;
    };
    r.discard_body();
    // the session and its provider (the sign-out ends it there)
    let sealed = sealed_session(r, sc).map(|c| c.into_owned());
    let mut found = sealed.as_deref().and_then(|v| {
        rt.provs
            .iter()
            .find_map(|p| open_session(v, sc, p).map(|s| (s, p.clone())))
    });
    // a Redis session: its record is deleted by id (not read first); the
    // ID token for the provider's logout comes from this worker's cache
    if let (Store::Redis(rs), Some(v)) = (&sc.store, sealed.as_deref()) {
        if let Some((id, p)) = rt
            .provs
            .iter()
            .find_map(|p| session_id(v, sc, p).map(|id| (id, p.clone())))
        {
            end_stored(rs, &id);
            let cached = with_worker(|w| w.sessions.get(v, now(), 0)).flatten();
            let s = cached.map(|(s, _)| (*s).clone()).unwrap_or_default();
            found = Some((s, p));
        }
    }
    let prov = match &found {
        Some((_, p)) => Some(p.clone()),
        None => rt.login_prov().cloned(),
    };
    let s = found.map(|(s, _)| s);
    if let Some(s) = &s {
        end_session(sc, s);
    }
    let cookies = r.cookies();
    clear_session(r, sc, &cookies);
    let prefix = format!("{}_st_", sc.cookie_name);
    for (k, _) in cookies.iter().filter(|(k, _)| k.starts_with(&prefix)) {
        delete_cookie(r, sc, k, true);
    }
    ngx_log_error!(NGX_LOG_INFO, r.log(), "oauth2: signed out");
    with_worker(|w| w.count(oauth2_core::metrics::LOGOUTS_SIGN_OUT));
    let end_session_endpoint = prov.as_ref().and_then(|p| {
        with_worker(|w| {
            w.providers[p.index]
                .metadata
                .as_ref()
                .and_then(|m| m.end_session_endpoint.clone())
        })
        .flatten()
    });
    if let (Some(ep), Some(client)) = (
        end_session_endpoint,
        prov.as_ref().and_then(|p| p.client.as_ref()),
    ) {
        if let Ok(mut u) = url::Url::parse(&ep) {
            let post = match &client.post_logout_redirect_uri {
                Some(v) => uri_for(r, v),
                None => r.absolute("/"),
            };
            {
                let mut q = u.query_pairs_mut();
                if let Some(h) = s.as_ref().and_then(|s| s.id_token.as_deref()) {
                    q.append_pair("id_token_hint", h);
                }
                q.append_pair("post_logout_redirect_uri", &post);
                q.append_pair("client_id", &client.client_id);
            }
            return r.redirect(u.as_str());
        }
    }
    let rd = url::form_urlencoded::parse(r.args().as_bytes())
        .find(|(k, _)| k == "rd")
        .map(|(_, v)| v.into_owned())
        .filter(|v| session::safe_return_path(v))
        .unwrap_or_else(|| "/".to_string());
    r.redirect(&rd)
}
