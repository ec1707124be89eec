//! The lab for end-to-end tests: network namespaces, switchd daemons and
//! client processes, each behind a guard that cleans up on drop, also when a
//! test fails.
//!
//! Safety rules, kept by construction: every switchd runs inside a namespace
//! made here; no namespace gets a default route (test networks are
//! `internal`); processes are ended by the PID we started them with; names
//! carry our PID so parallel test processes never collide, and leftovers of
//! dead test processes are swept at start.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicUsize = AtomicUsize::new(0);
static SWEEP: Once = Once::new();

/// Namespaces made by this harness start with this.
const PREFIX: &str = "sdt-";

fn unique(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{PREFIX}{}-{n}-{tag}", std::process::id())
}

/// Fails the test unless we are root: these tests need namespaces and must
/// run, never skip.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "end-to-end tests need root (network namespaces, TAP devices)");
    SWEEP.call_once(sweep_leftovers);
}

/// Deletes namespaces (and their /etc/netns resolver files), Docker plugin
/// sockets and temp dirs left by test processes that no longer exist.
fn sweep_leftovers() {
    let temp = std::env::temp_dir();
    for dir in [Path::new("/run/netns"), Path::new("/etc/netns"), Path::new("/run/docker/plugins"), temp.as_path()] {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) =
                name.strip_prefix(PREFIX).and_then(|rest| rest.split('-').next()).and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = Command::new("ip").args(["netns", "del", &name]).output();
                let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(&name));
                // A plugin socket of a switchd that was killed, a temp dir.
                let _ = std::fs::remove_file(dir.join(&name));
                if dir == temp.as_path() {
                    let _ = std::fs::remove_dir_all(dir.join(&name));
                }
            }
        }
    }
}

/// Where `cargo build` put switchd and switchctl: $SWITCHD_BIN_DIR, or the
/// workspace's target/debug.
pub fn bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("SWITCHD_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug"));
    let path = dir.join(name);
    assert!(path.exists(), "{} is missing: run `cargo build --bins` first (or set SWITCHD_BIN_DIR)", path.display());
    path
}

/// Two networks most tests use: `front` (VNI 100, 10.10.0.0/24) and
/// `back` (VNI 200, 10.20.0.0/24), both internal (no test namespace gets a
/// default route).
pub const FRONT_AND_BACK: &str = r#"
[[network]]
name = "front"
vni = 100
subnet = "10.10.0.0/24"
internal = true

[[network]]
name = "back"
vni = 200
subnet = "10.20.0.0/24"
internal = true
"#;

/// A `[[port]]` entry: container `ns` on `network` at `ip`.
pub fn port_entry(network: &str, ns: &Netns, ip: &str) -> String {
    format!("\n[[port]]\nnetwork = \"{network}\"\nnetns = \"{}\"\nip = \"{ip}\"\n", ns.name)
}

/// A file of the repository, by its path from the top.
pub fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// Runs a command, returning its output; panics only if it cannot start.
pub fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program).args(args).output().unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

