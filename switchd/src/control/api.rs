//! The control API: one JSON request per line on the control socket, one
//! JSON reply per line back. `switchctl --json` prints a reply's `result`
//! as it came, so these types are also the format scripts parse: keys are
//! snake_case and named as in `switchctl`'s table headers.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr};

use serde::{Deserialize, Serialize};
use switchd_config::raw::{RawNetwork, RawPolicy, RawPort, RawPublish, RawRoute, RawService};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Request {
    Status,
    NetworkLs,
    NetworkInspect {
        name: String,
        /// Endpoints by (host, name), from after `page.after` (`NAME@HOST`).
        #[serde(flatten)]
        page: Page,
    },
    NetworkCreate {
        network: RawNetwork,
    },
    NetworkRm {
        names: Vec<String>,
    },
    NetworkPrune,
    NetworkConnect {
        port: RawPort,
    },
    NetworkDisconnect {
        network: String,
        endpoint: String,
    },
    /// Detaches the endpoints of `network` on this host that a container
    /// runtime attached (they have an attachment id) and that are not in
    /// `keep`: CNI's `GC`.
    NetworkGc {
        network: String,
        keep: Vec<String>,
    },
    Trace {
        trace: TraceRequest,
    },
    /// Streams the real decisions for the frames that match, as they cross
    /// (see `control::server`): a reply line, then a [`LiveLine`] per line.
    TraceLive {
        live: LiveRequest,
    },
    /// host.toml read again; its changes applied.
    Reload,
    /// Streams a pcap of an endpoint's frames, both ways, of every port of
    /// a network (pcapng), or of a VTEP's datagrams (see
    /// `control::server`): a reply line, then length-prefixed records (the
    /// file's header first), a zero length, and a [`CaptureEnd`] line.
    Capture {
        /// An endpoint on this host, or a network; empty with `vtep`.
        #[serde(default)]
        endpoint: String,
        /// The endpoint's network, when it is on several.
        #[serde(default)]
        network: Option<String>,
        /// Instead: the underlay datagrams to and from this host (name or
        /// underlay address).
        #[serde(default)]
        vtep: Option<String>,
        /// With `vtep`: sealed datagrams shown opened, as plain VXLAN.
        #[serde(default)]
        decrypt: bool,
        #[serde(default)]
        count: Option<u64>,
        #[serde(default)]
        seconds: Option<f64>,
    },
    Fdb {
        network: Option<String>,
        /// Entries by (network, MAC), from after `page.after`
        /// (`NETWORK/MAC`, or `MAC` with `network`).
        #[serde(flatten)]
        page: Page,
    },
    Stats,
    Peers,
    /// What `network connect` would do, without doing it (for `script attach`).
    PlanAttach {
        port: RawPort,
    },
    KeyLs,
    /// Adds the key in `file` (an absolute path the daemon reads) to the
    /// cluster's ring, or to `network`'s own.
    KeyAdd {
        file: std::path::PathBuf,
        network: Option<String>,
    },
    KeyUse {
        id: String,
        force: bool,
    },
    KeyRm {
        id: String,
        force: bool,
    },
    RouteLs,
    RouteAdd {
        route: RawRoute,
    },
    RouteRm {
        route: RawRoute,
    },
    PublishLs,
    /// `publish --service NAME HOSTPORT:PORT[/PROTO]`: the routing mesh.
    ServicePublish {
        name: String,
        network: Option<String>,
        port: String,
    },
    PublishAdd {
        publish: RawPublish,
    },
    PublishRm {
        host_port: u16,
        protocol: String,
    },
    ServiceLs,
    ServiceInspect {
        name: String,
        network: Option<String>,
    },
    ServiceCreate {
        service: RawService,
    },
    ServiceRm {
        name: String,
        network: Option<String>,
    },
    PolicyLs,
    PolicyAdd {
        policy: RawPolicy,
    },
    PolicyRm {
        name: String,
    },
}

