//! TAP devices: the containers' interfaces, owned by switchd.
//!
//! Opened with `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_MULTI_QUEUE` and the
//! CSUM/TSO4/TSO6 (and, where the kernel has them, USO) offloads, so the
//! container's stack hands over 64 KiB TCP segments with their checksums
//! left open, and a frame crosses to another port in one read and one write.
//! Devices are persistent (`TUNSETPERSIST`): they outlive switchd, so a
//! restarted daemon reopens them by name from inside the container's netns
//! and the container never notices.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use switchd_config::IfName;

use super::sys::{self, IfReq};
use switchd_wire::vnet::HEADER_LEN as VNET_HDR_LEN;

const TAP_FLAGS: libc::c_int = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR;

/// Whether [`attach`] made a new device or opened one that was there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attached {
    Created,
    Existing,
}

/// Why a TAP could not be attached.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// An interface of that name exists and is not a TAP.
    #[error("interface {0} already exists and is not a TAP device")]
    NotATap(String),
    /// `/dev/net/tun` is missing or not accessible.
    #[error("cannot open /dev/net/tun: {0}")]
    NoTunDevice(io::Error),
    /// Another ioctl failed.
    #[error("TAP {0}: {1}")]
    Io(String, io::Error),
}

/// Opens the TAP `name` in the calling thread's network namespace, creating
/// it if there is none, and makes it persistent: `queues` queues of it (one
/// per data-plane worker; the kernel keeps each flow the container sends on
/// one queue), or one when the device is not multi-queue (made by
/// `ip tuntap` without `multi_queue`). The fds are non-blocking.
pub fn attach(name: &IfName, queues: usize) -> Result<(Vec<OwnedFd>, Attached), TapError> {
    let (first, attached) = open_queue(name, true)?;
    let mut fds = vec![first];
    if attached == Attached::Created || is_multi_queue(&fds[0]) {
        for _ in 1..queues {
            fds.push(open_queue(name, false)?.0);
        }
    }
    set_persist(&fds[0], true).map_err(|e| TapError::Io(name.to_string(), e))?;
    Ok((fds, attached))
}

/// Whether the device behind `fd` was made with `IFF_MULTI_QUEUE`.
fn is_multi_queue(fd: &OwnedFd) -> bool {
    let mut req = IfReq::new("");
    // SAFETY: TUNGETIFF writes a `struct ifreq`, which `IfReq` is.
    unsafe { sys::ioctl_ptr(fd.as_fd(), libc::TUNGETIFF, &mut req) }.is_ok()
        && req.flags() & libc::IFF_MULTI_QUEUE as libc::c_short != 0
}

/// Opens one queue of TAP `name` (creating the device if `create` and
/// there is none) with the virtio header and offloads set.
fn open_queue(name: &IfName, create: bool) -> Result<(OwnedFd, Attached), TapError> {
    let io_err = |e| TapError::Io(name.to_string(), e);
    let fd = sys::open("/dev/net/tun", libc::O_RDWR | libc::O_NONBLOCK).map_err(TapError::NoTunDevice)?;
    let set_iff = |flags: libc::c_int| {
        let mut req = IfReq::new(name.as_str());
        req.set_flags(flags as libc::c_short);
        // SAFETY: TUNSETIFF reads and writes a `struct ifreq`, which `IfReq` is.
        unsafe { sys::ioctl_ptr(fd.as_fd(), libc::TUNSETIFF, &mut req) }
    };
    let exclusive = if create { libc::IFF_TUN_EXCL } else { 0 };
    let attached = match set_iff(TAP_FLAGS | libc::IFF_MULTI_QUEUE | exclusive) {
        Ok(()) if create => Attached::Created,
        Ok(()) => Attached::Existing,
        Err(e) if create && e.raw_os_error() == Some(libc::EBUSY) => {
            // It exists. Ours are multi-queue; one made by `ip tuntap` may not be.
            set_iff(TAP_FLAGS | libc::IFF_MULTI_QUEUE).or_else(|_| set_iff(TAP_FLAGS)).map_err(|e| {
                match e.raw_os_error() {
                    Some(libc::EINVAL) => TapError::NotATap(name.to_string()),
                    _ => io_err(e),
                }
            })?;
            Attached::Existing
        }
        Err(e) => return Err(io_err(e)),
    };
    let hdr_len = VNET_HDR_LEN as libc::c_int;
    // SAFETY: TUNSETVNETHDRSZ reads an int.
    unsafe { sys::ioctl_ptr(fd.as_fd(), libc::TUNSETVNETHDRSZ, &mut { hdr_len }) }.map_err(io_err)?;
    let offloads = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_TSO_ECN;
    // UDP segmentation offload needs Linux 6.2; without it, UDP arrives segmented.
    sys::ioctl_int(fd.as_fd(), libc::TUNSETOFFLOAD, (offloads | libc::TUN_F_USO4 | libc::TUN_F_USO6).into())
        .or_else(|_| sys::ioctl_int(fd.as_fd(), libc::TUNSETOFFLOAD, offloads.into()))
        .map_err(io_err)?;
    Ok((fd, attached))
}

/// A persistent TAP survives the last fd closing; a non-persistent one goes
/// with it.
pub fn set_persist(fd: &OwnedFd, persist: bool) -> io::Result<()> {
    sys::ioctl_int(fd.as_fd(), libc::TUNSETPERSIST, persist.into())
}
