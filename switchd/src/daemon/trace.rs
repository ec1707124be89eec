//! `switchctl trace`: what would happen to a frame a container sends, and
//! why, decided by the real switch without side effects, the way
//! `ovs-appctl ofproto/trace` answers for Open vSwitch.
//!
//! The frame is built as the container's stack would send it (ARP first
//! when the destination's MAC is not yet known to it, then the packet),
//! and each is handed to a copy of the data plane's switch: it learns,
//! counts and ages on the copy only, and nothing is sent. The decisions
//! are read from the lookups made before (the forwarding table's entry for
//! the destination) and from the plan the copy returns (its action, its
//! targets, the wire settings of a VTEP target).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use switchd_config::MacAddr;
use switchd_wire::ip::Protocol;
use switchd_wire::{arp, ipv4, ipv6, vnet};

use super::Daemon;
use super::error::{DaemonError, OpResult};
use crate::control::api::{LiveFrame, LiveRequest, Trace, TraceRequest, TraceStep};
use crate::dataplane::Capture;
use crate::dataplane::live::{self, LiveTrace};
use crate::switch::balance::NatAddr;
use crate::switch::{Action, DropReason, Gateway, Location, Next, Plan, Target};

/// A container's view of where a packet goes first.
struct Destination {
    ip: IpAddr,
    /// The MAC the frame is addressed to when the container needs no ARP
    /// for it, and why (the gateway for another subnet, or a MAC given).
    mac: Option<(MacAddr, String)>,
}

