use std::path::Path;

use super::*;

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    Config::parse(text, Path::new("host.toml"))
}

fn errors(text: &str) -> Vec<String> {
    parse(text).unwrap_err().to_string().lines().map(str::to_owned).collect()
}

const GOOD: &str = r#"
[host]
name = "host-a"
control_socket = "/tmp/sd.sock"
mac_aging_time = 5

[[network]]
name = "frontend"
vni = 100
subnet = "10.10.0.0/24"

[[network]]
name = "backend"
vni = 200
subnet = "10.20.0.0/24"
gateway = "10.20.0.254"
mtu = 1400
internal = true

[[network]]
name = "l2only"
vni = 300

[[port]]
network = "frontend"
netns = "web"
ip = "10.10.0.10"
mac = "02:00:00:00:00:10"

[[port]]
network = "backend"
netns = "/proc/1234/ns/net"
ifname = "eth1"

[[port]]
network = "l2only"
kind = "uplink"
host_ifname = "enp3s0"
"#;

#[test]
fn good_config_with_defaults() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.host.name.as_str(), "host-a");
    assert_eq!(c.host.state_dir, Path::new("/var/lib/switchd"));
    assert_eq!(c.host.underlay_mtu.get(), 1500);
    assert_eq!(c.host.mac_aging_time, Duration::from_secs(5));
    assert_eq!(c.host.mac_limit, 1024);
    assert!(c.host.io_uring, "io_uring on unless turned off");
    let fe = c.network("frontend").unwrap();
    assert_eq!(fe.mtu.get(), 1450, "default MTU is underlay_mtu - 50");
    assert_eq!(fe.gateway, Some("10.10.0.1".parse().unwrap()), "gateway defaults to the first address");
    assert!(!fe.internal);
    let be = c.network("backend").unwrap();
    assert_eq!(be.gateway, Some("10.20.0.254".parse().unwrap()));
    assert_eq!(be.mtu.get(), 1400);
    assert!(be.internal);
    let l2 = c.network("l2only").unwrap();
    assert_eq!((l2.subnet, l2.gateway), (None, None));
    assert_eq!(c.ports.len(), 3);
    assert_eq!(c.ports[0].kind, PortKind::Tap);
    assert_eq!(c.ports[0].display_name().as_deref(), Some("web"));
    assert_eq!(c.ports[1].display_name().as_deref(), Some("pid-1234"));
    assert_eq!(c.ports[2].kind, PortKind::Uplink);
}

#[test]
fn every_error_is_reported_with_line_and_key() {
    let text = r#"[host]
name = "h"

[[network]]
name = "a"
vni = 0

[[network]]
name = "b b"
vni = 16777216
subnet = "10.0.0.0/24"
gateway = "10.1.0.1"
mtu = 67
"#;
    let errs = errors(text);
    assert_eq!(
        errs,
        vec![
            "host.toml:6:7: network[0].vni: 0 is out of range 1..=16777215",
            "host.toml:9:8: network[1].name: \"b b\" contains ' '; allowed are letters, digits, '_', '.' and '-'",
            "host.toml:10:7: network[1].vni: 16777216 is out of range 1..=16777215",
            "host.toml:12:11: network[1].gateway: 10.1.0.1 is not a usable address in subnet 10.0.0.0/24",
            "host.toml:13:7: network[1].mtu: 67 is out of range 68..=65535",
        ]
    );
}

#[test]
fn duplicates_are_refused() {
    let text = r#"[host]
name = "h"
[[network]]
name = "a"
vni = 10
subnet = "10.0.0.0/24"
[[network]]
name = "a"
vni = 10
[[port]]
network = "a"
netns = "c1"
ip = "10.0.0.5"
[[port]]
network = "a"
netns = "c1"
ip = "10.0.0.5"
name = "other"
"#;
    let errs = errors(text).join("\n");
    assert!(errs.contains("host.toml:8:8: network[1].name: \"a\" is already the name of network[0]"), "{errs}");
    assert!(errs.contains("host.toml:9:7: network[1].vni: 10 is already the vni of network[0]"), "{errs}");
    assert!(errs.contains("port[1].netns: netns \"c1\" on network \"a\" is already used by port[0]"), "{errs}");
    assert!(errs.contains("port[1].ip: 10.0.0.5 on network \"a\" is already used by port[0]"), "{errs}");
}

#[test]
fn port_rules() {
    let text = r#"[host]
name = "h"
[[network]]
name = "a"
vni = 10
subnet = "10.0.0.0/24"
[[network]]
name = "l2"
vni = 11
[[port]]
network = "a"
netns = "c1"
ip = "10.0.1.5"
[[port]]
network = "a"
netns = "c2"
ip = "10.0.0.1"
[[port]]
network = "l2"
netns = "c3"
ip = "10.0.0.9"
[[port]]
network = "nope"
netns = "c4"
[[port]]
network = "a"
kind = "tap"
[[port]]
network = "a"
netns = "c5"
kind = "bridge"
mac = "01:00:5e:00:00:01"
[[port]]
network = "a"
kind = "uplink"
"#;
    let errs = errors(text).join("\n");
    for expected in [
        "port[0].ip: 10.0.1.5 is not a usable address in subnet 10.0.0.0/24 of network \"a\"",
        "port[1].ip: 10.0.0.1 is the gateway of network \"a\"",
        "port[2].ip: network \"l2\" has no subnet to take addresses from",
        "port[3].network: no network named \"nope\"",
        "port[4].netns: is required for a tap port",
        "port[5].kind: \"bridge\" is not a port kind",
        "port[5].mac: 01:00:5e:00:00:01 is not a unicast address",
        "port[6].host_ifname: is required for an uplink port",
    ] {
        assert!(errs.contains(expected), "missing {expected:?} in\n{errs}");
    }
}

