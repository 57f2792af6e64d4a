//! ngx_http_oauth2_module: nginx as an OAuth 2.0 / OpenID Connect gateway.
//!
//! FFI glue only; the protocol logic lives in the `oauth2-core` crate.

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};

use ngx::core::Status;
use ngx::ffi::{
    ngx_array_push, ngx_conf_t, ngx_cycle_t, ngx_http_handler_pt, ngx_http_module_t,
    ngx_http_phases_NGX_HTTP_ACCESS_PHASE, ngx_int_t, ngx_module_t, NGX_HTTP_MODULE, NGX_LOG_ALERT,
    NGX_LOG_EMERG,
};
use ngx::http::{HttpModule, HttpModuleLocationConf, HttpModuleMainConf, NgxHttpCoreModule};
use ngx::ngx_log_error;

// the glue, top to bottom: each file imports only those below it
use oauth2_core::config::DpopMode;

mod access; // the access handler
mod conf; // directives and merge
mod endpoints; // content handlers: callback, sign_out
mod fetcher; // the fetcher thread (no nginx types)
mod http; // request helpers and their unsafe (RequestExt)
mod kv; // the Redis store's client (fetcher thread, no nginx types)
mod session; // session cookies, refresh, the start of the login
mod shm; // the status zone: one slot of figures per worker
mod store; // where sessions live: the cookie, an shm zone, Redis
mod variables; // $oauth2_* variables
mod worker; // per-worker state, wait registry, wake-up, deadlines

pub struct Module;

pub(crate) fn module() -> &'static ngx_module_t {
    // SAFETY: the module static is only written by nginx while loading,
    // before any of our code runs.
    unsafe { &*std::ptr::addr_of!(ngx_http_oauth2_module) }
}

/// Test hooks (request headers that make the module fail on purpose, for
/// the t/ suite) are on only in a worker whose environment has
/// `NGX_OAUTH2_TEST_HOOKS=1`, which nginx passes to workers only when the
/// configuration says `env NGX_OAUTH2_TEST_HOOKS;`. Read once per worker.
pub(crate) fn test_hooks() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("NGX_OAUTH2_TEST_HOOKS").is_ok_and(|v| v == "1"))
}

/// Run `f`, turning a panic into `fallback`: a Rust panic must never unwind
/// into nginx's C frames.
pub(crate) fn guard<R>(fallback: R, f: impl FnOnce() -> R) -> R {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        // SAFETY: ngx_cycle is valid in every process that runs our code.
        let log = unsafe { (*ngx::ffi::ngx_cycle).log };
        ngx_log_error!(NGX_LOG_ALERT, log, "oauth2: internal error (panic caught)");
        fallback
    })
}

impl HttpModule for Module {
    fn module() -> &'static ngx_module_t {
        module()
    }

    unsafe extern "C" fn preconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
        guard(Status::NGX_ERROR.0, || {
            // SAFETY: called by nginx with the configuration being read.
            match unsafe { variables::register(cf) } {
                Ok(()) => Status::NGX_OK.0,
                Err(()) => Status::NGX_ERROR.0,
            }
        })
    }

    unsafe extern "C" fn postconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
        guard(Status::NGX_ERROR.0, || {
            // SAFETY: called by nginx with a valid configuration.
            let Some(cmcf) = NgxHttpCoreModule::main_conf_mut(unsafe { &*cf }) else {
                return Status::NGX_ERROR.0;
            };
            // SAFETY: the access phase handler array is initialised by the
            // core module before postconfiguration runs.
            let h = unsafe {
                ngx_array_push(
                    &mut cmcf.phases[ngx_http_phases_NGX_HTTP_ACCESS_PHASE as usize].handlers,
                ) as *mut ngx_http_handler_pt
            };
            if h.is_null() {
                return Status::NGX_ERROR.0;
            }
            // SAFETY: h points at the new array slot.
            unsafe { *h = Some(access::access_handler) };
            // SAFETY: cf is the valid configuration being read.
            if let Some(main) = unsafe { Module::main_conf_mut(&*cf) } {
                if !main.providers.is_empty() || main.has_status {
                    // SAFETY: cf as above; the tag is this module's static.
                    let tag = std::ptr::addr_of_mut!(ngx_http_oauth2_module).cast();
                    main.status_zone = unsafe { shm::add_zone(cf, tag) };
                    if main.status_zone.is_none() {
                        return Status::NGX_ERROR.0;
                    }
                }
                if main.provs.iter().any(|p| p.dpop != DpopMode::Off) {
                    // the DPoP proofs' jtis, shared by the workers
                    let tag = std::ptr::addr_of_mut!(ngx_http_oauth2_module).cast();
                    // SAFETY: cf as above; the tag is this module's static.
                    match unsafe { store::ShmZone::add_marks(cf, "oauth2_dpop", DPOP_ZONE, tag) } {
                        Ok(z) => main.dpop_zone = Some(z),
                        Err(_) => return Status::NGX_ERROR.0,
                    }
                }
            }
            Status::NGX_OK.0
        })
    }
}

