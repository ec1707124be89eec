//! Arbitrary bytes as the CNI plugin's input: its environment (CNI_*
//! variables) through `cni::Env::from_vars` and its stdin (the network
//! configuration) through `cni::NetConf::parse`, then the plugin lookup
//! (`cni::find_plugin`) and the commands that need no switchd (`VERSION`,
//! unknown ones) through `cni::run`. Nothing may panic, and:
//!
//! - an IPAM plugin type that is empty, `.`, `..`, or has a '/' (or NUL)
//!   is never accepted, neither in a configuration nor by the lookup; a
//!   plugin found is the file of that name in an absolute CNI_PATH dir;
//! - errors carry CNI's codes: 7 for the environment, 4 for the
//!   configuration (1 for an unsupported cniVersion, the spec's code), and
//!   print as CNI's error JSON;
//! - an environment accepted for ADD/CHECK has a container id, a netns and
//!   an interface name; DEL may lack the netns.
//!
//! Input: the environment as `KEY=VALUE` lines (lossy UTF-8, the first of
//! a key wins, as getenv), a NUL byte, then stdin.

#![no_main]

use std::collections::BTreeMap;
use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use switchd::cni::{self, Env, Error, NetConf};

fn bad_plugin_name(kind: &str) -> bool {
    kind.is_empty() || kind == "." || kind == ".." || kind.contains('/') || kind.contains('\0')
}

fn check_error(e: &Error, codes: &[u32]) {
    assert!(codes.contains(&e.code), "code {} for {e:?}", e.code);
    assert!(!e.msg.is_empty());
    let json = e.to_json("1.0.0");
    assert_eq!((json["code"].as_u64(), json["msg"].as_str()), (Some(u64::from(e.code)), Some(e.msg.as_str())));
}

/// The lookup: bad names refused first (code 4), good ones only ever found
/// as `<absolute dir in cni_path>/<kind>`.
fn check_lookup(kind: &str, cni_path: &str) {
    match cni::find_plugin(kind, cni_path) {
        Ok(found) => {
            assert!(!bad_plugin_name(kind), "plugin type {kind:?} was accepted: {}", found.display());
            let dir = found.parent().expect("a plugin in a directory");
            assert!(dir.is_absolute() && cni_path.split(':').any(|d| Path::new(d) == dir), "{}", found.display());
            assert_eq!(found.components().next_back(), Some(Component::Normal(kind.as_ref())));
        }
        Err(e) => {
            check_error(&e, &[Error::INVALID_CONFIG]);
            let refused = e.msg == "invalid plugin type";
            assert_eq!(refused, bad_plugin_name(kind), "{kind:?}: {e:?}");
        }
    }
}

fuzz_target!(|data: &[u8]| fuzz_one(data));

// A function rather than the macro's closure, so that coverage reports
// (`cargo fuzz coverage`) show its lines.
fn fuzz_one(data: &[u8]) {
    let (env_text, stdin) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    let env_text = String::from_utf8_lossy(env_text);
    let mut vars = BTreeMap::new();
    for line in env_text.lines() {
        if let Some((k, v)) = line.split_once('=') {
            vars.entry(k.to_owned()).or_insert_with(|| v.to_owned());
        }
    }
    let env = Env::from_vars(|k| vars.get(k).cloned());
    match &env {
        Err(e) => check_error(e, &[Error::INVALID_ENV]),
        Ok(env) => {
            assert_eq!(Some(&env.command), vars.get("CNI_COMMAND"));
            if env.command != "VERSION" {
                assert!(!env.container_id.is_empty() && !env.ifname.is_empty(), "{env:?}");
                if env.command != "DEL" {
                    assert!(env.netns.as_ref().is_some_and(|n| !n.is_empty()), "{env:?}");
                }
            }
        }
    }

    let conf = NetConf::parse(stdin);
    // Every string an `ipam.type` holds, accepted or not.
    let ipam_type = serde_json::from_slice::<Value>(stdin)
        .ok()
        .and_then(|v| v.get("ipam")?.get("type")?.as_str().map(str::to_owned));
    match &conf {
        Err(e) => {
            check_error(e, &[Error::INVALID_CONFIG, Error::INCOMPATIBLE_VERSION]);
            if e.code == Error::INCOMPATIBLE_VERSION {
                assert_eq!(e.msg, "incompatible CNI version");
            }
        }
        Ok(conf) => {
            assert!(cni::SUPPORTED.contains(&conf.cni_version.as_str()));
            if let Some(kind) = conf.ipam.as_ref().and_then(|i| i.get("type")) {
                let kind = kind.as_str().expect("an accepted ipam.type is a string");
                assert!(!bad_plugin_name(kind), "plugin type {kind:?} was accepted");
            }
        }
    }
    let cni_path = env.as_ref().map(|e| e.path.clone()).unwrap_or_default();
    if let Some(kind) = &ipam_type {
        check_lookup(kind, &cni_path);
    }

    // The commands that never reach switchd.
    if let (Ok(env), Ok(conf)) = (&env, &conf)
        && !matches!(env.command.as_str(), "ADD" | "DEL" | "CHECK")
    {
        match cni::run(conf, env, stdin) {
            Ok(v) => {
                assert_eq!(env.command, "VERSION");
                assert_eq!(v["cniVersion"], conf.cni_version.as_str());
            }
            Err(e) => {
                assert_ne!(env.command, "VERSION");
                check_error(&e, &[Error::INVALID_ENV]);
            }
        }
    }
}
