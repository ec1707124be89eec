//! The switch pipeline: pure, sans-IO decisions over frames.
//!
//! Frames come in two ways: from a local port ([`Switch::handle_frame`]:
//! virtio header + Ethernet, as a TAP reads it) and from the underlay
//! ([`Switch::handle_datagram`]: a VXLAN datagram and its sender; a sealed
//! one is opened in place by the caller's [`Opener`] once admitted). Either
//! way the switch checks the frame, learns its source (a port, or the
//! sending VTEP), and answers with a [`Plan`]: deliver to a port,
//! encapsulate to a VTEP, flood the network (every target listed), answer,
//! serve, route, refuse, or drop, with the reason counted. It never reads
//! a clock, touches an fd or allocates per frame once the plan's buffer
//! has grown; the data-plane workers (`crate::dataplane`) do the I/O.
//!
//! Isolation is structural: every port belongs to one network, each network
//! has its own forwarding table and VNI, and every decision names ports and
//! VTEPs of the ingress network only. No frame can cross networks at L2.
//! Split horizon: a frame from the underlay is never sent back into it.
//!
//! Layer 3 is the one exception, and it is explicit: a network with a
//! subnet has a gateway ([`Gateway`]) that every host plays with the same
//! MAC. A frame from a local port to the gateway's MAC is either for the
//! gateway itself ([`Action::Local`]: ping, DHCP, DNS, served by
//! `crate::services`) or routed ([`Action::Route`]) into another network,
//! only one that `[[route]]` pairs with it, here on the ingress host; a
//! denied or impossible route is answered with an ICMP error
//! ([`Action::Reject`]). Two ports speak for the gateway: its kernel stack
//! (TCP, for DNS over TCP) and, with host access, the host's side (what
//! switchd does not serve at the gateway address, and what is bound
//! outside every network). Any other port may only use the addresses it
//! was given.
//!
//! A service's VIP is answered with the gateway's MAC too: a connection to
//! it is balanced ([`balance`], [`Action::Nat`]) to a backend of the
//! service in the same network, on this host or another, and its replies
//! come back through here to be given the VIP's address again.

pub mod balance;
mod fdb;
mod flow_table;
pub mod guard;
pub mod l3;
pub mod maglev;
pub mod neighbor;
mod plan;
pub mod policy;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use hashbrown::HashMap;
use ipnet::{Ipv4Net, Ipv6Net};
use serde::Serialize;
use slotmap::{SlotMap, new_key_type};
use switchd_config::{MacAddr, Mtu, Vni};
use switchd_crypto::OpenError;
use switchd_overlay::offload::L4Checksum;
use switchd_overlay::{gro, sealed};
use switchd_wire::ethernet::{self, EtherType};
use switchd_wire::ip::Protocol;
use switchd_wire::vnet::{Frame, FrameError, GsoType};
use switchd_wire::vxlan;

pub use fdb::{Entry as FdbEntry, Fdb, Kind as FdbKind, Learned};
pub use guard::{EndpointGuard, PortGuard};
pub use plan::{NoKeys, Opener, Plan, Target};

new_key_type! {
    /// A port of the switch (one container interface or host interface).
    pub struct PortId;
    /// A network: an isolated L2 segment.
    pub struct NetworkId;
    /// A remote VTEP: another host's switchd, or a kernel vxlan device.
    pub struct VtepId;
}

/// Where a MAC lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Location {
    Port(PortId),
    Vtep(VtepId),
}

/// What to do with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Write it to this port.
    Deliver(PortId),
    /// Encapsulate it in this network's VNI and send it to this VTEP.
    Encap { vtep: VtepId, network: NetworkId },
    /// Write it to every target [`Switch::flood_targets`] names.
    Flood { network: NetworkId, ingress: Location },
    /// It asks (ARP, neighbour solicitation) for an address whose owner is
    /// known: answer it on `port` on the owner's behalf
    /// ([`neighbor::reply`]) instead of flooding the question.
    Answer { port: PortId, owner: MacAddr, request: neighbor::Request },
    /// It is for the gateway itself (ping, DHCP, DNS): serve it and answer
    /// on `port`.
    Local { port: PortId, network: NetworkId },
    /// Route it into `network`: rewrite it ([`l3::forward`] with these
    /// MACs), then send it on.
    Route { network: NetworkId, src: MacAddr, dst: MacAddr, next: Next },
    /// Balanced to or back from a service's backend: rewrite it
    /// ([`balance::rewrite`]), then send it on, within `network`.
    Nat { network: NetworkId, next: Next, rewrite: balance::Rewrite },
    /// It cannot be routed (the reason is counted): answer the sender on
    /// `port` with the ICMP error for `reason`, from `network`'s gateway.
    Reject { port: PortId, network: NetworkId, reason: DropReason },
    /// Drop it; the reason has been counted.
    Drop(DropReason),
}

/// Where a routed frame goes in its new network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Port(PortId),
    Vtep(VtepId),
    /// The destination MAC is not known yet: to every port and VTEP of the network.
    Flood,
}

/// IPv6's all-routers multicast group (ff02::2) at the link layer.
const ALL_ROUTERS: MacAddr = MacAddr([0x33, 0x33, 0, 0, 0, 2]);
/// The MAC of ff02::1:2, all DHCPv6 servers: where DHCPv6 clients ask.
const ALL_DHCP_SERVERS: MacAddr = MacAddr([0x33, 0x33, 0, 1, 0, 2]);

/// The source ports of the gateway stack's own connections (its health
/// checks of services' backends): TCP to the gateway address at one of
/// them goes to the stack, even on a network with host access. Past
/// Linux's default ephemeral ports (32768-60999), which the host's own
/// connections use.
pub const HEALTH_CHECK_PORTS: std::ops::RangeInclusive<u16> = 61000..=61999;

/// A network's router side: the IPv4 gateway address that every host
/// answers for, with the same MAC everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gateway {
    /// The gateway's IPv4 address and the network's subnet; `None` on an
    /// IPv6-only network, where no IPv4 frame is the gateway's.
    pub v4: Option<(Ipv4Addr, Ipv4Net)>,
    pub mac: MacAddr,
    /// DHCP requests (broadcast ones too) go to the gateway.
    pub dhcp: bool,
    /// The gateway's IPv6 address and the network's /64 (dual stack).
    pub v6: Option<(Ipv6Addr, Ipv6Net)>,
}

impl Gateway {
    /// Whether `ip` is in the network's subnet (or, IPv6, its prefix).
    fn holds(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(ip) => self.v4.is_some_and(|(_, subnet)| subnet.contains(&ip)),
            IpAddr::V6(ip) => self.v6.is_some_and(|(_, prefix)| prefix.contains(&ip)),
        }
    }

    /// Whether `ip` is the gateway's own address.
    fn is_own(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(ip) => self.v4.is_some_and(|(own, _)| own == ip),
            IpAddr::V6(ip) => self.v6.is_some_and(|(own, _)| own == ip),
        }
    }

    /// The gateway MAC of a network: the same on every host (derived from
    /// the VNI), locally administered.
    pub fn mac_for(vni: Vni) -> MacAddr {
        let [_, a, b, c] = vni.get().to_be_bytes();
        MacAddr([0x02, 0x5d, 0x67, a, b, c])
    }
}

/// An IPv6 destination a router may forward: not multicast, link-local,
/// loopback or unspecified (RFC 4291 2.5.6: link-local never leaves its
/// link).
fn is_routable_v6(dst: Ipv6Addr) -> bool {
    !(dst.is_multicast() || dst.is_loopback() || dst.is_unspecified() || dst.is_unicast_link_local())
}

