//! ARP for IPv4 over Ethernet (RFC 826), the only kind switchd reads.
//!
//! ```text
//! +---------------+---------------+-------+-------+---------------+
//! | htype (1)     | ptype (0x0800)| hlen 6| plen 4| operation     |
//! +---------------+---------------+-------+-------+---------------+
//! | sender MAC (6) | sender IPv4 (4) | target MAC (6) | target IPv4 (4) |
//! +-----------------------------------------------------------------+
//! ```

use std::net::Ipv4Addr;

use crate::ethernet::MacAddr;
use crate::{Malformed, Result, be16, set_be16};

/// An Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;

enum_with_unknown! {
    pub enum Operation(u16) {
        Request = 1,
        Reply = 2,
    }
}

mod field {
    use std::ops::Range;
    pub const HTYPE: usize = 0;
    pub const PTYPE: usize = 2;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: usize = 6;
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: Range<usize> = 14..18;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: Range<usize> = 24..28;
}

view! {
    /// A view of an ARP packet for IPv4 over Ethernet. [`Packet::new_checked`]
    /// refuses every other kind (Linux accepts other hardware types, so a
    /// guard that cannot read them must refuse them) and short ones.
    pub struct Packet, error Malformed;
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// What [`Packet::new_checked`] checks.
    fn check(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        let ethernet_ipv4 = b.len() >= PACKET_LEN
            && be16(b, field::HTYPE) == 1
            && be16(b, field::PTYPE) == 0x0800
            && b[field::HLEN] == 6
            && b[field::PLEN] == 4;
        if ethernet_ipv4 { Ok(()) } else { Err(Malformed) }
    }

    pub fn operation(&self) -> Operation {
        Operation::from(be16(self.buffer.as_ref(), field::OPER))
    }

    pub fn sender_mac(&self) -> MacAddr {
        MacAddr(self.buffer.as_ref()[field::SHA].try_into().expect("6 bytes"))
    }

    pub fn sender_ip(&self) -> Ipv4Addr {
        <[u8; 4]>::try_from(&self.buffer.as_ref()[field::SPA]).expect("4 bytes").into()
    }

    pub fn target_mac(&self) -> MacAddr {
        MacAddr(self.buffer.as_ref()[field::THA].try_into().expect("6 bytes"))
    }

    pub fn target_ip(&self) -> Ipv4Addr {
        <[u8; 4]>::try_from(&self.buffer.as_ref()[field::TPA]).expect("4 bytes").into()
    }
}

/// An Ethernet/IPv4 ARP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub operation: Operation,
    pub sender_mac: MacAddr,
    pub sender_ip: Ipv4Addr,
    pub target_mac: MacAddr,
    pub target_ip: Ipv4Addr,
}

impl Repr {
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Repr {
        Repr {
            operation: p.operation(),
            sender_mac: p.sender_mac(),
            sender_ip: p.sender_ip(),
            target_mac: p.target_mac(),
            target_ip: p.target_ip(),
        }
    }

    pub const fn buffer_len(&self) -> usize {
        PACKET_LEN
    }

    /// Writes the message into the first [`PACKET_LEN`] bytes of `buf`.
    pub fn emit(&self, buf: &mut [u8]) {
        let b = &mut buf[..PACKET_LEN];
        set_be16(b, field::HTYPE, 1);
        set_be16(b, field::PTYPE, 0x0800);
        b[field::HLEN] = 6;
        b[field::PLEN] = 4;
        set_be16(b, field::OPER, self.operation.into());
        b[field::SHA].copy_from_slice(&self.sender_mac.0);
        b[field::SPA].copy_from_slice(&self.sender_ip.octets());
        b[field::THA].copy_from_slice(&self.target_mac.0);
        b[field::TPA].copy_from_slice(&self.target_ip.octets());
    }

    /// A request asks for `target_ip`; one whose sender and target are the
    /// same address announces it (gratuitous ARP) and asks nothing.
    pub fn is_question(&self) -> bool {
        self.operation == Operation::Request && self.sender_ip != self.target_ip
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `arping` from 10.0.0.1 (02:00:00:00:00:01) for 10.0.0.2.
    const REQUEST: [u8; 28] = [0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 10, 0, 0, 2];

    #[test]
    fn a_request() {
        let p = Packet::new_checked(&REQUEST[..]).unwrap();
        let r = Repr::parse(&p);
        assert_eq!(r.operation, Operation::Request);
        assert_eq!(r.sender_mac, MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!((r.sender_ip, r.target_ip), ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()));
        assert!(r.is_question());
        let mut out = [0u8; 28];
        r.emit(&mut out);
        assert_eq!(out, REQUEST);
        let announce = Repr { target_ip: r.sender_ip, ..r };
        assert!(!announce.is_question(), "a gratuitous ARP asks nothing");
    }

    #[test]
    fn other_kinds_and_short_ones_are_refused() {
        assert!(Packet::new_checked(&REQUEST[..27]).is_err());
        let mut other = REQUEST;
        other[1] = 6; // IEEE 802 hardware
        assert!(Packet::new_checked(&other[..]).is_err());
        let mut other = REQUEST;
        other[4] = 8; // 8-byte hardware addresses
        assert!(Packet::new_checked(&other[..]).is_err());
        let mut reply = REQUEST;
        reply[7] = 2;
        assert_eq!(Packet::new_checked(&reply[..]).unwrap().operation(), Operation::Reply);
        reply[7] = 9;
        assert_eq!(Packet::new_checked(&reply[..]).unwrap().operation(), Operation::Unknown(9));
    }
}
