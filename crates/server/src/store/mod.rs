//! The database: the source of truth for tenants, keys, sandboxes and
//! everything else a tenant stores.
//!
//! One data layer over `sqlx::AnyPool`, so the same portable SQL (with `$N`
//! placeholders, which SQLite accepts too) runs on the embedded SQLite
//! database in the data dir by default and on PostgreSQL (`--database-url`)
//! when one machine is not enough. Each table's module holds its row type
//! and its own queries; the reads, lists, pages, inserts and deletes by
//! column equality that most tables share are written once, in `table.rs`.
//!
//! Each database has its own migrations directory with the same versions:
//! `migrations/` for SQLite (applied files are never edited: sqlx checks
//! their checksums) and `migrations-postgres/`, with every text column in
//! the `"C"` collation so that ordering is by byte, as on SQLite, whatever
//! the database's locale; [`Store::open`] picks one by URL scheme.
//! Aggregates are cast back to `BIGINT` (PostgreSQL sums to `NUMERIC`, which
//! the Any driver cannot decode). `tests/store.rs` runs every public method
//! on both databases (PostgreSQL when `SANDPIT_TEST_DATABASE_URL` is set;
//! `scripts/test` starts one) and checks that the two directories hold the
//! same versions.

mod cluster;
mod delegations;
mod events;
mod gc;
mod keys;
mod pools;
mod registries;
mod sandboxes;
mod secrets;
mod service_grants;
mod snapshots;
mod table;
mod templates;

use std::path::Path;
use std::str::FromStr;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

pub use cluster::{NodeRow, TicketRow};
pub use delegations::DelegationRow;
pub use events::SandboxState;
pub use keys::{ApiKeyRow, QuotaUpdate, TenantLock, TenantRow, Usage};
pub use pools::{is_warm_name, warm_prefix, PoolRow};
pub use registries::RegistryRow;
use sandboxes::like_pattern;
pub use sandboxes::{ListFilter, SandboxRow, SortColumn};
pub use service_grants::ServiceGrantRow;
pub use snapshots::SnapshotRow;
pub use templates::{TemplateRow, VolumeRow};

/// Database errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error")]
    Db(#[from] sqlx::Error),
    #[error("database migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("a row with this unique key already exists")]
    Conflict,
    #[error("stored value is malformed: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Map a unique-constraint violation to [`StoreError::Conflict`].
    fn from_write(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
            _ => StoreError::Db(err),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Handle to the database.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    postgres: bool,
    url: String,
}

impl Store {
    /// Open (creating if needed) the embedded SQLite database at `path`.
    pub async fn open_sqlite(path: &Path) -> StoreResult<Self> {
        let url = format!("sqlite://{}?mode=rwc", path.display());
        Self::open(&url).await
    }

    /// Open a database by URL (`sqlite://...` or `postgres://...`) and run
    /// the migrations.
    pub async fn open(url: &str) -> StoreResult<Self> {
        sqlx::any::install_default_drivers();
        let options = AnyConnectOptions::from_str(url)?;
        let is_sqlite = url.starts_with("sqlite:");
        let pool = AnyPoolOptions::new()
            .max_connections(if is_sqlite { 4 } else { 16 })
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if is_sqlite {
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        if is_sqlite {
            sqlx::migrate!("./migrations").run(&pool).await?;
        } else {
            // Same versions as `migrations/`, in PostgreSQL's own dialect
            // (byte-order "C" collation on text, as SQLite compares).
            sqlx::migrate!("./migrations-postgres").run(&pool).await?;
        }
        Ok(Self {
            pool,
            postgres: !is_sqlite,
            url: url.to_owned(),
        })
    }

    /// Whether this is PostgreSQL (shared by replicas) rather than SQLite.
    pub fn is_postgres(&self) -> bool {
        self.postgres
    }

    /// The URL the store was opened with (for a dedicated connection).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Current time as stored: RFC 3339, UTC, millisecond precision.
pub fn now() -> String {
    format_time(chrono::Utc::now())
}

pub fn format_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub fn parse_time(s: &str) -> StoreResult<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| StoreError::Corrupt(format!("timestamp {s:?}: {e}")))
}
