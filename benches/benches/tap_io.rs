//! The io_uring trial: moving a batch of small frames through a TAP with
//! one syscall per frame (what the data plane does: `read` until `EAGAIN`,
//! one `write` per frame) against io_uring (the batch's reads or writes
//! submitted and reaped with one `io_uring_enter`).
//!
//! Runs in a network namespace of its own (`unshare`), with one TAP whose
//! kernel side has an address and a permanent neighbour, nothing else:
//! - `write`: 32 frames written to the TAP, each dropped by the kernel
//!   right after it took it (addressed to another host's MAC);
//! - `read`: 32 UDP datagrams sent by a socket in the namespace to the
//!   neighbour through the TAP (the same sends for both), then read from
//!   it.
//!
//! - `read_empty`: one `read` of the empty TAP (`EAGAIN`), as ends every
//!   batch of the read loop.
//!
//! Needs root and `/dev/net/tun`; without them it says so and measures
//! nothing.

use std::hint::black_box;
use std::net::UdpSocket;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::process::Command;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use io_uring::{IoUring, opcode, types};
use switchd_config::IfName;
use switchd_wire::vnet;

const BATCH: usize = 32;
const TAP: &str = "bench0";
const LOCAL: &str = "198.18.99.1";
const NEIGHBOR: &str = "198.18.99.2";

/// A private namespace with the TAP up, addressed, and a neighbour behind
/// it; `None` (and why) where that cannot be made.
fn setup() -> Result<OwnedFd, String> {
    // SAFETY: unshare only changes this (so far single-threaded) process's
    // network namespace; the namespace goes when the process does.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(format!("unshare(CLONE_NEWNET): {} (needs root)", std::io::Error::last_os_error()));
    }
    // No IPv6 in the namespace: its router solicitations and MLD reports
    // would land in the TAP's queue at random, between a batch's frames.
    for conf in ["all", "default"] {
        let path = format!("/proc/sys/net/ipv6/conf/{conf}/disable_ipv6");
        std::fs::write(&path, "1").map_err(|e| format!("{path}: {e}"))?;
    }
    let name = IfName::new(TAP).expect("a valid name");
    let (mut fds, _) = switchd::io::tap::attach(&name, 1).map_err(|e| e.to_string())?;
    let fd = fds.remove(0);
    // Not persistent: it goes with the fd.
    switchd::io::tap::set_persist(&fd, false).map_err(|e| e.to_string())?;
    for args in [
        vec!["link", "set", "lo", "up"],
        vec!["link", "set", TAP, "up"],
        vec!["addr", "add", &format!("{LOCAL}/24"), "dev", TAP],
        vec!["neigh", "add", NEIGHBOR, "lladdr", "02:00:00:00:00:02", "dev", TAP, "nud", "permanent"],
    ] {
        let status = Command::new("ip").args(&args).status().map_err(|e| format!("ip: {e}"))?;
        if !status.success() {
            return Err(format!("ip {}: {status}", args.join(" ")));
        }
    }
    Ok(fd)
}

/// Reads what the TAP has, as the data plane does: until `EAGAIN`.
fn read_loop(fd: RawFd, bufs: &mut [Vec<u8>]) -> usize {
    let mut n = 0;
    for buf in bufs.iter_mut() {
        match switchd::io::sys::read(fd, buf) {
            Ok(_) => n += 1,
            Err(_) => return n,
        }
    }
    // The batch was full: the data plane reads once more next time round.
    n
}

fn uring_reads(ring: &mut IoUring, bufs: &mut [Vec<u8>]) -> usize {
    for (i, buf) in bufs.iter_mut().enumerate() {
        let read = opcode::Read::new(types::Fixed(0), buf.as_mut_ptr(), buf.len() as u32).build().user_data(i as u64);
        // SAFETY: the buffer outlives the operation: it is reaped below
        // before `bufs` is touched again.
        unsafe { ring.submission().push(&read).expect("room for a batch") };
    }
    // The TAP is non-blocking: a read that finds nothing completes with
    // EAGAIN rather than waiting, so this never hangs.
    ring.submit_and_wait(bufs.len()).expect("io_uring_enter");
    ring.completion().filter(|c| c.result() > 0).count()
}

fn uring_writes(ring: &mut IoUring, frame: &[u8]) -> usize {
    for i in 0..BATCH {
        let write = opcode::Write::new(types::Fixed(0), frame.as_ptr(), frame.len() as u32).build().user_data(i as u64);
        // SAFETY: `frame` outlives the operation, reaped below.
        unsafe { ring.submission().push(&write).expect("room for a batch") };
    }
    ring.submit_and_wait(BATCH).expect("io_uring_enter");
    ring.completion().filter(|c| c.result() > 0).count()
}

/// A 64-byte UDP frame behind a plain virtio header, to a MAC that is not
/// the TAP's: the kernel takes it and drops it at once.
fn frame_to_elsewhere() -> Vec<u8> {
    let mut eth = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 0x99])
        .ipv4([198, 18, 99, 2], [198, 18, 99, 3], 64)
        .udp(4000, 9)
        .write(&mut eth, &[0u8; 22])
        .expect("a frame");
    [&vnet::Repr::PLAIN_BYTES[..], &eth].concat()
}

fn tap_io(c: &mut Criterion, tap: &OwnedFd) {
    let fd = tap.as_raw_fd();
    let mut ring = IoUring::new(2 * BATCH as u32).expect("io_uring");
    ring.submitter().register_files(&[fd]).expect("register the TAP");
    let mut bufs = vec![vec![0u8; 2048]; BATCH];
    let frame = frame_to_elsewhere();
    let sender = UdpSocket::bind((LOCAL, 0)).expect("a socket in the namespace");
    let send_batch = || {
        for _ in 0..BATCH {
            sender.send_to(&[0u8; 22], (NEIGHBOR, 9)).expect("to the neighbour");
        }
    };

    let mut group = c.benchmark_group("tap_io");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("write_loop", |b| {
        b.iter(|| {
            let n = (0..BATCH).filter(|_| switchd::io::sys::write(fd, black_box(&frame)).is_ok()).count();
            assert_eq!(n, BATCH, "every write taken");
        })
    });
    group.bench_function("write_io_uring", |b| {
        b.iter(|| assert_eq!(uring_writes(&mut ring, black_box(&frame)), BATCH, "every write taken"))
    });
    group.bench_function("read_loop", |b| {
        b.iter(|| {
            send_batch();
            assert_eq!(read_loop(fd, &mut bufs), BATCH, "every frame read");
            // The read that finds the queue empty, as every batch has it.
            assert!(switchd::io::sys::read(fd, &mut bufs[0]).is_err(), "nothing more to read");
        })
    });
    group.bench_function("read_io_uring", |b| {
        b.iter(|| {
            send_batch();
            assert_eq!(uring_reads(&mut ring, &mut bufs), BATCH, "every frame read");
        })
    });
    group.finish();

    // What the read that ends every batch costs: one on an empty queue.
    let mut group = c.benchmark_group("tap_io");
    group.throughput(Throughput::Elements(1));
    group.bench_function("read_empty", |b| {
        b.iter(|| assert!(switchd::io::sys::read(fd, black_box(&mut bufs[0])).is_err(), "nothing to read"))
    });
    group.finish();
}

fn main() {
    let tap = match setup() {
        Ok(fd) => fd,
        Err(why) => {
            eprintln!("tap_io: not measured: {why}");
            return;
        }
    };
    let mut c = Criterion::default().warm_up_time(Duration::from_secs(1)).configure_from_args();
    tap_io(&mut c, &tap);
    c.final_summary();
}
