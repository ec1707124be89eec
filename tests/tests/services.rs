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
    let nets = format!("{}{}", network("frontend", 310, "10.31.0.0/24"), network("backend", 320, "10.32.0.0/24"));
    let (_ul, _key, a, b) = two_hosts("route", &nets);
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
    assert!(s1.ping(&ip2, 3), "s1 -> s2 through the gateway\n{}\n{}", a.log(), b.log());
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
