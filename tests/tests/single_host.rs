//! One switchd host, containers in namespaces: switching, isolation,
//! run-time changes, aging, restarts and bad input.

use std::time::{Duration, Instant};

use switchd_e2e::{
    BROADCAST, FRONT_AND_BACK as TWO_NETWORKS, Netns, Switchd, bin, count, ether, ip_of, py, run, sparse, wait_until,
};

fn port(network: &str, ns: &Netns, extra: &str) -> String {
    format!("\n[[port]]\nnetwork = \"{network}\"\nnetns = \"{}\"\n{extra}\n", ns.name)
}

#[test]
fn two_containers_ping_and_pass_iperf3() {
    let c1 = Netns::new("c1");
    let c2 = Netns::new("c2");
    let body = format!(
        "{TWO_NETWORKS}{}{}",
        port("front", &c1, "ip = \"10.10.0.11\""),
        port("front", &c2, "ip = \"10.10.0.12\"")
    );
    let sd = Switchd::start("", &body);
    // The container side is what host.toml asked for.
    let addr = c1.ok(&["ip", "-br", "addr", "show", "eth0"]);
    assert!(addr.contains("10.10.0.11/24"), "{addr}");
    assert!(c1.ok(&["ip", "link", "show", "eth0"]).contains("mtu 1450"), "network MTU is underlay_mtu - 50");
    assert!(c1.ok(&["ip", "route", "show", "default"]).trim().is_empty(), "internal networks get no default route");

    assert!(c1.ping("10.10.0.12", 3), "c1 -> c2 ping\n{}", sd.log());
    let gbits = c1.iperf(&c2, "10.10.0.12", 3);
    assert!(gbits > 0.0, "iperf3 moved no data");
    eprintln!("iperf3 c1 -> c2 through switchd: {gbits:.2} Gbit/s");

    // The 64 KiB segments crossed whole: far fewer frames than MTU-sized packets.
    let rx = sd.port_stats(&c1.name);
    let (frames, bytes) = (count(&rx, "rx_frames"), count(&rx, "rx_bytes"));
    assert!(bytes / frames > 5000, "average frame {} bytes: TSO segments are not passed through", bytes / frames);
}

/// Two networks with the same subnet on one switch: nothing crosses at L2.
#[test]
fn networks_are_isolated() {
    const SAME_SUBNET: &str = r#"
[[network]]
name = "a"
vni = 10
subnet = "10.50.0.0/24"
internal = true

[[network]]
name = "b"
vni = 11
subnet = "10.50.0.0/24"
internal = true
"#;
    let (c1, c2, c3) = (Netns::new("c1"), Netns::new("c2"), Netns::new("c3"));
    let body = format!(
        "{SAME_SUBNET}{}{}{}",
        port("a", &c1, "ip = \"10.50.0.11\""),
        port("a", &c2, "ip = \"10.50.0.12\""),
        port("b", &c3, "ip = \"10.50.0.13\"")
    );
    let sd = Switchd::start("", &body);
    assert!(c1.ping("10.50.0.12", 2), "same network works");
    let written = |ns: &Netns| count(&sd.port_stats(&ns.name), "tx_frames");
    let (c2_before, c3_before) = (written(&c2), written(&c3));
    assert!(!c3.ping("10.50.0.11", 2), "c3 on network b reached c1 on network a");
    assert!(!c1.ping("10.50.0.13", 2), "c1 on network a reached c3 on network b");
    // c1's ARP broadcasts for 10.50.0.13 were flooded on network a (c2 got
    // them), and never reached c3's port.
    assert!(written(&c2) > c2_before, "c1's ARP broadcasts were not flooded at all: nothing was tested");
    assert_eq!(written(&c3), c3_before, "frames crossed into network b");
    let neigh = c3.ok(&["ip", "neigh", "show", "10.50.0.11"]);
    assert!(!neigh.contains("lladdr"), "c3 resolved c1's MAC across networks: {neigh}");
}

