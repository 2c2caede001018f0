//! `proxy_config`: a sandbox's (or template's) egress policy, as the API
//! takes and shows it and as the store keeps it (JSON text).
//!
//! These are the wire shapes only: what each field *means* (and the checks
//! beyond JSON types: host patterns, header names, secret names, service
//! account keys) belongs to the egress proxy, which turns a [`ProxyConfig`]
//! into its validated runtime policy (`sandpit_egress::Policy::from_config`).
//!
//! `opaque` values are write-only: [`ProxyConfig::redacted`] drops them (and
//! says `is_set`) for every response, and [`ProxyConfig::keep_opaque_from`]
//! fills the ones an update leaves out from the stored config.
//!
//! Fields a version does not know are kept where the SDK may send them (on a
//! rule, a callback and the `aws`/`gcp` objects), so a config round-trips.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `proxy_config` (every field optional; absent and `null` are the same).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProxyConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_control: Option<AccessControl>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<Rule>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_proxy: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callbacks: Option<Vec<Callback>>,
}

/// Why a JSON value is not a `proxy_config`: the JSON path and serde's
/// reason (`rules[0].match_hosts[1]: invalid type: ...`).
pub use crate::json_path::ParseError;

impl ProxyConfig {
    /// Parse a JSON value, naming where it is wrong.
    pub fn from_value(value: &Value) -> Result<Self, ParseError> {
        crate::json_path::from_object("proxy_config", value)
    }

    /// The config as JSON (what the store keeps).
    pub fn to_value(&self) -> Value {
        // Only strings, bools, integers, lists and string-keyed maps: this
        // cannot fail.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The enabled rules.
    pub fn enabled_rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().flatten().filter(|r| r.is_enabled())
    }

    /// The config as the API shows it: every `opaque` value replaced by
    /// `is_set`.
    pub fn redacted(&self) -> Self {
        let mut out = self.clone();
        for (_, secret) in out.secrets_mut() {
            secret.redact();
        }
        out
    }

    /// An update's config: `opaque` values given without a value take the
    /// stored one of the same rule (or callback) and field, if it was
    /// opaque; the response-only `is_set` is dropped everywhere.
    pub fn keep_opaque_from(&mut self, stored: &ProxyConfig) {
        let mut stored = stored.clone();
        let previous: Vec<(SecretSlot, String)> = stored
            .secrets_mut()
            .into_iter()
            .filter(|(_, s)| s.kind() == SecretKind::Opaque)
            .filter_map(|(slot, s)| Some((slot, s.value.clone()?)))
            .collect();
        for (slot, secret) in self.secrets_mut() {
            secret.is_set = None;
            if secret.kind() != SecretKind::Opaque || secret.value.is_some() {
                continue;
            }
            if let Some((_, value)) = previous.iter().find(|(s, _)| *s == slot) {
                secret.value = Some(value.clone());
            }
        }
    }

    /// Every secret-typed value with the place it is in.
    fn secrets_mut(&mut self) -> Vec<(SecretSlot, &mut Secret)> {
        let mut out = Vec::new();
        for rule in self.rules.iter_mut().flatten() {
            let owner = rule.name.clone();
            for header in rule.headers.iter_mut().flatten() {
                let field = header.key();
                out.push(((owner.clone(), field), &mut header.secret));
            }
            if let Some(aws) = &mut rule.aws {
                for (field, secret) in [
                    ("aws:access_key_id", &mut aws.access_key_id),
                    ("aws:secret_access_key", &mut aws.secret_access_key),
                ] {
                    if let Some(secret) = secret {
                        out.push(((owner.clone(), field.into()), secret));
                    }
                }
            }
            if let Some(secret) = rule
                .gcp
                .as_mut()
                .and_then(|g| g.service_account_json.as_mut())
            {
                out.push(((owner.clone(), "gcp:service_account_json".into()), secret));
            }
        }
        for callback in self.callbacks.iter_mut().flatten() {
            let owner = format!("callback:{}", callback.url.as_deref().unwrap_or_default());
            for header in callback.request_headers.iter_mut().flatten() {
                let field = header.key();
                out.push(((owner.clone(), field), &mut header.secret));
            }
        }
        out
    }
}

/// (rule name or `callback:<url>`, field: `header:<lowercase name>`,
/// `aws:<field>`, `gcp:<field>`): where a secret is.
type SecretSlot = (String, String);

