//! Receive coalescing: consecutive TCP segments of one flow, as they come
//! out of the tunnel, joined into one large frame with a virtio GSO header,
//! so the container's stack takes one 64 KiB segment in one TAP write
//! instead of forty. What GRO does in a NIC driver, and what wireguard-go
//! does for TUN; the mirror image of [`crate::offload::segment`].
//!
//! Only what the kernel's own TCP GRO would join is joined: the same
//! Ethernet, IP and TCP headers but for lengths, ids, checksums and the
//! sequence number, which must follow on exactly; plain ACK segments (PSH
//! allowed on the last); equal sizes but for a shorter last one; at most
//! 64 KiB. Each segment's TCP checksum is verified before it is joined,
//! since the joined frame goes up with its checksum marked as the stack's
//! to fill in, and would otherwise never be checked; but not a checksum
//! its sender deferred (the field holds the pseudo-header sum, see
//! [`crate::offload::deferred_checksum`]), which cannot be verified and
//! was covered in transit by the outer UDP checksum, nor any segment of a
//! sealed datagram, whose tag covered it ([`Integrity`]).
//!
//! Every frame that GRO takes goes up with `NEEDS_CSUM`, a run of one
//! segment too: the stack finishes the checksum rather than check it again.
//! A segment larger than the MTU that a kernel vxlan peer's GSO made and a
//! virtual underlay carried uncut ([`carries_one_frame`]) goes up alone as
//! a GSO frame ([`Gro::start_large`]).
//!
//! Usage: [`Gro::start`] with a segment (false: write it as it is, or as
//! [`crate::offload::deferred_checksum`] says), then [`Gro::append`] the
//! following ones while they continue it, then [`Gro::finish`] to get the
//! frame to write: a virtio header and the first segment's headers, then
//! each segment's payload where it already is. Nothing is copied but
//! headers: the caller names each segment's bytes by a source of its own
//! (`S`, such as where in its receive buffers the segment is) and writes
//! the frame with one gathering write.

use std::ops::Range;

use switchd_wire::ethernet::{self, EtherType};
use switchd_wire::ip::Protocol;
use switchd_wire::tcp::flags::{ACK as TCP_ACK, PSH as TCP_PSH};
use switchd_wire::vnet::{self, GsoType, HEADER_LEN as VNET_HDR_LEN};
use switchd_wire::{checksum, ipv4, ipv6, tcp};

const ETH_LEN: usize = ethernet::HEADER_LEN;
/// The largest IP packet: the joined frame never exceeds it.
const MAX_IP_LEN: usize = 65535;
/// The most segments one frame joins (the kernel's GRO stops at 64 too):
/// each is a part of the gathering write that puts the frame together, and
/// tiny segments must not make it longer than a `writev` takes.
pub const MAX_SEGMENTS: usize = 64;

/// Where the headers of a segment are, and its TCP fields.
#[derive(Debug, Clone, Copy)]
struct Segment {
    ipv4: bool,
    l4: usize,
    payload: usize,
    /// End of the IP packet (frames may be padded).
    end: usize,
    seq: u32,
    flags: u8,
    /// Its checksum field holds the pseudo-header sum: the sender left it open.
    deferred: bool,
}

impl Segment {
    fn payload_len(&self) -> usize {
        self.end - self.payload
    }
}

/// How much of a segment's own TCP checksum is to be checked before it is
/// joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Integrity {
    /// From plain VXLAN: a complete checksum must verify. A deferred one
    /// (left open by the sender, a switchd or a kernel vxlan device on a
    /// virtual underlay) cannot, and need not: the outer UDP checksum
    /// covered the frame.
    #[default]
    Verify,
    /// Opened from a sealed datagram: its tag covered every byte, so
    /// nothing is checked again.
    Sealed,
}