#[test]
fn unknown_and_planned_keys_are_all_reported() {
    let text = r#"[host]
name = "h"
colour = "blue"

[[route]]
networks = ["a", "b"]

[[network]]
name = "a"
vni = 1
host_acess = true
typo_key = 1
"#;
    let errs = errors(text);
    assert_eq!(
        errs,
        vec![
            "host.toml:3:10: host.colour: unknown key",
            "host.toml:11:14: network[0].host_acess: unknown key",
            "host.toml:12:12: network[0].typo_key: unknown key",
        ]
    );
}

#[test]
fn services_routes_and_published_ports() {
    let text = r#"[host]
name = "h"

[[network]]
name = "front"
vni = 1
subnet = "10.1.0.0/24"
dhcp = false

[[network]]
name = "l2"
vni = 2

[[route]]
networks = ["l2", "front"]

[[port]]
network = "front"
netns = "web"
dhcp = false

[[publish]]
network = "front"
container = "web"
host_port = 8080
port = 80
"#;
    let config = Config::parse(text, Path::new("host.toml")).unwrap();
    let (front, l2) = (&config.networks[0], &config.networks[1]);
    assert!(front.dns && !front.dhcp, "dns on by default with a subnet; dhcp turned off");
    assert!(!l2.dns && !l2.dhcp, "nothing to serve without a subnet");
    assert_eq!(config.routes, vec![RouteConfig::new(Name::new("front").unwrap(), Name::new("l2").unwrap())]);
    let p = &config.publish[0];
    assert_eq!((p.host_ip.to_string(), p.host_port, p.port, p.protocol), ("0.0.0.0".into(), 8080, 80, Protocol::Tcp));

    let bad = r#"[host]
name = "h"

[[network]]
name = "l2"
vni = 2
dns = true
host_access = true

[[network]]
name = "nodhcp"
vni = 3
subnet = "10.3.0.0/24"
dhcp = false

[[route]]
networks = ["l2"]

[[route]]
networks = ["l2", "l2"]

[[port]]
network = "nodhcp"
netns = "c"
dhcp = true

[[publish]]
network = "l2"
container = "c"
host_port = 0
port = 80
protocol = "sctp"

[[publish]]
network = "l2"
host_port = 80
port = 80
"#;
    let errs = errors(bad).join("\n");
    for expected in [
        "network[0].dns: needs a subnet",
        "network[0].host_access: needs an IPv4 subnet",
        "route[0].networks: lists 1 networks; a route joins exactly two",
        "route[1].networks: names \"l2\" twice",
        "port[0].dhcp: network \"nodhcp\" has no DHCP server",
        "publish[0].host_port: 0 is out of range 1..=65535",
        "publish[0].protocol: \"sctp\" is not a protocol",
        "publish[1].container: is required",
    ] {
        assert!(errs.contains(expected), "missing {expected:?} in\n{errs}");
    }
}

#[test]
fn io_uring_can_be_turned_off_and_takes_only_a_boolean() {
    let off = GOOD.replace("mac_aging_time = 5", "mac_aging_time = 5\nio_uring = false");
    assert!(!parse(&off).unwrap().host.io_uring);
    let errs = errors(&GOOD.replace("mac_aging_time = 5", "io_uring = 1"));
    assert!(errs[0].contains("host.io_uring: invalid type: integer `1`, expected a boolean"), "{errs:?}");
}

#[test]
fn crypto_helpers_are_none_unless_set() {
    assert_eq!(parse(GOOD).unwrap().host.crypto_helpers, 0);
    let set = GOOD.replace("mac_aging_time = 5", "mac_aging_time = 5\ncrypto_helpers = 3");
    assert_eq!(parse(&set).unwrap().host.crypto_helpers, 3);
    let off = GOOD.replace("mac_aging_time = 5", "mac_aging_time = 5\ncrypto_helpers = 0");
    assert_eq!(parse(&off).unwrap().host.crypto_helpers, 0);
    let errs = errors(&GOOD.replace("mac_aging_time = 5", "crypto_helpers = -1"));
    assert!(errs[0].contains("host.crypto_helpers"), "{errs:?}");
}

#[test]
fn metrics_listen_on_an_address_or_a_unix_socket() {
    use crate::MetricsListen;
    assert_eq!(parse(GOOD).unwrap().metrics, None, "off unless set");
    let tcp = parse(&format!("{GOOD}\n[metrics]\nlisten = \"127.0.0.1:9477\"\n")).unwrap();
    assert_eq!(tcp.metrics.unwrap().listen, MetricsListen::Tcp("127.0.0.1:9477".parse().unwrap()));
    let unix = parse(&format!("{GOOD}\n[metrics]\nlisten = \"unix:/run/switchd/metrics.sock\"\n")).unwrap();
    assert_eq!(unix.metrics.unwrap().listen, MetricsListen::Unix("/run/switchd/metrics.sock".into()));
    for (listen, message) in [
        ("\n", "metrics.listen: is required"),
        ("listen = \"9477\"\n", "metrics.listen: \"9477\" is not an address like 127.0.0.1:9477"),
        ("listen = \"unix:metrics.sock\"\n", "metrics.listen: \"metrics.sock\" must be an absolute path"),
    ] {
        let errs = errors(&format!("{GOOD}\n[metrics]\n{listen}"));
        assert!(errs.iter().any(|e| e.contains(message)), "{listen:?}: {errs:?}");
    }
}

#[test]
fn syntax_and_type_errors_have_a_place() {
    let errs = errors("[host]\nname = \"h\"\n[[network]]\nname = \"a\"\nvni = \"ten\"\n");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("host.toml:5:7: network[0].vni: invalid type: string \"ten\""), "{errs:?}");
    let errs = errors("[host\nname = 1\n");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("host.toml:1:"), "{errs:?}");
}

#[test]
fn missing_required_keys_point_at_their_table() {
    let errs = errors("[host]\nname = \"h\"\n\n[[network]]\nsubnet = \"10.0.0.0/24\"\n");
    assert_eq!(errs, vec!["host.toml:4:1: network[0].name: is required", "host.toml:4:1: network[0].vni: is required"]);
}

