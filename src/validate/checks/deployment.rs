//! Deployment readiness, read straight from the cluster: the
//! `expected-resources` rules (component namespaces `Active`, declared
//! resources healthy, Nodewright/Skyhook CRs complete, `ClusterPolicy`
//! ready, the DRA kubelet plugin ready, health-check asserts) and the other
//! read-only checks (`operator-health`, `gpu-operator-version`,
//! `gpu-operator-health`, `platform-health`).
//!
//! A signal whose CRD is not registered is skipped; everything else that
//! cannot be read fails closed. Owns these rules; must never write to the
//! cluster, and names no other check.

use std::time::Duration;

use serde_json::Value;

use crate::constraint::Expr;
use crate::model::recipe::ComponentRef;

use crate::validate::api::{self, ApiError, ResourceType, int_at, name_of, str_at};
use crate::validate::chainsaw;
use crate::validate::check::{CheckLog, Ctx, PhaseName, Verdict, image_repository};

/// Time allowed for each single read.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Budget for one component's health-check asserts.
const ASSERT_BUDGET: Duration = Duration::from_secs(360);
/// Health-check asserts run at most this many components at once.
const ASSERT_PARALLELISM: usize = 4;

pub(crate) const NODEWRIGHT_COMPONENTS: [&str; 2] =
    ["nodewright-customizations", "skyhook-customizations"];
const SKYHOOK_GV: &str = "skyhook.nvidia.com/v1alpha1";
const NVIDIA_GV: &str = "nvidia.com/v1";
const KUBELET_PLUGIN_SUFFIX: &str = "-kubelet-plugin";

/// Enabled components in recipe order; a non-boolean `enabled` counts as
/// enabled, with a warning.
pub(crate) fn enabled_components<'a>(ctx: &Ctx<'a>) -> Vec<&'a ComponentRef> {
    ctx.recipe
        .component_refs
        .iter()
        .filter(|c| {
            if let Some(v) = c.overrides.get("enabled")
                && !v.is_boolean()
            {
                tracing::warn!(
                    "component {} has non-boolean overrides.enabled {v}; treating it as enabled",
                    c.name
                );
            }
            c.is_enabled()
        })
        .collect()
}

async fn read<T>(fut: impl std::future::Future<Output = api::ApiResult<T>>) -> api::ApiResult<T> {
    match tokio::time::timeout(READ_TIMEOUT, fut).await {
        Ok(r) => r,
        Err(_) => Err(ApiError::other(format!(
            "the API server did not answer within {}",
            humantime::format_duration(READ_TIMEOUT)
        ))),
    }
}

/// §7.2: every distinct non-empty namespace of the components is `Active`.
async fn check_namespaces(
    ctx: &Ctx<'_>,
    components: &[&ComponentRef],
    out: &mut CheckLog,
    failures: &mut Vec<String>,
) {
    let mut seen: Vec<&str> = Vec::new();
    for c in components {
        let ns = c.namespace.as_str();
        if ns.is_empty() || seen.contains(&ns) {
            continue;
        }
        seen.push(ns);
        match read(ctx.cluster.fetch(&api::NAMESPACE, "", ns)).await {
            Err(e) => failures.push(format!("namespace {ns}: {e}")),
            Ok(obj) => {
                let phase = str_at(&obj, "/status/phase");
                if phase == "Active" {
                    out.say(format!("  Namespace {ns}: Active"));
                } else {
                    failures.push(format!("namespace {ns}: phase={phase} (want Active)"));
                }
            }
        }
    }
}

