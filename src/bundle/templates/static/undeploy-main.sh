
while [[ $# -gt 0 ]]; do
  case "$1" in
    --keep-namespaces) KEEP_NAMESPACES=true ;;
    --delete-pvcs) DELETE_PVCS=true ;;
    --skip-preflight) SKIP_PREFLIGHT=true ;;
    --timeout)
      if [[ $# -lt 2 ]]; then
        echo "Error: --timeout requires a value" >&2
        exit 1
      fi
      if ! [[ "$2" =~ ^[0-9]+$ ]]; then
        echo "Error: --timeout requires a number of seconds" >&2
        exit 1
      fi
      TIMEOUT="$2"
      shift
      ;;
    *)
      echo "Unknown option: $1" >&2
      exit 1
      ;;
  esac
  shift
done

if ! command -v jq >/dev/null 2>&1; then
  echo "Error: jq is required by undeploy.sh (https://jqlang.org)" >&2
  exit 1
fi
export KUBECONFIG_FLAG="${KUBECONFIG_FLAG:-}"

kctl() {
  # KUBECONFIG_FLAG holds zero or more flags; splitting it is intended.
  # shellcheck disable=SC2086
  kubectl ${KUBECONFIG_FLAG} "$@"
}

hlm() {
  # shellcheck disable=SC2086
  helm ${KUBECONFIG_FLAG} "$@"
}

is_protected() {
  [[ " ${PROTECTED_NAMESPACES} " == *" $1 "* ]]
}

RELEASES=()
for dir in "${SCRIPT_DIR}"/[0-9][0-9][0-9]-*/; do
  [[ -d "${dir}" ]] || continue
  folder="$(basename "${dir%/}")"
  RELEASES=("${folder#[0-9][0-9][0-9]-}" "${RELEASES[@]}")
done

echo "The following releases will be removed, in this order:"
for rel in "${RELEASES[@]}"; do
  echo "  - ${rel} ($(namespace_of "${rel}" || echo unknown))"
done

# Delete webhooks that point at namespace $1 when the namespace is gone or
# terminating, or their service is NotFound. Lookup errors keep the webhook.
delete_orphaned_webhooks() {
  local ns="$1" json phase out orphan kind name svc
  json="$(kctl get validatingwebhookconfigurations,mutatingwebhookconfigurations -o json 2>/dev/null)" || return 0
  [[ -n "${json}" ]] || return 0
  phase="$(kctl get namespace "${ns}" -o jsonpath='{.status.phase}' 2>&1)" || true
  while IFS=$'\t' read -r kind name svc; do
    [[ -n "${name}" ]] || continue
    orphan=false
    if [[ "${phase}" == *NotFound* || "${phase}" == "Terminating" ]]; then
      orphan=true
    elif ! out="$(kctl get service "${svc}" -n "${ns}" 2>&1)" && grep -q NotFound <<<"${out}"; then
      orphan=true
    fi
    if [[ "${orphan}" == true ]]; then
      echo "Deleting orphaned ${kind} ${name} (service ${ns}/${svc} is gone)"
      kctl delete "${kind}" "${name}" --ignore-not-found || true
    fi
  done < <(jq -r --arg ns "${ns}" '.items[]? | .kind as $k | .metadata.name as $n | (.webhooks // [])[] | select(.clientConfig.service.namespace? == $ns) | [$k, $n, .clientConfig.service.name] | @tsv' <<<"${json}" | sort -u)
  return 0
}

# CRD names in "helm get manifest" output.
crds_in_manifest() {
  awk '/^---/ { crd = 0 } /^kind: CustomResourceDefinition/ { crd = 1 } crd && /^  name:/ { print $2; crd = 0 }'
}

if [[ "${SKIP_PREFLIGHT}" == false ]]; then
  echo "Running pre-flight checks..."
  if ! ALL_CRDS="$(kctl get crd -o json)"; then
    echo "ERROR: could not list CRDs; retry, or pass --skip-preflight to continue without the finalizer check" >&2
    exit 1
  fi
  BLOCKED=false
  for rel in "${RELEASES[@]}"; do
    if [[ " ${CR_FIRST_RELEASES} " == *" ${rel} "* ]]; then
      continue
    fi
    ns="$(namespace_of "${rel}")" || continue
    if ! manifest="$(hlm get manifest "${rel}" -n "${ns}" 2>&1)"; then
      if grep -qi "not found" <<<"${manifest}"; then
        manifest=""
      else
        echo "ERROR: helm get manifest ${rel} failed: ${manifest}" >&2
        exit 1
      fi
    fi
    crds="$(
      crds_in_manifest <<<"${manifest}"
      jq -r --arg r "${rel}" --arg n "${ns}" '.items[]? | select(.metadata.annotations["meta.helm.sh/release-name"] == $r and .metadata.annotations["meta.helm.sh/release-namespace"] == $n) | .metadata.name' <<<"${ALL_CRDS}"
      for c in $(operator_crds "${rel}"); do echo "${c}"; done
    )"
    while read -r crd; do
      [[ -n "${crd}" ]] || continue
      if ! objs="$(kctl get "${crd}" -A -o json 2>&1)"; then
        if grep -q -e NotFound -e "doesn't have a resource type" <<<"${objs}"; then
          continue
        fi
        echo "ERROR: could not list ${crd}: ${objs}" >&2
        exit 1
      fi
      stuck="$(jq -r '.items[]? | select([(.metadata.finalizers // [])[] | select(startswith("kubernetes.io/") | not)] | length > 0) | "\(.metadata.namespace // "")/\(.metadata.name) finalizers=\(.metadata.finalizers)"' <<<"${objs}")"
      if [[ -n "${stuck}" ]]; then
        echo "Custom resources of ${crd} (release ${rel}) still carry controller finalizers:"
        while read -r line; do
          echo "  ${line}"
        done <<<"${stuck}"
        BLOCKED=true
      fi
    done < <(sort -u <<<"${crds}")
  done
  if [[ "${BLOCKED}" == true ]]; then
    echo "Delete these resources while their controllers still run (or clear their finalizers), then re-run undeploy.sh." >&2
    exit 1
  fi
  echo "Pre-flight checks passed."
fi

# All releases go first; namespaces and PVCs are handled once afterwards,
# so a StatefulSet still running cannot pin a PVC (pvc-protection) and hang.
for rel in "${RELEASES[@]}"; do
  if ! ns="$(namespace_of "${rel}")"; then
    echo "WARNING: no namespace known for ${rel}; skipping"
    continue
  fi
  echo "Uninstalling ${rel} from ${ns}..."
  if ! hlm uninstall "${rel}" -n "${ns}" --timeout "${TIMEOUT}s" --ignore-not-found; then
    echo "WARNING: helm uninstall ${rel} failed (stuck pending-install/pending-upgrade?); retrying with --no-hooks"
    hlm uninstall "${rel}" -n "${ns}" --timeout "${TIMEOUT}s" --ignore-not-found --no-hooks || true
  fi
  for kind in validatingwebhookconfigurations mutatingwebhookconfigurations crd; do
    names="$(kctl get "${kind}" -o json 2>/dev/null | jq -r --arg r "${rel}" --arg n "${ns}" '.items[]? | select(.metadata.annotations["meta.helm.sh/release-name"] == $r and .metadata.annotations["meta.helm.sh/release-namespace"] == $n) | .metadata.name' 2>/dev/null || true)"
    for n in ${names}; do
      kctl delete "${kind}" "${n}" --ignore-not-found --wait=false || true
    done
  done
  delete_orphaned_webhooks "${ns}"
done
