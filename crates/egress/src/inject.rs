//! Header injection: `proxy_config.rules` and `no_proxy`.
//!
//! A rule names hosts (`match_hosts`: the same entry kinds as the access
//! lists — exact names, globs, `~regex`), optionally paths (`match_paths`:
//! globs where `*` matches any run of characters, `/` included; none means
//! every path), and headers to set on matching requests. A header is
//! `plaintext` (its value may hold `${NAME}` references to workspace
//! secrets), `opaque` (a write-only literal) or `workspace_secret` (its value
//! names one secret: `NAME`, `{NAME}` or `${NAME}`). The template-era
//! `inject_headers` map is plaintext headers. `attribution` rules (no
//! `match_hosts`) add their headers to every intercepted request but never
//! cause interception themselves. Provider rules authorise what they cover
//! and have default hosts: `aws` ([`crate::sigv4`], `*.amazonaws.com`) and
//! `gcp` ([`crate::gcp`], `*.googleapis.com`).
//!
//! HTTPS to a host some rule matches (and `no_proxy` does not) is
//! intercepted ([`crate::intercept`]); everything else passes through.
//! Header values are resolved when a request is sent, so a secret changed
//! through the API applies to the next request. Values are never logged.

use http::header::{HeaderName, HeaderValue};
use regex::Regex;
use serde_json::{Map, Value};

use crate::callback::Callback;
use crate::gcp::GcpAuth;
use crate::policy::Pattern;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RulesError {
    #[error("proxy_config.{0} must be a list")]
    NotAList(&'static str),
    #[error("proxy_config.rules[{index}]: {reason}")]
    BadRule { index: usize, reason: String },
    #[error("invalid no_proxy entry: {0}")]
    NoProxy(String),
    #[error("proxy_config.callbacks[{index}]: {reason}")]
    BadCallback { index: usize, reason: String },
}

/// Where a header's value comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Literal text and `${NAME}` secret references, in order.
    Template(Vec<Part>),
    /// One workspace secret, whole.
    Secret(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Text(String),
    Secret(String),
}

/// Why a header naming workspace secrets has no value. Never the value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("workspace secret {0} is not set")]
    Missing(String),
    #[error("workspace secret {0} cannot be sent in a header (it holds a line break or another control character)")]
    NotAHeaderValue(String),
}

#[derive(Debug, Clone)]
pub struct Header {
    pub name: HeaderName,
    pub source: Source,
}

/// The credentials of an `aws` rule (`aws_auth`): each an `opaque` value
/// or a `workspace_secret` reference.
#[derive(Debug, Clone)]
pub struct AwsAuth {
    pub access_key_id: Source,
    pub secret_access_key: Source,
}

/// Hosts an `aws` rule covers when it names none.
const AWS_HOSTS: [&str; 2] = ["*.amazonaws.com", "*.amazonaws.com.cn"];

/// How a provider rule authorises the requests it covers.
#[derive(Debug, Clone)]
enum Auth {
    /// `aws` rules sign with SigV4.
    Aws(AwsAuth),
    /// `gcp` rules set a Google OAuth2 bearer token.
    Gcp(GcpAuth),
}

impl Auth {
    /// The hosts a rule of this kind covers when it names none.
    fn default_hosts(&self) -> &'static [&'static str] {
        match self {
            Auth::Aws(_) => &AWS_HOSTS,
            Auth::Gcp(_) => &crate::gcp::HOSTS,
        }
    }
}

#[derive(Debug, Clone)]
struct Rule {
    /// Empty for attribution rules: every intercepted host.
    hosts: Vec<Pattern>,
    paths: Vec<Regex>,
    headers: Vec<Header>,
    auth: Option<Auth>,
}

/// The parsed `rules` and `no_proxy` of one sandbox.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    rules: Vec<Rule>,
    no_proxy: Vec<Pattern>,
    callbacks: Vec<Callback>,
}

