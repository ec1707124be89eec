//! Sealed VXLAN: how an encrypted network's frames travel between switchd
//! hosts: sealing and opening in place. The header's layout is
//! `switchd_wire::sealed`'s (the diagram is there); this is what its
//! fields mean and how they are used:
//!
//! - **flags** `0x48`: I and S. **cipher**: 1 ChaCha20-Poly1305, 2
//!   AES-256-GCM (the sender's choice; a receiver opens either).
//! - **VNI authenticated**: the whole header is the AAD, so a packet moved
//!   to another VNI (or any header bit changed) fails its tag. The VNI also
//!   enters the key itself (see below).
//! - **key id**: the root key (cluster or network key) the session key
//!   derives from. A host accepts every key of its ring and seals with one,
//!   so keys rotate without loss ([`switchd_crypto::keyring`]).
//! - **session, lane, counter**: the session key is derived per sender
//!   VTEP address, per boot (session) and per lane (one per worker and send
//!   socket), see [`switchd_crypto::session`]; each lane counts its nonces
//!   from zero and never reuses one. The receiver keeps a replay window
//!   per session key and refuses earlier boots of a sender.
//!
//! Overhead: 36 bytes beyond plain VXLAN (20 of header, 16 of tag), taken
//! off the network's default MTU so no frame needs fragmenting.

use std::net::IpAddr;
use std::ops::Range;

use switchd_crypto::session::TxSession;
use switchd_crypto::{Aead, Cipher, Key, KeyId, OpenError, RxSessions, SessionId, SessionRef};
use switchd_wire::sealed::{self as wire, HEADER_LEN, TAG_LEN};

/// Why a sealed packet's header is refused (before any cryptography).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// Shorter than header and tag.
    Truncated,
    /// Not flags I+S, an unknown cipher, or a reserved byte set.
    Malformed,
}

/// Why a sealed packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Header(HeaderError),
    Open(OpenError),
    /// Sealed on a lane whose sessions another receiver holds (the host
    /// spreads lanes over its workers): it came in on the wrong socket.
    OtherLane,
}

/// A sealed packet's header, in the crypto crate's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub cipher: Cipher,
    pub lane: u16,
    pub vni: u32,
    pub key: KeyId,
    pub session: SessionId,
    pub counter: u64,
}

impl Header {
    /// Checks and reads the header of `datagram` (a whole sealed packet).
    pub fn parse(datagram: &[u8]) -> Result<Header, HeaderError> {
        if datagram.len() < HEADER_LEN + TAG_LEN {
            return Err(HeaderError::Truncated);
        }
        let h = wire::Header::parse(datagram).map_err(|_| HeaderError::Malformed)?;
        let cipher = Cipher::from_wire_id(h.cipher.into()).ok_or(HeaderError::Malformed)?;
        Ok(Header {
            cipher,
            lane: h.lane,
            vni: h.vni,
            key: KeyId(h.key_id),
            session: SessionId(h.session),
            counter: h.counter,
        })
    }

    /// Writes the header into the first [`HEADER_LEN`] bytes of `buf`.
    pub fn emit(&self, buf: &mut [u8]) {
        wire::Header {
            cipher: self.cipher.wire_id().into(),
            lane: self.lane,
            vni: self.vni,
            key_id: self.key.0,
            session: self.session.0,
            counter: self.counter,
        }
        .emit(buf);
    }
}

/// A VTEP address as session keys name it (IPv4 mapped into IPv6).
pub fn sender_id(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// Seals one datagram in place. `datagram` is laid out as [`HEADER_LEN`]
/// bytes of room, the inner frame, then [`TAG_LEN`] bytes of room; the
/// header and tag are written there. `None` if the session's lane has
/// used every nonce (then nothing may be sent).
pub fn seal(datagram: &mut [u8], session: &mut TxSession<'_>) -> Option<()> {
    let counter = session.next_counter()?;
    seal_with(datagram, &session.at, session.aead, counter);
    Some(())
}

/// [`seal`] with a counter reserved beforehand ([`TxSession::reserve`]),
/// so a burst's datagrams can be sealed on several threads.
pub fn seal_with(datagram: &mut [u8], at: &SessionRef, aead: &Aead, counter: u64) {
    let header = Header { cipher: at.cipher, lane: at.lane, vni: at.vni, key: at.key, session: at.session, counter };
    header.emit(datagram);
    let (aad, frame, tag) = parts(datagram);
    tag.copy_from_slice(&aead.seal(counter, aad, frame));
}

/// A sealed datagram's header, its frame and its tag.
fn parts(datagram: &mut [u8]) -> (&[u8], &mut [u8], &mut [u8]) {
    let (aad, rest) = datagram.split_at_mut(HEADER_LEN);
    let split = rest.len() - TAG_LEN;
    let (frame, tag) = rest.split_at_mut(split);
    (aad, frame, tag)
}

/// Where the inner frame of a sealed datagram of `len` bytes lies.
fn inner(len: usize) -> Range<usize> {
    HEADER_LEN..len - TAG_LEN
}

/// The session a sealed datagram from `sender` names, and its counter.
fn session_of(datagram: &[u8], sender: IpAddr) -> Result<(SessionRef, u64), Refused> {
    let h = Header::parse(datagram).map_err(Refused::Header)?;
    let at = SessionRef {
        sender: sender_id(sender),
        vni: h.vni,
        cipher: h.cipher,
        key: h.key,
        session: h.session,
        lane: h.lane,
    };
    Ok((at, h.counter))
}

/// Opens one sealed datagram from `sender` in place and returns where its
/// inner frame lies. `keys` finds a root key by VNI and key id (asked only
/// for a session not seen before). Nothing is remembered of a packet that
/// fails.
pub fn open<'k>(
    datagram: &mut [u8],
    sender: IpAddr,
    sessions: &mut RxSessions,
    keys: impl FnOnce(u32, KeyId) -> Option<&'k Key>,
) -> Result<Range<usize>, Refused> {
    let (at, counter) = session_of(datagram, sender)?;
    let len = datagram.len();
    let (aad, frame, tag) = parts(datagram);
    let tag: &[u8; TAG_LEN] = (&*tag).try_into().expect("TAG_LEN bytes");
    sessions.open(&at, |id| keys(at.vni, id), counter, aad, frame, tag).map_err(Refused::Open)?;
    Ok(inner(len))
}

