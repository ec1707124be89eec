#!/usr/bin/env python3
"""Writes the seed corpora of the switch's fuzz targets: real frames, as the
kernel or a ping, traceroute, arping or ndisc would send them, each file
named for what it is.

    cd fuzz && python3 seeds/make_switch_seeds.py

Targets and their input formats (see each target's doc comment):

  switch_decisions  records [kind: u8][len: u16 LE][bytes]; kind % 4 == 3 is
                    a frame (virtio header + Ethernet) from local port
                    (kind / 4) % 4, otherwise a VXLAN datagram from VTEP
                    kind % 4 % 3 (0: 198.18.0.2, carries VNI 1; 1: 198.18.0.3,
                    carries all; 2: a stranger)
  offload_gro       [gso: u8][mss: u16 LE][csum_start: u16 LE][csum_offset: u16 LE]
                    then frames [len: u16 LE][Ethernet]
  port_guard        [addressed: u8][Ethernet] (only new seeds are written here)
  icmp_error        [selector: u8][Ethernet]
  l3_forward        [flags: u8][Ethernet]
  nd_reply          [owner MAC: 6][Ethernet]

Only the struct module: no scapy needed. Checksums are real.
"""

import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def mac(s):
    return bytes(int(b, 16) for b in s.split(":"))


def ip4(s):
    return bytes(int(b) for b in s.split("."))


def ip6(s):
    """An IPv6 address from its text form (with ::)."""
    head, _, tail = s.partition("::")
    h = [int(g, 16) for g in head.split(":") if g]
    t = [int(g, 16) for g in tail.split(":") if g]
    groups = h + [0] * (8 - len(h) - len(t)) + t if "::" in s else h
    return struct.pack("!8H", *groups)


def csum(data):
    """The Internet checksum (RFC 1071) of data."""
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


# --- Addresses, as the harnesses set them up -------------------------------

BCAST = mac("ff:ff:ff:ff:ff:ff")
GW1 = mac("02:5d:67:00:00:01")  # gateway MAC of network 1 (VNI 1)
GW3 = mac("02:5d:67:00:00:03")  # gateway MAC of network 3 (VNI 3)
PORT0 = mac("02:00:00:00:01:02")  # switch_decisions: port 0's endpoint MAC (10.1.0.2)
N3_HOST = mac("02:00:00:00:03:02")  # switch_decisions: 10.3.0.2's MAC, on port 3
LAN = mac("02:00:00:00:0a:0a")  # a host behind port 1 (a LAN)
GUARD = mac("02:42:0a:00:00:02")  # port_guard: the port's MAC (10.0.0.2)
OWNER = mac("02:00:00:00:00:42")  # nd_reply: who owns the asked address
ASKER = mac("02:00:00:00:00:01")


def eui64_link_local(m):
    """The kernel's link-local address for MAC m (EUI-64)."""
    iid = bytes([m[0] ^ 2]) + m[1:3] + b"\xff\xfe" + m[3:6]
    return b"\xfe\x80" + b"\0" * 6 + iid


def solicited_node(addr):
    return ip6("ff02::1:ff00:0")[:13] + addr[13:]


# --- Frame builders ----------------------------------------------------------


def ether(dst, src, ethertype, payload, pad=False):
    frame = dst + src + struct.pack("!H", ethertype) + payload
    if pad and len(frame) < 60:
        frame += b"\0" * (60 - len(frame))  # what a NIC puts on the wire
    return frame


def ipv4(src, dst, proto, payload, ttl=64, ident=0x1234, flags_frag=0x4000, options=b""):
    ihl = 5 + len(options) // 4
    hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, ihl * 4 + len(payload), ident, flags_frag, ttl, proto, 0,
                      ip4(src), ip4(dst)) + options
    hdr = hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:]
    return hdr + payload


def pseudo4(src, dst, proto, length):
    return ip4(src) + ip4(dst) + struct.pack("!BBH", 0, proto, length)


def udp4(src, dst, sport, dport, data):
    seg = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    c = csum(pseudo4(src, dst, 17, len(seg)) + seg) or 0xFFFF
    return seg[:6] + struct.pack("!H", c) + seg[8:]


