//! Adaptive busy polling: after a batch, a worker keeps asking its epoll for
//! more (without blocking) for a short window before it goes to sleep, so a
//! request/response flow finds the worker awake when the answer comes back
//! and never pays a wake-up (the kernel's `busy_poll` and NAPI idea).
//!
//! The window adapts to the traffic, so that it only burns CPU where it
//! pays: it doubles (up to `busy_poll_us`) each time traffic arrives while
//! polling, halves each time a window passes empty, and below a floor it
//! stops polling at all. Asleep, a wake-up that came sooner after the last
//! batch than a full window would have lasted shows that polling would have
//! caught it: the window is restored. An idle worker therefore sleeps in
//! `epoll_wait` and costs nothing; with `busy_poll_us = 0` it never polls.
//!
//! Sans-IO: the worker passes the clock in and asks how long it may block.

use std::time::{Duration, Instant};

/// A window shorter than this is not worth a poll: the worker sleeps.
const MIN_WINDOW: Duration = Duration::from_micros(4);

/// What the worker does next when it has no batch in hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Ask the epoll without blocking, and yield the CPU between asks.
    Poll,
    /// Block until an fd is ready (or the worker's own timer).
    Sleep,
}

#[derive(Debug)]
pub struct BusyPoll {
    max: Duration,
    window: Duration,
    /// While polling: when the current window ends.
    until: Option<Instant>,
    /// When the last batch was handled.
    last_batch: Option<Instant>,
    /// Batches that arrived while polling, and windows that ended empty.
    pub hits: u64,
    pub misses: u64,
}

impl BusyPoll {
    /// Polls for at most `max` after a batch; `Duration::ZERO` never polls.
    pub fn new(max: Duration) -> Self {
        BusyPoll { max, window: max, until: None, last_batch: None, misses: 0, hits: 0 }
    }

    /// The current window.
    #[cfg(test)]
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Records that a batch was handled at `now`, and opens a window.
    pub fn batch(&mut self, now: Instant) {
        if self.max.is_zero() {
            return;
        }
        if self.until.is_some() {
            // Traffic came while polling: the poll paid; poll longer.
            self.hits += 1;
            self.window = (self.window * 2).clamp(MIN_WINDOW, self.max);
        } else if self.last_batch.is_some_and(|last| now.saturating_duration_since(last) < self.max) {
            // Woken sooner than a full window would have lasted.
            self.window = self.max;
        }
        self.last_batch = Some(now);
        self.until = (self.window >= MIN_WINDOW).then(|| now + self.window);
    }

    /// Whether the worker polls or sleeps next, at `now`.
    pub fn wait(&mut self, now: Instant) -> Wait {
        match self.until {
            Some(until) if now < until => Wait::Poll,
            Some(_) => {
                // The window passed empty: poll less next time.
                self.misses += 1;
                self.until = None;
                self.window /= 2;
                if self.window < MIN_WINDOW {
                    self.window = Duration::ZERO;
                }
                Wait::Sleep
            }
            None => Wait::Sleep,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Duration = Duration::from_micros(1);

    #[test]
    fn zero_never_polls() {
        let mut p = BusyPoll::new(Duration::ZERO);
        let t = Instant::now();
        for i in 0..10 {
            p.batch(t + US * i);
            assert_eq!(p.wait(t + US * i), Wait::Sleep);
        }
    }

    #[test]
    fn polls_for_the_window_after_a_batch_then_sleeps() {
        let mut p = BusyPoll::new(US * 50);
        let t = Instant::now();
        p.batch(t);
        assert_eq!(p.wait(t + US * 10), Wait::Poll);
        assert_eq!(p.wait(t + US * 49), Wait::Poll);
        assert_eq!(p.wait(t + US * 50), Wait::Sleep);
        assert_eq!(p.misses, 1);
        assert_eq!(p.window(), US * 25, "an empty window halves the next");
    }

    #[test]
    fn request_response_keeps_a_window_and_idle_shrinks_it_to_nothing() {
        let mut p = BusyPoll::new(US * 50);
        let mut t = Instant::now();
        // A ping every 5 ms, answered 15 us later: the answer is always
        // caught, the gap to the next ping always misses.
        for _ in 0..20 {
            p.batch(t);
            assert_eq!(p.wait(t + US * 15), Wait::Poll, "the answer finds the worker polling");
            p.batch(t + US * 15);
            while p.wait(t + US * 100) == Wait::Poll {}
            t += Duration::from_millis(5);
        }
        assert!(p.window() >= US * 16, "window {:?}", p.window());
        // Traffic that always comes just after the window: the window
        // shrinks until the worker stops polling.
        for _ in 0..20 {
            p.batch(t);
            while p.wait(t + US * 60) == Wait::Poll {}
            t += US * 60;
        }
        assert_eq!(p.window(), Duration::ZERO);
        p.batch(t);
        assert_eq!(p.wait(t), Wait::Sleep, "no window: the worker sleeps at once");
    }

    #[test]
    fn a_quick_wake_restores_the_window() {
        let mut p = BusyPoll::new(US * 50);
        let t = Instant::now();
        // A batch a second: every window passes empty.
        for i in 0..10 {
            p.batch(t + Duration::from_secs(i));
            while p.wait(t + Duration::from_secs(i) + US * 60) == Wait::Poll {}
        }
        assert_eq!(p.window(), Duration::ZERO);
        // Traffic woke the worker 20 us after its last batch: a window of
        // 50 us would have caught it.
        p.batch(t + Duration::from_secs(10));
        p.batch(t + Duration::from_secs(10) + US * 20);
        assert_eq!(p.window(), US * 50);
        assert_eq!(p.wait(t + Duration::from_secs(10) + US * 30), Wait::Poll);
    }
}
