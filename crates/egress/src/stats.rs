//! Counters of what the proxy decided and carried, for the server's metrics
//! (which read [`global`] at each scrape). One set per process: the proxy
//! runs once per server.

use std::sync::atomic::{AtomicU64, Ordering};

/// What the proxy did with a connection (a plain-HTTP request counts as
/// one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Passed through to the host it named.
    Allowed,
    /// Refused by the sandbox's policy.
    Denied,
    /// Terminated here because a rule names the host.
    Intercepted,
}

/// The counters.
#[derive(Debug, Default)]
pub struct Stats {
    allowed: AtomicU64,
    denied: AtomicU64,
    intercepted: AtomicU64,
    bytes: AtomicU64,
}

/// A copy of the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snapshot {
    pub allowed: u64,
    pub denied: u64,
    pub intercepted: u64,
    /// Bytes relayed by passed-through connections, both directions.
    pub bytes: u64,
}

static GLOBAL: Stats = Stats {
    allowed: AtomicU64::new(0),
    denied: AtomicU64::new(0),
    intercepted: AtomicU64::new(0),
    bytes: AtomicU64::new(0),
};

/// The process's counters.
pub fn global() -> &'static Stats {
    &GLOBAL
}

impl Stats {
    pub fn verdict(&self, verdict: Verdict) {
        let counter = match verdict {
            Verdict::Allowed => &self.allowed,
            Verdict::Denied => &self.denied,
            Verdict::Intercepted => &self.intercepted,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            allowed: self.allowed.load(Ordering::Relaxed),
            denied: self.denied.load(Ordering::Relaxed),
            intercepted: self.intercepted.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_and_bytes_add_up() {
        let stats = Stats::default();
        stats.verdict(Verdict::Denied);
        stats.verdict(Verdict::Denied);
        stats.verdict(Verdict::Intercepted);
        stats.bytes(10);
        stats.bytes(5);
        assert_eq!(
            stats.snapshot(),
            Snapshot {
                allowed: 0,
                denied: 2,
                intercepted: 1,
                bytes: 15
            }
        );
    }
}
