//! IPv6 headers (RFC 8200) and the chain of extension headers behind them.
//!
//! ```text
//!  0                   1                   2                   3
//! +-------+---------------+---------------------------------------+
//! |Version| Traffic Class |              Flow Label               |
//! +-------+---------------+-------+---------------+---------------+
//! |         Payload Length        |  Next Header  |   Hop Limit   |
//! +-------------------------------+---------------+---------------+
//! |                     Source Address (16)                       |
//! |                  Destination Address (16)                     |
//! +---------------------------------------------------------------+
//! | extension headers ... | upper-layer header (TCP, UDP, ICMPv6) |
//! ```
//!
//! Extension headers are hop-by-hop and destination options and routing
//! (8-byte units after the first 8), fragment (8 bytes), and the
//! authentication header (4-byte units after the first 8). [`Packet::upper_layer`]
//! follows the chain, at most [`MAX_EXTENSION_HEADERS`] deep, so nothing
//! hides behind it.

use std::net::Ipv6Addr;

use crate::checksum;
use crate::ip::Protocol;
use crate::{Malformed, Result, be16, be32, set_be16};

pub const HEADER_LEN: usize = 40;
/// Extension headers read before giving up on a chain (none is
/// legitimately longer).
pub const MAX_EXTENSION_HEADERS: usize = 8;

mod field {
    use std::ops::Range;
    pub const VER_TC_FLOW: usize = 0;
    pub const LENGTH: usize = 4;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: Range<usize> = 8..24;
    pub const DST: Range<usize> = 24..40;
}

view! {
    /// A view of an IPv6 packet. [`Packet::new_checked`] checks the version and
    /// that the payload length fits the buffer (which may be longer: padding).
    pub struct Packet, error Malformed;
}

/// Where the upper layer of a packet is, past its extension headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpperLayer<'a> {
    /// This protocol's header and payload.
    Protocol(Protocol, &'a [u8]),
    /// A fragment after the first: no upper-layer header inside.
    LaterFragment,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// What [`Packet::new_checked`] checks.
    fn check(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN || b[field::VER_TC_FLOW] >> 4 != 6 {
            return Err(Malformed);
        }
        if HEADER_LEN + usize::from(be16(b, field::LENGTH)) > b.len() {
            return Err(Malformed);
        }
        Ok(())
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    pub fn traffic_class(&self) -> u8 {
        ((be16(self.b(), 0) >> 4) & 0xff) as u8
    }

    pub fn flow_label(&self) -> u32 {
        be32(self.b(), 0) & 0x000f_ffff
    }

    pub fn payload_len(&self) -> u16 {
        be16(self.b(), field::LENGTH)
    }

    pub fn next_header(&self) -> Protocol {
        Protocol::from(self.b()[field::NEXT_HEADER])
    }

    pub fn hop_limit(&self) -> u8 {
        self.b()[field::HOP_LIMIT]
    }

    pub fn src_addr(&self) -> Ipv6Addr {
        <[u8; 16]>::try_from(&self.b()[field::SRC]).expect("16 bytes").into()
    }

    pub fn dst_addr(&self) -> Ipv6Addr {
        <[u8; 16]>::try_from(&self.b()[field::DST]).expect("16 bytes").into()
    }

    /// Everything after the fixed header, as the payload length bounds it.
    pub fn payload(&self) -> &[u8] {
        &self.b()[HEADER_LEN..HEADER_LEN + usize::from(self.payload_len())]
    }

    /// Follows the extension headers to the upper layer (see [`upper_layer`]).
    pub fn upper_layer(&self) -> Result<UpperLayer<'_>> {
        upper_layer(self.next_header(), self.payload())
    }

    /// The pseudo-header sum of an upper-layer checksum over `len` bytes.
    pub fn pseudo_header(&self, protocol: Protocol, len: u32) -> u64 {
        checksum::pseudo_v6(self.src_addr(), self.dst_addr(), protocol.into(), len)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_payload_len(&mut self, len: u16) {
        set_be16(self.buffer.as_mut(), field::LENGTH, len);
    }

    pub fn set_hop_limit(&mut self, hop_limit: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = hop_limit;
    }

    pub fn set_src_addr(&mut self, ip: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&ip.octets());
    }

    pub fn set_dst_addr(&mut self, ip: Ipv6Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&ip.octets());
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// Follows the extension headers in `payload` (an IPv6 packet's, whose
/// header says `next_header`) to the upper layer. A chain that is cut
/// short, or longer than [`MAX_EXTENSION_HEADERS`], is `Malformed`.
pub fn upper_layer(next_header: Protocol, payload: &[u8]) -> Result<UpperLayer<'_>> {
    let mut next = next_header;
    let mut at = 0;
    for _ in 0..=MAX_EXTENSION_HEADERS {
        let len = match next {
            Protocol::HopByHop | Protocol::Ipv6Route | Protocol::Ipv6Opts => {
                (usize::from(*payload.get(at + 1).ok_or(Malformed)?) + 1) * 8
            }
            Protocol::Ipv6Frag => {
                let frag = FragmentHeader::new_checked(payload.get(at..).ok_or(Malformed)?)?;
                if frag.offset() != 0 {
                    return Ok(UpperLayer::LaterFragment);
                }
                FragmentHeader::<&[u8]>::LEN
            }
            Protocol::Ah => (usize::from(*payload.get(at + 1).ok_or(Malformed)?) + 2) * 4,
            protocol => return Ok(UpperLayer::Protocol(protocol, &payload[at..])),
        };
        next = Protocol::from(*payload.get(at).ok_or(Malformed)?);
        at += len;
        if at > payload.len() {
            return Err(Malformed);
        }
    }
    Err(Malformed)
}

