//! A simulated cluster: many gossip members in one process over
//! [`SimNet`] (sealed datagrams, seeded loss and latency), on tokio's clock.
//! Run it on a paused current-thread runtime and minutes of gossip take
//! seconds, the same way every time the network's randomness is concerned
//! (chitchat picks its gossip partners with its own unseeded RNG, so timings
//! vary a little between runs).
//!
//! It measures what matters for a cluster: how long until every member
//! knows a host that joins (with all its endpoints), how long until every
//! member has dropped a host that dies, and what gossip costs per host.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use switchd_config::{MacAddr, Mtu, Name, NetworkConfig, Vni};
use switchd_crypto::Key;
use tokio::time::Instant;

use super::node::{GossipConfig, GossipNode};
use super::state::{Published, RemoteEndpoint};
use super::table::{PeerTable, Timeouts};
use super::transport::SimNet;

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub hosts: usize,
    pub endpoints_per_host: usize,
    pub networks: usize,
    pub seed: u64,
    pub loss: f64,
    pub latency_ms: (u64, u64),
    pub interval: Duration,
    pub timeouts: Timeouts,
}

#[derive(Debug, Clone)]
pub struct SimReport {
    /// From the last host's start until every member (it included) knows
    /// every other with all its endpoints.
    pub join: Duration,
    /// From a host's death until no member counts it (or its endpoints)
    /// any more; includes the detection timeout.
    pub failure: Duration,
    /// Sealed gossip bytes sent per host per second, in steady state.
    pub bytes_per_host_per_sec: f64,
    pub datagrams_per_host_per_sec: f64,
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 200, (i / 250) as u8, (i % 250 + 1) as u8], 7946))
}

fn host_name(i: usize) -> Name {
    Name::new(&format!("host-{i:04}")).expect("a valid name")
}

fn published(i: usize, config: &SimConfig) -> Published {
    let networks: BTreeMap<Name, NetworkConfig> = (0..config.networks)
        .map(|n| {
            let net = NetworkConfig {
                name: Name::new(&format!("net-{n}")).expect("a valid name"),
                vni: Vni::new(1000 + n as u32).expect("a valid vni"),
                subnet: Some(format!("10.{}.0.0/16", 100 + n).parse().expect("a subnet")),
                gateway: Some(format!("10.{}.0.1", 100 + n).parse().expect("an address")),
                mtu: Mtu::new(1450).expect("an mtu"),
                internal: true,
                encryption: None,
                dns: true,
                dhcp: true,
                host_access: false,
                icc: true,
                subnet6: None,
                gateway6: None,
            };
            (net.name.clone(), net)
        })
        .collect();
    let endpoints = (0..config.endpoints_per_host)
        .map(|e| {
            let n = e % config.networks;
            RemoteEndpoint {
                network: Name::new(&format!("net-{n}")).expect("a valid name"),
                mac: MacAddr([2, 0, (i >> 8) as u8, i as u8, (e >> 8) as u8, e as u8]),
                ip: Some(format!("10.{}.{}.{}", 100 + n, i % 250, e + 2).parse().expect("an address")),
                ip6: None,
                name: Name::new(&format!("c{i}-{e}")).expect("a valid name"),
                services: Vec::new(),
                down: Vec::new(),
            }
        })
        .collect();
    Published {
        underlay: SocketAddr::from(([198, 18, (i / 250) as u8, (i % 250 + 1) as u8], 4789)),
        leaving: false,
        session: None,
        keys: Default::default(),
        networks,
        endpoints,
        ipam: Default::default(),
        services: Vec::new(),
        policies: Vec::new(),
        partial_checksums: true,
    }
}

struct Member {
    node: Option<GossipNode>,
}

async fn start(net: &SimNet, i: usize, config: &SimConfig) -> GossipNode {
    let gossip = GossipConfig {
        name: host_name(i),
        listen: addr(i),
        seeds: (0..3.min(config.hosts)).map(addr).collect(),
        interval: config.interval,
        timeouts: config.timeouts,
    };
    GossipNode::start(&gossip, 1, net, &published(i, config)).await.expect("a simulated member starts")
}

/// Whether every live member sees `expected` other usable hosts with all
/// their endpoints. Every member is asked every time, as a daemon asks its
/// own several times a second (silence is measured between asks).
async fn converged(members: &mut [Member], expected: (usize, usize), timeouts: Timeouts) -> bool {
    let mut all = true;
    for m in members.iter_mut() {
        let Some(node) = m.node.as_mut() else { continue };
        let (list, _) = node.members().await;
        let table = PeerTable::build(list, timeouts);
        let usable: Vec<_> = table.hosts.values().filter(|h| h.is_usable()).collect();
        let endpoints: usize = usable.iter().map(|h| h.endpoints.len()).sum();
        all &= (usable.len(), endpoints) == expected;
    }
    all
}

