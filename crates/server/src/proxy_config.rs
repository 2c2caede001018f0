//! `proxy_config` on the way in and out. The shape is
//! [`sandpit_api::proxy_config::ProxyConfig`]; a config is parsed into it
//! once here, validated by the egress proxy's own parser
//! ([`sandpit_egress::Policy::from_config`]) and stored as its JSON.
//! `opaque` values (headers, `aws` credentials, a `gcp` service account
//! JSON) are write-only: redacted (`is_set: true`, no `value`) in every
//! response, and carried over from the stored config when an update names
//! the same rule and field without a value.

use sandpit_api::proxy_config::ProxyConfig;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// Parse `proxy_config` and check that the egress proxy can enforce it.
pub fn parse(value: &Value) -> Result<ProxyConfig, ApiError> {
    let config = ProxyConfig::from_value(value).map_err(|e| ApiError::Validation(e.to_string()))?;
    sandpit_egress::Policy::from_config(Some(&config))
        .map_err(|e| ApiError::Validation(e.to_string()))?;
    Ok(config)
}

/// A valid `proxy_config`, as it is stored (the typed config's JSON).
pub fn validate(config: Option<Value>) -> Result<Option<Value>, ApiError> {
    config
        .map(|value| Ok(parse(&value)?.to_value()))
        .transpose()
}

/// The config as the API shows it: opaque values removed. A stored config
/// that no longer parses is shown empty rather than unredacted.
pub fn redact(config: Value) -> Value {
    match ProxyConfig::from_value(&config) {
        Ok(config) => config.redacted().to_value(),
        Err(err) => {
            tracing::warn!(error = %err, "stored proxy_config does not parse; showing it empty");
            Value::Object(Map::new())
        }
    }
}

/// Fill opaque values an update leaves out from `old` (same rule and
/// field); drop the response-only `is_set`. A `new` that does not parse is
/// left for [`validate`] to refuse.
pub fn carry_over(new: &mut Value, old: Option<&Value>) {
    let Ok(mut config) = ProxyConfig::from_value(new) else {
        return;
    };
    let old = old
        .and_then(|old| ProxyConfig::from_value(old).ok())
        .unwrap_or_default();
    config.keep_opaque_from(&old);
    *new = config.to_value();
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(result: Result<Option<Value>, ApiError>) -> String {
        match result {
            Err(ApiError::Validation(message)) => message,
            other => panic!("not a validation error: {other:?}"),
        }
    }

    #[test]
    fn configs_are_parsed_once_with_the_field_named() {
        assert_eq!(
            message(validate(Some(json!([])))),
            "proxy_config: must be an object"
        );
        let wrong_type = json!({"rules": [{"name": "a", "match_hosts": ["h"], "enabled": "no"}]});
        let said = message(validate(Some(wrong_type)));
        assert!(said.starts_with("proxy_config.rules[0]"), "{said}");
        let bad_list = json!({"access_control": {"allow_list": "a.test"}});
        assert!(message(validate(Some(bad_list)))
            .starts_with("proxy_config.access_control.allow_list: "));
        let bad_entry = json!({"access_control": {"allow_list": ["bad host!"]}});
        assert!(message(validate(Some(bad_entry))).contains("'bad host!'"));
        // Stored as sent: nulls dropped, unknown rule fields kept.
        let sent = json!({"rules": [{"name": "a", "match_hosts": ["h"], "note": {"x": 1}}],
                          "access_control": null});
        assert_eq!(
            validate(Some(sent)).unwrap(),
            Some(json!({"rules": [{"name": "a", "match_hosts": ["h"], "note": {"x": 1}}]}))
        );
    }

    #[test]
    fn a_config_that_does_not_parse_is_never_shown_unredacted() {
        let corrupt = json!({"rules": [{"name": "r", "enabled": "yes", "headers": [
            {"name": "X-O", "type": "opaque", "value": "s3cr3t"}]}]});
        assert_eq!(redact(corrupt), json!({}));
    }

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
