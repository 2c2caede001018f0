//! Stored template and volume rows → API bodies.

use sandpit_api::template::{self as api, TemplateResponse};
use sandpit_api::volume::{VolumeResponse, STORAGE_CLASS};

use super::{resources, volume_mounts};
use crate::store::{StoreResult, TemplateRow, VolumeRow};

pub fn template_response(row: &TemplateRow) -> StoreResult<TemplateResponse> {
    let proxy = row
        .proxy_config
        .as_deref()
        .and_then(|t| serde_json::from_str(t).ok())
        .map(crate::proxy_config::redact);
    let stored = resources(row)?;
    let volume_mounts = volume_mounts(row)?;
    Ok(TemplateResponse {
        id: row.id.clone(),
        name: row.name.clone(),
        image: row.image.clone(),
        resources: api::Resources {
            cpu: stored.cpu,
            memory: stored.memory,
            storage: stored.storage,
        },
        volume_mounts,
        proxy_config: proxy,
        created_at: row.created_at.clone(),
        updated_at: row.updated_at.clone(),
    })
}

pub fn volume_response(row: &VolumeRow) -> VolumeResponse {
    VolumeResponse {
        id: row.id.clone(),
        name: row.name.clone(),
        size: row.size.clone(),
        storage_class: STORAGE_CLASS.into(),
        created_at: row.created_at.clone(),
        updated_at: row.updated_at.clone(),
    }
}
