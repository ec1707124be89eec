"""An HTTP server that says who it is and who asked.

Usage: named_server.py PORT NAME

Serves HTTP/1.1 (keep-alive, a thread per connection) on 0.0.0.0:PORT;
every GET is answered with "NAME CLIENT_IP", where CLIENT_IP is the
address the connection came from. Runs until killed.
"""

import http.server
import sys

port, name = int(sys.argv[1]), sys.argv[2]


class Named(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = f"{name} {self.client_address[0]}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer.daemon_threads = True
http.server.ThreadingHTTPServer(("0.0.0.0", port), Named).serve_forever()
