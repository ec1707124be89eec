//! Several switchd hosts joined by an underlay (198.18.0.0/24 on a LAN of
//! veth pairs), and a real Linux kernel vxlan peer: cross-host switching,
//! head-end replication, isolation, moves, interop and bad underlay input.

use std::time::{Duration, Instant};

use switchd_e2e::{Netns, Switchd, Underlay, wait_until};

/// `[[peer]]` entries: (underlay IP, VNIs or all).
fn peers(list: &[(&str, Option<&[u32]>)]) -> String {
    list.iter()
        .map(|(ip, vnis)| match vnis {
            None => format!("\n[[peer]]\nunderlay_ip = \"{ip}\"\n"),
            Some(v) => format!("\n[[peer]]\nunderlay_ip = \"{ip}\"\nvnis = {v:?}\n"),
        })
        .collect()
}

fn network(name: &str, vni: u32, subnet: &str) -> String {
    format!("\n[[network]]\nname = \"{name}\"\nvni = {vni}\nsubnet = \"{subnet}\"\ninternal = true\n")
}

fn port(network: &str, ns: &Netns, ip: &str) -> String {
    format!("\n[[port]]\nnetwork = \"{network}\"\nnetns = \"{}\"\nip = \"{ip}\"\n", ns.name)
}

fn overlay_host(host: Netns, ip: &str, body: &str) -> Switchd {
    Switchd::start_in(host, &format!("underlay_ip = \"{ip}\""), body)
}

