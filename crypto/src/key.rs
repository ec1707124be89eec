//! Keys: 32 random bytes, never printed, zeroed when dropped.
//!
//! A key file holds 64 hex characters (surrounding whitespace allowed), as
//! `openssl rand -hex 32` writes them. It must be a regular file, and no
//! more than [`MAX_FILE_LEN`] bytes of it are ever read (`/dev/zero`, a
//! pipe or a huge file is refused, not read until memory runs out). Derived keys come from HKDF-SHA256
//! (RFC 5869) with a fixed salt and a label per use, so a key for one
//! purpose never serves another.

use std::fmt;
use std::io::Read;
use std::path::Path;

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

pub const KEY_LEN: usize = 32;
/// The most a key file may hold: 64 hex characters and some whitespace.
pub const MAX_FILE_LEN: usize = 128;
/// HKDF's salt: fixed, so that every host derives the same keys.
const SALT: &[u8] = b"switchd key derivation v1";

/// A 256-bit secret key.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct Key([u8; KEY_LEN]);

/// A short public identifier of a key, to tell "sealed with another key"
/// from "tampered with" without revealing anything of the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 4]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::str::FromStr for KeyId {
    type Err = String;

    /// Eight hex characters, as [`KeyId`]'s `Display` writes them.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut id = [0u8; 4];
        hex::decode_to_slice(s, &mut id).map_err(|_| format!("{s:?} is not a key id (8 hex characters)"))?;
        Ok(KeyId(id))
    }
}

/// Why a key could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read.
    #[error("{path}: cannot read key file: {source}")]
    Read { path: String, source: std::io::Error },
    /// The text is not 64 hex characters.
    #[error("a key is 32 bytes written as 64 hex characters (e.g. from `openssl rand -hex 32`); found {0}")]
    Format(String),
    /// The path is a directory, device, pipe or socket.
    #[error("{0}: not a regular file; a key file holds 64 hex characters")]
    NotAFile(String),
}