#[test]
fn connect_and_disconnect_at_run_time() {
    let sd = Switchd::start("", "");
    let (c1, c2) = (Netns::new("c1"), Netns::new("c2"));
    sd.ctl(&["network", "create", "rt", "--vni", "42", "--subnet", "10.42.0.0/24", "--internal"]);
    let e1 = sd.connect("rt", &c1, &[]);
    let e2 = sd.connect("rt", &c2, &["--name", "second"]);
    assert_eq!(e1["ip"], "10.42.0.2", "IPAM gives the first free address after the gateway");
    assert_eq!(e2["ip"], "10.42.0.3");
    assert_eq!(e2["name"], "second");
    assert_eq!(e1["mac"], "02:42:0a:2a:00:02", "MAC derived from the IP");
    assert!(c1.ping(&ip_of(&e2), 2));

    let inspect = sd.json(&["network", "inspect", "rt"]);
    let names: Vec<&str> =
        inspect["endpoints"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec![c1.name.as_str(), "second"]);
    let ls = sd.json(&["network", "ls"]);
    assert_eq!(ls[0]["name"], "rt");
    assert_eq!(ls[0]["ports"], 2);

    // Removal is refused while endpoints are attached, naming them.
    let err = sd.try_ctl(&["network", "rm", "rt"]).unwrap_err();
    assert!(err.contains("has endpoints attached") && err.contains("second"), "{err}");

    sd.ctl(&["network", "disconnect", "rt", "second"]);
    assert!(!c2.has_link("eth0"), "the interface is gone from the container");
    assert!(!c1.ping(&ip_of(&e2), 1));

    // Reconnect by netns, then disconnect by netns.
    let again = sd.connect("rt", &c2, &[]);
    assert_eq!(again["ip"], "10.42.0.3", "the address returned to the pool");
    assert!(c1.ping(&ip_of(&again), 2));
    sd.ctl(&["network", "disconnect", "rt", &c2.name]);
    sd.ctl(&["network", "disconnect", "rt", &c1.name]);
    assert_eq!(sd.ctl(&["network", "prune"]).trim(), "rt");
    assert_eq!(sd.json(&["network", "ls"]), serde_json::json!([]));
}

#[test]
fn one_container_on_two_networks() {
    let (multi, f, b) = (Netns::new("multi"), Netns::new("f"), Netns::new("b"));
    let body = format!(
        "{TWO_NETWORKS}{}{}{}{}",
        port("front", &multi, "ip = \"10.10.0.5\""),
        port("back", &multi, "ip = \"10.20.0.5\""),
        port("front", &f, "ip = \"10.10.0.6\""),
        port("back", &b, "ip = \"10.20.0.6\"")
    );
    let sd = Switchd::start("", &body);
    assert!(multi.has_link("eth0") && multi.has_link("eth1"), "second network gets eth1");
    assert!(multi.ping("10.10.0.6", 2), "multi reaches front");
    assert!(multi.ping("10.20.0.6", 2), "multi reaches back");
    assert!(f.ping("10.10.0.5", 1) && b.ping("10.20.0.5", 1));
    let inspect = sd.json(&["network", "inspect", "back"]);
    let multi_ep =
        inspect["endpoints"].as_array().unwrap().iter().find(|e| e["name"] == multi.name.as_str()).unwrap().clone();
    assert_eq!(multi_ep["ifname"], "eth1");
}

