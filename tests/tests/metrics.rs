//! Prometheus metrics: switchd serves `/metrics`, `/healthz` and `/readyz`
//! on `[metrics] listen`; promtool finds the exposition well formed, and a
//! real Prometheus (Debian's), started by the test in switchd's namespace
//! and scraping it there, answers a query with the traffic the test made.

use std::time::Duration;

use serde_json::Value;
use switchd_e2e::{Netns, Switchd, run, wait_until};

const NETWORK: &str = r#"
[metrics]
listen = "127.0.0.1:9477"

[[network]]
name = "front"
vni = 100
subnet = "10.10.0.0/24"
internal = true
"#;

fn port(ns: &Netns, ip: &str) -> String {
    format!("\n[[port]]\nnetwork = \"front\"\nnetns = \"{}\"\nip = \"{ip}\"\n", ns.name)
}

/// `METHOD url` from inside `ns`: the status and the body.
fn http(ns: &Netns, method: &str, url: &str) -> (u16, String) {
    const FETCH: &str = "import sys, urllib.request, urllib.error
req = urllib.request.Request(sys.argv[2], method=sys.argv[1])
try:
    r = urllib.request.urlopen(req, timeout=5)
    print(r.status); print(r.read().decode(), end='')
except urllib.error.HTTPError as e:
    print(e.code); print(e.read().decode(), end='')";
    let out = ns.ok(&["python3", "-c", FETCH, method, url]);
    let (status, body) = out.split_once('\n').unwrap_or((out.as_str(), ""));
    (status.trim().parse().unwrap_or_else(|_| panic!("{method} {url}: {out}")), body.to_owned())
}

/// The value of the first sample a PromQL query returns, if any.
fn query(ns: &Netns, promql: &str) -> Option<f64> {
    let url = format!("http://127.0.0.1:9090/api/v1/query?query={}", urlencode(promql));
    let (status, body) = http(ns, "GET", &url);
    if status != 200 {
        return None;
    }
    let json: Value = serde_json::from_str(&body).ok()?;
    json["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn prometheus_scrapes_switchd_and_finds_the_traffic_of_the_test() {
    let (c1, c2) = (Netns::new("c1"), Netns::new("c2"));
    let sd = Switchd::start("", &format!("{NETWORK}{}{}", port(&c1, "10.10.0.11"), port(&c2, "10.10.0.12")));
    let host = &sd.host;
    assert!(c1.ping("10.10.0.12", 5), "c1 reaches c2\n{}", sd.log());

    // The probes, and what is not served.
    assert_eq!(http(host, "GET", "http://127.0.0.1:9477/healthz"), (200, "ok\n".into()));
    assert_eq!(http(host, "GET", "http://127.0.0.1:9477/readyz"), (200, "ready\n".into()));
    assert_eq!(http(host, "GET", "http://127.0.0.1:9477/nothing").0, 404);
    assert_eq!(http(host, "POST", "http://127.0.0.1:9477/metrics").0, 405);

    // The exposition, linted by promtool.
    let (status, text) = http(host, "GET", "http://127.0.0.1:9477/metrics");
    assert_eq!(status, 200, "{text}");
    let sample =
        format!("switchd_port_rx_frames_total{{endpoint=\"{0}\",network=\"front\",port=\"{0}:eth0\"}}", c1.name);
    let line = text.lines().find(|l| l.starts_with(&sample)).unwrap_or_else(|| panic!("no {sample} in\n{text}"));
    let frames: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(frames >= 5.0, "c1's 5 echo requests at least: {line}");
    for family in [
        "switchd_info",
        "switchd_starts_total",
        "switchd_network_fdb_entries",
        "switchd_ipam_addresses",
        "switchd_worker_busy_seconds_total",
        "switchd_gateway_answers_total",
    ] {
        assert!(text.contains(&format!("# TYPE {family} ")), "{family} missing:\n{text}");
    }
    assert!(text.contains("switchd_ipam_addresses{network=\"front\",state=\"used\"} 2"), "{text}");
    assert!(
        text.contains("switchd_ipam_addresses{network=\"front\",state=\"free\"} 251"),
        "254 - gateway - 2:\n{text}"
    );
    let scraped = sd.dir.join("metrics.txt");
    std::fs::write(&scraped, &text).unwrap();
    let lint = run("sh", &["-c", &format!("promtool check metrics < {}", scraped.display())]);
    assert!(
        lint.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );

    // A real Prometheus, in switchd's namespace (loopback only), every second.
    let config = sd.dir.join("prometheus.yml");
    std::fs::write(
        &config,
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: switchd\n    \
         static_configs:\n      - targets: ['127.0.0.1:9477']\n",
    )
    .unwrap();
    let tsdb = sd.dir.join("tsdb");
    let _prometheus = host.spawn(&[
        "prometheus",
        &format!("--config.file={}", config.display()),
        &format!("--storage.tsdb.path={}", tsdb.display()),
        "--web.listen-address=127.0.0.1:9090",
    ]);
    let up = wait_until(Duration::from_secs(30), || query(host, "up{job=\"switchd\"}") == Some(1.0));
    assert!(up, "Prometheus never scraped switchd");
    // The test's own traffic, as Prometheus stored it.
    assert!(c1.ping("10.10.0.12", 3));
    let promql = format!("switchd_port_rx_frames_total{{endpoint=\"{}\"}}", c1.name);
    let seen = wait_until(Duration::from_secs(15), || query(host, &promql).is_some_and(|v| v >= 8.0));
    assert!(seen, "{promql} = {:?}, expected at least the 8 echo requests", query(host, &promql));
    let replies = format!("switchd_port_tx_frames_total{{endpoint=\"{}\"}}", c1.name);
    assert!(query(host, &replies).is_some_and(|v| v >= 8.0), "{replies} = {:?}", query(host, &replies));
}
