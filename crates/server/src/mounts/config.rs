//! `mount_config`, as parsed into its wire type
//! ([`sandpit_api::mount_config`]), checked into the typed mounts the host
//! sets up, or refused with a message naming the field.
//!
//! Every field the wire type does not name, or the mount's `type` does not
//! take, is refused: nothing is stored as if granted.

use sandpit_api::mount_config as wire;
use sandpit_api::proxy_config::{self, ProxyConfig, RuleKind, SecretKind};
use serde_json::{Map, Value};
use thiserror::Error;

/// At most this many mounts per sandbox.
pub const MAX_MOUNTS: usize = 16;
/// Longest `refresh_interval_seconds` (a day).
pub const MAX_REFRESH_SECONDS: u64 = 86_400;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn err<T>(message: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(message.into()))
}

/// A parsed `mount_config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountConfig {
    pub aws: Option<AwsAuth>,
    pub gcp: Option<SecretRef>,
    pub mounts: Vec<Mount>,
}

/// An AWS key pair, each half opaque or a workspace secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsAuth {
    pub access_key_id: SecretRef,
    pub secret_access_key: SecretRef,
}

/// A credential: a write-only literal or a workspace secret's name.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    Opaque(String),
    Workspace(String),
}

impl std::fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Opaque(_) => f.write_str("Opaque(<redacted>)"),
            Self::Workspace(name) => write!(f, "Workspace({name})"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub id: String,
    /// Absolute, normalised, below `/mnt/`.
    pub path: String,
    pub kind: MountKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountKind {
    Git(GitMount),
    Bucket(BucketMount),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitMount {
    pub remote_url: String,
    pub reference: GitRef,
    pub refresh_interval_seconds: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitRef {
    /// The remote's default branch.
    Head,
    Branch(String),
    Tag(String),
    /// A full 40-hex commit id (a Sandpit extension: `{"type": "commit"}`).
    Commit(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketMount {
    pub store: Store,
    pub bucket: String,
    /// Normalised: no leading or trailing `/`; empty for the whole bucket.
    pub prefix: String,
    pub read_only: bool,
    pub cache_max_size_bytes: Option<u64>,
    pub writeback_seconds: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Store {
    S3 {
        endpoint_url: String,
        region: String,
        path_style: bool,
        kms_key: Option<String>,
    },
    Gcs {
        /// The JSON API's base URL (a Sandpit extension, for emulators);
        /// `None`: Google's.
        endpoint: Option<String>,
    },
}

/// Parse and check `mount_config` (absent or `null`: no mounts). An `aws`
/// rule in `proxy_config` may stand in for `auth.aws`, as in the SDK.
pub fn parse(
    config: &Value,
    proxy_config: Option<&ProxyConfig>,
) -> Result<Option<MountConfig>, ConfigError> {
    if config.is_null() {
        return Ok(None);
    }
    let config = wire::MountConfig::from_value(config).map_err(|e| ConfigError(e.to_string()))?;
    check(&config, proxy_config).map(Some)
}

/// Check a parsed `mount_config`.
pub fn check(
    config: &wire::MountConfig,
    proxy_config: Option<&ProxyConfig>,
) -> Result<MountConfig, ConfigError> {
    unknown(&config.other, "mount_config", &["auth", "mounts"])?;
    let mounts = match &config.mounts {
        Some(items) if !items.is_empty() => items,
        _ => return err("mount_config.mounts must be a non-empty list of mounts"),
    };
    if mounts.len() > MAX_MOUNTS {
        return err(format!("mount_config.mounts: at most {MAX_MOUNTS} mounts"));
    }
    let parsed = mounts
        .iter()
        .enumerate()
        .map(|(i, m)| mount(i, m))
        .collect::<Result<Vec<_>, _>>()?;
    distinct(&parsed)?;
    let (aws, gcp) = auth(config.auth.as_ref())?;
    let has = |gcs: bool| {
        parsed.iter().any(|m| {
            matches!(&m.kind, MountKind::Bucket(b) if matches!(b.store, Store::Gcs { .. }) == gcs)
        })
    };
    let (s3_mounts, gcs_mounts) = (has(false), has(true));
    let proxy_aws = proxy_aws_rule(proxy_config);
    if aws.is_some() && proxy_aws.is_some() {
        return err("aws auth cannot be provided in both mount_config and proxy_config");
    }
    if gcp.is_some() && proxy_rules(proxy_config, RuleKind::Gcp).next().is_some() {
        return err("gcp auth cannot be provided in both mount_config and proxy_config");
    }
    if s3_mounts && aws.is_none() && proxy_aws.is_none() {
        return err("s3 mounts require aws auth in mount_config.auth");
    }
    if gcs_mounts && gcp.is_none() {
        return err("gcs mounts require gcp auth in mount_config.auth");
    }
    if aws.is_some() && !s3_mounts {
        return err("mount_config.auth.aws requires at least one s3 mount");
    }
    if gcp.is_some() && !gcs_mounts {
        return err("mount_config.auth.gcp requires at least one gcs mount");
    }
    Ok(MountConfig {
        aws: aws.or(proxy_aws),
        gcp,
        mounts: parsed,
    })
}

/// Refuse the first of the `given` fields not in `known`.
fn only<'a>(
    at: &str,
    known: &[&str],
    mut given: impl Iterator<Item = &'a str>,
) -> Result<(), ConfigError> {
    match given.find(|k| !known.contains(k)) {
        Some(key) => err(format!(
            "{at}.{key} is not supported (known fields: {})",
            known.join(", ")
        )),
        None => Ok(()),
    }
}

/// Refuse the fields a wire type did not know (kept in its `other`).
fn unknown(other: &Map<String, Value>, at: &str, known: &[&str]) -> Result<(), ConfigError> {
    only(at, known, other.keys().map(String::as_str))
}

fn string<'a>(value: Option<&'a String>, at: &str, key: &str) -> Result<&'a str, ConfigError> {
    match value.map(|s| s.trim()) {
        Some(s) if !s.is_empty() => Ok(s),
        _ => err(format!("{at}.{key} must be a non-empty string")),
    }
}

fn opt_string<'a>(
    value: Option<&'a String>,
    at: &str,
    key: &str,
) -> Result<Option<&'a str>, ConfigError> {
    value.map(|_| string(value, at, key)).transpose()
}

/// A required object.
fn object<'a, T>(value: Option<&'a T>, at: &str) -> Result<&'a T, ConfigError> {
    value.ok_or_else(|| ConfigError(format!("{at} must be an object")))
}

