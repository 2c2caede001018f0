//! `gcp_auth` rules: the proxy authorises a sandbox's requests to Google
//! APIs with OAuth2 access tokens it mints from a service account key the
//! sandbox never sees.
//!
//! A rule `{"type": "gcp", "gcp": {"service_account_json": <opaque value
//! or workspace_secret reference>, "scopes": [...]}}` covers
//! `*.googleapis.com` and `googleapis.com` unless it names `match_hosts`.
//! For each intercepted HTTPS request it covers, the proxy resolves the
//! service account JSON (a workspace secret is read per request, so a
//! change applies at once), takes the token cached for (sandbox, SHA-256
//! of the JSON, scopes) or gets a new one — an RS256 JWT (`iss` the
//! account's `client_email`, `scope` the space-joined scopes, `aud` its
//! `token_uri`, valid an hour; [`account`]) POSTed as a JWT-bearer grant
//! to the `token_uri` over verified TLS ([`token`]) — and sets
//! `Authorization: Bearer <token>`, replacing whatever the sandbox sent.
//! A token is reused until shortly before its `expires_in`
//! ([`usable_for`]). When no token can be had, the sandbox's request gets
//! a 502 saying why (never the key, the assertion or a token).
//!
//! Plaintext service account JSON is refused (422 at the API), as are
//! malformed JSON, a missing `client_email` or `private_key`, a key that
//! is not an RSA key in PEM, and empty scopes; an opaque value is checked
//! when the rule is parsed, a workspace secret when it is used.

mod account;
mod token;

pub use account::{AccountError, ServiceAccount, DEFAULT_TOKEN_URI};
pub use token::{usable_for, Grant, Key, TokenCache, TokenError};

use std::time::SystemTime;

use http::header::HeaderValue;
use sandpit_api::proxy_config::{self as wire, SecretKind};

use crate::inject::{Part, Source};
use crate::{Context, Lookup, Policy};

/// The scope of a rule that names none.
pub const DEFAULT_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Hosts a `gcp` rule covers when it names none.
pub const HOSTS: [&str; 2] = ["*.googleapis.com", "googleapis.com"];

/// The parsed `gcp` object of a rule.
#[derive(Clone)]
pub struct GcpAuth {
    /// An opaque value (the JSON itself) or a workspace secret's name.
    pub service_account_json: Source,
    pub scopes: Vec<String>,
}

