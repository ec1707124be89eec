//! Hostile clients on switchd's sockets: descriptors used up by idle
//! connections, published ports held by idle TCP connections and UDP
//! source ports, plugin types that walk out of `CNI_PATH`, ambiguous HTTP
//! framing on the plugin socket, bytes that are not UTF-8 on the control
//! socket, and config values that are too long, not unicast or endless.
//!
//! Every load here is bounded (a fixed number of connections, held for a
//! fixed time by a client that then exits), comes from namespaces or
//! loopback addresses of this test, and stops by itself.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use switchd_e2e::{Netns, Switchd, bin, hex, py, unhex, wait_until};

/// CPU seconds (user and system) a process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("process stat");
    let fields: Vec<&str> =
        stat.rsplit_once(')').expect("stat has the command in parentheses").1.split_whitespace().collect();
    // After the command: state is field 3, utime 14 and stime 15 (1-based).
    let ticks: u64 = fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks as f64 / hz
}

/// `switchctl status`, with a deadline (a switchd that cannot accept must
/// fail the test, not hang it); how long it took.
fn status_within(sd: &Switchd, limit: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let out = Command::new("timeout")
        .arg(format!("{}", limit.as_secs_f64()))
        .arg(bin("switchctl"))
        .arg("--socket")
        .arg(sd.socket())
        .arg("status")
        .output()
        .expect("run switchctl");
    if out.status.success() {
        Ok(started.elapsed())
    } else {
        Err(format!("status failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr)))
    }
}

fn log_lines(sd: &Switchd) -> usize {
    sd.log().lines().count()
}

/// With its descriptors used up by idle clients, switchd neither spins nor
/// floods its log, and `switchctl status` still answers at once: accept
/// errors pause (longer for EMFILE), warnings come once per interval with
/// a count, and the connections idle longest are closed to make room.
#[test]
fn descriptors_used_up_by_idle_clients() {
    let mut sd = Switchd::start("", "");
    sd.relaunch_limited(&["--nofile=128:128"]);
    let pid = sd.pid();
    let before = log_lines(&sd);
    let ready = sd.dir.join("clients-ready");
    let socket = sd.socket();
    let _clients = sd.host.spawn_py(
        py::IDLE_UNIX_CLIENTS,
        &[socket.to_str().expect("UTF-8 path"), "600", "12", ready.to_str().expect("UTF-8 path")],
    );
    assert!(wait_until(Duration::from_secs(8), || ready.exists()), "the clients did not connect");
    let connected: usize = std::fs::read_to_string(&ready).expect("ready file").trim().parse().expect("a count");
    assert!(connected > 200, "only {connected} clients connected: not enough to use up 128 descriptors");

    // Two seconds of exhaustion: measure what switchd does with them.
    std::thread::sleep(Duration::from_millis(500));
    let cpu0 = cpu_seconds(pid);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let cpu = (cpu_seconds(pid) - cpu0) / t0.elapsed().as_secs_f64();
    let status = status_within(&sd, Duration::from_secs(3));
    let added = log_lines(&sd) - before;

    assert!(status.as_ref().is_ok_and(|took| *took < Duration::from_secs(2)), "switchctl status: {status:?}");
    assert!(cpu < 0.3, "switchd used {:.0}% of a CPU while its descriptors were used up", cpu * 100.0);
    assert!(
        added < 20,
        "{added} log lines in 3 s of exhaustion:\n{}",
        sd.log().lines().take(30).collect::<Vec<_>>().join("\n")
    );
    let log = sd.log();
    assert!(
        log.contains("Too many open files") && log.contains("idle connections"),
        "the warning says what happened:\n{log}"
    );
}

/// switchd raises its soft descriptor limit to the hard one at start, and
/// says so.
#[test]
fn raises_its_soft_descriptor_limit() {
    let mut sd = Switchd::start("", "");
    sd.relaunch_limited(&["--nofile=100:4096"]);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", sd.pid())).expect("limits");
    let line = limits.lines().find(|l| l.starts_with("Max open files")).expect("a line for open files");
    let numbers: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers, ["4096", "4096"], "{line}");
    assert!(sd.log().contains("open files limit raised from 100 to 4096"), "{}", sd.log());
}

/// One round trip through a published port from source address `src`: the
/// echo, or the error.
fn echo(ns: &Netns, proto: &str, src: &str, port: u16) -> String {
    ns.py(py::ECHO_ONCE, &[proto, src, "127.0.0.1", &port.to_string()])
}

/// A switchd with one container running the echo server, published with
/// `publish` (extra `[[publish]]` lines go there).
fn published(publish: &str) -> (Switchd, Netns, switchd_e2e::Proc) {
    let web = Netns::new("web");
    let body = format!(
        "[[network]]\nname = \"front\"\nvni = 100\nsubnet = \"10.10.0.0/24\"\ninternal = true\n\n\
         [[port]]\nnetwork = \"front\"\nnetns = \"{}\"\nname = \"web\"\nip = \"10.10.0.10\"\n\n{publish}",
        web.name
    );
    let sd = Switchd::start("", &body);
    let server = web.spawn_py(py::ECHO_SERVER, &["7000"]);
    assert!(wait_until(Duration::from_secs(5), || !web.ok(&["ss", "-ltnH", "sport = :7000"]).trim().is_empty()));
    (sd, web, server)
}

fn publish_entry(host_port: u16, protocol: &str, extra: &str) -> String {
    format!(
        "[[publish]]\nnetwork = \"front\"\ncontainer = \"web\"\nhost_ip = \"127.0.0.1\"\nhost_port = {host_port}\n\
         port = 7000\nprotocol = \"{protocol}\"\n{extra}\n"
    )
}

/// Established connections in `ns` on local port `port`, by peer address.
fn established(ns: &Netns, port: u16) -> std::collections::BTreeMap<String, usize> {
    let mut by_peer = std::collections::BTreeMap::new();
    for line in ns.ok(&["ss", "-tnH", "state", "established", &format!("( sport = :{port} )")]).lines() {
        let peer = line.split_whitespace().last().and_then(|p| p.rsplit_once(':')).map(|(ip, _)| ip.to_owned());
        *by_peer.entry(peer.expect("a peer address")).or_insert(0) += 1;
    }
    by_peer
}

/// UDP sockets in `ns` connected to the echo server (the relays).
fn udp_relays(ns: &Netns) -> usize {
    ns.ok(&["ss", "-uanH", "dst", "10.10.0.10:7000"]).lines().count()
}

/// Idle connections to a published port using up switchd's descriptors
/// (600 under a limit of 256, each relay holding two): a new client is
/// still relayed, `switchctl status` answers, and nothing spins.
#[test]
fn descriptors_used_up_by_a_published_port() {
    let (mut sd, _web, _server) = published(&publish_entry(8082, "tcp", ""));
    sd.relaunch_limited(&["--nofile=256:256"]);
    let pid = sd.pid();
    let ready = sd.dir.join("tcp-ready");
    let args =
        ["127.0.0.1", "8082", "15", ready.to_str().expect("UTF-8"), "127.0.0.2:200", "127.0.0.3:200", "127.0.0.4:200"];
    let _clients = sd.host.spawn_py(py::IDLE_TCP_CLIENTS, &args);
    assert!(wait_until(Duration::from_secs(15), || ready.exists()), "the idle clients did not connect");
    std::thread::sleep(Duration::from_millis(500));
    let cpu0 = cpu_seconds(pid);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let cpu = (cpu_seconds(pid) - cpu0) / t0.elapsed().as_secs_f64();
    assert!(cpu < 0.3, "switchd used {:.0}% of a CPU with its descriptors used up", cpu * 100.0);
    assert_eq!(echo(&sd.host, "tcp", "127.0.0.1", 8082), "hello", "{}", sd.log());
    let status = status_within(&sd, Duration::from_secs(3));
    assert!(status.as_ref().is_ok_and(|took| *took < Duration::from_secs(2)), "switchctl status: {status:?}");
    assert!(sd.log().lines().count() < 30, "{}", sd.log());
}

/// 1,100 idle TCP connections from five addresses, one of them opening
/// 300, on a port with the default bounds (1,024 in all, 256 per source):
/// the source with 300 keeps 256, the table stays at 1,024 by closing the
/// connections idle longest, and a new client is served at once.
#[test]
fn idle_tcp_connections_cannot_lock_a_published_port() {
    let (sd, _web, _server) = published(&publish_entry(8080, "tcp", ""));
    let ready = sd.dir.join("tcp-ready");
    let plan = ["127.0.0.2:300", "127.0.0.3:200", "127.0.0.4:200", "127.0.0.5:200", "127.0.0.6:200"];
    let mut args = vec!["127.0.0.1", "8080", "20", ready.to_str().expect("UTF-8")];
    args.extend(plan);
    let _clients = sd.host.spawn_py(py::IDLE_TCP_CLIENTS, &args);
    assert!(wait_until(Duration::from_secs(15), || ready.exists()), "the idle clients did not connect");
    let connected: usize = std::fs::read_to_string(&ready).expect("ready").trim().parse().expect("a count");
    assert_eq!(connected, 1100, "every idle client connected (to the listener)");

    let settled = wait_until(Duration::from_secs(5), || established(&sd.host, 8080).values().sum::<usize>() <= 1024);
    let held = established(&sd.host, 8080);
    assert!(settled, "more than 1024 connections held: {held:?}");
    let from_one = *held.get("127.0.0.2").expect("connections from 127.0.0.2");
    assert!(from_one <= 256, "one source holds {from_one} connections: {held:?}");

    // New clients get in: from a new source, and from the greedy one.
    assert_eq!(echo(&sd.host, "tcp", "127.0.0.1", 8080), "hello", "{}", sd.log());
    assert_eq!(echo(&sd.host, "tcp", "127.0.0.2", 8080), "hello");
    let log = sd.log();
    assert!(log.contains("published port 127.0.0.1:8080/tcp: 1024 connections held"), "{log}");
    assert!(log.contains("a source holds 256 connections"), "{log}");
    assert!(log.lines().count() < 30, "evictions are reported at most every 10 s:\n{log}");
    // And counted where `switchctl ports` shows them.
    let ports = sd.json(&["ports"]);
    let relays = &ports[0]["relays"];
    assert!(relays["evicted"].as_u64().expect("evicted") >= 76, "{ports}");
    assert!(relays["active"].as_u64().expect("active") <= 1024, "{ports}");
    assert!(relays["admitted"].as_u64().expect("admitted") >= 1102, "{ports}");
}

/// UDP clients from 300 source ports of one address, then 880 from four
/// others, on a port with the default bounds: the first address keeps 256
/// relays, the table 1,024, and a new client is answered.
#[test]
fn udp_source_ports_cannot_lock_a_published_port() {
    let (sd, web, _server) = published(&publish_entry(5300, "udp", ""));
    let ready = sd.dir.join("udp-ready");
    let mut args = vec!["127.0.0.1", "5300", "20", ready.to_str().expect("UTF-8"), "127.0.0.2:300"];
    let _one = sd.host.spawn_py(py::UDP_SOURCE_PORTS, &args);
    assert!(wait_until(Duration::from_secs(10), || ready.exists()), "the UDP clients did not send");
    assert!(wait_until(Duration::from_secs(5), || udp_relays(&web) >= 256), "{} relays", udp_relays(&web));
    std::thread::sleep(Duration::from_millis(500));
    let relays = udp_relays(&web);
    assert!(relays <= 256, "one source holds {relays} UDP relays");

    let ready_more = sd.dir.join("udp-ready-more");
    args = vec!["127.0.0.1", "5300", "20", ready_more.to_str().expect("UTF-8")];
    args.extend(["127.0.0.3:220", "127.0.0.4:220", "127.0.0.5:220", "127.0.0.6:220"]);
    let _more = sd.host.spawn_py(py::UDP_SOURCE_PORTS, &args);
    assert!(wait_until(Duration::from_secs(15), || ready_more.exists()), "the UDP clients did not send");
    std::thread::sleep(Duration::from_millis(300));
    let relays = udp_relays(&web);
    assert!(relays <= 1024, "{relays} UDP relays");
    assert_eq!(echo(&sd.host, "udp", "127.0.0.1", 5300), "hello", "{}", sd.log());
    assert!(sd.log().contains("published port 127.0.0.1:5300/udp: 1024 connections held"), "{}", sd.log());
}

/// With `idle_timeout = 1`, relays silent for a second are closed (TCP and
/// UDP), and a TCP connection that keeps talking is not.
#[test]
fn idle_relays_time_out() {
    let publish =
        format!("{}{}", publish_entry(8081, "tcp", "idle_timeout = 1"), publish_entry(5301, "udp", "idle_timeout = 1"));
    let (sd, web, _server) = published(&publish);
    assert_eq!(echo(&sd.host, "udp", "127.0.0.1", 5301), "hello");
    let ready = sd.dir.join("idle-ready");
    let _idle = sd
        .host
        .spawn_py(py::IDLE_TCP_CLIENTS, &["127.0.0.1", "8081", "10", ready.to_str().expect("UTF-8"), "127.0.0.2:5"]);
    assert!(wait_until(Duration::from_secs(5), || ready.exists()));
    let started = Instant::now();
    let chatty = sd.host.py(py::CHATTY_TCP_CLIENT, &["127.0.0.1", "8081", "12", "0.25"]);
    assert_eq!(chatty, "alive", "a connection that talks stays open for 3 s");
    assert!(started.elapsed() > Duration::from_millis(2500));
    let gone = wait_until(Duration::from_secs(3), || established(&sd.host, 8081).is_empty());
    assert!(gone, "idle TCP connections still held after their timeout: {:?}", established(&sd.host, 8081));
    assert_eq!(udp_relays(&web), 0, "the UDP relay is closed after a second of silence");
}

/// Runs `switchd-cni` in `ns` with `command` for `conf` (CNI_PATH
/// `cni_path`, the container `pod`); its exit success and stdout as JSON.
fn cni(ns: &Netns, command: &str, conf: &serde_json::Value, cni_path: &Path, pod: &Netns) -> (bool, serde_json::Value) {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .arg(bin("switchd-cni"))
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", "0123456789abcdef0123")
        .env("CNI_NETNS", format!("/run/netns/{}", pod.name))
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", cni_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run switchd-cni");
    child.stdin.take().expect("stdin").write_all(conf.to_string().as_bytes()).expect("write the configuration");
    let out = child.wait_with_output().expect("switchd-cni ran");
    let json = if out.stdout.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
    };
    (out.status.success(), json)
}