/// Whether `read` (what one receive returned, said to hold datagrams of
/// `segment` bytes) is one plain VXLAN datagram longer than that: its inner
/// IP packet ends exactly where the read does. The kernel's vxlan device
/// sends such datagrams across a veth underlay with offloads on (a GSO
/// packet the underlay never cut), and the receiving socket reports the
/// inner segment size for them; a burst of datagrams coalesced by
/// `UDP_GRO` holds a first inner packet that ends at `segment`.
pub fn carries_one_frame(read: &[u8], segment: usize) -> bool {
    const VXLAN: usize = switchd_wire::vxlan::HEADER_LEN;
    if read.len() <= segment || read.len() < VXLAN + ETH_LEN || read[0] != 0x08 {
        return false;
    }
    let inner = &read[VXLAN..];
    let Ok(eth) = ethernet::Frame::new_checked(inner) else { return false };
    let ip_len = match eth.ethertype() {
        EtherType::Ipv4 => ipv4::Packet::new_checked(eth.payload()).map(|p| usize::from(p.total_len())),
        EtherType::Ipv6 => {
            ipv6::Packet::new_checked(eth.payload()).map(|p| ipv6::HEADER_LEN + usize::from(p.payload_len()))
        }
        _ => return false,
    };
    ip_len.is_ok_and(|len| VXLAN + ETH_LEN + len == read.len())
}

/// Whether `eth` is a TCP segment GRO could take (IPv4 unfragmented or
/// IPv6 without extension headers; its checksum not looked at).
pub fn is_tcp_segment(eth: &[u8]) -> bool {
    parse(eth, Integrity::Sealed).is_some()
}

/// Parses a plain Ethernet frame carrying TCP over IPv4 (unfragmented) or
/// IPv6 (no extension headers), with a TCP checksum that verifies or was
/// deferred (or is not checked, as `integrity` says). `None` for anything
/// else.
fn parse(eth: &[u8], integrity: Integrity) -> Option<Segment> {
    let frame = ethernet::Frame::new_checked(eth).ok()?;
    let l3 = ETH_LEN;
    let (ipv4, l4, end) = match frame.ethertype() {
        EtherType::Ipv4 => {
            let ip = ipv4::Packet::new_checked(frame.payload()).ok()?;
            if ip.protocol() != Protocol::Tcp || ip.is_fragment() {
                return None;
            }
            (true, l3 + ip.header_len(), l3 + usize::from(ip.total_len()))
        }
        EtherType::Ipv6 => {
            let ip = ipv6::Packet::new_checked(frame.payload()).ok()?;
            if ip.next_header() != Protocol::Tcp {
                return None;
            }
            (false, l3 + ipv6::HEADER_LEN, l3 + ipv6::HEADER_LEN + usize::from(ip.payload_len()))
        }
        _ => return None,
    };
    let tcp = tcp::Packet::new_checked(&eth[l4..end]).ok()?;
    let payload = l4 + tcp.header_len();
    let mut seg = Segment { ipv4, l4, payload, end, seq: tcp.seq_number(), flags: tcp.flags(), deferred: false };
    let pseudo = pseudo(eth, &seg, (end - l4) as u32);
    seg.deferred = tcp.checksum() == checksum::fold(pseudo);
    (seg.deferred || integrity == Integrity::Sealed || tcp.verify_checksum(pseudo)).then_some(seg)
}

/// The pseudo-header sum of a segment whose TCP part is `len` bytes.
fn pseudo(eth: &[u8], seg: &Segment, len: u32) -> u64 {
    let ip = &eth[ETH_LEN..];
    if seg.ipv4 {
        ipv4::Packet::new_unchecked(ip).pseudo_header(len)
    } else {
        ipv6::Packet::new_unchecked(ip).pseudo_header(Protocol::Tcp, len)
    }
}

/// The bytes of the IP header that all joined segments share: all but the
/// length, and for IPv4 the id and checksum.
fn same_ip(a: &[u8], b: &[u8], ipv4: bool, l4: usize) -> bool {
    let (a, b) = (&a[ETH_LEN..l4], &b[ETH_LEN..l4]);
    if ipv4 {
        a[..2] == b[..2] && a[6..10] == b[6..10] && a[12..] == b[12..]
    } else {
        a[..4] == b[..4] && a[6..] == b[6..]
    }
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    first: Segment,
    /// Payload bytes per segment (the first one's).
    mss: usize,
    next_seq: u32,
    segments: usize,
    flags: u8,
    /// A shorter or PSH segment ended the run: nothing more may follow.
    closed: bool,
    /// How many of the segments came with their checksum deferred.
    deferred: usize,
    /// The payload bytes joined so far.
    payload_len: usize,
}

