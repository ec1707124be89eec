//! The underlay's UDP sockets: VXLAN in and out.
//!
//! Each worker has a receive socket bound to `underlay_ip:vxlan_port`, all
//! in one `SO_REUSEPORT` group ([`bind_rx_group`]), read with `recvmmsg`
//! and `UDP_GRO`: a burst of datagrams of one flow arrives in one read, its
//! segment size in a control message. Each worker sends through its own
//! small pool of sockets bound to `underlay_ip` and ephemeral ports: the
//! flow hash of the inner frame picks the socket, so its port is the outer
//! source port (a UDP socket cannot choose a source port per datagram), and
//! one `sendmmsg` entry with `UDP_SEGMENT` carries up to 64 KiB of
//! equal-sized datagrams, as many as a TSO segment makes. A socket is one
//! sealing lane (see `dataplane::crypto`), so the kernel's GRO, which joins
//! datagrams by 4-tuple, never mixes two lanes.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::sys;

/// How many sockets the source-port pool has.
pub const TX_POOL: usize = 16;
/// The largest read: a full GRO batch.
pub const MAX_READ: usize = 65535;
/// `UDP_SEGMENT` takes at most this many segments per send.
pub const MAX_SEGMENTS: usize = 64;

fn udp_socket(ip: IpAddr) -> io::Result<Socket> {
    let domain = if ip.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 };
    let socket = Socket::new(domain, Type::DGRAM.nonblocking().cloexec(), Some(Protocol::UDP))?;
    if ip.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    Ok(socket)
}

/// `workers` receive sockets on `addr`, one per data-plane worker, in one
/// `SO_REUSEPORT` group. The kernel spreads plain VXLAN over them by its
/// 4-tuple hash (so one flow stays on one worker); sealed datagrams go to
/// socket `lane % workers` (a classic BPF program reads the lane from the
/// header), so each sender lane's replay window lives in exactly one worker
/// however the sender's ports are spoofed.
pub fn bind_rx_group(addr: SocketAddr, workers: usize) -> io::Result<Vec<OwnedFd>> {
    let group = (0..workers.max(1)).map(|_| bind_rx(addr)).collect::<io::Result<Vec<_>>>()?;
    if group.len() > 1 {
        steer_by_lane(&group[0], group.len() as u32)?;
    }
    Ok(group)
}

/// Attaches the group's steering program (see [`bind_rx_group`]). It sees
/// the UDP payload from offset 0; an index past the group makes the kernel
/// fall back to its hash.
fn steer_by_lane(fd: &OwnedFd, workers: u32) -> io::Result<()> {
    use switchd_wire::sealed::field;
    let op = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter { code: code as u16, jt, jf, k };
    let mut program = [
        op(libc::BPF_LD | libc::BPF_B | libc::BPF_ABS, 0, 0, field::FLAGS as u32),
        // Sealed: on to the lane; plain: to the hash.
        op(libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K, 0, 3, u32::from(switchd_wire::vxlan::FLAG_SEALED)),
        op(libc::BPF_LD | libc::BPF_H | libc::BPF_ABS, 0, 0, field::LANE as u32),
        op(libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K, 0, 0, workers),
        op(libc::BPF_RET | libc::BPF_A, 0, 0, 0),
        op(libc::BPF_RET | libc::BPF_K, 0, 0, u32::MAX),
    ];
    let prog = libc::sock_fprog { len: program.len() as u16, filter: program.as_mut_ptr() };
    // SAFETY: SO_ATTACH_REUSEPORT_CBPF takes a sock_fprog, which the kernel
    // copies (with the program it points to) during the call.
    unsafe { sys::setsockopt(std::os::fd::AsFd::as_fd(fd), libc::SOL_SOCKET, libc::SO_ATTACH_REUSEPORT_CBPF, &prog) }
}

