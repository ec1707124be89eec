//! Frames at a port, both ways, for `switchctl capture`: a tap on the
//! port's queues that the workers copy frames into while a capture runs.
//!
//! Off, a tap costs one relaxed load per batch read and per frame
//! written. On, each frame is copied into a pcap record and offered to a
//! bounded queue; when the reader falls behind the record is dropped and
//! counted, never waited for: a capture never slows the data path.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use tokio::sync::mpsc;

/// Records a capture holds before it drops and counts.
pub const QUEUE: usize = 4096;
/// The most bytes of a frame kept: libpcap's largest snapshot length, so
/// a 64 KiB TSO frame (or GRO's joined one) is kept whole.
pub const SNAPLEN: usize = 262_144;

/// The pcap global header: magic, version 2.4, no zone, no accuracy,
/// snaplen [`SNAPLEN`], LINKTYPE_ETHERNET.
pub const PCAP_HEADER: [u8; 24] =
    [0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x00, 0x04, 0x00, 1, 0, 0, 0];

/// Microseconds since the epoch, the pcap records' clock.
pub fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// One pcap record (header and data) of the frame in `parts`, less its
/// first `skip` bytes (a virtio header), taken at `t` microseconds.
pub fn pcap_record(parts: &[&[u8]], skip: usize, t: u64) -> Vec<u8> {
    let len = parts.iter().map(|p| p.len()).sum::<usize>().saturating_sub(skip);
    let kept = len.min(SNAPLEN);
    let mut record = Vec::with_capacity(16 + kept);
    record.extend_from_slice(&((t / 1_000_000) as u32).to_le_bytes());
    record.extend_from_slice(&((t % 1_000_000) as u32).to_le_bytes());
    record.extend_from_slice(&(kept as u32).to_le_bytes());
    record.extend_from_slice(&(len as u32).to_le_bytes());
    let mut skip = skip;
    for part in parts {
        let taken = skip.min(part.len());
        skip -= taken;
        let room = 16 + kept - record.len();
        record.extend_from_slice(&part[taken..][..(part.len() - taken).min(room)]);
    }
    record
}

/// A port's tap.
#[derive(Debug, Default)]
pub struct Tap {
    on: AtomicBool,
    sink: Mutex<Option<mpsc::Sender<Vec<u8>>>>,
    /// Records of the running capture: kept, and dropped for want of room.
    kept: AtomicU64,
    lost: AtomicU64,
}

impl Tap {
    /// Whether a capture runs: checked before any copy.
    #[inline]
    pub fn on(&self) -> bool {
        self.on.load(Relaxed)
    }

    /// Offers the frame in `parts` (less `skip` bytes) to the capture.
    pub fn record(&self, parts: &[&[u8]], skip: usize) {
        let sink = self.sink.lock().unwrap_or_else(|p| p.into_inner());
        let Some(sink) = sink.as_ref() else { return };
        match sink.try_send(pcap_record(parts, skip, now_us())) {
            Ok(()) => self.kept.fetch_add(1, Relaxed),
            Err(_) => self.lost.fetch_add(1, Relaxed),
        };
    }

    /// Starts a capture; `None` if one runs already.
    pub fn start(&self) -> Option<mpsc::Receiver<Vec<u8>>> {
        let mut sink = self.sink.lock().unwrap_or_else(|p| p.into_inner());
        if sink.is_some() {
            return None;
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        *sink = Some(tx);
        self.kept.store(0, Relaxed);
        self.lost.store(0, Relaxed);
        self.on.store(true, Relaxed);
        Some(rx)
    }

    /// Ends the capture: what it kept and lost.
    pub fn stop(&self) -> (u64, u64) {
        self.on.store(false, Relaxed);
        *self.sink.lock().unwrap_or_else(|p| p.into_inner()) = None;
        (self.kept.load(Relaxed), self.lost.load(Relaxed))
    }

    /// What the running capture kept and lost so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.kept.load(Relaxed), self.lost.load(Relaxed))
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
    fn a_full_queue_loses_records_and_counts_them_and_one_capture_at_a_time() {
        let tap = Tap::default();
        tap.record(&[b"off"], 0);
        assert!(!tap.on());
        let mut rx = tap.start().expect("the first capture");
        assert!(tap.start().is_none(), "a second one is refused");
        for _ in 0..QUEUE + 10 {
            tap.record(&[b"frame"], 0);
        }
        assert_eq!(tap.counts(), (QUEUE as u64, 10));
        assert_eq!(&rx.try_recv().unwrap()[16..], b"frame");
        assert_eq!(tap.stop(), (QUEUE as u64, 10));
        assert!(!tap.on());
        assert!(tap.start().is_some(), "free again");
    }
}
