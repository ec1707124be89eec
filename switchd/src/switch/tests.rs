//! Byte-fixture tests of the pipeline: learning, aging, flooding, isolation,
//! limits and drops.

use switchd_config::Vni;

use super::*;
use switchd_wire::vnet::{self as frame, build_plain};

const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xa]);
const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xb]);
const C: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xc]);

impl Switch {
    /// How many MACs a port has learned (counted against its limit).
    fn port_learned(&self, port: PortId) -> u32 {
        self.ports[port].learned
    }

    /// The decision alone, for tests that assert it.
    fn handle_frame_action(&mut self, now: Instant, ingress: PortId, buf: &[u8]) -> Action {
        let mut plan = Plan::default();
        self.handle_frame(now, ingress, buf, &mut plan);
        plan.action
    }

    fn handle_datagram_action(&mut self, now: Instant, src: IpAddr, datagram: &[u8]) -> Action {
        let mut plan = Plan::default();
        self.handle_datagram(now, src, &mut datagram.to_vec(), &mut NoKeys, &mut plan);
        plan.action
    }
}

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
    let net = sw.add_network(Vni::new(1).unwrap(), Mtu::new(1500).unwrap(), false).unwrap();
    let p1 = sw.add_port(net).unwrap();
    let p2 = sw.add_port(net).unwrap();
    let p3 = sw.add_port(net).unwrap();
    Lab { sw, t0: Instant::now(), net, p1, p2, p3 }
}

#[test]
fn unknown_unicast_floods_then_learned_unicast_is_delivered() {
    let mut l = lab(SwitchConfig::default());
    assert_eq!(l.sw.handle_frame_action(l.t0, l.p1, &frame(B, A)), flood(l.net, l.p1));
    let targets: Vec<_> = l.sw.flood_targets(l.net, Location::Port(l.p1)).collect();
    assert_eq!(targets, vec![Location::Port(l.p2), Location::Port(l.p3)], "never back out the ingress port");
    // B answers: A is known, so it goes to p1 only.
    assert_eq!(l.sw.handle_frame_action(l.t0, l.p2, &frame(A, B)), Action::Deliver(l.p1));
    assert_eq!(l.sw.handle_frame_action(l.t0, l.p1, &frame(B, A)), Action::Deliver(l.p2));
    assert_eq!(l.sw.network_counters(l.net).unwrap().flooded, 1);
}

#[test]
fn broadcast_and_multicast_flood_even_when_known() {
    let mut l = lab(SwitchConfig::default());
    l.sw.handle_frame_action(l.t0, l.p2, &frame(A, B));
    assert_eq!(l.sw.handle_frame_action(l.t0, l.p1, &frame(MacAddr::BROADCAST, A)), flood(l.net, l.p1));
    let mcast = MacAddr([0x33, 0x33, 0, 0, 0, 1]);
    assert_eq!(l.sw.handle_frame_action(l.t0, l.p1, &frame(mcast, A)), flood(l.net, l.p1));
}

#[test]
fn networks_are_isolated() {
    let mut l = lab(SwitchConfig::default());
    let other = l.sw.add_network(Vni::new(2).unwrap(), Mtu::new(1500).unwrap(), false).unwrap();
    let q1 = l.sw.add_port(other).unwrap();
    let q2 = l.sw.add_port(other).unwrap();
    // B is learned on p2 in the first network.
    l.sw.handle_frame_action(l.t0, l.p2, &frame(A, B));
    // From the other network, B is unknown: flood within that network only.
    assert_eq!(l.sw.handle_frame_action(l.t0, q1, &frame(B, C)), flood(other, q1));
    assert_eq!(l.sw.flood_targets(other, Location::Port(q1)).collect::<Vec<_>>(), vec![Location::Port(q2)]);
    // The same MAC may live in both networks independently.
    l.sw.handle_frame_action(l.t0, q2, &frame(C, B));
    assert_eq!(l.sw.handle_frame_action(l.t0, l.p1, &frame(B, A)), Action::Deliver(l.p2));
    assert_eq!(l.sw.handle_frame_action(l.t0, q1, &frame(B, C)), Action::Deliver(q2));
}

#[test]
fn entries_age_out() {
    let mut l = lab(SwitchConfig::new(Duration::from_secs(5), 1024));
    l.sw.handle_frame_action(l.t0, l.p2, &frame(A, B));
    assert_eq!(l.sw.fdb(l.net, l.t0 + Duration::from_secs(5)).len(), 1);
    let later = l.t0 + Duration::from_secs(6);
    assert_eq!(l.sw.handle_frame_action(later, l.p1, &frame(B, A)), flood(l.net, l.p1), "expired entries are not used");
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
        l.sw.handle_frame_action(l.t0 + Duration::from_secs(s), l.p2, &frame(A, B));
    }
    let t = l.t0 + Duration::from_secs(22);
    l.sw.handle_timeout(t);
    assert_eq!(l.sw.fdb(l.net, t).len(), 1);
}

#[test]
fn mac_moves_between_ports() {
    let mut l = lab(SwitchConfig::default());
    l.sw.handle_frame_action(l.t0, l.p2, &frame(A, B));
    assert_eq!(l.sw.handle_frame_action(l.t0, l.p1, &frame(B, A)), Action::Deliver(l.p2));
    // B moves to p3.
    l.sw.handle_frame_action(l.t0, l.p3, &frame(A, B));
    assert_eq!(l.sw.handle_frame_action(l.t0, l.p1, &frame(B, A)), Action::Deliver(l.p3));
    assert_eq!(l.sw.network_counters(l.net).unwrap().mac_moves, 1);
}

#[test]
fn bad_source_macs_are_dropped() {
    let mut l = lab(SwitchConfig::default());
    for src in [MacAddr::BROADCAST, MacAddr::ZERO, MacAddr([0x01, 0, 0x5e, 0, 0, 1])] {
        assert_eq!(l.sw.handle_frame_action(l.t0, l.p1, &frame(B, src)), Action::Drop(DropReason::BadSrcMac));
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
        actions.push(l.sw.handle_frame_action(l.t0, l.p1, &frame(MacAddr::BROADCAST, src)));
    }
    assert_eq!(actions.iter().filter(|a| **a == Action::Drop(DropReason::MacLimit)).count(), 6);
    assert_eq!(l.sw.fdb(l.net, l.t0).len(), 4);
    // Known MACs keep working; other ports are unaffected.
    assert_eq!(l.sw.handle_frame_action(l.t0, l.p1, &frame(B, MacAddr([2, 0, 0, 0, 1, 0]))), flood(l.net, l.p1));
    assert_eq!(l.sw.handle_frame_action(l.t0, l.p2, &frame(A, B)), flood(l.net, l.p2));
    // A MAC may not move onto a full port either.
    assert_eq!(l.sw.handle_frame_action(l.t0, l.p1, &frame(A, B)), Action::Drop(DropReason::MacLimit));
    // Once entries age out, the port may learn again.
    let later = l.t0 + Duration::from_secs(301);
    l.sw.handle_timeout(later);
    assert_eq!(l.sw.handle_frame_action(later, l.p1, &frame(B, MacAddr([2, 0, 0, 0, 1, 9]))), flood(l.net, l.p1));
}

#[test]
fn port_removal_forgets_its_macs() {
    let mut l = lab(SwitchConfig::default());
    l.sw.handle_frame_action(l.t0, l.p2, &frame(A, B));
    l.sw.remove_port(l.p2);
    assert_eq!(l.sw.handle_frame_action(l.t0, l.p1, &frame(B, A)), flood(l.net, l.p1));
    assert_eq!(l.sw.flood_targets(l.net, Location::Port(l.p1)).collect::<Vec<_>>(), vec![Location::Port(l.p3)]);
    assert_eq!(l.sw.handle_frame_action(l.t0, l.p2, &frame(A, B)), Action::Drop(DropReason::NoPort));
}

#[test]
fn same_port_destination_is_filtered() {
    let mut l = lab(SwitchConfig::default());
    l.sw.handle_frame_action(l.t0, l.p1, &frame(MacAddr::BROADCAST, B));
    assert_eq!(l.sw.handle_frame_action(l.t0, l.p1, &frame(B, A)), Action::Drop(DropReason::SamePort));
}

#[test]
fn malformed_and_oversize_frames_are_counted() {
    let mut l = lab(SwitchConfig::default());
    assert_eq!(l.sw.handle_frame_action(l.t0, l.p1, &[0u8; 5]), Action::Drop(DropReason::Truncated));
    let mut bad = frame(B, A);
    bad[1] = 9;
    assert_eq!(l.sw.handle_frame_action(l.t0, l.p1, &bad), Action::Drop(DropReason::BadVnetHdr));
    let big = build_plain(B, A, 0x0800, 1501);
    assert_eq!(l.sw.handle_frame_action(l.t0, l.p1, &big), Action::Drop(DropReason::Oversize));
    let fits = build_plain(B, A, 0x0800, 1500);
    assert_eq!(l.sw.handle_frame_action(l.t0, l.p1, &fits), flood(l.net, l.p1));
    let c = l.sw.port_counters(l.p1).unwrap();
    assert_eq!(c.frames, 4);
    let drops: Vec<_> = c.drops_by_name().collect();
    assert_eq!(drops, vec![("truncated", 1), ("bad_vnet_hdr", 1), ("oversize", 1)]);
}

