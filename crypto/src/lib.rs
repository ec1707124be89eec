//! switchd's cryptography, behind narrow types:
//!
//! - [`key`]: 32-byte keys that zero themselves on drop, read from key
//!   files, and derived from one another with HKDF-SHA256, so each use
//!   (gossip, a network, a sender's session) has its own key.
//! - [`aead`]: ChaCha20-Poly1305 or AES-256-GCM, from ring or RustCrypto,
//!   sealing and opening in place in the caller's buffer with a 64-bit
//!   counter nonce.
//! - [`keyring`]: the keys a scope accepts and the one it seals with, for
//!   rotation without loss.
//! - [`session`]: per-sender, per-boot, per-lane session keys, and the
//!   receiver's table of them with a replay window each.
//! - [`replay`]: the sliding window over counters.
//!
//! Nothing here reads a clock or touches a socket; sealing and opening
//! allocate nothing per packet.

#![forbid(unsafe_code)]

pub mod aead;
pub mod key;
pub mod keyring;
pub mod random;
pub mod replay;
pub mod session;

pub use aead::{Aead, AuthError, Backend, Cipher, TAG_LEN};
pub use key::{Key, KeyError, KeyId};
pub use keyring::{Keyring, KeyringError, SharedKeyring};
pub use replay::ReplayWindow;
pub use session::{OpenError, RxSessions, SessionId, SessionRef, TxSessions};