const STEP: Duration = Duration::from_millis(200);

/// Asks every `STEP` until converged; returns the time it took.
async fn until(members: &mut [Member], expected: (usize, usize), timeouts: Timeouts, limit: Duration) -> Duration {
    let started = Instant::now();
    while started.elapsed() < limit {
        if converged(members, expected, timeouts).await {
            return started.elapsed();
        }
        tokio::time::sleep(STEP).await;
    }
    panic!("no convergence on {expected:?} within {limit:?}");
}

/// Splits a converged cluster in two halves until each side has declared
/// the other dead, then heals the split. Returns how long both sides took
/// to see each other again, with all endpoints.
pub async fn partition_heals(config: SimConfig) -> Duration {
    let net = SimNet::new(Key::from_bytes([0x5a; 32]), config.seed, config.loss, config.latency_ms);
    let (n, e) = (config.hosts, config.endpoints_per_host);
    let limit = Duration::from_secs(120);
    let mut members = Vec::new();
    for i in 0..n {
        members.push(Member { node: Some(start(&net, i, &config).await) });
    }
    until(&mut members, (n - 1, (n - 1) * e), config.timeouts, limit).await;
    let (left, right): (Vec<SocketAddr>, Vec<SocketAddr>) =
        ((0..n / 2).map(addr).collect(), (n / 2..n).map(addr).collect());
    net.partition(&left, &right);
    // Each side keeps only itself (halves of equal size when n is even).
    let split = Instant::now();
    while split.elapsed() < limit {
        let mut sides_apart = true;
        for (i, m) in members.iter_mut().enumerate() {
            let Some(node) = m.node.as_mut() else { continue };
            let (list, _) = node.members().await;
            let table = PeerTable::build(list, config.timeouts);
            let side = if i < n / 2 { n / 2 } else { n - n / 2 };
            sides_apart &= table.hosts.values().filter(|h| h.is_usable()).count() == side - 1;
        }
        if sides_apart {
            break;
        }
        tokio::time::sleep(STEP).await;
    }
    net.heal();
    until(&mut members, (n - 1, (n - 1) * e), config.timeouts, limit).await
}

/// Runs the scenario; call on a paused current-thread tokio runtime.
pub async fn run(config: SimConfig) -> SimReport {
    let key = Key::from_bytes([0x5a; 32]);
    let net = SimNet::new(key, config.seed, config.loss, config.latency_ms);
    let n = config.hosts;
    let e = config.endpoints_per_host;
    let limit = Duration::from_secs(120);
    let mut members: Vec<Member> = Vec::new();
    for i in 0..n - 1 {
        members.push(Member { node: Some(start(&net, i, &config).await) });
    }
    until(&mut members, (n - 2, (n - 2) * e), config.timeouts, limit).await;

    // A host joins.
    members.push(Member { node: Some(start(&net, n - 1, &config).await) });
    let join = until(&mut members, (n - 1, (n - 1) * e), config.timeouts, limit).await;

    // Steady state: what gossip costs.
    let window = Duration::from_secs(10);
    let sent = |net: &SimNet| -> (u64, u64) {
        (0..n)
            .filter_map(|i| net.stats(addr(i)))
            .map(|s| {
                (
                    s.bytes_out.load(std::sync::atomic::Ordering::Relaxed),
                    s.datagrams_out.load(std::sync::atomic::Ordering::Relaxed),
                )
            })
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    };
    let before = sent(&net);
    let started = Instant::now();
    while started.elapsed() < window {
        converged(&mut members, (n - 1, (n - 1) * e), config.timeouts).await;
        tokio::time::sleep(STEP).await;
    }
    let after = sent(&net);
    let per = (n as f64) * window.as_secs_f64();

    // A host dies without a word.
    let victim = n / 2;
    net.set_down(addr(victim), true);
    if let Some(node) = members[victim].node.take() {
        node.abort();
    }
    let failure = until(&mut members, (n - 2, (n - 2) * e), config.timeouts, limit).await;

    SimReport {
        join,
        failure,
        bytes_per_host_per_sec: (after.0 - before.0) as f64 / per,
        datagrams_per_host_per_sec: (after.1 - before.1) as f64 / per,
    }
}
