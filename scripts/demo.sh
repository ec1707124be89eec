#!/usr/bin/env bash
# The switchd demo: builds switchd, starts it on two hosts (network
# namespaces joined by a veth "LAN") that find each other by gossip,
# attaches three containers to two networks, and shows them talking: on one
# host through the switch, across hosts through VXLAN. Then isolation, a
# run-time connect, a crash-restart, and clean-up.
#
# Then what the gateway serves: names (embedded DNS), routing between two
# networks once a route allows it, DHCP, a published port, and a service's
# port published on both hosts through the routing mesh. Then an
# encrypted network: sealed on the wire (tcpdump shows it), and its key
# rotated while pings flow.
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
NSES=(sdemo-host-a sdemo-host-b sdemo-web sdemo-api sdemo-db sdemo-dhcp)
declare -A SD_PID=()
cleanup() {
  step "Cleaning up"
  local h
  for h in "${!SD_PID[@]}"; do kill "${SD_PID[$h]}" 2>/dev/null && wait "${SD_PID[$h]}" 2>/dev/null || true; done
  for n in "${NSES[@]}"; do ip netns del "$n" 2>/dev/null || true; rm -rf "/etc/netns/$n"; done
  rm -rf "$WORK"
  echo "removed namespaces ${NSES[*]} and $WORK"
}
for n in "${NSES[@]}"; do
  if ip netns list | grep -qw "$n"; then echo "namespace $n exists already; remove it first (ip netns del $n)" >&2; exit 1; fi
done
trap cleanup EXIT

step "Namespaces: two hosts joined by a veth underlay (198.18.0.1, .2), three containers"
for n in "${NSES[@]}"; do ip netns add "$n"; ip -n "$n" link set lo up; done
ip link add u0 netns sdemo-host-a type veth peer name u0 netns sdemo-host-b
ip -n sdemo-host-a addr add 198.18.0.1/24 dev u0; ip -n sdemo-host-a link set u0 up
ip -n sdemo-host-b addr add 198.18.0.2/24 dev u0; ip -n sdemo-host-b link set u0 up
ip netns list | grep sdemo

# The cluster key every host shares: 32 random bytes as 64 hex characters.
od -An -tx1 -N32 /dev/urandom | tr -d ' \n' > "$WORK/cluster.key"

# host.toml for host $1 (a or b) with underlay address $2, then extra sections.
write_config() {
  cat > "$WORK/host-$1.toml" <<EOF
[host]
name = "host-$1"
underlay_ip = "$2"
control_socket = "$WORK/host-$1.sock"
state_dir = "$WORK/state-$1"

[gossip]                 # hosts find each other from a seed; no peer lists
seeds = ["198.18.0.1:7946"]
key_file = "cluster.key"
$3
EOF
}
write_config a 198.18.0.1 '
[[network]]
name = "frontend"
vni = 100
subnet = "10.10.0.0/24"
internal = true          # no default route in the containers (nothing leaves the machine)

[[network]]
name = "backend"
vni = 200
subnet = "10.20.0.0/24"
subnet6 = "fd00:20::/64"  # dual stack: containers take IPv6 addresses by SLAAC
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
name = "api"'
write_config b 198.18.0.2 ""
step "host-a's host.toml: two networks, web on frontend, api on both"
cat "$WORK/host-a.toml"
step "host-b's host.toml: nothing but how to find the cluster"
cat "$WORK/host-b.toml"
show "$SWITCHD" --check --config "$WORK/host-a.toml"

ctl() { local h=$1; shift; "$SWITCHCTL" --socket "$WORK/host-$h.sock" "$@"; }
start_switchd() {
  ip netns exec "sdemo-host-$1" "$SWITCHD" --config "$WORK/host-$1.toml" 2>>"$WORK/switchd-$1.log" &
  SD_PID[$1]=$!
  for _ in $(seq 50); do ctl "$1" status >/dev/null 2>&1 && return 0; sleep 0.1; done
  cat "$WORK/switchd-$1.log"; exit 1
}
step "Starting switchd on both hosts; they find each other by gossip"
start_switchd a
start_switchd b
for _ in $(seq 50); do ctl b network ls | grep -q backend && break; sleep 0.1; done
show ctl a peers
show ctl b network ls

