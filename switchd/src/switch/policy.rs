//! Network policy in the data path, enforced on the sender's host before a
//! frame crosses the underlay, in the spirit of Kubernetes NetworkPolicy:
//! an endpoint that no policy selects accepts everything; one that is
//! selected (isolated) accepts only what a rule allows, and the replies of
//! its own connections.
//!
//! The control plane compiles the policies into [`Policing`]: each
//! isolated endpoint (by address: networks' subnets do not overlap) with the rules that may
//! admit traffic to it, each rule a set of source addresses and the ports
//! it opens. A flow's verdict is cached in a bounded [`FlowTable`], so a
//! rule walk happens once per flow, not per frame. Connections an isolated
//! endpoint opens are kept in another (news for the other workers'
//! replicas, since the reply may come in through another one), so their
//! replies pass.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use hashbrown::{HashMap, HashSet};
use ipnet::Ipv4Net;
use switchd_wire::icmpv4::Message;
use switchd_wire::ip::{self, Protocol};
use switchd_wire::ipv6;

use super::balance::ServicePort;
use super::flow_table::FlowTable;
use super::l3;

/// Flows whose verdict is cached.
pub const VERDICTS: usize = 65_536;
/// Connections of isolated endpoints remembered for their replies.
pub const CONNECTIONS: usize = 65_536;
/// A connection's replies pass while it has been silent less than this
/// (conntrack's established TCP keeps days; five minutes covers any
/// request and reply, and keepalives refresh it).
pub const CONNECTION_IDLE: Duration = Duration::from_secs(300);
/// A cached verdict is taken again after this long, whatever happens.
pub const VERDICT_IDLE: Duration = Duration::from_secs(60);

/// Whether a frame asks for something new, so that it is no reply
/// whatever the flow (ICMP has no ports: an echo request from B after A
/// pinged B is B's own question).
fn opens(ip: &l3::Ipv4) -> bool {
    ip.icmp == Some(switchd_wire::icmpv4::Message::EchoRequest)
}

/// Where traffic a rule admits may come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sources {
    pub any: bool,
    pub addresses: HashSet<Ipv4Addr>,
    pub nets: Vec<Ipv4Net>,
}

impl Sources {
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.any || self.addresses.contains(&ip) || self.nets.iter().any(|n| n.contains(&ip))
    }
}

/// One rule: traffic from `from` to `ports` (none: every port and protocol).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub from: Sources,
    pub ports: Vec<ServicePort>,
}

impl Rule {
    fn admits(&self, ip: &l3::Ipv4) -> bool {
        let port_ok = self.ports.is_empty()
            || ip.dst_port().is_some_and(|p| self.ports.contains(&ServicePort { protocol: ip.protocol, port: p }));
        port_ok && self.from.contains(ip.src)
    }
}

/// What became of a frame to an isolated endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not isolated: no policy selects the destination.
    Open,
    /// Rule number `n` admits it.
    Allowed(u32),
    /// A reply in a connection the destination opened.
    Reply,
    Denied,
}

/// A flow, as both tables key it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    pub protocol: Protocol,
    pub src: (Ipv4Addr, u16),
    pub dst: (Ipv4Addr, u16),
}

impl Flow {
    /// ICMP has no ports: its type stands in for them, so that an echo
    /// request and an echo reply are different flows, one the other's way back.
    pub fn of(ip: &l3::Ipv4) -> Flow {
        let (sport, dport) = match (ip.ports, ip.icmp) {
            (Some(ports), _) => ports,
            (None, Some(m)) => (u16::from(u8::from(m)), u16::from(u8::from(m))),
            (None, None) => (0, 0),
        };
        Flow { protocol: ip.protocol, src: (ip.src, sport), dst: (ip.dst, dport) }
    }