def tcp_header(sport, dport, seq, ack, flags, window=502, options=b""):
    off = (20 + len(options)) // 4
    return struct.pack("!HHIIBBHHH", sport, dport, seq, ack, off << 4, flags, window, 0, 0) + options


def tcp4(src, dst, sport, dport, seq, ack, flags, data, options=b""):
    seg = tcp_header(sport, dport, seq, ack, flags, options=options) + data
    c = csum(pseudo4(src, dst, 6, len(seg)) + seg)
    return seg[:16] + struct.pack("!H", c) + seg[18:]


def icmp4(kind, code, rest, data):
    msg = struct.pack("!BBH", kind, code, 0) + rest + data
    return msg[:2] + struct.pack("!H", csum(msg)) + msg[4:]


def echo_request(ident, seq, data):
    return icmp4(8, 0, struct.pack("!HH", ident, seq), data)


def ipv6(src, dst, next_header, payload, hop_limit=64):
    return struct.pack("!IHBB", 0x60000000, len(payload), next_header, hop_limit) + src + dst + payload


def pseudo6(src, dst, next_header, length):
    return src + dst + struct.pack("!IxxxB", length, next_header)


def icmp6(src, dst, kind, code, body):
    msg = struct.pack("!BBH", kind, code, 0) + body
    c = csum(pseudo6(src, dst, 58, len(msg)) + msg)
    return msg[:2] + struct.pack("!H", c) + msg[4:]


def tcp6(src, dst, sport, dport, seq, ack, flags, data, options=b""):
    seg = tcp_header(sport, dport, seq, ack, flags, options=options) + data
    c = csum(pseudo6(src, dst, 6, len(seg)) + seg)
    return seg[:16] + struct.pack("!H", c) + seg[18:]


def neighbor_solicitation(src_mac, src, target, with_option=True, hop_limit=255):
    """An NS as the kernel sends it: to the target's solicited-node group."""
    dst = solicited_node(target)
    body = b"\0\0\0\0" + target + (b"\x01\x01" + src_mac if with_option else b"")
    packet = ipv6(src, dst, 58, icmp6(src, dst, 135, 0, body), hop_limit)
    return ether(b"\x33\x33" + dst[12:], src_mac, 0x86DD, packet)


def arp(op, sha, spa, tha, tpa):
    return struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + sha + ip4(spa) + tha + ip4(tpa)


def arp_request(sha, spa, tpa, pad=True):
    return ether(BCAST, sha, 0x0806, arp(1, sha, spa, b"\0" * 6, tpa), pad)


def vxlan(vni, inner):
    return struct.pack("!BxxxI", 0x08, vni << 8) + inner


VNET_PLAIN = b"\0" * 10


# --- Writing -----------------------------------------------------------------


