//! Opening and removing an endpoint's device.
//!
//! One rule serves `network connect`, start-up and restart alike: if the
//! interface exists, switchd opens it as it is; if not, switchd creates and
//! configures it. So after a restart (even after kill -9) the persistent TAPs
//! are simply reopened by name, and a TAP or veth prepared by another tool
//! (see `switchctl script attach`) is taken over without being touched.

use std::hash::{BuildHasher, RandomState};
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};

use switchd_config::{IfName, MacAddr, NetworkConfig, PortKind, Subnet};

use super::state::{Device, EndpointRecord};
use crate::io::netns::{self, NetnsError};
use crate::io::tap::{self, Attached, TapError};
use crate::io::{netlink, packet, sys};

/// Why an endpoint's device could not be opened or removed.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Tap(#[from] TapError),
    /// The host interface of a veth or uplink port is missing and cannot be made.
    #[error("host interface {0} does not exist")]
    NoHostInterface(String),
    /// Setting up or opening an interface failed.
    #[error("{what}: {source}")]
    Setup { what: String, source: io::Error },
}

fn setup_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> AttachError {
    let what = what.into();
    move |source| AttachError::Setup { what, source }
}

/// 64 random-enough bits (std's per-process SipHash keys), for names and MACs.
pub fn random_u64() -> u64 {
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// The lowest `ethN` that does not exist in the calling thread's netns.
fn first_free_eth() -> IfName {
    (0..).map(IfName::eth).find(|n| sys::if_index(n.as_str()).is_none()).expect("some ethN is free")
}

/// The network an endpoint is attached to, as its container's side is set
/// up: the network and the subnets it routes to (through its gateway).
#[derive(Debug, Clone, Copy)]
pub struct Attachment<'a> {
    pub net: &'a NetworkConfig,
    pub routes: &'a [Subnet],
}

/// How the container side of a port is configured when switchd creates it.
/// An endpoint that takes its address by DHCP gets only its MAC and MTU.
pub fn link_setup(name: &str, rename: Option<&IfName>, record: &EndpointRecord, to: Attachment) -> netlink::LinkSetup {
    let net = to.net;
    let configured = !record.dhcp;
    let gateway = net.gateway.filter(|_| configured);
    netlink::LinkSetup {
        name: name.to_owned(),
        rename: rename.map(|n| n.to_string()),
        mac: record.mac.unwrap_or(MacAddr::ZERO).0,
        mtu: net.mtu.get(),
        address: record.ip.zip(net.subnet.map(|s| s.prefix_len())).filter(|_| configured),
        address6: record.ip6.zip(net.subnet6.map(|s| s.prefix_len())).filter(|_| configured),
        default_gateway: default_route(net).filter(|_| configured),
        // On an internal network there is no default route to carry them.
        routes: match gateway {
            Some(gw) if net.internal => to
                .routes
                .iter()
                .filter_map(|s| Some((s.net().addr(), s.prefix_len(), routes_via(net, s.net().addr(), gw)?)))
                .collect(),
            _ => Vec::new(),
        },
    }
}

/// The gateway a container's route to `dst` goes through: IPv4 by the
/// gateway's address, IPv6 (on a dual-stack network) by its link-local
/// one, which needs no prefix on-link yet (the advertisement that gives
/// that may come later).
pub fn routes_via(net: &NetworkConfig, dst: IpAddr, gateway: IpAddr) -> Option<IpAddr> {
    match dst {
        IpAddr::V4(_) => gateway.is_ipv4().then_some(gateway),
        IpAddr::V6(_) => {
            net.subnet6.map(|_| IpAddr::V6(crate::switch::guard::link_local(crate::switch::Gateway::mac_for(net.vni))))
        }
    }
}

/// The gateway a container's default route goes to, unless the network is internal.
pub fn default_route(net: &NetworkConfig) -> Option<IpAddr> {
    net.gateway.filter(|_| !net.internal)
}

