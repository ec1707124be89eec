//! The switch pipeline's decision per frame, without I/O: what one frame
//! costs in `Switch::handle_frame`, its plan complete (for floods, every
//! target listed).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use switchd::switch::{Action, EndpointGuard, Gateway, Next, Plan, PortGuard, Switch, SwitchConfig, l3};
use switchd_config::{MacAddr, Mtu, Vni};
use switchd_wire::vnet::build_plain;

/// The switch's decision for one frame, in a plan reused across calls.
fn decide(sw: &mut Switch, plan: &mut Plan, now: Instant, port: switchd::switch::PortId, frame: &[u8]) -> Action {
    sw.handle_frame(now, port, frame, plan);
    plan.action
}

fn mac(n: u32) -> MacAddr {
    let b = n.to_be_bytes();
    MacAddr([0x02, 0x00, b[0], b[1], b[2], b[3]])
}

/// A network 10.1.0.0/24 with a gateway (MAC 99) and two ports, the
/// first held to MAC 1 and 10.1.0.2 by the address guard.
fn guarded() -> (Switch, switchd::switch::NetworkId, switchd::switch::PortId, switchd::switch::PortId) {
    let mut sw = Switch::new(SwitchConfig::default());
    let net = sw.add_network(Vni::new(1).unwrap(), Mtu::new(1500).unwrap(), false).unwrap();
    let gateway = Gateway {
        v4: Some(([10, 1, 0, 1].into(), "10.1.0.0/24".parse().unwrap())),
        mac: mac(99),
        dhcp: true,
        v6: None,
    };
    sw.set_gateway(net, Some(gateway));
    let (p1, p2) = (sw.add_port(net).unwrap(), sw.add_port(net).unwrap());
    sw.set_port_guard(p1, PortGuard::Endpoint(EndpointGuard::new(mac(1), true, Some([10, 1, 0, 2].into()))));
    (sw, net, p1, p2)
}

/// One decision per frame of `frames` in turn, from `port`: lookups spread
/// all over a large table.
fn lookups(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    sw: &mut Switch,
    plan: &mut Plan,
    now: Instant,
    port: switchd::switch::PortId,
    frames: &[Vec<u8>],
) {
    let mut i = 0;
    group.bench_function(name, |b| {
        b.iter_batched(
            || {
                i = (i + 1) % frames.len();
                i
            },
            |i| decide(sw, plan, now, port, black_box(&frames[i])),
            BatchSize::SmallInput,
        )
    });
}