    /// The flow the other way: for ICMP, an echo request's is an echo
    /// reply's and the other way round (so that reversing twice is the
    /// flow again, and a reply finds the request's connection).
    fn reversed(self) -> Flow {
        let [request, reply] = [Message::EchoRequest, Message::EchoReply].map(|m| u16::from(u8::from(m)));
        let back = |(ip, p): (Ipv4Addr, u16)| match self.protocol {
            Protocol::Icmp if p == request => (ip, reply),
            Protocol::Icmp if p == reply => (ip, request),
            _ => (ip, p),
        };
        Flow { src: back(self.dst), dst: back(self.src), ..self }
    }
}

/// How long a port's last allowed flow is taken on trust ([`Memo`]).
pub const MEMO_FOR: Duration = Duration::from_secs(1);

/// A flow's identity read straight from a frame's bytes (protocol,
/// addresses, ports), without parsing it: an IPv4 frame that is not a
/// later fragment; for ICMP its type in place of ports (an echo request is
/// not the flow of an echo reply), zeros for other protocols.
pub fn flow_bytes(eth: &[u8]) -> Option<[u8; 13]> {
    if eth.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ihl = usize::from(eth.get(14)? & 0x0f) * 4;
    let fragment = u16::from_be_bytes([*eth.get(20)?, *eth.get(21)?]) & 0x1fff;
    if ihl < 20 || fragment != 0 {
        return None;
    }
    let protocol = *eth.get(23)?;
    let mut key = [0u8; 13];
    key[0] = protocol;
    key[1..9].copy_from_slice(eth.get(26..34)?);
    match protocol {
        6 | 17 => key[9..13].copy_from_slice(eth.get(14 + ihl..18 + ihl)?),
        1 => key[9] = *eth.get(14 + ihl)?,
        _ => {}
    }
    Some(key)
}

/// A port's last allowed flow: while the policy is the same, a frame of
/// that flow within [`MEMO_FOR`] passes on a compare of 13 bytes, so a
/// steady flow pays for policy once a second, not per frame. Only
/// allowed verdicts of frames sent straight on (not balanced) are kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memo {
    key: [u8; 13],
    generation: u64,
    until: Option<Instant>,
}

impl Memo {
    pub fn hit(&self, key: &[u8; 13], generation: u64, now: Instant) -> bool {
        self.until.is_some_and(|u| now < u) && self.generation == generation && self.key == *key
    }

    pub fn set(&mut self, key: [u8; 13], generation: u64, now: Instant) {
        *self = Memo { key, generation, until: Some(now + MEMO_FOR) };
    }
}

/// Counters of policy, for `switchctl stats` and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PolicyCounters {
    /// New flows a rule admitted.
    pub allowed: u64,
    /// Frames no rule admitted (the drop reason `policy_denied`).
    pub denied: u64,
    /// Cached verdicts and remembered connections pushed out by newer ones.
    pub evicted: u64,
}

/// Every network's compiled policy, and the flows it has judged.
#[derive(Debug, Clone)]
pub struct Policing {
    /// Isolated endpoints: address -> the rules that may admit traffic to it.
    isolated: HashMap<Ipv4Addr, Vec<u32>>,
    rules: Vec<Rule>,
    verdicts: FlowTable<Flow, Verdict>,
    connections: FlowTable<Flow, ()>,
    allowed: u64,
    denied: u64,
    /// Every IPv6 address of a dual-stack endpoint or gateway (SLAAC and
    /// link-local) -> its IPv4 address: IPv6 is judged as the same
    /// endpoints' IPv4 would be ([`Policing::ipv6_view`]).
    ipv6_aliases: HashMap<Ipv6Addr, Ipv4Addr>,
    /// Changes with every new policy: ports' memos of older ones are void.
    pub generation: u64,
}

impl Default for Policing {
    fn default() -> Self {
        Policing {
            isolated: HashMap::new(),
            rules: Vec::new(),
            verdicts: FlowTable::new(VERDICTS, VERDICT_IDLE),
            connections: FlowTable::new(CONNECTIONS, CONNECTION_IDLE),
            allowed: 0,
            denied: 0,
            ipv6_aliases: HashMap::new(),
            generation: 0,
        }
    }
}

