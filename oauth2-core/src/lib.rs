//! Protocol logic of ngx_http_oauth2_module, with no nginx types: directive
//! value parsing, JWT validation, key sets and provider metadata, and the
//! access-phase decisions. `cargo test -p oauth2-core` covers it without
//! linking nginx.

pub mod authz;
pub mod cache;
pub mod claims;
pub mod config;
pub mod decide;
pub mod dpop;
pub mod error;
pub mod flights;
pub mod introspection;
pub mod json;
pub mod jwt;
pub mod keys;
pub mod login;
pub mod logout;
pub mod metrics;
pub mod provider;
pub mod resource;
pub mod session;
pub mod shmtable;
pub mod waits;

pub use error::{ConfError, FetchError, Rejection, TokenEndpointError};
pub use jsonwebtoken::Algorithm;
