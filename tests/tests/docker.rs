//! switchd as Docker's network driver, with a real dockerd (Debian's
//! docker.io 20.10) in host a's namespace and a plain switchd on host b:
//! `docker network create -d`, `docker run --network`, names through
//! Docker's resolver forwarding to switchd's, `docker network disconnect`,
//! and `docker network rm` refused while containers are attached.

use std::time::Duration;

use switchd_e2e::{Dockerd, KeyFile, Netns, Underlay, gossip_member, ip_of, ip6_of, py, wait_until};

#[test]
fn docker_containers_on_a_switchd_network_reach_another_host() {
    let mut ul = Underlay::new();
    let key = KeyFile::new("docker", 0x42);
    let ((ha, ipa), (hb, ipb)) = (ul.host("ha"), ul.host("hb"));
    let driver = format!("sdt-{}-driver", std::process::id());
    let socket = format!("/run/docker/plugins/{driver}.sock");
    let docker = Dockerd::start(&ha);
    let api = docker.dir.join("docker.sock");
    let mut a = gossip_member(
        ha,
        &ipa,
        &key,
        &format!("\n[docker]\nsocket = \"{socket}\"\napi_socket = \"{}\"\n", api.display()),
    );
    let b = gossip_member(hb, &ipb, &key, "");
    // switchd removes its socket when stopped; the harness kills it.
    struct RemoveOnDrop(String);
    impl Drop for RemoveOnDrop {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _socket = RemoveOnDrop(socket.clone());

    let created = docker.exec(&[
        "network",
        "create",
        "-d",
        &driver,
        "--ipam-driver",
        &driver,
        "--subnet",
        "10.95.0.0/24",
        "-o",
        "name=front",
        "-o",
        "vni=950",
        "-o",
        "internal",
        "front",
    ]);
    assert!(created.status.success(), "{}\n{}", String::from_utf8_lossy(&created.stderr), a.log());
    assert!(wait_until(Duration::from_secs(10), || b.ctl(&["network", "ls"]).contains("front")), "b adopts it");

    // c2 on b first: with switchd's IPAM (--ipam-driver), the Docker
    // container's address comes from a block host a owns, never c2's.
    let c2 = Netns::new("c2");
    let c2_ip = ip_of(&b.connect("front", &c2, &["--name", "c2"]));
    docker.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "front",
        "--network-alias",
        "www",
        "--dns",
        "10.95.0.1",
        Dockerd::IMAGE,
        "sleep",
        "600",
    ]);
    let seen = wait_until(Duration::from_secs(10), || {
        a.json(&["network", "inspect", "front"])["endpoints"].as_array().unwrap().iter().any(|e| e["name"] == "c2")
    });
    assert!(seen, "c2 known on a");

    // The container reaches the other host's container, by address and by
    // name (Docker's resolver forwards what it does not know to --dns: switchd).
    let ping = docker.exec(&["exec", "web", "ping", "-c", "2", "-W", "2", &c2_ip]);
    assert!(ping.status.success(), "web -> c2: {}\n{}", String::from_utf8_lossy(&ping.stdout), a.log());
    let lookup = docker.ok(&["exec", "web", "nslookup", "c2"]);
    assert!(lookup.contains(&c2_ip), "{lookup}");
    docker.ok(&["exec", "web", "ping", "-c", "1", "-W", "2", "c2"]);
    let web_ip = docker.ok(&["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", "web"]);
    assert_ne!(web_ip.trim(), c2_ip, "switchd's IPAM gave web an address of a's own block");
    assert!(c2.ping(web_ip.trim(), 2), "c2 -> web");
    // switchd learns the container's name from dockerd: c2, on the other
    // host, finds web by name through switchd's DNS.
    let named = wait_until(Duration::from_secs(10), || {
        c2.exec(&["dig", "+short", "+tries=1", "+time=1", "web"]).stdout == format!("{}\n", web_ip.trim()).into_bytes()
    });
    assert!(named, "web by name from c2\n{}", a.ctl(&["network", "inspect", "front"]));
    assert!(c2.ok(&["ping", "-c", "1", "-W", "2", "web"]).contains(web_ip.trim()), "c2 pings web by name");
    // Its --network-alias makes it a backend of service www, cluster-wide.
    let aliased = wait_until(Duration::from_secs(10), || {
        c2.exec(&["dig", "+short", "+tries=1", "+time=1", "tasks.www"]).stdout
            == format!("{}\n", web_ip.trim()).into_bytes()
    });
    assert!(aliased, "tasks.www from c2\n{}", a.ctl(&["service", "ls"]));

    // A restart of switchd reopens the container's interface where dockerd
    // put it: web is reachable again, under its name.
    a.terminate();
    a.launch();
    assert!(wait_until(Duration::from_secs(10), || c2.ping(web_ip.trim(), 1)), "web after a restart\n{}", a.log());
    let names: Vec<String> = a.json(&["network", "inspect", "front"])["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(names.contains(&"web".to_owned()), "{names:?}");

    // An encrypted network through Docker: -o encrypted; a capture of host
    // a's underlay while c3 (on b) pings the Docker container with a
    // marker shows only sealed packets on its VNI, and no marker.
    docker.ok(&[
        "network",
        "create",
        "-d",
        &driver,
        "--subnet",
        "10.98.0.0/24",
        "-o",
        "name=vault",
        "-o",
        "vni=980",
        "-o",
        "encrypted",
        "-o",
        "internal",
        "vault",
    ]);
    assert!(a.json(&["network", "inspect", "vault"])["encrypted"].as_bool().unwrap());
    docker.ok(&["run", "-d", "--name", "sweb", "--network", "vault", Dockerd::IMAGE, "sleep", "600"]);
    let sweb_ip = docker.ok(&["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", "sweb"]);
    let sweb_ip = sweb_ip.trim();
    assert!(wait_until(Duration::from_secs(10), || b.ctl(&["network", "ls"]).contains("vault")));
    let c3 = Netns::new("c3");
    b.connect("vault", &c3, &["--name", "c3"]);
    let pcap = a.dir.join("vault.pcap");
    let pcap_path = pcap.to_str().unwrap();
    let tcpdump =
        a.host.spawn(&["tcpdump", "-i", "u0", "--immediate-mode", "-U", "-w", pcap_path, "udp", "port", "4789"]);
    assert!(wait_until(Duration::from_secs(5), || std::fs::metadata(&pcap).is_ok_and(|m| m.len() >= 24)));
    std::thread::sleep(Duration::from_millis(300));
    let marker = "DOCKER-VAULT-MARKER!";
    let hex: String = marker.bytes().take(16).map(|b| format!("{b:02x}")).collect();
    assert!(wait_until(Duration::from_secs(10), || c3.ping(sweb_ip, 1)), "c3 -> sweb over the encrypted network");
    assert!(c3.ping_pattern(sweb_ip, &hex), "marked pings both ways");
    std::thread::sleep(Duration::from_millis(300));
    drop(tcpdump);
    let bytes = std::fs::read(&pcap).unwrap();
    assert!(!bytes.windows(12).any(|w| w == &marker.as_bytes()[..12]), "the marker crossed the underlay in the clear");
    // VXLAN flags byte: 0x48 sealed, 0x08 plain; VNI 980 = 00 03 d4.
    let sealed = bytes.windows(8).filter(|w| w[0] == 0x48 && w[4..7] == [0x00, 0x03, 0xd4]).count();
    let plain =
        bytes.windows(8).filter(|w| w[0] == 0x08 && w[1..4] == [0, 0, 0] && w[4..7] == [0x00, 0x03, 0xd4]).count();
    assert!(sealed >= 6 && plain == 0, "{sealed} sealed, {plain} plain packets on VNI 980");
    docker.ok(&["rm", "-f", "sweb"]);
    b.ctl(&["network", "disconnect", "vault", "c3"]);

    // Dual stack through the driver and switchd's IPAM: `--ipv6` with an
    // IPv6 /64 gives the container the SLAAC address of the MAC switchd
    // picks, and the gateway's IPv6 address as its default route; it talks
    // over IPv6 with c4 on host b (configured by SLAAC), by address and by
    // name (AAAA from switchd's DNS).
    docker.ok(&[
        "network",
        "create",
        "-d",
        &driver,
        "--ipam-driver",
        &driver,
        "--ipv6",
        "--subnet",
        "10.97.0.0/24",
        "--subnet",
        "fd00:97::/64",
        "-o",
        "name=dual",
        "-o",
        "vni=970",
        "dual",
    ]);
    let dual = a.json(&["network", "inspect", "dual"]);
    assert_eq!(
        (&dual["subnet6"], &dual["gateway6"]),
        (&serde_json::json!("fd00:97::/64"), &serde_json::json!("fd00:97::1"))
    );
    assert!(wait_until(Duration::from_secs(10), || b.ctl(&["network", "ls"]).contains("dual")), "b adopts dual");
    let c4 = Netns::new("c4");
    c4.enable_ipv6();
    let c4_ip6 = ip6_of(&b.connect("dual", &c4, &["--name", "c4"]));
    assert!(c4.has_ipv6(&c4_ip6), "c4's SLAAC address\n{}", b.log());
    docker.ok(&[
        "run",
        "-d",
        "--name",
        "web6",
        "--network",
        "dual",
        "--dns",
        "10.97.0.1",
        Dockerd::IMAGE,
        "sleep",
        "600",
    ]);
    let web6_ip6 =
        docker.ok(&["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.GlobalIPv6Address}}{{end}}", "web6"]);
    let web6_ip6 = web6_ip6.trim();
    let web6 = a.json(&["network", "inspect", "dual"])["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["host"] == a.host.name.as_str())
        .cloned()
        .expect("web6's endpoint");
    assert_eq!(ip6_of(&web6), web6_ip6, "Docker configured the address switchd knows for the endpoint");
    let routes = docker.ok(&["exec", "web6", "ip", "-6", "route"]);
    assert!(routes.contains("default via fd00:97::1"), "{routes}");
    let ping6 = docker.exec(&["exec", "web6", "ping", "-6", "-c", "2", "-W", "2", &c4_ip6]);
    assert!(ping6.status.success(), "web6 -> c4 over IPv6: {}\n{}", String::from_utf8_lossy(&ping6.stdout), a.log());
    assert!(c4.ok(&["ping", "-6", "-c", "1", "-W", "2", web6_ip6]).contains("1 received"), "c4 -> web6 over IPv6");
    let aaaa = docker.ok(&["exec", "web6", "nslookup", "-type=AAAA", "c4", "10.97.0.1"]);
    assert!(aaaa.contains(&c4_ip6), "{aaaa}");
    // An address given with --ip6 is the container's own: Docker
    // configures it, switchd guards and resolves it (c4 on host b reaches it).
    docker.ok(&[
        "run",
        "-d",
        "--name",
        "manual6",
        "--network",
        "dual",
        "--ip6",
        "fd00:97::5",
        Dockerd::IMAGE,
        "sleep",
        "600",
    ]);
    let ping6 = docker.exec(&["exec", "manual6", "ping", "-6", "-c", "2", "-W", "2", "-I", "fd00:97::5", &c4_ip6]);
    assert!(ping6.status.success(), "manual6 -> c4 from its --ip6: {}", String::from_utf8_lossy(&ping6.stdout));
    let reached = wait_until(Duration::from_secs(10), || {
        c4.exec(&["ping", "-6", "-c", "1", "-W", "1", "fd00:97::5"]).status.success()
    });
    assert!(reached, "c4 -> manual6's --ip6 across hosts\n{}", b.log());
    let twice = docker.exec(&["run", "-d", "--network", "dual", "--ip6", "fd00:97::5", Dockerd::IMAGE, "true"]);
    let said = String::from_utf8_lossy(&twice.stderr);
    assert!(!twice.status.success() && said.contains("fd00:97::5 is already in use"), "{said}");
    docker.ok(&["rm", "-f", "web6", "manual6"]);
    b.ctl(&["network", "disconnect", "dual", "c4"]);

    // Docker's own IPAM (no --ipam-driver): its IPv6 addresses (::2, ::3,
    // ...) are the endpoints' own too, guarded and answered for.
    docker.ok(&[
        "network",
        "create",
        "-d",
        &driver,
        "--ipv6",
        "--subnet",
        "10.94.0.0/24",
        "--subnet",
        "fd00:94::/64",
        "-o",
        "name=dflt6",
        "-o",
        "vni=975",
        "dflt6",
    ]);
    docker.ok(&["run", "-d", "--name", "seq6", "--network", "dflt6", Dockerd::IMAGE, "sleep", "600"]);
    let seq6_ip6 =
        docker.ok(&["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.GlobalIPv6Address}}{{end}}", "seq6"]);
    let seq6_ip6 = seq6_ip6.trim();
    let shown = a.json(&["network", "inspect", "dflt6"])["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(ip6_of)
        .collect::<Vec<_>>();
    assert_eq!(shown, vec![seq6_ip6.to_owned()], "switchd knows the address Docker's IPAM gave");
    let ping6 = docker.exec(&["exec", "seq6", "ping", "-6", "-c", "2", "-W", "2", "-I", seq6_ip6, "fd00:94::1"]);
    assert!(ping6.status.success(), "seq6 -> gateway6 from {seq6_ip6}: {}", String::from_utf8_lossy(&ping6.stdout));
    docker.ok(&["rm", "-f", "seq6"]);
    docker.ok(&["network", "rm", "dflt6"]);

    // Bad requests on the plugin socket get the protocol's error and change nothing.
    let join = r#"{"NetworkID": "nope", "EndpointID": "x", "SandboxKey": "/x"}"#;
    let bad = a.host.py(
        py::DOCKER_PLUGIN_POST,
        &[
            &socket,
            "/NetworkDriver.CreateNetwork",
            "{not json",
            "/NetworkDriver.Teleport",
            "{}",
            "/NetworkDriver.Join",
            join,
        ],
    );
    let replies: Vec<serde_json::Value> = bad.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(replies[0]["Err"].as_str().unwrap().starts_with("/NetworkDriver.CreateNetwork: bad request body"), "{bad}");
    assert_eq!(replies[1]["Err"], "/NetworkDriver.Teleport: not an operation of the network driver protocol");
    assert_eq!(replies[2]["Err"], "endpoint x was not created here");
    assert_eq!(a.json(&["network", "ls"]).as_array().unwrap().len(), 3, "front, vault and dual, nothing more");

    // Removing the network is refused while a container is attached (here, c2 on b).
    let rm = docker.exec(&["network", "rm", "front"]);
    assert!(!rm.status.success(), "docker network rm went through with containers attached");

    // Disconnect cuts web off.
    docker.ok(&["network", "disconnect", "front", "web"]);
    assert!(!c2.ping(web_ip.trim(), 1), "web still reachable after disconnect");
    assert!(
        !a.json(&["network", "inspect", "front"])["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["host"] == a.host.name.as_str()),
        "web's endpoint gone from switchd"
    );
    b.ctl(&["network", "disconnect", "front", "c2"]);
    assert!(wait_until(Duration::from_secs(10), || docker.exec(&["network", "rm", "front"]).status.success()));
    docker.ok(&["network", "rm", "vault"]);
    // Gone from the cluster once b's gossip no longer carries it either.
    let gone = wait_until(Duration::from_secs(15), || {
        let ls = a.ctl(&["network", "ls"]);
        !ls.contains("front") && !ls.contains("vault")
    });
    assert!(gone, "a: {}\nb: {}\n{}", a.ctl(&["network", "ls"]), b.ctl(&["network", "ls"]), a.log());
}

/// Addresses switchd's IPAM gave dockerd (`RequestAddress`, before the
/// endpoint's `Join`) stay reserved across a restart of switchd: neither a
/// container connected meanwhile nor another request gets them.
#[test]
fn ipam_reservations_survive_a_restart() {
    let driver = format!("sdt-{}-resv", std::process::id());
    let socket = format!("/run/docker/plugins/{driver}.sock");
    struct RemoveOnDrop(String);
    impl Drop for RemoveOnDrop {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _socket = RemoveOnDrop(socket.clone());
    let body = format!(
        "\n[docker]\nsocket = \"{socket}\"\n\n[[network]]\nname = \"front\"\nvni = 990\nsubnet = \"10.99.0.0/24\"\ninternal = true\n"
    );
    let mut sd = switchd_e2e::Switchd::start("", &body);
    let request = |sd: &switchd_e2e::Switchd| -> String {
        let body = r#"{"PoolID": "10.99.0.0/24", "Address": "", "Options": null}"#;
        let reply = sd.host.py(py::DOCKER_PLUGIN_POST, &[&socket, "/IpamDriver.RequestAddress", body]);
        let reply: serde_json::Value = serde_json::from_str(&reply).expect("a JSON reply");
        let address = reply["Address"].as_str().unwrap_or_else(|| panic!("no Address in {reply}"));
        address.split('/').next().expect("an address").to_owned()
    };
    let reserved = request(&sd);
    sd.kill9();
    sd.launch();
    let c = Netns::new("c");
    let connected = ip_of(&sd.connect("front", &c, &[]));
    assert_ne!(connected, reserved, "the reserved address went to a container after a restart");
    assert_ne!(request(&sd), reserved, "the reserved address was given out twice");
}
