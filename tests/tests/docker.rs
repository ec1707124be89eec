//! switchd as Docker's network driver, with a real dockerd (Debian's
//! docker.io 20.10) in host a's namespace and a plain switchd on host b:
//! `docker network create -d`, `docker run --network`, names through
//! Docker's resolver forwarding to switchd's, `docker network disconnect`,
//! and `docker network rm` refused while containers are attached.

use std::time::Duration;

use switchd_e2e::{Dockerd, KeyFile, Netns, Underlay, gossip_member, ip_of, wait_until};

#[test]
fn docker_containers_on_a_switchd_network_reach_another_host() {
    let mut ul = Underlay::new();
    let key = KeyFile::new("docker", 0x42);
    let ((ha, ipa), (hb, ipb)) = (ul.host("ha"), ul.host("hb"));
    let driver = format!("sdt-{}-driver", std::process::id());
    let socket = format!("/run/docker/plugins/{driver}.sock");
    let a = gossip_member(ha, &ipa, &key, &format!("\n[docker]\nsocket = \"{socket}\"\n"));
    let b = gossip_member(hb, &ipb, &key, "");
    let docker = Dockerd::start(&a.host);
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

    docker.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "front",
        "--dns",
        "10.95.0.1",
        Dockerd::IMAGE,
        "sleep",
        "600",
    ]);
    let c2 = Netns::new("c2");
    let c2_ip = ip_of(&b.connect("front", &c2, &["--name", "c2"]));
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
    let web_ip = docker.ok(&["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", "web"]);
    assert!(c2.ping(web_ip.trim(), 2), "c2 -> web");

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
    // Gone from the cluster once b's gossip no longer carries it either.
    let gone = wait_until(Duration::from_secs(15), || !a.ctl(&["network", "ls"]).contains("front"));
    assert!(gone, "a: {}\nb: {}\n{}", a.ctl(&["network", "ls"]), b.ctl(&["network", "ls"]), a.log());
}
