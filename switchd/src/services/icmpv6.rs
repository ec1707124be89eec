//! The gateway's IPv6 (RFC 4861, RFC 4443): router advertisements, in
//! answer to a container's router solicitation or unasked (the daemon
//! sends those through the gateway stack's interface), that give it the
//! network's /64 (SLAAC: the container's kernel makes its address from the
//! prefix and its MAC), the MTU, the gateway's DNS (RDNSS, RFC 8106), and
//! on a network that is not internal a default route; and echo replies.
//!
//! Advertisements come from the gateway's link-local address (hosts drop
//! any other) with hop limit 255 (RFC 4861 6.1.2).

use std::net::Ipv6Addr;

use etherparse::icmpv6::RouterAdvertisementHeader;
use etherparse::{Icmpv6Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use switchd_config::{MacAddr, NetworkConfig};

use crate::switch::DropReason;
use crate::switch::guard::link_local;
use switchd_wire::ethernet;

/// What the gateway advertises on one network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advertised {
    pub mac: MacAddr,
    /// The network's /64.
    pub prefix: Ipv6Addr,
    /// The gateway's global address (echo, DNS).
    pub gateway: Ipv6Addr,
    pub mtu: u16,
    /// A default router (not an internal network).
    pub router: bool,
    /// The gateway answers DNS (RDNSS).
    pub dns: bool,
    /// The gateway serves DHCPv6: the managed and other-configuration
    /// flags tell DHCPv6 clients to ask.
    pub managed: bool,
}

// What the gateway gives outlasts any gap between its advertisements
// (a lost one, a restart of switchd).
/// Router lifetime (seconds) of a default router: RFC 4861's longest.
const ROUTER_LIFETIME: u16 = 9000;
/// The prefix is the network's for good: valid and preferred for ever
/// (RFC 4861 4.6.2: all ones is infinity).
const VALID_LIFETIME: u32 = u32::MAX;
const PREFERRED_LIFETIME: u32 = u32::MAX;
/// RDNSS lifetime: for ever too (RFC 8106 5.1).
const RDNSS_LIFETIME: u32 = u32::MAX;

/// What a frame from a container to the gateway is, for IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    Solicitation { from: Ipv6Addr },
    Echo { from: Ipv6Addr, to: Ipv6Addr },
}

fn asked(eth: &[u8]) -> Option<Asked> {
    let packet = SlicedPacket::from_ethernet(eth).ok()?;
    let Some(NetSlice::Ipv6(ip)) = &packet.net else { return None };
    let (from, to) = (ip.header().source_addr(), ip.header().destination_addr());
    let Some(TransportSlice::Icmpv6(icmp)) = &packet.transport else { return None };
    // RFC 4443 2.4: a message whose checksum fails is dropped.
    let sum = icmp.icmp_type().calc_checksum(from.octets(), to.octets(), icmp.payload()).ok()?;
    if sum != icmp.checksum() {
        return None;
    }
    match icmp.icmp_type() {
        // RFC 4861 6.1.1: hop limit 255, code 0.
        Icmpv6Type::RouterSolicitation if ip.header().hop_limit() == 255 && icmp.code_u8() == 0 => {
            Some(Asked::Solicitation { from })
        }
        Icmpv6Type::EchoRequest(_) => Some(Asked::Echo { from, to }),
        _ => None,
    }
}

/// Writes into `out` the gateway's answer to `eth` (from MAC `asker`):
/// an advertisement for a solicitation, an echo reply for a ping to one
/// of its addresses. False when there is none to give.
pub fn answer(eth: &[u8], adv: &Advertised, out: &mut Vec<u8>) -> bool {
    out.clear();
    let asker = MacAddr(eth.get(6..12).and_then(|m| m.try_into().ok()).unwrap_or([0; 6]));
    let own = link_local(adv.mac);
    match asked(eth) {
        Some(Asked::Solicitation { from }) => {
            // From ::, a host without an address yet: to all nodes.
            let to = if from.is_unspecified() { Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1) } else { from };
            advertisement(adv, asker, to, out);
            true
        }
        Some(Asked::Echo { from, to }) if to == adv.gateway || to == own => {
            let Ok(packet) = SlicedPacket::from_ethernet(eth) else { return false };
            let Some(TransportSlice::Icmpv6(icmp)) = &packet.transport else { return false };
            let Icmpv6Type::EchoRequest(echo) = icmp.icmp_type() else { return false };
            let reply = PacketBuilder::ethernet2(adv.mac.0, asker.0)
                .ipv6(to.octets(), from.octets(), 64)
                .icmpv6(Icmpv6Type::EchoReply(echo));
            reply.write(out, icmp.payload()).is_ok()
        }
        _ => false,
    }
}

