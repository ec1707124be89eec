//! The daemon's control plane: networks and endpoints, what `switchctl` asks
//! of them, and keeping them across restarts.
//!
//! Every operation here is synchronous and may block briefly (netlink,
//! namespace threads); the control server runs them off its async runtime.
//! Frames never pass through here: this module only adds and removes ports
//! and networks in the [`Dataplane`] and reads its counters.

pub mod attach;
mod cluster;
mod docker;
mod gateway;
pub mod ipam;
mod keys;
pub mod state;

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use switchd_config::raw::{RawNetwork, RawPort};
use switchd_config::{
    Config, HostConfig, KeyPath, KeySource, MacAddr, Name, NetworkConfig, PeerConfig, PortConfig, PortKind,
    RouteConfig, validate,
};
use switchd_crypto::{Key, KeyId, SessionId, SharedKeyring};

use crate::control::api::{
    AttachPlan, CryptoStats, EndpointInfo, FdbEntry, GossipStatsInfo, KeyInfo, NetworkDetail, NetworkInfo,
    NetworkStats, PeerInfo, PortStats, Reply, Request, Stats, Status, VtepStats,
};
use crate::dataplane::crypto::{KeySet, NetworkKeys};
use crate::dataplane::{Dataplane, DeviceStats, FdPort, Underlay};
use crate::io::netns::{self, NetnsId};
use crate::switch::{Counters, DropReason, Location, NetworkId, PortGuard, PortId, SwitchConfig, VtepId};
use keys::{KeyStore, Scope};
use state::{Device, EndpointRecord, Intent, Op, Origin, State};

/// An error for the user: one line, saying what and why.
pub type OpResult<T> = Result<T, String>;

/// How many times an operation that must wait (an address block being
/// claimed) is tried.
const TRIES: usize = 5;

/// How long a host keeps an address block it has no address in.
const IDLE_BLOCK_RELEASE: Duration = Duration::from_secs(60);

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Runs `op` on the daemon on a blocking thread; while it answers
/// `Err(wait)` (an address block being claimed), runs it again after the
/// wait, with the daemon free meanwhile so gossip goes on. Both the control
/// socket and the Docker plugin socket run their requests this way.
pub async fn run_waiting<T: Send + 'static>(
    daemon: &std::sync::Arc<std::sync::Mutex<Daemon>>,
    op: impl Fn(&mut Daemon) -> Result<T, Duration> + Send + Sync + 'static,
) -> Result<T, String> {
    let op = std::sync::Arc::new(op);
    for _ in 0..TRIES {
        let (daemon, op) = (daemon.clone(), op.clone());
        let result =
            tokio::task::spawn_blocking(move || op(&mut daemon.lock().unwrap_or_else(|p| p.into_inner()))).await;
        match result {
            Ok(Ok(reply)) => return Ok(reply),
            Ok(Err(wait)) => tokio::time::sleep(wait).await,
            Err(e) => return Err(format!("internal error: {e}")),
        }
    }
    Err("gave up waiting for an address block to be confirmed by the cluster".into())
}

/// Why a connect did not happen (yet).
#[derive(Debug)]
enum Refused {
    /// For the user: what and why.
    Error(String),
    /// This host just claimed an address block: try again after this long.
    Wait(Duration),
}

impl From<String> for Refused {
    fn from(e: String) -> Self {
        Refused::Error(e)
    }
}

impl From<Refused> for String {
    fn from(r: Refused) -> String {
        r.to_string()
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Error(e) => f.write_str(e),
            Refused::Wait(_) => f.write_str("the address block this host claimed is not confirmed yet; try again"),
        }
    }
}

/// How a connect gets an address from a block not confirmed yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClaimMode {
    /// Claim, and wait for the claim to stand (`network connect`).
    Wait,
    /// Claim and use at once (host.toml's ports at start: gossip is not
    /// running yet, so there is nothing to wait for).
    Now,
    /// Claim nothing (`script attach`, which only shows the plan).
    Preview,
}

#[derive(Debug)]
struct Network {
    config: NetworkConfig,
    id: NetworkId,
    origin: Origin,
    /// The gateway's kernel stack (DNS over TCP) and its port.
    stack: Option<(crate::io::gateway::GatewayStack, PortId)>,
    /// The host side's port, with host access.
    host_port: Option<PortId>,
}

#[derive(Debug)]
struct Endpoint {
    record: EndpointRecord,
    port: PortId,
    netns_id: Option<NetnsId>,
}

impl Endpoint {
    /// How `fdb` and `stats` name the port: `web:eth0`, or the host interface.
    fn port_label(&self) -> String {
        match (&self.record.host_ifname, &self.record.ifname) {
            (Some(host), _) => host.to_string(),
            (None, Some(ifname)) => format!("{}:{ifname}", self.record.name),
            (None, None) => self.record.name.to_string(),
        }
    }

    fn info(&self, host: &str) -> EndpointInfo {
        let r = &self.record;
        EndpointInfo {
            name: r.name.to_string(),
            network: r.network.to_string(),
            ip: r.ip,
            mac: r.mac.map(|m| m.to_string()),
            host: host.to_owned(),
            kind: r.kind.as_str().to_owned(),
            netns: r.netns.clone(),
            ifname: r.ifname.as_ref().map(|n| n.to_string()),
            host_ifname: r.host_ifname.as_ref().map(|n| n.to_string()),
        }
    }

    /// Whether `what` (a container name, netns name or path, or host
    /// interface) names this endpoint.
    fn is_named(&self, what: &str, what_id: Option<NetnsId>) -> bool {
        let r = &self.record;
        r.name.as_str() == what
            || r.netns.as_deref() == Some(what)
            || r.host_ifname.as_ref().is_some_and(|h| h.as_str() == what)
            || (what_id.is_some() && what_id == self.netns_id)
    }
}

#[derive(Debug)]
pub struct Daemon {
    host: HostConfig,
    /// host.toml's ports, to tell at start which saved endpoints it still wants.
    config_ports: Vec<PortConfig>,
    networks: BTreeMap<String, Network>,
    endpoints: Vec<Endpoint>,
    peers: Vec<Peer>,
    cluster: cluster::ClusterState,
    dataplane: Dataplane,
    /// The cluster's key ring and those of networks with their own key.
    keys: KeyStore,
    /// This boot's data-plane session (see `switchd_crypto::session`).
    session: SessionId,
    started: Instant,
    /// Pairs of networks that route, from host.toml and `route add`.
    routes: BTreeMap<RouteConfig, Origin>,
    published: Vec<gateway::Publication>,
    /// Where published ports lead: local containers by network and name.
    targets: crate::proxy::Targets,
    /// The control plane's runtime, where published ports are served.
    runtime: tokio::runtime::Handle,
    /// Address blocks this host claims, per network (see `ipam`).
    claims: BTreeMap<Name, ipam::Claims>,
    /// Since when this host has used no address of each of its blocks.
    idle_blocks: BTreeMap<Name, BTreeMap<u32, u64>>,
    /// Docker's networks (by id) as switchd's, and endpoints between
    /// dockerd's `CreateEndpoint` and `Join`.
    docker_networks: docker::DockerNetworks,
    docker_endpoints: BTreeMap<String, docker::PendingEndpoint>,
    docker_reserved: docker::DockerReserved,
    /// How long a claim must stand before it is used: a few gossip rounds;
    /// zero without gossip, where this host alone owns every block.
    claim_confirm: Duration,
    /// The operation under way on the system, saved before its first
    /// system call (the journal: see `state`).
    pending: Vec<Intent>,
    /// The gossip members heard before the last stop, routed by from the
    /// start until the gossip member takes them over (`crate::cluster`).
    kept_members: Vec<switchd_overlay::gossip::table::Member>,
}

