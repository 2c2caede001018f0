//! A connection's view of its sandbox's policy, kept current: an update of
//! `proxy_config` applies to connections already open, not only to new
//! ones. Intercepted and plain-HTTP connections re-read the policy before
//! the next request once any policy changed ([`LivePolicy::current`]); a
//! passed-through TLS stream, whose requests the proxy cannot see, is cut
//! when a change denies its host ([`LivePolicy::revoked`]).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::{Lookup, Policy};

pub(crate) struct LivePolicy<L> {
    source: IpAddr,
    lookup: Arc<L>,
    changes: watch::Receiver<u64>,
    held: Mutex<Arc<Policy>>,
    /// The change count `held` was read at.
    read_at: AtomicU64,
}

impl<L: Lookup> LivePolicy<L> {
    /// The policy of the sandbox at `source`; `None` for an unknown source.
    pub async fn fetch(lookup: Arc<L>, source: IpAddr) -> Option<Arc<Self>> {
        let changes = lookup.policy_changes();
        let read_at = *changes.borrow();
        let policy = lookup.policy(source).await?;
        Some(Arc::new(Self {
            source,
            lookup,
            changes,
            held: Mutex::new(Arc::new(policy)),
            read_at: AtomicU64::new(read_at),
        }))
    }

    /// The policy now: the one held, or read again if any policy changed
    /// since. `None` once the sandbox is gone.
    pub async fn current(&self) -> Option<Arc<Policy>> {
        // Read the count before the policy: a change landing in between
        // leaves the count behind, so the next call reads again.
        let now = *self.changes.borrow();
        if now == self.read_at.load(Ordering::Acquire) {
            return Some(self.held());
        }
        let policy = Arc::new(self.lookup.policy(self.source).await?);
        *self.held.lock().unwrap_or_else(|e| e.into_inner()) = policy.clone();
        self.read_at.store(now, Ordering::Release);
        Some(policy)
    }

    fn held(&self) -> Arc<Policy> {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Resolves, with the reason, once a policy change denies `host` at
    /// `ip` on `port` (or the sandbox is gone); never while the policy
    /// allows it.
    pub async fn revoked(&self, host: Option<&str>, ip: Option<IpAddr>, port: u16) -> String {
        let mut changes = self.changes.clone();
        loop {
            if changes.changed().await.is_err() {
                // No more changes can come: allowed for good.
                return std::future::pending().await;
            }
            match self.current().await {
                None => return "the sandbox is gone".into(),
                Some(policy) => {
                    if let Err(denial) = policy.check_port(host, ip, port) {
                        return denial.to_string();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    /// One sandbox whose policy the test swaps, counting changes.
    struct Swappable {
        policy: Mutex<Option<Policy>>,
        changes: watch::Sender<u64>,
        reads: AtomicU64,
    }

    impl Swappable {
        fn new(config: serde_json::Value) -> Arc<Self> {
            Arc::new(Self {
                policy: Mutex::new(Some(Policy::from_proxy_config(Some(&config)).unwrap())),
                changes: watch::channel(0).0,
                reads: AtomicU64::new(0),
            })
        }

        fn set(&self, config: Option<serde_json::Value>) {
            *self.policy.lock().unwrap() =
                config.map(|c| Policy::from_proxy_config(Some(&c)).unwrap());
            self.changes.send_modify(|n| *n += 1);
        }
    }

    impl Lookup for Swappable {
        async fn policy(&self, _source: IpAddr) -> Option<Policy> {
            self.reads.fetch_add(1, Ordering::Relaxed);
            self.policy.lock().unwrap().clone()
        }
        async fn secret(&self, _tenant: &str, _name: &str) -> Option<String> {
            None
        }
        fn sign_callback(&self, _aud: &str, _body_sha256: &str) -> Option<String> {
            None
        }
        fn policy_changes(&self) -> watch::Receiver<u64> {
            self.changes.subscribe()
        }
    }

    const SOURCE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    fn deny(host: &str) -> serde_json::Value {
        json!({"access_control": {"deny_list": [host]}})
    }

    #[tokio::test]
    async fn the_policy_is_read_again_only_after_a_change() {
        let lookup = Swappable::new(json!({}));
        let live = LivePolicy::fetch(lookup.clone(), SOURCE).await.unwrap();
        for _ in 0..3 {
            assert!(live
                .current()
                .await
                .unwrap()
                .check_port(Some("a.test"), None, 443)
                .is_ok());
        }
        assert_eq!(lookup.reads.load(Ordering::Relaxed), 1);
        lookup.set(Some(deny("a.test")));
        assert!(live
            .current()
            .await
            .unwrap()
            .check_port(Some("a.test"), None, 443)
            .is_err());
        assert_eq!(lookup.reads.load(Ordering::Relaxed), 2);
        lookup.set(None);
        assert!(live.current().await.is_none());
    }

    #[tokio::test]
    async fn revoked_waits_for_a_change_that_denies_the_host() {
        let lookup = Swappable::new(json!({}));
        let live = LivePolicy::fetch(lookup.clone(), SOURCE).await.unwrap();
        let watcher = {
            let live = live.clone();
            tokio::spawn(async move { live.revoked(Some("a.test"), None, 443).await })
        };
        lookup.set(Some(deny("b.test")));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!watcher.is_finished(), "a change that still allows it");
        lookup.set(Some(deny("a.test")));
        let reason = tokio::time::timeout(Duration::from_secs(5), watcher)
            .await
            .expect("revoked in time")
            .unwrap();
        assert!(
            reason.contains("a.test") || reason.contains("deny"),
            "{reason}"
        );
    }
}
