//! Byte-fixture tests of the pipeline: learning, aging, flooding, isolation,
//! limits and drops.

use switchd_config::Vni;

use super::frame::build_plain;
use super::*;

const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xa]);
const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xb]);
const C: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xc]);

fn flood(network: NetworkId, port: PortId) -> Action {
    Action::Flood { network, ingress: Location::Port(port) }
}

fn frame(dst: MacAddr, src: MacAddr) -> Vec<u8> {
    build_plain(dst, src, 0x0800, 46)
}

struct Lab {
    sw: Switch,
    t0: Instant,
    net: NetworkId,
    p1: PortId,
    p2: PortId,
    p3: PortId,
}

fn lab(config: SwitchConfig) -> Lab {
    let mut sw = Switch::new(config);
    let net = sw.add_network(Vni::new(1).unwrap(), Mtu::new(1500).unwrap()).unwrap();
    let p1 = sw.add_port(net).unwrap();
    let p2 = sw.add_port(net).unwrap();
    let p3 = sw.add_port(net).unwrap();
    Lab { sw, t0: Instant::now(), net, p1, p2, p3 }
}

#[test]
fn unknown_unicast_floods_then_learned_unicast_is_delivered() {
    let mut l = lab(SwitchConfig::default());
    assert_eq!(l.sw.handle_frame(l.t0, l.p1, &frame(B, A)), flood(l.net, l.p1));
    let targets: Vec<_> = l.sw.flood_targets(l.net, Location::Port(l.p1)).collect();
    assert_eq!(targets, vec![Location::Port(l.p2), Location::Port(l.p3)], "never back out the ingress port");
    // B answers: A is known, so it goes to p1 only.
    assert_eq!(l.sw.handle_frame(l.t0, l.p2, &frame(A, B)), Action::Deliver(l.p1));
    assert_eq!(l.sw.handle_frame(l.t0, l.p1, &frame(B, A)), Action::Deliver(l.p2));
    assert_eq!(l.sw.network_counters(l.net).unwrap().flooded, 1);
}

#[test]
fn broadcast_and_multicast_flood_even_when_known() {
    let mut l = lab(SwitchConfig::default());
    l.sw.handle_frame(l.t0, l.p2, &frame(A, B));
    assert_eq!(l.sw.handle_frame(l.t0, l.p1, &frame(MacAddr::BROADCAST, A)), flood(l.net, l.p1));
    let mcast = MacAddr([0x33, 0x33, 0, 0, 0, 1]);
    assert_eq!(l.sw.handle_frame(l.t0, l.p1, &frame(mcast, A)), flood(l.net, l.p1));
}

#[test]
fn networks_are_isolated() {
    let mut l = lab(SwitchConfig::default());
    let other = l.sw.add_network(Vni::new(2).unwrap(), Mtu::new(1500).unwrap()).unwrap();
    let q1 = l.sw.add_port(other).unwrap();
    let q2 = l.sw.add_port(other).unwrap();
    // B is learned on p2 in the first network.
    l.sw.handle_frame(l.t0, l.p2, &frame(A, B));
    // From the other network, B is unknown: flood within that network only.
    assert_eq!(l.sw.handle_frame(l.t0, q1, &frame(B, C)), flood(other, q1));
    assert_eq!(l.sw.flood_targets(other, Location::Port(q1)).collect::<Vec<_>>(), vec![Location::Port(q2)]);
    // The same MAC may live in both networks independently.
    l.sw.handle_frame(l.t0, q2, &frame(C, B));
    assert_eq!(l.sw.handle_frame(l.t0, l.p1, &frame(B, A)), Action::Deliver(l.p2));
    assert_eq!(l.sw.handle_frame(l.t0, q1, &frame(B, C)), Action::Deliver(q2));
}

#[test]
fn entries_age_out() {
    let mut l = lab(SwitchConfig::new(Duration::from_secs(5), 1024));
    l.sw.handle_frame(l.t0, l.p2, &frame(A, B));
    assert_eq!(l.sw.fdb(l.net, l.t0 + Duration::from_secs(5)).len(), 1);
    let later = l.t0 + Duration::from_secs(6);
    assert_eq!(l.sw.handle_frame(later, l.p1, &frame(B, A)), flood(l.net, l.p1), "expired entries are not used");
    // A was just learned; B has expired and the sweep removes it.
    l.sw.handle_timeout(later);
    let rows = l.sw.fdb(l.net, later);
    assert_eq!(rows.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>(), vec![(A, Location::Port(l.p1))]);
    assert_eq!(l.sw.network_counters(l.net).unwrap().fdb_entries, 1);
}

#[test]
fn refresh_keeps_an_entry_alive() {
    let mut l = lab(SwitchConfig::new(Duration::from_secs(5), 1024));
    for s in 0..20 {
        l.sw.handle_frame(l.t0 + Duration::from_secs(s), l.p2, &frame(A, B));
    }
    let t = l.t0 + Duration::from_secs(22);
    l.sw.handle_timeout(t);
    assert_eq!(l.sw.fdb(l.net, t).len(), 1);
}

