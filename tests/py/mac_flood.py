"""Flood an interface with frames from random source MACs.

Usage: mac_flood.py IFNAME COUNT

Sends COUNT broadcast frames on IFNAME, each from a new random locally
administered unicast MAC (02 and five random bytes), of the experimental
EtherType 0x88b5 (so there is no IPv4 inside for an address guard to
refuse first), padded with zeros to the 60-byte minimum.
"""

import os
import socket
import sys

ifname, count = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifname, 0))
for _ in range(count):
    s.send(bytes.fromhex("ffffffffffff") + bytes([2]) + os.urandom(5) + bytes.fromhex("88b5") + bytes(46))