/// A remote VTEP from `[[peer]]`.
#[derive(Debug)]
struct Peer {
    config: PeerConfig,
    vtep: VtepId,
}

impl Daemon {
    /// Starts the data plane, sets up host.toml's and saved networks, and
    /// reattaches saved and configured endpoints.
    pub fn start(config: Config) -> std::io::Result<Daemon> {
        for warning in config.warnings() {
            tracing::warn!("{warning}");
        }
        let switch = SwitchConfig::new(config.host.mac_aging_time, config.host.mac_limit);
        // First, so that a state this build cannot read stops it before
        // anything is touched.
        let saved = state::load(&config.host.state_dir)?;
        let session = state::new_session(&config.host.state_dir)?;
        let underlay = match config.host.underlay_ip {
            Some(ip) => Some(Underlay::bind(ip, config.host.vxlan_port, session).map_err(|e| {
                std::io::Error::new(e.kind(), format!("underlay {ip}:{}: {e}", config.host.vxlan_port))
            })?),
            None => None,
        };
        let cluster_key = config.gossip.as_ref().map(|g| g.key_file.as_path());
        let keys = KeyStore::open(&config.host.state_dir, cluster_key, &config.network_key_files)?;
        let dataplane = Dataplane::start(switch, config.host.workers, underlay)?;
        let runtime = tokio::runtime::Handle::try_current().map_err(std::io::Error::other)?;
        let claim_confirm =
            config.gossip.as_ref().map_or(Duration::ZERO, |g| (g.interval * 6).max(Duration::from_secs(1)));
        let routes = config
            .routes
            .into_iter()
            .map(|r| (r, Origin::Config))
            .chain(saved.routes.into_iter().map(|r| (r, Origin::Runtime)))
            .collect();
        let mut daemon = Daemon {
            host: config.host,
            config_ports: config.ports,
            networks: BTreeMap::new(),
            endpoints: Vec::new(),
            peers: Vec::new(),
            cluster: cluster::ClusterState::default(),
            dataplane,
            keys,
            session,
            started: Instant::now(),
            routes,
            published: Vec::new(),
            targets: Default::default(),
            runtime,
            claims: saved.ipam,
            idle_blocks: BTreeMap::new(),
            claim_confirm,
            docker_networks: saved.docker_networks,
            docker_endpoints: BTreeMap::new(),
            docker_reserved: saved.docker_reserved,
            pending: Vec::new(),
            kept_members: Vec::new(),
        };
        let interrupted = daemon.finish_interrupted(saved.pending);
        for peer in config.peers {
            let addr = SocketAddr::new(peer.underlay_ip, peer.vxlan_port);
            let vtep = daemon.dataplane.add_vtep(addr, peer.vnis.clone()).expect("validation refuses duplicate peers");
            daemon.peers.push(Peer { config: peer, vtep });
        }
        for net in config.networks {
            daemon.add_network(net, Origin::Config);
        }
        let saved_networks = saved
            .networks
            .into_iter()
            .map(|n| (n, Origin::Runtime))
            .chain(saved.cluster_networks.into_iter().map(|n| (n, Origin::Cluster)));
        for (net, origin) in saved_networks {
            if let Err(e) = daemon.check_network_is_new(&net).and_then(|()| daemon.check_key_held(&net)) {
                tracing::warn!("saved network {} dropped: {e}", net.name);
                continue;
            }
            daemon.add_network(net, origin);
        }
        // The cluster as last heard, before any container's interface is
        // back: its first ARP after the restart must find its peers.
        if let Some(gossip) = &config.gossip {
            daemon.kept_members = state::load_peers(&daemon.host.state_dir);
            if !daemon.kept_members.is_empty() {
                tracing::info!(
                    "{} hosts known from the last run, used until gossip confirms them (or for {:?})",
                    daemon.kept_members.len(),
                    gossip.failure_timeout
                );
                let timeouts = switchd_overlay::gossip::table::Timeouts::new(gossip.failure_timeout);
                let table = switchd_overlay::gossip::table::PeerTable::build(daemon.kept_members.clone(), timeouts);
                daemon.update_cluster(table, true, 0);
            }
        }
        daemon.restore_endpoints(saved.endpoints);
        for netns in interrupted {
            daemon.forget_resolv_conf(&netns);
        }
        // Reattached interfaces keep what they had; their routes follow the state.
        daemon.sync_container_routes(&[]);
        let publish = config
            .publish
            .into_iter()
            .map(|p| (p, Origin::Config))
            .chain(saved.published.into_iter().map(|p| (p, Origin::Runtime)));
        for (p, origin) in publish {
            if let Err(e) = daemon.publish(p, origin) {
                tracing::error!("publish: {e}");
            }
        }
        daemon.commit();
        Ok(daemon)
    }

    /// Finishes the operations a crash cut short (see `state`), before
    /// anything else touches the system: each one's device is deleted, so
    /// a connect is rolled back and a disconnect completed. Returns the
    /// namespaces they were in (for their resolv.conf, once endpoints are
    /// restored).
    fn finish_interrupted(&mut self, pending: Vec<Intent>) -> Vec<String> {
        let mut namespaces = Vec::new();
        for intent in pending {
            let e = &intent.endpoint;
            let (op, outcome) = match intent.op {
                Op::Connect => ("connect", "rolled back"),
                Op::Disconnect => ("disconnect", "completed"),
            };
            let done = match &intent.device {
                None => Ok("it made no interface".to_owned()),
                Some(device) => attach::delete(device).map(|()| format!("deleted {device}")),
            };
            match done {
                Ok(what) => tracing::warn!(
                    "reconciled at start: a {op} of {} on {} was cut short by a crash; {outcome}: {what}",
                    e.name,
                    e.network
                ),
                Err(err) => tracing::error!(
                    "reconciling at start: a {op} of {} on {} was cut short by a crash, and cannot be {outcome}: {err}",
                    e.name,
                    e.network
                ),
            }
            namespaces.extend(e.netns.clone());
        }
        namespaces
    }

    fn restore_endpoints(&mut self, saved: Vec<EndpointRecord>) {
        let mut wanted: Vec<Option<PortConfig>> = self.config_ports.iter().cloned().map(Some).collect();
        let mut orphans = Vec::new();
        for mut record in saved {
            if record.docker_endpoint.is_some() && record.ifname.is_none() {
                // Its interface was never found inside the container.
                tracing::warn!(
                    "{} on {}: a Docker endpoint not found in its container, dropped",
                    record.name,
                    record.network
                );
                continue;
            }
            let from_config = wanted.iter_mut().find(|p| p.as_ref().is_some_and(|p| same_attachment(p, &record)));
            if record.origin == Origin::Config && from_config.is_none() {
                tracing::info!("{} on {}: no longer in host.toml, detaching", record.name, record.network);
                if let Err(e) = attach::remove(&record) {
                    tracing::warn!("{} on {}: {e}", record.name, record.network);
                }
                continue;
            }
            if let Some(slot) = from_config {
                *slot = None;
                record.origin = Origin::Config;
            }
            let Some(net) = self.networks.get(record.network.as_str()) else {
                let reason = format!("network {} no longer exists", record.network);
                orphans.push(state::Orphan { reason, endpoint: record });
                continue;
            };
            let net_config = net.config.clone();
            match self.open_endpoint(record.clone(), &net_config) {
                Ok(()) => tracing::info!("{} on {}: reattached", record.name, record.network),
                Err(e) => orphans.push(state::Orphan { reason: format!("cannot reattach: {e}"), endpoint: record }),
            }
        }
        if !orphans.is_empty() {
            let kept = state::keep_orphans(&self.host.state_dir, &orphans);
            for o in &orphans {
                let at = match &kept {
                    Ok(path) => format!("kept in {}", path.display()),
                    Err(e) => format!("and could not be kept aside: {e}"),
                };
                tracing::warn!("{} on {}: {}; endpoint set aside, {at}", o.endpoint.name, o.endpoint.network, o.reason);
            }
        }
        for port in wanted.into_iter().flatten() {
            let raw = raw_from_port(&port);
            if let Err(e) = self.connect(&raw, Origin::Config, ClaimMode::Now) {
                tracing::error!("[[port]] {} on {}: {e}", port.display_name().unwrap_or_default(), port.network);
            }
        }
    }