#[test]
fn gateway_without_subnet() {
    let errs = errors("[host]\nname = \"h\"\n[[network]]\nname = \"a\"\nvni = 1\ngateway = \"10.0.0.1\"\n");
    assert_eq!(errs, vec!["host.toml:6:11: network[0].gateway: needs a subnet"]);
}

#[test]
fn underlay_mtu_leaves_room_for_vxlan() {
    let errs = errors("[host]\nname = \"h\"\nunderlay_mtu = 100\n");
    assert_eq!(errs, vec!["host.toml:3:16: host.underlay_mtu: 100 is out of range 118..=65535"]);
    let c = parse("[host]\nname = \"h\"\nunderlay_mtu = 9000\n[[network]]\nname = \"j\"\nvni = 5\n").unwrap();
    assert_eq!(c.networks[0].mtu.get(), 8950);
}

#[test]
fn run_time_network_uses_the_same_rules() {
    let host = parse("[host]\nname = \"h\"\n").unwrap().host;
    let raw = raw::RawNetwork {
        name: Some("x".into()),
        vni: Some(-1),
        subnet: Some("10.0.0.1/24".into()),
        ..Default::default()
    };
    let errs: Vec<String> = validate::network(&raw, &host, Path::new("/"), &KeyPath::root())
        .unwrap_err()
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert_eq!(
        errs,
        vec![
            "vni: -1 is out of range 1..=16777215",
            "subnet: 10.0.0.1/24 has host bits set; did you mean 10.0.0.0/24?"
        ]
    );
}

#[test]
fn netns_names() {
    assert_eq!(netns_display_name("web"), "web");
    assert_eq!(netns_display_name("/run/netns/web"), "web");
    assert_eq!(netns_display_name("/proc/77/ns/net"), "pid-77");
}

#[test]
fn example_config_in_the_repository_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/host.toml");
    Config::load(&path).unwrap();
}

#[test]
fn peers_and_underlay() {
    let c = parse(
        "[host]\nname = \"h\"\nunderlay_ip = \"198.18.0.1\"\n[[peer]]\nunderlay_ip = \"198.18.0.2\"\n[[peer]]\nunderlay_ip = \"198.18.0.3\"\nvnis = [100, 200]\nvxlan_port = 8472\nname = \"kernel\"\n[[peer]]\nunderlay_ip = \"198.18.0.4\"\nswitchd = true\n",
    )
    .unwrap();
    assert_eq!(c.host.underlay_ip, Some("198.18.0.1".parse().unwrap()));
    assert_eq!(c.host.vxlan_port, 4789);
    assert_eq!(c.peers.len(), 3);
    assert_eq!(c.peers[0].vnis, None);
    assert_eq!(c.peers[0].vxlan_port, 4789, "a peer's port defaults to ours");
    assert_eq!(c.peers[1].vnis, Some(vec![Vni::new(100).unwrap(), Vni::new(200).unwrap()]));
    assert_eq!(c.peers[1].vxlan_port, 8472);
    assert!(!c.peers[0].switchd, "a static peer may be a kernel vxlan device unless told");
    assert!(c.peers[2].switchd);
}

#[test]
fn peer_rules() {
    let text = r#"[host]
name = "h"
underlay_ip = "198.18.0.1"
vxlan_port = 0
[[peer]]
underlay_ip = "198.18.0.1"
[[peer]]
underlay_ip = "fd00::2"
vnis = []
[[peer]]
underlay_ip = "198.18.0.9"
vnis = [0, 16777216]
[[peer]]
underlay_ip = "198.18.0.9"
[[peer]]
vnis = [5]
"#;
    let errs = errors(text).join("\n");
    for expected in [
        "host.vxlan_port: 0 is out of range 1..=65535",
        "peer[0].underlay_ip: 198.18.0.1 is this host's own underlay_ip",
        "peer[1].underlay_ip: fd00::2 is not of the same IP version as underlay_ip 198.18.0.1",
        "peer[1].vnis: is empty; leave it out to carry every network",
        "peer[2].vnis[0]: 0 is out of range 1..=16777215",
        "peer[2].vnis[1]: 16777216 is out of range 1..=16777215",
        "peer[3].underlay_ip: 198.18.0.9 is already peer[2]",
        "peer[4].underlay_ip: is required",
    ] {
        assert!(errs.contains(expected), "missing {expected:?} in\n{errs}");
    }
    let errs = errors("[host]\nname = \"h\"\n[[peer]]\nunderlay_ip = \"198.18.0.2\"\n");
    assert_eq!(errs, vec!["host.toml:4:15: peer[0].underlay_ip: a peer needs [host] underlay_ip to send from"]);
}

#[test]
fn ipv6_underlay_costs_70_bytes() {
    let c = parse("[host]\nname = \"h\"\nunderlay_ip = \"fd00::1\"\n[[network]]\nname = \"n\"\nvni = 1\n").unwrap();
    assert_eq!(c.networks[0].mtu.get(), 1430);
}

#[test]
fn mtu_beyond_the_underlay_is_a_warning() {
    let c = parse(
        "[host]\nname = \"h\"\n[[network]]\nname = \"big\"\nvni = 1\nmtu = 1500\n[[network]]\nname = \"ok\"\nvni = 2\n",
    )
    .unwrap();
    let w = c.warnings();
    assert_eq!(w.len(), 1);
    assert!(w[0].starts_with("network \"big\": mtu 1500 plus 50 bytes of VXLAN exceeds underlay_mtu 1500"), "{w:?}");
}

