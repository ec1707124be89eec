//! Frames at a port, both ways, for `switchctl capture`: a tap on the
//! port's queues (or on the underlay, for a VTEP's datagrams) that the
//! workers copy frames into while a capture runs.
//!
//! Off, a tap costs one relaxed load per batch read and per frame
//! written. On, each frame is copied into a record for each capture of it
//! and offered to that capture's bounded queue; when the reader falls
//! behind the record is dropped and counted, never waited for: a capture
//! never slows the data path.
//!
//! A port's or a VTEP's capture is a classic pcap; a network's is a
//! pcapng, one interface per port, so every frame says where it was seen.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

/// Records a capture holds before it drops and counts.
pub const QUEUE: usize = 4096;
/// The most bytes of a frame kept: libpcap's largest snapshot length, so
/// a 64 KiB TSO frame (or GRO's joined one) is kept whole.
pub const SNAPLEN: usize = 262_144;
/// The most bytes a record adds to the frame it holds.
pub const RECORD_OVERHEAD: usize = 36;

/// pcap's link types: Ethernet frames, or IP packets (the underlay's).
pub const LINKTYPE_ETHERNET: u16 = 1;
pub const LINKTYPE_RAW: u16 = 101;

/// A pcap global header: magic, version 2.4, no zone, no accuracy,
/// snaplen [`SNAPLEN`], `linktype`.
pub fn pcap_header(linktype: u16) -> Vec<u8> {
    let mut h = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    h.extend_from_slice(&(SNAPLEN as u32).to_le_bytes());
    h.extend_from_slice(&u32::from(linktype).to_le_bytes());
    h
}

/// A pcapng section header and one Ethernet interface description per
/// name in `interfaces` (its `if_name`), in order: interface ids 0, 1, ...
pub fn pcapng_header(interfaces: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    // Section header: byte-order magic, version 1.0, section length unknown.
    let mut shb = 0x1a2b_3c4du32.to_le_bytes().to_vec();
    shb.extend_from_slice(&[1, 0, 0, 0]);
    shb.extend_from_slice(&u64::MAX.to_le_bytes());
    block(&mut out, 0x0a0d_0d0a, &shb);
    for name in interfaces {
        let mut idb = Vec::new();
        idb.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        idb.extend_from_slice(&[0, 0]);
        idb.extend_from_slice(&(SNAPLEN as u32).to_le_bytes());
        let name = &name.as_bytes()[..name.len().min(200)];
        idb.extend_from_slice(&2u16.to_le_bytes()); // if_name
        idb.extend_from_slice(&(name.len() as u16).to_le_bytes());
        idb.extend_from_slice(name);
        idb.resize(idb.len().next_multiple_of(4), 0);
        idb.extend_from_slice(&[0, 0, 0, 0]); // opt_endofopt
        block(&mut out, 1, &idb);
    }
    out
}

/// Appends a pcapng block of `kind` around `body` (padded to 4 bytes).
fn block(out: &mut Vec<u8>, kind: u32, body: &[u8]) {
    let len = (12 + body.len().next_multiple_of(4)) as u32;
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(body);
    out.resize(out.len().next_multiple_of(4), 0);
    out.extend_from_slice(&len.to_le_bytes());
}

/// Microseconds since the epoch, the records' clock.
pub fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// The bytes of the frame in `parts`, less its first `skip` (a virtio
/// header), at most [`SNAPLEN`] of them, appended to `out`; its whole length.
fn append_frame(out: &mut Vec<u8>, parts: &[&[u8]], skip: usize) -> (usize, usize) {
    let len = parts.iter().map(|p| p.len()).sum::<usize>().saturating_sub(skip);
    let kept = len.min(SNAPLEN);
    let (mut skip, mut room) = (skip, kept);
    for part in parts {
        let taken = skip.min(part.len());
        skip -= taken;
        let piece = &part[taken..][..(part.len() - taken).min(room)];
        room -= piece.len();
        out.extend_from_slice(piece);
    }
    (kept, len)
}