/// CVE-2021-20206: an IPAM `type` of `../evil.sh`, or an absolute path,
/// ran that program as root on ADD and DEL. Now it is refused with CNI's
/// code 4 before anything runs, while a plugin in CNI_PATH still runs.
#[test]
fn cni_plugin_types_never_leave_cni_path() {
    let sd =
        Switchd::start("", "[[network]]\nname = \"front\"\nvni = 100\nsubnet = \"10.10.0.0/24\"\ninternal = true\n");
    let pod = Netns::new("pod");
    let root = sd.dir.join("cni");
    let bin_dir = root.join("bin");
    std::fs::create_dir_all(&bin_dir).expect("plugin dir");
    let marker = root.join("evil-ran");
    let evil = root.join("evil.sh");
    let ipam_result = r#"{"cniVersion":"1.0.0","ips":[{"address":"10.10.0.77/24"}]}"#;
    let scripts = [
        (evil.clone(), format!("#!/bin/sh\ntouch {}\necho '{ipam_result}'\n", marker.display())),
        (bin_dir.join("host-local"), format!("#!/bin/sh\ncat > /dev/null\necho '{ipam_result}'\n")),
    ];
    for (path, text) in scripts {
        std::fs::write(&path, text).expect("plugin script");
        let out = switchd_e2e::run("chmod", &["755", path.to_str().expect("UTF-8")]);
        assert!(out.status.success());
    }
    let conf = |kind: &str| {
        serde_json::json!({ "cniVersion": "1.0.0", "name": "front", "type": "switchd-cni",
                            "socket": sd.socket(), "ipam": { "type": kind } })
    };

    for kind in ["../evil.sh", evil.to_str().expect("UTF-8"), "bin/../../evil.sh"] {
        for command in ["ADD", "DEL"] {
            let (ok, reply) = cni(&sd.host, command, &conf(kind), &bin_dir, &pod);
            assert!(!ok, "{command} with ipam type {kind:?} succeeded: {reply}");
            assert_eq!(reply["code"].as_u64().expect("an error code"), 4, "{command} {kind:?}: {reply}");
            assert!(!marker.exists(), "{command} with ipam type {kind:?} ran {}", evil.display());
        }
    }
    let endpoints = sd.json(&["network", "inspect", "front"])["endpoints"].as_array().expect("endpoints").len();
    assert_eq!(endpoints, 0, "a refused ADD attaches nothing");

    // A plugin by name in CNI_PATH still runs, and its address is used.
    let (ok, reply) = cni(&sd.host, "ADD", &conf("host-local"), &bin_dir, &pod);
    assert!(ok, "{reply}");
    assert_eq!(reply["ips"][0]["address"], "10.10.0.77/24", "{reply}");
    let (ok, reply) = cni(&sd.host, "DEL", &conf("host-local"), &bin_dir, &pod);
    assert!(ok, "{reply}");
    assert!(!marker.exists());
}

