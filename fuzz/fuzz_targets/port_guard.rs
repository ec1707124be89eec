//! Arbitrary frames from a container through the port guard, with the
//! source MAC made the port's own so that the address, ARP, IPv6 and
//! neighbour discovery checks are reached. Nothing may panic, and what the
//! guard lets through holds to what it promises: IPv4 and ARP only from the
//! port's address (or 0.0.0.0), ARP only naming the port's MAC.
//!
//! Input: `[addressed: u8][frame...]`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchd::switch::EndpointGuard;
use switchd_config::MacAddr;

const MAC: MacAddr = MacAddr([2, 0x42, 10, 0, 0, 2]);

fuzz_target!(|data: &[u8]| {
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
        _ => {}
    }
});
