//! Request validation: wire requests in, typed values or a clear 4xx out.
//! Nothing is written anywhere until a request has passed through here.

use sandpit_api::sandbox::RunConfig;
use sandpit_api::{CreateSandboxRequest, ListSandboxesQuery, SandboxStatus, UpdateSandboxRequest};
use sandpit_runtime::Isolation;
use serde_json::{Map, Value};

use crate::config::Defaults;
use crate::error::ApiError;
use crate::store::{ListFilter, SortColumn};

pub const MAX_NAME_LEN: usize = 63;
pub const MAX_WAIT_SECONDS: i64 = 3600;
pub const DEFAULT_WAIT_SECONDS: i64 = 30;
pub const MAX_LIST_LIMIT: i64 = 500;
pub const DEFAULT_LIST_LIMIT: i64 = 50;
pub const MIN_MEM_BYTES: i64 = 32 << 20;
pub const MAX_VCPUS: i64 = 64;

/// Response fields that a stored `extra` field must never shadow.
const RESERVED_FIELDS: &[&str] = &[
    "id",
    "name",
    "status",
    "status_message",
    "dataplane_url",
    "created_at",
    "updated_at",
    "created_by",
    "updated_by",
    "vcpus",
    "mem_bytes",
    "fs_capacity_bytes",
    "idle_ttl_seconds",
    "delete_after_stop_seconds",
    "ttl_seconds",
    "expires_at",
    "stopped_at",
    "last_activity_at",
    "snapshot_id",
    "template_name",
    "image",
    "persistent",
    "proxy_config",
    "run_config",
    "labels",
    "wait_for_ready",
    "timeout",
    "snapshot",
    "snapshot_name",
    "tag_value_ids",
    "preserve_memory_on_stop",
    "restore_memory",
    "access_delegation",
    "isolation",
];

/// A create request that passed validation.
#[derive(Debug, Clone)]
pub struct CreateSpec {
    pub name: Option<String>,
    pub wait_for_ready: bool,
    pub wait_seconds: i64,
    pub image_ref: ImageRef,
    pub vcpus: i64,
    pub mem_bytes: i64,
    pub fs_capacity_bytes: i64,
    /// Whether the request named `fs_capacity_bytes` (else a snapshot's
    /// capacity replaces the server default).
    pub fs_capacity_given: bool,
    pub idle_ttl_seconds: i64,
    pub delete_after_stop_seconds: i64,
    pub ttl_seconds: Option<i64>,
    pub persistent: bool,
    pub proxy_config: Option<Value>,
    pub run_config: Option<RunConfig>,
    pub labels: std::collections::BTreeMap<String, String>,
    pub extra: Map<String, Value>,
}

/// What the sandbox boots from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    /// The built-in `host` image.
    Host,
    Snapshot(String),
    Template(String),
}

use crate::proxy_config::validate as validate_proxy_config;

pub fn validate_name(name: &str) -> Result<(), ApiError> {
    let bytes = name.as_bytes();
    let ok_char = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-';
    let valid = !bytes.is_empty()
        && bytes.len() <= MAX_NAME_LEN
        && bytes.iter().all(ok_char)
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-';
    if valid {
        Ok(())
    } else {
        Err(ApiError::Validation(format!(
            "Invalid name '{name}': use 1-{MAX_NAME_LEN} lowercase letters, digits and '-', \
             starting and ending with a letter or digit"
        )))
    }
}

/// TTL fields: `>= 0` and a multiple of 60 (0 disables).
pub fn validate_ttl(field: &str, value: i64) -> Result<i64, ApiError> {
    if value < 0 {
        return Err(ApiError::Validation(format!(
            "{field} must be >= 0, got {value}"
        )));
    }
    if value % 60 != 0 {
        return Err(ApiError::Validation(format!(
            "{field} must be a multiple of 60 seconds, got {value}"
        )));
    }
    Ok(value)
}