/// A reply: `{"result": ...}` or `{"error": "..."}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Result(serde_json::Value),
    Error(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub host: String,
    pub version: String,
    pub uptime_secs: u64,
    pub networks: usize,
    pub ports: usize,
    pub peers_alive: usize,
    /// This boot's data-plane session id (new at every start).
    pub session: Option<String>,
    /// Networks the cluster defines that this host does not carry, and why.
    #[serde(default)]
    pub refused_networks: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkInfo {
    pub name: String,
    pub vni: u32,
    pub subnet: Option<String>,
    pub gateway: Option<IpAddr>,
    /// Dual stack: the /64 the gateway advertises, and its IPv6 address.
    #[serde(default)]
    pub subnet6: Option<String>,
    #[serde(default)]
    pub gateway6: Option<IpAddr>,
    pub mtu: u32,
    pub encrypted: bool,
    /// The cipher this host seals with, when encrypted.
    pub cipher: Option<String>,
    /// No cipher was named: `cipher` is the faster one on this host's CPU.
    #[serde(default)]
    pub default_cipher: bool,
    /// What each host carrying it seals with, this one included (others by
    /// gossip), when encrypted: every host opens both ciphers.
    #[serde(default)]
    pub ciphers: BTreeMap<String, String>,
    /// Whose key ring: "cluster", or the network's own name.
    pub key: Option<String>,
    pub internal: bool,
    /// The gateway answers DNS / DHCP.
    #[serde(default)]
    pub dns: bool,
    #[serde(default)]
    pub dhcp: bool,
    /// The host holds the gateway address on `sdgVNI`.
    #[serde(default)]
    pub host_access: bool,
    /// The networks it routes to (`[[route]]`).
    #[serde(default)]
    pub routes: Vec<String>,
    /// Endpoints attached on this host.
    pub ports: usize,
    /// Hosts with endpoints on it, this one included (by gossip).
    pub hosts: Vec<String>,
    /// "config" (from host.toml) or "runtime" (`network create`).
    pub origin: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkDetail {
    #[serde(flatten)]
    pub network: NetworkInfo,
    pub endpoints: Vec<EndpointInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndpointInfo {
    pub name: String,
    pub network: String,
    pub ip: Option<IpAddr>,
    /// On a dual-stack network: the SLAAC address its MAC makes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<Ipv6Addr>,
    pub mac: Option<String>,
    pub host: String,
    pub kind: String,
    pub netns: Option<String>,
    /// The interface inside the container (tap and created veth ports).
    pub ifname: Option<String>,
    /// The host-side interface (veth and uplink ports).
    pub host_ifname: Option<String>,
}

/// Which rows of a long answer to send: those after the row whose key is
/// `after`, at most `limit` of them. The default is every row. A host with
/// 10,000 remote endpoints answers a page without building the others.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

impl Page {
    /// How many rows at most (every row without a limit).
    pub fn limit(&self) -> usize {
        self.limit.unwrap_or(usize::MAX)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FdbEntry {
    pub mac: String,
    pub network: String,
    /// A local port ("web:eth0"), or a remote host and its VTEP
    /// ("host-b 198.18.0.2", or the VTEP alone when the host has no name).
    #[serde(rename = "where")]
    pub location: String,
    /// The endpoint (container) name of a local port; "-" for remote entries.
    pub endpoint: String,
    /// For remote entries: the host, if named, and its VTEP address.
    pub host: Option<String>,
    pub vtep: Option<String>,
    /// "learned" (and later "static" and "gossip").
    #[serde(rename = "type")]
    pub kind: String,
    pub age_secs: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stats {
    pub ports: Vec<PortStats>,
    pub networks: Vec<NetworkStats>,
    /// Per remote VTEP: datagrams in (rx) and out (tx).
    pub vteps: Vec<VtepStats>,
    /// Datagrams dropped before any VTEP was known (unknown sources).
    pub underlay_drops: BTreeMap<String, u64>,
    /// Gossip traffic, and what was refused; absent without `[gossip]`.
    pub gossip: Option<GossipStatsInfo>,
    /// Encrypted traffic; absent without an underlay.
    pub crypto: Option<CryptoStats>,
    /// What the gateways did (echo replies, DHCP and DNS answers, ICMP
    /// errors, refusals), by counter; zeros left out.
    #[serde(default)]
    pub services: BTreeMap<String, u64>,
    /// Each data-plane worker's share of the work.
    #[serde(default)]
    pub workers: Vec<WorkerStats>,
    /// Conversations between endpoints, estimated from sampled frames
    /// (one in `dataplane::flows::SAMPLE_EVERY`), at most
    /// `dataplane::flows::MAX_PAIRS`.
    #[serde(default)]
    pub conversations: Vec<Conversation>,
    /// Conversations replaced in that table for want of room.
    #[serde(default)]
    pub conversations_replaced: u64,
    /// Network policy: new flows allowed, frames denied, table evictions.
    #[serde(default)]
    pub policy: crate::switch::policy::PolicyCounters,
}

/// Two endpoints (by name where known, else MAC) and what they moved
/// between them, each way, estimated.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Conversation {
    pub a: String,
    pub b: String,
    pub a_to_b_frames: u64,
    pub a_to_b_bytes: u64,
    pub b_to_a_frames: u64,
    pub b_to_a_bytes: u64,
}

/// `switchctl top`: endpoints and conversations, busiest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Top {
    pub endpoints: Vec<EndpointRate>,
    pub conversations: Vec<ConversationRate>,
}

/// A conversation's rates over an interval (estimated from samples).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ConversationRate {
    pub a: String,
    pub b: String,
    /// Packets and bits per second, a to b and b to a.
    pub a_to_b_pps: f64,
    pub a_to_b_bps: f64,
    pub b_to_a_pps: f64,
    pub b_to_a_bps: f64,
}

/// What one data-plane worker did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct WorkerStats {
    pub worker: usize,
    /// False once the worker stopped (an epoll failure or a bug, logged):
    /// its queues and socket are read by no one.
    pub running: bool,
    /// Frames read from ports (each TAP has a queue per worker).
    pub port_frames: u64,
    /// Datagrams read from the underlay (its receive socket).
    pub underlay_datagrams: u64,
    /// Batches handled.
    pub batches: u64,
    /// Batches that arrived while it was busy polling, and polling windows
    /// that passed empty (see `busy_poll_us`).
    pub poll_hits: u64,
    pub poll_misses: u64,
    /// News of learned MACs from other workers it had no room for.
    pub dropped_news: u64,
    /// CPU time its thread used (polling included), in seconds.
    #[serde(default)]
    pub busy_seconds: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CryptoStats {
    /// This boot's session id.
    pub session: String,
    /// Datagrams sealed and sent (before replication to several hosts).
    pub sealed: u64,
    /// Datagrams opened (authentic, fresh).
    pub opened: u64,
    /// Peers' sessions held, one replay window each.
    pub sessions: u64,
    /// Datagrams sealed or opened by a thread other than their worker's
    /// (a crypto helper, or a worker free meanwhile).
    #[serde(default)]
    pub helped: u64,
}

/// One key of a ring, for `switchctl key ls`.
/// One endpoint's rates over an interval, for `switchctl top`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct EndpointRate {
    pub endpoint: String,
    pub network: String,
    pub port: String,
    /// From the container (into the switch) and to it, per second.
    pub rx_pps: f64,
    pub tx_pps: f64,
    pub rx_bps: f64,
    pub tx_bps: f64,
    pub drops_per_sec: f64,
}

/// How a capture ended: frames written, and frames it could not keep
/// (the reader fell behind; the data path never waits).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CaptureEnd {
    pub frames: u64,
    pub lost: u64,
}

/// What a reload did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReloadReport {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Changes left for a restart (read only at start).
    pub needs_restart: Vec<String>,
    /// Changes that could not be made (the rest were).
    pub errors: Vec<String>,
}