    /// Saves networks and endpoints. A failure is logged, not fatal: the
    /// running switch is still right, only a restart would lose the change.
    fn save(&self) {
        if let Err(e) = self.try_save() {
            tracing::error!("cannot save state in {}: {e}", self.host.state_dir.display());
        }
    }

    fn try_save(&self) -> std::io::Result<()> {
        let of =
            |origin| self.networks.values().filter(move |n| n.origin == origin).map(|n| n.config.clone()).collect();
        let state = State {
            version: 0,
            networks: of(Origin::Runtime),
            cluster_networks: of(Origin::Cluster),
            endpoints: self.endpoints.iter().map(|e| e.record.clone()).collect(),
            routes: self.routes.iter().filter(|(_, o)| **o == Origin::Runtime).map(|(r, _)| r.clone()).collect(),
            published: self
                .published
                .iter()
                .filter(|p| p.origin == Origin::Runtime)
                .map(|p| p.config.clone())
                .collect(),
            ipam: self.claims.clone(),
            docker_networks: self.docker_networks.clone(),
            docker_reserved: self.docker_reserved.clone(),
            pending: self.pending.clone(),
        };
        state::save(&self.host.state_dir, &state)
    }

    /// Records an operation before its first system call: if switchd dies
    /// before it is done, the next start finishes it (`finish_interrupted`).
    /// Refused if it cannot be recorded. The save that records the
    /// outcome clears it (`pending.clear()` then `commit` or `save`).
    fn begin(&mut self, op: Op, endpoint: &EndpointRecord, device: Option<Device>) -> OpResult<()> {
        self.pending = vec![Intent { op, endpoint: endpoint.clone(), device }];
        self.try_save().map_err(|e| {
            self.pending.clear();
            format!("cannot record the operation in {}: {e}", self.host.state_dir.display())
        })
    }

    /// After a change: saves it, tells the cluster, and reprograms what
    /// depends on local endpoints (neighbour answers, gateways) and keys.
    fn commit(&mut self) {
        self.save();
        self.publish_state();
        self.reprogram();
        self.program_gateways();
        self.push_keys();
    }

    /// Gives the data plane every encrypted network's keys, and other
    /// hosts' current sessions.
    fn push_keys(&self) {
        let networks = self
            .networks
            .values()
            .filter_map(|n| {
                let e = n.config.encryption?;
                let ring = self.keys.ring(&key_scope(&n.config))?;
                Some((n.config.vni.get(), NetworkKeys { cipher: e.cipher, ring }))
            })
            .collect();
        let sessions = self.cluster.table.hosts.values().filter_map(|h| Some((h.underlay.ip(), h.session?))).collect();
        self.dataplane.set_keys(KeySet { networks, sessions });
    }

    /// Refuses an encrypted network whose key this host does not hold:
    /// it would have to carry it in plaintext, which it never does.
    fn check_key_held(&self, net: &NetworkConfig) -> OpResult<()> {
        match net.encryption {
            Some(_) if self.keys.ring(&key_scope(net)).is_none() => Err(match key_scope(net) {
                Scope::Cluster => format!(
                    "network {:?} is encrypted with the cluster key, and this host has none ([gossip] key_file)",
                    net.name.as_str()
                ),
                Scope::Network(name) => format!(
                    "network {name:?} is encrypted with its own key, which this host does not hold; \
                     add it with `switchctl key add FILE --network {name}`"
                ),
            }),
            _ => Ok(()),
        }
    }

    /// The gossip members kept from the last run (see `state::load_peers`),
    /// for the gossip member to merge until it hears them itself.
    pub fn take_kept_members(&mut self) -> Vec<switchd_overlay::gossip::table::Member> {
        std::mem::take(&mut self.kept_members)
    }

    /// Keeps the gossip members heard for the next start.
    pub fn keep_members(&self, members: &[switchd_overlay::gossip::table::Member]) {
        if let Err(e) = state::save_peers(&self.host.state_dir, members) {
            tracing::warn!("cannot keep the hosts heard in {}: {e}", self.host.state_dir.display());
        }
    }

    /// The cluster's key ring, for the gossip transport.
    pub fn cluster_keys(&self) -> Option<SharedKeyring> {
        self.keys.cluster().cloned()
    }

    /// Stops the data plane and saves. Interfaces stay in their containers,
    /// ready for the next start.
    pub fn shutdown(&mut self) {
        self.save();
        self.dataplane.shutdown();
    }

    /// Runs one control request. `Err(wait)`: it cannot be done yet (an
    /// address block being claimed); ask again after `wait`, without
    /// holding the daemon, so gossip goes on meanwhile.
    pub fn handle(&mut self, request: &Request) -> Result<Reply, Duration> {
        fn reply<T: Serialize>(result: OpResult<T>) -> Reply {
            match result.and_then(|v| serde_json::to_value(v).map_err(|e| e.to_string())) {
                Ok(value) => Reply::Result(value),
                Err(e) => Reply::Error(e),
            }
        }
        let request = request.clone();
        Ok(match request {
            Request::Status => reply(Ok(self.status())),
            Request::NetworkLs => reply(Ok(self.network_ls())),
            Request::NetworkInspect { name } => reply(self.network_inspect(&name)),
            Request::NetworkCreate { network } => reply(self.network_create(&network)),
            Request::NetworkRm { names } => reply(self.network_rm(&names)),
            Request::NetworkPrune => reply(Ok(self.network_prune())),
            Request::NetworkConnect { port } => match self.connect(&port, Origin::Runtime, ClaimMode::Wait) {
                Err(Refused::Wait(wait)) => return Err(wait),
                result => reply(result.map_err(String::from)),
            },
            Request::NetworkDisconnect { network, endpoint } => reply(self.disconnect(&network, &endpoint)),
            Request::Fdb { network } => reply(self.fdb(network.as_deref())),
            Request::Stats => reply(Ok(self.stats())),
            Request::Peers => reply(Ok(self.peers())),
            Request::PlanAttach { port } => reply(self.plan_attach(&port)),
            Request::KeyLs => reply(Ok(self.key_ls())),
            Request::KeyAdd { file, network } => reply(self.key_add(&file, network.as_deref())),
            Request::KeyUse { id, force } => reply(self.key_use(&id, force)),
            Request::KeyRm { id, force } => reply(self.key_rm(&id, force)),
            Request::RouteLs => reply(Ok(self.route_ls())),
            Request::RouteAdd { route } => reply(self.route_add(&route)),
            Request::RouteRm { route } => reply(self.route_rm(&route)),
            Request::PublishLs => reply(Ok(self.publish_ls())),
            Request::PublishAdd { publish } => reply(self.publish_add(&publish)),
            Request::PublishRm { host_port, protocol } => reply(self.publish_rm(host_port, &protocol)),
        })
    }