macro_rules! drop_reasons {
    ($($(#[doc = $doc:literal])* $variant:ident = $name:literal,)*) => {
        /// Why a frame was dropped. Every drop is counted under one of these.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum DropReason {
            $($(#[doc = $doc])* $variant,)*
        }

        impl DropReason {
            pub const ALL: &[DropReason] = &[$(DropReason::$variant,)*];
            pub const COUNT: usize = Self::ALL.len();

            /// The snake_case name shown by `switchctl stats`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(DropReason::$variant => $name,)*
                }
            }
        }
    };
}

drop_reasons! {
    /// Shorter than its headers: virtio + Ethernet from a port; VXLAN, or
    /// the inner Ethernet, from the underlay.
    Truncated = "truncated",
    /// Unknown GSO type, GSO without segment size, or checksum outside the frame.
    BadVnetHdr = "bad_vnet_hdr",
    /// A GSO frame asking for segments smaller than any TCP stack sends
    /// ([`frame::MIN_GSO_SIZE`]), or for more of them than a frame can
    /// legitimately make ([`frame::MAX_GSO_SEGMENTS`]): an amplification.
    BadGso = "bad_gso",
    /// Larger than the network MTU (or GSO segments larger than it).
    Oversize = "oversize",
    /// Source MAC is multicast, broadcast or all zero.
    BadSrcMac = "bad_src_mac",
    /// The port or VTEP has learned as many MACs as it may (MAC-flood guard).
    MacLimit = "mac_limit",
    /// Destination was learned on the ingress port itself.
    SamePort = "same_port",
    /// A frame from the underlay for a MAC behind a VTEP: never sent back
    /// into the underlay.
    SplitHorizon = "split_horizon",
    /// The port was removed while its frames were in flight.
    NoPort = "no_port",
    /// A VXLAN datagram from an address that is not a known VTEP.
    UnknownSource = "unknown_source",
    /// VXLAN flags other than exactly I.
    BadFlags = "bad_vxlan_flags",
    /// A VNI this host does not carry, or the sending VTEP is not a peer on.
    UnknownVni = "unknown_vni",
    /// Plain VXLAN for a network that is encrypted: never accepted.
    PlaintextOnEncrypted = "plaintext_on_encrypted",
    /// A sealed packet for a network that is not encrypted here.
    SealedOnPlain = "sealed_on_plain",
    /// A sealed header with an unknown cipher or a reserved byte set.
    SealedHeader = "sealed_header",
    /// Sealed under a key this host does not hold (or no longer accepts).
    UnknownKey = "unknown_key",
    /// From a sender's earlier boot (a captured packet, or one late from before a restart).
    OldSession = "old_session",
    /// The tag did not verify: tampered, forged, or sealed for someone else.
    AuthFailed = "auth_failed",
    /// A counter this session has used (a replay), or one too old to tell.
    Replayed = "replayed",
    /// The table of sessions is full; the packet is dropped rather than
    /// an old session forgotten.
    SessionLimit = "session_limit",
    /// Sealed on a lane another worker of this host opens (its replay
    /// window is there): the datagram reached the wrong socket, spoofed or
    /// joined by the kernel with another lane's.
    WrongLane = "wrong_lane",
    /// A frame for an encrypted network this host holds no key for: never sent in plaintext.
    NoKey = "no_key",
    /// A GSO frame for a remote host that could not be segmented.
    OffloadError = "offload_error",
    /// From a port, with a source MAC it was not given (a container), or
    /// a switchd endpoint's MAC (a LAN behind an uplink, a VTEP claiming a
    /// local endpoint's): never learned.
    SpoofedMac = "spoofed_mac",
    /// From a port, with a source address it was not given (IPv4, ARP,
    /// IPv6), the gateway's MAC, or in a form the guard cannot check (VLAN
    /// tags, ARP other than Ethernet/IPv4, a broken IPv6 header chain).
    SpoofedAddress = "spoofed_address",
    /// Neighbour discovery from a container that lies: an advertisement
    /// for an address not its own, a duplicate-address probe for another's,
    /// another link-layer address, a router advertisement or a redirect.
    SpoofedNd = "spoofed_nd",
    /// To the gateway for an address in no network this one routes to
    /// (ICMP net unreachable).
    NoRoute = "no_route",
    /// To the gateway for a network this one has no `[[route]]` to (ICMP
    /// administratively prohibited).
    RouteDenied = "route_denied",
    /// Routed with TTL (hop limit) 1 or 0 (ICMP time exceeded).
    TtlExceeded = "ttl_exceeded",
    /// Routed into a network whose MTU it exceeds, Don't Fragment set (or
    /// IPv6, never cut): answered with ICMP fragmentation needed (RFC
    /// 1191) or ICMPv6 packet too big (RFC 8201), with that MTU.
    FragNeeded = "frag_needed",
    /// Routed to an address no endpoint holds (ICMP host unreachable).
    NoNeighbor = "no_neighbor",
    /// To the gateway MAC but not IPv4: nothing to route or serve.
    NotRoutable = "not_routable",
    /// To a service's VIP, on a port it does not serve, or while it has no
    /// healthy backend (TCP reset, or ICMP port unreachable).
    NoBackend = "no_backend",
    /// To an endpoint a policy isolates, and no rule of any policy allows
    /// it (nor is it a reply in a connection the endpoint opened).
    PolicyDenied = "policy_denied",
    /// The destination refused the write (an I/O error, logged); counted
    /// by the data plane on the egress port or VTEP.
    TxError = "tx_error",
    /// The destination's queue was full (it is not keeping up); counted by
    /// the data plane on the egress port or VTEP.
    TxQueueFull = "tx_queue_full",
}

impl From<FrameError> for DropReason {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Truncated => DropReason::Truncated,
            FrameError::BadVnetHdr => DropReason::BadVnetHdr,
        }
    }
}

impl From<sealed::Refused> for DropReason {
    fn from(e: sealed::Refused) -> Self {
        match e {
            sealed::Refused::Header(sealed::HeaderError::Truncated) => DropReason::Truncated,
            sealed::Refused::Header(sealed::HeaderError::Malformed) => DropReason::SealedHeader,
            sealed::Refused::Open(OpenError::UnknownKey) => DropReason::UnknownKey,
            sealed::Refused::Open(OpenError::OldSession) => DropReason::OldSession,
            sealed::Refused::Open(OpenError::AuthFailed) => DropReason::AuthFailed,
            sealed::Refused::Open(OpenError::Replayed) => DropReason::Replayed,
            sealed::Refused::Open(OpenError::SessionLimit) => DropReason::SessionLimit,
            sealed::Refused::OtherLane => DropReason::WrongLane,
        }
    }
}

impl From<vxlan::Error> for DropReason {
    fn from(e: vxlan::Error) -> Self {
        match e {
            vxlan::Error::Truncated => DropReason::Truncated,
            vxlan::Error::BadFlags => DropReason::BadFlags,
        }
    }
}

/// Frames and bytes received, plus drops by reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counters {
    pub frames: u64,
    pub bytes: u64,
    pub drops: [u64; DropReason::COUNT],
}

impl Default for Counters {
    fn default() -> Self {
        Counters { frames: 0, bytes: 0, drops: [0; DropReason::COUNT] }
    }
}

impl Counters {
    /// Adds `other`'s counts (another worker's) to these.
    pub fn add(&mut self, other: &Counters) {
        self.frames += other.frames;
        self.bytes += other.bytes;
        for (mine, theirs) in self.drops.iter_mut().zip(other.drops) {
            *mine += theirs;
        }
    }

    pub fn count(&mut self, bytes: usize) {
        self.frames += 1;
        self.bytes += bytes as u64;
    }

    pub fn drop(&mut self, reason: DropReason) -> Action {
        self.drops[reason as usize] += 1;
        Action::Drop(reason)
    }

    pub fn drops_by_name(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        DropReason::ALL.iter().map(|r| (r.as_str(), self.drops[*r as usize])).filter(|(_, n)| *n > 0)
    }
}

/// Aging time and MAC limits.
#[derive(Debug, Clone, Copy)]
pub struct SwitchConfig {
    pub mac_aging_time: Duration,
    /// Per local port.
    pub mac_limit: u32,
    /// Per remote VTEP: a host carries many containers.
    pub vtep_mac_limit: u32,
}

impl SwitchConfig {
    /// A VTEP may learn this many times a port's limit.
    pub const VTEP_LIMIT_FACTOR: u32 = 64;

    pub fn new(mac_aging_time: Duration, mac_limit: u32) -> Self {
        SwitchConfig { mac_aging_time, mac_limit, vtep_mac_limit: mac_limit.saturating_mul(Self::VTEP_LIMIT_FACTOR) }
    }

    /// How often [`Switch::handle_timeout`] should run. Lookups ignore
    /// expired entries at once; the sweep only frees them, so once a second
    /// keeps tables tight without scanning them per frame.
    pub fn sweep_interval(&self) -> Duration {
        Duration::from_secs(1).min(self.mac_aging_time)
    }
}

impl Default for SwitchConfig {
    fn default() -> Self {
        SwitchConfig::new(Duration::from_secs(300), 1024)
    }
}

#[derive(Debug, Clone)]
struct Port {
    network: NetworkId,
    mtu: u32,
    /// What it may send.
    guard: PortGuard,
    /// MACs in the network's table that point here.
    learned: u32,
    rx: Counters,
    /// Its last flow policy allowed ([`policy::Memo`]).
    memo: policy::Memo,
}

