"""Try to open a TCP connection, and say how it went.

Usage: tcp_connect.py DST_IP DST_PORT TIMEOUT

Connects to DST_IP:DST_PORT, giving up after TIMEOUT seconds, and prints
"connected", or "error: " and the error (unreachable, refused, timed out).
Exits 0 either way: only a broken script exits otherwise.
"""

import socket
import sys

dst, timeout = (sys.argv[1], int(sys.argv[2])), float(sys.argv[3])
try:
    socket.create_connection(dst, timeout=timeout).close()
    print("connected")
except OSError as e:
    print("error:", e)
