"""A TCP and UDP echo server for any number of clients.

Usage: echo_server.py PORT [PREFIX]

Listens on 0.0.0.0:PORT for TCP (backlog 4096) and UDP, and sends back
whatever arrives, after PREFIX (ASCII, empty if not given): each UDP
datagram to its sender, each TCP read on its connection. Runs until
killed.
"""

import selectors
import socket
import sys

port = int(sys.argv[1])
prefix = sys.argv[2].encode() if len(sys.argv) > 2 else b""
sel = selectors.DefaultSelector()
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("0.0.0.0", port))
listener.listen(4096)
listener.setblocking(False)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("0.0.0.0", port))
udp.setblocking(False)
sel.register(listener, selectors.EVENT_READ, "accept")
sel.register(udp, selectors.EVENT_READ, "udp")
while True:
    for key, _ in sel.select():
        if key.data == "accept":
            try:
                c, _ = listener.accept()
                c.setblocking(False)
                sel.register(c, selectors.EVENT_READ, "tcp")
            except OSError:
                pass
        elif key.data == "udp":
            try:
                data, sender = udp.recvfrom(65536)
                udp.sendto(prefix + data, sender)
            except OSError:
                pass
        else:
            try:
                data = key.fileobj.recv(65536)
            except OSError:
                data = b""
            if data:
                key.fileobj.send(prefix + data)
            else:
                sel.unregister(key.fileobj)
                key.fileobj.close()