impl Daemon {
    pub(super) fn trace(&self, req: &TraceRequest) -> OpResult<Trace> {
        let bad = |m: String| DaemonError::Trace(m);
        let net = self.networks.get(&req.network)?;
        if let Some(vtep) = req.from_vtep {
            return self.trace_datagram(net, vtep, req);
        }
        let from = self
            .endpoints
            .on(&req.network)
            .find(|e| e.record.name.as_str() == req.from)
            .ok_or_else(|| bad(format!("no container {:?} on network {:?} on this host", req.from, req.network)))?;
        let own_mac = from.record.mac.ok_or_else(|| bad(format!("{} has no MAC yet", req.from)))?;
        // IPv6 when the destination or the source given is: the container's
        // own address then is its IPv6 one (given, or its MAC's SLAAC one).
        let v6 = req.to.parse::<Ipv6Addr>().is_ok() || req.src_ip.is_some_and(|ip| ip.is_ipv6());
        let own_ip = address(from.record.ip, from.record.ip6, own_mac, &net.config, v6);
        let src_mac = match &req.src_mac {
            Some(m) => m.parse::<MacAddr>().map_err(|_| bad(format!("--src-mac {m:?} is not a MAC address")))?,
            None => own_mac,
        };
        let family = if v6 { "IPv6" } else { "IPv4" };
        let src_ip = match req.src_ip {
            Some(ip) if ip.is_ipv6() != v6 => {
                return Err(bad(format!("--src-ip {ip} is not an {family} address, as the destination is")));
            }
            Some(ip) => ip,
            None => own_ip.ok_or_else(|| bad(format!("{} has no {family} address: give --src-ip", req.from)))?,
        };
        let proto = match req.proto.as_deref().unwrap_or("icmp") {
            "icmp" => Protocol::Icmp,
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            other => return Err(bad(format!("--proto {other:?}: tcp, udp or icmp"))),
        };
        let headers = if v6 { 48 } else { 28 };
        let size = req.size.unwrap_or(if v6 { 104 } else { 84 });
        if !(headers..=65_535).contains(&size) {
            return Err(bad(format!("--size {size}: an {family} packet of {headers} to 65535 bytes")));
        }
        let to = self.destination(net, &req.to, v6)?;
        if to.ip.is_ipv6() != v6 {
            return Err(bad(format!("{} is not an {family} address, as the source is", to.ip)));
        }

        let mut steps = Vec::new();
        let mut step = |what: &str, detail: String| steps.push(TraceStep { what: what.into(), detail });
        let c = &net.config;
        step("ingress", format!("port {} on network {} (VNI {}, MTU {})", from.port_label(), c.name, c.vni, c.mtu));
        let spoofed = src_mac != own_mac || own_ip.is_some_and(|ip| ip != src_ip);
        if spoofed {
            step("source", format!("as {src_mac} {src_ip}, not the port's own {own_mac} {}", show(own_ip)));
        }
        // A copy of the switch: what it learns and counts stays there.
        let mut switch = self.dataplane.switch_copy();
        let now = Instant::now();
        let mut plan = Plan::default();
        let mac = match to.mac {
            Some((mac, why)) => {
                step("neighbour", why);
                mac
            }
            None => {
                // The container asks first; the answer tells it the MAC.
                let asking = to.ip;
                let (frame, question) = match (src_ip, asking) {
                    (IpAddr::V4(src), IpAddr::V4(target)) => (arp_request(src_mac, src, target), "ARP who-has"),
                    (IpAddr::V6(src), IpAddr::V6(target)) => {
                        (solicitation(src_mac, src, target), "neighbour solicitation for")
                    }
                    _ => unreachable!("one family, checked above"),
                };
                switch.handle_frame(now, from.port, &frame, &mut plan);
                match plan.action {
                    Action::Answer { owner, .. } => {
                        step("neighbour", format!("{question} {asking}: answered by switchd for its owner, {owner}"));
                        owner
                    }
                    Action::Drop(reason) => {
                        step("neighbour", format!("{question} {asking}: dropped ({})", reason.as_str()));
                        return Ok(verdict(steps, false, format!("dropped: {}", reason.as_str())));
                    }
                    _ => {
                        let targets = self.describe_targets(&plan);
                        step("neighbour", format!("{question} {asking}: nobody known has it; flooded to {targets}"));
                        return Ok(verdict(
                            steps,
                            false,
                            format!(
                                "switchd knows no owner of {asking}: the container sends only once one replies \
                                 (give its MAC with --to to trace past the ARP)"
                            ),
                        ));
                    }
                }
            }
        };
        let entry = switch.fdb(net.id, now).into_iter().find(|(m, ..)| *m == mac);
        step(
            "fdb",
            match &entry {
                None if mac == Gateway::mac_for(c.vni) => format!("{mac}: the gateway's own MAC (switchd routes it)"),
                Some((_, at, kind, age)) => {
                    format!("{mac}: {} ({}, age {:.1} s)", self.location(at), kind.as_str(), age.as_secs_f64())
                }
                None => format!("{mac}: not in the table (unknown unicast is flooded)"),
            },
        );
        let frame = packet(src_mac, mac, src_ip, to.ip, proto, req.dport.unwrap_or(80), size, c.mtu.get() as usize);
        let segmented = size > c.mtu.get() as usize && proto == Protocol::Tcp;
        let tcp_headers = headers + 12;
        step(
            "mtu",
            match (size <= c.mtu.get() as usize, segmented) {
                (true, _) => format!("{size} bytes fit the MTU {}", c.mtu),
                (false, true) => format!(
                    "{size} bytes of TCP (TSO) are cut into {} segments of at most {} bytes where they leave",
                    (size - tcp_headers).div_ceil(c.mtu.get() as usize - tcp_headers),
                    c.mtu
                ),
                (false, false) => format!("{size} bytes exceed the MTU {} (not TCP: cannot be segmented)", c.mtu),
            },
        );
        switch.handle_frame(now, from.port, &frame, &mut plan);
        self.policy_step(&switch, &frame[switchd_wire::vnet::HEADER_LEN..], &plan, &mut step);
        let (delivered, outcome) = self.decided(&plan, &mut step);
        Ok(verdict(steps, delivered, outcome))
    }

    /// Starts a live trace of the real frames `req` asks for.
    pub fn trace_live(&self, req: &LiveRequest) -> OpResult<LiveTrace> {
        let bad = |m: String| DaemonError::Trace(m);
        let mut filter = live::Filter::default();
        if let Some(name) = &req.network {
            let net = self.networks.get(name)?;
            let ports = self.endpoints.on(name).map(|e| e.port).collect();
            filter.network = Some((net.id, net.config.vni.get(), ports));
        }
        if let Some(name) = &req.endpoint {
            let of = || self.endpoints.iter().filter(|e| e.record.name.as_str() == name);
            let ports: Vec<_> = of().map(|e| e.port).collect();
            if ports.is_empty() {
                return Err(bad(format!("no endpoint {name:?} on this host")));
            }
            filter.endpoint = Some((ports, of().filter_map(|e| e.record.mac).collect()));
        }
        if let Some(host) = &req.host {
            let vteps = self.host_vteps(host).ok_or_else(|| bad(format!("no peer host {host:?} known here")))?;
            filter.host = Some(vteps);
        }
        filter.proto = match req.proto.as_deref() {
            None => None,
            Some("icmp") => Some(live::Proto::Ip(1)),
            Some("tcp") => Some(live::Proto::Ip(6)),
            Some("udp") => Some(live::Proto::Ip(17)),
            Some("arp") => Some(live::Proto::Arp),
            Some(other) => return Err(bad(format!("--proto {other:?}: tcp, udp, icmp or arp"))),
        };
        self.dataplane.trace_live(filter, req.count).ok_or_else(|| {
            bad(format!("{} live traces run already (the most at once): try again later", live::MAX_TRACES))
        })
    }

