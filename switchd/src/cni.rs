//! The CNI plugin (`switchd-cni`, CNI spec 1.1): a container runtime
//! (podman, containerd, Kubernetes) hands it a network namespace, and it
//! asks the local switchd to attach it, as `switchctl network connect`
//! does, then reports the result in CNI's format.
//!
//! The network configuration:
//!
//! ```json
//! { "cniVersion": "1.0.0", "name": "front", "type": "switchd-cni",
//!   "network": "front",                          // default: name
//!   "socket": "/run/switchd/switchd.sock",       // default
//!   "ipam": { "type": "host-local", ... },       // optional: else switchd's IPAM
//!   "capabilities": { "portMappings": true, "aliases": true } }
//! ```
//!
//! - `ADD` attaches (the attachment named `cni:CONTAINER_ID/IFNAME`),
//!   joins the service the runtime's `aliases` name first for this
//!   network, and publishes its `portMappings` (hostPort to
//!   containerPort, as `switchctl publish` does); `DEL` undoes all of it,
//!   idempotently.
//! - `GC` (1.1) detaches this network's attachments that are not among
//!   `cni.dev/valid-attachments`, with their addresses and published
//!   ports: what a lost `DEL` leaked. `STATUS` (1.1) says whether switchd
//!   answers and has the network (code 50 if not).
//!
//! Errors go to stdout in CNI's form (`code`, `msg`, `details`), with the
//! spec's codes: 4 for a bad configuration, 7 for bad environment
//! variables, 11 to try again later, 999 for switchd's own refusals.
//!
//! A delegated IPAM plugin runs as root, so it is found only as libcni
//! finds plugins since CVE-2021-20206: its `type` is a file name (no `/`,
//! not `.` or `..`), looked up in the absolute directories of `CNI_PATH`
//! and nowhere else. Any other `type` is refused with code 4 before
//! anything runs, on every command.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;
use serde_json::{Value, json};
use switchd_config::raw::{RawPort, RawPublish};

use crate::control::api::{EndpointInfo, NetworkDetail, NetworkInfo, Page, PublishInfo, Request};
use crate::control::client;

pub const SUPPORTED: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
const DEFAULT_SOCKET: &str = "/run/switchd/switchd.sock";

/// A CNI error: its code, message and details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl Error {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const INVALID_CONFIG: u32 = 4;
    pub const INVALID_ENV: u32 = 7;
    pub const TRY_AGAIN: u32 = 11;
    /// STATUS: the plugin cannot serve ADD now.
    pub const NOT_AVAILABLE: u32 = 50;
    /// switchd refused (its message says why).
    pub const SWITCHD: u32 = 999;

    fn new(code: u32, msg: &str, details: impl Into<String>) -> Self {
        Error { code, msg: msg.to_owned(), details: details.into() }
    }

    /// The error as CNI prints it.
    pub fn to_json(&self, cni_version: &str) -> Value {
        json!({ "cniVersion": cni_version, "code": self.code, "msg": self.msg, "details": self.details })
    }
}

/// The part of the network configuration this plugin reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    #[serde(default)]
    pub network: Option<String>,
    #[serde(default)]
    pub socket: Option<PathBuf>,
    #[serde(default)]
    pub ipam: Option<Value>,
    /// What the runtime passes for the capabilities the configuration has.
    #[serde(default)]
    pub runtime_config: RuntimeConfig,
    /// GC: the attachments the runtime still has.
    #[serde(default, rename = "cni.dev/valid-attachments")]
    pub valid_attachments: Option<Vec<Attachment>>,
}

/// The runtime's arguments for the `portMappings` and `aliases` capabilities.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeConfig {
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
    /// Network name to the container's aliases on it (podman's).
    #[serde(default)]
    pub aliases: BTreeMap<String, Vec<String>>,
}

/// A `portMappings` entry: a host port forwarded to the container's.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub host_port: i64,
    pub container_port: i64,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default, rename = "hostIP")]
    pub host_ip: Option<String>,
}

