//! Several switchd hosts joined by an underlay (198.18.0.0/24 on a LAN of
//! veth pairs), and a real Linux kernel vxlan peer: cross-host switching,
//! head-end replication, isolation, moves, interop and bad underlay input.

use std::time::{Duration, Instant};

use switchd_e2e::{
    BROADCAST, Netns, Switchd, Underlay, arp, count, ether, hex, mac_bytes, port_entry as port, py, sparse, wait_until,
};

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

fn overlay_host(host: Netns, ip: &str, body: &str) -> Switchd {
    Switchd::start_in(host, &format!("underlay_ip = \"{ip}\""), body)
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
    let (frames, bytes) = (count(&rx, "tx_frames"), count(&rx, "tx_bytes"));
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

    // Every counter a broadcast could move, at one moment.
    let copies = || Copies {
        a_to_b: count(&a.vtep_stats(&ipb), "tx_frames"),
        a_to_c: count(&a.vtep_stats(&ipc), "tx_frames"),
        b_from_a: count(&b.vtep_stats(&ipa), "rx_frames"),
        c_from_a: count(&c.vtep_stats(&ipa), "rx_frames"),
        b_to_c: count(&b.vtep_stats(&ipc), "tx_frames"),
        c_to_b: count(&c.vtep_stats(&ipb), "tx_frames"),
        b1: count(&b.port_stats(&b1.name), "tx_frames"),
        b2: count(&b.port_stats(&b2.name), "tx_frames"),
        c1: count(&c.port_stats(&c1.name), "tx_frames"),
    };
    // 20 broadcasts from the container's own MAC (another would be refused
    // as spoofed_mac), of an EtherType nothing answers.
    let broadcasts = |ns: &Netns| vec![ether(BROADCAST, mac_bytes(&ns.mac("eth0")), 0x88b5, &[0; 46]); 20];
    // Sends them from `ns`, waits until `arrived` says they are there, lets
    // the counters settle, and returns what moved.
    let send = |ns: &Netns, arrived: &dyn Fn(&Copies) -> bool| {
        let before = copies();
        ns.inject(&broadcasts(ns));
        let came = wait_until(Duration::from_secs(3), || arrived(&copies().since(&before)));
        assert!(came, "the broadcasts from {} did not arrive: {:?}", ns.name, copies().since(&before));
        std::thread::sleep(Duration::from_millis(300));
        copies().since(&before)
    };

    // On `back` from a2: one copy to host b, the only other host of back;
    // b2 gets each once; host c, which does not carry back, gets nothing,
    // and b2 does not pass them on to b1 on another network.
    let moved = send(&a2, &|d| d.b2 >= 20);
    let expected = Copies { a_to_b: 20, b_from_a: 20, b2: 20, ..Copies::default() };
    assert_eq!(moved, expected, "20 broadcasts on back: head-end replication to host b only");
    let c_stats = c.stats();
    assert!(c_stats["underlay_drops"].as_object().expect("underlay_drops").is_empty(), "{c_stats}");

    // On `front` from a1: one copy to each other host, not more; b1 and c1
    // get each once (not twice: no host floods a copy it got from a VTEP
    // on to another VTEP).
    let moved = send(&a1, &|d| d.b1 >= 20 && d.c1 >= 20);
    let expected = Copies { a_to_b: 20, a_to_c: 20, b_from_a: 20, c_from_a: 20, b1: 20, c1: 20, ..Copies::default() };
    assert_eq!(moved, expected, "20 broadcasts on front: one copy per host");
    for (sd, vtep) in [(&a, &ipb), (&a, &ipc)] {
        let v = sd.vtep_stats(vtep);
        assert!(sparse(&v["drops"], "tx_error").is_none(), "sending to {vtep} failed: {v}");
    }
}

/// Frames seen by the counters of the broadcast test: VTEP datagrams sent
/// (`x_to_y`) and received (`y_from_x`) between hosts, frames written into
/// the containers b1, b2 (host b) and c1 (host c).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Copies {
    a_to_b: u64,
    a_to_c: u64,
    b_from_a: u64,
    c_from_a: u64,
    b_to_c: u64,
    c_to_b: u64,
    b1: u64,
    b2: u64,
    c1: u64,
}

