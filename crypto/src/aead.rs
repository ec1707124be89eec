//! Authenticated encryption, sealing and opening in the caller's buffer.
//!
//! Two ciphers ([`Cipher`]): ChaCha20-Poly1305 (RFC 8439: fast everywhere)
//! and AES-256-GCM (faster where the CPU has AES and carry-less multiply
//! instructions); [`Cipher::preferred`] is the faster of the two on this
//! CPU, the default for encrypted networks. Gossip always seals with
//! ChaCha20-Poly1305 ([`Aead::new`]). Two implementations of them ([`Backend`]):
//! `ring` (assembly, the default when its feature is on) and RustCrypto's
//! `chacha20poly1305`/`aes-gcm` crates (pure Rust, always built: the
//! fallback and the benchmarks' baseline). Both sit behind one narrow
//! trait, [`SealingKey`], so callers never see which one runs.
//!
//! The nonce is a 64-bit counter (in the last 8 of the 12 nonce bytes).
//! That is only safe if a key never sees the same counter twice: callers
//! give each sender, boot and lane its own key (see [`crate::session`])
//! and count up from zero.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use crate::Key;

/// The tag length of both ciphers.
pub const TAG_LEN: usize = 16;
pub const NONCE_LEN: usize = 12;

/// The tag did not match: wrong key, or the data or its context changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("authentication failed")]
pub struct AuthError;

/// An AEAD algorithm. The discriminant is its number on the wire.
///
/// No `Default`: what a network seals with by default depends on the CPU
/// ([`Cipher::preferred`]), gossip's never does ([`Aead::new`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cipher {
    ChaCha20Poly1305 = 1,
    Aes256Gcm = 2,
}

impl Cipher {
    pub const ALL: [Cipher; 2] = [Cipher::ChaCha20Poly1305, Cipher::Aes256Gcm];

    /// The name in host.toml and `switchctl`.
    pub fn as_str(self) -> &'static str {
        match self {
            Cipher::ChaCha20Poly1305 => "chacha20-poly1305",
            Cipher::Aes256Gcm => "aes-256-gcm",
        }
    }

    pub fn wire_id(self) -> u8 {
        self as u8
    }

    pub fn from_wire_id(id: u8) -> Option<Cipher> {
        Cipher::ALL.into_iter().find(|c| c.wire_id() == id)
    }

    /// Whether this CPU runs the cipher in hardware-assisted code. AES
    /// without AES-NI is slow (and, in portable code, harder to keep
    /// constant-time); ChaCha20 needs nothing special.
    pub fn is_accelerated(self) -> bool {
        match self {
            Cipher::ChaCha20Poly1305 => true,
            #[cfg(target_arch = "x86_64")]
            Cipher::Aes256Gcm => {
                std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("pclmulqdq")
            }
            #[cfg(target_arch = "aarch64")]
            Cipher::Aes256Gcm => std::arch::is_aarch64_feature_detected!("aes"),
            #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
            Cipher::Aes256Gcm => false,
        }
    }

    /// The faster cipher on this CPU: AES-256-GCM where it has AES and
    /// carry-less multiply instructions (x86-64 `aes` and `pclmulqdq`,
    /// aarch64 `aes`), ChaCha20-Poly1305 elsewhere. Detected once per
    /// process; the same answer every time after.
    pub fn preferred() -> Cipher {
        static PREFERRED: OnceLock<Cipher> = OnceLock::new();
        *PREFERRED.get_or_init(|| Cipher::preferred_given(Cipher::Aes256Gcm.is_accelerated()))
    }

    /// The choice [`Cipher::preferred`] makes, given whether this CPU
    /// accelerates AES-GCM.
    pub fn preferred_given(aes_accelerated: bool) -> Cipher {
        if aes_accelerated { Cipher::Aes256Gcm } else { Cipher::ChaCha20Poly1305 }
    }
}

impl fmt::Display for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Cipher {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Cipher::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not a cipher; use \"chacha20-poly1305\" or \"aes-256-gcm\""))
    }
}

/// Which implementation seals and opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    #[cfg(feature = "ring")]
    Ring,
    RustCrypto,
}