/// What a remote VTEP is, as far as what it may be sent goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum PeerKind {
    /// Any RFC 7348 VTEP, the kernel's vxlan device included: inner frames
    /// go with their TCP/UDP checksums complete, as a NIC would send them.
    #[default]
    Vxlan,
    /// A switchd that finishes inner checksums left partial (one found by
    /// gossip that says so, or a `[[peer]]` with `switchd = true`): the
    /// sender skips that pass over every byte ([`L4Checksum::Partial`]).
    Switchd,
}

#[derive(Debug, Clone)]
struct Vtep {
    addr: SocketAddr,
    /// The VNIs it carries; `None`: all.
    vnis: Option<Vec<Vni>>,
    kind: PeerKind,
    learned: u32,
    rx: Counters,
    last_rx: Option<Instant>,
}

impl Vtep {
    fn carries(&self, vni: Vni) -> bool {
        self.vnis.as_ref().is_none_or(|v| v.contains(&vni))
    }
}

#[derive(Debug, Clone)]
struct Network {
    vni: Vni,
    mtu: u32,
    /// Cross-host frames travel sealed, and only sealed ones are accepted.
    encrypted: bool,
    ports: Vec<PortId>,
    /// VTEPs that carry this network: head-end replication goes to each.
    vteps: Vec<VtepId>,
    fdb: Fdb,
    /// Frames flooded: broadcast, multicast and unknown unicast.
    flooded: u64,
    /// MACs that moved from one port or VTEP to another.
    moves: u64,
    /// Who owns which address: local endpoints and gossip's remote ones.
    neighbors: HashMap<IpAddr, MacAddr>,
    /// The MACs of the local endpoints (ports with an [`EndpointGuard`]),
    /// keyed as in the FDB: no other port or VTEP may take them.
    endpoint_macs: HashMap<u64, PortId>,
    /// The MACs of remote endpoints, as gossip names them: no LAN port may
    /// take them (whether the FDB still has them from gossip or not).
    remote_endpoint_macs: hashbrown::HashSet<u64>,
    /// ARP and ND requests answered here instead of flooded.
    answered: u64,
    gateway: Option<Gateway>,
    /// The port of the gateway's kernel stack (`crate::io::gateway`): TCP
    /// for the gateway goes there. It may send as the gateway.
    gateway_port: Option<PortId>,
    /// The host's side of the network (`host_access`): it holds the gateway
    /// address, so traffic for the gateway that switchd does not serve, and
    /// traffic for outside every network, goes there. It may send as the gateway.
    host_port: Option<PortId>,
    /// The networks frames may be routed to from this one.
    routes: Vec<NetworkId>,
    /// Frames routed out of this network.
    routed: u64,
    /// Its services' VIPs and the flows through them.
    balancer: balance::Balancer,
}

/// Counters of one network, for `switchctl stats`.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct NetworkCounters {
    pub flooded: u64,
    pub mac_moves: u64,
    pub fdb_entries: u64,
    pub neighbor_answers: u64,
    pub routed: u64,
    pub balance: balance::BalanceCounters,
}

/// How a network's frames are encapsulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkWire {
    pub vni: Vni,
    /// The L3 MTU segments are cut to.
    pub mtu: u32,
    pub encrypted: bool,
    /// What the inner TCP/UDP checksums are left as: partial only when
    /// every VTEP the frame goes to is a switchd ([`PeerKind::Switchd`]);
    /// a frame flooded to a kernel peer too is built once, complete.
    pub l4_checksum: L4Checksum,
}

/// A datagram admitted from the underlay: who sent it, for which network,
/// and whether it still has to be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Arrival {
    vtep: VtepId,
    network: NetworkId,
    sealed: bool,
}

/// What `switchctl peers` and `stats` show of a VTEP.
#[derive(Debug, Clone)]
pub struct VtepInfo {
    pub addr: SocketAddr,
    pub rx: Counters,
    pub last_rx: Option<Instant>,
    pub learned: u32,
}

/// A MAC one replica of the switch learned (new, moved, or still there
/// after a while), for the other replicas: every data-plane worker decides
/// with its own copy of the tables, and they share what traffic taught them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Learning {
    pub network: NetworkId,
    pub mac: MacAddr,
    pub location: Location,
    pub at: Instant,
}

/// What one replica tells the others: a MAC it learned, or a flow it
/// balanced (a reply may come in through another worker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum News {
    Learned(Learning),
    Balanced(NetworkId, balance::Balanced),
    /// A mesh flow another host balanced to a backend here.
    Arrived(NetworkId, balance::Arrival),
    /// A connection an isolated endpoint opened: its replies pass.
    Opened(policy::Flow, Instant),
}

#[derive(Debug, Clone)]
pub struct Switch {
    config: SwitchConfig,
    /// Whether other replicas need to hear what this one learns.
    replicated: bool,
    /// What they need to hear, until taken ([`Switch::take_news`]).
    news: Vec<News>,
    networks: SlotMap<NetworkId, Network>,
    by_vni: HashMap<Vni, NetworkId>,
    ports: SlotMap<PortId, Port>,
    vteps: SlotMap<VtepId, Vtep>,
    vtep_by_ip: HashMap<IpAddr, VtepId>,
    /// Datagrams from unknown sources, which have no VTEP to count them.
    underlay: Counters,
    /// Network policy: isolated endpoints, rules, and the flows judged.
    policing: policy::Policing,
}

impl Switch {
    pub fn new(config: SwitchConfig) -> Self {
        Switch {
            config,
            replicated: false,
            news: Vec::new(),
            networks: SlotMap::with_key(),
            by_vni: HashMap::new(),
            ports: SlotMap::with_key(),
            vteps: SlotMap::with_key(),
            vtep_by_ip: HashMap::new(),
            underlay: Counters::default(),
            policing: policy::Policing::default(),
        }
    }

    pub fn config(&self) -> SwitchConfig {
        self.config
    }

    /// Makes this switch one of several replicas: from now on it keeps what
    /// it learns for [`Switch::take_news`].
    pub fn set_replicated(&mut self, replicated: bool) {
        self.replicated = replicated;
    }

    /// What this replica learned and balanced since the last call, for
    /// the others ([`Switch::apply_news`]); `into` is cleared first.
    pub fn take_news(&mut self, into: &mut Vec<News>) {
        into.clear();
        std::mem::swap(&mut self.news, into);
    }

    /// Takes what another replica learned, unless this one has seen the
    /// MAC elsewhere since, or its port, VTEP or network is gone; and the
    /// flows it balanced.
    pub fn apply_news(&mut self, news: &News) {
        let learning = match news {
            News::Learned(learning) => learning,
            News::Balanced(network, balanced) => {
                if let Some(net) = self.networks.get_mut(*network) {
                    net.balancer.remember(balanced);
                }
                return;
            }
            News::Arrived(network, arrival) => {
                if let Some(net) = self.networks.get_mut(*network) {
                    net.balancer.remember_arrival(arrival);
                }
                return;
            }
            News::Opened(flow, at) => {
                self.policing.remember(*at, *flow);
                return;
            }
        };
        let Some(net) = self.networks.get_mut(learning.network) else { return };
        let here = match learning.location {
            Location::Port(p) => self.ports.get(p).is_some_and(|p| p.network == learning.network),
            Location::Vtep(v) => self.vteps.contains_key(v),
        };
        if !here {
            return;
        }
        let (ports, vteps) = (&mut self.ports, &mut self.vteps);
        match net.fdb.apply(learning.mac, learning.location, learning.at) {
            Some(Learned::New) => *learned_mut(ports, vteps, learning.location).expect("checked") += 1,
            Some(Learned::Moved { from, counted }) => {
                *learned_mut(ports, vteps, learning.location).expect("checked") += 1;
                if counted && let Some(n) = learned_mut(ports, vteps, from) {
                    *n -= 1;
                }
            }
            Some(Learned::Refreshed | Learned::Renewed) | None => {}
        }
    }

    /// Adds a network. `None` if its VNI is taken.
    pub fn add_network(&mut self, vni: Vni, mtu: Mtu, encrypted: bool) -> Option<NetworkId> {
        if self.by_vni.contains_key(&vni) {
            return None;
        }
        let vteps = self.vteps.iter().filter(|(_, v)| v.carries(vni)).map(|(id, _)| id).collect();
        let id = self.networks.insert(Network {
            vni,
            mtu: mtu.get(),
            encrypted,
            ports: Vec::new(),
            vteps,
            fdb: Fdb::default(),
            flooded: 0,
            moves: 0,
            neighbors: HashMap::new(),
            endpoint_macs: HashMap::new(),
            remote_endpoint_macs: hashbrown::HashSet::new(),
            answered: 0,
            gateway: None,
            gateway_port: None,
            host_port: None,
            routes: Vec::new(),
            routed: 0,
            balancer: balance::Balancer::default(),
        });
        self.by_vni.insert(vni, id);
        Some(id)
    }

