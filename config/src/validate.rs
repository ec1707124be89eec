//! Stage two: raw values into typed, validated ones. Every rule that fails
//! adds a `FieldError`; nothing stops at the first.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{FieldError, KeyPath};
use crate::raw::{
    RawDocker, RawFile, RawGossip, RawHost, RawMetrics, RawNetwork, RawPeer, RawPolicy, RawPort, RawPublish, RawRoute,
    RawService,
};
use crate::types::{IfName, MacAddr, Mtu, Name, Subnet, Vni, shown};
use crate::{
    Cipher, Config, DockerConfig, Encryption, GossipConfig, HealthCheck, HostConfig, KeySource, MeshPort,
    MetricsConfig, MetricsListen, NetworkConfig, PeerConfig, PolicyConfig, PortConfig, PortKind, Probe, Protocol,
    PublishConfig, RouteConfig, Selector, ServiceConfig, ServiceMode, ServicePort,
};

/// VXLAN over IPv4 adds 50 bytes: inner Ethernet 14, outer IPv4 20, UDP 8, VXLAN 8.
pub const VXLAN_OVERHEAD: u32 = switchd_wire::vxlan::OVERHEAD_V4;
/// Over IPv6, 20 more.
pub const VXLAN_OVERHEAD_V6: u32 = switchd_wire::vxlan::OVERHEAD_V6;
/// What sealing adds on an encrypted network: 20 bytes of header beyond
/// VXLAN's and a 16-byte tag.
pub const SEALED_OVERHEAD: u32 = switchd_wire::sealed::OVERHEAD as u32;

/// Collects errors while fields are checked one by one.
#[derive(Default)]
pub(crate) struct Errors(pub Vec<FieldError>);

impl Errors {
    fn push(&mut self, path: KeyPath, reason: impl Into<String>) {
        self.0.push(FieldError::new(path, reason));
    }

    /// Runs `check` on a present value; records its error under `path`.
    fn check<T, U>(
        &mut self,
        path: &KeyPath,
        value: Option<T>,
        check: impl FnOnce(T) -> Result<U, String>,
    ) -> Option<U> {
        match check(value?) {
            Ok(v) => Some(v),
            Err(reason) => {
                self.push(path.clone(), reason);
                None
            }
        }
    }

    fn required<T>(&mut self, path: &KeyPath, value: Option<T>) -> Option<T> {
        if value.is_none() {
            self.push(path.clone(), "is required");
        }
        value
    }

    /// The network `at.network` names (required), among `networks`.
    fn network<'a>(
        &mut self,
        at: &KeyPath,
        name: &Option<String>,
        networks: &'a [NetworkConfig],
    ) -> Option<&'a NetworkConfig> {
        let name = self.required(&at.key("network"), name.clone())?;
        let found = networks.iter().find(|net| net.name.as_str() == name);
        if found.is_none() {
            self.push(at.key("network"), format!("no network named {}", shown(&name)));
        }
        found
    }

    /// `at.ports`: at most [`MAX_SERVICE_PORTS`] of "80/tcp", "53/udp" or
    /// "8080", each once, in the order given.
    fn ports(&mut self, at: &KeyPath, raw: &Option<Vec<String>>) -> Vec<ServicePort> {
        let raw = raw.as_deref().unwrap_or_default();
        if raw.len() > MAX_SERVICE_PORTS {
            self.push(at.key("ports"), format!("names {} ports; at most {MAX_SERVICE_PORTS}", raw.len()));
        }
        let mut ports = Vec::new();
        for (i, p) in raw.iter().enumerate().take(MAX_SERVICE_PORTS) {
            if let Some(p) = self.check(&at.key("ports").index(i), Some(p.as_str()), service_port) {
                if ports.contains(&p) {
                    self.push(at.key("ports").index(i), format!("{p} is named twice"));
                }
                ports.push(p);
            }
        }
        ports
    }

    /// What a check of one entry comes to: the value, or every error.
    fn finish<T>(self, value: Option<T>) -> Result<T, Vec<FieldError>> {
        match value {
            Some(v) if self.0.is_empty() => Ok(v),
            _ => Err(self.0),
        }
    }
}

fn out_of_range(v: i64, min: impl std::fmt::Display, max: impl std::fmt::Display) -> String {
    format!("{v} is out of range {min}..={max}")
}

/// A checker for an integer that must lie in `min..=max`.
fn int_in<T: TryFrom<i64>>(min: i64, max: i64) -> impl Fn(i64) -> Result<T, String> {
    move |v| (min..=max).contains(&v).then(|| T::try_from(v).ok()).flatten().ok_or_else(|| out_of_range(v, min, max))
}

fn parse_ip(s: String) -> Result<IpAddr, String> {
    s.parse().map_err(|_| format!("{} is not an IP address", shown(&s)))
}

/// A Unix socket's path fits `sun_path`: 108 bytes with the final NUL.
pub const MAX_SOCKET_PATH: usize = 107;

/// A path a Unix socket can be bound at (checked here, so that `--check`
/// refuses what `bind` would).
fn socket_path(path: PathBuf) -> Result<PathBuf, String> {
    let len = path.as_os_str().len();
    if len == 0 {
        return Err("must not be empty".into());
    }
    if len > MAX_SOCKET_PATH {
        return Err(format!(
            "{} is {len} bytes; a Unix socket path is at most {MAX_SOCKET_PATH}",
            shown(&path.to_string_lossy())
        ));
    }
    Ok(path)
}

/// A VTEP address: unicast (not unspecified, multicast or broadcast, also
/// written as an IPv4-mapped IPv6 address).
fn vtep_address(ip: IpAddr) -> Result<IpAddr, String> {
    let why = match ip.to_canonical() {
        c if c.is_unspecified() => Some("unspecified"),
        c if c.is_multicast() => Some("multicast"),
        IpAddr::V4(v4) if v4.is_broadcast() => Some("broadcast"),
        _ => None,
    };
    match why {
        Some(why) => Err(format!("{ip} cannot be a VTEP address: it is {why}, not unicast")),
        None => Ok(ip),
    }
}

fn read_hostname() -> Option<String> {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    Some(raw.trim().to_owned())
}

