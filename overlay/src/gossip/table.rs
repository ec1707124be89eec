//! The peer table: what every other live host carries, built from their
//! published states. Pure: members and their ages in, a table out.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use switchd_config::{Name, NetworkConfig, Vni};
use switchd_crypto::SessionId;

use std::sync::Arc;

use super::state::{PolicyRecord, Published, RemoteEndpoint, RingState, ServiceRecord};

/// A member of the cluster as gossip sees it.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: Name,
    /// Incremented by every start of the host: the newest wins.
    pub generation: u64,
    /// Shared with the gossip member's cache of decoded states: a member
    /// whose state did not change is not decoded or copied again.
    pub published: Arc<Published>,
    /// Time since its heartbeat last moved.
    pub since_heard: Duration,
}

/// How long silence makes a host suspect, then dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub suspect_after: Duration,
    pub dead_after: Duration,
}

impl Timeouts {
    /// Dead after `dead_after` of silence; suspect after half of it.
    pub fn new(dead_after: Duration) -> Self {
        Timeouts { suspect_after: dead_after / 2, dead_after }
    }

    /// What this much silence makes a host.
    pub fn liveness(&self, since_heard: Duration) -> Liveness {
        match since_heard {
            d if d >= self.dead_after => Liveness::Dead,
            d if d >= self.suspect_after => Liveness::Suspect,
            _ => Liveness::Alive,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Liveness {
    Alive,
    Suspect,
    Dead,
}

impl Liveness {
    pub fn as_str(self) -> &'static str {
        match self {
            Liveness::Alive => "alive",
            Liveness::Suspect => "suspect",
            Liveness::Dead => "dead",
        }
    }
}

/// A remote host in the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub name: Name,
    pub underlay: SocketAddr,
    pub liveness: Liveness,
    pub since_heard: Duration,
    /// Networks it carries (those agreeing with the cluster's definition).
    pub networks: BTreeSet<Name>,
    pub vnis: BTreeSet<Vni>,
    /// Its endpoints on those networks; empty when it is dead.
    pub endpoints: Vec<RemoteEndpoint>,
    /// Its data plane's session of this boot.
    pub session: Option<SessionId>,
    /// Which keys its key rings accept and seal with, by scope.
    pub keys: BTreeMap<String, RingState>,
    /// The address blocks it claims, per network it carries (kept while it
    /// is dead too: its containers' addresses stay reserved until it leaves).
    pub ipam: BTreeMap<Name, BTreeMap<u32, u64>>,
    /// It finishes inner checksums left partial (see `state::PARTIAL_CHECKSUMS`).
    pub partial_checksums: bool,
}

impl Host {
    /// Whether traffic should go to it: alive or suspect, not dead.
    pub fn is_usable(&self) -> bool {
        self.liveness != Liveness::Dead
    }
}

/// A network's definition in a few words, for conflict messages.
pub fn describe(n: &NetworkConfig) -> String {
    let mut s = format!("vni {}, mtu {}", n.vni, n.mtu);
    if let Some(subnet) = n.subnet {
        s += &format!(", subnet {subnet}");
    }
    match n.encryption {
        Some(e) => {
            s += &format!(
                ", encrypted ({}, {} key)",
                e.cipher,
                if e.key == switchd_config::KeySource::Own { "own" } else { "cluster" }
            )
        }
        None => s += ", not encrypted",
    }
    s
}

/// A network as the cluster defines it, and the hosts that carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNetwork {
    /// The definition; when hosts seal with different ciphers, the cipher
    /// of the first host (by name) that named one, else of the first host.
    pub config: NetworkConfig,
    pub hosts: BTreeSet<Name>,
    /// What each of those hosts seals with, when encrypted (every host
    /// opens both ciphers, so they may differ).
    pub ciphers: BTreeMap<Name, switchd_config::Cipher>,
}

