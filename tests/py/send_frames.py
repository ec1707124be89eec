"""Send raw Ethernet frames on an interface through a packet socket.

Usage: send_frames.py IFNAME FRAME_HEX...

Each FRAME_HEX is one whole frame, from the destination MAC on, in hex
(no FCS). The frames are sent in the order given, each once, exactly as
given: nothing is padded or checksummed.
"""

import socket
import sys

ifname, frames = sys.argv[1], sys.argv[2:]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifname, 0))
for frame in frames:
    s.send(bytes.fromhex(frame))
