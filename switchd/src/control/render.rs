//! How `switchctl` shows replies to people: aligned tables, and the shell
//! script of `script attach`. (Scripts use `--json` instead.)

use std::fmt::Write;

use super::api::{
    AttachPlan, EndpointInfo, FdbEntry, KeyInfo, NetworkDetail, NetworkInfo, PeerInfo, PolicyInfo, PublishInfo,
    RouteInfo, ServiceInfo, Stats, Status,
};

/// Left-aligned columns separated by three spaces, like `docker network ls`.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, cell) in cells.enumerate() {
            let _ = write!(text, "{cell:<width$}   ", width = widths[i]);
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

fn opt<T: ToString>(value: &Option<T>) -> String {
    value.as_ref().map_or_else(|| "-".to_owned(), T::to_string)
}

pub fn status(s: &Status) -> String {
    let mut out = format!(
        "host:        {}\nversion:     {}\nuptime:      {}s\nnetworks:    {}\nports:       {}\npeers alive: {}\nsession:     {}\n",
        s.host,
        s.version,
        s.uptime_secs,
        s.networks,
        s.ports,
        s.peers_alive,
        opt(&s.session)
    );
    for refused in &s.refused_networks {
        let _ = writeln!(out, "warning:     {refused}");
    }
    out
}

pub fn networks(nets: &[NetworkInfo]) -> String {
    let rows: Vec<Vec<String>> = nets
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                n.vni.to_string(),
                opt(&n.subnet),
                opt(&n.gateway),
                n.mtu.to_string(),
                yes_no(n.encrypted),
                n.ports.to_string(),
                if n.hosts.is_empty() { "-".to_owned() } else { n.hosts.join(",") },
            ]
        })
        .collect();
    table(&["NAME", "VNI", "SUBNET", "GATEWAY", "MTU", "ENCRYPTED", "PORTS", "HOSTS"], &rows)
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

pub fn endpoints(endpoints: &[EndpointInfo]) -> String {
    let rows: Vec<Vec<String>> = endpoints
        .iter()
        .map(|e| {
            vec![
                e.name.clone(),
                e.network.clone(),
                opt(&e.ip),
                opt(&e.ip6),
                opt(&e.mac),
                e.host.clone(),
                e.kind.clone(),
                opt(&e.netns),
                opt(&e.ifname),
                opt(&e.host_ifname),
            ]
        })
        .collect();
    table(&["NAME", "NETWORK", "IP", "IPV6", "MAC", "HOST", "KIND", "NETNS", "IFNAME", "HOST_IFNAME"], &rows)
}

pub fn network_detail(d: &NetworkDetail) -> String {
    let n = &d.network;
    let mut out = format!(
        "name:      {}\nvni:       {}\nsubnet:    {}\ngateway:   {}\nsubnet6:   {}\nmtu:       {}\nencrypted: {}\ninternal:  {}\ndns:       {}\ndhcp:      {}\nhost:      {}\nroutes to: {}\norigin:    {}\n\n",
        n.name,
        n.vni,
        opt(&n.subnet),
        opt(&n.gateway),
        match (&n.subnet6, &n.gateway6) {
            (Some(s), Some(gw)) => format!("{s} (gateway {gw}; SLAAC)"),
            _ => "-".to_owned(),
        },
        n.mtu,
        match (&n.cipher, &n.key) {
            (Some(cipher), Some(key)) if n.default_cipher => format!("yes ({cipher}, this CPU's default; {key} key)"),
            (Some(cipher), Some(key)) => format!("yes ({cipher}, {key} key)"),
            _ => yes_no(n.encrypted),
        },
        yes_no(n.internal),
        yes_no(n.dns),
        yes_no(n.dhcp),
        if n.host_access { format!("sdg{} holds the gateway address", n.vni) } else { "no access".to_owned() },
        if n.routes.is_empty() { "-".to_owned() } else { n.routes.join(", ") },
        n.origin
    );
    // Hosts sealing with another cipher than this one: it works (every
    // host opens both), and is shown so that it is never a surprise.
    if n.ciphers.values().any(|c| Some(c) != n.cipher.as_ref()) {
        let each: Vec<String> = n.ciphers.iter().map(|(host, c)| format!("{host} {c}")).collect();
        out.insert_str(
            out.len() - 1,
            &format!("ciphers:   {} (each host seals with its own, opens both)\n", each.join(", ")),
        );
    }
    out.push_str(&endpoints(&d.endpoints));
    out
}

