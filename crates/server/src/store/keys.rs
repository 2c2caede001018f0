//! Tenants and API keys. Keys are stored as SHA-256 hashes only.

use sqlx::FromRow;

use super::table::{select_sql, Table};
use super::{now, Store, StoreError, StoreResult};

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct TenantRow {
    pub id: String,
    pub name: String,
    pub created_at: String,
    /// Quotas; `None` means unlimited.
    pub max_sandboxes: Option<i64>,
    pub max_vcpus: Option<i64>,
    pub max_mem_bytes: Option<i64>,
}

/// Quota values to set; `Some(None)` clears one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuotaUpdate {
    pub max_sandboxes: Option<Option<i64>>,
    pub max_vcpus: Option<Option<i64>>,
    pub max_mem_bytes: Option<Option<i64>>,
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

impl Table for TenantRow {
    const NAME: &'static str = "tenants";
    const COLUMNS: &'static str = "id, name, created_at, max_sandboxes, max_vcpus, max_mem_bytes";
}

impl Table for ApiKeyRow {
    const NAME: &'static str = "api_keys";
    const COLUMNS: &'static str =
        "id, tenant_id, key_hash, prefix, name, is_admin, created_at, revoked_at";
}

/// A held tenant admission lock ([`Store::lock_tenant`]).
pub struct TenantLock {
    tx: Option<sqlx::Transaction<'static, sqlx::Any>>,
}

impl TenantLock {
    /// Release the lock now (dropping it releases it too, a little later).
    pub async fn release(mut self) -> StoreResult<()> {
        if let Some(tx) = self.tx.take() {
            tx.commit().await?;
        }
        Ok(())
    }
}

/// What the sandboxes of one tenant use, for quota checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Every sandbox that exists (any status).
    pub sandboxes: i64,
    /// vCPUs and memory of sandboxes that hold them (provisioning, ready).
    pub vcpus: i64,
    pub mem_bytes: i64,
}

impl Store {
    /// The tenant named `name`, created if missing.
    pub async fn ensure_tenant(&self, name: &str) -> StoreResult<TenantRow> {
        if let Some(t) = self.tenant_by_name(name).await? {
            return Ok(t);
        }
        match self.create_tenant(name).await {
            Ok(row) => Ok(row),
            // Lost a race with another creator: theirs is as good as ours.
            Err(StoreError::Conflict) => {
                self.tenant_by_name(name).await?.ok_or(StoreError::Conflict)
            }
            Err(e) => Err(e),
        }
    }

    pub async fn create_tenant(&self, name: &str) -> StoreResult<TenantRow> {
        let id = uuid::Uuid::new_v4().to_string();
        sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(&id)
            .bind(name)
            .bind(now())
            .execute(&self.pool)
            .await
            .map_err(StoreError::from_write)?;
        self.tenant(&id).await?.ok_or(StoreError::Conflict)
    }

    pub async fn tenant(&self, id: &str) -> StoreResult<Option<TenantRow>> {
        self.find(&[("id", id)]).await
    }

    pub async fn tenant_by_name(&self, name: &str) -> StoreResult<Option<TenantRow>> {
        self.find(&[("name", name)]).await
    }

    pub async fn tenants(&self) -> StoreResult<Vec<TenantRow>> {
        self.find_all(&[], "name").await
    }

