//! What the gateway serves, across two hosts found by gossip: routing
//! between networks only where `[[route]]` allows, DHCP to real clients
//! (busybox udhcpc, ISC dhclient), the embedded DNS (dig), published ports,
//! and the three-tier app of the README. Networks are `internal` (no
//! namespace gets a default route); routes to routed networks are installed
//! per subnet instead.

use std::time::{Duration, Instant};

use switchd_e2e::{
    BROADCAST, KeyFile, Netns, Switchd, Underlay, arp, count, gossip_member, hex, ip_of, mac_bytes, py, sparse,
    wait_until,
};

fn network(name: &str, vni: u32, subnet: &str) -> String {
    format!("\n[[network]]\nname = \"{name}\"\nvni = {vni}\nsubnet = \"{subnet}\"\ninternal = true\n")
}

/// Two gossiping hosts carrying `body`.
fn two_hosts(tag: &str, body: &str) -> (Underlay, KeyFile, Switchd, Switchd) {
    let mut ul = Underlay::new();
    let key = KeyFile::new(tag, 0x42);
    let ((ha, ipa), (hb, ipb)) = (ul.host("ha"), ul.host("hb"));
    let a = gossip_member(ha, &ipa, &key, body);
    let b = gossip_member(hb, &ipb, &key, body);
    (ul, key, a, b)
}

/// Waits until `sd` knows by gossip that the endpoint `name` is on `network`.
fn wait_for_endpoint(sd: &Switchd, network: &str, name: &str) {
    let seen = wait_until(Duration::from_secs(10), || {
        let detail = sd.json(&["network", "inspect", network]);
        detail["endpoints"].as_array().unwrap().iter().any(|e| e["name"] == name)
    });
    assert!(seen, "{name} on {network} never reached {}\n{}", sd.host.name, sd.log());
}

/// A drop counter of a port, which must be there (the drops map lists only
/// reasons that happened).
fn drops(sd: &Switchd, endpoint: &str, reason: &str) -> u64 {
    let port = sd.port_stats(endpoint);
    sparse(&port["drops"], reason).unwrap_or_else(|| panic!("no {reason} drops on {endpoint}: {port}"))
}

