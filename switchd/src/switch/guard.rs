//! What a port may send: the MAC and address guard.
//!
//! A container controls every byte it sends, so a port is held to what
//! switchd gave it, from its first frame:
//! - its **MAC**: no other source MAC, and no ARP or ND that names another
//!   link-layer address;
//! - its **addresses**: IPv4 and ARP only from its IPv4 address (or
//!   0.0.0.0, for DHCP and duplicate-address probes), IPv6 only from its
//!   IPv6 addresses (or ::, for duplicate address detection), link-local
//!   included;
//! - **neighbour discovery**: advertisements only for its own addresses,
//!   duplicate-address probes only for its own, and no router
//!   advertisements or redirects (the gateway is switchd's);
//! - nothing the guard cannot read that a stack would take as IPv4, ARP or
//!   IPv6: no VLAN tags (Linux takes VLAN 0 as untagged), no ARP of other
//!   hardware types, no IPv6 with a broken chain of extension headers.
//!
//! A port that bridges a LAN (an uplink, or a veth switchd did not make)
//! may send from any MAC but a switchd endpoint's: the switch checks that
//! when it learns (see `Switch::switch`), since it knows the endpoints.
//!
//! Pure: bytes in, a verdict out; no allocation.

use std::net::{Ipv4Addr, Ipv6Addr};

use switchd_config::MacAddr;
use switchd_wire::ethernet::{self, EtherType};
use switchd_wire::icmpv6::{self, Nd, NdOptionType};
use switchd_wire::ip::Protocol;
use switchd_wire::{arp, ipv4, ipv6};

use super::DropReason;

/// What a port may send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PortGuard {
    /// Anything: ports that speak for the gateway, and tests.
    #[default]
    Open,
    /// A LAN behind the port: any source MAC but a switchd endpoint's.
    Lan,
    /// A container's interface.
    Endpoint(EndpointGuard),
}

/// What a container's interface was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointGuard {
    pub mac: MacAddr,
    /// Its IPv4 sources; `None`: any (a network without a subnet, where
    /// switchd gives no addresses).
    pub ipv4: Option<Vec<Ipv4Addr>>,
    /// Its IPv6 sources and neighbour discovery targets; `None`: any.
    pub ipv6: Option<Vec<Ipv6Addr>>,
}

impl EndpointGuard {
    /// A container's guard: its MAC, and with `addressed` (a network with
    /// a subnet) its IPv4 address and its IPv6 addresses, the kernel's
    /// link-local one (EUI-64 from the MAC) included.
    pub fn new(mac: MacAddr, addressed: bool, ip: Option<std::net::IpAddr>) -> EndpointGuard {
        let (mut v4, mut v6) = (Vec::new(), vec![link_local(mac)]);
        match ip {
            Some(std::net::IpAddr::V4(ip)) => v4.push(ip),
            Some(std::net::IpAddr::V6(ip)) => v6.push(ip),
            None => {}
        }
        EndpointGuard { mac, ipv4: addressed.then_some(v4), ipv6: addressed.then_some(v6) }
    }

    /// Whether the port may send `eth` (an untagged Ethernet frame, at
    /// least a header long): `Err` names what it lied about.
    pub fn check(&self, eth: &[u8]) -> Result<(), DropReason> {
        let frame = ethernet::Frame::new_checked(eth).map_err(|_| DropReason::SpoofedMac)?;
        if frame.src_addr() != self.mac {
            return Err(DropReason::SpoofedMac);
        }
        if self.ipv4.is_none() && self.ipv6.is_none() {
            return Ok(());
        }
        let payload = frame.payload();
        match frame.ethertype() {
            EtherType::Ipv4 => {
                let packet = ipv4::Packet::new_checked(payload).map_err(|_| DropReason::SpoofedAddress)?;
                self.check_v4_source(packet.src_addr())
            }
            EtherType::Arp => self.check_arp(payload),
            EtherType::Ipv6 => self.check_ipv6(payload),
            t if t.is_vlan_tag() => Err(DropReason::SpoofedAddress),
            // Other EtherTypes carry no address the guard knows.
            _ => Ok(()),
        }
    }

