//! Doing in software what a NIC does for offloaded frames, before they enter
//! a tunnel.
//!
//! A container's stack hands a TAP 64 KiB TCP segments (TSO) and packets
//! whose checksum it left open (`CHECKSUM_PARTIAL`). Between two TAPs they
//! travel like that; into VXLAN they cannot, since the peer may be any
//! VXLAN implementation. So, as wireguard-go does for TUN:
//!
//! - [`complete_checksum`] fills in an open checksum;
//! - [`segment`] cuts a TSO (TCP, IPv4/IPv6) or USO (UDP) frame into frames
//!   that fit the MTU, each with its own IP length, IPv4 id and header
//!   checksum, TCP sequence number and flags, and L4 checksum.
//!
//! Both write into caller-owned buffers and allocate nothing once the
//! output buffer has grown to its working size.
//!
//! A peer that is another switchd need not be sent complete TCP/UDP
//! checksums: [`L4Checksum::Partial`] leaves each segment's field holding
//! its pseudo-header sum, as `CHECKSUM_PARTIAL` does, which saves a pass
//! over every payload byte. The bytes are still covered in transit (by the
//! outer UDP checksum, which switchd always sets and the receiving kernel
//! checks, or by a sealed packet's tag). On the way out of the tunnel,
//! [`deferred_checksum`] recognises such a frame, from a switchd peer or
//! from a kernel vxlan device whose virtual underlay left its offloaded
//! checksums unfilled, so that it is handed to the receiving stack to
//! finish (virtio `NEEDS_CSUM`) rather than dropped as corrupt.

use std::ops::Range;

use switchd_wire::ethernet::{self, EtherType};
use switchd_wire::ip::Protocol;
use switchd_wire::vnet::{self, GsoType};
use switchd_wire::{checksum, ipv4, ipv6, tcp, udp};

/// What [`segment`] (and `tunnel::encapsulate`, for a frame whose checksum
/// the sender left open) leaves in each frame's TCP or UDP checksum field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum L4Checksum {
    /// The full checksum, as a NIC fills it in: what any receiver can
    /// check, and what a kernel vxlan peer's stack does check.
    #[default]
    Complete,
    /// The frame's pseudo-header sum, folded and not complemented (what
    /// `CHECKSUM_PARTIAL` leaves): for a peer that finishes it or has it
    /// finished ([`deferred_checksum`]), a switchd. One pass over the
    /// payload fewer per frame.
    Partial,
}

/// Why a frame cannot be segmented or checksummed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Headers or checksum position beyond the frame.
    Truncated,
    /// Not IPv4/IPv6 carrying the TCP or UDP that the GSO type names.
    Mismatch,
    /// The MTU leaves no room for payload after the headers.
    MtuTooSmall,
}

/// Fills in a checksum the sender left open: the field at
/// `csum_start + csum_offset` holds the pseudo-header sum, and the result
/// covers everything from `csum_start` to the end of `frame` (offsets as in
/// `virtio_net_hdr`, from the start of the Ethernet frame).
pub fn complete_checksum(frame: &mut [u8], csum_start: usize, csum_offset: usize) -> Result<(), Error> {
    let field = csum_start.checked_add(csum_offset).ok_or(Error::Truncated)?;
    if field + 2 > frame.len() {
        return Err(Error::Truncated);
    }
    let mut csum = checksum::finish(checksum::add(0, &frame[csum_start..]));
    // UDP (the checksum 6 bytes into its header) sends a zero result as all
    // ones: zero means "no checksum".
    if csum_offset == 6 && csum == 0 {
        csum = 0xffff;
    }
    frame[field..field + 2].copy_from_slice(&csum.to_be_bytes());
    Ok(())
}

/// Where a checksum left for the receiver lies in a frame, as
/// [`deferred_checksum`] found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenChecksum {
    /// Where the TCP or UDP header starts (the checksum covers from here to
    /// the end of the IP packet), from the start of the Ethernet frame.
    pub start: usize,
    /// Where the field is in that header: 16 (TCP) or 6 (UDP).
    pub offset: usize,
    /// The length of the frame up to the end of its IP packet (without any
    /// Ethernet padding, which the checksum must not cover).
    pub len: usize,
}

impl OpenChecksum {
    /// The virtio header asking the device a frame is written to (a TAP,
    /// a packet socket) to finish the checksum: `NEEDS_CSUM` at this place.
    pub fn vnet(&self) -> vnet::Repr {
        vnet::Repr {
            flags: vnet::FLAG_NEEDS_CSUM,
            csum_start: self.start as u16,
            csum_offset: self.offset as u16,
            ..vnet::Repr::PLAIN
        }
    }
}

