#!/usr/bin/env bash
# compare.sh: container to container through switchd and through the
# kernel's own bridge, router and VXLAN (and wireguard-go), all measured in
# the same run, runs interleaved (run 1 of every test and scenario, then run
# 2, ...) so machine drift hits all alike. Every figure is printed with its
# ratio to the kernel reference of the same topology measured in that run:
# on these shared machines the ratios carry over, the absolute figures not.
#
#   benches/compare.sh                          # everything: about 12 minutes
#   RUNS=1 DURATION=2 benches/compare.sh        # a quick check of the tooling
#   TESTS="ping rr" SCENARIOS="bridge switchd-tap" benches/compare.sh
#   WORKERS=2 BUSY_POLL_US=50 benches/compare.sh
#
# Measurements (TESTS to choose, default all: "tcp parallel ping udp rr"):
#   tcp       iperf3 TCP, one stream, DURATION s (default 10): the receiver's
#             Gbit/s, median [min-max] of RUNS (default 3). Every scenario.
#   parallel  iperf3 TCP with -P 4, PARALLEL_DURATION s (default 5, at most
#             DURATION): Gbit/s, ratio to the kernel's -P 4 and to the same
#             path's one stream. Scenarios bridge, switchd-tap, vxlan,
#             switchd-vxlan.
#   (cpu)     with tcp and parallel: the CPU time switchd spent per GB the
#             receiver got, from utime+stime (fields 14 and 15 of
#             /proc/PID/stat, in CLK_TCK ticks) of every switchd process of
#             the scenario (both hosts' across hosts) read before and after
#             the iperf3 run; bytes from iperf3's sum_received. wg-go gets
#             the same for its two wireguard-go processes. The kernel's own
#             work has no process to read: no figure for the references.
#   ping      ping RTT, PING_COUNT (200) echo requests at PING_INTERVAL
#             (0.005 s) per run after a short warm-up, each reply's time=
#             parsed and all runs' samples pooled: median, p99 and mean in
#             microseconds, losses, the median and p99 added over the
#             kernel reference, and the p99 ratio. Every scenario.
#   udp       64-byte UDP datagrams received per second: iperf3 -u -l 64
#             -b 0 for UDP_DURATION s (default 4, at most DURATION); the
#             receiver's count (sum_received: packets minus lost) over its
#             seconds, in kpps; the sender outruns the receiver, so this is
#             what got through. Scenarios bridge, switchd-tap, vxlan,
#             switchd-vxlan.
#   rr        request/response: sockperf ping-pong with 64-byte messages for
#             RR_DURATION s (default 3, at least 2, at most DURATION; sockperf
#             leaves out its first ~0.45 s as warm-up), UDP and TCP: round
#             trips per second and the RTT's mean, median and p99
#             (--full-rtt), median of RUNS. Scenarios bridge, switchd-tap,
#             vxlan, switchd-vxlan, switchd-sealed, switchd-sealed-aes.
#   conn      new TCP connections per second: two client processes connect,
#             read the server's byte and close, again and again, for
#             CONN_DURATION s (default 3; benches/conn_rate.py, Python on
#             both ends, so it measures the path's cost per connection
#             beside the same client's). Scenarios bridge, bridge-dnat,
#             switchd-tap, switchd-vip, bridge-publish, switchd-mesh.
#
# Scenarios (SCENARIOS to choose; a test runs on those of its scenarios
# that are chosen):
#   one host, MTU 1500:
#     bridge        c1 -veth- [Linux bridge in ns h] -veth- c2         (reference)
#     bridge-dnat   the same, c1 connecting to 10.77.0.200, which nftables
#                   in c1 DNATs to c2 (kube-proxy's way: the kernel
#                   reference for a VIP)
#     switchd-tap   c1 -TAP- [switchd in ns h] -TAP- c2                 (the product)
#     switchd-veth  c1 -veth- [switchd in ns h, AF_PACKET] -veth- c2
#     switchd-vip   c1 -TAP- [switchd in ns h] -TAP- c2, to c2 through a
#                   service VIP (10.78.0.200) that c2 is the backend of:
#                   balanced and rewritten both ways in the data path
#   a published port, a client outside (on a veth underlay to the host):
#     bridge-publish  client -veth- [ns h: nftables DNAT of ports 5201-5202
#                     to b2, Linux bridge] -veth- b2 (Docker's -p with the
#                     kernel: the reference)
#     switchd-mesh    client -veth- [ns sh: switchd's routing mesh, its
#                     nftables DNAT to the VIP 10.87.0.200, host access]
#                     -TAP- m2, the VIP's backend
#   routed between two networks, one host, MTU 1500:
#     routed          c1 -veth- [Linux router: ns r, ip_forward] -veth- c2   (reference)
#     switchd-routed  c1 -TAP- [switchd: bench -> bench2 via the gateway] -TAP- c2
#   two hosts joined by a veth underlay (198.18.0.0/15, MTU 1500), containers MTU 1450:
#     vxlan          c1 -veth- [bridge + kernel vxlan, hA] = [hB] -veth- c2   (reference)
#     switchd-vxlan  c1 -TAP- [switchd, hA] = [switchd, hB] -TAP- c2
#   the same over an IPv6 underlay (fd00:198:N::/64, a unique local prefix
#   that exists only in these namespaces), containers MTU 1430:
#     vxlan6          kernel vxlan with IPv6 local and remote   (reference)
#     switchd-vxlan6  switchd with IPv6 underlay_ip
#   encrypted, same two-host topology, container MTU 1414; the cipher is
#   named in the config, so each scenario means the same whatever the
#   default cipher is:
#     switchd-sealed      network encrypted with ChaCha20-Poly1305
#     switchd-sealed-aes  the same with AES-256-GCM
#     wg-go          hA [wireguard-go wg0] = [wireguard-go wg0] hB, between the
#                    host namespaces over wg0 (MTU 1420): Debian's wireguard-go,
#                    the userspace reference (this kernel has no WireGuard module)
# References: switchd-tap and switchd-veth to bridge; switchd-vip to
# switchd-tap (the same path, straight to the backend), bridge-dnat and bridge;
# switchd-mesh to bridge-publish; switchd-routed to
# routed (and switchd-tap for tcp); switchd-vxlan to vxlan; the sealed ones
# to vxlan (and switchd-vxlan and wg-go for tcp).
#
# Knobs written into every generated host.toml's [host], only when set
# (unset: the key is left out and switchd's default holds):
#   WORKERS        workers = N       (data-plane threads)
#   BUSY_POLL_US   busy_poll_us = N  (adaptive busy-poll window, us; 0 off)
#   IO_URING       io_uring = true|false  (a batch's writes into ports in one call)
#   CRYPTO_HELPERS crypto_helpers = N  (threads that help seal and open bursts)
#   METRICS=true   [metrics] listen = "127.0.0.1:9477" (in each host's namespace)
# LIVE_TRACE=true keeps a `switchctl trace --live` running on every switchd
# for the whole measurement, matching every frame (its output discarded):
# what a live trace costs while it runs. LIVE_TRACE="FILTER" gives it those
# options instead (LIVE_TRACE="--proto arp": running, matching nothing).
# SWITCHD=/path/to/switchd runs that build of the daemon instead of the
# tree's (an A/B of two commits: run each, alternately).
#
# sockperf (rr), wireguard-go and wg (wg-go) come from `scripts/deps.sh
# --bench`, installed with apt-get when missing. Every load is bounded in
# time (each tool's own duration, and `timeout` around it). All namespaces
# are private (prefix sdb-PID-), no default routes, underlays on
# 198.18.0.0/15; everything is removed on exit, processes are ended by their
# PID.
set -euo pipefail

RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
min() { if [ "$1" -lt "$2" ]; then echo "$1"; else echo "$2"; fi; }
PARALLEL_DURATION=${PARALLEL_DURATION:-$(min "$DURATION" 5)}
UDP_DURATION=${UDP_DURATION:-$(min "$DURATION" 4)}
RR_DURATION=${RR_DURATION:-$(min "$DURATION" 3)}
[ "$RR_DURATION" -ge 2 ] || RR_DURATION=2
PING_COUNT=${PING_COUNT:-200}
CONN_DURATION=${CONN_DURATION:-3}
PING_INTERVAL=${PING_INTERVAL:-0.005}
TESTS=${TESTS:-"tcp parallel ping udp rr conn"}
SCENARIOS=${SCENARIOS:-"bridge bridge-dnat switchd-tap switchd-veth switchd-vip bridge-publish switchd-mesh routed switchd-routed vxlan switchd-vxlan vxlan6 switchd-vxlan6 switchd-sealed switchd-sealed-aes wg-go"}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
P="sdb-$$"
NSES=()
PIDS=()
WG="wg$$-"
WG_RUNDIR_CREATED=0
# switchd's (and wireguard-go's) PIDs by scenario group, for the CPU figure.
declare -A GROUP_PIDS

log() { echo "[compare] $*" >&2; }
die() { echo "compare.sh: $*" >&2; exit 2; }

for v in RUNS DURATION PARALLEL_DURATION UDP_DURATION RR_DURATION PING_COUNT CONN_DURATION; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, not '${!v}'"
done
[[ $PING_INTERVAL =~ ^[0-9]*\.?[0-9]+$ ]] || die "PING_INTERVAL must be seconds, not '$PING_INTERVAL'"
for t in $TESTS; do
  case $t in tcp|parallel|ping|udp|rr|conn) ;; *) die "unknown test $t (tcp parallel ping udp rr conn)" ;; esac
done
for sc in $SCENARIOS; do
  case $sc in
    bridge|bridge-dnat|switchd-tap|switchd-veth|switchd-vip|bridge-publish|switchd-mesh|routed|switchd-routed|vxlan|switchd-vxlan|vxlan6|switchd-vxlan6|switchd-sealed|switchd-sealed-aes|wg-go) ;;
    *) die "unknown scenario $sc" ;;
  esac
done
# Lines added to every generated [host]: only the knobs that are set.
HOST_EXTRA=""
for knob in WORKERS:workers BUSY_POLL_US:busy_poll_us CRYPTO_HELPERS:crypto_helpers; do
  var=${knob%%:*} key=${knob#*:}
  if [ -n "${!var:-}" ]; then
    [[ ${!var} =~ ^[0-9]+$ ]] || die "$var must be a non-negative integer, not '${!var}'"
    HOST_EXTRA+="$key = ${!var}"$'\n'
  fi
done
if [ -n "${IO_URING:-}" ]; then
  [[ $IO_URING =~ ^(true|false)$ ]] || die "IO_URING must be true or false, not '$IO_URING'"
  HOST_EXTRA+="io_uring = $IO_URING"$'\n'
fi
# Last: a [metrics] table ends [host] (the generated files go on with
# [[network]] and [[peer]] tables).
if [ "${METRICS:-false}" = true ]; then
  HOST_EXTRA+=$'[metrics]\nlisten = "127.0.0.1:9477"\n'
fi

# Whether PID $1 is still a process this script started (its child).
ours() { [ "$(ps -o ppid= -p "$1" 2>/dev/null | tr -d ' ')" = "$$" ]; }

# A process waited for is no longer ours to end.
forget() {
  local keep=() p
  for p in "${PIDS[@]}"; do if [ "$p" != "$1" ]; then keep+=("$p"); fi; done
  PIDS=("${keep[@]}")
}

cleanup() {
  local p n
  for p in "${PIDS[@]}"; do if ours "$p"; then kill "$p" 2>/dev/null || true; fi; done
  sleep 0.3
  for p in "${PIDS[@]}"; do if ours "$p"; then kill -9 "$p" 2>/dev/null || true; fi; done
  for n in "${NSES[@]}"; do
    ip netns del "$n" 2>/dev/null || true
    rm -rf "/etc/netns/$n"
  done
  rm -rf "$WORK"
  if [ "$WG_RUNDIR_CREATED" = 1 ]; then rmdir /var/run/wireguard 2>/dev/null || true; fi
}
WORK=$(mktemp -d /tmp/switchd-compare.XXXXXX)
trap cleanup EXIT

mkns() { ip netns add "$1"; NSES+=("$1"); ip -n "$1" link set lo up; }

has() { case " $1 " in *" $2 "*) return 0 ;; esac; return 1; }  # has LIST WORD

