//! Endpoints: containers' interfaces and host interfaces switched into a
//! network. `switchctl network connect/disconnect`, `script attach`'s
//! plan, and detaching the endpoints of containers that went away.
//!
//! A connect is journaled before its first system call and a disconnect
//! before its last (see `state`), so a crash between any two leaves
//! nothing the next start cannot finish.

use std::io;
use std::net::IpAddr;

use switchd_config::raw::RawPort;
use switchd_config::{IfName, KeyPath, MacAddr, Name, NetworkConfig, PortKind, validate};

use super::Daemon;
use super::addresses::ClaimMode;
use super::attach::{self, AttachError, Attachment};
use super::error::{Invalid, OpResult};
use super::state::{EndpointRecord, Intent, Op, Origin};
use crate::control::api::{AttachPlan, EndpointInfo};
use crate::io::netns::{NetnsError, NetnsId};
use crate::switch::PortId;

/// Why an endpoint was not connected or disconnected.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Attach(#[from] AttachError),
    #[error("name: {0}")]
    BadName(String),
    #[error("container {container:?} is already connected to network {network:?}{}", as_ifname(.ifname))]
    AlreadyConnected { container: String, network: String, ifname: Option<IfName> },
    #[error("name {name:?} is already used on network {network:?}")]
    NameTaken { name: String, network: String },
    #[error("host interface {host} is already switched for {by:?}")]
    HostInterfaceTaken { host: IfName, by: String },
    #[error("{ifname} in netns {netns:?} is already attached")]
    InterfaceTaken { ifname: IfName, netns: String },
    #[error("{mac} is already in use on network {network:?}")]
    MacTaken { mac: MacAddr, network: String },
    #[error("{ip} is already in use on network {network:?}")]
    AddressTaken { ip: IpAddr, network: String },
    /// The data plane did not take the device.
    #[error("switching {name}: {source}")]
    Switching { name: String, source: io::Error },
    #[error("no endpoint {endpoint:?} on network {network:?}")]
    NotFound { endpoint: String, network: String },
    /// The port is gone from the switch, but its device stayed.
    #[error("detached, but {0}")]
    NotDeleted(AttachError),
}

fn as_ifname(ifname: &Option<IfName>) -> String {
    ifname.as_ref().map(|i| format!(" (as {i})")).unwrap_or_default()
}

#[derive(Debug)]
pub(super) struct Endpoint {
    pub record: EndpointRecord,
    pub port: PortId,
    pub netns_id: Option<NetnsId>,
}

impl Endpoint {
    /// How `fdb` and `stats` name the port: `web:eth0`, or the host interface.
    pub fn port_label(&self) -> String {
        match (&self.record.host_ifname, &self.record.ifname) {
            (Some(host), _) => host.to_string(),
            (None, Some(ifname)) => format!("{}:{ifname}", self.record.name),
            (None, None) => self.record.name.to_string(),
        }
    }