    /// Removes a network and its ports.
    pub fn remove_network(&mut self, id: NetworkId) {
        if let Some(net) = self.networks.remove(id) {
            self.by_vni.remove(&net.vni);
            for port in net.ports {
                self.ports.remove(port);
            }
        }
    }

    /// Adds a port to a network. `None` if the network does not exist.
    pub fn add_port(&mut self, network: NetworkId) -> Option<PortId> {
        let mtu = self.networks.get(network)?.mtu;
        let id = self.ports.insert(Port {
            network,
            mtu,
            guard: PortGuard::Open,
            learned: 0,
            rx: Counters::default(),
            memo: policy::Memo::default(),
        });
        self.networks[network].ports.push(id);
        Some(id)
    }

    /// Removes a port and every MAC learned on it.
    pub fn remove_port(&mut self, id: PortId) {
        let Some(port) = self.ports.remove(id) else { return };
        if let Some(net) = self.networks.get_mut(port.network) {
            net.ports.retain(|p| *p != id);
            net.fdb.forget(Location::Port(id));
            net.endpoint_macs.retain(|_, p| *p != id);
        }
    }

    /// Sets what a port may send (see [`guard`]). A container's port that
    /// has no address may still ask DHCP for one, from 0.0.0.0.
    pub fn set_port_guard(&mut self, id: PortId, guard: PortGuard) {
        let Some(port) = self.ports.get_mut(id) else { return };
        let net = &mut self.networks[port.network];
        net.endpoint_macs.retain(|_, p| *p != id);
        if let PortGuard::Endpoint(g) = &guard {
            net.endpoint_macs.insert(g.mac.to_u64(), id);
        }
        port.guard = guard;
    }

    /// Sets a network's gateway (`None`: a pure L2 network).
    pub fn set_gateway(&mut self, id: NetworkId, gateway: Option<Gateway>) {
        if let Some(net) = self.networks.get_mut(id) {
            net.gateway = gateway;
        }
    }

    /// Makes `port` the network's gateway stack (see [`Network`]'s
    /// `gateway_port`); it receives no floods.
    pub fn set_gateway_port(&mut self, id: NetworkId, port: Option<PortId>) {
        if let Some(net) = self.networks.get_mut(id) {
            net.gateway_port = port;
        }
    }

    /// Makes `port` the network's host side (see [`Network`]'s
    /// `host_port`); it receives no floods.
    pub fn set_host_port(&mut self, id: NetworkId, port: Option<PortId>) {
        if let Some(net) = self.networks.get_mut(id) {
            net.host_port = port;
        }
    }

    /// Sets the networks `id` routes to. Routing is per direction: a pair
    /// routes both ways when each lists the other.
    pub fn set_routes(&mut self, id: NetworkId, routes: Vec<NetworkId>) {
        if let Some(net) = self.networks.get_mut(id) {
            net.routes = routes;
        }
    }

    /// Adds a remote VTEP carrying `vnis` (`None`: every network). `None` if
    /// a VTEP with that IP exists.
    pub fn add_vtep(&mut self, addr: SocketAddr, vnis: Option<Vec<Vni>>) -> Option<VtepId> {
        if self.vtep_by_ip.contains_key(&addr.ip()) {
            return None;
        }
        let vtep = Vtep { addr, vnis, kind: PeerKind::default(), learned: 0, rx: Counters::default(), last_rx: None };
        let carried: Vec<NetworkId> =
            self.networks.iter().filter(|(_, n)| vtep.carries(n.vni)).map(|(id, _)| id).collect();
        let id = self.vteps.insert(vtep);
        for net in carried {
            self.networks[net].vteps.push(id);
        }
        self.vtep_by_ip.insert(addr.ip(), id);
        Some(id)
    }

    /// Changes the VNIs a VTEP carries (`None`: all), as its host starts or
    /// stops carrying networks.
    pub fn set_vtep_vnis(&mut self, id: VtepId, vnis: Option<Vec<Vni>>) {
        let Some(vtep) = self.vteps.get_mut(id) else { return };
        vtep.vnis = vnis;
        for net in self.networks.values_mut() {
            let carries = self.vteps[id].carries(net.vni);
            let listed = net.vteps.contains(&id);
            if carries && !listed {
                net.vteps.push(id);
            } else if !carries && listed {
                net.vteps.retain(|v| *v != id);
                net.fdb.forget(Location::Vtep(id));
            }
        }
    }

    /// Says what a VTEP is (a new one is a [`PeerKind::Vxlan`]): what its
    /// frames' inner checksums are left as.
    pub fn set_vtep_kind(&mut self, id: VtepId, kind: PeerKind) {
        if let Some(vtep) = self.vteps.get_mut(id) {
            vtep.kind = kind;
        }
    }

    pub fn vtep_kind(&self, id: VtepId) -> Option<PeerKind> {
        self.vteps.get(id).map(|v| v.kind)
    }

    /// Removes a VTEP and every MAC learned behind it.
    pub fn remove_vtep(&mut self, id: VtepId) {
        let Some(vtep) = self.vteps.remove(id) else { return };
        self.vtep_by_ip.remove(&vtep.addr.ip());
        for net in self.networks.values_mut() {
            net.vteps.retain(|v| *v != id);
            net.fdb.forget(Location::Vtep(id));
        }
    }

    pub fn vtep_addr(&self, id: VtepId) -> Option<SocketAddr> {
        self.vteps.get(id).map(|v| v.addr)
    }

    /// How a network's frames go on the wire, for encapsulation (with
    /// complete inner checksums, good for any VTEP).
    fn network_wire(&self, id: NetworkId) -> Option<NetworkWire> {
        self.networks.get(id).map(|n| NetworkWire {
            vni: n.vni,
            mtu: n.mtu,
            encrypted: n.encrypted,
            l4_checksum: L4Checksum::Complete,
        })
    }

    /// How a network's frames go on the wire to `vteps`: with partial
    /// inner checksums when each of them finishes them.
    fn wire_to(&self, id: NetworkId, mut vteps: impl Iterator<Item = VtepId>) -> Option<NetworkWire> {
        let mut wire = self.network_wire(id)?;
        if vteps.all(|v| self.vteps.get(v).is_some_and(|v| v.kind == PeerKind::Switchd)) {
            wire.l4_checksum = L4Checksum::Partial;
        }
        Some(wire)
    }

    /// Decides what to do with one frame (virtio header + Ethernet) read
    /// from local port `ingress`, learning its source on the way: `plan`
    /// says everything the data plane has to do (see [`Plan`]).
    pub fn handle_frame(&mut self, now: Instant, ingress: PortId, buf: &[u8], plan: &mut Plan) {
        let action = self.decide_frame(now, ingress, buf);
        self.resolve(action, Location::Port(ingress), plan);
    }

    fn decide_frame(&mut self, now: Instant, ingress: PortId, buf: &[u8]) -> Action {
        let Some(port) = self.ports.get_mut(ingress) else {
            return Action::Drop(DropReason::NoPort);
        };
        port.rx.count(buf.len());
        let frame = match Frame::new_checked(buf) {
            Ok(frame) => frame,
            Err(e) => return port.rx.drop(e.into()),
        };
        if !frame.gso_is_sane() {
            return port.rx.drop(DropReason::BadGso);
        }
        if !frame.fits_mtu(port.mtu) {
            return port.rx.drop(DropReason::Oversize);
        }
        let network = port.network;
        let action = self.switch(now, network, Location::Port(ingress), frame.ethernet());
        // Routed into a network of a smaller MTU: one that may not be cut
        // (DF set, or a TCP segment the sender's stack would cut) is
        // refused with fragmentation needed and that MTU, so the sender's
        // path MTU discovery learns it; the rest is dropped as oversize
        // (switchd does not fragment).
        if let Action::Route { network: to, .. } = action
            && let Some(mtu) = self.networks.get(to).map(|n| n.mtu)
            && !frame.fits_mtu(mtu)
        {
            // (IPv6 is never cut on the way: RFC 8200 5.)
            let eth = frame.ethernet();
            let whole = frame.gso_type() != GsoType::None
                || eth.ethertype() == EtherType::Ipv6
                || l3::ipv4(eth.as_bytes()).is_some_and(|ip| ip.dont_fragment);
            let port = self.ports.get_mut(ingress).expect("checked above");
            if !whole {
                return port.rx.drop(DropReason::Oversize);
            }
            port.rx.drop(DropReason::FragNeeded);
            return Action::Reject { port: ingress, network, reason: DropReason::FragNeeded };
        }
        if !self.policing.is_active() {
            return action;
        }
        let eth_frame = frame.ethernet();
        let eth = eth_frame.as_bytes();
        let straight = matches!(action, Action::Deliver(_) | Action::Encap { .. } | Action::Route { .. });
        let key = policy::flow_bytes(eth).filter(|_| straight);
        let generation = self.policing.generation;
        if let (Some(key), Some(port)) = (&key, self.ports.get(ingress))
            && port.memo.hit(key, generation, now)
        {
            return action;
        }
        let judged = self.police(now, ingress, eth, action);
        if let (Some(key), true, Some(port)) = (key, judged == action, self.ports.get_mut(ingress)) {
            port.memo.set(key, generation, now);
        }
        judged
    }

