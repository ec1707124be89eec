"""New TCP connections per second, for benches/compare.sh's `conn` test.

Usage: conn_rate.py serve PORT
       conn_rate.py connect ADDR PORT SECONDS PROCESSES

`serve` accepts connections on 0.0.0.0:PORT and answers each with one
byte, then closes it (until killed). `connect` runs PROCESSES processes
that each connect, read the byte and reset the connection (no TIME_WAIT
to get in the way of ports used again), again and again for SECONDS
seconds, and prints the connections completed per second, in all.
"""

import multiprocessing
import socket
import struct
import sys
import time


def serve(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(4096)
    while True:
        c, _ = s.accept()
        try:
            c.sendall(b"x")
        except OSError:
            pass
        c.close()


def client(addr, port, seconds, out):
    done, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            with socket.create_connection((addr, port), timeout=2) as c:
                if c.recv(1) == b"x":
                    done += 1
                # Closed with a reset: no TIME_WAIT on either side, so a
                # port used again later finds nothing in its way.
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    out.put(done)


if sys.argv[1] == "serve":
    serve(int(sys.argv[2]))
else:
    addr, port, seconds, procs = sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
    q = multiprocessing.Queue()
    ps = [multiprocessing.Process(target=client, args=(addr, port, seconds, q)) for _ in range(procs)]
    for p in ps:
        p.start()
    total = sum(q.get() for _ in ps)
    for p in ps:
        p.join()
    print("%.0f" % (total / seconds))