#[test]
fn removing_a_network_removes_its_ports() {
    let mut l = lab(SwitchConfig::default());
    l.sw.remove_network(l.net);
    assert_eq!(l.sw.handle_frame_action(l.t0, l.p1, &frame(B, A)), Action::Drop(DropReason::NoPort));
    assert!(l.sw.add_port(l.net).is_none());
}

// --- the underlay ---------------------------------------------------------

const VTEP_B: &str = "198.18.0.2";
const STRANGER: &str = "198.18.0.66";

/// A VXLAN datagram: header with `flags` and `vni`, then an inner frame.
fn datagram(flags: u8, vni: u32, dst: MacAddr, src: MacAddr, payload_len: usize) -> Vec<u8> {
    let mut d = vec![flags, 0, 0, 0];
    d.extend_from_slice(&vni.to_be_bytes()[1..]);
    d.push(0);
    d.extend_from_slice(&build_plain(dst, src, 0x0800, payload_len)[frame::HEADER_LEN..]);
    d
}

struct Overlay {
    l: Lab,
    vtep: VtepId,
}

/// The lab's network (VNI 1) plus a VTEP at 198.18.0.2 carrying VNI 1.
fn overlay() -> Overlay {
    let mut l = lab(SwitchConfig::default());
    let vtep = l.sw.add_vtep(format!("{VTEP_B}:4789").parse().unwrap(), Some(vec![Vni::new(1).unwrap()])).unwrap();
    Overlay { l, vtep }
}

fn ip(s: &str) -> std::net::IpAddr {
    s.parse().unwrap()
}

#[test]
fn remote_macs_are_learned_behind_their_vtep_and_reached_by_encap() {
    let Overlay { mut l, vtep } = overlay();
    // A frame from the remote host's container C floods locally only.
    let from_remote = l.sw.handle_datagram_action(l.t0, ip(VTEP_B), &datagram(0x08, 1, MacAddr::BROADCAST, C, 46));
    assert_eq!(from_remote, Action::Flood { network: l.net, ingress: Location::Vtep(vtep) });
    let targets: Vec<_> = l.sw.flood_targets(l.net, Location::Vtep(vtep)).collect();
    assert_eq!(targets, vec![Location::Port(l.p1), Location::Port(l.p2), Location::Port(l.p3)], "split horizon");
    // Now C is known behind the VTEP: local frames to C are encapsulated to it.
    assert_eq!(l.sw.handle_frame_action(l.t0, l.p1, &frame(C, A)), Action::Encap { vtep, network: l.net });
    // Floods from a local port go to the other ports and to the VTEP.
    let targets: Vec<_> = l.sw.flood_targets(l.net, Location::Port(l.p1)).collect();
    assert_eq!(targets, vec![Location::Port(l.p2), Location::Port(l.p3), Location::Vtep(vtep)]);
    // And remote frames to a local MAC are delivered to its port.
    assert_eq!(l.sw.handle_datagram_action(l.t0, ip(VTEP_B), &datagram(0x08, 1, A, C, 46)), Action::Deliver(l.p1));
    let wire =
        NetworkWire { vni: Vni::new(1).unwrap(), mtu: 1500, encrypted: false, l4_checksum: L4Checksum::Complete };
    assert_eq!(l.sw.network_wire(l.net), Some(wire));
    let rows = l.sw.fdb(l.net, l.t0);
    assert!(rows.iter().any(|(mac, at, ..)| *mac == C && *at == Location::Vtep(vtep)));
}

#[test]
fn a_mac_moves_from_a_port_to_a_vtep_and_back() {
    let Overlay { mut l, vtep } = overlay();
    l.sw.handle_frame_action(l.t0, l.p2, &frame(A, B));
    assert_eq!(l.sw.handle_frame_action(l.t0, l.p1, &frame(B, A)), Action::Deliver(l.p2));
    // B's gratuitous ARP now comes from the other host.
    l.sw.handle_datagram_action(l.t0, ip(VTEP_B), &datagram(0x08, 1, MacAddr::BROADCAST, B, 46));
    assert_eq!(l.sw.handle_frame_action(l.t0, l.p1, &frame(B, A)), Action::Encap { vtep, network: l.net });
    assert_eq!(l.sw.network_counters(l.net).unwrap().mac_moves, 1);
    assert_eq!(l.sw.vtep_info(vtep).unwrap().learned, 1);
    l.sw.handle_frame_action(l.t0, l.p3, &frame(A, B));
    assert_eq!(l.sw.vtep_info(vtep).unwrap().learned, 0, "moved back: the VTEP's count drops");
}

#[test]
fn nothing_goes_back_into_the_underlay() {
    let Overlay { mut l, vtep } = overlay();
    l.sw.handle_datagram_action(l.t0, ip(VTEP_B), &datagram(0x08, 1, MacAddr::BROADCAST, C, 46));
    let action = l.sw.handle_datagram_action(l.t0, ip(VTEP_B), &datagram(0x08, 1, C, A, 46));
    assert_eq!(action, Action::Drop(DropReason::SamePort), "to a MAC behind the sender itself");
    let other = l.sw.add_vtep("198.18.0.3:4789".parse().unwrap(), None).unwrap();
    let action = l.sw.handle_datagram_action(l.t0, ip("198.18.0.3"), &datagram(0x08, 1, C, B, 46));
    assert_eq!(action, Action::Drop(DropReason::SplitHorizon), "to a MAC behind another VTEP");
    assert_eq!(l.sw.vtep_info(other).unwrap().rx.drops[DropReason::SplitHorizon as usize], 1);
    assert_ne!(vtep, other);
}

#[test]
fn bad_datagrams_are_counted_by_reason() {
    let Overlay { mut l, vtep } = overlay();
    let other_net = l.sw.add_network(Vni::new(2).unwrap(), Mtu::new(1500).unwrap(), false).unwrap();
    let cases: Vec<(Vec<u8>, DropReason)> = vec![
        (vec![0x08, 0, 0], DropReason::Truncated),
        (datagram(0x00, 1, B, C, 46), DropReason::BadFlags),
        (datagram(0x88, 1, B, C, 46), DropReason::BadFlags),
        (datagram(0x08, 7, B, C, 46), DropReason::UnknownVni),
        // VNI 2 exists here, but this VTEP is a peer for VNI 1 only.
        (datagram(0x08, 2, B, C, 46), DropReason::UnknownVni),
        (datagram(0x08, 0, B, C, 46), DropReason::UnknownVni),
        (datagram(0x08, 1, B, C, 46)[..8 + 13].to_vec(), DropReason::Truncated),
        (datagram(0x08, 1, B, C, 1501), DropReason::Oversize),
        (datagram(0x08, 1, B, MacAddr::ZERO, 46), DropReason::BadSrcMac),
    ];
    for (bytes, reason) in &cases {
        assert_eq!(l.sw.handle_datagram_action(l.t0, ip(VTEP_B), bytes), Action::Drop(*reason), "{reason:?}");
    }
    let info = l.sw.vtep_info(vtep).unwrap();
    assert_eq!(info.rx.frames, cases.len() as u64);
    let drops: Vec<_> = info.rx.drops_by_name().collect();
    assert_eq!(
        drops,
        vec![("truncated", 2), ("oversize", 1), ("bad_src_mac", 1), ("bad_vxlan_flags", 2), ("unknown_vni", 3)]
    );
    assert!(l.sw.fdb(l.net, l.t0).is_empty() && l.sw.fdb(other_net, l.t0).is_empty(), "nothing learned");

    // Unknown sources are counted apart, before any VTEP is involved.
    let action = l.sw.handle_datagram_action(l.t0, ip(STRANGER), &datagram(0x08, 1, B, C, 46));
    assert_eq!(action, Action::Drop(DropReason::UnknownSource));
    assert_eq!(l.sw.underlay_counters().drops[DropReason::UnknownSource as usize], 1);
}

/// Opens every sealed datagram as if its tag verified (its "ciphertext"
/// is a plain frame), or refuses every one with `refuse`.
struct FakeKeys {
    refuse: Option<OpenError>,
    opened: usize,
}

impl Opener for FakeKeys {
    fn open(&mut self, datagram: &mut [u8], _: IpAddr) -> Result<std::ops::Range<usize>, sealed::Refused> {
        match self.refuse {
            Some(e) => Err(sealed::Refused::Open(e)),
            None => {
                self.opened += 1;
                Ok(8..datagram.len())
            }
        }
    }
}

