//! Encrypted networks end to end: sealed on the wire (a capture never shows
//! their bytes), bad packets dropped by reason, a restart is a new session
//! accepted at once, key rotation under a ping flood loses nothing, a
//! host without a network's key refuses to carry it, and hosts sealing one
//! network with different ciphers carry it together.

use std::time::{Duration, Instant};

use serde_json::Value;
use switchd_crypto::Cipher;
use switchd_e2e::{
    KeyFile, Netns, Proc, Switchd, Underlay, baseline, count, gossip_member as member, hex, py, sparse, unhex,
    wait_until,
};

/// `plain` (VNI 100) and `secret` (VNI 200, encrypted with the cluster key).
const NETWORKS: &str = "\n[[network]]\nname = \"plain\"\nvni = 100\nsubnet = \"10.10.0.0/24\"\ninternal = true\n\
                        \n[[network]]\nname = \"secret\"\nvni = 200\nsubnet = \"10.20.0.0/24\"\ninternal = true\nencrypted = true\n";

/// `n` hosts by gossip, both networks defined on the first; a container on
/// each host, on both networks (plain: eth0 10.10.0.1N, secret: eth1 10.20.0.1N).
struct Cluster {
    ul: Underlay,
    key: KeyFile,
    hosts: Vec<Switchd>,
    containers: Vec<Netns>,
}

fn cluster(n: usize) -> Cluster {
    let mut ul = Underlay::new();
    let key = KeyFile::new("cluster", 0x42);
    let mut hosts = Vec::new();
    for i in 1..=n {
        let (ns, ip) = ul.host(&format!("h{i}"));
        hosts.push(member(ns, &ip, &key, if i == 1 { NETWORKS } else { "" }));
    }
    for h in &hosts[1..] {
        let both = wait_until(Duration::from_secs(10), || h.json(&["network", "ls"]).as_array().unwrap().len() == 2);
        assert!(both, "the networks did not reach {}:\n{}", h.host.name, h.log());
    }
    let containers: Vec<Netns> = (1..=n).map(|i| Netns::new(&format!("c{i}"))).collect();
    for (i, (h, c)) in hosts.iter().zip(&containers).enumerate() {
        h.connect("plain", c, &["--ip", &format!("10.10.0.1{}", i + 1)]);
        h.connect("secret", c, &["--ip", &format!("10.20.0.1{}", i + 1)]);
    }
    let c = Cluster { ul, key, hosts, containers };
    for i in 0..n {
        for j in 0..n {
            if i != j {
                let ip = format!("10.20.0.1{}", j + 1);
                let reached = wait_until(Duration::from_secs(10), || c.containers[i].ping(&ip, 1));
                assert!(reached, "c{} cannot reach {ip} on the encrypted network", i + 1);
            }
        }
    }
    c
}

fn network<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array().unwrap().iter().find(|n| n["name"] == name).unwrap_or_else(|| panic!("no {name} in {list}"))
}

/// Drops by reason of the VTEP at `vtep`, as `stats` shows on `sd` (which
/// must list that VTEP): only reasons that happened are there.
fn vtep_drops(sd: &Switchd, vtep: &str) -> Value {
    let drops = sd.vtep_stats(vtep)["drops"].clone();
    assert!(drops.is_object(), "no drops map for {vtep}: {drops}");
    drops
}

/// How many datagrams from `vtep` `sd` dropped as `reason`, if any.
fn drops(sd: &Switchd, vtep: &str, reason: &str) -> Option<u64> {
    sparse(&vtep_drops(sd, vtep), reason)
}

/// Starts capturing VXLAN on `sd`'s underlay into `file` in its directory;
/// returns once tcpdump writes (immediate mode and -U: every packet reaches
/// the file as it is seen). Stop it by dropping the process.
fn capture_underlay(sd: &Switchd, file: &str) -> (Proc, std::path::PathBuf) {
    let pcap = sd.dir.join(file);
    let path = pcap.to_str().unwrap();
    let capture = ["tcpdump", "-i", "u0", "--immediate-mode", "-U", "-s", "0", "-w", path, "udp", "port", "4789"];
    let tcpdump = sd.host.spawn(&capture);
    let capturing = wait_until(Duration::from_secs(5), || std::fs::metadata(&pcap).is_ok_and(|m| m.len() >= 24));
    assert!(capturing, "tcpdump did not start");
    std::thread::sleep(Duration::from_millis(300));
    (tcpdump, pcap)
}