    /// Judges a frame from local port `ingress` that the switch would send
    /// on to an endpoint, under network policy: dropped as `policy_denied`
    /// if its destination is isolated and nothing allows it. A connection
    /// an isolated sender opens is remembered, for its replies. Frames that
    /// are not IPv4 unicast (ARP, DHCP, broadcasts) are not judged.
    fn police(&mut self, now: Instant, ingress: PortId, eth: &[u8], action: Action) -> Action {
        let Some(ip) = self.judged(eth, action) else { return action };
        if self.policing.is_isolated(ip.src) {
            let flow = policy::Flow::of(&ip);
            if self.policing.remember(now, flow) && self.replicated {
                self.news.push(News::Opened(flow, now));
            }
        }
        match self.policing.judge(now, &ip) {
            policy::Verdict::Denied => match self.ports.get_mut(ingress) {
                Some(port) => port.rx.drop(DropReason::PolicyDenied),
                None => Action::Drop(DropReason::PolicyDenied),
            },
            _ => action,
        }
    }

    /// The IPv4 header policy judges a frame by, for an action that sends
    /// it on: its destination the backend's for a balanced one.
    fn judged(&self, eth: &[u8], action: Action) -> Option<l3::Ipv4> {
        let backend = match action {
            Action::Deliver(_) | Action::Encap { .. } | Action::Flood { .. } | Action::Route { .. } => None,
            Action::Nat { rewrite, .. } => match rewrite.addr {
                balance::NatAddr::Dst(backend) => Some(backend),
                balance::NatAddr::Src(_) => None,
            },
            Action::Answer { .. } | Action::Local { .. } | Action::Reject { .. } | Action::Drop(_) => return None,
        };
        let backend6 = match backend {
            Some(IpAddr::V6(b)) => Some(b),
            _ => None,
        };
        let mut ip = match l3::ipv4(eth) {
            Some(ip) => ip,
            None => self.policing.ipv6_view(eth, backend6)?,
        };
        if ip.dst.is_broadcast() || ip.dst.is_multicast() || ip.later_fragment {
            return None;
        }
        if let Some(IpAddr::V4(backend)) = backend {
            ip.dst = backend;
        }
        Some(ip)
    }

    /// What policy says of a frame from a local port the switch would
    /// send on so (for `trace`): nothing is cached, counted or remembered.
    pub fn policy_verdict(&self, eth: &[u8], action: Action) -> Option<policy::Verdict> {
        let ip = self.judged(eth, action)?;
        Some(self.policing.explain(&ip))
    }

    /// Makes `rules` and `isolated` the policy ([`policy::Policing::set`]).
    pub fn set_policy(&mut self, rules: Vec<policy::Rule>, isolated: HashMap<Ipv4Addr, Vec<u32>>) {
        self.policing.set(rules, isolated);
    }

    /// The IPv6 addresses policy judges as IPv4 ones ([`policy::Policing::set_ipv6_aliases`]).
    pub fn set_ipv6_aliases(&mut self, aliases: HashMap<Ipv6Addr, Ipv4Addr>) {
        self.policing.set_ipv6_aliases(aliases);
    }

    pub fn policy_counters(&self) -> policy::PolicyCounters {
        self.policing.counters()
    }

