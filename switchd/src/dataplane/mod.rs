//! The data plane: worker threads that pump frames between ports and the
//! underlay, carrying out what the [`Switch`] plans.
//!
//! Each worker decides with its own replica of the tables ([`Replica`]):
//! the control plane changes all of them alike, and what one worker learns
//! reaches the others as news, so workers never wait for each other on the
//! path of a frame. A multi-queue TAP has a queue per worker (worker i
//! reads queue i; the kernel keeps each flow on one queue, and [`Queues`]
//! keeps it there); a port of one device is read by one worker. Each
//! worker reads its own underlay socket (see `io::udp::bind_rx_group`) and
//! sends through its own pool. A worker reads a batch from a ready port or
//! socket, takes its replica's lock once to have the switch plan it all
//! (one call per frame or datagram: [`Switch::handle_frame`],
//! [`Switch::handle_datagram`], which also opens sealed datagrams through
//! the worker's keys), maps the plans' targets to devices, releases the
//! lock, then writes. After a batch it keeps polling for a short adaptive
//! window before it sleeps ([`poll`]). Buffers are allocated once per
//! worker and reused: the steady state allocates nothing per frame.
//!
//! Between ports, frames go out exactly as they came in, virtio header
//! included, so a 64 KiB TCP segment crosses in one read and one write.
//! Towards a VTEP, a frame is encapsulated in a scratch buffer: segmented to
//! the MTU if it is a GSO frame, its open checksum completed otherwise (see
//! `switchd_overlay::offload`), sealed if its network is encrypted
//! ([`crypto`]), then sent with one `sendmsg` (with `UDP_SEGMENT` when it
//! makes several datagrams; [`tx`]). Towards a switchd peer the inner
//! TCP/UDP checksums are left partial (the plan's wire settings say so).
//! From the underlay, each inner frame is written to its port behind an
//! all-zero virtio header, consecutive TCP segments joined first (GRO); a
//! TCP segment GRO took, or a frame whose checksum its sender deferred,
//! goes behind one asking the port's stack to finish its checksum.
//!
//! Devices are [`Port`]s ([`port`]): a TAP or AF_PACKET socket in service,
//! a pcap recorder or a fault injector around one, or an in-memory port in
//! the tests below, which drive a worker's batches without threads.
//!
//! The control plane changes ports, networks and VTEPs through
//! [`Dataplane`]; a port is registered with its workers' epolls at once (so
//! a failure is the caller's error), and the workers learn of it through a
//! channel and an eventfd. Each worker runs its replica's MAC aging timer.

pub mod capture;
pub mod crypto;
pub mod flows;
mod into_ports;
pub mod live;
mod poll;
pub mod port;
pub mod spread;
mod tx;

use std::io::{self, IoSlice};
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hashbrown::HashMap;
use slotmap::{Key, SecondaryMap};
use socket2::SockAddr;
use switchd_config::{MacAddr, Mtu, Vni};
use switchd_overlay::gro::{self, Gro, Integrity};
use switchd_overlay::sealed::Refused;
use switchd_overlay::tunnel::{self, Datagrams, Wire};
use switchd_overlay::{flow, offload};
use switchd_wire::vnet::{self, Frame, MAX_FRAME_LEN};

use crate::conns::{REPORT_INTERVAL, RateLimit};
use crate::io::epoll::{self, Epoll};
use crate::io::sys;
use crate::io::udp::{self, RecvBatch};
use crate::io::uring;
use crate::services::{self, Tables};
use crate::switch::{
    Action, Counters, DropReason, FdbKind, Location, NetworkCounters, NetworkId, NetworkWire, News, NoKeys, Plan,
    PortGuard, PortId, Switch, SwitchConfig, Target, VtepId, VtepInfo, balance, l3, neighbor,
};
use crypto::{CryptoCounters, Identity, KeySet, Preopened, SharedKeys, WorkerCrypto};
use into_ports::IntoPorts;
use poll::{BusyPoll, Wait};
pub use port::{FdPort, Port};
use tx::{Body, TxQueue};

/// Frames read from one port before they are decided and written.
const BATCH: usize = 32;
/// Reads of the underlay socket per `recvmmsg` (each up to 64 KiB of GRO).
const UNDERLAY_BATCH: usize = 8;
/// epoll tokens that are not ports (port tokens are slot keys, which never
/// take these values).
const WAKE_TOKEN: u64 = u64::MAX;
const UNDERLAY_TOKEN: u64 = u64::MAX - 1;
const VNET_HDR_LEN: usize = vnet::HEADER_LEN;
/// The largest `sendmsg` the kernel takes (an IPv4 datagram, less headers).
const MAX_SEND: usize = 65_000;

/// Refused writes and sends are logged at most this often, with a count.
static TX_ERROR_LOG: Mutex<RateLimit> = Mutex::new(RateLimit::new(REPORT_INTERVAL));

/// Transmit counters, kept by the workers with relaxed atomics.
#[derive(Debug, Default)]
pub struct TxCounters {
    pub frames: AtomicU64,
    pub bytes: AtomicU64,
    /// Writes refused because the device's queue was full (`EAGAIN`,
    /// `ENOBUFS`): the receiver is not keeping up.
    pub queue_full: AtomicU64,
    /// Writes refused for any other reason (logged).
    pub errors: AtomicU64,
}

impl TxCounters {
    /// What was written and refused, as [`DeviceStats`].
    fn stats(&self) -> DeviceStats {
        DeviceStats {
            frames: self.frames.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            queue_full: self.queue_full.load(Relaxed),
            errors: self.errors.load(Relaxed),
            ..DeviceStats::default()
        }
    }

    fn record(&self, result: io::Result<usize>, len: usize, to: impl Fn() -> String) {
        self.record_many(result.map(drop), 1, len, to);
    }

    /// Counts `count` frames or datagrams of `len` bytes in all, written
    /// (or refused) at once; `to` names the device, for the log.
    fn record_many(&self, result: io::Result<()>, count: u64, len: usize, to: impl Fn() -> String) {
        match result {
            Ok(()) => {
                self.frames.fetch_add(count, Relaxed);
                self.bytes.fetch_add(len as u64, Relaxed);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.raw_os_error() == Some(libc::ENOBUFS) => {
                self.queue_full.fetch_add(count, Relaxed);
            }
            Err(e) => {
                self.errors.fetch_add(count, Relaxed);
                let mut log = TX_ERROR_LOG.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(held_back) = log.allow(Instant::now()) {
                    tracing::warn!("writing to {}: {e} ({held_back} more refused writes since the last report)", to());
                }
            }
        }
    }
}

/// What the data plane counts of a device: what it wrote there, what was
/// refused, and (for a port) frames from it it could not send on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceStats {
    pub frames: u64,
    pub bytes: u64,
    pub queue_full: u64,
    pub errors: u64,
    /// Frames from the port that would not segment for the underlay.
    pub offload_errors: u64,
    /// Frames from the port for an encrypted network this host has no key for.
    pub no_key: u64,
    /// Frames from the underlay written to the port whose TCP/UDP checksum
    /// their sender left partial (a switchd peer, or a kernel vxlan device
    /// on a virtual underlay), for the port's stack to finish.
    pub deferred_checksums: u64,
}

impl std::iter::Sum for DeviceStats {
    fn sum<I: Iterator<Item = DeviceStats>>(iter: I) -> Self {
        iter.fold(DeviceStats::default(), |a, b| DeviceStats {
            frames: a.frames + b.frames,
            bytes: a.bytes + b.bytes,
            queue_full: a.queue_full + b.queue_full,
            errors: a.errors + b.errors,
            offload_errors: a.offload_errors + b.offload_errors,
            no_key: a.no_key + b.no_key,
            deferred_checksums: a.deferred_checksums + b.deferred_checksums,
        })
    }
}

/// What one worker did, kept by it alone (relaxed stores, a cache line of
/// its own) and read by `switchctl stats`.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct WorkerCounters {
    port_frames: AtomicU64,
    underlay_datagrams: AtomicU64,
    batches: AtomicU64,
    poll_hits: AtomicU64,
    poll_misses: AtomicU64,
    /// The worker's thread (its CPU time is in `/proc`); 0 before it runs.
    tid: AtomicU64,
}

/// A port's device and what the data plane counts of it.
#[derive(Debug)]
pub struct PortIo {
    dev: Box<dyn Port>,
    pub tx: TxCounters,
    offload_errors: AtomicU64,
    no_key: AtomicU64,
    deferred_checksums: AtomicU64,
}

impl PortIo {
    fn new(dev: Box<dyn Port>) -> Self {
        PortIo {
            dev,
            tx: TxCounters::default(),
            offload_errors: AtomicU64::new(0),
            no_key: AtomicU64::new(0),
            deferred_checksums: AtomicU64::new(0),
        }
    }

