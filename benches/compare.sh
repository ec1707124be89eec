#!/usr/bin/env bash
# compare.sh: iperf3 TCP container to container through switchd and through
# the kernel's own bridge and VXLAN, in the same run, runs interleaved so
# machine drift hits all alike. Prints the median [min-max] of each and the
# ratio of switchd to the kernel reference for the same topology.
#
#   benches/compare.sh                 # RUNS=3 DURATION=10
#   RUNS=5 DURATION=5 benches/compare.sh
#   WORKERS=2 benches/compare.sh       # switchd data-plane threads (default 1)
#
# Scenarios (SCENARIOS to choose):
#   one host, MTU 1500:
#     bridge        c1 -veth- [Linux bridge in ns h] -veth- c2         (reference)
#     switchd-tap   c1 -TAP- [switchd in ns h] -TAP- c2                 (the product)
#     switchd-veth  c1 -veth- [switchd in ns h, AF_PACKET] -veth- c2
#   routed between two networks, one host, MTU 1500:
#     routed          c1 -veth- [Linux router: ns r, ip_forward] -veth- c2   (reference)
#     switchd-routed  c1 -TAP- [switchd: bench -> bench2 via the gateway] -TAP- c2
#   two hosts joined by a veth underlay (198.18.0.0/15, MTU 1500), containers MTU 1450:
#     vxlan          c1 -veth- [bridge + kernel vxlan, hA] = [hB] -veth- c2   (reference)
#     switchd-vxlan  c1 -TAP- [switchd, hA] = [switchd, hB] -TAP- c2
#   encrypted, same two-host topology:
#     switchd-sealed c1 -TAP- [switchd, hA] = [switchd, hB] -TAP- c2, network encrypted
#                    with ChaCha20-Poly1305 (the default cipher), container MTU 1414
#     switchd-sealed-aes  the same with AES-256-GCM
#     wg-go          hA [wireguard-go wg0] = [wireguard-go wg0] hB, iperf3 between the
#                    host namespaces over wg0 (MTU 1420): Debian's wireguard-go, the
#                    userspace reference (this kernel has no WireGuard module)
# All namespaces are private (prefix sdb-PID-), no default routes; everything
# is removed on exit, processes are ended by their PID.
set -euo pipefail

RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
SCENARIOS=${SCENARIOS:-"bridge switchd-tap switchd-veth routed switchd-routed vxlan switchd-vxlan switchd-sealed switchd-sealed-aes wg-go"}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
P="sdb-$$"
WORK=$(mktemp -d /tmp/switchd-compare.XXXXXX)
NSES=()
PIDS=()
WG="wg$$-"
WG_RUNDIR_CREATED=0

log() { echo "[compare] $*" >&2; }

cleanup() {
  local p n
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  sleep 0.3
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true; done
  for n in "${NSES[@]:-}"; do [ -n "$n" ] && { ip netns del "$n" 2>/dev/null; rm -rf "/etc/netns/$n"; } || true; done
  rm -rf "$WORK"
  [ "$WG_RUNDIR_CREATED" = 1 ] && rmdir /var/run/wireguard 2>/dev/null || true
}
trap cleanup EXIT

mkns() { ip netns add "$1"; NSES+=("$1"); ip -n "$1" link set lo up; }

"$ROOT/scripts/deps.sh" >&2
case " $SCENARIOS " in *" wg-go "*)
  if ! command -v wireguard-go >/dev/null || ! command -v wg >/dev/null; then
    log "installing wireguard-go and wireguard-tools"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wireguard-go wireguard-tools >/dev/null 2>&1 \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wireguard-go wireguard-tools; }
  fi ;;
esac
log "building release binaries"
(cd "$ROOT" && cargo build --release --bins -q)
SWITCHD="$ROOT/target/release/switchd"
SWITCHCTL="$ROOT/target/release/switchctl"

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

