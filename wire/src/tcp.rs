//! TCP headers (RFC 9293), as far as segmentation, coalescing and the
//! switch's decisions need them.

use crate::{Malformed, Result, be16, be32, checksum, set_be16, set_be32};

pub const MIN_HEADER_LEN: usize = 20;

/// TCP flags (byte 13).
pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

view! {
    /// A view of a TCP segment: the header (options included) fits the buffer.
    pub struct Packet, error Malformed;
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// What [`Packet::new_checked`] checks.
    fn check(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < MIN_HEADER_LEN {
            return Err(Malformed);
        }
        let header_len = usize::from(b[12] >> 4) * 4;
        if header_len < MIN_HEADER_LEN || header_len > b.len() { Err(Malformed) } else { Ok(()) }
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    pub fn src_port(&self) -> u16 {
        be16(self.b(), 0)
    }

    pub fn dst_port(&self) -> u16 {
        be16(self.b(), 2)
    }

    pub fn seq_number(&self) -> u32 {
        be32(self.b(), 4)
    }

    pub fn ack_number(&self) -> u32 {
        be32(self.b(), 8)
    }

    pub fn header_len(&self) -> usize {
        usize::from(self.b()[12] >> 4) * 4
    }

    pub fn flags(&self) -> u8 {
        self.b()[13]
    }

    pub fn window(&self) -> u16 {
        be16(self.b(), 14)
    }

    pub fn checksum(&self) -> u16 {
        be16(self.b(), 16)
    }

    /// The options, between the fixed header and the payload.
    pub fn options(&self) -> &[u8] {
        &self.b()[MIN_HEADER_LEN..self.header_len()]
    }

    pub fn payload(&self) -> &[u8] {
        &self.b()[self.header_len()..]
    }

    pub fn verify_checksum(&self, pseudo_header: u64) -> bool {
        checksum::fold(checksum::add(pseudo_header, self.b())) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_seq_number(&mut self, seq: u32) {
        set_be32(self.buffer.as_mut(), 4, seq);
    }

    pub fn set_flags(&mut self, flags: u8) {
        self.buffer.as_mut()[13] = flags;
    }

    pub fn set_checksum(&mut self, sum: u16) {
        set_be16(self.buffer.as_mut(), 16, sum);
    }

    /// Computes and writes the checksum over the whole buffer.
    pub fn fill_checksum(&mut self, pseudo_header: u64) {
        self.set_checksum(0);
        let sum = checksum::finish(checksum::add(pseudo_header, self.buffer.as_ref()));
        self.set_checksum(sum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_with_options() {
        // 1000 -> 2000, seq 1, ack 2, data offset 6 (one option word), ACK|PSH, window 100.
        let mut seg = vec![0x03, 0xe8, 0x07, 0xd0, 0, 0, 0, 1, 0, 0, 0, 2, 0x60, 0x18, 0, 100, 0, 0, 0, 0];
        seg.extend_from_slice(&[1, 1, 1, 1]);
        seg.extend_from_slice(b"data");
        let pseudo = checksum::pseudo_v4([10, 0, 0, 1].into(), [10, 0, 0, 2].into(), 6, seg.len() as u32);
        Packet::new_unchecked(&mut seg[..]).fill_checksum(pseudo);
        let p = Packet::new_checked(&seg[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port(), p.seq_number(), p.ack_number()), (1000, 2000, 1, 2));
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.flags(), flags::ACK | flags::PSH);
        assert_eq!(p.window(), 100);
        assert_eq!(p.options(), &[1, 1, 1, 1]);
        assert_eq!(p.payload(), b"data");
        assert!(p.verify_checksum(pseudo));
        // Cross-checked against etherparse.
        let e = etherparse::TcpHeaderSlice::from_slice(&seg).unwrap();
        assert_eq!((e.sequence_number(), e.checksum()), (1, p.checksum()));
    }

    #[test]
    fn a_data_offset_beyond_the_buffer_is_refused() {
        let mut seg = [0u8; 20];
        seg[12] = 0x60;
        assert!(Packet::new_checked(&seg[..]).is_err());
        seg[12] = 0x40;
        assert!(Packet::new_checked(&seg[..]).is_err(), "below the minimum");
    }
}