    fn check_v4_source(&self, src: Ipv4Addr) -> Result<(), DropReason> {
        let allowed = src.is_unspecified() || self.ipv4.as_ref().is_none_or(|a| a.contains(&src));
        if allowed { Ok(()) } else { Err(DropReason::SpoofedAddress) }
    }

    /// ARP: Ethernet/IPv4 only, from its own MAC and address.
    fn check_arp(&self, payload: &[u8]) -> Result<(), DropReason> {
        let packet = arp::Packet::new_checked(payload).map_err(|_| DropReason::SpoofedAddress)?;
        self.check_v4_source(packet.sender_ip())?;
        if packet.sender_mac() == self.mac { Ok(()) } else { Err(DropReason::SpoofedMac) }
    }

    fn own_v6(&self, ip: Ipv6Addr) -> bool {
        self.ipv6.as_ref().is_none_or(|a| a.contains(&ip))
    }

    fn check_ipv6(&self, payload: &[u8]) -> Result<(), DropReason> {
        let packet = ipv6::Packet::new_checked(payload).map_err(|_| DropReason::SpoofedAddress)?;
        let src = packet.src_addr();
        if !src.is_unspecified() && !self.own_v6(src) {
            return Err(DropReason::SpoofedAddress);
        }
        match packet.upper_layer().map_err(|_| DropReason::SpoofedAddress)? {
            ipv6::UpperLayer::Protocol(Protocol::Icmpv6, icmp) => self.check_neighbor_discovery(src, icmp),
            _ => Ok(()),
        }
    }

    /// Neighbour discovery from a container tells only the truth about itself.
    fn check_neighbor_discovery(&self, src: Ipv6Addr, icmp: &[u8]) -> Result<(), DropReason> {
        // Too short for its own header: no stack reads it, and the guard
        // cannot tell whether it is neighbour discovery (found by fuzzing
        // port_guard: a 2-byte "advertisement" went through).
        let packet = icmpv6::Packet::new_checked(icmp).map_err(|_| DropReason::SpoofedAddress)?;
        let nd = match packet.nd() {
            None => return Ok(()),
            Some(nd) => nd.map_err(|_| DropReason::SpoofedNd)?,
        };
        let own_option = match nd {
            // Only the gateway, which is switchd's, advertises routes or redirects.
            Nd::RouterAdvert { .. } | Nd::Redirect { .. } => return Err(DropReason::SpoofedNd),
            Nd::RouterSolicit { .. } => NdOptionType::SourceLinkLayerAddr,
            // Duplicate address detection (from ::) probes its own addresses only.
            Nd::NeighborSolicit { target, .. } if src.is_unspecified() && !self.own_v6(target) => {
                return Err(DropReason::SpoofedNd);
            }
            Nd::NeighborSolicit { .. } => NdOptionType::SourceLinkLayerAddr,
            Nd::NeighborAdvert { target, .. } if src.is_unspecified() || !self.own_v6(target) => {
                return Err(DropReason::SpoofedNd);
            }
            Nd::NeighborAdvert { .. } => NdOptionType::TargetLinkLayerAddr,
        };
        // Its link-layer address options name its own MAC.
        for option in nd.options().iter() {
            let option = option.map_err(|_| DropReason::SpoofedNd)?;
            if option.kind == own_option && option.link_layer_addr() != Some(self.mac) {
                return Err(DropReason::SpoofedNd);
            }
        }
        Ok(())
    }
}

