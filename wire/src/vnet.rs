//! `struct virtio_net_hdr` (linux/virtio_net.h) and the frames ports read
//! and write behind it: a TAP opened with `IFF_VNET_HDR` and an AF_PACKET
//! socket with `PACKET_VNET_HDR` both speak them.
//!
//! ```text
//!  0        1        2                 4                 6                 8                 10
//! +--------+--------+-----------------+-----------------+-----------------+-----------------+
//! | flags  |gso_type|     hdr_len     |    gso_size     |   csum_start    |   csum_offset   |  (LE)
//! +--------+--------+-----------------+-----------------+-----------------+-----------------+
//! | Ethernet frame ...
//! ```
//!
//! The header asks the device for work the sender left undone: a checksum
//! to fill in (`NEEDS_CSUM` at `csum_start + csum_offset`), or a large
//! segment to cut into `gso_size` pieces (GSO). [`Frame::offload`] says
//! which, as one type the switch and the tunnel share.

use crate::ethernet;
use crate::{Malformed, Result};

/// Length of `struct virtio_net_hdr` (without `num_buffers`).
pub const HEADER_LEN: usize = 10;
/// The largest frame a port reads or writes: a 64 KiB GSO segment plus headers.
pub const MAX_FRAME_LEN: usize = HEADER_LEN + ethernet::HEADER_LEN + ethernet::VLAN_TAG_LEN + 65535;

pub const FLAG_NEEDS_CSUM: u8 = 1;
pub const FLAG_DATA_VALID: u8 = 2;

/// The smallest segment a GSO frame may ask for: Linux's own floor for
/// TCP (`tcp_min_snd_mss`), which no stack goes below. A container sets
/// its virtio header itself (`PACKET_VNET_HDR`): one 64 KiB frame asking
/// for 1-byte segments would become 65,000 datagrams.
pub const MIN_GSO_SIZE: u16 = 48;
/// The most segments one frame may become: 64 KiB at [`MIN_GSO_SIZE`].
pub const MAX_GSO_SEGMENTS: usize = 65535usize.div_ceil(MIN_GSO_SIZE as usize);

/// `gso_type` (linux/virtio_net.h); `Unknown` keeps what we don't know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GsoType {
    None,
    TcpV4,
    /// UFO: never enabled on switchd's devices.
    Udp,
    TcpV6,
    /// UDP segmentation offload (`VIRTIO_NET_HDR_GSO_UDP_L4`), either IP version.
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

    pub fn to_raw(self) -> u8 {
        match self {
            GsoType::None => 0,
            GsoType::TcpV4 => 1,
            GsoType::Udp => 3,
            GsoType::TcpV6 => 4,
            GsoType::UdpL4 => 5,
            GsoType::Unknown(raw) => raw,
        }
    }
}

/// What a frame asks of the device that sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offload {
    /// Nothing: send it as it is.
    None,
    /// Complete the checksum at `start + offset` over `start..` (offsets
    /// from the start of the Ethernet frame).
    Checksum { start: usize, offset: usize },
    /// Cut it into segments of `mss` payload bytes; `gso` is TCP over IPv4,
    /// TCP over IPv6, or UDP.
    Segment { gso: GsoType, mss: usize },
}

mod field {
    use std::ops::Range;
    pub const FLAGS: usize = 0;
    pub const GSO_TYPE: usize = 1;
    pub const HDR_LEN: Range<usize> = 2..4;
    pub const GSO_SIZE: Range<usize> = 4..6;
    pub const CSUM_START: Range<usize> = 6..8;
    pub const CSUM_OFFSET: Range<usize> = 8..10;
}