impl Copies {
    /// What moved since `before`.
    fn since(&self, before: &Copies) -> Copies {
        Copies {
            a_to_b: self.a_to_b - before.a_to_b,
            a_to_c: self.a_to_c - before.a_to_c,
            b_from_a: self.b_from_a - before.b_from_a,
            c_from_a: self.c_from_a - before.c_from_a,
            b_to_c: self.b_to_c - before.b_to_c,
            c_to_b: self.c_to_b - before.c_to_b,
            b1: self.b1 - before.b1,
            b2: self.b2 - before.b2,
            c1: self.c1 - before.c1,
        }
    }
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
    let written = |ns: &Netns| count(&b.port_stats(&ns.name), "tx_frames");
    let (red_before, blue_before) = (written(&b1), written(&b2));
    assert!(!a1.ping("10.30.0.13", 2), "red reached blue");
    // a1's ARP requests for 10.30.0.13 crossed to host b on red (b1 got
    // them), and went no further than red there.
    assert!(written(&b1) > red_before, "red's ARP broadcasts never reached host b: nothing was tested");
    assert_eq!(written(&b2), blue_before, "red's ARP broadcasts reached blue's port");
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
    let ip = "10.40.0.50".parse().unwrap();
    mover.inject(&[arp(1, (mac_bytes(mac), ip), ([0; 6], ip))]);
    let back = wait_until(Duration::from_secs(5), || {
        watcher.exec(&["ping", "-c", "1", "-W", "0.3", "10.40.0.50"]).status.success()
    });
    let took = announced.elapsed();
    assert!(back, "the moved container is unreachable");
    assert!(took < Duration::from_secs(2), "reachable again only {took:?} after the gratuitous ARP");
    eprintln!("moved container reachable {took:?} after its gratuitous ARP");
}

/// A host with the Linux kernel's vxlan device and a bridge, and a switchd
/// host: ARP, ping and iperf3 both ways. The kernel host's underlay
/// computes checksums in software, as a real NIC would in hardware: every
/// inner frame from it arrives complete, and is verified before GRO joins
/// it: none is counted as deferred but the odd one whose complete checksum
/// happens to equal its pseudo-header sum (one in 65536, harmlessly: finished
/// again, it is the same).
#[test]
fn kernel_vxlan_interop_both_ways() {
    let (deferred, frames) = kernel_vxlan_interop(true, false);
    assert!(frames > 1000, "only {frames} frames from the kernel peer");
    assert!(deferred <= frames / 10_000 + 5, "{deferred} of {frames} complete checksums taken for deferred ones");
}

/// The same over a veth underlay as it comes, offloads on: the kernel's
/// vxlan device leaves the inner checksums of TCP (and of its UDP) partial,
/// which veth never fills in, and sends its GSO packets (up to 64 KiB of
/// TCP in one datagram) uncut, so switchd receives frames whose TCP
/// checksum is the pseudo-header sum, some larger than the MTU. They go up
/// for the container's stack to finish (GRO joins them unverified, a lone
/// one is written with NEEDS_CSUM, a large one as a GSO frame), and TCP
/// passes both ways; frames towards the kernel keep complete checksums (a
/// `[[peer]]` is not known to be a switchd).
#[test]
fn kernel_vxlan_peer_with_offloads_on_its_veth_underlay() {
    let (deferred, _) = kernel_vxlan_interop(false, false);
    assert!(deferred > 100, "only {deferred} frames from the kernel peer had their checksum deferred");
    eprintln!("{deferred} frames from the kernel peer arrived with deferred checksums, finished in the container");
}

/// The same over an IPv6 underlay: the kernel's vxlan device with an IPv6
/// `local`, and switchd's network MTU leaving the 70 bytes of IPv6 VXLAN.
#[test]
fn kernel_vxlan_peer_over_an_ipv6_underlay() {
    let (_, from_kernel) = kernel_vxlan_interop(false, true);
    assert!(from_kernel > 100, "only {from_kernel} frames from the kernel peer over IPv6");
}

