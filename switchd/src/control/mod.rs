//! The control socket: the JSON API ([`api`]), the daemon's server side
//! ([`server`]) and the `switchctl` side ([`client`], [`render`]).

pub mod api;
pub mod client;
pub mod render;
pub mod server;
