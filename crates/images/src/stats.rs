//! Pull timings for the server's metrics: each pull (not a caller that
//! joined a running one) records its outcome and duration here, and the
//! metrics scrape takes them ([`take_pulls`]) into its histogram.

use std::sync::Mutex;
use std::time::Duration;

/// Pulls kept between two scrapes at most (the oldest are dropped).
const KEEP: usize = 4096;

static PULLS: Mutex<Vec<(bool, Duration)>> = Mutex::new(Vec::new());

/// A pull ended: `ok` or not, after `took`.
pub fn record_pull(ok: bool, took: Duration) {
    let mut pulls = PULLS.lock().unwrap_or_else(|e| e.into_inner());
    if pulls.len() >= KEEP {
        pulls.remove(0);
    }
    pulls.push((ok, took));
}

/// The pulls recorded since the last call.
pub fn take_pulls() -> Vec<(bool, Duration)> {
    std::mem::take(&mut *PULLS.lock().unwrap_or_else(|e| e.into_inner()))
}
