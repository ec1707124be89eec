//! The data plane: worker threads that move frames between ports and the
//! underlay through the [`Switch`].
//!
//! Each port is read by one worker (assigned round-robin); worker 0 also
//! reads the underlay's VXLAN socket. Any worker may write to any port or
//! send to any VTEP. A worker reads a batch from a ready port or socket,
//! takes the fabric lock once to decide it all, releases it, then writes.
//! Buffers are allocated once per worker and reused: the steady state
//! allocates nothing per frame.
//!
//! Between ports, frames go out exactly as they came in, virtio header
//! included, so a 64 KiB TCP segment crosses in one read and one write.
//! Towards a VTEP, a frame is encapsulated in a scratch buffer: segmented to
//! the MTU if it is a GSO frame, its open checksum completed otherwise (see
//! `switchd_overlay::offload`), sealed if its network is encrypted
//! ([`crypto`]), then sent with one `sendmsg` (with `UDP_SEGMENT` when it
//! makes several datagrams; [`tx`]). From the underlay, datagrams are
//! admitted by the switch, sealed ones opened in place outside the lock,
//! and each inner frame written to its port behind an all-zero virtio
//! header, consecutive TCP segments joined first (GRO).
//!
//! The control plane changes ports, networks and VTEPs through
//! [`Dataplane`]; it tells the owning worker to start or stop polling a port
//! through a channel and an eventfd. Worker 0 also runs the MAC aging timer.

pub mod crypto;
mod tx;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hashbrown::HashMap;
use slotmap::{Key, SecondaryMap};
use socket2::SockAddr;
use switchd_config::{MacAddr, Mtu, Vni};
use switchd_overlay::gro::Gro;
use switchd_overlay::offload::{self, Gso};
use switchd_overlay::tunnel::{self, Datagrams, Offload, Wire};
use switchd_overlay::{flow, vxlan};

use crate::io::epoll::{self, Epoll};
use crate::io::sys;
use crate::io::udp::{self, RecvBatch};
use crate::services::{self, Tables};
use crate::switch::frame::{Frame, GsoType, MAX_FRAME_LEN, VNET_F_NEEDS_CSUM, VNET_HDR_LEN};
use crate::switch::{
    Action, Arrival, DropReason, Location, NetworkId, NetworkWire, Next, PortGuard, PortId, Switch, SwitchConfig,
    VtepId, l3, neighbor,
};
use crypto::{CryptoCounters, Identity, KeySet, SharedKeys, WorkerCrypto};
use tx::TxQueue;

/// Frames read from one port before they are decided and written.
const BATCH: usize = 32;
/// Reads of the underlay socket per `recvmmsg` (each up to 64 KiB of GRO).
const UNDERLAY_BATCH: usize = 8;
/// epoll tokens that are not ports (port tokens are slot keys, which never
/// take these values).
const WAKE_TOKEN: u64 = u64::MAX;
const UNDERLAY_TOKEN: u64 = u64::MAX - 1;
/// What precedes a decapsulated frame on its way into a port: no offloads,
/// checksums as they are.
const PLAIN_VNET_HDR: [u8; VNET_HDR_LEN] = [0; VNET_HDR_LEN];
/// The largest `sendmsg` the kernel takes (an IPv4 datagram, less headers).
const MAX_SEND: usize = 65_000;

/// Transmit counters, kept by the workers with relaxed atomics.
#[derive(Debug, Default)]
pub struct TxCounters {
    pub frames: AtomicU64,
    pub bytes: AtomicU64,
    /// Sends the kernel refused (queue full, or a frame it rejected).
    pub errors: AtomicU64,
}

impl TxCounters {
    fn record(&self, result: io::Result<usize>, len: usize) {
        match result {
            Ok(_) => {
                self.frames.fetch_add(1, Relaxed);
                self.bytes.fetch_add(len as u64, Relaxed);
            }
            Err(_) => {
                self.errors.fetch_add(1, Relaxed);
            }
        }
    }

    /// Frames, bytes, errors.
    pub fn load(&self) -> (u64, u64, u64) {
        (self.frames.load(Relaxed), self.bytes.load(Relaxed), self.errors.load(Relaxed))
    }
}

