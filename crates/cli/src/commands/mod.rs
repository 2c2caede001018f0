//! One module per verb.

pub mod runtime_helper;
pub mod serve;
