//! Thin, checked wrappers over the few raw system calls switchd needs. Every
//! `unsafe` block in switchd lives in `io/`, most of them here.

use std::ffi::CString;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Turns a libc return value into a `Result`, reading `errno` on -1.
pub fn cvt<T: Copy + PartialEq + From<i8>>(ret: T) -> io::Result<T> {
    if ret == T::from(-1) { Err(io::Error::last_os_error()) } else { Ok(ret) }
}

/// `struct ifreq` holding a name and a flags/int/address union.
#[repr(C)]
#[derive(Debug)]
pub struct IfReq {
    pub name: [libc::c_char; libc::IFNAMSIZ],
    pub union: [u8; 24],
}

impl IfReq {
    /// `name` must be shorter than IFNAMSIZ (an `IfName` always is).
    pub fn new(name: &str) -> Self {
        let mut req = IfReq { name: [0; libc::IFNAMSIZ], union: [0; 24] };
        for (dst, src) in req.name.iter_mut().zip(name.as_bytes().iter().take(libc::IFNAMSIZ - 1)) {
            *dst = *src as libc::c_char;
        }
        req
    }

    pub fn set_flags(&mut self, flags: libc::c_short) {
        self.union[..2].copy_from_slice(&flags.to_ne_bytes());
    }

    pub fn flags(&self) -> libc::c_short {
        libc::c_short::from_ne_bytes([self.union[0], self.union[1]])
    }
}

/// An ioctl whose argument is a pointer to `arg`.
///
/// # Safety
/// `T` must be the type `request` reads and writes through its argument
/// (the kernel writes as many bytes as its type for the request has): a
/// request paired with a smaller `T` writes past it.
pub unsafe fn ioctl_ptr<T>(fd: BorrowedFd<'_>, request: libc::Ioctl, arg: &mut T) -> io::Result<()> {
    // SAFETY: `arg` is a valid, exclusively borrowed `T` that outlives the
    // call, and the caller promises it is the type the request expects.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), request, arg as *mut T) }).map(drop)
}

/// An ioctl whose argument is an integer passed by value.
pub fn ioctl_int(fd: BorrowedFd<'_>, request: libc::Ioctl, arg: libc::c_ulong) -> io::Result<()> {
    // SAFETY: the request takes its argument by value; no memory is shared.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), request, arg) }).map(drop)
}

/// Sets a socket option to `value`.
///
/// # Safety
/// `T` must be the type the option `(level, name)` takes, with no padding
/// (the kernel reads `size_of::<T>()` bytes and takes them as that type).
pub unsafe fn setsockopt<T>(fd: BorrowedFd<'_>, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to a live `T` of the given size for the call,
    // and the caller promises it is the option's type.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// Opens a path with `open(2)` flags, returning an owned fd.
pub fn open(path: &str, flags: libc::c_int) -> io::Result<OwnedFd> {
    let c = CString::new(path).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let fd = cvt(unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) })?;
    // SAFETY: `open` returned a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn socket(domain: libc::c_int, ty: libc::c_int, protocol: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain system call with integer arguments.
    let fd = cvt(unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, protocol) })?;
    // SAFETY: `socket` returned a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `read(2)` into `buf`.
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
    let n = cvt(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) })?;
    Ok(n as usize)
}

/// `write(2)` of `buf`.
pub fn write(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes.
    let n = cvt(unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) })?;
    Ok(n as usize)
}

/// `writev(2)` of several slices as one frame.
pub fn writev(fd: RawFd, parts: &[IoSlice<'_>]) -> io::Result<usize> {
    let count = parts.len().min(libc::c_int::MAX as usize) as libc::c_int;
    // SAFETY: an IoSlice is ABI-compatible with iovec (std guarantees it on
    // Unix); the slices are live and only read by writev.
    let written = cvt(unsafe { libc::writev(fd, parts.as_ptr().cast::<libc::iovec>(), count) })?;
    Ok(written as usize)
}

/// The index of interface `name` in the calling thread's network namespace.
pub fn if_index(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (index != 0).then_some(index)
}

/// The names of the interfaces in the calling thread's network namespace.
pub fn if_names() -> Vec<String> {
    // SAFETY: if_nameindex returns an array ending with a zero entry, or null.
    let list = unsafe { libc::if_nameindex() };
    if list.is_null() {
        return Vec::new();
    }
    let mut names = Vec::new();
    let mut at = list;
    // SAFETY: every entry up to the terminating one is valid, with a NUL-terminated name.
    unsafe {
        while (*at).if_index != 0 {
            names.push(std::ffi::CStr::from_ptr((*at).if_name).to_string_lossy().into_owned());
            at = at.add(1);
        }
        libc::if_freenameindex(list);
    }
    names
}

/// The hardware address of interface `name` in the calling thread's netns.
pub fn if_hwaddr(name: &str) -> io::Result<[u8; 6]> {
    let sock = socket(libc::AF_INET, libc::SOCK_DGRAM, 0)?;
    let mut req = IfReq::new(name);
    // SAFETY: SIOCGIFHWADDR reads and writes a `struct ifreq`, which `IfReq` is.
    unsafe { ioctl_ptr(sock.as_fd(), libc::SIOCGIFHWADDR as libc::Ioctl, &mut req)? };
    // The union holds a `struct sockaddr`: family (2 bytes), then the address.
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&req.union[2..8]);
    Ok(mac)
}

/// The calling thread's id (its `/proc/self/task/TID`).
pub fn gettid() -> u64 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::gettid() as u64 }
}

/// The kernel's clock ticks per second (`/proc`'s CPU time unit).
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as u64 } else { 100 }
}

/// The CPU time thread `tid` of this process used (user and system), from
/// `/proc/self/task/TID/stat`; `None` if it is gone.
pub fn thread_cpu_time(tid: u64) -> Option<std::time::Duration> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // The name in parentheses may hold spaces: fields count from after it.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(std::time::Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second() as f64))
}

/// An eventfd: a counter other threads bump to wake an epoll loop.
pub fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain system call with integer arguments.
    let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
    // SAFETY: `eventfd` returned a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn eventfd_signal(fd: RawFd) {
    // A full counter (EAGAIN) already means "wake up", so errors are moot.
    let _ = write(fd, &1u64.to_ne_bytes());
}

pub fn eventfd_drain(fd: RawFd) {
    let mut buf = [0u8; 8];
    let _ = read(fd, &mut buf);
}

/// Raises this process's soft limit of open descriptors to its hard limit
/// (a daemon holding many connections should not stop at a login shell's
/// 1024); returns the soft limit before and after.
pub fn raise_nofile_limit() -> io::Result<(u64, u64)> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a valid rlimit for getrlimit to fill.
    cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) })?;
    let before = limit.rlim_cur;
    // An unlimited hard limit cannot be the soft one: the kernel caps
    // descriptors at fs.nr_open.
    let target = if limit.rlim_max == libc::RLIM_INFINITY {
        std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse::<libc::rlim_t>().ok())
            .unwrap_or(before)
    } else {
        limit.rlim_max
    };
    if target > before {
        limit.rlim_cur = target;
        // SAFETY: `limit` is a valid rlimit, read above, with a soft limit
        // no higher than the hard one.
        cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) })?;
    }
    Ok((before, limit.rlim_cur.max(before)))
}
