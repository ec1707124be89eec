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

/// How much of the offending packet an error quotes beyond its IP header
/// (RFC 792 asks for 8 bytes; more helps tools match their probes).
const QUOTE: usize = 64;

/// The ICMP error a routing refusal is answered with.
pub fn code_for(reason: DropReason) -> Kind {
    match reason {
        DropReason::RouteDenied => ADMIN_PROHIBITED,
        DropReason::TtlExceeded => TTL_EXCEEDED,
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
/// IPv4 header is `ip`); false if it is not an echo request.
pub fn echo_reply(eth: &[u8], ip: &l3::Ipv4, gateway_mac: MacAddr, out: &mut Vec<u8>) -> bool {
    let Some(Ok(request)) = eth.get(ip.payload_at..).map(icmpv4::Packet::new_checked) else { return false };
    if request.msg_type() != Message::EchoRequest {
        return false;
    }
    let asker = ethernet::Frame::new_unchecked(eth).src_addr();
    let reply = icmpv4::Repr::EchoReply { ident: request.echo_ident(), seq: request.echo_seq(), data: request.data() };
    emit(out, (gateway_mac, ip.dst), (asker, ip.src), reply);
    true
}

/// Writes into `out` an ICMP error `kind` about `eth` (IPv4 header `ip`)
/// from the gateway `(mac, ip)` back to its sender. Never about an ICMP
/// error, a packet from 0.0.0.0, to a multicast or broadcast address, or a
/// fragment after the first (RFC 1812 4.3.2.7).
pub fn error(eth: &[u8], ip: &l3::Ipv4, kind: Kind, from: (MacAddr, Ipv4Addr), out: &mut Vec<u8>) {
    out.clear();
    let icmp_error = ip.icmp.is_some_and(Message::is_error);
    let not_for_one = ip.dst.is_multicast() || ip.dst.is_broadcast() || ip.src.is_multicast();
    if icmp_error || ip.src.is_unspecified() || ip.src.is_broadcast() || not_for_one || ip.later_fragment {
        return;
    }
    let quote = &eth[ethernet::HEADER_LEN..(ip.payload_at + QUOTE).min(eth.len())];
    let to = ethernet::Frame::new_unchecked(eth).src_addr();
    emit(out, from, (to, ip.src), icmpv4::Repr::Error { msg_type: kind.0, code: kind.1, quote });
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

    #[test]
    fn errors_quote_the_packet() {
        let req = ping([10, 2, 0, 5]);
        let ip = l3::ipv4(&req).unwrap();
        let mut out = Vec::new();
        error(&req, &ip, code_for(DropReason::RouteDenied), (GW, [10, 0, 0, 1].into()), &mut out);
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
        error(&err_frame, &ip, NET_UNREACHABLE, (GW, [10, 0, 0, 1].into()), &mut out);
        assert!(out.is_empty());
    }
}
