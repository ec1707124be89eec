//! Encapsulation: a container's Ethernet frame into the VXLAN datagram(s)
//! that carry it to another host, in a caller-owned buffer, sealed when
//! the network is encrypted.
//!
//! What the frame still needs done (its virtio offload request) is done on
//! the way in: an open checksum is completed, a TSO/USO frame is cut into
//! MTU-sized frames, each behind its own header (and, sealed, before its
//! own tag), ready for one `sendmsg` with `UDP_SEGMENT`. For a switchd
//! peer the caller may ask for [`L4Checksum::Partial`]: the inner TCP/UDP
//! checksums are then left for the receiver to finish, both in segments
//! and in a frame whose checksum the container left open (which is then
//! sent as it came). The caller picks
//! the outer source port (and, sealed, the lane) from the inner flow's
//! hash ([`crate::flow`]) so a flow keeps one path.

use std::ops::Range;

use switchd_crypto::session::TxSession;
use switchd_wire::sealed::{HEADER_LEN as SEALED_HEADER_LEN, TAG_LEN};
pub use switchd_wire::vnet::Offload;
use switchd_wire::vxlan;

pub use crate::offload::L4Checksum;
use crate::offload::{self, Room};
use crate::sealed;

/// How the datagrams go on the wire.
#[derive(Debug)]
pub enum Wire<'s, 'k> {
    /// RFC 7348 VXLAN, readable by any VTEP.
    Plain,
    /// Sealed ([`crate::sealed`]) in this session.
    Sealed(&'s mut TxSession<'k>),
    /// Laid out for sealing (room for the header and tag) and left for the
    /// caller to seal with [`sealed::seal_with`], e.g. spread over threads.
    ToSeal,
}

/// Why a frame could not be encapsulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Its offload request could not be carried out.
    Offload(offload::Error),
    /// The session's lane has no nonce left (after 2^64 packets).
    NoncesExhausted,
}

impl From<offload::Error> for Error {
    fn from(e: offload::Error) -> Self {
        Error::Offload(e)
    }
}

/// The datagrams [`encapsulate`] appended to the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagrams {
    /// When there are several datagrams: the size of each but the last
    /// (`UDP_SEGMENT`'s segment size). `None`: one datagram.
    pub stride: Option<usize>,
    /// How many bytes were appended.
    pub len: usize,
}

impl Datagrams {
    /// How many datagrams.
    pub fn count(&self) -> usize {
        self.len.div_ceil(self.stride.unwrap_or(self.len).max(1))
    }
}

/// Appends to `out` the datagram(s) carrying `eth` on `vni`, doing what
/// `offload` asks; segments fit `mtu` (the network's L3 MTU), and their
/// TCP/UDP checksums are what `l4_checksum` says. On error, `out` may hold
/// a partial datagram past its old length.
pub fn encapsulate(
    eth: &[u8],
    offload: Offload,
    vni: u32,
    mtu: usize,
    wire: Wire<'_, '_>,
    l4_checksum: L4Checksum,
    out: &mut Vec<u8>,
) -> Result<Datagrams, Error> {
    let room = match wire {
        Wire::Plain => Room::head(vxlan::HEADER_LEN),
        Wire::Sealed(_) | Wire::ToSeal => Room { head: SEALED_HEADER_LEN, tail: TAG_LEN },
    };
    let base = out.len();
    let (stride, len) = match offload {
        Offload::None | Offload::Checksum { .. } => {
            out.resize(base + room.head, 0);
            out.extend_from_slice(eth);
            if let Offload::Checksum { start, offset } = offload {
                let frame = &mut out[base + room.head..];
                // Left open only in the form the receiver recognises (a TCP
                // or UDP field holding the pseudo-header sum); anything
                // else a container asks for is completed here, as before.
                let deferred = l4_checksum == L4Checksum::Partial
                    && offload::deferred_checksum(frame).is_some_and(|c| (c.start, c.offset) == (start, offset));
                if !deferred {
                    offload::complete_checksum(frame, start, offset)?;
                }
            }
            out.resize(out.len() + room.tail, 0);
            (None, out.len() - base)
        }
        Offload::Segment { gso, mss } => {
            let segs = offload::segment(eth, gso, mss, mtu, room, l4_checksum, out)?;
            ((segs.count > 1).then_some(segs.stride), segs.len)
        }
    };
    let datagrams = out[base..base + len].chunks_mut(stride.unwrap_or(len).max(1));
    match wire {
        Wire::Plain => datagrams.for_each(|d| vxlan::Repr { vni }.emit(d)),
        Wire::Sealed(session) => {
            for d in datagrams {
                sealed::seal(d, session).ok_or(Error::NoncesExhausted)?;
            }
        }
        Wire::ToSeal => {}
    }
    Ok(Datagrams { stride, len })
}

/// The datagrams [`encapsulate_gathered`] made: headers in the buffer,
/// payloads left in the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gathered {
    /// The datagrams on the wire, payloads included.
    pub datagrams: Datagrams,
    /// How many header bytes (VXLAN and the inner frame's headers) each
    /// datagram has in the buffer, one after another.
    pub head_len: usize,
}