    /// Writes a plain Ethernet frame (from the underlay, or an answer)
    /// behind an all-zero virtio header, without copying it.
    fn send_plain(&self, eth: &[u8]) {
        let parts = [IoSlice::new(&vnet::Repr::PLAIN_BYTES), IoSlice::new(eth)];
        self.tx.record(self.dev.send_parts(&parts), eth.len(), || "a port".to_owned());
    }

    fn stats(&self) -> DeviceStats {
        DeviceStats {
            offload_errors: self.offload_errors.load(Relaxed),
            no_key: self.no_key.load(Relaxed),
            deferred_checksums: self.deferred_checksums.load(Relaxed),
            ..self.tx.stats()
        }
    }
}

/// Slots of [`Queues::read_from`]; two flows sharing one may only move
/// each other's queue.
const FLOW_SLOTS: usize = 4096;

/// A port as every worker writes to it: one device, or a multi-queue TAP's
/// queues, one per worker.
///
/// A TAP sends each flow of its container to the queue that a frame of
/// that flow was last written through (the kernel's `tun_flow_update`).
/// So frames into a container go in through the queue their flow is read
/// from here: were the first answer written by another worker through its
/// own queue, the flow would move to that worker mid-stream, and frames
/// still queued for the first would be overtaken.
#[derive(Debug)]
pub struct Queues {
    queues: Vec<Arc<PortIo>>,
    /// By symmetric flow hash: the queue its frames were last read from,
    /// plus one (0: none yet). Empty for a port of one device.
    read_from: Box<[std::sync::atomic::AtomicU8]>,
    /// Frames both ways, while `switchctl capture` runs.
    tap: Arc<capture::Tap>,
}

impl Queues {
    fn new(queues: Vec<Arc<PortIo>>) -> Self {
        let slots = if queues.len() > 1 { FLOW_SLOTS } else { 0 };
        Queues { queues, read_from: (0..slots).map(|_| Default::default()).collect(), tap: Default::default() }
    }

    /// Notes that a frame (Ethernet) was read from queue `queue`.
    fn read(&self, queue: usize, eth: &[u8]) {
        if self.read_from.is_empty() {
            return;
        }
        let Some(hash) = flow::symmetric_hash(eth) else { return };
        let slot = &self.read_from[hash as usize % FLOW_SLOTS];
        let mark = queue as u8 + 1;
        if slot.load(Relaxed) != mark {
            slot.store(mark, Relaxed);
        }
    }

    /// The queue worker `worker` writes `eth` through.
    fn queue_index(&self, worker: usize, eth: &[u8]) -> usize {
        if self.queues.len() == 1 {
            return 0;
        }
        if !self.read_from.is_empty()
            && let Some(hash) = flow::symmetric_hash(eth)
        {
            let mark = self.read_from[hash as usize % FLOW_SLOTS].load(Relaxed);
            if mark != 0 {
                return usize::from(mark - 1) % self.queues.len();
            }
        }
        worker % self.queues.len()
    }

    fn stats(&self) -> DeviceStats {
        self.queues.iter().map(|q| q.stats()).sum()
    }
}

/// A remote VTEP, as the data plane sees it.
#[derive(Debug)]
pub struct VtepIo {
    addr: SockAddr,
    pub tx: TxCounters,
}

impl VtepIo {
    /// The VTEP's address, for messages.
    pub(super) fn name(&self) -> String {
        self.addr.as_socket().map_or_else(|| "a VTEP".to_owned(), |a| format!("VTEP {a}"))
    }

    fn stats(&self) -> DeviceStats {
        self.tx.stats()
    }
}

/// The underlay: VXLAN in (a socket per worker, `SO_REUSEPORT`), the pool
/// VXLAN goes out through (see `io::udp`), and who this host is on the wire.
#[derive(Debug)]
pub struct Underlay {
    /// One per worker.
    pub rx: Vec<OwnedFd>,
    /// A send pool per worker.
    pub tx: Vec<Vec<OwnedFd>>,
    pub identity: Identity,
    /// The address VXLAN is received on.
    pub local: SocketAddr,
}

impl Underlay {
    /// Binds `workers` receive sockets on `underlay_ip:port` and a send
    /// pool for each worker; `session` is this boot's.
    pub fn bind(ip: IpAddr, port: u16, session: switchd_crypto::SessionId, workers: usize) -> io::Result<Underlay> {
        let rx = udp::bind_rx_group(SocketAddr::new(ip, port), workers.max(1))?;
        let pool = || (0..udp::TX_POOL).map(|_| udp::bind_tx(ip)).collect::<io::Result<Vec<_>>>();
        let tx = (0..workers.max(1)).map(|_| pool()).collect::<io::Result<_>>()?;
        Ok(Underlay { rx, tx, identity: Identity { sender: ip, session }, local: SocketAddr::new(ip, port) })
    }
}

/// One worker's copy of what it decides with: the switch and the devices
/// behind its ids (for a multi-queue TAP, this worker's queue).
#[derive(Debug)]
pub struct Fabric {
    pub switch: Switch,
    ports: SecondaryMap<PortId, Arc<Queues>>,
    vteps: SecondaryMap<VtepId, Arc<VtepIo>>,
    /// What the gateway serves from; replaced whole by the control plane.
    services: Arc<Tables>,
    /// What the gateway did (atomics, shared by every worker).
    service_counters: Arc<services::Counters>,
}

impl Fabric {
    fn new(config: SwitchConfig, service_counters: Arc<services::Counters>) -> Self {
        Fabric {
            switch: Switch::new(config),
            ports: SecondaryMap::new(),
            vteps: SecondaryMap::new(),
            services: Arc::default(),
            service_counters,
        }
    }

    /// The devices `plan`'s copies of frame `i` go to, with the ingress
    /// port's reply first when the plan calls for one: the one place where
    /// decisions meet devices.
    fn devices(&self, plan: &Plan, i: usize, outs: &mut Vec<Out>) {
        if matches!(plan.action, Action::Answer { .. } | Action::Local { .. } | Action::Reject { .. }) {
            outs.push(Out::Reply(i));
        }
        for target in &plan.targets {
            match *target {
                Target::Port(p) => outs.extend(self.ports.get(p).map(|io| Out::Port(i, io.clone()))),
                Target::Vtep(v) => outs.extend(self.vteps.get(v).map(|io| Out::Vtep(i, io.clone()))),
            }
        }
    }
}

/// Learnings a worker holds at most for another before it drops news (a
/// MAC flood between two LAN ports; the learner's own table is unaffected).
const MAX_NEWS: usize = 1 << 16;

/// A worker's fabric and its inbox of what the other workers learned.
///
/// The fabric's lock is taken by its own worker once per batch and by
/// others only to change or read its tables (the control plane): workers
/// never wait for one another on the path of a frame.
#[derive(Debug)]
pub struct Replica {
    fabric: Mutex<Fabric>,
    news: Mutex<Vec<News>>,
    has_news: AtomicBool,
    /// News dropped because the inbox was full.
    dropped_news: AtomicU64,
    /// What its worker did.
    counters: WorkerCounters,
}