#[test]
fn fdb_shows_learned_macs_on_their_ports_and_they_age_out() {
    let (c1, c2) = (Netns::new("c1"), Netns::new("c2"));
    let body = format!("{TWO_NETWORKS}{}{}", port("front", &c1, ""), port("front", &c2, ""));
    let sd = Switchd::start("mac_aging_time = 2", &body);
    let ip = |ns: &Netns| {
        let detail = sd.json(&["network", "inspect", "front"]);
        ip_of(detail["endpoints"].as_array().unwrap().iter().find(|e| e["name"] == ns.name.as_str()).unwrap())
    };
    assert!(c1.ping(&ip(&c2), 2));

    let fdb = sd.json(&["fdb", "front"]);
    let entry = |mac: &str| fdb.as_array().unwrap().iter().find(|e| e["mac"] == mac).cloned();
    let e1 = entry(&c1.mac("eth0")).unwrap_or_else(|| panic!("c1's MAC not learned: {fdb}"));
    let e2 = entry(&c2.mac("eth0")).unwrap_or_else(|| panic!("c2's MAC not learned: {fdb}"));
    assert_eq!(e1["where"], format!("{}:eth0", c1.name));
    assert_eq!(e2["where"], format!("{}:eth0", c2.name));
    assert_eq!(e1["type"], "learned");
    assert_eq!(e1["network"], "front");

    let aged = wait_until(Duration::from_secs(8), || sd.json(&["fdb", "front"]).as_array().unwrap().is_empty());
    assert!(aged, "entries did not age out: {}", sd.json(&["fdb"]));
    // And traffic relearns them.
    assert!(c2.ping(&ip(&c1), 1));
    assert_eq!(sd.json(&["fdb", "front"]).as_array().unwrap().len(), 2);

    // A page at a time: a row, and on stderr how to ask for the next page.
    let page = |args: &[&str]| {
        let out = std::process::Command::new(bin("switchctl"))
            .arg("--socket")
            .arg(sd.socket())
            .args(args)
            .args(["--limit", "1"])
            .output()
            .expect("run switchctl");
        assert!(out.status.success(), "{out:?}");
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let mut macs = [c1.mac("eth0"), c2.mac("eth0")];
    macs.sort();
    let (first, hint) = page(&["fdb", "front"]);
    assert!(first.contains(&macs[0]) && !first.contains(&macs[1]), "{first}");
    let after = format!("front/{}", macs[0]);
    assert!(hint.contains(&format!("--after {after}")), "{hint}");
    let (second, hint) = page(&["fdb", "front", "--after", &after]);
    assert!(second.contains(&macs[1]) && !second.contains(&macs[0]), "{second}");
    assert!(hint.is_empty(), "the last page says no more: {hint}");
    // The same for endpoints, by host and then name.
    let mut names = [c1.name.as_str(), c2.name.as_str()];
    names.sort();
    let (first, hint) = page(&["network", "inspect", "front"]);
    assert!(first.contains(names[0]) && !first.contains(names[1]), "{first}");
    let after = format!("{}@{}", names[0], sd.host.name);
    assert!(hint.contains(&format!("--after {after}")), "{hint}");
    let (second, hint) = page(&["network", "inspect", "front", "--after", &after]);
    assert!(second.contains(names[1]) && !second.contains(names[0]), "{second}");
    assert!(hint.is_empty(), "the last page says no more: {hint}");
}

#[test]
fn restart_after_kill9_keeps_connectivity() {
    let (c1, c2) = (Netns::new("c1"), Netns::new("c2"));
    let mut sd = Switchd::start("", TWO_NETWORKS);
    let e2 = sd.connect("front", &c2, &[]);
    sd.connect("front", &c1, &[]);
    // A network made at run time must come back too.
    sd.ctl(&["network", "create", "later", "--vni", "7", "--internal"]);
    assert!(c1.ping(&ip_of(&e2), 2));

    sd.kill9();
    assert!(c1.has_link("eth0") && c2.has_link("eth0"), "interfaces outlive the daemon");
    assert!(!c1.ping(&ip_of(&e2), 1), "nothing switches while switchd is down");

    let restarted = Instant::now();
    sd.launch();
    let resumed =
        wait_until(Duration::from_secs(5), || c1.exec(&["ping", "-c", "1", "-W", "0.3", &ip_of(&e2)]).status.success());
    let took = restarted.elapsed();
    assert!(resumed, "traffic did not resume after restart:\n{}", sd.log());
    assert!(took < Duration::from_secs(2), "traffic took {took:?} to resume after restart");
    eprintln!("traffic resumed {took:?} after restart");
    let addr = c1.ok(&["ip", "-br", "addr", "show", "eth0"]);
    assert!(addr.contains("10.10.0."), "address kept: {addr}");
    let names: Vec<String> = sd
        .json(&["network", "ls"])
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, vec!["back", "front", "later"]);
    assert_eq!(sd.json(&["network", "inspect", "front"])["endpoints"].as_array().unwrap().len(), 2);
}

