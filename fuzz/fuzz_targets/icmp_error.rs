//! Arbitrary Ethernet frames through the gateway's ICMP, as the services
//! answer what the switch gave them: `l3::ipv4` reads the frame, then
//! `icmp::echo_reply` (ping) and `icmp::error` (a refused route, or a
//! closed port). What comes out is a well-formed Ethernet + IPv4 + ICMP
//! frame whose IPv4 and ICMP checksums verify, back to the sender (its MAC
//! and address) from the gateway's. An echo reply carries the request's
//! id, sequence number and data, and only the data: never Ethernet padding,
//! never for a fragment (the gateway does not reassemble). An error quotes
//! a prefix of the offending IP packet: at least its header and 8 bytes
//! (RFC 792) and no more than fits 576 bytes (RFC 1812 4.3.2.3). No error
//! is ever sent about an ICMP error, a datagram to a broadcast or multicast
//! address or sent as a link-layer broadcast, a later fragment, or from a
//! source that is no single host (RFC 1122 3.2.2, RFC 1812 4.3.2.7).
//!
//! Input: `[selector: u8][frame...]`. The selector's low 3 bits pick the
//! error (net, host, port unreachable, prohibited, time exceeded); with bit
//! 7 the IPv4 header checksum is left as it is (otherwise it is made valid,
//! as every sender's is, so mutations reach past the check). Seeds in
//! `seeds/icmp_error` (`seeds/make_switch_seeds.py`).

#![no_main]

use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use switchd::services::icmp;
use switchd::switch::l3;
use switchd_config::MacAddr;
use switchd_wire::ethernet::{self, EtherType};
use switchd_wire::icmpv4::{self, Message};
use switchd_wire::ip::Protocol;
use switchd_wire::ipv4;

const GW_MAC: MacAddr = MacAddr([2, 0x5d, 0x67, 0, 0, 1]);
const GW_IP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const KINDS: [icmp::Kind; 5] =
    [icmp::NET_UNREACHABLE, icmp::HOST_UNREACHABLE, icmp::PORT_UNREACHABLE, icmp::ADMIN_PROHIBITED, icmp::TTL_EXCEEDED];
/// The largest ICMP error datagram (RFC 1812 4.3.2.3), and what that
/// leaves for the quote after its IPv4 and ICMP headers.
const MAX_ERROR_LEN: usize = 576;
const MAX_QUOTE: usize = MAX_ERROR_LEN - ipv4::MIN_HEADER_LEN - icmpv4::HEADER_LEN;

/// Gives an IPv4 frame's header a valid checksum, as every sender's has.
fn fix_ipv4_checksum(frame: &mut [u8]) {
    // A checked Ethernet frame has its header: the IPv4 slice exists.
    if !ethernet::Frame::new_checked(&*frame).is_ok_and(|f| f.ethertype() == EtherType::Ipv4) {
        return;
    }
    if let Ok(mut ip) = ipv4::Packet::new_checked(&mut frame[ethernet::HEADER_LEN..]) {
        ip.fill_checksum();
    }
}

/// Parses `out` as an Ethernet + IPv4 + ICMP frame from `from` to `to`
/// with valid checksums, and returns its ICMP message.
fn parse_reply(out: &[u8], from: (MacAddr, Ipv4Addr), to: (MacAddr, Ipv4Addr)) -> icmpv4::Packet<&[u8]> {
    check_headers(out, from, to);
    icmpv4::Packet::new_unchecked(&out[ethernet::HEADER_LEN + ipv4::MIN_HEADER_LEN..])
}

fn check_headers(out: &[u8], from: (MacAddr, Ipv4Addr), to: (MacAddr, Ipv4Addr)) {
    let eth = ethernet::Frame::new_checked(out).expect("an Ethernet frame");
    assert_eq!((eth.src_addr(), eth.dst_addr()), (from.0, to.0), "Ethernet addresses");
    assert_eq!(eth.ethertype(), EtherType::Ipv4);
    let ip = ipv4::Packet::new_checked(eth.payload()).expect("an IPv4 packet");
    assert!(ip.verify_checksum(), "IPv4 header checksum");
    assert_eq!(ip.header_len(), ipv4::MIN_HEADER_LEN);
    assert_eq!(usize::from(ip.total_len()), eth.payload().len(), "IPv4 length is not the frame's");
    assert_eq!((ip.src_addr(), ip.dst_addr()), (from.1, to.1), "IPv4 addresses");
    assert_eq!(ip.protocol(), Protocol::Icmp);
    assert!(ip.ttl() > 0 && !ip.is_fragment());
    let icmp = icmpv4::Packet::new_checked(ip.payload()).expect("an ICMP message");
    assert!(icmp.verify_checksum(), "ICMP checksum");
}

