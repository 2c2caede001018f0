//! Tenants and API keys. Keys are stored as SHA-256 hashes only.

use sqlx::FromRow;

use super::{now, Store, StoreError, StoreResult};

#[derive(Debug, Clone, FromRow)]
pub struct TenantRow {
    pub id: String,
    pub name: String,
    pub created_at: String,
}

#[derive(Debug, Clone, FromRow)]
pub struct ApiKeyRow {
    pub id: String,
    pub tenant_id: String,
    pub key_hash: String,
    pub prefix: String,
    pub name: String,
    /// 0 or 1 (the Any driver has no portable boolean).
    pub is_admin: i64,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

impl Store {
    /// The tenant named `name`, created if missing.
    pub async fn ensure_tenant(&self, name: &str) -> StoreResult<TenantRow> {
        if let Some(t) = self.tenant_by_name(name).await? {
            return Ok(t);
        }
        let row = TenantRow {
            id: uuid::Uuid::new_v4().to_string(),
            name: name.to_owned(),
            created_at: now(),
        };
        let inserted =
            sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)")
                .bind(&row.id)
                .bind(&row.name)
                .bind(&row.created_at)
                .execute(&self.pool)
                .await
                .map_err(StoreError::from_write);
        match inserted {
            Ok(_) => Ok(row),
            // Lost a race with another creator: theirs is as good as ours.
            Err(StoreError::Conflict) => {
                self.tenant_by_name(name).await?.ok_or(StoreError::Conflict)
            }
            Err(e) => Err(e),
        }
    }

    pub async fn tenant_by_name(&self, name: &str) -> StoreResult<Option<TenantRow>> {
        Ok(
            sqlx::query_as("SELECT id, name, created_at FROM tenants WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Make `key_hash` the one live admin key named `name` of `tenant_id`:
    /// earlier keys of that name are revoked.
    pub async fn set_named_key(
        &self,
        tenant_id: &str,
        name: &str,
        key_hash: &str,
        prefix: &str,
        is_admin: bool,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let ts = now();
        sqlx::query(
            "UPDATE api_keys SET revoked_at = $1 \
             WHERE tenant_id = $2 AND name = $3 AND revoked_at IS NULL AND key_hash <> $4",
        )
        .bind(&ts)
        .bind(tenant_id)
        .bind(name)
        .bind(key_hash)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO api_keys (id, tenant_id, key_hash, prefix, name, is_admin, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (key_hash) DO NOTHING",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(tenant_id)
        .bind(key_hash)
        .bind(prefix)
        .bind(name)
        .bind(i64::from(is_admin))
        .bind(&ts)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The live (not revoked) key with this hash.
    pub async fn live_key(&self, key_hash: &str) -> StoreResult<Option<ApiKeyRow>> {
        Ok(sqlx::query_as(
            "SELECT id, tenant_id, key_hash, prefix, name, is_admin, created_at, revoked_at \
             FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
        )
        .bind(key_hash)
        .fetch_optional(&self.pool)
        .await?)
    }
}
