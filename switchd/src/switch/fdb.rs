//! One network's forwarding table: where each MAC is, behind a local port
//! or a remote VTEP.
//!
//! Two kinds of entries:
//! - learned from traffic: they age (one not refreshed for `aging` is
//!   ignored by lookups at once and removed by the next [`Fdb::sweep`]) and
//!   count against their port's or VTEP's limit;
//! - told by gossip (a remote host publishes its containers): they do not
//!   age and count against nothing; [`Fdb::set_gossip`] replaces them all.
//!
//! Traffic wins over gossip for a MAC seen somewhere else (a container that
//! moved announces itself before gossip catches up), and a MAC learned on
//! a local port is never overwritten by gossip.
//!
//! The table never decides whether a port or VTEP may learn more MACs; the
//! switch does, since it knows the limits.

use std::time::{Duration, Instant};

use hashbrown::HashMap;
use switchd_config::MacAddr;

use super::{Location, VtepId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Learned,
    Gossip,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Learned => "learned",
            Kind::Gossip => "gossip",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub location: Location,
    pub last_seen: Instant,
    pub kind: Kind,
    /// When this table last told its replicas of the entry (see
    /// [`Learned::Renewed`]).
    shared: Instant,
}

impl Entry {
    fn learned(location: Location, now: Instant) -> Self {
        Entry { location, last_seen: now, kind: Kind::Learned, shared: now }
    }

    fn is_live(&self, now: Instant, aging: Duration) -> bool {
        self.kind == Kind::Gossip || now.saturating_duration_since(self.last_seen) <= aging
    }

    /// Whether it counts against its location's limit.
    fn counts(&self) -> bool {
        self.kind == Kind::Learned
    }
}

/// What learning a source address did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// Already known here; its age was reset.
    Refreshed,
    /// Refreshed, and not shared for `share_every`: replicas that never see
    /// this MAC's frames should hear that it is still there before it ages
    /// out of their tables.
    Renewed,
    /// A new entry.
    New,
    /// Known elsewhere before; now here. `counted`: the old entry counted
    /// against `from`'s limit.
    Moved { from: Location, counted: bool },
}

#[derive(Debug, Default, Clone)]
pub struct Fdb {
    // Keyed by the MAC as a u64: hashes faster than [u8; 6]. hashbrown's
    // default hasher (foldhash) is seeded per table, so senders choosing
    // source MACs cannot aim for collisions.
    entries: HashMap<u64, Entry>,
}

fn mac_of(key: u64) -> MacAddr {
    let b = key.to_be_bytes();
    MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]])
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

    /// Records `mac` at `location`. `may_add` is asked before a new or
    /// moved entry is made (a refresh never needs permission); its `Err` is
    /// returned and nothing changes. A refresh of an entry not shared for
    /// `share_every` is [`Learned::Renewed`].
    pub fn learn<E>(
        &mut self,
        mac: MacAddr,
        location: Location,
        now: Instant,
        share_every: Duration,
        may_add: impl FnOnce() -> Result<(), E>,
    ) -> Result<Learned, E> {
        use hashbrown::hash_map::Entry as Slot;
        match self.entries.entry(mac.to_u64()) {
            Slot::Occupied(mut slot) => {
                let entry = slot.get_mut();
                if entry.location == location {
                    entry.last_seen = now;
                    if now.saturating_duration_since(entry.shared) < share_every {
                        return Ok(Learned::Refreshed);
                    }
                    entry.shared = now;
                    return Ok(Learned::Renewed);
                }
                may_add()?;
                let (from, counted) = (entry.location, entry.counts());
                *entry = Entry::learned(location, now);
                Ok(Learned::Moved { from, counted })
            }
            Slot::Vacant(slot) => {
                may_add()?;
                slot.insert(Entry::learned(location, now));
                Ok(Learned::New)
            }
        }
    }

    /// Takes what a replica learned at `at` (see [`Learned`]), unless this
    /// table has seen the MAC somewhere since: the latest sighting wins,
    /// so replicas agree however their news cross. What a replica learned
    /// was allowed there (guard, limits); it is not asked again. Returns
    /// what changed, as `learn` would.
    pub fn apply(&mut self, mac: MacAddr, location: Location, at: Instant) -> Option<Learned> {
        use hashbrown::hash_map::Entry as Slot;
        match self.entries.entry(mac.to_u64()) {
            Slot::Occupied(mut slot) => {
                let entry = slot.get_mut();
                if entry.location == location {
                    entry.last_seen = entry.last_seen.max(at);
                    entry.shared = entry.shared.max(at);
                    return Some(Learned::Refreshed);
                }
                if entry.kind == Kind::Learned && entry.last_seen > at {
                    return None;
                }
                let (from, counted) = (entry.location, entry.counts());
                *entry = Entry::learned(location, at);
                Some(Learned::Moved { from, counted })
            }
            Slot::Vacant(slot) => {
                slot.insert(Entry::learned(location, at));
                Some(Learned::New)
            }
        }
    }

    /// Makes the gossip entries exactly `macs` (each behind its VTEP).
    /// `uncount` is called for each learned entry gossip replaces.
    pub fn set_gossip(&mut self, macs: &[(MacAddr, VtepId)], now: Instant, mut uncount: impl FnMut(Location)) {
        let wanted: HashMap<u64, VtepId> = macs.iter().map(|(m, v)| (m.to_u64(), *v)).collect();
        self.entries.retain(|mac, e| e.kind == Kind::Learned || wanted.contains_key(mac));
        for (mac, vtep) in wanted {
            self.tell(mac, vtep, now, &mut uncount);
        }
    }

    /// Changes only some gossip entries: `gone` MACs are no longer behind
    /// any remote host, `told` ones are behind these VTEPs now. What a
    /// change from gossip costs under the data plane's lock: its size, not
    /// the table's.
    pub fn update_gossip(
        &mut self,
        gone: &[MacAddr],
        told: &[(MacAddr, VtepId)],
        now: Instant,
        mut uncount: impl FnMut(Location),
    ) {
        for mac in gone {
            if let hashbrown::hash_map::EntryRef::Occupied(e) = self.entries.entry_ref(&mac.to_u64())
                && e.get().kind == Kind::Gossip
            {
                e.remove();
            }
        }
        for (mac, vtep) in told {
            self.tell(mac.to_u64(), *vtep, now, &mut uncount);
        }
    }

    /// Puts `mac` behind `vtep`, as gossip says.
    fn tell(&mut self, mac: u64, vtep: VtepId, now: Instant, uncount: &mut impl FnMut(Location)) {
        let gossip = Entry { location: Location::Vtep(vtep), last_seen: now, kind: Kind::Gossip, shared: now };
        match self.entries.get_mut(&mac) {
            // Seen on a local port: that container is here, whatever gossip says.
            Some(e) if e.kind == Kind::Learned && matches!(e.location, Location::Port(_)) => {}
            Some(e) => {
                if e.counts() {
                    uncount(e.location);
                }
                *e = gossip;
            }
            None => {
                self.entries.insert(mac, gossip);
            }
        }
    }

    /// Removes expired learned entries, calling `removed` with each one's location.
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
        self.entries.iter().map(|(mac, e)| (mac_of(*mac), *e))
    }
}
