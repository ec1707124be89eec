//! Network policy: rules from host.toml's `[[policy]]`, `switchctl policy
//! add` or the cluster (each host publishes the policies of the networks
//! it carries; the newest record of a name wins, a removal included, as
//! for services), compiled against the endpoints the cluster has (names,
//! services and addresses, here and on other hosts) into what the data
//! path enforces ([`crate::switch::policy`]). Compiled again whenever
//! endpoints, services or policies change.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hashbrown::HashMap;
use serde::{Deserialize, Serialize};
use switchd_config::raw::RawPolicy;
use switchd_config::{KeyPath, MacAddr, Name, PolicyConfig, Selector, validate};
use switchd_overlay::gossip::state::PolicyRecord;
use switchd_overlay::gossip::table::policy_supersedes;

use super::error::{DaemonError, Invalid, OpResult};
use super::service::{TOMBSTONE_TTL, now_ms};
use super::{Daemon, Origin};
use crate::control::api::PolicyInfo;
use crate::switch::balance::ServicePort;
use crate::switch::policy::{Rule, Sources};

/// An endpoint as a selector sees it.
struct Seen<'a> {
    network: &'a Name,
    name: &'a Name,
    ip: Ipv4Addr,
    /// Its given IPv6 address, if any.
    ip6: Option<Ipv6Addr>,
    mac: Option<MacAddr>,
    services: &'a [Name],
}

fn selects(selector: &Selector, e: &Seen) -> bool {
    match selector {
        Selector::All => true,
        Selector::Service(s) => e.services.contains(s),
        Selector::Name(pattern) => Selector::name_matches(pattern, e.name.as_str()),
        Selector::Cidr(net) => net.contains(&IpAddr::V4(e.ip)),
        Selector::Network(n) => e.network == n,
    }
}

/// Policies one host knows at most, removals included.
pub const MAX_POLICIES: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("no policy {0:?}")]
    NotFound(String),
    #[error("policy {0:?} already exists")]
    Exists(String),
    #[error("policy {0:?} is in host.toml; remove it there, then reload")]
    FromConfig(String),
    #[error("this host knows {MAX_POLICIES} policies already")]
    TooMany,
}

/// A policy this host knows, and where it got it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownPolicy {
    pub name: Name,
    /// `None`: removed, remembered until `version` is a while old.
    pub config: Option<PolicyConfig>,
    pub version: u64,
    pub origin: Origin,
}

impl Daemon {
    /// The live policies, by name: the data path numbers its rules so.
    pub(super) fn live_policies(&self) -> impl Iterator<Item = &PolicyConfig> {
        self.policies.values().filter_map(|k| k.config.as_ref())
    }

    /// host.toml's policies and those saved, at start.
    pub(super) fn restore_policies(&mut self, config: Vec<PolicyConfig>, saved: Vec<KnownPolicy>) {
        for k in saved {
            self.policies.insert(k.name.clone(), k);
        }
        self.apply_config_policies(config);
    }

    /// Makes host.toml's `[[policy]]`s the policies of origin config, at
    /// start and at a reload (see [`Daemon::apply_config_services`]).
    pub(super) fn apply_config_policies(&mut self, config: Vec<PolicyConfig>) -> (Vec<String>, Vec<String>) {
        let (mut added, mut removed) = (Vec::new(), Vec::new());
        for k in self.policies.values_mut() {
            if k.origin == Origin::Config && k.config.is_some() && !config.iter().any(|c| c.name == k.name) {
                k.config = None;
                k.version = now_ms().max(k.version + 1);
                k.origin = Origin::Runtime;
                removed.push(format!("policy {}", k.name));
            }
        }
        for c in config {
            let old = self.policies.get(&c.name);
            if old.is_some_and(|k| k.origin == Origin::Config && k.config.as_ref() == Some(&c)) {
                continue;
            }
            let version = now_ms().max(old.map_or(0, |k| k.version + 1));
            added.push(format!("policy {}", c.name));
            let known = KnownPolicy { name: c.name.clone(), config: Some(c), version, origin: Origin::Config };
            self.policies.insert(known.name.clone(), known);
        }
        (added, removed)
    }

    /// The policies to publish: those of networks this host carries.
    pub(super) fn published_policies(&self, carried: &dyn Fn(&Name) -> bool) -> Vec<PolicyRecord> {
        self.policies
            .values()
            .filter(|k| k.config.as_ref().is_none_or(|c| carried(&c.network)))
            .map(|k| PolicyRecord { name: k.name.clone(), config: k.config.clone(), version: k.version })
            .collect()
    }