    fn status(&self) -> Status {
        Status {
            host: self.host.name.to_string(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_secs: self.started.elapsed().as_secs(),
            networks: self.networks.len(),
            ports: self.endpoints.len(),
            // Static peers have no liveness to track: configured means alive.
            peers_alive: self.peers.len() + self.cluster.table.hosts.values().filter(|h| h.is_usable()).count(),
            session: self.host.underlay_ip.map(|_| self.session.to_string()),
            refused_networks: self.cluster.refused.values().cloned().collect(),
        }
    }

    fn network(&self, name: &str) -> OpResult<&Network> {
        self.networks.get(name).ok_or_else(|| format!("no network named {name:?}"))
    }

    fn network_info(&self, net: &Network) -> NetworkInfo {
        let c = &net.config;
        NetworkInfo {
            name: c.name.to_string(),
            vni: c.vni.get(),
            subnet: c.subnet.map(|s| s.to_string()),
            gateway: c.gateway,
            mtu: c.mtu.get(),
            encrypted: c.is_encrypted(),
            cipher: c.encryption.map(|e| e.cipher.to_string()),
            key: c.encryption.map(|_| key_scope(c).display_name()),
            internal: c.internal,
            dns: c.dns && c.subnet.is_some(),
            dhcp: c.dhcp && c.subnet.is_some(),
            host_access: net.host_port.is_some(),
            routes: self.routes.keys().filter_map(|r| r.peer_of(&c.name)).map(|n| n.to_string()).collect(),
            ports: self.endpoints_on(c.name.as_str()).count(),
            hosts: self.hosts_on(&c.name),
            origin: net.origin.as_str().to_owned(),
        }
    }

    /// The hosts with endpoints on a network: this one, and others by gossip.
    fn hosts_on(&self, network: &Name) -> Vec<String> {
        let mut hosts = std::collections::BTreeSet::new();
        if self.endpoints_on(network.as_str()).next().is_some() {
            hosts.insert(self.host.name.to_string());
        }
        hosts.extend(self.cluster.table.endpoints_on(network).map(|(h, _)| h.name.to_string()));
        hosts.into_iter().collect()
    }

    fn endpoints_on<'a>(&'a self, network: &'a str) -> impl Iterator<Item = &'a Endpoint> + 'a {
        self.endpoints.iter().filter(move |e| e.record.network.as_str() == network)
    }

    fn network_ls(&self) -> Vec<NetworkInfo> {
        self.networks.values().map(|n| self.network_info(n)).collect()
    }

    fn network_inspect(&self, name: &str) -> OpResult<NetworkDetail> {
        let net = self.network(name)?;
        let host = self.host.name.as_str();
        let remote = self.cluster.table.endpoints_on(&net.config.name).map(|(h, e)| EndpointInfo {
            name: e.name.to_string(),
            network: e.network.to_string(),
            ip: e.ip,
            mac: Some(e.mac.to_string()),
            host: h.name.to_string(),
            kind: "remote".into(),
            netns: None,
            ifname: None,
            host_ifname: None,
        });
        Ok(NetworkDetail {
            network: self.network_info(net),
            endpoints: self.endpoints_on(name).map(|e| e.info(host)).chain(remote).collect(),
        })
    }

    fn check_network_is_new(&self, net: &NetworkConfig) -> OpResult<()> {
        if self.networks.contains_key(net.name.as_str()) {
            return Err(format!("network {:?} already exists", net.name.as_str()));
        }
        if let Some(other) = self.networks.values().find(|n| n.config.vni == net.vni) {
            return Err(format!("vni {} is already used by network {:?}", net.vni, other.config.name.as_str()));
        }
        Ok(())
    }

    /// Adds a network; its name and VNI are known to be new, its key held.
    fn add_network(&mut self, config: NetworkConfig, origin: Origin) {
        let id =
            self.dataplane.add_network(config.vni, config.mtu, config.is_encrypted()).expect("checked: the VNI is new");
        let stack = self.start_gateway_stack(&config, id);
        let host_port = self.open_host_side(&config, id);
        self.networks.insert(config.name.to_string(), Network { config, id, origin, stack, host_port });
    }

    /// With host access: the host-side interface `sdgVNI`, holding the
    /// gateway address, as a port of the network.
    fn open_host_side(&mut self, config: &NetworkConfig, id: NetworkId) -> Option<PortId> {
        let ip = config.gateway.and_then(crate::services::v4).filter(|_| config.host_access)?;
        let name = switchd_config::IfName::new(&format!("sdg{}", config.vni)).expect("sdg and 8 digits fit");
        let mac = crate::switch::Gateway::mac_for(config.vni);
        let prefix = config.subnet?.prefix_len();
        match crate::io::gateway::host_tap(&name, Some((ip, prefix)), mac, config.mtu.get(), false) {
            Ok(fd) => {
                let port = match self.dataplane.add_port(id, Box::new(FdPort(fd)), PortGuard::Open) {
                    Ok(port) => port,
                    Err(e) => {
                        tracing::error!("network {}: no host access, {name} cannot be switched: {e}", config.name);
                        return None;
                    }
                };
                self.dataplane.with_switch(|s| s.set_host_port(id, Some(port)));
                tracing::info!("network {}: host access through {name} ({ip}/{prefix})", config.name);
                Some(port)
            }
            Err(e) => {
                tracing::error!("network {}: no host access, {name} could not be made: {e}", config.name);
                None
            }
        }
    }

