//! switchd as a CNI network for podman (Debian's 4.3, CNI backend): `podman
//! run --network` a switchd network gets its address, route and DNS from
//! switchd and reaches a container on another host; `podman rm` runs DEL
//! and the endpoint disappears; a bad configuration gets CNI's error form.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use switchd_e2e::{KeyFile, Netns, Podman, Underlay, bin, gossip_member, ip_of, ip6_of, wait_until};

#[test]
fn podman_containers_on_a_switchd_network_reach_another_host() {
    let mut ul = Underlay::new();
    let key = KeyFile::new("podman", 0x42);
    let ((ha, ipa), (hb, ipb)) = (ul.host("ha"), ul.host("hb"));
    let net = "\n[[network]]\nname = \"front\"\nvni = 960\nsubnet = \"10.96.0.0/24\"\nsubnet6 = \"fd00:96::/64\"\ninternal = true\n\
               \n[[network]]\nname = \"back\"\nvni = 962\nsubnet = \"10.96.2.0/24\"\ninternal = true\n\
               \n[[route]]\nnetworks = [\"front\", \"back\"]\n";
    let a = gossip_member(ha, &ipa, &key, net);
    let b = gossip_member(hb, &ipb, &key, net);
    let podman = Podman::new();
    podman.network("front", &a.socket());

    let c2 = Netns::new("c2");
    c2.enable_ipv6();
    let c2_endpoint = b.connect("front", &c2, &["--name", "c2"]);
    let (c2_ip, c2_ip6) = (ip_of(&c2_endpoint), ip6_of(&c2_endpoint));
    podman.ok(&["run", "-d", "--name", "pweb", "--network", "front", Podman::IMAGE, "sleep", "600"]);

    // switchd attached it under the container's name, with an address.
    let detail = a.json(&["network", "inspect", "front"]);
    let pweb = detail["endpoints"].as_array().unwrap().iter().find(|e| e["name"] == "pweb").cloned();
    let pweb = pweb.unwrap_or_else(|| panic!("pweb not attached: {detail}\n{}", a.log()));
    let pweb_ip = ip_of(&pweb);
    let addr = podman.ok(&["exec", "pweb", "ip", "-4", "addr", "show", "eth0"]);
    assert!(addr.contains(&format!("{pweb_ip}/24")), "{addr}");
    assert!(podman.ok(&["exec", "pweb", "cat", "/etc/resolv.conf"]).contains("nameserver 10.96.0.1"), "DNS from CNI");
    // No default route (internal), but one to the routed network.
    let routes = podman.ok(&["exec", "pweb", "ip", "route"]);
    assert!(routes.contains("10.96.2.0/24 via 10.96.0.1") && !routes.contains("default"), "{routes}");

    // Across hosts, by address and by name.
    assert!(wait_until(Duration::from_secs(10), || podman
        .exec(&["exec", "pweb", "ping", "-c", "1", "-W", "1", &c2_ip])
        .status
        .success()));
    assert!(c2.ping(&pweb_ip, 2), "c2 -> pweb");
    assert!(podman.ok(&["exec", "pweb", "nslookup", "c2", "10.96.0.1"]).contains(&c2_ip));

    // Dual stack: the CNI result gives podman the IPv6 address the
    // container configures by SLAAC, and it talks over IPv6 both ways, by
    // name too (AAAA).
    let pweb_ip6 = ip6_of(&pweb);
    let inspected =
        podman.ok(&["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.GlobalIPv6Address}}{{end}}", "pweb"]);
    assert_eq!(inspected.trim(), pweb_ip6, "podman's view of the address");
    assert!(
        wait_until(Duration::from_secs(15), || podman
            .ok(&["exec", "pweb", "ip", "-6", "addr", "show", "eth0"])
            .contains(&format!("{pweb_ip6}/64"))),
        "pweb never configured {pweb_ip6}\n{}",
        podman.ok(&["exec", "pweb", "ip", "-6", "addr"])
    );
    assert!(c2.has_ipv6(&c2_ip6), "c2's SLAAC address");
    assert!(
        wait_until(Duration::from_secs(10), || podman
            .exec(&["exec", "pweb", "ping", "-6", "-c", "1", "-W", "1", &c2_ip6])
            .status
            .success()),
        "pweb -> c2 over IPv6"
    );
    let back = wait_until(Duration::from_secs(10), || {
        c2.exec(&["ping", "-6", "-c", "1", "-W", "1", &pweb_ip6]).status.success()
    });
    assert!(
        back,
        "c2 -> pweb over IPv6\n{}\n{}\n{}",
        c2.ok(&["ip", "-6", "neigh"]),
        c2.ok(&["ip", "-6", "addr"]),
        b.ctl(&["stats"])
    );
    assert!(podman.ok(&["exec", "pweb", "nslookup", "-type=AAAA", "c2", "10.96.0.1"]).contains(&c2_ip6));

    // podman rm runs DEL: the endpoint goes.
    podman.ok(&["rm", "-f", "-t", "0", "pweb"]);
    let gone =
        !a.json(&["network", "inspect", "front"])["endpoints"].as_array().unwrap().iter().any(|e| e["name"] == "pweb");
    assert!(gone, "pweb still attached after podman rm");
}

