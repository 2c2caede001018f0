//! AWS Signature Version 4 for `aws_auth` rules: the proxy signs requests to
//! AWS endpoints with credentials the sandbox never sees.
//!
//! The signing itself is AWS's own `aws-sigv4` crate; this module decides
//! which endpoints an `aws` rule covers, which signing name and region an
//! endpoint host means, and replaces whatever signature the sandbox's tool
//! put on the request (tools such as the AWS CLI refuse to run without some
//! credentials, so sandboxes are given dummy ones that sign with garbage).

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings,
};
use aws_sigv4::sign::v4;
use http::header::{HeaderName, HeaderValue, AUTHORIZATION};
use http::request::Parts;

/// Static credentials an `aws_auth` rule signs with.
#[derive(Clone)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SigV4Error {
    #[error("{0} is not an AWS endpoint this proxy can sign for")]
    NotAws(String),
    #[error("signing failed: {0}")]
    Signing(String),
}

/// Headers of an earlier signature, removed before signing again.
const SIGNATURE_HEADERS: [&str; 4] = [
    "authorization",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
];

/// Endpoint prefixes whose signing name differs from the prefix.
const SIGNING_NAMES: [(&str, &str); 7] = [
    ("bedrock-runtime", "bedrock"),
    ("bedrock-agent-runtime", "bedrock"),
    ("bedrock-agent", "bedrock"),
    ("runtime.sagemaker", "sagemaker"),
    ("streams.dynamodb", "dynamodb"),
    ("email", "ses"),
    ("data.iot", "iotdata"),
];

/// Whether `host` (no port) is an AWS endpoint (`*.amazonaws.com`, and the
/// China partition's `*.amazonaws.com.cn`).
pub fn is_aws_host(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn")
}

/// The (signing name, region) of an AWS endpoint host:
/// `{service}.{region}.amazonaws.com`, global `{service}.amazonaws.com`
/// (us-east-1), and S3's virtual-hosted and legacy `s3-{region}` forms.
pub fn scope_of(host: &str) -> Result<(String, String), SigV4Error> {
    let lower = host.trim_end_matches('.').to_ascii_lowercase();
    let not_aws = || SigV4Error::NotAws(host.to_owned());
    let stem = lower
        .strip_suffix(".amazonaws.com")
        .or_else(|| lower.strip_suffix(".amazonaws.com.cn"))
        .ok_or_else(not_aws)?;
    let labels: Vec<&str> = stem.split('.').collect();
    // S3: find the `s3` / `s3-{region}` / `s3-fips` label; buckets precede it.
    if let Some(i) = labels
        .iter()
        .position(|l| *l == "s3" || l.starts_with("s3-"))
    {
        let label = labels[i];
        let region = match label.strip_prefix("s3-") {
            Some(r) if r != "fips" && r != "external-1" => r.to_owned(),
            _ => labels
                .get(i + 1)
                .filter(|r| !r.is_empty() && **r != "dualstack")
                .or_else(|| labels.get(i + 2))
                .map_or("us-east-1", |r| r)
                .to_owned(),
        };
        return Ok(("s3".into(), region));
    }
    let (service, region) = match labels.as_slice() {
        [service] => (service.to_string(), "us-east-1".to_owned()),
        [.., service, region] if looks_like_region(region) => {
            let prefix = stem.strip_suffix(&format!(".{region}")).unwrap_or(service);
            (prefix.to_owned(), region.to_string())
        }
        _ => return Err(not_aws()),
    };
    let service = service.strip_suffix("-fips").unwrap_or(&service).to_owned();
    let name = SIGNING_NAMES
        .iter()
        .find(|(prefix, _)| *prefix == service)
        .map_or(service.clone(), |(_, name)| (*name).to_owned());
    Ok((name, region))
}

/// `us-east-1`, `eu-central-2`, `us-gov-west-1`, `cn-north-1`, ...
fn looks_like_region(label: &str) -> bool {
    let parts: Vec<&str> = label.split('-').collect();
    parts.len() >= 3 && parts[0].len() == 2 && parts.last().is_some_and(|n| n.parse::<u8>().is_ok())
}

