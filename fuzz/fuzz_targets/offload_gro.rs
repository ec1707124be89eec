//! Arbitrary frames through what prepares them for the tunnel (checksum
//! completion, segmentation) and what joins them after it (GRO). Nothing
//! may panic. What GRO joins (`Gro::finish`) is a frame the stack can take:
//! a GSO header naming the segment size and where the TCP checksum lies,
//! a valid IPv4 header checksum, a TCP checksum that verifies once the
//! stack completes it; and it cuts back (`offload::segment`) into exactly
//! the segments it was joined from, byte for byte but for the IPv4 id and
//! header checksum. A run of one goes out unchanged behind a plain header.
//!
//! Input: `[gso: u8][mss: u16 LE][csum_start: u16 LE][csum_offset: u16 LE][frames...]`,
//! frames as `[len: u16 LE][bytes]`. Seeds (runs of TCP segments over IPv4
//! and IPv6 with consecutive sequence numbers, gaps, TSO and USO frames) in
//! `seeds/offload_gro`, written by `seeds/make_switch_seeds.py`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchd_overlay::gro::Gro;
use switchd_overlay::offload;
use switchd_wire::ethernet::{self, EtherType};
use switchd_wire::ip::Protocol;
use switchd_wire::vnet::GsoType as Gso;
use switchd_wire::{ipv4, ipv6, tcp, vnet};

/// Gives a TCP segment (IPv4, or IPv6 without extension headers) a valid
/// checksum, as every segment out of a real tunnel has: GRO joins only
/// those, and random bytes would never get there.
fn fix_tcp_checksum(frame: &mut [u8]) {
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
        segment.fill_checksum(pseudo);
    }
}

fuzz_target!(|data: &[u8]| fuzz_one(data));

// A function rather than the macro's closure, so that coverage reports
// (`cargo fuzz coverage`) show its lines.
fn fuzz_one(data: &[u8]) {
    if data.len() < 7 {
        return;
    }
    let gso = match data[0] % 3 {
        0 => Gso::TcpV4,
        1 => Gso::TcpV6,
        _ => Gso::UdpL4,
    };
    let mss = usize::from(u16::from_le_bytes([data[1], data[2]]));
    let start = usize::from(u16::from_le_bytes([data[3], data[4]]));
    let offset = usize::from(u16::from_le_bytes([data[5], data[6]]));
    let mut rest = &data[7..];
    let mut out = Vec::new();
    let mut gro = Gro::new();
    // The segments GRO holds, as they came in.
    let mut run = Vec::new();
    while rest.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let mut fixed = rest[2..2 + len].to_vec();
        rest = &rest[2 + len..];
        fix_tcp_checksum(&mut fixed);
        let frame = &fixed[..];
        out.clear();
        let cut = offload::segment(frame, gso, mss, 1500, offload::Room::head(ROOM), &mut out);
        if let (Ok(segs), Gso::TcpV4 | Gso::TcpV6) = (cut, gso) {
            // What segment cut, GRO joins again (a TSO frame through the
            // tunnel and out of it), and that cuts back the same.
            let (mut again, mut pieces) = (Gro::new(), Vec::new());
            for piece in out.chunks(segs.stride) {
                feed(&mut again, &mut pieces, &piece[ROOM..]);
            }
            flush(&mut again, &mut pieces);
        }
        let mut copy = frame.to_vec();
        let _ = offload::complete_checksum(&mut copy, start, offset);
        feed(&mut gro, &mut run, frame);
    }
    flush(&mut gro, &mut run);
}

/// The headroom segment leaves (a VXLAN header's).
const ROOM: usize = 8;

/// Gives GRO the next frame; whenever it finishes one, checks it against
/// `run`, the segments it was joined from.
fn feed(gro: &mut Gro, run: &mut Vec<Vec<u8>>, frame: &[u8]) {
    if gro.append(frame) {
        run.push(frame.to_vec());
        return;
    }
    flush(gro, run);
    if gro.start(frame) {
        run.push(frame.to_vec());
    }
}

fn flush(gro: &mut Gro, run: &mut Vec<Vec<u8>>) {
    if gro.is_pending() {
        check_joined(gro.finish(), run);
    }
    run.clear();
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
    let gso = match Gso::from_raw(hdr[1]) {
        Gso::None => {
            assert_eq!(run.len(), 1, "{} segments joined without a GSO header", run.len());
            assert_eq!(hdr, vnet::Repr::PLAIN_BYTES, "a single segment behind a header that is not plain");
            assert_eq!(frame, &first[..ip_end(first)], "a single segment changed");
            return;
        }
        gso @ (Gso::TcpV4 | Gso::TcpV6) => gso,
        other => panic!("GRO made gso_type {other:?}"),
    };
    assert!(run.len() > 1, "one segment with a GSO header");
    let v = vnet::Repr::parse(hdr).expect("a virtio header");
    let is_v4 = ethernet::Frame::new_unchecked(&first[..]).ethertype() == EtherType::Ipv4;
    assert_eq!(gso == Gso::TcpV4, is_v4, "GSO type of another IP version");
    assert_eq!(v.flags, vnet::FLAG_NEEDS_CSUM, "the stack is not asked to complete the checksum");
    let (l4, offset) = (usize::from(v.csum_start), usize::from(v.csum_offset));
    assert_eq!(offset, 16, "the TCP checksum is 16 bytes into its header");
    let mss = usize::from(v.gso_size);
    let payload = usize::from(v.hdr_len);
    assert_eq!(mss, ip_end(first) - payload, "gso_size is not the first segment's payload");
    assert_eq!(frame.len(), ip_end(frame), "a joined frame with padding");
    if is_v4 {
        assert!(ipv4::Packet::new_checked(&frame[ethernet::HEADER_LEN..]).unwrap().verify_checksum(), "IPv4 checksum");
    }
    let mut completed = frame.to_vec();
    offload::complete_checksum(&mut completed, l4, offset).expect("the checksum lies in the frame");
    assert!(tcp_checksum_ok(&completed, l4), "the TCP checksum does not verify once completed");

    let mut out = Vec::new();
    let segs =
        offload::segment(frame, gso, mss, 65535, offload::Room::NONE, &mut out).expect("a joined frame segments again");
    assert_eq!(segs.count, run.len(), "cut into another number of segments");
    let ip = ethernet::HEADER_LEN;
    for (i, (again, original)) in out.chunks(segs.stride).zip(run).enumerate() {
        let original = &original[..ip_end(original)];
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
