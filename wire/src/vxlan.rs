//! The VXLAN header (RFC 7348, section 5):
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |R|R|R|R|I|R|R|R|            Reserved                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                VXLAN Network Identifier (VNI) |   Reserved    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! followed by the inner Ethernet frame, carried in UDP to port 4789.
//! Reserved fields are zero on emit and ignored on receipt, except the
//! flag bits: like the Linux kernel, a header with any flag other than I
//! (a GBP or GPE extension this switch does not speak) is refused, since
//! its other fields would mean something else. The one exception is
//! switchd's own S flag (0x40, with I): a sealed packet ([`crate::sealed`]),
//! whose first eight bytes keep this layout so the VNI is found the same
//! way, and which a kernel peer drops for its unknown flag rather than
//! misread.

/// The VXLAN header length.
pub const HEADER_LEN: usize = 8;
/// IANA's VXLAN port.
pub const DEFAULT_PORT: u16 = 4789;
/// The I flag: the VNI is valid.
pub const FLAG_VNI: u8 = 0x08;
/// switchd's S flag: the rest is sealed (see [`crate::sealed`]).
pub const FLAG_SEALED: u8 = 0x40;
/// Outer IPv4 + UDP + VXLAN + inner Ethernet: what a network loses from the
/// underlay MTU (IPv6 underlay: 20 more).
pub const OVERHEAD_V4: u32 =
    (crate::ipv4::MIN_HEADER_LEN + crate::udp::HEADER_LEN + HEADER_LEN + crate::ethernet::HEADER_LEN) as u32;
pub const OVERHEAD_V6: u32 =
    (crate::ipv6::HEADER_LEN + crate::udp::HEADER_LEN + HEADER_LEN + crate::ethernet::HEADER_LEN) as u32;

/// Why a datagram is not a VXLAN packet we accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Shorter than the VXLAN header.
    Truncated,
    /// The I flag is clear, or another flag than S is set.
    BadFlags,
}

view! {
    /// A checked view of a VXLAN packet: header and inner frame.
    pub struct Packet, error Error;
}

mod field {
    use std::ops::Range;
    pub const FLAGS: usize = 0;
    pub const VNI: Range<usize> = 4..7;
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks length and flags. After this no accessor panics.
    fn check(&self) -> std::result::Result<(), Error> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.flags() & !FLAG_SEALED != FLAG_VNI {
            return Err(Error::BadFlags);
        }
        Ok(())
    }

    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// Whether the S flag is set: the payload is sealed, not a frame.
    pub fn is_sealed(&self) -> bool {
        self.flags() & FLAG_SEALED != 0
    }

    pub fn vni(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::VNI];
        u32::from_be_bytes([0, b[0], b[1], b[2]])
    }

    /// The inner Ethernet frame (of a packet that is not sealed).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Writes a header with the I flag and `vni` (24 bits), reserved fields zero.
    pub fn set_header(&mut self, vni: u32) {
        let b = &mut self.buffer.as_mut()[..HEADER_LEN];
        b.fill(0);
        b[field::FLAGS] = FLAG_VNI;
        b[field::VNI].copy_from_slice(&vni.to_be_bytes()[1..]);
    }
}

/// The meaning of a VXLAN header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub vni: u32,
}

impl Repr {
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Repr {
        Repr { vni: packet.vni() }
    }

    pub fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into the first [`HEADER_LEN`] bytes of `buf`.
    ///
    /// # Panics
    /// If `buf` is shorter than [`HEADER_LEN`].
    pub fn emit(&self, buf: &mut [u8]) {
        Packet::new_unchecked(buf).set_header(self.vni);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VXLAN packet as the Linux kernel sends it: VNI 100, inner frame.
    const KERNEL_BYTES: [u8; 8] = [0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x64, 0x00];

    #[test]
    fn overheads() {
        assert_eq!((OVERHEAD_V4, OVERHEAD_V6), (50, 70));
    }

    #[test]
    fn parse_kernel_header() {
        let mut bytes = KERNEL_BYTES.to_vec();
        bytes.extend_from_slice(&[0xaa; 14]);
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(Repr::parse(&p), Repr { vni: 100 });
        assert_eq!(p.payload(), &[0xaa; 14]);
    }

    #[test]
    fn emit_matches_the_kernel_byte_for_byte() {
        let mut buf = [0xffu8; 8];
        Repr { vni: 100 }.emit(&mut buf);
        assert_eq!(buf, KERNEL_BYTES);
        Repr { vni: 0xabcdef }.emit(&mut buf);
        assert_eq!(buf, [0x08, 0, 0, 0, 0xab, 0xcd, 0xef, 0]);
    }

    #[test]
    fn reserved_bits_are_ignored_on_receipt() {
        let bytes = [0x08, 0xff, 0xff, 0xff, 0x00, 0x00, 0x07, 0xff];
        assert_eq!(Packet::new_checked(&bytes[..]).unwrap().vni(), 7);
    }

    #[test]
    fn bad_flags_and_truncation() {
        assert_eq!(Packet::new_checked(&[0x08u8; 7][..]).unwrap_err(), Error::Truncated);
        assert_eq!(Packet::new_checked(&[0u8; 8][..]).unwrap_err(), Error::BadFlags);
        let gbp = [0x88, 0, 0, 0, 0, 0, 1, 0];
        assert_eq!(Packet::new_checked(&gbp[..]).unwrap_err(), Error::BadFlags);
        let sealed_without_i = [0x40, 0, 0, 0, 0, 0, 1, 0];
        assert_eq!(Packet::new_checked(&sealed_without_i[..]).unwrap_err(), Error::BadFlags);
        let sealed = [0x48, 0, 0, 0, 0, 0, 1, 0];
        let p = Packet::new_checked(&sealed[..]).unwrap();
        assert!(p.is_sealed() && p.vni() == 1);
        assert!(!Packet::new_checked(&KERNEL_BYTES[..]).unwrap().is_sealed());
    }
}