/// One pcap record (header and data) of the frame in `parts`, less its
/// first `skip` bytes, taken at `t` microseconds.
pub fn pcap_record(parts: &[&[u8]], skip: usize, t: u64) -> Vec<u8> {
    let mut record = Vec::with_capacity(16 + parts.iter().map(|p| p.len()).sum::<usize>().min(SNAPLEN));
    record.extend_from_slice(&((t / 1_000_000) as u32).to_le_bytes());
    record.extend_from_slice(&((t % 1_000_000) as u32).to_le_bytes());
    record.extend_from_slice(&[0; 8]);
    let (kept, len) = append_frame(&mut record, parts, skip);
    record[8..12].copy_from_slice(&(kept as u32).to_le_bytes());
    record[12..16].copy_from_slice(&(len as u32).to_le_bytes());
    record
}

/// One pcapng enhanced packet block of the frame, seen on `interface`.
pub fn pcapng_record(interface: u32, parts: &[&[u8]], skip: usize, t: u64) -> Vec<u8> {
    let mut body = Vec::with_capacity(20 + parts.iter().map(|p| p.len()).sum::<usize>().min(SNAPLEN));
    body.extend_from_slice(&interface.to_le_bytes());
    body.extend_from_slice(&((t >> 32) as u32).to_le_bytes());
    body.extend_from_slice(&(t as u32).to_le_bytes());
    body.extend_from_slice(&[0; 8]);
    let (kept, len) = append_frame(&mut body, parts, skip);
    body[12..16].copy_from_slice(&(kept as u32).to_le_bytes());
    body[16..20].copy_from_slice(&(len as u32).to_le_bytes());
    let mut record = Vec::with_capacity(body.len() + 16);
    block(&mut record, 6, &body);
    record
}

/// The IP and UDP headers of an underlay datagram, in front of its
/// payload in a raw-IP capture: 28 bytes over IPv4, 48 over IPv6.
#[derive(Debug, Clone, Copy)]
pub struct UdpHead {
    bytes: [u8; 48],
    len: usize,
}

impl std::ops::Deref for UdpHead {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The headers of an underlay datagram of `payload` bytes from `src` to
/// `dst`, as the wire had them (the UDP checksum left out); `None` when
/// the two are of different IP versions (no such datagram exists).
pub fn udp_head(src: SocketAddr, dst: SocketAddr, payload: usize) -> Option<UdpHead> {
    let mut h = [0u8; 48];
    let udp_len = (8 + payload).min(usize::from(u16::MAX)) as u16;
    let at = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = (28 + payload).min(usize::from(u16::MAX)) as u16;
            h[0] = 0x45;
            h[2..4].copy_from_slice(&total.to_be_bytes());
            h[6] = 0x40; // don't fragment
            h[8] = 64;
            h[9] = 17;
            h[12..16].copy_from_slice(&s.octets());
            h[16..20].copy_from_slice(&d.octets());
            let sum = h[..20].chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], w[1]]))).sum::<u32>();
            let sum = (sum & 0xffff) + (sum >> 16);
            let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
            h[10..12].copy_from_slice(&sum.to_be_bytes());
            20
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            h[0] = 0x60;
            h[4..6].copy_from_slice(&udp_len.to_be_bytes());
            h[6] = 17;
            h[7] = 64;
            h[8..24].copy_from_slice(&s.octets());
            h[24..40].copy_from_slice(&d.octets());
            40
        }
        _ => return None,
    };
    h[at..at + 2].copy_from_slice(&src.port().to_be_bytes());
    h[at + 2..at + 4].copy_from_slice(&dst.port().to_be_bytes());
    h[at + 4..at + 6].copy_from_slice(&udp_len.to_be_bytes());
    Some(UdpHead { bytes: h, len: at + 8 })
}

