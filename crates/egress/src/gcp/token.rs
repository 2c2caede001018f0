//! Access tokens: asked of the token endpoint with a signed assertion, and
//! cached until shortly before they expire.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, HOST};
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::Value;

use crate::{Context, Lookup};

/// Longest the token endpoint may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read from the token endpoint.
const MAX_ANSWER: usize = 64 << 10;
/// A token is renewed this long before it expires (see [`usable_for`]).
const REFRESH_MARGIN: Duration = Duration::from_secs(240);
/// `urn:ietf:params:oauth:grant-type:jwt-bearer`, form-encoded.
const GRANT_TYPE: &str = "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer";

/// Why no token came back. Messages carry what the endpoint said
/// (`error`, `error_description`), never the assertion or a token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token endpoint cannot be reached: {0}")]
    Unreachable(String),
    #[error("the token endpoint did not answer in time")]
    Timeout,
    #[error("the token endpoint answered {status}: {reason}")]
    Refused { status: StatusCode, reason: String },
    #[error("the token endpoint's answer has no usable {0}")]
    BadAnswer(&'static str),
}

/// A fresh token: the `Authorization` value and how long it is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub bearer: HeaderValue,
    pub expires_in: Duration,
}

/// Ask `token_uri` for a token with `assertion` (JWT-bearer grant).
pub(crate) async fn fetch<L: Lookup>(
    ctx: &Context<L>,
    token_uri: &Uri,
    assertion: &str,
) -> Result<Grant, TokenError> {
    let body = format!("grant_type={GRANT_TYPE}&assertion={assertion}");
    let authority = token_uri.authority().map_or("", |a| a.as_str());
    let request = Request::post(token_uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(HOST, authority)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| TokenError::Unreachable(e.to_string()))?;
    let exchange = async {
        let response = crate::upstream::request_once(ctx, token_uri, request)
            .await
            .map_err(|e| TokenError::Unreachable(e.to_string()))?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| TokenError::Unreachable(e.to_string()))?
            .to_bytes();
        parse_answer(status, &bytes)
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| TokenError::Timeout)?
}

/// `{"access_token", "expires_in", "token_type"}` (RFC 6749 §5.1), or the
/// error (§5.2) a refusal carries.
pub(crate) fn parse_answer(status: StatusCode, bytes: &[u8]) -> Result<Grant, TokenError> {
    let answer: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(TokenError::Refused {
            status,
            reason: refusal(&answer),
        });
    }
    let token_type = answer.get("token_type").and_then(Value::as_str);
    if token_type.is_some_and(|t| !t.eq_ignore_ascii_case("bearer")) {
        return Err(TokenError::BadAnswer("token_type"));
    }
    let mut bearer = answer
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok())
        .ok_or(TokenError::BadAnswer("access_token"))?;
    bearer.set_sensitive(true);
    let expires_in = match answer.get("expires_in") {
        None | Some(Value::Null) => 3600,
        Some(value) => value
            .as_u64()
            .or_else(|| value.as_str()?.parse().ok())
            .ok_or(TokenError::BadAnswer("expires_in"))?,
    };
    Ok(Grant {
        bearer,
        expires_in: Duration::from_secs(expires_in),
    })
}