fn pipeline(c: &mut Criterion) {
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(1));
    let now = Instant::now();
    let mut plan = Plan::default();

    // Two learned ports: the steady state of a TCP flow.
    {
        let mut sw = Switch::new(SwitchConfig::default());
        let net = sw.add_network(Vni::new(1).unwrap(), Mtu::new(1500).unwrap(), false).unwrap();
        let (p1, p2) = (sw.add_port(net).unwrap(), sw.add_port(net).unwrap());
        decide(&mut sw, &mut plan, now, p2, &build_plain(mac(1), mac(2), 0x0800, 46));
        let frame = build_plain(mac(2), mac(1), 0x0800, 1450);
        decide(&mut sw, &mut plan, now, p1, &frame);
        group.bench_function("learned_unicast", |b| {
            b.iter(|| {
                let action = decide(&mut sw, &mut plan, now, p1, black_box(&frame));
                debug_assert_eq!(action, Action::Deliver(p2));
                action
            })
        });
    }

    // The same on a network with a gateway, from a port held to its
    // address: what the address guard costs.
    {
        let (mut sw, _, p1, p2) = guarded();
        decide(&mut sw, &mut plan, now, p2, &build_plain(mac(1), mac(2), 0x0800, 46));
        let mut frame = vec![0u8; 10];
        etherparse::PacketBuilder::ethernet2(mac(1).0, mac(2).0)
            .ipv4([10, 1, 0, 2], [10, 1, 0, 3], 64)
            .tcp(40000, 5201, 1, 65535)
            .write(&mut frame, &[0; 1400])
            .unwrap();
        decide(&mut sw, &mut plan, now, p1, &frame);
        group.bench_function("learned_unicast_guarded", |b| {
            b.iter(|| {
                let action = decide(&mut sw, &mut plan, now, p1, black_box(&frame));
                debug_assert_eq!(action, Action::Deliver(p2));
                action
            })
        });
    }

    // A TCP flow through a service VIP (three backends), the flow known:
    // there (client to VIP, balanced and to be rewritten) and back (the
    // backend's reply, turned back into the VIP's). The same guarded
    // network as above, so the cost over `learned_unicast_guarded` is the
    // balancer's.
    {
        use switchd::switch::balance::{Backend, Service};
        let (mut sw, net, p1, p2) = guarded();
        let backends = (0..3).map(|i| Backend::new([10, 1, 0, 10 + i].into(), mac(10 + u32::from(i)))).collect();
        sw.set_services(net, vec![Service::new([10, 1, 0, 200].into(), vec![], backends)]);
        let tcp = |dst_mac: MacAddr, src_mac: MacAddr, src: [u8; 4], dst: [u8; 4], ports: (u16, u16), len: usize| {
            let mut frame = vec![0u8; 10];
            etherparse::PacketBuilder::ethernet2(src_mac.0, dst_mac.0)
                .ipv4(src, dst, 64)
                .tcp(ports.0, ports.1, 1, 65535)
                .write(&mut frame, &vec![0; len])
                .unwrap();
            frame
        };
        let there = tcp(mac(99), mac(1), [10, 1, 0, 2], [10, 1, 0, 200], (40000, 5201), 1400);
        let Action::Nat { rewrite, .. } = decide(&mut sw, &mut plan, now, p1, &there) else { panic!("not balanced") };
        let switchd::switch::balance::NatAddr::Dst(backend) = rewrite.addr else { panic!() };
        let backend_mac = rewrite.dst_mac;
        // The backend lives on p2.
        decide(&mut sw, &mut plan, now, p2, &build_plain(MacAddr::BROADCAST, backend_mac, 0x0800, 46));
        let std::net::IpAddr::V4(backend) = backend else { panic!("an IPv4 backend") };
        let back = tcp(mac(1), backend_mac, backend.octets(), [10, 1, 0, 2], (5201, 40000), 64);
        group.bench_function("vip_flow_there", |b| {
            b.iter(|| {
                let action = decide(&mut sw, &mut plan, now, p1, black_box(&there));
                debug_assert!(matches!(action, Action::Nat { .. }));
                action
            })
        });
        group.bench_function("vip_flow_back", |b| {
            b.iter(|| {
                let action = decide(&mut sw, &mut plan, now, p2, black_box(&back));
                debug_assert!(matches!(action, Action::Nat { .. }));
                action
            })
        });
    }

    // The guarded unicast above, its destination isolated by a policy of
    // 1,000 rules (the one that admits it last): once the flow's verdict
    // is cached, what policy adds to the decision.
    {
        use switchd::switch::policy::{Rule, Sources};
        let (mut sw, _, p1, p2) = guarded();
        let rules: Vec<Rule> = (0..1000u32)
            .map(|i| {
                let src = if i == 999 { [10, 1, 0, 2].into() } else { std::net::Ipv4Addr::from(0x0a64_0000 + i) };
                Rule { from: Sources { addresses: [src].into(), ..Sources::default() }, ports: vec![] }
            })
            .collect();
        sw.set_policy(rules, [([10, 1, 0, 3].into(), (0..1000).collect())].into());
        decide(&mut sw, &mut plan, now, p2, &build_plain(mac(1), mac(2), 0x0800, 46));
        let mut frame = vec![0u8; 10];
        etherparse::PacketBuilder::ethernet2(mac(1).0, mac(2).0)
            .ipv4([10, 1, 0, 2], [10, 1, 0, 3], 64)
            .tcp(40000, 5201, 1, 65535)
            .write(&mut frame, &[0; 1400])
            .unwrap();
        assert_eq!(decide(&mut sw, &mut plan, now, p1, &frame), Action::Deliver(p2), "the last rule admits it");
        group.bench_function("policy_1000_rules_cached", |b| {
            b.iter(|| {
                let action = decide(&mut sw, &mut plan, now, p1, black_box(&frame));
                debug_assert_eq!(action, Action::Deliver(p2));
                action
            })
        });
    }

    // A broadcast on a network of 8 ports: decision plus target list.
    {
        let mut sw = Switch::new(SwitchConfig::default());
        let net = sw.add_network(Vni::new(1).unwrap(), Mtu::new(1500).unwrap(), false).unwrap();
        let ports: Vec<_> = (0..8).map(|_| sw.add_port(net).unwrap()).collect();
        let frame = build_plain(MacAddr::BROADCAST, mac(1), 0x0806, 46);
        group.bench_function("flood_8_ports", |b| {
            b.iter(|| match decide(&mut sw, &mut plan, now, ports[0], black_box(&frame)) {
                Action::Flood { .. } => plan.targets.len(),
                _ => unreachable!(),
            })
        });
    }

    // 100k MACs learned across 100 ports; look up destinations all over the table.
    {
        let mut sw = Switch::new(SwitchConfig::new(Duration::from_secs(300), 100_000));
        let net = sw.add_network(Vni::new(1).unwrap(), Mtu::new(1500).unwrap(), false).unwrap();
        let ports: Vec<_> = (0..100).map(|_| sw.add_port(net).unwrap()).collect();
        for i in 0..100_000u32 {
            decide(
                &mut sw,
                &mut plan,
                now,
                ports[(i % 100) as usize],
                &build_plain(MacAddr::BROADCAST, mac(i + 10), 0x0800, 46),
            );
        }
        let frames: Vec<Vec<u8>> =
            (0..1024u32).map(|i| build_plain(mac(10 + i * 97 % 100_000), mac(1), 0x0800, 46)).collect();
        let src_port = sw.add_port(net).unwrap();
        lookups(&mut group, "fdb_100k_macs", &mut sw, &mut plan, now, src_port, &frames);
    }
    // A host carrying 10,000 remote endpoints (500 hosts x 20, by gossip):
    // frames from a local container to them, all over the table.
    {
        let mut sw = Switch::new(SwitchConfig::default());
        let net = sw.add_network(Vni::new(1).unwrap(), Mtu::new(1500).unwrap(), false).unwrap();
        let vteps: Vec<_> = (0..500u32)
            .map(|h| {
                let addr = std::net::SocketAddr::from(([198, 18, (h / 250) as u8, (h % 250 + 1) as u8], 4789));
                sw.add_vtep(addr, None).unwrap()
            })
            .collect();
        let remote: Vec<(MacAddr, _)> = (0..10_000u32).map(|i| (mac(i + 10), vteps[(i / 20) as usize])).collect();
        sw.set_gossip_macs(net, &remote, now);
        let frames: Vec<Vec<u8>> =
            (0..1024u32).map(|i| build_plain(mac(10 + i * 97 % 10_000), mac(1), 0x0800, 46)).collect();
        let src_port = sw.add_port(net).unwrap();
        lookups(&mut group, "gossip_10k_remote", &mut sw, &mut plan, now, src_port, &frames);
    }
    // A routed frame: the decision (gateway, route, neighbour, FDB of the
    // other network) and the rewrite (MACs, TTL, checksum).
    {
        let mut sw = Switch::new(SwitchConfig::default());
        let mut nets = Vec::new();
        for vni in [1u8, 2] {
            let net = sw.add_network(Vni::new(u32::from(vni)).unwrap(), Mtu::new(1500).unwrap(), false).unwrap();
            let gateway = Gateway {
                v4: Some(([10, vni, 0, 1].into(), format!("10.{vni}.0.0/24").parse().unwrap())),
                mac: Gateway::mac_for(Vni::new(u32::from(vni)).unwrap()),
                dhcp: true,
                v6: None,
            };
            sw.set_gateway(net, Some(gateway));
            nets.push(net);
        }
        sw.set_routes(nets[0], vec![nets[1]]);
        let (p1, p2) = (sw.add_port(nets[0]).unwrap(), sw.add_port(nets[1]).unwrap());
        sw.set_neighbors(nets[1], [("10.2.0.2".parse().unwrap(), mac(2))]);
        let mut learn = vec![0u8; 10];
        etherparse::PacketBuilder::ethernet2(mac(2).0, MacAddr::BROADCAST.0)
            .ipv4([10, 2, 0, 2], [10, 2, 0, 255], 64)
            .udp(9, 9)
            .write(&mut learn, &[0; 18])
            .unwrap();
        decide(&mut sw, &mut plan, now, p2, &learn);
        let mut frame = vec![0u8; 10];
        etherparse::PacketBuilder::ethernet2(mac(1).0, Gateway::mac_for(Vni::new(1).unwrap()).0)
            .ipv4([10, 1, 0, 2], [10, 2, 0, 2], 64)
            .tcp(40000, 5201, 1, 65535)
            .write(&mut frame, &[0; 1400])
            .unwrap();
        group.bench_function("routed_unicast", |b| {
            b.iter_batched_ref(
                || frame.clone(),
                |copy| {
                    let action = decide(&mut sw, &mut plan, now, p1, black_box(copy));
                    let Action::Route { src, dst, next: Next::Port(_), .. } = action else {
                        unreachable!("{action:?}")
                    };
                    l3::forward(&mut copy[10..], src, dst);
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// The decision path on 1, 2 and 4 threads at once, as the data plane runs
/// it: each worker decides with its own replica of the tables, behind a
/// lock only it takes (once per batch of 32 frames), so workers share
/// nothing on the path of a frame. Throughput is decisions per second over
/// all threads: it should grow with the threads up to the cores.
fn parallel(c: &mut Criterion) {
    const BATCH: u64 = 32;
    let mut group = c.benchmark_group("parallel");
    let now = Instant::now();
    for threads in [1usize, 2, 4] {
        let replicas: Vec<_> = (0..threads)
            .map(|_| {
                let mut sw = Switch::new(SwitchConfig::default());
                sw.set_replicated(threads > 1);
                let net = sw.add_network(Vni::new(1).unwrap(), Mtu::new(1500).unwrap(), false).unwrap();
                let (p1, p2) = (sw.add_port(net).unwrap(), sw.add_port(net).unwrap());
                let mut plan = Plan::default();
                decide(&mut sw, &mut plan, now, p2, &build_plain(mac(1), mac(2), 0x0800, 46));
                decide(&mut sw, &mut plan, now, p1, &build_plain(mac(2), mac(1), 0x0800, 46));
                (std::sync::Mutex::new(sw), p1, p2)
            })
            .collect();
        let frame = build_plain(mac(2), mac(1), 0x0800, 1450);
        group.throughput(Throughput::Elements(threads as u64));
        group.bench_function(format!("learned_unicast_{threads}_threads"), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                std::thread::scope(|scope| {
                    for (replica, p1, p2) in &replicas {
                        let frame = &frame;
                        scope.spawn(move || {
                            let mut plan = Plan::default();
                            let mut done = 0;
                            while done < iters {
                                let mut sw = replica.lock().unwrap();
                                for _ in 0..BATCH.min(iters - done) {
                                    let action = decide(&mut sw, &mut plan, now, *p1, black_box(frame));
                                    debug_assert_eq!(action, Action::Deliver(*p2));
                                }
                                done += BATCH.min(iters - done);
                            }
                        });
                    }
                });
                start.elapsed()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, pipeline, parallel);
criterion_main!(benches);