/// Every other host, and the cluster's networks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerTable {
    /// By name; the local host is never in it.
    pub hosts: BTreeMap<Name, Host>,
    /// Networks published by usable hosts, by name.
    pub networks: BTreeMap<Name, ClusterNetwork>,
    /// Definitions that disagreed and lost, for the log.
    pub conflicts: Vec<String>,
    /// Services by (network, name): of every member's record, the one of
    /// the highest version (a removal wins a tie), dead members' included
    /// (a service outlives the host that made it).
    pub services: BTreeMap<(Name, Name), ServiceRecord>,
    /// Policies by name, chosen as services are.
    pub policies: BTreeMap<Name, PolicyRecord>,
}

/// Whether policy record `a` supersedes `b`, as [`supersedes`] for services.
pub fn policy_supersedes(a: &PolicyRecord, b: &PolicyRecord) -> bool {
    a.version > b.version || (a.version == b.version && a.config.is_none() && b.config.is_some())
}

/// Whether service record `a` supersedes `b`: newer, or a removal of the
/// same version.
pub fn supersedes(a: &ServiceRecord, b: &ServiceRecord) -> bool {
    a.version > b.version || (a.version == b.version && a.config.is_none() && b.config.is_some())
}

impl PeerTable {
    /// Builds the table from the members gossip knows (the local host's own
    /// entry excluded by the caller). Per name the newest generation counts;
    /// a host that announced it is leaving is dropped at once; one silent
    /// for `timeouts.dead_after` is dead and contributes nothing. When hosts
    /// define a network differently, the definition most hosts use wins
    /// (ties: the smallest host name), so every host picks the same one.
    /// The cipher is no part of a definition (see
    /// [`NetworkConfig::same_definition`]): hosts sealing differently carry
    /// the network together, and `ciphers` says who seals with what.
    pub fn build(members: impl IntoIterator<Item = Member>, timeouts: Timeouts) -> PeerTable {
        let mut newest: BTreeMap<Name, Member> = BTreeMap::new();
        for m in members {
            match newest.get(&m.name) {
                Some(seen) if seen.generation >= m.generation => {}
                _ => {
                    newest.insert(m.name.clone(), m);
                }
            }
        }
        let members: Vec<Member> = newest.into_values().filter(|m| !m.published.leaving).collect();
        let liveness = |m: &Member| timeouts.liveness(m.since_heard);

        // Candidate definitions per network name, from usable hosts.
        let mut candidates: BTreeMap<Name, Vec<(&NetworkConfig, &Name)>> = BTreeMap::new();
        for m in members.iter().filter(|m| liveness(m) != Liveness::Dead) {
            for net in m.published.networks.values() {
                candidates.entry(net.name.clone()).or_default().push((net, &m.name));
            }
        }
        let mut table = PeerTable::default();
        for s in members.iter().flat_map(|m| &m.published.services) {
            let key = (s.network.clone(), s.name.clone());
            if table.services.get(&key).is_none_or(|old| supersedes(s, old)) {
                table.services.insert(key, s.clone());
            }
        }
        for r in members.iter().flat_map(|m| &m.published.policies) {
            if table.policies.get(&r.name).is_none_or(|old| policy_supersedes(r, old)) {
                table.policies.insert(r.name.clone(), r.clone());
            }
        }
        let mut winners = Vec::new();
        for (name, defs) in candidates {
            let mut tally: Vec<(&NetworkConfig, BTreeSet<Name>)> = Vec::new();
            // Hosts come in name order, so the choice of the definition
            // standing for its group is the same on every host.
            for (config, host) in defs {
                match tally.iter_mut().find(|(c, _)| c.same_definition(config)) {
                    Some((c, hosts)) => {
                        if c.encryption.is_some_and(|e| e.default_cipher)
                            && config.encryption.is_some_and(|e| !e.default_cipher)
                        {
                            *c = config;
                        }
                        hosts.insert(host.clone());
                    }
                    None => tally.push((config, [host.clone()].into())),
                }
            }
            tally.sort_by(|a, b| popularity(&a.1, &b.1));
            let (winner, hosts) = tally.remove(0);
            for (lost, by) in &tally {
                table.conflicts.push(format!(
                    "network {name:?}: {} define it as {}, ignored for {} as most hosts define it",
                    by.iter().map(Name::as_str).collect::<Vec<_>>().join(","),
                    describe(lost),
                    describe(winner)
                ));
            }
            winners.push((winner, hosts));
        }
        // A VNI goes to the most widely carried network that claims it.
        winners.sort_by(|a, b| popularity(&a.1, &b.1));
        let mut vni_owner: BTreeMap<Vni, Name> = BTreeMap::new();
        for (config, hosts) in winners {
            if let Some(owner) = vni_owner.get(&config.vni) {
                table.conflicts.push(format!(
                    "network {:?}: vni {} already belongs to network {owner:?}",
                    config.name.as_str(),
                    config.vni
                ));
                continue;
            }
            vni_owner.insert(config.vni, config.name.clone());
            table.networks.insert(
                config.name.clone(),
                ClusterNetwork { config: config.clone(), hosts, ciphers: BTreeMap::new() },
            );
        }

        for m in members {
            let state = liveness(&m);
            let agreed: BTreeSet<Name> = m
                .published
                .networks
                .values()
                .filter(|n| table.networks.get(&n.name).is_some_and(|c| c.config.same_definition(n)))
                .map(|n| n.name.clone())
                .collect();
            if state != Liveness::Dead {
                for n in m.published.networks.values().filter(|n| agreed.contains(&n.name)) {
                    if let (Some(c), Some(e)) = (table.networks.get_mut(&n.name), n.encryption) {
                        c.ciphers.insert(m.name.clone(), e.cipher);
                    }
                }
            }
            let usable = state != Liveness::Dead;
            let host = Host {
                name: m.name.clone(),
                underlay: m.published.underlay,
                liveness: state,
                since_heard: m.since_heard,
                vnis: agreed.iter().map(|n| table.networks[n].config.vni).collect(),
                endpoints: if usable {
                    m.published.endpoints.iter().filter(|e| agreed.contains(&e.network)).cloned().collect()
                } else {
                    Vec::new()
                },
                ipam: m
                    .published
                    .ipam
                    .iter()
                    .filter(|(n, _)| agreed.contains(*n))
                    .map(|(n, c)| (n.clone(), c.clone()))
                    .collect(),
                networks: agreed,
                session: m.published.session,
                keys: m.published.keys.clone(),
                partial_checksums: m.published.partial_checksums,
            };
            table.hosts.insert(m.name, host);
        }
        table
    }