/// `access_control`: host, glob, IP, CIDR and `~regex` entries, each with
/// an optional `:port`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AccessControl {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_list: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny_list: Option<Vec<String>>,
}

/// What a rule is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// Signs what it covers with SigV4 (`aws`).
    Aws,
    /// Sets a Google bearer token on what it covers (`gcp`).
    Gcp,
    /// Headers for every intercepted request; no `match_hosts`.
    Attribution,
    /// Any other name: a plain header rule.
    #[serde(untagged)]
    Other(String),
}

/// One `rules[]` entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// Required and non-empty (checked by the egress proxy, so a missing
    /// name gets its message).
    #[serde(default)]
    pub name: String,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<RuleKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_hosts: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_paths: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Vec<Header>>,
    /// The template-era form: plaintext headers by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inject_headers: Option<BTreeMap<String, String>>,
    /// Plaintext variables set in the sandbox while the rule is enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_vars: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsAuth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcp: Option<GcpAuth>,
    /// Fields this version does not know, kept as sent.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl Rule {
    /// Rules are enabled unless `enabled: false`.
    pub fn is_enabled(&self) -> bool {
        self.enabled != Some(false)
    }
}

/// A header to set: its name and where its value comes from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Header {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(flatten)]
    pub secret: Secret,
}

impl Header {
    /// The header's place among its rule's: `header:<lowercase name>`.
    fn key(&self) -> String {
        let name = self.name.as_deref().unwrap_or_default();
        format!("header:{}", name.to_ascii_lowercase())
    }
}

/// How a value is given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretKind {
    /// Text shown back by the API; may hold `${NAME}` secret references.
    #[default]
    Plaintext,
    /// A write-only literal: never shown back.
    Opaque,
    /// Names one workspace secret (`NAME`, `{NAME}` or `${NAME}`).
    WorkspaceSecret,
}

/// A typed value: `{"type": "plaintext" | "opaque" | "workspace_secret",
/// "value": ...}`; shown back as `{"type": "opaque", "is_set": true}` when
/// opaque.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Secret {
    /// Absent: plaintext (for headers; credentials must say).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<SecretKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Response only: whether an opaque value is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_set: Option<bool>,
}

impl Secret {
    pub fn kind(&self) -> SecretKind {
        self.kind.unwrap_or_default()
    }

    /// Drop an opaque value, saying whether there was one.
    pub fn redact(&mut self) {
        if self.kind() == SecretKind::Opaque {
            let set = self.value.take().is_some_and(|v| !v.is_empty());
            self.is_set = Some(set);
        }
    }
}

