//! `proxy_config.callbacks`: for hosts a callback matches, the proxy asks
//! the callback URL which headers to set, and caches the answer.
//!
//! The request is `POST {url}` with a JSON body
//! `{"host", "port", "identity": {"tenant_id", "sandbox_id"}, "request"?}`
//! (`request`, a snapshot of the sandbox's request as it sent it, only when
//! `full_request` is set) and the header `X-LangSmith-Signature-JWT`: an
//! EdDSA JWT from the server's service keys (published at
//! `/.well-known/jwks.json`) with `sub: langsmith-sandbox-callback`, `aud`
//! the callback URL and `body_sha256` the hex SHA-256 of the body — what the
//! `langsmith` SDK's `SandboxTokenVerifier.verify_callback` checks. The
//! callback's own `request_headers` are added to that request.
//!
//! The answer must be a 2xx JSON object `{"headers": {"Name": "value"}}`;
//! those headers are set on the sandbox's request. Answers are cached per
//! sandbox, callback and host for `ttl_seconds` (not for `full_request`
//! callbacks, which see every request). A callback that fails or answers
//! anything else fails the sandbox's request (502): headers the policy asks
//! for are never silently left out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use sandpit_api::proxy_config as wire;
use serde_json::{json, Map, Value};

use crate::inject::Header;
use crate::policy::Pattern;
use crate::{Context, Lookup, Policy};

/// The header carrying the signature (as the SDK's verifier reads it).
pub const SIGNATURE_HEADER: &str = "x-langsmith-signature-jwt";
/// Longest a callback may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read from a callback.
const MAX_ANSWER: usize = 64 << 10;
/// Largest request body put into a `full_request` snapshot.
pub const MAX_SNAPSHOT_BODY: usize = 1 << 20;

/// One parsed callback.
#[derive(Debug, Clone)]
pub struct Callback {
    pub url: Uri,
    pub hosts: Vec<Pattern>,
    pub ttl: Duration,
    pub full_request: bool,
    pub request_headers: Vec<Header>,
}

impl Callback {
    pub fn matches(&self, host: &str) -> bool {
        self.hosts.iter().any(|p| p.matches(Some(host), None))
    }
}

/// Why a `callbacks[]` entry is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CallbackError {
    #[error("url is required")]
    NoUrl,
    #[error("'{0}' is not a URL")]
    NotAUrl(String),
    #[error("url '{0}' must be an http or https URL")]
    NotHttp(String),
    #[error("ttl_seconds must be an integer from 60 to 3600")]
    Ttl,
    #[error("match_hosts must be a non-empty list of host patterns")]
    NoHosts,
    #[error("match_hosts entry {0}")]
    Host(crate::policy::EntryError),
    #[error("request_headers: {0}")]
    Header(#[from] crate::inject::HeaderError),
}

impl Callback {
    /// Validate one `callbacks[]` entry.
    pub(crate) fn parse(cb: &wire::Callback) -> Result<Callback, CallbackError> {
        let url = cb.url.as_deref().ok_or(CallbackError::NoUrl)?;
        let url: Uri = url
            .parse()
            .map_err(|_| CallbackError::NotAUrl(url.to_owned()))?;
        if !matches!(url.scheme_str(), Some("http" | "https")) || url.host().is_none() {
            return Err(CallbackError::NotHttp(url.to_string()));
        }
        let ttl = cb
            .ttl_seconds
            .filter(|t| (60..=3600).contains(t))
            .ok_or(CallbackError::Ttl)?;
        let hosts = cb
            .match_hosts
            .iter()
            .flatten()
            .map(|h| Pattern::parse(h).map_err(CallbackError::Host))
            .collect::<Result<Vec<_>, _>>()?;
        if hosts.is_empty() {
            return Err(CallbackError::NoHosts);
        }
        let request_headers = cb
            .request_headers
            .iter()
            .flatten()
            .map(Header::parse)
            .collect::<Result<_, _>>()?;
        Ok(Callback {
            url,
            hosts,
            ttl: Duration::from_secs(ttl),
            full_request: cb.full_request.unwrap_or(false),
            request_headers,
        })
    }
}

