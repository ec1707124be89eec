//! The gossip simulation at a small size: a cluster of 8 hosts with 5
//! endpoints each, 2% loss, 1-20 ms latency. Every member must learn a
//! joining host and drop a dead one; the bound on failure is the detection
//! timeout plus a few gossip rounds.

use std::time::Duration;

use switchd_overlay::gossip::sim::{self, SimConfig};

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_small_cluster_converges_on_join_and_failure() {
    let config = SimConfig { endpoints_per_host: 5, networks: 2, seed: 7, ..SimConfig::new(8, 0.02) };
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
    assert!(report.propagation < Duration::from_secs(5), "propagation took {:?}", report.propagation);
    assert_eq!(report.false_deaths, 0);
    assert_eq!(report.fragmented, 0, "no datagram needed IP fragmentation");
    assert!(report.largest_datagram <= 1472, "{} bytes", report.largest_datagram);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn both_sides_of_a_healed_partition_converge() {
    let config = SimConfig { endpoints_per_host: 3, networks: 1, seed: 11, ..SimConfig::new(6, 0.02) };
    let healed = sim::partition_heals(config).await;
    eprintln!("converged {healed:?} after the partition healed");
    assert!(healed < Duration::from_secs(10), "took {healed:?}");
}

/// A cluster whose digests do not fit one datagram (30 hosts on an
/// underlay of the smallest IPv4 MTU, 576 bytes), under 10% loss: every
/// message still fits one datagram, digests name part of the cluster in
/// turn, and join, propagation and failure all converge.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn digests_larger_than_a_datagram_travel_in_parts_within_the_mtu() {
    let config = SimConfig { endpoints_per_host: 10, seed: 5, mtu: 576, ..SimConfig::new(30, 0.10) };
    let report = sim::run(config).await;
    eprintln!("{report:?}");
    let max = switchd_overlay::gossip::wire::max_datagram(576, false) as u64;
    assert!(report.largest_datagram <= max, "{} > {max} bytes", report.largest_datagram);
    assert_eq!(report.fragmented, 0);
    // 30 members' digest entries (about 50 bytes each) take several messages.
    assert!(30 * 50 > 2 * switchd_overlay::gossip::wire::message_budget(max as usize));
    assert_eq!(report.false_deaths, 0);
    assert!(report.join < Duration::from_secs(10), "join took {:?}", report.join);
    assert!(report.join_full_view.is_some_and(|d| d < Duration::from_secs(60)), "{:?}", report.join_full_view);
    assert!(report.propagation < Duration::from_secs(10), "propagation took {:?}", report.propagation);
    assert!(
        report.failure >= Duration::from_secs(8) && report.failure < Duration::from_secs(20),
        "{:?}",
        report.failure
    );
}

/// A value larger than a datagram's budget still travels (in one message
/// cut into datagrams that each fit the MTU), and does not hold back the
/// rest of its host's state.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_value_larger_than_a_datagram_still_travels_within_the_mtu() {
    let config = SimConfig { endpoints_per_host: 5, seed: 9, large_value: true, ..SimConfig::new(8, 0.02) };
    let report = sim::run(config).await;
    eprintln!("{report:?}");
    assert!(report.split_messages.0 > 0, "some messages took more than one datagram: {:?}", report.split_messages);
    assert_eq!(report.fragmented, 0);
    assert!(report.largest_datagram <= 1472, "{} bytes", report.largest_datagram);
    assert!(report.join < Duration::from_secs(10), "join took {:?}", report.join);
}