/// The receive socket on `addr` (`underlay_ip:vxlan_port`).
pub fn bind_rx(addr: SocketAddr) -> io::Result<OwnedFd> {
    let socket = udp_socket(addr.ip())?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    let fd = OwnedFd::from(socket);
    let on: libc::c_int = 1;
    // SAFETY: UDP_GRO takes an int.
    unsafe { sys::setsockopt(std::os::fd::AsFd::as_fd(&fd), libc::SOL_UDP, libc::UDP_GRO, &on)? };
    force_buffer(&fd, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, 32 << 20)?;
    Ok(fd)
}

/// A send socket on `ip` and an ephemeral port.
pub fn bind_tx(ip: IpAddr) -> io::Result<OwnedFd> {
    let socket = udp_socket(ip)?;
    socket.bind(&SocketAddr::new(ip, 0).into())?;
    let fd = OwnedFd::from(socket);
    force_buffer(&fd, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, 8 << 20)?;
    Ok(fd)
}

/// Sets a socket buffer past the sysctl maximum (root), or as far as allowed.
fn force_buffer(fd: &OwnedFd, force: libc::c_int, plain: libc::c_int, bytes: libc::c_int) -> io::Result<()> {
    let fd = std::os::fd::AsFd::as_fd(fd);
    // SAFETY: the buffer size options take an int.
    unsafe { sys::setsockopt(fd, libc::SOL_SOCKET, force, &bytes) }
        // SAFETY: as above.
        .or_else(|_| unsafe { sys::setsockopt(fd, libc::SOL_SOCKET, plain, &bytes) })
}

/// The local port a socket is bound to.
pub fn local_port(fd: &OwnedFd) -> io::Result<u16> {
    let socket = socket2::SockRef::from(fd);
    socket.local_addr()?.as_socket().map(|a| a.port()).ok_or_else(|| io::Error::other("not an IP socket"))
}

/// One `sendmmsg` entry: `parts`, one after another, to `to`; with
/// `segment`, the kernel cuts them into datagrams of that size (the last
/// may be shorter), wherever the parts begin and end.
#[derive(Debug, Clone)]
pub struct Outgoing<'a, P> {
    pub to: &'a SockAddr,
    pub parts: P,
    pub segment: Option<u16>,
}

/// Headers for sending many messages with one `sendmmsg`.
#[derive(Debug, Default)]
pub struct SendBatch {
    iovs: Vec<libc::iovec>,
    /// Where each message's iovecs are in `iovs`.
    spans: Vec<(usize, usize)>,
    headers: Vec<libc::mmsghdr>,
    /// Room for one cmsghdr with a u16 per message, 8-byte aligned.
    controls: Vec<[u64; 4]>,
}

// SAFETY: the raw pointers in `iovs` and `headers` are rewritten before every
// use from the messages being sent, and never kept or shared past the call.
unsafe impl Send for SendBatch {}

