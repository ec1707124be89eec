#!/usr/bin/env bash
# Installs what the demo, the tests and the benchmarks run, if missing:
# iproute2 (ip, ss), iperf3, ping, ethtool, nsenter, sysctl, python3, tcpdump.
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
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "${need[@]}"; }
fi
[ -e /dev/net/tun ] || { echo "/dev/net/tun is missing: switchd needs TAP devices" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "run as root: switchd needs network namespaces and TAP devices" >&2; exit 1; }
