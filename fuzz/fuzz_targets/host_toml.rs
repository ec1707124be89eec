//! Arbitrary text as host.toml, through `Config::parse` (what `Config::load`
//! and `switchd --check` run on a file's text). Nothing may panic, and:
//!
//! - every error past TOML's own syntax names its key, points inside the
//!   text, and is under 1 KiB as printed (`file:line:col: key: reason`),
//!   however long the values it quotes;
//! - an accepted config re-validates: written back as host.toml (every
//!   value explicit, by a writer here) it parses to the same config, and
//!   the parts that travel in state.json (networks, ports, routes,
//!   publications) round-trip through their JSON form.
//!
//! Input: the text (not UTF-8: skipped, as `load` refuses it). The file
//! sits in a directory holding `cluster.key` and `vault.key`, so relative
//! key files can validate.

#![no_main]

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;
use switchd_config::{Config, KeySource, PortKind};

const MAX_ERROR: usize = 1024;

fn file() -> &'static PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("switchd-fuzz-host-toml-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory for the key files");
        for (name, byte) in [("cluster.key", "42"), ("vault.key", "17")] {
            std::fs::write(dir.join(name), format!("{}\n", byte.repeat(32))).expect("a key file");
        }
        dir.join("host.toml")
    })
}

/// A TOML basic string.
fn s(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => write!(out, "\\u{:04X}", c as u32).unwrap(),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn p(path: &std::path::Path) -> String {
    s(path.to_str().expect("paths from TOML text are UTF-8"))
}

fn list<T>(items: &[T], f: impl Fn(&T) -> String) -> String {
    format!("[{}]", items.iter().map(f).collect::<Vec<_>>().join(", "))
}

/// Writes `c` back as host.toml, every value explicit.
fn write_back(c: &Config) -> String {
    let mut t = String::new();
    let h = &c.host;
    writeln!(t, "[host]\nname = {}", s(h.name.as_str())).unwrap();
    if let Some(ip) = h.underlay_ip {
        writeln!(t, "underlay_ip = {}", s(&ip.to_string())).unwrap();
    }
    writeln!(t, "vxlan_port = {}", h.vxlan_port).unwrap();
    writeln!(t, "control_socket = {}\nstate_dir = {}", p(&h.control_socket), p(&h.state_dir)).unwrap();
    writeln!(t, "underlay_mtu = {}\nmac_aging_time = {}", h.underlay_mtu, h.mac_aging_time.as_secs()).unwrap();
    writeln!(t, "mac_limit = {}\nworkers = {}", h.mac_limit, h.workers).unwrap();
    if let Some(g) = &c.gossip {
        writeln!(t, "[gossip]\nport = {}\nseeds = {}", g.port, list(&g.seeds, |a| s(&a.to_string()))).unwrap();
        writeln!(t, "key_file = {}\ninterval_ms = {}", p(&g.key_file), g.interval.as_millis()).unwrap();
        writeln!(t, "failure_timeout = {}", g.failure_timeout.as_secs()).unwrap();
    }
    if let Some(d) = &c.docker {
        writeln!(t, "[docker]\nsocket = {}\napi_socket = {}", p(&d.socket), p(&d.api_socket)).unwrap();
    }
    for peer in &c.peers {
        writeln!(t, "[[peer]]\nunderlay_ip = {}\nvxlan_port = {}", s(&peer.underlay_ip.to_string()), peer.vxlan_port)
            .unwrap();
        if let Some(vnis) = &peer.vnis {
            writeln!(t, "vnis = {}", list(vnis, |v| v.to_string())).unwrap();
        }
        if let Some(name) = &peer.name {
            writeln!(t, "name = {}", s(name.as_str())).unwrap();
        }
    }
    for n in &c.networks {
        writeln!(t, "[[network]]\nname = {}\nvni = {}\nmtu = {}", s(n.name.as_str()), n.vni, n.mtu).unwrap();
        if let Some(subnet) = n.subnet {
            writeln!(t, "subnet = {}", s(&subnet.to_string())).unwrap();
        }
        if let Some(gw) = n.gateway {
            writeln!(t, "gateway = {}", s(&gw.to_string())).unwrap();
        }
        writeln!(t, "internal = {}\ndns = {}\ndhcp = {}", n.internal, n.dns, n.dhcp).unwrap();
        writeln!(t, "host_access = {}\nencrypted = {}", n.host_access, n.encryption.is_some()).unwrap();
        if let Some(e) = n.encryption {
            // A default cipher is written as none named, so it stays the default.
            if !e.default_cipher {
                writeln!(t, "cipher = {}", s(e.cipher.as_str())).unwrap();
            }
            let own = c.network_key_files.get(&n.name);
            assert_eq!(own.is_some(), e.key == KeySource::Own, "{}: key source and key file", n.name);
            if let Some(key_file) = own {
                writeln!(t, "key_file = {}", p(key_file)).unwrap();
            }
        }
    }
    for r in &c.routes {
        writeln!(t, "[[route]]\nnetworks = {}", list(&r.networks, |n| s(n.as_str()))).unwrap();
    }
    for port in &c.ports {
        writeln!(t, "[[port]]\nnetwork = {}\nkind = {}", s(port.network.as_str()), s(port.kind.as_str())).unwrap();
        writeln!(t, "dhcp = {}", port.dhcp).unwrap();
        let optional = [
            ("netns", port.netns.clone()),
            ("name", port.name.as_ref().map(|n| n.to_string())),
            ("ifname", port.ifname.as_ref().map(|n| n.to_string())),
            ("ip", port.ip.map(|ip| ip.to_string())),
            ("mac", port.mac.map(|m| m.to_string())),
            ("host_ifname", port.host_ifname.as_ref().map(|n| n.to_string())),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                writeln!(t, "{key} = {}", s(&value)).unwrap();
            }
        }
    }
    for pb in &c.publish {
        writeln!(t, "[[publish]]\nnetwork = {}\ncontainer = {}", s(pb.network.as_str()), s(pb.container.as_str()))
            .unwrap();
        writeln!(t, "host_ip = {}\nhost_port = {}\nport = {}", s(&pb.host_ip.to_string()), pb.host_port, pb.port)
            .unwrap();
        writeln!(
            t,
            "protocol = {}\nidle_timeout = {}",
            s(pb.protocol.as_str()),
            pb.idle_timeout.map_or(0, |d| d.as_secs())
        )
        .unwrap();
        writeln!(t, "max_connections = {}\nmax_per_source = {}", pb.max_connections, pb.max_per_source).unwrap();
    }
    t
}

