//! Services: a name on a network that a set of backends answers for,
//! cluster-wide, as Docker swarm's services are (without swarm).
//!
//! - **Definitions** come from host.toml (`[[service]]`), `switchctl
//!   service create`, or another host through gossip. Every host publishes
//!   every service it knows; the record of the highest version wins, a
//!   removal included (kept [`TOMBSTONE_TTL`] so that no host that missed
//!   it brings the service back). A service needs no definition to have
//!   backends: a container that joins a name nobody defined (Docker's
//!   `--network-alias`) is found under it by DNS, round robin.
//! - **Backends** are the endpoints that joined the service (`network
//!   connect --service`, `[[port]] service`), on any host: each host
//!   publishes its own with the services they joined.
//! - **Health**: each host checks its own backends (from the network's
//!   gateway stack, through the data path) and publishes those that fail;
//!   every host balances over the rest.
//! - **What it programs**: the data path's VIPs ([`crate::switch::balance`]),
//!   ARP answers for them (the gateway's MAC), and DNS: `NAME` and
//!   `NAME.NETWORK` to the VIP (vip mode) or to every healthy backend
//!   (dnsrr), `tasks.NAME` to every healthy backend.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use switchd_config::raw::RawService;
use switchd_config::{KeyPath, MacAddr, Name, Probe, ServiceConfig, ServiceMode, validate};
use switchd_overlay::gossip::state::ServiceRecord;
use switchd_overlay::gossip::table::supersedes;

use super::addresses::ClaimMode;
use super::error::{DaemonError, Invalid, OpResult};
use super::{Daemon, Origin};
use crate::control::api::{BackendInfo, ServiceInfo};
use crate::switch::balance;

/// How long a removed service is remembered (and published) as removed.
pub const TOMBSTONE_TTL: Duration = Duration::from_secs(3600);
/// Services one host knows at most, removals included.
pub const MAX_SERVICES: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("no service {name:?}{}", on_network(.network))]
    NotFound { name: String, network: Option<String> },
    #[error("service {name:?} already exists on network {network:?}")]
    Exists { name: String, network: String },
    #[error("service {name:?} is on several networks ({networks}): say which with --network")]
    Ambiguous { name: String, networks: String },
    #[error("service {name:?} is defined in host.toml; remove it there, then reload")]
    FromConfig { name: String },
    #[error("this host knows {MAX_SERVICES} services already")]
    TooMany,
    #[error("{vip} is already in use on network {network:?}")]
    VipTaken { vip: IpAddr, network: String },
    #[error("network {network:?} has no address left for a VIP")]
    NoVip { network: String },
}

fn on_network(network: &Option<String>) -> String {
    network.as_ref().map(|n| format!(" on network {n:?}")).unwrap_or_default()
}

/// A service this host knows: the cluster's record, and where this host
/// got it. Saved, host.toml's too (see [`Daemon::apply_config_services`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Known {
    pub network: Name,
    pub name: Name,
    /// `None`: removed, remembered until `version` is [`TOMBSTONE_TTL`] old.
    pub config: Option<ServiceConfig>,
    pub version: u64,
    pub origin: Origin,
}

impl Known {
    fn record(&self) -> ServiceRecord {
        ServiceRecord {
            network: self.network.clone(),
            name: self.name.clone(),
            config: self.config.clone(),
            version: self.version,
        }
    }
}

/// The health of one local backend for one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub up: bool,
    /// Results in a row that disagree with `up`.
    pub against: u32,
    pub next_check: Instant,
    /// Why the last check failed.
    pub last_error: Option<String>,
}

/// (network, service, backend MAC).
pub type HealthKey = (Name, Name, MacAddr);

#[derive(Debug, Default)]
pub(super) struct ServiceState {
    pub known: BTreeMap<(Name, Name), Known>,
    pub health: HashMap<HealthKey, Health>,
}

