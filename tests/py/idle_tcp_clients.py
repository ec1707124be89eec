"""Hold many idle TCP connections from several source addresses.

Usage: idle_tcp_clients.py DST_IP DST_PORT HOLD READY SRC:COUNT...

For each SRC:COUNT, opens COUNT connections from the address SRC (any
port) to DST_IP:DST_PORT, each given 2 s to connect, and says nothing on
them; writes how many connected in all into the file READY, then keeps
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
        s = socket.socket()
        s.settimeout(2)
        s.bind((src, 0))
        try:
            s.connect(dst)
            held.append(s)
        except OSError:
            s.close()
# Written whole, then renamed: whoever sees READY can read the count.
with open(ready + ".tmp", "w") as f:
    f.write(str(len(held)))
os.rename(ready + ".tmp", ready)
time.sleep(max(0.0, deadline - time.time()))