// SAFETY: MainConf/LocConf are the types our create_* functions allocate.
unsafe impl HttpModuleMainConf for Module {
    type MainConf = conf::MainConf;
}

// SAFETY: as above.
unsafe impl HttpModuleLocationConf for Module {
    type LocationConf = conf::LocConf;
}

unsafe extern "C" fn create_main_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    guard(std::ptr::null_mut(), || {
        // SAFETY: nginx calls this with a valid configuration; `allocate`
        // registers a cleanup that drops the value with the pool.
        let pool = unsafe { ngx::core::Pool::from_ngx_pool((*cf).pool) };
        pool.allocate::<conf::MainConf>(conf::MainConf::default()) as *mut c_void
    })
}

unsafe extern "C" fn init_process(cycle: *mut ngx_cycle_t) -> ngx_int_t {
    guard(Status::NGX_OK.0, || {
        // SAFETY: nginx passes the worker's valid cycle.
        let Some(main) = Module::main_conf(unsafe { &*cycle }) else {
            return Status::NGX_OK.0; // no http block
        };
        if main.providers.is_empty() {
            return Status::NGX_OK.0;
        }
        if let Err(e) = worker::init_worker(
            cycle,
            &main.providers,
            &main.stores,
            main.cache_bytes(),
            main.status_zone,
        ) {
            // SAFETY: valid cycle log.
            let log = unsafe { (*cycle).log };
            ngx_log_error!(NGX_LOG_EMERG, log, "oauth2: {}", e);
            return Status::NGX_ERROR.0;
        }
        Status::NGX_OK.0
    })
}

unsafe extern "C" fn exit_process(_cycle: *mut ngx_cycle_t) {
    guard((), worker::exit_worker)
}

/// The content handler of the module's endpoint locations (`oauth2_callback`,
/// `oauth2_sign_out`), set by their directives; routes by the location's
/// `Endpoint`.
pub(crate) unsafe extern "C" fn content_handler(r: *mut ngx::ffi::ngx_http_request_t) -> ngx_int_t {
    guard(500, || {
        // SAFETY: nginx passes a valid request to content handlers.
        let req = unsafe { http::request(r) };
        match Module::location_conf(req).and_then(|lc| lc.endpoint) {
            Some(conf::Endpoint::Callback) => endpoints::callback::handler(r),
            Some(conf::Endpoint::SignOut) => endpoints::sign_out::handler(req),
            Some(conf::Endpoint::Status) => endpoints::status::handler(req),
            Some(conf::Endpoint::BackchannelLogout) => endpoints::logout::backchannel(r),
            Some(conf::Endpoint::FrontchannelLogout) => endpoints::logout::frontchannel(r),
            Some(conf::Endpoint::ResourceMetadata) => endpoints::resource::handler(req),
            None => ngx::ffi::NGX_HTTP_NOT_FOUND as ngx_int_t,
        }
    })
}

/// The DPoP replay zone: about 460,000 proofs (72 bytes each), each kept for
/// twice its `iat` window; a full zone drops the least recently seen eighth.
const DPOP_ZONE: usize = 32 * 1024 * 1024;

static NGX_HTTP_OAUTH2_MODULE_CTX: ngx_http_module_t = ngx_http_module_t {
    preconfiguration: Some(Module::preconfiguration),
    postconfiguration: Some(Module::postconfiguration),
    create_main_conf: Some(create_main_conf),
    init_main_conf: None,
    create_srv_conf: None,
    merge_srv_conf: None,
    create_loc_conf: Some(conf::create_loc_conf),
    merge_loc_conf: Some(conf::merge_loc_conf),
};

#[cfg(feature = "export-modules")]
ngx::ngx_modules!(ngx_http_oauth2_module);

#[used]
#[allow(non_upper_case_globals)]
#[cfg_attr(not(feature = "export-modules"), no_mangle)]
pub static mut ngx_http_oauth2_module: ngx_module_t = ngx_module_t {
    ctx: std::ptr::addr_of!(NGX_HTTP_OAUTH2_MODULE_CTX) as _,
    commands: std::ptr::addr_of_mut!(conf::COMMANDS) as *mut _,
    type_: NGX_HTTP_MODULE as _,
    init_process: Some(init_process),
    exit_process: Some(exit_process),
    ..ngx_module_t::default()
};
