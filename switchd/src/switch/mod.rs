//! The switch pipeline: pure, sans-IO decisions over frames.
//!
//! [`Switch::handle_frame`] takes the bytes a port read and the time, learns
//! the source, and says what to do: deliver to one port, flood the network,
//! or drop, with the reason counted. It never reads a clock, touches an fd or
//! allocates per frame, so it is tested with byte fixtures and benchmarked
//! in isolation; the data-plane workers (`crate::dataplane`) do the I/O.
//!
//! Isolation is structural: every port belongs to exactly one network, each
//! network has its own forwarding table, and every decision names ports of
//! the ingress network only. No frame can cross networks at L2.

mod fdb;
pub mod frame;

use std::time::{Duration, Instant};

use serde::Serialize;
use slotmap::{SlotMap, new_key_type};
use switchd_config::{MacAddr, Mtu};

pub use fdb::{Entry as FdbEntry, Fdb, Learned};
use frame::{Frame, FrameError};

new_key_type! {
    /// A port of the switch (one container interface or host interface).
    pub struct PortId;
    /// A network: an isolated L2 segment.
    pub struct NetworkId;
}

/// What to do with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Write it to this port.
    Deliver(PortId),
    /// Write it to every port of the network but the one it came from
    /// ([`Switch::flood_targets`]).
    Flood(NetworkId),
    /// Drop it; the reason has been counted.
    Drop(DropReason),
}

macro_rules! drop_reasons {
    ($($(#[doc = $doc:literal])* $variant:ident = $name:literal,)*) => {
        /// Why a frame was dropped. Every drop is counted under one of these.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum DropReason {
            $($(#[doc = $doc])* $variant,)*
        }

        impl DropReason {
            pub const ALL: &[DropReason] = &[$(DropReason::$variant,)*];
            pub const COUNT: usize = Self::ALL.len();

            /// The snake_case name shown by `switchctl stats`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(DropReason::$variant => $name,)*
                }
            }
        }
    };
}

drop_reasons! {
    /// Shorter than a virtio header plus an Ethernet header.
    Truncated = "truncated",
    /// Unknown GSO type, GSO without segment size, or checksum outside the frame.
    BadVnetHdr = "bad_vnet_hdr",
    /// Larger than the network MTU (or GSO segments larger than it).
    Oversize = "oversize",
    /// Source MAC is multicast, broadcast or all zero.
    BadSrcMac = "bad_src_mac",
    /// The port has learned as many MACs as it may (MAC-flood guard).
    MacLimit = "mac_limit",
    /// Destination was learned on the ingress port itself.
    SamePort = "same_port",
    /// The port was removed while its frames were in flight.
    NoPort = "no_port",
    /// The destination port refused the write (queue full or I/O error);
    /// counted by the data plane on the egress port.
    TxError = "tx_error",
}

impl From<FrameError> for DropReason {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Truncated => DropReason::Truncated,
            FrameError::BadVnetHdr => DropReason::BadVnetHdr,
        }
    }
}

/// Frames and bytes, plus drops by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub frames: u64,
    pub bytes: u64,
    pub drops: [u64; DropReason::COUNT],
}

impl Counters {
    pub fn count(&mut self, bytes: usize) {
        self.frames += 1;
        self.bytes += bytes as u64;
    }

    pub fn drop(&mut self, reason: DropReason) {
        self.drops[reason as usize] += 1;
    }

    pub fn drops_by_name(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        DropReason::ALL.iter().map(|r| (r.as_str(), self.drops[*r as usize])).filter(|(_, n)| *n > 0)
    }
}

/// Aging time and per-port MAC limit.
#[derive(Debug, Clone, Copy)]
pub struct SwitchConfig {
    pub mac_aging_time: Duration,
    pub mac_limit: u32,
}

impl SwitchConfig {
    /// How often [`Switch::handle_timeout`] should run. Lookups ignore
    /// expired entries at once; the sweep only frees them, so once a second
    /// keeps tables tight without scanning them per frame.
    pub fn sweep_interval(&self) -> Duration {
        Duration::from_secs(1).min(self.mac_aging_time)
    }
}

impl Default for SwitchConfig {
    fn default() -> Self {
        SwitchConfig { mac_aging_time: Duration::from_secs(300), mac_limit: 1024 }
    }
}

#[derive(Debug)]
struct Port {
    network: NetworkId,
    mtu: u32,
    /// MACs in the network's table that point here.
    learned: u32,
    rx: Counters,
}

#[derive(Debug, Default)]
struct Network {
    mtu: u32,
    ports: Vec<PortId>,
    fdb: Fdb,
    /// Frames flooded: broadcast, multicast and unknown unicast.
    flooded: u64,
    /// MACs that moved from one port to another.
    moves: u64,
}

/// Counters of one network, for `switchctl stats`.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct NetworkCounters {
    pub flooded: u64,
    pub mac_moves: u64,
    pub fdb_entries: u64,
}

#[derive(Debug)]
pub struct Switch {
    config: SwitchConfig,
    networks: SlotMap<NetworkId, Network>,
    ports: SlotMap<PortId, Port>,
}

