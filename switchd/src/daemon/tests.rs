//! The control plane's logic on a fake host: journaling around every
//! system change, reconciling at start, IPAM, refusals and their messages,
//! reaping. No root, no namespaces, no sockets: [`FakeSystem`] keeps the
//! host's namespaces and interfaces in memory, and remembers what the
//! journal said at each call that changes them.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use switchd_config::raw::RawPort;
use switchd_config::{Config, IfName, MacAddr};

use super::Daemon;
use super::attach::{AttachError, Attachment};
use super::state::{self, Device, EndpointRecord, Op};
use super::system::{GatewayParts, System};
use crate::control::api::{Page, Reply, Request};
use crate::dataplane::Port;
use crate::dataplane::port::MemPort;
use crate::io::gateway::TablesSource;
use crate::io::netns::{NetnsError, NetnsId};
use crate::switch::NetworkId;

/// A call that changed the host, and the journal when it was made.
type Call = (String, Vec<(Op, Option<Device>)>);

/// A host in memory: namespaces (by name, with an identity that changes
/// when one is made anew) and the interfaces in them ("" is the host's).
#[derive(Debug)]
struct FakeSystem {
    state_dir: PathBuf,
    namespaces: Mutex<BTreeMap<String, NetnsId>>,
    interfaces: Mutex<BTreeSet<(String, String)>>,
    /// Each call that makes or deletes something, with the journal (the
    /// operations pending in the saved state) as it was at that moment.
    calls: Mutex<Vec<Call>>,
    fail_open: AtomicBool,
    next_ino: AtomicU64,
    /// The routing mesh's rules, as last set.
    mesh: Mutex<Vec<crate::io::nftables::Dnat>>,
}

impl FakeSystem {
    fn new(state_dir: &Path) -> Arc<FakeSystem> {
        Arc::new(FakeSystem {
            state_dir: state_dir.to_owned(),
            namespaces: Mutex::default(),
            interfaces: Mutex::default(),
            calls: Mutex::default(),
            fail_open: AtomicBool::new(false),
            next_ino: AtomicU64::new(1),
            mesh: Mutex::default(),
        })
    }

    /// Makes (or makes anew) the namespace `name`.
    fn add_netns(&self, name: &str) {
        let ino = self.next_ino.fetch_add(1, Ordering::Relaxed);
        self.namespaces.lock().unwrap().insert(name.to_owned(), NetnsId { dev: 4, ino });
    }

    fn remove_netns(&self, name: &str) {
        self.namespaces.lock().unwrap().remove(name);
        self.interfaces.lock().unwrap().retain(|(ns, _)| ns != name);
    }

    fn has_interface(&self, netns: &str, ifname: &str) -> bool {
        self.interfaces.lock().unwrap().contains(&(netns.to_owned(), ifname.to_owned()))
    }

    fn record(&self, what: String) {
        let pending = state::load(&self.state_dir).expect("the state reads back").pending;
        let journal = pending.into_iter().map(|i| (i.op, i.device)).collect();
        self.calls.lock().unwrap().push((what, journal));
    }

    fn calls(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }

    fn first_free_eth(&self, netns: &str) -> IfName {
        (0..).map(IfName::eth).find(|n| !self.has_interface(netns, n.as_str())).expect("some ethN is free")
    }
}

impl System for FakeSystem {
    fn set_mesh(&self, rules: &[crate::io::nftables::Dnat]) -> Result<(), String> {
        *self.mesh.lock().unwrap() = rules.to_vec();
        Ok(())
    }

    fn identify_netns(&self, netns: &str) -> Result<NetnsId, NetnsError> {
        self.namespaces.lock().unwrap().get(netns).copied().ok_or_else(|| NetnsError::NotFound(netns.to_owned()))
    }

    fn prepare(&self, record: &mut EndpointRecord) -> Result<Option<Device>, AttachError> {
        // TAP ports only: what these tests connect.
        let netns = record.netns.clone().expect("a tap port has a netns");
        self.identify_netns(&netns)?;
        let ifname = record.ifname.clone().unwrap_or_else(|| self.first_free_eth(&netns));
        let exists = self.has_interface(&netns, ifname.as_str());
        record.ifname = Some(ifname.clone());
        Ok((!exists).then_some(Device::InNetns { netns, ifname }))
    }

    fn open(
        &self,
        record: &mut EndpointRecord,
        to: Attachment,
        queues: usize,
    ) -> Result<Vec<Box<dyn Port>>, AttachError> {
        let netns = record.netns.clone().expect("a tap port has a netns");
        let ifname = record.ifname.clone().unwrap_or_else(|| self.first_free_eth(&netns));
        // What the real one would configure beyond the MAC and the IPv4 address.
        let setup = super::attach::link_setup(ifname.as_str(), None, record, to);
        match setup.address6 {
            Some((ip6, len)) => self.record(format!("open {netns}/{ifname} with {ip6}/{len}")),
            None => self.record(format!("open {netns}/{ifname}")),
        }
        self.identify_netns(&netns)?;
        if self.fail_open.load(Ordering::Relaxed) {
            // As a real open fails after making the interface.
            self.interfaces.lock().unwrap().insert((netns.clone(), ifname.to_string()));
            return Err(AttachError::Setup { what: format!("configuring {ifname}"), source: io::Error::other("no") });
        }
        self.interfaces.lock().unwrap().insert((netns, ifname.to_string()));
        record.ifname = Some(ifname);
        Ok((0..queues).map(|_| Box::new(MemPort::default()) as Box<dyn Port>).collect())
    }

    fn delete(&self, device: &Device) -> Result<(), AttachError> {
        self.record(format!("delete {device}"));
        let key = match device {
            Device::InNetns { netns, ifname } => (netns.clone(), ifname.to_string()),
            Device::Host { ifname } => (String::new(), ifname.to_string()),
        };
        self.interfaces.lock().unwrap().remove(&key);
        Ok(())
    }

    fn pick_ifname(&self, record: &EndpointRecord) -> Result<IfName, AttachError> {
        Ok(record.ifname.clone().unwrap_or_else(|| self.first_free_eth(record.netns.as_deref().unwrap_or(""))))
    }

    fn fresh_host_ifname(&self) -> IfName {
        IfName::new("sdv00000001").unwrap()
    }

    fn find_by_mac(&self, _netns: &str, _mac: MacAddr) -> Option<IfName> {
        None
    }

