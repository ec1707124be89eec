//! chitchat transports that seal every message ([`super::wire`]): over UDP
//! for real hosts, and over an in-memory network with seeded loss and
//! latency for simulations. Both count what they carry and what they refuse.
//!
//! Messages are compressed (zstd) before sealing: chitchat's digests name
//! every member in every round, and compress about sevenfold (61 to 8.5
//! KB/s per host in a simulated cluster of 100).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use chitchat::transport::{Socket, Transport};
use chitchat::{ChitchatMessage, Deserializable, Serializable};
use switchd_crypto::{Key, Keyring, SharedKeyring};
use tokio::sync::mpsc;

use super::wire::{MAX_DATAGRAM, Opener, Reject, Sealer};

/// What a host's gossip carried and refused.
#[derive(Debug, Default)]
pub struct GossipStats {
    pub datagrams_out: AtomicU64,
    pub bytes_out: AtomicU64,
    pub datagrams_in: AtomicU64,
    pub bytes_in: AtomicU64,
    /// Datagrams refused, by [`Reject`] reason (in `Reject::ALL` order).
    pub rejected: [AtomicU64; Reject::ALL.len()],
    /// Authentic messages chitchat could not decode.
    pub bad_messages: AtomicU64,
    /// The largest datagram sent, in bytes.
    pub largest_datagram_out: AtomicU64,
    /// Messages sent, and those that took more than one datagram.
    pub messages_out: AtomicU64,
    pub split_messages: AtomicU64,
    /// Messages too large to send even in fragments (chitchat's are bounded
    /// to fit one datagram, so this stays zero).
    pub unsendable: AtomicU64,
}

impl GossipStats {
    fn reject(&self, reason: Reject) {
        let i = Reject::ALL.iter().position(|r| *r == reason).expect("every reason is in ALL");
        self.rejected[i].fetch_add(1, Relaxed);
    }