#[test]
fn gossip_section() {
    let dir = std::env::temp_dir().join(format!("switchd-config-gossip-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cluster.key"), format!("{}\n", "ab".repeat(32))).unwrap();
    std::fs::write(dir.join("short.key"), "abcd").unwrap();
    let file = dir.join("host.toml");
    let parse_here = |text: &str| Config::parse(text, &file);
    let c = parse_here(
        "[host]\nname = \"h\"\nunderlay_ip = \"198.18.0.1\"\n[gossip]\nseeds = [\"198.18.0.2:7946\", \"198.18.0.3\"]\nkey_file = \"cluster.key\"\n",
    )
    .unwrap();
    let g = c.gossip.unwrap();
    assert_eq!(g.port, 7946);
    assert_eq!(g.seeds, vec!["198.18.0.2:7946".parse().unwrap(), "198.18.0.3:7946".parse().unwrap()]);
    assert_eq!(g.key_file, dir.join("cluster.key"), "relative to the config file");
    assert_eq!(g.interval, Duration::from_millis(250));
    assert_eq!(g.failure_timeout, Duration::from_secs(8));
    // An IPv6 underlay takes IPv6 seeds, in brackets with a port or bare;
    // a seed of the other version could never be reached.
    let v6 = parse_here(
        "[host]\nname = \"h\"\nunderlay_ip = \"fd00:198:18::1\"\n[gossip]\nseeds = [\"[fd00:198:18::2]:7946\", \"fd00:198:18::3\"]\nkey_file = \"cluster.key\"\n",
    )
    .unwrap();
    assert_eq!(
        v6.gossip.unwrap().seeds,
        vec!["[fd00:198:18::2]:7946".parse().unwrap(), "[fd00:198:18::3]:7946".parse().unwrap()]
    );
    let mixed = parse_here(
        "[host]\nname = \"h\"\nunderlay_ip = \"fd00:198:18::1\"\n[gossip]\nseeds = [\"198.18.0.2:7946\"]\nkey_file = \"cluster.key\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        mixed.contains("gossip.seeds[0]: 198.18.0.2 is not of the same IP version as underlay_ip fd00:198:18::1"),
        "{mixed}"
    );

    let errs = parse_here(
        "[host]\nname = \"h\"\n[gossip]\nport = 0\nseeds = [\"nowhere\"]\nkey_file = \"short.key\"\nfailure_timeout = 0\n",
    )
    .unwrap_err()
    .to_string();
    for expected in [
        "gossip: needs [host] underlay_ip",
        "gossip.port: 0 is out of range 1..=65535",
        "gossip.seeds[0]: \"nowhere\" is not an address",
        "gossip.key_file: a key is 32 bytes written as 64 hex characters",
        "gossip.failure_timeout: 0 is out of range 1..=3600",
    ] {
        assert!(errs.contains(expected), "missing {expected:?} in\n{errs}");
    }
    let errs = parse_here("[host]\nname = \"h\"\nunderlay_ip = \"198.18.0.1\"\n[gossip]\nseeds = []\n")
        .unwrap_err()
        .to_string();
    assert!(errs.contains("gossip.key_file: is required"), "{errs}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn encrypted_networks() {
    let dir = std::env::temp_dir().join(format!("switchd-config-encrypted-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cluster.key"), "ab".repeat(32)).unwrap();
    std::fs::write(dir.join("secret.key"), "cd".repeat(32)).unwrap();
    let file = dir.join("host.toml");
    let parse_here = |text: &str| Config::parse(text, &file);
    let host = "[host]\nname = \"h\"\nunderlay_ip = \"198.18.0.1\"\n";
    let gossip = "[gossip]\nkey_file = \"cluster.key\"\n";
    let c = parse_here(&format!(
        "{host}{gossip}[[network]]\nname = \"a\"\nvni = 1\nencrypted = true\n\
         [[network]]\nname = \"b\"\nvni = 2\nencrypted = true\ncipher = \"aes-256-gcm\"\nkey_file = \"secret.key\"\n\
         [[network]]\nname = \"c\"\nvni = 3\n\
         [[network]]\nname = \"d\"\nvni = 4\nencrypted = true\ncipher = \"chacha20-poly1305\"\n"
    ))
    .unwrap();
    let (a, b, plain, d) = (&c.networks[0], &c.networks[1], &c.networks[2], &c.networks[3]);
    // No cipher named: the faster one on this CPU, marked as the default.
    let here = Cipher::preferred();
    assert_eq!(a.encryption, Some(Encryption { cipher: here, default_cipher: true, key: KeySource::Cluster }));
    assert_eq!(a.mtu.get(), 1500 - 50 - 36, "the crypto overhead comes off the default MTU");
    // A named cipher wins, whatever the CPU.
    assert_eq!(
        b.encryption,
        Some(Encryption { cipher: Cipher::Aes256Gcm, default_cipher: false, key: KeySource::Own })
    );
    let chacha = Encryption { cipher: Cipher::ChaCha20Poly1305, default_cipher: false, key: KeySource::Cluster };
    assert_eq!(d.encryption, Some(chacha));
    assert_eq!(c.network_key_files.get(&b.name), Some(&dir.join("secret.key")));
    assert_eq!((plain.encryption, plain.mtu.get()), (None, 1450));

    // Without a key there is nothing to seal with: refused, never plaintext.
    let errs =
        parse_here(&format!("{host}[[network]]\nname = \"a\"\nvni = 1\nencrypted = true\n")).unwrap_err().to_string();
    assert!(errs.contains("network[0].encrypted: needs a key: set [gossip] key_file"), "{errs}");
    let errs = parse_here(&format!(
        "{host}{gossip}[[network]]\nname = \"a\"\nvni = 1\ncipher = \"aes-256-gcm\"\nkey_file = \"secret.key\"\n\
         [[network]]\nname = \"b\"\nvni = 2\nencrypted = true\ncipher = \"des\"\nkey_file = \"missing.key\"\n"
    ))
    .unwrap_err()
    .to_string();
    for expected in [
        "network[0].cipher: applies to encrypted networks only; add encrypted = true",
        "network[0].key_file: applies to encrypted networks only",
        "network[1].cipher: \"des\" is not a cipher",
        "network[1].key_file: ",
        "missing.key: cannot read key file",
    ] {
        assert!(errs.contains(expected), "missing {expected:?} in\n{errs}");
    }

    // An explicit MTU too large for the sealed overhead is a warning.
    let c = parse_here(&format!("{host}{gossip}[[network]]\nname = \"a\"\nvni = 1\nencrypted = true\nmtu = 1450\n"))
        .unwrap();
    let w = c.warnings();
    assert!(w[0].contains("mtu 1450 plus 86 bytes of sealed VXLAN exceeds underlay_mtu 1500"), "{w:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_networks_cipher_is_each_hosts_and_not_part_of_its_definition() {
    let net = |encryption: Option<Encryption>| NetworkConfig {
        name: Name::new("vault").unwrap(),
        vni: Vni::new(300).unwrap(),
        subnet: None,
        gateway: None,
        mtu: Mtu::new(1414).unwrap(),
        internal: false,
        encryption,
        dns: false,
        dhcp: false,
        host_access: false,
        icc: true,
        subnet6: None,
        gateway6: None,
    };
    let sealed = |cipher, default_cipher, key| net(Some(Encryption { cipher, default_cipher, key }));
    let (aes, chacha) = (Cipher::Aes256Gcm, Cipher::ChaCha20Poly1305);
    // Hosts with different CPUs defaulting differently, or naming different
    // ciphers, define the same network: each opens what the other seals.
    let on_aes_cpu = sealed(aes, true, KeySource::Cluster);
    let elsewhere = sealed(chacha, true, KeySource::Cluster);
    assert!(on_aes_cpu.same_definition(&elsewhere));
    assert!(on_aes_cpu.same_definition(&sealed(chacha, false, KeySource::Cluster)));
    // What does differ: the key ring, and whether it is encrypted at all.
    assert!(!on_aes_cpu.same_definition(&sealed(aes, true, KeySource::Own)));
    assert!(!on_aes_cpu.same_definition(&net(None)));
    assert!(!on_aes_cpu.same_definition(&NetworkConfig { mtu: Mtu::new(1400).unwrap(), ..on_aes_cpu.clone() }));

    // Adopted here, a default cipher becomes this CPU's; a named one stays.
    let here = Cipher::preferred();
    assert_eq!(elsewhere.clone().with_this_hosts_cipher(), sealed(here, true, KeySource::Cluster));
    assert_eq!(on_aes_cpu.clone().with_this_hosts_cipher(), sealed(here, true, KeySource::Cluster));
    let named = sealed(aes, false, KeySource::Own);
    assert_eq!(named.clone().with_this_hosts_cipher(), named);
    assert_eq!(net(None).with_this_hosts_cipher(), net(None));

    // State files and gossip: the flag only when set; a definition without
    // it (an older version's) keeps its cipher as named.
    let json = serde_json::to_string(&on_aes_cpu.encryption).unwrap();
    assert_eq!(json, r#"{"cipher":"aes-256-gcm","default_cipher":true,"key":"cluster"}"#);
    assert_eq!(serde_json::to_string(&named.encryption).unwrap(), r#"{"cipher":"aes-256-gcm","key":"own"}"#);
    let old: Encryption = serde_json::from_str(r#"{"cipher":"chacha20-poly1305","key":"cluster"}"#).unwrap();
    assert_eq!(old, Encryption { cipher: chacha, default_cipher: false, key: KeySource::Cluster });
}

#[test]
fn published_ports_have_bounds_and_idle_timeouts() {
    let head = "[host]\nname = \"h\"\n\n[[network]]\nname = \"front\"\nvni = 1\nsubnet = \"10.1.0.0/24\"\n";
    let publish = |extra: &str| {
        format!("{head}\n[[publish]]\nnetwork = \"front\"\ncontainer = \"web\"\nhost_port = 8080\nport = 80\n{extra}")
    };
    let tcp = parse(&publish("")).unwrap().publish.remove(0);
    assert_eq!(tcp.idle_timeout, Some(Duration::from_secs(7440)), "TCP: RFC 5382's 2 h 4 min");
    assert_eq!((tcp.max_connections, tcp.max_per_source), (1024, 256));
    let udp = parse(&publish("protocol = \"udp\"")).unwrap().publish.remove(0);
    assert_eq!(udp.idle_timeout, Some(Duration::from_secs(30)), "UDP: conntrack's 30 s");
    let never = parse(&publish("idle_timeout = 0\nmax_connections = 100")).unwrap().publish.remove(0);
    assert_eq!((never.idle_timeout, never.max_connections, never.max_per_source), (None, 100, 100));
    let set = parse(&publish("idle_timeout = 5\nmax_connections = 10\nmax_per_source = 2")).unwrap().publish.remove(0);
    assert_eq!((set.idle_timeout, set.max_connections, set.max_per_source), (Some(Duration::from_secs(5)), 10, 2));

    let errs =
        errors(&publish("protocol = \"udp\"\nidle_timeout = 0\nmax_connections = 0\nmax_per_source = 3")).join("\n");
    assert!(errs.contains("publish[0].idle_timeout: 0 is out of range 1..=86400"), "{errs}");
    assert!(errs.contains("publish[0].max_connections: 0 is out of range 1..=65536"), "{errs}");
    let errs = errors(&publish("max_connections = 2\nmax_per_source = 3\nidle_timeout = -1")).join("\n");
    assert!(errs.contains("publish[0].max_per_source: 3 is more than max_connections (2)"), "{errs}");
    assert!(errs.contains("publish[0].idle_timeout: -1 is out of range 0..=604800"), "{errs}");

    // Saved by an older switchd (no bounds): the defaults; and a round trip.
    let old = r#"{"network":"front","container":"web","host_ip":"0.0.0.0","host_port":53,"port":53,"protocol":"udp"}"#;
    let restored: PublishConfig = serde_json::from_str(old).unwrap();
    assert_eq!((restored.idle_timeout, restored.max_connections), (Some(Duration::from_secs(30)), 1024));
    for p in [tcp, udp, never, set] {
        let back: PublishConfig = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }
}

#[test]
fn socket_paths_must_fit_a_unix_socket_address() {
    // sun_path: 108 bytes with the NUL.
    let fits = format!("/tmp/{}", "s".repeat(107 - 5));
    let long = format!("{fits}x");
    assert!(parse(&format!("[host]\nname = \"h\"\ncontrol_socket = \"{fits}\"\n")).is_ok());
    let errs = errors(&format!(
        "[host]\nname = \"h\"\ncontrol_socket = \"{long}\"\n\n[docker]\nsocket = \"{}.sock\"\napi_socket = \"{long}\"\n",
        &long[..long.len() - 5]
    ))
    .join("\n");
    for key in ["host.control_socket", "docker.socket", "docker.api_socket"] {
        assert!(
            errs.contains(&format!("{key}: ")) && errs.contains("is 108 bytes; a Unix socket path is at most 107"),
            "{key}: {errs}"
        );
    }
    assert_eq!(errs.lines().count(), 3, "{errs}");
}

#[test]
fn vtep_addresses_are_unicast() {
    for (ip, why) in [
        ("255.255.255.255", "broadcast"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("::ffff:255.255.255.255", "broadcast"),
    ] {
        let errs = errors(&format!("[host]\nname = \"h\"\nunderlay_ip = \"{ip}\"\n")).join("\n");
        assert!(errs.contains(&format!("host.underlay_ip: {ip} cannot be a VTEP address: it is {why}")), "{errs}");
    }
    let errs = errors(
        "[host]\nname = \"h\"\nunderlay_ip = \"198.18.0.1\"\n[[peer]]\nunderlay_ip = \"255.255.255.255\"\n\
         [gossip]\nseeds = [\"255.255.255.255:7946\"]\nkey_file = \"/nonexistent\"\n",
    )
    .join("\n");
    assert!(errs.contains("peer[0].underlay_ip: 255.255.255.255 cannot be a VTEP address: it is broadcast"), "{errs}");
    assert!(errs.contains("gossip.seeds[0]: 255.255.255.255 is not a unicast address"), "{errs}");
    assert!(
        parse("[host]\nname = \"h\"\nunderlay_ip = \"198.18.0.255\"\n").is_ok(),
        "only the limited broadcast is known"
    );
}

#[test]
fn huge_values_and_keys_are_cut_in_errors() {
    let huge = "a".repeat(1 << 20);
    for text in [
        format!("[host]\nname = \"{huge}\"\n"),
        format!("[host]\nname = \"h\"\nunderlay_ip = \"{huge}\"\n"),
        format!("[host]\nname = \"h\"\nvxlan_port = \"{huge}\"\n"),
        format!("[host]\nname = \"h\"\n{huge} = 1\n"),
        format!("[host]\nname = \"h\"\ncontrol_socket = \"/{huge}\"\n"),
        format!("[host]\nname = \"h\"\n[[network]]\nname = \"n\"\nvni = 1\nencrypted = true\ncipher = \"{huge}\"\n"),
    ] {
        let message = parse(&text).unwrap_err().to_string();
        assert!(message.len() < 1000, "{} bytes: {}", message.len(), &message[..200]);
        assert!(message.contains("aaaa"), "the start of the value is shown: {message}");
    }
    let message = parse(&format!("[host]\nname = \"{huge}\"\n")).unwrap_err().to_string();
    assert!(message.contains(&format!("... ({} bytes) is longer than 64 characters", huge.len())), "{message}");
}

/// Found by fuzzing (host_toml): an unknown key that is empty printed as
/// no key at all (`host.toml:1:1: unknown key`).
#[test]
fn keys_that_are_not_bare_are_quoted_in_errors() {
    let errs = |text: &str| parse(text).unwrap_err().to_string();
    assert_eq!(errs("['']\n"), "host.toml:1:1: \"\": unknown key");
    assert_eq!(errs("[host]\nname = \"h\"\n\"a.b\" = 1\n"), "host.toml:3:9: host.\"a.b\": unknown key");
    assert_eq!(errs("[host]\nname = \"h\"\n\"\" = 1\n"), "host.toml:3:6: host.\"\": unknown key");
}

#[test]
fn config_files_are_read_only_so_far() {
    let e = Config::load(Path::new("/dev/zero")).unwrap_err().to_string();
    assert_eq!(e, "/dev/zero: cannot read: larger than 16 MiB");
    let dir = std::env::temp_dir().join(format!("switchd-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let binary = dir.join("binary.toml");
    std::fs::write(&binary, [0xff, 0xfe, b'\n']).unwrap();
    assert!(Config::load(&binary).unwrap_err().to_string().ends_with("cannot read: not UTF-8 text"));
    let good = dir.join("good.toml");
    std::fs::write(&good, "[host]\nname = \"h\"\n").unwrap();
    assert_eq!(Config::load(&good).unwrap().host.name.as_str(), "h");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn services_are_checked_and_each_error_named() {
    let base = "[host]\nname = \"h\"\n\n[[network]]\nname = \"front\"\nvni = 100\nsubnet = \"10.10.0.0/24\"\n\n[[network]]\nname = \"l2\"\nvni = 200\n";
    let ok = parse(&format!(
        "{base}\n[[service]]\nname = \"web\"\nnetwork = \"front\"\nports = [\"80/tcp\", \"53/udp\", \"8080\"]\nhealth = \"http:/healthz\"\nhealth_interval_ms = 500\n\n[[port]]\nnetwork = \"front\"\nnetns = \"b1\"\nservice = \"web\"\n"
    ))
    .unwrap();
    let web = &ok.services[0];
    assert_eq!((web.mode, web.vip), (ServiceMode::Vip, None), "the VIP comes from IPAM at start");
    let ports: Vec<String> = web.ports.iter().map(|p| p.to_string()).collect();
    assert_eq!(ports, ["80/tcp", "53/udp", "8080/tcp"], "in the order given: the first TCP one is checked");
    let health = web.health.as_ref().unwrap();
    assert_eq!((health.interval, health.threshold), (Duration::from_millis(500), HealthCheck::DEFAULT_THRESHOLD));
    assert_eq!(ok.ports[0].services, [Name::new("web").unwrap()]);

    let bad = errors(&format!(
        "{base}
[[service]]
name = \"web\"
network = \"nowhere\"

[[service]]
name = \"tasks.web\"
network = \"front\"

[[service]]
name = \"a\"
network = \"l2\"

[[service]]
name = \"b\"
network = \"front\"
vip = \"10.99.0.1\"
ports = [\"http\", \"70000\", \"80/sctp\"]
health = \"ping\"

[[service]]
name = \"c\"
network = \"front\"
mode = \"rr\"
health = \"http:no-slash\"
health_threshold = 0

[[service]]
name = \"d\"
network = \"front\"
health = \"tcp\"
"
    ));
    let expect = [
        "service[0].network: no network named \"nowhere\"",
        "service[1].name: \"tasks.web\" starts with \"tasks.\"",
        "service[2].mode: a VIP needs a subnet or subnet6; network \"l2\" has none",
        "service[3].ports[0]: \"http\" is not a port number",
        "service[3].ports[1]: 70000 is out of range 1..=65535",
        "service[3].ports[2]: \"sctp\" is not a protocol",
        "service[3].vip: 10.99.0.1 is not a usable IPv4 address of network \"front\"",
        "service[3].health: \"ping\" is not a health check",
        "service[4].mode: \"rr\" is not a mode",
        "service[4].health: \"no-slash\" is not an HTTP path",
        "service[4].health_threshold: 0 is out of range 1..=10",
        "service[5].health: checks the service's first TCP port, and it has none",
    ];
    for e in expect {
        assert!(bad.iter().any(|b| b.contains(e)), "missing {e:?} in:\n{}", bad.join("\n"));
    }
}

#[test]
fn mesh_ports_are_a_services_and_checked() {
    let base = "[host]\nname = \"h\"\n\n[[network]]\nname = \"front\"\nvni = 100\nsubnet = \"10.10.0.0/24\"\n\n[[service]]\nname = \"web\"\nnetwork = \"front\"\nports = [\"80/tcp\"]\npublish = [\"8080:80\"]\n\n[[service]]\nname = \"dns\"\nnetwork = \"front\"\nmode = \"dnsrr\"\n";
    let ok =
        parse(&format!("{base}\n[[publish]]\nnetwork = \"front\"\nservice = \"web\"\nhost_port = 8443\nport = 80\n"))
            .unwrap();
    let mesh: Vec<String> = ok.services[0].publish.iter().map(|p| p.to_string()).collect();
    assert_eq!(mesh, ["8080:80/tcp", "8443:80/tcp"], "publish = [...] and [[publish]] service alike");
    assert!(ok.publish.is_empty(), "no container's port");

    let bad = errors(&format!(
        "{base}
[[publish]]
network = \"front\"
service = \"web\"
host_port = 8080
port = 80

[[publish]]
network = \"front\"
service = \"api\"
host_port = 9000
port = 80

[[publish]]
network = \"front\"
service = \"web\"
container = \"c\"
host_port = 9001
port = 80

[[publish]]
network = \"front\"
service = \"web\"
host_port = 9002
port = 81

[[publish]]
network = \"front\"
service = \"dns\"
host_port = 9003
port = 53

[[publish]]
network = \"front\"
container = \"c\"
host_port = 8080
port = 80
"
    ));
    let expect = [
        "publish[0].host_port: 8080/tcp is already published for service \"web\"",
        "publish[1].service: \"api\" is no [[service]] of network \"front\" in this file",
        "publish[2].service: names a service and a container",
        "publish[3].host_port: service \"web\" does not balance 81/tcp (its ports: 80/tcp)",
        "publish[4].host_port: the routing mesh leads to a VIP; service \"dns\" is mode dnsrr",
        "publish[5].host_port: 8080/tcp is the routing mesh's port for service \"web\"",
    ];
    for e in expect {
        assert!(bad.iter().any(|b| b.contains(e)), "missing {e:?} in:\n{}", bad.join("\n"));
    }
    assert_eq!(validate::mesh_port("5353:53/udp").unwrap().to_string(), "5353:53/udp");
    for wrong in ["8080", "0:80", "8080:80/sctp", "a:b"] {
        assert!(validate::mesh_port(wrong).is_err(), "{wrong}");
    }
}

#[test]
fn subnet6_is_an_ipv6_64_with_a_gateway_in_it() {
    let base = "[host]\nname = \"h\"\n\n[[network]]\nname = \"dual\"\nvni = 100\nsubnet = \"10.10.0.0/24\"\n";
    let ok = parse(&format!("{base}subnet6 = \"fd00:10::/64\"\n")).unwrap();
    let net = &ok.networks[0];
    assert_eq!(net.gateway6, Some("fd00:10::1".parse().unwrap()), "the first address");
    assert_eq!(net.slaac_prefix(), Some("fd00:10::".parse().unwrap()));
    assert_eq!(parse(base).unwrap().networks[0].subnet6, None, "IPv4 only unless asked");
    let bad = |extra: &str| errors(&format!("{base}{extra}")).join("\n");
    assert!(
        bad("subnet6 = \"fd00:10::/80\"\n").contains("network[0].subnet6: fd00:10::/80 is a /80; subnet6 is a /64")
    );
    assert!(bad("subnet6 = \"10.20.0.0/24\"\n").contains("is IPv4; subnet6 is an IPv6 /64"));
    assert!(
        bad("subnet6 = \"fd00:10::/64\"\ngateway6 = \"fd00:99::1\"\n").contains("is not a usable address in subnet6")
    );
    assert!(bad("gateway6 = \"fd00:10::1\"\n").contains("network[0].gateway6: needs a subnet6"));
    // ipv6 = true alone: the network's own /64, from its VNI.
    let auto = parse(&format!("{base}ipv6 = true\n")).unwrap();
    assert_eq!(auto.networks[0].subnet6.map(|s| s.to_string()).as_deref(), Some("fd5d:6700:64::/64"), "VNI 100");
    assert_eq!(crate::default_subnet6(0xAB_CDEF).to_string(), "fd5d:67ab:cdef::/64");
    assert!(bad("ipv6 = false\nsubnet6 = \"fd00:10::/64\"\n").contains("network[0].ipv6: is false"));
    // IPv6 only: no IPv4 subnet; the gateway serves names (and DHCPv6) all the same.
    let six = "[host]\nname = \"h\"\n\n[[network]]\nname = \"six\"\nvni = 600\nsubnet6 = \"fd00:60::/64\"\n";
    let net = &parse(six).unwrap().networks[0];
    assert_eq!((net.subnet, net.gateway6, net.dns, net.dhcp), (None, Some("fd00:60::1".parse().unwrap()), true, true));
    let plain = "[host]\nname = \"h\"\n\n[[network]]\nname = \"l2\"\nvni = 601\ndns = true\n";
    assert!(errors(plain).join("\n").contains("network[0].dns: needs a subnet or subnet6"), "{:?}", errors(plain));
}

#[test]
fn a_ports_ip6_is_a_usable_address_of_its_networks_subnet6() {
    let base = "[host]\nname = \"h\"\n\n[[network]]\nname = \"dual\"\nvni = 100\nsubnet = \"10.10.0.0/24\"\nsubnet6 = \"fd00:10::/64\"\n\n[[network]]\nname = \"four\"\nvni = 101\nsubnet = \"10.11.0.0/24\"\n";
    let port = |ns: &str, net: &str, extra: &str| format!("\n[[port]]\nnetwork = \"{net}\"\nnetns = \"{ns}\"\n{extra}");
    let ok = parse(&format!("{base}{}", port("c1", "dual", "ip6 = \"fd00:10::10\"\n"))).unwrap();
    assert_eq!(ok.ports[0].ip6, Some("fd00:10::10".parse().unwrap()));
    let text = [
        port("c1", "dual", "ip6 = \"fd00:99::10\"\n"),
        port("c2", "dual", "ip6 = \"fd00:10::1\"\n"),
        port("c3", "four", "ip6 = \"fd00:10::11\"\n"),
        port("c4", "dual", "ip6 = \"10.10.0.9\"\n"),
        port("c5", "dual", "ip6 = \"fd00:10::12\"\ndhcp = true\n"),
        port("c6", "dual", "ip6 = \"fd00:10::13\"\n"),
        port("c7", "dual", "ip6 = \"fd00:10::13\"\n"),
    ]
    .concat();
    let errs = errors(&format!("{base}{text}")).join("\n");
    for expected in [
        "port[0].ip6: fd00:99::10 is not a usable address in subnet6 fd00:10::/64 of network \"dual\"",
        "port[1].ip6: fd00:10::1 is the gateway6 of network \"dual\"",
        "port[2].ip6: network \"four\" has no subnet6",
        "port[3].ip6: 10.10.0.9 is not an IPv6 address",
        "port[4].ip6: does not go with dhcp",
        "port[6].ip6: fd00:10::13 on network \"dual\" is already used by port[5]",
    ] {
        assert!(errs.contains(expected), "missing {expected:?} in\n{errs}");
    }
}

#[test]
fn a_services_vip6_is_a_usable_address_of_the_subnet6() {
    let base = "[host]\nname = \"h\"\n\n[[network]]\nname = \"dual\"\nvni = 100\nsubnet = \"10.10.0.0/24\"\nsubnet6 = \"fd00:10::/64\"\n\n[[network]]\nname = \"four\"\nvni = 101\nsubnet = \"10.11.0.0/24\"\n\n[[network]]\nname = \"six\"\nvni = 102\nsubnet6 = \"fd00:12::/64\"\n";
    let service =
        |name: &str, net: &str, extra: &str| format!("\n[[service]]\nname = \"{name}\"\nnetwork = \"{net}\"\n{extra}");
    let ok =
        parse(&format!("{base}{}{}", service("web", "dual", "vip6 = \"fd00:10::c8\"\n"), service("api", "six", "")))
            .unwrap();
    assert_eq!(ok.services[0].vip6, Some("fd00:10::c8".parse().unwrap()));
    assert_eq!((ok.services[1].vip, ok.services[1].vip6), (None, None), "an IPv6-only network's VIP6 is picked later");
    let text = [
        service("a", "dual", "vip6 = \"fd00:99::c8\"\n"),
        service("b", "dual", "vip6 = \"fd00:10::1\"\n"),
        service("c", "four", "vip6 = \"fd00:10::c9\"\n"),
        service("d", "dual", "vip6 = \"10.10.0.9\"\n"),
        service("e", "dual", "mode = \"dnsrr\"\nvip6 = \"fd00:10::ca\"\n"),
        service("f", "six", "vip = \"10.12.0.5\"\n"),
    ]
    .concat();
    let errs = errors(&format!("{base}{text}")).join("\n");
    for expected in [
        "service[0].vip6: fd00:99::c8 is not a usable address of network \"dual\"",
        "service[1].vip6: fd00:10::1 is not a usable address",
        "service[2].vip6: network \"four\" has no subnet6",
        "service[3].vip6: 10.10.0.9 is not an IPv6 address",
        "service[4].vip6: applies to mode \"vip\" only",
        "service[5].vip: network \"six\" has no IPv4 subnet; an IPv6 VIP is `vip6`",
    ] {
        assert!(errs.contains(expected), "missing {expected:?} in\n{errs}");
    }
}
