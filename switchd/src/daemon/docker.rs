//! The daemon's side of the Docker network driver (`crate::docker`):
//! Docker's networks and endpoints as switchd's.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use serde_json::{Value, json};
use switchd_config::raw::RawNetwork;
use switchd_config::{IfName, MacAddr, Name, PortKind, Subnet};

use super::Daemon;
use super::addresses::ClaimMode;
use super::endpoints::{Endpoint, EndpointError};
use super::error::{DaemonError, OpResult};
use super::state::{Device, EndpointRecord, Op, Origin};
use crate::docker::{CreateEndpoint, CreateNetwork, Join, Request, RequestAddress, error_reply};
use crate::services::icmpv6::{slaac, slaac_mac};
use crate::switch::PortId;

/// Why a driver operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("pool {pool}: {reason}")]
    BadPool { pool: String, reason: String },
    #[error("{0:?} is not an address")]
    NotAnAddress(String),
    #[error("address: {0}")]
    BadAddress(String),
    #[error("{ip} is not a usable address in {subnet}")]
    Unusable { ip: IpAddr, subnet: Subnet },
    #[error("no switchd network with subnet {0}")]
    NoNetworkWithSubnet(Subnet),
    #[error("network {network} has no IPv6 subnet: it cannot take {ip}")]
    NoSubnet6 { network: String, ip: Ipv6Addr },
    #[error("network {0:.12} is not a switchd network here")]
    UnknownNetwork(String),
    #[error("switchd network {name:?} exists with subnet {theirs}, not {ours}")]
    SubnetDiffers { name: String, theirs: String, ours: String },
    #[error("vni: {0:?} is not a number")]
    BadVni(String),
    #[error("{0}")]
    BadName(String),
    #[error("{0}")]
    BadMac(String),
    #[error("endpoint {0:.12} was not created here")]
    NotCreated(String),
    #[error("endpoint id: {0}")]
    BadEndpointId(String),
    #[error("creating {ifname}: {source}")]
    CreatingTap { ifname: IfName, source: std::io::Error },
    #[error("endpoint {0:.12} is not attached here")]
    NotAttached(String),
    #[error("{0} has no daemon side")]
    NoDaemonSide(String),
}

/// Docker's networks by id (as saved), and endpoints between dockerd's
/// `CreateEndpoint` and `Join`.
#[derive(Debug, Default)]
pub(super) struct DockerState {
    pub networks: DockerNetworks,
    pending: BTreeMap<String, PendingEndpoint>,
}

impl DockerState {
    pub fn new(networks: DockerNetworks) -> Self {
        DockerState { networks, pending: BTreeMap::new() }
    }
}

/// A Docker endpoint whose interface dockerd moved into its container,
/// not yet found there by MAC (see [`Daemon::docker_found`]).
#[derive(Debug, Clone)]
pub struct Unfound {
    port: PortId,
    netns: String,
    mac: MacAddr,
}

/// Looks for the interfaces of `unfound` in their containers, by MAC: the
/// system's work, done without holding the daemon.
pub fn find_interfaces(system: &dyn super::System, unfound: Vec<Unfound>) -> Vec<(Unfound, IfName)> {
    unfound
        .into_iter()
        .filter_map(|u| {
            let ifname = system.find_by_mac(&u.netns, u.mac)?;
            Some((u, ifname))
        })
        .collect()
}

/// An endpoint dockerd created and has not joined yet.
#[derive(Debug, Clone)]
pub(super) struct PendingEndpoint {
    network: String,
    ip: Option<IpAddr>,
    /// Not its MAC's SLAAC address.
    ip6: Option<Ipv6Addr>,
    mac: MacAddr,
}

/// What switchd calls a Docker endpoint: Docker passes no container name.
fn endpoint_name(endpoint_id: &str) -> String {
    format!("docker-{}", endpoint_id.get(..12).unwrap_or(endpoint_id))
}

