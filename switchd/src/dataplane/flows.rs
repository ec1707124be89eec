//! Sampled conversations, for `switchctl top`: which pairs of endpoints
//! (by MAC) move the most, estimated from one frame in [`SAMPLE_EVERY`]
//! the way sFlow does, so the cost per frame is one countdown.
//!
//! Each worker keeps its samples of a batch and adds them to the shared
//! table with one lock per batch that had any. The table holds at most
//! [`MAX_PAIRS`] pairs: a new pair past that takes the place of the one
//! heard from least recently among a few, and is counted, so a MAC flood
//! costs a bounded table and a few looks per sample.

use std::sync::Mutex;
use std::time::Instant;

use hashbrown::HashMap;
use switchd_config::MacAddr;

/// One frame in this many is sampled.
pub const SAMPLE_EVERY: u32 = 64;
/// Pairs the table holds.
pub const MAX_PAIRS: usize = 1024;
/// Pairs looked at to choose which one a new pair replaces.
const EVICTION_CANDIDATES: usize = 8;

/// A worker's countdown to its next sample.
#[derive(Debug)]
pub struct Sampler {
    left: u32,
    /// This batch's samples: (source, destination, frame length).
    pub taken: Vec<(MacAddr, MacAddr, u32)>,
}

impl Sampler {
    /// Worker `worker`'s: workers start at different points, so they do
    /// not sample in step.
    pub fn new(worker: usize) -> Self {
        Sampler { left: 1 + (worker as u32).wrapping_mul(23) % SAMPLE_EVERY, taken: Vec::new() }
    }

    /// Counts a frame; samples it (its Ethernet header) when its turn comes.
    #[inline]
    pub fn count(&mut self, eth: &[u8]) {
        self.left -= 1;
        if self.left == 0 {
            self.left = SAMPLE_EVERY;
            self.take(eth);
        }
    }

    #[cold]
    fn take(&mut self, eth: &[u8]) {
        let mac = |at: usize| eth.get(at..at + 6).and_then(|m| <[u8; 6]>::try_from(m).ok()).map(MacAddr);
        // Between two endpoints only: floods and multicast have no pair.
        if let (Some(dst), Some(src)) = (mac(0), mac(6))
            && dst.0[0] & 1 == 0
        {
            self.taken.push((src, dst, eth.len() as u32));
        }
    }
}

/// What was estimated for a pair: frames and bytes each way (`[0]` from
/// the lower MAC to the higher).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pair {
    pub frames: [u64; 2],
    pub bytes: [u64; 2],
    last: Instant,
}

/// The table at one moment: each pair (lower MAC first) and its
/// estimates, and how many pairs were replaced for want of room.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub pairs: Vec<((MacAddr, MacAddr), Pair)>,
    pub replaced: u64,
}

/// The pairs heard, shared by the workers.
#[derive(Debug, Default)]
pub struct Conversations {
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    pairs: HashMap<(MacAddr, MacAddr), Pair>,
    replaced: u64,
}

impl Conversations {
    /// Adds a batch's samples, each standing for [`SAMPLE_EVERY`] frames.
    pub fn add(&self, samples: &mut Vec<(MacAddr, MacAddr, u32)>, now: Instant) {
        if samples.is_empty() {
            return;
        }
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        for (src, dst, len) in samples.drain(..) {
            let (key, way) = if src <= dst { ((src, dst), 0) } else { ((dst, src), 1) };
            if !t.pairs.contains_key(&key) && t.pairs.len() >= MAX_PAIRS {
                // The oldest of a few: a flood of new pairs costs a few
                // looks per sample, not a scan of the table.
                let oldest = t.pairs.iter().take(EVICTION_CANDIDATES).min_by_key(|(_, p)| p.last).map(|(k, _)| *k);
                if let Some(oldest) = oldest {
                    t.pairs.remove(&oldest);
                    t.replaced += 1;
                }
            }
            let pair = t.pairs.entry(key).or_insert(Pair { frames: [0; 2], bytes: [0; 2], last: now });
            pair.frames[way] += u64::from(SAMPLE_EVERY);
            pair.bytes[way] += u64::from(len) * u64::from(SAMPLE_EVERY);
            pair.last = now;
        }
    }

    /// Every pair with its estimates.
    pub fn snapshot(&self) -> Snapshot {
        let t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        Snapshot { pairs: t.pairs.iter().map(|(k, p)| (*k, *p)).collect(), replaced: t.replaced }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eth(src: u8, dst: u8) -> Vec<u8> {
        let mut f = vec![0u8; 100];
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, dst]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, src]);
        f
    }

    #[test]
    fn one_frame_in_n_is_sampled_and_stands_for_n_both_ways_in_one_pair() {
        let mut s = Sampler::new(0);
        let c = Conversations::default();
        for _ in 0..SAMPLE_EVERY * 10 {
            s.count(&eth(1, 2));
            s.count(&eth(2, 1));
            let mut flood = eth(1, 3);
            flood[0] = 0xff;
            s.count(&flood);
        }
        assert_eq!(s.taken.len(), 20, "two of every three frames are between endpoints");
        c.add(&mut s.taken, Instant::now());
        assert!(s.taken.is_empty());
        let Snapshot { pairs, replaced } = c.snapshot();
        assert_eq!((pairs.len(), replaced), (1, 0), "a and b are one conversation; the flood none");
        let p = pairs[0].1;
        assert_eq!(p.frames[0] + p.frames[1], u64::from(SAMPLE_EVERY) * 20);
        assert_eq!(p.bytes[0], p.frames[0] * 100);
        assert!(p.frames[0] > 0 && p.frames[1] > 0, "both ways: {p:?}");
    }

    #[test]
    fn the_table_is_bounded_and_replaces_pairs_heard_from_long_ago() {
        let c = Conversations::default();
        let t0 = Instant::now();
        let mac = |n: usize| MacAddr([2, 0, 0, 0, (n >> 8) as u8, n as u8]);
        let mut first = vec![(mac(0), mac(1), 60)];
        c.add(&mut first, t0);
        for n in 1..MAX_PAIRS + 10 {
            c.add(&mut vec![(mac(2 * n), mac(2 * n + 1), 60)], t0 + std::time::Duration::from_millis(n as u64));
        }
        let Snapshot { pairs, replaced } = c.snapshot();
        assert_eq!((pairs.len(), replaced), (MAX_PAIRS, 10));
        assert!(
            pairs.iter().any(|(k, _)| *k == (mac(2 * (MAX_PAIRS + 9)), mac(2 * (MAX_PAIRS + 9) + 1))),
            "the newest is in"
        );
    }
}
