//! `proxy_config` on the way in and out: validation, and `opaque` header
//! values, which are write-only — redacted (`is_set: true`, no `value`) in
//! every response, and carried over from the stored config when an update
//! names the same rule and header without a value.

use serde_json::{Map, Value};

use crate::error::ApiError;

/// `proxy_config` must be an object the egress proxy can enforce.
pub fn validate(config: Option<Value>) -> Result<Option<Value>, ApiError> {
    if let Some(value) = &config {
        if !value.is_object() {
            return Err(ApiError::Validation(
                "proxy_config must be an object".into(),
            ));
        }
        sandpit_egress::Policy::from_proxy_config(Some(value))
            .map_err(|e| ApiError::Validation(e.to_string()))?;
    }
    Ok(config)
}

fn is_opaque(header: &Map<String, Value>) -> bool {
    header.get("type").and_then(Value::as_str) == Some("opaque")
}

/// Every header object of every rule, with its rule's name.
fn headers_mut(config: &mut Value) -> Vec<(String, &mut Map<String, Value>)> {
    let Some(Value::Array(rules)) = config.get_mut("rules") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for rule in rules.iter_mut() {
        let name = rule
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if let Some(Value::Array(headers)) = rule.get_mut("headers") {
            for header in headers.iter_mut().filter_map(Value::as_object_mut) {
                out.push((name.clone(), header));
            }
        }
    }
    out
}

/// The config as the API shows it: opaque values removed.
pub fn redact(mut config: Value) -> Value {
    for (_, header) in headers_mut(&mut config) {
        if is_opaque(header) {
            let set = header
                .remove("value")
                .is_some_and(|v| v.as_str().is_some_and(|s| !s.is_empty()));
            header.insert("is_set".into(), Value::Bool(set));
        }
    }
    config
}

/// Fill opaque headers without a value from `old` (same rule and header
/// name); drop the response-only `is_set`.
pub fn carry_over(new: &mut Value, old: Option<&Value>) {
    let mut old = old.cloned().unwrap_or(Value::Null);
    let previous: Vec<(String, String, Value)> = headers_mut(&mut old)
        .into_iter()
        .filter(|(_, h)| is_opaque(h))
        .filter_map(|(rule, h)| {
            let name = h.get("name")?.as_str()?.to_ascii_lowercase();
            Some((rule, name, h.get("value")?.clone()))
        })
        .collect();
    for (rule, header) in headers_mut(new) {
        header.remove("is_set");
        let missing = header.get("value").is_none_or(|v| v.is_null());
        if !is_opaque(header) || !missing {
            continue;
        }
        let name = header
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_ascii_lowercase();
        if let Some((_, _, value)) = previous.iter().find(|(r, n, _)| *r == rule && *n == name) {
            header.insert("value".into(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn opaque_values_are_redacted_and_carried_over() {
        let stored = json!({"rules": [{"name": "r", "match_hosts": ["h"], "headers": [
            {"name": "X-O", "type": "opaque", "value": "s3cr3t"},
            {"name": "X-P", "type": "plaintext", "value": "p"}
        ]}]});
        let shown = redact(stored.clone());
        assert!(!shown.to_string().contains("s3cr3t"));
        assert_eq!(shown["rules"][0]["headers"][0]["is_set"], json!(true));
        assert_eq!(shown["rules"][0]["headers"][1]["value"], json!("p"));
        let mut update = shown.clone();
        carry_over(&mut update, Some(&stored));
        assert_eq!(update, stored);
        let mut renamed = json!({"rules": [{"name": "other", "match_hosts": ["h"], "headers": [
            {"name": "X-O", "type": "opaque"}]}]});
        carry_over(&mut renamed, Some(&stored));
        assert!(validate(Some(renamed)).is_err());
    }
}