/// Endpoints' rates between two snapshots `secs` apart, busiest first
/// (packets per second both ways).
pub fn rates(before: &Stats, after: &Stats, secs: f64) -> crate::control::api::Top {
    crate::control::api::Top {
        endpoints: endpoint_rates(before, after, secs),
        conversations: conversation_rates(before, after, secs),
    }
}

/// The busiest conversations over the interval, at most [`TOP_CONVERSATIONS`].
fn conversation_rates(before: &Stats, after: &Stats, secs: f64) -> Vec<crate::control::api::ConversationRate> {
    let secs = secs.max(1e-3);
    let mut rates: Vec<_> = after
        .conversations
        .iter()
        .map(|a| {
            let b = before.conversations.iter().find(|b| b.a == a.a && b.b == a.b);
            let diff =
                |f: fn(&crate::control::api::Conversation) -> u64| f(a).saturating_sub(b.map_or(0, f)) as f64 / secs;
            crate::control::api::ConversationRate {
                a: a.a.clone(),
                b: a.b.clone(),
                a_to_b_pps: diff(|c| c.a_to_b_frames),
                a_to_b_bps: diff(|c| c.a_to_b_bytes) * 8.0,
                b_to_a_pps: diff(|c| c.b_to_a_frames),
                b_to_a_bps: diff(|c| c.b_to_a_bytes) * 8.0,
            }
        })
        .filter(|r| r.a_to_b_pps + r.b_to_a_pps > 0.0)
        .collect();
    rates.sort_by(|x, y| (y.a_to_b_bps + y.b_to_a_bps).total_cmp(&(x.a_to_b_bps + x.b_to_a_bps)));
    rates.truncate(TOP_CONVERSATIONS);
    rates
}

/// Conversations `top` shows.
pub const TOP_CONVERSATIONS: usize = 10;

fn endpoint_rates(before: &Stats, after: &Stats, secs: f64) -> Vec<crate::control::api::EndpointRate> {
    let secs = secs.max(1e-3);
    let drops = |p: &crate::control::api::PortStats| p.drops.values().sum::<u64>();
    let mut rates: Vec<_> = after
        .ports
        .iter()
        .map(|a| {
            let b = before.ports.iter().find(|b| b.port == a.port && b.network == a.network);
            let diff =
                |f: fn(&crate::control::api::PortStats) -> u64| f(a).saturating_sub(b.map_or(0, f)) as f64 / secs;
            crate::control::api::EndpointRate {
                endpoint: a.endpoint.clone(),
                network: a.network.clone(),
                port: a.port.clone(),
                rx_pps: diff(|p| p.rx_frames),
                tx_pps: diff(|p| p.tx_frames),
                rx_bps: diff(|p| p.rx_bytes) * 8.0,
                tx_bps: diff(|p| p.tx_bytes) * 8.0,
                drops_per_sec: diff(drops),
            }
        })
        .collect();
    rates.sort_by(|x, y| (y.rx_pps + y.tx_pps).total_cmp(&(x.rx_pps + x.tx_pps)));
    rates
}

/// A rate with an SI prefix.
fn si(v: f64, unit: &str) -> String {
    match v {
        v if v >= 1e9 => format!("{:.2}G{unit}", v / 1e9),
        v if v >= 1e6 => format!("{:.2}M{unit}", v / 1e6),
        v if v >= 1e3 => format!("{:.1}k{unit}", v / 1e3),
        v => format!("{v:.0}{unit}"),
    }
}

