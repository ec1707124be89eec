//! Many writes with one `io_uring_enter`: the frames a batch sends to
//! local ports (TAPs, AF_PACKET sockets), written together instead of one
//! `write` each. And a port's batch of reads with one `io_uring_enter`
//! ([`Ring::read_frames`]), the read that finds the queue empty included,
//! instead of one `read` each and one more that only returns `EAGAIN`.
//!
//! Safe to use: a [`Writes`] borrows every buffer queued in it, and is
//! submitted and reaped (or, dropped, waited for) before the borrow ends,
//! so the kernel never reads memory that is gone. A frame is written from
//! its parts (`writev`); the iovecs, and a short head copied for frames
//! whose first part is about to be reused (a virtio header built on the
//! stack, GRO's headers), live in the ring. Writes are done in the order
//! they are queued: each is asked not to wait (`RWF_NOWAIT`), so it is
//! carried out while submitting or fails with `EAGAIN` as `write` on a
//! non-blocking fd would; none is parked or deferred to a kernel thread.

use std::io;
use std::marker::PhantomData;
use std::os::fd::RawFd;

use io_uring::{IoUring, opcode, types};

/// How many writes go in one submission at most (more are submitted in
/// several).
pub const ENTRIES: usize = 256;
/// How many parts one frame may have (GRO joins at most 64 segments).
pub const MAX_PARTS: usize = 66;
/// The longest head [`Writes::push`] copies.
pub const MAX_HEAD: usize = 192;
/// Room for every queued write's iovecs.
const IOVS: usize = ENTRIES * 4;

/// A ring for writes, and the room their iovecs and heads take.
pub struct Ring {
    ring: IoUring,
    iovs: Box<[libc::iovec]>,
    heads: Box<[[u8; MAX_HEAD]]>,
    /// How much of `iovs` and `heads` the queued writes use.
    used: (usize, usize),
    results: Vec<(u64, io::Result<usize>)>,
}

// SAFETY: the raw pointers in `iovs` only point at buffers borrowed by the
// `Writes` in progress (or at `heads`), never used past its end.
unsafe impl Send for Ring {}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ring")
    }
}

fn new_ring() -> io::Result<IoUring> {
    IoUring::new(ENTRIES as u32)
}

impl Ring {
    /// An error where the kernel has no io_uring or refuses it
    /// (`kernel.io_uring_disabled`, a seccomp profile).
    pub fn new() -> io::Result<Ring> {
        let empty = libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 };
        Ok(Ring {
            ring: new_ring()?,
            iovs: vec![empty; IOVS].into_boxed_slice(),
            heads: vec![[0; MAX_HEAD]; ENTRIES].into_boxed_slice(),
            used: (0, 0),
            results: Vec::with_capacity(ENTRIES),
        })
    }

    /// Starts a set of writes of buffers that live at least for `'a`.
    pub fn writes<'a>(&mut self) -> Writes<'_, 'a> {
        self.drop_forgotten();
        self.used = (0, 0);
        self.results.clear();
        Writes { ring: self, queued: 0, _frames: PhantomData }
    }

    /// Entries a forgotten `Writes` left unsubmitted must never reach the
    /// kernel (their buffers may be gone): a new ring drops them.
    fn drop_forgotten(&mut self) {
        if !self.ring.submission().is_empty() {
            match new_ring() {
                Ok(ring) => self.ring = ring,
                Err(e) => {
                    tracing::error!("io_uring: {e}; stopping");
                    std::process::abort();
                }
            }
        }
    }

    /// Reads frames from the non-blocking `fd`, one into each of `bufs`
    /// (at most [`ENTRIES`]), with one `io_uring_enter`. Each read is asked
    /// not to wait (`RWF_NOWAIT`): it is done while submitting, in order,
    /// or fails with `EAGAIN` as `read` would. The frames read are moved to
    /// the front of `bufs` in the order they were read, their lengths into
    /// `lens`; returns how many, and whether a read found the queue empty
    /// (otherwise more may wait). The first other error is returned if no
    /// frame came before it.
    pub fn read_frames(&mut self, fd: RawFd, bufs: &mut [Box<[u8]>], lens: &mut [usize]) -> io::Result<(usize, bool)> {
        self.drop_forgotten();
        let wanted = bufs.len().min(ENTRIES).min(lens.len());
        for (i, buf) in bufs[..wanted].iter_mut().enumerate() {
            let read = opcode::Read::new(types::Fd(fd), buf.as_mut_ptr(), buf.len() as u32)
                .rw_flags(libc::RWF_NOWAIT)
                .build()
                .user_data(i as u64);
            // SAFETY: each buffer is borrowed (mutably, by this call) until
            // its read is reaped below, before this returns; the queue was
            // empty and has room for ENTRIES.
            unsafe { self.ring.submission().push(&read) }.expect("room in the submission queue");
        }
        let mut results = [0i32; ENTRIES];
        let mut pending = wanted;
        while pending > 0 {
            match self.ring.submit_and_wait(pending) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // The reads cannot be taken back and write into `bufs`:
                    // returning now would let them write into freed memory.
                    tracing::error!("io_uring_enter failed: {e}; stopping");
                    std::process::abort();
                }
            }
            for cqe in self.ring.completion() {
                results[cqe.user_data() as usize] = cqe.result();
                pending -= 1;
            }
        }
        let (mut n, mut empty, mut error) = (0, false, None);
        for (i, &result) in results[..wanted].iter().enumerate() {
            match result {
                len if len > 0 => {
                    bufs.swap(n, i);
                    lens[n] = len as usize;
                    n += 1;
                }
                0 => {}
                e if -e == libc::EAGAIN => empty = true,
                e if -e == libc::EINTR => {}
                e => {
                    error.get_or_insert(io::Error::from_raw_os_error(-e));
                }
            }
        }
        match error {
            Some(e) if n == 0 => Err(e),
            _ => Ok((n, empty || error.is_some())),
        }
    }
}

