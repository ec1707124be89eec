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

#[test]
fn containers_of_a_dual_stack_network_configure_themselves_by_slaac_and_talk_over_ipv6() {
    let dual = "\n[[network]]\nname = \"dual\"\nvni = 350\nsubnet = \"10.35.0.0/24\"\ninternal = true\n\
                subnet6 = \"fd00:35::/64\"\n";
    let sd = Switchd::start("", dual);
    let (a, b) = (Netns::new("v6a"), Netns::new("v6b"));
    for ns in [&a, &b] {
        // Test namespaces start with IPv6 off; the interface switchd makes
        // inherits the default.
        ns.enable_ipv6();
        sd.connect("dual", ns, &[]);
    }
    let (addr_a, addr_b) = (slaac_of(&a, "fd00:35:"), slaac_of(&b, "fd00:35:"));
    for (ns, addr) in [(&a, &addr_a), (&b, &addr_b)] {
        assert!(ns.has_ipv6(addr), "{} never configured {addr}\n{}", ns.name, sd.log());
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
    let over_tcp6 = a.ok(&["dig", "+tcp", "+short", "+tries=1", "+time=2", "@fd00:35::1", "AAAA", &b_name]);
    assert_eq!(over_tcp6.trim(), addr_b, "AAAA over TCP on IPv6, on a dual-stack network");
    let ptr = a.ok(&["dig", "+short", "+tries=1", "+time=2", "@fd00:35::1", "-x", &addr_b]);
    assert_eq!(ptr.trim(), format!("{b_name}.dual."), "ip6.arpa back to the name");
    assert!(b.ping(&addr_a, 3), "b -> a over IPv6");
    // A container that never asks (router_solicitations=0) is configured
    // all the same: the gateway advertises unasked when an endpoint joins.
    let quiet = Netns::new("v6q");
    quiet.enable_ipv6();
    quiet.ok(&["sysctl", "-qw", "net.ipv6.conf.default.router_solicitations=0"]);
    sd.connect("dual", &quiet, &[]);
    let addr_q = slaac_of(&quiet, "fd00:35:");
    assert!(quiet.has_ipv6(&addr_q), "unasked, {} never configured {addr_q}\n{}", quiet.name, sd.log());
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
        ns.enable_ipv6();
        h.connect("dual", ns, &[]);
    }
    let (addr_a, addr_b) = (slaac_of(&a, "fd00:36:"), slaac_of(&b, "fd00:36:"));
    // A's MAC (so its SLAAC address) is refused on the other host.
    let mac_a = a.mac("eth0");
    let seen = wait_until(Duration::from_secs(10), || {
        hosts[1].json(&["network", "inspect", "dual"])["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["mac"] == mac_a.as_str())
    });
    assert!(seen, "a's endpoint known on h2");
    let twin = Netns::new("v6z");
    let refused = hosts[1].try_ctl(&["network", "connect", "dual", &twin.name, "--mac", &mac_a]);
    assert!(refused.as_ref().is_err_and(|e| e.contains(&format!("{mac_a} is already in use"))), "{refused:?}");
    for (ns, addr) in [(&a, &addr_a), (&b, &addr_b)] {
        assert!(ns.has_ipv6(addr), "{} never configured {addr}", ns.name);
    }
    assert!(
        wait_until(Duration::from_secs(10), || a.ping(&addr_b, 1)),
        "a -> b over IPv6 across hosts\n{}\n{}",
        hosts[0].log(),
        hosts[1].log()
    );
    assert!(b.ping(&addr_a, 3));
    // By name across hosts, over IPv6 at the gateway's IPv6 address.
    let aaaa = a.ok(&["dig", "+short", "+tries=1", "+time=2", "@fd00:36::1", "AAAA", &b.name]);
    assert_eq!(aaaa.trim(), addr_b, "AAAA of {} from the other host", b.name);
    // Bulk TCP over IPv6 through VXLAN (TSO frames of IPv6 segments).
    let gbps = a.iperf(&b, &addr_b, 2);
    eprintln!("iperf3 -6 across hosts: {gbps:.2} Gbit/s");
    assert!(gbps > 0.0, "iperf3 over IPv6 moved nothing");

    // A container given its IPv6 address (as Docker's own IPAM and --ip6
    // give them): that one, configured by switchd, no SLAAC one beside it;
    // known by name and reachable from the other host, and its packets
    // from that address pass the guard.
    let given = Netns::new("v6g");
    given.enable_ipv6();
    hosts[1].connect("dual", &given, &["--ip6", "fd00:36::c"]);
    let gossiped = wait_until(Duration::from_secs(10), || {
        hosts[0].json(&["network", "inspect", "dual"])["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["ip6"] == "fd00:36::c")
    });
    assert!(gossiped, "the given address travels by gossip");
    let taken = hosts[0].try_ctl(&["network", "connect", "dual", &twin.name, "--ip6", "fd00:36::c"]);
    assert!(taken.as_ref().is_err_and(|e| e.contains("fd00:36::c is already in use")), "{taken:?}");
    let aaaa = a.ok(&["dig", "+short", "+tries=1", "+time=2", "@fd00:36::1", "AAAA", &given.name]);
    assert_eq!(aaaa.trim(), "fd00:36::c", "AAAA of the given address, across hosts");
    let by_name = wait_until(Duration::from_secs(10), || ping_said(&a, &["-6", &given.name]).0);
    assert!(by_name, "a -> given by name over IPv6: {:?}\n{}", ping_said(&a, &["-6", &given.name]), hosts[1].log());
    assert!(given.ping(&addr_a, 3), "from the given address, through the guard");
    let addrs = given.ok(&["ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "global"]);
    assert_eq!(addrs.lines().count(), 1, "the given address alone, though advertisements came:\n{addrs}");
    assert!(addrs.contains("fd00:36::c/64"), "{addrs}");
}

/// Enables IPv6 in a test namespace (they start with it off) and connects
/// it to `network`; returns its SLAAC address once configured.
fn dual_stack_container(sd: &Switchd, network: &str, tag: &str, prefix: &str) -> (Netns, String) {
    let ns = Netns::new(tag);
    ns.enable_ipv6();
    sd.connect(network, &ns, &[]);
    let addr = slaac_of(&ns, prefix);
    assert!(ns.has_ipv6(&addr), "{} never configured {addr}\n{}", ns.name, sd.log());
    (ns, addr)
}

/// What `ping ARGS` printed, both streams, and whether it succeeded.
fn ping_said(ns: &Netns, args: &[&str]) -> (bool, String) {
    let mut all = vec!["ping", "-c", "1", "-W", "1"];
    all.extend_from_slice(args);
    let out = ns.exec(&all);
    (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr))
}

/// IPv6 between networks, by the same `[[route]]` rules as IPv4: routed
/// with a route (containers on internal networks get a route to the other
/// prefix via the gateway's link-local address), refused without
/// (administratively prohibited); packet too big into a smaller MTU, which
/// the sender's kernel then keeps for the path; hop limit exceeded.
#[test]
fn ipv6_is_routed_between_networks_only_with_a_route() {
    let nets = "\n[[network]]\nname = \"wide6\"\nvni = 370\nsubnet = \"10.37.0.0/24\"\ninternal = true\n\
                mtu = 1400\nsubnet6 = \"fd00:37::/64\"\n\
                \n[[network]]\nname = \"narrow6\"\nvni = 380\nsubnet = \"10.38.0.0/24\"\ninternal = true\n\
                mtu = 1280\nsubnet6 = \"fd00:38::/64\"\n\
                \n[[network]]\nname = \"other6\"\nvni = 390\nsubnet = \"10.39.0.0/24\"\ninternal = true\n\
                subnet6 = \"fd00:39::/64\"\n\
                \n[[route]]\nnetworks = [\"wide6\", \"narrow6\"]\n";
    let sd = Switchd::start("", nets);
    let (w, addr_w) = dual_stack_container(&sd, "wide6", "w6", "fd00:37:");
    let (n, addr_n) = dual_stack_container(&sd, "narrow6", "n6", "fd00:38:");
    let (o, addr_o) = dual_stack_container(&sd, "other6", "o6", "fd00:39:");
    let routes = w.ok(&["ip", "-6", "route"]);
    assert!(routes.contains("fd00:38::/64 via fe80::"), "a route to narrow6 via the gateway: {routes}");
    assert!(!routes.contains("fd00:39::/64"), "none to other6: {routes}");

    assert!(w.ping(&addr_n, 2), "wide6 -> narrow6 over IPv6\n{}", sd.log());
    assert!(n.ping(&addr_w, 2), "narrow6 -> wide6 over IPv6");
    assert!(w.ping("fd00:38::1", 1), "narrow6's gateway, from wide6");

    // Too big for narrow6's 1280: packet too big with its MTU.
    let (ok, said) = ping_said(&w, &["-M", "do", "-s", "1300", &addr_n]);
    assert!(!ok && said.contains("Packet too big: mtu=1280"), "{said}");
    let cached = w.ok(&["ip", "-6", "route", "get", &addr_n]);
    assert!(cached.contains("mtu 1280"), "the path MTU, kept by the kernel: {cached}");
    let (ok, said) = ping_said(&w, &["-M", "do", "-s", "1232", &addr_n]);
    assert!(ok, "1280 bytes fit: {said}");
    // Hop limit 1: the gateway will not forward it.
    let (ok, said) = ping_said(&w, &["-t", "1", &addr_n]);
    assert!(!ok && said.contains("Time exceeded: Hop limit"), "{said}");

    // No route between wide6 and other6: refused even when the container
    // sends through the gateway anyway.
    let gateway_ll = w.ok(&["ip", "-6", "route", "show", "fd00:38::/64"]);
    let via = gateway_ll.split_whitespace().skip_while(|t| *t != "via").nth(1).expect("a via").to_owned();
    w.ok(&["ip", "-6", "route", "add", "fd00:39::/64", "via", &via, "dev", "eth0"]);
    let (ok, said) = ping_said(&w, &[&addr_o]);
    assert!(!ok && said.contains("Administratively prohibited"), "{said}");
    let drops = sd.port_stats(&w.name);
    assert!(drops["drops"]["route_denied"].as_u64() >= Some(1), "{drops}");
    // `trace` says the same for IPv6 packets, without sending them.
    let trace = |args: &[&str]| {
        let mut all = vec!["trace", "wide6", "--from", &w.name];
        all.extend_from_slice(args);
        sd.json(&all)
    };
    let step = |t: &serde_json::Value, what: &str| {
        let steps = t["steps"].as_array().expect("steps");
        steps.iter().find(|s| s["what"] == what).map(|s| s["detail"].as_str().unwrap().to_owned()).unwrap_or_default()
    };
    let routed = trace(&["--to", &addr_n]);
    assert_eq!(routed["delivered"], true, "{routed}");
    assert!(step(&routed, "neighbour").contains(&format!("gateway (for {addr_n}, outside the subnet)")), "{routed}");
    assert!(step(&routed, "route").contains("into network narrow6"), "{routed}");
    let by_name = trace(&["--to", &n.name, "--src-ip", &addr_w, "--proto", "tcp", "--dport", "443"]);
    assert!(step(&by_name, "route").contains("into network narrow6"), "a name, by its SLAAC address: {by_name}");
    let big = trace(&["--to", &addr_n, "--proto", "udp", "--size", "1400"]);
    assert_eq!(big["verdict"], "refused with an ICMP error: frag_needed", "{big}");
    let refused = trace(&["--to", &addr_o]);
    assert_eq!(refused["verdict"], "refused with an ICMP error: route_denied", "{refused}");
    let mixed = sd.try_ctl(&["trace", "wide6", "--from", &w.name, "--to", &addr_n, "--src-ip", "10.37.0.9"]);
    assert!(mixed.is_err_and(|e| e.contains("is not an IPv6 address")), "one family per trace");
    // A route added at run time: routed at once, the containers' routes set.
    sd.ctl(&["route", "add", "wide6", "other6"]);
    assert!(o.ok(&["ip", "-6", "route"]).contains("fd00:37::/64 via fe80::"), "other6's container got the route");
    assert!(w.ping(&addr_o, 2), "wide6 -> other6 with the route\n{}", sd.log());
    assert!(!sd.log().contains("panicked"));
}

/// Policy judges IPv6 as it judges IPv4: with `icc = false` containers do
/// not reach each other over IPv6 either (neighbour discovery still
/// works), and a policy that admits one admits its IPv6 too.
#[test]
fn policy_holds_for_ipv6_as_for_ipv4() {
    let quiet = "\n[[network]]\nname = \"quiet6\"\nvni = 395\nsubnet = \"10.95.0.0/24\"\ninternal = true\n\
                 icc = false\nsubnet6 = \"fd00:95::/64\"\n";
    let sd = Switchd::start("", quiet);
    let (a, addr_a) = dual_stack_container(&sd, "quiet6", "qa", "fd00:95:");
    let (b, addr_b) = dual_stack_container(&sd, "quiet6", "qb", "fd00:95:");
    assert!(a.ping("fd00:95::1", 1), "the gateway answers");
    assert!(!a.ping(&addr_b, 2), "a pinged b over IPv6 with icc off");
    let link_local_b = b.ok(&["ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link"]);
    let link_local_b =
        link_local_b.split_whitespace().nth(3).expect("an address").split('/').next().unwrap().to_owned();
    assert!(!a.ping(&format!("{link_local_b}%eth0"), 1), "nor by its link-local address");
    assert!(sd.port_stats(&a.name)["drops"]["policy_denied"].as_u64() >= Some(2), "{}", sd.port_stats(&a.name));
    // Neighbour discovery was never judged: a knows b's MAC.
    assert!(a.ok(&["ip", "-6", "neigh", "show", &addr_b]).contains("lladdr"), "{}", a.ok(&["ip", "-6", "neigh"]));

    let allow = ["policy", "add", "a-to-b", "--network", "quiet6", "--select"];
    let (select, from) = (format!("name={}", b.name), format!("name={}", a.name));
    sd.ctl(&[&allow[..], &[select.as_str(), "--from", from.as_str()]].concat());
    assert!(wait_until(Duration::from_secs(5), || a.ping(&addr_b, 1)), "the policy admits a's IPv6\n{}", sd.log());
    assert!(!b.ping(&addr_a, 1), "b -> a is still refused");
}

/// A container configured by ISC `dhclient -6` (no SLAAC: autoconf off):
/// the advertisement's managed flag sends it to the gateway's DHCPv6
/// server, which gives it the endpoint's address and the DNS server, and
/// it then talks over IPv6 with a container configured by SLAAC.
#[test]
fn dhclient_6_gets_the_endpoints_address_from_the_gateway() {
    let dual = "\n[[network]]\nname = \"dhcp6\"\nvni = 396\nsubnet = \"10.96.0.0/24\"\ninternal = true\n\
                subnet6 = \"fd00:96::/64\"\n";
    let sd = Switchd::start("", dual);
    let (slaac, addr_s) = dual_stack_container(&sd, "dhcp6", "d6s", "fd00:96:");
    let client = Netns::new("d6c");
    client.enable_ipv6();
    client.ok(&["sysctl", "-qw", "net.ipv6.conf.default.autoconf=0"]);
    sd.connect("dhcp6", &client, &[]);
    let expected = slaac_of(&client, "fd00:96:");
    // dhclient binds to the link-local address: past duplicate address detection.
    let ready = wait_until(Duration::from_secs(10), || {
        let shown = client.ok(&["ip", "-6", "addr", "show", "dev", "eth0", "scope", "link"]);
        shown.contains("fe80::") && !shown.contains("tentative")
    });
    assert!(ready, "no link-local address");
    let ra = client.ok(&["rdisc6", "-1", "-r", "3", "-w", "1000", "eth0"]);
    let managed = ra.lines().find(|l| l.starts_with("Stateful address conf."));
    assert!(managed.is_some_and(|l| l.trim_end().ends_with("Yes")), "the managed flag: {ra}");

    let dir = std::env::temp_dir().join(format!("{}-dhclient6", client.name));
    std::fs::create_dir_all(&dir).unwrap();
    let (out, script) = (dir.join("lease6"), dir.join("script6.sh"));
    let body = format!(
        "#!/bin/sh\ncase \"$reason\" in\n  BOUND6|RENEW6|REBIND6|REBOOT6)\n    \
         ip -6 addr add \"$new_ip6_address/64\" dev \"$interface\" nodad\n    \
         {{ echo \"ip=$new_ip6_address\"; echo \"dns=$new_dhcp6_name_servers\"; }} > \"{o}.tmp\" && mv \"{o}.tmp\" \"{o}\"\n    ;;\nesac\nexit 0\n",
        o = out.display()
    );
    std::fs::write(&script, body).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (leases, pid) = (dir.join("dhclient6.leases"), dir.join("dhclient6.pid"));
    let _dhclient = client.spawn(&[
        "dhclient",
        "-6",
        "-d",
        "-1",
        "-sf",
        script.to_str().unwrap(),
        "-lf",
        leases.to_str().unwrap(),
        "-pf",
        pid.to_str().unwrap(),
        "eth0",
    ]);
    assert!(wait_until(Duration::from_secs(20), || out.exists()), "dhclient -6 got no lease\n{}", sd.log());
    let lease = std::fs::read_to_string(&out).unwrap();
    assert!(lease.contains(&format!("ip={expected}\n")), "the endpoint's address: {lease}");
    assert!(lease.contains("dns=fd00:96::1"), "the gateway's DNS: {lease}");
    assert!(client.ping(&addr_s, 2), "the DHCPv6-configured container reaches the SLAAC one\n{}", sd.log());
    assert!(slaac.ping(&expected, 2), "and back");
    let aaaa = slaac.ok(&["dig", "+short", "+tries=1", "+time=2", "@fd00:96::1", "AAAA", &client.name]);
    assert_eq!(aaaa.trim(), expected, "its name answers the address DHCPv6 gave");
    let services = &sd.stats()["services"];
    assert!(services["dhcp6_replies"].as_u64() >= Some(2), "an advertise and a reply: {services}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A two-host cluster whose underlay is IPv6 only: gossip, plain VXLAN
/// and sealed VXLAN all travel over it, and the containers talk (ping,
/// bulk TCP) on a plain and an encrypted network.
#[test]
fn a_cluster_over_an_ipv6_underlay_carries_plain_and_sealed_networks() {
    let nets = "\n[[network]]\nname = \"plain\"\nvni = 410\nsubnet = \"10.41.0.0/24\"\ninternal = true\n\
                \n[[network]]\nname = \"sealed\"\nvni = 420\nsubnet = \"10.42.0.0/24\"\ninternal = true\nencrypted = true\n";
    let mut ul = Underlay::new_ipv6();
    let key = KeyFile::new("v6-underlay", 0x66);
    let ((h1, ip1), (h2, ip2)) = (ul.host("u6a"), ul.host("u6b"));
    let hosts = [gossip_member(h1, &ip1, &key, nets), gossip_member(h2, &ip2, &key, nets)];
    let joined = wait_until(Duration::from_secs(15), || {
        hosts[1].json(&["peers"]).as_array().is_some_and(|p| p.iter().any(|p| p["underlay_ip"] == ip1.as_str()))
    });
    assert!(joined, "no gossip over IPv6\n{}\n{}", hosts[0].log(), hosts[1].log());
    let (a, b, c, d) = (Netns::new("u6c1"), Netns::new("u6c2"), Netns::new("u6c3"), Netns::new("u6c4"));
    hosts[0].connect("plain", &a, &["--ip", "10.41.0.11"]);
    hosts[1].connect("plain", &b, &["--ip", "10.41.0.12"]);
    hosts[0].connect("sealed", &c, &["--ip", "10.42.0.11"]);
    hosts[1].connect("sealed", &d, &["--ip", "10.42.0.12"]);
    let reached = |from: &Netns, to: &str| wait_until(Duration::from_secs(10), || from.ping(to, 1));
    assert!(reached(&a, "10.41.0.12"), "plain VXLAN over IPv6\n{}\n{}", hosts[0].log(), hosts[1].log());
    assert!(reached(&c, "10.42.0.12"), "sealed VXLAN over IPv6\n{}\n{}", hosts[0].log(), hosts[1].log());
    // The MTU leaves room for the IPv6 underlay's 70 bytes (90 more sealed).
    let mtu = |ns: &Netns| ns.ok(&["cat", "/sys/class/net/eth0/mtu"]).trim().parse::<u32>().unwrap();
    eprintln!("MTU over a 1500-byte IPv6 underlay: plain {}, sealed {}", mtu(&a), mtu(&c));
    assert!(mtu(&a) <= 1430, "a plain network's MTU leaves the IPv6 VXLAN overhead: {}", mtu(&a));
    let full = a.exec(&["ping", "-M", "do", "-s", &(mtu(&a) - 28).to_string(), "-c", "1", "-W", "2", "10.41.0.12"]);
    assert!(full.status.success(), "a full-MTU packet crosses: {full:?}");
    let plain = a.iperf(&b, "10.41.0.12", 2);
    let sealed = c.iperf(&d, "10.42.0.12", 2);
    eprintln!("TCP over an IPv6 underlay: plain {plain:.2} Gbit/s, sealed {sealed:.2} Gbit/s");
    assert!(plain > 0.0 && sealed > 0.0);
    // The underlay, captured: IPv6 UDP to port 4789, sealed and plain.
    let file = hosts[0].dir.join("underlay6.pcap");
    let started = hosts[0].log().matches("capture of").count();
    let capture = std::process::Command::new(switchd_e2e::bin("switchctl"))
        .args(["--socket", hosts[0].socket().to_str().unwrap(), "capture", "--vtep", &ip2, "--count", "4"])
        .args(["-w", file.to_str().unwrap()])
        .spawn()
        .unwrap();
    let running = wait_until(Duration::from_secs(5), || hosts[0].log().matches("capture of").count() > started);
    assert!(running, "{}", hosts[0].log());
    assert!(a.ping("10.41.0.12", 1) && c.ping("10.42.0.12", 1));
    assert!(capture.wait_with_output().unwrap().status.success());
    let read = switchd_e2e::run("tcpdump", &["-r", file.to_str().unwrap(), "-nn"]);
    let text = String::from_utf8_lossy(&read.stdout);
    assert!(text.contains(&format!("IP6 {ip1}.")) && text.contains(&format!("> {ip2}.4789: VXLAN")), "{text}");
    assert!(text.contains("ICMP echo request"), "the plain network's ping inside: {text}");
}

/// An IPv6-only network (a subnet6 and no IPv4 subnet): containers
/// configure themselves by SLAAC, reach the gateway and each other, and
/// find each other by name over IPv6; the gateway is their default router.
#[test]
fn an_ipv6_only_network_needs_no_ipv4() {
    let sd = Switchd::start("", "\n[[network]]\nname = \"six\"\nvni = 396\nsubnet6 = \"fd00:96::/64\"\n");
    let (a, addr_a) = dual_stack_container(&sd, "six", "s6a", "fd00:96:");
    let (b, addr_b) = dual_stack_container(&sd, "six", "s6b", "fd00:96:");
    assert!(!a.ok(&["ip", "-4", "addr", "show", "dev", "eth0"]).contains("inet "), "no IPv4 address");
    let detail = sd.json(&["network", "inspect", "six"]);
    assert_eq!(detail["gateway6"], "fd00:96::1", "{detail}");
    let endpoints = detail["endpoints"].as_array().unwrap();
    assert!(endpoints.iter().any(|e| e["ip6"] == addr_b.as_str() && e["ip"].is_null()), "{detail}");
    let routes = a.ok(&["ip", "-6", "route"]);
    assert!(
        wait_until(Duration::from_secs(10), || a.ok(&["ip", "-6", "route"]).contains("default via fe80::")),
        "{routes}"
    );
    assert!(a.ping("fd00:96::1", 2), "the gateway\n{}", sd.log());
    assert!(a.ping(&addr_b, 2), "a -> b\n{}", sd.log());
    assert!(b.ping(&addr_a, 2), "b -> a");
    let aaaa = a.ok(&["dig", "+short", "+tries=1", "+time=2", "@fd00:96::1", "AAAA", &b.name]);
    assert_eq!(aaaa.trim(), addr_b, "AAAA of {} over IPv6", b.name);
    // `network create --ipv6` alone: the network's own /64, from its VNI (397 = 0x18d).
    sd.ctl(&["network", "create", "auto6", "--vni", "397", "--ipv6"]);
    let auto6 = sd.json(&["network", "inspect", "auto6"]);
    assert_eq!(
        (&auto6["subnet6"], &auto6["gateway6"]),
        (&serde_json::json!("fd5d:6700:18d::/64"), &serde_json::json!("fd5d:6700:18d::1")),
        "{auto6}"
    );
    let (_c, _) = dual_stack_container(&sd, "auto6", "s6c", "fd5d:6700:18d:");
    // The container's resolver is pointed at the gateway's IPv6 address.
    assert!(a.ok(&["cat", "/etc/resolv.conf"]).contains("nameserver fd00:96::1"), "resolv.conf");
    let by_default = a.ok(&["dig", "+short", "+tries=1", "+time=2", "AAAA", &b.name]);
    assert_eq!(by_default.trim(), addr_b, "AAAA through the container's own resolver");
    // DNS over TCP at the gateway's IPv6 address (the gateway's kernel stack).
    let over_tcp = a.ok(&["dig", "+tcp", "+short", "+tries=1", "+time=2", "@fd00:96::1", "AAAA", &b.name]);
    assert_eq!(over_tcp.trim(), addr_b, "AAAA over TCP on IPv6\n{}", sd.log());
    // A VIP service: a VIP6 alone, balanced, health-checked over IPv6.
    let w = Netns::new("s6w");
    w.enable_ipv6();
    let w6 = switchd_e2e::ip6_of(&sd.connect("six", &w, &["--service", "web"]));
    assert!(w.has_ipv6(&w6), "{} never configured {w6}", w.name);
    let server = w.spawn_py(switchd_e2e::py::NAMED_SERVER, &["80", "w"]);
    let listening = || !w.ok(&["ss", "-ltnH", "sport = :80"]).trim().is_empty();
    assert!(wait_until(Duration::from_secs(10), listening), "the server in {} never listened", w.name);
    let check = ["--health", "http:/", "--health-interval", "500", "--health-threshold", "1"];
    let created =
        sd.json(&[&["service", "create", "web", "--network", "six", "--port", "80/tcp"][..], &check].concat());
    assert!(created["vip"].is_null(), "no IPv4 VIP without a subnet: {created}");
    let vip6 = created["vip6"].as_str().expect("a VIP6").to_owned();
    let state = || sd.json(&["service", "inspect", "web"])["backends"][0]["state"].as_str().map(str::to_owned);
    assert!(
        wait_until(Duration::from_secs(10), || state().as_deref() == Some("healthy")),
        "{:?}\n{}",
        state(),
        sd.log()
    );
    let url = format!("http://[{vip6}]/");
    wait_until(Duration::from_secs(5), || a.py_exec(switchd_e2e::py::HTTP_GET, &[&url]).status.success());
    let got = a.py_exec(switchd_e2e::py::HTTP_GET, &[&url]);
    assert_eq!(
        String::from_utf8_lossy(&got.stdout),
        format!("w {addr_a}"),
        "through the VIP6: {got:?}\n{}\n{}",
        sd.json(&["service", "inspect", "web"]),
        sd.network_stats("six")
    );
    drop(server);
    assert!(wait_until(Duration::from_secs(10), || state().as_deref() == Some("unhealthy")), "{:?}", state());
    assert!(!sd.log().contains("panicked"));
}

/// Host access on a dual-stack network: the host side holds `gateway6`
/// too, and the host and a container reach each other over IPv6 (what
/// the gateway does not answer itself at that address is the host's).
#[test]
fn host_access_reaches_the_host_over_ipv6_too() {
    let net = "\n[[network]]\nname = \"front\"\nvni = 720\nsubnet = \"10.72.0.0/24\"\ninternal = true\n\
               host_access = true\nsubnet6 = \"fd00:72::/64\"\n";
    let host = Netns::new("host");
    host.enable_ipv6();
    let sd = Switchd::start_in(host, "", net);
    let shown = sd.host.ok(&["ip", "-6", "addr", "show", "dev", "sdg720"]);
    assert!(shown.contains("fd00:72::1/64"), "the host side holds gateway6:\n{shown}\n{}", sd.log());
    let (c, c6) = dual_stack_container(&sd, "front", "c", "fd00:72:");
    assert!(sd.host.ping(&c6, 2), "host -> container over IPv6\n{}", sd.log());
    let _server = sd.host.spawn_py(switchd_e2e::py::NAMED_SERVER, &["8000", "the-host"]);
    let answer = wait_until(Duration::from_secs(10), || {
        c.py_exec(switchd_e2e::py::HTTP_GET, &["http://[fd00:72::1]:8000/"]).status.success()
    });
    assert!(answer, "container -> host at gateway6\n{}", sd.log());
    let out = c.py_exec(switchd_e2e::py::HTTP_GET, &["http://[fd00:72::1]:8000/"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("the-host {c6}"), "from the container's own address");
    // What switchd serves at gateway6 stays switchd's: ping and DNS.
    assert!(c.ping("fd00:72::1", 1));
    let aaaa = c.ok(&["dig", "+short", "+tries=1", "+time=2", "@fd00:72::1", "AAAA", &c.name]);
    assert_eq!(aaaa.trim(), c6);
}
