//! Many writes with one `io_uring_enter`: the frames a batch sends to
//! local ports (TAPs), written together instead of one `write` each.
//!
//! Safe to use: a [`Writes`] borrows every frame queued in it, and is
//! submitted and reaped (or, dropped, waited for) before the borrow ends,
//! so the kernel never reads a buffer that is gone.

use std::io;
use std::marker::PhantomData;
use std::os::fd::RawFd;

use io_uring::{IoUring, opcode, types};

/// How many writes one [`Writes`] holds at most.
pub const ENTRIES: usize = 256;

/// A ring for writes.
pub struct Ring {
    ring: IoUring,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ring")
    }
}

impl Ring {
    /// `None` where the kernel has no io_uring or refuses it
    /// (`kernel.io_uring_disabled`, seccomp).
    pub fn new() -> io::Result<Ring> {
        Ok(Ring { ring: IoUring::new(ENTRIES as u32)? })
    }

    /// Starts a set of writes of frames that live at least for `'a`.
    pub fn writes<'a>(&mut self) -> Writes<'_, 'a> {
        // Entries a forgotten `Writes` left unsubmitted must never reach
        // the kernel (their frames may be gone): a new ring drops them.
        if !self.ring.submission().is_empty() {
            match IoUring::new(ENTRIES as u32) {
                Ok(ring) => self.ring = ring,
                Err(e) => {
                    tracing::error!("io_uring: {e}; stopping");
                    std::process::abort();
                }
            }
        }
        Writes { ring: &mut self.ring, queued: 0, _frames: PhantomData }
    }
}

/// Writes queued in a ring, not yet submitted.
pub struct Writes<'r, 'a> {
    ring: &'r mut IoUring,
    queued: usize,
    _frames: PhantomData<&'a [u8]>,
}

impl std::fmt::Debug for Writes<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writes").field("queued", &self.queued).finish()
    }
}

impl<'a> Writes<'_, 'a> {
    /// Queues writing `frame` to `fd`, reported as `tag`; false when full
    /// (write it some other way).
    pub fn push(&mut self, fd: RawFd, frame: &'a [u8], tag: u64) -> bool {
        if self.queued == ENTRIES {
            return false;
        }
        let write = opcode::Write::new(types::Fd(fd), frame.as_ptr(), frame.len() as u32).build().user_data(tag);
        // SAFETY: `frame` is borrowed for 'a, which outlives this `Writes`,
        // and every queued write is submitted and reaped before it ends
        // (in `submit`, or in `drop`).
        if unsafe { self.ring.submission().push(&write) }.is_err() {
            return false;
        }
        self.queued += 1;
        true
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Submits what is queued and waits for all of it (writes to a TAP
    /// never block: a full queue is `EAGAIN`); `done(tag, result)` for each.
    pub fn submit(mut self, mut done: impl FnMut(u64, io::Result<usize>)) {
        self.reap(&mut done);
    }

    fn reap(&mut self, done: &mut impl FnMut(u64, io::Result<usize>)) {
        while self.queued > 0 {
            match self.ring.submit_and_wait(self.queued) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Nothing was submitted: drop the queued entries' results
                    // as failures and the entries themselves with the ring's
                    // next submission... which there must never be. Abort
                    // rather than let the kernel read freed frames later.
                    tracing::error!("io_uring_enter failed: {e}; stopping");
                    std::process::abort();
                }
            }
            for cqe in self.ring.completion() {
                self.queued -= 1;
                let result = match cqe.result() {
                    n if n < 0 => Err(io::Error::from_raw_os_error(-n)),
                    n => Ok(n as usize),
                };
                done(cqe.user_data(), result);
            }
        }
    }
}

impl Drop for Writes<'_, '_> {
    fn drop(&mut self) {
        self.reap(&mut |_, _| {});
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    use super::*;

    /// A connected pair of datagram sockets: each write is one message.
    fn pair() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: socketpair writes two fds into the array.
        let rc =
            unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_NONBLOCK, 0, fds.as_mut_ptr()) };
        assert_eq!(rc, 0);
        // SAFETY: both fds were just opened and are owned by nobody else.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    fn received(fd: &OwnedFd) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while let Ok(n) = crate::io::sys::read(fd.as_raw_fd(), &mut buf) {
            got.push(buf[..n].to_vec());
        }
        got
    }

    #[test]
    fn queued_writes_happen_in_order_and_report_by_tag() {
        let mut ring = Ring::new().expect("io_uring (this machine has it)");
        let (a, b) = pair();
        let frames = [b"one".to_vec(), b"two!".to_vec()];
        let mut writes = ring.writes();
        assert!(writes.is_empty());
        assert!(writes.push(a.as_raw_fd(), &frames[0], 7));
        assert!(writes.push(a.as_raw_fd(), &frames[1], 8));
        assert!(writes.push(-1, &frames[1], 9), "a bad fd is queued, and fails");
        let mut results = Vec::new();
        writes.submit(|tag, r| results.push((tag, r.map_err(|e| e.raw_os_error()))));
        results.sort_by_key(|(tag, _)| *tag);
        assert_eq!(results, vec![(7, Ok(3)), (8, Ok(4)), (9, Err(Some(libc::EBADF)))]);
        assert_eq!(received(&b), frames.to_vec());
    }

    #[test]
    fn a_dropped_set_of_writes_is_still_carried_out_before_its_frames_go() {
        let mut ring = Ring::new().expect("io_uring (this machine has it)");
        let (a, b) = pair();
        {
            let frame = b"dropped".to_vec();
            let mut writes = ring.writes();
            assert!(writes.push(a.as_raw_fd(), &frame, 1));
        }
        assert_eq!(received(&b), vec![b"dropped".to_vec()]);
        // A forgotten set never reaches the kernel.
        let frame = b"forgotten".to_vec();
        let mut writes = ring.writes();
        assert!(writes.push(a.as_raw_fd(), &frame, 2));
        std::mem::forget(writes);
        drop(frame);
        ring.writes().submit(|_, _| panic!("nothing was queued in this set"));
        assert!(received(&b).is_empty());
    }

    #[test]
    fn a_full_set_refuses_more() {
        let mut ring = Ring::new().expect("io_uring (this machine has it)");
        let (a, _b) = pair();
        let frame = [0u8; 1];
        let mut writes = ring.writes();
        for tag in 0..ENTRIES as u64 {
            assert!(writes.push(a.as_raw_fd(), &frame, tag));
        }
        assert!(!writes.push(a.as_raw_fd(), &frame, 0), "full");
        let mut n = 0;
        writes.submit(|_, _| n += 1);
        assert_eq!(n, ENTRIES);
    }
}