#[test]
fn routing_between_networks_only_where_a_route_allows() {
    // Host b defines nothing: it carries what the cluster defines, and the
    // network it routes into, as soon as it routes.
    let nets = format!("{}{}", network("frontend", 310, "10.31.0.0/24"), network("backend", 320, "10.32.0.0/24"));
    let mut ul = Underlay::new();
    let key = KeyFile::new("route", 0x42);
    let ((ha, ipa), (hb, ipb)) = (ul.host("ha"), ul.host("hb"));
    let a = gossip_member(ha, &ipa, &key, &nets);
    let b = gossip_member(hb, &ipb, &key, "");
    assert!(wait_until(Duration::from_secs(10), || b.ctl(&["network", "ls"]).contains("frontend")));
    let (s1, s2) = (Netns::new("s1"), Netns::new("s2"));
    let ip1 = ip_of(&a.connect("frontend", &s1, &["--name", "s1"]));
    let ip2 = ip_of(&b.connect("backend", &s2, &["--name", "s2"]));
    wait_for_endpoint(&a, "backend", "s2");
    wait_for_endpoint(&b, "frontend", "s1");

    // Each host answers for the gateway of its containers' network.
    assert!(s1.ping("10.31.0.1", 2), "gateway ping\n{}", a.log());
    assert!(s2.ping("10.32.0.1", 2), "gateway ping\n{}", b.log());

    // No route: even with a route by hand, the gateway refuses, saying so
    // (ICMP administratively prohibited, which ping calls "Packet filtered").
    s1.ok(&["ip", "route", "add", "10.32.0.0/24", "via", "10.31.0.1"]);
    let out = s1.exec(&["ping", "-c", "2", "-i", "0.2", "-W", "1", &ip2]);
    assert!(!out.status.success(), "no [[route]], yet s1 reached s2");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Packet filtered"), "{out:?}");
    assert!(drops(&a, "s1", "route_denied") >= 2);
    s1.ok(&["ip", "route", "del", "10.32.0.0/24"]);

    // With the route (on both hosts, at run time), the containers get a
    // route to each other's subnet and ping both ways.
    for sd in [&a, &b] {
        sd.ctl(&["route", "add", "frontend", "backend"]);
    }
    assert!(s1.ok(&["ip", "route"]).contains("10.32.0.0/24 via 10.31.0.1"), "route installed in s1");
    // Once b's gossip says it carries frontend too (it routes into it).
    assert!(
        wait_until(Duration::from_secs(10), || s1.ping(&ip2, 1)),
        "s1 -> s2 through the gateway\n{}\n{}",
        a.log(),
        b.log()
    );
    assert!(s1.ping(&ip2, 3));
    assert!(s2.ping(&ip1, 3), "s2 -> s1 through the gateway");
    // TTL one less: one router on the way.
    let out = s1.ok(&["ping", "-c", "1", "-W", "1", &ip2]);
    assert!(out.contains("ttl=63"), "{out}");
    // traceroute: the gateway, then s2.
    let trace = s1.ok(&["busybox", "traceroute", "-n", "-q", "1", "-w", "1", "-m", "4", &ip2]);
    let hops: Vec<&str> = trace.lines().skip(1).collect();
    assert_eq!(hops.len(), 2, "one hop, then the destination:\n{trace}");
    assert!(hops[0].contains("10.31.0.1"), "{trace}");
    assert!(hops[1].contains(&ip2), "{trace}");
    let routes = a.json(&["route", "ls"]);
    assert_eq!(routes[0]["networks"], serde_json::json!(["backend", "frontend"]));
    assert_eq!(routes[0]["state"], "active");
    assert!(count(&a.network_stats("frontend"), "routed") >= 3);

    // And removed again: the route goes from s1, and one added by hand is
    // refused by the gateway again, as at first (not merely unroutable).
    for sd in [&a, &b] {
        sd.ctl(&["route", "rm", "frontend", "backend"]);
    }
    assert!(!s1.ok(&["ip", "route"]).contains("10.32.0.0"), "route removed from s1");
    let denied = drops(&a, "s1", "route_denied");
    s1.ok(&["ip", "route", "add", "10.32.0.0/24", "via", "10.31.0.1"]);
    let out = s1.exec(&["ping", "-c", "2", "-i", "0.2", "-W", "1", &ip2]);
    assert!(!out.status.success(), "the route was removed, yet s1 reached s2");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Packet filtered"), "{out:?}");
    assert!(drops(&a, "s1", "route_denied") >= denied + 2, "{}", a.port_stats("s1"));
    s1.ok(&["ip", "route", "del", "10.32.0.0/24"]);
}