/// Whether the TCP or UDP checksum of `eth` (an Ethernet frame from a
/// tunnel) was deferred by its sender: the field holds the pseudo-header
/// sum of the segment, folded, not complemented, which is what
/// `CHECKSUM_PARTIAL` leaves there (a switchd peer sending
/// [`L4Checksum::Partial`], or a kernel vxlan device on a veth or virtio
/// underlay, which never fills offloaded checksums in). Such a frame cannot
/// be verified, only finished; `None` for every other frame.
///
/// Only the forms a sender leaves open are recognised: IPv4 that is no
/// fragment, IPv6 without extension headers (whose routing header would
/// change the pseudo header), TCP, and UDP whose length is the IP
/// payload's. A complete checksum that happens to equal the pseudo-header
/// sum (one frame in 65536) is mistaken for a deferred one harmlessly:
/// finishing it gives the same value back.
pub fn deferred_checksum(eth: &[u8]) -> Option<OpenChecksum> {
    let frame = ethernet::Frame::new_checked(eth).ok()?;
    let l3 = ethernet::HEADER_LEN;
    let ip = &eth[l3..];
    let (l4, end, protocol, v4) = match frame.ethertype() {
        EtherType::Ipv4 => {
            let p = ipv4::Packet::new_checked(ip).ok()?;
            if p.is_fragment() {
                return None;
            }
            (l3 + p.header_len(), l3 + usize::from(p.total_len()), p.protocol(), true)
        }
        EtherType::Ipv6 => {
            let p = ipv6::Packet::new_checked(ip).ok()?;
            (l3 + ipv6::HEADER_LEN, l3 + ipv6::HEADER_LEN + usize::from(p.payload_len()), p.next_header(), false)
        }
        _ => return None,
    };
    let len = end - l4;
    let offset = match protocol {
        Protocol::Tcp if len >= tcp::MIN_HEADER_LEN => 16,
        Protocol::Udp if len >= udp::HEADER_LEN && usize::from(be16(eth, l4 + 4)) == len => 6,
        _ => return None,
    };
    let pseudo = if v4 {
        ipv4::Packet::new_unchecked(ip).pseudo_header(len as u32)
    } else {
        ipv6::Packet::new_unchecked(ip).pseudo_header(protocol, len as u32)
    };
    (be16(eth, l4 + offset) == checksum::fold(pseudo)).then_some(OpenChecksum { start: l4, offset, len: end })
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Where the headers of a frame are.
#[derive(Debug, Clone, Copy)]
struct Layout {
    /// Offsets from the start of the Ethernet frame.
    l3: usize,
    l4: usize,
    payload: usize,
    /// The end of the IP packet (frames may carry padding after it).
    end: usize,
    ipv4: bool,
    tcp: bool,
    /// No IPv4 fragment, no IPv6 extension header: a form whose partial
    /// checksum a receiver recognises ([`deferred_checksum`]).
    plain: bool,
}

fn offset_in(frame: &[u8], part: &[u8]) -> usize {
    part.as_ptr() as usize - frame.as_ptr() as usize
}

fn layout(frame: &[u8]) -> Result<Layout, Error> {
    let eth = ethernet::Frame::new_checked(frame).map_err(|_| Error::Truncated)?;
    let l3 = ethernet::HEADER_LEN;
    let ip = &frame[l3..];
    let (ipv4, end, protocol, upper) = match eth.ethertype() {
        EtherType::Ipv4 => {
            let p = ipv4::Packet::new_checked(ip).map_err(|_| Error::Truncated)?;
            if p.is_fragment() {
                // Cut anyway (the checksums computed as asked), but never
                // left partial: no receiver would recognise them.
                let upper = &ip[p.header_len()..usize::from(p.total_len())];
                let (total, protocol) = (usize::from(p.total_len()), p.protocol());
                return finish_layout(frame, l3, true, l3 + total, protocol, upper, false);
            }
            (true, l3 + usize::from(p.total_len()), p.protocol(), &ip[p.header_len()..usize::from(p.total_len())])
        }
        EtherType::Ipv6 => {
            let p = ipv6::Packet::new_checked(ip).map_err(|_| Error::Truncated)?;
            let end = l3 + ipv6::HEADER_LEN + usize::from(p.payload_len());
            match ipv6::upper_layer(p.next_header(), &ip[ipv6::HEADER_LEN..end - l3]).map_err(|_| Error::Truncated)? {
                ipv6::UpperLayer::Protocol(protocol, upper) => (false, end, protocol, upper),
                ipv6::UpperLayer::LaterFragment => return Err(Error::Mismatch),
            }
        }
        _ => return Err(Error::Mismatch),
    };
    let plain = ipv4 || offset_in(frame, upper) == l3 + ipv6::HEADER_LEN;
    finish_layout(frame, l3, ipv4, end, protocol, upper, plain)
}

/// The rest of [`layout`], from the upper layer on.
fn finish_layout(
    frame: &[u8],
    l3: usize,
    ipv4: bool,
    end: usize,
    protocol: Protocol,
    upper: &[u8],
    plain: bool,
) -> Result<Layout, Error> {
    let l4 = offset_in(frame, upper);
    let (payload, tcp) = match protocol {
        Protocol::Tcp => (l4 + tcp::Packet::new_checked(upper).map_err(|_| Error::Truncated)?.header_len(), true),
        Protocol::Udp if upper.len() >= udp::HEADER_LEN => (l4 + udp::HEADER_LEN, false),
        Protocol::Udp => return Err(Error::Truncated),
        _ => return Err(Error::Mismatch),
    };
    Ok(Layout { l3, l4, payload, end: end.min(frame.len()), ipv4, tcp, plain })
}

/// How [`segment`] laid out its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segments {
    /// How many segments.
    pub count: usize,
    /// The length of every segment but the last, headroom included; the
    /// last may be shorter. (What `UDP_SEGMENT` calls the segment size.)
    pub stride: usize,
    /// The length of all segments together.
    pub len: usize,
}