fn validate_positive(field: &str, value: i64, min: i64, max: Option<i64>) -> Result<i64, ApiError> {
    if value < min || max.is_some_and(|m| value > m) {
        let range = match max {
            Some(m) => format!("between {min} and {m}"),
            None => format!(">= {min}"),
        };
        return Err(ApiError::Validation(format!(
            "{field} must be {range}, got {value}"
        )));
    }
    Ok(value)
}

fn validate_run_config(rc: &RunConfig) -> Result<(), ApiError> {
    if let Some(dir) = &rc.work_dir {
        if !dir.starts_with('/') {
            return Err(ApiError::Validation(format!(
                "run_config.work_dir must be an absolute path, got '{dir}'"
            )));
        }
    }
    if let Some(env) = &rc.env_vars {
        if let Some(bad) = env
            .keys()
            .find(|k| k.is_empty() || k.contains('=') || k.contains('\0'))
        {
            return Err(ApiError::Validation(format!(
                "run_config.env_vars has an invalid name '{bad}'"
            )));
        }
    }
    Ok(())
}

fn image_ref(req: &CreateSandboxRequest) -> Result<ImageRef, ApiError> {
    let reference = match (&req.snapshot, &req.snapshot_name) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::Validation(
                "snapshot and snapshot_name must not disagree".into(),
            ))
        }
        (Some(a), _) | (None, Some(a)) => Some(a.clone()),
        (None, None) => None,
    };
    let chosen = [
        req.snapshot_id.is_some(),
        reference.is_some(),
        req.template_name.is_some(),
    ];
    if chosen.iter().filter(|c| **c).count() > 1 {
        return Err(ApiError::Validation(
            "At most one of snapshot_id, snapshot (snapshot_name) or template_name may be set"
                .into(),
        ));
    }
    Ok(match (&req.snapshot_id, reference, &req.template_name) {
        (Some(id), _, _) => ImageRef::Snapshot(id.clone()),
        (_, Some(r), _) => ImageRef::Snapshot(r),
        (_, _, Some(t)) => ImageRef::Template(t.clone()),
        _ => ImageRef::Host,
    })
}

/// A sandbox's resources against the server's maxima (`--max-sandbox-*`):
/// a request, or the template it names, asking for more is refused (422),
/// so one sandbox cannot take more than the host has.
pub fn within_maxima(spec: &CreateSpec, defaults: &Defaults) -> Result<(), ApiError> {
    let source = match &spec.image_ref {
        ImageRef::Template(name) => format!(" (from template '{name}')"),
        _ => String::new(),
    };
    let limits = [
        ("vcpus", spec.vcpus, defaults.max_vcpus.min(MAX_VCPUS)),
        ("mem_bytes", spec.mem_bytes, defaults.max_mem_bytes),
        (
            "fs_capacity_bytes",
            spec.fs_capacity_bytes,
            defaults.max_fs_capacity_bytes,
        ),
    ];
    match limits.iter().find(|(_, value, max)| value > max) {
        Some((field, value, max)) => Err(ApiError::Validation(format!(
            "{field} must be at most {max} on this server, got {value}{source}"
        ))),
        None => Ok(()),
    }
}

/// Fields of `POST /boxes` stored in `extra` by the controller that owns
/// them rather than refused here.
const PASSED_THROUGH: &[&str] = &["mount_config"];
/// Most `tag_value_ids` a sandbox may carry, and the longest id.
pub const MAX_TAG_VALUE_IDS: usize = 64;
const MAX_TAG_VALUE_ID_LEN: usize = 128;

/// Refuse what a client asked for that Sandpit does not do (issue 17 item
/// 5): a field must never be stored and echoed as if it had been granted.
/// Only the `/boxes` route calls this; internal callers put their own data
/// in `extra`.
pub fn refuse_unimplemented(req: &CreateSandboxRequest) -> Result<(), ApiError> {
    if req.preserve_memory_on_stop == Some(true) {
        return Err(ApiError::Validation(
            "preserve_memory_on_stop is not supported: Sandpit does not keep a sandbox's \
             memory across a stop (processes end; files are kept); omit it or pass false"
                .into(),
        ));
    }
    if req.restore_memory == Some(true) {
        return Err(ApiError::Validation(
            "restore_memory is not supported: Sandpit snapshots hold files, never memory; \
             omit it or pass false"
                .into(),
        ));
    }
    match req
        .extra
        .keys()
        .find(|k| !PASSED_THROUGH.contains(&k.as_str()))
    {
        Some(field) => Err(ApiError::Validation(format!(
            "Unknown field '{field}': Sandpit does not implement it"
        ))),
        None => Ok(()),
    }
}

