//! The other hosts: static `[[peer]]`s, and the cluster gossip tells of.
//! The daemon's side of gossip: what this host publishes, and turning the
//! peer table into networks, VTEPs, forwarding entries and neighbour
//! answers. The gossip itself runs on tokio (`crate::cluster`), which calls
//! [`Daemon::update_cluster`] only when what the table routes by changed;
//! how long ago each host was heard it shares through a watch channel,
//! which `switchctl peers` reads without disturbing the daemon.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use switchd_config::{MacAddr, Name, NetworkConfig, PeerConfig, Vni};
use switchd_overlay::gossip::state::{Published, RemoteEndpoint};
use switchd_overlay::gossip::table::{Member, PeerTable, describe};
use switchd_overlay::gossip::transport::GossipStats;
use tokio::sync::watch;

use super::Daemon;
use super::ipam::Claims;
use super::networks::{Network, NetworkError};
use super::state::Origin;
use crate::switch::{NetworkId, PeerKind, VtepId};

/// A remote VTEP from `[[peer]]`.
#[derive(Debug)]
pub(super) struct StaticPeer {
    pub config: PeerConfig,
    pub vtep: VtepId,
}

impl StaticPeer {
    /// What its config says it is: a kernel vxlan device, as far as anyone
    /// knows, unless `switchd = true` (gossip may say more, see
    /// [`Daemon::sync_vteps`]).
    pub fn kind(&self) -> PeerKind {
        if self.config.switchd { PeerKind::Switchd } else { PeerKind::Vxlan }
    }
}

/// What a host found by gossip is sent: partial inner checksums when it
/// says it finishes them (every switchd since they were introduced).
fn gossip_kind(partial_checksums: bool) -> PeerKind {
    if partial_checksums { PeerKind::Switchd } else { PeerKind::Vxlan }
}

/// What the daemon keeps of the other hosts.
#[derive(Debug, Default)]
pub(super) struct ClusterState {
    /// The `[[peer]]`s of host.toml.
    pub peers: Vec<StaticPeer>,
    /// The peer table as last changed (for `peers`, `network ls/inspect`,
    /// `fdb`); how long ago each host was heard is in `heard`.
    pub table: PeerTable,
    /// The gossip member's latest table, ages included.
    pub heard: Option<watch::Receiver<PeerTable>>,
    /// The gossip members heard before the last stop, routed by from the
    /// start until the gossip member takes them over (`crate::cluster`).
    pub kept_members: Vec<Member>,
    /// The VTEP of each remote host in the table.
    pub vteps: BTreeMap<Name, GossipVtep>,
    /// Where this host's published state goes; `None` without `[gossip]`.
    pub publisher: Option<watch::Sender<Published>>,
    pub stats: Option<Arc<GossipStats>>,
    /// Entries other hosts published that were skipped as invalid.
    pub state_errors: u64,
    /// Conflicts already logged, so each is logged once.
    pub logged: BTreeSet<String>,
    /// Cluster networks this host does not carry (it lacks their key), and why.
    pub refused: BTreeMap<Name, String>,
    /// Each network's gossip entries and neighbour answers as last
    /// programmed, so that a change reaches the data plane as a difference.
    pub programmed: BTreeMap<NetworkId, Programmed>,
}

#[derive(Debug)]
pub(super) struct GossipVtep {
    pub addr: SocketAddr,
    pub id: VtepId,
    pub vnis: Vec<Vni>,
    /// Made for gossip (false: a `[[peer]]` at the same address serves it).
    pub owned: bool,
    /// What it is sent, as its host's gossip says.
    pub kind: PeerKind,
}

impl ClusterState {
    /// Every other host's claims on `network`'s address blocks.
    pub fn claims_on(&self, network: &Name) -> Vec<(&Name, &Claims)> {
        self.table.hosts.values().filter_map(|h| Some((&h.name, h.ipam.get(network)?))).collect()
    }

