//! A bounded table of flows, for the state the data path keeps per
//! connection (a load-balanced flow's backend; later, a policy verdict).
//!
//! Set-associative, as a CPU cache is: a key's hash picks a bucket of
//! [`WAYS`] slots, and a new key takes an empty slot there, or one idle
//! past the timeout, or else the one used least recently (counted in
//! [`FlowTable::evicted`]). So memory is fixed when the table is first
//! used, a lookup or an insert looks at eight slots whatever the load, and
//! a flood of new flows can only push out flows quieter than itself: an
//! established connection, refreshed by its every packet, stays. The hash
//! is seeded per process, so a sender cannot aim its flows at one bucket.

use std::hash::{BuildHasher, Hash};
use std::time::{Duration, Instant};

use hashbrown::DefaultHashBuilder;

/// Slots per bucket.
pub const WAYS: usize = 8;

#[derive(Debug, Clone)]
struct Slot<K, V> {
    key: K,
    value: V,
    seen: Instant,
}

#[derive(Debug, Clone)]
pub struct FlowTable<K, V> {
    /// `buckets * WAYS` slots, allocated at the first insert.
    slots: Vec<Option<Slot<K, V>>>,
    buckets: usize,
    idle: Duration,
    hasher: DefaultHashBuilder,
    /// Live flows pushed out to make room for new ones.
    pub evicted: u64,
}

impl<K: Hash + Eq + Copy, V: Copy> FlowTable<K, V> {
    /// A table of at least `capacity` flows (rounded up to a power of two
    /// buckets), each forgotten after `idle` without a packet.
    pub fn new(capacity: usize, idle: Duration) -> Self {
        let buckets = capacity.div_ceil(WAYS).max(1).next_power_of_two();
        FlowTable { slots: Vec::new(), buckets, idle, hasher: DefaultHashBuilder::default(), evicted: 0 }
    }

    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.buckets * WAYS
    }

    fn bucket(&self, key: &K) -> std::ops::Range<usize> {
        let start = (self.hasher.hash_one(key) as usize & (self.buckets - 1)) * WAYS;
        start..start + WAYS
    }

    fn live(&self, slot: &Slot<K, V>, now: Instant) -> bool {
        now.saturating_duration_since(slot.seen) < self.idle
    }

    /// The value of a live flow, marking it used at `now`.
    pub fn get(&mut self, key: &K, now: Instant) -> Option<V> {
        if self.slots.is_empty() {
            return None;
        }
        let range = self.bucket(key);
        let idle = self.idle;
        let slot = self.slots[range].iter_mut().flatten().find(|s| s.key == *key)?;
        if now.saturating_duration_since(slot.seen) >= idle {
            return None;
        }
        slot.seen = slot.seen.max(now);
        Some(slot.value)
    }

    /// The value of a flow, without marking it used (for a look that is
    /// not traffic: `trace`). Without a clock, an idle one counts too.
    pub fn get_unmarked(&self, key: &K) -> Option<V> {
        if self.slots.is_empty() {
            return None;
        }
        self.slots[self.bucket(key)].iter().flatten().find(|s| s.key == *key).map(|s| s.value)
    }

    /// Sets the flow's value (a new flow, or a new value for a known one),
    /// used at `now`.
    pub fn insert(&mut self, key: K, value: V, now: Instant) {
        if self.slots.is_empty() {
            self.slots = vec![None; self.buckets * WAYS];
        }
        let range = self.bucket(&key);
        let idle = self.idle;
        let bucket = &mut self.slots[range];
        let at = bucket
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| s.key == key))
            .or_else(|| bucket.iter().position(|s| s.is_none()))
            .or_else(|| {
                bucket.iter().position(|s| s.as_ref().is_some_and(|s| now.saturating_duration_since(s.seen) >= idle))
            });
        let at = at.unwrap_or_else(|| {
            self.evicted += 1;
            let oldest = bucket.iter().enumerate().min_by_key(|(_, s)| s.as_ref().map(|s| s.seen));
            oldest.map_or(0, |(i, _)| i)
        });
        bucket[at] = Some(Slot { key, value, seen: now });
    }

    /// Forgets one flow.
    pub fn remove(&mut self, key: &K) {
        if self.slots.is_empty() {
            return;
        }
        let range = self.bucket(key);
        for slot in &mut self.slots[range] {
            if slot.as_ref().is_some_and(|s| s.key == *key) {
                *slot = None;
            }
        }
    }

    /// Forgets the flows whose value `gone` says is gone.
    pub fn forget(&mut self, mut gone: impl FnMut(&V) -> bool) {
        for slot in &mut self.slots {
            if slot.as_ref().is_some_and(|s| gone(&s.value)) {
                *slot = None;
            }
        }
    }

    /// Flows seen within the idle timeout.
    pub fn len(&self, now: Instant) -> usize {
        self.slots.iter().flatten().filter(|s| self.live(s, now)).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_gets_and_times_out() {
        let now = Instant::now();
        let mut t: FlowTable<u32, u32> = FlowTable::new(64, Duration::from_secs(10));
        assert_eq!(t.get(&1, now), None, "empty, and nothing allocated");
        t.insert(1, 100, now);
        t.insert(1, 101, now);
        assert_eq!(t.get(&1, now + Duration::from_secs(9)), Some(101), "the newer value, once");
        assert_eq!(t.get(&1, now + Duration::from_secs(18)), Some(101), "refreshed by the last get");
        assert_eq!(t.get(&1, now + Duration::from_secs(29)), None, "idle past the timeout");
        assert_eq!(t.len(now + Duration::from_secs(29)), 0);
        assert_eq!(t.evicted, 0);
    }

    #[test]
    fn a_flood_of_new_flows_is_bounded_and_spares_a_busy_one() {
        let start = Instant::now();
        let mut t: FlowTable<u32, u32> = FlowTable::new(1024, Duration::from_secs(300));
        t.insert(7, 7, start);
        for i in 0..100_000u32 {
            let now = start + Duration::from_micros(u64::from(i));
            // The established flow keeps sending, one packet per 10 new
            // flows: for it to be pushed out, 8 new flows must land in its
            // bucket of 128 between two of its packets (about once in 10^10
            // runs; at one packet per 100 it was once in 600).
            if i % 10 == 0 {
                assert_eq!(t.get(&7, now), Some(7), "the busy flow was pushed out at {i}");
            }
            t.insert(1_000_000 + i, i, now);
        }
        assert_eq!(t.capacity(), 1024);
        assert!(t.len(start + Duration::from_secs(1)) <= 1024);
        assert!(t.evicted >= 100_000 - 1024, "evictions counted: {}", t.evicted);
    }

    #[test]
    fn forgets_by_value() {
        let now = Instant::now();
        // Room enough that no bucket of 8 overflows with 20.
        let mut t: FlowTable<u32, u32> = FlowTable::new(4096, Duration::from_secs(10));
        for i in 0..20 {
            t.insert(i, i % 2, now);
        }
        t.forget(|v| *v == 1);
        assert_eq!(t.len(now), 10);
        assert_eq!(t.get(&3, now), None);
        assert_eq!(t.get(&4, now), Some(0));
    }
}
