//! switchd's host.toml: the schema, its validation into typed values, and
//! errors that name the file, line, key and reason.
//!
//! Loading runs in two stages (as firecracker's `vmm_config` does): serde
//! reads the text into the [`raw`] structs, then [`validate`] turns them into
//! [`Config`], checking every rule and collecting every failure. This crate
//! reads files and the hostname; it never touches the network.

#![forbid(unsafe_code)]

mod error;
pub mod raw;
pub mod types;
pub mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::de::DeTable;

use error::Locator;
pub use error::{ConfigError, ConfigErrors, FieldError, KeyPath, Seg};
pub use switchd_crypto::Cipher;
pub use types::{IfName, MacAddr, Mtu, Name, Subnet, Vni};

/// The /64 of a network that asks for IPv6 (`ipv6 = true`) without
/// naming one: a unique local prefix with the VNI in it,
/// `fd5d:67VV:VVVV::/64` (as the gateway's MAC `02:5d:67:VV:VV:VV`), so
/// networks never share one and every host derives the same.
pub fn default_subnet6(vni: u32) -> Subnet {
    let net = ipnet::Ipv6Net::new(
        std::net::Ipv6Addr::new(0xfd5d, 0x6700 | ((vni >> 16) & 0xff) as u16, vni as u16, 0, 0, 0, 0, 0),
        64,
    )
    .expect("64 is a valid prefix length");
    Subnet::new(ipnet::IpNet::V6(net)).expect("a /64 is a subnet")
}

/// A validated host.toml.
#[derive(Debug, Clone)]
pub struct Config {
    pub host: HostConfig,
    pub gossip: Option<GossipConfig>,
    pub docker: Option<DockerConfig>,
    pub metrics: Option<MetricsConfig>,
    pub peers: Vec<PeerConfig>,
    pub networks: Vec<NetworkConfig>,
    /// The key files of networks with their own key (relative paths
    /// resolved from the config file's directory).
    pub network_key_files: BTreeMap<Name, PathBuf>,
    pub routes: Vec<RouteConfig>,
    pub ports: Vec<PortConfig>,
    pub publish: Vec<PublishConfig>,
    pub services: Vec<ServiceConfig>,
    pub policies: Vec<PolicyConfig>,
}

/// What a policy's `select` and `from` name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selector {
    /// Every endpoint (`*`).
    All,
    /// The backends of a service.
    Service(Name),
    /// Endpoints whose name matches: `*` for any run of characters.
    Name(String),
    /// Addresses in a block (for `from`: also what is not an endpoint).
    Cidr(ipnet::IpNet),
    /// `from` only: every address of a network.
    Network(Name),
}

impl Selector {
    /// Whether `name` matches the pattern of a `Name` selector.
    pub fn name_matches(pattern: &str, name: &str) -> bool {
        let parts: Vec<&str> = pattern.split('*').collect();
        let (first, last) = (parts[0], parts[parts.len() - 1]);
        if parts.len() == 1 {
            return pattern.eq_ignore_ascii_case(name);
        }
        let (name_l, first_l, last_l) =
            (name.to_ascii_lowercase(), first.to_ascii_lowercase(), last.to_ascii_lowercase());
        if !name_l.starts_with(&first_l) || !name_l[first_l.len()..].ends_with(&last_l) {
            return false;
        }
        let mut rest = &name_l[first_l.len()..name_l.len() - last_l.len()];
        for middle in &parts[1..parts.len() - 1] {
            let m = middle.to_ascii_lowercase();
            match rest.find(&m) {
                Some(at) => rest = &rest[at + m.len()..],
                None => return false,
            }
        }
        true
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::All => f.write_str("*"),
            Selector::Service(s) => write!(f, "service={s}"),
            Selector::Name(p) => write!(f, "name={p}"),
            Selector::Cidr(c) => write!(f, "cidr={c}"),
            Selector::Network(n) => write!(f, "network={n}"),
        }
    }
}

