"""Capture one UDP datagram as it crosses an interface.

Usage: capture_datagram.py IFNAME SRC_IP DST_IP DST_PORT TIMEOUT [OFFSET=HEX...]

Listens on IFNAME with a packet socket (every EtherType) and prints, as
hex, the UDP payload (up to the UDP length: no Ethernet padding) of the
first unfragmented IPv4/UDP datagram from SRC_IP to DST_IP:DST_PORT whose
payload has the bytes HEX at OFFSET, for every OFFSET=HEX given (e.g.
0=48 for a sealed VXLAN header). Exits 1 if none came within TIMEOUT
seconds.
"""

import socket
import sys

ETH_P_ALL = 3

ifname, src_ip, dst_ip = sys.argv[1:4]
dst_port, timeout = int(sys.argv[4]), float(sys.argv[5])
matches = [(int(at), bytes.fromhex(want)) for at, want in (m.split("=") for m in sys.argv[6:])]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
s.bind((ifname, 0))
s.settimeout(timeout)
while True:
    try:
        frame = s.recv(70000)
    except socket.timeout:
        sys.exit(f"no datagram from {src_ip} to {dst_ip}:{dst_port} on {ifname} within {timeout} s")
    if frame[12:14] != b"\x08\x00":
        continue
    ip = frame[14:]
    header_len = (ip[0] & 15) * 4
    whole = int.from_bytes(ip[6:8], "big") & 0x3FFF == 0
    udp = ip[header_len:]
    if not (
        whole
        and ip[9] == 17
        and socket.inet_ntoa(ip[12:16]) == src_ip
        and socket.inet_ntoa(ip[16:20]) == dst_ip
        and int.from_bytes(udp[2:4], "big") == dst_port
    ):
        continue
    payload = udp[8 : int.from_bytes(udp[4:6], "big")]
    if all(payload[at : at + len(want)] == want for at, want in matches):
        print(payload.hex())
        break
