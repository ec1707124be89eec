//! The overlay: what turns a container's Ethernet frame into VXLAN datagrams
//! for another host, and back, and how hosts learn of each other. The data
//! path parts are pure code over caller-owned buffers (no sockets, no clock,
//! no allocation per frame); [`gossip`] runs on tokio.
//!
//! - [`tunnel`]: a container's frame into the VXLAN datagrams that carry it.
//! - [`sealed`]: sealing and opening the datagrams of encrypted networks.
//! - [`offload`]: what a NIC would do for frames the container left to it:
//!   completing open checksums and cutting TSO/USO segments to the MTU,
//!   so a peer receives ordinary frames.
//! - [`gro`]: the reverse of segmentation: joining the TCP segments that
//!   come out of a tunnel into one large frame for the container.
//! - [`flow`]: the hash of an inner flow that picks the outer source port.
//! - [`gossip`]: membership and the peer table, over sealed chitchat.
//!
//! The packet formats (VXLAN, the sealed header, the headers segmentation
//! and coalescing read, the Internet checksum) are `switchd_wire`'s.

#![forbid(unsafe_code)]

pub mod flow;
pub mod gossip;
pub mod gro;
pub mod offload;
pub mod sealed;
pub mod tunnel;
