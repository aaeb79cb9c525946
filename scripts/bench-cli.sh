#!/usr/bin/env bash
# Whole-process timings of the aicr binary, as a user runs it: --version,
# recipe, bundle of the largest recipe (rerun into the same directory, and
# into a new one), validate --no-cluster and snapshot --local on a fixture
# host. Prints mean and min per command (hyperfine) and peak RSS.
# Usage: scripts/bench-cli.sh [BIN_DIR] (default: a fresh build of the
# `dist` profile, what ships, in target/dist).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${1:-}"
if [ -z "$bin" ]; then
  (cd "$root" && cargo build --quiet --profile dist -p aicr-cli)
  bin="$root/target/dist"
fi
command -v hyperfine >/dev/null || { echo "bench-cli: needs hyperfine (apt-get install hyperfine)" >&2; exit 2; }
aicr="$bin/aicr"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"$aicr" recipe --service eks --accelerator h100 --intent inference --os ubuntu --platform dynamo -o "$work/recipe.yaml" 2>/dev/null
"$aicr" snapshot --local --root "$root/scripts/demo/host-root" -o "$work/snapshot.yaml" 2>/dev/null
cat > "$work/gate.yaml" <<'YAML'
kind: RecipeResult
apiVersion: aicr.nvidia.com/v1alpha1
constraints:
  - name: K8s.server.version
    value: ">= 1.30"
componentRefs: []
YAML
cat > "$work/k8s-snapshot.yaml" <<'YAML'
kind: Snapshot
apiVersion: aicr.nvidia.com/v1alpha1
measurements:
  - type: K8s
    subtypes:
      - subtype: server
        data:
          version: v1.33.5
YAML

# PREPARE, when set, runs before each timed run (not timed).
run() {
  local name="$1"; shift
  local prepare=()
  [ -n "${PREPARE:-}" ] && prepare=(--prepare "$PREPARE")
  hyperfine --warmup 20 --min-runs 200 -N "${prepare[@]}" --export-json "$work/h.json" "$*" >/dev/null 2>&1
  local stats
  stats=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; print("%.2f ms mean, %.2f ms min" % (r["mean"]*1e3, r["min"]*1e3))' "$work/h.json")
  local rss="?"
  if [ -x /usr/bin/time ]; then
    /usr/bin/time -f '%M' -o "$work/rss" "$@" >/dev/null 2>&1
    rss="$(awk '{printf "%.1f MiB", $1/1024}' "$work/rss")"
  fi
  printf '%-24s %s, peak RSS %s\n' "$name" "$stats" "$rss"
}

run "--version" "$aicr" --version
run "recipe" "$aicr" recipe --service eks --accelerator h100 --intent training --os ubuntu -o "$work/r.yaml"
run "bundle (largest)" "$aicr" bundle -r "$work/recipe.yaml" -o "$work/bundle"
PREPARE="rm -rf $work/fresh" run "bundle, new directory" "$aicr" bundle -r "$work/recipe.yaml" -o "$work/fresh"
run "validate --no-cluster" "$aicr" validate --no-cluster -r "$work/gate.yaml" -s "$work/k8s-snapshot.yaml" -o "$work/report.json"
run "snapshot --local" "$aicr" snapshot --local --root "$root/scripts/demo/host-root" -o "$work/s.yaml"
printf '%-24s %s\n' "binary size" "$(stat -c %s "$aicr" | awk '{printf "%.1f MB", $1/1e6}')"
