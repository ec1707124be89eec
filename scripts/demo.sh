#!/usr/bin/env bash
# The switchd demo: builds switchd, starts it in a host namespace with three
# containers on two networks, shows them talking (ping, a 3 s iperf3), shows
# isolation, a run-time connect and a crash-restart, then cleans up.
#
# Everything lives in private network namespaces named sdemo-*; the networks
# are `internal` (no default routes), so no packet can leave this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

scripts/deps.sh
step "Building switchd and switchctl (release)"
cargo build --release --bins -q
SWITCHD=$ROOT/target/release/switchd
SWITCHCTL=$ROOT/target/release/switchctl

WORK=$(mktemp -d /tmp/switchd-demo.XXXXXX)
export SWITCHD_SOCKET=$WORK/switchd.sock
NSES=(sdemo-host sdemo-web sdemo-api sdemo-db)
SD_PID=""
cleanup() {
  step "Cleaning up"
  [ -n "$SD_PID" ] && kill "$SD_PID" 2>/dev/null && wait "$SD_PID" 2>/dev/null || true
  for n in "${NSES[@]}"; do ip netns del "$n" 2>/dev/null || true; done
  rm -rf "$WORK"
  echo "removed namespaces ${NSES[*]} and $WORK"
}
for n in "${NSES[@]}"; do
  if ip netns list | grep -qw "$n"; then echo "namespace $n exists already; remove it first (ip netns del $n)" >&2; exit 1; fi
done
trap cleanup EXIT

step "Namespaces: one host (where switchd runs) and three containers"
for n in "${NSES[@]}"; do ip netns add "$n"; ip -n "$n" link set lo up; done
ip netns list | grep sdemo

step "host.toml: two isolated networks; web on frontend, api on both"
cat > "$WORK/host.toml" <<EOF
[host]
name = "demo-host"
control_socket = "$WORK/switchd.sock"
state_dir = "$WORK/state"

[[network]]
name = "frontend"
vni = 100
subnet = "10.10.0.0/24"
internal = true          # no default route in the containers (nothing leaves the machine)

[[network]]
name = "backend"
vni = 200
subnet = "10.20.0.0/24"
internal = true

[[port]]
network = "frontend"
netns = "sdemo-web"
name = "web"

[[port]]
network = "frontend"
netns = "sdemo-api"
name = "api"

[[port]]
network = "backend"
netns = "sdemo-api"
name = "api"
EOF
cat "$WORK/host.toml"
show "$SWITCHD" --check --config "$WORK/host.toml"

start_switchd() {
  ip netns exec sdemo-host "$SWITCHD" --config "$WORK/host.toml" 2>>"$WORK/switchd.log" &
  SD_PID=$!
  for _ in $(seq 50); do "$SWITCHCTL" status >/dev/null 2>&1 && return 0; sleep 0.1; done
  cat "$WORK/switchd.log"; exit 1
}
step "Starting switchd in namespace sdemo-host"
start_switchd
show "$SWITCHCTL" status

step "Connecting a third container at run time: db on backend"
show "$SWITCHCTL" network connect backend sdemo-db --name db
show "$SWITCHCTL" network ls
show "$SWITCHCTL" network inspect backend

ip_of() { "$SWITCHCTL" --json network inspect "$1" | python3 -c "import json,sys; print(next(e['ip'] for e in json.load(sys.stdin)['endpoints'] if e['name']=='$2'))"; }
WEB=$(ip_of frontend web); API_F=$(ip_of frontend api); API_B=$(ip_of backend api); DB=$(ip_of backend db)

step "Inside the api container: eth0 on frontend, eth1 on backend"
show ip -n sdemo-api -br addr show

step "web -> api on frontend"
show ip netns exec sdemo-web ping -c 3 -i 0.2 "$API_F"
step "api -> db on backend"
show ip netns exec sdemo-api ping -c 3 -i 0.2 "$DB"
step "web -> db: different networks, so nothing gets through"
if ip netns exec sdemo-web ping -c 2 -W 1 "$DB" >/dev/null 2>&1; then echo "UNEXPECTED: web reached db" >&2; exit 1; fi
echo "web cannot reach db ($DB): isolated, as it should be"

step "iperf3 web -> api for 3 s (TCP, through switchd)"
ip netns exec sdemo-api iperf3 -s -1 >/dev/null 2>&1 &
IPERF_PID=$!
for _ in $(seq 50); do [ -n "$(ip netns exec sdemo-api ss -ltnH 'sport = :5201')" ] && break; sleep 0.1; done
show ip netns exec sdemo-web iperf3 -c "$API_F" -t 3 --format g
wait "$IPERF_PID" 2>/dev/null || true

step "What switchd learned and counted"
show "$SWITCHCTL" fdb
show "$SWITCHCTL" stats

step "Crash and restart: kill -9 switchd; the containers keep their interfaces"
kill -9 "$SD_PID"; wait "$SD_PID" 2>/dev/null || true; SD_PID=""
show ip -n sdemo-web -br addr show eth0
start_switchd
show ip netns exec sdemo-web ping -c 3 -i 0.2 "$API_F"

step "Disconnecting db: its interface disappears"
show "$SWITCHCTL" network disconnect backend db
show ip -n sdemo-db -br link

printf '\n\033[1mDemo complete: web %s, api %s + %s, db %s talked through switchd.\033[0m\n' "$WEB" "$API_F" "$API_B" "$DB"