/// An unsolicited router advertisement, to all nodes (RFC 4861 6.2.4):
/// what keeps a container's prefix, route and DNS server fresh, and
/// configures one that never asked.
pub fn unsolicited(adv: &Advertised, out: &mut Vec<u8>) {
    out.clear();
    let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    advertisement(adv, MacAddr([0x33, 0x33, 0, 0, 0, 1]), all_nodes, out);
}

/// The router advertisement for `adv`, to `to` (MAC `asker`).
fn advertisement(adv: &Advertised, asker: MacAddr, to: Ipv6Addr, out: &mut Vec<u8>) {
    let header = RouterAdvertisementHeader {
        cur_hop_limit: 64,
        managed_address_config: adv.managed,
        other_config: adv.managed,
        router_lifetime: if adv.router { ROUTER_LIFETIME } else { 0 },
    };
    // Reachable time and retransmission timer: unspecified (0).
    let mut body = vec![0u8; 8];
    // Source link-layer address.
    body.extend_from_slice(&[1, 1]);
    body.extend_from_slice(&adv.mac.0);
    // MTU.
    body.extend_from_slice(&[5, 1, 0, 0]);
    body.extend_from_slice(&u32::from(adv.mtu).to_be_bytes());
    // Prefix information: on-link (L) and for autonomous configuration (A).
    body.extend_from_slice(&[3, 4, 64, 0xc0]);
    body.extend_from_slice(&VALID_LIFETIME.to_be_bytes());
    body.extend_from_slice(&PREFERRED_LIFETIME.to_be_bytes());
    body.extend_from_slice(&[0; 4]);
    body.extend_from_slice(&adv.prefix.octets());
    // Recursive DNS server: the gateway.
    if adv.dns {
        body.extend_from_slice(&[25, 3, 0, 0]);
        body.extend_from_slice(&RDNSS_LIFETIME.to_be_bytes());
        body.extend_from_slice(&adv.gateway.octets());
    }
    let builder = PacketBuilder::ethernet2(adv.mac.0, asker.0)
        .ipv6(link_local(adv.mac).octets(), to.octets(), 255)
        .icmpv6(Icmpv6Type::RouterAdvertisement(header));
    builder.write(out, &body).expect("a frame in a Vec");
}

/// The ICMPv6 error a routing refusal is answered with (RFC 4443 3).
pub fn code_for(reason: DropReason, mtu: u16) -> Icmpv6Type {
    use etherparse::icmpv6::{DestUnreachableCode, TimeExceededCode};
    match reason {
        DropReason::RouteDenied => Icmpv6Type::DestinationUnreachable(DestUnreachableCode::Prohibited),
        DropReason::TtlExceeded => Icmpv6Type::TimeExceeded(TimeExceededCode::HopLimitExceeded),
        DropReason::FragNeeded => Icmpv6Type::PacketTooBig { mtu: u32::from(mtu) },
        DropReason::NoNeighbor => Icmpv6Type::DestinationUnreachable(DestUnreachableCode::Address),
        _ => Icmpv6Type::DestinationUnreachable(DestUnreachableCode::NoRoute),
    }
}

