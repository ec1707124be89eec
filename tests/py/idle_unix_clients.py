"""Hold many idle connections to a Unix socket.

Usage: idle_unix_clients.py PATH COUNT HOLD READY

Opens up to COUNT non-blocking stream connections to the Unix socket PATH
and says nothing on them; writes how many connected into the file READY,
then keeps them open until HOLD seconds after the start and exits.
"""

import os
import socket
import sys
import time

path, count, hold, ready = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
held = []
deadline = time.time() + hold
for _ in range(count):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setblocking(False)
    try:
        s.connect(path)
        held.append(s)
    except OSError:
        s.close()
# Written whole, then renamed: whoever sees READY can read the count.
with open(ready + ".tmp", "w") as f:
    f.write(str(len(held)))
os.rename(ready + ".tmp", ready)
time.sleep(max(0.0, deadline - time.time()))
