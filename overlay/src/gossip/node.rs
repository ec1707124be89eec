//! One host's membership in the cluster: a chitchat instance (scuttlebutt
//! anti-entropy; each host writes only its own keys) over a sealed
//! transport, plus what chitchat leaves to us: publishing our state as
//! key-value pairs, telling how long ago each member was last heard, and
//! leaving cleanly.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chitchat::transport::Transport;
use chitchat::{
    Chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, Heartbeat, NodeState, spawn_chitchat,
};
use switchd_config::Name;
use tokio::time::Instant;

use super::state::{self, Published, StateError};
use super::table::{Member, Timeouts};

/// Digests may take twice their share of a message: the transport
/// compresses them about threefold (BENCHMARKS.md, "Gossip at scale").
const DIGEST_STRETCH: usize = 3;

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
    /// The most bytes a chitchat message may take before compression and
    /// sealing: see [`super::wire::message_budget`].
    pub max_message_len: usize,
}

/// A running member.
pub struct GossipNode {
    handle: ChitchatHandle,
    /// The last heartbeat seen of each member, and when it moved.
    /// hashbrown: looked up for every member several times a second.
    heard: hashbrown::HashMap<ChitchatId, (Heartbeat, Instant)>,
    /// Each member's state as last decoded, and chitchat's version of it
    /// then: a member is decoded again only when its state changed, so a
    /// look at 10,000 remote endpoints costs what changed, not all of them.
    decoded: hashbrown::HashMap<ChitchatId, Decoded>,
    /// Grows whenever a member's decoded state changed or a member went.
    revision: u64,
}

#[derive(Debug)]
struct Decoded {
    version: chitchat::Version,
    published: Option<Arc<Published>>,
    errors: Vec<StateError>,
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
                // Heartbeat intervals kept per member (chitchat's default,
                // 1,000, is 8 KB per member on every host: 8 MB at 1,000
                // hosts, and 8 GB for a simulation of them).
                sampling_window_size: 100,
                ..FailureDetectorConfig::default()
            },
            marked_for_deletion_grace_period: Duration::from_secs(3600),
            catchup_callback: None,
            extra_liveness_predicate: None,
            max_message_len: config.max_message_len,
            digest_stretch: DIGEST_STRETCH,
        };
        let handle = spawn_chitchat(chitchat_config, state::encode(published), transport).await?;
        Ok(GossipNode { handle, heard: Default::default(), decoded: Default::default(), revision: 0 })
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
        self.observe(&chitchat, now);
        let mut members = Vec::new();
        let mut errors = Vec::new();
        for (id, node) in others(&chitchat) {
            let Ok(name) = Name::new(&id.node_id) else { continue };
            let version = node.max_version();
            let decoded = match self.decoded.entry(id.clone()) {
                hashbrown::hash_map::Entry::Occupied(e) if e.get().version == version => e.into_mut(),
                entry => {
                    let (published, errors) = state::decode(node.key_values());
                    self.revision += 1;
                    entry.insert(Decoded { version, published: published.map(Arc::new), errors }).into_mut()
                }
            };
            errors.extend(decoded.errors.iter().map(|e| (name.clone(), e.clone())));
            if let Some(published) = &decoded.published {
                members.push(Member {
                    name,
                    generation: id.generation_id,
                    published: published.clone(),
                    since_heard: now - self.heard[id].1,
                });
            }
        }
        (members, errors)
    }

    /// Changes whenever what [`Self::members`] returns changed other than
    /// by silence: a member's state, or a member gone.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Notes whose heartbeat moved since the last look (see [`Self::members`]).
    fn observe(&mut self, chitchat: &Chitchat, now: Instant) {
        for (id, node) in others(chitchat) {
            let heartbeat = node.heartbeat();
            let heard = self.heard.entry(id.clone()).or_insert((heartbeat, now));
            if heartbeat > heard.0 {
                *heard = (heartbeat, now);
            }
        }
        let known = chitchat.node_states();
        if self.heard.len() > known.len() {
            self.heard.retain(|id, _| known.contains_key(id));
        }
        if self.decoded.len() > known.len() {
            self.decoded.retain(|id, _| known.contains_key(id));
            self.revision += 1;
        }
    }

    /// One member by name, decoded (the newest generation if it restarted).
    pub async fn member(&mut self, name: &str) -> Option<Member> {
        let now = Instant::now();
        let chitchat = self.handle.chitchat();
        let chitchat = chitchat.lock().await;
        self.observe(&chitchat, now);
        let (id, node) =
            others(&chitchat).filter(|(id, _)| &*id.node_id == name).max_by_key(|(id, _)| id.generation_id)?;
        let (published, _) = state::decode(node.key_values());
        Some(Member {
            name: Name::new(name).ok()?,
            generation: id.generation_id,
            published: Arc::new(published?),
            since_heard: now - self.heard[id].1,
        })
    }

    /// Without decoding anyone's state: how many other members were heard
    /// within `alive_within`, and how many of those publish at least `keys`
    /// keys (a cheap sign of a complete view, for simulations).
    pub async fn census(&mut self, alive_within: Duration, keys: usize) -> (usize, usize) {
        let now = Instant::now();
        let chitchat = self.handle.chitchat();
        let chitchat = chitchat.lock().await;
        self.observe(&chitchat, now);
        let alive: Vec<&NodeState> =
            others(&chitchat).filter(|(id, _)| now - self.heard[*id].1 < alive_within).map(|(_, n)| n).collect();
        let complete = alive.iter().filter(|n| n.num_key_values() >= keys).count();
        (alive.len(), complete)
    }

    /// Counts of the members this host knows (any state) and of the key-value
    /// pairs it holds for them: what its memory grows with.
    pub async fn held(&self) -> (usize, usize) {
        let chitchat = self.handle.chitchat();
        let chitchat = chitchat.lock().await;
        let states = chitchat.node_states();
        (states.len(), states.values().map(NodeState::num_key_values).sum())
    }

    /// This host's own state as chitchat holds it, for [`Self::adopt`].
    pub async fn own_state(&self) -> NodeState {
        let chitchat = self.handle.chitchat();
        let mut chitchat = chitchat.lock().await;
        chitchat.self_node_state().clone()
    }

    /// Takes another member's state as if gossip had brought it (sharing
    /// its key-value pairs until one side writes): lets a simulation start
    /// from a formed cluster.
    pub async fn adopt(&self, state: &NodeState) {
        let chitchat = self.handle.chitchat();
        chitchat.lock().await.adopt_node_state(state);
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

/// Every member but this host (under any generation of its name).
fn others(chitchat: &Chitchat) -> impl Iterator<Item = (&ChitchatId, &NodeState)> {
    let me = chitchat.self_chitchat_id();
    chitchat.node_states().iter().filter(move |(id, _)| *id != me && id.node_id != me.node_id)
}