fn mount(i: usize, m: &wire::Mount) -> Result<Mount, ConfigError> {
    let at = format!("mount_config.mounts[{i}]");
    let id = string(m.id.as_ref(), &at, "id")?;
    check_id(id, &at)?;
    let Some(kind) = &m.kind else {
        return err(format!("{at}.type must be a non-empty string"));
    };
    let at = format!("mount_config.mounts[{i}] ('{id}')");
    let path = string(m.mount_path.as_ref(), &at, "mount_path")?;
    if *kind == wire::MountKind::Contexthub {
        return Err(context_hub(&at));
    }
    let path = mount_path(path, &at)?;
    let kind = match kind {
        wire::MountKind::Git => {
            only(&at, &["id", "type", "mount_path", "git"], m.given_fields())?;
            MountKind::Git(git(object(m.git.as_ref(), &format!("{at}.git"))?, &at)?)
        }
        wire::MountKind::S3 => MountKind::Bucket(bucket(m, true, &at)?),
        wire::MountKind::Gcs => MountKind::Bucket(bucket(m, false, &at)?),
        wire::MountKind::Contexthub => return Err(context_hub(&at)),
        wire::MountKind::Other(other) => {
            return err(format!(
                "{at}.type '{other}' is not one of s3, gcs, git, contexthub"
            ))
        }
    };
    Ok(Mount {
        id: id.to_owned(),
        path,
        kind,
    })
}

fn context_hub(at: &str) -> ConfigError {
    ConfigError(format!(
        "{at}: Context Hub mounts are not available on Sandpit (there is no Context Hub \
         here); use a git or bucket mount"
    ))
}