/// What a capture kept, and dropped for want of room.
#[derive(Debug, Default)]
pub struct Counts {
    kept: AtomicU64,
    lost: AtomicU64,
}

impl Counts {
    pub fn get(&self) -> (u64, u64) {
        (self.kept.load(Relaxed), self.lost.load(Relaxed))
    }
}

/// How a capture writes its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Pcap,
    /// pcapng, seen on this interface.
    Pcapng(u32),
}

#[derive(Debug)]
struct Sink {
    capture: u64,
    format: Format,
    records: mpsc::Sender<Vec<u8>>,
    counts: Arc<Counts>,
}

/// A port's (or a VTEP's) tap: the captures that copy its frames.
#[derive(Debug, Default)]
pub struct Tap {
    on: AtomicBool,
    sinks: Mutex<Vec<Sink>>,
}

impl Tap {
    /// Whether a capture runs: checked before any copy.
    #[inline]
    pub fn on(&self) -> bool {
        self.on.load(Relaxed)
    }

    /// Offers the frame in `parts` (less `skip` bytes) to every capture.
    pub fn record(&self, parts: &[&[u8]], skip: usize) {
        let t = now_us();
        for sink in self.sinks.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let record = match sink.format {
                Format::Pcap => pcap_record(parts, skip, t),
                Format::Pcapng(interface) => pcapng_record(interface, parts, skip, t),
            };
            match sink.records.try_send(record) {
                Ok(()) => sink.counts.kept.fetch_add(1, Relaxed),
                Err(_) => sink.counts.lost.fetch_add(1, Relaxed),
            };
        }
    }

    /// Adds capture `capture`'s sink.
    fn add(&self, capture: u64, format: Format, records: mpsc::Sender<Vec<u8>>, counts: Arc<Counts>) {
        self.sinks.lock().unwrap_or_else(|p| p.into_inner()).push(Sink { capture, format, records, counts });
        self.on.store(true, Relaxed);
    }

    /// Removes capture `capture`'s sink.
    fn remove(&self, capture: u64) {
        let mut sinks = self.sinks.lock().unwrap_or_else(|p| p.into_inner());
        sinks.retain(|s| s.capture != capture);
        self.on.store(!sinks.is_empty(), Relaxed);
    }
}

/// A capture of a VTEP's datagrams: its address, whether it shows sealed
/// datagrams opened, and its tap.
#[derive(Debug, Clone)]
pub struct VtepTap {
    pub ip: IpAddr,
    pub decrypt: bool,
    pub tap: Arc<Tap>,
    capture: u64,
}

/// The underlay's captures, by VTEP.
#[derive(Debug, Default)]
pub struct UnderlayTaps {
    on: AtomicBool,
    taps: Mutex<Arc<[VtepTap]>>,
}

impl UnderlayTaps {
    /// The captures running, once per batch; `None` (the usual case)
    /// costs one relaxed load.
    #[inline]
    pub fn running(&self) -> Option<Arc<[VtepTap]>> {
        match self.on.load(Relaxed) {
            false => None,
            true => Some(self.taps.lock().unwrap_or_else(|p| p.into_inner()).clone()),
        }
    }

    fn change(&self, change: impl FnOnce(&mut Vec<VtepTap>)) {
        let mut taps = self.taps.lock().unwrap_or_else(|p| p.into_inner());
        let mut list = taps.to_vec();
        change(&mut list);
        self.on.store(!list.is_empty(), Relaxed);
        *taps = list.into();
    }
}

/// The taps of the VTEP at `ip` in `taps`.
pub fn of_vtep(taps: &[VtepTap], ip: IpAddr) -> impl Iterator<Item = &VtepTap> {
    taps.iter().filter(move |t| t.ip == ip)
}

/// The captures running, and how many may.
#[derive(Debug)]
pub struct Captures {
    running: Mutex<usize>,
    next_id: AtomicU64,
    pub underlay: Arc<UnderlayTaps>,
}

