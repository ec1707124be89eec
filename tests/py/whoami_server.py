"""An HTTP server that answers with the client's address.

Usage: whoami_server.py PORT

Serves HTTP on 0.0.0.0:PORT; every GET is answered with the address the
connection came from (e.g. "10.71.0.2"), nothing else. Runs until killed.
"""

import http.server
import sys

port = int(sys.argv[1])


class WhoAmI(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = self.client_address[0].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.HTTPServer(("0.0.0.0", port), WhoAmI).serve_forever()