/// A frame [`Gro::finish`] made, and what went into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Joined<'a, S> {
    /// The virtio header and the frame's headers (Ethernet, IP, TCP).
    pub head: &'a [u8],
    /// What follows `head`: each segment's payload, as its source and the
    /// range of the Ethernet frame it came in.
    pub payloads: &'a [(S, Range<usize>)],
    /// How many segments it joins.
    pub segments: usize,
    /// How many of those came with a checksum their sender deferred.
    pub deferred: usize,
}

impl<S> Joined<'_, S> {
    /// The frame's parts in order, given the Ethernet frame of each source.
    pub fn parts<'b>(&'b self, eth: impl Fn(&S) -> &'b [u8] + 'b) -> impl Iterator<Item = &'b [u8]> + 'b {
        std::iter::once(self.head).chain(self.payloads.iter().map(move |(s, range)| &eth(s)[range.clone()]))
    }
}

impl Joined<'_, &[u8]> {
    /// The whole frame (virtio header and Ethernet), when each source is
    /// its Ethernet frame.
    pub fn to_vec(&self) -> Vec<u8> {
        self.parts(|eth| eth).flatten().copied().collect()
    }
}

/// A TCP receive coalescer, with the pending frame's headers and where its
/// payloads are (each segment's source: `S`).
#[derive(Debug)]
pub struct Gro<S> {
    head: Vec<u8>,
    payloads: Vec<(S, Range<usize>)>,
    pending: Option<Pending>,
}

impl<S> Default for Gro<S> {
    fn default() -> Self {
        Gro::new()
    }
}

impl<S> Gro<S> {
    pub fn new() -> Self {
        Gro { head: Vec::with_capacity(VNET_HDR_LEN + 128), payloads: Vec::new(), pending: None }
    }

    /// Starts a new frame from `eth` (from `source`), dropping any pending
    /// one. False if `eth` cannot be coalesced (not such a TCP segment, or
    /// a bad checksum, checked as `integrity` says): write it as it is.
    pub fn start(&mut self, eth: &[u8], integrity: Integrity, source: S) -> bool {
        self.pending = None;
        let Some(seg) = parse(eth, integrity) else { return false };
        if seg.payload_len() == 0 || seg.flags & !(TCP_ACK | TCP_PSH) != 0 || seg.flags & TCP_ACK == 0 {
            return false;
        }
        self.head.clear();
        self.head.extend_from_slice(&vnet::Repr::PLAIN_BYTES);
        self.head.extend_from_slice(&eth[..seg.payload]);
        self.payloads.clear();
        self.payloads.push((source, seg.payload..seg.end));
        self.pending = Some(Pending {
            first: seg,
            mss: seg.payload_len(),
            next_seq: seg.seq.wrapping_add(seg.payload_len() as u32),
            segments: 1,
            flags: seg.flags,
            closed: seg.flags & TCP_PSH != 0,
            deferred: usize::from(seg.deferred),
            payload_len: seg.payload_len(),
        });
        true
    }

    /// Starts a frame from `eth`, one TCP segment larger than the MTU that a
    /// sender's GSO made and the underlay carried whole (a kernel vxlan
    /// device on a veth underlay with offloads on sends them: see
    /// [`carries_one_frame`]), to go up as a GSO frame of `mss`-byte
    /// segments; nothing is joined to it. False as for [`Gro::start`].
    pub fn start_large(&mut self, eth: &[u8], integrity: Integrity, mss: usize, source: S) -> bool {
        if mss == 0 || !self.start(eth, integrity, source) {
            return false;
        }
        let p = self.pending.as_mut().expect("started");
        p.mss = mss.min(p.mss);
        p.closed = true;
        true
    }

