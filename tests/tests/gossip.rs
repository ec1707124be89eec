//! Hosts configured only with seeds (no `[[peer]]`) find each other by
//! gossip: cross-host reachability, ARP answered locally, failure and
//! recovery, refusing outsiders, cluster-wide networks.

use std::time::{Duration, Instant};

use serde_json::Value;
use switchd_e2e::{
    KeyFile, Netns, Switchd, Underlay, baseline, count, gossip_member as member, hex, py, sparse, unhex, wait_until,
};

const FRONT: &str = "\n[[network]]\nname = \"front\"\nvni = 100\nsubnet = \"10.10.0.0/24\"\ninternal = true\n";

/// `key` of each element of the list `v`, which every element must have.
fn names(v: &Value, key: &str) -> Vec<String> {
    let list = v.as_array().unwrap_or_else(|| panic!("not a list: {v}"));
    list.iter().map(|x| x[key].as_str().unwrap_or_else(|| panic!("no {key} in {x}")).to_owned()).collect()
}

/// The state `peers` shows for `host`, if listed.
fn peer_state(sd: &Switchd, host: &str) -> Option<String> {
    sd.json(&["peers"])
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["host"] == host)
        .map(|p| p["state"].as_str().unwrap().to_owned())
}

/// A counter of `network` on `sd`, both of which must be there.
fn network_counter(sd: &Switchd, network: &str, key: &str) -> u64 {
    count(&sd.network_stats(network), key)
}

fn has_gossip_entry(sd: &Switchd, mac: &str) -> bool {
    sd.json(&["fdb"]).as_array().unwrap().iter().any(|e| e["mac"] == mac && e["type"] == "gossip")
}

/// Three hosts, `front` defined on the first only, a container on each.
struct Cluster {
    _ul: Underlay,
    _key: KeyFile,
    hosts: Vec<Switchd>,
    containers: Vec<Netns>,
}

fn cluster(tag: &str) -> Cluster {
    let mut ul = Underlay::new();
    let key = KeyFile::new(tag, 0x42);
    let mut hosts = Vec::new();
    for i in 1..=3 {
        let (ns, ip) = ul.host(&format!("h{i}"));
        hosts.push(member(ns, &ip, &key, if i == 1 { FRONT } else { "" }));
    }
    for h in &hosts[1..] {
        assert!(
            wait_until(Duration::from_secs(10), || names(&h.json(&["network", "ls"]), "name") == ["front"]),
            "front did not reach {}:\n{}",
            h.host.name,
            h.log()
        );
    }
    let containers: Vec<Netns> = (1..=3).map(|i| Netns::new(&format!("c{i}"))).collect();
    for (i, (h, c)) in hosts.iter().zip(&containers).enumerate() {
        h.connect("front", c, &["--ip", &format!("10.10.0.1{}", i + 1)]);
    }
    // Every host knows every remote container from gossip.
    for (i, h) in hosts.iter().enumerate() {
        for (j, c) in containers.iter().enumerate() {
            if i != j {
                let mac = c.mac("eth0");
                assert!(
                    wait_until(Duration::from_secs(10), || has_gossip_entry(h, &mac)),
                    "{} never heard of {}",
                    h.host.name,
                    c.name
                );
            }
        }
    }
    Cluster { _ul: ul, _key: key, hosts, containers }
}

#[test]
fn three_hosts_by_seeds_reach_each_other_and_arp_is_answered_locally() {
    let c = cluster("reach");
    let (h1, h2, h3) = (&c.hosts[0], &c.hosts[1], &c.hosts[2]);
    let inspect = h1.json(&["network", "inspect", "front"]);
    assert_eq!(
        names(&inspect["endpoints"], "host"),
        [h1.host.name.clone(), h2.host.name.clone(), h3.host.name.clone()]
    );
    assert_eq!(h1.json(&["network", "ls"])[0]["hosts"].as_array().unwrap().len(), 3);

    // The first contact: c1's ARP for c2 is answered by h1 itself, and c2's
    // ARP for c1 by h2. Nothing is flooded from h1 at all, and no host
    // floods anything to h3. (h2 may flood the first echo request to its
    // own local ports: c2 has not spoken yet, so h2 has not learned where
    // it sits. That flood never leaves h2.)
    let flooded = |h: &Switchd| network_counter(h, "front", "flooded");
    let from = |h: &Switchd, vtep: &str| count(&h.vtep_stats(vtep), "rx_frames");
    let before = (flooded(h1), from(h3, "198.18.0.1"), from(h3, "198.18.0.2"));
    assert!(c.containers[0].ping("10.10.0.12", 2), "c1 -> c2 across hosts");
    assert!(network_counter(h1, "front", "neighbor_answers") >= 1, "h1 did not answer c1's ARP");
    assert!(network_counter(h2, "front", "neighbor_answers") >= 1, "h2 did not answer c2's ARP");
    let after = (flooded(h1), from(h3, "198.18.0.1"), from(h3, "198.18.0.2"));
    assert_eq!(after, before, "the first ARP was flooded (flooded on h1; received by h3 from h1, h2)");

    assert!(c.containers[2].ping("10.10.0.11", 2), "c3 -> c1");
    assert!(c.containers[1].ping("10.10.0.13", 2), "c2 -> c3");
    let peers = h1.json(&["peers"]);
    assert_eq!(names(&peers, "state"), ["alive", "alive"]);
    assert_eq!(h1.json(&["status"])["peers_alive"], 2);
}

