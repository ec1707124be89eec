//! `switchctl reload` and SIGHUP: host.toml's added networks, ports, services and
//! routes applied live, removed ones taken away, an invalid file refused
//! with `--check`'s messages and nothing changed, and what only a restart
//! applies said so.

use std::time::Duration;

use switchd_e2e::{Netns, Switchd, port_entry as port, run, wait_until};

const FRONT: &str = "\n[[network]]\nname = \"front\"\nvni = 100\nsubnet = \"10.10.0.0/24\"\ninternal = true\n";
const BACK: &str = "\n[[network]]\nname = \"back\"\nvni = 200\nsubnet = \"10.20.0.0/24\"\ninternal = true\n";
const ROUTE: &str = "\n[[route]]\nnetworks = [\"front\", \"back\"]\n";

fn networks(sd: &Switchd) -> Vec<String> {
    let list = sd.json(&["network", "ls"]);
    list.as_array().unwrap().iter().map(|n| n["name"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn a_reload_adds_and_removes_networks_ports_and_routes_and_refuses_a_broken_file() {
    let (c1, c2, c3) = (Netns::new("c1"), Netns::new("c2"), Netns::new("c3"));
    let sd = Switchd::start("", &format!("{FRONT}{}", port("front", &c1, "10.10.0.11")));
    let head = std::fs::read_to_string(sd.config_path()).unwrap();
    let head = head[..head.find("\n[[network]]").unwrap()].to_owned();
    let write = |body: &str| std::fs::write(sd.config_path(), format!("{head}\n{body}")).unwrap();

    // Added: a network, a route, a port on each network.
    let service = "\n[[service]]\nname = \"web\"\nnetwork = \"front\"\nports = [\"80/tcp\"]\n";
    let grown = format!(
        "{FRONT}{BACK}{ROUTE}{service}{}{}{}",
        port("front", &c1, "10.10.0.11"),
        port("back", &c2, "10.20.0.12"),
        port("front", &c3, "10.10.0.13")
    );
    write(&grown);
    let out = sd.ctl(&["reload"]);
    eprintln!("{out}");
    for line in [
        "added network back".to_owned(),
        "added route back front".to_owned(),
        format!("added port {} on back", c2.name),
        format!("added port {} on front", c3.name),
        "added service web on front".to_owned(),
    ] {
        assert!(out.contains(&line), "{line:?} missing in\n{out}");
    }
    assert_eq!(networks(&sd), ["back", "front"]);
    assert!(c3.ping("10.10.0.11", 1), "the new port on front\n{}", sd.log());
    assert!(c1.ping("10.20.0.12", 1), "across the new route\n{}", sd.log());

    // Broken: refused with the messages --check gives, nothing changed.
    write(&grown.replace("vni = 200", "vni = 0"));
    let e = sd.try_ctl(&["reload"]).expect_err("an invalid file is refused");
    let check = run(
        switchd_e2e::bin("switchd").to_str().unwrap(),
        &["--config", sd.config_path().to_str().unwrap(), "--check"],
    );
    let check = String::from_utf8_lossy(&check.stderr).trim().to_owned();
    assert!(e.contains("nothing changed") && e.contains("network[1].vni"), "{e}");
    assert!(e.contains(&check), "the same messages as --check:\n{e}\n--check: {check}");
    assert_eq!(networks(&sd), ["back", "front"]);
    assert!(c2.has_link("eth0") && c3.has_link("eth0"));

    // SIGHUP: the port on front and the route go again; [host] changes
    // wait for a restart.
    write(&format!("{FRONT}{BACK}{}{}", port("front", &c1, "10.10.0.11"), port("back", &c2, "10.20.0.12")));
    let head_changed = head.clone() + "\nmac_limit = 77";
    assert!(run("kill", &["-HUP", &sd.pid().to_string()]).status.success());
    assert!(wait_until(Duration::from_secs(5), || !c3.has_link("eth0")), "c3 detached\n{}", sd.log());
    assert!(sd.json(&["route", "ls"]).as_array().unwrap().is_empty(), "the route is gone");
    assert!(sd.try_ctl(&["service", "inspect", "web"]).is_err(), "the service is gone");
    assert!(!c1.ping("10.20.0.12", 1), "nothing routes front to back now");
    std::fs::write(
        sd.config_path(),
        format!("{head_changed}\n{FRONT}{BACK}{}{}", port("front", &c1, "10.10.0.11"), port("back", &c2, "10.20.0.12")),
    )
    .unwrap();
    let out = sd.ctl(&["reload"]);
    assert!(out.contains("needs a restart: [host]"), "{out}");
    assert!(sd.log().contains("reload: removed port"), "SIGHUP's changes are logged:\n{}", sd.log());
}