fn validate_tag_value_ids(ids: &[String]) -> Result<(), ApiError> {
    if ids.len() > MAX_TAG_VALUE_IDS {
        return Err(ApiError::Validation(format!(
            "tag_value_ids may hold at most {MAX_TAG_VALUE_IDS} ids, got {}",
            ids.len()
        )));
    }
    let bad = |id: &String| {
        id.is_empty() || id.len() > MAX_TAG_VALUE_ID_LEN || id.chars().any(char::is_control)
    };
    match ids.iter().find(|id| bad(id)) {
        Some(id) => Err(ApiError::Validation(format!(
            "tag_value_ids has an invalid id '{id}': use 1-{MAX_TAG_VALUE_ID_LEN} printable characters"
        ))),
        None => Ok(()),
    }
}

pub fn create_spec(req: CreateSandboxRequest, defaults: &Defaults) -> Result<CreateSpec, ApiError> {
    if let Some(name) = &req.name {
        validate_name(name)?;
    }
    let image_ref = image_ref(&req)?;
    if let Some(rc) = &req.run_config {
        validate_run_config(rc)?;
    }
    let wait_seconds = validate_positive(
        "timeout",
        req.timeout.unwrap_or(DEFAULT_WAIT_SECONDS),
        0,
        Some(MAX_WAIT_SECONDS),
    )?;
    let mut extra = req.extra;
    extra.retain(|k, _| !RESERVED_FIELDS.contains(&k.as_str()));
    crate::mounts::validate(extra.get("mount_config"), req.proxy_config.as_ref())?;
    if let Some(ids) = req.tag_value_ids {
        validate_tag_value_ids(&ids)?;
        // Stored with the sandbox and returned as is (labels-like).
        extra.insert("tag_value_ids".into(), Value::from(ids));
    }
    if let Some(grant) = req.access_delegation.as_ref().filter(|v| !v.is_null()) {
        // Stored and returned normalised; recorded with the creating key
        // by `crate::delegation::record`.
        let grant = crate::delegation::Grant::parse(grant)?;
        extra.insert(crate::delegation::FIELD.into(), grant.to_json());
    }
    let isolation = isolation(req.isolation.as_deref(), &extra, defaults)?;
    extra.insert("isolation".into(), Value::from(isolation.as_str()));
    let spec = CreateSpec {
        name: req.name,
        wait_for_ready: req.wait_for_ready.unwrap_or(true),
        wait_seconds,
        image_ref,
        vcpus: validate_positive(
            "vcpus",
            req.vcpus.unwrap_or(defaults.vcpus),
            1,
            Some(MAX_VCPUS),
        )?,
        mem_bytes: validate_positive(
            "mem_bytes",
            req.mem_bytes.unwrap_or(defaults.mem_bytes),
            MIN_MEM_BYTES,
            None,
        )?,
        fs_capacity_bytes: validate_positive(
            "fs_capacity_bytes",
            req.fs_capacity_bytes.unwrap_or(defaults.fs_capacity_bytes),
            1 << 20,
            None,
        )?,
        fs_capacity_given: req.fs_capacity_bytes.is_some(),
        idle_ttl_seconds: validate_ttl(
            "idle_ttl_seconds",
            req.idle_ttl_seconds.unwrap_or(defaults.idle_ttl_seconds),
        )?,
        delete_after_stop_seconds: validate_ttl(
            "delete_after_stop_seconds",
            req.delete_after_stop_seconds
                .unwrap_or(defaults.delete_after_stop_seconds),
        )?,
        ttl_seconds: req
            .ttl_seconds
            .map(|t| validate_ttl("ttl_seconds", t))
            .transpose()?
            .filter(|t| *t > 0),
        persistent: req.persistent.unwrap_or(true),
        proxy_config: validate_proxy_config(req.proxy_config.filter(|v| !v.is_null()))?,
        run_config: req.run_config,
        labels: req.labels.unwrap_or_default(),
        extra,
    };
    within_maxima(&spec, defaults)?;
    Ok(spec)
}