"$ROOT/scripts/deps.sh" --bench >&2
log "building release binaries"
(cd "$ROOT" && cargo build --release --bins -q)
SWITCHD="${SWITCHD:-$ROOT/target/release/switchd}"  # SWITCHD=path: another build, for an A/B
SWITCHCTL="$ROOT/target/release/switchctl"
CLK_TCK=$(getconf CLK_TCK)

# --- bridge: the kernel reference ---------------------------------------------
setup_bridge() {
  mkns "$P-bh"; mkns "$P-b1"; mkns "$P-b2"
  ip -n "$P-bh" link add br0 type bridge
  ip -n "$P-bh" link set br0 up
  local i
  for i in 1 2; do
    ip -n "$P-bh" link add "vb$i" type veth peer name eth0 netns "$P-b$i"
    ip -n "$P-bh" link set "vb$i" master br0
    ip -n "$P-bh" link set "vb$i" up
    ip -n "$P-b$i" addr add "10.77.0.$i/24" dev eth0
    ip -n "$P-b$i" link set eth0 up
  done
}

# --- routed: the kernel's router between two subnets ---------------------------
setup_routed() {
  mkns "$P-rr"; mkns "$P-r1"; mkns "$P-r2"
  ip netns exec "$P-rr" sysctl -qw net.ipv4.ip_forward=1
  local i
  for i in 1 2; do
    ip -n "$P-rr" link add "vr$i" type veth peer name eth0 netns "$P-r$i"
    ip -n "$P-rr" addr add "10.8$((4 + i)).0.1/24" dev "vr$i"
    ip -n "$P-rr" link set "vr$i" up
    ip -n "$P-r$i" addr add "10.8$((4 + i)).0.2/24" dev eth0
    ip -n "$P-r$i" link set eth0 up
  done
  ip -n "$P-r1" route add 10.86.0.0/24 via 10.85.0.1
  ip -n "$P-r2" route add 10.85.0.0/24 via 10.86.0.1
}

# Starts switchd in ns $1 with config $2 and waits for its socket $3; its
# PID joins group $4 (the scenarios it serves, for the CPU figure).
start_switchd() {
  ip netns exec "$1" "$SWITCHD" --config "$2" 2>> "$WORK/switchd.log" &
  PIDS+=("$!")
  GROUP_PIDS[$4]="${GROUP_PIDS[$4]:-} $!"
  for _ in $(seq 50); do
    "$SWITCHCTL" --socket "$3" status >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  cat "$WORK/switchd.log" >&2
  echo "switchd did not start" >&2
  exit 1
}

# --- switchd: one daemon in ns sh, TAP ports to s1, s2 and veth ports to v1, v2 -
setup_switchd() {
  mkns "$P-sh"; mkns "$P-s1"; mkns "$P-s2"; mkns "$P-v1"; mkns "$P-v2"; mkns "$P-s3"; mkns "$P-m2"
  cat > "$WORK/host.toml" <<EOF
[host]
name = "compare"
control_socket = "$WORK/switchd.sock"
state_dir = "$WORK/state"
$HOST_EXTRA
[[network]]
name = "bench"
vni = 77
subnet = "10.78.0.0/24"
mtu = 1500
internal = true

[[network]]
name = "bench2"
vni = 78
subnet = "10.84.0.0/24"
mtu = 1500
internal = true

[[route]]                 # s1 (bench) reaches s3 (bench2) through the gateway
networks = ["bench", "bench2"]

[[port]]
network = "bench2"
netns = "$P-s3"
ip = "10.84.0.23"

[[port]]
network = "bench"
netns = "$P-s1"
ip = "10.78.0.21"

[[port]]
network = "bench"
netns = "$P-s2"
ip = "10.78.0.22"
service = "bench-vip"     # switchd-vip: the backend of 10.78.0.200

[[service]]
name = "bench-vip"
network = "bench"
vip = "10.78.0.200"

[[network]]                 # switchd-mesh: its ports published on the host by the routing mesh
name = "mesh"
vni = 79
subnet = "10.87.0.0/24"
mtu = 1500
internal = true
host_access = true

[[port]]
network = "mesh"
netns = "$P-m2"
ip = "10.87.0.22"
service = "bench-mesh"

[[service]]
name = "bench-mesh"
network = "mesh"
vip = "10.87.0.200"
publish = ["5201:5201", "5202:5202"]

[[port]]
network = "bench"
netns = "$P-v1"
kind = "veth"
ip = "10.78.0.11"

[[port]]
network = "bench"
netns = "$P-v2"
kind = "veth"
ip = "10.78.0.12"
EOF
  start_switchd "$P-sh" "$WORK/host.toml" "$WORK/switchd.sock" one
}

# Two host namespaces $1 and $2 joined by a veth underlay, 198.18.$3.1 and .2.
underlay() {
  ip link add u0 netns "$1" type veth peer name u0 netns "$2"
  ip -n "$1" addr add "198.18.$3.1/24" dev u0; ip -n "$1" link set u0 up
  ip -n "$2" addr add "198.18.$3.2/24" dev u0; ip -n "$2" link set u0 up
}

# The same, IPv6 only: fd00:198:$3::1 and ::2 (no duplicate address
# detection, so the addresses are usable at once).
underlay6() {
  ip link add u0 netns "$1" type veth peer name u0 netns "$2"
  local i ns
  for i in 1 2; do
    ns=$1; [ "$i" = 2 ] && ns=$2
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.u0.disable_ipv6=0
    ip -n "$ns" -6 addr add "fd00:198:$3::$i/64" dev u0 nodad; ip -n "$ns" link set u0 up
  done
}

