//! The frames ports hand the switch: a `virtio_net_hdr` followed by an
//! Ethernet frame, exactly as a TAP opened with `IFF_VNET_HDR` and an
//! AF_PACKET socket with `PACKET_VNET_HDR` read and write them.
//!
//! ```text
//!  0        1        2                 4                 6                 8                 10
//! +--------+--------+-----------------+-----------------+-----------------+-----------------+
//! | flags  |gso_type|     hdr_len     |    gso_size     |   csum_start    |   csum_offset   |  (LE)
//! +--------+--------+-----------------+-----------------+-----------------+-----------------+
//! | Ethernet: destination (6) | source (6) | EtherType (2) | [802.1Q tag (4)] | payload ...
//! ```
//!
//! The header is only read, never rewritten: a 64 KiB TCP segment (GSO) or a
//! packet whose checksum is left to the receiver (`NEEDS_CSUM`) crosses from
//! one port to another as it came. This module checks what the kernel would
//! refuse on write, so a bad header is a counted drop here rather than a
//! write error later.

use etherparse::{EtherType, Ethernet2HeaderSlice};
use switchd_config::MacAddr;

/// Length of `struct virtio_net_hdr` (without `num_buffers`).
pub const VNET_HDR_LEN: usize = 10;
/// Ethernet II header.
pub const ETH_HDR_LEN: usize = 14;
/// An 802.1Q tag, allowed on top of the MTU.
pub const VLAN_TAG_LEN: usize = 4;
/// The largest frame a port reads or writes: a 64 KiB GSO segment plus headers.
pub const MAX_FRAME_LEN: usize = VNET_HDR_LEN + ETH_HDR_LEN + VLAN_TAG_LEN + 65535;

/// The smallest segment a GSO frame may ask for: Linux's own floor for
/// TCP (`tcp_min_snd_mss`), which no stack goes below. A container sets
/// its virtio header itself (`PACKET_VNET_HDR`): one 64 KiB frame asking
/// for 1-byte segments would become 65,000 datagrams.
pub const MIN_GSO_SIZE: u16 = 48;
/// The most segments one frame may become: 64 KiB at [`MIN_GSO_SIZE`].
pub const MAX_GSO_SEGMENTS: usize = 65535usize.div_ceil(MIN_GSO_SIZE as usize);

pub const VNET_F_NEEDS_CSUM: u8 = 1;
pub const VNET_F_DATA_VALID: u8 = 2;

/// `gso_type` values (linux/virtio_net.h); `Unknown` keeps what we don't know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GsoType {
    None,
    TcpV4,
    Udp,
    TcpV6,
    UdpL4,
    Unknown(u8),
}

impl GsoType {
    /// The ECN bit that may be or'ed onto the TCP types.
    pub const ECN: u8 = 0x80;

    pub fn from_raw(raw: u8) -> Self {
        match raw & !Self::ECN {
            0 if raw & Self::ECN == 0 => GsoType::None,
            1 => GsoType::TcpV4,
            3 => GsoType::Udp,
            4 => GsoType::TcpV6,
            5 => GsoType::UdpL4,
            _ => GsoType::Unknown(raw),
        }
    }
}

/// What is wrong with a frame that cannot be switched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Shorter than a virtio header plus an Ethernet header.
    Truncated,
    /// A GSO type we don't know, GSO without a segment size, or a checksum
    /// position outside the frame.
    BadVnetHdr,
}

/// A checked view of `virtio_net_hdr` + Ethernet. Once [`Frame::new_checked`]
/// succeeds, no accessor panics.
#[derive(Debug, Clone, Copy)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

mod field {
    use std::ops::Range;
    pub const FLAGS: usize = 0;
    pub const GSO_TYPE: usize = 1;
    pub const GSO_SIZE: Range<usize> = 4..6;
    pub const CSUM_START: Range<usize> = 6..8;
    pub const CSUM_OFFSET: Range<usize> = 8..10;
}

