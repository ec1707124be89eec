//! Published ports: a host port forwarded to a container's port, like
//! `docker run -p HOST_PORT:PORT`, without any route from the host into the
//! virtual network.
//!
//! The proxy listens in switchd's own namespace. For each connection (TCP)
//! or each client address (UDP) it opens a socket *inside the container's
//! namespace* (a thread enters it with `setns`; the socket stays there when
//! the thread leaves) and connects it to the container's address, then
//! copies bytes both ways on the control plane's runtime. The container is
//! looked up when a client arrives, so a publish may name a container that
//! is attached later, or that moved to a new address.
//!
//! What clients may hold is bounded (`crate::conns::Table`): at most
//! `max_connections` relays, `max_per_source` of them for one client
//! address, each closed after `idle_timeout` of silence both ways. A
//! newcomer past a bound takes the place of the relay idle longest (of its
//! own source first), so idle clients can never lock new ones out.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use switchd_config::{Name, Protocol, PublishConfig};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

use crate::conns::{self, AcceptErrors, CountersSnapshot, ErrorKind, Guard, Limits, Source, Stamped, Table};
use crate::io::netns;

/// How long connecting to the container may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a container is: its namespace and its address on a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub netns: String,
    pub ip: IpAddr,
}

/// The local containers by (network, name), kept current by the daemon.
pub type Targets = Arc<RwLock<HashMap<(Name, Name), Target>>>;

/// One published port; dropping it closes the listener and its relays.
#[derive(Debug)]
pub struct Listener {
    task: JoinHandle<()>,
    table: Table,
}

impl Listener {
    /// Relays held now, and what the bounds did since the port was published.
    pub fn counters(&self) -> CountersSnapshot {
        self.table.counters()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
        // The relays are tasks of their own: tell them to end.
        self.table.close_all();
    }
}

/// The bounds of a publication's relays.
pub fn limits(publish: &PublishConfig) -> Limits {
    Limits {
        max: publish.max_connections as usize,
        per_source: publish.max_per_source as usize,
        idle_timeout: publish.idle_timeout,
    }
}

/// Binds the host side of `publish` (now, so a port in use is an error the
/// user sees) and starts forwarding on `runtime`.
pub fn start(publish: &PublishConfig, targets: Targets, runtime: &tokio::runtime::Handle) -> io::Result<Listener> {
    let addr = SocketAddr::new(publish.host_ip, publish.host_port);
    let name = format!("published port {addr}/{}", publish.protocol.as_str());
    let table = Table::new(name.clone(), limits(publish));
    let to = Upstream { targets, key: (publish.network.clone(), publish.container.clone()), port: publish.port };
    let _entered = runtime.enter();
    let task = match publish.protocol {
        Protocol::Tcp => {
            let std_listener = std::net::TcpListener::bind(addr)?;
            std_listener.set_nonblocking(true)?;
            let listener = TcpListener::from_std(std_listener)?;
            runtime.spawn(serve_tcp(listener, to, table.clone(), name))
        }
        Protocol::Udp => {
            let std_socket = std::net::UdpSocket::bind(addr)?;
            std_socket.set_nonblocking(true)?;
            let socket = Arc::new(UdpSocket::from_std(std_socket)?);
            runtime.spawn(serve_udp(socket, to, table.clone(), name))
        }
    };
    Ok(Listener { task, table })
}

/// Where a publication's relays lead.
#[derive(Debug, Clone)]
struct Upstream {
    targets: Targets,
    key: (Name, Name),
    port: u16,
}

impl Upstream {
    /// The container's namespace and address:port, if it is attached here.
    fn find(&self) -> Option<(String, SocketAddr)> {
        let targets = self.targets.read().unwrap_or_else(|p| p.into_inner());
        let target = targets.get(&self.key)?;
        Some((target.netns.clone(), SocketAddr::new(target.ip, self.port)))
    }
}

async fn serve_tcp(listener: TcpListener, to: Upstream, table: Table, name: String) {
    let mut errors = AcceptErrors::new(format!("{name}: accept"));
    loop {
        let (client, from) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                errors.pause(&e).await;
                continue;
            }
        };
        // Refused (every relay there busy, which TCP relays never are):
        // the client is closed at once.
        let Ok(admitted) = table.admit(Instant::now(), Source::of(from.ip())) else { continue };
        tokio::spawn(relay_tcp(client, from, admitted.guard, to.clone()));
    }
}

