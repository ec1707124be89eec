//! Hostile clients on switchd's sockets: descriptors used up by idle
//! connections, published ports held by idle TCP connections and UDP
//! source ports, plugin types that walk out of `CNI_PATH`, ambiguous HTTP
//! framing on the plugin socket, bytes that are not UTF-8 on the control
//! socket, and config values that are too long, not unicast or endless.
//!
//! Every load here is bounded (a fixed number of connections, held for a
//! fixed time by a client that then exits), comes from namespaces or
//! loopback addresses of this test, and stops by itself.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use switchd_e2e::{Netns, Switchd, bin, wait_until};

/// A client process started by a test, killed by its PID on drop.
struct Client(Child);

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a Python program in `ns` in the background (with `args`).
fn python_bg(ns: &Netns, program: &str, args: &[&str]) -> Client {
    let child = Command::new("ip")
        .args(["netns", "exec", &ns.name, "python3", "-c", program])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start python3");
    Client(child)
}

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

/// Open descriptors of a process.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).expect("fd list")
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

/// Holds `count` connections to a Unix socket for `hold` seconds, saying
/// nothing; writes how many connected into the file `ready` when done.
const IDLE_UNIX_CLIENTS: &str = r#"
import socket, sys, time
path, count, hold, ready = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
held = []
deadline = time.time() + hold
for _ in range(count):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setblocking(False)
    try:
        s.connect(path)
        held.append(s)
    except OSError:
        s.close()
open(ready, "w").write(str(len(held)))
time.sleep(max(0.0, deadline - time.time()))
"#;

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
    let _clients = python_bg(
        &sd.host,
        IDLE_UNIX_CLIENTS,
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
    let fds = open_fds(pid);
    let added = log_lines(&sd) - before;

    assert!(status.as_ref().is_ok_and(|took| *took < Duration::from_secs(2)), "switchctl status: {status:?}");
    assert!(cpu < 0.3, "switchd used {:.0}% of a CPU while its descriptors were used up", cpu * 100.0);
    assert!(
        added < 20,
        "{added} log lines in 3 s of exhaustion:\n{}",
        sd.log().lines().take(30).collect::<Vec<_>>().join("\n")
    );
    assert!(fds <= 128, "{fds} descriptors open under a limit of 128");
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
