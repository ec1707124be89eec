//! The pump alone: a worker's batches over in-memory ports, no threads, no
//! kernel devices. What the switch plans must come out of the right ports,
//! as the right bytes.

use std::sync::Arc;
use std::sync::mpsc::channel;

use etherparse::{Icmpv4Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use switchd_config::{MacAddr, Mtu, Vni};

use super::port::{FaultPort, MemPort};
use super::*;
use crate::services::NetworkServices;
use crate::switch::{EndpointGuard, Gateway};

const A: MacAddr = MacAddr([2, 0x42, 10, 1, 0, 2]);
const B: MacAddr = MacAddr([2, 0x42, 10, 1, 0, 3]);
const C: MacAddr = MacAddr([2, 0x42, 10, 2, 0, 2]);

struct Lab {
    worker: Worker,
    net: NetworkId,
    ports: Vec<(PortId, Arc<MemPort>)>,
}

impl Lab {
    /// A worker with one network (VNI 1, 10.1.0.0/24, gateway 10.1.0.1)
    /// and a port per MAC, each held to its MAC and 10.1.0.x.
    fn new(macs: &[MacAddr]) -> Lab {
        let replicas: Arc<[Replica]> = [Replica::new(Fabric::new(SwitchConfig::default(), Arc::default()))].into();
        let (_commands, rx) = channel();
        let wake = Arc::new(sys::eventfd().unwrap());
        let none = WorkerUnderlay { rx: None, tx: Vec::new(), crypto: None, local: None };
        let tuning = WorkerTuning { busy_poll: Duration::ZERO, io_uring: false, crypto_helpers: 0 };
        let worker = Worker::new(0, replicas, rx, wake, none, tuning, Watch::default()).unwrap();
        let net = worker.fabric().switch.add_network(Vni::new(1).unwrap(), Mtu::new(1500).unwrap(), false).unwrap();
        let mut lab = Lab { worker, net, ports: Vec::new() };
        for mac in macs {
            lab.add_port(net, *mac, Box::new(|mem| Box::new(mem)));
        }
        lab
    }

    fn add_port(&mut self, net: NetworkId, mac: MacAddr, wrap: Box<dyn Fn(Arc<MemPort>) -> Box<dyn Port>>) {
        let mem = Arc::new(MemPort::default());
        let ip = std::net::Ipv4Addr::new(10, mac.0[3], 0, mac.0[5]);
        let mut fabric = self.worker.fabric();
        let id = fabric.switch.add_port(net).unwrap();
        fabric.switch.set_port_guard(id, PortGuard::Endpoint(EndpointGuard::new(mac, true, Some(ip.into()))));
        let io = Arc::new(PortIo::new(wrap(mem.clone())));
        let queues = Arc::new(Queues::new(vec![io.clone()]));
        fabric.ports.insert(id, queues.clone());
        drop(fabric);
        self.worker.ports.insert(token_of(id), Polled { id, io, queue: 0, queues, read_ahead: 2 });
        self.ports.push((id, mem));
    }

    /// Pushes `frames` into port `from` and runs its batch.
    fn run(&mut self, from: usize, frames: &[Vec<u8>]) {
        for f in frames {
            self.ports[from].1.push(f.clone());
        }
        self.worker.service_port(token_of(self.ports[from].0));
    }

    fn sent(&self, port: usize) -> Vec<Vec<u8>> {
        self.ports[port].1.sent()
    }
}

/// An IPv4/UDP frame behind a plain virtio header.
fn udp(dst: MacAddr, src: MacAddr, from: [u8; 4], to: [u8; 4], ttl: u8) -> Vec<u8> {
    let mut out = vec![0u8; VNET_HDR_LEN];
    PacketBuilder::ethernet2(src.0, dst.0).ipv4(from, to, ttl).udp(40000, 9).write(&mut out, b"hello").unwrap();
    out
}

#[test]
fn frames_go_to_the_ports_the_plan_names_as_they_came() {
    let mut lab = Lab::new(&[A, B, MacAddr([2, 0x42, 10, 1, 0, 4])]);
    let broadcast = udp(MacAddr::BROADCAST, A, [10, 1, 0, 2], [10, 1, 0, 255], 64);
    lab.run(0, std::slice::from_ref(&broadcast));
    assert_eq!(lab.sent(1), vec![broadcast.clone()], "flooded to B, virtio header and all");
    assert_eq!(lab.sent(2), vec![broadcast]);
    assert!(lab.sent(0).is_empty(), "never back out of the ingress port");
    // B answers A, whom the switch has learned: A alone gets it.
    let answer = udp(A, B, [10, 1, 0, 3], [10, 1, 0, 2], 64);
    lab.run(1, &[answer.clone(), answer.clone()]);
    assert_eq!(lab.sent(0), vec![answer.clone(), answer]);
    assert!(lab.sent(2).is_empty());
}

/// A live trace sees the frames it asks for, with the plan the switch
/// made for them; a capture of the ports both ways gets them as records.
#[test]
fn a_live_trace_and_a_capture_see_the_batch_as_it_is_decided() {
    let mut lab = Lab::new(&[A, B]);
    let b_port = lab.ports[1].0;
    let filter = live::Filter {
        endpoint: Some((vec![b_port], vec![B])),
        proto: Some(live::Proto::Ip(17)),
        ..Default::default()
    };
    let mut trace = lab.worker.watch.live.start(filter, Some(5)).unwrap();
    let queues = lab.worker.ports.values().map(|p| (p.queues.tap.clone(), format!("{:?}", p.id))).collect();
    let mut capture = lab.worker.watch.captures.start(capture::Source::Network(queues)).unwrap();
    let frame = udp(B, A, [10, 1, 0, 2], [10, 1, 0, 3], 64);
    let spoofed = udp(B, A, [10, 1, 0, 99], [10, 1, 0, 3], 64);
    lab.run(0, &[frame.clone(), spoofed]);
    let seen: Vec<_> = std::iter::from_fn(|| trace.frames.try_recv().ok()).collect();
    assert_eq!(seen.len(), 2, "both are to B's port or its MAC");
    assert_eq!(seen[0].origin, live::Origin::Port(lab.ports[0].0));
    assert!(matches!(seen[0].plan.action, Action::Flood { .. } | Action::Deliver(_)), "{:?}", seen[0].plan);
    assert_eq!(&seen[0].head[..], &frame[VNET_HDR_LEN..]);
    assert_eq!(seen[1].plan.action, Action::Drop(DropReason::SpoofedAddress), "the real decision");
    // In: two frames read at A; out: one written to B (pcapng, two interfaces).
    let records: Vec<_> = std::iter::from_fn(|| capture.records.try_recv().ok()).collect();
    assert_eq!(records.len(), 3, "two read, one written");
    assert!(capture.header.starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]), "several ports: a pcapng");
    drop((trace, capture));
    lab.run(0, &[frame]);
    assert!(lab.worker.watch.live.running().is_none() && lab.worker.watch.captures.underlay.running().is_none());
}