/// `switchctl trace`: a frame a container would send, to trace.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TraceRequest {
    pub network: String,
    /// The sending container (an endpoint of `network` on this host);
    /// empty with `from_vtep`.
    #[serde(default)]
    pub from: String,
    /// Instead: a VXLAN datagram arriving from this VTEP address (the
    /// network's VNI, or `vni`).
    #[serde(default)]
    pub from_vtep: Option<IpAddr>,
    #[serde(default)]
    pub vni: Option<u32>,
    /// An IPv4 address, a container's name, or a MAC.
    pub to: String,
    /// tcp, udp or icmp (default).
    pub proto: Option<String>,
    pub dport: Option<u16>,
    /// The IPv4 packet's size in bytes (default 84, a ping's).
    pub size: Option<usize>,
    /// A source other than the container's own, to see what the guard does.
    pub src_ip: Option<IpAddr>,
    pub src_mac: Option<String>,
}

/// What the switch decided, step by step.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Trace {
    pub steps: Vec<TraceStep>,
    /// Whether the frame reaches a port, a host or the gateway.
    pub delivered: bool,
    pub verdict: String,
}

/// `switchctl trace --live`: which real frames to show (every condition
/// given must hold), and for how long.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LiveRequest {
    #[serde(default)]
    pub network: Option<String>,
    /// A container on this host: frames from it or to it.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Another host (name or underlay address): datagrams from it, frames to it.
    #[serde(default)]
    pub host: Option<String>,
    /// tcp, udp, icmp or arp.
    #[serde(default)]
    pub proto: Option<String>,
    #[serde(default)]
    pub count: Option<u64>,
    #[serde(default)]
    pub seconds: Option<f64>,
}