/// The container-side name `record` will get: as recorded, or the lowest free
/// `ethN` in its netns.
pub fn pick_ifname(record: &EndpointRecord) -> Result<IfName, AttachError> {
    if let Some(name) = &record.ifname {
        return Ok(name.clone());
    }
    match &record.netns {
        Some(ns) => Ok(netns::run_in(ns, first_free_eth)?),
        None => Ok(IfName::eth(0)),
    }
}

/// The name of the interface with `mac` in namespace `netns` (where dockerd
/// moved and renamed a TAP switchd made).
pub fn find_by_mac(netns: &str, mac: MacAddr) -> Option<IfName> {
    netns::run_in(netns, || sys::if_names().into_iter().find(|n| sys::if_hwaddr(n).is_ok_and(|m| m == mac.0)))
        .ok()
        .flatten()
        .and_then(|n| IfName::new(&n).ok())
}

/// Settles the names of the interfaces `record` will use (the container's
/// `ethN`, a veth's host side) before anything is made, and says which one
/// [`open`] will create: what a crash would leave, to be journaled first.
/// `None`: it takes over interfaces that exist, or makes nothing.
pub fn prepare(record: &mut EndpointRecord) -> Result<Option<Device>, AttachError> {
    match record.kind {
        PortKind::Tap => {
            let netns = record.netns.clone().expect("validation requires a netns for a tap port");
            let wanted = record.ifname.clone();
            let (ifname, exists) = netns::run_in(&netns, || {
                let name = wanted.unwrap_or_else(first_free_eth);
                let exists = sys::if_index(name.as_str()).is_some();
                (name, exists)
            })?;
            record.ifname = Some(ifname.clone());
            Ok((!exists).then_some(Device::InNetns { netns, ifname }))
        }
        PortKind::Veth => {
            let host = record.host_ifname.clone().unwrap_or_else(fresh_host_ifname);
            record.host_ifname = Some(host.clone());
            if sys::if_index(host.as_str()).is_some() || record.netns.is_none() {
                return Ok(None);
            }
            record.ifname = Some(pick_ifname(record)?);
            Ok(Some(Device::Host { ifname: host }))
        }
        PortKind::Uplink => Ok(None),
    }
}

/// A host-side veth name no one uses: `sdv` and 8 hex digits.
pub fn fresh_host_ifname() -> IfName {
    loop {
        let name = IfName::new(&format!("sdv{:08x}", random_u64() as u32)).expect("11 safe bytes");
        if sys::if_index(name.as_str()).is_none() {
            return name;
        }
    }
}

/// Opens (creating if needed) the device of `record` and returns the fd the
/// data plane switches. Fills in what it learns: the interface name, and for
/// an interface that already existed, its real MAC and address. Runs system
/// calls and spawns a thread: call it off the async runtime.
/// A TAP comes with `queues` queues (one per data-plane worker); a veth or
/// uplink with its one packet socket.
pub fn open(record: &mut EndpointRecord, to: Attachment, queues: usize) -> Result<Vec<OwnedFd>, AttachError> {
    match record.kind {
        PortKind::Tap => open_tap(record, to, queues),
        PortKind::Veth | PortKind::Uplink => open_host_interface(record, to).map(|fd| vec![fd]),
    }
}

fn open_tap(record: &mut EndpointRecord, to: Attachment, queues: usize) -> Result<Vec<OwnedFd>, AttachError> {
    let net = to.net;
    let netns = record.netns.clone().expect("validation requires a netns for a tap port");
    let ifname = pick_ifname(record)?;
    let planned = record.clone();
    let (fds, facts) = netns::run_in(&netns, || -> Result<_, AttachError> {
        let (fds, attached) = tap::attach(&ifname, queues)?;
        if attached == Attached::Existing {
            return Ok((fds, Some(read_facts(&ifname, net))));
        }
        if let Err(e) = netlink::configure(&link_setup(ifname.as_str(), None, &planned, to)) {
            // Not persistent any more: the TAP vanishes when its fds close.
            let _ = tap::set_persist(&fds[0], false);
            return Err(setup_err(format!("configuring {ifname} in netns {netns:?}"))(e));
        }
        Ok((fds, None))
    })??;
    if let Some((mac, ip)) = facts {
        record.mac = mac.or(record.mac);
        // A DHCP client may not have its address (yet): IPAM's stays.
        if !record.dhcp {
            record.ip = ip;
        }
    }
    record.ifname = Some(ifname);
    Ok(fds)
}

