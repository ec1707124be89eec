//! The gossip simulation at a small size: a cluster of 8 hosts with 5
//! endpoints each, 2% loss, 1-20 ms latency. Every member must learn a
//! joining host and drop a dead one; the bound on failure is the detection
//! timeout plus a few gossip rounds.

use std::time::Duration;

use switchd_overlay::gossip::sim::{self, SimConfig};
use switchd_overlay::gossip::table::Timeouts;

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_small_cluster_converges_on_join_and_failure() {
    let config = SimConfig {
        hosts: 8,
        endpoints_per_host: 5,
        networks: 2,
        seed: 7,
        loss: 0.02,
        latency_ms: (1, 20),
        interval: Duration::from_millis(250),
        timeouts: Timeouts::new(Duration::from_secs(8)),
    };
    let report = sim::run(config).await;
    eprintln!("{report:?}");
    assert!(report.join < Duration::from_secs(5), "join took {:?}", report.join);
    assert!(
        report.failure >= Duration::from_secs(8),
        "a death is only declared after the timeout: {:?}",
        report.failure
    );
    assert!(report.failure < Duration::from_secs(12), "failure took {:?}", report.failure);
    assert!(report.bytes_per_host_per_sec > 0.0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn both_sides_of_a_healed_partition_converge() {
    let config = SimConfig {
        hosts: 6,
        endpoints_per_host: 3,
        networks: 1,
        seed: 11,
        loss: 0.02,
        latency_ms: (1, 20),
        interval: Duration::from_millis(250),
        timeouts: Timeouts::new(Duration::from_secs(8)),
    };
    let healed = sim::partition_heals(config).await;
    eprintln!("converged {healed:?} after the partition healed");
    assert!(healed < Duration::from_secs(10), "took {healed:?}");
}
