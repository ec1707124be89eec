//! Prometheus metrics: `GET /metrics` in the text exposition format
//! (version 0.0.4, written by the `prometheus` crate), and the probes
//! `GET /healthz` and `GET /readyz`, on `[metrics] listen` (a TCP address
//! or a Unix socket). Off unless configured.
//!
//! Nothing is counted for the metrics: a scrape takes the same snapshot
//! `switchctl stats` does (the data plane's per-worker counters summed,
//! the control plane's tables read) and turns it into samples, so the
//! data path pays nothing whether or not anyone scrapes. Label sets stay
//! bounded: per port (network, endpoint, port), network, VTEP (address,
//! host), worker, and a drop reason from a fixed list; never per MAC or
//! per flow.
//!
//! The server is small and hard to hold up: at most [`MAX_CONNECTIONS`]
//! connections ([`MAX_PER_SOURCE`] from one address), a request must
//! arrive whole within [`REQUEST_TIMEOUT`] and be at most [`MAX_REQUEST`]
//! bytes, every answer closes the connection, and a client that does not
//! read its answer is dropped after the same timeout.

use std::io;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use prometheus::{CounterVec, Encoder, GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};
use switchd_config::MetricsListen;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};

use crate::conns::{AcceptErrors, Limits, Source, Table};
use crate::control::api::{PeerInfo, Stats};
use crate::daemon::{self, Shared};

/// Connections held at once, and from one address.
pub const MAX_CONNECTIONS: usize = 64;
pub const MAX_PER_SOURCE: usize = 8;
/// A request's head; scrapes and probes have no body.
pub const MAX_REQUEST: usize = 8 * 1024;
/// How long a request may take to arrive, and its answer to be taken.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything one scrape reports, taken from the daemon at once.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub host: String,
    pub version: String,
    pub uptime: Duration,
    /// How many times switchd started on this host (state directory).
    pub starts: u64,
    pub stats: Stats,
    pub peers: Vec<PeerInfo>,
    pub ipam: Vec<IpamUse>,
}

/// One network's addresses, cluster-wide as this host sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpamUse {
    pub network: String,
    pub used: u64,
    pub free: u64,
}

/// A registry being filled, with one call per family.
struct Families(Registry);

impl Families {
    fn add<M: prometheus::core::Collector + Clone + 'static>(&self, family: prometheus::Result<M>) -> M {
        let family = family.expect("a valid metric name");
        self.0.register(Box::new(family.clone())).expect("registered once");
        family
    }

    fn counter(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.add(IntCounterVec::new(Opts::new(name, help), labels))
    }

    fn seconds(&self, name: &str, help: &str, labels: &[&str]) -> CounterVec {
        self.add(CounterVec::new(Opts::new(name, help), labels))
    }

    fn gauge(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.add(IntGaugeVec::new(Opts::new(name, help), labels))
    }

    fn float_gauge(&self, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
        self.add(GaugeVec::new(Opts::new(name, help), labels))
    }
}

/// Drop reasons that are the crypto layer's refusals.
const CRYPTO_REFUSALS: [&str; 7] =
    ["auth_failed", "replayed", "unknown_key", "old_session", "session_limit", "wrong_lane", "sealed_header"];

