//! Stored rows → the `SandboxResponse` every endpoint returns.

use sandpit_api::sandbox::RunConfig;
use sandpit_api::SandboxResponse;
use serde_json::{Map, Value};

use crate::store::{parse_time, SandboxRow, StoreError, StoreResult};

fn json<T: serde::de::DeserializeOwned>(field: &str, text: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{field}: {e}")))
}

/// `{base}/dataplane/{id}`: stable across stop/start and renames.
pub fn dataplane_url(base: &str, id: &str) -> String {
    format!("{}/dataplane/{id}", base.trim_end_matches('/'))
}

pub fn sandbox_response(row: &SandboxRow, base_url: &str) -> StoreResult<SandboxResponse> {
    let expires_at = match row.ttl_seconds {
        Some(ttl) if ttl > 0 => {
            let created = parse_time(&row.created_at)?;
            Some(crate::store::format_time(
                created + chrono::Duration::seconds(ttl),
            ))
        }
        _ => None,
    };
    Ok(SandboxResponse {
        id: row.id.clone(),
        name: row.name.clone(),
        status: row.status()?,
        status_message: row.status_message.clone(),
        dataplane_url: Some(dataplane_url(base_url, &row.id)),
        created_at: row.created_at.clone(),
        updated_at: row.updated_at.clone(),
        created_by: row.created_by.clone(),
        updated_by: row.created_by.clone(),
        vcpus: row.vcpus,
        mem_bytes: row.mem_bytes,
        fs_capacity_bytes: row.fs_capacity_bytes,
        idle_ttl_seconds: row.idle_ttl_seconds,
        delete_after_stop_seconds: row.delete_after_stop_seconds,
        ttl_seconds: row.ttl_seconds,
        expires_at,
        stopped_at: row.stopped_at.clone(),
        last_activity_at: row.last_activity_at.clone(),
        snapshot_id: row.snapshot_id.clone(),
        template_name: row.template_name.clone(),
        image: row.image.clone(),
        persistent: row.persistent != 0,
        proxy_config: row
            .proxy_config
            .as_deref()
            .map(|t| json("proxy_config", t).map(crate::proxy_config::redact))
            .transpose()?,
        run_config: row
            .run_config
            .as_deref()
            .map(|t| json::<RunConfig>("run_config", t))
            .transpose()?,
        labels: json("labels", &row.labels)?,
        extra: {
            let mut extra = json::<Map<String, Value>>("extra", &row.extra)?;
            crate::mounts::redact_extra(&mut extra);
            extra
        },
    })
}
