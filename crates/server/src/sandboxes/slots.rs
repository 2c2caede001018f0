//! Network slots: small integers, unique among running sandboxes, from which
//! the runtime derives veth names and addresses.

use std::collections::BTreeSet;
use std::sync::Mutex;

#[derive(Default)]
pub struct Slots {
    used: Mutex<BTreeSet<u32>>,
}

/// The runtime addresses a /30 per slot inside a /16.
pub const MAX_SLOTS: u32 = 16_384;

impl Slots {
    /// Take the smallest free slot.
    pub fn allocate(&self) -> Option<u32> {
        let mut used = self.lock();
        let free = (0..MAX_SLOTS).find(|slot| !used.contains(slot))?;
        used.insert(free);
        Some(free)
    }

    /// Mark a slot as taken (a sandbox found running at start-up).
    pub fn reserve(&self, slot: u32) {
        self.lock().insert(slot);
    }

    pub fn release(&self, slot: u32) {
        self.lock().remove(&slot);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<u32>> {
        self.used.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_smallest_free_and_reuses_released() {
        let slots = Slots::default();
        slots.reserve(1);
        assert_eq!(slots.allocate(), Some(0));
        assert_eq!(slots.allocate(), Some(2));
        slots.release(0);
        assert_eq!(slots.allocate(), Some(0));
    }
}