impl Daemon {
    /// Runs one driver operation; the reply in the protocol's form.
    /// `Err(wait)`: not yet (an address block being claimed); ask again
    /// after `wait`, without holding the daemon.
    pub fn docker(&mut self, request: &Request) -> Result<Value, Duration> {
        let request = request.clone();
        let result = match request {
            Request::RequestAddress(r) => self.docker_request_address(&r),
            Request::ReleaseAddress { pool_id, address } => {
                self.docker_release_address(&pool_id, &address);
                Ok(json!({}))
            }
            Request::CreateNetwork(n) => self.docker_create_network(&n).map(|()| json!({})),
            Request::DeleteNetwork { network_id } => self.docker_delete_network(&network_id).map(|()| json!({})),
            Request::CreateEndpoint(e) => self.docker_create_endpoint(&e),
            Request::DeleteEndpoint { endpoint_id, .. } => {
                self.docker.pending.remove(&endpoint_id);
                Ok(json!({}))
            }
            Request::Join(j) => self.docker_join(&j),
            Request::Leave { endpoint_id, .. } => self.docker_leave(&endpoint_id).map(|()| json!({})),
            other => Err(DockerError::NoDaemonSide(format!("{other:?}")).into()),
        };
        match result {
            Err(e) => match e.wait() {
                Some(wait) => Err(wait),
                None => Ok(error_reply(&e.to_string())),
            },
            Ok(reply) => Ok(reply),
        }
    }

    /// An address from switchd's IPAM (`--ipam-driver switchd`): from a
    /// block this host owns, so two engines on two hosts never give the
    /// same one. It is held until dockerd releases it. The gateway is the
    /// network's, or the subnet's first address.
    fn docker_request_address(&mut self, r: &RequestAddress) -> OpResult<Value> {
        let subnet: Subnet =
            r.pool_id.parse().map_err(|reason| DockerError::BadPool { pool: r.pool_id.clone(), reason })?;
        let with_prefix = |ip: IpAddr| json!({ "Address": format!("{ip}/{}", subnet.prefix_len()), "Data": {} });
        let parse = |a: &str| a.parse::<IpAddr>().map_err(|_| DockerError::NotAnAddress(a.to_owned()));
        if r.is_gateway() {
            let gw = match r.address.as_str() {
                "" => subnet.first_host(),
                a => parse(a)?,
            };
            return Ok(with_prefix(gw));
        }
        if subnet.net().addr().is_ipv6() {
            let address = r.address.as_str();
            let given = (!address.is_empty()).then(|| parse(address)).transpose()?;
            return Ok(with_prefix(IpAddr::V6(self.docker_request_address6(subnet, given)?)));
        }
        let net = self.networks.with_subnet(subnet).ok_or(DockerError::NoNetworkWithSubnet(subnet))?.config.clone();
        let taken = self.taken_addresses(&net);
        let ip = if r.address.is_empty() {
            let picked = self.pick_address(&net, &taken, ClaimMode::Wait)?;
            picked.ok_or_else(|| DaemonError::Internal("no address picked".into()))?
        } else {
            let ip = parse(&r.address)?;
            if !subnet.is_assignable(ip) || Some(ip) == net.gateway {
                return Err(DockerError::Unusable { ip, subnet }.into());
            }
            if taken.contains(&ip) {
                return Err(EndpointError::AddressTaken { ip, network: net.name.to_string() }.into());
            }
            ip
        };
        self.addresses.reserve(subnet, ip);
        self.save();
        Ok(with_prefix(ip))
    }

