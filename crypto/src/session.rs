//! Data-plane sessions: which key seals a sender's packets, and the state
//! a receiver keeps to open them exactly once.
//!
//! A session key is derived in two HKDF steps from a root key of a ring
//! (the cluster's, or a network's own):
//!
//! ```text
//! network key = HKDF(root,    "switchd network", VNI)
//! session key = HKDF(network, "switchd vxlan session", cipher | sender IP | session | lane)
//! ```
//!
//! - The **sender IP** (its VTEP address) separates hosts that share a key.
//! - The **session** is new at every start of a host and greater than the
//!   last ([`SessionId::new_boot`]), which separates boots.
//! - The **lane** separates a host's concurrent senders (data-plane
//!   worker and send socket): each lane counts its own nonces in the
//!   order it sends, so a receiver's replay window sees them in order.
//!
//! So no (key, nonce) pair repeats as long as each lane's counter only
//! grows, which [`TxSessions`] guarantees for the life of the process.
//!
//! [`RxSessions`] keeps one replay window per session key. It stores
//! nothing for a packet whose tag does not verify, refuses sessions older
//! than the newest it has seen (or been told of) for that sender, and
//! forgets a sender's older sessions when a newer one authenticates.

use std::collections::HashMap;
use std::ops::Range;

use crate::aead::{Aead, Backend, Cipher, TAG_LEN};
use crate::{Key, KeyId, ReplayWindow};

const NETWORK_LABEL: &str = "switchd network";
const SESSION_LABEL: &str = "switchd vxlan session";

/// One boot of a sender. Later boots have greater ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(pub u64);

impl SessionId {
    /// A new boot's session: the Unix time in milliseconds in the high 48
    /// bits, 16 random bits below, and in any case greater than `after`
    /// (the previous boot's, when it was saved), so that a clock set back
    /// cannot make a session look older than its predecessor.
    pub fn new_boot(unix_ms: u64, after: Option<SessionId>) -> SessionId {
        let random = crate::random::u64() & 0xffff;
        let candidate = (unix_ms << 16) | random;
        match after {
            Some(SessionId(prev)) if candidate <= prev => SessionId(prev.wrapping_add(1 + random)),
            _ => SessionId(candidate),
        }
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Everything that names one session key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionRef {
    /// The sender's VTEP address (IPv4 mapped into IPv6).
    pub sender: [u8; 16],
    /// The network (its VNI).
    pub vni: u32,
    pub cipher: Cipher,
    /// The root key's id.
    pub key: KeyId,
    pub session: SessionId,
    pub lane: u16,
}

impl SessionRef {
    /// The session key's AEAD, derived from the root key `root` (whose id
    /// is `self.key`).
    pub fn aead(&self, backend: Backend, root: &Key) -> Aead {
        let network = root.derive(NETWORK_LABEL, &self.vni.to_be_bytes());
        let mut info = [0u8; 1 + 16 + 8 + 2];
        info[0] = self.cipher.wire_id();
        info[1..17].copy_from_slice(&self.sender);
        info[17..25].copy_from_slice(&self.session.0.to_be_bytes());
        info[25..27].copy_from_slice(&self.lane.to_be_bytes());
        Aead::with(backend, self.cipher, &network.derive(SESSION_LABEL, &info))
    }
}

/// The sending side of one data-plane worker: its lanes' counters and the
/// session keys it has derived.
#[derive(Debug)]
pub struct TxSessions {
    backend: Backend,
    sender: [u8; 16],
    session: SessionId,
    lanes: Range<u16>,
    /// The next counter of each lane (indexed from `lanes.start`). Never
    /// reset: whatever key or network a lane seals for next, its nonce is new.
    counters: Vec<u64>,
    keys: HashMap<(u32, Cipher, KeyId, u16), Aead>,
}

/// One lane's sealing for one network and key, ready for many packets.
#[derive(Debug)]
pub struct TxSession<'a> {
    pub at: SessionRef,
    pub aead: &'a Aead,
    counter: &'a mut u64,
}

impl TxSession<'_> {
    /// The next nonce counter; `None` once the lane has used them all
    /// (2^64 packets: never, in practice), rather than ever repeat one.
    pub fn next_counter(&mut self) -> Option<u64> {
        let c = *self.counter;
        *self.counter = c.checked_add(1)?;
        Some(c)
    }

