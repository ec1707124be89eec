//! The daemon's side of layer 3: programming gateways, routes, address
//! guards and the services snapshot into the data plane; `switchctl route`
//! and `switchctl publish`; the containers' resolv.conf.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hashbrown::HashMap;
use switchd_config::raw::{RawPublish, RawRoute};
use switchd_config::{KeyPath, Name, NetworkConfig, PortKind, PublishConfig, RouteConfig, Subnet, validate};

use super::Daemon;
use super::cluster::Reprogram;
use super::error::{Invalid, OpResult};
use super::state::Origin;
use crate::control::api::{PublishInfo, RouteInfo};
use crate::proxy;
use crate::services::dns::Directory;
use crate::services::{self, NetworkServices, PortServices, Tables};
use crate::switch::{EndpointGuard, Gateway, NetworkId, PortGuard};

/// Marks a resolv.conf switchd wrote, so it only ever removes its own.
const RESOLV_MARK: &str = "# written by switchd: the embedded DNS of the container's first network\n";

/// Why a route was not added or removed.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("{0} and {1} already route")]
    Exists(Name, Name),
    #[error("no route between {0} and {1}")]
    NotFound(Name, Name),
    #[error("the route is defined in host.toml; remove it there")]
    InConfig,
}

/// Why a port was not published or unpublished.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("{host_port}/{protocol} is already published for {container} on {network}")]
    Taken { host_port: u16, protocol: &'static str, container: Name, network: Name },
    #[error("cannot listen on {host_ip}:{host_port}/{protocol}: {source}")]
    Listen { host_ip: IpAddr, host_port: u16, protocol: &'static str, source: std::io::Error },
    #[error("nothing is published on {host_port}/{protocol}")]
    NotFound { host_port: u16, protocol: String },
    #[error("the port is published in host.toml; remove it there")]
    InConfig,
    /// A port of the routing mesh that cannot be.
    #[error("{0}")]
    Mesh(String),
}

/// Layer 3 beyond a network: which networks route to each other, and the
/// ports published on the host with where they lead.
#[derive(Debug)]
pub(super) struct Layer3 {
    /// Pairs of networks that route, from host.toml and `route add`.
    pub routes: BTreeMap<RouteConfig, Origin>,
    pub published: Vec<Publication>,
    /// Where published ports lead: local containers by network and name.
    pub targets: proxy::Targets,
}

/// A published port and its listener (closed on drop).
#[derive(Debug)]
pub(super) struct Publication {
    pub config: PublishConfig,
    pub origin: Origin,
    pub listener: proxy::Listener,
}

impl Daemon {
    /// The networks `name` routes to, by name.
    fn routed_from<'a>(&'a self, name: &'a Name) -> impl Iterator<Item = &'a Name> + 'a {
        self.layer3.routes.keys().filter_map(move |r| r.peer_of(name))
    }

    /// Programs layer 3 into the data plane: each network's gateway and
    /// routes, the addresses each port may use, and what the gateway
    /// serves (names on every host, leases of local endpoints). A network
    /// outside `scope` (its remote endpoints alone changed elsewhere) keeps
    /// its gateway and name directory as they are.
    pub(super) fn program_gateways(&self, scope: &Reprogram) {
        let mut tables = Tables::default();
        let current = self.dataplane.services();
        let ids: BTreeMap<&Name, NetworkId> = self.networks.iter().map(|n| (&n.config.name, n.id)).collect();
        for net in self.networks.iter() {
            let c = &net.config;
            if !scope.covers(&c.name)
                && let Some(kept) = current.networks.get(&net.id)
            {
                tables.networks.insert(net.id, kept.clone());
                continue;
            }
            // IPv4 and IPv6 each when the network has that subnet: an
            // IPv6-only network has a gateway all the same.
            let v4 = match (c.subnet.map(|s| s.net()), c.gateway.and_then(services::v4)) {
                (Some(ipnet::IpNet::V4(subnet)), Some(ip)) => Some((ip, subnet)),
                _ => None,
            };
            let v6 = match (c.gateway6, c.subnet6.map(|s| s.net())) {
                (Some(IpAddr::V6(ip)), Some(ipnet::IpNet::V6(prefix))) => Some((ip, prefix)),
                _ => None,
            };
            let gateway =
                (v4.is_some() || v6.is_some()).then(|| Gateway { v4, mac: Gateway::mac_for(c.vni), dhcp: c.dhcp, v6 });
            let routed: Vec<&Name> = self.routed_from(&c.name).filter(|n| ids.contains_key(n)).collect();
            let route_ids: Vec<NetworkId> = routed.iter().map(|n| ids[n]).collect();
            self.dataplane.update_switch(|s| {
                s.set_gateway(net.id, gateway);
                s.set_routes(net.id, route_ids.clone());
            });
            let Some(gw) = gateway else { continue };
            let mut directory = Directory::default();
            // Dual stack: each container's IPv6 address answers AAAA.
            let ip6 = |mac, given| crate::services::icmpv6::endpoint_ip6(c, mac, given).map(IpAddr::V6);
            for e in self.endpoints.on(c.name.as_str()) {
                for ip in [e.record.ip, ip6(e.record.mac, e.record.ip6)].into_iter().flatten() {
                    directory.add(e.record.name.as_str(), c.name.as_str(), ip);
                }
            }
            for (_, e) in self.cluster.table.endpoints_on(&c.name) {
                for ip in [e.ip, ip6(Some(e.mac), e.ip6)].into_iter().flatten() {
                    directory.add(e.name.as_str(), c.name.as_str(), ip);
                }
            }
            for (name, ips, rotate) in self.service_names(&c.name) {
                directory.add_service(&name, c.name.as_str(), ips, rotate);
            }
            let routes = routed
                .iter()
                .filter_map(|n| self.networks.find(n.as_str())?.config.subnet)
                .filter_map(|s| match s.net() {
                    ipnet::IpNet::V4(v4) => Some(v4),
                    ipnet::IpNet::V6(_) => None,
                })
                .collect();
            tables.networks.insert(
                net.id,
                NetworkServices {
                    name: c.name.to_string(),
                    // Unspecified on an IPv6-only network: the switch hands
                    // the services no IPv4 frame there.
                    gateway: gw.v4.map_or(std::net::Ipv4Addr::UNSPECIFIED, |(ip, _)| ip),
                    mac: gw.mac,
                    prefix_len: gw.v4.map_or(0, |(_, subnet)| subnet.prefix_len()),
                    mtu: u16::try_from(c.mtu.get()).unwrap_or(u16::MAX),
                    router: !c.internal,
                    dns: c.dns,
                    dhcp: c.dhcp,
                    routes,
                    directory: Arc::new(directory),
                    ipv6: advertised(c),
                },
            );
        }
        // What each local endpoint may send from, and may resolve.
        let mut same_container: HashMap<_, Vec<NetworkId>> = HashMap::new();
        for e in self.endpoints.iter() {
            if let (Some(ns), Some(net)) = (e.netns_id, self.networks.find(e.record.network.as_str())) {
                same_container.entry(ns).or_default().push(net.id);
            }
        }
        let mut targets = std::collections::HashMap::new();
        for e in self.endpoints.iter() {
            let Some(net) = self.networks.find(e.record.network.as_str()) else { continue };
            let v4 = e.record.ip.and_then(services::v4);
            let guard = port_guard(&e.record, &net.config);
            self.dataplane.update_switch(|s| s.set_port_guard(e.port, guard.clone()));
            let sees = e.netns_id.and_then(|ns| same_container.get(&ns).cloned()).unwrap_or_else(|| vec![net.id]);
            let ip6 = e.record.ip6(&net.config);
            let name = e.record.name.to_string();
            tables.ports.insert(e.port, PortServices { network: net.id, name, mac: e.record.mac, ip: v4, ip6, sees });
            if let (Some(ns), Some(ip)) = (&e.record.netns, e.record.ip) {
                let target = proxy::Target { netns: ns.clone(), ip };
                targets.insert((e.record.network.clone(), e.record.name.clone()), target);
            }
        }
        self.dataplane.set_services(tables);
        *self.layer3.targets.write().unwrap_or_else(|p| p.into_inner()) = targets;
    }

    /// The gateway's address a container on `network` asks for names.
    fn dns_server(&self, network: &str) -> Option<IpAddr> {
        let c = &self.networks.find(network)?.config;
        c.gateway.or(c.gateway6).filter(|_| c.dns)
    }

    /// Points a named container's resolver at the embedded DNS of its first
    /// network (`ip netns exec` mounts /etc/netns/NAME/resolv.conf over
    /// /etc/resolv.conf). A file switchd did not write is left alone.
    pub(super) fn write_resolv_conf(&self, netns: &str, network: &str) {
        let (Some(path), Some(server)) = (self.system.resolv_conf_path(netns), self.dns_server(network)) else {
            return;
        };
        if path.exists() {
            return;
        }
        let body = format!("{RESOLV_MARK}nameserver {server}\noptions ndots:0\n");
        let written = path.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|()| std::fs::write(&path, body));
        if let Err(e) = written {
            tracing::warn!("cannot write {}: {e}", path.display());
        }
    }

    /// Removes the resolv.conf switchd wrote for a container that has no
    /// endpoint left.
    pub(super) fn forget_resolv_conf(&self, netns: &str) {
        if self.endpoints.in_netns(netns) {
            return;
        }
        let Some(path) = self.system.resolv_conf_path(netns) else { return };
        if std::fs::read_to_string(&path).is_ok_and(|s| s.starts_with(RESOLV_MARK)) {
            let _ = std::fs::remove_file(&path);
            if let Some(dir) = path.parent() {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

/// What the gateway of `c` advertises to IPv6 hosts, with a subnet6.
pub(super) fn advertised(c: &NetworkConfig) -> Option<crate::services::icmpv6::Advertised> {
    let (Some(prefix), Some(IpAddr::V6(gateway))) = (c.slaac_prefix(), c.gateway6) else { return None };
    Some(crate::services::icmpv6::Advertised {
        mac: crate::switch::Gateway::mac_for(c.vni),
        prefix,
        gateway,
        mtu: u16::try_from(c.mtu.get()).unwrap_or(u16::MAX),
        router: !c.internal,
        dns: c.dns,
        managed: c.dhcp,
    })
}

/// When each network's gateway advertises next, unasked (RFC 4861 6.2.4):
/// at once for a network new here and whenever an endpoint joins it (at
/// most every [`MIN_BETWEEN_ADVERTISEMENTS`]), else every 200-600 s.
#[derive(Debug, Default)]
pub(super) struct Advertising {
    /// Per network: when the last one went, the local endpoints then, and when the next is due.
    next: HashMap<NetworkId, (Instant, usize, Instant)>,
}

/// RFC 4861's MIN_DELAY_BETWEEN_RAS.
const MIN_BETWEEN_ADVERTISEMENTS: Duration = Duration::from_secs(3);

impl Daemon {
    /// The unsolicited router advertisements due now: each network's
    /// gateway stack namespace, and the frame to send out of it.
    pub fn due_advertisements(&mut self, now: Instant) -> Vec<(String, Vec<u8>)> {
        let mut due = Vec::new();
        let mut seen = Vec::new();
        for net in self.networks.iter() {
            let (Some(adv), Some((stack, _))) = (advertised(&net.config), &net.stack) else { continue };
            seen.push(net.id);
            let endpoints = self.endpoints.on(net.config.name.as_str()).count();
            let (last, count, next) = self.advertising.next.get(&net.id).copied().unwrap_or((now, 0, now));
            let joined = endpoints > count && now.duration_since(last) >= MIN_BETWEEN_ADVERTISEMENTS;
            if now < next && !joined {
                continue;
            }
            let mut frame = Vec::new();
            crate::services::icmpv6::unsolicited(&adv, &mut frame);
            due.push((stack.netns_path(), frame));
            // 200-600 s apart (RFC 4861's default MaxRtrAdvInterval and a third of it), spread.
            let nanos =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
            let spread = Duration::from_millis(200_000 + u64::from(nanos ^ net.config.vni.get()) % 400_000);
            self.advertising.next.insert(net.id, (now, endpoints, now + spread));
        }
        self.advertising.next.retain(|id, _| seen.contains(id));
        due
    }
}

/// What an endpoint's port may send (see `crate::switch::guard`): a
/// container's interface (a TAP, a veth into a netns) only its MAC and, on
/// a network with a subnet, its addresses; a port that bridges a LAN (an
/// uplink, a veth switchd was only given the host end of) any MAC but an
/// endpoint's.
pub(super) fn port_guard(record: &super::state::EndpointRecord, net: &NetworkConfig) -> PortGuard {
    let container = match record.kind {
        PortKind::Tap => true,
        PortKind::Veth => record.netns.is_some(),
        PortKind::Uplink => false,
    };
    match (container, record.mac) {
        (true, Some(mac)) => {
            let mut guard = EndpointGuard::new(mac, net.subnet.is_some(), record.ip);
            // Dual stack: the address it was given, and the one its kernel makes by SLAAC.
            if let Some(v6) = guard.ipv6.as_mut() {
                v6.extend(crate::services::icmpv6::endpoint_ip6s(net, Some(mac), record.ip6));
            }
            PortGuard::Endpoint(guard)
        }
        _ => PortGuard::Lan,
    }
}

/// `switchctl route` and `switchctl publish`.
impl Daemon {
    pub(super) fn route_ls(&self) -> Vec<RouteInfo> {
        self.layer3
            .routes
            .iter()
            .map(|(r, origin)| {
                let [a, b] = &r.networks;
                let state = match (self.networks.find(a.as_str()), self.networks.find(b.as_str())) {
                    (Some(_), Some(_)) => "active",
                    _ => "waiting for its networks",
                };
                RouteInfo {
                    networks: [a.to_string(), b.to_string()],
                    origin: origin.as_str().to_owned(),
                    state: state.to_owned(),
                }
            })
            .collect()
    }

    pub(super) fn route_add(&mut self, raw: &RawRoute) -> Result<Vec<RouteInfo>, RouteError> {
        let route = validate::route(raw, &KeyPath::root()).map_err(Invalid::from)?;
        if self.layer3.routes.contains_key(&route) {
            let [a, b] = route.networks.clone();
            return Err(RouteError::Exists(a, b));
        }
        self.layer3.routes.insert(route.clone(), Origin::Runtime);
        // Saved first: the containers' routes follow from the state.
        self.commit();
        self.sync_container_routes(&route.networks);
        Ok(self.route_ls())
    }

    pub(super) fn route_rm(&mut self, raw: &RawRoute) -> Result<Vec<RouteInfo>, RouteError> {
        let route = validate::route(raw, &KeyPath::root()).map_err(Invalid::from)?;
        match self.layer3.routes.get(&route) {
            None => {
                let [a, b] = route.networks.clone();
                return Err(RouteError::NotFound(a, b));
            }
            Some(Origin::Config) => return Err(RouteError::InConfig),
            Some(_) => {}
        }
        self.layer3.routes.remove(&route);
        self.commit();
        self.sync_container_routes(&route.networks);
        Ok(self.route_ls())
    }

    /// The subnets (IPv4 and IPv6) of the networks `network` routes to.
    pub(super) fn routed_subnets(&self, network: &Name) -> Vec<Subnet> {
        let configs = self.routed_from(network).filter_map(|n| self.networks.find(n.as_str()));
        configs.flat_map(|n| [n.config.subnet, n.config.subnet6]).flatten().collect()
    }

    /// Puts the routes of the containers switchd configured on `networks`
    /// (all, if empty) right: on an internal network, each routed
    /// network's subnet via their gateway (others reach it by their
    /// default route). Derived from the state, so it also repairs what a
    /// crash between a route change and its routes left.
    pub(super) fn sync_container_routes(&self, networks: &[Name]) {
        for e in self.endpoints.iter() {
            let r = &e.record;
            let (Some(ns), Some(ifname), false) = (&r.netns, &r.ifname, r.dhcp) else { continue };
            if !networks.is_empty() && !networks.contains(&r.network) {
                continue;
            }
            let Some(net) = self.networks.find(r.network.as_str()) else { continue };
            let (Some(gw), true) = (net.config.gateway, net.config.internal) else { continue };
            let routed = self.routed_subnets(&r.network);
            // One family at a time: each has its own gateway address.
            let v6 = net.config.subnet6.and_then(|s| super::attach::routes_via(&net.config, s.net().addr(), gw));
            for via in [Some(gw), v6].into_iter().flatten() {
                let wanted: Vec<(IpAddr, u8)> = routed
                    .iter()
                    .filter(|s| s.net().addr().is_ipv4() == via.is_ipv4())
                    .map(|s| (s.net().addr(), s.prefix_len()))
                    .collect();
                if let Err(e) = self.system.sync_routes(ns, ifname, via, &wanted) {
                    tracing::warn!("{} on {}: cannot set its routes to routed networks: {e}", r.name, r.network);
                }
            }
        }
    }

    pub(super) fn publish_ls(&self) -> Vec<PublishInfo> {
        self.layer3
            .published
            .iter()
            .map(|p| {
                let c = &p.config;
                let target = self
                    .layer3
                    .targets
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&(c.network.clone(), c.container.clone()))
                    .cloned();
                PublishInfo {
                    network: c.network.to_string(),
                    container: c.container.to_string(),
                    host_ip: c.host_ip,
                    host_port: c.host_port,
                    port: c.port,
                    protocol: c.protocol.as_str().to_owned(),
                    target: target.map(|t| std::net::SocketAddr::new(t.ip, c.port).to_string()),
                    origin: p.origin.as_str().to_owned(),
                    relays: p.listener.counters(),
                    service: None,
                    not_open: None,
                }
            })
            .chain(self.mesh_ls())
            .collect()
    }

    /// The containers' ports published on this host.
    pub(super) fn layer3_publications(&self) -> impl Iterator<Item = &PublishConfig> {
        self.layer3.published.iter().map(|p| &p.config)
    }

    /// Publishes a port: binds it now, so a port in use is refused here.
    pub(super) fn publish(&mut self, config: PublishConfig, origin: Origin) -> Result<(), PublishError> {
        if let Some(service) = self.mesh_holder(config.host_port, config.protocol) {
            return Err(PublishError::Mesh(format!(
                "{}/{} is the routing mesh's port for service {service} here",
                config.host_port,
                config.protocol.as_str()
            )));
        }
        if let Some(p) = self.layer3.published.iter().find(|p| {
            (p.config.host_ip, p.config.host_port, p.config.protocol)
                == (config.host_ip, config.host_port, config.protocol)
        }) {
            return Err(PublishError::Taken {
                host_port: config.host_port,
                protocol: config.protocol.as_str(),
                container: p.config.container.clone(),
                network: p.config.network.clone(),
            });
        }
        let listener = proxy::start(&config, self.layer3.targets.clone(), &self.runtime).map_err(|source| {
            PublishError::Listen {
                host_ip: config.host_ip,
                host_port: config.host_port,
                protocol: config.protocol.as_str(),
                source,
            }
        })?;
        self.layer3.published.push(Publication { config, origin, listener });
        Ok(())
    }

    pub(super) fn publish_add(&mut self, raw: &RawPublish) -> Result<Vec<PublishInfo>, PublishError> {
        let config = validate::publish(raw, &KeyPath::root()).map_err(Invalid::from)?;
        self.publish(config, Origin::Runtime)?;
        self.save();
        Ok(self.publish_ls())
    }

    /// `unpublish`: a container's port on this host, or else a port of the
    /// routing mesh, for the whole cluster.
    pub(super) fn publish_rm(&mut self, host_port: u16, protocol: &str) -> OpResult<Vec<PublishInfo>> {
        let index = self
            .layer3
            .published
            .iter()
            .position(|p| p.config.host_port == host_port && p.config.protocol.as_str() == protocol);
        let Some(index) = index else {
            if self.mesh_unpublish(host_port, protocol)? {
                return Ok(self.publish_ls());
            }
            return Err(PublishError::NotFound { host_port, protocol: protocol.to_owned() }.into());
        };
        if self.layer3.published[index].origin == Origin::Config {
            return Err(PublishError::InConfig.into());
        }
        self.layer3.published.remove(index);
        self.save();
        Ok(self.publish_ls())
    }
}
