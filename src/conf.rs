//! Directive table, directive handlers and merge. Values are parsed by
//! `oauth2_core::config`; this file only moves them in and out of nginx.

use std::ffi::{c_char, c_void};
use std::path::PathBuf;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

use ngx::ffi::{
    ngx_command_t, ngx_conf_parse, ngx_conf_t, ngx_http_compile_complex_value,
    ngx_http_compile_complex_value_t, ngx_http_complex_value_t, ngx_pcalloc, ngx_str_t, ngx_uint_t,
    NGX_CONF_1MORE, NGX_CONF_2MORE, NGX_CONF_BLOCK, NGX_CONF_FLAG, NGX_CONF_NOARGS, NGX_CONF_TAKE1,
    NGX_HTTP_LOC_CONF, NGX_HTTP_LOC_CONF_OFFSET, NGX_HTTP_MAIN_CONF, NGX_HTTP_SRV_CONF,
    NGX_LOG_EMERG, NGX_OK,
};
use ngx::http::{
    HttpModuleLocationConf, HttpModuleMainConf, HttpModuleServerConf, NgxHttpCoreModule,
};
use ngx::{ngx_conf_log_error, ngx_string};
use oauth2_core::authz::ClaimRule;
use oauth2_core::config::{self, DpopMode, OnFailure, TokenValidation, DEFAULT_ALGORITHMS};
use oauth2_core::jwt::Policy;
use oauth2_core::keys::{KeySet, KeySource};
use oauth2_core::provider::ProviderSpec;
use oauth2_core::session::CookieKeys;
use oauth2_core::Algorithm;
use oauth2_core::ConfError;

use crate::kv::StoreSpec;
use crate::store::{RedisStore, ShmZone, Store};
use crate::Module;

/// `ConfError::Invalid` with a formatted message.
macro_rules! invalid {
    ($($arg:tt)+) => { ConfError::Invalid(format!($($arg)+)) };
}

/// Location configuration; also used at `http` and `server` level, where
/// the provider directives are usually written. `None` means "not set here".
#[derive(Default)]
pub struct LocConf {
    pub issuer: Option<String>,
    pub jwks_uri: Option<String>,
    pub jwks_file: Option<(String, Arc<KeySet>)>,
    pub client_id: Option<String>,
    pub audience: Option<Vec<String>>,
    pub algorithms: Option<Vec<Algorithm>>,
    pub token_validation: Option<TokenValidation>,
    pub clock_skew: Option<Duration>,
    pub jwks_refresh: Option<Duration>,
    pub provider_timeout: Option<Duration>,
    pub ssl_trusted_certificate: Option<(String, Arc<Vec<u8>>)>,
    pub realm: Option<String>,
    pub auth: Option<Auth>,
    pub on_failure: Option<OnFailure>,

    pub client_secret: Option<Secret>,
    pub redirect_uri: Option<UriValue>,
    pub scope: Option<Vec<String>>,
    pub cookie_secret_file: Option<(String, Arc<CookieKeys>)>,
    pub cookie_name: Option<String>,
    pub cookie_domain: Option<String>,
    pub cookie_path: Option<String>,
    pub cookie_samesite: Option<&'static str>,
    pub cookie_secure: Option<bool>,
    pub session_lifetime: Option<Duration>,
    pub refresh: Option<bool>,
    pub post_logout_redirect_uri: Option<UriValue>,
    pub userinfo: Option<bool>,
    pub session_store: Option<Store>,
    pub dpop: Option<DpopMode>,

    pub require_claims: Option<Vec<ClaimRule>>,
    pub require_scopes: Option<Vec<String>>,
    /// Bytes of the token cache (`oauth2_token_cache SIZE | off`).
    pub token_cache: Option<usize>,

    /// `oauth2_callback` / `oauth2_sign_out` (this location only).
    pub endpoint: Option<Endpoint>,

    /// Set by merge where `oauth2_auth` is on, or at an endpoint.
    pub runtime: Option<Arc<LocRuntime>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Callback,
    SignOut,
    Status,
    BackchannelLogout,
    FrontchannelLogout,
    ResourceMetadata,
}

/// A secret that never prints itself.
#[derive(Clone)]
pub struct Secret(pub Arc<String>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Cookie sessions and the browser login, where configured.
pub struct SessionConf {
    pub keys: Arc<CookieKeys>,
    pub cookie_name: String,
    pub cookie_domain: Option<String>,
    pub cookie_path: String,
    pub samesite: &'static str,
    pub secure: bool,
    pub lifetime: u64,
    pub refresh: bool,
    pub store: Store,
}

/// How a location authenticates (`oauth2_auth on | off | NAME...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    Off,
    /// With the provider of the flat `oauth2_*` directives.
    On,
    /// With these `oauth2_provider` blocks, in this order.
    Named(Vec<String>),
}

/// One provider as locations use it: the worker state that holds its keys
/// and metadata, what its tokens must be, how they are validated, and its
/// client for the browser login. Built once per distinct provider.
pub struct Prov {
    /// The worker's provider state (keys, metadata) for it.
    pub index: usize,
    /// Its `oauth2_provider` name; empty for the flat directives' provider.
    pub name: String,
    pub policy: Policy,
    /// Identifies `policy` and the validation mode (cache keys).
    pub policy_id: u32,
    pub token_validation: TokenValidation,
    /// Client credentials for introspection, where it can run.
    pub introspection_client: Option<(String, Secret)>,
    /// Present where the browser login can run (issuer + client id).
    pub client: Option<ClientConf>,
    /// Sessions are sealed for this issuer and client id: they open only
    /// where both are the same.
    pub binding: Vec<u8>,
    /// Identifies `binding` among the configuration's (session cache).
    pub binding_id: u32,
    /// `oauth2_dpop`.
    pub dpop: DpopMode,
    ident: String,
}

pub struct ClientConf {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub redirect_uri: UriValue,
    pub scope: String,
    pub post_logout_redirect_uri: Option<UriValue>,
    /// `oauth2_userinfo`: claims from the UserInfo endpoint at login.
    pub userinfo: bool,
}

/// A URI as written (a path or an absolute URL) that may contain nginx
/// variables (`https://$host/oauth2/callback`): compiled once, at
/// configuration, into a complex value in the configuration pool.
#[derive(Clone)]
pub struct UriValue {
    pub text: String,
    cv: Option<NonNull<ngx_http_complex_value_t>>,
}

// SAFETY: the complex value is written once, while the configuration is
// read, and only read afterwards, on nginx's own thread (the fetcher thread
// never receives configuration values holding it).
unsafe impl Send for UriValue {}
// SAFETY: as above: never mutated after configuration.
unsafe impl Sync for UriValue {}

impl UriValue {
    pub fn plain(text: &str) -> UriValue {
        UriValue {
            text: text.to_string(),
            cv: None,
        }
    }

    /// The compiled value, where the URI has variables.
    pub fn complex(&self) -> Option<&ngx_http_complex_value_t> {
        // SAFETY: allocated in the configuration pool, which lives as long
        // as the configuration (and so as every LocConf holding this).
        self.cv.map(|p| unsafe { p.as_ref() })
    }
}