# Starts switchd in ns $1 with config $2 and waits for its socket $3.
start_switchd() {
  ip netns exec "$1" "$SWITCHD" --config "$2" 2>> "$WORK/switchd.log" &
  PIDS+=("$!")
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
  mkns "$P-sh"; mkns "$P-s1"; mkns "$P-s2"; mkns "$P-v1"; mkns "$P-v2"; mkns "$P-s3"
  cat > "$WORK/host.toml" <<EOF
[host]
name = "compare"
control_socket = "$WORK/switchd.sock"
state_dir = "$WORK/state"
workers = ${WORKERS:-1}

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
  start_switchd "$P-sh" "$WORK/host.toml" "$WORK/switchd.sock"
}

# Two host namespaces $1 and $2 joined by a veth underlay, 198.18.$3.1 and .2.
underlay() {
  ip link add u0 netns "$1" type veth peer name u0 netns "$2"
  ip -n "$1" addr add "198.18.$3.1/24" dev u0; ip -n "$1" link set u0 up
  ip -n "$2" addr add "198.18.$3.2/24" dev u0; ip -n "$2" link set u0 up
}

# --- kernel VXLAN: per host a bridge, a vxlan device to the peer, a veth to the container
setup_vxlan() {
  mkns "$P-kh1"; mkns "$P-kh2"; mkns "$P-k1"; mkns "$P-k2"
  underlay "$P-kh1" "$P-kh2" 1
  local i h
  for i in 1 2; do
    h="$P-kh$i"
    ip -n "$h" link add br0 type bridge
    ip -n "$h" link add vx42 type vxlan id 42 dstport 4789 local "198.18.1.$i" remote "198.18.1.$((3 - i))" dev u0 nolearning
    ip -n "$h" link set vx42 mtu 1450 master br0
    ip -n "$h" link add vc0 type veth peer name eth0 netns "$P-k$i"
    ip -n "$h" link set vc0 mtu 1450 master br0
    ip -n "$h" link set vx42 up; ip -n "$h" link set vc0 up; ip -n "$h" link set br0 up
    ip -n "$P-k$i" link set eth0 mtu 1450
    ip -n "$P-k$i" addr add "10.79.0.$i/24" dev eth0; ip -n "$P-k$i" link set eth0 up
  done
}

# --- switchd VXLAN: a switchd per host, each the other's [[peer]], a TAP to the container.
# $1: namespace tag, $2: underlay subnet 198.18.$2.0/24, $3: container subnet 10.$3.0.0/24,
# $4: extra [[network]] lines (encryption).
setup_switchd_pair() {
  local tag=$1 net=$2 sub=$3 extra=$4 i
  mkns "$P-${tag}h1"; mkns "$P-${tag}h2"; mkns "$P-${tag}1"; mkns "$P-${tag}2"
  underlay "$P-${tag}h1" "$P-${tag}h2" "$net"
  for i in 1 2; do
    cat > "$WORK/$tag$i.toml" <<TOML
[host]
name = "$tag$i"
underlay_ip = "198.18.$net.$i"
control_socket = "$WORK/$tag$i.sock"
state_dir = "$WORK/$tag$i-state"
workers = ${WORKERS:-1}

[[peer]]
underlay_ip = "198.18.$net.$((3 - i))"

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
    start_switchd "$P-${tag}h$i" "$WORK/$tag$i.toml" "$WORK/$tag$i.sock"
  done
}

setup_switchd_vxlan() { setup_switchd_pair x 2 80 ""; }

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
  done
  for i in 1 2; do
    for _ in $(seq 50); do ip -n "$P-wh$i" link show "$WG$i" >/dev/null 2>&1 && break; sleep 0.1; done
    ip netns exec "$P-wh$i" wg set "$WG$i" private-key "$WORK/wg$i.key" listen-port 51820 \
      peer "$(cat "$WORK/wg$((3 - i)).pub")" allowed-ips "10.82.0.$((3 - i))/32" endpoint "198.18.4.$((3 - i)):51820"
    ip -n "$P-wh$i" addr add "10.82.0.$i/24" dev "$WG$i"
    ip -n "$P-wh$i" link set "$WG$i" mtu 1420 up
  done
}

