//! Arbitrary frames through what prepares them for the tunnel (checksum
//! completion, segmentation, with complete or partial inner checksums) and
//! what joins them after it (GRO). Nothing may panic. What GRO joins
//! (`Gro::finish`) is a frame the stack can take: a GSO header naming the
//! segment size and where the TCP checksum lies, a valid IPv4 header
//! checksum, a TCP checksum that verifies once the stack completes it; and
//! it cuts back (`offload::segment`) into exactly the segments it was
//! joined from, byte for byte but for the IPv4 id and header checksum (and
//! the TCP checksum, which comes back complete). A run of one goes out
//! unchanged but for its checksum field (the pseudo-header sum) behind a
//! `NEEDS_CSUM` header. GRO joins no segment with a wrong complete
//! checksum unless told the frames were sealed, and counts the deferred
//! ones. What `offload::deferred_checksum` recognises, finished, verifies.
//!
//! Input: `[flags+gso: u8][mss: u16 LE][csum_start: u16 LE][csum_offset: u16 LE][frames...]`,
//! frames as `[len: u16 LE][bytes]`. The first byte: `& 0x1f` modulo 3 the
//! GSO type; 0x80: TCP checksums left partial (deferred) rather than made
//! valid, and segmenting leaves them partial; 0x40: every second frame
//! deferred; 0x20: GRO told the frames came sealed (nothing verified, and
//! checksums left as they are). Seeds (runs of TCP segments over IPv4 and
//! IPv6 with consecutive sequence numbers, gaps, TSO and USO frames, some
//! deferred) in `seeds/offload_gro`, written by `seeds/make_switch_seeds.py`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchd_overlay::gro::{Gro, Integrity};
use switchd_overlay::offload::{self, L4Checksum};
use switchd_overlay::tunnel::{self, Offload, Wire};
use switchd_wire::ethernet::{self, EtherType};
use switchd_wire::ip::Protocol;
use switchd_wire::vnet::GsoType as Gso;
use switchd_wire::{checksum, ipv4, ipv6, tcp, vnet};

/// Gives a TCP segment (IPv4, or IPv6 without extension headers) a valid
/// checksum, as every segment out of a real tunnel has (or, `deferred`,
/// the pseudo-header sum a sender leaves): GRO joins only those, and
/// random bytes would never get there.
fn fix_tcp_checksum(frame: &mut [u8], deferred: bool) {
    let Ok(eth) = ethernet::Frame::new_checked(&*frame) else { return };
    let l3 = ethernet::HEADER_LEN;
    let (l4, end, pseudo) = match eth.ethertype() {
        EtherType::Ipv4 => {
            let Ok(ip) = ipv4::Packet::new_checked(&frame[l3..]) else { return };
            if ip.protocol() != Protocol::Tcp {
                return;
            }
            let (l4, end) = (l3 + ip.header_len(), l3 + usize::from(ip.total_len()));
            (l4, end, ip.pseudo_header((end - l4) as u32))
        }
        EtherType::Ipv6 => {
            let Ok(ip) = ipv6::Packet::new_checked(&frame[l3..]) else { return };
            if ip.next_header() != Protocol::Tcp {
                return;
            }
            let (l4, end) = (l3 + ipv6::HEADER_LEN, l3 + ipv6::HEADER_LEN + usize::from(ip.payload_len()));
            (l4, end, ip.pseudo_header(Protocol::Tcp, (end - l4) as u32))
        }
        _ => return,
    };
    if let Ok(mut segment) = tcp::Packet::new_checked(&mut frame[l4..end]) {
        if deferred {
            segment.set_checksum(checksum::fold(pseudo));
        } else {
            segment.fill_checksum(pseudo);
        }
    }
}

/// Input bits beside the GSO type (see the module's doc).
#[derive(Clone, Copy)]
struct Mode {
    deferred: bool,
    alternate: bool,
    integrity: Integrity,
}

fuzz_target!(|data: &[u8]| fuzz_one(data));

