//! One network's forwarding table: where each MAC was last seen, behind a
//! local port or a remote VTEP.
//!
//! Entries age: one not refreshed for `aging` is ignored by lookups at once
//! and removed by the next [`Fdb::sweep`]. The table never decides whether a
//! port or VTEP may learn more MACs; the switch does, since it knows the limits.

use std::time::{Duration, Instant};

use hashbrown::HashMap;
use switchd_config::MacAddr;

use super::Location;

#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub location: Location,
    pub last_seen: Instant,
}

impl Entry {
    fn is_live(&self, now: Instant, aging: Duration) -> bool {
        now.saturating_duration_since(self.last_seen) <= aging
    }
}

/// What learning a source address did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// Already known here; its age was reset.
    Refreshed,
    /// A new entry.
    New,
    /// Known elsewhere before; now here.
    Moved { from: Location },
}

#[derive(Debug, Default)]
pub struct Fdb {
    // Keyed by the MAC as a u64: hashes faster than [u8; 6]. hashbrown's
    // default hasher (foldhash) is seeded per table, so senders choosing
    // source MACs cannot aim for collisions.
    entries: HashMap<u64, Entry>,
}

impl Fdb {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Where a live entry for `mac` points.
    pub fn lookup(&self, mac: MacAddr, now: Instant, aging: Duration) -> Option<Location> {
        self.entries.get(&mac.to_u64()).filter(|e| e.is_live(now, aging)).map(|e| e.location)
    }

    /// Records `mac` at `location`. `may_add` is asked before a new or moved
    /// entry is made (a refresh never needs permission); `None` means it refused.
    pub fn learn(
        &mut self,
        mac: MacAddr,
        location: Location,
        now: Instant,
        may_add: impl FnOnce() -> bool,
    ) -> Option<Learned> {
        use hashbrown::hash_map::Entry as Slot;
        match self.entries.entry(mac.to_u64()) {
            Slot::Occupied(mut slot) => {
                let entry = slot.get_mut();
                if entry.location == location {
                    entry.last_seen = now;
                    Some(Learned::Refreshed)
                } else if may_add() {
                    let from = entry.location;
                    *entry = Entry { location, last_seen: now };
                    Some(Learned::Moved { from })
                } else {
                    None
                }
            }
            Slot::Vacant(slot) => {
                if !may_add() {
                    return None;
                }
                slot.insert(Entry { location, last_seen: now });
                Some(Learned::New)
            }
        }
    }

    /// Removes expired entries, calling `removed` with each one's location.
    pub fn sweep(&mut self, now: Instant, aging: Duration, mut removed: impl FnMut(Location)) {
        self.entries.retain(|_, e| {
            let live = e.is_live(now, aging);
            if !live {
                removed(e.location);
            }
            live
        });
    }

    /// Removes every entry at `location`.
    pub fn forget(&mut self, location: Location) {
        self.entries.retain(|_, e| e.location != location);
    }

    pub fn iter(&self) -> impl Iterator<Item = (MacAddr, Entry)> + '_ {
        self.entries.iter().map(|(mac, e)| {
            let b = mac.to_be_bytes();
            (MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]]), *e)
        })
    }
}
