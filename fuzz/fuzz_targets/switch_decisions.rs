//! Arbitrary bytes as frames from local ports and as VXLAN datagrams from
//! the underlay, through the frame views, decapsulation and the switch
//! decision. Nothing may panic, no frame may leave its network (local ports,
//! VNI), go back out of its ingress port, or go from the underlay back into it.
//!
//! Networks 1 and 3 have gateways and route to each other (2 has neither):
//! a frame is routed only between them, served or refused only on its own
//! port and network.
//!
//! Input: records `[kind: u8][len: u16 LE][len bytes]`; `kind` picks the
//! source (a peer for VNI 1, a peer for all, a stranger, or a local port).

#![no_main]

use std::net::IpAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use switchd::switch::{Action, EndpointGuard, Gateway, Location, Next, NoKeys, Plan, PortGuard, Switch, SwitchConfig, Target};
use switchd_config::{Mtu, Vni};

fuzz_target!(|data: &[u8]| {
    let mut sw = Switch::new(SwitchConfig::new(Duration::from_secs(5), 8));
    let n1 = sw.add_network(Vni::new(1).unwrap(), Mtu::new(1450).unwrap(), false).unwrap();
    let n2 = sw.add_network(Vni::new(2).unwrap(), Mtu::new(9000).unwrap(), false).unwrap();
    let n3 = sw.add_network(Vni::new(3).unwrap(), Mtu::new(1450).unwrap(), false).unwrap();
    for (net, vni) in [(n1, 1u8), (n3, 3)] {
        let gateway = Gateway {
            ip: [10, vni, 0, 1].into(),
            subnet: format!("10.{vni}.0.0/24").parse().unwrap(),
            mac: Gateway::mac_for(Vni::new(u32::from(vni)).unwrap()),
            dhcp: true,
        };
        sw.set_gateway(net, Some(gateway));
    }
    sw.set_routes(n1, vec![n3]);
    sw.set_routes(n3, vec![n1]);
    let ports = [sw.add_port(n1).unwrap(), sw.add_port(n1).unwrap(), sw.add_port(n2).unwrap(), sw.add_port(n3).unwrap()];
    let guard = EndpointGuard::new(switchd_config::MacAddr([2, 0, 0, 0, 1, 2]), true, Some([10, 1, 0, 2].into()));
    sw.set_port_guard(ports[0], PortGuard::Endpoint(guard));
    // A LAN behind port 1: any MAC but an endpoint's (port 0's, or one gossip names).
    sw.set_port_guard(ports[1], PortGuard::Lan);
    sw.set_neighbors(n3, [("10.3.0.2".parse().unwrap(), switchd_config::MacAddr([2, 0, 0, 0, 3, 2]))]);
    let network_of_port = |i: usize| [n1, n1, n2, n3][i];
    let only_1 = sw.add_vtep("198.18.0.2:4789".parse().unwrap(), Some(vec![Vni::new(1).unwrap()])).unwrap();
    let all = sw.add_vtep("198.18.0.3:4789".parse().unwrap(), None).unwrap();
    let sources: [IpAddr; 3] = ["198.18.0.2".parse().unwrap(), "198.18.0.3".parse().unwrap(), "198.18.0.9".parse().unwrap()];
    // Addresses whose owners are known: requests for them are answered.
    let owner = switchd_config::MacAddr([2, 0, 0, 0, 0, 0x42]);
    sw.set_neighbors(n1, [("10.0.0.2".parse().unwrap(), owner), ("fd00::2".parse().unwrap(), owner)]);
    let mut now = Instant::now();
    // A remote endpoint, known by gossip behind the VTEP of every network.
    let remote = switchd_config::MacAddr([2, 0, 0, 0, 9, 9]);
    sw.set_gossip_macs(n1, &[(remote, all)], now);
    let endpoint = switchd_config::MacAddr([2, 0, 0, 0, 1, 2]);
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
                    assert_eq!(Some(wire.vni), [(n1, 1), (n2, 2), (n3, 3)].iter().find(|(n, _)| *n == network).map(|(_, v)| Vni::new(*v).unwrap()));
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
                Action::Answer { port, owner, .. } => {
                    assert_eq!(port, ports[i], "answered on another port");
                    assert!(owner.is_unicast());
                    assert!(plan.targets.is_empty());
                }
                Action::Local { port, network } | Action::Reject { port, network, .. } => {
                    assert_eq!((port, network), (ports[i], from), "served on another port");
                    assert_ne!(network, n2, "a network without a gateway");
                    assert!(plan.targets.is_empty());
                }
                Action::Route { network, next, .. } => {
                    assert!((from, network) == (n1, n3) || (from, network) == (n3, n1), "routed where no route goes");
                    if let Next::Port(p) = next {
                        assert_eq!(plan.targets, [Target::Port(p)]);
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
});
