//! A simulated cluster: many gossip members in one process over
//! [`SimNet`] (sealed datagrams, seeded loss and latency), on tokio's clock.
//! Run it on a paused current-thread runtime and minutes of gossip take
//! seconds, the same way every time the network's randomness is concerned
//! (chitchat picks its gossip partners with its own unseeded RNG, so timings
//! vary a little between runs).
//!
//! It measures what matters for a cluster: how long until every member
//! knows a host that joins (with all its endpoints), how long until an
//! endpoint connected on one host is in every table, how long until every
//! member has dropped a host that dies, and what gossip costs per host (on
//! the wire, in CPU and in memory). The underlay is modelled per IP packet
//! ([`SimNet`]): an MTU, and loss of each packet.
//!
//! Checks stay cheap at 1,000 hosts: each asks every member about one host,
//! or counts what it holds without decoding (see [`GossipNode::census`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use switchd_config::{MacAddr, Mtu, Name, NetworkConfig, Vni};
use switchd_crypto::Key;
use tokio::time::Instant;

use super::node::{GossipConfig, GossipNode};
use super::state::{self, Published, RemoteEndpoint};
use super::table::Timeouts;
use super::transport::SimNet;
use super::wire::{max_datagram, message_budget};

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
    /// The underlay's MTU, IPv4.
    pub mtu: usize,
    /// Start from a formed cluster (every member handed every other's
    /// state) instead of forming it by gossip: what makes 1,000 hosts fit
    /// the machine's time.
    pub preformed: bool,
    /// Also wait for the joining host to learn every other member's whole
    /// state (bounded by what gossip carries per second: minutes at 1,000
    /// hosts).
    pub full_view: bool,
    /// Every host also publishes one value larger than a datagram (IPAM
    /// claims of 200 addresses, 5 KB before compression).
    pub large_value: bool,
}

impl SimConfig {
    /// 20 endpoints on 4 networks per host, 1-20 ms latency, 250 ms rounds,
    /// the default 8 s failure timeout, a 1500-byte MTU.
    pub fn new(hosts: usize, loss: f64) -> Self {
        SimConfig {
            hosts,
            endpoints_per_host: 20,
            networks: 4,
            seed: 1,
            loss,
            latency_ms: (1, 20),
            interval: Duration::from_millis(250),
            timeouts: Timeouts::new(Duration::from_secs(8)),
            mtu: 1500,
            preformed: false,
            full_view: true,
            large_value: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SimReport {
    /// From every host's start (but the last) until each knows every other
    /// with all its state; for a preformed cluster, until each hears every
    /// other.
    pub formation: Duration,
    /// From the last host's start until every other member knows it with
    /// all its endpoints.
    pub join: Duration,
    /// From the last host's start until it knows every other member with
    /// all its state (limited by what gossip may carry per second), when
    /// measured.
    pub join_full_view: Option<Duration>,
    /// From an endpoint's connection on one host until every member has it.
    pub propagation: Duration,
    /// From a host's death until no member counts it any more; includes
    /// the detection timeout.
    pub failure: Duration,
    /// Sealed gossip bytes and datagrams sent per host per second, in
    /// steady state (a 10 s window after formation).
    pub bytes_per_host_per_sec: f64,
    pub datagrams_per_host_per_sec: f64,
    /// Process CPU time per host per simulated second, steady state.
    pub cpu_per_host: Duration,
    /// Times in the steady window that a member counted a live host as
    /// silent past the failure timeout (false deaths): must be zero.
    pub false_deaths: u64,
    /// The largest datagram any host sent, and the datagrams the underlay
    /// had to fragment (must be zero).
    pub largest_datagram: u64,
    pub fragmented: u64,
    /// Messages the sealed layer cut in more than one datagram, of all sent.
    pub split_messages: (u64, u64),
    /// Members and key-value pairs held across all hosts at the end.
    pub held: (usize, usize),
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 200, (i / 250) as u8, (i % 250 + 1) as u8], 7946))
}

/// The name of simulated host `i`.
pub fn host_name(i: usize) -> Name {
    Name::new(&format!("host-{i:04}")).expect("a valid name")
}

/// What simulated host `i` publishes: `config.endpoints_per_host`
/// endpoints spread over `config.networks` networks.
pub fn host_state(i: usize, config: &SimConfig) -> Published {
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
        ipam: if config.large_value {
            // Claim times that compress poorly, as real ones would.
            let claims = (0..200u32)
                .map(|k| (0x0a64_0000 + k, 1_800_000_000_000 + (u64::from(k) * 0x9e37_79b9 + i as u64) % 999_999_999));
            [(Name::new("net-0").expect("a valid name"), claims.collect())].into()
        } else {
            Default::default()
        },
        services: Vec::new(),
        policies: Vec::new(),
        partial_checksums: true,
    }
}

