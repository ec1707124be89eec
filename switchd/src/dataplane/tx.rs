//! The send queue of a worker: encapsulated datagrams gathered in one
//! arena during a batch, then sent with one `sendmmsg` per source socket.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use switchd_overlay::tunnel::Datagrams;

use super::{MAX_SEND, VtepIo};
use crate::io::udp;

/// Encapsulated datagrams waiting to be sent, and the buffers for sending.
#[derive(Debug, Default)]
pub(super) struct TxQueue {
    /// The datagrams of a batch, one after another.
    pub arena: Vec<u8>,
    msgs: Vec<Queued>,
    batch: udp::SendBatch,
}

/// One `sendmmsg` entry waiting: `len` bytes at `start` in the arena.
#[derive(Debug)]
struct Queued {
    /// Index into the send socket pool.
    socket: usize,
    vtep: Arc<VtepIo>,
    start: usize,
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
        self.msgs.clear();
    }

    /// Queues the datagrams at `start` for `vtep`, in as few messages as the
    /// kernel's GSO limits allow (64 segments, one IP packet in all).
    pub fn queue(&mut self, socket: usize, vtep: Arc<VtepIo>, start: usize, d: Datagrams) {
        let Some(stride) = d.stride else {
            self.msgs.push(Queued { socket, vtep, start, len: d.len, segment: None, datagrams: 1 });
            return;
        };
        let per_msg = (MAX_SEND / stride).clamp(1, udp::MAX_SEGMENTS) * stride;
        let mut at = start;
        while at < start + d.len {
            let len = per_msg.min(start + d.len - at);
            let segment = (len > stride).then_some(stride as u16);
            self.msgs.push(Queued {
                socket,
                vtep: vtep.clone(),
                start: at,
                len,
                segment,
                datagrams: len.div_ceil(stride),
            });
            at += len;
        }
    }

    /// Sends everything queued: one `sendmmsg` per source socket.
    pub fn flush(&mut self, pool: &[OwnedFd]) {
        if self.msgs.is_empty() {
            return;
        }
        // Stable: datagrams of one flow keep their order.
        self.msgs.sort_by_key(|m| m.socket);
        let mut first = 0;
        while first < self.msgs.len() {
            let socket = self.msgs[first].socket;
            let end = first + self.msgs[first..].iter().take_while(|m| m.socket == socket).count();
            let group = &self.msgs[first..end];
            let arena = &self.arena;
            let outgoing = group.iter().map(|m| udp::Outgoing {
                to: &m.vtep.addr,
                data: &arena[m.start..m.start + m.len],
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
