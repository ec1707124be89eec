//! `switchctl trace`: what the switch would do with a container's packet,
//! and why, without doing it: delivered, refused between networks, a
//! spoofed source, an oversize datagram, across hosts to a VTEP with its
//! VNI and key, and an encrypted network without its key; the data plane's
//! counters and tables unchanged. `trace --live`: the real decisions for a
//! real ping, on one host and across hosts. `capture`: a port, a network
//! (pcapng, each frame with its port) and a VTEP's datagrams (sealed, and
//! opened with `--decrypt`), read by tcpdump; `top`.

use serde_json::Value;
use std::time::Duration;

use switchd_e2e::{
    FRONT_AND_BACK as NETWORKS, KeyFile, Netns, Switchd, Underlay, bin, count, gossip_member, port_entry as port, run,
    wait_until,
};

/// `switchctl --json trace ARGS`: the trace.
fn trace(sd: &Switchd, args: &[&str]) -> Value {
    let mut all = vec!["trace"];
    all.extend_from_slice(args);
    sd.json(&all)
}

/// The detail of step `what`, if the trace has it.
fn step<'a>(t: &'a Value, what: &str) -> Option<&'a str> {
    t["steps"].as_array()?.iter().find(|s| s["what"] == what).and_then(|s| s["detail"].as_str())
}

fn verdict(t: &Value) -> &str {
    t["verdict"].as_str().unwrap_or_default()
}