impl Policing {
    /// Whether any endpoint is isolated (when none is, nothing is checked).
    pub fn is_active(&self) -> bool {
        !self.isolated.is_empty()
    }

    /// Takes new rules and isolated endpoints: cached verdicts go (they
    /// may be wrong now); connections stay (their replies still pass).
    pub fn set(&mut self, rules: Vec<Rule>, isolated: HashMap<Ipv4Addr, Vec<u32>>) {
        self.rules = rules;
        self.isolated = isolated;
        self.verdicts = FlowTable::new(VERDICTS, VERDICT_IDLE);
        self.generation += 1;
    }

    /// Takes the IPv6 addresses of endpoints and gateways, each with its
    /// IPv4 address; cached verdicts go.
    pub fn set_ipv6_aliases(&mut self, aliases: HashMap<Ipv6Addr, Ipv4Addr>) {
        self.ipv6_aliases = aliases;
        self.verdicts = FlowTable::new(VERDICTS, VERDICT_IDLE);
        self.generation += 1;
    }

    /// An IPv6 frame as policy judges it: the IPv4 header its endpoints
    /// would have sent (addresses by [`Policing::set_ipv6_aliases`], an
    /// unknown source as 0.0.0.0, which only a rule from anywhere admits),
    /// its TCP or UDP ports past any extension headers, ICMPv6 echo as
    /// ICMP echo and any other ICMPv6 error as an ICMP one. `None` (not
    /// judged, as ARP is not) for neighbour discovery, multicast listener
    /// messages, a multicast destination, a fragment after the first, and
    /// a destination that is no endpoint's.
    /// `to`: the destination it is judged by, if not its own (a VIP's
    /// backend).
    pub fn ipv6_view(&self, eth: &[u8], to: Option<Ipv6Addr>) -> Option<l3::Ipv4> {
        let packet = ipv6::Packet::new_checked(eth.get(14..)?).ok()?;
        let dst = *self.ipv6_aliases.get(&to.unwrap_or(packet.dst_addr()))?;
        let src = self.ipv6_aliases.get(&packet.src_addr()).copied().unwrap_or(Ipv4Addr::UNSPECIFIED);
        let ipv6::UpperLayer::Protocol(protocol, payload) = packet.upper_layer().ok()? else { return None };
        let (protocol, icmp) = match protocol {
            Protocol::Icmpv6 => match *payload.first()? {
                128 => (Protocol::Icmp, Some(Message::EchoRequest)),
                129 => (Protocol::Icmp, Some(Message::EchoReply)),
                // MLD (130-132, 143) and neighbour discovery (133-137).
                130..=137 | 143 => return None,
                _ => (Protocol::Icmp, Some(Message::DstUnreachable)),
            },
            other => (other, None),
        };
        Some(l3::Ipv4 {
            src,
            dst,
            ttl: packet.hop_limit(),
            protocol,
            payload_at: 0,
            ports: ip::ports(protocol, payload),
            icmp,
            end: 0,
            later_fragment: false,
            fragment: false,
            dont_fragment: true,
        })
    }

    pub fn is_isolated(&self, ip: Ipv4Addr) -> bool {
        self.isolated.contains_key(&ip)
    }

    /// The verdict on a frame (IPv4 header `ip`): cached per flow, the
    /// rules walked once.
    pub fn judge(&mut self, now: Instant, ip: &l3::Ipv4) -> Verdict {
        let Some(rules) = self.isolated.get(&ip.dst) else { return Verdict::Open };
        let flow = Flow::of(ip);
        if let Some(v) = self.verdicts.get(&flow, now) {
            if v == Verdict::Denied {
                self.denied += 1;
            }
            return v;
        }
        if !opens(ip) && self.connections.get(&flow.reversed(), now).is_some() {
            self.verdicts.insert(flow, Verdict::Reply, now);
            return Verdict::Reply;
        }
        let verdict = match rules.iter().find(|r| self.rules.get(**r as usize).is_some_and(|rule| rule.admits(ip))) {
            Some(r) => {
                self.allowed += 1;
                Verdict::Allowed(*r)
            }
            None => {
                self.denied += 1;
                Verdict::Denied
            }
        };
        self.verdicts.insert(flow, verdict, now);
        verdict
    }

