//! Services across two hosts: a VIP balanced in the data path over
//! backends on both, health checks taking a failed backend out, DNS
//! (`NAME` to the VIP, `tasks.NAME`, dnsrr rotation), and what no backend
//! can take refused at once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use switchd_e2e::{KeyFile, Netns, Switchd, Underlay, gossip_member as member, py, wait_until};

const FRONT: &str = "\n[[network]]\nname = \"front\"\nvni = 100\nsubnet = \"10.10.0.0/24\"\ninternal = true\n";

struct Lab {
    _ul: Underlay,
    _key: KeyFile,
    hosts: Vec<Switchd>,
    /// The client, on the second host.
    client: Netns,
    /// web's backends: two on the first host, one on the second.
    backends: Vec<Netns>,
}

/// Two hosts sharing `front`; web's three backends (each running
/// named_server.py on port 80) and a client.
fn lab(tag: &str) -> Lab {
    let mut ul = Underlay::new();
    let key = KeyFile::new(tag, 0x51);
    let (h1, ip1) = ul.host("h1");
    let (h2, ip2) = ul.host("h2");
    let hosts = vec![member(h1, &ip1, &key, FRONT), member(h2, &ip2, &key, FRONT)];
    let backends: Vec<Netns> = (1..=3).map(|i| Netns::new(&format!("b{i}"))).collect();
    for (i, b) in backends.iter().enumerate() {
        let host = &hosts[if i < 2 { 0 } else { 1 }];
        host.connect("front", b, &["--ip", &format!("10.10.0.2{}", i + 1), "--service", "web"]);
    }
    let client = Netns::new("client");
    hosts[1].connect("front", &client, &["--ip", "10.10.0.10"]);
    Lab { _ul: ul, _key: key, hosts, client, backends }
}

fn backends_in(service: &Value, state: &str) -> Vec<String> {
    let Some(list) = service["backends"].as_array() else { return Vec::new() };
    let mut names: Vec<String> =
        list.iter().filter(|b| b["state"] == state).map(|b| b["name"].as_str().unwrap().to_owned()).collect();
    names.sort();
    names
}

/// `service inspect web` on `h`; null while it does not know web.
fn web(h: &Switchd) -> Value {
    h.try_ctl(&["--json", "service", "inspect", "web"]).map_or(Value::Null, |out| serde_json::from_str(&out).unwrap())
}

fn dig(client: &Netns, name: &str) -> Vec<String> {
    let out = client.ok(&["dig", "+short", "+tries=1", "+time=2", "@10.10.0.1", name]);
    out.lines().map(str::to_owned).collect()
}

