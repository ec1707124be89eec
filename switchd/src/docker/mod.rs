//! switchd as a Docker network driver: libnetwork's remote driver protocol
//! (JSON over HTTP on a Unix socket in /run/docker/plugins), served by the
//! daemon itself.
//!
//! What dockerd 20.10 does, as observed: without swarm it refuses drivers
//! of global scope ("not a swarm manager"), so the driver says `local`
//! (each engine keeps its own view) with `global` connectivity (the network
//! reaches other hosts: switchd's gossip makes it cluster-wide). It passes
//! no network or container name: networks are named by `-o name=NAME`, or
//! `docker-` and the first 12 hex digits of the network id; containers'
//! names are read from dockerd's API afterwards (`http::name_endpoints`).
//! At `Join` the container's namespace does not exist yet (runc makes it
//! later), so switchd makes a TAP in its own namespace and returns it for
//! dockerd to move, rename and address; `DisableGatewayService` keeps
//! dockerd from adding its own gateway bridge. The same socket serves the
//! IPAM protocol (`--ipam-driver`), from switchd's cluster-wide IPAM.
//!
//! Sans-IO: [`parse`] reads a request, [`fixed_reply`] answers what needs
//! no daemon, `Daemon::docker` the rest; `http` carries them.

pub mod http;

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

/// A driver operation, as dockerd sends it.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Activate,
    GetCapabilities,
    CreateNetwork(CreateNetwork),
    DeleteNetwork {
        network_id: String,
    },
    CreateEndpoint(CreateEndpoint),
    DeleteEndpoint {
        network_id: String,
        endpoint_id: String,
    },
    EndpointOperInfo,
    Join(Join),
    Leave {
        network_id: String,
        endpoint_id: String,
    },
    /// Discovery and external connectivity: nothing to do.
    Ignored,
    /// IPAM (`--ipam-driver`): the pool is the subnet given with `--subnet`.
    AddressSpaces,
    RequestPool {
        pool: String,
    },
    RequestAddress(RequestAddress),
    ReleaseAddress {
        pool_id: String,
        address: String,
    },
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RequestAddress {
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    #[serde(default)]
    pub address: String,
    /// dockerd sends `null` when there are none.
    #[serde(default)]
    pub options: Option<BTreeMap<String, String>>,
}