/// The host section. Always returns a value (defaults where a field was
/// bad) so that the rest of the file is still checked against it.
pub(crate) fn host(raw: &RawHost, errors: &mut Errors) -> HostConfig {
    let at = KeyPath::root().key("host");
    let name = match raw.name.clone() {
        Some(n) => errors.check(&at.key("name"), Some(n), |n| Name::new(&n)),
        None => {
            let hostname = read_hostname().unwrap_or_default();
            errors.check(&at.key("name"), Some(hostname), |h| {
                Name::new(&h).map_err(|e| format!("not set, and the hostname is not usable: {e}"))
            })
        }
    };
    let underlay_ip =
        errors.check(&at.key("underlay_ip"), raw.underlay_ip.clone(), |s| parse_ip(s).and_then(vtep_address));
    let overhead = if underlay_ip.is_some_and(|ip| ip.is_ipv6()) { VXLAN_OVERHEAD_V6 } else { VXLAN_OVERHEAD };
    let vxlan_port = errors.check(
        &at.key("vxlan_port"),
        Some(raw.vxlan_port.unwrap_or(i64::from(switchd_wire::vxlan::DEFAULT_PORT))),
        int_in::<u16>(1, 65535),
    );
    let underlay_mtu = match raw.underlay_mtu {
        Some(v) => errors.check(&at.key("underlay_mtu"), Some(v), |v| {
            let v: u32 = int_in(i64::from(Mtu::MIN + overhead), i64::from(Mtu::MAX))(v)?;
            Mtu::new(v)
        }),
        None => Some(Mtu::new(1500).expect("1500 is a valid MTU")),
    };
    let aging = errors.check(&at.key("mac_aging_time"), Some(raw.mac_aging_time.unwrap_or(300)), |v| {
        int_in::<u64>(1, 1_000_000)(v).map(Duration::from_secs)
    });
    let mac_limit = errors.check(&at.key("mac_limit"), Some(raw.mac_limit.unwrap_or(1024)), int_in::<u32>(1, 1 << 24));
    let workers =
        errors.check(&at.key("workers"), Some(raw.workers.unwrap_or(default_workers())), int_in::<usize>(1, 64));
    let crypto_helpers =
        errors.check(&at.key("crypto_helpers"), Some(raw.crypto_helpers.unwrap_or(0)), int_in::<usize>(0, 64));
    let busy_poll = errors.check(
        &at.key("busy_poll_us"),
        Some(raw.busy_poll_us.unwrap_or(HostConfig::DEFAULT_BUSY_POLL_US as i64)),
        |v| int_in::<u64>(0, 10_000)(v).map(Duration::from_micros),
    );
    let control_socket = errors.check(
        &at.key("control_socket"),
        Some(raw.control_socket.clone().unwrap_or_else(|| PathBuf::from(HostConfig::DEFAULT_CONTROL_SOCKET))),
        socket_path,
    );
    HostConfig {
        name: name.unwrap_or_else(|| Name::new("invalid").expect("a valid name")),
        underlay_ip,
        vxlan_port: vxlan_port.unwrap_or(switchd_wire::vxlan::DEFAULT_PORT),
        control_socket: control_socket.unwrap_or_else(|| PathBuf::from(HostConfig::DEFAULT_CONTROL_SOCKET)),
        state_dir: raw.state_dir.clone().unwrap_or_else(|| PathBuf::from(HostConfig::DEFAULT_STATE_DIR)),
        underlay_mtu: underlay_mtu.unwrap_or(Mtu::new(1500).expect("1500 is a valid MTU")),
        mac_aging_time: aging.unwrap_or(Duration::from_secs(300)),
        mac_limit: mac_limit.unwrap_or(1024),
        workers: workers.unwrap_or(1),
        io_uring: raw.io_uring.unwrap_or(true),
        crypto_helpers: crypto_helpers.unwrap_or(0),
        busy_poll: busy_poll.unwrap_or(Duration::from_micros(HostConfig::DEFAULT_BUSY_POLL_US)),
    }
}

/// Checks one network on its own. `at` is where it sits (`network[2]` in a
/// file, the root for a `switchctl network create`); `dir` is where a
/// relative `key_file` is found from. Returns the network and, when it has
/// its own key, the key file (read once here to check it).
pub fn network(
    raw: &RawNetwork,
    host: &HostConfig,
    dir: &Path,
    at: &KeyPath,
) -> Result<(NetworkConfig, Option<PathBuf>), Vec<FieldError>> {
    let mut errors = Errors::default();
    let network = network_into(raw, host, dir, at, &mut errors);
    match network {
        Some(n) if errors.0.is_empty() => Ok(n),
        _ => Err(errors.0),
    }
}