fn check(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace (a test host or container), deleted on drop.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        require_root();
        let name = unique(tag);
        check(run("ip", &["netns", "add", &name]), "ip netns add");
        let ns = Netns { name };
        ns.ok(&["ip", "link", "set", "lo", "up"]);
        // Quiet containers: no IPv6 autoconfiguration chatter refreshing MACs.
        ns.ok(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"]);
        ns
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).args(args);
        cmd
    }

    /// Runs a command inside; returns its output.
    pub fn exec(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap_or_else(|e| panic!("cannot run {args:?} in {}: {e}", self.name))
    }

    /// Runs a command inside that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        check(self.exec(args), &format!("{args:?} in {}", self.name))
    }

    /// Starts a background process inside, ended by PID on drop.
    pub fn spawn(&self, args: &[&str]) -> Proc {
        let child = self
            .command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {args:?} in {}: {e}", self.name));
        Proc { child }
    }

    /// Whether `ping -c count` to `ip` gets every reply.
    pub fn ping(&self, ip: &str, count: u32) -> bool {
        self.exec(&["ping", "-c", &count.to_string(), "-i", "0.2", "-W", "1", "-q", ip]).status.success()
    }

    /// Frames the kernel dropped on their way out of `ifname` (for a
    /// container's TAP: frames that found its queue to switchd full, so
    /// switchd never saw them).
    pub fn tx_dropped(&self, ifname: &str) -> u64 {
        let out = self.ok(&["ip", "-j", "-s", "link", "show", ifname]);
        let json: serde_json::Value = serde_json::from_str(&out).expect("ip -j prints JSON");
        json[0]["stats64"]["tx"]["dropped"].as_u64().expect("ip -s shows tx dropped")
    }

    /// Whether pings of 1000 bytes filled with `pattern` (up to 16 bytes,
    /// as hex) to `ip` all get their replies.
    pub fn ping_pattern(&self, ip: &str, pattern: &str) -> bool {
        let args = ["ping", "-c", "3", "-i", "0.2", "-W", "1", "-q", "-s", "1000", "-p", pattern, ip];
        self.exec(&args).status.success()
    }

    /// An iperf3 TCP run of `secs` to a server started in `server`; Gbit/s received.
    pub fn iperf(&self, server: &Netns, ip: &str, secs: u32) -> f64 {
        let _srv = server.spawn(&["iperf3", "-s", "-1"]);
        let listening =
            wait_until(Duration::from_secs(5), || !server.ok(&["ss", "-ltnH", "sport = :5201"]).trim().is_empty());
        assert!(listening, "iperf3 server did not start in {}", server.name);
        let out = self.ok(&["iperf3", "-c", ip, "-t", &secs.to_string(), "-J"]);
        let json: serde_json::Value = serde_json::from_str(&out).expect("iperf3 -J prints JSON");
        json["end"]["sum_received"]["bits_per_second"].as_f64().expect("iperf3 reports received bits") / 1e9
    }

    /// The interface's MAC, as the kernel has it.
    pub fn mac(&self, ifname: &str) -> String {
        self.ok(&["cat", &format!("/sys/class/net/{ifname}/address")]).trim().to_owned()
    }

    /// Turns IPv6 on (test namespaces start with it off), for a container
    /// of a dual-stack network; before it is connected.
    pub fn enable_ipv6(&self) {
        self.ok(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0", "net.ipv6.conf.default.disable_ipv6=0"]);
    }

    /// Waits until eth0 has `addr`/64, past duplicate address detection
    /// (no longer tentative); what it has is printed if never.
    pub fn has_ipv6(&self, addr: &str) -> bool {
        let show = || self.ok(&["ip", "-6", "addr", "show", "dev", "eth0"]);
        let done = wait_until(Duration::from_secs(15), || {
            show().lines().any(|l| l.contains(&format!("{addr}/64")) && !l.contains("tentative"))
        });
        if !done {
            eprintln!("{}: {}", self.name, show());
        }
        done
    }

    fn py_command(&self, script: py::Script, args: &[&str]) -> Command {
        let mut cmd = self.command(&["python3", "-c", py::BOOT, script.path, script.source]);
        cmd.args(args);
        cmd
    }

    /// Runs one of the Python programs of `tests/py/` inside, with `args`
    /// (its `sys.argv[1:]`); returns its output, whether it succeeded or not.
    pub fn py_exec(&self, script: py::Script, args: &[&str]) -> Output {
        self.py_command(script, args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {} in {}: {e}", script.name, self.name))
    }

    /// Runs one of the Python programs of `tests/py/` inside, which must
    /// succeed; returns its stdout.
    pub fn py(&self, script: py::Script, args: &[&str]) -> String {
        check(self.py_exec(script, args), &format!("{} {args:?} in {}", script.name, self.name))
    }

    /// Starts one of the Python programs of `tests/py/` in the background,
    /// ended by PID on drop. Its stderr goes to the test's, so that a
    /// server that fails to start says why.
    pub fn spawn_py(&self, script: py::Script, args: &[&str]) -> Proc {
        let child = self
            .py_command(script, args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} in {}: {e}", script.name, self.name));
        Proc { child }
    }

    /// [`Netns::spawn_py`], keeping what the script prints for [`Proc::output`].
    pub fn spawn_py_captured(&self, script: py::Script, args: &[&str]) -> Proc {
        let child = self
            .py_command(script, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} in {}: {e}", script.name, self.name));
        Proc { child }
    }

    /// Sends `frames` (whole Ethernet frames, from the destination MAC on)
    /// on `eth0` with a packet socket, in order, exactly as given.
    pub fn inject(&self, frames: &[Vec<u8>]) {
        self.inject_on("eth0", frames);
    }

    /// Sends `frames` on `ifname`, as [`Netns::inject`] does on `eth0`.
    pub fn inject_on(&self, ifname: &str, frames: &[Vec<u8>]) {
        let hexed: Vec<String> = frames.iter().map(|f| hex(f)).collect();
        let mut args = vec![ifname];
        args.extend(hexed.iter().map(String::as_str));
        self.py(py::SEND_FRAMES, &args);
    }

    /// Runs a program of `tests/py/` that sends on an interface it is given
    /// first (`send_udp_frame.py`, `mac_flood.py`, ...) on `eth0`.
    pub fn inject_script(&self, script: py::Script, args: &[&str]) {
        let mut all = vec!["eth0"];
        all.extend_from_slice(args);
        self.py(script, &all);
    }

    pub fn has_link(&self, ifname: &str) -> bool {
        self.exec(&["ip", "link", "show", ifname]).status.success()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.name]);
        // The resolv.conf switchd wrote for it, if the daemon was gone first.
        let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(&self.name));
    }
}