    /// Starts the gateway's kernel stack of a network whose gateway answers
    /// DNS. Without it (it failed to start), DNS over UDP still works.
    fn start_gateway_stack(
        &mut self,
        config: &NetworkConfig,
        id: NetworkId,
    ) -> Option<(crate::io::gateway::GatewayStack, PortId)> {
        let ip = config.gateway.and_then(crate::services::v4).filter(|_| config.dns)?;
        let prefix = config.subnet?.prefix_len();
        let mac = crate::switch::Gateway::mac_for(config.vni);
        let source = self.dataplane.services_source();
        let started = crate::io::gateway::start(id, ip, prefix, mac, config.mtu.get(), source, &self.runtime);
        let (stack, tap) = match started {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("network {}: no gateway stack, so no DNS over TCP: {e}", config.name);
                return None;
            }
        };
        let port = match self.dataplane.add_port(id, Box::new(FdPort(tap)), PortGuard::Open) {
            Ok(port) => port,
            Err(e) => {
                tracing::warn!("network {}: no gateway stack, so no DNS over TCP: {e}", config.name);
                return None;
            }
        };
        self.dataplane.with_switch(|s| s.set_gateway_port(id, Some(port)));
        Some((stack, port))
    }

    fn network_create(&mut self, raw: &RawNetwork) -> OpResult<NetworkInfo> {
        // switchctl sends an absolute key_file path.
        let (config, key_file) =
            validate::network(raw, &self.host, Path::new("/"), &KeyPath::root()).map_err(join_errors)?;
        self.check_network_is_new(&config)?;
        self.check_cluster_agrees(&config)?;
        if let Some(path) = key_file {
            let key = Key::load(&path).map_err(|e| e.to_string())?;
            let scope = Scope::Network(config.name.clone());
            if self.keys.ring(&scope).is_none_or(|r| r.get(key.id()).is_none()) {
                self.keys.add(&scope, key)?;
            }
        }
        self.check_key_held(&config)?;
        let name = config.name.to_string();
        self.add_network(config, Origin::Runtime);
        self.commit();
        Ok(self.network_info(&self.networks[&name]))
    }

    fn network_rm(&mut self, names: &[String]) -> OpResult<Vec<String>> {
        let mut errors = Vec::new();
        let mut removed = Vec::new();
        for name in names {
            match self.remove_network(name) {
                Ok(()) => removed.push(name.clone()),
                Err(e) => errors.push(e),
            }
        }
        self.commit();
        if errors.is_empty() { Ok(removed) } else { Err(errors.join("; ")) }
    }

    fn remove_network(&mut self, name: &str) -> OpResult<()> {
        let net = self.network(name)?;
        if net.origin == Origin::Config {
            return Err(format!("network {name:?} is defined in host.toml; remove it there"));
        }
        let remote = self.cluster.table.networks.get(&net.config.name);
        if net.origin == Origin::Cluster
            && let Some(c) = remote
        {
            let hosts: Vec<&str> = c.hosts.iter().map(Name::as_str).collect();
            return Err(format!("network {name:?} is defined by {}; remove it there", hosts.join(", ")));
        }
        let mut attached: Vec<String> = self.endpoints_on(name).map(|e| e.record.name.to_string()).collect();
        attached
            .extend(self.cluster.table.endpoints_on(&net.config.name).map(|(h, e)| format!("{} ({})", e.name, h.name)));
        if !attached.is_empty() {
            return Err(format!(
                "network {name:?} has endpoints attached: {}; disconnect them first",
                attached.join(", ")
            ));
        }
        self.drop_network(name);
        Ok(())
    }

    /// Takes a network out of the data plane with its gateway's ports, and
    /// forgets its address claims. Its endpoints are gone already.
    fn drop_network(&mut self, name: &str) {
        let Some(removed) = self.networks.remove(name) else { return };
        self.claims.remove(&removed.config.name);
        for port in removed.stack.map(|(_, port)| port).into_iter().chain(removed.host_port) {
            self.dataplane.remove_port(port);
        }
        self.dataplane.remove_network(removed.id);
    }

    fn network_prune(&mut self) -> Vec<String> {
        let unused: Vec<String> = self
            .networks
            .values()
            .filter(|n| n.origin == Origin::Runtime && self.endpoints_on(n.config.name.as_str()).next().is_none())
            .map(|n| n.config.name.to_string())
            .collect();
        for name in &unused {
            let _ = self.remove_network(name);
        }
        self.commit();
        unused
    }

    /// Validates a connect request and works out its endpoint: name, address
    /// and MAC, refusing duplicates. Nothing is created yet.
    fn plan(
        &mut self,
        raw: &RawPort,
        origin: Origin,
        mode: ClaimMode,
    ) -> Result<(EndpointRecord, Option<NetnsId>), Refused> {
        let configs: Vec<NetworkConfig> = self.networks.values().map(|n| n.config.clone()).collect();
        let port = validate::port(raw, &configs, &KeyPath::root()).map_err(join_errors)?;
        let net = &self.networks[port.network.as_str()].config;
        let netns_id = port.netns.as_deref().map(netns::identify).transpose().map_err(|e| e.to_string())?;
        let name = Name::new(&port.display_name().unwrap_or_default()).map_err(|e| format!("name: {e}"))?;

        let on_net: Vec<&Endpoint> = self.endpoints_on(net.name.as_str()).collect();
        if let Some(e) = on_net.iter().find(|e| netns_id.is_some() && e.netns_id == netns_id) {
            return Err(format!(
                "container {:?} is already connected to network {:?}{}",
                e.record.name.as_str(),
                net.name.as_str(),
                e.record.ifname.as_ref().map(|i| format!(" (as {i})")).unwrap_or_default()
            )
            .into());
        }
        if on_net.iter().any(|e| e.record.name == name) {
            return Err(format!("name {:?} is already used on network {:?}", name.as_str(), net.name.as_str()).into());
        }
        if let Some(host) = &port.host_ifname
            && let Some(e) = self.endpoints.iter().find(|e| e.record.host_ifname.as_ref() == Some(host))
        {
            return Err(format!("host interface {host} is already switched for {:?}", e.record.name.as_str()).into());
        }
        if let (Some(ns_id), Some(ifname)) = (netns_id, &port.ifname)
            && self.endpoints.iter().any(|e| e.netns_id == Some(ns_id) && e.record.ifname.as_ref() == Some(ifname))
        {
            return Err(format!(
                "{ifname} in netns {:?} is already attached",
                port.netns.as_deref().unwrap_or_default()
            )
            .into());
        }
        if let Some(mac) = port.mac
            && on_net.iter().any(|e| e.record.mac == Some(mac))
        {
            return Err(format!("{mac} is already in use on network {:?}", net.name.as_str()).into());
        }
        // Addresses used here or, as gossip tells, on other hosts.
        let mut taken_ips: HashSet<_> = on_net.iter().filter_map(|e| e.record.ip).collect();
        taken_ips.extend(self.cluster.table.endpoints_on(&net.name).filter_map(|(_, e)| e.ip));
        // Addresses switchd's IPAM gave dockerd for endpoints to come.
        if let Some(reserved) = net.subnet.and_then(|s| self.docker_reserved.get(&s.to_string())) {
            taken_ips.extend(reserved.iter().copied());
        }
        let ip = match (port.ip, net.subnet) {
            (Some(ip), _) if taken_ips.contains(&ip) => {
                return Err(format!("{ip} is already in use on network {:?}", net.name.as_str()).into());
            }
            (Some(ip), _) => Some(ip),
            // A host interface switchd does not configure gets no address.
            (None, Some(_)) if port.kind != PortKind::Uplink => {
                let net = net.clone();
                self.pick_address(&net, &taken_ips, mode)?
            }
            (None, _) => None,
        };
        let mac = match (port.mac, ip, port.kind) {
            (Some(mac), _, _) => Some(mac),
            (None, _, PortKind::Uplink) => None,
            (None, Some(ip), _) => Some(MacAddr::derived_from_ip(ip)),
            (None, None, _) => Some(MacAddr::local_from_bits(attach::random_u64())),
        };
        let record = EndpointRecord {
            network: port.network.clone(),
            name,
            kind: port.kind,
            netns: port.netns.clone(),
            ifname: port.ifname.clone(),
            host_ifname: port.host_ifname.clone(),
            ip,
            mac,
            owned: false,
            origin,
            dhcp: port.dhcp,
            docker_endpoint: None,
        };
        Ok((record, netns_id))
    }

    /// An address for a new endpoint on `net` from a block this host owns
    /// (see `ipam`), claiming one when it has none with room.
    fn pick_address(
        &mut self,
        net: &NetworkConfig,
        taken: &HashSet<IpAddr>,
        mode: ClaimMode,
    ) -> Result<Option<IpAddr>, Refused> {
        let subnet = net.subnet.expect("called for networks with a subnet");
        let now_ms = now_ms();
        let confirm = if mode == ClaimMode::Now { Duration::ZERO } else { self.claim_confirm };
        let decided = self.with_ipam_pool(net, now_ms, confirm, |pool| {
            let allocation = ipam::allocate(pool, |ip| taken.contains(&ip));
            let owner = match &allocation {
                ipam::Allocation::Claim(block) => ipam::owner(*block, pool.claims.unwrap_or_default()).cloned(),
                _ => None,
            };
            (allocation, owner)
        });
        let exhausted = || format!("no free address left in {subnet} on network {:?}", net.name.as_str());
        match decided {
            (ipam::Allocation::Address(ip), _) => Ok(Some(ip)),
            (ipam::Allocation::Exhausted, _) => Err(exhausted().into()),
            (ipam::Allocation::Wait(_) | ipam::Allocation::Claim(_), _) if mode == ClaimMode::Preview => Ok(None),
            (ipam::Allocation::Wait(wait), _) => Err(Refused::Wait(wait)),
            // At start, before gossip runs, there is no one to ask.
            (ipam::Allocation::Claim(_), Some(_)) if mode == ClaimMode::Now => Err(exhausted().into()),
            (ipam::Allocation::Claim(block), owner) => {
                match owner {
                    Some(owner) => tracing::info!(
                        "network {}: every address block is claimed; asking {owner} for block {block}, \
                         where it has no address",
                        net.name
                    ),
                    None => tracing::info!("network {}: claiming address block {block}", net.name),
                }
                self.claims.entry(net.name.clone()).or_default().insert(block, now_ms);
                self.save();
                self.publish_state();
                if mode == ClaimMode::Now {
                    return self.pick_address(net, taken, mode);
                }
                Err(Refused::Wait(self.claim_confirm))
            }
        }
    }

    /// Runs `f` with the IPAM pool of `net`: its subnet, and every host's
    /// claims on it (`None` without gossip, where this host owns all).
    fn with_ipam_pool<T>(
        &self,
        net: &NetworkConfig,
        now_ms: u64,
        confirm: Duration,
        f: impl FnOnce(ipam::Pool) -> T,
    ) -> T {
        let me = &self.host.name;
        let empty = ipam::Claims::new();
        let mine = self.claims.get(&net.name).unwrap_or(&empty);
        let mut all: Vec<(&Name, &ipam::Claims)> = vec![(me, mine)];
        all.extend(self.cluster.table.hosts.values().filter_map(|h| Some((&h.name, h.ipam.get(&net.name)?))));
        // With gossip configured, always by claims (also at start, before
        // the member runs: its claims go out with its first gossip).
        let gossiping = !self.claim_confirm.is_zero();
        f(ipam::Pool {
            subnet: net.subnet.expect("called for networks with a subnet"),
            gateway: net.gateway,
            me,
            claims: gossiping.then_some(&all[..]),
            now_ms,
            confirm,
            request_for: self.claim_confirm * 3,
        })
    }

    /// Gives back address blocks (see `ipam::tend`): claims another host's
    /// earlier claim beat or whose request lapsed, blocks another host asks
    /// for and this one has no address in, and blocks unused here for
    /// [`IDLE_BLOCK_RELEASE`].
    fn tend_claims(&mut self) {
        if self.claim_confirm.is_zero() {
            return;
        }
        let now_ms = now_ms();
        let mut changed = false;
        // A cluster network this host no longer carries for its own sake
        // keeps no block longer than it takes to use a fresh claim: holding
        // claims keeps the network published, and so in the cluster.
        let networks: Vec<(NetworkConfig, Duration)> = self
            .networks
            .values()
            .filter(|n| n.config.subnet.is_some() && self.claims.get(&n.config.name).is_some_and(|c| !c.is_empty()))
            .map(|n| (n.config.clone(), if self.carries(n) { IDLE_BLOCK_RELEASE } else { Duration::ZERO }))
            .collect();
        for (net, release_after) in networks {
            let mut used: HashSet<IpAddr> = self.endpoints_on(net.name.as_str()).filter_map(|e| e.record.ip).collect();
            if let Some(reserved) = net.subnet.and_then(|s| self.docker_reserved.get(&s.to_string())) {
                used.extend(reserved.iter().copied());
            }
            let mut idle = self.idle_blocks.remove(&net.name).unwrap_or_default();
            let released = self.with_ipam_pool(&net, now_ms, self.claim_confirm, |pool| {
                ipam::tend(pool, |ip| used.contains(&ip), &mut idle, release_after)
            });
            self.idle_blocks.insert(net.name.clone(), idle);
            for (block, why) in released {
                match why {
                    ipam::Release::Lost => tracing::warn!(
                        "network {}: address block {block} is another host's (claimed first, or not given \
                         when asked for); giving up the claim",
                        net.name
                    ),
                    ipam::Release::Yielded(host) => tracing::info!(
                        "network {}: giving address block {block} to {host}, which asked for it",
                        net.name
                    ),
                    ipam::Release::Idle => tracing::info!(
                        "network {}: giving address block {block} back, unused here for {} s",
                        net.name,
                        release_after.as_secs()
                    ),
                }
                if let Some(mine) = self.claims.get_mut(&net.name) {
                    mine.remove(&block);
                }
                changed = true;
            }
        }
        if changed {
            self.save();
            self.publish_state();
        }
    }

    fn connect(&mut self, raw: &RawPort, origin: Origin, mode: ClaimMode) -> Result<EndpointInfo, Refused> {
        let (mut record, _) = self.plan(raw, origin, mode)?;
        let net = self.networks[record.network.as_str()].config.clone();
        let netns = record.netns.clone();
        let device = attach::prepare(&mut record).map_err(|e| e.to_string())?;
        self.begin(Op::Connect, &record, device.clone())?;
        let opened = self.open_endpoint(record, &net);
        self.pending.clear();
        if let Err(e) = opened {
            // Whatever step failed, nothing it made stays.
            if let Some(device) = &device
                && let Err(cleanup) = attach::delete(device)
            {
                tracing::warn!("after a failed connect: {cleanup}");
            }
            self.save();
            return Err(e.into());
        }
        if let Some(ns) = netns {
            self.write_resolv_conf(&ns, net.name.as_str());
        }
        self.commit();
        Ok(self.endpoints.last().expect("just added").info(self.host.name.as_str()))
    }

    /// Opens the endpoint's device and adds its port to the switch.
    fn open_endpoint(&mut self, mut record: EndpointRecord, net: &NetworkConfig) -> OpResult<()> {
        let netns_id = record.netns.as_deref().map(netns::identify).transpose().map_err(|e| e.to_string())?;
        let routes = self.routed_subnets(&net.name);
        let fd = attach::open(&mut record, attach::Attachment { net, routes: &routes }).map_err(|e| e.to_string())?;
        let network_id = self.networks[net.name.as_str()].id;
        let guard = gateway::port_guard(&record, net);
        let port = self
            .dataplane
            .add_port(network_id, Box::new(FdPort(fd)), guard)
            .map_err(|e| format!("switching {}: {e}", record.name))?;
        self.endpoints.push(Endpoint { record, port, netns_id });
        Ok(())
    }

    fn disconnect(&mut self, network: &str, endpoint: &str) -> OpResult<EndpointInfo> {
        self.network(network)?;
        let what_id = netns::identify(endpoint).ok();
        let index = self
            .endpoints
            .iter()
            .position(|e| e.record.network.as_str() == network && e.is_named(endpoint, what_id))
            .ok_or_else(|| format!("no endpoint {endpoint:?} on network {network:?}"))?;
        let endpoint = self.endpoints.remove(index);
        self.dataplane.remove_port(endpoint.port);
        let device = attach::made_device(&endpoint.record);
        self.pending = vec![Intent { op: Op::Disconnect, endpoint: endpoint.record.clone(), device: device.clone() }];
        if let Some(ns) = &endpoint.record.netns {
            self.forget_resolv_conf(ns);
        }
        // The record goes and the intent comes in one save.
        self.commit();
        let deleted = device.map_or(Ok(()), |d| attach::delete(&d));
        self.pending.clear();
        self.save();
        deleted.map_err(|e| format!("detached, but {e}"))?;
        Ok(endpoint.info(self.host.name.as_str()))
    }

    /// Detaches endpoints whose container is gone: its netns no longer
    /// exists (or the name now means another namespace), or its host
    /// interface vanished. What Docker does when a container stops.
    pub fn reap(&mut self) {
        let gone: Vec<usize> = self
            .endpoints
            .iter()
            .enumerate()
            // Docker's endpoints go when dockerd says (`Leave`).
            .filter(|(_, e)| e.record.docker_endpoint.is_none())
            .filter(|(_, e)| match (&e.record.netns, &e.record.host_ifname) {
                (_, Some(host)) => crate::io::sys::if_index(host.as_str()).is_none(),
                (Some(ns), None) => netns::identify(ns).ok() != e.netns_id,
                (None, None) => false,
            })
            .map(|(i, _)| i)
            .collect();
        for i in gone.iter().rev() {
            let e = self.endpoints.remove(*i);
            tracing::info!("{} on {}: container gone, endpoint detached", e.record.name, e.record.network);
            self.dataplane.remove_port(e.port);
            if let Some(ns) = &e.record.netns {
                self.forget_resolv_conf(ns);
            }
        }
        if !gone.is_empty() {
            self.commit();
        }
    }

    fn fdb(&self, network: Option<&str>) -> OpResult<Vec<FdbEntry>> {
        let nets: Vec<&Network> = match network {
            Some(name) => vec![self.network(name)?],
            None => self.networks.values().collect(),
        };
        let now = Instant::now();
        let mut rows = Vec::new();
        for net in nets {
            let entries = self.dataplane.with_switch(|s| s.fdb(net.id, now));
            for (mac, at, kind, age) in entries {
                let (location, endpoint, host, vtep) = match at {
                    Location::Port(port) => match self.endpoints.iter().find(|e| e.port == port) {
                        Some(e) => (e.port_label(), e.record.name.to_string(), None, None),
                        None => ("-".into(), "-".into(), None, None),
                    },
                    Location::Vtep(id) => match self.vtep_owner(id) {
                        Some((host, ip)) => {
                            let label = host.as_ref().map_or_else(|| ip.clone(), |h| format!("{h} {ip}"));
                            (label, "-".into(), host, Some(ip))
                        }
                        None => ("-".into(), "-".into(), None, None),
                    },
                };
                rows.push(FdbEntry {
                    mac: mac.to_string(),
                    network: net.config.name.to_string(),
                    location,
                    endpoint,
                    host,
                    vtep,
                    kind: kind.as_str().into(),
                    age_secs: (age.as_secs_f64() * 10.0).round() / 10.0,
                });
            }
        }
        Ok(rows)
    }

    fn stats(&self) -> Stats {
        let mut ports = Vec::new();
        let mut networks: BTreeMap<String, NetworkStats> = BTreeMap::new();
        for net in self.networks.values() {
            let counters = self.dataplane.with_switch(|s| s.network_counters(net.id)).unwrap_or_default();
            networks.insert(
                net.config.name.to_string(),
                NetworkStats {
                    network: net.config.name.to_string(),
                    flooded: counters.flooded,
                    mac_moves: counters.mac_moves,
                    fdb_entries: counters.fdb_entries,
                    neighbor_answers: counters.neighbor_answers,
                    routed: counters.routed,
                    ..NetworkStats::default()
                },
            );
        }
        for e in &self.endpoints {
            let rx = self.dataplane.with_switch(|s| s.port_counters(e.port).cloned()).unwrap_or_default();
            let dev = self.dataplane.port_stats(e.port).unwrap_or_default();
            let (tx_frames, tx_bytes) = (dev.frames, dev.bytes);
            let drops = drops_map(&rx, &dev);
            let port = PortStats {
                network: e.record.network.to_string(),
                endpoint: e.record.name.to_string(),
                port: e.port_label(),
                rx_frames: rx.frames,
                rx_bytes: rx.bytes,
                tx_frames,
                tx_bytes,
                drops,
            };
            if let Some(n) = networks.get_mut(&port.network) {
                n.rx_frames += port.rx_frames;
                n.rx_bytes += port.rx_bytes;
                n.tx_frames += port.tx_frames;
                n.tx_bytes += port.tx_bytes;
                for (reason, count) in &port.drops {
                    *n.drops.entry(reason.clone()).or_default() += count;
                }
            }
            ports.push(port);
        }
        let vtep_ids =
            self.peers.iter().map(|p| p.vtep).chain(self.cluster.vteps.values().filter(|v| v.owned).map(|v| v.id));
        let vteps = vtep_ids
            .filter_map(|id| {
                let (host, ip) = self.vtep_owner(id)?;
                let info = self.dataplane.with_switch(|s| s.vtep_info(id));
                let rx = info.map(|i| i.rx).unwrap_or_default();
                let dev = self.dataplane.vtep_stats(id).unwrap_or_default();
                let (tx_frames, tx_bytes) = (dev.frames, dev.bytes);
                Some(VtepStats {
                    vtep: ip,
                    host,
                    rx_frames: rx.frames,
                    rx_bytes: rx.bytes,
                    tx_frames,
                    tx_bytes,
                    drops: drops_map(&rx, &dev),
                })
            })
            .collect();
        let underlay_drops = self.dataplane.with_switch(|s| drops_map(s.underlay_counters(), &DeviceStats::default()));
        let (sealed, opened, sessions) = self.dataplane.crypto_counters();
        let crypto =
            self.host.underlay_ip.map(|_| CryptoStats { session: self.session.to_string(), sealed, opened, sessions });
        let gossip = self.cluster.stats.as_ref().map(|g| {
            let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
            GossipStatsInfo {
                datagrams_in: load(&g.datagrams_in),
                datagrams_out: load(&g.datagrams_out),
                bytes_in: load(&g.bytes_in),
                bytes_out: load(&g.bytes_out),
                rejected: g.rejections().into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
                bad_messages: load(&g.bad_messages),
                bad_entries: self.cluster.state_errors,
            }
        });
        let services =
            self.dataplane.service_counters().snapshot().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        Stats { ports, networks: networks.into_values().collect(), vteps, underlay_drops, gossip, crypto, services }
    }

    fn peers(&self) -> Vec<PeerInfo> {
        let now = Instant::now();
        let round = |d: std::time::Duration| (d.as_secs_f64() * 10.0).round() / 10.0;
        let gossip = self.cluster.table.hosts.values().map(|h| PeerInfo {
            host: Some(h.name.to_string()),
            underlay_ip: h.underlay.ip(),
            vxlan_port: h.underlay.port(),
            state: h.liveness.as_str().into(),
            last_heard_secs: Some(round(h.since_heard)),
            networks: h.networks.iter().map(|n| n.to_string()).collect(),
            macs: h.endpoints.len() as u32,
        });
        let static_peers = self.peers.iter().map(|p| {
            let info = self.dataplane.with_switch(|s| s.vtep_info(p.vtep));
            let carried = |vni| p.config.vnis.as_ref().is_none_or(|v| v.contains(&vni));
            PeerInfo {
                host: p.config.name.as_ref().map(|n| n.to_string()),
                underlay_ip: p.config.underlay_ip,
                vxlan_port: p.config.vxlan_port,
                state: "static".into(),
                last_heard_secs: info
                    .as_ref()
                    .and_then(|i| i.last_rx)
                    .map(|t| (now.saturating_duration_since(t).as_secs_f64() * 10.0).round() / 10.0),
                networks: self
                    .networks
                    .values()
                    .filter(|n| carried(n.config.vni))
                    .map(|n| n.config.name.to_string())
                    .collect(),
                macs: info.map_or(0, |i| i.learned),
            }
        });
        static_peers.chain(gossip).collect()
    }

    fn plan_attach(&mut self, raw: &RawPort) -> OpResult<AttachPlan> {
        let (mut record, _) = self.plan(raw, Origin::Runtime, ClaimMode::Preview).map_err(String::from)?;
        let net = &self.networks[record.network.as_str()].config;
        if record.kind != PortKind::Tap && record.host_ifname.is_none() {
            record.host_ifname = Some(attach::fresh_host_ifname());
        }
        let ifname = attach::pick_ifname(&record).map_err(|e| e.to_string())?;
        Ok(AttachPlan {
            network: net.name.to_string(),
            name: record.name.to_string(),
            kind: record.kind.as_str().to_owned(),
            netns: record.netns.clone(),
            ifname: ifname.to_string(),
            host_ifname: record.host_ifname.as_ref().map(|h| h.to_string()),
            mac: record.mac.map(|m| m.to_string()).unwrap_or_default(),
            mtu: net.mtu.get(),
            ip: record.ip,
            prefix_len: net.subnet.map(|s| s.prefix_len()),
            gateway: net.gateway,
            default_route: attach::default_route(net).is_some(),
        })
    }
}

