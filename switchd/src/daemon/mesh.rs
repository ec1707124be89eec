//! The routing mesh: a service's published ports (`publish = [...]` of a
//! `[[service]]`, `[[publish]] service`, `switchctl publish --service`)
//! open on every host that carries the service's network, as Docker
//! swarm's ingress does, but keeping the client's address.
//!
//! The ports travel with the service's definition (gossip's `svc/` record,
//! the newest winning), so every host knows them. Each host that carries
//! the network with host access installs a DNAT rule per port in its own
//! nftables ([`crate::io::nftables`]): a connection to any of the host's
//! addresses at that port goes to the VIP, which the host routes through
//! its host-access interface into the switch. The switch balances it like
//! a container's connection ([`crate::switch::balance`]); a backend on
//! another host sends its replies back to this one (it kept the flow's
//! way back when the first frame arrived), where they become the VIP's
//! again and the host's conntrack turns them into the published port's.
//!
//! A port is not opened here, and `switchctl ports` says why, when the
//! network is not here or has no host access here, or when the port is
//! taken on this host by a container's published port or another
//! service's mesh port (the first by network and name keeps it).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use switchd_config::{MeshPort, Name, Protocol, validate};

use super::error::{DaemonError, OpResult};
use super::gateway::PublishError;
use super::service::{ServiceError, now_ms};
use super::{Daemon, Origin};
use crate::control::api::PublishInfo;
use crate::io::nftables::Dnat;

/// What this host did with the mesh.
#[derive(Debug, Default)]
pub(super) struct MeshState {
    /// The rules installed; `None` until the first time (switchd's table
    /// starts empty: the kernel removed the last one's with its socket).
    applied: Option<Vec<Dnat>>,
}

/// One port of the mesh as this host sees it.
struct MeshEntry<'a> {
    network: &'a Name,
    service: &'a Name,
    origin: Origin,
    port: MeshPort,
    /// The rules (one per VIP: IPv4, IPv6), if the port is open here; why not otherwise.
    here: Result<Vec<Dnat>, String>,
}

