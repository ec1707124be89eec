"""Send raw requests to a Unix socket and show what came back.

Usage: unix_exchange.py PATH REQUEST_HEX...

For each REQUEST_HEX (bytes in hex), opens a new stream connection to the
Unix socket PATH, sends the bytes, and reads until the server closes the
connection (then "<closed>" is appended) or 2 s pass without more. Prints
what came back on each, as hex, one line per request.
"""

import socket
import sys

path = sys.argv[1]
for hexed in sys.argv[2:]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    s.connect(path)
    s.sendall(bytes.fromhex(hexed))
    got = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                got += b"<closed>"
                break
            got += chunk
    except socket.timeout:
        pass
    print(got.hex())
