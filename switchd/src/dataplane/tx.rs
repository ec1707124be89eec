//! The send queue of a worker: encapsulated datagrams gathered during a
//! batch, then sent with one `sendmmsg` per source socket.
//!
//! A datagram's bytes are in the worker's arena (whole: small frames,
//! sealed ones), or its headers are there and its payload is still in the
//! frame the worker read from the port (segments of a large plain TCP/UDP
//! frame, [`tunnel::encapsulate_gathered`]): the kernel then gathers them
//! from both, and no payload byte is copied in userspace.
//!
//! [`tunnel::encapsulate_gathered`]: switchd_overlay::tunnel::encapsulate_gathered

use std::net::SocketAddr;
use std::ops::Range;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use switchd_overlay::tunnel::Datagrams;
use switchd_wire::vnet::HEADER_LEN as VNET_HDR_LEN;

use super::capture::{self, VtepTap};
use super::{MAX_SEND, VtepIo};
use crate::io::udp;

/// Encapsulated datagrams waiting to be sent, and the buffers for sending.
#[derive(Debug, Default)]
pub(super) struct TxQueue {
    /// The datagrams (or their headers) of a batch, one after another.
    pub arena: Vec<u8>,
    /// Where gathered datagrams' payloads are in their frames.
    pub payloads: Vec<Range<usize>>,
    msgs: Vec<Queued>,
    batch: udp::SendBatch,
}

/// Where a frame's datagrams are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Body {
    /// Whole, one after another from `start` in the arena.
    Arena { start: usize },
    /// Headers of `head_len` bytes one after another from `heads` in the
    /// arena, each followed on the wire by its payload: the range at
    /// `payloads` (and on) in [`TxQueue::payloads`] of the Ethernet frame
    /// in the batch's buffer `frame`.
    Gathered { frame: usize, heads: usize, head_len: usize, payloads: usize },
}

/// One `sendmmsg` entry waiting: `len` bytes on the wire, from `body`.
#[derive(Debug)]
struct Queued {
    /// Index into the send socket pool.
    socket: usize,
    vtep: Arc<VtepIo>,
    body: Body,
    len: usize,
    /// The segment size when the entry holds several datagrams.
    segment: Option<u16>,
    datagrams: usize,
}

/// The arena a worker keeps between batches: a full batch of 64 KiB
/// segments cut to a 1500-byte underlay needs about 2.3 MB; a batch that
/// needed more (tiny segments) gives the rest back.
const ARENA_KEEP: usize = 4 << 20;

impl TxQueue {
    pub fn clear(&mut self) {
        self.arena.clear();
        self.arena.shrink_to(ARENA_KEEP);
        self.payloads.clear();
        self.msgs.clear();
    }

    /// Queues the datagrams of `body` for `vtep`, in as few messages as the
    /// kernel's GSO limits allow (64 segments, one IP packet in all).
    pub fn queue(&mut self, socket: usize, vtep: Arc<VtepIo>, body: Body, d: Datagrams) {
        let Some(stride) = d.stride else {
            self.msgs.push(Queued { socket, vtep, body, len: d.len, segment: None, datagrams: 1 });
            return;
        };
        let per_msg = (MAX_SEND / stride).clamp(1, udp::MAX_SEGMENTS);
        let mut first = 0;
        while first * stride < d.len {
            let len = (per_msg * stride).min(d.len - first * stride);
            let body = match body {
                Body::Arena { start } => Body::Arena { start: start + first * stride },
                Body::Gathered { frame, heads, head_len, payloads } => {
                    Body::Gathered { frame, heads: heads + first * head_len, head_len, payloads: payloads + first }
                }
            };
            let datagrams = len.div_ceil(stride);
            let segment = (datagrams > 1).then_some(stride as u16);
            self.msgs.push(Queued { socket, vtep: vtep.clone(), body, len, segment, datagrams });
            first += per_msg;
        }
    }

    /// Sends everything queued: one `sendmmsg` per source socket. `frames`
    /// are the batch's buffers (virtio header and Ethernet frame) that
    /// gathered datagrams take their payloads from. `taps`: the underlay
    /// captures running, with the pool's local addresses.
    pub fn flush(&mut self, pool: &[OwnedFd], frames: &[Box<[u8]>], taps: Option<(&[VtepTap], &[Option<SocketAddr>])>) {
        if self.msgs.is_empty() {
            return;
        }
        if let Some((taps, locals)) = taps {
            self.tap(taps, locals, frames);
        }
        // Stable: datagrams of one flow keep their order.
        self.msgs.sort_by_key(|m| m.socket);
        let mut first = 0;
        while first < self.msgs.len() {
            let socket = self.msgs[first].socket;
            let end = first + self.msgs[first..].iter().take_while(|m| m.socket == socket).count();
            let group = &self.msgs[first..end];
            let (arena, ranges) = (&self.arena[..], &self.payloads[..]);
            let outgoing = group.iter().map(|m| udp::Outgoing {
                to: &m.vtep.addr,
                parts: Parts::of(m, arena, ranges, frames),
                segment: m.segment,
            });
            self.batch.send(pool[socket].as_raw_fd(), outgoing, |i, result| {
                let m = &group[i];
                m.vtep.tx.record_many(result, m.datagrams as u64, m.len, || m.vtep.name());
            });
            first = end;
        }
    }
}

