//! The module's content handlers: one file per endpoint (the two
//! logout channels share one). `lib.rs` routes a
//! location's requests here by its `Endpoint`.

pub mod callback;
pub mod logout;
pub mod resource;
pub mod sign_out;
pub mod status;
