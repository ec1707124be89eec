//! What `switchctl` reads: status, networks, the forwarding table,
//! counters and peers. Reports take the daemon for reading only, so they
//! never wait for a connect and never hold up one (see `Shared`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::Instant;

use switchd_config::{MacAddr, Name, NetworkConfig};

use super::Daemon;
use super::error::{Invalid, OpResult};
use super::keys::key_scope;
use super::networks::Network;
use crate::control::api::{
    Conversation, CryptoStats, EndpointInfo, FdbEntry, GossipStatsInfo, NetworkDetail, NetworkInfo, NetworkStats, Page,
    PeerInfo, PortStats, Stats, Status, VtepStats,
};
use crate::dataplane::DeviceStats;
use crate::switch::{Counters, DropReason, Location};

impl Daemon {
    pub(super) fn status(&self) -> Status {
        Status {
            host: self.host.name.to_string(),
            version: crate::VERSION.to_owned(),
            uptime_secs: self.started.elapsed().as_secs(),
            networks: self.networks.len(),
            ports: self.endpoints.len(),
            // Static peers have no liveness to track: configured means alive.
            peers_alive: self.cluster.peers.len() + self.cluster.table.hosts.values().filter(|h| h.is_usable()).count(),
            session: self.host.underlay_ip.map(|_| self.session.to_string()),
            refused_networks: self.cluster.refused.values().cloned().collect(),
        }
    }

    pub(super) fn network_info(&self, net: &Network) -> NetworkInfo {
        let c = &net.config;
        NetworkInfo {
            name: c.name.to_string(),
            vni: c.vni.get(),
            subnet: c.subnet.map(|s| s.to_string()),
            subnet6: c.subnet6.map(|s| s.to_string()),
            gateway6: c.gateway6,
            gateway: c.gateway,
            mtu: c.mtu.get(),
            encrypted: c.is_encrypted(),
            cipher: c.encryption.map(|e| e.cipher.to_string()),
            default_cipher: c.encryption.is_some_and(|e| e.default_cipher),
            ciphers: self.ciphers_of(c),
            key: c.encryption.map(|_| key_scope(c).display_name()),
            internal: c.internal,
            dns: c.dns,
            dhcp: c.dhcp,
            host_access: net.host_port.is_some(),
            routes: self.layer3.routes.keys().filter_map(|r| r.peer_of(&c.name)).map(|n| n.to_string()).collect(),
            ports: self.endpoints.on(c.name.as_str()).count(),
            hosts: self.hosts_on(&c.name),
            origin: net.origin.as_str().to_owned(),
        }
    }

    /// What each host carrying an encrypted network seals it with: this
    /// one, and others as gossip says.
    fn ciphers_of(&self, c: &NetworkConfig) -> BTreeMap<String, String> {
        let Some(own) = c.encryption else { return BTreeMap::new() };
        let others = self.cluster.table.networks.get(&c.name).into_iter().flat_map(|n| &n.ciphers);
        others
            .map(|(host, cipher)| (host.to_string(), cipher.to_string()))
            .chain([(self.host.name.to_string(), own.cipher.to_string())])
            .collect()
    }

    /// The hosts with endpoints on a network: this one, and others by gossip.
    fn hosts_on(&self, network: &Name) -> Vec<String> {
        let mut hosts = BTreeSet::new();
        if self.endpoints.on(network.as_str()).next().is_some() {
            hosts.insert(self.host.name.to_string());
        }
        hosts.extend(self.cluster.table.endpoints_on(network).map(|(h, _)| h.name.to_string()));
        hosts.into_iter().collect()
    }

    pub(super) fn network_ls(&self) -> Vec<NetworkInfo> {
        self.networks.iter().map(|n| self.network_info(n)).collect()
    }

