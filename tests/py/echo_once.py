"""One round trip to an echo server.

Usage: echo_once.py tcp|udp SRC_IP DST_IP DST_PORT [MESSAGE]

From a socket bound to SRC_IP (any port; 0.0.0.0 for whichever address
the route gives), connects to DST_IP:DST_PORT over TCP or UDP, sends
MESSAGE (ASCII, "hello" if not given) and prints the first reply (up to
100 bytes) without a newline. A network error or a 3 s timeout prints
"error: " and the error instead; either way it exits 0.
"""

import socket
import sys

proto, src, dst = sys.argv[1], sys.argv[2], (sys.argv[3], int(sys.argv[4]))
message = sys.argv[5].encode() if len(sys.argv) > 5 else b"hello"
kind = {"tcp": socket.SOCK_STREAM, "udp": socket.SOCK_DGRAM}[proto]
s = socket.socket(socket.AF_INET, kind)
s.settimeout(3)
s.bind((src, 0))
try:
    s.connect(dst)
    s.send(message)
    print(s.recv(100).decode(), end="")
except OSError as e:
    print("error:", e, end="")