#[test]
fn a_killed_host_leaves_within_ten_seconds_a_stopped_one_at_once_and_both_come_back() {
    let mut c = cluster("fail");
    let mac3 = c.containers[2].mac("eth0");
    let (name2, name3) = (c.hosts[1].host.name.clone(), c.hosts[2].host.name.clone());

    c.hosts[2].kill9();
    let killed = Instant::now();
    let gone = wait_until(Duration::from_secs(12), || {
        c.hosts[..2].iter().all(|h| !has_gossip_entry(h, &mac3) && peer_state(h, &name3).as_deref() != Some("alive"))
    });
    let took = killed.elapsed();
    assert!(gone, "a killed host's entries stayed");
    assert!(took < Duration::from_secs(10), "a killed host took {took:?} to leave every table");
    eprintln!("killed host gone from every table after {took:?}");
    assert!(!c.containers[0].ping("10.10.0.13", 1));

    let status = c.hosts[1].terminate();
    assert!(status.success());
    let stopped = Instant::now();
    assert!(wait_until(Duration::from_secs(5), || peer_state(&c.hosts[0], &name2).is_none()));
    let took = stopped.elapsed();
    assert!(took < Duration::from_millis(1500), "a cleanly stopped host took {took:?} to leave");
    eprintln!("stopped host gone after {took:?}");

    c.hosts[1].launch();
    c.hosts[2].launch();
    let back = wait_until(Duration::from_secs(10), || {
        peer_state(&c.hosts[0], &name2).as_deref() == Some("alive")
            && peer_state(&c.hosts[0], &name3).as_deref() == Some("alive")
            && has_gossip_entry(&c.hosts[0], &mac3)
    });
    assert!(back, "restarted hosts did not come back with their endpoints:\n{}", c.hosts[0].log());
    assert!(c.containers[0].ping("10.10.0.12", 2) && c.containers[0].ping("10.10.0.13", 2));
}

#[test]
fn outsiders_are_refused_forged_and_replayed_gossip_is_dropped() {
    let mut ul = Underlay::new();
    let (key, wrong) = (KeyFile::new("good", 0x42), KeyFile::new("wrong", 0x66));
    let ((n1, ip1), (n2, ip2), (n3, ip3)) = (ul.host("h1"), ul.host("h2"), ul.host("rogue"));
    let h1 = member(n1, &ip1, &key, FRONT);
    let h2 = member(n2, &ip2, &key, "");
    let evil = "\n[[network]]\nname = \"evil\"\nvni = 666\nsubnet = \"10.66.0.0/24\"\ninternal = true\n";
    let rogue = member(n3, &ip3, &wrong, evil);
    let victim = Netns::new("v");
    rogue.connect("evil", &victim, &[]);
    assert!(wait_until(Duration::from_secs(10), || peer_state(&h1, &h2.host.name).as_deref() == Some("alive")));

    // Capture one real gossip datagram from h1 to h2 on h2's underlay
    // port (an unfragmented one).
    let captured = ul.ns.py(py::CAPTURE_DATAGRAM, &["h2", &ip1, &ip2, "7946", "5"]);
    let datagram = unhex(captured.trim());
    assert!(datagram.starts_with(b"sdg1"), "{captured}");
    let rejected = |key: &str| sparse(&h2.stats()["gossip"]["rejected"], key);
    let before = h2.stats()["gossip"]["rejected"].clone();
    let (replayed, forged, junk) =
        (baseline(&before, "replayed"), baseline(&before, "auth_failed"), baseline(&before, "bad_magic"));
    // Replayed as is, altered (a fresh counter, so it is not refused as a
    // replay before its tag is checked), and plain junk, from the rogue host.
    let mut altered = datagram.clone();
    altered[16] ^= 0x80;
    let junk_bytes = b"hello there, let me in ".repeat(5);
    let sent = [hex(&datagram), hex(&altered), hex(&junk_bytes)];
    rogue.host.py(py::SEND_DATAGRAMS, &["0.0.0.0", &ip2, "7946", &sent[0], &sent[1], &sent[2]]);
    let more = |key: &str, than: u64| wait_until(Duration::from_secs(3), || rejected(key).is_some_and(|n| n > than));
    assert!(more("replayed", replayed), "replay not refused");
    assert!(more("auth_failed", forged), "forgery not refused");
    assert!(more("bad_magic", junk), "junk not refused");

    // The rogue never got in: not a peer, its network and container unknown.
    std::thread::sleep(Duration::from_secs(2));
    for h in [&h1, &h2] {
        assert!(peer_state(h, &rogue.host.name).is_none(), "the rogue is a peer of {}", h.host.name);
        assert_eq!(names(&h.json(&["network", "ls"]), "name"), ["front"]);
    }
    // It knocked at its seed, h1, which refused every datagram.
    let rejected = h1.stats()["gossip"]["rejected"].clone();
    assert!(sparse(&rejected, "wrong_key").is_some_and(|n| n > 0), "h1 refused nothing as wrong_key: {rejected}");
    assert!(rogue.json(&["peers"]).as_array().unwrap().is_empty(), "the rogue learned of members");
}