/// A `virtio_net_hdr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Repr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl Repr {
    /// No offloads, checksums as they are: what precedes a frame from the underlay.
    pub const PLAIN: Repr = Repr { flags: 0, gso_type: 0, hdr_len: 0, gso_size: 0, csum_start: 0, csum_offset: 0 };
    pub const PLAIN_BYTES: [u8; HEADER_LEN] = [0; HEADER_LEN];

    /// Reads the first [`HEADER_LEN`] bytes of `buf`.
    pub fn parse(buf: &[u8]) -> Result<Repr> {
        let h = buf.get(..HEADER_LEN).ok_or(Malformed)?;
        let le = |r: std::ops::Range<usize>| u16::from_le_bytes([h[r.start], h[r.start + 1]]);
        Ok(Repr {
            flags: h[field::FLAGS],
            gso_type: h[field::GSO_TYPE],
            hdr_len: le(field::HDR_LEN),
            gso_size: le(field::GSO_SIZE),
            csum_start: le(field::CSUM_START),
            csum_offset: le(field::CSUM_OFFSET),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into the first [`HEADER_LEN`] bytes of `buf`.
    pub fn emit(&self, buf: &mut [u8]) {
        let h = &mut buf[..HEADER_LEN];
        h[field::FLAGS] = self.flags;
        h[field::GSO_TYPE] = self.gso_type;
        h[field::HDR_LEN].copy_from_slice(&self.hdr_len.to_le_bytes());
        h[field::GSO_SIZE].copy_from_slice(&self.gso_size.to_le_bytes());
        h[field::CSUM_START].copy_from_slice(&self.csum_start.to_le_bytes());
        h[field::CSUM_OFFSET].copy_from_slice(&self.csum_offset.to_le_bytes());
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

view! {
    /// A checked view of `virtio_net_hdr` + Ethernet, as a port reads it. The
    /// header is only read: a 64 KiB TCP segment (GSO) or a packet whose
    /// checksum is left to the receiver crosses from one port to another as it
    /// came. [`Frame::new_checked`] refuses what the kernel would refuse on
    /// write, so a bad header is a counted drop rather than a write error later.
    pub struct Frame, error FrameError;
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Checks length, GSO type and checksum position.
    fn check(&self) -> std::result::Result<(), FrameError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN + ethernet::HEADER_LEN {
            return Err(FrameError::Truncated);
        }
        match self.gso_type() {
            GsoType::Unknown(_) => return Err(FrameError::BadVnetHdr),
            GsoType::None => {}
            _ if self.gso_size() == 0 => return Err(FrameError::BadVnetHdr),
            _ => {}
        }
        if self.flags() & FLAG_NEEDS_CSUM != 0 {
            // The checksum field (2 bytes) must lie inside the Ethernet frame.
            let end = usize::from(self.csum_start()) + usize::from(self.csum_offset()) + 2;
            if end > len - HEADER_LEN {
                return Err(FrameError::BadVnetHdr);
            }
        }
        Ok(())
    }

    fn le16(&self, range: std::ops::Range<usize>) -> u16 {
        let b = &self.buffer.as_ref()[range];
        u16::from_le_bytes([b[0], b[1]])
    }

    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    pub fn gso_type(&self) -> GsoType {
        GsoType::from_raw(self.buffer.as_ref()[field::GSO_TYPE])
    }

    pub fn hdr_len(&self) -> u16 {
        self.le16(field::HDR_LEN)
    }

    pub fn gso_size(&self) -> u16 {
        self.le16(field::GSO_SIZE)
    }

    pub fn csum_start(&self) -> u16 {
        self.le16(field::CSUM_START)
    }

    pub fn csum_offset(&self) -> u16 {
        self.le16(field::CSUM_OFFSET)
    }

    /// The Ethernet frame after the virtio header (checked to hold a header).
    pub fn ethernet(&self) -> ethernet::Frame<&[u8]> {
        ethernet::Frame::new_unchecked(&self.buffer.as_ref()[HEADER_LEN..])
    }

    /// Whether a GSO frame asks for sane segments: none smaller than
    /// [`MIN_GSO_SIZE`], no more than [`MAX_GSO_SEGMENTS`] of them (an
    /// upper bound: headers are counted as payload). True for other frames.
    pub fn gso_is_sane(&self) -> bool {
        let size = self.gso_size();
        self.gso_type() == GsoType::None
            || (size >= MIN_GSO_SIZE
                && self.ethernet().as_bytes().len().div_ceil(usize::from(size)) <= MAX_GSO_SEGMENTS)
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

    /// What the frame asks of the device that sends it. UFO and unknown
    /// types are refused (`new_checked` refused the unknown ones already;
    /// UFO is never enabled on switchd's devices).
    pub fn offload(&self) -> Result<Offload> {
        let mss = usize::from(self.gso_size());
        Ok(match self.gso_type() {
            GsoType::None if self.flags() & FLAG_NEEDS_CSUM != 0 => {
                Offload::Checksum { start: usize::from(self.csum_start()), offset: usize::from(self.csum_offset()) }
            }
            GsoType::None => Offload::None,
            gso @ (GsoType::TcpV4 | GsoType::TcpV6 | GsoType::UdpL4) => Offload::Segment { gso, mss },
            GsoType::Udp | GsoType::Unknown(_) => return Err(Malformed),
        })
    }
}

/// Builds a plain (non-GSO) frame, for tests, benchmarks and fuzz seeds.
pub fn build_plain(dst: ethernet::MacAddr, src: ethernet::MacAddr, ethertype: u16, payload_len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; HEADER_LEN + ethernet::HEADER_LEN + payload_len];
    let repr = ethernet::Repr { src_addr: src, dst_addr: dst, ethertype: ethertype.into() };
    repr.emit(&mut ethernet::Frame::new_unchecked(&mut buf[HEADER_LEN..]));
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ethernet::{EtherType, MacAddr};

    const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

    #[test]
    fn plain_frame_fields() {
        let buf = build_plain(B, A, 0x0800, 100);
        let f = Frame::new_checked(&buf[..]).unwrap();
        assert_eq!(f.ethernet().dst_addr(), B);
        assert_eq!(f.ethernet().src_addr(), A);
        assert_eq!(f.ethernet().ethertype(), EtherType::Ipv4);
        assert_eq!(f.gso_type(), GsoType::None);
        assert_eq!(f.offload(), Ok(Offload::None));
        assert_eq!(f.ethernet().mtu_len(), 100);
        assert!(f.fits_mtu(100));
        assert!(!f.fits_mtu(99));
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
        assert_eq!(f.hdr_len(), 66);
        assert_eq!((f.csum_start(), f.csum_offset()), (34, 16));
        assert_eq!(f.offload(), Ok(Offload::Segment { gso: GsoType::TcpV4, mss: 1448 }));
        assert!(f.fits_mtu(1450), "a GSO frame fits when its segments do");
        assert!(!f.fits_mtu(1400));
        // ECN bit on a TCP type is fine.
        buf[1] = 0x81;
        assert_eq!(Frame::new_checked(&buf[..]).unwrap().gso_type(), GsoType::TcpV4);
        let repr = Repr::parse(&buf).unwrap();
        assert_eq!(
            repr,
            Repr { flags: 1, gso_type: 0x81, hdr_len: 66, gso_size: 1448, csum_start: 34, csum_offset: 16 }
        );
        let mut out = [0u8; HEADER_LEN];
        repr.emit(&mut out);
        assert_eq!(out, buf[..10]);
    }

    #[test]
    fn an_open_checksum_is_an_offload_too() {
        let mut buf = build_plain(B, A, 0x0800, 60);
        buf[0] = FLAG_NEEDS_CSUM;
        buf[6..8].copy_from_slice(&34u16.to_le_bytes());
        buf[8..10].copy_from_slice(&6u16.to_le_bytes());
        assert_eq!(Frame::new_checked(&buf[..]).unwrap().offload(), Ok(Offload::Checksum { start: 34, offset: 6 }));
        buf[1] = 3; // UFO
        buf[4..6].copy_from_slice(&1400u16.to_le_bytes());
        assert_eq!(Frame::new_checked(&buf[..]).unwrap().offload(), Err(Malformed));
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
        buf[0] = FLAG_NEEDS_CSUM;
        buf[6..8].copy_from_slice(&70u16.to_le_bytes()); // csum_start + offset + 2 > 74
        buf[8..10].copy_from_slice(&3u16.to_le_bytes());
        assert_eq!(Frame::new_checked(&buf[..]).unwrap_err(), FrameError::BadVnetHdr);
        buf[8..10].copy_from_slice(&2u16.to_le_bytes()); // exactly at the end
        assert!(Frame::new_checked(&buf[..]).is_ok());
    }
}
