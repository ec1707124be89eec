//! One host's membership in the cluster: a chitchat instance (scuttlebutt
//! anti-entropy; each host writes only its own keys) over a sealed
//! transport, plus what chitchat leaves to us: publishing our state as
//! key-value pairs, telling how long ago each member was last heard, and
//! leaving cleanly.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use chitchat::transport::Transport;
use chitchat::{ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, Heartbeat, spawn_chitchat};
use switchd_config::Name;
use tokio::time::Instant;

use super::state::{self, Published, StateError};
use super::table::{Member, Timeouts};

/// chitchat keeps members apart by this; the key keeps clusters apart.
const CLUSTER_ID: &str = "switchd";

#[derive(Debug, Clone)]
pub struct GossipConfig {
    pub name: Name,
    /// Where gossip listens and is reached: `underlay_ip:port`.
    pub listen: SocketAddr,
    pub seeds: Vec<SocketAddr>,
    /// How often a gossip round runs.
    pub interval: Duration,
    pub timeouts: Timeouts,
}

/// A running member.
pub struct GossipNode {
    handle: ChitchatHandle,
    /// The last heartbeat seen of each member, and when it moved.
    heard: HashMap<ChitchatId, (Heartbeat, Instant)>,
}

impl std::fmt::Debug for GossipNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GossipNode({:?})", self.handle.chitchat_id())
    }
}

impl GossipNode {
    /// Joins the cluster through `config.seeds`. `generation` must grow
    /// with every start of this host (its start time in ms will do).
    pub async fn start(
        config: &GossipConfig,
        generation: u64,
        transport: &dyn Transport,
        published: &Published,
    ) -> anyhow::Result<GossipNode> {
        let id = ChitchatId::new(config.name.to_string(), generation, config.listen);
        let chitchat_config = ChitchatConfig {
            chitchat_id: id,
            cluster_id: CLUSTER_ID.to_owned(),
            gossip_interval: config.interval,
            listen_addr: config.listen,
            seed_nodes: config.seeds.iter().filter(|s| **s != config.listen).map(ToString::to_string).collect(),
            failure_detector_config: FailureDetectorConfig {
                // chitchat forgets a dead member's state after this.
                dead_node_grace_period: (config.timeouts.dead_after * 6).max(Duration::from_secs(60)),
                ..FailureDetectorConfig::default()
            },
            marked_for_deletion_grace_period: Duration::from_secs(3600),
            catchup_callback: None,
            extra_liveness_predicate: None,
        };
        let handle = spawn_chitchat(chitchat_config, state::encode(published), transport).await?;
        Ok(GossipNode { handle, heard: HashMap::new() })
    }

    /// Replaces this host's published state.
    pub async fn publish(&self, published: &Published) {
        let wanted: BTreeMap<String, String> = state::encode(published).into_iter().collect();
        let chitchat = self.handle.chitchat();
        let mut chitchat = chitchat.lock().await;
        let me = chitchat.self_node_state();
        let stale: Vec<String> =
            me.key_values().map(|(k, _)| k.to_owned()).filter(|k| !wanted.contains_key(k)).collect();
        for key in stale {
            me.delete(&key);
        }
        for (key, value) in wanted {
            if me.get(&key) != Some(value.as_str()) {
                me.set(key, value);
            }
        }
    }

    /// Every other member with its published state and how long it has
    /// been silent; entries that failed to decode, by member. Silence is
    /// measured between calls (a heartbeat that moved since the last call
    /// was heard now), so call this regularly, a few times per second.
    pub async fn members(&mut self) -> (Vec<Member>, Vec<(Name, StateError)>) {
        let now = Instant::now();
        let chitchat = self.handle.chitchat();
        let chitchat = chitchat.lock().await;
        let me = chitchat.self_chitchat_id().clone();
        let mut members = Vec::new();
        let mut errors = Vec::new();
        for (id, node) in chitchat.node_states() {
            if *id == me || id.node_id == me.node_id {
                continue;
            }
            let heartbeat = node.heartbeat();
            let heard = self.heard.entry(id.clone()).or_insert((heartbeat, now));
            if heartbeat > heard.0 {
                *heard = (heartbeat, now);
            }
            let Ok(name) = Name::new(&id.node_id) else { continue };
            let (published, errs) = state::decode(node.key_values());
            errors.extend(errs.into_iter().map(|e| (name.clone(), e)));
            if let Some(published) = published {
                members.push(Member { name, generation: id.generation_id, published, since_heard: now - heard.1 });
            }
        }
        let known: std::collections::HashSet<&ChitchatId> = chitchat.node_states().keys().collect();
        self.heard.retain(|id, _| known.contains(id));
        (members, errors)
    }

    /// Announces that this host is leaving, pushes that to every member at
    /// once, and stops.
    pub async fn leave(self, mut published: Published, linger: Duration) {
        published.leaving = true;
        self.publish(&published).await;
        let peers: Vec<SocketAddr> = {
            let chitchat = self.handle.chitchat();
            let chitchat = chitchat.lock().await;
            let me = chitchat.self_chitchat_id().clone();
            chitchat.node_states().keys().filter(|id| **id != me).map(|id| id.gossip_advertise_addr).collect()
        };
        for addr in peers {
            let _ = self.handle.gossip(addr);
        }
        tokio::time::sleep(linger).await;
        let _ = self.handle.shutdown().await;
    }

    /// Stops without a word (as a crash would, for tests and simulations).
    pub fn abort(self) {
        self.handle.abort();
    }
}
