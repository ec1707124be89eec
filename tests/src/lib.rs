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

    /// Runs a Python 3 program inside (raw sockets for hand-made frames and
    /// datagrams); returns its stdout.
    pub fn python(&self, program: &str) -> String {
        self.ok(&["python3", "-c", program])
    }

    /// Sends raw Ethernet frames on `eth0` with a packet socket: `body` is
    /// Python that uses the bound socket `s`.
    pub fn inject(&self, body: &str) {
        self.python(&format!(
            "import socket\ns = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\ns.bind(('eth0', 0))\n{body}"
        ));
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
}

impl Switchd {
    /// Starts switchd in a new host namespace; see [`Switchd::start_in`].
    pub fn start(host_extra: &str, body: &str) -> Switchd {
        Switchd::start_in(Netns::new("host"), host_extra, body)
    }

    /// Writes a host.toml and starts switchd in `host`. `host_extra` goes
    /// into `[host]` (after name, socket and state dir); `body` follows it.
    pub fn start_in(host: Netns, host_extra: &str, body: &str) -> Switchd {
        let dir = std::env::temp_dir().join(unique("dir"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let config = format!(
            "[host]\nname = \"{}\"\ncontrol_socket = \"{}\"\nstate_dir = \"{}\"\n{host_extra}\n{body}",
            host.name,
            dir.join("switchd.sock").display(),
            dir.join("state").display()
        );
        std::fs::write(dir.join("host.toml"), config).expect("write host.toml");
        let mut sd = Switchd { host, dir, child: None };
        sd.launch();
        sd
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
            .env("RUST_LOG", "info")
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

    /// A port's counters from `stats`, found by endpoint name.
    pub fn port_stats(&self, endpoint: &str) -> serde_json::Value {
        let stats = self.json(&["stats"]);
        stats["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .find(|p| p["endpoint"] == endpoint)
            .cloned()
            .unwrap_or_else(|| panic!("no port for {endpoint} in {stats}"))
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
}

impl Underlay {
    pub fn new() -> Underlay {
        let ns = Netns::new("ul");
        ns.ok(&["ip", "link", "add", "br0", "type", "bridge"]);
        ns.ok(&["ip", "link", "set", "br0", "up"]);
        Underlay { ns, hosts: 0 }
    }

    /// A new host namespace on this underlay; returns it and its address.
    pub fn host(&mut self, tag: &str) -> (Netns, String) {
        self.hosts += 1;
        let n = self.hosts;
        let host = Netns::new(tag);
        let port = format!("h{n}");
        self.ns.ok(&["ip", "link", "add", &port, "type", "veth", "peer", "name", "u0", "netns", &host.name]);
        self.ns.ok(&["ip", "link", "set", &port, "master", "br0", "up"]);
        let ip = format!("198.18.0.{n}");
        host.ok(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "u0"]);
        host.ok(&["ip", "link", "set", "u0", "up"]);
        (host, ip)
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
    let extra =
        format!("underlay_ip = \"{ip}\"\n\n[gossip]\nseeds = [\"198.18.0.1:7946\"]\nkey_file = \"{}\"\n", key.path());
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

/// The IPv4 address of an endpoint from `connect --json`.
pub fn ip_of(endpoint: &serde_json::Value) -> String {
    endpoint["ip"].as_str().expect("endpoint has an ip").to_owned()
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
