//! What one sandbox may hold of the proxy: open connections (every TCP
//! listener, a `CONNECT` tunnel included) and DNS queries in flight, each
//! capped per sandbox and in total, plus the time limits of an idle
//! connection. A sandbox past its cap has its new connection closed at
//! once (its query dropped), so neither the proxy nor the API it shares
//! the process's file descriptors with runs out of them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Open connections one sandbox may have to the proxy.
pub const CONNECTIONS_PER_SANDBOX: usize = 256;
/// DNS queries of one sandbox being answered at once.
pub const DNS_QUERIES_PER_SANDBOX: usize = 32;
/// DNS queries being answered at once, all sandboxes together.
pub const DNS_QUERIES_TOTAL: usize = 1024;
/// Fewest and most connections all sandboxes together may open, whatever
/// the file-descriptor limit ([`connections_total`]).
const MIN_TOTAL: usize = 64;
const MAX_TOTAL: usize = 1 << 20;

/// How long a connection may wait for a request head (a new connection or
/// an idle kept-alive one), in production.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a TLS handshake with the sandbox may take (intercepted hosts).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a passed-through stream may carry no byte either way.
pub const RELAY_IDLE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// `timeout` divided by the tests' time scale (1 in production).
pub fn scaled(timeout: Duration, time_scale: u32) -> Duration {
    timeout / time_scale.max(1)
}

/// Connections all sandboxes together may open: an eighth of the soft
/// open-file limit (a passed-through stream costs six descriptors: two
/// sockets and two pipes), so most of it is left for the API.
pub fn connections_total(nofile_soft: u64) -> usize {
    usize::try_from(nofile_soft / 8)
        .unwrap_or(MAX_TOTAL)
        .clamp(MIN_TOTAL, MAX_TOTAL)
}

/// Counts what each source holds; [`Limit::acquire`] hands out slots.
#[derive(Debug)]
pub struct Limit {
    per_source: usize,
    total: usize,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    by_source: HashMap<IpAddr, usize>,
    total: usize,
}

/// One unit of a source's allowance, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    limit: Arc<Limit>,
    source: IpAddr,
}

impl Limit {
    pub fn new(per_source: usize, total: usize) -> Arc<Self> {
        Arc::new(Self {
            per_source,
            total,
            held: Mutex::new(Held::default()),
        })
    }

    /// A slot for `source`, unless it (or everyone together) is at the cap.
    pub fn acquire(self: &Arc<Self>, source: IpAddr) -> Option<Slot> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if held.total >= self.total {
            return None;
        }
        let mine = held.by_source.entry(source).or_default();
        if *mine >= self.per_source {
            return None;
        }
        *mine += 1;
        held.total += 1;
        Some(Slot {
            limit: self.clone(),
            source,
        })
    }

    /// What `source` holds now.
    pub fn held_by(&self, source: IpAddr) -> usize {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.by_source.get(&source).copied().unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.limit.held.lock().unwrap_or_else(|e| e.into_inner());
        held.total = held.total.saturating_sub(1);
        if let Some(mine) = held.by_source.get_mut(&self.source) {
            *mine = mine.saturating_sub(1);
            if *mine == 0 {
                held.by_source.remove(&self.source);
            }
        }
    }
}

/// Raise this process's soft open-file limit to its hard limit (the
/// proxy's connections and the API share it); the limits after.
pub fn raise_nofile_limit() -> std::io::Result<(u64, u64)> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(getrlimit(Resource::RLIMIT_NOFILE)?)
}

/// The soft open-file limit now.
pub fn nofile_soft() -> u64 {
    use nix::sys::resource::{getrlimit, Resource};
    getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 200, 0, 2));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 200, 0, 6));

    #[test]
    fn a_source_gets_at_most_its_share_and_gets_it_back() {
        let limit = Limit::new(3, 100);
        let mut slots: Vec<Slot> = (0..3).map(|_| limit.acquire(A).unwrap()).collect();
        assert!(limit.acquire(A).is_none(), "past the per-source cap");
        assert!(limit.acquire(B).is_some(), "others are not affected");
        slots.pop();
        assert_eq!(limit.held_by(A), 2);
        assert!(limit.acquire(A).is_some());
        drop(slots);
        assert_eq!(limit.held_by(A), 0);
    }

    #[test]
    fn the_total_caps_everyone_together() {
        let limit = Limit::new(10, 4);
        let _a: Vec<Slot> = (0..3).map(|_| limit.acquire(A).unwrap()).collect();
        let _b = limit.acquire(B).unwrap();
        assert!(limit.acquire(B).is_none());
    }

    #[test]
    fn totals_follow_the_file_limit_and_timeouts_the_time_scale() {
        assert_eq!(connections_total(2048), 256);
        assert_eq!(connections_total(100), MIN_TOTAL);
        assert_eq!(connections_total(u64::MAX), MAX_TOTAL);
        assert_eq!(scaled(HEADER_TIMEOUT, 30), Duration::from_secs(2));
        assert_eq!(scaled(HEADER_TIMEOUT, 0), HEADER_TIMEOUT);
    }

    #[test]
    fn the_soft_file_limit_is_raised_to_the_hard_one() {
        let (soft, hard) = raise_nofile_limit().unwrap();
        assert_eq!(soft, hard);
        assert_eq!(nofile_soft(), soft);
    }
}