/// A background process, killed (by its PID) and reaped on drop.
#[derive(Debug)]
pub struct Proc {
    child: Child,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to end and returns what it printed (started
    /// by [`Netns::spawn_py_captured`]).
    pub fn output(mut self) -> String {
        let mut out = String::new();
        if let Some(mut stdout) = self.child.stdout.take() {
            let _ = std::io::Read::read_to_string(&mut stdout, &mut out);
        }
        let _ = self.child.wait();
        out
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A switchd running in a host namespace, with its own config, socket and
/// state directory; stopped on drop (its log is printed if the test failed).
#[derive(Debug)]
pub struct Switchd {
    pub host: Netns,
    pub dir: PathBuf,
    child: Option<Child>,
    /// Environment and arguments the daemon starts with, beyond the usual.
    pub env: Vec<(String, String)>,
    pub args: Vec<String>,
}

impl Switchd {
    /// Starts switchd in a new host namespace; see [`Switchd::start_in`].
    pub fn start(host_extra: &str, body: &str) -> Switchd {
        Switchd::start_in(Netns::new("host"), host_extra, body)
    }

    /// Writes a host.toml and starts switchd in `host`. `host_extra` goes
    /// into `[host]` (after name, socket and state dir); `body` follows it.
    pub fn start_in(host: Netns, host_extra: &str, body: &str) -> Switchd {
        let mut sd = Switchd::prepare(host, host_extra, body);
        sd.launch();
        sd
    }

    /// [`Switchd::start_in`] without starting it: set `env` and `args`,
    /// then [`Switchd::launch`].
    pub fn prepare(host: Netns, host_extra: &str, body: &str) -> Switchd {
        let dir = std::env::temp_dir().join(unique("dir"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let config = format!(
            "[host]\nname = \"{}\"\ncontrol_socket = \"{}\"\nstate_dir = \"{}\"\n{host_extra}\n{body}",
            host.name,
            dir.join("switchd.sock").display(),
            dir.join("state").display()
        );
        std::fs::write(dir.join("host.toml"), config).expect("write host.toml");
        Switchd { host, dir, child: None, env: Vec::new(), args: Vec::new() }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("host.toml")
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("switchd.sock")
    }

    /// Starts the daemon and waits until it answers.
    pub fn launch(&mut self) {
        self.spawn(&[]);
    }

    /// Starts the daemon, under `prlimit LIMITS` if any are given, and
    /// waits until it answers.
    fn spawn(&mut self, limits: &[&str]) {
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("switchd.log")).expect("log file");
        // prlimit and nsenter both exec, so `pid` is switchd's own.
        let mut command = if limits.is_empty() { Command::new("nsenter") } else { Command::new("prlimit") };
        if !limits.is_empty() {
            command.args(limits).arg("nsenter");
        }
        // Only the network namespace, as on a real host: `ip netns exec`
        // would also give it a mount namespace of its own, where the
        // container namespaces dockerd mounts later would not show.
        let child = command
            .arg(format!("--net=/run/netns/{}", self.host.name))
            .arg(bin("switchd"))
            .arg("--config")
            .arg(self.config_path())
            .args(&self.args)
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start switchd");
        self.child = Some(child);
        let ready = wait_until(Duration::from_secs(10), || self.try_ctl(&["status"]).is_ok());
        assert!(ready, "switchd did not come up (limits {limits:?}):\n{}", self.log());
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// kill -9, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM; returns how it exited.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        // SAFETY: plain signal to a child we started and have not reaped.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("switchd ignored SIGTERM for 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("switchd.log")).unwrap_or_default()
    }

    /// Runs switchctl against this daemon: stdout, or the error line.
    pub fn try_ctl(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(bin("switchctl"))
            .arg("--socket")
            .arg(self.socket())
            .args(args)
            .output()
            .expect("run switchctl");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            assert_eq!(out.status.code(), Some(1), "switchctl fails with exit code 1");
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }

    pub fn ctl(&self, args: &[&str]) -> String {
        self.try_ctl(args).unwrap_or_else(|e| panic!("switchctl {args:?}: {e}\nswitchd log:\n{}", self.log()))
    }

    /// `switchctl --json ...`, parsed.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ctl(&all)).expect("switchctl --json prints JSON")
    }

    /// `network connect NETWORK NETNS [extra...]`, returning the endpoint.
    pub fn connect(&self, network: &str, ns: &Netns, extra: &[&str]) -> serde_json::Value {
        let mut args = vec!["network", "connect", network, ns.name.as_str()];
        args.extend_from_slice(extra);
        self.json(&args)
    }

    /// `switchctl --json stats`.
    pub fn stats(&self) -> serde_json::Value {
        self.json(&["stats"])
    }

    /// A port's counters from `stats`, found by endpoint name; panics if
    /// there is no such port.
    pub fn port_stats(&self, endpoint: &str) -> serde_json::Value {
        let stats = self.stats();
        row(&stats["ports"], "endpoint", endpoint).unwrap_or_else(|| panic!("no port for {endpoint} in {stats}"))
    }

    /// A VTEP's counters from `stats`, found by its underlay address;
    /// panics if this switchd lists no such VTEP.
    pub fn vtep_stats(&self, vtep: &str) -> serde_json::Value {
        let stats = self.stats();
        row(&stats["vteps"], "vtep", vtep).unwrap_or_else(|| panic!("no VTEP {vtep} in {stats}"))
    }

    /// A network's counters from `stats`, found by name; panics if there is
    /// no such network.
    pub fn network_stats(&self, network: &str) -> serde_json::Value {
        let stats = self.stats();
        row(&stats["networks"], "network", network).unwrap_or_else(|| panic!("no network {network} in {stats}"))
    }
}

impl Drop for Switchd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- switchd log ({}) ---\n{}", self.host.name, self.log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The underlay: a namespace with a bridge that host namespaces plug into
/// through veth pairs, like hosts on one LAN. Addresses are 198.18.0.N/24.
#[derive(Debug)]
pub struct Underlay {
    pub ns: Netns,
    hosts: u8,
    /// An IPv6 underlay: hosts at `fd00:198:18::N/64` (a unique local
    /// prefix that exists only in these namespaces, none of which has a
    /// default route), not 198.18.0.N/24.
    ipv6: bool,
}

impl Underlay {
    pub fn new() -> Underlay {
        let ns = Netns::new("ul");
        ns.ok(&["ip", "link", "add", "br0", "type", "bridge"]);
        ns.ok(&["ip", "link", "set", "br0", "up"]);
        Underlay { ns, hosts: 0, ipv6: false }
    }

    /// An underlay of IPv6 only.
    pub fn new_ipv6() -> Underlay {
        Underlay { ipv6: true, ..Underlay::new() }
    }

    /// A new host namespace on this underlay; returns it and its address.
    pub fn host(&mut self, tag: &str) -> (Netns, String) {
        self.hosts += 1;
        let n = self.hosts;
        let host = Netns::new(tag);
        let port = format!("h{n}");
        self.ns.ok(&["ip", "link", "add", &port, "type", "veth", "peer", "name", "u0", "netns", &host.name]);
        self.ns.ok(&["ip", "link", "set", &port, "master", "br0", "up"]);
        if self.ipv6 {
            host.ok(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0", "net.ipv6.conf.u0.disable_ipv6=0"]);
            let ip = format!("fd00:198:18::{n}");
            host.ok(&["ip", "-6", "addr", "add", &format!("{ip}/64"), "dev", "u0", "nodad"]);
            host.ok(&["ip", "link", "set", "u0", "up"]);
            return (host, ip);
        }
        let ip = format!("198.18.0.{n}");
        host.ok(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "u0"]);
        host.ok(&["ip", "link", "set", "u0", "up"]);
        (host, ip)
    }

    /// The address of this underlay's first host, as a socket address
    /// with `port` (IPv6 in brackets).
    pub fn first(&self, port: u16) -> String {
        if self.ipv6 { format!("[fd00:198:18::1]:{port}") } else { format!("198.18.0.1:{port}") }
    }
}

impl Default for Underlay {
    fn default() -> Self {
        Underlay::new()
    }
}

/// A key file (the same byte 32 times, as hex) in a temp dir, removed on drop.
#[derive(Debug)]
pub struct KeyFile(pub PathBuf);

impl KeyFile {
    pub fn new(tag: &str, byte: u8) -> KeyFile {
        let path = std::env::temp_dir().join(unique(&format!("{tag}.key")));
        std::fs::write(&path, format!("{byte:02x}").repeat(32)).expect("write key file");
        KeyFile(path)
    }

    pub fn path(&self) -> &str {
        self.0.to_str().expect("temp paths are UTF-8")
    }
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A switchd in `host` (at `ip` on the underlay) that finds the others by
/// gossip through the seed at 198.18.0.1, with the cluster key `key`.
pub fn gossip_member(host: Netns, ip: &str, key: &KeyFile, body: &str) -> Switchd {
    let seed = if ip.contains(':') { "[fd00:198:18::1]:7946" } else { "198.18.0.1:7946" };
    let extra = format!("underlay_ip = \"{ip}\"\n\n[gossip]\nseeds = [\"{seed}\"]\nkey_file = \"{}\"\n", key.path());
    Switchd::start_in(host, &extra, body)
}

/// Polls `f` every 50 ms until it is true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The element of the JSON array `list` whose `key` is `value`; panics if
/// `list` is not an array.
fn row(list: &serde_json::Value, key: &str, value: &str) -> Option<serde_json::Value> {
    let rows = list.as_array().unwrap_or_else(|| panic!("not a list: {list}"));
    rows.iter().find(|r| r[key] == value).cloned()
}

/// The counter `v[key]`, which must be there: a counter that is missing
/// (renamed, moved) fails the test naming it, instead of reading as zero.
/// For the maps that list only what happened, see [`sparse`].
pub fn count(v: &serde_json::Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("no counter {key:?} in {v}"))
}

/// A count in one of switchd's sparse maps (`drops` of a port, a VTEP or
/// a network, `underlay_drops`, `services`, gossip's `rejected`), which list
/// only the reasons that happened: `None` for one that has not (yet).
/// Panics if `map` is not an object, so a map that is missing altogether
/// fails. "None of these" is `sparse(..).is_none()`, never a read of 0.
pub fn sparse(map: &serde_json::Value, key: &str) -> Option<u64> {
    let map = map.as_object().unwrap_or_else(|| panic!("not a map of counts: {map}"));
    map.get(key).map(|n| n.as_u64().unwrap_or_else(|| panic!("{key:?} is not a count: {n}")))
}

/// A sparse count (see [`sparse`]) as a baseline, before what a test then
/// waits for: absent is zero here, because switchd omits zero counts. What
/// follows must read the count with [`sparse`] or [`count`], so that a
/// renamed reason still fails.
pub fn baseline(map: &serde_json::Value, key: &str) -> u64 {
    sparse(map, key).unwrap_or(0)
}

/// Bytes as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex (even length, no separators) as bytes; panics on anything else.
pub fn unhex(text: &str) -> Vec<u8> {
    assert!(text.len() % 2 == 0, "odd-length hex: {text}");
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex")).collect()
}

/// A MAC address as "aa:bb:cc:dd:ee:ff", as bytes.
pub fn mac_bytes(mac: &str) -> [u8; 6] {
    let bytes = unhex(&mac.replace(':', ""));
    bytes.try_into().unwrap_or_else(|_| panic!("not a MAC address: {mac}"))
}

pub const BROADCAST: [u8; 6] = [0xff; 6];

/// An Ethernet frame: `dst`, `src`, `ethertype`, then `payload` as given
/// (nothing padded).
pub fn ether(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    [&dst[..], &src, &ethertype.to_be_bytes(), payload].concat()
}

/// A broadcast ARP frame (Ethernet source `sender.0`) of operation `op`
/// (1 request, 2 reply) from `sender` to `target` (MAC, IPv4), padded to
/// the 60-byte minimum.
pub fn arp(op: u16, sender: ([u8; 6], std::net::Ipv4Addr), target: ([u8; 6], std::net::Ipv4Addr)) -> Vec<u8> {
    let body = [
        &[0x00, 0x01, 0x08, 0x00, 6, 4][..],
        &op.to_be_bytes(),
        &sender.0,
        &sender.1.octets(),
        &target.0,
        &target.1.octets(),
        &[0; 18],
    ]
    .concat();
    ether(BROADCAST, sender.0, 0x0806, &body)
}

/// The IPv4 address of an endpoint from `connect --json`.
pub fn ip_of(endpoint: &serde_json::Value) -> String {
    endpoint["ip"].as_str().expect("endpoint has an ip").to_owned()
}

/// The SLAAC address switchd reports for an endpoint on a dual-stack network.
pub fn ip6_of(endpoint: &serde_json::Value) -> String {
    endpoint["ip6"].as_str().unwrap_or_else(|| panic!("endpoint has no ip6: {endpoint}")).to_owned()
}

/// The test image of both engines, as a tarball in `dir`: busybox-static
/// and the applets the tests run (no registry is reachable here).
fn busybox_image(dir: &Path) -> PathBuf {
    let root = dir.join("image");
    std::fs::create_dir_all(root.join("bin")).expect("image dir");
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static");
    for applet in ["sh", "ping", "ip", "nslookup", "sleep", "cat", "wget", "hostname"] {
        let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
    }
    let tarball = dir.join("image.tar");
    check(run("tar", &["-C", &root.to_string_lossy(), "-cf", &tarball.to_string_lossy(), "."]), "tar");
    tarball
}

/// A dockerd (Debian's docker.io) in a host namespace: its own data and
/// exec roots and API socket under a temp dir, cgroupfs, no iptables, no
/// default bridge. Started with `nsenter --net` (not `ip netns exec`, whose
/// fresh /sys hides the cgroup mounts dockerd needs); stopped and cleaned
/// up on drop. `image` is a tiny image made from busybox-static.
#[derive(Debug)]
pub struct Dockerd {
    pub dir: PathBuf,
    child: Option<Child>,
}

impl Dockerd {
    pub const IMAGE: &str = "sdbox:latest";

    pub fn start(host: &Netns) -> Dockerd {
        let nproc = check(run("bash", &["-c", "ulimit -Hu"]), "ulimit").trim().to_owned();
        let dir = std::env::temp_dir().join(unique("dockerd"));
        std::fs::create_dir_all(&dir).expect("dockerd dir");
        let log = std::fs::File::create(dir.join("dockerd.log")).expect("log");
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", host.name))
            .arg("dockerd")
            .args(["--data-root", &dir.join("data").to_string_lossy()])
            .args(["--exec-root", &dir.join("exec").to_string_lossy()])
            .args(["-H", &format!("unix://{}", dir.join("docker.sock").display())])
            .args(["--pidfile", &dir.join("docker.pid").to_string_lossy()])
            .args(["--exec-opt", "native.cgroupdriver=cgroupfs"])
            .args(["--default-ulimit", "nofile=20000:20000", "--default-ulimit", &format!("nproc={nproc}:{nproc}")])
            .args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start dockerd");
        let d = Dockerd { dir, child: Some(child) };
        let up = wait_until(Duration::from_secs(30), || d.exec(&["version"]).status.success());
        assert!(up, "dockerd did not start:\n{}", d.log());
        let tarball = busybox_image(&d.dir);
        d.ok(&["import", &tarball.to_string_lossy(), Self::IMAGE]);
        d
    }

    /// `docker ARGS` against this daemon.
    pub fn exec(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .env("DOCKER_HOST", format!("unix://{}", self.dir.join("docker.sock").display()))
            .args(args)
            .output()
            .expect("run docker")
    }

    /// `docker ARGS` that must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        check(self.exec(args), &format!("docker {args:?}"))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // Containers first, so their namespaces and mounts go cleanly.
        let ids = self.exec(&["ps", "-aq"]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            let _ = self.exec(&["rm", "-f", id]);
        }
        if let Some(mut child) = self.child.take() {
            // SAFETY: a plain signal to a child we started and have not reaped.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            if !wait_until(Duration::from_secs(15), || child.try_wait().ok().flatten().is_some()) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            eprintln!("--- dockerd log ---\n{}", self.log());
        }
        let _ = run(
            "sh",
            &["-c", &format!("grep -o ' {}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l", self.dir.display())],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// podman (Debian's 4.3) with the CNI backend, its own storage and
/// configuration under a temp dir, runc and cgroupfs, and `switchd-cni` as
/// a plugin. `network(name, socket)` writes a conflist for a switchd
/// network. Containers and storage are removed on drop.
#[derive(Debug)]
pub struct Podman {
    pub dir: PathBuf,
}

impl Podman {
    pub const IMAGE: &str = "sdbox:latest";

    pub fn new() -> Podman {
        let dir = std::env::temp_dir().join(unique("podman"));
        for sub in ["cni", "bin"] {
            std::fs::create_dir_all(dir.join(sub)).expect("podman dirs");
        }
        std::fs::copy(bin("switchd-cni"), dir.join("bin/switchd-cni")).expect("switchd-cni");
        let conf = format!(
            "[containers]\ndefault_ulimits = []\n\n[network]\nnetwork_backend = \"cni\"\n\
             cni_plugin_dirs = [\"{}\", \"/usr/lib/cni\"]\nnetwork_config_dir = \"{}\"\n\n\
             [engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
            dir.join("bin").display(),
            dir.join("cni").display()
        );
        std::fs::write(dir.join("containers.conf"), conf).expect("containers.conf");
        let p = Podman { dir };
        let tarball = busybox_image(&p.dir);
        p.ok(&["import", &tarball.to_string_lossy(), Self::IMAGE]);
        p
    }

    /// A CNI network named `name` that is switchd's network `name`.
    pub fn network(&self, name: &str, socket: &Path) {
        let conf = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": name,
            "plugins": [{ "type": "switchd-cni", "network": name, "socket": socket }],
        });
        std::fs::write(self.dir.join("cni").join(format!("{name}.conflist")), conf.to_string()).expect("conflist");
    }

    pub fn exec(&self, args: &[&str]) -> Output {
        Command::new("podman")
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .args(["--root", &self.dir.join("root").to_string_lossy()])
            .args(["--runroot", &self.dir.join("run").to_string_lossy()])
            .args(["--storage-driver", "vfs"])
            .args(args)
            .output()
            .expect("run podman")
    }

    pub fn ok(&self, args: &[&str]) -> String {
        check(self.exec(args), &format!("podman {args:?}"))
    }
}

impl Default for Podman {
    fn default() -> Self {
        Podman::new()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.exec(&["rm", "-a", "-f", "-t", "0"]);
        let _ = self.exec(&["system", "reset", "-f"]);
        let _ = run(
            "sh",
            &["-c", &format!("grep -o ' {}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l", self.dir.display())],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Switchd {
    /// Stops this switchd (kill -9) and starts it again under `prlimit`
    /// with `limits` (e.g. `["--nofile=64:4096"]`), to see how it copes
    /// with few descriptors or little memory. prlimit and nsenter both exec,
    /// so [`Switchd::pid`] is switchd's own PID.
    pub fn relaunch_limited(&mut self, limits: &[&str]) {
        self.kill9();
        self.spawn(limits);
    }
}

/// The Python programs the tests run (hand-made frames and datagrams on raw
/// sockets, captures, small servers and clients), one file each in
/// `tests/py/`, compiled in with `include_str!`. Each file's docstring says
/// what it does and what arguments it takes; arguments are its
/// `sys.argv[1:]`. Run them with [`Netns::py`], [`Netns::py_exec`],
/// [`Netns::spawn_py`] or [`Netns::inject_script`].
pub mod py {
    /// One program of `tests/py/`.
    #[derive(Debug, Clone, Copy)]
    pub struct Script {
        /// The file's name, e.g. `send_frames.py`.
        pub name: &'static str,
        /// Where the file is in the source tree (named in tracebacks).
        pub path: &'static str,
        pub source: &'static str,
    }

    /// How a script runs: `python3 -c BOOT PATH SOURCE ARGS...` compiles
    /// SOURCE under its file's path, so that a traceback names the file and
    /// line, and gives it `sys.argv = [PATH, ARGS...]`, as if it had been
    /// run as `python3 PATH ARGS...`. (The source is passed, not the path:
    /// what runs is what the test binary was built with.)
    pub const BOOT: &str = "import sys; path, source = sys.argv[1:3]; sys.argv = [path] + sys.argv[3:]; \
                            exec(compile(source, path, 'exec'), {'__name__': '__main__', '__file__': path})";

    macro_rules! scripts {
        ($($(#[$doc:meta])* $id:ident = $file:literal,)*) => {
            $(
                $(#[$doc])*
                pub const $id: Script = Script {
                    name: $file,
                    path: concat!(env!("CARGO_MANIFEST_DIR"), "/py/", $file),
                    source: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/py/", $file)),
                };
            )*
            /// Every script, for the checks below.
            pub const ALL: &[Script] = &[$($id),*];
        };
    }

    scripts! {
        /// Raw Ethernet frames on an interface: `IFNAME FRAME_HEX...`.
        SEND_FRAMES = "send_frames.py",
        /// Frames from random source MACs: `IFNAME COUNT`.
        MAC_FLOOD = "mac_flood.py",
        /// One hand-made IPv4/UDP frame: `IFNAME DST_MAC SRC_MAC SRC_IP DST_IP SPORT DPORT PAYLOAD_HEX`.
        SEND_UDP_FRAME = "send_udp_frame.py",
        /// A lying neighbour and router advertisement: `IFNAME MAC SRC_LL VICTIM_LL PREFIX`.
        SPOOF_NEIGHBOUR_DISCOVERY = "spoof_neighbour_discovery.py",
        /// A 64 KiB TSO frame through PACKET_VNET_HDR: `IFNAME DST_MAC SRC_MAC SRC_IP DST_IP GSO_SIZE COUNT`.
        SEND_TSO_FRAME = "send_tso_frame.py",
        /// UDP datagrams from one socket: `BIND_IP DST_IP DST_PORT DATAGRAM_HEX...`.
        SEND_DATAGRAMS = "send_datagrams.py",
        /// One UDP datagram captured on an interface: `IFNAME SRC_IP DST_IP DST_PORT TIMEOUT [OFFSET=HEX...]`.
        CAPTURE_DATAGRAM = "capture_datagram.py",
        /// Accepts one TCP connection and reads it to the end: `PORT`.
        TCP_SINK = "tcp_sink.py",
        /// A marker sent many times over TCP: `HOST PORT MARKER COUNT`.
        TCP_SEND = "tcp_send.py",
        /// Idle connections to a Unix socket: `PATH COUNT HOLD READY`.
        IDLE_UNIX_CLIENTS = "idle_unix_clients.py",
        /// Idle TCP connections from several sources: `DST_IP DST_PORT HOLD READY SRC:COUNT...`.
        IDLE_TCP_CLIENTS = "idle_tcp_clients.py",
        /// A datagram from each of many UDP source ports: `DST_IP DST_PORT HOLD READY SRC:COUNT...`.
        UDP_SOURCE_PORTS = "udp_source_ports.py",
        /// A TCP and UDP echo server: `PORT [PREFIX]`.
        ECHO_SERVER = "echo_server.py",
        /// One round trip to an echo server: `tcp|udp SRC_IP DST_IP DST_PORT [MESSAGE]`.
        ECHO_ONCE = "echo_once.py",
        /// A TCP connection that keeps talking: `DST_IP DST_PORT ROUNDS INTERVAL`.
        CHATTY_TCP_CLIENT = "chatty_tcp_client.py",
        /// Raw requests to a Unix socket, replies as hex: `PATH REQUEST_HEX...`.
        UNIX_EXCHANGE = "unix_exchange.py",
        /// The three-tier example's app, counting visits in redis: `PORT DB_HOST DB_PORT`.
        VISIT_COUNTER_APP = "visit_counter_app.py",
        /// An HTTP server answering with the client's address: `PORT`.
        WHOAMI_SERVER = "whoami_server.py",
        /// An HTTP server answering with its name and the client's address: `PORT NAME`.
        NAMED_SERVER = "named_server.py",
        /// Many short HTTP connections, counted by who answered: `URL COUNT`.
        HTTP_MANY = "http_many.py",
        /// One HTTP connection asked again and again: `URL SECONDS INTERVAL`.
        HTTP_KEEPALIVE = "http_keepalive.py",
        /// GET a URL, telling "unreachable" (exit 2) from a failure: `URL`.
        HTTP_GET = "http_get.py",
        /// Whether a TCP connection can be made: `DST_IP DST_PORT TIMEOUT`.
        TCP_CONNECT = "tcp_connect.py",
        /// POSTs to a Docker plugin socket, reply bodies one a line: `SOCKET PATH BODY [PATH BODY]...`.
        DOCKER_PLUGIN_POST = "docker_plugin_post.py",
        /// Numbered UDP datagrams over several flows: `DST_IP DST_PORT FLOWS COUNT`.
        NUMBERED_UDP_SEND = "numbered_udp_send.py",
        /// Counts numbered datagrams received out of order: `PORT FLOWS COUNT TIMEOUT READY`.
        NUMBERED_UDP_RECEIVE = "numbered_udp_receive.py",
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// Every file in `tests/py/` is one of [`ALL`], and each opens with a
        /// docstring that gives its usage.
        #[test]
        fn every_script_is_listed_and_says_how_it_is_used() {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("py");
            let mut files: Vec<String> = std::fs::read_dir(&dir)
                .expect("tests/py")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .filter(|name| name.ends_with(".py"))
                .collect();
            files.sort();
            let mut listed: Vec<String> = ALL.iter().map(|s| s.name.to_owned()).collect();
            listed.sort();
            assert_eq!(files, listed, "tests/py/ and py::ALL differ");
            for script in ALL {
                assert!(script.source.starts_with("\"\"\""), "{} opens without a docstring", script.name);
                let usage = format!("Usage: {}", script.name);
                assert!(script.source.contains(&usage), "{}'s docstring has no \"{usage}\" line", script.name);
            }
        }

        /// Every script compiles (`python3 -m py_compile`, its cache kept
        /// out of the source tree).
        #[test]
        fn every_script_compiles() {
            let cache = std::env::temp_dir().join(format!("sdt-{}-pycache", std::process::id()));
            for script in ALL {
                let out = std::process::Command::new("python3")
                    .args(["-m", "py_compile", script.path])
                    .env("PYTHONPYCACHEPREFIX", &cache)
                    .output()
                    .expect("run python3");
                assert!(out.status.success(), "{}: {}", script.name, String::from_utf8_lossy(&out.stderr));
            }
            let _ = std::fs::remove_dir_all(&cache);
        }
    }
}

/// The frames of a pcap file (little-endian, as tcpdump writes), each cut
/// to what was captured of it.
pub fn pcap_frames(pcap: &[u8]) -> Vec<&[u8]> {
    assert!(pcap.len() >= 24 && pcap[..4] == [0xd4, 0xc3, 0xb2, 0xa1], "a little-endian pcap file");
    let mut frames = Vec::new();
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let caplen = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().expect("4 bytes")) as usize;
        frames.push(&pcap[at + 16..(at + 16 + caplen).min(pcap.len())]);
        at += 16 + caplen;
    }
    frames
}