    pub fn info(&self, host: &str, net: &NetworkConfig) -> EndpointInfo {
        let r = &self.record;
        EndpointInfo {
            name: r.name.to_string(),
            network: r.network.to_string(),
            ip: r.ip,
            ip6: r.ip6(net),
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

/// Every endpoint on this host, in the order they were attached.
#[derive(Debug, Default)]
pub(super) struct Endpoints(Vec<Endpoint>);

impl Endpoints {
    pub fn iter(&self) -> impl Iterator<Item = &Endpoint> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn on<'a>(&'a self, network: &'a str) -> impl Iterator<Item = &'a Endpoint> + 'a {
        self.0.iter().filter(move |e| e.record.network.as_str() == network)
    }

    pub fn by_port(&self, port: PortId) -> Option<&Endpoint> {
        self.0.iter().find(|e| e.port == port)
    }

    /// Whether an endpoint is left in the namespace `netns`.
    pub fn in_netns(&self, netns: &str) -> bool {
        self.0.iter().any(|e| e.record.netns.as_deref() == Some(netns))
    }

    pub fn records(&self) -> Vec<EndpointRecord> {
        self.0.iter().map(|e| e.record.clone()).collect()
    }

    pub fn push(&mut self, endpoint: Endpoint) -> &Endpoint {
        self.0.push(endpoint);
        self.0.last().expect("just pushed")
    }

    /// Takes out the first endpoint `pick` chooses.
    pub fn take(&mut self, pick: impl Fn(&Endpoint) -> bool) -> Option<Endpoint> {
        let index = self.0.iter().position(pick)?;
        Some(self.0.remove(index))
    }

    pub fn find_mut(&mut self, pick: impl Fn(&Endpoint) -> bool) -> Option<&mut Endpoint> {
        self.0.iter_mut().find(|e| pick(e))
    }

    /// Refuses a new endpoint that would share what must be one
    /// endpoint's: a container's place on a network, a name on a network,
    /// a host interface, an interface in a namespace, a MAC on a network.
    fn check_new(
        &self,
        record: &EndpointRecord,
        netns_id: Option<NetnsId>,
        mac: Option<MacAddr>,
    ) -> Result<(), EndpointError> {
        let network = record.network.as_str();
        let on_net: Vec<&Endpoint> = self.on(network).collect();
        if let Some(e) = on_net.iter().find(|e| netns_id.is_some() && e.netns_id == netns_id) {
            return Err(EndpointError::AlreadyConnected {
                container: e.record.name.to_string(),
                network: network.to_owned(),
                ifname: e.record.ifname.clone(),
            });
        }
        if on_net.iter().any(|e| e.record.name == record.name) {
            return Err(EndpointError::NameTaken { name: record.name.to_string(), network: network.to_owned() });
        }
        if let Some(host) = &record.host_ifname
            && let Some(e) = self.0.iter().find(|e| e.record.host_ifname.as_ref() == Some(host))
        {
            return Err(EndpointError::HostInterfaceTaken { host: host.clone(), by: e.record.name.to_string() });
        }
        if let (Some(ns_id), Some(ifname)) = (netns_id, &record.ifname)
            && self.0.iter().any(|e| e.netns_id == Some(ns_id) && e.record.ifname.as_ref() == Some(ifname))
        {
            return Err(EndpointError::InterfaceTaken {
                ifname: ifname.clone(),
                netns: record.netns.clone().unwrap_or_default(),
            });
        }
        if let Some(mac) = mac
            && on_net.iter().any(|e| e.record.mac == Some(mac))
        {
            return Err(EndpointError::MacTaken { mac, network: network.to_owned() });
        }
        Ok(())
    }
}

impl Daemon {
    /// Validates a connect request and works out its endpoint: name, address
    /// and MAC, refusing duplicates. Nothing is created yet.
    fn plan_endpoint(&mut self, raw: &RawPort, origin: Origin, mode: ClaimMode) -> OpResult<EndpointRecord> {
        let port = validate::port(raw, &self.networks.configs(), &KeyPath::root()).map_err(Invalid::from)?;
        let net = self.networks.get(port.network.as_str())?.config.clone();
        let netns_id =
            port.netns.as_deref().map(|ns| self.system.identify_netns(ns)).transpose().map_err(EndpointError::from)?;
        let name = Name::new(&port.display_name().unwrap_or_default()).map_err(EndpointError::BadName)?;
        let mut record = EndpointRecord {
            network: port.network.clone(),
            name,
            kind: port.kind,
            netns: port.netns.clone(),
            ifname: port.ifname.clone(),
            host_ifname: port.host_ifname.clone(),
            ip: None,
            ip6: None,
            mac: None,
            owned: false,
            origin,
            dhcp: port.dhcp,
            docker_endpoint: None,
            services: port.services.clone(),
            attachment: port.attachment.clone(),
        };
        self.endpoints.check_new(&record, netns_id, port.mac)?;
        let taken = self.taken_addresses(&net);
        record.ip = match (port.ip, net.subnet) {
            (Some(ip), _) if taken.contains(&ip) => {
                return Err(EndpointError::AddressTaken { ip, network: net.name.to_string() }.into());
            }
            (Some(ip), _) => Some(ip),
            // A host interface switchd does not configure gets no address.
            (None, Some(_)) if port.kind != PortKind::Uplink => self.pick_address(&net, &taken, mode)?,
            (None, _) => None,
        };
        record.mac = match (port.mac, record.ip, port.kind) {
            (Some(mac), _, _) => Some(mac),
            (None, _, PortKind::Uplink) => None,
            (None, Some(ip), _) => Some(MacAddr::derived_from_ip(ip)),
            (None, None, _) => Some(MacAddr::local_from_bits(attach::random_u64())),
        };
        // A MAC is the network's one endpoint's in the whole cluster: it is
        // its place in every forwarding table, and its SLAAC address.
        if let Some(mac) = record.mac
            && self.mac_in_use(&net.name, mac)
        {
            return Err(EndpointError::MacTaken { mac, network: net.name.to_string() }.into());
        }
        // A given IPv6 address must be no other endpoint's, nor the SLAAC
        // address of another's MAC; nor this one's SLAAC address another's.
        record.ip6 = port.ip6;
        for ip6 in crate::services::icmpv6::endpoint_ip6s(&net, record.mac, record.ip6) {
            if self.address_in_use(&net.name, IpAddr::V6(ip6)) {
                return Err(EndpointError::AddressTaken { ip: IpAddr::V6(ip6), network: net.name.to_string() }.into());
            }
        }
        Ok(record)
    }

    /// `network connect`: plans the endpoint, journals what it will make,
    /// makes and opens it, and switches it.
    pub(super) fn connect(&mut self, raw: &RawPort, origin: Origin, mode: ClaimMode) -> OpResult<EndpointInfo> {
        let mut record = self.plan_endpoint(raw, origin, mode)?;
        let net = self.networks.get(record.network.as_str())?.config.clone();
        let netns = record.netns.clone();
        let device = self.system.prepare(&mut record).map_err(EndpointError::from)?;
        self.begin(Op::Connect, &record, device.clone())?;
        let opened = self.open_endpoint(record, &net);
        self.pending.clear();
        if let Err(e) = opened {
            // Whatever step failed, nothing it made stays.
            if let Some(device) = &device
                && let Err(cleanup) = self.system.delete(device)
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
        let added = self.endpoints.iter().last().expect("just added");
        Ok(added.info(self.host.name.as_str(), &net))
    }

    /// Opens the endpoint's device and adds its port to the switch.
    pub(super) fn open_endpoint(
        &mut self,
        mut record: EndpointRecord,
        net: &NetworkConfig,
    ) -> Result<(), EndpointError> {
        let netns_id = record.netns.as_deref().map(|ns| self.system.identify_netns(ns)).transpose()?;
        let routes = self.routed_subnets(&net.name);
        let device = self.system.open(&mut record, Attachment { net, routes: &routes }, self.dataplane.workers())?;
        let network_id = self.networks.get(net.name.as_str()).expect("the endpoint's network").id;
        let guard = super::gateway::port_guard(&record, net);
        let port = self
            .dataplane
            .add_port(network_id, device, guard)
            .map_err(|source| EndpointError::Switching { name: record.name.to_string(), source })?;
        self.endpoints.push(Endpoint { record, port, netns_id });
        Ok(())
    }

    /// `network disconnect`: unswitches the endpoint, then deletes what
    /// switchd made for it, journaled in between.
    pub(super) fn disconnect(&mut self, network: &str, endpoint: &str) -> OpResult<EndpointInfo> {
        let net = self.networks.get(network)?.config.clone();
        let what_id = self.system.identify_netns(endpoint).ok();
        let endpoint =
            self.endpoints.take(|e| e.record.network.as_str() == network && e.is_named(endpoint, what_id)).ok_or_else(
                || EndpointError::NotFound { endpoint: endpoint.to_owned(), network: network.to_owned() },
            )?;
        self.detach(&endpoint.record, endpoint.port)?;
        Ok(endpoint.info(self.host.name.as_str(), &net))
    }

    /// CNI's `GC`: detaches the endpoints of `network` a runtime attached
    /// (with an attachment id) that it no longer lists in `keep`, their
    /// addresses and published ports with them. The runtime's cure for
    /// attachments a failed `DEL` leaked.
    pub(super) fn network_gc(&mut self, network: &str, keep: &[String]) -> OpResult<Vec<EndpointInfo>> {
        self.networks.get(network)?;
        let stale: Vec<Name> = self
            .endpoints
            .on(network)
            .filter(|e| e.record.attachment.as_ref().is_some_and(|a| !keep.contains(a)))
            .map(|e| e.record.name.clone())
            .collect();
        let mut gone = Vec::new();
        for name in stale {
            let published: Vec<(u16, &'static str)> = self
                .layer3
                .published
                .iter()
                .filter(|p| p.config.network.as_str() == network && p.config.container == name)
                .map(|p| (p.config.host_port, p.config.protocol.as_str()))
                .collect();
            for (host_port, protocol) in published {
                if let Err(e) = self.publish_rm(host_port, protocol) {
                    tracing::warn!("GC of {name} on {network}: port {host_port}/{protocol} stays: {e}");
                }
            }
            let info = self.disconnect(network, name.as_str())?;
            tracing::info!("GC: {name} on {network} is no longer the runtime's, detached");
            gone.push(info);
        }
        Ok(gone)
    }

    /// Unswitches a port taken out of `endpoints`, and deletes the device
    /// switchd made for `record`: the record goes and the intent comes in
    /// one save, so a crash before the delete is finished at start.
    pub(super) fn detach(&mut self, record: &EndpointRecord, port: PortId) -> Result<(), EndpointError> {
        self.dataplane.remove_port(port);
        let device = attach::made_device(record);
        self.pending = vec![Intent { op: Op::Disconnect, endpoint: record.clone(), device: device.clone() }];
        if let Some(ns) = &record.netns {
            self.forget_resolv_conf(ns);
        }
        self.commit();
        let deleted = device.map_or(Ok(()), |d| self.system.delete(&d));
        self.pending.clear();
        self.save();
        deleted.map_err(EndpointError::NotDeleted)
    }

    /// The endpoints whose container is gone: its netns no longer exists
    /// (or the name now means another namespace), or its host interface
    /// vanished. Docker's endpoints go when dockerd says (`Leave`).
    pub fn gone_endpoints(&self) -> Vec<PortId> {
        self.endpoints
            .iter()
            .filter(|e| e.record.docker_endpoint.is_none())
            .filter(|e| match (&e.record.netns, &e.record.host_ifname) {
                (_, Some(host)) => !self.system.host_interface_exists(host),
                (Some(ns), None) => self.system.identify_netns(ns).ok() != e.netns_id,
                (None, None) => false,
            })
            .map(|e| e.port)
            .collect()
    }

    /// Detaches the endpoints of these ports (found by [`Daemon::gone_endpoints`]),
    /// what Docker does when a container stops. Their devices went with
    /// their containers.
    pub fn reap(&mut self, gone: &[PortId]) {
        let mut reaped = false;
        for port in gone {
            let Some(e) = self.endpoints.take(|e| e.port == *port) else { continue };
            tracing::info!("{} on {}: container gone, endpoint detached", e.record.name, e.record.network);
            self.dataplane.remove_port(e.port);
            if let Some(ns) = &e.record.netns {
                self.forget_resolv_conf(ns);
            }
            reaped = true;
        }
        if reaped {
            self.commit();
        }
    }

    /// What `network connect` would do, without doing it (`script attach`).
    pub(super) fn plan_attach(&mut self, raw: &RawPort) -> OpResult<AttachPlan> {
        let mut record = self.plan_endpoint(raw, Origin::Runtime, ClaimMode::Preview)?;
        let net = &self.networks.get(record.network.as_str())?.config;
        if record.kind != PortKind::Tap && record.host_ifname.is_none() {
            record.host_ifname = Some(self.system.fresh_host_ifname());
        }
        let ifname = self.system.pick_ifname(&record).map_err(EndpointError::from)?;
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
            ip6: record.ip6.filter(|_| !record.dhcp),
            gateway: net.gateway,
            default_route: attach::default_route(net).is_some(),
        })
    }

    /// Whether an endpoint of `network`, here or on another host, has `mac`.
    pub(super) fn mac_in_use(&self, network: &Name, mac: MacAddr) -> bool {
        self.endpoints.on(network.as_str()).any(|e| e.record.mac == Some(mac))
            || self.cluster.table.endpoints_on(network).any(|(_, e)| e.mac == mac)
    }

    /// Whether an endpoint of `network`, here or on another host, holds
    /// `ip`: its IPv4 address, or one of its IPv6 ones (given or SLAAC);
    /// or, for IPv6, a service's VIP6.
    pub(super) fn address_in_use(&self, network: &Name, ip: IpAddr) -> bool {
        let IpAddr::V6(ip6) = ip else {
            return self.endpoints.on(network.as_str()).any(|e| e.record.ip == Some(ip))
                || self.cluster.table.endpoints_on(network).any(|(_, e)| e.ip == Some(ip));
        };
        let Some(net) = self.networks.find(network.as_str()) else { return false };
        let holds = |mac, given| crate::services::icmpv6::endpoint_ip6s(&net.config, mac, given).contains(&ip6);
        self.endpoints.on(network.as_str()).any(|e| holds(e.record.mac, e.record.ip6))
            || self.cluster.table.endpoints_on(network).any(|(_, e)| holds(Some(e.mac), e.ip6))
            || self.reserved_vips(network).contains(&ip)
    }
}