/// `error: error_description` of a refusal, printable and short.
fn refusal(answer: &Value) -> String {
    let field = |name| answer.get(name).and_then(Value::as_str).unwrap_or_default();
    let text = match (field("error"), field("error_description")) {
        ("", _) => "no OAuth error in the answer".to_owned(),
        (error, "") => error.to_owned(),
        (error, description) => format!("{error}: {description}"),
    };
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// How long a token that expires in `expires_in` is used: up to
/// [`REFRESH_MARGIN`] before it expires, but at least half its life.
pub fn usable_for(expires_in: Duration) -> Duration {
    expires_in
        .saturating_sub(REFRESH_MARGIN)
        .max(expires_in / 2)
}

/// (sandbox, SHA-256 of the service account JSON, space-joined scopes):
/// what a token is cached under. A changed secret is a new key.
pub type Key = (String, String, String);

/// A cached token and when it stops being used.
#[derive(Debug, Clone)]
struct Cached {
    bearer: HeaderValue,
    until: Instant,
}

type Slot = Arc<tokio::sync::Mutex<Option<Cached>>>;

/// Tokens by [`Key`]. Each key has its own async slot, so concurrent
/// requests of one sandbox wait for one token request instead of each
/// making their own.
#[derive(Default)]
pub struct TokenCache {
    slots: Mutex<HashMap<Key, Slot>>,
}

impl TokenCache {
    /// The cached token of `key`, or a new one from `fetch` (cached for
    /// [`usable_for`] its `expires_in`, counted from before the request).
    pub async fn get_or_fetch<F, Fut, E>(&self, key: Key, fetch: F) -> Result<HeaderValue, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Grant, E>>,
    {
        let slot = self.slot(key);
        // An async lock, held while one request for this key's token is
        // in flight: that wait is the point (single flight).
        let mut cached = slot.lock().await;
        let asked = Instant::now();
        if let Some(hit) = cached.as_ref().filter(|c| c.until > asked) {
            return Ok(hit.bearer.clone());
        }
        let grant = fetch().await?;
        *cached = Some(Cached {
            bearer: grant.bearer.clone(),
            until: asked + usable_for(grant.expires_in),
        });
        Ok(grant.bearer)
    }

    /// The slot of `key`, made if need be (dropping expired idle ones).
    fn slot(&self, key: Key) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = slots.get(&key) {
            return slot.clone();
        }
        let now = Instant::now();
        slots.retain(|_, slot| {
            Arc::strong_count(slot) > 1
                || slot
                    .try_lock()
                    .map_or(true, |c| c.as_ref().is_some_and(|c| c.until > now))
        });
        slots.entry(key).or_default().clone()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn key(sandbox: &str) -> Key {
        (sandbox.into(), "sa".into(), "scope".into())
    }

    fn grant(token: &str, secs: u64) -> Result<Grant, TokenError> {
        Ok(Grant {
            bearer: HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
            expires_in: Duration::from_secs(secs),
        })
    }

    #[tokio::test]
    async fn tokens_are_reused_per_key_until_near_expiry() {
        let cache = TokenCache::default();
        let calls = AtomicUsize::new(0);
        let fetch = |token: &'static str, secs| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move { grant(token, secs) }
        };
        let a1 = cache.get_or_fetch(key("a"), || fetch("t1", 3600)).await;
        let a2 = cache.get_or_fetch(key("a"), || fetch("t2", 3600)).await;
        assert_eq!(a1.unwrap(), "Bearer t1");
        assert_eq!(a2.unwrap(), "Bearer t1");
        let b = cache.get_or_fetch(key("b"), || fetch("t3", 3600)).await;
        assert_eq!(b.unwrap(), "Bearer t3");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // A token that expires at once is never reused.
        cache
            .get_or_fetch(key("c"), || fetch("t4", 0))
            .await
            .unwrap();
        let c = cache.get_or_fetch(key("c"), || fetch("t5", 0)).await;
        assert_eq!(c.unwrap(), "Bearer t5");
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn failures_are_not_cached_and_expired_slots_go() {
        let cache = TokenCache::default();
        let failed: Result<HeaderValue, TokenError> = cache
            .get_or_fetch(key("a"), || async { Err(TokenError::Timeout) })
            .await;
        assert_eq!(failed, Err(TokenError::Timeout));
        let ok = cache
            .get_or_fetch(key("a"), || async { grant("t", 0) })
            .await;
        assert_eq!(ok.unwrap(), "Bearer t");
        cache
            .get_or_fetch(key("b"), || async { grant("t", 3600) })
            .await
            .unwrap();
        // Making "b"'s slot dropped "a"'s (expired, idle); "b" stays.
        assert_eq!(cache.len(), 1);
    }

    #[tokio::test]
    async fn concurrent_misses_make_one_request() {
        let cache = Arc::new(TokenCache::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (cache, calls) = (cache.clone(), calls.clone());
                tokio::spawn(async move {
                    cache
                        .get_or_fetch(key("a"), || async move {
                            calls.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            grant("t", 3600)
                        })
                        .await
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap(), "Bearer t");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn lifetimes_leave_a_margin() {
        assert_eq!(
            usable_for(Duration::from_secs(3599)),
            Duration::from_secs(3359)
        );
        assert_eq!(
            usable_for(Duration::from_secs(300)),
            Duration::from_secs(150)
        );
        assert_eq!(usable_for(Duration::from_secs(2)), Duration::from_secs(1));
    }

    #[test]
    fn answers_are_parsed_and_refusals_explained() {
        let ok = parse_answer(
            StatusCode::OK,
            br#"{"access_token": "ya29.x", "expires_in": 3599, "token_type": "Bearer"}"#,
        )
        .unwrap();
        assert_eq!(ok.bearer, "Bearer ya29.x");
        assert!(ok.bearer.is_sensitive());
        assert_eq!(ok.expires_in, Duration::from_secs(3599));
        let refused = parse_answer(
            StatusCode::BAD_REQUEST,
            br#"{"error": "invalid_grant", "error_description": "Invalid JWT Signature."}"#,
        );
        assert_eq!(
            refused.unwrap_err().to_string(),
            "the token endpoint answered 400 Bad Request: invalid_grant: Invalid JWT Signature."
        );
        for bad in [
            &br#"{"expires_in": 10}"#[..],
            br#"{"access_token": "", "expires_in": 10}"#,
            br#"{"access_token": "a\nb"}"#,
            br#"{"access_token": "a", "token_type": "mac"}"#,
            br#"{"access_token": "a", "expires_in": -1}"#,
            b"not json",
        ] {
            assert!(parse_answer(StatusCode::OK, bad).is_err());
        }
    }
}
