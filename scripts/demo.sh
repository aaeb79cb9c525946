#!/usr/bin/env bash
# Local always-on demo, unattended: an aggregator and an agent on this
# machine over plain gRPC on loopback, the agent reading a copy of a fixture
# host (Ubuntu 24.04) and the aggregator holding the embedded EKS/H100
# training recipe. It lists the node, edits the copy's os-release so the
# recipe's OS.release.VERSION_ID constraint fails, shows the drift opening,
# restores the file, shows it resolving, and stops everything.
#
#   scripts/demo.sh                            # builds the three binaries first
#   AICR_BIN_DIR=target/release scripts/demo.sh  # uses binaries already built
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
if [ -z "${AICR_BIN_DIR:-}" ]; then
  echo "==> building aicr, aicr-agent and aicr-aggregator"
  (cd "$repo" && cargo build --quiet -p aicr-cli -p aicr-agent -p aicr-aggregator)
  AICR_BIN_DIR="$repo/target/debug"
fi
bin="$(cd "$AICR_BIN_DIR" && pwd)"
for b in aicr aicr-agent aicr-aggregator; do
  if [ ! -x "$bin/$b" ]; then
    echo "demo: $bin/$b not found; build it (cargo build -p aicr-cli -p aicr-agent -p aicr-aggregator) or unset AICR_BIN_DIR" >&2
    exit 1
  fi
done

work="$(mktemp -d "${TMPDIR:-/tmp}/aicr-demo.XXXXXX")"
pids=()
cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [ "$status" -ne 0 ]; then
    for log in "$work"/*.log; do
      [ -f "$log" ] && { echo "---- $(basename "$log")"; tail -n 20 "$log"; } >&2
    done
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_for WHAT SECONDS COMMAND...: poll until COMMAND succeeds.
wait_for() {
  local what=$1 limit=$2
  shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "demo: timed out waiting for $what" >&2
      exit 1
    fi
    sleep 0.2
  done
}

# set_version V: rewrite VERSION_ID in the demo host's os-release.
set_version() {
  local file="$work/host/etc/os-release"
  sed "s/^VERSION_ID=.*/VERSION_ID=\"$1\"/" "$file" >"$file.new"
  mv "$file.new" "$file"
}

cp -R "$repo/scripts/demo/host-root" "$work/host"
"$bin/aicr" recipe --service eks --accelerator h100 --intent training --os ubuntu \
  -o "$work/recipe.yaml" 2>"$work/recipe.log"

echo "==> starting the aggregator (loopback, plain text, node names trusted, no cluster)"
LOG_LEVEL=info NO_COLOR=1 "$bin/aicr-aggregator" \
  --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
  --insecure --trust-node-names --no-kube \
  --recipe "$work/recipe.yaml" --stale-after 10s \
  2>"$work/aggregator.log" &
pids+=($!)
wait_for "the aggregator to listen" 15 grep -q "aggregator listening" "$work/aggregator.log"
grpc="$(grep -o 'grpc=[0-9.:]*' "$work/aggregator.log" | head -n 1 | cut -d= -f2)"
url="http://$grpc"
echo "    gRPC $url, constraints from the embedded recipe:"
awk '/^constraints:/ {on = 1; next} on && /^[^ -]/ {on = 0} on && /- name:/ {print "      " $3}' \
  "$work/recipe.yaml"

node_listed() {
  "$bin/aicr" nodes --aggregator "$url" | grep -q demo-node
}

# open_drift: the open violations, as JSON.
open_drift() {
  "$bin/aicr" drift --aggregator "$url" --format json 2>/dev/null
}

drift_open() {
  open_drift | grep -q OS.release.VERSION_ID
}

echo "==> starting the agent on node demo-node (host root $work/host)"
LOG_LEVEL=info NO_COLOR=1 "$bin/aicr-agent" \
  --aggregator "$url" --insecure --root "$work/host" \
  --node-name demo-node --interval 2s \
  2>"$work/agent.log" &
pids+=($!)
wait_for "the agent to report" 15 node_listed

echo "==> aicr nodes"
"$bin/aicr" nodes --aggregator "$url"

echo "==> editing the host: VERSION_ID 24.04 -> 22.04"
set_version 22.04
wait_for "the drift to open" 15 drift_open
echo "==> aicr drift"
"$bin/aicr" drift --aggregator "$url"
opened="$(open_drift | grep -o '"id": *[0-9]*' | head -n 1 | grep -o '[0-9]*$')"

echo "==> restoring the host: VERSION_ID 22.04 -> 24.04"
set_version 24.04
echo "==> aicr watch --since $opened"
# Replays what was recorded after the opening, so the resolution shows
# even if it happened before the watch connected.
timeout 15 "$bin/aicr" watch --aggregator "$url" --since "$opened" --count 1
echo "==> aicr drift --history"
"$bin/aicr" drift --aggregator "$url" --history
"$bin/aicr" drift --aggregator "$url"

echo "==> stopping (demo took ${SECONDS}s)"