/// Why a callback gave no headers (the sandbox's request then fails, 502).
/// Never holds a header value.
#[derive(Debug, thiserror::Error)]
pub enum CallFailure {
    #[error("callback {0} timed out")]
    TimedOut(Uri),
    #[error("callback {url} failed: {reason}")]
    Failed { url: Uri, reason: FailReason },
}

/// What went wrong calling a callback.
#[derive(Debug, thiserror::Error)]
pub enum FailReason {
    #[error("could not sign the callback")]
    Unsigned,
    #[error("{0}")]
    Request(#[from] http::Error),
    #[error(transparent)]
    Secret(#[from] crate::inject::SecretError),
    /// Dialling or speaking HTTP to it (the upstream's own message).
    #[error("{0}")]
    Upstream(String),
    #[error("reading the answer: {0}")]
    Read(String),
    #[error("answered {0}")]
    Status(http::StatusCode),
    #[error(transparent)]
    Answer(#[from] AnswerError),
}

/// Why an answer is not `{"headers": {"Name": "value"}}`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AnswerError {
    #[error("the answer is not JSON")]
    NotJson,
    #[error("the answer has no \"headers\" object")]
    NoHeaders,
    #[error("'{0}' is not a header name")]
    BadName(String),
    #[error("the value of {0} is not a header value")]
    BadValue(String),
}

/// (sandbox, callback URL, host): what an answer is cached under.
type Key = (String, String, String);

/// Answers of callbacks, by [`Key`], with the instant they expire.
#[derive(Default)]
pub struct Cache {
    entries: Mutex<HashMap<Key, (Instant, Headers)>>,
}

pub type Headers = Vec<(HeaderName, HeaderValue)>;

impl Cache {
    fn get(&self, key: &Key) -> Option<Headers> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(key) {
            Some((until, headers)) if *until > Instant::now() => Some(headers.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    fn put(&self, key: Key, ttl: Duration, headers: Headers) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        entries.retain(|_, (until, _)| *until > now);
        entries.insert(key, (now + ttl, headers));
    }
}

/// A snapshot of the sandbox's request for `full_request` callbacks.
pub struct Snapshot<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

impl Snapshot<'_> {
    fn to_json(&self, host: &str) -> Value {
        let mut headers: Map<String, Value> = Map::new();
        for (name, value) in self.headers {
            let list = headers
                .entry(name.as_str().to_owned())
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(list) = list {
                list.push(Value::String(
                    String::from_utf8_lossy(value.as_bytes()).into(),
                ));
            }
        }
        let path = self.uri.path();
        let query = self.uri.query().unwrap_or("");
        let truncated = self.body.len() > MAX_SNAPSHOT_BODY;
        let body = &self.body[..self.body.len().min(MAX_SNAPSHOT_BODY)];
        let url = match query {
            "" => format!("https://{host}{path}"),
            q => format!("https://{host}{path}?{q}"),
        };
        json!({
            "method": self.method.as_str(),
            "url": url,
            "scheme": "https",
            "host": host,
            "path": path,
            "query": query,
            "headers": headers,
            "body_base64": base64::engine::general_purpose::STANDARD.encode(body),
            "body_truncated": truncated,
        })
    }
}

/// The headers `cb` says to set on a request for `host:port` from the
/// sandbox of `policy`: cached, or asked for now.
pub(crate) async fn headers<L: Lookup>(
    cb: &Callback,
    ctx: &Context<L>,
    policy: &Policy,
    host: &str,
    port: u16,
    snapshot: Option<Snapshot<'_>>,
) -> Result<Headers, CallFailure> {
    let sandbox = policy.sandbox.clone().unwrap_or_default();
    let key = (sandbox.clone(), cb.url.to_string(), host.to_owned());
    if !cb.full_request {
        if let Some(hit) = ctx.callbacks.get(&key) {
            return Ok(hit);
        }
    }
    let mut body = json!({
        "host": host,
        "port": port,
        "identity": {"tenant_id": policy.tenant.clone().unwrap_or_default(), "sandbox_id": sandbox},
    });
    if let (true, Some(snapshot)) = (cb.full_request, snapshot) {
        body["request"] = snapshot.to_json(host);
    }
    // A JSON value of strings and numbers always serialises.
    let body = body.to_string().into_bytes();
    let answer = tokio::time::timeout(TIMEOUT, call(cb, ctx, policy, Bytes::from(body)))
        .await
        .map_err(|_| CallFailure::TimedOut(cb.url.clone()))?
        .map_err(|reason| CallFailure::Failed {
            url: cb.url.clone(),
            reason,
        })?;
    if !cb.full_request {
        ctx.callbacks
            .put(key, cb.ttl / ctx.time_scale.max(1), answer.clone());
    }
    Ok(answer)
}

/// POST `body` to the callback and read the headers it answers with.
async fn call<L: Lookup>(
    cb: &Callback,
    ctx: &Context<L>,
    policy: &Policy,
    body: Bytes,
) -> Result<Headers, FailReason> {
    let digest = hex_sha256(&body);
    let signature = ctx
        .lookup
        .sign_callback(&cb.url.to_string(), &digest)
        .ok_or(FailReason::Unsigned)?;
    let host = cb.url.host().unwrap_or_default();
    let mut request = Request::post(cb.url.path_and_query().map_or("/", |p| p.as_str()))
        .header(
            http::header::HOST,
            cb.url.authority().map_or(host, |a| a.as_str()),
        )
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signature)
        .body(Full::new(body))?;
    let secrets = crate::intercept::read_secrets(
        policy,
        &*ctx.lookup,
        cb.request_headers.iter().flat_map(|h| h.secrets()),
    )
    .await;
    let read = |name: &str| secrets.get(name).cloned().flatten();
    for header in &cb.request_headers {
        let value = header.value(read)?;
        request.headers_mut().insert(header.name.clone(), value);
    }
    // The callback is the tenant's own service, not a sandbox destination.
    let response = crate::upstream::request_once(ctx, &cb.url, request)
        .await
        .map_err(|e| FailReason::Upstream(e.to_string()))?;
    let status = response.status();
    let bytes = Limited::new(response.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| FailReason::Read(e.to_string()))?
        .to_bytes();
    if !status.is_success() {
        return Err(FailReason::Status(status));
    }
    Ok(answer_headers(&bytes)?)
}

/// `{"headers": {"Name": "value", ...}}` → headers.
fn answer_headers(bytes: &[u8]) -> Result<Headers, AnswerError> {
    let answer: Value = serde_json::from_slice(bytes).map_err(|_| AnswerError::NotJson)?;
    let Some(Value::Object(headers)) = answer.get("headers") else {
        return Err(AnswerError::NoHeaders);
    };
    headers
        .iter()
        .map(|(name, value)| {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| AnswerError::BadName(name.clone()))?;
            let value = value
                .as_str()
                .and_then(|v| HeaderValue::from_str(v).ok())
                .ok_or_else(|| AnswerError::BadValue(name.to_string()))?;
            Ok((name, value))
        })
        .collect()
}