/// An encrypted network takes sealed packets only (opened in place by the
/// caller's keys between admission and decision), and a plain one never
/// takes them.
#[test]
fn encrypted_networks_admit_sealed_packets_only() {
    let mut sw = Switch::new(SwitchConfig::default());
    let secret = sw.add_network(Vni::new(1).unwrap(), Mtu::new(1414).unwrap(), true).unwrap();
    sw.add_network(Vni::new(2).unwrap(), Mtu::new(1450).unwrap(), false).unwrap();
    let port = sw.add_port(secret).unwrap();
    let vtep = sw.add_vtep(format!("{VTEP_B}:4789").parse().unwrap(), None).unwrap();
    assert!(sw.network_wire(secret).unwrap().encrypted);
    let t0 = Instant::now();
    let mut plan = Plan::default();
    let mut decide = |sw: &mut Switch, keys: &mut FakeKeys, mut d: Vec<u8>| {
        sw.handle_datagram(t0, ip(VTEP_B), &mut d, keys, &mut plan);
        plan.clone()
    };
    let mut keys = FakeKeys { refuse: None, opened: 0 };

    let plaintext = datagram(0x08, 1, MacAddr::BROADCAST, C, 46);
    assert_eq!(decide(&mut sw, &mut keys, plaintext).action, Action::Drop(DropReason::PlaintextOnEncrypted));
    let sealed_for_plain = datagram(0x48, 2, MacAddr::BROADCAST, C, 46);
    assert_eq!(decide(&mut sw, &mut keys, sealed_for_plain).action, Action::Drop(DropReason::SealedOnPlain));
    assert_eq!(keys.opened, 0, "nothing opened that was refused first");
    assert!(sw.fdb(secret, t0).is_empty(), "nothing learned from refused packets");

    // Without its key, or with a tag that fails: refused by reason.
    let sealed = datagram(0x48, 1, MacAddr::BROADCAST, C, 46);
    assert_eq!(sw.handle_datagram_action(t0, ip(VTEP_B), &sealed), Action::Drop(DropReason::UnknownKey), "no keys");
    let mut tampered = FakeKeys { refuse: Some(OpenError::AuthFailed), opened: 0 };
    assert_eq!(decide(&mut sw, &mut tampered, sealed.clone()).action, Action::Drop(DropReason::AuthFailed));
    assert!(sw.fdb(secret, t0).is_empty());

    // Opened: decided, and the plan says where the inner frame lies.
    let opened = decide(&mut sw, &mut keys, sealed.clone());
    assert_eq!(opened.action, Action::Flood { network: secret, ingress: Location::Vtep(vtep) });
    assert_eq!(opened.targets, vec![Target::Port(port)]);
    assert_eq!(opened.inner, 8..sealed.len());
    assert!(opened.sealed, "the plan says the inner frame was sealed");
    assert_eq!(sw.handle_frame_action(t0, port, &frame(C, A)), Action::Encap { vtep, network: secret });

    let drops: Vec<_> = sw.vtep_info(vtep).unwrap().rx.drops_by_name().collect();
    assert_eq!(
        drops,
        vec![("plaintext_on_encrypted", 1), ("sealed_on_plain", 1), ("unknown_key", 1), ("auth_failed", 1)]
    );
}

#[test]
fn vteps_join_networks_by_vni_and_leave_cleanly() {
    let mut sw = Switch::new(SwitchConfig::default());
    let all = sw.add_vtep("198.18.0.2:4789".parse().unwrap(), None).unwrap();
    let only_5 = sw.add_vtep("198.18.0.3:4789".parse().unwrap(), Some(vec![Vni::new(5).unwrap()])).unwrap();
    assert!(sw.add_vtep("198.18.0.3:8472".parse().unwrap(), None).is_none(), "one VTEP per address");
    let n5 = sw.add_network(Vni::new(5).unwrap(), Mtu::new(1500).unwrap(), false).unwrap();
    let n6 = sw.add_network(Vni::new(6).unwrap(), Mtu::new(1500).unwrap(), false).unwrap();
    assert!(sw.add_network(Vni::new(6).unwrap(), Mtu::new(1500).unwrap(), false).is_none(), "one network per VNI");
    let p5 = sw.add_port(n5).unwrap();
    let p6 = sw.add_port(n6).unwrap();
    let vteps = |sw: &Switch, net, port| -> Vec<Location> {
        sw.flood_targets(net, Location::Port(port)).filter(|t| matches!(t, Location::Vtep(_))).collect()
    };
    assert_eq!(vteps(&sw, n5, p5), vec![Location::Vtep(all), Location::Vtep(only_5)]);
    assert_eq!(vteps(&sw, n6, p6), vec![Location::Vtep(all)]);
    sw.handle_datagram_action(Instant::now(), ip("198.18.0.2"), &datagram(0x08, 5, MacAddr::BROADCAST, C, 46));
    sw.remove_vtep(all);
    assert!(sw.fdb(n5, Instant::now()).is_empty(), "its MACs are forgotten");
    assert_eq!(vteps(&sw, n5, p5), vec![Location::Vtep(only_5)]);
    assert_eq!(
        sw.handle_datagram_action(Instant::now(), ip("198.18.0.2"), &datagram(0x08, 5, B, C, 46)),
        Action::Drop(DropReason::UnknownSource)
    );
}

// --- gossip entries and neighbor answers -------------------------------------

#[test]
fn gossip_entries_route_without_flooding_and_never_age() {
    let Overlay { mut l, vtep } = overlay();
    l.sw.set_gossip_macs(l.net, &[(C, vtep)], l.t0);
    assert_eq!(l.sw.handle_frame_action(l.t0, l.p1, &frame(C, A)), Action::Encap { vtep, network: l.net });
    let much_later = l.t0 + Duration::from_secs(100_000);
    l.sw.handle_timeout(much_later);
    assert_eq!(l.sw.handle_frame_action(much_later, l.p1, &frame(C, A)), Action::Encap { vtep, network: l.net });
    let rows = l.sw.fdb(l.net, much_later);
    assert!(rows.iter().any(|(m, _, kind, _)| *m == C && *kind == FdbKind::Gossip));
    assert_eq!(l.sw.vtep_info(vtep).unwrap().learned, 0, "gossip entries count against no limit");
    // Replaced by the next set: C is gone, D is there.
    let d = MacAddr([2, 0, 0, 0, 0, 0xd]);
    l.sw.set_gossip_macs(l.net, &[(d, vtep)], much_later);
    assert_eq!(l.sw.handle_frame_action(much_later, l.p1, &frame(C, A)), flood(l.net, l.p1));
}

#[test]
fn a_gossip_update_changes_only_what_it_names() {
    let Overlay { mut l, vtep } = overlay();
    let d = MacAddr([2, 0, 0, 0, 0, 0xd]);
    l.sw.set_gossip_macs(l.net, &[(C, vtep), (d, vtep)], l.t0);
    // B is learned on a local port: neither telling nor forgetting it by gossip moves it.
    l.sw.handle_frame_action(l.t0, l.p2, &frame(A, B));
    let later = l.t0 + Duration::from_secs(5);
    let e = MacAddr([2, 0, 0, 0, 0, 0xe]);
    l.sw.update_gossip_macs(l.net, &[C, B], &[(e, vtep), (B, vtep)], later);
    assert_eq!(l.sw.handle_frame_action(later, l.p1, &frame(C, A)), flood(l.net, l.p1), "C is gone");
    assert_eq!(l.sw.handle_frame_action(later, l.p1, &frame(e, A)), Action::Encap { vtep, network: l.net });
    assert_eq!(l.sw.handle_frame_action(later, l.p1, &frame(B, A)), Action::Deliver(l.p2));
    let told = |mac| l.sw.fdb(l.net, later).into_iter().find(|(m, ..)| *m == mac).map(|(_, _, kind, age)| (kind, age));
    assert_eq!(told(d), Some((FdbKind::Gossip, Duration::from_secs(5))), "D untouched, told at the start");
    assert_eq!(told(e), Some((FdbKind::Gossip, Duration::ZERO)));
    // Neighbour answers alike.
    let (ip_c, ip_e): (IpAddr, IpAddr) = ("10.0.0.3".parse().unwrap(), "10.0.0.5".parse().unwrap());
    l.sw.set_neighbors(l.net, [(ip_c, C)]);
    l.sw.update_neighbors(l.net, &[ip_c], &[(ip_e, e)]);
    assert_eq!(l.sw.neighbor(l.net, ip_c), None);
    assert_eq!(l.sw.neighbor(l.net, ip_e), Some(e));
}

#[test]
fn traffic_wins_over_gossip_and_local_ports_are_never_overwritten() {
    let Overlay { mut l, vtep } = overlay();
    // B is learned on a local port; gossip claiming it is remote is ignored.
    l.sw.handle_frame_action(l.t0, l.p2, &frame(A, B));
    l.sw.set_gossip_macs(l.net, &[(B, vtep)], l.t0);
    assert_eq!(l.sw.handle_frame_action(l.t0, l.p1, &frame(B, A)), Action::Deliver(l.p2));
    // C is remote by gossip, then shows up on a local port: it moved here.
    l.sw.set_gossip_macs(l.net, &[(C, vtep)], l.t0);
    l.sw.handle_frame_action(l.t0, l.p3, &frame(MacAddr::BROADCAST, C));
    assert_eq!(l.sw.handle_frame_action(l.t0, l.p1, &frame(C, A)), Action::Deliver(l.p3));
    assert_eq!(l.sw.port_counters(l.p3).unwrap().frames, 1);
}

#[test]
fn vteps_follow_the_networks_their_hosts_carry() {
    let Overlay { mut l, vtep } = overlay();
    let vteps_of = |sw: &Switch, l: &Lab| {
        sw.flood_targets(l.net, Location::Port(l.p1)).filter(|t| matches!(t, Location::Vtep(_))).count()
    };
    assert_eq!(vteps_of(&l.sw, &l), 1);
    l.sw.handle_datagram_action(l.t0, ip(VTEP_B), &datagram(0x08, 1, MacAddr::BROADCAST, C, 46));
    l.sw.set_vtep_vnis(vtep, Some(vec![Vni::new(99).unwrap()]));
    assert_eq!(vteps_of(&l.sw, &l), 0);
    assert!(l.sw.fdb(l.net, l.t0).iter().all(|(m, ..)| *m != C), "its MACs on that network are forgotten");
    assert_eq!(
        l.sw.handle_datagram_action(l.t0, ip(VTEP_B), &datagram(0x08, 1, A, C, 46)),
        Action::Drop(DropReason::UnknownVni)
    );
    l.sw.set_vtep_vnis(vtep, None);
    assert_eq!(vteps_of(&l.sw, &l), 1);
}

