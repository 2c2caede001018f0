//! One module per verb.

pub mod bench;
pub mod runtime_helper;
pub mod serve;
