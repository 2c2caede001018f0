//! The `service_grants` table (login-gated service URLs, see
//! `gateway/grants.rs`) and `service_login_tickets` (sign-in tickets already
//! redeemed, so each works once on every replica).

use sqlx::FromRow;

use super::table::{insert_sql, Insert, Query, Table};
use super::{Store, StoreError, StoreResult};

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

impl Table for ServiceGrantRow {
    const NAME: &'static str = "service_grants";
    const COLUMNS: &'static str = "sandbox_id, port, id, tenant_id, access, embed_origins, \
        console_url, created_at, updated_at";
}

impl Insert for ServiceGrantRow {
    fn bind_values<'q>(&'q self, query: Query<'q>) -> Query<'q> {
        query
            .bind(&self.sandbox_id)
            .bind(self.port)
            .bind(&self.id)
            .bind(&self.tenant_id)
            .bind(&self.access)
            .bind(&self.embed_origins)
            .bind(&self.console_url)
            .bind(&self.created_at)
            .bind(&self.updated_at)
    }
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
        let sql = format!(
            "{} ON CONFLICT (sandbox_id, port) DO UPDATE SET access = excluded.access, \
             embed_origins = excluded.embed_origins, console_url = excluded.console_url, \
             updated_at = excluded.updated_at",
            insert_sql::<ServiceGrantRow>(&[])
        );
        row.bind_values(sqlx::query(&sql))
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
        let sql = format!(
            "SELECT {} FROM service_grants WHERE sandbox_id = $1 AND port = $2",
            ServiceGrantRow::COLUMNS
        );
        Ok(sqlx::query_as(&sql)
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
        self.delete_where("service_grants", &[("sandbox_id", sandbox_id)])
            .await
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