/// Key rotation: `switchctl key ls/add/use/rm`.
impl Daemon {
    /// Every key of every ring, with which hosts (this one included, by
    /// gossip for the others) accept it and seal with it.
    fn key_ls(&self) -> Vec<KeyInfo> {
        let me = self.host.name.to_string();
        let mut rows = Vec::new();
        for (scope, ring) in self.keys.rings() {
            let gossip_scope = scope.gossip_name();
            let hosts: Vec<_> = self.hosts_with_scope(&scope).collect();
            for id in ring.ids() {
                let sending = ring.sending().0 == id;
                let mut accepted_by = vec![me.clone()];
                let mut sending_by = if sending { vec![me.clone()] } else { Vec::new() };
                let mut missing = Vec::new();
                for h in &hosts {
                    match h.keys.get(&gossip_scope) {
                        Some(r) if r.accepted.contains(&id) => {
                            accepted_by.push(h.name.to_string());
                            if r.sending == id {
                                sending_by.push(h.name.to_string());
                            }
                        }
                        _ => missing.push(h.name.to_string()),
                    }
                }
                rows.push(KeyInfo {
                    scope: scope.display_name(),
                    id: id.to_string(),
                    state: if sending { "sending" } else { "accepted" }.into(),
                    accepted_by,
                    sending_by,
                    missing,
                });
            }
        }
        rows
    }

