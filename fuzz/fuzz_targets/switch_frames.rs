//! Arbitrary bytes as frames from containers, through the switch pipeline:
//! the frame view and every decision must hold up, and no decision may send
//! a frame out of its network or back where it came from.
//!
//! Input: a sequence of records `[port: u8][advance_secs: u8][len: u16 LE][len bytes]`.

#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use switchd::switch::{Action, Switch, SwitchConfig};
use switchd_config::Mtu;

fuzz_target!(|data: &[u8]| {
    let mut sw = Switch::new(SwitchConfig { mac_aging_time: Duration::from_secs(5), mac_limit: 8 });
    let a = sw.add_network(Mtu::new(1500).unwrap());
    let b = sw.add_network(Mtu::new(9000).unwrap());
    let ports = [sw.add_port(a).unwrap(), sw.add_port(a).unwrap(), sw.add_port(a).unwrap(), sw.add_port(b).unwrap(), sw.add_port(b).unwrap()];
    let network_of = |i: usize| if i < 3 { a } else { b };
    let mut now = Instant::now();
    let mut rest = data;
    while rest.len() >= 4 {
        let ingress_index = rest[0] as usize % ports.len();
        now += Duration::from_secs(u64::from(rest[1] % 8));
        let len = (u16::from_le_bytes([rest[2], rest[3]]) as usize).min(rest.len() - 4);
        let frame = &rest[4..4 + len];
        rest = &rest[4 + len..];
        let ingress = ports[ingress_index];
        match sw.handle_frame(now, ingress, frame) {
            Action::Deliver(out) => {
                assert_ne!(out, ingress, "delivered back to the ingress port");
                let out_index = ports.iter().position(|p| *p == out).expect("a known port");
                assert_eq!(network_of(out_index), network_of(ingress_index), "crossed networks");
            }
            Action::Flood(net) => {
                assert_eq!(net, network_of(ingress_index), "flooded another network");
                for out in sw.flood_targets(net, ingress) {
                    assert_ne!(out, ingress);
                    let out_index = ports.iter().position(|p| *p == out).expect("a known port");
                    assert_eq!(network_of(out_index), net);
                }
            }
            Action::Drop(_) => {}
        }
        if rest.first().is_some_and(|b| b & 0x80 != 0) {
            sw.handle_timeout(now);
        }
    }
});