fn network_into(
    raw: &RawNetwork,
    host: &HostConfig,
    dir: &Path,
    at: &KeyPath,
    errors: &mut Errors,
) -> Option<(NetworkConfig, Option<PathBuf>)> {
    let name = errors.required(&at.key("name"), raw.name.clone());
    let name = errors.check(&at.key("name"), name, |n| Name::new(&n));
    let vni = errors.required(&at.key("vni"), raw.vni);
    let vni = errors
        .check(&at.key("vni"), vni, |v| u32::try_from(v).map_err(|_| out_of_range(v, 1, Vni::MAX)).and_then(Vni::new));
    let subnet = errors.check(&at.key("subnet"), raw.subnet.clone(), |s| s.parse::<Subnet>());
    let gateway = errors.check(&at.key("gateway"), raw.gateway.clone(), parse_ip);
    let gateway = match (subnet, gateway, raw.gateway.is_some()) {
        (Some(subnet), Some(gw), _) if !subnet.is_assignable(gw) => {
            errors.push(at.key("gateway"), format!("{gw} is not a usable address in subnet {subnet}"));
            None
        }
        (Some(_), Some(gw), _) => Some(gw),
        (Some(subnet), None, false) => Some(subnet.first_host()),
        (None, Some(_), _) if raw.subnet.is_none() => {
            errors.push(at.key("gateway"), "needs a subnet");
            None
        }
        _ => None,
    };
    let encrypted = raw.encrypted.unwrap_or(false);
    let only_if_encrypted = |errors: &mut Errors, key: &str| {
        errors.push(at.key(key), "applies to encrypted networks only; add encrypted = true");
    };
    let cipher = match raw.cipher.clone() {
        Some(_) if !encrypted => {
            only_if_encrypted(errors, "cipher");
            None
        }
        Some(c) => errors.check(&at.key("cipher"), Some(c), |c| {
            c.parse::<Cipher>()
                .map_err(|_| format!("{} is not a cipher; use \"chacha20-poly1305\" or \"aes-256-gcm\"", shown(&c)))
        }),
        // The faster one on this CPU; other hosts pick their own.
        None => Some(Cipher::preferred()),
    };
    let key_file = match &raw.key_file {
        Some(_) if !encrypted => {
            only_if_encrypted(errors, "key_file");
            None
        }
        Some(path) => {
            let path = if path.is_relative() { dir.join(path) } else { path.clone() };
            errors.check(&at.key("key_file"), Some(path), |p| match switchd_crypto::Key::load(&p) {
                Ok(_) => Ok(p),
                Err(e) => Err(e.to_string()),
            })
        }
        None => None,
    };
    let encryption = encrypted.then(|| Encryption {
        cipher: cipher.unwrap_or_else(Cipher::preferred),
        default_cipher: raw.cipher.is_none(),
        key: if key_file.is_some() { KeySource::Own } else { KeySource::Cluster },
    });
    let default_mtu = host.underlay_mtu.get().saturating_sub(host.overlay_overhead(encrypted)).max(Mtu::MIN);
    let mtu = errors.check(&at.key("mtu"), Some(raw.mtu.unwrap_or(i64::from(default_mtu))), |v| {
        u32::try_from(v).map_err(|_| out_of_range(v, Mtu::MIN, Mtu::MAX)).and_then(Mtu::new)
    });
    // The gateway's services need an address to serve from, of either
    // family (an IPv6-only network's gateway serves DNS and DHCPv6).
    let has_subnet = raw.subnet.is_some() || raw.subnet6.is_some();
    let service = |errors: &mut Errors, key: &str, value: Option<bool>| match value {
        Some(true) if !has_subnet => {
            errors.push(at.key(key), "needs a subnet or subnet6 (the gateway serves it)");
            false
        }
        Some(v) => v,
        None => subnet.is_some() || raw.subnet6.is_some(),
    };
    let dns = service(errors, "dns", raw.dns);
    let dhcp = service(errors, "dhcp", raw.dhcp);
    let subnet6 = match (raw.subnet6.clone(), raw.ipv6, raw.vni.and_then(|v| u32::try_from(v).ok())) {
        (Some(_), Some(false), _) => {
            errors.push(at.key("ipv6"), "is false, and a subnet6 is given: leave one out");
            None
        }
        (None, Some(true), Some(vni)) => Some(crate::default_subnet6(vni).to_string()),
        (given, ..) => given,
    };
    let subnet6 = errors.check(&at.key("subnet6"), subnet6, |s| {
        let net = s.parse::<Subnet>()?;
        match net.net() {
            ipnet::IpNet::V6(v6) if v6.prefix_len() == 64 => Ok(net),
            ipnet::IpNet::V6(v6) => Err(format!(
                "{v6} is a /{}; subnet6 is a /64 (containers configure their addresses by SLAAC)",
                v6.prefix_len()
            )),
            ipnet::IpNet::V4(v4) => Err(format!("{v4} is IPv4; subnet6 is an IPv6 /64 (subnet holds the IPv4 one)")),
        }
    });
    let gateway6 = match (subnet6, errors.check(&at.key("gateway6"), raw.gateway6.clone(), parse_ip)) {
        (Some(net), Some(gw)) if !net.is_assignable(gw) => {
            errors.push(at.key("gateway6"), format!("{gw} is not a usable address in subnet6 {net}"));
            None
        }
        (Some(_), Some(gw)) => Some(gw),
        (Some(net), None) => Some(net.first_host()),
        (None, Some(_)) => {
            errors.push(at.key("gateway6"), "needs a subnet6");
            None
        }
        (None, None) => None,
    };
    let host_access = raw.host_access.unwrap_or(false);
    if host_access && !gateway.is_some_and(|g| g.is_ipv4()) {
        errors.push(at.key("host_access"), "needs an IPv4 subnet (the host side takes the gateway address)");
    }
    let config = NetworkConfig {
        name: name?,
        vni: vni?,
        subnet,
        gateway,
        mtu: mtu?,
        internal: raw.internal.unwrap_or(false),
        encryption,
        dns,
        dhcp,
        host_access,
        icc: raw.icc.unwrap_or(true),
        subnet6,
        gateway6,
    };
    Some((config, key_file))
}

fn peer(raw: &RawPeer, host: &HostConfig, at: &KeyPath, errors: &mut Errors) -> Option<PeerConfig> {
    let ip = errors.required(&at.key("underlay_ip"), raw.underlay_ip.clone());
    let ip = errors.check(&at.key("underlay_ip"), ip, |s| {
        let ip = parse_ip(s)?;
        match host.underlay_ip {
            None => Err("a peer needs [host] underlay_ip to send from".to_owned()),
            Some(own) if own == ip => Err(format!("{ip} is this host's own underlay_ip")),
            Some(own) if own.is_ipv4() != ip.is_ipv4() => {
                Err(format!("{ip} is not of the same IP version as underlay_ip {own}"))
            }
            Some(_) => vtep_address(ip),
        }
    });
    let vnis = match &raw.vnis {
        None => Some(None),
        Some(list) if list.is_empty() => {
            errors.push(at.key("vnis"), "is empty; leave it out to carry every network");
            None
        }
        Some(list) => {
            let checked: Vec<Option<Vni>> = list
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    errors.check(&at.key("vnis").index(i), Some(*v), |v| {
                        u32::try_from(v).map_err(|_| out_of_range(v, 1, Vni::MAX)).and_then(Vni::new)
                    })
                })
                .collect();
            checked.into_iter().collect::<Option<Vec<Vni>>>().map(Some)
        }
    };
    let port = errors.check(
        &at.key("vxlan_port"),
        Some(raw.vxlan_port.unwrap_or(i64::from(host.vxlan_port))),
        int_in::<u16>(1, 65535),
    );
    let name = errors.check(&at.key("name"), raw.name.clone(), |n| Name::new(&n));
    let switchd = raw.switchd.unwrap_or(false);
    Some(PeerConfig { underlay_ip: ip?, vnis: vnis?, vxlan_port: port?, name, switchd })
}

/// Checks one port against the networks it may name. `at` as for [`network`].
pub fn port(raw: &RawPort, networks: &[NetworkConfig], at: &KeyPath) -> Result<PortConfig, Vec<FieldError>> {
    let mut errors = Errors::default();
    let port = port_into(raw, networks, at, &mut errors);
    errors.finish(port)
}

