//! Network policy across two hosts: a policy isolating `db` lets only
//! the `frontend` service reach it on 5432/tcp, routed from another
//! network, switched or balanced through a VIP alike; the replies of db's
//! own connections pass; `trace` names the rule; drops are counted.

use std::time::Duration;

use switchd_e2e::{KeyFile, Netns, Switchd, Underlay, gossip_member as member, py, wait_until};

const NETWORKS: &str = r#"
[[network]]
name = "front"
vni = 100
subnet = "10.10.0.0/24"
internal = true

[[network]]
name = "back"
vni = 200
subnet = "10.20.0.0/24"
internal = true

[[route]]
networks = ["front", "back"]

[[policy]]
name = "db-from-frontend"
network = "back"
select = "service=db"
from = ["service=frontend"]
ports = ["5432/tcp"]
"#;

fn connects(from: &Netns, ip: &str, port: u16) -> String {
    from.py(py::TCP_CONNECT, &[ip, &port.to_string(), "1"])
}

#[test]
fn a_policy_lets_only_the_frontend_reach_the_database() {
    let mut ul = Underlay::new();
    let key = KeyFile::new("policy", 0x61);
    let (h1, ip1) = ul.host("h1");
    let (h2, ip2) = ul.host("h2");
    let hosts: Vec<Switchd> = vec![member(h1, &ip1, &key, NETWORKS), member(h2, &ip2, &key, NETWORKS)];
    // db on back (host 2); the frontend on front (host 1, routed); a
    // stranger on back (host 1, switched) and one on front.
    let (db, frontend, stranger, outsider) = (Netns::new("db"), Netns::new("fe"), Netns::new("st"), Netns::new("out"));
    hosts[1].connect("back", &db, &["--ip", "10.20.0.5", "--service", "db"]);
    hosts[0].connect("front", &frontend, &["--ip", "10.10.0.7", "--service", "frontend"]);
    hosts[0].connect("back", &stranger, &["--ip", "10.20.0.8"]);
    hosts[0].connect("front", &outsider, &["--ip", "10.10.0.9"]);
    let _servers = [
        db.spawn_py(py::ECHO_SERVER, &["5432"]),
        db.spawn_py(py::ECHO_SERVER, &["22"]),
        stranger.spawn_py(py::ECHO_SERVER, &["8080"]),
    ];
    // Every host knows every endpoint (the policy's sets come from them).
    assert!(
        wait_until(Duration::from_secs(10), || connects(&frontend, "10.20.0.5", 5432).contains("connected")),
        "frontend -> db:5432 never allowed: {}\n{}",
        connects(&frontend, "10.20.0.5", 5432),
        hosts[0].log()
    );
    assert!(connects(&frontend, "10.20.0.5", 22).contains("timed out"), "frontend -> db:22 is not allowed");
    assert!(connects(&stranger, "10.20.0.5", 5432).contains("timed out"), "a stranger on db's network");
    assert!(connects(&outsider, "10.20.0.5", 5432).contains("timed out"), "an outsider routed from front");
    // What db opens itself, and its replies, pass; the stranger is not isolated.
    assert!(connects(&db, "10.20.0.8", 8080).contains("connected"), "db -> stranger and back");
    assert!(db.ping("10.20.0.8", 1), "db's ping and its reply");
    assert!(!stranger.ping("10.20.0.5", 1), "the stranger's ping to db");

    // Balanced traffic is judged by the backend it goes to (a VIP is
    // reached from its own network, as Docker's are).
    let fe2 = Netns::new("fe2");
    hosts[0].connect("back", &fe2, &["--ip", "10.20.0.9", "--service", "frontend"]);
    let vip = hosts[0].json(&["service", "create", "db", "--network", "back", "--port", "5432/tcp"])["vip"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        wait_until(Duration::from_secs(10), || connects(&fe2, &vip, 5432).contains("connected")),
        "a frontend -> db's VIP never allowed"
    );
    assert!(connects(&stranger, &vip, 5432).contains("timed out"), "a stranger through db's VIP");

    // trace names the rule, or says none allows it.
    let allowed = hosts[0].ctl(&[
        "trace",
        "front",
        "--from",
        &frontend.name,
        "--to",
        "10.20.0.5",
        "--proto",
        "tcp",
        "--dport",
        "5432",
    ]);
    assert!(allowed.contains("allowed by policy db-from-frontend"), "{allowed}");
    let denied = hosts[0].ctl(&[
        "trace",
        "back",
        "--from",
        &stranger.name,
        "--to",
        "10.20.0.5",
        "--proto",
        "tcp",
        "--dport",
        "5432",
    ]);
    assert!(denied.contains("no policy's rule allows") && denied.contains("dropped: policy_denied"), "{denied}");

    // Counted on the sender's host, before the underlay.
    let stats = hosts[0].port_stats(&stranger.name);
    assert!(stats["drops"]["policy_denied"].as_u64().unwrap() >= 1, "{stats}");
    let vtep = hosts[1].stats();
    assert!(vtep["policy"]["denied"].as_u64().is_some(), "{vtep}");
}

