//! The daemon's control plane: networks and endpoints, what `switchctl` and
//! dockerd ask of them, and keeping them across restarts. Frames never pass
//! through here: it adds and removes ports, networks and VTEPs in the
//! [`Dataplane`] and reads its counters.
//!
//! In parts, each owning its state and with its own error type:
//!
//! | file           | owns                                              | commands                    |
//! |----------------|---------------------------------------------------|-----------------------------|
//! | `networks.rs`  | networks, their gateway and host-side ports       | `network create/rm/prune`   |
//! | `endpoints.rs` | endpoints and their ports                         | `network connect/disconnect`|
//! | `addresses.rs` | address blocks claimed, addresses given to dockerd| (IPAM for both above)       |
//! | `keys.rs`      | key rings                                         | `key ls/add/use/rm`         |
//! | `cluster.rs`   | static peers, the gossip peer table, VTEPs        | (gossip)                    |
//! | `docker.rs`    | Docker's networks and pending endpoints           | the driver's requests       |
//! | `gateway.rs`   | routes between networks, published ports          | `route`, `publish`          |
//! | `reports.rs`   | nothing: reads the others                         | `status`, `stats`, `fdb`, `peers`, `ls` |
//!
//! `state.rs` is what is saved (and the journal of operations under way),
//! `ipam.rs` the pure address-block decisions, `system.rs` the trait behind
//! which every netlink and namespace call goes (`attach.rs` does them on
//! the real host), so this logic is unit-tested without root (`tests.rs`).
//!
//! Every operation here is synchronous and may block briefly (netlink,
//! namespace threads): callers run them off the async runtime, on the
//! [`Shared`] daemon: reports read it together, changes take it alone.

mod addresses;
pub mod attach;
mod cluster;
mod docker;
mod endpoints;
pub mod error;
mod gateway;
pub mod ipam;
mod keys;
mod mesh;
mod networks;
mod policy;
mod reload;
mod reports;
pub mod service;
pub mod state;
pub mod system;
#[cfg(test)]
mod tests;
mod trace;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use switchd_config::raw::RawPort;
use switchd_config::{Config, HostConfig, NetworkConfig, PortConfig};
use switchd_crypto::SessionId;

use crate::control::api::{Reply, Request};
use crate::dataplane::{Dataplane, Underlay, WorkerOptions};
use crate::switch::SwitchConfig;
use addresses::{Addresses, ClaimMode};
use cluster::{ClusterState, Reprogram, StaticPeer};
use docker::DockerState;
pub use docker::{Unfound, find_interfaces};
use endpoints::Endpoints;
pub use error::{DaemonError, OpResult};
use gateway::Layer3;
use keys::KeyStore;
use networks::Networks;
use state::{Device, EndpointRecord, Intent, Op, Origin, State};
pub use system::{HostSystem, System};

/// How many times an operation that must wait (an address block being
/// claimed) is tried.
const TRIES: usize = 5;

/// The daemon as the control socket, the Docker plugin, gossip and the
/// housekeeping timer share it: reports and lookups read it together;
/// changes take it alone.
pub type Shared = Arc<RwLock<Daemon>>;

/// The daemon, for reading (a poisoned lock is still the daemon's state:
/// every change leaves it whole before it can panic).
pub fn read(daemon: &Shared) -> RwLockReadGuard<'_, Daemon> {
    daemon.read().unwrap_or_else(|p| p.into_inner())
}

/// The daemon, for a change.
pub fn write(daemon: &Shared) -> RwLockWriteGuard<'_, Daemon> {
    daemon.write().unwrap_or_else(|p| p.into_inner())
}

/// Runs `op` on the daemon on a blocking thread; while it answers
/// `Err(wait)` (an address block being claimed), runs it again after the
/// wait, with the daemon free meanwhile so gossip goes on. Both the control
/// socket and the Docker plugin socket run their requests this way.
pub async fn run_waiting<T: Send + 'static>(
    daemon: &Shared,
    op: impl Fn(&mut Daemon) -> Result<T, Duration> + Send + Sync + 'static,
) -> Result<T, DaemonError> {
    let op = Arc::new(op);
    for _ in 0..TRIES {
        let (daemon, op) = (daemon.clone(), op.clone());
        match tokio::task::spawn_blocking(move || op(&mut write(&daemon))).await {
            Ok(Ok(reply)) => return Ok(reply),
            Ok(Err(wait)) => tokio::time::sleep(wait).await,
            Err(e) => return Err(DaemonError::Internal(e.to_string())),
        }
    }
    Err(DaemonError::GaveUp)
}