impl Replica {
    fn new(fabric: Fabric) -> Self {
        Replica {
            fabric: Mutex::new(fabric),
            news: Mutex::new(Vec::new()),
            has_news: AtomicBool::new(false),
            dropped_news: AtomicU64::new(0),
            counters: WorkerCounters::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Fabric> {
        // A worker that panicked mid-decision leaves the tables consistent
        // enough to keep switching; never let one poisoned lock stop the rest.
        self.fabric.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn tell(&self, learned: &[News]) {
        let mut news = self.news.lock().unwrap_or_else(|p| p.into_inner());
        let room = MAX_NEWS.saturating_sub(news.len()).min(learned.len());
        news.extend_from_slice(&learned[..room]);
        self.dropped_news.fetch_add((learned.len() - room) as u64, Relaxed);
        self.has_news.store(true, Release);
    }

    /// Applies what the other workers learned to `fabric` (this replica's,
    /// locked by the caller); `buf` is scratch.
    fn catch_up(&self, fabric: &mut Fabric, buf: &mut Vec<News>) {
        if !self.has_news.load(Relaxed) || !self.has_news.swap(false, Acquire) {
            return;
        }
        std::mem::swap(&mut *self.news.lock().unwrap_or_else(|p| p.into_inner()), buf);
        for learning in buf.iter() {
            fabric.switch.apply_news(learning);
        }
        buf.clear();
    }
}

/// A port queue a worker reads: which port, the queue, and the port's
/// queues (where the frames read are noted, see [`Queues`]).
#[derive(Debug, Clone)]
struct Polled {
    id: PortId,
    io: Arc<PortIo>,
    queue: usize,
    queues: Arc<Queues>,
    /// How many reads to post at once through the ring: one more than the
    /// last batch had (at least 2), so that a batch's last read is the one
    /// that finds the queue empty, inside the same `io_uring_enter`.
    read_ahead: usize,
}

enum Command {
    Poll(Polled),
    Forget(PortId),
    Stop,
}

#[derive(Debug)]
struct WorkerHandle {
    commands: Sender<Command>,
    wake: Arc<OwnedFd>,
    epoll: Arc<Epoll>,
    /// Until its loop returns (asked to stop, or a bug).
    running: Arc<AtomicBool>,
    ports: usize,
}

impl WorkerHandle {
    fn send(&self, command: Command) {
        // A worker only goes away at shutdown; a failed send then is moot.
        let _ = self.commands.send(command);
        sys::eventfd_signal(self.wake.as_raw_fd());
    }
}

/// The data plane: its workers, their replicas of the tables, and what the
/// control plane needs to change and count them.
#[derive(Debug)]
pub struct Dataplane {
    replicas: Arc<[Replica]>,
    /// Held across a change to every replica, so that all see the changes
    /// in one order (and their slot-map ids agree).
    control: Mutex<()>,
    workers: Vec<WorkerHandle>,
    /// Each port's devices, and the worker that polls each (a multi-queue
    /// TAP has one queue per worker).
    port_io: SecondaryMap<PortId, (Arc<Queues>, Vec<usize>)>,
    /// Each VTEP's counters, one per worker.
    vtep_io: Mutex<SecondaryMap<VtepId, Vec<Arc<VtepIo>>>>,
    /// The latest snapshot, for the gateway stack's DNS over TCP.
    services: Arc<Mutex<Arc<Tables>>>,
    service_counters: Arc<services::Counters>,
    keys: Arc<SharedKeys>,
    crypto: Arc<CryptoCounters>,
    /// The workers' and crypto helpers' threads ([`spread`]).
    pool: Option<rayon::ThreadPool>,
    /// Captures running ([`Dataplane::capture`]).
    captures: Arc<capture::Captures>,
    /// Live traces running ([`Dataplane::trace_live`]).
    live: Arc<live::Hub>,
    /// Sampled conversations ([`flows`]).
    conversations: Arc<flows::Conversations>,
    /// A worker's index when its loop returned.
    stopped: Mutex<Receiver<usize>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The token a port's readiness comes with.
fn token_of(id: PortId) -> u64 {
    id.data().as_ffi()
}

pub use capture::{Capture, MAX_CAPTURES};

/// How the data plane's threads run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerOptions {
    /// How many.
    pub workers: usize,
    /// How long each may poll after a batch ([`poll`]).
    pub busy_poll: Duration,
    /// Whether each writes its batches' frames into local ports through
    /// io_uring ([`uring`]), where the kernel allows it.
    pub io_uring: bool,
    /// Threads beyond the workers that help seal and open one flow's
    /// large bursts ([`spread`]).
    pub crypto_helpers: usize,
}

impl Dataplane {
    /// Starts the data-plane threads, each with its own replica of the
    /// tables; with an underlay, each reads its own receive socket.
    pub fn start(config: SwitchConfig, options: WorkerOptions, underlay: Option<Underlay>) -> io::Result<Self> {
        let WorkerOptions { workers, busy_poll, io_uring, crypto_helpers } = options;
        let workers = workers.max(1);
        // io_uring may be missing or refused (`kernel.io_uring_disabled`,
        // a seccomp profile): then one write per frame, as before.
        let io_uring = io_uring
            && match uring::Ring::new() {
                Ok(_) => true,
                Err(e) => {
                    tracing::warn!("io_uring unavailable ({e}): frames into ports are written one by one");
                    false
                }
            };
        let service_counters = Arc::new(services::Counters::default());
        let replicas: Arc<[Replica]> = (0..workers)
            .map(|_| {
                let mut fabric = Fabric::new(config, service_counters.clone());
                fabric.switch.set_replicated(workers > 1);
                Replica::new(fabric)
            })
            .collect();
        let keys = Arc::new(SharedKeys::default());
        let counters = Arc::new(CryptoCounters::default());
        let (mut rx, mut pools, identity, local) = match underlay {
            Some(u) => (u.rx.into_iter(), u.tx.into_iter(), Some(u.identity), Some(u.local)),
            None => (Vec::new().into_iter(), Vec::new().into_iter(), None, None),
        };
        let watch = Watch::default();
        let mut handles = Vec::new();
        let mut loops = Vec::new();
        for index in 0..workers {
            let (tx, commands) = channel();
            let wake = Arc::new(sys::eventfd()?);
            let underlay_rx = rx.next();
            let opens = underlay_rx.is_some().then_some(workers);
            let crypto = identity.map(|id| WorkerCrypto::new(index, id, keys.clone(), counters.clone(), opens));
            let worker = Worker::new(
                index,
                replicas.clone(),
                commands,
                wake.clone(),
                WorkerUnderlay { rx: underlay_rx, tx: pools.next().unwrap_or_default(), crypto, local },
                WorkerTuning { busy_poll, io_uring, crypto_helpers },
                watch.clone(),
            )?;
            let running = Arc::new(AtomicBool::new(true));
            handles.push(WorkerHandle {
                commands: tx,
                wake,
                epoll: worker.epoll.clone(),
                running: running.clone(),
                ports: 0,
            });
            loops.push(Mutex::new(Some((worker, running))));
        }
        // The workers run on the pool's first threads, one loop each (a
        // broadcast: no thread ever takes another's loop); the others are
        // the helpers, idle (asleep) until a worker hands out a chunk.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(workers + crypto_helpers)
            .thread_name(move |i| match i < workers {
                true => format!("switchd-dp{i}"),
                false => format!("switchd-crypto{}", i - workers),
            })
            .build()
            .map_err(io::Error::other)?;
        let (stopped_tx, stopped) = channel();
        pool.spawn_broadcast(move |ctx| {
            let Some((worker, running)) = loops.get(ctx.index()).and_then(|l| lock(l).take()) else { return };
            let index = worker.index;
            // A bug that panics a worker must not go unnoticed: its
            // queues and socket are no longer read (`stats` shows it).
            if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker.run())) {
                let what = panic.downcast_ref::<&str>().copied().or(panic.downcast_ref::<String>().map(|s| s.as_str()));
                tracing::error!(
                    worker = index,
                    "data plane worker stopped by a panic (a bug): {}",
                    what.unwrap_or("?")
                );
            }
            running.store(false, Release);
            let _ = stopped_tx.send(index);
        });
        Ok(Dataplane {
            replicas,
            control: Mutex::new(()),
            workers: handles,
            port_io: SecondaryMap::new(),
            vtep_io: Mutex::default(),
            services: Arc::default(),
            service_counters,
            keys,
            crypto: counters,
            pool: Some(pool),
            captures: watch.captures,
            live: watch.live,
            conversations: watch.conversations,
            stopped: Mutex::new(stopped),
        })
    }

    /// How many workers (and so queues per TAP) there are.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Runs `change` on every replica in turn (with its worker's index),
    /// all under the control lock; returns worker 0's result. The change
    /// must be the same for all: replicas only stay alike by being changed
    /// alike.
    fn change<T: PartialEq + std::fmt::Debug>(&self, mut change: impl FnMut(usize, &mut Fabric) -> T) -> T {
        let _one_at_a_time = lock(&self.control);
        let mut results = self.replicas.iter().enumerate().map(|(i, r)| change(i, &mut r.lock()));
        let first = results.next().expect("a replica");
        for other in results {
            debug_assert_eq!(other, first, "replicas diverged");
        }
        first
    }

    /// Reads every replica, one at a time.
    fn each<T>(&self, mut read: impl FnMut(&Fabric) -> T) -> impl Iterator<Item = T> {
        self.replicas.iter().map(|r| read(&r.lock())).collect::<Vec<_>>().into_iter()
    }

    /// Gives the workers a new snapshot of names, leases and gateways.
    pub fn set_services(&self, tables: Tables) {
        let tables = Arc::new(tables);
        *lock(&self.services) = tables.clone();
        self.change(|_, f| f.services = tables.clone());
    }

    /// The services snapshot the workers have now.
    pub fn services(&self) -> Arc<Tables> {
        lock(&self.services).clone()
    }

    /// Where the gateway stack's DNS server reads the services snapshot.
    pub fn services_source(&self) -> crate::io::gateway::TablesSource {
        let (services, counters) = (self.services.clone(), self.service_counters.clone());
        Arc::new(move || (lock(&services).clone(), counters.clone()))
    }

    /// What the gateway has done.
    pub fn service_counters(&self) -> Arc<services::Counters> {
        self.service_counters.clone()
    }

    /// Gives the workers new keys (taken before their next batch).
    pub fn set_keys(&self, keys: KeySet) {
        self.keys.set(keys);
    }

    /// Sealed datagrams sent, datagrams opened, sessions held, and
    /// datagrams sealed or opened by helpers ([`spread`]).
    pub fn crypto_counters(&self) -> (u64, u64, u64, u64) {
        let c = &self.crypto;
        (c.sealed.load(Relaxed), c.opened.load(Relaxed), c.rx_sessions.load(Relaxed), c.helped.load(Relaxed))
    }

    /// Changes the switch tables (every replica alike).
    pub fn update_switch<T: PartialEq + std::fmt::Debug>(&self, mut f: impl FnMut(&mut Switch) -> T) -> T {
        self.change(|_, fabric| f(&mut fabric.switch))
    }

    /// Adds a network; `None` if its VNI is taken.
    pub fn add_network(&self, vni: Vni, mtu: Mtu, encrypted: bool) -> Option<NetworkId> {
        self.update_switch(|s| s.add_network(vni, mtu, encrypted))
    }

    /// Removes a network; its ports must have been removed first.
    pub fn remove_network(&self, id: NetworkId) {
        self.update_switch(|s| s.remove_network(id));
    }

    /// Adds a remote VTEP carrying `vnis` (`None`: all); `None` if its IP is known.
    pub fn add_vtep(&self, addr: SocketAddr, vnis: Option<Vec<Vni>>) -> Option<VtepId> {
        let mut made = Vec::new();
        let id = self.change(|_, fabric| {
            let id = fabric.switch.add_vtep(addr, vnis.clone())?;
            let io = Arc::new(VtepIo { addr: addr.into(), tx: TxCounters::default() });
            fabric.vteps.insert(id, io.clone());
            made.push(io);
            Some(id)
        })?;
        lock(&self.vtep_io).insert(id, made);
        Some(id)
    }

    /// Removes a VTEP and what was learned behind it.
    pub fn remove_vtep(&self, id: VtepId) {
        self.change(|_, fabric| {
            fabric.switch.remove_vtep(id);
            fabric.vteps.remove(id);
        });
        lock(&self.vtep_io).remove(id);
    }

    /// Adds a port on `network` switching frames through `queues` (one
    /// device, or a multi-queue TAP's queues, one per worker), held to
    /// `guard` from its first frame (see `Switch::set_port_guard`), and
    /// starts polling it. Refused if the network does not exist, or a
    /// device cannot be polled.
    pub fn add_port(&mut self, network: NetworkId, queues: Vec<Box<dyn Port>>, guard: PortGuard) -> io::Result<PortId> {
        if queues.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "a port needs a device"));
        }
        let ios: Vec<Arc<PortIo>> = queues.into_iter().map(|q| Arc::new(PortIo::new(q))).collect();
        let shared = Arc::new(Queues::new(ios.clone()));
        let id = self
            .change(|_, fabric| {
                let id = fabric.switch.add_port(network)?;
                fabric.switch.set_port_guard(id, guard.clone());
                fabric.ports.insert(id, shared.clone());
                Some(id)
            })
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the network is gone"))?;
        // One device: the least busy worker polls it. Queues: worker i polls queue i.
        let first = match ios.len() {
            1 => self.workers.iter().enumerate().min_by_key(|(_, w)| w.ports).map_or(0, |(i, _)| i),
            _ => 0,
        };
        let pollers: Vec<usize> = (0..ios.len()).map(|q| (first + q) % self.workers.len()).collect();
        for (queue, io) in ios.iter().enumerate() {
            if let Some(fd) = io.dev.poll_fd()
                && let Err(e) = self.workers[pollers[queue]].epoll.add(fd, token_of(id))
            {
                for (done, io) in ios[..queue].iter().enumerate() {
                    if let Some(fd) = io.dev.poll_fd() {
                        let _ = self.workers[pollers[done]].epoll.delete(fd);
                    }
                }
                self.change(|_, fabric| {
                    fabric.switch.remove_port(id);
                    fabric.ports.remove(id);
                });
                return Err(io::Error::new(e.kind(), format!("polling the port's queue {queue}: {e}")));
            }
        }
        for (queue, io) in ios.into_iter().enumerate() {
            let worker = &mut self.workers[pollers[queue]];
            worker.ports += 1;
            worker.send(Command::Poll(Polled { id, io, queue, queues: shared.clone(), read_ahead: 2 }));
        }
        self.port_io.insert(id, (shared, pollers));
        Ok(id)
    }

    /// Stops switching a port. Its fds close once the last in-flight write
    /// is done.
    pub fn remove_port(&mut self, id: PortId) {
        self.change(|_, fabric| {
            fabric.switch.remove_port(id);
            fabric.ports.remove(id);
        });
        let Some((queues, pollers)) = self.port_io.remove(id) else { return };
        for (io, worker) in queues.queues.iter().zip(pollers) {
            let worker = &mut self.workers[worker];
            if let Some(fd) = io.dev.poll_fd() {
                let _ = worker.epoll.delete(fd);
            }
            worker.ports -= 1;
            worker.send(Command::Forget(id));
        }
    }

    /// What the data plane counts of a port (all its queues).
    pub fn port_stats(&self, id: PortId) -> Option<DeviceStats> {
        self.port_io.get(id).map(|(queues, _)| queues.stats())
    }

    /// What the data plane counts of a VTEP (every worker's sends).
    pub fn vtep_stats(&self, id: VtepId) -> Option<DeviceStats> {
        lock(&self.vtep_io).get(id).map(|ios| ios.iter().map(|io| io.stats()).sum())
    }

    /// What a port received, summed over the workers.
    pub fn port_counters(&self, id: PortId) -> Option<Counters> {
        self.each(|f| f.switch.port_counters(id).cloned()).reduce(merge_counters).flatten()
    }

    /// What `switchctl peers` shows of a VTEP, summed over the workers.
    pub fn vtep_info(&self, id: VtepId) -> Option<VtepInfo> {
        self.each(|f| f.switch.vtep_info(id))
            .reduce(|a, b| match (a, b) {
                (Some(mut a), Some(b)) => {
                    a.rx.add(&b.rx);
                    a.last_rx = a.last_rx.max(b.last_rx);
                    a.learned = a.learned.max(b.learned);
                    Some(a)
                }
                (a, b) => a.or(b),
            })
            .flatten()
    }

    /// Datagrams from unknown sources, summed over the workers.
    pub fn underlay_counters(&self) -> Counters {
        self.each(|f| f.switch.underlay_counters().clone()).fold(Counters::default(), |mut sum, c| {
            sum.add(&c);
            sum
        })
    }

    /// Network policy's counters, summed over the workers.
    pub fn policy_counters(&self) -> crate::switch::policy::PolicyCounters {
        self.each(|f| f.switch.policy_counters()).fold(Default::default(), |sum, c| {
            crate::switch::policy::PolicyCounters {
                allowed: sum.allowed + c.allowed,
                denied: sum.denied + c.denied,
                evicted: sum.evicted + c.evicted,
            }
        })
    }

    /// A network's counters, summed over the workers (its table's size:
    /// the largest replica's).
    pub fn network_counters(&self, id: NetworkId) -> Option<NetworkCounters> {
        self.each(|f| f.switch.network_counters(id))
            .reduce(|a, b| match (a, b) {
                (Some(a), Some(b)) => Some(NetworkCounters {
                    flooded: a.flooded + b.flooded,
                    mac_moves: a.mac_moves + b.mac_moves,
                    fdb_entries: a.fdb_entries.max(b.fdb_entries),
                    neighbor_answers: a.neighbor_answers + b.neighbor_answers,
                    routed: a.routed + b.routed,
                    balance: crate::switch::balance::BalanceCounters {
                        balanced: a.balance.balanced + b.balance.balanced,
                        refused: a.balance.refused + b.balance.refused,
                        evicted: a.balance.evicted + b.balance.evicted,
                    },
                }),
                (a, b) => a.or(b),
            })
            .flatten()
    }

    /// A network's forwarding table, as the workers know it together: for
    /// each MAC, where the replica that saw it last has it.
    pub fn fdb(&self, id: NetworkId, now: Instant) -> Vec<(MacAddr, Location, FdbKind, Duration)> {
        let mut merged: HashMap<MacAddr, (Location, FdbKind, Duration)> = HashMap::new();
        for rows in self.each(|f| f.switch.fdb(id, now)) {
            for (mac, at, kind, age) in rows {
                let row = merged.entry(mac).or_insert((at, kind, age));
                if age < row.2 {
                    *row = (at, kind, age);
                }
            }
        }
        let mut rows: Vec<_> = merged.into_iter().map(|(mac, (at, kind, age))| (mac, at, kind, age)).collect();
        rows.sort_by_key(|(mac, ..)| *mac);
        rows
    }

    /// A copy of the switch (worker 0's replica): what a trace decides on
    /// it leaves the data plane as it was.
    pub fn switch_copy(&self) -> Switch {
        self.replicas[0].lock().switch.clone()
    }

    /// Starts capturing the frames of `ports` both ways ([`capture`]): of
    /// one port, or with `network` of a network's, each under its name.
    /// `Err` names a port unknown here; `Ok(None)` if [`MAX_CAPTURES`] run
    /// already.
    pub fn capture(&self, ports: &[(PortId, String)], network: bool) -> Result<Option<Capture>, String> {
        let mut taps = ports
            .iter()
            .map(|(id, name)| self.port_io.get(*id).map(|(q, _)| (q.tap.clone(), name.clone())).ok_or(name.clone()))
            .collect::<Result<Vec<_>, String>>()?;
        let source = match (network, taps.pop()) {
            (false, Some((tap, _))) if taps.is_empty() => capture::Source::Port(tap),
            (_, last) => capture::Source::Network(taps.into_iter().chain(last).collect()),
        };
        Ok(self.captures.start(source))
    }

    /// Starts capturing the underlay datagrams to and from the VTEP at
    /// `ip`; sealed ones opened with `decrypt`. `None` if [`MAX_CAPTURES`]
    /// run already.
    pub fn capture_vtep(&self, ip: IpAddr, decrypt: bool) -> Option<Capture> {
        self.captures.start(capture::Source::Vtep { ip, decrypt })
    }

    /// Starts a live trace: the real decisions for the frames `filter`
    /// matches, at most `count` ([`live`]). `None` if [`live::MAX_TRACES`]
    /// run already.
    pub fn trace_live(&self, filter: live::Filter, count: Option<u64>) -> Option<live::LiveTrace> {
        self.live.start(filter, count)
    }

    /// The sampled conversations ([`flows`]).
    pub fn conversations(&self) -> flows::Snapshot {
        self.conversations.snapshot()
    }

    /// Where a VTEP is, as the data plane sends to it.
    pub fn vtep_addr(&self, id: VtepId) -> Option<SocketAddr> {
        lock(&self.vtep_io).get(id).and_then(|io| io.first()).and_then(|io| io.addr.as_socket())
    }

    /// What each worker did.
    pub fn worker_stats(&self) -> Vec<crate::control::api::WorkerStats> {
        let load = |a: &AtomicU64| a.load(Relaxed);
        self.replicas
            .iter()
            .enumerate()
            .map(|(worker, r)| crate::control::api::WorkerStats {
                worker,
                running: self.workers[worker].running.load(Relaxed),
                port_frames: load(&r.counters.port_frames),
                underlay_datagrams: load(&r.counters.underlay_datagrams),
                batches: load(&r.counters.batches),
                poll_hits: load(&r.counters.poll_hits),
                poll_misses: load(&r.counters.poll_misses),
                dropped_news: load(&r.dropped_news),
                busy_seconds: match load(&r.counters.tid) {
                    0 => 0.0,
                    tid => sys::thread_cpu_time(tid).map_or(0.0, |t| t.as_secs_f64()),
                },
            })
            .collect()
    }

    /// Stops the workers. Ports' fds close; persistent TAPs stay.
    pub fn shutdown(&mut self) {
        for worker in &self.workers {
            worker.send(Command::Stop);
        }
        let Some(pool) = self.pool.take() else { return };
        // A loop ends soon after its Stop (one that ended before is not
        // waited for); the pool's threads end once it is dropped.
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.workers.iter().any(|w| w.running.load(Acquire)) && Instant::now() < deadline {
            let _ = lock(&self.stopped).recv_timeout(Duration::from_millis(100));
        }
        drop(pool);
    }
}