/// An ARP request from a container, as its kernel sends it.
fn arp_request(sender_mac: MacAddr, sender_ip: [u8; 4], target_ip: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0u8; frame::HEADER_LEN];
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&sender_mac.0);
    f.extend_from_slice(&[8, 6, 0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&sender_mac.0);
    f.extend_from_slice(&sender_ip);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target_ip);
    f
}

#[test]
fn arp_for_a_known_address_is_answered_not_flooded() {
    let mut l = lab(SwitchConfig::default());
    l.sw.set_neighbors(l.net, [(ip("10.0.0.3"), C)]);
    match l.sw.handle_frame_action(l.t0, l.p1, &arp_request(A, [10, 0, 0, 1], [10, 0, 0, 3])) {
        Action::Answer { port, owner, request } => {
            assert_eq!((port, owner), (l.p1, C));
            assert_eq!(request.target(), ip("10.0.0.3"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(l.sw.network_counters(l.net).unwrap().neighbor_answers, 1);
    assert_eq!(l.sw.network_counters(l.net).unwrap().flooded, 0);
    // Unknown targets and gratuitous ARP are flooded as ever.
    assert_eq!(l.sw.handle_frame_action(l.t0, l.p1, &arp_request(A, [10, 0, 0, 1], [10, 0, 0, 9])), flood(l.net, l.p1));
    assert_eq!(l.sw.handle_frame_action(l.t0, l.p1, &arp_request(A, [10, 0, 0, 1], [10, 0, 0, 1])), flood(l.net, l.p1));
    // A container asking for its own address is not answered by the switch.
    l.sw.set_neighbors(l.net, [(ip("10.0.0.1"), A)]);
    assert_eq!(l.sw.handle_frame_action(l.t0, l.p1, &arp_request(A, [0, 0, 0, 0], [10, 0, 0, 1])), flood(l.net, l.p1));
}

/// Two networks with gateways, 10.1.0.0/24 (VNI 1) and 10.2.0.0/24 (VNI 2),
/// a port on each holding .2, and routes between them as asked.
struct RoutedLab {
    sw: Switch,
    t0: Instant,
    front: NetworkId,
    back: NetworkId,
    p_front: PortId,
    p_back: PortId,
}

const GW_FRONT: &str = "10.1.0.1";

fn routed_lab(route: bool) -> RoutedLab {
    routed_lab_with_mtus(route, [1500, 1500])
}

/// [`routed_lab`] with front's and back's MTUs.
fn routed_lab_with_mtus(route: bool, mtus: [u32; 2]) -> RoutedLab {
    let mut sw = Switch::new(SwitchConfig::default());
    let mut add = |vni: u32| {
        let mtu = mtus[vni as usize - 1];
        let vni = Vni::new(vni).unwrap();
        let net = sw.add_network(vni, Mtu::new(mtu).unwrap(), false).unwrap();
        let gateway = Gateway {
            v4: Some((
                format!("10.{}.0.1", vni.get()).parse().unwrap(),
                format!("10.{}.0.0/24", vni.get()).parse().unwrap(),
            )),
            mac: Gateway::mac_for(vni),
            dhcp: true,
            v6: Some((
                format!("fd00:{}::1", vni.get()).parse().unwrap(),
                format!("fd00:{}::/64", vni.get()).parse().unwrap(),
            )),
        };
        sw.set_gateway(net, Some(gateway));
        let port = sw.add_port(net).unwrap();
        let (mac, ip) = ([A, B][vni.get() as usize - 1], format!("10.{}.0.2", vni.get()).parse().unwrap());
        let mut guard = EndpointGuard::new(mac, true, Some(ip));
        guard.ipv6.as_mut().unwrap().push(format!("fd00:{}::2", vni.get()).parse().unwrap());
        sw.set_port_guard(port, PortGuard::Endpoint(guard));
        (net, port)
    };
    let (front, p_front) = add(1);
    let (back, p_back) = add(2);
    if route {
        sw.set_routes(front, vec![back]);
        sw.set_routes(back, vec![front]);
    }
    sw.set_neighbors(front, [("10.1.0.2".parse().unwrap(), A), ("fd00:1::2".parse().unwrap(), A)]);
    sw.set_neighbors(back, [("10.2.0.2".parse().unwrap(), B), ("fd00:2::2".parse().unwrap(), B)]);
    RoutedLab { sw, t0: Instant::now(), front, back, p_front, p_back }
}

/// An IPv4/UDP frame behind a virtio header, as a port reads it.
fn ip_frame(dst: MacAddr, src: MacAddr, from: &str, to: &str, ttl: u8, dst_port: u16) -> Vec<u8> {
    let mut out = vec![0u8; frame::HEADER_LEN];
    let (from, to): (Ipv4Addr, Ipv4Addr) = (from.parse().unwrap(), to.parse().unwrap());
    etherparse::PacketBuilder::ethernet2(src.0, dst.0)
        .ipv4(from.octets(), to.octets(), ttl)
        .udp(40000, dst_port)
        .write(&mut out, b"hello")
        .unwrap();
    out
}

#[test]
fn routes_only_listed_pairs_rewriting_macs() {
    let gw1 = Gateway::mac_for(Vni::new(1).unwrap());
    let gw2 = Gateway::mac_for(Vni::new(2).unwrap());
    let mut l = routed_lab(true);
    // B is known on its port once it has sent something.
    l.sw.handle_frame_action(l.t0, l.p_back, &ip_frame(MacAddr::BROADCAST, B, "10.2.0.2", "10.2.0.255", 64, 9));
    let action = l.sw.handle_frame_action(l.t0, l.p_front, &ip_frame(gw1, A, "10.1.0.2", "10.2.0.2", 64, 9));
    assert_eq!(action, Action::Route { network: l.back, src: gw2, dst: B, next: Next::Port(l.p_back) });
    assert_eq!(l.sw.network_counters(l.front).unwrap().routed, 1);

    let mut l = routed_lab(false);
    let action = l.sw.handle_frame_action(l.t0, l.p_front, &ip_frame(gw1, A, "10.1.0.2", "10.2.0.2", 64, 9));
    assert_eq!(action, Action::Reject { port: l.p_front, network: l.front, reason: DropReason::RouteDenied });
    let drops = &l.sw.port_counters(l.p_front).unwrap().drops;
    assert_eq!(drops[DropReason::RouteDenied as usize], 1);
}

#[test]
fn routing_refusals_say_why() {
    let gw1 = Gateway::mac_for(Vni::new(1).unwrap());
    let mut l = routed_lab(true);
    let reject = |reason| Action::Reject { port: l.p_front, network: l.front, reason };
    let mut send = |to: &str, ttl| l.sw.handle_frame_action(l.t0, l.p_front, &ip_frame(gw1, A, "10.1.0.2", to, ttl, 9));
    assert_eq!(send("10.2.0.2", 1), reject(DropReason::TtlExceeded), "traceroute's first probe");
    assert_eq!(send("10.2.0.99", 64), reject(DropReason::NoNeighbor));
    assert_eq!(send("192.0.2.1", 64), reject(DropReason::NoRoute));
    // To the gateway itself: served, not routed.
    assert_eq!(send(GW_FRONT, 64), Action::Local { port: l.p_front, network: l.front });
    // The unknown destination MAC of a known neighbour floods in the new network.
    assert!(matches!(send("10.2.0.2", 64), Action::Route { next: Next::Flood, .. }));
}

/// An IPv6/UDP frame behind a virtio header, as a port reads it.
fn ip6_frame(dst: MacAddr, src: MacAddr, from: &str, to: &str, hop_limit: u8, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; frame::HEADER_LEN];
    let (from, to): (Ipv6Addr, Ipv6Addr) = (from.parse().unwrap(), to.parse().unwrap());
    etherparse::PacketBuilder::ethernet2(src.0, dst.0)
        .ipv6(from.octets(), to.octets(), hop_limit)
        .udp(40000, 9)
        .write(&mut out, &vec![0x55; len])
        .unwrap();
    out
}

/// IPv6 is routed by the same `[[route]]` pairs as IPv4, with the same
/// refusals, and never cut: too big for the other network is too big.
#[test]
fn ipv6_is_routed_and_refused_as_ipv4_is() {
    let (gw1, gw2) = (Gateway::mac_for(Vni::new(1).unwrap()), Gateway::mac_for(Vni::new(2).unwrap()));
    let mut l = routed_lab_with_mtus(true, [1500, 1280]);
    l.sw.handle_frame_action(l.t0, l.p_back, &ip6_frame(MacAddr::BROADCAST, B, "fd00:2::2", "ff02::1", 1, 8));
    let mut send = |to: &str, hop_limit, len| {
        l.sw.handle_frame_action(l.t0, l.p_front, &ip6_frame(gw1, A, "fd00:1::2", to, hop_limit, len))
    };
    assert_eq!(
        send("fd00:2::2", 64, 8),
        Action::Route { network: l.back, src: gw2, dst: B, next: Next::Port(l.p_back) }
    );
    let reject = |reason| Action::Reject { port: l.p_front, network: l.front, reason };
    assert_eq!(send("fd00:2::2", 1, 8), reject(DropReason::TtlExceeded), "hop limit 1");
    assert_eq!(send("fd00:2::99", 64, 8), reject(DropReason::NoNeighbor));
    assert_eq!(send("fd00:99::1", 64, 8), reject(DropReason::NoRoute));
    assert_eq!(send("fd00:2::2", 64, 1400), reject(DropReason::FragNeeded), "larger than back's 1280");
    // The gateways' own addresses, on-link ones and link-local ones are
    // served, not routed.
    for to in ["fd00:1::1", "fd00:1::2", "fe80::1", "ff02::2"] {
        assert_eq!(send(to, 64, 8), Action::Local { port: l.p_front, network: l.front }, "{to}");
    }
    assert_eq!(send("fd00:2::1", 1, 8), Action::Local { port: l.p_front, network: l.back }, "back's gateway");
    let mut l = routed_lab(false);
    let action = l.sw.handle_frame_action(l.t0, l.p_front, &ip6_frame(gw1, A, "fd00:1::2", "fd00:2::2", 64, 8));
    assert_eq!(action, Action::Reject { port: l.p_front, network: l.front, reason: DropReason::RouteDenied });
}

#[test]
fn dhcp_broadcasts_go_to_the_gateway() {
    let mut l = routed_lab(false);
    let discover = ip_frame(MacAddr::BROADCAST, A, "0.0.0.0", "255.255.255.255", 64, 67);
    assert_eq!(
        l.sw.handle_frame_action(l.t0, l.p_front, &discover),
        Action::Local { port: l.p_front, network: l.front }
    );
    // Other broadcasts flood as ever.
    let other = ip_frame(MacAddr::BROADCAST, A, "10.1.0.2", "255.255.255.255", 64, 137);
    assert!(matches!(l.sw.handle_frame_action(l.t0, l.p_front, &other), Action::Flood { .. }));
}

#[test]
fn ports_may_only_use_their_addresses() {
    let gw1 = Gateway::mac_for(Vni::new(1).unwrap());
    let mut l = routed_lab(true);
    let spoofed = ip_frame(MacAddr::BROADCAST, A, "10.1.0.3", "10.1.0.255", 64, 9);
    assert_eq!(l.sw.handle_frame_action(l.t0, l.p_front, &spoofed), Action::Drop(DropReason::SpoofedAddress));
    // An ARP reply claiming the gateway's address.
    let mut arp = build_plain(MacAddr::BROADCAST, A, 0x0806, 46);
    let body = &mut arp[frame::HEADER_LEN + 14..];
    body[..8].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]);
    body[8..14].copy_from_slice(&A.0);
    body[14..18].copy_from_slice(&[10, 1, 0, 1]);
    assert_eq!(l.sw.handle_frame_action(l.t0, l.p_front, &arp), Action::Drop(DropReason::SpoofedAddress));
    // The gateway's MAC as a source.
    let fake_gw = ip_frame(MacAddr::BROADCAST, gw1, "10.1.0.2", "10.1.0.255", 64, 9);
    assert_eq!(l.sw.handle_frame_action(l.t0, l.p_front, &fake_gw), Action::Drop(DropReason::SpoofedAddress));
    let drops = &l.sw.port_counters(l.p_front).unwrap().drops;
    assert_eq!(drops[DropReason::SpoofedAddress as usize], 3);
    // Its own address is fine.
    let own = ip_frame(MacAddr::BROADCAST, A, "10.1.0.2", "10.1.0.255", 64, 9);
    assert!(matches!(l.sw.handle_frame_action(l.t0, l.p_front, &own), Action::Flood { .. }));
}

#[test]
fn the_guard_refuses_what_it_cannot_read() {
    let mut l = routed_lab(false);
    let spoof = |l: &mut RoutedLab, frame: Vec<u8>| l.sw.handle_frame_action(l.t0, l.p_front, &frame);
    // An 802.1Q tag (VLAN 0) around a spoofed IPv4 source.
    let mut tagged = ip_frame(MacAddr::BROADCAST, A, "10.1.0.3", "10.1.0.255", 64, 9);
    let vlan = [0x81, 0x00, 0x00, 0x00];
    tagged.splice(frame::HEADER_LEN + 12..frame::HEADER_LEN + 12, vlan);
    assert_eq!(spoof(&mut l, tagged), Action::Drop(DropReason::SpoofedAddress));
    // ARP with another hardware type claiming the gateway.
    let mut arp = build_plain(MacAddr::BROADCAST, A, 0x0806, 46);
    let body = &mut arp[frame::HEADER_LEN + 14..];
    body[..8].copy_from_slice(&[0, 6, 8, 0, 6, 4, 0, 2]);
    body[14..18].copy_from_slice(&[10, 1, 0, 1]);
    assert_eq!(spoof(&mut l, arp), Action::Drop(DropReason::SpoofedAddress));
    // Other EtherTypes carry no IPv4 address: they pass.
    assert!(matches!(spoof(&mut l, build_plain(MacAddr::BROADCAST, A, 0x88b5, 46)), Action::Flood { .. }));
}

#[test]
fn the_other_networks_gateway_is_served_not_flooded() {
    let gw1 = Gateway::mac_for(Vni::new(1).unwrap());
    let mut l = routed_lab(true);
    // The daemon puts each gateway among its network's neighbours.
    l.sw.set_neighbors(l.back, [("10.2.0.1".parse().unwrap(), Gateway::mac_for(Vni::new(2).unwrap()))]);
    let to_gw2 = ip_frame(gw1, A, "10.1.0.2", "10.2.0.1", 64, 53);
    assert_eq!(l.sw.handle_frame_action(l.t0, l.p_front, &to_gw2), Action::Local { port: l.p_front, network: l.back });
}

/// The other network's gateway address is the gateway's own: delivered,
/// not forwarded, so TTL 1 reaches it as it reaches a router's own
/// addresses (found by fuzzing l3_forward: it was refused, time exceeded).
#[test]
fn the_other_networks_gateway_is_served_whatever_the_ttl() {
    let gw1 = Gateway::mac_for(Vni::new(1).unwrap());
    let mut l = routed_lab(true);
    for ttl in [1, 0] {
        let ping_gw2 = ip_frame(gw1, A, "10.1.0.2", "10.2.0.1", ttl, 53);
        assert_eq!(
            l.sw.handle_frame_action(l.t0, l.p_front, &ping_gw2),
            Action::Local { port: l.p_front, network: l.back },
            "TTL {ttl}"
        );
    }
    let beyond = ip_frame(gw1, A, "10.1.0.2", "10.2.0.2", 1, 53);
    let refused = Action::Reject { port: l.p_front, network: l.front, reason: DropReason::TtlExceeded };
    assert_eq!(l.sw.handle_frame_action(l.t0, l.p_front, &beyond), refused, "what lies beyond it is still refused");
}

/// A lab whose three ports are containers A, B and C (their MACs guarded),
/// plus a LAN port and a VTEP.
fn guarded_lab() -> (Lab, PortId, VtepId) {
    let mut l = lab(SwitchConfig::default());
    for (port, mac) in [(l.p1, A), (l.p2, B), (l.p3, C)] {
        l.sw.set_port_guard(port, PortGuard::Endpoint(EndpointGuard::new(mac, false, None)));
    }
    let lan = l.sw.add_port(l.net).unwrap();
    l.sw.set_port_guard(lan, PortGuard::Lan);
    let vtep = l.sw.add_vtep("198.18.0.2:4789".parse().unwrap(), None).unwrap();
    (l, lan, vtep)
}

fn vxlan(vni: u32, inner: &[u8]) -> Vec<u8> {
    let mut d = vec![0x08, 0, 0, 0];
    d.extend_from_slice(&(vni << 8).to_be_bytes());
    d.extend_from_slice(inner);
    d
}

#[test]
fn a_container_cannot_take_another_ones_mac() {
    let (mut l, _, _) = guarded_lab();
    // C talks to B: B is learned on p2.
    assert_eq!(l.sw.handle_frame_action(l.t0, l.p2, &frame(C, B)), flood(l.net, l.p2));
    assert_eq!(l.sw.handle_frame_action(l.t0, l.p3, &frame(B, C)), Action::Deliver(l.p2));
    // A sends one frame as B, of an EtherType nothing reads.
    let forged = build_plain(MacAddr::BROADCAST, B, 0x88b5, 46);
    assert_eq!(l.sw.handle_frame_action(l.t0, l.p1, &forged), Action::Drop(DropReason::SpoofedMac));
    assert_eq!(l.sw.handle_frame_action(l.t0, l.p3, &frame(B, C)), Action::Deliver(l.p2), "B's traffic stays B's");
    assert_eq!(l.sw.port_counters(l.p1).unwrap().drops[DropReason::SpoofedMac as usize], 1);
    assert_eq!(l.sw.network_counters(l.net).unwrap().mac_moves, 0);
}

#[test]
fn a_lan_may_use_any_mac_but_an_endpoints() {
    let (mut l, lan, vtep) = guarded_lab();
    let d = MacAddr([2, 0, 0, 0, 0, 0xd]);
    assert_eq!(l.sw.handle_frame_action(l.t0, lan, &frame(A, d)), flood(l.net, lan), "a LAN host's own MAC is learned");
    // A local endpoint's MAC, learned or not yet: refused.
    assert_eq!(l.sw.handle_frame_action(l.t0, lan, &frame(d, B)), Action::Drop(DropReason::SpoofedMac));
    assert_eq!(l.sw.handle_frame_action(l.t0, l.p2, &frame(d, B)), Action::Deliver(lan));
    assert_eq!(l.sw.handle_frame_action(l.t0, lan, &frame(d, B)), Action::Drop(DropReason::SpoofedMac));
    // A remote endpoint's MAC, known by gossip: refused too.
    let remote = MacAddr([2, 0, 0, 0, 0, 0xe]);
    l.sw.set_gossip_macs(l.net, &[(remote, vtep)], l.t0);
    assert_eq!(l.sw.handle_frame_action(l.t0, lan, &frame(d, remote)), Action::Drop(DropReason::SpoofedMac));
    assert_eq!(l.sw.handle_frame_action(l.t0, l.p1, &frame(remote, A)), Action::Encap { vtep, network: l.net });
    assert_eq!(l.sw.port_counters(lan).unwrap().drops[DropReason::SpoofedMac as usize], 3);
}

/// Found by fuzzing: a remote endpoint's MAC that traffic from a VTEP
/// re-learned (or that aged out) is still an endpoint's: the LAN may not
/// take it.
#[test]
fn a_lan_cannot_take_a_remote_endpoints_mac_once_traffic_moved_it() {
    let (mut l, lan, vtep) = guarded_lab();
    let _other_host = l.sw.add_vtep("198.18.0.3:4789".parse().unwrap(), None).unwrap();
    let remote = MacAddr([2, 0, 0, 0, 0, 0xe]);
    l.sw.set_gossip_macs(l.net, &[(remote, vtep)], l.t0);
    // The container moved behind another host before gossip said so.
    let moved = vxlan(1, &build_plain(MacAddr::BROADCAST, remote, 0x0800, 46)[frame::HEADER_LEN..]);
    assert!(matches!(l.sw.handle_datagram_action(l.t0, "198.18.0.3".parse().unwrap(), &moved), Action::Flood { .. }));
    let d = MacAddr([2, 0, 0, 0, 0, 0xd]);
    assert_eq!(l.sw.handle_frame_action(l.t0, lan, &frame(d, remote)), Action::Drop(DropReason::SpoofedMac));
    // And after the learned entry aged out.
    let later = l.t0 + Duration::from_secs(400);
    l.sw.handle_timeout(later);
    assert_eq!(l.sw.handle_frame_action(later, lan, &frame(d, remote)), Action::Drop(DropReason::SpoofedMac));
    assert_eq!(l.sw.handle_frame_action(later, l.p1, &frame(remote, A)), flood(l.net, l.p1));
}

#[test]
fn a_vtep_cannot_take_a_local_endpoints_mac() {
    let (mut l, _, vtep) = guarded_lab();
    l.sw.handle_frame_action(l.t0, l.p2, &frame(C, B));
    let from = "198.18.0.2".parse().unwrap();
    let forged = vxlan(1, &build_plain(MacAddr::BROADCAST, B, 0x0800, 46)[frame::HEADER_LEN..]);
    assert_eq!(l.sw.handle_datagram_action(l.t0, from, &forged), Action::Drop(DropReason::SpoofedMac));
    // Also one not heard from yet.
    let forged = vxlan(1, &build_plain(MacAddr::BROADCAST, A, 0x0800, 46)[frame::HEADER_LEN..]);
    assert_eq!(l.sw.handle_datagram_action(l.t0, from, &forged), Action::Drop(DropReason::SpoofedMac));
    assert_eq!(l.sw.handle_frame_action(l.t0, l.p3, &frame(B, C)), Action::Deliver(l.p2));
    assert_eq!(l.sw.vtep_info(vtep).unwrap().rx.drops[DropReason::SpoofedMac as usize], 2);
    // Once A is gone (it moved to another host), its MAC may appear there.
    l.sw.remove_port(l.p1);
    let moved = vxlan(1, &build_plain(MacAddr::BROADCAST, A, 0x0800, 46)[frame::HEADER_LEN..]);
    assert!(matches!(l.sw.handle_datagram_action(l.t0, from, &moved), Action::Flood { .. }));
}

#[test]
fn gso_frames_asking_for_tiny_segments_are_dropped() {
    let mut l = lab(SwitchConfig::default());
    let mut tso = build_plain(B, A, 0x0800, 65000);
    // TCPV4, NEEDS_CSUM at 34+16, gso_size 1.
    tso[..10].copy_from_slice(&[0x01, 0x01, 0x42, 0x00, 0x01, 0x00, 0x22, 0x00, 0x10, 0x00]);
    assert_eq!(l.sw.handle_frame_action(l.t0, l.p1, &tso), Action::Drop(DropReason::BadGso));
    assert_eq!(l.sw.port_counters(l.p1).unwrap().drops[DropReason::BadGso as usize], 1);
    tso[4..6].copy_from_slice(&1448u16.to_le_bytes());
    assert_eq!(l.sw.handle_frame_action(l.t0, l.p1, &tso), flood(l.net, l.p1));
}

/// Two replicas of one switch, built alike (as the data plane changes all
/// of its workers' replicas alike), passing each other what they learn.
fn replicas(config: SwitchConfig) -> (Lab, Lab) {
    let (mut a, mut b) = (lab(config), lab(config));
    assert_eq!((a.net, a.p1, a.p2, a.p3), (b.net, b.p1, b.p2, b.p3), "replicas built alike agree on ids");
    b.t0 = a.t0;
    a.sw.set_replicated(true);
    b.sw.set_replicated(true);
    (a, b)
}

fn pass_on(from: &mut Switch, to: &mut Switch) -> usize {
    let mut news = Vec::new();
    from.take_news(&mut news);
    for learning in &news {
        to.apply_news(learning);
    }
    news.len()
}

#[test]
fn a_replica_forwards_to_what_another_learned() {
    let (mut a, mut b) = replicas(SwitchConfig::default());
    assert_eq!(a.sw.handle_frame_action(a.t0, a.p1, &frame(B, A)), flood(a.net, a.p1));
    assert_eq!(pass_on(&mut a.sw, &mut b.sw), 1);
    assert_eq!(b.sw.handle_frame_action(b.t0, b.p2, &frame(A, B)), Action::Deliver(b.p1), "b knows A from a");
    assert_eq!(b.sw.fdb(b.net, b.t0).len(), 2);
    // A refresh is news only once in a quarter of the aging time.
    a.sw.handle_frame_action(a.t0 + Duration::from_secs(1), a.p1, &frame(B, A));
    assert_eq!(pass_on(&mut a.sw, &mut b.sw), 0);
    let later = a.t0 + Duration::from_secs(100);
    a.sw.handle_frame_action(later, a.p1, &frame(B, A));
    assert_eq!(pass_on(&mut a.sw, &mut b.sw), 1, "still there: b hears before A would age out of its table");
    // Past b's own sighting (at t0) by the aging time, but a saw A later.
    let aged = a.t0 + Duration::from_secs(350);
    assert_eq!(b.sw.handle_frame_action(aged, b.p2, &frame(A, B)), Action::Deliver(b.p1));
    // Unreplicated switches keep nothing to pass on.
    let mut single = lab(SwitchConfig::default());
    single.sw.handle_frame_action(single.t0, single.p1, &frame(B, A));
    assert_eq!(pass_on(&mut single.sw, &mut b.sw), 0);
}

#[test]
fn replicas_agree_on_the_latest_sighting_whatever_order_news_crosses_in() {
    let (mut a, mut b) = replicas(SwitchConfig::default());
    // A seen on p1 by replica a, then (later) on p2 by replica b; the news
    // cross.
    a.sw.handle_frame_action(a.t0, a.p1, &frame(B, A));
    b.sw.handle_frame_action(b.t0 + Duration::from_millis(5), b.p2, &frame(B, A));
    let (mut news_a, mut news_b) = (Vec::new(), Vec::new());
    a.sw.take_news(&mut news_a);
    b.sw.take_news(&mut news_b);
    news_b.iter().for_each(|l| a.sw.apply_news(l));
    news_a.iter().for_each(|l| b.sw.apply_news(l));
    let t = a.t0 + Duration::from_millis(10);
    for sw in [&mut a.sw, &mut b.sw] {
        assert_eq!(sw.handle_frame_action(t, a.p3, &frame(A, C)), Action::Deliver(a.p2), "the later sighting wins");
        assert_eq!(sw.port_learned(a.p1), 0, "p1 no longer counts A");
        assert_eq!(sw.port_learned(a.p2), 1);
    }
    // News about a port that is gone is ignored.
    a.sw.handle_frame_action(t, a.p1, &frame(C, B));
    b.sw.remove_port(b.p1);
    assert_eq!(pass_on(&mut a.sw, &mut b.sw), 2, "C (new on p3) and B (new on p1)");
    assert!(b.sw.fdb(b.net, t).iter().all(|(_, at, ..)| *at != Location::Port(b.p1)));
}

/// Frames to a switchd VTEP leave their inner checksums partial; to any
/// other VTEP, and in a flood that reaches one, complete.
#[test]
fn inner_checksums_are_left_partial_only_for_switchd_peers() {
    let Overlay { mut l, vtep } = overlay();
    let other = l.sw.add_vtep("198.18.0.3:4789".parse().unwrap(), None).unwrap();
    assert_eq!(l.sw.vtep_kind(vtep), Some(PeerKind::Vxlan), "a new VTEP may be a kernel one");
    // C lives behind the first VTEP.
    l.sw.handle_datagram_action(l.t0, ip(VTEP_B), &datagram(0x08, 1, MacAddr::BROADCAST, C, 46));
    let mut plan = Plan::default();
    let checksum = |sw: &mut Switch, plan: &mut Plan, dst: MacAddr| {
        sw.handle_frame(l.t0, l.p1, &frame(dst, A), plan);
        plan.wire.expect("a VTEP target").l4_checksum
    };
    assert_eq!(checksum(&mut l.sw, &mut plan, C), L4Checksum::Complete);
    l.sw.set_vtep_kind(vtep, PeerKind::Switchd);
    assert_eq!(checksum(&mut l.sw, &mut plan, C), L4Checksum::Partial);
    assert!(plan.to_string().contains("partial checksums"), "{plan}");
    // A flood reaches both VTEPs: complete until both are switchd.
    assert_eq!(checksum(&mut l.sw, &mut plan, MacAddr::BROADCAST), L4Checksum::Complete);
    assert_eq!(plan.vteps().count(), 2);
    l.sw.set_vtep_kind(other, PeerKind::Switchd);
    assert_eq!(checksum(&mut l.sw, &mut plan, MacAddr::BROADCAST), L4Checksum::Partial);
    l.sw.set_vtep_kind(vtep, PeerKind::Vxlan);
    assert_eq!(checksum(&mut l.sw, &mut plan, C), L4Checksum::Complete);
    // A datagram's plan says whether it came sealed: plain here.
    l.sw.handle_datagram(l.t0, ip(VTEP_B), &mut datagram(0x08, 1, A, C, 46), &mut NoKeys, &mut plan);
    assert_eq!((plan.action, plan.sealed), (Action::Deliver(l.p1), false));
}

/// A TCP segment over the MTU in plain VXLAN (a kernel peer's GSO packet
/// that a veth underlay carried whole) is switched; anything else over the
/// MTU is not.
#[test]
fn only_tcp_segments_may_exceed_the_mtu_from_the_underlay() {
    let Overlay { mut l, .. } = overlay();
    let mut tcp = Vec::new();
    etherparse::PacketBuilder::ethernet2(C.0, A.0)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .tcp(1, 2, 3, 4)
        .ack(5)
        .write(&mut tcp, &[7; 3000])
        .unwrap();
    let mut large = vec![0x08, 0, 0, 0, 0, 0, 1, 0];
    large.extend_from_slice(&tcp);
    let switched = l.sw.handle_datagram_action(l.t0, ip(VTEP_B), &large);
    assert!(matches!(switched, Action::Flood { .. }), "{switched:?}");
    let udp = datagram(0x08, 1, A, C, 3000);
    assert_eq!(l.sw.handle_datagram_action(l.t0, ip(VTEP_B), &udp), Action::Drop(DropReason::Oversize));
}

/// A remote backend's MAC, behind a VTEP.
const D: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xd]);