fn port_into(raw: &RawPort, networks: &[NetworkConfig], at: &KeyPath, errors: &mut Errors) -> Option<PortConfig> {
    let network = errors.network(at, &raw.network, networks);
    let kind =
        errors.check(&at.key("kind"), Some(raw.kind.clone().unwrap_or_else(|| "tap".into())), |k| match k.as_str() {
            "tap" => Ok(PortKind::Tap),
            "veth" => Ok(PortKind::Veth),
            "uplink" => Ok(PortKind::Uplink),
            other => Err(format!("{} is not a port kind; use \"tap\", \"veth\" or \"uplink\"", shown(other))),
        });
    let netns = raw.netns.clone();
    if netns.as_deref() == Some("") {
        errors.push(at.key("netns"), "must not be empty");
    }
    let host_ifname = errors.check(&at.key("host_ifname"), raw.host_ifname.clone(), |n| IfName::new(&n));
    match kind {
        Some(PortKind::Tap) if netns.is_none() => errors.push(at.key("netns"), "is required for a tap port"),
        Some(PortKind::Tap) if raw.host_ifname.is_some() => {
            errors.push(at.key("host_ifname"), "applies to veth and uplink ports only; a tap port lives in its netns")
        }
        Some(PortKind::Uplink) if raw.host_ifname.is_none() => {
            errors.push(at.key("host_ifname"), "is required for an uplink port: the host interface to switch")
        }
        Some(PortKind::Uplink) if netns.is_some() => {
            errors.push(at.key("netns"), "does not apply to an uplink port, which is a host interface")
        }
        Some(PortKind::Veth) if netns.is_none() && raw.host_ifname.is_none() => errors.push(
            at.key("host_ifname"),
            "a veth port needs host_ifname (an existing interface) or netns (to create a pair in)",
        ),
        _ => {}
    }
    let name = errors.check(&at.key("name"), raw.name.clone(), |n| Name::new(&n));
    let ifname = errors.check(&at.key("ifname"), raw.ifname.clone(), |n| IfName::new(&n));
    let ip = errors.check(&at.key("ip"), raw.ip.clone(), parse_ip);
    if let (Some(ip), Some(net)) = (ip, network) {
        match net.subnet {
            None => errors
                .push(at.key("ip"), format!("network {:?} has no subnet to take addresses from", net.name.as_str())),
            Some(subnet) if !subnet.is_assignable(ip) => errors.push(
                at.key("ip"),
                format!("{ip} is not a usable address in subnet {subnet} of network {:?}", net.name.as_str()),
            ),
            Some(_) if Some(ip) == net.gateway => {
                errors.push(at.key("ip"), format!("{ip} is the gateway of network {:?}", net.name.as_str()))
            }
            Some(_) => {}
        }
    }
    let ip6 = errors.check(&at.key("ip6"), raw.ip6.clone(), |s| match parse_ip(s)? {
        IpAddr::V6(ip) => Ok(ip),
        IpAddr::V4(ip) => Err(format!("{ip} is not an IPv6 address; an IPv4 one is `ip`")),
    });
    if let (Some(ip6), Some(net)) = (ip6, network) {
        let name = net.name.as_str();
        match net.subnet6 {
            None => errors.push(at.key("ip6"), format!("network {name:?} has no subnet6 to take IPv6 addresses from")),
            Some(subnet6) if !subnet6.is_assignable(IpAddr::V6(ip6)) => errors
                .push(at.key("ip6"), format!("{ip6} is not a usable address in subnet6 {subnet6} of network {name:?}")),
            Some(_) if Some(IpAddr::V6(ip6)) == net.gateway6 => {
                errors.push(at.key("ip6"), format!("{ip6} is the gateway6 of network {name:?}"))
            }
            Some(_) if raw.dhcp == Some(true) => errors.push(
                at.key("ip6"),
                "does not go with dhcp: the container takes its IPv6 address from the gateway (SLAAC or DHCPv6)",
            ),
            Some(_) => {}
        }
    }
    let mac = errors.check(&at.key("mac"), raw.mac.clone(), |m| {
        let mac: MacAddr = m.parse()?;
        if mac.is_unicast() { Ok(mac) } else { Err(format!("{mac} is not a unicast address")) }
    });
    let services = errors.check(&at.key("service"), raw.service.clone(), |n| Name::new(&n)).into_iter().collect();
    let attachment = errors.check(&at.key("attachment"), raw.attachment.clone(), |a| {
        if a.is_empty() || a.len() > MAX_ATTACHMENT_ID || a.chars().any(char::is_control) {
            return Err(format!("must be 1 to {MAX_ATTACHMENT_ID} printable characters"));
        }
        Ok(a)
    });
    let dhcp = raw.dhcp.unwrap_or(false);
    if dhcp {
        match network {
            Some(net) if !net.dhcp => errors.push(
                at.key("dhcp"),
                format!("network {:?} has no DHCP server (dhcp = false, or no subnet)", net.name.as_str()),
            ),
            _ if kind != Some(PortKind::Tap) && raw.netns.is_none() => {
                errors.push(at.key("dhcp"), "applies to ports switchd creates in a netns")
            }
            _ => {}
        }
    }
    Some(PortConfig {
        network: network?.name.clone(),
        netns: netns.filter(|n| !n.is_empty()),
        name,
        ifname,
        ip,
        ip6,
        mac,
        kind: kind?,
        host_ifname,
        dhcp,
        services,
        attachment,
    })
}

/// The longest attachment id (CNI's container ids are 64 hex digits).
pub const MAX_ATTACHMENT_ID: usize = 300;

/// The most ports a service names.
pub const MAX_SERVICE_PORTS: usize = 32;
/// The longest path an HTTP health check asks for.
pub const MAX_HEALTH_PATH: usize = 256;

/// Checks one `[[service]]` (also `switchctl service create`) against the
/// networks it may name.
pub fn service(raw: &RawService, networks: &[NetworkConfig], at: &KeyPath) -> Result<ServiceConfig, Vec<FieldError>> {
    let mut errors = Errors::default();
    let service = service_into(raw, networks, at, &mut errors);
    errors.finish(service)
}

/// The most sources one policy names.
pub const MAX_POLICY_SOURCES: usize = 64;

/// "*", "service=NAME", "name=PATTERN", "cidr=CIDR", or (if `network_ok`) "network=NAME".
fn selector(s: &str, network_ok: bool) -> Result<Selector, String> {
    if s == "*" {
        return Ok(Selector::All);
    }
    let Some((kind, value)) = s.split_once('=') else {
        return Err(format!(
            "{} is not a selector; use \"*\", \"service=NAME\", \"name=PATTERN\" or \"cidr=CIDR\"",
            shown(s)
        ));
    };
    match kind {
        "service" => Name::new(value).map(Selector::Service),
        "name"
            if !value.is_empty()
                && value.len() <= 64
                && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-*".contains(&b)) =>
        {
            Ok(Selector::Name(value.to_owned()))
        }
        "name" => Err(format!("{} is not a name pattern (letters, digits, _ . - and *)", shown(value))),
        "cidr" => value.parse().map(Selector::Cidr).map_err(|_| format!("{} is not a CIDR block", shown(value))),
        "network" if network_ok => Name::new(value).map(Selector::Network),
        other => Err(format!("{} is not a selector kind here", shown(other))),
    }
}

/// Checks one `[[policy]]` (also `switchctl policy add`).
pub fn policy(raw: &RawPolicy, networks: &[NetworkConfig], at: &KeyPath) -> Result<PolicyConfig, Vec<FieldError>> {
    let mut errors = Errors::default();
    let policy = policy_into(raw, networks, at, &mut errors);
    errors.finish(policy)
}

