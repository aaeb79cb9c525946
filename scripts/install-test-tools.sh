#!/usr/bin/env bash
# Installs the real tools the test suite uses as judges of what we emit:
#   .tools/venv      Helm's engine (helm-python-sdk, Helm 4 as a C library),
#                    kubernetes-validate (official OpenAPI schemas), jsonschema
#   Debian packages  prometheus, promtool, prometheus-alertmanager, amtool,
#                    docker-registry (CNCF distribution), shellcheck, and the
#                    zsh and fish that judge our completion scripts
# Idempotent: what is already there is left alone. Tests that need a tool
# this script could not install are skipped with a message (a failure under
# CI=true).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tools="$root/.tools"
reqs="$root/tests/support/judge/requirements.txt"

# Python judges, in a venv of our own so the system Python stays untouched.
python="${PYTHON:-python3}"
if ! command -v "$python" >/dev/null 2>&1; then
  echo "install-test-tools: no $python; the Helm and schema tests will be skipped" >&2
else
  stamp="$tools/venv/.requirements"
  if [ ! -x "$tools/venv/bin/python" ] || ! cmp -s "$reqs" "$stamp"; then
    mkdir -p "$tools"
    "$python" -m venv "$tools/venv"
    "$tools/venv/bin/pip" install --quiet --disable-pip-version-check -r "$reqs"
    cp "$reqs" "$stamp"
  fi
fi

# Debian packages (binary name -> package).
declare -A packages=(
  [promtool]=prometheus
  [prometheus]=prometheus
  [prometheus-alertmanager]=prometheus-alertmanager
  [amtool]=prometheus-alertmanager
  [docker-registry]=docker-registry
  [shellcheck]=shellcheck
  [zsh]=zsh
  [fish]=fish
)
missing=()
for bin in "${!packages[@]}"; do
  command -v "$bin" >/dev/null 2>&1 || missing+=("${packages[$bin]}")
done
if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo -n)
  if command -v apt-get >/dev/null 2>&1 && { [ ${#sudo[@]} -eq 0 ] || sudo -n true 2>/dev/null; }; then
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "install-test-tools: cannot install ${missing[*]} (needs apt-get as root); their tests will be skipped" >&2
  fi
fi