    /// A peer host (by name or underlay address): its address and VTEPs.
    fn host_vteps(&self, host: &str) -> Option<(IpAddr, Vec<crate::switch::VtepId>)> {
        let ip = host.parse::<IpAddr>().ok();
        let peers =
            self.cluster.peers.iter().filter(|p| {
                Some(p.config.underlay_ip) == ip || p.config.name.as_ref().is_some_and(|n| n.as_str() == host)
            });
        let gossiped = self.cluster.vteps.iter().filter(|(name, v)| Some(v.addr.ip()) == ip || name.as_str() == host);
        let found: Vec<(IpAddr, _)> =
            peers.map(|p| (p.config.underlay_ip, p.vtep)).chain(gossiped.map(|(_, v)| (v.addr.ip(), v.id))).collect();
        let addr = found.first().map(|(a, _)| *a).or(ip)?;
        Some((addr, found.into_iter().map(|(_, id)| id).collect()))
    }

    /// What a live trace saw: the real frame and the real decision.
    pub fn explain_seen(&self, seen: &live::Seen) -> LiveFrame {
        let mut steps = Vec::new();
        let mut step = |what: &str, detail: String| steps.push(TraceStep { what: what.into(), detail });
        match seen.origin {
            live::Origin::Port(port) => {
                let at = match self.endpoints.by_port(port) {
                    Some(e) => format!("port {} on network {}", e.port_label(), e.record.network),
                    None => "a port of this host (a gateway or host-access port)".into(),
                };
                step("ingress", format!("{at}, {} bytes", seen.len));
            }
            live::Origin::Vtep(ip) => {
                let vni = seen.vni.map_or_else(String::new, |v| format!(", VNI {v}"));
                let sealed = if seen.plan.sealed { "sealed " } else { "" };
                step("ingress", format!("a {sealed}VXLAN datagram from {ip}{vni}, {} bytes", seen.len));
                if seen.plan.sealed {
                    step("open", "opened: its tag verified".into());
                }
            }
        }
        let (delivered, outcome) = self.decided(&seen.plan, &mut step);
        LiveFrame {
            at_us: seen.at_us,
            worker: seen.worker,
            frame: live::summarize(&seen.head),
            trace: verdict(steps, delivered, outcome),
        }
    }

    /// Starts capturing an endpoint's port (on `network`, needed when it
    /// is on several), or, when `target` is no endpoint here but a network,
    /// every port of that network here.
    pub fn capture(&self, target: &str, network: Option<&str>) -> OpResult<Capture> {
        let bad = |m: String| DaemonError::Trace(m);
        let mut found = self
            .endpoints
            .iter()
            .filter(|e| e.record.name.as_str() == target && network.is_none_or(|n| e.record.network.as_str() == n));
        let (first, second) = (found.next(), found.next());
        let network_wide = first.is_none();
        let ports: Vec<_> = match (first, second) {
            (Some(_), Some(_)) => return Err(bad(format!("{target} is on several networks: name one with --network"))),
            (Some(e), None) => vec![(e.port, e.port_label())],
            (None, _) if network.is_none() && self.networks.get(target).is_ok() => {
                let ports: Vec<_> = self.endpoints.on(target).map(|e| (e.port, e.port_label())).collect();
                if ports.is_empty() {
                    return Err(bad(format!("network {target} has no port on this host to capture")));
                }
                ports
            }
            (None, _) => return Err(bad(format!("no endpoint or network {target:?} on this host"))),
        };
        match self.dataplane.capture(&ports, network_wide) {
            Ok(Some(capture)) => Ok(capture),
            Ok(None) => Err(too_many_captures()),
            Err(port) => Err(bad(format!("{port} has no port in the data plane"))),
        }
    }

    /// Starts capturing the underlay datagrams to and from a peer host
    /// (name or underlay address); sealed ones opened with `decrypt`.
    pub fn capture_vtep(&self, host: &str, decrypt: bool) -> OpResult<Capture> {
        let bad = |m: String| DaemonError::Trace(m);
        let Some((ip, vteps)) = self.host_vteps(host).filter(|(_, vteps)| !vteps.is_empty()) else {
            return Err(bad(format!("no peer host {host:?} known here")));
        };
        if vteps.iter().all(|&id| self.dataplane.vtep_addr(id).is_none()) {
            return Err(bad(format!("{host} is no VTEP of this host's data plane")));
        }
        let capture = self.dataplane.capture_vtep(ip, decrypt).ok_or_else(too_many_captures)?;
        if decrypt {
            tracing::warn!("capture of VTEP {ip} with --decrypt: sealed datagrams are shown opened, in clear");
        }
        Ok(capture)
    }