/// A DHCP client script (udhcpc's or dhclient's): applies what it got and
/// writes it to `out` as `key=value` lines.
fn client_script(dir: &std::path::Path, out: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("dhcp-script.sh");
    let script = format!(
        r#"#!/bin/sh
# udhcpc: $1 is the event; dhclient: $reason is.
event="${{reason:-$1}}"
case "$event" in
  bound|renew|BOUND|RENEW|REBOOT)
    ip="${{ip:-$new_ip_address}}"
    mask="${{mask:-$new_subnet_mask}}"
    mtu="${{mtu:-$new_interface_mtu}}"
    routes="${{staticroutes:-$new_rfc3442_classless_static_routes}}"
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
    {{
      echo "ip=$ip"; echo "mask=$mask"; echo "mtu=$mtu"
      echo "router=${{router:-$new_routers}}"; echo "dns=${{dns:-$new_domain_name_servers}}"
      echo "routes=$routes"; echo "hostname=${{hostname:-$new_host_name}}"
    }} > "{out}.tmp" && mv "{out}.tmp" "{out}"
    ;;
esac
exit 0
"#,
        out = out.display()
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

fn read_lease(path: &std::path::Path) -> std::collections::BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

/// `dig` through the container's resolv.conf; the answer lines, or the status.
fn dig(ns: &Netns, args: &[&str]) -> String {
    let mut all = vec!["dig", "+tries=1", "+time=2"];
    all.extend_from_slice(args);
    ns.ok(&all)
}

#[test]
fn dhcp_clients_get_everything_and_resolve_their_peers() {
    let nets = format!(
        "{}{}\n[[route]]\nnetworks = [\"front\", \"back\"]\n",
        network("front", 330, "10.33.0.0/24"),
        network("back", 340, "10.34.0.0/24")
    );
    let (_ul, _key, a, b) = two_hosts("dhcp", &nets);
    let (web, other, c, d) = (Netns::new("web"), Netns::new("other"), Netns::new("c"), Netns::new("d"));
    let web_ip = ip_of(&b.connect("front", &web, &["--name", "web"]));
    b.connect("back", &other, &["--name", "other"]);
    wait_for_endpoint(&a, "front", "web");
    // c has no address: it asks the gateway.
    let c_ip = ip_of(&a.connect("front", &c, &["--name", "client", "--dhcp"]));
    assert!(!c.ok(&["ip", "addr", "show", "eth0"]).contains("inet "), "unconfigured");

    let out = a.dir.join("udhcpc.lease");
    let script = client_script(&a.dir, &out);
    c.ok(&["busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "5", "-T", "1", "-s", script.to_str().unwrap()]);
    let lease = read_lease(&out);
    assert_eq!(lease["ip"], c_ip, "the endpoint's IPAM address: {lease:?}");
    assert_eq!(lease["mask"], "24");
    assert_eq!(lease["mtu"], "1450");
    assert_eq!(lease["router"], "", "internal network: no default router");
    assert_eq!(lease["dns"], "10.33.0.1");
    assert_eq!(lease["routes"], "10.34.0.0/24 10.33.0.1", "option 121 to the routed network");
    assert_eq!(lease["hostname"], "client");
    assert!(c.ping(&web_ip, 2), "the DHCP client reaches web on the other host");

    // Names: web is on another host, "other" on a network c is not on.
    assert_eq!(dig(&c, &["+short", "web"]).trim(), web_ip);
    assert_eq!(dig(&c, &["+short", "web.front"]).trim(), web_ip);
    assert_eq!(dig(&c, &["+short", "-x", &web_ip]).trim(), "web.front.");
    assert!(dig(&c, &["other"]).contains("status: NXDOMAIN"), "isolation: other is on back only");
    assert!(dig(&c, &["no-such-name.example"]).contains("status: NXDOMAIN"));
    assert_eq!(dig(&c, &["+tcp", "+short", "web"]).trim(), web_ip, "DNS over TCP");

    // ISC dhclient, on another container.
    let d_ip = ip_of(&a.connect("front", &d, &["--name", "d", "--dhcp"]));
    let out = a.dir.join("dhclient.lease");
    let script = client_script(&a.dir, &out);
    let (leases, pid) = (a.dir.join("dhclient.leases"), a.dir.join("dhclient.pid"));
    let _dhclient = d.spawn(&[
        "dhclient",
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
    assert!(wait_until(Duration::from_secs(15), || out.exists()), "dhclient got no lease\n{}", a.log());
    let lease = read_lease(&out);
    assert_eq!(lease["ip"], d_ip, "{lease:?}");
    assert_eq!(lease["mask"], "255.255.255.0");
    assert_eq!(lease["dns"], "10.33.0.1");
    assert!(d.ping(&web_ip, 2));

    let services = &a.stats()["services"];
    assert!(count(services, "dhcp_acks") >= 2, "{services}");
    assert!(count(services, "dns_answers") >= 4, "{services}");
    assert!(count(services, "dns_nxdomain") >= 2, "{services}");
}

/// nginx in the foreground, one process, proxying to flask-app by name.
fn nginx_conf(dir: &std::path::Path) -> std::path::PathBuf {
    let conf = dir.join("nginx.conf");
    let text = format!(
        "daemon off;\nmaster_process off;\nuser root;\nerror_log {dir}/nginx-error.log;\npid {dir}/nginx.pid;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {dir};\n  proxy_temp_path {dir};\n\
         fastcgi_temp_path {dir};\n  uwsgi_temp_path {dir};\n  scgi_temp_path {dir};\n\
         server {{ listen 80; location / {{ proxy_pass http://flask-app:5000; }} }}\n}}\n",
        dir = dir.display()
    );
    std::fs::write(&conf, text).unwrap();
    conf
}

/// GETs `url` from `ns`: the body, or why the server could not be reached
/// (a failure of the script itself fails the test: it is no "unreachable").
fn http_get(ns: &Netns, url: &str) -> Result<String, String> {
    let out = ns.py_exec(py::HTTP_GET, &[url]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    match out.status.code() {
        Some(0) => Ok(stdout),
        Some(2) => Err(stdout),
        _ => panic!("http_get.py {url} in {} failed: {out:?}", ns.name),
    }
}

fn listening(ns: &Netns, port: u16) -> bool {
    wait_until(Duration::from_secs(10), || !ns.ok(&["ss", "-ltnH", &format!("sport = :{port}")]).trim().is_empty())
}

#[test]
fn three_tier_app_across_two_hosts() {
    let nets = format!(
        "{}{}\n[[publish]]\nnetwork = \"public-net-1\"\ncontainer = \"nginx\"\nhost_port = 8080\nport = 80\n",
        network("public-net-1", 410, "10.41.0.0/24"),
        network("private-net-1", 420, "10.42.0.0/24")
    );
    let (_ul, _key, a, b) = two_hosts("tier", &nets);
    let (nginx, app, mongo) = (Netns::new("nginx"), Netns::new("flask"), Netns::new("mongo"));
    // Host b: the app on both networks, the database on the private one.
    b.connect("private-net-1", &mongo, &["--name", "mongo"]);
    b.connect("public-net-1", &app, &["--name", "flask-app"]);
    b.connect("private-net-1", &app, &["--name", "flask-app"]);
    wait_for_endpoint(&a, "public-net-1", "flask-app");
    // Host a: nginx, on the public network only.
    a.connect("public-net-1", &nginx, &["--name", "nginx"]);

    let db_dir = b.dir.join("redis");
    std::fs::create_dir_all(&db_dir).unwrap();
    let _redis = mongo.spawn(&[
        "redis-server",
        "--port",
        "6379",
        "--bind",
        "0.0.0.0",
        "--protected-mode",
        "no",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        db_dir.to_str().unwrap(),
    ]);
    assert!(listening(&mongo, 6379), "redis-server did not start");
    let _app = app.spawn_py(py::VISIT_COUNTER_APP, &["5000", "mongo", "6379"]);
    assert!(listening(&app, 5000), "flask-app did not start");
    let _nginx = nginx.spawn(&["nginx", "-c", nginx_conf(&a.dir).to_str().unwrap()]);
    assert!(
        listening(&nginx, 80),
        "nginx did not start: {}",
        std::fs::read_to_string(a.dir.join("nginx-error.log")).unwrap_or_default()
    );

    // Through the published port on host a's own address: nginx (host a)
    // -> flask-app (host b, by name) -> mongo (by name).
    let url = format!("http://{}:8080/", "198.18.0.1");
    assert_eq!(http_get(&a.host, &url).unwrap(), "hits=1 served by flask-app\n", "{}", a.log());
    assert_eq!(http_get(&b.host, &url).unwrap(), "hits=2 served by flask-app\n", "from another host");

    // nginx resolves flask-app, but not mongo, and cannot reach it.
    assert!(!nginx.ok(&["getent", "hosts", "flask-app"]).is_empty());
    assert!(!nginx.exec(&["getent", "hosts", "mongo"]).status.success(), "nginx must not resolve mongo");
    let mongo_ip = b.json(&["network", "inspect", "private-net-1"])["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "mongo")
        .map(|e| e["ip"].as_str().unwrap().to_owned())
        .unwrap();
    let reach = nginx.py(py::TCP_CONNECT, &[&mongo_ip, "6379", "2"]);
    assert!(reach.starts_with("error:"), "nginx must not reach mongo: {reach}");

    // Inspect shows every endpoint with name, IP, MAC and host.
    let detail = a.json(&["network", "inspect", "public-net-1"]);
    let endpoints = detail["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 2, "{detail}");
    for e in endpoints {
        assert!(e["ip"].is_string() && e["mac"].is_string() && e["host"].is_string(), "{e}");
    }
    // A UDP port published at run time on host b, to the app's container.
    let _echo = app.spawn_py(py::ECHO_SERVER, &["5300", "echo:"]);
    assert!(wait_until(Duration::from_secs(5), || !app.ok(&["ss", "-lunH", "sport = :5300"]).trim().is_empty()));
    b.ctl(&["publish", "public-net-1", "flask-app", "5300:5300/udp"]);
    let echoed = a.host.py(py::ECHO_ONCE, &["udp", "0.0.0.0", "198.18.0.2", "5300", "ping"]);
    assert_eq!(echoed, "echo:ping", "UDP through a published port");
    b.ctl(&["unpublish", "5300/udp"]);
    assert!(!b.ctl(&["ports"]).contains("5300"));

    let ports = a.json(&["ports"]);
    assert_eq!(ports[0]["target"], format!("{}:80", ip_of(endpoints.iter().find(|e| e["name"] == "nginx").unwrap())));
}

fn endpoint_ips(sd: &Switchd, network: &str) -> Vec<String> {
    let detail = sd.json(&["network", "inspect", network]);
    detail["endpoints"].as_array().unwrap().iter().filter_map(|e| e["ip"].as_str().map(str::to_owned)).collect()
}

#[test]
fn addresses_are_handed_out_once_across_the_cluster() {
    let nets = format!("{}{}", network("front", 510, "10.51.0.0/24"), network("tiny", 520, "10.52.0.0/29"));
    let (_ul, _key, mut a, b) = two_hosts("ipam", &nets);
    let containers: Vec<Netns> = (0..6).map(|i| Netns::new(&format!("c{i}"))).collect();
    // Three containers on each host at once, before either host has heard
    // of the other's: still six different addresses.
    let ips: Vec<String> = std::thread::scope(|scope| {
        let joins: Vec<_> = containers
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let sd = if i % 2 == 0 { &a } else { &b };
                scope.spawn(move || ip_of(&sd.connect("front", c, &[])))
            })
            .collect();
        joins.into_iter().map(|j| j.join().unwrap()).collect()
    });
    let unique: std::collections::BTreeSet<&String> = ips.iter().collect();
    assert_eq!(unique.len(), 6, "an address handed out twice: {ips:?}");
    assert!(wait_until(Duration::from_secs(10), || endpoint_ips(&a, "front").len() == 6));

    // A static address in use on the other host is refused.
    let extra = Netns::new("extra");
    let taken = &ips[1]; // on b
    let err = a.try_ctl(&["network", "connect", "front", &extra.name, "--ip", taken]).unwrap_err();
    assert!(err.contains(&format!("{taken} is already in use on network \"front\"")), "{err}");

    // An address returns to the pool on disconnect.
    a.ctl(&["network", "disconnect", "front", &containers[0].name]);
    assert_eq!(ip_of(&a.connect("front", &extra, &[])), ips[0], "the freed address is handed out again");

    // Addresses and claims survive a restart.
    let before = endpoint_ips(&a, "front");
    a.terminate();
    a.launch();
    assert!(wait_until(Duration::from_secs(10), || endpoint_ips(&a, "front").len() == 6));
    let mut after = endpoint_ips(&a, "front");
    let mut before = before;
    before.sort();
    after.sort();
    assert_eq!(before, after, "addresses after a restart");
    // Host b forgot a when it left cleanly: traffic comes back once b has
    // heard a's new state, within a few gossip rounds.
    let back = std::time::Instant::now();
    assert!(
        wait_until(Duration::from_secs(5), || containers[2].ping(&ips[1], 1)),
        "still reaching the other host after a restart"
    );
    eprintln!("ipam: cross-host traffic back {:?} after a's restart", back.elapsed());

    // A /29 has two blocks; with b holding one, a runs out after its own.
    b.connect("tiny", &containers[1], &[]);
    let mut got = Vec::new();
    let err = loop {
        let ns = Netns::new("t");
        match a.try_ctl(&["--json", "network", "connect", "tiny", &ns.name]) {
            Ok(_) => got.push(ns),
            Err(e) => break e,
        }
        assert!(got.len() <= 4, "more addresses than a's block holds");
    };
    assert!(err.contains("no free address left in 10.52.0.0/29"), "{err}");
    assert!(!got.is_empty());
}

/// 200 containers attach to host a and leave; then 200 attach to host b.
/// Host a held most address blocks of the /24: it gives them back when b
/// asks for them, so b runs out of nothing.
#[test]
fn address_blocks_go_back_when_another_host_needs_them() {
    let body = format!("interval_ms = 100\n{}", network("front", 530, "10.53.0.0/24"));
    let (_ul, _key, a, b) = two_hosts("blocks", &body);
    let containers: Vec<Netns> = (0..200).map(|i| Netns::new(&format!("b{i}"))).collect();
    let attach_all = |sd: &Switchd| -> Vec<String> {
        containers.iter().map(|c| ip_of(&sd.connect("front", c, &["--name", &c.name]))).collect()
    };
    let on_a = attach_all(&a);
    for c in &containers {
        a.ctl(&["network", "disconnect", "front", &c.name]);
    }
    let on_b = attach_all(&b);
    let unique: std::collections::BTreeSet<&String> = on_b.iter().collect();
    assert_eq!(unique.len(), 200, "an address handed out twice on b");
    assert_eq!(on_a.len(), 200);
    let given = a.log().matches("which asked for it").count();
    assert!(given > 0, "host a gave no block back:\n{}", a.log());
    eprintln!("host a gave {given} address blocks to host b");
    // Every address is b's now, and a knows them all (by gossip).
    assert!(wait_until(Duration::from_secs(10), || endpoint_ips(&a, "front").len() == 200));
}

/// A hand-made IPv4/UDP frame from container `ns` (from its eth0's MAC) to
/// `dst_mac`: from `src:sport` to `dst:dport`, carrying `payload`.
fn inject_udp(ns: &Netns, dst_mac: &str, src: &str, dst: &str, sport: u16, dport: u16, payload: &[u8]) {
    let (mac, sport, dport) = (ns.mac("eth0"), sport.to_string(), dport.to_string());
    ns.inject_script(py::SEND_UDP_FRAME, &[dst_mac, &mac, src, dst, &sport, &dport, &hex(payload)]);
}

/// The MAC `ns` has in its neighbour cache for `ip`, if any.
fn neighbour_mac(ns: &Netns, ip: &str) -> Option<String> {
    ns.ok(&["ip", "neigh", "show", ip]).split_whitespace().nth(4).map(str::to_owned)
}

#[test]
fn bad_input_to_the_gateway_is_counted_and_changes_nothing() {
    let sd = Switchd::start("", &network("front", 610, "10.61.0.0/24"));
    let (c, d) = (Netns::new("c"), Netns::new("d"));
    let c_ip = ip_of(&sd.connect("front", &c, &["--name", "c"]));
    let d_ip = ip_of(&sd.connect("front", &d, &["--name", "d"]));
    let gw_mac = "02:5d:67:00:02:62"; // VNI 610
    assert!(c.ping("10.61.0.1", 1));
    assert_eq!(neighbour_mac(&c, "10.61.0.1").as_deref(), Some(gw_mac));
    // d knows the gateway too: an ARP reply claiming its address that got
    // through would overwrite this entry.
    assert!(d.ping("10.61.0.1", 1));
    assert_eq!(neighbour_mac(&d, "10.61.0.1").as_deref(), Some(gw_mac));
    let d_resolved = Instant::now();

    // DHCP: junk, a client MAC that is not attached, a huge option area.
    let all = "255.255.255.255";
    let bcast = "ff:ff:ff:ff:ff:ff";
    inject_udp(&c, bcast, "0.0.0.0", all, 68, 67, b"\x01\x02junk");
    let stranger =
        [&[1, 1, 6, 0][..], &[0; 24], &mac_bytes("02:aa:bb:cc:dd:ee"), &[0; 202], &[99, 130, 83, 99, 53, 1, 1, 255]];
    inject_udp(&c, bcast, "0.0.0.0", all, 68, 67, &stranger.concat());
    // DNS: junk with a query header, fifty questions, a 255-byte name.
    let junk = [&b"\xab\xcd\x01\x00\x00\x01"[..], &[0; 6], &[0x3f; 40]].concat();
    inject_udp(&c, gw_mac, &c_ip, "10.61.0.1", 5353, 53, &junk);
    let many = [&b"\x12\x34\x01\x00\x00\x32"[..], &[0; 6], &b"\x01a\x00\x00\x01\x00\x01".repeat(50)].concat();
    inject_udp(&c, gw_mac, &c_ip, "10.61.0.1", 5353, 53, &many);
    let label = |len: u8, byte: u8| [vec![len], vec![byte; usize::from(len)]].concat();
    let name = [label(63, b'a'), label(63, b'a'), label(63, b'a'), label(61, b'b'), vec![0]].concat();
    assert_eq!(name.len(), 255, "the longest name DNS allows");
    let huge = [&b"\x12\x35\x01\x00\x00\x01"[..], &[0; 6], &name, b"\x00\x01\x00\x01"].concat();
    inject_udp(&c, gw_mac, &c_ip, "10.61.0.1", 5353, 53, &huge);
    // Spoofing: an IPv4 source c was not given, and ARP replies claiming
    // the gateway's address and d's. (Linux lets a reply override an entry
    // only once it is a second old: wait for that, so that d's entry for
    // the gateway would change if a spoofed reply reached d.)
    inject_udp(&c, bcast, &d_ip, "10.61.0.255", 9, 9, b"spoof");
    std::thread::sleep(Duration::from_millis(1100).saturating_sub(d_resolved.elapsed()));
    let mac = mac_bytes(&c.mac("eth0"));
    for claimed in ["10.61.0.1", d_ip.as_str()] {
        let claimed = claimed.parse().unwrap();
        c.inject(&[arp(2, (mac, claimed), (BROADCAST, claimed))]);
    }

    // Wait until everything is counted, let it settle, then read the
    // counters from one snapshot taken after that.
    let expected = [("dhcp_malformed", 1), ("dhcp_unknown_client", 1), ("dns_refused", 2), ("dns_nxdomain", 1)];
    let counted = wait_until(Duration::from_secs(3), || {
        let stats = sd.stats();
        let spoofed = sparse(&sd.port_stats("c")["drops"], "spoofed_address");
        expected.iter().all(|(k, n)| sparse(&stats["services"], k).is_some_and(|got| got >= *n))
            && spoofed.is_some_and(|n| n >= 3)
    });
    assert!(counted, "services {}, c's drops {}", sd.stats()["services"], sd.port_stats("c")["drops"]);
    std::thread::sleep(Duration::from_millis(300));
    let stats = sd.stats();
    let services = &stats["services"];
    assert_eq!(count(services, "dhcp_malformed"), 1, "{services}");
    assert_eq!(count(services, "dhcp_unknown_client"), 1, "{services}");
    assert_eq!(count(services, "dns_refused"), 2, "FORMERR for junk and many questions: {services}");
    assert_eq!(count(services, "dns_nxdomain"), 1, "the huge name is just unknown: {services}");
    let c_port = stats["ports"].as_array().expect("ports").iter().find(|p| p["endpoint"] == "c").expect("port c");
    assert_eq!(count(&c_port["drops"], "spoofed_address"), 3, "the IPv4 source and both ARP replies: {c_port}");
    // Nothing changed: d still has the gateway's MAC for its address, and
    // owns its own; the gateway answers.
    assert_eq!(neighbour_mac(&d, "10.61.0.1").as_deref(), Some(gw_mac), "d's entry for the gateway");
    assert!(d.ping(&c_ip, 1) && c.ping("10.61.0.1", 1));
    assert_eq!(dig(&d, &["+short", "c"]).trim(), c_ip);
}

/// An HTTP server on `port` that answers with the client's address.
fn whoami_server(ns: &Netns, port: u16) -> switchd_e2e::Proc {
    let server = ns.spawn_py(py::WHOAMI_SERVER, &[&port.to_string()]);
    assert!(listening(ns, port), "whoami server on {port} did not start in {}", ns.name);
    server
}

#[test]
fn host_access_reaches_the_host_and_through_its_nat_the_outside() {
    let net =
        "\n[[network]]\nname = \"front\"\nvni = 710\nsubnet = \"10.71.0.0/24\"\ninternal = true\nhost_access = true\n";
    let sd = Switchd::start("", net);
    let c = Netns::new("c");
    let c_ip = ip_of(&sd.connect("front", &c, &["--name", "c"]));
    let host = &sd.host;
    assert!(host.ok(&["ip", "-br", "addr", "show", "sdg710"]).contains("10.71.0.1/24"), "the host side");

    // The host reaches the container, and the container the host.
    assert!(host.ping(&c_ip, 2), "host -> container\n{}", sd.log());
    let _host_server = whoami_server(host, 8000);
    assert_eq!(http_get(&c, "http://10.71.0.1:8000/").unwrap(), c_ip, "container -> host, from its own address");
    // What switchd serves stays switchd's: ping and DNS at the gateway.
    assert!(c.ping("10.71.0.1", 1));
    assert_eq!(dig(&c, &["+short", "c"]).trim(), c_ip);

    // The outside: a namespace behind the host, reached through the host's
    // routing and NAT (the rule the README documents).
    let outside = Netns::new("out");
    host.ok(&["ip", "link", "add", "out0", "type", "veth", "peer", "name", "eth0", "netns", &outside.name]);
    host.ok(&["ip", "addr", "add", "198.19.0.1/24", "dev", "out0"]);
    host.ok(&["ip", "link", "set", "out0", "up"]);
    outside.ok(&["ip", "addr", "add", "198.19.0.2/24", "dev", "eth0"]);
    outside.ok(&["ip", "link", "set", "eth0", "up"]);
    host.ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    // No default route anywhere: the container routes just that subnet.
    c.ok(&["ip", "route", "add", "198.19.0.0/24", "via", "10.71.0.1"]);
    let _outside_server = whoami_server(&outside, 8001);
    // Without NAT the outside cannot answer (it has no route back).
    assert!(http_get(&c, "http://198.19.0.2:8001/").is_err(), "reached the outside without NAT?");
    for rule in [
        "add table ip switchd",
        "add chain ip switchd postrouting { type nat hook postrouting priority srcnat ; }",
        "add rule ip switchd postrouting ip saddr 10.71.0.0/24 oifname != \"sdg710\" masquerade",
    ] {
        let mut args = vec!["nft"];
        args.extend(rule.split(' '));
        host.ok(&args);
    }
    assert_eq!(http_get(&c, "http://198.19.0.2:8001/").unwrap(), "198.19.0.1", "egress through the host's NAT");
}

/// Path MTU discovery between networks of different MTUs: a ping with
/// Don't Fragment too big for the smaller network is answered by the
/// gateway with "fragmentation needed" and that network's MTU; the
/// sender's kernel takes it (its next try says so itself) and a ping that
/// fits goes through.
#[test]
fn routing_into_a_smaller_mtu_tells_the_sender_the_path_mtu() {
    let nets = "\n[[network]]\nname = \"wide\"\nvni = 330\nsubnet = \"10.33.0.0/24\"\ninternal = true\nmtu = 1400\n\
                \n[[network]]\nname = \"narrow\"\nvni = 340\nsubnet = \"10.34.0.0/24\"\ninternal = true\nmtu = 1280\n\
                \n[[route]]\nnetworks = [\"wide\", \"narrow\"]\n";
    let sd = Switchd::start("", nets);
    let (s1, s2) = (Netns::new("w1"), Netns::new("n2"));
    sd.connect("wide", &s1, &["--name", "w1", "--ip", "10.33.0.5"]);
    sd.connect("narrow", &s2, &["--name", "n2", "--ip", "10.34.0.5"]);
    assert!(s1.ping("10.34.0.5", 2), "routed\n{}", sd.log());
    let big = s1.exec(&["ping", "-M", "do", "-s", "1300", "-c", "1", "-W", "1", "10.34.0.5"]);
    let said = String::from_utf8_lossy(&big.stdout).to_string() + &String::from_utf8_lossy(&big.stderr);
    assert!(!big.status.success(), "1328 bytes into a 1280 network: {said}");
    assert!(said.contains("Frag needed and DF set (mtu = 1280)"), "{said}");
    assert!(drops(&sd, "w1", "frag_needed") >= 1);
    // The kernel learned the path MTU: it refuses the next one itself.
    assert!(s1.ok(&["ip", "route", "get", "10.34.0.5"]).contains("mtu 1280"), "the route's cached MTU");
    let again = s1.exec(&["ping", "-M", "do", "-s", "1300", "-c", "1", "-W", "1", "10.34.0.5"]);
    let said = String::from_utf8_lossy(&again.stdout).to_string() + &String::from_utf8_lossy(&again.stderr);
    assert!(said.contains("mtu=1280") || said.contains("mtu = 1280"), "{said}");
    let fits = s1.exec(&["ping", "-M", "do", "-s", "1252", "-c", "1", "-W", "1", "10.34.0.5"]);
    assert!(fits.status.success(), "1280 bytes fit: {fits:?}");
}
