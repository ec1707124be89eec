//! IPv4 headers (RFC 791).
//!
//! ```text
//!  0                   1                   2                   3
//! +-------+-------+---------------+-------------------------------+
//! |Version|  IHL  |   DSCP/ECN    |          Total Length         |
//! +-------+-------+---------------+-----+-------------------------+
//! |         Identification        |Flags|      Fragment Offset    |
//! +---------------+---------------+-----+-------------------------+
//! |  Time to Live |    Protocol   |         Header Checksum       |
//! +---------------+---------------+-------------------------------+
//! |                       Source Address                          |
//! |                    Destination Address                        |
//! |                    Options (IHL > 5) ...                      |
//! ```

use std::net::Ipv4Addr;

use crate::checksum;
use crate::ip::Protocol;
use crate::{Malformed, Result, be16, set_be16};

pub const MIN_HEADER_LEN: usize = 20;

mod field {
    use std::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLAGS_FRAG: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
}

view! {
    /// A view of an IPv4 packet. [`Packet::new_checked`] checks the version,
    /// that the header (options included) and the total length fit the
    /// buffer, and that the total length covers the header; the buffer may
    /// be longer (Ethernet padding).
    pub struct Packet, error Malformed;
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// What [`Packet::new_checked`] checks.
    fn check(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < MIN_HEADER_LEN || b[field::VER_IHL] >> 4 != 4 {
            return Err(Malformed);
        }
        let header_len = usize::from(b[field::VER_IHL] & 0x0f) * 4;
        let total = usize::from(be16(b, field::LENGTH));
        if header_len < MIN_HEADER_LEN || header_len > b.len() || total < header_len || total > b.len() {
            return Err(Malformed);
        }
        Ok(())
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    pub fn header_len(&self) -> usize {
        usize::from(self.b()[field::VER_IHL] & 0x0f) * 4
    }

    pub fn dscp_ecn(&self) -> u8 {
        self.b()[field::DSCP_ECN]
    }

    pub fn total_len(&self) -> u16 {
        be16(self.b(), field::LENGTH)
    }

    pub fn ident(&self) -> u16 {
        be16(self.b(), field::IDENT)
    }

    pub fn dont_frag(&self) -> bool {
        be16(self.b(), field::FLAGS_FRAG) & 0x4000 != 0
    }

    pub fn more_frags(&self) -> bool {
        be16(self.b(), field::FLAGS_FRAG) & 0x2000 != 0
    }

    /// The fragment offset, in bytes.
    pub fn frag_offset(&self) -> u16 {
        (be16(self.b(), field::FLAGS_FRAG) & 0x1fff) * 8
    }

    /// A fragment after the first: no upper-layer header inside.
    pub fn is_later_fragment(&self) -> bool {
        self.frag_offset() != 0
    }

    /// Whether the packet is a fragment at all (more to come, or not the first).
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.is_later_fragment()
    }

    pub fn ttl(&self) -> u8 {
        self.b()[field::TTL]
    }

    pub fn protocol(&self) -> Protocol {
        Protocol::from(self.b()[field::PROTOCOL])
    }

    pub fn checksum(&self) -> u16 {
        be16(self.b(), field::CHECKSUM)
    }

    pub fn src_addr(&self) -> Ipv4Addr {
        <[u8; 4]>::try_from(&self.b()[field::SRC]).expect("4 bytes").into()
    }

    pub fn dst_addr(&self) -> Ipv4Addr {
        <[u8; 4]>::try_from(&self.b()[field::DST]).expect("4 bytes").into()
    }

    /// The header, options included.
    pub fn header(&self) -> &[u8] {
        &self.b()[..self.header_len()]
    }

    /// The payload as the total length bounds it.
    pub fn payload(&self) -> &[u8] {
        &self.b()[self.header_len()..usize::from(self.total_len())]
    }

    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::add(0, self.header())) == 0xffff
    }

    /// The pseudo-header sum of the transport checksum over `len` bytes.
    pub fn pseudo_header(&self, len: u32) -> u64 {
        checksum::pseudo_v4(self.src_addr(), self.dst_addr(), self.protocol().into(), len)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn b_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }

    pub fn set_total_len(&mut self, len: u16) {
        set_be16(self.b_mut(), field::LENGTH, len);
    }

    pub fn set_ident(&mut self, ident: u16) {
        set_be16(self.b_mut(), field::IDENT, ident);
    }

    pub fn set_ttl(&mut self, ttl: u8) {
        self.b_mut()[field::TTL] = ttl;
    }

    pub fn set_src_addr(&mut self, ip: Ipv4Addr) {
        self.b_mut()[field::SRC].copy_from_slice(&ip.octets());
    }

    pub fn set_dst_addr(&mut self, ip: Ipv4Addr) {
        self.b_mut()[field::DST].copy_from_slice(&ip.octets());
    }

    pub fn set_checksum(&mut self, sum: u16) {
        set_be16(self.b_mut(), field::CHECKSUM, sum);
    }

    /// Computes and writes the header checksum.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum::finish(checksum::add(0, self.header()));
        self.set_checksum(sum);
    }

    /// Takes one off the TTL (which must be above 0) and updates the header
    /// checksum incrementally (RFC 1624: HC' = ~(~HC + ~m + m')). The
    /// transport checksum does not cover the TTL.
    pub fn decrement_ttl(&mut self) {
        let b = self.b_mut();
        let old = be16(b, field::TTL);
        b[field::TTL] -= 1;
        let new = be16(b, field::TTL);
        let check = be16(b, field::CHECKSUM);
        let sum = u64::from(!check) + u64::from(!old) + u64::from(new);
        set_be16(b, field::CHECKSUM, !checksum::fold(sum));
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (start, end) = (self.header_len(), usize::from(self.total_len()));
        &mut self.b_mut()[start..end]
    }
}

