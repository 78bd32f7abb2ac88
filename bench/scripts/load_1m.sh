#!/bin/bash
# Loading a million subscribers from a file into a running box (issue #5's "1,000,000
# subscribers load from a file in under 5 s"): sheetcake starts on two net_null ports that
# receive nothing with a one-subscriber LibreQoS ShapedDevices.csv, the file is replaced by a
# generated one of N circuits (default 1,000,000; one IPv4 address and one IPv6 /64 each), and a
# reload through the API is timed from the moment the control thread reads the file to the
# moment every worker has every new subscriber in force, as the log reports it. The same then
# for the native JSON form, and the metrics refresh pass over the million subscribers. Run from
# the repository after `make build`:
#   bench/scripts/load_1m.sh [N]
set -euo pipefail
n="${1:-1000000}"
here="$(cd "$(dirname "$0")" && pwd)"
bin="$here/../../target/release/sheetcake"
# shellcheck source=idle_box.sh
. "$here/idle_box.sh"
dir="$(mktemp -d)"
trap 'cat "$dir"/out.*.log > /tmp/load_1m.last.log 2>/dev/null; rm -rf "$dir"' EXIT
cd "$dir"
api=http://127.0.0.1:19182
python3 - "$n" <<'PY'
import json, sys
n = int(sys.argv[1])
head = ("Circuit ID,Circuit Name,Device ID,Device Name,Parent Node,MAC,IPv4,IPv6,"
        "Download Min Mbps,Upload Min Mbps,Download Max Mbps,Upload Max Mbps,Comment\n")
def addr(i):
    return f"100.{64 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}", f"2001:db8:{i >> 16:x}:{i & 0xffff:x}::/64"
with open("small.csv", "w") as f:
    f.write(head + "c0,C 0,d0,D 0,,,100.64.0.0,2001:db8:0:0::/64,10,2,100,20,\n")
with open("big.csv", "w") as f:
    f.write(head)
    for i in range(n):
        v4, v6 = addr(i)
        f.write(f"c{i},C {i},d{i},D {i},,,{v4},{v6},10,2,{100 + i % 7},20,\n")
subs = []
for i in range(n):
    v4, v6 = addr(i)
    subs.append({"id": f"c{i}", "addresses": [v4, v6], "download": f"{100 + i % 7}mbit", "upload": "20mbit"})
with open("big.json", "w") as f:
    json.dump({"subscribers": subs}, f)
with open("small.json", "w") as f:
    json.dump({"subscribers": subs[:1]}, f)
PY
ls -l big.csv big.json | awk '{print "  " $9 ": " $5 " bytes"}'
run() {
  local kind=$1
  cp "small.$kind" "subscribers.$kind"
  start_idle_box "load1m-$kind" "subscribers.$kind" $(( n + 1024 )) 19182 "out.$kind.log"
  local pid=$box_pid
  cp "big.$kind" "subscribers.$kind"
  local start
  start=$(date +%s%N)
  curl -s -o reload.json -w "  $kind: POST /v1/reload answered %{http_code} in %{time_total} s\n" -X POST "$api/v1/reload"
  for _ in $(seq 600); do grep -q "^reload: in force\|^change: in force" "out.$kind.log" && break; sleep 0.1; done
  grep -m1 "in force at every worker" "out.$kind.log" | sed "s/^/  $kind: /"
  echo "  $kind: wall clock from the request to the log line: $(( ($(date +%s%N) - start) / 1000000 )) ms (100 ms polling)"
  curl -s "$api/health" | sed "s/^/  $kind: health /"; echo
  # The once-a-second metrics refresh over every subscriber, as the box reports it.
  for _ in 1 2 3; do
    sleep 1.1
    curl -s "$api/metrics" | awk -v k="$kind" \
      '/^sheetcake_metrics_refresh_duration_seconds / {printf "  %s: metrics refresh pass %.1f ms\n", k, $2 * 1000}'
  done
  kill -INT "$pid"
  wait "$pid" || true
}
run csv
run json