    /// An IPv6 address: the one asked for (`--ip6`) if no endpoint of the
    /// network holds it, else the SLAAC address of a MAC no endpoint of the
    /// network uses (in the cluster), which the endpoint then gets
    /// (`docker_create_endpoint`), so the address Docker configures is the
    /// one the container's kernel makes anyway. Unique as the MACs are;
    /// nothing to hold or release (`Join` checks a given one again).
    fn docker_request_address6(&mut self, subnet6: Subnet, given: Option<IpAddr>) -> OpResult<Ipv6Addr> {
        let net = self.networks.iter().find(|n| n.config.subnet6 == Some(subnet6));
        let net = net.ok_or(DockerError::NoNetworkWithSubnet(subnet6))?.config.clone();
        let prefix = net.slaac_prefix().expect("a network with a subnet6");
        match given {
            Some(ip) if !subnet6.is_assignable(ip) || net.gateway6 == Some(ip) => {
                Err(DockerError::Unusable { ip, subnet: subnet6 }.into())
            }
            Some(ip) if self.address_in_use(&net.name, ip) => {
                Err(EndpointError::AddressTaken { ip, network: net.name.to_string() }.into())
            }
            Some(IpAddr::V6(ip)) => Ok(ip),
            Some(v4) => Err(DockerError::Unusable { ip: v4, subnet: subnet6 }.into()),
            None => loop {
                let mac = MacAddr::local_from_bits(super::attach::random_u64());
                let ip = slaac(prefix, mac);
                if !self.mac_in_use(&net.name, mac) && !self.address_in_use(&net.name, IpAddr::V6(ip)) {
                    break Ok(ip);
                }
            },
        }
    }

    fn docker_release_address(&mut self, pool_id: &str, address: &str) {
        if let Ok(ip) = address.parse::<IpAddr>()
            && self.addresses.release(pool_id, ip)
        {
            self.save();
        }
    }

    fn docker_network(&self, network_id: &str) -> Result<String, DockerError> {
        self.docker
            .networks
            .get(network_id)
            .map(|n| n.to_string())
            .ok_or_else(|| DockerError::UnknownNetwork(network_id.to_owned()))
    }

    /// `docker network create -d switchd [--subnet] [--gateway] [-o name=]
    /// [-o vni=] [-o encrypted] [-o internal] NAME`. A network of that name
    /// that switchd has already (from another host's engine, by gossip) is
    /// taken as it is, if the subnet agrees.
    fn docker_create_network(&mut self, n: &CreateNetwork) -> OpResult<()> {
        let short = n.network_id.get(..12).unwrap_or(&n.network_id);
        let name = n.option("name").map_or_else(|| format!("docker-{short}"), str::to_owned);
        let ipam = n.ipv4_data.first();
        let subnet = ipam.map(|d| d.pool.clone()).filter(|p| !p.is_empty());
        let gateway = ipam.and_then(|d| d.gateway.split('/').next()).filter(|g| !g.is_empty()).map(str::to_owned);
        let ipam6 = n.ipv6_data.first();
        let subnet6 = ipam6.map(|d| d.pool.clone()).filter(|p| !p.is_empty());
        let gateway6 = ipam6.and_then(|d| d.gateway.split('/').next()).filter(|g| !g.is_empty()).map(str::to_owned);
        if let Some(existing) = self.networks.find(&name) {
            let c = &existing.config;
            for (theirs, ours) in [(c.subnet, &subnet), (c.subnet6, &subnet6)] {
                let theirs = theirs.map(|s| s.to_string());
                if theirs != *ours {
                    return Err(DockerError::SubnetDiffers {
                        name,
                        theirs: theirs.unwrap_or_else(|| "none".into()),
                        ours: ours.clone().unwrap_or_else(|| "none".into()),
                    }
                    .into());
                }
            }
        } else {
            let vni = match n.option("vni") {
                Some(v) => v.parse().map_err(|_| DockerError::BadVni(v.to_owned()))?,
                None => self.free_vni(&n.network_id),
            };
            let flag = |key: &str| n.option(key).map(|v| v != "false");
            let raw = RawNetwork {
                name: Some(name.clone()),
                vni: Some(vni),
                subnet,
                gateway,
                subnet6,
                gateway6,
                ipv6: n.options.get("com.docker.network.enable_ipv6").and_then(Value::as_bool).filter(|&on| on),
                internal: flag("internal"),
                encrypted: flag("encrypted"),
                cipher: n.option("cipher").map(str::to_owned),
                ..RawNetwork::default()
            };
            self.network_create(&raw)?;
        }
        self.docker.networks.insert(n.network_id.clone(), Name::new(&name).map_err(DockerError::BadName)?);
        self.save();
        Ok(())
    }

