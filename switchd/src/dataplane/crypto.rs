//! The data plane's share of encryption: the keys each encrypted network
//! seals and opens with (as the control plane last set them), and each
//! worker's sessions.
//!
//! Workers never lock to seal or open. The control plane publishes a new
//! [`KeySet`] and bumps a generation; each worker checks the generation
//! (one atomic load) per batch and takes the new set when it changed,
//! forgetting session keys derived from keys that are gone.

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::spread::{self, Opening};
use switchd_crypto::session::TxSession;
use switchd_crypto::{Backend, Cipher, Keyring, RxSessions, SessionId, TxSessions};
use switchd_overlay::sealed::{self, Refused};

use switchd_wire::sealed::field::LANE;

use crate::io::udp::TX_POOL;

/// Sessions a host keeps at most: per sender, network, key and lane.
/// Hundreds of hosts with a few networks each stay far below.
const MAX_RX_SESSIONS: usize = 1 << 18;

/// One encrypted network's keys.
#[derive(Debug, Clone)]
pub struct NetworkKeys {
    /// What this host seals with (a receiver opens either cipher).
    pub cipher: Cipher,
    /// Every key accepted; one seals.
    pub ring: Arc<Keyring>,
}

/// What the control plane hands the workers.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    /// By VNI. An encrypted network missing here sends nothing.
    pub networks: HashMap<u32, NetworkKeys>,
    /// Other hosts' current sessions, as authenticated gossip says:
    /// their earlier sessions are refused at once.
    pub sessions: Vec<(IpAddr, SessionId)>,
}

/// The key set shared between the control plane and the workers.
#[derive(Debug, Default)]
pub struct SharedKeys {
    current: Mutex<Arc<KeySet>>,
    generation: AtomicU64,
}