step "Connecting a container on host-b at run time: db on backend"
show ctl b network connect backend sdemo-db --name db --ip 10.20.0.30
show ctl a network ls
show ctl a network inspect backend

ip_of() { ctl a --json network inspect "$1" | python3 -c "import json,sys; print(next(e['${3:-ip}'] for e in json.load(sys.stdin)['endpoints'] if e['name']=='$2'))"; }
WEB=$(ip_of frontend web); API_F=$(ip_of frontend api); API_B=$(ip_of backend api); DB=10.20.0.30

step "Inside the api container: eth0 on frontend, eth1 on backend"
show ip -n sdemo-api -br addr show

step "web -> api on frontend (same host: switched by host-a's switchd)"
show ip netns exec sdemo-web ping -c 3 -i 0.2 "$API_F"
step "api -> db on backend (across hosts: VXLAN VNI 200 from host-a to host-b)"
show ip netns exec sdemo-api ping -c 3 -i 0.2 "$DB"
step "IPv6 on backend (dual stack): db configured its address by SLAAC from the gateway's advertisement"
DB6=$(ip_of backend db ip6); API6=$(ip_of backend api ip6)
# Until the kernel's duplicate address detection is done (about a second).
configured6() { for _ in $(seq 50); do ip -n "$1" -6 addr | grep "$2" | grep -vq tentative && return; sleep 0.2; done; }
configured6 sdemo-db "$DB6"; configured6 sdemo-api "$API6"
show ip -n sdemo-db -6 -br addr show dev eth0
show ip netns exec sdemo-api ping -6 -c 3 -i 0.2 "$DB6"
show ip netns exec sdemo-api dig +short AAAA db @fd00:20::1

step "web -> db: different networks, so nothing gets through"
if ip netns exec sdemo-web ping -c 2 -W 1 "$DB" >/dev/null 2>&1; then echo "UNEXPECTED: web reached db" >&2; exit 1; fi
echo "web cannot reach db ($DB): isolated, as it should be"

iperf() {
  ip netns exec "$2" iperf3 -s -1 >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 50); do [ -n "$(ip netns exec "$2" ss -ltnH 'sport = :5201')" ] && break; sleep 0.1; done
  show ip netns exec "$1" iperf3 -c "$3" -t 3 --format g
  wait "$pid" 2>/dev/null || true
}
step "iperf3 web -> api for 3 s (TCP, one host)"
iperf sdemo-web sdemo-api "$API_F"
step "iperf3 api -> db for 3 s (TCP, across hosts over VXLAN)"
iperf sdemo-api sdemo-db "$DB"

step "What host-a knows: db's MAC sits behind host-b's VTEP, told by gossip"
show ctl a fdb
show ctl a stats

step "Crash and restart: kill -9 host-a's switchd; the containers keep their interfaces"
kill -9 "${SD_PID[a]}"; wait "${SD_PID[a]}" 2>/dev/null || true; unset 'SD_PID[a]'
show ip -n sdemo-web -br addr show eth0
start_switchd a
show ip netns exec sdemo-api ping -c 3 -i 0.2 "$DB"

step "Names: each container's resolver is its gateway, where switchd answers for the containers of its networks"
show cat /etc/netns/sdemo-web/resolv.conf
show ip netns exec sdemo-web getent hosts api
show ip netns exec sdemo-api dig +short db
echo "web asks for db, which is on backend only:"
show ip netns exec sdemo-web dig db +noall +comments | grep status
show ip netns exec sdemo-web ping -c 1 10.10.0.1

