//! A host that carries 10,000 remote endpoints: 500 simulated hosts of
//! 20 endpoints each, on 4 networks (`gossip::sim::host_state`). What one
//! change from gossip costs this host, step by step as the daemon takes
//! it (decoding members, building the peer table, applying it, keeping
//! it on disk), and what `switchctl fdb` and `network inspect` cost at
//! that size. The forwarding decision at that size is `pipeline`'s
//! `gossip_10k_remote`.

use std::hint::black_box;
use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use switchd::control::api::{Page, Reply, Request};
use switchd::daemon::attach::{AttachError, Attachment};
use switchd::daemon::state::{Device, EndpointRecord};
use switchd::daemon::system::GatewayParts;
use switchd::daemon::{Daemon, System};
use switchd::dataplane::Port;
use switchd::io::gateway::{StackAddresses, TablesSource};
use switchd::io::netns::{NetnsError, NetnsId};
use switchd::io::nftables::Dnat;
use switchd::switch::NetworkId;
use switchd_config::{Config, IfName, MacAddr};
use switchd_overlay::gossip::sim::{SimConfig, host_name, host_state};
use switchd_overlay::gossip::state;
use switchd_overlay::gossip::table::{Member, PeerTable, Timeouts};

const HOSTS: usize = 500;

/// A host with nothing on it: the benchmark attaches no container, and a
/// gateway's kernel stack (DNS over TCP) is refused, as the daemon allows.
#[derive(Debug)]
struct NoSystem;

fn refused() -> io::Error {
    io::Error::other("no system in this benchmark")
}

impl System for NoSystem {
    fn identify_netns(&self, netns: &str) -> Result<NetnsId, NetnsError> {
        Err(NetnsError::NotFound(netns.to_owned()))
    }
    fn prepare(&self, _: &mut EndpointRecord) -> Result<Option<Device>, AttachError> {
        Err(AttachError::Setup { what: "a benchmark".into(), source: refused() })
    }
    fn open(&self, _: &mut EndpointRecord, _: Attachment, _: usize) -> Result<Vec<Box<dyn Port>>, AttachError> {
        Err(AttachError::Setup { what: "a benchmark".into(), source: refused() })
    }
    fn delete(&self, _: &Device) -> Result<(), AttachError> {
        Ok(())
    }
    fn pick_ifname(&self, _: &EndpointRecord) -> Result<IfName, AttachError> {
        Err(AttachError::Setup { what: "a benchmark".into(), source: refused() })
    }
    fn fresh_host_ifname(&self) -> IfName {
        IfName::new("none0").expect("a valid name")
    }
    fn find_by_mac(&self, _: &str, _: MacAddr) -> Option<IfName> {
        None
    }
    fn host_interface_exists(&self, _: &IfName) -> bool {
        false
    }
    fn host_tap(
        &self,
        _: &IfName,
        _: StackAddresses,
        _: MacAddr,
        _: u32,
        _: bool,
        _: usize,
    ) -> io::Result<Vec<Box<dyn Port>>> {
        Err(refused())
    }
    fn gateway_stack(
        &self,
        _: NetworkId,
        _: StackAddresses,
        _: MacAddr,
        _: u32,
        _: TablesSource,
        _: &tokio::runtime::Handle,
    ) -> io::Result<GatewayParts> {
        Err(refused())
    }
    fn sync_routes(&self, _: &str, _: &IfName, _: IpAddr, _: &[(IpAddr, u8)]) -> Result<(), String> {
        Ok(())
    }
    fn resolv_conf_path(&self, _: &str) -> Option<PathBuf> {
        None
    }
    fn set_mesh(&self, _: &[Dnat]) -> Result<(), String> {
        Ok(())
    }
}

fn members() -> Vec<Member> {
    let sim = SimConfig::new(HOSTS, 0.0);
    (0..HOSTS)
        .map(|i| Member {
            name: host_name(i),
            generation: 1,
            published: Arc::new(host_state(i, &sim)),
            since_heard: Duration::ZERO,
        })
        .collect()
}

