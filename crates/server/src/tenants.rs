//! Tenants, their quotas and their API keys: the controller behind
//! `/api/v1/admin` (`routes/admin.rs` parses, checks the caller is an admin
//! and shapes the answer).

use std::sync::Arc;

use sandpit_api::admin::{
    CreateKeyRequest, CreateTenantRequest, CreatedKeyResponse, KeyResponse, TenantResponse,
    UpdateTenantRequest,
};
use serde_json::Value;

use crate::auth::{generate_key, hash_key, key_prefix, Keys};
use crate::error::ApiError;
use crate::store::{ApiKeyRow, QuotaUpdate, Store, StoreError, TenantRow};

/// The tenants controller: the store plus the key cache it must invalidate.
pub struct Tenants<'a> {
    store: &'a Store,
    keys: &'a Arc<Keys>,
}

impl<'a> Tenants<'a> {
    pub fn new(store: &'a Store, keys: &'a Arc<Keys>) -> Self {
        Self { store, keys }
    }

    pub async fn create(&self, req: CreateTenantRequest) -> Result<TenantResponse, ApiError> {
        validate_tenant_name(&req.name)?;
        let update = QuotaUpdate {
            max_sandboxes: Some(quota("max_sandboxes", req.max_sandboxes)?),
            max_vcpus: Some(quota("max_vcpus", req.max_vcpus)?),
            max_mem_bytes: Some(quota("max_mem_bytes", req.max_mem_bytes)?),
        };
        let tenant = match self.store.create_tenant(&req.name).await {
            Ok(t) => t,
            Err(StoreError::Conflict) => {
                return Err(ApiError::Conflict(format!(
                    "Tenant '{}' already exists",
                    req.name
                )))
            }
            Err(e) => return Err(e.into()),
        };
        self.store.update_quotas(&tenant.id, &update).await?;
        self.get(&tenant.id).await
    }

    pub async fn list(&self) -> Result<Vec<TenantResponse>, ApiError> {
        let mut tenants = Vec::new();
        for t in self.store.tenants().await? {
            tenants.push(self.response(t).await?);
        }
        Ok(tenants)
    }

    /// A tenant by id or name, with its usage.
    pub async fn get(&self, which: &str) -> Result<TenantResponse, ApiError> {
        let tenant = self.find(which).await?;
        self.response(tenant).await
    }

    /// `null` clears a quota, a number sets it, absence leaves it.
    pub async fn update(
        &self,
        which: &str,
        req: UpdateTenantRequest,
    ) -> Result<TenantResponse, ApiError> {
        let tenant = self.find(which).await?;
        let update = QuotaUpdate {
            max_sandboxes: quota_change("max_sandboxes", req.max_sandboxes)?,
            max_vcpus: quota_change("max_vcpus", req.max_vcpus)?,
            max_mem_bytes: quota_change("max_mem_bytes", req.max_mem_bytes)?,
        };
        self.store.update_quotas(&tenant.id, &update).await?;
        self.get(&tenant.id).await
    }

    /// A new key; the only time its value is shown. Only its hash is stored.
    pub async fn create_key(&self, req: CreateKeyRequest) -> Result<CreatedKeyResponse, ApiError> {
        let tenant = self.find(&req.tenant).await?;
        let key = generate_key();
        let name = req.name.unwrap_or_else(|| "key".into());
        let row = self
            .store
            .insert_key(
                &tenant.id,
                &name,
                &hash_key(&key),
                &key_prefix(&key),
                req.admin,
            )
            .await?;
        let info = key_response(row, &tenant);
        Ok(CreatedKeyResponse { key, info })
    }

    /// Every key, or a tenant's (name or id).
    pub async fn keys(&self, tenant: Option<&str>) -> Result<Vec<KeyResponse>, ApiError> {
        let filter = match tenant {
            Some(which) => Some(self.find(which).await?),
            None => None,
        };
        let tenants = self.store.tenants().await?;
        let rows = self
            .store
            .keys(filter.as_ref().map(|t| t.id.as_str()))
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let t = tenants.iter().find(|t| t.id == row.tenant_id)?;
                Some(key_response(row, t))
            })
            .collect())
    }

    /// Revokes a key; it stops working on the next request.
    pub async fn revoke_key(&self, id: &str) -> Result<(), ApiError> {
        if !self.store.revoke_key(id).await? {
            return Err(ApiError::NotFound {
                kind: "API key",
                name: id.to_owned(),
            });
        }
        self.keys.forget_all();
        Ok(())
    }

    /// A tenant by id or name.
    async fn find(&self, which: &str) -> Result<TenantRow, ApiError> {
        if let Some(t) = self.store.tenant(which).await? {
            return Ok(t);
        }
        self.store
            .tenant_by_name(which)
            .await?
            .ok_or(ApiError::NotFound {
                kind: "Tenant",
                name: which.to_owned(),
            })
    }

    async fn response(&self, t: TenantRow) -> Result<TenantResponse, ApiError> {
        let usage = self.store.usage(&t.id).await?;
        Ok(TenantResponse {
            id: t.id,
            name: t.name,
            created_at: t.created_at,
            max_sandboxes: t.max_sandboxes,
            max_vcpus: t.max_vcpus,
            max_mem_bytes: t.max_mem_bytes,
            sandboxes: usage.sandboxes,
            vcpus_in_use: usage.vcpus,
            mem_bytes_in_use: usage.mem_bytes,
        })
    }
}

fn key_response(row: ApiKeyRow, tenant: &TenantRow) -> KeyResponse {
    KeyResponse {
        id: row.id,
        name: row.name,
        prefix: row.prefix,
        tenant_id: tenant.id.clone(),
        tenant: tenant.name.clone(),
        admin: row.is_admin != 0,
        created_at: row.created_at,
        revoked_at: row.revoked_at,
    }
}

fn quota(field: &str, value: Option<i64>) -> Result<Option<i64>, ApiError> {
    match value {
        Some(v) if v < 0 => Err(ApiError::Validation(format!(
            "{field} must be >= 0, got {v}"
        ))),
        other => Ok(other),
    }
}

fn quota_change(field: &str, value: Option<Value>) -> Result<Option<Option<i64>>, ApiError> {
    match value {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::Number(n)) => {
            let v = n
                .as_i64()
                .ok_or_else(|| ApiError::Validation(format!("{field} must be an integer")))?;
            Ok(Some(quota(field, Some(v))?))
        }
        Some(_) => Err(ApiError::Validation(format!(
            "{field} must be an integer or null"
        ))),
    }
}

fn validate_tenant_name(name: &str) -> Result<(), ApiError> {
    crate::sandboxes::validate::validate_name(name)
        .map_err(|_| ApiError::Validation(format!("Invalid tenant name '{name}'")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quota_changes_clear_set_or_leave() {
        assert_eq!(quota_change("q", None).unwrap(), None);
        assert_eq!(quota_change("q", Some(Value::Null)).unwrap(), Some(None));
        assert_eq!(quota_change("q", Some(json!(3))).unwrap(), Some(Some(3)));
        assert!(quota_change("q", Some(json!(-1))).is_err());
        assert!(quota_change("q", Some(json!("3"))).is_err());
        assert!(quota_change("q", Some(json!(1.5))).is_err());
    }
}
