//! Sealed gossip datagrams: every message between hosts is encrypted and
//! authenticated under a key only cluster members have.
//!
//! ```text
//!  0        4          8                 16                24
//! +--------+----------+-----------------+-----------------+
//! | "sdg1" |  key id  |   session (BE)  |   counter (BE)  |   header, authenticated (AAD)
//! +--------+----------+-----------------+-----------------+
//! | sent at, unix s (8) | message id (4) | fragment (1) | of (1) | message bytes ... |  sealed
//! +---------------------------------------------------------------------------------+
//! | Poly1305 tag (16)                                                               |
//! +---------------------------------------------------------------------------------+
//! ```
//!
//! - Keys: the gossip key is derived (HKDF) from the cluster key; each
//!   sender picks a random 64-bit session at start and seals under a key
//!   derived from the gossip key and that session, counting from zero. So
//!   no (key, nonce) pair ever repeats, across hosts or restarts.
//! - The key id names the cluster key (of the cluster's key ring) the
//!   gossip key was derived from, without revealing it: a datagram sealed
//!   under another cluster's key is counted as such, and during a key
//!   rotation every key of the ring opens while the one in use seals.
//! - Replays: each session keeps a sliding window over counters; messages
//!   sent more than [`MAX_AGE`] ago (a capture replayed later, or a previous
//!   session) are refused by their timestamp.
//! - Every datagram fits the underlay's MTU ([`max_datagram`]): the
//!   underlay never fragments gossip, so a lost IP fragment never loses a
//!   whole message, and networks that drop fragments carry it. chitchat's
//!   messages are bounded to fit one datagram ([`message_budget`]); one
//!   that does not fit anyway travels in up to [`MAX_FRAGMENTS`] sealed
//!   fragments, put back together on arrival.
//! - Nothing is remembered about a sender before its datagram authenticates.

use std::collections::HashMap;
use std::sync::Arc;

use switchd_crypto::{Aead, Key, KeyId, Keyring, ReplayWindow, SharedKeyring, TAG_LEN};

const MAGIC: &[u8; 4] = b"sdg1";
pub const HEADER_LEN: usize = 24;
const INNER_LEN: usize = 14;
/// Bytes a datagram adds around a message (fragment).
pub const OVERHEAD: usize = HEADER_LEN + INNER_LEN + TAG_LEN;
/// The largest UDP payload over IPv4: what a receiver makes room for.
pub const MAX_DATAGRAM: usize = 65_507;
pub const MAX_FRAGMENTS: usize = 16;
/// What zstd may add to a message that does not compress (its frame and
/// block headers), with room to spare.
const ZSTD_MARGIN: usize = 32;

/// The largest UDP payload that crosses an underlay of `underlay_mtu`
/// bytes without IP fragmentation.
pub fn max_datagram(underlay_mtu: usize, ipv6: bool) -> usize {
    let ip_header = if ipv6 { 40 } else { 20 };
    underlay_mtu.saturating_sub(ip_header + 8).clamp(OVERHEAD + ZSTD_MARGIN + 256, MAX_DATAGRAM)
}

/// The most a chitchat message may take, serialized, for its compressed
/// and sealed form to fit one datagram of `max_datagram` bytes.
pub fn message_budget(max_datagram: usize) -> usize {
    max_datagram - OVERHEAD - ZSTD_MARGIN
}
/// How old (or how far in the future) a datagram may say it is, in seconds.
pub const MAX_AGE: u64 = 60;
/// Senders remembered at once (a cluster of this many hosts, and restarts).
const MAX_SESSIONS: usize = 4096;
/// Fragmented messages waiting for their other parts.
const MAX_PARTIAL: usize = 64;