impl SharedKeys {
    pub fn set(&self, keys: KeySet) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
        self.generation.fetch_add(1, Ordering::Release);
    }

    fn snapshot(&self) -> (u64, Arc<KeySet>) {
        let generation = self.generation.load(Ordering::Acquire);
        (generation, self.current.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

/// Counters of the encrypted traffic, kept with relaxed atomics.
#[derive(Debug, Default)]
pub struct CryptoCounters {
    pub sealed: AtomicU64,
    pub opened: AtomicU64,
    /// Sessions the underlay workers hold together (a gauge).
    pub rx_sessions: AtomicU64,
    /// Datagrams sealed or opened on another thread than their worker's.
    pub helped: AtomicU64,
}

/// Who this host is on the wire: its VTEP address and this boot's session.
#[derive(Debug, Clone, Copy)]
pub struct Identity {
    pub sender: IpAddr,
    pub session: SessionId,
}

/// One worker's keys and sessions.
#[derive(Debug)]
pub(super) struct WorkerCrypto {
    shared: Arc<SharedKeys>,
    generation: u64,
    keys: Arc<KeySet>,
    tx: TxSessions,
    /// Only workers that read the underlay open.
    rx: Option<RxSessions>,
    /// Which lanes this worker opens: those `lane % of == index`, as the
    /// receive sockets' steering sends them (see `io::udp::bind_rx_group`).
    lanes: (u16, u16),
    /// Sessions this worker counted into `counters.rx_sessions`.
    held: u64,
    pub counters: Arc<CryptoCounters>,
}

impl WorkerCrypto {
    /// Worker `index` seals on its own lanes (one per send socket), so
    /// each lane's nonces reach a receiver in the order they were counted.
    /// With `opens: Some(workers)`, it opens the lanes steered to it among
    /// `workers` underlay readers.
    pub fn new(
        index: usize,
        identity: Identity,
        shared: Arc<SharedKeys>,
        counters: Arc<CryptoCounters>,
        opens: Option<usize>,
    ) -> Self {
        let backend = Backend::default();
        let first = (index * TX_POOL) as u16;
        let tx = TxSessions::new(
            backend,
            sealed::sender_id(identity.sender),
            identity.session,
            first..first + TX_POOL as u16,
        );
        let (generation, keys) = shared.snapshot();
        let rx = opens.map(|_| RxSessions::new(backend, MAX_RX_SESSIONS));
        let lanes = (index as u16, opens.unwrap_or(1).max(1) as u16);
        let mut worker = WorkerCrypto { shared, generation, keys, tx, rx, lanes, held: 0, counters };
        worker.apply();
        worker
    }

    /// Takes the control plane's latest key set, if it changed.
    pub fn refresh(&mut self) {
        if self.shared.generation.load(Ordering::Acquire) == self.generation {
            return;
        }
        (self.generation, self.keys) = self.shared.snapshot();
        self.tx.forget_keys();
        self.apply();
    }

    fn apply(&mut self) {
        let Some(rx) = &mut self.rx else { return };
        let keys = &self.keys;
        rx.retain(|vni, key| keys.networks.get(&vni).is_some_and(|n| n.ring.get(key).is_some()));
        for (sender, session) in &keys.sessions {
            rx.announce(sealed::sender_id(*sender), *session);
        }
        let held = rx.len() as u64;
        self.count_sessions(held);
    }

    /// Moves this worker's share of the sessions gauge to `held`.
    fn count_sessions(&mut self, held: u64) {
        if held != self.held {
            self.counters.rx_sessions.fetch_add(held.wrapping_sub(self.held), Ordering::Relaxed);
            self.held = held;
        }
    }

    /// The session to seal `vni`'s frames on `lane` with, and the
    /// counters to count them in; `None` when this host holds no key for
    /// the network (then nothing may be sent).
    pub fn tx_session(&mut self, vni: u32, lane: usize) -> Option<(TxSession<'_>, &CryptoCounters)> {
        let net = self.keys.networks.get(&vni)?;
        Some((self.tx.get(net.ring.sending(), vni, net.cipher, lane), &self.counters))
    }

    /// Whether `datagram` was sealed on a lane another worker opens.
    fn other_lane(&self, datagram: &[u8]) -> bool {
        let lane = datagram.get(LANE..LANE + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
        lane.is_some_and(|lane| lane % self.lanes.1 != self.lanes.0)
    }

    /// Opens the sealed datagrams of a burst (each with its sender) in
    /// place, spread over the pool ([`spread`]); what became of each, in
    /// order, into `results`: `None` for those left to [`Opener::open`]
    /// (not sealed, or of a session not seen yet). Counters are spent in
    /// the burst's order, as one by one.
    ///
    /// [`Opener::open`]: crate::switch::Opener::open
    pub fn open_burst(
        &mut self,
        burst: Vec<(IpAddr, &mut [u8])>,
        results: &mut Vec<Option<Result<Range<usize>, Refused>>>,
    ) {
        let mut decrypted = Vec::with_capacity(burst.len());
        {
            let rx: &RxSessions = self.rx.as_ref().expect("only the underlay workers open");
            let mut openings: Vec<Opening<'_, '_>> = burst
                .into_iter()
                .map(|(sender, datagram)| {
                    let prepared = match self.other_lane(datagram) {
                        true => Some(Err(Refused::OtherLane)),
                        false => Opening::prepare(datagram, sender, rx),
                    };
                    Opening { datagram, prepared }
                })
                .collect();
            spread::decrypt(&mut openings, &mut decrypted, &self.counters.helped);
        }
        let rx = self.rx.as_mut().expect("only the underlay workers open");
        let mut opened = 0;
        results.clear();
        results.extend(decrypted.into_iter().map(|d| {
            d.map(|r| {
                let (inner, spend) = r?;
                sealed::accept(rx, spend)?;
                opened += 1;
                Ok(inner)
            })
        }));
        self.counters.opened.fetch_add(opened, Ordering::Relaxed);
    }
}

impl crate::switch::Opener for WorkerCrypto {
    /// Opens a sealed datagram from `sender` in place; where its frame is.
    fn open(&mut self, datagram: &mut [u8], sender: IpAddr) -> Result<Range<usize>, Refused> {
        if self.other_lane(datagram) {
            return Err(Refused::OtherLane);
        }
        let rx = self.rx.as_mut().expect("only the underlay workers open");
        let networks = &self.keys.networks;
        let opened = sealed::open(datagram, sender, rx, |vni, id| networks.get(&vni)?.ring.get(id));
        if opened.is_ok() {
            self.counters.opened.fetch_add(1, Ordering::Relaxed);
        }
        let held = rx.len() as u64;
        self.count_sessions(held);
        opened
    }
}

/// Opens a datagram as [`WorkerCrypto::open_burst`] already did, if it
/// did; as usual otherwise.
pub(super) struct Preopened<'a> {
    pub crypto: &'a mut WorkerCrypto,
    pub ready: Option<Result<Range<usize>, Refused>>,
}

impl crate::switch::Opener for Preopened<'_> {
    fn open(&mut self, datagram: &mut [u8], sender: IpAddr) -> Result<Range<usize>, Refused> {
        self.ready.take().unwrap_or_else(|| self.crypto.open(datagram, sender))
    }
}