/// Runs switchd-cni with `env` and `stdin`; its exit success and stdout JSON.
fn cni(env: &[(&str, &str)], stdin: &str) -> (bool, serde_json::Value) {
    let mut child = Command::new(bin("switchd-cni"))
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run switchd-cni");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    // CNI answers with JSON on stdout, also for an error; nothing at all
    // (DEL, CHECK) is Null. Anything else fails here, not as a Null later.
    let json = if out.stdout.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
    };
    (out.status.success(), json)
}

#[test]
fn bad_cni_input_gets_cnis_error_form_and_changes_nothing() {
    let net = "\n[[network]]\nname = \"front\"\nvni = 961\nsubnet = \"10.96.1.0/24\"\ninternal = true\n\
               subnet6 = \"fd00:96:1::/64\"\n";
    let sd = switchd_e2e::Switchd::start("", net);
    let c = Netns::new("c");
    c.enable_ipv6();
    let socket = sd.socket();
    let socket = socket.to_str().unwrap();
    let netns = format!("/run/netns/{}", c.name);
    let add =
        [("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", "abc123"), ("CNI_NETNS", netns.as_str()), ("CNI_IFNAME", "eth0")];
    let good = format!(r#"{{"cniVersion":"1.0.0","name":"front","type":"switchd-cni","socket":"{socket}"}}"#);

    let (ok, err) = cni(&add, r#"{"cniVersion":"1.0.0","type":"switchd-cni"}"#);
    assert!(!ok);
    assert_eq!(err["code"], 4, "{err}");
    assert!(err["details"].as_str().unwrap().contains("missing field `name`"), "{err}");
    let (ok, err) = cni(&add[..2], &good);
    assert!(!ok);
    assert_eq!((err["code"].as_u64(), err["msg"].as_str()), (Some(7), Some("CNI_NETNS is not set")));
    let (ok, err) = cni(&add, &good.replace("\"front\"", "\"nowhere\""));
    assert!(!ok);
    assert!(err["details"].as_str().unwrap().contains("no network named \"nowhere\""), "{err}");
    let (ok, err) = cni(&add, &good.replace("1.0.0", "7.0.0"));
    assert!(!ok && err["code"] == 1, "{err}");
    assert_eq!(sd.json(&["network", "inspect", "front"])["endpoints"].as_array().unwrap().len(), 0, "nothing attached");

    // And the good one: ADD, CHECK, DEL twice (idempotent).
    let (ok, result) = cni(&add, &good);
    assert!(ok, "{result}");
    assert_eq!(result["cniVersion"], "1.0.0");
    assert_eq!(result["interfaces"][0]["name"], "eth0");
    assert!(result["ips"][0]["address"].as_str().unwrap().starts_with("10.96.1."));
    assert_eq!(result["dns"]["nameservers"][0], "10.96.1.1");
    let check = [("CNI_COMMAND", "CHECK"), add[1], add[2], add[3]];
    assert!(cni(&check, &good).0, "CHECK");
    let del = [("CNI_COMMAND", "DEL"), add[1], add[2], add[3]];
    assert!(cni(&del, &good).0 && cni(&del, &good).0, "DEL, twice");
    assert!(!c.has_link("eth0"));

    // IPAM delegated to a standard plugin (host-local, from CNI_PATH), with
    // a range of each family: both its addresses are the endpoint's.
    let store = sd.dir.join("host-local");
    let delegated = format!(
        r#"{{"cniVersion":"1.0.0","name":"front","type":"switchd-cni","socket":"{socket}",
            "ipam":{{"type":"host-local","dataDir":"{}","ranges":[[{{"subnet":"10.96.1.0/24",
            "rangeStart":"10.96.1.200","rangeEnd":"10.96.1.210"}}],[{{"subnet":"fd00:96:1::/64",
            "rangeStart":"fd00:96:1::200","rangeEnd":"fd00:96:1::210"}}]]}}}}"#,
        store.display()
    );
    let with_path: Vec<(&str, &str)> = add.iter().copied().chain([("CNI_PATH", "/usr/lib/cni")]).collect();
    let (ok, result) = cni(&with_path, &delegated);
    assert!(ok, "{result}");
    assert_eq!(result["ips"][0]["address"], "10.96.1.200/24", "host-local's address: {result}");
    assert_eq!(result["ips"][1]["address"], "fd00:96:1::200/64", "and its IPv6 one: {result}");
    let detail = sd.json(&["network", "inspect", "front"]);
    assert_eq!(detail["endpoints"][0]["ip"], "10.96.1.200", "switchd attached it with host-local's address");
    assert_eq!(detail["endpoints"][0]["ip6"], "fd00:96:1::200", "both of them");
    assert!(c.has_ipv6("fd00:96:1::200"), "configured inside: {}", c.ok(&["ip", "-6", "addr"]));
    // host-local keeps a file per address it holds.
    let lease = store.join("front").join("10.96.1.200");
    assert!(lease.exists(), "host-local holds the address");
    let del_path: Vec<(&str, &str)> = del.iter().copied().chain([("CNI_PATH", "/usr/lib/cni")]).collect();
    assert!(cni(&del_path, &delegated).0);
    assert!(!lease.exists(), "DEL released it in host-local too");
    assert!(sd.json(&["network", "inspect", "front"])["endpoints"].as_array().unwrap().is_empty());
}