/// `[[policy]]`: the endpoints `select` names on `network` are isolated:
/// they accept only what some policy's rule allows (from `from`, to
/// `ports`), and the replies of their own connections.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PolicyConfig {
    pub name: Name,
    pub network: Name,
    pub select: Selector,
    pub from: Vec<Selector>,
    /// None: every port.
    pub ports: Vec<ServicePort>,
}

/// `[host]`: this machine's switchd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConfig {
    /// Unique in the cluster; defaults to the hostname.
    pub name: Name,
    /// This host's VTEP address. Without it the host switches locally only.
    pub underlay_ip: Option<IpAddr>,
    pub vxlan_port: u16,
    pub control_socket: PathBuf,
    pub state_dir: PathBuf,
    pub underlay_mtu: Mtu,
    /// How long a learned MAC lives without being seen again.
    pub mac_aging_time: Duration,
    /// How many MACs one port may have learned at once (MAC-flood guard).
    pub mac_limit: u32,
    /// Data-plane threads.
    pub workers: usize,
    /// How long a data-plane worker may keep polling after a batch before
    /// it sleeps (the longest adaptive window; zero: never).
    pub busy_poll: Duration,
    /// Whether a worker writes a batch's frames into local ports through
    /// io_uring, one system call for all (where the kernel allows it),
    /// rather than one `write` each.
    pub io_uring: bool,
    /// Threads beside the workers that help seal and open one flow's
    /// large bursts, so its crypto uses more than one core. None unless
    /// set: they pay only on a host with cores to spare (BENCHMARKS.md).
    pub crypto_helpers: usize,
}

impl HostConfig {
    pub const DEFAULT_CONTROL_SOCKET: &str = "/run/switchd/switchd.sock";
    pub const DEFAULT_STATE_DIR: &str = "/var/lib/switchd";
    pub const DEFAULT_BUSY_POLL_US: u64 = 50;

    /// What VXLAN costs a network's MTU on this host's underlay (sealed:
    /// plus the header and tag of encryption).
    pub fn overlay_overhead(&self, encrypted: bool) -> u32 {
        let vxlan = match self.underlay_ip {
            Some(ip) if ip.is_ipv6() => validate::VXLAN_OVERHEAD_V6,
            _ => validate::VXLAN_OVERHEAD,
        };
        vxlan + if encrypted { validate::SEALED_OVERHEAD } else { 0 }
    }
}

/// `[gossip]`: membership and peer tables by gossip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GossipConfig {
    pub port: u16,
    /// Members to contact first (any live ones; this host may be among them).
    pub seeds: Vec<SocketAddr>,
    /// The cluster key: 32 random bytes as 64 hex characters. Relative to
    /// the config file's directory.
    pub key_file: PathBuf,
    /// How often a gossip round runs.
    pub interval: Duration,
    /// How long a silent host counts as alive: a host killed without a word
    /// leaves every table this long after its last heartbeat.
    pub failure_timeout: Duration,
}

impl GossipConfig {
    pub const DEFAULT_PORT: u16 = 7946;
}

/// `[docker]`: switchd as a Docker network driver (libnetwork's remote
/// driver protocol) on a Unix socket where dockerd finds plugins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerConfig {
    /// `/run/docker/plugins/NAME.sock`: `docker network create -d NAME`.
    pub socket: PathBuf,
    /// dockerd's API, where switchd learns its containers' names (dockerd
    /// does not tell a network driver).
    pub api_socket: PathBuf,
}

/// `[metrics]`: where Prometheus scrapes `/metrics` (and probes `/healthz`,
/// `/readyz`). Off unless set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    pub listen: MetricsListen,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricsListen {
    /// `listen = "127.0.0.1:9477"`.
    Tcp(SocketAddr),
    /// `listen = "unix:/run/switchd/metrics.sock"`.
    Unix(PathBuf),
}

impl std::fmt::Display for MetricsListen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetricsListen::Tcp(addr) => write!(f, "{addr}"),
            MetricsListen::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl DockerConfig {
    pub const DEFAULT_SOCKET: &str = "/run/docker/plugins/switchd.sock";
    pub const DEFAULT_API_SOCKET: &str = "/var/run/docker.sock";

    /// The driver name dockerd knows it by: the socket's file name without `.sock`.
    pub fn driver(&self) -> String {
        self.socket.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
    }
}

