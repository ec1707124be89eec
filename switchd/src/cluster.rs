//! The gossip member of a running daemon, on the control plane's tokio
//! runtime: it publishes what the daemon says this host carries, and a few
//! times a second turns what it hears into a peer table. The daemon is
//! given the table only when what it routes by changed (hosts, their
//! liveness, networks, endpoints, claims, keys); how long ago each host
//! was heard goes out through a watch channel the daemon reads for
//! `switchctl peers`, so a quiet cluster never takes the daemon.
//!
//! The members it hears are kept in `state_dir/peers.json`
//! (`switchd_overlay::gossip::cache`): after a restart the daemon routes by
//! them at once, before gossip has spoken, and here each counts as silent
//! since the start until gossip hears from it again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use switchd_config::{GossipConfig as GossipSettings, HostConfig, Name};
use switchd_overlay::gossip::node::{GossipConfig, GossipNode};
use switchd_overlay::gossip::state::Published;
use switchd_overlay::gossip::table::{Liveness, Member, PeerTable, Timeouts};
use switchd_overlay::gossip::transport::{GossipStats, SealedUdp};
use switchd_overlay::gossip::wire;
use tokio::sync::watch;

use crate::daemon::{self, Shared};

/// How often the peer table is rebuilt (and silence measured).
const TICK: Duration = Duration::from_millis(250);
/// The least time between two writes of the members heard (`peers.json`).
const KEEP_EVERY: Duration = Duration::from_secs(1);
/// How long a leaving host keeps gossiping its departure before it stops.
const LINGER: Duration = Duration::from_millis(300);

#[derive(Debug)]
pub struct Cluster {
    node: GossipNode,
    published: watch::Receiver<Published>,
    timeouts: Timeouts,
    /// The last table's routing part (ages left out) and count of invalid
    /// entries, as the daemon has them, to tell real changes.
    last_routes: Option<(PeerTable, u64)>,
    /// The latest table, ages included, for the daemon to read.
    heard: watch::Sender<PeerTable>,
    /// Invalid entries of other hosts, as last counted, and those logged.
    seen_errors: std::collections::BTreeSet<String>,
    /// Members kept from the last run that gossip has not heard yet.
    kept: Vec<Member>,
    started: Instant,
    /// What the last table was built from.
    last_inputs: Option<Inputs>,
    /// Usable members not yet written to `peers.json`, and the last write.
    unkept: Option<Vec<Member>>,
    kept_at: Option<Instant>,
    /// The hosts (and generations) of the last write.
    kept_hosts: Vec<(Name, u64)>,
}

/// What a peer table is built from, but for silence that moved no host
/// to another liveness class.
#[derive(Debug, PartialEq, Eq)]
struct Inputs {
    /// [`GossipNode::revision`]: grows with every member's state change.
    revision: u64,
    liveness: Vec<Liveness>,
    errors: usize,
}

impl Cluster {
    /// Joins the cluster and connects the daemon to it.
    pub async fn start(host: &HostConfig, settings: &GossipSettings, daemon: &Shared) -> anyhow::Result<Cluster> {
        let keys =
            daemon::read(daemon).cluster_keys().ok_or_else(|| anyhow::anyhow!("gossip needs the cluster key"))?;
        let underlay = host.underlay_ip.ok_or_else(|| anyhow::anyhow!("gossip needs [host] underlay_ip"))?;
        let timeouts = Timeouts::new(settings.failure_timeout);
        let kept = daemon::write(daemon).take_kept_members();
        // The hosts heard last time are asked at once too (at the cluster's
        // gossip port): a host that stopped cleanly was forgotten by them,
        // and is carried again as soon as they hear its new self.
        let mut seeds = settings.seeds.clone();
        for m in &kept {
            let addr = SocketAddr::new(m.published.underlay.ip(), settings.port);
            if !seeds.contains(&addr) {
                seeds.push(addr);
            }
        }
        // Gossip crosses the underlay whole: never an IP fragment.
        let max_datagram = wire::max_datagram(host.underlay_mtu.get() as usize, underlay.is_ipv6());
        let config = GossipConfig {
            name: host.name.clone(),
            listen: SocketAddr::new(underlay, settings.port),
            seeds,
            interval: settings.interval,
            timeouts,
            max_message_len: wire::message_budget(max_datagram),
        };
        let initial = daemon::read(daemon)
            .published()
            .ok_or_else(|| anyhow::anyhow!("nothing to publish without an underlay"))?;
        let stats = Arc::new(GossipStats::default());
        let transport = SealedUdp { keys, stats: stats.clone(), max_datagram };
        // Every start is a new generation, so a restarted host replaces its old self.
        let generation = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let node = GossipNode::start(&config, generation, &transport, &initial).await?;
        let (tx, rx) = watch::channel(initial);
        let (heard, heard_rx) = watch::channel(PeerTable::default());
        daemon::write(daemon).attach_gossip(tx, heard_rx, stats);
        tracing::info!(listen = %config.listen, seeds = ?config.seeds, "gossip started");
        Ok(Cluster {
            node,
            published: rx,
            timeouts,
            last_routes: None,
            heard,
            seen_errors: Default::default(),
            kept,
            started: Instant::now(),
            last_inputs: None,
            unkept: None,
            kept_at: None,
            kept_hosts: Vec::new(),
        })
    }