# iperf3 from ns $1 to server ns $2 at $3; prints the receiver's Gbit/s.
iperf() {
  local client=$1 server=$2 ip=$3 out="$WORK/iperf.json"
  ip netns exec "$server" iperf3 -s -1 >/dev/null 2>&1 &
  local spid=$!
  PIDS+=("$spid")
  for _ in $(seq 50); do
    [ -n "$(ip netns exec "$server" ss -ltnH 'sport = :5201')" ] && break
    sleep 0.1
  done
  ip netns exec "$client" iperf3 -c "$ip" -t "$DURATION" -J > "$out"
  wait "$spid" 2>/dev/null || true
  python3 -c 'import json,sys; print("%.2f" % (json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"]/1e9))' "$out"
}

declare -A RESULTS
case " $SCENARIOS " in *" bridge "*) setup_bridge ;; esac
case " $SCENARIOS " in *" switchd-tap "*|*" switchd-veth "*|*" switchd-routed "*) setup_switchd ;; esac
case " $SCENARIOS " in *" routed "*) setup_routed ;; esac
case " $SCENARIOS " in *" vxlan "*) setup_vxlan ;; esac
case " $SCENARIOS " in *" switchd-vxlan "*) setup_switchd_vxlan ;; esac
case " $SCENARIOS " in *" switchd-sealed "*) setup_switchd_sealed e 3 81 chacha20-poly1305 ;; esac
case " $SCENARIOS " in *" switchd-sealed-aes "*) setup_switchd_sealed a 5 83 aes-256-gcm ;; esac
case " $SCENARIOS " in *" wg-go "*) setup_wg_go ;; esac
for run in $(seq "$RUNS"); do
  for sc in $SCENARIOS; do
    case $sc in
      bridge) g=$(iperf "$P-b1" "$P-b2" 10.77.0.2) ;;
      switchd-tap) g=$(iperf "$P-s1" "$P-s2" 10.78.0.22) ;;
      switchd-veth) g=$(iperf "$P-v1" "$P-v2" 10.78.0.12) ;;
      routed) g=$(iperf "$P-r1" "$P-r2" 10.86.0.2) ;;
      switchd-routed) g=$(iperf "$P-s1" "$P-s3" 10.84.0.23) ;;
      vxlan) g=$(iperf "$P-k1" "$P-k2" 10.79.0.2) ;;
      switchd-vxlan) g=$(iperf "$P-x1" "$P-x2" 10.80.0.12) ;;
      switchd-sealed) g=$(iperf "$P-e1" "$P-e2" 10.81.0.12) ;;
      switchd-sealed-aes) g=$(iperf "$P-a1" "$P-a2" 10.83.0.12) ;;
      wg-go) g=$(iperf "$P-wh1" "$P-wh2" 10.82.0.2) ;;
      *) echo "unknown scenario $sc" >&2; exit 2 ;;
    esac
    log "run $run $sc: $g Gbit/s"
    RESULTS[$sc]="${RESULTS[$sc]:-} $g"
  done
done

summary() {  # values... -> "median [min-max]"
  python3 -c 'import statistics,sys; v=[float(x) for x in sys.argv[1:]]; print("%.2f [%.2f-%.2f]" % (statistics.median(v), min(v), max(v)))' "$@"
}
median() { python3 -c 'import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }

ratio() { python3 -c 'import sys; print("%.2f" % (float(sys.argv[1])/float(sys.argv[2])))' "$(median $1)" "$(median $2)"; }

echo "machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ); iperf3 TCP ${DURATION}s x ${RUNS} runs"
for sc in $SCENARIOS; do
  case $sc in
    switchd-tap|switchd-veth) refs="bridge" ;;
    switchd-routed) refs="routed switchd-tap" ;;
    switchd-vxlan) refs="vxlan" ;;
    switchd-sealed|switchd-sealed-aes) refs="switchd-vxlan vxlan wg-go" ;;
    *) refs="" ;;
  esac
  # shellcheck disable=SC2086
  line="$(printf '%-18s' "$sc") $(summary ${RESULTS[$sc]}) Gbit/s"
  for ref in $refs; do
    if [ -n "${RESULTS[$ref]:-}" ]; then
      # shellcheck disable=SC2086
      line="$line  ratio to $ref $(ratio "${RESULTS[$sc]}" "${RESULTS[$ref]}")"
    fi
  done
  echo "$line"
done