# The address of host $2 (1 or 2) on underlay $1: 4 (IPv4) or 6.
underlay_addr() { if [ "$1" = 6 ]; then echo "fd00:198:$2::$3"; else echo "198.18.$2.$3"; fi; }

# --- kernel VXLAN: per host a bridge, a vxlan device to the peer, a veth to the container
# $1: namespace tag, $2: 4 or 6 (the underlay's family), $3: underlay
# number, $4: container subnet 10.$4.0.0/24.
setup_vxlan_kernel() {
  local tag=$1 family=$2 net=$3 sub=$4 i h mtu=1450
  [ "$family" = 6 ] && mtu=1430
  mkns "$P-${tag}h1"; mkns "$P-${tag}h2"; mkns "$P-${tag}1"; mkns "$P-${tag}2"
  if [ "$family" = 6 ]; then underlay6 "$P-${tag}h1" "$P-${tag}h2" "$net"; else underlay "$P-${tag}h1" "$P-${tag}h2" "$net"; fi
  for i in 1 2; do
    h="$P-${tag}h$i"
    ip -n "$h" link add br0 type bridge
    ip -n "$h" link add vx42 type vxlan id 42 dstport 4789 local "$(underlay_addr "$family" "$net" "$i")" \
      remote "$(underlay_addr "$family" "$net" $((3 - i)))" dev u0 nolearning
    ip -n "$h" link set vx42 mtu $mtu master br0
    ip -n "$h" link add vc0 type veth peer name eth0 netns "$P-$tag$i"
    ip -n "$h" link set vc0 mtu $mtu master br0
    ip -n "$h" link set vx42 up; ip -n "$h" link set vc0 up; ip -n "$h" link set br0 up
    ip -n "$P-$tag$i" link set eth0 mtu $mtu
    ip -n "$P-$tag$i" addr add "10.$sub.0.$i/24" dev eth0; ip -n "$P-$tag$i" link set eth0 up
  done
}
setup_vxlan() { setup_vxlan_kernel k 4 1 79; }
setup_vxlan6() { setup_vxlan_kernel k6 6 11 89; }

# --- switchd VXLAN: a switchd per host, each the other's [[peer]], a TAP to the container.
# $1: namespace tag, $2: underlay subnet 198.18.$2.0/24, $3: container subnet 10.$3.0.0/24,
# $4: extra [[network]] lines (encryption), $5: 6 for an IPv6 underlay.
setup_switchd_pair() {
  local tag=$1 net=$2 sub=$3 extra=$4 family=${5:-4} i
  mkns "$P-${tag}h1"; mkns "$P-${tag}h2"; mkns "$P-${tag}1"; mkns "$P-${tag}2"
  if [ "$family" = 6 ]; then underlay6 "$P-${tag}h1" "$P-${tag}h2" "$net"; else underlay "$P-${tag}h1" "$P-${tag}h2" "$net"; fi
  for i in 1 2; do
    cat > "$WORK/$tag$i.toml" <<TOML
[host]
name = "$tag$i"
underlay_ip = "$(underlay_addr "$family" "$net" "$i")"
control_socket = "$WORK/$tag$i.sock"
state_dir = "$WORK/$tag$i-state"
$HOST_EXTRA
[[peer]]
underlay_ip = "$(underlay_addr "$family" "$net" $((3 - i)))"
switchd = true            # the peer finishes partial inner checksums

[[network]]
name = "bench"
vni = 42
subnet = "10.$sub.0.0/24"
internal = true
$extra

[[port]]
network = "bench"
netns = "$P-$tag$i"
ip = "10.$sub.0.1$i"
TOML
    start_switchd "$P-${tag}h$i" "$WORK/$tag$i.toml" "$WORK/$tag$i.sock" "$tag"
  done
}

setup_switchd_vxlan() { setup_switchd_pair x 2 80 ""; }
setup_switchd_vxlan6() { setup_switchd_pair x6 12 90 "" 6; }

# The network has its own key, so static peers suffice (no gossip needed).
# $1: namespace tag, $2: underlay subnet, $3: container subnet, $4: cipher.
setup_switchd_sealed() {
  [ -e "$WORK/net.key" ] || python3 -c 'import os; print(os.urandom(32).hex())' > "$WORK/net.key"
  setup_switchd_pair "$1" "$2" "$3" "encrypted = true
cipher = \"$4\"
key_file = \"$WORK/net.key\""
}

# --- wireguard-go: a wg0 per host namespace, peers of each other over the underlay
setup_wg_go() {
  mkns "$P-wh1"; mkns "$P-wh2"
  underlay "$P-wh1" "$P-wh2" 4
  local i
  for i in 1 2; do
    (umask 077; wg genkey > "$WORK/wg$i.key")
    wg pubkey < "$WORK/wg$i.key" > "$WORK/wg$i.pub"
  done
  # wireguard-go keeps its control socket in /var/run/wireguard, shared by
  # all namespaces: the interface names carry this run's PID to stay apart.
  [ -d /var/run/wireguard ] || { mkdir -p /var/run/wireguard; WG_RUNDIR_CREATED=1; }
  for i in 1 2; do
    ip netns exec "$P-wh$i" env WG_PROCESS_FOREGROUND=1 LOG_LEVEL=error wireguard-go "$WG$i" >> "$WORK/wg.log" 2>&1 &
    PIDS+=("$!")
    GROUP_PIDS[w]="${GROUP_PIDS[w]:-} $!"
  done
  for i in 1 2; do
    for _ in $(seq 50); do ip -n "$P-wh$i" link show "$WG$i" >/dev/null 2>&1 && break; sleep 0.1; done
    ip netns exec "$P-wh$i" wg set "$WG$i" private-key "$WORK/wg$i.key" listen-port 51820 \
      peer "$(cat "$WORK/wg$((3 - i)).pub")" allowed-ips "10.82.0.$((3 - i))/32" endpoint "198.18.4.$((3 - i)):51820"
    ip -n "$P-wh$i" addr add "10.82.0.$i/24" dev "$WG$i"
    ip -n "$P-wh$i" link set "$WG$i" mtu 1420 up
  done
}