// A function rather than the macro's closure, so that coverage reports
// (`cargo fuzz coverage`) show its lines.
fn fuzz_one(data: &[u8]) {
    if data.len() < 7 {
        return;
    }
    let gso = match (data[0] & 0x1f) % 3 {
        0 => Gso::TcpV4,
        1 => Gso::TcpV6,
        _ => Gso::UdpL4,
    };
    let mode = Mode {
        deferred: data[0] & 0x80 != 0,
        alternate: data[0] & 0x40 != 0,
        integrity: if data[0] & 0x20 != 0 { Integrity::Sealed } else { Integrity::Verify },
    };
    let l4_checksum = if mode.deferred { L4Checksum::Partial } else { L4Checksum::Complete };
    let mss = usize::from(u16::from_le_bytes([data[1], data[2]]));
    let start = usize::from(u16::from_le_bytes([data[3], data[4]]));
    let offset = usize::from(u16::from_le_bytes([data[5], data[6]]));
    let mut rest = &data[7..];
    let mut out = Vec::new();
    let mut gro = Gro::new();
    // The segments GRO holds, as they came in.
    let mut run = Vec::new();
    let mut n = 0;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let mut fixed = rest[2..2 + len].to_vec();
        rest = &rest[2 + len..];
        if mode.integrity == Integrity::Verify {
            fix_tcp_checksum(&mut fixed, mode.deferred != (mode.alternate && n % 2 == 1));
        }
        n += 1;
        let frame = &fixed[..];
        out.clear();
        let cut = offload::segment(frame, gso, mss, 1500, offload::Room::head(ROOM), l4_checksum, &mut out);
        if let Ok(segs) = cut {
            // Gathered (headers apart, payloads left in the frame), the
            // same bytes.
            let (mut heads, mut payloads) = (Vec::new(), Vec::new());
            let how = offload::Cut { gso, mss, mtu: 1500, room: offload::Room::head(ROOM), l4_checksum };
            let gathered = offload::segment_headers(frame, how, &mut heads, &mut payloads).expect("cut both ways");
            assert_eq!(gathered, segs);
            let head_len = heads.len() / segs.count;
            let wire: Vec<u8> =
                heads.chunks(head_len).zip(&payloads).flat_map(|(h, p)| [h, &frame[p.clone()]].concat()).collect();
            assert_eq!(wire, out, "gathered segments differ from copied ones");
        }
        if let (Ok(segs), Gso::TcpV4 | Gso::TcpV6) = (cut, gso) {
            // What segment cut, GRO joins again (a TSO frame through the
            // tunnel and out of it), and that cuts back the same.
            let (mut again, mut pieces) = (Gro::new(), Vec::new());
            for piece in out.chunks(segs.stride) {
                let piece = &piece[ROOM..];
                if mode.deferred && plain_ip(frame) {
                    assert!(offload::deferred_checksum(piece).is_some(), "a partial segment is not recognised");
                }
                feed(&mut again, &mut pieces, piece, Integrity::Verify);
            }
            flush(&mut again, &mut pieces, Integrity::Verify);
        }
        let mut copy = frame.to_vec();
        let _ = offload::complete_checksum(&mut copy, start, offset);
        check_deferred(frame);
        // An open checksum for a switchd peer: left as it is only in the
        // form the receiver recognises.
        let mut datagram = Vec::new();
        let asked = Offload::Checksum { start, offset };
        if tunnel::encapsulate(frame, asked, 1, 1500, Wire::Plain, L4Checksum::Partial, &mut datagram).is_ok()
            && datagram[8..] == *frame
        {
            let open = offload::deferred_checksum(frame).map(|c| (c.start, c.offset));
            assert!(
                open == Some((start, offset)) || copy == frame,
                "an open checksum was sent unfinished in a form no receiver recognises"
            );
        }
        feed(&mut gro, &mut run, frame, mode.integrity);
    }
    flush(&mut gro, &mut run, mode.integrity);
}

/// IPv4 that is no fragment, or IPv6 without extension headers: what
/// segmenting may leave with partial checksums.
fn plain_ip(frame: &[u8]) -> bool {
    let Ok(eth) = ethernet::Frame::new_checked(frame) else { return false };
    let l3 = &frame[ethernet::HEADER_LEN..];
    match eth.ethertype() {
        EtherType::Ipv4 => ipv4::Packet::new_checked(l3).is_ok_and(|ip| !ip.is_fragment()),
        EtherType::Ipv6 => {
            ipv6::Packet::new_checked(l3).is_ok_and(|ip| matches!(ip.next_header(), Protocol::Tcp | Protocol::Udp))
        }
        _ => false,
    }
}

/// What `deferred_checksum` recognises lies inside the IP packet, and is a
/// checksum that verifies once finished.
fn check_deferred(frame: &[u8]) {
    let Some(open) = offload::deferred_checksum(frame) else { return };
    assert!(open.len <= frame.len() && open.start + open.offset + 2 <= open.len, "outside the frame");
    assert!(open.offset == 16 || open.offset == 6);
    let mut finished = frame[..open.len].to_vec();
    offload::complete_checksum(&mut finished, open.start, open.offset).expect("inside the frame");
    let protocol = if open.offset == 16 { Protocol::Tcp } else { Protocol::Udp };
    assert!(l4_checksum_ok(&finished, open.start, protocol), "a deferred checksum does not verify once finished");
}

