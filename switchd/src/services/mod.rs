//! What the gateway serves, on every host alike: ping, DHCP ([`dhcp`]),
//! DNS ([`dns`]), and the ICMP errors of routing ([`icmp`]).
//!
//! The switch hands the data plane frames for the gateway
//! (`Action::Local`) and frames it will not route (`Action::Reject`); the
//! worker answers them here, outside the switch's lock, from [`Tables`]: a
//! snapshot of names, leases and gateways that the control plane replaces
//! whenever endpoints or networks change. Sans-IO: a frame in, a frame out.

pub mod dhcp;
pub mod dhcp6;
pub mod dns;
pub mod icmp;
pub mod icmpv6;
pub mod reset;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use hashbrown::HashMap;
use ipnet::Ipv4Net;
use switchd_config::MacAddr;
use switchd_wire::ethernet::{self, EtherType};
use switchd_wire::ip::Protocol;
use switchd_wire::{ipv4, udp};

use crate::switch::guard::link_local;
use crate::switch::{DropReason, NetworkId, PortId, l3};
use dns::Directory;

/// A network's gateway and what it offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkServices {
    pub name: String,
    pub gateway: Ipv4Addr,
    pub mac: MacAddr,
    pub prefix_len: u8,
    pub mtu: u16,
    /// Whether containers get a default route (not on internal networks).
    pub router: bool,
    pub dns: bool,
    pub dhcp: bool,
    /// Subnets of the networks this one routes to.
    pub routes: Vec<Ipv4Net>,
    /// Every container on the network, on any host.
    pub directory: Arc<Directory>,
    /// With a subnet6: what the gateway advertises, and its IPv6 address.
    pub ipv6: Option<icmpv6::Advertised>,
}

impl NetworkServices {
    /// Whether `ip` is in the network's subnet.
    pub fn holds(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix_len)).unwrap_or(0);
        u32::from(ip) & mask == u32::from(self.gateway) & mask
    }

    /// Whether `ip` is in the network's /64.
    pub fn holds6(&self, ip: Ipv6Addr) -> bool {
        self.ipv6.is_some_and(|adv| ip.octets()[..8] == adv.prefix.octets()[..8])
    }
}

/// A local endpoint, as DHCP and DNS see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortServices {
    /// The network the port is on.
    pub network: NetworkId,
    pub name: String,
    pub mac: Option<MacAddr>,
    pub ip: Option<Ipv4Addr>,
    /// Its IPv6 address (given, or its MAC's SLAAC one), on a network with a subnet6.
    pub ip6: Option<Ipv6Addr>,
    /// The networks whose names it may resolve: all those its container is on.
    pub sees: Vec<NetworkId>,
}

/// The snapshot the workers serve from.
#[derive(Debug, Default, Clone)]
pub struct Tables {
    pub networks: HashMap<NetworkId, NetworkServices>,
    pub ports: HashMap<PortId, PortServices>,
}

impl Tables {
    /// The lease of the endpoint behind `port`, if it has an IPv4 address.
    pub fn lease(&self, port: PortId, network: NetworkId) -> Option<dhcp::Lease> {
        let (p, n) = (self.ports.get(&port)?, self.networks.get(&network)?);
        Some(dhcp::Lease {
            mac: p.mac?,
            ip: p.ip?,
            prefix_len: n.prefix_len,
            server: n.gateway,
            router: n.router.then_some(n.gateway),
            dns: n.dns.then_some(n.gateway),
            mtu: n.mtu,
            routes: n.routes.clone(),
            hostname: p.name.clone(),
        })
    }

    /// The local endpoint of `network` with address `ip`: its IPv4 one,
    /// or its IPv6 one on a network with IPv6.
    pub fn port_with(&self, network: NetworkId, ip: IpAddr) -> Option<PortId> {
        let has = |p: &PortServices| match ip {
            IpAddr::V4(ip) => p.ip == Some(ip),
            IpAddr::V6(ip) => p.ip6 == Some(ip),
        };
        self.ports.iter().find(|(_, p)| p.network == network && has(p)).map(|(id, _)| *id)
    }

    /// The directories a DNS query from `port` is answered from.
    pub fn directories(&self, port: PortId) -> Vec<&Directory> {
        let sees = self.ports.get(&port).map(|p| &p.sees[..]).unwrap_or_default();
        sees.iter().filter_map(|n| self.networks.get(n)).filter(|n| n.dns).map(|n| &*n.directory).collect()
    }
}

