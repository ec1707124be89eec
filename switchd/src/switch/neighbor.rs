//! ARP and IPv6 neighbour discovery, as far as suppression needs them:
//! recognising a request for an address, and building the answer its owner
//! would give. With the answer known (from gossip, or from a local
//! endpoint), the local switch replies itself instead of flooding the
//! question to every host of the network.
//!
//! Announcements (gratuitous ARP) and duplicate-address probes of IPv6 are
//! never answered here: they must reach every host so tables move.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use switchd_config::MacAddr;
use switchd_wire::ethernet::{self, EtherType};
use switchd_wire::icmpv6::{self, Nd, NeighborAdvertRepr, na_flags};
use switchd_wire::ip::Protocol;
use switchd_wire::{arp, ipv6};

/// An ARP reply frame, padded to the Ethernet minimum.
pub const ARP_REPLY_LEN: usize = 60;
/// A neighbour advertisement with a target link-layer address option.
pub const NA_LEN: usize = ethernet::HEADER_LEN + ipv6::HEADER_LEN + NeighborAdvertRepr::LEN;
/// Room enough for either.
pub const MAX_REPLY_LEN: usize = NA_LEN;

/// A question this module can answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// ARP: who has `target`?
    Arp { target: Ipv4Addr },
    /// IPv6 neighbour solicitation for `target`.
    Solicitation { target: Ipv6Addr },
}

impl Request {
    pub fn target(self) -> IpAddr {
        match self {
            Request::Arp { target } => IpAddr::V4(target),
            Request::Solicitation { target } => IpAddr::V6(target),
        }
    }
}

