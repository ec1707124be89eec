//! What survives a restart: networks made at run time and every endpoint,
//! kept as one JSON file in `state_dir`, replaced atomically on each change.

use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use switchd_config::{IfName, MacAddr, Name, NetworkConfig, PortKind, PublishConfig, RouteConfig};

const FILE_NAME: &str = "state.json";
const SESSION_FILE: &str = "session";
const VERSION: u32 = 1;

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
}

/// Starts this boot's data-plane session: greater than the last boot's
/// (saved here), so peers tell the new boot from a replay of the old one
/// even if the clock went back.
pub fn new_session(state_dir: &Path) -> io::Result<switchd_crypto::SessionId> {
    use switchd_crypto::SessionId;
    let path = state_dir.join(SESSION_FILE);
    let previous = match std::fs::read_to_string(&path) {
        Ok(text) => u64::from_str_radix(text.trim(), 16).ok().map(SessionId),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let session = SessionId::new_boot(now_ms, previous);
    std::fs::create_dir_all(state_dir)?;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(format!("{session}\n").as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(session)
}

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE_NAME)
}

/// Reads the state; a missing file is an empty state.
pub fn load(state_dir: &Path) -> io::Result<State> {
    let path = path(state_dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(State { version: VERSION, ..State::default() }),
        Err(e) => Err(e),
    }
}

/// Writes the state: to a temporary file, flushed, then renamed over the old
/// one, so a crash leaves either the old state or the new, never half.
pub fn save(state_dir: &Path, state: &State) -> io::Result<()> {
    std::fs::create_dir_all(state_dir)?;
    let path = path(state_dir);
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&tmp)?;
    let state = State { version: VERSION, ..state.clone() };
    file.write_all(&serde_json::to_vec_pretty(&state).map_err(io::Error::other)?)?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path)
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
                mac: Some("02:42:0a:00:00:02".parse().unwrap()),
                owned: true,
                origin: Origin::Runtime,
                dhcp: true,
                docker_endpoint: None,
            }],
            routes: vec![RouteConfig::new(Name::new("b").unwrap(), Name::new("a").unwrap())],
            published: vec![],
            ipam: [(Name::new("n").unwrap(), [(2, 1_795_000_000_000)].into())].into(),
            docker_networks: [("faeb295fb0dd".to_owned(), Name::new("n").unwrap())].into(),
        };
        save(&dir, &state).unwrap();
        assert_eq!(load(&dir).unwrap(), state);
        std::fs::write(path(&dir), b"{not json").unwrap();
        let err = load(&dir).unwrap_err().to_string();
        assert!(err.contains("state.json"), "{err}");
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
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