fn cluster(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let _entered = runtime.enter();
    let dir = std::env::temp_dir().join(format!("switchd-bench-cluster-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = format!("[host]\nname = \"bench\"\nstate_dir = \"{0}\"\ncontrol_socket = \"{0}/sock\"\n", dir.display());
    let config = Config::parse(&text, &dir.join("host.toml")).expect("a valid host.toml");
    let mut daemon = Daemon::start_with(config, Arc::new(NoSystem)).expect("the daemon starts");
    let timeouts = Timeouts::new(Duration::from_secs(8));
    let mut members = members();
    daemon.update_cluster(PeerTable::build(members.clone(), timeouts), 0);
    let fdb = daemon.query(&Request::Fdb { network: Some("net-0".into()), page: Page::default() }).expect("a query");
    let Reply::Result(rows) = &fdb else { panic!("fdb refused: {fdb:?}") };
    let rows = rows.as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), HOSTS * 20 / 4, "net-0's gossip entries: {fdb:?}");

    let mut group = c.benchmark_group("cluster_10k_endpoints");
    group.sample_size(20);
    let encoded: Vec<Vec<(String, String)>> = members.iter().map(|m| state::encode(&m.published)).collect();
    group.bench_function("decode_every_member", |b| {
        b.iter(|| {
            encoded
                .iter()
                .map(|kvs| state::decode(kvs.iter().map(|(k, v)| (k.as_str(), v.as_str()))).0.is_some() as usize)
                .sum::<usize>()
        })
    });
    group.bench_function("peer_table_build", |b| {
        b.iter_batched(|| members.clone(), |m| PeerTable::build(m, timeouts), BatchSize::LargeInput)
    });
    // One container on one host moves to another MAC and back: the table
    // as gossip hands it over, then the daemon taking it.
    let mut flip = 0u8;
    group.bench_function("daemon_apply_one_change", |b| {
        b.iter_batched(
            || {
                flip ^= 1;
                Arc::make_mut(&mut members[7].published).endpoints[0].mac.0[0] = 0x02 | (flip << 2);
                PeerTable::build(members.clone(), timeouts)
            },
            |table| daemon.update_cluster(table, 0),
            BatchSize::LargeInput,
        )
    });
    group.bench_function("daemon_keep_members", |b| b.iter(|| daemon.keep_members(black_box(&members))));
    let fdb = Request::Fdb { network: Some("net-0".into()), page: Page::default() };
    group.bench_function("fdb_query", |b| b.iter(|| daemon.query(black_box(&fdb))));
    let inspect = Request::NetworkInspect { name: "net-0".into(), page: Page::default() };
    group.bench_function("network_inspect_query", |b| b.iter(|| daemon.query(black_box(&inspect))));
    // A page of 100 from the middle, as `--limit 100 --after KEY` asks it.
    let middle = rows.get(1000).map(|r| format!("net-0/{}", r["mac"].as_str().unwrap()));
    let fdb_page = Request::Fdb { network: None, page: Page { after: middle, limit: Some(100) } };
    group.bench_function("fdb_page_100", |b| b.iter(|| daemon.query(black_box(&fdb_page))));
    let Some(Reply::Result(detail)) = daemon.query(&inspect) else { panic!("inspect refused") };
    let middle = &detail["endpoints"][1000];
    let after = format!("{}@{}", middle["name"].as_str().unwrap(), middle["host"].as_str().unwrap());
    let inspect_page =
        Request::NetworkInspect { name: "net-0".into(), page: Page { after: Some(after), limit: Some(100) } };
    group.bench_function("network_inspect_page_100", |b| b.iter(|| daemon.query(black_box(&inspect_page))));
    group.finish();
    daemon.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, cluster);
criterion_main!(benches);
