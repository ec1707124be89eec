//! Stage one: host.toml as written, before any rule is checked.
//!
//! Numbers are `i64` and addresses are strings so that stage two can say
//! "vni 0 is out of range" or "10.0.0.300 is not an IP address" in its own
//! words, naming the key, rather than serde's generic type errors. The same
//! structs carry `switchctl network create` and `network connect` requests,
//! so run-time input passes the very checks a config file does.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The whole file. Unknown keys are collected by the loader (see
/// `lib.rs`) rather than refused by `deny_unknown_fields`, so that every
/// unknown key is reported at once, not just the first.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawFile {
    pub host: RawHost,
    pub gossip: Option<RawGossip>,
    pub docker: Option<RawDocker>,
    pub metrics: Option<RawMetrics>,
    pub peer: Vec<RawPeer>,
    pub network: Vec<RawNetwork>,
    pub route: Vec<RawRoute>,
    pub port: Vec<RawPort>,
    pub publish: Vec<RawPublish>,
    pub service: Vec<RawService>,
    pub policy: Vec<RawPolicy>,
}

/// `[[policy]]`: one rule of network policy.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RawPolicy {
    pub name: Option<String>,
    pub network: Option<String>,
    /// The endpoints it isolates: "service=NAME", "name=PATTERN", "cidr=CIDR" or "*".
    pub select: Option<String>,
    /// Who may connect to them: the same, or "network=NAME".
    pub from: Option<Vec<String>>,
    /// To which ports ("5432/tcp"); none: every port.
    pub ports: Option<Vec<String>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct RawHost {
    pub name: Option<String>,
    pub underlay_ip: Option<String>,
    pub vxlan_port: Option<i64>,
    pub control_socket: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub underlay_mtu: Option<i64>,
    pub mac_aging_time: Option<i64>,
    pub mac_limit: Option<i64>,
    pub workers: Option<i64>,
    pub busy_poll_us: Option<i64>,
    pub io_uring: Option<bool>,
    pub crypto_helpers: Option<i64>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct RawDocker {
    pub socket: Option<PathBuf>,
    pub api_socket: Option<PathBuf>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct RawMetrics {
    pub listen: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct RawGossip {
    pub port: Option<i64>,
    pub seeds: Vec<String>,
    pub key_file: Option<PathBuf>,
    pub interval_ms: Option<i64>,
    pub failure_timeout: Option<i64>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct RawPeer {
    pub underlay_ip: Option<String>,
    pub vnis: Option<Vec<i64>>,
    pub vxlan_port: Option<i64>,
    pub name: Option<String>,
    pub switchd: Option<bool>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RawNetwork {
    pub name: Option<String>,
    pub vni: Option<i64>,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub mtu: Option<i64>,
    pub internal: Option<bool>,
    pub encrypted: Option<bool>,
    pub cipher: Option<String>,
    pub key_file: Option<PathBuf>,
    pub dns: Option<bool>,
    pub dhcp: Option<bool>,
    pub host_access: Option<bool>,
    /// Dual stack: an IPv6 /64 beside `subnet` (or alone), each
    /// container's address its prefix and its MAC's EUI-64 (SLAAC).
    pub subnet6: Option<String>,
    /// Default: the subnet6's first address.
    pub gateway6: Option<String>,
    /// true without a subnet6 (`docker network create --ipv6` alone): the
    /// network's own unique local /64, [`crate::default_subnet6`].
    pub ipv6: Option<bool>,
    /// false: containers of the network reach each other only where a
    /// policy allows (Docker's `com.docker.network.bridge.enable_icc`).
    pub icc: Option<bool>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RawRoute {
    pub networks: Option<Vec<String>>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RawPublish {
    pub network: Option<String>,
    pub container: Option<String>,
    /// Instead of `container`: a `[[service]]` of this file, published on
    /// every host of the cluster that carries its network (the routing mesh).
    pub service: Option<String>,
    pub host_port: Option<i64>,
    pub port: Option<i64>,
    pub protocol: Option<String>,
    pub host_ip: Option<String>,
    pub idle_timeout: Option<i64>,
    pub max_connections: Option<i64>,
    pub max_per_source: Option<i64>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RawPort {
    pub network: Option<String>,
    pub netns: Option<String>,
    pub name: Option<String>,
    pub ifname: Option<String>,
    pub ip: Option<String>,
    /// An IPv6 address other than the SLAAC one of its MAC.
    pub ip6: Option<String>,
    pub mac: Option<String>,
    pub kind: Option<String>,
    pub host_ifname: Option<String>,
    pub dhcp: Option<bool>,
    /// The service the container is a backend of (Docker's `--network-alias`).
    pub service: Option<String>,
    /// The container runtime's name for this attachment (CNI: container
    /// id and interface), for its garbage collection (CNI `GC`).
    pub attachment: Option<String>,
}

/// `[[service]]`, and `switchctl service create`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RawService {
    pub name: Option<String>,
    pub network: Option<String>,
    pub mode: Option<String>,
    pub vip: Option<String>,
    /// Its IPv6 VIP, on a network with a subnet6 (default: one picked).
    pub vip6: Option<String>,
    /// "80/tcp", "53/udp", "8080" (TCP).
    pub ports: Option<Vec<String>>,
    /// "tcp" or "http:/path".
    pub health: Option<String>,
    pub health_interval_ms: Option<i64>,
    pub health_threshold: Option<i64>,
    /// The routing mesh: "8080:80/tcp" (HOST_PORT:PORT, TCP unless /udp).
    pub publish: Option<Vec<String>>,
}
