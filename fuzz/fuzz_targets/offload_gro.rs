//! Arbitrary frames through what prepares them for the tunnel (checksum
//! completion, segmentation) and what joins them after it (GRO). Nothing
//! may panic; whatever GRO joins must cut back into segments again.
//!
//! Input: `[gso: u8][mss: u16 LE][csum_start: u16 LE][csum_offset: u16 LE][frames...]`,
//! frames as `[len: u16 LE][bytes]`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchd_overlay::gro::Gro;
use switchd_overlay::offload::{self, Gso};

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
        let frame = &rest[2..2 + len];
        rest = &rest[2 + len..];
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
    let gso = match frame[1] {
        0 => return,
        1 => Gso::TcpV4,
        4 => Gso::TcpV6,
        other => panic!("GRO made gso_type {other}"),
    };
    let mss = usize::from(u16::from_le_bytes([frame[4], frame[5]]));
    let mut out = Vec::new();
    offload::segment(&frame[10..], gso, mss, 65535, offload::Room::NONE, &mut out).expect("a joined frame segments again");
}
