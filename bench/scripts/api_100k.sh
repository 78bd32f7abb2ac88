#!/bin/bash
# The API against a box of 100,000 subscribers (loaded from a generated LibreQoS
# ShapedDevices.csv, on net_null ports that receive nothing): 200 single-subscriber rate changes
# (HTTP round trip, and accept-to-applied as the API reports it), 50 additions and removals,
# five /metrics scrapes, the last metrics refresh pass, and
# promtool's verdict on the exposition. Run from the repository after `make build`:
#   bench/scripts/api_100k.sh
# Not part of `make bench` yet (issue #6 / #5): it needs curl, python3 and promtool.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="$here/../../target/release/sheetcake"
# shellcheck source=idle_box.sh
. "$here/idle_box.sh"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
cd "$dir"
python3 - <<'PY'
rows = ["Circuit ID,Circuit Name,Device ID,Device Name,Parent Node,MAC,IPv4,IPv6,"
        "Download Min Mbps,Upload Min Mbps,Download Max Mbps,Upload Max Mbps,Comment\n"]
for i in range(100_000):
    rows.append(f"c{i},C {i},d{i},D {i},,,100.{64 + (i >> 16)}.{(i >> 8) & 255}.{i & 255},,10,2,100,20,\n")
open("ShapedDevices.csv", "w").write("".join(rows))
PY
start_idle_box api100k ShapedDevices.csv 131072 19181 out.log
pid=$box_pid
grep -m1 "^shaping" out.log
sleep 2
for i in $(seq 200); do
  rate=$(( (i % 2) * 50 + 50 ))
  curl -s -o resp.json -w '%{time_total}\n' -X PATCH -H 'Content-Type: application/json' \
    -d "{\"download\": \"${rate}mbit\"}" "http://127.0.0.1:19181/v1/subscribers/c$((i * 37))" >> round_trip.txt
  python3 -c "import json; print(json.load(open('resp.json'))['applied_in_ms'])" >> applied.txt
done
# Adding and removing a subscriber changes the address tables, which are copied whole for the
# workers: those changes cost more than a rate change.
for i in $(seq 50); do
  curl -s -o /dev/null -w '%{time_total}\n' -X PUT -H 'Content-Type: application/json' \
    -d "{\"addresses\": [\"10.200.0.$i\"], \"download\": \"20mbit\", \"upload\": \"5mbit\"}" \
    "http://127.0.0.1:19181/v1/subscribers/new$i" >> add.txt
  curl -s -o /dev/null -w '%{time_total}\n' -X DELETE "http://127.0.0.1:19181/v1/subscribers/new$i" >> remove.txt
done
python3 - <<'PY'
def pct(v, q):
    return v[min(len(v) - 1, int(len(v) * q))]
t = sorted(float(x) * 1e3 for x in open("round_trip.txt"))
a = sorted(float(x) for x in open("applied.txt") if x.strip() != "None")
print(f"PATCH round trip: p50 {pct(t, .5):.2f} ms, p99 {pct(t, .99):.2f} ms, max {t[-1]:.2f} ms")
print(f"accepted to applied by the worker ({len(a)} of 200 applied before the answer): "
      f"p50 {pct(a, .5):.3f} ms, p99 {pct(a, .99):.3f} ms, max {a[-1]:.3f} ms")
for name in ("add", "remove"):
    v = sorted(float(x) * 1e3 for x in open(f"{name}.txt"))
    print(f"{name} (PUT new / DELETE) round trip: p50 {pct(v, .5):.2f} ms, p99 {pct(v, .99):.2f} ms")
PY
for _ in 1 2 3 4 5; do
  curl -s -o metrics.txt -w 'scrape: %{time_total} s, %{size_download} bytes\n' http://127.0.0.1:19181/metrics
done
awk '/^sheetcake_metrics_refresh_duration_seconds / {printf "metrics refresh pass: %.1f ms\n", $2 * 1000}' metrics.txt
promtool check metrics < metrics.txt && echo "promtool check metrics: clean"
echo "subscriber series: $(grep -c '^sheetcake_subscriber_sent_bytes_total' metrics.txt) (default guard: the busiest 100, 2 directions)"
kill -INT "$pid"
wait "$pid"
tail -1 out.log