/// `[[peer]]`: a remote VTEP (another switchd, or a kernel vxlan device).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    pub underlay_ip: IpAddr,
    /// The networks it carries; `None`: all of them.
    pub vnis: Option<Vec<Vni>>,
    pub vxlan_port: u16,
    /// A label for `switchctl peers` and `fdb`.
    pub name: Option<Name>,
    /// It is another switchd (of this version or later), which finishes
    /// inner TCP/UDP checksums left partial: frames to it skip that pass.
    /// Default false: it may be a kernel vxlan device, which needs them.
    pub switchd: bool,
}

/// `[[network]]`: one isolated L2 segment with its own VNI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkConfig {
    pub name: Name,
    pub vni: Vni,
    pub subnet: Option<Subnet>,
    /// Set whenever `subnet` is: the configured gateway or the subnet's first address.
    pub gateway: Option<IpAddr>,
    pub mtu: Mtu,
    /// Like Docker's `--internal`: endpoints get no default route.
    pub internal: bool,
    /// Set on an encrypted network: frames between hosts travel sealed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
    /// The gateway answers DNS for the network's containers.
    #[serde(default = "yes")]
    pub dns: bool,
    /// The gateway answers DHCP with each endpoint's address.
    #[serde(default = "yes")]
    pub dhcp: bool,
    /// A host-side interface holds the gateway address: the host reaches
    /// the containers, they reach the host, and through its NAT the outside.
    #[serde(default)]
    pub host_access: bool,
    /// Inter-container connectivity: false isolates every endpoint of the
    /// network (as a policy selecting all of them and allowing nothing
    /// would), but for what other policies allow and what the gateway
    /// (switchd's own health checks, published ports) sends.
    #[serde(default = "yes")]
    pub icc: bool,
    /// Dual stack: an IPv6 /64 whose prefix the gateway advertises (RA):
    /// each container's kernel configures its address from it (SLAAC:
    /// the prefix and the MAC's EUI-64), which switchd knows in advance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet6: Option<Subnet>,
    /// Set whenever `subnet6` is: the gateway's IPv6 address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<IpAddr>,
}

fn yes() -> bool {
    true
}

impl NetworkConfig {
    pub fn is_encrypted(&self) -> bool {
        self.encryption.is_some()
    }

    /// The /64 prefix the gateway advertises, with a subnet6.
    pub fn slaac_prefix(&self) -> Option<std::net::Ipv6Addr> {
        match self.subnet6?.net() {
            ipnet::IpNet::V6(v6) => Some(v6.network()),
            ipnet::IpNet::V4(_) => None,
        }
    }

    /// Whether two hosts define the network alike. The cipher is left out:
    /// it is what each sender seals with, every sealed header names it and
    /// every host opens both, so hosts that seal differently still carry
    /// the network together (see [`Encryption`]). Everything else counts,
    /// whether it is encrypted and with which key ring included.
    pub fn same_definition(&self, other: &NetworkConfig) -> bool {
        let without_cipher = |n: &NetworkConfig| {
            let mut n = n.clone();
            if let Some(e) = &mut n.encryption {
                (e.cipher, e.default_cipher) = (Cipher::ChaCha20Poly1305, false);
            }
            n
        };
        without_cipher(self) == without_cipher(other)
    }

    /// The network as this host carries it: a default cipher becomes this
    /// CPU's ([`Cipher::preferred`]), a named one stays. For a definition
    /// from another host (gossip) or another boot (state files).
    pub fn with_this_hosts_cipher(mut self) -> NetworkConfig {
        if let Some(e) = &mut self.encryption
            && e.default_cipher
        {
            e.cipher = Cipher::preferred();
        }
        self
    }
}

