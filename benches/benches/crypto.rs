//! Sealing and opening throughput of each backend and cipher, at the
//! packet sizes that matter: 64 (small frames), 512, 1400 (a full frame on
//! a 1500-byte underlay) and 9000 (jumbo). Reported in bytes per second.
//! ring is the default backend; RustCrypto (pure Rust) is the baseline.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use switchd_crypto::{Aead, Backend, Cipher, Key};

const SIZES: [usize; 4] = [64, 512, 1400, 9000];
/// What the sealed VXLAN header authenticates alongside.
const AAD: [u8; 28] = [0x48; 28];

fn seal(c: &mut Criterion) {
    let key = Key::from_bytes([7; 32]);
    for &backend in Backend::ALL {
        for cipher in Cipher::ALL {
            let aead = Aead::with(backend, cipher, &key);
            let mut group = c.benchmark_group(format!("seal/{}/{cipher}", backend.as_str()));
            for len in SIZES {
                group.throughput(Throughput::Bytes(len as u64));
                let mut buf = vec![0x5au8; len];
                let mut counter = 0u64;
                group.bench_function(format!("{len}"), |b| {
                    b.iter(|| {
                        counter += 1;
                        aead.seal(counter, &AAD, black_box(&mut buf))
                    })
                });
            }
            group.finish();
        }
    }
}

fn open(c: &mut Criterion) {
    let key = Key::from_bytes([7; 32]);
    for &backend in Backend::ALL {
        for cipher in Cipher::ALL {
            let aead = Aead::with(backend, cipher, &key);
            let mut group = c.benchmark_group(format!("open/{}/{cipher}", backend.as_str()));
            for len in SIZES {
                group.throughput(Throughput::Bytes(len as u64));
                let mut sealed = vec![0x5au8; len];
                let tag = aead.seal(1, &AAD, &mut sealed);
                group.bench_function(format!("{len}"), |b| {
                    // Opening decrypts in place: each run gets a fresh copy
                    // (made outside the timing).
                    b.iter_batched_ref(
                        || sealed.clone(),
                        |buf| aead.open(1, &AAD, black_box(buf), &tag).expect("authentic"),
                        BatchSize::SmallInput,
                    )
                });
            }
            group.finish();
        }
    }
}

criterion_group!(benches, seal, open);
criterion_main!(benches);