/// [`routed_lab`] for a VIP on front: its gateway MAC, a second front port
/// where backend C has sent `from_c` (so it is learned there), and a VTEP
/// gossip puts backend D behind.
fn vip_lab(from_c: &[u8]) -> (RoutedLab, MacAddr, PortId, VtepId) {
    let gw = Gateway::mac_for(Vni::new(1).unwrap());
    let mut l = routed_lab(false);
    let p_c = l.sw.add_port(l.front).unwrap();
    let vtep = l.sw.add_vtep("198.18.0.2:4789".parse().unwrap(), None).unwrap();
    l.sw.set_gossip_macs(l.front, &[(D, vtep)], l.t0);
    l.sw.handle_frame_action(l.t0, p_c, from_c);
    (l, gw, p_c, vtep)
}

/// A VIP 10.1.0.200 on the front network of [`routed_lab`], UDP port 9,
/// with backends on a second front port (.3, MAC C, here) and behind a
/// VTEP (.4, MAC D).
#[test]
fn a_vip_is_balanced_to_its_backends_and_the_reply_comes_back_from_it() {
    let (mut l, gw, p_c, vtep) = vip_lab(&ip_frame(MacAddr::BROADCAST, C, "10.1.0.3", "10.1.0.255", 64, 9));
    let vip: Ipv4Addr = "10.1.0.200".parse().unwrap();
    let port = balance::ServicePort { protocol: Protocol::Udp, port: 9 };
    let backends = vec![
        balance::Backend::new("10.1.0.3".parse().unwrap(), C),
        balance::Backend::new("10.1.0.4".parse().unwrap(), D),
    ];
    l.sw.set_services(l.front, vec![balance::Service::new(vip.into(), vec![port], backends)]);
    l.sw.set_replicated(true);
    let mut seen = HashMap::new();
    for sport in 0..64u16 {
        let mut f = ip_frame(gw, A, "10.1.0.2", "10.1.0.200", 64, 9);
        let at = frame::HEADER_LEN + 14 + 20;
        f[at..at + 2].copy_from_slice(&(30000 + sport).to_be_bytes());
        let Action::Nat { network, next, rewrite } = l.sw.handle_frame_action(l.t0, l.p_front, &f) else {
            panic!("not balanced")
        };
        assert_eq!(network, l.front);
        assert_eq!(rewrite.src_mac, gw);
        let expected = match rewrite.dst_mac {
            C => (Next::Port(p_c), balance::NatAddr::Dst("10.1.0.3".parse().unwrap())),
            D => (Next::Vtep(vtep), balance::NatAddr::Dst("10.1.0.4".parse().unwrap())),
            other => panic!("to {other}"),
        };
        assert_eq!((next, rewrite.addr), expected);
        seen.insert(sport, rewrite.dst_mac);
    }
    assert_eq!(seen.values().collect::<hashbrown::HashSet<_>>().len(), 2, "both backends used");
    let mut news = Vec::new();
    l.sw.take_news(&mut news);
    assert_eq!(news.iter().filter(|n| matches!(n, News::Balanced(..))).count(), 64, "each new flow is news");

    // C's reply to a flow it was given comes back from the VIP; one to a flow it was not, as it is.
    let (mine, theirs) = {
        let c = seen.iter().find(|(_, m)| **m == C).map(|(s, _)| *s).unwrap();
        let d = seen.iter().find(|(_, m)| **m == D).map(|(s, _)| *s).unwrap();
        (c, d)
    };
    let reply = |sport: u16| {
        let mut f = ip_frame(A, C, "10.1.0.3", "10.1.0.2", 64, 30000 + sport);
        let at = frame::HEADER_LEN + 14 + 20;
        f[at..at + 2].copy_from_slice(&9u16.to_be_bytes());
        f
    };
    let back = l.sw.handle_frame_action(l.t0, p_c, &reply(mine));
    let from_vip = balance::Rewrite { src_mac: gw, dst_mac: A, addr: balance::NatAddr::Src(vip.into()) };
    assert_eq!(back, Action::Nat { network: l.front, next: Next::Port(l.p_front), rewrite: from_vip });
    assert_eq!(l.sw.handle_frame_action(l.t0, p_c, &reply(theirs)), Action::Deliver(l.p_front));

    // No backend, or a port the service lacks: refused (a reset or port unreachable).
    let refused = Action::Reject { port: l.p_front, network: l.front, reason: DropReason::NoBackend };
    assert_eq!(l.sw.handle_frame_action(l.t0, l.p_front, &ip_frame(gw, A, "10.1.0.2", "10.1.0.200", 64, 10)), refused);
    l.sw.set_services(l.front, vec![balance::Service::new(vip.into(), vec![port], vec![])]);
    assert_eq!(l.sw.handle_frame_action(l.t0, l.p_front, &ip_frame(gw, A, "10.1.0.2", "10.1.0.200", 64, 9)), refused);
    assert_eq!(l.sw.network_counters(l.front).unwrap().balance.refused, 2);
}

