//! What the switch answers for one input: everything the data plane has to
//! do with it, complete (quinn-proto's `Transmit`, boringtun's
//! `TunnResult`): the decision, every target it goes to (floods resolved),
//! how its network goes on the wire, and for a datagram where its inner
//! frame lies. The data plane only carries it out; a packet trace prints it.

use std::fmt;
use std::net::IpAddr;
use std::ops::Range;

use switchd_crypto::OpenError;
use switchd_overlay::offload::L4Checksum;
use switchd_overlay::sealed;

use super::{Action, NetworkWire, PortId, VtepId};

/// Where a copy of a frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    Port(PortId),
    /// Encapsulated (sealed, if the plan's wire says so) to this VTEP.
    Vtep(VtepId),
}

/// Everything to do with one frame or datagram. Caller-owned and reused:
/// [`super::Switch::handle_frame`] and [`super::Switch::handle_datagram`]
/// overwrite it, so a steady state allocates nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a plan does nothing until the data plane carries it out"]
pub struct Plan {
    /// The decision, with its reason when it is a drop.
    pub action: Action,
    /// Every port and VTEP a copy goes to, in order. Empty for answers,
    /// services and drops, which concern the ingress port only.
    pub targets: Vec<Target>,
    /// How the network's frames go on the wire: set when a target is a VTEP.
    pub wire: Option<NetworkWire>,
    /// For a datagram: where the inner Ethernet frame lies in it (after
    /// opening, for a sealed one). Empty otherwise.
    pub inner: Range<usize>,
    /// For a datagram: it was sealed, and opened. Its tag covered every
    /// byte of the inner frame, whose own checksums need no checking again.
    pub sealed: bool,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            action: Action::Drop(super::DropReason::NoPort),
            targets: Vec::new(),
            wire: None,
            inner: 0..0,
            sealed: false,
        }
    }
}

impl Plan {
    /// Makes the plan a drop for `reason` (counted already).
    pub(super) fn reset(&mut self, action: Action) {
        self.action = action;
        self.targets.clear();
        self.wire = None;
        self.inner = 0..0;
        self.sealed = false;
    }

    /// The VTEPs among the targets.
    pub fn vteps(&self) -> impl Iterator<Item = VtepId> + '_ {
        self.targets.iter().filter_map(|t| match t {
            Target::Vtep(v) => Some(*v),
            Target::Port(_) => None,
        })
    }

    /// The ports among the targets.
    pub fn ports(&self) -> impl Iterator<Item = PortId> + '_ {
        self.targets.iter().filter_map(|t| match t {
            Target::Port(p) => Some(*p),
            Target::Vtep(_) => None,
        })
    }
}

impl fmt::Display for Plan {
    /// One line: the decision, then where it goes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.action {
            Action::Drop(reason) => return write!(f, "drop: {}", reason.as_str()),
            Action::Deliver(_) => f.write_str("deliver")?,
            Action::Encap { .. } => f.write_str("encapsulate")?,
            Action::Flood { .. } => f.write_str("flood")?,
            Action::Answer { owner, request, .. } => return write!(f, "answer {:?} for {}", request.target(), owner),
            Action::Local { .. } => return f.write_str("serve at the gateway"),
            Action::Route { src, dst, .. } => write!(f, "route (rewritten {src} -> {dst})")?,
            Action::Nat { rewrite, .. } => match rewrite.addr {
                super::balance::NatAddr::Dst(ip) => write!(f, "balance to backend {ip}")?,
                super::balance::NatAddr::Src(ip) => write!(f, "balanced reply, from VIP {ip}")?,
            },
            Action::Reject { reason, .. } => return write!(f, "reject: {} (ICMP error)", reason.as_str()),
        }
        if let Some(w) = self.wire {
            let sealed = if w.encrypted { ", sealed" } else { "" };
            let partial = if w.l4_checksum == L4Checksum::Partial { ", partial checksums" } else { "" };
            write!(f, " [vni {}, mtu {}{sealed}{partial}]", w.vni, w.mtu)?;
        }
        write!(f, " to {} port(s), {} VTEP(s)", self.ports().count(), self.vteps().count())
    }
}

/// Opens sealed datagrams in place: the data plane's keys and sessions,
/// which the switch never holds.
pub trait Opener {
    /// Opens `datagram` (a whole sealed packet) from `sender`; where its
    /// inner frame lies.
    fn open(&mut self, datagram: &mut [u8], sender: IpAddr) -> Result<Range<usize>, sealed::Refused>;
}

/// For a host with no keys (no encrypted network): every sealed datagram
/// is under a key it does not hold.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoKeys;

impl Opener for NoKeys {
    fn open(&mut self, _: &mut [u8], _: IpAddr) -> Result<Range<usize>, sealed::Refused> {
        Err(sealed::Refused::Open(OpenError::UnknownKey))
    }
}