/// `switchctl top`'s tables: endpoints, then the busiest conversations.
pub fn top(top: &crate::control::api::Top) -> String {
    let mut out = endpoint_table(&top.endpoints);
    if !top.conversations.is_empty() {
        let rows: Vec<Vec<String>> = top
            .conversations
            .iter()
            .map(|c| {
                vec![
                    format!("{} <-> {}", c.a, c.b),
                    si(c.a_to_b_pps, "p/s"),
                    si(c.a_to_b_bps, "b/s"),
                    si(c.b_to_a_pps, "p/s"),
                    si(c.b_to_a_bps, "b/s"),
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&table(&["CONVERSATION (sampled)", "A>B_PKTS", "A>B_BITS", "B>A_PKTS", "B>A_BITS"], &rows));
    }
    out
}

fn endpoint_table(rates: &[crate::control::api::EndpointRate]) -> String {
    let rows: Vec<Vec<String>> = rates
        .iter()
        .map(|r| {
            vec![
                r.endpoint.clone(),
                r.network.clone(),
                si(r.rx_pps, "p/s"),
                si(r.rx_bps, "b/s"),
                si(r.tx_pps, "p/s"),
                si(r.tx_bps, "b/s"),
                format!("{:.0}/s", r.drops_per_sec),
            ]
        })
        .collect();
    table(&["ENDPOINT", "NETWORK", "IN_PKTS", "IN_BITS", "OUT_PKTS", "OUT_BITS", "DROPS"], &rows)
}

/// What a reload did, one change per line.
pub fn reload(r: &crate::control::api::ReloadReport) -> String {
    let mut out = String::new();
    let parts = [
        ("added", &r.added),
        ("removed", &r.removed),
        ("needs a restart:", &r.needs_restart),
        ("not done:", &r.errors),
    ];
    for (what, items) in parts {
        for item in items {
            out.push_str(&format!("{what} {item}\n"));
        }
    }
    if out.is_empty() {
        out.push_str("no change\n");
    }
    out
}

/// A trace, one decision per line, as `ovs-appctl ofproto/trace` prints.
pub fn trace(t: &crate::control::api::Trace) -> String {
    let width = t.steps.iter().map(|s| s.what.len()).max().unwrap_or(0);
    let mut out: String = t.steps.iter().map(|s| format!("{:width$}  {}\n", s.what, s.detail)).collect();
    out.push_str(&format!("{:width$}  {}\n", "verdict", t.verdict));
    out
}

/// A live trace's frame: its time (UTC, as tcpdump's clock), what it is,
/// then the decisions, indented.
pub fn live_frame(f: &crate::control::api::LiveFrame) -> String {
    let day_us = f.at_us % 86_400_000_000;
    let (h, m, s, us) = (day_us / 3_600_000_000, day_us / 60_000_000 % 60, day_us / 1_000_000 % 60, day_us % 1_000_000);
    let steps: String = trace(&f.trace).lines().map(|l| format!("    {l}\n")).collect();
    format!("{h:02}:{m:02}:{s:02}.{us:06} worker {} {}\n{steps}", f.worker, f.frame)
}

pub fn fdb(entries: &[FdbEntry]) -> String {
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![e.mac.clone(), e.network.clone(), e.location.clone(), e.kind.clone(), format!("{:.1}s", e.age_secs)]
        })
        .collect();
    table(&["MAC", "NETWORK", "WHERE", "TYPE", "AGE"], &rows)
}