/// On a network with host access, TCP to the gateway address is the
/// host's, but the answers to the gateway stack's health checks (to its
/// ports) are the stack's.
#[test]
fn health_check_answers_go_to_the_stack_even_with_host_access() {
    let gw = Gateway::mac_for(Vni::new(1).unwrap());
    let mut l = routed_lab(false);
    let (stack, host) = (l.sw.add_port(l.front).unwrap(), l.sw.add_port(l.front).unwrap());
    l.sw.set_gateway_port(l.front, Some(stack));
    l.sw.set_host_port(l.front, Some(host));
    let tcp_to = |dport: u16| {
        let mut out = vec![0u8; frame::HEADER_LEN];
        etherparse::PacketBuilder::ethernet2(A.0, gw.0)
            .ipv4([10, 1, 0, 2], [10, 1, 0, 1], 64)
            .tcp(80, dport, 1, 1000)
            .write(&mut out, b"")
            .unwrap();
        out
    };
    assert_eq!(l.sw.handle_frame_action(l.t0, l.p_front, &tcp_to(61_005)), Action::Deliver(stack));
    assert_eq!(l.sw.handle_frame_action(l.t0, l.p_front, &tcp_to(40_000)), Action::Deliver(host));
}

/// A UDP frame `from`:`sport` to `to`:`dport` behind a virtio header.
fn udp_frame(dst: MacAddr, src: MacAddr, from: &str, sport: u16, to: &str, dport: u16) -> Vec<u8> {
    let mut f = ip_frame(dst, src, from, to, 64, dport);
    let at = frame::HEADER_LEN + 14 + 20;
    f[at..at + 2].copy_from_slice(&sport.to_be_bytes());
    f
}

