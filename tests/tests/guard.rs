//! One container against the others: taking another's MAC (from a port or
//! through a peer's VXLAN), lying in IPv6 neighbour discovery, and a TSO
//! frame that asks to become 65,000 datagrams. Each is refused, counted,
//! and changes nothing for the victims.

use std::time::Duration;

use switchd_e2e::{BROADCAST, Netns, Switchd, Underlay, count, ether, hex, mac_bytes, py, sparse, unhex, wait_until};

fn network(vni: u32, subnet: &str) -> String {
    format!("\n[[network]]\nname = \"front\"\nvni = {vni}\nsubnet = \"{subnet}\"\ninternal = true\n")
}

fn port(ns: &Netns, ip: &str) -> String {
    format!("\n[[port]]\nnetwork = \"front\"\nnetns = \"{}\"\nip = \"{ip}\"\n", ns.name)
}

/// Two hosts with static peers, each with a container on network `front`
/// of `vni` (subnet 10.(vni / 10).0.0/24): (underlay, a, b, a's and b's
/// underlay addresses).
fn two_hosts(vni: u32, on_a: (&Netns, &str), on_b: (&Netns, &str)) -> (Underlay, Switchd, Switchd, String, String) {
    let mut ul = Underlay::new();
    let ((ha, ipa), (hb, ipb)) = (ul.host("ha"), ul.host("hb"));
    let net = network(vni, &format!("10.{}.0.0/24", vni / 10));
    let host = |ns: Netns, me: &str, other: &str, (c, ip): (&Netns, &str)| {
        let body = format!("\n[[peer]]\nunderlay_ip = \"{other}\"\n{net}{}", port(c, ip));
        Switchd::start_in(ns, &format!("underlay_ip = \"{me}\""), &body)
    };
    let a = host(ha, &ipa, &ipb, on_a);
    let b = host(hb, &ipb, &ipa, on_b);
    (ul, a, b, ipa, ipb)
}

/// A drop counter of a port, which must be there.
fn port_drop(sd: &Switchd, endpoint: &str, reason: &str) -> u64 {
    let stats = sd.port_stats(endpoint);
    sparse(&stats["drops"], reason).unwrap_or_else(|| panic!("no {reason} drops on {endpoint}: {stats}"))
}

/// Waits until a port has dropped `n` frames as `reason` (a reason not
/// counted yet is simply not there), lets it settle, and checks it is
/// exactly `n`.
fn wait_for_drops(sd: &Switchd, endpoint: &str, reason: &str, n: u64, timeout: Duration) {
    let reached = wait_until(timeout, || sparse(&sd.port_stats(endpoint)["drops"], reason).is_some_and(|got| got >= n));
    assert!(reached, "not {n} {reason} drops on {endpoint}: {}", sd.port_stats(endpoint));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(port_drop(sd, endpoint, reason), n, "{reason} drops on {endpoint}: {}", sd.port_stats(endpoint));
}

/// Where the FDB has `mac`.
fn fdb_where(sd: &Switchd, mac: &str) -> String {
    let fdb = sd.json(&["fdb", "front"]);
    let row = fdb.as_array().expect("fdb rows").iter().find(|e| e["mac"] == mac).cloned();
    row.unwrap_or_else(|| panic!("{mac} not in the FDB: {fdb}"))["where"].as_str().expect("where").to_owned()
}

#[test]
fn a_container_cannot_take_another_containers_mac() {
    let (attacker, victim, peer) = (Netns::new("att"), Netns::new("vic"), Netns::new("peer"));
    let body = format!(
        "{}{}{}{}",
        network(700, "10.70.0.0/24"),
        port(&attacker, "10.70.0.10"),
        port(&victim, "10.70.0.11"),
        port(&peer, "10.70.0.12")
    );
    let sd = Switchd::start("", &body);
    assert!(peer.ping("10.70.0.11", 1), "peer -> victim");
    let victim_mac = victim.mac("eth0");
    let victim_port = format!("{}:eth0", victim.name);
    assert_eq!(fdb_where(&sd, &victim_mac), victim_port);

    // One frame with the victim's MAC, of an EtherType nothing reads, and
    // an IPv4 one from the attacker's own address.
    let m = mac_bytes(&victim_mac);
    let ipv4 = [&unhex("4500001c00010000401100000a46000a0a4600ff")[..], &[0; 8]].concat();
    attacker.inject(&[ether(BROADCAST, m, 0x88b5, &[0; 46]), ether(BROADCAST, m, 0x0800, &ipv4)]);
    wait_for_drops(&sd, &attacker.name, "spoofed_mac", 2, Duration::from_secs(2));
    assert_eq!(fdb_where(&sd, &victim_mac), victim_port, "the victim's MAC stayed on its port");
    assert!(peer.ping("10.70.0.11", 2), "the victim's traffic still reaches it");
    assert_eq!(count(&sd.network_stats("front"), "mac_moves"), 0);
}