fn policy_into(raw: &RawPolicy, networks: &[NetworkConfig], at: &KeyPath, errors: &mut Errors) -> Option<PolicyConfig> {
    let name = errors.required(&at.key("name"), raw.name.clone());
    let name = errors.check(&at.key("name"), name, |n| Name::new(&n));
    let network = errors.network(at, &raw.network, networks);
    let select = errors.required(&at.key("select"), raw.select.clone());
    let select = errors.check(&at.key("select"), select, |s| selector(&s, false));
    let raw_from = raw.from.clone().unwrap_or_default();
    if raw_from.len() > MAX_POLICY_SOURCES {
        errors.push(at.key("from"), format!("names {} sources; at most {MAX_POLICY_SOURCES}", raw_from.len()));
    }
    let from: Vec<Selector> = raw_from
        .iter()
        .enumerate()
        .take(MAX_POLICY_SOURCES)
        .filter_map(|(i, s)| errors.check(&at.key("from").index(i), Some(s.as_str()), |s| selector(s, true)))
        .collect();
    let ports = errors.ports(at, &raw.ports);
    Some(PolicyConfig { name: name?, network: network?.name.clone(), select: select?, from, ports })
}

/// "80/tcp", "53/udp", or "8080" (TCP).
fn service_port(s: &str) -> Result<ServicePort, String> {
    let (port, protocol) = s.split_once('/').unwrap_or((s, "tcp"));
    let protocol = match protocol {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        other => return Err(format!("{} is not a protocol; use \"tcp\" or \"udp\"", shown(other))),
    };
    let port = port.parse::<i64>().map_err(|_| format!("{} is not a port number", shown(port)))?;
    Ok(ServicePort { port: int_in::<u16>(1, 65535)(port)?, protocol })
}

/// "tcp" or "http:/path".
fn probe(s: String) -> Result<Probe, String> {
    match s.split_once(':') {
        None if s == "tcp" => Ok(Probe::Tcp),
        Some(("http", path)) => {
            let printable = path.bytes().all(|b| b.is_ascii_graphic());
            if !path.starts_with('/') || !printable || path.len() > MAX_HEALTH_PATH {
                return Err(format!(
                    "{} is not an HTTP path: it starts with /, has no spaces or control characters, and is at most {MAX_HEALTH_PATH} bytes",
                    shown(path)
                ));
            }
            Ok(Probe::Http { path: path.to_owned() })
        }
        _ => Err(format!("{} is not a health check; use \"tcp\" or \"http:/path\"", shown(&s))),
    }
}

fn service_into(
    raw: &RawService,
    networks: &[NetworkConfig],
    at: &KeyPath,
    errors: &mut Errors,
) -> Option<ServiceConfig> {
    let name = errors.required(&at.key("name"), raw.name.clone());
    let name = errors.check(&at.key("name"), name, |n| {
        if n.to_ascii_lowercase().starts_with("tasks.") {
            return Err(format!("{} starts with \"tasks.\", which DNS keeps for a service's backends", shown(&n)));
        }
        Name::new(&n)
    });
    let network = errors.network(at, &raw.network, networks);
    let mode =
        errors.check(&at.key("mode"), Some(raw.mode.clone().unwrap_or_else(|| "vip".into())), |m| match m.as_str() {
            "vip" => Ok(ServiceMode::Vip),
            "dnsrr" => Ok(ServiceMode::Dnsrr),
            other => Err(format!("{} is not a mode; use \"vip\" or \"dnsrr\"", shown(other))),
        });
    let ports = errors.ports(at, &raw.ports);
    let vip = errors.check(&at.key("vip"), raw.vip.clone(), parse_ip);
    let vip6 = errors.check(&at.key("vip6"), raw.vip6.clone(), |s| match parse_ip(s)? {
        IpAddr::V6(ip) => Ok(ip),
        IpAddr::V4(ip) => Err(format!("{ip} is not an IPv6 address; an IPv4 VIP is `vip`")),
    });
    if let Some(net) = network {
        let name = net.name.as_str();
        match (mode, net.subnet6, vip6) {
            (Some(ServiceMode::Dnsrr), _, Some(_)) => errors.push(at.key("vip6"), "applies to mode \"vip\" only"),
            (_, None, Some(_)) => errors.push(at.key("vip6"), format!("network {name:?} has no subnet6")),
            (_, Some(subnet6), Some(ip6))
                if !subnet6.is_assignable(IpAddr::V6(ip6)) || Some(IpAddr::V6(ip6)) == net.gateway6 =>
            {
                errors.push(at.key("vip6"), format!("{ip6} is not a usable address of network {name:?} ({subnet6})"))
            }
            _ => {}
        }
        match (mode, net.subnet, vip) {
            (Some(ServiceMode::Vip), None, _) if net.subnet6.is_none() => errors.push(
                at.key("mode"),
                format!("a VIP needs a subnet or subnet6; network {name:?} has none (use mode = \"dnsrr\")"),
            ),
            (Some(ServiceMode::Vip), None, Some(_)) => {
                errors.push(at.key("vip"), format!("network {name:?} has no IPv4 subnet; an IPv6 VIP is `vip6`"))
            }
            (Some(ServiceMode::Dnsrr), _, Some(_)) => errors.push(at.key("vip"), "applies to mode \"vip\" only"),
            (_, Some(subnet), Some(ip)) if !subnet.is_assignable(ip) || Some(ip) == net.gateway || !ip.is_ipv4() => {
                errors.push(
                    at.key("vip"),
                    format!("{ip} is not a usable IPv4 address of network {:?} ({subnet})", net.name.as_str()),
                )
            }
            _ => {}
        }
    }
    let probe = errors.check(&at.key("health"), raw.health.clone(), probe);
    let interval = errors.check(
        &at.key("health_interval_ms"),
        Some(raw.health_interval_ms.unwrap_or(HealthCheck::DEFAULT_INTERVAL.as_millis() as i64)),
        |v| int_in::<u64>(100, 3_600_000)(v).map(Duration::from_millis),
    );
    let threshold = errors.check(
        &at.key("health_threshold"),
        Some(raw.health_threshold.unwrap_or(i64::from(HealthCheck::DEFAULT_THRESHOLD))),
        int_in::<u32>(1, 10),
    );
    if probe.is_some() && !ports.iter().any(|p| p.protocol == Protocol::Tcp) {
        errors
            .push(at.key("health"), "checks the service's first TCP port, and it has none (add ports = [\"80/tcp\"])");
    }
    let health = match (probe, interval, threshold) {
        (Some(probe), Some(interval), Some(threshold)) => Some(HealthCheck { probe, interval, threshold }),
        _ => None,
    };
    let mut service = ServiceConfig {
        network: network?.name.clone(),
        name: name?,
        mode: mode?,
        vip,
        vip6,
        ports,
        health,
        publish: Vec::new(),
    };
    for (i, p) in raw.publish.as_deref().unwrap_or_default().iter().enumerate() {
        let at = at.key("publish").index(i);
        if let Some(p) = errors.check(&at, Some(p.as_str()), mesh_port) {
            if let Err(e) = service.may_publish(p) {
                errors.push(at, e);
            }
            service.publish.push(p);
        }
    }
    Some(service)
}