    /// A VXLAN datagram from `vtep` for a container on `net` here: what
    /// the receiving host decides. A sealed one is taken to open (its tag
    /// is not checked in a trace) when this host holds a key for the
    /// network, and refused as `unknown_key` when it holds none.
    fn trace_datagram(&self, net: &super::networks::Network, vtep: IpAddr, req: &TraceRequest) -> OpResult<Trace> {
        let bad = |m: String| DaemonError::Trace(m);
        let c = &net.config;
        let vni = req.vni.unwrap_or(c.vni.get());
        let v6 = req.to.parse::<Ipv6Addr>().is_ok() || req.src_ip.is_some_and(|ip| ip.is_ipv6());
        let dst = self.destination(net, &req.to, v6)?;
        if dst.ip.is_ipv6() != v6 {
            return Err(bad(format!("{} and --src-ip are of two IP versions", dst.ip)));
        }
        let dst_mac = match dst.mac {
            Some((mac, _)) => mac,
            None => self
                .endpoints
                .on(c.name.as_str())
                .filter_map(|e| {
                    e.record.mac.filter(|&mac| address(e.record.ip, e.record.ip6, mac, c, v6) == Some(dst.ip))
                })
                .next()
                .ok_or_else(|| bad(format!("no container here has {}", dst.ip)))?,
        };
        let src_mac = match &req.src_mac {
            Some(m) => m.parse::<MacAddr>().map_err(|_| bad(format!("--src-mac {m:?} is not a MAC address")))?,
            None => MacAddr([0x02, 0, 0, 0, 0, 0x01]),
        };
        let src_ip = match req.src_ip {
            Some(ip) if ip.is_ipv6() != v6 => {
                return Err(bad(format!("--src-ip {ip} is not of the destination's family ({})", dst.ip)));
            }
            Some(ip) => ip,
            None if v6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        };
        let size =
            if v6 { req.size.unwrap_or(104).clamp(48, 65_535) } else { req.size.unwrap_or(84).clamp(28, 65_535) };
        let frame = packet(src_mac, dst_mac, src_ip, dst.ip, Protocol::Icmp, 0, size, usize::MAX);
        let inner = &frame[vnet::HEADER_LEN..];
        let encrypted = c.is_encrypted();
        let head = if encrypted { switchd_wire::sealed::HEADER_LEN } else { switchd_wire::vxlan::HEADER_LEN };
        let tail = if encrypted { switchd_wire::sealed::TAG_LEN } else { 0 };
        let mut datagram = vec![0u8; head + inner.len() + tail];
        datagram[head..head + inner.len()].copy_from_slice(inner);
        if encrypted {
            let [_, a, b, c3] = vni.to_be_bytes();
            datagram[..8].copy_from_slice(&[switchd_wire::sealed::FLAGS, 2, 0, 0, a, b, c3, 0]);
        } else {
            switchd_wire::vxlan::Repr { vni }.emit(&mut datagram);
        }
        let mut steps = Vec::new();
        let mut step = |what: &str, detail: String| steps.push(TraceStep { what: what.into(), detail });
        let sealing = if encrypted { "sealed" } else { "plain" };
        step("ingress", format!("a {sealing} VXLAN datagram from {vtep}, VNI {vni}, {} bytes", datagram.len()));
        let scope = super::keys::key_scope(c).display_name();
        let has_key = self.key_ls().into_iter().any(|k| k.scope == scope);
        let mut switch = self.dataplane.switch_copy();
        let mut plan = Plan::default();
        let mut opener = TraceOpener { has_key };
        switch.handle_datagram(Instant::now(), vtep, &mut datagram, &mut opener, &mut plan);
        if encrypted && has_key && !matches!(plan.action, Action::Drop(_)) {
            step("open", format!("opened with the {scope} key (the tag is not checked in a trace)"));
        }
        let (delivered, outcome) = self.decided(&plan, &mut step);
        Ok(verdict(steps, delivered, outcome))
    }

