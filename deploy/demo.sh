#!/usr/bin/env bash
# The demo topology of `make run`: an "internet" server and three subscribers behind a
# head-end, joined only through sheetcake.
#
#   sc-net  10.77.0.1 ("the internet")
#     sc-net0 ── veth ── sc-core ══ sheetcake ══ sc-access ── veth ── [ sc-hub: a Linux bridge,
#                                                                        the "head-end" ]
#       sc-sub1 10.77.0.2   plan 20 Mbit/s down, 5 Mbit/s up   (deploy/demo-subscribers.toml)
#       sc-sub2 10.77.0.3   plan 50 Mbit/s down, 10 Mbit/s up
#       sc-sub3 10.77.0.4   no plan in sheetcake; its "line" is a plain FIFO at 20 Mbit/s (HTB
#                           with a 1000-packet pfifo), what a head-end without AQM does
#
# Usage: deploy/demo.sh [path/to/sheetcake]. Ctrl-C stops sheetcake and removes everything.
set -euo pipefail

BIN=${1:-target/release/sheetcake}
HERE=$(cd "$(dirname "$0")" && pwd)
NAMESPACES="sc-net sc-hub sc-sub1 sc-sub2 sc-sub3"

if [ "$(id -u)" != 0 ]; then
  echo "The demo creates network namespaces and runs DPDK: run it as root." >&2
  exit 1
fi
[ -x "$BIN" ] || { echo "$BIN not found: run 'make build' first." >&2; exit 1; }

teardown() {
  # Processes started in the namespaces (iperf3 servers) would outlive them.
  for ns in $NAMESPACES; do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
  ip link del sc-core 2>/dev/null || true
  ip link del sc-access 2>/dev/null || true
}

host() { # namespace, interface, address: bring up a host end; no checksum offload
  ip -n "$1" addr add "$3" dev "$2"
  ip -n "$1" link set "$2" up
  ip -n "$1" link set lo up
  # Without this, the veth leaves TCP checksums for hardware that the bridge does not have,
  # and TCP never connects (ping still works).
  ip netns exec "$1" ethtool -K "$2" tx off >/dev/null
}

teardown
trap teardown EXIT
for ns in $NAMESPACES; do ip netns add "$ns"; done

# The internet side.
ip link add sc-core type veth peer name sc-net0 netns sc-net
host sc-net sc-net0 10.77.0.1/24

# The head-end: a bridge in its own namespace, its uplink to sheetcake's access port.
ip link add sc-access type veth peer name hub-up netns sc-hub
ip -n sc-hub link add br0 type bridge
ip -n sc-hub link set hub-up master br0 up
for i in 1 2 3; do
  ip -n sc-hub link add "hub-$i" type veth peer name "sub$i-0" netns "sc-sub$i"
  ip -n sc-hub link set "hub-$i" master br0 up
  host "sc-sub$i" "sub$i-0" "10.77.0.$((i + 1))/24"
done
ip -n sc-hub link set br0 up
for port in sc-core sc-access; do
  ip link set "$port" up
  sysctl -qw "net.ipv6.conf.$port.disable_ipv6=1" || true
done

# sc-sub3's line: downloads enter a 20 Mbit/s HTB with a long FIFO (on an ifb at its ingress).
ip -n sc-sub3 link add ifb0 type ifb
ip -n sc-sub3 link set ifb0 up
ip netns exec sc-sub3 tc qdisc add dev sub3-0 handle ffff: ingress
ip netns exec sc-sub3 tc filter add dev sub3-0 parent ffff: protocol all u32 match u32 0 0 \
  action mirred egress redirect dev ifb0
ip netns exec sc-sub3 tc qdisc add dev ifb0 root handle 1: htb default 10
ip netns exec sc-sub3 tc class add dev ifb0 parent 1: classid 1:10 htb rate 20mbit 2>/dev/null
ip netns exec sc-sub3 tc qdisc add dev ifb0 parent 1:10 pfifo limit 1000
# Keep the af_packet TX ring from becoming a hidden FIFO of its own.
sysctl -qw net.core.wmem_default=8388608

ip netns exec sc-net iperf3 -s -D

cat <<'EOT'

sheetcake demo is starting. In another terminal, try:

  # Each subscriber gets their plan (20 and 50 Mbit/s down, 5 and 10 up):
  ip netns exec sc-sub1 iperf3 -c 10.77.0.1 -C cubic -R -P 4      # download
  ip netns exec sc-sub1 iperf3 -c 10.77.0.1 -C cubic -P 4         # upload
  ip netns exec sc-sub2 iperf3 -c 10.77.0.1 -C cubic -R -P 4

  # Latency under load, shaped by sheetcake (a few ms at most):
  ip netns exec sc-sub1 iperf3 -c 10.77.0.1 -C cubic -R -P 4 -t 30 &
  ip netns exec sc-sub1 ping -c 20 10.77.0.1

  # The same through a plain FIFO at the same rate (sc-sub3, not shaped by sheetcake):
  ip netns exec sc-sub3 iperf3 -c 10.77.0.1 -C cubic -R -P 4 -t 30 &
  ip netns exec sc-sub3 ping -c 20 10.77.0.1                      # hundreds of ms

sheetcake prints a status line per port and per worker every 5 seconds; from another shell,
  kill -USR1 $(pidof sheetcake)
prints each subscriber's CAKE statistics the way tc -s qdisc shows them. Ctrl-C stops it and
removes the namespaces.

EOT

# Not exec: the trap must run after sheetcake exits to remove the namespaces.
set +e
"$BIN" --config "${DEMO_CONFIG:-$HERE/demo.toml}"
exit $?
