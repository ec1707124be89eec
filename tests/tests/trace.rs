//! `switchctl trace`: what the switch would do with a container's packet,
//! and why, without doing it: delivered, refused between networks, a
//! spoofed source, an oversize datagram, and across hosts to a VTEP with
//! its VNI and key; the data plane's counters and tables unchanged.

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

#[test]
fn a_trace_explains_delivery_isolation_spoofing_and_size_and_changes_nothing() {
    let (c1, c2, c3) = (Netns::new("c1"), Netns::new("c2"), Netns::new("c3"));
    let body = format!(
        "{NETWORKS}{}{}{}",
        port("front", &c1, "10.10.0.11"),
        port("front", &c2, "10.10.0.12"),
        port("back", &c3, "10.20.0.13")
    );
    let sd = Switchd::start("", &body);
    assert!(c1.ping("10.10.0.12", 1), "{}", sd.log());
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
    assert!(verdict(&t).contains("route_denied") || verdict(&t).contains("no_route"), "{t}");

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
}

/// `switchctl top --once --json`: the endpoint moving data ranks first,
/// an idle one last with no traffic.
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
    let rates = sd.json(&["top", "--once", "--interval", "1"]);
    let rates = rates.as_array().expect("a list");
    eprintln!("{}", sd.ctl(&["top", "--once", "--interval", "0.5"]));
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
    let capture = std::process::Command::new(&ctl)
        .args(["--socket", socket.to_str().unwrap(), "capture", &c1.name, "--count", "4", "-w"])
        .arg(&pcap)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(5), || pcap.exists()), "the capture did not start");
    let busy = sd.try_ctl(&["capture", &c1.name, "--count", "1"]).expect_err("one capture of a port at a time");
    assert!(busy.contains("captured already"), "{busy}");
    assert!(c1.ping("10.10.0.12", 2));
    let done = capture.wait_with_output().unwrap();
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

    let e = sd.try_ctl(&["capture", "nobody", "--count", "1"]).expect_err("refused");
    assert!(e.contains("no endpoint \"nobody\""), "{e}");
}
