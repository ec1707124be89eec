//! The IPv4 the switch reads to route and to guard addresses: a header's
//! addresses, TTL and ports, the sender of an ARP message, and the rewrite a
//! routed frame gets (MACs, TTL, header checksum).

use std::net::Ipv4Addr;

use etherparse::Ipv4HeaderSlice;
use switchd_config::MacAddr;

const ETH: usize = 14;
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// What the switch needs of an IPv4 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4 {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    pub protocol: u8,
    /// Where the payload starts in the Ethernet frame.
    pub payload_at: usize,
    /// TCP or UDP destination port of a first (or only) fragment.
    pub dst_port: Option<u16>,
    /// The ICMP type of a first (or only) fragment.
    pub icmp_type: Option<u8>,
    /// A fragment after the first.
    pub later_fragment: bool,
}

impl Ipv4 {
    pub fn is_udp_to(&self, port: u16) -> bool {
        self.protocol == PROTO_UDP && self.dst_port == Some(port)
    }

    pub fn is_echo_request(&self) -> bool {
        self.protocol == PROTO_ICMP && self.icmp_type == Some(8)
    }
}

fn ethertype(eth: &[u8]) -> Option<u16> {
    eth.get(12..14).map(|b| u16::from_be_bytes([b[0], b[1]]))
}

/// The IPv4 header of an untagged Ethernet frame, if it holds a valid one.
pub fn ipv4(eth: &[u8]) -> Option<Ipv4> {
    if ethertype(eth)? != ETHERTYPE_IPV4 {
        return None;
    }
    let header = Ipv4HeaderSlice::from_slice(eth.get(ETH..)?).ok()?;
    let payload_at = ETH + header.slice().len();
    let first_fragment = header.fragments_offset().value() == 0;
    let dst_port = match header.protocol().0 {
        PROTO_TCP | PROTO_UDP if first_fragment => {
            eth.get(payload_at + 2..payload_at + 4).map(|b| u16::from_be_bytes([b[0], b[1]]))
        }
        _ => None,
    };
    let icmp_type =
        (header.protocol().0 == PROTO_ICMP && first_fragment).then(|| eth.get(payload_at).copied()).flatten();
    Some(Ipv4 {
        src: header.source_addr(),
        dst: header.destination_addr(),
        ttl: header.ttl(),
        protocol: header.protocol().0,
        payload_at,
        dst_port,
        icmp_type,
        later_fragment: !first_fragment,
    })
}

/// The source address of an untagged IPv4 frame: only what the address
/// guard needs, read without parsing the rest (it runs on every frame).
pub fn ipv4_src(eth: &[u8]) -> Option<Ipv4Addr> {
    if ethertype(eth)? != ETHERTYPE_IPV4 || eth.get(ETH)? >> 4 != 4 {
        return None;
    }
    let src: [u8; 4] = eth.get(ETH + 12..ETH + 16)?.try_into().ok()?;
    Some(Ipv4Addr::from(src))
}

/// The sender address of an ARP message (request, reply or announcement)
/// for IPv4 over Ethernet.
pub fn arp_sender(eth: &[u8]) -> Option<Ipv4Addr> {
    if ethertype(eth)? != ETHERTYPE_ARP {
        return None;
    }
    let arp = eth.get(ETH..ETH + 28)?;
    (arp[..6] == [0, 1, 8, 0, 6, 4]).then(|| Ipv4Addr::new(arp[14], arp[15], arp[16], arp[17]))
}

/// Turns a frame [`ipv4`] accepted, with TTL above 1, into the frame the
/// gateway forwards: new MACs, TTL one less, header checksum updated
/// incrementally (RFC 1624). The transport checksum does not cover the TTL,
/// so a frame whose checksum is left to the receiver stays as it is.
pub fn forward(eth: &mut [u8], src: MacAddr, dst: MacAddr) {
    eth[0..6].copy_from_slice(&dst.0);
    eth[6..12].copy_from_slice(&src.0);
    let ip = &mut eth[ETH..];
    let old = u16::from_be_bytes([ip[8], ip[9]]);
    ip[8] -= 1;
    let new = u16::from_be_bytes([ip[8], ip[9]]);
    let check = u16::from_be_bytes([ip[10], ip[11]]);
    // HC' = ~(~HC + ~m + m')
    let mut sum = u32::from(!check) + u32::from(!old) + u32::from(new);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
}

#[cfg(test)]
mod tests {
    use etherparse::PacketBuilder;

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
        assert_eq!(ip.payload_at, 34);
        let mut bad = udp_frame(64, 53);
        bad[14] = 0x44; // IHL 4: shorter than a header
        assert_eq!(ipv4(&bad), None);
        assert_eq!(ipv4(&udp_frame(64, 53)[..20]), None, "truncated");
        assert_eq!(ipv4_src(&udp_frame(64, 53)), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(ipv4_src(&udp_frame(64, 53)[..29]), None, "truncated");
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

    #[test]
    fn arp_senders() {
        let mut arp = vec![0xff; 6];
        arp.extend_from_slice(&[2, 0, 0, 0, 0, 1, 8, 6, 0, 1, 8, 0, 6, 4, 0, 2, 2, 0, 0, 0, 0, 1, 10, 0, 0, 7]);
        arp.extend_from_slice(&[0; 10]);
        assert_eq!(arp_sender(&arp), Some("10.0.0.7".parse().unwrap()));
        assert_eq!(arp_sender(&arp[..30]), None);
        assert_eq!(arp_sender(&udp_frame(1, 1)), None);
    }
}
