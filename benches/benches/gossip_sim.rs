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
        hosts: env("SIM_HOSTS", 100),
        endpoints_per_host: env("SIM_ENDPOINTS", 20),
        networks: 4,
        seed: env("SIM_SEED", 1),
        loss: env("SIM_LOSS", 0.01),
        latency_ms: (1, env("SIM_LATENCY_MS", 20)),
        interval: Duration::from_millis(env("SIM_INTERVAL_MS", 250)),
        timeouts: Timeouts::new(Duration::from_secs(env("SIM_DEAD_AFTER", 8))),
    };
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().expect("a runtime");
    let wall = Instant::now();
    let report = runtime.block_on(sim::run(config.clone()));
    println!(
        "gossip_sim hosts={} endpoints/host={} loss={} latency={}-{}ms interval={:?} dead_after={:?} seed={}",
        config.hosts,
        config.endpoints_per_host,
        config.loss,
        config.latency_ms.0,
        config.latency_ms.1,
        config.interval,
        config.timeouts.dead_after,
        config.seed
    );
    println!(
        "  join convergence {:.1} s, failure convergence {:.1} s, {:.0} bytes and {:.1} datagrams per host per second (simulated in {:.1} s)",
        report.join.as_secs_f64(),
        report.failure.as_secs_f64(),
        report.bytes_per_host_per_sec,
        report.datagrams_per_host_per_sec,
        wall.elapsed().as_secs_f64()
    );
}