    fn host_interface_exists(&self, name: &IfName) -> bool {
        self.has_interface("", name.as_str())
    }

    fn host_tap(
        &self,
        name: &IfName,
        _: crate::io::gateway::StackAddresses,
        _: MacAddr,
        _: u32,
        _: bool,
        queues: usize,
    ) -> io::Result<Vec<Box<dyn Port>>> {
        self.interfaces.lock().unwrap().insert((String::new(), name.to_string()));
        Ok((0..queues).map(|_| Box::new(MemPort::default()) as Box<dyn Port>).collect())
    }

    fn gateway_stack(
        &self,
        _: NetworkId,
        _: crate::io::gateway::StackAddresses,
        _: MacAddr,
        _: u32,
        _: TablesSource,
        _: &tokio::runtime::Handle,
    ) -> io::Result<GatewayParts> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "no kernel stacks on a fake host"))
    }

    fn sync_routes(&self, _: &str, _: &IfName, _: IpAddr, _: &[(IpAddr, u8)]) -> Result<(), String> {
        Ok(())
    }

    fn resolv_conf_path(&self, _netns: &str) -> Option<PathBuf> {
        None
    }
}

/// A state directory of its own, removed at the end.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("switchd-daemon-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A host without an underlay (so without sockets): two networks, `front`
/// (defined here, with a subnet) and nothing else unless `extra` adds it.
fn config(dir: &Path, extra: &str) -> Config {
    let text = format!(
        "[host]\nname = \"h1\"\nstate_dir = \"{}\"\ncontrol_socket = \"{}/sock\"\n\n\
         [[network]]\nname = \"front\"\nvni = 100\nsubnet = \"10.1.0.0/24\"\n{extra}",
        dir.display(),
        dir.display()
    );
    Config::parse(&text, &dir.join("host.toml")).expect("a valid host.toml")
}

/// A daemon on the fake host, inside a runtime of its own.
struct Host {
    daemon: Daemon,
    _runtime: tokio::runtime::Runtime,
}

impl Host {
    fn start(dir: &Path, extra: &str, system: Arc<FakeSystem>) -> Host {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let daemon = {
            let _entered = runtime.enter();
            Daemon::start_with(config(dir, extra), system.clone()).expect("the daemon starts")
        };
        Host { daemon, _runtime: runtime }
    }

    fn ask(&mut self, request: Request) -> Result<Value, String> {
        match self.daemon.handle(&request).expect("nothing to wait for without gossip") {
            Reply::Result(v) => Ok(v),
            Reply::Error(e) => Err(e),
        }
    }

    fn connect(&mut self, netns: &str, extra: impl FnOnce(&mut RawPort)) -> Result<Value, String> {
        let mut port = RawPort {
            network: Some("front".into()),
            netns: Some(netns.into()),
            kind: Some("tap".into()),
            ..RawPort::default()
        };
        extra(&mut port);
        self.ask(Request::NetworkConnect { port })
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.daemon.shutdown();
    }
}

fn device(netns: &str, ifname: &str) -> Device {
    Device::InNetns { netns: netns.into(), ifname: IfName::new(ifname).unwrap() }
}

#[test]
fn a_connect_is_journaled_before_its_device_is_made_and_cleared_after() {
    let dir = TempDir::new("connect");
    let system = FakeSystem::new(&dir.0);
    system.add_netns("web");
    let mut host = Host::start(&dir.0, "", system.clone());
    system.calls();

    let web = host.connect("web", |_| {}).unwrap();
    assert_eq!(web["ip"], "10.1.0.2", "the first address after the gateway");
    assert_eq!(web["mac"], MacAddr::derived_from_ip("10.1.0.2".parse().unwrap()).to_string());
    assert_eq!(web["ifname"], "eth0");
    // The intent was on disk when the device was made, naming it.
    assert_eq!(system.calls(), vec![("open web/eth0".to_owned(), vec![(Op::Connect, Some(device("web", "eth0")))])]);
    let saved = state::load(&dir.0).unwrap();
    assert!(saved.pending.is_empty(), "the outcome's save clears the intent");
    assert_eq!(saved.endpoints.len(), 1);
    assert_eq!(saved.endpoints[0].name.as_str(), "web");

    // A second container takes the next address.
    system.add_netns("db");
    assert_eq!(host.connect("db", |_| {}).unwrap()["ip"], "10.1.0.3");
    let port = host.daemon.endpoints.iter().last().unwrap().port;
    assert!(host.daemon.dataplane.port_stats(port).is_some(), "the port is switched");
}

#[test]
fn a_failed_connect_deletes_what_it_made_and_keeps_nothing() {
    let dir = TempDir::new("failed");
    let system = FakeSystem::new(&dir.0);
    system.add_netns("web");
    let mut host = Host::start(&dir.0, "", system.clone());
    system.calls();
    system.fail_open.store(true, Ordering::Relaxed);

    let err = host.connect("web", |_| {}).unwrap_err();
    assert_eq!(err, "configuring eth0: no");
    let calls: Vec<String> = system.calls().into_iter().map(|(what, _)| what).collect();
    assert_eq!(calls, ["open web/eth0", "delete eth0 in netns \"web\""]);
    assert!(!system.has_interface("web", "eth0"), "the interface the failed open made is gone");
    let saved = state::load(&dir.0).unwrap();
    assert!(saved.pending.is_empty() && saved.endpoints.is_empty(), "{saved:?}");
    assert_eq!(read_status(&host)["ports"], 0);

    // Nothing is left that would refuse a retry.
    system.fail_open.store(false, Ordering::Relaxed);
    assert_eq!(host.connect("web", |_| {}).unwrap()["ip"], "10.1.0.2");
}

fn read_status(host: &Host) -> Value {
    match host.daemon.query(&Request::Status) {
        Some(Reply::Result(v)) => v,
        other => panic!("status: {other:?}"),
    }
}

#[test]
fn a_disconnect_drops_the_record_and_journals_the_delete_in_one_save() {
    let dir = TempDir::new("disconnect");
    let system = FakeSystem::new(&dir.0);
    system.add_netns("web");
    let mut host = Host::start(&dir.0, "", system.clone());
    host.connect("web", |_| {}).unwrap();
    system.calls();

    let gone = host.ask(Request::NetworkDisconnect { network: "front".into(), endpoint: "web".into() }).unwrap();
    assert_eq!(gone["name"], "web");
    assert_eq!(
        system.calls(),
        vec![("delete eth0 in netns \"web\"".to_owned(), vec![(Op::Disconnect, Some(device("web", "eth0")))])]
    );
    let saved = state::load(&dir.0).unwrap();
    assert!(saved.pending.is_empty() && saved.endpoints.is_empty(), "{saved:?}");
    let err = host.ask(Request::NetworkDisconnect { network: "front".into(), endpoint: "web".into() }).unwrap_err();
    assert_eq!(err, "no endpoint \"web\" on network \"front\"");
}