fn merge_counters(a: Option<Counters>, b: Option<Counters>) -> Option<Counters> {
    match (a, b) {
        (Some(mut a), Some(b)) => {
            a.add(&b);
            Some(a)
        }
        (a, b) => a.or(b),
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// One output of a batch, in order: frame `i` to this port as it is, to
/// this VTEP encapsulated, or the ingress port's reply (what the plan says:
/// an ARP/ND answer, a served request, an ICMP error).
enum Out {
    Port(usize, Arc<Queues>),
    Vtep(usize, Arc<VtepIo>),
    Reply(usize),
}

/// A worker's share of the underlay: its receive socket, its send pool, its
/// keys and sessions (none of them without an underlay).
struct WorkerUnderlay {
    rx: Option<OwnedFd>,
    tx: Vec<OwnedFd>,
    crypto: Option<WorkerCrypto>,
    /// The address it receives on (for captures of the underlay).
    local: Option<SocketAddr>,
}

/// What watches the workers' frames: live traces and captures, looked at
/// once per batch.
#[derive(Debug, Clone, Default)]
struct Watch {
    live: Arc<live::Hub>,
    captures: Arc<capture::Captures>,
    conversations: Arc<flows::Conversations>,
}

struct Worker {
    index: usize,
    /// Every worker's replica; this worker's is `replicas[index]`.
    replicas: Arc<[Replica]>,
    /// What this worker learned in its last batch, for the others.
    learned: Vec<News>,
    /// What the others learned, being applied here.
    news: Vec<News>,
    commands: Receiver<Command>,
    wake: Arc<OwnedFd>,
    epoll: Arc<Epoll>,
    /// The port queues it reads, by epoll token.
    ports: HashMap<u64, Polled>,
    bufs: Vec<Box<[u8]>>,
    lens: [usize; BATCH],
    /// The switch's plan for each frame of the batch.
    plans: Vec<Plan>,
    outs: Vec<Out>,
    underlay_rx: Option<OwnedFd>,
    /// This worker's send sockets.
    tx_pool: Vec<OwnedFd>,
    recv: RecvBatch,
    /// The plan of the datagram being decided.
    plan: Plan,
    /// Decapsulated frames to write, and their ports.
    decap_outs: Vec<(Span, Arc<Queues>)>,
    /// Keys and sessions; `None` without an underlay.
    crypto: Option<WorkerCrypto>,
    /// Joins the TCP segments of decapsulated frames for one write.
    gro: Gro<Span>,
    /// Where frames are encapsulated (and segmented) before sending.
    tx: TxQueue,
    /// Sweeps aged MACs from its replica this often.
    sweep_every: Duration,
    last_sweep: Instant,
    /// The services snapshot, taken with the lock when a batch needs it.
    services: Arc<Tables>,
    service_counters: Arc<services::Counters>,
    /// Where the gateway's answers are built.
    reply: Vec<u8>,
    /// Whether to poll or sleep when there is nothing to do.
    poll: BusyPoll,
    /// Where frames to local ports are written together (`None`: one
    /// `write` each), and the list of those queued.
    ring: Option<uring::Ring>,
    queued: Vec<into_ports::Queued>,
    /// The pool's threads beyond the workers ([`spread`]).
    crypto_helpers: usize,
    /// What opening the last burst on several threads found, datagram by
    /// datagram ([`WorkerCrypto::open_burst`]).
    preopened: Vec<Option<Result<Range<usize>, Refused>>>,
    /// Sealed datagrams a capture shows opened, held as they came until
    /// they are ([`Worker::tap_received`]).
    held: Vec<Option<Vec<u8>>>,
    /// Live traces and underlay captures, looked at once per batch, and
    /// where sampled conversations go.
    watch: Watch,
    sampler: flows::Sampler,
    /// Where this worker receives VXLAN, and where each of its send
    /// sockets sends from (for captures of the underlay).
    underlay_local: Option<SocketAddr>,
    tx_locals: Vec<Option<SocketAddr>>,
}

/// How a worker goes about its work ([`WorkerOptions`]).
struct WorkerTuning {
    busy_poll: Duration,
    io_uring: bool,
    crypto_helpers: usize,
}

impl Worker {
    fn new(
        index: usize,
        replicas: Arc<[Replica]>,
        commands: Receiver<Command>,
        wake: Arc<OwnedFd>,
        WorkerUnderlay { rx: underlay_rx, tx: tx_pool, crypto, local }: WorkerUnderlay,
        WorkerTuning { busy_poll, io_uring, crypto_helpers }: WorkerTuning,
        watch: Watch,
    ) -> io::Result<Self> {
        let (sweep_every, service_counters) = {
            let f = replicas[index].lock();
            (f.switch.config().sweep_interval(), f.service_counters.clone())
        };
        let epoll = Arc::new(Epoll::new()?);
        epoll.add(wake.as_raw_fd(), WAKE_TOKEN)?;
        if let Some(rx) = &underlay_rx {
            epoll.add(rx.as_raw_fd(), UNDERLAY_TOKEN)?;
        }
        let underlay_batch = if underlay_rx.is_some() { UNDERLAY_BATCH } else { 0 };
        let tx_locals = tx_pool.iter().map(|fd| socket2::SockRef::from(fd).local_addr().ok()?.as_socket()).collect();
        Ok(Worker {
            index,
            replicas,
            learned: Vec::new(),
            news: Vec::new(),
            commands,
            wake,
            epoll,
            ports: HashMap::new(),
            bufs: (0..BATCH).map(|_| vec![0u8; MAX_FRAME_LEN].into_boxed_slice()).collect(),
            lens: [0; BATCH],
            plans: (0..BATCH).map(|_| Plan::default()).collect(),
            outs: Vec::with_capacity(BATCH * 8),
            underlay_rx,
            tx_pool,
            recv: RecvBatch::new(underlay_batch),
            plan: Plan::default(),
            decap_outs: Vec::with_capacity(UNDERLAY_BATCH * 64),
            crypto,
            gro: Gro::new(),
            tx: TxQueue::default(),
            sweep_every,
            last_sweep: Instant::now(),
            services: Arc::default(),
            service_counters,
            reply: Vec::with_capacity(2048),
            poll: BusyPoll::new(busy_poll),
            ring: if io_uring { Some(uring::Ring::new()?) } else { None },
            queued: Vec::new(),
            crypto_helpers,
            preopened: Vec::new(),
            watch,
            sampler: flows::Sampler::new(index),
            held: Vec::new(),
            underlay_local: local,
            tx_locals,
        })
    }

    fn run(mut self) {
        self.replicas[self.index].counters.tid.store(sys::gettid(), Relaxed);
        let mut events = vec![epoll::empty_event(); 64];
        loop {
            let polling = self.poll.wait(Instant::now()) == Wait::Poll;
            let timeout = if polling { 0 } else { self.timeout_ms() };
            let n = match self.epoll.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(worker = self.index, "epoll_wait failed, data plane worker stops: {e}");
                    return;
                }
            };
            if n == 0 && polling {
                // Let whatever else wants this core run between polls
                // (often the very process whose answer is awaited).
                std::thread::yield_now();
                continue;
            }
            for event in &events[..n] {
                match event.u64 {
                    WAKE_TOKEN => {
                        sys::eventfd_drain(self.wake.as_raw_fd());
                        if !self.handle_commands() {
                            return;
                        }
                    }
                    UNDERLAY_TOKEN => self.service_underlay(),
                    token => self.service_port(token),
                }
            }
            if n > 0 {
                self.poll.batch(Instant::now());
                let counters = &self.replicas[self.index].counters;
                counters.batches.fetch_add(1, Relaxed);
                counters.poll_hits.store(self.poll.hits, Relaxed);
                counters.poll_misses.store(self.poll.misses, Relaxed);
            }
            self.handle_timeout();
        }
    }

    /// Applies queued commands; false when told to stop. (The control
    /// plane registers and removes the ports' fds with this worker's epoll
    /// itself.)
    fn handle_commands(&mut self) -> bool {
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Command::Poll(polled) => {
                    self.ports.insert(token_of(polled.id), polled);
                }
                Command::Forget(id) => {
                    self.ports.remove(&token_of(id));
                }
                Command::Stop => return false,
            }
        }
        true
    }

    /// Each worker keeps its replica's timers.
    fn timeout_ms(&self) -> i32 {
        let next = self.last_sweep + self.sweep_every;
        next.saturating_duration_since(Instant::now()).as_millis().min(i32::MAX as u128) as i32
    }

    fn handle_timeout(&mut self) {
        let now = Instant::now();
        if now >= self.last_sweep + self.sweep_every {
            self.replicas[self.index].lock().switch.handle_timeout(now);
            self.last_sweep = now;
        }
    }

    /// This worker's replica, locked.
    #[cfg(test)]
    fn fabric(&self) -> MutexGuard<'_, Fabric> {
        self.replicas[self.index].lock()
    }

    /// Tells the other workers what this one learned in its last batch.
    fn share_learned(&mut self) {
        if self.learned.is_empty() {
            return;
        }
        for (i, replica) in self.replicas.iter().enumerate() {
            if i != self.index {
                replica.tell(&self.learned);
            }
        }
        self.learned.clear();
    }

    /// Reads a batch from one ready port, has the switch plan it, writes
    /// and sends it.
    fn service_port(&mut self, token: u64) {
        let Some(polled) = self.ports.get(&token).cloned() else { return };
        let (ingress, port) = (polled.id, &polled.io);
        let (n, failed) = match (self.ring.as_mut(), port.dev.ring_fd()) {
            (Some(ring), Some(fd)) => read_through_ring(ring, fd, polled.read_ahead, &mut self.bufs, &mut self.lens),
            _ => read_one_by_one(&*port.dev, &mut self.bufs, &mut self.lens),
        };
        if let Some(e) = failed {
            // The device is gone (TAP deleted: EBADFD) or broken; stop
            // polling it rather than spin on the error. The control plane
            // removes the port.
            tracing::warn!("port read failed, no longer polling it: {e}");
            if let Some(fd) = port.dev.poll_fd() {
                let _ = self.epoll.delete(fd);
            }
            self.ports.remove(&token);
        } else if let Some(p) = self.ports.get_mut(&token) {
            p.read_ahead = (n + 1).clamp(2, BATCH);
        }
        for i in 0..n {
            polled.queues.read(polled.queue, self.bufs[i].get(VNET_HDR_LEN..self.lens[i]).unwrap_or_default());
        }
        if polled.queues.tap.on() {
            for i in 0..n {
                polled.queues.tap.record(&[&self.bufs[i][..self.lens[i]]], VNET_HDR_LEN);
            }
        }
        if n == 0 {
            return;
        }
        self.replicas[self.index].counters.port_frames.fetch_add(n as u64, Relaxed);

        let now = Instant::now();
        let live = self.watch.live.running();
        {
            let replica = &self.replicas[self.index];
            let fabric = &mut *replica.lock();
            replica.catch_up(fabric, &mut self.news);
            let mut serves = false;
            for i in 0..n {
                let plan = &mut self.plans[i];
                fabric.switch.handle_frame(now, ingress, &self.bufs[i][..self.lens[i]], plan);
                self.sampler.count(self.bufs[i].get(VNET_HDR_LEN..self.lens[i]).unwrap_or_default());
                if let Some(live) = &live {
                    let eth = self.bufs[i].get(VNET_HDR_LEN..self.lens[i]).unwrap_or_default();
                    live.offer(self.index, live::Origin::Port(ingress), eth, eth.len(), None, plan);
                }
                match plan.action {
                    Action::Route { src, dst, .. } => {
                        l3::forward(&mut self.bufs[i][VNET_HDR_LEN..self.lens[i]], src, dst)
                    }
                    Action::Nat { rewrite, .. } => {
                        // The container's stack left the TCP/UDP checksum open: `NEEDS_CSUM`.
                        let partial = self.bufs[i][0] & switchd_wire::vnet::FLAG_NEEDS_CSUM != 0;
                        balance::rewrite(&mut self.bufs[i][VNET_HDR_LEN..self.lens[i]], &rewrite, partial)
                    }
                    Action::Local { .. } | Action::Reject { .. } => serves = true,
                    _ => {}
                }
                fabric.devices(plan, i, &mut self.outs);
            }
            if serves {
                self.services = fabric.services.clone();
            }
            fabric.switch.take_news(&mut self.learned);
        }
        self.share_learned();
        self.watch.conversations.add(&mut self.sampler.taken, now);

        // Local ports get their frames now; frames for VTEPs are
        // encapsulated (and sealed: once per frame, however many VTEPs)
        // into the arena and queued, then sent with one sendmmsg per
        // source socket.
        self.tx.clear();
        if let Some(crypto) = &mut self.crypto {
            crypto.refresh();
        }
        let taps = self.watch.captures.underlay.running();
        // The frame last encapsulated: (its index, and where its datagrams
        // start in the arena, their socket, their layout; `None` if it failed).
        let mut built: Option<(usize, Option<Built>)> = None;
        let mut into_ports = IntoPorts::new(self.index, self.ring.as_mut(), n > 1, std::mem::take(&mut self.queued));
        for out in self.outs.drain(..) {
            match out {
                Out::Port(i, queues) => into_ports.frame(queues, &self.bufs[i][..self.lens[i]]),
                Out::Reply(i) => {
                    let eth = &self.bufs[i][VNET_HDR_LEN..self.lens[i]];
                    reply(&self.plans[i], eth, (&self.services, &self.service_counters), &mut self.reply);
                    if !self.reply.is_empty() {
                        port.send_plain(&self.reply);
                        if polled.queues.tap.on() {
                            polled.queues.tap.record(&[&self.reply], 0);
                        }
                    }
                }
                Out::Vtep(i, io) => {
                    let wire = self.plans[i].wire.expect("a plan with a VTEP target has wire settings");
                    if built.map(|(frame, _)| frame) != Some(i) {
                        let frame = Frame::new_unchecked(&self.bufs[i][..self.lens[i]]);
                        let socket = flow::hash(frame.ethernet().into_inner()) as usize % self.tx_pool.len().max(1);
                        let (start, payloads) = (self.tx.arena.len(), self.tx.payloads.len());
                        let spread = spread::possible(self.crypto_helpers);
                        let result = encapsulate(i, &frame, wire, socket, self.crypto.as_mut(), spread, &mut self.tx);
                        if let Err(reason) = result {
                            self.tx.arena.truncate(start);
                            self.tx.payloads.truncate(payloads);
                            let counter = if reason == DropReason::NoKey { &port.no_key } else { &port.offload_errors };
                            counter.fetch_add(1, Relaxed);
                        }
                        built = Some((i, result.ok().map(|(body, datagrams)| Built { body, socket, datagrams })));
                    }
                    if let Some((_, Some(b))) = built {
                        if let Some(((taps, Some(local)), to)) =
                            taps.as_deref().zip(self.tx_locals.get(b.socket).copied()).zip(io.addr.as_socket())
                            && wire.encrypted
                        {
                            // Shown opened: the frame that was sealed (one
                            // record, however many datagrams it made).
                            let eth = self.bufs[i].get(VNET_HDR_LEN..self.lens[i]).unwrap_or_default();
                            let opened = capture::of_vtep(taps, to.ip()).filter(|t| t.decrypt);
                            tap_plain(opened, local, to, wire.vni.get(), eth);
                        }
                        self.tx.queue(b.socket, io, b.body, b.datagrams);
                    }
                }
            }
        }
        self.queued = into_ports.finish();
        let taps = taps.as_deref().map(|t| (t, &self.tx_locals[..]));
        self.tx.flush(&self.tx_pool, &self.bufs, taps);
    }

    /// Reads what the underlay has, has the switch plan each datagram
    /// (opening sealed ones in place), and writes the frames.
    fn service_underlay(&mut self) {
        let Some(rx) = &self.underlay_rx else { return };
        let n = match self.recv.recv(rx) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!("underlay read failed: {e}");
                return;
            }
        };
        if n == 0 {
            return;
        }
        let now = Instant::now();
        if let Some(crypto) = &mut self.crypto {
            crypto.refresh();
        }
        let taps = self.watch.captures.underlay.running();
        if let Some(taps) = &taps {
            self.tap_received(taps, n);
        }
        self.preopen(n);
        let live = self.watch.live.running();
        {
            let replica = &self.replicas[self.index];
            let fabric = &mut *replica.lock();
            replica.catch_up(fabric, &mut self.news);
            let mut seq = 0;
            for read in 0..n {
                let Some(src) = self.recv.sender(read) else { continue };
                let src_addr = taps.as_ref().and_then(|_| self.recv.sender_addr(read));
                let (segment, large) = datagrams_of(self.recv.data(read), self.recv.segment_size(read));
                let datagrams = self.recv.data(read).len().div_ceil(segment);
                replica.counters.underlay_datagrams.fetch_add(datagrams as u64, Relaxed);
                let mut offset = 0;
                for datagram in self.recv.data_mut(read).chunks_mut(segment) {
                    let len = datagram.len();
                    match &mut self.crypto {
                        Some(crypto) => {
                            let ready = self.preopened.get_mut(seq).and_then(Option::take);
                            let opener = &mut Preopened { crypto, ready };
                            fabric.switch.handle_datagram(now, src, datagram, opener, &mut self.plan)
                        }
                        None => fabric.switch.handle_datagram(now, src, datagram, &mut NoKeys, &mut self.plan),
                    }
                    if let Some(taps) = taps.as_deref() {
                        match self.plan.sealed {
                            true => tap_opened(taps, src_addr, self.underlay_local, datagram, self.plan.inner.clone()),
                            // Sealed but not opened: shown as it came.
                            false => tap_unopened(taps, src_addr, self.held.get_mut(seq).and_then(Option::take)),
                        }
                    }
                    seq += 1;
                    if let Action::Nat { rewrite, .. } = self.plan.action
                        && let Some(eth) = datagram.get_mut(self.plan.inner.clone())
                    {
                        let partial = offload::deferred_checksum(eth).is_some();
                        balance::rewrite(eth, &rewrite, partial);
                    }
                    if let Some(live) = &live {
                        let vni = vni_of(datagram);
                        let eth = datagram.get(self.plan.inner.clone()).filter(|e| !e.is_empty()).unwrap_or(datagram);
                        live.offer(self.index, live::Origin::Vtep(src), eth, len, vni, &self.plan);
                    }
                    if let Some(eth) = datagram.get(self.plan.inner.clone()).filter(|e| !e.is_empty()) {
                        self.sampler.count(eth);
                    }
                    let inner = Span {
                        read,
                        offset: offset + self.plan.inner.start,
                        len: self.plan.inner.len(),
                        integrity: if self.plan.sealed { Integrity::Sealed } else { Integrity::Verify },
                        large,
                    };
                    // Only frames from local ports are answered, served,
                    // routed or encapsulated: from the underlay, ports only.
                    for p in self.plan.ports() {
                        self.decap_outs.extend(fabric.ports.get(p).map(|io| (inner, io.clone())));
                    }
                    offset += len;
                }
            }
            fabric.switch.take_news(&mut self.learned);
        }
        self.share_learned();
        self.watch.conversations.add(&mut self.sampler.taken, now);
        self.write_decapsulated();
    }

    /// Copies the datagrams of the first `n` reads into the captures of
    /// their senders' VTEPs, as they came (before any is opened). For a
    /// capture that shows sealed ones opened, a copy is held instead
    /// (`self.held`, in the order they are decided): it is recorded as it
    /// came only if it does not open ([`tap_opened`] otherwise).
    fn tap_received(&mut self, taps: &[capture::VtepTap], n: usize) {
        self.held.clear();
        for read in 0..n {
            let Some(src) = self.recv.sender_addr(read) else { continue };
            let (segment, _) = datagrams_of(self.recv.data(read), self.recv.segment_size(read));
            let local = self.underlay_local.filter(|_| capture::of_vtep(taps, src.ip()).next().is_some());
            for datagram in self.recv.data(read).chunks(segment) {
                let sealed = datagram.first() == Some(&switchd_wire::sealed::FLAGS);
                let mut held = None;
                if let Some(head) = local.and_then(|local| capture::udp_head(src, local, datagram.len())) {
                    for t in capture::of_vtep(taps, src.ip()) {
                        match t.decrypt && sealed {
                            false => t.tap.record(&[&head[..], datagram], 0),
                            true => held = Some([&head[..], datagram].concat()),
                        }
                    }
                }
                self.held.push(held);
            }
        }
    }

    /// Opens the sealed datagrams of the first `n` reads on several threads
    /// ([`spread`]) when there are enough of them; `self.preopened` then
    /// says what became of each datagram, in the order they are decided.
    fn preopen(&mut self, n: usize) {
        self.preopened.clear();
        let Some(crypto) = self.crypto.as_mut().filter(|_| spread::possible(self.crypto_helpers)) else { return };
        let sealed: usize = (0..n)
            .filter(|&r| self.recv.data(r).first() == Some(&switchd_wire::sealed::FLAGS))
            .map(|r| self.recv.data(r).len().div_ceil(self.recv.segment_size(r)))
            .sum();
        if sealed < 2 * spread::CHUNK {
            return;
        }
        // The same datagrams, in the same order, as `service_underlay` decides.
        let burst = self
            .recv
            .reads_mut(n)
            .filter_map(|(read, src, segment)| Some((src?, read, segment)))
            .flat_map(|(src, read, segment)| {
                let (segment, _) = datagrams_of(read, segment);
                read.chunks_mut(segment).map(move |datagram| (src, datagram))
            })
            .collect();
        crypto.open_burst(burst, &mut self.preopened);
    }

    /// Writes decapsulated frames to their ports; consecutive segments of
    /// one flow to one port go up as one frame.
    fn write_decapsulated(&mut self) {
        let (recv, gro) = (&self.recv, &mut self.gro);
        let several = self.decap_outs.len() > 1;
        let mut into = IntoPorts::new(self.index, self.ring.as_mut(), several, std::mem::take(&mut self.queued));
        let mut joining: Option<Arc<Queues>> = None;
        for (at, port) in self.decap_outs.drain(..) {
            let eth = at.of(recv);
            if let Some(mss) = at.large {
                if let Some(joined) = joining.take() {
                    into.joined(joined, gro.finish(), recv);
                }
                match gro.start_large(eth, at.integrity, mss, at) {
                    true => into.joined(port, gro.finish(), recv),
                    false => into.decapsulated(port, eth),
                }
                continue;
            }
            if joining.as_ref().is_some_and(|j| Arc::ptr_eq(j, &port)) && gro.append(eth, at.integrity, at) {
                continue;
            }
            if let Some(joined) = joining.take() {
                into.joined(joined, gro.finish(), recv);
            }
            if gro.start(eth, at.integrity, at) {
                joining = Some(port);
            } else {
                into.decapsulated(port, eth);
            }
        }
        if let Some(joined) = joining {
            into.joined(joined, gro.finish(), recv);
        }
        self.queued = into.finish();
    }
}

