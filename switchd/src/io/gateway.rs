//! The gateway's kernel stack: for what needs TCP (DNS over TCP), each
//! network's gateway addresses (IPv4, IPv6) also live on a TAP in a private network
//! namespace of switchd's own, where the kernel terminates TCP and a task
//! on the control plane's runtime answers.
//!
//! The namespace has no name and is held only by an fd: it and its TAP
//! vanish with switchd, even after kill -9, leaving nothing behind. The
//! switch delivers TCP for the gateway address to the TAP's port; every
//! other gateway service (ARP, ping, DHCP, UDP DNS) is answered by the data
//! plane itself (`crate::services`).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchd_config::{IfName, MacAddr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::{netlink, netns, sys, tap};
use crate::conns::{AcceptErrors, Guard, Limits, Source, Table};
use crate::services::{Counters, Tables, dns};
use crate::switch::NetworkId;

/// The source ports of the gateway stack's own connections (health
/// checks): TCP to the gateway address at one of these is the stack's.
pub const HEALTH_CHECK_PORTS: std::ops::RangeInclusive<u16> = crate::switch::HEALTH_CHECK_PORTS;

/// How long a DNS client may keep a TCP connection open without asking.
const IDLE: Duration = Duration::from_secs(10);
/// Connections served at once per network; past that, the one idle
/// longest is closed to make room (`crate::conns`).
const MAX_CONNECTIONS: usize = 64;
/// Connections served at once per client address, so that one container
/// cannot hold them all.
const MAX_PER_SOURCE: usize = 16;

/// A network's gateway stack: its namespace, and the DNS server tasks,
/// one per address (stopped on drop; the namespace goes when its fd closes).
#[derive(Debug)]
pub struct GatewayStack {
    _netns: OwnedFd,
    tasks: Vec<JoinHandle<()>>,
}

/// The gateway's addresses the stack (or the host side) holds: IPv4
/// (with the subnet's prefix length) and IPv6 (in the network's /64), one
/// or both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StackAddresses {
    pub v4: Option<(Ipv4Addr, u8)>,
    pub v6: Option<Ipv6Addr>,
}

impl GatewayStack {
    /// The namespace's path, for a thread to enter (`netns::run_in`).
    pub fn netns_path(&self) -> String {
        format!("/proc/self/fd/{}", self._netns.as_raw_fd())
    }
}

/// A TCP connection to `addr` from the gateway stack whose namespace is at
/// `netns` ([`GatewayStack::netns_path`]): through the data path, as a
/// container would connect. The socket is made in the namespace, then
/// connected on the caller's runtime.
pub async fn connect_from(netns: &str, addr: SocketAddr) -> io::Result<TcpStream> {
    let netns = netns.to_owned();
    let socket = tokio::task::spawn_blocking(move || {
        netns::run_in(&netns, || {
            let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
            socket.set_nonblocking(true)?;
            io::Result::Ok(std::net::TcpStream::from(socket))
        })
        .map_err(io::Error::other)?
    })
    .await
    .map_err(io::Error::other)??;
    tokio::net::TcpSocket::from_std_stream(socket).connect(addr).await
}

impl Drop for GatewayStack {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Where the DNS task reads the current services snapshot.
pub type TablesSource = Arc<dyn Fn() -> (Arc<Tables>, Arc<Counters>) + Send + Sync>;

/// Creates the namespace and its TAP (`gw0`: the gateway's MAC, addresses and
/// MTU), starts a DNS over TCP server per address on `runtime`, and returns the stack
/// and the TAP's fd for the data plane.
pub fn start(
    network: NetworkId,
    addresses: StackAddresses,
    mac: MacAddr,
    mtu: u32,
    tables: TablesSource,
    runtime: &tokio::runtime::Handle,
) -> io::Result<(GatewayStack, OwnedFd)> {
    let netns = std::thread::spawn(|| {
        // SAFETY: unshare affects only this short-lived thread.
        sys::cvt(unsafe { libc::unshare(libc::CLONE_NEWNET) })?;
        sys::open("/proc/thread-self/ns/net", libc::O_RDONLY)
    })
    .join()
    .map_err(|_| io::Error::other("namespace thread panicked"))??;
    let path = format!("/proc/self/fd/{}", netns.as_raw_fd());
    let (tap, listeners) = netns::run_in(&path, || -> io::Result<_> {
        let name = IfName::new("gw0").expect("a valid name");
        // One queue: it carries DNS over TCP only.
        let (mut fds, _) = tap::attach(&name, 1).map_err(io::Error::other)?;
        let fd = fds.swap_remove(0);
        // Not persistent: the TAP goes when switchd does.
        tap::set_persist(&fd, false)?;
        // Quiet: IPv6 only for the gateway's address, which the switch
        // answers neighbour discovery for (no autoconfiguration, router
        // solicitations or duplicate address detection); none at all
        // without one.
        let sysctl = |key: &str, value: &str| {
            // gw0 exists already: its own settings, not the defaults', count.
            for on in ["all", "default", "gw0"] {
                let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{on}/{key}"), value);
            }
        };
        match addresses.v6 {
            None => sysctl("disable_ipv6", "1"),
            Some(_) => {
                for key in ["accept_ra", "autoconf", "router_solicitations", "accept_dad", "dad_transmits"] {
                    sysctl(key, "0");
                }
            }
        }
        // Health checks leave from ports the host's own connections do not
        // use (Linux's default ephemeral ports end at 60999), so that the
        // switch gives their answers to this stack, not to the host side.
        let (first, last) = (HEALTH_CHECK_PORTS.start(), HEALTH_CHECK_PORTS.end());
        std::fs::write("/proc/sys/net/ipv4/ip_local_port_range", format!("{first} {last}"))?;
        netlink::set_up("lo")?;
        netlink::configure(&netlink::LinkSetup {
            name: name.to_string(),
            rename: None,
            mac: mac.0,
            mtu,
            address: addresses.v4.map(|(ip, len)| (ip.into(), len)),
            address6: addresses.v6.map(|ip| (ip, 64)),
            default_gateway: None,
            routes: Vec::new(),
        })?;
        let v4 = addresses.v4.map(|(ip, _)| IpAddr::V4(ip));
        let v6 = addresses.v6.map(IpAddr::V6);
        let listeners = [v4, v6].into_iter().flatten().map(|ip| {
            let listener = std::net::TcpListener::bind(SocketAddr::from((ip, 53)))?;
            listener.set_nonblocking(true)?;
            Ok(listener)
        });
        Ok((fd, listeners.collect::<io::Result<Vec<_>>>()?))
    })
    .map_err(io::Error::other)??;
    let _entered = runtime.enter();
    let mut tasks = Vec::new();
    for listener in listeners {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        tasks.push(runtime.spawn(serve_dns(listener, network, tables.clone())));
    }
    Ok((GatewayStack { _netns: netns, tasks }, tap))
}

/// Sends `frame` (Ethernet, its destination MAC first) out of the gateway
/// stack's interface in `netns` ([`GatewayStack::netns_path`]): into the
/// switch, from the gateway (its unsolicited router advertisements).
pub fn send_frame(netns: &str, frame: &[u8]) -> io::Result<()> {
    if frame.len() < 14 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not an Ethernet frame"));
    }
    netns::run_in(netns, || -> io::Result<()> {
        let index = sys::if_index("gw0").ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no gw0"))?;
        // Protocol 0: this socket only sends.
        let fd = sys::socket(libc::AF_PACKET, libc::SOCK_RAW, 0)?;
        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = index as i32;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: `frame` is valid for its length, `addr` is a valid
        // sockaddr_ll and its size is passed with it.
        let sent = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const addr).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        sys::cvt(sent).map(|_| ())
    })
    .map_err(io::Error::other)?
}

