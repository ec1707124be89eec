//! The data plane's own promises: with several workers (a TAP queue and an
//! underlay socket each) no flow is reordered and every worker takes a
//! share; a switchd that busy-polls while traffic flows costs no CPU once
//! it stops; with polling off it never polls.

use std::time::Duration;

use serde_json::Value;
use switchd_e2e::{KeyFile, Netns, Switchd, Underlay, count, port_entry as port, py, sparse, wait_until};

const NETWORKS: &str = "\n[[network]]\nname = \"front\"\nvni = 100\nsubnet = \"10.10.0.0/24\"\ninternal = true\n";

/// CPU time (user + system) the process has used, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the process is alive");
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat[stat.rfind(')').expect("a comm field") + 2..].split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line (11 and 12 here).
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

/// Held by each test while it runs: the idle measurement is of one
/// switchd on a quiet machine, not beside the other test's traffic (on
/// two cores that doubled the ticks charged to the idle one).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn clock_ticks_per_second() -> u64 {
    let out = std::process::Command::new("getconf").arg("CLK_TCK").output().expect("getconf");
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("CLK_TCK is a number")
}

fn workers(sd: &Switchd) -> Vec<Value> {
    sd.stats()["workers"].as_array().expect("stats lists the workers").clone()
}

#[test]
fn an_idle_switchd_uses_no_cpu_and_polling_off_never_polls() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    for (busy_poll, polls) in [(200, true), (0, false)] {
        let (c1, c2) = (Netns::new("c1"), Netns::new("c2"));
        let body = format!("{NETWORKS}{}{}", port("front", &c1, "10.10.0.11"), port("front", &c2, "10.10.0.12"));
        let sd = Switchd::start(&format!("workers = 2\nbusy_poll_us = {busy_poll}"), &body);
        // Request and response traffic: each answer comes back while the
        // worker that sent the request may still be polling.
        let ping = c1.exec(&["ping", "-c", "300", "-i", "0.002", "-q", "10.10.0.12"]);
        assert!(ping.status.success(), "ping through switchd\n{}", sd.log());
        let stats = workers(&sd);
        let hits: u64 = stats.iter().map(|w| count(w, "poll_hits")).sum();
        let misses: u64 = stats.iter().map(|w| count(w, "poll_misses")).sum();
        if polls {
            assert!(hits > 0 && misses > 0, "a window of {busy_poll} us polled: {stats:?}");
        } else {
            assert_eq!((hits, misses), (0, 0), "busy_poll_us = 0 never polls: {stats:?}");
        }
        // Idle: whatever window was open has closed within a second.
        std::thread::sleep(Duration::from_secs(1));
        let before = cpu_ticks(sd.pid());
        std::thread::sleep(Duration::from_secs(10));
        let used = cpu_ticks(sd.pid()) - before;
        let per_second = clock_ticks_per_second();
        eprintln!("busy_poll_us = {busy_poll}: idle switchd used {used} ticks of {} in 10 s", 10 * per_second);
        // ~0%: at most 1% of one core (timers, the gossip-less control plane).
        assert!(used * 100 <= 10 * per_second, "idle switchd used {used} ticks in 10 s (busy_poll_us = {busy_poll})");
    }
}

/// Numbered datagrams on 16 flows from `from` to `to` (at `ip`): how many
/// came, how many out of order, how many flows were seen.
fn numbered_stream(from: &Netns, to: &Netns, ip: &str) -> (u64, u64, u64) {
    // Resolved first: the sender's kernel sends what it queued while it
    // asked ARP from the context of the answer, racing the sender's next
    // datagrams (a reordering of its own, before switchd sees them).
    assert!(from.ping(ip, 1), "{} reaches {ip}", from.name);
    let ready = std::env::temp_dir().join(format!("sdt-{}-{}-ready", std::process::id(), to.name));
    let _ = std::fs::remove_file(&ready);
    let ready_arg = ready.to_str().expect("UTF-8 path");
    let receiver = to.spawn_py_captured(py::NUMBERED_UDP_RECEIVE, &["9000", "16", "2000", "2", ready_arg]);
    assert!(wait_until(Duration::from_secs(5), || ready.exists()), "the receiver did not start");
    let sent = from.py_exec(py::NUMBERED_UDP_SEND, &[ip, "9000", "16", "2000"]);
    assert!(sent.status.success(), "{}", String::from_utf8_lossy(&sent.stderr));
    let out = receiver.output();
    let _ = std::fs::remove_file(&ready);
    let json: Value = serde_json::from_str(out.trim()).unwrap_or_else(|_| panic!("receiver printed {out:?}"));
    (count(&json, "received"), count(&json, "reordered"), count(&json, "flows"))
}