/// Whether the TCP/UDP checksum from `l4` to the end of the IP packet
/// verifies (IPv4, or IPv6 without extension headers).
fn l4_checksum_ok(frame: &[u8], l4: usize, protocol: Protocol) -> bool {
    let (l3, end) = (&frame[ethernet::HEADER_LEN..], ip_end(frame));
    let len = (end - l4) as u32;
    let pseudo = match ethernet::Frame::new_unchecked(frame).ethertype() {
        EtherType::Ipv4 => ipv4::Packet::new_unchecked(l3).pseudo_header(len),
        _ => ipv6::Packet::new_unchecked(l3).pseudo_header(protocol, len),
    };
    checksum::fold(checksum::add(pseudo, &frame[l4..end])) == 0xffff
}

/// The headroom segment leaves (a VXLAN header's).
const ROOM: usize = 8;

/// Gives GRO the next frame; whenever it finishes one, checks it against
/// `run`, the segments it was joined from.
/// (Each segment's source is its index in `run`.)
fn feed(gro: &mut Gro<usize>, run: &mut Vec<Vec<u8>>, frame: &[u8], integrity: Integrity) {
    if gro.append(frame, integrity, run.len()) {
        run.push(frame.to_vec());
        return;
    }
    flush(gro, run, integrity);
    if gro.start(frame, integrity, 0) {
        run.push(frame.to_vec());
    }
}

fn flush(gro: &mut Gro<usize>, run: &mut Vec<Vec<u8>>, integrity: Integrity) {
    if gro.is_pending() {
        let joined = gro.finish();
        assert_eq!(joined.segments, run.len(), "GRO counts another number of segments");
        let deferred_count = run.iter().filter(|s| deferred(s)).count();
        assert_eq!(joined.deferred, deferred_count, "GRO counts another number of deferred checksums");
        if integrity == Integrity::Verify {
            for (i, s) in run.iter().enumerate() {
                assert!(deferred(s) || tcp_checksum_ok(s, l4_of(s)), "segment {i} joined with a bad checksum");
            }
        }
        let frame: Vec<u8> = joined.parts(|&i| &run[i][..]).flatten().copied().collect();
        check_joined(&frame, run);
    }
    run.clear();
}

/// Where the TCP header of a segment GRO took lies.
fn l4_of(frame: &[u8]) -> usize {
    let l3 = &frame[ethernet::HEADER_LEN..];
    ethernet::HEADER_LEN
        + match ethernet::Frame::new_unchecked(frame).ethertype() {
            EtherType::Ipv4 => ipv4::Packet::new_unchecked(l3).header_len(),
            _ => ipv6::HEADER_LEN,
        }
}

/// Whether the TCP checksum field of a segment GRO took holds its pseudo-header sum.
fn deferred(frame: &[u8]) -> bool {
    let (l3, l4, end) = (&frame[ethernet::HEADER_LEN..], l4_of(frame), ip_end(frame));
    let len = (end - l4) as u32;
    let pseudo = match ethernet::Frame::new_unchecked(frame).ethertype() {
        EtherType::Ipv4 => ipv4::Packet::new_unchecked(l3).pseudo_header(len),
        _ => ipv6::Packet::new_unchecked(l3).pseudo_header(Protocol::Tcp, len),
    };
    u16::from_be_bytes([frame[l4 + 16], frame[l4 + 17]]) == checksum::fold(pseudo)
}

/// A segment as it is once its TCP checksum is made right: what cutting a
/// joined frame gives back.
fn completed(frame: &[u8]) -> Vec<u8> {
    let (l4, end) = (l4_of(frame), ip_end(frame));
    let mut out = frame[..end].to_vec();
    out[l4 + 16..l4 + 18].fill(0);
    let l3 = &out[ethernet::HEADER_LEN..];
    let len = (end - l4) as u32;
    let pseudo = match ethernet::Frame::new_unchecked(&out[..]).ethertype() {
        EtherType::Ipv4 => ipv4::Packet::new_unchecked(l3).pseudo_header(len),
        _ => ipv6::Packet::new_unchecked(l3).pseudo_header(Protocol::Tcp, len),
    };
    tcp::Packet::new_unchecked(&mut out[l4..end]).fill_checksum(pseudo);
    out
}

/// Where a frame's IP packet ends (frames may be padded).
fn ip_end(frame: &[u8]) -> usize {
    let l3 = &frame[ethernet::HEADER_LEN..];
    ethernet::HEADER_LEN
        + match ethernet::Frame::new_unchecked(frame).ethertype() {
            EtherType::Ipv4 => usize::from(ipv4::Packet::new_unchecked(l3).total_len()),
            _ => ipv6::HEADER_LEN + usize::from(ipv6::Packet::new_unchecked(l3).payload_len()),
        }
}

