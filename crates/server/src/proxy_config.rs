//! `proxy_config` on the way in and out: validation, and `opaque` values
//! (headers, `aws` credentials, a `gcp` service account JSON), which are
//! write-only — redacted (`is_set: true`, no `value`) in
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

/// Every typed value of every rule — header objects, an `aws` rule's
/// credentials, a `gcp` rule's service account — with its rule's name and
/// a key naming it in the rule (`header:<lowercase name>`, `aws:<field>`,
/// `gcp:<field>`).
fn values_mut(config: &mut Value) -> Vec<(String, String, &mut Map<String, Value>)> {
    let Some(config) = config.as_object_mut() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (field, list) in config.iter_mut() {
        let Value::Array(items) = list else { continue };
        match field.as_str() {
            "rules" => out.extend(rule_values_mut(items)),
            "callbacks" => out.extend(callback_values_mut(items)),
            _ => {}
        }
    }
    out
}

/// A callback's `request_headers`, named by the callback's URL.
fn callback_values_mut(callbacks: &mut [Value]) -> Vec<(String, String, &mut Map<String, Value>)> {
    let mut out = Vec::new();
    for cb in callbacks.iter_mut().filter_map(Value::as_object_mut) {
        let url = cb
            .get("url")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if let Some(Value::Array(headers)) = cb.get_mut("request_headers") {
            for header in headers.iter_mut().filter_map(Value::as_object_mut) {
                let key = header_key(header);
                out.push((format!("callback:{url}"), key, header));
            }
        }
    }
    out
}

fn header_key(header: &Map<String, Value>) -> String {
    let name = header
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_ascii_lowercase();
    format!("header:{name}")
}

/// Header objects and `aws`/`gcp` credentials of rules, named by the rule.
fn rule_values_mut(rules: &mut [Value]) -> Vec<(String, String, &mut Map<String, Value>)> {
    let mut out = Vec::new();
    for rule in rules.iter_mut().filter_map(Value::as_object_mut) {
        let name = rule
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        for (field, value) in rule.iter_mut() {
            match (field.as_str(), value) {
                ("headers", Value::Array(headers)) => {
                    for header in headers.iter_mut().filter_map(Value::as_object_mut) {
                        let key = header_key(header);
                        out.push((name.clone(), key, header));
                    }
                }
                (provider @ ("aws" | "gcp"), Value::Object(auth)) => {
                    for (key, value) in auth.iter_mut() {
                        if let Value::Object(value) = value {
                            out.push((name.clone(), format!("{provider}:{key}"), value));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// The config as the API shows it: opaque values removed.
pub fn redact(mut config: Value) -> Value {
    for (_, _, header) in values_mut(&mut config) {
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
    let previous: Vec<(String, String, Value)> = values_mut(&mut old)
        .into_iter()
        .filter(|(_, _, h)| is_opaque(h))
        .filter_map(|(rule, key, h)| Some((rule, key, h.get("value")?.clone())))
        .collect();
    for (rule, key, header) in values_mut(new) {
        header.remove("is_set");
        let missing = header.get("value").is_none_or(|v| v.is_null());
        if !is_opaque(header) || !missing {
            continue;
        }
        if let Some((_, _, value)) = previous.iter().find(|(r, k, _)| *r == rule && *k == key) {
            header.insert("value".into(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn callback_request_headers_are_redacted_and_carried_over() {
        let stored = json!({"callbacks": [{"url": "https://cb.test/x", "match_hosts": ["a.test"],
            "ttl_seconds": 60, "request_headers": [{"name": "X-Auth", "type": "opaque", "value": "cbsecret"}]}]});
        let shown = redact(stored.clone());
        assert!(!shown.to_string().contains("cbsecret"));
        let mut update = shown.clone();
        carry_over(&mut update, Some(&stored));
        assert_eq!(update, stored);
    }

    #[test]
    fn aws_credentials_are_redacted_and_carried_over() {
        let stored = json!({"rules": [{"name": "aws", "type": "aws", "aws": {
            "access_key_id": {"type": "opaque", "value": "AKIDSECRET"},
            "secret_access_key": {"type": "workspace_secret", "value": "{AWS_SK}"}
        }}]});
        let shown = redact(stored.clone());
        assert!(!shown.to_string().contains("AKIDSECRET"));
        assert_eq!(
            shown["rules"][0]["aws"]["access_key_id"]["is_set"],
            json!(true)
        );
        assert_eq!(
            shown["rules"][0]["aws"]["secret_access_key"]["value"],
            json!("{AWS_SK}")
        );
        let mut update = shown.clone();
        carry_over(&mut update, Some(&stored));
        assert_eq!(update, stored);
        assert!(validate(Some(update)).is_ok());
    }

    #[test]
    fn gcp_service_accounts_are_redacted_and_carried_over() {
        let key = include_str!("../../egress/src/gcp/testdata/sa-key.pem");
        let sa = json!({"type": "service_account", "client_email": "r@p.iam.gserviceaccount.com",
                        "private_key": key})
        .to_string();
        let stored = json!({"rules": [{"name": "gcp", "type": "gcp", "gcp": {
            "service_account_json": {"type": "opaque", "value": sa},
            "scopes": ["https://www.googleapis.com/auth/devstorage.read_only"]
        }}]});
        assert!(validate(Some(stored.clone())).is_ok());
        let shown = redact(stored.clone());
        assert!(!shown.to_string().contains("PRIVATE KEY"));
        assert!(!shown.to_string().contains("r@p.iam"));
        let shown_sa = &shown["rules"][0]["gcp"]["service_account_json"];
        assert_eq!(shown_sa, &json!({"type": "opaque", "is_set": true}));
        let mut update = shown.clone();
        carry_over(&mut update, Some(&stored));
        assert_eq!(update, stored);
        let plaintext = json!({"rules": [{"name": "gcp", "type": "gcp", "gcp": {
            "service_account_json": {"type": "plaintext", "value": sa}}}]});
        assert!(matches!(
            validate(Some(plaintext)),
            Err(ApiError::Validation(_))
        ));
    }

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