def write(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def record(kind, data):
    return struct.pack("<BH", kind, len(data)) + data


def port(i, eth):
    """A frame read from local port i (0, 1: network 1; 2: network 2; 3: network 3)."""
    return record(4 * i + 3, VNET_PLAIN + eth)


def datagram(vtep, payload):
    """A VXLAN datagram from VTEP 0 (VNI 1 only), 1 (all) or 2 (a stranger)."""
    return record(vtep, payload)


def switch_decisions():
    t = "switch_decisions"
    probe = udp4("10.1.0.2", "10.3.0.2", 33434, 33435, b"traceroute")
    routed = ether(GW1, PORT0, 0x0800, ipv4("10.1.0.2", "10.3.0.2", 17, probe))
    # Network 1 to 3 through the gateway; 10.3.0.2's MAC not yet learned: flooded in 3.
    write(t, "route_1_to_3_flood", port(0, routed))
    # 10.3.0.2 speaks first (an ARP request on network 3), so the routed frame goes to its port.
    learn = arp_request(N3_HOST, "10.3.0.2", "10.3.0.1")
    write(t, "route_1_to_3_learned", port(3, learn) + port(0, routed))
    back = udp4("10.3.0.2", "10.1.0.2", 5000, 5001, b"reply")
    write(t, "route_3_to_1", port(3, ether(GW3, N3_HOST, 0x0800, ipv4("10.3.0.2", "10.1.0.2", 17, back))))
    # TTL 1: refused with time exceeded.
    write(t, "route_ttl_1", port(0, ether(GW1, PORT0, 0x0800, ipv4("10.1.0.2", "10.3.0.2", 17, probe, ttl=1))))
    # Through the gateway into its own subnet: administratively prohibited.
    own = udp4("10.1.0.2", "10.1.0.9", 1, 2, b"x")
    write(t, "route_own_subnet", port(0, ether(GW1, PORT0, 0x0800, ipv4("10.1.0.2", "10.1.0.9", 17, own))))
    # Outside every network, no host access: net unreachable.
    out = udp4("10.1.0.2", "192.0.2.1", 1, 2, b"x")
    write(t, "route_nowhere", port(0, ether(GW1, PORT0, 0x0800, ipv4("10.1.0.2", "192.0.2.1", 17, out))))
    # To an address of network 3 no endpoint holds: host unreachable.
    none = udp4("10.1.0.2", "10.3.0.77", 1, 2, b"x")
    write(t, "route_no_neighbor", port(0, ether(GW1, PORT0, 0x0800, ipv4("10.1.0.2", "10.3.0.77", 17, none))))
    # Ping the gateway, and the other network's gateway.
    ping = echo_request(0x77, 1, b"abcdefghijklmnop")
    write(t, "ping_gateway", port(0, ether(GW1, PORT0, 0x0800, ipv4("10.1.0.2", "10.1.0.1", 1, ping))))
    write(t, "ping_other_gateway", port(0, ether(GW1, PORT0, 0x0800, ipv4("10.1.0.2", "10.3.0.1", 1, ping))))
    # DHCP discover from 0.0.0.0, broadcast.
    bootp = bytes([1, 1, 6, 0]) + b"\0" * 24 + PORT0 + b"\0" * 202 + b"\x63\x82\x53\x63\x35\x01\x01\xff"
    dhcp = udp4("0.0.0.0", "255.255.255.255", 68, 67, bootp)
    write(t, "dhcp_discover", port(0, ether(BCAST, PORT0, 0x0800, ipv4("0.0.0.0", "255.255.255.255", 17, dhcp))))
    # ARP and ND for addresses the switch knows the owner of: answered.
    write(t, "arp_answered", port(0, arp_request(PORT0, "10.1.0.2", "10.0.0.2")))
    write(t, "arp_answered_lan", port(1, arp_request(LAN, "10.1.0.77", "10.1.0.2")))
    write(t, "arp_gratuitous", port(0, arp_request(PORT0, "10.1.0.2", "10.1.0.2")))
    ns = neighbor_solicitation(PORT0, eui64_link_local(PORT0), ip6("fd00::2"))
    write(t, "ns_answered", port(0, ns))
    write(t, "ns_answered_lan", port(1, neighbor_solicitation(LAN, ip6("fd00::a"), ip6("fd00::2"))))
    write(t, "ns_dad", port(1, neighbor_solicitation(LAN, ip6("::"), ip6("fd00::2"), with_option=False)))
    # From the underlay: a frame for port 0 from the VTEP of every network, one
    # for network 3 from the VTEP of network 1 only, and one from a stranger.
    inner = ether(PORT0, mac("02:00:00:00:09:09"), 0x0800, ipv4("10.1.0.9", "10.1.0.2", 1, ping))
    write(t, "vxlan_vni1", datagram(1, vxlan(1, inner)))
    write(t, "vxlan_vni1_flood", datagram(0, vxlan(1, ether(BCAST, mac("02:00:00:00:09:08"), 0x0806,
                                                            arp(1, mac("02:00:00:00:09:08"), "10.1.0.8", b"\0" * 6,
                                                                "10.1.0.2")))))
    write(t, "vxlan_vni3_not_carried", datagram(0, vxlan(3, inner)))
    write(t, "vxlan_stranger", datagram(2, vxlan(1, inner)))
    # A conversation: port 0 learns, the underlay answers it, the LAN tries port 0's MAC.
    spoof = ether(BCAST, PORT0, 0x0806, arp(1, PORT0, "10.1.0.66", b"\0" * 6, "10.1.0.1"), True)
    write(t, "conversation", port(0, arp_request(PORT0, "10.1.0.2", "10.1.0.9"))
          + datagram(0x81, vxlan(1, inner)) + port(1, spoof) + port(0, routed))


def offload_gro():
    t = "offload_gro"
    src6, dst6 = ip6("fd00::1"), ip6("fd00::2")
    ts = b"\x01\x01\x08\x0a" + struct.pack("!II", 1000, 2000)  # NOP NOP timestamps

    def seg4(seq, data, flags=0x10, ident=0):
        tcp = tcp4("10.0.0.1", "10.0.0.2", 40000, 5201, seq, 99, flags, data, ts)
        return ether(mac("02:00:00:00:00:02"), mac("02:00:00:00:00:01"), 0x0800,
                     ipv4("10.0.0.1", "10.0.0.2", 6, tcp, ident=0x100 + ident))

    def seg6(seq, data, flags=0x10):
        tcp = tcp6(src6, dst6, 40000, 5201, seq, 99, flags, data, ts)
        return ether(mac("02:00:00:00:00:02"), mac("02:00:00:00:00:01"), 0x86DD, ipv6(src6, dst6, 6, tcp))

    def frames(*fs):
        return b"".join(struct.pack("<H", len(f)) + f for f in fs)

    def header(gso, mss, start=34, offset=16):
        return struct.pack("<BHHH", gso, mss, start, offset)

    data = bytes((i * 13 + i // 7) & 0xFF for i in range(400))
    # Four full segments and a shorter last one with PSH: one run.
    run4 = [seg4(1000 + 100 * i, data[100 * i:100 * i + 100], ident=i) for i in range(3)]
    run4.append(seg4(1300, data[300:350], 0x18, ident=3))
    write(t, "tcp4_run", header(0, 1448) + frames(*run4))
    run6 = [seg6(7000 + 100 * i, data[100 * i:100 * i + 100]) for i in range(3)] + [seg6(7300, data[300:320], 0x18)]
    write(t, "tcp6_run", header(1, 1428, 54) + frames(*run6))
    # A gap in the sequence numbers ends a run and starts another; then a duplicate.
    gap = [seg4(1000, data[:100]), seg4(1100, data[100:200]), seg4(1300, data[200:300]),
           seg4(1400, data[300:400]), seg4(1400, data[300:400])]
    write(t, "tcp4_gap", header(0, 1448) + frames(*gap))
    # A single segment (goes out unchanged), and a SYN (never joined).
    syn = seg4(5, b"", 0x02)
    write(t, "tcp4_single_and_syn", header(0, 1448) + frames(seg4(1000, data[:100]), syn))
    # A TSO frame to cut (segment with mss 100), whose pieces GRO then joins again.
    tso = seg4(1000, data, 0x18)
    write(t, "tcp4_tso", header(0, 100) + frames(tso))
    write(t, "tcp6_tso", header(1, 100, 54) + frames(seg6(7000, data, 0x18)))
    # USO: a UDP datagram cut by segment(); GRO leaves UDP alone.
    udp = udp4("10.0.0.1", "10.0.0.2", 4000, 4001, data)
    write(t, "udp4_uso", header(2, 200, 34, 6) + frames(ether(mac("02:00:00:00:00:02"), mac("02:00:00:00:00:01"),
                                                               0x0800, ipv4("10.0.0.1", "10.0.0.2", 17, udp))))
    # Padded frames (as a NIC pads short ones): the padding is never joined.
    small = [seg4(1000 + i, data[i:i + 1], ident=i) for i in range(3)]
    write(t, "tcp4_tiny_padded", header(0, 1) + frames(*(f + b"\0" * 8 for f in small)))
    # The first byte's flags: 0x80 checksums deferred (as a switchd peer, or a
    # kernel vxlan device on a veth underlay, sends them), 0x40 every second
    # one, 0x20 the frames came sealed (GRO verifies nothing).
    write(t, "tcp4_run_deferred", header(0x80, 1448) + frames(*run4))
    write(t, "tcp6_run_deferred", header(0x81, 1428, 54) + frames(*run6))
    write(t, "tcp4_run_mixed", header(0x40, 1448) + frames(*run4))
    write(t, "tcp4_tso_deferred", header(0x80, 100) + frames(tso))
    write(t, "udp4_uso_deferred", header(0x82, 200, 34, 6) + frames(ether(mac("02:00:00:00:00:02"),
                                                                         mac("02:00:00:00:00:01"), 0x0800,
                                                                         ipv4("10.0.0.1", "10.0.0.2", 17, udp))))
    write(t, "tcp4_gap_sealed", header(0x20, 1448) + frames(*gap))


def port_guard():
    # New seeds beside the committed ones (arp, ns, na, dad, ... made earlier).
    t = "port_guard"
    bootp = bytes([1, 1, 6, 0]) + b"\0" * 24 + GUARD + b"\0" * 202 + b"\x63\x82\x53\x63\x35\x01\x01\xff"
    dhcp = udp4("0.0.0.0", "255.255.255.255", 68, 67, bootp)
    write(t, "dhcp_discover", b"\x01" + ether(BCAST, GUARD, 0x0800, ipv4("0.0.0.0", "255.255.255.255", 17, dhcp)))
    write(t, "arp_probe", b"\x01" + arp_request(GUARD, "0.0.0.0", "10.0.0.2"))
    spoofed = udp4("10.0.0.3", "10.0.0.9", 1, 2, b"x")
    write(t, "v4_spoofed_source", b"\x01" + ether(BCAST, GUARD, 0x0800, ipv4("10.0.0.3", "10.0.0.9", 17, spoofed)))
    write(t, "arp_other_mac", b"\x01" + ether(BCAST, GUARD, 0x0806, arp(1, mac("02:00:00:00:00:99"), "10.0.0.2",
                                                                        b"\0" * 6, "10.0.0.1"), True))
    tag = struct.pack("!HH", 0, 0x0800)  # VLAN 0, which Linux takes as untagged
    write(t, "vlan0_tagged", b"\x01" + ether(BCAST, GUARD, 0x8100, tag + ipv4("10.0.0.2", "10.0.0.9", 17, spoofed)))
    ll = eui64_link_local(GUARD)
    other = ip6("fe80::1")
    redirect = icmp6(ll, other, 137, 0, b"\0" * 4 + ip6("fd00::9") + ip6("fd00::8"))
    write(t, "redirect", b"\x01" + ether(mac("33:33:00:00:00:01"), GUARD, 0x86DD, ipv6(ll, other, 58, redirect, 255)))
    na = icmp6(ll, other, 136, 0, b"\x60\0\0\0" + ll + b"\x02\x01" + mac("02:00:00:00:00:99"))
    write(t, "na_other_tlla", b"\x01" + ether(mac("33:33:00:00:00:01"), GUARD, 0x86DD, ipv6(ll, other, 58, na, 255)))


def icmp_error():
    t = "icmp_error"
    # Selector: low 3 bits the ICMP error (0 net, 1 host, 2 port unreachable,
    # 3 prohibited, 4 time exceeded); bit 7 set: IPv4 checksum left as it is.
    src, gw = "10.1.0.2", "10.1.0.1"
    ping = echo_request(7, 3, b"abcdefgh")
    write(t, "echo_request", b"\x00" + ether(GW1, PORT0, 0x0800, ipv4(src, gw, 1, ping)))
    # Ping with no data: a NIC pads it to 60 bytes, and the padding is no data.
    write(t, "echo_request_padded", b"\x00" + ether(GW1, PORT0, 0x0800, ipv4(src, gw, 1, echo_request(7, 4, b"")), True))
    big = echo_request(7, 5, bytes(range(256)) * 5)
    write(t, "echo_request_large", b"\x01" + ether(GW1, PORT0, 0x0800, ipv4(src, "10.3.0.77", 1, big)))
    # The first fragment of a large ping, and a later one.
    frag = echo_request(7, 6, bytes(range(256)) * 6)
    write(t, "echo_first_fragment", b"\x00" + ether(GW1, PORT0, 0x0800, ipv4(src, gw, 1, frag[:1480], flags_frag=0x2000)))
    write(t, "echo_later_fragment", b"\x00" + ether(GW1, PORT0, 0x0800, ipv4(src, gw, 1, frag[1480:], flags_frag=185)))
    probe = udp4(src, "10.2.0.5", 33434, 33434, b"\0" * 32)
    write(t, "udp_probe_prohibited", b"\x03" + ether(GW1, PORT0, 0x0800, ipv4(src, "10.2.0.5", 17, probe)))
    write(t, "udp_probe_ttl_1", b"\x04" + ether(GW1, PORT0, 0x0800, ipv4(src, "10.3.0.2", 17, probe, ttl=1)))
    short = udp4(src, gw, 33434, 9, b"")
    write(t, "udp_port_unreachable_padded", b"\x02" + ether(GW1, PORT0, 0x0800, ipv4(src, gw, 17, short), True))
    syn = tcp4(src, "192.0.2.1", 40000, 80, 1, 0, 0x02, b"", b"\x02\x04\x05\xb4")
    write(t, "tcp_syn_net_unreachable", b"\x00" + ether(GW1, PORT0, 0x0800, ipv4(src, "192.0.2.1", 6, syn)))
    opts = b"\x07\x07\x04" + b"\0" * 4 + b"\x00"  # record route, then end of options
    write(t, "udp_with_ip_options", b"\x01" + ether(GW1, PORT0, 0x0800, ipv4(src, "10.3.0.77", 17, probe,
                                                                             options=opts)))
    # Never an error about these: an ICMP error, a broadcast, multicast,
    # a source that is no single host, a later fragment, a link-layer broadcast.
    quoted = ipv4("10.3.0.2", src, 17, udp4("10.3.0.2", src, 1, 2, b"q"))
    unreachable = icmp4(3, 1, b"\0" * 4, quoted)
    write(t, "about_an_icmp_error", b"\x00" + ether(GW1, PORT0, 0x0800, ipv4(src, "10.3.0.77", 1, unreachable)))
    exceeded = icmp4(11, 0, b"\0" * 4, quoted)
    write(t, "about_time_exceeded", b"\x04" + ether(GW1, PORT0, 0x0800, ipv4(src, "10.3.0.77", 1, exceeded)))
    write(t, "to_broadcast", b"\x00" + ether(GW1, PORT0, 0x0800, ipv4(src, "255.255.255.255", 17, probe)))
    write(t, "to_multicast", b"\x00" + ether(GW1, PORT0, 0x0800, ipv4(src, "224.0.0.251", 17, probe)))
    write(t, "from_zero", b"\x00" + ether(GW1, PORT0, 0x0800, ipv4("0.0.0.0", "10.3.0.77", 17, probe)))
    write(t, "from_loopback", b"\x00" + ether(GW1, PORT0, 0x0800, ipv4("127.0.0.1", "10.3.0.77", 17, probe)))
    write(t, "from_class_e", b"\x00" + ether(GW1, PORT0, 0x0800, ipv4("240.0.0.1", "10.3.0.77", 17, probe)))
    write(t, "later_fragment", b"\x00" + ether(GW1, PORT0, 0x0800, ipv4(src, "10.3.0.77", 17, probe, flags_frag=10)))
    write(t, "link_broadcast", b"\x00" + ether(BCAST, PORT0, 0x0800, ipv4(src, "10.3.0.77", 17, probe)))
    write(t, "bad_header_checksum", b"\x80" + ether(GW1, PORT0, 0x0800, ipv4(src, "10.3.0.77", 17, probe)[:10]
                                                    + b"\xde\xad" + ipv4(src, "10.3.0.77", 17, probe)[12:]))


def l3_forward():
    t = "l3_forward"
    # Flags: bit 0 set: the frame is given the gateway's and the port's MACs
    # and goes through the switch; bit 7 set: IPv4 checksum left as it is.
    src = "10.1.0.2"
    probe = udp4(src, "10.3.0.2", 33434, 33435, b"traceroute probe")
    for ttl in (64, 2, 1, 0, 255):
        write(t, "udp_ttl_%d" % ttl, b"\x01" + ether(GW1, PORT0, 0x0800, ipv4(src, "10.3.0.2", 17, probe, ttl=ttl)))
    syn = tcp4(src, "10.3.0.3", 40000, 80, 1, 0, 0x02, b"", b"\x02\x04\x05\xb4")
    write(t, "tcp_syn_to_learned_port", b"\x01" + ether(GW1, PORT0, 0x0800, ipv4(src, "10.3.0.3", 6, syn)))
    ping = echo_request(9, 1, b"0123456789abcdef")
    write(t, "ping_to_vtep", b"\x01" + ether(GW1, PORT0, 0x0800, ipv4(src, "10.3.0.4", 1, ping)))
    write(t, "ping_other_gateway_ttl_1", b"\x01" + ether(GW1, PORT0, 0x0800, ipv4(src, "10.3.0.1", 1, ping, ttl=1)))
    opts = b"\x07\x07\x04" + b"\0" * 4 + b"\x00"
    write(t, "udp_with_ip_options", b"\x01" + ether(GW1, PORT0, 0x0800, ipv4(src, "10.3.0.2", 17, probe, options=opts)))
    tiny = udp4(src, "10.3.0.2", 1, 2, b"")
    write(t, "udp_padded", b"\x01" + ether(GW1, PORT0, 0x0800, ipv4(src, "10.3.0.2", 17, tiny), True))
    frag = ipv4(src, "10.3.0.2", 17, probe, flags_frag=0x2000 | 100)
    write(t, "fragment", b"\x01" + ether(GW1, PORT0, 0x0800, frag))
    write(t, "direct_only", b"\x00" + ether(mac("02:00:00:00:00:bb"), mac("02:00:00:00:00:aa"), 0x0800,
                                           ipv4("192.0.2.1", "198.51.100.1", 17, probe, ttl=9)))
    bad = ipv4(src, "10.3.0.2", 17, probe)
    write(t, "bad_header_checksum", b"\x81" + ether(GW1, PORT0, 0x0800, bad[:10] + b"\xbe\xef" + bad[12:]))
    # IPv6: routed to fd00:3::/64 (learned, behind a VTEP, not learned),
    # hop limit 1, the other gateway, a link-local destination.
    src6 = ip6("fd00:1::2")
    for dst, hop_limit, name in [("fd00:3::3", 64, "tcp6_syn_to_learned_port"), ("fd00:3::4", 64, "tcp6_to_vtep"),
                                 ("fd00:3::2", 1, "tcp6_hop_limit_1"), ("fd00:3::1", 1, "tcp6_other_gateway"),
                                 ("fe80::1", 64, "tcp6_link_local")]:
        dst = ip6(dst)
        syn6 = tcp6(src6, dst, 40000, 80, 1, 0, 0x02, b"")
        write(t, name, b"\x01" + ether(GW1, PORT0, 0x86dd, ipv6(src6, dst, 6, syn6, hop_limit=hop_limit)))


def nd_reply():
    t = "nd_reply"
    write(t, "arp_request", OWNER + arp_request(ASKER, "10.0.0.1", "10.0.0.2", pad=False))
    write(t, "arp_request_padded", OWNER + arp_request(ASKER, "10.0.0.1", "10.0.0.2"))
    write(t, "arp_probe", OWNER + arp_request(ASKER, "0.0.0.0", "10.0.0.2"))
    write(t, "arp_gratuitous", OWNER + arp_request(ASKER, "10.0.0.2", "10.0.0.2"))
    write(t, "arp_reply", OWNER + ether(ASKER, OWNER, 0x0806, arp(2, OWNER, "10.0.0.2", ASKER, "10.0.0.1"), True))
    me, them = ip6("fd00::1"), ip6("fd00::2")
    write(t, "ns", OWNER + neighbor_solicitation(ASKER, me, them))
    write(t, "ns_link_local", OWNER + neighbor_solicitation(ASKER, eui64_link_local(ASKER), eui64_link_local(OWNER)))
    write(t, "ns_no_option", OWNER + neighbor_solicitation(ASKER, me, them, with_option=False))
    write(t, "ns_dad", OWNER + neighbor_solicitation(ASKER, ip6("::"), them, with_option=False))
    write(t, "ns_hop_limit_64", OWNER + neighbor_solicitation(ASKER, me, them, hop_limit=64))
    # Unicast NS (neighbour unreachability detection), to the target itself.
    nud = icmp6(me, them, 135, 0, b"\0" * 4 + them + b"\x01\x01" + ASKER)
    write(t, "ns_unicast", OWNER + ether(OWNER, ASKER, 0x86DD, ipv6(me, them, 58, nud, 255)))
    na = icmp6(them, me, 136, 0, b"\x60\0\0\0" + them + b"\x02\x01" + OWNER)
    write(t, "na", OWNER + ether(ASKER, OWNER, 0x86DD, ipv6(them, me, 58, na, 255)))


if __name__ == "__main__":
    switch_decisions()
    offload_gro()
    port_guard()
    icmp_error()
    l3_forward()
    nd_reply()