/// A policy added at run time on one host is enforced by the other's
/// (gossip); one that selects nothing is shown so; removed, it is gone
/// everywhere.
#[test]
fn policies_are_the_clusters() {
    let networks = NETWORKS.split("[[policy]]").next().unwrap();
    let mut ul = Underlay::new();
    let key = KeyFile::new("policy-rt", 0x62);
    let (h1, ip1) = ul.host("h1");
    let (h2, ip2) = ul.host("h2");
    let hosts: Vec<Switchd> = vec![member(h1, &ip1, &key, networks), member(h2, &ip2, &key, networks)];
    let (db, stranger) = (Netns::new("db"), Netns::new("st"));
    hosts[1].connect("back", &db, &["--ip", "10.20.0.5", "--service", "db"]);
    hosts[0].connect("back", &stranger, &["--ip", "10.20.0.8"]);
    let _server = db.spawn_py(py::ECHO_SERVER, &["5432"]);
    assert!(wait_until(Duration::from_secs(10), || connects(&stranger, "10.20.0.5", 5432).contains("connected")));

    let add = [
        "policy",
        "add",
        "db-only-frontend",
        "--network",
        "back",
        "--select",
        "service=db",
        "--from",
        "service=frontend",
        "--port",
        "5432/tcp",
    ];
    hosts[1].ctl(&add);
    let ghost = ["policy", "add", "ghost", "--network", "back", "--select", "name=nobody-*"];
    hosts[1].ctl(&ghost);
    assert!(
        wait_until(Duration::from_secs(10), || connects(&stranger, "10.20.0.5", 5432).contains("timed out")),
        "the other host never enforced the policy"
    );
    let ls = hosts[0].json(&["policy", "ls"]);
    let by_name = |n: &str| {
        ls.as_array().unwrap().iter().find(|p| p["name"] == n).cloned().unwrap_or_else(|| panic!("{n}: {ls}"))
    };
    assert_eq!(by_name("db-only-frontend")["origin"], "cluster");
    assert_eq!(by_name("db-only-frontend")["selects"][0], db.name.as_str());
    assert_eq!(by_name("ghost")["selects"].as_array().unwrap().len(), 0, "selects nothing, and says so");
    assert!(hosts[0].ctl(&["policy", "ls"]).contains("(matches nothing yet)"));
    let err = hosts[0].try_ctl(&["policy", "add", "x", "--network", "nowhere", "--select", "*"]).unwrap_err();
    assert!(err.contains("no network named \"nowhere\""), "{err}");

    hosts[0].ctl(&["policy", "rm", "db-only-frontend"]);
    assert!(
        wait_until(Duration::from_secs(10), || connects(&stranger, "10.20.0.5", 5432).contains("connected")),
        "removed on one host, still enforced"
    );
    assert!(
        wait_until(Duration::from_secs(10), || !hosts[1].ctl(&["policy", "ls"]).contains("db-only-frontend")),
        "the removal did not reach the host that added it"
    );
}

/// `icc = false`: the network's containers reach each other only where a
/// policy allows, while switchd's own health checks (from the gateway)
/// still reach them.
#[test]
fn a_network_without_icc_isolates_its_containers() {
    let quiet = "\n[[network]]\nname = \"quiet\"\nvni = 300\nsubnet = \"10.30.0.0/24\"\ninternal = true\nicc = false\n";
    let mut ul = Underlay::new();
    let key = KeyFile::new("policy-icc", 0x63);
    let (h1, ip1) = ul.host("h1");
    let (h2, ip2) = ul.host("h2");
    let hosts: Vec<Switchd> = vec![member(h1, &ip1, &key, quiet), member(h2, &ip2, &key, quiet)];
    let (a, b) = (Netns::new("a"), Netns::new("b"));
    hosts[0].connect("quiet", &a, &["--ip", "10.30.0.2"]);
    hosts[1].connect("quiet", &b, &["--ip", "10.30.0.3", "--service", "web"]);
    let _server = b.spawn_py(py::NAMED_SERVER, &["80", "b"]);
    hosts[1].ctl(&[
        "service",
        "create",
        "web",
        "--network",
        "quiet",
        "--port",
        "80/tcp",
        "--health",
        "tcp",
        "--health-interval",
        "300",
        "--health-threshold",
        "1",
    ]);
    std::thread::sleep(Duration::from_secs(2));
    assert!(connects(&a, "10.30.0.3", 80).contains("timed out"), "a reached b with icc off");
    assert!(!a.ping("10.30.0.3", 1), "a pinged b with icc off");
    let web = hosts[1].json(&["service", "inspect", "web"]);
    assert_eq!(web["backends"][0]["state"], "healthy", "the gateway's health check got through: {web}");

    hosts[0].ctl(&[
        "policy",
        "add",
        "a-to-b",
        "--network",
        "quiet",
        "--select",
        &format!("name={}", b.name),
        "--from",
        &format!("name={}", a.name),
        "--port",
        "80/tcp",
    ]);
    assert!(
        wait_until(Duration::from_secs(10), || connects(&a, "10.30.0.3", 80).contains("connected")),
        "a policy did not open the way"
    );
    let vip = web["vip"].as_str().unwrap();
    assert!(connects(&a, vip, 80).contains("connected"), "through the VIP too");
    assert!(connects(&a, "10.30.0.3", 81).contains("timed out"), "only the port allowed");
}