#[test]
fn no_flow_is_reordered_and_every_worker_takes_a_share() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut ul = Underlay::new();
    let ((ha, ipa), (hb, ipb)) = (ul.host("ha"), ul.host("hb"));
    let (a1, a2, b1, b2) = (Netns::new("a1"), Netns::new("a2"), Netns::new("b1"), Netns::new("b2"));
    let key = KeyFile::new("net", 0x17);
    let sealed = format!(
        "\n[[network]]\nname = \"secret\"\nvni = 200\nsubnet = \"10.20.0.0/24\"\ninternal = true\n\
         encrypted = true\nkey_file = \"{}\"\n",
        key.path()
    );
    let host = |ns, ip: &str, peer: &str, ports: String| {
        // A crypto helper too: bursts of sealed datagrams are opened on
        // several threads, and must still go up in order.
        let extra = format!("underlay_ip = \"{ip}\"\nworkers = 2\ncrypto_helpers = 1");
        Switchd::start_in(ns, &extra, &format!("\n[[peer]]\nunderlay_ip = \"{peer}\"\n{NETWORKS}{sealed}{ports}"))
    };
    let a = host(
        ha,
        &ipa,
        &ipb,
        format!("{}{}", port("front", &a1, "10.10.0.11"), port("front", &a2, "10.10.0.12"))
            + &port("secret", &a1, "10.20.0.11"),
    );
    let b = host(hb, &ipb, &ipa, format!("{}{}", port("front", &b1, "10.10.0.21"), port("secret", &b2, "10.20.0.21")));
    assert!(a1.ping("10.10.0.21", 1) && a1.ping("10.20.0.21", 1), "both networks work\n{}\n{}", a.log(), b.log());

    for (what, from, to, ip) in [
        ("one host", &a1, &a2, "10.10.0.12"),
        ("two hosts", &a1, &b1, "10.10.0.21"),
        ("two hosts, sealed", &a1, &b2, "10.20.0.21"),
    ] {
        let (received, reordered, flows) = numbered_stream(from, to, ip);
        eprintln!("{what}: {received} of 32000 datagrams, {reordered} out of order, {flows} flows");
        assert!(received > 16_000, "{what}: only {received} of 32000 datagrams came");
        assert_eq!(flows, 16, "{what}");
        assert_eq!(reordered, 0, "{what}: datagrams of a flow overtook each other");
    }
    // The sender's TAP queues spread the flows over both workers of host a,
    // the underlay sockets over both of host b.
    let (wa, wb) = (workers(&a), workers(&b));
    assert!(wa.iter().chain(&wb).all(|w| w["running"] == true), "every worker runs: {wa:?} {wb:?}");
    assert!(wa.iter().all(|w| count(w, "port_frames") > 1000), "host a's workers: {wa:?}");
    assert!(wb.iter().all(|w| count(w, "underlay_datagrams") > 1000), "host b's workers: {wb:?}");
    // Sealed datagrams reached the worker that holds their lane's sessions.
    let drops = &b.vtep_stats(&ipa)["drops"];
    assert_eq!(sparse(drops, "wrong_lane"), None, "{drops}");
    // Bulk TCP on the sealed network: TSO frames of 45 datagrams are
    // sealed (and GRO bursts opened) partly by the crypto helpers, and
    // every datagram still opens, fresh and in its lane.
    let gbits = a1.iperf(&b2, "10.20.0.21", 2);
    let helped = |sd: &Switchd| count(&sd.stats()["crypto"], "helped");
    eprintln!("sealed TCP {gbits:.2} Gbit/s; helpers sealed {} on a, opened {} on b", helped(&a), helped(&b));
    assert!(gbits > 0.05, "sealed TCP moved {gbits} Gbit/s");
    assert!(helped(&a) + helped(&b) > 0, "no helper took a share of a sealed burst");
    let drops = &b.vtep_stats(&ipa)["drops"];
    for bad in ["auth_failed", "replayed", "wrong_lane"] {
        assert_eq!(sparse(drops, bad), None, "{bad}: {drops}");
    }
}