    /// Takes the cluster's newer records, and forgets old removals.
    pub(super) fn adopt_cluster_policies(&mut self) -> bool {
        let mut changed = false;
        for (name, record) in &self.cluster.table.policies {
            let ours = self.policies.get(name);
            let ours_record =
                ours.map(|k| PolicyRecord { name: k.name.clone(), config: k.config.clone(), version: k.version });
            if ours_record.as_ref().is_some_and(|o| !policy_supersedes(record, o)) {
                continue;
            }
            if ours.is_none() && (record.config.is_none() || self.policies.len() >= MAX_POLICIES) {
                continue;
            }
            if ours.is_some_and(|k| k.origin == Origin::Config) && record.config.is_some() {
                continue;
            }
            tracing::info!(
                "policy {name}: {} from the cluster",
                if record.config.is_some() { "defined" } else { "removed" }
            );
            let known = KnownPolicy {
                name: name.clone(),
                config: record.config.clone(),
                version: record.version,
                origin: Origin::Cluster,
            };
            self.policies.insert(name.clone(), known);
            changed = true;
        }
        let (now, ttl) = (now_ms(), TOMBSTONE_TTL.as_millis() as u64);
        let before = self.policies.len();
        self.policies.retain(|_, k| k.config.is_some() || now.saturating_sub(k.version) < ttl);
        changed |= self.policies.len() != before;
        if changed {
            self.save();
        }
        changed
    }

    fn policy_info(&self, k: &KnownPolicy, c: &PolicyConfig) -> PolicyInfo {
        let endpoints = self.policy_endpoints();
        let mut selects: Vec<String> = endpoints
            .iter()
            .filter(|e| *e.network == c.network && selects(&c.select, e))
            .map(|e| e.name.to_string())
            .collect();
        selects.sort();
        selects.dedup();
        PolicyInfo {
            name: k.name.to_string(),
            network: c.network.to_string(),
            select: c.select.to_string(),
            from: c.from.iter().map(|s| s.to_string()).collect(),
            ports: c.ports.iter().map(|p| p.to_string()).collect(),
            origin: k.origin.as_str().to_owned(),
            selects,
        }
    }

    /// `policy ls`.
    pub fn policy_ls(&self) -> Vec<PolicyInfo> {
        self.policies.values().filter_map(|k| Some(self.policy_info(k, k.config.as_ref()?))).collect()
    }

    /// `policy add`: for the whole cluster.
    pub fn policy_add(&mut self, raw: &RawPolicy) -> OpResult<PolicyInfo> {
        let config = validate::policy(raw, &self.networks.configs(), &KeyPath::root()).map_err(Invalid::from)?;
        let old = self.policies.get(&config.name).cloned();
        if old.as_ref().is_some_and(|k| k.config.is_some()) {
            return Err(PolicyError::Exists(config.name.to_string()).into());
        }
        if old.is_none() && self.policies.len() >= MAX_POLICIES {
            return Err(PolicyError::TooMany.into());
        }
        let version = now_ms().max(old.map_or(0, |k| k.version + 1));
        let known = KnownPolicy { name: config.name.clone(), config: Some(config), version, origin: Origin::Runtime };
        let info = self.policy_info(&known, known.config.as_ref().expect("just made"));
        self.policies.insert(known.name.clone(), known);
        self.commit();
        Ok(info)
    }

    /// `policy rm`: from the whole cluster.
    pub fn policy_rm(&mut self, name: &str) -> OpResult<PolicyInfo> {
        let k = self
            .policies
            .values()
            .find(|k| k.name.as_str() == name && k.config.is_some())
            .cloned()
            .ok_or_else(|| DaemonError::from(PolicyError::NotFound(name.to_owned())))?;
        if k.origin == Origin::Config {
            return Err(PolicyError::FromConfig(name.to_owned()).into());
        }
        let info = self.policy_info(&k, k.config.as_ref().expect("live"));
        let gone = KnownPolicy { config: None, version: now_ms().max(k.version + 1), origin: Origin::Runtime, ..k };
        self.policies.insert(gone.name.clone(), gone);
        self.commit();
        Ok(info)
    }

