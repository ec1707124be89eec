//! The hash of an inner flow, from which the outer UDP source port is
//! chosen: frames of one connection always take the same underlay path,
//! different connections spread over ECMP paths and receive queues (RFC 7348
//! section 5, "Source Port").

use switchd_wire::ethernet::{self, EtherType};
use switchd_wire::ip::Protocol;
use switchd_wire::{ipv4, ipv6};

/// FNV-1a over the fields that name a flow: the MAC addresses, and for IPv4
/// and IPv6 the addresses, protocol and (TCP/UDP) ports. Never fails: a
/// frame too short for a field simply hashes without it (so the fields are
/// read at their offsets, not through checked views, which would refuse
/// the whole header).
pub fn hash(frame: &[u8]) -> u32 {
    let mut h = Fnv::new();
    let Some(macs) = frame.get(..12) else { return h.0 };
    h.write(macs);
    let (mut ethertype, mut l3) = (be16(frame, 12).map(EtherType::from), ethernet::HEADER_LEN);
    if ethertype.is_some_and(EtherType::is_vlan_tag) {
        ethertype = be16(frame, l3 + 2).map(EtherType::from);
        l3 += ethernet::VLAN_TAG_LEN;
    }
    let (proto, l4) = match ethertype {
        Some(EtherType::Ipv4) => {
            let Some(ip) = frame.get(l3..l3 + ipv4::MIN_HEADER_LEN) else { return h.0 };
            h.write(&ip[12..20]);
            // Fragments after the first carry no ports: hash them by addresses only.
            let fragment_offset = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff;
            if fragment_offset != 0 {
                return h.0;
            }
            (ip[9], l3 + usize::from(ip[0] & 0x0f) * 4)
        }
        Some(EtherType::Ipv6) => {
            let Some(ip) = frame.get(l3..l3 + ipv6::HEADER_LEN) else { return h.0 };
            h.write(&ip[8..40]);
            (ip[6], l3 + ipv6::HEADER_LEN)
        }
        _ => return h.0,
    };
    h.write(&[proto]);
    if matches!(Protocol::from(proto), Protocol::Tcp | Protocol::Udp)
        && let Some(ports) = frame.get(l4..l4 + 4)
    {
        h.write(ports);
    }
    h.0
}

/// A hash of an IP flow that is the same both ways (addresses and TCP/UDP
/// ports taken in sorted order), like the kernel's symmetric flow hash:
/// `None` for a frame that is not IPv4 or IPv6 (or too short to tell).
pub fn symmetric_hash(frame: &[u8]) -> Option<u32> {
    let (l3, ethertype) = match be16(frame, 12).map(EtherType::from)? {
        t if t.is_vlan_tag() => (ethernet::HEADER_LEN + ethernet::VLAN_TAG_LEN, EtherType::from(be16(frame, 16)?)),
        t => (ethernet::HEADER_LEN, t),
    };
    let (src, dst, proto, l4) = match ethertype {
        EtherType::Ipv4 => {
            let ip = frame.get(l3..l3 + ipv4::MIN_HEADER_LEN)?;
            let first = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff == 0;
            (&ip[12..16], &ip[16..20], ip[9], first.then_some(l3 + usize::from(ip[0] & 0x0f) * 4))
        }
        EtherType::Ipv6 => {
            let ip = frame.get(l3..l3 + ipv6::HEADER_LEN)?;
            (&ip[8..24], &ip[24..40], ip[6], Some(l3 + ipv6::HEADER_LEN))
        }
        _ => return None,
    };
    let ports = l4
        .filter(|_| matches!(Protocol::from(proto), Protocol::Tcp | Protocol::Udp))
        .and_then(|l4| frame.get(l4..l4 + 4))
        .map_or([0; 4], |p| [p[0], p[1], p[2], p[3]]);
    let ends = [(src, &ports[..2]), (dst, &ports[2..])];
    let (low, high) = if ends[0] <= ends[1] { (ends[0], ends[1]) } else { (ends[1], ends[0]) };
    let mut h = Fnv::new();
    for part in [low.0, low.1, high.0, high.1, &[proto][..]] {
        h.write(part);
    }
    Some(h.0)
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2).map(|s| u16::from_be_bytes([s[0], s[1]]))
}

struct Fnv(u32);

impl Fnv {
    fn new() -> Self {
        Fnv(0x811c_9dc5)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u32::from(*b)).wrapping_mul(0x0100_0193);
        }
    }
}

#[cfg(test)]
mod tests {
    use etherparse::PacketBuilder;

    use super::*;

    fn tcp(src_port: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(src_port, 80, 1, 1000)
            .write(&mut f, payload)
            .unwrap();
        f
    }