/// One health check to run now: from the network's gateway stack (its
/// namespace at `netns`) to `addr`.
#[derive(Debug, Clone)]
pub struct DueCheck {
    pub key: HealthKey,
    pub netns: String,
    pub addr: std::net::SocketAddr,
    pub probe: Probe,
    pub timeout: Duration,
}

/// A backend as services see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Backend {
    pub name: Name,
    pub ip: Option<IpAddr>,
    /// Its IPv6 address, on a network with a subnet6.
    pub ip6: Option<Ipv6Addr>,
    pub mac: MacAddr,
    /// `None`: this host.
    pub host: Option<Name>,
    pub up: bool,
}

/// A VIP-mode service's VIPs: IPv4, IPv6, or both.
pub(super) fn vips_of(c: &ServiceConfig) -> Vec<IpAddr> {
    match c.mode {
        ServiceMode::Vip => c.vip.into_iter().chain(c.vip6.map(IpAddr::V6)).collect(),
        ServiceMode::Dnsrr => Vec::new(),
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Daemon {
    /// The live services on `network`.
    pub(super) fn services_on<'a>(&'a self, network: &'a str) -> impl Iterator<Item = (&'a Name, &'a ServiceConfig)> {
        self.services
            .known
            .values()
            .filter(move |k| k.network.as_str() == network)
            .filter_map(|k| Some((&k.name, k.config.as_ref()?)))
    }

    /// Every backend of service `name` on `network`, here and elsewhere.
    pub(super) fn backends_of(&self, network: &Name, name: &Name) -> Vec<Backend> {
        let mut backends = Vec::new();
        let Some(net) = self.networks.find(network.as_str()) else { return backends };
        let ip6 = |mac, given| crate::services::icmpv6::endpoint_ip6(&net.config, Some(mac), given);
        for e in self.endpoints.on(network.as_str()).filter(|e| e.record.services.contains(name)) {
            let Some(mac) = e.record.mac else { continue };
            let up = self.services.health.get(&(network.clone(), name.clone(), mac)).is_none_or(|h| h.up);
            let (ip, ip6) = (e.record.ip, ip6(mac, e.record.ip6));
            backends.push(Backend { name: e.record.name.clone(), ip, ip6, mac, host: None, up });
        }
        for (host, e) in self.cluster.table.endpoints_on(network) {
            if e.services.contains(name) {
                let up = !e.down.contains(name);
                backends.push(Backend {
                    name: e.name.clone(),
                    ip: e.ip,
                    ip6: ip6(e.mac, e.ip6),
                    mac: e.mac,
                    host: Some(host.name.clone()),
                    up,
                });
            }
        }
        backends
    }

    /// The services local endpoint `mac` on `network` fails the health check of.
    pub(super) fn down_services(&self, network: &Name, mac: MacAddr) -> Vec<Name> {
        let mut down: Vec<Name> = self
            .services
            .health
            .iter()
            .filter(|((n, _, m), h)| n == network && *m == mac && !h.up)
            .map(|((_, s, _), _)| s.clone())
            .collect();
        down.sort();
        down
    }

    /// The names DNS answers for services on `network`, with their
    /// addresses, and whether the answer rotates: `NAME` (and the caller
    /// adds `NAME.NETWORK`) and `tasks.NAME`.
    pub(super) fn service_names(&self, network: &Name) -> Vec<(String, Vec<IpAddr>, bool)> {
        let mut names: BTreeMap<Name, Option<&ServiceConfig>> = BTreeMap::new();
        for (name, config) in self.services_on(network.as_str()) {
            names.insert(name.clone(), Some(config));
        }
        // Names joined but never defined: Docker's aliases, round robin.
        let joined = self.endpoints.on(network.as_str()).flat_map(|e| e.record.services.iter());
        let remote = self.cluster.table.endpoints_on(network).flat_map(|(_, e)| e.services.iter());
        for name in joined.chain(remote) {
            names.entry(name.clone()).or_insert(None);
        }
        let mut out = Vec::new();
        for (name, config) in names {
            // Both families: A and AAAA.
            let healthy: Vec<IpAddr> = self
                .backends_of(network, &name)
                .into_iter()
                .filter(|b| b.up)
                .flat_map(|b| b.ip.into_iter().chain(b.ip6.map(IpAddr::V6)))
                .collect();
            match config.map(vips_of) {
                Some(vips) if !vips.is_empty() => out.push((name.to_string(), vips, false)),
                _ => out.push((name.to_string(), healthy.clone(), true)),
            }
            out.push((format!("tasks.{name}"), healthy, true));
        }
        out
    }

    /// The VIPs of `network` (both families), answered by ARP and
    /// neighbour discovery with the gateway's MAC.
    pub(super) fn vips_on(&self, network: &str) -> Vec<IpAddr> {
        self.services_on(network).flat_map(|(_, c)| vips_of(c)).collect()
    }

    /// The VIPs (both families) of services on `network`, known here or
    /// published by others: addresses IPAM must not give out.
    pub(super) fn reserved_vips(&self, network: &Name) -> Vec<IpAddr> {
        let known = self.services.known.values().filter(|k| &k.network == network).filter_map(|k| k.config.as_ref());
        let cluster = self.cluster.table.services.values().filter(|r| &r.network == network);
        known.chain(cluster.filter_map(|r| r.config.as_ref())).flat_map(vips_of).collect()
    }

    /// Programs every network's VIPs into the data path.
    pub(super) fn program_services(&self) {
        for net in self.networks.iter() {
            let mut vips = Vec::new();
            for (name, config) in self.services_on(net.config.name.as_str()) {
                if config.mode != ServiceMode::Vip {
                    continue;
                }
                // Each VIP balances over the backends' addresses of its family.
                let backends: Vec<balance::Backend> = self
                    .backends_of(&net.config.name, name)
                    .into_iter()
                    .filter(|b| b.up)
                    .flat_map(|b| {
                        let v4 = b.ip.filter(IpAddr::is_ipv4);
                        v4.into_iter().chain(b.ip6.map(IpAddr::V6)).map(move |ip| balance::Backend::new(ip, b.mac))
                    })
                    .collect();
                let ports: Vec<balance::ServicePort> = config
                    .ports
                    .iter()
                    .map(|p| balance::ServicePort {
                        protocol: match p.protocol {
                            switchd_config::Protocol::Tcp => switchd_wire::ip::Protocol::Tcp,
                            switchd_config::Protocol::Udp => switchd_wire::ip::Protocol::Udp,
                        },
                        port: p.port,
                    })
                    .collect();
                for vip in vips_of(config) {
                    vips.push(balance::Service::new(vip, ports.clone(), backends.clone()));
                }
            }
            let id = net.id;
            self.dataplane.update_switch(|s| s.set_services(id, vips.clone()));
        }
    }

    /// After a change of services, backends or their health: the data
    /// path, ARP, DNS and the cluster hear of it.
    pub(super) fn services_changed(&mut self) {
        self.program_all();
        self.publish_state();
    }

    /// The services to publish: every one known, removals while remembered.
    pub(super) fn published_services(&self) -> Vec<ServiceRecord> {
        self.services.known.values().map(Known::record).collect()
    }

    /// Takes the cluster's newer records, and forgets old removals.
    /// Whether anything changed.
    pub(super) fn adopt_cluster_services(&mut self) -> bool {
        let mut changed = false;
        for (key, record) in &self.cluster.table.services {
            let ours = self.services.known.get(key);
            if ours.is_some_and(|k| !supersedes(record, &k.record())) {
                continue;
            }
            if ours.is_none() && (record.config.is_none() || self.services.known.len() >= MAX_SERVICES) {
                continue;
            }
            if ours.is_some_and(|k| k.origin == Origin::Config) && record.config.is_some() {
                // host.toml's definition stands here; the cluster's newer one is logged.
                continue;
            }
            tracing::info!(
                "service {} on {}: {} from the cluster",
                record.name,
                record.network,
                if record.config.is_some() { "defined" } else { "removed" }
            );
            self.services.known.insert(
                key.clone(),
                Known {
                    network: record.network.clone(),
                    name: record.name.clone(),
                    config: record.config.clone(),
                    version: record.version,
                    origin: Origin::Cluster,
                },
            );
            changed = true;
        }
        let now = now_ms();
        let ttl = TOMBSTONE_TTL.as_millis() as u64;
        let before = self.services.known.len();
        self.services.known.retain(|_, k| k.config.is_some() || now.saturating_sub(k.version) < ttl);
        changed |= self.services.known.len() != before;
        if changed {
            self.save();
        }
        changed
    }

    /// Loads host.toml's and saved services at start.
    pub(super) fn restore_services(&mut self, config: Vec<ServiceConfig>, saved: Vec<Known>) {
        for k in saved {
            self.services.known.insert((k.network.clone(), k.name.clone()), k);
        }
        self.apply_config_services(config);
    }

    /// Makes host.toml's `[[service]]`s the services of origin config, at
    /// start and at a reload: a new or changed one defined anew (a service
    /// without a `vip` keeps the one IPAM gave it), one no longer there
    /// removed for the cluster. What changed, as "added ..." and
    /// "removed ..." lines.
    pub(super) fn apply_config_services(&mut self, config: Vec<ServiceConfig>) -> (Vec<String>, Vec<String>) {
        let (mut added, mut removed) = (Vec::new(), Vec::new());
        for k in self.services.known.values_mut() {
            let listed = config.iter().any(|c| (&c.network, &c.name) == (&k.network, &k.name));
            if k.origin == Origin::Config && k.config.is_some() && !listed {
                k.config = None;
                k.version = now_ms().max(k.version + 1);
                k.origin = Origin::Runtime;
                removed.push(format!("service {} on {}", k.name, k.network));
            }
        }
        for mut c in config {
            let key = (c.network.clone(), c.name.clone());
            let old = self.services.known.get(&key);
            if c.mode == ServiceMode::Vip && c.vip.is_none() {
                c.vip = old.and_then(|k| k.config.as_ref()?.vip);
            }
            if c.mode == ServiceMode::Vip && c.vip6.is_none() {
                c.vip6 = old.and_then(|k| k.config.as_ref()?.vip6);
            }
            if old.is_some_and(|k| k.origin == Origin::Config && k.config.as_ref() == Some(&c)) {
                continue;
            }
            let version = now_ms().max(old.map_or(0, |k| k.version + 1));
            if let Err(e) = self.give_vips(&mut c, ClaimMode::Now, false) {
                tracing::error!("[[service]] {} on {}: {e}", c.name, c.network);
                continue;
            }
            added.push(format!("service {} on {}", c.name, c.network));
            let known = Known {
                network: c.network.clone(),
                name: c.name.clone(),
                config: Some(c),
                version,
                origin: Origin::Config,
            };
            self.services.known.insert(key, known);
        }
        (added, removed)
    }

    /// Gives a VIP-mode service the VIPs it was not given: an IPv4 one
    /// from IPAM on a network with a subnet, an IPv6 one on a network with
    /// a subnet6. With `check`, one it was given must be free (a new
    /// service's; host.toml's keep theirs, which are reserved already).
    fn give_vips(&mut self, c: &mut ServiceConfig, mode: ClaimMode, check: bool) -> Result<(), DaemonError> {
        if c.mode != ServiceMode::Vip {
            return Ok(());
        }
        let net = self.networks.get(c.network.as_str())?.config.clone();
        let network = net.name.to_string();
        c.vip = match c.vip {
            Some(vip) if check && self.taken_addresses(&net).contains(&vip) => {
                return Err(ServiceError::VipTaken { vip, network }.into());
            }
            None if net.subnet.is_some() => Some(self.pick_vip(&c.network, mode)?),
            given => given,
        };
        c.vip6 = match (c.vip6, net.slaac_prefix()) {
            (Some(vip6), _) if check && self.address_in_use(&net.name, IpAddr::V6(vip6)) => {
                return Err(ServiceError::VipTaken { vip: IpAddr::V6(vip6), network }.into());
            }
            (None, Some(prefix)) => Some(self.pick_vip6(&net.name, prefix)),
            (given, _) => given,
        };
        Ok(())
    }

    /// A free IPv6 VIP in the network's /64: a random interface
    /// identifier, never one of the EUI-64 form (..ff:fe..) a SLAAC
    /// address has, so no container can come to hold it.
    fn pick_vip6(&self, network: &Name, prefix: Ipv6Addr) -> Ipv6Addr {
        loop {
            let mut o = prefix.octets();
            o[8..].copy_from_slice(&super::attach::random_u64().to_be_bytes());
            let vip6 = Ipv6Addr::from(o);
            if crate::services::icmpv6::slaac_mac(vip6).is_none() && !self.address_in_use(network, IpAddr::V6(vip6)) {
                return vip6;
            }
        }
    }

    /// A free address of `network` for a VIP.
    fn pick_vip(&mut self, network: &Name, mode: ClaimMode) -> Result<IpAddr, DaemonError> {
        let net = self.networks.get(network.as_str())?.config.clone();
        let taken = self.taken_addresses(&net);
        match self.pick_address(&net, &taken, mode)? {
            Some(ip) => Ok(ip),
            None => Err(ServiceError::NoVip { network: network.to_string() }.into()),
        }
    }

    /// `service create`.
    pub fn service_create(&mut self, raw: &RawService) -> OpResult<ServiceInfo> {
        let mut config = validate::service(raw, &self.networks.configs(), &KeyPath::root()).map_err(Invalid::from)?;
        let key = (config.network.clone(), config.name.clone());
        let old = self.services.known.get(&key).cloned();
        if old.as_ref().is_some_and(|k| k.config.is_some()) {
            return Err(
                ServiceError::Exists { name: config.name.to_string(), network: config.network.to_string() }.into()
            );
        }
        if old.is_none() && self.services.known.len() >= MAX_SERVICES {
            return Err(ServiceError::TooMany.into());
        }
        self.give_vips(&mut config, ClaimMode::Wait, true)?;
        let version = now_ms().max(old.map_or(0, |k| k.version + 1));
        self.services.known.insert(
            key.clone(),
            Known {
                network: config.network.clone(),
                name: config.name.clone(),
                config: Some(config),
                version,
                origin: Origin::Runtime,
            },
        );
        self.save();
        self.services_changed();
        self.service_inspect(key.1.as_str(), Some(key.0.as_str()))
    }

    /// `service rm`: removed cluster-wide.
    pub fn service_rm(&mut self, name: &str, network: Option<&str>) -> OpResult<ServiceInfo> {
        let key = self.find_service(name, network)?;
        let known = self.services.known.get_mut(&key).expect("found");
        if known.origin == Origin::Config {
            return Err(ServiceError::FromConfig { name: name.to_owned() }.into());
        }
        let info = self.service_inspect(name, Some(key.0.as_str()))?;
        let known = self.services.known.get_mut(&key).expect("found");
        known.config = None;
        known.version = now_ms().max(known.version + 1);
        known.origin = Origin::Runtime;
        self.services.health.retain(|(n, s, _), _| (n, s) != (&key.0, &key.1));
        self.save();
        self.services_changed();
        Ok(info)
    }

    /// The live service `name` (on `network`, or the only network that has one).
    pub(super) fn find_service(&self, name: &str, network: Option<&str>) -> OpResult<(Name, Name)> {
        let matches: Vec<&(Name, Name)> = self
            .services
            .known
            .iter()
            .filter(|(_, k)| k.config.is_some() && k.name.as_str() == name)
            .filter(|(_, k)| network.is_none_or(|n| k.network.as_str() == n))
            .map(|(key, _)| key)
            .collect();
        match matches[..] {
            [one] => Ok(one.clone()),
            [] => Err(ServiceError::NotFound { name: name.to_owned(), network: network.map(str::to_owned) }.into()),
            _ => Err(ServiceError::Ambiguous {
                name: name.to_owned(),
                networks: matches.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", "),
            }
            .into()),
        }
    }

    fn service_info(&self, k: &Known, config: &ServiceConfig) -> ServiceInfo {
        let backends = self
            .backends_of(&k.network, &k.name)
            .into_iter()
            .map(|b| {
                let health = self.services.health.get(&(k.network.clone(), k.name.clone(), b.mac));
                BackendInfo {
                    name: b.name.to_string(),
                    ip: b.ip,
                    mac: b.mac.to_string(),
                    host: b.host.map_or_else(|| self.host.name.to_string(), |h| h.to_string()),
                    state: match (config.health.is_some(), b.up) {
                        (false, _) => "unchecked",
                        (true, true) => "healthy",
                        (true, false) => "unhealthy",
                    }
                    .to_owned(),
                    last_error: health.and_then(|h| h.last_error.clone()),
                }
            })
            .collect();
        ServiceInfo {
            name: k.name.to_string(),
            network: k.network.to_string(),
            mode: config.mode.as_str().to_owned(),
            vip: config.vip,
            vip6: config.vip6,
            ports: config.ports.iter().map(|p| p.to_string()).collect(),
            publish: config.publish.iter().map(|p| p.to_string()).collect(),
            health: config
                .health
                .as_ref()
                .map(|h| format!("{} every {:?}, {} in a row", h.probe, h.interval, h.threshold)),
            origin: k.origin.as_str().to_owned(),
            backends,
        }
    }

    /// `service ls`: defined services, then names joined but not defined.
    pub fn service_ls(&self) -> Vec<ServiceInfo> {
        let mut out: Vec<ServiceInfo> =
            self.services.known.values().filter_map(|k| Some(self.service_info(k, k.config.as_ref()?))).collect();
        for net in self.networks.iter() {
            for (name, ..) in self.service_names(&net.config.name) {
                let Ok(name) = Name::new(&name) else { continue };
                if name.as_str().starts_with("tasks.")
                    || self.services.known.contains_key(&(net.config.name.clone(), name.clone()))
                {
                    continue;
                }
                let alias = ServiceConfig {
                    network: net.config.name.clone(),
                    name: name.clone(),
                    mode: ServiceMode::Dnsrr,
                    vip: None,
                    vip6: None,
                    ports: Vec::new(),
                    health: None,
                    publish: Vec::new(),
                };
                let k =
                    Known { network: net.config.name.clone(), name, config: None, version: 0, origin: Origin::Runtime };
                let mut info = self.service_info(&k, &alias);
                info.origin = "alias".into();
                out.push(info);
            }
        }
        out
    }

    /// `service inspect`: a defined service, or else a name joined
    /// without a definition (an alias).
    pub fn service_inspect(&self, name: &str, network: Option<&str>) -> OpResult<ServiceInfo> {
        match self.find_service(name, network) {
            Ok(key) => {
                let k = &self.services.known[&key];
                Ok(self.service_info(k, k.config.as_ref().expect("live")))
            }
            Err(e) => self
                .service_ls()
                .into_iter()
                .find(|s| s.origin == "alias" && s.name == name && network.is_none_or(|n| s.network == n))
                .ok_or(e),
        }
    }

    /// The health checks due now, each scheduled again one interval later.
    /// Backends that left are forgotten.
    pub fn due_health_checks(&mut self, now: Instant) -> Vec<DueCheck> {
        let mut due = Vec::new();
        let mut wanted = std::collections::HashSet::new();
        let checked: Vec<(Name, Name, ServiceConfig)> = self
            .services
            .known
            .values()
            .filter_map(|k| Some((k.network.clone(), k.name.clone(), k.config.clone()?)))
            .filter(|(.., c)| c.health.is_some())
            .collect();
        for (network, name, config) in checked {
            let health = config.health.as_ref().expect("filtered");
            let Some(port) = config.ports.iter().find(|p| p.protocol == switchd_config::Protocol::Tcp) else {
                continue;
            };
            let Some(net) = self.networks.find(network.as_str()) else { continue };
            let Some(netns) = net.stack.as_ref().map(|(s, _)| s.netns_path()) else { continue };
            let net = net.config.clone();
            for e in self.endpoints.on(network.as_str()).filter(|e| e.record.services.contains(&name)) {
                // Over IPv4, or over IPv6 on an IPv6-only network.
                let ip = e.record.ip.or_else(|| e.record.ip6(&net).map(IpAddr::V6));
                let (Some(mac), Some(ip)) = (e.record.mac, ip) else { continue };
                let key = (network.clone(), name.clone(), mac);
                wanted.insert(key.clone());
                let h = self.services.health.entry(key.clone()).or_insert(Health {
                    up: true,
                    against: 0,
                    next_check: now,
                    last_error: None,
                });
                if h.next_check <= now {
                    h.next_check = now + health.interval;
                    due.push(DueCheck {
                        key,
                        netns: netns.clone(),
                        addr: std::net::SocketAddr::new(ip, port.port),
                        probe: health.probe.clone(),
                        timeout: (health.interval / 2).max(Duration::from_millis(100)),
                    });
                }
            }
        }
        let before = self.services.health.len();
        self.services.health.retain(|k, _| wanted.contains(k));
        if self.services.health.len() != before {
            self.services_changed();
        }
        due
    }

    /// A check's result: a backend goes down after `threshold` failures in
    /// a row, and up again after as many successes.
    pub fn health_result(&mut self, key: &HealthKey, result: Result<(), String>) {
        let threshold = self
            .services
            .known
            .get(&(key.0.clone(), key.1.clone()))
            .and_then(|k| k.config.as_ref()?.health.as_ref().map(|h| h.threshold))
            .unwrap_or(1);
        let Some(h) = self.services.health.get_mut(key) else { return };
        let ok = result.is_ok();
        if let Err(e) = result {
            h.last_error = Some(e);
        }
        if ok == h.up {
            h.against = 0;
            return;
        }
        h.against += 1;
        if h.against < threshold {
            return;
        }
        h.up = ok;
        h.against = 0;
        let state = if ok { "healthy again" } else { "unhealthy" };
        tracing::warn!(
            "service {} on {}: backend {} {state}{}",
            key.1,
            key.0,
            key.2,
            h.last_error.as_ref().filter(|_| !ok).map(|e| format!(" ({e})")).unwrap_or_default()
        );
        self.services_changed();
    }
}