/// A `cni.dev/valid-attachments` entry.
#[derive(Debug, Clone, Deserialize)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// The id switchd keeps for an attachment, so that `GC` can tell it.
pub fn attachment_id(container_id: &str, ifname: &str) -> String {
    format!("cni:{container_id}/{ifname}")
}

impl NetConf {
    pub fn parse(stdin: &[u8]) -> Result<NetConf, Error> {
        let conf: NetConf = serde_json::from_slice(stdin)
            .map_err(|e| Error::new(Error::INVALID_CONFIG, "invalid network configuration", e.to_string()))?;
        if !SUPPORTED.contains(&conf.cni_version.as_str()) {
            return Err(Error::new(
                Error::INCOMPATIBLE_VERSION,
                "incompatible CNI version",
                format!("{} is not one of {}", conf.cni_version, SUPPORTED.join(", ")),
            ));
        }
        if let Some(kind) = conf.ipam.as_ref().and_then(|ipam| ipam.get("type")) {
            let kind = kind.as_str().ok_or_else(|| {
                Error::new(Error::INVALID_CONFIG, "invalid network configuration", "ipam.type is not a string")
            })?;
            check_plugin_name(kind)?;
        }
        Ok(conf)
    }

    fn network(&self) -> &str {
        self.network.as_deref().unwrap_or(&self.name)
    }

    fn socket(&self) -> &Path {
        self.socket.as_deref().unwrap_or(Path::new(DEFAULT_SOCKET))
    }

    /// The delegated IPAM plugin's type, when it is not switchd's.
    fn ipam_type(&self) -> Option<&str> {
        self.ipam.as_ref()?.get("type")?.as_str().filter(|t| *t != "switchd")
    }
}

/// The operation and its environment (CNI_* variables).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    pub command: String,
    pub container_id: String,
    pub netns: Option<String>,
    pub ifname: String,
    /// `CNI_ARGS`: `K=V;K=V`.
    pub args: BTreeMap<String, String>,
    pub path: String,
}

impl Env {
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Env, Error> {
        let command = get("CNI_COMMAND").ok_or_else(|| Error::new(Error::INVALID_ENV, "CNI_COMMAND is not set", ""))?;
        let need = |key: &str| {
            get(key)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| Error::new(Error::INVALID_ENV, &format!("{key} is not set"), ""))
        };
        // VERSION, GC and STATUS concern no one container.
        if matches!(command.as_str(), "VERSION" | "GC" | "STATUS") {
            return Ok(Env {
                command,
                container_id: String::new(),
                netns: None,
                ifname: String::new(),
                args: BTreeMap::new(),
                path: get("CNI_PATH").unwrap_or_default(),
            });
        }
        let args = get("CNI_ARGS")
            .unwrap_or_default()
            .split(';')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Ok(Env {
            container_id: need("CNI_CONTAINERID")?,
            // DEL may come after the namespace is gone.
            netns: if command == "DEL" { get("CNI_NETNS").filter(|n| !n.is_empty()) } else { Some(need("CNI_NETNS")?) },
            ifname: need("CNI_IFNAME")?,
            args,
            path: get("CNI_PATH").unwrap_or_default(),
            command,
        })
    }

    /// The endpoint's name in switchd: the pod or container name the
    /// runtime passes (`K8S_POD_NAME`), else the container id's first 12.
    fn endpoint_name(&self) -> String {
        self.args
            .get("K8S_POD_NAME")
            .filter(|n| switchd_config::Name::new(n).is_ok())
            .cloned()
            .unwrap_or_else(|| self.container_id.chars().take(12).collect())
    }
}

/// Runs one CNI command; the JSON to print on success.
pub fn run(conf: &NetConf, env: &Env, stdin: &[u8]) -> Result<Value, Error> {
    match env.command.as_str() {
        "VERSION" => Ok(json!({ "cniVersion": conf.cni_version, "supportedVersions": SUPPORTED })),
        "ADD" => add(conf, env, stdin),
        "DEL" => del(conf, env, stdin).map(|()| Value::Null),
        "CHECK" => check(conf, env).map(|()| Value::Null),
        "GC" => gc(conf, env, stdin).map(|()| Value::Null),
        "STATUS" => status(conf).map(|()| Value::Null),
        other => Err(Error::new(Error::INVALID_ENV, "unknown CNI_COMMAND", other)),
    }
}

