"""Accept one TCP connection and read it to the end.

Usage: tcp_sink.py PORT

Listens on 0.0.0.0:PORT, accepts one connection, reads until the client
shuts its side down, then closes (which tells the client all was read).
"""

import socket
import sys

port = int(sys.argv[1])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.listen()
c, _ = s.accept()
while c.recv(65536):
    pass
c.close()