impl Rules {
    pub fn from_proxy_config(config: Option<&Value>) -> Result<Self, RulesError> {
        let Some(Value::Object(config)) = config else {
            return Ok(Rules::default());
        };
        let callbacks = list(config, "callbacks")?
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(index, cb)| {
                crate::callback::parse(cb, typed_header)
                    .map_err(|reason| RulesError::BadCallback { index, reason })
            })
            .collect::<Result<_, _>>()?;
        let rules = list(config, "rules")?
            .unwrap_or_default()
            .iter()
            .enumerate()
            .filter_map(|(index, rule)| {
                parse_rule(rule)
                    .map_err(|reason| RulesError::BadRule { index, reason })
                    .transpose()
            })
            .collect::<Result<_, _>>()?;
        let no_proxy = list(config, "no_proxy")?
            .unwrap_or_default()
            .iter()
            .map(|entry| {
                let text = entry.as_str().ok_or(RulesError::NotAList("no_proxy"))?;
                Pattern::parse(text).map_err(|e| RulesError::NoProxy(e.to_string()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Rules {
            rules,
            no_proxy,
            callbacks,
        })
    }

    /// Whether HTTPS to `host` is intercepted: some rule names it and
    /// `no_proxy` does not.
    pub fn intercepts(&self, host: &str) -> bool {
        let named = self
            .rules
            .iter()
            .any(|r| r.hosts.iter().any(|p| p.matches(Some(host), None)))
            || self.callbacks.iter().any(|cb| cb.matches(host));
        named && !self.bypassed(host)
    }

    fn bypassed(&self, host: &str) -> bool {
        self.no_proxy.iter().any(|p| p.matches(Some(host), None))
    }

    /// The headers to set on a request for `host` and `path`, in rule
    /// order (a later rule's header replaces an earlier one's).
    pub fn headers_for(&self, host: &str, path: &str) -> Vec<&Header> {
        self.applying(host, path)
            .into_iter()
            .flat_map(|r| r.headers.iter())
            .collect()
    }

    /// The AWS credentials to sign a request for `host` and `path` with
    /// (the last matching `aws` rule's), if any.
    pub fn aws_for(&self, host: &str, path: &str) -> Option<&AwsAuth> {
        self.applying(host, path)
            .into_iter()
            .filter_map(|r| match &r.auth {
                Some(Auth::Aws(aws)) => Some(aws),
                _ => None,
            })
            .next_back()
    }

    /// The service account to get a bearer token for a request for `host`
    /// and `path` with (the last matching `gcp` rule's), if any.
    pub fn gcp_for(&self, host: &str, path: &str) -> Option<&GcpAuth> {
        self.applying(host, path)
            .into_iter()
            .filter_map(|r| match &r.auth {
                Some(Auth::Gcp(gcp)) => Some(gcp),
                _ => None,
            })
            .next_back()
    }

    /// The callbacks to ask for headers for an intercepted request to `host`.
    pub fn callbacks_for(&self, host: &str) -> Vec<&Callback> {
        if !self.intercepts(host) {
            return Vec::new();
        }
        self.callbacks
            .iter()
            .filter(|cb| cb.matches(host))
            .collect()
    }

    /// Rules that apply to an intercepted request for `host` and `path`.
    fn applying(&self, host: &str, path: &str) -> Vec<&Rule> {
        if !self.intercepts(host) {
            return Vec::new();
        }
        self.rules
            .iter()
            .filter(|r| r.hosts.is_empty() || r.hosts.iter().any(|p| p.matches(Some(host), None)))
            .filter(|r| r.paths.is_empty() || r.paths.iter().any(|re| re.is_match(path)))
            .collect()
    }
}

fn list<'a>(
    config: &'a Map<String, Value>,
    field: &'static str,
) -> Result<Option<&'a [Value]>, RulesError> {
    match config.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => Ok(Some(items.as_slice())),
        Some(_) => Err(RulesError::NotAList(field)),
    }
}