/// One line of a live trace's stream.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LiveLine {
    Frame(LiveFrame),
    /// The last line: frames shown, and frames that matched but could not
    /// be kept (the reader fell behind; the data path never waits).
    End {
        frames: u64,
        lost: u64,
    },
}

/// A real frame and what the switch decided for it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LiveFrame {
    /// When a worker decided it, in microseconds since the epoch.
    pub at_us: u64,
    pub worker: usize,
    /// What it is: addresses and protocol.
    pub frame: String,
    #[serde(flatten)]
    pub trace: Trace,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TraceStep {
    pub what: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyInfo {
    /// "cluster", or the network whose own key it is.
    pub scope: String,
    pub id: String,
    /// "sending" (this host seals with it) or "accepted".
    pub state: String,
    /// Hosts (this one included) that accept it, by gossip.
    pub accepted_by: Vec<String>,
    /// Hosts that seal with it.
    pub sending_by: Vec<String>,
    /// Hosts sharing the ring that do not accept it yet.
    pub missing: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GossipStatsInfo {
    pub datagrams_in: u64,
    pub datagrams_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Datagrams refused, by reason: truncated, bad_magic, wrong_key,
    /// auth_failed, replayed, stale, bad_fragment.
    pub rejected: BTreeMap<String, u64>,
    /// Authentic messages that did not decode.
    pub bad_messages: u64,
    /// Published entries of other hosts skipped as invalid.
    pub bad_entries: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VtepStats {
    pub vtep: String,
    pub host: Option<String>,
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    pub drops: BTreeMap<String, u64>,
}

/// A remote host, for `switchctl peers`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerInfo {
    pub host: Option<String>,
    pub underlay_ip: IpAddr,
    pub vxlan_port: u16,
    /// "static" for `[[peer]]` entries; "alive", "suspect" or "dead" for
    /// hosts found by gossip.
    pub state: String,
    /// Seconds since its last VXLAN datagram arrived, if one has.
    pub last_heard_secs: Option<f64>,
    /// The local networks it carries.
    pub networks: Vec<String>,
    /// MACs learned behind it.
    pub macs: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PortStats {
    pub network: String,
    pub endpoint: String,
    /// "web:eth0" for a tap port, the host interface for others.
    pub port: String,
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    /// Frames from other hosts written with their TCP/UDP checksum left for
    /// the container's stack to finish, as their sender deferred it.
    #[serde(default)]
    pub deferred_checksums: u64,
    pub drops: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NetworkStats {
    pub network: String,
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    pub flooded: u64,
    pub mac_moves: u64,
    pub fdb_entries: u64,
    /// ARP requests and neighbour solicitations answered here, not flooded.
    pub neighbor_answers: u64,
    /// Frames routed out of this network into another.
    #[serde(default)]
    pub routed: u64,
    /// The ports' `deferred_checksums`, added up.
    #[serde(default)]
    pub deferred_checksums: u64,
    /// New connections to its service VIPs given a backend.
    #[serde(default)]
    pub balanced: u64,
    /// Connections to its VIPs refused: no healthy backend, or a port not served.
    #[serde(default)]
    pub balance_refused: u64,
    /// Balanced flows pushed out of the full flow table by newer ones.
    #[serde(default)]
    pub balance_evicted: u64,
    pub drops: BTreeMap<String, u64>,
}

/// A `[[route]]`, for `switchctl route ls`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RouteInfo {
    pub networks: [String; 2],
    /// "config" or "runtime".
    pub origin: String,
    /// "active", or "waiting for its networks" while one is not here.
    pub state: String,
}

/// A published port, for `switchctl publish ls`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublishInfo {
    pub network: String,
    pub container: String,
    pub host_ip: IpAddr,
    pub host_port: u16,
    pub port: u16,
    pub protocol: String,
    /// Where connections go now: the container's address and port, if it
    /// is attached here.
    pub target: Option<String>,
    pub origin: String,
    /// Its relays: held now, and since it was published how many were
    /// admitted, closed for a newcomer, refused, timed out, or closed when
    /// descriptors ran out.
    #[serde(default)]
    pub relays: crate::conns::CountersSnapshot,
    /// A port of the routing mesh: the service it leads to (its VIP is the
    /// target), instead of a container.
    #[serde(default)]
    pub service: Option<String>,
    /// A mesh port that is not open on this host: why.
    #[serde(default)]
    pub not_open: Option<String>,
}

/// Everything `network connect` would set up, for `script attach`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttachPlan {
    pub network: String,
    pub name: String,
    pub kind: String,
    pub netns: Option<String>,
    pub ifname: String,
    pub host_ifname: Option<String>,
    pub mac: String,
    pub mtu: u32,
    pub ip: Option<IpAddr>,
    pub prefix_len: Option<u8>,
    /// A given IPv6 address (in the network's /64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<std::net::Ipv6Addr>,
    pub gateway: Option<IpAddr>,
    /// Whether the endpoint gets a default route via the gateway.
    pub default_route: bool,
}

/// A service, for `switchctl service ls` and `inspect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    pub name: String,
    pub network: String,
    /// "vip" or "dnsrr".
    pub mode: String,
    pub vip: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vip6: Option<std::net::Ipv6Addr>,
    /// "80/tcp"; none: every port.
    pub ports: Vec<String>,
    pub health: Option<String>,
    /// The routing mesh's ports, "8080:80/tcp".
    #[serde(default)]
    pub publish: Vec<String>,
    /// "config", "runtime", "cluster", or "alias" (joined, never defined).
    pub origin: String,
    pub backends: Vec<BackendInfo>,
}

/// A backend of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendInfo {
    pub name: String,
    pub ip: Option<IpAddr>,
    pub mac: String,
    pub host: String,
    /// "healthy", "unhealthy", or "unchecked" (the service has no health check).
    pub state: String,
    /// Why its last check failed (on its own host).
    pub last_error: Option<String>,
}

/// A policy, for `switchctl policy ls`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyInfo {
    pub name: String,
    pub network: String,
    pub select: String,
    pub from: Vec<String>,
    /// None: every port.
    pub ports: Vec<String>,
    pub origin: String,
    /// The endpoints it isolates now, cluster-wide (empty: it selects none yet).
    pub selects: Vec<String>,
}