/// Writes into `out` the ICMPv6 error `kind` about `eth`, from the
/// gateway `(mac, address)` back to its sender, quoting as much of its
/// packet as keeps the error within the minimum MTU of 1280 (RFC 4443
/// 2.4 (c)). Never about an ICMPv6 error (or a message that cannot be
/// read), a packet sent to a multicast address or as a link-layer
/// multicast (packet too big excepted, RFC 4443 2.4 (e)), or one from an
/// address that names no single host (unspecified, multicast).
pub fn error(eth: &[u8], kind: Icmpv6Type, from: (MacAddr, Ipv6Addr), out: &mut Vec<u8>) {
    out.clear();
    let Ok(packet) = SlicedPacket::from_ethernet(eth) else { return };
    let Some(NetSlice::Ipv6(ip)) = &packet.net else { return };
    let (src, dst) = (ip.header().source_addr(), ip.header().destination_addr());
    if let Some(TransportSlice::Icmpv6(icmp)) = &packet.transport
        && icmp.type_u8() < 128
    {
        return;
    }
    let too_big = matches!(kind, Icmpv6Type::PacketTooBig { .. });
    let to_many = dst.is_multicast() || eth.first().is_some_and(|b| b & 1 == 1);
    if (to_many && !too_big) || src.is_unspecified() || src.is_multicast() {
        return;
    }
    // The packet as it came (its payload length bounds it: never the
    // Ethernet padding), cut to fit.
    let whole =
        (etherparse::Ipv6Header::LEN + usize::from(ip.header().payload_length())).min(eth.len() - ethernet::HEADER_LEN);
    let quote = &eth[ethernet::HEADER_LEN..ethernet::HEADER_LEN + whole.min(MAX_QUOTE)];
    let asker = MacAddr(eth[6..12].try_into().expect("an Ethernet header"));
    let builder = PacketBuilder::ethernet2(from.0.0, asker.0).ipv6(from.1.octets(), src.octets(), 64).icmpv6(kind);
    builder.write(out, quote).expect("a frame in a Vec");
}

/// The most of the offending packet an error quotes: what fits in 1280
/// bytes after the error's IPv6 (40) and ICMPv6 (8) headers.
const MAX_QUOTE: usize = 1280 - 40 - 8;

/// The address a container with `mac` configures from the network's /64
/// `prefix` by SLAAC (RFC 4862, modified EUI-64 interface identifier):
/// known to switchd without asking, so it is guarded, answered for in
/// neighbour discovery, and resolved by DNS.
pub fn slaac(prefix: Ipv6Addr, mac: MacAddr) -> Ipv6Addr {
    let mut octets = prefix.octets();
    octets[8..].copy_from_slice(&link_local(mac).octets()[8..]);
    Ipv6Addr::from(octets)
}

/// An endpoint's IPv6 address on a network with a subnet6: the one it
/// was given (`switchctl connect --ip6`, Docker's IPAM), else the SLAAC
/// address of its MAC. The one DNS answers and every report shows.
pub fn endpoint_ip6(net: &NetworkConfig, mac: Option<MacAddr>, given: Option<Ipv6Addr>) -> Option<Ipv6Addr> {
    let prefix = net.slaac_prefix()?;
    given.or_else(|| Some(slaac(prefix, mac?)))
}

/// Every IPv6 address an endpoint may hold on a network with a subnet6
/// (link-local aside): the one it was given, and the SLAAC address of its
/// MAC, which a kernel configures from the advertisement anyway unless
/// told not to (Docker's containers are not). What its port may send
/// from and neighbour discovery answers for; unique as its MAC is.
pub fn endpoint_ip6s(net: &NetworkConfig, mac: Option<MacAddr>, given: Option<Ipv6Addr>) -> Vec<Ipv6Addr> {
    let Some(prefix) = net.slaac_prefix() else { return Vec::new() };
    let slaac = mac.map(|mac| slaac(prefix, mac));
    given.into_iter().chain(slaac.filter(|s| Some(*s) != given)).collect()
}

/// The MAC whose SLAAC address `addr` is: `None` unless its interface
/// identifier is a modified EUI-64 one (`..ff:fe..` in the middle). How an
/// IPv6 address handed out before the container exists (Docker's IPAM)
/// becomes the container's MAC, so the address is the one it configures.
pub fn slaac_mac(addr: Ipv6Addr) -> Option<MacAddr> {
    let o = addr.octets();
    (o[11] == 0xff && o[12] == 0xfe).then(|| MacAddr([o[8] ^ 2, o[9], o[10], o[13], o[14], o[15]]))
}

#[cfg(test)]
mod tests {
    use etherparse::Icmpv6Type;

