//! Service URLs (`POST /boxes/{name}/service-url`): a link to an HTTP port
//! inside a sandbox, signed (token mode) or behind a sign-in (login mode,
//! with `access`).

use serde::{Deserialize, Serialize};

/// `POST /boxes/{name}/service-url` body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceUrlRequest {
    /// Port inside the sandbox, 1..=65535 (signed, so that the server can
    /// name a bad value instead of failing to parse it).
    pub port: i64,
    /// Token lifetime, 1 s ..= 24 h (token mode only; default 10 minutes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_seconds: Option<i64>,
    /// `restricted` or `workspace`: a login grant instead of a token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<String>,
    /// Origins whose pages may frame the URL (at most 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embed_origins: Option<Vec<String>>,
}

/// Answer of token mode.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceUrlResponse {
    /// Opens the service in a browser: sets the token as a cookie, then
    /// redirects to the service's root. Anyone holding it gets in until
    /// `expires_at`.
    pub browser_url: String,
    /// For programs: send `token` in the `X-Langsmith-Sandbox-Service-Token`
    /// header (or use `browser_url`).
    pub service_url: String,
    pub token: String,
    /// RFC 3339.
    pub expires_at: String,
    /// The URL to open in a frame (only with embed origins).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub embed_url: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub embed_origins: Vec<String>,
}

/// Answer of login mode: no token, no expiry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceLoginResponse {
    pub browser_url: String,
    pub service_url: String,
    /// `restricted` or `workspace`.
    pub access: String,
    pub embed_origins: Vec<String>,
    /// The URL to open in a frame (empty without embed origins).
    pub embed_url: String,
}

/// `POST /api/v1/console/service-logins` body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceLoginRequest {
    /// `{sandbox-id}--{port}`, as in the service host.
    pub service: String,
    /// Path on the service host to return to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// `POST /api/v1/console/service-logins` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceLoginTicket {
    /// The service host's `/_svc/login?ticket=...` (single use, 60 s).
    pub login_url: String,
}

/// `POST /boxes/{name}/service-url/revoke` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeServiceUrlsResponse {
    /// Tokens signed under an earlier epoch are refused.
    pub token_epoch: u64,
    pub grants_removed: u64,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The fields langsmith's `ServiceURL` reads; the embed fields only
    /// appear when set.
    #[test]
    fn token_answer_has_the_sdk_field_names() {
        let answer = ServiceUrlResponse {
            browser_url: "http://b".into(),
            service_url: "http://s".into(),
            token: "tok".into(),
            expires_at: "2026-01-01T00:10:00Z".into(),
            ..Default::default()
        };
        let value = serde_json::to_value(&answer).unwrap();
        assert_eq!(
            value,
            json!({"browser_url": "http://b", "service_url": "http://s", "token": "tok",
                   "expires_at": "2026-01-01T00:10:00Z"})
        );
        assert_eq!(
            serde_json::from_value::<ServiceUrlResponse>(value).unwrap(),
            answer
        );
        let embedded = ServiceUrlResponse {
            embed_url: "http://b".into(),
            embed_origins: vec!["https://app.example".into()],
            ..answer
        };
        let value = serde_json::to_value(&embedded).unwrap();
        assert_eq!(value["embed_url"], "http://b");
        assert_eq!(value["embed_origins"], json!(["https://app.example"]));
    }

    #[test]
    fn login_answer_shape() {
        let answer = ServiceLoginResponse {
            browser_url: "http://x/".into(),
            service_url: "http://x/".into(),
            access: "workspace".into(),
            embed_origins: vec![],
            embed_url: String::new(),
        };
        assert_eq!(
            serde_json::to_value(&answer).unwrap(),
            json!({"browser_url": "http://x/", "service_url": "http://x/",
                   "access": "workspace", "embed_origins": [], "embed_url": ""})
        );
    }

    #[test]
    fn request_round_trips_and_refuses_unknown_fields() {
        let sdk = json!({"port": 8000, "expires_in_seconds": 600});
        let req: ServiceUrlRequest = serde_json::from_value(sdk.clone()).unwrap();
        assert_eq!((req.port, req.expires_in_seconds), (8000, Some(600)));
        assert_eq!(serde_json::to_value(&req).unwrap(), sdk);
        assert!(serde_json::from_value::<ServiceUrlRequest>(json!({"port": 1, "ttl": 5})).is_err());
    }
}
