//! 25 switchd hosts on one underlay bridge, two containers each: the
//! cluster forms under 10% gossip loss with every gossip datagram within
//! the MTU (the underlay captured throughout); the hosts' cost at rest; a
//! rolling restart of every host that keeps DNS answering and traffic
//! between the others flowing; a host that flaps past the failure timeout
//! and comes back. Measurements are printed (`SCALE ...` lines, recorded
//! in BENCHMARKS.md, "25 real hosts"); nothing is gated on a time but the
//! generous bounds of the waits.

use std::time::{Duration, Instant};

use switchd_e2e::{KeyFile, Netns, Proc, Switchd, Underlay, gossip_member, wait_until};

const HOSTS: usize = 25;
const PER_HOST: usize = 2;
const NET: &str = "\n[[network]]\nname = \"scale\"\nvni = 700\nsubnet = \"10.77.0.0/24\"\ninternal = true\n";
const GATEWAY: &str = "10.77.0.1";
const GOSSIP_PORT: u16 = 7946;
/// The veths' MTU, and so the largest IP packet the underlay carries whole.
const UNDERLAY_MTU: usize = 1500;

struct Container {
    ns: Netns,
    name: String,
    ip: String,
    mac: String,
    host: usize,
}

fn container_ip(host: usize, k: usize) -> String {
    format!("10.77.0.{}", 10 + host * PER_HOST + k)
}

/// MACs `sd` has from gossip.
fn gossip_macs(sd: &Switchd) -> std::collections::HashSet<String> {
    let fdb = sd.json(&["fdb"]);
    fdb.as_array()
        .expect("a list")
        .iter()
        .filter(|e| e["type"] == "gossip")
        .filter_map(|e| e["mac"].as_str().map(str::to_owned))
        .collect()
}

/// Whether host `i` knows every container of the other hosts.
fn knows_everyone(sd: &Switchd, i: usize, containers: &[Container]) -> bool {
    let macs = gossip_macs(sd);
    containers.iter().filter(|c| c.host != i).all(|c| macs.contains(&c.mac))
}

/// Waits until every host but `flapper` holds `its` containers (`held`)
/// or none of them.
fn every_other_host_holds(hosts: &[Switchd], flapper: usize, its: &[&Container], held: bool) {
    for (i, sd) in hosts.iter().enumerate().filter(|(i, _)| *i != flapper) {
        assert!(
            wait_until(Duration::from_secs(30), || {
                let macs = gossip_macs(sd);
                its.iter().all(|c| macs.contains(&c.mac) == held)
            }),
            "host {i} did not come to hold the flapping host's containers: {held}"
        );
    }
}

/// The addresses the gateway's DNS gives, from `from`, for `names`, in order
/// (empty lines for names it does not answer).
fn resolve(from: &Netns, names: &[&str]) -> Vec<String> {
    let server = format!("@{GATEWAY}");
    names
        .chunks(25)
        .flat_map(|chunk| {
            let mut args = vec!["dig", &server, "+tries=1", "+time=1"];
            for n in chunk {
                args.extend_from_slice(&["+short", n]);
            }
            let out = from.exec(&args);
            // dig prints one answer per query with +short; a refused or
            // unanswered one prints nothing, so match by address instead.
            String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect::<Vec<_>>()
        })
        .collect()
}

/// Whether every container's name resolves, from `from`, to its address.
fn dns_answers_everyone<'a>(from: &Netns, containers: impl IntoIterator<Item = &'a Container>) -> bool {
    let containers: Vec<&Container> = containers.into_iter().collect();
    let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
    let answers = resolve(from, &names);
    containers.iter().all(|c| answers.contains(&c.ip))
}

/// CPU time of a process so far (user and system), from /proc.
fn cpu_of(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    Duration::from_millis((tick(11) + tick(12)) * 10)
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:").and_then(|v| v.trim().trim_end_matches(" kB").parse().ok()))
        .unwrap_or(0)
}

/// What a capture of the underlay holds: gossip datagrams (count, largest
/// IP packet), and IP fragments of any kind.
#[derive(Debug, Default)]
struct Captured {
    gossip: usize,
    largest: usize,
    fragments: usize,
    over_mtu: usize,
}

