//! Arbitrary Ethernet frames through what the gateway does to a frame it
//! routes: `l3::ipv4` reads it, the switch decides (`Switch::route`), and
//! `l3::forward` rewrites it as the data plane does. What comes out has the
//! new MACs, a TTL exactly one less, an IPv4 header checksum that verifies
//! after the incremental update (RFC 1624), and every other byte as it was.
//! A frame with TTL 1 or 0 is never routed (RFC 1812 5.3.1): it is refused
//! with time exceeded, unless it is for the other network's gateway
//! address itself, which the gateway serves as a host would.
//!
//! IPv6 the same way (`l3::ipv6`), with the hop limit one less and every
//! other byte as it was.
//!
//! Two networks route to each other: 1 (10.1.0.0/24, fd00:1::/64) and 3
//! (10.3.0.0/24, fd00:3::/64); in 3, 10.3.0.2's (fd00:3::2's) MAC is not
//! yet learned (flooded), 10.3.0.3's is on a port and 10.3.0.4's behind a
//! VTEP.
//!
//! Input: `[flags: u8][frame...]`. Bit 0: give the frame the gateway's
//! destination MAC and the port's source MAC, so it reaches the router;
//! bit 7: leave the IPv4 header checksum as it is (otherwise it is made
//! valid, as every sender's is, so mutations reach past the check).
//! Seeds in `seeds/l3_forward` (`seeds/make_switch_seeds.py`).

#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use switchd::switch::{Action, DropReason, Gateway, Next, Plan, Switch, SwitchConfig, Target, l3};
use switchd_config::{MacAddr, Mtu, Vni};
use switchd_wire::ethernet::{self, EtherType};
use switchd_wire::{ipv4, vnet};

const PORT_MAC: MacAddr = MacAddr([2, 0, 0, 0, 1, 2]);
const FLOODED: MacAddr = MacAddr([2, 0, 0, 0, 3, 2]);
const ON_PORT: MacAddr = MacAddr([2, 0, 0, 0, 3, 3]);
const REMOTE: MacAddr = MacAddr([2, 0, 0, 0, 3, 4]);
const TTL: usize = ethernet::HEADER_LEN + 8;
const HOP_LIMIT: usize = ethernet::HEADER_LEN + 7;
const CHECKSUM: usize = ethernet::HEADER_LEN + 10;

/// Gives an IPv4 frame's header a valid checksum, as every sender's has.
fn fix_ipv4_checksum(frame: &mut [u8]) {
    // A checked Ethernet frame has its header: the IPv4 slice exists.
    if !ethernet::Frame::new_checked(&*frame).is_ok_and(|f| f.ethertype() == EtherType::Ipv4) {
        return;
    }
    if let Ok(mut ip) = ipv4::Packet::new_checked(&mut frame[ethernet::HEADER_LEN..]) {
        ip.fill_checksum();
    }
}

fn header_checksum_ok(eth: &[u8]) -> bool {
    ipv4::Packet::new_checked(&eth[ethernet::HEADER_LEN..]).is_ok_and(|ip| ip.verify_checksum())
}

/// `after` is `before` forwarded from `src` to `dst`: new MACs, TTL one
/// less, checksum valid, nothing else changed.
fn check_forwarded(before: &[u8], after: &[u8], src: MacAddr, dst: MacAddr) {
    assert_eq!(after.len(), before.len(), "the frame changed length");
    assert_eq!(&after[..6], &dst.0, "destination MAC not rewritten");
    assert_eq!(&after[6..12], &src.0, "source MAC not rewritten");
    assert_eq!(after[TTL], before[TTL] - 1, "TTL not one less");
    assert!(header_checksum_ok(after), "IPv4 header checksum wrong after the update: {:02x?}", &after[14..34]);
    for i in 12..before.len() {
        if i != TTL && i != CHECKSUM && i != CHECKSUM + 1 {
            assert_eq!(after[i], before[i], "byte {i} changed");
        }
    }
    let (a, b) = (l3::ipv4(after).expect("still IPv4"), l3::ipv4(before).expect("was IPv4"));
    assert_eq!(l3::Ipv4 { ttl: b.ttl - 1, ..b }, a, "the IPv4 summary changed beyond the TTL");
}