/// Runs `op` on the daemon for reading, on a blocking thread.
pub async fn run_reading<T: Send + 'static>(
    daemon: &Shared,
    op: impl FnOnce(&Daemon) -> T + Send + 'static,
) -> Result<T, DaemonError> {
    let daemon = daemon.clone();
    tokio::task::spawn_blocking(move || op(&read(&daemon))).await.map_err(|e| DaemonError::Internal(e.to_string()))
}

/// host.toml's sections that only a restart applies.
#[derive(Debug)]
struct StartSections {
    gossip: Option<switchd_config::GossipConfig>,
    docker: Option<switchd_config::DockerConfig>,
    metrics: Option<switchd_config::MetricsConfig>,
}

#[derive(Debug)]
pub struct Daemon {
    host: HostConfig,
    /// host.toml's ports, to tell at start which saved endpoints it still wants.
    config_ports: Vec<PortConfig>,
    /// Where netlink and namespace work is done.
    system: Arc<dyn System>,
    dataplane: Dataplane,
    /// The control plane's runtime, where published ports and gateways' DNS are served.
    runtime: tokio::runtime::Handle,
    networks: Networks,
    endpoints: Endpoints,
    addresses: Addresses,
    /// The cluster's key ring and those of networks with their own key.
    keys: KeyStore,
    cluster: ClusterState,
    docker: DockerState,
    layer3: Layer3,
    services: service::ServiceState,
    /// The routing mesh's rules, as installed.
    mesh: mesh::MeshState,
    /// When each network's gateway advertises to IPv6 hosts unasked.
    advertising: gateway::Advertising,
    /// Network policies, by name (the data path numbers their rules in this order).
    policies: std::collections::BTreeMap<switchd_config::Name, policy::KnownPolicy>,
    /// The operation under way on the system, saved before its first
    /// system call (the journal: see `state`).
    pending: Vec<Intent>,
    /// This boot's data-plane session (see `switchd_crypto::session`).
    session: SessionId,
    started: Instant,
    /// How many times switchd started on this host, this time included.
    starts: u64,
    /// The file a reload reads again ([`Daemon::set_config_path`]).
    config_path: Option<std::path::PathBuf>,
    /// The sections a reload cannot change, as they were at start.
    started_with: StartSections,
}

impl Daemon {
    /// Starts the data plane on the real host, sets up host.toml's and
    /// saved networks, and reattaches saved and configured endpoints.
    pub fn start(config: Config) -> std::io::Result<Daemon> {
        Daemon::start_with(config, Arc::new(HostSystem::default()))
    }