/// Why a datagram was refused (and dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reject {
    /// Shorter than header and tag.
    Truncated,
    /// Not a switchd gossip datagram.
    BadMagic,
    /// Sealed under another key (another cluster, or a stale key).
    WrongKey,
    /// The tag did not verify: forged or altered.
    AuthFailed,
    /// A counter this session has used already.
    Replayed,
    /// Sent too long ago (or too far in the future).
    Stale,
    /// A fragment that does not fit the message it claims to belong to.
    BadFragment,
}

impl Reject {
    pub const ALL: [Reject; 7] = [
        Reject::Truncated,
        Reject::BadMagic,
        Reject::WrongKey,
        Reject::AuthFailed,
        Reject::Replayed,
        Reject::Stale,
        Reject::BadFragment,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reject::Truncated => "truncated",
            Reject::BadMagic => "bad_magic",
            Reject::WrongKey => "wrong_key",
            Reject::AuthFailed => "auth_failed",
            Reject::Replayed => "replayed",
            Reject::Stale => "stale",
            Reject::BadFragment => "bad_fragment",
        }
    }
}

fn gossip_key(cluster_key: &Key) -> Key {
    cluster_key.derive("switchd gossip", &[])
}

fn session_aead(gossip_key: &Key, session: u64) -> Aead {
    Aead::new(&gossip_key.derive("switchd gossip session", &session.to_be_bytes()))
}

/// The sending side of one host's gossip.
#[derive(Debug)]
pub struct Sealer {
    keys: SharedKeyring,
    generation: u64,
    key_id: KeyId,
    session: u64,
    aead: Aead,
    /// Never reset, not even when the key changes: one count per session.
    counter: u64,
    next_message: u32,
    /// How much of a message one datagram carries.
    max_fragment: usize,
}

impl Sealer {
    /// Seals under `cluster_key` alone.
    pub fn new(cluster_key: &Key, session: u64) -> Self {
        Sealer::with_ring(SharedKeyring::new(Keyring::new(cluster_key.clone())), session)
    }

    /// Seals under whichever key of `keys` is in use. `session` must be
    /// random and new for every start of the host.
    pub fn with_ring(keys: SharedKeyring, session: u64) -> Self {
        let generation = keys.generation();
        let ring = keys.snapshot();
        let (key_id, root) = ring.sending();
        let aead = session_aead(&gossip_key(root), session);
        Sealer {
            keys,
            generation,
            key_id,
            session,
            aead,
            counter: 0,
            next_message: 0,
            max_fragment: MAX_DATAGRAM - OVERHEAD,
        }
    }

    /// Keeps every datagram within `max_datagram` bytes.
    pub fn limit_datagrams(&mut self, max_datagram: usize) {
        self.max_fragment = max_datagram.clamp(OVERHEAD + 1, MAX_DATAGRAM) - OVERHEAD;
    }

    /// Follows a change of the key in use.
    fn refresh(&mut self) {
        let generation = self.keys.generation();
        if generation == self.generation {
            return;
        }
        self.generation = generation;
        let ring = self.keys.snapshot();
        let (id, root) = ring.sending();
        if id != self.key_id {
            self.key_id = id;
            self.aead = session_aead(&gossip_key(root), self.session);
        }
    }

    /// Seals `message` into datagrams, handed to `send` one by one. A
    /// message that would need more than [`MAX_FRAGMENTS`] is not sent:
    /// false.
    pub fn seal(&mut self, message: &[u8], now: u64, mut send: impl FnMut(&[u8])) -> bool {
        let max_fragment = self.max_fragment;
        let parts = message.len().div_ceil(max_fragment).max(1);
        if parts > MAX_FRAGMENTS {
            return false;
        }
        self.refresh();
        let id = self.next_message;
        self.next_message = self.next_message.wrapping_add(1);
        let mut datagram = Vec::with_capacity(OVERHEAD + message.len().min(max_fragment));
        for (index, chunk) in message.chunks(max_fragment).chain(std::iter::once(&[][..])).take(parts).enumerate() {
            datagram.clear();
            datagram.extend_from_slice(MAGIC);
            datagram.extend_from_slice(&self.key_id.0);
            datagram.extend_from_slice(&self.session.to_be_bytes());
            datagram.extend_from_slice(&self.counter.to_be_bytes());
            datagram.extend_from_slice(&now.to_be_bytes());
            datagram.extend_from_slice(&id.to_be_bytes());
            datagram.push(index as u8);
            datagram.push(parts as u8);
            datagram.extend_from_slice(chunk);
            let (header, body) = datagram.split_at_mut(HEADER_LEN);
            let tag = self.aead.seal(self.counter, header, body);
            datagram.extend_from_slice(&tag);
            self.counter += 1;
            send(&datagram);
        }
        true
    }
}

