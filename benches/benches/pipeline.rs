//! The switch pipeline's decision per frame, without I/O: what one frame
//! costs in `Switch::handle_frame` (and, for floods, enumerating targets).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use switchd::switch::frame::build_plain;
use switchd::switch::{Action, Switch, SwitchConfig};
use switchd_config::{MacAddr, Mtu, Vni};

fn mac(n: u32) -> MacAddr {
    let b = n.to_be_bytes();
    MacAddr([0x02, 0x00, b[0], b[1], b[2], b[3]])
}

fn pipeline(c: &mut Criterion) {
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(1));
    let now = Instant::now();

    // Two learned ports: the steady state of a TCP flow.
    {
        let mut sw = Switch::new(SwitchConfig::default());
        let net = sw.add_network(Vni::new(1).unwrap(), Mtu::new(1500).unwrap(), false).unwrap();
        let (p1, p2) = (sw.add_port(net).unwrap(), sw.add_port(net).unwrap());
        sw.handle_frame(now, p2, &build_plain(mac(1), mac(2), 0x0800, 46));
        let frame = build_plain(mac(2), mac(1), 0x0800, 1450);
        sw.handle_frame(now, p1, &frame);
        group.bench_function("learned_unicast", |b| {
            b.iter(|| {
                let action = sw.handle_frame(now, p1, black_box(&frame));
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
            b.iter(|| match sw.handle_frame(now, ports[0], black_box(&frame)) {
                Action::Flood { network, ingress } => sw.flood_targets(network, ingress).count(),
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
            sw.handle_frame(now, ports[(i % 100) as usize], &build_plain(MacAddr::BROADCAST, mac(i + 10), 0x0800, 46));
        }
        let frames: Vec<Vec<u8>> =
            (0..1024u32).map(|i| build_plain(mac(10 + i * 97 % 100_000), mac(1), 0x0800, 46)).collect();
        let src_port = sw.add_port(net).unwrap();
        let mut i = 0;
        group.bench_function("fdb_100k_macs", |b| {
            b.iter_batched(
                || {
                    i = (i + 1) % frames.len();
                    i
                },
                |i| sw.handle_frame(now, src_port, black_box(&frames[i])),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
