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
    /// Take the smallest free slot whose veth does not exist on the host
    /// (another process, e.g. a second server in tests, may hold it).
    pub fn allocate(&self) -> Option<u32> {
        let mut used = self.lock();
        let free = (0..MAX_SLOTS).find(|slot| !used.contains(slot) && !veth_exists(*slot))?;
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

fn veth_exists(slot: u32) -> bool {
    let name = format!("{}{slot}", sandpit_runtime::network::HOST_PREFIX);
    std::path::Path::new("/sys/class/net").join(name).exists()
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