/// The sandbox's isolation level: the request's, else the server default;
/// `gvisor` only where runsc is installed, and without what gVisor cannot
/// give (422 naming it).
fn isolation(
    asked: Option<&str>,
    extra: &Map<String, Value>,
    defaults: &Defaults,
) -> Result<Isolation, ApiError> {
    let isolation = match asked {
        Some(name) => name.parse().map_err(ApiError::Validation)?,
        None => defaults.isolation,
    };
    if isolation != Isolation::Gvisor {
        return Ok(isolation);
    }
    if !defaults.gvisor_available {
        return Err(ApiError::Validation(
            "isolation \"gvisor\" is not available on this server: runsc (gVisor) is not \
             installed; use \"namespaces\""
                .into(),
        ));
    }
    if let Some(field) = GVISOR_UNSUPPORTED.iter().find(|f| extra.contains_key(**f)) {
        return Err(ApiError::Validation(format!(
            "{field} is not supported with isolation \"gvisor\": use isolation \"namespaces\" \
             or omit {field}"
        )));
    }
    Ok(isolation)
}

/// Create fields a gVisor sandbox cannot honour: FUSE mounts are made by
/// the server in the helper's mount namespace and bound as host FUSE file
/// systems, which runsc's gofer does not serve.
const GVISOR_UNSUPPORTED: &[&str] = &["mount_config"];

/// A validated `PATCH`.
#[derive(Debug, Clone, Default)]
pub struct UpdateSpec {
    pub name: Option<String>,
    pub idle_ttl_seconds: Option<i64>,
    pub delete_after_stop_seconds: Option<i64>,
    pub ttl_seconds: Option<i64>,
    pub proxy_config: Option<Value>,
    pub run_config: Option<RunConfig>,
    pub labels: Option<std::collections::BTreeMap<String, String>>,
}

pub fn update_spec(req: UpdateSandboxRequest) -> Result<UpdateSpec, ApiError> {
    if let Some(name) = &req.name {
        validate_name(name)?;
    }
    if let Some(rc) = &req.run_config {
        validate_run_config(rc)?;
    }
    Ok(UpdateSpec {
        name: req.name,
        idle_ttl_seconds: req
            .idle_ttl_seconds
            .map(|v| validate_ttl("idle_ttl_seconds", v))
            .transpose()?,
        delete_after_stop_seconds: req
            .delete_after_stop_seconds
            .map(|v| validate_ttl("delete_after_stop_seconds", v))
            .transpose()?,
        ttl_seconds: req
            .ttl_seconds
            .map(|v| validate_ttl("ttl_seconds", v))
            .transpose()?,
        // Validated by the controller once opaque values are carried over.
        proxy_config: req.proxy_config,
        run_config: req.run_config,
        labels: req.labels,
    })
}