#[test]
fn sigterm_stops_cleanly_and_a_restart_resumes() {
    let (c1, c2) = (Netns::new("c1"), Netns::new("c2"));
    let body = format!(
        "{TWO_NETWORKS}{}{}",
        port("front", &c1, "ip = \"10.10.0.31\""),
        port("front", &c2, "ip = \"10.10.0.32\"")
    );
    let mut sd = Switchd::start("", &body);
    assert!(c1.ping("10.10.0.32", 1));
    let status = sd.terminate();
    assert!(status.success(), "switchd exited with {status} on SIGTERM");
    assert!(!sd.socket().exists(), "control socket removed");
    sd.launch();
    assert!(c1.ping("10.10.0.32", 2), "after restart");
    assert_eq!(
        sd.json(&["network", "inspect", "front"])["endpoints"].as_array().unwrap().len(),
        2,
        "no duplicate ports after restart"
    );
}

#[test]
fn veth_ports_switch_with_tap_ports() {
    let (tap, veth) = (Netns::new("tap"), Netns::new("veth"));
    let sd = Switchd::start("", TWO_NETWORKS);
    let t = sd.connect("front", &tap, &[]);
    let v = sd.connect("front", &veth, &["--kind", "veth"]);
    assert_eq!(v["kind"], "veth");
    let host_if = v["host_ifname"].as_str().unwrap().to_owned();
    assert!(sd.host.has_link(&host_if), "host end {host_if} in switchd's namespace");
    assert!(tap.ping(&ip_of(&v), 2), "tap -> veth");
    let gbits = veth.iperf(&tap, &ip_of(&t), 2);
    assert!(gbits > 0.0);
    eprintln!("iperf3 veth -> tap: {gbits:.2} Gbit/s");
    sd.ctl(&["network", "disconnect", "front", &veth.name]);
    assert!(!sd.host.has_link(&host_if), "the veth pair switchd made is removed");
    assert!(!veth.has_link("eth0"));
}

#[test]
fn script_attach_does_what_connect_does() {
    let (c1, by_tap, by_veth) = (Netns::new("c1"), Netns::new("st"), Netns::new("sv"));
    let sd = Switchd::start("", TWO_NETWORKS);
    let e1 = sd.connect("front", &c1, &[]);
    let path =
        format!("{}:{}", bin("switchctl").parent().unwrap().display(), std::env::var("PATH").unwrap_or_default());
    for (ns, kind) in [(&by_tap, "tap"), (&by_veth, "veth")] {
        let script = sd.ctl(&["script", "attach", "front", &ns.name, "--kind", kind]);
        assert!(script.starts_with("#!/bin/sh"), "{script}");
        // The script runs where switchd runs: in its host namespace.
        sd.host.ok(&["env", &format!("PATH={path}"), "sh", "-c", &script]);
        assert!(ns.ping(&ip_of(&e1), 2), "{kind} port attached by script cannot reach c1\n{script}");
    }
    let eps = sd.json(&["network", "inspect", "front"])["endpoints"].clone();
    assert_eq!(eps.as_array().unwrap().len(), 3);
    assert_eq!(eps[2]["kind"], "veth");
}

