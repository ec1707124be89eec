//! Network policy: host.toml's `[[policy]]` rules, compiled against the
//! endpoints the cluster has (names, services and addresses, here and on
//! other hosts) into what the data path enforces
//! ([`crate::switch::policy`]). Compiled again whenever endpoints,
//! services or policies change.

use hashbrown::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use switchd_config::{Name, PolicyConfig, Selector};

use super::Daemon;
use crate::switch::balance::ServicePort;
use crate::switch::policy::{Rule, Sources};

/// An endpoint as a selector sees it.
struct Seen<'a> {
    network: &'a Name,
    name: &'a Name,
    ip: Ipv4Addr,
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

impl Daemon {
    /// Every endpoint with an IPv4 address, here and elsewhere.
    fn policy_endpoints(&self) -> Vec<Seen<'_>> {
        let local = self.endpoints.iter().filter_map(|e| match e.record.ip? {
            IpAddr::V4(ip) => {
                Some(Seen { network: &e.record.network, name: &e.record.name, ip, services: &e.record.services })
            }
            IpAddr::V6(_) => None,
        });
        let remote = self.cluster.table.hosts.values().flat_map(|h| &h.endpoints).filter_map(|e| match e.ip? {
            IpAddr::V4(ip) => Some(Seen { network: &e.network, name: &e.name, ip, services: &e.services }),
            IpAddr::V6(_) => None,
        });
        local.chain(remote).collect()
    }

    /// The policies, compiled: one rule each, and for every endpoint a
    /// policy selects, the rules that may admit traffic to it.
    pub(super) fn compile_policy(&self) -> (Vec<Rule>, HashMap<Ipv4Addr, Vec<u32>>) {
        let endpoints = self.policy_endpoints();
        let mut rules = Vec::new();
        let mut isolated: HashMap<Ipv4Addr, Vec<u32>> = HashMap::new();
        for (i, p) in self.policies.iter().enumerate() {
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
        (rules, isolated)
    }

    /// Programs the compiled policy into the data path.
    pub(super) fn program_policy(&self) {
        let (rules, isolated) = self.compile_policy();
        self.dataplane.update_switch(|s| s.set_policy(rules.clone(), isolated.clone()));
    }

    /// The policy of rule `n` (as the data path numbers them).
    pub(super) fn policy_named(&self, n: u32) -> Option<&PolicyConfig> {
        self.policies.get(n as usize)
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
