"""Many short HTTP connections, and who answered them.

Usage: http_many.py URL COUNT [FIRST_PORT]

GETs URL COUNT times, each on a new connection (2 s timeout), from
source ports FIRST_PORT, FIRST_PORT + 1, ... if given, and prints
one JSON object: how many answers each server gave (the first word of
the body, as named_server.py answers), under "from IP" how many it saw
coming from IP (the second word), and, under "errors", how many
requests failed.
"""

import http.client
import json
import sys
import urllib.parse

url, count = urllib.parse.urlsplit(sys.argv[1]), int(sys.argv[2])
first = int(sys.argv[3]) if len(sys.argv) > 3 else None
seen = {"errors": 0}
for i in range(count):
    try:
        any_address = "::" if ":" in url.hostname else "0.0.0.0"
        source = (any_address, first + i) if first else None
        conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=2, source_address=source)
        conn.request("GET", url.path or "/", headers={"Connection": "close"})
        words = conn.getresponse().read().decode().split(" ")
        for key in [words[0]] + [f"from {w}" for w in words[1:2]]:
            seen[key] = seen.get(key, 0) + 1
        conn.close()
    except OSError:
        seen["errors"] += 1
print(json.dumps(seen), end="")