    /// A network and its endpoints, here and on other hosts, by (host,
    /// name): only those of `page` are built.
    pub(super) fn network_inspect(&self, name: &str, page: &Page) -> OpResult<NetworkDetail> {
        let net = self.networks.get(name)?;
        let here = self.host.name.as_str();
        let after = match page.after.as_deref() {
            None => None,
            Some(key) => match key.rsplit_once('@') {
                Some((endpoint, host)) => Some((host, endpoint)),
                None => return Err(bad_cursor(format!("{key:?} is not NAME@HOST (an endpoint and its host)"))),
            },
        };
        enum Row<'a> {
            Local(&'a super::endpoints::Endpoint),
            Remote(&'a switchd_overlay::gossip::table::Host, &'a switchd_overlay::gossip::state::RemoteEndpoint),
        }
        let local = self.endpoints.on(name).map(|e| ((here, e.record.name.as_str()), Row::Local(e)));
        let remote = self.cluster.table.endpoints_on(&net.config.name);
        let mut rows: Vec<_> =
            local.chain(remote.map(|(h, e)| ((h.name.as_str(), e.name.as_str()), Row::Remote(h, e)))).collect();
        rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let start = after.map_or(0, |after| rows.partition_point(|(key, _)| *key <= after));
        let endpoints = rows[start..]
            .iter()
            .take(page.limit())
            .map(|(_, row)| match row {
                Row::Local(e) => e.info(here, &net.config),
                Row::Remote(h, e) => EndpointInfo {
                    name: e.name.to_string(),
                    network: e.network.to_string(),
                    ip: e.ip,
                    ip6: crate::services::icmpv6::endpoint_ip6(&net.config, Some(e.mac), e.ip6),
                    mac: Some(e.mac.to_string()),
                    host: h.name.to_string(),
                    kind: "remote".into(),
                    netns: None,
                    ifname: None,
                    host_ifname: None,
                },
            })
            .collect();
        Ok(NetworkDetail { network: self.network_info(net), endpoints })
    }

    /// The forwarding table, by (network, MAC): only the rows of `page`
    /// are built, and no network after the page's end is read.
    pub(super) fn fdb(&self, network: Option<&str>, page: &Page) -> OpResult<Vec<FdbEntry>> {
        let nets: Vec<&Network> = match network {
            Some(name) => vec![self.networks.get(name)?],
            None => self.networks.iter().collect(),
        };
        let after = match page.after.as_deref() {
            None => None,
            Some(key) => {
                let (net, mac) = match (key.rsplit_once('/'), network) {
                    (Some((net, mac)), _) => (net, mac),
                    (None, Some(net)) => (net, key),
                    (None, None) => return Err(bad_cursor(format!("{key:?} is not NETWORK/MAC"))),
                };
                let mac: MacAddr = mac.parse().map_err(|_| bad_cursor(format!("{mac:?} is not a MAC address")))?;
                Some((net, mac))
            }
        };
        // Who owns each VTEP, once: a row must not scan every host.
        let owners: HashMap<_, _> = self.cluster.vtep_owners().collect();
        let now = Instant::now();
        let mut rows = Vec::new();
        for net in nets {
            let name = net.config.name.as_str();
            if rows.len() == page.limit() {
                break;
            }
            if after.is_some_and(|(after, _)| name < after) {
                continue;
            }
            let entries = self.dataplane.fdb(net.id, now);
            let start = match after {
                Some((after, mac)) if after == name => entries.partition_point(|(m, ..)| *m <= mac),
                _ => 0,
            };
            for &(mac, at, kind, age) in &entries[start..] {
                if rows.len() == page.limit() {
                    return Ok(rows);
                }
                let (location, endpoint, host, vtep) = match at {
                    Location::Port(port) => match self.endpoints.by_port(port) {
                        Some(e) => (e.port_label(), e.record.name.to_string(), None, None),
                        None => ("-".into(), "-".into(), None, None),
                    },
                    Location::Vtep(id) => match owners.get(&id) {
                        Some((host, ip)) => {
                            let label = host.map_or_else(|| ip.to_string(), |h| format!("{h} {ip}"));
                            (label, "-".into(), host.map(str::to_owned), Some(ip.to_string()))
                        }
                        None => ("-".into(), "-".into(), None, None),
                    },
                };
                rows.push(FdbEntry {
                    mac: mac.to_string(),
                    network: name.to_owned(),
                    location,
                    endpoint,
                    host,
                    vtep,
                    kind: kind.as_str().into(),
                    age_secs: (age.as_secs_f64() * 10.0).round() / 10.0,
                });
            }
        }
        Ok(rows)
    }

    /// The sampled conversations, each end named: a container here, one
    /// on another host (`NAME@HOST`), or its MAC.
    fn conversations(&self) -> (Vec<Conversation>, u64) {
        let crate::dataplane::flows::Snapshot { pairs, replaced } = self.dataplane.conversations();
        let mut names: HashMap<MacAddr, String> = HashMap::new();
        for e in self.endpoints.iter() {
            if let Some(mac) = e.record.mac {
                names.insert(mac, e.record.name.to_string());
            }
        }
        for host in self.cluster.table.hosts.values() {
            for e in &host.endpoints {
                names.entry(e.mac).or_insert_with(|| format!("{}@{}", e.name, host.name));
            }
        }
        let name = |mac: &MacAddr| names.get(mac).cloned().unwrap_or_else(|| mac.to_string());
        let mut out: Vec<Conversation> = pairs
            .into_iter()
            .map(|((a, b), p)| Conversation {
                a: name(&a),
                b: name(&b),
                a_to_b_frames: p.frames[0],
                a_to_b_bytes: p.bytes[0],
                b_to_a_frames: p.frames[1],
                b_to_a_bytes: p.bytes[1],
            })
            .collect();
        out.sort_by(|x, y| (&x.a, &x.b).cmp(&(&y.a, &y.b)));
        (out, replaced)
    }