# --- what each scenario is: client ns, server ns, server address, PID group
# Sets CLIENT, SERVER, ADDR and GROUP (empty: no process of ours to read).
endpoints() {
  GROUP=""
  case $1 in
    bridge) CLIENT=$P-b1 SERVER=$P-b2 ADDR=10.77.0.2 ;;
    bridge-dnat) CLIENT=$P-b1 SERVER=$P-b2 ADDR=10.77.0.200 ;;
    switchd-tap) CLIENT=$P-s1 SERVER=$P-s2 ADDR=10.78.0.22 GROUP=one ;;
    switchd-veth) CLIENT=$P-v1 SERVER=$P-v2 ADDR=10.78.0.12 GROUP=one ;;
    switchd-vip) CLIENT=$P-s1 SERVER=$P-s2 ADDR=10.78.0.200 GROUP=one ;;
    bridge-publish) CLIENT=$P-bc SERVER=$P-b2 ADDR=198.18.9.1 ;;
    switchd-mesh) CLIENT=$P-mc SERVER=$P-m2 ADDR=198.18.10.1 GROUP=one ;;
    routed) CLIENT=$P-r1 SERVER=$P-r2 ADDR=10.86.0.2 ;;
    switchd-routed) CLIENT=$P-s1 SERVER=$P-s3 ADDR=10.84.0.23 GROUP=one ;;
    vxlan) CLIENT=$P-k1 SERVER=$P-k2 ADDR=10.79.0.2 ;;
    switchd-vxlan) CLIENT=$P-x1 SERVER=$P-x2 ADDR=10.80.0.12 GROUP=x ;;
    vxlan6) CLIENT=$P-k61 SERVER=$P-k62 ADDR=10.89.0.2 ;;
    switchd-vxlan6) CLIENT=$P-x61 SERVER=$P-x62 ADDR=10.90.0.12 GROUP=x6 ;;
    switchd-sealed) CLIENT=$P-e1 SERVER=$P-e2 ADDR=10.81.0.12 GROUP=e ;;
    switchd-sealed-aes) CLIENT=$P-a1 SERVER=$P-a2 ADDR=10.83.0.12 GROUP=a ;;
    wg-go) CLIENT=$P-wh1 SERVER=$P-wh2 ADDR=10.82.0.2 GROUP=w ;;
  esac
}

# Which scenarios each test runs on (of those chosen).
declare -A TEST_SCENARIOS=(
  [tcp]="bridge bridge-dnat switchd-tap switchd-veth switchd-vip bridge-publish switchd-mesh routed switchd-routed vxlan switchd-vxlan vxlan6 switchd-vxlan6 switchd-sealed switchd-sealed-aes wg-go"
  [parallel]="bridge switchd-tap switchd-vip vxlan switchd-vxlan"
  [ping]="bridge switchd-tap switchd-veth routed switchd-routed vxlan switchd-vxlan vxlan6 switchd-vxlan6 switchd-sealed switchd-sealed-aes wg-go"
  [udp]="bridge switchd-tap switchd-vip vxlan switchd-vxlan"
  [rr]="bridge switchd-tap vxlan switchd-vxlan vxlan6 switchd-vxlan6 switchd-sealed switchd-sealed-aes"
  [conn]="bridge bridge-dnat switchd-tap switchd-vip bridge-publish switchd-mesh"
)

# Each figure is a line of $RESULTS: test, scenario, run, then key=value.
RESULTS="$WORK/results.tsv"
: > "$RESULTS"
record() { local IFS=$'\t'; echo "$*" >> "$RESULTS"; }

# CPU ticks (utime + stime) of the PIDs given, summed.
cpu_ticks() {
  local total=0 p stat f
  for p in "$@"; do
    stat=$(< "/proc/$p/stat")
    read -ra f <<<"${stat##*) }"  # past "pid (comm) ": f[0] is field 3
    total=$((total + f[11] + f[12]))  # fields 14 and 15
  done
  echo "$total"
}

# Waits until something in ns $1 listens on $2 ("t" or "u") port $3.
wait_listen() {
  for _ in $(seq 100); do
    [ -n "$(ip netns exec "$1" ss "-l${2}nH" "sport = :$3")" ] && return 0
    sleep 0.05
  done
  die "nothing listens on $2 port $3 in $1"
}

# iperf3 from CLIENT to ADDR in SERVER, $1 seconds, options after it;
# leaves the client's JSON in $WORK/iperf.json. The server ends itself after
# one test; `timeout` bounds both.
iperf_json() {
  local secs=$1 spid
  shift
  ip netns exec "$SERVER" timeout $((secs + 30)) iperf3 -s -1 >/dev/null 2>&1 &
  spid=$!
  PIDS+=("$spid")
  wait_listen "$SERVER" t 5201
  ip netns exec "$CLIENT" timeout $((secs + 30)) iperf3 -c "$ADDR" -t "$secs" -J "$@" > "$WORK/iperf.json"
  wait "$spid" 2>/dev/null || true
  forget "$spid"
}

# Python one-liners over $WORK/iperf.json.
jq_py() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); $1" "$WORK/iperf.json"; }

# tcp and parallel: Gbit/s, bytes received and switchd's CPU per GB.
measure_tcp() {  # test scenario run secs [iperf3 options]
  local test=$1 sc=$2 run=$3 secs=$4 before="" after gbit bytes cpu=""
  shift 4
  endpoints "$sc"
  local pids=()
  if [ -n "$GROUP" ]; then read -ra pids <<<"${GROUP_PIDS[$GROUP]}"; before=$(cpu_ticks "${pids[@]}"); fi
  iperf_json "$secs" "$@"
  if [ -n "$GROUP" ]; then after=$(cpu_ticks "${pids[@]}"); fi
  read -r gbit bytes < <(jq_py 'r=d["end"]["sum_received"]; print("%.3f %d" % (r["bits_per_second"]/1e9, r["bytes"]))')
  if [ -n "$GROUP" ]; then
    cpu=$(python3 -c 'import sys; t,b,hz=map(float,sys.argv[1:]); print("%.3f" % (t/hz/(b/1e9)))' \
      "$((after - before))" "$bytes" "$CLK_TCK")
  fi
  record "$test" "$sc" "$run" "gbit=$gbit" "bytes=$bytes" ${cpu:+"cpu_s_per_gb=$cpu"}
  log "run $run $test $sc: $gbit Gbit/s${cpu:+, switchd $cpu CPU s/GB}"
}