/// How an encrypted network seals its traffic.
///
/// The cipher is each host's own: a host seals with `cipher`, names it in
/// every sealed header, and opens both ciphers, so a network whose hosts
/// seal differently works both ways. Named in the config (`cipher =`,
/// `--cipher`), the cipher is used on every host carrying the network
/// (others adopt it with the definition); not named (`default_cipher`),
/// each host seals with the faster one on its own CPU: AES-256-GCM with AES
/// instructions, ChaCha20-Poly1305 without.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encryption {
    /// What this host seals with; a receiver opens either cipher.
    #[serde(with = "cipher_name")]
    pub cipher: Cipher,
    /// No cipher was named: `cipher` is this host's default, and a host
    /// adopting the network picks its own. Absent in older state files
    /// and gossip, whose cipher is then kept as if named.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub default_cipher: bool,
    /// Where its keys come from.
    pub key: KeySource,
}

/// Which key ring an encrypted network's keys derive from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeySource {
    /// The cluster key (`[gossip] key_file`) and its rotations.
    Cluster,
    /// The network's own `key_file` and its rotations: hosts without it
    /// cannot carry the network.
    Own,
}

/// Ciphers by name in host.toml, state files and gossip.
pub mod cipher_name {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::Cipher;

    pub fn serialize<S: Serializer>(c: &Cipher, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(c.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Cipher, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// How a port reaches its container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortKind {
    /// A TAP owned by switchd, living in the container's netns.
    Tap,
    /// A host interface (one end of a veth pair) switched through AF_PACKET.
    Veth,
    /// A host NIC switched through AF_PACKET, bridging a physical LAN.
    Uplink,
}

impl PortKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PortKind::Tap => "tap",
            PortKind::Veth => "veth",
            PortKind::Uplink => "uplink",
        }
    }
}

/// `[[port]]`: an attachment made at start, the same as `network connect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortConfig {
    pub network: Name,
    /// A name under /run/netns or a path such as /proc/1234/ns/net.
    pub netns: Option<String>,
    pub name: Option<Name>,
    pub ifname: Option<IfName>,
    pub ip: Option<IpAddr>,
    /// Its IPv6 address, when not the SLAAC one of its MAC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<std::net::Ipv6Addr>,
    pub mac: Option<MacAddr>,
    pub kind: PortKind,
    /// veth and uplink: the host-side interface switchd switches.
    pub host_ifname: Option<IfName>,
    /// Leave the interface unconfigured (up, with its MAC and MTU): the
    /// container takes its address from the gateway's DHCP server.
    #[serde(default)]
    pub dhcp: bool,
    /// The services the container is a backend of.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<Name>,
    /// The runtime's id of the attachment (see `RawPort::attachment`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<String>,
}

/// How a service's name resolves (Docker's `--endpoint-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceMode {
    /// To a virtual IP, balanced over the healthy backends in the data path.
    Vip,
    /// To every healthy backend, in rotating order.
    Dnsrr,
}

impl ServiceMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceMode::Vip => "vip",
            ServiceMode::Dnsrr => "dnsrr",
        }
    }
}

/// A port of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ServicePort {
    pub port: u16,
    pub protocol: Protocol,
}

impl fmt::Display for ServicePort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.port, self.protocol.as_str())
    }
}

/// What a health check asks of a backend.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Probe {
    /// A TCP connection to the service's first TCP port is accepted.
    Tcp,
    /// `GET path` on it answers 2xx or 3xx.
    Http { path: String },
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::Tcp => f.write_str("tcp"),
            Probe::Http { path } => write!(f, "http:{path}"),
        }
    }
}

/// A service's health check, run by each backend's own host.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HealthCheck {
    pub probe: Probe,
    /// Between checks; a check that takes longer has failed.
    #[serde(with = "millis")]
    pub interval: Duration,
    /// Failures in a row that take a backend out (and successes that bring it back).
    pub threshold: u32,
}