    /// `n` consecutive counters at once, for packets sealed together (in
    /// any order, on any thread): the first of them; `None` if the lane
    /// has fewer left.
    pub fn reserve(&mut self, n: u64) -> Option<u64> {
        let c = *self.counter;
        *self.counter = c.checked_add(n)?;
        Some(c)
    }
}

impl TxSessions {
    pub fn new(backend: Backend, sender: [u8; 16], session: SessionId, lanes: Range<u16>) -> Self {
        TxSessions { backend, sender, session, counters: vec![0; lanes.len()], lanes, keys: HashMap::new() }
    }

    pub fn session(&self) -> SessionId {
        self.session
    }

    /// The session for `vni` sealed under root key `root` on `lane` (an
    /// offset into this worker's lanes, wrapped to fit).
    pub fn get(&mut self, root: (KeyId, &Key), vni: u32, cipher: Cipher, lane: usize) -> TxSession<'_> {
        let index = lane % self.counters.len();
        let at = SessionRef {
            sender: self.sender,
            vni,
            cipher,
            key: root.0,
            session: self.session,
            lane: self.lanes.start + index as u16,
        };
        let backend = self.backend;
        let aead = self.keys.entry((vni, cipher, root.0, at.lane)).or_insert_with(|| at.aead(backend, root.1));
        TxSession { at, aead, counter: &mut self.counters[index] }
    }

    /// Forgets derived keys (after a key ring changed). Counters stay.
    pub fn forget_keys(&mut self) {
        self.keys.clear();
    }
}

/// Why a packet was not opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpenError {
    /// Sealed under a key this host does not hold (or no longer accepts).
    UnknownKey,
    /// From a sender's earlier boot than one already seen.
    OldSession,
    /// The tag did not verify: tampered, forged or sealed for another.
    AuthFailed,
    /// A counter this session has used already, or one too old to tell.
    Replayed,
    /// Too many sessions held; a new one is refused rather than one
    /// forgotten (forgetting a window would let its packets replay).
    SessionLimit,
}

#[derive(Debug)]
struct RxSession {
    aead: Aead,
    window: ReplayWindow,
}

/// The receiving side: one replay window per session key.
#[derive(Debug)]
pub struct RxSessions {
    backend: Backend,
    sessions: HashMap<SessionRef, RxSession>,
    /// The newest session of each sender, authenticated or announced.
    newest: HashMap<[u8; 16], SessionId>,
    limit: usize,
}

impl RxSessions {
    /// At most `limit` sessions at once.
    pub fn new(backend: Backend, limit: usize) -> Self {
        RxSessions { backend, sessions: HashMap::new(), newest: HashMap::new(), limit }
    }