# ping: each reply's time= (ms) into $WORK/ping-SC, pooled over the runs.
measure_ping() {  # scenario run
  local sc=$1 run=$2 out got
  endpoints "$sc"
  ip netns exec "$CLIENT" timeout 10 ping -n -q -c 5 -i 0.05 -W 1 "$ADDR" >/dev/null 2>&1 || true  # ARP, learning
  out=$(ip netns exec "$CLIENT" timeout $((PING_COUNT / 20 + 30)) ping -n -c "$PING_COUNT" -i "$PING_INTERVAL" -W 1 "$ADDR" 2>&1 || true)
  sed -n 's/.* time=\([0-9.]*\) ms.*/\1/p' <<<"$out" >> "$WORK/ping-$sc"
  got=$(grep -c ' time=' <<<"$out" || true)
  record ping "$sc" "$run" "sent=$PING_COUNT" "received=$got"
  log "run $run ping $sc: $got of $PING_COUNT replies"
}

# udp: 64-byte datagrams the receiver got per second.
measure_udp() {  # scenario run
  local sc=$1 run=$2 kpps sent lost
  endpoints "$sc"
  iperf_json "$UDP_DURATION" -u -l 64 -b 0
  kpps=$(jq_py 'r=d["end"]["sum_received"]; print("%.1f %d %d" % ((r["packets"]-r["lost_packets"])/r["seconds"]/1e3, r["packets"], r["lost_packets"]))')
  read -r kpps sent lost <<<"$kpps"
  record udp "$sc" "$run" "kpps=$kpps" "packets=$sent" "lost=$lost"
  log "run $run udp $sc: $kpps kpps received ($lost of $sent lost)"
}

# conn: new TCP connections per second (connect, one byte back, close),
# from two client processes for CONN_DURATION s; the server answers each.
measure_conn() {  # scenario run
  local sc=$1 run=$2 spid rate
  endpoints "$sc"
  ip netns exec "$SERVER" timeout $((CONN_DURATION + 30)) python3 "$ROOT/benches/conn_rate.py" serve 5202 &
  spid=$!
  PIDS+=("$spid")
  wait_listen "$SERVER" t 5202
  rate=$(ip netns exec "$CLIENT" timeout $((CONN_DURATION + 30)) python3 "$ROOT/benches/conn_rate.py" connect "$ADDR" 5202 "$CONN_DURATION" 2)
  kill "$spid" 2>/dev/null || true
  wait "$spid" 2>/dev/null || true
  forget "$spid"
  record conn "$sc" "$run" "cps=$rate"
  log "run $run conn $sc: $rate connections/s"
}

# rr: sockperf ping-pong, UDP or TCP: round trips/s and RTT percentiles (us).
measure_rr() {  # scenario run proto
  local sc=$1 run=$2 proto=$3 port=11111 opt=() kind=u spid fig
  endpoints "$sc"
  if [ "$proto" = tcp ]; then port=11112 opt=(--tcp) kind=t; fi
  ip netns exec "$SERVER" timeout $((RR_DURATION + 30)) sockperf server "${opt[@]}" -i "$ADDR" -p "$port" >/dev/null 2>&1 &
  spid=$!
  PIDS+=("$spid")
  wait_listen "$SERVER" "$kind" "$port"
  ip netns exec "$CLIENT" timeout $((RR_DURATION + 30)) sockperf ping-pong "${opt[@]}" -i "$ADDR" -p "$port" \
    -m 64 -t "$RR_DURATION" --full-rtt > "$WORK/sockperf.out" 2>&1 || { cat "$WORK/sockperf.out" >&2; die "sockperf failed ($sc $proto)"; }
  kill "$spid" 2>/dev/null || true
  wait "$spid" 2>/dev/null || true
  forget "$spid"
  fig=$(python3 - "$WORK/sockperf.out" <<'PY'
import re, sys
t = re.sub(r"\x1b\[[0-9;]*m", "", open(sys.argv[1]).read())
valid = re.search(r"\[Valid Duration\] RunTime=([\d.]+) sec; SentMessages=(\d+); ReceivedMessages=(\d+)", t)
avg = re.search(r"avg-(?:rtt|latency)=([\d.]+)", t)
pct = lambda p: float(re.search(r"percentile %s =\s*([\d.]+)" % re.escape(p), t).group(1))
secs, got = float(valid.group(1)), int(valid.group(3))
print("tps=%.0f avg_us=%.2f p50_us=%.2f p99_us=%.2f" % (got / secs, float(avg.group(1)), pct("50.000"), pct("99.000")))
PY
)
  # shellcheck disable=SC2086
  record "rr-$proto" "$sc" "$run" $fig
  log "run $run rr $proto $sc: $fig"
}

case " $SCENARIOS " in *" bridge "*|*" bridge-dnat "*|*" bridge-publish "*) setup_bridge ;; esac
if has "$SCENARIOS" bridge-dnat; then
  # In the client: 10.77.0.200 is the server, by DNAT (every port).
  ip netns exec "$P-b1" nft -f - <<'NFT'
table ip vip {
  chain out { type nat hook output priority -100; ip daddr 10.77.0.200 dnat to 10.77.0.2; }
}
NFT
fi
if has "$SCENARIOS" bridge-publish; then
  # The host publishes b2's ports 5201-5202 on its underlay address, as
  # Docker's -p does with the kernel (DNAT, forwarding, the bridge).
  mkns "$P-bc"
  ip link add u0 netns "$P-bh" type veth peer name u0 netns "$P-bc"
  ip -n "$P-bh" addr add 198.18.9.1/24 dev u0; ip -n "$P-bh" link set u0 up
  ip -n "$P-bc" addr add 198.18.9.2/24 dev u0; ip -n "$P-bc" link set u0 up
  ip -n "$P-bh" addr add 10.77.0.254/24 dev br0
  ip netns exec "$P-bh" sysctl -qw net.ipv4.ip_forward=1
  ip -n "$P-b2" route add 198.18.9.0/24 via 10.77.0.254
  ip netns exec "$P-bh" nft -f - <<'NFT'