    /// What `judge` would say, without caching or counting (for `trace`).
    pub fn explain(&self, ip: &l3::Ipv4) -> Verdict {
        let Some(rules) = self.isolated.get(&ip.dst) else { return Verdict::Open };
        if !opens(ip) && self.connections.get_unmarked(&Flow::of(ip).reversed()).is_some() {
            return Verdict::Reply;
        }
        match rules.iter().find(|r| self.rules.get(**r as usize).is_some_and(|rule| rule.admits(ip))) {
            Some(r) => Verdict::Allowed(*r),
            None => Verdict::Denied,
        }
    }

    /// Remembers a flow an isolated endpoint (its source) sends, so its
    /// replies pass; whether it is new (news for the other replicas).
    pub fn remember(&mut self, now: Instant, flow: Flow) -> bool {
        let new = self.connections.get(&flow, now).is_none();
        self.connections.insert(flow, (), now);
        if new {
            // Its replies pass, whatever was judged of that flow before.
            self.verdicts.insert(flow.reversed(), Verdict::Reply, now);
        }
        new
    }

    pub fn counters(&self) -> PolicyCounters {
        PolicyCounters {
            allowed: self.allowed,
            denied: self.denied,
            evicted: self.verdicts.evicted + self.connections.evicted,
        }
    }
}

#[cfg(test)]
mod tests {
    use etherparse::PacketBuilder;

    use super::*;