    /// Decides what to do with one VXLAN datagram (the UDP payload) from
    /// `src`: accepted only from a known VTEP, for a VNI this host carries
    /// and the VTEP is a peer on, in the form the network requires (sealed
    /// if and only if encrypted: a sealed one is opened in place by
    /// `opener`), with a well-formed inner frame that fits the network's
    /// MTU. `plan.inner` says where the inner frame lies in `datagram`.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        src: IpAddr,
        datagram: &mut [u8],
        opener: &mut impl Opener,
        plan: &mut Plan,
    ) {
        let arrival = match self.admit_datagram(src, datagram) {
            Ok(arrival) => arrival,
            Err(reason) => return plan.reset(Action::Drop(reason)),
        };
        let inner = if arrival.sealed {
            match opener.open(datagram, src) {
                Ok(inner) => inner,
                Err(refused) => return plan.reset(self.drop_arrival(arrival, refused.into())),
            }
        } else {
            vxlan::HEADER_LEN..datagram.len()
        };
        let action = self.handle_decapsulated(now, arrival, &datagram[inner.clone()]);
        self.resolve(action, Location::Vtep(arrival.vtep), plan);
        plan.inner = inner;
        plan.sealed = arrival.sealed;
    }

    /// Fills `plan` for `action`: every target it reaches, with the wire
    /// settings of its network when one is a VTEP.
    fn resolve(&self, action: Action, ingress: Location, plan: &mut Plan) {
        plan.reset(action);
        match action {
            Action::Deliver(port) => plan.targets.push(Target::Port(port)),
            Action::Encap { vtep, network } => self.push_vtep(network, vtep, plan),
            Action::Flood { network, ingress } => self.push_flood(network, ingress, plan),
            Action::Route { network, next, .. } | Action::Nat { network, next, .. } => match next {
                Next::Port(port) => plan.targets.push(Target::Port(port)),
                Next::Vtep(vtep) => self.push_vtep(network, vtep, plan),
                // Into every port and VTEP of the network routed into.
                Next::Flood => self.push_flood(network, ingress, plan),
            },
            Action::Answer { .. } | Action::Local { .. } | Action::Reject { .. } | Action::Drop(_) => {}
        }
    }

    fn push_vtep(&self, network: NetworkId, vtep: VtepId, plan: &mut Plan) {
        plan.targets.push(Target::Vtep(vtep));
        plan.wire = self.wire_to(network, std::iter::once(vtep));
    }

    /// Every target of [`Switch::flood_targets`], the network's wire
    /// settings looked up once when a VTEP is among them.
    fn push_flood(&self, network: NetworkId, ingress: Location, plan: &mut Plan) {
        let start = plan.targets.len();
        plan.targets.extend(self.flood_targets(network, ingress).map(|target| match target {
            Location::Port(port) => Target::Port(port),
            Location::Vtep(vtep) => Target::Vtep(vtep),
        }));
        if plan.targets[start..].iter().any(|t| matches!(t, Target::Vtep(_))) {
            let vteps = plan.targets[start..].iter().filter_map(|t| match t {
                Target::Vtep(v) => Some(*v),
                Target::Port(_) => None,
            });
            plan.wire = self.wire_to(network, vteps);
        }
    }

    /// The first look at a datagram from the underlay, before anything is
    /// opened or learned: from a known VTEP, for a network it carries, and
    /// in the form that network requires (sealed if and only if encrypted).
    /// Counts it, and counts the drop when it is refused.
    fn admit_datagram(&mut self, src: IpAddr, payload: &[u8]) -> Result<Arrival, DropReason> {
        let Some(&vtep_id) = self.vtep_by_ip.get(&src) else {
            self.underlay.count(payload.len());
            self.underlay.drop(DropReason::UnknownSource);
            return Err(DropReason::UnknownSource);
        };
        let vtep = &mut self.vteps[vtep_id];
        vtep.rx.count(payload.len());
        let refuse = |vtep: &mut Vtep, reason: DropReason| {
            vtep.rx.drop(reason);
            Err(reason)
        };
        let packet = match vxlan::Packet::new_checked(payload) {
            Ok(p) => p,
            Err(e) => return refuse(vtep, e.into()),
        };
        let vni = Vni::new(packet.vni()).ok();
        let Some(network) = vni.filter(|v| vtep.carries(*v)).and_then(|v| self.by_vni.get(&v).copied()) else {
            return refuse(vtep, DropReason::UnknownVni);
        };
        match (self.networks[network].encrypted, packet.is_sealed()) {
            (true, false) => refuse(vtep, DropReason::PlaintextOnEncrypted),
            (false, true) => refuse(vtep, DropReason::SealedOnPlain),
            (_, sealed) => Ok(Arrival { vtep: vtep_id, network, sealed }),
        }
    }

    /// Counts the drop of an admitted datagram (one that failed to open).
    fn drop_arrival(&mut self, arrival: Arrival, reason: DropReason) -> Action {
        match self.vteps.get_mut(arrival.vtep) {
            Some(vtep) => vtep.rx.drop(reason),
            None => Action::Drop(reason),
        }
    }

    /// Learns from and decides one inner frame of an admitted datagram
    /// (opened, if it was sealed).
    fn handle_decapsulated(&mut self, now: Instant, arrival: Arrival, frame: &[u8]) -> Action {
        let (Some(vtep), Some(net)) = (self.vteps.get_mut(arrival.vtep), self.networks.get(arrival.network)) else {
            // The VTEP or network went while the packet was being opened.
            return Action::Drop(DropReason::UnknownVni);
        };
        vtep.last_rx = Some(now);
        let inner = match ethernet::Frame::new_checked(frame) {
            Ok(eth) => eth,
            Err(_) => return vtep.rx.drop(DropReason::Truncated),
        };
        // A TCP segment over the MTU in plain VXLAN is one a kernel vxlan
        // peer's GSO made and its virtual underlay never cut (the data
        // plane writes it as a GSO frame); nothing else is.
        if !inner.fits_mtu(net.mtu) && (arrival.sealed || !gro::is_tcp_segment(frame)) {
            return vtep.rx.drop(DropReason::Oversize);
        }
        // A connection an isolated endpoint on another host opened (judged
        // there): remembered here too, where its replies are judged.
        if self.policing.is_active()
            && let Some(ip) = l3::ipv4(frame).filter(|ip| self.policing.is_isolated(ip.src))
        {
            let flow = policy::Flow::of(&ip);
            if self.policing.remember(now, flow) && self.replicated {
                self.news.push(News::Opened(flow, now));
            }
        }
        self.switch(now, arrival.network, Location::Vtep(arrival.vtep), inner)
    }

    /// Learning and forwarding, the same for both ways in. `ingress` exists.
    fn switch(&mut self, now: Instant, network: NetworkId, ingress: Location, eth: ethernet::Frame<&[u8]>) -> Action {
        let net = &mut self.networks[network];
        let (ports, vteps, config) = (&mut self.ports, &mut self.vteps, &self.config);
        let src = eth.src_addr();
        if !src.is_unicast() {
            return counters_mut(ports, vteps, ingress).drop(DropReason::BadSrcMac);
        }
        let gateway = net.gateway;
        // The gateway stack and the host side speak for the gateway.
        let from_stack =
            matches!(ingress, Location::Port(p) if net.gateway_port == Some(p) || net.host_port == Some(p));
        let as_gateway = gateway.is_some_and(|g| g.mac == src);
        // The stack and the host side are the gateway: they send under its
        // MAC only (what else the host side sends is not the gateway's to
        // send, and would take an endpoint's MAC).
        if let (Location::Port(p), true, false) = (ingress, from_stack, as_gateway) {
            return ports[p].rx.drop(DropReason::SpoofedMac);
        }
        if let Location::Port(p) = ingress
            && !from_stack
        {
            if as_gateway {
                return ports[p].rx.drop(DropReason::SpoofedAddress);
            }
            if let PortGuard::Endpoint(guard) = &ports[p].guard
                && let Err(reason) = guard.check(eth.as_bytes())
            {
                return ports[p].rx.drop(reason);
            }
        }
        // The gateway MAC lives on every host (routed frames arrive under it
        // from all of them, the gateway stack sends under it): never learned.
        // A MAC that moves or is new here is checked first: a switchd
        // endpoint's MAC is taken by no other port (a LAN behind an uplink)
        // and by no VTEP; then the limits.
        let (endpoint_macs, remote_endpoint_macs) = (&net.endpoint_macs, &net.remote_endpoint_macs);
        let may_add = || {
            let local_endpoints = endpoint_macs.contains_key(&src.to_u64());
            let (taken, learned, limit) = match ingress {
                Location::Port(p) => {
                    let remote_endpoints = remote_endpoint_macs.contains(&src.to_u64());
                    let taken = ports[p].guard == PortGuard::Lan && (local_endpoints || remote_endpoints);
                    (taken, ports[p].learned, config.mac_limit)
                }
                Location::Vtep(v) => (local_endpoints, vteps[v].learned, config.vtep_mac_limit),
            };
            if taken {
                Err(DropReason::SpoofedMac)
            } else if learned >= limit {
                Err(DropReason::MacLimit)
            } else {
                Ok(())
            }
        };
        // Replicas hear of a refreshed entry well before it would age out
        // of theirs.
        let share_every = if self.replicated { config.mac_aging_time / 4 } else { Duration::MAX };
        let learned =
            if as_gateway { Ok(Learned::Refreshed) } else { net.fdb.learn(src, ingress, now, share_every, may_add) };
        match learned {
            Err(reason) => return counters_mut(ports, vteps, ingress).drop(reason),
            Ok(Learned::Refreshed | Learned::Renewed) => {}
            Ok(Learned::New) => *learned_mut(ports, vteps, ingress).expect("ingress exists") += 1,
            Ok(Learned::Moved { from, counted }) => {
                *learned_mut(ports, vteps, ingress).expect("ingress exists") += 1;
                if counted && let Some(n) = learned_mut(ports, vteps, from) {
                    *n -= 1;
                }
                net.moves += 1;
            }
        }
        if self.replicated && matches!(learned, Ok(Learned::New | Learned::Moved { .. } | Learned::Renewed)) {
            self.news.push(News::Learned(Learning { network, mac: src, location: ingress, at: now }));
        }

        if let Location::Port(port) = ingress
            && let Some(request) = neighbor::parse(eth.as_bytes())
            && let Some(&owner) = net.neighbors.get(&request.target())
            && (owner != src || from_stack)
        {
            net.answered += 1;
            return Action::Answer { port, owner, request };
        }

        if let (Location::Port(port), Some(gw), false) = (ingress, gateway, from_stack) {
            let dst = eth.dst_addr();
            // Only frames to the gateway, and broadcasts that may be DHCP, are read further.
            let ip = (dst == gw.mac || (gw.dhcp && dst.is_broadcast()))
                .then(|| l3::ipv4(eth.as_bytes()))
                .flatten()
                .filter(|_| gw.v4.is_some());
            // IPv6 (read once, for the arms below that balance, route or serve it).
            let ip6 = (dst == gw.mac && ip.is_none()).then(|| l3::ipv6(eth.as_bytes())).flatten();
            let own = gw.v4.map(|(own, _)| own);
            let dhcp = gw.dhcp && ip.is_some_and(|ip| ip.is_udp_to(crate::services::dhcp::SERVER_PORT));
            let (stack, host) = (net.gateway_port, net.host_port);
            // The balancer's view, read only where it has VIPs.
            if dst == gw.mac
                && !net.balancer.is_empty()
                && let Some(flow) = ip.map(|ip| ip.flow()).or_else(|| ip6?.flow())
            {
                // To a VIP: balanced (whatever the port: DHCP is not a VIP's).
                if net.balancer.is_vip(flow.dst) {
                    return self.balance(now, network, port, &flow);
                }
                // A backend's reply in a flow of the routing mesh: to the
                // host side here, or back to the host it came in through.
                if net.balancer.is_serving(flow.src) {
                    if let Some(back) = self.unbalance(now, network, ingress, eth, &flow) {
                        return back;
                    }
                    let net = &mut self.networks[network];
                    // (To a host that still carries the network.)
                    if let Some(vtep) = net.balancer.return_vtep(now, &flow).filter(|v| net.vteps.contains(v)) {
                        return Action::Encap { vtep, network };
                    }
                }
            }
            if dst == gw.mac || (dhcp && dst.is_broadcast()) {
                // What switchd itself serves at the gateway address.
                let served = |ip: &l3::Ipv4| ip.is_echo_request() || ip.is_udp_to(53);
                let dns_tcp = |ip: &l3::Ipv4| ip.is_tcp_to(53);
                return match (ip, stack, host) {
                    (Some(_), ..) if dhcp => Action::Local { port, network },
                    (Some(ip), Some(stack), _) if Some(ip.dst) == own && dns_tcp(&ip) => Action::Deliver(stack),
                    // The answers to the stack's health checks.
                    (Some(ip), Some(stack), _)
                        if Some(ip.dst) == own
                            && ip.protocol == Protocol::Tcp
                            && ip.dst_port().is_some_and(|p| HEALTH_CHECK_PORTS.contains(&p)) =>
                    {
                        Action::Deliver(stack)
                    }
                    // With host access, the rest is the host's.
                    (Some(ip), _, Some(host)) if Some(ip.dst) == own && !served(&ip) => Action::Deliver(host),
                    (Some(ip), Some(stack), _) if Some(ip.dst) == own && ip.protocol == Protocol::Tcp => {
                        Action::Deliver(stack)
                    }
                    (Some(ip), ..) if Some(ip.dst) == own => Action::Local { port, network },
                    (Some(ip), ..) => self.route(now, network, port, IpAddr::V4(ip.dst), ip.ttl),
                    // An ARP reply to a question of the host side or the stack.
                    (None, stack, host) if eth.ethertype() == EtherType::Arp && host.or(stack).is_some() => {
                        Action::Deliver(host.or(stack).expect("checked"))
                    }
                    // IPv6 to another network's prefix: routed as IPv4 is.
                    (None, ..)
                        if let Some(ip) = ip6
                            && gw.v6.is_some()
                            && is_routable_v6(ip.dst)
                            && !gw.holds(IpAddr::V6(ip.dst)) =>
                    {
                        self.route(now, network, port, IpAddr::V6(ip.dst), ip.hop_limit)
                    }
                    // DNS over TCP at the gateway's IPv6 address: the stack's, as over IPv4.
                    (None, Some(stack), _)
                        if let Some(ip) = ip6
                            && gw.is_own(IpAddr::V6(ip.dst))
                            && ip.is_tcp_to(53) =>
                    {
                        Action::Deliver(stack)
                    }
                    // The answers to the stack's health checks over IPv6 (an IPv6-only network).
                    (None, Some(stack), _)
                        if let Some(ip) = ip6
                            && gw.is_own(IpAddr::V6(ip.dst))
                            && ip.protocol == Some(Protocol::Tcp)
                            && ip.ports.is_some_and(|(_, p)| HEALTH_CHECK_PORTS.contains(&p)) =>
                    {
                        Action::Deliver(stack)
                    }
                    // With host access, what the gateway does not serve at
                    // its IPv6 address is the host's, as over IPv4.
                    (None, _, Some(host))
                        if let Some(ip) = ip6
                            && gw.is_own(IpAddr::V6(ip.dst))
                            && !ip.is_served() =>
                    {
                        Action::Deliver(host)
                    }
                    // IPv6 for the gateway: echo, DNS (the services answer what they can).
                    (None, ..) if eth.ethertype() == EtherType::Ipv6 => Action::Local { port, network },
                    (None, ..) => self.ports[port].rx.drop(DropReason::NotRoutable),
                };
            }
        }
        let net = &self.networks[network];
        // A router solicitation (to all routers), or a DHCPv6 client's
        // question (to all DHCPv6 servers) where the gateway serves DHCP:
        // the gateway's to answer.
        if let (Location::Port(port), Some(gw), false) = (ingress, gateway, from_stack)
            && (eth.dst_addr() == ALL_ROUTERS || (eth.dst_addr() == ALL_DHCP_SERVERS && gw.dhcp && gw.v6.is_some()))
            && eth.ethertype() == EtherType::Ipv6
        {
            return Action::Local { port, network };
        }
        if !net.balancer.is_empty()
            && let Some(ip) = l3::flow(eth.as_bytes())
        {
            let to_gateway = gateway.is_some_and(|g| g.mac == eth.dst_addr());
            // The host side's connections to a VIP: its own, and those the
            // routing mesh's DNAT rules send there from its published ports.
            if let (Location::Port(p), true) = (ingress, to_gateway)
                && net.host_port == Some(p)
                && net.balancer.is_vip(ip.dst)
            {
                return self.balance(now, network, p, &ip);
            }
            // Another host's mesh flow arriving at a backend here.
            if let (Location::Vtep(v), true) = (ingress, as_gateway)
                && self.is_outside(network, ip.src)
                && let Some(arrival) = self.networks[network].balancer.arrived(now, &ip, v)
                && self.replicated
            {
                self.news.push(News::Arrived(network, arrival));
            }
            if let Some(back) = self.unbalance(now, network, ingress, eth, &ip) {
                return back;
            }
            if let Location::Port(_) = ingress {
                self.networks[network].balancer.direct(&ip);
            }
        }
        self.forward(now, network, ingress, eth)
    }

    /// Gives a frame to a VIP of `network` (from `port`) to a backend, or
    /// refuses it ([`balance`]).
    fn balance(&mut self, now: Instant, network: NetworkId, port: PortId, ip: &l3::Flow) -> Action {
        let aging = self.config.mac_aging_time;
        let net = &mut self.networks[network];
        let gateway = net.gateway.expect("a VIP is in a network with a gateway");
        match net.balancer.pick(now, ip) {
            balance::Pick::To { backend, new } => {
                if let (true, Some(flow)) = (self.replicated, new) {
                    self.news.push(News::Balanced(network, flow));
                }
                let next = match net.fdb.lookup(backend.mac, now, aging) {
                    Some(Location::Port(p)) => Next::Port(p),
                    Some(Location::Vtep(v)) => Next::Vtep(v),
                    None => {
                        net.flooded += 1;
                        Next::Flood
                    }
                };
                let addr = balance::NatAddr::Dst(backend.ip());
                Action::Nat {
                    network,
                    next,
                    rewrite: balance::Rewrite { src_mac: gateway.mac, dst_mac: backend.mac, addr },
                }
            }
            balance::Pick::Refused | balance::Pick::NotVip => {
                self.ports[port].rx.drop(DropReason::NoBackend);
                Action::Reject { port, network, reason: DropReason::NoBackend }
            }
        }
    }

    /// A backend's reply to a client of a local port, in a balanced flow:
    /// back from the VIP.
    fn unbalance(
        &mut self,
        now: Instant,
        network: NetworkId,
        ingress: Location,
        eth: ethernet::Frame<&[u8]>,
        ip: &l3::Flow,
    ) -> Option<Action> {
        let aging = self.config.mac_aging_time;
        let net = &mut self.networks[network];
        let vip = net.balancer.reply_vip(now, ip)?;
        let gateway = net.gateway?;
        // A client behind the gateway: the host side's (through the mesh).
        let client = match net.fdb.lookup(eth.dst_addr(), now, aging) {
            _ if eth.dst_addr() == gateway.mac => net.host_port?,
            Some(Location::Port(client)) => client,
            _ => return None,
        };
        if ingress == Location::Port(client) {
            return None;
        }
        let rewrite =
            balance::Rewrite { src_mac: gateway.mac, dst_mac: eth.dst_addr(), addr: balance::NatAddr::Src(vip) };
        Some(Action::Nat { network, next: Next::Port(client), rewrite })
    }

    /// Whether `ip`, a source in `network`, is a client from outside it:
    /// the host side's own address (the gateway's), or in no network at
    /// all (a client of the routing mesh). A routed client is neither: its
    /// replies are routed back.
    fn is_outside(&self, network: NetworkId, ip: IpAddr) -> bool {
        let in_subnet = |n: &Network| n.gateway.is_some_and(|g| g.holds(ip));
        self.networks[network].gateway.is_some_and(|g| g.is_own(ip)) || !self.networks.values().any(in_subnet)
    }

    /// Makes `services` the VIPs of `network` ([`balance::Balancer::set_services`]).
    pub fn set_services(&mut self, network: NetworkId, services: Vec<balance::Service>) {
        if let Some(net) = self.networks.get_mut(network) {
            net.balancer.set_services(services);
        }
    }

    /// Where a frame goes in its network by its destination MAC.
    fn forward(&mut self, now: Instant, network: NetworkId, ingress: Location, eth: ethernet::Frame<&[u8]>) -> Action {
        let net = &mut self.networks[network];
        let (ports, vteps, config) = (&mut self.ports, &mut self.vteps, &self.config);
        let dst = eth.dst_addr();
        let found = if dst.is_multicast() { None } else { net.fdb.lookup(dst, now, config.mac_aging_time) };
        match (found, ingress) {
            (None, _) => {
                net.flooded += 1;
                Action::Flood { network, ingress }
            }
            (Some(at), _) if at == ingress => counters_mut(ports, vteps, ingress).drop(DropReason::SamePort),
            (Some(Location::Port(out)), _) => Action::Deliver(out),
            (Some(Location::Vtep(_)), Location::Vtep(_)) => {
                counters_mut(ports, vteps, ingress).drop(DropReason::SplitHorizon)
            }
            (Some(Location::Vtep(vtep)), Location::Port(_)) => Action::Encap { vtep, network },
        }
    }

    /// Routes a frame from `port` (on `from`) that was sent to the gateway
    /// for `dst` (with this TTL or hop limit): into the network that holds
    /// that address, if `from` routes to it, to the MAC that address has
    /// there. IPv4 and IPv6 alike.
    fn route(&mut self, now: Instant, from: NetworkId, port: PortId, dst: IpAddr, ttl: u8) -> Action {
        let holds = |n: &Network| n.gateway.is_some_and(|g| g.holds(dst));
        let routed = self.networks[from].routes.iter().copied().find(|id| self.networks.get(*id).is_some_and(holds));
        let reject = |ports: &mut SlotMap<PortId, Port>, reason| {
            ports[port].rx.drop(reason);
            Action::Reject { port, network: from, reason }
        };
        let Some(to) = routed else {
            if self.networks.values().any(holds) {
                return reject(&mut self.ports, DropReason::RouteDenied);
            }
            // Outside every network: the host's, with host access (its
            // routing and NAT take it on); unreachable otherwise.
            return match self.networks[from].host_port {
                Some(host) => Action::Deliver(host),
                None => reject(&mut self.ports, DropReason::NoRoute),
            };
        };
        // The other network's gateway address: answered here, as its
        // gateway; delivered, not forwarded, so whatever its TTL (as a
        // router's own addresses are: `ping -t 1` and traceroute reach them).
        if self.networks[to].gateway.is_some_and(|g| g.is_own(dst)) {
            return Action::Local { port, network: to };
        }
        if ttl <= 1 {
            return reject(&mut self.ports, DropReason::TtlExceeded);
        }
        let aging = self.config.mac_aging_time;
        let net = &mut self.networks[to];
        let (Some(&dst), Some(gw)) = (net.neighbors.get(&dst), net.gateway) else {
            return reject(&mut self.ports, DropReason::NoNeighbor);
        };
        let next = match net.fdb.lookup(dst, now, aging) {
            Some(Location::Port(p)) => Next::Port(p),
            Some(Location::Vtep(v)) => Next::Vtep(v),
            None => {
                net.flooded += 1;
                Next::Flood
            }
        };
        self.networks[from].routed += 1;
        Action::Route { network: to, src: gw.mac, dst, next }
    }

    /// Where a flood on `network` from `ingress` goes: every local port but
    /// the ingress one, and, for a frame from a local port, every VTEP that
    /// carries the network (never back into the underlay).
    fn flood_targets(&self, network: NetworkId, ingress: Location) -> impl Iterator<Item = Location> + '_ {
        let (ports, vteps, stack, host) = match self.networks.get(network) {
            Some(n) => (&n.ports[..], &n.vteps[..], n.gateway_port, n.host_port),
            None => (&[][..], &[][..], None, None),
        };
        let vteps = if matches!(ingress, Location::Port(_)) { vteps } else { &[][..] };
        let ports = ports
            .iter()
            .filter(move |p| Some(**p) != stack && Some(**p) != host)
            .map(|p| Location::Port(*p))
            .filter(move |p| *p != ingress);
        ports.chain(vteps.iter().map(|v| Location::Vtep(*v)))
    }

    /// Makes `macs` the network's gossip entries: remote containers behind
    /// their hosts' VTEPs, known without flooding or learning.
    pub fn set_gossip_macs(&mut self, network: NetworkId, macs: &[(MacAddr, VtepId)], now: Instant) {
        let Some(net) = self.networks.get_mut(network) else { return };
        net.remote_endpoint_macs = macs.iter().map(|(m, _)| m.to_u64()).collect();
        let (ports, vteps) = (&mut self.ports, &mut self.vteps);
        net.fdb.set_gossip(macs, now, |at| {
            if let Some(n) = learned_mut(ports, vteps, at) {
                *n -= 1;
            }
        });
    }

    /// Changes some of `network`'s gossip entries (see
    /// [`Fdb::update_gossip`]): what a change from gossip costs is its
    /// size, not the table's.
    pub fn update_gossip_macs(
        &mut self,
        network: NetworkId,
        gone: &[MacAddr],
        told: &[(MacAddr, VtepId)],
        now: Instant,
    ) {
        let Some(net) = self.networks.get_mut(network) else { return };
        for mac in gone {
            net.remote_endpoint_macs.remove(&mac.to_u64());
        }
        net.remote_endpoint_macs.extend(told.iter().map(|(m, _)| m.to_u64()));
        let (ports, vteps) = (&mut self.ports, &mut self.vteps);
        net.fdb.update_gossip(gone, told, now, |at| {
            if let Some(n) = learned_mut(ports, vteps, at) {
                *n -= 1;
            }
        });
    }

    /// Changes some of the addresses this switch answers ARP and ND for on
    /// `network`: `gone` ones no longer, `told` ones with these MACs.
    pub fn update_neighbors(&mut self, network: NetworkId, gone: &[IpAddr], told: &[(IpAddr, MacAddr)]) {
        if let Some(net) = self.networks.get_mut(network) {
            for ip in gone {
                net.neighbors.remove(ip);
            }
            net.neighbors.extend(told.iter().copied());
        }
    }

    /// The MAC this switch answers for `ip` on `network`, if any.
    pub fn neighbor(&self, network: NetworkId, ip: IpAddr) -> Option<MacAddr> {
        self.networks.get(network)?.neighbors.get(&ip).copied()
    }

    /// Makes `neighbors` the addresses this switch answers ARP and ND for
    /// on `network`.
    pub fn set_neighbors(&mut self, network: NetworkId, neighbors: impl IntoIterator<Item = (IpAddr, MacAddr)>) {
        if let Some(net) = self.networks.get_mut(network) {
            net.neighbors = neighbors.into_iter().collect();
        }
    }

    /// Removes expired MACs; call every [`SwitchConfig::sweep_interval`].
    pub fn handle_timeout(&mut self, now: Instant) {
        let aging = self.config.mac_aging_time;
        let (ports, vteps) = (&mut self.ports, &mut self.vteps);
        for net in self.networks.values_mut() {
            net.fdb.sweep(now, aging, |at| {
                if let Some(n) = learned_mut(ports, vteps, at) {
                    *n -= 1;
                }
            });
        }
    }

    /// The live forwarding entries of a network: MAC, location, kind, time
    /// since seen (learned) or told (gossip); in no order (the data plane
    /// sorts once it merged its replicas', outside their locks).
    pub fn fdb(&self, network: NetworkId, now: Instant) -> Vec<(MacAddr, Location, FdbKind, Duration)> {
        let aging = self.config.mac_aging_time;
        let Some(net) = self.networks.get(network) else { return Vec::new() };
        net.fdb
            .iter()
            .map(|(mac, e)| (mac, e.location, e.kind, now.saturating_duration_since(e.last_seen)))
            .filter(|(_, _, kind, age)| *kind == FdbKind::Gossip || *age <= aging)
            .collect()
    }

    pub fn port_counters(&self, port: PortId) -> Option<&Counters> {
        self.ports.get(port).map(|p| &p.rx)
    }

    pub fn vtep_info(&self, vtep: VtepId) -> Option<VtepInfo> {
        self.vteps.get(vtep).map(|v| VtepInfo {
            addr: v.addr,
            rx: v.rx.clone(),
            last_rx: v.last_rx,
            learned: v.learned,
        })
    }

    /// Datagrams from unknown sources.
    pub fn underlay_counters(&self) -> &Counters {
        &self.underlay
    }

    pub fn network_counters(&self, network: NetworkId) -> Option<NetworkCounters> {
        self.networks.get(network).map(|n| NetworkCounters {
            flooded: n.flooded,
            mac_moves: n.moves,
            fdb_entries: n.fdb.len() as u64,
            neighbor_answers: n.answered,
            routed: n.routed,
            balance: n.balancer.counters(),
        })
    }
}

/// The receive counters of an existing port or VTEP.
fn counters_mut<'a>(
    ports: &'a mut SlotMap<PortId, Port>,
    vteps: &'a mut SlotMap<VtepId, Vtep>,
    at: Location,
) -> &'a mut Counters {
    match at {
        Location::Port(p) => &mut ports[p].rx,
        Location::Vtep(v) => &mut vteps[v].rx,
    }
}

fn learned_mut<'a>(
    ports: &'a mut SlotMap<PortId, Port>,
    vteps: &'a mut SlotMap<VtepId, Vtep>,
    at: Location,
) -> Option<&'a mut u32> {
    match at {
        Location::Port(p) => ports.get_mut(p).map(|p| &mut p.learned),
        Location::Vtep(v) => vteps.get_mut(v).map(|v| &mut v.learned),
    }
}

#[cfg(test)]
mod tests;
