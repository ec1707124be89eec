"""Receives numbered UDP datagrams and tells whether any flow was reordered.

Usage: numbered_udp_receive.py PORT FLOWS COUNT TIMEOUT READY

Binds PORT, touches READY once bound, and reads until FLOWS * COUNT
datagrams came or TIMEOUT seconds passed without one. Prints one JSON
line: datagrams received, how many arrived after a higher number of their
own flow (reordered), and how many flows were seen.
"""
import json
import os
import socket
import struct
import sys

port, flows, count, timeout, ready = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
# Root may go past net.core.rmem_max (SO_RCVBUFFORCE): a burst a batch of
# writes delivers at once must not overflow the socket while this reads.
try:
    s.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 16 << 20)
except OSError:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
s.bind(("0.0.0.0", port))
s.settimeout(timeout)
open(ready, "w").close()
last = {}
received = reordered = 0
while received < flows * count:
    try:
        data = s.recv(2048)
    except socket.timeout:
        break
    flow, seq = struct.unpack("!II", data[:8])
    received += 1
    if seq < last.get(flow, -1):
        reordered += 1
    last[flow] = max(seq, last.get(flow, -1))
print(json.dumps({"received": received, "reordered": reordered, "flows": len(last)}))
