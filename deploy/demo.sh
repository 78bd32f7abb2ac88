#!/usr/bin/env bash
# The demo topology of `make run`: two network namespaces bridged through sheetcake.
#
#   namespace sc-net: sc-net0 10.77.0.1 ("the internet")
#        | veth
#   sc-core  ══ sheetcake (DPDK net_af_packet, no NIC, no hugepages) ══  sc-access
#                                                                          | veth
#                                              namespace sc-sub: sc-sub0 10.77.0.2 ("a subscriber")
#
# Usage: deploy/demo.sh [path/to/sheetcake]. Ctrl-C stops sheetcake and removes everything.
set -euo pipefail

BIN=${1:-target/release/sheetcake}
HERE=$(cd "$(dirname "$0")" && pwd)

if [ "$(id -u)" != 0 ]; then
  echo "The demo creates network namespaces and runs DPDK: run it as root." >&2
  exit 1
fi
[ -x "$BIN" ] || { echo "$BIN not found: run 'make build' first." >&2; exit 1; }

teardown() {
  # Processes started in the namespaces (iperf3 servers) would outlive them.
  for ns in sc-net sc-sub; do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
  done
  ip netns del sc-net 2>/dev/null || true
  ip netns del sc-sub 2>/dev/null || true
  ip link del sc-core 2>/dev/null || true
  ip link del sc-access 2>/dev/null || true
}

setup_host() { # namespace, inner interface, root-side interface, address
  ip netns add "$1"
  ip link add "$3" type veth peer name "$2"
  ip link set "$2" netns "$1"
  ip link set "$3" up
  sysctl -qw "net.ipv6.conf.$3.disable_ipv6=1" || true
  ip -n "$1" addr add "$4" dev "$2"
  ip -n "$1" link set "$2" up
  ip -n "$1" link set lo up
  # Without this, the veth leaves TCP checksums for hardware that the bridge does not have,
  # and TCP never connects (ping still works).
  ip netns exec "$1" ethtool -K "$2" tx off >/dev/null
}

teardown
trap teardown EXIT
setup_host sc-net sc-net0 sc-core 10.77.0.1/24
setup_host sc-sub sc-sub0 sc-access 10.77.0.2/24

cat <<'EOT'

sheetcake demo is starting. In another terminal, try:

  ip netns exec sc-sub ping 10.77.0.1                      # through the bridge
  ip netns exec sc-net iperf3 -s -D                        # a server "on the internet"
  ip netns exec sc-sub iperf3 -c 10.77.0.1 -C cubic -R     # a subscriber's download
  ip netns exec sc-sub iperf3 -c 10.77.0.1 -C cubic        # and upload

sheetcake prints a status line per port and per worker every 5 seconds. Ctrl-C stops it and
removes the namespaces.

EOT

# Not exec: the trap must run after sheetcake exits to remove the namespaces.
set +e
"$BIN" --config "${DEMO_CONFIG:-$HERE/demo.toml}"
exit $?
