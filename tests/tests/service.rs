//! switchd as a service: it tells systemd (`Type=notify`, here a socket
//! the test holds as `NOTIFY_SOCKET`) when it is ready, keeps the watchdog
//! fed, says when it stops; logs as JSON lines on request; and names its
//! version and commit.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use switchd_e2e::{Netns, Switchd, bin, run};

/// Everything the daemon sent to the notify socket within `wait`.
fn notifications(socket: &UnixDatagram, wait: Duration) -> Vec<String> {
    socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let deadline = std::time::Instant::now() + wait;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while std::time::Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    got
}

#[test]
fn switchd_tells_systemd_it_is_ready_feeds_the_watchdog_and_logs_json() {
    let mut sd = Switchd::prepare(Netns::new("host"), "", "");
    let path = sd.dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("the notify socket");
    sd.env.push(("NOTIFY_SOCKET".into(), path.display().to_string()));
    // A watchdog of 400 ms: fed every 200 ms. WATCHDOG_PID is not set, so
    // it is meant for whichever process reads it (the daemon).
    sd.env.push(("WATCHDOG_USEC".into(), "400000".into()));
    sd.args = vec!["--log-format".into(), "json".into()];
    sd.launch();

    let got = notifications(&socket, Duration::from_millis(1500));
    assert!(got.iter().any(|m| m.contains("READY=1")), "no READY=1 in {got:?}");
    let fed = got.iter().filter(|m| m.contains("WATCHDOG=1")).count();
    assert!(fed >= 3, "the watchdog was fed {fed} times in 1.5 s at 200 ms: {got:?}");

    // Versions name the commit, the same for both binaries and the daemon.
    let version = run(bin("switchd").to_str().unwrap(), &["--version"]);
    let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    assert!(version.starts_with("switchd ") && version.contains("(commit "), "{version}");
    let both = sd.ctl(&["version"]);
    let built = version.trim_start_matches("switchd ");
    assert!(both.contains(&format!("switchctl {built}")) && both.contains(&format!("switchd   {built}")), "{both}");

    let status = sd.terminate();
    assert!(status.success(), "{status:?}");
    let got = notifications(&socket, Duration::from_millis(300));
    assert!(got.iter().any(|m| m.contains("STOPPING=1")), "no STOPPING=1 in {got:?}");

    // Every log line is a JSON object with a level and a message.
    let log = sd.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        assert!(v["level"].is_string() && v["message"].is_string(), "{line}");
    }
    assert!(lines.iter().any(|l| l.contains("switchd ready")), "{log}");
}