/// The routing mesh, on both hosts. On the ingress host, a connection
/// from the host side (a published port's DNAT) to the VIP is balanced to
/// a backend behind a VTEP, and the backend's reply from that VTEP comes
/// back from the VIP to the host side. On the backend's host, the reply
/// goes back to the VTEP the flow came from, not to the host.
#[test]
fn the_routing_mesh_balances_the_host_sides_connections_and_replies_return_through_the_ingress_host() {
    let gw = Gateway::mac_for(Vni::new(1).unwrap());
    let vip: Ipv4Addr = "10.1.0.200".parse().unwrap();
    let udp9 = balance::ServicePort { protocol: Protocol::Udp, port: 9 };
    let client = "198.18.0.9";

    // The ingress host: the backend D (10.1.0.4) is behind a VTEP.
    let mut ingress = routed_lab(false);
    let host = ingress.sw.add_port(ingress.front).unwrap();
    ingress.sw.set_host_port(ingress.front, Some(host));
    let vtep = ingress.sw.add_vtep("198.18.0.2:4789".parse().unwrap(), None).unwrap();
    ingress.sw.set_gossip_macs(ingress.front, &[(D, vtep)], ingress.t0);
    ingress.sw.set_neighbors(ingress.front, [(IpAddr::V4(vip), gw)]);
    let backends = vec![balance::Backend::new("10.1.0.4".parse().unwrap(), D)];
    ingress.sw.set_services(ingress.front, vec![balance::Service::new(vip.into(), vec![udp9], backends)]);
    // The host asks for the VIP under the gateway's own MAC: answered all the same.
    let asked = ingress.sw.handle_frame_action(ingress.t0, host, &arp_request(gw, [10, 1, 0, 1], [10, 1, 0, 200]));
    assert!(matches!(asked, Action::Answer { port, owner, .. } if port == host && owner == gw), "{asked:?}");
    let there = ingress.sw.handle_frame_action(ingress.t0, host, &udp_frame(gw, gw, client, 40000, "10.1.0.200", 9));
    let to_backend =
        balance::Rewrite { src_mac: gw, dst_mac: D, addr: balance::NatAddr::Dst("10.1.0.4".parse().unwrap()) };
    assert_eq!(there, Action::Nat { network: ingress.front, next: Next::Vtep(vtep), rewrite: to_backend });
    let reply = udp_frame(gw, D, "10.1.0.4", 9, client, 40000);
    let back = ingress.sw.handle_datagram_action(ingress.t0, ip("198.18.0.2"), &vxlan(1, &reply[frame::HEADER_LEN..]));
    let from_vip = balance::Rewrite { src_mac: gw, dst_mac: gw, addr: balance::NatAddr::Src(vip.into()) };
    assert_eq!(back, Action::Nat { network: ingress.front, next: Next::Port(host), rewrite: from_vip });

    // The backend's host: A (10.1.0.2, local) serves the VIP.
    let mut served = routed_lab(false);
    let from = served.sw.add_vtep("198.18.0.1:4789".parse().unwrap(), None).unwrap();
    let backends = vec![balance::Backend::new("10.1.0.2".parse().unwrap(), A)];
    served.sw.set_services(served.front, vec![balance::Service::new(vip.into(), vec![udp9], backends)]);
    served.sw.set_replicated(true);
    served.sw.handle_frame_action(
        served.t0,
        served.p_front,
        &ip_frame(MacAddr::BROADCAST, A, "10.1.0.2", "10.1.0.255", 64, 9),
    );
    let balanced = udp_frame(A, gw, client, 40000, "10.1.0.2", 9);
    let arrived =
        served.sw.handle_datagram_action(served.t0, ip("198.18.0.1"), &vxlan(1, &balanced[frame::HEADER_LEN..]));
    assert_eq!(arrived, Action::Deliver(served.p_front));
    let mut news = Vec::new();
    served.sw.take_news(&mut news);
    assert!(news.iter().any(|n| matches!(n, News::Arrived(_, a) if a.vtep == from)), "the arrival is news: {news:?}");
    let reply = udp_frame(gw, A, "10.1.0.2", 9, client, 40000);
    assert_eq!(
        served.sw.handle_frame_action(served.t0, served.p_front, &reply),
        Action::Encap { vtep: from, network: served.front }
    );
    // A reply to a client that did not come through the mesh is routed as ever (nowhere, here).
    let other = udp_frame(gw, A, "10.1.0.2", 9, client, 40001);
    assert!(matches!(
        served.sw.handle_frame_action(served.t0, served.p_front, &other),
        Action::Reject { reason: DropReason::NoRoute, .. }
    ));
}