impl Backend {
    /// Every backend in this build, the default first.
    pub const ALL: &[Backend] = &[
        #[cfg(feature = "ring")]
        Backend::Ring,
        Backend::RustCrypto,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            #[cfg(feature = "ring")]
            Backend::Ring => "ring",
            Backend::RustCrypto => "rustcrypto",
        }
    }
}

impl Default for Backend {
    /// ring when built in, else RustCrypto.
    fn default() -> Self {
        Backend::ALL[0]
    }
}

/// The one interface both backends implement: a key ready to seal and
/// open in place, the tag kept separate so callers place it themselves.
pub trait SealingKey: Send + Sync {
    /// Encrypts `in_out` in place and returns the tag over it and `aad`.
    fn seal(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], in_out: &mut [u8]) -> [u8; TAG_LEN];
    /// Checks `tag` and decrypts `in_out` in place. On failure `in_out`
    /// holds garbage: do not use it.
    fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), AuthError>;
}

#[cfg(feature = "ring")]
mod ring_backend {
    use ring::aead::{AES_256_GCM, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, Tag, UnboundKey};

    use super::{AuthError, Cipher, NONCE_LEN, SealingKey, TAG_LEN};

    pub struct RingKey(LessSafeKey);

    impl RingKey {
        pub fn new(cipher: Cipher, key: &[u8; 32]) -> Self {
            let algorithm = match cipher {
                Cipher::ChaCha20Poly1305 => &CHACHA20_POLY1305,
                Cipher::Aes256Gcm => &AES_256_GCM,
            };
            RingKey(LessSafeKey::new(UnboundKey::new(algorithm, key).expect("both ciphers take 32-byte keys")))
        }
    }

    impl SealingKey for RingKey {
        fn seal(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], in_out: &mut [u8]) -> [u8; TAG_LEN] {
            let tag = self
                .0
                .seal_in_place_separate_tag(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), in_out)
                .expect("both ciphers seal any length up to 64 GiB");
            let mut out = [0u8; TAG_LEN];
            out.copy_from_slice(tag.as_ref());
            out
        }

        fn open(
            &self,
            nonce: &[u8; NONCE_LEN],
            aad: &[u8],
            in_out: &mut [u8],
            tag: &[u8; TAG_LEN],
        ) -> Result<(), AuthError> {
            let nonce = Nonce::assume_unique_for_key(*nonce);
            self.0
                .open_in_place_separate_tag(nonce, Aad::from(aad), Tag::from(*tag), in_out, 0..)
                .map(drop)
                .map_err(|_| AuthError)
        }
    }
}

mod rustcrypto_backend {
    use aes_gcm::Aes256Gcm;
    use chacha20poly1305::ChaCha20Poly1305;
    use chacha20poly1305::aead::{AeadInPlace, KeyInit};

    use super::{AuthError, Cipher, NONCE_LEN, SealingKey, TAG_LEN};

    /// Both zero their keys on drop (chacha20poly1305 always, aes-gcm with
    /// its `zeroize` feature). ring makes no such promise for its expanded
    /// keys; the [`crate::Key`] they come from is always zeroed.
    pub enum RustCryptoKey {
        ChaCha(Box<ChaCha20Poly1305>),
        Aes(Box<Aes256Gcm>),
    }

    impl RustCryptoKey {
        pub fn new(cipher: Cipher, key: &[u8; 32]) -> Self {
            match cipher {
                Cipher::ChaCha20Poly1305 => RustCryptoKey::ChaCha(Box::new(ChaCha20Poly1305::new(key.into()))),
                Cipher::Aes256Gcm => RustCryptoKey::Aes(Box::new(Aes256Gcm::new(key.into()))),
            }
        }
    }

    impl SealingKey for RustCryptoKey {
        fn seal(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], in_out: &mut [u8]) -> [u8; TAG_LEN] {
            let tag = match self {
                RustCryptoKey::ChaCha(k) => k.encrypt_in_place_detached(nonce.into(), aad, in_out),
                RustCryptoKey::Aes(k) => k.encrypt_in_place_detached(nonce.into(), aad, in_out),
            }
            .expect("both ciphers seal any length up to 64 GiB");
            tag.into()
        }