/// A sealed datagram of a known session whose counter is fresh, to be
/// decrypted on any thread ([`Prepared::decrypt`]) and then accepted in
/// order ([`Prepared::accept`]): [`open`] in three steps, for a burst
/// opened on several threads.
#[derive(Debug, Clone, Copy)]
pub struct Prepared<'s> {
    at: SessionRef,
    counter: u64,
    aead: &'s Aead,
}

/// [`open`]'s checks before decryption, changing nothing: `Ok(None)` for
/// a session not seen before (then [`open`] it).
pub fn prepare<'s>(datagram: &[u8], sender: IpAddr, sessions: &'s RxSessions) -> Result<Option<Prepared<'s>>, Refused> {
    let (at, counter) = session_of(datagram, sender)?;
    let aead = sessions.prepare(&at, counter).map_err(Refused::Open)?;
    Ok(aead.map(|aead| Prepared { at, counter, aead }))
}

impl Prepared<'_> {
    /// Checks the tag and decrypts `datagram` (the one prepared) in place;
    /// where its inner frame lies. Nothing is spent yet.
    pub fn decrypt(&self, datagram: &mut [u8]) -> Result<Range<usize>, Refused> {
        let len = datagram.len();
        let (aad, frame, tag) = parts(datagram);
        let tag: &[u8; TAG_LEN] = (&*tag).try_into().expect("TAG_LEN bytes");
        self.aead.open(self.counter, aad, frame, tag).map_err(|_| Refused::Open(OpenError::AuthFailed))?;
        Ok(inner(len))
    }

    /// What is needed to spend the counter after a successful decrypt.
    pub fn spend(&self) -> (SessionRef, u64) {
        (self.at, self.counter)
    }
}

/// Spends the counter of a datagram [`Prepared::decrypt`] opened: refused
/// if a copy of it was accepted first.
pub fn accept(sessions: &mut RxSessions, (at, counter): (SessionRef, u64)) -> Result<(), Refused> {
    sessions.accept(&at, counter).map_err(Refused::Open)
}