    /// Usable hosts that, by their gossip, do not accept key `id` in `scope`.
    pub fn hosts_not_accepting<'a>(
        &'a self,
        scope: &'a str,
        id: switchd_crypto::KeyId,
    ) -> impl Iterator<Item = &'a Host> {
        self.hosts
            .values()
            .filter(move |h| h.is_usable() && !h.keys.get(scope).is_some_and(|r| r.accepted.contains(&id)))
    }

    /// Usable hosts that, by their gossip, seal with key `id` in `scope`.
    pub fn hosts_sending<'a>(&'a self, scope: &'a str, id: switchd_crypto::KeyId) -> impl Iterator<Item = &'a Host> {
        self.hosts.values().filter(move |h| h.is_usable() && h.keys.get(scope).is_some_and(|r| r.sending == id))
    }

    /// The networks whose remote endpoints differ from `self` to `next`
    /// (endpoints, their host's address or usability): all that a host
    /// needs to reprogram. `None` when more than endpoints changed (the
    /// cluster's networks, services or policies, or what hosts carry).
    pub fn networks_changed(&self, next: &PeerTable) -> Option<BTreeSet<Name>> {
        // Which hosts carry a network, and their ciphers, are for display
        // and the log: what is programmed goes by the definition.
        if !self.networks.values().map(|n| &n.config).eq(next.networks.values().map(|n| &n.config))
            || self.services != next.services
            || self.policies != next.policies
            || self.conflicts != next.conflicts
        {
            return None;
        }
        let mut changed = BTreeSet::new();
        let names: BTreeSet<&Name> = self.hosts.keys().chain(next.hosts.keys()).collect();
        for name in names {
            let (old, new) = (self.hosts.get(name), next.hosts.get(name));
            if let (Some(o), Some(n)) = (old, new)
                && (o.networks != n.networks || o.vnis != n.vnis)
            {
                return None;
            }
            if old.map(routes) != new.map(routes) {
                let endpoints = old.into_iter().chain(new).flat_map(|h| &h.endpoints);
                changed.extend(endpoints.map(|e| e.network.clone()));
            }
        }
        Some(changed)
    }

    /// Moves each host's time since heard to what `members` say, the
    /// newest generation of each name counting (as in [`Self::build`]):
    /// for a tick where nothing but silence changed, whose liveness
    /// classes did not (see [`Timeouts::liveness`]).
    pub fn refresh_ages(&mut self, members: &[Member]) {
        let mut newest: hashbrown::HashMap<&Name, &Member> = hashbrown::HashMap::with_capacity(members.len());
        for m in members {
            let seen = newest.entry(&m.name).or_insert(m);
            if m.generation > seen.generation {
                *seen = m;
            }
        }
        for (name, m) in newest {
            if let Some(host) = self.hosts.get_mut(name) {
                host.since_heard = m.since_heard;
            }
        }
    }

    /// Usable hosts carrying `network`, with their endpoints on it.
    pub fn endpoints_on<'a>(&'a self, network: &'a Name) -> impl Iterator<Item = (&'a Host, &'a RemoteEndpoint)> + 'a {
        self.hosts
            .values()
            .filter(|h| h.is_usable())
            .flat_map(move |h| h.endpoints.iter().filter(move |e| &e.network == network).map(move |e| (h, e)))
    }
}