fn check_id(id: &str, at: &str) -> Result<(), ConfigError> {
    let ok = id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    match ok {
        true => Ok(()),
        false => err(format!(
            "{at}.id '{id}' must be 1-64 letters, digits, '_' or '-'"
        )),
    }
}

/// Bucket and Git mounts live below `/mnt` (the SDK's examples use
/// `/mnt/mounts/<name>` and `/mnt/repo`): absolute, normalised, plain
/// names only.
pub fn mount_path(path: &str, at: &str) -> Result<String, ConfigError> {
    let bad = |why: &str| {
        err(format!(
            "{at}.mount_path '{path}' {why}: use an absolute path below /mnt, such as \
             /mnt/mounts/data"
        ))
    };
    let Some(rest) = path.strip_prefix("/mnt/") else {
        return bad("is not below /mnt");
    };
    if path.len() > 255 {
        return bad("is longer than 255 bytes");
    }
    for part in rest.split('/') {
        let plain = part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+@".contains(&b));
        if part.is_empty() || part == "." || part == ".." || !plain {
            return bad(
                "must have non-empty components of letters, digits and ._-+@, no '.' or '..'",
            );
        }
    }
    Ok(path.to_owned())
}

/// Ids and paths are unique, and no mount lies inside another.
fn distinct(mounts: &[Mount]) -> Result<(), ConfigError> {
    for (i, a) in mounts.iter().enumerate() {
        for b in &mounts[i + 1..] {
            if a.id == b.id {
                return err(format!("mount_config.mounts: id '{}' is used twice", a.id));
            }
            let inside = |x: &str, y: &str| x == y || x.starts_with(&format!("{y}/"));
            if inside(&a.path, &b.path) || inside(&b.path, &a.path) {
                return err(format!(
                    "mount_config.mounts: mount paths '{}' and '{}' overlap",
                    a.path, b.path
                ));
            }
        }
    }
    Ok(())
}

fn git(source: &wire::GitSource, at: &str) -> Result<GitMount, ConfigError> {
    let at = format!("{at}.git");
    unknown(
        &source.other,
        &at,
        &["remote_url", "ref", "refresh_interval_seconds"],
    )?;
    let remote_url = remote_url(string(source.remote_url.as_ref(), &at, "remote_url")?, &at)?;
    let reference = match &source.reference {
        None => GitRef::Head,
        Some(reference) => git_ref(reference, &at)?,
    };
    let refresh = source.refresh_interval_seconds;
    if refresh.is_some_and(|s| s == 0 || s > MAX_REFRESH_SECONDS) {
        return err(format!(
            "{at}.refresh_interval_seconds must be between 1 and {MAX_REFRESH_SECONDS}"
        ));
    }
    Ok(GitMount {
        remote_url,
        reference,
        refresh_interval_seconds: refresh,
    })
}

/// An absolute `https` URL with a repository path and nothing else (the
/// SDK's rules): no credentials, query or fragment, no whitespace.
fn remote_url(url: &str, at: &str) -> Result<String, ConfigError> {
    let bad = |why: &str| err(format!("{at}.remote_url {why}"));
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("must not contain whitespace or control characters");
    }
    let parsed = https_url(url, &format!("{at}.remote_url"))?;
    if matches!(parsed.path(), "" | "/") {
        return bad("must include a repository path");
    }
    Ok(url.to_owned())
}

/// An absolute `https` URL without credentials, query or fragment, whose
/// host is a name or a public address.
fn https_url(url: &str, at: &str) -> Result<http::Uri, ConfigError> {
    if url.contains('#') {
        return err(format!("{at} must not include a query or fragment"));
    }
    let parsed: http::Uri = match url.parse() {
        Ok(u) => u,
        Err(e) => return err(format!("{at} '{url}' is not a URL: {e}")),
    };
    let Some(authority) = parsed
        .authority()
        .filter(|_| parsed.scheme_str() == Some("https"))
    else {
        return err(format!("{at} '{url}' must be an absolute https URL"));
    };
    if authority.as_str().contains('@') {
        return err(format!("{at} must not include credentials"));
    }
    if parsed.query().is_some() {
        return err(format!("{at} must not include a query or fragment"));
    }
    check_public_host(authority.host(), at)?;
    Ok(parsed)
}