/// Zero bytes left around each segment for the caller: a VXLAN header in
/// front; a sealed packet's header in front and its tag behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Room {
    pub head: usize,
    pub tail: usize,
}

impl Room {
    pub const NONE: Room = Room { head: 0, tail: 0 };

    pub const fn head(head: usize) -> Room {
        Room { head, tail: 0 }
    }

    fn len(self) -> usize {
        self.head + self.tail
    }
}

/// Cuts `frame` (an Ethernet frame whose IP payload is one large TCP or UDP
/// segment) into frames of at most `mss` payload bytes that also fit `mtu`
/// (an L3 MTU), appended one after another to `out`, each inside `room`.
/// `gso` names what the frame carries: TCP over IPv4 or IPv6, or UDP;
/// `l4_checksum` what each segment's checksum field holds (complete all the
/// same for an IPv4 fragment or IPv6 with extension headers, whose partial
/// checksums no receiver would recognise).
pub fn segment(
    frame: &[u8],
    gso: GsoType,
    mss: usize,
    mtu: usize,
    room: Room,
    l4_checksum: L4Checksum,
    out: &mut Vec<u8>,
) -> Result<Segments, Error> {
    cut(frame, Cut { gso, mss, mtu, room, l4_checksum }, out, None)
}

/// What [`segment`] does, but without copying the payload: `out` gets only
/// each segment's room in front and headers (no room behind: a gathered
/// segment ends with its payload), and `payloads` each segment's payload,
/// as a range of `frame`. Segment `i` on the wire is its headers followed
/// by `frame[payloads[i]]`: what a gathering send (`sendmsg` with iovecs)
/// puts together. The returned [`Segments`] describe the wire, payloads
/// included.
pub fn segment_headers(
    frame: &[u8],
    how: Cut,
    out: &mut Vec<u8>,
    payloads: &mut Vec<Range<usize>>,
) -> Result<Segments, Error> {
    cut(frame, Cut { room: Room::head(how.room.head), ..how }, out, Some(payloads))
}

/// How to cut a frame into segments: see [`segment`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    pub gso: GsoType,
    pub mss: usize,
    pub mtu: usize,
    pub room: Room,
    pub l4_checksum: L4Checksum,
}

