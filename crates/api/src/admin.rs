//! The admin API (`/api/v1/admin/...`): tenants, their quotas, and API keys.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// A tenant (workspace) with its quotas (`None` = unlimited) and usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TenantResponse {
    pub id: String,
    pub name: String,
    pub created_at: String,
    pub max_sandboxes: Option<i64>,
    pub max_vcpus: Option<i64>,
    pub max_mem_bytes: Option<i64>,
    /// Sandboxes that exist, and vCPUs/memory of the running ones.
    pub sandboxes: i64,
    pub vcpus_in_use: i64,
    pub mem_bytes_in_use: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TenantListResponse {
    pub tenants: Vec<TenantResponse>,
}

/// `POST /admin/tenants`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenantRequest {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sandboxes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_vcpus: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_mem_bytes: Option<i64>,
}

/// `PATCH /admin/tenants/{name}`: a quota given as `null` becomes
/// unlimited; an absent one is left alone. Kept as raw JSON values so the
/// server can tell the two apart.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenantRequest {
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_sandboxes: Option<Value>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_vcpus: Option<Value>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_mem_bytes: Option<Value>,
}

/// A field that is present deserializes to `Some`, even when it is `null`
/// (plain `Option<Value>` would turn `null` into `None`, i.e. "absent").
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// `POST /admin/keys`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    /// Tenant name or id.
    pub tenant: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub admin: bool,
}

/// An API key as listed; the key itself is only in `CreatedKeyResponse`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeyResponse {
    pub id: String,
    pub name: String,
    /// The first characters of the key, to recognise it.
    pub prefix: String,
    pub tenant_id: String,
    pub tenant: String,
    pub admin: bool,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

/// `POST /admin/keys` response: the only time the key is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatedKeyResponse {
    pub key: String,
    #[serde(flatten)]
    pub info: KeyResponse,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeyListResponse {
    pub keys: Vec<KeyResponse>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_tells_null_from_absent() {
        let req: UpdateTenantRequest =
            serde_json::from_str(r#"{"max_sandboxes": null, "max_vcpus": 4}"#).unwrap();
        assert_eq!(req.max_sandboxes, Some(Value::Null));
        assert_eq!(req.max_vcpus, Some(Value::from(4)));
        assert_eq!(req.max_mem_bytes, None);
    }
}