impl Switch {
    pub fn new(config: SwitchConfig) -> Self {
        Switch { config, networks: SlotMap::with_key(), ports: SlotMap::with_key() }
    }

    pub fn config(&self) -> SwitchConfig {
        self.config
    }

    pub fn add_network(&mut self, mtu: Mtu) -> NetworkId {
        self.networks.insert(Network { mtu: mtu.get(), ..Network::default() })
    }

    /// Removes a network and its ports.
    pub fn remove_network(&mut self, id: NetworkId) {
        if let Some(net) = self.networks.remove(id) {
            for port in net.ports {
                self.ports.remove(port);
            }
        }
    }

    /// Adds a port to a network. `None` if the network does not exist.
    pub fn add_port(&mut self, network: NetworkId) -> Option<PortId> {
        let mtu = self.networks.get(network)?.mtu;
        let id = self.ports.insert(Port { network, mtu, learned: 0, rx: Counters::default() });
        self.networks[network].ports.push(id);
        Some(id)
    }

    /// Removes a port and every MAC learned on it.
    pub fn remove_port(&mut self, id: PortId) {
        let Some(port) = self.ports.remove(id) else { return };
        if let Some(net) = self.networks.get_mut(port.network) {
            net.ports.retain(|p| *p != id);
            net.fdb.forget_port(id);
        }
    }

    /// Decides what to do with one frame (virtio header + Ethernet) read
    /// from `ingress`, learning its source on the way.
    pub fn handle_frame(&mut self, now: Instant, ingress: PortId, buf: &[u8]) -> Action {
        let Some(port) = self.ports.get_mut(ingress) else {
            return Action::Drop(DropReason::NoPort);
        };
        port.rx.count(buf.len());
        let frame = match Frame::new_checked(buf) {
            Ok(frame) => frame,
            Err(e) => return drop(port, e.into()),
        };
        if !frame.fits_mtu(port.mtu) {
            return drop(port, DropReason::Oversize);
        }
        let src = frame.src_addr();
        if !src.is_unicast() {
            return drop(port, DropReason::BadSrcMac);
        }

        let network_id = port.network;
        let net = &mut self.networks[network_id];
        let limit = self.config.mac_limit;
        let ports = &mut self.ports;
        let learned = net.fdb.learn(src, ingress, now, || ports[ingress].learned < limit);
        match learned {
            None => return drop(&mut ports[ingress], DropReason::MacLimit),
            Some(Learned::Refreshed) => {}
            Some(Learned::New) => ports[ingress].learned += 1,
            Some(Learned::Moved { from }) => {
                ports[ingress].learned += 1;
                if let Some(old) = ports.get_mut(from) {
                    old.learned -= 1;
                }
                net.moves += 1;
            }
        }

        let dst = frame.dst_addr();
        if dst.is_multicast() {
            net.flooded += 1;
            return Action::Flood(network_id);
        }
        match net.fdb.lookup(dst, now, self.config.mac_aging_time) {
            Some(out) if out == ingress => drop(&mut ports[ingress], DropReason::SamePort),
            Some(out) => Action::Deliver(out),
            None => {
                net.flooded += 1;
                Action::Flood(network_id)
            }
        }
    }

    /// The ports a flood on `network` goes to: all of them except `ingress`.
    pub fn flood_targets(&self, network: NetworkId, ingress: PortId) -> impl Iterator<Item = PortId> + '_ {
        let ports = self.networks.get(network).map_or(&[][..], |n| &n.ports[..]);
        ports.iter().copied().filter(move |p| *p != ingress)
    }

    /// Removes expired MACs; call every [`SwitchConfig::sweep_interval`].
    pub fn handle_timeout(&mut self, now: Instant) {
        let aging = self.config.mac_aging_time;
        let ports = &mut self.ports;
        for net in self.networks.values_mut() {
            net.fdb.sweep(now, aging, |port| {
                if let Some(p) = ports.get_mut(port) {
                    p.learned -= 1;
                }
            });
        }
    }

    /// The live forwarding entries of a network: MAC, port, time since seen.
    pub fn fdb(&self, network: NetworkId, now: Instant) -> Vec<(MacAddr, PortId, Duration)> {
        let aging = self.config.mac_aging_time;
        let Some(net) = self.networks.get(network) else { return Vec::new() };
        let mut rows: Vec<_> = net
            .fdb
            .iter()
            .map(|(mac, e)| (mac, e.port, now.saturating_duration_since(e.last_seen)))
            .filter(|(_, _, age)| *age <= aging)
            .collect();
        rows.sort_by_key(|(mac, _, _)| *mac);
        rows
    }

    pub fn port_counters(&self, port: PortId) -> Option<&Counters> {
        self.ports.get(port).map(|p| &p.rx)
    }

    pub fn network_counters(&self, network: NetworkId) -> Option<NetworkCounters> {
        self.networks.get(network).map(|n| NetworkCounters {
            flooded: n.flooded,
            mac_moves: n.moves,
            fdb_entries: n.fdb.len() as u64,
        })
    }
}

fn drop(port: &mut Port, reason: DropReason) -> Action {
    port.rx.drop(reason);
    Action::Drop(reason)
}

#[cfg(test)]
mod tests;
