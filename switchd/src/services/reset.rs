//! TCP resets: how a VIP with no backend for a connection refuses it at
//! once (RFC 9293 3.10.7.1, as a host with nothing listening does), so
//! the client's `connect` fails now instead of timing out.

use std::net::{Ipv4Addr, Ipv6Addr};

use switchd_config::MacAddr;
use switchd_wire::ethernet::{self, EtherType};
use switchd_wire::ip::Protocol;
use switchd_wire::tcp::{self, flags};
use switchd_wire::{checksum, ipv4};

use crate::switch::l3;

/// Writes into `out` the reset of TCP segment `eth` (IPv4 header `ip`)
/// from `(mac, ip)`: nothing for a reset, a fragment, or a segment that is
/// not whole. A segment with an ACK is answered with a reset at that
/// sequence number; any other with a RST+ACK acknowledging it.
pub fn tcp_reset(eth: &[u8], ip: &l3::Ipv4, from: (MacAddr, Ipv4Addr), out: &mut Vec<u8>) {
    out.clear();
    if ip.protocol != Protocol::Tcp || ip.fragment {
        return;
    }
    let Some(Ok(segment)) = eth.get(ip.payload_at..ip.end).map(tcp::Packet::new_checked) else { return };
    let got = segment.flags();
    if got & flags::RST != 0 {
        return;
    }
    let data_len = (ip.end - ip.payload_at - segment.header_len()) as u32;
    let (seq, ack, sent_flags) = answer(got, segment.seq_number(), segment.ack_number(), data_len);
    let header = ipv4::Repr {
        src_addr: from.1,
        dst_addr: ip.src,
        protocol: Protocol::Tcp,
        payload_len: tcp::MIN_HEADER_LEN,
        ttl: 64,
    };
    out.resize(ethernet::HEADER_LEN + header.buffer_len() + tcp::MIN_HEADER_LEN, 0);
    let asker = ethernet::Frame::new_unchecked(eth).src_addr();
    let mut frame = ethernet::Frame::new_unchecked(&mut out[..]);
    ethernet::Repr { src_addr: from.0, dst_addr: asker, ethertype: EtherType::Ipv4 }.emit(&mut frame);
    let (head, l4) = frame.payload_mut().split_at_mut(ipv4::MIN_HEADER_LEN);
    header.emit(head);
    l4[0..2].copy_from_slice(&segment.dst_port().to_be_bytes());
    l4[2..4].copy_from_slice(&segment.src_port().to_be_bytes());
    l4[4..8].copy_from_slice(&seq.to_be_bytes());
    l4[8..12].copy_from_slice(&ack.to_be_bytes());
    l4[12] = ((tcp::MIN_HEADER_LEN / 4) as u8) << 4;
    l4[13] = sent_flags;
    let pseudo = checksum::pseudo_v4(from.1, ip.src, Protocol::Tcp.into(), tcp::MIN_HEADER_LEN as u32);
    tcp::Packet::new_unchecked(&mut l4[..]).fill_checksum(pseudo);
}

/// The reset's sequence and acknowledgment numbers and flags, for a
/// segment with `got` flags, `seq` and `ack`, and `data_len` bytes.
fn answer(got: u8, seq: u32, ack: u32, data_len: u32) -> (u32, u32, u8) {
    match got & flags::ACK != 0 {
        true => (ack, 0, flags::RST),
        false => {
            let len = data_len + u32::from(got & flags::SYN != 0) + u32::from(got & flags::FIN != 0);
            (0, seq.wrapping_add(len), flags::RST | flags::ACK)
        }
    }
}

/// [`tcp_reset`] for IPv6: the reset of TCP segment `eth` (past any
/// extension headers) from `(mac, ip)`; nothing for a reset, a fragment,
/// or what is not a whole TCP segment.
pub fn tcp_reset6(eth: &[u8], from: (MacAddr, Ipv6Addr), out: &mut Vec<u8>) {
    out.clear();
    let Ok(packet) = etherparse::SlicedPacket::from_ethernet(eth) else { return };
    let (Some(etherparse::NetSlice::Ipv6(ip)), Some(etherparse::TransportSlice::Tcp(t))) =
        (&packet.net, &packet.transport)
    else {
        return;
    };
    if ip.is_payload_fragmented() || t.rst() {
        return;
    }
    let got = [(t.syn(), flags::SYN), (t.fin(), flags::FIN), (t.ack(), flags::ACK)]
        .into_iter()
        .filter_map(|(set, bit)| set.then_some(bit))
        .fold(0, |all, bit| all | bit);
    let (seq, ack, sent) = answer(got, t.sequence_number(), t.acknowledgment_number(), t.payload().len() as u32);
    let asker = ethernet::Frame::new_unchecked(eth).src_addr();
    let src = ip.header().source_addr();
    let mut reset = etherparse::PacketBuilder::ethernet2(from.0.0, asker.0)
        .ipv6(from.1.octets(), src.octets(), 64)
        .tcp(t.destination_port(), t.source_port(), seq, 0)
        .rst();
    if sent & flags::ACK != 0 {
        reset = reset.ack(ack);
    }
    reset.write(out, &[]).expect("a frame in a Vec");
}