/// Reads a pcap file (Ethernet, as tcpdump writes from a bridge).
fn read_capture(path: &std::path::Path) -> Captured {
    let data = std::fs::read(path).expect("the capture");
    let mut seen = Captured::default();
    for frame in switchd_e2e::pcap_frames(&data) {
        if frame.len() < 14 + 20 || frame[12..14] != [0x08, 0x00] {
            continue;
        }
        let ip = &frame[14..];
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        let flags_offset = u16::from_be_bytes([ip[6], ip[7]]);
        if flags_offset & 0x2000 != 0 || flags_offset & 0x1fff != 0 {
            seen.fragments += 1;
        }
        let header = usize::from(ip[0] & 0x0f) * 4;
        if ip[9] != 17 || ip.len() < header + 4 {
            continue;
        }
        let (sport, dport) =
            (u16::from_be_bytes([ip[header], ip[header + 1]]), u16::from_be_bytes([ip[header + 2], ip[header + 3]]));
        if sport == GOSSIP_PORT || dport == GOSSIP_PORT {
            seen.gossip += 1;
            seen.largest = seen.largest.max(total);
            seen.over_mtu += usize::from(total > UNDERLAY_MTU);
        }
    }
    seen
}

#[test]
fn twenty_five_hosts_converge_within_the_mtu_under_loss_and_survive_rolling_restarts_and_flaps() {
    switchd_e2e::require_root();
    let mut ul = Underlay::new();
    let key = KeyFile::new("scale", 0x25);

    // 10% of gossip packets dropped on the underlay (no netem here).
    ul.ns.ok(&["nft", "add", "table", "bridge", "lossy"]);
    ul.ns.ok(&["nft", "add", "chain", "bridge", "lossy", "gossip", "{ type filter hook forward priority 0; }"]);
    let rule = format!("udp dport {GOSSIP_PORT} numgen random mod 100 < 10 counter drop");
    let mut add = vec!["nft", "add", "rule", "bridge", "lossy", "gossip"];
    add.extend(rule.split(' '));
    ul.ns.ok(&add);
    // Everything on the underlay, from before the first host starts.
    let pcap = std::env::temp_dir().join(format!("scale-{}.pcap", std::process::id()));
    let capture: Proc = ul.ns.spawn(&[
        "tcpdump",
        "-i",
        "br0",
        "-U",
        "-s",
        "64",
        "-w",
        pcap.to_str().unwrap(),
        "udp or ip[6:2] & 0x3fff != 0",
    ]);
    std::thread::sleep(Duration::from_millis(500));

    let started = Instant::now();
    let mut hosts: Vec<Switchd> = (0..HOSTS)
        .map(|i| {
            let (ns, ip) = ul.host(&format!("s{i}"));
            gossip_member(ns, &ip, &key, NET)
        })
        .collect();
    let mut containers = Vec::new();
    for (i, sd) in hosts.iter().enumerate() {
        for k in 0..PER_HOST {
            let ns = Netns::new(&format!("c{i}-{k}"));
            let (name, ip) = (format!("c{i}-{k}"), container_ip(i, k));
            sd.connect("scale", &ns, &["--ip", &ip, "--name", &name]);
            let mac = ns.mac("eth0");
            containers.push(Container { ns, name, ip, mac, host: i });
        }
    }
    let connected = started.elapsed();
    for (i, sd) in hosts.iter().enumerate() {
        assert!(
            wait_until(Duration::from_secs(90), || knows_everyone(sd, i, &containers)),
            "host {i} never learned every container under 10% loss:\n{}",
            sd.log()
        );
    }
    let converged = started.elapsed();
    let dropped = ul.ns.ok(&["nft", "list", "chain", "bridge", "lossy", "gossip"]);
    eprintln!(
        "SCALE formation: {HOSTS} hosts, {} containers connected after {:.1} s, every host knew every container after {:.1} s, under 10% gossip loss ({})",
        containers.len(),
        connected.as_secs_f64(),
        converged.as_secs_f64(),
        dropped.lines().find(|l| l.contains("counter")).unwrap_or("").trim()
    );
    drop(capture);
    let seen = read_capture(&pcap);
    let _ = std::fs::remove_file(&pcap);
    eprintln!("SCALE capture: {seen:?}");
    assert!(seen.gossip > 1000, "the capture saw gossip: {seen:?}");
    assert_eq!(seen.fragments, 0, "no IP fragment on the underlay: {seen:?}");
    assert_eq!(seen.over_mtu, 0, "no gossip datagram beyond the MTU: {seen:?}");
    ul.ns.ok(&["nft", "delete", "table", "bridge", "lossy"]);

    // Traffic across the cluster, and names.
    assert!(containers[0].ns.ping(&containers[containers.len() - 1].ip, 2), "first to last container");
    assert!(dns_answers_everyone(&containers[0].ns, &containers), "DNS answers for every container");

    // At rest: what each host costs.
    let pids: Vec<u32> = hosts.iter().map(Switchd::pid).collect();
    let before: Vec<Duration> = pids.iter().map(|p| cpu_of(*p)).collect();
    let window = Duration::from_secs(10);
    std::thread::sleep(window);
    let mut cpu: Vec<f64> =
        pids.iter().zip(&before).map(|(p, b)| (cpu_of(*p) - *b).as_secs_f64() / window.as_secs_f64() * 100.0).collect();
    let mut rss: Vec<u64> = pids.iter().map(|p| rss_kb(*p)).collect();
    cpu.sort_by(f64::total_cmp);
    rss.sort_unstable();
    eprintln!(
        "SCALE at rest: CPU per host {:.2}% median ({:.2}-{:.2}%) of a core, RSS per host {} KB median ({}-{} KB)",
        cpu[HOSTS / 2],
        cpu[0],
        cpu[HOSTS - 1],
        rss[HOSTS / 2],
        rss[0],
        rss[HOSTS - 1]
    );

    // A rolling restart: each host in turn stops cleanly and starts again.
    // Two containers on two other hosts ping each other throughout and lose
    // nothing; DNS on a third host answers for every other host's
    // containers while it is down, and for every container (its own
    // included) once it is back.
    let mut back_after = Vec::new();
    for i in 0..HOSTS {
        let (a, b) = ((i + 1) % HOSTS, (i + 2) % HOSTS);
        let (from, to) = (&containers[a * PER_HOST].ns, &containers[b * PER_HOST].ip);
        let pinger = std::thread::scope(|scope| {
            let ping = scope.spawn(|| from.exec(&["ping", "-q", "-i", "0.05", "-c", "60", "-W", "1", to]));
            std::thread::sleep(Duration::from_millis(500));
            let asker = &containers[((i + 3) % HOSTS) * PER_HOST].ns;
            hosts[i].terminate();
            // While it is down, every other host's containers still answer
            // (its own are gone: it said it was leaving).
            let others = containers.iter().filter(|c| c.host != i);
            assert!(dns_answers_everyone(asker, others), "while host {i} was down, DNS stopped answering for others");
            hosts[i].launch();
            let t = Instant::now();
            assert!(
                wait_until(Duration::from_secs(20), || dns_answers_everyone(asker, &containers)),
                "after host {i} restarted, DNS on host {} does not answer for every container",
                (i + 3) % HOSTS
            );
            back_after.push(t.elapsed());
            ping.join().expect("ping")
        });
        let out = String::from_utf8_lossy(&pinger.stdout).into_owned();
        assert!(out.contains(" 0% packet loss"), "traffic between hosts {a} and {b} while host {i} restarted:\n{out}");
    }
    back_after.sort();
    eprintln!(
        "SCALE rolling restart: every host restarted in turn with no ping lost between two others; DNS answered for every container {:.1} s median ({:.1}-{:.1} s) after each host was back",
        back_after[HOSTS / 2].as_secs_f64(),
        back_after[0].as_secs_f64(),
        back_after[HOSTS - 1].as_secs_f64()
    );

    // A host that flaps: killed, gone from every table after the failure
    // timeout, back with all its records soon after it starts again.
    let flapper = HOSTS / 2;
    let mine: Vec<&Container> = containers.iter().filter(|c| c.host == flapper).collect();
    hosts[flapper].kill9();
    let t = Instant::now();
    every_other_host_holds(&hosts, flapper, &mine, false);
    let gone = t.elapsed();
    hosts[flapper].launch();
    let t = Instant::now();
    every_other_host_holds(&hosts, flapper, &mine, true);
    let back = t.elapsed();
    assert!(containers[0].ns.ping(&mine[0].ip, 2), "the flapped host's container is reachable again");
    eprintln!(
        "SCALE flap: a killed host left every table {:.1} s after its death (failure timeout 8 s), and was back in every table {:.1} s after it started again",
        gone.as_secs_f64(),
        back.as_secs_f64()
    );
}