#[test]
fn mac_moves_between_ports() {
    let mut l = lab(SwitchConfig::default());
    l.sw.handle_frame(l.t0, l.p2, &frame(A, B));
    assert_eq!(l.sw.handle_frame(l.t0, l.p1, &frame(B, A)), Action::Deliver(l.p2));
    // B moves to p3.
    l.sw.handle_frame(l.t0, l.p3, &frame(A, B));
    assert_eq!(l.sw.handle_frame(l.t0, l.p1, &frame(B, A)), Action::Deliver(l.p3));
    assert_eq!(l.sw.network_counters(l.net).unwrap().mac_moves, 1);
}

#[test]
fn bad_source_macs_are_dropped() {
    let mut l = lab(SwitchConfig::default());
    for src in [MacAddr::BROADCAST, MacAddr::ZERO, MacAddr([0x01, 0, 0x5e, 0, 0, 1])] {
        assert_eq!(l.sw.handle_frame(l.t0, l.p1, &frame(B, src)), Action::Drop(DropReason::BadSrcMac));
    }
    assert_eq!(l.sw.port_counters(l.p1).unwrap().drops[DropReason::BadSrcMac as usize], 3);
    assert!(l.sw.fdb(l.net, l.t0).is_empty(), "nothing was learned");
}

#[test]
fn per_port_mac_limit() {
    let mut l = lab(SwitchConfig::new(Duration::from_secs(300), 4));
    let mut actions = Vec::new();
    for i in 0..10u8 {
        let src = MacAddr([2, 0, 0, 0, 1, i]);
        actions.push(l.sw.handle_frame(l.t0, l.p1, &frame(MacAddr::BROADCAST, src)));
    }
    assert_eq!(actions.iter().filter(|a| **a == Action::Drop(DropReason::MacLimit)).count(), 6);
    assert_eq!(l.sw.fdb(l.net, l.t0).len(), 4);
    // Known MACs keep working; other ports are unaffected.
    assert_eq!(l.sw.handle_frame(l.t0, l.p1, &frame(B, MacAddr([2, 0, 0, 0, 1, 0]))), flood(l.net, l.p1));
    assert_eq!(l.sw.handle_frame(l.t0, l.p2, &frame(A, B)), flood(l.net, l.p2));
    // A MAC may not move onto a full port either.
    assert_eq!(l.sw.handle_frame(l.t0, l.p1, &frame(A, B)), Action::Drop(DropReason::MacLimit));
    // Once entries age out, the port may learn again.
    let later = l.t0 + Duration::from_secs(301);
    l.sw.handle_timeout(later);
    assert_eq!(l.sw.handle_frame(later, l.p1, &frame(B, MacAddr([2, 0, 0, 0, 1, 9]))), flood(l.net, l.p1));
}

#[test]
fn port_removal_forgets_its_macs() {
    let mut l = lab(SwitchConfig::default());
    l.sw.handle_frame(l.t0, l.p2, &frame(A, B));
    l.sw.remove_port(l.p2);
    assert_eq!(l.sw.handle_frame(l.t0, l.p1, &frame(B, A)), flood(l.net, l.p1));
    assert_eq!(l.sw.flood_targets(l.net, Location::Port(l.p1)).collect::<Vec<_>>(), vec![Location::Port(l.p3)]);
    assert_eq!(l.sw.handle_frame(l.t0, l.p2, &frame(A, B)), Action::Drop(DropReason::NoPort));
}

#[test]
fn same_port_destination_is_filtered() {
    let mut l = lab(SwitchConfig::default());
    l.sw.handle_frame(l.t0, l.p1, &frame(MacAddr::BROADCAST, B));
    assert_eq!(l.sw.handle_frame(l.t0, l.p1, &frame(B, A)), Action::Drop(DropReason::SamePort));
}

#[test]
fn malformed_and_oversize_frames_are_counted() {
    let mut l = lab(SwitchConfig::default());
    assert_eq!(l.sw.handle_frame(l.t0, l.p1, &[0u8; 5]), Action::Drop(DropReason::Truncated));
    let mut bad = frame(B, A);
    bad[1] = 9;
    assert_eq!(l.sw.handle_frame(l.t0, l.p1, &bad), Action::Drop(DropReason::BadVnetHdr));
    let big = build_plain(B, A, 0x0800, 1501);
    assert_eq!(l.sw.handle_frame(l.t0, l.p1, &big), Action::Drop(DropReason::Oversize));
    let fits = build_plain(B, A, 0x0800, 1500);
    assert_eq!(l.sw.handle_frame(l.t0, l.p1, &fits), flood(l.net, l.p1));
    let c = l.sw.port_counters(l.p1).unwrap();
    assert_eq!(c.frames, 4);
    let drops: Vec<_> = c.drops_by_name().collect();
    assert_eq!(drops, vec![("truncated", 1), ("bad_vnet_hdr", 1), ("oversize", 1)]);
}

#[test]
fn removing_a_network_removes_its_ports() {
    let mut l = lab(SwitchConfig::default());
    l.sw.remove_network(l.net);
    assert_eq!(l.sw.handle_frame(l.t0, l.p1, &frame(B, A)), Action::Drop(DropReason::NoPort));
    assert!(l.sw.add_port(l.net).is_none());
}