fn drops(d: &std::collections::BTreeMap<String, u64>) -> String {
    if d.is_empty() {
        return "-".into();
    }
    d.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

pub fn stats(s: &Stats) -> String {
    let ports: Vec<Vec<String>> = s
        .ports
        .iter()
        .map(|p| {
            vec![
                p.network.clone(),
                p.port.clone(),
                p.rx_frames.to_string(),
                p.rx_bytes.to_string(),
                p.tx_frames.to_string(),
                p.tx_bytes.to_string(),
                p.deferred_checksums.to_string(),
                drops(&p.drops),
            ]
        })
        .collect();
    let nets: Vec<Vec<String>> = s
        .networks
        .iter()
        .map(|n| {
            vec![
                n.network.clone(),
                n.rx_frames.to_string(),
                n.tx_frames.to_string(),
                n.flooded.to_string(),
                n.mac_moves.to_string(),
                n.fdb_entries.to_string(),
                n.neighbor_answers.to_string(),
                n.routed.to_string(),
                drops(&n.drops),
            ]
        })
        .collect();
    let mut out =
        table(&["NETWORK", "PORT", "RX_FRAMES", "RX_BYTES", "TX_FRAMES", "TX_BYTES", "DEFERRED_CSUM", "DROPS"], &ports);
    out.push('\n');
    out.push_str(&table(
        &["NETWORK", "RX_FRAMES", "TX_FRAMES", "FLOODED", "MAC_MOVES", "FDB_ENTRIES", "ANSWERED", "ROUTED", "DROPS"],
        &nets,
    ));
    if !s.vteps.is_empty() || !s.underlay_drops.is_empty() {
        let vteps: Vec<Vec<String>> = s
            .vteps
            .iter()
            .map(|v| {
                vec![
                    v.vtep.clone(),
                    opt(&v.host),
                    v.rx_frames.to_string(),
                    v.rx_bytes.to_string(),
                    v.tx_frames.to_string(),
                    v.tx_bytes.to_string(),
                    drops(&v.drops),
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&table(&["VTEP", "HOST", "RX_FRAMES", "RX_BYTES", "TX_FRAMES", "TX_BYTES", "DROPS"], &vteps));
        out.push_str(&format!("\nunderlay drops before any VTEP: {}\n", drops(&s.underlay_drops)));
    }
    if let Some(g) = &s.gossip {
        out.push_str(&format!(
            "\ngossip: {} datagrams ({} bytes) in, {} ({} bytes) out; refused: {}; bad messages {}, bad entries {}\n",
            g.datagrams_in,
            g.bytes_in,
            g.datagrams_out,
            g.bytes_out,
            drops(&g.rejected),
            g.bad_messages,
            g.bad_entries
        ));
    }
    if let Some(c) = &s.crypto {
        out.push_str(&format!(
            "\nencryption: session {}; {} datagrams sealed, {} opened ({} of them by helpers); {} peer sessions held\n",
            c.session, c.sealed, c.opened, c.helped, c.sessions
        ));
    }
    if !s.services.is_empty() {
        out.push_str(&format!(
            "
gateway services: {}\n",
            drops(&s.services)
        ));
    }
    if !s.workers.is_empty() {
        let rows: Vec<Vec<String>> = s
            .workers
            .iter()
            .map(|w| {
                vec![
                    w.worker.to_string(),
                    if w.running { "running" } else { "STOPPED" }.to_owned(),
                    w.port_frames.to_string(),
                    w.underlay_datagrams.to_string(),
                    w.batches.to_string(),
                    w.poll_hits.to_string(),
                    w.poll_misses.to_string(),
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&table(
            &["WORKER", "STATE", "PORT_FRAMES", "UNDERLAY_DATAGRAMS", "BATCHES", "POLL_HITS", "POLL_MISSES"],
            &rows,
        ));
    }
    out
}

pub fn routes(routes: &[RouteInfo]) -> String {
    let rows: Vec<Vec<String>> = routes
        .iter()
        .map(|r| vec![r.networks[0].clone(), r.networks[1].clone(), r.origin.clone(), r.state.clone()])
        .collect();
    table(&["NETWORK", "NETWORK", "ORIGIN", "STATE"], &rows)
}

/// `policy ls`: one row per policy; a selector that matches nothing shows as such.
pub fn policies(policies: &[PolicyInfo]) -> String {
    let list = |v: &[String], none: &str| if v.is_empty() { none.to_owned() } else { v.join(",") };
    let rows: Vec<Vec<String>> = policies
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                p.network.clone(),
                p.select.clone(),
                list(&p.from, "nobody"),
                list(&p.ports, "*"),
                if p.selects.is_empty() { "(matches nothing yet)".into() } else { p.selects.join(",") },
                p.origin.clone(),
            ]
        })
        .collect();
    table(&["NAME", "NETWORK", "SELECT", "FROM", "PORTS", "ISOLATES", "ORIGIN"], &rows)
}

/// `service ls`: one row per service.
pub fn services(services: &[ServiceInfo]) -> String {
    let rows: Vec<Vec<String>> = services
        .iter()
        .map(|s| {
            let healthy = s.backends.iter().filter(|b| b.state != "unhealthy").count();
            vec![
                s.name.clone(),
                s.network.clone(),
                s.mode.clone(),
                vips(s),
                if s.ports.is_empty() { "*".into() } else { s.ports.join(",") },
                format!("{healthy}/{}", s.backends.len()),
                s.health.clone().unwrap_or_else(|| "-".into()),
                s.origin.clone(),
            ]
        })
        .collect();
    table(&["NAME", "NETWORK", "MODE", "VIP", "PORTS", "BACKENDS", "HEALTH", "ORIGIN"], &rows)
}

/// A service's VIPs, IPv4 then IPv6: "-" for none.
fn vips(s: &ServiceInfo) -> String {
    let all: Vec<String> =
        s.vip.iter().map(ToString::to_string).chain(s.vip6.iter().map(ToString::to_string)).collect();
    if all.is_empty() { "-".into() } else { all.join(",") }
}

/// `service inspect`: the settings, then a row per backend.
pub fn service(s: &ServiceInfo) -> String {
    let mut out = format!(
        "name: {}\nnetwork: {}\nmode: {}\nvip: {}\nports: {}\nhealth: {}\npublished (mesh): {}\norigin: {}\n",
        s.name,
        s.network,
        s.mode,
        vips(s),
        if s.ports.is_empty() { "every port".into() } else { s.ports.join(", ") },
        s.health.clone().unwrap_or_else(|| "none".into()),
        if s.publish.is_empty() { "none".into() } else { s.publish.join(", ") },
        s.origin
    );
    let rows: Vec<Vec<String>> = s
        .backends
        .iter()
        .map(|b| vec![b.name.clone(), opt(&b.ip), b.mac.clone(), b.host.clone(), b.state.clone(), opt(&b.last_error)])
        .collect();
    out.push_str(&table(&["BACKEND", "IP", "MAC", "HOST", "STATE", "LAST ERROR"], &rows));
    out
}

pub fn published(ports: &[PublishInfo]) -> String {
    let rows: Vec<Vec<String>> = ports
        .iter()
        .map(|p| {
            vec![
                format!("{}:{}/{}", p.host_ip, p.host_port, p.protocol),
                p.network.clone(),
                match &p.service {
                    Some(service) => format!("service {service}"),
                    None => p.container.clone(),
                },
                p.port.to_string(),
                match (&p.target, &p.not_open, &p.service) {
                    (Some(t), _, Some(_)) => format!("{t} (mesh)"),
                    (_, Some(why), _) => format!("not open here: {why}"),
                    (t, ..) => opt(t),
                },
                p.origin.clone(),
                p.relays.active.to_string(),
                p.relays.evicted.to_string(),
            ]
        })
        .collect();
    table(&["HOST", "NETWORK", "CONTAINER", "PORT", "TARGET", "ORIGIN", "RELAYS", "EVICTED"], &rows)
}

pub fn keys(keys: &[KeyInfo]) -> String {
    let list = |hosts: &[String]| if hosts.is_empty() { "-".to_owned() } else { hosts.join(",") };
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|k| {
            vec![
                k.scope.clone(),
                k.id.clone(),
                k.state.clone(),
                list(&k.accepted_by),
                list(&k.sending_by),
                list(&k.missing),
            ]
        })
        .collect();
    table(&["SCOPE", "ID", "STATE", "ACCEPTED_BY", "SENDING_BY", "MISSING"], &rows)
}

pub fn peers(peers: &[PeerInfo]) -> String {
    let rows: Vec<Vec<String>> = peers
        .iter()
        .map(|p| {
            vec![
                opt(&p.host),
                format!("{}:{}", p.underlay_ip, p.vxlan_port),
                p.state.clone(),
                p.last_heard_secs.map_or_else(|| "never".to_owned(), |s| format!("{s:.1}s ago")),
                if p.networks.is_empty() { "-".to_owned() } else { p.networks.join(",") },
                p.macs.to_string(),
            ]
        })
        .collect();
    table(&["HOST", "UNDERLAY_IP", "STATE", "LAST_HEARD", "NETWORKS", "MACS"], &rows)
}

/// How to run `ip` inside the container's netns: `ip -n NAME` for a named
/// namespace, `nsenter --net=PATH ip` for a path.
fn ip_in(netns: &str) -> String {
    if netns.contains('/') { format!("nsenter --net={netns} ip") } else { format!("ip -n {netns}") }
}

/// How a command runs in the container's netns (a name or a path).
fn exec_in(netns: &str) -> String {
    if netns.contains('/') { format!("nsenter --net={netns}") } else { format!("ip netns exec {netns}") }
}

/// A shell script doing what `network connect` does, step by step, ending by
/// handing the interface to switchd (which takes over existing interfaces
/// as they are). `switchctl` is how the script reaches switchd: `ctl` is
/// that command with its `--socket`.
pub fn attach_script(p: &AttachPlan, ctl: &str) -> String {
    let mut s = String::new();
    let netns = p.netns.as_deref().unwrap_or("");
    let ip = ip_in(netns);
    let dev = &p.ifname;
    let _ = writeln!(s, "#!/bin/sh");
    let _ =
        writeln!(s, "# Attach container {:?} to network {:?} with a {} port, step by step:", p.name, p.network, p.kind);
    let _ = writeln!(s, "# what `switchctl network connect` does. Run as root in switchd's network namespace.");
    let _ = writeln!(s, "set -e");
    let mut step = 0;
    let mut comment = |s: &mut String, text: &str| {
        step += 1;
        let _ = writeln!(s, "\n# {step}. {text}");
    };
    match p.kind.as_str() {
        "tap" => {
            comment(
                &mut s,
                "A persistent TAP with virtio-net headers (for TSO/checksum offload), made inside the container.",
            );
            let _ = writeln!(s, "{ip} tuntap add dev {dev} mode tap vnet_hdr multi_queue");
        }
        _ => {
            let host = p.host_ifname.as_deref().unwrap_or("HOST_IFNAME");
            comment(&mut s, &format!("A veth pair: {host} stays here for switchd, {dev} goes into the container."));
            // `ip link ... netns` takes a name or a path (unlike `ip -n`).
            let _ = writeln!(s, "ip link add {host} type veth peer name {dev} netns {netns}");
            let _ = writeln!(s, "ip link set dev {host} up");
        }
    }
    comment(&mut s, "Its MAC address and the network's MTU.");
    let _ = writeln!(s, "{ip} link set dev {dev} address {} mtu {}", p.mac, p.mtu);
    if let (Some(addr), Some(prefix)) = (p.ip, p.prefix_len) {
        comment(&mut s, "Its address in the network's subnet.");
        let _ = writeln!(s, "{ip} addr add {addr}/{prefix} dev {dev}");
    }
    if let Some(addr6) = p.ip6 {
        comment(
            &mut s,
            "Its given IPv6 address, with no SLAAC one beside it and no duplicate address detection \
             (switchd checked that it is free).",
        );
        let _ = writeln!(s, "{} sysctl -qw net.ipv6.conf.{dev}.autoconf=0", exec_in(netns));
        let _ = writeln!(s, "{ip} addr add {addr6}/64 dev {dev} nodad");
    }
    comment(&mut s, "Up.");
    let _ = writeln!(s, "{ip} link set dev {dev} up");
    if let (true, Some(gw)) = (p.default_route, p.gateway) {
        comment(&mut s, "A default route via the network's gateway, unless the container has one already.");
        let _ = writeln!(s, "{ip} route show default | grep -q . || {ip} route add default via {gw} dev {dev}");
    }
    comment(&mut s, "Hand it to switchd, which takes the existing interface over and starts switching it.");
    let mut connect =
        format!("{ctl} network connect {} {netns} --name {} --ifname {dev} --mac {}", p.network, p.name, p.mac);
    if let Some(addr) = p.ip {
        let _ = write!(connect, " --ip {addr}");
    }
    if let Some(addr6) = p.ip6 {
        let _ = write!(connect, " --ip6 {addr6}");
    }
    if p.kind != "tap" {
        let _ =
            write!(connect, " --kind {} --host-ifname {}", p.kind, p.host_ifname.as_deref().unwrap_or("HOST_IFNAME"));
    }
    let _ = writeln!(s, "{connect}");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let t = table(&["A", "LONGER"], &[vec!["xxxx".into(), "y".into()], vec!["z".into(), "w".into()]]);
        assert_eq!(t, "A      LONGER\nxxxx   y\nz      w\n");
    }

    fn plan(kind: &str, netns: &str) -> AttachPlan {
        AttachPlan {
            network: "frontend".into(),
            name: "web".into(),
            kind: kind.into(),
            netns: Some(netns.into()),
            ifname: "eth0".into(),
            host_ifname: (kind != "tap").then(|| "sdv0000beef".into()),
            mac: "02:42:0a:0a:00:02".into(),
            mtu: 1450,
            ip: Some("10.10.0.2".parse().unwrap()),
            prefix_len: Some(24),
            ip6: None,
            gateway: Some("10.10.0.1".parse().unwrap()),
            default_route: true,
        }
    }

    #[test]
    fn tap_script() {
        let s = attach_script(&plan("tap", "web"), "switchctl");
        for line in [
            "ip -n web tuntap add dev eth0 mode tap vnet_hdr multi_queue",
            "ip -n web link set dev eth0 address 02:42:0a:0a:00:02 mtu 1450",
            "ip -n web addr add 10.10.0.2/24 dev eth0",
            "ip -n web link set dev eth0 up",
            "ip -n web route show default | grep -q . || ip -n web route add default via 10.10.0.1 dev eth0",
            "switchctl network connect frontend web --name web --ifname eth0 --mac 02:42:0a:0a:00:02 --ip 10.10.0.2",
        ] {
            assert!(s.lines().any(|l| l == line), "missing {line:?} in\n{s}");
        }
    }

    #[test]
    fn veth_script_with_a_netns_path() {
        let s = attach_script(&plan("veth", "/proc/42/ns/net"), "switchctl --socket /s");
        assert!(s.contains("ip link add sdv0000beef type veth peer name eth0 netns /proc/42/ns/net\n"), "{s}");
        assert!(s.contains("nsenter --net=/proc/42/ns/net ip addr add 10.10.0.2/24 dev eth0\n"), "{s}");
        assert!(s.contains("--kind veth --host-ifname sdv0000beef\n"), "{s}");
        assert!(!s.contains("-6") && !s.contains("ipv6"), "no IPv6 step without a given address:\n{s}");
        let given = AttachPlan { ip6: Some("fd00:10::5".parse().unwrap()), ..plan("veth", "/proc/42/ns/net") };
        let s = attach_script(&given, "switchctl");
        let sysctl = s.find("nsenter --net=/proc/42/ns/net sysctl -qw net.ipv6.conf.eth0.autoconf=0\n");
        let addr = s.find("nsenter --net=/proc/42/ns/net ip addr add fd00:10::5/64 dev eth0 nodad\n");
        let up = s.find("ip link set dev eth0 up");
        assert!(sysctl.is_some() && sysctl < addr && addr < up, "autoconf off, then the address, then up:\n{s}");
        assert!(s.contains(" --ip 10.10.0.2 --ip6 fd00:10::5 --kind veth"), "{s}");
    }

    #[test]
    fn inspect_shows_the_cipher_and_hosts_sealing_with_another() {
        let mut detail = NetworkDetail {
            network: NetworkInfo {
                name: "vault".into(),
                vni: 300,
                subnet: None,
                gateway: None,
                subnet6: None,
                gateway6: None,
                mtu: 1414,
                encrypted: true,
                cipher: Some("aes-256-gcm".into()),
                default_cipher: true,
                ciphers: [("h1".into(), "aes-256-gcm".into()), ("h2".into(), "aes-256-gcm".into())].into(),
                key: Some("cluster".into()),
                internal: false,
                dns: false,
                dhcp: false,
                host_access: false,
                routes: Vec::new(),
                ports: 0,
                hosts: Vec::new(),
                origin: "config".into(),
            },
            endpoints: Vec::new(),
        };
        let s = network_detail(&detail);
        assert!(s.contains("encrypted: yes (aes-256-gcm, this CPU's default; cluster key)\n"), "{s}");
        assert!(!s.contains("ciphers:"), "every host seals alike: {s}");
        detail.network.ciphers.insert("h3".into(), "chacha20-poly1305".into());
        let s = network_detail(&detail);
        assert!(
            s.contains("origin:    config\nciphers:   h1 aes-256-gcm, h2 aes-256-gcm, h3 chacha20-poly1305 (each host seals with its own, opens both)\n\n"),
            "{s}"
        );
        detail.network.default_cipher = false;
        assert!(network_detail(&detail).contains("encrypted: yes (aes-256-gcm, cluster key)\n"));
    }
}
