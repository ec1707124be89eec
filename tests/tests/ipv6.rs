//! IPv6 on a dual-stack network: the gateway's router advertisements give
//! containers their addresses by SLAAC (the kernel's own autoconfiguration),
//! the gateway answers ping at its IPv6 address, and containers reach each
//! other over IPv6 through the switch.

use std::time::Duration;

use switchd_e2e::{KeyFile, Netns, Switchd, Underlay, gossip_member, wait_until};

/// The address a container's kernel makes from `prefix` (a /64, written
/// "fd00:35:") and the MAC of its `eth0`, as `ip -6 addr` shows it.
fn slaac_of(ns: &Netns, prefix: &str) -> String {
    let mac: Vec<u8> =
        ns.mac("eth0").split(':').map(|b| u8::from_str_radix(b, 16).expect("a MAC's hex bytes")).collect();
    let id = [
        u16::from_be_bytes([mac[0] ^ 2, mac[1]]),
        u16::from_be_bytes([mac[2], 0xff]),
        u16::from_be_bytes([0xfe, mac[3]]),
        u16::from_be_bytes([mac[4], mac[5]]),
    ];
    let addr: std::net::Ipv6Addr =
        format!("{prefix}:{:x}:{:x}:{:x}:{:x}", id[0], id[1], id[2], id[3]).parse().expect("an IPv6 address");
    addr.to_string()
}

/// Waits until `ns`'s eth0 has `addr`/64, past duplicate address
/// detection (no longer tentative); what it has is printed if never.
fn configured(ns: &Netns, addr: &str) -> bool {
    let show = || ns.ok(&["ip", "-6", "addr", "show", "dev", "eth0"]);
    let done = wait_until(Duration::from_secs(15), || {
        show().lines().any(|l| l.contains(&format!("{addr}/64")) && !l.contains("tentative"))
    });
    if !done {
        eprintln!("{}: {}", ns.name, show());
    }
    done
}

