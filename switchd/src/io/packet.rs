//! AF_PACKET ports: an existing host interface (the host end of a veth pair,
//! or a NIC) switched like a TAP.
//!
//! `PACKET_VNET_HDR` makes the socket speak the same `virtio_net_hdr` frames
//! as a TAP, so GSO segments and open checksums cross between the two kinds
//! untouched. `PACKET_IGNORE_OUTGOING` keeps our own transmissions from
//! looping back, and promiscuous mode lets a NIC hand us every frame.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use super::sys;

/// Opens a non-blocking packet socket on interface `ifname` in the calling
/// thread's network namespace.
pub fn open(ifname: &str) -> io::Result<OwnedFd> {
    let index = sys::if_index(ifname)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no interface {ifname}")))?;
    // Protocol 0: receive nothing until bound to the one interface.
    let fd = sys::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_NONBLOCK, 0)?;
    let on: libc::c_int = 1;
    // SAFETY: these options take an int.
    unsafe {
        sys::setsockopt(fd.as_fd(), libc::SOL_PACKET, libc::PACKET_VNET_HDR, &on)?;
        sys::setsockopt(fd.as_fd(), libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &on)?;
    }
    // Room for bursts of 64 KiB segments; FORCE works past rmem_max as root.
    let buf: libc::c_int = 8 << 20;
    // SAFETY: the buffer size options take an int.
    unsafe { sys::setsockopt(fd.as_fd(), libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &buf) }
        // SAFETY: as above.
        .or_else(|_| unsafe { sys::setsockopt(fd.as_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, &buf) })?;
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    addr.sll_ifindex = index as i32;
    // SAFETY: `addr` is a valid sockaddr_ll and its size is passed with it.
    sys::cvt(unsafe {
        libc::bind(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    })?;
    let mreq = libc::packet_mreq {
        mr_ifindex: index as i32,
        mr_type: libc::PACKET_MR_PROMISC as u16,
        mr_alen: 0,
        mr_address: [0; 8],
    };
    // SAFETY: PACKET_ADD_MEMBERSHIP takes a `struct packet_mreq`.
    unsafe { sys::setsockopt(fd.as_fd(), libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mreq)? };
    Ok(fd)
}
