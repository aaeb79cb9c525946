
usage() {
  echo "Usage: $0 [--no-wait] [--best-effort] [--retries N]" >&2
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --no-wait) NO_WAIT=true ;;
    --best-effort) BEST_EFFORT=true ;;
    --retries)
      if [[ $# -lt 2 ]]; then
        echo "Error: --retries requires a value" >&2
        exit 1
      fi
      if ! [[ "$2" =~ ^[0-9]+$ ]]; then
        echo "Error: --retries requires a non-negative integer" >&2
        exit 1
      fi
      MAX_RETRIES="$2"
      shift
      ;;
    *)
      echo "Error: unknown option: $1" >&2
      usage
      exit 1
      ;;
  esac
  shift
done

export DRY_RUN_FLAG="${DRY_RUN_FLAG:-}"
export KUBECONFIG_FLAG="${KUBECONFIG_FLAG:-}"
export HELM_DEBUG_FLAG="${HELM_DEBUG_FLAG:-}"

WORK_DIR="$(mktemp -d)"
cleanup() {
  # Only ever called from the traps below.
  # shellcheck disable=SC2317
  rm -rf "${WORK_DIR}"
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM
# Nothing runs from the caller's directory: a local folder named like a
# chart there could otherwise shadow the remote chart reference.
cd "${WORK_DIR}"

kctl() {
  # KUBECONFIG_FLAG holds zero or more flags; splitting it is intended.
  # shellcheck disable=SC2086
  kubectl ${KUBECONFIG_FLAG} "$@"
}

have_jq() {
  command -v jq >/dev/null 2>&1
}

# Delay before retry number $1 (1-based): 5*k^2 seconds, at most 120.
backoff_delay() {
  local attempt="$1" delay
  if [[ -n "${AICR_RETRY_DELAY:-}" ]]; then
    echo "${AICR_RETRY_DELAY}"
    return 0
  fi
  delay=$((5 * attempt * attempt))
  if ((delay > 120)); then
    delay=120
  fi
  echo "${delay}"
}

is_async() {
  local c
  for c in ${ASYNC_COMPONENTS}; do
    if [[ "${c}" == "$1" ]]; then
      return 0
    fi
  done
  return 1
}

# A failed pre-install hook Job blocks the next attempt; remove the ones
# that never succeeded, after printing what they left behind.
cleanup_hook_jobs() {
  local ns="$1" jobs job
  if ! have_jq; then
    return 0
  fi
  jobs="$(kctl get jobs -n "${ns}" -o json 2>/dev/null |
    jq -r '.items[]? | select(.metadata.annotations["helm.sh/hook"] != null) | select((.status.succeeded // 0) < 1) | .metadata.name' 2>/dev/null || true)"
  for job in ${jobs}; do
    echo "Cleaning up stale Helm hook job ${ns}/${job}"
    kctl describe job "${job}" -n "${ns}" || true
    kctl describe pods -n "${ns}" -l "job-name=${job}" || true
    kctl delete job "${job}" -n "${ns}" --ignore-not-found || true
  done
}