    /// Joins `eth` (from `source`) to the pending frame if it continues it;
    /// false if not (finish the pending frame, then `start` with `eth`).
    pub fn append(&mut self, eth: &[u8], integrity: Integrity, source: S) -> bool {
        let Some(p) = &mut self.pending else { return false };
        if p.closed {
            return false;
        }
        let first = p.first;
        let Some(seg) = parse(eth, integrity) else { return false };
        let len = seg.payload_len();
        let frame = &self.head[VNET_HDR_LEN..];
        let joins = seg.ipv4 == first.ipv4
            && seg.l4 == first.l4
            && seg.payload == first.payload
            && seg.seq == p.next_seq
            && p.segments < MAX_SEGMENTS
            && len > 0
            && len <= p.mss
            && seg.flags & !TCP_PSH == TCP_ACK
            && frame.len() + p.payload_len + len - ETH_LEN <= MAX_IP_LEN
            && eth[..ETH_LEN] == frame[..ETH_LEN]
            && same_ip(eth, frame, seg.ipv4, seg.l4)
            // Ports, ack, data offset, window; then options (timestamps included).
            && eth[seg.l4..seg.l4 + 4] == frame[first.l4..first.l4 + 4]
            && eth[seg.l4 + 8..seg.l4 + 13] == frame[first.l4 + 8..first.l4 + 13]
            && eth[seg.l4 + 14..seg.l4 + 16] == frame[first.l4 + 14..first.l4 + 16]
            // The urgent pointer: meaningless without URG, but a byte of the
            // segment, which cutting the joined frame again would not give
            // back (found by fuzzing offload_gro).
            && eth[seg.l4 + 18..seg.l4 + 20] == frame[first.l4 + 18..first.l4 + 20]
            && eth[seg.l4 + 20..seg.payload] == frame[first.l4 + 20..first.payload];
        if !joins {
            return false;
        }
        self.payloads.push((source, seg.payload..seg.end));
        p.payload_len += len;
        p.next_seq = p.next_seq.wrapping_add(len as u32);
        p.segments += 1;
        p.flags |= seg.flags;
        p.closed = len < p.mss || seg.flags & TCP_PSH != 0;
        p.deferred += usize::from(seg.deferred);
        true
    }

    /// Whether a frame is pending.
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// The pending frame, ready to write: virtio header and headers, then
    /// the payloads, with `NEEDS_CSUM` asking the stack to complete the TCP checksum
    /// (its field holds the pseudo-header sum). A single segment goes out
    /// unchanged but for that field; joined segments (and a large one,
    /// [`Gro::start_large`]) get their lengths, IPv4 checksum and flags
    /// fixed, and a GSO header.
    ///
    /// # Panics
    /// If nothing is pending.
    pub fn finish(&mut self) -> Joined<'_, S> {
        let p = self.pending.take().expect("finish() with a pending frame");
        let seg = p.first;
        let (l3, l4) = (VNET_HDR_LEN + ETH_LEN, VNET_HDR_LEN + seg.l4);
        let total = self.head.len() + p.payload_len;
        let mut header = vnet::Repr {
            flags: vnet::FLAG_NEEDS_CSUM,
            hdr_len: seg.payload as u16,
            csum_start: seg.l4 as u16,
            csum_offset: 16,
            ..vnet::Repr::PLAIN
        };
        if p.segments > 1 || seg.payload_len() > p.mss {
            let ip_len = (total - l3) as u16;
            if seg.ipv4 {
                self.head[l3 + 2..l3 + 4].copy_from_slice(&ip_len.to_be_bytes());
                self.head[l3 + 10..l3 + 12].fill(0);
                let csum = checksum::finish(checksum::add(0, &self.head[l3..l4]));
                self.head[l3 + 10..l3 + 12].copy_from_slice(&csum.to_be_bytes());
            } else {
                self.head[l3 + 4..l3 + 6].copy_from_slice(&(ip_len - 40).to_be_bytes());
            }
            self.head[l4 + 13] = p.flags;
            let gso = if seg.ipv4 { GsoType::TcpV4 } else { GsoType::TcpV6 };
            header.gso_type = gso.to_raw();
            header.gso_size = p.mss as u16;
        }
        // CHECKSUM_PARTIAL: the field holds the pseudo-header sum, the stack adds the rest.
        let partial = checksum::fold(pseudo(&self.head[VNET_HDR_LEN..], &seg, (total - l4) as u32));
        self.head[l4 + 16..l4 + 18].copy_from_slice(&partial.to_be_bytes());
        header.emit(&mut self.head);
        Joined { head: &self.head, payloads: &self.payloads, segments: p.segments, deferred: p.deferred }
    }
}

#[cfg(test)]
mod tests {
    use etherparse::PacketBuilder;

    use super::*;
    use crate::offload;

    /// The tests' segments are their own sources.
    type TestGro<'a> = Gro<&'a [u8]>;

