//! `switchctl`: manage a running switchd, in the spirit of `docker network`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::de::DeserializeOwned;
use switchd::control::api::{
    AttachPlan, EndpointInfo, FdbEntry, KeyInfo, LiveLine, LiveRequest, NetworkDetail, NetworkInfo, Page, PeerInfo,
    PolicyInfo, PublishInfo, ReloadReport, Request, RouteInfo, ServiceInfo, Stats, Status, Trace, TraceRequest,
};
use switchd::control::{client, render};
use switchd_config::raw::{RawNetwork, RawPolicy, RawPort, RawPublish, RawRoute, RawService};

#[derive(Debug, Parser)]
#[command(name = "switchctl", version = switchd::VERSION, about = "Manage a running switchd")]
struct Cli {
    /// switchd's control socket.
    #[arg(long, global = true, env = "SWITCHD_SOCKET", default_value = "/run/switchd/switchd.sock")]
    socket: PathBuf,
    /// Print one JSON document instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Host name, version, uptime, networks, ports, peers alive.
    Status,
    /// This switchctl's version and commit, and the running switchd's.
    Version,
    /// Endpoints by traffic, busiest first, refreshed every interval (like
    /// `docker stats`): packets and bits per second each way, drops.
    Top {
        /// Seconds between two looks.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
        /// One interval, printed once (with --json: for scripts).
        #[arg(long)]
        once: bool,
        /// Stop after this many refreshes.
        #[arg(long)]
        count: Option<u64>,
    },
    /// A pcap of an endpoint's frames, both ways, to a file or stdout
    /// (`switchctl capture web | tcpdump -r - -nn`); of every port of a
    /// network (a pcapng, each frame with its port); or of the underlay
    /// datagrams to and from a VTEP. How many frames, and how many it
    /// could not keep, on stderr at the end.
    Capture {
        /// An endpoint (container) on this host, or a network.
        #[arg(required_unless_present = "vtep")]
        endpoint: Option<String>,
        /// The endpoint's network, when it is on several.
        #[arg(long)]
        network: Option<String>,
        /// Instead: the VXLAN datagrams to and from this host (its name or
        /// underlay address), as they are on the wire.
        #[arg(long, conflicts_with_all = ["endpoint", "network"])]
        vtep: Option<String>,
        /// With --vtep: show sealed datagrams opened, as plain VXLAN (the
        /// inner frames in clear; switchd logs it).
        #[arg(long, requires = "vtep")]
        decrypt: bool,
        /// Write the pcap here instead of to stdout.
        #[arg(short = 'w', value_name = "FILE")]
        write: Option<std::path::PathBuf>,
        /// Stop after this many frames.
        #[arg(long)]
        count: Option<u64>,
        /// Stop after this many seconds.
        #[arg(long)]
        seconds: Option<f64>,
    },
    /// Reads host.toml again and applies its changes to networks, ports,
    /// routes and peers (as SIGHUP does); an invalid file changes nothing.
    Reload,
    /// Networks and their endpoints.
    #[command(subcommand)]
    Network(NetworkCommand),
    /// What the switch would do with a packet a container sends, and why
    /// (nothing is learned, counted or sent); with --live, what it does
    /// with the real frames that match, as they cross.
    Trace {
        /// The network the container sends on (with --live: only frames of it).
        #[arg(required_unless_present = "live")]
        network: Option<String>,
        /// The sending container (on this host).
        #[arg(long, required_unless_present_any = ["from_vtep", "live"])]
        from: Option<String>,
        /// Instead: a VXLAN datagram arriving from this VTEP (another host).
        #[arg(long, conflicts_with = "from")]
        from_vtep: Option<std::net::IpAddr>,
        /// With --from-vtep: the VNI it carries (default: the network's).
        #[arg(long, requires = "from_vtep")]
        vni: Option<u32>,
        /// The destination: an IPv4 address, a container's name, or a MAC.
        #[arg(long, required_unless_present = "live")]
        to: Option<String>,
        /// tcp, udp or icmp (default icmp); with --live also arp (default: any).
        #[arg(long)]
        proto: Option<String>,
        /// The TCP or UDP destination port.
        #[arg(long)]
        dport: Option<u16>,
        /// The IPv4 packet's size in bytes (TCP larger than the MTU is TSO).
        #[arg(long)]
        size: Option<usize>,
        /// Send as this address instead of the container's own.
        #[arg(long)]
        src_ip: Option<std::net::IpAddr>,
        /// Send as this MAC instead of the container's own.
        #[arg(long)]
        src_mac: Option<String>,
        /// Show the real decisions for real frames as they cross.
        #[arg(long, conflicts_with_all = ["from", "from_vtep", "to", "dport", "size", "src_ip", "src_mac"])]
        live: bool,
        /// With --live: only frames of this network (as NETWORK).
        #[arg(long = "network", requires = "live", conflicts_with = "network")]
        live_network: Option<String>,
        /// With --live: only frames from or to this container.
        #[arg(long, requires = "live")]
        endpoint: Option<String>,
        /// With --live: only datagrams from this host, and frames to it
        /// (its name or underlay address).
        #[arg(long, requires = "live")]
        host: Option<String>,
        /// With --live: stop after this many frames.
        #[arg(long, requires = "live")]
        count: Option<u64>,
        /// With --live: stop after this many seconds.
        #[arg(long, requires = "live")]
        seconds: Option<f64>,
    },
    /// The forwarding table: MAC, network, where, type, age.
    Fdb {
        /// Only this network.
        network: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Frames, bytes and drops by reason, per port, network and VTEP.
    Stats,
    /// Remote hosts: host, underlay IP, state, last heard, networks.
    Peers,
    /// Keys of encrypted networks and gossip: list, and rotate without loss.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Routing between networks: which pairs route (all others are denied).
    #[command(subcommand)]
    Route(RouteCommand),
    /// Services: a name and a VIP load-balanced over the containers that
    /// join it (`network connect --service`), like swarm's services.
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Network policy: endpoints a policy selects accept only what some
    /// policy allows (and replies to their own connections), cluster-wide.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Forward a host port to a container's port, like `docker run -p`
    /// (NETWORK CONTAINER HOSTPORT:PORT[/PROTO]); or, with --service, a
    /// service's VIP on every host that carries its network, keeping the
    /// client's address (the routing mesh: --service web 8080:80).
    Publish {
        /// NETWORK CONTAINER HOSTPORT:PORT[/PROTO], or with --service HOSTPORT:PORT[/PROTO].
        #[arg(value_name = "ARGS", num_args = 1..=3, required = true)]
        args: Vec<String>,
        /// Publish this service through the routing mesh instead of a container.
        #[arg(long)]
        service: Option<String>,
        /// With --service: its network, if the name is on several.
        #[arg(long)]
        network: Option<String>,
        /// The host address to listen on.
        #[arg(long, default_value = "0.0.0.0")]
        host_ip: String,
        /// Close a relay silent both ways this long (seconds; 0: never, TCP
        /// only). Default: 7440 for TCP (RFC 5382), 30 for UDP.
        #[arg(long, value_name = "SECS")]
        idle_timeout: Option<i64>,
        /// Relays (TCP connections, UDP clients) held at once; when full,
        /// the one idle longest is closed. Default 1024.
        #[arg(long, value_name = "N")]
        max_connections: Option<i64>,
        /// Relays held at once for one client address. Default 256.
        #[arg(long, value_name = "N")]
        max_per_source: Option<i64>,
    },
    /// Stop forwarding a published host port.
    Unpublish {
        #[arg(value_name = "HOSTPORT[/PROTO]")]
        port: String,
    },
    /// Published ports and where they lead (like `docker port`).
    Ports,
    /// Print scripts that do by hand what switchd does.
    #[command(subcommand)]
    Script(ScriptCommand),
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Every policy: what it selects, from where, to which ports, and the
    /// endpoints it isolates now.
    Ls,
    /// Isolate the endpoints SELECT names on NETWORK, and let FROM reach them on PORTs.
    Add {
        name: String,
        #[arg(long)]
        network: String,
        /// The endpoints it isolates: service=NAME, name=PATTERN, cidr=CIDR, or '*'.
        #[arg(long)]
        select: String,
        /// Who may connect (repeat): the same, or network=NAME.
        #[arg(long = "from", value_name = "SELECTOR")]
        from: Vec<String>,
        /// To which port (repeat): 5432/tcp. None: every port.
        #[arg(long = "port", value_name = "PORT[/PROTO]")]
        ports: Vec<String>,
    },
    /// Remove a policy from the whole cluster.
    Rm { name: String },
}

#[derive(Debug, Subcommand)]
enum ServiceCommand {
    /// Every service: mode, VIP, ports, backends and their health.
    Ls,
    /// One service and each of its backends, on every host.
    Inspect {
        name: String,
        #[arg(long)]
        network: Option<String>,
    },
    /// Define a service on a network, for the whole cluster.
    Create {
        name: String,
        #[arg(long)]
        network: String,
        /// vip: a VIP balanced in the data path; dnsrr: DNS round robin.
        #[arg(long, default_value = "vip")]
        mode: String,
        /// The VIP (default: an address from the network's IPAM).
        #[arg(long)]
        vip: Option<String>,
        /// Its IPv6 VIP, on a network with a subnet6 (default: one picked).
        #[arg(long)]
        vip6: Option<String>,
        /// A port it serves (repeat): 80/tcp, 53/udp. None: every port.
        #[arg(long = "port", value_name = "PORT[/PROTO]")]
        ports: Vec<String>,
        /// Check its backends: tcp, or http:/path (2xx or 3xx is healthy).
        #[arg(long)]
        health: Option<String>,
        /// Between checks, in milliseconds (default 2000).
        #[arg(long, value_name = "MS")]
        health_interval: Option<i64>,
        /// Failures in a row that take a backend out, successes that bring it back (default 2).
        #[arg(long, value_name = "N")]
        health_threshold: Option<i64>,
        /// Open HOSTPORT on every host that carries the network, to the VIP's
        /// PORT (the routing mesh; repeat): 8080:80, 5353:53/udp.
        #[arg(long = "publish", short = 'p', value_name = "HOSTPORT:PORT[/PROTO]")]
        publish: Vec<String>,
    },
    /// Remove a service from the whole cluster (its backends stay).
    Rm {
        name: String,
        #[arg(long)]
        network: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum RouteCommand {
    /// Every route: the two networks, where it comes from, whether both exist.
    Ls,
    /// Let two networks' containers reach each other through their gateways.
    Add { a: String, b: String },
    /// Deny routing between two networks again.
    Rm { a: String, b: String },
}

/// Rotation without loss, each step on every host before the next:
/// `key add NEW.key` (all accept it), `key use NEW_ID` (all seal with it),
/// `key rm OLD_ID` (nobody accepts the old one any more). `use` and `rm`
/// check, by gossip, that every other host is ready for them.
#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Every key: its ring (cluster or network), whether this host seals
    /// with it, and which hosts accept it and seal with it.
    Ls,
    /// Accept a key from now on (it does not seal yet); prints its id.
    Add {
        /// A key file: 64 hex characters (e.g. `openssl rand -hex 32`).
        file: PathBuf,
        /// Add to this network's own key ring (a network with its own
        /// key_file), not the cluster's.
        #[arg(long)]
        network: Option<String>,
    },
    /// Seal with this key from now on.
    Use(KeyStep),
    /// Stop accepting this key, for good.
    Rm(KeyStep),
}

/// A long listing a page at a time (a host may know 10,000 endpoints).
#[derive(Debug, Args)]
struct PageArgs {
    /// Show at most N rows; stderr then says how to ask for the next ones.
    #[arg(long, value_name = "N", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    limit: Option<usize>,
    /// Show only the rows after this one (`--limit` names it).
    #[arg(long, value_name = "KEY")]
    after: Option<String>,
}

impl PageArgs {
    /// The page to ask for: one row more than shown, to know if there are more.
    fn request(&self) -> Page {
        Page { after: self.after.clone(), limit: self.limit.map(|n| n.saturating_add(1)) }
    }
}

#[derive(Debug, Args)]
struct KeyStep {
    /// The key's id, as `key ls` and `key add` print it.
    id: String,
    /// Skip the check that every other host is ready.
    #[arg(long)]
    force: bool,
    /// Retry for up to this many seconds while other hosts are not ready
    /// yet (their gossip takes a moment to arrive).
    #[arg(long, value_name = "SECS", default_value_t = 0.0)]
    wait: f64,
}

#[derive(Debug, Subcommand)]
enum NetworkCommand {
    /// List networks.
    Ls,
    /// A network's settings and every endpoint on it, by host and name.
    Inspect {
        name: String,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Create a network.
    Create {
        name: String,
        /// VXLAN network identifier, 1..=16777215, unique.
        #[arg(long)]
        vni: i64,
        #[arg(long)]
        subnet: Option<String>,
        /// Default: the subnet's first address.
        #[arg(long)]
        gateway: Option<String>,
        /// Dual stack: an IPv6 /64 the gateway advertises (containers take
        /// their addresses by SLAAC).
        #[arg(long)]
        subnet6: Option<String>,
        /// Default: the subnet6's first address.
        #[arg(long)]
        gateway6: Option<String>,
        /// Dual stack (as `docker network create --ipv6`): without
        /// --subnet6, the network's own /64 (fd5d:67VV:VVVV::/64, VNI VVVVVV).
        #[arg(long)]
        ipv6: bool,
        /// Default: underlay_mtu - 50 (and - 36 more when encrypted).
        #[arg(long)]
        mtu: Option<i64>,
        /// Endpoints get no default route (like `docker network create --internal`).
        #[arg(long)]
        internal: bool,
        /// Encrypt traffic between hosts (with keys from the cluster key,
        /// unless --key-file gives the network its own).
        #[arg(long)]
        encrypted: bool,
        /// aes-256-gcm or chacha20-poly1305; default: the faster on each host's CPU.
        #[arg(long, requires = "encrypted")]
        cipher: Option<String>,
        /// The network's own key; hosts without it cannot carry it.
        #[arg(long, requires = "encrypted")]
        key_file: Option<PathBuf>,
        /// No embedded DNS on the gateway.
        #[arg(long)]
        no_dns: bool,
        /// No DHCP server on the gateway.
        #[arg(long)]
        no_dhcp: bool,
        /// A host-side interface (sdgVNI) with the gateway address: the host
        /// reaches the containers, and they the host and, through its NAT, the outside.
        #[arg(long)]
        host_access: bool,
        /// No container-to-container traffic unless a policy allows it
        /// (Docker's enable_icc=false); the gateway still reaches them.
        #[arg(long)]
        no_icc: bool,
    },
    /// Remove networks; refused while endpoints are attached.
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove every network with no endpoints; prints their names.
    Prune,
    /// Attach a container's network namespace.
    Connect(ConnectArgs),
    /// Detach an endpoint; its interface disappears from the container.
    Disconnect {
        network: String,
        /// The container's name or netns (name or path), or the host interface.
        endpoint: String,
    },
}

#[derive(Debug, Args)]
struct ConnectArgs {
    network: String,
    /// A name under /run/netns or a path such as /proc/1234/ns/net.
    /// Not used with --kind uplink.
    netns: Option<String>,
    /// Container name (default: the netns name).
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    ip: Option<String>,
    /// An IPv6 address in the network's subnet6 (default: the SLAAC
    /// address of the MAC, which the container configures itself).
    #[arg(long)]
    ip6: Option<String>,
    #[arg(long)]
    mac: Option<String>,
    /// Interface name inside the container (default: the first free ethN).
    #[arg(long)]
    ifname: Option<String>,
    #[arg(long, value_enum, default_value_t = Kind::Tap)]
    kind: Kind,
    /// veth/uplink: the host-side interface to switch (created for veth if missing).
    #[arg(long)]
    host_ifname: Option<String>,
    /// Leave the interface unconfigured: the container asks the gateway's
    /// DHCP server for its address.
    #[arg(long)]
    dhcp: bool,
    /// Join this service as one of its backends (Docker's --network-alias).
    #[arg(long)]
    service: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Kind {
    Tap,
    Veth,
    Uplink,
}

#[derive(Debug, Subcommand)]
enum ScriptCommand {
    /// The steps of `network connect` as a shell script (nothing is changed).
    Attach(ConnectArgs),
}

impl ConnectArgs {
    fn raw(&self) -> RawPort {
        RawPort {
            network: Some(self.network.clone()),
            netns: self.netns.clone(),
            name: self.name.clone(),
            ifname: self.ifname.clone(),
            ip: self.ip.clone(),
            ip6: self.ip6.clone(),
            mac: self.mac.clone(),
            kind: Some(format!("{:?}", self.kind).to_lowercase()),
            host_ifname: self.host_ifname.clone(),
            dhcp: Some(self.dhcp),
            service: self.service.clone(),
            attachment: None,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(output) => {
            print!("{output}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Sends `request`; returns the JSON (with `--json`) or `human` applied to the typed result.
fn ask<T: DeserializeOwned>(cli: &Cli, request: Request, human: impl FnOnce(T) -> String) -> Result<String, String> {
    show(cli, client::call(&cli.socket, &request)?, human)
}

/// A reply's result as it came (`--json`), or for people.
fn show<T: DeserializeOwned>(
    cli: &Cli,
    value: serde_json::Value,
    human: impl FnOnce(T) -> String,
) -> Result<String, String> {
    if cli.json {
        return Ok(format!("{}\n", serde_json::to_string_pretty(&value).map_err(|e| e.to_string())?));
    }
    let typed: T = serde_json::from_value(value).map_err(|e| format!("unexpected reply from switchd: {e}"))?;
    Ok(human(typed))
}

/// [`ask`] for a listing asked a page at a time: of the reply's rows (the
/// result, or its field `rows`), those beyond `--limit` are dropped, and
/// stderr says which `--after` gets the next page (the `key` of the last
/// row shown).
fn ask_page<T: DeserializeOwned>(
    cli: &Cli,
    request: Request,
    page: &PageArgs,
    rows: Option<&str>,
    key: impl Fn(&serde_json::Value) -> Option<String>,
    human: impl FnOnce(T) -> String,
) -> Result<String, String> {
    let mut value = client::call(&cli.socket, &request)?;
    let rows = match rows {
        Some(field) => value.get_mut(field),
        None => Some(&mut value),
    };
    if let (Some(limit), Some(serde_json::Value::Array(rows))) = (page.limit, rows) {
        if rows.len() > limit {
            rows.truncate(limit);
            let last = rows.last().and_then(&key).ok_or("unexpected reply from switchd: a row without its key")?;
            eprintln!("switchctl: more rows after these {limit}: add --after {last}");
        }
    }
    show(cli, value, human)
}

/// `switchctl top`: two stats snapshots `interval` apart, as rates; again
/// and again (clearing the terminal) unless `once`.
fn top(cli: &Cli, interval: f64, once: bool, count: Option<u64>) -> Result<String, String> {
    if !(0.05..=3600.0).contains(&interval) {
        return Err(format!("--interval {interval}: between 0.05 and 3600 seconds"));
    }
    let stats = || -> Result<(Stats, std::time::Instant), String> {
        let value = client::call(&cli.socket, &Request::Stats)?;
        let stats = serde_json::from_value(value).map_err(|e| format!("unexpected reply from switchd: {e}"))?;
        Ok((stats, std::time::Instant::now()))
    };
    let mut before = stats()?;
    let mut shown = 0u64;
    loop {
        std::thread::sleep(std::time::Duration::from_secs_f64(interval));
        let after = stats()?;
        let rates = render::rates(&before.0, &after.0, (after.1 - before.1).as_secs_f64());
        let text = match cli.json {
            true => format!("{}\n", serde_json::to_string_pretty(&rates).map_err(|e| e.to_string())?),
            false => render::top(&rates),
        };
        if once {
            return Ok(text);
        }
        // Clear the screen and go home, as top does.
        print!("\x1b[2J\x1b[H{text}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        shown += 1;
        if count.is_some_and(|c| shown >= c) {
            return Ok(String::new());
        }
        before = after;
    }
}

fn lines(names: Vec<String>) -> String {
    names.iter().map(|n| format!("{n}\n")).collect()
}

fn run(cli: &Cli) -> Result<String, String> {
    match &cli.command {
        Command::Status => ask(cli, Request::Status, |s: Status| render::status(&s)),
        Command::Version => {
            let client = format!("switchctl {}\n", switchd::VERSION);
            let server = ask(cli, Request::Status, |s: Status| format!("switchd   {}\n", s.version))
                .map_err(|e| format!("{client}switchd: {e}"))?;
            Ok(if cli.json { server } else { client + &server })
        }
        Command::Fdb { network, page } => {
            let request = Request::Fdb { network: network.clone(), page: page.request() };
            let key = |row: &serde_json::Value| format!("{}/{}", row["network"].as_str()?, row["mac"].as_str()?).into();
            ask_page(cli, request, page, None, key, |e: Vec<FdbEntry>| render::fdb(&e))
        }
        Command::Trace { live: true, network, live_network, endpoint, host, proto, count, seconds, .. } => {
            let live = LiveRequest {
                network: network.clone().or(live_network.clone()),
                endpoint: endpoint.clone(),
                host: host.clone(),
                proto: proto.clone(),
                count: *count,
                seconds: *seconds,
            };
            let json = cli.json;
            let end = client::trace_live(&cli.socket, &Request::TraceLive { live }, |line| {
                let LiveLine::Frame(frame) = line else { return true };
                let text = match json {
                    true => serde_json::to_string(line).unwrap_or_default() + "\n",
                    false => render::live_frame(frame),
                };
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                out.write_all(text.as_bytes()).and_then(|()| out.flush()).is_ok()
            })?;
            if let LiveLine::End { frames, lost } = end {
                eprintln!("{frames} frames traced, {lost} lost");
            }
            Ok(String::new())
        }
        Command::Trace { network, from, from_vtep, vni, to, proto, dport, size, src_ip, src_mac, .. } => {
            let trace = TraceRequest {
                network: network.clone().unwrap_or_default(),
                from: from.clone().unwrap_or_default(),
                from_vtep: *from_vtep,
                vni: *vni,
                to: to.clone().unwrap_or_default(),
                proto: proto.clone(),
                dport: *dport,
                size: *size,
                src_ip: *src_ip,
                src_mac: src_mac.clone(),
            };
            ask(cli, Request::Trace { trace }, |t: Trace| render::trace(&t))
        }
        Command::Top { interval, once, count } => top(cli, *interval, *once, *count),
        Command::Capture { endpoint, network, vtep, decrypt, write, count, seconds } => {
            let request = Request::Capture {
                endpoint: endpoint.clone().unwrap_or_default(),
                network: network.clone(),
                vtep: vtep.clone(),
                decrypt: *decrypt,
                count: *count,
                seconds: *seconds,
            };
            let mut out: Box<dyn std::io::Write> = match write {
                Some(path) => Box::new(std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?),
                None => Box::new(std::io::stdout().lock()),
            };
            let end = client::capture(&cli.socket, &request, &mut out)?;
            eprintln!("{} frames captured, {} lost", end.frames, end.lost);
            Ok(String::new())
        }
        Command::Reload => ask(cli, Request::Reload, |r: ReloadReport| render::reload(&r)),
        Command::Stats => ask(cli, Request::Stats, |s: Stats| render::stats(&s)),
        Command::Peers => ask(cli, Request::Peers, |p: Vec<PeerInfo>| render::peers(&p)),
        Command::Network(command) => match command {
            NetworkCommand::Ls => ask(cli, Request::NetworkLs, |n: Vec<NetworkInfo>| render::networks(&n)),
            NetworkCommand::Inspect { name, page } => {
                let request = Request::NetworkInspect { name: name.clone(), page: page.request() };
                let key =
                    |row: &serde_json::Value| format!("{}@{}", row["name"].as_str()?, row["host"].as_str()?).into();
                ask_page(cli, request, page, Some("endpoints"), key, |d: NetworkDetail| render::network_detail(&d))
            }
            NetworkCommand::Create {
                name,
                vni,
                subnet,
                gateway,
                subnet6,
                gateway6,
                ipv6,
                mtu,
                internal,
                encrypted,
                cipher,
                key_file,
                no_dns,
                no_dhcp,
                host_access,
                no_icc,
            } => {
                let network = RawNetwork {
                    name: Some(name.clone()),
                    vni: Some(*vni),
                    subnet: subnet.clone(),
                    gateway: gateway.clone(),
                    mtu: *mtu,
                    internal: Some(*internal),
                    encrypted: Some(*encrypted),
                    cipher: cipher.clone(),
                    key_file: key_file.as_deref().map(absolute).transpose()?,
                    dns: no_dns.then_some(false),
                    dhcp: no_dhcp.then_some(false),
                    host_access: Some(*host_access),
                    icc: no_icc.then_some(false),
                    subnet6: subnet6.clone(),
                    gateway6: gateway6.clone(),
                    ipv6: ipv6.then_some(true),
                };
                ask(cli, Request::NetworkCreate { network }, |n: NetworkInfo| format!("{}\n", n.name))
            }
            NetworkCommand::Rm { names } => ask(cli, Request::NetworkRm { names: names.clone() }, lines),
            NetworkCommand::Prune => ask(cli, Request::NetworkPrune, lines),
            NetworkCommand::Connect(args) => {
                ask(cli, Request::NetworkConnect { port: args.raw() }, |e: EndpointInfo| render::endpoints(&[e]))
            }
            NetworkCommand::Disconnect { network, endpoint } => ask(
                cli,
                Request::NetworkDisconnect { network: network.clone(), endpoint: endpoint.clone() },
                |e: EndpointInfo| format!("{}\n", e.name),
            ),
        },
        Command::Key(command) => match command {
            KeyCommand::Ls => ask(cli, Request::KeyLs, |k: Vec<KeyInfo>| render::keys(&k)),
            KeyCommand::Add { file, network } => {
                let request = Request::KeyAdd { file: absolute(file)?, network: network.clone() };
                ask(cli, request, |k: KeyInfo| format!("{}\n", k.id))
            }
            KeyCommand::Use(step) => retrying(step.wait, || {
                let request = Request::KeyUse { id: step.id.clone(), force: step.force };
                ask(cli, request, |k: KeyInfo| format!("{}\n", k.id))
            }),
            KeyCommand::Rm(step) => retrying(step.wait, || {
                let request = Request::KeyRm { id: step.id.clone(), force: step.force };
                ask(cli, request, |id: String| format!("{id}\n"))
            }),
        },
        Command::Policy(command) => match command {
            PolicyCommand::Ls => ask(cli, Request::PolicyLs, |p: Vec<PolicyInfo>| render::policies(&p)),
            PolicyCommand::Add { name, network, select, from, ports } => {
                let policy = RawPolicy {
                    name: Some(name.clone()),
                    network: Some(network.clone()),
                    select: Some(select.clone()),
                    from: Some(from.clone()),
                    ports: Some(ports.clone()),
                };
                ask(cli, Request::PolicyAdd { policy }, |p: PolicyInfo| render::policies(&[p]))
            }
            PolicyCommand::Rm { name } => {
                ask(cli, Request::PolicyRm { name: name.clone() }, |p: PolicyInfo| format!("{}\n", p.name))
            }
        },
        Command::Service(command) => match command {
            ServiceCommand::Ls => ask(cli, Request::ServiceLs, |s: Vec<ServiceInfo>| render::services(&s)),
            ServiceCommand::Inspect { name, network } => {
                let request = Request::ServiceInspect { name: name.clone(), network: network.clone() };
                ask(cli, request, |s: ServiceInfo| render::service(&s))
            }
            ServiceCommand::Create {
                name,
                network,
                mode,
                vip,
                vip6,
                ports,
                health,
                health_interval,
                health_threshold,
                publish,
            } => {
                let service = RawService {
                    name: Some(name.clone()),
                    network: Some(network.clone()),
                    mode: Some(mode.clone()),
                    vip: vip.clone(),
                    vip6: vip6.clone(),
                    ports: Some(ports.clone()),
                    health: health.clone(),
                    health_interval_ms: *health_interval,
                    health_threshold: *health_threshold,
                    publish: Some(publish.clone()),
                };
                ask(cli, Request::ServiceCreate { service }, |s: ServiceInfo| render::service(&s))
            }
            ServiceCommand::Rm { name, network } => {
                let request = Request::ServiceRm { name: name.clone(), network: network.clone() };
                ask(cli, request, |s: ServiceInfo| format!("{}\n", s.name))
            }
        },
        Command::Route(command) => {
            let route = |a: &String, b: &String| RawRoute { networks: Some(vec![a.clone(), b.clone()]) };
            let request = match command {
                RouteCommand::Ls => Request::RouteLs,
                RouteCommand::Add { a, b } => Request::RouteAdd { route: route(a, b) },
                RouteCommand::Rm { a, b } => Request::RouteRm { route: route(a, b) },
            };
            ask(cli, request, |r: Vec<RouteInfo>| render::routes(&r))
        }
        Command::Publish { args, service: Some(name), network, .. } => {
            let [ports] = &args[..] else {
                return Err(format!("with --service, give only HOSTPORT:PORT[/PROTO] (got {})", args.join(" ")));
            };
            let request = Request::ServicePublish { name: name.clone(), network: network.clone(), port: ports.clone() };
            ask(cli, request, |p: Vec<PublishInfo>| render::published(&p))
        }
        Command::Publish {
            args,
            service: None,
            network: _,
            host_ip,
            idle_timeout,
            max_connections,
            max_per_source,
        } => {
            let [network, container, ports] = &args[..] else {
                return Err(format!("give NETWORK CONTAINER HOSTPORT:PORT[/PROTO] (got {})", args.join(" ")));
            };
            let (host_port, port, protocol) = parse_publish(ports)?;
            let publish = RawPublish {
                network: Some(network.clone()),
                container: Some(container.clone()),
                service: None,
                host_port: Some(host_port),
                port: Some(port),
                protocol: Some(protocol),
                host_ip: Some(host_ip.clone()),
                idle_timeout: *idle_timeout,
                max_connections: *max_connections,
                max_per_source: *max_per_source,
            };
            ask(cli, Request::PublishAdd { publish }, |p: Vec<PublishInfo>| render::published(&p))
        }
        Command::Unpublish { port } => {
            let (port, protocol) = port.split_once('/').unwrap_or((port, "tcp"));
            let host_port = port.parse().map_err(|_| format!("{port:?} is not a port number"))?;
            let request = Request::PublishRm { host_port, protocol: protocol.to_owned() };
            ask(cli, request, |p: Vec<PublishInfo>| render::published(&p))
        }
        Command::Ports => ask(cli, Request::PublishLs, |p: Vec<PublishInfo>| render::published(&p)),
        Command::Script(ScriptCommand::Attach(args)) => {
            let ctl = format!("switchctl --socket {}", cli.socket.display());
            ask(cli, Request::PlanAttach { port: args.raw() }, |p: AttachPlan| render::attach_script(&p, &ctl))
        }
    }
}

/// `HOSTPORT:PORT[/PROTO]`, as `docker run -p` writes it; the daemon
/// checks the ranges.
fn parse_publish(spec: &str) -> Result<(i64, i64, String), String> {
    let (ports, protocol) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let bad = || format!("{spec:?} is not HOSTPORT:PORT[/tcp|/udp]");
    let (host, container) = ports.split_once(':').ok_or_else(bad)?;
    Ok((host.parse().map_err(|_| bad())?, container.parse().map_err(|_| bad())?, protocol.to_owned()))
}

/// A path the daemon can open whatever its working directory.
fn absolute(path: &Path) -> Result<PathBuf, String> {
    std::path::absolute(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Runs `step` until it succeeds or `wait` seconds have passed.
fn retrying(wait: f64, mut step: impl FnMut() -> Result<String, String>) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs_f64(wait.max(0.0));
    loop {
        match step() {
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
            result => return result,
        }
    }
}