/// What of a host its endpoints' forwarding entries depend on.
fn routes(h: &Host) -> (SocketAddr, bool, &[RemoteEndpoint]) {
    (h.underlay, h.is_usable(), &h.endpoints)
}

/// Orders definitions: carried by more hosts first, then by the smallest host name.
fn popularity(a: &BTreeSet<Name>, b: &BTreeSet<Name>) -> std::cmp::Ordering {
    b.len().cmp(&a.len()).then_with(|| a.first().cmp(&b.first()))
}

#[cfg(test)]
mod tests {
    use switchd_config::{MacAddr, Mtu};

    use super::*;

    fn net(name: &str, vni: u32) -> NetworkConfig {
        NetworkConfig {
            name: Name::new(name).unwrap(),
            vni: Vni::new(vni).unwrap(),
            subnet: None,
            gateway: None,
            mtu: Mtu::new(1450).unwrap(),
            internal: false,
            encryption: None,
            dns: false,
            dhcp: false,
            host_access: false,
            icc: true,
            subnet6: None,
            gateway6: None,
        }
    }

    fn member(name: &str, generation: u64, nets: &[NetworkConfig], eps: &[(&str, u8)], heard_secs: u64) -> Member {
        Member {
            name: Name::new(name).unwrap(),
            generation,
            published: Arc::new(Published {
                underlay: format!("198.18.0.{}:4789", name.len()).parse().unwrap(),
                leaving: false,
                session: None,
                keys: Default::default(),
                networks: nets.iter().map(|n| (n.name.clone(), n.clone())).collect(),
                endpoints: eps
                    .iter()
                    .map(|(n, m)| RemoteEndpoint {
                        network: Name::new(n).unwrap(),
                        mac: MacAddr([2, 0, 0, 0, 0, *m]),
                        ip: None,
                        ip6: None,
                        name: Name::new(&format!("c{m}")).unwrap(),
                        services: Vec::new(),
                        down: Vec::new(),
                    })
                    .collect(),
                ipam: Default::default(),
                services: Vec::new(),
                policies: Vec::new(),
                partial_checksums: true,
            }),
            since_heard: Duration::from_secs(heard_secs),
        }
    }

    const T: Timeouts = Timeouts { suspect_after: Duration::from_secs(4), dead_after: Duration::from_secs(8) };

