"""Send a marker many times over one TCP connection.

Usage: tcp_send.py HOST PORT MARKER COUNT

Connects to HOST:PORT (retrying for up to 5 s while the listener starts),
sends MARKER (ASCII) COUNT times in one go, shuts its side down and waits
until the server has read everything and closed.
"""

import socket
import sys
import time

host, port, marker, count = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode(), int(sys.argv[4])
for _ in range(100):
    try:
        c = socket.create_connection((host, port), timeout=2)
        break
    except OSError:
        time.sleep(0.05)
else:
    sys.exit(f"cannot connect to {host}:{port}")
c.sendall(marker * count)
c.shutdown(socket.SHUT_WR)
c.recv(1)