    /// The usable remote hosts that hold (or should hold) `scope`'s ring:
    /// every host for the cluster's, carriers of the network for its own.
    fn hosts_with_scope<'a>(
        &'a self,
        scope: &'a Scope,
    ) -> impl Iterator<Item = &'a switchd_overlay::gossip::table::Host> + 'a {
        self.cluster.table.hosts.values().filter(move |h| {
            h.is_usable()
                && match scope {
                    Scope::Cluster => true,
                    Scope::Network(n) => h.networks.contains(n),
                }
        })
    }

    fn key_add(&mut self, file: &Path, network: Option<&str>) -> OpResult<KeyInfo> {
        let key = Key::load(file).map_err(|e| e.to_string())?;
        let scope = match network {
            None => Scope::Cluster,
            Some(n) => {
                let name = Name::new(n).map_err(|e| format!("network: {e}"))?;
                let own = |c: &NetworkConfig| c.encryption.is_some_and(|e| e.key == KeySource::Own);
                let known_own = self
                    .networks
                    .get(n)
                    .map(|net| own(&net.config))
                    .or_else(|| self.cluster.table.networks.get(&name).map(|c| own(&c.config)));
                match known_own {
                    Some(true) => {}
                    Some(false) => {
                        return Err(format!(
                            "network {n:?} has no key of its own; rotate the cluster key instead (no --network)"
                        ));
                    }
                    None => return Err(format!("no encrypted network {n:?} here or in the cluster")),
                }
                Scope::Network(name)
            }
        };
        let id = self.keys.add(&scope, key)?;
        tracing::info!("key {id} added to the {} key ring", scope.display_name());
        self.after_key_change();
        self.key_ls().into_iter().find(|k| k.id == id.to_string()).ok_or_else(|| "key vanished".into())
    }

    fn key_use(&mut self, id: &str, force: bool) -> OpResult<KeyInfo> {
        let id: KeyId = id.parse()?;
        let scope = self.keys.scope_of(id).ok_or_else(|| format!("no key {id} on this host"))?;
        let gossip_scope = scope.gossip_name();
        let missing: Vec<String> = self
            .hosts_with_scope(&scope)
            .filter(|h| !h.keys.get(&gossip_scope).is_some_and(|r| r.accepted.contains(&id)))
            .map(|h| h.name.to_string())
            .collect();
        if !missing.is_empty() && !force {
            return Err(format!(
                "{} do not accept key {id} yet, so they could not open what this host would seal; \
                 run `switchctl key add FILE` there first (or --force)",
                missing.join(", ")
            ));
        }
        self.keys.use_for_sending(id)?;
        tracing::info!("now sealing with key {id} ({} key ring)", scope.display_name());
        self.after_key_change();
        self.key_ls().into_iter().find(|k| k.id == id.to_string()).ok_or_else(|| "key vanished".into())
    }

    fn key_rm(&mut self, id: &str, force: bool) -> OpResult<String> {
        let id: KeyId = id.parse()?;
        let scope = self.keys.scope_of(id).ok_or_else(|| format!("no key {id} on this host"))?;
        let gossip_scope = scope.gossip_name();
        let still: Vec<String> = self
            .hosts_with_scope(&scope)
            .filter(|h| h.keys.get(&gossip_scope).is_some_and(|r| r.sending == id))
            .map(|h| h.name.to_string())
            .collect();
        if !still.is_empty() && !force {
            return Err(format!(
                "{} still seal with key {id}; run `switchctl key use NEW_ID` there first (or --force)",
                still.join(", ")
            ));
        }
        self.keys.remove(id)?;
        tracing::info!("key {id} removed from the {} key ring; no longer accepted", scope.display_name());
        self.after_key_change();
        Ok(id.to_string())
    }

    /// After a ring changed: the data plane and gossip follow, and a
    /// network refused for want of its key may now be carried.
    fn after_key_change(&mut self) {
        self.adopt_cluster_networks();
        self.sync_vteps();
        self.commit();
    }
}

