//! Everything the control plane asks of the host, behind one trait
//! (firecracker's habit of keeping device setup apart from VMM logic): the
//! namespaces and interfaces of endpoints, the gateways' TAPs, the
//! containers' routes and resolv.conf. [`HostSystem`] does it with netlink,
//! `setns` and files; the daemon's unit tests use an in-memory fake, so the
//! logic above (journaling, IPAM, refusals, reconciling at start) is tested
//! without root.

use std::fmt::Debug;
use std::io;
use std::net::IpAddr;
use std::path::PathBuf;

use switchd_config::{IfName, MacAddr};

use super::attach::{self, AttachError, Attachment};
use super::state::{Device, EndpointRecord};
use crate::dataplane::{FdPort, Port};
use crate::io::gateway::{GatewayStack, StackAddresses, TablesSource};
use crate::io::netns::{self, NetnsError, NetnsId};
use crate::io::nftables::{self, Dnat};
use crate::switch::NetworkId;

/// A gateway's own kernel stack and the port it is switched through.
pub type GatewayParts = (GatewayStack, Box<dyn Port>);

/// The host's namespaces, interfaces and files, as the daemon uses them.
/// Methods run system calls and may block: call them off the async runtime.
pub trait System: Send + Sync + Debug {
    /// The namespace a name or path leads to now.
    fn identify_netns(&self, netns: &str) -> Result<NetnsId, NetnsError>;

    /// Settles the interface names `record` will use, and says which
    /// device [`System::open`] will create (to be journaled first); `None`
    /// when it only takes over what exists. See [`attach::prepare`].
    fn prepare(&self, record: &mut EndpointRecord) -> Result<Option<Device>, AttachError>;

    /// Opens (creating if needed) the endpoint's device, filling in what
    /// it learns (names, an existing interface's MAC and address): a TAP's
    /// `queues` queues, or the one device of another kind.
    fn open(
        &self,
        record: &mut EndpointRecord,
        to: Attachment,
        queues: usize,
    ) -> Result<Vec<Box<dyn Port>>, AttachError>;

    /// Deletes a device switchd made; one already gone is fine.
    fn delete(&self, device: &Device) -> Result<(), AttachError>;

    /// The container-side name `record` would get (`script attach`).
    fn pick_ifname(&self, record: &EndpointRecord) -> Result<IfName, AttachError>;

    /// A host-side veth name no interface has.
    fn fresh_host_ifname(&self) -> IfName;

    /// The interface with `mac` inside `netns` (where dockerd put a TAP).
    fn find_by_mac(&self, netns: &str, mac: MacAddr) -> Option<IfName>;

    /// Whether a host interface of this name exists.
    fn host_interface_exists(&self, name: &IfName) -> bool;

    /// A TAP in switchd's own namespace: a network's host side, or a
    /// Docker container's interface before dockerd moves it.
    fn host_tap(
        &self,
        name: &IfName,
        addresses: crate::io::gateway::StackAddresses,
        mac: MacAddr,
        mtu: u32,
        persist: bool,
        queues: usize,
    ) -> io::Result<Vec<Box<dyn Port>>>;

    /// A gateway's kernel stack for DNS over TCP (see `io::gateway::start`).
    #[allow(clippy::too_many_arguments)]
    fn gateway_stack(
        &self,
        network: NetworkId,
        addresses: StackAddresses,
        mac: MacAddr,
        mtu: u32,
        tables: TablesSource,
        runtime: &tokio::runtime::Handle,
    ) -> io::Result<GatewayParts>;

    /// Makes `ifname`'s routes in `netns` through `via` exactly `wanted`.
    fn sync_routes(&self, netns: &str, ifname: &IfName, via: IpAddr, wanted: &[(IpAddr, u8)]) -> Result<(), String>;

    /// Where `ip netns exec` finds a named namespace's resolv.conf; `None`
    /// for a namespace given by path (its owner configures its resolver).
    fn resolv_conf_path(&self, netns: &str) -> Option<PathBuf>;

    /// Makes the container's kernel ask again, at once, for the neighbours
    /// it was still resolving on `ifname` (see
    /// `netlink::forget_unresolved_neighbours`).
    fn forget_unresolved_neighbours(&self, _netns: &str, _ifname: &IfName) -> Result<usize, String> {
        Ok(0)
    }