    /// Where `to` (an address, a container's name, or a MAC) is, as the
    /// container on `net` would address it.
    /// Where `to` (an address, a container's name, or a MAC) is, as the
    /// container on `net` would address it; a name or MAC by its IPv6
    /// address (SLAAC) when `v6`.
    fn destination(&self, net: &super::networks::Network, to: &str, v6: bool) -> OpResult<Destination> {
        let c = &net.config;
        let in_subnet = |ip: IpAddr| [c.subnet, c.subnet6].into_iter().flatten().any(|s| s.contains(ip));
        let gateway_mac = Gateway::mac_for(c.vni);
        let by_ip = |ip: IpAddr| match in_subnet(ip) {
            true => Destination { ip, mac: None },
            false => {
                let why = format!("gateway (for {ip}, outside the subnet) is at {gateway_mac}");
                Destination { ip, mac: Some((gateway_mac, why)) }
            }
        };
        if let Ok(ip) = to.parse::<IpAddr>() {
            return Ok(by_ip(ip));
        }
        let unspecified = if v6 { IpAddr::V6(Ipv6Addr::UNSPECIFIED) } else { IpAddr::V4(Ipv4Addr::UNSPECIFIED) };
        if let Ok(mac) = to.parse::<MacAddr>() {
            let ip = self.endpoints.iter().find(|e| e.record.mac == Some(mac)).and_then(|e| {
                let on = &self.networks.get(e.record.network.as_str()).ok()?.config;
                address(e.record.ip, e.record.ip6, mac, on, v6)
            });
            return Ok(Destination {
                ip: ip.unwrap_or(unspecified),
                mac: Some((mac, format!("{mac} given: no ARP needed"))),
            });
        }
        match self.ip_of_name(c.name.as_str(), to, v6) {
            Some(ip) => Ok(by_ip(ip)),
            None => Err(DaemonError::Trace(format!("{to:?} is no address, MAC or container name known here"))),
        }
    }

    /// A container's address by name, of the IP version asked: on
    /// `network` first, then anywhere.
    fn ip_of_name(&self, network: &str, name: &str, v6: bool) -> Option<IpAddr> {
        let config = |n: &str| self.networks.get(n).ok().map(|n| &n.config);
        let local = |only: Option<&str>| {
            self.endpoints
                .iter()
                .filter(|e| e.record.name.as_str() == name && only.is_none_or(|n| e.record.network.as_str() == n))
                .find_map(|e| address(e.record.ip, e.record.ip6, e.record.mac?, config(e.record.network.as_str())?, v6))
        };
        let remote = |only: Option<&str>| {
            self.networks.iter().filter(|n| only.is_none_or(|o| n.config.name.as_str() == o)).find_map(|n| {
                self.cluster
                    .table
                    .endpoints_on(&n.config.name)
                    .find(|(_, e)| e.name.as_str() == name)
                    .and_then(|(_, e)| address(e.ip, e.ip6, e.mac, &n.config, v6))
            })
        };
        local(Some(network)).or_else(|| remote(Some(network))).or_else(|| local(None)).or_else(|| remote(None))
    }

    /// A forwarding-table location in words.
    fn location(&self, at: &Location) -> String {
        match *at {
            Location::Port(port) => match self.endpoints.by_port(port) {
                Some(e) => format!("port {}", e.port_label()),
                None => "a port of this host (a gateway or host-access port)".into(),
            },
            Location::Vtep(id) => match self.cluster.vtep_owner(id) {
                Some((Some(host), ip)) => format!("host {host} at VTEP {ip}"),
                Some((None, ip)) => format!("VTEP {ip}"),
                None => "a VTEP".into(),
            },
        }
    }

    /// What network policy says of a frame the switch sends on: the rule
    /// that allows it, or that no rule does.
    fn policy_step(
        &self,
        switch: &crate::switch::Switch,
        eth: &[u8],
        plan: &Plan,
        step: &mut impl FnMut(&str, String),
    ) {
        use crate::switch::policy::Verdict;
        if plan.action == Action::Drop(DropReason::PolicyDenied) {
            step("policy", "the destination is isolated by a policy, and no policy's rule allows this".into());
            return;
        }
        match switch.policy_verdict(eth, plan.action) {
            Some(Verdict::Allowed(n)) => {
                let Some(p) = self.policy_named(n) else {
                    step("policy", "allowed: from a gateway (switchd's health checks, published ports)".into());
                    return;
                };
                let from: Vec<String> = p.from.iter().map(|s| s.to_string()).collect();
                let ports: Vec<String> = p.ports.iter().map(|p| p.to_string()).collect();
                let ports = if ports.is_empty() { "every port".into() } else { ports.join(",") };
                step("policy", format!("allowed by policy {} (from {} to {ports})", p.name, from.join(",")));
            }
            Some(Verdict::Reply) => step("policy", "a reply in a connection the destination opened".into()),
            Some(Verdict::Open | Verdict::Denied) | None => {}
        }
    }

