#!/usr/bin/env bash
# Print the GPU measurement this machine would put in a snapshot, as YAML.
# Without a GPU it prints `gpu-count: 0` and logs why on stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --quiet -p aicr-agent --example gpu_check