/// What a protected location needs at request time, computed once at merge.
pub struct LocRuntime {
    /// The providers of the location, in order (one for `oauth2_auth on`).
    pub provs: Vec<Arc<Prov>>,
    /// The token cache's key of this location's validation: the provider's
    /// `policy_id`, or for several providers the id of the set.
    pub cache_id: u32,
    pub session: Option<SessionConf>,
    pub claim_rules: Vec<ClaimRule>,
    pub required_scopes: Vec<String>,
    /// The strongest `oauth2_dpop` of the providers, and the algorithms a
    /// proof may use (`algs` of the challenge).
    pub dpop: DpopMode,
    pub dpop_algs: String,
}

impl LocRuntime {
    /// The provider a browser login goes to: the first with a client.
    pub fn login_prov(&self) -> Option<&Arc<Prov>> {
        self.provs.iter().find(|p| p.client.is_some())
    }

    /// The provider whose sessions have this binding.
    pub fn prov_by_binding(&self, id: u32) -> Option<(usize, &Arc<Prov>)> {
        self.provs
            .iter()
            .enumerate()
            .find(|(_, p)| p.binding_id == id)
    }
}

#[derive(Default)]
pub struct MainConf {
    pub providers: Vec<ProviderSpec>,
    /// Distinct validation policies (their debug form), for cache keys.
    policies: Vec<String>,
    /// The largest `oauth2_token_cache` of the configuration, in bytes.
    cache_bytes: Option<usize>,
    /// Distinct session bindings (issuer and client id).
    bindings: Vec<Vec<u8>>,
    /// `oauth2_provider` blocks, as read.
    named: Vec<(String, LocConf)>,
    /// Every provider built (flat and named), for the callback.
    pub provs: Vec<Arc<Prov>>,
    /// An `oauth2_status` location exists.
    pub has_status: bool,
    /// The status zone (shm.rs), made at postconfiguration.
    pub status_zone: Option<std::ptr::NonNull<ngx::ffi::ngx_shm_zone_t>>,
    /// The `shm` session zones (for the status's session count).
    pub session_zones: Vec<ShmZone>,
    /// The DPoP proofs' `jti`s (a zone the module makes when a provider
    /// has `oauth2_dpop`).
    pub dpop_zone: Option<ShmZone>,
    /// The Redis session stores (each worker's fetcher has a client of each).
    pub stores: Vec<StoreSpec>,
    /// `oauth2_resource_metadata` locations: (the server's core server
    /// configuration, as an address; the location's path). Every 401 of
    /// that server names the document.
    pub resource_metadata: Vec<(usize, String)>,
}

pub const DEFAULT_TOKEN_CACHE: usize = 8 * 1024 * 1024;

fn endpoint_name(e: Option<Endpoint>) -> &'static str {
    match e {
        Some(Endpoint::SignOut) => "\"oauth2_sign_out\"",
        Some(Endpoint::BackchannelLogout) => "\"oauth2_backchannel_logout\"",
        Some(Endpoint::FrontchannelLogout) => "\"oauth2_frontchannel_logout\"",
        _ => "\"oauth2_callback\"",
    }
}

impl MainConf {
    fn policy_id(&mut self, ident: &str) -> u32 {
        match self.policies.iter().position(|p| p == ident) {
            Some(i) => i as u32,
            None => {
                self.policies.push(ident.to_string());
                (self.policies.len() - 1) as u32
            }
        }
    }

    /// Every `oauth2_provider` block's provider, as an endpoint (the
    /// callback, sign-out) serves them.
    fn all_named(&mut self) -> Result<Vec<Arc<Prov>>, ConfError> {
        let names: Vec<String> = self.named.iter().map(|(n, _)| n.clone()).collect();
        names.iter().map(|n| self.named_prov(n, false)).collect()
    }

    /// The provider of an `oauth2_provider` block, by name.
    fn named_prov(&mut self, name: &str, auth: bool) -> Result<Arc<Prov>, ConfError> {
        let Some(i) = self.named.iter().position(|(n, _)| n == name) else {
            return Err(invalid!("unknown provider \"{name}\" in \"oauth2_auth\" (no \"oauth2_provider {name}\" block)"));
        };
        let src = std::mem::take(&mut self.named[i].1);
        let r = self.prov(&src, name, auth);
        self.named[i].1 = src;
        r.map_err(|e| match e {
            ConfError::Invalid(m) => invalid!("in \"oauth2_provider {name}\": {m}"),
            other => other,
        })
    }

    /// The provider the provider directives of `src` describe (one entry
    /// per distinct provider, shared by every location that uses it).
    fn prov(&mut self, src: &LocConf, name: &str, auth: bool) -> Result<Arc<Prov>, ConfError> {
        let prefix = if name.is_empty() { "oauth2_" } else { "" };
        // the flat provider's errors say where they come from
        let lead = if name.is_empty() {
            "\"oauth2_auth\" is on but "
        } else {
            ""
        };
        if src.issuer.is_none() && src.jwks_uri.is_none() && src.jwks_file.is_none() {
            return Err(invalid!(
                "{lead}none of \"{prefix}issuer\", \"{prefix}jwks_uri\" or \"{prefix}jwks_file\" is set"
            ));
        }
        let audiences = match (&src.audience, &src.client_id) {
            (Some(a), _) => a.clone(),
            (None, Some(id)) => vec![id.clone()],
            (None, None) if !auth => Vec::new(),
            (None, None) => {
                return Err(invalid!(
                    "{lead}neither \"{prefix}audience\" nor \"{prefix}client_id\" is set"
                ))
            }
        };
        let algorithms = src
            .algorithms
            .clone()
            .unwrap_or_else(|| DEFAULT_ALGORITHMS.to_vec());
        if let Some(h) = algorithms.iter().find(|a| config::is_hmac(**a)) {
            // access tokens: only with a symmetric key of oauth2_jwks_file;
            // ID tokens at the callback: with the client secret
            let has_key = src.jwks_file.as_ref().is_some_and(|(_, k)| k.has_hmac());
            if !has_key && src.client_secret.is_none() {
                return Err(invalid!(
                    "\"{prefix}algorithms\" lists {} but neither \"{prefix}jwks_file\" holds a symmetric key nor is a client secret set",
                    oauth2_core::keys::alg_name(*h)
                ));
            }
        }
        let spec = ProviderSpec {
            issuer: src.issuer.clone(),
            jwks_uri: src.jwks_uri.clone(),
            static_keys: src.jwks_file.as_ref().map(|(_, k)| k.clone()),
            timeout: src.provider_timeout.unwrap_or(DEFAULT_PROVIDER_TIMEOUT),
            refresh: src.jwks_refresh.unwrap_or(DEFAULT_JWKS_REFRESH),
            ca_pem: src.ssl_trusted_certificate.as_ref().map(|(_, p)| p.clone()),
            ident: format!(
                "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
                src.issuer,
                src.jwks_uri,
                src.jwks_file.as_ref().map(|(p, _)| p),
                src.provider_timeout,
                src.jwks_refresh,
                src.ssl_trusted_certificate.as_ref().map(|(p, _)| p)
            ),
        };
        let index = match self.providers.iter().position(|p| p.ident == spec.ident) {
            Some(i) => i,
            None => {
                self.providers.push(spec);
                self.providers.len() - 1
            }
        };
        let token_validation = src.token_validation.unwrap_or(TokenValidation::Auto);
        let introspection_client = match (&src.client_id, &src.client_secret) {
            (Some(id), Some(secret))
                if token_validation != TokenValidation::Jwt && src.issuer.is_some() =>
            {
                Some((id.clone(), secret.clone()))
            }
            _ => None,
        };
        if auth
            && token_validation == TokenValidation::Introspection
            && introspection_client.is_none()
        {
            return Err(invalid!(
                "\"{prefix}token_validation introspection\" needs \"{prefix}issuer\", \"{prefix}client_id\" and a client secret"
            ));
        }
        let policy = Policy {
            issuer: src.issuer.clone(),
            audiences,
            algorithms,
            skew_secs: src.clock_skew.unwrap_or(DEFAULT_CLOCK_SKEW).as_secs(),
        };
        let policy_id = self.policy_id(&format!("{index}|{token_validation:?}|{policy:?}"));
        let client = match (&src.issuer, &src.client_id) {
            (Some(issuer), Some(client_id)) => Some(ClientConf {
                issuer: issuer.clone(),
                client_id: client_id.clone(),
                client_secret: src.client_secret.clone(),
                redirect_uri: src
                    .redirect_uri
                    .clone()
                    .unwrap_or_else(|| UriValue::plain("/oauth2/callback")),
                scope: src
                    .scope
                    .as_ref()
                    .map(|s| s.join(" "))
                    .unwrap_or_else(|| "openid".into()),
                post_logout_redirect_uri: src.post_logout_redirect_uri.clone(),
                userinfo: src.userinfo.unwrap_or(true),
            }),
            _ => None,
        };
        let binding = format!(
            "{}\n{}",
            src.issuer.as_deref().unwrap_or(""),
            src.client_id.as_deref().unwrap_or("")
        )
        .into_bytes();
        let binding_id = self.binding_id(&binding);
        let dpop = src.dpop.unwrap_or_default();
        let ident = format!(
            "{name}|{policy_id}|{dpop:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
            client
                .as_ref()
                .map(|c| (&c.client_id, &c.redirect_uri.text, &c.scope, c.userinfo)),
            client
                .as_ref()
                .map(|c| c.post_logout_redirect_uri.as_ref().map(|u| &u.text)),
            client.as_ref().map(|c| c.client_secret.is_some()),
            src.client_secret
                .as_ref()
                .map(|s| oauth2_core::session::short_hash(&s.0)),
            introspection_client.as_ref().map(|(id, _)| id),
            binding_id
        );
        if let Some(p) = self.provs.iter().find(|p| p.ident == ident) {
            return Ok(p.clone());
        }
        let p = Arc::new(Prov {
            index,
            name: name.to_string(),
            policy,
            policy_id,
            token_validation,
            introspection_client,
            client,
            binding,
            binding_id,
            dpop,
            ident,
        });
        self.provs.push(p.clone());
        Ok(p)
    }