/// Sign `parts` (a request to `host`, body `body`) in place: drop any
/// signature the sandbox made and add `Authorization`, `X-Amz-Date` and
/// `X-Amz-Content-Sha256` for `credentials`.
pub fn sign_request(
    parts: &mut Parts,
    host: &str,
    body: &[u8],
    credentials: &AwsCredentials,
    at: SystemTime,
) -> Result<(), SigV4Error> {
    let (name, region) = scope_of(host)?;
    for header in SIGNATURE_HEADERS {
        parts.headers.remove(header);
    }
    let identity = Credentials::new(
        &credentials.access_key_id,
        &credentials.secret_access_key,
        None,
        None,
        "sandpit-proxy",
    )
    .into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&region)
        .name(&name)
        .time(at)
        .settings(settings)
        .build()
        .map_err(|e| SigV4Error::Signing(e.to_string()))?
        .into();
    let uri = format!(
        "https://{host}{}",
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let headers: Vec<(&str, &str)> = parts
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
        .collect();
    let signable = SignableRequest::new(
        parts.method.as_str(),
        &uri,
        headers.into_iter(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| SigV4Error::Signing(e.to_string()))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| SigV4Error::Signing(e.to_string()))?
        .into_parts();
    let (new_headers, _params) = instructions.into_parts();
    for header in new_headers {
        let name = HeaderName::from_bytes(header.name().as_bytes())
            .map_err(|e| SigV4Error::Signing(e.to_string()))?;
        let value = HeaderValue::from_str(header.value())
            .map_err(|e| SigV4Error::Signing(e.to_string()))?;
        parts.headers.insert(name, value);
    }
    debug_assert!(parts.headers.contains_key(AUTHORIZATION));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn scope(host: &str) -> (String, String) {
        scope_of(host).unwrap()
    }

    #[test]
    fn endpoint_hosts_name_their_signing_scope() {
        let s = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(scope("sqs.eu-west-1.amazonaws.com"), s("sqs", "eu-west-1"));
        assert_eq!(scope("sts.amazonaws.com"), s("sts", "us-east-1"));
        assert_eq!(scope("iam.amazonaws.com"), s("iam", "us-east-1"));
        assert_eq!(scope("s3.amazonaws.com"), s("s3", "us-east-1"));
        assert_eq!(scope("my.bucket.s3.amazonaws.com"), s("s3", "us-east-1"));
        assert_eq!(
            scope("bkt.s3.us-west-2.amazonaws.com"),
            s("s3", "us-west-2")
        );
        assert_eq!(
            scope("bkt.s3-eu-west-1.amazonaws.com"),
            s("s3", "eu-west-1")
        );
        assert_eq!(
            scope("bkt.s3.dualstack.ap-south-1.amazonaws.com"),
            s("s3", "ap-south-1")
        );
        assert_eq!(
            scope("bedrock-runtime.us-east-1.amazonaws.com"),
            s("bedrock", "us-east-1")
        );
        assert_eq!(
            scope("runtime.sagemaker.eu-central-1.amazonaws.com"),
            s("sagemaker", "eu-central-1")
        );
        assert_eq!(
            scope("kms-fips.us-gov-west-1.amazonaws.com"),
            s("kms", "us-gov-west-1")
        );
        assert_eq!(
            scope("ec2.cn-north-1.amazonaws.com.cn"),
            s("ec2", "cn-north-1")
        );
        assert!(scope_of("example.com").is_err());
        assert!(scope_of("amazonaws.com.evil.example").is_err());
        assert!(is_aws_host("SQS.us-east-1.amazonaws.com."));
        assert!(!is_aws_host("amazonaws.com.evil.example"));
    }

    fn signed(method: &str, uri: &str, body: &[u8]) -> Parts {
        let (mut parts, ()) = http::Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "sqs.us-east-1.amazonaws.com")
            .header("authorization", "AWS4-HMAC-SHA256 Credential=DUMMY/...")
            .header("x-amz-security-token", "dummy")
            .body(())
            .unwrap()
            .into_parts();
        let creds = AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
        };
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        sign_request(&mut parts, "sqs.us-east-1.amazonaws.com", body, &creds, at).unwrap();
        parts
    }

    #[test]
    fn signing_replaces_the_sandbox_signature() {
        let parts = signed("POST", "/?Action=ListQueues", b"x=1");
        let auth = parts.headers["authorization"].to_str().unwrap();
        assert!(auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/sqs/aws4_request"
        ));
        assert!(auth.contains("SignedHeaders=host;x-amz-content-sha256;x-amz-date"));
        assert_eq!(parts.headers["x-amz-date"], "20150830T123600Z");
        assert!(parts.headers.get("x-amz-security-token").is_none());
        // The payload hash is of the body that is sent.
        assert_eq!(parts.headers["x-amz-content-sha256"], hex_sha256(b"x=1"));
        // Another body, another signature.
        let other = signed("POST", "/?Action=ListQueues", b"x=2");
        assert_ne!(
            parts.headers["authorization"],
            other.headers["authorization"]
        );
    }

    fn hex_sha256(data: &[u8]) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(data))
    }
}