fn switchd(conf: &NetConf, request: &Request) -> Result<Value, Error> {
    client::call(conf.socket(), request).map_err(|e| {
        let code = if e.starts_with("cannot reach switchd") { Error::TRY_AGAIN } else { Error::SWITCHD };
        Error::new(code, "switchd refused", e)
    })
}

fn inspect(conf: &NetConf) -> Result<NetworkDetail, Error> {
    let value = switchd(conf, &Request::NetworkInspect { name: conf.network().to_owned(), page: Page::default() })?;
    serde_json::from_value(value)
        .map_err(|e| Error::new(Error::SWITCHD, "unexpected reply from switchd", e.to_string()))
}

/// A plugin type must name a file in a directory: anything with a `/`
/// (`../evil.sh`, `/tmp/evil.sh`) would run a program from elsewhere.
fn check_plugin_name(kind: &str) -> Result<(), Error> {
    if kind.is_empty() || kind == "." || kind == ".." || kind.contains('/') || kind.contains('\0') {
        return Err(Error::new(
            Error::INVALID_CONFIG,
            "invalid plugin type",
            format!("{kind:?}: a plugin type is the name of a file in CNI_PATH, without '/'"),
        ));
    }
    Ok(())
}

/// The plugin `kind` in the first absolute directory of `cni_path` that
/// holds it (a relative one would depend on the runtime's working
/// directory, so it is skipped).
pub fn find_plugin(kind: &str, cni_path: &str) -> Result<PathBuf, Error> {
    check_plugin_name(kind)?;
    cni_path
        .split(':')
        .map(Path::new)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(kind))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::new(Error::INVALID_CONFIG, "IPAM plugin not found", format!("{kind} in CNI_PATH {cni_path}"))
        })
}

/// Runs the delegated IPAM plugin (found in `CNI_PATH`) with the same
/// configuration and environment; its result.
fn delegate_ipam(kind: &str, env: &Env, stdin: &[u8]) -> Result<Value, Error> {
    let plugin = find_plugin(kind, &env.path)?;
    let mut child = Command::new(&plugin)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| Error::new(Error::INVALID_CONFIG, "cannot run the IPAM plugin", e.to_string()))?;
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(stdin);
    }
    let out = child.wait_with_output().map_err(|e| Error::new(Error::SWITCHD, "IPAM plugin failed", e.to_string()))?;
    let value: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    if !out.status.success() {
        let msg = value.get("msg").and_then(Value::as_str).unwrap_or("failed").to_owned();
        return Err(Error::new(Error::SWITCHD, "IPAM plugin failed", msg));
    }
    Ok(value)
}

/// The first IPv4 and the first IPv6 address of a delegated IPAM plugin's
/// result (`host-local` with a range of each family gives both); switchd
/// checks them as any connect's.
fn delegated_addresses(result: &Value) -> (Option<String>, Option<String>) {
    let ips = result["ips"].as_array().map(Vec::as_slice).unwrap_or_default();
    let addresses = ips.iter().filter_map(|ip| ip["address"].as_str()?.split('/').next().filter(|a| !a.is_empty()));
    let (mut v4, mut v6) = (None, None);
    for a in addresses {
        let slot = if a.contains(':') { &mut v6 } else { &mut v4 };
        slot.get_or_insert_with(|| a.to_owned());
    }
    (v4, v6)
}