#[derive(Debug)]
struct Session {
    aead: Aead,
    window: ReplayWindow,
    last_used: u64,
}

#[derive(Debug)]
struct Partial {
    parts: Vec<Option<Vec<u8>>>,
    started: u64,
}

/// The receiving side: opens datagrams from any member's session, sealed
/// under any key of the ring.
#[derive(Debug)]
pub struct Opener {
    keys: SharedKeyring,
    generation: u64,
    ring: Arc<Keyring>,
    /// By key id and session.
    sessions: HashMap<(KeyId, u64), Session>,
    partial: HashMap<(u64, u32), Partial>,
    /// Drops by reason.
    pub drops: HashMap<Reject, u64>,
    /// Datagrams accepted.
    pub accepted: u64,
    /// Monotonic use counter for evicting the least recently used session.
    clock: u64,
}

impl Opener {
    /// Opens what `cluster_key` alone sealed.
    pub fn new(cluster_key: &Key) -> Self {
        Opener::with_ring(SharedKeyring::new(Keyring::new(cluster_key.clone())))
    }

    pub fn with_ring(keys: SharedKeyring) -> Self {
        Opener {
            generation: keys.generation(),
            ring: keys.snapshot(),
            keys,
            sessions: HashMap::new(),
            partial: HashMap::new(),
            drops: HashMap::new(),
            accepted: 0,
            clock: 0,
        }
    }

    /// Follows a change of the ring: a removed key's sessions go with it.
    fn refresh(&mut self) {
        let generation = self.keys.generation();
        if generation != self.generation {
            self.generation = generation;
            self.ring = self.keys.snapshot();
            let ring = &self.ring;
            self.sessions.retain(|(id, _), _| ring.get(*id).is_some());
        }
    }

    /// Opens one datagram. `Ok(Some(message))` when a whole message is
    /// here, `Ok(None)` for a fragment that waits for the rest. Every
    /// `Err` is also counted in [`Opener::drops`].
    pub fn open(&mut self, datagram: &[u8], now: u64) -> Result<Option<Vec<u8>>, Reject> {
        let result = self.open_inner(datagram, now);
        match result {
            Ok(_) => self.accepted += 1,
            Err(reason) => *self.drops.entry(reason).or_default() += 1,
        }
        result
    }