fn start(net: &SimNet, i: usize, config: &SimConfig) -> impl Future<Output = GossipNode> + use<> {
    let gossip = GossipConfig {
        name: host_name(i),
        listen: addr(i),
        seeds: (0..3.min(config.hosts)).map(addr).collect(),
        interval: config.interval,
        timeouts: config.timeouts,
        max_message_len: message_budget(max_datagram(config.mtu, false)),
    };
    let (net, published) = (net.clone(), host_state(i, config));
    let generation = SIM_GENERATION + i as u64 * 1_234;
    async move { GossipNode::start(&gossip, generation, &net, &published).await.expect("a simulated member starts") }
}

/// Generations are start times in ms, as on real hosts: similar but
/// distinct, which matters to how digests compress.
const SIM_GENERATION: u64 = 1_800_000_000_000;

const STEP: Duration = Duration::from_millis(250);

/// Asks every `STEP` until `done`; returns the time it took.
async fn until<F>(members: &mut [Option<GossipNode>], limit: Duration, what: &str, mut done: F) -> Duration
where
    F: AsyncFnMut(&mut [Option<GossipNode>]) -> bool,
{
    let started = Instant::now();
    while started.elapsed() < limit {
        if done(members).await {
            // Long runs (1,000 hosts) show where they are.
            eprintln!("sim: {what} after {:?} simulated", started.elapsed());
            return started.elapsed();
        }
        tokio::time::sleep(STEP).await;
    }
    panic!("{what}: not within {limit:?}");
}

/// Whether every live member hears `others` other hosts and holds all
/// their state (`keys` key-value pairs each).
async fn everyone_complete(members: &mut [Option<GossipNode>], others: usize, keys: usize, timeouts: Timeouts) -> bool {
    let mut all = true;
    for node in members.iter_mut().flatten() {
        all &= node.census(timeouts.dead_after, keys).await == (others, others);
    }
    all
}

/// Whether every other live member holds host `host` as usable with
/// `endpoints` endpoints (`None`: holds it as gone).
async fn everyone_sees(
    members: &mut [Option<GossipNode>],
    host: usize,
    endpoints: Option<usize>,
    timeouts: Timeouts,
) -> bool {
    let name = host_name(host);
    let mut all = true;
    for (_, node) in members.iter_mut().enumerate().filter(|(i, _)| *i != host) {
        let Some(node) = node else { continue };
        let seen = node
            .member(&name.to_string())
            .await
            .filter(|m| m.since_heard < timeouts.dead_after && !m.published.leaving);
        all &= match (seen, endpoints) {
            (Some(_), None) => false,
            (Some(m), Some(e)) => m.published.endpoints.len() == e,
            (None, None) => true,
            (None, Some(_)) => false,
        };
    }
    all
}

/// Process CPU time (user and system) so far, from /proc/self/stat.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 (counting from 1, the name being
    // the second): 11 and 12 after the name. In ticks of 10 ms.
    let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    let ticks = tick(11) + tick(12);
    Duration::from_millis(ticks * 10)
}

fn sent(net: &SimNet, n: usize) -> (u64, u64) {
    (0..n)
        .filter_map(|i| net.stats(addr(i)))
        .map(|s| (s.bytes_out.load(Relaxed), s.datagrams_out.load(Relaxed)))
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
}

/// The key-value pairs each simulated host publishes.
fn keys_per_host(config: &SimConfig) -> usize {
    state::encode(&host_state(0, config)).len()
}

/// Splits a converged cluster in two halves until each side has declared
/// the other dead, then heals the split. Returns how long both sides took
/// to see each other again, with all state.
pub async fn partition_heals(config: SimConfig) -> Duration {
    let net =
        SimNet::new(Key::from_bytes([0x5a; 32]), config.seed, config.loss, config.latency_ms).with_mtu(config.mtu);
    let n = config.hosts;
    let (keys, timeouts) = (keys_per_host(&config), config.timeouts);
    let limit = Duration::from_secs(120);
    let mut members = Vec::new();
    for i in 0..n {
        members.push(Some(start(&net, i, &config).await));
    }
    until(&mut members, limit, "formation", async |m| everyone_complete(m, n - 1, keys, timeouts).await).await;
    let (left, right): (Vec<SocketAddr>, Vec<SocketAddr>) =
        ((0..n / 2).map(addr).collect(), (n / 2..n).map(addr).collect());
    net.partition(&left, &right);
    // Each side keeps only itself (halves of equal size when n is even).
    until(&mut members, limit, "the split", async |members| {
        let mut apart = true;
        for (i, node) in members.iter_mut().enumerate() {
            let side = if i < n / 2 { n / 2 } else { n - n / 2 };
            apart &= node.as_mut().expect("all alive").census(timeouts.dead_after, 0).await.0 == side - 1;
        }
        apart
    })
    .await;
    net.heal();
    until(&mut members, limit, "healing", async |m| everyone_complete(m, n - 1, keys, timeouts).await).await
}