    /// A VNI no network here or in the cluster uses, picked from the
    /// network id so that it is stable.
    fn free_vni(&self, network_id: &str) -> i64 {
        let seed = u64::from_str_radix(network_id.get(..8).unwrap_or("1"), 16).unwrap_or(1);
        let used = |vni: u32| {
            self.networks.uses_vni(vni) || self.cluster.table.networks.values().any(|n| n.config.vni.get() == vni)
        };
        // Above the range people pick by hand.
        (0..).map(|i| 0x10_0000 + ((seed + i) % 0xE0_0000) as u32).find(|v| !used(*v)).map_or(0x10_0000, i64::from)
    }

    /// dockerd refuses itself while its containers are attached, and goes
    /// on whatever a driver answers; so while containers on other hosts
    /// still use the network, switchd keeps it as the cluster's (it goes
    /// when they are gone) instead of refusing.
    fn docker_delete_network(&mut self, network_id: &str) -> OpResult<()> {
        let name = self.docker_network(network_id)?;
        self.docker.networks.remove(network_id);
        if self.networks.find(&name).is_some_and(|n| n.origin == Origin::Runtime)
            && let Err(e) = self.remove_network(&name)
        {
            tracing::info!("docker removed network {name}, which stays while others use it: {e}");
            if let Some(net) = self.networks.find_mut(&name) {
                net.origin = Origin::Cluster;
            }
        }
        self.commit();
        Ok(())
    }

    /// Docker's IPAM picked the address; switchd refuses one in use
    /// elsewhere in the cluster at `Join`. The MAC is switchd's when
    /// Docker has none.
    fn docker_create_endpoint(&mut self, e: &CreateEndpoint) -> OpResult<Value> {
        let network = self.docker_network(&e.network_id)?;
        let interface = e.interface.as_ref();
        let ip = interface
            .and_then(|i| i.address.split('/').next().filter(|a| !a.is_empty()).map(str::parse::<IpAddr>))
            .transpose()
            .map_err(|err| DockerError::BadAddress(err.to_string()))?;
        let ip6 = interface
            .and_then(|i| i.address_ipv6.split('/').next().filter(|a| !a.is_empty()).map(str::parse::<Ipv6Addr>))
            .transpose()
            .map_err(|err| DockerError::BadAddress(err.to_string()))?;
        let given = interface.map(|i| i.mac_address.as_str()).filter(|m| !m.is_empty());
        let given_mac: Option<MacAddr> = given.map(str::parse).transpose().map_err(DockerError::BadMac)?;
        let net = self.networks.get(&network)?.config.clone();
        let prefix = match (ip6, net.subnet6, net.slaac_prefix()) {
            (Some(ip6), Some(subnet6), _) if !subnet6.is_assignable(IpAddr::V6(ip6)) => {
                return Err(DockerError::Unusable { ip: IpAddr::V6(ip6), subnet: subnet6 }.into());
            }
            (Some(ip6), None, _) => return Err(DockerError::NoSubnet6 { network, ip: ip6 }.into()),
            (_, _, prefix) => prefix,
        };
        // Without --mac-address, the MAC whose SLAAC address Docker's IPAM
        // gave (see `docker_request_address6`), if it is one.
        let slaac_of_ip6 = ip6.and_then(slaac_mac).filter(|m| prefix.map(|p| slaac(p, *m)) == ip6);
        let mac = given_mac.or(slaac_of_ip6).unwrap_or_else(|| {
            ip.map_or_else(|| MacAddr::local_from_bits(super::attach::random_u64()), MacAddr::derived_from_ip)
        });
        // Any other address (Docker's own IPAM, --ip6) is the endpoint's own.
        let ip6 = ip6.filter(|a| prefix.map(|p| slaac(p, mac)) != Some(*a));
        self.docker.pending.insert(e.endpoint_id.clone(), PendingEndpoint { network, ip, ip6, mac });
        Ok(match given {
            Some(_) => json!({ "Interface": {} }),
            None => json!({ "Interface": { "MacAddress": mac.to_string() } }),
        })
    }

