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

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use switchd_config::{Name, Protocol, PublishConfig};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

use crate::conns::AcceptErrors;
use crate::io::netns;

/// How long a UDP client may stay silent before its relay is closed.
const UDP_IDLE: Duration = Duration::from_secs(60);
/// TCP connections relayed at once per published port.
const MAX_TCP_CONNECTIONS: usize = 1024;
/// UDP clients relayed at once per published port.
const MAX_UDP_CLIENTS: usize = 1024;
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
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds the host side of `publish` (now, so a port in use is an error the
/// user sees) and starts forwarding on `runtime`.
pub fn start(publish: &PublishConfig, targets: Targets, runtime: &tokio::runtime::Handle) -> io::Result<Listener> {
    let addr = SocketAddr::new(publish.host_ip, publish.host_port);
    let key = (publish.network.clone(), publish.container.clone());
    let port = publish.port;
    let _entered = runtime.enter();
    let task = match publish.protocol {
        Protocol::Tcp => {
            let std_listener = std::net::TcpListener::bind(addr)?;
            std_listener.set_nonblocking(true)?;
            let listener = TcpListener::from_std(std_listener)?;
            runtime.spawn(serve_tcp(listener, targets, key, port))
        }
        Protocol::Udp => {
            let std_socket = std::net::UdpSocket::bind(addr)?;
            std_socket.set_nonblocking(true)?;
            let socket = Arc::new(UdpSocket::from_std(std_socket)?);
            runtime.spawn(serve_udp(socket, targets, key, port))
        }
    };
    Ok(Listener { task })
}

fn lookup(targets: &Targets, key: &(Name, Name)) -> Option<Target> {
    targets.read().unwrap_or_else(|p| p.into_inner()).get(key).cloned()
}

async fn serve_tcp(listener: TcpListener, targets: Targets, key: (Name, Name), port: u16) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_TCP_CONNECTIONS));
    let mut errors = AcceptErrors::new(format!("published port {port}: accept"));
    loop {
        // Past the limit, new connections wait in the listen backlog.
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        let (mut client, from) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                errors.pause(&e).await;
                continue;
            }
        };
        let targets = targets.clone();
        let key = key.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let Some(target) = lookup(&targets, &key) else {
                tracing::debug!("publish: {} on {} is not attached here; closing {from}", key.1, key.0);
                return;
            };
            let to = SocketAddr::new(target.ip, port);
            let connected = tokio::task::spawn_blocking(move || {
                netns::run_in(&target.netns, || std::net::TcpStream::connect_timeout(&to, CONNECT_TIMEOUT))
            })
            .await;
            let stream = match connected {
                Ok(Ok(Ok(s))) => s,
                Ok(Ok(Err(e))) => return tracing::debug!("publish: connecting to {to} for {from}: {e}"),
                Ok(Err(e)) => return tracing::debug!("publish: {e}"),
                Err(_) => return,
            };
            let Ok(mut upstream) = stream.set_nonblocking(true).and_then(|()| TcpStream::from_std(stream)) else {
                return;
            };
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        });
    }
}

/// Each client address gets its own socket in the container's namespace,
/// so replies find their way back to the right client.
async fn serve_udp(socket: Arc<UdpSocket>, targets: Targets, key: (Name, Name), port: u16) {
    let mut relays: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    let mut errors = AcceptErrors::new(format!("published port {port}/udp: receive"));
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(e) => {
                errors.pause(&e).await;
                continue;
            }
        };
        relays.retain(|_, r| Arc::strong_count(r) > 1);
        let relay = match relays.get(&from) {
            Some(r) => r.clone(),
            // Each client costs a socket: past the limit, new ones wait
            // for others to go quiet.
            None if relays.len() >= MAX_UDP_CLIENTS => continue,
            None => {
                let Some(target) = lookup(&targets, &key) else { continue };
                let to = SocketAddr::new(target.ip, port);
                let opened = tokio::task::spawn_blocking(move || {
                    netns::run_in(&target.netns, || {
                        let bind: SocketAddr =
                            if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().expect("an address");
                        let s = std::net::UdpSocket::bind(bind)?;
                        s.connect(to)?;
                        s.set_nonblocking(true)?;
                        Ok::<_, io::Error>(s)
                    })
                })
                .await;
                let Ok(Ok(Ok(std_socket))) = opened else { continue };
                let Ok(relay) = UdpSocket::from_std(std_socket).map(Arc::new) else { continue };
                relays.insert(from, relay.clone());
                tokio::spawn(udp_replies(relay.clone(), socket.clone(), from));
                relay
            }
        };
        let _ = relay.send(&buf[..n]).await;
    }
}

/// Carries a container's replies back to one client until it goes quiet.
async fn udp_replies(relay: Arc<UdpSocket>, socket: Arc<UdpSocket>, client: SocketAddr) {
    let mut buf = vec![0u8; 65536];
    while let Ok(Ok(n)) = tokio::time::timeout(UDP_IDLE, relay.recv(&mut buf)).await {
        let _ = socket.send_to(&buf[..n], client).await;
    }
}
