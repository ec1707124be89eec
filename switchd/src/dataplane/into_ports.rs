//! Frames into local ports, as a batch writes them: queued in the worker's
//! io_uring and written with one system call when the batch has several
//! ([`uring`]), at once otherwise (a lone frame, a ping or a request, gains
//! nothing from the ring), or where the ring is off or the port is no plain
//! device. Either way in the order they are given, each counted by what its
//! write did.

use std::io::IoSlice;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use switchd_overlay::gro::Joined;
use switchd_overlay::offload;
use switchd_wire::vnet::{self, HEADER_LEN as VNET_HDR_LEN};

use super::{PortIo, Queues, Span};
use crate::io::udp::RecvBatch;
use crate::io::uring::{self, Ring};

/// Frames this long or longer (TSO frames, GRO's joined ones) are written
/// at once, after what is queued: their system call is a small part of
/// their cost, and in two A/B runs bulk TCP across hosts was about 6%
/// slower when the container's stack got them only at the end of a batch.
const RING_BELOW: usize = 8 << 10;

/// A queued write: the port (its queues and which), and the Ethernet bytes.
pub(super) type Queued = (Arc<Queues>, usize, usize);

/// The writes of one batch into local ports.
pub(super) struct IntoPorts<'r, 'a> {
    worker: usize,
    ring: Option<uring::Writes<'r, 'a>>,
    /// Each queued write, by its tag.
    queued: Vec<Queued>,
}

impl<'r, 'a> IntoPorts<'r, 'a> {
    /// Writes for worker `worker`, through `ring` if there is one and
    /// the batch has more than one frame for ports (`several`); `queued` is
    /// an empty list to keep the queued writes in (given back by `finish`).
    pub fn new(worker: usize, ring: Option<&'r mut Ring>, several: bool, queued: Vec<Queued>) -> Self {
        debug_assert!(queued.is_empty());
        IntoPorts { worker, ring: ring.filter(|_| several).map(|r| r.writes()), queued }
    }

    /// A frame as read from a port: virtio header and Ethernet.
    pub fn frame(&mut self, queues: Arc<Queues>, frame: &'a [u8]) {
        let eth = frame.get(VNET_HDR_LEN..).unwrap_or_default();
        let queue = queues.queue_index(self.worker, eth);
        self.write(queues, queue, &[], &[frame]);
    }

    /// An Ethernet frame from the underlay that GRO did not take: behind a
    /// header asking the port to finish its checksum if its sender left it
    /// partial (every port speaks virtio headers: TAPs, and AF_PACKET
    /// sockets with `PACKET_VNET_HDR`), a plain one otherwise.
    pub fn decapsulated(&mut self, queues: Arc<Queues>, eth: &'a [u8]) {
        let queue = queues.queue_index(self.worker, eth);
        let Some(open) = offload::deferred_checksum(eth) else {
            return self.write(queues, queue, &[], &[&vnet::Repr::PLAIN_BYTES, eth]);
        };
        queues.queues[queue].deferred_checksums.fetch_add(1, Relaxed);
        let mut header = [0u8; VNET_HDR_LEN];
        open.vnet().emit(&mut header);
        self.write(queues, queue, &header, &[&eth[..open.len]]);
    }

    /// What GRO joined: its headers (copied), then its payloads where they
    /// are in `recv`.
    pub fn joined(&mut self, queues: Arc<Queues>, joined: Joined<'_, Span>, recv: &'a RecvBatch) {
        let queue = queues.queue_index(self.worker, joined.head.get(VNET_HDR_LEN..).unwrap_or_default());
        queues.queues[queue].deferred_checksums.fetch_add(joined.deferred as u64, Relaxed);
        let mut payloads = [&[][..]; switchd_overlay::gro::MAX_SEGMENTS];
        for (slot, (at, range)) in payloads.iter_mut().zip(joined.payloads) {
            *slot = &at.of(recv)[range.clone()];
        }
        self.write(queues, queue, joined.head, &payloads[..joined.payloads.len()]);
    }

    /// Writes `head` (copied if queued) and `parts` to queue `queue`.
    fn write(&mut self, queues: Arc<Queues>, queue: usize, head: &[u8], parts: &[&'a [u8]]) {
        if queues.tap.on() {
            let frame: Vec<&[u8]> = std::iter::once(head).chain(parts.iter().copied()).collect();
            queues.tap.record(&frame, VNET_HDR_LEN);
        }
        let io = &queues.queues[queue];
        let len = (head.len() + parts.iter().map(|p| p.len()).sum::<usize>()).saturating_sub(VNET_HDR_LEN);
        if let (Some(ring), Some(fd)) = (self.ring.as_mut(), io.dev.ring_fd()) {
            if len < RING_BELOW {
                ring.push(fd, head, parts, self.queued.len() as u64);
                self.queued.push((queues, queue, len));
                return;
            }
            ring.flush();
        }
        let result = match (head, parts) {
            ([], [frame]) => io.dev.send(frame),
            _ => {
                let mut slices = [IoSlice::new(&[]); switchd_overlay::gro::MAX_SEGMENTS + 2];
                let mut n = 0;
                for part in std::iter::once(head).filter(|h| !h.is_empty()).chain(parts.iter().copied()) {
                    slices[n] = IoSlice::new(part);
                    n += 1;
                }
                io.dev.send_parts(&slices[..n])
            }
        };
        record(io, result, len);
    }

    /// Submits what is queued, counts every write, and gives the list back.
    pub fn finish(self) -> Vec<Queued> {
        let IntoPorts { ring, mut queued, .. } = self;
        if let Some(ring) = ring {
            ring.submit(|tag, result| {
                if let Some((queues, queue, len)) = queued.get(tag as usize) {
                    record(&queues.queues[*queue], result, *len);
                }
            });
        }
        queued.clear();
        queued
    }
}

fn record(io: &PortIo, result: std::io::Result<usize>, len: usize) {
    io.tx.record(result, len, || "a port".to_owned());
}