/// `switchctl --json ARGS` started in the background, its output piped.
fn background(sd: &Switchd, args: &[&str]) -> std::process::Child {
    std::process::Command::new(bin("switchctl"))
        .args(["--socket", sd.socket().to_str().unwrap(), "--json"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Starts `switchctl trace --live ARGS` and waits until switchd runs it.
fn live_trace(sd: &Switchd, args: &[&str]) -> std::process::Child {
    let started = sd.log().matches("live trace started").count();
    let mut all = vec!["trace", "--live"];
    all.extend_from_slice(args);
    let child = background(sd, &all);
    let running = wait_until(Duration::from_secs(5), || sd.log().matches("live trace started").count() > started);
    assert!(running, "the live trace did not start:\n{}", sd.log());
    child
}

/// The frames a finished live trace printed (one JSON line each).
fn traced(child: std::process::Child) -> Vec<Value> {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).collect();
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    lines
}

/// Starts a capture and waits until switchd runs it.
fn capture(sd: &Switchd, args: &[&str]) -> std::process::Child {
    let started = sd.log().matches("capture of").count();
    let mut all = vec!["capture"];
    all.extend_from_slice(args);
    let child = background(sd, &all);
    let running = wait_until(Duration::from_secs(5), || sd.log().matches("capture of").count() > started);
    assert!(running, "the capture did not start:\n{}", sd.log());
    child
}

/// What tcpdump reads of a capture file.
fn tcpdump(file: &std::path::Path) -> String {
    let read = run("tcpdump", &["-r", file.to_str().unwrap(), "-nn"]);
    assert!(read.status.success(), "{}", String::from_utf8_lossy(&read.stderr));
    let text = String::from_utf8_lossy(&read.stdout).into_owned();
    eprintln!("{}{text}", String::from_utf8_lossy(&read.stderr));
    text
}

/// One switchd with c1 and c2 on front and c3 on back (no route between
/// them), c1 and c2 having talked once.
fn two_on_front_one_on_back() -> (Netns, Netns, Netns, Switchd) {
    let (c1, c2, c3) = (Netns::new("c1"), Netns::new("c2"), Netns::new("c3"));
    let body = format!(
        "{NETWORKS}{}{}{}",
        port("front", &c1, "10.10.0.11"),
        port("front", &c2, "10.10.0.12"),
        port("back", &c3, "10.20.0.13")
    );
    let sd = Switchd::start("", &body);
    assert!(c1.ping("10.10.0.12", 1), "{}", sd.log());
    (c1, c2, c3, sd)
}

#[test]
fn a_trace_explains_delivery_isolation_spoofing_and_size_and_changes_nothing() {
    let (c1, c2, c3, sd) = two_on_front_one_on_back();
    let before = sd.stats();

    // Delivered, by name: ARP answered by switchd, the FDB entry, the port.
    let t = trace(&sd, &["front", "--from", &c1.name, "--to", &c2.name]);
    eprintln!("{}", sd.ctl(&["trace", "front", "--from", &c1.name, "--to", &c2.name]));
    assert_eq!(t["delivered"], true, "{t}");
    assert!(step(&t, "ingress").is_some_and(|d| d.contains(&format!("port {}:eth0", c1.name))), "{t}");
    assert!(step(&t, "neighbour").is_some_and(|d| d.contains("answered by switchd")), "{t}");
    assert!(step(&t, "fdb").is_some_and(|d| d.contains(&format!("port {}:eth0", c2.name))), "{t}");
    assert!(verdict(&t).contains(&format!("delivered to port {}:eth0", c2.name)), "{t}");

    // Another network, no route between them: refused by the gateway.
    let t = trace(&sd, &["front", "--from", &c1.name, "--to", "10.20.0.13"]);
    assert_eq!(t["delivered"], false, "{t}");
    assert!(step(&t, "neighbour").is_some_and(|d| d.contains("gateway")), "{t}");
    assert_eq!(verdict(&t), "refused with an ICMP error: route_denied", "{t}");
    assert!(step(&t, "route").is_some_and(|d| d.contains("no [[route]]")), "{t}");

    // Another network's container by its MAC: not in this network's
    // table, so at most flooded within front, never delivered to back.
    let t = trace(&sd, &["front", "--from", &c1.name, "--to", &c3.mac("eth0")]);
    eprintln!("{}", sd.ctl(&["trace", "front", "--from", &c1.name, "--to", &c3.mac("eth0")]));
    assert!(!t.to_string().contains(&format!("{}:eth0", c3.name)), "isolated: {t}");

    // A source the port was not given: the guard drops it.
    let t = trace(&sd, &["front", "--from", &c1.name, "--to", "10.10.0.12", "--src-ip", "10.10.0.99"]);
    assert!(step(&t, "source").is_some(), "{t}");
    assert!(verdict(&t).contains("spoofed_address"), "{t}");
    let t = trace(&sd, &["front", "--from", &c1.name, "--to", "10.10.0.12", "--src-mac", "02:00:00:00:00:99"]);
    assert!(verdict(&t).starts_with("dropped: spoofed"), "{t}");

    // Larger than the MTU: a UDP datagram is dropped, TCP (TSO) is cut.
    let t = trace(&sd, &["front", "--from", &c1.name, "--to", "10.10.0.12", "--proto", "udp", "--size", "2000"]);
    assert!(verdict(&t).contains("oversize"), "{t}");
    let t = trace(&sd, &["front", "--from", &c1.name, "--to", "10.10.0.12", "--proto", "tcp", "--size", "9000"]);
    assert_eq!(t["delivered"], true, "{t}");
    assert!(step(&t, "mtu").is_some_and(|d| d.contains("segments")), "{t}");

    // What does not exist is a clear error.
    for (args, message) in [
        (vec!["nonet", "--from", &c1.name, "--to", "10.10.0.12"], "nonet"),
        (vec!["front", "--from", "nobody", "--to", "10.10.0.12"], "no container \"nobody\""),
        (vec!["front", "--from", &c1.name, "--to", "no-such-name"], "no address, MAC or container name"),
        (vec!["front", "--from", &c1.name, "--to", "10.10.0.12", "--proto", "sctp"], "--proto"),
    ] {
        let mut all = vec!["trace"];
        all.extend_from_slice(&args);
        let e = sd.try_ctl(&all).expect_err("refused");
        assert!(e.contains(message), "{args:?}: {e}");
    }

    // Nothing was counted, learned or sent by the traces.
    let after = sd.stats();
    for (b, a) in before["ports"].as_array().unwrap().iter().zip(after["ports"].as_array().unwrap()) {
        assert_eq!(count(b, "rx_frames"), count(a, "rx_frames"), "{b} {a}");
        assert_eq!(b["drops"], a["drops"], "traces counted drops");
    }
}

/// `trace --live`: a real ping's request and reply, as the switch decided
/// them, then a ping refused between networks; bad filters are refused.
#[test]
fn a_live_trace_shows_a_real_pings_decisions() {
    let (c1, c2, _c3, sd) = two_on_front_one_on_back();

    let live = live_trace(&sd, &["--network", "front", "--proto", "icmp", "--count", "2", "--seconds", "20"]);
    assert!(c1.ping("10.10.0.12", 1));
    let frames = traced(live);
    eprintln!("{}", serde_json::to_string_pretty(&frames).unwrap());
    assert_eq!(frames.len(), 2, "the request and its reply: {frames:?}");
    let (request, reply) = (&frames[0]["frame"], &frames[1]["frame"]);
    assert!(request["frame"].as_str().unwrap().contains("10.10.0.11 > 10.10.0.12 ICMP"), "{request}");
    assert!(step(request, "ingress").is_some_and(|d| d.contains(&format!("port {}:eth0", c1.name))), "{request}");
    assert!(verdict(request).contains(&format!("delivered to port {}:eth0", c2.name)), "{request}");
    assert_eq!(request["delivered"], true);
    assert!(reply["frame"].as_str().unwrap().contains("10.10.0.12 > 10.10.0.11 ICMP"), "{reply}");
    assert!(verdict(reply).contains(&format!("delivered to port {}:eth0", c1.name)), "{reply}");
    assert!(request["at_us"].as_u64().unwrap() <= reply["at_us"].as_u64().unwrap(), "in time order");

    // Refused between networks: the real drop, with its reason.
    let routed = run("ip", &["-n", &c1.name, "route", "replace", "10.20.0.0/24", "via", "10.10.0.1"]);
    assert!(routed.status.success(), "{routed:?}");
    let live = live_trace(&sd, &["--endpoint", &c1.name, "--proto", "icmp", "--count", "1", "--seconds", "20"]);
    assert!(!c1.ping("10.20.0.13", 1));
    let frames = traced(live);
    let refused = &frames[0]["frame"];
    assert_eq!(refused["delivered"], false, "{refused}");
    assert_eq!(verdict(refused), "refused with an ICMP error: route_denied", "{refused}");
    // Text, as a user reads it.
    let text = std::process::Command::new(bin("switchctl"))
        .args(["--socket", sd.socket().to_str().unwrap(), "trace", "--live", "--network", "front"])
        .args(["--proto", "icmp", "--count", "2", "--seconds", "20"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = wait_until(Duration::from_secs(5), || sd.log().matches("live trace started").count() == 3);
    assert!(started, "{}", sd.log());
    assert!(c2.ping("10.10.0.11", 1));
    let out = text.wait_with_output().unwrap();
    let (shown, said) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("{shown}{said}");
    assert!(shown.contains("10.10.0.12 > 10.10.0.11 ICMP echo request"), "{shown}");
    assert!(shown.contains(&format!("verdict  delivered to port {}:eth0", c1.name)), "{shown}");
    assert!(said.contains("2 frames traced, 0 lost"), "{said}");

    for (args, message) in [
        (vec!["--endpoint", "nobody"], "no endpoint \"nobody\""),
        (vec!["--network", "nonet"], "nonet"),
        (vec!["--proto", "sctp"], "--proto"),
        (vec!["--host", "nohost"], "no peer host"),
    ] {
        let mut all = vec!["trace", "--live", "--count", "1"];
        all.extend_from_slice(&args);
        let e = sd.try_ctl(&all).expect_err("refused");
        assert!(e.contains(message), "{args:?}: {e}");
    }
    assert!(!sd.log().contains("panicked"), "{}", sd.log());
}

#[test]
fn a_cross_host_trace_names_the_vtep_the_vni_and_the_key() {
    let mut ul = Underlay::new();
    let ((ha, ipa), (hb, ipb)) = (ul.host("ha"), ul.host("hb"));
    let (a1, b1) = (Netns::new("a1"), Netns::new("b1"));
    let key = KeyFile::new("cluster", 0x21);
    let secret =
        "\n[[network]]\nname = \"secret\"\nvni = 300\nsubnet = \"10.30.0.0/24\"\ninternal = true\nencrypted = true\n";
    let a = gossip_member(ha, &ipa, &key, &format!("{NETWORKS}{secret}"));
    let b = gossip_member(hb, &ipb, &key, "");
    let all = wait_until(Duration::from_secs(10), || b.json(&["network", "ls"]).as_array().unwrap().len() == 3);
    assert!(all, "the networks did not reach b:\n{}", b.log());
    a.connect("front", &a1, &["--ip", "10.10.0.11"]);
    a.connect("secret", &a1, &["--ip", "10.30.0.11"]);
    b.connect("front", &b1, &["--ip", "10.10.0.21"]);
    b.connect("secret", &b1, &["--ip", "10.30.0.21"]);
    let reached = wait_until(Duration::from_secs(10), || a1.ping("10.10.0.21", 1) && a1.ping("10.30.0.21", 1));
    assert!(reached, "{}\n{}", a.log(), b.log());

    let t = trace(&a, &["front", "--from", &a1.name, "--to", &b1.name]);
    eprintln!("{}", a.ctl(&["trace", "front", "--from", &a1.name, "--to", &b1.name]));
    assert_eq!(t["delivered"], true, "{t}");
    assert!(step(&t, "neighbour").is_some_and(|d| d.contains("answered by switchd")), "{t}");
    assert!(step(&t, "vtep").is_some_and(|d| d.contains("VNI 100") && d.contains("plain VXLAN")), "{t}");
    assert!(verdict(&t).contains(&ipb), "the VTEP of host b: {t}");

    let t = trace(&a, &["secret", "--from", &a1.name, "--to", "10.30.0.21", "--proto", "tcp", "--dport", "443"]);
    eprintln!("{}", a.ctl(&["trace", "secret", "--from", &a1.name, "--to", "10.30.0.21", "--proto", "tcp"]));
    let keys = a.json(&["key", "ls"]);
    let sending = keys.as_array().unwrap().iter().find(|k| k["state"] == "sending").expect("a sending key");
    let vtep = step(&t, "vtep").unwrap_or_default();
    assert!(vtep.contains("VNI 300") && vtep.contains("sealed with"), "{t}");
    assert!(vtep.contains(sending["id"].as_str().unwrap()), "the key id: {t}");
    assert_eq!(t["delivered"], true, "{t}");

    // The receiving side: datagrams from the underlay.
    let t = trace(&a, &["front", "--from-vtep", &ipb, "--to", &a1.name]);
    eprintln!("{}", a.ctl(&["trace", "front", "--from-vtep", &ipb, "--to", &a1.name]));
    assert!(verdict(&t).contains(&format!("delivered to port {}:eth0", a1.name)), "{t}");
    let t = trace(&a, &["front", "--from-vtep", "198.18.0.77", "--to", "10.10.0.11"]);
    assert_eq!(verdict(&t), "dropped: unknown_source", "an unknown VTEP: {t}");
    let t = trace(&a, &["front", "--from-vtep", &ipb, "--vni", "999", "--to", "10.10.0.11"]);
    assert_eq!(verdict(&t), "dropped: unknown_vni", "{t}");
    let t = trace(&a, &["secret", "--from-vtep", &ipb, "--to", "10.30.0.11"]);
    assert!(step(&t, "open").is_some_and(|d| d.contains("cluster key")), "{t}");
    assert!(verdict(&t).contains(&format!("delivered to port {}:eth1", a1.name)), "{t}");

    // Live, on the receiving host: a real sealed datagram from host a,
    // opened and delivered.
    let live = live_trace(&b, &["--host", &ipa, "--network", "secret", "--proto", "icmp", "--count", "1"]);
    assert!(a1.ping("10.30.0.21", 1));
    let frames = traced(live);
    let seen = &frames[0]["frame"];
    assert!(step(seen, "ingress").is_some_and(|d| d.contains(&format!("sealed VXLAN datagram from {ipa}"))), "{seen}");
    assert!(step(seen, "open").is_some(), "{seen}");
    assert!(verdict(seen).contains(&format!("delivered to port {}:eth1", b1.name)), "{seen}");

    // The underlay to host b: sealed datagrams, then opened on request.
    let sealed = a.dir.join("sealed.pcap");
    let c = capture(&a, &["--vtep", &ipb, "--count", "2", "-w", sealed.to_str().unwrap()]);
    assert!(a1.ping("10.30.0.21", 1));
    assert!(c.wait_with_output().unwrap().status.success());
    let text = tcpdump(&sealed);
    assert!(text.contains(&format!("> {ipb}.4789: ")), "sealed, to b: {text}");
    assert!(text.contains(&format!("> {ipa}.4789: ")), "from b: {text}");
    assert!(!text.contains("ICMP"), "nothing of the inner frame shows: {text}");
    let opened = a.dir.join("opened.pcap");
    let c = capture(&a, &["--vtep", &ipb, "--decrypt", "--count", "2", "-w", opened.to_str().unwrap()]);
    assert!(a1.ping("10.30.0.21", 1));
    assert!(c.wait_with_output().unwrap().status.success());
    let text = tcpdump(&opened);
    assert!(text.contains("VXLAN") && text.contains("10.30.0.11 > 10.30.0.21: ICMP echo request"), "{text}");
    assert!(text.contains("10.30.0.21 > 10.30.0.11: ICMP echo reply"), "{text}");
    assert!(a.log().contains("--decrypt"), "a decrypting capture is logged");
    let e = a.try_ctl(&["capture", "--vtep", "198.18.0.99", "--count", "1"]).expect_err("refused");
    assert!(e.contains("no peer host"), "{e}");

    // An encrypted network whose key the receiver lacks: host a seals
    // under a key b does not hold, and b's live trace says why it drops.
    let newer = KeyFile::new("newer", 0x55);
    let newer_id = a.ctl(&["key", "add", newer.path()]).trim().to_owned();
    a.ctl(&["key", "use", &newer_id, "--force"]);
    let t = trace(&a, &["secret", "--from", &a1.name, "--to", "10.30.0.21"]);
    assert!(step(&t, "vtep").is_some_and(|d| d.contains(&newer_id)), "sealed with the new key: {t}");
    // A capture that shows datagrams opened shows one that does not open
    // as it came.
    let unopened = b.dir.join("unopened.pcap");
    let c = capture(&b, &["--vtep", &ipa, "--decrypt", "--count", "1", "-w", unopened.to_str().unwrap()]);
    assert!(!a1.ping("10.30.0.21", 1), "b cannot open it");
    assert!(c.wait_with_output().unwrap().status.success());
    let text = tcpdump(&unopened);
    assert!(text.contains(&format!("> {ipb}.4789: VXLAN")) && !text.contains("ICMP"), "sealed, as it came: {text}");
    let live = live_trace(&b, &["--host", &ipa, "--network", "secret", "--count", "1", "--seconds", "20"]);
    assert!(!a1.ping("10.30.0.21", 1), "b cannot open it");
    let frames = traced(live);
    let seen = &frames[0]["frame"];
    assert_eq!(seen["delivered"], false, "{seen}");
    assert_eq!(verdict(seen), "dropped: unknown_key", "{seen}");
    assert!(step(seen, "drop").is_some_and(|d| d.contains("does not hold")), "{seen}");
}

/// `switchctl top --once --json`: the endpoint moving data ranks first,
/// an idle one last with no traffic; the busiest conversation is theirs.
#[test]
fn top_ranks_a_busy_endpoint_first() {
    let (c1, c2, c3) = (Netns::new("c1"), Netns::new("c2"), Netns::new("c3"));
    let body = format!(
        "{NETWORKS}{}{}{}",
        port("front", &c1, "10.10.0.11"),
        port("front", &c2, "10.10.0.12"),
        port("front", &c3, "10.10.0.13")
    );
    let sd = Switchd::start("", &body);
    assert!(c1.ping("10.10.0.12", 1) && c3.ping("10.10.0.12", 1), "{}", sd.log());
    let _server = c2.spawn(&["iperf3", "-s", "-1"]);
    std::thread::sleep(Duration::from_millis(300));
    let _client = c1.spawn(&["iperf3", "-c", "10.10.0.12", "-t", "4"]);
    std::thread::sleep(Duration::from_millis(800));
    let top = sd.json(&["top", "--once", "--interval", "1"]);
    let rates = top["endpoints"].as_array().expect("a list");
    eprintln!("{}", sd.ctl(&["top", "--once", "--interval", "0.5"]));
    // The busiest conversation, from sampled frames: the iperf3 pair, at
    // about the rate the endpoints' own counters show.
    let talk = &top["conversations"][0];
    let pair = [talk["a"].as_str().unwrap(), talk["b"].as_str().unwrap()];
    assert!(pair.contains(&c1.name.as_str()) && pair.contains(&c2.name.as_str()), "{top}");
    let sampled = talk["a_to_b_bps"].as_f64().unwrap() + talk["b_to_a_bps"].as_f64().unwrap();
    let counted = rates[0]["rx_bps"].as_f64().unwrap() + rates[0]["tx_bps"].as_f64().unwrap();
    assert!(sampled > counted / 3.0 && sampled < counted * 3.0, "estimated {sampled} against {counted}: {top}");
    assert!(
        !top["conversations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["a"] == c3.name.as_str() || c["b"] == c3.name.as_str()),
        "the idle one talks to no one: {top}"
    );
    assert_eq!(rates.len(), 3, "{rates:?}");
    let first = rates[0]["endpoint"].as_str().unwrap();
    assert!(first == c1.name || first == c2.name, "the iperf3 ends first: {rates:?}");
    assert!(rates[0]["rx_bps"].as_f64().unwrap() + rates[0]["tx_bps"].as_f64().unwrap() > 1e7, "{rates:?}");
    assert_eq!(rates[2]["endpoint"], c3.name.as_str(), "the idle one last: {rates:?}");
    assert_eq!(rates[2]["rx_pps"].as_f64(), Some(0.0), "{rates:?}");
}

/// `switchctl capture`: a port's frames both ways as a pcap that tcpdump
/// reads, from a file and streamed into a pipe; one capture of a port at
/// a time; an unknown endpoint is a clear error.
#[test]
fn capture_writes_a_pcap_tcpdump_reads() {
    let (c1, c2) = (Netns::new("c1"), Netns::new("c2"));
    let body = format!("{NETWORKS}{}{}", port("front", &c1, "10.10.0.11"), port("front", &c2, "10.10.0.12"));
    let sd = Switchd::start("", &body);
    assert!(c1.ping("10.10.0.12", 1), "{}", sd.log());
    let ctl = bin("switchctl");
    let socket = sd.socket();
    let pcap = sd.dir.join("c1.pcap");
    let first = std::process::Command::new(&ctl)
        .args(["--socket", socket.to_str().unwrap(), "capture", &c1.name, "--count", "4", "-w"])
        .arg(&pcap)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(5), || pcap.exists()), "the capture did not start");
    assert!(c1.ping("10.10.0.12", 2));
    let done = first.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&done.stderr);
    assert!(done.status.success() && said.contains("4 frames captured, 0 lost"), "{said}");
    let read = run("tcpdump", &["-r", pcap.to_str().unwrap(), "-nn"]);
    let text = String::from_utf8_lossy(&read.stdout);
    assert!(text.contains("10.10.0.11 > 10.10.0.12: ICMP echo request"), "{text}");
    assert!(text.contains("10.10.0.12 > 10.10.0.11: ICMP echo reply"), "both directions: {text}");

    // Streamed into tcpdump, with its filter.
    let command = format!(
        "{} --socket {} capture {} --seconds 3 | tcpdump -r - -nn icmp",
        ctl.display(),
        socket.display(),
        c2.name
    );
    let piped =
        std::process::Command::new("sh").args(["-c", &command]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(700));
    assert!(c1.ping("10.10.0.12", 2));
    let out = piped.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ICMP echo request") && text.contains("ICMP echo reply"), "{text}");

    // A network: every port of it, each frame with the port it was seen at.
    let file = sd.dir.join("front.pcapng");
    let c = capture(&sd, &["front", "--count", "4", "-w", file.to_str().unwrap()]);
    assert!(c1.ping("10.10.0.12", 1));
    assert!(c.wait_with_output().unwrap().status.success());
    let text = tcpdump(&file);
    assert_eq!(text.matches("ICMP echo request").count(), 2, "read at c1, written at c2: {text}");
    let ports = pcapng_interfaces(&std::fs::read(&file).unwrap());
    let (p1, p2) = (format!("{}:eth0", c1.name), format!("{}:eth0", c2.name));
    assert_eq!(ports, [p1.clone(), p2.clone(), p2, p1], "where each frame was seen: the request, then the reply");

    // Captures are bounded: past the limit, a clear refusal.
    let many: Vec<_> = (0..8).map(|_| capture(&sd, &[&c2.name, "--seconds", "20"])).collect();
    let e = sd.try_ctl(&["capture", &c1.name, "--count", "1"]).expect_err("past the limit");
    assert!(e.contains("captures run already"), "{e}");
    for mut c in many {
        let _ = c.kill();
        let _ = c.wait();
    }
    let freed = wait_until(Duration::from_secs(5), || sd.log().matches("capture of").count() >= 2 * 11);
    assert!(freed, "the captures did not end when their readers went:\n{}", sd.log());

    let e = sd.try_ctl(&["capture", "nobody", "--count", "1"]).expect_err("refused");
    assert!(e.contains("no endpoint or network \"nobody\""), "{e}");
}

/// The interface name of each packet in a pcapng file, in order.
fn pcapng_interfaces(bytes: &[u8]) -> Vec<String> {
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let (mut names, mut seen, mut at) = (Vec::new(), Vec::new(), 0);
    while at + 12 <= bytes.len() {
        let (kind, len) = (u32_at(at), u32_at(at + 4));
        match kind {
            // Interface description: options from byte 16; if_name is 2.
            1 => {
                let mut opt = at + 16;
                while opt + 4 <= at + len - 4 {
                    let (code, olen) = (
                        u16::from_le_bytes([bytes[opt], bytes[opt + 1]]),
                        u16::from_le_bytes([bytes[opt + 2], bytes[opt + 3]]) as usize,
                    );
                    if code == 2 {
                        names.push(String::from_utf8_lossy(&bytes[opt + 4..opt + 4 + olen]).into_owned());
                    }
                    if code == 0 {
                        break;
                    }
                    opt += 4 + olen.next_multiple_of(4);
                }
            }
            6 => seen.push(names[u32_at(at + 8)].clone()),
            _ => {}
        }
        at += len;
    }
    seen
}