/// [`encapsulate`] for a TSO/USO frame on a plain network without copying
/// its payload: appends to `heads` each datagram's VXLAN and inner headers,
/// and to `payloads` the range of `eth` that follows them on the wire
/// ([`offload::segment_headers`]); a gathering send puts them together.
/// `None` when `offload` asks for no segmentation (then [`encapsulate`]:
/// one datagram is copied more cheaply than it is gathered).
pub fn encapsulate_gathered(
    eth: &[u8],
    offload: Offload,
    vni: u32,
    mtu: usize,
    l4_checksum: L4Checksum,
    heads: &mut Vec<u8>,
    payloads: &mut Vec<Range<usize>>,
) -> Option<Result<Gathered, Error>> {
    let Offload::Segment { gso, mss } = offload else { return None };
    let base = heads.len();
    let how = offload::Cut { gso, mss, mtu, room: Room::head(vxlan::HEADER_LEN), l4_checksum };
    let segs = match offload::segment_headers(eth, how, heads, payloads) {
        Ok(segs) => segs,
        Err(e) => return Some(Err(e.into())),
    };
    let head_len = (heads.len() - base) / segs.count;
    heads[base..].chunks_mut(head_len).for_each(|h| vxlan::Repr { vni }.emit(h));
    let stride = (segs.count > 1).then_some(segs.stride);
    Some(Ok(Gathered { datagrams: Datagrams { stride, len: segs.len }, head_len }))
}

#[cfg(test)]
mod tests {
    use etherparse::PacketBuilder;
    use switchd_wire::checksum;
    use switchd_wire::vnet::GsoType;

