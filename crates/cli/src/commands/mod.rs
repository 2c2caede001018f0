//! One module per verb.

pub mod admin;
pub mod bench;
pub mod runtime_helper;
pub mod serve;
pub mod tunnel;
