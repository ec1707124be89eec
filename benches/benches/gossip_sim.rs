//! The gossip simulation at scale: 100+ hosts with 20 endpoints each, in one
//! process on a paused clock. Prints time to full convergence after a host
//! joins and after one dies, and the gossip traffic per host.
//!
//!   cargo bench -p switchd-benches --bench gossip_sim            # 100 hosts
//!   SIM_HOSTS=200 SIM_LOSS=0.05 cargo bench -p switchd-benches --bench gossip_sim

use std::time::{Duration, Instant};

use switchd_overlay::gossip::sim::{self, SimConfig};
use switchd_overlay::gossip::table::Timeouts;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: run only when benchmarking.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let config = SimConfig {
        endpoints_per_host: env("SIM_ENDPOINTS", 20),
        seed: env("SIM_SEED", 1),
        latency_ms: (1, env("SIM_LATENCY_MS", 20)),
        interval: Duration::from_millis(env("SIM_INTERVAL_MS", 250)),
        timeouts: Timeouts::new(Duration::from_secs(env("SIM_DEAD_AFTER", 8))),
        mtu: env("SIM_MTU", 1500),
        preformed: env("SIM_PREFORMED", 0) == 1,
        full_view: env("SIM_FULL_VIEW", 1) == 1,
        ..SimConfig::new(env("SIM_HOSTS", 100), env("SIM_LOSS", 0.01))
    };
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().expect("a runtime");
    let wall = Instant::now();
    let report = runtime.block_on(sim::run(config.clone()));
    println!(
        "gossip_sim hosts={} endpoints/host={} loss={} latency={}-{}ms interval={:?} dead_after={:?} mtu={} preformed={} seed={}",
        config.hosts,
        config.endpoints_per_host,
        config.loss,
        config.latency_ms.0,
        config.latency_ms.1,
        config.interval,
        config.timeouts.dead_after,
        config.mtu,
        config.preformed,
        config.seed
    );
    let peak_rss_kb = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:").and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok()))
        .unwrap_or(0);
    let n = config.hosts as f64;
    println!(
        "  formation {:.1} s; join {:.1} s (the newcomer's full view {}); propagation {:.1} s; failure {:.1} s",
        report.formation.as_secs_f64(),
        report.join.as_secs_f64(),
        report.join_full_view.map_or("not measured".into(), |d| format!("{:.1} s", d.as_secs_f64())),
        report.propagation.as_secs_f64(),
        report.failure.as_secs_f64(),
    );
    println!(
        "  per host: {:.1} KB/s, {:.1} datagrams/s, CPU {:.2} ms/s, memory {:.1} MB (peak RSS {:.0} MB over {} hosts{})",
        report.bytes_per_host_per_sec / 1000.0,
        report.datagrams_per_host_per_sec,
        report.cpu_per_host.as_secs_f64() * 1000.0,
        peak_rss_kb as f64 / 1024.0 / n,
        peak_rss_kb as f64 / 1024.0,
        config.hosts,
        if config.preformed { "; preformed: hosts share the states they hold alike" } else { "" },
    );
    println!(
        "  largest datagram {} bytes, {} fragmented, {} of {} messages split; {} false deaths; held {} members and {} keys in all; wall {:.0} s",
        report.largest_datagram,
        report.fragmented,
        report.split_messages.0,
        report.split_messages.1,
        report.false_deaths,
        report.held.0,
        report.held.1,
        wall.elapsed().as_secs_f64()
    );
}