    #[test]
    fn hosts_networks_and_endpoints() {
        let t = PeerTable::build(
            [
                member("a", 1, &[net("front", 10)], &[("front", 1)], 0),
                member("bb", 1, &[net("front", 10), net("back", 20)], &[("front", 2), ("back", 3)], 5),
            ],
            T,
        );
        assert_eq!(t.networks.len(), 2);
        assert_eq!(t.networks[&Name::new("front").unwrap()].hosts.len(), 2);
        assert_eq!(t.hosts[&Name::new("bb").unwrap()].liveness, Liveness::Suspect, "suspect is still usable");
        let front = Name::new("front").unwrap();
        let macs: Vec<u8> = t.endpoints_on(&front).map(|(_, e)| e.mac.0[5]).collect();
        assert_eq!(macs, vec![1, 2]);
        assert!(t.conflicts.is_empty());
    }

    #[test]
    fn a_change_names_only_the_networks_it_touches() {
        let nets = [net("front", 10), net("back", 20)];
        let before = PeerTable::build(
            [member("a", 1, &nets, &[("front", 1), ("back", 2)], 0), member("bb", 1, &nets, &[("back", 3)], 0)],
            T,
        );
        let names = |list: &[&str]| list.iter().map(|n| Name::new(n).unwrap()).collect::<BTreeSet<_>>();
        // bb's container on back moves to another MAC; a is untouched.
        let moved = PeerTable::build(
            [member("a", 1, &nets, &[("front", 1), ("back", 2)], 0), member("bb", 1, &nets, &[("back", 4)], 0)],
            T,
        );
        assert_eq!(before.networks_changed(&moved), Some(names(&["back"])));
        // Only silence: nothing to redo.
        let older = PeerTable::build(
            [member("a", 1, &nets, &[("front", 1), ("back", 2)], 1), member("bb", 1, &nets, &[("back", 3)], 2)],
            T,
        );
        assert_eq!(before.networks_changed(&older), Some(names(&[])));
        // a dies: both networks it had endpoints on.
        let dead = PeerTable::build(
            [member("a", 1, &nets, &[("front", 1), ("back", 2)], 9), member("bb", 1, &nets, &[("back", 3)], 0)],
            T,
        );
        assert_eq!(before.networks_changed(&dead), Some(names(&["back", "front"])));
        // A network defined anew (another VNI) is more than endpoints.
        let redefined = PeerTable::build(
            [member("a", 1, &[net("front", 11)], &[("front", 1)], 0), member("bb", 1, &[net("front", 11)], &[], 0)],
            T,
        );
        assert_eq!(before.networks_changed(&redefined), None);
    }

    #[test]
    fn dead_and_leaving_hosts_contribute_nothing() {
        let mut leaving = member("c", 1, &[net("front", 10)], &[("front", 9)], 0);
        Arc::make_mut(&mut leaving.published).leaving = true;
        let t = PeerTable::build([member("a", 1, &[net("front", 10)], &[("front", 1)], 9), leaving], T);
        let a = &t.hosts[&Name::new("a").unwrap()];
        assert_eq!(a.liveness, Liveness::Dead);
        assert!(a.endpoints.is_empty());
        assert!(!t.hosts.contains_key(&Name::new("c").unwrap()), "a leaving host is gone at once");
        assert!(t.networks.is_empty(), "no usable host defines front");
    }

    #[test]
    fn the_newest_generation_of_a_host_counts() {
        let t = PeerTable::build(
            [member("a", 2, &[net("n", 1)], &[("n", 2)], 0), member("a", 1, &[net("n", 1)], &[("n", 1)], 30)],
            T,
        );
        let a = &t.hosts[&Name::new("a").unwrap()];
        assert_eq!(a.liveness, Liveness::Alive);
        assert_eq!(a.endpoints[0].mac.0[5], 2);
    }