fn add(conf: &NetConf, env: &Env, stdin: &[u8]) -> Result<Value, Error> {
    let detail = inspect(conf)?;
    let (ip, ip6) = match conf.ipam_type() {
        Some(kind) => delegated_addresses(&delegate_ipam(kind, env, stdin)?),
        None => (None, None),
    };
    let aliases =
        conf.runtime_config.aliases.get(conf.network()).or_else(|| conf.runtime_config.aliases.get(&conf.name));
    let port = RawPort {
        network: Some(conf.network().to_owned()),
        netns: env.netns.clone(),
        name: Some(env.endpoint_name()),
        ifname: Some(env.ifname.clone()),
        ip,
        ip6,
        kind: Some("tap".into()),
        service: aliases.and_then(|a| a.first().cloned()),
        attachment: Some(attachment_id(&env.container_id, &env.ifname)),
        ..RawPort::default()
    };
    let value = switchd(conf, &Request::NetworkConnect { port })?;
    let endpoint: EndpointInfo = serde_json::from_value(value)
        .map_err(|e| Error::new(Error::SWITCHD, "unexpected reply from switchd", e.to_string()))?;
    for m in &conf.runtime_config.port_mappings {
        let publish = RawPublish {
            network: Some(conf.network().to_owned()),
            container: Some(endpoint.name.clone()),
            host_port: Some(m.host_port),
            port: Some(m.container_port),
            protocol: m.protocol.clone(),
            host_ip: m.host_ip.clone().filter(|ip| !ip.is_empty()),
            ..RawPublish::default()
        };
        if let Err(e) = switchd(conf, &Request::PublishAdd { publish }) {
            // All or nothing: what was done is undone (DEL is idempotent).
            let _ = del(conf, env, stdin);
            return Err(e);
        }
    }
    // The subnets of the networks it routes to: switchd installed routes to
    // them (on an internal network), and the result lists them.
    let routed: Vec<String> = if detail.network.internal && !detail.network.routes.is_empty() {
        let all: Vec<NetworkInfo> = serde_json::from_value(switchd(conf, &Request::NetworkLs)?).unwrap_or_default();
        all.into_iter()
            .filter(|n| detail.network.routes.contains(&n.name))
            .flat_map(|n| [n.subnet, n.subnet6])
            .flatten()
            .collect()
    } else {
        Vec::new()
    };
    Ok(result(&conf.cni_version, env, &endpoint, &detail, &routed))
}

/// CNI's result: the interface, its addresses (IPv4 as given or picked,
/// IPv6 the SLAAC address of its MAC on a dual-stack network), routes and
/// DNS, each family through its own gateway.
fn result(version: &str, env: &Env, endpoint: &EndpointInfo, detail: &NetworkDetail, routed: &[String]) -> Value {
    let net = &detail.network;
    let prefix_of = |subnet: &Option<String>, full: u8| {
        subnet.as_deref().and_then(|s| s.split('/').nth(1)).map_or(full.to_string(), str::to_owned)
    };
    let families = [
        (endpoint.ip, net.gateway, prefix_of(&net.subnet, 32), "0.0.0.0/0"),
        (endpoint.ip6.map(IpAddr::V6), net.gateway6, prefix_of(&net.subnet6, 128), "::/0"),
    ];
    let mut ips = Vec::new();
    let mut routes = Vec::new();
    let mut nameservers = Vec::new();
    for (ip, gateway, prefix, default) in families {
        let Some(ip) = ip else { continue };
        let mut entry = json!({ "address": format!("{ip}/{prefix}"), "interface": 0 });
        if let Some(gw) = gateway {
            entry["gateway"] = json!(gw.to_string());
            if net.internal {
                let same_family = routed.iter().filter(|dst| dst.contains(':') == gw.is_ipv6());
                routes.extend(same_family.map(|dst| json!({ "dst": dst, "gw": gw.to_string() })));
            } else {
                routes.push(json!({ "dst": default, "gw": gw.to_string() }));
            }
            if net.dns {
                nameservers.push(gw.to_string());
            }
        }
        ips.push(entry);
    }
    let dns = if nameservers.is_empty() { json!({}) } else { json!({ "nameservers": nameservers }) };
    json!({
        "cniVersion": version,
        "interfaces": [{ "name": env.ifname, "mac": endpoint.mac, "sandbox": env.netns }],
        "ips": ips,
        "routes": routes,
        "dns": dns,
    })
}

