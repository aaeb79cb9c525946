#!/usr/bin/env bash
# Measure a real agent's steady footprint: start an aggregator on loopback
# and an agent reading this machine's own root (/), let it settle, then
# sample the agent's resident memory (/proc/PID/status) and CPU time
# (/proc/PID/stat) over a window and print RSS and average CPU in mCPU.
#
#   scripts/agent-footprint.sh                  # release build, 60 s window, 30 s interval
#   WINDOW=120 INTERVAL=30s AICR_BIN_DIR=target/release scripts/agent-footprint.sh
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
window="${WINDOW:-60}"
interval="${INTERVAL:-30s}"
settle="${SETTLE:-10}"
if [ -z "${AICR_BIN_DIR:-}" ]; then
  # Built apart: together, Cargo would unify the core features into the agent.
  (cd "$repo" && cargo build --quiet --release -p aicr-agent && cargo build --quiet --release -p aicr-aggregator)
  AICR_BIN_DIR="$repo/target/release"
fi
bin="$(cd "$AICR_BIN_DIR" && pwd)"

work="$(mktemp -d "${TMPDIR:-/tmp}/aicr-footprint.XXXXXX")"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

"$bin/aicr-aggregator" --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
  --insecure --trust-node-names --no-kube 2>"$work/aggregator.log" &
pids+=($!)
for _ in $(seq 50); do
  grep -q "aggregator listening" "$work/aggregator.log" && break
  sleep 0.1
done
grpc="$(grep -o 'grpc=[0-9.:]*' "$work/aggregator.log" | head -n 1 | cut -d= -f2)"

"$bin/aicr-agent" --aggregator "http://$grpc" --insecure --root / \
  --node-name footprint --interval "$interval" 2>"$work/agent.log" &
agent=$!
pids+=("$agent")

# cpu_ticks PID: user + system time in clock ticks (fields 14 and 15 of
# /proc/PID/stat, counted after the parenthesised command name).
cpu_ticks() {
  sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}
rss_kib() {
  awk '/^VmRSS:/ {print $2}' "/proc/$1/status"
}

sleep "$settle"
hz="$(getconf CLK_TCK)"
t0="$(date +%s.%N)"
c0="$(cpu_ticks "$agent")"
peak=0
end=$((SECONDS + window))
while [ "$SECONDS" -lt "$end" ]; do
  r="$(rss_kib "$agent")"
  [ "$r" -gt "$peak" ] && peak="$r"
  sleep 1
done
c1="$(cpu_ticks "$agent")"
t1="$(date +%s.%N)"
rss="$(rss_kib "$agent")"
threads="$(awk '/^Threads:/ {print $2}' "/proc/$agent/status")"
awk -v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$t1" -v hz="$hz" \
  -v rss="$rss" -v peak="$peak" -v threads="$threads" -v w="$window" -v i="$interval" 'BEGIN {
  printf "agent over %ds (interval %s): RSS %.1f MiB (peak %.1f MiB), CPU %.2f mCPU (%d ticks in %.1fs), %d threads\n",
    w, i, rss / 1024, peak / 1024, (c1 - c0) / hz / (t1 - t0) * 1000, c1 - c0, t1 - t0, threads
}'