/// Runs one health check (on the control plane's runtime): a TCP
/// connection from the gateway stack, and for `http:` a `GET` whose
/// status is 2xx or 3xx, all within the timeout.
pub async fn check(c: DueCheck) -> (HealthKey, Result<(), String>) {
    let result = match tokio::time::timeout(c.timeout, probe(&c)).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {:?}", c.timeout)),
    };
    (c.key, result)
}

async fn probe(c: &DueCheck) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = crate::io::gateway::connect_from(&c.netns, c.addr).await.map_err(|e| format!("connect: {e}"))?;
    let Probe::Http { path } = &c.probe else { return Ok(()) };
    let request = format!("GET {path} HTTP/1.0\r\nHost: {}\r\nUser-Agent: switchd-health\r\n\r\n", c.addr.ip());
    stream.write_all(request.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
    let mut head = [0u8; 16];
    let mut got = 0;
    while got < 12 {
        let n = stream.read(&mut head[got..]).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let status =
        std::str::from_utf8(&head[..got]).ok().and_then(|s| s.split(' ').nth(1)).and_then(|s| s.parse::<u16>().ok());
    match status {
        Some(s) if (200..400).contains(&s) => Ok(()),
        Some(s) => Err(format!("HTTP status {s}")),
        None => Err("no HTTP status line".into()),
    }
}