/// Copies an opened datagram (its inner frame at `inner`) into the
/// captures of its sender's VTEP that show datagrams opened, as the plain
/// VXLAN it carried.
fn tap_opened(
    taps: &[capture::VtepTap],
    src: Option<SocketAddr>,
    local: Option<SocketAddr>,
    datagram: &[u8],
    inner: Range<usize>,
) {
    let (Some(src), Some(local), Some(eth)) = (src, local, datagram.get(inner)) else { return };
    let vni = vni_of(datagram).unwrap_or(0);
    tap_plain(capture::of_vtep(taps, src.ip()).filter(|t| t.decrypt), src, local, vni, eth);
}

/// The VNI a datagram's header carries: bytes 4 to 6 of plain and sealed
/// VXLAN alike.
fn vni_of(datagram: &[u8]) -> Option<u32> {
    datagram.get(4..7).map(|v| u32::from_be_bytes([0, v[0], v[1], v[2]]))
}

/// Records a sealed datagram that did not open (held as it came, headers
/// and all) in the captures of its sender that show datagrams opened.
fn tap_unopened(taps: &[capture::VtepTap], src: Option<SocketAddr>, held: Option<Vec<u8>>) {
    let (Some(src), Some(held)) = (src, held) else { return };
    for t in capture::of_vtep(taps, src.ip()).filter(|t| t.decrypt) {
        t.tap.record(&[&held], 0);
    }
}

