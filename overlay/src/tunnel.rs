//! Encapsulation: a container's Ethernet frame into the VXLAN datagram(s)
//! that carry it to another host, in a caller-owned buffer.
//!
//! What the frame still needs done (its virtio offload request) is done on
//! the way in: an open checksum is completed, a TSO/USO frame is cut into
//! MTU-sized frames, each behind its own VXLAN header, ready for one
//! `sendmsg` with `UDP_SEGMENT`.

use crate::offload::{self, Gso};
use crate::{flow, vxlan};

/// What a frame asks of the device that sends it (from its virtio header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offload {
    /// Nothing: send it as it is.
    None,
    /// Complete the checksum at `start + offset` over `start..`.
    Checksum { start: usize, offset: usize },
    /// Cut it into segments of `mss` payload bytes.
    Segment { gso: Gso, mss: usize },
}

/// The datagrams [`encapsulate`] appended to the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagrams {
    /// The inner flow's hash, which picks the outer source port.
    pub flow: u32,
    /// When there are several datagrams: the size of each but the last
    /// (`UDP_SEGMENT`'s segment size). `None`: one datagram.
    pub stride: Option<usize>,
    /// How many bytes were appended.
    pub len: usize,
}

/// Appends to `out` the VXLAN datagram(s) carrying `eth` on `vni`, doing
/// what `offload` asks; segments fit `mtu` (the network's L3 MTU). On
/// error, `out` may hold a partial datagram past its old length.
pub fn encapsulate(
    eth: &[u8],
    offload: Offload,
    vni: u32,
    mtu: usize,
    out: &mut Vec<u8>,
) -> Result<Datagrams, offload::Error> {
    let flow = flow::hash(eth);
    let header = vxlan::Repr { vni };
    let base = out.len();
    match offload {
        Offload::None | Offload::Checksum { .. } => {
            out.extend_from_slice(&[0; vxlan::HEADER_LEN]);
            out.extend_from_slice(eth);
            if let Offload::Checksum { start, offset } = offload {
                offload::complete_checksum(&mut out[base + vxlan::HEADER_LEN..], start, offset)?;
            }
            header.emit(&mut out[base..]);
            Ok(Datagrams { flow, stride: None, len: out.len() - base })
        }
        Offload::Segment { gso, mss } => {
            let segs = offload::segment(eth, gso, mss, mtu, vxlan::HEADER_LEN, out)?;
            for start in (base..base + segs.len).step_by(segs.stride) {
                header.emit(&mut out[start..]);
            }
            Ok(Datagrams { flow, stride: (segs.count > 1).then_some(segs.stride), len: segs.len })
        }
    }
}

#[cfg(test)]
mod tests {
    use etherparse::PacketBuilder;

    use super::*;
    use crate::checksum;

    fn tcp(len: usize) -> Vec<u8> {
        let mut f = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(1000, 2000, 1, 100)
            .write(&mut f, &vec![7u8; len])
            .unwrap();
        f
    }

    #[test]
    fn one_frame_one_datagram() {
        let frame = tcp(100);
        let mut out = Vec::new();
        let d = encapsulate(&frame, Offload::None, 100, 1450, &mut out).unwrap();
        assert_eq!(d.stride, None);
        assert_eq!(&out[..8], &[0x08, 0, 0, 0, 0, 0, 100, 0]);
        assert_eq!(&out[8..], &frame[..]);
        assert_eq!(d.flow, flow::hash(&frame));
    }

    #[test]
    fn an_open_checksum_is_completed() {
        let frame = tcp(100);
        let mut open = frame.clone();
        let partial = checksum::fold(checksum::pseudo_v4([10, 0, 0, 1].into(), [10, 0, 0, 2].into(), 6, 120));
        open[50..52].copy_from_slice(&partial.to_be_bytes());
        let mut out = Vec::new();
        encapsulate(&open, Offload::Checksum { start: 34, offset: 16 }, 5, 1450, &mut out).unwrap();
        assert_eq!(&out[8..], &frame[..], "the completed frame equals the one with its checksum computed");
    }

    #[test]
    fn a_tso_frame_becomes_equal_datagrams_each_with_a_header() {
        let frame = tcp(5000);
        let mut out = Vec::new();
        let d = encapsulate(&frame, Offload::Segment { gso: Gso::TcpV4, mss: 1410 }, 0xabcdef, 1450, &mut out).unwrap();
        let stride = d.stride.unwrap();
        assert_eq!(stride, 8 + 14 + 1450);
        for start in (0..out.len()).step_by(stride) {
            assert_eq!(&out[start..start + 8], &[0x08, 0, 0, 0, 0xab, 0xcd, 0xef, 0]);
        }
        assert_eq!(out.len().div_ceil(stride), 4);
        assert_eq!(d.len, out.len());
    }

    #[test]
    fn datagrams_are_appended() {
        let mut out = vec![0xee; 3];
        let d = encapsulate(&tcp(10), Offload::None, 1, 1450, &mut out).unwrap();
        assert_eq!(&out[..3], &[0xee; 3]);
        assert_eq!(out.len(), 3 + d.len);
        assert_eq!(&out[3..11], &[0x08, 0, 0, 0, 0, 0, 1, 0]);
    }
}
