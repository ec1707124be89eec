//! The data plane: worker threads that move frames between ports through the
//! [`Switch`].
//!
//! Each port is read by one worker (assigned round-robin); any worker may
//! write to any port. A worker reads a batch of frames from a ready port,
//! takes the fabric lock once to decide them all, releases it, then writes.
//! Buffers are allocated once per worker and reused, so the steady state
//! allocates nothing per frame. Frames are written exactly as read, virtio
//! header included, which is what lets a 64 KiB TCP segment cross in one
//! read and one write.
//!
//! The control plane changes ports and networks through [`Dataplane`]; it
//! tells the owning worker to start or stop polling a port through a channel
//! and an eventfd. Worker 0 also runs the switch's timers (MAC aging).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hashbrown::HashMap;
use slotmap::{Key, SecondaryMap};
use switchd_config::Mtu;

use crate::io::epoll::{self, Epoll};
use crate::io::sys;
use crate::switch::frame::MAX_FRAME_LEN;
use crate::switch::{Action, NetworkId, PortId, Switch, SwitchConfig};

/// Frames read from one port before they are decided and written.
const BATCH: usize = 32;
/// The epoll token of a worker's wake-up eventfd (port tokens are slot keys,
/// which never take this value).
const WAKE_TOKEN: u64 = u64::MAX;

/// A port's device, as the data plane sees it: an fd that reads and writes
/// whole frames (a TAP or an AF_PACKET socket), and its transmit counters.
#[derive(Debug)]
pub struct PortIo {
    fd: OwnedFd,
    pub tx_frames: AtomicU64,
    pub tx_bytes: AtomicU64,
    /// Writes the device refused (queue full, or the kernel rejected the frame).
    pub tx_errors: AtomicU64,
}

impl PortIo {
    pub fn new(fd: OwnedFd) -> Self {
        PortIo { fd, tx_frames: AtomicU64::new(0), tx_bytes: AtomicU64::new(0), tx_errors: AtomicU64::new(0) }
    }

    fn send(&self, frame: &[u8]) {
        match sys::write(self.fd.as_raw_fd(), frame) {
            Ok(_) => {
                self.tx_frames.fetch_add(1, Relaxed);
                self.tx_bytes.fetch_add(frame.len() as u64, Relaxed);
            }
            Err(_) => {
                self.tx_errors.fetch_add(1, Relaxed);
            }
        }
    }
}

/// What the workers share: the switch and the devices of its ports.
#[derive(Debug)]
pub struct Fabric {
    pub switch: Switch,
    io: SecondaryMap<PortId, Arc<PortIo>>,
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
}