    pub async fn update_quotas(&self, tenant_id: &str, update: &QuotaUpdate) -> StoreResult<()> {
        let fields = [
            ("max_sandboxes", update.max_sandboxes),
            ("max_vcpus", update.max_vcpus),
            ("max_mem_bytes", update.max_mem_bytes),
        ];
        for (column, value) in fields {
            if let Some(value) = value {
                let sql = format!("UPDATE tenants SET {column} = $1 WHERE id = $2");
                sqlx::query(&sql)
                    .bind(value)
                    .bind(tenant_id)
                    .execute(&self.pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// Serialise admissions (quota check, then the insert or status change
    /// that uses the quota) for `tenant_id` across every process sharing
    /// the database, until the returned guard is released. On PostgreSQL
    /// this is a transaction holding `pg_advisory_xact_lock` on the tenant
    /// (released at commit, or by the server when the connection dies); on
    /// SQLite only one process uses the database and the caller's
    /// in-process lock is enough.
    pub async fn lock_tenant(&self, tenant_id: &str) -> StoreResult<TenantLock> {
        self.advisory_lock(&format!("sandpit-tenant:{tenant_id}"))
            .await
    }

    /// A transaction-scoped advisory lock on `key` (PostgreSQL), held until
    /// the guard is released or dropped (the pool flushes the rollback when
    /// the connection returns to it); nothing on SQLite.
    pub(super) async fn advisory_lock(&self, key: &str) -> StoreResult<TenantLock> {
        if !self.is_postgres() {
            return Ok(TenantLock { tx: None });
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(key)
            .execute(&mut *tx)
            .await?;
        Ok(TenantLock { tx: Some(tx) })
    }

    /// What `tenant_id`'s sandboxes hold now.
    pub async fn usage(&self, tenant_id: &str) -> StoreResult<Usage> {
        let (sandboxes, vcpus, mem_bytes): (i64, Option<i64>, Option<i64>) = sqlx::query_as(
            // PostgreSQL sums BIGINTs as NUMERIC, which the Any driver
            // cannot decode: cast back (a no-op on SQLite).
            "SELECT COUNT(*), \
             CAST(SUM(CASE WHEN status IN ('provisioning', 'ready') THEN vcpus ELSE 0 END) AS BIGINT), \
             CAST(SUM(CASE WHEN status IN ('provisioning', 'ready') THEN mem_bytes ELSE 0 END) AS BIGINT) \
             FROM sandboxes WHERE tenant_id = $1",
        )
        .bind(tenant_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(Usage {
            sandboxes,
            vcpus: vcpus.unwrap_or(0),
            mem_bytes: mem_bytes.unwrap_or(0),
        })
    }

    /// Store a new key (by hash) for a tenant.
    pub async fn insert_key(
        &self,
        tenant_id: &str,
        name: &str,
        key_hash: &str,
        prefix: &str,
        is_admin: bool,
    ) -> StoreResult<ApiKeyRow> {
        let id = uuid::Uuid::new_v4().to_string();
        sqlx::query(
            "INSERT INTO api_keys (id, tenant_id, key_hash, prefix, name, is_admin, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&id)
        .bind(tenant_id)
        .bind(key_hash)
        .bind(prefix)
        .bind(name)
        .bind(i64::from(is_admin))
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(StoreError::from_write)?;
        self.key(&id).await?.ok_or(StoreError::Conflict)
    }

    /// Make `key_hash` the one live key named `name` of `tenant_id`:
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

    pub async fn key(&self, id: &str) -> StoreResult<Option<ApiKeyRow>> {
        self.find(&[("id", id)]).await
    }

    /// Keys of one tenant, or of all tenants, newest first.
    pub async fn keys(&self, tenant_id: Option<&str>) -> StoreResult<Vec<ApiKeyRow>> {
        let order = "created_at DESC, id";
        match tenant_id {
            Some(t) => self.find_all(&[("tenant_id", t)], order).await,
            None => self.find_all(&[], order).await,
        }
    }

    /// Revoke a key; false if it does not exist or was already revoked.
    pub async fn revoke_key(&self, id: &str) -> StoreResult<bool> {
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(now())
                .bind(id)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The live (not revoked) key with this hash.
    pub async fn live_key(&self, key_hash: &str) -> StoreResult<Option<ApiKeyRow>> {
        let filter = [("key_hash", key_hash)];
        let sql = format!(
            "{} AND revoked_at IS NULL",
            select_sql::<ApiKeyRow>(&filter)
        );
        Ok(sqlx::query_as(&sql)
            .bind(key_hash)
            .fetch_optional(&self.pool)
            .await?)
    }
}