    /// [`Daemon::start`], doing its system work through `system`.
    pub fn start_with(config: Config, system: Arc<dyn System>) -> std::io::Result<Daemon> {
        for warning in config.warnings() {
            tracing::warn!("{warning}");
        }
        let switch = SwitchConfig::new(config.host.mac_aging_time, config.host.mac_limit);
        // First, so that a state this build cannot read stops it before
        // anything is touched.
        let saved = state::load(&config.host.state_dir)?;
        let session = state::new_session(&config.host.state_dir)?;
        let starts = state::count_start(&config.host.state_dir)?;
        let underlay = match config.host.underlay_ip {
            Some(ip) => {
                Some(Underlay::bind(ip, config.host.vxlan_port, session, config.host.workers).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("underlay {ip}:{}: {e}", config.host.vxlan_port))
                })?)
            }
            None => None,
        };
        let cluster_key = config.gossip.as_ref().map(|g| g.key_file.as_path());
        let keys = KeyStore::open(&config.host.state_dir, cluster_key, &config.network_key_files)?;
        let options = WorkerOptions {
            workers: config.host.workers,
            busy_poll: config.host.busy_poll,
            io_uring: config.host.io_uring,
            crypto_helpers: config.host.crypto_helpers,
        };
        let dataplane = Dataplane::start(switch, options, underlay)?;
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
            system,
            dataplane,
            runtime,
            networks: Networks::default(),
            endpoints: Endpoints::default(),
            addresses: Addresses::new(saved.ipam, saved.docker_reserved, claim_confirm),
            keys,
            cluster: ClusterState::default(),
            docker: DockerState::new(saved.docker_networks),
            layer3: Layer3 { routes, published: Vec::new(), targets: Default::default() },
            services: service::ServiceState::default(),
            mesh: mesh::MeshState::default(),
            advertising: gateway::Advertising::default(),
            policies: Default::default(),
            pending: Vec::new(),
            session,
            started: Instant::now(),
            starts,
            config_path: None,
            started_with: StartSections {
                gossip: config.gossip.clone(),
                docker: config.docker.clone(),
                metrics: config.metrics.clone(),
            },
        };
        let interrupted = daemon.finish_interrupted(saved.pending);
        for peer in config.peers {
            let addr = SocketAddr::new(peer.underlay_ip, peer.vxlan_port);
            let vtep = daemon.dataplane.add_vtep(addr, peer.vnis.clone()).expect("validation refuses duplicate peers");
            let peer = StaticPeer { config: peer, vtep };
            let kind = peer.kind();
            daemon.dataplane.update_switch(|s| s.set_vtep_kind(vtep, kind));
            daemon.cluster.peers.push(peer);
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
            if let Err(e) = daemon.check_new_network(&net) {
                tracing::warn!("saved network {} dropped: {e}", net.name);
                continue;
            }
            daemon.add_network(net, origin);
        }
        // The cluster as last heard, before any container's interface is
        // back: its first ARP after the restart must find its peers.
        if let Some(gossip) = &config.gossip {
            daemon.cluster.kept_members = state::load_peers(&daemon.host.state_dir);
            let kept = &daemon.cluster.kept_members;
            if !kept.is_empty() {
                tracing::info!(
                    "{} hosts known from the last run, used until gossip confirms them (or for {:?})",
                    kept.len(),
                    gossip.failure_timeout
                );
                let timeouts = switchd_overlay::gossip::table::Timeouts::new(gossip.failure_timeout);
                let table = switchd_overlay::gossip::table::PeerTable::build(kept.clone(), timeouts);
                daemon.update_cluster(table, 0);
            }
        }
        daemon.restore_services(config.services, saved.services);
        daemon.restore_policies(config.policies, saved.policies);
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
                Some(device) => self.system.delete(device).map(|()| format!("deleted {device}")),
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

    /// Reattaches saved endpoints host.toml still wants or that were made
    /// at run time, sets aside those that cannot be, and connects host.toml's
    /// new ports.
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
                let made = attach::made_device(&record);
                if let Err(e) = made.map_or(Ok(()), |device| self.system.delete(&device)) {
                    tracing::warn!("{} on {}: {e}", record.name, record.network);
                }
                continue;
            }
            if let Some(slot) = from_config {
                *slot = None;
                record.origin = Origin::Config;
            }
            let Some(net) = self.networks.find(record.network.as_str()) else {
                let reason = format!("network {} no longer exists", record.network);
                orphans.push(state::Orphan { reason, endpoint: record });
                continue;
            };
            let net_config = net.config.clone();
            match self.open_endpoint(record.clone(), &net_config) {
                Ok(()) => {
                    tracing::info!("{} on {}: reattached", record.name, record.network);
                    // What it asked while switchd was down went unanswered: ask again now.
                    if let (Some(ns), Some(ifname)) = (&record.netns, &record.ifname) {
                        match self.system.forget_unresolved_neighbours(ns, ifname) {
                            Ok(0) => {}
                            Ok(n) => {
                                tracing::info!("{} on {}: {n} neighbours to resolve again", record.name, record.network)
                            }
                            Err(e) => {
                                tracing::debug!("{} on {}: neighbours not checked: {e}", record.name, record.network)
                            }
                        }
                    }
                }
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
        let state = State {
            version: 0,
            networks: self.networks.configs_of(Origin::Runtime),
            cluster_networks: self.networks.configs_of(Origin::Cluster),
            endpoints: self.endpoints.records(),
            routes: self.layer3.routes.iter().filter(|(_, o)| **o == Origin::Runtime).map(|(r, _)| r.clone()).collect(),
            published: self
                .layer3
                .published
                .iter()
                .filter(|p| p.origin == Origin::Runtime)
                .map(|p| p.config.clone())
                .collect(),
            ipam: self.addresses.claims().clone(),
            docker_networks: self.docker.networks.clone(),
            docker_reserved: self.addresses.docker_reserved().clone(),
            pending: self.pending.clone(),
            // host.toml's too: at the next start, one no longer in the file
            // is removed for the cluster, and one without a `vip` keeps its.
            services: self.services.known.values().cloned().collect(),
            policies: self.policies.values().cloned().collect(),
        };
        state::save(&self.host.state_dir, &state)
    }

    /// Records an operation before its first system call: if switchd dies
    /// before it is done, the next start finishes it (`finish_interrupted`).
    /// Refused if it cannot be recorded. The save that records the
    /// outcome clears it (`pending.clear()` then `commit` or `save`).
    fn begin(&mut self, op: Op, endpoint: &EndpointRecord, device: Option<Device>) -> OpResult<()> {
        self.pending = vec![Intent { op, endpoint: endpoint.clone(), device }];
        self.try_save().map_err(|source| {
            self.pending.clear();
            DaemonError::Journal { dir: self.host.state_dir.clone(), source }
        })
    }

    /// After a change: saves it, tells the cluster, and reprograms what
    /// depends on local endpoints (neighbour answers, gateways) and keys.
    fn commit(&mut self) {
        self.save();
        self.publish_state();
        self.program_all();
        self.push_keys();
    }

    /// Programs what follows from the endpoints, services and policies
    /// known: VIPs, policy, the routing mesh, neighbour answers, gateways.
    fn program_all(&mut self) {
        self.program(&Reprogram::All);
    }

    /// Programs the data plane after a change; the gossip entries, neighbour
    /// answers and name directories only of the networks in `scope`.
    fn program(&mut self, scope: &Reprogram) {
        self.program_services();
        self.program_policy();
        self.program_mesh();
        self.reprogram(scope);
        self.program_gateways(scope);
    }

    /// Refuses a network (saved, or from the cluster) whose name or VNI
    /// is taken here, or whose key this host lacks.
    fn check_new_network(&self, net: &NetworkConfig) -> OpResult<()> {
        self.networks.check_is_new(net)?;
        Ok(self.check_key_held(net)?)
    }

    /// Where the daemon does its system work, for work done without it
    /// (see [`find_interfaces`]).
    pub fn system(&self) -> Arc<dyn System> {
        self.system.clone()
    }

    /// Where host.toml is, for `switchctl reload` and SIGHUP.
    pub fn set_config_path(&mut self, path: std::path::PathBuf) {
        self.config_path = Some(path);
    }

    /// Stops the data plane and saves. Interfaces stay in their containers,
    /// ready for the next start.
    pub fn shutdown(&mut self) {
        self.save();
        self.dataplane.shutdown();
    }

    /// Answers a control request that only reads; `None` for one that
    /// changes something (see [`Daemon::handle`]).
    pub fn query(&self, request: &Request) -> Option<Reply> {
        let answer = match request {
            Request::Status => value(self.status()),
            Request::NetworkLs => value(self.network_ls()),
            Request::NetworkInspect { name, page } => self.network_inspect(name, page).and_then(value),
            Request::Fdb { network, page } => self.fdb(network.as_deref(), page).and_then(value),
            Request::Trace { trace } => self.trace(trace).and_then(value),
            Request::Stats => value(self.stats()),
            Request::Peers => value(self.peers()),
            Request::KeyLs => value(self.key_ls()),
            Request::RouteLs => value(self.route_ls()),
            Request::PublishLs => value(self.publish_ls()),
            Request::ServiceLs => value(self.service_ls()),
            Request::PolicyLs => value(self.policy_ls()),
            Request::ServiceInspect { name, network } => self.service_inspect(name, network.as_deref()).and_then(value),
            _ => return None,
        };
        Some(reply(answer))
    }

    /// Runs one control request. `Err(wait)`: it cannot be done yet (an
    /// address block being claimed); ask again after `wait`, without
    /// holding the daemon, so gossip goes on meanwhile.
    pub fn handle(&mut self, request: &Request) -> Result<Reply, Duration> {
        if let Some(reply) = self.query(request) {
            return Ok(reply);
        }
        let answer = match request {
            Request::NetworkCreate { network } => self.network_create(network).and_then(value),
            Request::NetworkRm { names } => self.network_rm(names).and_then(value),
            Request::NetworkPrune => value(self.network_prune()),
            Request::NetworkConnect { port } => self.connect(port, Origin::Runtime, ClaimMode::Wait).and_then(value),
            Request::NetworkDisconnect { network, endpoint } => self.disconnect(network, endpoint).and_then(value),
            Request::PlanAttach { port } => self.plan_attach(port).and_then(value),
            Request::KeyAdd { file, network } => answer(self.key_add(file, network.as_deref())),
            Request::KeyUse { id, force } => answer(self.key_use(id, *force)),
            Request::KeyRm { id, force } => answer(self.key_rm(id, *force)),
            Request::RouteAdd { route } => answer(self.route_add(route)),
            Request::RouteRm { route } => answer(self.route_rm(route)),
            Request::PublishAdd { publish } => answer(self.publish_add(publish)),
            Request::PublishRm { host_port, protocol } => self.publish_rm(*host_port, protocol).and_then(value),
            Request::ServicePublish { name, network, port } => {
                self.service_publish(name, network.as_deref(), port).and_then(value)
            }
            Request::NetworkGc { network, keep } => self.network_gc(network, keep).and_then(value),
            Request::ServiceCreate { service } => self.service_create(service).and_then(value),
            Request::ServiceRm { name, network } => self.service_rm(name, network.as_deref()).and_then(value),
            Request::PolicyAdd { policy } => self.policy_add(policy).and_then(value),
            Request::PolicyRm { name } => self.policy_rm(name).and_then(value),
            Request::Reload => self.reload().and_then(value),
            // The control server streams captures itself.
            Request::Capture { .. } | Request::TraceLive { .. } => Err(DaemonError::Trace(
                "a capture or live trace is asked as the first line of a connection of its own".into(),
            )),
            Request::Status
            | Request::NetworkLs
            | Request::NetworkInspect { .. }
            | Request::Fdb { .. }
            | Request::Trace { .. }
            | Request::Stats
            | Request::Peers
            | Request::KeyLs
            | Request::RouteLs
            | Request::PublishLs
            | Request::ServiceLs
            | Request::PolicyLs
            | Request::ServiceInspect { .. } => unreachable!("answered by query"),
        };
        match answer {
            Err(e) if e.wait().is_some() => Err(e.wait().expect("just checked")),
            answer => Ok(reply(answer)),
        }
    }
}

fn value<T: Serialize>(v: T) -> OpResult<Value> {
    serde_json::to_value(v).map_err(|e| DaemonError::Internal(e.to_string()))
}

fn answer<T: Serialize, E: Into<DaemonError>>(result: Result<T, E>) -> OpResult<Value> {
    result.map_err(Into::into).and_then(value)
}

fn reply(answer: OpResult<Value>) -> Reply {
    match answer {
        Ok(v) => Reply::Result(v),
        Err(e) => Reply::Error(e.to_string()),
    }
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
        ip6: port.ip6.map(|ip| ip.to_string()),
        mac: port.mac.map(|m| m.to_string()),
        kind: Some(port.kind.as_str().to_owned()),
        host_ifname: port.host_ifname.as_ref().map(|n| n.to_string()),
        dhcp: Some(port.dhcp),
        service: port.services.first().map(|s| s.to_string()),
        attachment: port.attachment.clone(),
    }
}