table ip publish {
  chain pre { type nat hook prerouting priority dstnat; fib daddr type local tcp dport 5201-5202 dnat to 10.77.0.2; }
}
NFT
fi
case " $SCENARIOS " in *" switchd-tap "*|*" switchd-veth "*|*" switchd-vip "*|*" switchd-routed "*|*" switchd-mesh "*) setup_switchd ;; esac
if has "$SCENARIOS" switchd-mesh; then
  # A client outside, on the host's underlay; the backend's way back to it.
  mkns "$P-mc"
  ip link add u0 netns "$P-sh" type veth peer name u0 netns "$P-mc"
  ip -n "$P-sh" addr add 198.18.10.1/24 dev u0; ip -n "$P-sh" link set u0 up
  ip -n "$P-mc" addr add 198.18.10.2/24 dev u0; ip -n "$P-mc" link set u0 up
  ip -n "$P-m2" route add 198.18.10.0/24 via 10.87.0.1
fi
case " $SCENARIOS " in *" routed "*) setup_routed ;; esac
case " $SCENARIOS " in *" vxlan "*) setup_vxlan ;; esac
case " $SCENARIOS " in *" switchd-vxlan "*) setup_switchd_vxlan ;; esac
case " $SCENARIOS " in *" vxlan6 "*) setup_vxlan6 ;; esac
case " $SCENARIOS " in *" switchd-vxlan6 "*) setup_switchd_vxlan6 ;; esac
# The cipher is always named: the scenario does not follow the default.
case " $SCENARIOS " in *" switchd-sealed "*) setup_switchd_sealed e 3 81 chacha20-poly1305 ;; esac
case " $SCENARIOS " in *" switchd-sealed-aes "*) setup_switchd_sealed a 5 83 aes-256-gcm ;; esac
case " $SCENARIOS " in *" wg-go "*) setup_wg_go ;; esac