impl HealthCheck {
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);
    pub const DEFAULT_THRESHOLD: u32 = 2;
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// `[[service]]`: a name on a network that its backends (containers that
/// join it) answer for, through a VIP or DNS round robin.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ServiceConfig {
    pub network: Name,
    pub name: Name,
    pub mode: ServiceMode,
    /// In `vip` mode: the address; `None` until IPAM gives one (or on a
    /// network without an IPv4 subnet).
    pub vip: Option<IpAddr>,
    /// In `vip` mode on a network with a subnet6: its IPv6 VIP; `None`
    /// until one is picked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vip6: Option<std::net::Ipv6Addr>,
    /// In `vip` mode, the ports balanced (none: every port, as Docker's
    /// VIPs do); in `dnsrr` mode, the port health checks use.
    pub ports: Vec<ServicePort>,
    pub health: Option<HealthCheck>,
    /// The routing mesh: host ports open on every host that carries the
    /// network, to the VIP (`publish = ["8080:80/tcp"]`, `switchctl
    /// publish --service`).
    #[serde(default)]
    pub publish: Vec<MeshPort>,
}

impl ServiceConfig {
    /// Whether `mesh` may be added to the routing mesh's ports: through a
    /// VIP, to a port the service balances, on a host port it has not yet.
    pub fn may_publish(&self, mesh: MeshPort) -> Result<(), String> {
        let to = ServicePort { port: mesh.port, protocol: mesh.protocol };
        if self.mode != ServiceMode::Vip {
            Err(format!("the routing mesh leads to a VIP; service {:?} is mode dnsrr", self.name.as_str()))
        } else if !self.ports.is_empty() && !self.ports.contains(&to) {
            let ports: Vec<String> = self.ports.iter().map(ToString::to_string).collect();
            Err(format!("service {:?} does not balance {to} (its ports: {})", self.name.as_str(), ports.join(", ")))
        } else if self.publish.iter().any(|p| (p.host_port, p.protocol) == (mesh.host_port, mesh.protocol)) {
            Err(format!(
                "{}/{} is already published for service {:?}",
                mesh.host_port,
                mesh.protocol.as_str(),
                self.name.as_str()
            ))
        } else {
            Ok(())
        }
    }
}

/// A port of the routing mesh: `host_port` on every host that carries a
/// service's network leads to the service's VIP at `port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MeshPort {
    pub host_port: u16,
    pub port: u16,
    pub protocol: Protocol,
}

impl fmt::Display for MeshPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}/{}", self.host_port, self.port, self.protocol.as_str())
    }
}

/// `[[route]]`: two networks whose containers may reach each other through
/// their gateways. Routing between networks is denied unless listed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RouteConfig {
    pub networks: [Name; 2],
}

impl RouteConfig {
    /// The same pair in a canonical order (routes have no direction).
    pub fn new(a: Name, b: Name) -> Self {
        if a <= b { RouteConfig { networks: [a, b] } } else { RouteConfig { networks: [b, a] } }
    }

    /// The other end, if `net` is one end.
    pub fn peer_of(&self, net: &Name) -> Option<&Name> {
        match &self.networks {
            [a, b] if a == net => Some(b),
            [a, b] if b == net => Some(a),
            _ => None,
        }
    }
}

/// TCP or UDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// `[[publish]]`: a host port forwarded to a container's port, like
/// `docker run -p HOST_PORT:PORT`, with bounds on what clients may hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "SavedPublish")]
pub struct PublishConfig {
    pub network: Name,
    /// The endpoint's container name.
    pub container: Name,
    pub host_ip: IpAddr,
    pub host_port: u16,
    pub port: u16,
    pub protocol: Protocol,
    /// How long a relay (a TCP connection, a UDP client) may stay silent
    /// both ways before it is closed; `None`: never (TCP only).
    #[serde(serialize_with = "secs_or_never")]
    pub idle_timeout: Option<Duration>,
    /// Relays held at once; when full, the one idle longest is closed.
    pub max_connections: u32,
    /// Relays held at once for one client address (IPv6: one /64).
    pub max_per_source: u32,
}

impl PublishConfig {
    /// RFC 5382 (NAT behaviour for TCP): an established connection may not
    /// be dropped as idle before 2 h 4 min, so that TCP keepalives (every
    /// 2 h by default) keep it. Docker's proxy never closes one.
    pub const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(7440);
    /// Linux conntrack's `nf_conntrack_udp_timeout`.
    pub const DEFAULT_UDP_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
    pub const DEFAULT_MAX_CONNECTIONS: u32 = 1024;
    /// A quarter of the default table: no one client takes it all.
    pub const DEFAULT_MAX_PER_SOURCE: u32 = 256;