#[test]
fn a_start_finishes_what_a_crash_cut_short_before_anything_else() {
    let dir = TempDir::new("crash");
    let system = FakeSystem::new(&dir.0);
    system.add_netns("web");
    system.add_netns("db");
    {
        let mut host = Host::start(&dir.0, "", system.clone());
        host.connect("web", |_| {}).unwrap();
    }
    // As if switchd died inside a connect of db, after its TAP was made:
    // the journal names the TAP, the state has no endpoint for it.
    let mut saved = state::load(&dir.0).unwrap();
    let db = EndpointRecord { name: switchd_config::Name::new("db").unwrap(), ..saved.endpoints[0].clone() };
    saved.pending = vec![state::Intent { op: Op::Connect, endpoint: db, device: Some(device("db", "eth0")) }];
    state::save(&dir.0, &saved).unwrap();
    system.interfaces.lock().unwrap().insert(("db".into(), "eth0".into()));
    system.calls();

    let host = Host::start(&dir.0, "", system.clone());
    let calls: Vec<String> = system.calls().into_iter().map(|(what, _)| what).collect();
    assert_eq!(calls, ["delete eth0 in netns \"db\"", "open web/eth0"], "rolled back first, then reattached");
    assert!(!system.has_interface("db", "eth0"));
    let saved = state::load(&dir.0).unwrap();
    assert!(saved.pending.is_empty(), "{saved:?}");
    assert_eq!(saved.endpoints.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["web"]);
    assert_eq!(read_status(&host)["ports"], 1);
}

#[test]
fn duplicates_and_taken_addresses_are_refused_with_what_is_taken() {
    let dir = TempDir::new("refusals");
    let system = FakeSystem::new(&dir.0);
    for ns in ["web", "other", "third"] {
        system.add_netns(ns);
    }
    let mut host = Host::start(&dir.0, "", system.clone());
    host.connect("web", |p| p.ip = Some("10.1.0.9".into())).unwrap();

    let twice = host.connect("web", |_| {}).unwrap_err();
    assert_eq!(twice, "container \"web\" is already connected to network \"front\" (as eth0)");
    let name = host.connect("other", |p| p.name = Some("web".into())).unwrap_err();
    assert_eq!(name, "name \"web\" is already used on network \"front\"");
    let ip = host.connect("other", |p| p.ip = Some("10.1.0.9".into())).unwrap_err();
    assert_eq!(ip, "10.1.0.9 is already in use on network \"front\"");
    let mac = MacAddr::derived_from_ip("10.1.0.9".parse().unwrap()).to_string();
    let same_mac = host.connect("other", |p| p.mac = Some(mac.clone())).unwrap_err();
    assert_eq!(same_mac, format!("{mac} is already in use on network \"front\""));
    let missing = host.connect("nowhere", |_| {}).unwrap_err();
    assert_eq!(missing, "network namespace \"nowhere\" does not exist");
    let no_net = host.connect("other", |p| p.network = Some("nonet".into())).unwrap_err();
    assert_eq!(no_net, "network: no network named \"nonet\"");
    // None of them left anything behind.
    assert_eq!(read_status(&host)["ports"], 1);
    // Automatic addresses skip the one taken by hand.
    assert_eq!(host.connect("other", |_| {}).unwrap()["ip"], "10.1.0.2");
}

#[test]
fn networks_in_use_or_from_host_toml_are_not_removed() {
    let dir = TempDir::new("rm");
    let system = FakeSystem::new(&dir.0);
    system.add_netns("web");
    let mut host = Host::start(&dir.0, "", system.clone());
    let create = |name: &str, vni: i64| Request::NetworkCreate {
        network: switchd_config::raw::RawNetwork {
            name: Some(name.into()),
            vni: Some(vni),
            subnet: Some("10.2.0.0/24".into()),
            ..Default::default()
        },
    };
    host.ask(create("back", 200)).unwrap();
    assert_eq!(host.ask(create("back", 201)).unwrap_err(), "network \"back\" already exists");
    assert_eq!(host.ask(create("again", 200)).unwrap_err(), "vni 200 is already used by network \"back\"");
    host.connect("web", |p| p.network = Some("back".into())).unwrap();

    let rm = |names: &[&str]| Request::NetworkRm { names: names.iter().map(|n| n.to_string()).collect() };
    assert_eq!(
        host.ask(rm(&["front", "back"])).unwrap_err(),
        "network \"front\" is defined in host.toml; remove it there; \
         network \"back\" has endpoints attached: web; disconnect them first"
    );
    host.ask(Request::NetworkDisconnect { network: "back".into(), endpoint: "web".into() }).unwrap();
    assert_eq!(host.ask(rm(&["back"])).unwrap(), serde_json::json!(["back"]));
    assert!(state::load(&dir.0).unwrap().networks.is_empty(), "the removal is saved");
}

#[test]
fn containers_that_went_away_are_reaped_and_others_stay() {
    let dir = TempDir::new("reap");
    let system = FakeSystem::new(&dir.0);
    for ns in ["web", "db", "cache"] {
        system.add_netns(ns);
    }
    let mut host = Host::start(&dir.0, "", system.clone());
    for ns in ["web", "db", "cache"] {
        host.connect(ns, |_| {}).unwrap();
    }
    assert!(host.daemon.gone_endpoints().is_empty());
    system.remove_netns("web");
    // A namespace of the same name made anew is another container.
    system.add_netns("db");
    let gone = host.daemon.gone_endpoints();
    assert_eq!(gone.len(), 2);
    host.daemon.reap(&gone);
    let saved = state::load(&dir.0).unwrap();
    assert_eq!(saved.endpoints.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["cache"]);
    assert!(host.daemon.gone_endpoints().is_empty());
}