/// Who answered `count` new connections to `url` from `client`, from
/// source ports `first`, `first + 1`...: the backends' shares are then
/// the same in every run (the flow hash is fixed), so the test checks the
/// hash's evenness without the chance of a random draw.
fn spread(client: &Netns, url: &str, count: u32, first: u16) -> BTreeMap<String, u64> {
    let out = client.py(py::HTTP_MANY, &[url, &count.to_string(), &first.to_string()]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn a_vip_spreads_connections_over_healthy_backends_on_both_hosts() {
    let lab = lab("svc-vip");
    let servers: Vec<_> =
        lab.backends.iter().map(|b| b.spawn_py(py::NAMED_SERVER, &["80", &b.name])).collect::<Vec<_>>();
    let created = lab.hosts[0].json(&[
        "service",
        "create",
        "web",
        "--network",
        "front",
        "--port",
        "80/tcp",
        "--health",
        "http:/",
        "--health-interval",
        "500",
        "--health-threshold",
        "1",
    ]);
    let vip = created["vip"].as_str().expect("a VIP from IPAM").to_owned();
    let mut names: Vec<String> = lab.backends.iter().map(|b| b.name.clone()).collect();
    names.sort();
    // Both hosts know the service, and its three backends healthy.
    for h in &lab.hosts {
        assert!(
            wait_until(Duration::from_secs(10), || backends_in(&web(h), "healthy") == names),
            "{}: {}\n{}",
            h.host.name,
            web(h),
            h.log()
        );
    }
    assert_eq!(dig(&lab.client, "web"), std::slice::from_ref(&vip), "web is its VIP");
    assert_eq!(dig(&lab.client, "web.front"), std::slice::from_ref(&vip));
    let mut tasks = dig(&lab.client, "tasks.web");
    tasks.sort();
    assert_eq!(tasks, ["10.10.0.21", "10.10.0.22", "10.10.0.23"], "tasks.web is every backend");

    // 300 new connections: a third each, within 20%.
    let url = format!("http://{vip}/");
    let seen = spread(&lab.client, &url, 300, 20000);
    eprintln!("300 connections to {vip}: {seen:?}");
    assert_eq!(seen["errors"], 0, "{seen:?}");
    for n in &names {
        let got = seen.get(n).copied().unwrap_or(0);
        assert!((80..=120).contains(&got), "{n} got {got} of 300: {seen:?}");
    }

    // Connections kept open through the VIP, while b1's server dies.
    let keepers: Vec<_> =
        (0..6).map(|_| lab.client.spawn_py_captured(py::HTTP_KEEPALIVE, &[&url, "4", "0.05"])).collect();
    std::thread::sleep(Duration::from_secs(1));
    let killed = Instant::now();
    let mut servers = servers.into_iter();
    drop(servers.next());
    assert!(
        wait_until(Duration::from_secs(5), || backends_in(&web(&lab.hosts[1]), "unhealthy")
            == [lab.backends[0].name.clone()]),
        "b1 never went unhealthy on the client's host: {}",
        web(&lab.hosts[1])
    );
    let took = killed.elapsed();
    eprintln!("b1 out of the client's host's balancer {took:?} after its server died (interval 500 ms)");
    let mut kept_going = 0;
    for k in keepers {
        let out: Value = serde_json::from_str(&k.output()).expect("the keepalive client's report");
        let servers: Vec<&str> = out["servers"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
        assert_eq!(servers.len(), 1, "a kept connection changed backend: {out}");
        if !servers[0].ends_with("b1") {
            assert!(out["error"].is_null(), "a connection to a live backend broke: {out}");
            kept_going += 1;
        }
    }
    eprintln!("{kept_going} of 6 kept connections were on live backends and went on");
    let seen = spread(&lab.client, &url, 300, 21000);
    eprintln!("300 connections after b1 failed: {seen:?}");
    assert_eq!(seen["errors"], 0, "{seen:?}");
    assert_eq!(seen.keys().filter(|k| k.ends_with("b1")).count(), 0, "b1 still given connections: {seen:?}");
    for n in names.iter().filter(|n| !n.ends_with("b1")) {
        let got = seen.get(n).copied().unwrap_or(0);
        assert!((120..=180).contains(&got), "{n} got {got} of 300: {seen:?}");
    }
    assert_eq!(dig(&lab.client, "tasks.web").len(), 2, "an unhealthy backend leaves tasks.web");

    // The trace names the balancing.
    let trace = lab.hosts[1].ctl(&[
        "trace",
        "front",
        "--from",
        &lab.client.name,
        "--to",
        &vip,
        "--proto",
        "tcp",
        "--dport",
        "80",
    ]);
    assert!(trace.contains("balanced to backend"), "{trace}");

    // A port web does not serve is refused at once (a reset), and so is
    // every connection once no backend is healthy.
    let refused = lab.client.py(py::TCP_CONNECT, &[&vip, "81", "2"]);
    assert!(refused.contains("refused"), "port 81 of the VIP: {refused}");
    drop(servers);
    assert!(
        wait_until(Duration::from_secs(5), || backends_in(&web(&lab.hosts[1]), "healthy").is_empty()),
        "backends still healthy with no server running"
    );
    let started = Instant::now();
    let none = lab.client.py(py::TCP_CONNECT, &[&vip, "80", "3"]);
    assert!(none.contains("refused"), "with no healthy backend: {none}");
    assert!(started.elapsed() < Duration::from_secs(2), "refused only after {:?}: a black hole", started.elapsed());
    let stats = lab.hosts[1].network_stats("front");
    assert!(stats["balance_refused"].as_u64().unwrap() >= 2, "{stats}");
    assert!(stats["balanced"].as_u64().unwrap() >= 600, "{stats}");
}

#[test]
fn dnsrr_rotates_and_aliases_need_no_definition() {
    let lab = lab("svc-rr");
    lab.hosts[1].json(&["service", "create", "web", "--network", "front", "--mode", "dnsrr"]);
    assert!(
        wait_until(Duration::from_secs(10), || dig(&lab.client, "web").len() == 3),
        "web does not answer its three backends: {:?}",
        dig(&lab.client, "web")
    );
    let firsts: std::collections::BTreeSet<String> = (0..12).map(|_| dig(&lab.client, "web")[0].clone()).collect();
    assert!(firsts.len() >= 2, "dnsrr did not rotate over 12 queries: always {firsts:?}");
    // A name joined but never defined (Docker's --network-alias) answers too.
    let extra = Netns::new("alias");
    lab.hosts[0].connect("front", &extra, &["--ip", "10.10.0.30", "--service", "cache"]);
    assert!(wait_until(Duration::from_secs(10), || dig(&lab.client, "cache") == ["10.10.0.30"]), "the alias");
    assert_eq!(dig(&lab.client, "tasks.cache"), ["10.10.0.30"]);
    let ls = lab.hosts[1].json(&["service", "ls"]);
    let cache = ls.as_array().unwrap().iter().find(|s| s["name"] == "cache").expect("the alias listed");
    assert_eq!(cache["origin"], "alias");
    // Removed on one host, gone on the other.
    lab.hosts[0].ctl(&["service", "rm", "web"]);
    assert!(
        wait_until(Duration::from_secs(10), || lab.hosts[1].try_ctl(&["service", "inspect", "web"]).is_err()),
        "web survived its removal on the other host"
    );
}

/// On a network with host access (TCP to the gateway address is the
/// host's), the health checks still work: their answers come back to the
/// gateway stack, and a killed server is taken out.
#[test]
fn health_checks_work_on_a_network_with_host_access() {
    let lobby =
        "\n[[network]]\nname = \"lobby\"\nvni = 110\nsubnet = \"10.11.0.0/24\"\ninternal = true\nhost_access = true\n";
    let sd = Switchd::start("", lobby);
    let b = Netns::new("hb");
    sd.connect("lobby", &b, &["--ip", "10.11.0.5", "--service", "api"]);
    let server = b.spawn_py(py::NAMED_SERVER, &["80", "hb"]);
    sd.ctl(&[
        "service",
        "create",
        "api",
        "--network",
        "lobby",
        "--port",
        "80/tcp",
        "--health",
        "http:/",
        "--health-interval",
        "300",
        "--health-threshold",
        "1",
    ]);
    let api = |sd: &Switchd| sd.json(&["service", "inspect", "api"]);
    assert!(
        wait_until(Duration::from_secs(5), || api(&sd)["backends"][0]["last_error"].is_null()
            && api(&sd)["backends"][0]["state"] == "healthy"),
        "{}",
        api(&sd)
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(api(&sd)["backends"][0]["state"], "healthy", "checks kept passing: {}", api(&sd));
    drop(server);
    assert!(wait_until(Duration::from_secs(3), || api(&sd)["backends"][0]["state"] == "unhealthy"), "{}", api(&sd));
}

/// The routing mesh's row of `ports` on `h` for web's port 8080: its
/// target (the VIP's address) once it is open there.
fn mesh_target(h: &Switchd) -> Option<String> {
    let ports = h.json(&["ports"]);
    let rows = ports.as_array()?.iter();
    let mut mesh = rows.filter(|p| p["service"] == "web" && p["host_port"] == 8080);
    mesh.next()?["target"].as_str().map(str::to_owned)
}

/// The routing mesh: web, published once on one host, answers on port
/// 8080 of both; connections from a client on the underlay reach the
/// backends on either host through either host's port, and every backend
/// sees the client's own address. Unpublished on the other host, the port
/// closes on both.
#[test]
fn the_mesh_answers_on_every_hosts_port_and_backends_see_the_client() {
    let front =
        "\n[[network]]\nname = \"front\"\nvni = 100\nsubnet = \"10.10.0.0/24\"\ninternal = true\nhost_access = true\n";
    let mut ul = Underlay::new();
    let key = KeyFile::new("svc-mesh", 0x52);
    let (h1, ip1) = ul.host("h1");
    let (h2, ip2) = ul.host("h2");
    let (outside, client_ip) = ul.host("out");
    let hosts = [member(h1, &ip1, &key, front), member(h2, &ip2, &key, front)];
    let backends = [Netns::new("mb1"), Netns::new("mb2")];
    for (i, (h, b)) in hosts.iter().zip(&backends).enumerate() {
        h.connect("front", b, &["--ip", &format!("10.10.0.2{}", i + 1), "--service", "web"]);
        // Internal (no default route in a test namespace): the way back to the client.
        b.ok(&["ip", "route", "add", "198.18.0.0/24", "via", "10.10.0.1"]);
    }
    let _servers: Vec<_> = backends.iter().map(|b| b.spawn_py(py::NAMED_SERVER, &["80", &b.name])).collect();
    let created = hosts[0].json(&["service", "create", "web", "--network", "front", "--port", "80/tcp"]);
    let vip = created["vip"].as_str().expect("a VIP").to_owned();
    hosts[0].ctl(&["publish", "--service", "web", "8080:80"]);
    for h in &hosts {
        let open = wait_until(Duration::from_secs(10), || mesh_target(h).as_deref() == Some(&format!("{vip}:80")));
        assert!(open, "{}: {}\n{}", h.host.name, h.json(&["ports"]), h.log());
        let rules = h.host.ok(&["nft", "list", "table", "inet", "switchd"]);
        assert!(rules.contains(&format!("tcp dport 8080 dnat ip to {vip}:80")), "{rules}");
    }
    let names: Vec<&str> = backends.iter().map(|b| b.name.as_str()).collect();
    for (i, ip) in [&ip1, &ip2].into_iter().enumerate() {
        let seen = spread(&outside, &format!("http://{ip}:8080/"), 40, 30000 + 1000 * i as u16);
        eprintln!("40 connections to {ip}:8080: {seen:?}");
        assert_eq!(seen["errors"], 0, "{seen:?}\n{}\n{}", hosts[0].log(), hosts[1].log());
        for n in &names {
            assert!(seen.get(*n).copied().unwrap_or(0) > 0, "{n} never answered through {ip}: {seen:?}");
        }
        assert_eq!(seen.get(&format!("from {client_ip}")).copied(), Some(40), "the client's address: {seen:?}");
    }
    for h in &hosts {
        let stats = h.network_stats("front");
        assert!(stats["balanced"].as_u64().unwrap() >= 40, "each ingress host balanced its 40: {stats}");
    }
    // Policy holds for the mesh as for containers: web isolated, the
    // client's subnet not allowed, then allowed.
    let isolate = ["policy", "add", "web-in", "--network", "front", "--select", "service=web", "--from"];
    hosts[0].ctl(&[&isolate[..], &["cidr=10.10.0.0/24"]].concat());
    let denied = || hosts.iter().all(|h| h.json(&["policy", "ls"]).to_string().contains("web-in"));
    assert!(wait_until(Duration::from_secs(10), denied), "the policy reached both hosts");
    let seen = spread(&outside, &format!("http://{ip2}:8080/"), 2, 31500);
    assert_eq!(seen["errors"], 2, "denied through the mesh: {seen:?}");
    let policy = hosts[1].json(&["stats"])["policy"].clone();
    assert!(policy["denied"].as_u64().unwrap() > 0, "counted on the ingress host: {policy}");
    hosts[0].ctl(&["policy", "rm", "web-in"]);
    hosts[0].ctl(&[&isolate[..], &["cidr=198.18.0.0/24"]].concat());
    let allowed = || spread(&outside, &format!("http://{ip2}:8080/"), 2, 31600)["errors"] == 0;
    assert!(wait_until(Duration::from_secs(10), allowed), "allowed through the mesh once a rule names the client");

    hosts[1].ctl(&["unpublish", "8080"]);
    for h in &hosts {
        let closed = wait_until(Duration::from_secs(10), || mesh_target(h).is_none());
        assert!(closed, "{}: {}", h.host.name, h.json(&["ports"]));
        assert!(!h.host.exec(&["nft", "list", "table", "inet", "switchd"]).status.success(), "the table is gone");
    }
    let seen = spread(&outside, &format!("http://{ip1}:8080/"), 3, 32000);
    assert_eq!(seen["errors"], 3, "the port is closed: {seen:?}");
}

/// On a dual-stack network a VIP service has a VIP6 too: AAAA by name,
/// connections over IPv6 balanced over the backends' IPv6 addresses on
/// both hosts (the backends see the client's own address), and a port it
/// does not serve refused at once (a TCP reset from the VIP6).
#[test]
fn a_vip6_balances_over_the_backends_ipv6_addresses_on_both_hosts() {
    let dual = format!("{FRONT}subnet6 = \"fd00:10::/64\"\n");
    let mut ul = Underlay::new();
    let key = KeyFile::new("svc-vip6", 0x56);
    let ((h1, ip1), (h2, ip2)) = (ul.host("h1"), ul.host("h2"));
    let hosts = [member(h1, &ip1, &key, &dual), member(h2, &ip2, &key, &dual)];
    let (b1, b2, client) = (Netns::new("b6a"), Netns::new("b6b"), Netns::new("c6"));
    let mut addresses = Vec::new();
    for (h, ns, extra) in [(0, &b1, &["--service", "web"][..]), (1, &b2, &["--service", "web"]), (1, &client, &[])] {
        ns.enable_ipv6();
        let ip6 = switchd_e2e::ip6_of(&hosts[h].connect("front", ns, extra));
        assert!(ns.has_ipv6(&ip6), "{} never configured {ip6}\n{}", ns.name, hosts[h].log());
        addresses.push(ip6);
    }
    let _servers: Vec<_> = [&b1, &b2].iter().map(|b| b.spawn_py(py::NAMED_SERVER, &["80", &b.name])).collect();
    let created = hosts[0].json(&["service", "create", "web", "--network", "front", "--port", "80/tcp"]);
    let vip6 = created["vip6"].as_str().expect("a VIP6 on a dual-stack network").to_owned();
    assert!(vip6.starts_with("fd00:10::") && created["vip"].is_string(), "{created}");
    let both = |h: &Switchd| backends_in(&web(h), "unchecked").len() == 2 && web(h)["vip6"] == vip6.as_str();
    assert!(wait_until(Duration::from_secs(10), || both(&hosts[1])), "{}\n{}", web(&hosts[1]), hosts[1].log());
    let aaaa = client.ok(&["dig", "+short", "+tries=1", "+time=2", "@fd00:10::1", "AAAA", "web"]);
    assert_eq!(aaaa.trim(), vip6, "web answers AAAA with its VIP6");

    let url = format!("http://[{vip6}]/");
    let seen = spread(&client, &url, 100, 22000);
    eprintln!("100 connections to {vip6}: {seen:?}");
    assert_eq!(seen["errors"], 0, "{seen:?}\n{}\n{}", hosts[0].log(), hosts[1].log());
    for b in [&b1, &b2] {
        let got = seen.get(&b.name).copied().unwrap_or(0);
        assert!((25..=75).contains(&got), "{} got {got} of 100: {seen:?}", b.name);
    }
    assert_eq!(seen.get(&format!("from {}", addresses[2])).copied(), Some(100), "the client's own address: {seen:?}");
    let refused = client.py(py::TCP_CONNECT, &[&vip6, "81", "2"]);
    assert!(refused.contains("refused"), "port 81 of the VIP6: {refused}");
    let trace =
        hosts[1].ctl(&["trace", "front", "--from", &client.name, "--to", &vip6, "--proto", "tcp", "--dport", "80"]);
    assert!(trace.contains("balanced to backend"), "{trace}");
    let stats = hosts[1].network_stats("front");
    assert!(stats["balanced"].as_u64().unwrap() >= 100 && stats["balance_refused"].as_u64().unwrap() >= 1, "{stats}");
}

/// The routing mesh over IPv6: on a cluster over an IPv6 underlay, web's
/// VIP6 published once answers on port 8080 of both hosts' IPv6
/// addresses, for a client on the underlay, balanced over the backends
/// on both hosts, which see the client's own address.
#[test]
fn the_mesh_answers_over_ipv6_on_every_hosts_port() {
    let front = "\n[[network]]\nname = \"front\"\nvni = 100\nsubnet = \"10.10.0.0/24\"\ninternal = true\n\
                 host_access = true\nsubnet6 = \"fd00:10::/64\"\n";
    let mut ul = Underlay::new_ipv6();
    let key = KeyFile::new("svc-mesh6", 0x57);
    let ((h1, ip1), (h2, ip2), (outside, client_ip)) = (ul.host("h1"), ul.host("h2"), ul.host("out"));
    for h in [&h1, &h2] {
        // The host side's interface takes the hosts' default: IPv6 on.
        h.enable_ipv6();
    }
    let hosts = [member(h1, &ip1, &key, front), member(h2, &ip2, &key, front)];
    let backends = [Netns::new("m6b1"), Netns::new("m6b2")];
    for (h, b) in hosts.iter().zip(&backends) {
        b.enable_ipv6();
        let ip6 = switchd_e2e::ip6_of(&h.connect("front", b, &["--service", "web"]));
        assert!(b.has_ipv6(&ip6), "{} never configured {ip6}", b.name);
        // Internal (no default route in a test namespace): the way back to the client.
        b.ok(&["ip", "-6", "route", "add", "fd00:198:18::/64", "via", "fd00:10::1"]);
    }
    let _servers: Vec<_> = backends.iter().map(|b| b.spawn_py(py::NAMED_SERVER, &["80", &b.name])).collect();
    let created = hosts[0].json(&["service", "create", "web", "--network", "front", "--port", "80/tcp"]);
    let vip6 = created["vip6"].as_str().expect("a VIP6").to_owned();
    hosts[0].ctl(&["publish", "--service", "web", "8080:80"]);
    for h in &hosts {
        let to_vip6 = format!("[{vip6}]:80");
        let open = wait_until(Duration::from_secs(10), || mesh_target(h).is_some_and(|t| t.contains(&to_vip6)));
        assert!(open, "{}: {}\n{}", h.host.name, h.json(&["ports"]), h.log());
        let rules = h.host.ok(&["nft", "list", "table", "inet", "switchd"]);
        assert!(rules.contains(&format!("tcp dport 8080 dnat ip6 to [{vip6}]:80")), "{rules}");
    }
    let names: Vec<&str> = backends.iter().map(|b| b.name.as_str()).collect();
    for (i, ip) in [&ip1, &ip2].into_iter().enumerate() {
        let seen = spread(&outside, &format!("http://[{ip}]:8080/"), 40, 33000 + 1000 * i as u16);
        eprintln!("40 connections to [{ip}]:8080: {seen:?}");
        assert_eq!(seen["errors"], 0, "{seen:?}\n{}\n{}", hosts[0].log(), hosts[1].log());
        for n in &names {
            assert!(seen.get(*n).copied().unwrap_or(0) > 0, "{n} never answered through {ip}: {seen:?}");
        }
        assert_eq!(seen.get(&format!("from {client_ip}")).copied(), Some(40), "the client's address: {seen:?}");
    }
}