    fn start<'a>(gro: &mut TestGro<'a>, eth: &'a [u8], integrity: Integrity) -> bool {
        gro.start(eth, integrity, eth)
    }

    fn append<'a>(gro: &mut TestGro<'a>, eth: &'a [u8], integrity: Integrity) -> bool {
        gro.append(eth, integrity, eth)
    }

    fn start_large<'a>(gro: &mut TestGro<'a>, eth: &'a [u8], integrity: Integrity, mss: usize) -> bool {
        gro.start_large(eth, integrity, mss, eth)
    }

    fn payload(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 13 + i / 7) as u8).collect()
    }

    /// A 20 000-byte TSO frame cut as a sender would, timestamps included.
    fn segments(v4: bool) -> Vec<Vec<u8>> {
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let b = if v4 { b.ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64) } else { b.ipv6([0xfd; 16], [0xfe; 16], 64) };
        let mut b = b.tcp(40000, 5201, 7_000_000, 502).ack(99).psh();
        b = b.options(&[etherparse::TcpOptionElement::Timestamp(1, 2)]).unwrap();
        let mut frame = Vec::new();
        b.write(&mut frame, &payload(20_000)).unwrap();
        let mut out = Vec::new();
        let gso = if v4 { GsoType::TcpV4 } else { GsoType::TcpV6 };
        let segs =
            offload::segment(&frame, gso, 1388, 1450, offload::Room::NONE, offload::L4Checksum::Complete, &mut out)
                .unwrap();
        out.chunks(segs.stride).map(<[u8]>::to_vec).collect()
    }

    /// Splits a joined frame back with `offload::segment` and checks it
    /// gives the same bytes: the round trip a receiving stack relies on.
    fn check_round_trip(joined: &[u8], original: &[Vec<u8>], v4: bool) {
        let hdr = &joined[..VNET_HDR_LEN];
        assert_eq!(hdr[0], vnet::FLAG_NEEDS_CSUM);
        assert_eq!(GsoType::from_raw(hdr[1]), if v4 { GsoType::TcpV4 } else { GsoType::TcpV6 });
        let mss = usize::from(u16::from_le_bytes([hdr[4], hdr[5]]));
        assert_eq!(mss, if v4 { 1388 } else { 1378 }, "gso_size is the payload per segment");
        let gso = if v4 { GsoType::TcpV4 } else { GsoType::TcpV6 };
        let mut out = Vec::new();
        let segs = offload::segment(
            &joined[VNET_HDR_LEN..],
            gso,
            mss,
            65535,
            offload::Room::NONE,
            offload::L4Checksum::Complete,
            &mut out,
        )
        .unwrap();
        let again: Vec<Vec<u8>> = out.chunks(segs.stride).map(<[u8]>::to_vec).collect();
        assert_eq!(again.len(), original.len());
        // IPv4 ids count up from the first one in both.
        for (i, (a, b)) in again.iter().zip(original).enumerate() {
            assert_eq!(a, b, "segment {i} differs after the round trip");
        }
    }

    #[test]
    fn joins_a_tso_burst_v4_and_v6() {
        for v4 in [true, false] {
            let segs = segments(v4);
            assert_eq!(segs.len(), 15);
            let mut gro = Gro::new();
            assert!(start(&mut gro, &segs[0], Integrity::Verify));
            for s in &segs[1..] {
                assert!(append(&mut gro, s, Integrity::Verify), "v4={v4}: a following segment was refused");
            }
            let joined = gro.finish().to_vec();
            check_round_trip(&joined, &segs, v4);
            // The partial checksum covers the pseudo header of the whole segment.
            assert!(!gro.is_pending());
        }
    }

    #[test]
    fn refuses_gaps_reordering_and_other_flows() {
        let segs = segments(true);
        let mut gro = Gro::new();
        assert!(start(&mut gro, &segs[0], Integrity::Verify));
        assert!(!append(&mut gro, &segs[2], Integrity::Verify), "a gap");
        assert!(append(&mut gro, &segs[1], Integrity::Verify));
        assert!(!append(&mut gro, &segs[1], Integrity::Verify), "a duplicate");
        let mut other = segs[2].clone();
        other[14 + 20] ^= 1; // another source port (checksum now wrong too)
        assert!(!append(&mut gro, &other, Integrity::Verify));
        let mut corrupt = segs[2].clone();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        assert!(!append(&mut gro, &corrupt, Integrity::Verify), "a bad checksum");
        assert!(append(&mut gro, &segs[2], Integrity::Verify));
        let joined = gro.finish().to_vec();
        assert_eq!(GsoType::from_raw(joined[1]), GsoType::TcpV4);
    }

    /// Sets the 16-bit word at `at` to `value`, updating the TCP checksum
    /// at `csum_at` incrementally (RFC 1624), so the segment stays valid.
    fn set_word(frame: &mut [u8], at: usize, value: u16, csum_at: usize) {
        let word = |f: &[u8], i: usize| u32::from(u16::from_be_bytes([f[i], f[i + 1]]));
        let mut sum = (!word(frame, csum_at) & 0xffff) + (!word(frame, at) & 0xffff) + u32::from(value);
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        frame[at..at + 2].copy_from_slice(&value.to_be_bytes());
        frame[csum_at..csum_at + 2].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    }

    #[test]
    fn a_segment_with_another_urgent_pointer_is_not_joined() {
        let segs = segments(true);
        let tcp = 14 + 20;
        let mut urgent = segs[1].clone();
        set_word(&mut urgent, tcp + 18, 0x20, tcp + 16);
        let mut gro = Gro::new();
        assert!(start(&mut gro, &urgent, Integrity::Verify), "a valid segment (its checksum kept right) starts a run");
        gro.finish();
        assert!(start(&mut gro, &segs[0], Integrity::Verify));
        assert!(!append(&mut gro, &urgent, Integrity::Verify), "joined, the pointer would be lost");
        assert!(append(&mut gro, &segs[1], Integrity::Verify));
    }

    #[test]
    fn psh_and_short_segments_end_a_run() {
        let segs = segments(true);
        let mut gro = Gro::new();
        assert!(start(&mut gro, &segs[13], Integrity::Verify));
        assert!(append(&mut gro, &segs[14], Integrity::Verify), "the short last segment joins");
        assert!(!append(&mut gro, &segs[0], Integrity::Verify), "nothing follows it");
        // The last segment carries PSH: it joins but ends the run.
        let joined = gro.finish().to_vec();
        assert_eq!(joined[VNET_HDR_LEN + 14 + 20 + 13] & TCP_PSH, TCP_PSH);
    }

    /// A run of one: unchanged but for its checksum field, which now holds
    /// the pseudo-header sum, behind a header asking the stack to finish it.
    #[test]
    fn a_single_segment_goes_up_with_needs_csum() {
        let segs = segments(true);
        let mut gro = Gro::new();
        assert!(start(&mut gro, &segs[3], Integrity::Verify));
        let out = gro.finish();
        assert_eq!((out.segments, out.deferred), (1, 0));
        let out = out.to_vec();
        // NEEDS_CSUM, no GSO, hdr_len 66 (Ethernet, IPv4, TCP with timestamps), csum at 34 + 16.
        assert_eq!(&out[..VNET_HDR_LEN], &[0x01, 0x00, 66, 0, 0, 0, 34, 0, 16, 0]);
        let field = VNET_HDR_LEN + 34 + 16;
        assert_eq!(&out[VNET_HDR_LEN..field], &segs[3][..field - VNET_HDR_LEN]);
        assert_eq!(&out[field + 2..], &segs[3][field + 2 - VNET_HDR_LEN..]);
        let mut completed = out[VNET_HDR_LEN..].to_vec();
        offload::complete_checksum(&mut completed, 34, 16).unwrap();
        assert_eq!(completed, segs[3], "finished by the stack, the checksum is the segment's own");
    }

    /// The same burst as a switchd peer sends it ([`offload::L4Checksum::Partial`]).
    fn partial_segments(v4: bool) -> Vec<Vec<u8>> {
        segments(v4)
            .into_iter()
            .map(|mut s| {
                let (l4, tcp_len) = if v4 { (34, s.len() - 34) } else { (54, s.len() - 54) };
                let ip = &s[14..];
                let pseudo = if v4 {
                    switchd_wire::ipv4::Packet::new_unchecked(ip).pseudo_header(tcp_len as u32)
                } else {
                    switchd_wire::ipv6::Packet::new_unchecked(ip).pseudo_header(Protocol::Tcp, tcp_len as u32)
                };
                s[l4 + 16..l4 + 18].copy_from_slice(&checksum::fold(pseudo).to_be_bytes());
                s
            })
            .collect()
    }

    #[test]
    fn deferred_segments_join_unverified_and_are_counted() {
        for v4 in [true, false] {
            let segs = partial_segments(v4);
            let mut gro = Gro::new();
            assert!(
                start(&mut gro, &segs[0], Integrity::Verify),
                "v4={v4}: a deferred checksum cannot verify, and need not"
            );
            for s in &segs[1..] {
                assert!(append(&mut gro, s, Integrity::Verify), "v4={v4}: a following deferred segment was refused");
            }
            let joined = gro.finish();
            assert_eq!((joined.segments, joined.deferred), (15, 15));
            // The joined frame is the one complete segments make.
            let mut again = Gro::new();
            let complete = segments(v4);
            assert!(start(&mut again, &complete[0], Integrity::Verify));
            for s in &complete[1..] {
                assert!(append(&mut again, s, Integrity::Verify));
            }
            let expected = again.finish();
            assert_eq!(expected.deferred, 0);
            assert_eq!(joined.to_vec(), expected.to_vec(), "v4={v4}");
        }
    }

    #[test]
    fn the_same_segments_as_switchd_cuts_them() {
        // What `segment` leaves with L4Checksum::Partial is what the tests build by hand.
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]).ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64);
        let mut b = b.tcp(40000, 5201, 7_000_000, 502).ack(99).psh();
        b = b.options(&[etherparse::TcpOptionElement::Timestamp(1, 2)]).unwrap();
        let mut frame = Vec::new();
        b.write(&mut frame, &payload(20_000)).unwrap();
        let mut out = Vec::new();
        let partial = offload::L4Checksum::Partial;
        let segs =
            offload::segment(&frame, GsoType::TcpV4, 1388, 1450, offload::Room::NONE, partial, &mut out).unwrap();
        let cut: Vec<Vec<u8>> = out.chunks(segs.stride).map(<[u8]>::to_vec).collect();
        assert_eq!(cut, partial_segments(true));
    }

    #[test]
    fn a_bad_complete_checksum_is_refused_unless_sealed() {
        let segs = segments(true);
        let mut corrupt = segs[1].clone();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        let mut gro = Gro::new();
        assert!(start(&mut gro, &segs[0], Integrity::Verify));
        assert!(!append(&mut gro, &corrupt, Integrity::Verify), "plain VXLAN: verified");
        assert!(!start(&mut gro, &corrupt, Integrity::Verify));
        assert!(start(&mut gro, &segs[0], Integrity::Sealed));
        assert!(append(&mut gro, &corrupt, Integrity::Sealed), "sealed: the tag covered it, nothing is verified again");
        assert_eq!(gro.finish().deferred, 0);
    }

    /// However small the segments, a frame joins at most 64 of them.
    #[test]
    fn at_most_64_segments_are_joined() {
        let mut frame = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 5201, 1, 64240)
            .ack(9)
            .write(&mut frame, &[7u8; 100])
            .unwrap();
        let mut tiny = Vec::new();
        let segs = offload::segment(
            &frame,
            GsoType::TcpV4,
            1,
            1450,
            offload::Room::NONE,
            offload::L4Checksum::Complete,
            &mut tiny,
        )
        .unwrap();
        let segs: Vec<&[u8]> = tiny.chunks(segs.stride).collect();
        assert_eq!(segs.len(), 100);
        let mut gro = Gro::new();
        assert!(start(&mut gro, segs[0], Integrity::Verify));
        let joined = segs[1..].iter().take_while(|s| append(&mut gro, s, Integrity::Verify)).count();
        assert_eq!(joined + 1, MAX_SEGMENTS);
        assert_eq!(gro.finish().segments, MAX_SEGMENTS);
    }

    #[test]
    fn a_lone_deferred_segment_goes_up_as_it_came_with_needs_csum() {
        for v4 in [true, false] {
            let segs = partial_segments(v4);
            let mut gro = Gro::new();
            assert!(start(&mut gro, &segs[5], Integrity::Verify));
            let out = gro.finish();
            assert_eq!((out.segments, out.deferred), (1, 1));
            let (start, hdr_len) = if v4 { (34u8, 66u8) } else { (54, 86) };
            assert_eq!(&out.to_vec()[..VNET_HDR_LEN], &[0x01, 0x00, hdr_len, 0, 0, 0, start, 0, 16, 0], "v4={v4}");
            assert_eq!(&out.to_vec()[VNET_HDR_LEN..], &segs[5][..], "the field already held the pseudo-header sum");
        }
    }

    #[test]
    fn what_is_never_coalesced() {
        let mut gro = Gro::new();
        assert!(!start(&mut gro, &[0u8; 60], Integrity::Verify), "not IP");
        let mut syn = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4([1; 4], [2; 4], 9)
            .tcp(1, 2, 3, 4)
            .syn()
            .write(&mut syn, &[1, 2, 3])
            .unwrap();
        assert!(!start(&mut gro, &syn, Integrity::Verify), "SYN");
        let mut ack = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4([1; 4], [2; 4], 9)
            .tcp(1, 2, 3, 4)
            .ack(5)
            .write(&mut ack, &[])
            .unwrap();
        assert!(!start(&mut gro, &ack, Integrity::Verify), "a pure ACK");
        let mut udp = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6]).ipv4([1; 4], [2; 4], 9).udp(1, 2).write(&mut udp, &[1; 100]).unwrap();
        assert!(!start(&mut gro, &udp, Integrity::Verify), "UDP");
        let segs = segments(true);
        for n in 0..segs[0].len() {
            let _ = start(&mut gro, &segs[0][..n], Integrity::Verify);
        }
    }

    /// One 20 000-byte segment as a kernel vxlan peer's GSO leaves it (its
    /// checksum the pseudo-header sum), carried whole in one datagram.
    fn large_segment() -> Vec<u8> {
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]).ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64);
        let mut frame = Vec::new();
        b.tcp(40000, 5201, 7_000_000, 502).ack(99).write(&mut frame, &payload(20_000)).unwrap();
        let pseudo = ipv4::Packet::new_unchecked(&frame[14..]).pseudo_header((frame.len() - 34) as u32);
        frame[50..52].copy_from_slice(&checksum::fold(pseudo).to_be_bytes());
        frame
    }

    #[test]
    fn a_large_segment_from_the_underlay_goes_up_as_a_gso_frame() {
        let frame = large_segment();
        let datagram = [&[0x08, 0, 0, 0, 0, 0, 100, 0][..], &frame].concat();
        assert!(carries_one_frame(&datagram, 1398), "one datagram, reported as 1398-byte segments");
        assert!(!carries_one_frame(&datagram, datagram.len()), "a read of one datagram that says so");
        assert!(!carries_one_frame(&datagram[..datagram.len() - 1], 1398), "cut short");
        let mut sealed = datagram.clone();
        sealed[0] = 0x48;
        assert!(!carries_one_frame(&sealed, 1398), "switchd never sends those");
        // A burst of 1398-byte datagrams coalesced by UDP_GRO is not one.
        let segs = segments(true);
        let burst: Vec<u8> = segs.iter().flat_map(|s| [&[0x08, 0, 0, 0, 0, 0, 100, 0][..], s].concat()).collect();
        assert!(!carries_one_frame(&burst, segs[0].len() + 8));

        let mut gro = Gro::new();
        assert!(start_large(&mut gro, &frame, Integrity::Verify, 1398));
        assert!(!append(&mut gro, &segs[0], Integrity::Verify), "nothing joins it");
        let out = gro.finish();
        assert_eq!((out.segments, out.deferred), (1, 1));
        let hdr = vnet::Repr::parse(&out.to_vec()).unwrap();
        assert_eq!(
            hdr,
            vnet::Repr {
                flags: vnet::FLAG_NEEDS_CSUM,
                gso_type: GsoType::TcpV4.to_raw(),
                hdr_len: 54,
                gso_size: 1398,
                csum_start: 34,
                csum_offset: 16
            }
        );
        assert_eq!(&out.to_vec()[VNET_HDR_LEN..], &frame[..], "already as the stack wants it");
        assert!(is_tcp_segment(&frame));
        assert!(!is_tcp_segment(&frame[..40]));
    }
}