/// Sends `requests` (one connection each) to a Unix socket and returns what
/// came back on each before the server closed it or 2 s passed.
fn unix_exchange(ns: &Netns, socket: &Path, requests: &[&[u8]]) -> Vec<String> {
    let hexed: Vec<String> = requests.iter().map(|r| hex(r)).collect();
    let mut args = vec![socket.to_str().expect("UTF-8")];
    args.extend(hexed.iter().map(String::as_str));
    let out = ns.py(py::UNIX_EXCHANGE, &args);
    out.lines().map(|line| String::from_utf8_lossy(&unhex(line)).into_owned()).collect()
}

/// A file removed on drop (a socket a killed switchd leaves behind).
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Two Content-Lengths (the first won) and a chunked body (read as a second
/// request) on the plugin socket: both answered 400 and the connection
/// closed; a well-framed request on the same socket is still answered.
#[test]
fn plugin_http_refuses_ambiguous_framing() {
    let socket = std::env::temp_dir().join(format!("sdt-{}-plugin.sock", std::process::id()));
    let _socket_file = RemoveOnDrop(socket.clone());
    let api = std::env::temp_dir().join(format!("sdt-{}-no-dockerd.sock", std::process::id()));
    let extra = format!("\n[docker]\nsocket = \"{}\"\napi_socket = \"{}\"\n", socket.display(), api.display());
    let sd = Switchd::start("", &extra);
    let twice: &[u8] = b"POST /Plugin.Activate HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n{}";
    let chunked: &[u8] =
        b"POST /NetworkDriver.GetCapabilities HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
    let fine: &[u8] = b"POST /Plugin.Activate HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}";
    let replies = unix_exchange(&sd.host, &socket, &[twice, chunked, fine]);
    assert_eq!(replies.len(), 3, "{replies:?}");
    for (reply, what) in replies[..2].iter().zip(["two Content-Lengths", "chunked"]) {
        assert!(reply.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{what}: {reply:?}");
        assert_eq!(reply.matches("HTTP/1.1").count(), 1, "{what}: one reply, then the connection closes: {reply:?}");
        assert!(reply.ends_with("<closed>"), "{what}: {reply:?}");
    }
    assert!(replies[2].starts_with("HTTP/1.1 200 OK\r\n") && replies[2].contains("NetworkDriver"), "{:?}", replies[2]);
}

/// A line that is not UTF-8 on the control socket closed the connection
/// without a word; now it is answered with an error and the next request
/// on the same connection is served.
#[test]
fn control_socket_answers_a_line_that_is_not_utf8() {
    let sd = Switchd::start("", "");
    let replies = unix_exchange(&sd.host, &sd.socket(), &[b"\xff\xfe\x80\n{\"command\":\"status\"}\n"]);
    let lines: Vec<&str> = replies[0].lines().collect();
    assert_eq!(lines.len(), 2, "an error, then the status: {replies:?}");
    let error: serde_json::Value = serde_json::from_str(lines[0]).expect("a JSON reply");
    assert!(error["error"].as_str().expect("an error reply").starts_with("bad request: not UTF-8"), "{error}");
    let status: serde_json::Value = serde_json::from_str(lines[1]).expect("a JSON reply");
    assert_eq!(status["result"]["host"].as_str().expect("status names the host"), sd.host.name, "{status}");
}

/// `switchd --check` in `ns` on `config` text, under a memory cap (a check
/// that reads without end must fail the test, not the machine); its exit
/// code and message.
fn check_config(ns: &Netns, dir: &Path, config: &str) -> (Option<i32>, String) {
    let path = dir.join("check.toml");
    std::fs::write(&path, config).expect("write the config");
    check_config_file(ns, &path)
}

fn check_config_file(ns: &Netns, path: &Path) -> (Option<i32>, String) {
    let out = Command::new("timeout")
        .args(["20", "prlimit", "--as=1073741824", "ip", "netns", "exec", &ns.name])
        .arg(bin("switchd"))
        .args(["--check", "--config"])
        .arg(path)
        .output()
        .expect("run switchd --check");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `--check` refused too little: a control socket path longer than a Unix
/// socket takes, a broadcast underlay address, an endless key file or
/// config file (`/dev/zero` was read until memory ran out), and it echoed a
/// 1 MB host name whole. Each now exits 2 at once with a short message
/// naming the key.
#[test]
fn check_refuses_what_start_would_fail_on() {
    let ns = Netns::new("check");
    let dir = std::env::temp_dir().join(format!("sdt-{}-check", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let long_socket = format!("/tmp/{}.sock", "s".repeat(120));
    let huge_name = "n".repeat(1 << 20);
    let cases = [
        (format!("[host]\nname = \"h\"\ncontrol_socket = \"{long_socket}\"\n"), "host.control_socket: "),
        ("[host]\nname = \"h\"\nunderlay_ip = \"255.255.255.255\"\n".to_owned(), "host.underlay_ip: 255.255.255.255"),
        (
            "[host]\nname = \"h\"\nunderlay_ip = \"198.18.0.1\"\n[gossip]\nkey_file = \"/dev/zero\"\n".to_owned(),
            "gossip.key_file: /dev/zero: not a regular file",
        ),
        (
            "[host]\nname = \"h\"\n[[network]]\nname = \"n\"\nvni = 1\nencrypted = true\nkey_file = \"/dev/zero\"\n"
                .to_owned(),
            "network[0].key_file: /dev/zero: not a regular file",
        ),
        (format!("[host]\nname = \"{huge_name}\"\n"), "host.name: \"nnnn"),
    ];
    let mut failures = Vec::new();
    for (config, expected) in &cases {
        let started = Instant::now();
        let (code, message) = check_config(&ns, &dir, config);
        let fine = code == Some(2)
            && message.contains(expected)
            && message.len() < 1000
            && started.elapsed() < Duration::from_secs(5);
        if !fine {
            failures.push(format!(
                "{expected}: exit {code:?} after {:?}: {}",
                started.elapsed(),
                &message[..message.len().min(300)]
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    // The config file itself, endless.
    let (code, message) = check_config_file(&ns, Path::new("/dev/zero"));
    if code != Some(2) || !message.contains("/dev/zero: cannot read: larger than 16 MiB") {
        failures.push(format!("--config /dev/zero: exit {code:?}: {message}"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `switchctl key add /dev/zero` made the daemon read until memory ran out;
/// now it is refused at once and the daemon carries on.
#[test]
fn key_add_refuses_an_endless_file() {
    let key = switchd_e2e::KeyFile::new("cluster", 7);
    let host = Netns::new("host");
    host.ok(&["ip", "addr", "add", "198.18.0.1/32", "dev", "lo"]);
    let extra = format!("underlay_ip = \"198.18.0.1\"\n\n[gossip]\nseeds = []\nkey_file = \"{}\"\n", key.path());
    let mut sd = Switchd::start_in(host, &extra, "");
    // A cap, so that the daemon of a build without the fix fails alone.
    sd.relaunch_limited(&["--as=2147483648"]);
    let started = Instant::now();
    let refused = sd.try_ctl(&["key", "add", "/dev/zero"]).expect_err("/dev/zero is no key");
    assert!(refused.contains("not a regular file"), "{refused}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert!(sd.try_ctl(&["status"]).is_ok(), "switchd carries on:\n{}", sd.log());
}