    fn open_inner(&mut self, datagram: &[u8], now: u64) -> Result<Option<Vec<u8>>, Reject> {
        if datagram.len() < HEADER_LEN + INNER_LEN + TAG_LEN {
            return Err(Reject::Truncated);
        }
        if &datagram[..4] != MAGIC {
            return Err(Reject::BadMagic);
        }
        self.refresh();
        let key_id = KeyId(datagram[4..8].try_into().expect("4 bytes"));
        let Some(root) = self.ring.get(key_id) else {
            return Err(Reject::WrongKey);
        };
        let session_id = u64::from_be_bytes(datagram[8..16].try_into().expect("8 bytes"));
        let counter = u64::from_be_bytes(datagram[16..24].try_into().expect("8 bytes"));
        let slot = (key_id, session_id);
        if let Some(s) = self.sessions.get(&slot)
            && !s.window.is_fresh(counter)
        {
            return Err(Reject::Replayed);
        }
        let (header, rest) = datagram.split_at(HEADER_LEN);
        let (sealed, tag) = rest.split_at(rest.len() - TAG_LEN);
        let tag: &[u8; TAG_LEN] = tag.try_into().expect("TAG_LEN bytes");
        let mut body = sealed.to_vec();
        // A new session's key is derived to check the tag, and kept only if it does.
        let fresh = (!self.sessions.contains_key(&slot)).then(|| session_aead(&gossip_key(root), session_id));
        let aead = self.sessions.get(&slot).map(|s| &s.aead).or(fresh.as_ref()).expect("known or fresh");
        aead.open(counter, header, &mut body, tag).map_err(|_| Reject::AuthFailed)?;

        let sent = u64::from_be_bytes(body[..8].try_into().expect("8 bytes"));
        if sent.abs_diff(now) > MAX_AGE {
            return Err(Reject::Stale);
        }
        self.clock += 1;
        if let Some(aead) = fresh {
            self.evict_sessions();
            self.sessions.insert(slot, Session { aead, window: ReplayWindow::default(), last_used: 0 });
        }
        let session = self.sessions.get_mut(&slot).expect("present");
        session.last_used = self.clock;
        if !session.window.accept(counter) {
            return Err(Reject::Replayed);
        }

        let message_id = u32::from_be_bytes(body[8..12].try_into().expect("4 bytes"));
        let (index, count) = (usize::from(body[12]), usize::from(body[13]));
        body.drain(..INNER_LEN);
        if count == 1 && index == 0 {
            return Ok(Some(body));
        }
        if count == 0 || count > MAX_FRAGMENTS || index >= count {
            return Err(Reject::BadFragment);
        }
        self.reassemble(session_id, message_id, index, count, body, now)
    }

    fn reassemble(
        &mut self,
        session: u64,
        id: u32,
        index: usize,
        count: usize,
        part: Vec<u8>,
        now: u64,
    ) -> Result<Option<Vec<u8>>, Reject> {
        self.partial.retain(|_, p| now.saturating_sub(p.started) <= MAX_AGE);
        if self.partial.len() >= MAX_PARTIAL && !self.partial.contains_key(&(session, id)) {
            let oldest = self.partial.iter().min_by_key(|(_, p)| p.started).map(|(k, _)| *k);
            if let Some(k) = oldest {
                self.partial.remove(&k);
            }
        }
        let entry =
            self.partial.entry((session, id)).or_insert_with(|| Partial { parts: vec![None; count], started: now });
        if entry.parts.len() != count || entry.parts[index].is_some() {
            return Err(Reject::BadFragment);
        }
        entry.parts[index] = Some(part);
        if entry.parts.iter().all(Option::is_some) {
            let whole = self.partial.remove(&(session, id)).expect("present");
            return Ok(Some(whole.parts.into_iter().flatten().flatten().collect()));
        }
        Ok(None)
    }

    fn evict_sessions(&mut self) {
        if self.sessions.len() < MAX_SESSIONS {
            return;
        }
        if let Some(&oldest) = self.sessions.iter().min_by_key(|(_, s)| s.last_used).map(|(k, _)| k) {
            self.sessions.remove(&oldest);
        }
    }

    /// How many drops there were for `reason`.
    pub fn dropped(&self, reason: Reject) -> u64 {
        self.drops.get(&reason).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn key(b: u8) -> Key {
        Key::from_bytes([b; 32])
    }

    fn seal_all(sealer: &mut Sealer, message: &[u8], now: u64) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        sealer.seal(message, now, |d| out.push(d.to_vec()));
        out
    }

    #[test]
    fn round_trip() {
        let mut s = Sealer::new(&key(1), 42);
        let mut o = Opener::new(&key(1));
        for msg in [&b"syn"[..], b"", &[7u8; 1000]] {
            let d = seal_all(&mut s, msg, NOW);
            assert_eq!(d.len(), 1);
            assert_eq!(d[0].len(), msg.len() + OVERHEAD);
            assert_eq!(o.open(&d[0], NOW).unwrap().as_deref(), Some(msg));
        }
        assert_eq!(o.accepted, 3);
    }

