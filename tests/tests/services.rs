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