fn lock(fabric: &Mutex<Fabric>) -> MutexGuard<'_, Fabric> {
    // A worker that panicked mid-decision leaves the tables consistent
    // enough to keep switching; never let one poisoned lock stop the rest.
    fabric.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Dataplane {
    /// Starts `workers` data-plane threads.
    pub fn start(config: SwitchConfig, workers: usize) -> io::Result<Self> {
        let fabric = Arc::new(Mutex::new(Fabric { switch: Switch::new(config), io: SecondaryMap::new() }));
        let mut handles = Vec::new();
        for index in 0..workers.max(1) {
            let (tx, rx) = channel();
            let wake = Arc::new(sys::eventfd()?);
            let worker = Worker::new(index, fabric.clone(), rx, wake.clone())?;
            let thread = std::thread::Builder::new().name(format!("switchd-dp{index}")).spawn(move || worker.run())?;
            handles.push(WorkerHandle { commands: tx, wake, thread: Some(thread), ports: 0 });
        }
        Ok(Dataplane { fabric, workers: handles, owner: SecondaryMap::new() })
    }

    /// Runs `f` with the switch locked (for queries and table changes).
    pub fn with_switch<T>(&self, f: impl FnOnce(&mut Switch) -> T) -> T {
        f(&mut lock(&self.fabric).switch)
    }

    pub fn add_network(&self, mtu: Mtu) -> NetworkId {
        self.with_switch(|s| s.add_network(mtu))
    }

    /// Removes a network; its ports must have been removed first.
    pub fn remove_network(&self, id: NetworkId) {
        self.with_switch(|s| s.remove_network(id));
    }

    /// Adds a port on `network` switching frames through `fd`, and starts
    /// polling it. `None` if the network does not exist.
    pub fn add_port(&mut self, network: NetworkId, fd: OwnedFd) -> Option<PortId> {
        let io = Arc::new(PortIo::new(fd));
        let id = {
            let mut fabric = lock(&self.fabric);
            let id = fabric.switch.add_port(network)?;
            fabric.io.insert(id, io.clone());
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
            fabric.io.remove(id);
        }
        if let Some(index) = self.owner.remove(id) {
            let worker = &mut self.workers[index];
            worker.ports -= 1;
            worker.send(Command::Forget(id));
        }
    }

    /// The transmit counters of a port: frames, bytes, refused writes.
    pub fn tx_counters(&self, id: PortId) -> Option<(u64, u64, u64)> {
        let fabric = lock(&self.fabric);
        let io = fabric.io.get(id)?;
        Some((io.tx_frames.load(Relaxed), io.tx_bytes.load(Relaxed), io.tx_errors.load(Relaxed)))
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

struct Worker {
    index: usize,
    fabric: Arc<Mutex<Fabric>>,
    commands: Receiver<Command>,
    wake: Arc<OwnedFd>,
    epoll: Epoll,
    ports: HashMap<u64, (PortId, Arc<PortIo>)>,
    bufs: Vec<Box<[u8]>>,
    lens: [usize; BATCH],
    /// (frame index, destination) pairs of the batch being written.
    outs: Vec<(usize, Arc<PortIo>)>,
    /// Worker 0 sweeps aged MACs this often; the others never.
    sweep_every: Option<Duration>,
    last_sweep: Instant,
}

impl Worker {
    fn new(
        index: usize,
        fabric: Arc<Mutex<Fabric>>,
        commands: Receiver<Command>,
        wake: Arc<OwnedFd>,
    ) -> io::Result<Self> {
        let sweep_every = (index == 0).then(|| lock(&fabric).switch.config().sweep_interval());
        let epoll = Epoll::new()?;
        epoll.add(wake.as_raw_fd(), WAKE_TOKEN)?;
        Ok(Worker {
            index,
            fabric,
            commands,
            wake,
            epoll,
            ports: HashMap::new(),
            bufs: (0..BATCH).map(|_| vec![0u8; MAX_FRAME_LEN].into_boxed_slice()).collect(),
            lens: [0; BATCH],
            outs: Vec::with_capacity(BATCH * 8),
            sweep_every,
            last_sweep: Instant::now(),
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
                let token = event.u64;
                if token == WAKE_TOKEN {
                    sys::eventfd_drain(self.wake.as_raw_fd());
                    if !self.handle_commands() {
                        return;
                    }
                } else {
                    self.service(token);
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

    /// Reads a batch from one ready port, decides it, writes it.
    fn service(&mut self, token: u64) {
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
                let frame = &self.bufs[i][..self.lens[i]];
                match fabric.switch.handle_frame(now, ingress, frame) {
                    Action::Deliver(out) => {
                        if let Some(io) = fabric.io.get(out) {
                            self.outs.push((i, io.clone()));
                        }
                    }
                    Action::Flood(network) => {
                        for out in fabric.switch.flood_targets(network, ingress) {
                            if let Some(io) = fabric.io.get(out) {
                                self.outs.push((i, io.clone()));
                            }
                        }
                    }
                    Action::Drop(_) => {}
                }
            }
        }
        for (i, out) in self.outs.drain(..) {
            out.send(&self.bufs[i][..self.lens[i]]);
        }
    }
}