#[test]
fn bad_frames_are_counted_and_dropped() {
    let (c1, c2) = (Netns::new("c1"), Netns::new("c2"));
    let body = format!(
        "{TWO_NETWORKS}{}{}",
        port("front", &c1, "ip = \"10.10.0.41\""),
        port("front", &c2, "ip = \"10.10.0.42\"")
    );
    let sd = Switchd::start("mac_limit = 100", &body);
    assert!(c1.ping("10.10.0.42", 1));

    // Frames larger than the network MTU.
    c1.ok(&["ip", "link", "set", "eth0", "mtu", "9000"]);
    assert!(
        !c1.exec(&["ping", "-c", "2", "-i", "0.2", "-W", "1", "-s", "3000", "-M", "do", "10.10.0.42"]).status.success()
    );
    c1.ok(&["ip", "link", "set", "eth0", "mtu", "1450"]);

    // Multicast and all-zero source MACs.
    c1.inject(&[[1, 2, 3, 4, 5, 6], [0; 6]].map(|src| ether(BROADCAST, src, 0x0800, &[0; 46])));

    // A MAC flood from a container: 1000 random source MACs (an
    // experimental EtherType: no IPv4 inside for the address guard to
    // refuse first). A container may only use its own MAC: none is learned.
    // Every frame that reached switchd is refused; those the kernel dropped
    // because the TAP's queue was full never reached it.
    let dropped_before = c1.tx_dropped("eth0");
    c1.inject_script(py::MAC_FLOOD, &["1000"]);
    let reached = 1000 - (c1.tx_dropped("eth0") - dropped_before);
    let ok = wait_until(Duration::from_secs(3), || {
        sparse(&sd.port_stats(&c1.name)["drops"], "spoofed_mac").is_some_and(|n| n >= reached)
    });
    let drops = sd.port_stats(&c1.name)["drops"].clone();
    assert!(ok, "MAC flood not refused: {reached} of 1000 frames reached switchd, drops {drops}");
    assert!(reached >= 500, "the TAP's queue dropped most of the flood: {reached} reached switchd");
    assert!(count(&drops, "oversize") >= 2, "{drops}");
    assert_eq!(count(&drops, "bad_src_mac"), 2, "{drops}");
    let learned_on = |name: &str| {
        sd.json(&["fdb", "front"]).as_array().expect("fdb rows").iter().filter(|e| e["where"] == name).count()
    };
    assert_eq!(learned_on(&format!("{}:eth0", c1.name)), 1, "only c1's own MAC");

    // The same flood from a LAN behind an uplink, where other MACs are
    // fine: the port learns exactly its limit.
    let lan = Netns::new("lan");
    sd.host.ok(&["ip", "link", "add", "upl0", "type", "veth", "peer", "name", "eth0", "netns", &lan.name]);
    lan.ok(&["ip", "link", "set", "eth0", "up"]);
    sd.ctl(&["network", "connect", "front", "--kind", "uplink", "--host-ifname", "upl0"]);
    lan.inject_script(py::MAC_FLOOD, &["1000"]);
    let ok = wait_until(Duration::from_secs(3), || {
        sparse(&sd.port_stats("upl0")["drops"], "mac_limit").is_some_and(|n| n >= 800)
    });
    assert!(ok, "MAC flood not limited: {}", sd.port_stats("upl0"));
    assert_eq!(learned_on("upl0"), 100, "the port learned exactly its limit");

    // The daemon is fine and the known MACs still switch.
    assert!(c2.ping("10.10.0.41", 2), "switching broke after bad input:\n{}", sd.log());
    sd.ctl(&["status"]);
}

