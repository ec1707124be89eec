//! Prometheus metrics: switchd serves `/metrics`, `/healthz` and `/readyz`
//! on `[metrics] listen`; promtool finds the exposition well formed, and a
//! real Prometheus (Debian's), started by the test in switchd's namespace
//! and scraping it there, answers a query with the traffic the test made;
//! and the Grafana dashboard asks only for what a real scrape has.

use std::time::Duration;

use serde_json::Value;
use switchd_e2e::{BROADCAST, KeyFile, Netns, Underlay, arp, ether, gossip_member, mac_bytes, run, wait_until};

const NETWORK: &str = r#"
[metrics]
listen = "127.0.0.1:9477"

[[network]]
name = "front"
vni = 100
subnet = "10.10.0.0/24"
internal = true
"#;

/// `METHOD url` from inside `ns`: the status and the body; status 0 and
/// the reason when nothing answers (a server still starting).
fn http(ns: &Netns, method: &str, url: &str) -> (u16, String) {
    const FETCH: &str = "import sys, urllib.request, urllib.error
req = urllib.request.Request(sys.argv[2], method=sys.argv[1])
try:
    r = urllib.request.urlopen(req, timeout=5)
    print(r.status); print(r.read().decode(), end='')
except urllib.error.HTTPError as e:
    print(e.code); print(e.read().decode(), end='')
except (urllib.error.URLError, OSError) as e:
    print(0); print(e, end='')";
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

/// Every `switchd_*` name in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("switchd_") {
        let name: String = rest[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        rest = &rest[at + name.len()..];
        names.push(name);
    }
    names
}

#[test]
fn prometheus_scrapes_switchd_and_finds_the_traffic_of_the_test() {
    // Two hosts by gossip, a plain and an encrypted network across them:
    // every family the dashboard asks for has something to report.
    let mut ul = Underlay::new();
    let ((ha, ipa), (hb, ipb)) = (ul.host("ha"), ul.host("hb"));
    let key = KeyFile::new("cluster", 0x33);
    let secret =
        "\n[[network]]\nname = \"secret\"\nvni = 300\nsubnet = \"10.30.0.0/24\"\ninternal = true\nencrypted = true\n";
    let a = gossip_member(ha, &ipa, &key, &format!("{NETWORK}{secret}"));
    let b = gossip_member(hb, &ipb, &key, "");
    assert!(wait_until(Duration::from_secs(10), || b.json(&["network", "ls"]).as_array().unwrap().len() == 2));
    let (c1, c2) = (Netns::new("c1"), Netns::new("c2"));
    a.connect("front", &c1, &["--ip", "10.10.0.11"]);
    a.connect("secret", &c1, &["--ip", "10.30.0.11"]);
    b.connect("front", &c2, &["--ip", "10.10.0.12"]);
    b.connect("secret", &c2, &["--ip", "10.30.0.12"]);
    let reached = wait_until(Duration::from_secs(10), || c1.ping("10.10.0.12", 1) && c1.ping("10.30.0.12", 1));
    assert!(reached, "{}\n{}", a.log(), b.log());
    assert!(c1.ping("10.10.0.12", 5));
    // Drops to count: an ARP from c1 in another's name (the guard), and a
    // VXLAN datagram from host b with bad flags (a VTEP drop).
    let c1_mac = mac_bytes(&c1.mac("eth0"));
    let spoofed = arp(1, (c1_mac, "10.10.0.99".parse().unwrap()), ([0; 6], "10.10.0.12".parse().unwrap()));
    c1.inject(&[ether(BROADCAST, c1_mac, 0x0806, &spoofed)]);
    let send = format!(
        "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(bytes(16), ('{ipa}', 4789))"
    );
    b.host.ok(&["python3", "-c", &send]);
    let host = &a.host;

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
    assert!(text.contains("switchd_ipam_addresses{network=\"front\",state=\"used\"} 2"), "{text}");
    assert!(
        text.contains("switchd_ipam_addresses{network=\"front\",state=\"free\"} 251"),
        "254 - gateway - 2:\n{text}"
    );
    assert!(text.contains("reason=\"spoofed_address\"} 1"), "the spoofed ARP:\n{text}");
    let bad_flags = |l: &&str| l.starts_with("switchd_vtep_drops_total{") && l.contains("reason=\"bad_vxlan_flags\"");
    assert!(text.lines().filter(bad_flags).any(|l| l.ends_with(" 1")), "the bad datagram from b:\n{text}");
    let scraped = a.dir.join("metrics.txt");
    std::fs::write(&scraped, &text).unwrap();
    let lint = run("sh", &["-c", &format!("promtool check metrics < {}", scraped.display())]);
    assert!(
        lint.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );

    // A real Prometheus, in host a's namespace (loopback only), every second.
    let config = a.dir.join("prometheus.yml");
    std::fs::write(
        &config,
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: switchd\n    \
         static_configs:\n      - targets: ['127.0.0.1:9477']\n",
    )
    .unwrap();
    let tsdb = a.dir.join("tsdb");
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
    let promql = format!("switchd_port_rx_frames_total{{endpoint=\"{}\",network=\"front\"}}", c1.name);
    let seen = wait_until(Duration::from_secs(15), || query(host, &promql).is_some_and(|v| v >= 8.0));
    assert!(seen, "{promql} = {:?}, expected at least the 8 echo requests", query(host, &promql));

    // The Grafana dashboard: every query is valid PromQL to this
    // Prometheus, and every metric it reads is in the real scrape.
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(switchd_e2e::repo_file("contrib/grafana/switchd.json")).unwrap())
            .unwrap();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter().map(|t| t["expr"].as_str().unwrap().to_owned()))
        .collect();
    assert!(exprs.len() > 20, "{} queries", exprs.len());
    for expr in &exprs {
        let promql = expr.replace("$instance", ".*");
        let url = format!("http://127.0.0.1:9090/api/v1/query?query={}", urlencode(&promql));
        let (status, body) = http(host, "GET", &url);
        assert_eq!(status, 200, "{promql}: {body}");
        for name in metric_names(expr) {
            let family = name.trim_end_matches("_total").to_owned();
            let declared = text.contains(&format!("# TYPE {name} ")) || text.contains(&format!("# TYPE {family} "));
            assert!(declared, "the dashboard reads {name}, which the scrape does not have");
        }
    }
}