    pub fn default_idle_timeout(protocol: Protocol) -> Duration {
        match protocol {
            Protocol::Tcp => Self::DEFAULT_TCP_IDLE_TIMEOUT,
            Protocol::Udp => Self::DEFAULT_UDP_IDLE_TIMEOUT,
        }
    }
}

/// A publication as saved in `state.json`: saved before the bounds
/// existed, it gets their defaults.
#[derive(Deserialize)]
struct SavedPublish {
    network: Name,
    container: Name,
    host_ip: IpAddr,
    host_port: u16,
    port: u16,
    protocol: Protocol,
    /// Seconds; 0: never.
    #[serde(default)]
    idle_timeout: Option<u64>,
    #[serde(default)]
    max_connections: Option<u32>,
    #[serde(default)]
    max_per_source: Option<u32>,
}

impl From<SavedPublish> for PublishConfig {
    fn from(s: SavedPublish) -> Self {
        let max_connections = s.max_connections.unwrap_or(PublishConfig::DEFAULT_MAX_CONNECTIONS).max(1);
        PublishConfig {
            idle_timeout: match s.idle_timeout {
                None => Some(PublishConfig::default_idle_timeout(s.protocol)),
                Some(0) => None,
                Some(secs) => Some(Duration::from_secs(secs)),
            },
            max_connections,
            max_per_source: s.max_per_source.unwrap_or(PublishConfig::DEFAULT_MAX_PER_SOURCE).clamp(1, max_connections),
            network: s.network,
            container: s.container,
            host_ip: s.host_ip,
            host_port: s.host_port,
            port: s.port,
            protocol: s.protocol,
        }
    }
}

/// An optional duration as whole seconds, 0 for none (as `SavedPublish` reads it).
fn secs_or_never<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.map_or(0, |d| d.as_secs()))
}

impl PortConfig {
    /// The container's name: as given, else derived from the netns (its name,
    /// or `pid-1234` for /proc/1234/ns/net), else the host interface.
    pub fn display_name(&self) -> Option<String> {
        if let Some(name) = &self.name {
            return Some(name.to_string());
        }
        if let Some(ns) = &self.netns {
            return Some(netns_display_name(ns));
        }
        self.host_ifname.as_ref().map(|h| h.to_string())
    }
}

/// `web` for `web` or `/run/netns/web`, `pid-1234` for `/proc/1234/ns/net`.
pub fn netns_display_name(netns: &str) -> String {
    let parts: Vec<&str> = netns.trim_end_matches('/').split('/').collect();
    match parts.as_slice() {
        ["", "proc", pid, "ns", "net"] => format!("pid-{pid}"),
        [.., last] => (*last).to_owned(),
        [] => netns.to_owned(),
    }
}

/// Why a config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read at all.
    #[error("{}: cannot read: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    /// The file was read and has errors, each listed.
    #[error("{0}")]
    Invalid(ConfigErrors),
}

impl Config {
    /// The largest config file read: thousands of ports fit, and a path
    /// like `/dev/zero` ends in an error rather than out of memory.
    pub const MAX_FILE_LEN: u64 = 16 << 20;

