//! Parsing a JSON value into a wire type with the place of the first
//! error named (`proxy_config.rules[0].enabled: invalid type: ...`).

use serde::de::DeserializeOwned;
use serde_json::Value;

/// Why a JSON value is not the wire type: where (below `root`) and serde's
/// reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The field the value was sent as (`proxy_config`, `mount_config`).
    pub root: &'static str,
    /// Empty: the value itself.
    pub path: String,
    pub reason: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.path.as_str() {
            "" => write!(f, "{}: {}", self.root, self.reason),
            path => write!(f, "{}.{path}: {}", self.root, self.reason),
        }
    }
}

impl std::error::Error for ParseError {}

/// Parse `value` (which must be an object) as `T`, naming where it is
/// wrong.
pub fn from_object<T: DeserializeOwned>(
    root: &'static str,
    value: &Value,
) -> Result<T, ParseError> {
    if !value.is_object() {
        return Err(ParseError {
            root,
            path: String::new(),
            reason: "must be an object".into(),
        });
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        ParseError {
            root,
            path: if path == "." { String::new() } else { path },
            reason: e.into_inner().to_string(),
        }
    })
}
