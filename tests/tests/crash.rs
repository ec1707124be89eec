//! Crash consistency: `kill -9` at random moments of `network connect` and
//! `network disconnect`, then a restart, must leave the containers and the
//! state agreeing: no interface without a record, no record without its
//! interface, no address held twice, and the operation, retried, works.

use std::collections::{BTreeMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use switchd_e2e::{Netns, Switchd, bin};

const NETWORK: &str = r#"
[[network]]
name = "front"
vni = 100
subnet = "10.10.0.0/24"
internal = true
"#;

/// A small deterministic generator (xorshift64*), seeded per run and
/// printed, so a failing sequence can be replayed with `CRASH_SEED`.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// `switchctl ARGS` started in the background: killed switchd under it.
fn switchctl_in_background(sd: &Switchd, args: &[&str]) -> Child {
    Command::new(bin("switchctl"))
        .arg("--socket")
        .arg(sd.socket())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start switchctl")
}

/// What the container has: interface name -> (MAC, IPv4 addresses).
fn interfaces(ns: &Netns) -> BTreeMap<String, (String, Vec<String>)> {
    let out = ns.ok(&["ip", "-j", "addr", "show"]);
    let links: serde_json::Value = serde_json::from_str(&out).expect("ip -j prints JSON");
    let mut found = BTreeMap::new();
    for link in links.as_array().expect("a list of links") {
        let name = link["ifname"].as_str().expect("ifname").to_owned();
        if name == "lo" {
            continue;
        }
        let mac = link["address"].as_str().expect("address").to_owned();
        let v4 = link["addr_info"]
            .as_array()
            .expect("addr_info")
            .iter()
            .filter(|a| a["family"] == "inet")
            .map(|a| a["local"].as_str().expect("local").to_owned())
            .collect();
        found.insert(name, (mac, v4));
    }
    found
}

/// Checks that the state and the containers agree; returns which
/// containers are connected.
fn check_consistent(sd: &Switchd, containers: &[Netns], when: &str) -> HashSet<String> {
    let inspect = sd.json(&["network", "inspect", "front"]);
    let endpoints = inspect["endpoints"].as_array().expect("endpoints");
    let mut ips = HashSet::new();
    let mut connected = HashSet::new();
    for e in endpoints {
        let ip = e["ip"].as_str().expect("every endpoint has an address").to_owned();
        assert!(ips.insert(ip.clone()), "{when}: {ip} is held twice in the state: {inspect}");
        connected.insert(e["netns"].as_str().expect("netns").to_owned());
    }
    let mut configured = HashSet::new();
    for ns in containers {
        let have = interfaces(ns);
        let records: Vec<&serde_json::Value> =
            endpoints.iter().filter(|e| e["netns"].as_str() == Some(ns.name.as_str())).collect();
        assert!(records.len() <= 1, "{when}: {} has {} records", ns.name, records.len());
        match records.first() {
            None => assert!(have.is_empty(), "{when}: orphan interfaces in {} with no record: {have:?}", ns.name),
            Some(r) => {
                let ifname = r["ifname"].as_str().expect("ifname");
                assert_eq!(have.len(), 1, "{when}: {} should have only {ifname}: {have:?}", ns.name);
                let (mac, v4) = have
                    .get(ifname)
                    .unwrap_or_else(|| panic!("{when}: the record says {ifname} in {}, which has {have:?}", ns.name));
                assert_eq!(Some(mac.as_str()), r["mac"].as_str(), "{when}: MAC of {ifname} in {}", ns.name);
                assert_eq!(v4, &vec![r["ip"].as_str().expect("ip").to_owned()], "{when}: address in {}", ns.name);
            }
        }
        for (_, (_, v4)) in have {
            for ip in v4 {
                assert!(configured.insert(ip.clone()), "{when}: {ip} is configured in two containers");
            }
        }
    }
    connected
}

/// Starts `args`, kills switchd after `delay`, restarts it and checks.
fn crash_during(sd: &mut Switchd, containers: &[Netns], args: &[&str], delay: Duration) -> HashSet<String> {
    let mut client = switchctl_in_background(sd, args);
    std::thread::sleep(delay);
    sd.kill9();
    let _ = client.wait();
    sd.launch();
    check_consistent(sd, containers, &format!("after kill -9 {} ms into {args:?}", delay.as_micros() as f64 / 1e3))
}

#[test]
fn kill_9_during_connect_and_disconnect_loses_and_leaks_nothing() {
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_nanos() as u64 | 1);
    eprintln!("CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let containers: Vec<Netns> = (0..3).map(|i| Netns::new(&format!("c{i}"))).collect();
    let mut sd = Switchd::start("", NETWORK);
    let started = Instant::now();
    let (mut rolled_back, mut completed) = (0, 0);
    for round in 0..50 {
        let ns = &containers[round % containers.len()];
        let name = format!("ct{round}");
        let connect = ["network", "connect", "front", ns.name.as_str(), "--name", name.as_str()];
        let delay = Duration::from_micros(rng.below(15_000));
        if crash_during(&mut sd, &containers, &connect, delay).contains(&ns.name) {
            completed += 1;
        } else {
            rolled_back += 1;
            sd.ctl(&connect);
        }
        let after = check_consistent(&sd, &containers, "after a retried connect");
        assert!(after.contains(&ns.name), "{} is connected", ns.name);

        let disconnect = ["network", "disconnect", "front", ns.name.as_str()];
        let delay = Duration::from_micros(rng.below(15_000));
        if crash_during(&mut sd, &containers, &disconnect, delay).contains(&ns.name) {
            sd.ctl(&disconnect);
        }
        let after = check_consistent(&sd, &containers, "after a retried disconnect");
        assert!(!after.contains(&ns.name), "{} is disconnected", ns.name);
    }
    let reconciled = sd.log().matches("reconciled at start").count();
    eprintln!(
        "100 kills in {:.1} s; connects done before the kill: {completed}, rolled back or not begun: \
         {rolled_back}; operations cut short and finished at start: {reconciled}",
        started.elapsed().as_secs_f64()
    );
    assert!(reconciled > 0, "no kill ever cut an operation short, so nothing was tested:\n{}", sd.log());
}