#[test]
fn reports_are_answered_for_reading_and_changes_are_not() {
    let dir = TempDir::new("query");
    let system = FakeSystem::new(&dir.0);
    system.add_netns("web");
    let mut host = Host::start(&dir.0, "", system.clone());
    let connect = Request::NetworkConnect {
        port: RawPort { network: Some("front".into()), netns: Some("web".into()), ..RawPort::default() },
    };
    assert!(host.daemon.query(&connect).is_none(), "a connect changes the daemon");
    assert!(system.calls().is_empty(), "and a query did not start it");
    for request in [Request::Status, Request::NetworkLs, Request::Stats, Request::Peers, Request::KeyLs] {
        assert!(matches!(host.daemon.query(&request), Some(Reply::Result(_))), "{request:?}");
    }
    match host.daemon.query(&Request::NetworkInspect { name: "nope".into(), page: Page::default() }) {
        Some(Reply::Error(e)) => assert_eq!(e, "no network named \"nope\""),
        other => panic!("{other:?}"),
    }
    host.ask(connect).unwrap();
    assert!(matches!(host.daemon.query(&Request::Status), Some(Reply::Result(v)) if v["ports"] == 1));
}

#[test]
fn a_default_cipher_is_this_cpus_and_hosts_sealing_otherwise_still_carry_the_network() {
    use switchd_config::{Cipher, Encryption, KeySource, Name, NetworkConfig};
    use switchd_overlay::gossip::state::Published;
    use switchd_overlay::gossip::table::{Member, PeerTable, Timeouts};

    let dir = TempDir::new("ciphers");
    for (name, byte) in [("vault", "ab"), ("vault2", "cd")] {
        std::fs::write(dir.0.join(format!("{name}.key")), byte.repeat(32)).unwrap();
    }
    let vault = format!(
        "[[network]]\nname = \"vault\"\nvni = 300\nencrypted = true\nkey_file = \"{}/vault.key\"\n",
        dir.0.display()
    );
    let mut host = Host::start(&dir.0, &vault, FakeSystem::new(&dir.0));
    let here = Cipher::preferred();
    let other = if here == Cipher::Aes256Gcm { Cipher::ChaCha20Poly1305 } else { Cipher::Aes256Gcm };
    let inspect = |host: &mut Host, name: &str| {
        host.ask(Request::NetworkInspect { name: name.into(), page: Page::default() }).unwrap()
    };
    let v = inspect(&mut host, "vault");
    assert_eq!((v["cipher"].as_str(), v["default_cipher"].as_bool()), (Some(here.as_str()), Some(true)), "{v}");

    // Another host, another CPU: it defaults to the other cipher, on vault
    // and on a network it defined, vault2 (whose key this host is given).
    let theirs = |name: &str, vni: u32| {
        let mut n = host.daemon.networks.find("vault").unwrap().config.clone();
        (n.name, n.vni) = (Name::new(name).unwrap(), switchd_config::Vni::new(vni).unwrap());
        n.encryption = Some(Encryption { cipher: other, default_cipher: true, key: KeySource::Own });
        n
    };
    let networks: BTreeMap<Name, NetworkConfig> =
        [theirs("vault", 300), theirs("vault2", 301)].into_iter().map(|n| (n.name.clone(), n)).collect();
    let h2 = Member {
        name: Name::new("h2").unwrap(),
        generation: 1,
        published: Arc::new(Published {
            underlay: "198.18.0.2:4789".parse().unwrap(),
            leaving: false,
            session: None,
            keys: BTreeMap::new(),
            networks,
            endpoints: Vec::new(),
            ipam: BTreeMap::new(),
            services: Vec::new(),
            policies: Vec::new(),
            partial_checksums: true,
        }),
        since_heard: std::time::Duration::ZERO,
    };
    let timeouts =
        Timeouts { suspect_after: std::time::Duration::from_secs(4), dead_after: std::time::Duration::from_secs(8) };
    let table = PeerTable::build([h2], timeouts);
    host.daemon.update_cluster(table.clone(), 0);
    host.ask(Request::KeyAdd { file: dir.0.join("vault2.key"), network: Some("vault2".into()) }).unwrap();
    host.daemon.update_cluster(table, 0);

    // One definition: vault is carried together, each host sealing with its own.
    assert!(host.daemon.cluster.table.conflicts.is_empty(), "{:?}", host.daemon.cluster.table.conflicts);
    let v = inspect(&mut host, "vault");
    assert_eq!(v["cipher"], here.as_str());
    assert_eq!(v["ciphers"], serde_json::json!({"h1": here.as_str(), "h2": other.as_str()}));
    // vault2, adopted from h2, seals here with this CPU's cipher, not h2's.
    let v2 = inspect(&mut host, "vault2");
    assert_eq!((v2["origin"].as_str(), v2["cipher"].as_str()), (Some("cluster"), Some(here.as_str())), "{v2}");
    assert_eq!(v2["default_cipher"], true);
    // The mismatch is said once, as news and not as a mistake: no cipher was named.
    let said: Vec<&String> = host.daemon.cluster.logged.iter().filter(|l| l.contains("seals with")).collect();
    assert_eq!(said.len(), 2, "{said:?}");
    assert!(said.iter().all(|l| l.contains(&format!("h2 with {other}")) && l.contains("opens both")), "{said:?}");
}

/// Another host, as gossip tells of it: at 198.18.0.`ip`, carrying
/// `network`, with an endpoint `cN` of MAC 02:00:00:00:00:N and address
/// 10.1.0.N for each N of `macs`.
fn gossip_member(
    network: &switchd_config::NetworkConfig,
    name: &str,
    ip: u8,
    macs: &[u8],
) -> switchd_overlay::gossip::table::Member {
    use switchd_config::Name;
    use switchd_overlay::gossip::state::{Published, RemoteEndpoint};
    let endpoint = |mac: u8| RemoteEndpoint {
        network: network.name.clone(),
        mac: MacAddr([2, 0, 0, 0, 0, mac]),
        ip: Some(format!("10.1.0.{mac}").parse().unwrap()),
        ip6: None,
        name: Name::new(&format!("c{mac}")).unwrap(),
        services: Vec::new(),
        down: Vec::new(),
    };
    switchd_overlay::gossip::table::Member {
        name: Name::new(name).unwrap(),
        generation: 1,
        published: Arc::new(Published {
            underlay: format!("198.18.0.{ip}:4789").parse().unwrap(),
            leaving: false,
            session: None,
            keys: BTreeMap::new(),
            networks: [(network.name.clone(), network.clone())].into(),
            endpoints: macs.iter().map(|m| endpoint(*m)).collect(),
            ipam: BTreeMap::new(),
            services: Vec::new(),
            policies: Vec::new(),
            partial_checksums: true,
        }),
        since_heard: std::time::Duration::ZERO,
    }
}

