//! The `sandbox_delegations` table: a sandbox's `access_delegation` grant
//! and the API key that created it.

use sqlx::FromRow;

use super::{now, Store, StoreError, StoreResult};

/// One sandbox's grant.
#[derive(Debug, Clone, FromRow)]
pub struct DelegationRow {
    pub sandbox_id: String,
    pub tenant_id: String,
    /// The creating key (checked live on every delegated request).
    pub key_id: String,
    /// JSON list of permission names.
    pub permissions: String,
    pub created_at: String,
}

impl Store {
    /// Record the grant of a new sandbox.
    pub async fn insert_delegation(
        &self,
        sandbox_id: &str,
        tenant_id: &str,
        key_id: &str,
        permissions: &str,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sandbox_delegations \
             (sandbox_id, tenant_id, key_id, permissions, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(sandbox_id)
        .bind(tenant_id)
        .bind(key_id)
        .bind(permissions)
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(StoreError::from_write)?;
        Ok(())
    }

    /// The grant of a sandbox that still exists.
    pub async fn delegation(&self, sandbox_id: &str) -> StoreResult<Option<DelegationRow>> {
        Ok(sqlx::query_as(
            "SELECT d.sandbox_id, d.tenant_id, d.key_id, d.permissions, d.created_at \
             FROM sandbox_delegations d JOIN sandboxes s ON s.id = d.sandbox_id \
             WHERE d.sandbox_id = $1 AND s.tenant_id = d.tenant_id",
        )
        .bind(sandbox_id)
        .fetch_optional(&self.pool)
        .await?)
    }
}