/// Captures that may run at once (each copies every frame it sees).
pub const MAX_CAPTURES: usize = 8;

impl Default for Captures {
    fn default() -> Self {
        Captures { running: Mutex::new(0), next_id: AtomicU64::new(0), underlay: Arc::default() }
    }
}

/// What a capture taps.
#[derive(Debug)]
pub enum Source {
    /// One port's tap: a pcap.
    Port(Arc<Tap>),
    /// A network's ports' taps, each under its name: a pcapng.
    Network(Vec<(Arc<Tap>, String)>),
    /// A VTEP's datagrams both ways; opened ones with `decrypt`.
    Vtep { ip: IpAddr, decrypt: bool },
}

impl Captures {
    /// Starts a capture of `source`; `None` if [`MAX_CAPTURES`] run.
    pub fn start(self: &Arc<Self>, source: Source) -> Option<Capture> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if *running >= MAX_CAPTURES {
            return None;
        }
        *running += 1;
        let id = self.next_id.fetch_add(1, Relaxed);
        let (tx, records) = mpsc::channel(QUEUE);
        let counts = Arc::new(Counts::default());
        let (header, taps) = match source {
            Source::Port(tap) => {
                tap.add(id, Format::Pcap, tx, counts.clone());
                (pcap_header(LINKTYPE_ETHERNET), vec![tap])
            }
            Source::Network(ports) => {
                let names: Vec<String> = ports.iter().map(|(_, name)| name.clone()).collect();
                for (i, (tap, _)) in ports.iter().enumerate() {
                    tap.add(id, Format::Pcapng(i as u32), tx.clone(), counts.clone());
                }
                (pcapng_header(&names), ports.into_iter().map(|(tap, _)| tap).collect())
            }
            Source::Vtep { ip, decrypt } => {
                let tap = Arc::new(Tap::default());
                tap.add(id, Format::Pcap, tx, counts.clone());
                self.underlay.change(|list| list.push(VtepTap { ip, decrypt, tap: tap.clone(), capture: id }));
                (pcap_header(LINKTYPE_RAW), vec![tap])
            }
        };
        Some(Capture { captures: self.clone(), id, taps, header, records, counts })
    }
}

/// A running capture; it ends when dropped.
#[derive(Debug)]
pub struct Capture {
    captures: Arc<Captures>,
    id: u64,
    taps: Vec<Arc<Tap>>,
    /// The file's header: what a reader needs before the records.
    pub header: Vec<u8>,
    /// Records (each ready to append to the file), in the order the
    /// workers took them.
    pub records: mpsc::Receiver<Vec<u8>>,
    counts: Arc<Counts>,
}