    #[test]
    fn wrong_key_tampering_truncation_and_noise() {
        let mut s = Sealer::new(&key(1), 42);
        let d = seal_all(&mut s, b"hello", NOW).remove(0);
        let mut o = Opener::new(&key(2));
        assert_eq!(o.open(&d, NOW), Err(Reject::WrongKey));
        let mut o = Opener::new(&key(1));
        for i in [8, 16, HEADER_LEN, HEADER_LEN + 3, d.len() - 1] {
            let mut t = d.clone();
            t[i] ^= 0x10;
            assert_eq!(o.open(&t, NOW), Err(Reject::AuthFailed), "byte {i} changed");
        }
        assert_eq!(o.open(&d[..d.len() - 1], NOW), Err(Reject::AuthFailed), "tag cut");
        assert_eq!(o.open(&d[..20], NOW), Err(Reject::Truncated));
        assert_eq!(o.open(&[0u8; 100], NOW), Err(Reject::BadMagic));
        assert!(o.sessions.is_empty(), "nothing remembered of unauthenticated senders");
        assert_eq!(o.open(&d, NOW).unwrap().as_deref(), Some(&b"hello"[..]));
        assert_eq!(o.dropped(Reject::AuthFailed), 6);
    }

    #[test]
    fn replays_and_stale_datagrams() {
        let mut s = Sealer::new(&key(1), 42);
        let mut o = Opener::new(&key(1));
        let d = seal_all(&mut s, b"a", NOW).remove(0);
        assert!(o.open(&d, NOW).is_ok());
        assert_eq!(o.open(&d, NOW), Err(Reject::Replayed));
        // A capture replayed to a host that restarted (no session state):
        // refused by its timestamp.
        let mut fresh = Opener::new(&key(1));
        assert_eq!(fresh.open(&d, NOW + MAX_AGE + 1), Err(Reject::Stale));
        let future = seal_all(&mut s, b"b", NOW + MAX_AGE + 5).remove(0);
        assert_eq!(o.open(&future, NOW), Err(Reject::Stale));
        assert_eq!(o.dropped(Reject::Replayed), 1);
    }

    #[test]
    fn sessions_do_not_share_nonces_or_state() {
        let (mut a, mut b) = (Sealer::new(&key(1), 1), Sealer::new(&key(1), 2));
        let mut o = Opener::new(&key(1));
        let da = seal_all(&mut a, b"same", NOW).remove(0);
        let db = seal_all(&mut b, b"same", NOW).remove(0);
        assert_ne!(da[HEADER_LEN..], db[HEADER_LEN..], "same counter, different session keys");
        assert!(o.open(&da, NOW).is_ok() && o.open(&db, NOW).is_ok(), "counter 0 of each session");
        // Forging a session id does not move another session's window.
        let mut forged = da.clone();
        forged[15] ^= 1;
        assert_eq!(o.open(&forged, NOW), Err(Reject::AuthFailed));
    }