#[test]
fn a_network_created_on_one_host_appears_on_the_others() {
    let c = cluster("nets");
    c.hosts[1].ctl(&["network", "create", "late", "--vni", "300", "--subnet", "10.30.0.0/24", "--internal"]);
    for h in [&c.hosts[0], &c.hosts[2]] {
        let arrived = wait_until(Duration::from_secs(5), || {
            names(&h.json(&["network", "ls"]), "name").contains(&"late".to_owned())
        });
        assert!(arrived, "late did not reach {}", h.host.name);
    }
    let late = c.hosts[2].json(&["network", "inspect", "late"]);
    assert_eq!(late["vni"], 300);
    assert_eq!(late["origin"], "cluster");
    // Conflicting definitions are refused on the host that tries.
    let err = c.hosts[2].try_ctl(&["network", "create", "late", "--vni", "301"]).unwrap_err();
    assert!(err.contains("already exists"), "{err}");
    let err = c.hosts[0].try_ctl(&["network", "create", "other", "--vni", "300"]).unwrap_err();
    assert!(err.contains("vni 300 is already used"), "{err}");
    // Containers on two hosts use it.
    let (a, b) = (Netns::new("la"), Netns::new("lb"));
    c.hosts[0].connect("late", &a, &["--ip", "10.30.0.21"]);
    c.hosts[2].connect("late", &b, &["--ip", "10.30.0.23"]);
    assert!(wait_until(Duration::from_secs(5), || a.ping("10.30.0.23", 1)), "a -> b on the cluster network");
    // It cannot be removed where it was created while others use it.
    let err = c.hosts[1].try_ctl(&["network", "rm", "late"]).unwrap_err();
    assert!(err.contains("has endpoints attached"), "{err}");
}

/// The longest silence between replies in `ping -D` output (timestamps in
/// seconds), and how many replies there were.
fn longest_gap(ping_output: &str) -> (Duration, usize) {
    let stamps: Vec<f64> = ping_output
        .lines()
        .filter(|l| l.contains("bytes from"))
        .filter_map(|l| l.strip_prefix('[')?.split(']').next()?.parse().ok())
        .collect();
    let gap = stamps.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    (Duration::from_secs_f64(gap), stamps.len())
}

/// After kill -9 (or a clean stop) and a restart of one host, traffic through it resumes
/// within a second, both ways: the restarted host routes by the members it
/// kept (its containers' first ARP after the restart is answered at once),
/// and the others keep its entries until its new state arrives.
#[test]
fn traffic_resumes_within_a_second_of_a_restart_in_a_cluster() {
    let mut c = cluster("restart");
    let (to_first, to_third) = ("10.10.0.11", "10.10.0.13");
    // Three kill -9s, then a clean stop (after which the others forget the
    // host at once, and must hear it again).
    for round in 0..4 {
        // Pings every 10 ms for 4 s each way through host 1, stopped after 1 s.
        let out = std::thread::scope(|scope| {
            let there =
                scope.spawn(|| c.containers[1].exec(&["ping", "-D", "-i", "0.01", "-c", "400", "-W", "1", to_first]));
            let back =
                scope.spawn(|| c.containers[0].exec(&["ping", "-D", "-i", "0.01", "-c", "400", "-W", "1", to_third]));
            std::thread::sleep(Duration::from_secs(1));
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
            if round < 3 {
                c.hosts[0].kill9();
            } else {
                c.hosts[0].terminate();
            }
            c.hosts[0].launch();
            let t2 = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
            if std::env::var("DEBUG_PING").is_ok() {
                eprintln!("KILL {t:.3} READY {t2:.3}");
            }
            [there.join().unwrap(), back.join().unwrap()]
        });
        for (way, o) in ["to the restarted host", "from the restarted host"].iter().zip(&out) {
            let (gap, replies) = longest_gap(&String::from_utf8_lossy(&o.stdout));
            if std::env::var("DEBUG_PING").is_ok() {
                eprintln!("{}", String::from_utf8_lossy(&o.stdout));
            }
            eprintln!("round {round}, {way}: {replies} replies, longest silence {gap:?}");
            assert!(replies > 200, "{way}: only {replies} replies");
            assert!(
                gap < Duration::from_secs(1),
                "{way}: traffic stopped for {gap:?} (round {round})\n{}",
                c.hosts[0].log()
            );
        }
    }
}