    /// Every endpoint with an IPv4 address, here and elsewhere.
    fn policy_endpoints(&self) -> Vec<Seen<'_>> {
        let local = self.endpoints.iter().filter_map(|e| match e.record.ip? {
            IpAddr::V4(ip) => {
                let (network, name, mac, services) =
                    (&e.record.network, &e.record.name, e.record.mac, &e.record.services);
                Some(Seen { network, name, ip, ip6: e.record.ip6, mac, services })
            }
            IpAddr::V6(_) => None,
        });
        let remote = self.cluster.table.hosts.values().flat_map(|h| &h.endpoints).filter_map(|e| match e.ip? {
            IpAddr::V4(ip) => {
                let (network, name, services) = (&e.network, &e.name, &e.services);
                Some(Seen { network, name, ip, ip6: e.ip6, mac: Some(e.mac), services })
            }
            IpAddr::V6(_) => None,
        });
        local.chain(remote).collect()
    }

    /// The policies, compiled: one rule each, and for every endpoint a
    /// policy selects, the rules that may admit traffic to it.
    pub(super) fn compile_policy(&self) -> (Vec<Rule>, HashMap<Ipv4Addr, Vec<u32>>) {
        // Without a policy or an icc = false network nothing is isolated,
        // and a gossip change lists no endpoint (there may be 10,000).
        let isolating = self.live_policies().next().is_some() || self.networks.iter().any(|n| !n.config.icc);
        let endpoints = if isolating { self.policy_endpoints() } else { Vec::new() };
        let mut rules = Vec::new();
        let mut isolated: HashMap<Ipv4Addr, Vec<u32>> = HashMap::new();
        for (i, p) in self.live_policies().enumerate() {
            let mut from = Sources::default();
            for s in &p.from {
                match s {
                    Selector::All => from.any = true,
                    Selector::Cidr(ipnet::IpNet::V4(net)) => from.nets.push(*net),
                    Selector::Cidr(ipnet::IpNet::V6(_)) => {}
                    Selector::Network(n) => match self.networks.find(n.as_str()).and_then(|n| n.config.subnet) {
                        Some(subnet) => match subnet.net() {
                            ipnet::IpNet::V4(v4) => from.nets.push(v4),
                            ipnet::IpNet::V6(_) => {}
                        },
                        // A network without a subnet here: its endpoints, as known.
                        None => from.addresses.extend(endpoints.iter().filter(|e| e.network == n).map(|e| e.ip)),
                    },
                    _ => from.addresses.extend(endpoints.iter().filter(|e| selects(s, e)).map(|e| e.ip)),
                }
            }
            let ports = p
                .ports
                .iter()
                .map(|sp| ServicePort {
                    protocol: match sp.protocol {
                        switchd_config::Protocol::Tcp => switchd_wire::ip::Protocol::Tcp,
                        switchd_config::Protocol::Udp => switchd_wire::ip::Protocol::Udp,
                    },
                    port: sp.port,
                })
                .collect();
            rules.push(Rule { from, ports });
            for e in endpoints.iter().filter(|e| *e.network == p.network && selects(&p.select, e)) {
                isolated.entry(e.ip).or_default().push(i as u32);
            }
        }
        // A network without inter-container connectivity isolates all its endpoints.
        for net in self.networks.iter().filter(|n| !n.config.icc) {
            for e in endpoints.iter().filter(|e| *e.network == net.config.name) {
                isolated.entry(e.ip).or_default();
            }
        }
        // Every isolated endpoint still takes what the gateway sends:
        // switchd's own health checks, and published ports' relays.
        let gateways: hashbrown::HashSet<Ipv4Addr> = self
            .networks
            .iter()
            .filter_map(|n| match n.config.gateway {
                Some(IpAddr::V4(gw)) => Some(gw),
                _ => None,
            })
            .collect();
        let gateway_rule = rules.len() as u32;
        rules.push(Rule { from: Sources { addresses: gateways, ..Sources::default() }, ports: Vec::new() });
        for admitted in isolated.values_mut() {
            admitted.push(gateway_rule);
        }
        (rules, isolated)
    }

    /// Programs the compiled policy into the data path.
    pub(super) fn program_policy(&self) {
        let (rules, isolated) = self.compile_policy();
        // Only policing reads the aliases, and it checks nothing while no
        // endpoint is isolated.
        let aliases = if isolated.is_empty() { HashMap::new() } else { self.ipv6_aliases() };
        self.dataplane.update_switch(|s| {
            s.set_policy(rules.clone(), isolated.clone());
            s.set_ipv6_aliases(aliases.clone());
        });
    }

    /// The IPv6 addresses of every endpoint (link-local, and its given and
    /// SLAAC ones on a dual-stack network) and gateway, each with its IPv4
    /// address: policy judges IPv6 as the same endpoints' IPv4.
    fn ipv6_aliases(&self) -> HashMap<Ipv6Addr, Ipv4Addr> {
        use crate::services::icmpv6::endpoint_ip6s;
        use crate::switch::{Gateway, guard::link_local};
        let mut aliases = HashMap::new();
        for e in self.policy_endpoints() {
            let Some(mac) = e.mac else { continue };
            aliases.insert(link_local(mac), e.ip);
            if let Some(net) = self.networks.find(e.network.as_str()) {
                aliases.extend(endpoint_ip6s(&net.config, Some(mac), e.ip6).into_iter().map(|ip6| (ip6, e.ip)));
            }
        }
        for net in self.networks.iter() {
            let c = &net.config;
            let Some(IpAddr::V4(gw)) = c.gateway else { continue };
            aliases.insert(link_local(Gateway::mac_for(c.vni)), gw);
            if let Some(IpAddr::V6(gw6)) = c.gateway6 {
                aliases.insert(gw6, gw);
            }
        }
        aliases
    }

    /// The policy of rule `n` (as the data path numbers them); `None` for
    /// the rule past the last policy's, which admits what gateways send.
    pub(super) fn policy_named(&self, n: u32) -> Option<&PolicyConfig> {
        self.live_policies().nth(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_patterns() {
        for (pattern, name, ok) in [
            ("web", "WEB", true),
            ("web-*", "web-1", true),
            ("web-*", "api-1", false),
            ("*-db", "orders-db", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxcyyb", false),
            ("*", "anything", true),
        ] {
            assert_eq!(Selector::name_matches(pattern, name), ok, "{pattern} ~ {name}");
        }
    }
}