    #[test]
    fn same_flow_same_hash_other_flows_spread() {
        assert_eq!(hash(&tcp(1000, b"a")), hash(&tcp(1000, b"completely different payload")));
        let distinct: std::collections::HashSet<u32> = (0..64).map(|p| hash(&tcp(40000 + p, b"")) % 16).collect();
        assert!(distinct.len() >= 8, "64 flows over 16 buckets landed in only {} buckets", distinct.len());
    }

    #[test]
    fn the_symmetric_hash_is_the_same_both_ways_and_tells_flows_apart() {
        let frame = |src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16| {
            let mut f = Vec::new();
            PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
                .ipv4(src, dst, 64)
                .udp(sport, dport)
                .write(&mut f, b"x")
                .unwrap();
            f
        };
        let there = symmetric_hash(&frame([10, 0, 0, 1], [10, 0, 0, 2], 5000, 53)).unwrap();
        assert_eq!(symmetric_hash(&frame([10, 0, 0, 2], [10, 0, 0, 1], 53, 5000)), Some(there), "the answer");
        assert_ne!(symmetric_hash(&frame([10, 0, 0, 1], [10, 0, 0, 2], 5001, 53)), Some(there), "another port");
        let mut v6 = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv6([1; 16], [2; 16], 64)
            .tcp(1, 2, 0, 100)
            .write(&mut v6, b"")
            .unwrap();
        let mut back = Vec::new();
        PacketBuilder::ethernet2([4; 6], [2; 6])
            .ipv6([2; 16], [1; 16], 64)
            .tcp(2, 1, 0, 100)
            .write(&mut back, b"")
            .unwrap();
        assert_eq!(symmetric_hash(&v6), symmetric_hash(&back));
        let arp = crate::flow::tests::tcp(1, b"")[..12].iter().copied().chain([0x08, 0x06, 0, 1]).collect::<Vec<_>>();
        assert_eq!(symmetric_hash(&arp), None, "not IP");
        for cut in 0..frame([10, 0, 0, 1], [10, 0, 0, 2], 1, 2).len() {
            let _ = symmetric_hash(&frame([10, 0, 0, 1], [10, 0, 0, 2], 1, 2)[..cut]);
        }
    }

    /// FNV-1a of `parts` one after another, written out again here.
    fn fnv(parts: &[&[u8]]) -> u32 {
        parts.iter().flat_map(|p| p.iter()).fold(0x811c_9dc5, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193))
    }

    /// Every cut of a TCP frame hashes, without panicking, to the hash of
    /// the fields it still holds whole: nothing (shorter than the MACs),
    /// the MACs (no whole IPv4 header), MACs, addresses and protocol (ports
    /// cut), and at last the whole flow.
    #[test]
    fn short_and_odd_frames_still_hash() {
        let f = tcp(1, b"");
        assert_eq!(f.len(), 54, "Ethernet, IPv4 and TCP headers, no options");
        let (macs, addrs, proto, ports) = (&f[..12], &f[26..34], &[6u8][..], &f[34..38]);
        let nothing = fnv(&[]);
        assert_eq!(nothing, 0x811c_9dc5, "the FNV-1a offset basis");
        assert_eq!(hash(&[]), nothing);
        assert_eq!(hash(&[1, 2, 3]), nothing);
        for n in 0..=f.len() {
            let expected = match n {
                0..12 => nothing,
                12..34 => fnv(&[macs]),
                34..38 => fnv(&[macs, addrs, proto]),
                _ => fnv(&[macs, addrs, proto, ports]),
            };
            assert_eq!(hash(&f[..n]), expected, "the first {n} bytes");
        }
        // Each step hashes something different, and the whole flow is the
        // hash `hash` gives the frame with its payload.
        let steps = [nothing, fnv(&[macs]), fnv(&[macs, addrs, proto]), fnv(&[macs, addrs, proto, ports])];
        assert_eq!(steps.iter().collect::<std::collections::HashSet<_>>().len(), 4, "{steps:x?}");
        assert_eq!(hash(&tcp(1, b"payload")), steps[3]);
        // An EtherType nothing reads, and a later IPv4 fragment: the MACs,
        // and the MACs and addresses, only.
        let mut odd = f.clone();
        odd[12..14].copy_from_slice(&[0x88, 0xb5]);
        assert_eq!(hash(&odd), fnv(&[macs]));
        let mut fragment = f.clone();
        fragment[20..22].copy_from_slice(&[0x00, 0x10]);
        assert_eq!(hash(&fragment), fnv(&[macs, addrs]), "a fragment after the first carries no ports");
    }
}
