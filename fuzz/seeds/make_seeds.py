#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets under fuzz/seeds/<target>/.

Every seed is a real input, in the shape a real client sends it, written
in each target's input format (see the doc comment at the top of each
fuzz_targets/<target>.rs):

- dhcp_respond: DHCP requests as busybox udhcpc and ISC dhclient sent
- dhcp6_respond: DHCPv6 client messages as ISC dhclient -6 sends them
  them here (captured on a veth pair, rebuilt field by field with their
  option order and padding; the xids are made up), and as
  systemd-networkd and dhcpcd send them (after their sources), for the
  lease the harness holds (10.1.0.9 from server 10.1.0.1).
- dns_answer: DNS queries as dig, busybox nslookup and glibc sent them here
  (captured bytes), and shapes of musl, unbound and systemd-resolved
  queries and of what is refused.
- gossip_state: published gossip state as `state::encode` writes it.
- gossip_wire, sealed_open: records sealing chitchat messages and
  Ethernet frames, raw datagrams in the sealed layouts, and replays.
- plugin_http: one connection of dockerd 20.10 to a plugin, as captured
  (every request of a network's and a container's life, in order), each
  request alone, and what the test suite sends.
- control_request: switchctl's request lines, one per command it has
  (captured from this tree's switchctl), a session of several on one
  connection, and the server's unit tests' bad lines.
- cni_input: CNI environments and network configurations as podman 4.3
  passed them here (captured), as containerd passes them, and the test
  suite's bad ones.
- host_toml: examples/host.toml, the README's host.toml snippets and the
  test suite's configurations.

Run from anywhere: `python3 fuzz/seeds/make_seeds.py`. It replaces the
seeds of these targets only (port_guard's are kept by hand).
"""

import json
import pathlib
import re
import shutil
import struct

SEEDS = pathlib.Path(__file__).resolve().parent
ROOT = SEEDS.parent.parent


def write(target, seeds):
    d = SEEDS / target
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    for name, data in seeds.items():
        if isinstance(data, str):
            data = data.encode()
        (d / name).write_bytes(data)
    print(f"{target}: {len(seeds)} seeds")


def mac(text):
    return bytes(int(b, 16) for b in text.split(":"))


def ip4(text):
    return bytes(int(b) for b in text.split("."))


# ---------------------------------------------------------------- DHCP

CLIENT = mac("02:42:0a:01:00:09")
LEASED, SERVER = ip4("10.1.0.9"), ip4("10.1.0.1")


def opt(code, value):
    return bytes([code, len(value)]) + value


def dhcp(xid, options, chaddr=CLIENT, secs=0, flags=0, ciaddr=b"\0" * 4, pad_to=300):
    fixed = struct.pack("!BBBBIHH", 1, 1, 6, 0, xid, secs, flags) + ciaddr + b"\0" * 12
    fixed += chaddr + b"\0" * 10 + b"\0" * 64 + b"\0" * 128
    msg = fixed + bytes([99, 130, 83, 99]) + b"".join(options) + b"\xff"
    return msg + b"\0" * max(0, pad_to - len(msg))


def dhcp_seeds():
    # busybox 1.35 udhcpc (Debian 12), as captured: max size 576, its parameter
    # list, hostname (-x hostname:web), vendor class, client id last; 300 bytes.
    bb_tail = [opt(57, struct.pack("!H", 576)), opt(55, bytes([1, 3, 6, 12, 15, 28, 42]))]
    bb_id = [opt(60, b"udhcp 1.35.0"), opt(61, b"\x01" + CLIENT)]
    bb_host = [opt(12, b"web")]
    # ISC dhclient 4.4.3-P1 (Debian 12), as captured: no client id, the host
    # name, its parameter list; 300 bytes.
    isc_tail = [opt(12, b"vm"), opt(55, bytes([1, 28, 2, 3, 15, 6, 119, 12, 44, 47, 26, 121, 42]))]
    # systemd-networkd (after its source): RFC 4361 client id (IAID + DUID-EN).
    nd_id = opt(61, b"\xff" + bytes.fromhex("5cf7e6c1") + bytes.fromhex("0002000000ab11f3c8c2ad0a6c9f3b1e"))
    nd_params = opt(55, bytes([1, 3, 6, 12, 15, 26, 28, 42, 108, 114, 119, 121, 249, 252]))
    # dhcpcd 9 (after its source): vendor class with the kernel, rapid commit.
    dc_params = opt(55, bytes([1, 121, 33, 3, 6, 28, 51, 58, 59, 108, 119]))
    dc_vendor = opt(60, b"dhcpcd-9.4.1:Linux-6.1.0-18-amd64:x86_64:GenuineIntel")
    t = lambda kind: opt(53, bytes([kind]))  # noqa: E731
    return {
        "udhcpc_discover": dhcp(0x3903F326, [t(1), *bb_tail, *bb_host, *bb_id]),
        "udhcpc_request_selecting": dhcp(0x3903F326, [t(3), opt(50, LEASED), opt(54, SERVER), *bb_tail, *bb_host,
                                                      *bb_id]),
        # udhcpc -r 10.1.0.9 -B: the address asked for, broadcast replies.
        "udhcpc_discover_requested_broadcast": dhcp(0x5B1E0D02, [t(1), opt(50, LEASED), *bb_tail, *bb_id],
                                                    flags=0x8000),
        "udhcpc_request_broadcast": dhcp(0x5B1E0D02, [t(3), opt(50, LEASED), opt(54, SERVER), *bb_tail, *bb_id],
                                         flags=0x8000),
        # Renewing (unicast from its address), and what a confused or stale client sends.
        "udhcpc_request_renewing": dhcp(0x8C1A77E4, [t(3), *bb_tail, *bb_host, *bb_id], ciaddr=LEASED),
        "udhcpc_request_other_address": dhcp(0x11223344, [t(3), opt(50, ip4("10.1.0.77")), opt(54, SERVER),
                                                          *bb_tail, *bb_id]),
        "udhcpc_request_other_server": dhcp(0x55667788, [t(3), opt(50, LEASED), opt(54, ip4("10.1.0.254")),
                                                         *bb_tail, *bb_id]),
        "udhcpc_release": dhcp(0x0BADCAFE, [t(7), opt(54, SERVER), *bb_id], ciaddr=LEASED),
        "udhcpc_decline": dhcp(0x0DEC1DE0, [t(4), opt(50, LEASED), opt(54, SERVER), *bb_id]),
        "dhclient_discover": dhcp(0x6E2F1A90, [t(1), *isc_tail]),
        # dhclient counts seconds: an odd `secs` makes the harness's lease another MAC's.
        "dhclient_discover_secs3": dhcp(0x6E2F1A90, [t(1), *isc_tail], secs=3),
        "dhclient_request_selecting": dhcp(0x6E2F1A90, [t(3), opt(54, SERVER), opt(50, LEASED), *isc_tail]),
        "dhclient_request_init_reboot": dhcp(0x1F0E2D3C, [t(3), opt(50, LEASED), *isc_tail]),
        "dhclient_inform": dhcp(0x72C0FFEE, [t(8), *isc_tail], ciaddr=LEASED),
        "networkd_discover": dhcp(0xA1B2C3D4, [t(1), opt(57, struct.pack("!H", 1472)), nd_id, opt(12, b"web"),
                                               nd_params], flags=0x8000),
        "networkd_request": dhcp(0xA1B2C3D4, [t(3), nd_id, opt(50, LEASED), opt(54, SERVER),
                                              opt(57, struct.pack("!H", 1472)), nd_params], flags=0x8000),
        "dhcpcd_discover": dhcp(0x4D2F7B11, [t(1), opt(61, b"\x01" + CLIENT), opt(57, struct.pack("!H", 1472)),
                                             dc_vendor, opt(12, b"web"), opt(80, b""), dc_params]),
    }


# ---------------------------------------------------------------- DNS


def qname(name):
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def edns(size=1232, do=False, cookie=None):
    rdata = b""
    if cookie is not None:
        rdata = struct.pack("!HH", 10, len(cookie)) + cookie
    return b"\0" + struct.pack("!HHIH", 41, size, 0x8000 if do else 0, len(rdata)) + rdata


def dns(qid, questions, flags=0x0100, additional=()):
    head = struct.pack("!HHHHHH", qid, flags, len(questions), 0, 0, len(additional))
    body = b"".join(qname(n) + struct.pack("!HH", t, c) for n, t, c in questions)
    return head + body + b"".join(additional)


A, AAAA, PTR, MX, TXT, IN, CH = 1, 28, 12, 15, 16, 1, 3


# Queries as captured on this machine (Debian 12): dig 9.18 (RD+AD, EDNS
# 1232 with a cookie), busybox 1.35 nslookup, glibc's getent (search domain
# "front", A and AAAA in parallel). Over TCP the 2-byte length prefix
# (RFC 7766) is taken off: io/gateway.rs reads it, `dns::answer` gets the rest.
DNS_CAPTURED = {
    "dig_a": "0d2901200001000000000001037765620566726f6e74000001000100002904d000000000000c000a0008a33f77af90db3fe4",
    "dig_aaaa": "d677012000010000000000010264620566726f6e7400001c000100002904d000000000000c000a0008f1ae7646b2a23892",
    "dig_x_ptr4": "395b0120000100000000000101320130013102313007696e2d61646472046172706100000c000100002904d0000000"
                  "00000c000a00086ddea94db9314d1a",
    "dig_x_ptr6": "a431012000010000000000010132013001300130013001300130013001300130013001300130013001300130013001"
                  "300130013001300130013001300130013001300130013001300164016603697036046172706100000c000100002904"
                  "d000000000000c000a00085d8d2ce981ebd95b",
    "dig_tcp_aaaa": "003176c1012000010000000000010264620566726f6e7400001c000100002904d000000000000c000a0008a965"
                    "3df18c2c1710",
    "dig_tcp_any_bufsize4096": "003208cc01200001000000000001037765620566726f6e740000ff0001000029100000000000000c"
                               "000a00080ae35af317049672",
    "nslookup_a": "b07c01000001000000000000037765620000010001",
    "nslookup_aaaa": "8104010000010000000000000377656200001c0001",
    "nslookup_type_aaaa": "46ee0100000100000000000002646200001c0001",
    "getent_a": "6a0701000001000000000000037765620566726f6e740000010001",
    "getent_aaaa": "d70501000001000000000000037765620566726f6e7400001c0001",
    "getent_search_a": "ed1801000001000000000000037765620566726f6e740566726f6e740000010001",
    "getent_search_aaaa": "5b7c010000010000000000000264620566726f6e7400001c0001",
    "getent_short_aaaa": "87020100000100000000000002646200001c0001",
}


def dns_seeds():
    seeds = {}
    for name, hexed in DNS_CAPTURED.items():
        data = bytes.fromhex(hexed)
        if "_tcp_" in name:
            assert struct.unpack("!H", data[:2])[0] == len(data) - 2
            data = data[2:]
        seeds[name] = data
    # Shapes of other resolvers and of what is refused.
    seeds.update({
        "musl_a": dns(0x9A31, [("db", A, IN)]),
        "resolved_nxdomain_do": dns(0x2E81, [("example.com", A, IN)], 0x0100, [edns(1232, do=True)]),
        "unbound_0x20_case": dns(0xB00B, [("wEb.FrOnT", A, IN)], 0x0000, [edns(1232, do=True)]),
        "ptr_unknown": dns(0x7A7C, [("9.9.9.9.in-addr.arpa", PTR, IN)]),
        "mx_nodata": dns(0x3131, [("web", MX, IN)]),
        "chaos_version_bind": dns(0x5EED, [("version.bind", TXT, CH)]),
        "two_questions": dns(0x2222, [("web", A, IN), ("db", AAAA, IN)]),
        "opcode_status": dns(0x0505, [], 0x1000),
        "a_response": dns(0x4F1C, [("web.front", A, IN)], 0x8180),
        "truncated_header": dns(0x4F1C, [("web.front", A, IN)])[:11],
    })
    return seeds


# ---------------------------------------------------------------- gossip state


def gossip_state(pairs):
    # The harness splits pairs at invalid UTF-8 (0xff) and key from value at 0x01.
    return b"\xff".join(k.encode() + b"\x01" + json.dumps(v, separators=(",", ":")).encode() for k, v in pairs)


def gossip_state_seeds():
    front = {"vni": 100, "subnet": "10.10.0.0/24", "gateway": "10.10.0.1", "mtu": 1450, "internal": True, "dhcp": False}
    return {
        "plain": gossip_state([
            ("host", {"underlay_ip": "198.18.0.1", "vxlan_port": 4789, "leaving": False}),
            ("net/front", front),
            ("ep/front/02:42:0a:0a:00:02", {"ip": "10.10.0.2", "name": "web"}),
            ("ipam/front", {"3": 1795000000000}),
        ]),
        "encrypted_with_keys": gossip_state([
            ("host", {"underlay_ip": "198.18.0.2", "vxlan_port": 4789, "leaving": False, "session": 8118001297245110019}),
            ("keys", {"cluster": {"sending": "e32eb522", "accepted": ["e32eb522"]},
                      "net/vault": {"sending": "0badf00d", "accepted": ["0badf00d", "1234abcd"]}}),
            ("net/front", {"vni": 100, "subnet": "10.10.0.0/24", "gateway": "10.10.0.1", "mtu": 1450, "internal": False}),
            ("net/vault", {"vni": 300, "subnet": "10.30.0.0/24", "gateway": "10.30.0.1", "mtu": 1414, "internal": True,
                           "encryption": {"cipher": "chacha20-poly1305", "key": "own"}}),
            ("net/secret", {"vni": 301, "subnet": "10.31.0.0/24", "gateway": "10.31.0.1", "mtu": 1414, "internal": False,
                            "encryption": {"cipher": "aes-256-gcm", "default_cipher": True, "key": "cluster"}}),
            ("ep/front/02:42:0a:0a:00:05", {"ip": "10.10.0.5", "name": "nginx"}),
            ("ep/vault/02:42:0a:1e:00:02", {"ip": "10.30.0.2", "name": "db"}),
            ("ipam/front", {"0": 1795000000000, "7": 1795000123456}),
            ("ipam/vault", {"1": 1795000000000}),
        ]),
        "leaving": gossip_state([("host", {"underlay_ip": "198.18.0.3", "vxlan_port": 4789, "leaving": True})]),
        "ipv6": gossip_state([
            ("host", {"underlay_ip": "fd00:198:18::1", "vxlan_port": 4789, "leaving": False}),
            ("net/v6", {"vni": 600, "subnet": "fd00:10::/64", "gateway": "fd00:10::1", "mtu": 1430, "internal": False}),
            ("ep/v6/02:42:0a:0a:00:09", {"ip": "fd00:10::9", "name": "web6"}),
            ("ipam/v6", {"15": 1795000000000}),
        ]),
        "l2_only_and_services_off": gossip_state([
            ("host", {"underlay_ip": "198.18.0.4", "vxlan_port": 8472, "leaving": False}),
            ("net/l2", {"vni": 700, "subnet": None, "gateway": None, "mtu": 1450, "internal": False}),
            ("net/lab", {"vni": 701, "subnet": "10.70.0.0/24", "gateway": "10.70.0.254", "mtu": 1450, "internal": False,
                         "dns": False, "dhcp": False, "host_access": True}),
            ("ep/l2/02:00:00:00:07:01", {"ip": None, "name": "box"}),
            ("ep/lab/02:42:0a:46:00:02", {"ip": "10.70.0.2", "name": "bench"}),
        ]),
        # What a confused member might publish: each entry is skipped and reported.
        "confused_member": gossip_state([
            ("host", {"underlay_ip": "198.18.0.5", "vxlan_port": 4789, "leaving": False}),
            ("net/front", front),
            ("ep/back/02:42:0a:0a:00:02", {"ip": "10.20.0.2", "name": "web"}),
            ("ep/front/01:00:5e:00:00:01", {"ip": "10.10.0.3", "name": "mcast"}),
            ("ep/front/02:42:0a:0a:00:04", {"ip": "10.10.0.1", "name": "gw"}),
            ("ipam/front", {"99": 1795000000000}),
            ("keys", {"cluster": {"sending": "e32eb522", "accepted": []}}),
            ("version2/extra", {"future": True}),
        ]),
    }


# ---------------------------------------------------------------- chitchat and frames


def cc_str(s):
    return struct.pack("<H", len(s)) + s.encode()


def cc_addr(ip, port):
    return b"\x04" + ip4(ip) + struct.pack("<H", port)


def chitchat_syn(nodes, cluster="switchd"):
    out = struct.pack("<H", 45139) + b"\x00" + b"\x00"  # magic, protocol V0, Syn
    out += struct.pack("<H", len(nodes))
    for node_id, generation, ip, heartbeat, max_version in nodes:
        out += cc_str(node_id) + struct.pack("<Q", generation) + cc_addr(ip, 7946)
        out += struct.pack("<QQQ", heartbeat, 0, max_version)
    return out + cc_str(cluster)


SYN_ONE = chitchat_syn([("host-a", 1795000000, "198.18.0.1", 42, 17)])
SYN_TWO = chitchat_syn([("host-a", 1795000000, "198.18.0.1", 42, 17), ("host-b", 1795000100, "198.18.0.2", 40, 9)])
BAD_CLUSTER = struct.pack("<H", 45139) + b"\x00\x03"


def eth(dst, src, ethertype, payload):
    return mac(dst) + mac(src) + struct.pack("!H", ethertype) + payload


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4(src, dst, proto, payload, ident=0x1C46):
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0x4000, 64, proto, 0, ip4(src), ip4(dst))
    head = head[:10] + struct.pack("!H", checksum(head)) + head[12:]
    if proto == 6:  # the TCP checksum over the pseudo-header
        pseudo = ip4(src) + ip4(dst) + struct.pack("!BBH", 0, 6, len(payload))
        payload = payload[:16] + struct.pack("!H", checksum(pseudo + payload)) + payload[18:]
    return head + payload


def ipv6_icmp(src, dst, icmp):
    src, dst = bytes.fromhex(src), bytes.fromhex(dst)
    pseudo = src + dst + struct.pack("!I3xB", len(icmp), 58)
    icmp = icmp[:2] + struct.pack("!H", checksum(pseudo + icmp)) + icmp[4:]
    return struct.pack("!IHBB", 0x60000000, len(icmp), 58, 255) + src + dst + icmp


WEB, DB, BCAST = "02:42:0a:0a:00:02", "02:42:0a:0a:00:03", "ff:ff:ff:ff:ff:ff"
ARP_REQUEST = eth(BCAST, WEB, 0x0806, bytes.fromhex("0001080006040001") + mac(WEB) + ip4("10.10.0.2")
                  + b"\0" * 6 + ip4("10.10.0.3"))
ARP_REPLY = eth(WEB, DB, 0x0806, bytes.fromhex("0001080006040002") + mac(DB) + ip4("10.10.0.3")
                + mac(WEB) + ip4("10.10.0.2"))
# An echo request as iputils ping sends it: id, sequence 1, 56 bytes of data.
PING = struct.pack("!BBHHH", 8, 0, 0, 0x1C46, 1) + bytes(range(56))
PING = PING[:2] + struct.pack("!H", checksum(PING)) + PING[4:]
ECHO = eth(DB, WEB, 0x0800, ipv4("10.10.0.2", "10.10.0.3", 1, PING))
# A TCP SYN as Linux sends it: MSS 1460, SACK permitted, timestamps, window scale 7.
SYN = eth(DB, WEB, 0x0800, ipv4("10.10.0.2", "10.10.0.3", 6, bytes.fromhex(
    "c35a1f90a1b2c3d400000000a0027210" "00000000020405b40402080a0001e2400000000001030307")))
# A neighbour solicitation for fe80::42:aff:fe0a:3, with the source link-layer address.
NS6 = eth("33:33:ff:0a:00:03", WEB, 0x86DD, ipv6_icmp(
    "fe8000000000000000420afffe0a0002",
    "ff0200000000000000000001ff0a0003",
    bytes([135, 0, 0, 0, 0, 0, 0, 0]) + bytes.fromhex("fe8000000000000000420afffe0a0003")
    + bytes([1, 1]) + mac(WEB)))


def record2(kind, payload):
    return bytes([kind, len(payload)]) + payload


def gossip_wire_seeds():
    # A raw datagram in the gossip layout, sealed under a key of another run.
    raw = b"sdg1" + bytes.fromhex("e32eb522") + struct.pack("!QQ", 0x70A1B2C3D4E5F607, 3)
    raw += struct.pack("!QIBB", 1795000000, 7, 0, 1) + SYN_ONE + bytes(16)
    return {
        "syn": record2(0, SYN_ONE),
        "syn_two_nodes_then_replay": record2(0, SYN_TWO) + record2(2, b"") + record2(2, b"\x05" * 40),
        "bad_cluster": record2(0, BAD_CLUSTER),
        "raw_foreign_datagram": record2(1, raw),
        "rounds": record2(0, SYN_ONE) + record2(0, SYN_TWO) + record2(2, b"\x00" * 29) + record2(1, raw[:40])
        + record2(0, BAD_CLUSTER),
    }


def record3(kind, arg, payload):
    return bytes([kind, arg, len(payload)]) + payload


def sealed_open_seeds():
    # A raw sealed VXLAN datagram: flags I+S, ChaCha20, lane 1, VNI 2, key id,
    # session, counter, then a frame and a tag (sealed under no key of this run).
    raw = bytes([0x48, 1]) + struct.pack("!H", 1) + (2).to_bytes(3, "big") + b"\0" + bytes.fromhex("e32eb522")
    raw += struct.pack("!QQ", 1 << 16, 0) + ARP_REQUEST + bytes(16)
    return {
        "arp_request": record3(0, 0x10, ARP_REQUEST),
        "arp_reply_aes": record3(0, 0x12, ARP_REPLY),
        "echo_two_boots": record3(0, 0x00, ECHO) + record3(0, 0x01, ECHO) + record3(0, 0x00, ECHO),
        "tcp_syn_then_flips": record3(0, 0x20, SYN) + record3(2, 3, b"") + record3(2, 200, b""),
        "ns6": record3(0, 0x30, NS6),
        "raw_foreign": record3(1, 0, raw) + record3(1, 0, raw[:43]),
        "lanes_and_networks": b"".join(record3(0, arg, f) for arg, f in
                                       [(0x00, ARP_REQUEST), (0x14, ARP_REPLY), (0x28, ECHO), (0x3C, SYN), (0x05, ECHO)]),
    }


# ---------------------------------------------------------------- Docker plugin HTTP

# One connection of dockerd 20.10.24 (Debian 12) to a network and IPAM
# plugin, as captured for `docker network create -d D --ipam-driver D
# --subnet 10.95.0.0/24 -o vni=900`, `docker run --network` (whose start then
# failed after Join) and `docker rm -f`, `docker network rm`: operations and
# bodies in order. Go's net/http frames each request the same way (below).
NET_ID = "71502aec721a301edfd2fe196fa6304679069f87e87238279410c9c9f60d372c"
EP_ID = "10c2726217e83e474b1455a73b77268ca3f5166a58dd09ea84547a088991e3de"
IDS = '{"NetworkID":"%s","EndpointID":"%s"}\n' % (NET_ID, EP_ID)
PORTS = '"Options":{"com.docker.network.endpoint.exposedports":[],"com.docker.network.portmap":[]}'
DOCKERD_CONNECTION = [
    ("Plugin.Activate", ""),
    ("NetworkDriver.GetCapabilities", ""),
    ("IpamDriver.GetCapabilities", ""),
    ("IpamDriver.GetDefaultAddressSpaces", ""),
    ("IpamDriver.RequestPool", '{"AddressSpace":"sdcap","Pool":"10.95.0.0/24","SubPool":"","Options":{},"V6":false}\n'),
    ("IpamDriver.RequestAddress",
     '{"PoolID":"10.95.0.0/24","Address":"","Options":{"RequestAddressType":"com.docker.network.gateway"}}\n'),
    ("NetworkDriver.CreateNetwork",
     '{"NetworkID":"%s","Options":{"com.docker.network.enable_ipv6":false,"com.docker.network.generic":{"vni":"900"}},'
     '"IPv4Data":[{"AddressSpace":"sdcap","Gateway":"10.95.0.1/24","Pool":"10.95.0.0/24"}],"IPv6Data":[]}\n' % NET_ID),
    ("IpamDriver.RequestAddress", '{"PoolID":"10.95.0.0/24","Address":"","Options":null}\n'),
    ("NetworkDriver.CreateEndpoint",
     '{"NetworkID":"%s","EndpointID":"%s","Interface":{"Address":"10.95.0.2/24","AddressIPv6":"","MacAddress":""},%s}\n'
     % (NET_ID, EP_ID, PORTS)),
    ("NetworkDriver.Join",
     '{"NetworkID":"%s","EndpointID":"%s","SandboxKey":"/tmp/cap/docker/exec/netns/5c0238129393",%s}\n'
     % (NET_ID, EP_ID, PORTS)),
    ("NetworkDriver.EndpointOperInfo", IDS),
    ("NetworkDriver.EndpointOperInfo", IDS),
    ("NetworkDriver.Leave", IDS),
    ("NetworkDriver.DeleteEndpoint", IDS),
    ("IpamDriver.ReleaseAddress", '{"PoolID":"10.95.0.0/24","Address":"10.95.0.2"}\n'),
    ("IpamDriver.ReleaseAddress", '{"PoolID":"10.95.0.0/24","Address":"10.95.0.1"}\n'),
    ("IpamDriver.ReleasePool", '{"PoolID":"10.95.0.0/24"}\n'),
    ("NetworkDriver.DeleteNetwork", '{"NetworkID":"%s"}\n' % NET_ID),
]
# What the capture did not reach, after libnetwork's remote driver (same framing).
LIBNETWORK_MORE = [
    ("NetworkDriver.ProgramExternalConnectivity", '{"NetworkID":"%s","EndpointID":"%s",%s}\n' % (NET_ID, EP_ID, PORTS)),
    ("NetworkDriver.RevokeExternalConnectivity", IDS),
    ("NetworkDriver.DiscoverNew", '{"DiscoveryType":1,"DiscoveryData":{"Address":"198.18.0.1","BindAddress":"",'
                                  '"Self":true}}\n'),
    ("IpamDriver.RequestPool", '{"AddressSpace":"sdcap","Pool":"","SubPool":"","Options":{},"V6":true}\n'),
]


def plugin_request(op, body):
    # dockerd's plugin client (Go net/http, compression off): an empty Host
    # for a Unix socket, a body only for operations with arguments
    # (json.Encoder's, ending in a newline).
    data = body.encode()
    head = (f"POST /{op} HTTP/1.1\r\nHost: \r\nUser-Agent: Go-http-client/1.1\r\n"
            f"Content-Length: {len(data)}\r\nAccept: application/vnd.docker.plugins.v1.2+json\r\n\r\n")
    return head.encode() + data


def plugin_http_seeds():
    seeds = {"dockerd_connection": b"".join(plugin_request(op, body) for op, body in DOCKERD_CONNECTION)}
    for op, body in DOCKERD_CONNECTION + LIBNETWORK_MORE:
        name = op.replace(".", "_")
        if name in seeds:
            name += "_2"
        seeds[name] = plugin_request(op, body)
    # dockerd 24 and later name a dummy host (Go 1.20.6 refuses an empty one).
    seeds["moby24_join"] = plugin_request(*DOCKERD_CONNECTION[9]).replace(b"Host: ", b"Host: plugin.moby.localhost")
    # The shapes of tests/tests/docker.rs and hostile_sockets.rs, and curl as
    # Docker's plugin docs debug a socket with.
    seeds["python_bad_json"] = b"POST /NetworkDriver.CreateNetwork HTTP/1.1\r\nContent-Length: 9\r\n\r\n{not json"
    seeds["python_unknown_op"] = b"POST /NetworkDriver.Teleport HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"
    seeds["two_content_lengths"] = (b"POST /Plugin.Activate HTTP/1.1\r\nContent-Length: 2\r\n"
                                    b"Content-Length: 40\r\n\r\n{}")
    seeds["chunked"] = (b"POST /NetworkDriver.GetCapabilities HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                        b"2\r\n{}\r\n0\r\n\r\n")
    seeds["too_large"] = b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n"
    seeds["curl_debug"] = (b"POST /NetworkDriver.GetCapabilities HTTP/1.1\r\nHost: localhost\r\n"
                           b"User-Agent: curl/7.88.1\r\nAccept: */*\r\nContent-Type: application/json\r\n"
                           b"Content-Length: 2\r\n\r\n{}")
    return seeds


# ---------------------------------------------------------------- control socket


# switchctl's request lines, as captured from this tree's switchctl by a server
# on its --socket: the command line, and the request it wrote (serde_json's
# compact form, which json.dumps(separators=(',', ':')) reproduces).
SWITCHCTL = [
    ('status', 'status',
     {'command': 'status'}),
    ('network_ls', 'network ls',
     {'command': 'network_ls'}),
    ('network_inspect', 'network inspect front',
     {'command': 'network_inspect', 'name': 'front'}),
    ('network_create', 'network create front --vni 100 --subnet 10.10.0.0/24',
     {'command': 'network_create',
      'network': {'name': 'front',
                  'vni': 100,
                  'subnet': '10.10.0.0/24',
                  'gateway': None,
                  'mtu': None,
                  'internal': False,
                  'encrypted': False,
                  'cipher': None,
                  'key_file': None,
                  'dns': None,
                  'dhcp': None,
                  'host_access': False}}),
    ('network_create_encrypted', 'network create vault --vni 300 --subnet 10.30.0.0/24 --internal --encrypted --cipher aes-256-gcm --key-file /etc/switchd/next.key',
     {'command': 'network_create',
      'network': {'name': 'vault',
                  'vni': 300,
                  'subnet': '10.30.0.0/24',
                  'gateway': None,
                  'mtu': None,
                  'internal': True,
                  'encrypted': True,
                  'cipher': 'aes-256-gcm',
                  'key_file': '/etc/switchd/next.key',
                  'dns': None,
                  'dhcp': None,
                  'host_access': False}}),
    ('network_create_services_off', 'network create lab --vni 701 --subnet 10.70.0.0/24 --gateway 10.70.0.254 --mtu 1400 --no-dns --no-dhcp --host-access',
     {'command': 'network_create',
      'network': {'name': 'lab',
                  'vni': 701,
                  'subnet': '10.70.0.0/24',
                  'gateway': '10.70.0.254',
                  'mtu': 1400,
                  'internal': False,
                  'encrypted': False,
                  'cipher': None,
                  'key_file': None,
                  'dns': False,
                  'dhcp': False,
                  'host_access': True}}),
    ('network_rm', 'network rm front back',
     {'command': 'network_rm', 'names': ['front', 'back']}),
    ('network_prune', 'network prune',
     {'command': 'network_prune'}),
    ('network_connect', 'network connect front web --ip 10.10.0.10',
     {'command': 'network_connect',
      'port': {'network': 'front',
               'netns': 'web',
               'name': None,
               'ifname': None,
               'ip': '10.10.0.10',
               'mac': None,
               'kind': 'tap',
               'host_ifname': None,
               'dhcp': False}}),
    ('network_connect_veth_dhcp', 'network connect front /proc/4242/ns/net --name db --ifname eth1 --mac 02:42:0a:0a:00:0b --kind veth --host-ifname vdb0 --dhcp',
     {'command': 'network_connect',
      'port': {'network': 'front',
               'netns': '/proc/4242/ns/net',
               'name': 'db',
               'ifname': 'eth1',
               'ip': None,
               'mac': '02:42:0a:0a:00:0b',
               'kind': 'veth',
               'host_ifname': 'vdb0',
               'dhcp': True}}),
    ('network_connect_uplink', 'network connect lan --kind uplink --host-ifname eth1',
     {'command': 'network_connect',
      'port': {'network': 'lan',
               'netns': None,
               'name': None,
               'ifname': None,
               'ip': None,
               'mac': None,
               'kind': 'uplink',
               'host_ifname': 'eth1',
               'dhcp': False}}),
    ('network_disconnect', 'network disconnect front web',
     {'command': 'network_disconnect', 'network': 'front', 'endpoint': 'web'}),
    ('fdb', 'fdb',
     {'command': 'fdb', 'network': None}),
    ('fdb_network', 'fdb front',
     {'command': 'fdb', 'network': 'front'}),
    ('stats', 'stats',
     {'command': 'stats'}),
    ('peers', 'peers',
     {'command': 'peers'}),
    ('key_ls', 'key ls',
     {'command': 'key_ls'}),
    ('key_add', 'key add /etc/switchd/next.key',
     {'command': 'key_add', 'file': '/etc/switchd/next.key', 'network': None}),
    ('key_add_network', 'key add /etc/switchd/next.key --network vault',
     {'command': 'key_add', 'file': '/etc/switchd/next.key', 'network': 'vault'}),
    ('key_use', 'key use e32eb522',
     {'command': 'key_use', 'id': 'e32eb522', 'force': False}),
    ('key_use_force', 'key use e32eb522 --force',
     {'command': 'key_use', 'id': 'e32eb522', 'force': True}),
    ('key_rm_force', 'key rm 0badf00d --force',
     {'command': 'key_rm', 'id': '0badf00d', 'force': True}),
    ('route_ls', 'route ls',
     {'command': 'route_ls'}),
    ('route_add', 'route add front back',
     {'command': 'route_add', 'route': {'networks': ['front', 'back']}}),
    ('route_rm', 'route rm front back',
     {'command': 'route_rm', 'route': {'networks': ['front', 'back']}}),
    ('publish', 'publish front web 8080:80',
     {'command': 'publish_add',
      'publish': {'network': 'front',
                  'container': 'web',
                  'host_port': 8080,
                  'port': 80,
                  'protocol': 'tcp',
                  'host_ip': '0.0.0.0',
                  'idle_timeout': None,
                  'max_connections': None,
                  'max_per_source': None}}),
    ('publish_udp_bounds', 'publish front dns 5353:53/udp --host-ip 127.0.0.1 --idle-timeout 30 --max-connections 64 --max-per-source 8',
     {'command': 'publish_add',
      'publish': {'network': 'front',
                  'container': 'dns',
                  'host_port': 5353,
                  'port': 53,
                  'protocol': 'udp',
                  'host_ip': '127.0.0.1',
                  'idle_timeout': 30,
                  'max_connections': 64,
                  'max_per_source': 8}}),
    ('unpublish', 'unpublish 8080/tcp',
     {'command': 'publish_rm', 'host_port': 8080, 'protocol': 'tcp'}),
    ('ports', 'ports',
     {'command': 'publish_ls'}),
    ('script_attach', 'script attach front web --ip 10.10.0.10',
     {'command': 'plan_attach',
      'port': {'network': 'front',
               'netns': 'web',
               'name': None,
               'ifname': None,
               'ip': '10.10.0.10',
               'mac': None,
               'kind': 'tap',
               'host_ifname': None,
               'dhcp': False}}),
]


def line(request):
    return json.dumps(request, separators=(",", ":")) + "\n"


def control_seeds():
    seeds = {name: line(request) for name, _, request in SWITCHCTL}
    by_name = {name: request for name, _, request in SWITCHCTL}
    # A script's session on one connection: create, connect, inspect, stats, disconnect.
    seeds["session"] = "".join(line(by_name[n]) for n in
                               ["network_create", "network_connect", "network_inspect", "stats", "network_disconnect"])
    # The server's unit tests: not UTF-8, nonsense, an empty line, a last line without newline.
    seeds["not_utf8_then_status"] = b"\xff\xfe\n" + line(by_name["status"]).encode()
    seeds["nonsense_empty_unterminated"] = b'nonsense\n\n{"command":"peers"}'
    seeds["unknown_command"] = line({"command": "teleport", "to": "host-b"})
    seeds["missing_field"] = line({"command": "network_inspect"})
    return seeds


# ---------------------------------------------------------------- CNI

# podman 4.3.1 (Debian 12, CNI backend) as captured with a plugin that
# recorded its environment and stdin: `podman run --network front` and
# `--network back` (a 0.4.0 conflist delegating IPAM to host-local), then
# `podman rm` (DEL, with the ADD's result as prevResult), and the VERSION
# probe podman runs first. Environments are sorted as `env | sort` left them.
PODMAN_NETNS = "/run/netns/netns-ab16edd5-fa35-e61e-45c5-2c45d6e88476"
PODMAN_ID = "51e5d3e0ae79d29c723773459d7c91fe9f73a3e43299eda917e418da7895a323"
FRONT = '{"cniVersion":"1.0.0","name":"front","network":"front","socket":"/run/switchd/switchd.sock","type":"switchd-cni"}'
BACK = ('{"cniVersion":"0.4.0","ipam":{"dataDir":"/tmp/cap/podman/hl","ranges":[[{"subnet":"10.96.2.0/24"}]],'
        '"type":"host-local"},"name":"back","socket":"/run/switchd/switchd.sock","type":"switchd-cni"}')
FRONT_DEL = ('{"cniVersion":"1.0.0","name":"front","network":"front","prevResult":{"cniVersion":"1.0.0","interfaces":'
             '[{"name":"eth0","mac":"02:42:0a:60:01:02","sandbox":"%s"}],"ips":[{"interface":0,"address":'
             '"10.96.1.2/24","gateway":"10.96.1.1"}],"dns":{}},"socket":"/run/switchd/switchd.sock",'
             '"type":"switchd-cni"}' % PODMAN_NETNS)
BACK_DEL = ('{"cniVersion":"0.4.0","ipam":{"dataDir":"/tmp/cap/podman/hl","ranges":[[{"subnet":"10.96.2.0/24"}]],'
            '"type":"host-local"},"name":"back","prevResult":{"cniVersion":"0.4.0","interfaces":[{"name":"eth0",'
            '"mac":"02:42:0a:60:01:02","sandbox":"/run/netns/netns-5b3262b5-b66c-174c-7453-53e2eae0e274"}],"ips":'
            '[{"version":"4","interface":0,"address":"10.96.1.2/24","gateway":"10.96.1.1"}],"dns":{}},'
            '"socket":"/run/switchd/switchd.sock","type":"switchd-cni"}')
PODMAN_VERSION_ENV = "CNI_ARGS=\nCNI_COMMAND=VERSION\nCNI_CONTAINERID=\nCNI_IFNAME=dummy\nCNI_NETNS=dummy\nCNI_PATH=dummy\n"


def podman_env(command, name="pweb", container=PODMAN_ID, netns=PODMAN_NETNS, path="/tmp/cap/podman/bin:/usr/lib/cni"):
    return (f"CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAME={name}\nCNI_COMMAND={command}\nCNI_CONTAINERID={container}\n"
            f"CNI_IFNAME=eth0\nCNI_NETNS={netns}\nCNI_PATH={path}\n")


def cni(env, conf):
    stdin = conf if isinstance(conf, str) else json.dumps(conf, separators=(",", ":"))
    return env.encode() + b"\0" + stdin.encode()


def cni_seeds():
    back_env = dict(name="pdb", container="74c5a43217e2292a44fbeafaf2fbe445e34123a7372f37b1ada9e4ce09848bf2",
                    netns="/run/netns/netns-5b3262b5-b66c-174c-7453-53e2eae0e274")
    good = json.loads(FRONT)
    # containerd's CRI plugin for Kubernetes (after its source): more CNI_ARGS.
    k8s_args = ("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-7d4b9c8f6-x2k4q;"
                f"K8S_POD_INFRA_CONTAINER_ID={PODMAN_ID};K8S_POD_UID=1c2e3a4b-5d6f-4a7b-8c9d-0e1f2a3b4c5d")
    k8s_env = (f"CNI_COMMAND=ADD\nCNI_CONTAINERID={PODMAN_ID}\nCNI_NETNS=/var/run/netns/cni-1b2c3d4e\n"
               f"CNI_IFNAME=eth0\nCNI_PATH=/opt/cni/bin\nCNI_ARGS={k8s_args}\n")
    seeds = {
        "podman_version": cni(PODMAN_VERSION_ENV, '{"cniVersion":"1.0.0"}'),
        "podman_add": cni(podman_env("ADD"), FRONT),
        "podman_del": cni(podman_env("DEL"), FRONT_DEL),
        "podman_add_host_local": cni(podman_env("ADD", **back_env), BACK),
        "podman_del_host_local": cni(podman_env("DEL", **back_env), BACK_DEL),
        "podman_check": cni(podman_env("CHECK"), FRONT_DEL),
        "del_netns_gone": cni(podman_env("DEL").replace(f"CNI_NETNS={PODMAN_NETNS}\n", ""), FRONT_DEL),
        "containerd_k8s_add": cni(k8s_env, FRONT),
        "add_ipam_switchd": cni(podman_env("ADD"), dict(good, ipam={"type": "switchd"})),
        "add_0_3_1": cni(podman_env("ADD"), dict(good, cniVersion="0.3.1")),
        "gc_cni_1_1": cni(podman_env("GC"), FRONT),
        "status_cni_1_1": cni("CNI_COMMAND=STATUS\nCNI_PATH=/usr/lib/cni\n", FRONT),
        # tests/tests/podman.rs and hostile_sockets.rs: bad input gets CNI's error form.
        "missing_name": cni(podman_env("ADD"), {"cniVersion": "1.0.0", "type": "switchd-cni"}),
        "missing_netns": cni(f"CNI_COMMAND=ADD\nCNI_CONTAINERID={PODMAN_ID}\n", FRONT),
        "missing_command": cni(f"CNI_CONTAINERID={PODMAN_ID}\nCNI_IFNAME=eth0\n", FRONT),
        "version_7": cni(podman_env("ADD"), dict(good, cniVersion="7.0.0")),
        "ipam_type_not_string": cni(podman_env("ADD"), dict(good, ipam={"type": 7})),
        "not_json": cni(podman_env("ADD"), "cniVersion: 1.0.0\n"),
    }
    for i, kind in enumerate(["../evil.sh", "/tmp/evil.sh", "bin/../../evil.sh", "", ".", ".."]):
        seeds[f"evil_ipam_type_{i}"] = cni(podman_env("ADD" if i % 2 == 0 else "DEL"),
                                           dict(good, ipam={"type": kind}))
    return seeds


# ---------------------------------------------------------------- host.toml


def host_toml_seeds():
    example = (ROOT / "examples" / "host.toml").read_text()
    seeds = {"example": example}
    # The example's commented-out encrypted part, switched on (the harness's
    # directory holds cluster.key and vault.key).
    uncommented = re.sub(r"^# (\[gossip\]|seeds|key_file|\[\[network\]\]|name = \"vault\"|vni = 300|subnet = \"10.30"
                         r"|encrypted|cipher)", r"\1", example, flags=re.M)
    seeds["example_encrypted"] = uncommented
    readme = (ROOT / "README.md").read_text()
    for i, block in enumerate(re.findall(r"```toml\n(.*?)```", readme, flags=re.S)):
        seeds[f"readme_{i}"] = block
    # README's encrypted network with its host and key, whole.
    seeds["readme_vault_own_key"] = ('[host]\nname = "host-a"\nunderlay_ip = "198.18.0.1"\n\n'
                                     '[[network]]\nname = "vault"\nvni = 300\nsubnet = "10.30.0.0/24"\n'
                                     'encrypted = true\ncipher = "aes-256-gcm"\nkey_file = "vault.key"\n')
    # The same with no cipher named (each host's default), and the cluster key.
    seeds["vault_default_cipher"] = ('[host]\nname = "host-a"\nunderlay_ip = "198.18.0.1"\n\n'
                                     '[gossip]\nkey_file = "cluster.key"\n\n'
                                     '[[network]]\nname = "vault"\nvni = 300\nsubnet = "10.30.0.0/24"\n'
                                     'encrypted = true\n')
    # The test suite's configurations (tests/tests/podman.rs, services.rs, hostile_sockets.rs).
    seeds["podman_routed"] = ('[host]\nname = "ha"\nunderlay_ip = "198.18.0.1"\n\n[gossip]\nseeds = ["198.18.0.2:7946"]\n'
                              'key_file = "cluster.key"\n'
                              '\n[[network]]\nname = "front"\nvni = 960\nsubnet = "10.96.0.0/24"\ninternal = true\n'
                              '\n[[network]]\nname = "back"\nvni = 962\nsubnet = "10.96.2.0/24"\ninternal = true\n'
                              '\n[[route]]\nnetworks = ["front", "back"]\n')
    seeds["ipv6_underlay_docker"] = ('[host]\nname = "h6"\nunderlay_ip = "fd00:198:18::1"\nunderlay_mtu = 9000\n'
                                     'workers = 4\n\n[docker]\nsocket = "/run/docker/plugins/switchd.sock"\n\n'
                                     '[[peer]]\nunderlay_ip = "fd00:198:18::2"\nvxlan_port = 8472\nname = "h6b"\n\n'
                                     '[[network]]\nname = "v6"\nvni = 600\nsubnet = "fd00:10::/64"\nmtu = 8930\n'
                                     'host_access = false\n\n[[port]]\nnetwork = "v6"\nkind = "uplink"\n'
                                     'host_ifname = "eth1"\n\n[[publish]]\nnetwork = "v6"\ncontainer = "web6"\n'
                                     'host_ip = "::"\nhost_port = 8443\nport = 443\nidle_timeout = 0\n')
    seeds["host_access_veth"] = ('[host]\nname = "lab"\n\n[[network]]\nname = "lab"\nvni = 701\n'
                                 'subnet = "10.70.0.0/24"\ngateway = "10.70.0.254"\nhost_access = true\ndns = false\n\n'
                                 '[[port]]\nnetwork = "lab"\nkind = "veth"\nnetns = "bench"\nhost_ifname = "vbench"\n'
                                 'ifname = "eth0"\nmac = "02:42:0a:46:00:02"\nip = "10.70.0.2"\n\n'
                                 '[[publish]]\nnetwork = "lab"\ncontainer = "bench"\nhost_port = 5353\nport = 53\n'
                                 'protocol = "udp"\nidle_timeout = 30\nmax_connections = 64\nmax_per_source = 8\n')
    # README's invalid example and issue 11's findings, refused with their errors.
    seeds["readme_invalid"] = ('[host]\nname = "h"\n\n[[network]]\nname = "n"\nvni = 0\nsubnet = "10.0.0.0/24"\n'
                               'mtu = 1450\ngateway = "10.1.0.1"\n')
    seeds["issue11_limits"] = ('[host]\nname = "h"\nunderlay_ip = "255.255.255.255"\ncontrol_socket = "/tmp/'
                               + "s" * 110 + '"\n\n[gossip]\nkey_file = "/dev/zero"\n')
    seeds["typos"] = '[host]\nname = "h"\ncolour = "blue"\n\n[[network]]\nname = "n"\nvni = 5\nhost_acess = true\n'
    return seeds


def dhcp6(kind, xid, *options):
    """A DHCPv6 client message: type, 3-byte transaction id, options."""
    out = bytes([kind]) + xid.to_bytes(3, "big")
    for code, body in options:
        out += struct.pack("!HH", code, len(body)) + body
    return out


def dhcp6_seeds():
    """As ISC dhclient -6 sends them (flags byte first: 0, the endpoint asks)."""
    client = (1, bytes.fromhex("000100012f0c3a4b02420a000005"))
    server = (2, bytes.fromhex("00030001025d67000190"))
    ia = (3, struct.pack("!III", 0x0a000005, 0, 0))
    held = (3, struct.pack("!III", 0x0a000005, 1800, 2880)
            + struct.pack("!HH", 5, 24) + bytes.fromhex("fd000010000000000042" "0afffe000005") + struct.pack("!II", 3600, 3600))
    oro = (6, struct.pack("!HH", 23, 24))
    elapsed = (8, b"\0\0")
    seeds = {
        "solicit": dhcp6(1, 0x1a2b3c, client, elapsed, oro, ia),
        "solicit_rapid_commit": dhcp6(1, 0x1a2b3d, client, (14, b""), ia),
        "request": dhcp6(3, 0x2b3c4d, client, server, elapsed, oro, held),
        "renew": dhcp6(5, 0x3c4d5e, client, server, held),
        "rebind": dhcp6(6, 0x4d5e6f, client, held),
        "confirm": dhcp6(4, 0x5e6f70, client, held),
        "release": dhcp6(8, 0x6f7081, client, server, held),
        "information_request": dhcp6(11, 0x708192, elapsed, oro),
    }
    return {name: b"\0" + body for name, body in seeds.items()} | {"stranger_solicit": b"\x01" + seeds["solicit"]}


def main():
    write("dhcp_respond", dhcp_seeds())
    write("dhcp6_respond", dhcp6_seeds())
    write("dns_answer", dns_seeds())
    write("gossip_state", gossip_state_seeds())
    write("gossip_wire", gossip_wire_seeds())
    write("sealed_open", sealed_open_seeds())
    write("plugin_http", plugin_http_seeds())
    write("control_request", control_seeds())
    write("cni_input", cni_seeds())
    write("host_toml", host_toml_seeds())


if __name__ == "__main__":
    main()