    /// Makes the routing mesh's DNAT rules in the host's nftables exactly
    /// `rules` (see [`crate::io::nftables`]), forwarding on when there are any.
    fn set_mesh(&self, rules: &[Dnat]) -> Result<(), String>;
}

/// The real host: netlink, namespaces entered by `setns`, TAPs and packet
/// sockets (see [`attach`]).
#[derive(Debug, Default)]
pub struct HostSystem {
    /// The socket that owns switchd's nftables table, once there is one.
    mesh: std::sync::Mutex<Option<nftables::MeshTable>>,
}

impl System for HostSystem {
    fn identify_netns(&self, netns: &str) -> Result<NetnsId, NetnsError> {
        netns::identify(netns)
    }

    fn prepare(&self, record: &mut EndpointRecord) -> Result<Option<Device>, AttachError> {
        attach::prepare(record)
    }

    fn open(
        &self,
        record: &mut EndpointRecord,
        to: Attachment,
        queues: usize,
    ) -> Result<Vec<Box<dyn Port>>, AttachError> {
        Ok(attach::open(record, to, queues)?.into_iter().map(|fd| Box::new(FdPort(fd)) as Box<dyn Port>).collect())
    }

    fn delete(&self, device: &Device) -> Result<(), AttachError> {
        attach::delete(device)
    }

    fn pick_ifname(&self, record: &EndpointRecord) -> Result<IfName, AttachError> {
        attach::pick_ifname(record)
    }

    fn fresh_host_ifname(&self) -> IfName {
        attach::fresh_host_ifname()
    }

    fn find_by_mac(&self, netns: &str, mac: MacAddr) -> Option<IfName> {
        attach::find_by_mac(netns, mac)
    }

    fn host_interface_exists(&self, name: &IfName) -> bool {
        crate::io::sys::if_index(name.as_str()).is_some()
    }

    fn host_tap(
        &self,
        name: &IfName,
        addresses: crate::io::gateway::StackAddresses,
        mac: MacAddr,
        mtu: u32,
        persist: bool,
        queues: usize,
    ) -> io::Result<Vec<Box<dyn Port>>> {
        let fds = crate::io::gateway::host_tap(name, addresses, mac, mtu, persist, queues)?;
        Ok(fds.into_iter().map(|fd| Box::new(FdPort(fd)) as Box<dyn Port>).collect())
    }

    fn gateway_stack(
        &self,
        network: NetworkId,
        addresses: StackAddresses,
        mac: MacAddr,
        mtu: u32,
        tables: TablesSource,
        runtime: &tokio::runtime::Handle,
    ) -> io::Result<GatewayParts> {
        let (stack, tap) = crate::io::gateway::start(network, addresses, mac, mtu, tables, runtime)?;
        Ok((stack, Box::new(FdPort(tap))))
    }

    fn sync_routes(&self, netns: &str, ifname: &IfName, via: IpAddr, wanted: &[(IpAddr, u8)]) -> Result<(), String> {
        let synced = netns::run_in(netns, || crate::io::netlink::sync_routes(ifname.as_str(), via, wanted));
        synced.map_err(|e| e.to_string())?.map_err(|e| e.to_string())
    }

    fn resolv_conf_path(&self, netns: &str) -> Option<PathBuf> {
        (!netns.contains('/')).then(|| PathBuf::from("/etc/netns").join(netns).join("resolv.conf"))
    }

    fn forget_unresolved_neighbours(&self, netns: &str, ifname: &IfName) -> Result<usize, String> {
        let done = netns::run_in(netns, || crate::io::netlink::forget_unresolved_neighbours(ifname.as_str()));
        done.map_err(|e| e.to_string())?.map_err(|e| e.to_string())
    }

    fn set_mesh(&self, rules: &[Dnat]) -> Result<(), String> {
        let mut table = self.mesh.lock().unwrap_or_else(|e| e.into_inner());
        if table.is_none() {
            if rules.is_empty() {
                // Nothing to remove: a table of switchd's dies with its socket.
                return Ok(());
            }
            *table = Some(nftables::MeshTable::open().map_err(|e| format!("nf_tables netlink socket: {e}"))?);
        }
        // The published ports' connections are forwarded into the network.
        for v6 in [false, true] {
            if rules.iter().any(|r| r.vip.is_ipv6() == v6) {
                nftables::enable_forwarding(v6).map_err(|e| format!("forwarding: {e}"))?;
            }
        }
        table.as_mut().expect("opened").replace(rules).map_err(|e| format!("nf_tables: {e}"))
    }
}