/// Writes queued in a ring, not yet submitted.
pub struct Writes<'r, 'a> {
    ring: &'r mut Ring,
    queued: usize,
    _frames: PhantomData<&'a [u8]>,
}

impl std::fmt::Debug for Writes<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writes").field("queued", &self.queued).finish()
    }
}

impl<'a> Writes<'_, 'a> {
    /// Queues writing to `fd` one frame: `head` (copied now; at most
    /// [`MAX_HEAD`] bytes) followed by `parts` (at most [`MAX_PARTS`],
    /// borrowed until the writes are done), reported as `tag`. When the
    /// ring is full, what is queued is submitted first: the order holds.
    ///
    /// # Panics
    /// With a longer head or more parts.
    pub fn push(&mut self, fd: RawFd, head: &[u8], parts: &[&'a [u8]], tag: u64) {
        assert!(head.len() <= MAX_HEAD && parts.len() <= MAX_PARTS, "a frame in too many or too large parts");
        let count = usize::from(!head.is_empty()) + parts.len();
        if self.queued == ENTRIES || self.ring.used.0 + count > IOVS {
            self.reap();
            self.ring.used = (0, 0);
        }
        let Ring { ring, iovs, heads, used, .. } = &mut *self.ring;
        let first = used.0;
        let mut at = first;
        if !head.is_empty() {
            let copy = &mut heads[used.1];
            copy[..head.len()].copy_from_slice(head);
            iovs[at] = libc::iovec { iov_base: copy.as_mut_ptr().cast(), iov_len: head.len() };
            at += 1;
            used.1 += 1;
        }
        for part in parts {
            iovs[at] = libc::iovec { iov_base: part.as_ptr() as *mut libc::c_void, iov_len: part.len() };
            at += 1;
        }
        used.0 = at;
        // RWF_NOWAIT: a write that cannot be done at once (a full socket)
        // fails with EAGAIN, as `write` on the non-blocking fd would, rather
        // than wait in the kernel and hold the whole batch up.
        let write = opcode::Writev::new(types::Fd(fd), iovs[first..].as_ptr(), count as u32)
            .rw_flags(libc::RWF_NOWAIT)
            .build()
            .user_data(tag);
        // SAFETY: the iovecs (in the ring's own room, untouched until this
        // write is reaped) point at `heads` and at buffers borrowed for
        // 'a, which outlives this `Writes`; every queued write is submitted
        // and reaped before it ends (in `submit`, or in `drop`). The queue
        // has room: it holds at most ENTRIES, and was emptied when full.
        unsafe { ring.submission().push(&write) }.expect("room in the submission queue");
        self.queued += 1;
    }

    /// Submits what is queued so far and waits for it (its results are
    /// reported by `submit` with the rest): what is written after, some
    /// other way, comes after it.
    pub fn flush(&mut self) {
        self.reap();
        self.ring.used = (0, 0);
    }

    /// Submits what is queued and waits for all of it (writes on a
    /// non-blocking fd never wait: a full queue is `EAGAIN`); then
    /// `done(tag, result)` for every write of the set.
    pub fn submit(mut self, mut done: impl FnMut(u64, io::Result<usize>)) {
        self.reap();
        for (tag, result) in self.ring.results.drain(..) {
            done(tag, result);
        }
    }

    fn reap(&mut self) {
        while self.queued > 0 {
            match self.ring.ring.submit_and_wait(self.queued) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Queued entries cannot be taken back, and must never be
                    // submitted once their buffers are gone: stop.
                    tracing::error!("io_uring_enter failed: {e}; stopping");
                    std::process::abort();
                }
            }
            for cqe in self.ring.ring.completion() {
                self.queued -= 1;
                let result = match cqe.result() {
                    n if n < 0 => Err(io::Error::from_raw_os_error(-n)),
                    n => Ok(n as usize),
                };
                self.ring.results.push((cqe.user_data(), result));
            }
        }
    }
}

