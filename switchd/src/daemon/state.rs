//! What survives a restart: networks made at run time and every endpoint,
//! kept as one JSON file in `state_dir`, replaced atomically on each change.
//!
//! The file is also the write-ahead journal of the operations that change
//! the system: before its first system call, a connect or disconnect is
//! saved as an [`Intent`], and the save that records its outcome clears
//! it. An intent found at start was cut short by a crash; the daemon
//! finishes it the one safe way (deletes the device it names: a connect
//! is rolled back, a disconnect completed) before anything else.

use std::io::{self, Write};
use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use switchd_config::{IfName, MacAddr, Name, NetworkConfig, PortKind, PublishConfig, RouteConfig};

const FILE_NAME: &str = "state.json";
/// Endpoints set aside at start because their network is gone.
const ORPHANS_FILE: &str = "state.json.orphans";
const SESSION_FILE: &str = "session";
/// How many times switchd started here (the restart count in metrics).
const STARTS_FILE: &str = "starts";
/// The gossip members last heard (see `switchd_overlay::gossip::cache`).
const PEERS_FILE: &str = "peers.json";
/// The newest state format this build reads and writes.
pub const VERSION: u32 = 1;

/// Where a network or endpoint came from: host.toml, a `switchctl`
/// command, or (networks only) another host through gossip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Config,
    Runtime,
    Cluster,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Config => "config",
            Origin::Runtime => "runtime",
            Origin::Cluster => "cluster",
        }
    }
}

/// One endpoint: enough to find and reopen its device after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRecord {
    pub network: Name,
    pub name: Name,
    pub kind: PortKind,
    /// The container's namespace, as the user named it.
    pub netns: Option<String>,
    /// The interface inside the container.
    pub ifname: Option<IfName>,
    /// The host-side interface of a veth or uplink port.
    pub host_ifname: Option<IfName>,
    pub ip: Option<IpAddr>,
    /// Its IPv6 address when given one; else (on a network with a subnet6)
    /// the SLAAC address of its MAC (see [`EndpointRecord::ip6`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<Ipv6Addr>,
    /// Unknown only for a host interface switchd did not make.
    pub mac: Option<MacAddr>,
    /// switchd made the interface, so disconnect deletes it.
    pub owned: bool,
    pub origin: Origin,
    /// The container takes `ip` by DHCP; switchd leaves the interface unconfigured.
    #[serde(default)]
    pub dhcp: bool,
    /// The Docker endpoint id, for an endpoint dockerd made (its TAP was
    /// moved into the container by dockerd).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_endpoint: Option<String>,
    /// The services it is a backend of.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<Name>,
    /// The container runtime's id of the attachment (CNI), for its `GC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<String>,
}

impl EndpointRecord {
    /// Its IPv6 address on `net` (its network): the one it was given, else
    /// its MAC's SLAAC one; none without a subnet6.
    pub fn ip6(&self, net: &NetworkConfig) -> Option<Ipv6Addr> {
        crate::services::icmpv6::endpoint_ip6(net, self.mac, self.ip6)
    }
}

/// An interface an operation creates or deletes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Device {
    /// A TAP (or the container end of a veth pair) inside a container's namespace.
    InNetns { netns: String, ifname: IfName },
    /// An interface in switchd's own namespace: the host end of a veth
    /// pair (deleting it deletes both ends), or a Docker endpoint's TAP
    /// that dockerd has not moved yet.
    Host { ifname: IfName },
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::InNetns { netns, ifname } => write!(f, "{ifname} in netns {netns:?}"),
            Device::Host { ifname } => write!(f, "host interface {ifname}"),
        }
    }
}

/// What a recorded operation was doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Connect,
    Disconnect,
}