    pub(super) fn stats(&self) -> Stats {
        let mut ports = Vec::new();
        let mut networks: BTreeMap<String, NetworkStats> = BTreeMap::new();
        for net in self.networks.iter() {
            let counters = self.dataplane.network_counters(net.id).unwrap_or_default();
            networks.insert(
                net.config.name.to_string(),
                NetworkStats {
                    network: net.config.name.to_string(),
                    flooded: counters.flooded,
                    mac_moves: counters.mac_moves,
                    fdb_entries: counters.fdb_entries,
                    neighbor_answers: counters.neighbor_answers,
                    routed: counters.routed,
                    balanced: counters.balance.balanced,
                    balance_refused: counters.balance.refused,
                    balance_evicted: counters.balance.evicted,
                    ..NetworkStats::default()
                },
            );
        }
        for e in self.endpoints.iter() {
            let rx = self.dataplane.port_counters(e.port).unwrap_or_default();
            let dev = self.dataplane.port_stats(e.port).unwrap_or_default();
            let (tx_frames, tx_bytes) = (dev.frames, dev.bytes);
            let drops = drops_map(&rx, &dev);
            let port = PortStats {
                network: e.record.network.to_string(),
                endpoint: e.record.name.to_string(),
                port: e.port_label(),
                rx_frames: rx.frames,
                rx_bytes: rx.bytes,
                tx_frames,
                tx_bytes,
                deferred_checksums: dev.deferred_checksums,
                drops,
            };
            if let Some(n) = networks.get_mut(&port.network) {
                n.rx_frames += port.rx_frames;
                n.rx_bytes += port.rx_bytes;
                n.tx_frames += port.tx_frames;
                n.tx_bytes += port.tx_bytes;
                n.deferred_checksums += port.deferred_checksums;
                for (reason, count) in &port.drops {
                    *n.drops.entry(reason.clone()).or_default() += count;
                }
            }
            ports.push(port);
        }
        let vtep_ids = self
            .cluster
            .peers
            .iter()
            .map(|p| p.vtep)
            .chain(self.cluster.vteps.values().filter(|v| v.owned).map(|v| v.id));
        let vteps = vtep_ids
            .filter_map(|id| {
                let (host, ip) = self.cluster.vtep_owner(id)?;
                let info = self.dataplane.vtep_info(id);
                let rx = info.map(|i| i.rx).unwrap_or_default();
                let dev = self.dataplane.vtep_stats(id).unwrap_or_default();
                let (tx_frames, tx_bytes) = (dev.frames, dev.bytes);
                Some(VtepStats {
                    vtep: ip,
                    host,
                    rx_frames: rx.frames,
                    rx_bytes: rx.bytes,
                    tx_frames,
                    tx_bytes,
                    drops: drops_map(&rx, &dev),
                })
            })
            .collect();
        let underlay_drops = drops_map(&self.dataplane.underlay_counters(), &DeviceStats::default());
        let (sealed, opened, sessions, helped) = self.dataplane.crypto_counters();
        let session = self.session.to_string();
        let crypto = self.host.underlay_ip.map(|_| CryptoStats { session, sealed, opened, sessions, helped });
        let gossip = self.cluster.stats.as_ref().map(|g| {
            let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
            GossipStatsInfo {
                datagrams_in: load(&g.datagrams_in),
                datagrams_out: load(&g.datagrams_out),
                bytes_in: load(&g.bytes_in),
                bytes_out: load(&g.bytes_out),
                rejected: g.rejections().into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
                bad_messages: load(&g.bad_messages),
                bad_entries: self.cluster.state_errors,
            }
        });
        let services =
            self.dataplane.service_counters().snapshot().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let workers = self.dataplane.worker_stats();
        let (conversations, conversations_replaced) = self.conversations();
        Stats {
            ports,
            networks: networks.into_values().collect(),
            vteps,
            underlay_drops,
            gossip,
            crypto,
            services,
            workers,
            conversations,
            conversations_replaced,
            policy: self.dataplane.policy_counters(),
        }
    }