/// Builds a kernel vxlan host (`ethtool -K u0 tx off` on its underlay when
/// `tx_off`) and a switchd host, on an IPv6 underlay if `ipv6`, checks ARP,
/// ping and iperf3 both ways, and returns how many frames into the switchd
/// host's container came with their checksum deferred, and how many came
/// from the kernel peer.
fn kernel_vxlan_interop(tx_off: bool, ipv6: bool) -> (u64, u64) {
    let mut ul = if ipv6 { Underlay::new_ipv6() } else { Underlay::new() };
    // VXLAN's overhead: 50 bytes over IPv4, 70 over IPv6.
    let mtu = if ipv6 { "1430" } else { "1450" };
    let ((hk, ipk), (hs, ips)) = (ul.host("hk"), ul.host("hs"));
    let (kc, sc) = (Netns::new("kc"), Netns::new("sc"));
    // The kernel host, as a user would build it with iproute2.
    if tx_off {
        hk.ok(&["ethtool", "-K", "u0", "tx", "off"]);
    }
    for cmd in [
        format!("ip link add vx0 type vxlan id 100 dstport 4789 local {ipk} dev u0"),
        format!("bridge fdb append 00:00:00:00:00:00 dev vx0 dst {ips}"),
        "ip link add br0 type bridge".into(),
        format!("ip link set vx0 mtu {mtu} master br0 up"),
        format!("ip link add vc0 type veth peer name eth0 netns {}", kc.name),
        format!("ip link set vc0 mtu {mtu} master br0 up"),
        "ip link set br0 up".into(),
    ] {
        hk.ok(&["sh", "-c", &cmd]);
    }
    kc.ok(&["ip", "link", "set", "eth0", "mtu", mtu]);
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
    // Not a trickle of retransmissions: before switchd took the kernel's
    // partial checksums and uncut GSO packets, 0.0002 Gbit/s came through.
    assert!(to_kernel > 0.05 && from_kernel > 0.05, "{to_kernel} and {from_kernel} Gbit/s");
    let drops = &s.vtep_stats(&ipk)["drops"];
    assert!(sparse(drops, "oversize").is_none(), "the kernel's GSO packets were dropped: {drops}");
    eprintln!(
        "iperf3 (IPv{} underlay, tx {}) switchd -> kernel vxlan {to_kernel:.2} Gbit/s, kernel -> switchd {from_kernel:.2} Gbit/s",
        if ipv6 { 6 } else { 4 },
        if tx_off { "off" } else { "on" }
    );
    assert_eq!(sc.ok(&["cat", "/sys/class/net/eth0/mtu"]).trim(), mtu, "switchd's network MTU");
    let fdb = s.json(&["fdb", "front"]);
    assert!(
        fdb.as_array().unwrap().iter().any(|e| e["mac"] == kc.mac("eth0").as_str() && e["vtep"] == ipk.as_str()),
        "{fdb}"
    );
    (count(&s.port_stats(&sc.name), "deferred_checksums"), count(&s.vtep_stats(&ipk), "rx_frames"))
}

