"""Send one datagram from each of many UDP source ports.

Usage: udp_source_ports.py DST_IP DST_PORT HOLD READY SRC:COUNT...

For each SRC:COUNT, binds COUNT UDP sockets to the address SRC (each its
own port); then, twice over, sends b"x" from every socket to
DST_IP:DST_PORT, 1 ms apart (so that none is lost in a full receive
buffer). Writes how many sockets were used into the file READY, keeps
them open until HOLD seconds after the start and exits.
"""

import os
import socket
import sys
import time

dst, hold, ready = (sys.argv[1], int(sys.argv[2])), float(sys.argv[3]), sys.argv[4]
deadline = time.time() + hold
held = []
for item in sys.argv[5:]:
    src, count = item.split(":")
    for _ in range(int(count)):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((src, 0))
        held.append(s)
for _ in range(2):
    for s in held:
        s.sendto(b"x", dst)
        time.sleep(0.001)
# Written whole, then renamed: whoever sees READY can read the count.
with open(ready + ".tmp", "w") as f:
    f.write(str(len(held)))
os.rename(ready + ".tmp", ready)
time.sleep(max(0.0, deadline - time.time()))