/// A port's device, as the data plane sees it: an fd that reads and writes
/// whole frames behind a virtio header (a TAP or an AF_PACKET socket).
#[derive(Debug)]
pub struct PortIo {
    fd: OwnedFd,
    pub tx: TxCounters,
}

impl PortIo {
    fn send(&self, frame: &[u8]) {
        self.tx.record(sys::write(self.fd.as_raw_fd(), frame), frame.len());
    }

    /// Writes a plain Ethernet frame (from the underlay) behind an all-zero
    /// virtio header, without copying it.
    fn send_plain(&self, eth: &[u8]) {
        self.tx.record(sys::writev(self.fd.as_raw_fd(), &[&PLAIN_VNET_HDR, eth]), eth.len());
    }
}

/// A remote VTEP, as the data plane sees it.
#[derive(Debug)]
pub struct VtepIo {
    addr: SockAddr,
    pub tx: TxCounters,
}

/// The underlay: VXLAN in (read by worker 0), the pool VXLAN goes out
/// through (see `io::udp`), and who this host is on the wire.
#[derive(Debug)]
pub struct Underlay {
    pub rx: OwnedFd,
    pub tx: Vec<OwnedFd>,
    pub identity: Identity,
}

impl Underlay {
    /// Binds `underlay_ip:port` and the send pool; `session` is this boot's.
    pub fn bind(ip: IpAddr, port: u16, session: switchd_crypto::SessionId) -> io::Result<Underlay> {
        let rx = udp::bind_rx(SocketAddr::new(ip, port))?;
        let tx = (0..udp::TX_POOL).map(|_| udp::bind_tx(ip)).collect::<io::Result<_>>()?;
        Ok(Underlay { rx, tx, identity: Identity { sender: ip, session } })
    }
}

/// What the workers share: the switch and the devices behind its ids.
#[derive(Debug)]
pub struct Fabric {
    pub switch: Switch,
    ports: SecondaryMap<PortId, Arc<PortIo>>,
    vteps: SecondaryMap<VtepId, Arc<VtepIo>>,
    /// What the gateway serves from; replaced whole by the control plane.
    services: Arc<Tables>,
    /// What the gateway did (atomics: workers count without the lock).
    service_counters: Arc<services::Counters>,
}

enum Command {
    Poll(PortId, Arc<PortIo>),
    Forget(PortId),
    Stop,
}

#[derive(Debug)]
struct WorkerHandle {
    commands: Sender<Command>,
    wake: Arc<OwnedFd>,
    thread: Option<JoinHandle<()>>,
    ports: usize,
}

impl WorkerHandle {
    fn send(&self, command: Command) {
        // A worker only goes away at shutdown; a failed send then is moot.
        let _ = self.commands.send(command);
        sys::eventfd_signal(self.wake.as_raw_fd());
    }
}

#[derive(Debug)]
pub struct Dataplane {
    fabric: Arc<Mutex<Fabric>>,
    workers: Vec<WorkerHandle>,
    owner: SecondaryMap<PortId, usize>,
    keys: Arc<SharedKeys>,
    crypto: Arc<CryptoCounters>,
}

