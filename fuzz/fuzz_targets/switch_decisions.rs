//! Arbitrary bytes as frames from local ports and as VXLAN datagrams from
//! the underlay, through the frame views, decapsulation and the switch
//! decision. Nothing may panic, no frame may leave its network (local ports,
//! VNI), go back out of its ingress port, or go from the underlay back into it.
//!
//! Networks 1 and 3 have gateways and route to each other (2 has neither):
//! a frame is routed only between them, with TTL to spare, from the
//! gateway's MAC to the MAC that holds its destination; served or refused
//! only on its own port and network. ARP and neighbour solicitations for
//! an address whose owner is known are answered on the asking port with
//! that owner's MAC. Network 1 has a service VIP (10.1.0.200, TCP 80)
//! over port 0's endpoint and a remote one: a frame to it is balanced
//! within network 1 to one of them; a reply turned back is delivered to a
//! port. A policy isolates 10.1.0.2 (port 0) but for 10.3.0.0/24 on port 80.
//!
//! Input: records `[kind: u8][len: u16 LE][len bytes]`; `kind` picks the
//! source (a peer for VNI 1, a peer for all, a stranger, or a local port).
//! Seeds (routed frames, ARP and ND the switch answers, DHCP, VXLAN) in
//! `seeds/switch_decisions`, written by `seeds/make_switch_seeds.py`.

#![no_main]

use std::net::IpAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use switchd::switch::balance::{Backend, NatAddr, Service, ServicePort};
use switchd::switch::policy::{Rule, Sources};
use switchd::switch::{
    Action, EndpointGuard, Gateway, Location, Next, NoKeys, Plan, PortGuard, Switch, SwitchConfig, Target, l3, neighbor,
};
use switchd_config::{Mtu, Vni};
use switchd_wire::vnet;

fuzz_target!(|data: &[u8]| fuzz_one(data));