/// One rule; `None` when it is disabled.
fn parse_rule(rule: &Value) -> Result<Option<Rule>, String> {
    let Value::Object(rule) = rule else {
        return Err("a rule must be an object".into());
    };
    match rule.get("name") {
        Some(Value::String(name)) if !name.trim().is_empty() => {}
        _ => return Err("name must be a non-empty string".into()),
    }
    let kind = rule.get("type").and_then(Value::as_str);
    let auth = match kind {
        Some("aws") => Some(Auth::Aws(aws_auth(rule)?)),
        Some("gcp") => Some(Auth::Gcp(crate::gcp::parse(rule)?)),
        _ => None,
    };
    env_vars(rule)?;
    if rule.get("enabled") == Some(&Value::Bool(false)) {
        return Ok(None);
    }
    let attribution = kind == Some("attribution");
    let mut hosts = strings(rule, "match_hosts")?;
    if let (true, Some(auth)) = (hosts.is_empty(), &auth) {
        hosts = auth.default_hosts().iter().map(|h| h.to_string()).collect();
    }
    if hosts.is_empty() && !attribution {
        return Err("match_hosts must be a non-empty list of host patterns".into());
    }
    let hosts = hosts
        .iter()
        .map(|h| Pattern::parse(h).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let paths = strings(rule, "match_paths")?
        .iter()
        .map(|p| path_glob(p))
        .collect::<Result<_, _>>()?;
    Ok(Some(Rule {
        hosts,
        paths,
        headers: headers(rule)?,
        auth,
    }))
}

/// A rule's `env_vars` (set in the sandbox by the server) must be an
/// object of variable names to strings.
fn env_vars(rule: &Map<String, Value>) -> Result<(), String> {
    match rule.get("env_vars") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Object(vars)) => {
            for (name, value) in vars {
                let valid = !name.is_empty()
                    && !name.starts_with(|c: char| c.is_ascii_digit())
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid || !value.is_string() || value.as_str().is_some_and(|v| v.contains('\0'))
                {
                    return Err(format!(
                        "env_vars.{name} must be a variable name with a string value"
                    ));
                }
            }
            Ok(())
        }
        Some(_) => Err("env_vars must be an object of variable names to strings".into()),
    }
}

/// The `aws` object of an `aws` rule: static credentials only (there is no
/// AWS STS to assume a `role_arn` through).
fn aws_auth(rule: &Map<String, Value>) -> Result<AwsAuth, String> {
    let Some(Value::Object(aws)) = rule.get("aws") else {
        return Err("an aws rule needs an 'aws' object".into());
    };
    if aws.get("role_arn").is_some_and(|v| !v.is_null()) {
        return Err(
            "aws.role_arn is not supported by this server: give access_key_id and secret_access_key"
                .into(),
        );
    }
    let credential = |field: &str| -> Result<Source, String> {
        let item = aws
            .get(field)
            .ok_or_else(|| format!("aws.{field} is required"))?;
        let kind = item.get("type").and_then(Value::as_str).unwrap_or("");
        if !matches!(kind, "opaque" | "workspace_secret") {
            return Err(format!(
                "aws.{field} must be an opaque value or a workspace_secret reference"
            ));
        }
        let value = item.get("value").and_then(Value::as_str);
        source(kind, value).map_err(|e| format!("aws.{field}: {e}"))
    };
    Ok(AwsAuth {
        access_key_id: credential("access_key_id")?,
        secret_access_key: credential("secret_access_key")?,
    })
}

fn strings(rule: &Map<String, Value>, field: &str) -> Result<Vec<String>, String> {
    match rule.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("{field} must be a list of strings"))
            })
            .collect(),
        Some(_) => Err(format!("{field} must be a list of strings")),
    }
}

fn path_glob(glob: &str) -> Result<Regex, String> {
    if !glob.starts_with('/') && !glob.starts_with('*') {
        return Err(format!("match_paths entry '{glob}' must start with '/'"));
    }
    let mut re = String::from("^");
    for c in glob.chars() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    Regex::new(&re).map_err(|e| e.to_string())
}