fn lock(fabric: &Mutex<Fabric>) -> MutexGuard<'_, Fabric> {
    // A worker that panicked mid-decision leaves the tables consistent
    // enough to keep switching; never let one poisoned lock stop the rest.
    fabric.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Dataplane {
    /// Starts `workers` data-plane threads; with an underlay, worker 0 reads it.
    pub fn start(config: SwitchConfig, workers: usize, underlay: Option<Underlay>) -> io::Result<Self> {
        let fabric = Arc::new(Mutex::new(Fabric {
            switch: Switch::new(config),
            ports: SecondaryMap::new(),
            vteps: SecondaryMap::new(),
            services: Arc::default(),
            service_counters: Arc::default(),
        }));
        let keys = Arc::new(SharedKeys::default());
        let counters = Arc::new(CryptoCounters::default());
        let (mut rx, tx_pool, identity) = match underlay {
            Some(u) => (Some(u.rx), Arc::new(u.tx), Some(u.identity)),
            None => (None, Arc::new(Vec::new()), None),
        };
        let mut handles = Vec::new();
        for index in 0..workers.max(1) {
            let (tx, commands) = channel();
            let wake = Arc::new(sys::eventfd()?);
            let underlay_rx = rx.take();
            let crypto =
                identity.map(|id| WorkerCrypto::new(index, id, keys.clone(), counters.clone(), underlay_rx.is_some()));
            let worker =
                Worker::new(index, fabric.clone(), commands, wake.clone(), underlay_rx, tx_pool.clone(), crypto)?;
            let thread = std::thread::Builder::new().name(format!("switchd-dp{index}")).spawn(move || worker.run())?;
            handles.push(WorkerHandle { commands: tx, wake, thread: Some(thread), ports: 0 });
        }
        Ok(Dataplane { fabric, workers: handles, owner: SecondaryMap::new(), keys, crypto: counters })
    }

    /// Gives the workers a new snapshot of names, leases and gateways.
    pub fn set_services(&self, tables: Tables) {
        lock(&self.fabric).services = Arc::new(tables);
    }

    /// Where the gateway stack's DNS server reads the services snapshot.
    pub fn services_source(&self) -> crate::io::gateway::TablesSource {
        let fabric = self.fabric.clone();
        Arc::new(move || {
            let f = lock(&fabric);
            (f.services.clone(), f.service_counters.clone())
        })
    }

    /// What the gateway has done.
    pub fn service_counters(&self) -> Arc<services::Counters> {
        lock(&self.fabric).service_counters.clone()
    }

    /// Gives the workers new keys (taken before their next batch).
    pub fn set_keys(&self, keys: KeySet) {
        self.keys.set(keys);
    }

    /// Sealed datagrams sent, datagrams opened, sessions held.
    pub fn crypto_counters(&self) -> (u64, u64, u64) {
        let c = &self.crypto;
        (c.sealed.load(Relaxed), c.opened.load(Relaxed), c.rx_sessions.load(Relaxed))
    }

    /// Runs `f` with the switch locked (for queries and table changes).
    pub fn with_switch<T>(&self, f: impl FnOnce(&mut Switch) -> T) -> T {
        f(&mut lock(&self.fabric).switch)
    }

    /// Adds a network; `None` if its VNI is taken.
    pub fn add_network(&self, vni: Vni, mtu: Mtu, encrypted: bool) -> Option<NetworkId> {
        self.with_switch(|s| s.add_network(vni, mtu, encrypted))
    }

    /// Removes a network; its ports must have been removed first.
    pub fn remove_network(&self, id: NetworkId) {
        self.with_switch(|s| s.remove_network(id));
    }

    /// Adds a remote VTEP carrying `vnis` (`None`: all); `None` if its IP is known.
    pub fn add_vtep(&self, addr: SocketAddr, vnis: Option<Vec<Vni>>) -> Option<VtepId> {
        let mut fabric = lock(&self.fabric);
        let id = fabric.switch.add_vtep(addr, vnis)?;
        fabric.vteps.insert(id, Arc::new(VtepIo { addr: addr.into(), tx: TxCounters::default() }));
        Some(id)
    }

    /// Removes a VTEP and what was learned behind it.
    pub fn remove_vtep(&self, id: VtepId) {
        let mut fabric = lock(&self.fabric);
        fabric.switch.remove_vtep(id);
        fabric.vteps.remove(id);
    }

    /// Adds a port on `network` switching frames through `fd`, held to
    /// `guard` from its first frame (see `Switch::set_port_guard`), and
    /// starts polling it. `None` if the network does not exist.
    pub fn add_port(&mut self, network: NetworkId, fd: OwnedFd, guard: PortGuard) -> Option<PortId> {
        let io = Arc::new(PortIo { fd, tx: TxCounters::default() });
        let id = {
            let mut fabric = lock(&self.fabric);
            let id = fabric.switch.add_port(network)?;
            fabric.switch.set_port_guard(id, guard);
            fabric.ports.insert(id, io.clone());
            id
        };
        let (index, worker) = self.workers.iter_mut().enumerate().min_by_key(|(_, w)| w.ports)?;
        worker.ports += 1;
        worker.send(Command::Poll(id, io));
        self.owner.insert(id, index);
        Some(id)
    }

    /// Stops switching a port. Its fd closes once the last in-flight write
    /// is done.
    pub fn remove_port(&mut self, id: PortId) {
        {
            let mut fabric = lock(&self.fabric);
            fabric.switch.remove_port(id);
            fabric.ports.remove(id);
        }
        if let Some(index) = self.owner.remove(id) {
            let worker = &mut self.workers[index];
            worker.ports -= 1;
            worker.send(Command::Forget(id));
        }
    }

    /// A port's transmit counters: frames, bytes, refused writes.
    pub fn port_tx(&self, id: PortId) -> Option<(u64, u64, u64)> {
        lock(&self.fabric).ports.get(id).map(|io| io.tx.load())
    }

    /// A VTEP's transmit counters: datagrams, bytes, refused sends.
    pub fn vtep_tx(&self, id: VtepId) -> Option<(u64, u64, u64)> {
        lock(&self.fabric).vteps.get(id).map(|io| io.tx.load())
    }

    /// Stops the workers. Ports' fds close; persistent TAPs stay.
    pub fn shutdown(&mut self) {
        for worker in &self.workers {
            worker.send(Command::Stop);
        }
        for worker in &mut self.workers {
            if let Some(thread) = worker.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// One decided output of a batch: frame `i` goes to this port or VTEP, or
/// is answered on this port on an address owner's behalf.
enum Out {
    Port(usize, Arc<PortIo>),
    Vtep(usize, Arc<VtepIo>),
    Answer(usize, Arc<PortIo>, MacAddr, neighbor::Request),
    /// For the gateway's services, from this port on this network.
    Serve(usize, Arc<PortIo>, PortId, NetworkId),
    /// Refused by the router: an ICMP error goes back on the port.
    Reject(usize, Arc<PortIo>, NetworkId, DropReason),
}

struct Worker {
    index: usize,
    fabric: Arc<Mutex<Fabric>>,
    commands: Receiver<Command>,
    wake: Arc<OwnedFd>,
    epoll: Epoll,
    ports: HashMap<u64, (PortId, Arc<PortIo>)>,
    bufs: Vec<Box<[u8]>>,
    lens: [usize; BATCH],
    /// How frame `i`'s network goes on the wire, when it goes to a VTEP.
    wire: [Option<NetworkWire>; BATCH],
    outs: Vec<Out>,
    underlay_rx: Option<OwnedFd>,
    tx_pool: Arc<Vec<OwnedFd>>,
    recv: RecvBatch,
    /// Decapsulated frames to write, and their ports.
    decap_outs: Vec<(Span, Arc<PortIo>)>,
    /// Sealed datagrams to open: where, from whom, for which network.
    to_open: Vec<(Span, IpAddr, Arrival)>,
    /// What opening them gave: where each frame is, or why it was dropped.
    opened: Vec<(Arrival, Result<Span, DropReason>)>,
    /// Keys and sessions; `None` without an underlay.
    crypto: Option<WorkerCrypto>,
    /// Joins the TCP segments of decapsulated frames for one write.
    gro: Gro,
    /// Where frames are encapsulated (and segmented) before sending.
    tx: TxQueue,
    /// Worker 0 sweeps aged MACs this often; the others never.
    sweep_every: Option<Duration>,
    last_sweep: Instant,
    /// The services snapshot, taken with the lock when a batch needs it.
    services: Arc<Tables>,
    service_counters: Arc<services::Counters>,
    /// Where the gateway's answers are built.
    reply: Vec<u8>,
}

impl Worker {
    fn new(
        index: usize,
        fabric: Arc<Mutex<Fabric>>,
        commands: Receiver<Command>,
        wake: Arc<OwnedFd>,
        underlay_rx: Option<OwnedFd>,
        tx_pool: Arc<Vec<OwnedFd>>,
        crypto: Option<WorkerCrypto>,
    ) -> io::Result<Self> {
        let (sweep_every, service_counters) = {
            let f = lock(&fabric);
            ((index == 0).then(|| f.switch.config().sweep_interval()), f.service_counters.clone())
        };
        let epoll = Epoll::new()?;
        epoll.add(wake.as_raw_fd(), WAKE_TOKEN)?;
        if let Some(rx) = &underlay_rx {
            epoll.add(rx.as_raw_fd(), UNDERLAY_TOKEN)?;
        }
        let underlay_batch = if underlay_rx.is_some() { UNDERLAY_BATCH } else { 0 };
        Ok(Worker {
            index,
            fabric,
            commands,
            wake,
            epoll,
            ports: HashMap::new(),
            bufs: (0..BATCH).map(|_| vec![0u8; MAX_FRAME_LEN].into_boxed_slice()).collect(),
            lens: [0; BATCH],
            wire: [None; BATCH],
            outs: Vec::with_capacity(BATCH * 8),
            underlay_rx,
            tx_pool,
            recv: RecvBatch::new(underlay_batch),
            decap_outs: Vec::with_capacity(UNDERLAY_BATCH * 64),
            to_open: Vec::with_capacity(UNDERLAY_BATCH * 64),
            opened: Vec::with_capacity(UNDERLAY_BATCH * 64),
            crypto,
            gro: Gro::new(),
            tx: TxQueue::default(),
            sweep_every,
            last_sweep: Instant::now(),
            services: Arc::default(),
            service_counters,
            reply: Vec::with_capacity(2048),
        })
    }

    fn run(mut self) {
        let mut events = vec![epoll::empty_event(); 64];
        loop {
            let timeout = self.timeout_ms();
            let n = match self.epoll.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(worker = self.index, "epoll_wait failed, data plane worker stops: {e}");
                    return;
                }
            };
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
            self.handle_timeout();
        }
    }

    /// Applies queued commands; false when told to stop.
    fn handle_commands(&mut self) -> bool {
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Command::Poll(id, io) => {
                    let token = id.data().as_ffi();
                    if let Err(e) = self.epoll.add(io.fd.as_raw_fd(), token) {
                        tracing::error!("cannot poll port: {e}");
                        continue;
                    }
                    self.ports.insert(token, (id, io));
                }
                Command::Forget(id) => {
                    if let Some((_, io)) = self.ports.remove(&id.data().as_ffi()) {
                        let _ = self.epoll.delete(io.fd.as_raw_fd());
                    }
                }
                Command::Stop => return false,
            }
        }
        true
    }

    /// Worker 0 keeps the switch's timers; the others sleep until input.
    fn timeout_ms(&self) -> i32 {
        let Some(every) = self.sweep_every else { return -1 };
        let next = self.last_sweep + every;
        next.saturating_duration_since(Instant::now()).as_millis().min(i32::MAX as u128) as i32
    }

    fn handle_timeout(&mut self) {
        let Some(every) = self.sweep_every else { return };
        let now = Instant::now();
        if now >= self.last_sweep + every {
            lock(&self.fabric).switch.handle_timeout(now);
            self.last_sweep = now;
        }
    }

    /// Reads a batch from one ready port, decides it, writes and sends it.
    fn service_port(&mut self, token: u64) {
        let Some((ingress, port)) = self.ports.get(&token).cloned() else { return };
        let mut n = 0;
        while n < BATCH {
            match sys::read(port.fd.as_raw_fd(), &mut self.bufs[n]) {
                Ok(len) => {
                    self.lens[n] = len;
                    n += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // The device is gone (TAP deleted: EBADFD) or broken;
                    // stop polling it rather than spin on the error. The
                    // control plane removes the port.
                    tracing::warn!("port read failed, no longer polling it: {e}");
                    let _ = self.epoll.delete(port.fd.as_raw_fd());
                    self.ports.remove(&token);
                    break;
                }
            }
        }
        if n == 0 {
            return;
        }

        let now = Instant::now();
        {
            let mut fabric = lock(&self.fabric);
            let fabric = &mut *fabric;
            for i in 0..n {
                let action = fabric.switch.handle_frame(now, ingress, &self.bufs[i][..self.lens[i]]);
                let mut to = |at: Location, network: NetworkId| match at {
                    Location::Port(p) => {
                        if let Some(io) = fabric.ports.get(p) {
                            self.outs.push(Out::Port(i, io.clone()));
                        }
                    }
                    Location::Vtep(v) => {
                        if let (Some(io), Some(wire)) = (fabric.vteps.get(v), fabric.switch.network_wire(network)) {
                            self.wire[i] = Some(wire);
                            self.outs.push(Out::Vtep(i, io.clone()));
                        }
                    }
                };
                match action {
                    Action::Deliver(out) => {
                        if let Some(io) = fabric.ports.get(out) {
                            self.outs.push(Out::Port(i, io.clone()));
                        }
                    }
                    Action::Encap { vtep, network } => to(Location::Vtep(vtep), network),
                    Action::Flood { network, ingress } => {
                        for target in fabric.switch.flood_targets(network, ingress) {
                            to(target, network);
                        }
                    }
                    Action::Answer { port, owner, request } => {
                        if let Some(io) = fabric.ports.get(port) {
                            self.outs.push(Out::Answer(i, io.clone(), owner, request));
                        }
                    }
                    Action::Route { network, src, dst, next } => {
                        l3::forward(&mut self.bufs[i][VNET_HDR_LEN..self.lens[i]], src, dst);
                        match next {
                            Next::Port(p) => to(Location::Port(p), network),
                            Next::Vtep(v) => to(Location::Vtep(v), network),
                            Next::Flood => {
                                for target in fabric.switch.flood_targets(network, Location::Port(ingress)) {
                                    to(target, network);
                                }
                            }
                        }
                    }
                    Action::Local { port, network } => {
                        if let Some(io) = fabric.ports.get(port) {
                            self.outs.push(Out::Serve(i, io.clone(), port, network));
                        }
                    }
                    Action::Reject { port, network, reason } => {
                        if let Some(io) = fabric.ports.get(port) {
                            self.outs.push(Out::Reject(i, io.clone(), network, reason));
                        }
                    }
                    Action::Drop(_) => {}
                }
            }
            if self.outs.iter().any(|o| matches!(o, Out::Serve(..) | Out::Reject(..))) {
                self.services = fabric.services.clone();
            }
        }

        // Local ports get their frames now; frames for VTEPs are
        // encapsulated (and sealed: once per frame, however many VTEPs)
        // into the arena and queued, then sent with one sendmmsg per
        // source socket.
        self.tx.clear();
        if let Some(crypto) = &mut self.crypto {
            crypto.refresh();
        }
        // The frame last encapsulated: (its index, and where its datagrams
        // start in the arena, their socket, their layout; `None` if it failed).
        let mut built: Option<(usize, Option<Built>)> = None;
        let (mut offload_errors, mut no_key) = (0, 0);
        for out in self.outs.drain(..) {
            match out {
                Out::Port(i, io) => io.send(&self.bufs[i][..self.lens[i]]),
                Out::Answer(i, io, owner, request) => {
                    let mut reply = [0u8; VNET_HDR_LEN + neighbor::MAX_REPLY_LEN];
                    let asked = Frame::new_unchecked(&self.bufs[i][..self.lens[i]]);
                    let n = neighbor::reply(asked.ethernet().bytes(), request, owner, &mut reply[VNET_HDR_LEN..]);
                    io.send(&reply[..VNET_HDR_LEN + n]);
                }
                Out::Serve(i, io, port, network) => {
                    let eth = &self.bufs[i][VNET_HDR_LEN..self.lens[i]];
                    let (tables, counters, reply) = (&self.services, &self.service_counters, &mut self.reply);
                    // The responders parse with libraries; should one of
                    // them panic on some input, drop the frame, not the worker.
                    let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        services::serve(tables, counters, port, network, eth, reply)
                    }));
                    if served.is_err() {
                        self.reply.clear();
                        tracing::error!("a gateway service panicked on a frame (a bug); the frame is dropped");
                    }
                    if !self.reply.is_empty() {
                        io.send_plain(&self.reply);
                    }
                }
                Out::Reject(i, io, network, reason) => {
                    let eth = &self.bufs[i][VNET_HDR_LEN..self.lens[i]];
                    services::reject(&self.services, &self.service_counters, network, reason, eth, &mut self.reply);
                    if !self.reply.is_empty() {
                        io.send_plain(&self.reply);
                    }
                }
                Out::Vtep(i, io) => {
                    if built.map(|(frame, _)| frame) != Some(i) {
                        let wire = self.wire[i].expect("set with every Out::Vtep");
                        let start = self.tx.arena.len();
                        let frame = Frame::new_unchecked(&self.bufs[i][..self.lens[i]]);
                        let socket = flow::hash(frame.ethernet().bytes()) as usize % self.tx_pool.len().max(1);
                        let result = encapsulate(&frame, wire, socket, self.crypto.as_mut(), &mut self.tx.arena);
                        if let Err(reason) = result {
                            self.tx.arena.truncate(start);
                            *(if reason == DropReason::NoKey { &mut no_key } else { &mut offload_errors }) += 1;
                        }
                        built = Some((i, result.ok().map(|d| Built { start, socket, datagrams: d })));
                    }
                    if let Some((_, Some(b))) = built {
                        self.tx.queue(b.socket, io, b.start, b.datagrams);
                    }
                }
            }
        }
        self.tx.flush(&self.tx_pool);
        if offload_errors + no_key > 0 {
            let mut fabric = lock(&self.fabric);
            fabric.switch.count_port_drops(ingress, DropReason::OffloadError, offload_errors);
            fabric.switch.count_port_drops(ingress, DropReason::NoKey, no_key);
        }
    }

    /// Reads what the underlay has, decapsulates, decides and writes it.
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
        // Under the lock: admit every datagram, decide the plain ones, set
        // the sealed ones aside.
        {
            let mut fabric = lock(&self.fabric);
            let fabric = &mut *fabric;
            for read in 0..n {
                let (src, datagrams) = self.recv.read(read);
                let Some(src) = src else { continue };
                let mut offset = 0;
                for datagram in datagrams {
                    let at = Span { read, offset, len: datagram.len() };
                    offset += datagram.len();
                    let Ok(arrival) = fabric.switch.admit_datagram(src, datagram) else { continue };
                    if arrival.sealed {
                        self.to_open.push((at, src, arrival));
                        continue;
                    }
                    let inner = at.within(vxlan::HEADER_LEN..at.len);
                    let action = fabric.switch.handle_decapsulated(now, arrival, &datagram[vxlan::HEADER_LEN..]);
                    route_decapsulated(fabric, action, inner, &mut self.decap_outs);
                }
            }
        }
        if !self.to_open.is_empty() {
            self.open_sealed(now);
        }
        self.write_decapsulated();
    }

    /// Opens the sealed datagrams set aside (without the lock), then
    /// decides their frames and counts the failures (with it).
    fn open_sealed(&mut self, now: Instant) {
        let crypto = self.crypto.as_mut().expect("an underlay worker has keys");
        crypto.refresh();
        for (at, src, arrival) in self.to_open.drain(..) {
            let datagram = &mut self.recv.data_mut(at.read)[at.offset..at.offset + at.len];
            let opened = crypto.open(datagram, src).map(|frame| at.within(frame));
            self.opened.push((arrival, opened.map_err(DropReason::from)));
        }
        let mut fabric = lock(&self.fabric);
        let fabric = &mut *fabric;
        for (arrival, result) in self.opened.drain(..) {
            match result {
                Err(reason) => {
                    fabric.switch.drop_arrival(arrival, reason);
                }
                Ok(at) => {
                    let action = fabric.switch.handle_decapsulated(now, arrival, at.of(&self.recv));
                    route_decapsulated(fabric, action, at, &mut self.decap_outs);
                }
            }
        }
    }

    /// Writes decapsulated frames to their ports; consecutive segments of
    /// one flow to one port go up as one frame.
    fn write_decapsulated(&mut self) {
        let mut joining: Option<Arc<PortIo>> = None;
        for (at, io) in self.decap_outs.drain(..) {
            let eth = at.of(&self.recv);
            if joining.as_ref().is_some_and(|j| Arc::ptr_eq(j, &io)) && self.gro.append(eth) {
                continue;
            }
            if let Some(port) = joining.take() {
                port.send(self.gro.finish());
            }
            if self.gro.start(eth) {
                joining = Some(io);
            } else {
                io.send_plain(eth);
            }
        }
        if let Some(port) = joining {
            port.send(self.gro.finish());
        }
    }
}