/// A fragment extension header (8 bytes).
#[derive(Debug, Clone, Copy)]
pub struct FragmentHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> FragmentHeader<T> {
    pub const LEN: usize = 8;

    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < Self::LEN { Err(Malformed) } else { Ok(FragmentHeader { buffer }) }
    }

    pub fn next_header(&self) -> Protocol {
        Protocol::from(self.buffer.as_ref()[0])
    }

    /// The fragment offset, in bytes.
    pub fn offset(&self) -> u16 {
        be16(self.buffer.as_ref(), 2) & !7
    }

    pub fn more_frags(&self) -> bool {
        be16(self.buffer.as_ref(), 2) & 1 != 0
    }

    pub fn ident(&self) -> u32 {
        be32(self.buffer.as_ref(), 4)
    }
}

/// A fixed IPv6 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub src_addr: Ipv6Addr,
    pub dst_addr: Ipv6Addr,
    pub next_header: Protocol,
    pub payload_len: usize,
    pub hop_limit: u8,
}

impl Repr {
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Repr {
        Repr {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            next_header: p.next_header(),
            payload_len: usize::from(p.payload_len()),
            hop_limit: p.hop_limit(),
        }
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header (traffic class and flow label zero) into the first
    /// [`HEADER_LEN`] bytes of `buf`.
    pub fn emit(&self, buf: &mut [u8]) {
        let b = &mut buf[..HEADER_LEN];
        b[..4].copy_from_slice(&[0x60, 0, 0, 0]);
        set_be16(b, field::LENGTH, self.payload_len as u16);
        b[field::NEXT_HEADER] = self.next_header.into();
        b[field::HOP_LIMIT] = self.hop_limit;
        b[field::SRC].copy_from_slice(&self.src_addr.octets());
        b[field::DST].copy_from_slice(&self.dst_addr.octets());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(next: u8, ext: &[u8], upper: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0x12, 0x34, 0x56];
        p.extend_from_slice(&((ext.len() + upper.len()) as u16).to_be_bytes());
        p.extend_from_slice(&[next, 255]);
        p.extend_from_slice(&"fe80::1".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&"ff02::1".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(ext);
        p.extend_from_slice(upper);
        p
    }

    const ECHO: [u8; 8] = [128, 0, 0, 0, 0, 1, 0, 1];

    #[test]
    fn fixed_header_fields_and_emit() {
        let bytes = packet(58, &[], &ECHO);
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.traffic_class(), 0x01);
        assert_eq!(p.flow_label(), 0x23456);
        assert_eq!(p.payload_len(), 8);
        assert_eq!(p.next_header(), Protocol::Icmpv6);
        assert_eq!(p.hop_limit(), 255);
        assert_eq!(p.src_addr(), "fe80::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.upper_layer(), Ok(UpperLayer::Protocol(Protocol::Icmpv6, &ECHO[..])));
        let mut out = [0u8; 40];
        Repr::parse(&p).emit(&mut out);
        assert_eq!(out[4..], bytes[4..40]);
        assert!(Packet::new_checked(&bytes[..47]).is_err(), "payload beyond the buffer");
        let mut v4 = bytes.clone();
        v4[0] = 0x45;
        assert!(Packet::new_checked(&v4[..]).is_err());
    }

    #[test]
    fn extension_headers_are_followed() {
        // Hop-by-hop (router alert, as MLD sends it), then destination options.
        let hbh = [60, 0, 5, 2, 0, 0, 1, 0];
        let dst = [58, 0, 1, 4, 0, 0, 0, 0];
        let bytes = packet(0, &[hbh, dst].concat(), &ECHO);
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.upper_layer(), Ok(UpperLayer::Protocol(Protocol::Icmpv6, &ECHO[..])));
        // An authentication header: 4-byte units after the first 8 (len 1: 12 bytes).
        let ah = [58, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2];
        let bytes = packet(51, &ah, &ECHO);
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.upper_layer(), Ok(UpperLayer::Protocol(Protocol::Icmpv6, &ECHO[..])));
    }

