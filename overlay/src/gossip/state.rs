//! What each host publishes through gossip, and its checked decoding.
//!
//! A host's gossip state is a set of key-value pairs it alone writes:
//!
//! | key | value (JSON) |
//! | --- | --- |
//! | `host` | `{"underlay_ip": "198.18.0.1", "vxlan_port": 4789, "leaving": false, "session": 123}` |
//! | `keys` | `{"cluster": {"sending": "e32eb522", "accepted": ["e32eb522"]}, "net/secret": {...}}` |
//! | `net/<name>` | `{"vni": 100, "subnet": "10.10.0.0/24", "gateway": "10.10.0.1", "mtu": 1450, "internal": false}`, plus `"encryption": {"cipher": "aes-256-gcm", "default_cipher": true, "key": "cluster"}` when encrypted (`cipher`: what the host seals with; `default_cipher` only when no cipher was named) |
//! | `ep/<network>/<mac>` | `{"ip": "10.10.0.2", "name": "web"}`, plus `"ip6": "fd00:10::5"` for an IPv6 address other than its MAC's SLAAC one, `"services": ["web"]` for a service's backend and `"down": ["web"]` while it fails that service's health check |
//! | `pol/<name>` | `{"version": 1795000000000, "network": "back", "select": "service=db", "from": ["service=frontend"], "ports": ["5432/tcp"]}`, or `{"removed": true, "version": ...}` |
//! | `svc/<network>/<name>` | `{"mode": "vip", "vip": "10.10.0.200", "vip6": "fd00:10::c8", "ports": ["80/tcp"], "health": "http:/", "health_interval_ms": 2000, "health_threshold": 2, "publish": ["8080:80/tcp"], "version": 1795000000000}`, or `{"removed": true, "version": ...}` |
//! | `ipam/<network>` | `{"3": 1795000000000}`: address blocks it claims, and since when (ms) |
//! | `features` | `["partial_checksums"]`: what its data plane does that earlier versions did not (absent: nothing) |
//!
//! `partial_checksums`: it finishes inner TCP/UDP checksums that a sender
//! left partial, so peers send it frames without them (see
//! `crate::offload::L4Checksum`); a host of an earlier version, which does
//! not say so, is sent complete ones.
//!
//! A service (and a policy) is the cluster's, not one host's: every host that knows it
//! publishes it, and the highest `version` (ms since the epoch of its
//! last change) wins, a removal included (kept a while as a tombstone, so
//! that a host that still has the definition does not bring it back).
//!
//! `session` is the host's data-plane session of this boot (peers refuse
//! its earlier sessions at once); `keys` names, by id only, the keys each
//! of its key rings accepts and seals with, so a rotation step can check
//! that every host is ready for it.
//!
//! Values arrive from other hosts, so [`decode`] trusts nothing: every
//! entry is checked (names, VNI range, MTU, MACs unicast, addresses inside
//! their network's subnet, endpoints only on networks the same host
//! declares, sizes bounded) and a bad entry is skipped and reported, never
//! allowed to reach a table. Authentication (see `wire`) already keeps
//! outsiders out; this keeps a confused or buggy member from poisoning
//! anyone.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use serde::{Deserialize, Serialize};
use switchd_config::raw::{RawPolicy, RawService};
use switchd_config::{
    Encryption, KeyPath, MacAddr, Mtu, Name, NetworkConfig, PolicyConfig, ServiceConfig, Subnet, Vni,
};
use switchd_crypto::{KeyId, SessionId};

pub const HOST_KEY: &str = "host";
pub const KEYS_KEY: &str = "keys";
/// The scope name of the cluster's key ring in `keys`; a network's own
/// ring is `net/<name>`.
pub const CLUSTER_SCOPE: &str = "cluster";
pub const NETWORK_PREFIX: &str = "net/";
pub const ENDPOINT_PREFIX: &str = "ep/";
pub const IPAM_PREFIX: &str = "ipam/";
pub const SERVICE_PREFIX: &str = "svc/";
pub const POLICY_PREFIX: &str = "pol/";
pub const FEATURES_KEY: &str = "features";
/// In [`FEATURES_KEY`]: see [`Published::partial_checksums`].
pub const PARTIAL_CHECKSUMS: &str = "partial_checksums";
/// The most address blocks one host claims on one network.
pub const MAX_CLAIMS: usize = 32;
/// More keys than any real host publishes.
pub const MAX_KEYS: usize = 20_000;
pub const MAX_KEY_LEN: usize = 256;
pub const MAX_VALUE_LEN: usize = 1024;

/// A container on a host, as that host publishes it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RemoteEndpoint {
    pub network: Name,
    pub mac: MacAddr,
    pub ip: Option<IpAddr>,
    /// Its IPv6 address when not the SLAAC one of its MAC (given to it).
    pub ip6: Option<Ipv6Addr>,
    pub name: Name,
    /// The services it is a backend of.
    pub services: Vec<Name>,
    /// Those of them whose health check it fails.
    pub down: Vec<Name>,
}

/// A policy as the cluster knows it: its rule, or its removal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRecord {
    pub name: Name,
    /// `None`: removed (a tombstone).
    pub config: Option<PolicyConfig>,
    /// When it was last changed (ms since the epoch): the highest wins.
    pub version: u64,
}

