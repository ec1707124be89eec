//! UDP headers (RFC 768).

use crate::{Malformed, Result, be16, checksum, set_be16};

pub const HEADER_LEN: usize = 8;

view! {
    /// A view of a UDP datagram. [`Packet::new_checked`] checks that the
    /// header fits and that the length field covers it and fits the buffer.
    pub struct Packet, error Malformed;
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// What [`Packet::new_checked`] checks.
    fn check(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Malformed);
        }
        let len = usize::from(be16(b, 4));
        if len < HEADER_LEN || len > b.len() { Err(Malformed) } else { Ok(()) }
    }

    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), 0)
    }

    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), 2)
    }

    pub fn len(&self) -> u16 {
        be16(self.buffer.as_ref(), 4)
    }

    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) == HEADER_LEN
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), 6)
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }

    /// Whether the checksum is right (zero: none, which IPv4 allows).
    pub fn verify_checksum(&self, pseudo_header: u64) -> bool {
        self.checksum() == 0
            || checksum::fold(checksum::add(pseudo_header, &self.buffer.as_ref()[..usize::from(self.len())])) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_len(&mut self, len: u16) {
        set_be16(self.buffer.as_mut(), 4, len);
    }

    pub fn set_checksum(&mut self, sum: u16) {
        set_be16(self.buffer.as_mut(), 6, sum);
    }

    /// Computes and writes the checksum (a zero result goes out as all
    /// ones: zero means "no checksum").
    pub fn fill_checksum(&mut self, pseudo_header: u64) {
        self.set_checksum(0);
        let len = usize::from(self.len());
        let sum = match checksum::finish(checksum::add(pseudo_header, &self.buffer.as_ref()[..len])) {
            0 => 0xffff,
            c => c,
        };
        self.set_checksum(sum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dns_query_header() {
        // 40000 -> 53, length 12, checksum 0.
        let bytes = [0x9c, 0x40, 0x00, 0x35, 0x00, 0x0c, 0x00, 0x00, 1, 2, 3, 4];
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port(), p.len()), (40000, 53, 12));
        assert_eq!(p.payload(), &[1, 2, 3, 4]);
        assert!(p.verify_checksum(0), "no checksum");
        let mut filled = bytes;
        let pseudo = checksum::pseudo_v4([10, 0, 0, 1].into(), [10, 0, 0, 2].into(), 17, 12);
        Packet::new_unchecked(&mut filled[..]).fill_checksum(pseudo);
        assert!(Packet::new_checked(&filled[..]).unwrap().verify_checksum(pseudo));
        assert!(!Packet::new_checked(&filled[..]).unwrap().verify_checksum(pseudo + 1));
    }

    #[test]
    fn lengths_are_checked() {
        assert!(Packet::new_checked(&[0u8; 7][..]).is_err());
        let mut bytes = [0u8; 10];
        bytes[4..6].copy_from_slice(&11u16.to_be_bytes());
        assert!(Packet::new_checked(&bytes[..]).is_err(), "length beyond the buffer");
        bytes[4..6].copy_from_slice(&7u16.to_be_bytes());
        assert!(Packet::new_checked(&bytes[..]).is_err(), "length below the header");
    }
}
