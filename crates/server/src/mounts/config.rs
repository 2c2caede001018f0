//! `mount_config` as the `langsmith` SDK sends it (`mount_config()`,
//! `s3_mount`, `gcs_mount`, `git_mount`, `context_hub_mount`), parsed into
//! typed values or refused with a message naming the field.
//!
//! Shape: `{"auth": {"aws": {...}, "gcp": {...}}, "mounts": [{"id", "type",
//! "mount_path", "<type>": {...}, "read_only"?, "cache"?, "encryption"?}]}`.
//! Every field not listed here is refused: nothing is stored as if granted.

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
    proxy_config: Option<&Value>,
) -> Result<Option<MountConfig>, ConfigError> {
    let obj = match config {
        Value::Null => return Ok(None),
        Value::Object(obj) => obj,
        _ => return err("mount_config must be an object with 'mounts' and 'auth'"),
    };
    only(obj, "mount_config", &["auth", "mounts"])?;
    let mounts = match obj.get("mounts") {
        Some(Value::Array(items)) if !items.is_empty() => items,
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
    let (aws, gcp) = auth(obj.get("auth"))?;
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
    if gcp.is_some() && proxy_rule_of_type(proxy_config, "gcp") {
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
    Ok(Some(MountConfig {
        aws: aws.or(proxy_aws),
        gcp,
        mounts: parsed,
    }))
}

/// Refuse fields of `obj` not in `known`, naming the first.
fn only(obj: &Map<String, Value>, at: &str, known: &[&str]) -> Result<(), ConfigError> {
    match obj.keys().find(|k| !known.contains(&k.as_str())) {
        Some(key) => err(format!(
            "{at}.{key} is not supported (known fields: {})",
            known.join(", ")
        )),
        None => Ok(()),
    }
}

fn string<'a>(obj: &'a Map<String, Value>, at: &str, key: &str) -> Result<&'a str, ConfigError> {
    match obj.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim()),
        _ => err(format!("{at}.{key} must be a non-empty string")),
    }
}

fn opt_string<'a>(
    obj: &'a Map<String, Value>,
    at: &str,
    key: &str,
) -> Result<Option<&'a str>, ConfigError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        _ => string(obj, at, key).map(Some),
    }
}

fn opt_bool(obj: &Map<String, Value>, at: &str, key: &str) -> Result<Option<bool>, ConfigError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        _ => err(format!("{at}.{key} must be true or false")),
    }
}

fn opt_u64(obj: &Map<String, Value>, at: &str, key: &str) -> Result<Option<u64>, ConfigError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) => Ok(Some(n)),
            None => err(format!("{at}.{key} must be a whole number >= 0")),
        },
    }
}

fn object<'a>(value: Option<&'a Value>, at: &str) -> Result<&'a Map<String, Value>, ConfigError> {
    match value {
        Some(Value::Object(obj)) => Ok(obj),
        _ => err(format!("{at} must be an object")),
    }
}

