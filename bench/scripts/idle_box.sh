# Sourced by the scripts beside it: sheetcake on two net_null ports that receive nothing, one
# worker on core 1, a subscriber file and the API on loopback.
#   start_idle_box NAME SUBSCRIBERS SLOTS PORT LOG
# writes NAME.toml, starts "$bin" with it in the background (its pid in $box_pid, its output
# in LOG) and returns once /health says "ok": every worker has built its subscriber slots and
# forwards (a million slots take seconds, during which the box is "starting"), or after two
# minutes.
start_idle_box() {
  local name=$1 subscribers=$2 slots=$3 port=$4 log=$5
  cat > "$name.toml" <<TOML
[eal]
file_prefix = "sc-$name"
args = ["--no-huge", "-m", "1024"]
[control]
status_interval_seconds = 0
[workers]
cores = [1]
[[pairs]]
name = "m"
core = "net_null0,no-rx=1"
access = "net_null1,no-rx=1"
[shaping]
subscribers = "$subscribers"
subscribers_per_worker = $slots
[api]
listen = "127.0.0.1:$port"
TOML
  "$bin" --config "$name.toml" > "$log" 2>&1 &
  box_pid=$!
  for _ in $(seq 240); do
    curl -sf "http://127.0.0.1:$port/health" | grep -q '"status": "ok"' && return 0
    sleep 0.5
  done
}
