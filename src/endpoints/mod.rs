//! The module's content handlers: one file per endpoint. `lib.rs` routes a
//! location's requests here by its `Endpoint`.

pub mod callback;
pub mod sign_out;
pub mod status;
