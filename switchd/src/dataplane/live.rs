//! `switchctl trace --live`: the real decisions for real frames, as they
//! cross, for the frames a trace asks for.
//!
//! Off, it costs one relaxed load per batch (a worker then never looks at
//! the frames for it). On, each frame is matched against the running
//! traces' filters after the switch planned it; a match copies the frame's
//! head and the plan into a bounded queue, and a full queue drops the copy
//! and counts it: a trace never slows the data path. A trace's count is
//! also kept here, so workers stop copying once it has what it asked for.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use switchd_config::MacAddr;

use crate::switch::{Action, NetworkId, Plan, PortId, Target, VtepId};

/// Frames a trace holds before it drops and counts.
pub const QUEUE: usize = 1024;
/// Live traces that may run at once.
pub const MAX_TRACES: usize = 8;
/// Bytes of each frame kept: its headers, enough to name it.
pub const HEAD: usize = 128;

/// Where a traced frame came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Port(PortId),
    /// A VXLAN datagram from this VTEP address.
    Vtep(IpAddr),
}

/// One real frame and what the switch decided for it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Microseconds since the epoch.
    pub at_us: u64,
    pub worker: usize,
    pub origin: Origin,
    /// The Ethernet frame's first [`HEAD`] bytes (for a datagram: its
    /// inner frame's, once opened; the datagram's own when it was dropped
    /// before).
    pub head: Vec<u8>,
    /// The whole frame's (or datagram's) length.
    pub len: usize,
    /// The VNI a datagram carried.
    pub vni: Option<u32>,
    pub plan: Plan,
}

/// What a live trace matches: every condition given must hold.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// A network: frames from its ports, datagrams with its VNI, frames
    /// routed into it.
    pub network: Option<(NetworkId, u32, Vec<PortId>)>,
    /// An endpoint's ports and MACs: frames from its ports, to its ports,
    /// or addressed to its MACs (dropped ones too).
    pub endpoint: Option<(Vec<PortId>, Vec<MacAddr>)>,
    /// A host: datagrams from its VTEP address, frames sent to its VTEPs.
    pub host: Option<(IpAddr, Vec<VtepId>)>,
    /// An IP protocol number (1 ICMP, 6 TCP, 17 UDP), or ARP's EtherType.
    pub proto: Option<Proto>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Ip(u8),
    Arp,
}

impl Filter {
    /// Whether a frame from `origin` with this head (and the VNI it came
    /// with), planned so, is one to trace.
    pub fn matches(&self, origin: Origin, head: &[u8], vni: Option<u32>, plan: &Plan) -> bool {
        let from_port = |ports: &[PortId]| matches!(origin, Origin::Port(p) if ports.contains(&p));
        let to_port = |ports: &[PortId]| plan.ports().any(|p| ports.contains(&p)) || delivered_to(plan, ports);
        if let Some((id, net_vni, ports)) = &self.network {
            let into = match plan.action {
                Action::Route { network, .. }
                | Action::Nat { network, .. }
                | Action::Encap { network, .. }
                | Action::Flood { network, .. } => network == *id,
                _ => false,
            };
            if !(from_port(ports) || to_port(ports) || vni == Some(*net_vni) || into) {
                return false;
            }
        }
        if let Some((ports, macs)) = &self.endpoint
            && !(from_port(ports) || to_port(ports) || head.get(..6).is_some_and(|d| macs.iter().any(|m| m.0 == d)))
        {
            return false;
        }
        if let Some((ip, vteps)) = &self.host {
            let from = origin == Origin::Vtep(*ip);
            let to = plan.targets.iter().any(|t| matches!(t, Target::Vtep(v) if vteps.contains(v)));
            if !(from || to) {
                return false;
            }
        }
        match self.proto {
            None => true,
            Some(proto) => protocol(head) == Some(proto),
        }
    }
}

fn delivered_to(plan: &Plan, ports: &[PortId]) -> bool {
    matches!(plan.action, Action::Deliver(p) if ports.contains(&p))
}

/// The protocol of an Ethernet frame (one VLAN tag looked through).
pub fn protocol(eth: &[u8]) -> Option<Proto> {
    let mut at = 12;
    let mut ethertype = u16::from_be_bytes(eth.get(at..at + 2)?.try_into().ok()?);
    if ethertype == 0x8100 {
        at += 4;
        ethertype = u16::from_be_bytes(eth.get(at..at + 2)?.try_into().ok()?);
    }
    let ip = at + 2;
    match ethertype {
        0x0806 => Some(Proto::Arp),
        0x0800 => eth.get(ip + 9).map(|&p| Proto::Ip(p)),
        0x86dd => eth.get(ip + 6).map(|&p| Proto::Ip(p)),
        _ => None,
    }
}

