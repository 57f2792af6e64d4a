//! Protocol logic of ngx_http_oauth2_module, with no nginx types: directive
//! value parsing, JWT validation, key sets and provider metadata, and the
//! access-phase decisions. `cargo test -p oauth2-core` covers it without
//! linking nginx.

pub mod authz;
pub mod cache;
pub mod claims;
pub mod config;
pub mod decide;
pub mod error;
pub mod introspection;
pub mod jwt;
pub mod keys;
pub mod login;
pub mod session;

pub use error::Rejection;
pub use jsonwebtoken::Algorithm;
