
# CRDs that still name one of this bundle's releases; unannotated CRDs of
# the same API groups may belong to someone else and stay.
ALL_CRDS="$(kctl get crd -o json 2>/dev/null || echo '{}')"
for rel in "${RELEASES[@]}"; do
  ns="$(namespace_of "${rel}")" || continue
  for crd in $(jq -r --arg r "${rel}" --arg n "${ns}" '.items[]? | select(.metadata.annotations["meta.helm.sh/release-name"] == $r and .metadata.annotations["meta.helm.sh/release-namespace"] == $n) | select(.metadata.deletionTimestamp == null) | .metadata.name' <<<"${ALL_CRDS}" 2>/dev/null || true); do
    kctl delete crd "${crd}" --ignore-not-found --wait=false || true
  done
done
ALL_CRDS="$(kctl get crd -o json 2>/dev/null || echo '{}')"
for crd in $(jq -r '.items[]? | select(.metadata.deletionTimestamp != null) | .metadata.name' <<<"${ALL_CRDS}" 2>/dev/null || true); do
  echo "WARNING: CRD ${crd} is stuck deleting. If its controller is gone, clear its finalizers:"
  echo "  kubectl patch crd ${crd} --type=merge -p '{\"metadata\":{\"finalizers\":[]}}'"
done

DELETED_NAMESPACES=()
for ns in "${BUNDLE_NAMESPACES[@]}" "${COMPANION_NAMESPACES[@]}"; do
  if [[ "${DELETE_PVCS}" == true ]] && ! is_protected "${ns}"; then
    echo "Deleting PVCs in ${ns}"
    kctl delete pvc --all -n "${ns}" --ignore-not-found || true
  fi
  delete_orphaned_webhooks "${ns}"
  if [[ "${KEEP_NAMESPACES}" == false ]] && ! is_protected "${ns}"; then
    echo "Deleting namespace ${ns}"
    kctl delete namespace "${ns}" --ignore-not-found --wait=false || true
    DELETED_NAMESPACES+=("${ns}")
  fi
done

terminating() {
  [[ "$(kctl get namespace "$1" -o jsonpath='{.status.phase}' 2>/dev/null || true)" == "Terminating" ]]
}

if [[ ${#DELETED_NAMESPACES[@]} -gt 0 ]]; then
  waited=0
  limit="${AICR_NAMESPACE_WAIT:-60}"
  while ((waited < limit)); do
    pending=false
    for ns in "${DELETED_NAMESPACES[@]}"; do
      if terminating "${ns}"; then
        pending=true
      fi
    done
    [[ "${pending}" == true ]] || break
    sleep 5
    waited=$((waited + 5))
  done
  for ns in "${DELETED_NAMESPACES[@]}"; do
    if terminating "${ns}"; then
      echo "Namespace ${ns} is still terminating after ${limit}s; clearing finalizers of the objects left in it"
      for res in $(kctl api-resources --verbs=list --namespaced -o name 2>/dev/null || true); do
        for obj in $(kctl get "${res}" -n "${ns}" -o name 2>/dev/null || true); do
          kctl patch "${obj}" -n "${ns}" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
        done
      done
      kctl delete namespace "${ns}" --ignore-not-found --wait=false || true
    fi
  done
fi

for ns in "${BUNDLE_NAMESPACES[@]}"; do
  delete_orphaned_webhooks "${ns}"
done

echo "Running post-flight checks..."
STALE=false
for ns in "${DELETED_NAMESPACES[@]}"; do
  if terminating "${ns}"; then
    echo "WARNING: namespace ${ns} is still terminating"
    STALE=true
  fi
done
apiservices="$(kctl get apiservices -o json 2>/dev/null | jq -r '.items[]? | select(any(.status.conditions[]?; .type == "Available" and .status == "False")) | .metadata.name' 2>/dev/null || true)"
for svc in ${apiservices}; do
  echo "WARNING: APIService ${svc} is not available (its backend may have been removed)"
  STALE=true
done
ALL_CRDS="$(kctl get crd -o json 2>/dev/null || echo '{}')"
for rel in "${RELEASES[@]}"; do
  ns="$(namespace_of "${rel}")" || continue
  left="$(jq -r --arg r "${rel}" --arg n "${ns}" '.items[]? | select(.metadata.annotations["meta.helm.sh/release-name"] == $r and .metadata.annotations["meta.helm.sh/release-namespace"] == $n) | select(.metadata.deletionTimestamp == null) | .metadata.name' <<<"${ALL_CRDS}" 2>/dev/null || true)"
  for crd in ${left}; do
    echo "WARNING: CRD ${crd} of release ${rel} is still present"
    STALE=true
  done
  for crd in $(operator_crds "${rel}"); do
    if jq -e --arg c "${crd}" '.items[]? | select(.metadata.name == $c)' <<<"${ALL_CRDS}" >/dev/null 2>&1; then
      echo "WARNING: operator CRD ${crd} (release ${rel}) is still present"
      STALE=true
    fi
  done
done
if [[ "${STALE}" == true ]]; then
  echo "Post-flight: some stale resources remain. Review the warnings above."
else
  echo "Post-flight: cluster is clean."
fi
echo "Undeployment complete."