#[test]
fn vxlan_from_a_peer_never_moves_a_local_endpoints_mac() {
    let (local, remote) = (Netns::new("loc"), Netns::new("rem"));
    let (_ul, a, b, ipa, ipb) = two_hosts(710, (&local, "10.71.0.10"), (&remote, "10.71.0.20"));
    assert!(remote.ping("10.71.0.10", 1), "across hosts");
    let local_mac = local.mac("eth0");
    let local_port = format!("{}:eth0", local.name);
    // A hand-made VXLAN datagram from host b's address (a peer's VTEP)
    // whose inner frame claims the local container's MAC.
    let inner = ether(BROADCAST, mac_bytes(&local_mac), 0x88b5, &[0; 46]);
    let datagram = [&[0x08, 0, 0, 0][..], &710u32.to_be_bytes()[1..], &[0], &inner].concat();
    b.host.py(py::SEND_DATAGRAMS, &["0.0.0.0", &ipa, "4789", &hex(&datagram)]);
    let refused = wait_until(Duration::from_secs(2), || sparse(&a.vtep_stats(&ipb)["drops"], "spoofed_mac").is_some());
    assert!(refused, "{}", a.stats());
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(count(&a.vtep_stats(&ipb)["drops"], "spoofed_mac"), 1, "{}", a.vtep_stats(&ipb));
    assert_eq!(fdb_where(&a, &local_mac), local_port, "the local container's MAC did not move");
    assert!(remote.ping("10.71.0.10", 1), "and its traffic still reaches it");
}

/// Neighbour discovery lies from a container: an advertisement for
/// another container's link-local address (override flag set), and a
/// router advertisement. The observer's neighbour cache and addresses stay
/// as they were.
#[test]
fn a_container_cannot_lie_in_neighbour_discovery() {
    let (attacker, victim, observer) = (Netns::new("att"), Netns::new("vic"), Netns::new("obs"));
    let body = format!(
        "{}{}{}{}",
        network(720, "10.72.0.0/24"),
        port(&attacker, "10.72.0.10"),
        port(&victim, "10.72.0.11"),
        port(&observer, "10.72.0.12")
    );
    let sd = Switchd::start("", &body);
    for ns in [&victim, &observer] {
        ns.ok(&["sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=0", "net.ipv6.conf.eth0.accept_ra=1"]);
        ns.ok(&["sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=0"]);
    }
    let link_local = |ns: &Netns| {
        let out = ns.ok(&["ip", "-6", "-br", "addr", "show", "dev", "eth0", "scope", "link"]);
        out.split_whitespace().nth(2).expect("a link-local address").split('/').next().unwrap().to_owned()
    };
    let victim_ll = link_local(&victim);
    let ping6 = |to: &str| observer.exec(&["ping", "-6", "-c", "1", "-W", "1", &format!("{to}%eth0")]).status.success();
    assert!(wait_until(Duration::from_secs(3), || ping6(&victim_ll)), "observer -> victim over IPv6");
    let victim_mac = victim.mac("eth0");
    let neighbour = || observer.ok(&["ip", "-6", "neigh", "show", "dev", "eth0", &victim_ll]);
    assert!(neighbour().contains(&victim_mac), "{}", neighbour());

    let attacker_mac = attacker.mac("eth0");
    // The attacker's own link-local address, as the kernel would make it.
    let m = mac_bytes(&attacker_mac);
    let attacker_ll =
        format!("fe80::{:02x}{:02x}:{:02x}ff:fe{:02x}:{:02x}{:02x}", m[0] ^ 2, m[1], m[2], m[3], m[4], m[5]);
    attacker.inject_script(py::SPOOF_NEIGHBOUR_DISCOVERY, &[&attacker_mac, &attacker_ll, &victim_ll, "fd99::"]);
    wait_for_drops(&sd, &attacker.name, "spoofed_nd", 2, Duration::from_secs(2));
    std::thread::sleep(Duration::from_millis(300));
    let cache = neighbour();
    assert!(cache.contains(&victim_mac) && !cache.contains(&attacker_mac), "the observer's cache changed: {cache}");
    let addresses = observer.ok(&["ip", "-6", "addr", "show", "dev", "eth0"]);
    assert!(!addresses.contains("fd99:"), "the observer took the attacker's prefix: {addresses}");
    assert!(ping6(&victim_ll), "observer -> victim still");
}

/// One 64 KiB TCP frame with `gso_size = 1`, set through PACKET_VNET_HDR,
/// would be cut into 65,000 VXLAN datagrams: it is dropped at the port.
#[test]
fn a_tso_frame_asking_for_one_byte_segments_is_dropped() {
    let (sender, receiver) = (Netns::new("snd"), Netns::new("rcv"));
    let (_ul, a, _b, _, ipb) = two_hosts(730, (&sender, "10.73.0.10"), (&receiver, "10.73.0.20"));
    assert!(sender.ping("10.73.0.20", 1));
    let vtep_tx = || count(&a.vtep_stats(&ipb), "tx_frames");
    let rss_kb = || {
        let status = std::fs::read_to_string(format!("/proc/{}/status", a.pid())).expect("switchd's status");
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS").to_owned();
        line.split_whitespace().nth(1).expect("kB").parse::<u64>().expect("a number")
    };
    let (tx_before, rss_before) = (vtep_tx(), rss_kb());
    let (dst, src) = (receiver.mac("eth0"), sender.mac("eth0"));
    sender.inject_script(py::SEND_TSO_FRAME, &[&dst, &src, "10.73.0.10", "10.73.0.20", "1", "5"]);
    wait_for_drops(&a, &sender.name, "bad_gso", 5, Duration::from_secs(3));
    std::thread::sleep(Duration::from_millis(200));
    let sent = vtep_tx() - tx_before;
    assert!(sent < 50, "{sent} datagrams went to host b");
    let grown = rss_kb().saturating_sub(rss_before);
    assert!(grown < 20_000, "switchd grew by {grown} kB");
    assert!(sender.ping("10.73.0.20", 1), "and ordinary traffic still flows");
}
