//! The error every backend reports, as data.

use std::error::Error as StdError;

use thiserror::Error;

/// Errors a runtime backend reports. They cross the helper-process boundary as
/// data, so they carry strings rather than source errors.
#[derive(Debug, Error, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RuntimeError {
    #[error("invalid sandbox spec: {0}")]
    InvalidSpec(String),
    #[error("sandbox {0} is already running")]
    AlreadyRunning(String),
    #[error("sandbox {0} is not running")]
    NotRunning(String),
    #[error("failed to set up {stage}: {message}")]
    Setup { stage: String, message: String },
    #[error("failed to tear down {stage}: {message}")]
    Teardown { stage: String, message: String },
    #[error("runtime helper failed: {0}")]
    Helper(String),
}

/// An error and its sources, joined with `": "`, for errors that become
/// data.
pub fn chain(err: &dyn StdError) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        let inner_text = inner.to_string();
        // Transparent wrappers repeat their source's message.
        if !text.ends_with(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn chains_sources() {
        let err = Outer(std::io::Error::other("inner"));
        assert_eq!(chain(&err), "outer: inner");
    }
}