/// Records `eth` in `taps` as a plain VXLAN datagram on `vni` from `src`
/// to `dst`.
fn tap_plain<'t>(
    taps: impl Iterator<Item = &'t capture::VtepTap>,
    src: SocketAddr,
    dst: SocketAddr,
    vni: u32,
    eth: &[u8],
) {
    let mut vxlan = [0u8; switchd_wire::vxlan::HEADER_LEN];
    switchd_wire::vxlan::Repr { vni }.emit(&mut vxlan);
    let Some(head) = capture::udp_head(src, dst, vxlan.len() + eth.len()) else { return };
    for t in taps {
        t.tap.record(&[&head[..], &vxlan, eth], 0);
    }
}

/// Reads a batch from a port one `read` at a time, until one finds the
/// queue empty: how many frames, and the error that ended it if any.
fn read_one_by_one(dev: &dyn Port, bufs: &mut [Box<[u8]>], lens: &mut [usize; BATCH]) -> (usize, Option<io::Error>) {
    let mut n = 0;
    while n < BATCH {
        match dev.recv(&mut bufs[n]) {
            Ok(len) => {
                lens[n] = len;
                n += 1;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return (n, Some(e)),
        }
    }
    (n, None)
}

/// Reads a batch from the device `fd` through the ring, `ahead` reads per
/// `io_uring_enter` (twice as many again while every one finds a frame),
/// so the read that finds the queue empty costs no system call of its own.
fn read_through_ring(
    ring: &mut uring::Ring,
    fd: std::os::fd::RawFd,
    ahead: usize,
    bufs: &mut [Box<[u8]>],
    lens: &mut [usize; BATCH],
) -> (usize, Option<io::Error>) {
    let (mut n, mut ahead) = (0, ahead.clamp(1, BATCH));
    while n < BATCH {
        let want = ahead.min(BATCH - n);
        match ring.read_frames(fd, &mut bufs[n..n + want], &mut lens[n..n + want]) {
            Ok((got, empty)) => {
                n += got;
                if empty || got < want {
                    break;
                }
                ahead = (ahead * 2).min(BATCH);
            }
            Err(e) => return (n, Some(e)),
        }
    }
    (n, None)
}

/// Builds in `out` the ingress port's reply that `plan` calls for to the
/// Ethernet frame `eth`: an ARP/ND answer, what the gateway serves, or an
/// ICMP error. `out` is empty when there is none.
fn reply(plan: &Plan, eth: &[u8], (tables, counters): (&Tables, &services::Counters), out: &mut Vec<u8>) {
    out.clear();
    match plan.action {
        Action::Answer { owner, request, .. } => {
            out.resize(neighbor::MAX_REPLY_LEN, 0);
            let n = neighbor::reply(eth, request, owner, &mut out[..]);
            out.truncate(n);
        }
        Action::Local { port, network } => {
            // The responders parse with libraries; should one of them panic
            // on some input, drop the frame, not the worker.
            let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                services::serve(tables, counters, port, network, eth, out)
            }));
            if served.is_err() {
                out.clear();
                tracing::error!("a gateway service panicked on a frame (a bug); the frame is dropped");
            }
        }
        Action::Reject { network, reason, .. } => services::reject(tables, counters, network, reason, eth, out),
        _ => {}
    }
}