    use super::*;

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
        let d = encapsulate(&frame, Offload::None, 100, 1450, Wire::Plain, L4Checksum::Complete, &mut out).unwrap();
        assert_eq!(d.stride, None);
        assert_eq!(&out[..8], &[0x08, 0, 0, 0, 0, 0, 100, 0]);
        assert_eq!(&out[8..], &frame[..]);
    }

    #[test]
    fn an_open_checksum_is_completed() {
        let frame = tcp(100);
        let mut open = frame.clone();
        let partial = checksum::fold(checksum::pseudo_v4([10, 0, 0, 1].into(), [10, 0, 0, 2].into(), 6, 120));
        open[50..52].copy_from_slice(&partial.to_be_bytes());
        let mut out = Vec::new();
        encapsulate(
            &open,
            Offload::Checksum { start: 34, offset: 16 },
            5,
            1450,
            Wire::Plain,
            L4Checksum::Complete,
            &mut out,
        )
        .unwrap();
        assert_eq!(&out[8..], &frame[..], "the completed frame equals the one with its checksum computed");
    }

    #[test]
    fn a_tso_frame_becomes_equal_datagrams_each_with_a_header() {
        let frame = tcp(5000);
        let mut out = Vec::new();
        let d = encapsulate(
            &frame,
            Offload::Segment { gso: GsoType::TcpV4, mss: 1410 },
            0xabcdef,
            1450,
            Wire::Plain,
            L4Checksum::Complete,
            &mut out,
        )
        .unwrap();
        let stride = d.stride.unwrap();
        assert_eq!(stride, 8 + 14 + 1450);
        for start in (0..out.len()).step_by(stride) {
            assert_eq!(&out[start..start + 8], &[0x08, 0, 0, 0, 0xab, 0xcd, 0xef, 0]);
        }
        assert_eq!(out.len().div_ceil(stride), 4);
        assert_eq!(d.len, out.len());
    }

    /// A TSO frame on an encrypted network: equal sealed datagrams, each
    /// with its own header, counter and tag, that open back into the
    /// segments a plain encapsulation makes.
    #[test]
    fn a_tso_frame_sealed_opens_into_the_same_segments() {
        use std::net::IpAddr;

        use switchd_crypto::{Backend, Cipher, Key, RxSessions, SessionId, TxSessions};

        let frame = tcp(5000);
        let key = Key::from_bytes([3; 32]);
        let ip: IpAddr = "198.18.0.1".parse().unwrap();
        let mut tx = TxSessions::new(Backend::default(), sealed::sender_id(ip), SessionId(1), 0..16);
        let mut session = tx.get((key.id(), &key), 42, Cipher::ChaCha20Poly1305, 0);
        let offload = Offload::Segment { gso: GsoType::TcpV4, mss: 1414 };
        let mut out = Vec::new();
        let d =
            encapsulate(&frame, offload, 42, 1414, Wire::Sealed(&mut session), L4Checksum::Complete, &mut out).unwrap();
        let mut plain = Vec::new();
        let p = encapsulate(&frame, offload, 42, 1414, Wire::Plain, L4Checksum::Complete, &mut plain).unwrap();
        let stride = d.stride.unwrap();
        assert_eq!(stride, p.stride.unwrap() + switchd_wire::sealed::OVERHEAD);
        assert_eq!(stride, 28 + 14 + 1414 + 16, "one underlay MTU of 1500 less IPv4 and UDP");

        let mut rx = RxSessions::new(Backend::default(), 16);
        let plains: Vec<&[u8]> = plain.chunks(p.stride.unwrap()).collect();
        for (i, datagram) in out.chunks_mut(stride).enumerate() {
            let h = sealed::Header::parse(datagram).unwrap();
            assert_eq!((h.vni, h.counter), (42, i as u64));
            let inner = sealed::open(datagram, ip, &mut rx, |_, _| Some(&key)).unwrap();
            assert_eq!(&datagram[inner], &plains[i][vxlan::HEADER_LEN..], "segment {i}");
        }
    }

    #[test]
    fn a_gathered_tso_frame_is_the_copied_one() {
        let frame = tcp(5000);
        let offload = Offload::Segment { gso: GsoType::TcpV4, mss: 1410 };
        let mut copied = Vec::new();
        let c = encapsulate(&frame, offload, 0xabc, 1450, Wire::Plain, L4Checksum::Complete, &mut copied).unwrap();
        let (mut heads, mut payloads) = (Vec::new(), Vec::new());
        let g = encapsulate_gathered(&frame, offload, 0xabc, 1450, L4Checksum::Complete, &mut heads, &mut payloads)
            .expect("a TSO frame is gathered")
            .unwrap();
        assert_eq!(g.datagrams, c);
        assert_eq!(g.head_len, 8 + 14 + 20 + 20);
        let wire: Vec<u8> =
            heads.chunks(g.head_len).zip(&payloads).flat_map(|(h, p)| [h, &frame[p.clone()]].concat()).collect();
        assert_eq!(wire, copied);
        let none =
            encapsulate_gathered(&frame, Offload::None, 1, 1450, L4Checksum::Complete, &mut heads, &mut payloads);
        assert!(none.is_none(), "one datagram is copied");
    }

    #[test]
    fn datagrams_are_appended() {
        let mut out = vec![0xee; 3];
        let d = encapsulate(&tcp(10), Offload::None, 1, 1450, Wire::Plain, L4Checksum::Complete, &mut out).unwrap();
        assert_eq!(&out[..3], &[0xee; 3]);
        assert_eq!(out.len(), 3 + d.len);
        assert_eq!(&out[3..11], &[0x08, 0, 0, 0, 0, 0, 1, 0]);
    }

    #[test]
    fn an_open_checksum_stays_open_for_a_switchd_peer() {
        let frame = tcp(100);
        let mut open = frame.clone();
        let partial = checksum::fold(checksum::pseudo_v4([10, 0, 0, 1].into(), [10, 0, 0, 2].into(), 6, 120));
        open[50..52].copy_from_slice(&partial.to_be_bytes());
        let offload = Offload::Checksum { start: 34, offset: 16 };
        let mut out = Vec::new();
        encapsulate(&open, offload, 5, 1450, Wire::Plain, L4Checksum::Partial, &mut out).unwrap();
        assert_eq!(&out[8..], &open[..], "sent as the container left it");
        // An open checksum in another form (the field not the pseudo-header
        // sum, or another place) is completed as for any peer.
        let mut odd = open.clone();
        odd[50] ^= 0x40;
        out.clear();
        encapsulate(&odd, offload, 5, 1450, Wire::Plain, L4Checksum::Partial, &mut out).unwrap();
        let mut expected = odd.clone();
        offload::complete_checksum(&mut expected, 34, 16).unwrap();
        assert_eq!(&out[8..], &expected[..]);
        out.clear();
        let elsewhere = Offload::Checksum { start: 34, offset: 6 };
        encapsulate(&open, elsewhere, 5, 1450, Wire::Plain, L4Checksum::Partial, &mut out).unwrap();
        let mut expected = open.clone();
        offload::complete_checksum(&mut expected, 34, 6).unwrap();
        assert_eq!(&out[8..], &expected[..]);
    }

    #[test]
    fn tso_segments_for_a_switchd_peer_keep_partial_checksums() {
        let frame = tcp(5000);
        let offload = Offload::Segment { gso: GsoType::TcpV4, mss: 1410 };
        let (mut complete, mut partial) = (Vec::new(), Vec::new());
        let c = encapsulate(&frame, offload, 7, 1450, Wire::Plain, L4Checksum::Complete, &mut complete).unwrap();
        let p = encapsulate(&frame, offload, 7, 1450, Wire::Plain, L4Checksum::Partial, &mut partial).unwrap();
        assert_eq!(c, p);
        let stride = c.stride.unwrap();
        for (a, b) in complete.chunks(stride).zip(partial.chunks(stride)) {
            assert!(offload::deferred_checksum(&b[8..]).is_some());
            let mut finished = b[8..].to_vec();
            offload::complete_checksum(&mut finished, 34, 16).unwrap();
            assert_eq!(&finished[..], &a[8..]);
        }
    }
}
