//! Ethernet II frames, with 802.1Q tags, and MAC addresses.
//!
//! ```text
//! +-------------------+-------------------+-----------+--------------------+-----------
//! | destination (6)   | source (6)        | type (2)  | [802.1Q tag (4)]   | payload ...
//! +-------------------+-------------------+-----------+--------------------+-----------
//! ```
//!
//! A tagged frame's type field holds the tag protocol (0x8100, 0x88a8 or
//! the old 0x9100), and its payload starts with the tag's control word and
//! the real EtherType. The MTU counts the payload without one tag.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Malformed, Result, be16, set_be16};

pub const HEADER_LEN: usize = 14;
/// An 802.1Q tag, allowed on top of the MTU.
pub const VLAN_TAG_LEN: usize = 4;

enum_with_unknown! {
    /// The EtherType of a frame.
    pub enum EtherType(u16) {
        Ipv4 = 0x0800,
        Arp = 0x0806,
        Ipv6 = 0x86dd,
        /// 802.1Q.
        Vlan = 0x8100,
        /// 802.1ad (QinQ).
        ServiceVlan = 0x88a8,
        /// The pre-standard QinQ tag.
        OldQinQ = 0x9100,
    }
}

impl EtherType {
    /// Whether the frame carries an 802.1Q-style tag.
    pub fn is_vlan_tag(self) -> bool {
        matches!(self, EtherType::Vlan | EtherType::ServiceVlan | EtherType::OldQinQ)
    }
}

mod field {
    use std::ops::Range;
    pub const DESTINATION: Range<usize> = 0..6;
    pub const SOURCE: Range<usize> = 6..12;
    pub const ETHERTYPE: usize = 12;
    pub const PAYLOAD: usize = 14;
}

view! {
    /// A view of an Ethernet frame. Once [`Frame::new_checked`] succeeds, no
    /// accessor panics.
    pub struct Frame, error Malformed;
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Checks that the buffer holds an Ethernet header.
    fn check(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN { Err(Malformed) } else { Ok(()) }
    }

    pub fn dst_addr(&self) -> MacAddr {
        MacAddr(self.buffer.as_ref()[field::DESTINATION].try_into().expect("6 bytes"))
    }

    pub fn src_addr(&self) -> MacAddr {
        MacAddr(self.buffer.as_ref()[field::SOURCE].try_into().expect("6 bytes"))
    }

    pub fn ethertype(&self) -> EtherType {
        EtherType::from(be16(self.buffer.as_ref(), field::ETHERTYPE))
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }

    /// The L3 payload length as the MTU counts it: without the header and
    /// one 802.1Q tag if present.
    pub fn mtu_len(&self) -> usize {
        let len = self.buffer.as_ref().len() - HEADER_LEN;
        if self.ethertype().is_vlan_tag() { len.saturating_sub(VLAN_TAG_LEN) } else { len }
    }

    pub fn fits_mtu(&self, mtu: u32) -> bool {
        self.mtu_len() <= mtu as usize
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    pub fn set_dst_addr(&mut self, mac: MacAddr) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&mac.0);
    }

    pub fn set_src_addr(&mut self, mac: MacAddr) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&mac.0);
    }

    pub fn set_ethertype(&mut self, ethertype: EtherType) {
        set_be16(self.buffer.as_mut(), field::ETHERTYPE, ethertype.into());
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

/// An Ethernet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub src_addr: MacAddr,
    pub dst_addr: MacAddr,
    pub ethertype: EtherType,
}

impl Repr {
    pub fn parse<T: AsRef<[u8]>>(frame: &Frame<T>) -> Repr {
        Repr { src_addr: frame.src_addr(), dst_addr: frame.dst_addr(), ethertype: frame.ethertype() }
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into the first [`HEADER_LEN`] bytes of `frame`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut Frame<T>) {
        frame.set_dst_addr(self.dst_addr);
        frame.set_src_addr(self.src_addr);
        frame.set_ethertype(self.ethertype);
    }
}

/// An Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// The group bit: broadcast and multicast addresses.
    pub fn is_multicast(self) -> bool {
        self.0[0] & 0x01 != 0
    }

    pub fn is_zero(self) -> bool {
        self == Self::ZERO
    }

    pub fn is_broadcast(self) -> bool {
        self.0 == [0xff; 6]
    }

    /// Usable as a port's own address: unicast and not all zero.
    pub fn is_unicast(self) -> bool {
        !self.is_multicast() && !self.is_zero()
    }

    /// The MAC switchd gives an endpoint with this IPv4 address, as Docker does:
    /// `02:42` (locally administered, unicast) followed by the address bytes.
    /// For IPv6, the last four bytes of the address.
    pub fn derived_from_ip(ip: IpAddr) -> Self {
        let tail = match ip {
            IpAddr::V4(v4) => v4.octets(),
            IpAddr::V6(v6) => {
                let o = v6.octets();
                [o[12], o[13], o[14], o[15]]
            }
        };
        MacAddr([0x02, 0x42, tail[0], tail[1], tail[2], tail[3]])
    }

    /// A locally administered unicast MAC from 48 random-enough bits.
    pub fn local_from_bits(bits: u64) -> Self {
        let b = bits.to_be_bytes();
        MacAddr([(b[2] & 0xfe) | 0x02, b[3], b[4], b[5], b[6], b[7]])
    }

    /// The address as the low 48 bits of a `u64` (a cheap hash key).
    pub fn to_u64(self) -> u64 {
        let b = self.0;
        u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
    }

    /// The inverse of [`MacAddr::to_u64`].
    pub fn from_u64(key: u64) -> Self {
        let b = key.to_be_bytes();
        MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]])
    }
}