/// The `aws` object of an `aws` rule: static credentials (`role_arn` is
/// refused by this server; other fields the SDK may send are kept).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AwsAuth {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// The `gcp` object of a `gcp` rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GcpAuth {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_json: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// Fields the proxy does not support (it refuses them).
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// One `callbacks[]` entry: a URL the proxy asks for headers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Callback {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_hosts: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_request: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_headers: Option<Vec<Header>>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> ProxyConfig {
        ProxyConfig::from_value(&value).unwrap()
    }

    #[test]
    fn the_sdk_shapes_round_trip() {
        let sent = json!({
            "rules": [
                {"name": "aws", "type": "aws", "enabled": true,
                 "aws": {"access_key_id": {"type": "workspace_secret", "value": "{AK}"},
                         "secret_access_key": {"type": "opaque", "value": "sk"}},
                 "env_vars": {"AWS_ACCESS_KEY_ID": "dummy"}},
                {"name": "gcp", "type": "gcp",
                 "gcp": {"service_account_json": {"type": "opaque", "value": "{}"},
                         "scopes": ["https://s/1"]}},
                {"name": "attr", "type": "attribution",
                 "headers": [{"name": "X-A", "type": "plaintext", "value": "a"}]},
                {"name": "h", "match_hosts": ["*.x.test"], "match_paths": ["/v1/*"],
                 "headers": [{"name": "X-U", "value": "untyped"}],
                 "inject_headers": {"X-B": "Bearer ${KEY}"},
                 "description": "kept though unknown", "type": "custom"}
            ],
            "access_control": {"allow_list": ["a.test", "10.0.0.0/8:8080"], "deny_list": []},
            "no_proxy": ["skip.test"],
            "callbacks": [{"url": "https://cb.test/x", "match_hosts": ["a.test"],
                           "ttl_seconds": 60, "full_request": true,
                           "request_headers": [{"name": "X-Auth", "type": "opaque", "value": "c"}]}]
        });
        let config = parse(sent.clone());
        assert_eq!(config.to_value(), sent);
        let rules = config.rules.as_ref().unwrap();
        assert_eq!(rules[0].kind, Some(RuleKind::Aws));
        assert_eq!(rules[3].kind, Some(RuleKind::Other("custom".into())));
        assert_eq!(rules[3].other["description"], json!("kept though unknown"));
        assert_eq!(
            rules[3].headers.as_ref().unwrap()[0].secret.kind(),
            SecretKind::Plaintext
        );
    }

    #[test]
    fn null_is_absent() {
        let config = parse(json!({"rules": null, "access_control": null, "callbacks": null}));
        assert_eq!(config, ProxyConfig::default());
        assert_eq!(config.to_value(), json!({}));
    }

    #[test]
    fn invalid_input_names_the_field() {
        for (bad, says) in [
            (json!([]), "proxy_config: must be an object"),
            (json!({"rules": {}}), "rules"),
            (
                json!({"rules": [{"name": "a", "match_hosts": "h"}]}),
                "rules[0]",
            ),
            (
                json!({"access_control": {"allow_list": [1]}}),
                "access_control.allow_list[0]",
            ),
            (json!({"access_control": "x"}), "access_control"),
            (
                json!({"callbacks": [{"url": "u", "ttl_seconds": -1}]}),
                "callbacks[0]",
            ),
            (
                json!({"rules": [{"name": "a", "headers": [{"name": "X", "type": "nope"}]}]}),
                "unknown variant",
            ),
            (
                json!({"rules": [{"name": "a", "env_vars": {"X": 1}}]}),
                "rules[0]",
            ),
        ] {
            let err = ProxyConfig::from_value(&bad).unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
            assert!(err.starts_with("proxy_config"), "{err}");
        }
    }

    #[test]
    fn opaque_values_are_redacted_and_kept_by_an_update() {
        let stored = parse(json!({
            "rules": [{"name": "r", "match_hosts": ["h"], "headers": [
                {"name": "X-O", "type": "opaque", "value": "s3cr3t"},
                {"name": "X-P", "type": "plaintext", "value": "p"}]},
                {"name": "aws", "type": "aws", "aws": {
                    "access_key_id": {"type": "opaque", "value": "AKID"},
                    "secret_access_key": {"type": "workspace_secret", "value": "{SK}"}}},
                {"name": "gcp", "type": "gcp", "gcp": {
                    "service_account_json": {"type": "opaque", "value": "{\"k\": 1}"}}}],
            "callbacks": [{"url": "https://cb.test", "request_headers": [
                {"name": "X-C", "type": "opaque", "value": "cbsecret"}]}]
        }));
        let shown = stored.redacted().to_value();
        let text = shown.to_string();
        for secret in ["s3cr3t", "AKID", "\\\"k\\\"", "cbsecret"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(
            shown["rules"][0]["headers"][0],
            json!({"name": "X-O", "type": "opaque", "is_set": true})
        );
        assert_eq!(shown["rules"][0]["headers"][1]["value"], json!("p"));
        assert_eq!(
            shown["rules"][1]["aws"]["secret_access_key"]["value"],
            json!("{SK}")
        );
        let mut update = parse(shown);
        update.keep_opaque_from(&stored);
        assert_eq!(update, stored);
        // Another rule's name does not take the value.
        let mut renamed = parse(json!({"rules": [{"name": "other", "headers": [
            {"name": "X-O", "type": "opaque"}]}]}));
        renamed.keep_opaque_from(&stored);
        assert_eq!(
            renamed.rules.unwrap()[0].headers.as_ref().unwrap()[0]
                .secret
                .value,
            None
        );
    }

    #[test]
    fn an_empty_opaque_value_is_not_set() {
        let mut secret = Secret {
            kind: Some(SecretKind::Opaque),
            value: Some(String::new()),
            is_set: None,
        };
        secret.redact();
        assert_eq!((secret.value, secret.is_set), (None, Some(false)));
    }
}
