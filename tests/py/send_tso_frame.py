"""Send one 64 KiB TCP frame that asks to be cut into tiny segments.

Usage: send_tso_frame.py IFNAME DST_MAC SRC_MAC SRC_IP DST_IP GSO_SIZE COUNT

Opens a packet socket on IFNAME with PACKET_VNET_HDR, so each frame starts
with a virtio_net_hdr, and sends COUNT times one IPv4/TCP frame (port
40000 to 5201, PSH|ACK, 65,000 zero bytes of payload, DF set) whose
header says: checksum still to do (NEEDS_CSUM, at offset 34 + 16), TCPv4
segmentation with segments of GSO_SIZE bytes, headers 54 bytes long.
"""

import socket
import struct
import sys

SOL_PACKET, PACKET_VNET_HDR = 263, 15
VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4 = 1, 1

ifname, dst_mac, src_mac, src_ip, dst_ip = sys.argv[1:6]
gso_size, count = int(sys.argv[6]), int(sys.argv[7])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
s.bind((ifname, 0))
payload = bytes(65000)
tcp = struct.pack("!HHIIBBHHH", 40000, 5201, 1, 0, 5 << 4, 0x18, 65535, 0, 0)
ip = struct.pack(
    "!BBHHHBBH4s4s",
    0x45,
    0,
    40 + len(payload),
    1,
    0x4000,
    64,
    6,
    0,
    socket.inet_aton(src_ip),
    socket.inet_aton(dst_ip),
)
# flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
vnet = struct.pack("<BBHHHH", VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4, 54, gso_size, 34, 16)
eth = bytes.fromhex(dst_mac.replace(":", "") + src_mac.replace(":", "") + "0800")
for _ in range(count):
    s.send(vnet + eth + ip + tcp + payload)
