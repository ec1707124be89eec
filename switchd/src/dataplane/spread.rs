//! One flow's crypto on more than one core: a large burst (a TSO frame cut
//! into 45 datagrams, a read the kernel coalesced from 64) is sealed or
//! opened in chunks by its worker and whichever threads of the data
//! plane's pool are free to take one: the crypto helpers (`[host]
//! crypto_helpers`) and workers waiting on their own chunks.
//!
//! This is rayon's work stealing. The workers run on the pool's threads,
//! so a worker hands a chunk out without waiting: a chunk that no thread
//! took the worker seals itself, and a batch never waits for a helper to
//! wake up. Order is kept: counters are reserved in sending order before
//! the chunks are sealed, and opened datagrams spend their counters (and
//! go up) in the order they came.

use std::net::IpAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use rayon::prelude::*;
use switchd_crypto::{Aead, SessionRef};
use switchd_overlay::sealed::{self, Prepared, Refused};

/// Datagrams a thread takes at least: fewer cost more to hand over than
/// they take to seal (about 0.5 us each with AES-NI).
pub const CHUNK: usize = 8;

/// Whether this thread can hand out chunks: it is one of a pool's, and
/// the pool has more threads than the workers (`helpers` of them).
pub fn possible(helpers: usize) -> bool {
    helpers > 0 && rayon::current_thread_index().is_some()
}

/// Seals the datagrams of `stride` bytes each (the last may be shorter)
/// in `datagrams`, the `k`-th in session `at` with `aead` and counter
/// `first + k`. With `spread: Some(helped)` and at least two chunks of
/// them, spread over the pool, counting in `helped` those another thread
/// sealed.
pub fn seal(
    datagrams: &mut [u8],
    stride: usize,
    (at, aead, first): (&SessionRef, &Aead, u64),
    spread: Option<&AtomicU64>,
) {
    let seal_one = |(k, d): (usize, &mut [u8])| sealed::seal_with(d, at, aead, first + k as u64);
    let stride = stride.max(1);
    match spread {
        Some(helped) if datagrams.len().div_ceil(stride) >= 2 * CHUNK => {
            let owner = rayon::current_thread_index();
            datagrams.par_chunks_mut(stride).enumerate().with_min_len(CHUNK).for_each(|d| {
                count_help(owner, helped);
                seal_one(d)
            });
        }
        _ => datagrams.chunks_mut(stride).enumerate().for_each(seal_one),
    }
}

/// Counts one datagram in `helped` when this is not the `owner` thread.
fn count_help(owner: Option<usize>, helped: &AtomicU64) {
    if rayon::current_thread_index() != owner {
        helped.fetch_add(1, Relaxed);
    }
}

/// A sealed datagram of a burst and what became of it.
#[derive(Debug)]
pub struct Opening<'d, 's> {
    pub datagram: &'d mut [u8],
    /// Checked against its session, to decrypt; `None`: left for the
    /// sequential path (a session not seen yet, or not sealed at all).
    pub prepared: Option<Result<Prepared<'s>, Refused>>,
}

impl<'s> Opening<'_, 's> {
    /// Prepares `datagram` from `sender` (see [`sealed::prepare`]).
    pub fn prepare(
        datagram: &mut [u8],
        sender: IpAddr,
        sessions: &'s switchd_crypto::RxSessions,
    ) -> Option<Result<Prepared<'s>, Refused>> {
        match sealed::prepare(datagram, sender, sessions) {
            Ok(Some(p)) => Some(Ok(p)),
            Ok(None) => None,
            Err(refused) => Some(Err(refused)),
        }
    }
}

/// The result of decrypting one prepared datagram: where its frame lies
/// and the counter it spends, or why it was refused; `None` if it was
/// not prepared.
pub type Decrypted = Option<Result<(Range<usize>, (SessionRef, u64)), Refused>>;