/// How the datagrams of a read of `segment`-sized datagrams are cut:
/// their size, and for one datagram the kernel reports as segments of
/// `segment` inner bytes (a kernel peer's GSO packet, never cut) that
/// segment size.
fn datagrams_of(read: &[u8], segment: usize) -> (usize, Option<usize>) {
    match gro::carries_one_frame(read, segment) {
        true => (read.len().max(1), Some(segment)),
        false => (segment.max(1), None),
    }
}

/// Bytes in the receive buffers: `len` at `offset` of read `read`, and
/// whether they came sealed (then GRO checks no checksum again).
#[derive(Debug, Clone, Copy)]
struct Span {
    read: usize,
    offset: usize,
    len: usize,
    integrity: Integrity,
    /// One TCP segment of several inner segments of this size
    /// ([`gro::carries_one_frame`]): it goes up as a GSO frame.
    large: Option<usize>,
}

impl Span {
    fn of(self, recv: &RecvBatch) -> &[u8] {
        &recv.data(self.read)[self.offset..self.offset + self.len]
    }
}

/// A frame's datagrams in the send queue.
#[derive(Debug, Clone, Copy)]
struct Built {
    body: Body,
    socket: usize,
    datagrams: Datagrams,
}

/// Builds the datagram(s) for `frame` (the batch's frame `i`) in `tx`:
/// plain VXLAN (a large frame's segments gathered from their headers in
/// the arena and their payloads in the frame), or sealed on the lane of
/// send socket `socket` when the network is encrypted.
fn encapsulate(
    i: usize,
    frame: &Frame<&[u8]>,
    wire: NetworkWire,
    socket: usize,
    crypto: Option<&mut WorkerCrypto>,
    spread: bool,
    tx: &mut TxQueue,
) -> Result<(Body, Datagrams), DropReason> {
    let offload = frame.offload().map_err(|_| DropReason::OffloadError)?;
    let (eth, vni, mtu, l4) = (frame.ethernet().into_inner(), wire.vni.get(), wire.mtu as usize, wire.l4_checksum);
    let (start, payloads) = (tx.arena.len(), tx.payloads.len());
    let scratch = &mut tx.arena;
    if !wire.encrypted {
        if let Some(gathered) = tunnel::encapsulate_gathered(eth, offload, vni, mtu, l4, scratch, &mut tx.payloads) {
            let g = gathered.map_err(|_| DropReason::OffloadError)?;
            return Ok((Body::Gathered { frame: i, heads: start, head_len: g.head_len, payloads }, g.datagrams));
        }
        return tunnel::encapsulate(eth, offload, vni, mtu, Wire::Plain, l4, scratch)
            .map(|d| (Body::Arena { start }, d))
            .map_err(|_| DropReason::OffloadError);
    }
    // Never plaintext on an encrypted network: no key, no send.
    let crypto = crypto.ok_or(DropReason::NoKey)?;
    let (mut session, counters) = crypto.tx_session(vni, socket).ok_or(DropReason::NoKey)?;
    let d =
        tunnel::encapsulate(eth, offload, vni, mtu, Wire::ToSeal, l4, scratch).map_err(|_| DropReason::OffloadError)?;
    // Counters in sending order first, so the datagrams may be sealed on
    // several threads and still reach the receiver's window in order.
    let first = session.reserve(d.count() as u64).ok_or(DropReason::NoKey)?;
    let stride = d.stride.unwrap_or(d.len);
    let datagrams = &mut scratch[start..start + d.len];
    spread::seal(datagrams, stride, (&session.at, session.aead, first), spread.then_some(&counters.helped));
    counters.sealed.fetch_add(d.count() as u64, Relaxed);
    Ok((Body::Arena { start }, d))
}

#[cfg(test)]
mod tests;