/// What an existing interface really has: its MAC, and its address in the
/// network's subnet (if any).
fn read_facts(ifname: &IfName, net: &NetworkConfig) -> (Option<MacAddr>, Option<IpAddr>) {
    let mac = sys::if_hwaddr(ifname.as_str()).ok().map(MacAddr);
    let ip = net.subnet.and_then(|s| netlink::addresses(ifname.as_str()).ok()?.into_iter().find(|ip| s.contains(*ip)));
    (mac, ip)
}

fn open_host_interface(record: &mut EndpointRecord, to: Attachment) -> Result<OwnedFd, AttachError> {
    let host = match &record.host_ifname {
        Some(name) => name.clone(),
        None => fresh_host_ifname(),
    };
    if sys::if_index(host.as_str()).is_none() {
        match (&record.netns, record.kind) {
            (Some(netns), PortKind::Veth) => {
                let netns = netns.clone();
                create_veth_pair(&host, &netns, record, to)?;
                record.owned = true;
            }
            _ => return Err(AttachError::NoHostInterface(host.to_string())),
        }
    }
    record.host_ifname = Some(host.clone());
    netlink::set_up(host.as_str()).map_err(setup_err(format!("bringing up {host}")))?;
    packet::open(host.as_str()).map_err(setup_err(format!("opening a packet socket on {host}")))
}

/// `ip link add HOST type veth peer name IFNAME netns NETNS`, then the peer's
/// configuration inside the netns. Undone if any step fails.
fn create_veth_pair(
    host: &IfName,
    netns: &str,
    record: &mut EndpointRecord,
    to: Attachment,
) -> Result<(), AttachError> {
    let ifname = pick_ifname(record)?;
    let temp = format!("sdp{:08x}", random_u64() as u32);
    netlink::create_veth(host.as_str(), &temp).map_err(setup_err(format!("creating veth pair {host}")))?;
    let configured = (|| {
        let ns_fd = sys::open(&netns::path_of(netns).to_string_lossy(), libc::O_RDONLY)
            .map_err(setup_err(format!("opening netns {netns:?}")))?;
        netlink::move_to_netns(&temp, ns_fd.as_raw_fd())
            .map_err(setup_err(format!("moving {temp} into netns {netns:?}")))?;
        let setup = link_setup(&temp, Some(&ifname), record, to);
        netns::run_in(netns, || netlink::configure(&setup))?
            .map_err(setup_err(format!("configuring {ifname} in netns {netns:?}")))
    })();
    if let Err(e) = configured {
        let _ = netlink::delete(host.as_str());
        return Err(e);
    }
    record.ifname = Some(ifname);
    Ok(())
}

/// What disconnecting `record` deletes: the TAP in the container, or a
/// veth pair switchd created. Interfaces switchd only took over stay.
pub fn made_device(record: &EndpointRecord) -> Option<Device> {
    match (record.kind, &record.netns, &record.ifname, &record.host_ifname) {
        (PortKind::Tap, Some(netns), Some(ifname), _) => {
            Some(Device::InNetns { netns: netns.clone(), ifname: ifname.clone() })
        }
        (PortKind::Veth, _, _, Some(host)) if record.owned => Some(Device::Host { ifname: host.clone() }),
        _ => None,
    }
}

/// Deletes `device`; one that is gone already (or whose container is) is fine.
pub fn delete(device: &Device) -> Result<(), AttachError> {
    let ignore_missing = |r: io::Result<()>| match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    };
    match device {
        Device::InNetns { netns, ifname } => {
            match netns::run_in(netns, || ignore_missing(netlink::delete(ifname.as_str()))) {
                // The container is gone, and its interfaces with it.
                Err(NetnsError::NotFound(_)) => Ok(()),
                other => other?.map_err(setup_err(format!("deleting {device}"))),
            }
        }
        Device::Host { ifname } => {
            ignore_missing(netlink::delete(ifname.as_str())).map_err(setup_err(format!("deleting {device}")))
        }
    }
}