fn git_ref(reference: &wire::GitRef, at: &str) -> Result<GitRef, ConfigError> {
    let at = format!("{at}.ref");
    unknown(&reference.other, &at, &["type", "name"])?;
    let name = string(reference.name.as_ref(), &at, "name")?;
    match &reference.kind {
        None => err(format!("{at}.type must be a non-empty string")),
        Some(wire::GitRefKind::Branch) => ref_name(name, &at).map(GitRef::Branch),
        Some(wire::GitRefKind::Tag) => ref_name(name, &at).map(GitRef::Tag),
        Some(wire::GitRefKind::Commit) => {
            let hex = name.len() == 40 && name.bytes().all(|b| b.is_ascii_hexdigit());
            match hex {
                true => Ok(GitRef::Commit(name.to_ascii_lowercase())),
                false => err(format!("{at}.name must be a full 40-digit commit id")),
            }
        }
        Some(wire::GitRefKind::Other(other)) => err(format!(
            "{at}.type '{other}' is not one of branch, tag, commit"
        )),
    }
}

/// A branch or tag name as `git check-ref-format` accepts it, and never
/// an option (`-...`).
fn ref_name(name: &str, at: &str) -> Result<String, ConfigError> {
    let forbidden = |c: char| c.is_control() || " ~^:?*[\\".contains(c);
    let bad_part = |p: &str| p.is_empty() || p.starts_with('.') || p.ends_with(".lock");
    let ok = name.len() <= 255
        && !name.starts_with('-')
        && !name.ends_with('.')
        && !name.contains("..")
        && !name.contains("@{")
        && name != "@"
        && !name.chars().any(forbidden)
        && !name.split('/').any(bad_part);
    match ok {
        true => Ok(name.to_owned()),
        false => err(format!(
            "{at}.name '{name}' is not a valid branch or tag name"
        )),
    }
}

/// An `s3` (or else `gcs`) mount.
fn bucket(m: &wire::Mount, s3: bool, at: &str) -> Result<BucketMount, ConfigError> {
    let kind = if s3 { "s3" } else { "gcs" };
    let mut known = vec!["id", "type", "mount_path", kind, "read_only", "cache"];
    if s3 {
        known.push("encryption");
    }
    only(at, &known, m.given_fields())?;
    let inner_at = format!("{at}.{kind}");
    let ((store, bucket), raw_prefix) = match s3 {
        true => {
            let source = object(m.s3.as_ref(), &inner_at)?;
            let encryption = m.encryption.as_ref();
            (s3_store(source, encryption, &inner_at, at)?, &source.prefix)
        }
        false => {
            let source = object(m.gcs.as_ref(), &inner_at)?;
            (gcs_store(source, &inner_at)?, &source.prefix)
        }
    };
    let prefix = match opt_string(raw_prefix.as_ref(), &inner_at, "prefix")? {
        None => String::new(),
        Some(p) => prefix(p, &inner_at)?,
    };
    let (cache_max_size_bytes, writeback_seconds) = match &m.cache {
        None => (None, None),
        Some(cache) => {
            let cache_at = format!("{at}.cache");
            unknown(
                &cache.other,
                &cache_at,
                &["max_size_bytes", "writeback_seconds"],
            )?;
            if cache.writeback_seconds.is_some_and(|s| s > 3600) {
                return err(format!("{cache_at}.writeback_seconds must be at most 3600"));
            }
            (cache.max_size_bytes, cache.writeback_seconds)
        }
    };
    Ok(BucketMount {
        store,
        bucket,
        prefix,
        read_only: m.read_only.unwrap_or(false),
        cache_max_size_bytes,
        writeback_seconds,
    })
}