/// The UDP payloads of the IPv4 packets in a pcap file (Ethernet link
/// type), to VXLAN's port 4789.
fn vxlan_payloads(pcap: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    for frame in switchd_e2e::pcap_frames(pcap) {
        if frame.len() < 14 + 20 + 8 || frame[12..14] != [0x08, 0x00] || frame[14 + 9] != 17 {
            continue;
        }
        let ihl = usize::from(frame[14] & 0x0f) * 4;
        let udp = &frame[14 + ihl..];
        if u16::from_be_bytes([udp[2], udp[3]]) == 4789 {
            out.push(&udp[8..]);
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Sends `marker` repeated (about 60 KB, so the container's TSO makes one
/// large segment of it) over TCP from `from` to `to_ip`, where a listener
/// runs in `to`.
fn transfer(from: &Netns, to: &Netns, to_ip: &str, marker: &str) {
    let _server = to.spawn_py(py::TCP_SINK, &["7000"]);
    from.py(py::TCP_SEND, &[to_ip, "7000", marker, "3000"]);
}

#[test]
fn three_hosts_encrypted_and_plain_side_by_side_and_the_wire_never_shows_the_encrypted_bytes() {
    let c = cluster(3);
    let (h1, h2) = (&c.hosts[0], &c.hosts[1]);
    let nets = h2.json(&["network", "ls"]);
    let secret = network(&nets, "secret");
    assert_eq!((secret["encrypted"].as_bool(), secret["mtu"].as_u64()), (Some(true), Some(1414)));
    // No cipher named: each host seals with the faster one on its CPU.
    assert_eq!(secret["cipher"], Cipher::preferred().as_str());
    assert_eq!(secret["default_cipher"], true);
    assert_eq!(network(&nets, "plain")["mtu"], 1450);
    assert_eq!(c.containers[1].ok(&["cat", "/sys/class/net/eth1/mtu"]).trim(), "1414", "containers get the MTU");

    // Capture h1's underlay while both networks carry a known marker.
    let (tcpdump, pcap) = capture_underlay(h1, "underlay.pcap");
    let (plain_marker, secret_marker) = ("PLAIN-MARKER-7f3a9c-", "SECRET-MARKER-7f3a9c-");
    transfer(&c.containers[0], &c.containers[1], "10.10.0.12", plain_marker);
    transfer(&c.containers[0], &c.containers[1], "10.20.0.12", secret_marker);
    transfer(&c.containers[2], &c.containers[0], "10.20.0.11", secret_marker);
    let hex = |m: &str| m.bytes().map(|b| format!("{b:02x}")).collect::<String>()[..32].to_owned();
    assert!(c.containers[0].ping_pattern("10.20.0.13", &hex(secret_marker)));
    std::thread::sleep(Duration::from_millis(500));
    drop(tcpdump);

    let bytes = std::fs::read(&pcap).unwrap();
    let payloads = vxlan_payloads(&bytes);
    let vni = |p: &[u8]| u32::from_be_bytes([0, p[4], p[5], p[6]]);
    let sealed: Vec<&[u8]> = payloads.iter().copied().filter(|p| p[0] == 0x48 && vni(p) == 200).collect();
    let plain: Vec<&[u8]> = payloads.iter().copied().filter(|p| p[0] == 0x08 && vni(p) == 100).collect();
    let sealed_bytes: usize = sealed.iter().map(|p| p.len()).sum();
    assert!(sealed_bytes > 120_000, "both encrypted transfers were captured: {sealed_bytes} bytes sealed");
    assert!(plain.iter().any(|p| contains(p, plain_marker.as_bytes())), "the plain marker is visible");
    assert!(!contains(&bytes, secret_marker.as_bytes()), "the encrypted marker appeared on the wire");
    assert!(!contains(&bytes, &secret_marker.as_bytes()[..8]), "even part of it");
    assert!(!payloads.iter().any(|p| p[0] == 0x08 && vni(p) == 200), "plaintext VXLAN on the encrypted VNI");
    eprintln!(
        "captured {} sealed and {} plain VXLAN packets; marker only on the plain network",
        sealed.len(),
        plain.len()
    );

    // Gossip members say they finish inner checksums left partial: the
    // transfers into c2 came so on both networks, sealed or not.
    let stats = h2.stats();
    for net in ["plain", "secret"] {
        let ports = stats["ports"].as_array().expect("ports");
        let port = ports.iter().find(|p| p["endpoint"] == c.containers[1].name.as_str() && p["network"] == net);
        let port = port.unwrap_or_else(|| panic!("no port of c2 on {net}: {stats}"));
        assert!(count(port, "deferred_checksums") > 0, "nothing deferred into c2 on {net}: {port}");
    }

    let stats = h1.stats();
    let crypto = &stats["crypto"];
    assert!(count(crypto, "sealed") > 0 && count(crypto, "opened") > 0, "{crypto}");
    assert!(count(crypto, "sessions") >= 2, "a session from each peer: {crypto}");
    // No host dropped anything of its two peers' for a crypto reason.
    for h in &c.hosts {
        let vteps = h.stats()["vteps"].as_array().expect("vteps").clone();
        assert_eq!(vteps.len(), 2, "{} lists a VTEP for each other host: {vteps:?}", h.host.name);
        for v in &vteps {
            let d = &v["drops"];
            for bad in ["auth_failed", "replayed", "unknown_key", "old_session", "plaintext_on_encrypted"] {
                assert!(sparse(d, bad).is_none(), "{} dropped {bad} from {}: {d}", h.host.name, v["vtep"]);
            }
        }
    }
}

/// Captures one sealed datagram (VNI `vni`) from `from_ip` to `to_ip` as
/// it crosses the underlay's bridge port `port`; returns it as hex.
fn capture_sealed(ul: &Underlay, port: &str, from_ip: &str, to_ip: &str, vni: u32) -> String {
    // Flags 0x48 (sealed), the VNI at bytes 4..7.
    let vni = format!("4={}", hex(&vni.to_be_bytes()[1..]));
    ul.ns.py(py::CAPTURE_DATAGRAM, &[port, from_ip, to_ip, "4789", "10", "0=48", &vni]).trim().to_owned()
}

/// Sends datagrams (hex) to `to_ip`:4789 from a socket bound to `from_ip`
/// in `ns` (a host that is a known VTEP of the receiver).
fn send_from(ns: &Netns, from_ip: &str, to_ip: &str, datagrams: &[String]) {
    let mut args = vec![from_ip, to_ip, "4789"];
    args.extend(datagrams.iter().map(String::as_str));
    ns.py(py::SEND_DATAGRAMS, &args);
}

/// Changes the byte at `at` of a hex datagram.
fn with_byte(datagram: &str, at: usize, f: impl Fn(u8) -> u8) -> String {
    let mut bytes = unhex(datagram);
    bytes[at] = f(bytes[at]);
    hex(&bytes)
}

#[test]
fn bad_packets_are_dropped_by_reason_and_a_restart_is_a_new_session_accepted_at_once() {
    let mut c = cluster(2);
    let (ip1, ip2) = ("198.18.0.1", "198.18.0.2");
    let pinging = c.containers[0].spawn(&["ping", "-i", "0.05", "10.20.0.12"]);
    let captured = capture_sealed(&c.ul, "h2", ip1, ip2, 200);
    drop(pinging);
    assert!(captured.len() > 2 * 44, "a sealed datagram: {captured}");

    // Counter at bytes 20..28, ciphertext from 28, key id 8..12, session 12..20.
    let fresh_counter = with_byte(&captured, 20, |b| b ^ 0x40);
    let attacks = [
        ("replayed", captured.clone()),
        ("auth_failed", with_byte(&fresh_counter, 30, |b| b ^ 0x01)), // ciphertext tampered
        ("auth_failed", with_byte(&captured, 12, |b| b.wrapping_add(1))), // forged (later) session
        ("sealed_on_plain", with_byte(&fresh_counter, 6, |_| 100)),   // moved to the plain network
        ("unknown_key", with_byte(&fresh_counter, 8, |b| b ^ 0xff)),
        ("sealed_header", with_byte(&captured, 1, |_| 9)), // unknown cipher
        ("truncated", captured[..2 * 40].to_owned()),
        ("plaintext_on_encrypted", with_byte(&captured, 0, |_| 0x08)),
    ];
    let before = vtep_drops(&c.hosts[1], ip1);
    let mut want: std::collections::BTreeMap<&str, u64> =
        attacks.iter().map(|(reason, _)| (*reason, baseline(&before, reason))).collect();
    for (reason, _) in &attacks {
        *want.get_mut(reason).unwrap() += 1;
    }
    let session_before = count(&c.hosts[1].stats()["crypto"], "sessions");
    let datagrams: Vec<String> = attacks.iter().map(|(_, d)| d.clone()).collect();
    send_from(&c.hosts[0].host, ip1, ip2, &datagrams);
    let counted = wait_until(Duration::from_secs(3), || {
        want.iter().all(|(reason, n)| drops(&c.hosts[1], ip1, reason).is_some_and(|got| got >= *n))
    });
    assert!(counted, "drops {} not as expected {want:?}", vtep_drops(&c.hosts[1], ip1));
    std::thread::sleep(Duration::from_millis(200));
    // Exactly one more of each, and nothing else (the map is only these
    // reasons, with what it had before).
    let after = vtep_drops(&c.hosts[1], ip1);
    for (reason, n) in &want {
        assert_eq!(count(&after, reason), *n, "{reason}: {after}");
    }
    let mut others = after.as_object().unwrap().clone();
    others.retain(|reason, _| !want.contains_key(reason.as_str()));
    let mut others_before = before.as_object().unwrap().clone();
    others_before.retain(|reason, _| !want.contains_key(reason.as_str()));
    assert_eq!(others, others_before, "dropped for another reason too: {after}");
    let sessions = count(&c.hosts[1].stats()["crypto"], "sessions");
    assert_eq!(sessions, session_before, "no bad packet made the receiver keep state");
    assert!(c.containers[0].ping("10.20.0.12", 2), "traffic still flows");

    // A restart: a new session, greater, accepted by the peer at once; the
    // previous boot's packets are refused as such.
    let old_session = c.hosts[0].json(&["status"])["session"].as_str().unwrap().to_owned();
    let drops_before = vtep_drops(&c.hosts[1], ip1);
    c.hosts[0].kill9();
    c.hosts[0].launch();
    let new_session = c.hosts[0].json(&["status"])["session"].as_str().unwrap().to_owned();
    assert!(new_session > old_session, "{new_session} after {old_session}");
    let restarted = Instant::now();
    assert!(wait_until(Duration::from_secs(10), || c.containers[0].ping("10.20.0.12", 1)), "after the restart");
    eprintln!("encrypted traffic flowed again {:?} after the restart", restarted.elapsed());
    assert_eq!(vtep_drops(&c.hosts[1], ip1), drops_before, "the new session's first packets were refused");
    let old = baseline(&vtep_drops(&c.hosts[1], ip1), "old_session");
    send_from(&c.hosts[0].host, ip1, ip2, &[fresh_counter]);
    assert!(
        wait_until(Duration::from_secs(3), || drops(&c.hosts[1], ip1, "old_session").is_some_and(|n| n > old)),
        "a previous boot's packet was not refused as old_session: {}",
        vtep_drops(&c.hosts[1], ip1)
    );
    assert!(c.containers[1].ping("10.20.0.11", 2), "both ways with the new session");
}

#[test]
fn rotating_the_cluster_key_during_a_ping_flood_loses_no_ping_and_retires_the_old_key() {
    let c = cluster(2);
    let (h1, h2) = (&c.hosts[0], &c.hosts[1]);
    let old_id = h1.json(&["key", "ls"])[0]["id"].as_str().unwrap().to_owned();
    let new_key = KeyFile::new("rotated", 0x77);
    let pinging = c.containers[0].spawn(&["ping", "-i", "0.05", "10.20.0.12"]);
    let before_rotation = capture_sealed(&c.ul, "h2", "198.18.0.1", "198.18.0.2", 200);
    drop(pinging);

    // 1000 pings at 10 ms: 10 s, while the key changes under them.
    let c1 = c.containers[0].name.clone();
    let flood = std::thread::spawn(move || {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &c1, "ping", "-i", "0.01", "-c", "1000", "-W", "1", "-q", "10.20.0.12"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    });
    std::thread::sleep(Duration::from_secs(1));
    let new_id = h1.ctl(&["key", "add", new_key.path()]).trim().to_owned();
    assert_eq!(h2.ctl(&["key", "add", new_key.path()]).trim(), new_id);
    // `use` waits (by gossip) until the other host accepts the key.
    h1.ctl(&["key", "use", &new_id, "--wait", "5"]);
    std::thread::sleep(Duration::from_secs(1));
    h2.ctl(&["key", "use", &new_id, "--wait", "5"]);
    std::thread::sleep(Duration::from_secs(1));
    let keys = h1.json(&["key", "ls"]);
    eprintln!("keys during the rotation: {keys}");
    h1.ctl(&["key", "rm", &old_id, "--wait", "5"]);
    h2.ctl(&["key", "rm", &old_id, "--wait", "5"]);
    let summary = flood.join().unwrap();
    eprintln!("{}", summary.trim());
    assert!(summary.contains("1000 packets transmitted, 1000 received"), "pings were lost: {summary}");

    // Both hosts now accept and seal with the new key only.
    let wanted = vec![h1.host.name.clone(), h2.host.name.clone()];
    let settled = wait_until(Duration::from_secs(5), || {
        let keys = h1.json(&["key", "ls"]);
        let rows = keys.as_array().unwrap();
        let hosts = |v: &Value| {
            let mut l: Vec<String> = v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect();
            l.sort();
            l
        };
        rows.len() == 1 && rows[0]["id"] == new_id.as_str() && hosts(&rows[0]["sending_by"]) == wanted
    });
    assert!(settled, "keys after the rotation: {}", h1.json(&["key", "ls"]));
    // A packet sealed under the retired key is no longer accepted.
    let unknown = baseline(&vtep_drops(h2, "198.18.0.1"), "unknown_key");
    send_from(&h1.host, "198.18.0.1", "198.18.0.2", &[with_byte(&before_rotation, 20, |b| b ^ 0x40)]);
    let refused =
        wait_until(Duration::from_secs(3), || drops(h2, "198.18.0.1", "unknown_key").is_some_and(|n| n > unknown));
    assert!(refused, "a packet sealed under the retired key: {}", vtep_drops(h2, "198.18.0.1"));
    // Gossip rotated too: the hosts still see each other.
    assert_eq!(h1.json(&["peers"])[0]["state"], "alive");
    // And the retired key stays retired across a restart.
    assert!(h2.try_ctl(&["key", "add", c.key.path()]).unwrap_err().contains("never accepted again"));
}

#[test]
fn a_host_without_a_networks_own_key_refuses_to_carry_it_until_given_the_key() {
    let mut ul = Underlay::new();
    let key = KeyFile::new("cluster", 0x42);
    let own = KeyFile::new("private", 0x99);
    let ((n1, ip1), (n2, ip2)) = (ul.host("h1"), ul.host("h2"));
    let h1 = member(n1, &ip1, &key, "");
    let h2 = member(n2, &ip2, &key, "");
    h1.ctl(&[
        "network",
        "create",
        "private",
        "--vni",
        "300",
        "--subnet",
        "10.30.0.0/24",
        "--internal",
        "--encrypted",
        "--cipher",
        "aes-256-gcm",
        "--key-file",
        own.path(),
    ]);
    let inspect = h1.json(&["network", "inspect", "private"]);
    assert_eq!((inspect["cipher"].as_str(), inspect["key"].as_str()), (Some("aes-256-gcm"), Some("private")));
    let refused = wait_until(Duration::from_secs(10), || {
        h2.json(&["status"])["refused_networks"].as_array().unwrap().iter().any(|r| {
            let r = r.as_str().unwrap();
            r.contains("\"private\"") && r.contains("does not hold")
        })
    });
    assert!(refused, "h2 did not refuse the network: {}", h2.json(&["status"]));
    assert!(h2.json(&["network", "ls"]).as_array().unwrap().is_empty(), "h2 carries a network it has no key for");
    let (a, b) = (Netns::new("pa"), Netns::new("pb"));
    h1.connect("private", &a, &["--ip", "10.30.0.11"]);
    let err = h2.try_ctl(&["network", "connect", "private", &b.name]).unwrap_err();
    assert!(err.contains("no network named \"private\""), "{err}");

    h2.ctl(&["key", "add", own.path(), "--network", "private"]);
    assert!(wait_until(Duration::from_secs(5), || !h2.json(&["network", "ls"]).as_array().unwrap().is_empty()));
    h2.connect("private", &b, &["--ip", "10.30.0.12"]);
    assert!(wait_until(Duration::from_secs(10), || a.ping("10.30.0.12", 1)), "a -> b once h2 holds the key");
    let status = h2.json(&["status"]);
    assert!(status["refused_networks"].as_array().unwrap().is_empty(), "{status}");
}

#[test]
fn hosts_naming_different_ciphers_carry_the_network_together_each_opening_what_the_other_seals() {
    let mut ul = Underlay::new();
    let key = KeyFile::new("cluster", 0x42);
    let ((n1, ip1), (n2, ip2)) = (ul.host("h1"), ul.host("h2"));
    let net = |cipher: &str| {
        format!(
            "\n[[network]]\nname = \"mixed\"\nvni = 400\nsubnet = \"10.40.0.0/24\"\ninternal = true\n\
             encrypted = true\ncipher = \"{cipher}\"\n"
        )
    };
    let h1 = member(n1, &ip1, &key, &net("aes-256-gcm"));
    let h2 = member(n2, &ip2, &key, &net("chacha20-poly1305"));
    let (a, b) = (Netns::new("ma"), Netns::new("mb"));
    h1.connect("mixed", &a, &["--ip", "10.40.0.11"]);
    h2.connect("mixed", &b, &["--ip", "10.40.0.12"]);

    // Each host's sends, captured on h1's underlay: the cipher is byte 1 of
    // the sealed header (1 ChaCha20-Poly1305, 2 AES-256-GCM).
    let (tcpdump, pcap) = capture_underlay(&h1, "mixed.pcap");
    let reached = wait_until(Duration::from_secs(10), || a.ping("10.40.0.12", 1));
    assert!(reached, "h1's container cannot reach h2's:\n{}\n{}", h1.log(), h2.log());
    assert!(b.ping("10.40.0.11", 3), "h2's container cannot reach h1's");
    std::thread::sleep(Duration::from_millis(300));
    drop(tcpdump);
    let bytes = std::fs::read(&pcap).unwrap();
    let ciphers: std::collections::BTreeSet<u8> = vxlan_payloads(&bytes).iter().map(|p| p[1]).collect();
    assert_eq!(ciphers, [1, 2].into(), "both ciphers on the wire");
    for h in [&h1, &h2] {
        let crypto = &h.stats()["crypto"];
        assert!(count(crypto, "sealed") > 0 && count(crypto, "opened") > 0, "{}: {crypto}", h.host.name);
    }

    // One network, carried by both; who seals with what is shown, and
    // said in the log as a mistake (both named a cipher, differently).
    let inspect = h1.json(&["network", "inspect", "mixed"]);
    assert_eq!((inspect["cipher"].as_str(), inspect["default_cipher"].as_bool()), (Some("aes-256-gcm"), Some(false)));
    let expected =
        serde_json::json!({ h1.host.name.as_str(): "aes-256-gcm", h2.host.name.as_str(): "chacha20-poly1305" });
    let shown = wait_until(Duration::from_secs(5), || h1.json(&["network", "inspect", "mixed"])["ciphers"] == expected);
    assert!(shown, "{}", h1.json(&["network", "inspect", "mixed"]));
    let said = wait_until(Duration::from_secs(5), || h1.log().contains("name the same cipher on every host, or none"));
    assert!(said, "{}", h1.log());
    assert!(!h1.log().contains("define it as"), "no conflict: {}", h1.log());
}
