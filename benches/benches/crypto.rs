//! Sealing and opening throughput of each backend and cipher, at the
//! packet sizes that matter: 64 (small frames), 512, 1400 (a full frame on
//! a 1500-byte underlay) and 9000 (jumbo). Reported in bytes per second.
//! ring is the default backend; RustCrypto (pure Rust) is the baseline.
//! `seal_burst`: a TSO frame's 45 sealed datagrams, sealed by one thread
//! and spread over a pool of two (`switchd::dataplane::spread`): what one
//! flow's crypto gains from a second core that is free.

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

fn seal_burst(c: &mut Criterion) {
    use std::sync::atomic::AtomicU64;
    use std::time::Instant;

    use switchd::dataplane::spread;
    use switchd_crypto::{SessionId, TxSessions};
    use switchd_overlay::sealed;

    const DATAGRAMS: usize = 45;
    const STRIDE: usize = 28 + 1400 + 16;
    let key = Key::from_bytes([7; 32]);
    let mut tx = TxSessions::new(Backend::default(), sealed::sender_id([198, 18, 0, 1].into()), SessionId(1), 0..1);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let helped = AtomicU64::new(0);
    for cipher in Cipher::ALL {
        let mut group = c.benchmark_group(format!("seal_burst/{cipher}"));
        group.throughput(Throughput::Bytes((DATAGRAMS * STRIDE) as u64));
        let mut burst = vec![0x5au8; DATAGRAMS * STRIDE];
        let session = tx.get((key.id(), &key), 100, cipher, 0);
        let (at, aead) = (session.at, session.aead);
        for (name, threads) in [("45x1444_one_thread", None), ("45x1444_two_threads", Some(&helped))] {
            group.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    let mut run = || {
                        let start = Instant::now();
                        for i in 0..iters {
                            spread::seal(black_box(&mut burst), STRIDE, (&at, aead, i * DATAGRAMS as u64), threads);
                        }
                        start.elapsed()
                    };
                    // In the pool, as a worker runs: its hand-outs are free to take.
                    if threads.is_some() { pool.install(run) } else { run() }
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, seal, open, seal_burst);
criterion_main!(benches);