/// Decrypts the prepared datagrams of `burst` in place, spread over the
/// pool; what became of each, in order, into `out`. Those another thread
/// decrypted are counted in `helped`.
pub fn decrypt(burst: &mut [Opening<'_, '_>], out: &mut Vec<Decrypted>, helped: &AtomicU64) {
    let owner = rayon::current_thread_index();
    let decrypt_one = |o: &mut Opening<'_, '_>| -> Decrypted {
        count_help(owner, helped);
        Some(match o.prepared.as_ref()? {
            Ok(p) => p.decrypt(o.datagram).map(|inner| (inner, p.spend())),
            Err(refused) => Err(*refused),
        })
    };
    burst.par_iter_mut().with_min_len(CHUNK).map(decrypt_one).collect_into_vec(out);
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    use switchd_crypto::{Backend, Cipher, Key, Keyring, SessionId, TxSessions};
    use switchd_wire::sealed::{HEADER_LEN, TAG_LEN};

    use super::*;
    use crate::dataplane::crypto::{CryptoCounters, Identity, KeySet, NetworkKeys, SharedKeys, WorkerCrypto};
    use crate::switch::Opener;

    const SENDER: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
    const STRIDE: usize = HEADER_LEN + 1400 + TAG_LEN;

    fn pool() -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap()
    }

    /// `n` datagrams laid out for sealing, each frame different.
    fn burst(n: usize) -> Vec<u8> {
        let mut out = vec![0u8; n * STRIDE - 600];
        for (i, b) in out.iter_mut().enumerate() {
            *b = (i * 7 + i / STRIDE) as u8;
        }
        out
    }

    /// A burst sealed on several threads is the same, byte for byte, as
    /// sealed one by one, and the helpers took part of it.
    #[test]
    fn sealing_spread_over_the_pool_is_sealing_one_by_one() {
        let key = Key::from_bytes([4; 32]);
        let mut tx = TxSessions::new(Backend::default(), sealed::sender_id(SENDER), SessionId(9), 0..4);
        let session = tx.get((key.id(), &key), 100, Cipher::Aes256Gcm, 1);
        let mut alone = burst(45);
        seal(&mut alone, STRIDE, (&session.at, session.aead, 1000), None);
        let helped = AtomicU64::new(0);
        let pool = pool();
        for round in 0..200 {
            let mut spread = burst(45);
            pool.install(|| seal(&mut spread, STRIDE, (&session.at, session.aead, 1000), Some(&helped)));
            assert!(spread == alone, "round {round}: the same bytes");
            if helped.load(Relaxed) > 0 {
                return;
            }
        }
        panic!("in 200 bursts of 45 datagrams no helper sealed one");
    }

    fn worker_crypto(key: &Key) -> WorkerCrypto {
        let shared = Arc::new(SharedKeys::default());
        let ring = Arc::new(Keyring::new(key.clone()));
        let mut keys = KeySet::default();
        keys.networks.insert(100, NetworkKeys { cipher: Cipher::Aes256Gcm, ring });
        shared.set(keys);
        let identity = Identity { sender: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)), session: SessionId(3) };
        WorkerCrypto::new(0, identity, shared, Arc::new(CryptoCounters::default()), Some(1))
    }

    /// Opening a burst on several threads refuses and accepts exactly
    /// what opening it one by one does, and leaves a new session's first
    /// datagram to the one-by-one path.
    #[test]
    fn a_burst_opened_on_several_threads_is_opened_as_one_by_one() {
        let key = Key::from_bytes([4; 32]);
        let mut tx = TxSessions::new(Backend::default(), sealed::sender_id(SENDER), SessionId(9), 0..4);
        let mut datagrams: Vec<Vec<u8>> = Vec::new();
        let mut session = tx.get((key.id(), &key), 100, Cipher::Aes256Gcm, 0);
        for i in 0..40u8 {
            let mut d = vec![i; STRIDE - i as usize];
            sealed::seal(&mut d, &mut session).unwrap();
            datagrams.push(d);
        }
        datagrams[7][HEADER_LEN + 5] ^= 1; // tampered
        let copy = datagrams[3].clone();
        datagrams.insert(9, copy); // replayed within the burst
        datagrams.push(b"not sealed at all, too short".to_vec());

        let pool = pool();
        let expect = |crypto: &mut WorkerCrypto, ds: &mut [Vec<u8>]| -> Vec<_> {
            ds.iter_mut().map(|d| crypto.open(d, SENDER)).collect()
        };
        // First datagram alone: it opens the session, so the rest is known.
        let (mut one, mut many) = (worker_crypto(&key), worker_crypto(&key));
        let (mut a, mut b) = (datagrams.clone(), datagrams.clone());
        assert!(expect(&mut one, &mut a[..1])[0].is_ok());
        let mut results = Vec::new();
        pool.install(|| many.open_burst(vec![(SENDER, &mut b[0][..])], &mut results));
        assert!(results[0].is_none(), "a new session's first datagram goes one by one");
        assert!(many.open(&mut b[0], SENDER).is_ok());

        let want = expect(&mut one, &mut a[1..]);
        let burst = b[1..].iter_mut().map(|d| (SENDER, &mut d[..])).collect();
        pool.install(|| many.open_burst(burst, &mut results));
        let got: Vec<_> =
            results.iter().cloned().zip(&mut b[1..]).map(|(r, d)| r.unwrap_or_else(|| many.open(d, SENDER))).collect();
        assert_eq!(got, want);
        assert!(got.iter().filter(|r| r.is_err()).count() == 3, "tampered, replayed and malformed: {got:?}");
        for ((x, y), r) in a[1..].iter().zip(&b[1..]).zip(&got) {
            if let Ok(inner) = r {
                assert!(x[inner.clone()] == y[inner.clone()], "the same plaintext");
            }
        }
        assert_eq!(
            many.counters.opened.load(Relaxed),
            one.counters.opened.load(Relaxed),
            "each counted as opened once"
        );
    }
}
