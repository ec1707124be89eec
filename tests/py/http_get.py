"""Fetch a URL and print the body.

Usage: http_get.py URL

GETs URL (5 s timeout) and prints the body as text, without adding a
newline; exits 0. If the server cannot be reached or answers with an
error, prints "error: " and the reason and exits 2, so that a caller can
tell "not reachable" from this script failing (any other exit code).
"""

import sys
import urllib.error
import urllib.request

try:
    body = urllib.request.urlopen(sys.argv[1], timeout=5).read()
except (urllib.error.URLError, OSError) as e:
    print("error:", e, end="")
    sys.exit(2)
print(body.decode(), end="")
