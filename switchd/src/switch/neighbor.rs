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
use switchd_overlay::checksum;

const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETH: usize = 14;
/// An ARP reply frame, padded to the Ethernet minimum.
pub const ARP_REPLY_LEN: usize = 60;
/// A neighbour advertisement with a target link-layer address option.
pub const NA_LEN: usize = ETH + 40 + 32;
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

fn be16(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2).map(|s| u16::from_be_bytes([s[0], s[1]]))
}

/// Recognises an ARP request or neighbour solicitation in an (untagged)
/// Ethernet frame.
pub fn parse(eth: &[u8]) -> Option<Request> {
    match be16(eth, 12)? {
        ETHERTYPE_ARP => {
            let arp = eth.get(ETH..ETH + 28)?;
            // Ethernet/IPv4, lengths 6/4, operation 1 (request).
            if arp[..8] != [0, 1, 8, 0, 6, 4, 0, 1] {
                return None;
            }
            let sender = Ipv4Addr::new(arp[14], arp[15], arp[16], arp[17]);
            let target = Ipv4Addr::new(arp[24], arp[25], arp[26], arp[27]);
            // A gratuitous ARP announces; it asks nothing.
            (sender != target).then_some(Request::Arp { target })
        }
        ETHERTYPE_IPV6 => {
            let ip = eth.get(ETH..ETH + 40)?;
            let icmp = eth.get(ETH + 40..ETH + 40 + 24)?;
            // Next header ICMPv6, hop limit 255, type 135 (NS), code 0.
            if ip[6] != 58 || ip[7] != 255 || icmp[0] != 135 || icmp[1] != 0 {
                return None;
            }
            let source: [u8; 16] = ip[8..24].try_into().ok()?;
            // Duplicate address detection (from ::) must reach the owner.
            if Ipv6Addr::from(source).is_unspecified() {
                return None;
            }
            let target: [u8; 16] = icmp[8..24].try_into().ok()?;
            Some(Request::Solicitation { target: Ipv6Addr::from(target) })
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
    let asker = &request_eth[6..12];
    match request {
        Request::Arp { .. } => {
            let arp = &request_eth[ETH..ETH + 28];
            let r = &mut out[..ARP_REPLY_LEN];
            r.fill(0);
            r[0..6].copy_from_slice(asker);
            r[6..12].copy_from_slice(&owner.0);
            r[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
            r[14..20].copy_from_slice(&[0, 1, 8, 0, 6, 4]);
            r[20..22].copy_from_slice(&2u16.to_be_bytes());
            r[22..28].copy_from_slice(&owner.0); // sender MAC: the owner
            r[28..32].copy_from_slice(&arp[24..28]); // sender IP: the asked address
            r[32..38].copy_from_slice(&arp[8..14]); // target MAC: the asker
            r[38..42].copy_from_slice(&arp[14..18]); // target IP: the asker's
            ARP_REPLY_LEN
        }
        Request::Solicitation { target } => {
            let ip = &request_eth[ETH..ETH + 40];
            let r = &mut out[..NA_LEN];
            r.fill(0);
            r[0..6].copy_from_slice(asker);
            r[6..12].copy_from_slice(&owner.0);
            r[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
            let (hdr, icmp) = r[ETH..].split_at_mut(40);
            hdr[0] = 0x60;
            hdr[4..6].copy_from_slice(&32u16.to_be_bytes());
            hdr[6] = 58;
            hdr[7] = 255;
            hdr[8..24].copy_from_slice(&target.octets()); // from the owner's address
            hdr[24..40].copy_from_slice(&ip[8..24]); // to the asker
            icmp[0] = 136;
            icmp[4] = 0x60; // solicited, override
            icmp[8..24].copy_from_slice(&target.octets());
            icmp[24] = 2; // target link-layer address option, 8 bytes
            icmp[25] = 1;
            icmp[26..32].copy_from_slice(&owner.0);
            let sum = checksum::pseudo_v6(
                target,
                Ipv6Addr::from(<[u8; 16]>::try_from(&ip[8..24]).expect("16 bytes")),
                58,
                32,
            );
            let csum = checksum::finish(checksum::add(sum, icmp));
            icmp[2..4].copy_from_slice(&csum.to_be_bytes());
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
}
