//! switchd: a userspace virtual switch for containers.
//!
//! The data path, top to bottom:
//! - [`io`]: TAP devices and AF_PACKET sockets (the ports), network
//!   namespaces and netlink. The only module that makes system calls.
//! - [`switch`]: the pure pipeline deciding each frame's fate.
//! - [`services`]: what the gateway answers (ping, DHCP, DNS, ICMP
//!   errors of routing), pure functions over frames.
//! - [`dataplane`]: worker threads pumping frames between ports through the
//!   switch.
//! - [`daemon`]: networks and endpoints, their persistence, and the
//!   operations `switchctl` asks for; [`control`] carries those requests over
//!   the control socket.
//! - [`docker`]: the Docker network driver (libnetwork's remote protocol);
//!   [`cni`]: the CNI plugin `switchd-cni`.
//! - [`cluster`]: the gossip member that tells other hosts what this one
//!   carries and feeds the daemon what they carry.
//! - [`conns`]: what every server loop on switchd's sockets shares: accept
//!   errors that never spin, connection tables with limits and eviction.

// System calls are `io`'s alone; everything else is safe Rust.
#![deny(unsafe_code)]

/// This build: the crate's version and the commit it was built from.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("SWITCHD_COMMIT"), ")");

pub mod cluster;
pub mod cni;
pub mod conns;
pub mod control;
pub mod daemon;
pub mod dataplane;
pub mod docker;
pub mod http;
#[allow(unsafe_code)]
pub mod io;
pub mod metrics;
pub mod proxy;
pub mod services;
pub mod switch;