/// One `expectedResources` entry: its failure text, or `None` if healthy.
async fn check_resource(ctx: &Ctx<'_>, kind: &str, ns: &str, name: &str) -> Option<String> {
    let res: &ResourceType = match kind {
        "Deployment" => &api::DEPLOYMENT,
        "DaemonSet" => &api::DAEMON_SET,
        "StatefulSet" => &api::STATEFUL_SET,
        "Service" => &api::SERVICE,
        "ConfigMap" => &api::CONFIG_MAP,
        "Secret" => &api::SECRET,
        other => {
            return Some(format!(
                "[INVALID_REQUEST] unsupported resource kind {other:?}"
            ));
        }
    };
    let obj = match read(ctx.cluster.fetch(res, ns, name)).await {
        Ok(o) => o,
        Err(e) => return Some(format!("[NOT_FOUND] not found: {e}")),
    };
    let replicas = || int_at(&obj, "/spec/replicas").unwrap_or(1);
    let status = |p: &str| int_at(&obj, p).unwrap_or(0);
    match kind {
        "Deployment" => {
            let (have, want) = (status("/status/availableReplicas"), replicas());
            (have < want)
                .then(|| format!("[INTERNAL] not healthy: {have}/{want} replicas available"))
        }
        "DaemonSet" => {
            let (have, want) = (
                status("/status/numberReady"),
                status("/status/desiredNumberScheduled"),
            );
            (have < want).then(|| format!("[INTERNAL] not healthy: {have}/{want} pods ready"))
        }
        "StatefulSet" => {
            let (have, want) = (status("/status/readyReplicas"), replicas());
            (have < want).then(|| format!("[INTERNAL] not healthy: {have}/{want} replicas ready"))
        }
        _ => None,
    }
}

/// §7.3 for one component's declared resources.
async fn check_expected(
    ctx: &Ctx<'_>,
    c: &ComponentRef,
    out: &mut CheckLog,
    failures: &mut Vec<String>,
) {
    for r in &c.expected_resources {
        let ns = if r.namespace.is_empty() {
            c.namespace.as_str()
        } else {
            r.namespace.as_str()
        };
        match check_resource(ctx, &r.kind, ns, &r.name).await {
            None => out.say(format!("  {} {ns}/{}: healthy", r.kind, r.name)),
            Some(e) => failures.push(format!("{} {ns}/{} ({}): {e}", r.kind, r.name, c.name)),
        }
    }
}

/// The Skyhook CR names a manifest declares. Manifests may be Helm
/// templates, so this reads lines rather than YAML: documents split at
/// `---` lines, those with `kind: Skyhook` at column 0, and in each the
/// first two-space-indented `name:` (the top-level `metadata.name`).
/// Templated names cannot be known before rendering and are dropped.
pub(crate) fn skyhook_names(text: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut doc: Vec<&str> = Vec::new();
    let mut flush = |doc: &mut Vec<&str>| {
        if doc.iter().any(|l| l.trim_end() == "kind: Skyhook")
            && let Some(raw) = doc.iter().find_map(|l| l.strip_prefix("  name:"))
        {
            let v = raw
                .trim()
                .trim_matches(|c| c == '"' || c == '\'')
                .to_string();
            if !v.is_empty() && !v.contains("{{") && !names.contains(&v) {
                names.push(v);
            }
        }
        doc.clear();
    };
    for line in text.lines() {
        if line.trim_end() == "---" {
            flush(&mut doc);
        } else {
            doc.push(line);
        }
    }
    flush(&mut doc);
    names
}

/// Whether a group-version serves `plural`: `Ok(false)` when the CRD is not
/// registered (discovery 404, or the group serves other kinds only).
async fn registered(ctx: &Ctx<'_>, gv: &str, plural: &str) -> Result<bool, ApiError> {
    Ok(read(ctx.cluster.served(gv))
        .await?
        .is_some_and(|plurals| plurals.iter().any(|p| p == plural)))
}