    /// Publishes changes and feeds the daemon new peer tables, until dropped.
    pub async fn run(&mut self, daemon: Shared) {
        let mut tick = tokio::time::interval(TICK);
        loop {
            tick.tick().await;
            if self.published.has_changed().unwrap_or(false) {
                let state = self.published.borrow_and_update().clone();
                self.node.publish(&state).await;
            }
            let (mut members, errors) = self.node.members().await;
            for (host, e) in &errors {
                if self.seen_errors.insert(format!("{host}: {e}")) {
                    tracing::warn!("gossip from {host}: skipped {e}");
                }
            }
            // Kept members stand in until gossip hears them, silent since the start.
            if !self.kept.is_empty() {
                self.kept.retain(|k| !members.iter().any(|m| m.name == k.name));
            }
            let silent = self.started.elapsed();
            members.extend(self.kept.iter().cloned().map(|k| Member { since_heard: silent, ..k }));
            // Nothing but silence changed, and no host became suspect or
            // dead: the table stands, only its ages move. This keeps a
            // quiet tick's cost to the number of hosts, not of endpoints.
            let inputs = Inputs {
                revision: self.node.revision(),
                liveness: members.iter().map(|m| self.timeouts.liveness(m.since_heard)).collect(),
                errors: errors.len(),
            };
            if self.last_inputs.as_ref() == Some(&inputs) {
                self.heard.send_modify(|t| t.refresh_ages(&members));
                self.keep_if_due(&daemon).await;
                continue;
            }
            self.last_inputs = Some(inputs);
            let usable: Vec<Member> = members
                .iter()
                .filter(|m| m.since_heard < self.timeouts.dead_after && !m.published.leaving)
                .cloned()
                .collect();
            let table = PeerTable::build(members, self.timeouts);
            let routes = (without_ages(&table), errors.len() as u64);
            self.heard.send_replace(table.clone());
            if self.last_routes.as_ref() == Some(&routes) {
                self.keep_if_due(&daemon).await;
                continue;
            }
            let errors = routes.1;
            self.last_routes = Some(routes);
            self.unkept = Some(usable);
            let shared = daemon.clone();
            let _ = tokio::task::spawn_blocking(move || daemon::write(&shared).update_cluster(table, errors)).await;
            self.keep_if_due(&daemon).await;
        }
    }

    /// Writes the members heard to `peers.json` when they changed: at once
    /// when hosts came or went (a restart after kill -9 routes by the file
    /// before gossip speaks), else once the last write is [`KEEP_EVERY`]
    /// old (a write of 10,000 endpoints costs over ten milliseconds, and
    /// endpoint churn can come every round).
    async fn keep_if_due(&mut self, daemon: &Shared) {
        let Some(members) = &self.unkept else { return };
        let hosts: Vec<(Name, u64)> = members.iter().map(|m| (m.name.clone(), m.generation)).collect();
        if hosts == self.kept_hosts && self.kept_at.is_some_and(|t| t.elapsed() < KEEP_EVERY) {
            return;
        }
        let members = self.unkept.take().expect("checked");
        self.kept_hosts = hosts;
        self.kept_at = Some(Instant::now());
        let daemon = daemon.clone();
        let _ = tokio::task::spawn_blocking(move || daemon::read(&daemon).keep_members(&members)).await;
    }

    /// Tells the cluster this host is leaving, so it is forgotten at once.
    pub async fn leave(self) {
        let state = self.published.borrow().clone();
        self.node.leave(state, LINGER).await;
    }
}

fn without_ages(table: &PeerTable) -> PeerTable {
    let mut t = table.clone();
    for h in t.hosts.values_mut() {
        h.since_heard = Duration::ZERO;
    }
    t
}