pub fn list_filter(q: ListSandboxesQuery) -> Result<ListFilter, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIST_LIMIT);
    if !(1..=MAX_LIST_LIMIT).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be between 1 and {MAX_LIST_LIMIT}, got {limit}"
        )));
    }
    let offset = q.offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::BadRequest(format!(
            "offset must be >= 0, got {offset}"
        )));
    }
    let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(s.parse::<SandboxStatus>().map_err(ApiError::BadRequest)?),
        None => None,
    };
    let sort_by = match q.sort_by.as_deref().unwrap_or("created_at") {
        "name" => SortColumn::Name,
        "status" => SortColumn::Status,
        "created_at" => SortColumn::CreatedAt,
        other => {
            return Err(ApiError::BadRequest(format!(
                "sort_by must be one of name, status, created_at; got '{other}'"
            )))
        }
    };
    let descending = match q.sort_direction.as_deref().unwrap_or("desc") {
        "desc" => true,
        "asc" => false,
        other => {
            return Err(ApiError::BadRequest(format!(
                "sort_direction must be asc or desc; got '{other}'"
            )))
        }
    };
    Ok(ListFilter {
        name_contains: q.name_contains.filter(|s| !s.is_empty()),
        status,
        sort_by,
        descending,
        limit,
        offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["a", "my-vm", "sandbox-abc123", &"a".repeat(63)] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "My",
            "a_b",
            "a b",
            "a/b",
            "ü",
            &"a".repeat(64),
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ttls() {
        assert_eq!(validate_ttl("t", 0).unwrap(), 0);
        assert_eq!(validate_ttl("t", 120).unwrap(), 120);
        assert!(validate_ttl("t", -60).is_err());
        assert!(validate_ttl("t", 61).is_err());
    }

    #[test]
    fn create_defaults_and_ranges() {
        let d = Defaults::default();
        let spec = create_spec(CreateSandboxRequest::default(), &d).unwrap();
        assert_eq!(spec.image_ref, ImageRef::Host);
        assert_eq!(spec.idle_ttl_seconds, 600);
        assert!(spec.wait_for_ready);
        let bad = CreateSandboxRequest {
            vcpus: Some(0),
            ..Default::default()
        };
        assert!(create_spec(bad, &d).is_err());
        let bad = CreateSandboxRequest {
            mem_bytes: Some(1024),
            ..Default::default()
        };
        assert!(create_spec(bad, &d).is_err());
        let both = CreateSandboxRequest {
            snapshot_id: Some("a".into()),
            template_name: Some("t".into()),
            ..Default::default()
        };
        assert!(create_spec(both, &d).is_err());
    }

    fn wire(body: serde_json::Value) -> CreateSandboxRequest {
        serde_json::from_value(body).unwrap()
    }

    /// Issue 17 item 5: what Sandpit does not do is refused by name, never
    /// stored and echoed.
    #[test]
    fn unimplemented_fields_are_refused_by_name() {
        for (body, field) in [
            (
                serde_json::json!({"preserve_memory_on_stop": true}),
                "preserve_memory_on_stop",
            ),
            (
                serde_json::json!({"restore_memory": true}),
                "restore_memory",
            ),
            (serde_json::json!({"size_class": "small"}), "size_class"),
        ] {
            let err = refuse_unimplemented(&wire(body)).unwrap_err();
            let ApiError::Validation(message) = err else {
                panic!("{field}: {err:?}");
            };
            assert!(message.contains(field), "{message}");
        }
        let fine = wire(serde_json::json!({
            "preserve_memory_on_stop": false,
            "restore_memory": false,
            "access_delegation": null,
            "mount_config": {"mounts": []},
            "tag_value_ids": ["tv-1"],
        }));
        assert!(refuse_unimplemented(&fine).is_ok());
    }

    #[test]
    fn access_delegation_is_stored_normalised_and_bad_grants_are_refused() {
        let d = Defaults::default();
        let body = serde_json::json!({"access_delegation":
            {"mode": "EXPLICIT", "permissions": ["sandboxes:read", "sandboxes:read"]}});
        let spec = create_spec(wire(body), &d).unwrap();
        assert_eq!(
            spec.extra["access_delegation"],
            serde_json::json!({"mode": "EXPLICIT", "permissions": ["sandboxes:read"]})
        );
        for (grant, says) in [
            (serde_json::json!({"mode": "INHERIT"}), "INHERIT"),
            (
                serde_json::json!({"mode": "EXPLICIT", "permissions": ["root"]}),
                "'root'",
            ),
        ] {
            let body = serde_json::json!({"access_delegation": grant});
            let err = create_spec(wire(body), &d).unwrap_err();
            let ApiError::Validation(message) = err else {
                panic!("{err:?}");
            };
            assert!(
                message.contains("access_delegation") && message.contains(says),
                "{message}"
            );
        }
        let none = serde_json::json!({"access_delegation": null});
        assert!(!create_spec(wire(none), &d)
            .unwrap()
            .extra
            .contains_key("access_delegation"));
    }

    #[test]
    fn isolation_defaults_to_the_server_and_gvisor_needs_runsc() {
        let mut d = Defaults::default();
        let level =
            |d: &Defaults, body| create_spec(wire(body), d).map(|s| s.extra["isolation"].clone());
        assert_eq!(level(&d, serde_json::json!({})).unwrap(), "namespaces");
        let err = level(&d, serde_json::json!({"isolation": "gvisor"})).unwrap_err();
        assert!(err.to_string().contains("runsc"), "{err}");
        d.gvisor_available = true;
        d.isolation = Isolation::Gvisor;
        assert_eq!(level(&d, serde_json::json!({})).unwrap(), "gvisor");
        let asked = serde_json::json!({"isolation": "namespaces"});
        assert_eq!(level(&d, asked).unwrap(), "namespaces");
        let err = level(&d, serde_json::json!({"isolation": "kata"})).unwrap_err();
        assert!(err.to_string().contains("kata"), "{err}");
    }

    #[test]
    fn tag_value_ids_are_stored_in_extra() {
        let d = Defaults::default();
        let spec = create_spec(wire(serde_json::json!({"tag_value_ids": ["a", "b"]})), &d).unwrap();
        assert_eq!(spec.extra["tag_value_ids"], serde_json::json!(["a", "b"]));
        for bad in [
            serde_json::json!({"tag_value_ids": [""]}),
            serde_json::json!({"tag_value_ids": vec!["x"; MAX_TAG_VALUE_IDS + 1]}),
        ] {
            assert!(create_spec(wire(bad), &d).is_err());
        }
    }

    #[test]
    fn resources_are_bounded_by_the_server_maxima() {
        let d = Defaults {
            max_vcpus: 4,
            max_mem_bytes: 8 << 30,
            max_fs_capacity_bytes: 1 << 40,
            ..Defaults::default()
        };
        let at_max = CreateSandboxRequest {
            vcpus: Some(4),
            mem_bytes: Some(8 << 30),
            fs_capacity_bytes: Some(1 << 40),
            ..Default::default()
        };
        assert!(create_spec(at_max, &d).is_ok());
        for (field, req) in [
            (
                "mem_bytes",
                CreateSandboxRequest {
                    mem_bytes: Some(1 << 62),
                    ..Default::default()
                },
            ),
            (
                "vcpus",
                CreateSandboxRequest {
                    vcpus: Some(5),
                    ..Default::default()
                },
            ),
            (
                "fs_capacity_bytes",
                CreateSandboxRequest {
                    fs_capacity_bytes: Some((1 << 40) + 1),
                    ..Default::default()
                },
            ),
        ] {
            let err = create_spec(req, &d).unwrap_err();
            let ApiError::Validation(message) = err else {
                panic!("{field}: {err:?}");
            };
            assert!(
                message.starts_with(&format!("{field} must be at most")),
                "{message}"
            );
        }
        // A template's resources are checked after it is applied.
        let mut spec = create_spec(CreateSandboxRequest::default(), &d).unwrap();
        spec.image_ref = ImageRef::Template("big".into());
        spec.mem_bytes = 16 << 30;
        let err = within_maxima(&spec, &d).unwrap_err();
        assert!(err.to_string().contains("template 'big'"), "{err}");
    }

    #[test]
    fn list_query() {
        let f = list_filter(ListSandboxesQuery::default()).unwrap();
        assert_eq!(
            (f.limit, f.offset, f.sort_by, f.descending),
            (50, 0, SortColumn::CreatedAt, true)
        );
        for bad in [
            ListSandboxesQuery {
                limit: Some(0),
                ..Default::default()
            },
            ListSandboxesQuery {
                offset: Some(-1),
                ..Default::default()
            },
            ListSandboxesQuery {
                status: Some("running".into()),
                ..Default::default()
            },
            ListSandboxesQuery {
                sort_by: Some("id".into()),
                ..Default::default()
            },
            ListSandboxesQuery {
                sort_direction: Some("up".into()),
                ..Default::default()
            },
        ] {
            assert!(list_filter(bad).is_err());
        }
    }
}