    /// The number of a session binding (issuer and client id).
    fn binding_id(&mut self, binding: &[u8]) -> u32 {
        match self.bindings.iter().position(|b| b == binding) {
            Some(i) => i as u32,
            None => {
                self.bindings.push(binding.to_vec());
                (self.bindings.len() - 1) as u32
            }
        }
    }

    pub fn cache_bytes(&self) -> usize {
        self.cache_bytes.unwrap_or(DEFAULT_TOKEN_CACHE)
    }
}

pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(60);
pub const DEFAULT_JWKS_REFRESH: Duration = Duration::from_secs(3600);
pub const DEFAULT_PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);

type Setter = fn(&mut LocConf, &[&str], &ConfCtx) -> Result<(), ConfError>;

/// What a setter may need from the configuration being read.
pub struct ConfCtx {
    prefix: PathBuf,
    cf: *mut ngx_conf_t,
}

impl ConfCtx {
    /// A URI directive's value: a path or an absolute URL, possibly with
    /// variables (compiled here; checked for its shape without them).
    fn uri(&self, text: &str) -> Result<UriValue, ConfError> {
        if !text.contains('$') {
            config::parse_path_or_url(text)?;
            return Ok(UriValue::plain(text));
        }
        let shape_ok = text.starts_with('/')
            || text.starts_with("http://")
            || text.starts_with("https://")
            || text.starts_with('$');
        if !shape_ok || text.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(invalid!("invalid URI \"{text}\""));
        }
        // SAFETY: cf is the configuration being read; the value, the
        // compiled complex value and what nginx allocates for it live in its
        // pool, as long as the configuration.
        unsafe {
            let pool = (*self.cf).pool;
            let value = ngx_pcalloc(pool, std::mem::size_of::<ngx_str_t>()) as *mut ngx_str_t;
            let cv = ngx_pcalloc(pool, std::mem::size_of::<ngx_http_complex_value_t>())
                as *mut ngx_http_complex_value_t;
            let Some(v) = ngx_str_t::from_bytes(pool, text.as_bytes()) else {
                return Err(invalid!("out of memory"));
            };
            if value.is_null() || cv.is_null() {
                return Err(invalid!("out of memory"));
            }
            *value = v;
            let mut ccv: ngx_http_compile_complex_value_t = std::mem::zeroed();
            ccv.cf = self.cf;
            ccv.value = value;
            ccv.complex_value = cv;
            if ngx_http_compile_complex_value(&mut ccv) != NGX_OK as isize {
                return Err(invalid!("invalid variables in \"{text}\""));
            }
            Ok(UriValue {
                text: text.to_string(),
                cv: NonNull::new(cv),
            })
        }
    }

    fn full_path(&self, p: &str) -> PathBuf {
        let path = PathBuf::from(p);
        if path.is_absolute() {
            path
        } else {
            self.prefix.join(path)
        }
    }

    /// Read a file at configuration time (master process, `nginx -t`).
    fn read(&self, p: &str) -> Result<Vec<u8>, String> {
        let full = self.full_path(p);
        std::fs::read(&full).map_err(|e| format!("cannot read \"{}\": {}", full.display(), e))
    }
}

fn once<T>(slot: &mut Option<T>, v: T) -> Result<(), ConfError> {
    if slot.is_some() {
        return Err(ConfError::Duplicate);
    }
    *slot = Some(v);
    Ok(())
}

fn set_issuer(c: &mut LocConf, a: &[&str], _: &ConfCtx) -> Result<(), ConfError> {
    config::parse_http_url(a[0])?;
    once(&mut c.issuer, a[0].to_string())
}

fn set_jwks_uri(c: &mut LocConf, a: &[&str], _: &ConfCtx) -> Result<(), ConfError> {
    config::parse_http_url(a[0])?;
    once(&mut c.jwks_uri, a[0].to_string())
}

fn set_jwks_file(c: &mut LocConf, a: &[&str], cx: &ConfCtx) -> Result<(), ConfError> {
    let doc = cx.read(a[0])?;
    let set = KeySet::parse(&doc, KeySource::File).map_err(|e| format!("\"{}\": {}", a[0], e))?;
    once(&mut c.jwks_file, (a[0].to_string(), Arc::new(set)))
}

fn set_client_id(c: &mut LocConf, a: &[&str], _: &ConfCtx) -> Result<(), ConfError> {
    if a[0].is_empty() || a[0].bytes().any(|b| b.is_ascii_control()) {
        return Err(invalid!("invalid client id \"{}\"", a[0]));
    }
    once(&mut c.client_id, a[0].to_string())
}

fn set_audience(c: &mut LocConf, a: &[&str], _: &ConfCtx) -> Result<(), ConfError> {
    if let Some(bad) = a.iter().find(|v| v.is_empty()) {
        return Err(invalid!("invalid audience \"{bad}\""));
    }
    once(&mut c.audience, a.iter().map(|s| s.to_string()).collect())
}