/// Bytes in the receive buffers: `len` at `offset` of read `read`.
#[derive(Debug, Clone, Copy)]
struct Span {
    read: usize,
    offset: usize,
    len: usize,
}

impl Span {
    /// The part `range` of this span.
    fn within(self, range: std::ops::Range<usize>) -> Span {
        Span { read: self.read, offset: self.offset + range.start, len: range.len() }
    }

    fn of(self, recv: &RecvBatch) -> &[u8] {
        &recv.data(self.read)[self.offset..self.offset + self.len]
    }
}

/// A frame's datagrams in the send arena.
#[derive(Debug, Clone, Copy)]
struct Built {
    start: usize,
    socket: usize,
    datagrams: Datagrams,
}

/// Queues a decapsulated frame for the ports the switch decided on.
fn route_decapsulated(fabric: &Fabric, action: Action, at: Span, outs: &mut Vec<(Span, Arc<PortIo>)>) {
    let mut to = |p: PortId| {
        if let Some(io) = fabric.ports.get(p) {
            outs.push((at, io.clone()));
        }
    };
    match action {
        Action::Deliver(p) => to(p),
        Action::Flood { network, ingress } => {
            for target in fabric.switch.flood_targets(network, ingress) {
                if let Location::Port(p) = target {
                    to(p);
                }
            }
        }
        // Only frames from local ports are answered, served, routed or
        // encapsulated.
        Action::Answer { .. }
        | Action::Encap { .. }
        | Action::Local { .. }
        | Action::Route { .. }
        | Action::Reject { .. }
        | Action::Drop(_) => {}
    }
}