#[test]
fn an_arp_request_for_a_known_address_is_answered_on_the_ingress_port() {
    let mut lab = Lab::new(&[A, B]);
    let net = lab.net;
    lab.worker.fabric().switch.set_neighbors(net, [("10.1.0.3".parse().unwrap(), B)]);
    let mut request = vec![0u8; VNET_HDR_LEN];
    request.extend_from_slice(&[0xff; 6]);
    request.extend_from_slice(&A.0);
    request.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    request.extend_from_slice(&A.0);
    request.extend_from_slice(&[10, 1, 0, 2, 0, 0, 0, 0, 0, 0, 10, 1, 0, 3]);
    request.resize(VNET_HDR_LEN + 60, 0);
    lab.run(0, &[request]);
    assert!(lab.sent(1).is_empty(), "the question is not flooded");
    let replies = lab.sent(0);
    assert_eq!(replies.len(), 1);
    let reply = &replies[0][VNET_HDR_LEN..];
    assert_eq!(&reply[..12], &[A.0, B.0].concat()[..], "to A, from B's MAC");
    assert_eq!(&reply[20..22], &[0, 2], "an ARP reply");
    assert_eq!(&reply[28..32], &[10, 1, 0, 3], "for B's address");
}

#[test]
fn routed_frames_are_rewritten_and_refused_ones_answered_with_an_icmp_error() {
    let mut lab = Lab::new(&[A]);
    let gw = |vni: u32, n: u8| Gateway {
        v4: Some(([10, n, 0, 1].into(), format!("10.{n}.0.0/24").parse().unwrap())),
        mac: Gateway::mac_for(Vni::new(vni).unwrap()),
        dhcp: false,
        v6: None,
    };
    let (front, back) = (lab.net, {
        lab.worker.fabric().switch.add_network(Vni::new(2).unwrap(), Mtu::new(1500).unwrap(), false).unwrap()
    });
    lab.add_port(back, C, Box::new(|mem| Box::new(mem)));
    {
        let mut fabric = lab.worker.fabric();
        let s = &mut fabric.switch;
        s.set_gateway(front, Some(gw(1, 1)));
        s.set_gateway(back, Some(gw(2, 2)));
        s.set_routes(front, vec![back]);
        s.set_routes(back, vec![front]);
        s.set_neighbors(back, [("10.2.0.2".parse().unwrap(), C)]);
        let mut tables = Tables::default();
        tables.networks.insert(
            front,
            NetworkServices {
                name: "front".into(),
                gateway: [10, 1, 0, 1].into(),
                mac: gw(1, 1).mac,
                prefix_len: 24,
                mtu: 1500,
                router: true,
                dns: false,
                dhcp: false,
                routes: Vec::new(),
                directory: Arc::default(),
                ipv6: None,
            },
        );
        fabric.services = Arc::new(tables);
    }
    // C speaks first, so it is known on its port.
    lab.run(1, &[udp(MacAddr::BROADCAST, C, [10, 2, 0, 2], [10, 2, 0, 255], 64)]);
    lab.sent(0);
    lab.run(0, &[udp(gw(1, 1).mac, A, [10, 1, 0, 2], [10, 2, 0, 2], 64)]);
    let routed = lab.sent(1);
    assert_eq!(routed.len(), 1);
    let p = SlicedPacket::from_ethernet(&routed[0][VNET_HDR_LEN..]).unwrap();
    let Some(NetSlice::Ipv4(ip)) = &p.net else { panic!("{routed:?}") };
    assert_eq!(ip.header().ttl(), 63, "TTL one less");
    assert_eq!(&routed[0][VNET_HDR_LEN..VNET_HDR_LEN + 12], &[C.0, gw(2, 2).mac.0].concat()[..], "new MACs");

    // TTL 1: refused, and A hears why.
    lab.run(0, &[udp(gw(1, 1).mac, A, [10, 1, 0, 2], [10, 2, 0, 2], 1)]);
    assert!(lab.sent(1).is_empty());
    let errors = lab.sent(0);
    assert_eq!(errors.len(), 1);
    let p = SlicedPacket::from_ethernet(&errors[0][VNET_HDR_LEN..]).unwrap();
    let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else { panic!() };
    assert!(matches!(icmp.icmp_type(), Icmpv4Type::TimeExceeded(_)));
}

