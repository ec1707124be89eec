//! Arbitrary frames from a container through the port guard, with the
//! source MAC made the port's own so that the address, ARP, IPv6 and
//! neighbour discovery checks are reached. Nothing may panic, and what the
//! guard lets through holds to what it promises: IPv4 and ARP only from the
//! port's address (or 0.0.0.0), ARP only naming the port's MAC; IPv6 only
//! from its link-local address (or ::), no router advertisements or
//! redirects, advertisements only for its own address and never from ::,
//! duplicate-address probes only for its own, link-layer options naming
//! its own MAC (checked where ICMPv6 follows the IPv6 header directly).
//!
//! Input: `[addressed: u8][frame...]`. Seeds (every kind of frame the guard
//! reads, with extension headers and fragments) in `seeds/port_guard`, a
//! dictionary in `port_guard.dict`: EtherTypes are matched as 16-bit
//! values, which libFuzzer does not learn from by itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchd::switch::EndpointGuard;
use switchd::switch::guard::link_local;
use switchd_config::MacAddr;

const MAC: MacAddr = MacAddr([2, 0x42, 10, 0, 0, 2]);

fuzz_target!(|data: &[u8]| fuzz_one(data));

// A function rather than the macro's closure, so that coverage reports
// (`cargo fuzz coverage`) show its lines.
fn fuzz_one(data: &[u8]) {
    let Some((&addressed, frame)) = data.split_first() else { return };
    let guard = EndpointGuard::new(MAC, addressed & 1 == 1, Some([10, 0, 0, 2].into()));
    let mut eth = frame.to_vec();
    if eth.len() >= 12 {
        eth[6..12].copy_from_slice(&MAC.0);
    }
    if guard.check(&eth).is_err() || addressed & 1 == 0 {
        return;
    }
    match eth.get(12..14) {
        Some([0x08, 0x00]) => {
            let src = &eth[26..30];
            assert!(src == [10, 0, 0, 2] || src == [0, 0, 0, 0], "IPv4 from {src:?} let through");
        }
        Some([0x08, 0x06]) => {
            assert_eq!(&eth[22..28], &MAC.0, "ARP naming another MAC let through");
            let ip = &eth[28..32];
            assert!(ip == [10, 0, 0, 2] || ip == [0, 0, 0, 0], "ARP from {ip:?} let through");
        }
        Some([0x81, 0x00]) => panic!("a VLAN-tagged frame let through"),
        Some([0x86, 0xdd]) => {
            let ll = link_local(MAC).octets();
            assert!(eth.len() >= 54 && eth[14] >> 4 == 6, "short/non-v6 let through");
            let src = &eth[22..38];
            let unspec = src == [0u8; 16];
            assert!(unspec || src == ll, "IPv6 from {src:02x?} let through");
            // What follows the IPv6 payload (Ethernet padding) is no part of it.
            let end = (54 + usize::from(u16::from_be_bytes([eth[18], eth[19]]))).min(eth.len());
            if eth[20] == 58 && end > 54 {
                let icmp = &eth[54..end];
                let kind = icmp[0];
                assert!(kind != 134 && kind != 137, "RA/redirect let through");
                let target = icmp.get(8..24);
                if kind == 136 {
                    assert!(!unspec, "NA from :: let through");
                    assert_eq!(target, Some(&ll[..]), "NA for another target let through");
                }
                if kind == 135 && unspec {
                    assert_eq!(target, Some(&ll[..]), "DAD for another target let through");
                }
                let (at, own) = match kind {
                    133 => (8, 1),
                    135 => (24, 1),
                    136 => (24, 2),
                    _ => return,
                };
                let mut o = icmp.get(at..).unwrap_or_default();
                while o.len() >= 2 {
                    let len = usize::from(o[1]) * 8;
                    assert!(len != 0 && len <= o.len(), "malformed ND options let through");
                    if o[0] == own {
                        assert_eq!(o.get(2..8), Some(&MAC.0[..]), "ND option naming another MAC let through");
                    }
                    o = &o[len..];
                }
            }
        }
        _ => {}
    }
}
