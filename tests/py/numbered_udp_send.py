"""Numbered UDP datagrams over several flows, to check ordering.

Usage: numbered_udp_send.py DST_IP DST_PORT FLOWS COUNT

Opens FLOWS sockets (one source port each) and sends COUNT datagrams on
each, round-robin, every one carrying its flow and sequence number, in
bursts with a short pause so the receiver's queues do not overflow.
"""
import socket
import struct
import sys
import time

dst, port, flows, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(flows)]
for seq in range(count):
    for flow, s in enumerate(socks):
        s.sendto(struct.pack("!II", flow, seq) + b"x" * 56, (dst, port))
    # 128 datagrams, then a pause: bursts a debug build's sealed path on a
    # busy machine keeps up with (the test is about order, not rate).
    if seq % 8 == 7:
        time.sleep(0.001)