#[test]
fn bad_requests_get_clear_errors() {
    let c1 = Netns::new("c1");
    let sd = Switchd::start("", TWO_NETWORKS);
    let err = sd.try_ctl(&["network", "connect", "front", "sdt-no-such-netns"]).unwrap_err();
    assert_eq!(err, "error: network namespace \"sdt-no-such-netns\" does not exist");
    let err = sd.try_ctl(&["network", "connect", "nonet", &c1.name]).unwrap_err();
    assert_eq!(err, "error: network: no network named \"nonet\"");
    sd.connect("front", &c1, &[]);
    let err = sd.try_ctl(&["network", "connect", "front", &c1.name]).unwrap_err();
    assert!(err.contains("is already connected to network \"front\" (as eth0)"), "{err}");
    // The failed attempts lost nothing.
    assert_eq!(sd.json(&["network", "inspect", "front"])["endpoints"].as_array().unwrap().len(), 1);
    assert!(c1.has_link("eth0") && !c1.has_link("eth1"));

    let err = sd
        .try_ctl(&["network", "connect", "front", &c1.name, "--ip", "10.99.0.1", "--mac", "01:00:00:00:00:01"])
        .unwrap_err();
    assert!(err.contains("ip: 10.99.0.1 is not a usable address in subnet 10.10.0.0/24"), "{err}");
    assert!(err.contains("mac: 01:00:00:00:00:01 is not a unicast address"), "{err}");
    let err = sd.try_ctl(&["network", "create", "front", "--vni", "5"]).unwrap_err();
    assert_eq!(err, "error: network \"front\" already exists");
    let err = sd.try_ctl(&["network", "create", "x", "--vni", "100"]).unwrap_err();
    assert_eq!(err, "error: vni 100 is already used by network \"front\"");
    let err = sd.try_ctl(&["network", "create", "y", "--vni", "0", "--mtu", "20"]).unwrap_err();
    assert_eq!(err, "error: vni: 0 is out of range 1..=16777215; mtu: 20 is out of range 68..=65535");
    let err = sd.try_ctl(&["network", "rm", "front"]).unwrap_err();
    assert_eq!(err, "error: network \"front\" is defined in host.toml; remove it there");
    let err = sd.try_ctl(&["network", "disconnect", "back", "ghost"]).unwrap_err();
    assert_eq!(err, "error: no endpoint \"ghost\" on network \"back\"");
}