    /// Refuses a network whose name or VNI the cluster uses differently.
    pub fn check_agrees(&self, net: &NetworkConfig) -> Result<(), NetworkError> {
        let hosts = |set: &BTreeSet<Name>| set.iter().map(Name::as_str).collect::<Vec<_>>().join(", ");
        if let Some(c) = self.table.networks.get(&net.name)
            && c.config.vni != net.vni
        {
            return Err(NetworkError::OtherVniInCluster {
                name: net.name.to_string(),
                vni: c.config.vni,
                hosts: hosts(&c.hosts),
            });
        }
        if let Some(c) = self.table.networks.values().find(|c| c.config.vni == net.vni && c.config.name != net.name) {
            return Err(NetworkError::VniTakenInCluster {
                vni: net.vni,
                name: c.config.name.to_string(),
                hosts: hosts(&c.hosts),
            });
        }
        Ok(())
    }

    /// The remote host behind a VTEP, for display: (host name, address).
    pub fn vtep_owner(&self, id: VtepId) -> Option<(Option<String>, String)> {
        let (host, ip) = self.vtep_owners().find(|(v, _)| *v == id)?.1;
        Some((host.map(str::to_owned), ip.to_string()))
    }

    /// Every known VTEP with its host's name (if any) and underlay address:
    /// static peers first, then the hosts gossip told of.
    pub fn vtep_owners(&self) -> impl Iterator<Item = (VtepId, (Option<&str>, IpAddr))> + '_ {
        let peers =
            self.peers.iter().map(|p| (p.vtep, (p.config.name.as_ref().map(|n| n.as_str()), p.config.underlay_ip)));
        let gossip = self.vteps.iter().map(|(name, v)| (v.id, (Some(name.as_str()), v.addr.ip())));
        peers.chain(gossip)
    }
}

impl Daemon {
    /// Connects the daemon to a running gossip member: from now on, every
    /// change is published through `publisher`, and `heard` tells how long
    /// ago each host was heard.
    pub fn attach_gossip(
        &mut self,
        publisher: watch::Sender<Published>,
        heard: watch::Receiver<PeerTable>,
        stats: Arc<GossipStats>,
    ) {
        self.cluster.publisher = Some(publisher);
        self.cluster.heard = Some(heard);
        self.cluster.stats = Some(stats);
        self.publish_state();
    }

    /// The gossip members kept from the last run (see `state::load_peers`),
    /// for the gossip member to merge until it hears them itself.
    pub fn take_kept_members(&mut self) -> Vec<Member> {
        std::mem::take(&mut self.cluster.kept_members)
    }

    /// Keeps the gossip members heard for the next start.
    pub fn keep_members(&self, members: &[Member]) {
        if let Err(e) = super::state::save_peers(&self.host.state_dir, members) {
            tracing::warn!("cannot keep the hosts heard in {}: {e}", self.host.state_dir.display());
        }
    }

    /// The cluster's key ring, for the gossip transport.
    pub fn cluster_keys(&self) -> Option<switchd_crypto::SharedKeyring> {
        self.keys.cluster().cloned()
    }

    /// What this host tells the cluster: its VTEP, the networks it defines
    /// or has endpoints on, and its endpoints. `None` without an underlay.
    pub fn published(&self) -> Option<Published> {
        let ip = self.host.underlay_ip?;
        let networks: BTreeMap<Name, NetworkConfig> = self
            .networks
            .iter()
            // Claims made for a first container must be seen at once.
            .filter(|n| self.carries(n) || self.addresses.is_claiming(&n.config.name))
            .map(|n| (n.config.name.clone(), n.config.clone()))
            .collect();
        let endpoints = self
            .endpoints
            .iter()
            .filter_map(|e| {
                let mac = e.record.mac?;
                Some(RemoteEndpoint {
                    network: e.record.network.clone(),
                    mac,
                    ip: e.record.ip,
                    ip6: e.record.ip6,
                    name: e.record.name.clone(),
                    services: e.record.services.clone(),
                    down: self.down_services(&e.record.network, mac),
                })
            })
            .collect();
        // Services and policies of the networks it carries (others refuse the rest).
        let services = self.published_services().into_iter().filter(|s| networks.contains_key(&s.network)).collect();
        let policies = self.published_policies(&|n| networks.contains_key(n));
        Some(Published {
            underlay: SocketAddr::new(ip, self.host.vxlan_port),
            leaving: false,
            session: Some(self.session),
            keys: self.keys.published(),
            ipam: self
                .addresses
                .claims()
                .iter()
                .filter(|(n, _)| networks.contains_key(*n))
                .map(|(n, c)| (n.clone(), c.clone()))
                .collect(),
            networks,
            endpoints,
            services,
            policies,
            partial_checksums: true,
        })
    }