    /// Refusals by name, non-zero only.
    pub fn rejections(&self) -> Vec<(&'static str, u64)> {
        Reject::ALL
            .iter()
            .zip(&self.rejected)
            .map(|(r, n)| (r.as_str(), n.load(Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Random bits for a session id: a fresh one every start.
pub fn random_session() -> u64 {
    switchd_crypto::random::u64()
}

/// zstd level 1: fast, and most of the gain.
const COMPRESSION_LEVEL: i32 = 1;
/// The most a message may decompress to (chitchat's own messages stay
/// within one datagram's worth).
const MAX_MESSAGE: usize = 1 << 20;

/// Seals and opens for one socket, counting as it goes.
struct Codec {
    sealer: Sealer,
    opener: Opener,
    stats: Arc<GossipStats>,
    /// zstd contexts, kept: making one costs more than a small message.
    compressor: zstd::bulk::Compressor<'static>,
    decompressor: zstd::bulk::Decompressor<'static>,
}

impl Codec {
    fn new(keys: &SharedKeyring, stats: Arc<GossipStats>, max_datagram: usize) -> Self {
        let mut sealer = Sealer::with_ring(keys.clone(), random_session());
        sealer.limit_datagrams(max_datagram);
        Codec {
            sealer,
            opener: Opener::with_ring(keys.clone()),
            stats,
            compressor: zstd::bulk::Compressor::new(COMPRESSION_LEVEL).expect("zstd level 1 exists"),
            decompressor: zstd::bulk::Decompressor::new().expect("a zstd context"),
        }
    }

    fn seal(&mut self, msg: &ChitchatMessage, now: u64) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let plain = msg.serialize_to_vec();
        let packed = self.compressor.compress(&plain).unwrap_or(plain);
        if !self.sealer.seal(&packed, now, |d| out.push(d.to_vec())) {
            self.stats.unsendable.fetch_add(1, Relaxed);
            tracing::warn!("a gossip message of {} bytes is too large to send", packed.len());
        }
        self.stats.messages_out.fetch_add(1, Relaxed);
        if out.len() > 1 {
            self.stats.split_messages.fetch_add(1, Relaxed);
        }
        for d in &out {
            self.stats.datagrams_out.fetch_add(1, Relaxed);
            self.stats.bytes_out.fetch_add(d.len() as u64, Relaxed);
            self.stats.largest_datagram_out.fetch_max(d.len() as u64, Relaxed);
        }
        out
    }

    /// A whole authentic message, if this datagram completes one.
    fn open(&mut self, datagram: &[u8], now: u64) -> Option<ChitchatMessage> {
        self.stats.datagrams_in.fetch_add(1, Relaxed);
        self.stats.bytes_in.fetch_add(datagram.len() as u64, Relaxed);
        match self.opener.open(datagram, now) {
            Ok(Some(packed)) => {
                let decoded = self
                    .decompressor
                    .decompress(&packed, MAX_MESSAGE)
                    .map_err(anyhow::Error::from)
                    .and_then(|plain| ChitchatMessage::deserialize(&mut &plain[..]));
                match decoded {
                    Ok(msg) => Some(msg),
                    Err(e) => {
                        self.stats.bad_messages.fetch_add(1, Relaxed);
                        tracing::debug!("undecodable gossip message: {e}");
                        None
                    }
                }
            }
            Ok(None) => None,
            Err(reason) => {
                self.stats.reject(reason);
                None
            }
        }
    }
}

/// Gossip over UDP, every datagram sealed under the cluster key in use,
/// any key of the cluster's ring accepted.
#[derive(Debug)]
pub struct SealedUdp {
    pub keys: SharedKeyring,
    pub stats: Arc<GossipStats>,
    /// The largest datagram the underlay carries whole ([`super::wire::max_datagram`]).
    pub max_datagram: usize,
}

#[async_trait]
impl Transport for SealedUdp {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let socket = tokio::net::UdpSocket::bind(listen_addr)
            .await
            .map_err(|e| anyhow::anyhow!("gossip socket {listen_addr}: {e}"))?;
        Ok(Box::new(UdpSealedSocket {
            socket,
            codec: Codec::new(&self.keys, self.stats.clone(), self.max_datagram),
            buf: vec![0; MAX_DATAGRAM],
            last_error_log: None,
            errors_held_back: 0,
        }))
    }
}

/// How long gossip's receive loop pauses after an error, and how often it
/// says so at most.
const RECV_ERROR_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);
const RECV_ERROR_REPORT: std::time::Duration = std::time::Duration::from_secs(10);

struct UdpSealedSocket {
    socket: tokio::net::UdpSocket,
    codec: Codec,
    buf: Vec<u8>,
    last_error_log: Option<std::time::Instant>,
    errors_held_back: u64,
}

#[async_trait]
impl Socket for UdpSealedSocket {
    async fn send(&mut self, to: SocketAddr, msg: ChitchatMessage) -> anyhow::Result<()> {
        for datagram in self.codec.seal(&msg, unix_now()) {
            // A peer that cannot be reached now is the failure detector's
            // business, not a broken transport.
            if let Err(e) = self.socket.send_to(&datagram, to).await {
                tracing::debug!("gossip to {to}: {e}");
            }
        }
        Ok(())
    }

    /// Never fails: chitchat stops gossiping for good on an error here, and
    /// what a UDP receive can fail with (an ICMP error for an earlier send,
    /// buffers or memory running short) passes. A repeated error pauses
    /// the loop, so it cannot spin, and is logged once per 10 s.
    async fn recv(&mut self) -> anyhow::Result<(SocketAddr, ChitchatMessage)> {
        loop {
            let (n, from) = match self.socket.recv_from(&mut self.buf).await {
                Ok(got) => got,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                Err(e) => {
                    let now = std::time::Instant::now();
                    self.errors_held_back += 1;
                    if self.last_error_log.is_none_or(|t| now.duration_since(t) >= RECV_ERROR_REPORT) {
                        tracing::warn!("gossip receive: {e} ({} errors since the last report)", self.errors_held_back);
                        self.last_error_log = Some(now);
                        self.errors_held_back = 0;
                    }
                    tokio::time::sleep(RECV_ERROR_PAUSE).await;
                    continue;
                }
            };
            if let Some(msg) = self.codec.open(&self.buf[..n], unix_now()) {
                return Ok((from, msg));
            }
        }
    }
}

/// An in-memory network for simulations: datagrams (sealed like real ones,
/// so sizes are real) are delivered after a latency drawn from
/// `latency_ms`, or lost, both from a seeded RNG. Loss is per IP packet,
/// `loss` each: a datagram larger than the MTU travels as IP fragments and
/// is lost when any of them is, as on a real underlay.
/// Runs on tokio's clock, so a paused runtime simulates hours in seconds.
#[derive(Clone)]
pub struct SimNet {
    inner: Arc<Mutex<SimInner>>,
    key: Key,
    start: tokio::time::Instant,
    /// The underlay's MTU (IPv4).
    mtu: usize,
}

struct SimInner {
    inboxes: HashMap<SocketAddr, mpsc::UnboundedSender<(SocketAddr, Vec<u8>)>>,
    rng: u64,
    loss: f64,
    latency_ms: (u64, u64),
    /// Addresses that neither send nor receive (killed hosts).
    down: std::collections::HashSet<SocketAddr>,
    /// Links cut by a partition, both directions listed.
    cut: std::collections::HashSet<(SocketAddr, SocketAddr)>,
    stats: HashMap<SocketAddr, Arc<GossipStats>>,
    /// IP packets sent, and datagrams that needed more than one.
    pub ip_packets: u64,
    pub fragmented: u64,
}

impl std::fmt::Debug for SimNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SimNet")
    }
}