impl TxQueue {
    /// Copies each queued datagram into the captures of its VTEP (but a
    /// sealed one into those that show datagrams opened: they took its
    /// frame before it was sealed).
    fn tap(&self, taps: &[VtepTap], locals: &[Option<SocketAddr>], frames: &[Box<[u8]>]) {
        for m in &self.msgs {
            let (Some(to), Some(&Some(local))) = (m.vtep.addr.as_socket(), locals.get(m.socket)) else { continue };
            if capture::of_vtep(taps, to.ip()).next().is_none() {
                continue;
            }
            match Parts::of(m, &self.arena, &self.payloads, frames) {
                Parts::Whole(bytes) => {
                    let stride = m.segment.map_or(m.len, usize::from).max(1);
                    for datagram in bytes.unwrap_or_default().chunks(stride) {
                        record(taps, local, to, &[datagram]);
                    }
                }
                // Each datagram: its header, then its payload.
                mut gathered => {
                    while let (Some(head), Some(payload)) = (gathered.next(), gathered.next()) {
                        record(taps, local, to, &[head, payload]);
                    }
                }
            }
        }
    }
}

/// Records one datagram (in `parts`) from `local` to `to` in the taps of `to`.
fn record(taps: &[VtepTap], local: SocketAddr, to: SocketAddr, parts: &[&[u8]]) {
    let sealed = parts.first().and_then(|p| p.first()) == Some(&switchd_wire::sealed::FLAGS);
    let len = parts.iter().map(|p| p.len()).sum();
    let Some(head) = capture::udp_head(local, to, len) else { return };
    let all: Vec<&[u8]> = std::iter::once(&head[..]).chain(parts.iter().copied()).collect();
    for t in capture::of_vtep(taps, to.ip()).filter(|t| !(t.decrypt && sealed)) {
        t.tap.record(&all, 0);
    }
}

/// The parts of one queued message, in wire order: its bytes in the arena,
/// or each datagram's header in the arena followed by its payload in the
/// frame.
#[derive(Debug, Clone)]
enum Parts<'b> {
    Whole(Option<&'b [u8]>),
    Gathered {
        heads: std::slice::ChunksExact<'b, u8>,
        payloads: std::slice::Iter<'b, Range<usize>>,
        eth: &'b [u8],
        /// The payload that follows the header just given.
        next: Option<&'b [u8]>,
    },
}

impl<'b> Parts<'b> {
    fn of(m: &Queued, arena: &'b [u8], ranges: &'b [Range<usize>], frames: &'b [Box<[u8]>]) -> Self {
        match m.body {
            Body::Arena { start } => Parts::Whole(Some(&arena[start..start + m.len])),
            Body::Gathered { frame, heads, head_len, payloads } => Parts::Gathered {
                heads: arena[heads..heads + head_len * m.datagrams].chunks_exact(head_len),
                payloads: ranges[payloads..payloads + m.datagrams].iter(),
                eth: &frames[frame][VNET_HDR_LEN..],
                next: None,
            },
        }
    }
}

impl<'b> Iterator for Parts<'b> {
    type Item = &'b [u8];

    fn next(&mut self) -> Option<&'b [u8]> {
        match self {
            Parts::Whole(whole) => whole.take(),
            Parts::Gathered { heads, payloads, eth, next } => {
                if let Some(payload) = next.take() {
                    return Some(payload);
                }
                let head = heads.next()?;
                *next = payloads.next().map(|r| &eth[r.clone()]);
                Some(head)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vtep() -> Arc<VtepIo> {
        let addr: std::net::SocketAddr = "198.18.0.2:4789".parse().unwrap();
        Arc::new(VtepIo { addr: addr.into(), tx: Default::default() })
    }

    /// 100 gathered datagrams of 1,000 bytes (the last 500) go in messages
    /// of at most 64 segments and 65,000 bytes, each starting at its own
    /// header and payload.
    #[test]
    fn gathered_datagrams_are_cut_into_messages_at_segment_bounds() {
        let mut tx = TxQueue::default();
        let body = Body::Gathered { frame: 3, heads: 10, head_len: 80, payloads: 5 };
        tx.queue(1, vtep(), body, Datagrams { stride: Some(1000), len: 99 * 1000 + 500 });
        let cut: Vec<(Body, usize, usize, Option<u16>)> =
            tx.msgs.iter().map(|m| (m.body, m.len, m.datagrams, m.segment)).collect();
        assert_eq!(
            cut,
            vec![
                (body, 64_000, 64, Some(1000)),
                (
                    Body::Gathered { frame: 3, heads: 10 + 64 * 80, head_len: 80, payloads: 5 + 64 },
                    35_500,
                    36,
                    Some(1000)
                ),
            ]
        );
        tx.clear();
        // A message's parts: each header, then its payload from the frame.
        let arena = b"xxHHhh".to_vec();
        let frames = vec![vec![0u8; VNET_HDR_LEN].into_iter().chain(*b"0123456").collect::<Box<[u8]>>()];
        let ranges = [0..3, 3..7];
        let body = Body::Gathered { frame: 0, heads: 2, head_len: 2, payloads: 0 };
        let m = Queued { socket: 0, vtep: vtep(), body, len: 11, segment: Some(5), datagrams: 2 };
        let parts: Vec<&[u8]> = Parts::of(&m, &arena, &ranges, &frames).collect();
        assert_eq!(parts, [&b"HH"[..], b"012", b"hh", b"3456"]);
        tx.queue(0, vtep(), Body::Arena { start: 7 }, Datagrams { stride: Some(1000), len: 1000 });
        assert_eq!(tx.msgs[0].body, Body::Arena { start: 7 });
        assert_eq!((tx.msgs[0].datagrams, tx.msgs[0].segment), (1, None), "one segment needs no GSO");
    }
}