fn counter(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// `stats` of one VTEP, by address.
fn vtep_stats(sd: &Switchd, vtep: &str) -> serde_json::Value {
    let stats = sd.json(&["stats"]);
    stats["vteps"].as_array().unwrap().iter().find(|v| v["vtep"] == vtep).cloned().unwrap_or_else(|| panic!("{stats}"))
}

#[test]
fn two_hosts_ping_and_pass_iperf3() {
    let mut ul = Underlay::new();
    let ((ha, ipa), (hb, ipb)) = (ul.host("ha"), ul.host("hb"));
    let (ca, cb) = (Netns::new("ca"), Netns::new("cb"));
    let net = network("front", 100, "10.10.0.0/24");
    let a = overlay_host(ha, &ipa, &format!("{}{net}{}", peers(&[(&ipb, None)]), port("front", &ca, "10.10.0.11")));
    let b = overlay_host(hb, &ipb, &format!("{}{net}{}", peers(&[(&ipa, None)]), port("front", &cb, "10.10.0.12")));

    assert!(ca.ping("10.10.0.12", 3), "cross-host ping\n{}\n{}", a.log(), b.log());
    let gbits = ca.iperf(&cb, "10.10.0.12", 3);
    assert!(gbits > 0.0);
    eprintln!("iperf3 across two switchd hosts: {gbits:.2} Gbit/s");
    let back = cb.iperf(&ca, "10.10.0.11", 2);
    assert!(back > 0.0);

    // cb's MAC is learned on host a behind host b's VTEP.
    let fdb = a.json(&["fdb", "front"]);
    let remote = fdb.as_array().unwrap().iter().find(|e| e["mac"] == cb.mac("eth0").as_str()).cloned();
    let remote = remote.unwrap_or_else(|| panic!("cb's MAC not learned on a: {fdb}"));
    assert_eq!(remote["vtep"], ipb.as_str());
    assert_eq!(remote["where"], ipb.as_str());
    // Segments crossed the tunnel at the network MTU, and were joined again
    // (GRO) on the way up: fewer, larger writes into cb's TAP.
    let rx = b.port_stats(&cb.name);
    let (frames, bytes) = (counter(&rx["tx_frames"]), counter(&rx["tx_bytes"]));
    assert!(bytes / frames > 3000, "average write into cb's TAP {} bytes: no receive coalescing", bytes / frames);
    let peers = a.json(&["peers"]);
    assert_eq!(peers[0]["underlay_ip"], ipb.as_str());
    assert_eq!(peers[0]["state"], "static");
    assert_eq!(peers[0]["networks"], serde_json::json!(["front"]));
}

/// Three hosts; `front` on all three, `back` on a and b only (c is a peer
/// for `front` alone). Broadcasts reach every host of their network and no other.
#[test]
fn broadcast_reaches_every_host_of_the_network_and_no_other() {
    let mut ul = Underlay::new();
    let ((ha, ipa), (hb, ipb), (hc, ipc)) = (ul.host("ha"), ul.host("hb"), ul.host("hc"));
    let (a1, b1, c1, a2, b2) =
        (Netns::new("a1"), Netns::new("b1"), Netns::new("c1"), Netns::new("a2"), Netns::new("b2"));
    let nets = format!("{}{}", network("front", 10, "10.10.0.0/24"), network("back", 20, "10.20.0.0/24"));
    let front_only: &[u32] = &[10];
    let a = overlay_host(
        ha,
        &ipa,
        &format!(
            "{}{nets}{}{}",
            peers(&[(&ipb, None), (&ipc, Some(front_only))]),
            port("front", &a1, "10.10.0.11"),
            port("back", &a2, "10.20.0.11")
        ),
    );
    let b = overlay_host(
        hb,
        &ipb,
        &format!(
            "{}{nets}{}{}",
            peers(&[(&ipa, None), (&ipc, Some(front_only))]),
            port("front", &b1, "10.10.0.12"),
            port("back", &b2, "10.20.0.12")
        ),
    );
    let c = overlay_host(
        hc,
        &ipc,
        &format!(
            "{}{}{}",
            peers(&[(&ipa, None), (&ipb, None)]),
            network("front", 10, "10.10.0.0/24"),
            port("front", &c1, "10.10.0.13")
        ),
    );
    assert!(a1.ping("10.10.0.13", 1) && a2.ping("10.20.0.12", 1), "the networks work");

    let tx = |sd: &Switchd, ns: &Netns| counter(&sd.port_stats(&ns.name)["tx_frames"]);
    let from_a_at_c = || counter(&vtep_stats(&c, &ipa)["rx_frames"]);
    // From the container's own MAC: another would be refused (spoofed_mac).
    let broadcast = |ns: &Netns| {
        let mac = ns.mac("eth0").replace(':', "");
        format!("for i in range(20):\n    s.send(bytes.fromhex('ffffffffffff' + '{mac}' + '88b5') + bytes(46))")
    };

    // 20 broadcasts on `back` from a2: b2 gets them; c never sees a datagram.
    let (b2_before, c_before) = (tx(&b, &b2), from_a_at_c());
    a2.inject(&broadcast(&a2));
    assert!(wait_until(Duration::from_secs(3), || tx(&b, &b2) >= b2_before + 20), "b2 missed broadcasts on back");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(from_a_at_c(), c_before, "host c, which does not carry back, received its broadcast");
    assert!(c.json(&["stats"])["underlay_drops"].as_object().unwrap().is_empty());

    // 20 broadcasts on `front` from a1: both other hosts' containers get them.
    let (b1_before, c1_before) = (tx(&b, &b1), tx(&c, &c1));
    a1.inject(&broadcast(&a1));
    assert!(wait_until(Duration::from_secs(3), || tx(&b, &b1) >= b1_before + 20 && tx(&c, &c1) >= c1_before + 20));
    // And head-end replication sent one copy per host, not more.
    assert_eq!(counter(&vtep_stats(&a, &ipc)["drops"]["tx_error"]), 0);
}

/// Two networks with the same subnet across two hosts: nothing crosses.
#[test]
fn networks_stay_isolated_across_hosts() {
    let mut ul = Underlay::new();
    let ((ha, ipa), (hb, ipb)) = (ul.host("ha"), ul.host("hb"));
    let (a1, b1, b2) = (Netns::new("a1"), Netns::new("b1"), Netns::new("b2"));
    let nets = format!("{}{}", network("red", 30, "10.30.0.0/24"), network("blue", 31, "10.30.0.0/24"));
    let _a = overlay_host(ha, &ipa, &format!("{}{nets}{}", peers(&[(&ipb, None)]), port("red", &a1, "10.30.0.11")));
    let b = overlay_host(
        hb,
        &ipb,
        &format!(
            "{}{nets}{}{}",
            peers(&[(&ipa, None)]),
            port("red", &b1, "10.30.0.12"),
            port("blue", &b2, "10.30.0.13")
        ),
    );
    assert!(a1.ping("10.30.0.12", 2), "red works across hosts");
    let before = counter(&b.port_stats(&b2.name)["tx_frames"]);
    assert!(!a1.ping("10.30.0.13", 2), "red reached blue");
    assert_eq!(counter(&b.port_stats(&b2.name)["tx_frames"]), before, "red's ARP broadcasts reached blue's port");
}

/// A container leaves host a for host b (same MAC and IP) and announces
/// itself with a gratuitous ARP; a container on host c reaches it again at once.
#[test]
fn a_container_that_moves_is_reachable_after_a_gratuitous_arp() {
    let mut ul = Underlay::new();
    let ((ha, ipa), (hb, ipb), (hc, ipc)) = (ul.host("ha"), ul.host("hb"), ul.host("hc"));
    let (mover, watcher) = (Netns::new("mv"), Netns::new("w"));
    let net = network("front", 40, "10.40.0.0/24");
    let a = overlay_host(ha, &ipa, &format!("{}{net}", peers(&[(&ipb, None), (&ipc, None)])));
    let b = overlay_host(hb, &ipb, &format!("{}{net}", peers(&[(&ipa, None), (&ipc, None)])));
    let _c = overlay_host(
        hc,
        &ipc,
        &format!("{}{net}{}", peers(&[(&ipa, None), (&ipb, None)]), port("front", &watcher, "10.40.0.9")),
    );
    let mac = "02:00:00:00:40:50";
    a.connect("front", &mover, &["--ip", "10.40.0.50", "--mac", mac]);
    assert!(watcher.ping("10.40.0.50", 2), "reachable on host a");

    a.ctl(&["network", "disconnect", "front", &mover.name]);
    b.connect("front", &mover, &["--ip", "10.40.0.50", "--mac", mac]);
    let announced = Instant::now();
    // Gratuitous ARP: a broadcast ARP request for its own address.
    mover.inject(
        "mac = bytes.fromhex('020000004050'); ip = bytes([10, 40, 0, 50])\n\
         arp = bytes.fromhex('0001080006040001') + mac + ip + bytes(6) + ip\n\
         s.send(bytes.fromhex('ffffffffffff') + mac + bytes.fromhex('0806') + arp + bytes(18))",
    );
    let back = wait_until(Duration::from_secs(5), || {
        watcher.exec(&["ping", "-c", "1", "-W", "0.3", "10.40.0.50"]).status.success()
    });
    let took = announced.elapsed();
    assert!(back, "the moved container is unreachable");
    assert!(took < Duration::from_secs(2), "reachable again only {took:?} after the gratuitous ARP");
    eprintln!("moved container reachable {took:?} after its gratuitous ARP");
}

/// A host with the Linux kernel's vxlan device and a bridge, and a switchd
/// host: ARP, ping and iperf3 both ways.
#[test]
fn kernel_vxlan_interop_both_ways() {
    let mut ul = Underlay::new();
    let ((hk, ipk), (hs, ips)) = (ul.host("hk"), ul.host("hs"));
    let (kc, sc) = (Netns::new("kc"), Netns::new("sc"));
    // The kernel host, as a user would build it with iproute2. Its underlay
    // computes checksums in software, as a real NIC would in hardware: over
    // veth, offloaded checksums are never filled in at all, and a peer
    // reading the wire (as switchd does) would see partial ones.
    for cmd in [
        "ethtool -K u0 tx off".to_owned(),
        format!("ip link add vx0 type vxlan id 100 dstport 4789 local {ipk} dev u0"),
        format!("bridge fdb append 00:00:00:00:00:00 dev vx0 dst {ips}"),
        "ip link add br0 type bridge".into(),
        "ip link set vx0 mtu 1450 master br0 up".into(),
        format!("ip link add vc0 type veth peer name eth0 netns {}", kc.name),
        "ip link set vc0 mtu 1450 master br0 up".into(),
        "ip link set br0 up".into(),
    ] {
        hk.ok(&["sh", "-c", &cmd]);
    }
    kc.ok(&["ip", "link", "set", "eth0", "mtu", "1450"]);
    kc.ok(&["ip", "addr", "add", "10.50.0.100/24", "dev", "eth0"]);
    kc.ok(&["ip", "link", "set", "eth0", "up"]);
    let s = overlay_host(
        hs,
        &ips,
        &format!(
            "{}{}{}",
            peers(&[(&ipk, None)]),
            network("front", 100, "10.50.0.0/24"),
            port("front", &sc, "10.50.0.2")
        ),
    );

    assert!(sc.ping("10.50.0.100", 3), "switchd -> kernel vxlan\n{}", s.log());
    assert!(kc.ping("10.50.0.2", 3), "kernel vxlan -> switchd");
    let neigh = kc.ok(&["ip", "neigh", "show", "10.50.0.2"]);
    assert!(neigh.contains(&sc.mac("eth0")), "ARP resolved on the kernel side: {neigh}");
    let to_kernel = sc.iperf(&kc, "10.50.0.100", 3);
    let from_kernel = kc.iperf(&sc, "10.50.0.2", 3);
    assert!(to_kernel > 0.0 && from_kernel > 0.0);
    eprintln!("iperf3 switchd -> kernel vxlan {to_kernel:.2} Gbit/s, kernel -> switchd {from_kernel:.2} Gbit/s");
    let fdb = s.json(&["fdb", "front"]);
    assert!(
        fdb.as_array().unwrap().iter().any(|e| e["mac"] == kc.mac("eth0").as_str() && e["vtep"] == ipk.as_str()),
        "{fdb}"
    );
}

/// Hand-made datagrams from a peer's address and from a stranger: each
/// counted under its reason, and switching goes on.
#[test]
fn bad_underlay_input_is_counted_and_dropped() {
    let mut ul = Underlay::new();
    let ((ha, ipa), (hb, ipb), (rogue, _)) = (ul.host("ha"), ul.host("hb"), ul.host("rogue"));
    let (ca, cb) = (Netns::new("ca"), Netns::new("cb"));
    let net = network("front", 60, "10.60.0.0/24");
    let a = overlay_host(ha, &ipa, &format!("{}{net}{}", peers(&[(&ipb, None)]), port("front", &ca, "10.60.0.11")));
    let b = overlay_host(hb, &ipb, &format!("{}{net}{}", peers(&[(&ipa, None)]), port("front", &cb, "10.60.0.12")));
    assert!(ca.ping("10.60.0.12", 1));

    // From host a's own address (another port), to host b's VXLAN port.
    let vxlan = |vni: u32| format!("bytes.fromhex('08000000') + ({vni}).to_bytes(3, 'big') + bytes(1)");
    let frame = "bytes.fromhex('ffffffffffff' + '020000000001' + '0800')";
    a.host.python(&format!(
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('{ipa}', 0))\n\
         to = ('{ipb}', 4789)\n\
         s.sendto(b'short', to)\n\
         s.sendto(bytes.fromhex('00000000') + (60).to_bytes(3, 'big') + bytes(1) + {frame} + bytes(46), to)\n\
         s.sendto(bytes.fromhex('88000000') + (60).to_bytes(3, 'big') + bytes(1) + {frame} + bytes(46), to)\n\
         s.sendto({unknown} + {frame} + bytes(46), to)\n\
         s.sendto({known} + bytes(10), to)\n\
         s.sendto({known} + {frame} + bytes(3000), to)\n\
         s.sendto({known} + bytes.fromhex('ffffffffffff' + '010000000001' + '0800') + bytes(46), to)\n",
        unknown = vxlan(61),
        known = vxlan(60),
    ));
    // From an address that is no peer.
    rogue.python(&format!(
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nfor i in range(3):\n    s.sendto({} + {frame} + bytes(46), ('{ipb}', 4789))\n",
        vxlan(60)
    ));

    let expected = [("truncated", 2), ("bad_vxlan_flags", 2), ("unknown_vni", 1), ("oversize", 1), ("bad_src_mac", 1)];
    let arrived = wait_until(Duration::from_secs(3), || {
        let drops = vtep_stats(&b, &ipa)["drops"].clone();
        expected.iter().all(|(k, n)| counter(&drops[*k]) == *n)
    });
    assert!(arrived, "drops from a: {}", vtep_stats(&b, &ipa)["drops"]);
    assert!(
        wait_until(Duration::from_secs(3), || counter(&b.json(&["stats"])["underlay_drops"]["unknown_source"]) == 3)
    );
    assert!(ca.ping("10.60.0.12", 2), "switching broke after bad underlay input:\n{}", b.log());
}
