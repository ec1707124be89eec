//! switchd's cryptography, behind narrow types:
//!
//! - [`key`]: 32-byte keys that zero themselves on drop, read from key
//!   files, and derived from one another with HKDF-SHA256, so each use
//!   (gossip, a network, a sender's session) has its own key.
//! - [`aead`]: ChaCha20-Poly1305 sealing and opening in place, in the
//!   caller's buffer, with a 64-bit counter nonce.
//! - [`replay`]: a sliding window over those counters.
//!
//! Nothing here allocates per packet, reads a clock or touches a socket.

#![forbid(unsafe_code)]

pub mod aead;
pub mod key;
pub mod replay;

pub use aead::{Aead, AuthError, TAG_LEN};
pub use key::{Key, KeyError, KeyId};
pub use replay::ReplayWindow;