/// Whether the TCP checksum of a frame GRO took (IPv4 or IPv6 without
/// extension headers) verifies.
fn tcp_checksum_ok(frame: &[u8], l4: usize) -> bool {
    let (l3, end) = (&frame[ethernet::HEADER_LEN..], ip_end(frame));
    let len = (end - l4) as u32;
    let pseudo = match ethernet::Frame::new_unchecked(frame).ethertype() {
        EtherType::Ipv4 => ipv4::Packet::new_unchecked(l3).pseudo_header(len),
        _ => ipv6::Packet::new_unchecked(l3).pseudo_header(Protocol::Tcp, len),
    };
    tcp::Packet::new_checked(&frame[l4..end]).is_ok_and(|t| t.verify_checksum(pseudo))
}

/// A joined frame (virtio header + Ethernet) of the segments `run` is
/// what the stack takes, and cuts back into them.
fn check_joined(joined: &[u8], run: &[Vec<u8>]) {
    assert!(!run.is_empty(), "GRO finished a frame from no segment");
    let (hdr, frame) = joined.split_at(vnet::HEADER_LEN);
    let first = &run[0];
    let v = vnet::Repr::parse(hdr).expect("a virtio header");
    assert_eq!(v.flags, vnet::FLAG_NEEDS_CSUM, "the stack is not asked to complete the checksum");
    let (l4, offset) = (usize::from(v.csum_start), usize::from(v.csum_offset));
    assert_eq!((l4, offset), (l4_of(first), 16), "the TCP checksum is not where the header says");
    let gso = match Gso::from_raw(hdr[1]) {
        Gso::None => {
            assert_eq!(run.len(), 1, "{} segments joined without a GSO header", run.len());
            let original = &first[..ip_end(first)];
            assert_eq!(frame.len(), original.len(), "a single segment changed length");
            assert_eq!(frame[..l4 + 16], original[..l4 + 16], "a single segment changed");
            assert_eq!(frame[l4 + 18..], original[l4 + 18..], "a single segment changed");
            assert!(deferred(frame), "a single segment's field is not its pseudo-header sum");
            let mut finished = frame.to_vec();
            offload::complete_checksum(&mut finished, l4, offset).expect("the checksum lies in the frame");
            assert_eq!(finished, completed(first), "a single segment, finished, is not the original made right");
            return;
        }
        gso @ (Gso::TcpV4 | Gso::TcpV6) => gso,
        other => panic!("GRO made gso_type {other:?}"),
    };
    assert!(run.len() > 1, "one segment with a GSO header");
    let is_v4 = ethernet::Frame::new_unchecked(&first[..]).ethertype() == EtherType::Ipv4;
    assert_eq!(gso == Gso::TcpV4, is_v4, "GSO type of another IP version");
    let mss = usize::from(v.gso_size);
    let payload = usize::from(v.hdr_len);
    assert_eq!(mss, ip_end(first) - payload, "gso_size is not the first segment's payload");
    assert_eq!(frame.len(), ip_end(frame), "a joined frame with padding");
    if is_v4 {
        assert!(ipv4::Packet::new_checked(&frame[ethernet::HEADER_LEN..]).unwrap().verify_checksum(), "IPv4 checksum");
    }
    let mut finished = frame.to_vec();
    offload::complete_checksum(&mut finished, l4, offset).expect("the checksum lies in the frame");
    assert!(tcp_checksum_ok(&finished, l4), "the TCP checksum does not verify once completed");

    let mut out = Vec::new();
    let complete = L4Checksum::Complete;
    let segs = offload::segment(frame, gso, mss, 65535, offload::Room::NONE, complete, &mut out)
        .expect("a joined frame segments again");
    assert_eq!(segs.count, run.len(), "cut into another number of segments");
    let ip = ethernet::HEADER_LEN;
    for (i, (again, original)) in out.chunks(segs.stride).zip(run).enumerate() {
        // Cut again, a segment comes back with its checksum complete (and right).
        let original = &completed(original)[..];
        assert_eq!(again.len(), original.len(), "segment {i}: another length");
        let same = |a: &[u8], b: &[u8]| {
            if is_v4 {
                // All but the IPv4 id and header checksum, which GRO does not keep.
                a[..ip + 4] == b[..ip + 4] && a[ip + 6..ip + 10] == b[ip + 6..ip + 10] && a[ip + 12..] == b[ip + 12..]
            } else {
                a == b
            }
        };
        assert!(same(again, original), "segment {i} differs after the round trip:\n{again:02x?}\n{original:02x?}");
    }
}