fn s3_store(
    source: &wire::S3Source,
    encryption: Option<&wire::Encryption>,
    at: &str,
    mount_at: &str,
) -> Result<(Store, String), ConfigError> {
    unknown(
        &source.other,
        at,
        &["endpoint_url", "region", "bucket", "prefix", "path_style"],
    )?;
    let bucket = string(source.bucket.as_ref(), at, "bucket")?;
    let ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric())
        && !bucket.contains("..");
    if !ok {
        return err(format!(
            "{at}.bucket '{bucket}' is not an S3 bucket name (3-63 lowercase letters, digits, \
             '.' and '-')"
        ));
    }
    let region = opt_string(source.region.as_ref(), at, "region")?.unwrap_or("us-east-1");
    let region_ok = region.len() <= 32
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !region_ok {
        return err(format!("{at}.region '{region}' is not a region name"));
    }
    let endpoint_url = opt_string(source.endpoint_url.as_ref(), at, "endpoint_url")?
        .unwrap_or("https://s3.amazonaws.com");
    let endpoint_url = endpoint(endpoint_url, &format!("{at}.endpoint_url"))?;
    let kms_key = encryption
        .map(|e| kms_key(e, &format!("{mount_at}.encryption")))
        .transpose()?;
    let store = Store::S3 {
        endpoint_url,
        region: region.to_owned(),
        path_style: source.path_style.unwrap_or(false),
        kms_key,
    };
    Ok((store, bucket.to_owned()))
}

fn kms_key(encryption: &wire::Encryption, at: &str) -> Result<String, ConfigError> {
    unknown(&encryption.other, at, &["kms_key"])?;
    let key = string(encryption.kms_key.as_ref(), at, "kms_key")?;
    if key.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return err(format!("{at}.kms_key must not contain whitespace"));
    }
    Ok(key.to_owned())
}

fn gcs_store(source: &wire::GcsSource, at: &str) -> Result<(Store, String), ConfigError> {
    unknown(&source.other, at, &["bucket", "prefix", "endpoint"])?;
    let bucket = string(source.bucket.as_ref(), at, "bucket")?;
    let ok = (3..=222).contains(&bucket.len())
        && bucket.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-' || b == b'_'
        })
        && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !ok {
        return err(format!(
            "{at}.bucket '{bucket}' is not a GCS bucket name (lowercase letters, digits, '.', \
             '-' and '_')"
        ));
    }
    let endpoint = opt_string(source.endpoint.as_ref(), at, "endpoint")?
        .map(|e| endpoint(e, &format!("{at}.endpoint")))
        .transpose()?;
    Ok((Store::Gcs { endpoint }, bucket.to_owned()))
}

/// A bucket endpoint: `https` only (the host signs requests with the
/// credentials; they never cross the network in clear text), a host that
/// is a name or a public address.
fn endpoint(url: &str, at: &str) -> Result<String, ConfigError> {
    https_url(url, at)?;
    Ok(url.trim_end_matches('/').to_owned())
}

/// An address literal or `localhost` would be reached without the mount
/// proxy's checks (Go and curl never proxy loopback): refuse the reserved
/// ones here; names are checked by the proxy when it resolves them.
fn check_public_host(host: &str, at: &str) -> Result<(), ConfigError> {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    let name = host.trim_end_matches('.').to_ascii_lowercase();
    let reserved = match literal.parse::<std::net::IpAddr>() {
        Ok(ip) => sandpit_egress::policy::is_reserved(ip),
        Err(_) => name.is_empty() || name == "localhost" || name.ends_with(".localhost"),
    };
    match reserved {
        true => err(format!(
            "{at} names a private or loopback host, which mounts may not reach"
        )),
        false => Ok(()),
    }
}

fn prefix(p: &str, at: &str) -> Result<String, ConfigError> {
    let p = p.trim_matches('/');
    let ok = p.len() <= 1024
        && !p.chars().any(char::is_control)
        && p.split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..");
    match ok {
        true => Ok(p.to_owned()),
        false => err(format!(
            "{at}.prefix '{p}' must be a path of non-empty components without '.' or '..'"
        )),
    }
}