pub(crate) fn hex_sha256(data: &[u8]) -> String {
    use std::fmt::Write;
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    digest.as_ref().iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_must_name_headers() {
        let ok = answer_headers(br#"{"headers": {"X-Token": "t1", "Authorization": "Bearer b"}}"#)
            .unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(answer_headers(b"nope"), Err(AnswerError::NotJson));
        assert_eq!(
            answer_headers(br#"{"headers": ["x"]}"#),
            Err(AnswerError::NoHeaders)
        );
        assert_eq!(
            answer_headers(br#"{"headers": {"X": 1}}"#),
            Err(AnswerError::BadValue("x".into()))
        );
        assert_eq!(
            answer_headers(br#"{"headers": {"bad name": "v"}}"#),
            Err(AnswerError::BadName("bad name".into()))
        );
    }

    #[test]
    fn cache_entries_expire() {
        let cache = Cache::default();
        let key = ("sb".to_owned(), "u".to_owned(), "h".to_owned());
        let headers = vec![(HeaderName::from_static("x"), HeaderValue::from_static("1"))];
        cache.put(key.clone(), Duration::from_secs(60), headers.clone());
        assert_eq!(cache.get(&key), Some(headers.clone()));
        cache.put(key.clone(), Duration::ZERO, headers);
        assert_eq!(cache.get(&key), None);
    }

    #[test]
    fn digest_is_hex_sha256() {
        assert_eq!(
            hex_sha256(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