/// §7.5 Nodewright: every Skyhook CR the component's manifests declare is
/// `complete`; CRs the recipe does not name are ignored.
async fn check_nodewright(
    ctx: &Ctx<'_>,
    c: &ComponentRef,
    out: &mut CheckLog,
    failures: &mut Vec<String>,
) {
    let mut names: Vec<String> = Vec::new();
    for path in &c.manifest_files {
        match ctx.data.file(path) {
            Some(bytes) => {
                for n in skyhook_names(&String::from_utf8_lossy(bytes)) {
                    if !names.contains(&n) {
                        names.push(n);
                    }
                }
            }
            None => failures.push(format!(
                "[NOT_FOUND] Nodewright manifest {path} of component {}: not found in recipe data",
                c.name
            )),
        }
    }
    if names.is_empty() {
        failures.push(format!(
            "[INVALID_REQUEST] no Nodewright CR names could be extracted from component {} manifestFiles=[{}]",
            c.name,
            c.manifest_files.join(", ")
        ));
        return;
    }
    match registered(ctx, SKYHOOK_GV, api::SKYHOOK.plural).await {
        Ok(false) => {
            out.say(format!(
                "  Nodewright: {SKYHOOK_GV} not registered, skipping"
            ));
            return;
        }
        Err(e) => {
            failures.push(format!(
                "[INTERNAL] failed to discover {SKYHOOK_GV} resources (is the API server reachable and RBAC in order?): {e}"
            ));
            return;
        }
        Ok(true) => {}
    }
    let mut bad = Vec::new();
    for name in &names {
        match read(ctx.cluster.get(&api::SKYHOOK, "", name)).await {
            Ok(None) => bad.push(format!(
                "Nodewright {name}: not found (recipe declared it but the cluster has no such CR)"
            )),
            Err(e) => bad.push(format!("Nodewright {name}: failed to get: {e}")),
            Ok(Some(obj)) => match obj.pointer("/status/status") {
                None | Some(Value::Null) => {
                    bad.push(format!("Nodewright {name}: missing status.status"))
                }
                Some(Value::String(s)) if s == "complete" => {
                    out.say(format!("  Nodewright {name}: complete"));
                }
                Some(Value::String(s)) => {
                    bad.push(format!("Nodewright {name}: status={s} (want complete)"))
                }
                Some(_) => bad.push(format!("Nodewright {name}: failed to read status.status")),
            },
        }
    }
    if !bad.is_empty() {
        failures.push(format!(
            "[INTERNAL] {} of {} expected Nodewright(s) not ready:\n  {}",
            bad.len(),
            names.len(),
            bad.join("\n  ")
        ));
    }
}

/// §7.5 ClusterPolicy: once the CRD is registered, `cluster-policy` must
/// exist and be `ready`.
async fn check_cluster_policy(ctx: &Ctx<'_>, out: &mut CheckLog, failures: &mut Vec<String>) {
    match registered(ctx, NVIDIA_GV, api::CLUSTER_POLICY.plural).await {
        Ok(false) => {
            out.say(format!(
                "  ClusterPolicy: {NVIDIA_GV} not registered, skipping"
            ));
            return;
        }
        Err(e) => {
            failures.push(format!(
                "[INTERNAL] failed to discover {NVIDIA_GV} resources (is the API server reachable and RBAC in order?): {e}"
            ));
            return;
        }
        Ok(true) => {}
    }
    let obj = match read(
        ctx.cluster
            .fetch(&api::CLUSTER_POLICY, "", "cluster-policy"),
    )
    .await
    {
        Ok(o) => o,
        Err(e) => {
            failures.push(format!(
                "[NOT_FOUND] failed to get ClusterPolicy cluster-policy (gpu-operator installed but CR missing?): {e}"
            ));
            return;
        }
    };
    match obj.pointer("/status/state").and_then(Value::as_str) {
        None => failures.push("[INTERNAL] ClusterPolicy status.state not found".into()),
        Some("ready") => out.say("  ClusterPolicy cluster-policy: ready"),
        Some(s) => failures.push(format!("[INTERNAL] ClusterPolicy state={s} (want ready)")),
    }
}

