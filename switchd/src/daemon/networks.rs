//! Networks: those host.toml defines, those made at run time, and those
//! joined from the cluster; each one's switch network and gateway ports.
//! `switchctl network create/rm/prune`.

use std::collections::BTreeMap;
use std::path::Path;

use switchd_config::raw::RawNetwork;
use switchd_config::{KeyPath, Name, NetworkConfig, Subnet, Vni, validate};
use switchd_crypto::Key;

use super::Daemon;
use super::error::{DaemonError, Invalid, OpResult};
use super::keys::Scope;
use super::state::Origin;
use crate::control::api::NetworkInfo;
use crate::dataplane::Port;
use crate::io::gateway::GatewayStack;
use crate::switch::{NetworkId, PortGuard, PortId};

/// Why a network operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("no network named {0:?}")]
    NotFound(String),
    #[error("network {0:?} already exists")]
    Exists(String),
    #[error("vni {vni} is already used by network {by:?}")]
    VniTaken { vni: Vni, by: String },
    #[error("network {0:?} is defined in host.toml; remove it there")]
    InConfig(String),
    #[error("network {name:?} is defined by {hosts}; remove it there")]
    DefinedBy { name: String, hosts: String },
    #[error("network {name:?} has endpoints attached: {attached}; disconnect them first")]
    HasEndpoints { name: String, attached: String },
    #[error("network {name:?} already exists in the cluster with vni {vni} (on {hosts})")]
    OtherVniInCluster { name: String, vni: Vni, hosts: String },
    #[error("vni {vni} is already used in the cluster by network {name:?} (on {hosts})")]
    VniTakenInCluster { vni: Vni, name: String, hosts: String },
}

#[derive(Debug)]
pub(super) struct Network {
    pub config: NetworkConfig,
    pub id: NetworkId,
    pub origin: Origin,
    /// The gateway's kernel stack (DNS over TCP) and its port.
    pub stack: Option<(GatewayStack, PortId)>,
    /// The host side's port, with host access.
    pub host_port: Option<PortId>,
}

/// Every network this host knows, by name.
#[derive(Debug, Default)]
pub(super) struct Networks(BTreeMap<String, Network>);

impl Networks {
    pub fn get(&self, name: &str) -> Result<&Network, NetworkError> {
        self.0.get(name).ok_or_else(|| NetworkError::NotFound(name.to_owned()))
    }

    pub fn find(&self, name: &str) -> Option<&Network> {
        self.0.get(name)
    }