#[test]
fn containers_of_a_dual_stack_network_configure_themselves_by_slaac_and_talk_over_ipv6() {
    let dual = "\n[[network]]\nname = \"dual\"\nvni = 350\nsubnet = \"10.35.0.0/24\"\ninternal = true\n\
                subnet6 = \"fd00:35::/64\"\n";
    let sd = Switchd::start("", dual);
    let (a, b) = (Netns::new("v6a"), Netns::new("v6b"));
    for ns in [&a, &b] {
        // Test namespaces start with IPv6 off; the interface switchd makes
        // inherits the default.
        ns.ok(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0", "net.ipv6.conf.default.disable_ipv6=0"]);
        sd.connect("dual", ns, &[]);
    }
    let (addr_a, addr_b) = (slaac_of(&a, "fd00:35:"), slaac_of(&b, "fd00:35:"));
    for (ns, addr) in [(&a, &addr_a), (&b, &addr_b)] {
        assert!(configured(ns, addr), "{} never configured {addr}\n{}", ns.name, sd.log());
    }
    // rdisc6 (ndisc6) solicits and prints the advertisement.
    let ra = a.ok(&["rdisc6", "-1", "-r", "3", "-w", "1000", "eth0"]);
    for line in ["fd00:35::/64", "1450", "fd00:35::1"] {
        assert!(ra.contains(line), "{line} missing in rdisc6's\n{ra}");
    }
    // Internal: the prefix is on-link, but the gateway is no default router.
    assert!(!a.ok(&["ip", "-6", "route"]).contains("default"), "{}", a.ok(&["ip", "-6", "route"]));
    let stats = sd.json(&["stats"]);
    assert!(stats["services"]["router_advertisements"].as_u64() >= Some(2), "{}", stats["services"]);

    assert!(a.ping("fd00:35::1", 2), "ping -6 of the gateway\n{}", sd.log());
    assert!(a.ping(&addr_b, 3), "a -> b over IPv6\n{}", sd.log());
    // By name: b's SLAAC address answers AAAA, its IPv4 one A.
    let b_name = b.name.clone();
    let aaaa = a.ok(&["dig", "+short", "+tries=1", "+time=2", "@10.35.0.1", "AAAA", &b_name]);
    assert_eq!(aaaa.trim(), addr_b, "AAAA of {b_name}");
    // And over IPv6, at the gateway's IPv6 address (the advertised DNS server).
    let over_v6 = a.ok(&["dig", "+short", "+tries=1", "+time=2", "@fd00:35::1", "AAAA", &b_name]);
    assert_eq!(over_v6.trim(), addr_b, "AAAA over IPv6");
    let ptr = a.ok(&["dig", "+short", "+tries=1", "+time=2", "@fd00:35::1", "-x", &addr_b]);
    assert_eq!(ptr.trim(), format!("{b_name}.dual."), "ip6.arpa back to the name");
    assert!(b.ping(&addr_a, 3), "b -> a over IPv6");
    // A container that never asks (router_solicitations=0) is configured
    // all the same: the gateway advertises unasked when an endpoint joins.
    let quiet = Netns::new("v6q");
    quiet.ok(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0", "net.ipv6.conf.default.disable_ipv6=0"]);
    quiet.ok(&["sysctl", "-qw", "net.ipv6.conf.default.router_solicitations=0"]);
    sd.connect("dual", &quiet, &[]);
    let addr_q = slaac_of(&quiet, "fd00:35:");
    assert!(configured(&quiet, &addr_q), "unasked, {} never configured {addr_q}\n{}", quiet.name, sd.log());
    // A source it was not given is dropped by the guard.
    a.ok(&["ip", "-6", "addr", "add", "fd00:35::bad/64", "dev", "eth0", "nodad"]);
    let spoofed = a.exec(&["ping", "-c", "2", "-i", "0.2", "-W", "1", "-I", "fd00:35::bad", &addr_b]);
    assert!(!spoofed.status.success(), "a source a was not given got through");
}

/// Across two hosts: the network's subnet6 travels with its definition by
/// gossip, the other host's gateway advertises it too, and a container on
/// each reaches the other over IPv6 through VXLAN (neighbour discovery
/// answered on both hosts for the other's SLAAC address).
#[test]
fn a_dual_stack_network_spans_two_hosts() {
    let dual = "\n[[network]]\nname = \"dual\"\nvni = 360\nsubnet = \"10.36.0.0/24\"\ninternal = true\n\
                subnet6 = \"fd00:36::/64\"\n";
    let mut ul = Underlay::new();
    let key = KeyFile::new("v6", 0x61);
    let ((h1, ip1), (h2, ip2)) = (ul.host("h1"), ul.host("h2"));
    let hosts = [gossip_member(h1, &ip1, &key, dual), gossip_member(h2, &ip2, &key, "")];
    assert!(wait_until(Duration::from_secs(10), || hosts[1].ctl(&["network", "ls"]).contains("dual")));
    let inspect = hosts[1].json(&["network", "inspect", "dual"]);
    assert_eq!(inspect["subnet6"], "fd00:36::/64", "the subnet6 came by gossip: {inspect}");
    let (a, b) = (Netns::new("v6x"), Netns::new("v6y"));
    for (h, ns) in hosts.iter().zip([&a, &b]) {
        ns.ok(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0", "net.ipv6.conf.default.disable_ipv6=0"]);
        h.connect("dual", ns, &[]);
    }
    let (addr_a, addr_b) = (slaac_of(&a, "fd00:36:"), slaac_of(&b, "fd00:36:"));
    for (ns, addr) in [(&a, &addr_a), (&b, &addr_b)] {
        assert!(configured(ns, addr), "{} never configured {addr}", ns.name);
    }
    assert!(
        wait_until(Duration::from_secs(10), || a.ping(&addr_b, 1)),
        "a -> b over IPv6 across hosts\n{}\n{}",
        hosts[0].log(),
        hosts[1].log()
    );
    assert!(b.ping(&addr_a, 3));
}