#[test]
fn a_full_queue_is_counted_apart_from_errors() {
    let mut lab = Lab::new(&[A]);
    let net = lab.net;
    lab.add_port(net, B, Box::new(|mem| Box::new(FaultPort::new(mem, 2))));
    let to_b = udp(B, A, [10, 1, 0, 2], [10, 1, 0, 3], 64);
    lab.run(1, &[udp(MacAddr::BROADCAST, B, [10, 1, 0, 3], [10, 1, 0, 255], 64)]);
    lab.run(0, &[to_b.clone(), to_b.clone(), to_b.clone(), to_b]);
    assert_eq!(lab.sent(1).len(), 2, "every second write lost");
    let stats = lab.worker.fabric().ports[lab.ports[1].0].stats();
    assert_eq!((stats.frames, stats.queue_full, stats.errors), (2, 2, 0));
}

#[test]
fn a_frame_the_switch_drops_goes_nowhere() {
    let mut lab = Lab::new(&[A, B]);
    // A pretends to be B: the guard refuses it.
    lab.run(0, &[udp(MacAddr::BROADCAST, B, [10, 1, 0, 3], [10, 1, 0, 255], 64)]);
    assert!(lab.sent(0).is_empty() && lab.sent(1).is_empty());
    let drops =
        lab.worker.fabric().switch.port_counters(lab.ports[0].0).unwrap().drops[DropReason::SpoofedMac as usize];
    assert_eq!(drops, 1);
}

/// Frames into a multi-queue TAP go in through the queue their flow was
/// read from, whichever worker writes them; frames of flows not seen yet
/// through the writer's own queue.
#[test]
fn answers_go_in_through_the_queue_their_flow_came_out_of() {
    let mems: Vec<Arc<MemPort>> = (0..2).map(|_| Arc::new(MemPort::default())).collect();
    let ios: Vec<Arc<PortIo>> =
        mems.iter().map(|m| Arc::new(PortIo::new(Box::new(m.clone()) as Box<dyn Port>))).collect();
    let queues = Arc::new(Queues::new(ios));
    let out = udp(B, A, [10, 1, 0, 2], [10, 1, 0, 3], 64);
    let mut back = vec![0u8; VNET_HDR_LEN];
    PacketBuilder::ethernet2(B.0, A.0)
        .ipv4([10, 1, 0, 3], [10, 1, 0, 2], 64)
        .udp(9, 40000)
        .write(&mut back, b"hi")
        .unwrap();
    let other = udp(A, B, [10, 1, 0, 3], [10, 1, 0, 9], 64);
    queues.read(1, &out[VNET_HDR_LEN..]);
    let mut into = IntoPorts::new(0, None, false, Vec::new());
    into.frame(queues.clone(), &back);
    into.frame(queues.clone(), &other);
    into.finish();
    assert_eq!(mems[1].sent(), vec![back.clone()], "the answer, by worker 0, through queue 1");
    assert_eq!(mems[0].sent(), vec![other], "an unseen flow through worker 0's own queue");
    queues.read(0, &out[VNET_HDR_LEN..]);
    let mut into = IntoPorts::new(1, None, false, Vec::new());
    into.decapsulated(queues.clone(), &back[VNET_HDR_LEN..]);
    into.finish();
    assert_eq!(mems[0].sent().len(), 1, "the flow moved to queue 0, its answers too");
    assert!(mems[1].sent().is_empty());
}

