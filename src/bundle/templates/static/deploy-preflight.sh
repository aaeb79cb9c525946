
for ns in "${BUNDLE_NAMESPACES[@]}"; do
  phase="$(kctl get namespace "${ns}" -o jsonpath='{.status.phase}' 2>/dev/null || true)"
  if [[ "${phase}" == "Terminating" ]]; then
    echo "ERROR: namespace ${ns} is stuck in Terminating; a new install into it will fail" >&2
    echo "  To force-finalize it: kubectl get namespace ${ns} -o json | jq '.spec.finalizers = []' | kubectl replace --raw /api/v1/namespaces/${ns}/finalize -f -" >&2
    PREFLIGHT_FAILED=true
  fi
done

in_bundle_namespace() {
  local ns
  for ns in "${BUNDLE_NAMESPACES[@]}"; do
    if [[ "${ns}" == "$1" ]]; then
      return 0
    fi
  done
  return 1
}

if have_jq; then
  # A webhook whose service is gone blocks pod creation in its scope.
  webhooks="$(kctl get validatingwebhookconfigurations,mutatingwebhookconfigurations -o json 2>/dev/null || true)"
  if [[ -n "${webhooks}" ]]; then
    while IFS=$'\t' read -r kind name svc_ns svc_name; do
      if [[ -z "${name}" ]] || ! in_bundle_namespace "${svc_ns}"; then
        continue
      fi
      if ! out="$(kctl get service "${svc_name}" -n "${svc_ns}" 2>&1)" && grep -q NotFound <<<"${out}"; then
        echo "ERROR: ${kind} ${name} points at missing service ${svc_ns}/${svc_name}; it blocks pod creation" >&2
        echo "  To delete it: kubectl delete ${kind} ${name}" >&2
        PREFLIGHT_FAILED=true
      fi
    done < <(jq -r '.items[]? | .kind as $k | .metadata.name as $n | (.webhooks // [])[] | select(.clientConfig.service != null) | [$k, $n, .clientConfig.service.namespace, .clientConfig.service.name] | @tsv' <<<"${webhooks}" | sort -u)
  fi
  apiservices="$(kctl get apiservices -o json 2>/dev/null |
    jq -r '.items[]? | select(any(.status.conditions[]?; .type == "Available" and .status == "False")) | .metadata.name' 2>/dev/null || true)"
  for svc in ${apiservices}; do
    echo "WARNING: APIService ${svc} is not available; API discovery may be slow or fail"
  done
  if [[ ${#CRD_GROUPS[@]} -gt 0 ]]; then
    crds="$(kctl get crd -o json 2>/dev/null || true)"
    for group in "${CRD_GROUPS[@]}"; do
      [[ -n "${crds}" ]] || break
      orphans="$(jq -r --arg g "${group}" '.items[]? | select(.spec.group == $g) | select(.metadata.annotations["meta.helm.sh/release-name"] == null) | .metadata.name' <<<"${crds}" 2>/dev/null || true)"
      for crd in ${orphans}; do
        echo "WARNING: CRD ${crd} is not owned by any Helm release (left over from an earlier install?)"
      done
    done
  fi
else
  echo "NOTE: jq not found; skipping the webhook, APIService and CRD checks"
fi
