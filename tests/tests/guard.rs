//! One container against the others: taking another's MAC (from a port or
//! through a peer's VXLAN), lying in IPv6 neighbour discovery, and a TSO
//! frame that asks to become 65,000 datagrams. Each is refused, counted,
//! and changes nothing for the victims.

use std::time::Duration;

use switchd_e2e::{Netns, Switchd, Underlay, wait_until};

fn network(vni: u32, subnet: &str) -> String {
    format!("\n[[network]]\nname = \"front\"\nvni = {vni}\nsubnet = \"{subnet}\"\ninternal = true\n")
}

fn port(ns: &Netns, ip: &str) -> String {
    format!("\n[[port]]\nnetwork = \"front\"\nnetns = \"{}\"\nip = \"{ip}\"\n", ns.name)
}

fn hex(mac: &str) -> String {
    mac.replace(':', "")
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
    stats["drops"][reason].as_u64().unwrap_or_else(|| panic!("no {reason} drops on {endpoint}: {stats}"))
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
    attacker.inject(&format!(
        "s.send(bytes.fromhex('ffffffffffff{m}88b5') + bytes(46))\n\
         s.send(bytes.fromhex('ffffffffffff{m}0800') + bytes.fromhex('4500001c00010000401100000a46000a0a4600ff') + bytes(8))",
        m = hex(&victim_mac)
    ));
    assert!(
        wait_until(Duration::from_secs(2), || port_drop(&sd, &attacker.name, "spoofed_mac") >= 2),
        "{}",
        sd.port_stats(&attacker.name)
    );
    assert_eq!(fdb_where(&sd, &victim_mac), victim_port, "the victim's MAC stayed on its port");
    assert!(peer.ping("10.70.0.11", 2), "the victim's traffic still reaches it");
    let moves = sd.json(&["stats"])["networks"][0]["mac_moves"].as_u64().expect("mac_moves");
    assert_eq!(moves, 0);
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
    let vni = format!("{:06x}", 710);
    b.host.python(&format!(
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         inner = bytes.fromhex('ffffffffffff{m}88b5') + bytes(46)\n\
         s.sendto(bytes.fromhex('08000000{vni}00') + inner, ('{ipa}', 4789))",
        m = hex(&local_mac)
    ));
    let refused = wait_until(Duration::from_secs(2), || {
        let stats = a.json(&["stats"]);
        let vtep = stats["vteps"].as_array().expect("vteps").iter().find(|v| v["vtep"] == ipb.as_str()).cloned();
        vtep.is_some_and(|v| v["drops"]["spoofed_mac"].as_u64().is_some_and(|n| n >= 1))
    });
    assert!(refused, "{}", a.json(&["stats"]));
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
    let m: Vec<u8> = hex(&attacker_mac)
        .as_bytes()
        .chunks(2)
        .map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap(), 16).unwrap())
        .collect();
    let attacker_ll =
        format!("fe80::{:02x}{:02x}:{:02x}ff:fe{:02x}:{:02x}{:02x}", m[0] ^ 2, m[1], m[2], m[3], m[4], m[5]);
    attacker.inject(&format!(
        r#"
import struct
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s >> 16) + (s & 0xffff)
    return ~s & 0xffff
def icmp6(src, dst, body):
    src, dst = socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst)
    pseudo = src + dst + struct.pack("!I3xB", len(body), 58)
    body = body[:2] + struct.pack("!H", csum(pseudo + body)) + body[4:]
    ip = struct.pack("!IHBB", 0x60000000, len(body), 58, 255) + src + dst
    return bytes.fromhex("333300000001{mine}86dd") + ip + body
me = bytes.fromhex("{mine}")
# Neighbour advertisement: override, for the victim's address, with the attacker's MAC.
na = struct.pack("!BBHI", 136, 0, 0, 0x20000000) + socket.inet_pton(socket.AF_INET6, "{victim_ll}") + bytes([2, 1]) + me
s.send(icmp6("{attacker_ll}", "ff02::1", na))
# Router advertisement with an autonomous prefix fd99::/64.
prefix = struct.pack("!BBBBIII", 3, 4, 64, 0xc0, 3600, 1800, 0) + socket.inet_pton(socket.AF_INET6, "fd99::")
ra = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 1800, 0, 0) + prefix + bytes([1, 1]) + me
s.send(icmp6("{attacker_ll}", "ff02::1", ra))
"#,
        mine = hex(&attacker_mac)
    ));
    assert!(
        wait_until(Duration::from_secs(2), || port_drop(&sd, &attacker.name, "spoofed_nd") >= 2),
        "{}",
        sd.port_stats(&attacker.name)
    );
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
    let vtep_tx = || {
        let stats = a.json(&["stats"]);
        let vtep = stats["vteps"].as_array().expect("vteps").iter().find(|v| v["vtep"] == ipb.as_str()).cloned();
        vtep.expect("host b's VTEP")["tx_frames"].as_u64().expect("tx_frames")
    };
    let rss_kb = || {
        let status = std::fs::read_to_string(format!("/proc/{}/status", a.pid())).expect("switchd's status");
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS").to_owned();
        line.split_whitespace().nth(1).expect("kB").parse::<u64>().expect("a number")
    };
    let (tx_before, rss_before) = (vtep_tx(), rss_kb());
    sender.python(&format!(
        r#"
import socket, struct
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.setsockopt(263, 15, 1)  # SOL_PACKET, PACKET_VNET_HDR
s.bind(("eth0", 0))
payload = bytes(65000)
tcp = struct.pack("!HHIIBBHHH", 40000, 5201, 1, 0, 5 << 4, 0x18, 65535, 0, 0)
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 1, 0x4000, 64, 6, 0,
                 socket.inet_aton("10.73.0.10"), socket.inet_aton("10.73.0.20"))
# flags NEEDS_CSUM, gso_type TCPV4, hdr_len 54, gso_size 1, csum at 34 + 16
vnet = struct.pack("<BBHHHH", 1, 1, 54, 1, 34, 16)
eth = bytes.fromhex("{dst}{src}0800")
for _ in range(5):
    s.send(vnet + eth + ip + tcp + payload)
"#,
        dst = hex(&receiver.mac("eth0")),
        src = hex(&sender.mac("eth0"))
    ));
    assert!(
        wait_until(Duration::from_secs(3), || port_drop(&a, &sender.name, "bad_gso") >= 5),
        "{}",
        a.port_stats(&sender.name)
    );
    std::thread::sleep(Duration::from_millis(200));
    let sent = vtep_tx() - tx_before;
    assert!(sent < 50, "{sent} datagrams went to host b");
    let grown = rss_kb().saturating_sub(rss_before);
    assert!(grown < 20_000, "switchd grew by {grown} kB");
    assert!(sender.ping("10.73.0.20", 1), "and ordinary traffic still flows");
}