/// `fdb` and `network inspect` a page at a time: the pages, each asked
/// after the last row of the one before, hold every row of the whole
/// answer once, in its order; a cursor that names no row is refused.
#[test]
fn pages_of_the_fdb_and_of_an_inspect_cover_every_row_once_in_order() {
    use switchd_overlay::gossip::table::{PeerTable, Timeouts};
    let dir = TempDir::new("pages");
    let system = FakeSystem::new(&dir.0);
    system.add_netns("ns1");
    let back = "[[network]]\nname = \"back\"\nvni = 200\nsubnet = \"10.1.0.0/24\"\n";
    let mut host = Host::start(&dir.0, back, system);
    host.connect("ns1", |_| ()).unwrap();
    let net = |name: &str| host.daemon.networks.find(name).unwrap().config.clone();
    let (front, back) = (net("front"), net("back"));
    let members = [
        gossip_member(&front, "h2", 2, &[30, 10, 20]),
        gossip_member(&front, "a0", 3, &[40, 5]),
        gossip_member(&back, "b1", 4, &[50, 1]),
    ];
    host.daemon.update_cluster(PeerTable::build(members, Timeouts::new(std::time::Duration::from_secs(8))), 0);

    // Pages of `limit` rows, each after the `key` of the last row before.
    let pages = |host: &mut Host,
                 request: &dyn Fn(Page) -> Request,
                 rows: &dyn Fn(Value) -> Vec<Value>,
                 key: &dyn Fn(&Value) -> String,
                 limit| {
        let (mut all, mut after, mut asked) = (Vec::new(), None, 0);
        loop {
            let page = rows(host.ask(request(Page { after: after.clone(), limit: Some(limit) })).unwrap());
            asked += 1;
            assert!(page.len() <= limit, "{page:?}");
            let Some(last) = page.last() else { return (all, asked) };
            after = Some(key(last));
            all.extend(page);
        }
    };
    let fdb = |page| Request::Fdb { network: None, page };
    let fdb_key = |r: &Value| format!("{}/{}", r["network"].as_str().unwrap(), r["mac"].as_str().unwrap());
    let whole = host.ask(fdb(Page::default())).unwrap().as_array().unwrap().clone();
    let keys: Vec<String> = whole.iter().map(fdb_key).collect();
    assert_eq!(keys.len(), 7, "{whole:?}");
    assert!(keys.is_sorted() && keys[0].starts_with("back/") && keys[2].starts_with("front/"), "{keys:?}");
    for limit in [1, 2, 3, 7, 8] {
        let (paged, asked) = pages(&mut host, &fdb, &|v| v.as_array().unwrap().clone(), &fdb_key, limit);
        assert_eq!(paged, whole, "limit {limit}");
        assert_eq!(asked, 7usize.div_ceil(limit) + 1, "limit {limit}: the last page is empty");
    }
    let one = |after: &str| Request::Fdb {
        network: Some("front".into()),
        page: Page { after: Some(after.into()), limit: Some(1) },
    };
    let next = host.ask(one("02:00:00:00:00:0a")).unwrap();
    assert_eq!(next[0]["mac"], "02:00:00:00:00:14", "a bare MAC names a row of the one network asked: {next}");

    let inspect = |page| Request::NetworkInspect { name: "front".into(), page };
    let inspect_key = |r: &Value| format!("{}@{}", r["name"].as_str().unwrap(), r["host"].as_str().unwrap());
    let endpoints = |v: Value| v["endpoints"].as_array().unwrap().clone();
    let whole = endpoints(host.ask(inspect(Page::default())).unwrap());
    let keys: Vec<String> = whole.iter().map(inspect_key).collect();
    assert_eq!(keys, ["c40@a0", "c5@a0", "ns1@h1", "c10@h2", "c20@h2", "c30@h2"], "by host, then name");
    assert_eq!(whole[2]["kind"], "tap", "this host's own: {whole:?}");
    for limit in [1, 3, 5, 6] {
        assert_eq!(pages(&mut host, &inspect, &endpoints, &inspect_key, limit).0, whole, "limit {limit}");
    }

    for (request, wrong) in [
        (fdb(Page { after: Some("02:00:00:00:00:0a".into()), limit: None }), "is not NETWORK/MAC"),
        (fdb(Page { after: Some("front/nope".into()), limit: None }), "is not a MAC address"),
        (inspect(Page { after: Some("c5".into()), limit: None }), "is not NAME@HOST"),
    ] {
        let refused = host.ask(request).expect_err("a cursor that names no row");
        assert!(refused.starts_with("after: ") && refused.contains(wrong), "{refused}");
    }
}