    /// Reads and validates the file at `path` (at most [`Self::MAX_FILE_LEN`]
    /// bytes; it may be a pipe, as `--config <(...)` gives).
    pub fn load(path: &Path) -> Result<Config, LoadError> {
        use std::io::Read;
        let failed = |source| LoadError::Read { path: path.to_owned(), source };
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(Self::MAX_FILE_LEN + 1).read_to_end(&mut bytes))
            .map_err(failed)?;
        if bytes.len() as u64 > Self::MAX_FILE_LEN {
            let why = format!("larger than {} MiB", Self::MAX_FILE_LEN >> 20);
            return Err(failed(std::io::Error::new(std::io::ErrorKind::InvalidData, why)));
        }
        let text = String::from_utf8(bytes)
            .map_err(|_| failed(std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text")))?;
        Config::parse(&text, path).map_err(LoadError::Invalid)
    }

    /// Validates config text; `file` names it in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigErrors> {
        let fail = |errors| ConfigErrors { file: file.to_owned(), errors };
        let doc = match DeTable::parse(text) {
            Ok(doc) => doc,
            Err(e) => {
                let at = Locator { text, root: None };
                return Err(fail(vec![at.at_span(e.span(), String::new(), e.message().trim().to_owned())]));
            }
        };
        let at = Locator { text, root: Some(doc.get_ref()) };

        let mut errors = Vec::new();
        let mut unknown = Vec::new();
        let mut track = serde_path_to_error::Track::new();
        let raw: Result<raw::RawFile, _> = toml::de::Deserializer::parse(text).and_then(|de| {
            let de = serde_path_to_error::Deserializer::new(de, &mut track);
            serde_ignored::deserialize(de, |path| unknown.push(ignored_path(&path)))
        });
        for path in &unknown {
            errors.push(at.at_path(path, "unknown key".to_owned()));
        }
        match raw {
            Err(e) => {
                let path = tracked_path(&track.path());
                errors.push(at.at_span(e.span(), path.to_string(), e.message().trim().to_owned()));
            }
            Ok(raw) if unknown.is_empty() => match validate::file(&raw, file.parent().unwrap_or(Path::new("."))) {
                Ok(config) => return Ok(config),
                Err(field_errors) => errors.extend(field_errors.into_iter().map(|e| at.at_path(&e.path, e.reason))),
            },
            Ok(_) => {}
        }
        errors.sort_by_key(|e| (e.line, e.column));
        Err(fail(errors))
    }

    pub fn network(&self, name: &str) -> Option<&NetworkConfig> {
        self.networks.iter().find(|n| n.name.as_str() == name)
    }

    /// Things that work but probably are not what was meant.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        for r in &self.routes {
            for name in &r.networks {
                if !self.networks.iter().any(|n| n.name == *name) {
                    warnings.push(format!(
                        "route {} <-> {}: no network {:?} in this file; it routes once the network exists (created at run time or in the cluster)",
                        r.networks[0].as_str(),
                        r.networks[1].as_str(),
                        name.as_str()
                    ));
                }
            }
        }
        for n in &self.networks {
            let overhead = self.host.overlay_overhead(n.is_encrypted());
            if n.mtu.get() + overhead > self.host.underlay_mtu.get() {
                let what = if n.is_encrypted() { "sealed VXLAN" } else { "VXLAN" };
                warnings.push(format!(
                    "network {:?}: mtu {} plus {overhead} bytes of {what} exceeds underlay_mtu {}; frames between hosts will be fragmented or dropped",
                    n.name.as_str(),
                    n.mtu,
                    self.host.underlay_mtu
                ));
            }
            if let Some(e) = n.encryption
                && !e.cipher.is_accelerated()
            {
                warnings.push(format!(
                    "network {:?}: this CPU has no AES instructions; {} will be slow here (chacha20-poly1305 is not)",
                    n.name.as_str(),
                    e.cipher
                ));
            }
        }
        warnings
    }
}

fn ignored_path(path: &serde_ignored::Path<'_>) -> KeyPath {
    use serde_ignored::Path as P;
    match path {
        P::Root => KeyPath::root(),
        P::Seq { parent, index } => ignored_path(parent).index(*index),
        P::Map { parent, key } => ignored_path(parent).key(key),
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => ignored_path(parent),
    }
}

fn tracked_path(path: &serde_path_to_error::Path) -> KeyPath {
    use serde_path_to_error::Segment;
    KeyPath(
        path.iter()
            .filter_map(|seg| match seg {
                Segment::Seq { index } => Some(Seg::Index(*index)),
                Segment::Map { key } => Some(Seg::Key(key.clone())),
                Segment::Enum { .. } | Segment::Unknown => None,
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests;