fn headers(rule: &Map<String, Value>) -> Result<Vec<Header>, String> {
    let mut out = Vec::new();
    match rule.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for item in items {
                out.push(typed_header(item)?);
            }
        }
        Some(_) => return Err("headers must be a list".into()),
    }
    match rule.get("inject_headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (name, value) in map {
                let value = value
                    .as_str()
                    .ok_or_else(|| format!("inject_headers.{name} must be a string"))?;
                out.push(Header {
                    name: header_name(name)?,
                    source: Source::Template(template(value)?),
                });
            }
        }
        Some(_) => return Err("inject_headers must be an object".into()),
    }
    Ok(out)
}

fn header_name(name: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("'{name}' is not a header name"))
}

fn typed_header(item: &Value) -> Result<Header, String> {
    let name = item
        .get("name")
        .and_then(Value::as_str)
        .ok_or("a header needs a name")?;
    let name = header_name(name)?;
    let value = item.get("value").and_then(Value::as_str);
    let kind = item
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("plaintext");
    let source = source(kind, value).map_err(|e| format!("header {name}: {e}"))?;
    Ok(Header { name, source })
}

/// A value of type `kind` (`plaintext`, `opaque`, `workspace_secret`).
fn source(kind: &str, value: Option<&str>) -> Result<Source, String> {
    let value = value.ok_or_else(|| format!("a {kind} value is required"))?;
    match kind {
        "plaintext" => Ok(Source::Template(template(value)?)),
        "opaque" => Ok(Source::Template(vec![Part::Text(checked(value)?)])),
        "workspace_secret" => Ok(Source::Secret(secret_name(value)?)),
        other => Err(format!(
            "type '{other}' is not one of plaintext, opaque, workspace_secret"
        )),
    }
}

/// A literal header value: no control characters.
fn checked(text: &str) -> Result<String, String> {
    match HeaderValue::from_str(text) {
        Ok(_) => Ok(text.to_owned()),
        Err(_) => Err("a header value must not contain control characters".into()),
    }
}

/// `NAME`, `{NAME}` or `${NAME}`.
pub(crate) fn secret_name(value: &str) -> Result<String, String> {
    let v = value.trim();
    let inner = v
        .strip_prefix("${")
        .or_else(|| v.strip_prefix('{'))
        .map(|rest| rest.strip_suffix('}').ok_or(()))
        .unwrap_or(Ok(v))
        .map_err(|_| format!("'{value}' is not a secret name"))?;
    valid_secret_name(inner)
}

/// Secret names: letters, digits and `_`, not starting with a digit.
pub fn valid_secret_name(name: &str) -> Result<String, String> {
    let ok = !name.is_empty()
        && name.len() <= 256
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    match ok {
        true => Ok(name.to_owned()),
        false => Err(format!(
            "'{name}' is not a secret name (letters, digits and '_', not starting with a digit)"
        )),
    }
}

/// Split `Bearer ${KEY}` into text and secret references.
fn template(text: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let end = rest[start..]
            .find('}')
            .ok_or_else(|| format!("unclosed '${{' in '{text}'"))?;
        if start > 0 {
            parts.push(Part::Text(checked(&rest[..start])?));
        }
        parts.push(Part::Secret(valid_secret_name(
            &rest[start + 2..start + end],
        )?));
        rest = &rest[start + end + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(checked(rest)?));
    }
    Ok(parts)
}

impl Source {
    /// The names of the secrets this value needs.
    pub fn secrets(&self) -> Vec<&str> {
        match self {
            Source::Secret(name) => vec![name],
            Source::Template(parts) => parts
                .iter()
                .filter_map(|p| match p {
                    Part::Secret(n) => Some(n.as_str()),
                    Part::Text(_) => None,
                })
                .collect(),
        }
    }