/// A service as the cluster knows it: its definition, or its removal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRecord {
    pub network: Name,
    pub name: Name,
    /// `None`: removed (a tombstone).
    pub config: Option<ServiceConfig>,
    /// When it was last changed (ms since the epoch): the highest wins.
    pub version: u64,
}

/// Which keys a key ring holds, by id (never the keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RingState {
    #[serde(with = "key_id")]
    pub sending: KeyId,
    #[serde(with = "key_ids")]
    pub accepted: Vec<KeyId>,
}

mod key_id {
    use serde::{Deserialize, Deserializer, Serializer};
    use switchd_crypto::KeyId;

    pub fn serialize<S: Serializer>(id: &KeyId, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(id)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<KeyId, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

mod key_ids {
    use serde::{Deserialize, Deserializer, Serializer};
    use switchd_crypto::KeyId;

    pub fn serialize<S: Serializer>(ids: &[KeyId], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(ids.iter().map(|id| id.to_string()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<KeyId>, D::Error> {
        Vec::<String>::deserialize(d)?.iter().map(|s| s.parse().map_err(serde::de::Error::custom)).collect()
    }
}

/// A host's published state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub underlay: SocketAddr,
    /// The host is stopping cleanly: forget it now.
    pub leaving: bool,
    /// Its data plane's session of this boot.
    pub session: Option<SessionId>,
    /// Its key rings by scope ([`CLUSTER_SCOPE`], or `net/<name>`).
    pub keys: BTreeMap<String, RingState>,
    /// The networks it defines or has endpoints on, by name.
    pub networks: BTreeMap<Name, NetworkConfig>,
    pub endpoints: Vec<RemoteEndpoint>,
    /// Address blocks it claims, per network: block -> claimed at (ms since the epoch).
    pub ipam: BTreeMap<Name, BTreeMap<u32, u64>>,
    /// The services it knows of (its own and the cluster's), removals included.
    pub services: Vec<ServiceRecord>,
    /// The policies it knows of, on networks it carries, removals included.
    pub policies: Vec<PolicyRecord>,
    /// It finishes inner TCP/UDP checksums left partial: frames to it may
    /// go without them ([`PARTIAL_CHECKSUMS`]).
    pub partial_checksums: bool,
}

/// An entry that was skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateError {
    pub key: String,
    pub reason: String,
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.64}: {}", self.key, self.reason)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostValue {
    underlay_ip: IpAddr,
    vxlan_port: u16,
    #[serde(default)]
    leaving: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    session: Option<u64>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkValue {
    vni: u32,
    subnet: Option<Subnet>,
    gateway: Option<IpAddr>,
    mtu: u32,
    #[serde(default)]
    internal: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    encryption: Option<Encryption>,
    /// Set when the gateway's DNS or DHCP is off on a network with a subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dns: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dhcp: Option<bool>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    host_access: bool,
    /// Only when false (the default is true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    icc: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subnet6: Option<Subnet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gateway6: Option<IpAddr>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointValue {
    ip: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip6: Option<Ipv6Addr>,
    name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    services: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    down: Vec<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceValue {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    removed: bool,
    version: u64,
    #[serde(flatten)]
    definition: ServiceDefinition,
}

/// A service's settings as `RawService` takes them, so that a definition
/// from gossip passes the very checks a host.toml one does.
#[derive(Default, Serialize, Deserialize)]
struct ServiceDefinition {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    vip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    vip6: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ports: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    health: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    health_interval_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    health_threshold: Option<i64>,
    /// The routing mesh's ports, "8080:80/tcp".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    publish: Vec<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyValue {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    removed: bool,
    version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    network: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    select: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    from: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ports: Vec<String>,
}

impl ServiceDefinition {
    fn of(c: &ServiceConfig) -> Self {
        ServiceDefinition {
            mode: Some(c.mode.as_str().to_owned()),
            vip: c.vip.map(|ip| ip.to_string()),
            vip6: c.vip6.map(|ip| ip.to_string()),
            ports: c.ports.iter().map(|p| p.to_string()).collect(),
            health: c.health.as_ref().map(|h| h.probe.to_string()),
            health_interval_ms: c.health.as_ref().map(|h| h.interval.as_millis() as i64),
            health_threshold: c.health.as_ref().map(|h| i64::from(h.threshold)),
            publish: c.publish.iter().map(|p| p.to_string()).collect(),
        }
    }
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain structs serialize")
}

/// The key-value pairs a host publishes.
pub fn encode(p: &Published) -> Vec<(String, String)> {
    let host = HostValue {
        underlay_ip: p.underlay.ip(),
        vxlan_port: p.underlay.port(),
        leaving: p.leaving,
        session: p.session.map(|s| s.0),
    };
    let mut kvs = vec![(HOST_KEY.to_owned(), json(&host))];
    if !p.keys.is_empty() {
        kvs.push((KEYS_KEY.to_owned(), json(&p.keys)));
    }
    for (name, n) in &p.networks {
        let value = NetworkValue {
            vni: n.vni.get(),
            subnet: n.subnet,
            gateway: n.gateway,
            mtu: n.mtu.get(),
            internal: n.internal,
            encryption: n.encryption,
            // Only what differs from the default (on, with a subnet).
            dns: (n.dns != n.subnet.is_some()).then_some(n.dns),
            dhcp: (n.dhcp != n.subnet.is_some()).then_some(n.dhcp),
            host_access: n.host_access,
            icc: (!n.icc).then_some(false),
            subnet6: n.subnet6,
            gateway6: n.gateway6,
        };
        kvs.push((format!("{NETWORK_PREFIX}{name}"), json(&value)));
    }
    for e in &p.endpoints {
        kvs.push((
            format!("{ENDPOINT_PREFIX}{}/{}", e.network, e.mac),
            json(&EndpointValue {
                ip: e.ip,
                ip6: e.ip6,
                name: e.name.to_string(),
                services: e.services.iter().map(|s| s.to_string()).collect(),
                down: e.down.iter().map(|s| s.to_string()).collect(),
            }),
        ));
    }
    for r in &p.policies {
        let c = r.config.as_ref();
        let value = PolicyValue {
            removed: c.is_none(),
            version: r.version,
            network: c.map(|c| c.network.to_string()),
            select: c.map(|c| c.select.to_string()),
            from: c.map(|c| c.from.iter().map(|s| s.to_string()).collect()).unwrap_or_default(),
            ports: c.map(|c| c.ports.iter().map(|p| p.to_string()).collect()).unwrap_or_default(),
        };
        kvs.push((format!("{POLICY_PREFIX}{}", r.name), json(&value)));
    }
    for s in &p.services {
        let definition = s.config.as_ref().map(ServiceDefinition::of).unwrap_or_default();
        let value = ServiceValue { removed: s.config.is_none(), version: s.version, definition };
        kvs.push((format!("{SERVICE_PREFIX}{}/{}", s.network, s.name), json(&value)));
    }
    for (network, claims) in &p.ipam {
        if !claims.is_empty() {
            kvs.push((format!("{IPAM_PREFIX}{network}"), json(claims)));
        }
    }
    if p.partial_checksums {
        kvs.push((FEATURES_KEY.to_owned(), json(&[PARTIAL_CHECKSUMS])));
    }
    kvs
}

/// Decodes a host's key-value pairs. `None` when there is no usable `host`
/// entry (the host cannot be reached without it); the errors list every
/// entry that was skipped.
pub fn decode<'a>(kvs: impl IntoIterator<Item = (&'a str, &'a str)>) -> (Option<Published>, Vec<StateError>) {
    let mut errors = Vec::new();
    let mut err =
        |key: &str, reason: String| errors.push(StateError { key: key.chars().take(MAX_KEY_LEN).collect(), reason });
    let mut host = None;
    let mut keys = BTreeMap::new();
    let mut networks = BTreeMap::new();
    let mut raw_endpoints = Vec::new();
    let mut raw_claims = Vec::new();
    let mut raw_services = Vec::new();
    let mut raw_policies = Vec::new();
    let mut partial_checksums = false;
    for (i, (key, value)) in kvs.into_iter().enumerate() {
        if i >= MAX_KEYS {
            err(key, format!("more than {MAX_KEYS} keys; the rest is ignored"));
            break;
        }
        if key.len() > MAX_KEY_LEN || value.len() > MAX_VALUE_LEN {
            err(key, format!("key or value too long ({} and {} bytes)", key.len(), value.len()));
            continue;
        }
        if key == HOST_KEY {
            match serde_json::from_str::<HostValue>(value) {
                Ok(h) if h.underlay_ip.is_unspecified() || h.underlay_ip.is_multicast() || h.vxlan_port == 0 => {
                    err(key, format!("{}:{} is not a VTEP address", h.underlay_ip, h.vxlan_port))
                }
                Ok(h) => host = Some(h),
                Err(e) => err(key, e.to_string()),
            }
        } else if key == KEYS_KEY {
            match rings(value) {
                Ok(r) => keys = r,
                Err(reason) => err(key, reason),
            }
        } else if let Some(name) = key.strip_prefix(NETWORK_PREFIX) {
            match network(name, value) {
                Ok(n) => {
                    networks.insert(n.name.clone(), n);
                }
                Err(reason) => err(key, reason),
            }
        } else if let Some(rest) = key.strip_prefix(ENDPOINT_PREFIX) {
            raw_endpoints.push((key, rest, value));
        } else if let Some(network) = key.strip_prefix(IPAM_PREFIX) {
            raw_claims.push((key, network, value));
        } else if let Some(rest) = key.strip_prefix(SERVICE_PREFIX) {
            raw_services.push((key, rest, value));
        } else if let Some(name) = key.strip_prefix(POLICY_PREFIX) {
            raw_policies.push((key, name, value));
        } else if key == FEATURES_KEY {
            // Features it names that this version does not know are ignored.
            match serde_json::from_str::<Vec<String>>(value) {
                Ok(features) => partial_checksums = features.iter().any(|f| f == PARTIAL_CHECKSUMS),
                Err(e) => err(key, e.to_string()),
            }
        }
        // Other keys are for newer versions: ignored, not errors.
    }
    let mut endpoints = Vec::new();
    for (key, rest, value) in raw_endpoints {
        match endpoint(rest, value, &networks) {
            Ok(e) => endpoints.push(e),
            Err(reason) => err(key, reason),
        }
    }
    endpoints.sort();
    let mut ipam = BTreeMap::new();
    for (key, network, value) in raw_claims {
        match claims(network, value, &networks) {
            // No claims is no entry, as `encode` writes it: the decoded
            // state is the one canonical form (found by fuzzing gossip_state).
            Ok((_, c)) if c.is_empty() => {}
            Ok((network, c)) => {
                ipam.insert(network, c);
            }
            Err(reason) => err(key, reason),
        }
    }
    let mut services = Vec::new();
    for (key, rest, value) in raw_services {
        match service(rest, value, &networks) {
            Ok(s) => services.push(s),
            Err(reason) => err(key, reason),
        }
    }
    services.sort_by(|a, b| (&a.network, &a.name).cmp(&(&b.network, &b.name)));
    let mut policies = Vec::new();
    for (key, name, value) in raw_policies {
        match policy(name, value, &networks) {
            Ok(r) => policies.push(r),
            Err(reason) => err(key, reason),
        }
    }
    policies.sort_by(|a, b| a.name.cmp(&b.name));
    let published = host.map(|h| Published {
        underlay: SocketAddr::new(h.underlay_ip, h.vxlan_port),
        leaving: h.leaving,
        session: h.session.map(SessionId),
        keys,
        networks,
        endpoints,
        ipam,
        services,
        policies,
        partial_checksums,
    });
    if published.is_none() {
        err(HOST_KEY, "missing or invalid: the host cannot be used".into());
    }
    (published, errors)
}

fn network(name: &str, value: &str) -> Result<NetworkConfig, String> {
    let name = Name::new(name)?;
    let v: NetworkValue = serde_json::from_str(value).map_err(|e| e.to_string())?;
    let vni = Vni::new(v.vni)?;
    let mtu = Mtu::new(v.mtu)?;
    match (v.subnet, v.gateway) {
        (Some(s), Some(gw)) if !s.is_assignable(gw) => return Err(format!("gateway {gw} is not usable in {s}")),
        (None, Some(_)) => return Err("a gateway without a subnet".into()),
        _ => {}
    }
    match (v.subnet6, v.gateway6) {
        (Some(s), _) if !s.first_host().is_ipv6() || s.net().prefix_len() != 64 => {
            return Err(format!("subnet6 {s} is not an IPv6 /64"));
        }
        (Some(s), Some(gw)) if !s.is_assignable(gw) => return Err(format!("gateway6 {gw} is not usable in {s}")),
        (Some(_), None) | (None, Some(_)) => return Err("subnet6 and gateway6 come together".into()),
        _ => {}
    }
    Ok(NetworkConfig {
        name,
        vni,
        subnet: v.subnet,
        gateway: v.gateway,
        mtu,
        internal: v.internal,
        encryption: v.encryption,
        dns: v.dns.unwrap_or(v.subnet.is_some()),
        dhcp: v.dhcp.unwrap_or(v.subnet.is_some()),
        host_access: v.host_access && v.gateway.is_some_and(|g| g.is_ipv4()),
        icc: v.icc.unwrap_or(true),
        subnet6: v.subnet6,
        gateway6: v.gateway6,
    })
}

/// The `keys` entry: scopes are the cluster or `net/<name>`, each with
/// the key it seals with among those it accepts.
fn rings(value: &str) -> Result<BTreeMap<String, RingState>, String> {
    let rings: BTreeMap<String, RingState> = serde_json::from_str(value).map_err(|e| e.to_string())?;
    for (scope, ring) in &rings {
        if scope != CLUSTER_SCOPE {
            let name = scope.strip_prefix(NETWORK_PREFIX).ok_or(format!("{scope:?} is not a key scope"))?;
            Name::new(name)?;
        }
        if !ring.accepted.contains(&ring.sending) {
            return Err(format!("{scope}: seals with {} but does not accept it", ring.sending));
        }
    }
    Ok(rings)
}

/// An `ipam/<network>` entry: claims on a network the host declares, of
/// blocks its subnet has.
fn claims(
    network: &str,
    value: &str,
    networks: &BTreeMap<Name, NetworkConfig>,
) -> Result<(Name, BTreeMap<u32, u64>), String> {
    let network = Name::new(network)?;
    let Some(subnet) = networks.get(&network).and_then(|n| n.subnet) else {
        return Err(format!("network {:?} is not one this host declares with a subnet", network.as_str()));
    };
    let claims: BTreeMap<u32, u64> = serde_json::from_str(value).map_err(|e| e.to_string())?;
    if claims.len() > MAX_CLAIMS {
        return Err(format!("{} blocks claimed; at most {MAX_CLAIMS}", claims.len()));
    }
    if let Some(block) = claims.keys().find(|b| **b >= subnet.block_count()) {
        return Err(format!("block {block} is beyond subnet {subnet} ({} blocks)", subnet.block_count()));
    }
    Ok((network, claims))
}

fn endpoint(rest: &str, value: &str, networks: &BTreeMap<Name, NetworkConfig>) -> Result<RemoteEndpoint, String> {
    let (network, mac) = rest.split_once('/').ok_or("expected ep/<network>/<mac>")?;
    let network = Name::new(network)?;
    let Some(net) = networks.get(&network) else {
        return Err(format!("network {:?} is not one this host declares", network.as_str()));
    };
    let mac: MacAddr = mac.parse()?;
    if !mac.is_unicast() {
        return Err(format!("{mac} is not a unicast address"));
    }
    let v: EndpointValue = serde_json::from_str(value).map_err(|e| e.to_string())?;
    match (v.ip, net.subnet) {
        (Some(ip), Some(subnet)) if !subnet.is_assignable(ip) || Some(ip) == net.gateway => {
            return Err(format!("{ip} is not an endpoint address of {subnet}"));
        }
        (Some(ip), None) => return Err(format!("{ip} on network {network:?}, which has no subnet")),
        _ => {}
    }
    if let Some(ip6) = v.ip6 {
        match net.subnet6 {
            Some(subnet6) if !subnet6.is_assignable(IpAddr::V6(ip6)) || Some(IpAddr::V6(ip6)) == net.gateway6 => {
                return Err(format!("{ip6} is not an endpoint address of {subnet6}"));
            }
            None => return Err(format!("{ip6} on network {network:?}, which has no subnet6")),
            Some(_) => {}
        }
    }
    if v.services.len() > switchd_config::validate::MAX_SERVICE_PORTS || v.down.iter().any(|d| !v.services.contains(d))
    {
        return Err("more than 32 services, or one down that it is not a backend of".into());
    }
    let names = |list: &[String]| list.iter().map(|s| Name::new(s)).collect::<Result<Vec<Name>, String>>();
    Ok(RemoteEndpoint {
        network,
        mac,
        ip: v.ip,
        ip6: v.ip6,
        name: Name::new(&v.name)?,
        services: names(&v.services)?,
        down: names(&v.down)?,
    })
}

/// A `pol/<name>` entry: a rule on a network the host declares, checked
/// as host.toml's `[[policy]]` is.
fn policy(name: &str, value: &str, networks: &BTreeMap<Name, NetworkConfig>) -> Result<PolicyRecord, String> {
    let name = Name::new(name)?;
    let v: PolicyValue = serde_json::from_str(value).map_err(|e| e.to_string())?;
    if v.removed {
        return Ok(PolicyRecord { name, config: None, version: v.version });
    }
    let raw = RawPolicy {
        name: Some(name.to_string()),
        network: v.network,
        select: v.select,
        from: Some(v.from),
        ports: Some(v.ports),
    };
    let declared: Vec<NetworkConfig> = networks.values().cloned().collect();
    let config = switchd_config::validate::policy(&raw, &declared, &KeyPath::root())
        .map_err(|errors| errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))?;
    Ok(PolicyRecord { name, config: Some(config), version: v.version })
}

/// A `svc/<network>/<name>` entry: a service on a network the host
/// declares, checked as host.toml's `[[service]]` is.
fn service(rest: &str, value: &str, networks: &BTreeMap<Name, NetworkConfig>) -> Result<ServiceRecord, String> {
    let (network, name) = rest.split_once('/').ok_or("expected svc/<network>/<name>")?;
    let (network, name) = (Name::new(network)?, Name::new(name)?);
    let Some(net) = networks.get(&network) else {
        return Err(format!("network {:?} is not one this host declares", network.as_str()));
    };
    let v: ServiceValue = serde_json::from_str(value).map_err(|e| e.to_string())?;
    if v.removed {
        return Ok(ServiceRecord { network, name, config: None, version: v.version });
    }
    let d = v.definition;
    let raw = RawService {
        name: Some(name.to_string()),
        network: Some(network.to_string()),
        mode: d.mode,
        vip: d.vip,
        vip6: d.vip6,
        ports: Some(d.ports),
        health: d.health,
        health_interval_ms: d.health_interval_ms,
        health_threshold: d.health_threshold,
        publish: Some(d.publish),
    };
    let config = switchd_config::validate::service(&raw, std::slice::from_ref(net), &KeyPath::root())
        .map_err(|errors| errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))?;
    if config.mode == switchd_config::ServiceMode::Vip && config.vip.is_none() && config.vip6.is_none() {
        return Err("a VIP service without its VIP".into());
    }
    Ok(ServiceRecord { network, name, config: Some(config), version: v.version })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Published {
        let front = NetworkConfig {
            name: Name::new("front").unwrap(),
            vni: Vni::new(100).unwrap(),
            subnet: Some("10.10.0.0/24".parse().unwrap()),
            gateway: Some("10.10.0.1".parse().unwrap()),
            mtu: Mtu::new(1450).unwrap(),
            internal: true,
            encryption: None,
            dns: true,
            // Not the default: travels in the entry.
            dhcp: false,
            host_access: false,
            icc: true,
            subnet6: Some("fd00:10::/64".parse().unwrap()),
            gateway6: Some("fd00:10::1".parse().unwrap()),
        };
        Published {
            underlay: "198.18.0.1:4789".parse().unwrap(),
            leaving: false,
            session: None,
            keys: BTreeMap::new(),
            networks: [(front.name.clone(), front)].into(),
            endpoints: vec![RemoteEndpoint {
                network: Name::new("front").unwrap(),
                mac: "02:42:0a:0a:00:02".parse().unwrap(),
                ip: Some("10.10.0.2".parse().unwrap()),
                ip6: None,
                name: Name::new("web").unwrap(),
                services: Vec::new(),
                down: Vec::new(),
            }],
            ipam: [(Name::new("front").unwrap(), [(3, 1_795_000_000_000)].into())].into(),
            services: Vec::new(),
            policies: Vec::new(),
            partial_checksums: true,
        }
    }

    fn kv(pairs: &[(String, String)]) -> impl Iterator<Item = (&str, &str)> {
        pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    #[test]
    fn round_trip_with_exact_bytes() {
        let kvs = encode(&sample());
        assert_eq!(kvs[0], ("host".into(), r#"{"underlay_ip":"198.18.0.1","vxlan_port":4789,"leaving":false}"#.into()));
        assert_eq!(
            kvs[1],
            (
                "net/front".into(),
                r#"{"vni":100,"subnet":"10.10.0.0/24","gateway":"10.10.0.1","mtu":1450,"internal":true,"dhcp":false,"subnet6":"fd00:10::/64","gateway6":"fd00:10::1"}"#
                    .into()
            )
        );
        assert_eq!(kvs[2], ("ep/front/02:42:0a:0a:00:02".into(), r#"{"ip":"10.10.0.2","name":"web"}"#.into()));
        let mut given = sample();
        given.endpoints[0].ip6 = Some("fd00:10::5".parse().unwrap());
        let with_ip6 = encode(&given);
        assert_eq!(with_ip6[2].1, r#"{"ip":"10.10.0.2","ip6":"fd00:10::5","name":"web"}"#, "only when given");
        assert_eq!(decode(kv(&with_ip6)).0.unwrap(), given);
        assert_eq!(kvs[3], ("ipam/front".into(), r#"{"3":1795000000000}"#.into()));
        assert_eq!(kvs[4], ("features".into(), r#"["partial_checksums"]"#.into()));
        let (p, errors) = decode(kv(&kvs));
        assert_eq!(errors, vec![]);
        assert_eq!(p.unwrap(), sample());
    }

    /// A host of an earlier version says nothing of partial checksums and
    /// is sent complete ones; features this version does not know are
    /// ignored, as later versions will add some.
    #[test]
    fn features_are_optional_and_open_ended() {
        let mut kvs = encode(&sample());
        kvs.retain(|(k, _)| k != FEATURES_KEY);
        let (p, errors) = decode(kv(&kvs));
        assert_eq!(errors, vec![]);
        assert!(!p.unwrap().partial_checksums, "an earlier version");
        kvs.push((FEATURES_KEY.into(), r#"["from_the_future","partial_checksums"]"#.into()));
        assert!(decode(kv(&kvs)).0.unwrap().partial_checksums);
        kvs.pop();
        kvs.push((FEATURES_KEY.into(), r#"{"partial_checksums":true}"#.into()));
        let (p, errors) = decode(kv(&kvs));
        assert!(!p.unwrap().partial_checksums);
        assert_eq!(errors.len(), 1, "a malformed entry is reported: {errors:?}");
    }

    #[test]
    fn bad_address_claims_are_refused() {
        let mut kvs = encode(&sample());
        let at = kvs.iter().position(|(k, _)| k == "ipam/front").unwrap();
        for (key, value, reason) in [
            ("ipam/front", r#"{"16":1}"#.to_owned(), "beyond subnet"),
            ("ipam/front", r#"{"x":1}"#.to_owned(), "invalid"),
            ("ipam/back", r#"{"1":1}"#.to_owned(), "not one this host declares"),
            (
                "ipam/front",
                serde_json::to_string(&(0..40).map(|b| (b, 1)).collect::<BTreeMap<u32, u64>>()).unwrap(),
                "at most",
            ),
        ] {
            kvs[at] = (key.to_owned(), value);
            let (p, errors) = decode(kv(&kvs));
            assert!(errors.iter().any(|e| e.reason.contains(reason)), "{reason}: {errors:?}");
            assert!(p.unwrap().ipam.is_empty(), "a bad claim never reaches the table");
        }
    }

    /// An empty claims entry means no claims: decoded as none, the form
    /// `encode` writes, so the state round-trips.
    #[test]
    fn empty_claims_decode_as_none() {
        let mut kvs = encode(&sample());
        let at = kvs.iter().position(|(k, _)| k == "ipam/front").unwrap();
        kvs[at].1 = "{}".into();
        let (p, errors) = decode(kv(&kvs));
        assert_eq!(errors, vec![]);
        let p = p.unwrap();
        assert!(p.ipam.is_empty(), "{:?}", p.ipam);
        assert_eq!(decode(kv(&encode(&p))).0, Some(p));
    }

    /// An encrypted network, the session and the key rings, exactly.
    #[test]
    fn crypto_state_round_trips_with_exact_bytes() {
        use switchd_config::{Cipher, KeySource};

        let mut p = sample();
        let secret = NetworkConfig {
            name: Name::new("secret").unwrap(),
            vni: Vni::new(7).unwrap(),
            subnet: None,
            gateway: None,
            mtu: Mtu::new(1414).unwrap(),
            internal: false,
            encryption: Some(Encryption { cipher: Cipher::Aes256Gcm, default_cipher: false, key: KeySource::Own }),
            dns: false,
            dhcp: false,
            host_access: false,
            icc: true,
            subnet6: None,
            gateway6: None,
        };
        p.networks.insert(secret.name.clone(), secret);
        p.session = Some(SessionId(0x0123_4567_89ab_cdef));
        let (a, b): (KeyId, KeyId) = ("e32eb522".parse().unwrap(), "0badf00d".parse().unwrap());
        p.keys.insert(CLUSTER_SCOPE.into(), RingState { sending: b, accepted: vec![a, b] });
        p.keys.insert("net/secret".into(), RingState { sending: a, accepted: vec![a] });
        let kvs = encode(&p);
        assert_eq!(
            kvs[0].1,
            r#"{"underlay_ip":"198.18.0.1","vxlan_port":4789,"leaving":false,"session":81985529216486895}"#
        );
        assert_eq!(
            kvs[1],
            (
                "keys".into(),
                r#"{"cluster":{"sending":"0badf00d","accepted":["e32eb522","0badf00d"]},"net/secret":{"sending":"e32eb522","accepted":["e32eb522"]}}"#.into()
            )
        );
        assert!(kvs.iter().any(|(k, v)| k == "net/secret"
            && v.ends_with(r#""encryption":{"cipher":"aes-256-gcm","key":"own"}}"#)));
        let (back, errors) = decode(kv(&kvs));
        assert_eq!(errors, vec![]);
        assert_eq!(back.unwrap(), p);

        // A cipher no one named: the sender's own, flagged so that others
        // pick theirs (older versions read the cipher and skip the flag).
        let mut q = p.clone();
        q.networks.get_mut(&Name::new("secret").unwrap()).unwrap().encryption.as_mut().unwrap().default_cipher = true;
        let kvs = encode(&q);
        assert!(kvs.iter().any(|(k, v)| k == "net/secret"
            && v.ends_with(r#""encryption":{"cipher":"aes-256-gcm","default_cipher":true,"key":"own"}}"#)));
        assert_eq!(decode(kv(&kvs)).0.unwrap(), q);

        for (bad, why) in [
            (r#"{"cluster":{"sending":"0badf00d","accepted":[]}}"#, "does not accept it"),
            (r#"{"cluster":{"sending":"xyz","accepted":[]}}"#, "is not a key id"),
            (r#"{"elsewhere":{"sending":"0badf00d","accepted":["0badf00d"]}}"#, "is not a key scope"),
        ] {
            let mut kvs = encode(&sample());
            kvs.push(("keys".into(), bad.into()));
            let (p, errors) = decode(kv(&kvs));
            assert!(p.unwrap().keys.is_empty());
            assert!(errors[0].reason.contains(why), "{errors:?}");
        }
        let bad_cipher =
            r#"{"vni":9,"subnet":null,"gateway":null,"mtu":1400,"encryption":{"cipher":"rot13","key":"cluster"}}"#;
        let (_, errors) =
            decode([("host", r#"{"underlay_ip":"198.18.0.1","vxlan_port":4789}"#), ("net/x", bad_cipher)]);
        assert!(errors[0].reason.contains("is not a cipher"), "{errors:?}");
    }

    #[test]
    fn bad_entries_are_skipped_and_reported() {
        let mut kvs = encode(&sample());
        for (k, v) in [
            ("ep/front/01:00:5e:00:00:01", r#"{"ip":"10.10.0.3","name":"m"}"#),
            ("ep/front/02:00:00:00:00:09", r#"{"ip":"10.99.0.3","name":"out"}"#),
            ("ep/front/02:00:00:00:00:0a", r#"{"ip":"10.10.0.1","name":"gw"}"#),
            ("ep/nowhere/02:00:00:00:00:0b", r#"{"ip":null,"name":"x"}"#),
            ("ep/front/not-a-mac", r#"{"ip":null,"name":"x"}"#),
            ("ep/front/02:00:00:00:00:0c", r#"{"ip":null,"name":"bad name"}"#),
            ("ep/front/02:00:00:00:00:0d", "not json"),
            ("ep/front/02:00:00:00:00:0f", r#"{"ip":null,"ip6":"fd00:99::5","name":"out6"}"#),
            ("ep/front/02:00:00:00:00:10", r#"{"ip":null,"ip6":"fd00:10::1","name":"gw6"}"#),
            ("net/bad", r#"{"vni":0,"subnet":null,"gateway":null,"mtu":1450}"#),
            ("net/big", r#"{"vni":5,"subnet":null,"gateway":null,"mtu":70000}"#),
            ("net/gw", r#"{"vni":6,"subnet":"10.0.0.0/24","gateway":"10.1.0.1","mtu":1450}"#),
            ("net/extra", r#"{"vni":7,"subnet":null,"gateway":null,"mtu":1450,"colour":"red"}"#),
            ("future/key", "anything"),
        ] {
            kvs.push((k.into(), v.into()));
        }
        kvs.push(("ep/front/02:00:00:00:00:0e".into(), "x".repeat(MAX_VALUE_LEN + 1)));
        let (p, errors) = decode(kv(&kvs));
        let p = p.unwrap();
        assert_eq!(p.endpoints, sample().endpoints, "only the good endpoint survives");
        assert_eq!(p.networks.len(), 1);
        let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 14, "{shown:#?}");
        for expected in [
            "01:00:5e:00:00:01 is not a unicast address",
            "10.99.0.3 is not an endpoint address of 10.10.0.0/24",
            "10.10.0.1 is not an endpoint address",
            "fd00:99::5 is not an endpoint address of fd00:10::/64",
            "fd00:10::1 is not an endpoint address",
            "network \"nowhere\" is not one this host declares",
            "0 is out of range",
            "70000 is out of range",
            "gateway 10.1.0.1 is not usable",
            "unknown field `colour`",
            "too long",
        ] {
            assert!(shown.iter().any(|e| e.contains(expected)), "missing {expected:?} in {shown:#?}");
        }
    }

    #[test]
    fn no_host_entry_no_host() {
        let (p, errors) = decode([("net/x", r#"{"vni":1,"subnet":null,"gateway":null,"mtu":1450}"#)]);
        assert!(p.is_none());
        assert_eq!(errors.last().unwrap().key, "host");
        let (p, _) = decode([("host", r#"{"underlay_ip":"0.0.0.0","vxlan_port":4789}"#)]);
        assert!(p.is_none(), "an unusable VTEP address");
    }

    #[test]
    fn absurd_sizes_are_bounded() {
        let many: Vec<(String, String)> = (0..MAX_KEYS + 10).map(|i| (format!("k{i}"), String::new())).collect();
        let (_, errors) = decode(kv(&many));
        assert!(errors.iter().any(|e| e.reason.contains("more than")));
    }

    /// A service's definition and a removal travel and come back whole;
    /// an endpoint names the services it joined and those it fails.
    #[test]
    fn services_and_backends_round_trip() {
        let mut p = sample();
        p.endpoints[0].services = vec![Name::new("api").unwrap(), Name::new("web").unwrap()];
        p.endpoints[0].down = vec![Name::new("web").unwrap()];
        let raw = RawService {
            name: Some("web".into()),
            network: Some("front".into()),
            vip: Some("10.10.0.200".into()),
            ports: Some(vec!["80/tcp".into(), "53/udp".into()]),
            health: Some("http:/healthz".into()),
            publish: Some(vec!["8080:80".into()]),
            ..RawService::default()
        };
        let config = switchd_config::validate::service(
            &raw,
            &[p.networks[&Name::new("front").unwrap()].clone()],
            &KeyPath::root(),
        )
        .unwrap();
        p.services = vec![
            ServiceRecord {
                network: Name::new("front").unwrap(),
                name: Name::new("old").unwrap(),
                config: None,
                version: 5,
            },
            ServiceRecord {
                network: Name::new("front").unwrap(),
                name: Name::new("web").unwrap(),
                config: Some(config),
                version: 7,
            },
        ];
        let kvs = encode(&p);
        let web = kvs.iter().find(|(k, _)| k == "svc/front/web").unwrap();
        assert_eq!(
            web.1,
            r#"{"version":7,"mode":"vip","vip":"10.10.0.200","ports":["80/tcp","53/udp"],"health":"http:/healthz","health_interval_ms":2000,"health_threshold":2,"publish":["8080:80/tcp"]}"#
        );
        assert!(kvs.iter().any(|(k, v)| k == "svc/front/old" && v == r#"{"removed":true,"version":5}"#));
        let ep = kvs.iter().find(|(k, _)| k.starts_with("ep/")).unwrap();
        assert_eq!(ep.1, r#"{"ip":"10.10.0.2","name":"web","services":["api","web"],"down":["web"]}"#);
        let (back, errors) = decode(kv(&kvs));
        assert_eq!(errors, vec![]);
        assert_eq!(back.unwrap(), p);
    }

    /// A service from gossip passes host.toml's checks, on a network the
    /// host declares; a bad one is skipped and named.
    #[test]
    fn a_bad_service_is_skipped() {
        let mut kvs = encode(&sample());
        for (key, value) in [
            ("svc/front/web", r#"{"version":1,"mode":"vip","vip":"10.99.0.1"}"#),
            ("svc/front/web2", r#"{"version":1,"mode":"vip"}"#),
            ("svc/front/web3", r#"{"version":1,"mode":"vip","vip":"10.10.0.9","ports":["http"]}"#),
            ("svc/nowhere/web", r#"{"version":1,"mode":"dnsrr"}"#),
            ("svc/front/tasks.x", r#"{"version":1,"mode":"dnsrr"}"#),
            ("svc/front/ok", r#"{"version":1,"mode":"dnsrr","surprise":1}"#),
        ] {
            kvs.push((key.into(), value.into()));
        }
        let (p, errors) = decode(kv(&kvs));
        assert!(p.unwrap().services.is_empty());
        assert_eq!(errors.len(), 6, "{errors:?}");
        assert!(errors[0].reason.contains("10.99.0.1"), "{}", errors[0]);
    }

    #[test]
    fn policies_round_trip_and_bad_ones_are_skipped() {
        let mut p = sample();
        let raw = RawPolicy {
            name: Some("db".into()),
            network: Some("front".into()),
            select: Some("service=db".into()),
            from: Some(vec!["service=web".into(), "cidr=10.99.0.0/16".into()]),
            ports: Some(vec!["5432/tcp".into()]),
        };
        let front = p.networks[&Name::new("front").unwrap()].clone();
        let config = switchd_config::validate::policy(&raw, &[front], &KeyPath::root()).unwrap();
        p.policies = vec![
            PolicyRecord { name: Name::new("db").unwrap(), config: Some(config), version: 9 },
            PolicyRecord { name: Name::new("old").unwrap(), config: None, version: 3 },
        ];
        let mut kvs = encode(&p);
        let db = kvs.iter().find(|(k, _)| k == "pol/db").unwrap();
        assert_eq!(
            db.1,
            r#"{"version":9,"network":"front","select":"service=db","from":["service=web","cidr=10.99.0.0/16"],"ports":["5432/tcp"]}"#
        );
        let (back, errors) = decode(kv(&kvs));
        assert_eq!(errors, vec![]);
        assert_eq!(back.unwrap(), p);
        kvs.push(("pol/bad".into(), r#"{"version":1,"network":"nowhere","select":"*"}"#.into()));
        kvs.push(("pol/worse".into(), r#"{"version":1,"network":"front","select":"who=me"}"#.into()));
        let (back, errors) = decode(kv(&kvs));
        assert_eq!(back.unwrap().policies.len(), 2);
        assert_eq!(errors.len(), 2, "{errors:?}");
    }
}