fn set_algorithms(c: &mut LocConf, a: &[&str], _: &ConfCtx) -> Result<(), ConfError> {
    let algs = a
        .iter()
        .map(|s| config::parse_algorithm(s))
        .collect::<Result<Vec<_>, _>>()?;
    once(&mut c.algorithms, algs)
}

fn set_token_validation(c: &mut LocConf, a: &[&str], _: &ConfCtx) -> Result<(), ConfError> {
    once(&mut c.token_validation, TokenValidation::parse(a[0])?)
}

/// `oauth2_session_store cookie | shm zone=NAME:SIZE | redis ...;`.
fn set_session_store(c: &mut LocConf, a: &[&str], cx: &ConfCtx) -> Result<(), ConfError> {
    let store = match a {
        ["cookie"] => Store::Cookie,
        ["shm", zone] => {
            let spec = zone.strip_prefix("zone=").ok_or_else(|| {
                invalid!("invalid parameter \"{zone}\", it must be \"zone=NAME:SIZE\"")
            })?;
            let (name, size) = spec
                .split_once(':')
                .filter(|(n, _)| !n.is_empty())
                .ok_or_else(|| invalid!("invalid zone \"{spec}\", it must be \"NAME:SIZE\""))?;
            let size = config::parse_size(size)? as usize;
            let tag = std::ptr::addr_of_mut!(crate::ngx_http_oauth2_module).cast();
            // SAFETY: cx.cf is the configuration being read; the tag is
            // this module's static.
            let z = unsafe { ShmZone::add(cx.cf, name, size, tag) }.map_err(|e| invalid!("{e}"))?;
            Store::Shm(z)
        }
        ["redis", url, params @ ..] => Store::Redis(redis_store(url, params, cx)?),
        _ => {
            return Err(invalid!(
            "invalid value \"{}\", it must be \"cookie\", \"shm zone=NAME:SIZE\" or \"redis URL\"",
            a.join(" ")
        ))
        }
    };
    if c.session_store.is_some() {
        return Err(ConfError::Duplicate);
    }
    c.session_store = Some(store);
    Ok(())
}

/// `redis URL [password_file=PATH] [prefix=STRING]`: `redis://host:port/db`,
/// `rediss://…` (TLS) or `unix:/path`; the password read now.
fn redis_store(url: &str, params: &[&str], cx: &ConfCtx) -> Result<RedisStore, ConfError> {
    let mut password = None;
    let mut prefix = "oauth2:".to_string();
    for p in params {
        if let Some(path) = p.strip_prefix("password_file=") {
            let raw = cx.read(path)?;
            let text = String::from_utf8(raw).map_err(|_| invalid!("\"{path}\" is not UTF-8"))?;
            let pw = text.lines().next().unwrap_or("").trim().to_string();
            if pw.is_empty() {
                return Err(invalid!("\"{path}\" holds no password"));
            }
            password = Some(pw);
        } else if let Some(v) = p.strip_prefix("prefix=") {
            if v.is_empty() || v.bytes().any(|b| b.is_ascii_control() || b == b' ') {
                return Err(invalid!("invalid prefix \"{v}\""));
            }
            prefix = v.to_string();
        } else {
            return Err(invalid!("invalid parameter \"{p}\""));
        }
    }
    let text = match url.strip_prefix("unix:") {
        Some(path) if path.starts_with('/') => format!("redis+unix://{path}"),
        Some(_) => return Err(invalid!("invalid Redis socket \"{url}\"")),
        None => url.to_string(),
    };
    let mut u = url::Url::parse(&text).map_err(|_| invalid!("invalid Redis URL \"{url}\""))?;
    if !matches!(u.scheme(), "redis" | "rediss" | "redis+unix") {
        return Err(invalid!(
            "invalid Redis URL \"{url}\": the scheme must be redis://, rediss:// or unix:/path"
        ));
    }
    if u.scheme() != "redis+unix" && u.host_str().is_none_or(str::is_empty) {
        return Err(invalid!("invalid Redis URL \"{url}\": no host"));
    }
    if u.password().is_some() && password.is_some() {
        return Err(invalid!(
            "the Redis URL has a password and so has \"password_file\""
        ));
    }
    let mut display = u.clone();
    let _ = display.set_password(None);
    if let Some(pw) = password {
        if u.scheme() == "redis+unix" {
            u.query_pairs_mut().append_pair("pass", &pw);
        } else if u.set_password(Some(&pw)).is_err() {
            return Err(invalid!("invalid Redis URL \"{url}\""));
        }
    }
    Ok(RedisStore {
        spec: StoreSpec {
            url: u.to_string(),
            display: display.to_string(),
        },
        prefix,
        index: usize::MAX,
    })
}

fn set_dpop(c: &mut LocConf, a: &[&str], _: &ConfCtx) -> Result<(), ConfError> {
    once(&mut c.dpop, DpopMode::parse(a[0])?)
}

fn set_require_claim(c: &mut LocConf, a: &[&str], _: &ConfCtx) -> Result<(), ConfError> {
    let rule = ClaimRule::parse(a[0], &a[1..])?;
    c.require_claims.get_or_insert_with(Vec::new).push(rule);
    Ok(())
}

fn set_require_scope(c: &mut LocConf, a: &[&str], _: &ConfCtx) -> Result<(), ConfError> {
    config::check_scopes(a)?;
    c.require_scopes
        .get_or_insert_with(Vec::new)
        .extend(a.iter().map(|s| s.to_string()));
    Ok(())
}

fn set_token_cache(c: &mut LocConf, a: &[&str], _: &ConfCtx) -> Result<(), ConfError> {
    let bytes = if a[0] == "off" {
        0
    } else {
        config::parse_size(a[0])? as usize
    };
    once(&mut c.token_cache, bytes)
}

fn set_duration(slot: &mut Option<Duration>, v: &str, min: Duration) -> Result<(), ConfError> {
    let d = config::parse_duration(v)?;
    if d < min {
        return Err(invalid!(
            "\"{v}\" is too small, the minimum is {}ms",
            min.as_millis()
        ));
    }
    once(slot, d)
}

fn set_clock_skew(c: &mut LocConf, a: &[&str], _: &ConfCtx) -> Result<(), ConfError> {
    set_duration(&mut c.clock_skew, a[0], Duration::ZERO)
}

fn set_jwks_refresh(c: &mut LocConf, a: &[&str], _: &ConfCtx) -> Result<(), ConfError> {
    set_duration(&mut c.jwks_refresh, a[0], Duration::from_secs(1))
}

fn set_provider_timeout(c: &mut LocConf, a: &[&str], _: &ConfCtx) -> Result<(), ConfError> {
    set_duration(&mut c.provider_timeout, a[0], Duration::from_millis(1))
}

fn set_ssl_trusted_certificate(c: &mut LocConf, a: &[&str], cx: &ConfCtx) -> Result<(), ConfError> {
    let pem = cx.read(a[0])?;
    match reqwest::Certificate::from_pem_bundle(&pem) {
        Ok(v) if !v.is_empty() => {}
        _ => return Err(invalid!("\"{}\" holds no PEM certificate", a[0])),
    }
    once(
        &mut c.ssl_trusted_certificate,
        (a[0].to_string(), Arc::new(pem)),
    )
}

fn set_realm(c: &mut LocConf, a: &[&str], _: &ConfCtx) -> Result<(), ConfError> {
    if a[0].bytes().any(|b| b.is_ascii_control()) {
        return Err("the realm must not contain control characters".into());
    }
    once(&mut c.realm, a[0].to_string())
}