        fn open(
            &self,
            nonce: &[u8; NONCE_LEN],
            aad: &[u8],
            in_out: &mut [u8],
            tag: &[u8; TAG_LEN],
        ) -> Result<(), AuthError> {
            match self {
                RustCryptoKey::ChaCha(k) => k.decrypt_in_place_detached(nonce.into(), aad, in_out, tag.into()),
                RustCryptoKey::Aes(k) => k.decrypt_in_place_detached(nonce.into(), aad, in_out, tag.into()),
            }
            .map_err(|_| AuthError)
        }
    }
}

/// A key ready to seal and open with a counter nonce, in either backend.
pub struct Aead {
    cipher: Cipher,
    backend: Backend,
    key: Box<dyn SealingKey>,
}

impl fmt::Debug for Aead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Aead({}, {})", self.cipher, self.backend.as_str())
    }
}

/// The 12-byte nonce for a counter: four zero bytes, then the counter.
fn nonce(counter: u64) -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    n
}

impl Aead {
    /// ChaCha20-Poly1305 from the default backend, whatever the CPU: what
    /// gossip seals with, so every host of a cluster opens it alike.
    pub fn new(key: &Key) -> Self {
        Aead::with(Backend::default(), Cipher::ChaCha20Poly1305, key)
    }

    pub fn with(backend: Backend, cipher: Cipher, key: &Key) -> Self {
        let bytes = key.bytes();
        let key: Box<dyn SealingKey> = match backend {
            #[cfg(feature = "ring")]
            Backend::Ring => Box::new(ring_backend::RingKey::new(cipher, bytes)),
            Backend::RustCrypto => Box::new(rustcrypto_backend::RustCryptoKey::new(cipher, bytes)),
        };
        Aead { cipher, backend, key }
    }

    pub fn cipher(&self) -> Cipher {
        self.cipher
    }

    /// Encrypts `in_out` in place and returns the tag, which covers it and `aad`.
    pub fn seal(&self, counter: u64, aad: &[u8], in_out: &mut [u8]) -> [u8; TAG_LEN] {
        self.key.seal(&nonce(counter), aad, in_out)
    }

