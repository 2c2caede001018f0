//! Retention: the idle stop, deletion after stop, and the template-era hard
//! lifetime. Deadlines are computed from stored timestamps on every pass of
//! the reconciler, so they hold across server restarts; there are no
//! in-memory timers to forget.
//!
//! - `idle_ttl_seconds` > 0: a `ready` sandbox with no open connection and
//!   no activity for that long is stopped (files kept).
//! - `delete_after_stop_seconds` > 0: a `stopped` sandbox is deleted that
//!   long after `stopped_at` (changing the setting moves the deadline).
//! - `ttl_seconds` > 0 (langsmith 0.7.30): deleted that long after creation.
//!
//! `time_scale` divides every duration; it exists so tests can run the
//! production logic in seconds instead of minutes (`--test-time-scale`).

use chrono::{DateTime, Utc};
use sandpit_api::SandboxStatus;

use super::Sandboxes;
use crate::store::{parse_time, SandboxRow};

/// What a sandbox is due for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    IdleStop,
    DeleteAfterStop,
    LifetimeOver,
}

impl Due {
    /// The name a leader sends to the owner node (`cluster::rpc`).
    pub fn as_str(self) -> &'static str {
        match self {
            Due::IdleStop => "idle_stop",
            Due::DeleteAfterStop => "delete_after_stop",
            Due::LifetimeOver => "lifetime_over",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [Due::IdleStop, Due::DeleteAfterStop, Due::LifetimeOver]
            .into_iter()
            .find(|d| d.as_str() == name)
    }
}

fn elapsed(since: &str, now: DateTime<Utc>, seconds: i64, scale: u32) -> bool {
    let Ok(since) = parse_time(since) else {
        return false;
    };
    let scaled_ms = seconds.saturating_mul(1000) / i64::from(scale.max(1));
    now >= since + chrono::Duration::milliseconds(scaled_ms)
}

/// What `row` is due for at `now`, if anything. `busy` means a connection
/// to the sandbox is open or activity was seen in the last moments.
pub fn due(row: &SandboxRow, now: DateTime<Utc>, scale: u32, busy: bool) -> Option<Due> {
    let status = row.status().ok()?;
    if status == SandboxStatus::Deleting || status == SandboxStatus::Provisioning {
        return None;
    }
    if let Some(ttl) = row.ttl_seconds.filter(|t| *t > 0) {
        if elapsed(&row.created_at, now, ttl, scale) {
            return Some(Due::LifetimeOver);
        }
    }
    match status {
        SandboxStatus::Ready
            if row.idle_ttl_seconds > 0
                && !busy
                && elapsed(&row.last_activity_at, now, row.idle_ttl_seconds, scale) =>
        {
            Some(Due::IdleStop)
        }
        SandboxStatus::Stopped if row.delete_after_stop_seconds > 0 => {
            let stopped_at = row.stopped_at.as_deref()?;
            elapsed(stopped_at, now, row.delete_after_stop_seconds, scale)
                .then_some(Due::DeleteAfterStop)
        }
        _ => None,
    }
}

impl Sandboxes {
    /// One reconciler pass: stop idle sandboxes, delete expired ones.
    pub async fn enforce_retention(&self, scale: u32) -> anyhow::Result<()> {
        let candidates = self
            .store
            .sandboxes_with_status(&[
                SandboxStatus::Ready,
                SandboxStatus::Stopped,
                SandboxStatus::Failed,
            ])
            .await?;
        for row in candidates {
            let Some(due) = due(&row, Utc::now(), scale, self.activity.busy(&row.id)) else {
                continue;
            };
            if let Err(err) = self.retire(&row.id, due, scale).await {
                tracing::warn!(sandbox = %row.id, error = %err, ?due, "retention action failed");
            }
        }
        Ok(())
    }