impl<T: AsRef<[u8]>> Frame<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        Frame { buffer }
    }

    /// Checks length, GSO type and checksum position.
    pub fn new_checked(buffer: T) -> Result<Self, FrameError> {
        let frame = Frame { buffer };
        let len = frame.buffer.as_ref().len();
        if len < VNET_HDR_LEN + ETH_HDR_LEN {
            return Err(FrameError::Truncated);
        }
        match frame.gso_type() {
            GsoType::Unknown(_) => return Err(FrameError::BadVnetHdr),
            GsoType::None => {}
            _ if frame.gso_size() == 0 => return Err(FrameError::BadVnetHdr),
            _ => {}
        }
        if frame.flags() & VNET_F_NEEDS_CSUM != 0 {
            // The checksum field (2 bytes) must lie inside the Ethernet frame.
            let end = usize::from(frame.csum_start()) + usize::from(frame.csum_offset()) + 2;
            if end > len - VNET_HDR_LEN {
                return Err(FrameError::BadVnetHdr);
            }
        }
        Ok(frame)
    }

    fn u16_at(&self, range: std::ops::Range<usize>) -> u16 {
        let b = &self.buffer.as_ref()[range];
        u16::from_le_bytes([b[0], b[1]])
    }

    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    pub fn gso_type(&self) -> GsoType {
        GsoType::from_raw(self.buffer.as_ref()[field::GSO_TYPE])
    }

    pub fn gso_size(&self) -> u16 {
        self.u16_at(field::GSO_SIZE)
    }

    pub fn csum_start(&self) -> u16 {
        self.u16_at(field::CSUM_START)
    }

    pub fn csum_offset(&self) -> u16 {
        self.u16_at(field::CSUM_OFFSET)
    }

    /// The Ethernet frame after the virtio header.
    pub fn ethernet(&self) -> Ethernet<'_> {
        Ethernet { bytes: &self.buffer.as_ref()[VNET_HDR_LEN..] }
    }

    /// Whether a GSO frame asks for sane segments: none smaller than
    /// [`MIN_GSO_SIZE`], no more than [`MAX_GSO_SEGMENTS`] of them (an
    /// upper bound: headers are counted as payload). True for other frames.
    pub fn gso_is_sane(&self) -> bool {
        let size = self.gso_size();
        self.gso_type() == GsoType::None
            || (size >= MIN_GSO_SIZE && self.ethernet().bytes().len().div_ceil(usize::from(size)) <= MAX_GSO_SEGMENTS)
    }

    /// Whether the frame fits an interface of this MTU. A GSO frame is one
    /// that the receiver will cut into `gso_size` pieces, so it fits when its
    /// segments do.
    pub fn fits_mtu(&self, mtu: u32) -> bool {
        match self.gso_type() {
            GsoType::None => self.ethernet().fits_mtu(mtu),
            _ => u32::from(self.gso_size()) <= mtu,
        }
    }
}

/// A checked Ethernet frame (with no virtio header, as VXLAN carries it).
#[derive(Debug, Clone, Copy)]
pub struct Ethernet<'a> {
    bytes: &'a [u8],
}

impl<'a> Ethernet<'a> {
    pub fn new_checked(bytes: &'a [u8]) -> Result<Self, FrameError> {
        if bytes.len() < ETH_HDR_LEN {
            return Err(FrameError::Truncated);
        }
        Ok(Ethernet { bytes })
    }

    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    fn header(&self) -> Ethernet2HeaderSlice<'a> {
        Ethernet2HeaderSlice::from_slice(self.bytes).expect("checked to hold an Ethernet header")
    }

    pub fn dst_addr(&self) -> MacAddr {
        MacAddr(self.header().destination())
    }

    pub fn src_addr(&self) -> MacAddr {
        MacAddr(self.header().source())
    }

    pub fn ethertype(&self) -> EtherType {
        self.header().ether_type()
    }

    /// The L3 payload length as the MTU counts it: the frame minus its
    /// header and one 802.1Q tag if present.
    pub fn mtu_len(&self) -> usize {
        let mut len = self.bytes.len() - ETH_HDR_LEN;
        if self.ethertype() == EtherType::VLAN_TAGGED_FRAME {
            len = len.saturating_sub(VLAN_TAG_LEN);
        }
        len
    }

    pub fn fits_mtu(&self, mtu: u32) -> bool {
        self.mtu_len() <= mtu as usize
    }
}