    /// What a Prometheus scrape reports ([`crate::metrics`]).
    pub fn metrics_snapshot(&self) -> crate::metrics::Snapshot {
        let ipam = self
            .networks
            .iter()
            .filter_map(|net| {
                let subnet = net.config.subnet?;
                let name = net.config.name.as_str();
                let detail = self.network_inspect(name, &Page::default()).ok()?;
                let used: BTreeSet<IpAddr> = detail.endpoints.iter().filter_map(|e| e.ip).collect();
                // Neither the network's nor (IPv4) its broadcast address,
                // nor the gateway's, is handed out.
                let reserved =
                    if subnet.net().addr().is_ipv4() { 2 } else { 1 } + u128::from(net.config.gateway.is_some());
                let hosts = subnet.size().saturating_sub(reserved);
                let used = used.len() as u128;
                Some(crate::metrics::IpamUse {
                    network: name.to_owned(),
                    used: used.min(u128::from(u64::MAX)) as u64,
                    free: hosts.saturating_sub(used).min(u128::from(u64::MAX)) as u64,
                })
            })
            .collect();
        crate::metrics::Snapshot {
            host: self.host.name.to_string(),
            version: crate::VERSION.to_owned(),
            uptime: self.started.elapsed(),
            starts: self.starts,
            stats: self.stats(),
            peers: self.peers(),
            ipam,
        }
    }

    /// The data-plane workers that stopped (a failure or a bug, logged).
    pub fn stopped_workers(&self) -> Vec<usize> {
        self.dataplane.worker_stats().into_iter().filter(|w| !w.running).map(|w| w.worker).collect()
    }

    pub(super) fn peers(&self) -> Vec<PeerInfo> {
        let now = Instant::now();
        let round = |d: std::time::Duration| (d.as_secs_f64() * 10.0).round() / 10.0;
        // The table changes only with what it routes by; how long ago each
        // host was heard is the gossip member's latest word.
        let latest = self.cluster.heard.as_ref().map(|heard| heard.borrow());
        let since_heard = |name: &Name| latest.as_ref().and_then(|t| Some(t.hosts.get(name)?.since_heard));
        let gossip = self.cluster.table.hosts.values().map(|h| PeerInfo {
            host: Some(h.name.to_string()),
            underlay_ip: h.underlay.ip(),
            vxlan_port: h.underlay.port(),
            state: h.liveness.as_str().into(),
            last_heard_secs: Some(round(since_heard(&h.name).unwrap_or(h.since_heard))),
            networks: h.networks.iter().map(|n| n.to_string()).collect(),
            macs: h.endpoints.len() as u32,
        });
        let static_peers = self.cluster.peers.iter().map(|p| {
            let info = self.dataplane.vtep_info(p.vtep);
            let carried = |vni| p.config.vnis.as_ref().is_none_or(|v| v.contains(&vni));
            PeerInfo {
                host: p.config.name.as_ref().map(|n| n.to_string()),
                underlay_ip: p.config.underlay_ip,
                vxlan_port: p.config.vxlan_port,
                state: "static".into(),
                last_heard_secs: info.as_ref().and_then(|i| i.last_rx).map(|t| round(now.saturating_duration_since(t))),
                networks: self
                    .networks
                    .iter()
                    .filter(|n| carried(n.config.vni))
                    .map(|n| n.config.name.to_string())
                    .collect(),
                macs: info.map_or(0, |i| i.learned),
            }
        });
        static_peers.chain(gossip).collect()
    }
}

/// Drops by reason: the switch's, and the data plane's (refused sends, and
/// frames it could not send on).
fn drops_map(rx: &Counters, dev: &DeviceStats) -> BTreeMap<String, u64> {
    let mut drops: BTreeMap<String, u64> = rx.drops_by_name().map(|(k, v)| (k.to_owned(), v)).collect();
    let data_plane = [
        (DropReason::TxError, dev.errors),
        (DropReason::TxQueueFull, dev.queue_full),
        (DropReason::OffloadError, dev.offload_errors),
        (DropReason::NoKey, dev.no_key),
    ];
    for (reason, n) in data_plane.into_iter().filter(|(_, n)| *n > 0) {
        *drops.entry(reason.as_str().to_owned()).or_default() += n;
    }
    drops
}

/// A page cursor (`after`) that names no row.
fn bad_cursor(reason: String) -> super::error::DaemonError {
    let path = switchd_config::KeyPath::root().key("after");
    Invalid(vec![switchd_config::FieldError::new(path, reason)]).into()
}