    /// Carry out `due` if it still holds under the sandbox's lock (the row
    /// may have changed since the scan).
    pub(super) async fn retire(
        &self,
        id: &str,
        due: Due,
        scale: u32,
    ) -> Result<(), crate::error::ApiError> {
        // Another live replica runs it: the owner, which knows its open
        // connections, decides again and acts.
        if let Some(owner @ crate::cluster::Owner::Peer(_)) = self.remote_owner(id).await? {
            let op = crate::cluster::rpc::PeerOp::Retire {
                sandbox_id: id.to_owned(),
                due: due.as_str().to_owned(),
                scale,
            };
            return self
                .call_owner(&owner, &op)
                .await
                .map_err(crate::error::ApiError::Upstream);
        }
        let guard = self.sandbox_lock(id);
        let _held = guard.lock().await;
        let Some(row) = self.store.sandbox(id).await? else {
            return Ok(());
        };
        if self::due(&row, Utc::now(), scale, self.activity.busy(id)) != Some(due) {
            return Ok(());
        }
        match due {
            Due::IdleStop => {
                let message = format!(
                    "Stopped after {} seconds without activity",
                    row.idle_ttl_seconds
                );
                tracing::info!(sandbox = %id, "idle: stopping");
                self.halt(id, SandboxStatus::Stopped, Some(&message)).await
            }
            Due::DeleteAfterStop | Due::LifetimeOver => {
                tracing::info!(sandbox = %id, ?due, "retention: deleting");
                self.destroy(id).await?;
                self.locks.forget_sandbox(id);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(status: &str) -> SandboxRow {
        SandboxRow {
            id: "id".into(),
            tenant_id: "t".into(),
            name: "n".into(),
            status: status.into(),
            status_message: None,
            image: "host".into(),
            snapshot_id: None,
            template_name: None,
            vcpus: 1,
            mem_bytes: 1 << 30,
            fs_capacity_bytes: 1 << 30,
            idle_ttl_seconds: 600,
            delete_after_stop_seconds: 3600,
            ttl_seconds: None,
            persistent: 1,
            proxy_config: None,
            run_config: None,
            labels: "{}".into(),
            extra: "{}".into(),
            net_slot: None,
            pid: None,
            pid_start_time: None,
            created_by: None,
            created_at: "2026-01-01T00:00:00.000Z".into(),
            updated_at: "2026-01-01T00:00:00.000Z".into(),
            stopped_at: None,
            last_activity_at: "2026-01-01T00:00:00.000Z".into(),
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        parse_time(s).unwrap()
    }

    #[test]
    fn idle_stop_after_the_ttl_without_activity_or_connections() {
        let r = row("ready");
        assert_eq!(due(&r, at("2026-01-01T00:09:59.000Z"), 1, false), None);
        assert_eq!(
            due(&r, at("2026-01-01T00:10:00.000Z"), 1, false),
            Some(Due::IdleStop)
        );
        assert_eq!(due(&r, at("2026-01-01T00:10:00.000Z"), 1, true), None);
        let disabled = SandboxRow {
            idle_ttl_seconds: 0,
            ..row("ready")
        };
        assert_eq!(
            due(&disabled, at("2027-01-01T00:00:00.000Z"), 1, false),
            None
        );
    }

    #[test]
    fn delete_after_stop_is_anchored_to_stopped_at() {
        let r = SandboxRow {
            stopped_at: Some("2026-01-01T01:00:00.000Z".into()),
            ..row("stopped")
        };
        assert_eq!(due(&r, at("2026-01-01T01:59:59.000Z"), 1, false), None);
        assert_eq!(
            due(&r, at("2026-01-01T02:00:00.000Z"), 1, false),
            Some(Due::DeleteAfterStop)
        );
        let moved = SandboxRow {
            delete_after_stop_seconds: 7200,
            ..r.clone()
        };
        assert_eq!(due(&moved, at("2026-01-01T02:00:00.000Z"), 1, false), None);
        let never = SandboxRow {
            delete_after_stop_seconds: 0,
            ..r
        };
        assert_eq!(due(&never, at("2030-01-01T00:00:00.000Z"), 1, false), None);
    }

    #[test]
    fn hard_lifetime_applies_to_any_settled_status() {
        for status in ["ready", "stopped", "failed"] {
            let r = SandboxRow {
                ttl_seconds: Some(120),
                idle_ttl_seconds: 0,
                ..row(status)
            };
            assert_eq!(due(&r, at("2026-01-01T00:01:59.000Z"), 1, false), None);
            assert_eq!(
                due(&r, at("2026-01-01T00:02:00.000Z"), 1, false),
                Some(Due::LifetimeOver)
            );
        }
        let r = SandboxRow {
            ttl_seconds: Some(120),
            ..row("provisioning")
        };
        assert_eq!(due(&r, at("2026-01-02T00:00:00.000Z"), 1, false), None);
    }

    #[test]
    fn time_scale_divides_every_duration() {
        let r = row("ready");
        assert_eq!(due(&r, at("2026-01-01T00:00:09.000Z"), 60, false), None);
        assert_eq!(
            due(&r, at("2026-01-01T00:00:10.000Z"), 60, false),
            Some(Due::IdleStop)
        );
    }
}