fn auth(
    auth: Option<&wire::MountAuth>,
) -> Result<(Option<AwsAuth>, Option<SecretRef>), ConfigError> {
    let Some(auth) = auth else {
        return Ok((None, None));
    };
    unknown(&auth.other, "mount_config.auth", &["aws", "gcp"])?;
    let aws = auth
        .aws
        .as_ref()
        .map(|a| aws(a, "mount_config.auth.aws"))
        .transpose()?;
    let gcp = auth.gcp.as_ref().map(gcp).transpose()?;
    Ok((aws, gcp))
}

fn aws(aws: &wire::AwsAuth, at: &str) -> Result<AwsAuth, ConfigError> {
    if aws.role_arn.is_some() {
        return err(format!(
            "{at}.role_arn is not supported: Sandpit has no STS to assume a role through; \
             use access_key_id and secret_access_key"
        ));
    }
    unknown(&aws.other, at, &["access_key_id", "secret_access_key"])?;
    Ok(AwsAuth {
        access_key_id: secret(aws.access_key_id.as_ref(), &format!("{at}.access_key_id"))?,
        secret_access_key: secret(
            aws.secret_access_key.as_ref(),
            &format!("{at}.secret_access_key"),
        )?,
    })
}

fn gcp(gcp: &wire::GcpAuth) -> Result<SecretRef, ConfigError> {
    let at = "mount_config.auth.gcp";
    unknown(&gcp.other, at, &["service_account_json"])?;
    let key_at = format!("{at}.service_account_json");
    let secret = secret(gcp.service_account_json.as_ref(), &key_at)?;
    if let SecretRef::Opaque(json) = &secret {
        sandpit_egress::gcp::ServiceAccount::from_json(json)
            .map_err(|e| ConfigError(format!("{key_at} is not usable: {e}")))?;
    }
    Ok(secret)
}

/// `{"type": "opaque"|"workspace_secret", "value"}`.
fn secret(secret: Option<&wire::Secret>, at: &str) -> Result<SecretRef, ConfigError> {
    let secret = object(secret, at)?;
    unknown(&secret.other, at, &["type", "value", "is_set"])?;
    secret_ref(secret.kind, secret.value.as_ref(), at)
}

fn secret_ref(
    kind: Option<SecretKind>,
    value: Option<&String>,
    at: &str,
) -> Result<SecretRef, ConfigError> {
    let value = string(value, at, "value")?;
    match kind {
        None => err(format!("{at}.type must be a non-empty string")),
        Some(SecretKind::Opaque) => Ok(SecretRef::Opaque(value.to_owned())),
        Some(SecretKind::WorkspaceSecret) => {
            let inner = value
                .strip_prefix("${")
                .or_else(|| value.strip_prefix('{'))
                .and_then(|rest| rest.strip_suffix('}'))
                .unwrap_or(value);
            sandpit_egress::inject::valid_secret_name(inner)
                .map(SecretRef::Workspace)
                .map_err(|e| ConfigError(format!("{at}: {e}")))
        }
        Some(SecretKind::Plaintext) => err(format!(
            "{at}.type 'plaintext' must be opaque or workspace_secret (plaintext credentials \
             are not accepted)"
        )),
    }
}

/// The enabled rules of `proxy_config` of one type.
fn proxy_rules(
    proxy_config: Option<&ProxyConfig>,
    kind: RuleKind,
) -> impl Iterator<Item = &proxy_config::Rule> {
    proxy_config
        .into_iter()
        .flat_map(ProxyConfig::enabled_rules)
        .filter(move |r| r.kind.as_ref() == Some(&kind))
}

/// The credentials of the first enabled `aws` rule of `proxy_config` (the
/// proxy config was validated before).
fn proxy_aws_rule(proxy_config: Option<&ProxyConfig>) -> Option<AwsAuth> {
    let half = |secret: Option<&proxy_config::Secret>| {
        let secret = secret?;
        secret_ref(secret.kind, secret.value.as_ref(), "aws").ok()
    };
    proxy_rules(proxy_config, RuleKind::Aws).find_map(|rule| {
        let aws = rule.aws.as_ref()?;
        Some(AwsAuth {
            access_key_id: half(aws.access_key_id.as_ref())?,
            secret_access_key: half(aws.secret_access_key.as_ref())?,
        })
    })
}

