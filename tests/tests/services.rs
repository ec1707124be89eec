//! What the gateway serves, across two hosts found by gossip: routing
//! between networks only where `[[route]]` allows, DHCP to real clients
//! (busybox udhcpc, ISC dhclient), the embedded DNS (dig), published ports,
//! and the three-tier app of the README. Networks are `internal` (no
//! namespace gets a default route); routes to routed networks are installed
//! per subnet instead.

use std::time::Duration;

use switchd_e2e::{KeyFile, Netns, Switchd, Underlay, gossip_member, ip_of, wait_until};

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

fn drops(sd: &Switchd, endpoint: &str, reason: &str) -> u64 {
    sd.port_stats(endpoint)["drops"][reason].as_u64().unwrap_or(0)
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
    let routed =
        a.json(&["stats"])["networks"].as_array().unwrap().iter().find(|n| n["network"] == "frontend").cloned();
    assert!(routed.unwrap()["routed"].as_u64().unwrap() >= 3);

    // And removed again: denied.
    for sd in [&a, &b] {
        sd.ctl(&["route", "rm", "frontend", "backend"]);
    }
    assert!(!s1.ok(&["ip", "route"]).contains("10.32.0.0"), "route removed from s1");
    assert!(!s1.ping(&ip2, 1));
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

    let services = &a.json(&["stats"])["services"];
    assert!(services["dhcp_acks"].as_u64().unwrap() >= 2, "{services}");
    assert!(services["dns_answers"].as_u64().unwrap() >= 4, "{services}");
    assert!(services["dns_nxdomain"].as_u64().unwrap() >= 2, "{services}");
}

/// The flask-app of the three-tier example: HTTP on port 5000, counting
/// visits in "mongo" (a redis-server), both found by name.
const APP: &str = r#"
import http.server, socket
class App(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with socket.create_connection(("mongo", 6379), timeout=3) as db:
            db.sendall(b"*2\r\n$4\r\nINCR\r\n$4\r\nhits\r\n")
            hits = db.recv(64).decode().strip().lstrip(":")
        body = f"hits={hits} served by flask-app\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", 5000), App).serve_forever()
"#;

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