impl Key {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Key(bytes)
    }

    /// Parses 64 hex characters.
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        let mut bytes = [0u8; KEY_LEN];
        match hex::decode_to_slice(text, &mut bytes) {
            Ok(()) => Ok(Key(bytes)),
            Err(_) if text.len() != 2 * KEY_LEN => Err(KeyError::Format(format!("{} characters", text.len()))),
            Err(_) => Err(KeyError::Format("characters that are not hex digits".into())),
        }
    }

    /// Reads a key file: a regular file of at most [`MAX_FILE_LEN`] bytes.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let shown = shown_path(path);
        let read = |source| KeyError::Read { path: shown.clone(), source };
        // Checked before opening: opening a pipe would wait for a writer.
        if !std::fs::metadata(path).map_err(read)?.is_file() {
            return Err(KeyError::NotAFile(shown));
        }
        let file = std::fs::File::open(path).map_err(read)?;
        if !file.metadata().map_err(read)?.is_file() {
            return Err(KeyError::NotAFile(shown));
        }
        let mut text = zeroize::Zeroizing::new(Vec::with_capacity(MAX_FILE_LEN + 1));
        file.take(MAX_FILE_LEN as u64 + 1).read_to_end(&mut text).map_err(read)?;
        if text.len() > MAX_FILE_LEN {
            return Err(KeyError::Format(format!("more than {MAX_FILE_LEN} bytes in {shown}")));
        }
        let text = std::str::from_utf8(&text).map_err(|_| KeyError::Format("bytes that are not text".into()))?;
        Key::from_hex(text)
    }

    /// A key for one purpose: HKDF-SHA256 of this key with `label` and
    /// `context` as the info.
    pub fn derive(&self, label: &str, context: &[u8]) -> Key {
        // Derivation runs when keys or sessions change, never per packet,
        // so the portable HKDF serves both backends.
        let hkdf = Hkdf::<Sha256>::new(Some(SALT), &self.0);
        let mut out = [0u8; KEY_LEN];
        hkdf.expand_multi_info(&[label.as_bytes(), b"\0", context], &mut out)
            .expect("32 bytes is a valid HKDF-SHA256 length");
        Key(out)
    }

    /// A fresh random key.
    pub fn random() -> Key {
        let mut bytes = [0u8; KEY_LEN];
        crate::random::fill(&mut bytes);
        Key(bytes)
    }

    /// The key as 64 hex characters, for writing a key file.
    pub fn to_hex(&self) -> zeroize::Zeroizing<String> {
        zeroize::Zeroizing::new(hex::encode(self.0))
    }

    /// This key's public identifier.
    pub fn id(&self) -> KeyId {
        let d = self.derive("key id", &[]);
        KeyId([d.0[0], d.0[1], d.0[2], d.0[3]])
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

/// A path for an error message, cut if it is absurdly long.
fn shown_path(path: &Path) -> String {
    const MAX: usize = 256;
    let text = path.display().to_string();
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}... ({} bytes)", &text[..cut], text.len()),
        None => text,
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key(id {})", self.id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn parse_and_refuse() {
        let k = Key::from_hex(&format!("  {HEX}\n")).unwrap();
        assert_eq!(k.bytes()[31], 0x1f);
        assert!(Key::from_hex(&HEX[..62]).unwrap_err().to_string().contains("found 62 characters"));
        let bad = HEX.replace('0', "g");
        assert!(Key::from_hex(&bad).unwrap_err().to_string().contains("not hex"));
        let e = Key::load(Path::new("/nonexistent/cluster.key")).unwrap_err().to_string();
        assert!(e.starts_with("/nonexistent/cluster.key: cannot read key file"), "{e}");
    }

    #[test]
    fn key_files_are_read_only_as_far_as_a_key_can_be() {
        let dir = std::env::temp_dir().join(format!("switchd-key-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.key");
        std::fs::write(&good, format!("{HEX}\r\n")).unwrap();
        assert_eq!(Key::load(&good).unwrap().bytes()[31], 0x1f);
        // A key of MAX_FILE_LEN bytes with its whitespace is fine; one byte more is not.
        let padded = dir.join("padded.key");
        std::fs::write(&padded, format!("{HEX}{}", " ".repeat(MAX_FILE_LEN - HEX.len()))).unwrap();
        assert!(Key::load(&padded).is_ok());
        let huge = dir.join("huge.key");
        std::fs::write(&huge, format!("{HEX}{}", "\n".repeat(1 << 20))).unwrap();
        let e = Key::load(&huge).unwrap_err().to_string();
        assert!(e.contains(&format!("found more than {MAX_FILE_LEN} bytes")), "{e}");
        let binary = dir.join("binary.key");
        std::fs::write(&binary, [0xffu8; 64]).unwrap();
        assert!(Key::load(&binary).unwrap_err().to_string().contains("not text"));
        let e = Key::load(&dir).unwrap_err().to_string();
        assert!(e.ends_with("not a regular file; a key file holds 64 hex characters"), "{e}");
        assert!(Key::load(Path::new("/dev/zero")).unwrap_err().to_string().contains("not a regular file"));
        let long = Path::new("/").join("x".repeat(10_000));
        let e = Key::load(&long).unwrap_err().to_string();
        assert!(e.len() < 400 && e.contains("(10001 bytes)"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Opening a pipe waits for a writer: a pipe is refused before that.
    #[test]
    fn a_pipe_is_refused_without_waiting() {
        let fifo = std::env::temp_dir().join(format!("switchd-key-fifo-{}", std::process::id()));
        let _ = std::fs::remove_file(&fifo);
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        let (tx, rx) = std::sync::mpsc::channel();
        let path = fifo.clone();
        std::thread::spawn(move || {
            let _ = tx.send(Key::load(&path).map_err(|e| e.to_string()));
        });
        let outcome = rx.recv_timeout(std::time::Duration::from_secs(2));
        if outcome.is_err() {
            // Still waiting in open(2): let it go before failing.
            let _ = std::fs::OpenOptions::new().write(true).open(&fifo);
        }
        let _ = std::fs::remove_file(&fifo);
        let e = outcome.expect("Key::load returned at once").unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
    }

    #[test]
    fn derivation_separates_purposes_and_is_stable() {
        let k = Key::from_hex(HEX).unwrap();
        let a = k.derive("gossip", &[]);
        assert_eq!(a, k.derive("gossip", &[]));
        assert_ne!(a, k.derive("gossip", &[1]));
        assert_ne!(a, k.derive("network", &[]));
        assert_ne!(k.id(), a.id());
        // Known answers, computed independently with Python's hmac/hashlib
        // (RFC 5869 by hand), so a change of derivation, which would split
        // a cluster, cannot pass unnoticed.
        assert_eq!(hex::encode(a.bytes()), "5398c71a2cd6afc64fd57c30cf0b066557c0faf96fa775911a658653dc605f6e");
        assert_eq!(k.id().to_string(), "e32eb522");
        assert_eq!("e32eb522".parse::<KeyId>(), Ok(k.id()));
        assert!("e32eb52".parse::<KeyId>().is_err());
    }

    #[test]
    fn debug_never_shows_the_key() {
        let k = Key::from_hex(HEX).unwrap();
        let shown = format!("{k:?}");
        assert!(!shown.contains("0102"), "{shown}");
        assert!(shown.starts_with("Key(id "));
    }
}