impl Drop for Writes<'_, '_> {
    fn drop(&mut self) {
        self.reap();
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

    use super::*;

    /// A connected pair of stream sockets.
    fn pair() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: socketpair writes two fds into the array.
        let rc =
            unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0, fds.as_mut_ptr()) };
        assert_eq!(rc, 0);
        // SAFETY: both fds were just opened and are owned by nobody else.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    /// Every byte written so far, in order.
    fn received(fd: &OwnedFd) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = crate::io::sys::read(fd.as_raw_fd(), &mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
        got
    }

    #[test]
    fn queued_writes_happen_in_order_and_report_by_tag() {
        let mut ring = Ring::new().expect("io_uring (this machine has it)");
        let (a, b) = pair();
        let frames = [b"one".to_vec(), b"two!".to_vec()];
        let mut writes = ring.writes();
        writes.push(a.as_raw_fd(), b"", &[&frames[0]], 7);
        {
            // A head built on the stack is copied: it may go before the write.
            let head = *b"he";
            writes.push(a.as_raw_fd(), &head, &[&frames[1][..2], &frames[1][2..]], 8);
        }
        writes.push(-1, b"", &[&frames[1]], 9);
        let mut results = Vec::new();
        writes.submit(|tag, r| results.push((tag, r.map_err(|e| e.raw_os_error()))));
        results.sort_by_key(|(tag, _)| *tag);
        assert_eq!(results, vec![(7, Ok(3)), (8, Ok(6)), (9, Err(Some(libc::EBADF)))], "a bad fd fails alone");
        assert_eq!(received(&b), b"onehetwo!", "in order, each from its parts");
    }

    #[test]
    fn a_dropped_set_of_writes_is_still_carried_out_before_its_frames_go() {
        let mut ring = Ring::new().expect("io_uring (this machine has it)");
        let (a, b) = pair();
        {
            let frame = b"dropped".to_vec();
            let mut writes = ring.writes();
            writes.push(a.as_raw_fd(), b"", &[&frame], 1);
        }
        assert_eq!(received(&b), b"dropped");
        // A forgotten set never reaches the kernel.
        let frame = b"forgotten".to_vec();
        let mut writes = ring.writes();
        writes.push(a.as_raw_fd(), b"", &[&frame], 2);
        std::mem::forget(writes);
        drop(frame);
        ring.writes().submit(|_, _| panic!("nothing was queued in this set"));
        assert!(received(&b).is_empty());
    }

    /// A write that cannot be done now (the socket is full) fails with
    /// EAGAIN, as on the non-blocking fd, and never waits in the kernel (a
    /// wait would hold the worker until the reader reads).
    #[test]
    fn a_write_to_a_full_socket_fails_at_once() {
        let mut ring = Ring::new().expect("io_uring (this machine has it)");
        let (a, b) = pair();
        let frame = [7u8; 1024];
        let mut writes = ring.writes();
        for tag in 0..1000 {
            writes.push(a.as_raw_fd(), b"", &[&frame], tag);
        }
        let (mut written, mut refused) = (0, 0);
        writes.submit(|_, r| match r {
            Ok(_) => written += 1,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => refused += 1,
            Err(e) => panic!("{e}"),
        });
        assert!(written > 0 && refused > 0, "{written} written, {refused} refused");
        assert_eq!(received(&b).len(), written * frame.len());
    }

    /// More writes than a submission holds: submitted in several, in order,
    /// every one reported.
    #[test]
    fn a_full_ring_is_submitted_and_the_order_holds() {
        let mut ring = Ring::new().expect("io_uring (this machine has it)");
        let (a, b) = pair();
        // Room for 300 small writes (each an skb of about 1 KB).
        let room: libc::c_int = 4 << 20;
        // SAFETY: SO_SNDBUFFORCE reads an int.
        unsafe { crate::io::sys::setsockopt(a.as_fd(), libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, &room) }
            .expect("root may size the buffer");
        let frames: Vec<[u8; 2]> = (0..ENTRIES as u16 + 44).map(u16::to_be_bytes).collect();
        let mut writes = ring.writes();
        for (tag, frame) in frames.iter().enumerate() {
            writes.push(a.as_raw_fd(), b"", &[frame], tag as u64);
        }
        let mut tags = Vec::new();
        writes.submit(|tag, r| {
            assert_eq!(r.unwrap(), 2);
            tags.push(tag);
        });
        tags.sort();
        assert_eq!(tags, (0..frames.len() as u64).collect::<Vec<_>>());
        assert_eq!(received(&b), frames.concat());
    }

    /// A connected pair of datagram sockets (each write one frame).
    fn datagram_pair() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: socketpair writes two fds into the array.
        let rc =
            unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_NONBLOCK, 0, fds.as_mut_ptr()) };
        assert_eq!(rc, 0);
        // SAFETY: both fds were just opened and are owned by nobody else.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    #[test]
    fn a_batch_of_reads_takes_what_waits_in_order_and_says_when_it_found_the_end() {
        let mut ring = Ring::new().expect("io_uring (this machine has it)");
        let (a, b) = datagram_pair();
        for frame in [&b"one"[..], b"two!", b"three"] {
            crate::io::sys::write(a.as_raw_fd(), frame).unwrap();
        }
        let mut bufs: Vec<Box<[u8]>> = (0..5).map(|_| vec![0u8; 64].into_boxed_slice()).collect();
        let mut lens = [0usize; 5];
        // Fewer reads than frames: all succeed, the end is not known yet.
        assert_eq!(ring.read_frames(b.as_raw_fd(), &mut bufs[..2], &mut lens[..2]).unwrap(), (2, false));
        assert_eq!((&bufs[0][..lens[0]], &bufs[1][..lens[1]]), (&b"one"[..], &b"two!"[..]));
        // More: the rest, and the read that found nothing.
        assert_eq!(ring.read_frames(b.as_raw_fd(), &mut bufs, &mut lens).unwrap(), (1, true));
        assert_eq!(&bufs[0][..lens[0]], b"three");
        assert_eq!(ring.read_frames(b.as_raw_fd(), &mut bufs, &mut lens).unwrap(), (0, true));
        // A broken fd is an error, not an empty queue.
        let e = ring.read_frames(-1, &mut bufs[..1], &mut lens[..1]).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EBADF));
        // And the ring still writes.
        let mut writes = ring.writes();
        writes.push(a.as_raw_fd(), b"", &[b"after"], 1);
        writes.submit(|_, r| assert_eq!(r.unwrap(), 5));
        assert_eq!(crate::io::sys::read(b.as_raw_fd(), &mut bufs[0]).unwrap(), 5);
    }
}