    #[test]
    fn conflicting_definitions_resolve_the_same_everywhere() {
        let members = [
            member("a", 1, &[net("n", 1)], &[("n", 1)], 0),
            member("b", 1, &[net("n", 2)], &[("n", 2)], 0),
            member("c", 1, &[net("n", 2)], &[], 0),
            member("d", 1, &[net("m", 2)], &[], 0),
        ];
        let t = PeerTable::build(members.clone(), T);
        assert_eq!(t.networks[&Name::new("n").unwrap()].config.vni.get(), 2, "most hosts win");
        assert!(!t.networks.contains_key(&Name::new("m").unwrap()), "vni 2 is taken");
        assert_eq!(t.conflicts.len(), 2, "{:?}", t.conflicts);
        assert!(t.hosts[&Name::new("a").unwrap()].endpoints.is_empty(), "a's endpoints are on the losing definition");
        // The order members arrive in does not matter.
        let mut reversed = members;
        reversed.reverse();
        assert_eq!(PeerTable::build(reversed, T), t);
    }

    #[test]
    fn hosts_sealing_with_different_ciphers_carry_a_network_together() {
        use switchd_config::{Cipher, Encryption, KeySource};
        let sealed = |cipher, default_cipher, key| NetworkConfig {
            encryption: Some(Encryption { cipher, default_cipher, key }),
            ..net("vault", 300)
        };
        let (aes, chacha) = (Cipher::Aes256Gcm, Cipher::ChaCha20Poly1305);
        let members = [
            // Two CPUs, each host's default its own: one definition.
            member("a", 1, &[sealed(aes, true, KeySource::Cluster)], &[("vault", 1)], 0),
            member("b", 1, &[sealed(chacha, true, KeySource::Cluster)], &[("vault", 2)], 0),
            // A named cipher stands for the definition: adopters use it.
            member("c", 1, &[sealed(chacha, false, KeySource::Cluster)], &[("vault", 3)], 0),
            // Another key ring is another definition, and loses.
            member("d", 1, &[sealed(aes, true, KeySource::Own)], &[("vault", 4)], 0),
        ];
        let t = PeerTable::build(members.clone(), T);
        let vault = &t.networks[&Name::new("vault").unwrap()];
        let names = |v: &[&str]| v.iter().map(|n| Name::new(n).unwrap()).collect::<BTreeSet<_>>();
        assert_eq!(vault.hosts, names(&["a", "b", "c"]));
        assert_eq!(vault.config, sealed(chacha, false, KeySource::Cluster));
        let ciphers: Vec<(&str, Cipher)> = vault.ciphers.iter().map(|(h, c)| (h.as_str(), *c)).collect();
        assert_eq!(ciphers, [("a", aes), ("b", chacha), ("c", chacha)]);
        for h in ["a", "b", "c"] {
            assert_eq!(t.hosts[&Name::new(h).unwrap()].endpoints.len(), 1, "{h} carries vault");
        }
        assert!(t.hosts[&Name::new("d").unwrap()].endpoints.is_empty(), "d's key ring differs");
        assert_eq!(t.conflicts.len(), 1, "{:?}", t.conflicts);
        let mut reversed = members;
        reversed.reverse();
        assert_eq!(PeerTable::build(reversed, T), t);
    }

    #[test]
    fn a_service_is_the_newest_record_of_any_member_dead_ones_included() {
        let net = Name::new("front").unwrap();
        let record = |name: &str, version: u64, removed: bool| ServiceRecord {
            network: net.clone(),
            name: Name::new(name).unwrap(),
            config: (!removed).then(|| switchd_config::ServiceConfig {
                network: net.clone(),
                name: Name::new(name).unwrap(),
                mode: switchd_config::ServiceMode::Dnsrr,
                vip: None,
                vip6: None,
                ports: Vec::new(),
                health: None,
                publish: Vec::new(),
            }),
            version,
        };
        let mut a = member("a", 1, &[], &[], 0);
        Arc::make_mut(&mut a.published).services = vec![record("web", 5, false), record("db", 3, false)];
        let mut b = member("b", 1, &[], &[], 100);
        Arc::make_mut(&mut b.published).services = vec![record("web", 6, true), record("db", 3, true)];
        let t = PeerTable::build([a, b], T);
        let web = &t.services[&(net.clone(), Name::new("web").unwrap())];
        assert!(web.config.is_none() && web.version == 6, "the newer removal, from a dead host");
        let db = &t.services[&(net.clone(), Name::new("db").unwrap())];
        assert!(db.config.is_none(), "a removal wins a tie");
    }
}