// A function rather than the macro's closure, so that coverage reports
// (`cargo fuzz coverage`) show its lines.
fn fuzz_one(data: &[u8]) {
    let mut sw = Switch::new(SwitchConfig::new(Duration::from_secs(5), 8));
    let n1 = sw.add_network(Vni::new(1).unwrap(), Mtu::new(1450).unwrap(), false).unwrap();
    let n2 = sw.add_network(Vni::new(2).unwrap(), Mtu::new(9000).unwrap(), false).unwrap();
    let n3 = sw.add_network(Vni::new(3).unwrap(), Mtu::new(1450).unwrap(), false).unwrap();
    for (net, vni) in [(n1, 1u8), (n3, 3)] {
        let gateway = Gateway {
            v4: Some(([10, vni, 0, 1].into(), format!("10.{vni}.0.0/24").parse().unwrap())),
            mac: Gateway::mac_for(Vni::new(u32::from(vni)).unwrap()),
            dhcp: true,
            v6: Some((format!("fd00:{vni}::1").parse().unwrap(), format!("fd00:{vni}::/64").parse().unwrap())),
        };
        sw.set_gateway(net, Some(gateway));
    }
    let gateway_mac = |network| Gateway::mac_for(Vni::new(if network == n1 { 1 } else { 3 }).unwrap());
    sw.set_routes(n1, vec![n3]);
    sw.set_routes(n3, vec![n1]);
    let routes = |from, to| (from, to) == (n1, n3) || (from, to) == (n3, n1);
    let ports = [
        sw.add_port(n1).unwrap(),
        sw.add_port(n1).unwrap(),
        sw.add_port(n2).unwrap(),
        sw.add_port(n3).unwrap(),
        sw.add_port(n1).unwrap(),
    ];
    // Port 4: n1's host side (host access, and the routing mesh's way in).
    sw.set_host_port(n1, Some(ports[4]));
    let mut guard = EndpointGuard::new(switchd_config::MacAddr([2, 0, 0, 0, 1, 2]), true, Some([10, 1, 0, 2].into()));
    if let Some(v6) = guard.ipv6.as_mut() {
        v6.push("fd00:1::2".parse().unwrap());
    }
    sw.set_port_guard(ports[0], PortGuard::Endpoint(guard));
    // A LAN behind port 1: any MAC but an endpoint's (port 0's, or one gossip names).
    sw.set_port_guard(ports[1], PortGuard::Lan);
    let network_of_port = |i: usize| [n1, n1, n2, n3, n1][i];
    // web's VIP and VIP6, over the same two backends' addresses of each family.
    let backends: [(IpAddr, [u8; 6]); 4] = [
        ([10, 1, 0, 2].into(), [2, 0, 0, 0, 1, 2]),
        ([10, 1, 0, 9].into(), [2, 0, 0, 0, 9, 9]),
        ("fd00:1::2".parse().unwrap(), [2, 0, 0, 0, 1, 2]),
        ("fd00:1::9".parse().unwrap(), [2, 0, 0, 0, 9, 9]),
    ];
    let vips: [IpAddr; 2] = [[10, 1, 0, 200].into(), "fd00:1::c8".parse().unwrap()];
    let web = |vip| {
        Service::new(
            vip,
            vec![ServicePort { protocol: switchd_wire::ip::Protocol::Tcp, port: 80 }],
            backends.iter().map(|(ip, mac)| Backend::new(*ip, switchd_config::MacAddr(*mac))).collect(),
        )
    };
    sw.set_services(n1, vips.map(web).into());
    let from = Sources { nets: vec!["10.3.0.0/24".parse().unwrap()], ..Sources::default() };
    let rule = Rule { from, ports: vec![ServicePort { protocol: switchd_wire::ip::Protocol::Tcp, port: 80 }] };
    sw.set_policy(vec![rule], [([10, 1, 0, 2].into(), vec![0])].into());
    let only_1 = sw.add_vtep("198.18.0.2:4789".parse().unwrap(), Some(vec![Vni::new(1).unwrap()])).unwrap();
    let all = sw.add_vtep("198.18.0.3:4789".parse().unwrap(), None).unwrap();
    let sources: [IpAddr; 3] =
        ["198.18.0.2".parse().unwrap(), "198.18.0.3".parse().unwrap(), "198.18.0.9".parse().unwrap()];
    // Addresses whose owners are known: requests for them are answered,
    // and routed frames for them go to those MACs.
    let owner = switchd_config::MacAddr([2, 0, 0, 0, 0, 0x42]);
    let endpoint = switchd_config::MacAddr([2, 0, 0, 0, 1, 2]);
    let neighbors = [
        (n1, "10.0.0.2", owner),
        (n1, "fd00::2", owner),
        (n1, "10.1.0.2", endpoint),
        (n3, "10.3.0.2", switchd_config::MacAddr([2, 0, 0, 0, 3, 2])),
    ]
    .map(|(net, ip, mac)| (net, ip.parse::<IpAddr>().unwrap(), mac));
    for net in [n1, n3] {
        sw.set_neighbors(net, neighbors.iter().filter(|n| n.0 == net).map(|&(_, ip, mac)| (ip, mac)));
    }
    let owner_of = |net, ip| neighbors.iter().find(|n| (n.0, n.1) == (net, ip)).map(|n| n.2);
    let mut now = Instant::now();
    // A remote endpoint, known by gossip behind the VTEP of every network.
    let remote = switchd_config::MacAddr([2, 0, 0, 0, 9, 9]);
    sw.set_gossip_macs(n1, &[(remote, all)], now);
    let mut plan = Plan::default();
    // Every target of a plan is in the network the frame reached (its own,
    // or the one it was routed into), never the ingress port, and a VTEP
    // only with the network's wire settings and if it carries the network.
    let check_targets = |plan: &Plan, from, ingress| {
        let network = match plan.action {
            Action::Route { network, .. } => network,
            _ => from,
        };
        for target in &plan.targets {
            match *target {
                Target::Port(p) => {
                    assert_ne!(p, ingress, "back out of the ingress port");
                    let o = ports.iter().position(|q| *q == p).expect("a known port");
                    assert_eq!(network_of_port(o), network, "a frame left its network");
                }
                Target::Vtep(v) => {
                    assert!(v == all || (v == only_1 && network == n1), "a VTEP that does not carry the network");
                    let wire = plan.wire.expect("wire settings with a VTEP target");
                    assert_eq!(
                        Some(wire.vni),
                        [(n1, 1), (n2, 2), (n3, 3)]
                            .iter()
                            .find(|(n, _)| *n == network)
                            .map(|(_, v)| Vni::new(*v).unwrap())
                    );
                }
            }
        }
    };
    let mut rest = data;
    while rest.len() >= 3 {
        let kind = rest[0] as usize;
        let len = (u16::from_le_bytes([rest[1], rest[2]]) as usize).min(rest.len() - 3);
        let bytes = &rest[3..3 + len];
        rest = &rest[3 + len..];
        now += Duration::from_millis(u64::from(rest.first().copied().unwrap_or(0)) * 100);
        if kind % 4 == 3 {
            // From a local port.
            let i = (kind / 4) % ports.len();
            let from = network_of_port(i);
            sw.handle_frame(now, ports[i], bytes, &mut plan);
            check_targets(&plan, from, ports[i]);
            match plan.action {
                Action::Deliver(_) | Action::Encap { .. } => assert_eq!(plan.targets.len(), 1),
                Action::Flood { network, .. } => assert_eq!(network, from),
                Action::Answer { port, owner, request } => {
                    assert_eq!(port, ports[i], "answered on another port");
                    assert!(owner.is_unicast());
                    assert_eq!(Some(owner), owner_of(from, request.target()), "answered for another owner");
                    assert_eq!(neighbor::parse(&bytes[vnet::HEADER_LEN..]), Some(request));
                    assert!(plan.targets.is_empty());
                }
                Action::Local { port, network } => {
                    // By its own gateway, or by the gateway of a network it routes to.
                    assert_eq!(port, ports[i], "served on another port");
                    assert!(network == from || routes(from, network), "served by a gateway it does not reach");
                    assert_ne!(network, n2, "a network without a gateway");
                    assert!(plan.targets.is_empty());
                }
                Action::Reject { port, network, .. } => {
                    assert_eq!((port, network), (ports[i], from), "refused on another port");
                    assert_ne!(network, n2, "a network without a gateway");
                    assert!(plan.targets.is_empty());
                }
                Action::Route { network, next, src, dst } => {
                    assert!(routes(from, network), "routed where no route goes");
                    let ip = l3::ipv4(&bytes[vnet::HEADER_LEN..]).expect("routed, so IPv4");
                    assert!(ip.ttl > 1, "routed with TTL {}", ip.ttl);
                    assert_eq!(src, gateway_mac(network), "routed from another gateway's MAC");
                    assert_eq!(
                        Some(dst),
                        owner_of(network, IpAddr::V4(ip.dst)),
                        "routed to a MAC that does not hold {}",
                        ip.dst
                    );
                    if let Next::Port(p) = next {
                        assert_eq!(plan.targets, [Target::Port(p)]);
                    }
                }
                Action::Nat { network, rewrite, .. } => {
                    assert_eq!(network, from, "balanced out of its network");
                    match rewrite.addr {
                        NatAddr::Dst(ip) => {
                            assert!(backends.iter().any(|(b, mac)| ip == *b && rewrite.dst_mac.0 == *mac));
                            assert_eq!(rewrite.src_mac, gateway_mac(network));
                        }
                        NatAddr::Src(vip) => {
                            assert!(vips.contains(&vip), "turned back from {vip}");
                            assert!(plan.vteps().next().is_none(), "a reply turned back goes to a local port");
                        }
                    }
                }
                Action::Drop(_) => assert!(plan.targets.is_empty()),
            }
            continue;
        }
        let src = sources[kind % 4 % 3];
        let mut datagram = bytes.to_vec();
        sw.handle_datagram(now, src, &mut datagram, &mut NoKeys, &mut plan);
        match plan.action {
            Action::Deliver(out) => assert!(ports.contains(&out)),
            Action::Encap { .. } => panic!("a datagram was sent back into the underlay"),
            Action::Answer { .. } => panic!("a request from the underlay was answered"),
            Action::Local { .. } | Action::Route { .. } | Action::Reject { .. } => {
                panic!("the underlay was served or routed: only the ingress host routes")
            }
            Action::Flood { network, .. } => {
                let i = plan.ports().next().map(|p| ports.iter().position(|q| *q == p).expect("a known port"));
                assert!(i.is_none_or(|i| network_of_port(i) == network));
            }
            // Only replies are turned back from the underlay; balancing is the ingress host's.
            Action::Nat { rewrite, .. } => assert!(matches!(rewrite.addr, NatAddr::Src(_))),
            Action::Drop(_) => assert!(plan.targets.is_empty()),
        }
        assert!(plan.vteps().next().is_none(), "sent back into the underlay");
        for p in plan.ports() {
            assert!(ports.contains(&p));
        }
        if !plan.targets.is_empty() {
            assert!(plan.inner.end <= datagram.len() && plan.inner.start >= 8, "inner frame {:?}", plan.inner);
        }
        if kind & 0x80 != 0 {
            sw.handle_timeout(now);
        }
        // No port and no VTEP ever takes port 0's MAC, and the LAN never
        // takes the remote endpoint's.
        for (mac, at, ..) in sw.fdb(n1, now) {
            if mac == endpoint {
                assert_eq!(at, Location::Port(ports[0]), "an endpoint's MAC was taken");
            }
            if mac == remote {
                assert_ne!(at, Location::Port(ports[1]), "the LAN took a remote endpoint's MAC");
            }
        }
    }
}
