"""Send one hand-made IPv4/UDP frame on an interface.

Usage: send_udp_frame.py IFNAME DST_MAC SRC_MAC SRC_IP DST_IP SPORT DPORT PAYLOAD_HEX

Builds Ethernet (DST_MAC, SRC_MAC as aa:bb:cc:dd:ee:ff), IPv4 from SRC_IP
to DST_IP (TTL 64, ID 1, a correct header checksum) and UDP from SPORT to
DPORT (checksum 0: none) around the payload PAYLOAD_HEX (hex, may be
empty), and sends it once through a packet socket: any source address,
however false, goes out as given.
"""

import socket
import struct
import sys


def checksum(data):
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


ifname, dst_mac, src_mac, src_ip, dst_ip = sys.argv[1:6]
sport, dport = int(sys.argv[6]), int(sys.argv[7])
payload = bytes.fromhex(sys.argv[8])
udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
ip = struct.pack(
    "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, socket.inet_aton(src_ip), socket.inet_aton(dst_ip)
)
ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
eth = bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex(src_mac.replace(":", "")) + b"\x08\x00"
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifname, 0))
s.send(eth + ip + udp)
