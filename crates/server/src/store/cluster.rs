//! What replicas sharing one database keep there instead of in memory:
//! the nodes and which node runs each sandbox, the shared keys (sealed),
//! service-token revocation epochs and console terminal tickets.

use std::collections::HashMap;

use sqlx::FromRow;

use super::table::{Insert, Query, Table};
use super::{Store, StoreError, StoreResult};

/// A replica (node) as its heartbeat last recorded it.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct NodeRow {
    pub name: String,
    /// Where peers reach its API (`http://host:port`).
    pub url: String,
    /// 1 if it runs sandboxes, 0 for a replica without a runtime.
    pub runs_sandboxes: i64,
    /// Milliseconds since the Unix epoch.
    pub heartbeat_ms: i64,
}

/// An outstanding console terminal ticket.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct TicketRow {
    pub ticket_hash: String,
    pub tenant_id: String,
    pub key_id: String,
    pub is_admin: i64,
    pub sandbox_id: String,
    pub expires_ms: i64,
}

impl Table for NodeRow {
    const NAME: &'static str = "nodes";
    const COLUMNS: &'static str = "name, url, runs_sandboxes, heartbeat_ms";
}

impl Table for TicketRow {
    const NAME: &'static str = "terminal_tickets";
    const COLUMNS: &'static str =
        "ticket_hash, tenant_id, key_id, is_admin, sandbox_id, expires_ms";
}

impl Insert for TicketRow {
    fn bind_values<'q>(&'q self, query: Query<'q>) -> Query<'q> {
        query
            .bind(&self.ticket_hash)
            .bind(&self.tenant_id)
            .bind(&self.key_id)
            .bind(self.is_admin)
            .bind(&self.sandbox_id)
            .bind(self.expires_ms)
    }
}

impl Store {
    /// Record that node `row.name` is alive (insert or refresh).
    pub async fn heartbeat(&self, row: &NodeRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO nodes (name, url, runs_sandboxes, heartbeat_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET url = excluded.url, \
             runs_sandboxes = excluded.runs_sandboxes, heartbeat_ms = excluded.heartbeat_ms",
        )
        .bind(&row.name)
        .bind(&row.url)
        .bind(row.runs_sandboxes)
        .bind(row.heartbeat_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn nodes(&self) -> StoreResult<Vec<NodeRow>> {
        self.find_all(&[], "name").await
    }

    pub async fn node(&self, name: &str) -> StoreResult<Option<NodeRow>> {
        self.find(&[("name", name)]).await
    }

    /// Record that `node` runs sandbox `sandbox_id`.
    pub async fn set_sandbox_node(&self, sandbox_id: &str, node: &str) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sandbox_nodes (sandbox_id, node) VALUES ($1, $2) \
             ON CONFLICT (sandbox_id) DO UPDATE SET node = excluded.node",
        )
        .bind(sandbox_id)
        .bind(node)
        .execute(&self.pool)
        .await
        .map_err(StoreError::from_write)?;
        Ok(())
    }

    /// The node that runs sandbox `sandbox_id` (`None`: not recorded).
    pub async fn sandbox_node(&self, sandbox_id: &str) -> StoreResult<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT node FROM sandbox_nodes WHERE sandbox_id = $1")
                .bind(sandbox_id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Every recorded sandbox → node.
    pub async fn sandbox_nodes(&self) -> StoreResult<HashMap<String, String>> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT sandbox_id, node FROM sandbox_nodes")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().collect())
    }

    /// Sandboxes per node (for placement).
    pub async fn sandboxes_per_node(&self) -> StoreResult<HashMap<String, i64>> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT node, COUNT(*) FROM sandbox_nodes GROUP BY node")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().collect())
    }

    /// A shared key: its sealed value and version.
    pub async fn cluster_key(&self, name: &str) -> StoreResult<Option<(String, i64)>> {
        Ok(
            sqlx::query_as("SELECT sealed, version FROM cluster_keys WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Store a shared key unless one is already stored (the first replica
    /// wins). True if this call stored it.
    pub async fn insert_cluster_key(&self, name: &str, sealed: &str) -> StoreResult<bool> {
        let done = sqlx::query(
            "INSERT INTO cluster_keys (name, sealed, version) VALUES ($1, $2, 1) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(sealed)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Replace a shared key if it is still at `version`; true if replaced.
    pub async fn replace_cluster_key(
        &self,
        name: &str,
        sealed: &str,
        version: i64,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE cluster_keys SET sealed = $1, version = version + 1 \
             WHERE name = $2 AND version = $3",
        )
        .bind(sealed)
        .bind(name)
        .bind(version)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Raise sandbox `sub`'s token epoch to at least `epoch`.
    pub async fn record_token_epoch(&self, sub: &str, epoch: i64, at: i64) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO token_epochs (sandbox_id, epoch, bumped_at) VALUES ($1, $2, $3) \
             ON CONFLICT (sandbox_id) DO UPDATE SET \
             epoch = CASE WHEN excluded.epoch > token_epochs.epoch THEN excluded.epoch ELSE token_epochs.epoch END, \
             bumped_at = excluded.bumped_at",
        )
        .bind(sub)
        .bind(epoch)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every recorded token epoch bumped at or after `since` (seconds);
    /// older ones are dropped (every token they revoked has expired).
    pub async fn token_epochs(&self, since: i64) -> StoreResult<Vec<(String, i64, i64)>> {
        sqlx::query("DELETE FROM token_epochs WHERE bumped_at < $1")
            .bind(since)
            .execute(&self.pool)
            .await?;
        Ok(
            sqlx::query_as("SELECT sandbox_id, epoch, bumped_at FROM token_epochs")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    pub async fn insert_ticket(&self, row: &TicketRow) -> StoreResult<()> {
        sqlx::query("DELETE FROM terminal_tickets WHERE expires_ms < $1")
            .bind(chrono::Utc::now().timestamp_millis())
            .execute(&self.pool)
            .await?;
        self.insert_row(row).await
    }

    /// Spend a ticket: it is deleted whatever the caller does with it, so
    /// only one redemption (on any replica) ever sees it.
    pub async fn take_ticket(&self, ticket_hash: &str) -> StoreResult<Option<TicketRow>> {
        let sql = format!(
            "DELETE FROM terminal_tickets WHERE ticket_hash = $1 RETURNING {}",
            TicketRow::COLUMNS
        );
        Ok(sqlx::query_as(&sql)
            .bind(ticket_hash)
            .fetch_optional(&self.pool)
            .await?)
    }
}
