//! What each host publishes through gossip, and its checked decoding.
//!
//! A host's gossip state is a set of key-value pairs it alone writes:
//!
//! | key | value (JSON) |
//! | --- | --- |
//! | `host` | `{"underlay_ip": "198.18.0.1", "vxlan_port": 4789, "leaving": false}` |
//! | `net/<name>` | `{"vni": 100, "subnet": "10.10.0.0/24", "gateway": "10.10.0.1", "mtu": 1450, "internal": false}` |
//! | `ep/<network>/<mac>` | `{"ip": "10.10.0.2", "name": "web"}` |
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
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};
use switchd_config::{MacAddr, Mtu, Name, NetworkConfig, Subnet, Vni};

pub const HOST_KEY: &str = "host";
pub const NETWORK_PREFIX: &str = "net/";
pub const ENDPOINT_PREFIX: &str = "ep/";
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
    pub name: Name,
}

/// A host's published state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub underlay: SocketAddr,
    /// The host is stopping cleanly: forget it now.
    pub leaving: bool,
    /// The networks it defines or has endpoints on, by name.
    pub networks: BTreeMap<Name, NetworkConfig>,
    pub endpoints: Vec<RemoteEndpoint>,
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
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointValue {
    ip: Option<IpAddr>,
    name: String,
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain structs serialize")
}

/// The key-value pairs a host publishes.
pub fn encode(p: &Published) -> Vec<(String, String)> {
    let mut kvs = vec![(
        HOST_KEY.to_owned(),
        json(&HostValue { underlay_ip: p.underlay.ip(), vxlan_port: p.underlay.port(), leaving: p.leaving }),
    )];
    for (name, n) in &p.networks {
        let value = NetworkValue {
            vni: n.vni.get(),
            subnet: n.subnet,
            gateway: n.gateway,
            mtu: n.mtu.get(),
            internal: n.internal,
        };
        kvs.push((format!("{NETWORK_PREFIX}{name}"), json(&value)));
    }
    for e in &p.endpoints {
        kvs.push((
            format!("{ENDPOINT_PREFIX}{}/{}", e.network, e.mac),
            json(&EndpointValue { ip: e.ip, name: e.name.to_string() }),
        ));
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
    let mut networks = BTreeMap::new();
    let mut raw_endpoints = Vec::new();
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
        } else if let Some(name) = key.strip_prefix(NETWORK_PREFIX) {
            match network(name, value) {
                Ok(n) => {
                    networks.insert(n.name.clone(), n);
                }
                Err(reason) => err(key, reason),
            }
        } else if let Some(rest) = key.strip_prefix(ENDPOINT_PREFIX) {
            raw_endpoints.push((key, rest, value));
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
    let published = host.map(|h| Published {
        underlay: SocketAddr::new(h.underlay_ip, h.vxlan_port),
        leaving: h.leaving,
        networks,
        endpoints,
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
    Ok(NetworkConfig { name, vni, subnet: v.subnet, gateway: v.gateway, mtu, internal: v.internal })
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
    Ok(RemoteEndpoint { network, mac, ip: v.ip, name: Name::new(&v.name)? })
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
        };
        Published {
            underlay: "198.18.0.1:4789".parse().unwrap(),
            leaving: false,
            networks: [(front.name.clone(), front)].into(),
            endpoints: vec![RemoteEndpoint {
                network: Name::new("front").unwrap(),
                mac: "02:42:0a:0a:00:02".parse().unwrap(),
                ip: Some("10.10.0.2".parse().unwrap()),
                name: Name::new("web").unwrap(),
            }],
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
                r#"{"vni":100,"subnet":"10.10.0.0/24","gateway":"10.10.0.1","mtu":1450,"internal":true}"#.into()
            )
        );
        assert_eq!(kvs[2], ("ep/front/02:42:0a:0a:00:02".into(), r#"{"ip":"10.10.0.2","name":"web"}"#.into()));
        let (p, errors) = decode(kv(&kvs));
        assert_eq!(errors, vec![]);
        assert_eq!(p.unwrap(), sample());
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
        assert_eq!(errors.len(), 12, "{shown:#?}");
        for expected in [
            "01:00:5e:00:00:01 is not a unicast address",
            "10.99.0.3 is not an endpoint address of 10.10.0.0/24",
            "10.10.0.1 is not an endpoint address",
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
}
