//! A Google service account key (the JSON file the Cloud console gives)
//! and the JWT-bearer assertion (RFC 7523, as Google's token endpoint
//! takes it) signed with it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::Uri;
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use serde_json::{json, Map, Value};

/// The token endpoint of a key that names none.
pub const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// How long an assertion is valid (Google's maximum).
const ASSERTION_LIFETIME: Duration = Duration::from_secs(3600);

/// Why a service account JSON cannot be used. Messages never quote the
/// JSON or the key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AccountError {
    #[error("the service account JSON is not a JSON object")]
    NotAnObject,
    #[error("the service account JSON has type '{0}', not 'service_account'")]
    WrongType(String),
    #[error("the service account JSON has no {0}")]
    Missing(&'static str),
    #[error("the service account's private_key is not a PEM RSA private key")]
    NotPem,
    #[error("the service account's private_key is not a usable RSA key ({0})")]
    BadKey(String),
    #[error("the service account's token_uri is not an https URL")]
    TokenUri,
    #[error("signing the token request failed")]
    Sign,
}

/// A parsed service account key. `Debug` shows the email only.
pub struct ServiceAccount {
    client_email: String,
    private_key_id: Option<String>,
    token_uri: Uri,
    key: RsaKeyPair,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl ServiceAccount {
    /// Parse a service account JSON: `client_email`, `private_key` (PEM,
    /// PKCS#8 or PKCS#1 RSA), optional `private_key_id` and `token_uri`.
    pub fn from_json(text: &str) -> Result<Self, AccountError> {
        let Ok(Value::Object(json)) = serde_json::from_str::<Value>(text) else {
            return Err(AccountError::NotAnObject);
        };
        match json.get("type") {
            None | Some(Value::Null) => {}
            Some(Value::String(kind)) if kind == "service_account" => {}
            Some(other) => {
                let kind = other.as_str().unwrap_or("(not a string)");
                return Err(AccountError::WrongType(kind.chars().take(40).collect()));
            }
        }
        Ok(ServiceAccount {
            client_email: string(&json, "client_email")?.to_owned(),
            private_key_id: string(&json, "private_key_id").ok().map(str::to_owned),
            token_uri: token_uri(&json)?,
            key: rsa_key(string(&json, "private_key")?)?,
        })
    }

    /// Where to POST the assertion.
    pub fn token_uri(&self) -> &Uri {
        &self.token_uri
    }

    /// The signed assertion asking for `scopes` (space-joined), issued at
    /// `now` and valid for an hour.
    pub fn assertion(&self, scopes: &[String], now: SystemTime) -> Result<String, AccountError> {
        let iat = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let mut header = json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = &self.private_key_id {
            header["kid"] = json!(kid);
        }
        let claims = json!({
            "iss": self.client_email,
            "scope": scopes.join(" "),
            "aud": self.token_uri.to_string(),
            "iat": iat,
            "exp": iat + ASSERTION_LIFETIME.as_secs(),
        });
        let signed = format!("{}.{}", encode(&header), encode(&claims));
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signed.as_bytes(),
                &mut signature,
            )
            .map_err(|_| AccountError::Sign)?;
        Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

fn encode(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

fn string<'a>(json: &'a Map<String, Value>, field: &'static str) -> Result<&'a str, AccountError> {
    json.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or(AccountError::Missing(field))
}

fn token_uri(json: &Map<String, Value>) -> Result<Uri, AccountError> {
    let text = match json.get("token_uri") {
        None | Some(Value::Null) => DEFAULT_TOKEN_URI,
        Some(Value::String(text)) => text,
        Some(_) => return Err(AccountError::TokenUri),
    };
    let uri: Uri = text.parse().map_err(|_| AccountError::TokenUri)?;
    match (uri.scheme_str(), uri.host()) {
        (Some("https"), Some(host)) if !host.is_empty() => Ok(uri),
        _ => Err(AccountError::TokenUri),
    }
}

fn rsa_key(pem: &str) -> Result<RsaKeyPair, AccountError> {
    let der = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| AccountError::NotPem)?;
    let parsed = match &der {
        PrivateKeyDer::Pkcs8(der) => RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()),
        PrivateKeyDer::Pkcs1(der) => RsaKeyPair::from_der(der.secret_pkcs1_der()),
        _ => return Err(AccountError::NotPem),
    };
    parsed.map_err(|rejected| AccountError::BadKey(rejected.to_string()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A 2048-bit RSA test key (PKCS#8), made for these tests only.
    pub(crate) const TEST_KEY: &str = include_str!("testdata/sa-key.pem");
    /// Its public key (PKCS#1 RSAPublicKey DER, base64).
    const TEST_PUBLIC_KEY: &str = include_str!("testdata/sa-key.pub.b64");

    pub(crate) fn test_json() -> String {
        json!({
            "type": "service_account",
            "project_id": "sandpit-test",
            "private_key_id": "kid-1",
            "private_key": TEST_KEY,
            "client_email": "robot@sandpit-test.iam.gserviceaccount.com",
            "token_uri": "https://oauth2.googleapis.com/token",
        })
        .to_string()
    }

    fn decode(part: &str) -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    #[test]
    fn assertion_is_an_rs256_jwt_google_accepts() {
        let account = ServiceAccount::from_json(&test_json()).unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let scopes = [
            "https://a.test/s1".to_owned(),
            "https://a.test/s2".to_owned(),
        ];
        let jwt = account.assertion(&scopes, now).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(
            decode(parts[0]),
            json!({"alg": "RS256", "typ": "JWT", "kid": "kid-1"})
        );
        assert_eq!(
            decode(parts[1]),
            json!({
                "iss": "robot@sandpit-test.iam.gserviceaccount.com",
                "scope": "https://a.test/s1 https://a.test/s2",
                "aud": "https://oauth2.googleapis.com/token",
                "iat": 1_700_000_000u64,
                "exp": 1_700_003_600u64,
            })
        );
        // The signature verifies with the key's public half, and not over
        // anything else.
        let public = base64::engine::general_purpose::STANDARD
            .decode(TEST_PUBLIC_KEY.trim())
            .unwrap();
        let verifier = ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            public,
        );
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        let signed = format!("{}.{}", parts[0], parts[1]);
        assert!(verifier.verify(signed.as_bytes(), &signature).is_ok());
        assert!(verifier.verify(b"other", &signature).is_err());
    }

    #[test]
    fn unusable_accounts_say_why_without_quoting_them() {
        let with = |field: &str, value: Value| {
            let mut json: Value = serde_json::from_str(&test_json()).unwrap();
            json[field] = value;
            ServiceAccount::from_json(&json.to_string()).unwrap_err()
        };
        assert_eq!(
            ServiceAccount::from_json("{not json").unwrap_err(),
            AccountError::NotAnObject
        );
        assert_eq!(
            with("type", json!("authorized_user")),
            AccountError::WrongType("authorized_user".into())
        );
        assert_eq!(
            with("client_email", Value::Null),
            AccountError::Missing("client_email")
        );
        assert_eq!(
            with("private_key", json!("")),
            AccountError::Missing("private_key")
        );
        assert_eq!(
            with("private_key", json!("-----BEGIN PRIVATE KEY-----\nAAAA\n")),
            AccountError::NotPem
        );
        let truncated = TEST_KEY.replacen("MII", "MIH", 1);
        assert!(matches!(
            with("private_key", json!(truncated)),
            AccountError::BadKey(_) | AccountError::NotPem
        ));
        assert_eq!(
            with("token_uri", json!("http://oauth2.googleapis.com/token")),
            AccountError::TokenUri
        );
        let err = with("private_key", json!("secret-looking-text"));
        assert!(!err.to_string().contains("secret-looking-text"));
    }

    #[test]
    fn token_uri_defaults_to_google() {
        let mut json: Value = serde_json::from_str(&test_json()).unwrap();
        json.as_object_mut().unwrap().remove("token_uri");
        let account = ServiceAccount::from_json(&json.to_string()).unwrap();
        assert_eq!(account.token_uri().to_string(), DEFAULT_TOKEN_URI);
        assert!(!format!("{account:?}").contains("PRIVATE"));
    }
}
