//! Gossip: how hosts find each other and learn who lives where, without
//! static peer lists.
//!
//! - [`wire`]: every datagram sealed (ChaCha20-Poly1305) under a key
//!   derived from the cluster key, with replay and age checks.
//! - [`transport`]: chitchat transports over that: UDP, and an in-memory
//!   network with seeded loss and latency for simulations.
//! - [`state`]: what each host publishes (its VTEP, networks, endpoints)
//!   and the checked decoding of what others publish.
//! - [`table`]: the peer table built from live members.
//! - [`cache`]: the members last heard, kept across a restart so that a
//!   restarted host carries traffic before gossip has spoken.
//! - [`node`]: one host's chitchat instance, publishing and listening.
//! - [`sim`]: many members in one process, for convergence measurements.
//!
//! chitchat (scuttlebutt anti-entropy, from Quickwit) does membership and
//! state sync; each host only ever writes its own keys. Version 0.11 is
//! used: from 0.12 on, chitchat's message encoding is private to the crate
//! (quickwit-oss/chitchat#207), which makes a sealing transport impossible.

pub mod cache;
pub mod node;
pub mod sim;
pub mod state;
pub mod table;
pub mod transport;
pub mod wire;