/// The ring an encrypted network's keys come from.
fn key_scope(net: &NetworkConfig) -> Scope {
    match net.encryption.map(|e| e.key) {
        Some(KeySource::Own) => Scope::Network(net.name.clone()),
        _ => Scope::Cluster,
    }
}

/// Drops by reason: the switch's, and the data plane's (refused sends, and
/// frames it could not send on).
fn drops_map(rx: &Counters, dev: &DeviceStats) -> BTreeMap<String, u64> {
    let mut drops: BTreeMap<String, u64> = rx.drops_by_name().map(|(k, v)| (k.to_owned(), v)).collect();
    let data_plane = [
        (DropReason::TxError, dev.errors),
        (DropReason::TxQueueFull, dev.queue_full),
        (DropReason::OffloadError, dev.offload_errors),
        (DropReason::NoKey, dev.no_key),
    ];
    for (reason, n) in data_plane.into_iter().filter(|(_, n)| *n > 0) {
        *drops.entry(reason.as_str().to_owned()).or_default() += n;
    }
    drops
}

fn join_errors(errors: Vec<switchd_config::FieldError>) -> String {
    errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ")
}

/// Whether a saved endpoint is the one a `[[port]]` entry describes.
fn same_attachment(port: &PortConfig, record: &EndpointRecord) -> bool {
    port.network == record.network
        && match (&port.netns, &port.host_ifname) {
            (Some(ns), _) => record.netns.as_ref() == Some(ns),
            (None, Some(host)) => record.host_ifname.as_ref() == Some(host),
            (None, None) => false,
        }
}

/// A `[[port]]` entry as a connect request.
fn raw_from_port(port: &PortConfig) -> RawPort {
    RawPort {
        network: Some(port.network.to_string()),
        netns: port.netns.clone(),
        name: port.name.as_ref().map(|n| n.to_string()),
        ifname: port.ifname.as_ref().map(|n| n.to_string()),
        ip: port.ip.map(|ip| ip.to_string()),
        mac: port.mac.map(|m| m.to_string()),
        kind: Some(port.kind.as_str().to_owned()),
        host_ifname: port.host_ifname.as_ref().map(|n| n.to_string()),
        dhcp: Some(port.dhcp),
    }
}