/// §7.5 DRA: the one DaemonSet named `*-kubelet-plugin` in the component's
/// namespace has all its pods ready.
async fn check_dra_plugin(
    ctx: &Ctx<'_>,
    c: &ComponentRef,
    out: &mut CheckLog,
    failures: &mut Vec<String>,
) {
    let ns = c.namespace.as_str();
    let all = match read(ctx.cluster.list(&api::DAEMON_SET, ns, "")).await {
        Ok(l) => l,
        Err(e) => {
            failures.push(format!(
                "[INTERNAL] failed to list DaemonSets in namespace {ns}: {e}"
            ));
            return;
        }
    };
    let matching: Vec<&Value> = all
        .iter()
        .filter(|d| name_of(d).ends_with(KUBELET_PLUGIN_SUFFIX))
        .collect();
    let names = |v: &mut dyn Iterator<Item = &Value>| v.map(name_of).collect::<Vec<_>>().join(", ");
    let ds = match matching.as_slice() {
        [one] => *one,
        [] => {
            failures.push(format!(
                "[NOT_FOUND] no kubelet-plugin DaemonSet (name suffix \"{KUBELET_PLUGIN_SUFFIX}\") found in namespace {ns} (DaemonSets in namespace: [{}])",
                names(&mut all.iter())
            ));
            return;
        }
        many => {
            failures.push(format!(
                "[INVALID_REQUEST] ambiguous: {} DaemonSets in namespace {ns} match kubelet-plugin role suffix \"{KUBELET_PLUGIN_SUFFIX}\": [{}]",
                many.len(),
                names(&mut many.iter().copied())
            ));
            return;
        }
    };
    let dns = str_at(ds, "/metadata/namespace");
    let name = name_of(ds);
    let ready = int_at(ds, "/status/numberReady").unwrap_or(0);
    let desired = int_at(ds, "/status/desiredNumberScheduled").unwrap_or(0);
    if desired == 0 || ready == 0 {
        failures.push(format!(
            "[INTERNAL] DaemonSet {dns}/{name}: no ready kubelet-plugin pods scheduled ({ready}/{desired} pods ready)"
        ));
    } else if ready < desired {
        failures.push(format!(
            "[INTERNAL] DaemonSet {dns}/{name}: not healthy: {ready}/{desired} pods ready"
        ));
    } else {
        out.say(format!("  DaemonSet {dns}/{name}: healthy"));
    }
}

