//! The daemon's side of the Docker network driver (`crate::docker`):
//! Docker's networks and endpoints as switchd's.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use serde_json::{Value, json};
use switchd_config::raw::RawNetwork;
use switchd_config::{IfName, MacAddr, Name, PortKind, Subnet};

use super::state::{Device, EndpointRecord, Intent, Op, Origin};
use super::{ClaimMode, Daemon, Endpoint, OpResult, Refused};
use crate::docker::{CreateEndpoint, CreateNetwork, Join, Request, RequestAddress, error_reply};

/// An endpoint dockerd created and has not joined yet.
#[derive(Debug, Clone)]
pub(super) struct PendingEndpoint {
    network: String,
    ip: Option<IpAddr>,
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
            Request::RequestAddress(r) => match self.docker_request_address(&r) {
                Err(Refused::Wait(wait)) => return Err(wait),
                other => other.map_err(String::from),
            },
            Request::ReleaseAddress { pool_id, address } => {
                self.docker_release_address(&pool_id, &address);
                Ok(json!({}))
            }
            Request::CreateNetwork(n) => self.docker_create_network(&n).map(|()| json!({})),
            Request::DeleteNetwork { network_id } => self.docker_delete_network(&network_id).map(|()| json!({})),
            Request::CreateEndpoint(e) => self.docker_create_endpoint(&e),
            Request::DeleteEndpoint { endpoint_id, .. } => {
                self.docker_endpoints.remove(&endpoint_id);
                Ok(json!({}))
            }
            Request::Join(j) => self.docker_join(&j),
            Request::Leave { endpoint_id, .. } => self.docker_leave(&endpoint_id).map(|()| json!({})),
            other => Err(format!("{other:?} has no daemon side")),
        };
        Ok(result.unwrap_or_else(|e| error_reply(&e)))
    }

    /// An address from switchd's IPAM (`--ipam-driver switchd`): from a
    /// block this host owns, so two engines on two hosts never give the
    /// same one. It is held until dockerd releases it. The gateway is the
    /// network's, or the subnet's first address.
    fn docker_request_address(&mut self, r: &RequestAddress) -> Result<Value, Refused> {
        let subnet: Subnet =
            r.pool_id.parse().map_err(|e: String| Refused::Error(format!("pool {}: {e}", r.pool_id)))?;
        let with_prefix = |ip: IpAddr| json!({ "Address": format!("{ip}/{}", subnet.prefix_len()), "Data": {} });
        if r.is_gateway() {
            let gw = match r.address.as_str() {
                "" => subnet.first_host(),
                a => a.parse().map_err(|_| Refused::Error(format!("{a:?} is not an address")))?,
            };
            return Ok(with_prefix(gw));
        }
        let net = self
            .networks
            .values()
            .find(|n| n.config.subnet == Some(subnet))
            .map(|n| n.config.clone())
            .ok_or_else(|| Refused::Error(format!("no switchd network with subnet {subnet}")))?;
        let mut taken: HashSet<IpAddr> = self.endpoints_on(net.name.as_str()).filter_map(|e| e.record.ip).collect();
        taken.extend(self.cluster.table.endpoints_on(&net.name).filter_map(|(_, e)| e.ip));
        let reserved = self.docker_reserved.entry(subnet.to_string()).or_default();
        if !r.address.is_empty() {
            let ip: IpAddr =
                r.address.parse().map_err(|_| Refused::Error(format!("{:?} is not an address", r.address)))?;
            if !subnet.is_assignable(ip) || Some(ip) == net.gateway {
                return Err(Refused::Error(format!("{ip} is not a usable address in {subnet}")));
            }
            if taken.contains(&ip) || reserved.contains(&ip) {
                return Err(Refused::Error(format!("{ip} is already in use on network {:?}", net.name.as_str())));
            }
            reserved.insert(ip);
            self.save();
            return Ok(with_prefix(ip));
        }
        taken.extend(reserved.iter().copied());
        let ip =
            self.pick_address(&net, &taken, ClaimMode::Wait)?.ok_or_else(|| Refused::Error("no address".into()))?;
        self.docker_reserved.entry(subnet.to_string()).or_default().insert(ip);
        self.save();
        Ok(with_prefix(ip))
    }

    fn docker_release_address(&mut self, pool_id: &str, address: &str) {
        if let (Some(reserved), Ok(ip)) = (self.docker_reserved.get_mut(pool_id), address.parse::<IpAddr>()) {
            reserved.remove(&ip);
            self.save();
        }
    }

    fn docker_network(&self, network_id: &str) -> OpResult<String> {
        self.docker_networks
            .get(network_id)
            .map(|n| n.to_string())
            .ok_or_else(|| format!("network {network_id:.12} is not a switchd network here"))
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
        if let Some(existing) = self.networks.get(&name) {
            let theirs = existing.config.subnet.map(|s| s.to_string());
            if theirs != subnet {
                return Err(format!(
                    "switchd network {name:?} exists with subnet {}, not {}",
                    theirs.as_deref().unwrap_or("none"),
                    subnet.as_deref().unwrap_or("none")
                ));
            }
        } else {
            let vni = match n.option("vni") {
                Some(v) => v.parse().map_err(|_| format!("vni: {v:?} is not a number"))?,
                None => self.free_vni(&n.network_id),
            };
            let flag = |key: &str| n.option(key).map(|v| v != "false");
            let raw = RawNetwork {
                name: Some(name.clone()),
                vni: Some(vni),
                subnet,
                gateway,
                internal: flag("internal"),
                encrypted: flag("encrypted"),
                cipher: n.option("cipher").map(str::to_owned),
                ..RawNetwork::default()
            };
            self.network_create(&raw)?;
        }
        self.docker_networks.insert(n.network_id.clone(), Name::new(&name).map_err(|e| e.to_string())?);
        self.save();
        Ok(())
    }

    /// A VNI no network here or in the cluster uses, picked from the
    /// network id so that it is stable.
    fn free_vni(&self, network_id: &str) -> i64 {
        let seed = u64::from_str_radix(network_id.get(..8).unwrap_or("1"), 16).unwrap_or(1);
        let used = |vni: u32| {
            self.networks.values().any(|n| n.config.vni.get() == vni)
                || self.cluster.table.networks.values().any(|n| n.config.vni.get() == vni)
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
        self.docker_networks.remove(network_id);
        if self.networks.get(&name).is_some_and(|n| n.origin == Origin::Runtime)
            && let Err(e) = self.remove_network(&name)
        {
            tracing::info!("docker removed network {name}, which stays while others use it: {e}");
            if let Some(net) = self.networks.get_mut(&name) {
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
            .map_err(|err| format!("address: {err}"))?;
        let given = interface.map(|i| i.mac_address.as_str()).filter(|m| !m.is_empty());
        let mac = match given {
            Some(m) => m.parse()?,
            None => ip.map_or_else(|| MacAddr::local_from_bits(super::attach::random_u64()), MacAddr::derived_from_ip),
        };
        self.docker_endpoints.insert(e.endpoint_id.clone(), PendingEndpoint { network, ip, mac });
        Ok(match given {
            Some(_) => json!({ "Interface": {} }),
            None => json!({ "Interface": { "MacAddress": mac.to_string() } }),
        })
    }

    /// Makes the container's interface: a TAP here, with the endpoint's MAC
    /// and the network's MTU, that dockerd moves into the container (whose
    /// namespace does not exist yet at `Join`), renames and addresses.
    /// Persistent: once its name in the container is known
    /// ([`Daemon::docker_find_interfaces`]), a restarted switchd reopens it
    /// there like any other endpoint's.
    fn docker_join(&mut self, j: &Join) -> OpResult<Value> {
        let pending = self
            .docker_endpoints
            .get(&j.endpoint_id)
            .cloned()
            .ok_or_else(|| format!("endpoint {:.12} was not created here", j.endpoint_id))?;
        let net = self.network(&pending.network)?;
        let (config, network_id) = (net.config.clone(), net.id);
        if let Some(ip) = pending.ip {
            let taken_here = self.endpoints_on(config.name.as_str()).any(|e| e.record.ip == Some(ip));
            let taken_there = self.cluster.table.endpoints_on(&config.name).any(|(_, e)| e.ip == Some(ip));
            if taken_here || taken_there {
                return Err(format!("{ip} is already in use on network {:?}", config.name.as_str()));
            }
        }
        let short = j.endpoint_id.get(..8).unwrap_or(&j.endpoint_id);
        let ifname = IfName::new(&format!("sdd{short}")).map_err(|e| format!("endpoint id: {e}"))?;
        let name = Name::new(&endpoint_name(&j.endpoint_id)).map_err(|e| format!("endpoint id: {e}"))?;
        let record = EndpointRecord {
            network: config.name.clone(),
            name,
            kind: PortKind::Tap,
            netns: Some(j.sandbox_key.clone()),
            ifname: None,
            host_ifname: None,
            ip: pending.ip,
            mac: Some(pending.mac),
            owned: false,
            origin: Origin::Runtime,
            dhcp: false,
            docker_endpoint: Some(j.endpoint_id.clone()),
        };
        let device = Device::Host { ifname: ifname.clone() };
        self.begin(Op::Connect, &record, Some(device.clone()))?;
        let made = crate::io::gateway::host_tap(&ifname, None, pending.mac, config.mtu.get(), true)
            .map_err(|e| format!("creating {ifname}: {e}"))
            .and_then(|fd| {
                let guard = super::gateway::port_guard(&record, &config);
                self.dataplane
                    .add_port(network_id, Box::new(crate::dataplane::FdPort(fd)), guard)
                    .map_err(|e| format!("switching {ifname}: {e}"))
            });
        self.pending.clear();
        let port = match made {
            Ok(port) => port,
            Err(e) => {
                let _ = super::attach::delete(&device);
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
        Ok(reply)
    }

    /// Docker's networks with endpoints still named after their id.
    pub fn docker_unnamed(&self) -> Vec<(String, Vec<String>)> {
        let mut unnamed: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for e in &self.endpoints {
            let Some(endpoint_id) = &e.record.docker_endpoint else { continue };
            if e.record.name.as_str() != endpoint_name(endpoint_id) {
                continue;
            }
            let network = self.docker_networks.iter().find(|(_, name)| **name == e.record.network);
            if let Some((network_id, _)) = network {
                unnamed.entry(network_id.clone()).or_default().push(endpoint_id.clone());
            }
        }
        unnamed.into_iter().collect()
    }

    /// Names Docker endpoints after their containers: (endpoint id, name).
    pub fn docker_name_endpoints(&mut self, names: &[(String, String)]) {
        let mut changed = false;
        for (endpoint_id, container) in names {
            let Ok(name) = Name::new(container.trim_start_matches('/')) else { continue };
            let Some(index) =
                self.endpoints.iter().position(|e| e.record.docker_endpoint.as_deref() == Some(endpoint_id.as_str()))
            else {
                continue;
            };
            let network = self.endpoints[index].record.network.clone();
            if self.endpoints_on(network.as_str()).any(|e| e.record.name == name) {
                tracing::warn!(
                    "docker container {name} on {network}: the name is taken; it stays {}",
                    self.endpoints[index].record.name
                );
                continue;
            }
            self.endpoints[index].record.name = name;
            changed = true;
        }
        if changed {
            self.commit();
        }
    }

    /// Learns where dockerd put the TAPs of Docker endpoints: their name in
    /// the container (found by MAC), saved so a restart reopens them.
    pub fn docker_find_interfaces(&mut self) {
        let mut found = false;
        for e in &mut self.endpoints {
            let r = &mut e.record;
            if let (Some(_), None, Some(netns), Some(mac)) = (&r.docker_endpoint, &r.ifname, &r.netns, r.mac)
                && let Some(ifname) = super::attach::find_by_mac(netns, mac)
            {
                e.netns_id = crate::io::netns::identify(netns).ok();
                r.ifname = Some(ifname);
                found = true;
            }
        }
        if found {
            self.save();
        }
    }

    /// Detaches a Docker endpoint and deletes its (persistent) TAP.
    fn docker_leave(&mut self, endpoint_id: &str) -> OpResult<()> {
        let index = self
            .endpoints
            .iter()
            .position(|e| e.record.docker_endpoint.as_deref() == Some(endpoint_id))
            .ok_or_else(|| format!("endpoint {endpoint_id:.12} is not attached here"))?;
        let mut endpoint = self.endpoints.remove(index);
        self.dataplane.remove_port(endpoint.port);
        let r = &mut endpoint.record;
        if let (None, Some(netns), Some(mac)) = (&r.ifname, &r.netns, r.mac) {
            r.ifname = super::attach::find_by_mac(netns, mac);
        }
        let device = super::attach::made_device(r);
        self.pending = vec![Intent { op: Op::Disconnect, endpoint: r.clone(), device: device.clone() }];
        // The record goes and the intent comes in one save.
        self.commit();
        let deleted = device.map_or(Ok(()), |d| super::attach::delete(&d));
        self.pending.clear();
        self.save();
        deleted.map_err(|e| format!("detached, but {e}"))
    }
}

/// Docker's networks by id, as saved.
pub(super) type DockerNetworks = BTreeMap<String, Name>;
/// Addresses switchd's IPAM gave dockerd and dockerd has not released, by pool.
pub(super) type DockerReserved = BTreeMap<String, BTreeSet<IpAddr>>;
