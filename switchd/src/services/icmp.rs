//! The gateway's ICMP: echo replies to ping, and the errors a router sends
//! when it will not forward (RFC 792, RFC 1812): net, host or port
//! unreachable, administratively prohibited, time exceeded.

use std::net::Ipv4Addr;

use switchd_config::MacAddr;
use switchd_wire::ethernet::{self, EtherType};
use switchd_wire::icmpv4::{self, Message, unreachable};
use switchd_wire::ip::Protocol;
use switchd_wire::ipv4;

use crate::switch::{DropReason, l3};

/// ICMP type and code.
pub type Kind = (Message, u8);

pub const NET_UNREACHABLE: Kind = (Message::DstUnreachable, unreachable::NET);
pub const HOST_UNREACHABLE: Kind = (Message::DstUnreachable, unreachable::HOST);
pub const PORT_UNREACHABLE: Kind = (Message::DstUnreachable, unreachable::PORT);
/// RFC 1812 5.2.7.1: "communication administratively prohibited".
pub const ADMIN_PROHIBITED: Kind = (Message::DstUnreachable, unreachable::ADMIN_PROHIBITED);
pub const TTL_EXCEEDED: Kind = (Message::TimeExceeded, 0);
/// RFC 1191: too big for the next hop, which may not cut it (DF set).
pub const FRAG_NEEDED: Kind = (Message::DstUnreachable, unreachable::FRAG_NEEDED);

/// How much of the offending packet an error quotes beyond its IP header
/// (RFC 792 asks for 8 bytes; more helps tools match their probes).
const QUOTE: usize = 64;

/// The ICMP error a routing refusal is answered with.
pub fn code_for(reason: DropReason) -> Kind {
    match reason {
        DropReason::RouteDenied => ADMIN_PROHIBITED,
        DropReason::TtlExceeded => TTL_EXCEEDED,
        DropReason::FragNeeded => FRAG_NEEDED,
        DropReason::NoNeighbor => HOST_UNREACHABLE,
        _ => NET_UNREACHABLE,
    }
}

/// Appends to `out` an Ethernet/IPv4 frame from `from` to `to` carrying `icmp`.
fn emit(out: &mut Vec<u8>, from: (MacAddr, Ipv4Addr), to: (MacAddr, Ipv4Addr), icmp: icmpv4::Repr) {
    let ip = ipv4::Repr {
        src_addr: from.1,
        dst_addr: to.1,
        protocol: Protocol::Icmp,
        payload_len: icmp.buffer_len(),
        ttl: 64,
    };
    let start = out.len();
    out.resize(start + ethernet::HEADER_LEN + ip.buffer_len() + icmp.buffer_len(), 0);
    let mut frame = ethernet::Frame::new_unchecked(&mut out[start..]);
    ethernet::Repr { src_addr: from.0, dst_addr: to.0, ethertype: EtherType::Ipv4 }.emit(&mut frame);
    let (header, payload) = frame.payload_mut().split_at_mut(ipv4::MIN_HEADER_LEN);
    ip.emit(header);
    icmp.emit(payload);
}

/// Writes into `out` the gateway's reply to an echo request `eth` (whose
/// IPv4 header is `ip`), carrying the request's data and nothing after it
/// (Ethernet padding); false if it is not an echo request, or only a
/// fragment of one: the gateway does not reassemble, and a reply to part
/// of the data, or to a later fragment's bytes, would be a wrong one.
pub fn echo_reply(eth: &[u8], ip: &l3::Ipv4, gateway_mac: MacAddr, out: &mut Vec<u8>) -> bool {
    // An echo request is ICMP (what l3::ipv4 read as its message), whole.
    if ip.fragment || ip.icmp != Some(Message::EchoRequest) {
        return false;
    }
    let Some(Ok(request)) = eth.get(ip.payload_at..ip.end).map(icmpv4::Packet::new_checked) else { return false };
    let asker = ethernet::Frame::new_unchecked(eth).src_addr();
    let reply = icmpv4::Repr::EchoReply { ident: request.echo_ident(), seq: request.echo_seq(), data: request.data() };
    emit(out, (gateway_mac, ip.dst), (asker, ip.src), reply);
    true
}