/// An IPv4 header without options, as switchd writes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub src_addr: Ipv4Addr,
    pub dst_addr: Ipv4Addr,
    pub protocol: Protocol,
    pub payload_len: usize,
    pub ttl: u8,
}

impl Repr {
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Repr {
        Repr {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            protocol: p.protocol(),
            payload_len: p.payload().len(),
            ttl: p.ttl(),
        }
    }

    pub const fn buffer_len(&self) -> usize {
        MIN_HEADER_LEN
    }

    /// Writes the header (checksum filled, don't-fragment set, id 0) into
    /// the first [`MIN_HEADER_LEN`] bytes of `buf`.
    pub fn emit(&self, buf: &mut [u8]) {
        let b = &mut buf[..MIN_HEADER_LEN];
        b.fill(0);
        b[field::VER_IHL] = 0x45;
        set_be16(b, field::LENGTH, (MIN_HEADER_LEN + self.payload_len) as u16);
        set_be16(b, field::FLAGS_FRAG, 0x4000);
        b[field::TTL] = self.ttl;
        b[field::PROTOCOL] = self.protocol.into();
        b[field::SRC].copy_from_slice(&self.src_addr.octets());
        b[field::DST].copy_from_slice(&self.dst_addr.octets());
        let sum = checksum::finish(checksum::add(0, b));
        set_be16(b, field::CHECKSUM, sum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real header: 45 00 00 73 00 00 40 00 40 11 b8 61 c0 a8 00 01 c0 a8 00 c7
    /// (UDP, 192.168.0.1 -> 192.168.0.199, total 115), and 95 bytes of payload.
    fn packet() -> Vec<u8> {
        let mut p = vec![
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8,
            0x00, 0xc7,
        ];
        p.resize(115, 0xab);
        p
    }

    #[test]
    fn fields() {
        let bytes = packet();
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 115);
        assert!(p.dont_frag() && !p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), Protocol::Udp);
        assert_eq!(p.src_addr(), Ipv4Addr::new(192, 168, 0, 1));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(192, 168, 0, 199));
        assert_eq!(p.payload().len(), 95);
        assert!(p.verify_checksum());
        let r = Repr::parse(&p);
        let mut out = [0u8; 20];
        r.emit(&mut out);
        assert_eq!(out, bytes[..20], "the same header again");
    }

    #[test]
    fn padding_is_not_payload_and_bad_headers_are_refused() {
        let mut bytes = packet();
        bytes.extend_from_slice(&[0; 10]);
        assert_eq!(Packet::new_checked(&bytes[..]).unwrap().payload().len(), 95, "padding after total length");
        let short = &packet()[..100];
        assert!(Packet::new_checked(short).is_err(), "total length beyond the buffer");
        let mut bad = packet();
        bad[0] = 0x44; // IHL 4
        assert!(Packet::new_checked(&bad[..]).is_err());
        bad[0] = 0x65; // version 6
        assert!(Packet::new_checked(&bad[..]).is_err());
        let mut bad = packet();
        bad[2..4].copy_from_slice(&10u16.to_be_bytes()); // total below the header
        assert!(Packet::new_checked(&bad[..]).is_err());
        assert!(Packet::new_checked(&packet()[..19]).is_err());
    }

    #[test]
    fn decrementing_the_ttl_keeps_the_checksum_right() {
        let mut bytes = packet();
        let mut p = Packet::new_checked(&mut bytes[..]).unwrap();
        p.decrement_ttl();
        assert_eq!(p.ttl(), 63);
        assert!(p.verify_checksum());
        let mut again = p.header().to_vec();
        Packet::new_unchecked(&mut again[..]).fill_checksum();
        assert_eq!(again, p.header(), "incremental equals full recomputation");
    }

    #[test]
    fn fragments() {
        let mut bytes = packet();
        bytes[6..8].copy_from_slice(&0x2000u16.to_be_bytes()); // MF, offset 0
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert!(p.is_fragment() && !p.is_later_fragment());
        bytes[6..8].copy_from_slice(&0x0003u16.to_be_bytes()); // offset 24
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.frag_offset(), 24);
        assert!(p.is_later_fragment());
    }
}