#[cfg(test)]
mod tests {
    use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};

    use super::*;

    const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 200);
    const GW: MacAddr = MacAddr([2, 0x5d, 0x67, 0, 0, 100]);

    fn segment(syn: bool, ack: Option<u32>, rst: bool) -> Vec<u8> {
        let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 2], GW.0)
            .ipv4([10, 0, 0, 2], VIP.octets(), 64)
            .tcp(40000, 80, 1000, 64240);
        if syn {
            b = b.syn();
        }
        if let Some(a) = ack {
            b = b.ack(a);
        }
        if rst {
            b = b.rst();
        }
        let mut out = Vec::new();
        b.write(&mut out, if syn { b"" } else { b"data" }).unwrap();
        out
    }

    fn reset_of(frame: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        tcp_reset(frame, &l3::ipv4(frame).unwrap(), (GW, VIP), &mut out);
        out
    }

    #[test]
    fn a_syn_is_answered_with_rst_ack() {
        let out = reset_of(&segment(true, None, false));
        let p = SlicedPacket::from_ethernet(&out).unwrap();
        let Some(etherparse::NetSlice::Ipv4(v4)) = &p.net else { panic!() };
        let Some(TransportSlice::Tcp(t)) = &p.transport else { panic!() };
        assert_eq!((v4.header().source_addr(), v4.header().destination()), (VIP, [10, 0, 0, 2]));
        assert!(t.rst() && t.ack() && !t.syn());
        assert_eq!((t.source_port(), t.destination_port()), (80, 40000));
        assert_eq!((t.sequence_number(), t.acknowledgment_number()), (0, 1001));
        let sum = t.to_header().calc_checksum_ipv4(&v4.header().to_header(), &[]).unwrap();
        assert_eq!(sum, t.checksum());
        assert_eq!(&out[..6], &[2, 0, 0, 0, 0, 2], "to the sender's MAC");
    }

    #[test]
    fn a_segment_with_an_ack_gets_a_reset_at_its_ack_and_a_reset_gets_nothing() {
        let out = reset_of(&segment(false, Some(777), false));
        let p = SlicedPacket::from_ethernet(&out).unwrap();
        let Some(TransportSlice::Tcp(t)) = &p.transport else { panic!() };
        assert!(t.rst() && !t.ack());
        assert_eq!(t.sequence_number(), 777);
        assert!(reset_of(&segment(false, Some(1), true)).is_empty());
    }

    #[test]
    fn an_ipv6_syn_is_answered_with_rst_ack_from_the_vip() {
        let (client, vip): (Ipv6Addr, Ipv6Addr) = ("fd00:1::2".parse().unwrap(), "fd00:1::c8".parse().unwrap());
        let mut syn = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 2], GW.0)
            .ipv6(client.octets(), vip.octets(), 64)
            .tcp(40000, 80, 1000, 64240)
            .syn()
            .write(&mut syn, b"")
            .unwrap();
        let mut out = Vec::new();
        tcp_reset6(&syn, (GW, vip), &mut out);
        let p = SlicedPacket::from_ethernet(&out).unwrap();
        let Some(etherparse::NetSlice::Ipv6(v6)) = &p.net else { panic!("{out:?}") };
        let Some(TransportSlice::Tcp(t)) = &p.transport else { panic!() };
        assert_eq!((v6.header().source_addr(), v6.header().destination_addr()), (vip, client));
        assert!(t.rst() && t.ack() && !t.syn());
        assert_eq!((t.source_port(), t.destination_port()), (80, 40000));
        assert_eq!((t.sequence_number(), t.acknowledgment_number()), (0, 1001));
        let sum = t.to_header().calc_checksum_ipv6(&v6.header().to_header(), &[]).unwrap();
        assert_eq!(sum, t.checksum());
        let mut rst = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 2], GW.0)
            .ipv6(client.octets(), vip.octets(), 64)
            .tcp(40000, 80, 1000, 64240)
            .rst()
            .write(&mut rst, b"")
            .unwrap();
        let mut none = vec![1];
        tcp_reset6(&rst, (GW, vip), &mut none);
        assert!(none.is_empty(), "a reset gets nothing");
    }
}
