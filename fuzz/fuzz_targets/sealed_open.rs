//! The open path of encrypted networks: arbitrary bytes as sealed VXLAN
//! datagrams from a known VTEP, mixed with genuine ones (from two boots of
//! the sender, on several lanes and networks) and mutations of them.
//! Opening must never panic, never accept anything not sealed under the
//! key, never accept a packet twice or from an earlier boot once a later
//! one spoke, and never keep state for a packet that failed.
//!
//! Input: records `[kind: u8][arg: u8][len: u8][bytes]`:
//! - kind 0: seal `bytes` as a frame (lane and VNI from `arg`; boot 2
//!   when `arg` is odd) and open it: it must open once, then never again;
//! - kind 1: open `bytes` raw: never accepted;
//! - kind 2: replay the last genuine datagram with bit `arg` flipped
//!   (must fail), then unchanged (must fail: a replay).

#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use switchd_crypto::{Backend, Cipher, Key, RxSessions, SessionId, TAG_LEN, TxSessions};
use switchd_overlay::sealed;
use switchd_wire::sealed::HEADER_LEN;

/// Each run gets its own key, so no datagram a previous run sealed (and
/// the fuzzer kept) is genuine here.
static RUN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fuzz_target!(|data: &[u8]| fuzz_one(data));

// A function rather than the macro's closure, so that coverage reports
// (`cargo fuzz coverage`) show its lines.
fn fuzz_one(data: &[u8]) {
    let run = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut k = [5u8; 32];
    k[..8].copy_from_slice(&run.to_be_bytes());
    let key = Key::from_bytes(k);
    let sender: IpAddr = "198.18.0.1".parse().unwrap();
    let id = sealed::sender_id(sender);
    let mut boots = [
        TxSessions::new(Backend::default(), id, SessionId(1 << 16), 0..4),
        TxSessions::new(Backend::default(), id, SessionId(2 << 16), 0..4),
    ];
    let mut rx = RxSessions::new(Backend::default(), 64);
    let mut second_boot_spoke = false;
    let mut last: Vec<u8> = Vec::new();
    let mut rest = data;
    while rest.len() >= 3 {
        let (kind, arg, len) = (rest[0] % 3, rest[1], usize::from(rest[2]));
        let bytes = &rest[3..(3 + len).min(rest.len())];
        rest = &rest[(3 + len).min(rest.len())..];
        let open = |d: &mut [u8], rx: &mut RxSessions| {
            let before = rx.len();
            let result = sealed::open(d, sender, rx, |vni, id| (vni < 4 && id == key.id()).then_some(&key));
            if let Ok(frame) = &result {
                assert!(frame.start == HEADER_LEN && frame.end + TAG_LEN == d.len());
            } else {
                assert!(rx.len() <= before, "a failed packet left state behind");
            }
            result
        };
        match kind {
            0 => {
                let boot = usize::from(arg & 1);
                let mut d = vec![0u8; HEADER_LEN];
                d.extend_from_slice(bytes);
                d.extend_from_slice(&[0; TAG_LEN]);
                let cipher = if arg & 2 == 0 { Cipher::ChaCha20Poly1305 } else { Cipher::Aes256Gcm };
                let mut session =
                    boots[boot].get((key.id(), &key), u32::from(arg >> 4) % 4, cipher, usize::from(arg >> 2));
                sealed::seal(&mut d, &mut session).expect("nonces left");
                let mut opened = d.clone();
                let result = open(&mut opened, &mut rx);
                if boot == 0 && second_boot_spoke {
                    assert!(result.is_err(), "an earlier boot's packet was accepted after a later boot spoke");
                } else {
                    let frame = result.expect("a genuine packet opens");
                    assert_eq!(&opened[frame], bytes, "opened into what was sealed");
                    second_boot_spoke |= boot == 1;
                }
                assert!(open(&mut d.clone(), &mut rx).is_err(), "accepted twice");
                last = d;
            }
            1 => assert!(open(&mut bytes.to_vec(), &mut rx).is_err(), "forged bytes were accepted"),
            _ if !last.is_empty() => {
                let mut d = last.clone();
                let bit = usize::from(arg) % (d.len() * 8);
                d[bit / 8] ^= 1 << (bit % 8);
                assert!(open(&mut d, &mut rx).is_err(), "an altered packet was accepted");
                assert!(open(&mut last.clone(), &mut rx).is_err(), "a replay was accepted");
            }
            _ => {}
        }
    }
}
