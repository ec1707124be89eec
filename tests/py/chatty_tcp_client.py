"""A TCP connection that keeps talking to an echo server.

Usage: chatty_tcp_client.py DST_IP DST_PORT ROUNDS INTERVAL

Connects to DST_IP:DST_PORT, then ROUNDS times sends b"hi", checks that
the echo is b"hi" and waits INTERVAL seconds; prints "alive" (no newline)
if every round trip worked, and fails otherwise.
"""

import socket
import sys
import time

dst, rounds, interval = (sys.argv[1], int(sys.argv[2])), int(sys.argv[3]), float(sys.argv[4])
s = socket.create_connection(dst, timeout=2)
for i in range(rounds):
    s.send(b"hi")
    got = s.recv(10)
    if got != b"hi":
        sys.exit(f"round {i}: echo {got!r}")
    time.sleep(interval)
print("alive", end="")