/// "8080:80/tcp": a port of the routing mesh.
pub fn mesh_port(s: &str) -> Result<MeshPort, String> {
    let (ports, protocol) = match s.split_once('/') {
        Some((ports, "tcp")) => (ports, Protocol::Tcp),
        Some((ports, "udp")) => (ports, Protocol::Udp),
        Some((_, other)) => return Err(format!("{} is not a protocol; use tcp or udp", shown(other))),
        None => (s, Protocol::Tcp),
    };
    let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p > 0);
    match ports.split_once(':').map(|(h, p)| (port(h), port(p))) {
        Some((Some(host_port), Some(port))) => Ok(MeshPort { host_port, port, protocol }),
        _ => Err(format!("{} is not HOST_PORT:PORT[/tcp|/udp] with ports 1-65535", shown(s))),
    }
}

/// Checks one `[[route]]`: two different network names.
pub fn route(raw: &RawRoute, at: &KeyPath) -> Result<RouteConfig, Vec<FieldError>> {
    let mut errors = Errors::default();
    let route = route_into(raw, at, &mut errors);
    errors.finish(route)
}

fn route_into(raw: &RawRoute, at: &KeyPath, errors: &mut Errors) -> Option<RouteConfig> {
    let path = at.key("networks");
    let names = errors.required(&path, raw.networks.clone())?;
    let [a, b] = &names[..] else {
        errors.push(path, format!("lists {} networks; a route joins exactly two", names.len()));
        return None;
    };
    let a = errors.check(&path, Some(a.clone()), |n| Name::new(&n))?;
    let b = errors.check(&path, Some(b.clone()), |n| Name::new(&n))?;
    if a == b {
        errors.push(path, format!("names {:?} twice; a route joins two different networks", a.as_str()));
        return None;
    }
    Some(RouteConfig::new(a, b))
}

/// A `[[publish]] service = NAME`: a port of the routing mesh for that
/// `[[service]]` of the file, added to its `publish`.
fn mesh_publish_into(raw: &RawPublish, at: &KeyPath, services: &mut [ServiceConfig], errors: &mut Errors) {
    if raw.container.is_some() {
        errors.push(at.key("service"), "names a service and a container; a port leads to one of them");
        return;
    }
    let (network, host_port, port, protocol) = published_port(raw, at, errors);
    let name = errors.check(&at.key("service"), raw.service.clone(), |n| Name::new(&n));
    let (Some(network), Some(name), Some(host_port), Some(port), Some(protocol)) =
        (network, name, host_port, port, protocol)
    else {
        return;
    };
    let Some(service) = services.iter_mut().find(|s| s.network == network && s.name == name) else {
        errors.push(
            at.key("service"),
            format!("{:?} is no [[service]] of network {:?} in this file (a service of the cluster: switchctl publish --service)", name.as_str(), network.as_str()),
        );
        return;
    };
    let mesh = MeshPort { host_port, port, protocol };
    match service.may_publish(mesh) {
        Ok(()) => service.publish.push(mesh),
        Err(e) => errors.push(at.key("host_port"), e),
    }
}

fn protocol(p: String) -> Result<Protocol, String> {
    match p.as_str() {
        "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        other => Err(format!("{} is not a protocol; use \"tcp\" or \"udp\"", shown(other))),
    }
}

/// Checks one `[[publish]]` (also `switchctl publish`).
pub fn publish(raw: &RawPublish, at: &KeyPath) -> Result<PublishConfig, Vec<FieldError>> {
    let mut errors = Errors::default();
    let publish = publish_into(raw, at, &mut errors);
    errors.finish(publish)
}

/// What every `[[publish]]` names: the network, the host port, the port
/// it leads to, and the protocol (TCP unless said).
fn published_port(
    raw: &RawPublish,
    at: &KeyPath,
    errors: &mut Errors,
) -> (Option<Name>, Option<u16>, Option<u16>, Option<Protocol>) {
    let network = errors.required(&at.key("network"), raw.network.clone());
    let network = errors.check(&at.key("network"), network, |n| Name::new(&n));
    let host_port = errors.required(&at.key("host_port"), raw.host_port);
    let host_port = errors.check(&at.key("host_port"), host_port, int_in::<u16>(1, 65535));
    let port = errors.required(&at.key("port"), raw.port);
    let port = errors.check(&at.key("port"), port, int_in::<u16>(1, 65535));
    let protocol =
        errors.check(&at.key("protocol"), Some(raw.protocol.clone().unwrap_or_else(|| "tcp".into())), protocol);
    (network, host_port, port, protocol)
}

fn publish_into(raw: &RawPublish, at: &KeyPath, errors: &mut Errors) -> Option<PublishConfig> {
    let (network, host_port, port, protocol) = published_port(raw, at, errors);
    let container = errors.required(&at.key("container"), raw.container.clone());
    let container = errors.check(&at.key("container"), container, |n| Name::new(&n));
    let host_ip =
        errors.check(&at.key("host_ip"), Some(raw.host_ip.clone().unwrap_or_else(|| "0.0.0.0".into())), parse_ip);
    let idle_timeout = match (raw.idle_timeout, protocol) {
        (None, Some(p)) => Some(Some(PublishConfig::default_idle_timeout(p))),
        (None, None) => None,
        // A UDP client never says goodbye: only silence ends its relay.
        (Some(v), Some(Protocol::Udp)) => errors.check(&at.key("idle_timeout"), Some(v), |v| {
            int_in::<u64>(1, 86_400)(v).map(|s| Some(Duration::from_secs(s)))
        }),
        (Some(v), _) => errors.check(&at.key("idle_timeout"), Some(v), |v| {
            int_in::<u64>(0, 604_800)(v).map(|s| (s > 0).then(|| Duration::from_secs(s)))
        }),
    };
    let max_connections = errors.check(
        &at.key("max_connections"),
        Some(raw.max_connections.unwrap_or(i64::from(PublishConfig::DEFAULT_MAX_CONNECTIONS))),
        int_in::<u32>(1, 65_536),
    );
    let max_per_source = match raw.max_per_source {
        None => max_connections.map(|max| PublishConfig::DEFAULT_MAX_PER_SOURCE.min(max)),
        Some(v) => errors.check(&at.key("max_per_source"), Some(v), |v| {
            let n = int_in::<u32>(1, 65_536)(v)?;
            match max_connections {
                Some(max) if n > max => Err(format!("{n} is more than max_connections ({max})")),
                _ => Ok(n),
            }
        }),
    };
    Some(PublishConfig {
        network: network?,
        container: container?,
        host_ip: host_ip?,
        host_port: host_port?,
        port: port?,
        protocol: protocol?,
        idle_timeout: idle_timeout?,
        max_connections: max_connections?,
        max_per_source: max_per_source?,
    })
}

