//! A sliding window over message counters, as in WireGuard (RFC 6479):
//! accepts each counter once, in any order within the window, and nothing
//! older than the window.

/// Counters the window remembers behind the highest seen.
pub const WINDOW: u64 = 2048;
/// One word more than the window: the oldest counters in the window and the
/// newest may sit in partial words that must not share a slot.
const WORDS: usize = (WINDOW / 64) as usize + 1;

/// Which counters have been seen.
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    /// The highest counter accepted, plus one (0: none yet).
    next: u64,
    bitmap: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        ReplayWindow { next: 0, bitmap: [0; WORDS] }
    }
}

impl ReplayWindow {
    /// Whether `counter` would be accepted: new, and not too old. Check
    /// before the (costly) decryption, [`ReplayWindow::accept`] after it.
    pub fn is_fresh(&self, counter: u64) -> bool {
        if counter >= self.next {
            return true;
        }
        if self.next - counter > WINDOW {
            return false;
        }
        let (word, bit) = Self::slot(counter);
        self.bitmap[word] & (1 << bit) == 0
    }

    /// Records `counter`; false (and nothing recorded) if it was not fresh.
    pub fn accept(&mut self, counter: u64) -> bool {
        if !self.is_fresh(counter) {
            return false;
        }
        if counter >= self.next {
            // Clear the words the window slides over.
            let old_top = self.next.saturating_sub(1) / 64;
            let new_top = counter / 64;
            let clear = (new_top.saturating_sub(old_top)).min(WORDS as u64);
            for i in 1..=clear {
                self.bitmap[((old_top + i) % WORDS as u64) as usize] = 0;
            }
            if self.next == 0 {
                self.bitmap = [0; WORDS];
            }
            self.next = counter + 1;
        }
        let (word, bit) = Self::slot(counter);
        self.bitmap[word] |= 1 << bit;
        true
    }

    fn slot(counter: u64) -> (usize, u64) {
        (((counter / 64) % WORDS as u64) as usize, counter % 64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_counter_once() {
        let mut w = ReplayWindow::default();
        assert!(w.accept(0));
        assert!(!w.accept(0));
        assert!(w.accept(1));
        assert!(w.accept(5));
        assert!(w.accept(3), "out of order within the window");
        assert!(!w.accept(3));
        assert!(!w.accept(5));
        assert!(w.is_fresh(4) && !w.is_fresh(1));
    }

    #[test]
    fn too_old_is_refused_and_the_edge_is_exact() {
        let mut w = ReplayWindow::default();
        assert!(w.accept(10_000));
        assert!(w.accept(10_000 - WINDOW + 1), "the oldest counter still inside");
        assert!(!w.accept(10_000 - WINDOW - 1), "just outside");
        assert!(!w.accept(0));
    }

    #[test]
    fn sliding_forgets_and_clears_old_bits() {
        let mut w = ReplayWindow::default();
        for c in 0..5000u64 {
            assert!(w.accept(c), "{c}");
        }
        for c in 5000 - WINDOW + 1..5000 {
            assert!(!w.accept(c), "replay of {c}");
        }
        // A big jump: everything behind is too old or unseen.
        assert!(w.accept(1_000_000));
        assert!(w.accept(1_000_000 - 100), "unseen, inside the new window");
        assert!(!w.accept(4999), "outside the new window");
    }

    /// Against a model that remembers everything, on a pseudo-random walk.
    #[test]
    fn agrees_with_a_model() {
        let mut w = ReplayWindow::default();
        let mut seen = std::collections::BTreeSet::new();
        let mut top = 0u64;
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let c = match x % 4 {
                0 => top + x % 3000,
                _ => top.saturating_sub(x % 2500),
            };
            let expected = !seen.contains(&c) && (seen.is_empty() || c + WINDOW > top);
            assert_eq!(w.accept(c), expected, "counter {c}, highest {top}");
            if expected {
                seen.insert(c);
                top = top.max(c);
            }
        }
    }
}