    /// Rotation: add (both open the new key), use (seal with it), remove
    /// (the old key no longer opens, its sessions forgotten).
    #[test]
    fn key_rotation_loses_nothing_and_retires_the_old_key() {
        let keys_a = SharedKeyring::new(Keyring::new(key(1)));
        let keys_b = SharedKeyring::new(Keyring::new(key(1)));
        let mut a = Sealer::with_ring(keys_a.clone(), 1);
        let mut b_opens = Opener::with_ring(keys_b.clone());
        let before = seal_all(&mut a, b"old key", NOW).remove(0);
        let add = |keys: &SharedKeyring| {
            let mut ring = (*keys.snapshot()).clone();
            ring.add(key(2)).unwrap();
            keys.replace(ring);
        };
        add(&keys_b);
        add(&keys_a);
        let mut ring = (*keys_a.snapshot()).clone();
        ring.use_for_sending(key(2).id()).unwrap();
        keys_a.replace(ring);
        let after = seal_all(&mut a, b"new key", NOW).remove(0);
        assert_eq!(&after[4..8], &key(2).id().0, "sealed under the new key");
        assert_eq!(b_opens.open(&after, NOW).unwrap().as_deref(), Some(&b"new key"[..]));
        assert_eq!(b_opens.open(&before, NOW).unwrap().as_deref(), Some(&b"old key"[..]), "in flight: still opens");
        let mut ring = (*keys_b.snapshot()).clone();
        ring.remove(key(1).id()).unwrap_err();
        ring.use_for_sending(key(2).id()).unwrap();
        ring.remove(key(1).id()).unwrap();
        keys_b.replace(ring);
        let late = seal_all(&mut Sealer::new(&key(1), 5), b"old key, late", NOW).remove(0);
        assert_eq!(b_opens.open(&late, NOW), Err(Reject::WrongKey));
        let next = seal_all(&mut a, b"still flowing", NOW).remove(0);
        assert!(b_opens.open(&next, NOW).unwrap().is_some());
    }

    #[test]
    fn large_messages_travel_in_fragments_within_the_mtu_in_any_order() {
        let max = max_datagram(1500, false);
        assert_eq!((max, max_datagram(1500, true)), (1472, 1452));
        let msg: Vec<u8> = (0..4000u32).map(|i| (i % 253) as u8).collect();
        let mut s = Sealer::new(&key(1), 9);
        s.limit_datagrams(max);
        let mut o = Opener::new(&key(1));
        let mut d = seal_all(&mut s, &msg, NOW);
        assert_eq!(d.len(), 3);
        assert!(d.iter().all(|x| x.len() <= max), "{:?}", d.iter().map(Vec::len).collect::<Vec<_>>());
        d.swap(0, 2);
        assert_eq!(o.open(&d[0], NOW), Ok(None));
        assert_eq!(o.open(&d[1], NOW), Ok(None));
        assert_eq!(o.open(&d[2], NOW).unwrap(), Some(msg));
        assert!(o.partial.is_empty());
    }

    #[test]
    fn a_message_beyond_max_fragments_is_not_sent() {
        let mut s = Sealer::new(&key(1), 9);
        s.limit_datagrams(1472);
        let msg = vec![1u8; MAX_FRAGMENTS * (1472 - OVERHEAD) + 1];
        let mut sent = 0;
        assert!(!s.seal(&msg, NOW, |_| sent += 1));
        assert_eq!(sent, 0);
        assert!(s.seal(&msg[1..], NOW, |_| sent += 1));
        assert_eq!(sent, MAX_FRAGMENTS);
    }

    #[test]
    fn a_message_exactly_one_fragment_long() {
        let msg = vec![1u8; 1472 - OVERHEAD];
        let mut s = Sealer::new(&key(1), 9);
        s.limit_datagrams(1472);
        let d = seal_all(&mut s, &msg, NOW);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].len(), 1472);
        assert_eq!(Opener::new(&key(1)).open(&d[0], NOW).unwrap(), Some(msg));
    }

    /// A message of the budget's size fits one datagram however badly it
    /// compresses.
    #[test]
    fn a_budget_sized_message_fits_one_datagram_even_incompressible() {
        let max = 1472;
        let mut noise = vec![0u8; message_budget(max)];
        switchd_crypto::random::fill(&mut noise);
        let packed = zstd::bulk::compress(&noise, 1).unwrap();
        assert!(packed.len() > noise.len(), "noise does not compress");
        let mut s = Sealer::new(&key(1), 9);
        s.limit_datagrams(max);
        let d = seal_all(&mut s, &packed, NOW);
        assert_eq!(d.len(), 1);
        assert!(d[0].len() <= max);
    }
}