/// The text exposition of `s`.
pub fn render(s: &Snapshot) -> String {
    let f = Families(Registry::new());
    let info =
        f.gauge("switchd_info", "This switchd: always 1, its host name and version as labels.", &["host", "version"]);
    info.with_label_values(&[&s.host, &s.version]).set(1);
    f.float_gauge("switchd_uptime_seconds", "Seconds since this switchd started.", &[])
        .with_label_values(&[] as &[&str])
        .set(s.uptime.as_secs_f64());
    f.counter("switchd_starts_total", "Times switchd started on this host (restarts are this minus one).", &[])
        .with_label_values(&[] as &[&str])
        .inc_by(s.starts);

    let port = ["network", "endpoint", "port"];
    let port_rx = f.counter("switchd_port_rx_frames_total", "Frames a port's container sent into the switch.", &port);
    let port_rx_b = f.counter("switchd_port_rx_bytes_total", "Bytes a port's container sent into the switch.", &port);
    let port_tx = f.counter("switchd_port_tx_frames_total", "Frames written to a port's container.", &port);
    let port_tx_b = f.counter("switchd_port_tx_bytes_total", "Bytes written to a port's container.", &port);
    let port_drops = f.counter(
        "switchd_port_drops_total",
        "Frames dropped at a port, by reason.",
        &["network", "endpoint", "port", "reason"],
    );
    for p in &s.stats.ports {
        let l = [p.network.as_str(), p.endpoint.as_str(), p.port.as_str()];
        port_rx.with_label_values(&l).inc_by(p.rx_frames);
        port_rx_b.with_label_values(&l).inc_by(p.rx_bytes);
        port_tx.with_label_values(&l).inc_by(p.tx_frames);
        port_tx_b.with_label_values(&l).inc_by(p.tx_bytes);
        for (reason, n) in &p.drops {
            port_drops.with_label_values(&[l[0], l[1], l[2], reason]).inc_by(*n);
        }
    }

    let net = ["network"];
    let net_rx = f.counter("switchd_network_rx_frames_total", "Frames into a network (from ports and VTEPs).", &net);
    let net_rx_b = f.counter("switchd_network_rx_bytes_total", "Bytes into a network.", &net);
    let net_tx = f.counter("switchd_network_tx_frames_total", "Frames out of a network (to ports and VTEPs).", &net);
    let net_tx_b = f.counter("switchd_network_tx_bytes_total", "Bytes out of a network.", &net);
    let flooded = f.counter("switchd_network_flooded_total", "Frames flooded (unknown unicast, broadcast).", &net);
    let moves = f.counter("switchd_network_mac_moves_total", "MACs learned again at another place.", &net);
    let fdb = f.gauge("switchd_network_fdb_entries", "MACs in a network's forwarding table.", &net);
    let answers = f.counter(
        "switchd_network_neighbor_answers_total",
        "ARP and neighbour solicitations answered by switchd itself.",
        &net,
    );
    let routed = f.counter("switchd_network_routed_total", "Frames routed out of a network into another.", &net);
    let balanced =
        f.counter("switchd_network_balanced_total", "New connections to a service VIP given a backend.", &net);
    let refused = f.counter(
        "switchd_network_balance_refused_total",
        "Connections to a service VIP refused: no healthy backend, or a port it does not serve.",
        &net,
    );
    let net_drops =
        f.counter("switchd_network_drops_total", "Frames dropped in a network, by reason.", &["network", "reason"]);
    for n in &s.stats.networks {
        let l = [n.network.as_str()];
        net_rx.with_label_values(&l).inc_by(n.rx_frames);
        net_rx_b.with_label_values(&l).inc_by(n.rx_bytes);
        net_tx.with_label_values(&l).inc_by(n.tx_frames);
        net_tx_b.with_label_values(&l).inc_by(n.tx_bytes);
        flooded.with_label_values(&l).inc_by(n.flooded);
        moves.with_label_values(&l).inc_by(n.mac_moves);
        fdb.with_label_values(&l).set(n.fdb_entries as i64);
        answers.with_label_values(&l).inc_by(n.neighbor_answers);
        routed.with_label_values(&l).inc_by(n.routed);
        balanced.with_label_values(&l).inc_by(n.balanced);
        refused.with_label_values(&l).inc_by(n.balance_refused);
        for (reason, count) in &n.drops {
            net_drops.with_label_values(&[l[0], reason]).inc_by(*count);
        }
    }

    let none: &[&str] = &[];
    f.counter("switchd_policy_allowed_total", "New flows to isolated endpoints that a policy's rule allowed.", none)
        .with_label_values(none)
        .inc_by(s.stats.policy.allowed);
    f.counter("switchd_policy_denied_total", "Frames to isolated endpoints that no policy allowed.", none)
        .with_label_values(none)
        .inc_by(s.stats.policy.denied);

    let vtep = ["vtep", "host"];
    let vtep_rx = f.counter("switchd_vtep_rx_datagrams_total", "VXLAN datagrams from another host's VTEP.", &vtep);
    let vtep_rx_b = f.counter("switchd_vtep_rx_bytes_total", "Bytes of VXLAN datagrams from a VTEP.", &vtep);
    let vtep_tx = f.counter("switchd_vtep_tx_datagrams_total", "VXLAN datagrams sent to a VTEP.", &vtep);
    let vtep_tx_b = f.counter("switchd_vtep_tx_bytes_total", "Bytes of VXLAN datagrams sent to a VTEP.", &vtep);
    let vtep_drops = f.counter(
        "switchd_vtep_drops_total",
        "Datagrams from or to a VTEP dropped, by reason.",
        &["vtep", "host", "reason"],
    );
    let crypto_failures = f.counter(
        "switchd_crypto_failures_total",
        "Sealed datagrams refused, by reason, from every VTEP.",
        &["reason"],
    );
    if s.stats.crypto.is_some() {
        // Every reason, zeros too: an alert on one finds it before it happens.
        for reason in CRYPTO_REFUSALS {
            crypto_failures.with_label_values(&[reason]).inc_by(0);
        }
    }
    for v in &s.stats.vteps {
        let l = [v.vtep.as_str(), v.host.as_deref().unwrap_or("")];
        vtep_rx.with_label_values(&l).inc_by(v.rx_frames);
        vtep_rx_b.with_label_values(&l).inc_by(v.rx_bytes);
        vtep_tx.with_label_values(&l).inc_by(v.tx_frames);
        vtep_tx_b.with_label_values(&l).inc_by(v.tx_bytes);
        for (reason, n) in &v.drops {
            vtep_drops.with_label_values(&[l[0], l[1], reason]).inc_by(*n);
            if CRYPTO_REFUSALS.contains(&reason.as_str()) {
                crypto_failures.with_label_values(&[reason]).inc_by(*n);
            }
        }
    }
    let underlay = f.counter(
        "switchd_underlay_drops_total",
        "Datagrams dropped before any VTEP was known (unknown sources, malformed), by reason.",
        &["reason"],
    );
    // Every reason (a fixed list), zeros too: no VTEP, no other label.
    for reason in crate::switch::DropReason::ALL {
        let name = reason.as_str();
        underlay.with_label_values(&[name]).inc_by(s.stats.underlay_drops.get(name).copied().unwrap_or(0));
    }

    if let Some(c) = &s.stats.crypto {
        let none: &[&str] = &[];
        f.counter("switchd_crypto_sealed_total", "Datagrams sealed and sent.", &[])
            .with_label_values(none)
            .inc_by(c.sealed);
        f.counter("switchd_crypto_opened_total", "Sealed datagrams opened (authentic and fresh).", &[])
            .with_label_values(none)
            .inc_by(c.opened);
        f.gauge("switchd_crypto_sessions", "Peers' sessions held, one replay window each.", &[])
            .with_label_values(none)
            .set(c.sessions as i64);
        f.counter("switchd_crypto_helped_total", "Datagrams sealed or opened by crypto helper threads.", &[])
            .with_label_values(none)
            .inc_by(c.helped);
    }

    if let Some(g) = &s.stats.gossip {
        let datagrams = f.counter("switchd_gossip_datagrams_total", "Gossip datagrams, by direction.", &["direction"]);
        datagrams.with_label_values(&["in"]).inc_by(g.datagrams_in);
        datagrams.with_label_values(&["out"]).inc_by(g.datagrams_out);
        let bytes = f.counter("switchd_gossip_bytes_total", "Gossip bytes, by direction.", &["direction"]);
        bytes.with_label_values(&["in"]).inc_by(g.bytes_in);
        bytes.with_label_values(&["out"]).inc_by(g.bytes_out);
        let rejected = f.counter(
            "switchd_gossip_rejected_total",
            "Gossip datagrams refused before reading, by reason.",
            &["reason"],
        );
        // Every reason (a fixed list), zeros too.
        for reason in switchd_overlay::gossip::wire::Reject::ALL {
            let name = reason.as_str();
            rejected.with_label_values(&[name]).inc_by(g.rejected.get(name).copied().unwrap_or(0));
        }
        let none: &[&str] = &[];
        f.counter("switchd_gossip_bad_messages_total", "Authentic gossip messages that did not parse.", &[])
            .with_label_values(none)
            .inc_by(g.bad_messages);
        f.counter("switchd_gossip_bad_entries_total", "Gossip entries refused (malformed or out of bounds).", &[])
            .with_label_values(none)
            .inc_by(g.bad_entries);
    }
    let members = f.gauge("switchd_peers", "Other hosts known, by state (static peers are alive).", &["state"]);
    for state in ["alive", "suspect", "dead"] {
        members.with_label_values(&[state]).set(0);
    }
    for p in &s.peers {
        members.with_label_values(&[&p.state]).inc();
    }

    let services = f.counter(
        "switchd_gateway_answers_total",
        "What the gateways did (echo replies, DHCP and DNS answers, ICMP errors, refusals), by kind.",
        &["kind"],
    );
    // Every kind, zeros too, so a dashboard's queries always find them.
    for kind in crate::services::Counters::KINDS {
        services.with_label_values(&[kind]).inc_by(s.stats.services.get(*kind).copied().unwrap_or(0));
    }

    let ipam =
        f.gauge("switchd_ipam_addresses", "A network's addresses, used and free, cluster-wide.", &["network", "state"]);
    for n in &s.ipam {
        ipam.with_label_values(&[&n.network, "used"]).set(n.used as i64);
        ipam.with_label_values(&[&n.network, "free"]).set(n.free as i64);
    }

    let worker = ["worker"];
    let busy = f.seconds("switchd_worker_busy_seconds_total", "CPU time a data-plane worker thread used.", &worker);
    let running = f.gauge("switchd_worker_running", "1 while a data-plane worker runs (0: stopped, logged).", &worker);
    let frames = f.counter("switchd_worker_frames_total", "Frames a worker read, by source.", &["worker", "source"]);
    let batches = f.counter("switchd_worker_batches_total", "Batches a worker handled.", &worker);
    for w in &s.stats.workers {
        let index = w.worker.to_string();
        busy.with_label_values(&[&index]).inc_by(w.busy_seconds);
        running.with_label_values(&[&index]).set(i64::from(w.running));
        frames.with_label_values(&[&index, "port"]).inc_by(w.port_frames);
        frames.with_label_values(&[&index, "underlay"]).inc_by(w.underlay_datagrams);
        batches.with_label_values(&[&index]).inc_by(w.batches);
    }

    let mut out = Vec::new();
    TextEncoder::new().encode(&f.0.gather(), &mut out).expect("text encoding into memory");
    String::from_utf8(out).expect("the text format is UTF-8")
}