/// Writes into `out` an ICMP error `kind` about `eth` (IPv4 header `ip`)
/// from the gateway `(mac, ip)` back to its sender, quoting the start of
/// its IP packet (never the Ethernet padding after it). Never about an
/// ICMP error (or an ICMP message not known to be a query), a datagram to
/// a multicast or broadcast address or sent as a link-layer multicast or
/// broadcast, a fragment after the first, or one whose source names no
/// single host: 0/8, 127/8, multicast, 240/4 and broadcast (RFC 1122
/// 3.2.2, RFC 1812 4.3.2.7). `next_hop_mtu` is for [`FRAG_NEEDED`] (0 otherwise).
pub fn error(eth: &[u8], ip: &l3::Ipv4, kind: Kind, next_hop_mtu: u16, from: (MacAddr, Ipv4Addr), out: &mut Vec<u8>) {
    out.clear();
    let frame = ethernet::Frame::new_unchecked(eth);
    let icmp_error = ip.icmp.is_some_and(Message::is_error);
    let not_for_one = ip.dst.is_multicast() || ip.dst.is_broadcast() || frame.dst_addr().is_multicast();
    let [first, ..] = ip.src.octets();
    let no_single_host = first == 0 || first == 127 || ip.src.is_multicast() || first >= 240;
    if icmp_error || not_for_one || no_single_host || ip.later_fragment {
        return;
    }
    let quote = &eth[ethernet::HEADER_LEN..(ip.payload_at + QUOTE).min(ip.end)];
    let to = frame.src_addr();
    emit(out, from, (to, ip.src), icmpv4::Repr::Error { msg_type: kind.0, code: kind.1, next_hop_mtu, quote });
}

#[cfg(test)]
mod tests {
    use etherparse::{Icmpv4Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

    use super::*;

    const ASKER: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const GW: MacAddr = MacAddr([2, 0x5d, 0x67, 0, 0, 100]);

    fn ping(to: [u8; 4]) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2(ASKER, GW.0)
            .ipv4([10, 0, 0, 2], to, 64)
            .icmpv4_echo_request(7, 3)
            .write(&mut out, b"abcdefgh")
            .unwrap();
        out
    }

    #[test]
    fn echo_replies_mirror_the_request() {
        let req = ping([10, 0, 0, 1]);
        let ip = l3::ipv4(&req).unwrap();
        let mut out = Vec::new();
        assert!(echo_reply(&req, &ip, GW, &mut out));
        let p = SlicedPacket::from_ethernet(&out).unwrap();
        let (Some(NetSlice::Ipv4(v4)), Some(TransportSlice::Icmpv4(icmp))) = (&p.net, &p.transport) else { panic!() };
        assert_eq!(v4.header().source(), [10, 0, 0, 1]);
        assert_eq!(v4.header().destination(), [10, 0, 0, 2]);
        assert!(matches!(icmp.icmp_type(), Icmpv4Type::EchoReply(e) if e.id == 7 && e.seq == 3));
        assert_eq!(icmp.payload(), b"abcdefgh");
        assert_eq!(&out[..6], &ASKER);
    }

    /// A ping with no data, padded to 60 bytes as a NIC sends it.
    fn padded(mut frame: Vec<u8>) -> Vec<u8> {
        frame.resize(60, 0);
        frame
    }

    /// Found by fuzzing icmp_error: the padding was echoed as data.
    #[test]
    fn echo_replies_carry_the_data_not_the_padding() {
        let mut req = Vec::new();
        PacketBuilder::ethernet2(ASKER, GW.0)
            .ipv4([10, 0, 0, 2], [10, 0, 0, 1], 64)
            .icmpv4_echo_request(7, 4)
            .write(&mut req, b"")
            .unwrap();
        let req = padded(req);
        let ip = l3::ipv4(&req).unwrap();
        let mut out = Vec::new();
        assert!(echo_reply(&req, &ip, GW, &mut out));
        assert_eq!(out.len(), 14 + 20 + 8, "no data in, no data out");
        let p = SlicedPacket::from_ethernet(&out).unwrap();
        let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else { panic!() };
        assert!(icmp.payload().is_empty());
    }

    /// Found by fuzzing icmp_error: the first fragment of a large ping was
    /// answered with part of its data.
    #[test]
    fn fragments_of_a_ping_are_not_answered() {
        let mut first = ping([10, 0, 0, 1]);
        first[20] = 0x20; // more fragments
        ipv4::Packet::new_checked(&mut first[14..]).unwrap().fill_checksum();
        let ip = l3::ipv4(&first).unwrap();
        let mut out = Vec::new();
        assert!(!echo_reply(&first, &ip, GW, &mut out));
        assert!(out.is_empty());
    }

