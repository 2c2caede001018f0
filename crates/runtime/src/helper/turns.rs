//! First come, first served hand-out of a shared resource (the helpers).

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

/// Callers waiting for a resource, served in arrival order: only the first
/// in line may take one. With every waiter woken and racing for a freed
/// helper (and new callers barging in), some creates of a burst waited
/// several times as long as the rest: a p99 3.5 times the p50.
#[derive(Debug, Default)]
pub(super) struct Turns {
    line: Mutex<Line>,
    /// Signalled, under `line`'s mutex, whenever a resource is released or
    /// the first in line took one.
    changed: Condvar,
}

#[derive(Debug, Default)]
struct Line {
    next: u64,
    waiting: VecDeque<u64>,
}

impl Turns {
    /// Waits for this caller's turn and for `try_take` to give something;
    /// looks again at least every `recheck` (a safety net: releases wake
    /// waiters at once).
    pub fn take<T>(&self, recheck: Duration, mut try_take: impl FnMut() -> Option<T>) -> T {
        let mut line = self.line.lock().unwrap_or_else(PoisonError::into_inner);
        let ticket = line.next;
        line.next += 1;
        line.waiting.push_back(ticket);
        loop {
            if line.waiting.front() == Some(&ticket) {
                if let Some(taken) = try_take() {
                    line.waiting.pop_front();
                    // The next in line may find another one free.
                    self.changed.notify_all();
                    return taken;
                }
            }
            line = (self.changed.wait_timeout(line, recheck))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Wakes the waiters after a resource was released.
    pub fn released(&self) {
        let _line = self.line.lock().unwrap_or_else(PoisonError::into_inner);
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Callers that queued one after another get a single resource, released
    /// and taken again one at a time, in the order they came.
    #[test]
    fn callers_are_served_in_arrival_order() {
        const CALLERS: usize = 8;
        let turns = Arc::new(Turns::default());
        let free = Arc::new(AtomicUsize::new(0));
        let order = Arc::new(Mutex::new(Vec::new()));
        let take = |free: &AtomicUsize| {
            (free.load(Ordering::SeqCst) > 0).then(|| free.fetch_sub(1, Ordering::SeqCst))
        };
        let mut threads = Vec::new();
        for caller in 0..CALLERS {
            let (mine, free, order) = (turns.clone(), free.clone(), order.clone());
            threads.push(std::thread::spawn(move || {
                mine.take(Duration::from_secs(5), || take(&free));
                order.lock().unwrap().push(caller);
            }));
            // Queued before the next one comes.
            while turns.line.lock().unwrap().waiting.len() <= caller {
                std::thread::yield_now();
            }
        }
        for served in 1..=CALLERS {
            free.fetch_add(1, Ordering::SeqCst);
            turns.released();
            while order.lock().unwrap().len() < served {
                std::thread::yield_now();
            }
        }
        for thread in threads {
            thread.join().unwrap();
        }
        let order = order.lock().unwrap().clone();
        assert_eq!(order, (0..CALLERS).collect::<Vec<_>>());
    }
}