    /// Whether this host carries `net` for its own sake: it defines it, or
    /// containers here use it, directly or as the destination of a route
    /// (routed frames leave this host in its VNI). A network of the
    /// cluster's that none of that holds for is carried only while this
    /// host has address claims on it (see `tend_claims`).
    pub(super) fn carries(&self, net: &Network) -> bool {
        let used = |name: &str| self.endpoints.on(name).next().is_some();
        let routed_into =
            self.layer3.routes.keys().filter_map(|r| r.peer_of(&net.config.name)).any(|p| used(p.as_str()));
        net.origin != Origin::Cluster || used(net.config.name.as_str()) || routed_into
    }

    /// Sends the current published state to the gossip member, if any.
    pub(super) fn publish_state(&self) {
        if let (Some(publisher), Some(state)) = (&self.cluster.publisher, self.published()) {
            publisher.send_replace(state);
        }
    }

    /// Takes a new peer table: networks, VTEPs, forwarding entries,
    /// neighbour answers and keys follow it, and claims other hosts now
    /// make are answered.
    pub fn update_cluster(&mut self, table: PeerTable, state_errors: u64) {
        // Most changes are a few endpoints: only their networks are redone.
        let scope = self.cluster.table.networks_changed(&table).map_or(Reprogram::All, Reprogram::Networks);
        self.cluster.state_errors = state_errors;
        self.cluster.table = table;
        self.tend_claims();
        for conflict in self.cluster.table.conflicts.clone() {
            if self.cluster.logged.insert(conflict.clone()) {
                tracing::warn!("{conflict}");
            }
        }
        self.adopt_cluster_networks();
        self.adopt_cluster_services();
        self.adopt_cluster_policies();
        self.note_other_ciphers();
        self.sync_vteps();
        self.program(&scope);
        self.push_keys();
    }

    /// Says once (per change) which hosts seal a network of this host's
    /// with another cipher than this host: it works (every host opens
    /// both), but a cipher named differently on two hosts is a mistake to
    /// see, and a default that differs by CPU is worth knowing. `network
    /// inspect` shows the same (`ciphers`).
    fn note_other_ciphers(&mut self) {
        let mut notes = Vec::new();
        for net in self.networks.iter() {
            let (Some(own), Some(cluster)) = (net.config.encryption, self.cluster.table.networks.get(&net.config.name))
            else {
                continue;
            };
            let others: Vec<String> = cluster
                .ciphers
                .iter()
                .filter(|(_, c)| **c != own.cipher)
                .map(|(host, c)| format!("{host} with {c}"))
                .collect();
            if others.is_empty() {
                continue;
            }
            let named = !own.default_cipher || !cluster.config.encryption.is_some_and(|e| e.default_cipher);
            let note = format!(
                "network {:?}: this host seals with {}{}, {} (every host opens both ciphers)",
                net.config.name.as_str(),
                own.cipher,
                if own.default_cipher { " (its CPU's default)" } else { "" },
                others.join(", ")
            );
            notes.push((named, note));
        }
        for (named, note) in notes {
            if self.cluster.logged.insert(note.clone()) {
                if named {
                    tracing::warn!("{note}; name the same cipher on every host, or none");
                } else {
                    tracing::info!("{note}");
                }
            }
        }
    }

    /// Networks the cluster defines become known here; ones it stopped
    /// defining go, unless endpoints here still use them.
    pub(super) fn adopt_cluster_networks(&mut self) {
        let mut changed = false;
        let cluster: Vec<NetworkConfig> = self.cluster.table.networks.values().map(|n| n.config.clone()).collect();
        self.cluster.refused.clear();
        for config in cluster {
            match self.networks.find(config.name.as_str()) {
                Some(local) if !local.config.same_definition(&config) => {
                    let note = format!(
                        "network {:?}: the cluster defines it as {}, this host as {}; keeping this host's",
                        config.name.as_str(),
                        describe(&config),
                        describe(&local.config)
                    );
                    if self.cluster.logged.insert(note.clone()) {
                        tracing::warn!("{note}");
                    }
                }
                Some(_) => {}
                None => match self.check_new_network(&config) {
                    Ok(()) => {
                        tracing::info!("network {} (vni {}) joined from the cluster", config.name, config.vni);
                        self.add_network(config, Origin::Cluster);
                        changed = true;
                    }
                    Err(e) => {
                        let note = format!("network {:?} from the cluster not carried: {e}", config.name.as_str());
                        if self.cluster.logged.insert(note.clone()) {
                            tracing::warn!("{note}");
                        }
                        self.cluster.refused.insert(config.name.clone(), note);
                    }
                },
            }
        }
        let gone: Vec<String> = self
            .networks
            .iter()
            .filter(|n| n.origin == Origin::Cluster && !self.cluster.table.networks.contains_key(&n.config.name))
            .filter(|n| self.endpoints.on(n.config.name.as_str()).next().is_none())
            .map(|n| n.config.name.to_string())
            .collect();
        for name in gone {
            tracing::info!("network {name} left the cluster");
            self.drop_network(&name);
            changed = true;
        }
        if changed {
            self.save();
        }
    }