    pub fn find_mut(&mut self, name: &str) -> Option<&mut Network> {
        self.0.get_mut(name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Network> {
        self.0.values()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Every network's configuration (what a port is validated against).
    pub fn configs(&self) -> Vec<NetworkConfig> {
        self.iter().map(|n| n.config.clone()).collect()
    }

    /// The configurations of the networks from `origin` (what is saved).
    pub fn configs_of(&self, origin: Origin) -> Vec<NetworkConfig> {
        self.iter().filter(|n| n.origin == origin).map(|n| n.config.clone()).collect()
    }

    pub fn with_subnet(&self, subnet: Subnet) -> Option<&Network> {
        self.iter().find(|n| n.config.subnet == Some(subnet))
    }

    pub fn uses_vni(&self, vni: u32) -> bool {
        self.iter().any(|n| n.config.vni.get() == vni)
    }

    /// Refuses a network whose name or VNI is taken here.
    pub fn check_is_new(&self, net: &NetworkConfig) -> Result<(), NetworkError> {
        if self.contains(net.name.as_str()) {
            return Err(NetworkError::Exists(net.name.to_string()));
        }
        if let Some(other) = self.iter().find(|n| n.config.vni == net.vni) {
            return Err(NetworkError::VniTaken { vni: net.vni, by: other.config.name.to_string() });
        }
        Ok(())
    }

    fn insert(&mut self, network: Network) {
        self.0.insert(network.config.name.to_string(), network);
    }

    fn remove(&mut self, name: &str) -> Option<Network> {
        self.0.remove(name)
    }
}

impl Daemon {
    /// Adds a network; its name and VNI are known to be new, its key held.
    /// Starts carrying a network. A cipher no one named becomes this
    /// CPU's, whoever defined the network (another host, an earlier boot).
    pub(super) fn add_network(&mut self, config: NetworkConfig, origin: Origin) {
        let config = config.with_this_hosts_cipher();
        if let Some(e) = config.encryption {
            if e.cipher.is_accelerated() {
                tracing::info!(
                    "network {}: sealed with {}{}",
                    config.name,
                    e.cipher,
                    if e.default_cipher { " (the default on this CPU)" } else { "" }
                );
            } else {
                tracing::warn!(
                    "network {}: sealed with {}, which this CPU has no instructions for: slow here (chacha20-poly1305 is not)",
                    config.name,
                    e.cipher
                );
            }
        }
        let id =
            self.dataplane.add_network(config.vni, config.mtu, config.is_encrypted()).expect("checked: the VNI is new");
        let stack = self.start_gateway_stack(&config, id);
        let host_port = self.open_host_side(&config, id);
        self.networks.insert(Network { config, id, origin, stack, host_port });
    }

    /// With host access: the host-side interface `sdgVNI`, holding the
    /// gateway's addresses (IPv4, IPv6 or both), as a port of the network.
    fn open_host_side(&mut self, config: &NetworkConfig, id: NetworkId) -> Option<PortId> {
        let addresses = gateway_addresses(config);
        if !config.host_access || addresses == Default::default() {
            return None;
        }
        let crate::io::gateway::StackAddresses { v4, v6 } = addresses;
        let name = switchd_config::IfName::new(&format!("sdg{}", config.vni)).expect("sdg and 8 digits fit");
        let mac = crate::switch::Gateway::mac_for(config.vni);
        let (mtu, workers) = (config.mtu.get(), self.dataplane.workers());
        let made = match self.system.host_tap(&name, addresses, mac, mtu, false, workers) {
            // A host with IPv6 off keeps IPv4 host access.
            Err(e) if v4.is_some() && v6.is_some() => {
                tracing::warn!(
                    "network {}: host access over IPv4 only, {name} takes no IPv6 address: {e}",
                    config.name
                );
                let v4_only = crate::io::gateway::StackAddresses { v4, v6: None };
                self.system.host_tap(&name, v4_only, mac, mtu, false, workers)
            }
            made => made,
        };
        let tap = match made {
            Ok(tap) => tap,
            Err(e) => {
                tracing::error!("network {}: no host access, {name} could not be made: {e}", config.name);
                return None;
            }
        };
        match self.dataplane.add_port(id, tap, PortGuard::Open) {
            Ok(port) => {
                self.dataplane.update_switch(|s| s.set_host_port(id, Some(port)));
                let shown: Vec<String> = v4
                    .map(|(ip, len)| format!("{ip}/{len}"))
                    .into_iter()
                    .chain(v6.map(|ip| format!("{ip}/64")))
                    .collect();
                tracing::info!("network {}: host access through {name} ({})", config.name, shown.join(", "));
                Some(port)
            }
            Err(e) => {
                tracing::error!("network {}: no host access, {name} cannot be switched: {e}", config.name);
                None
            }
        }
    }

    /// Starts the gateway's kernel stack of a network whose gateway answers
    /// DNS, with its IPv4 and IPv6 addresses. Without it (it failed to
    /// start), DNS over UDP still works.
    fn start_gateway_stack(&mut self, config: &NetworkConfig, id: NetworkId) -> Option<(GatewayStack, PortId)> {
        let addresses = gateway_addresses(config);
        if !config.dns || addresses == Default::default() {
            return None;
        }
        let mac = crate::switch::Gateway::mac_for(config.vni);
        let source = self.dataplane.services_source();
        let started = self.system.gateway_stack(id, addresses, mac, config.mtu.get(), source, &self.runtime);
        let switched = started.and_then(|(stack, tap): (GatewayStack, Box<dyn Port>)| {
            Ok((stack, self.dataplane.add_port(id, vec![tap], PortGuard::Open)?))
        });
        match switched {
            Ok((stack, port)) => {
                self.dataplane.update_switch(|s| s.set_gateway_port(id, Some(port)));
                Some((stack, port))
            }
            Err(e) => {
                tracing::warn!("network {}: no gateway stack, so no DNS over TCP: {e}", config.name);
                None
            }
        }
    }

    pub(super) fn network_create(&mut self, raw: &RawNetwork) -> OpResult<NetworkInfo> {
        // switchctl sends an absolute key_file path.
        let (config, key_file) =
            validate::network(raw, &self.host, Path::new("/"), &KeyPath::root()).map_err(Invalid::from)?;
        self.networks.check_is_new(&config)?;
        self.cluster.check_agrees(&config)?;
        if let Some(path) = key_file {
            let key = Key::load(&path).map_err(super::keys::KeysError::from)?;
            let scope = Scope::Network(config.name.clone());
            if self.keys.ring(&scope).is_none_or(|r| r.get(key.id()).is_none()) {
                self.keys.add(&scope, key)?;
            }
        }
        self.check_key_held(&config)?;
        let name = config.name.to_string();
        self.add_network(config, Origin::Runtime);
        self.commit();
        Ok(self.network_info(self.networks.find(&name).expect("just added")))
    }

    pub(super) fn network_rm(&mut self, names: &[String]) -> OpResult<Vec<String>> {
        let mut errors = Vec::new();
        let mut removed = Vec::new();
        for name in names {
            match self.remove_network(name) {
                Ok(()) => removed.push(name.clone()),
                Err(e) => errors.push(DaemonError::from(e)),
            }
        }
        self.commit();
        if errors.is_empty() { Ok(removed) } else { Err(DaemonError::Several(errors)) }
    }

    /// Removes a network made at run time that no endpoint uses, here or
    /// (by gossip) elsewhere.
    pub(super) fn remove_network(&mut self, name: &str) -> Result<(), NetworkError> {
        let net = self.networks.get(name)?;
        if net.origin == Origin::Config {
            return Err(NetworkError::InConfig(name.to_owned()));
        }
        if net.origin == Origin::Cluster
            && let Some(c) = self.cluster.table.networks.get(&net.config.name)
        {
            let hosts: Vec<&str> = c.hosts.iter().map(Name::as_str).collect();
            return Err(NetworkError::DefinedBy { name: name.to_owned(), hosts: hosts.join(", ") });
        }
        let mut attached: Vec<String> = self.endpoints.on(name).map(|e| e.record.name.to_string()).collect();
        attached
            .extend(self.cluster.table.endpoints_on(&net.config.name).map(|(h, e)| format!("{} ({})", e.name, h.name)));
        if !attached.is_empty() {
            return Err(NetworkError::HasEndpoints { name: name.to_owned(), attached: attached.join(", ") });
        }
        self.drop_network(name);
        Ok(())
    }

    /// Takes a network out of the data plane with its gateway's ports, and
    /// forgets its address claims. Its endpoints are gone already.
    pub(super) fn drop_network(&mut self, name: &str) {
        let Some(removed) = self.networks.remove(name) else { return };
        self.addresses.forget(&removed.config.name);
        for port in removed.stack.map(|(_, port)| port).into_iter().chain(removed.host_port) {
            self.dataplane.remove_port(port);
        }
        self.dataplane.remove_network(removed.id);
        self.cluster.programmed.remove(&removed.id);
    }

    pub(super) fn network_prune(&mut self) -> Vec<String> {
        let unused: Vec<String> = self
            .networks
            .iter()
            .filter(|n| n.origin == Origin::Runtime && self.endpoints.on(n.config.name.as_str()).next().is_none())
            .map(|n| n.config.name.to_string())
            .collect();
        for name in &unused {
            let _ = self.remove_network(name);
        }
        self.commit();
        unused
    }
}

/// The gateway's addresses on a network: IPv4 (with the subnet's prefix
/// length) and IPv6 (with a subnet6), what its kernel stack and its host
/// side hold.
fn gateway_addresses(config: &NetworkConfig) -> crate::io::gateway::StackAddresses {
    let v4 = config.gateway.and_then(crate::services::v4).zip(config.subnet.map(|s| s.prefix_len()));
    let v6 = match config.gateway6.filter(|_| config.subnet6.is_some()) {
        Some(std::net::IpAddr::V6(ip)) => Some(ip),
        _ => None,
    };
    crate::io::gateway::StackAddresses { v4, v6 }
}