    /// Makes the container's interface: a TAP here, with the endpoint's MAC
    /// and the network's MTU, that dockerd moves into the container (whose
    /// namespace does not exist yet at `Join`), renames and addresses.
    /// Persistent: once its name in the container is known
    /// ([`Daemon::docker_found`]), a restarted switchd reopens it
    /// there like any other endpoint's.
    fn docker_join(&mut self, j: &Join) -> OpResult<Value> {
        let pending = self
            .docker
            .pending
            .get(&j.endpoint_id)
            .cloned()
            .ok_or_else(|| DockerError::NotCreated(j.endpoint_id.clone()))?;
        let net = self.networks.get(&pending.network)?;
        let (config, network_id) = (net.config.clone(), net.id);
        let ip6s = crate::services::icmpv6::endpoint_ip6s(&config, Some(pending.mac), pending.ip6);
        if let Some(ip) = pending
            .ip
            .into_iter()
            .chain(ip6s.into_iter().map(IpAddr::V6))
            .find(|ip| self.address_in_use(&config.name, *ip))
        {
            return Err(EndpointError::AddressTaken { ip, network: config.name.to_string() }.into());
        }
        let short = j.endpoint_id.get(..8).unwrap_or(&j.endpoint_id);
        let ifname = IfName::new(&format!("sdd{short}")).map_err(DockerError::BadEndpointId)?;
        let name = Name::new(&endpoint_name(&j.endpoint_id)).map_err(DockerError::BadEndpointId)?;
        let record = EndpointRecord {
            network: config.name.clone(),
            name,
            kind: PortKind::Tap,
            netns: Some(j.sandbox_key.clone()),
            ifname: None,
            host_ifname: None,
            ip: pending.ip,
            ip6: pending.ip6,
            mac: Some(pending.mac),
            owned: false,
            origin: Origin::Runtime,
            dhcp: false,
            docker_endpoint: Some(j.endpoint_id.clone()),
            services: Vec::new(),
            attachment: None,
        };
        let device = Device::Host { ifname: ifname.clone() };
        self.begin(Op::Connect, &record, Some(device.clone()))?;
        let made: OpResult<PortId> = self
            .system
            .host_tap(&ifname, Default::default(), pending.mac, config.mtu.get(), true, self.dataplane.workers())
            .map_err(|source| DockerError::CreatingTap { ifname: ifname.clone(), source }.into())
            .and_then(|tap| {
                let guard = super::gateway::port_guard(&record, &config);
                self.dataplane
                    .add_port(network_id, tap, guard)
                    .map_err(|source| EndpointError::Switching { name: ifname.to_string(), source }.into())
            });
        self.pending.clear();
        let port = match made {
            Ok(port) => port,
            Err(e) => {
                let _ = self.system.delete(&device);
                self.save();
                return Err(e);
            }
        };
        self.endpoints.push(Endpoint { record, port, netns_id: None });
        self.commit();
        // What dockerd configures besides the address: the default route, or
        // on an internal network the routes to routed networks.
        let gateway = config.gateway.filter(|_| !config.internal).map(|g| g.to_string());
        let routes: Vec<Value> = match config.gateway.filter(|_| config.internal) {
            Some(gw) => self
                .routed_subnets(&config.name)
                .into_iter()
                .filter(|s| s.net().addr().is_ipv4() == gw.is_ipv4())
                .map(|s| json!({ "Destination": s.to_string(), "RouteType": 0, "NextHop": gw.to_string() }))
                .collect(),
            None => Vec::new(),
        };
        let mut reply = json!({
            "InterfaceName": { "SrcName": ifname.as_str(), "DstPrefix": "eth" },
            "StaticRoutes": routes,
            "DisableGatewayService": true,
        });
        if let Some(gw) = gateway {
            reply["Gateway"] = json!(gw);
        }
        if let Some(gw6) = config.gateway6.filter(|_| !config.internal && config.subnet6.is_some()) {
            reply["GatewayIPv6"] = json!(gw6.to_string());
        }
        Ok(reply)
    }

