//! Arbitrary bytes as sealed gossip datagrams, mixed with genuine ones (and
//! mutations of them). Opening must never panic, never accept what was not
//! sealed under the key, and never deliver a message twice.
//!
//! Input: records `[kind: u8][len: u8][bytes]`; kind 0 seals `bytes` and
//! opens the result, kind 1 opens `bytes` raw, kind 2 replays the last
//! genuine datagram with byte `len` flipped.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchd_crypto::Key;
use switchd_overlay::gossip::wire::{Opener, Sealer};

const NOW: u64 = 1_800_000_000;

/// Each run gets its own key: a datagram genuinely sealed in an earlier run
/// (which the fuzzer may have seen and kept) must not count as genuine here.
static RUN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fuzz_target!(|data: &[u8]| fuzz_one(data));

// A function rather than the macro's closure, so that coverage reports
// (`cargo fuzz coverage`) show its lines.
fn fuzz_one(data: &[u8]) {
    let run = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut k = [9u8; 32];
    k[..8].copy_from_slice(&run.to_be_bytes());
    let key = Key::from_bytes(k);
    let mut sealer = Sealer::new(&key, 77);
    let mut opener = Opener::new(&key);
    let mut last: Vec<u8> = Vec::new();
    let mut delivered = std::collections::HashSet::new();
    let mut rest = data;
    while rest.len() >= 2 {
        let (kind, len) = (rest[0] % 3, usize::from(rest[1]));
        let bytes = &rest[2..(2 + len).min(rest.len())];
        rest = &rest[(2 + len).min(rest.len())..];
        match kind {
            0 => {
                let mut sealed = Vec::new();
                sealer.seal(bytes, NOW, |d| sealed.push(d.to_vec()));
                for d in sealed {
                    let message = opener.open(&d, NOW).expect("a genuine datagram opens");
                    assert_eq!(message.as_deref(), Some(bytes));
                    assert!(delivered.insert(d.clone()));
                    last = d;
                }
            }
            1 => assert!(opener.open(bytes, NOW).ok().flatten().is_none(), "forged bytes were accepted"),
            _ if !last.is_empty() => {
                let mut d = last.clone();
                let i = len % d.len();
                d[i] ^= 1 << (len % 8);
                assert!(opener.open(&d, NOW).ok().flatten().is_none(), "a replayed or altered datagram was accepted");
                assert!(opener.open(&last, NOW).is_err(), "a replay was accepted");
            }
            _ => {}
        }
    }
}