/// A component's health-check asserts: its own, else the registry's
/// `healthCheck.assertFile` from recipe data.
fn asserts_of(ctx: &Ctx<'_>, c: &ComponentRef) -> Option<String> {
    if !c.health_check_asserts.trim().is_empty() {
        return Some(c.health_check_asserts.clone());
    }
    let file = ctx
        .data
        .registry()
        .get(&c.name)?
        .health_check
        .as_ref()
        .map(|h| h.assert_file.as_str())
        .filter(|f| !f.is_empty())?;
    ctx.data
        .file(file)
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

/// §7.4: run queued asserts, a few components at a time.
async fn check_asserts(
    ctx: &Ctx<'_>,
    queued: Vec<(String, String)>,
    out: &mut CheckLog,
    failures: &mut Vec<String>,
) {
    let deadline = out.deadline_less(Duration::from_secs(5));
    for batch in queued.chunks(ASSERT_PARALLELISM) {
        let runs = batch.iter().map(|(name, text)| async move {
            let budget = (tokio::time::Instant::now() + ASSERT_BUDGET).min(deadline);
            let r = chainsaw::run(
                &ctx.cluster,
                text,
                budget,
                ctx.settings.kubeconfig.as_deref(),
            )
            .await;
            (name, r)
        });
        for (name, r) in futures::future::join_all(runs).await {
            match r {
                Ok(()) => out.say(format!("  {name}: chainsaw health check passed")),
                Err(output) => {
                    failures.push(format!("{name}: chainsaw health check failed:\n{output}"))
                }
            }
        }
    }
}

/// `expected-resources` (§7): collect failure lines from every rule, then
/// decide once. Never skips.
pub(crate) async fn expected_resources(ctx: &Ctx<'_>, out: &mut CheckLog) -> Verdict {
    let components = enabled_components(ctx);
    let mut failures = Vec::new();
    check_namespaces(ctx, &components, out, &mut failures).await;
    let mut queued = Vec::new();
    for c in &components {
        if c.expected_resources.is_empty() {
            if let Some(text) = asserts_of(ctx, c) {
                queued.push((c.name.clone(), text));
            }
            continue;
        }
        check_expected(ctx, c, out, &mut failures).await;
    }
    for c in &components {
        if NODEWRIGHT_COMPONENTS.contains(&c.name.as_str()) {
            check_nodewright(ctx, c, out, &mut failures).await;
        }
    }
    if components.iter().any(|c| c.name == "gpu-operator") {
        check_cluster_policy(ctx, out, &mut failures).await;
    }
    for c in &components {
        if c.name == "nvidia-dra-driver-gpu" {
            check_dra_plugin(ctx, c, out, &mut failures).await;
        }
    }
    check_asserts(ctx, queued, out, &mut failures).await;
    if failures.is_empty() && out.lines.is_empty() {
        return Verdict::Skip(
            "nothing to check: no enabled component declares a namespace, expected resources, health-check asserts or a readiness signal".into(),
        );
    }
    verdict_from(failures, out, "expected resource check failed")
}

fn verdict_from(failures: Vec<String>, out: &mut CheckLog, what: &str) -> Verdict {
    if failures.is_empty() {
        out.say("All deployment resources and required readiness signals are healthy");
        return Verdict::Pass;
    }
    // Printed, then read back as log lines: a multi-line failure is several.
    out.say("Failed resources:");
    for f in &failures {
        for (i, line) in f.lines().enumerate() {
            out.say(if i == 0 {
                format!("  {line}")
            } else {
                line.to_string()
            });
        }
    }
    Verdict::Fail(format!(
        "[NOT_FOUND] {what}: {} issue(s):\n  {}",
        failures.len(),
        failures.join("\n  ")
    ))
}

/// `platform-health`: component namespaces `Active` and declared resources
/// healthy (§7.2, §7.3), nothing else.
pub(crate) async fn platform_health(ctx: &Ctx<'_>, out: &mut CheckLog) -> Verdict {
    let components = enabled_components(ctx);
    if components
        .iter()
        .all(|c| c.namespace.is_empty() && c.expected_resources.is_empty())
    {
        return Verdict::Skip(
            "the recipe declares no enabled component with a namespace or expected resources"
                .into(),
        );
    }
    let mut failures = Vec::new();
    check_namespaces(ctx, &components, out, &mut failures).await;
    for c in &components {
        check_expected(ctx, c, out, &mut failures).await;
    }
    verdict_from(failures, out, "platform health check failed")
}

/// `operator-health`: at least one `app=gpu-operator` pod, and one running.
pub(crate) async fn operator_health(ctx: &Ctx<'_>, out: &mut CheckLog) -> Verdict {
    let ns = ctx.component_namespace("gpu-operator", "gpu-operator");
    let pods = match read(ctx.cluster.list(&api::POD, &ns, "app=gpu-operator")).await {
        Ok(p) => p,
        Err(e) => return Verdict::Fail(format!("failed to list gpu-operator pods in {ns}: {e}")),
    };
    if pods.is_empty() {
        return Verdict::Fail(format!("no gpu-operator pods found in namespace {ns}"));
    }
    out.say(format!("Found {} gpu-operator pod(s):", pods.len()));
    let mut running = 0;
    for p in &pods {
        let phase = str_at(p, "/status/phase");
        if phase == "Running" {
            running += 1;
        }
        out.say(format!("  {}: {phase}", name_of(p)));
    }
    out.say(format!("Running: {running}/{}", pods.len()));
    if running == 0 {
        return Verdict::Fail(format!("no gpu-operator pod is Running (0/{})", pods.len()));
    }
    Verdict::Pass
}

/// The GPU Operator version a Deployment advertises: its version label,
/// else the tag of a `gpu-operator` image (up to the first `-`), else an
/// annotation; with a `v` prefix.
pub(crate) fn operator_version(deployment: &Value) -> Option<String> {
    let label = str_at(deployment, "/metadata/labels/app.kubernetes.io~1version");
    let from_image = || {
        deployment
            .pointer("/spec/template/spec/containers")?
            .as_array()?
            .iter()
            .filter_map(|c| c["image"].as_str())
            .filter(|i| i.contains("gpu-operator"))
            .find_map(|i| {
                let repo = image_repository(i);
                let tag = i.get(repo.len()..)?.strip_prefix(':')?;
                let tag = tag.split('@').next()?.split('-').next()?;
                (!tag.is_empty()).then(|| tag.to_string())
            })
    };
    let annotation = str_at(
        deployment,
        "/metadata/annotations/nvidia.com~1gpu-operator-version",
    );
    let raw = if !label.is_empty() {
        label.to_string()
    } else if let Some(t) = from_image() {
        t
    } else if !annotation.is_empty() {
        annotation.to_string()
    } else {
        return None;
    };
    Some(if raw.starts_with('v') {
        raw
    } else {
        format!("v{raw}")
    })
}

/// `gpu-operator-version`: find the operator, read its version, and hold it
/// to `Deployment.gpu-operator.version` when the recipe sets one.
pub(crate) async fn gpu_operator_version(ctx: &Ctx<'_>, out: &mut CheckLog) -> Verdict {
    let mut found = None;
    let mut tried = Vec::new();
    'search: for ns in ["gpu-operator", "nvidia-gpu-operator", "kube-system"] {
        for name in ["gpu-operator", "nvidia-gpu-operator"] {
            tried.push(format!("{ns}/{name}"));
            match read(ctx.cluster.get(&api::DEPLOYMENT, ns, name)).await {
                Ok(Some(d)) => {
                    found = Some(d);
                    break 'search;
                }
                Ok(None) => {}
                Err(e) => {
                    return Verdict::Fail(format!("failed to get Deployment {ns}/{name}: {e}"));
                }
            }
        }
    }
    let Some(d) = found else {
        return Verdict::Fail(format!(
            "GPU Operator Deployment not found (tried {})",
            tried.join(", ")
        ));
    };
    let Some(version) = operator_version(&d) else {
        return Verdict::Fail(format!(
            "cannot tell the GPU Operator version of Deployment {}/{} (no app.kubernetes.io/version label, tagged gpu-operator image or nvidia.com/gpu-operator-version annotation)",
            str_at(&d, "/metadata/namespace"),
            name_of(&d)
        ));
    };
    out.say(format!("Detected GPU Operator version: {version}"));
    let Some(expr) = ctx.phase_constraint(PhaseName::Deployment, "Deployment.gpu-operator.version")
    else {
        return Verdict::Pass;
    };
    let result = Expr::parse(expr).and_then(|e| e.test(&version));
    match result {
        Ok(ok) => {
            out.say(format!("Constraint: {} → {ok}", expr.trim()));
            if ok {
                Verdict::Pass
            } else {
                Verdict::Fail(format!(
                    "GPU Operator version {version} does not satisfy {}",
                    expr.trim()
                ))
            }
        }
        Err(e) => Verdict::Fail(format!(
            "cannot evaluate Deployment.gpu-operator.version {expr:?} against {version}: {e}"
        )),
    }
}