impl RequestAddress {
    /// dockerd asks for the network's gateway address this way.
    pub fn is_gateway(&self) -> bool {
        self.options
            .as_ref()
            .and_then(|o| o.get("RequestAddressType"))
            .is_some_and(|t| t == "com.docker.network.gateway")
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PoolRequest {
    #[serde(default)]
    pool: String,
    #[serde(default, rename = "V6")]
    v6: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AddressRelease {
    #[serde(rename = "PoolID")]
    pool_id: String,
    #[serde(default)]
    address: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpamData {
    #[serde(default)]
    pub pool: String,
    #[serde(default)]
    pub gateway: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateNetwork {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(default)]
    pub options: serde_json::Map<String, Value>,
    #[serde(rename = "IPv4Data", default)]
    pub ipv4_data: Vec<IpamData>,
    /// With `--ipv6`: the /64 given with a second `--subnet`.
    #[serde(rename = "IPv6Data", default)]
    pub ipv6_data: Vec<IpamData>,
}

impl CreateNetwork {
    /// `docker network create -o KEY=VALUE`.
    pub fn option(&self, key: &str) -> Option<&str> {
        self.options.get("com.docker.network.generic")?.get(key)?.as_str()
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointInterface {
    #[serde(default)]
    pub address: String,
    #[serde(default, rename = "AddressIPv6")]
    pub address_ipv6: String,
    #[serde(default)]
    pub mac_address: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateEndpoint {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    pub interface: Option<EndpointInterface>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Join {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    pub sandbox_key: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Ids {
    #[serde(rename = "NetworkID")]
    network_id: String,
    #[serde(rename = "EndpointID", default)]
    endpoint_id: String,
}

/// Reads a request: the path names the operation, the body its arguments.
/// The error is the reply's `Err`, naming what is wrong.
pub fn parse(path: &str, body: &[u8]) -> Result<Request, String> {
    fn body_as<'a, T: Deserialize<'a>>(path: &str, body: &'a [u8]) -> Result<T, String> {
        serde_json::from_slice(body).map_err(|e| format!("{path}: bad request body: {e}"))
    }
    let ids = || body_as::<Ids>(path, body);
    Ok(match path {
        "/Plugin.Activate" => Request::Activate,
        "/NetworkDriver.GetCapabilities" => Request::GetCapabilities,
        "/NetworkDriver.CreateNetwork" => Request::CreateNetwork(body_as(path, body)?),
        "/NetworkDriver.DeleteNetwork" => Request::DeleteNetwork { network_id: ids()?.network_id },
        "/NetworkDriver.CreateEndpoint" => Request::CreateEndpoint(body_as(path, body)?),
        "/NetworkDriver.DeleteEndpoint" => {
            let ids = ids()?;
            Request::DeleteEndpoint { network_id: ids.network_id, endpoint_id: ids.endpoint_id }
        }
        "/NetworkDriver.EndpointOperInfo" => Request::EndpointOperInfo,
        "/NetworkDriver.Join" => Request::Join(body_as(path, body)?),
        "/NetworkDriver.Leave" => {
            let ids = ids()?;
            Request::Leave { network_id: ids.network_id, endpoint_id: ids.endpoint_id }
        }
        "/IpamDriver.GetCapabilities" | "/IpamDriver.ReleasePool" => Request::Ignored,
        "/IpamDriver.GetDefaultAddressSpaces" => Request::AddressSpaces,
        "/IpamDriver.RequestPool" => {
            let request: PoolRequest = body_as(path, body)?;
            if request.pool.is_empty() {
                let family = if request.v6 { "an IPv6 /64" } else { "the network's subnet" };
                return Err(format!("switchd's IPAM needs {family}: give --subnet"));
            }
            Request::RequestPool { pool: request.pool }
        }
        "/IpamDriver.RequestAddress" => Request::RequestAddress(body_as(path, body)?),
        "/IpamDriver.ReleaseAddress" => {
            let r: AddressRelease = body_as(path, body)?;
            Request::ReleaseAddress { pool_id: r.pool_id, address: r.address }
        }
        "/NetworkDriver.DiscoverNew"
        | "/NetworkDriver.DiscoverDelete"
        | "/NetworkDriver.ProgramExternalConnectivity"
        | "/NetworkDriver.RevokeExternalConnectivity" => Request::Ignored,
        other => return Err(format!("{other}: not an operation of the network driver protocol")),
    })
}

/// The replies that do not depend on the daemon.
pub fn fixed_reply(request: &Request) -> Option<Value> {
    match request {
        Request::Activate => Some(json!({ "Implements": ["NetworkDriver", "IpamDriver"] })),
        Request::RequestPool { pool } => Some(json!({ "PoolID": pool, "Pool": pool, "Data": {} })),
        Request::AddressSpaces => {
            Some(json!({ "LocalDefaultAddressSpace": "switchd", "GlobalDefaultAddressSpace": "switchd" }))
        }
        // Global scope needs swarm in dockerd 20.10; see the module docs.
        Request::GetCapabilities => Some(json!({ "Scope": "local", "ConnectivityScope": "global" })),
        Request::EndpointOperInfo => Some(json!({ "Value": {} })),
        Request::Ignored => Some(json!({})),
        _ => None,
    }
}

/// An error reply, in the protocols' form: the network driver protocol
/// reads `Err`, the IPAM one `Error` (libnetwork's `ipams/remote/api`;
/// it takes a reply without `Error` for a success, then says only "No
/// address returned"). Both, so that an error is seen whichever protocol
/// asked, even when the request could not be read.
pub fn error_reply(message: &str) -> Value {
    json!({ "Err": message, "Error": message })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bodies exactly as dockerd 20.10 sent them (captured in a test run).
    const CREATE_NETWORK: &str = r#"{"NetworkID":"faeb295fb0ddbed0eb29719575ad435a3b772ff8689b86babe9a51463cb46edf","Options":{"com.docker.network.enable_ipv6":false,"com.docker.network.generic":{"vni":"900"}},"IPv4Data":[{"AddressSpace":"LocalDefault","Gateway":"10.90.0.1/24","Pool":"10.90.0.0/24"}],"IPv6Data":[]}"#;
    const CREATE_ENDPOINT: &str = r#"{"NetworkID":"faeb295fb0ddbed0eb29719575ad435a3b772ff8689b86babe9a51463cb46edf","EndpointID":"7f95cabeaf81bca71122f8d0543b5d65f47939e747783f0074055e2c84090191","Interface":{"Address":"10.90.0.2/24","AddressIPv6":"","MacAddress":""},"Options":{"com.docker.network.endpoint.dnsservers":["10.90.0.1"],"com.docker.network.endpoint.exposedports":[],"com.docker.network.portmap":[]}}"#;
    const JOIN: &str = r#"{"NetworkID":"faeb295fb0ddbed0eb29719575ad435a3b772ff8689b86babe9a51463cb46edf","EndpointID":"7f95cabeaf81bca71122f8d0543b5d65f47939e747783f0074055e2c84090191","SandboxKey":"/tmp/dk/exec/netns/323d53f969dc","Options":{"com.docker.network.endpoint.exposedports":[],"com.docker.network.portmap":[]}}"#;

    #[test]
    fn dockers_requests_parse() {
        let Request::CreateNetwork(n) = parse("/NetworkDriver.CreateNetwork", CREATE_NETWORK.as_bytes()).unwrap()
        else {
            panic!()
        };
        assert_eq!(n.option("vni"), Some("900"));
        assert_eq!(n.ipv4_data[0].pool, "10.90.0.0/24");
        assert_eq!(n.ipv4_data[0].gateway, "10.90.0.1/24");
        let Request::CreateEndpoint(e) = parse("/NetworkDriver.CreateEndpoint", CREATE_ENDPOINT.as_bytes()).unwrap()
        else {
            panic!()
        };
        assert_eq!(e.interface.unwrap().address, "10.90.0.2/24");
        let Request::Join(j) = parse("/NetworkDriver.Join", JOIN.as_bytes()).unwrap() else { panic!() };
        assert_eq!(j.sandbox_key, "/tmp/dk/exec/netns/323d53f969dc");
        assert_eq!(parse("/Plugin.Activate", b"").unwrap(), Request::Activate);
        assert_eq!(
            fixed_reply(&Request::GetCapabilities).unwrap(),
            json!({"Scope": "local", "ConnectivityScope": "global"})
        );
    }

    #[test]
    fn ipam_requests_parse() {
        let pool = br#"{"AddressSpace":"switchd","Pool":"10.95.0.0/24","SubPool":"","Options":{},"V6":false}"#;
        let request = parse("/IpamDriver.RequestPool", pool).unwrap();
        assert_eq!(request, Request::RequestPool { pool: "10.95.0.0/24".into() });
        assert_eq!(fixed_reply(&request).unwrap()["PoolID"], "10.95.0.0/24");
        let e = parse("/IpamDriver.RequestPool", br#"{"AddressSpace":"switchd","Pool":""}"#).unwrap_err();
        assert!(e.contains("give --subnet"), "{e}");
        let gw =
            br#"{"PoolID":"10.95.0.0/24","Address":"","Options":{"RequestAddressType":"com.docker.network.gateway"}}"#;
        let Request::RequestAddress(r) = parse("/IpamDriver.RequestAddress", gw).unwrap() else { panic!() };
        assert!(r.is_gateway());
        // As dockerd asks for a container's address.
        let plain = br#"{"PoolID":"10.95.0.0/24","Address":"","Options":null}"#;
        let Request::RequestAddress(r) = parse("/IpamDriver.RequestAddress", plain).unwrap() else { panic!() };
        assert!(!r.is_gateway());
    }

    #[test]
    fn bad_requests_name_what_is_wrong() {
        let e = parse("/NetworkDriver.Join", br#"{"NetworkID": 3}"#).unwrap_err();
        assert!(e.starts_with("/NetworkDriver.Join: bad request body: invalid type"), "{e}");
        let e = parse("/NetworkDriver.Teleport", b"{}").unwrap_err();
        assert_eq!(e, "/NetworkDriver.Teleport: not an operation of the network driver protocol");
        assert!(parse("/NetworkDriver.CreateNetwork", b"not json").is_err());
    }
}
