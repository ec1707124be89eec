//! Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and
//! Reliable Software Network Load Balancer", NSDI 2016), for spreading a
//! service address's connections over its backends (issue 15).
//!
//! A lookup table of a prime number of entries is filled by letting each
//! backend claim entries in turn along its own permutation of the table.
//! A flow's hash picks an entry, so a lookup is one index. Each backend
//! gets an almost equal share, and adding or removing a backend moves
//! little more than that backend's share: existing flows mostly keep
//! theirs, and a bounded per-flow table covers the rest.
//!
//! The table depends only on the set of backend keys (not their order)
//! and a stable hash (FNV-1a), so every host of a cluster that knows the
//! same backends builds the same table and sends a flow to the same one.

use std::fmt;

/// Entries of a service's table: a prime, so that every skip is a
/// generator and each permutation visits every entry; about 650 entries
/// per backend at 100 backends.
pub const DEFAULT_SIZE: usize = 65_537;

/// Why a table cannot be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaglevError {
    /// The size must be a prime, for the permutations to be complete.
    NotPrime(usize),
    /// More backends than entries: some could never be picked.
    TooManyBackends { backends: usize, size: usize },
}

impl fmt::Display for MaglevError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaglevError::NotPrime(n) => write!(f, "a Maglev table's size must be a prime, not {n}"),
            MaglevError::TooManyBackends { backends, size } => {
                write!(f, "{backends} backends do not fit a table of {size} entries")
            }
        }
    }
}

impl std::error::Error for MaglevError {}

/// A built table over backends of type `B`, keyed by their bytes.
#[derive(Debug, Clone)]
pub struct Maglev<B> {
    /// Sorted by key: the order the table was filled in.
    backends: Vec<B>,
    /// For each entry, an index into `backends`.
    table: Box<[u32]>,
}

/// 64-bit FNV-1a of `bytes`, from `seed`: stable across hosts and builds.
fn fnv(seed: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(seed, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

fn is_prime(n: usize) -> bool {
    n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
}

impl<B: AsRef<[u8]>> Maglev<B> {
    /// Builds the table of `size` entries (a prime) for `backends`
    /// (duplicates by key are kept once).
    pub fn new(mut backends: Vec<B>, size: usize) -> Result<Self, MaglevError> {
        if !is_prime(size) {
            return Err(MaglevError::NotPrime(size));
        }
        backends.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
        backends.dedup_by(|a, b| a.as_ref() == b.as_ref());
        if backends.len() > size {
            return Err(MaglevError::TooManyBackends { backends: backends.len(), size });
        }
        let mut table = vec![u32::MAX; size].into_boxed_slice();
        if backends.is_empty() {
            return Ok(Maglev { backends, table });
        }
        // Each backend's permutation: entry (offset + j * skip) mod size.
        let perms: Vec<(usize, usize)> = backends
            .iter()
            .map(|b| {
                let offset = fnv(0xcbf2_9ce4_8422_2325, b.as_ref()) as usize % size;
                let skip = fnv(0x8422_2325_cbf2_9ce4, b.as_ref()) as usize % (size - 1) + 1;
                (offset, skip)
            })
            .collect();
        let mut next = vec![0usize; backends.len()];
        let mut filled = 0;
        'fill: loop {
            for (i, &(offset, skip)) in perms.iter().enumerate() {
                let mut entry = (offset + next[i] * skip) % size;
                while table[entry] != u32::MAX {
                    next[i] += 1;
                    entry = (offset + next[i] * skip) % size;
                }
                table[entry] = i as u32;
                next[i] += 1;
                filled += 1;
                if filled == size {
                    break 'fill;
                }
            }
        }
        Ok(Maglev { backends, table })
    }

    /// The backend for a flow of this hash; `None` without backends.
    pub fn get(&self, hash: u64) -> Option<&B> {
        let entry = self.table[(hash % self.table.len() as u64) as usize];
        self.backends.get(entry as usize)
    }

    /// The backends, in key order.
    pub fn backends(&self) -> &[B] {
        &self.backends
    }

    /// How many entries each backend holds, in key order.
    pub fn shares(&self) -> Vec<usize> {
        let mut shares = vec![0; self.backends.len()];
        for &entry in self.table.iter() {
            if let Some(s) = shares.get_mut(entry as usize) {
                *s += 1;
            }
        }
        shares
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|i| format!("10.0.{}.{}:80", i / 250, i % 250 + 1)).collect()
    }

    /// Each entry's backend, by name.
    fn owners(m: &Maglev<String>) -> Vec<&str> {
        (0..DEFAULT_SIZE as u64).map(|h| m.get(h).unwrap().as_str()).collect()
    }

    #[test]
    fn every_entry_has_a_backend_and_the_shares_are_almost_equal() {
        let m = Maglev::new(names(0..10), DEFAULT_SIZE).unwrap();
        let shares = m.shares();
        assert_eq!(shares.iter().sum::<usize>(), DEFAULT_SIZE, "every entry filled");
        let (min, max) = (*shares.iter().min().unwrap(), *shares.iter().max().unwrap());
        assert!(max - min <= shares.len(), "{shares:?}");
    }

    #[test]
    fn the_table_depends_on_the_set_of_backends_not_their_order() {
        let mut reversed = names(0..7);
        reversed.reverse();
        reversed.push(reversed[0].clone());
        let (a, b) = (Maglev::new(names(0..7), 251).unwrap(), Maglev::new(reversed, 251).unwrap());
        assert_eq!(a.table, b.table);
        assert_eq!(b.backends().len(), 7, "a duplicate is kept once");
    }

    #[test]
    fn removing_or_adding_a_backend_moves_little_more_than_its_share() {
        let before = Maglev::new(names(0..10), DEFAULT_SIZE).unwrap();
        let gone = before.backends()[3].clone();
        let survivors: Vec<String> = before.backends().iter().filter(|b| **b != gone).cloned().collect();
        let after = Maglev::new(survivors, DEFAULT_SIZE).unwrap();
        let (was, now) = (owners(&before), owners(&after));
        let moved = was.iter().zip(&now).filter(|(w, n)| **w != gone.as_str() && w != n).count();
        // The paper's measure: at most a few percent of the survivors' flows move.
        assert!(moved * 100 < DEFAULT_SIZE * 3, "{moved} of {DEFAULT_SIZE} entries moved between survivors");
        assert!(!now.contains(&gone.as_str()));

        let grown = Maglev::new(names(0..11), DEFAULT_SIZE).unwrap();
        let newcomer = names(10..11).remove(0);
        let grown_owners = owners(&grown);
        let to_newcomer = grown_owners.iter().filter(|o| **o == newcomer).count();
        let moved = was.iter().zip(&grown_owners).filter(|(w, g)| **g != newcomer && w != g).count();
        assert!(to_newcomer.abs_diff(DEFAULT_SIZE / 11) < 50, "{to_newcomer}");
        assert!(moved * 100 < DEFAULT_SIZE * 3, "{moved} moved between the old backends");
    }

    #[test]
    fn bad_sizes_and_no_backends() {
        assert_eq!(Maglev::new(names(0..2), 100).unwrap_err(), MaglevError::NotPrime(100));
        assert!(matches!(Maglev::new(names(0..5), 3), Err(MaglevError::TooManyBackends { backends: 5, size: 3 })));
        let empty = Maglev::<String>::new(Vec::new(), 7).unwrap();
        assert!(empty.get(12345).is_none());
        let one = Maglev::new(names(0..1), 7).unwrap();
        assert!((0..100).all(|h| one.get(h) == Some(&one.backends()[0])));
    }
}