if [ "${LIVE_TRACE:-false}" != false ]; then
  read -ra live_filter <<<"${LIVE_TRACE/#true/}"
  for sock in "$WORK"/*.sock; do
    # Bounded: it ends by itself after a day at most, and at cleanup by its PID.
    "$SWITCHCTL" --socket "$sock" trace --live "${live_filter[@]}" --seconds 86400 > /dev/null 2>> "$WORK/live.log" &
    PIDS+=("$!")
  done
  log "live traces running on $(ls "$WORK"/*.sock | wc -l) switchd(s)"
fi

STARTED=$(date +%s)
for run in $(seq "$RUNS"); do
  for test in $TESTS; do
    for sc in $SCENARIOS; do
      has "${TEST_SCENARIOS[$test]}" "$sc" || continue
      case $test in
        tcp) measure_tcp tcp "$sc" "$run" "$DURATION" ;;
        parallel) measure_tcp parallel "$sc" "$run" "$PARALLEL_DURATION" -P 4 ;;
        ping) measure_ping "$sc" "$run" ;;
        conn) measure_conn "$sc" "$run" ;;
        udp) measure_udp "$sc" "$run" ;;
        rr) measure_rr "$sc" "$run" udp; measure_rr "$sc" "$run" tcp ;;
      esac
    done
  done
done
ELAPSED=$(($(date +%s) - STARTED))

echo "machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ); switchd $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'); measured for ${ELAPSED}s"
echo "runs: $RUNS; tests: $TESTS; host.toml extras: $(tr '\n' ' ' <<<"${HOST_EXTRA:-none}")${LIVE_TRACE:+; live trace: $LIVE_TRACE}"
python3 - "$WORK" "$RESULTS" "$SCENARIOS" "$DURATION" "$PARALLEL_DURATION" "$UDP_DURATION" "$RR_DURATION" "$PING_COUNT" "$PING_INTERVAL" "$CONN_DURATION" <<'PY'
import os, statistics, sys

work, results, scenarios = sys.argv[1], sys.argv[2], sys.argv[3].split()
duration, pduration, uduration, rrduration, ping_count, ping_interval, conn_duration = sys.argv[4:11]

# Kernel (or userspace) references, the kernel's first.
REFS = {
    "switchd-tap": ["bridge"],
    "switchd-veth": ["bridge"],
    "switchd-vip": ["bridge-dnat", "switchd-tap", "bridge"],
    "switchd-mesh": ["bridge-publish", "switchd-vip"],
    "bridge-dnat": ["bridge"],
    "switchd-routed": ["routed", "switchd-tap"],
    "switchd-vxlan": ["vxlan"],
    "switchd-vxlan6": ["vxlan6", "switchd-vxlan"],
    "switchd-sealed": ["vxlan", "switchd-vxlan", "wg-go"],
    "switchd-sealed-aes": ["vxlan", "switchd-vxlan", "wg-go"],
}
REFERENCE = {"bridge", "bridge-publish", "routed", "vxlan", "vxlan6", "wg-go"}

rows = {}  # (test, scenario) -> [{key: value}] per run
for line in open(results):
    test, sc, run, *kvs = line.rstrip("\n").split("\t")
    rows.setdefault((test, sc), []).append({k: float(v) for k, v in (kv.split("=", 1) for kv in kvs)})

def values(test, sc, key):
    return [r[key] for r in rows.get((test, sc), []) if key in r]

def med(test, sc, key):
    v = values(test, sc, key)
    return statistics.median(v) if v else None

def spread(test, sc, key, fmt):
    v = values(test, sc, key)
    if not v:
        return "-"
    m = statistics.median(v)
    return (fmt % m) if len(v) == 1 else ("%s [%s-%s]" % (fmt % m, fmt % min(v), fmt % max(v)))

def kernel_ref(test, sc):
    return next((r for r in REFS.get(sc, []) if (test, r) in rows), None)

def table(title, header, lines):
    if not lines:
        return
    print()
    print(title)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    for cells in [header] + lines:
        print("  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip())

def ratio(a, b):
    return "%.2f" % (a / b) if a is not None and b else "-"

def present(test):
    return [sc for sc in scenarios if (test, sc) in rows]

# TCP, one stream.
lines = []
for sc in present("tcp"):
    refs = [r for r in REFS.get(sc, []) if ("tcp", r) in rows]
    rel = "; ".join("%s of %s" % (ratio(med("tcp", sc, "gbit"), med("tcp", r, "gbit")), r) for r in refs)
    rel = rel or ("1 (reference)" if sc in REFERENCE else "-")
    lines.append([sc, spread("tcp", sc, "gbit", "%.2f"), rel, spread("tcp", sc, "cpu_s_per_gb", "%.2f")])
table("TCP, one stream (iperf3 -t %s): the receiver's Gbit/s, median [min-max]" % duration,
      ["scenario", "Gbit/s", "ratio", "CPU s/GB"], lines)

# TCP, four streams.
lines = []
for sc in present("parallel"):
    ref = kernel_ref("parallel", sc)
    g = med("parallel", sc, "gbit")
    lines.append([sc, spread("parallel", sc, "gbit", "%.2f"),
                  "%s of %s" % (ratio(g, med("parallel", ref, "gbit")), ref) if ref else ("1 (reference)" if sc in REFERENCE else "-"),
                  ratio(g, med("tcp", sc, "gbit")),
                  spread("parallel", sc, "cpu_s_per_gb", "%.2f")])
table("TCP, 4 streams (iperf3 -P 4 -t %s): Gbit/s" % pduration,
      ["scenario", "Gbit/s", "ratio to kernel", "ratio to 1 stream", "CPU s/GB"], lines)

# Ping: every run's samples pooled.
def ping_stats(sc):
    path = os.path.join(work, "ping-" + sc)
    v = sorted(float(x) * 1000 for x in open(path)) if os.path.exists(path) else []
    if not v:
        return None
    p99 = v[min(len(v) - 1, max(0, -(-99 * len(v) // 100) - 1))]  # nearest rank
    return {"n": len(v), "median": statistics.median(v), "p99": p99, "mean": statistics.fmean(v)}

lines = []
for sc in present("ping"):
    s = ping_stats(sc)
    sent = sum(values("ping", sc, "sent"))
    got = sum(values("ping", sc, "received"))
    if s is None:
        lines.append([sc, "-", "-", "-", "%d/%d" % (sent - got, sent), "-", "-", "-", "-"])
        continue
    ref = kernel_ref("ping", sc)
    r = ping_stats(ref) if ref else None
    lines.append([sc, "%.0f" % s["median"], "%.0f" % s["p99"], "%.0f" % s["mean"], "%d/%d" % (sent - got, sent),
                  ref or ("(reference)" if sc in REFERENCE else "-"),
                  "%+.0f" % (s["median"] - r["median"]) if r else "-",
                  "%+.0f" % (s["p99"] - r["p99"]) if r else "-",
                  ratio(s["p99"], r["p99"]) if r else "-"])
table("ping RTT (%s x %s s per run, every run pooled): microseconds" % (ping_count, ping_interval),
      ["scenario", "median", "p99", "mean", "lost", "kernel", "added median", "added p99", "p99 ratio"], lines)

# UDP 64-byte datagrams.
lines = []
for sc in present("udp"):
    ref = kernel_ref("udp", sc)
    lost = sum(values("udp", sc, "lost")) / max(1, sum(values("udp", sc, "packets")))
    lines.append([sc, spread("udp", sc, "kpps", "%.0f"), "%.0f%%" % (100 * lost),
                  "%s of %s" % (ratio(med("udp", sc, "kpps"), med("udp", ref, "kpps")), ref) if ref else ("1 (reference)" if sc in REFERENCE else "-")])
table("UDP, 64-byte datagrams received (iperf3 -u -l 64 -b 0 -t %s): kpps, median [min-max]" % uduration,
      ["scenario", "kpps", "lost", "ratio"], lines)

# New connections.
lines = []
for sc in present("conn"):
    refs = [r for r in REFS.get(sc, []) if ("conn", r) in rows]
    rel = "; ".join("%s of %s" % (ratio(med("conn", sc, "cps"), med("conn", r, "cps")), r) for r in refs)
    lines.append([sc, spread("conn", sc, "cps", "%.0f"), rel or ("1 (reference)" if sc in REFERENCE else "-")])
table("new TCP connections (connect, a byte back, close; 2 client processes, %s s): per second, median [min-max]" % conn_duration,
      ["scenario", "conn/s", "ratio"], lines)

# Request/response.
for proto in ("udp", "tcp"):
    test = "rr-" + proto
    lines = []
    for sc in present(test):
        ref = kernel_ref(test, sc)
        tps = med(test, sc, "tps")
        lines.append([sc, spread(test, sc, "tps", "%.0f"), "%.1f" % med(test, sc, "avg_us"),
                      "%.1f" % med(test, sc, "p50_us"), "%.1f" % med(test, sc, "p99_us"),
                      "%s of %s" % (ratio(tps, med(test, ref, "tps")), ref) if ref else ("1 (reference)" if sc in REFERENCE else "-"),
                      "%+.1f" % (med(test, sc, "p50_us") - med(test, ref, "p50_us")) if ref else "-",
                      ratio(med(test, sc, "p99_us"), med(test, ref, "p99_us")) if ref else "-"])
    table("request/response, %s (sockperf ping-pong -m 64 -t %s, --full-rtt): round trips/s and RTT in us, median of runs"
          % (proto.upper(), rrduration),
          ["scenario", "trans/s", "mean", "p50", "p99", "trans/s ratio", "added p50", "p99 ratio"], lines)
PY