/// What switchd says about itself before and after it is up.
#[derive(Debug, Default)]
pub struct Probe {
    /// Set once the daemon has started (state reconciled, workers up).
    pub daemon: OnceLock<Shared>,
}

/// Where the metrics are served.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// Binds `[metrics] listen` (a stale Unix socket is replaced).
pub async fn bind(listen: &MetricsListen) -> io::Result<Listener> {
    match listen {
        MetricsListen::Tcp(addr) => TcpListener::bind(addr).await.map(Listener::Tcp),
        MetricsListen::Unix(path) => crate::conns::bind_unix(path, "another metrics server").map(Listener::Unix),
    }
}

/// Serves scrapes and probes until the task is dropped.
pub async fn serve(listener: Listener, probe: Arc<Probe>) {
    let limits = Limits { max: MAX_CONNECTIONS, per_source: MAX_PER_SOURCE, idle_timeout: Some(REQUEST_TIMEOUT) };
    let table = Table::new("metrics endpoint", limits);
    let mut errors = AcceptErrors::new("metrics endpoint: accept");
    loop {
        let accepted = match &listener {
            Listener::Tcp(l) => {
                l.accept().await.map(|(s, peer)| (Box::new(s) as Box<dyn Stream>, Source::of(peer.ip())))
            }
            Listener::Unix(l) => l.accept().await.map(|(s, _)| (Box::new(s) as Box<dyn Stream>, Source::Local)),
        };
        match accepted {
            Ok((stream, source)) => {
                // Refused (too many): closed at once.
                if let Ok(admitted) = table.admit(Instant::now(), source) {
                    let probe = probe.clone();
                    tokio::spawn(async move {
                        let _guard = admitted.guard;
                        let _ = tokio::time::timeout(REQUEST_TIMEOUT, serve_connection(stream, &probe)).await;
                    });
                }
            }
            Err(e) => {
                errors.pause(&e).await;
            }
        }
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Reads one request, answers it, closes.
async fn serve_connection(mut stream: Box<dyn Stream>, probe: &Probe) {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let request = loop {
        match crate::http::parse_request(&buf, MAX_REQUEST) {
            Ok(Some(request)) => break request,
            Ok(None) if buf.len() >= MAX_REQUEST => {
                let _ = respond(&mut stream, 413, "text/plain", "request too large\n", false).await;
                return;
            }
            Ok(None) => {}
            Err(e) => {
                let _ = respond(&mut stream, e.status, "text/plain", &format!("{}\n", e.message), false).await;
                return;
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head_only = request.method == "HEAD";
    if request.method != "GET" && !head_only {
        let _ = respond(&mut stream, 405, "text/plain", "only GET and HEAD\n", false).await;
        return;
    }
    let path = request.path.split('?').next().unwrap_or("");
    let (status, content_type, body) = answer(path, probe).await;
    let _ = respond(&mut stream, status, content_type, &body, head_only).await;
}

/// The answer to `GET path`.
async fn answer(path: &str, probe: &Probe) -> (u16, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    let daemon = probe.daemon.get();
    match path {
        // The process answers: it is alive (a restart would not help).
        "/healthz" => (200, TEXT, "ok\n".into()),
        "/readyz" => match daemon {
            None => (503, TEXT, "starting\n".into()),
            Some(daemon) => match daemon::run_reading(daemon, |d| d.stopped_workers()).await {
                Ok(stopped) if stopped.is_empty() => (200, TEXT, "ready\n".into()),
                Ok(stopped) => (503, TEXT, format!("data-plane workers stopped: {stopped:?}\n")),
                Err(e) => (503, TEXT, format!("{e}\n")),
            },
        },
        "/metrics" => match daemon {
            None => (503, TEXT, "starting\n".into()),
            Some(daemon) => match daemon::run_reading(daemon, |d| d.metrics_snapshot()).await {
                Ok(snapshot) => (200, "text/plain; version=0.0.4; charset=utf-8", render(&snapshot)),
                Err(e) => (500, TEXT, format!("{e}\n")),
            },
        },
        _ => (404, TEXT, "not found: /metrics, /healthz and /readyz are served\n".into()),
    }
}

async fn respond(
    stream: &mut Box<dyn Stream>,
    status: u16,
    content_type: &str,
    body: &str,
    head_only: bool,
) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Bad Request",
    };
    let mut message = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        message.extend_from_slice(body.as_bytes());
    }
    stream.write_all(&message).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::control::api::{PortStats, WorkerStats};

    fn snapshot() -> Snapshot {
        let port = PortStats {
            network: "front".into(),
            endpoint: "web".into(),
            port: "web:eth0".into(),
            rx_frames: 12,
            rx_bytes: 1200,
            drops: BTreeMap::from([("spoofed_source".to_owned(), 3)]),
            ..PortStats::default()
        };
        let worker =
            WorkerStats { worker: 0, running: true, port_frames: 12, busy_seconds: 0.25, ..Default::default() };
        Snapshot {
            host: "h1".into(),
            version: "0.1.0".into(),
            uptime: Duration::from_secs(5),
            starts: 3,
            stats: Stats {
                ports: vec![port],
                networks: Vec::new(),
                vteps: Vec::new(),
                underlay_drops: BTreeMap::new(),
                gossip: None,
                crypto: None,
                services: BTreeMap::from([("dns_answers".to_owned(), 7)]),
                workers: vec![worker],
                conversations: Vec::new(),
                conversations_replaced: 0,
                policy: Default::default(),
            },
            peers: Vec::new(),
            ipam: vec![IpamUse { network: "front".into(), used: 2, free: 251 }],
        }
    }

    /// Each figure of the snapshot is a sample with its labels, under a
    /// family with help and type, as the text format has them.
    #[test]
    fn a_snapshot_becomes_samples() {
        let text = render(&snapshot());
        for line in [
            "# TYPE switchd_port_rx_frames_total counter",
            "switchd_port_rx_frames_total{endpoint=\"web\",network=\"front\",port=\"web:eth0\"} 12",
            "switchd_port_rx_bytes_total{endpoint=\"web\",network=\"front\",port=\"web:eth0\"} 1200",
            "switchd_port_drops_total{endpoint=\"web\",network=\"front\",port=\"web:eth0\",reason=\"spoofed_source\"} 3",
            "switchd_starts_total 3",
            "switchd_info{host=\"h1\",version=\"0.1.0\"} 1",
            "switchd_gateway_answers_total{kind=\"dns_answers\"} 7",
            "switchd_ipam_addresses{network=\"front\",state=\"free\"} 251",
            "switchd_worker_busy_seconds_total{worker=\"0\"} 0.25",
            "switchd_worker_running{worker=\"0\"} 1",
            "switchd_peers{state=\"alive\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line:?} in\n{text}");
        }
        assert!(!text.contains("switchd_crypto_"), "no crypto families without an underlay");
        let families = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
        assert_eq!(families, helps, "every family has its help");
    }

    /// A label value a container chose (its endpoint name) cannot break
    /// the format: quotes, backslashes and newlines are escaped.
    #[test]
    fn label_values_are_escaped() {
        let mut s = snapshot();
        s.stats.ports[0].endpoint = "we\"b\\\nx".into();
        let text = render(&s);
        assert!(text.contains("endpoint=\"we\\\"b\\\\\\nx\""), "{text}");
    }

    async fn ask(request: &[u8], probe: Arc<Probe>) -> String {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let served = tokio::spawn(async move { serve_connection(Box::new(server), &probe).await });
        client.write_all(request).await.unwrap();
        let mut reply = String::new();
        client.read_to_string(&mut reply).await.unwrap();
        served.await.unwrap();
        reply
    }

    /// Before the daemon is up only `/healthz` says yes; bad requests get
    /// the status that says why, and the connection closes.
    #[tokio::test]
    async fn probes_and_bad_requests_before_the_daemon_is_up() {
        let probe = Arc::new(Probe::default());
        let status = |reply: &str| reply.lines().next().unwrap_or_default().to_owned();
        let ok = ask(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", probe.clone()).await;
        assert_eq!(status(&ok), "HTTP/1.1 200 OK");
        assert!(ok.ends_with("\r\n\r\nok\n") && ok.contains("Connection: close"), "{ok}");
        for (request, want) in [
            (&b"GET /readyz HTTP/1.1\r\n\r\n"[..], "HTTP/1.1 503 Service Unavailable"),
            (b"GET /metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 503 Service Unavailable"),
            (b"GET /other HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found"),
            (b"DELETE /metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 405 Method Not Allowed"),
            (b"\x00\x01 garbage\r\n\r\n", "HTTP/1.1 400 Bad Request"),
            (b"GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        ] {
            assert_eq!(status(&ask(request, probe.clone()).await), want, "{}", String::from_utf8_lossy(request));
        }
        let huge = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n", "a".repeat(MAX_REQUEST));
        assert_eq!(status(&ask(huge.as_bytes(), probe.clone()).await), "HTTP/1.1 413 Content Too Large");
        let head = ask(b"HEAD /healthz HTTP/1.1\r\n\r\n", probe).await;
        assert!(head.ends_with("\r\n\r\n") && head.contains("Content-Length: 3"), "no body for HEAD: {head:?}");
    }
}