impl SimNet {
    pub fn new(key: Key, seed: u64, loss: f64, latency_ms: (u64, u64)) -> Self {
        SimNet {
            inner: Arc::new(Mutex::new(SimInner {
                inboxes: HashMap::new(),
                rng: seed | 1,
                loss,
                latency_ms,
                down: Default::default(),
                cut: Default::default(),
                stats: HashMap::new(),
                ip_packets: 0,
                fragmented: 0,
            })),
            key,
            start: tokio::time::Instant::now(),
            mtu: 1500,
        }
    }

    /// Sets the underlay MTU; every member opened after this seals for it.
    pub fn with_mtu(mut self, mtu: usize) -> Self {
        self.mtu = mtu;
        self
    }

    /// IP packets carried so far, and how many datagrams were fragmented.
    pub fn packets(&self) -> (u64, u64) {
        let inner = self.inner.lock().expect("sim lock");
        (inner.ip_packets, inner.fragmented)
    }

    /// Simulated Unix time, on tokio's (possibly paused) clock.
    fn now(&self) -> u64 {
        SIM_EPOCH + self.start.elapsed().as_secs()
    }

    /// Cuts `addr` off (as kill -9 would) or reconnects it.
    pub fn set_down(&self, addr: SocketAddr, down: bool) {
        let mut inner = self.inner.lock().expect("sim lock");
        if down {
            inner.down.insert(addr);
        } else {
            inner.down.remove(&addr);
        }
    }

    /// Cuts every link between `a` and `b` (a network partition).
    pub fn partition(&self, a: &[SocketAddr], b: &[SocketAddr]) {
        let mut inner = self.inner.lock().expect("sim lock");
        for x in a {
            for y in b {
                inner.cut.insert((*x, *y));
                inner.cut.insert((*y, *x));
            }
        }
    }

    /// Restores every cut link.
    pub fn heal(&self) {
        self.inner.lock().expect("sim lock").cut.clear();
    }

    /// The counters of the socket at `addr`.
    pub fn stats(&self, addr: SocketAddr) -> Option<Arc<GossipStats>> {
        self.inner.lock().expect("sim lock").stats.get(&addr).cloned()
    }
}

impl SimInner {
    /// xorshift64*: small, fast and fully determined by the seed.
    fn next(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[async_trait]
impl Transport for SimNet {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(GossipStats::default());
        let mut inner = self.inner.lock().expect("sim lock");
        inner.inboxes.insert(listen_addr, tx);
        inner.stats.insert(listen_addr, stats.clone());
        drop(inner);
        Ok(Box::new(SimSocket {
            addr: listen_addr,
            net: self.clone(),
            rx,
            codec: Codec::new(
                &SharedKeyring::new(Keyring::new(self.key.clone())),
                stats,
                super::wire::max_datagram(self.mtu, false),
            ),
        }))
    }
}

struct SimSocket {
    addr: SocketAddr,
    net: SimNet,
    rx: mpsc::UnboundedReceiver<(SocketAddr, Vec<u8>)>,
    codec: Codec,
}

/// Simulated hosts share a clock that starts at this Unix time.
const SIM_EPOCH: u64 = 1_800_000_000;

#[async_trait]
impl Socket for SimSocket {
    async fn send(&mut self, to: SocketAddr, msg: ChitchatMessage) -> anyhow::Result<()> {
        let datagrams = self.codec.seal(&msg, self.net.now());
        let mut inner = self.net.inner.lock().expect("sim lock");
        if inner.down.contains(&self.addr) || inner.down.contains(&to) || inner.cut.contains(&(self.addr, to)) {
            return Ok(());
        }
        let Some(inbox) = inner.inboxes.get(&to).cloned() else { return Ok(()) };
        // IPv4 fragments carry multiples of 8 bytes of the UDP datagram.
        let per_fragment = (self.net.mtu - 20) / 8 * 8;
        for d in datagrams {
            let fragments = (d.len() + 8).div_ceil(per_fragment);
            inner.ip_packets += fragments as u64;
            inner.fragmented += u64::from(fragments > 1);
            let lost = (0..fragments).fold(false, |lost, _| inner.unit() < inner.loss || lost);
            if lost {
                continue;
            }
            let (lo, hi) = inner.latency_ms;
            let delay = Duration::from_millis(lo + inner.next() % (hi - lo + 1));
            let (inbox, from) = (inbox.clone(), self.addr);
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = inbox.send((from, d));
            });
        }
        Ok(())
    }

    async fn recv(&mut self) -> anyhow::Result<(SocketAddr, ChitchatMessage)> {
        loop {
            let (from, datagram) = self.rx.recv().await.ok_or_else(|| anyhow::anyhow!("simulated network closed"))?;
            if self.net.inner.lock().expect("sim lock").down.contains(&self.addr) {
                continue;
            }
            if let Some(msg) = self.codec.open(&datagram, self.net.now()) {
                return Ok((from, msg));
            }
        }
    }
}