/// Recognises an ARP request or neighbour solicitation in an (untagged)
/// Ethernet frame.
pub fn parse(eth: &[u8]) -> Option<Request> {
    let frame = ethernet::Frame::new_checked(eth).ok()?;
    match frame.ethertype() {
        EtherType::Arp => {
            let arp = arp::Repr::parse(&arp::Packet::new_checked(frame.payload()).ok()?);
            // A gratuitous ARP announces; it asks nothing.
            arp.is_question().then_some(Request::Arp { target: arp.target_ip })
        }
        EtherType::Ipv6 => {
            let ip = ipv6::Packet::new_checked(frame.payload()).ok()?;
            // ICMPv6 right after the header, hop limit 255 (from the link).
            if ip.next_header() != Protocol::Icmpv6 || ip.hop_limit() != 255 {
                return None;
            }
            // Duplicate address detection (from ::) must reach the owner;
            // a multicast source is no requester to answer (RFC 4291 2.7).
            if ip.src_addr().is_unspecified() || ip.src_addr().is_multicast() {
                return None;
            }
            let icmp = icmpv6::Packet::new_checked(ip.payload()).ok()?;
            match (icmp.code(), icmp.nd()?.ok()?) {
                // RFC 4861 7.1.1: a solicitation for a multicast target is invalid.
                (0, Nd::NeighborSolicit { target, .. }) if !target.is_multicast() => {
                    Some(Request::Solicitation { target })
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// Writes into `out` the answer that `owner` (the MAC of the requested
/// address) would give to `request_eth`; returns its length.
///
/// # Panics
/// If `out` is shorter than [`MAX_REPLY_LEN`], or `request_eth` is not a
/// request [`parse`] accepted.
pub fn reply(request_eth: &[u8], request: Request, owner: MacAddr, out: &mut [u8]) -> usize {
    let asked = ethernet::Frame::new_unchecked(request_eth);
    let asker = asked.src_addr();
    match request {
        Request::Arp { target } => {
            let question = arp::Repr::parse(&arp::Packet::new_unchecked(asked.payload()));
            let r = &mut out[..ARP_REPLY_LEN];
            r.fill(0);
            let mut frame = ethernet::Frame::new_unchecked(&mut r[..]);
            ethernet::Repr { src_addr: owner, dst_addr: asker, ethertype: EtherType::Arp }.emit(&mut frame);
            arp::Repr {
                operation: arp::Operation::Reply,
                sender_mac: owner,
                sender_ip: target,
                target_mac: question.sender_mac,
                target_ip: question.sender_ip,
            }
            .emit(frame.payload_mut());
            ARP_REPLY_LEN
        }
        Request::Solicitation { target } => {
            let asker_ip = ipv6::Packet::new_unchecked(asked.payload()).src_addr();
            let r = &mut out[..NA_LEN];
            let mut frame = ethernet::Frame::new_unchecked(&mut r[..]);
            ethernet::Repr { src_addr: owner, dst_addr: asker, ethertype: EtherType::Ipv6 }.emit(&mut frame);
            let (ip, icmp) = frame.payload_mut().split_at_mut(ipv6::HEADER_LEN);
            let header = ipv6::Repr {
                src_addr: target,
                dst_addr: asker_ip,
                next_header: Protocol::Icmpv6,
                payload_len: NeighborAdvertRepr::LEN,
                hop_limit: 255,
            };
            header.emit(ip);
            let pseudo =
                ipv6::Packet::new_unchecked(&*ip).pseudo_header(Protocol::Icmpv6, NeighborAdvertRepr::LEN as u32);
            NeighborAdvertRepr { flags: na_flags::SOLICITED | na_flags::OVERRIDE, target, target_mac: owner }
                .emit(icmp, pseudo);
            NA_LEN
        }
    }
}

#[cfg(test)]
mod tests {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    use super::*;

    const ASKER: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const OWNER: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

    /// `arping` / the kernel's ARP request for 10.0.0.2 from 10.0.0.1.
    fn arp_request(sender: [u8; 4], target: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&ASKER);
        f.extend_from_slice(&[8, 6, 0, 1, 8, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&ASKER);
        f.extend_from_slice(&sender);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&target);
        f.extend_from_slice(&[0; 18]);
        f
    }

    #[test]
    fn arp_request_and_reply_bytes() {
        let req = arp_request([10, 0, 0, 1], [10, 0, 0, 2]);
        let parsed = parse(&req).unwrap();
        assert_eq!(parsed.target(), IpAddr::from([10, 0, 0, 2]));
        let mut out = [0u8; MAX_REPLY_LEN];
        let n = reply(&req, parsed, OWNER, &mut out);
        let expected: Vec<u8> = [
            &ASKER[..],
            &OWNER.0,
            &[8, 6, 0, 1, 8, 0, 6, 4, 0, 2],
            &OWNER.0,
            &[10, 0, 0, 2],
            &ASKER,
            &[10, 0, 0, 1],
            &[0; 18],
        ]
        .concat();
        assert_eq!(&out[..n], &expected[..]);
    }

    #[test]
    fn announcements_and_other_frames_are_not_requests() {
        assert_eq!(parse(&arp_request([10, 0, 0, 2], [10, 0, 0, 2])), None, "gratuitous ARP");
        let mut reply_op = arp_request([10, 0, 0, 1], [10, 0, 0, 2]);
        reply_op[21] = 2;
        assert_eq!(parse(&reply_op), None, "an ARP reply");
        assert_eq!(parse(&[0u8; 10]), None);
        assert_eq!(parse(&arp_request([10, 0, 0, 1], [10, 0, 0, 2])[..30]), None, "truncated");
    }

    fn solicitation(source: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
        let mut f = vec![0x33, 0x33, 0xff, 0, 0, 2];
        f.extend_from_slice(&ASKER);
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, 32, 58, 255]);
        f.extend_from_slice(&source.octets());
        f.extend_from_slice(&"ff02::1:ff00:2".parse::<Ipv6Addr>().unwrap().octets());
        f.extend_from_slice(&[135, 0, 0, 0, 0, 0, 0, 0]);
        f.extend_from_slice(&target.octets());
        f.extend_from_slice(&[1, 1]);
        f.extend_from_slice(&ASKER);
        f
    }

    #[test]
    fn solicitation_and_advertisement() {
        let (me, them): (Ipv6Addr, Ipv6Addr) = ("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap());
        let req = solicitation(me, them);
        let parsed = parse(&req).unwrap();
        assert_eq!(parsed, Request::Solicitation { target: them });
        let mut out = [0u8; MAX_REPLY_LEN];
        let n = reply(&req, parsed, OWNER, &mut out);
        let p = SlicedPacket::from_ethernet(&out[..n]).unwrap();
        let (Some(NetSlice::Ipv6(ip)), Some(TransportSlice::Icmpv6(icmp))) = (&p.net, &p.transport) else { panic!() };
        assert_eq!(ip.header().source_addr(), them);
        assert_eq!(ip.header().destination_addr(), me);
        assert_eq!(ip.header().hop_limit(), 255);
        assert_eq!(icmp.type_u8(), 136, "neighbour advertisement");
        assert_ne!(icmp.checksum(), 0);
        assert!(icmp.is_checksum_valid(ip.header().source(), ip.header().destination()));
        assert_eq!(parse(&solicitation(Ipv6Addr::UNSPECIFIED, them)), None, "duplicate address detection");
    }

    /// Found by fuzzing nd_reply: a solicitation from a multicast source
    /// was answered with an advertisement to that group, and one for a
    /// multicast target with an advertisement from it.
    #[test]
    fn solicitations_from_or_for_multicast_addresses_are_not_answered() {
        let (group, them): (Ipv6Addr, Ipv6Addr) = ("ff02::1".parse().unwrap(), "fd00::2".parse().unwrap());
        assert_eq!(parse(&solicitation(group, them)), None, "from a multicast source");
        assert_eq!(parse(&solicitation("fd00::1".parse().unwrap(), group)), None, "for a multicast target");
    }
}
