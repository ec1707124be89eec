//! The header of sealed VXLAN: how an encrypted network's frames travel
//! between switchd hosts. The same UDP port as VXLAN; the first eight
//! bytes keep VXLAN's layout (with switchd's S flag), so the VNI is found,
//! and the sender and VNI checked, before any cryptography runs (sealing
//! and opening are `switchd_overlay::sealed`'s).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+---------------+-------------------------------+
//! |R|S|R|R|I|R|R|R|    cipher     |             lane              |
//! +-+-+-+-+-+-+-+-+---------------+---------------+---------------+
//! |           VXLAN Network Identifier (VNI)      | reserved (0)  |
//! +-----------------------------------------------+---------------+
//! |                            key id                             |
//! +---------------------------------------------------------------+
//! |                       session (64 bits)                       |
//! |                                                               |
//! +---------------------------------------------------------------+
//! |                   counter = nonce (64 bits)                   |
//! |                                                               |
//! +---------------------------------------------------------------+ <- 28 bytes: the AAD
//! |                                                               |
//! ~                inner Ethernet frame, encrypted                ~
//! |                                                               |
//! +---------------------------------------------------------------+
//! |                      tag (128 bits)                           |
//! +---------------------------------------------------------------+
//! ```
//!
//! Overhead: 36 bytes beyond plain VXLAN (20 of header, 16 of tag), taken
//! off the network's default MTU so no frame needs fragmenting.

use crate::{Malformed, Result, be16, be32, vxlan};

pub const HEADER_LEN: usize = 28;
/// The AEAD tag after the encrypted frame.
pub const TAG_LEN: usize = 16;
/// What sealing adds to a plain VXLAN packet.
pub const OVERHEAD: usize = HEADER_LEN - vxlan::HEADER_LEN + TAG_LEN;
pub const FLAGS: u8 = vxlan::FLAG_VNI | vxlan::FLAG_SEALED;

enum_with_unknown! {
    /// The AEAD a packet is sealed with (the sender's choice; a receiver opens either).
    pub enum Cipher(u8) {
        ChaCha20Poly1305 = 1,
        Aes256Gcm = 2,
    }
}

/// Where each field of the header is.
pub mod field {
    use std::ops::Range;
    pub const FLAGS: usize = 0;
    pub const CIPHER: usize = 1;
    pub const LANE: usize = 2;
    pub const VNI: Range<usize> = 4..7;
    pub const RESERVED: usize = 7;
    pub const KEY: Range<usize> = 8..12;
    pub const SESSION: usize = 12;
    pub const COUNTER: usize = 20;
}

/// A sealed packet's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub cipher: Cipher,
    pub lane: u16,
    pub vni: u32,
    pub key_id: [u8; 4],
    pub session: u64,
    pub counter: u64,
}

impl Header {
    /// Checks and reads the header of `datagram` (a whole sealed packet,
    /// tag included): flags I and S, a known cipher, the reserved byte zero.
    pub fn parse(datagram: &[u8]) -> Result<Header> {
        if datagram.len() < HEADER_LEN + TAG_LEN {
            return Err(Malformed);
        }
        let h = &datagram[..HEADER_LEN];
        let cipher = Cipher::from(h[field::CIPHER]);
        if h[field::FLAGS] != FLAGS || h[field::RESERVED] != 0 || matches!(cipher, Cipher::Unknown(_)) {
            return Err(Malformed);
        }
        let be64 = |at: usize| (u64::from(be32(h, at)) << 32) | u64::from(be32(h, at + 4));
        Ok(Header {
            cipher,
            lane: be16(h, field::LANE),
            vni: u32::from_be_bytes([0, h[4], h[5], h[6]]),
            key_id: h[field::KEY].try_into().expect("4 bytes"),
            session: be64(field::SESSION),
            counter: be64(field::COUNTER),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into the first [`HEADER_LEN`] bytes of `buf`.
    pub fn emit(&self, buf: &mut [u8]) {
        let h = &mut buf[..HEADER_LEN];
        h[field::FLAGS] = FLAGS;
        h[field::CIPHER] = self.cipher.into();
        h[field::LANE..field::LANE + 2].copy_from_slice(&self.lane.to_be_bytes());
        h[field::VNI].copy_from_slice(&self.vni.to_be_bytes()[1..]);
        h[field::RESERVED] = 0;
        h[field::KEY].copy_from_slice(&self.key_id);
        h[field::SESSION..field::SESSION + 8].copy_from_slice(&self.session.to_be_bytes());
        h[field::COUNTER..field::COUNTER + 8].copy_from_slice(&self.counter.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: Header = Header {
        cipher: Cipher::ChaCha20Poly1305,
        lane: 2,
        vni: 100,
        key_id: [0xde, 0xad, 0xbe, 0xef],
        session: 0x0123_4567_89ab_cdef,
        counter: 7,
    };
    const BYTES: [u8; 28] = [
        0x48, 0x01, 0x00, 0x02, 0x00, 0x00, 0x64, 0x00, 0xde, 0xad, 0xbe, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
        0xcd, 0xef, 0, 0, 0, 0, 0, 0, 0, 7,
    ];

    #[test]
    fn fixture_bytes() {
        let mut buf = [0u8; HEADER_LEN + TAG_LEN];
        HEADER.emit(&mut buf);
        assert_eq!(buf[..HEADER_LEN], BYTES);
        assert_eq!(Header::parse(&buf), Ok(HEADER));
        assert_eq!(OVERHEAD, 36);
    }

    #[test]
    fn bad_headers() {
        let mut buf = [0u8; HEADER_LEN + TAG_LEN];
        HEADER.emit(&mut buf);
        assert_eq!(Header::parse(&buf[..HEADER_LEN + TAG_LEN - 1]), Err(Malformed));
        for (byte, value) in [(0, 0x08), (1, 9), (7, 1)] {
            let mut bad = buf;
            bad[byte] = value;
            assert_eq!(Header::parse(&bad), Err(Malformed), "byte {byte}");
        }
    }
}