    /// Checks and decrypts one packet in place: `in_out` sealed under the
    /// session `at` with nonce `counter`, `aad` authenticated with it.
    /// `root` finds a root key by id; it is asked only for a session not
    /// seen before. On success the counter is spent.
    pub fn open<'k>(
        &mut self,
        at: &SessionRef,
        root: impl FnOnce(KeyId) -> Option<&'k Key>,
        counter: u64,
        aad: &[u8],
        in_out: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), OpenError> {
        if self.newest.get(&at.sender).is_some_and(|newest| at.session < *newest) {
            return Err(OpenError::OldSession);
        }
        if let Some(s) = self.sessions.get_mut(at) {
            if !s.window.is_fresh(counter) {
                return Err(OpenError::Replayed);
            }
            s.aead.open(counter, aad, in_out, tag).map_err(|_| OpenError::AuthFailed)?;
            s.window.accept(counter);
            return Ok(());
        }
        // A session not seen before: its key is derived to check the tag,
        // and kept only if the tag verifies.
        let key = root(at.key).ok_or(OpenError::UnknownKey)?;
        let aead = at.aead(self.backend, key);
        aead.open(counter, aad, in_out, tag).map_err(|_| OpenError::AuthFailed)?;
        self.note_session(at.sender, at.session);
        if self.sessions.len() >= self.limit {
            return Err(OpenError::SessionLimit);
        }
        let mut window = ReplayWindow::default();
        window.accept(counter);
        self.sessions.insert(*at, RxSession { aead, window });
        Ok(())
    }

    /// The checks [`RxSessions::open`] makes before decrypting, without
    /// changing anything, for packets opened together on several threads:
    /// the session's key if the session is known and `counter` fresh in it,
    /// `None` if the session is new (then open it with [`RxSessions::open`]).
    /// After the tag verified with that key, [`RxSessions::accept`] spends
    /// the counter.
    pub fn prepare(&self, at: &SessionRef, counter: u64) -> Result<Option<&Aead>, OpenError> {
        if self.newest.get(&at.sender).is_some_and(|newest| at.session < *newest) {
            return Err(OpenError::OldSession);
        }
        match self.sessions.get(at) {
            Some(s) if !s.window.is_fresh(counter) => Err(OpenError::Replayed),
            Some(s) => Ok(Some(&s.aead)),
            None => Ok(None),
        }
    }

    /// Spends `counter` of the known session `at` once its packet's tag
    /// verified with [`RxSessions::prepare`]'s key: `Replayed` if it was
    /// spent meanwhile (a copy opened just before it).
    pub fn accept(&mut self, at: &SessionRef, counter: u64) -> Result<(), OpenError> {
        let s = self.sessions.get_mut(at).ok_or(OpenError::UnknownKey)?;
        if s.window.accept(counter) { Ok(()) } else { Err(OpenError::Replayed) }
    }

    /// `sender`'s current session, as its authenticated gossip says:
    /// earlier ones are refused from now on.
    pub fn announce(&mut self, sender: [u8; 16], session: SessionId) {
        self.note_session(sender, session);
    }

    fn note_session(&mut self, sender: [u8; 16], session: SessionId) {
        let newest = self.newest.entry(sender).or_insert(session);
        if session > *newest {
            *newest = session;
        }
        let newest = *newest;
        self.sessions.retain(|at, _| at.sender != sender || at.session >= newest);
    }

    /// Forgets sessions whose network and key `keep` no longer accepts
    /// (after a key was removed or a network went away).
    pub fn retain(&mut self, mut keep: impl FnMut(u32, KeyId) -> bool) {
        self.sessions.retain(|at, _| keep(at.vni, at.key));
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 0, 1];
    const B: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 0, 2];

    fn root(b: u8) -> Key {
        Key::from_bytes([b; 32])
    }

    /// Seals `text` as lane `lane` of a sender would; returns what goes on the wire.
    fn seal(
        tx: &mut TxSessions,
        key: &Key,
        vni: u32,
        lane: usize,
        text: &[u8],
    ) -> (SessionRef, u64, Vec<u8>, [u8; 16]) {
        let mut s = tx.get((key.id(), key), vni, Cipher::ChaCha20Poly1305, lane);
        let counter = s.next_counter().unwrap();
        let mut data = text.to_vec();
        let tag = s.aead.seal(counter, b"hdr", &mut data);
        (s.at, counter, data, tag)
    }

    fn open(rx: &mut RxSessions, key: &Key, p: &(SessionRef, u64, Vec<u8>, [u8; 16])) -> Result<Vec<u8>, OpenError> {
        let mut data = p.2.clone();
        rx.open(&p.0, |id| (id == key.id()).then_some(key), p.1, b"hdr", &mut data, &p.3).map(|()| data)
    }

    #[test]
    fn sessions_are_new_and_ordered_across_boots() {
        let first = SessionId::new_boot(1_800_000_000_000, None);
        assert_eq!(first.0 >> 16, 1_800_000_000_000);
        let next = SessionId::new_boot(1_800_000_000_001, Some(first));
        assert!(next > first);
        // The clock went back: still after the saved one.
        let after_reset = SessionId::new_boot(1_000, Some(next));
        assert!(after_reset > next);
    }

    #[test]
    fn a_packet_opens_once_and_only_with_its_own_everything() {
        let key = root(1);
        let mut tx = TxSessions::new(Backend::default(), A, SessionId(7 << 16), 0..16);
        let mut rx = RxSessions::new(Backend::default(), 100);
        let p = seal(&mut tx, &key, 100, 0, b"frame");
        assert_eq!(open(&mut rx, &key, &p).unwrap(), b"frame");
        assert_eq!(open(&mut rx, &key, &p), Err(OpenError::Replayed));

        let p2 = seal(&mut tx, &key, 100, 0, b"frame");
        for (what, mut changed) in [
            ("another sender", p2.clone()),
            ("another vni", p2.clone()),
            ("another lane", p2.clone()),
            ("another session", p2.clone()),
            ("another cipher", p2.clone()),
        ] {
            match what {
                "another sender" => changed.0.sender = B,
                "another vni" => changed.0.vni = 101,
                "another lane" => changed.0.lane = 1,
                "another session" => changed.0.session = SessionId(8 << 16),
                _ => changed.0.cipher = Cipher::Aes256Gcm,
            }
            assert_eq!(open(&mut rx, &key, &changed), Err(OpenError::AuthFailed), "{what}");
        }
        assert_eq!(rx.len(), 1, "failed tags stored nothing");
        let mut other_key = p2.clone();
        other_key.0.key = root(2).id();
        assert_eq!(open(&mut rx, &key, &other_key), Err(OpenError::UnknownKey));
        assert_eq!(open(&mut rx, &key, &p2).unwrap(), b"frame", "the real one still opens");
    }

    #[test]
    fn counters_never_restart_on_a_lane_whatever_it_seals() {
        let (k1, k2) = (root(1), root(2));
        let mut tx = TxSessions::new(Backend::default(), A, SessionId(1), 16..32);
        let a = seal(&mut tx, &k1, 100, 3, b"x");
        let b = seal(&mut tx, &k2, 100, 3, b"x");
        tx.forget_keys();
        let c = seal(&mut tx, &k1, 200, 3, b"x");
        let d = seal(&mut tx, &k1, 100, 3 + 16, b"x");
        assert_eq!((a.1, b.1, c.1, d.1), (0, 1, 2, 3));
        assert_eq!(a.0.lane, 19, "lanes are offsets into this worker's range");
        assert_eq!(d.0.lane, 19, "and wrap into it");
        let e = seal(&mut tx, &k1, 100, 4, b"x");
        assert_eq!((e.0.lane, e.1), (20, 0), "each lane counts alone");
    }

    #[test]
    fn a_new_boot_retires_the_old_one() {
        let key = root(1);
        let mut rx = RxSessions::new(Backend::default(), 100);
        let mut boot1 = TxSessions::new(Backend::default(), A, SessionId(5 << 16), 0..16);
        let old = seal(&mut boot1, &key, 100, 0, b"old");
        let old_unsent = seal(&mut boot1, &key, 100, 0, b"old, captured");
        open(&mut rx, &key, &old).unwrap();
        let mut boot2 = TxSessions::new(Backend::default(), A, SessionId(6 << 16), 0..16);
        let new = seal(&mut boot2, &key, 100, 0, b"new");
        assert_eq!(open(&mut rx, &key, &new).unwrap(), b"new", "accepted at once");
        assert_eq!(rx.len(), 1, "the old session's window is gone");
        assert_eq!(open(&mut rx, &key, &old_unsent), Err(OpenError::OldSession));
        // Another sender's sessions are untouched.
        let mut b = TxSessions::new(Backend::default(), B, SessionId(1), 0..16);
        open(&mut rx, &key, &seal(&mut b, &key, 100, 0, b"b")).unwrap();
        assert_eq!(rx.len(), 2);
    }

    #[test]
    fn an_announced_session_refuses_earlier_boots_before_any_packet() {
        let key = root(1);
        let mut rx = RxSessions::new(Backend::default(), 100);
        let mut boot1 = TxSessions::new(Backend::default(), A, SessionId(5 << 16), 0..16);
        let captured = seal(&mut boot1, &key, 100, 0, b"old");
        rx.announce(A, SessionId(6 << 16));
        assert_eq!(open(&mut rx, &key, &captured), Err(OpenError::OldSession));
    }

    #[test]
    fn limits_and_retain() {
        let key = root(1);
        let mut rx = RxSessions::new(Backend::default(), 2);
        let mut tx = TxSessions::new(Backend::default(), A, SessionId(1), 0..16);
        open(&mut rx, &key, &seal(&mut tx, &key, 1, 0, b"x")).unwrap();
        open(&mut rx, &key, &seal(&mut tx, &key, 2, 0, b"x")).unwrap();
        let third = seal(&mut tx, &key, 3, 0, b"x");
        assert_eq!(open(&mut rx, &key, &third), Err(OpenError::SessionLimit));
        rx.retain(|vni, _| vni != 1);
        assert_eq!(rx.len(), 1);
        let fourth = seal(&mut tx, &key, 3, 0, b"x");
        open(&mut rx, &key, &fourth).unwrap();
    }
    #[test]
    fn reserved_counters_follow_on_from_single_ones() {
        let key = root(1);
        let mut tx = TxSessions::new(Backend::default(), A, SessionId(1), 0..16);
        let mut s = tx.get((key.id(), &key), 100, Cipher::Aes256Gcm, 0);
        assert_eq!(s.next_counter(), Some(0));
        assert_eq!(s.reserve(45), Some(1));
        assert_eq!(s.next_counter(), Some(46), "after the reserved ones");
        *s.counter = u64::MAX - 2;
        assert_eq!(s.reserve(3), None, "never past the last nonce");
        assert_eq!(s.reserve(2), Some(u64::MAX - 2));
    }

    /// What `prepare`, a decryption elsewhere and `accept` do together is
    /// what `open` does: each counter once, old boots refused.
    #[test]
    fn prepared_opening_spends_each_counter_once() {
        let key = root(1);
        let mut tx = TxSessions::new(Backend::default(), A, SessionId(5 << 16), 0..16);
        let mut rx = RxSessions::new(Backend::default(), 100);
        let first = seal(&mut tx, &key, 100, 0, b"first");
        assert!(matches!(rx.prepare(&first.0, first.1), Ok(None)), "a new session goes through open");
        open(&mut rx, &key, &first).unwrap();
        assert_eq!(rx.prepare(&first.0, first.1).err(), Some(OpenError::Replayed));

        let p = seal(&mut tx, &key, 100, 0, b"second");
        let aead = rx.prepare(&p.0, p.1).unwrap().expect("a known session");
        let mut data = p.2.clone();
        aead.open(p.1, b"hdr", &mut data, &p.3).unwrap();
        assert_eq!(data, b"second");
        // The same packet twice in one batch: both prepared, one accepted.
        assert!(rx.prepare(&p.0, p.1).unwrap().is_some());
        assert_eq!(rx.accept(&p.0, p.1), Ok(()));
        assert_eq!(rx.accept(&p.0, p.1), Err(OpenError::Replayed));
        assert_eq!(open(&mut rx, &key, &p), Err(OpenError::Replayed));

        rx.announce(A, SessionId(6 << 16));
        let old = seal(&mut tx, &key, 100, 0, b"old boot");
        assert_eq!(rx.prepare(&old.0, old.1).err(), Some(OpenError::OldSession));
    }
}