    /// Found by fuzzing icmp_error: a packet of another protocol whose
    /// payload began with 8 (the echo request's type) was answered.
    #[test]
    fn only_icmp_is_echoed() {
        let mut other = ping([10, 0, 0, 1]);
        other[14 + 9] = 122; // the protocol
        ipv4::Packet::new_checked(&mut other[14..]).unwrap().fill_checksum();
        let ip = l3::ipv4(&other).unwrap();
        let mut out = Vec::new();
        assert!(!echo_reply(&other, &ip, GW, &mut out));
        assert!(out.is_empty());
    }

    /// Found by fuzzing icmp_error: the quote went on into the padding.
    #[test]
    fn errors_quote_the_ip_packet_not_the_padding() {
        let mut probe = Vec::new();
        PacketBuilder::ethernet2(ASKER, GW.0)
            .ipv4([10, 0, 0, 2], [10, 0, 0, 1], 64)
            .udp(33434, 9)
            .write(&mut probe, b"")
            .unwrap();
        let probe = padded(probe);
        let ip = l3::ipv4(&probe).unwrap();
        let mut out = Vec::new();
        error(&probe, &ip, PORT_UNREACHABLE, 0, (GW, [10, 0, 0, 1].into()), &mut out);
        let p = SlicedPacket::from_ethernet(&out).unwrap();
        let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else { panic!() };
        assert_eq!(icmp.payload(), &probe[14..42], "the 28-byte packet, without its padding");
    }

    /// RFC 1122 3.2.2: no error about a datagram whose source is no single
    /// host, or that was sent as a link-layer broadcast (found by fuzzing
    /// icmp_error: 127/8 and 240/4 sources and broadcast frames were answered).
    #[test]
    fn no_errors_to_sources_that_are_no_single_host() {
        let mut out = Vec::new();
        for src in [[127, 0, 0, 1], [240, 0, 0, 1], [0, 1, 2, 3], [255, 255, 255, 255], [224, 0, 0, 5], [0, 0, 0, 0]] {
            let mut frame = Vec::new();
            PacketBuilder::ethernet2(ASKER, GW.0)
                .ipv4(src, [10, 2, 0, 5], 64)
                .udp(1, 2)
                .write(&mut frame, b"x")
                .unwrap();
            let ip = l3::ipv4(&frame).unwrap();
            error(&frame, &ip, NET_UNREACHABLE, 0, (GW, [10, 0, 0, 1].into()), &mut out);
            assert!(out.is_empty(), "an error to {src:?}");
        }
        let mut broadcast = ping([10, 2, 0, 5]);
        broadcast[..6].fill(0xff);
        let ip = l3::ipv4(&broadcast).unwrap();
        error(&broadcast, &ip, NET_UNREACHABLE, 0, (GW, [10, 0, 0, 1].into()), &mut out);
        assert!(out.is_empty(), "an error about a link-layer broadcast");
        error(&ping([10, 2, 0, 5]), &ip, NET_UNREACHABLE, 0, (GW, [10, 0, 0, 1].into()), &mut out);
        assert!(!out.is_empty(), "the same frame to the gateway's MAC is answered");
    }

    #[test]
    fn errors_quote_the_packet() {
        let req = ping([10, 2, 0, 5]);
        let ip = l3::ipv4(&req).unwrap();
        let mut out = Vec::new();
        error(&req, &ip, code_for(DropReason::RouteDenied), 0, (GW, [10, 0, 0, 1].into()), &mut out);
        {
            let p = SlicedPacket::from_ethernet(&out).unwrap();
            let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else { panic!() };
            assert_eq!((icmp.type_u8(), icmp.code_u8()), (3, 13));
            assert!(icmp.checksum() != 0);
            assert_eq!(icmp.payload(), &req[14..], "the whole small packet is quoted");
        }

        // Never an error about an error.
        let mut err_frame = out.clone();
        err_frame[0..6].copy_from_slice(&GW.0);
        let ip = l3::ipv4(&err_frame).unwrap();
        error(&err_frame, &ip, NET_UNREACHABLE, 0, (GW, [10, 0, 0, 1].into()), &mut out);
        assert!(out.is_empty());
    }

    /// Fragmentation needed carries the next hop's MTU, for path MTU discovery.
    #[test]
    fn fragmentation_needed_names_the_next_hops_mtu() {
        let req = ping([10, 2, 0, 5]);
        let ip = l3::ipv4(&req).unwrap();
        let mut out = Vec::new();
        error(&req, &ip, FRAG_NEEDED, 1280, (GW, [10, 0, 0, 1].into()), &mut out);
        let p = SlicedPacket::from_ethernet(&out).unwrap();
        let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else { panic!() };
        let want = etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1280 };
        assert_eq!(icmp.icmp_type(), Icmpv4Type::DestinationUnreachable(want));
    }
}
