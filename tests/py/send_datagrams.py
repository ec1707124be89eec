"""Send UDP datagrams from one socket.

Usage: send_datagrams.py BIND_IP DST_IP DST_PORT DATAGRAM_HEX...

Binds a UDP socket to BIND_IP (0.0.0.0: whichever address the route
gives) and any port, and sends each DATAGRAM_HEX (a UDP payload in hex),
in order, to DST_IP:DST_PORT.
"""

import socket
import sys

bind_ip, dst = sys.argv[1], (sys.argv[2], int(sys.argv[3]))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((bind_ip, 0))
for datagram in sys.argv[4:]:
    s.sendto(bytes.fromhex(datagram), dst)