/// Builds a plain (non-GSO) frame, for tests, benchmarks and fuzz seeds.
pub fn build_plain(dst: MacAddr, src: MacAddr, ethertype: u16, payload_len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; VNET_HDR_LEN + ETH_HDR_LEN + payload_len];
    let eth = &mut buf[VNET_HDR_LEN..];
    eth[0..6].copy_from_slice(&dst.0);
    eth[6..12].copy_from_slice(&src.0);
    eth[12..14].copy_from_slice(&ethertype.to_be_bytes());
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

    #[test]
    fn plain_frame_fields() {
        let buf = build_plain(B, A, 0x0800, 100);
        let f = Frame::new_checked(&buf[..]).unwrap();
        assert_eq!(f.ethernet().dst_addr(), B);
        assert_eq!(f.ethernet().src_addr(), A);
        assert_eq!(f.ethernet().ethertype(), EtherType::IPV4);
        assert_eq!(f.gso_type(), GsoType::None);
        assert_eq!(f.ethernet().mtu_len(), 100);
        assert!(f.fits_mtu(100));
        assert!(!f.fits_mtu(99));
    }

    #[test]
    fn vlan_tag_does_not_count_against_mtu() {
        let buf = build_plain(B, A, 0x8100, 104);
        let f = Frame::new_checked(&buf[..]).unwrap();
        assert_eq!(f.ethernet().mtu_len(), 100);
        assert!(Ethernet::new_checked(&buf[VNET_HDR_LEN..VNET_HDR_LEN + 13]).is_err());
    }

    #[test]
    fn truncated() {
        assert_eq!(Frame::new_checked(&[0u8; 23][..]).unwrap_err(), FrameError::Truncated);
        assert!(Frame::new_checked(&[0u8; 24][..]).is_ok());
    }

    /// A TSO frame as a TAP hands it over: gso_type TCPV4, gso_size 1448,
    /// NEEDS_CSUM at the TCP checksum (start 34, offset 16).
    #[test]
    fn gso_frame_bytes() {
        let mut buf = build_plain(B, A, 0x0800, 65000);
        buf[..10].copy_from_slice(&[0x01, 0x01, 0x42, 0x00, 0xa8, 0x05, 0x22, 0x00, 0x10, 0x00]);
        let f = Frame::new_checked(&buf[..]).unwrap();
        assert_eq!(f.gso_type(), GsoType::TcpV4);
        assert_eq!(f.gso_size(), 1448);
        assert_eq!((f.csum_start(), f.csum_offset()), (34, 16));
        assert!(f.fits_mtu(1450), "a GSO frame fits when its segments do");
        assert!(!f.fits_mtu(1400));
        // ECN bit on a TCP type is fine.
        buf[1] = 0x81;
        assert_eq!(Frame::new_checked(&buf[..]).unwrap().gso_type(), GsoType::TcpV4);
    }

    #[test]
    fn gso_asking_for_tiny_segments_is_not_sane() {
        let mut buf = build_plain(B, A, 0x0800, 65000);
        buf[..10].copy_from_slice(&[0x01, 0x01, 0x42, 0x00, 0xa8, 0x05, 0x22, 0x00, 0x10, 0x00]);
        assert!(Frame::new_checked(&buf[..]).unwrap().gso_is_sane(), "gso_size 1448");
        for (size, sane) in [(1u16, false), (47, false), (48, true), (536, true)] {
            buf[4..6].copy_from_slice(&size.to_le_bytes());
            assert_eq!(Frame::new_checked(&buf[..]).unwrap().gso_is_sane(), sane, "gso_size {size}");
        }
        // A plain frame has no segments to ask for.
        assert!(Frame::new_checked(&build_plain(B, A, 0x0800, 60)[..]).unwrap().gso_is_sane());
    }

    #[test]
    fn bad_vnet_headers() {
        let mut buf = build_plain(B, A, 0x0800, 60);
        buf[1] = 2; // not a GSO type
        assert_eq!(Frame::new_checked(&buf[..]).unwrap_err(), FrameError::BadVnetHdr);
        buf[1] = 0x80; // ECN alone
        assert_eq!(Frame::new_checked(&buf[..]).unwrap_err(), FrameError::BadVnetHdr);
        buf[1] = 1; // TCPV4 with gso_size 0
        assert_eq!(Frame::new_checked(&buf[..]).unwrap_err(), FrameError::BadVnetHdr);
        buf[1] = 0;
        buf[0] = VNET_F_NEEDS_CSUM;
        buf[6..8].copy_from_slice(&70u16.to_le_bytes()); // csum_start + offset + 2 > 74
        buf[8..10].copy_from_slice(&3u16.to_le_bytes());
        assert_eq!(Frame::new_checked(&buf[..]).unwrap_err(), FrameError::BadVnetHdr);
        buf[8..10].copy_from_slice(&2u16.to_le_bytes()); // exactly at the end
        assert!(Frame::new_checked(&buf[..]).is_ok());
    }
}