/// An operation on the system that has begun and not been recorded as
/// done (see the module's docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    pub op: Op,
    pub endpoint: EndpointRecord,
    /// The interface the operation creates (connect) or deletes
    /// (disconnect); `None` if it touches none (it takes over an interface
    /// that was there, or leaves one switchd did not make).
    pub device: Option<Device>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    /// Networks made with `network create` (host.toml's come from the file).
    pub networks: Vec<NetworkConfig>,
    /// Networks learned from the cluster, kept so that endpoints on them
    /// come back before gossip does.
    #[serde(default)]
    pub cluster_networks: Vec<NetworkConfig>,
    pub endpoints: Vec<EndpointRecord>,
    /// Routes added with `switchctl route add`.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Ports published with `switchctl publish`.
    #[serde(default)]
    pub published: Vec<PublishConfig>,
    /// Address blocks this host claims, per network: block -> since (ms).
    #[serde(default)]
    pub ipam: std::collections::BTreeMap<Name, std::collections::BTreeMap<u32, u64>>,
    /// Docker's networks (by id) and the switchd networks they are.
    #[serde(default)]
    pub docker_networks: std::collections::BTreeMap<String, Name>,
    /// Addresses switchd's IPAM gave dockerd (`RequestAddress`) for
    /// endpoints to come, by pool, until dockerd releases them.
    #[serde(default)]
    pub docker_reserved: std::collections::BTreeMap<String, std::collections::BTreeSet<IpAddr>>,
    /// Operations begun and not finished (the journal).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<Intent>,
    /// Services made at run time or learned from the cluster, removals included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<super::service::Known>,
    /// Policies added at run time or learned from the cluster, removals included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<super::policy::KnownPolicy>,
}

/// Starts this boot's data-plane session: greater than the last boot's
/// (saved here), so peers tell the new boot from a replay of the old one
/// even if the clock went back.
pub fn new_session(state_dir: &Path) -> io::Result<switchd_crypto::SessionId> {
    use switchd_crypto::SessionId;
    let path = state_dir.join(SESSION_FILE);
    let previous = match std::fs::read_to_string(&path) {
        Ok(text) => match u64::from_str_radix(text.trim(), 16) {
            Ok(n) => Some(SessionId(n)),
            Err(_) => {
                let shown: String = text.trim().chars().take(40).collect();
                tracing::warn!(
                    "{}: {shown:?} is not a session id; this boot's session comes from the clock alone, \
                     so a capture of a boot made while the clock was ahead could be mistaken for a newer one",
                    path.display()
                );
                None
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let session = SessionId::new_boot(now_ms, previous);
    std::fs::create_dir_all(state_dir)?;
    write_atomically(&path, format!("{session}\n").as_bytes())?;
    Ok(session)
}

/// Counts this start of switchd on this host (the count is kept in the
/// state directory); how many there have been, this one included. A count
/// that cannot be read starts again from one, with a warning.
pub fn count_start(state_dir: &Path) -> io::Result<u64> {
    let path = state_dir.join(STARTS_FILE);
    let before = match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse::<u64>().unwrap_or_else(|_| {
            tracing::warn!("{}: not a count of starts; counting from this one", path.display());
            0
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e),
    };
    let starts = before.saturating_add(1);
    write_atomically(&path, format!("{starts}\n").as_bytes())?;
    Ok(starts)
}

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE_NAME)
}

/// Reads the state; a missing file is an empty state. A file written by a
/// newer switchd is refused (and left as it is): this one would drop what
/// it does not know when it saves.
pub fn load(state_dir: &Path) -> io::Result<State> {
    let path = path(state_dir);
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {what}", path.display()));
    match std::fs::read(&path) {
        Ok(bytes) => {
            #[derive(Deserialize)]
            struct Version {
                version: u32,
            }
            let Version { version } = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
            if version > VERSION {
                return Err(invalid(format!(
                    "written by a newer switchd (state version {version}; this one knows up to {VERSION}); \
                     refusing to start rather than rewrite it: run the newer switchd, or move the file away"
                )));
            }
            serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(State { version: VERSION, ..State::default() }),
        Err(e) => Err(e),
    }
}

/// A saved endpoint that could not be restored, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Orphan {
    pub reason: String,
    pub endpoint: EndpointRecord,
}

/// Sets endpoints aside that can no longer be restored (their network is
/// gone), appended to `state.json.orphans` so nothing is lost; returns the
/// file's path.
pub fn keep_orphans(state_dir: &Path, orphans: &[Orphan]) -> io::Result<PathBuf> {
    let path = state_dir.join(ORPHANS_FILE);
    let mut kept: Vec<Orphan> = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    kept.extend(orphans.iter().cloned());
    write_atomically(&path, &serde_json::to_vec_pretty(&kept).map_err(io::Error::other)?)?;
    Ok(path)
}

/// The gossip members heard before the last stop, silent since now; none
/// if there is no file or it cannot be read (said in the log).
pub fn load_peers(state_dir: &Path) -> Vec<switchd_overlay::gossip::table::Member> {
    let path = state_dir.join(PEERS_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            switchd_overlay::gossip::cache::from_bytes(&bytes, std::time::Duration::ZERO).unwrap_or_else(|e| {
                tracing::warn!("{}: {e}; starting without the hosts heard last time", path.display());
                Vec::new()
            })
        }
        Err(_) => Vec::new(),
    }
}