/// `gpu-operator-health`: operator Deployment available, ClusterPolicy
/// ready, DCGM exporter running.
pub(crate) async fn gpu_operator_health(ctx: &Ctx<'_>, out: &mut CheckLog) -> Verdict {
    let ns = ctx.component_namespace("gpu-operator", "gpu-operator");
    let mut problems = Vec::new();
    let by_label = read(ctx.cluster.list(
        &api::DEPLOYMENT,
        &ns,
        "app.kubernetes.io/name=gpu-operator",
    ))
    .await;
    let operator = match by_label {
        Ok(mut l) if !l.is_empty() => Ok(Some(l.remove(0))),
        Ok(_) => read(ctx.cluster.get(&api::DEPLOYMENT, &ns, "gpu-operator")).await,
        Err(e) => Err(e),
    };
    match operator {
        Ok(Some(d)) => {
            let avail = int_at(&d, "/status/availableReplicas").unwrap_or(0);
            if avail >= 1 {
                out.say(format!(
                    "GPU Operator Deployment {ns}/{}: {avail} available",
                    name_of(&d)
                ));
            } else {
                problems.push(format!(
                    "GPU Operator Deployment {ns}/{} has no available replicas",
                    name_of(&d)
                ));
            }
        }
        Ok(None) => problems.push(format!(
            "GPU Operator Deployment not found in namespace {ns}"
        )),
        Err(e) => problems.push(format!(
            "failed to read GPU Operator Deployment in {ns}: {e}"
        )),
    }
    match read(
        ctx.cluster
            .fetch(&api::CLUSTER_POLICY, "", "cluster-policy"),
    )
    .await
    {
        Ok(cp) => match str_at(&cp, "/status/state") {
            "ready" => out.say("ClusterPolicy cluster-policy: ready"),
            "" => problems.push("ClusterPolicy status.state not found".into()),
            s => problems.push(format!("ClusterPolicy state={s} (want ready)")),
        },
        Err(e) => problems.push(format!("failed to get ClusterPolicy cluster-policy: {e}")),
    }
    match read(
        ctx.cluster
            .fetch(&api::DAEMON_SET, &ns, "nvidia-dcgm-exporter"),
    )
    .await
    {
        Ok(ds) => {
            let ready = int_at(&ds, "/status/numberReady").unwrap_or(0);
            if ready >= 1 {
                out.say(format!(
                    "DaemonSet {ns}/nvidia-dcgm-exporter: {ready} ready"
                ));
            } else {
                problems.push(format!(
                    "DaemonSet {ns}/nvidia-dcgm-exporter has no ready pods"
                ));
            }
        }
        Err(e) => problems.push(format!(
            "failed to get DaemonSet {ns}/nvidia-dcgm-exporter: {e}"
        )),
    }
    Verdict::from_problems("GPU Operator not healthy", &problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn skyhook_names_from_templated_manifests() {
        let text = "{{- if .Values.x }}\n---\napiVersion: skyhook.nvidia.com/v1alpha1\nkind: Skyhook\nmetadata:\n  labels:\n    name: not-this\n  name: \"tuning\"\nspec:\n  x: 1\n---   \nkind: Skyhook\nmetadata:\n  name: {{ .Values.name }}\n---\nkind: ConfigMap\nmetadata:\n  name: cm\n---\nkind: Skyhook\nmetadata:\n  name: 'tuning'\n---\nkind: Skyhook\nmetadata:\n  name: no-op\n";
        assert_eq!(skyhook_names(text), ["tuning", "no-op"]);
        assert!(skyhook_names("kind: ConfigMap\n").is_empty());
    }

    #[test]
    fn our_catalog_manifests_name_their_crs() {
        let cat = crate::catalog::Catalog::embedded().unwrap();
        for (file, want) in [
            ("tuning.yaml", "tuning"),
            ("tuning-gke.yaml", "tuning"),
            ("no-op.yaml", "no-op"),
        ] {
            let path = format!("components/nodewright-customizations/manifests/{file}");
            let text = String::from_utf8_lossy(cat.file(&path).unwrap()).into_owned();
            assert_eq!(skyhook_names(&text), [want], "{path}");
        }
    }

    #[test]
    fn operator_version_sources_in_order() {
        let d = |labels: Value, image: &str, ann: Value| {
            json!({"metadata": {"labels": labels, "annotations": ann},
                   "spec": {"template": {"spec": {"containers": [{"image": image}]}}}})
        };
        assert_eq!(
            operator_version(&d(
                json!({"app.kubernetes.io/version": "v25.3.0"}),
                "x",
                json!({})
            ))
            .as_deref(),
            Some("v25.3.0")
        );
        assert_eq!(
            operator_version(&d(
                json!({}),
                "nvcr.io/nvidia/gpu-operator:25.10.1-ubi9",
                json!({})
            ))
            .as_deref(),
            Some("v25.10.1")
        );
        assert_eq!(
            operator_version(&d(
                json!({}),
                "busybox:1",
                json!({"nvidia.com/gpu-operator-version": "24.9.0"})
            ))
            .as_deref(),
            Some("v24.9.0")
        );
        assert_eq!(
            operator_version(&d(json!({}), "busybox:1", json!({}))),
            None
        );
    }
}