    /// What the switch decided in `plan`, as steps; whether it goes
    /// anywhere, and the verdict.
    fn decided(&self, plan: &Plan, step: &mut impl FnMut(&str, String)) -> (bool, String) {
        match plan.action {
            Action::Drop(reason) => {
                step("drop", format!("{} ({})", reason.as_str(), explain(reason)));
                (false, format!("dropped: {}", reason.as_str()))
            }
            Action::Reject { reason, .. } => {
                step("route", format!("refused: {} ({})", reason.as_str(), explain(reason)));
                (false, format!("refused with an ICMP error: {}", reason.as_str()))
            }
            Action::Local { .. } => {
                step("gateway", "for the gateway itself (ping, DHCP, DNS): served by switchd".into());
                (true, "answered by the gateway".to_owned())
            }
            Action::Answer { owner, request, .. } => {
                step("neighbour", format!("{:?}: answered by switchd for its owner, {owner}", request.target()));
                (true, "answered by switchd".to_owned())
            }
            Action::Route { network, next, .. } => {
                let into = self.networks.iter().find(|n| n.id == network);
                let name = into.map_or_else(|| "?".to_owned(), |n| n.config.name.to_string());
                let hop = match next {
                    Next::Port(_) => "a port of this host",
                    Next::Vtep(_) => "another host",
                    Next::Flood => "every port and host of it (MAC not known yet)",
                };
                step("route", format!("routed by the gateway into network {name}, TTL (hop limit) 64 -> 63, to {hop}"));
                self.egress(plan, step)
            }
            Action::Nat { rewrite, .. } => {
                let what = match rewrite.addr {
                    NatAddr::Dst(ip) => format!("to a service VIP: balanced to backend {ip} ({})", rewrite.dst_mac),
                    NatAddr::Src(ip) => format!("a backend's reply in a balanced flow: sent on from VIP {ip}"),
                };
                step("service", what);
                self.egress(plan, step)
            }
            Action::Deliver(_) | Action::Encap { .. } | Action::Flood { .. } => self.egress(plan, step),
        }
    }

    /// Every target of `plan`, in words.
    fn describe_targets(&self, plan: &Plan) -> String {
        let named: Vec<String> = plan
            .targets
            .iter()
            .map(|t| match *t {
                Target::Port(port) => self.location(&Location::Port(port)),
                Target::Vtep(vtep) => match self.dataplane.vtep_addr(vtep) {
                    Some(addr) => self.location(&Location::Vtep(vtep)).replace("a VTEP", &addr.ip().to_string()),
                    None => self.location(&Location::Vtep(vtep)),
                },
            })
            .collect();
        if named.is_empty() { "nowhere (no other port or host on the network)".into() } else { named.join(", ") }
    }

    /// The egress steps of a plan that sends: ports, and VTEPs with their
    /// wire (VNI, sealing, key).
    fn egress(&self, plan: &Plan, step: &mut impl FnMut(&str, String)) -> (bool, String) {
        if let Some(wire) = plan.wire {
            let sealing = match wire.encrypted {
                false => "plain VXLAN".to_owned(),
                true => {
                    let net = self.networks.iter().find(|n| n.config.vni == wire.vni);
                    let cipher = net.and_then(|n| n.config.encryption).map(|e| e.cipher.to_string());
                    let scope = net.map(|n| super::keys::key_scope(&n.config).display_name());
                    let key = scope.and_then(|scope| {
                        self.key_ls().into_iter().find(|k| k.scope == scope && k.state == "sending").map(|k| k.id)
                    });
                    match (cipher, key) {
                        (Some(cipher), Some(key)) => format!("sealed with {cipher}, key id {key}"),
                        _ => {
                            step("vtep", format!("VNI {}: encrypted, and this host holds no key for it", wire.vni));
                            let reason = DropReason::NoKey;
                            step("drop", format!("{} ({}): never sent in plaintext", reason.as_str(), explain(reason)));
                            // What reaches local ports still does.
                            return match plan.ports().count() {
                                0 => (false, format!("dropped: {}", reason.as_str())),
                                _ => (true, format!("delivered to local ports only; {}", reason.as_str())),
                            };
                        }
                    }
                }
            };
            step("vtep", format!("VNI {}, {sealing}, segments cut to MTU {}", wire.vni, wire.mtu));
        }
        let targets = self.describe_targets(plan);
        match plan.action {
            Action::Flood { .. } | Action::Route { next: Next::Flood, .. } => {
                step("egress", format!("flooded to {targets}"));
                (!plan.targets.is_empty(), format!("flooded to {targets}"))
            }
            _ => {
                step("egress", targets.clone());
                (!plan.targets.is_empty(), format!("delivered to {targets}"))
            }
        }
    }
}