fuzz_target!(|data: &[u8]| fuzz_one(data));

// A function rather than the macro's closure, so that coverage reports
// (`cargo fuzz coverage`) show its lines.
fn fuzz_one(data: &[u8]) {
    let Some((&selector, frame)) = data.split_first() else { return };
    let mut eth = frame.to_vec();
    if selector & 0x80 == 0 {
        fix_ipv4_checksum(&mut eth);
    }
    let Some(ip) = l3::ipv4(&eth) else { return };
    // What the frame is, read here through the wire views alone.
    let frame = ethernet::Frame::new_checked(&eth[..]).expect("l3::ipv4 read it");
    let asker = frame.src_addr();
    let packet = ipv4::Packet::new_checked(frame.payload()).expect("l3::ipv4 read it");
    assert!(packet.verify_checksum(), "l3::ipv4 accepted a header whose checksum is wrong (RFC 1812 5.2.2)");
    let original = &frame.payload()[..usize::from(packet.total_len())];
    let header_len = packet.header_len();
    let icmp_type = (packet.protocol() == Protocol::Icmp && !packet.is_later_fragment())
        .then(|| packet.payload().first().map(|t| Message::from(*t)))
        .flatten();

    let mut out = Vec::new();
    if icmp::echo_reply(&eth, &ip, GW_MAC, &mut out) {
        assert_eq!(icmp_type, Some(Message::EchoRequest), "an echo reply to something else");
        assert!(!packet.is_fragment(), "an echo reply to a fragment");
        let request = icmpv4::Packet::new_checked(packet.payload()).expect("an echo request within the packet");
        let reply = parse_reply(&out, (GW_MAC, packet.dst_addr()), (asker, packet.src_addr()));
        assert_eq!((reply.msg_type(), reply.code()), (Message::EchoReply, 0));
        assert_eq!((reply.echo_ident(), reply.echo_seq()), (request.echo_ident(), request.echo_seq()));
        assert_eq!(reply.data(), request.data(), "echo data is not the request's");
    }

    let kind = KINDS[usize::from(selector & 7) % KINDS.len()];
    icmp::error(&eth, &ip, kind, 0, (GW_MAC, GW_IP), &mut out);
    let src = packet.src_addr();
    let [s0, ..] = src.octets();
    let no_single_host = s0 == 0 || s0 == 127 || src.is_multicast() || s0 >= 240;
    let about_error = icmp_type.is_some_and(|t| {
        matches!(t, Message::DstUnreachable | Message::Redirect | Message::TimeExceeded | Message::ParamProblem)
            || u8::from(t) == 4 // source quench
    });
    let dst = packet.dst_addr();
    let must_refuse = about_error
        || no_single_host
        || dst.is_broadcast()
        || dst.is_multicast()
        || frame.dst_addr().is_multicast()
        || packet.is_later_fragment();
    if out.is_empty() {
        // Refused: for one of those reasons, or an ICMP message the
        // gateway does not know to be a query (it errs on the safe side).
        let unknown_icmp = icmp_type.is_some_and(|t| !matches!(t, Message::EchoRequest | Message::EchoReply));
        assert!(must_refuse || unknown_icmp, "no ICMP error for {ip:?}");
        return;
    }
    assert!(!must_refuse, "an ICMP error it must never send, about {ip:?}");
    let error = parse_reply(&out, (GW_MAC, GW_IP), (asker, src));
    assert_eq!((error.msg_type(), error.code()), kind);
    assert_eq!(error.echo_ident(), 0, "unused bytes not zero");
    assert_eq!(error.echo_seq(), 0, "unused bytes not zero");
    let quote = error.data();
    assert!(original.starts_with(quote), "the quote is not a prefix of the IP packet");
    assert!(quote.len() >= original.len().min(header_len + 8), "quotes less than its header and 8 bytes");
    assert!(quote.len() <= MAX_QUOTE, "the error is longer than 576 bytes");
}
