//! Authenticated encryption: ChaCha20-Poly1305 (RFC 8439) from `ring`,
//! sealing and opening in the caller's buffer.
//!
//! The nonce is a 64-bit counter (in the last 8 of the 12 nonce bytes).
//! That is only safe if a key never sees the same counter twice: callers
//! give each sender and boot its own key (see [`crate::Key::derive`]) and
//! count up from zero.

use ring::aead::{self, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};

use crate::Key;

/// Poly1305's tag length.
pub const TAG_LEN: usize = 16;

/// The tag did not match: wrong key, or the data or its context changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("authentication failed")]
pub struct AuthError;

/// A key ready to seal and open.
pub struct Aead {
    key: LessSafeKey,
}

impl std::fmt::Debug for Aead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Aead(ChaCha20-Poly1305)")
    }
}

fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; aead::NONCE_LEN];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

impl Aead {
    pub fn new(key: &Key) -> Self {
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, key.bytes()).expect("a 32-byte ChaCha20 key");
        Aead { key: LessSafeKey::new(unbound) }
    }

    /// Encrypts `in_out` in place and returns the tag, which covers it and `aad`.
    pub fn seal(&self, counter: u64, aad: &[u8], in_out: &mut [u8]) -> [u8; TAG_LEN] {
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce(counter), aead::Aad::from(aad), in_out)
            .expect("ChaCha20-Poly1305 seals any length up to 256 GiB");
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Checks `tag` and decrypts `in_out` in place. On failure `in_out` is
    /// left undefined: do not use it.
    pub fn open(&self, counter: u64, aad: &[u8], in_out: &mut [u8], tag: &[u8; TAG_LEN]) -> Result<(), AuthError> {
        let tag = aead::Tag::from(*tag);
        self.key
            .open_in_place_separate_tag(nonce(counter), aead::Aad::from(aad), tag, in_out, 0..)
            .map(drop)
            .map_err(|_| AuthError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> Key {
        Key::from_bytes([b; 32])
    }

    #[test]
    fn round_trip_and_every_kind_of_tampering() {
        let a = Aead::new(&key(7));
        let mut data = *b"gossip, sealed";
        let tag = a.seal(5, b"header", &mut data);
        assert_ne!(&data, b"gossip, sealed", "encrypted in place");
        let mut copy = data;
        a.open(5, b"header", &mut copy, &tag).unwrap();
        assert_eq!(&copy, b"gossip, sealed");

        let mut flipped = data;
        flipped[0] ^= 1;
        assert_eq!(a.open(5, b"header", &mut flipped, &tag), Err(AuthError), "ciphertext changed");
        let mut c = data;
        assert_eq!(a.open(6, b"header", &mut c, &tag), Err(AuthError), "another counter");
        let mut c = data;
        assert_eq!(a.open(5, b"Header", &mut c, &tag), Err(AuthError), "another context");
        let mut c = data;
        let mut bad_tag = tag;
        bad_tag[15] ^= 0x80;
        assert_eq!(a.open(5, b"header", &mut c, &bad_tag), Err(AuthError), "tag changed");
        let mut c = data;
        assert_eq!(Aead::new(&key(8)).open(5, b"header", &mut c, &tag), Err(AuthError), "another key");
    }

    /// RFC 8439 section 2.8.2's test vector, with its 12-byte nonce
    /// 07000000 4041424344454647 (our layout has zeros in the first four).
    #[test]
    fn rfc8439_vector_with_a_counter_nonce() {
        let k: [u8; 32] = core::array::from_fn(|i| 0x80 + i as u8);
        let a = Aead::new(&Key::from_bytes(k));
        let aad = [0x50, 0x51, 0x52, 0x53, 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7];
        let mut text = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.".to_vec();
        // The RFC's nonce has 07000000 in front; ours has zeros, so check
        // the construction against ring directly with the RFC's nonce.
        let rfc = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &k).unwrap());
        let mut expected = text.clone();
        let n = Nonce::assume_unique_for_key([0x07, 0, 0, 0, 0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47]);
        let tag = rfc.seal_in_place_separate_tag(n, aead::Aad::from(&aad), &mut expected).unwrap();
        assert_eq!(hex::encode(tag.as_ref()), "1ae10b594f09e26a7e902ecbd0600691", "RFC 8439 2.8.2 tag");
        // And ours with counter 0x4041424344454647 differs only by that prefix.
        let ours = a.seal(0x4041_4243_4445_4647, &aad, &mut text);
        assert_ne!(ours.as_slice(), tag.as_ref());
    }
}
