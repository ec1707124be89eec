"""POST requests to a Docker plugin's Unix socket and print the replies.

Usage: docker_plugin_post.py SOCKET PATH BODY [PATH BODY]...

For each PATH BODY pair, opens a new connection to the Unix socket SOCKET,
sends "POST PATH HTTP/1.1" with a Content-Length and BODY (text, sent as
UTF-8), reads the reply's headers and as many body bytes as its
Content-Length says, and prints the body, one line per request (the
plugin protocol's bodies are one-line JSON).
"""

import socket
import sys


def post(socket_path, path, body):
    s = socket.socket(socket.AF_UNIX)
    s.connect(socket_path)
    s.sendall(b"POST " + path + b" HTTP/1.1\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            sys.exit(f"{path.decode()}: connection closed before the reply's headers: {data!r}")
        data += chunk
    head, reply = data.split(b"\r\n\r\n", 1)
    lengths = [line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")]
    if not lengths:
        sys.exit(f"{path.decode()}: a reply without Content-Length: {head!r}")
    length = int(lengths[0].split(b":")[1])
    while len(reply) < length:
        chunk = s.recv(4096)
        if not chunk:
            sys.exit(f"{path.decode()}: connection closed inside the reply's body")
        reply += chunk
    return reply.decode()


socket_path, pairs = sys.argv[1], sys.argv[2:]
if len(pairs) % 2:
    sys.exit("PATH and BODY come in pairs")
for i in range(0, len(pairs), 2):
    print(post(socket_path, pairs[i].encode(), pairs[i + 1].encode()))