async fn relay_tcp(client: TcpStream, from: SocketAddr, guard: Guard, to: Upstream) {
    let Some((netns, addr)) = to.find() else {
        tracing::debug!("publish: {} on {} is not attached here; closing {from}", to.key.1, to.key.0);
        return;
    };
    let connected = {
        // Not to be closed for room while it connects.
        let _busy = guard.busy();
        in_container(netns, move || std::net::TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)).await
    };
    let stream = match connected {
        Ok(s) => s,
        Err(e) => return tracing::debug!("publish: connecting to {addr} for {from}: {e}"),
    };
    let Ok(upstream) = stream.set_nonblocking(true).and_then(|()| TcpStream::from_std(stream)) else {
        return;
    };
    let mut client = Stamped::new(client, &guard);
    let mut upstream = Stamped::new(upstream, &guard);
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
        why = guard.closed() => tracing::debug!("publish: closing {from} -> {addr}: {why:?}"),
    }
}

/// A UDP client's relay: its socket in the container's namespace (held by
/// the task carrying replies back, so it closes when that task ends), and
/// its place in the table.
#[derive(Debug)]
struct UdpRelay {
    socket: Weak<UdpSocket>,
    guard: Arc<Guard>,
}

/// Each client address gets its own socket in the container's namespace,
/// so replies find their way back to the right client.
async fn serve_udp(socket: Arc<UdpSocket>, to: Upstream, table: Table, name: String) {
    let mut relays: HashMap<SocketAddr, UdpRelay> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    let mut errors = AcceptErrors::new(format!("{name}: receive"));
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(e) => {
                errors.pause(&e).await;
                continue;
            }
        };
        let now = Instant::now();
        let open = relays.get(&from).filter(|r| !r.guard.is_closed()).and_then(|r| Some((r, r.socket.upgrade()?)));
        let relay = match open {
            Some((r, relay)) => {
                r.guard.touch(now);
                relay
            }
            None => {
                relays.remove(&from);
                if relays.len() >= table.limits().max {
                    // Forget relays that were closed (evicted, timed out)
                    // and whose clients did not come back.
                    relays.retain(|_, r| !r.guard.is_closed());
                }
                let Ok(admitted) = table.admit(now, Source::of(from.ip())) else { continue };
                let Some(relay) = open_udp_relay(&to).await else { continue };
                let guard = Arc::new(admitted.guard);
                relays.insert(from, UdpRelay { socket: Arc::downgrade(&relay), guard: guard.clone() });
                tokio::spawn(udp_replies(relay.clone(), socket.clone(), from, guard));
                relay
            }
        };
        let _ = relay.send(&buf[..n]).await;
    }
}

/// Runs `open` (which makes a socket) on a thread inside `netns`. If
/// descriptors ran out, the connections idle longest are closed and it is
/// tried once more: a newcomer must not fail for want of the descriptors
/// idle clients hold.
async fn in_container<T, F>(netns: String, open: F) -> io::Result<T>
where
    T: Send + 'static,
    F: Fn() -> io::Result<T> + Clone + Send + 'static,
{
    let attempt = |netns: String, open: F| async move {
        match tokio::task::spawn_blocking(move || netns::run_in(&netns, open)).await {
            Ok(Ok(result)) => result,
            Ok(Err(netns::NetnsError::Io(_, e))) => Err(e),
            Ok(Err(e)) => Err(io::Error::other(e.to_string())),
            Err(e) => Err(io::Error::other(e)),
        }
    };
    match attempt(netns.clone(), open.clone()).await {
        Err(e) if ErrorKind::of(&e) == ErrorKind::Resources => {
            let closed = conns::reclaim(Instant::now(), conns::RECLAIM);
            tracing::debug!("publish: {e}: closed {closed} idle connections, trying again");
            tokio::time::sleep(conns::RESOURCE_PAUSE).await;
            attempt(netns, open).await
        }
        result => result,
    }
}

/// A socket in the container's namespace, connected to its address.
async fn open_udp_relay(to: &Upstream) -> Option<Arc<UdpSocket>> {
    let (netns, addr) = to.find()?;
    let opened = in_container(netns, move || {
        let bind: SocketAddr = if addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().expect("an address");
        let s = std::net::UdpSocket::bind(bind)?;
        s.connect(addr)?;
        s.set_nonblocking(true)?;
        Ok(s)
    })
    .await;
    UdpSocket::from_std(opened.ok()?).map(Arc::new).ok()
}

/// Carries a container's replies back to one client until its relay is
/// closed (silent both ways for the idle timeout, or evicted).
async fn udp_replies(relay: Arc<UdpSocket>, socket: Arc<UdpSocket>, client: SocketAddr, guard: Arc<Guard>) {
    let mut buf = vec![0u8; 65536];
    loop {
        let received = tokio::select! {
            received = relay.recv(&mut buf) => received,
            _ = guard.closed() => break,
        };
        match received {
            Ok(n) => {
                guard.touch(Instant::now());
                let _ = socket.send_to(&buf[..n], client).await;
            }
            // The container's port is closed (an ICMP error): it may open.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
            Err(_) => break,
        }
    }
    guard.close();
}