fn json_round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(items: &[T]) {
    for item in items {
        let json = serde_json::to_string(item).expect("config values serialize");
        let again: T = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{json} does not read back: {e}"));
        assert_eq!(&again, item, "{json}");
    }
}

fn check_accepted(text: &str, c: &Config) {
    let _ = c.warnings();
    for port in &c.ports {
        assert!(c.network(port.network.as_str()).is_some(), "port on no network");
        assert!(port.kind != PortKind::Tap || port.netns.is_some(), "a tap port without a netns");
    }
    let written = write_back(c);
    let again = Config::parse(&written, file()).unwrap_or_else(|e| {
        panic!("written back, it does not validate:\n{e}\n--- from\n{text}\n--- written\n{written}")
    });
    let what = || format!("--- from\n{text}\n--- written\n{written}");
    assert_eq!(again.host, c.host, "{}", what());
    assert_eq!(again.gossip, c.gossip, "{}", what());
    assert_eq!(again.docker, c.docker, "{}", what());
    assert_eq!(again.peers, c.peers, "{}", what());
    assert_eq!(again.networks, c.networks, "{}", what());
    assert_eq!(again.network_key_files, c.network_key_files, "{}", what());
    assert_eq!(again.routes, c.routes, "{}", what());
    assert_eq!(again.ports, c.ports, "{}", what());
    assert_eq!(again.publish, c.publish, "{}", what());
    json_round_trip(&c.networks);
    json_round_trip(&c.ports);
    json_round_trip(&c.routes);
    json_round_trip(&c.publish);
}

fuzz_target!(|data: &[u8]| fuzz_one(data));

// A function rather than the macro's closure, so that coverage reports
// (`cargo fuzz coverage`) show its lines.
fn fuzz_one(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Config::parse(text, file()) {
        Ok(config) => check_accepted(text, &config),
        Err(errors) => {
            assert!(!errors.errors.is_empty(), "refused without a reason");
            let syntax = toml::de::DeTable::parse(text).is_err();
            let lines = text.matches('\n').count() + 1;
            for e in &errors.errors {
                // As `ConfigErrors` prints it.
                let printed = format!("{}:{}:{}: {}: {}", errors.file.display(), e.line, e.column, e.key, e.reason);
                assert!(printed.len() < MAX_ERROR, "an error of {} bytes: {printed}", printed.len());
                assert!(e.line >= 1 && e.line <= lines && e.column >= 1, "{printed}");
                assert!(!e.reason.is_empty(), "{printed}");
                if e.key.is_empty() {
                    assert!(syntax && errors.errors.len() == 1, "an error naming no key: {printed}");
                }
            }
        }
    }
}