/// An Ethernet frame's head in one line, as tcpdump would name it.
pub fn summarize(eth: &[u8]) -> String {
    use etherparse::{LaxNetSlice, LaxSlicedPacket, TransportSlice};
    let mac = |b: &[u8]| b.get(..6).and_then(|m| <[u8; 6]>::try_from(m).ok()).map(MacAddr);
    let (Some(dst), Some(src)) = (mac(eth), eth.get(6..).and_then(mac)) else {
        return format!("{} bytes, not an Ethernet frame", eth.len());
    };
    let macs = format!("{src} > {dst}");
    let Ok(p) = LaxSlicedPacket::from_ethernet(eth) else { return macs };
    let (from, to) = match &p.net {
        Some(LaxNetSlice::Ipv4(ip)) => {
            (ip.header().source_addr().to_string(), ip.header().destination_addr().to_string())
        }
        Some(LaxNetSlice::Ipv6(ip)) => {
            (ip.header().source_addr().to_string(), ip.header().destination_addr().to_string())
        }
        _ => {
            if let Ok(a) = switchd_wire::arp::Packet::new_checked(eth.get(14..).unwrap_or_default())
                .map(|a| switchd_wire::arp::Repr::parse(&a))
            {
                let op = match a.operation {
                    switchd_wire::arp::Operation::Request => format!("who-has {} tell {}", a.target_ip, a.sender_ip),
                    switchd_wire::arp::Operation::Reply => format!("{} is-at {}", a.sender_ip, a.sender_mac),
                    _ => "other".into(),
                };
                return format!("{macs}, ARP {op}");
            }
            return macs;
        }
    };
    let what = match &p.transport {
        Some(TransportSlice::Tcp(t)) => format!("{from}.{} > {to}.{} TCP", t.source_port(), t.destination_port()),
        Some(TransportSlice::Udp(u)) => format!("{from}.{} > {to}.{} UDP", u.source_port(), u.destination_port()),
        Some(TransportSlice::Icmpv4(i)) => {
            use etherparse::Icmpv4Type::{DestinationUnreachable, EchoReply, EchoRequest, TimeExceeded};
            let what = match i.icmp_type() {
                EchoRequest(e) => format!("echo request, id {}, seq {}", e.id, e.seq),
                EchoReply(e) => format!("echo reply, id {}, seq {}", e.id, e.seq),
                DestinationUnreachable(_) => "destination unreachable".into(),
                TimeExceeded(_) => "time exceeded".into(),
                _ => format!("type {}", i.type_u8()),
            };
            format!("{from} > {to} ICMP {what}")
        }
        Some(TransportSlice::Icmpv6(i)) => format!("{from} > {to} ICMPv6 type {}", i.type_u8()),
        _ => format!("{from} > {to}"),
    };
    format!("{macs}, {what}")
}

/// One running trace, as the workers see it.
#[derive(Debug)]
struct Sink {
    id: u64,
    filter: Filter,
    frames: mpsc::Sender<Seen>,
    /// Matches still wanted (`u64::MAX`: no limit).
    wanted: AtomicU64,
    lost: Arc<AtomicU64>,
}

/// The running live traces, shared by the workers and the control plane.
#[derive(Debug, Default)]
pub struct Hub {
    on: AtomicBool,
    sinks: Mutex<Arc<[Arc<Sink>]>>,
    next_id: AtomicU64,
}

/// The traces a worker offers its batch to.
#[derive(Debug)]
pub struct Offer(Arc<[Arc<Sink>]>);

impl Hub {
    /// The running traces, once per batch; `None` (the usual case) costs
    /// one relaxed load.
    #[inline]
    pub fn running(&self) -> Option<Offer> {
        if !self.on.load(Relaxed) {
            return None;
        }
        Some(Offer(self.sinks.lock().unwrap_or_else(|p| p.into_inner()).clone()))
    }

