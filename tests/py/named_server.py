"""An HTTP server that says who it is and who asked.

Usage: named_server.py PORT NAME

Serves HTTP/1.1 (keep-alive, a thread per connection) on [::]:PORT,
IPv4 and IPv6 (0.0.0.0:PORT where IPv6 is off); every GET is answered
with "NAME CLIENT_IP", where CLIENT_IP is the address the connection
came from (an IPv4 one as such, not IPv4-mapped). Runs until killed.
"""

import http.server
import socket
import sys

port, name = int(sys.argv[1]), sys.argv[2]


class Named(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        client = self.client_address[0].removeprefix("::ffff:")
        body = f"{name} {client}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class DualStack(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


try:
    server = DualStack(("::", port), Named)
except OSError:
    http.server.ThreadingHTTPServer.daemon_threads = True
    server = http.server.ThreadingHTTPServer(("0.0.0.0", port), Named)
server.serve_forever()