    /// The text, given a way to read secrets; `Err(name)` names a secret
    /// that is not set.
    pub fn resolve(&self, secret: impl Fn(&str) -> Option<String>) -> Result<String, String> {
        match self {
            Source::Secret(name) => secret(name).ok_or_else(|| name.clone()),
            Source::Template(parts) => {
                let mut out = String::new();
                for part in parts {
                    match part {
                        Part::Text(t) => out.push_str(t),
                        Part::Secret(n) => out.push_str(&secret(n).ok_or_else(|| n.clone())?),
                    }
                }
                Ok(out)
            }
        }
    }
}

impl Header {
    /// The names of the secrets this header needs.
    pub fn secrets(&self) -> Vec<&str> {
        self.source.secrets()
    }

    /// The value, given a way to read secrets.
    pub fn value(
        &self,
        secret: impl Fn(&str) -> Option<String>,
    ) -> Result<HeaderValue, SecretError> {
        let text = self.source.resolve(&secret).map_err(SecretError::Missing)?;
        let first = self
            .secrets()
            .first()
            .map(|s| s.to_string())
            .unwrap_or_default();
        HeaderValue::from_str(&text).map_err(|_| SecretError::NotAHeaderValue(first))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules(config: Value) -> Rules {
        Rules::from_proxy_config(Some(&config)).unwrap()
    }

    fn names(rules: &Rules, host: &str, path: &str) -> Vec<String> {
        rules
            .headers_for(host, path)
            .iter()
            .map(|h| h.name.to_string())
            .collect()
    }

    #[test]
    fn hosts_and_paths_select_headers() {
        let r = rules(json!({
            "rules": [
                {"name": "a", "match_hosts": ["api.example.test"], "match_paths": ["/v1/*"],
                 "headers": [{"name": "X-A", "type": "plaintext", "value": "a"}]},
                {"name": "b", "match_hosts": ["*.example.test"],
                 "inject_headers": {"X-B": "Bearer ${KEY}"}},
                {"name": "off", "enabled": false, "match_hosts": ["off.test"],
                 "headers": [{"name": "X-Off", "type": "plaintext", "value": "x"}]}
            ],
            "no_proxy": ["skip.example.test"]
        }));
        assert_eq!(names(&r, "api.example.test", "/v1/chat"), ["x-a", "x-b"]);
        assert_eq!(names(&r, "api.example.test", "/v2/chat"), ["x-b"]);
        assert_eq!(names(&r, "other.example.test", "/v1/x"), ["x-b"]);
        assert!(names(&r, "example.test", "/v1/x").is_empty());
        assert!(!r.intercepts("skip.example.test"));
        assert!(!r.intercepts("off.test"));
        assert!(r.intercepts("API.example.test"));
    }

    #[test]
    fn values_resolve_secrets_at_request_time() {
        let r = rules(
            json!({"rules": [{"name": "a", "match_hosts": ["h.test"], "headers": [
                {"name": "X-P", "type": "plaintext", "value": "Bearer ${KEY}!"},
                {"name": "X-O", "type": "opaque", "value": "op"},
                {"name": "X-W", "type": "workspace_secret", "value": "{KEY}"}
            ]}]}),
        );
        let secret = |n: &str| (n == "KEY").then(|| "s3cr3t".to_owned());
        let values: Vec<_> = r
            .headers_for("h.test", "/")
            .iter()
            .map(|h| h.value(secret).unwrap())
            .collect();
        assert_eq!(values, ["Bearer s3cr3t!", "op", "s3cr3t"]);
        let none = |_: &str| None;
        assert_eq!(
            r.headers_for("h.test", "/")[0].value(none),
            Err(SecretError::Missing("KEY".into()))
        );
        let multiline = |_: &str| Some("line\nbreak".to_owned());
        assert_eq!(
            r.headers_for("h.test", "/")[2].value(multiline),
            Err(SecretError::NotAHeaderValue("KEY".into()))
        );
    }

    #[test]
    fn callbacks_and_aws_rules_cause_interception() {
        let r = rules(json!({
            "rules": [{"name": "aws", "type": "aws", "aws": {
                "access_key_id": {"type": "opaque", "value": "A"},
                "secret_access_key": {"type": "workspace_secret", "value": "{S}"}}}],
            "callbacks": [{"url": "https://cb.test/x", "match_hosts": ["*.cb.test"], "ttl_seconds": 60}],
        }));
        assert!(r.intercepts("sqs.us-east-1.amazonaws.com"));
        assert!(r.aws_for("s3.amazonaws.com", "/b/k").is_some());
        assert!(r.aws_for("example.com", "/").is_none());
        assert!(r.intercepts("a.cb.test"));
        assert_eq!(r.callbacks_for("a.cb.test").len(), 1);
        assert!(r.callbacks_for("cb.example").is_empty());
        assert!(!r.intercepts("example.com"));
    }

    #[test]
    fn gcp_rules_cover_google_hosts_or_their_own() {
        let sa = json!({"type": "workspace_secret", "value": "{SA}"});
        let r = rules(
            json!({"rules": [{"name": "g", "type": "gcp", "gcp": {"service_account_json": sa}}]}),
        );
        assert!(r.intercepts("storage.googleapis.com"));
        assert!(r.intercepts("googleapis.com"));
        assert!(r.gcp_for("bigquery.googleapis.com", "/x").is_some());
        assert!(!r.intercepts("googleapis.com.evil.test"));
        assert!(r.gcp_for("example.com", "/").is_none());
        let own = rules(
            json!({"rules": [{"name": "g", "type": "gcp", "match_hosts": ["api.corp.test"],
                                          "gcp": {"service_account_json": sa}}]}),
        );
        assert!(own.gcp_for("api.corp.test", "/").is_some());
        assert!(!own.intercepts("storage.googleapis.com"));
    }

    #[test]
    fn bad_rules_are_refused() {
        for config in [
            json!({"rules": [{"name": "a"}]}),
            json!({"rules": [{"name": "", "match_hosts": ["a"]}]}),
            json!({"rules": [{"name": "a", "match_hosts": ["a"], "match_paths": ["v1"]}]}),
            json!({"rules": [{"name": "a", "match_hosts": ["a"], "headers": [{"name": "bad name", "value": "x"}]}]}),
            json!({"rules": [{"name": "a", "match_hosts": ["a"], "headers": [{"name": "X", "type": "opaque"}]}]}),
            json!({"rules": [{"name": "a", "match_hosts": ["a"], "headers": [{"name": "X", "type": "nope", "value": "v"}]}]}),
            json!({"rules": [{"name": "a", "match_hosts": ["a"], "inject_headers": {"X": "${unclosed"}}]}),
            json!({"rules": [{"name": "a", "match_hosts": ["a"], "headers": [{"name": "X", "value": "a\nb"}]}]}),
            json!({"rules": [{"name": "a", "type": "aws", "aws": {}}]}),
            json!({"rules": [{"name": "a", "type": "aws", "aws": {"role_arn": "arn:aws:iam::1:role/r"}}]}),
            json!({"rules": [{"name": "a", "type": "gcp", "gcp": {}}]}),
            json!({"rules": [{"name": "a", "type": "gcp", "enabled": false,
                              "gcp": {"service_account_json": {"type": "plaintext", "value": "{}"}}}]}),
            json!({"rules": [{"name": "a", "match_hosts": ["a"], "env_vars": {"1X": "v"}}]}),
            json!({"rules": [{"name": "a", "match_hosts": ["a"], "env_vars": {"X": 1}}]}),
            json!({"callbacks": [{"url": "https://x", "match_hosts": ["a"], "ttl_seconds": 59}]}),
            json!({"callbacks": [{"url": "x", "match_hosts": ["a"], "ttl_seconds": 60}]}),
            json!({"callbacks": [{"url": "https://x", "match_hosts": [], "ttl_seconds": 60}]}),
            json!({"callbacks": [{"url": "https://x", "match_hosts": ["a"], "ttl_seconds": 60, "full_request": "yes"}]}),
        ] {
            assert!(Rules::from_proxy_config(Some(&config)).is_err(), "{config}");
        }
    }
}