    /// One VTEP per usable remote host, carrying the networks it carries,
    /// sent what its gossip says it takes (partial inner checksums to hosts
    /// that finish them). A `[[peer]]` at its address goes by the gossip
    /// while the host is in the table (it knows the host's version), by its
    /// config otherwise.
    pub(super) fn sync_vteps(&mut self) {
        let own_ip = self.host.underlay_ip;
        let desired: BTreeMap<Name, (SocketAddr, Vec<Vni>, PeerKind)> = self
            .cluster
            .table
            .hosts
            .values()
            .filter(|h| h.is_usable() && Some(h.underlay.ip()) != own_ip)
            .map(|h| (h.name.clone(), (h.underlay, h.vnis.iter().copied().collect(), gossip_kind(h.partial_checksums))))
            .collect();
        let stale: Vec<Name> = self
            .cluster
            .vteps
            .iter()
            .filter(|(name, v)| desired.get(*name).is_none_or(|(addr, ..)| *addr != v.addr))
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            let v = self.cluster.vteps.remove(&name).expect("listed");
            if v.owned {
                self.dataplane.remove_vtep(v.id);
            } else if let Some(peer) = self.cluster.peers.iter().find(|p| p.vtep == v.id) {
                // Back to what its `[[peer]]` says.
                let kind = peer.kind();
                self.dataplane.update_switch(|s| s.set_vtep_kind(v.id, kind));
            }
            tracing::info!("host {name} ({}) left", v.addr.ip());
        }
        for (name, (addr, vnis, kind)) in desired {
            if let Some(v) = self.cluster.vteps.get_mut(&name) {
                if v.owned && v.vnis != vnis {
                    self.dataplane.update_switch(|s| s.set_vtep_vnis(v.id, Some(vnis.clone())));
                    v.vnis = vnis;
                }
                if v.kind != kind {
                    self.dataplane.update_switch(|s| s.set_vtep_kind(v.id, kind));
                    v.kind = kind;
                }
                continue;
            }
            let (id, owned) = match self.cluster.peers.iter().find(|p| p.config.underlay_ip == addr.ip()) {
                Some(peer) => (peer.vtep, false),
                None => match self.dataplane.add_vtep(addr, Some(vnis.clone())) {
                    Some(id) => (id, true),
                    None => continue,
                },
            };
            self.dataplane.update_switch(|s| s.set_vtep_kind(id, kind));
            tracing::info!("host {name} ({}) joined", addr.ip());
            self.cluster.vteps.insert(name, GossipVtep { addr, id, vnis, owned, kind });
        }
    }

    /// Programs the gossip entries (remote MACs behind their hosts' VTEPs)
    /// and neighbour answers (remote and local addresses) of the networks
    /// in `scope`. Each network's are worked out here, without the data
    /// plane, and only what differs from what it was given last goes to
    /// it: a change of one endpoint among 10,000 holds the data plane for
    /// that one.
    pub(super) fn reprogram(&mut self, scope: &Reprogram) {
        let now = Instant::now();
        let ids: BTreeSet<NetworkId> = self.networks.iter().map(|n| n.id).collect();
        self.cluster.programmed.retain(|id, _| ids.contains(id));
        for net in self.networks.iter().filter(|n| scope.covers(&n.config.name)) {
            let name = &net.config.name;
            let mut macs: BTreeMap<MacAddr, VtepId> = BTreeMap::new();
            let mut neighbors: BTreeMap<IpAddr, MacAddr> = BTreeMap::new();
            // Each endpoint's IPv4 address, and on a dual-stack or
            // IPv6-only network its IPv6 ones, local or remote.
            let mut add = |mac: MacAddr, ip: Option<IpAddr>, ip6: Option<std::net::Ipv6Addr>| {
                let ip6s = crate::services::icmpv6::endpoint_ip6s(&net.config, Some(mac), ip6);
                neighbors.extend(ip.into_iter().chain(ip6s.into_iter().map(IpAddr::V6)).map(|ip| (ip, mac)));
            };
            for (host, ep) in self.cluster.table.endpoints_on(name) {
                if let Some(v) = self.cluster.vteps.get(&host.name) {
                    macs.insert(ep.mac, v.id);
                    add(ep.mac, ep.ip, ep.ip6);
                }
            }
            for e in self.endpoints.on(name.as_str()) {
                if let Some(mac) = e.record.mac {
                    add(mac, e.record.ip, e.record.ip6);
                }
            }
            // Every host answers for the gateway, with the same MAC, and
            // for the network's service VIPs with it too.
            let mac = crate::switch::Gateway::mac_for(net.config.vni);
            if let Some(gw) = net.config.gateway {
                neighbors.insert(gw, mac);
            }
            if net.config.gateway.is_some() || net.config.gateway6.is_some() {
                neighbors.extend(self.vips_on(name.as_str()).into_iter().map(|vip| (vip, mac)));
            }
            if let Some(gw6) = net.config.gateway6 {
                neighbors.insert(gw6, mac);
                neighbors.insert(IpAddr::V6(crate::switch::guard::link_local(mac)), mac);
            }
            let id = net.id;
            let last = self.cluster.programmed.entry(id).or_default();
            if let Reprogram::All = scope {
                // Whole, as after any local change: a gossip entry that a
                // frame seen elsewhere turned into a learned one is told again.
                let (macs, neighbors): (Vec<_>, Vec<_>) =
                    (macs.iter().map(|(m, v)| (*m, *v)).collect(), neighbors.iter().map(|(i, m)| (*i, *m)).collect());
                self.dataplane.update_switch(|s| {
                    s.set_gossip_macs(id, &macs, now);
                    s.set_neighbors(id, neighbors.iter().copied());
                });
            } else {
                let (macs_gone, macs_told) = differences(&last.macs, &macs);
                let (neighbors_gone, neighbors_told) = differences(&last.neighbors, &neighbors);
                if !(macs_gone.is_empty()
                    && macs_told.is_empty()
                    && neighbors_gone.is_empty()
                    && neighbors_told.is_empty())
                {
                    self.dataplane.update_switch(|s| {
                        s.update_gossip_macs(id, &macs_gone, &macs_told, now);
                        s.update_neighbors(id, &neighbors_gone, &neighbors_told);
                    });
                }
            }
            *last = Programmed { macs, neighbors };
        }
    }
}

/// What a network's switch tables were last given from here.
#[derive(Debug, Default)]
pub(super) struct Programmed {
    macs: BTreeMap<MacAddr, VtepId>,
    neighbors: BTreeMap<IpAddr, MacAddr>,
}

/// What to reprogram after a change: every network, or only these (those
/// whose remote endpoints changed, see `PeerTable::networks_changed`).
#[derive(Debug)]
pub(super) enum Reprogram {
    All,
    Networks(BTreeSet<Name>),
}

impl Reprogram {
    pub fn covers(&self, network: &Name) -> bool {
        match self {
            Reprogram::All => true,
            Reprogram::Networks(names) => names.contains(network),
        }
    }
}

/// The keys in `old` and not in `new`, and the entries of `new` that
/// `old` lacks or holds otherwise: both in one merge of the two.
fn differences<K: Ord + Copy, V: PartialEq + Copy>(
    old: &BTreeMap<K, V>,
    new: &BTreeMap<K, V>,
) -> (Vec<K>, Vec<(K, V)>) {
    let gone = old.keys().filter(|k| !new.contains_key(k)).copied().collect();
    let told = new.iter().filter(|(k, v)| old.get(k) != Some(v)).map(|(k, v)| (*k, *v)).collect();
    (gone, told)
}