/// Cuts as `how` says; copies each payload behind its headers, or, with
/// `gather`, records where it is in `frame`.
fn cut(
    frame: &[u8],
    Cut { gso, mss, mtu, room, l4_checksum }: Cut,
    out: &mut Vec<u8>,
    mut gather: Option<&mut Vec<Range<usize>>>,
) -> Result<Segments, Error> {
    let at = layout(frame)?;
    let l4_checksum = if at.plain { l4_checksum } else { L4Checksum::Complete };
    let matches = match gso {
        GsoType::TcpV4 => at.ipv4 && at.tcp,
        GsoType::TcpV6 => !at.ipv4 && at.tcp,
        GsoType::UdpL4 => !at.tcp,
        GsoType::None | GsoType::Udp | GsoType::Unknown(_) => false,
    };
    if !matches {
        return Err(Error::Mismatch);
    }
    let headers = at.payload - at.l3;
    let mss = mss.min(mtu.checked_sub(headers).ok_or(Error::MtuTooSmall)?);
    if mss == 0 {
        return Err(Error::MtuTooSmall);
    }
    let payload = &frame[at.payload..at.end.max(at.payload)];
    let count = payload.len().div_ceil(mss).max(1);
    let stride = room.len() + at.payload + mss;
    let len = room.len() * count + at.payload * count + payload.len();
    let start = out.len();
    let copied = if gather.is_some() { 0 } else { payload.len() };
    out.reserve(len - payload.len() + copied);

    let ip = |o: usize| &frame[at.l3 + o..];
    let ipv4_id = u16::from_be_bytes([ip(4)[0], ip(4)[1]]);
    let tcp_seq = u32::from_be_bytes([frame[at.l4 + 4], frame[at.l4 + 5], frame[at.l4 + 6], frame[at.l4 + 7]]);
    let pseudo = |l4_len: u32| {
        let protocol = if at.tcp { 6 } else { 17 };
        if at.ipv4 {
            let b = ip(12);
            checksum::pseudo_v4([b[0], b[1], b[2], b[3]].into(), [b[4], b[5], b[6], b[7]].into(), protocol, l4_len)
        } else {
            let b = ip(8);
            let src: [u8; 16] = b[..16].try_into().expect("40-byte IPv6 header");
            let dst: [u8; 16] = b[16..32].try_into().expect("40-byte IPv6 header");
            checksum::pseudo_v6(src.into(), dst.into(), protocol, l4_len)
        }
    };

    // An empty payload still makes one (header-only) segment.
    for (i, chunk) in payload.chunks(mss).chain(std::iter::once(&[][..])).take(count).enumerate() {
        out.resize(out.len() + room.head, 0);
        let seg_start = out.len();
        out.extend_from_slice(&frame[..at.payload]);
        // The payload is copied here, or stays in the frame (its sum then
        // added to the headers' below).
        let apart = match gather.as_deref_mut() {
            Some(payloads) => {
                let from = at.payload + i * mss;
                payloads.push(from..from + chunk.len());
                chunk
            }
            None => {
                out.extend_from_slice(chunk);
                &[]
            }
        };
        let seg = &mut out[seg_start..];
        let l3_len = (headers + chunk.len()) as u16;
        let l4_len = (at.payload - at.l4 + chunk.len()) as u32;
        if at.ipv4 {
            let hdr = &mut seg[at.l3..at.l4];
            hdr[2..4].copy_from_slice(&l3_len.to_be_bytes());
            hdr[4..6].copy_from_slice(&ipv4_id.wrapping_add(i as u16).to_be_bytes());
            hdr[10..12].fill(0);
            let csum = checksum::finish(checksum::add(0, hdr));
            hdr[10..12].copy_from_slice(&csum.to_be_bytes());
        } else {
            let ext_and_payload = l3_len - 40;
            seg[at.l3 + 4..at.l3 + 6].copy_from_slice(&ext_and_payload.to_be_bytes());
        }
        let l4 = &mut seg[at.l4..];
        if at.tcp {
            l4[4..8].copy_from_slice(&tcp_seq.wrapping_add((i * mss) as u32).to_be_bytes());
            if i + 1 < count {
                l4[13] &= !(0x01 | 0x08); // FIN and PSH only on the last segment
            }
            if i > 0 {
                l4[13] &= !0x80; // CWR only on the first
            }
            let csum = match l4_checksum {
                L4Checksum::Partial => checksum::fold(pseudo(l4_len)),
                L4Checksum::Complete => {
                    l4[16..18].fill(0);
                    // A TCP header is a multiple of 4 bytes long: its sum and
                    // the payload's add up as one.
                    checksum::finish(checksum::add(checksum::add(pseudo(l4_len), l4), apart))
                }
            };
            l4[16..18].copy_from_slice(&csum.to_be_bytes());
        } else {
            l4[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            let csum = match l4_checksum {
                // Never zero: the pseudo header includes a non-zero length.
                L4Checksum::Partial => checksum::fold(pseudo(l4_len)),
                L4Checksum::Complete => {
                    l4[6..8].fill(0);
                    match checksum::finish(checksum::add(checksum::add(pseudo(l4_len), l4), apart)) {
                        0 => 0xffff,
                        c => c,
                    }
                }
            };
            l4[6..8].copy_from_slice(&csum.to_be_bytes());
        }
        out.resize(out.len() + room.tail, 0);
    }
    debug_assert_eq!(out.len(), start + len - payload.len() + copied);
    Ok(Segments { count, stride, len })
}

#[cfg(test)]
mod tests {
    use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TcpHeaderSlice, TransportSlice};

    use super::*;

    const SRC: [u8; 4] = [10, 0, 0, 1];
    const DST: [u8; 4] = [10, 0, 0, 2];

    fn payload(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    fn tcp_v4(len: usize, fin_psh: bool) -> Vec<u8> {
        let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(SRC, DST, 64)
            .tcp(40000, 5201, 1_000_000, 64240)
            .ack(77)
            .cwr();
        if fin_psh {
            b = b.fin().psh();
        }
        let mut frame = Vec::new();
        b.write(&mut frame, &payload(len)).unwrap();
        frame
    }

    /// Checks every segment as a receiver would, and returns the payloads joined.
    fn verify(out: &[u8], segs: Segments, headroom: usize, v4: bool) -> Vec<u8> {
        let mut joined = Vec::new();
        let mut at = 0;
        let mut first_id = None;
        for i in 0..segs.count {
            let end = (at + segs.stride).min(segs.len);
            let seg = &out[at + headroom..end];
            assert!(out[at..at + headroom].iter().all(|b| *b == 0), "headroom zeroed");
            let p = SlicedPacket::from_ethernet(seg).expect("segment parses");
            let Some(TransportSlice::Tcp(tcp)) = &p.transport else { panic!("tcp") };
            let hdr = TcpHeaderSlice::from_slice(tcp.slice()).unwrap();
            match &p.net {
                Some(NetSlice::Ipv4(ip)) => {
                    assert!(v4);
                    let h = ip.header().to_header();
                    assert_eq!(h.header_checksum, h.calc_header_checksum(), "IPv4 header checksum of segment {i}");
                    assert_eq!(usize::from(h.total_len), seg.len() - 14);
                    let first = *first_id.get_or_insert(h.identification);
                    assert_eq!(h.identification, first.wrapping_add(i as u16), "IPv4 id counts up per segment");
                    assert_eq!(
                        hdr.checksum(),
                        hdr.calc_checksum_ipv4(&ip.header(), tcp.payload()).unwrap(),
                        "TCP checksum of segment {i}"
                    );
                }
                Some(NetSlice::Ipv6(ip)) => {
                    assert!(!v4);
                    assert_eq!(usize::from(ip.header().payload_length()), seg.len() - 54);
                    assert_eq!(hdr.checksum(), hdr.calc_checksum_ipv6(&ip.header(), tcp.payload()).unwrap());
                }
                _ => panic!("ip"),
            }
            assert_eq!(hdr.sequence_number(), 1_000_000 + joined.len() as u32);
            assert_eq!(hdr.cwr(), i == 0, "CWR on the first segment only");
            let last = i + 1 == segs.count;
            assert_eq!(hdr.fin(), last && hdr.fin(), "FIN on the last only");
            if !last {
                assert!(!hdr.psh() && !hdr.fin());
            }
            joined.extend_from_slice(tcp.payload());
            at = end;
        }
        assert_eq!(at, segs.len);
        joined
    }

    #[test]
    fn tso_v4_to_mss_with_headroom() {
        let frame = tcp_v4(10_000, true);
        let mut out = Vec::new();
        let segs = segment(&frame, GsoType::TcpV4, 1448, 1500, Room::head(8), L4Checksum::Complete, &mut out).unwrap();
        assert_eq!(segs.count, 7); // 6 x 1448 + 1312
        assert_eq!(segs.stride, 8 + 14 + 20 + 20 + 1448);
        assert_eq!(verify(&out, segs, 8, true), payload(10_000));
        // The last segment keeps FIN and PSH.
        let last = &out[6 * segs.stride + 8..];
        let p = SlicedPacket::from_ethernet(last).unwrap();
        let Some(TransportSlice::Tcp(tcp)) = p.transport else { panic!() };
        assert!(tcp.fin() && tcp.psh());
    }

    #[test]
    fn mss_is_clamped_to_the_mtu() {
        let frame = tcp_v4(5000, false);
        let mut out = Vec::new();
        // A sender claiming a 9000-byte MSS on a 1450 network still gets 1410-byte segments.
        let segs = segment(&frame, GsoType::TcpV4, 9000, 1450, Room::NONE, L4Checksum::Complete, &mut out).unwrap();
        assert_eq!(segs.stride, 14 + 1450);
        assert_eq!(segs.count, 4);
        assert_eq!(verify(&out, segs, 0, true), payload(5000));
    }

    #[test]
    fn tso_v6() {
        let mut frame = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv6([0xfd; 16], [0xfe; 16], 64)
            .tcp(40000, 5201, 1_000_000, 64240)
            .cwr()
            .write(&mut frame, &payload(4000))
            .unwrap();
        let mut out = Vec::new();
        let segs = segment(&frame, GsoType::TcpV6, 1428, 1500, Room::head(8), L4Checksum::Complete, &mut out).unwrap();
        assert_eq!(segs.count, 3);
        assert_eq!(verify(&out, segs, 8, false), payload(4000));
        assert_eq!(
            segment(&frame, GsoType::TcpV4, 1428, 1500, Room::head(8), L4Checksum::Complete, &mut out).unwrap_err(),
            Error::Mismatch
        );
    }

    #[test]
    fn uso_segments_carry_their_own_udp_headers() {
        let mut frame = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(SRC, DST, 64)
            .udp(5000, 6000)
            .write(&mut frame, &payload(3000))
            .unwrap();
        let mut out = Vec::new();
        let segs = segment(&frame, GsoType::UdpL4, 1200, 1500, Room::head(8), L4Checksum::Complete, &mut out).unwrap();
        assert_eq!(segs.count, 3);
        let mut joined = Vec::new();
        for i in 0..3 {
            let start = i * segs.stride + 8;
            let end = ((i + 1) * segs.stride).min(segs.len);
            let p = SlicedPacket::from_ethernet(&out[start..end]).unwrap();
            let (Some(NetSlice::Ipv4(ip)), Some(TransportSlice::Udp(udp))) = (&p.net, &p.transport) else { panic!() };
            let h = udp.to_header();
            assert_eq!(usize::from(h.length), 8 + udp.payload().len());
            assert_eq!(h.checksum, h.calc_checksum_ipv4(&ip.header().to_header(), udp.payload()).unwrap());
            joined.extend_from_slice(udp.payload());
        }
        assert_eq!(joined, payload(3000));
    }

    #[test]
    fn small_gso_frame_is_one_segment() {
        let frame = tcp_v4(100, false);
        let mut out = Vec::new();
        let segs = segment(&frame, GsoType::TcpV4, 1448, 1500, Room::head(8), L4Checksum::Complete, &mut out).unwrap();
        assert_eq!((segs.count, segs.len), (1, 8 + frame.len()));
        verify(&out, segs, 8, true);
    }

    #[test]
    fn refuses_what_it_cannot_cut() {
        let mut out = Vec::new();
        let arp = [0u8; 42];
        assert!(segment(&arp, GsoType::TcpV4, 1448, 1500, Room::head(8), L4Checksum::Complete, &mut out).is_err());
        let frame = tcp_v4(100, false);
        assert_eq!(
            segment(&frame, GsoType::TcpV4, 1448, 40, Room::head(8), L4Checksum::Complete, &mut out).unwrap_err(),
            Error::MtuTooSmall
        );
        assert_eq!(
            segment(&frame, GsoType::UdpL4, 1448, 1500, Room::head(8), L4Checksum::Complete, &mut out).unwrap_err(),
            Error::Mismatch
        );
        assert!(
            segment(&frame[..30], GsoType::TcpV4, 1448, 1500, Room::head(8), L4Checksum::Complete, &mut out).is_err()
        );
    }

    #[test]
    fn completes_partial_checksums() {
        // A TCP packet as a stack with checksum offload leaves it: the field
        // holds the pseudo-header sum, not inverted.
        let mut frame = tcp_v4(333, false);
        let expected = u16::from_be_bytes([frame[14 + 20 + 16], frame[14 + 20 + 17]]);
        let tcp_len = (frame.len() - 34) as u32;
        let partial = checksum::fold(checksum::pseudo_v4(SRC.into(), DST.into(), 6, tcp_len));
        frame[50..52].copy_from_slice(&partial.to_be_bytes());
        complete_checksum(&mut frame, 34, 16).unwrap();
        assert_eq!(u16::from_be_bytes([frame[50], frame[51]]), expected);
        assert_eq!(complete_checksum(&mut frame, 34, 60_000).unwrap_err(), Error::Truncated);
        assert_eq!(complete_checksum(&mut frame, usize::MAX, 16).unwrap_err(), Error::Truncated);
    }

    /// Segments of `frame` cut both ways; each partial one holds its
    /// pseudo-header sum, and is the complete one once finished.
    fn check_partial_cut(frame: &[u8], gso: GsoType, mss: usize, v4: bool, tcp: bool) {
        let (mut complete, mut partial) = (Vec::new(), Vec::new());
        let c = segment(frame, gso, mss, 1500, Room::head(8), L4Checksum::Complete, &mut complete).unwrap();
        let p = segment(frame, gso, mss, 1500, Room::head(8), L4Checksum::Partial, &mut partial).unwrap();
        assert_eq!(c, p, "the same layout either way");
        assert!(p.count > 1);
        let l4 = if v4 { 34 } else { 54 };
        let offset = if tcp { 16 } else { 6 };
        for (i, (a, b)) in complete.chunks(c.stride).zip(partial.chunks(p.stride)).enumerate() {
            let (a, b) = (&a[8..], &b[8..]);
            let found = deferred_checksum(b).unwrap_or_else(|| panic!("segment {i} not recognised as deferred"));
            assert_eq!(found, OpenChecksum { start: l4, offset, len: b.len() });
            assert_eq!(deferred_checksum(a), None, "segment {i}: a complete checksum taken for a deferred one");
            assert_eq!(a[..l4 + offset], b[..l4 + offset], "segment {i}: only the checksum differs");
            assert_eq!(a[l4 + offset + 2..], b[l4 + offset + 2..], "segment {i}: only the checksum differs");
            let mut finished = b.to_vec();
            complete_checksum(&mut finished, l4, offset).unwrap();
            assert_eq!(finished, a, "segment {i}: finished, it is the complete one");
        }
    }

    /// Gathered segments (headers apart, payloads left in the frame) put
    /// back together are byte for byte the copied ones, checksums and all.
    #[test]
    fn gathered_segments_are_the_copied_ones() {
        let mut udp = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(SRC, DST, 64)
            .udp(4000, 5000)
            .write(&mut udp, &payload(3001))
            .unwrap();
        let mut v6 = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv6([0xfd; 16], [0xfe; 16], 64)
            .tcp(40000, 5201, 1_000_000, 64240)
            .write(&mut v6, &payload(4001))
            .unwrap();
        let frames = [(tcp_v4(5000, true), GsoType::TcpV4), (v6, GsoType::TcpV6), (udp, GsoType::UdpL4)];
        for (frame, gso) in &frames {
            for l4_checksum in [L4Checksum::Complete, L4Checksum::Partial] {
                let how = Cut { gso: *gso, mss: 1397, mtu: 1450, room: Room::head(8), l4_checksum };
                let mut copied = Vec::new();
                let c = segment(frame, how.gso, how.mss, how.mtu, how.room, l4_checksum, &mut copied).unwrap();
                let (mut heads, mut payloads) = (vec![0xee], Vec::new());
                let g = segment_headers(frame, how, &mut heads, &mut payloads).unwrap();
                assert_eq!(c, g, "{gso:?}: the same wire layout");
                assert_eq!(payloads.len(), c.count);
                let head_len = (heads.len() - 1) / c.count;
                let wire: Vec<u8> = heads[1..]
                    .chunks(head_len)
                    .zip(&payloads)
                    .flat_map(|(head, payload)| [head, &frame[payload.clone()]].concat())
                    .collect();
                assert_eq!(wire, copied, "{gso:?} {l4_checksum:?}: gathered, the same bytes");
            }
        }
    }

    #[test]
    fn segments_behind_ipv6_extension_headers_keep_complete_checksums() {
        let mut v6 = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv6([0xfd; 16], [0xfe; 16], 64)
            .tcp(40000, 5201, 1_000_000, 64240)
            .write(&mut v6, &payload(4000))
            .unwrap();
        // A hop-by-hop header (8 bytes of padding options) before TCP.
        let mut hop = v6[..54].to_vec();
        hop[14 + 6] = 0;
        hop[14 + 4..14 + 6].copy_from_slice(&(u16::from_be_bytes([v6[18], v6[19]]) + 8).to_be_bytes());
        hop.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
        hop.extend_from_slice(&v6[54..]);
        let (mut complete, mut partial) = (Vec::new(), Vec::new());
        segment(&hop, GsoType::TcpV6, 1420, 1500, Room::NONE, L4Checksum::Complete, &mut complete).unwrap();
        segment(&hop, GsoType::TcpV6, 1420, 1500, Room::NONE, L4Checksum::Partial, &mut partial).unwrap();
        assert_eq!(complete, partial, "no receiver would recognise them partial");
    }

    #[test]
    fn segments_left_with_partial_checksums() {
        check_partial_cut(&tcp_v4(10_000, true), GsoType::TcpV4, 1448, true, true);
        let mut v6 = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv6([0xfd; 16], [0xfe; 16], 64)
            .tcp(40000, 5201, 1_000_000, 64240)
            .write(&mut v6, &payload(4000))
            .unwrap();
        check_partial_cut(&v6, GsoType::TcpV6, 1428, false, true);
        let mut udp4 = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(SRC, DST, 64)
            .udp(5000, 6000)
            .write(&mut udp4, &payload(3000))
            .unwrap();
        check_partial_cut(&udp4, GsoType::UdpL4, 1200, true, false);
        let mut udp6 = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv6([0xfd; 16], [0xfe; 16], 64)
            .udp(5000, 6000)
            .write(&mut udp6, &payload(3000))
            .unwrap();
        check_partial_cut(&udp6, GsoType::UdpL4, 1200, false, false);
    }

    /// A fixed frame, byte for byte: 10.0.0.1:1000 -> 10.0.0.2:2000, TCP
    /// seq 1 ack 2, ACK, window 100, payload "data", its checksum left as
    /// the pseudo-header sum 0x1421 (0a00+0001+0a00+0002+0006+0018, as a
    /// stack with offload leaves it).
    #[test]
    fn a_deferred_tcp_v4_checksum_by_the_bytes() {
        let mut frame = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        frame.extend_from_slice(&[0x45, 0, 0, 44, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        frame.extend_from_slice(&[0x03, 0xe8, 0x07, 0xd0, 0, 0, 0, 1, 0, 0, 0, 2, 0x50, 0x10, 0, 100]);
        frame.extend_from_slice(&[0x14, 0x21, 0, 0]);
        frame.extend_from_slice(b"data");
        let found = deferred_checksum(&frame).expect("deferred");
        assert_eq!(found, OpenChecksum { start: 34, offset: 16, len: 58 });
        let mut hdr = [0u8; vnet::HEADER_LEN];
        found.vnet().emit(&mut hdr);
        assert_eq!(hdr, [0x01, 0x00, 0, 0, 0, 0, 34, 0, 16, 0], "NEEDS_CSUM at 34 + 16");
        // Padded to 60 bytes, as a NIC pads: the checksum still ends with the IP packet.
        let mut padded = frame.clone();
        padded.extend_from_slice(&[0, 0]);
        assert_eq!(deferred_checksum(&padded).map(|c| c.len), Some(58));
        // Completed, it is a checksum like any other: not deferred.
        complete_checksum(&mut frame, 34, 16).unwrap();
        let p = etherparse::SlicedPacket::from_ethernet(&frame).unwrap();
        let (Some(NetSlice::Ipv4(ip)), Some(TransportSlice::Tcp(tcp))) = (&p.net, &p.transport) else { panic!() };
        let h = TcpHeaderSlice::from_slice(tcp.slice()).unwrap();
        assert_eq!(h.checksum(), h.calc_checksum_ipv4(&ip.header(), tcp.payload()).unwrap());
        assert_eq!(deferred_checksum(&frame), None);
    }

    #[test]
    fn what_is_never_taken_for_deferred() {
        // A partial UDP checksum over IPv4, recognised...
        let mut udp = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6]).ipv4(SRC, DST, 64).udp(1, 2).write(&mut udp, &[9; 100]).unwrap();
        let partial = checksum::fold(checksum::pseudo_v4(SRC.into(), DST.into(), 17, 108));
        udp[40..42].copy_from_slice(&partial.to_be_bytes());
        assert_eq!(deferred_checksum(&udp), Some(OpenChecksum { start: 34, offset: 6, len: udp.len() }));
        // ...but not in a fragment, whose checksum covers the whole datagram,
        let mut fragment = udp.clone();
        fragment[14 + 6] = 0x20; // more fragments
        assert_eq!(deferred_checksum(&fragment), None);
        // nor with a UDP length that is not the IP payload's,
        let mut short = udp.clone();
        short[38..40].copy_from_slice(&100u16.to_be_bytes());
        assert_eq!(deferred_checksum(&short), None);
        // nor "no checksum" (zero), nor for another protocol.
        let mut none = udp.clone();
        none[40..42].fill(0);
        assert_eq!(deferred_checksum(&none), None);
        let mut icmp = udp.clone();
        icmp[14 + 9] = 1;
        assert_eq!(deferred_checksum(&icmp), None);
        // IPv6 behind an extension header (hop-by-hop) is not looked into.
        let mut v6 = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv6([0xfd; 16], [0xfe; 16], 64)
            .udp(1, 2)
            .write(&mut v6, &[9; 40])
            .unwrap();
        let partial = checksum::fold(checksum::pseudo_v6([0xfd; 16].into(), [0xfe; 16].into(), 17, 48));
        v6[60..62].copy_from_slice(&partial.to_be_bytes());
        assert_eq!(deferred_checksum(&v6), Some(OpenChecksum { start: 54, offset: 6, len: v6.len() }));
        let mut hop = v6[..54].to_vec();
        hop[14 + 6] = 0; // next header: hop-by-hop
        hop[14 + 5] += 8;
        hop.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]);
        hop.extend_from_slice(&v6[54..]);
        assert_eq!(deferred_checksum(&hop), None);
        for n in 0..udp.len() {
            let _ = deferred_checksum(&udp[..n]);
        }
    }
}
