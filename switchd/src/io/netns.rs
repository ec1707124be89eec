//! Network namespaces: naming them, telling them apart, and running code
//! inside one.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::sys;

/// Where `ip netns add NAME` keeps its namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// `web` means /run/netns/web; anything with a '/' is a path as given (such
/// as /proc/1234/ns/net).
pub fn path_of(netns: &str) -> PathBuf {
    if netns.contains('/') { PathBuf::from(netns) } else { Path::new(NETNS_RUN_DIR).join(netns) }
}

/// A namespace's identity: two paths naming the same namespace (a name under
/// /run/netns and a /proc/PID/ns/net) have the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NetnsId {
    pub dev: u64,
    pub ino: u64,
}

/// Why a namespace could not be used.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The name or path leads nowhere.
    #[error("network namespace {0:?} does not exist")]
    NotFound(String),
    /// The path exists but is not a network namespace.
    #[error("{0:?} is not a network namespace")]
    NotNetns(String),
    /// Anything else the kernel said.
    #[error("network namespace {0:?}: {1}")]
    Io(String, io::Error),
}

impl NetnsError {
    fn from_io(netns: &str, e: io::Error) -> Self {
        match e.raw_os_error() {
            Some(libc::ENOENT) => NetnsError::NotFound(netns.to_owned()),
            Some(libc::EINVAL) => NetnsError::NotNetns(netns.to_owned()),
            _ => NetnsError::Io(netns.to_owned(), e),
        }
    }
}

/// Identifies the namespace `netns` names.
pub fn identify(netns: &str) -> Result<NetnsId, NetnsError> {
    let meta = std::fs::metadata(path_of(netns)).map_err(|e| NetnsError::from_io(netns, e))?;
    Ok(NetnsId { dev: meta.dev(), ino: meta.ino() })
}

/// Runs `f` on a new thread that has entered the namespace `netns`, and
/// returns its result. A fresh thread each time, because a thread that
/// entered a namespace stays there; pooled threads must never do this.
/// Sockets and TAP fds opened inside keep their namespace after the thread ends.
pub fn run_in<T: Send>(netns: &str, f: impl FnOnce() -> T + Send) -> Result<T, NetnsError> {
    let path = path_of(netns);
    let fd = sys::open(&path.to_string_lossy(), libc::O_RDONLY).map_err(|e| NetnsError::from_io(netns, e))?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: `fd` is an open file; setns only reads it.
                sys::cvt(unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) })
                    .map_err(|e| NetnsError::from_io(netns, e))?;
                Ok(f())
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths() {
        assert_eq!(path_of("web"), Path::new("/run/netns/web"));
        assert_eq!(path_of("/proc/1/ns/net"), Path::new("/proc/1/ns/net"));
    }

    #[test]
    fn missing_and_wrong_namespaces_are_named() {
        let e = identify("sd-test-no-such-netns").unwrap_err();
        assert_eq!(e.to_string(), "network namespace \"sd-test-no-such-netns\" does not exist");
        let e = run_in("/proc/self/status", || ()).unwrap_err();
        assert!(matches!(e, NetnsError::NotNetns(_)), "{e}");
    }

    #[test]
    fn the_same_namespace_by_two_paths() {
        assert_eq!(
            identify("/proc/self/ns/net").unwrap(),
            identify(&format!("/proc/{}/ns/net", std::process::id())).unwrap()
        );
    }
}