impl SendBatch {
    /// Sends `msgs` on `fd`, as few `sendmmsg` calls as it takes; a message
    /// the kernel refuses is skipped. Calls `done(i, result)` for each message.
    /// Allocates only while the batch grows past its largest size so far.
    pub fn send<'a, P: Iterator<Item = &'a [u8]>>(
        &mut self,
        fd: RawFd,
        msgs: impl Iterator<Item = Outgoing<'a, P>> + Clone,
        mut done: impl FnMut(usize, io::Result<()>),
    ) {
        self.iovs.clear();
        self.spans.clear();
        self.headers.clear();
        for m in msgs.clone() {
            let first = self.iovs.len();
            self.iovs
                .extend(m.parts.map(|p| libc::iovec { iov_base: p.as_ptr() as *mut libc::c_void, iov_len: p.len() }));
            self.spans.push((first, self.iovs.len() - first));
        }
        let n = self.spans.len();
        self.controls.resize(n.max(self.controls.len()), [0; 4]);
        for (i, m) in msgs.enumerate() {
            // SAFETY: mmsghdr is plain old data; all-zero is a valid empty header.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_name = m.to.as_ptr() as *mut libc::c_void;
            h.msg_hdr.msg_namelen = m.to.len();
            let (first, count) = self.spans[i];
            // `iovs` is not changed again before the call: the pointer stays valid.
            h.msg_hdr.msg_iov = self.iovs[first..].as_mut_ptr();
            h.msg_hdr.msg_iovlen = count;
            if let Some(size) = m.segment {
                h.msg_hdr.msg_control = self.controls[i].as_mut_ptr().cast();
                // SAFETY: CMSG_SPACE is a pure size computation.
                h.msg_hdr.msg_controllen = unsafe { libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) } as usize;
                // SAFETY: msg_control points to this message's control slot,
                // large enough and aligned for one cmsghdr with a u16.
                unsafe {
                    let cmsg = libc::CMSG_FIRSTHDR(&h.msg_hdr);
                    (*cmsg).cmsg_level = libc::SOL_UDP;
                    (*cmsg).cmsg_type = libc::UDP_SEGMENT;
                    (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as usize;
                    std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), size);
                }
            }
            self.headers.push(h);
        }
        let mut next = 0;
        while next < n {
            // SAFETY: headers[next..] are valid mmsghdr whose pointers (data,
            // addresses, iovecs, controls) all live across the call.
            let sent =
                unsafe { libc::sendmmsg(fd, self.headers[next..].as_mut_ptr(), (n - next) as u32, libc::MSG_DONTWAIT) };
            if sent <= 0 {
                // The message at `next` was refused (queue full, too big...).
                done(next, Err(io::Error::last_os_error()));
                next += 1;
                continue;
            }
            for i in next..next + sent as usize {
                done(i, Ok(()));
            }
            next += sent as usize;
        }
    }
}

/// Buffers for reading many (GRO-coalesced) datagrams with one `recvmmsg`.
#[derive(Debug)]
pub struct RecvBatch {
    bufs: Vec<Box<[u8]>>,
    lens: Vec<usize>,
    srcs: Vec<libc::sockaddr_storage>,
    controls: Vec<[u64; 8]>,
    segments: Vec<usize>,
    iovs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers in `iovs` and `headers` point only into this
// struct's own heap buffers, are rewritten before every use, and are never
// shared; moving the struct to another thread moves those buffers with it.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    pub fn new(messages: usize) -> Self {
        RecvBatch {
            bufs: (0..messages).map(|_| vec![0u8; MAX_READ].into_boxed_slice()).collect(),
            lens: vec![0; messages],
            // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
            srcs: vec![unsafe { std::mem::zeroed() }; messages],
            controls: vec![[0; 8]; messages],
            segments: vec![0; messages],
            iovs: Vec::with_capacity(messages),
            headers: Vec::with_capacity(messages),
        }
    }

    /// Reads what is waiting, up to the batch size; returns how many reads
    /// were filled (0 when nothing waits).
    pub fn recv(&mut self, fd: &OwnedFd) -> io::Result<usize> {
        let n = self.bufs.len();
        // The kernel rewrites lengths in these headers, so they are rebuilt
        // each call, within capacity: no allocation.
        self.iovs.clear();
        self.headers.clear();
        for buf in &mut self.bufs {
            self.iovs.push(libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() });
        }
        for i in 0..n {
            // SAFETY: mmsghdr is plain old data; all-zero is a valid empty header.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_name = (&mut self.srcs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
            h.msg_hdr.msg_iov = &mut self.iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = self.controls[i].as_mut_ptr().cast();
            h.msg_hdr.msg_controllen = std::mem::size_of::<[u64; 8]>();
            self.headers.push(h);
        }
        // SAFETY: `headers` holds `n` valid mmsghdr whose pointers (buffers,
        // addresses, controls, iovecs) all live across the call.
        let got = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                self.headers.as_mut_ptr(),
                n as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        let got = match sys::cvt(got) {
            Ok(got) => got as usize,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
            Err(e) => return Err(e),
        };
        for (i, h) in self.headers.iter().enumerate().take(got) {
            self.lens[i] = h.msg_len as usize;
            self.segments[i] = gro_segment_size(&h.msg_hdr).unwrap_or(self.lens[i]).max(1);
        }
        Ok(got)
    }

    /// The bytes of the `i`-th read.
    pub fn data(&self, i: usize) -> &[u8] {
        &self.bufs[i][..self.lens[i]]
    }

    /// The bytes of the `i`-th read, to open sealed datagrams in place.
    pub fn data_mut(&mut self, i: usize) -> &mut [u8] {
        &mut self.bufs[i][..self.lens[i]]
    }

    /// The bytes of each of the first `n` reads with who sent it and its
    /// datagrams' size, to open a burst's sealed datagrams in place.
    pub fn reads_mut(&mut self, n: usize) -> impl Iterator<Item = (&mut [u8], Option<IpAddr>, usize)> {
        let bufs = self.bufs.iter_mut().zip(&self.lens).map(|(b, len)| &mut b[..*len]);
        bufs.zip(self.srcs.iter().map(ip_of)).zip(self.segments.iter().copied()).take(n).map(|((d, s), g)| (d, s, g))
    }

    /// Who sent the `i`-th read.
    pub fn sender(&self, i: usize) -> Option<IpAddr> {
        ip_of(&self.srcs[i])
    }

    /// The `i`-th read's sender, with its port.
    pub fn sender_addr(&self, i: usize) -> Option<SocketAddr> {
        addr_of(&self.srcs[i])
    }

    /// The size of the datagrams in the `i`-th read (one datagram, or a
    /// burst the kernel coalesced with `UDP_GRO`; the last may be shorter).
    pub fn segment_size(&self, i: usize) -> usize {
        self.segments[i]
    }
}