/// `after` is the IPv6 `before` forwarded from `src` to `dst`: new MACs,
/// hop limit one less, nothing else changed.
fn check_forwarded6(before: &[u8], after: &[u8], src: MacAddr, dst: MacAddr) {
    assert_eq!(after.len(), before.len(), "the frame changed length");
    assert_eq!((&after[..6], &after[6..12]), (&dst.0[..], &src.0[..]), "MACs not rewritten");
    assert_eq!(after[HOP_LIMIT], before[HOP_LIMIT] - 1, "hop limit not one less");
    for i in (12..before.len()).filter(|i| *i != HOP_LIMIT) {
        assert_eq!(after[i], before[i], "byte {i} changed");
    }
}

fuzz_target!(|data: &[u8]| fuzz_one(data));

// A function rather than the macro's closure, so that coverage reports
// (`cargo fuzz coverage`) show its lines.
fn fuzz_one(data: &[u8]) {
    let Some((&flags, frame)) = data.split_first() else { return };
    let mut eth = frame.to_vec();
    if flags & 0x80 == 0 {
        fix_ipv4_checksum(&mut eth);
    }
    if flags & 1 == 1 && eth.len() >= 12 {
        eth[..6].copy_from_slice(&Gateway::mac_for(Vni::new(1).unwrap()).0);
        eth[6..12].copy_from_slice(&PORT_MAC.0);
    }

    // The rewrite alone, on whatever l3::ipv4 accepts with a TTL to spare.
    let ip = l3::ipv4(&eth);
    if let Some(ip) = ip {
        assert!(header_checksum_ok(&eth), "l3::ipv4 accepted a header whose checksum is wrong (RFC 1812 5.2.2)");
        if ip.ttl > 1 {
            let mut out = eth.clone();
            let (src, dst) = (MacAddr([2, 0, 0, 0, 0, 0xaa]), MacAddr([2, 0, 0, 0, 0, 0xbb]));
            l3::forward(&mut out, src, dst);
            check_forwarded(&eth, &out, src, dst);
        }
    }

    let ip6 = l3::ipv6(&eth);
    if let Some(ip6) = ip6.filter(|ip| ip.hop_limit > 1) {
        let mut out = eth.clone();
        let (src, dst) = (MacAddr([2, 0, 0, 0, 0, 0xaa]), MacAddr([2, 0, 0, 0, 0, 0xbb]));
        l3::forward(&mut out, src, dst);
        check_forwarded6(&eth, &out, src, dst);
        assert_eq!(l3::ipv6(&out), Some(l3::Ipv6 { hop_limit: ip6.hop_limit - 1, ..ip6 }));
    }

    // Through the switch, and rewritten as the data plane does.
    let mut sw = Switch::new(SwitchConfig::new(Duration::from_secs(300), 8));
    let n1 = sw.add_network(Vni::new(1).unwrap(), Mtu::new(9000).unwrap(), false).unwrap();
    let n3 = sw.add_network(Vni::new(3).unwrap(), Mtu::new(9000).unwrap(), false).unwrap();
    let gateway = |vni: u8| Gateway {
        v4: Some(([10, vni, 0, 1].into(), format!("10.{vni}.0.0/24").parse().unwrap())),
        mac: Gateway::mac_for(Vni::new(u32::from(vni)).unwrap()),
        dhcp: true,
        v6: Some((format!("fd00:{vni}::1").parse().unwrap(), format!("fd00:{vni}::/64").parse().unwrap())),
    };
    sw.set_gateway(n1, Some(gateway(1)));
    sw.set_gateway(n3, Some(gateway(3)));
    sw.set_routes(n1, vec![n3]);
    sw.set_routes(n3, vec![n1]);
    let port = sw.add_port(n1).unwrap();
    let (p3, p3b) = (sw.add_port(n3).unwrap(), sw.add_port(n3).unwrap());
    let neighbors = [([10, 3, 0, 2], FLOODED), ([10, 3, 0, 3], ON_PORT), ([10, 3, 0, 4], REMOTE)];
    let v6 = |[.., host]: [u8; 4]| Ipv6Addr::new(0xfd00, 3, 0, 0, 0, 0, 0, u16::from(host));
    let both = neighbors.into_iter().flat_map(|(ip, mac)| [(IpAddr::from(ip), mac), (IpAddr::V6(v6(ip)), mac)]);
    sw.set_neighbors(n3, both);
    let vtep = sw.add_vtep("198.18.0.3:4789".parse().unwrap(), None).unwrap();
    let now = Instant::now();
    sw.set_gossip_macs(n3, &[(REMOTE, vtep)], now);
    let mut plan = Plan::default();
    let announce = vnet::build_plain(ethernet::MacAddr::BROADCAST, ON_PORT, 0x0806, 46);
    sw.handle_frame(now, p3b, &announce, &mut plan);

    let mut buf = vnet::Repr::PLAIN_BYTES.to_vec();
    buf.extend_from_slice(&eth);
    sw.handle_frame(now, port, &buf, &mut plan);
    // The port is no container's (no guard): any unicast source may route.
    let to_router = eth.len() >= 12 && eth[..6] == gateway(1).mac.0;
    let from_port = to_router && eth[6..12] == PORT_MAC.0;
    match plan.action {
        Action::Route { network, src, dst, next } => {
            assert!(to_router, "routed without being sent to the gateway");
            assert_eq!(network, n3, "routed where no route goes");
            assert_eq!(src, gateway(3).mac, "not from the gateway of the network routed into");
            let owner = match (ip, ip6) {
                (Some(ip), _) => {
                    assert!(ip.ttl > 1, "routed with TTL {}", ip.ttl);
                    neighbors.iter().find(|(a, _)| Ipv4Addr::from(*a) == ip.dst).map(|(_, m)| *m)
                }
                (None, Some(ip)) => {
                    assert!(ip.hop_limit > 1, "routed with hop limit {}", ip.hop_limit);
                    neighbors.iter().find(|(a, _)| v6(*a) == ip.dst).map(|(_, m)| *m)
                }
                (None, None) => panic!("routed, but neither IPv4 nor IPv6 the gateway read"),
            };
            assert_eq!(Some(dst), owner, "not to the MAC that holds the destination");
            match next {
                Next::Port(p) => assert_eq!((p, dst), (p3b, ON_PORT)),
                Next::Vtep(v) => assert_eq!((v, dst), (vtep, REMOTE)),
                Next::Flood => {
                    assert_eq!(dst, FLOODED);
                    assert!(plan.targets.contains(&Target::Port(p3)) && plan.targets.contains(&Target::Vtep(vtep)));
                }
            }
            let mut out = buf.clone();
            l3::forward(&mut out[vnet::HEADER_LEN..], src, dst);
            assert_eq!(out[..vnet::HEADER_LEN], buf[..vnet::HEADER_LEN], "the virtio header changed");
            match ip {
                Some(_) => check_forwarded(&buf[vnet::HEADER_LEN..], &out[vnet::HEADER_LEN..], src, dst),
                None => check_forwarded6(&buf[vnet::HEADER_LEN..], &out[vnet::HEADER_LEN..], src, dst),
            }
        }
        Action::Reject { reason: DropReason::TtlExceeded, network, .. } => {
            assert_eq!(network, n1, "time exceeded from another gateway");
            match (ip, ip6) {
                (Some(ip), _) => {
                    assert!(ip.ttl <= 1, "time exceeded with TTL {}", ip.ttl);
                    assert_ne!(
                        Some(ip.dst),
                        gateway(3).v4.map(|(own, _)| own),
                        "the other gateway's own address refused for its TTL"
                    );
                }
                (None, Some(ip)) => {
                    assert!(ip.hop_limit <= 1, "time exceeded with hop limit {}", ip.hop_limit);
                    assert_ne!(Some(ip.dst), gateway(3).v6.map(|(gw, _)| gw), "the other gateway refused");
                }
                (None, None) => panic!("time exceeded for neither IPv4 nor IPv6"),
            }
        }
        _ => {}
    }
    // The other network's gateway address is the gateway's own, whatever the TTL.
    if let Some(ip) = ip.filter(|ip| from_port && Some(ip.dst) == gateway(3).v4.map(|(own, _)| own)) {
        assert!(matches!(plan.action, Action::Local { port: p, .. } if p == port), "{:?} for {ip:?}", plan.action);
    }
}