/// CNI 1.1 and the capabilities: ADD with `portMappings` publishes the
/// port and with `aliases` joins the service; `GC` detaches what the
/// runtime no longer lists (its address back to IPAM, its port
/// unpublished) and keeps the rest; `STATUS` says whether switchd is there.
#[test]
fn cni_port_mappings_aliases_gc_and_status() {
    let net = "\n[[network]]\nname = \"front\"\nvni = 963\nsubnet = \"10.96.3.0/24\"\ninternal = true\n";
    let sd = switchd_e2e::Switchd::start("", net);
    let socket = sd.socket();
    let socket = socket.to_str().unwrap();
    let (kept, leaked) = (Netns::new("kept"), Netns::new("leaked"));
    let conf = |extra: &str| {
        format!(r#"{{"cniVersion":"1.1.0","name":"front","type":"switchd-cni","socket":"{socket}"{extra}}}"#)
    };
    let add = |ns: &Netns, id: &str, extra: &str| {
        let netns = format!("/run/netns/{}", ns.name);
        let env = [("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", id), ("CNI_NETNS", &netns), ("CNI_IFNAME", "eth0")];
        let (ok, result) = cni(&env, &conf(extra));
        assert!(ok, "ADD {id}: {result}");
        result
    };
    let mapping = r#","runtimeConfig":{"portMappings":[{"hostPort":18080,"containerPort":80,"protocol":"tcp"}],"aliases":{"front":["web"]}}"#;
    add(&kept, "0123456789abcdef", mapping);
    let leaked_ip = add(&leaked, "fedcba9876543210", "")["ips"][0]["address"].as_str().unwrap().to_owned();
    let ports = sd.json(&["ports"]);
    assert_eq!(ports[0]["host_port"], 18080, "portMappings published: {ports}");
    assert_eq!(ports[0]["container"], "0123456789ab");
    let web = sd.json(&["service", "inspect", "web"]);
    assert_eq!(web["backends"][0]["name"], "0123456789ab", "aliases joined the service: {web}");
    assert_eq!(web["origin"], "alias");

    let (ok, status) = cni(&[("CNI_COMMAND", "STATUS")], &conf(""));
    assert!(ok && status.is_null(), "STATUS with switchd up: {status}");
    let gone = r#"{"cniVersion":"1.1.0","name":"front","type":"switchd-cni","socket":"/nonexistent.sock"}"#;
    let (ok, status) = cni(&[("CNI_COMMAND", "STATUS")], gone);
    assert!(!ok && status["code"] == 50, "STATUS without switchd: {status}");

    // The runtime still has the first; the second leaked.
    let valid = r#","cni.dev/valid-attachments":[{"containerID":"0123456789abcdef","ifname":"eth0"}]"#;
    let (ok, out) = cni(&[("CNI_COMMAND", "GC")], &conf(valid));
    assert!(ok, "GC: {out}");
    let names: Vec<String> = sd.json(&["network", "inspect", "front"])["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["0123456789ab"], "GC kept the listed one and removed the other");
    assert!(!leaked.has_link("eth0"), "the leaked interface is gone");
    assert_eq!(sd.json(&["ports"]).as_array().unwrap().len(), 1, "the kept one's port stays");
    // Its address is free again: a new attachment asking for it gets it.
    let again = Netns::new("again");
    sd.connect("front", &again, &["--ip", leaked_ip.split('/').next().unwrap()]);
    // DEL of the kept one unpublishes its port.
    let netns = format!("/run/netns/{}", kept.name);
    let del = [
        ("CNI_COMMAND", "DEL"),
        ("CNI_CONTAINERID", "0123456789abcdef"),
        ("CNI_NETNS", &netns),
        ("CNI_IFNAME", "eth0"),
    ];
    assert!(cni(&del, &conf(mapping)).0);
    assert!(sd.json(&["ports"]).as_array().unwrap().is_empty(), "DEL unpublished the mapping");
}
