//! Arbitrary Ethernet frames through the switch's ARP and neighbour
//! discovery answers: `neighbor::parse` recognises a request, and for every
//! one it accepts `neighbor::reply` writes what the address's owner would
//! answer. That answer parses back (through the wire views) as an ARP reply
//! or a neighbour advertisement, to the requester (its MAC, and its
//! addresses), from the owner's MAC, for the asked target; the ND one with
//! hop limit 255, solicited and override flags, the owner's MAC as target
//! link-layer address and a valid ICMPv6 checksum (RFC 4861 7.2.4). It
//! never writes past its length, which fits the buffer the data plane
//! gives it. What `parse` accepts is a question: no gratuitous ARP, no
//! duplicate address detection (from ::), no ND off the link (hop limit
//! below 255), and nothing multicast as requester or target (RFC 4861
//! 7.1.1, RFC 4291 2.7: no multicast source).
//!
//! Input: `[owner MAC: 6][frame...]` (the owner made unicast, as the
//! switch's neighbour tables hold). Seeds in `seeds/nd_reply`
//! (`seeds/make_switch_seeds.py`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchd::switch::neighbor::{self, Request};
use switchd_config::MacAddr;
use switchd_wire::ethernet::{self, EtherType};
use switchd_wire::icmpv6::{self, Message, Nd, NdOptionType, na_flags};
use switchd_wire::ip::Protocol;
use switchd_wire::{arp, checksum, ipv6};

/// What the buffer past the answer holds before and (it must) after.
const UNTOUCHED: u8 = 0xa5;

fuzz_target!(|data: &[u8]| fuzz_one(data));

// A function rather than the macro's closure, so that coverage reports
// (`cargo fuzz coverage`) show its lines.
fn fuzz_one(data: &[u8]) {
    if data.len() < 6 {
        return;
    }
    let mut owner = MacAddr(data[..6].try_into().expect("6 bytes"));
    owner.0[0] &= !1;
    let eth = &data[6..];
    let Some(request) = neighbor::parse(eth) else { return };
    let asked = ethernet::Frame::new_checked(eth).expect("parse accepted it");
    let mut buf = [UNTOUCHED; neighbor::MAX_REPLY_LEN + 32];
    let n = neighbor::reply(eth, request, owner, &mut buf[..neighbor::MAX_REPLY_LEN]);
    assert!(n <= neighbor::MAX_REPLY_LEN, "an answer longer than its buffer");
    assert!(buf[n..].iter().all(|b| *b == UNTOUCHED), "written past the answer");
    let out = ethernet::Frame::new_checked(&buf[..n]).expect("an Ethernet frame");
    assert_eq!(out.dst_addr(), asked.src_addr(), "not to the requester");
    assert_eq!(out.src_addr(), owner, "not from the owner");

    match request {
        Request::Arp { target } => {
            let question = arp::Repr::parse(&arp::Packet::new_checked(asked.payload()).expect("an ARP packet"));
            assert_eq!(asked.ethertype(), EtherType::Arp);
            assert_eq!(question.operation, arp::Operation::Request, "answered what asks nothing");
            assert_ne!(question.sender_ip, question.target_ip, "answered a gratuitous ARP");
            assert_eq!(target, question.target_ip);
            assert_eq!(n, neighbor::ARP_REPLY_LEN);
            assert_eq!(out.ethertype(), EtherType::Arp);
            let answer = arp::Repr::parse(&arp::Packet::new_checked(out.payload()).expect("an ARP reply"));
            let expected = arp::Repr {
                operation: arp::Operation::Reply,
                sender_mac: owner,
                sender_ip: target,
                target_mac: question.sender_mac,
                target_ip: question.sender_ip,
            };
            assert_eq!(answer, expected);
            assert!(out.payload()[arp::PACKET_LEN..].iter().all(|b| *b == 0), "padding not zero");
        }
        Request::Solicitation { target } => {
            assert_eq!(asked.ethertype(), EtherType::Ipv6);
            let ns = ipv6::Packet::new_checked(asked.payload()).expect("an IPv6 packet");
            let requester = ns.src_addr();
            assert_eq!(ns.hop_limit(), 255, "ND from off the link answered");
            assert!(!requester.is_unspecified(), "duplicate address detection answered");
            assert!(!requester.is_multicast(), "answered a solicitation from a multicast source");
            assert!(!target.is_multicast(), "answered for a multicast target");
            let solicitation = icmpv6::Packet::new_checked(ns.payload()).expect("an ICMPv6 message");
            assert_eq!(solicitation.msg_type(), Message::NeighborSolicit);
            assert!(matches!(solicitation.nd(), Some(Ok(Nd::NeighborSolicit { target: t, .. })) if t == target));

            assert_eq!(n, neighbor::NA_LEN);
            assert_eq!(out.ethertype(), EtherType::Ipv6);
            let ip = ipv6::Packet::new_checked(out.payload()).expect("an IPv6 packet");
            assert_eq!(out.payload()[0] >> 4, 6);
            assert_eq!((ip.src_addr(), ip.dst_addr()), (target, requester), "IPv6 addresses");
            assert_eq!(ip.hop_limit(), 255, "ND must be sent with hop limit 255");
            assert_eq!(ip.next_header(), Protocol::Icmpv6);
            assert_eq!(usize::from(ip.payload_len()), ip.payload().len());
            let icmp = icmpv6::Packet::new_checked(ip.payload()).expect("an ICMPv6 message");
            let pseudo = checksum::pseudo_v6(target, requester, 58, ip.payload().len() as u32);
            assert!(icmp.verify_checksum(pseudo), "ICMPv6 checksum");
            assert_eq!((icmp.msg_type(), icmp.code()), (Message::NeighborAdvert, 0));
            let Some(Ok(Nd::NeighborAdvert { flags, target: t, options })) = icmp.nd() else {
                panic!("not a neighbour advertisement: {:?}", icmp.nd())
            };
            assert_eq!(t, target, "advertises another target");
            assert_eq!(flags, na_flags::SOLICITED | na_flags::OVERRIDE, "flags");
            let options: Vec<_> = options.iter().collect();
            assert_eq!(options.len(), 1, "{options:?}");
            let option = options[0].expect("a well-formed option");
            assert_eq!(option.kind, NdOptionType::TargetLinkLayerAddr);
            assert_eq!(option.link_layer_addr(), Some(owner), "target link-layer address is not the owner's");
        }
    }
}
