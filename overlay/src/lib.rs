//! The overlay: what turns a container's Ethernet frame into VXLAN datagrams
//! for another host, and back, and how hosts learn of each other. The data
//! path parts are pure code over caller-owned buffers (no sockets, no clock,
//! no allocation per frame); [`gossip`] runs on tokio.
//!
//! - [`vxlan`]: the RFC 7348 header, a checked view plus a `Repr`.
//! - [`tunnel`]: a container's frame into the VXLAN datagrams that carry it.
//! - [`offload`]: what a NIC would do for frames the container left to it:
//!   completing open checksums and cutting TSO/USO segments to the MTU,
//!   so a peer receives ordinary frames.
//! - [`checksum`]: the Internet checksum, fast.
//! - [`gro`]: the reverse of segmentation: joining the TCP segments that
//!   come out of a tunnel into one large frame for the container.
//! - [`flow`]: the hash of an inner flow that picks the outer source port.
//! - [`gossip`]: membership and the peer table, over sealed chitchat.

#![forbid(unsafe_code)]

pub mod checksum;
pub mod flow;
pub mod gossip;
pub mod gro;
pub mod offload;
pub mod sealed;
pub mod tunnel;
pub mod vxlan;
