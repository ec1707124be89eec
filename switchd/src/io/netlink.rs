//! Interface configuration over rtnetlink (no shelling out to `ip`), in the
//! calling thread's network namespace: run these inside
//! [`super::netns::run_in`] to configure a container's side.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::os::fd::RawFd;

use futures::TryStreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressFlags};
use rtnetlink::{Handle, LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::sys;

/// How a container's interface is set up.
#[derive(Debug, Clone)]
pub struct LinkSetup {
    /// Its current name.
    pub name: String,
    /// The name it gets, if different (a veth peer arrives under a temporary name).
    pub rename: Option<String>,
    pub mac: [u8; 6],
    pub mtu: u32,
    /// Address and prefix length.
    pub address: Option<(IpAddr, u8)>,
    /// An IPv6 address given to it, and its prefix length: the interface
    /// then makes none of its own from router advertisements (see [`configure`]).
    pub address6: Option<(Ipv6Addr, u8)>,
    /// Installed as the default route unless the namespace has one already.
    pub default_gateway: Option<IpAddr>,
    /// Routes to other networks through the gateway: (destination, prefix, via).
    pub routes: Vec<(IpAddr, u8, IpAddr)>,
}

fn nl_error(e: rtnetlink::Error) -> io::Error {
    match e {
        rtnetlink::Error::NetlinkError(msg) => msg.to_io(),
        other => io::Error::other(other.to_string()),
    }
}

/// Runs `f` with a netlink handle whose socket lives in this thread's netns.
fn with_handle<F, Fut, T>(f: F) -> io::Result<T>
where
    F: FnOnce(Handle) -> Fut,
    Fut: Future<Output = Result<T, rtnetlink::Error>>,
{
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    rt.block_on(async {
        let (connection, handle, _) = rtnetlink::new_connection()?;
        let task = tokio::spawn(connection);
        let result = f(handle).await.map_err(nl_error);
        task.abort();
        result
    })
}

/// A route the builder refused (a family mismatch: a bug here, not input).
fn invalid_route(e: impl std::fmt::Display) -> rtnetlink::Error {
    rtnetlink::Error::InvalidNla(e.to_string())
}

fn index_of(name: &str) -> io::Result<u32> {
    sys::if_index(name).ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no interface {name}")))
}

/// Names, addresses and brings up an interface.
pub fn configure(setup: &LinkSetup) -> io::Result<()> {
    let index = index_of(&setup.name)?;
    if setup.address6.is_some() {
        // Its one global address: no SLAAC one beside it, which would
        // compete as a source. (The setting stays with the interface
        // through its rename.)
        let path = format!("/proc/sys/net/ipv6/conf/{}/autoconf", setup.name);
        std::fs::write(&path, "0")
            .map_err(|e| io::Error::new(e.kind(), format!("{path} (is IPv6 off in the namespace?): {e}")))?;
    }
    with_handle(|handle| async move {
        let mut link = LinkUnspec::new_with_index(index).address(setup.mac.to_vec()).mtu(setup.mtu);
        if let Some(name) = &setup.rename {
            link = link.name(name.clone());
        }
        handle.link().set(link.build()).execute().await?;
        if let Some((ip, prefix)) = setup.address {
            handle.address().add(index, ip, prefix).replace().execute().await?;
        }
        if let Some((ip6, prefix)) = setup.address6 {
            // No duplicate address detection to wait out: switchd checked
            // that it is no other endpoint's.
            let mut add = handle.address().add(index, IpAddr::V6(ip6), prefix).replace();
            add.message_mut().attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
            add.execute().await?;
        }
        handle.link().set(LinkUnspec::new_with_index(index).up().build()).execute().await?;
        let default = setup.default_gateway.map(|gw| (None, gw));
        let others = setup.routes.iter().map(|(dst, len, gw)| (Some((*dst, *len)), *gw));
        for (destination, via) in default.into_iter().chain(others) {
            let mut route = RouteMessageBuilder::<IpAddr>::new();
            if let Some((dst, len)) = destination {
                route = route.destination_prefix(dst, len).map_err(invalid_route)?;
            }
            let route = route.gateway(via).map_err(invalid_route)?.output_interface(index).build();
            // Without `replace`, an existing route (from the container's
            // first network) wins, as Docker does.
            match handle.route().add(route).execute().await {
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code().abs() == libc::EEXIST => {}
                // A container with IPv6 off takes its IPv4 all the same.
                Err(e) if via.is_ipv6() => tracing::warn!("{}: no IPv6 route via {via}: {e}", setup.name),
                other => other?,
            }
        }
        Ok(())
    })
}

/// Adds (or, with `add` false, deletes) the route to `dst/len` via `via` on
/// interface `name`. Adding a route that exists, or deleting one that does
/// not, is not an error.
pub fn change_route(name: &str, dst: IpAddr, len: u8, via: IpAddr, add: bool) -> io::Result<()> {
    let index = index_of(name)?;
    with_handle(|handle| async move {
        let route = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(dst, len)
            .map_err(invalid_route)?
            .gateway(via)
            .map_err(invalid_route)?
            .output_interface(index)
            .build();
        let result =
            if add { handle.route().add(route).execute().await } else { handle.route().del(route).execute().await };
        match result {
            Err(rtnetlink::Error::NetlinkError(e)) if [libc::EEXIST, libc::ESRCH].contains(&e.raw_code().abs()) => {
                Ok(())
            }
            other => other,
        }
    })
}

/// Brings an interface up.
pub fn set_up(name: &str) -> io::Result<()> {
    let index = index_of(name)?;
    with_handle(
        |handle| async move { handle.link().set(LinkUnspec::new_with_index(index).up().build()).execute().await },
    )
}

/// Deletes an interface (and, for a veth, its peer).
pub fn delete(name: &str) -> io::Result<()> {
    let index = index_of(name)?;
    with_handle(|handle| async move { handle.link().del(index).execute().await })
}

/// Creates the veth pair `name` <-> `peer`, both here, down.
pub fn create_veth(name: &str, peer: &str) -> io::Result<()> {
    with_handle(|handle| async move { handle.link().add(LinkVeth::new(name, peer).build()).execute().await })
}

/// Moves interface `name` into the namespace open at `netns_fd`.
pub fn move_to_netns(name: &str, netns_fd: RawFd) -> io::Result<()> {
    let index = index_of(name)?;
    with_handle(|handle| async move {
        handle.link().set(LinkUnspec::new_with_index(index).setns_by_fd(netns_fd).build()).execute().await
    })
}

/// The IP addresses on interface `name`.
pub fn addresses(name: &str) -> io::Result<Vec<IpAddr>> {
    let index = index_of(name)?;
    with_handle(|handle| async move {
        let messages: Vec<_> = handle.address().get().set_link_index_filter(index).execute().try_collect().await?;
        Ok(messages
            .into_iter()
            .flat_map(|m| m.attributes)
            .filter_map(|a| match a {
                AddressAttribute::Address(ip) => Some(ip),
                _ => None,
            })
            .collect())
    })
}

/// Makes the routes via `via` on interface `name` exactly `wanted`
/// (destination, prefix length), default route aside: missing ones are
/// added, others via `via` deleted. Derived from the state alone, so after
/// a crash between a state change and the routes it implies, running it
/// again puts them right.
pub fn sync_routes(name: &str, via: IpAddr, wanted: &[(IpAddr, u8)]) -> io::Result<()> {
    use netlink_packet_route::route::{RouteAddress, RouteAttribute};
    let index = index_of(name)?;
    let present = with_handle(|handle| async move {
        let query = match via {
            IpAddr::V4(_) => RouteMessageBuilder::<std::net::Ipv4Addr>::new().build(),
            IpAddr::V6(_) => RouteMessageBuilder::<std::net::Ipv6Addr>::new().build(),
        };
        let messages: Vec<_> = handle.route().get(query).execute().try_collect().await?;
        Ok(messages
            .into_iter()
            .filter_map(|m| {
                let len = m.header.destination_prefix_length;
                let (mut dst, mut gw, mut oif) = (None, None, None);
                for a in m.attributes {
                    match a {
                        RouteAttribute::Destination(RouteAddress::Inet(ip)) => dst = Some(IpAddr::V4(ip)),
                        RouteAttribute::Destination(RouteAddress::Inet6(ip)) => dst = Some(IpAddr::V6(ip)),
                        RouteAttribute::Gateway(RouteAddress::Inet(ip)) => gw = Some(IpAddr::V4(ip)),
                        RouteAttribute::Gateway(RouteAddress::Inet6(ip)) => gw = Some(IpAddr::V6(ip)),
                        RouteAttribute::Oif(i) => oif = Some(i),
                        _ => {}
                    }
                }
                (len > 0 && gw == Some(via) && oif == Some(index)).then_some((dst?, len))
            })
            .collect::<Vec<_>>())
    })?;
    for stale in present.iter().filter(|r| !wanted.contains(r)) {
        change_route(name, stale.0, stale.1, via, false)?;
    }
    for missing in wanted.iter().filter(|r| !present.contains(r)) {
        change_route(name, missing.0, missing.1, via, true)?;
    }
    Ok(())
}

/// Deletes the neighbour entries of interface `name` that are waiting on
/// an answer (incomplete, probing, failed, or stale and about to probe):
/// the next packet to each asks again at once. A restarted switchd does
/// this for the interfaces it reattaches, since a question the container
/// asked while switchd was down went unanswered and the kernel would only
/// ask again a second later (`retrans_time`). Returns how many went.
pub fn forget_unresolved_neighbours(name: &str) -> io::Result<usize> {
    use netlink_packet_route::neighbour::NeighbourState;
    let index = index_of(name)?;
    with_handle(|handle| async move {
        let entries: Vec<_> = handle.neighbours().get().execute().try_collect().await?;
        let unresolved: Vec<_> = entries
            .into_iter()
            .filter(|m| m.header.ifindex == index)
            .filter(|m| {
                matches!(
                    m.header.state,
                    NeighbourState::Incomplete
                        | NeighbourState::Stale
                        | NeighbourState::Delay
                        | NeighbourState::Probe
                        | NeighbourState::Failed
                )
            })
            .collect();
        let count = unresolved.len();
        for m in unresolved {
            // Gone already (resolved or timed out meanwhile) is as good.
            let _ = handle.neighbours().del(m).execute().await;
        }
        Ok(count)
    })
}