/// The link-local address the kernel gives an interface with `mac`
/// (EUI-64, RFC 4291 appendix A).
pub fn link_local(mac: MacAddr) -> Ipv6Addr {
    let m = mac.0;
    Ipv6Addr::from([0xfe, 0x80, 0, 0, 0, 0, 0, 0, m[0] ^ 2, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]])
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINE: MacAddr = MacAddr([2, 0x42, 10, 0, 0, 2]);
    const OTHER: MacAddr = MacAddr([2, 0x42, 10, 0, 0, 3]);

    fn guard() -> EndpointGuard {
        EndpointGuard::new(MINE, true, Some("10.0.0.2".parse().unwrap()))
    }

    fn eth(src: MacAddr, ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&src.0);
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn ipv4(src: [u8; 4]) -> Vec<u8> {
        let mut ip = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0];
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&[10, 0, 0, 9]);
        ip.extend_from_slice(&[0; 8]);
        ip
    }

    fn arp(sender_mac: MacAddr, sender_ip: [u8; 4]) -> Vec<u8> {
        let mut a = vec![0, 1, 8, 0, 6, 4, 0, 1];
        a.extend_from_slice(&sender_mac.0);
        a.extend_from_slice(&sender_ip);
        a.extend_from_slice(&[0; 6]);
        a.extend_from_slice(&[10, 0, 0, 9]);
        a
    }

    /// An IPv6 packet from `src` carrying `icmp` (ICMPv6), after `ext`
    /// (extension headers, already chained to end in next header 58).
    fn ipv6(src: Ipv6Addr, first_next: u8, ext: &[u8], icmp: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&((ext.len() + icmp.len()) as u16).to_be_bytes());
        p.extend_from_slice(&[first_next, 255]);
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&"ff02::1".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(ext);
        p.extend_from_slice(icmp);
        p
    }

    fn nd(kind: u8, flags: u8, target: Ipv6Addr, option: Option<(u8, MacAddr)>) -> Vec<u8> {
        let mut m = vec![kind, 0, 0, 0, flags, 0, 0, 0];
        m.extend_from_slice(&target.octets());
        if let Some((t, mac)) = option {
            m.extend_from_slice(&[t, 1]);
            m.extend_from_slice(&mac.0);
        }
        m
    }

    #[test]
    fn an_icmpv6_message_shorter_than_its_header_is_refused() {
        let g = guard();
        let me = link_local(MINE);
        for short in [&[][..], &[136], &[136, 0], &[128, 0, 0]] {
            assert_eq!(g.check(&eth(MINE, 0x86dd, &ipv6(me, 58, &[], short))), Err(DropReason::SpoofedAddress));
        }
        assert_eq!(g.check(&eth(MINE, 0x86dd, &ipv6(me, 58, &[], &[128, 0, 0, 0]))), Ok(()), "4 bytes are a header");
    }

    #[test]
    fn link_local_is_the_kernels_eui64() {
        // `ip link add d type dummy address 02:42:0a:00:00:02` gets fe80::42:aff:fe00:2.
        assert_eq!(link_local(MINE), "fe80::42:aff:fe00:2".parse::<Ipv6Addr>().unwrap());
    }

    #[test]
    fn another_source_mac_is_refused_whatever_it_carries() {
        let g = guard();
        assert_eq!(g.check(&eth(MINE, 0x0800, &ipv4([10, 0, 0, 2]))), Ok(()));
        assert_eq!(g.check(&eth(OTHER, 0x0800, &ipv4([10, 0, 0, 2]))), Err(DropReason::SpoofedMac), "own IP");
        assert_eq!(g.check(&eth(OTHER, 0x88b5, b"experiment")), Err(DropReason::SpoofedMac), "any EtherType");
        // Even on a network without a subnet, where addresses are free.
        let l2 = EndpointGuard::new(MINE, false, None);
        assert_eq!(l2.check(&eth(OTHER, 0x88b5, b"experiment")), Err(DropReason::SpoofedMac));
        assert_eq!(l2.check(&eth(MINE, 0x0800, &ipv4([192, 168, 1, 1]))), Ok(()));
    }

    #[test]
    fn ipv4_and_arp_only_from_its_own() {
        let g = guard();
        assert_eq!(g.check(&eth(MINE, 0x0800, &ipv4([10, 0, 0, 3]))), Err(DropReason::SpoofedAddress));
        assert_eq!(g.check(&eth(MINE, 0x0800, &ipv4([0, 0, 0, 0]))), Ok(()), "DHCP");
        assert_eq!(g.check(&eth(MINE, 0x0806, &arp(MINE, [10, 0, 0, 2]))), Ok(()));
        assert_eq!(g.check(&eth(MINE, 0x0806, &arp(MINE, [10, 0, 0, 3]))), Err(DropReason::SpoofedAddress));
        assert_eq!(g.check(&eth(MINE, 0x0806, &arp(OTHER, [10, 0, 0, 2]))), Err(DropReason::SpoofedMac));
        assert_eq!(g.check(&eth(MINE, 0x8100, &[0; 32])), Err(DropReason::SpoofedAddress), "VLAN tag");
    }

    #[test]
    fn ipv6_only_from_its_own_link_local_or_given_address() {
        let g = guard();
        let me = link_local(MINE);
        let echo = [128u8, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(g.check(&eth(MINE, 0x86dd, &ipv6(me, 58, &[], &echo))), Ok(()));
        let other = link_local(OTHER);
        assert_eq!(g.check(&eth(MINE, 0x86dd, &ipv6(other, 58, &[], &echo))), Err(DropReason::SpoofedAddress));
        let given = EndpointGuard::new(MINE, true, Some("fd00::2".parse().unwrap()));
        let from = "fd00::2".parse().unwrap();
        assert_eq!(given.check(&eth(MINE, 0x86dd, &ipv6(from, 58, &[], &echo))), Ok(()));
        assert_eq!(g.check(&eth(MINE, 0x86dd, &[0x60; 20])), Err(DropReason::SpoofedAddress), "truncated");
    }

    #[test]
    fn neighbour_advertisements_only_for_its_own_addresses() {
        let g = guard();
        let (me, other) = (link_local(MINE), link_local(OTHER));
        let na = |target, option| eth(MINE, 0x86dd, &ipv6(me, 58, &[], &nd(136, 0x20, target, option)));
        assert_eq!(g.check(&na(me, Some((2, MINE)))), Ok(()));
        assert_eq!(g.check(&na(other, Some((2, MINE)))), Err(DropReason::SpoofedNd), "another's address");
        assert_eq!(g.check(&na(me, Some((2, OTHER)))), Err(DropReason::SpoofedNd), "another's MAC");
        // Hidden behind a destination options header: still read.
        let dst_opts = [58, 0, 1, 4, 0, 0, 0, 0];
        let hidden = eth(MINE, 0x86dd, &ipv6(me, 60, &dst_opts, &nd(136, 0x20, other, None)));
        assert_eq!(g.check(&hidden), Err(DropReason::SpoofedNd));
        // A chain that never ends is refused.
        let endless: Vec<u8> = [60, 0, 1, 4, 0, 0, 0, 0].repeat(9);
        let endless = eth(MINE, 0x86dd, &ipv6(me, 60, &endless, &nd(136, 0x20, me, None)));
        assert_eq!(g.check(&endless), Err(DropReason::SpoofedAddress));
    }

    #[test]
    fn solicitations_router_advertisements_and_redirects() {
        let g = guard();
        let (me, other) = (link_local(MINE), link_local(OTHER));
        let unspecified = Ipv6Addr::UNSPECIFIED;
        let from = |src, body: Vec<u8>| eth(MINE, 0x86dd, &ipv6(src, 58, &[], &body));
        assert_eq!(g.check(&from(me, nd(135, 0, other, Some((1, MINE))))), Ok(()), "asking about another");
        assert_eq!(g.check(&from(me, nd(135, 0, other, Some((1, OTHER))))), Err(DropReason::SpoofedNd));
        assert_eq!(g.check(&from(unspecified, nd(135, 0, me, None))), Ok(()), "its own DAD");
        assert_eq!(g.check(&from(unspecified, nd(135, 0, other, None))), Err(DropReason::SpoofedNd), "DAD DoS");
        assert_eq!(g.check(&from(me, nd(134, 0, me, None))), Err(DropReason::SpoofedNd), "router advertisement");
        assert_eq!(g.check(&from(me, nd(137, 0, me, None))), Err(DropReason::SpoofedNd), "redirect");
        let rs = vec![133, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 0x42, 10, 0, 0, 2];
        assert_eq!(g.check(&from(me, rs)), Ok(()), "router solicitation");
        let bad_option = vec![133, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2, 0x42, 10, 0, 0, 2];
        assert_eq!(g.check(&from(me, bad_option)), Err(DropReason::SpoofedNd), "zero-length option");
    }
}