    fn tcp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> l3::Ipv4 {
        let mut out = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1])
            .ipv4(src, dst, 64)
            .tcp(sport, dport, 1, 1000)
            .write(&mut out, b"")
            .unwrap();
        l3::ipv4(&out).unwrap()
    }

    const DB: [u8; 4] = [10, 0, 1, 5];
    const FRONT: [u8; 4] = [10, 0, 0, 7];
    const OTHER: [u8; 4] = [10, 0, 0, 8];

    fn policing() -> Policing {
        let mut p = Policing::default();
        let from = Sources { addresses: [Ipv4Addr::from(FRONT)].into(), ..Sources::default() };
        let rule = Rule { from, ports: vec![ServicePort { protocol: Protocol::Tcp, port: 5432 }] };
        p.set(vec![rule], [(Ipv4Addr::from(DB), vec![0])].into());
        p
    }

    #[test]
    fn an_isolated_endpoint_takes_only_what_a_rule_allows() {
        let now = Instant::now();
        let mut p = policing();
        assert_eq!(p.judge(now, &tcp(FRONT, 40000, DB, 5432)), Verdict::Allowed(0));
        assert_eq!(p.judge(now, &tcp(FRONT, 40000, DB, 5432)), Verdict::Allowed(0), "cached");
        assert_eq!(p.judge(now, &tcp(FRONT, 40001, DB, 22)), Verdict::Denied, "another port");
        assert_eq!(p.judge(now, &tcp(OTHER, 40002, DB, 5432)), Verdict::Denied, "another source");
        assert_eq!(p.judge(now, &tcp(OTHER, 40003, FRONT, 80)), Verdict::Open, "FRONT is not isolated");
        assert_eq!(p.counters(), PolicyCounters { allowed: 1, denied: 2, evicted: 0 });
        assert_eq!(p.explain(&tcp(OTHER, 1, DB, 5432)), Verdict::Denied);
    }

    /// An IPv6 frame of `proto` (its header) behind a hop-by-hop options
    /// header, to `dst`.
    fn v6(src: &str, dst: &str, upper: u8, l4: &[u8]) -> Vec<u8> {
        let (src, dst): (Ipv6Addr, Ipv6Addr) = (src.parse().unwrap(), dst.parse().unwrap());
        let mut out = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x86, 0xdd];
        let payload_len = 8 + l4.len() as u16;
        out.extend_from_slice(&[0x60, 0, 0, 0]);
        out.extend_from_slice(&payload_len.to_be_bytes());
        out.extend_from_slice(&[0, 64]); // next: hop-by-hop options
        out.extend_from_slice(&src.octets());
        out.extend_from_slice(&dst.octets());
        out.extend_from_slice(&[upper, 0, 1, 4, 0, 0, 0, 0]); // PadN
        out.extend_from_slice(l4);
        out
    }

    /// IPv6 is judged as its endpoints' IPv4: the same rule admits the
    /// same traffic, an unknown source only what comes from anywhere, and
    /// neighbour discovery is never judged.
    #[test]
    fn ipv6_is_judged_as_the_same_endpoints_ipv4() {
        let now = Instant::now();
        let mut p = policing();
        let aliases = [("fd00::7", FRONT), ("fe80::7", FRONT), ("fd00:1::5", DB), ("fd00::8", OTHER)];
        p.set_ipv6_aliases(aliases.iter().map(|(v6, v4)| (v6.parse().unwrap(), Ipv4Addr::from(*v4))).collect());
        let tcp_to = |dport: u16| [0x9c, 0x40, (dport >> 8) as u8, dport as u8, 0, 0, 0, 0];
        let view = |frame: Vec<u8>| p.ipv6_view(&frame, None);
        let allowed = view(v6("fd00::7", "fd00:1::5", 6, &tcp_to(5432))).expect("judged");
        assert_eq!((allowed.src, allowed.dst, allowed.dst_port()), (FRONT.into(), DB.into(), Some(5432)));
        let from_link_local = view(v6("fe80::7", "fd00:1::5", 6, &tcp_to(5432))).unwrap();
        let denied = view(v6("fd00::8", "fd00:1::5", 6, &tcp_to(5432))).unwrap();
        let stranger = view(v6("2001:db8::1", "fd00:1::5", 6, &tcp_to(5432))).unwrap();
        assert_eq!(stranger.src, Ipv4Addr::UNSPECIFIED);
        let ping = view(v6("fd00::8", "fd00:1::5", 58, &[128, 0, 0, 0, 0, 1, 0, 1])).unwrap();
        assert_eq!((ping.protocol, ping.icmp), (Protocol::Icmp, Some(Message::EchoRequest)));
        // Not judged: neighbour discovery, multicast, no endpoint's address.
        assert_eq!(view(v6("fd00::8", "fd00:1::5", 58, &[135, 0, 0, 0, 0, 0, 0, 0])), None, "a solicitation");
        assert_eq!(view(v6("fd00::8", "ff02::1", 6, &tcp_to(5432))), None);
        assert_eq!(view(v6("fd00::8", "fd00:1::99", 6, &tcp_to(5432))), None);
        let mut later = v6("fd00::8", "fd00:1::5", 44, &[6, 0, 0, 8, 0, 0, 0, 1]); // a fragment at offset 1
        later.extend_from_slice(&tcp_to(5432));
        later[18..20].copy_from_slice(&(8u16 + 8 + 8).to_be_bytes());
        assert_eq!(view(later), None, "a later fragment");
        assert_eq!(p.judge(now, &allowed), Verdict::Allowed(0));
        assert_eq!(p.judge(now, &from_link_local), Verdict::Allowed(0));
        assert_eq!(p.judge(now, &denied), Verdict::Denied);
        assert_eq!(p.judge(now, &stranger), Verdict::Denied);
        assert_eq!(p.judge(now, &ping), Verdict::Denied);
    }

    #[test]
    fn replies_to_an_isolated_endpoints_own_connections_pass() {
        let now = Instant::now();
        let mut p = policing();
        // DB opens a connection to OTHER (not isolated: it is let through);
        // OTHER's reply to DB passes, a new connection from OTHER does not.
        let out = tcp(DB, 50000, OTHER, 443);
        assert!(p.remember(now, Flow::of(&out)));
        assert!(!p.remember(now, Flow::of(&out)), "known: no news");
        assert_eq!(p.judge(now, &tcp(OTHER, 443, DB, 50000)), Verdict::Reply);
        assert_eq!(p.judge(now, &tcp(OTHER, 443, DB, 50001)), Verdict::Denied);
        let later = now + CONNECTION_IDLE + Duration::from_secs(1);
        assert_eq!(p.judge(later, &tcp(OTHER, 443, DB, 50000)), Verdict::Denied, "forgotten when idle");
    }

    #[test]
    fn a_thousand_rules_are_walked_once_per_flow() {
        let now = Instant::now();
        let mut p = Policing::default();
        let rules: Vec<Rule> = (0..1000u32)
            .map(|i| Rule {
                from: Sources { addresses: [Ipv4Addr::from(0x0a64_0000 + i)].into(), ..Sources::default() },
                ports: vec![],
            })
            .collect();
        p.set(rules, [(Ipv4Addr::from(DB), (0..1000).collect())].into());
        let last = Ipv4Addr::from(0x0a64_0000u32 + 999).octets();
        assert_eq!(p.judge(now, &tcp(last, 1, DB, 80)), Verdict::Allowed(999));
        assert_eq!(p.judge(now, &tcp(FRONT, 1, DB, 80)), Verdict::Denied);
    }

    fn ping(src: [u8; 4], dst: [u8; 4], reply: bool) -> (Vec<u8>, l3::Ipv4) {
        let mut out = Vec::new();
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1]).ipv4(src, dst, 64);
        let b = if reply { b.icmpv4_echo_reply(7, 1) } else { b.icmpv4_echo_request(7, 1) };
        b.write(&mut out, b"ping").unwrap();
        let ip = l3::ipv4(&out).unwrap();
        (out, ip)
    }

    /// An isolated endpoint's ping is answered; the same peer's own ping
    /// to it is not, in the tables or in a port's memo.
    #[test]
    fn an_echo_request_is_never_a_reply() {
        let now = Instant::now();
        let mut p = policing();
        let (_, out) = ping(DB, OTHER, false);
        p.remember(now, Flow::of(&out));
        let (reply_bytes, reply) = ping(OTHER, DB, true);
        let (request_bytes, request) = ping(OTHER, DB, false);
        assert_eq!(p.judge(now, &reply), Verdict::Reply);
        assert_eq!(p.judge(now, &request), Verdict::Denied);
        assert_eq!(p.judge(now, &reply), Verdict::Reply, "the denial cached did not touch the reply's flow");
        assert_ne!(flow_bytes(&reply_bytes), flow_bytes(&request_bytes), "a memo tells them apart");
        let mut memo = Memo::default();
        memo.set(flow_bytes(&reply_bytes).unwrap(), 1, now);
        assert!(!memo.hit(&flow_bytes(&request_bytes).unwrap(), 1, now));
        assert!(!memo.hit(&flow_bytes(&reply_bytes).unwrap(), 2, now), "another policy");
        assert!(!memo.hit(&flow_bytes(&reply_bytes).unwrap(), 1, now + MEMO_FOR), "expired");
        assert!(memo.hit(&flow_bytes(&reply_bytes).unwrap(), 1, now));
    }

    /// A ping's replies are found by its connection, not only by the
    /// verdict cached when it was opened: after a policy change (which
    /// empties the cache) they still pass. (They were refused: an echo
    /// reply's flow reversed was not the request's.)
    #[test]
    fn a_pings_replies_pass_after_a_policy_change() {
        let now = Instant::now();
        let mut p = policing();
        let (_, out) = ping(DB, OTHER, false);
        assert!(p.remember(now, Flow::of(&out)));
        p.set(p.rules.clone(), p.isolated.clone());
        assert!(!p.remember(now, Flow::of(&out)), "known already: nothing cached anew");
        let (_, reply) = ping(OTHER, DB, true);
        assert_eq!(p.judge(now, &reply), Verdict::Reply);
        assert_eq!(Flow::of(&out).reversed().reversed(), Flow::of(&out));
        let (_, request) = ping(OTHER, DB, false);
        assert_eq!(p.judge(now, &request), Verdict::Denied, "still not the other's own ping");
    }
}