step "Routing: frontend and backend route once both hosts say so; web reaches db through its gateway"
show ctl a route add frontend backend
show ctl b route add frontend backend
show ip -n sdemo-web route
# (host-b now carries frontend too, since it routes into it; a moment for gossip to say so)
for _ in $(seq 20); do ip netns exec sdemo-web ping -c 1 -W 1 "$DB" >/dev/null 2>&1 && break; done
show ip netns exec sdemo-web ping -c 3 -i 0.2 "$DB"
show ip netns exec sdemo-web busybox traceroute -n -q 1 -w 1 "$DB"

step "DHCP: a container connected with --dhcp asks the gateway for its address (busybox udhcpc)"
show ctl a network connect frontend sdemo-dhcp --name dhcp-client --dhcp
cat > "$WORK/udhcpc.sh" <<'SCRIPT'
#!/bin/sh
[ "$1" = bound ] || exit 0
ip addr add "$ip/$mask" dev "$interface"; ip link set "$interface" mtu "$mtu"
set -- $staticroutes; while [ $# -ge 2 ]; do ip route add "$1" via "$2" dev "$interface"; shift 2; done
echo "got $ip/$mask, dns $dns, mtu $mtu, routes: ${staticroutes:-none}"
SCRIPT
chmod +x "$WORK/udhcpc.sh"
show ip netns exec sdemo-dhcp busybox udhcpc -i eth0 -n -q -f -s "$WORK/udhcpc.sh"
show ip netns exec sdemo-dhcp dig +short web

step "A published port: host-b's port 8080 leads to an HTTP server in db (like docker run -p 8080:8000)"
echo "hello through a published port" > "$WORK/hello.txt"
ip netns exec sdemo-db python3 -m http.server 8000 --bind 0.0.0.0 --directory "$WORK" >/dev/null 2>&1 &
HTTP=$!
for _ in $(seq 50); do [ -n "$(ip netns exec sdemo-db ss -ltnH 'sport = :8000')" ] && break; sleep 0.1; done
show ctl b publish backend db 8080:8000
show ip netns exec sdemo-host-a python3 -c "import urllib.request; print(urllib.request.urlopen('http://198.18.0.2:8080/hello.txt').read().decode(), end='')"
kill "$HTTP"; wait "$HTTP" 2>/dev/null || true

step "The routing mesh: a service published once answers on both hosts' port 8081, from a backend on either host"
show ctl a network create shop --vni 400 --subnet 10.40.0.0/24 --internal --host-access
for _ in $(seq 50); do ctl b network ls | grep -q shop && break; sleep 0.1; done
show ctl a network connect shop sdemo-web --name www-a --ip 10.40.0.10 --service www
show ctl b network connect shop sdemo-db --name www-b --ip 10.40.0.20 --service www
MESH_HTTP=()
for c in web db; do
  # shop is internal: the way back to clients on the underlay, through the gateway.
  ip -n "sdemo-$c" route add 198.18.0.0/24 via 10.40.0.1
  mkdir -p "$WORK/www-$c"; echo "answered by $c" > "$WORK/www-$c/who"
  ip netns exec "sdemo-$c" python3 -m http.server 8001 --bind 10.40.0.$([ $c = web ] && echo 10 || echo 20) \
    --directory "$WORK/www-$c" 2>"$WORK/www-$c.log" &
  MESH_HTTP+=("$!")
done
show ctl a service create www --network shop --port 8001/tcp -p 8081:8001
for _ in $(seq 50); do ctl b ports | grep -q "(mesh)" && break; sleep 0.1; done
show ctl b ports
echo "host-a's own process connects to host-b's port 8081, and to its own, six times each:"
for host in 198.18.0.2 198.18.0.1; do
  for i in 1 2 3 4 5 6; do
    ip netns exec sdemo-host-a python3 -c "import urllib.request,sys; print(sys.argv[1], urllib.request.urlopen('http://'+sys.argv[1]+':8081/who', timeout=3).read().decode(), end='')" "$host"
  done
done | sort | uniq -c
echo "and each backend saw the client's own address (from its log):"
cat "$WORK/www-web.log" "$WORK/www-db.log" | awk '{print $1}' | sort | uniq -c
kill "${MESH_HTTP[@]}"; wait "${MESH_HTTP[@]}" 2>/dev/null || true

step "An encrypted network, made at run time: between hosts its frames travel sealed (ChaCha20-Poly1305)"
show ctl a network create vault --vni 300 --subnet 10.30.0.0/24 --internal --encrypted
for _ in $(seq 50); do ctl b network ls | grep -q vault && break; sleep 0.1; done
show ctl a network connect vault sdemo-api --name api --ip 10.30.0.20
show ctl b network connect vault sdemo-db --name db --ip 10.30.0.30
show ctl b network ls
echo "(vault's MTU is 36 bytes smaller: the sealed header and tag fit the underlay without fragmenting)"

step "api -> db on vault while tcpdump watches host-a's underlay: the marker never shows"
ip netns exec sdemo-host-a tcpdump -i u0 --immediate-mode -U -w "$WORK/vault.pcap" udp port 4789 2>/dev/null &
TCPDUMP=$!
sleep 1
MARKER=$(printf 'VAULT-SECRET!!!!' | od -An -tx1 | tr -d ' \n')
show ip netns exec sdemo-api ping -c 3 -i 0.2 -p "$MARKER" 10.30.0.30
show ip netns exec sdemo-api ping -c 3 -i 0.2 -p "$MARKER" "$DB"
sleep 0.5; kill "$TCPDUMP"; wait "$TCPDUMP" 2>/dev/null || true
show tcpdump -nn -r "$WORK/vault.pcap" 2>/dev/null | head -4
# Per VNI: packets seen, and how many show the marker in the clear.
python3 - "$WORK/vault.pcap" <<'PYEOF'
import struct, sys
data, at, seen = open(sys.argv[1], 'rb').read(), 24, {}
while at + 16 <= len(data):
    n = struct.unpack_from('<I', data, at + 8)[0]
    frame, at = data[at + 16:at + 16 + n], at + 16 + n
    vxlan = frame[14 + (frame[14] & 15) * 4 + 8:]
    vni = int.from_bytes(vxlan[4:7], 'big')
    kind = 'sealed' if vxlan[0] == 0x48 else 'plain VXLAN'
    total, marked = seen.get((vni, kind), (0, 0))
    seen[(vni, kind)] = (total + 1, marked + (b'VAULT-SECRET!!!!' in frame))
for (vni, kind), (total, marked) in sorted(seen.items()):
    name = {200: 'backend', 300: 'vault'}.get(vni, vni)
    print(f"VNI {vni} ({name}): {total} {kind} packets, {marked} with the marker readable")
PYEOF
step "iperf3 api -> db for 3 s over the encrypted network"
iperf sdemo-api sdemo-db 10.30.0.30

step "Rotating the cluster key with traffic flowing: add everywhere, use everywhere, remove the old one"
OLD=$(ctl a --json key ls | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['id'])")
od -An -tx1 -N32 /dev/urandom | tr -d ' \n' > "$WORK/new.key"
ip netns exec sdemo-api ping -i 0.05 -c 100 -q 10.30.0.30 > "$WORK/ping.txt" &
PING=$!
NEW=$(ctl a key add "$WORK/new.key"); ctl b key add "$WORK/new.key" >/dev/null
show ctl a key ls
show ctl a key use "$NEW" --wait 5
show ctl b key use "$NEW" --wait 5
show ctl a key rm "$OLD" --wait 5
show ctl b key rm "$OLD" --wait 5
wait "$PING" || true
show ctl a key ls
grep "packets transmitted" "$WORK/ping.txt"

step "Disconnecting db: its interface disappears"
show ctl b network disconnect backend db
show ip -n sdemo-db -br link

printf '\n\033[1mDemo complete: web %s and api %s/%s on host-a, db %s on host-b, talked through switchd.\033[0m\n' "$WEB" "$API_F" "$API_B" "$DB"
