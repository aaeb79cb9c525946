
if deployments="$(kctl get deployments -n "${NODEWRIGHT_NS}" -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.status.availableReplicas}{"\n"}{end}' 2>/dev/null)"; then
  running=false
  while read -r dname available; do
    if [[ "${dname}" == *skyhook* || "${dname}" == *nodewright* ]] && [[ "${available:-0}" =~ ^[0-9]+$ ]] && ((available > 0)); then
      running=true
    fi
  done <<<"${deployments}"
  if [[ "${running}" == false ]]; then
    for key in "$(nodewright_taint_key)" nodewright.nvidia.com/runtime-required; do
      echo "Removing stale ${key} taints (the nodewright operator is not running)"
      kctl taint nodes --all "${key}-" >/dev/null 2>&1 || true
    done
  fi
else
  echo "WARNING: could not query the nodewright operator; skipping stale taint cleanup"
fi
