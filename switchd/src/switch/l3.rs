//! The IP the switch reads to route and to serve (a summary of the
//! header, read through `switchd_wire`), and the rewrite a routed frame
//! gets: new MACs, TTL (IPv6: hop limit) one less, the IPv4 header
//! checksum updated.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use switchd_config::MacAddr;
use switchd_wire::ethernet::{self, EtherType};
use switchd_wire::ip::{self, Protocol};
use switchd_wire::{icmpv4, ipv4, ipv6};

/// What the switch needs of an IPv4 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4 {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    pub protocol: Protocol,
    /// Where the payload starts in the Ethernet frame.
    pub payload_at: usize,
    /// TCP or UDP ports (source, destination) of a first (or only) fragment.
    pub ports: Option<(u16, u16)>,
    /// The ICMP message of a first (or only) fragment.
    pub icmp: Option<icmpv4::Message>,
    /// Where the IP packet ends in the Ethernet frame: frames may carry
    /// padding after it (a NIC pads short frames to 60 bytes).
    pub end: usize,
    /// A fragment after the first.
    pub later_fragment: bool,
    /// A fragment, the first one included.
    pub fragment: bool,
    /// Don't Fragment: a router may not cut it (path MTU discovery).
    pub dont_fragment: bool,
}

impl Ipv4 {
    pub fn dst_port(&self) -> Option<u16> {
        self.ports.map(|(_, dst)| dst)
    }

    pub fn is_udp_to(&self, port: u16) -> bool {
        self.protocol == Protocol::Udp && self.dst_port() == Some(port)
    }

    pub fn is_tcp_to(&self, port: u16) -> bool {
        self.protocol == Protocol::Tcp && self.dst_port() == Some(port)
    }

    pub fn is_echo_request(&self) -> bool {
        self.icmp == Some(icmpv4::Message::EchoRequest)
    }

    pub fn flow(&self) -> Flow {
        Flow { src: IpAddr::V4(self.src), dst: IpAddr::V4(self.dst), protocol: self.protocol, ports: self.ports }
    }
}

/// What the balancer reads of a packet of either IP version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IPv6: the upper layer's, past the extension headers.
    pub protocol: Protocol,
    /// TCP or UDP ports (source, destination) of a first (or only) fragment.
    pub ports: Option<(u16, u16)>,
}

/// The IPv4 packet of an untagged Ethernet frame, if it holds a valid one:
/// a whole header whose checksum verifies (RFC 1812 5.2.2: a router
/// discards any other, as a host's stack does, rather than route, serve or
/// answer it).
pub fn ipv4(eth: &[u8]) -> Option<Ipv4> {
    let frame = ethernet::Frame::new_checked(eth).ok()?;
    if frame.ethertype() != EtherType::Ipv4 {
        return None;
    }
    let packet = ipv4::Packet::new_checked(frame.payload()).ok()?;
    if !packet.verify_checksum() {
        return None;
    }
    let first_fragment = !packet.is_later_fragment();
    let payload = packet.payload();
    let protocol = packet.protocol();
    Some(Ipv4 {
        src: packet.src_addr(),
        dst: packet.dst_addr(),
        ttl: packet.ttl(),
        protocol,
        payload_at: ethernet::HEADER_LEN + packet.header_len(),
        ports: ip::ports(protocol, payload).filter(|_| first_fragment),
        icmp: (protocol == Protocol::Icmp && first_fragment)
            .then(|| payload.first().map(|t| icmpv4::Message::from(*t)))
            .flatten(),
        end: ethernet::HEADER_LEN + usize::from(packet.total_len()),
        later_fragment: !first_fragment,
        fragment: packet.is_fragment(),
        dont_fragment: packet.dont_frag(),
    })
}

/// The flow of an untagged Ethernet frame's IPv4 or IPv6 packet.
pub fn flow(eth: &[u8]) -> Option<Flow> {
    match ipv4(eth) {
        Some(ip) => Some(ip.flow()),
        None => ipv6(eth)?.flow(),
    }
}

/// What the switch needs of an IPv6 header to route it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6 {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub hop_limit: u8,
    /// The upper layer past any extension headers (`None`: a later
    /// fragment, or a chain that could not be followed).
    pub protocol: Option<Protocol>,
    /// TCP or UDP ports (source, destination) of a first (or only) fragment.
    pub ports: Option<(u16, u16)>,
    /// The ICMPv6 message type.
    pub icmp_type: Option<u8>,
}

