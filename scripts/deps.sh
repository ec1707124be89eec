#!/usr/bin/env bash
# Installs what the demo, the tests and the benchmarks run, if missing, from
# one list; `deps.sh --bench` also what only benches/compare.sh runs (the
# second list). `deps.sh --resolve` asks apt-get, without installing
# anything, whether both lists install together on this machine (whatever
# is installed now): the test suite runs it, so a conflict between two
# packages of the lists fails CI on every machine, not only on fresh ones.
set -euo pipefail

# Every package the scripts may ask for, and what shows it is installed:
# commands on PATH, or `=` for the package itself (dpkg).
PACKAGES=(
  "iproute2         ip ss"
  "iperf3           iperf3"
  "iputils-ping     ping"
  "ethtool          ethtool"
  "util-linux       nsenter"
  "procps           sysctl"
  "python3          python3"
  "tcpdump          tcpdump"
  "dnsutils         dig"
  "isc-dhcp-client  dhclient"
  "nginx-light      nginx"
  "redis-server     redis-server"
  "docker.io        dockerd"
  "podman           podman"
  # The only busybox: its `busybox` command has udhcpc and traceroute, and
  # its static binary is the image the container engine tests run. (Debian's
  # dynamic `busybox` conflicts with it: never ask for both.)
  "busybox-static   ="
  # The metrics test scrapes switchd with a real Prometheus and lints its
  # output with promtool (both in this package; its service is not started).
  "prometheus       prometheus promtool"
  # rdisc6 asks the gateway for its router advertisement (the IPv6 test).
  "ndisc6           rdisc6"
  # Loss on the underlay for the scale test (numgen random; no netem
  # here), and the kernel reference for a service VIP in the benchmarks.
  "nftables         nft"
)

# Only the benchmarks ask for these (`deps.sh --bench`): sockperf for the
# request/response test, wireguard-go and wg for the userspace VPN reference.
BENCH_PACKAGES=(
  "sockperf         sockperf"
  "wireguard-go     wireguard-go"
  "wireguard-tools  wg"
)

all_packages() { for entry in "${PACKAGES[@]}" "${BENCH_PACKAGES[@]}"; do echo "${entry%% *}"; done; }

missing_packages() {  # the entries to check
  local entry pkg checks c
  for entry in "$@"; do
    read -r pkg checks <<<"$entry"
    for c in $checks; do
      if [ "$c" = "=" ]; then
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || { echo "$pkg"; break; }
      elif ! command -v "$c" >/dev/null 2>&1; then
        echo "$pkg"
        break
      fi
    done
  done
}

export DEBIAN_FRONTEND=noninteractive

# `apt-get install -s` of the whole list: fails if apt-get cannot install
# it all together, or would remove anything to do so.
# Extra packages in "$@" join the list (the suite checks that a known
# conflict is caught).
resolve() {
  local out
  # shellcheck disable=SC2046
  if ! out=$(apt-get install -s $(all_packages) "$@" 2>&1); then
    if grep -q "Unable to locate package" <<<"$out"; then
      apt-get update -qq
      # shellcheck disable=SC2046
      out=$(apt-get install -s $(all_packages) "$@" 2>&1) || { echo "$out" >&2; return 1; }
    else
      echo "$out" >&2
      echo "deps.sh: apt-get cannot install the package list together (above)" >&2
      return 1
    fi
  fi
  if grep -q '^Remv ' <<<"$out"; then
    grep '^Remv ' <<<"$out" >&2
    echo "deps.sh: installing the package list would remove the packages above" >&2
    return 1
  fi
  echo "deps.sh: all $(all_packages | wc -l) packages resolve together"
}

if [ "${1:-}" = "--resolve" ]; then
  shift
  resolve "$@"
  exit
fi

wanted=("${PACKAGES[@]}")
if [ "${1:-}" = "--bench" ]; then
  wanted+=("${BENCH_PACKAGES[@]}")
fi
mapfile -t need < <(missing_packages "${wanted[@]}" | sort -u)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}" >&2
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
