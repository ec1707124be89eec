//! The overlay's per-frame work, without I/O: encapsulation (with the
//! checksum a container left open), decapsulation through the switch
//! decision, the TSO/GRO work on a 64 KiB segment, and the same TSO
//! segment sealed for an encrypted network. Segmenting and GRO each both
//! ways: with complete inner checksums (for any VTEP; GRO verifying each)
//! and with partial ones (for a switchd peer; GRO verifying none), and GRO
//! of a sealed network's segments, which it trusts.

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use etherparse::PacketBuilder;
use switchd::switch::{Action, NoKeys, Plan, Switch, SwitchConfig};
use switchd_config::{MacAddr, Mtu, Vni};
use switchd_crypto::{Backend, Cipher, Key, SessionId, TxSessions};
use switchd_overlay::gro::{Gro, Integrity};
use switchd_overlay::offload::{self, L4Checksum, Room};
use switchd_overlay::sealed;
use switchd_overlay::tunnel::{self, Offload, Wire};
use switchd_wire::checksum;
use switchd_wire::vnet::GsoType;

const SRC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const DST: [u8; 6] = [2, 0, 0, 0, 0, 2];

/// An Ethernet frame of `len` bytes carrying UDP, its checksum left open
/// as a stack with checksum offload leaves it.
fn udp_frame(len: usize) -> Vec<u8> {
    let payload = len.saturating_sub(14 + 20 + 8);
    let mut f = Vec::new();
    PacketBuilder::ethernet2(SRC, DST)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(4000, 5000)
        .write(&mut f, &vec![0x5a; payload])
        .unwrap();
    let partial =
        checksum::fold(checksum::pseudo_v4([10, 0, 0, 1].into(), [10, 0, 0, 2].into(), 17, (payload + 8) as u32));
    f[40..42].copy_from_slice(&partial.to_be_bytes());
    f
}

fn tcp_tso_frame() -> Vec<u8> {
    let mut f = Vec::new();
    PacketBuilder::ethernet2(SRC, DST)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .tcp(4000, 5201, 1, 500)
        .ack(1)
        .write(&mut f, &vec![0x5a; 65000])
        .unwrap();
    f
}

fn encap(c: &mut Criterion) {
    let mut group = c.benchmark_group("encap");
    group.throughput(Throughput::Elements(1));
    let mut out = Vec::with_capacity(70_000);
    for len in [64, 1450, 9000] {
        let frame = udp_frame(len);
        let offload = Offload::Checksum { start: 34, offset: 6 };
        group.bench_function(format!("{len}"), |b| {
            b.iter(|| {
                out.clear();
                tunnel::encapsulate(black_box(&frame), offload, 100, 9000, Wire::Plain, L4Checksum::Complete, &mut out)
                    .unwrap()
            })
        });
    }
    // A frame whose checksum the container left open, for a switchd peer: sent as it is.
    let frame = udp_frame(1450);
    group.bench_function("1450_partial", |b| {
        b.iter(|| {
            out.clear();
            let offload = Offload::Checksum { start: 34, offset: 6 };
            tunnel::encapsulate(black_box(&frame), offload, 100, 9000, Wire::Plain, L4Checksum::Partial, &mut out)
                .unwrap()
        })
    });
    let tso = tcp_tso_frame();
    for (name, l4) in [("tso_64k_to_1450", L4Checksum::Complete), ("tso_64k_to_1450_partial", L4Checksum::Partial)] {
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                let offload = Offload::Segment { gso: GsoType::TcpV4, mss: 1410 };
                tunnel::encapsulate(black_box(&tso), offload, 100, 1450, Wire::Plain, l4, &mut out).unwrap()
            })
        });
    }
    // The same, sealed: what an encrypted network costs on the way out.
    let key = Key::from_bytes([7; 32]);
    for cipher in Cipher::ALL {
        let sender = sealed::sender_id("198.18.0.1".parse().unwrap());
        let mut tx = TxSessions::new(Backend::default(), sender, SessionId(1), 0..16);
        for (suffix, l4) in [("", L4Checksum::Complete), ("_partial", L4Checksum::Partial)] {
            group.bench_function(format!("tso_64k_to_1414_sealed_{cipher}{suffix}"), |b| {
                b.iter(|| {
                    out.clear();
                    let offload = Offload::Segment { gso: GsoType::TcpV4, mss: 1374 };
                    let mut session = tx.get((key.id(), &key), 100, cipher, 0);
                    let wire = Wire::Sealed(&mut session);
                    tunnel::encapsulate(black_box(&tso), offload, 100, 1414, wire, l4, &mut out).unwrap()
                })
            });
        }
    }
    group.finish();
}

fn decap(c: &mut Criterion) {
    let mut group = c.benchmark_group("decap");
    group.throughput(Throughput::Elements(1));
    let now = Instant::now();
    let mut sw = Switch::new(SwitchConfig::default());
    let net = sw.add_network(Vni::new(100).unwrap(), Mtu::new(9000).unwrap(), false).unwrap();
    let port = sw.add_port(net).unwrap();
    let peer = "198.18.0.2".parse().unwrap();
    sw.add_vtep("198.18.0.2:4789".parse().unwrap(), None).unwrap();
    // The destination is a learned local container.
    let mut plan = Plan::default();
    let learn = switchd_wire::vnet::build_plain(MacAddr::BROADCAST, MacAddr(DST), 0x0800, 46);
    sw.handle_frame(now, port, &learn, &mut plan);
    for len in [64, 1450, 9000] {
        let mut datagram = Vec::new();
        tunnel::encapsulate(
            &udp_frame(len),
            Offload::None,
            100,
            9000,
            Wire::Plain,
            L4Checksum::Complete,
            &mut datagram,
        )
        .unwrap();
        group.bench_function(format!("{len}"), |b| {
            b.iter(|| {
                // Plain VXLAN is not written to: the same bytes every time.
                sw.handle_datagram(now, peer, black_box(&mut datagram), &mut NoKeys, &mut plan);
                debug_assert_eq!(plan.action, Action::Deliver(port));
                plan.action
            })
        });
    }
    group.finish();
}

fn gro(c: &mut Criterion) {
    let mut group = c.benchmark_group("gro");
    // Sources are the segments' indexes: what is joined is named, not copied.
    let mut gro: Gro<usize> = Gro::new();
    // Segments with complete checksums (from any VTEP; verified unless
    // sealed), and with partial ones (from a switchd peer: not verifiable).
    let runs = [
        ("join_64k_of_1450", L4Checksum::Complete, Integrity::Verify),
        ("join_64k_of_1450_sealed", L4Checksum::Complete, Integrity::Sealed),
        ("join_64k_of_1450_partial", L4Checksum::Partial, Integrity::Verify),
    ];
    for (name, l4, integrity) in runs {
        let mut segments = Vec::new();
        let segs =
            offload::segment(&tcp_tso_frame(), GsoType::TcpV4, 1410, 1450, Room::NONE, l4, &mut segments).unwrap();
        let frames: Vec<&[u8]> = segments.chunks(segs.stride).collect();
        group.throughput(Throughput::Elements(frames.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                assert!(gro.start(frames[0], integrity, 0));
                for (i, f) in frames.iter().enumerate().skip(1) {
                    gro.append(black_box(f), integrity, i);
                }
                let joined = gro.finish();
                debug_assert_eq!(joined.segments, frames.len());
                joined.head.len() + joined.payloads.len()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, encap, decap, gro);
criterion_main!(benches);
