//! What IPv4 and IPv6 share: the protocol (next header) numbers.

enum_with_unknown! {
    /// IPv4's protocol field, IPv6's next header.
    pub enum Protocol(u8) {
        HopByHop = 0,
        Icmp = 1,
        Tcp = 6,
        Udp = 17,
        Ipv6Route = 43,
        Ipv6Frag = 44,
        Esp = 50,
        Ah = 51,
        Icmpv6 = 58,
        Ipv6NoNxt = 59,
        Ipv6Opts = 60,
    }
}

/// The source and destination ports of a TCP or UDP header starting at
/// `l4` (the two share the layout of their first four bytes); `None` for
/// other protocols or when the bytes are not there.
pub fn ports(protocol: Protocol, l4: &[u8]) -> Option<(u16, u16)> {
    match (protocol, l4.get(..4)) {
        (Protocol::Tcp | Protocol::Udp, Some(p)) => {
            Some((u16::from_be_bytes([p[0], p[1]]), u16::from_be_bytes([p[2], p[3]])))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_of_tcp_and_udp_only() {
        let l4 = [0x9c, 0x40, 0x00, 0x35, 0, 0, 0, 0];
        assert_eq!(ports(Protocol::Udp, &l4), Some((40000, 53)));
        assert_eq!(ports(Protocol::Tcp, &l4), Some((40000, 53)));
        assert_eq!(ports(Protocol::Icmp, &l4), None);
        assert_eq!(ports(Protocol::Udp, &l4[..3]), None);
        assert_eq!(u8::from(Protocol::from(99)), 99);
    }
}