/// Opens a traced sealed datagram without cryptography: as if its tag
/// verified, if this host holds a key for the network at all.
struct TraceOpener {
    has_key: bool,
}

impl crate::switch::Opener for TraceOpener {
    fn open(
        &mut self,
        datagram: &mut [u8],
        _: IpAddr,
    ) -> Result<std::ops::Range<usize>, switchd_overlay::sealed::Refused> {
        use switchd_wire::sealed::{HEADER_LEN, TAG_LEN};
        match self.has_key {
            true => Ok(HEADER_LEN..datagram.len() - TAG_LEN),
            false => Err(switchd_overlay::sealed::Refused::Open(switchd_crypto::OpenError::UnknownKey)),
        }
    }
}

/// An endpoint's address of the IP version asked: its IPv4 one, or on a
/// network with a subnet6 its IPv6 one (given, else its MAC's SLAAC one).
fn address(
    ip: Option<IpAddr>,
    ip6: Option<Ipv6Addr>,
    mac: MacAddr,
    on: &switchd_config::NetworkConfig,
    v6: bool,
) -> Option<IpAddr> {
    match v6 {
        false => ip.filter(IpAddr::is_ipv4),
        true => crate::services::icmpv6::endpoint_ip6(on, Some(mac), ip6).map(IpAddr::V6),
    }
}

fn too_many_captures() -> DaemonError {
    DaemonError::Trace(format!("{} captures run already (the most at once)", crate::dataplane::MAX_CAPTURES))
}

fn show(ip: Option<IpAddr>) -> String {
    ip.map_or_else(|| "(no address)".to_owned(), |ip| ip.to_string())
}

fn verdict(steps: Vec<TraceStep>, delivered: bool, outcome: String) -> Trace {
    Trace { steps, delivered, verdict: outcome }
}

/// What a drop reason means, for a trace.
fn explain(reason: DropReason) -> &'static str {
    match reason {
        DropReason::SpoofedMac | DropReason::SpoofedAddress => {
            "the source is not the MAC and address this port was given"
        }
        DropReason::NoKey => "the network is encrypted and this host holds no key for it",
        DropReason::UnknownKey => "sealed under a key this host does not hold",
        DropReason::UnknownSource => "the sender is no peer of this host (no [[peer]], not in the cluster)",
        DropReason::UnknownVni => "this host does not carry that VNI, or the sender is not a peer on it",
        DropReason::PlaintextOnEncrypted => "plain VXLAN for an encrypted network is never accepted",
        DropReason::Oversize => "larger than the network's MTU",
        DropReason::RouteDenied => "no [[route]] allows traffic between these networks",
        DropReason::FragNeeded => {
            "larger than the MTU of the network it is routed into, and not to be cut: ICMP fragmentation needed tells the sender that MTU"
        }
        _ => "see `switchctl stats` for the counter of this reason",
    }
}

/// An ARP request from `src` for `target`, with its virtio header.
fn arp_request(src_mac: MacAddr, src_ip: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut frame = vnet::build_plain(MacAddr::BROADCAST, src_mac, 0x0806, arp::PACKET_LEN);
    let repr = arp::Repr {
        operation: arp::Operation::Request,
        sender_mac: src_mac,
        sender_ip: src_ip,
        target_mac: MacAddr([0; 6]),
        target_ip: target,
    };
    repr.emit(&mut frame[vnet::HEADER_LEN + 14..]);
    frame
}

/// An IPv6 neighbour solicitation from `src` for `target`, to its
/// solicited-node group, naming `src_mac` (as a container's stack sends it).
fn solicitation(src_mac: MacAddr, src: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let t = target.octets();
    let group = Ipv6Addr::from([0xff02, 0, 0, 0, 0, 1, 0xff00 | u16::from(t[13]), u16::from_be_bytes([t[14], t[15]])]);
    let g = group.octets();
    let dst_mac = MacAddr([0x33, 0x33, g[12], g[13], g[14], g[15]]);
    let mut frame = vnet::build_plain(dst_mac, src_mac, 0x86dd, ipv6::HEADER_LEN + 32);
    let ip = vnet::HEADER_LEN + 14;
    ipv6::Repr { src_addr: src, dst_addr: group, next_header: Protocol::Icmpv6, payload_len: 32, hop_limit: 255 }
        .emit(&mut frame[ip..]);
    let icmp = &mut frame[ip + ipv6::HEADER_LEN..];
    icmp[0] = 135;
    icmp[8..24].copy_from_slice(&t);
    icmp[24..26].copy_from_slice(&[1, 1]); // source link-layer address
    icmp[26..32].copy_from_slice(&src_mac.0);
    frame
}