fn set_auth(c: &mut LocConf, a: &[&str], _: &ConfCtx) -> Result<(), ConfError> {
    let v = match a {
        ["on"] => Auth::On,
        ["off"] => Auth::Off,
        names => {
            for n in names {
                if !provider_name(n) || *n == "on" || *n == "off" {
                    return Err(invalid!(
                        "invalid value \"{n}\", it must be \"on\", \"off\" or provider names"
                    ));
                }
            }
            Auth::Named(names.iter().map(|n| n.to_string()).collect())
        }
    };
    once(&mut c.auth, v)
}

fn provider_name(n: &str) -> bool {
    !n.is_empty()
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

fn set_on_failure(c: &mut LocConf, a: &[&str], _: &ConfCtx) -> Result<(), ConfError> {
    once(&mut c.on_failure, OnFailure::parse(a[0])?)
}

fn set_client_secret(c: &mut LocConf, a: &[&str], _: &ConfCtx) -> Result<(), ConfError> {
    if a[0].is_empty() {
        return Err("the secret is empty".into());
    }
    once(&mut c.client_secret, Secret(Arc::new(a[0].to_string())))
}

fn set_client_secret_file(c: &mut LocConf, a: &[&str], cx: &ConfCtx) -> Result<(), ConfError> {
    let raw = cx.read(a[0])?;
    let s = String::from_utf8(raw).map_err(|_| format!("\"{}\" is not UTF-8", a[0]))?;
    let s = s.trim_end_matches(['\r', '\n']).to_string();
    if s.is_empty() || s.contains('\n') {
        return Err(invalid!("\"{}\" must hold the secret on one line", a[0]));
    }
    once(&mut c.client_secret, Secret(Arc::new(s)))
}

fn set_redirect_uri(c: &mut LocConf, a: &[&str], cx: &ConfCtx) -> Result<(), ConfError> {
    if c.redirect_uri.is_some() {
        return Err(ConfError::Duplicate);
    }
    c.redirect_uri = Some(cx.uri(a[0])?);
    Ok(())
}

fn set_userinfo(c: &mut LocConf, a: &[&str], _: &ConfCtx) -> Result<(), ConfError> {
    once(&mut c.userinfo, config::parse_on_off(a[0])?)
}

fn set_scope(c: &mut LocConf, a: &[&str], _: &ConfCtx) -> Result<(), ConfError> {
    config::check_scopes(a)?;
    once(&mut c.scope, a.iter().map(|s| s.to_string()).collect())
}

fn set_cookie_secret_file(c: &mut LocConf, a: &[&str], cx: &ConfCtx) -> Result<(), ConfError> {
    let raw = cx.read(a[0])?;
    let text = String::from_utf8(raw).map_err(|_| format!("\"{}\" is not UTF-8", a[0]))?;
    let keys = CookieKeys::parse(&text).map_err(|e| format!("\"{}\": {e}", a[0]))?;
    once(
        &mut c.cookie_secret_file,
        (a[0].to_string(), Arc::new(keys)),
    )
}

fn cookie_token(v: &str) -> bool {
    !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn set_cookie_name(c: &mut LocConf, a: &[&str], _: &ConfCtx) -> Result<(), ConfError> {
    if !cookie_token(a[0]) {
        return Err(invalid!("invalid cookie name \"{}\"", a[0]));
    }
    once(&mut c.cookie_name, a[0].to_string())
}

fn set_cookie_domain(c: &mut LocConf, a: &[&str], _: &ConfCtx) -> Result<(), ConfError> {
    if !a[0]
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        || a[0].is_empty()
    {
        return Err(invalid!("invalid cookie domain \"{}\"", a[0]));
    }
    once(&mut c.cookie_domain, a[0].to_string())
}

fn set_cookie_path(c: &mut LocConf, a: &[&str], _: &ConfCtx) -> Result<(), ConfError> {
    if !a[0].starts_with('/') || a[0].bytes().any(|b| b.is_ascii_control() || b == b';') {
        return Err(invalid!("invalid cookie path \"{}\"", a[0]));
    }
    once(&mut c.cookie_path, a[0].to_string())
}

fn set_cookie_samesite(c: &mut LocConf, a: &[&str], _: &ConfCtx) -> Result<(), ConfError> {
    let v = match a[0] {
        "lax" => "Lax",
        "strict" => "Strict",
        "none" => "None",
        _ => {
            return Err(invalid!(
                "invalid value \"{}\", it must be \"lax\", \"strict\" or \"none\"",
                a[0]
            ))
        }
    };
    once(&mut c.cookie_samesite, v)
}

fn set_cookie_secure(c: &mut LocConf, a: &[&str], _: &ConfCtx) -> Result<(), ConfError> {
    once(&mut c.cookie_secure, config::parse_on_off(a[0])?)
}

fn set_session_lifetime(c: &mut LocConf, a: &[&str], _: &ConfCtx) -> Result<(), ConfError> {
    set_duration(&mut c.session_lifetime, a[0], Duration::from_secs(1))
}

fn set_refresh(c: &mut LocConf, a: &[&str], _: &ConfCtx) -> Result<(), ConfError> {
    once(&mut c.refresh, config::parse_on_off(a[0])?)
}

fn set_post_logout(c: &mut LocConf, a: &[&str], cx: &ConfCtx) -> Result<(), ConfError> {
    if c.post_logout_redirect_uri.is_some() {
        return Err(ConfError::Duplicate);
    }
    c.post_logout_redirect_uri = Some(cx.uri(a[0])?);
    Ok(())
}

impl LocConf {
    /// Inherit what is not set here; where `oauth2_auth` is on, check that
    /// the configuration is complete and register the provider.
    fn merge(&mut self, prev: &LocConf, main: &mut MainConf) -> Result<(), ConfError> {
        macro_rules! inherit {
            ($($f:ident),*) => { $( if self.$f.is_none() { self.$f = prev.$f.clone(); } )* };
        }
        inherit!(
            issuer,
            jwks_uri,
            jwks_file,
            client_id,
            audience,
            algorithms,
            token_validation,
            clock_skew,
            jwks_refresh,
            provider_timeout,
            ssl_trusted_certificate,
            realm,
            auth,
            on_failure,
            client_secret,
            redirect_uri,
            scope,
            cookie_secret_file,
            cookie_name,
            cookie_domain,
            cookie_path,
            cookie_samesite,
            cookie_secure,
            session_lifetime,
            refresh,
            post_logout_redirect_uri,
            userinfo,
            session_store,
            dpop,
            require_claims,
            require_scopes,
            token_cache
        );
        if let Some(n) = self.token_cache {
            main.cache_bytes = Some(main.cache_bytes.map_or(n, |m| m.max(n)));
        }
        if self.endpoint == Some(Endpoint::ResourceMetadata) {
            // the server's providers, for their issuers; nothing else needed
            let mut provs = Vec::new();
            if self.issuer.is_some() {
                provs.push(main.prov(self, "", false)?);
            }
            provs.extend(main.all_named()?);
            self.runtime = Some(Arc::new(LocRuntime {
                provs,
                cache_id: 0,
                session: None,
                claim_rules: Vec::new(),
                required_scopes: self.require_scopes.clone().unwrap_or_default(),
                dpop: DpopMode::Off,
                dpop_algs: String::new(),
            }));
            return Ok(());
        }
        if self.endpoint == Some(Endpoint::Status) {
            // a content handler of its own: no provider, no session
            main.has_status = true;
            self.runtime = None;
            return Ok(());
        }
        let auth = self.endpoint.is_none() && matches!(self.auth, Some(Auth::On | Auth::Named(_)));
        if !auth && self.endpoint.is_none() {
            self.runtime = None;
            return Ok(());
        }
        let named = match (&self.auth, self.endpoint) {
            (Some(Auth::Named(names)), None) => Some(names.clone()),
            _ => None,
        };
        let can_redirect =
            auth && matches!(self.on_failure(), OnFailure::Redirect | OnFailure::Auto);
        let provs: Vec<Arc<Prov>> = match named {
            Some(names) => {
                let mut v = Vec::new();
                for n in &names {
                    v.push(main.named_prov(n, auth)?);
                }
                if can_redirect && self.cookie_secret_file.is_none() {
                    return Err(invalid!(
                        "a location with \"oauth2_auth {}\" can redirect to the provider and needs \"oauth2_cookie_secret_file\" (APIs: use \"oauth2_on_failure 401\")",
                        names.join(" ")
                    ));
                }
                if can_redirect && !v.iter().any(|p| p.client.is_some()) {
                    return Err(invalid!(
                        "a location with \"oauth2_auth {}\" can redirect to the provider and needs a provider with \"client_id\" and \"issuer\" (APIs: use \"oauth2_on_failure 401\")",
                        names.join(" ")
                    ));
                }
                v
            }
            None if self.endpoint.is_some() && self.issuer.is_none() && !main.named.is_empty() => {
                // an endpoint of named providers only: it serves them all
                if self.cookie_secret_file.is_none() {
                    return Err(invalid!(
                        "{} needs \"oauth2_cookie_secret_file\"",
                        endpoint_name(self.endpoint)
                    ));
                }
                let v = main.all_named()?;
                if !v.iter().any(|p| p.client.is_some()) {
                    return Err(invalid!(
                        "{} needs a provider with \"client_id\" and \"issuer\"",
                        endpoint_name(self.endpoint)
                    ));
                }
                v
            }
            None => {
                if can_redirect || self.endpoint.is_some() {
                    let what = match self.endpoint {
                        Some(_) => format!("{} needs", endpoint_name(self.endpoint)),
                        None => format!(
                            "a location with \"oauth2_auth on\" and \"oauth2_on_failure {}\" can redirect to the provider and needs",
                            if self.on_failure() == OnFailure::Auto { "auto" } else { "redirect" }
                        ),
                    };
                    let hint = if self.endpoint.is_none() {
                        " (APIs: use \"oauth2_on_failure 401\")"
                    } else {
                        ""
                    };
                    for (missing, name) in [
                        (
                            self.cookie_secret_file.is_none(),
                            "oauth2_cookie_secret_file",
                        ),
                        (self.client_id.is_none(), "oauth2_client_id"),
                        (self.issuer.is_none(), "oauth2_issuer"),
                    ] {
                        if missing {
                            return Err(invalid!("{what} \"{name}\"{hint}"));
                        }
                    }
                }
                let mut v = vec![main.prov(self, "", auth)?];
                if self.endpoint.is_some() {
                    // the callback and sign-out also serve every named provider
                    v.extend(main.all_named()?);
                }
                v
            }
        };
        let cache_id = if provs.len() == 1 {
            provs[0].policy_id
        } else {
            let ids: Vec<String> = provs.iter().map(|p| p.policy_id.to_string()).collect();
            main.policy_id(&format!("set:{}", ids.join(",")))
        };
        let mut session = self.session_conf();
        match session.as_mut().map(|s| &mut s.store) {
            Some(Store::Shm(z)) if !main.session_zones.iter().any(|x| x.name == z.name) => {
                main.session_zones.push(z.clone());
            }
            Some(Store::Redis(rs)) => {
                rs.index = match main.stores.iter().position(|x| x.url == rs.spec.url) {
                    Some(i) => i,
                    None => {
                        main.stores.push(rs.spec.clone());
                        main.stores.len() - 1
                    }
                };
            }
            _ => {}
        }
        if matches!(
            self.endpoint,
            Some(Endpoint::BackchannelLogout | Endpoint::FrontchannelLogout)
        ) && !session.as_ref().is_some_and(|s| s.store.is_server_side())
        {
            return Err(invalid!(
                "{} needs a server-side session store (\"oauth2_session_store shm zone=NAME:SIZE\" or \"redis URL\")",
                endpoint_name(self.endpoint)
            ));
        }
        let dpop = provs.iter().map(|p| p.dpop).max().unwrap_or_default();
        let mut algs: Vec<Algorithm> = Vec::new();
        for p in provs.iter().filter(|p| p.dpop != DpopMode::Off) {
            for a in &p.policy.algorithms {
                if !algs.contains(a) {
                    algs.push(*a);
                }
            }
        }
        if dpop != DpopMode::Off && oauth2_core::dpop::algs(&algs).is_empty() {
            return Err(invalid!(
                "\"oauth2_dpop\" needs an asymmetric algorithm in \"oauth2_algorithms\""
            ));
        }
        self.runtime = Some(Arc::new(LocRuntime {
            provs,
            cache_id,
            session,
            claim_rules: self.require_claims.clone().unwrap_or_default(),
            required_scopes: self.require_scopes.clone().unwrap_or_default(),
            dpop,
            dpop_algs: oauth2_core::dpop::algs(&algs),
        }));
        Ok(())
    }

    fn session_conf(&self) -> Option<SessionConf> {
        let (_, keys) = self.cookie_secret_file.as_ref()?;
        Some(SessionConf {
            keys: keys.clone(),
            cookie_name: self
                .cookie_name
                .clone()
                .unwrap_or_else(|| "oauth2_session".into()),
            cookie_domain: self.cookie_domain.clone(),
            cookie_path: self.cookie_path.clone().unwrap_or_else(|| "/".into()),
            samesite: self.cookie_samesite.unwrap_or("Lax"),
            secure: self.cookie_secure.unwrap_or(true),
            lifetime: self
                .session_lifetime
                .unwrap_or(Duration::from_secs(8 * 3600))
                .as_secs(),
            refresh: self.refresh.unwrap_or(true),
            store: self.session_store.clone().unwrap_or(Store::Cookie),
        })
    }

    pub fn on_failure(&self) -> OnFailure {
        self.on_failure.unwrap_or(OnFailure::Auto)
    }
}

/// `create_loc_conf` for the module context.
pub unsafe extern "C" fn create_loc_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    crate::guard(std::ptr::null_mut(), || {
        // SAFETY: nginx calls this with a valid configuration whose pool
        // outlives the configuration; `allocate` registers a cleanup that
        // drops the value with the pool.
        let pool = unsafe { ngx::core::Pool::from_ngx_pool((*cf).pool) };
        pool.allocate::<LocConf>(LocConf::default()) as *mut c_void
    })
}

/// `merge_loc_conf` for the module context.
pub unsafe extern "C" fn merge_loc_conf(
    cf: *mut ngx_conf_t,
    prev: *mut c_void,
    conf: *mut c_void,
) -> *mut c_char {
    crate::guard(ngx::core::NGX_CONF_ERROR, || {
        // SAFETY: nginx passes the two LocConf objects that create_loc_conf
        // made for this module; they are distinct and valid during the call.
        let (prev, this) = unsafe { (&*(prev as *const LocConf), &mut *(conf as *mut LocConf)) };
        // SAFETY: cf is the valid configuration being merged.
        let Some(main) = (unsafe { Module::main_conf_mut(&*cf) }) else {
            return ngx::core::NGX_CONF_ERROR;
        };
        match this.merge(prev, main) {
            Ok(()) => ngx::core::NGX_CONF_OK,
            Err(msg) => {
                ngx_conf_log_error!(NGX_LOG_EMERG, cf, "oauth2: {}", msg);
                ngx::core::NGX_CONF_ERROR
            }
        }
    })
}

/// One directive handler for every directive: `cmd.post` points at the
/// setter (a plain `fn`) and its name is the directive's.
unsafe extern "C" fn set_directive(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    crate::guard(ngx::core::NGX_CONF_ERROR, || {
        // SAFETY: nginx passes the command from our table, the LocConf made by
        // create_loc_conf, and the configuration being read; `post` was set
        // from a `Setter` in `COMMANDS` below.
        let (cmd, conf) = unsafe { (&*cmd, &mut *(conf as *mut LocConf)) };
        let setter: Setter = unsafe { std::mem::transmute::<*mut c_void, Setter>(cmd.post) };
        let name = cmd.name.to_str().unwrap_or("?");
        // SAFETY: cf is the configuration being read.
        unsafe { run_setter(cf, name, setter, conf) }
    })
}

/// Call `setter` with the directive's arguments (`cf->args` after the
/// name); errors as nginx words them.
///
/// # Safety
/// `cf` must be the configuration being read, its `args` the directive's.
unsafe fn run_setter(
    cf: *mut ngx_conf_t,
    name: &str,
    setter: Setter,
    conf: &mut LocConf,
) -> *mut c_char {
    // SAFETY: by the contract above; cf->args holds ngx_str_t, the name first.
    let (raw, prefix): (&[ngx_str_t], String) = unsafe {
        let cfr = &*cf;
        (
            (*cfr.args).as_slice(),
            (*cfr.cycle).conf_prefix.to_str().unwrap_or("").to_string(),
        )
    };
    let mut args = Vec::with_capacity(raw.len().saturating_sub(1));
    for a in &raw[1..] {
        match a.to_str() {
            Ok(s) => args.push(s),
            Err(_) => {
                ngx_conf_log_error!(NGX_LOG_EMERG, cf, "invalid UTF-8 in \"{}\" directive", name);
                return ngx::core::NGX_CONF_ERROR;
            }
        }
    }
    let cx = ConfCtx {
        prefix: PathBuf::from(prefix),
        cf,
    };
    match setter(conf, &args, &cx) {
        Ok(()) => ngx::core::NGX_CONF_OK,
        Err(ConfError::Duplicate) => {
            ngx_conf_log_error!(NGX_LOG_EMERG, cf, "\"{}\" directive is duplicate", name);
            ngx::core::NGX_CONF_ERROR
        }
        Err(msg) => {
            ngx_conf_log_error!(NGX_LOG_EMERG, cf, "{} in \"{}\" directive", msg, name);
            ngx::core::NGX_CONF_ERROR
        }
    }
}

/// What an `oauth2_provider` block takes: these `oauth2_*` directives,
/// without their prefix.
const PROVIDER_DIRECTIVES: &[&str] = &[
    "issuer",
    "jwks_uri",
    "jwks_file",
    "client_id",
    "client_secret",
    "client_secret_file",
    "redirect_uri",
    "post_logout_redirect_uri",
    "scope",
    "userinfo",
    "audience",
    "algorithms",
    "token_validation",
    "clock_skew",
    "jwks_refresh",
    "provider_timeout",
    "ssl_trusted_certificate",
    "dpop",
];

/// `oauth2_provider NAME { ... }` (http level): the block's directives go
/// into a provider configuration of their own, kept by name.
unsafe extern "C" fn set_provider_block(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    _conf: *mut c_void,
) -> *mut c_char {
    crate::guard(ngx::core::NGX_CONF_ERROR, || {
        // SAFETY: cf is the configuration being read; args[1] is the name.
        let args: &[ngx_str_t] = unsafe { (*(*cf).args).as_slice() };
        let name = args[1].to_str().unwrap_or("").to_string();
        if !provider_name(&name) {
            ngx_conf_log_error!(NGX_LOG_EMERG, cf, "invalid provider name \"{}\"", name);
            return ngx::core::NGX_CONF_ERROR;
        }
        // SAFETY: cf is the configuration being read (http level).
        let Some(main) = (unsafe { Module::main_conf_mut(&*cf) }) else {
            return ngx::core::NGX_CONF_ERROR;
        };
        if main.named.iter().any(|(n, _)| *n == name) {
            ngx_conf_log_error!(NGX_LOG_EMERG, cf, "duplicate provider \"{}\"", name);
            return ngx::core::NGX_CONF_ERROR;
        }
        let mut pc = Box::new(LocConf::default());
        // SAFETY: the block is parsed with our handler and our LocConf as
        // its conf (as nginx's `types` blocks are), then cf is put back.
        let rv = unsafe {
            let (handler, handler_conf) = ((*cf).handler, (*cf).handler_conf);
            (*cf).handler = Some(provider_directive);
            (*cf).handler_conf = (&mut *pc as *mut LocConf).cast();
            let rv = ngx_conf_parse(cf, std::ptr::null_mut());
            (*cf).handler = handler;
            (*cf).handler_conf = handler_conf;
            rv
        };
        if rv != ngx::core::NGX_CONF_OK {
            return rv;
        }
        // SAFETY: as above.
        let Some(main) = (unsafe { Module::main_conf_mut(&*cf) }) else {
            return ngx::core::NGX_CONF_ERROR;
        };
        main.named.push((name, *pc));
        ngx::core::NGX_CONF_OK
    })
}

/// One directive inside an `oauth2_provider` block.
unsafe extern "C" fn provider_directive(
    cf: *mut ngx_conf_t,
    _dummy: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    crate::guard(ngx::core::NGX_CONF_ERROR, || {
        // SAFETY: cf->args holds the directive, its name first; conf is the
        // block's LocConf (set_provider_block).
        let (raw, conf): (&[ngx_str_t], &mut LocConf) =
            unsafe { ((*(*cf).args).as_slice(), &mut *(conf as *mut LocConf)) };
        let name = raw[0].to_str().unwrap_or("?");
        let full = format!("oauth2_{name}");
        // SAFETY: COMMANDS is only read after nginx has loaded the module.
        let commands = unsafe { &*std::ptr::addr_of!(COMMANDS) };
        let cmd = commands
            .iter()
            .find(|c| c.name.to_str().ok() == Some(full.as_str()));
        let (Some(cmd), true) = (cmd, PROVIDER_DIRECTIVES.contains(&name)) else {
            ngx_conf_log_error!(
                NGX_LOG_EMERG,
                cf,
                "unknown directive \"{}\" in \"oauth2_provider\" block",
                name
            );
            return ngx::core::NGX_CONF_ERROR;
        };
        let n = raw.len() - 1;
        let t = cmd.type_ as u32;
        let count_ok = if t & NGX_CONF_1MORE != 0 {
            n >= 1
        } else {
            n == 1
        };
        if !count_ok {
            ngx_conf_log_error!(
                NGX_LOG_EMERG,
                cf,
                "invalid number of arguments in \"{}\" directive",
                name
            );
            return ngx::core::NGX_CONF_ERROR;
        }
        // SAFETY: `post` of our commands is a Setter (see `command!`).
        let setter: Setter = unsafe { std::mem::transmute::<*mut c_void, Setter>(cmd.post) };
        // SAFETY: cf is the configuration being read.
        unsafe { run_setter(cf, name, setter, conf) }
    })
}

/// `oauth2_callback;` and `oauth2_sign_out;`: make the location a content
/// handler of ours.
unsafe extern "C" fn set_endpoint(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    crate::guard(ngx::core::NGX_CONF_ERROR, || {
        // SAFETY: nginx passes our command, our LocConf and the configuration.
        let (cmd, conf) = unsafe { (&*cmd, &mut *(conf as *mut LocConf)) };
        let ep = match cmd.name.as_bytes() {
            b"oauth2_callback" => Endpoint::Callback,
            b"oauth2_sign_out" => Endpoint::SignOut,
            b"oauth2_backchannel_logout" => Endpoint::BackchannelLogout,
            b"oauth2_frontchannel_logout" => Endpoint::FrontchannelLogout,
            b"oauth2_resource_metadata" => Endpoint::ResourceMetadata,
            _ => Endpoint::Status,
        };
        let handler: ngx::ffi::ngx_http_handler_pt = Some(crate::content_handler);
        if conf.endpoint.is_some() {
            ngx_conf_log_error!(
                NGX_LOG_EMERG,
                cf,
                "\"{}\" directive is duplicate",
                cmd.name.to_str().unwrap_or("?")
            );
            return ngx::core::NGX_CONF_ERROR;
        }
        conf.endpoint = Some(ep);
        // SAFETY: cf is the location being read; its core loc conf exists.
        match NgxHttpCoreModule::location_conf_mut(unsafe { &*cf }) {
            Some(clcf) => {
                clcf.handler = handler;
                if ep == Endpoint::ResourceMetadata {
                    // its URL goes into every 401 of the server: a path
                    if !clcf.regex.is_null() || clcf.named() != 0 {
                        ngx_conf_log_error!(
                            NGX_LOG_EMERG,
                            cf,
                            "\"oauth2_resource_metadata\" needs a location with a path (location = /.well-known/oauth-protected-resource)"
                        );
                        return ngx::core::NGX_CONF_ERROR;
                    }
                    let path = clcf.name.to_str().unwrap_or("/").to_string();
                    // SAFETY: cf is the configuration being read.
                    let srv = NgxHttpCoreModule::server_conf(unsafe { &*cf })
                        .map(|s| s as *const _ as usize);
                    // SAFETY: as above.
                    let main = unsafe { Module::main_conf_mut(&*cf) };
                    if let (Some(srv), Some(main)) = (srv, main) {
                        main.resource_metadata.push((srv, path));
                    }
                }
                ngx::core::NGX_CONF_OK
            }
            None => ngx::core::NGX_CONF_ERROR,
        }
    })
}

const ANY: u32 = NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF;

macro_rules! command {
    ($name:literal, $args:expr, $setter:expr) => {
        ngx_command_t {
            name: ngx_string!($name),
            type_: (ANY | $args) as ngx_uint_t,
            set: Some(set_directive),
            conf: NGX_HTTP_LOC_CONF_OFFSET,
            offset: 0,
            post: $setter as Setter as *mut c_void,
        }
    };
}

/// A location-only directive without arguments that makes the location one
/// of our endpoints (see `set_endpoint`).
macro_rules! endpoint {
    ($name:literal) => {
        ngx_command_t {
            name: ngx_string!($name),
            type_: (NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS) as ngx_uint_t,
            set: Some(set_endpoint),
            conf: NGX_HTTP_LOC_CONF_OFFSET,
            offset: 0,
            post: std::ptr::null_mut(),
        }
    };
}

pub static mut COMMANDS: [ngx_command_t; 41] = [
    command!("oauth2_issuer", NGX_CONF_TAKE1, set_issuer),
    command!("oauth2_jwks_uri", NGX_CONF_TAKE1, set_jwks_uri),
    command!("oauth2_jwks_file", NGX_CONF_TAKE1, set_jwks_file),
    command!("oauth2_client_id", NGX_CONF_TAKE1, set_client_id),
    command!("oauth2_audience", NGX_CONF_1MORE, set_audience),
    command!("oauth2_algorithms", NGX_CONF_1MORE, set_algorithms),
    command!(
        "oauth2_token_validation",
        NGX_CONF_TAKE1,
        set_token_validation
    ),
    command!("oauth2_clock_skew", NGX_CONF_TAKE1, set_clock_skew),
    command!("oauth2_jwks_refresh", NGX_CONF_TAKE1, set_jwks_refresh),
    command!(
        "oauth2_provider_timeout",
        NGX_CONF_TAKE1,
        set_provider_timeout
    ),
    command!(
        "oauth2_ssl_trusted_certificate",
        NGX_CONF_TAKE1,
        set_ssl_trusted_certificate
    ),
    command!("oauth2_realm", NGX_CONF_TAKE1, set_realm),
    command!("oauth2_auth", NGX_CONF_1MORE, set_auth),
    command!("oauth2_on_failure", NGX_CONF_TAKE1, set_on_failure),
    command!("oauth2_client_secret", NGX_CONF_TAKE1, set_client_secret),
    command!(
        "oauth2_client_secret_file",
        NGX_CONF_TAKE1,
        set_client_secret_file
    ),
    command!("oauth2_redirect_uri", NGX_CONF_TAKE1, set_redirect_uri),
    command!("oauth2_scope", NGX_CONF_1MORE, set_scope),
    command!("oauth2_userinfo", NGX_CONF_FLAG, set_userinfo),
    command!(
        "oauth2_cookie_secret_file",
        NGX_CONF_TAKE1,
        set_cookie_secret_file
    ),
    command!("oauth2_cookie_name", NGX_CONF_TAKE1, set_cookie_name),
    command!("oauth2_cookie_domain", NGX_CONF_TAKE1, set_cookie_domain),
    command!("oauth2_cookie_path", NGX_CONF_TAKE1, set_cookie_path),
    command!(
        "oauth2_cookie_samesite",
        NGX_CONF_TAKE1,
        set_cookie_samesite
    ),
    command!("oauth2_cookie_secure", NGX_CONF_FLAG, set_cookie_secure),
    command!(
        "oauth2_session_lifetime",
        NGX_CONF_TAKE1,
        set_session_lifetime
    ),
    command!("oauth2_refresh", NGX_CONF_FLAG, set_refresh),
    command!(
        "oauth2_post_logout_redirect_uri",
        NGX_CONF_TAKE1,
        set_post_logout
    ),
    command!("oauth2_require_claim", NGX_CONF_2MORE, set_require_claim),
    command!("oauth2_require_scope", NGX_CONF_1MORE, set_require_scope),
    command!("oauth2_token_cache", NGX_CONF_TAKE1, set_token_cache),
    command!("oauth2_session_store", NGX_CONF_1MORE, set_session_store),
    command!("oauth2_dpop", NGX_CONF_TAKE1, set_dpop),
    ngx_command_t {
        name: ngx_string!("oauth2_provider"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_BLOCK | NGX_CONF_TAKE1) as ngx_uint_t,
        set: Some(set_provider_block),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: std::ptr::null_mut(),
    },
    endpoint!("oauth2_callback"),
    endpoint!("oauth2_sign_out"),
    endpoint!("oauth2_status"),
    endpoint!("oauth2_backchannel_logout"),
    endpoint!("oauth2_frontchannel_logout"),
    endpoint!("oauth2_resource_metadata"),
    ngx_command_t::empty(),
];