impl std::fmt::Debug for GcpAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcpAuth")
            .field("service_account_json", &self.service_account_json.secrets())
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// Why a request covered by a `gcp` rule gets no token.
#[derive(Debug, thiserror::Error)]
pub enum GcpError {
    #[error(transparent)]
    MissingSecret(#[from] crate::inject::SecretError),
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// Why a `gcp` rule's `gcp` object is refused. Never holds the key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GcpRuleError {
    #[error("a gcp rule needs a 'gcp' object")]
    NoGcp,
    #[error("gcp.{0} is not supported")]
    Unsupported(String),
    #[error("gcp.service_account_json is required")]
    NoAccount,
    #[error("gcp.service_account_json: a value is required")]
    NoValue,
    #[error("gcp.service_account_json: must be an opaque value or a workspace_secret reference (plaintext service account JSON is not accepted)")]
    NotSecret,
    #[error("gcp.service_account_json: {0}")]
    Account(AccountError),
    #[error("gcp.service_account_json: {0}")]
    SecretName(#[from] crate::inject::ValueError),
    #[error("gcp.scopes must be a non-empty list of scopes")]
    Scopes,
}

impl GcpAuth {
    /// The `gcp` object of a rule; an opaque service account is checked now.
    pub(crate) fn parse(gcp: Option<&wire::GcpAuth>) -> Result<GcpAuth, GcpRuleError> {
        let gcp = gcp.ok_or(GcpRuleError::NoGcp)?;
        if let Some(field) = gcp.other.keys().next() {
            return Err(GcpRuleError::Unsupported(field.clone()));
        }
        Ok(GcpAuth {
            service_account_json: service_account(gcp.service_account_json.as_ref())?,
            scopes: scopes(gcp.scopes.as_deref())?,
        })
    }
}

fn service_account(item: Option<&wire::Secret>) -> Result<Source, GcpRuleError> {
    let item = item.ok_or(GcpRuleError::NoAccount)?;
    match (item.kind, item.value.as_deref()) {
        (Some(SecretKind::Opaque), Some(json)) => {
            // The reason names a field, never the key.
            ServiceAccount::from_json(json).map_err(GcpRuleError::Account)?;
            Ok(Source::Template(vec![Part::Text(json.to_owned())]))
        }
        (Some(SecretKind::WorkspaceSecret), Some(name)) => {
            Ok(Source::Secret(crate::inject::secret_name(name)?))
        }
        (Some(SecretKind::Opaque | SecretKind::WorkspaceSecret), None) => {
            Err(GcpRuleError::NoValue)
        }
        _ => Err(GcpRuleError::NotSecret),
    }
}

fn scopes(items: Option<&[String]>) -> Result<Vec<String>, GcpRuleError> {
    let items = match items {
        None => return Ok(vec![DEFAULT_SCOPE.to_owned()]),
        Some([]) => return Err(GcpRuleError::Scopes),
        Some(items) => items,
    };
    items
        .iter()
        .map(|item| {
            Some(item.trim())
                .filter(|s| !s.is_empty() && !s.contains(char::is_whitespace))
                .map(str::to_owned)
                .ok_or(GcpRuleError::Scopes)
        })
        .collect()
}

/// The `Authorization` value for a request `auth` covers, from the
/// sandbox of `policy`: a cached token or a new one.
pub(crate) async fn bearer<L: Lookup>(
    ctx: &Context<L>,
    policy: &Policy,
    auth: &GcpAuth,
) -> Result<HeaderValue, GcpError> {
    let source = &auth.service_account_json;
    let names = source.secrets().into_iter();
    let secrets = crate::intercept::read_secrets(policy, &*ctx.lookup, names).await;
    let json = source.resolve(|name| secrets.get(name).cloned().flatten())?;
    let key = (
        policy.sandbox.clone().unwrap_or_default(),
        crate::callback::hex_sha256(json.as_bytes()),
        auth.scopes.join(" "),
    );
    ctx.gcp_tokens
        .get_or_fetch(key, || mint(ctx, &json, &auth.scopes))
        .await
}

/// A new token for the account in `json`.
async fn mint<L: Lookup>(
    ctx: &Context<L>,
    json: &str,
    scopes: &[String],
) -> Result<Grant, GcpError> {
    let account = ServiceAccount::from_json(json)?;
    let assertion = account.assertion(scopes, SystemTime::now())?;
    Ok(token::fetch(ctx, account.token_uri(), &assertion).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// A `gcp` object through the wire type; either error as text.
    fn rule(gcp: Value) -> Result<GcpAuth, String> {
        let config = json!({"rules": [{"name": "g", "type": "gcp", "gcp": gcp}]});
        let config = wire::ProxyConfig::from_value(&config).map_err(|e| e.to_string())?;
        let rules = config.rules.unwrap_or_default();
        GcpAuth::parse(rules[0].gcp.as_ref()).map_err(|e| e.to_string())
    }

    #[test]
    fn rules_name_an_opaque_or_secret_account_and_scopes() {
        let json = account::tests::test_json();
        let opaque =
            rule(json!({"service_account_json": {"type": "opaque", "value": json}})).unwrap();
        assert_eq!(opaque.scopes, [DEFAULT_SCOPE]);
        assert_eq!(
            opaque.service_account_json.resolve(|_| None),
            Ok(json.clone())
        );
        assert!(!format!("{opaque:?}").contains("PRIVATE"));
        let secret = rule(
            json!({"service_account_json": {"type": "workspace_secret", "value": "{GCP_SA}"},
                                 "scopes": ["https://s/1", "https://s/2"]}),
        )
        .unwrap();
        assert_eq!(secret.service_account_json.secrets(), ["GCP_SA"]);
        assert_eq!(secret.scopes, ["https://s/1", "https://s/2"]);
    }

    #[test]
    fn bad_gcp_objects_are_refused() {
        let json = account::tests::test_json();
        let sa = json!({"type": "opaque", "value": json});
        for (gcp, says) in [
            (
                json!({"service_account_json": {"type": "plaintext", "value": json}}),
                "plaintext",
            ),
            (
                json!({"service_account_json": {"type": "opaque", "value": "{"}}),
                "not a JSON object",
            ),
            (
                json!({"service_account_json": {"type": "opaque", "value": "{\"client_email\": \"a@b\"}"}}),
                "private_key",
            ),
            (
                json!({"service_account_json": {"type": "opaque"}}),
                "value is required",
            ),
            (
                json!({"service_account_json": {"type": "workspace_secret", "value": "no such"}}),
                "secret name",
            ),
            (json!({}), "required"),
            (json!({"service_account_json": sa, "scopes": []}), "scopes"),
            (
                json!({"service_account_json": sa, "scopes": ["a b"]}),
                "scopes",
            ),
            (
                json!({"service_account_json": sa, "scopes": "https://s"}),
                "expected a sequence",
            ),
            (
                json!({"service_account_json": sa, "subject": "x@y"}),
                "gcp.subject",
            ),
        ] {
            let err = rule(gcp.clone()).unwrap_err();
            assert!(err.contains(says), "{gcp}: {err}");
            assert!(!err.contains("PRIVATE KEY"), "{err}");
        }
    }
}