/// Runs the scenario; call on a paused current-thread tokio runtime.
pub async fn run(config: SimConfig) -> SimReport {
    let key = Key::from_bytes([0x5a; 32]);
    let net = SimNet::new(key, config.seed, config.loss, config.latency_ms).with_mtu(config.mtu);
    let (n, e) = (config.hosts, config.endpoints_per_host);
    let (keys, timeouts) = (keys_per_host(&config), config.timeouts);
    let limit = Duration::from_secs(600);
    let mut members: Vec<Option<GossipNode>> = Vec::new();
    for i in 0..n - 1 {
        members.push(Some(start(&net, i, &config).await));
    }
    if config.preformed {
        for i in 0..n - 1 {
            let state = members[i].as_ref().expect("alive").own_state().await;
            for (_, other) in members.iter().enumerate().filter(|(j, _)| *j != i) {
                other.as_ref().expect("alive").adopt(&state).await;
            }
        }
    }
    let formation =
        until(&mut members, limit, "formation", async |m| everyone_complete(m, n - 2, keys, timeouts).await).await;

    // Steady state: what gossip costs, and that no live host is declared dead.
    let window = Duration::from_secs(10);
    let (before, cpu_before) = (sent(&net, n), process_cpu());
    let mut false_deaths = 0;
    let started = Instant::now();
    while started.elapsed() < window {
        for node in members.iter_mut().flatten() {
            let (alive, _) = node.census(timeouts.dead_after, 0).await;
            false_deaths += (n - 2 - alive.min(n - 2)) as u64;
        }
        tokio::time::sleep(STEP).await;
    }
    let (after, cpu) = (sent(&net, n), process_cpu() - cpu_before);
    let per = (n - 1) as f64 * window.as_secs_f64();

    // An endpoint is connected on host 0.
    let mut more = host_state(0, &config);
    more.endpoints.push(RemoteEndpoint {
        name: Name::new("late-comer").expect("a valid name"),
        mac: MacAddr([2, 1, 0, 0, 0, 1]),
        ip: None,
        ..more.endpoints[0].clone()
    });
    members[0].as_ref().expect("alive").publish(&more).await;
    let propagation =
        until(&mut members, limit, "propagation", async |m| everyone_sees(m, 0, Some(e + 1), timeouts).await).await;

    // A host joins: every other member learns it, and it learns them all.
    members.push(Some(start(&net, n - 1, &config).await));
    let (mut join, mut full_view) = (None, None);
    let t = Instant::now();
    until(&mut members, limit, "join", async |members| {
        if join.is_none() && everyone_sees(members, n - 1, Some(e), timeouts).await {
            join = Some(t.elapsed());
        }
        let newcomer = members[n - 1].as_mut().expect("alive");
        if config.full_view && full_view.is_none() && newcomer.census(timeouts.dead_after, keys).await == (n - 1, n - 1)
        {
            full_view = Some(t.elapsed());
        }
        join.is_some() && (full_view.is_some() || !config.full_view)
    })
    .await;

    // A host dies without a word.
    let victim = n / 2;
    net.set_down(addr(victim), true);
    if let Some(node) = members[victim].take() {
        node.abort();
    }
    let failure = until(&mut members, limit, "failure", async |m| everyone_sees(m, victim, None, timeouts).await).await;

    let mut held = (0, 0);
    for node in members.iter().flatten() {
        let (m, kv) = node.held().await;
        held = (held.0 + m, held.1 + kv);
    }
    let stats: Vec<_> = (0..n).filter_map(|i| net.stats(addr(i))).collect();
    let largest = stats.iter().map(|s| s.largest_datagram_out.load(Relaxed)).max();
    let split = stats.iter().map(|s| s.split_messages.load(Relaxed)).sum();
    let messages = stats.iter().map(|s| s.messages_out.load(Relaxed)).sum();
    SimReport {
        formation,
        join: join.expect("measured"),
        join_full_view: full_view,
        propagation,
        failure,
        bytes_per_host_per_sec: (after.0 - before.0) as f64 / per,
        datagrams_per_host_per_sec: (after.1 - before.1) as f64 / per,
        cpu_per_host: cpu.div_f64(per),
        false_deaths,
        largest_datagram: largest.unwrap_or(0),
        fragmented: net.packets().1,
        split_messages: (split, messages),
        held,
    }
}