    /// Starts a trace of at most `count` frames; `None` if
    /// [`MAX_TRACES`] run already.
    pub fn start(self: &Arc<Self>, filter: Filter, count: Option<u64>) -> Option<LiveTrace> {
        let mut sinks = self.sinks.lock().unwrap_or_else(|p| p.into_inner());
        if sinks.len() >= MAX_TRACES {
            return None;
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let id = self.next_id.fetch_add(1, Relaxed);
        let lost = Arc::new(AtomicU64::new(0));
        let sink =
            Sink { id, filter, frames: tx, wanted: AtomicU64::new(count.unwrap_or(u64::MAX)), lost: lost.clone() };
        *sinks = sinks.iter().cloned().chain([Arc::new(sink)]).collect();
        self.on.store(true, Relaxed);
        Some(LiveTrace { hub: self.clone(), id, frames: rx, lost })
    }

    fn stop(&self, id: u64) {
        let mut sinks = self.sinks.lock().unwrap_or_else(|p| p.into_inner());
        *sinks = sinks.iter().filter(|s| s.id != id).cloned().collect();
        self.on.store(!sinks.is_empty(), Relaxed);
    }
}

impl Offer {
    /// Offers a planned frame to every trace whose filter it matches;
    /// `head` is (the start of) its Ethernet frame.
    pub fn offer(&self, worker: usize, origin: Origin, head: &[u8], len: usize, vni: Option<u32>, plan: &Plan) {
        for sink in self.0.iter() {
            if sink.wanted.load(Relaxed) == 0 || !sink.filter.matches(origin, head, vni, plan) {
                continue;
            }
            let seen = Seen {
                at_us: super::capture::now_us(),
                worker,
                origin,
                head: head[..head.len().min(HEAD)].to_vec(),
                len,
                vni,
                plan: plan.clone(),
            };
            match sink.frames.try_send(seen) {
                Ok(()) => {
                    // Racing workers may overshoot by a frame each; the
                    // reader stops at the count anyway.
                    let _ = sink.wanted.fetch_update(Relaxed, Relaxed, |w| w.checked_sub(1));
                }
                Err(_) => {
                    sink.lost.fetch_add(1, Relaxed);
                }
            }
        }
    }
}

/// A running live trace; it ends when dropped.
#[derive(Debug)]
pub struct LiveTrace {
    hub: Arc<Hub>,
    id: u64,
    /// The frames it matched, in the order the workers took them.
    pub frames: mpsc::Receiver<Seen>,
    lost: Arc<AtomicU64>,
}

impl LiveTrace {
    /// Matches dropped for want of room so far.
    pub fn lost(&self) -> u64 {
        self.lost.load(Relaxed)
    }
}

impl Drop for LiveTrace {
    fn drop(&mut self) {
        self.hub.stop(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slotmap::KeyData;

    fn port(n: u64) -> PortId {
        PortId::from(KeyData::from_ffi(n | 1 << 32))
    }

    fn icmp_frame() -> Vec<u8> {
        let mut eth = vec![0u8; 64];
        eth[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        eth[14 + 9] = 1;
        eth
    }

    #[test]
    fn filters_match_by_port_network_host_and_protocol() {
        let plan = Plan { action: Action::Deliver(port(2)), targets: vec![Target::Port(port(2))], ..Plan::default() };
        let eth = icmp_frame();
        let from = Origin::Port(port(1));
        let f = |filter: Filter| filter.matches(from, &eth, None, &plan);
        assert!(f(Filter::default()), "no condition: everything");
        assert!(f(Filter { endpoint: Some((vec![port(2)], vec![])), ..Filter::default() }), "to the endpoint");
        assert!(f(Filter { endpoint: Some((vec![port(1)], vec![])), ..Filter::default() }), "from the endpoint");
        assert!(!f(Filter { endpoint: Some((vec![port(3)], vec![])), ..Filter::default() }), "neither");
        assert!(f(Filter { proto: Some(Proto::Ip(1)), ..Filter::default() }));
        assert!(!f(Filter { proto: Some(Proto::Ip(6)), ..Filter::default() }), "not TCP");
        assert!(!f(Filter { proto: Some(Proto::Arp), ..Filter::default() }));
        let net = NetworkId::default();
        assert!(f(Filter { network: Some((net, 10, vec![port(1)])), ..Filter::default() }), "from its port");
        assert!(!f(Filter { network: Some((net, 10, vec![port(5)])), ..Filter::default() }));
        let ip: IpAddr = "198.18.0.2".parse().unwrap();
        let host = Filter { host: Some((ip, vec![])), ..Filter::default() };
        assert!(!f(host.clone()), "not from or to that host");
        assert!(host.matches(Origin::Vtep(ip), &eth, Some(10), &plan), "a datagram from it");
        assert!(
            Filter { network: Some((net, 10, vec![])), ..Filter::default() }.matches(
                Origin::Vtep(ip),
                &eth,
                Some(10),
                &plan
            ),
            "a datagram with the network's VNI"
        );
        assert_eq!(protocol(&[0; 10]), None, "a runt frame has none");
    }

    #[test]
    fn a_trace_takes_what_it_asked_for_drops_and_counts_the_rest_and_ends_when_dropped() {
        let hub = Arc::new(Hub::default());
        assert!(hub.running().is_none());
        let plan = Plan::default();
        let eth = icmp_frame();
        let mut trace = hub.start(Filter::default(), Some(3)).unwrap();
        let offer = hub.running().expect("on");
        for _ in 0..5 {
            offer.offer(0, Origin::Port(port(1)), &eth, 1000, None, &plan);
        }
        let mut seen = 0;
        while let Ok(s) = trace.frames.try_recv() {
            assert_eq!((s.len, s.head.len()), (1000, 64));
            seen += 1;
        }
        assert_eq!((seen, trace.lost()), (3, 0), "three wanted, the rest not copied");

        let mut small = hub.start(Filter::default(), None).unwrap();
        let offer = hub.running().unwrap();
        for _ in 0..QUEUE + 7 {
            offer.offer(0, Origin::Port(port(1)), &eth, 64, None, &plan);
        }
        assert_eq!(small.lost(), 7, "past the queue: dropped and counted");
        assert!(small.frames.try_recv().is_ok());
        let more: Vec<_> = (0..MAX_TRACES).map(|_| hub.start(Filter::default(), None)).collect();
        assert_eq!(more.iter().filter(|t| t.is_none()).count(), 2, "at most {MAX_TRACES} at once");
        drop((more, small, trace));
        assert!(hub.running().is_none(), "off again once every trace ended");
    }
}