/// What a frame read from a port (virtio header + Ethernet, checked by the
/// switch) asks of the device that sends it.
fn offload_of(frame: &Frame<&[u8]>) -> Result<Offload, offload::Error> {
    let mss = usize::from(frame.gso_size());
    Ok(match frame.gso_type() {
        GsoType::None if frame.flags() & VNET_F_NEEDS_CSUM != 0 => {
            Offload::Checksum { start: usize::from(frame.csum_start()), offset: usize::from(frame.csum_offset()) }
        }
        GsoType::None => Offload::None,
        GsoType::TcpV4 => Offload::Segment { gso: Gso::TcpV4, mss },
        GsoType::TcpV6 => Offload::Segment { gso: Gso::TcpV6, mss },
        GsoType::UdpL4 => Offload::Segment { gso: Gso::UdpL4, mss },
        // UFO is never enabled on our TAPs, and unknown types were refused.
        GsoType::Udp | GsoType::Unknown(_) => return Err(offload::Error::Mismatch),
    })
}

/// Builds the datagram(s) for `frame` in `scratch`: plain VXLAN, or sealed
/// on the lane of send socket `socket` when the network is encrypted.
fn encapsulate(
    frame: &Frame<&[u8]>,
    wire: NetworkWire,
    socket: usize,
    crypto: Option<&mut WorkerCrypto>,
    scratch: &mut Vec<u8>,
) -> Result<Datagrams, DropReason> {
    let offload = offload_of(frame).map_err(|_| DropReason::OffloadError)?;
    let (eth, vni, mtu) = (frame.ethernet().bytes(), wire.vni.get(), wire.mtu as usize);
    if !wire.encrypted {
        return tunnel::encapsulate(eth, offload, vni, mtu, Wire::Plain, scratch).map_err(|_| DropReason::OffloadError);
    }
    // Never plaintext on an encrypted network: no key, no send.
    let crypto = crypto.ok_or(DropReason::NoKey)?;
    let mut session = crypto.tx_session(vni, socket).ok_or(DropReason::NoKey)?;
    let d = tunnel::encapsulate(eth, offload, vni, mtu, Wire::Sealed(&mut session), scratch).map_err(|e| match e {
        tunnel::Error::Offload(_) => DropReason::OffloadError,
        tunnel::Error::NoncesExhausted => DropReason::NoKey,
    })?;
    crypto.counters.sealed.fetch_add(d.len.div_ceil(d.stride.unwrap_or(d.len).max(1)) as u64, Relaxed);
    Ok(d)
}