/// The IP packet of `size` bytes a container sends: ICMP (ICMPv6) echo,
/// a TCP SYN or a UDP datagram to `dport`, of the family of the
/// addresses. A TCP packet larger than `mtu` is a TSO frame, as the
/// container's stack hands it over with offloads on.
#[allow(clippy::too_many_arguments)]
fn packet(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src: IpAddr,
    dst: IpAddr,
    proto: Protocol,
    dport: u16,
    size: usize,
    mtu: usize,
) -> Vec<u8> {
    let (ethertype, header, echo) = if dst.is_ipv6() { (0x86dd, ipv6::HEADER_LEN, 128) } else { (0x0800, 20, 8) };
    let mut frame = vnet::build_plain(dst_mac, src_mac, ethertype, size);
    let ip = vnet::HEADER_LEN + 14;
    match (src, dst) {
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            let next_header = if proto == Protocol::Icmp { Protocol::Icmpv6 } else { proto };
            ipv6::Repr { src_addr: src, dst_addr: dst, next_header, payload_len: size - header, hop_limit: 64 }
                .emit(&mut frame[ip..]);
        }
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            ipv4::Repr { src_addr: src, dst_addr: dst, protocol: proto, payload_len: size - header, ttl: 64 }
                .emit(&mut frame[ip..]);
        }
        _ => unreachable!("the trace checks the source's family against the destination's"),
    }
    let l4 = &mut frame[ip + header..];
    match proto {
        Protocol::Tcp if l4.len() >= 20 => {
            l4[0..2].copy_from_slice(&40000u16.to_be_bytes());
            l4[2..4].copy_from_slice(&dport.to_be_bytes());
            l4[12] = 5 << 4;
            l4[13] = 0x02; // SYN
        }
        Protocol::Udp if l4.len() >= 8 => {
            l4[0..2].copy_from_slice(&40000u16.to_be_bytes());
            l4[2..4].copy_from_slice(&dport.to_be_bytes());
            l4[4..6].copy_from_slice(&((size - header) as u16).to_be_bytes());
        }
        _ => l4[0] = echo,
    }
    if proto == Protocol::Tcp && size > mtu {
        let tso = vnet::Repr {
            flags: 1,                                    // NEEDS_CSUM
            gso_type: if dst.is_ipv6() { 4 } else { 1 }, // TCPV6, TCPV4
            hdr_len: (14 + header + 20) as u16,
            gso_size: (mtu - header - 20) as u16,
            csum_start: (14 + header) as u16,
            csum_offset: 16,
        };
        tso.emit(&mut frame);
    }
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_head_is_named_even_cut_short_or_garbled() {
        let a = MacAddr([2, 0, 0, 0, 0, 1]);
        let b = MacAddr([2, 0, 0, 0, 0, 2]);
        let (x, y) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let ping = packet(a, b, x, y, Protocol::Icmp, 0, 84, 1500);
        let eth = &ping[vnet::HEADER_LEN..];
        let named = live::summarize(eth);
        assert!(named.starts_with("02:00:00:00:00:01 > 02:00:00:00:00:02, 10.0.0.1 > 10.0.0.2 ICMP"), "{named}");
        let syn = packet(a, b, x, y, Protocol::Tcp, 443, 9000, 1500);
        let head = &syn[vnet::HEADER_LEN..][..crate::dataplane::live::HEAD];
        assert!(live::summarize(head).ends_with("10.0.0.1.40000 > 10.0.0.2.443 TCP"), "a head of a large frame");
        let arp = arp_request(a, [10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        assert!(live::summarize(&arp[vnet::HEADER_LEN..]).ends_with("ARP who-has 10.0.0.2 tell 10.0.0.1"));
        assert_eq!(live::summarize(&[1, 2, 3]), "3 bytes, not an Ethernet frame");
        for cut in 0..eth.len() {
            let _ = live::summarize(&eth[..cut]);
        }
        let mut garbled = eth.to_vec();
        garbled[14] = 0x4f; // an IPv4 header longer than the frame
        assert!(live::summarize(&garbled).starts_with("02:00:00:00:00:01 > 02:00:00:00:00:02"));
    }
}