/// Routed into a network of a smaller MTU: a packet with Don't Fragment
/// set is refused with fragmentation needed; one without it is dropped
/// as oversize; one that fits is routed.
#[test]
fn routing_into_a_smaller_mtu_asks_the_sender_to_fragment() {
    let l = routed_lab_with_mtus(true, [1500, 1280]);
    let (mut sw, front, back, p_front) = (l.sw, l.front, l.back, l.p_front);
    let gw = Gateway::mac_for(Vni::new(1).unwrap());
    let udp = |payload: usize, df: bool| {
        let mut out = vec![0u8; frame::HEADER_LEN];
        let ip = etherparse::Ipv4Header::new(0, 64, etherparse::IpNumber::UDP, [10, 1, 0, 2], [10, 2, 0, 2]).unwrap();
        let mut ip = ip;
        ip.dont_fragment = df;
        etherparse::PacketBuilder::ethernet2(A.0, gw.0)
            .ip(etherparse::IpHeaders::Ipv4(ip, Default::default()))
            .udp(4000, 9)
            .write(&mut out, &vec![0; payload])
            .unwrap();
        out
    };
    let now = Instant::now();
    let too_big = Action::Reject { port: p_front, network: front, reason: DropReason::FragNeeded };
    assert_eq!(sw.handle_frame_action(now, p_front, &udp(1300, true)), too_big);
    assert_eq!(sw.handle_frame_action(now, p_front, &udp(1300, false)), Action::Drop(DropReason::Oversize));
    assert!(
        matches!(sw.handle_frame_action(now, p_front, &udp(1200, true)), Action::Route { network, .. } if network == back)
    );
    assert_eq!(
        sw.port_counters(p_front).unwrap().drops_by_name().find(|(n, _)| *n == "frag_needed").map(|d| d.1),
        Some(1)
    );
}

/// A VIP6 on the front network of [`routed_lab`], as
/// [`a_vip_is_balanced_to_its_backends_and_the_reply_comes_back_from_it`]
/// for IPv4: to the backends' IPv6 addresses, here and behind a VTEP, the
/// reply back from the VIP6, the rest refused.
#[test]
fn an_ipv6_vip_is_balanced_and_answers_from_itself() {
    let (mut l, gw, p_c, vtep) = vip_lab(&ip6_frame(MacAddr::BROADCAST, C, "fd00:1::3", "ff02::1", 1, 8));
    let vip6: Ipv6Addr = "fd00:1::c8".parse().unwrap();
    let port = balance::ServicePort { protocol: Protocol::Udp, port: 9 };
    let (c6, d6): (IpAddr, IpAddr) = ("fd00:1::3".parse().unwrap(), "fd00:1::4".parse().unwrap());
    let backends = vec![balance::Backend::new(c6, C), balance::Backend::new(d6, D)];
    l.sw.set_services(l.front, vec![balance::Service::new(vip6.into(), vec![port], backends)]);
    let udp6 = |dst_mac: MacAddr, src_mac: MacAddr, from: &str, to: &str, sport: u16, dport: u16| {
        let mut out = vec![0u8; frame::HEADER_LEN];
        let (from, to): (Ipv6Addr, Ipv6Addr) = (from.parse().unwrap(), to.parse().unwrap());
        etherparse::PacketBuilder::ethernet2(src_mac.0, dst_mac.0)
            .ipv6(from.octets(), to.octets(), 64)
            .udp(sport, dport)
            .write(&mut out, b"hello")
            .unwrap();
        out
    };
    let mut seen = HashMap::new();
    for sport in 30000..30064u16 {
        let f = udp6(gw, A, "fd00:1::2", "fd00:1::c8", sport, 9);
        let Action::Nat { network, next, rewrite } = l.sw.handle_frame_action(l.t0, l.p_front, &f) else {
            panic!("not balanced")
        };
        assert_eq!((network, rewrite.src_mac), (l.front, gw));
        let expected = match rewrite.dst_mac {
            C => (Next::Port(p_c), balance::NatAddr::Dst(c6)),
            D => (Next::Vtep(vtep), balance::NatAddr::Dst(d6)),
            other => panic!("to {other}"),
        };
        assert_eq!((next, rewrite.addr), expected);
        seen.insert(sport, rewrite.dst_mac);
    }
    assert_eq!(seen.values().collect::<hashbrown::HashSet<_>>().len(), 2, "both backends used");
    let mine = seen.iter().find(|(_, m)| **m == C).map(|(s, _)| *s).unwrap();
    let theirs = seen.iter().find(|(_, m)| **m == D).map(|(s, _)| *s).unwrap();
    let reply = |sport| udp6(A, C, "fd00:1::3", "fd00:1::2", 9, sport);
    let from_vip = balance::Rewrite { src_mac: gw, dst_mac: A, addr: balance::NatAddr::Src(vip6.into()) };
    let back = l.sw.handle_frame_action(l.t0, p_c, &reply(mine));
    assert_eq!(back, Action::Nat { network: l.front, next: Next::Port(l.p_front), rewrite: from_vip });
    assert_eq!(l.sw.handle_frame_action(l.t0, p_c, &reply(theirs)), Action::Deliver(l.p_front));
    let refused = Action::Reject { port: l.p_front, network: l.front, reason: DropReason::NoBackend };
    let other_port = udp6(gw, A, "fd00:1::2", "fd00:1::c8", 30000, 10);
    assert_eq!(l.sw.handle_frame_action(l.t0, l.p_front, &other_port), refused);
}