    /// Checks `tag` and decrypts `in_out` in place. On failure `in_out` is
    /// left undefined: do not use it.
    pub fn open(&self, counter: u64, aad: &[u8], in_out: &mut [u8], tag: &[u8; TAG_LEN]) -> Result<(), AuthError> {
        self.key.open(&nonce(counter), aad, in_out, tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> Key {
        Key::from_bytes([b; 32])
    }

    fn every() -> impl Iterator<Item = (Backend, Cipher)> {
        Backend::ALL.iter().flat_map(|b| Cipher::ALL.map(|c| (*b, c)))
    }

    #[test]
    fn round_trip_and_every_kind_of_tampering() {
        for (backend, cipher) in every() {
            let a = Aead::with(backend, cipher, &key(7));
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
            let other = Aead::with(backend, cipher, &key(8));
            assert_eq!(other.open(5, b"header", &mut c, &tag), Err(AuthError), "another key");
        }
    }

    /// The backends are interchangeable: what one seals the other opens,
    /// byte for byte, for both ciphers and at every length class.
    #[test]
    fn backends_agree() {
        for cipher in Cipher::ALL {
            let sealers: Vec<Aead> = Backend::ALL.iter().map(|b| Aead::with(*b, cipher, &key(3))).collect();
            for len in [0, 1, 15, 16, 17, 63, 64, 65, 255, 1400, 9000] {
                let plain: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
                let mut first: Option<(Vec<u8>, [u8; TAG_LEN])> = None;
                for a in &sealers {
                    let mut data = plain.clone();
                    let tag = a.seal(len as u64, b"aad", &mut data);
                    match &first {
                        None => first = Some((data, tag)),
                        Some(f) => assert_eq!((&f.0, &f.1), (&data, &tag), "{cipher} at {len} bytes"),
                    }
                }
                let (sealed, tag) = first.unwrap();
                for a in &sealers {
                    let mut data = sealed.clone();
                    a.open(len as u64, b"aad", &mut data, &tag).unwrap();
                    assert_eq!(data, plain);
                }
            }
        }
    }

    /// RFC 8439 section 2.8.2: key 80..9f, nonce 07000000 4041424344454647.
    /// Our nonce has zeros in front of the counter, so the RFC's nonce is
    /// fed to the trait directly.
    #[test]
    fn rfc8439_vector() {
        let k: [u8; 32] = core::array::from_fn(|i| 0x80 + i as u8);
        let aad = [0x50, 0x51, 0x52, 0x53, 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7];
        let n = [0x07, 0, 0, 0, 0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47];
        for backend in Backend::ALL {
            let a = Aead::with(*backend, Cipher::ChaCha20Poly1305, &Key::from_bytes(k));
            let mut text = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.".to_vec();
            let tag = a.key.seal(&n, &aad, &mut text);
            assert_eq!(hex::encode(&text[..16]), "d31a8d34648e60db7b86afbc53ef7ec2", "{backend:?}");
            assert_eq!(hex::encode(tag), "1ae10b594f09e26a7e902ecbd0600691", "{backend:?}");
        }
    }

    /// NIST's GCM test case 16 (AES-256, 60-byte text, 20-byte AAD, 96-bit IV).
    #[test]
    fn aes_gcm_vector() {
        let k = hex::decode("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308").unwrap();
        let n: [u8; 12] = hex::decode("cafebabefacedbaddecaf888").unwrap().try_into().unwrap();
        let aad = hex::decode("feedfacedeadbeeffeedfacedeadbeefabaddad2").unwrap();
        let plain = hex::decode("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39").unwrap();
        for backend in Backend::ALL {
            let a = Aead::with(*backend, Cipher::Aes256Gcm, &Key::from_bytes(k.clone().try_into().unwrap()));
            let mut text = plain.clone();
            let tag = a.key.seal(&n, &aad, &mut text);
            assert_eq!(
                hex::encode(&text),
                "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
                "{backend:?}"
            );
            assert_eq!(hex::encode(tag), "76fc6ece0f4e1768cddf8853bb2d551b", "{backend:?}");
        }
    }

    #[test]
    fn cipher_names_and_wire_ids() {
        for c in Cipher::ALL {
            assert_eq!(c.as_str().parse::<Cipher>().unwrap(), c);
            assert_eq!(Cipher::from_wire_id(c.wire_id()), Some(c));
        }
        assert_eq!(Cipher::from_wire_id(0), None);
        assert!("aes-128-gcm".parse::<Cipher>().unwrap_err().contains("not a cipher"));
    }

    #[test]
    fn the_preferred_cipher_is_aes_gcm_only_where_the_cpu_accelerates_it() {
        assert_eq!(Cipher::preferred_given(true), Cipher::Aes256Gcm);
        assert_eq!(Cipher::preferred_given(false), Cipher::ChaCha20Poly1305);
        assert_eq!(Cipher::preferred(), Cipher::preferred_given(Cipher::Aes256Gcm.is_accelerated()));
        assert_eq!(Cipher::preferred(), Cipher::preferred(), "chosen once");
        // The x86-64 rule as /proc/cpuinfo states it, independently of std's detection.
        #[cfg(target_arch = "x86_64")]
        if let Ok(cpuinfo) = std::fs::read_to_string("/proc/cpuinfo") {
            let flags = cpuinfo.lines().find(|l| l.starts_with("flags")).unwrap_or_default();
            let has = |f: &str| flags.split_whitespace().any(|w| w == f);
            assert_eq!(Cipher::preferred() == Cipher::Aes256Gcm, has("aes") && has("pclmulqdq"), "{flags}");
        }
    }

    #[test]
    fn gossip_seals_with_chacha20_poly1305_whatever_the_cpu() {
        assert_eq!(Aead::new(&Key::from_bytes([7; 32])).cipher(), Cipher::ChaCha20Poly1305);
    }
}