/// Detaches; a container that is not attached is not an error (DEL is
/// idempotent).
fn del(conf: &NetConf, env: &Env, stdin: &[u8]) -> Result<(), Error> {
    unpublish(conf, &env.endpoint_name())?;
    let endpoint = env.netns.clone().unwrap_or_else(|| env.endpoint_name());
    let request = Request::NetworkDisconnect { network: conf.network().to_owned(), endpoint };
    match switchd(conf, &request) {
        Ok(_) => {}
        Err(e) if e.details.starts_with("no endpoint") || e.details.starts_with("no network") => {}
        Err(e) => return Err(e),
    }
    if let Some(kind) = conf.ipam_type() {
        delegate_ipam(kind, env, stdin)?;
    }
    Ok(())
}

/// Stops forwarding the host ports published to container `name` on this network.
fn unpublish(conf: &NetConf, name: &str) -> Result<(), Error> {
    let ports: Vec<PublishInfo> = match switchd(conf, &Request::PublishLs) {
        Ok(v) => serde_json::from_value(v).unwrap_or_default(),
        Err(e) if e.code == Error::TRY_AGAIN => return Err(e),
        Err(_) => return Ok(()),
    };
    for p in ports.iter().filter(|p| p.network == conf.network() && p.container == name) {
        let request = Request::PublishRm { host_port: p.host_port, protocol: p.protocol.clone() };
        match switchd(conf, &request) {
            Ok(_) => {}
            Err(e) if e.details.starts_with("nothing is published") => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// GC: switchd detaches what the runtime no longer lists, then the
/// delegated IPAM plugin (if any) does its own.
fn gc(conf: &NetConf, env: &Env, stdin: &[u8]) -> Result<(), Error> {
    let keep = conf.valid_attachments.iter().flatten().map(|a| attachment_id(&a.container_id, &a.ifname)).collect();
    switchd(conf, &Request::NetworkGc { network: conf.network().to_owned(), keep })?;
    if let Some(kind) = conf.ipam_type() {
        delegate_ipam(kind, env, stdin)?;
    }
    Ok(())
}

/// STATUS: ready for ADD when switchd answers and has the network.
fn status(conf: &NetConf) -> Result<(), Error> {
    inspect(conf).map(|_| ()).map_err(|e| Error::new(Error::NOT_AVAILABLE, "switchd is not available", e.details))
}

/// The endpoint exists and the interface inside has its address.
fn check(conf: &NetConf, env: &Env) -> Result<(), Error> {
    let detail = inspect(conf)?;
    let name = env.endpoint_name();
    let endpoint =
        detail.endpoints.iter().find(|e| e.name == name && e.netns.as_deref() == env.netns.as_deref()).ok_or_else(
            || Error::new(Error::SWITCHD, "not attached", format!("{name} is not on {}", conf.network())),
        )?;
    let netns = env.netns.as_deref().unwrap_or_default();
    let ifname = env.ifname.clone();
    let addresses = crate::io::netns::run_in(netns, move || crate::io::netlink::addresses(&ifname))
        .map_err(|e| Error::new(Error::SWITCHD, "cannot enter the namespace", e.to_string()))?
        .map_err(|e| Error::new(Error::SWITCHD, "interface missing", format!("{}: {e}", env.ifname)))?;
    match endpoint.ip {
        Some(ip) if !addresses.contains(&ip) => {
            Err(Error::new(Error::SWITCHD, "address missing", format!("{} has not {ip}", env.ifname)))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// host-local with a range of each family: one address of each, in
    /// whichever order it lists them.
    #[test]
    fn a_delegated_results_addresses_of_both_families() {
        let result = serde_json::json!({"ips": [
            {"address": "fd00:96::7/64", "gateway": "fd00:96::1"},
            {"address": "10.96.0.7/24"},
            {"address": "10.96.0.8/24"}
        ]});
        assert_eq!(delegated_addresses(&result), (Some("10.96.0.7".into()), Some("fd00:96::7".into())));
        assert_eq!(delegated_addresses(&serde_json::json!({"ips": "nonsense"})), (None, None));
        assert_eq!(delegated_addresses(&serde_json::json!({})), (None, None));
    }

    fn env(vars: &[(&str, &str)]) -> Result<Env, Error> {
        let map: BTreeMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Env::from_vars(|k| map.get(k).cloned())
    }

    #[test]
    fn a_dual_stack_result_has_both_families_each_through_its_gateway() {
        let detail: NetworkDetail = serde_json::from_value(json!({
            "name": "front", "vni": 960, "subnet": "10.96.0.0/24", "gateway": "10.96.0.1",
            "subnet6": "fd00:96::/64", "gateway6": "fd00:96::1", "mtu": 1450, "encrypted": false,
            "cipher": null, "key": null, "internal": false, "dns": true, "ports": 1, "hosts": [],
            "origin": "config", "endpoints": [],
        }))
        .unwrap();
        let endpoint: EndpointInfo = serde_json::from_value(json!({
            "name": "web", "network": "front", "ip": "10.96.0.5", "ip6": "fd00:96::42:aff:fe60:5",
            "mac": "02:42:0a:60:00:05", "host": "a", "kind": "tap", "netns": "/run/netns/x",
            "ifname": "eth0", "host_ifname": null,
        }))
        .unwrap();
        let env = env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "0123456789abcdef0123"),
            ("CNI_NETNS", "/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
        ])
        .unwrap();
        let r = result("1.0.0", &env, &endpoint, &detail, &[]);
        assert_eq!(
            r["ips"],
            json!([
                { "address": "10.96.0.5/24", "gateway": "10.96.0.1", "interface": 0 },
                { "address": "fd00:96::42:aff:fe60:5/64", "gateway": "fd00:96::1", "interface": 0 },
            ])
        );
        assert_eq!(
            r["routes"],
            json!([{ "dst": "0.0.0.0/0", "gw": "10.96.0.1" }, { "dst": "::/0", "gw": "fd00:96::1" }])
        );
        assert_eq!(r["dns"], json!({ "nameservers": ["10.96.0.1", "fd00:96::1"] }));
        // Internal: only the routed networks, each through its family's gateway.
        let mut internal = detail.clone();
        internal.network.internal = true;
        let routed = ["10.96.2.0/24".to_owned(), "fd00:97::/64".to_owned()];
        let r = result("1.0.0", &env, &endpoint, &internal, &routed);
        assert_eq!(
            r["routes"],
            json!([{ "dst": "10.96.2.0/24", "gw": "10.96.0.1" }, { "dst": "fd00:97::/64", "gw": "fd00:96::1" }])
        );
    }

    #[test]
    fn configurations_and_environments() {
        let conf = NetConf::parse(br#"{"cniVersion":"1.0.0","name":"front","type":"switchd-cni"}"#).unwrap();
        assert_eq!((conf.network(), conf.socket()), ("front", Path::new(DEFAULT_SOCKET)));
        assert_eq!(conf.ipam_type(), None);
        let e = NetConf::parse(br#"{"cniVersion":"9.9.9","name":"front"}"#).unwrap_err();
        assert_eq!(e.code, Error::INCOMPATIBLE_VERSION);
        let e = NetConf::parse(br#"{"name":"front"}"#).unwrap_err();
        assert_eq!((e.code, e.msg.as_str()), (Error::INVALID_CONFIG, "invalid network configuration"));
        assert!(e.details.contains("cniVersion"), "{}", e.details);

        let ok = env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "0123456789abcdef0123"),
            ("CNI_NETNS", "/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=web"),
        ])
        .unwrap();
        assert_eq!(ok.endpoint_name(), "web");
        let e = env(&[("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", "c")]).unwrap_err();
        assert_eq!((e.code, e.msg.as_str()), (Error::INVALID_ENV, "CNI_NETNS is not set"));
        let del =
            env(&[("CNI_COMMAND", "DEL"), ("CNI_CONTAINERID", "0123456789abcdef"), ("CNI_IFNAME", "eth0")]).unwrap();
        assert_eq!(
            (del.netns.as_deref(), del.endpoint_name().as_str()),
            (None, "0123456789ab"),
            "DEL without a namespace"
        );
        let version = run(&conf, &env(&[("CNI_COMMAND", "VERSION")]).unwrap(), b"").unwrap();
        assert_eq!(version["supportedVersions"][3], "1.0.0");
        let unknown = Env { command: "SHOUT".into(), ..ok };
        let e = run(&conf, &unknown, b"").unwrap_err();
        assert_eq!((e.code, e.msg.as_str()), (Error::INVALID_ENV, "unknown CNI_COMMAND"));
    }

    /// CVE-2021-20206: a plugin type with a `/` ran whatever it pointed at.
    #[test]
    fn plugins_are_found_only_by_name_in_cni_path() {
        let root = std::env::temp_dir().join(format!("switchd-cni-test-{}", std::process::id()));
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        for file in [bin.join("host-local"), root.join("evil.sh")] {
            std::fs::write(&file, "#!/bin/sh\n").unwrap();
        }
        let cni_path = format!("/nonexistent:{}", bin.display());
        assert_eq!(find_plugin("host-local", &cni_path).unwrap(), bin.join("host-local"));

        let evil = root.join("evil.sh");
        for kind in ["../evil.sh", evil.to_str().unwrap(), "sub/host-local", "", ".", ".."] {
            let e = find_plugin(kind, &cni_path).unwrap_err();
            assert_eq!((e.code, e.msg.as_str()), (Error::INVALID_CONFIG, "invalid plugin type"), "{kind:?}");
        }
        // A relative directory in CNI_PATH is never searched (this one
        // leads from any working directory to `root`).
        let relative = format!("{}{}", "../".repeat(64), root.strip_prefix("/").unwrap().display());
        assert!(Path::new(&relative).join("evil.sh").is_file());
        assert_eq!(find_plugin("evil.sh", &relative).unwrap_err().msg, "IPAM plugin not found");
        let _ = std::fs::remove_dir_all(&root);

        // Refused as the configuration is read, before any command runs.
        let conf = br#"{"cniVersion":"1.0.0","name":"front","ipam":{"type":"../evil.sh"}}"#;
        let e = NetConf::parse(conf).unwrap_err();
        assert_eq!((e.code, e.msg.as_str()), (Error::INVALID_CONFIG, "invalid plugin type"));
        let e = NetConf::parse(br#"{"cniVersion":"1.0.0","name":"front","ipam":{"type":7}}"#).unwrap_err();
        assert_eq!((e.code, e.details.as_str()), (Error::INVALID_CONFIG, "ipam.type is not a string"));
        let ok = NetConf::parse(br#"{"cniVersion":"1.0.0","name":"front","ipam":{"type":"host-local"}}"#).unwrap();
        assert_eq!(ok.ipam_type(), Some("host-local"));
    }

    #[test]
    fn gc_and_status_need_no_container_and_read_their_configuration() {
        let gc = env(&[("CNI_COMMAND", "GC"), ("CNI_PATH", "/usr/lib/cni")]).unwrap();
        assert_eq!((gc.container_id.as_str(), gc.path.as_str()), ("", "/usr/lib/cni"));
        assert!(env(&[("CNI_COMMAND", "STATUS")]).is_ok());
        let conf = NetConf::parse(
            br#"{"cniVersion":"1.1.0","name":"front","type":"switchd-cni",
                "runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp","hostIP":""}],
                                 "aliases":{"front":["web","www"]}},
                "cni.dev/valid-attachments":[{"containerID":"abc","ifname":"eth0"}]}"#,
        )
        .unwrap();
        let m = &conf.runtime_config.port_mappings[0];
        assert_eq!((m.host_port, m.container_port, m.protocol.as_deref()), (8080, 80, Some("tcp")));
        assert_eq!(conf.runtime_config.aliases["front"], ["web", "www"]);
        let valid = conf.valid_attachments.unwrap();
        assert_eq!(attachment_id(&valid[0].container_id, &valid[0].ifname), "cni:abc/eth0");
    }
}