/// A TAP `name` in switchd's own namespace (the host's) with this MAC,
/// addresses and MTU, up: the host side of a network with host access (not
/// persistent: it goes with switchd), or a Docker container's interface
/// before dockerd moves it (persistent: it outlives a restart of switchd,
/// which then reopens it inside the container). With an IPv6 address it
/// takes no router advertisements (the gateway it stands for sends them).
pub fn host_tap(
    name: &IfName,
    addresses: StackAddresses,
    mac: MacAddr,
    mtu: u32,
    persist: bool,
    queues: usize,
) -> io::Result<Vec<OwnedFd>> {
    let (fds, _) = tap::attach(name, queues).map_err(io::Error::other)?;
    tap::set_persist(&fds[0], persist)?;
    if addresses.v6.is_some() {
        // Nor duplicate address detection: its link-local address is the
        // gateway's, which the switch answers for.
        for key in ["accept_ra", "accept_dad", "router_solicitations"] {
            std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/{key}"), "0")?;
        }
    }
    netlink::configure(&netlink::LinkSetup {
        name: name.to_string(),
        rename: None,
        mac: mac.0,
        mtu,
        address: addresses.v4.map(|(ip, len)| (ip.into(), len)),
        address6: addresses.v6.map(|ip| (ip, 64)),
        default_gateway: None,
        routes: Vec::new(),
    })?;
    Ok(fds)
}

async fn serve_dns(listener: tokio::net::TcpListener, network: NetworkId, tables: TablesSource) {
    let limits = Limits { max: MAX_CONNECTIONS, per_source: MAX_PER_SOURCE, idle_timeout: None };
    let table =
        Table::new(format!("DNS over TCP on {}", listener.local_addr().map_or("?".into(), |a| a.to_string())), limits);
    let mut errors = AcceptErrors::new("DNS over TCP: accept");
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                errors.pause(&e).await;
                continue;
            }
        };
        let Ok(admitted) = table.admit(Instant::now(), Source::of(peer.ip())) else { continue };
        let tables = tables.clone();
        tokio::spawn(async move {
            let guard = admitted.guard;
            tokio::select! {
                _ = tokio::time::timeout(IDLE * 6, serve_connection(stream, peer, network, tables, &guard)) => {}
                _ = guard.closed() => {}
            }
        });
    }
}

/// Answers length-prefixed queries (RFC 7766) until the client is done.
async fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    network: NetworkId,
    tables: TablesSource,
    guard: &Guard,
) -> io::Result<()> {
    let mut query = vec![0u8; usize::from(u16::MAX)];
    loop {
        let len = match tokio::time::timeout(IDLE, stream.read_u16()).await {
            Ok(Ok(len)) => usize::from(len),
            _ => return Ok(()),
        };
        stream.read_exact(&mut query[..len]).await?;
        guard.touch(Instant::now());
        let (tables, counters) = tables();
        // The asker is the local endpoint with the peer's address on this network.
        let asker = tables.port_with(network, peer.ip());
        let dirs = asker.map(|port| tables.directories(port)).unwrap_or_default();
        let (outcome, reply) = dns::answer(&query[..len], &dirs, dns::Transport::Tcp);
        counters.count_dns(outcome);
        counters.dns_tcp_queries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Some(reply) = reply else { return Ok(()) };
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&(reply.len() as u16).to_be_bytes());
        framed.extend_from_slice(&reply);
        stream.write_all(&framed).await?;
    }
}