/// Two switchd hosts that know each other as switchd (`switchd = true`):
/// the sender leaves inner checksums partial, the receiver counts them and
/// has its containers' stacks finish them; iperf3 both ways.
#[test]
fn switchd_peers_leave_inner_checksums_for_the_receiver() {
    let mut ul = Underlay::new();
    let ((ha, ipa), (hb, ipb)) = (ul.host("ha"), ul.host("hb"));
    let (ca, cb) = (Netns::new("ca"), Netns::new("cb"));
    let net = network("front", 70, "10.70.0.0/24");
    let peer = |ip: &str| format!("\n[[peer]]\nunderlay_ip = \"{ip}\"\nswitchd = true\n");
    let a = overlay_host(ha, &ipa, &format!("{}{net}{}", peer(&ipb), port("front", &ca, "10.70.0.11")));
    let b = overlay_host(hb, &ipb, &format!("{}{net}{}", peer(&ipa), port("front", &cb, "10.70.0.12")));
    assert!(ca.ping("10.70.0.12", 3), "cross-host ping\n{}\n{}", a.log(), b.log());
    let there = ca.iperf(&cb, "10.70.0.12", 3);
    let back = cb.iperf(&ca, "10.70.0.11", 2);
    assert!(there > 0.0 && back > 0.0);
    eprintln!("iperf3 between switchd peers, inner checksums left partial: {there:.2} Gbit/s, back {back:.2} Gbit/s");
    for (sd, c) in [(&b, &cb), (&a, &ca)] {
        let rx = sd.port_stats(&c.name);
        let deferred = count(&rx, "deferred_checksums");
        assert!(deferred > 1000, "only {deferred} frames into {} came with their checksum deferred: {rx}", c.name);
    }
    let rx = b.port_stats(&cb.name);
    let (frames, bytes) = (count(&rx, "tx_frames"), count(&rx, "tx_bytes"));
    assert!(bytes / frames > 3000, "average write into cb's TAP {} bytes: no receive coalescing", bytes / frames);
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
    let vxlan = |flags: u8, vni: u32| [&[flags, 0, 0, 0][..], &vni.to_be_bytes()[1..], &[0]].concat();
    let frame = |src: &str, padding: usize| ether(BROADCAST, mac_bytes(src), 0x0800, &vec![0; padding]);
    let good = frame("02:00:00:00:00:01", 46);
    let datagrams = [
        b"short".to_vec(),
        [vxlan(0x00, 60), good.clone()].concat(), // no I flag
        [vxlan(0x88, 60), good.clone()].concat(), // a flag that is not VXLAN's
        [vxlan(0x08, 61), good.clone()].concat(), // a VNI nobody carries
        [vxlan(0x08, 60), vec![0; 10]].concat(),  // too short for a frame
        [vxlan(0x08, 60), frame("02:00:00:00:00:01", 3000)].concat(), // larger than the network's MTU
        [vxlan(0x08, 60), frame("01:00:00:00:00:01", 46)].concat(), // a multicast source MAC
    ];
    let hexed: Vec<String> = datagrams.iter().map(|d| hex(d)).collect();
    let mut args = vec![ipa.as_str(), ipb.as_str(), "4789"];
    args.extend(hexed.iter().map(String::as_str));
    a.host.py(py::SEND_DATAGRAMS, &args);
    // From an address that is no peer.
    let from_rogue = hex(&[vxlan(0x08, 60), good].concat());
    rogue.py(py::SEND_DATAGRAMS, &["0.0.0.0", &ipb, "4789", &from_rogue, &from_rogue, &from_rogue]);

    // Each counted under its reason, and nothing else counted: the drops of
    // a's VTEP on b are exactly these, the underlay's exactly the rogue's.
    let expected: serde_json::Value = serde_json::json!({
        "truncated": 2, "bad_vxlan_flags": 2, "unknown_vni": 1, "oversize": 1, "bad_src_mac": 1
    });
    let arrived = wait_until(Duration::from_secs(3), || {
        let drops = b.vtep_stats(&ipa)["drops"].clone();
        expected
            .as_object()
            .unwrap()
            .iter()
            .all(|(k, _)| sparse(&drops, k).is_some_and(|got| got >= count(&expected, k)))
    });
    assert!(arrived, "drops from a: {}", b.vtep_stats(&ipa)["drops"]);
    let from_unknown = wait_until(Duration::from_secs(3), || {
        sparse(&b.stats()["underlay_drops"], "unknown_source").is_some_and(|n| n >= 3)
    });
    assert!(from_unknown, "underlay drops: {}", b.stats()["underlay_drops"]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(b.vtep_stats(&ipa)["drops"], expected, "drops of a's VTEP on b");
    assert_eq!(b.stats()["underlay_drops"], serde_json::json!({ "unknown_source": 3 }), "underlay drops on b");
    assert!(ca.ping("10.60.0.12", 2), "switching broke after bad underlay input:\n{}", b.log());
}
