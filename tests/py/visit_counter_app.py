"""The "flask-app" of the three-tier example, without Flask.

Usage: visit_counter_app.py PORT DB_HOST DB_PORT

Serves HTTP on 0.0.0.0:PORT. Each GET increments the key "hits" in the
redis server at DB_HOST:DB_PORT (found by name, through the container's
resolver) and answers "hits=N served by flask-app\n". Runs until killed.
"""

import http.server
import socket
import sys

port, db = int(sys.argv[1]), (sys.argv[2], int(sys.argv[3]))


class App(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with socket.create_connection(db, timeout=3) as conn:
            conn.sendall(b"*2\r\n$4\r\nINCR\r\n$4\r\nhits\r\n")
            hits = conn.recv(64).decode().strip().lstrip(":")
        body = f"hits={hits} served by flask-app\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("0.0.0.0", port), App).serve_forever()
