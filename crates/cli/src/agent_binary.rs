//! The static agent binary, built by `build.rs` and embedded here so that one
//! `sandpit` file is all a host needs.

pub static STATIC_AGENT: &[u8] = include_bytes!(env!("SANDPIT_STATIC_AGENT"));