#[cfg(test)]
mod tests {
    use switchd_crypto::{Backend, TxSessions};

    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 0, 1));

    fn key() -> Key {
        Key::from_bytes([9; 32])
    }

    fn sealed(tx: &mut TxSessions, frame: &[u8]) -> Vec<u8> {
        let key = key();
        let mut d = vec![0u8; HEADER_LEN];
        d.extend_from_slice(frame);
        d.extend_from_slice(&[0; TAG_LEN]);
        let mut s = tx.get((key.id(), &key), 100, Cipher::ChaCha20Poly1305, 2);
        seal(&mut d, &mut s).unwrap();
        d
    }

    /// A fixed packet, byte for byte, so the format cannot drift unnoticed:
    /// key 09.., sender 198.18.0.1, session 0x0123456789abcdef, lane 2,
    /// counter 0, VNI 100, frame "switchd".
    #[test]
    fn fixture_bytes() {
        let mut tx = TxSessions::new(Backend::default(), sender_id(A), SessionId(0x0123_4567_89ab_cdef), 0..16);
        let d = sealed(&mut tx, b"switchd");
        let id = key().id();
        let mut header = vec![0x48, 0x01, 0x00, 0x02, 0x00, 0x00, 0x64, 0x00];
        header.extend_from_slice(&id.0);
        header.extend_from_slice(&[0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&d[..HEADER_LEN], &header[..]);
        assert_eq!(d.len(), HEADER_LEN + 7 + TAG_LEN);
        assert_eq!(TAG_LEN, switchd_crypto::TAG_LEN, "the wire's tag is the AEAD's");
        assert_eq!(
            hex::encode(&d[HEADER_LEN..]),
            "3898f4cc704436c1484e9dc986241ddc82d93e37439c51",
            "ciphertext and tag, computed independently with Python (hmac/hashlib HKDF, `cryptography`'s ChaCha20Poly1305)"
        );
        let mut rx = RxSessions::new(Backend::default(), 16);
        let mut copy = d.clone();
        let k = key();
        let range = open(&mut copy, A, &mut rx, |_, _| Some(&k)).unwrap();
        assert_eq!(&copy[range], b"switchd");
    }

    #[test]
    fn every_bad_packet_is_refused_by_reason() {
        let k = key();
        let mut tx = TxSessions::new(Backend::default(), sender_id(A), SessionId(5), 0..16);
        let good = sealed(&mut tx, b"an ethernet frame");
        let mut rx = RxSessions::new(Backend::default(), 16);
        let mut try_open = |mut d: Vec<u8>, from: IpAddr| {
            let result = open(&mut d, from, &mut rx, |_, id| (id == k.id()).then_some(&k));
            (result, rx.len())
        };

        assert_eq!(
            try_open(good[..HEADER_LEN + TAG_LEN - 1].to_vec(), A).0,
            Err(Refused::Header(HeaderError::Truncated))
        );
        for (byte, value) in [(0, 0x08), (1, 9), (7, 1)] {
            let mut bad = good.clone();
            bad[byte] = value;
            assert_eq!(try_open(bad, A).0, Err(Refused::Header(HeaderError::Malformed)), "byte {byte}");
        }
        let mut other_vni = good.clone();
        other_vni[6] = 101;
        assert_eq!(try_open(other_vni, A).0, Err(Refused::Open(OpenError::AuthFailed)));
        let mut tampered = good.clone();
        tampered[HEADER_LEN + 3] ^= 0x20;
        assert_eq!(try_open(tampered, A).0, Err(Refused::Open(OpenError::AuthFailed)));
        let mut forged_session = good.clone();
        forged_session[12] ^= 0x80;
        assert_eq!(try_open(forged_session, A).0, Err(Refused::Open(OpenError::AuthFailed)));
        let mut wrong_key = good.clone();
        wrong_key[8] ^= 1;
        assert_eq!(try_open(wrong_key, A).0, Err(Refused::Open(OpenError::UnknownKey)));
        let other_host = IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 0, 2));
        assert_eq!(try_open(good.clone(), other_host).0, Err(Refused::Open(OpenError::AuthFailed)), "spoofed sender");
        assert_eq!(try_open(good.clone(), other_host).1, 0, "no failure left state behind");

        let len = good.len();
        assert_eq!(try_open(good.clone(), A), (Ok(HEADER_LEN..len - TAG_LEN), 1));
        assert_eq!(try_open(good, A).0, Err(Refused::Open(OpenError::Replayed)));
    }

    /// A burst sealed with reserved counters, out of order, opens like one
    /// sealed packet by packet; opened in three steps (prepare, decrypt,
    /// accept) each packet is accepted once and a tampered one refused.
    #[test]
    fn reserved_sealing_and_prepared_opening() {
        let k = key();
        let mut tx = TxSessions::new(Backend::default(), sender_id(A), SessionId(5), 0..16);
        let mut rx = RxSessions::new(Backend::default(), 16);
        let mut first = sealed(&mut tx, b"opens the session");
        open(&mut first, A, &mut rx, |_, _| Some(&k)).unwrap();

        let frames: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 100 + i as usize]).collect();
        let mut burst: Vec<Vec<u8>> =
            frames.iter().map(|f| [&[0; HEADER_LEN][..], f, &[0; TAG_LEN]].concat()).collect();
        let mut s = tx.get((k.id(), &k), 100, Cipher::ChaCha20Poly1305, 2);
        let base = s.reserve(4).unwrap();
        let at = s.at;
        for i in [3, 1, 0, 2] {
            seal_with(&mut burst[i], &at, s.aead, base + i as u64);
        }
        assert_eq!(s.next_counter(), Some(base + 4));
        burst[2][HEADER_LEN] ^= 1;
        let copy = burst[1].clone();
        burst.push(copy);

        let prepared: Vec<_> = burst.iter().map(|d| prepare(d, A, &rx).unwrap().expect("a known session")).collect();
        let opened: Vec<_> = prepared.iter().zip(burst.iter_mut()).map(|(p, d)| (p.decrypt(d), p.spend())).collect();
        let results: Vec<_> =
            opened.into_iter().map(|(r, spend)| r.and_then(|r| accept(&mut rx, spend).map(|()| r))).collect();
        for i in [0, 1, 3] {
            assert_eq!(&burst[i][results[i].clone().unwrap()], &frames[i][..]);
        }
        assert_eq!(results[2], Err(Refused::Open(OpenError::AuthFailed)));
        assert_eq!(results[4], Err(Refused::Open(OpenError::Replayed)), "the copy");
        assert_eq!(prepare(&burst[0], A, &rx).err(), Some(Refused::Open(OpenError::Replayed)));
    }
}