fn mount(i: usize, value: &Value) -> Result<Mount, ConfigError> {
    let at = format!("mount_config.mounts[{i}]");
    let obj = object(Some(value), &at)?;
    let id = string(obj, &at, "id")?;
    check_id(id, &at)?;
    let kind = string(obj, &at, "type")?;
    let at = format!("mount_config.mounts[{i}] ('{id}')");
    let path = string(obj, &at, "mount_path")?;
    if kind == "contexthub" {
        return err(format!(
            "{at}: Context Hub mounts are not available on Sandpit (there is no Context Hub \
             here); use a git or bucket mount"
        ));
    }
    let path = mount_path(path, &at)?;
    let kind = match kind {
        "git" => {
            only(obj, &at, &["id", "type", "mount_path", "git"])?;
            MountKind::Git(git(object(obj.get("git"), &format!("{at}.git"))?, &at)?)
        }
        "s3" | "gcs" => MountKind::Bucket(bucket(obj, kind, &at)?),
        other => {
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

fn git(obj: &Map<String, Value>, at: &str) -> Result<GitMount, ConfigError> {
    let at = format!("{at}.git");
    only(obj, &at, &["remote_url", "ref", "refresh_interval_seconds"])?;
    let remote_url = remote_url(string(obj, &at, "remote_url")?, &at)?;
    let reference = match obj.get("ref") {
        None | Some(Value::Null) => GitRef::Head,
        Some(value) => git_ref(object(Some(value), &format!("{at}.ref"))?, &at)?,
    };
    let refresh = opt_u64(obj, &at, "refresh_interval_seconds")?;
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

fn git_ref(obj: &Map<String, Value>, at: &str) -> Result<GitRef, ConfigError> {
    let at = format!("{at}.ref");
    only(obj, &at, &["type", "name"])?;
    let name = string(obj, &at, "name")?;
    match string(obj, &at, "type")? {
        "branch" => ref_name(name, &at).map(GitRef::Branch),
        "tag" => ref_name(name, &at).map(GitRef::Tag),
        "commit" => {
            let hex = name.len() == 40 && name.bytes().all(|b| b.is_ascii_hexdigit());
            match hex {
                true => Ok(GitRef::Commit(name.to_ascii_lowercase())),
                false => err(format!("{at}.name must be a full 40-digit commit id")),
            }
        }
        other => err(format!(
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

fn bucket(obj: &Map<String, Value>, kind: &str, at: &str) -> Result<BucketMount, ConfigError> {
    let mut known = vec!["id", "type", "mount_path", kind, "read_only", "cache"];
    if kind == "s3" {
        known.push("encryption");
    }
    only(obj, at, &known)?;
    let inner_at = format!("{at}.{kind}");
    let inner = object(obj.get(kind), &inner_at)?;
    let (store, bucket) = match kind {
        "s3" => s3(obj, inner, &inner_at, at)?,
        _ => gcs(inner, &inner_at)?,
    };
    let prefix = match opt_string(inner, &inner_at, "prefix")? {
        None => String::new(),
        Some(p) => prefix(p, &inner_at)?,
    };
    let (cache_max_size_bytes, writeback_seconds) = match obj.get("cache") {
        None | Some(Value::Null) => (None, None),
        Some(value) => {
            let cache_at = format!("{at}.cache");
            let cache = object(Some(value), &cache_at)?;
            only(cache, &cache_at, &["max_size_bytes", "writeback_seconds"])?;
            let writeback = opt_u64(cache, &cache_at, "writeback_seconds")?;
            if writeback.is_some_and(|s| s > 3600) {
                return err(format!("{cache_at}.writeback_seconds must be at most 3600"));
            }
            (opt_u64(cache, &cache_at, "max_size_bytes")?, writeback)
        }
    };
    Ok(BucketMount {
        store,
        bucket,
        prefix,
        read_only: opt_bool(obj, at, "read_only")?.unwrap_or(false),
        cache_max_size_bytes,
        writeback_seconds,
    })
}

fn s3(
    mount: &Map<String, Value>,
    obj: &Map<String, Value>,
    at: &str,
    mount_at: &str,
) -> Result<(Store, String), ConfigError> {
    only(
        obj,
        at,
        &["endpoint_url", "region", "bucket", "prefix", "path_style"],
    )?;
    let bucket = string(obj, at, "bucket")?;
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
    let region = opt_string(obj, at, "region")?.unwrap_or("us-east-1");
    let region_ok = region.len() <= 32
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !region_ok {
        return err(format!("{at}.region '{region}' is not a region name"));
    }
    let endpoint_url = opt_string(obj, at, "endpoint_url")?.unwrap_or("https://s3.amazonaws.com");
    let endpoint_url = endpoint(endpoint_url, &format!("{at}.endpoint_url"))?;
    let kms_key = match mount.get("encryption") {
        None | Some(Value::Null) => None,
        Some(value) => {
            let enc_at = format!("{mount_at}.encryption");
            let enc = object(Some(value), &enc_at)?;
            only(enc, &enc_at, &["kms_key"])?;
            let key = string(enc, &enc_at, "kms_key")?;
            if key.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return err(format!("{enc_at}.kms_key must not contain whitespace"));
            }
            Some(key.to_owned())
        }
    };
    let store = Store::S3 {
        endpoint_url,
        region: region.to_owned(),
        path_style: opt_bool(obj, at, "path_style")?.unwrap_or(false),
        kms_key,
    };
    Ok((store, bucket.to_owned()))
}

fn gcs(obj: &Map<String, Value>, at: &str) -> Result<(Store, String), ConfigError> {
    only(obj, at, &["bucket", "prefix", "endpoint"])?;
    let bucket = string(obj, at, "bucket")?;
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
    let endpoint = opt_string(obj, at, "endpoint")?
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

fn auth(value: Option<&Value>) -> Result<(Option<AwsAuth>, Option<SecretRef>), ConfigError> {
    let obj = match value {
        None | Some(Value::Null) => return Ok((None, None)),
        Some(Value::Object(obj)) => obj,
        Some(_) => return err("mount_config.auth must be an object with 'aws' and/or 'gcp'"),
    };
    only(obj, "mount_config.auth", &["aws", "gcp"])?;
    let aws = match obj.get("aws") {
        None | Some(Value::Null) => None,
        Some(v) => Some(aws(
            object(Some(v), "mount_config.auth.aws")?,
            "mount_config.auth.aws",
        )?),
    };
    let gcp = match obj.get("gcp") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let at = "mount_config.auth.gcp";
            let gcp = object(Some(v), at)?;
            only(gcp, at, &["service_account_json"])?;
            let secret = secret(
                gcp.get("service_account_json"),
                &format!("{at}.service_account_json"),
            )?;
            if let SecretRef::Opaque(json) = &secret {
                sandpit_egress::gcp::ServiceAccount::from_json(json).map_err(|e| {
                    ConfigError(format!("{at}.service_account_json is not usable: {e}"))
                })?;
            }
            Some(secret)
        }
    };
    Ok((aws, gcp))
}

fn aws(obj: &Map<String, Value>, at: &str) -> Result<AwsAuth, ConfigError> {
    if obj.contains_key("role_arn") {
        return err(format!(
            "{at}.role_arn is not supported: Sandpit has no STS to assume a role through; \
             use access_key_id and secret_access_key"
        ));
    }
    only(obj, at, &["access_key_id", "secret_access_key"])?;
    Ok(AwsAuth {
        access_key_id: secret(obj.get("access_key_id"), &format!("{at}.access_key_id"))?,
        secret_access_key: secret(
            obj.get("secret_access_key"),
            &format!("{at}.secret_access_key"),
        )?,
    })
}

/// `{"type": "opaque"|"workspace_secret", "value"}`.
fn secret(value: Option<&Value>, at: &str) -> Result<SecretRef, ConfigError> {
    let obj = object(value, at)?;
    only(obj, at, &["type", "value", "is_set"])?;
    let value = string(obj, at, "value")?;
    match string(obj, at, "type")? {
        "opaque" => Ok(SecretRef::Opaque(value.to_owned())),
        "workspace_secret" => {
            let v = value.trim();
            let inner = v
                .strip_prefix("${")
                .or_else(|| v.strip_prefix('{'))
                .and_then(|rest| rest.strip_suffix('}'))
                .unwrap_or(v);
            sandpit_egress::inject::valid_secret_name(inner)
                .map(SecretRef::Workspace)
                .map_err(|e| ConfigError(format!("{at}: {e}")))
        }
        other => err(format!(
            "{at}.type '{other}' must be opaque or workspace_secret (plaintext credentials are \
             not accepted)"
        )),
    }
}

fn enabled_rules(proxy_config: Option<&Value>) -> impl Iterator<Item = &Value> {
    proxy_config
        .and_then(|c| c.get("rules"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|r| r.get("enabled").and_then(Value::as_bool) != Some(false))
}

fn proxy_rule_of_type(proxy_config: Option<&Value>, kind: &str) -> bool {
    enabled_rules(proxy_config).any(|r| r.get("type").and_then(Value::as_str) == Some(kind))
}

/// The credentials of the first enabled `aws` rule of `proxy_config` (the
/// proxy config was validated before).
fn proxy_aws_rule(proxy_config: Option<&Value>) -> Option<AwsAuth> {
    enabled_rules(proxy_config)
        .filter(|r| r.get("type").and_then(Value::as_str) == Some("aws"))
        .find_map(|r| {
            let aws = r.get("aws")?.as_object()?;
            Some(AwsAuth {
                access_key_id: secret(aws.get("access_key_id"), "aws").ok()?,
                secret_access_key: secret(aws.get("secret_access_key"), "aws").ok()?,
            })
        })
}

/// `mount_config` as the API shows it: opaque credentials without their
/// value (`is_set: true`), like `proxy_config`'s.
pub fn redact(config: &mut Value) {
    let Some(auth) = config.get_mut("auth").and_then(Value::as_object_mut) else {
        return;
    };
    for provider in auth.values_mut().filter_map(Value::as_object_mut) {
        for secret in provider.values_mut().filter_map(Value::as_object_mut) {
            if secret.get("type").and_then(Value::as_str) == Some("opaque") {
                let set = secret.remove("value").is_some();
                secret.insert("is_set".into(), Value::Bool(set));
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
