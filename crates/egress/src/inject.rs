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
use sandpit_api::proxy_config::{self as wire, ProxyConfig, RuleKind, SecretKind};

use crate::callback::{Callback, CallbackError};
use crate::gcp::{GcpAuth, GcpRuleError};
use crate::policy::{EntryError, Pattern};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RulesError {
    #[error("proxy_config.rules[{index}]: {reason}")]
    BadRule { index: usize, reason: RuleError },
    #[error("invalid no_proxy entry: {0}")]
    NoProxy(EntryError),
    #[error("proxy_config.callbacks[{index}]: {reason}")]
    BadCallback { index: usize, reason: CallbackError },
}

/// Why one rule is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RuleError {
    #[error("name must be a non-empty string")]
    NoName,
    #[error("match_hosts must be a non-empty list of host patterns")]
    NoHosts,
    #[error("match_hosts entry {0}")]
    Host(EntryError),
    #[error("match_paths entry '{0}' must start with '/'")]
    Path(String),
    #[error("match_paths entry '{0}': {1}")]
    BadPath(String, String),
    #[error("env_vars.{0} must be a variable name with a string value")]
    EnvVar(String),
    #[error("an aws rule needs an 'aws' object")]
    NoAws,
    #[error(
        "aws.role_arn is not supported by this server: give access_key_id and secret_access_key"
    )]
    RoleArn,
    #[error("aws.{0} is required")]
    AwsMissing(&'static str),
    #[error("aws.{0} must be an opaque value or a workspace_secret reference")]
    AwsKind(&'static str),
    #[error("aws.{field}: {source}")]
    AwsValue {
        field: &'static str,
        source: ValueError,
    },
    #[error(transparent)]
    Gcp(#[from] GcpRuleError),
    #[error(transparent)]
    Header(#[from] HeaderError),
}

/// Why a header is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("a header needs a name")]
    NoName,
    #[error("'{0}' is not a header name")]
    BadName(String),
    #[error("header {name}: {source}")]
    Value { name: String, source: ValueError },
}

/// Why a typed value (a header's, a credential's) is refused. Never holds
/// an opaque value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ValueError {
    #[error("a {0} value is required")]
    Missing(&'static str),
    #[error("a header value must not contain control characters")]
    ControlCharacter,
    #[error("'{0}' is not a secret name")]
    NotAReference(String),
    #[error("'{0}' is not a secret name (letters, digits and '_', not starting with a digit)")]
    BadSecretName(String),
    #[error("unclosed '${{' in '{0}'")]
    Unclosed(String),
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
    /// The validated `rules`, `no_proxy` and `callbacks` of a config.
    pub fn from_config(config: &ProxyConfig) -> Result<Self, RulesError> {
        let callbacks = config
            .callbacks
            .iter()
            .flatten()
            .enumerate()
            .map(|(index, cb)| {
                Callback::parse(cb).map_err(|reason| RulesError::BadCallback { index, reason })
            })
            .collect::<Result<_, _>>()?;
        let rules = config
            .rules
            .iter()
            .flatten()
            .enumerate()
            .filter_map(|(index, rule)| {
                parse_rule(rule)
                    .map_err(|reason| RulesError::BadRule { index, reason })
                    .transpose()
            })
            .collect::<Result<_, _>>()?;
        let no_proxy = config
            .no_proxy
            .iter()
            .flatten()
            .map(|entry| Pattern::parse(entry).map_err(RulesError::NoProxy))
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

/// One rule; `None` when it is disabled (a disabled rule is still checked).
fn parse_rule(rule: &wire::Rule) -> Result<Option<Rule>, RuleError> {
    if rule.name.trim().is_empty() {
        return Err(RuleError::NoName);
    }
    let auth = match &rule.kind {
        Some(RuleKind::Aws) => Some(Auth::Aws(aws_auth(rule.aws.as_ref())?)),
        Some(RuleKind::Gcp) => Some(Auth::Gcp(GcpAuth::parse(rule.gcp.as_ref())?)),
        _ => None,
    };
    env_vars(rule)?;
    if !rule.is_enabled() {
        return Ok(None);
    }
    let attribution = rule.kind == Some(RuleKind::Attribution);
    let mut hosts = rule.match_hosts.clone().unwrap_or_default();
    if let (true, Some(auth)) = (hosts.is_empty(), &auth) {
        hosts = auth.default_hosts().iter().map(|h| h.to_string()).collect();
    }
    if hosts.is_empty() && !attribution {
        return Err(RuleError::NoHosts);
    }
    let hosts = hosts
        .iter()
        .map(|h| Pattern::parse(h).map_err(RuleError::Host))
        .collect::<Result<_, _>>()?;
    let paths = rule
        .match_paths
        .iter()
        .flatten()
        .map(|p| path_glob(p))
        .collect::<Result<_, _>>()?;
    Ok(Some(Rule {
        hosts,
        paths,
        headers: headers(rule)?,
        auth,
    }))
}

/// A rule's `env_vars` (set in the sandbox by the server) must map
/// variable names to strings without NUL.
fn env_vars(rule: &wire::Rule) -> Result<(), RuleError> {
    for (name, value) in rule.env_vars.iter().flatten() {
        let valid = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid || value.contains('\0') {
            return Err(RuleError::EnvVar(name.clone()));
        }
    }
    Ok(())
}

/// The `aws` object of an `aws` rule: static credentials only (there is no
/// AWS STS to assume a `role_arn` through).
fn aws_auth(aws: Option<&wire::AwsAuth>) -> Result<AwsAuth, RuleError> {
    let aws = aws.ok_or(RuleError::NoAws)?;
    if aws.role_arn.is_some() {
        return Err(RuleError::RoleArn);
    }
    let credential = |field: &'static str, item: Option<&wire::Secret>| {
        let item = item.ok_or(RuleError::AwsMissing(field))?;
        if !matches!(
            item.kind,
            Some(SecretKind::Opaque | SecretKind::WorkspaceSecret)
        ) {
            return Err(RuleError::AwsKind(field));
        }
        source(item).map_err(|source| RuleError::AwsValue { field, source })
    };
    Ok(AwsAuth {
        access_key_id: credential("access_key_id", aws.access_key_id.as_ref())?,
        secret_access_key: credential("secret_access_key", aws.secret_access_key.as_ref())?,
    })
}

fn path_glob(glob: &str) -> Result<Regex, RuleError> {
    if !glob.starts_with('/') && !glob.starts_with('*') {
        return Err(RuleError::Path(glob.to_owned()));
    }
    crate::policy::glob_regex(glob).map_err(|e| RuleError::BadPath(glob.to_owned(), e.to_string()))
}

fn headers(rule: &wire::Rule) -> Result<Vec<Header>, HeaderError> {
    let mut out = rule
        .headers
        .iter()
        .flatten()
        .map(Header::parse)
        .collect::<Result<Vec<_>, _>>()?;
    for (name, value) in rule.inject_headers.iter().flatten() {
        let name = header_name(name)?;
        let source = template(value).map_err(|source| HeaderError::Value {
            name: name.to_string(),
            source,
        })?;
        out.push(Header {
            name,
            source: Source::Template(source),
        });
    }
    Ok(out)
}

fn header_name(name: &str) -> Result<HeaderName, HeaderError> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| HeaderError::BadName(name.to_owned()))
}

impl Header {
    /// A typed header of a rule or a callback's `request_headers`.
    pub fn parse(item: &wire::Header) -> Result<Self, HeaderError> {
        let name = header_name(item.name.as_deref().ok_or(HeaderError::NoName)?)?;
        let source = source(&item.secret).map_err(|source| HeaderError::Value {
            name: name.to_string(),
            source,
        })?;
        Ok(Header { name, source })
    }
}

/// A typed value (`plaintext`, `opaque`, `workspace_secret`).
pub(crate) fn source(secret: &wire::Secret) -> Result<Source, ValueError> {
    let kind = secret.kind();
    let value = secret
        .value
        .as_deref()
        .ok_or(ValueError::Missing(match kind {
            SecretKind::Plaintext => "plaintext",
            SecretKind::Opaque => "opaque",
            SecretKind::WorkspaceSecret => "workspace_secret",
        }))?;
    match kind {
        SecretKind::Plaintext => Ok(Source::Template(template(value)?)),
        SecretKind::Opaque => Ok(Source::Template(vec![Part::Text(checked(value)?)])),
        SecretKind::WorkspaceSecret => Ok(Source::Secret(secret_name(value)?)),
    }
}

/// A literal header value: no control characters.
fn checked(text: &str) -> Result<String, ValueError> {
    match HeaderValue::from_str(text) {
        Ok(_) => Ok(text.to_owned()),
        Err(_) => Err(ValueError::ControlCharacter),
    }
}

/// `NAME`, `{NAME}` or `${NAME}`.
pub(crate) fn secret_name(value: &str) -> Result<String, ValueError> {
    let v = value.trim();
    let inner = v
        .strip_prefix("${")
        .or_else(|| v.strip_prefix('{'))
        .map(|rest| rest.strip_suffix('}').ok_or(()))
        .unwrap_or(Ok(v))
        .map_err(|_| ValueError::NotAReference(value.to_owned()))?;
    valid_secret_name(inner)
}

/// Secret names: letters, digits and `_`, not starting with a digit.
pub fn valid_secret_name(name: &str) -> Result<String, ValueError> {
    let ok = !name.is_empty()
        && name.len() <= 256
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    match ok {
        true => Ok(name.to_owned()),
        false => Err(ValueError::BadSecretName(name.to_owned())),
    }
}

/// Split `Bearer ${KEY}` into text and secret references.
fn template(text: &str) -> Result<Vec<Part>, ValueError> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let end = rest[start..]
            .find('}')
            .ok_or_else(|| ValueError::Unclosed(text.to_owned()))?;
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

    /// The text, given a way to read secrets.
    pub fn resolve(&self, secret: impl Fn(&str) -> Option<String>) -> Result<String, SecretError> {
        let read = |name: &String| secret(name).ok_or_else(|| SecretError::Missing(name.clone()));
        match self {
            Source::Secret(name) => read(name),
            Source::Template(parts) => {
                let mut out = String::new();
                for part in parts {
                    match part {
                        Part::Text(t) => out.push_str(t),
                        Part::Secret(n) => out.push_str(&read(n)?),
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
        let text = self.source.resolve(&secret)?;
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
    use serde_json::{json, Value};

    /// A JSON config through the wire type and into rules.
    fn parse(config: &Value) -> Result<Rules, String> {
        let config = ProxyConfig::from_value(config).map_err(|e| e.to_string())?;
        Rules::from_config(&config).map_err(|e| e.to_string())
    }

    fn rules(config: Value) -> Rules {
        parse(&config).unwrap()
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
            assert!(parse(&config).is_err(), "{config}");
        }
    }
}