fn http_get(ns: &Netns, url: &str) -> Result<String, String> {
    let program =
        format!("import urllib.request\nprint(urllib.request.urlopen({url:?}, timeout=5).read().decode(), end='')");
    let out = ns.exec(&["python3", "-c", &program]);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
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
    let _app = app.spawn(&["python3", "-c", APP]);
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
    let reach = format!("import socket\nsocket.create_connection(({mongo_ip:?}, 6379), timeout=2)");
    assert!(!nginx.exec(&["python3", "-c", &reach]).status.success(), "nginx must not reach mongo");

    // Inspect shows every endpoint with name, IP, MAC and host.
    let detail = a.json(&["network", "inspect", "public-net-1"]);
    let endpoints = detail["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 2, "{detail}");
    for e in endpoints {
        assert!(e["ip"].is_string() && e["mac"].is_string() && e["host"].is_string(), "{e}");
    }
    // A UDP port published at run time on host b, to the app's container.
    let echo = "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('0.0.0.0', 5300))\n\
                while True:\n    d, a = s.recvfrom(2048)\n    s.sendto(b'echo:' + d, a)\n";
    let _echo = app.spawn(&["python3", "-c", echo]);
    assert!(wait_until(Duration::from_secs(5), || !app.ok(&["ss", "-lunH", "sport = :5300"]).trim().is_empty()));
    b.ctl(&["publish", "public-net-1", "flask-app", "5300:5300/udp"]);
    let ask = "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.settimeout(3)\n\
               s.sendto(b'ping', ('198.18.0.2', 5300))\nprint(s.recvfrom(2048)[0].decode(), end='')";
    assert_eq!(a.host.ok(&["python3", "-c", ask]), "echo:ping", "UDP through a published port");
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
    assert!(containers[2].ping(&ips[1], 2), "still reaching the other host after a restart");

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

/// A frame for the gateway from container `ns` (eth0 is at `mac`, address
/// `src`): IPv4/UDP from `src:sport` to `dst:dport`, the payload in Python.
fn inject_udp(ns: &Netns, dst_mac: &str, src: &str, dst: &str, sport: u16, dport: u16, payload: &str) {
    let mac = ns.mac("eth0");
    ns.inject(&format!(
        r#"
import struct
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
payload = {payload}
udp = struct.pack("!HHHH", {sport}, {dport}, 8 + len(payload), 0) + payload
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                 socket.inet_aton("{src}"), socket.inet_aton("{dst}"))
ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
eth = bytes.fromhex("{dst_mac}".replace(":", "")) + bytes.fromhex("{mac}".replace(":", "")) + b"\x08\x00"
s.send(eth + ip + udp)
"#
    ));
}

#[test]
fn bad_input_to_the_gateway_is_counted_and_changes_nothing() {
    let sd = Switchd::start("", &network("front", 610, "10.61.0.0/24"));
    let (c, d) = (Netns::new("c"), Netns::new("d"));
    let c_ip = ip_of(&sd.connect("front", &c, &["--name", "c"]));
    let d_ip = ip_of(&sd.connect("front", &d, &["--name", "d"]));
    let gw_mac = "02:5d:67:00:02:62"; // VNI 610
    assert!(c.ping("10.61.0.1", 1));
    assert_eq!(c.ok(&["ip", "neigh", "show", "10.61.0.1"]).split_whitespace().nth(4), Some(gw_mac));

    // DHCP: junk, a client MAC that is not attached, a huge option area.
    inject_udp(&c, "ff:ff:ff:ff:ff:ff", "0.0.0.0", "255.255.255.255", 68, 67, r#"b"\x01\x02junk""#);
    let stranger = r#"bytes([1, 1, 6, 0]) + b"\0" * 24 + bytes.fromhex("02aabbccddee") + b"\0" * 202 + bytes([99, 130, 83, 99, 53, 1, 1, 255])"#;
    inject_udp(&c, "ff:ff:ff:ff:ff:ff", "0.0.0.0", "255.255.255.255", 68, 67, stranger);
    // DNS: junk with a query header, fifty questions, a 255-byte name.
    inject_udp(&c, gw_mac, &c_ip, "10.61.0.1", 5353, 53, r#"b"\xab\xcd\x01\x00\x00\x01" + b"\0" * 6 + b"\x3f" * 40"#);
    let many = r#"b"\x12\x34\x01\x00\x00\x32\0\0\0\0\0\0" + b"\x01a\x00\x00\x01\x00\x01" * 50"#;
    inject_udp(&c, gw_mac, &c_ip, "10.61.0.1", 5353, 53, many);
    let huge = r#"b"\x12\x35\x01\x00\x00\x01\0\0\0\0\0\0" + (b"\x3f" + b"a" * 63) * 3 + b"\x3d" + b"b" * 61 + b"\x00\x00\x01\x00\x01""#;
    inject_udp(&c, gw_mac, &c_ip, "10.61.0.1", 5353, 53, huge);
    // Spoofing: an IPv4 source c was not given, and ARP replies claiming
    // the gateway's address and d's.
    inject_udp(&c, "ff:ff:ff:ff:ff:ff", &d_ip, "10.61.0.255", 9, 9, r#"b"spoof""#);
    let mac = c.mac("eth0").replace(':', "");
    for claimed in ["10.61.0.1", d_ip.as_str()] {
        c.inject(&format!(
            "arp = bytes.fromhex('ffffffffffff{mac}0806000108000604000 2{mac}'.replace(' ', '')) + socket.inet_aton('{claimed}') + b'\\xff' * 6 + socket.inet_aton('{claimed}') + b'\\0' * 18\ns.send(arp)"
        ));
    }

    let services = &sd.json(&["stats"])["services"];
    let count = |k: &str| services[k].as_u64().unwrap_or(0);
    assert!(wait_until(Duration::from_secs(3), || {
        let s = &sd.json(&["stats"])["services"];
        s["dns_refused"].as_u64().unwrap_or(0) >= 2
    }));
    assert_eq!(count("dhcp_malformed"), 1, "{services}");
    assert_eq!(count("dhcp_unknown_client"), 1, "{services}");
    assert!(count("dns_refused") >= 2, "FORMERR for junk and many questions: {services}");
    assert_eq!(count("dns_nxdomain"), 1, "the huge name is just unknown: {services}");
    assert_eq!(drops(&sd, "c", "spoofed_address"), 3);
    // Nothing changed: d still owns its address, the gateway answers.
    assert_eq!(d.ok(&["ip", "neigh", "show", "10.61.0.1"]).split_whitespace().nth(4).unwrap_or(gw_mac), gw_mac);
    assert!(d.ping(&c_ip, 1) && c.ping("10.61.0.1", 1));
    assert_eq!(dig(&d, &["+short", "c"]).trim(), c_ip);
}

/// An HTTP server on `port` that answers with the client's address.
fn whoami_server(ns: &Netns, port: u16) -> switchd_e2e::Proc {
    let program = format!(
        r#"
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = self.client_address[0].encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
http.server.HTTPServer(("0.0.0.0", {port}), H).serve_forever()
"#
    );
    let server = ns.spawn(&["python3", "-c", &program]);
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