impl Ipv6 {
    /// What the gateway itself answers at its address: echo and DNS over UDP.
    pub fn is_served(&self) -> bool {
        self.icmp_type == Some(128)
            || (self.protocol == Some(Protocol::Udp) && self.ports.is_some_and(|(_, d)| d == 53))
    }

    pub fn is_tcp_to(&self, port: u16) -> bool {
        self.protocol == Some(Protocol::Tcp) && self.ports.is_some_and(|(_, dst)| dst == port)
    }

    /// Its flow, if its upper layer is known.
    pub fn flow(&self) -> Option<Flow> {
        let (src, dst) = (IpAddr::V6(self.src), IpAddr::V6(self.dst));
        Some(Flow { src, dst, protocol: self.protocol?, ports: self.ports })
    }
}

/// The IPv6 packet of an untagged Ethernet frame, if it holds one whose
/// payload length fits the frame.
pub fn ipv6(eth: &[u8]) -> Option<Ipv6> {
    let frame = ethernet::Frame::new_checked(eth).ok()?;
    if frame.ethertype() != EtherType::Ipv6 {
        return None;
    }
    let packet = ipv6::Packet::new_checked(frame.payload()).ok()?;
    let (protocol, ports, icmp_type) = match packet.upper_layer() {
        Ok(ipv6::UpperLayer::Protocol(protocol, l4)) => {
            let icmp_type = l4.first().copied().filter(|_| protocol == Protocol::Icmpv6);
            (Some(protocol), ip::ports(protocol, l4), icmp_type)
        }
        _ => (None, None, None),
    };
    let (src, dst, hop_limit) = (packet.src_addr(), packet.dst_addr(), packet.hop_limit());
    Some(Ipv6 { src, dst, hop_limit, protocol, ports, icmp_type })
}

/// Turns a frame [`ipv4`] or [`ipv6`] accepted, with TTL or hop limit
/// above 1, into the frame the gateway forwards: new MACs, TTL one less
/// (IPv4: header checksum updated incrementally; IPv6 has none). No
/// transport checksum covers either, so a frame whose checksum is left to
/// the receiver stays as it is.
pub fn forward(eth: &mut [u8], src: MacAddr, dst: MacAddr) {
    let mut frame = ethernet::Frame::new_unchecked(&mut eth[..]);
    frame.set_dst_addr(dst);
    frame.set_src_addr(src);
    match frame.ethertype() {
        EtherType::Ipv6 => {
            let mut packet = ipv6::Packet::new_unchecked(frame.payload_mut());
            let hop_limit = packet.hop_limit();
            packet.set_hop_limit(hop_limit.saturating_sub(1));
        }
        _ => ipv4::Packet::new_unchecked(frame.payload_mut()).decrement_ttl(),
    }
}

#[cfg(test)]
mod tests {
    use etherparse::{Ipv4HeaderSlice, PacketBuilder};

    use super::*;

