//! The `secrets` table: sealed workspace secret values (see `crate::secrets`).

use super::{now, Store, StoreError, StoreResult};

impl Store {
    /// Insert or replace a tenant's sealed secret.
    pub async fn put_secret(&self, tenant_id: &str, name: &str, sealed: &str) -> StoreResult<()> {
        let ts = now();
        sqlx::query(
            "INSERT INTO secrets (tenant_id, name, sealed, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $4) \
             ON CONFLICT (tenant_id, name) DO UPDATE SET sealed = excluded.sealed, \
             updated_at = excluded.updated_at",
        )
        .bind(tenant_id)
        .bind(name)
        .bind(sealed)
        .bind(&ts)
        .execute(&self.pool)
        .await
        .map_err(StoreError::from_write)?;
        Ok(())
    }

    pub async fn sealed_secret(&self, tenant_id: &str, name: &str) -> StoreResult<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT sealed FROM secrets WHERE tenant_id = $1 AND name = $2")
                .bind(tenant_id)
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// A tenant's secret names, sorted.
    pub async fn secret_names(&self, tenant_id: &str) -> StoreResult<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT name FROM secrets WHERE tenant_id = $1 ORDER BY name")
                .bind(tenant_id)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Whether a secret was there to delete.
    pub async fn delete_secret(&self, tenant_id: &str, name: &str) -> StoreResult<bool> {
        let filter = [("tenant_id", tenant_id), ("name", name)];
        Ok(self.delete_where("secrets", &filter).await? > 0)
    }
}