    /// Docker's networks with endpoints still named after their id.
    pub fn docker_unnamed(&self) -> Vec<(String, Vec<String>)> {
        let mut unnamed: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for e in self.endpoints.iter() {
            let Some(endpoint_id) = &e.record.docker_endpoint else { continue };
            if e.record.name.as_str() != endpoint_name(endpoint_id) {
                continue;
            }
            let network = self.docker.networks.iter().find(|(_, name)| **name == e.record.network);
            if let Some((network_id, _)) = network {
                unnamed.entry(network_id.clone()).or_default().push(endpoint_id.clone());
            }
        }
        unnamed.into_iter().collect()
    }

    /// Names Docker endpoints after their containers: (endpoint id, name).
    pub fn docker_name_endpoints(&mut self, names: &[(String, String, Vec<String>)]) {
        let mut changed = false;
        for (endpoint_id, container, aliases) in names {
            let Ok(name) = Name::new(container.trim_start_matches('/')) else { continue };
            let is_it = |e: &Endpoint| e.record.docker_endpoint.as_deref() == Some(endpoint_id.as_str());
            let Some(e) = self.endpoints.iter().find(|e| is_it(e)) else { continue };
            let network = e.record.network.clone();
            let services: Vec<Name> = aliases.iter().filter_map(|a| Name::new(a).ok()).take(32).collect();
            if self.endpoints.on(network.as_str()).any(|e| e.record.name == name) {
                tracing::warn!("docker container {name} on {network}: the name is taken; it stays {}", e.record.name);
                continue;
            }
            let record = &mut self.endpoints.find_mut(is_it).expect("found above").record;
            record.name = name;
            record.services = services;
            changed = true;
        }
        if changed {
            self.commit();
        }
    }

    /// The Docker endpoints whose interface has not been found in its
    /// container yet.
    pub fn docker_unfound(&self) -> Vec<Unfound> {
        self.endpoints
            .iter()
            .filter_map(|e| {
                let r = &e.record;
                match (&r.docker_endpoint, &r.ifname, &r.netns, r.mac) {
                    (Some(_), None, Some(netns), Some(mac)) => {
                        Some(Unfound { port: e.port, netns: netns.clone(), mac })
                    }
                    _ => None,
                }
            })
            .collect()
    }

    /// Learns where dockerd put the TAPs of Docker endpoints: their name in
    /// the container, saved so a restart reopens them.
    pub fn docker_found(&mut self, found: Vec<(Unfound, IfName)>) {
        let mut saved = false;
        for (u, ifname) in found {
            let netns_id = self.system.identify_netns(&u.netns).ok();
            let Some(e) = self.endpoints.find_mut(|e| e.port == u.port && e.record.ifname.is_none()) else { continue };
            e.netns_id = netns_id;
            e.record.ifname = Some(ifname);
            saved = true;
        }
        if saved {
            self.save();
        }
    }

    /// Detaches a Docker endpoint and deletes its (persistent) TAP.
    fn docker_leave(&mut self, endpoint_id: &str) -> OpResult<()> {
        let mut endpoint = self
            .endpoints
            .take(|e| e.record.docker_endpoint.as_deref() == Some(endpoint_id))
            .ok_or_else(|| DockerError::NotAttached(endpoint_id.to_owned()))?;
        let r = &mut endpoint.record;
        if let (None, Some(netns), Some(mac)) = (&r.ifname, &r.netns, r.mac) {
            r.ifname = self.system.find_by_mac(netns, mac);
        }
        Ok(self.detach(&endpoint.record, endpoint.port)?)
    }
}

/// Docker's networks by id, as saved.
pub(super) type DockerNetworks = BTreeMap<String, Name>;