fn docker(raw: &RawDocker, errors: &mut Errors) -> Option<DockerConfig> {
    let at = KeyPath::root().key("docker").key("socket");
    let socket = raw.socket.clone().unwrap_or_else(|| PathBuf::from(DockerConfig::DEFAULT_SOCKET));
    let socket = errors.check(&at, Some(socket), |socket| {
        let named =
            socket.extension().is_some_and(|e| e == "sock") && socket.file_stem().is_some_and(|s| !s.is_empty());
        if !socket.is_absolute() || !named {
            return Err(format!(
                "{} must be an absolute path ending in NAME.sock (dockerd names the driver after it)",
                shown(&socket.to_string_lossy())
            ));
        }
        let socket = socket_path(socket)?;
        Ok(socket)
    });
    let api_socket = errors.check(
        &KeyPath::root().key("docker").key("api_socket"),
        Some(raw.api_socket.clone().unwrap_or_else(|| PathBuf::from(DockerConfig::DEFAULT_API_SOCKET))),
        socket_path,
    );
    Some(DockerConfig { socket: socket?, api_socket: api_socket? })
}

fn metrics(raw: &RawMetrics, errors: &mut Errors) -> Option<MetricsConfig> {
    let at = KeyPath::root().key("metrics").key("listen");
    let Some(listen) = &raw.listen else {
        errors.push(at, "is required: an address like 127.0.0.1:9477, or unix:/run/switchd/metrics.sock");
        return None;
    };
    let listen = errors.check(&at, Some(listen.clone()), |listen| match listen.strip_prefix("unix:") {
        Some(path) => {
            let path = PathBuf::from(path);
            if !path.is_absolute() {
                return Err(format!("{} must be an absolute path", shown(&path.to_string_lossy())));
            }
            socket_path(path).map(MetricsListen::Unix)
        }
        None => listen.parse::<SocketAddr>().map(MetricsListen::Tcp).map_err(|_| {
            format!("{} is not an address like 127.0.0.1:9477, or unix:/run/switchd/metrics.sock", shown(&listen))
        }),
    })?;
    Some(MetricsConfig { listen })
}

fn gossip(raw: &RawGossip, host: &HostConfig, dir: &Path, errors: &mut Errors) -> Option<GossipConfig> {
    let at = KeyPath::root().key("gossip");
    let port = errors.check(
        &at.key("port"),
        Some(raw.port.unwrap_or(i64::from(GossipConfig::DEFAULT_PORT))),
        int_in::<u16>(1, 65535),
    );
    if host.underlay_ip.is_none() {
        errors.push(at.clone(), "needs [host] underlay_ip: gossip listens there");
    }
    let mut seeds = Vec::new();
    for (i, s) in raw.seeds.iter().enumerate() {
        let parsed = s
            .parse::<SocketAddr>()
            .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, port.unwrap_or(GossipConfig::DEFAULT_PORT))));
        match parsed {
            Ok(addr) if vtep_address(addr.ip()).is_err() => {
                errors.push(at.key("seeds").index(i), format!("{} is not a unicast address", addr.ip()))
            }
            // Gossip and VXLAN leave from underlay_ip: one IP version per cluster.
            Ok(addr) if host.underlay_ip.is_some_and(|own| own.is_ipv4() != addr.is_ipv4()) => errors.push(
                at.key("seeds").index(i),
                format!(
                    "{} is not of the same IP version as underlay_ip {}: a cluster's underlay is IPv4 or IPv6, not both",
                    addr.ip(),
                    host.underlay_ip.expect("checked")
                ),
            ),
            Ok(addr) => seeds.push(addr),
            Err(_) => {
                errors.push(at.key("seeds").index(i), format!("{} is not an address like 198.18.0.2:7946", shown(s)))
            }
        }
    }
    let key_file = match &raw.key_file {
        None => {
            errors.push(at.key("key_file"), "is required: gossip is always authenticated and encrypted");
            None
        }
        Some(path) => {
            let path = if path.is_relative() { dir.join(path) } else { path.clone() };
            match switchd_crypto::Key::load(&path) {
                Ok(_) => Some(path),
                Err(e) => {
                    errors.push(at.key("key_file"), e.to_string());
                    None
                }
            }
        }
    };
    let interval = errors.check(&at.key("interval_ms"), Some(raw.interval_ms.unwrap_or(250)), |v| {
        int_in::<u64>(10, 60_000)(v).map(Duration::from_millis)
    });
    let timeout = errors.check(&at.key("failure_timeout"), Some(raw.failure_timeout.unwrap_or(8)), |v| {
        int_in::<u64>(1, 3600)(v).map(Duration::from_secs)
    });
    if let (Some(i), Some(t)) = (interval, timeout)
        && t < i * 4
    {
        errors.push(
            at.key("failure_timeout"),
            format!("{}s is less than four gossip rounds of {}ms", t.as_secs(), i.as_millis()),
        );
    }
    Some(GossipConfig { port: port?, seeds, key_file: key_file?, interval: interval?, failure_timeout: timeout? })
}

