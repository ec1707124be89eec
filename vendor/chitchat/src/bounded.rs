//! switchd patch: gossip messages bounded in size.
//!
//! Upstream chitchat puts every member in every digest and lets a message
//! grow to 64 KB, which the underlay then carries as IP fragments: one lost
//! fragment loses the message. Here every message fits `max_message_len`,
//! so a message is one datagram, and digests name a chosen part of the
//! cluster:
//!
//! - this node, always, so its own news and heartbeat go out every time;
//! - in a SynAck, the members of the Syn's digest on which the two sides
//!   differ (the initiator is ahead, or our heartbeat is newer), so every
//!   exchange syncs the initiator's choice both ways;
//! - members whose state this node does not have yet (heard of, never
//!   received): asking for them is how a joining node fills its view;
//! - rumors: members whose state changed here lately, each named in the
//!   next few digests, so that news spreads by push as well as by pull;
//! - the rest in turn, round robin, so every heartbeat keeps moving.
//!
//! A digest is therefore partial, and a member it does not name is one the
//! sender did not ask about, not one it lacks (see
//! `ClusterState::compute_partial_delta_respecting_mtu`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;

use crate::digest::{Digest, NodeDigest};
use crate::serialize::Serializable;
use crate::state::NodeState;
use crate::ChitchatId;

/// How many digests name a member after its state changed here.
const RUMOR_SENDS: u8 = 6;
/// Rumors kept at most (the oldest are dropped past this).
const MAX_RUMORS: usize = 256;

/// A digest being filled up to a byte budget.
pub(crate) struct DigestBuilder {
    digest: Digest,
    len: usize,
    budget: usize,
}

impl DigestBuilder {
    pub(crate) fn new(budget: usize) -> Self {
        let digest = Digest::default();
        let len = digest.serialized_len();
        DigestBuilder { digest, len, budget }
    }

    /// Adds `id` unless it is there already; false once the budget is spent.
    pub(crate) fn add(&mut self, id: &ChitchatId, node_digest: NodeDigest) -> bool {
        if self.digest.node_digests.contains_key(id) {
            return true;
        }
        let len = id.serialized_len() + node_digest.serialized_len();
        if self.len + len > self.budget || self.digest.node_digests.len() == usize::from(u16::MAX) {
            return false;
        }
        self.len += len;
        self.digest.node_digests.insert(id.clone(), node_digest);
        true
    }

    pub(crate) fn finish(self) -> Digest {
        self.digest
    }
}

/// What a node remembers between digests: where the round robin stopped,
/// and its rumors.
#[derive(Default)]
pub(crate) struct DigestPicker {
    cursor: Option<ChitchatId>,
    rumors: HashMap<ChitchatId, u8>,
}

impl DigestPicker {
    /// Notes that `id`'s state changed here.
    pub(crate) fn rumor(&mut self, id: &ChitchatId) {
        if self.rumors.len() >= MAX_RUMORS && !self.rumors.contains_key(id) {
            if let Some(oldest) = self.rumors.iter().min_by_key(|(_, n)| **n).map(|(id, _)| id.clone()) {
                self.rumors.remove(&oldest);
            }
        }
        self.rumors.insert(id.clone(), RUMOR_SENDS);
    }

    /// Fills `builder` from `nodes` in the order the module explains;
    /// `first` are named right after `self_id`.
    pub(crate) fn fill(
        &mut self,
        mut builder: DigestBuilder,
        self_id: &ChitchatId,
        first: impl IntoIterator<Item = ChitchatId>,
        nodes: &BTreeMap<ChitchatId, NodeState>,
        skip: &HashSet<&ChitchatId>,
    ) -> Digest {
        let digest_of = |id: &ChitchatId| nodes.get(id).filter(|_| !skip.contains(id)).map(NodeState::digest);
        let Some(own) = digest_of(self_id) else { return builder.finish() };
        if !builder.add(self_id, own) {
            return builder.finish();
        }
        for id in first {
            if let Some(d) = digest_of(&id) {
                if !builder.add(&id, d) {
                    return builder.finish();
                }
            }
        }
        for (id, state) in nodes {
            if state.max_version() == 0 && !skip.contains(id) && !builder.add(id, state.digest()) {
                return builder.finish();
            }
        }
        let mut rumors: Vec<(ChitchatId, u8)> = self.rumors.iter().map(|(id, n)| (id.clone(), *n)).collect();
        rumors.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        for (id, _) in rumors {
            let Some(d) = digest_of(&id) else {
                self.rumors.remove(&id);
                continue;
            };
            if !builder.add(&id, d) {
                return builder.finish();
            }
            if let Some(n) = self.rumors.get_mut(&id) {
                *n -= 1;
                if *n == 0 {
                    self.rumors.remove(&id);
                }
            }
        }
        let in_turn: Box<dyn Iterator<Item = (&ChitchatId, &NodeState)>> = match &self.cursor {
            Some(c) => Box::new(
                nodes
                    .range::<ChitchatId, _>((Bound::Excluded(c), Bound::Unbounded))
                    .chain(nodes.range::<ChitchatId, _>(..=c)),
            ),
            None => Box::new(nodes.iter()),
        };
        for (id, state) in in_turn {
            if skip.contains(id) {
                continue;
            }
            if !builder.add(id, state.digest()) {
                break;
            }
            self.cursor = Some(id.clone());
        }
        builder.finish()
    }
}
