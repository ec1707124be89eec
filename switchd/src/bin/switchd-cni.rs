//! `switchd-cni`: the CNI plugin (spec 1.0) that attaches a container's
//! namespace through the local switchd. See `switchd::cni`.

use std::io::Read;
use std::process::ExitCode;

use switchd::cni::{self, Env, NetConf};

fn main() -> ExitCode {
    let mut stdin = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut stdin);
    let version = serde_json::from_slice::<serde_json::Value>(&stdin)
        .ok()
        .and_then(|v| v["cniVersion"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "1.0.0".to_owned());
    let outcome = Env::from_vars(|k| std::env::var(k).ok()).and_then(|env| {
        if env.command == "VERSION" {
            // VERSION comes with no configuration, or just its version.
            return Ok(serde_json::json!({ "cniVersion": version, "supportedVersions": cni::SUPPORTED }));
        }
        let conf = NetConf::parse(&stdin)?;
        cni::run(&conf, &env, &stdin)
    });
    match outcome {
        Ok(serde_json::Value::Null) => ExitCode::SUCCESS,
        Ok(result) => {
            println!("{result}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("{}", e.to_json(&version));
            ExitCode::FAILURE
        }
    }
}