/// From the underlay, a frame whose checksum its sender left partial goes
/// up behind `NEEDS_CSUM` (the container's stack finishes it) and is
/// counted; one with a complete checksum goes up plain, as it came.
#[test]
fn a_frame_with_a_deferred_checksum_is_written_for_the_port_to_finish() {
    let mem = Arc::new(MemPort::default());
    let port = Arc::new(Queues::new(vec![Arc::new(PortIo::new(Box::new(mem.clone())))]));
    let complete = udp(B, A, [10, 1, 0, 2], [10, 1, 0, 3], 64)[VNET_HDR_LEN..].to_vec();
    let mut partial = complete.clone();
    let pseudo = switchd_wire::checksum::pseudo_v4([10, 1, 0, 2].into(), [10, 1, 0, 3].into(), 17, 13);
    partial[40..42].copy_from_slice(&switchd_wire::checksum::fold(pseudo).to_be_bytes());
    let mut into = IntoPorts::new(0, None, false, Vec::new());
    into.decapsulated(port.clone(), &complete);
    into.decapsulated(port.clone(), &partial);
    into.finish();
    let sent = mem.sent();
    assert_eq!(sent[0], [&[0u8; VNET_HDR_LEN][..], &complete].concat(), "plain, as it came");
    assert_eq!(&sent[1][..VNET_HDR_LEN], &[0x01, 0, 0, 0, 0, 0, 34, 0, 6, 0], "NEEDS_CSUM at 34 + 6");
    assert_eq!(&sent[1][VNET_HDR_LEN..], &partial[..]);
    assert_eq!(port.stats().deferred_checksums, 1);
    assert_eq!(port.stats().frames, 2);
}

/// Through the ring: a batch's frames into a port, given in several forms,
/// arrive in order, each counted once, a large one written at once (after
/// what was queued) among them; a lone frame does not use the ring and
/// arrives all the same.
#[test]
fn frames_into_a_port_through_the_ring_arrive_in_order_and_are_counted() {
    let (ours, theirs) = std::os::unix::net::UnixDatagram::pair().unwrap();
    ours.set_nonblocking(true).unwrap();
    theirs.set_nonblocking(true).unwrap();
    let ours = std::os::fd::OwnedFd::from(ours);
    let port = Arc::new(Queues::new(vec![Arc::new(PortIo::new(Box::new(FdPort(ours))))]));
    let mut ring = crate::io::uring::Ring::new().expect("io_uring (this machine has it)");
    let frame = udp(B, A, [10, 1, 0, 2], [10, 1, 0, 3], 64);
    let eth = frame[VNET_HDR_LEN..].to_vec();
    let mut large = vec![0u8; VNET_HDR_LEN];
    PacketBuilder::ethernet2(A.0, B.0)
        .ipv4([10, 1, 0, 3], [10, 1, 0, 2], 64)
        .udp(9, 40000)
        .write(&mut large, &[1; 9000])
        .unwrap();
    let mut into = IntoPorts::new(0, Some(&mut ring), true, Vec::new());
    into.frame(port.clone(), &frame);
    into.frame(port.clone(), &large);
    into.decapsulated(port.clone(), &eth);
    let queued = into.finish();
    assert!(queued.is_empty() && queued.capacity() >= 2, "the list comes back empty, to be used again");
    let mut into = IntoPorts::new(0, Some(&mut ring), false, queued);
    into.frame(port.clone(), &frame);
    into.finish();
    let mut got = Vec::new();
    let mut buf = [0u8; 16 << 10];
    while let Ok(n) = crate::io::sys::read(theirs.as_raw_fd(), &mut buf) {
        got.push(buf[..n].to_vec());
    }
    let expected = [&frame, &large, &frame, &frame];
    let lens = |v: &[&Vec<u8>]| v.iter().map(|f| f.len()).collect::<Vec<_>>();
    assert_eq!(lens(&got.iter().collect::<Vec<_>>()), lens(&expected), "four frames, in order");
    for (i, (got, expected)) in got.iter().zip(expected).enumerate() {
        assert!(got == expected, "frame {i} differs (the decapsulated one gets a plain header)");
    }
    let stats = port.stats();
    assert_eq!((stats.frames, stats.bytes), (4, 3 * eth.len() as u64 + (large.len() - VNET_HDR_LEN) as u64));
}
