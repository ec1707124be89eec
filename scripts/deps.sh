#!/usr/bin/env bash
# Installs what the demo, the tests and the benchmarks run, if missing:
# iproute2 (ip, ss), iperf3, ping, ethtool, nsenter, sysctl, python3, tcpdump,
# and for the gateway services: dig, busybox (udhcpc, traceroute), dhclient,
# nginx and redis-server (the three-tier app), dockerd, podman and a static
# busybox (the image the container engine tests run).
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have ip       || need+=(iproute2)
have ss       || need+=(iproute2)
have iperf3   || need+=(iperf3)
have ping     || need+=(iputils-ping)
have ethtool  || need+=(ethtool)
have nsenter  || need+=(util-linux)
have sysctl   || need+=(procps)
have python3  || need+=(python3)
have tcpdump  || need+=(tcpdump)
have dig      || need+=(dnsutils)
have busybox  || need+=(busybox)
have dhclient || need+=(isc-dhcp-client)
have nginx    || need+=(nginx-light)
have redis-server || need+=(redis-server)
have dockerd  || need+=(docker.io)
have podman   || need+=(podman)
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # Install nginx and redis without starting their services: the tests
  # start their own, in namespaces, and end them.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "${need[@]}"; }
fi
[ -e /dev/net/tun ] || { echo "/dev/net/tun is missing: switchd needs TAP devices" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "run as root: switchd needs network namespaces and TAP devices" >&2; exit 1; }