impl Daemon {
    /// Every mesh port of every live service, and whether it is open here.
    fn mesh_entries(&self) -> Vec<MeshEntry<'_>> {
        let mut taken: Vec<(u16, Protocol, &Name)> = Vec::new();
        let mut out = Vec::new();
        for k in self.services.known.values() {
            let Some(config) = &k.config else { continue };
            for &port in &config.publish {
                let net = self.networks.get(k.network.as_str()).ok();
                let container = self.layer3_published_on(port.host_port, port.protocol);
                let vips = super::service::vips_of(config);
                let here = match net {
                    _ if vips.is_empty() => Err("the service has no VIP".to_owned()),
                    None => Err(format!("network {} is not on this host", k.network)),
                    Some(net) if net.host_port.is_none() => {
                        Err(format!("network {} has no host access here", k.network))
                    }
                    _ if container.is_some() => {
                        Err(format!("the port is published here for container {}", container.expect("some")))
                    }
                    Some(_) => match taken.iter().find(|(p, proto, _)| (*p, *proto) == (port.host_port, port.protocol))
                    {
                        Some((.., other)) => Err(format!("service {other} holds the port here")),
                        None => Ok(vips.into_iter().map(|vip| dnat(port, vip)).collect()),
                    },
                };
                if here.is_ok() {
                    taken.push((port.host_port, port.protocol, &k.name));
                }
                out.push(MeshEntry { network: &k.network, service: &k.name, origin: k.origin, port, here });
            }
        }
        out
    }

    /// The container published on this host at `host_port`/`protocol`, if any.
    fn layer3_published_on(&self, host_port: u16, protocol: Protocol) -> Option<&Name> {
        self.layer3_publications().find(|c| (c.host_port, c.protocol) == (host_port, protocol)).map(|c| &c.container)
    }

    /// The service whose mesh port is open here at `host_port`/`protocol`.
    pub(super) fn mesh_holder(&self, host_port: u16, protocol: Protocol) -> Option<String> {
        let open = self.mesh_entries().into_iter().filter(|e| e.here.is_ok());
        open.into_iter()
            .find(|e| (e.port.host_port, e.port.protocol) == (host_port, protocol))
            .map(|e| e.service.to_string())
    }

    /// Installs the mesh's rules when they changed (all of them at once).
    pub(super) fn program_mesh(&mut self) {
        let mut wanted: Vec<Dnat> = self.mesh_entries().into_iter().filter_map(|e| e.here.ok()).flatten().collect();
        wanted.sort();
        if self.mesh.applied.as_ref() == Some(&wanted) {
            return;
        }
        match self.system.set_mesh(&wanted) {
            Ok(()) => {
                tracing::info!("routing mesh: {} published ports open on this host", wanted.len());
                self.mesh.applied = Some(wanted);
            }
            // Tried again at the next change.
            Err(e) => tracing::error!("routing mesh: cannot install its DNAT rules: {e}"),
        }
    }

    /// `ports`' rows for the mesh.
    pub(super) fn mesh_ls(&self) -> Vec<PublishInfo> {
        self.mesh_entries()
            .into_iter()
            .map(|e| PublishInfo {
                network: e.network.to_string(),
                container: String::new(),
                service: Some(e.service.to_string()),
                host_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                host_port: e.port.host_port,
                port: e.port.port,
                protocol: e.port.protocol.as_str().to_owned(),
                target: e.here.as_ref().ok().map(|rules| {
                    let targets: Vec<String> =
                        rules.iter().map(|d| SocketAddr::new(d.vip, d.port).to_string()).collect();
                    targets.join(", ")
                }),
                not_open: e.here.err(),
                origin: e.origin.as_str().to_owned(),
                relays: Default::default(),
            })
            .collect()
    }

    /// `publish --service NAME HOSTPORT:PORT[/PROTO]`: a new version of the
    /// service's definition, with the port, for the whole cluster.
    pub fn service_publish(&mut self, name: &str, network: Option<&str>, port: &str) -> OpResult<Vec<PublishInfo>> {
        let key = self.find_service(name, network)?;
        let mesh = validate::mesh_port(port).map_err(PublishError::Mesh)?;
        if let Some(container) = self.layer3_published_on(mesh.host_port, mesh.protocol) {
            return Err(PublishError::Mesh(format!(
                "{}/{} is published here for container {container}",
                mesh.host_port,
                mesh.protocol.as_str()
            ))
            .into());
        }
        let holder = self.services.known.iter().find(|(_, k)| {
            k.config
                .as_ref()
                .is_some_and(|c| c.publish.iter().any(|p| (p.host_port, p.protocol) == (mesh.host_port, mesh.protocol)))
        });
        if let Some((_, k)) = holder.filter(|(other, _)| **other != key) {
            return Err(PublishError::Mesh(format!(
                "{}/{} is published for service {} on {}",
                mesh.host_port,
                mesh.protocol.as_str(),
                k.name,
                k.network
            ))
            .into());
        }
        let known = self.services.known.get_mut(&key).expect("found");
        if known.origin == Origin::Config {
            return Err(ServiceError::FromConfig { name: name.to_owned() }.into());
        }
        let config = known.config.as_mut().expect("a live service");
        config.may_publish(mesh).map_err(PublishError::Mesh)?;
        config.publish.push(mesh);
        known.version = now_ms().max(known.version + 1);
        known.origin = Origin::Runtime;
        self.save();
        self.services_changed();
        Ok(self.publish_ls())
    }

    /// `unpublish` of a mesh port: a new version of its service without it.
    pub(super) fn mesh_unpublish(&mut self, host_port: u16, protocol: &str) -> Result<bool, DaemonError> {
        let found = self.services.known.values_mut().find(|k| {
            k.config
                .as_ref()
                .is_some_and(|c| c.publish.iter().any(|p| (p.host_port, p.protocol.as_str()) == (host_port, protocol)))
        });
        let Some(known) = found else { return Ok(false) };
        if known.origin == Origin::Config {
            return Err(PublishError::InConfig.into());
        }
        let config = known.config.as_mut().expect("found live");
        config.publish.retain(|p| (p.host_port, p.protocol.as_str()) != (host_port, protocol));
        known.version = now_ms().max(known.version + 1);
        known.origin = Origin::Runtime;
        self.save();
        self.services_changed();
        Ok(true)
    }
}

fn dnat(port: MeshPort, vip: IpAddr) -> Dnat {
    let protocol = match port.protocol {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
    };
    Dnat { protocol, host_port: port.host_port, vip, port: port.port }
}
