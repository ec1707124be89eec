//! The devices frames are switched through, behind one trait (smoltcp's
//! `phy::Device` habit): a real one ([`FdPort`]: a TAP, or an AF_PACKET
//! socket, which speak the same `virtio_net_hdr` frames), and wrappers that
//! behave like one for debugging and tests: [`PcapPort`] records what
//! crosses it, [`FaultPort`] drops what it is told to. The data plane only
//! ever sees a [`Port`].

use std::fmt::Debug;
use std::io::{self, IoSlice, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use switchd_wire::vnet;

use crate::io::sys;

/// A device that reads and writes whole frames behind a virtio header.
pub trait Port: Send + Sync + Debug {
    /// Reads one frame into `buf`; `WouldBlock` when none is waiting.
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes one frame (virtio header and Ethernet).
    fn send(&self, frame: &[u8]) -> io::Result<usize>;
    /// Writes one frame given in parts (together: virtio header and
    /// Ethernet), without copying them together.
    fn send_parts(&self, parts: &[IoSlice<'_>]) -> io::Result<usize>;
    /// The fd that becomes readable when a frame waits, if there is one.
    fn poll_fd(&self) -> Option<RawFd>;
    /// The fd frames may be written to directly (by io_uring), bypassing
    /// this port's `send`: only a plain device has one.
    fn ring_fd(&self) -> Option<RawFd> {
        None
    }
}

/// A TAP or AF_PACKET socket: one `read` or `write` per frame.
#[derive(Debug)]
pub struct FdPort(pub OwnedFd);

impl Port for FdPort {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        sys::read(self.0.as_raw_fd(), buf)
    }

    fn send(&self, frame: &[u8]) -> io::Result<usize> {
        sys::write(self.0.as_raw_fd(), frame)
    }

    fn send_parts(&self, parts: &[IoSlice<'_>]) -> io::Result<usize> {
        sys::writev(self.0.as_raw_fd(), parts)
    }

    fn poll_fd(&self) -> Option<RawFd> {
        Some(self.0.as_raw_fd())
    }

    fn ring_fd(&self) -> Option<RawFd> {
        Some(self.0.as_raw_fd())
    }
}

/// A port that records every frame it reads and writes into a pcap stream
/// (Ethernet link type; the virtio header left out), then passes it on.
#[derive(Debug)]
pub struct PcapPort<P, W> {
    inner: P,
    out: Mutex<W>,
    /// The time base of the records, in microseconds since the epoch.
    clock: fn() -> u64,
}

use super::capture::{LINKTYPE_ETHERNET, now_us, pcap_header, pcap_record};

impl<P: Port, W: Write + Send + Debug> PcapPort<P, W> {
    /// Wraps `inner`, writing the pcap header to `out` first.
    pub fn new(inner: P, mut out: W) -> io::Result<Self> {
        out.write_all(&pcap_header(LINKTYPE_ETHERNET))?;
        Ok(PcapPort { inner, out: Mutex::new(out), clock: now_us })
    }

    fn record(&self, eth: &[u8]) {
        self.record_parts(&[IoSlice::new(eth)], 0);
    }

    /// Records the frame in `parts`, less its first `skip` bytes.
    fn record_parts(&self, parts: &[IoSlice<'_>], skip: usize) {
        let parts: Vec<&[u8]> = parts.iter().map(|p| &**p).collect();
        let record = pcap_record(&parts, skip, (self.clock)());
        // A capture that cannot be written loses records, never frames.
        let _ = self.out.lock().unwrap_or_else(|p| p.into_inner()).write_all(&record);
    }

    /// The stream, for a caller done with the port.
    pub fn into_parts(self) -> (P, W) {
        (self.inner, self.out.into_inner().unwrap_or_else(|p| p.into_inner()))
    }
}

impl<P: Port, W: Write + Send + Debug> Port for PcapPort<P, W> {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.recv(buf)?;
        if let Some(eth) = buf[..n].get(vnet::HEADER_LEN..) {
            self.record(eth);
        }
        Ok(n)
    }

    fn send(&self, frame: &[u8]) -> io::Result<usize> {
        if let Some(eth) = frame.get(vnet::HEADER_LEN..) {
            self.record(eth);
        }
        self.inner.send(frame)
    }

    fn send_parts(&self, parts: &[IoSlice<'_>]) -> io::Result<usize> {
        self.record_parts(parts, vnet::HEADER_LEN);
        self.inner.send_parts(parts)
    }

    fn poll_fd(&self) -> Option<RawFd> {
        self.inner.poll_fd()
    }
}

/// A port that loses every `nth` frame it is asked to send (as a full
/// queue would: `WouldBlock`), for tests of what the data plane does then.
#[derive(Debug)]
pub struct FaultPort<P> {
    inner: P,
    nth: u64,
    sent: AtomicU64,
}

impl<P: Port> FaultPort<P> {
    pub fn new(inner: P, nth: u64) -> Self {
        FaultPort { inner, nth: nth.max(1), sent: AtomicU64::new(0) }
    }

    fn lose(&self) -> bool {
        (self.sent.fetch_add(1, Relaxed) + 1) % self.nth == 0
    }
}

impl<P: Port> Port for FaultPort<P> {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.recv(buf)
    }

    fn send(&self, frame: &[u8]) -> io::Result<usize> {
        if self.lose() { Err(io::ErrorKind::WouldBlock.into()) } else { self.inner.send(frame) }
    }

    fn send_parts(&self, parts: &[IoSlice<'_>]) -> io::Result<usize> {
        if self.lose() { Err(io::ErrorKind::WouldBlock.into()) } else { self.inner.send_parts(parts) }
    }

    fn poll_fd(&self) -> Option<RawFd> {
        self.inner.poll_fd()
    }
}

/// An in-memory port for unit tests: frames pushed in are read; frames
/// written are kept, virtio header included.
#[cfg(test)]
#[derive(Debug, Default)]
pub struct MemPort {
    pub rx: Mutex<std::collections::VecDeque<Vec<u8>>>,
    pub tx: Mutex<Vec<Vec<u8>>>,
}

#[cfg(test)]
impl MemPort {
    pub fn push(&self, frame: Vec<u8>) {
        self.rx.lock().unwrap().push_back(frame);
    }

    pub fn sent(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut *self.tx.lock().unwrap())
    }
}

#[cfg(test)]
impl Port for MemPort {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        let frame = self.rx.lock().unwrap().pop_front().ok_or(io::ErrorKind::WouldBlock)?;
        buf[..frame.len()].copy_from_slice(&frame);
        Ok(frame.len())
    }

    fn send(&self, frame: &[u8]) -> io::Result<usize> {
        self.tx.lock().unwrap().push(frame.to_vec());
        Ok(frame.len())
    }

    fn send_parts(&self, parts: &[IoSlice<'_>]) -> io::Result<usize> {
        self.send(&parts.iter().flat_map(|p| p.iter().copied()).collect::<Vec<u8>>())
    }

    fn poll_fd(&self) -> Option<RawFd> {
        None
    }
}

#[cfg(test)]
impl Port for std::sync::Arc<MemPort> {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        (**self).recv(buf)
    }

    fn send(&self, frame: &[u8]) -> io::Result<usize> {
        (**self).send(frame)
    }

    fn send_parts(&self, parts: &[IoSlice<'_>]) -> io::Result<usize> {
        (**self).send_parts(parts)
    }

    fn poll_fd(&self) -> Option<RawFd> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pcap_port_records_both_ways_and_passes_frames_on() {
        use switchd_wire::MacAddr;
        let frame = switchd_wire::vnet::build_plain(MacAddr::BROADCAST, MacAddr([2, 0, 0, 0, 0, 1]), 0x0806, 46);
        let mem = std::sync::Arc::new(MemPort::default());
        let mut pcap = PcapPort::new(mem.clone(), Vec::new()).unwrap();
        pcap.clock = || 1_500_000;
        mem.push(frame.clone());
        let mut buf = [0u8; 100];
        assert_eq!(pcap.recv(&mut buf).unwrap(), frame.len());
        let (head, rest) = frame.split_at(12);
        pcap.send_parts(&[IoSlice::new(head), IoSlice::new(rest)]).unwrap();
        assert_eq!(mem.sent(), vec![frame.clone()]);
        let (_, bytes) = pcap.into_parts();
        assert_eq!(bytes[..24], pcap_header(LINKTYPE_ETHERNET)[..]);
        let record = |at: usize| &bytes[at..at + 16];
        assert_eq!(record(24), &[1, 0, 0, 0, 0x20, 0xa1, 0x07, 0, 60, 0, 0, 0, 60, 0, 0, 0], "1.5 s, 60 bytes");
        assert_eq!(&bytes[40..100], &frame[10..], "the Ethernet frame, without the virtio header");
        assert_eq!(bytes.len(), 24 + 2 * (16 + 60));
    }

    #[test]
    fn a_fault_port_loses_every_nth_send() {
        let mem = std::sync::Arc::new(MemPort::default());
        let faulty = FaultPort::new(mem.clone(), 3);
        let results: Vec<bool> = (0..6).map(|_| faulty.send(b"0123456789abcdef").is_ok()).collect();
        assert_eq!(results, [true, true, false, true, true, false]);
        assert_eq!(mem.sent().len(), 4);
    }
}
