//! The `service_grants` table (login-gated service URLs, see
//! `gateway/grants.rs`) and `service_login_tickets` (sign-in tickets already
//! redeemed, so each works once on every replica).

use sqlx::FromRow;

use super::{Store, StoreError, StoreResult};

const COLUMNS: &str =
    "sandbox_id, port, id, tenant_id, access, embed_origins, console_url, created_at, updated_at";

/// A login grant on one port of one sandbox.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct ServiceGrantRow {
    pub sandbox_id: String,
    pub port: i64,
    /// Stable across updates; sessions name it, so a new grant (after a
    /// revocation) does not accept the old grant's sessions.
    pub id: String,
    pub tenant_id: String,
    /// `restricted` or `workspace`.
    pub access: String,
    /// JSON array of normalized origins.
    pub embed_origins: String,
    /// Base URL of the console the sign-in hop sends a browser to.
    pub console_url: String,
    pub created_at: String,
    pub updated_at: String,
}

impl ServiceGrantRow {
    /// The stored embed origins (empty if the column is malformed).
    pub fn origins(&self) -> Vec<String> {
        serde_json::from_str(&self.embed_origins).unwrap_or_default()
    }
}

impl Store {
    /// Create the grant of `row`'s sandbox and port, or replace the access,
    /// embed origins and console URL of the one in place (keeping its id).
    /// Returns the grant as stored.
    pub async fn upsert_service_grant(
        &self,
        row: &ServiceGrantRow,
    ) -> StoreResult<ServiceGrantRow> {
        sqlx::query(&format!(
            "INSERT INTO service_grants ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (sandbox_id, port) DO UPDATE SET access = excluded.access, \
             embed_origins = excluded.embed_origins, console_url = excluded.console_url, \
             updated_at = excluded.updated_at"
        ))
        .bind(&row.sandbox_id)
        .bind(row.port)
        .bind(&row.id)
        .bind(&row.tenant_id)
        .bind(&row.access)
        .bind(&row.embed_origins)
        .bind(&row.console_url)
        .bind(&row.created_at)
        .bind(&row.updated_at)
        .execute(&self.pool)
        .await
        .map_err(StoreError::from_write)?;
        self.service_grant(&row.sandbox_id, row.port)
            .await?
            .ok_or_else(|| StoreError::Corrupt("service grant vanished after upsert".into()))
    }

    /// The grant on `port` of sandbox `sandbox_id`, if any.
    pub async fn service_grant(
        &self,
        sandbox_id: &str,
        port: i64,
    ) -> StoreResult<Option<ServiceGrantRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM service_grants WHERE sandbox_id = $1 AND port = $2"
        ))
        .bind(sandbox_id)
        .bind(port)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Every granted (sandbox id, port).
    pub async fn granted_service_ports(&self) -> StoreResult<Vec<(String, i64)>> {
        Ok(
            sqlx::query_as("SELECT sandbox_id, port FROM service_grants")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Remove every grant of sandbox `sandbox_id`; returns how many.
    pub async fn delete_service_grants(&self, sandbox_id: &str) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM service_grants WHERE sandbox_id = $1")
            .bind(sandbox_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Record sign-in ticket `jti` as redeemed; false if it already was.
    /// Expired entries are dropped on the way.
    pub async fn spend_login_ticket(&self, jti: &str, expires_at: &str) -> StoreResult<bool> {
        sqlx::query("DELETE FROM service_login_tickets WHERE expires_at < $1")
            .bind(super::now())
            .execute(&self.pool)
            .await?;
        let inserted =
            sqlx::query("INSERT INTO service_login_tickets (jti, expires_at) VALUES ($1, $2)")
                .bind(jti)
                .bind(expires_at)
                .execute(&self.pool)
                .await
                .map_err(StoreError::from_write);
        match inserted {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict) => Ok(false),
            Err(err) => Err(err),
        }
    }
}
