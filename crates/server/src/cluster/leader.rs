//! Leader election: the replica holding a PostgreSQL session advisory lock
//! on a dedicated connection is the leader and runs the work that must run
//! once (retention, pool refill). Every other replica tries to take the
//! lock every [`POLL`]. If the leader dies (even `kill -9`) or loses its
//! database connection, PostgreSQL ends its session and so releases the
//! lock, and the next replica to poll takes over. The leader checks its
//! connection every [`POLL`] too and steps down when it breaks, so two
//! replicas overlap for at most about one poll interval.

use std::time::Duration;

use sqlx::{AnyConnection, Connection};
use tokio::sync::watch;

/// How often a follower tries to take the lock and the leader checks it.
pub const POLL: Duration = Duration::from_secs(2);

/// The advisory lock's key (any constant shared by every replica).
const LEADER_KEY: i64 = 0x5341_4e44_5049_5431; // "SANDPIT1"

/// Compete for leadership against the database at `url`; the receiver
/// says whether this node leads now.
pub fn spawn(url: String, node: String) -> watch::Receiver<bool> {
    // Its own connection through `sqlx::any`, which needs the drivers
    // (`Store::open` installs them too; this does not rely on it).
    sqlx::any::install_default_drivers();
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        loop {
            match AnyConnection::connect(&url).await {
                Ok(conn) => hold(conn, &tx, &node).await,
                Err(err) => tracing::warn!(error = %err, "leader election: cannot connect"),
            }
            tx.send_replace(false);
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(POLL).await;
        }
    });
    rx
}

/// Poll on one connection until it fails (then this node is not leader).
async fn hold(mut conn: AnyConnection, tx: &watch::Sender<bool>, node: &str) {
    loop {
        if tx.is_closed() {
            return;
        }
        let leading = *tx.borrow();
        let result: Result<bool, sqlx::Error> = if leading {
            sqlx::query_scalar::<_, i32>("SELECT 1")
                .fetch_one(&mut conn)
                .await
                .map(|_| true)
        } else {
            sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(LEADER_KEY)
                .fetch_one(&mut conn)
                .await
        };
        match result {
            Ok(now_leading) => {
                if now_leading && !leading {
                    tracing::info!(node, "this replica is now the leader");
                }
                tx.send_replace(now_leading);
            }
            Err(err) => {
                if leading {
                    tracing::warn!(node, error = %err, "lost the leader connection; stepping down");
                }
                return;
            }
        }
        tokio::time::sleep(POLL).await;
    }
}
