"""One HTTP connection kept open, asking again and again.

Usage: http_keepalive.py URL SECONDS INTERVAL

Opens one HTTP/1.1 connection to URL and GETs on it every INTERVAL
seconds for SECONDS seconds, then prints one JSON object: the servers
that answered (first word of each body, in order of first answer), how
many requests were answered, and the first error, if any (after which
it stops).
"""

import http.client
import json
import sys
import time
import urllib.parse

url, seconds, interval = urllib.parse.urlsplit(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
servers, answered, error = [], 0, None
conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=2)
end = time.monotonic() + seconds
while time.monotonic() < end:
    try:
        conn.request("GET", url.path or "/")
        name = conn.getresponse().read().decode().split(" ")[0]
    except (OSError, http.client.HTTPException) as e:
        error = repr(e)
        break
    answered += 1
    if name not in servers:
        servers.append(name)
    time.sleep(interval)
print(json.dumps({"servers": servers, "answered": answered, "error": error}), end="")
