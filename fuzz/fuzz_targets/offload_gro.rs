//! Arbitrary frames through what prepares them for the tunnel (checksum
//! completion, segmentation) and what joins them after it (GRO). Nothing
//! may panic; whatever GRO joins must cut back into segments again.
//!
//! Input: `[gso: u8][mss: u16 LE][csum_start: u16 LE][csum_offset: u16 LE][frames...]`,
//! frames as `[len: u16 LE][bytes]`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchd_overlay::gro::Gro;
use switchd_overlay::offload;
use switchd_wire::ethernet::{self, EtherType};
use switchd_wire::ip::Protocol;
use switchd_wire::vnet::GsoType as Gso;
use switchd_wire::{ipv4, ipv6, tcp};

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

fuzz_target!(|data: &[u8]| {
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
    while rest.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let mut fixed = rest[2..2 + len].to_vec();
        rest = &rest[2 + len..];
        fix_tcp_checksum(&mut fixed);
        let frame = &fixed[..];
        out.clear();
        let _ = offload::segment(frame, gso, mss, 1500, offload::Room::head(8), &mut out);
        let mut copy = frame.to_vec();
        let _ = offload::complete_checksum(&mut copy, start, offset);
        if !gro.append(frame) {
            if gro.is_pending() {
                check_joined(gro.finish());
            }
            gro.start(frame);
        }
    }
    if gro.is_pending() {
        check_joined(gro.finish());
    }
});

/// A joined frame (virtio header + Ethernet) must segment again.
fn check_joined(frame: &[u8]) {
    let gso = match Gso::from_raw(frame[1]) {
        Gso::None => return,
        gso @ (Gso::TcpV4 | Gso::TcpV6) => gso,
        other => panic!("GRO made gso_type {other:?}"),
    };
    let mss = usize::from(u16::from_le_bytes([frame[4], frame[5]]));
    let mut out = Vec::new();
    offload::segment(&frame[10..], gso, mss, 65535, offload::Room::NONE, &mut out).expect("a joined frame segments again");
}
