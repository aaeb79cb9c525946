
FAILED_COMPONENTS=()
for dir in "${SCRIPT_DIR}"/[0-9][0-9][0-9]-*/; do
  [[ -d "${dir}" ]] || continue
  dir="${dir%/}"
  folder="$(basename "${dir}")"
  name="${folder#[0-9][0-9][0-9]-}"
  echo "Installing ${name} (${folder})..."
  component_settings "${name}"
  if is_async "${name}"; then
    echo "  (async component — skipping --wait, keeping --timeout for hooks)"
    COMPONENT_WAIT_ARGS="--timeout ${timeout}"
  elif [[ "${NO_WAIT}" == true ]]; then
    COMPONENT_WAIT_ARGS="--timeout ${timeout}"
  else
    COMPONENT_WAIT_ARGS="--wait --timeout ${timeout}"
  fi
  export COMPONENT_WAIT_ARGS
  attempt=0
  installed=false
  while true; do
    if (cd "${dir}" && bash install.sh); then
      installed=true
      break
    fi
    attempt=$((attempt + 1))
    on_install_failure "${name}"
    if ((attempt > retries)); then
      echo "ERROR: ${name} install failed after ${attempt} attempts" >&2
      if [[ "${BEST_EFFORT}" == true ]]; then
        echo "WARNING: ${name} install failed, continuing (--best-effort)"
        FAILED_COMPONENTS+=("${name}")
        break
      fi
      exit 1
    fi
    cleanup_hook_jobs "$(namespace_of "${name}")"
    delay="$(backoff_delay "${attempt}")"
    echo "RETRY: ${name} install failed (attempt ${attempt}/$((retries + 1))), retrying in ${delay}s..."
    sleep "${delay}"
  done
  if [[ "${installed}" == true ]]; then
    after_install "${name}"
  fi
done

if [[ ${#FAILED_COMPONENTS[@]} -gt 0 ]]; then
  echo "WARNING: the following components failed: ${FAILED_COMPONENTS[*]}"
  echo "Deployment completed with non-fatal errors (--best-effort)."
else
  echo "Deployment complete."
fi
echo "NOTE: this reports install results, not GPU workload readiness. Node tuning"
echo "      (about 10-20 minutes), GPU operator operands and DRA kubelet plugin"
echo "      registration continue asynchronously; check them before running workloads."
exit 0