/// The whole file: each section, then the rules that span sections.
/// `dir` is where the file is (relative key files are found from there).
pub(crate) fn file(raw: &RawFile, dir: &Path) -> Result<Config, Vec<FieldError>> {
    let mut errors = Errors::default();
    let host = host(&raw.host, &mut errors);
    let gossip = raw.gossip.as_ref().and_then(|g| gossip(g, &host, dir, &mut errors));
    let docker = raw.docker.as_ref().and_then(|d| docker(d, &mut errors));
    let metrics = raw.metrics.as_ref().and_then(|m| metrics(m, &mut errors));

    let mut networks = Vec::new();
    let mut network_key_files = BTreeMap::new();
    let mut by_name: HashMap<String, usize> = HashMap::new();
    let mut by_vni: HashMap<u32, usize> = HashMap::new();
    for (i, raw_net) in raw.network.iter().enumerate() {
        let at = KeyPath::root().key("network").index(i);
        let Some((net, key_file)) = network_into(raw_net, &host, dir, &at, &mut errors) else { continue };
        if net.encryption.is_some_and(|e| e.key == KeySource::Cluster) && raw.gossip.is_none() {
            errors.push(
                at.key("encrypted"),
                "needs a key: set [gossip] key_file (the cluster key) or this network's key_file",
            );
        }
        if let Some(path) = key_file {
            network_key_files.insert(net.name.clone(), path);
        }
        if let Some(first) = by_name.insert(net.name.to_string(), i) {
            errors.push(at.key("name"), format!("{:?} is already the name of network[{first}]", net.name.as_str()));
        }
        if let Some(first) = by_vni.insert(net.vni.get(), i) {
            errors.push(at.key("vni"), format!("{} is already the vni of network[{first}]", net.vni));
        }
        networks.push(net);
    }

    let mut peers = Vec::new();
    let mut peer_ips: HashMap<IpAddr, usize> = HashMap::new();
    for (i, raw_peer) in raw.peer.iter().enumerate() {
        let at = KeyPath::root().key("peer").index(i);
        if let Some(ip) = raw_peer.underlay_ip.as_deref().and_then(|s| s.parse::<IpAddr>().ok())
            && let Some(first) = peer_ips.insert(ip, i)
        {
            errors.push(at.key("underlay_ip"), format!("{ip} is already peer[{first}]"));
        }
        peers.extend(peer(raw_peer, &host, &at, &mut errors));
    }

    let mut ports = Vec::new();
    let mut seen = PortUniqueness::default();
    for (i, raw_port) in raw.port.iter().enumerate() {
        let at = KeyPath::root().key("port").index(i);
        let Some(port) = port_into(raw_port, &networks, &at, &mut errors) else { continue };
        seen.check(&port, i, &at, &mut errors);
        ports.push(port);
    }

    let mut routes: Vec<RouteConfig> = Vec::new();
    for (i, raw_route) in raw.route.iter().enumerate() {
        let at = KeyPath::root().key("route").index(i);
        let Some(route) = route_into(raw_route, &at, &mut errors) else { continue };
        if let Some(first) = routes.iter().position(|r| *r == route) {
            errors.push(at.key("networks"), format!("is the same pair as route[{first}]"));
        }
        routes.push(route);
    }

    let mut services: Vec<ServiceConfig> = Vec::new();
    for (i, raw_service) in raw.service.iter().enumerate() {
        let at = KeyPath::root().key("service").index(i);
        let Some(s) = service_into(raw_service, &networks, &at, &mut errors) else { continue };
        if let Some(first) = services.iter().position(|t| (&t.network, &t.name) == (&s.network, &s.name)) {
            errors.push(
                at.key("name"),
                format!("{:?} is already service[{first}] on network {:?}", s.name.as_str(), s.network.as_str()),
            );
        }
        if let Some(vip) = s.vip
            && let Some(first) = services.iter().position(|t| t.vip == Some(vip))
        {
            errors.push(at.key("vip"), format!("{vip} is already the VIP of service[{first}]"));
        }
        services.push(s);
    }

    // Containers' ports, each with its index in the file.
    let mut publish: Vec<(usize, PublishConfig)> = Vec::new();
    for (i, raw_publish) in raw.publish.iter().enumerate() {
        let at = KeyPath::root().key("publish").index(i);
        if raw_publish.service.is_some() {
            mesh_publish_into(raw_publish, &at, &mut services, &mut errors);
            continue;
        }
        let Some(p) = publish_into(raw_publish, &at, &mut errors) else { continue };
        if let Some((first, _)) =
            publish.iter().find(|(_, q)| (q.host_ip, q.host_port, q.protocol) == (p.host_ip, p.host_port, p.protocol))
        {
            errors.push(
                at.key("host_port"),
                format!("{}/{} is already published by publish[{first}]", p.host_port, p.protocol.as_str()),
            );
        }
        publish.push((i, p));
    }
    // A container's port and the routing mesh's cannot share a host port.
    for (i, p) in &publish {
        let same = |m: &MeshPort| (m.host_port, m.protocol) == (p.host_port, p.protocol);
        if let Some(s) = services.iter().find(|s| s.publish.iter().any(same)) {
            let (port, protocol, name) = (p.host_port, p.protocol.as_str(), s.name.as_str());
            let at = KeyPath::root().key("publish").index(*i).key("host_port");
            errors.push(at, format!("{port}/{protocol} is the routing mesh's port for service {name:?}"));
        }
    }
    let publish = publish.into_iter().map(|(_, p)| p).collect();

    let mut policies: Vec<PolicyConfig> = Vec::new();
    for (i, raw_policy) in raw.policy.iter().enumerate() {
        let at = KeyPath::root().key("policy").index(i);
        let Some(p) = policy_into(raw_policy, &networks, &at, &mut errors) else { continue };
        if let Some(first) = policies.iter().position(|q| q.name == p.name) {
            errors.push(at.key("name"), format!("{:?} is already policy[{first}]", p.name.as_str()));
        }
        policies.push(p);
    }

    if errors.0.is_empty() {
        Ok(Config {
            host,
            gossip,
            docker,
            metrics,
            peers,
            networks,
            network_key_files,
            routes,
            ports,
            publish,
            services,
            policies,
        })
    } else {
        Err(errors.0)
    }
}

/// The values that must be unique among the `[[port]]` entries of one file,
/// keyed by (field, scope and value as text).
#[derive(Default)]
struct PortUniqueness {
    first_use: HashMap<(&'static str, String), usize>,
}

impl PortUniqueness {
    fn check(&mut self, port: &PortConfig, i: usize, at: &KeyPath, errors: &mut Errors) {
        let net = port.network.as_str();
        let mut claims: Vec<(&'static str, String)> = Vec::new();
        if let Some(ns) = &port.netns {
            claims.push(("netns", format!("netns {} on network {net:?}", shown(ns))));
            if let Some(ifname) = &port.ifname {
                claims.push(("ifname", format!("interface {ifname} in netns {}", shown(ns))));
            }
        }
        if let Some(ip) = port.ip {
            claims.push(("ip", format!("{ip} on network {net:?}")));
        }
        if let Some(ip6) = port.ip6 {
            claims.push(("ip6", format!("{ip6} on network {net:?}")));
        }
        if let Some(mac) = port.mac {
            claims.push(("mac", format!("{mac} on network {net:?}")));
        }
        if let Some(name) = port.display_name() {
            claims.push(("name", format!("container name {} on network {net:?}", shown(&name))));
        }
        if let Some(h) = &port.host_ifname {
            claims.push(("host_ifname", format!("host interface {h}")));
        }
        for (field, what) in claims {
            if let Some(first) = self.first_use.insert((field, what.clone()), i) {
                errors.push(at.key(field), format!("{what} is already used by port[{first}]"));
            }
        }
    }
}

/// A data-plane worker for every two cores the process may run on (at
/// least one, at most 16). Half the work of a frame switchd moves is the
/// kernel's, done in the containers' own threads (their stacks, the TAP
/// and socket paths): on a 2-core host one worker moves more than two
/// (BENCHMARKS.md, "Data plane, second generation").
pub fn default_workers() -> i64 {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).clamp(1, 16)) as i64
}