#[test]
fn bad_config_is_rejected_with_file_line_and_key() {
    let dir = std::env::temp_dir().join(format!("sdt-badconf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("host.toml");
    std::fs::write(&file, "[host]\nname = \"h\"\n\n[[network]]\nname = \"n\"\nvni = 0\nmtu = 70000\nsubnet = \"10.0.0.0/24\"\ngateway = \"10.1.0.1\"\n").unwrap();
    let f = file.to_str().unwrap();
    for args in [vec!["--check", "--config", f], vec!["--config", f]] {
        let out = run(bin("switchd").to_str().unwrap(), &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let expected = format!(
            "{f}:6:7: network[0].vni: 0 is out of range 1..=16777215\n\
             {f}:7:7: network[0].mtu: 70000 is out of range 68..=65535\n\
             {f}:9:11: network[0].gateway: 10.1.0.1 is not a usable address in subnet 10.0.0.0/24\n"
        );
        assert_eq!(stderr, expected);
    }
    let out = run(bin("switchd").to_str().unwrap(), &["--check", "--config", "/nonexistent/host.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/host.toml: cannot read"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_container_that_goes_away_is_detached() {
    let (c1, c2) = (Netns::new("c1"), Netns::new("c2"));
    let sd = Switchd::start("", "");
    sd.ctl(&["network", "create", "tmp", "--vni", "9", "--subnet", "10.9.0.0/24", "--internal"]);
    sd.connect("tmp", &c1, &[]);
    sd.connect("tmp", &c2, &["--kind", "veth"]);
    drop(c2); // the container stops: its namespace is deleted, the veth pair with it
    let endpoints = || sd.json(&["network", "inspect", "tmp"])["endpoints"].as_array().unwrap().len();
    assert!(wait_until(Duration::from_secs(6), || endpoints() == 1), "the gone container stayed attached");
    drop(c1);
    assert!(wait_until(Duration::from_secs(6), || endpoints() == 0));
    sd.ctl(&["network", "rm", "tmp"]);
}

/// An uplink bridges a network onto a "physical" LAN: here a veth whose far
/// end is in a namespace standing in for a machine on that LAN.
#[test]
fn uplink_bridges_a_network_onto_a_lan() {
    let (c1, lan) = (Netns::new("c1"), Netns::new("lan"));
    let sd = Switchd::start("", TWO_NETWORKS);
    sd.host.ok(&["ip", "link", "add", "upl0", "type", "veth", "peer", "name", "eth0", "netns", &lan.name]);
    lan.ok(&["ip", "addr", "add", "10.10.0.200/24", "dev", "eth0"]);
    lan.ok(&["ip", "link", "set", "eth0", "up"]);
    let up = sd.json(&["network", "connect", "front", "--kind", "uplink", "--host-ifname", "upl0"]);
    assert_eq!(up["kind"], "uplink");
    assert_eq!(up["name"], "upl0");
    assert_eq!(up.get("ip"), Some(&serde_json::Value::Null), "an uplink gets no address: {up}");
    sd.connect("front", &c1, &[]);
    assert!(c1.ping("10.10.0.200", 2), "container -> LAN host through the uplink");
    let lan_mac = lan.mac("eth0");
    let fdb = sd.json(&["fdb", "front"]);
    assert!(fdb.as_array().unwrap().iter().any(|e| e["mac"] == lan_mac.as_str() && e["where"] == "upl0"), "{fdb}");
    // Disconnecting an uplink leaves the host's interface alone.
    sd.ctl(&["network", "disconnect", "front", "upl0"]);
    assert!(sd.host.has_link("upl0"));
    assert!(!c1.ping("10.10.0.200", 1));
}

/// State files switchd cannot use are refused or reported, never silently
/// rewritten: a state of a newer version stops the start and stays as it
/// was; a garbage session file is reported; an endpoint whose network is
/// gone is set aside in state.json.orphans, and the log says so.
#[test]
fn unusable_state_is_refused_or_set_aside_with_a_message() {
    let c1 = Netns::new("c1");
    let mut sd = Switchd::start("", &format!("{TWO_NETWORKS}{}", port("front", &c1, "")));
    sd.ctl(&["network", "create", "later", "--vni", "7", "--subnet", "10.70.0.0/24", "--internal"]);
    let c2 = Netns::new("c2");
    sd.connect("later", &c2, &["--name", "c2"]);
    sd.kill9();
    let state_dir = sd.dir.join("state");
    let state_file = state_dir.join("state.json");
    let good = std::fs::read_to_string(&state_file).expect("state.json");

    // A newer version: switchd refuses to start and leaves the file alone.
    let mut newer: serde_json::Value = serde_json::from_str(&good).expect("JSON");
    newer["version"] = 999.into();
    let newer = newer.to_string();
    std::fs::write(&state_file, &newer).unwrap();
    let out = run(
        "nsenter",
        &[
            &format!("--net=/run/netns/{}", sd.host.name),
            bin("switchd").to_str().unwrap(),
            "--config",
            sd.config_path().to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "switchd started on a newer state");
    assert!(stderr.contains("newer switchd") && stderr.contains("999"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&state_file).unwrap(), newer, "the file was rewritten");

    // The network `later` removed from the state by hand: c2 has none.
    let mut orphaned: serde_json::Value = serde_json::from_str(&good).unwrap();
    orphaned["networks"] = serde_json::json!([]);
    std::fs::write(&state_file, orphaned.to_string()).unwrap();
    // And a session file that is not one.
    std::fs::write(state_dir.join("session"), "garbage\n").unwrap();
    sd.launch();
    let log = sd.log();
    assert!(log.contains("\"garbage\" is not a session id"), "{log}");
    assert!(log.contains("network later no longer exists; endpoint set aside, kept in"), "{log}");
    let kept: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state_dir.join("state.json.orphans")).expect("orphans file"))
            .expect("JSON");
    assert_eq!(kept[0]["endpoint"]["name"], "c2", "{kept}");
    assert!(c1.has_link("eth0"), "the endpoint on a network that exists is back");
}