    use super::*;

    const GW: MacAddr = MacAddr([2, 0x5d, 0x67, 0, 1, 0x90]);
    const CT: MacAddr = MacAddr([2, 0x42, 10, 10, 0, 5]);

    fn adv(router: bool) -> Advertised {
        Advertised {
            mac: GW,
            prefix: "fd00:10::".parse().unwrap(),
            gateway: "fd00:10::1".parse().unwrap(),
            mtu: 1450,
            router,
            dns: true,
            managed: true,
        }
    }

    fn solicitation(from: Ipv6Addr, hop_limit: u8) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2(CT.0, [0x33, 0x33, 0, 0, 0, 2])
            .ipv6(from.octets(), "ff02::2".parse::<Ipv6Addr>().unwrap().octets(), hop_limit)
            .icmpv6(Icmpv6Type::RouterSolicitation)
            .write(&mut out, &[0; 4])
            .unwrap();
        out
    }

    fn udp6(dst_mac: [u8; 6], to: &str, len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2(CT.0, dst_mac)
            .ipv6("fd00:10::5".parse::<Ipv6Addr>().unwrap().octets(), to.parse::<Ipv6Addr>().unwrap().octets(), 64)
            .udp(40000, 9)
            .write(&mut out, &vec![0x55; len])
            .unwrap();
        out
    }

    /// Routing refusals: the error's kind, from the gateway to the sender,
    /// quoting the packet up to 1280 bytes in all; never about an error,
    /// a multicast, or a sender that is no single host.
    #[test]
    fn refusals_are_answered_with_icmpv6_errors_quoting_the_packet() {
        let from = (GW, "fd00:10::1".parse().unwrap());
        let mut out = Vec::new();
        let probe = udp6(GW.0, "fd00:20::7", 8);
        for (reason, mtu, expect) in [
            (DropReason::RouteDenied, 0, (1, 1)),
            (DropReason::NoRoute, 0, (1, 0)),
            (DropReason::NoNeighbor, 0, (1, 3)),
            (DropReason::TtlExceeded, 0, (3, 0)),
            (DropReason::FragNeeded, 1280, (2, 0)),
        ] {
            error(&probe, code_for(reason, mtu), from, &mut out);
            let packet = SlicedPacket::from_ethernet(&out).unwrap();
            let Some(NetSlice::Ipv6(ip)) = &packet.net else { panic!("IPv6") };
            assert_eq!(ip.header().source_addr(), from.1);
            assert_eq!(ip.header().destination_addr(), "fd00:10::5".parse::<Ipv6Addr>().unwrap());
            assert_eq!(&out[..6], &CT.0, "back to the sender's MAC");
            let Some(TransportSlice::Icmpv6(icmp)) = &packet.transport else { panic!("ICMPv6") };
            assert_eq!((icmp.type_u8(), icmp.code_u8()), expect, "{reason:?}");
            let sum = icmp.icmp_type().calc_checksum(
                from.1.octets(),
                ip.header().destination_addr().octets(),
                icmp.payload(),
            );
            assert_eq!(sum.unwrap(), icmp.checksum());
            assert_eq!(icmp.payload(), &probe[14..], "the whole packet quoted");
            if reason == DropReason::FragNeeded {
                assert_eq!(&out[14 + 40 + 4..14 + 40 + 8], &1280u32.to_be_bytes(), "the MTU");
            }
        }
        // A large packet: quoted up to the minimum MTU, Ethernet padding never.
        error(&udp6(GW.0, "fd00:20::7", 3000), code_for(DropReason::FragNeeded, 1280), from, &mut out);
        assert_eq!(out.len(), 14 + 1280);
        let mut padded = udp6(GW.0, "fd00:20::7", 0);
        padded.resize(padded.len() + 6, 0xee);
        error(&padded, code_for(DropReason::NoRoute, 0), from, &mut out);
        assert_eq!(out.len(), 14 + 48 + 48, "48 bytes of packet, not the padding");
        // No errors about these.
        let deny = code_for(DropReason::RouteDenied, 0);
        error(&udp6([0x33, 0x33, 0, 0, 0, 1], "ff02::1", 8), deny, from, &mut out);
        assert!(out.is_empty(), "to a multicast");
        error(&udp6(GW.0, "ff0e::1", 8), deny, from, &mut out);
        assert!(out.is_empty(), "to a multicast address");
        let mut an_error = Vec::new();
        error(&probe, deny, from, &mut an_error);
        an_error[..6].copy_from_slice(&GW.0);
        error(&an_error, deny, from, &mut out);
        assert!(out.is_empty(), "about an error");
        let mut unspecified = probe.clone();
        unspecified[14 + 8..14 + 24].fill(0);
        error(&unspecified, deny, from, &mut out);
        assert!(out.is_empty(), "from ::");
        error(&probe[..30], deny, from, &mut out);
        assert!(out.is_empty(), "truncated");
    }

    #[test]
    fn a_solicitation_gets_the_prefix_mtu_and_dns_from_the_link_local_address() {
        let from = link_local(CT);
        let mut out = Vec::new();
        assert!(answer(&solicitation(from, 255), &adv(true), &mut out));
        let p = SlicedPacket::from_ethernet(&out).unwrap();
        let Some(NetSlice::Ipv6(ip)) = &p.net else { panic!() };
        assert_eq!(ip.header().source_addr(), link_local(GW));
        assert_eq!((ip.header().destination_addr(), ip.header().hop_limit()), (from, 255));
        let Some(TransportSlice::Icmpv6(icmp)) = &p.transport else { panic!() };
        let Icmpv6Type::RouterAdvertisement(h) = icmp.icmp_type() else { panic!("{:?}", icmp.icmp_type()) };
        assert_eq!(h.router_lifetime, ROUTER_LIFETIME);
        let body = icmp.payload();
        assert!(body.windows(2).any(|w| w == [3, 4]), "a prefix option");
        assert!(body.windows(16).any(|w| w == "fd00:10::".parse::<Ipv6Addr>().unwrap().octets()));
        assert!(body.windows(16).any(|w| w == "fd00:10::1".parse::<Ipv6Addr>().unwrap().octets()), "RDNSS");
        // The checksum holds (etherparse checks it when asked to).
        let slice = etherparse::Icmpv6Slice::from_slice(&out[54..]).unwrap();
        let sum = slice.icmp_type().calc_checksum(link_local(GW).octets(), from.octets(), slice.payload()).unwrap();
        assert_eq!(sum, slice.checksum());
        // An internal network's gateway is no default router.
        let mut out = Vec::new();
        answer(&solicitation(from, 255), &adv(false), &mut out);
        let p = SlicedPacket::from_ethernet(&out).unwrap();
        let Some(TransportSlice::Icmpv6(icmp)) = &p.transport else { panic!() };
        assert!(matches!(icmp.icmp_type(), Icmpv6Type::RouterAdvertisement(h) if h.router_lifetime == 0));
    }

    #[test]
    fn a_solicitation_that_crossed_a_router_or_from_nowhere_is_handled_as_the_rfc_says() {
        let mut out = Vec::new();
        assert!(!answer(&solicitation(link_local(CT), 64), &adv(true), &mut out), "hop limit below 255");
        assert!(answer(&solicitation(Ipv6Addr::UNSPECIFIED, 255), &adv(true), &mut out));
        let p = SlicedPacket::from_ethernet(&out).unwrap();
        let Some(NetSlice::Ipv6(ip)) = &p.net else { panic!() };
        assert_eq!(ip.header().destination_addr(), "ff02::1".parse::<Ipv6Addr>().unwrap(), "to all nodes");
    }

    #[test]
    fn slaac_addresses_are_the_prefix_and_the_macs_eui64() {
        let mac = MacAddr([0x02, 0x42, 0x0a, 0x0a, 0x00, 0x05]);
        assert_eq!(slaac("fd00:10::".parse().unwrap(), mac), "fd00:10::42:aff:fe0a:5".parse::<Ipv6Addr>().unwrap());
        assert_eq!(slaac_mac(slaac("fd00:10::".parse().unwrap(), mac)), Some(mac), "and back");
        assert_eq!(slaac_mac("fd00:10::5".parse().unwrap()), None, "not an EUI-64 identifier");
    }
}