/// The segment size the kernel reports for a GRO-coalesced read.
fn gro_segment_size(msg: &libc::msghdr) -> Option<usize> {
    // SAFETY: `msg` was filled by recvmmsg; CMSG_FIRSTHDR/NXTHDR walk only
    // within msg_control/msg_controllen, and the data read is an int.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_UDP && (*cmsg).cmsg_type == libc::UDP_GRO {
                let size = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
                return usize::try_from(size).ok();
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    None
}

fn ip_of(storage: &libc::sockaddr_storage) -> Option<IpAddr> {
    addr_of(storage).map(|a| a.ip())
}

fn addr_of(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let sin = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
            Some(SocketAddr::new(ip, u16::from_be(sin.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let sin6 = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)), u16::from_be(sin6.sin6_port)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loopback only: a GSO send of two parts arrives as datagrams of the
    /// segment size.
    #[test]
    fn segmented_send_and_batched_receive_on_loopback() {
        let rx = bind_rx("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = local_port(&rx).unwrap();
        let tx = bind_tx("127.0.0.1".parse().unwrap()).unwrap();
        let to = SockAddr::from(SocketAddr::new("127.0.0.1".parse().unwrap(), port));
        let data: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let (halves, single): ([&[u8]; 2], [&[u8]; 1]) = ([&data[..1500], &data[1500..]], [b"single"]);
        let msgs = [
            Outgoing { to: &to, parts: halves.iter().copied(), segment: Some(1000) },
            Outgoing { to: &to, parts: single.iter().copied(), segment: None },
        ];
        let mut sent = Vec::new();
        SendBatch::default().send(tx.as_raw_fd(), msgs.into_iter(), |i, result| sent.push((i, result.is_ok())));
        assert_eq!(sent, vec![(0, true), (1, true)]);
        let mut batch = RecvBatch::new(4);
        let mut datagrams = Vec::new();
        for _ in 0..100 {
            let n = batch.recv(&rx).unwrap();
            for i in 0..n {
                assert_eq!(batch.sender(i), Some("127.0.0.1".parse().unwrap()));
                datagrams.extend(batch.data(i).chunks(batch.segment_size(i)).map(<[u8]>::to_vec));
            }
            if datagrams.len() == 4 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(datagrams.len(), 4, "three segments and one plain datagram");
        assert_eq!(datagrams[0], data[..1000]);
        assert_eq!(datagrams[1], data[1000..2000], "cut where the parts do not meet");
        assert_eq!(datagrams[2], data[2000..]);
        assert_eq!(datagrams[3], b"single");
    }
}
