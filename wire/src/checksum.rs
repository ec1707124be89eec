//! The Internet checksum (RFC 1071): a ones-complement sum of 16-bit words.
//!
//! Sums are kept unfolded in a `u64` so pieces (pseudo header, header,
//! payload) add up cheaply. Data is summed as 64-bit big-endian words into
//! a 128-bit accumulator: the same ones-complement sum, since 2^16 = 1
//! modulo 0xffff, with a quarter of the additions.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Adds `data` to `sum` as big-endian 16-bit words; an odd last byte is
/// padded with zero. `data` must start on an even offset of the checksummed
/// region (callers sum whole headers and payloads).
pub fn add(sum: u64, data: &[u8]) -> u64 {
    // Summed in native (little-endian) order, which the compiler turns into
    // wide vector adds, then byte-swapped once: the ones-complement sum does
    // not depend on byte order except for that final swap (RFC 1071, 2.B).
    let mut acc = 0u64;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        acc += u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    }
    let rest = chunks.remainder();
    let mut tail = [0u8; 4];
    tail[..rest.len()].copy_from_slice(rest);
    acc += u64::from(u32::from_le_bytes(tail));
    sum + u64::from(fold(acc).swap_bytes())
}

/// Folds a sum to 16 bits (not inverted).
pub fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The checksum field value for a sum: its ones complement.
pub fn finish(sum: u64) -> u16 {
    !fold(sum)
}

/// The IPv4 pseudo header of a TCP or UDP checksum.
pub fn pseudo_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, len: u32) -> u64 {
    let sum = add(0, &src.octets());
    let sum = add(sum, &dst.octets());
    sum + u64::from(protocol) + u64::from(len)
}

/// The IPv6 pseudo header of a TCP or UDP checksum.
pub fn pseudo_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, len: u32) -> u64 {
    let sum = add(0, &src.octets());
    let sum = add(sum, &dst.octets());
    sum + u64::from(next_header) + u64::from(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(add(0, &data)), 0xddf2);
        assert_eq!(finish(add(0, &data)), !0xddf2);
    }

    #[test]
    fn odd_lengths_pad_with_zero() {
        assert_eq!(fold(add(0, &[0x12, 0x34, 0x56])), 0x1234 + 0x5600);
        assert_eq!(fold(add(0, &[0xff])), 0xff00);
    }

    #[test]
    fn a_real_ipv4_header() {
        // 45 00 00 73 00 00 40 00 40 11 [b8 61] c0 a8 00 01 c0 a8 00 c7
        let mut hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0, 0, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00,
            0xc7,
        ];
        assert_eq!(finish(add(0, &hdr)), 0xb861);
        hdr[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(fold(add(0, &hdr)), 0xffff, "a correct header sums to all ones");
    }

    #[test]
    fn agrees_with_the_16_bit_definition() {
        let data: Vec<u8> = (0..1001u32).map(|i| (i * 37 % 251) as u8).collect();
        for n in [0, 1, 2, 7, 8, 9, 15, 16, 17, 1000, 1001] {
            let words = data[..n].chunks(2).map(|w| u64::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])));
            let reference: u64 = words.sum();
            assert_eq!(fold(add(0, &data[..n])), fold(reference), "{n} bytes");
        }
    }

    #[test]
    fn large_sums_fold() {
        let data = vec![0xffu8; 65536];
        assert_eq!(fold(add(0, &data)), 0xffff);
    }
}