macro_rules! service_counters {
    ($($field:ident,)*) => {
        /// What the gateway did, for `switchctl stats`.
        #[derive(Debug, Default)]
        pub struct Counters {
            $(pub $field: AtomicU64,)*
        }

        impl Counters {
            /// The name of every counter.
            pub const KINDS: &'static [&'static str] = &[$(stringify!($field),)*];

            /// Counts what became of a DNS query.
            pub fn count_dns(&self, outcome: dns::Outcome) {
                bump(match outcome {
                    dns::Outcome::Answered => &self.dns_answers,
                    dns::Outcome::NxDomain => &self.dns_nxdomain,
                    dns::Outcome::Refused => &self.dns_refused,
                    dns::Outcome::Dropped => &self.dns_malformed,
                });
            }

            /// Name and value of every counter that is not zero.
            pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
                [$((stringify!($field), self.$field.load(Relaxed)),)*].into_iter().filter(|(_, v)| *v > 0).collect()
            }
        }
    };
}

service_counters! {
    echo_replies,
    router_advertisements,
    icmp_errors,
    refused_connections,
    dhcp_offers,
    dhcp_acks,
    dhcp_naks,
    dhcp_ignored,
    dhcp_unknown_client,
    dhcp_malformed,
    dhcp6_replies,
    dhcp6_ignored,
    dhcp6_unknown_client,
    dhcp6_malformed,
    dns_answers,
    dns_nxdomain,
    dns_refused,
    dns_malformed,
    dns_tcp_queries,
    unserved,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

/// Answers a frame the switch gave the gateway (`Action::Local`) from the
/// port `port` on `network`: writes the reply (an Ethernet frame) into
/// `out`, or leaves `out` empty when there is none.
pub fn serve(tables: &Tables, counters: &Counters, port: PortId, network: NetworkId, eth: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let ipv6 = ethernet::Frame::new_checked(eth).is_ok_and(|f| f.ethertype() == ethernet::EtherType::Ipv6);
    if let (true, Some(net)) = (ipv6, tables.networks.get(&network)) {
        serve_ipv6(tables, counters, (port, network), net, eth, out);
        return;
    }
    let (Some(net), Some(ip)) = (tables.networks.get(&network), l3::ipv4(eth)) else {
        bump(&counters.unserved);
        return;
    };
    let asker = ethernet::Frame::new_unchecked(eth).src_addr();
    let payload = &eth[ip.payload_at.min(eth.len())..];
    match (ip.protocol, ip.dst_port()) {
        // DHCP only from the network's own ports (not routed to another gateway).
        (Protocol::Udp, Some(dhcp::SERVER_PORT))
            if net.dhcp && tables.ports.get(&port).is_some_and(|p| p.network == network) =>
        {
            let lease = tables.lease(port, network);
            match dhcp::respond(udp_payload(payload), lease.as_ref()) {
                dhcp::Outcome::Reply { payload, kind, to } => {
                    bump(match kind {
                        dhcproto::v4::MessageType::Offer => &counters.dhcp_offers,
                        dhcproto::v4::MessageType::Nak => &counters.dhcp_naks,
                        _ => &counters.dhcp_acks,
                    });
                    let dst = match to {
                        dhcp::Destination::Broadcast => Ipv4Addr::BROADCAST,
                        dhcp::Destination::Unicast(ip) => ip,
                    };
                    udp(out, (net.mac, net.gateway, dhcp::SERVER_PORT), (asker, dst, dhcp::CLIENT_PORT), &payload);
                }
                dhcp::Outcome::Ignored(_) => bump(&counters.dhcp_ignored),
                dhcp::Outcome::UnknownClient => bump(&counters.dhcp_unknown_client),
                dhcp::Outcome::Malformed => bump(&counters.dhcp_malformed),
            }
        }
        _ if ip.dst != net.gateway => bump(&counters.unserved),
        (Protocol::Icmp, _) => match icmp::echo_reply(eth, &ip, net.mac, out) {
            true => bump(&counters.echo_replies),
            false => bump(&counters.unserved),
        },
        (Protocol::Udp, Some(53)) if net.dns => {
            let src_port = ip.ports.map_or(0, |(src, _)| src);
            let dirs = tables.directories(port);
            let (outcome, reply) = dns::answer(udp_payload(payload), &dirs, dns::Transport::Udp);
            counters.count_dns(outcome);
            if let Some(reply) = reply {
                udp(out, (net.mac, net.gateway, 53), (asker, ip.src, src_port), &reply);
            }
        }
        // Nothing listens on other UDP ports of the gateway: say so, as a
        // host would (and as traceroute to the gateway expects).
        (Protocol::Udp, Some(_)) => {
            icmp::error(eth, &ip, icmp::PORT_UNREACHABLE, 0, (net.mac, net.gateway), out);
            bump(&counters.icmp_errors);
        }
        _ => bump(&counters.unserved),
    }
}

/// Answers a frame the switch would not route (`Action::Reject`) with the
/// ICMP (ICMPv6) error for `reason`, from `network`'s gateway.
pub fn reject(
    tables: &Tables,
    counters: &Counters,
    network: NetworkId,
    reason: DropReason,
    eth: &[u8],
    out: &mut Vec<u8>,
) {
    out.clear();
    if let (Some(net), Some(ip)) = (tables.networks.get(&network), l3::ipv4(eth)) {
        if reason == DropReason::NoBackend {
            // A VIP refuses for itself, as a host with nothing listening.
            match ip.protocol {
                Protocol::Tcp => reset::tcp_reset(eth, &ip, (net.mac, ip.dst), out),
                _ => icmp::error(eth, &ip, icmp::PORT_UNREACHABLE, 0, (net.mac, ip.dst), out),
            }
            if !out.is_empty() {
                bump(&counters.refused_connections);
            }
            return;
        }
        // Too big for the network it was routed into: that network's MTU.
        let next_hop_mtu = match reason {
            DropReason::FragNeeded => tables.networks.values().find(|n| n.holds(ip.dst)).map_or(0, |n| n.mtu),
            _ => 0,
        };
        icmp::error(eth, &ip, icmp::code_for(reason), next_hop_mtu, (net.mac, net.gateway), out);
    } else if let (Some(net), Some(ip)) = (tables.networks.get(&network), l3::ipv6(eth))
        && let Some(adv) = &net.ipv6
    {
        if reason == DropReason::NoBackend {
            use etherparse::{Icmpv6Type, icmpv6::DestUnreachableCode};
            match ip.protocol {
                Some(Protocol::Tcp) => reset::tcp_reset6(eth, (net.mac, ip.dst), out),
                _ => icmpv6::error(
                    eth,
                    Icmpv6Type::DestinationUnreachable(DestUnreachableCode::Port),
                    (net.mac, ip.dst),
                    out,
                ),
            }
            if !out.is_empty() {
                bump(&counters.refused_connections);
            }
            return;
        }
        let mtu = match reason {
            DropReason::FragNeeded => tables.networks.values().find(|n| n.holds6(ip.dst)).map_or(1280, |n| n.mtu),
            _ => 0,
        };
        icmpv6::error(eth, icmpv6::code_for(reason, mtu), (net.mac, adv.gateway), out);
    }
    if !out.is_empty() {
        bump(&counters.icmp_errors);
    }
}

/// [`serve`] for IPv6: DHCPv6 ([`dhcp6::respond`]), DNS at the gateway's
/// IPv6 address (which its advertisements name as DNS server), and ICMPv6
/// ([`icmpv6::answer`]).
fn serve_ipv6(
    tables: &Tables,
    counters: &Counters,
    (port, network): (PortId, NetworkId),
    net: &NetworkServices,
    eth: &[u8],
    out: &mut Vec<u8>,
) {
    let Some(adv) = &net.ipv6 else {
        bump(&counters.unserved);
        return;
    };
    if let Ok(packet) = etherparse::SlicedPacket::from_ethernet(eth)
        && let Some(etherparse::NetSlice::Ipv6(ip)) = &packet.net
        && let Some(etherparse::TransportSlice::Udp(udp)) = &packet.transport
    {
        let (from, to) = (ip.header().source_addr(), ip.header().destination_addr());
        let asker = ethernet::Frame::new_unchecked(eth).src_addr();
        let own = link_local(adv.mac);
        // DHCPv6 only from the network's own ports (not routed to another gateway).
        if udp.destination_port() == dhcp6::SERVER_PORT
            && [dhcp6::ALL_SERVERS, own, adv.gateway].contains(&to)
            && net.dhcp
            && let Some(p) = tables.ports.get(&port).filter(|p| p.network == network)
        {
            let lease = p.mac.zip(p.ip6).map(|(mac, addr)| dhcp6::Lease { mac, addr });
            let server = dhcp6::Server { mac: adv.mac, dns: net.dns.then_some(adv.gateway) };
            match dhcp6::respond(udp.payload(), asker, &server, lease.as_ref()) {
                dhcp6::Outcome::Reply { payload, .. } => {
                    bump(&counters.dhcp6_replies);
                    // From the address it was sent to (a link-local one for
                    // the multicast), to the client's port.
                    let src = if to == dhcp6::ALL_SERVERS { own } else { to };
                    let builder = etherparse::PacketBuilder::ethernet2(adv.mac.0, asker.0)
                        .ipv6(src.octets(), from.octets(), 64)
                        .udp(dhcp6::SERVER_PORT, udp.source_port());
                    builder.write(out, &payload).expect("a frame in a Vec");
                }
                dhcp6::Outcome::Ignored => bump(&counters.dhcp6_ignored),
                dhcp6::Outcome::UnknownClient => bump(&counters.dhcp6_unknown_client),
                dhcp6::Outcome::Malformed => bump(&counters.dhcp6_malformed),
            }
            return;
        }
        if to != adv.gateway || udp.destination_port() != 53 || !net.dns {
            bump(&counters.unserved);
            return;
        }
        let dirs = tables.directories(port);
        let (outcome, reply) = dns::answer(udp.payload(), &dirs, dns::Transport::Udp);
        counters.count_dns(outcome);
        if let Some(reply) = reply {
            let builder = etherparse::PacketBuilder::ethernet2(adv.mac.0, asker.0)
                .ipv6(to.octets(), from.octets(), 64)
                .udp(53, udp.source_port());
            builder.write(out, &reply).expect("a frame in a Vec");
        }
        return;
    }
    match icmpv6::answer(eth, adv, out) {
        // The reply's ICMPv6 type, after its Ethernet and IPv6 headers.
        true if out.get(54) == Some(&134) => bump(&counters.router_advertisements),
        true => bump(&counters.echo_replies),
        false => bump(&counters.unserved),
    }
}

/// The data of a UDP datagram (`datagram` starts at its header), bounded by
/// its length field; nothing if the header is not whole.
fn udp_payload(datagram: &[u8]) -> &[u8] {
    udp::Packet::new_checked(datagram).map_or(&[][..], |d| {
        let len = usize::from(d.len());
        &datagram[udp::HEADER_LEN..len]
    })
}

/// Writes an Ethernet/IPv4/UDP frame from `(mac, ip, port)` to `(mac, ip, port)`,
/// checksums filled.
fn udp(out: &mut Vec<u8>, from: (MacAddr, Ipv4Addr, u16), to: (MacAddr, Ipv4Addr, u16), payload: &[u8]) {
    let udp_len = udp::HEADER_LEN + payload.len();
    let ip = ipv4::Repr { src_addr: from.1, dst_addr: to.1, protocol: Protocol::Udp, payload_len: udp_len, ttl: 64 };
    let start = out.len();
    out.resize(start + ethernet::HEADER_LEN + ip.buffer_len() + udp_len, 0);
    let mut frame = ethernet::Frame::new_unchecked(&mut out[start..]);
    ethernet::Repr { src_addr: from.0, dst_addr: to.0, ethertype: EtherType::Ipv4 }.emit(&mut frame);
    let (header, datagram) = frame.payload_mut().split_at_mut(ipv4::MIN_HEADER_LEN);
    ip.emit(header);
    datagram[..2].copy_from_slice(&from.2.to_be_bytes());
    datagram[2..4].copy_from_slice(&to.2.to_be_bytes());
    datagram[udp::HEADER_LEN..].copy_from_slice(payload);
    let mut d = udp::Packet::new_unchecked(&mut datagram[..]);
    d.set_len(udp_len as u16);
    let pseudo = ipv4::Packet::new_unchecked(&*header).pseudo_header(udp_len as u32);
    d.fill_checksum(pseudo);
}

/// `ip` if it is an IPv4 address (the gateway services are IPv4's).
pub fn v4(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(_) => None,
    }
}