/// A change from gossip reaches the data plane as a difference: the one
/// endpoint that moved, in the one network it is on; the rest of the
/// table (and when each entry was told) stays as it was. A local change
/// afterwards programs everything whole, and agrees.
#[test]
fn a_gossip_change_reprograms_only_what_changed() {
    use switchd_overlay::gossip::table::{PeerTable, Timeouts};
    let dir = TempDir::new("gossipdiff");
    let system = FakeSystem::new(&dir.0);
    system.add_netns("ns1");
    let mut host = Host::start(&dir.0, "", system);
    let front = host.daemon.networks.find("front").unwrap().config.clone();
    let member = |name: &str, ip: u8, macs: &[u8]| gossip_member(&front, name, ip, macs);
    let timeouts = Timeouts::new(std::time::Duration::from_secs(8));
    let fdb = |host: &mut Host| -> BTreeMap<String, (String, f64)> {
        let rows = host.ask(Request::Fdb { network: Some("front".into()), page: Page::default() }).unwrap();
        let rows = rows.as_array().unwrap().iter();
        rows.map(|r| {
            let mac = r["mac"].as_str().unwrap().to_owned();
            (mac, (r["host"].as_str().unwrap_or("-").to_owned(), r["age_secs"].as_f64().unwrap_or(-1.0)))
        })
        .collect()
    };
    let answers = |host: &Host, ip: &str| {
        let id = host.daemon.networks.find("front").unwrap().id;
        host.daemon.dataplane.update_switch(|s| s.neighbor(id, ip.parse().unwrap()))
    };

    host.daemon.update_cluster(PeerTable::build([member("h2", 2, &[10, 11]), member("h3", 3, &[12])], timeouts), 0);
    let first = fdb(&mut host);
    assert_eq!(first.keys().collect::<Vec<_>>(), ["02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c"]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // On h2, c11 goes and c13 comes; h3 says the same as before.
    host.daemon.update_cluster(PeerTable::build([member("h2", 2, &[10, 13]), member("h3", 3, &[12])], timeouts), 0);
    let second = fdb(&mut host);
    assert_eq!(second.keys().collect::<Vec<_>>(), ["02:00:00:00:00:0a", "02:00:00:00:00:0c", "02:00:00:00:00:0d"]);
    assert_eq!(second["02:00:00:00:00:0d"].0, "h2");
    assert!(second["02:00:00:00:00:0c"].1 >= 1.0, "h3's entry was not told again: {second:?}");
    assert!(second["02:00:00:00:00:0d"].1 < 1.0, "{second:?}");
    assert_eq!((answers(&host, "10.1.0.11"), answers(&host, "10.1.0.13")), (None, Some(MacAddr([2, 0, 0, 0, 0, 13]))));

    // h3 dies: its entry and answer go.
    let mut dead = member("h3", 3, &[12]);
    dead.since_heard = std::time::Duration::from_secs(9);
    host.daemon.update_cluster(PeerTable::build([member("h2", 2, &[10, 13]), dead.clone()], timeouts), 0);
    assert!(!fdb(&mut host).contains_key("02:00:00:00:00:0c"));
    assert_eq!(answers(&host, "10.1.0.12"), None);
    // A local change programs it all whole: the same entries.
    let before: Vec<String> = fdb(&mut host).into_keys().collect();
    host.connect("ns1", |_| ()).unwrap();
    let after: Vec<String> = fdb(&mut host).into_keys().filter(|m| before.contains(m)).collect();
    assert_eq!(before, after);
}

/// The routing mesh on one host: a `[[service]]`'s `publish` installs its
/// DNAT rule at start; `publish --service` adds one where the network has
/// host access and shows why not where it has none; a container's port
/// and a mesh port never share a host port; `unpublish` takes a runtime
/// mesh port away and refuses host.toml's.
#[test]
fn mesh_ports_become_dnat_rules_where_the_network_has_host_access() {
    use crate::io::nftables::Dnat;
    let dir = TempDir::new("mesh");
    let system = FakeSystem::new(&dir.0);
    let lobby = "[[network]]\nname = \"lobby\"\nvni = 110\nsubnet = \"10.11.0.0/24\"\nhost_access = true\n\n\
                 [[service]]\nname = \"api\"\nnetwork = \"lobby\"\nvip = \"10.11.0.200\"\nports = [\"80/tcp\"]\n\n\
                 [[publish]]\nnetwork = \"lobby\"\nservice = \"api\"\nhost_port = 8080\nport = 80\n";
    let mut host = Host::start(&dir.0, lobby, system.clone());
    let rule = |host_port, vip: &str| Dnat { protocol: 6, host_port, vip: vip.parse().unwrap(), port: 80 };
    assert_eq!(*system.mesh.lock().unwrap(), vec![rule(8080, "10.11.0.200")], "host.toml's, at start");

    let service = |name: &str, network: &str| Request::ServiceCreate {
        service: switchd_config::raw::RawService {
            name: Some(name.into()),
            network: Some(network.into()),
            ports: Some(vec!["80/tcp".into()]),
            ..Default::default()
        },
    };
    let publish =
        |name: &str, port: &str| Request::ServicePublish { name: name.into(), network: None, port: port.into() };
    host.ask(service("web", "front")).unwrap();
    let ports = host.ask(publish("web", "9090:80")).unwrap();
    let web = ports.as_array().unwrap().iter().find(|p| p["service"] == "web").unwrap().clone();
    assert_eq!(web["not_open"], "network front has no host access here", "{web}");
    assert_eq!(system.mesh.lock().unwrap().len(), 1, "no rule for it");
    let err = host.ask(publish("web", "9090:81")).unwrap_err();
    assert!(err.contains("does not balance 81/tcp"), "{err}");

    host.ask(service("shop", "lobby")).unwrap();
    let vip = host.ask(Request::ServiceInspect { name: "shop".into(), network: None }).unwrap()["vip"].clone();
    let err = host.ask(publish("shop", "8080:80")).unwrap_err();
    assert!(err.contains("is published for service api"), "{err}");
    host.ask(publish("shop", "8081:80")).unwrap();
    let mut wanted = vec![rule(8080, "10.11.0.200"), rule(8081, vip.as_str().unwrap())];
    wanted.sort();
    assert_eq!(*system.mesh.lock().unwrap(), wanted);

    let container = switchd_config::raw::RawPublish {
        network: Some("lobby".into()),
        container: Some("x".into()),
        host_port: Some(8081),
        port: Some(80),
        ..Default::default()
    };
    let err = host.ask(Request::PublishAdd { publish: container }).unwrap_err();
    assert!(err.contains("routing mesh's port for service shop"), "{err}");

    host.ask(Request::PublishRm { host_port: 8081, protocol: "tcp".into() }).unwrap();
    assert_eq!(*system.mesh.lock().unwrap(), vec![rule(8080, "10.11.0.200")]);
    let err = host.ask(Request::PublishRm { host_port: 8080, protocol: "tcp".into() }).unwrap_err();
    assert!(err.contains("host.toml"), "{err}");
    let err = host.ask(publish("api", "8082:80")).unwrap_err();
    assert!(err.contains("host.toml"), "{err}");
}

/// host.toml's services across restarts: one without a `vip` keeps the
/// address IPAM gave it, and one taken out of the file is removed (a
/// removal for the cluster), as a reload does.
#[test]
fn a_config_service_keeps_its_vip_across_restarts_and_goes_when_taken_out() {
    let dir = TempDir::new("svc-restart");
    let system = FakeSystem::new(&dir.0);
    let web = "[[service]]\nname = \"web\"\nnetwork = \"front\"\nports = [\"80/tcp\"]\n";
    let vip_of = |host: &mut Host| host.ask(Request::ServiceInspect { name: "web".into(), network: None });
    let first = {
        let mut host = Host::start(&dir.0, web, system.clone());
        vip_of(&mut host).unwrap()["vip"].clone()
    };
    assert!(first.is_string(), "a VIP from IPAM: {first}");
    {
        // A service listed first now would take web's address, were it free.
        let api = "[[service]]\nname = \"api\"\nnetwork = \"front\"\n";
        let mut host = Host::start(&dir.0, &format!("{api}{web}"), system.clone());
        assert_eq!(vip_of(&mut host).unwrap()["vip"], first, "the same VIP after a restart");
        let api = host.ask(Request::ServiceInspect { name: "api".into(), network: None }).unwrap();
        assert_ne!(api["vip"], first);
    }
    let mut host = Host::start(&dir.0, "", system);
    let err = vip_of(&mut host).unwrap_err();
    assert!(err.contains("no service \"web\""), "{err}");
    drop(host);
    let saved = state::load(&dir.0).unwrap();
    let gone = saved.services.iter().find(|k| k.name.as_str() == "web").expect("remembered as removed");
    assert!(gone.config.is_none(), "a removal the cluster hears of: {gone:?}");
}

/// Runs one Docker driver operation as dockerd sends it.
fn docker(host: &mut Host, path: &str, body: &str) -> Value {
    let request = crate::docker::parse(path, body.as_bytes()).expect("a request dockerd sends");
    let reply = crate::docker::fixed_reply(&request).map_or_else(|| host.daemon.docker(&request), Ok);
    reply.expect("nothing to wait for")
}

#[test]
fn dockers_ipv6_addresses_are_slaac_ones_of_fresh_macs_or_the_endpoints_own() {
    let dir = TempDir::new("docker6");
    let system = FakeSystem::new(&dir.0);
    system.add_netns("web");
    let mut host = Host::start(&dir.0, "subnet6 = \"fd00:1::/64\"\n", system.clone());
    let web = host.connect("web", |_| {}).unwrap();
    let web_ip6 = web["ip6"].as_str().expect("a dual-stack endpoint has its SLAAC address").to_owned();
    let web_mac: MacAddr = web["mac"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        web_ip6.parse::<std::net::Ipv6Addr>().unwrap(),
        crate::services::icmpv6::slaac("fd00:1::".parse().unwrap(), web_mac)
    );

    let pool =
        docker(&mut host, "/IpamDriver.RequestPool", r#"{"AddressSpace":"switchd","Pool":"fd00:1::/64","V6":true}"#);
    assert_eq!(pool["PoolID"], "fd00:1::/64");
    let ask = |address: &str, gateway: bool| {
        let options = if gateway { r#"{"RequestAddressType":"com.docker.network.gateway"}"# } else { "null" };
        format!(r#"{{"PoolID":"fd00:1::/64","Address":"{address}","Options":{options}}}"#)
    };
    let gw = docker(&mut host, "/IpamDriver.RequestAddress", &ask("", true));
    assert_eq!(gw["Address"], "fd00:1::1/64");
    let picked = docker(&mut host, "/IpamDriver.RequestAddress", &ask("", false));
    let picked = picked["Address"].as_str().expect("an address").trim_end_matches("/64").to_owned();
    let picked_ip: std::net::Ipv6Addr = picked.parse().unwrap();
    let mac = crate::services::icmpv6::slaac_mac(picked_ip).expect("an EUI-64 address");
    assert!(picked.starts_with("fd00:1::") && mac != web_mac, "{picked}");
    // One given by hand (--ip6) is taken as it is, unless an endpoint has it.
    let manual = docker(&mut host, "/IpamDriver.RequestAddress", &ask("fd00:1::5", false));
    assert_eq!(manual["Address"], "fd00:1::5/64", "{manual}");
    let taken = docker(&mut host, "/IpamDriver.RequestAddress", &ask(&web_ip6, false));
    assert_eq!(taken["Error"], format!("{web_ip6} is already in use on network \"front\""));

    // The network: Docker's --subnet pair must be the switchd network's.
    let network = |v6: &str| {
        format!(
            r#"{{"NetworkID":"ab12cd34ef56ab12cd34ef56","Options":{{"com.docker.network.enable_ipv6":true,"com.docker.network.generic":{{"name":"front"}}}},"IPv4Data":[{{"Pool":"10.1.0.0/24","Gateway":"10.1.0.1/24"}}],"IPv6Data":[{{"Pool":"{v6}","Gateway":"fd00:1::1/64"}}]}}"#
        )
    };
    let differs = docker(&mut host, "/NetworkDriver.CreateNetwork", &network("fd00:2::/64"));
    assert_eq!(differs["Err"], "switchd network \"front\" exists with subnet fd00:1::/64, not fd00:2::/64");
    assert_eq!(docker(&mut host, "/NetworkDriver.CreateNetwork", &network("fd00:1::/64")), serde_json::json!({}));

    // From switchd's IPAM, the endpoint's MAC is the one whose SLAAC
    // address Docker configures; any other (Docker's own IPAM, --ip6) is
    // the endpoint's own address, beside its MAC's.
    let endpoint = |id: &str, v4: &str, v6: &str, mac: &str| {
        format!(
            r#"{{"NetworkID":"ab12cd34ef56ab12cd34ef56","EndpointID":"{id}","Interface":{{"Address":"{v4}/24","AddressIPv6":"{v6}","MacAddress":"{mac}"}}}}"#
        )
    };
    let join = |host: &mut Host, id: &str| {
        let body = format!(
            r#"{{"NetworkID":"ab12cd34ef56ab12cd34ef56","EndpointID":"{id}","SandboxKey":"/run/docker/netns/{id}"}}"#
        );
        docker(host, "/NetworkDriver.Join", &body)
    };
    let created = docker(
        &mut host,
        "/NetworkDriver.CreateEndpoint",
        &endpoint("e1e1e1e1e1e1e1e1", "10.1.0.7", &format!("{picked}/64"), ""),
    );
    assert_eq!(created["Interface"]["MacAddress"], mac.to_string());
    let sequential = docker(
        &mut host,
        "/NetworkDriver.CreateEndpoint",
        &endpoint("e2e2e2e2e2e2e2e2", "10.1.0.8", "fd00:1::9/64", ""),
    );
    assert_eq!(sequential["Interface"]["MacAddress"], "02:42:0a:01:00:08", "from its IPv4 address, as Docker's");
    let outside = docker(
        &mut host,
        "/NetworkDriver.CreateEndpoint",
        &endpoint("e3e3e3e3e3e3e3e3", "10.1.0.9", "fd00:2::9/64", ""),
    );
    assert_eq!(outside["Err"], "fd00:2::9 is not a usable address in fd00:1::/64");
    let twin = docker(
        &mut host,
        "/NetworkDriver.CreateEndpoint",
        &endpoint("e4e4e4e4e4e4e4e4", "10.1.0.10", "fd00:1::9/64", "02:00:00:00:00:04"),
    );
    assert_eq!(twin["Interface"], serde_json::json!({}), "its MAC was given: {twin}");

    // Joined, it is routed through the gateway in both families.
    let joined = join(&mut host, "e1e1e1e1e1e1e1e1");
    assert_eq!(
        (&joined["Gateway"], &joined["GatewayIPv6"]),
        (&serde_json::json!("10.1.0.1"), &serde_json::json!("fd00:1::1"))
    );
    assert_eq!(join(&mut host, "e2e2e2e2e2e2e2e2")["Gateway"], "10.1.0.1");
    let refused = join(&mut host, "e4e4e4e4e4e4e4e4");
    assert_eq!(refused["Err"], "fd00:1::9 is already in use on network \"front\"", "{refused}");
    let detail = host.ask(Request::NetworkInspect { name: "front".into(), page: Page::default() }).unwrap();
    let ip6_of = |ip: &str| {
        let e = detail["endpoints"].as_array().unwrap().iter().find(|e| e["ip"] == ip).cloned();
        e.unwrap_or_else(|| panic!("no endpoint {ip} in {detail}"))["ip6"].clone()
    };
    assert_eq!(ip6_of("10.1.0.7"), picked.as_str());
    assert_eq!(ip6_of("10.1.0.8"), "fd00:1::9");
}

/// `connect --ip6`: an address in the subnet6 that no endpoint holds,
/// given or as its MAC's SLAAC one; configured on the interface, with
/// SLAAC off there.
#[test]
fn a_given_ipv6_address_is_the_endpoints_and_no_one_elses() {
    let dir = TempDir::new("ip6");
    let system = FakeSystem::new(&dir.0);
    for ns in ["web", "db", "cache", "twin"] {
        system.add_netns(ns);
    }
    let mut host = Host::start(&dir.0, "subnet6 = \"fd00:1::/64\"\n", system.clone());
    let web = host.connect("web", |p| p.ip6 = Some("fd00:1::10".into())).unwrap();
    assert_eq!(web["ip6"], "fd00:1::10");
    let taken = host.connect("db", |p| p.ip6 = Some("fd00:1::10".into())).unwrap_err();
    assert_eq!(taken, "fd00:1::10 is already in use on network \"front\"");
    let outside = host.connect("db", |p| p.ip6 = Some("fd00:9::10".into())).unwrap_err();
    assert!(outside.contains("fd00:9::10 is not a usable address in subnet6 fd00:1::/64"), "{outside}");
    // Nor may it be the SLAAC address of another endpoint's MAC.
    let cache = host.connect("cache", |_| {}).unwrap();
    let cache_slaac = cache["ip6"].as_str().unwrap().to_owned();
    let slaac_taken = host.connect("db", |p| p.ip6 = Some(cache_slaac.clone())).unwrap_err();
    assert_eq!(slaac_taken, format!("{cache_slaac} is already in use on network \"front\""));
    // Nor its own SLAAC address another's given one.
    let twin_mac = "02:00:00:00:00:77".parse().unwrap();
    let twin_slaac = crate::services::icmpv6::slaac("fd00:1::".parse().unwrap(), twin_mac).to_string();
    host.connect("db", |p| p.ip6 = Some(twin_slaac.clone())).unwrap();
    let mac_twin = host.connect("twin", |p| p.mac = Some(twin_mac.to_string())).unwrap_err();
    assert_eq!(mac_twin, format!("{twin_slaac} is already in use on network \"front\""));
    // What the interfaces get: the given address (with SLAAC off, see
    // `netlink::configure`), or nothing for the kernel to make its own.
    let opened: Vec<String> =
        system.calls().into_iter().map(|(call, _)| call).filter(|c| c.starts_with("open")).collect();
    assert!(opened.contains(&"open web/eth0 with fd00:1::10/64".to_owned()), "{opened:?}");
    assert!(opened.contains(&"open cache/eth0".to_owned()), "{opened:?}");
}

/// A VIP service on a dual-stack network gets a VIP of each family: the
/// VIP6 random in the /64 but never of the EUI-64 form a container's SLAAC
/// address has, held against services and endpoints alike, and both
/// answered by name.
#[test]
fn a_service_on_a_dual_stack_network_gets_a_vip6_no_one_else_holds() {
    let dir = TempDir::new("vip6");
    let system = FakeSystem::new(&dir.0);
    system.add_netns("db");
    let mut host = Host::start(&dir.0, "subnet6 = \"fd00:1::/64\"\n", system.clone());
    let create = |host: &mut Host, name: &str, vip6: Option<&str>| {
        host.ask(Request::ServiceCreate {
            service: switchd_config::raw::RawService {
                name: Some(name.into()),
                network: Some("front".into()),
                vip6: vip6.map(str::to_owned),
                ..Default::default()
            },
        })
    };
    let web = create(&mut host, "web", None).unwrap();
    let vip6: std::net::Ipv6Addr = web["vip6"].as_str().expect("a VIP6").parse().unwrap();
    assert!(web["vip"].is_string(), "and its IPv4 VIP: {web}");
    assert_eq!(vip6.segments()[..4], [0xfd00, 1, 0, 0], "in the subnet6: {vip6}");
    assert_eq!(crate::services::icmpv6::slaac_mac(vip6), None, "never a SLAAC address");
    let twice = create(&mut host, "api", Some(&vip6.to_string())).unwrap_err();
    assert_eq!(twice, format!("{vip6} is already in use on network \"front\""));
    let endpoint = host.connect("db", |p| p.ip6 = Some(vip6.to_string())).unwrap_err();
    assert_eq!(endpoint, format!("{vip6} is already in use on network \"front\""));
    let given = create(&mut host, "api", Some("fd00:1::80")).unwrap();
    assert_eq!(given["vip6"], "fd00:1::80");
    let names = host.daemon.service_names(&switchd_config::Name::new("front").unwrap());
    let (_, ips, _) = names.iter().find(|(n, ..)| n == "web").expect("web's name");
    assert_eq!(ips.len(), 2, "A and AAAA: {ips:?}");
    assert!(ips.contains(&IpAddr::V6(vip6)));
}
