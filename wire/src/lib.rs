//! switchd's packet formats: one checked view and one representation per
//! protocol, every constant once.
//!
//! After smoltcp's `wire`: each protocol has a view over a byte buffer,
//! `Packet<T: AsRef<[u8]>>` (or `Frame`, `Header`), made with `new_checked`,
//! after which no accessor panics; `set_*` accessors on mutable buffers;
//! and, where the switch builds or reads the whole header, a `Repr` with
//! `parse`, `buffer_len` and `emit`. Values the switch does not know are
//! kept (`Unknown(n)`), never errors. Untrusted bytes always go through
//! `new_checked`.
//!
//! | module | format |
//! | --- | --- |
//! | [`vnet`] | `virtio_net_hdr` and the frames ports read and write behind it; GSO |
//! | [`ethernet`] | Ethernet II with 802.1Q tags; MAC addresses |
//! | [`arp`] | ARP for IPv4 over Ethernet |
//! | [`ip`] | what IPv4 and IPv6 share: protocol numbers |
//! | [`ipv4`] | IPv4 |
//! | [`ipv6`] | IPv6 and its extension headers |
//! | [`icmpv4`] | ICMP |
//! | [`icmpv6`] | ICMPv6 and neighbour discovery |
//! | [`udp`], [`tcp`] | UDP, TCP |
//! | [`vxlan`] | VXLAN (RFC 7348) |
//! | [`sealed`] | switchd's sealed VXLAN header |
//! | [`checksum`] | the Internet checksum |
//!
//! No I/O, no allocation, no `unsafe`.

#![forbid(unsafe_code)]

#[macro_use]
mod macros;

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmpv4;
pub mod icmpv6;
pub mod ip;
pub mod ipv4;
pub mod ipv6;
pub mod sealed;
pub mod tcp;
pub mod udp;
pub mod vnet;
pub mod vxlan;

pub use ethernet::MacAddr;

/// A buffer too short for what its header says, or a header this crate
/// refuses to read further (the unit error of every view: quinn's
/// `UnexpectedEnd`). What exactly was wrong is the caller's to say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("truncated or malformed header")
    }
}

impl std::error::Error for Malformed {}

pub type Result<T> = std::result::Result<T, Malformed>;

/// Reads a big-endian u16 at `at` of a buffer already checked to hold it.
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn set_be16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

fn set_be32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}