/// Keeps the gossip members heard, for the next start.
pub fn save_peers(state_dir: &Path, members: &[switchd_overlay::gossip::table::Member]) -> io::Result<()> {
    write_atomically(&state_dir.join(PEERS_FILE), &switchd_overlay::gossip::cache::to_bytes(members))
}

/// Writes `bytes` to a temporary file, flushed, then renamed over `path`,
/// so a crash leaves either the old content or the new, never half.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Writes the state atomically (see [`write_atomically`]).
pub fn save(state_dir: &Path, state: &State) -> io::Result<()> {
    std::fs::create_dir_all(state_dir)?;
    let state = State { version: VERSION, ..state.clone() };
    write_atomically(&path(state_dir), &serde_json::to_vec_pretty(&state).map_err(io::Error::other)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_missing_file() {
        let dir = std::env::temp_dir().join(format!("switchd-state-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(load(&dir).unwrap().endpoints.len(), 0);
        let state = State {
            version: VERSION,
            networks: vec![],
            cluster_networks: vec![],
            endpoints: vec![EndpointRecord {
                network: Name::new("n").unwrap(),
                name: Name::new("c").unwrap(),
                kind: PortKind::Tap,
                netns: Some("c".into()),
                ifname: Some(IfName::eth(0)),
                host_ifname: None,
                ip: Some("10.0.0.2".parse().unwrap()),
                ip6: Some("fd00:1::5".parse().unwrap()),
                mac: Some("02:42:0a:00:00:02".parse().unwrap()),
                owned: true,
                origin: Origin::Runtime,
                dhcp: true,
                docker_endpoint: None,
                services: vec![Name::new("web").unwrap()],
                attachment: Some("cni:0123456789abcdef/eth0".into()),
            }],
            routes: vec![RouteConfig::new(Name::new("b").unwrap(), Name::new("a").unwrap())],
            published: vec![],
            ipam: [(Name::new("n").unwrap(), [(2, 1_795_000_000_000)].into())].into(),
            docker_networks: [("faeb295fb0dd".to_owned(), Name::new("n").unwrap())].into(),
            docker_reserved: [("10.0.0.0/24".to_owned(), ["10.0.0.9".parse().unwrap()].into())].into(),
            pending: vec![],
            services: vec![super::super::service::Known {
                network: Name::new("n").unwrap(),
                name: Name::new("web").unwrap(),
                config: Some(switchd_config::ServiceConfig {
                    network: Name::new("n").unwrap(),
                    name: Name::new("web").unwrap(),
                    mode: switchd_config::ServiceMode::Vip,
                    vip: Some("10.0.0.200".parse().unwrap()),
                    vip6: Some("fd00::c8".parse().unwrap()),
                    ports: vec![switchd_config::ServicePort { port: 80, protocol: switchd_config::Protocol::Tcp }],
                    health: Some(switchd_config::HealthCheck {
                        probe: switchd_config::Probe::Http { path: "/healthz".into() },
                        interval: std::time::Duration::from_millis(1500),
                        threshold: 3,
                    }),
                    publish: vec![switchd_config::MeshPort {
                        host_port: 8080,
                        port: 80,
                        protocol: switchd_config::Protocol::Tcp,
                    }],
                }),
                version: 1_795_000_000_000,
                origin: Origin::Runtime,
            }],
            policies: vec![super::super::policy::KnownPolicy {
                name: Name::new("db").unwrap(),
                config: Some(switchd_config::PolicyConfig {
                    name: Name::new("db").unwrap(),
                    network: Name::new("n").unwrap(),
                    select: switchd_config::Selector::Service(Name::new("db").unwrap()),
                    from: vec![switchd_config::Selector::Cidr("10.0.0.0/24".parse().unwrap())],
                    ports: vec![switchd_config::ServicePort { port: 5432, protocol: switchd_config::Protocol::Tcp }],
                }),
                version: 1_795_000_000_001,
                origin: Origin::Cluster,
            }],
        };
        let mut with_intent = state.clone();
        with_intent.pending.push(Intent {
            op: Op::Connect,
            endpoint: state.endpoints[0].clone(),
            device: Some(Device::InNetns { netns: "c".into(), ifname: IfName::eth(0) }),
        });
        save(&dir, &with_intent).unwrap();
        assert_eq!(load(&dir).unwrap(), with_intent);
        save(&dir, &state).unwrap();
        assert_eq!(load(&dir).unwrap(), state);
        std::fs::write(path(&dir), b"{not json").unwrap();
        let err = load(&dir).unwrap_err().to_string();
        assert!(err.contains("state.json"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_newer_version_is_refused_and_left_alone() {
        let dir = std::env::temp_dir().join(format!("switchd-state-version-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let newer = r#"{"version": 999, "networks": [], "endpoints": [], "something_new": true}"#;
        std::fs::write(path(&dir), newer).unwrap();
        let err = load(&dir).unwrap_err().to_string();
        assert!(err.contains("newer switchd") && err.contains("999"), "{err}");
        assert_eq!(std::fs::read_to_string(path(&dir)).unwrap(), newer, "the file is untouched");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn orphans_accumulate_beside_the_state() {
        let dir = std::env::temp_dir().join(format!("switchd-state-orphans-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let record = |name: &str| Orphan {
            reason: "network gone is gone".into(),
            endpoint: EndpointRecord {
                network: Name::new("gone").unwrap(),
                name: Name::new(name).unwrap(),
                kind: PortKind::Tap,
                netns: Some(name.into()),
                ifname: Some(IfName::eth(0)),
                host_ifname: None,
                ip: None,
                ip6: None,
                mac: None,
                owned: true,
                origin: Origin::Runtime,
                dhcp: false,
                docker_endpoint: None,
                services: Vec::new(),
                attachment: None,
            },
        };
        let at = keep_orphans(&dir, &[record("a")]).unwrap();
        keep_orphans(&dir, &[record("b")]).unwrap();
        let kept: Vec<Orphan> = serde_json::from_slice(&std::fs::read(&at).unwrap()).unwrap();
        assert_eq!(kept, vec![record("a"), record("b")]);
        assert!(at.ends_with("state.json.orphans"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_start_has_a_greater_session() {
        let dir = std::env::temp_dir().join(format!("switchd-session-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = new_session(&dir).unwrap();
        let second = new_session(&dir).unwrap();
        assert!(second > first);
        // Even when the saved one lies in the future (the clock went back).
        std::fs::write(dir.join(SESSION_FILE), "ffffffffffff0000\n").unwrap();
        assert!(new_session(&dir).unwrap().0 > 0xffff_ffff_ffff_0000);
        // A garbage file still gives a session (from the clock), with a warning.
        std::fs::write(dir.join(SESSION_FILE), "not hex at all").unwrap();
        assert!(new_session(&dir).unwrap().0 > 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