/// `mount_config` as the API shows it: opaque credentials without their
/// value (`is_set: true`), like `proxy_config`'s. A stored config was
/// checked when it was sent; one that no longer parses loses its `auth`.
pub fn redact(config: &mut Value) {
    match wire::MountConfig::from_value(config) {
        Ok(parsed) => *config = parsed.redacted().to_value(),
        Err(_) => {
            if let Some(obj) = config.as_object_mut() {
                obj.remove("auth");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn git_config(path: &str) -> Value {
        json!({"auth": {}, "mounts": [{"id": "repo", "type": "git", "mount_path": path,
            "git": {"remote_url": "https://example.com/r.git",
                    "ref": {"type": "branch", "name": "main"}, "refresh_interval_seconds": 60}}]})
    }

    fn s3_config() -> Value {
        json!({"auth": {"aws": {"access_key_id": {"type": "opaque", "value": "AKID"},
                                "secret_access_key": {"type": "workspace_secret", "value": "{SK}"}}},
               "mounts": [{"id": "data", "type": "s3", "mount_path": "/mnt/mounts/data",
                           "s3": {"endpoint_url": "https://s3.amazonaws.com", "region": "eu-west-1",
                                  "bucket": "my-bucket", "prefix": "a/b/", "path_style": false},
                           "read_only": true, "cache": {"max_size_bytes": 1000, "writeback_seconds": 2}}]})
    }

    fn message(config: Value) -> String {
        parse(&config, None).unwrap_err().0
    }

    #[test]
    fn git_mounts_parse() {
        let parsed = parse(&git_config("/mnt/repo"), None).unwrap().unwrap();
        let MountKind::Git(git) = &parsed.mounts[0].kind else {
            panic!("not git")
        };
        assert_eq!(git.reference, GitRef::Branch("main".into()));
        assert_eq!(git.refresh_interval_seconds, Some(60));
        assert_eq!(parse(&Value::Null, None), Ok(None));
    }

    #[test]
    fn s3_mounts_parse_with_auth() {
        let parsed = parse(&s3_config(), None).unwrap().unwrap();
        let MountKind::Bucket(b) = &parsed.mounts[0].kind else {
            panic!("not a bucket")
        };
        assert_eq!(b.prefix, "a/b");
        assert!(b.read_only);
        assert_eq!(b.writeback_seconds, Some(2));
        let aws = parsed.aws.unwrap();
        assert_eq!(aws.access_key_id, SecretRef::Opaque("AKID".into()));
        assert_eq!(aws.secret_access_key, SecretRef::Workspace("SK".into()));
    }

    #[test]
    fn bad_paths_name_the_field() {
        for path in [
            "/data",
            "/mnt",
            "/mnt/",
            "/mnt/../etc",
            "/mnt/a//b",
            "/mnt/a/",
            "mnt/a",
            "/mnt/a b",
        ] {
            let m = message(git_config(path));
            assert!(m.contains("mount_path"), "{path}: {m}");
        }
        let mut two = git_config("/mnt/repo");
        let second = json!({"id": "r2", "type": "git", "mount_path": "/mnt/repo/sub",
                            "git": {"remote_url": "https://example.com/x.git"}});
        two["mounts"].as_array_mut().unwrap().push(second);
        assert!(message(two).contains("overlap"));
    }

    #[test]
    fn bad_refs_urls_and_buckets_are_refused() {
        for (field, value, want) in [
            ("ref", json!({"type": "branch", "name": "-x"}), "ref.name"),
            ("ref", json!({"type": "branch", "name": "a..b"}), "ref.name"),
            ("ref", json!({"type": "commit", "name": "abc"}), "ref.name"),
            ("ref", json!({"type": "sha", "name": "abc"}), "ref.type"),
            (
                "remote_url",
                json!("http://example.com/r.git"),
                "remote_url",
            ),
            (
                "remote_url",
                json!("https://u:p@example.com/r.git"),
                "remote_url",
            ),
            ("remote_url", json!("https://127.0.0.1/r.git"), "remote_url"),
            ("remote_url", json!("https://localhost/r.git"), "remote_url"),
            (
                "refresh_interval_seconds",
                json!(0),
                "refresh_interval_seconds",
            ),
            ("depth", json!(1), "git.depth"),
        ] {
            let mut config = git_config("/mnt/repo");
            config["mounts"][0]["git"][field] = value;
            let m = message(config);
            assert!(m.contains(want), "{field}: {m}");
        }
        for (field, value, want) in [
            ("bucket", json!("Bad_Bucket"), "s3.bucket"),
            (
                "endpoint_url",
                json!("http://s3.example.com"),
                "endpoint_url",
            ),
            (
                "endpoint_url",
                json!("https://169.254.169.254"),
                "endpoint_url",
            ),
            ("prefix", json!("a/../b"), "prefix"),
            ("region", json!("EU WEST"), "region"),
        ] {
            let mut config = s3_config();
            config["mounts"][0]["s3"][field] = value;
            let m = message(config);
            assert!(m.contains(want), "{field}: {m}");
        }
    }

    #[test]
    fn auth_rules_follow_the_sdk() {
        let mut no_auth = s3_config();
        no_auth["auth"] = json!({});
        assert!(message(no_auth.clone()).contains("require aws auth"));
        let proxy = json!({"rules": [{"name": "a", "type": "aws", "enabled": true, "aws": {
            "access_key_id": {"type": "opaque", "value": "P"},
            "secret_access_key": {"type": "opaque", "value": "Q"}}}]});
        let proxy = ProxyConfig::from_value(&proxy).unwrap();
        let parsed = parse(&no_auth, Some(&proxy)).unwrap().unwrap();
        assert_eq!(
            parsed.aws.unwrap().access_key_id,
            SecretRef::Opaque("P".into())
        );
        assert!(parse(&s3_config(), Some(&proxy))
            .unwrap_err()
            .0
            .contains("both"));
        let mut role = s3_config();
        role["auth"]["aws"] = json!({"role_arn": "arn:aws:iam::1:role/x"});
        assert!(message(role).contains("role_arn"));
        let mut plain = s3_config();
        plain["auth"]["aws"]["access_key_id"]["type"] = json!("plaintext");
        assert!(message(plain).contains("access_key_id.type"));
        let mut stray = git_config("/mnt/repo");
        stray["auth"] = s3_config()["auth"].clone();
        assert!(message(stray).contains("requires at least one s3 mount"));
    }

    #[test]
    fn wrong_types_and_fields_a_type_does_not_take_name_the_field() {
        let mut typed = git_config("/mnt/repo");
        typed["mounts"][0]["git"]["refresh_interval_seconds"] = json!("60");
        let m = message(typed);
        assert!(
            m.starts_with("mount_config.mounts[0].git.refresh_interval_seconds: invalid type"),
            "{m}"
        );
        let mut read_only = git_config("/mnt/repo");
        read_only["mounts"][0]["read_only"] = json!(true);
        let m = message(read_only);
        assert!(m.contains("('repo').read_only is not supported"), "{m}");
        let mut stray = s3_config();
        stray["auth"]["aws"]["access_key_id"]["note"] = json!("x");
        let m = message(stray);
        assert!(
            m.contains("auth.aws.access_key_id.note is not supported"),
            "{m}"
        );
        assert!(message(json!([])).contains("mount_config: must be an object"));
    }

    #[test]
    fn context_hub_is_refused_clearly() {
        let config = json!({"auth": {}, "mounts": [{"id": "m", "type": "contexthub",
            "mount_path": "/memories", "contexthub": {"repo": "-/agent"}}]});
        assert!(message(config).contains("Context Hub mounts are not available"));
    }

    #[test]
    fn opaque_credentials_are_redacted() {
        let mut config = s3_config();
        redact(&mut config);
        let text = config.to_string();
        assert!(!text.contains("AKID"));
        assert_eq!(
            config["auth"]["aws"]["access_key_id"],
            json!({"type": "opaque", "is_set": true})
        );
        assert_eq!(
            config["auth"]["aws"]["secret_access_key"]["value"],
            json!("{SK}")
        );
    }
}