impl FromStr for MacAddr {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let not_one = || {
            // A long value is cut: it is quoted back in error messages.
            let shown: String = s.chars().take(64).collect();
            let more = if shown.len() < s.len() { format!("... ({} bytes)", s.len()) } else { String::new() };
            format!("{shown:?}{more} is not a MAC address like 02:42:0a:00:00:02")
        };
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in out.iter_mut() {
            let part = parts.next().filter(|p| p.len() == 2);
            *byte = part.and_then(|p| u8::from_str_radix(p, 16).ok()).ok_or_else(not_one)?;
        }
        if parts.next().is_some() {
            return Err(not_one());
        }
        Ok(MacAddr(out))
    }
}

impl TryFrom<String> for MacAddr {
    type Error = String;
    fn try_from(value: String) -> std::result::Result<Self, String> {
        value.parse()
    }
}

impl From<MacAddr> for String {
    fn from(mac: MacAddr) -> String {
        mac.to_string()
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

    /// An ARP broadcast from A, as a container sends it: 60 bytes padded.
    const ARP_FRAME: [u8; 60] = {
        let mut f = [0u8; 60];
        let head = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x08, 0x06];
        let mut i = 0;
        while i < 14 {
            f[i] = head[i];
            i += 1;
        }
        f
    };

    #[test]
    fn header_fields() {
        let f = Frame::new_checked(&ARP_FRAME[..]).unwrap();
        assert_eq!(f.dst_addr(), MacAddr::BROADCAST);
        assert_eq!(f.src_addr(), A);
        assert_eq!(f.ethertype(), EtherType::Arp);
        assert_eq!(f.payload().len(), 46);
        assert_eq!(f.mtu_len(), 46);
        assert_eq!(Repr::parse(&f), Repr { src_addr: A, dst_addr: MacAddr::BROADCAST, ethertype: EtherType::Arp });
        assert!(Frame::new_checked(&ARP_FRAME[..13]).is_err());
    }

    #[test]
    fn emit_round_trips_and_unknown_types_are_kept() {
        let mut buf = [0u8; 20];
        let repr = Repr { src_addr: B, dst_addr: A, ethertype: EtherType::Unknown(0x88b5) };
        repr.emit(&mut Frame::new_unchecked(&mut buf[..]));
        assert_eq!(&buf[..14], &[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x88, 0xb5]);
        assert_eq!(Repr::parse(&Frame::new_checked(&buf[..]).unwrap()), repr);
        assert_eq!(u16::from(EtherType::from(0x88b5)), 0x88b5);
    }

    #[test]
    fn a_vlan_tag_does_not_count_against_the_mtu() {
        let mut tagged = [0u8; 14 + 4 + 100];
        tagged[12..14].copy_from_slice(&[0x81, 0x00]);
        let f = Frame::new_checked(&tagged[..]).unwrap();
        assert!(f.ethertype().is_vlan_tag());
        assert_eq!(f.mtu_len(), 100);
        assert!(f.fits_mtu(100) && !f.fits_mtu(99));
    }

    #[test]
    fn mac_addresses() {
        assert_eq!("02:42:0a:00:00:02".parse::<MacAddr>().unwrap(), MacAddr([2, 0x42, 10, 0, 0, 2]));
        assert_eq!("02-42-0a-00-00-02".parse::<MacAddr>().unwrap().to_string(), "02:42:0a:00:00:02");
        assert!("02:42:0a:00:00".parse::<MacAddr>().is_err());
        assert!("02:42:0a:00:00:02:03".parse::<MacAddr>().is_err());
        let long = "x".repeat(10_000);
        assert!(long.parse::<MacAddr>().unwrap_err().len() < 200, "a long value is cut");
        assert_eq!(MacAddr::derived_from_ip("10.0.0.2".parse().unwrap()), MacAddr([2, 0x42, 10, 0, 0, 2]));
        assert!(MacAddr::local_from_bits(u64::MAX).is_unicast());
        assert_eq!(MacAddr::from_u64(A.to_u64()), A);
        assert!(MacAddr([1, 0, 0x5e, 0, 0, 1]).is_multicast() && !MacAddr::ZERO.is_unicast());
    }
}