impl Capture {
    /// Records kept, and lost for want of room, so far.
    pub fn counts(&self) -> (u64, u64) {
        self.counts.get()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        for tap in &self.taps {
            tap.remove(self.id);
        }
        self.captures.underlay.change(|list| list.retain(|t| t.capture != self.id));
        *self.captures.running.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_the_frame_without_its_virtio_header_cut_at_the_snaplen() {
        let r = pcap_record(&[&[9; 10], b"abc", b"def"], 10, 3_000_002);
        assert_eq!(&r[..16], &[3, 0, 0, 0, 2, 0, 0, 0, 6, 0, 0, 0, 6, 0, 0, 0]);
        assert_eq!(&r[16..], b"abcdef");
        let big = vec![1u8; SNAPLEN + 100];
        let r = pcap_record(&[&big], 0, 0);
        assert_eq!(r.len(), 16 + SNAPLEN);
        assert_eq!(u32::from_le_bytes(r[12..16].try_into().unwrap()) as usize, SNAPLEN + 100, "the original length");
    }

    #[test]
    fn pcapng_blocks_are_padded_and_say_their_length_at_both_ends() {
        let h = pcapng_header(&["a:eth0".into(), "b:eth0".into()]);
        assert_eq!(&h[..4], &[0x0a, 0x0d, 0x0d, 0x0a]);
        let shb = u32::from_le_bytes(h[4..8].try_into().unwrap()) as usize;
        assert_eq!(shb, 28);
        let idb = &h[shb..];
        assert_eq!(u32::from_le_bytes(idb[..4].try_into().unwrap()), 1);
        let idb_len = u32::from_le_bytes(idb[4..8].try_into().unwrap()) as usize;
        assert_eq!(&idb[idb_len - 4..idb_len], &(idb_len as u32).to_le_bytes());
        assert_eq!(h.len(), shb + 2 * idb_len, "two interfaces alike");
        let r = pcapng_record(1, &[b"hello"], 0, 5_000_000_123);
        assert_eq!(r.len(), 12 + 20 + 8, "five bytes padded to eight");
        assert_eq!(u32::from_le_bytes(r[8..12].try_into().unwrap()), 1, "the interface");
        assert_eq!(&r[28..33], b"hello");
        assert_eq!(&r[r.len() - 4..], &(r.len() as u32).to_le_bytes());
    }

    #[test]
    fn an_underlay_head_has_a_valid_ipv4_checksum() {
        let h = udp_head("198.18.0.1:4789".parse().unwrap(), "198.18.0.2:4789".parse().unwrap(), 100).unwrap();
        let sum = h[..20].chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], w[1]]))).sum::<u32>();
        assert_eq!((sum & 0xffff) + (sum >> 16), 0xffff, "the header sums to all ones");
        assert_eq!(u16::from_be_bytes([h[2], h[3]]), 128);
        assert_eq!(h.len(), 28);
        let h6 = udp_head("[fd00::1]:4789".parse().unwrap(), "[fd00::2]:4790".parse().unwrap(), 100).unwrap();
        assert_eq!(h6.len(), 48);
        let ip = etherparse::Ipv6HeaderSlice::from_slice(&h6).unwrap();
        assert_eq!(
            (ip.payload_length(), ip.next_header().0, ip.destination_addr()),
            (108, 17, "fd00::2".parse().unwrap())
        );
        assert_eq!(&h6[40..44], &[0x12, 0xb5, 0x12, 0xb6], "the ports");
        assert!(udp_head("198.18.0.1:1".parse().unwrap(), "[::1]:2".parse().unwrap(), 1).is_none(), "mixed");
    }

    #[test]
    fn a_full_queue_loses_records_and_counts_them_and_captures_are_bounded() {
        let captures = Arc::new(Captures::default());
        let tap = Arc::new(Tap::default());
        tap.record(&[b"off"], 0);
        assert!(!tap.on());
        let mut c = captures.start(Source::Port(tap.clone())).expect("the first capture");
        assert_eq!(c.header, pcap_header(LINKTYPE_ETHERNET));
        let second = captures.start(Source::Network(vec![(tap.clone(), "p".into())])).expect("two of one port");
        for _ in 0..QUEUE + 10 {
            tap.record(&[b"frame"], 0);
        }
        assert_eq!(c.counts(), (QUEUE as u64, 10));
        assert_eq!(&c.records.try_recv().unwrap()[16..], b"frame");
        drop(second);
        assert!(tap.on(), "still captured by the first");
        let more: Vec<_> = (0..MAX_CAPTURES)
            .map(|_| captures.start(Source::Vtep { ip: [1, 1, 1, 1].into(), decrypt: false }))
            .collect();
        assert_eq!(more.iter().filter(|m| m.is_none()).count(), 1, "at most {MAX_CAPTURES} at once");
        assert_eq!(captures.underlay.running().map(|t| t.len()), Some(MAX_CAPTURES - 1));
        drop((c, more));
        assert!(!tap.on());
        assert!(captures.underlay.running().is_none(), "the underlay is no longer tapped");
    }
}