    #[test]
    fn fragments() {
        let first = [58, 0, 0x00, 0x01, 0, 0, 0, 9]; // offset 0, more
        let bytes = packet(44, &first, &ECHO);
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.upper_layer(), Ok(UpperLayer::Protocol(Protocol::Icmpv6, &ECHO[..])));
        let header = FragmentHeader::new_checked(&first[..]).unwrap();
        assert!(header.more_frags());
        assert_eq!((header.offset(), header.ident(), header.next_header()), (0, 9, Protocol::Icmpv6));
        let later = [58, 0, 0x05, 0x00, 0, 0, 0, 9]; // offset 1280
        let bytes = packet(44, &later, &[0; 8]);
        assert_eq!(Packet::new_checked(&bytes[..]).unwrap().upper_layer(), Ok(UpperLayer::LaterFragment));
    }

    #[test]
    fn broken_or_endless_chains_are_refused() {
        // A header that claims more than there is.
        let bytes = packet(60, &[58, 2, 0, 0, 0, 0, 0, 0], &ECHO);
        assert_eq!(Packet::new_checked(&bytes[..]).unwrap().upper_layer(), Err(Malformed));
        // Nine destination options headers.
        let one = [60, 0, 1, 4, 0, 0, 0, 0];
        let bytes = packet(60, &one.repeat(9), &ECHO);
        assert_eq!(Packet::new_checked(&bytes[..]).unwrap().upper_layer(), Err(Malformed));
        // Eight are fine.
        let mut eight = one.repeat(8);
        eight[56] = 58;
        let bytes = packet(60, &eight, &ECHO);
        assert_eq!(
            Packet::new_checked(&bytes[..]).unwrap().upper_layer(),
            Ok(UpperLayer::Protocol(Protocol::Icmpv6, &ECHO[..]))
        );
        // Cut inside a header's first bytes.
        let bytes = packet(0, &[], &[]);
        assert_eq!(Packet::new_checked(&bytes[..]).unwrap().upper_layer(), Err(Malformed));
    }
}