    fn udp_frame(ttl: u8, dst_port: u16) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 1, 0, 2], ttl)
            .udp(33434, dst_port)
            .write(&mut out, b"probe")
            .unwrap();
        out
    }

    #[test]
    fn reads_an_ipv4_header() {
        let ip = ipv4(&udp_frame(64, 53)).unwrap();
        assert_eq!((ip.src, ip.dst, ip.ttl), ("10.0.0.1".parse().unwrap(), "10.1.0.2".parse().unwrap(), 64));
        assert!(ip.is_udp_to(53));
        assert_eq!(ip.ports, Some((33434, 53)));
        assert_eq!((ip.payload_at, ip.end), (34, 47));
        assert!(!ip.fragment && !ip.later_fragment);
        let mut bad = udp_frame(64, 53);
        bad[14] = 0x44; // IHL 4: shorter than a header
        assert_eq!(ipv4(&bad), None);
        assert_eq!(ipv4(&udp_frame(64, 53)[..20]), None, "truncated");
    }

    #[test]
    fn padding_and_fragments() {
        let mut padded = udp_frame(64, 53);
        padded.resize(60, 0);
        assert_eq!(ipv4(&padded).unwrap().end, 47, "the padding is not the packet's");
        let mut first = udp_frame(64, 53);
        first[20] = 0x20; // more fragments
        refill_checksum(&mut first);
        let ip = ipv4(&first).unwrap();
        assert!(ip.fragment && !ip.later_fragment);
        assert_eq!(ip.ports, Some((33434, 53)));
    }

    #[test]
    fn forwarding_ipv6_rewrites_macs_and_the_hop_limit() {
        let mut frame = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv6(
                [0xfd, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                [0xfd, 0, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                64,
            )
            .udp(33434, 53)
            .write(&mut frame, b"probe")
            .unwrap();
        let ip = ipv6(&frame).unwrap();
        assert_eq!((ip.dst, ip.hop_limit), ("fd00:20::2".parse().unwrap(), 64));
        assert_eq!(ipv4(&frame), None, "IPv6 is no IPv4");
        let before = frame.clone();
        forward(&mut frame, MacAddr([2, 0, 0, 0, 0, 0xaa]), MacAddr([2, 0, 0, 0, 0, 0xbb]));
        assert_eq!(&frame[..12], &[2, 0, 0, 0, 0, 0xbb, 2, 0, 0, 0, 0, 0xaa]);
        assert_eq!(ipv6(&frame).unwrap().hop_limit, 63);
        assert_eq!(frame[14 + 8..], before[14 + 8..], "only the hop limit changed in the packet");
        assert_eq!(ipv6(&frame[..14 + 39]), None, "truncated");
    }

    #[test]
    fn the_ports_of_ipv6_are_read_past_extension_headers() {
        let (src, dst) = (
            [0xfd, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0xfd, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
        );
        let mut frame = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv6(src, dst, 64)
            .tcp(40000, 53, 1, 1024)
            .write(&mut frame, b"")
            .unwrap();
        assert_eq!(ipv6(&frame).unwrap().ports, Some((40000, 53)));
        assert!(ipv6(&frame).unwrap().is_tcp_to(53));
        // A hop-by-hop options header (8 bytes of padding) before the TCP.
        let mut hop = frame[..14 + 40].to_vec();
        hop[14 + 6] = 0; // next header: hop-by-hop
        hop[14 + 5] += 8; // payload length
        hop.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
        hop.extend_from_slice(&frame[14 + 40..]);
        assert!(ipv6(&hop).unwrap().is_tcp_to(53));
        assert_eq!(ipv6(&hop).unwrap().protocol, Some(Protocol::Tcp));
        let mut udp = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv6(src, dst, 64)
            .udp(40000, 53)
            .write(&mut udp, b"q")
            .unwrap();
        assert!(!ipv6(&udp).unwrap().is_tcp_to(53), "UDP is no TCP");
        assert_eq!(ipv6(&udp).unwrap().flow().unwrap().ports, Some((40000, 53)));
    }

    fn refill_checksum(frame: &mut [u8]) {
        ipv4::Packet::new_checked(&mut frame[14..]).unwrap().fill_checksum();
    }

    /// RFC 1812 5.2.2: a header whose checksum does not verify is
    /// discarded, never routed, served or answered with an ICMP error
    /// (found by fuzzing l3_forward and icmp_error: it was read as valid).
    #[test]
    fn a_wrong_header_checksum_is_not_ipv4_to_read() {
        let mut corrupt = udp_frame(64, 53);
        corrupt[14 + 8] = 7; // TTL changed on the way, checksum not
        assert_eq!(ipv4(&corrupt), None);
        let mut zero = udp_frame(64, 53);
        zero[24..26].fill(0);
        assert_eq!(ipv4(&zero), None, "no checksum is no valid header either");
        refill_checksum(&mut corrupt);
        assert_eq!(ipv4(&corrupt).map(|ip| ip.ttl), Some(7));
    }

    #[test]
    fn forwarding_rewrites_macs_ttl_and_checksum() {
        let mut frame = udp_frame(64, 53);
        forward(&mut frame, MacAddr([2, 0, 0, 0, 0, 0xaa]), MacAddr([2, 0, 0, 0, 0, 0xbb]));
        assert_eq!(&frame[..12], &[2, 0, 0, 0, 0, 0xbb, 2, 0, 0, 0, 0, 0xaa]);
        let header = Ipv4HeaderSlice::from_slice(&frame[14..]).unwrap().to_header();
        assert_eq!(header.time_to_live, 63);
        assert_eq!(header.header_checksum, header.calc_header_checksum(), "checksum still right");
        assert_eq!(frame[34..], udp_frame(64, 53)[34..], "payload untouched");
    }
}
