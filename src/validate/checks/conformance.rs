//! Conformance checks (AI platform capabilities): DRA, gang scheduling,
//! accelerator and AI service metrics, the inference gateway, pod and
//! cluster autoscaling, robust controllers and secure accelerator access.
//!
//! Each check first looks for what it needs and skips, naming what is
//! missing, when the cluster lacks it; only then does it judge. Test
//! workloads take the run's inner-workload scheduling (unless pinned to a
//! node or placed by a DRA claim) and are removed afterwards. Endpoints
//! inside the cluster are reached through the API server's service proxy.
//! Owns these checks; must not name other checks (what they share is in
//! `check` and `pods`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::validate::api::{self, ResourceType, condition_true, int_at, name_of, str_at};
use crate::validate::check::{CheckLog, Ctx, Verdict, random_hex};
use crate::validate::pods::{CUDA_IMAGE, log_lines};

const GPU_DRIVER: &str = "gpu.nvidia.com";
const DCGM_METRICS: [&str; 4] = [
    "DCGM_FI_DEV_GPU_UTIL",
    "DCGM_FI_DEV_FB_USED",
    "DCGM_FI_DEV_GPU_TEMP",
    "DCGM_FI_DEV_POWER_USAGE",
];
const QUEUE: ResourceType = ResourceType {
    group: "scheduling.run.ai",
    version: "v2",
    kind: "Queue",
    plural: "queues",
    namespaced: false,
};

fn pull_secrets(ctx: &Ctx<'_>) -> Value {
    Value::Array(
        ctx.settings
            .image_pull_secrets
            .iter()
            .map(|s| json!({"name": s}))
            .collect(),
    )
}

/// Available replicas of a Deployment, or why they cannot be read.
async fn available(ctx: &Ctx<'_>, ns: &str, name: &str) -> Result<i64, String> {
    match ctx.cluster.get(&api::DEPLOYMENT, ns, name).await {
        Ok(Some(d)) => Ok(int_at(&d, "/status/availableReplicas").unwrap_or(0)),
        Ok(None) => Err(format!("Deployment {ns}/{name} not found")),
        Err(e) => Err(format!("failed to get Deployment {ns}/{name}: {e}")),
    }
}

/// GET a path through the API server and parse the JSON answer.
async fn get_json(ctx: &Ctx<'_>, path: &str) -> Result<Value, String> {
    let text = ctx.cluster.raw_get(path).await.map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| format!("unexpected answer from {path}: {e}"))
}

/// GPU devices published by the NVIDIA DRA driver, and those allocated.
fn gpu_devices(slices: &[Value], claims: &[Value]) -> (usize, usize) {
    let total = slices
        .iter()
        .filter(|s| str_at(s, "/spec/driver") == GPU_DRIVER)
        .map(|s| {
            s.pointer("/spec/devices")
                .and_then(Value::as_array)
                .map_or(0, Vec::len)
        })
        .sum();
    let used = claims
        .iter()
        .filter_map(|c| {
            c.pointer("/status/allocation/devices/results")
                .and_then(Value::as_array)
        })
        .flatten()
        .filter(|r| r["driver"] == GPU_DRIVER)
        .count();
    (total, used)
}

/// A standalone ResourceClaim for one GPU.
fn gpu_claim(ctx: &Ctx<'_>, check: &str, ns: &str, name: &str) -> Value {
    json!({
        "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
        "metadata": {"name": name, "namespace": ns, "labels": ctx.labels(check)},
        "spec": {"devices": {"requests": [{"name": "gpu", "exactly": {"deviceClassName": GPU_DRIVER}}]}},
    })
}

/// A pod that gets its GPU through `claim` and lists it.
fn claim_pod(ctx: &Ctx<'_>, check: &str, ns: &str, name: &str, claim: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": ctx.labels(check)},
        "spec": {
            "restartPolicy": "Never",
            "imagePullSecrets": pull_secrets(ctx),
            "resourceClaims": [{"name": "gpu", "resourceClaimName": claim}],
            "containers": [{
                "name": "gpu", "image": CUDA_IMAGE, "command": ["nvidia-smi", "-L"],
                "resources": {"claims": [{"name": "gpu"}]},
            }],
        },
    })
}

/// Wait until `probe` holds for the pod (by name), returning the pod.
async fn wait_for_pod(
    ctx: &Ctx<'_>,
    ns: &str,
    name: &str,
    deadline: Instant,
    probe: impl Fn(&Value) -> bool,
) -> Option<Value> {
    api::poll(deadline, Duration::from_secs(2), || async {
        match ctx.cluster.get(&api::POD, ns, name).await {
            Ok(Some(p)) if probe(&p) => Some(p),
            _ => None,
        }
    })
    .await
}

fn finished(p: &Value) -> bool {
    matches!(str_at(p, "/status/phase"), "Succeeded" | "Failed")
}

async fn remove(ctx: &Ctx<'_>, res: &ResourceType, ns: &str, name: &str) {
    if !ctx.settings.cleanup {
        return;
    }
    if let Err(e) = ctx.cluster.delete(res, ns, name).await {
        tracing::warn!("cleanup: failed to delete {} {ns}/{name}: {e}", res.kind);
    }
}

/// A throwaway namespace for a test; the caller deletes it.
async fn test_namespace(ctx: &Ctx<'_>, prefix: &str, check: &str) -> Result<String, String> {
    let name = format!("{prefix}-{}", &random_hex()[..8]);
    let ns = json!({"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": name, "labels": ctx.labels(check)}});
    ctx.cluster
        .create(&api::NAMESPACE, "", ns)
        .await
        .map(|_| name.clone())
        .map_err(|e| format!("failed to create namespace {name}: {e}"))
}

/// Whether the DRA API is served at v1, and at all.
async fn dra_versions(ctx: &Ctx<'_>) -> Result<(bool, bool), String> {
    let v1 = ctx
        .cluster
        .served("resource.k8s.io/v1")
        .await
        .map_err(|e| e.to_string())?;
    let beta = ctx
        .cluster
        .served("resource.k8s.io/v1beta1")
        .await
        .map_err(|e| e.to_string())?;
    Ok((v1.is_some(), v1.is_some() || beta.is_some()))
}

/// `dra-support`: the DRA API, the NVIDIA DRA driver's controller and
/// kubelet plugin, published GPUs, and one claim actually allocated to a pod.
pub(crate) async fn dra_support(ctx: &Ctx<'_>, out: &mut CheckLog) -> Verdict {
    let (v1, any) = match dra_versions(ctx).await {
        Ok(v) => v,
        Err(e) => return Verdict::Fail(format!("failed to discover resource.k8s.io: {e}")),
    };
    if !any {
        return Verdict::Skip(
            "Dynamic Resource Allocation is not available: resource.k8s.io is not served".into(),
        );
    }
    let ns = ctx.component_namespace("nvidia-dra-driver-gpu", "nvidia-dra-driver");
    let controller = "nvidia-dra-driver-gpu-controller";
    let pods = match ctx.cluster.list(&api::POD, &ns, "").await {
        Ok(p) => p,
        Err(e) => return Verdict::Fail(format!("failed to list pods in {ns}: {e}")),
    };
    let ctl = match ctx.cluster.get(&api::DEPLOYMENT, &ns, controller).await {
        Ok(d) => d,
        Err(e) => {
            return Verdict::Fail(format!("failed to get Deployment {ns}/{controller}: {e}"));
        }
    };
    if pods.is_empty() && ctl.is_none() {
        return Verdict::Skip(format!(
            "the NVIDIA DRA driver is not installed (no pods and no Deployment {controller} in namespace {ns})"
        ));
    }
    let ctl = ctl
        .map(|d| int_at(&d, "/status/availableReplicas").unwrap_or(0))
        .ok_or_else(|| format!("Deployment {ns}/{controller} not found"));
    let mut problems = Vec::new();
    if !v1 {
        problems.push("resource.k8s.io/v1 is not served".to_string());
    }
    match ctl {
        Ok(n) if n >= 1 => out.say(format!("Deployment {ns}/{controller}: {n} available")),
        Ok(_) => problems.push(format!(
            "Deployment {ns}/{controller} has no available replicas"
        )),
        Err(e) => problems.push(e),
    }
    match ctx.cluster.list(&api::DAEMON_SET, &ns, "").await {
        Ok(ds) => match ds.iter().find(|d| name_of(d).ends_with("-kubelet-plugin")) {
            Some(d) if int_at(d, "/status/numberReady").unwrap_or(0) >= 1 => {
                out.say(format!("DaemonSet {ns}/{}: ready", name_of(d)))
            }
            Some(d) => problems.push(format!("DaemonSet {ns}/{} has no ready pods", name_of(d))),
            None => problems.push(format!("no kubelet-plugin DaemonSet in namespace {ns}")),
        },
        Err(e) => problems.push(format!("failed to list DaemonSets in {ns}: {e}")),
    }
    if !problems.is_empty() {
        return Verdict::from_problems("DRA driver not ready", &problems);
    }
    let slices = match ctx.cluster.list(&api::RESOURCE_SLICE, "", "").await {
        Ok(s) => s,
        Err(e) => return Verdict::Fail(format!("failed to list ResourceSlices: {e}")),
    };
    let (total, _) = gpu_devices(&slices, &[]);
    if total == 0 {
        return Verdict::Fail(format!("no ResourceSlice publishes {GPU_DRIVER} devices"));
    }
    out.say(format!(
        "ResourceSlices publish {total} {GPU_DRIVER} device(s)"
    ));
    if let Err(e) = ctx.ensure_namespace().await {
        return Verdict::Fail(e);
    }
    let vns = ctx.namespace();
    let name = format!("aicr-dra-{}", &random_hex()[..8]);
    if let Err(e) = ctx
        .cluster
        .create(
            &api::RESOURCE_CLAIM,
            vns,
            gpu_claim(ctx, "dra-support", vns, &name),
        )
        .await
    {
        return Verdict::Fail(format!("failed to create ResourceClaim {vns}/{name}: {e}"));
    }
    let mut pod = claim_pod(ctx, "dra-support", vns, &name, &name);
    ctx.settings
        .scheduling
        .apply(&mut pod["spec"], BTreeMap::new());
    let verdict = match ctx.cluster.create(&api::POD, vns, pod).await {
        Err(e) => Verdict::Fail(format!("failed to create pod {vns}/{name}: {e}")),
        Ok(_) => {
            let deadline = out.deadline_less(Duration::from_secs(15));
            let done = wait_for_pod(ctx, vns, &name, deadline, finished).await;
            match done {
                None => Verdict::Fail(format!(
                    "pod {vns}/{name} using ResourceClaim {name} did not finish in time"
                )),
                Some(p) if str_at(&p, "/status/phase") != "Succeeded" => Verdict::Fail(format!(
                    "pod {vns}/{name} using ResourceClaim {name} failed"
                )),
                // A pod that uses a claim only runs once the claim is allocated.
                Some(p) => {
                    let claim = ctx.cluster.get(&api::RESOURCE_CLAIM, vns, &name).await;
                    let device = match &claim {
                        Ok(Some(c)) => {
                            str_at(c, "/status/allocation/devices/results/0/device").to_string()
                        }
                        _ => String::new(),
                    };
                    out.say(format!(
                        "ResourceClaim {name} allocated{}; pod ran on {}",
                        if device.is_empty() {
                            String::new()
                        } else {
                            format!(" device {device}")
                        },
                        str_at(&p, "/spec/nodeName")
                    ));
                    if let Ok(log) = ctx.cluster.logs(vns, &name).await {
                        out.lines.extend(log_lines(&log));
                    }
                    Verdict::Pass
                }
            }
        }
    };
    remove(ctx, &api::POD, vns, &name).await;
    remove(ctx, &api::RESOURCE_CLAIM, vns, &name).await;
    verdict
}

/// `gang-scheduling`: KAI scheduler healthy, and two claim-placed pods of
/// one PodGroup scheduled together.
pub(crate) async fn gang_scheduling(ctx: &Ctx<'_>, out: &mut CheckLog) -> Verdict {
    let ns = ctx.component_namespace("kai-scheduler", "kai-scheduler");
    match ctx
        .cluster
        .get(&api::DEPLOYMENT, &ns, "kai-scheduler-default")
        .await
    {
        Ok(Some(_)) => {}
        Ok(None) => {
            return Verdict::Skip(format!(
                "KAI scheduler is not installed (no Deployment {ns}/kai-scheduler-default)"
            ));
        }
        Err(e) => {
            return Verdict::Fail(format!(
                "failed to get Deployment {ns}/kai-scheduler-default: {e}"
            ));
        }
    }
    let mut problems = Vec::new();
    for d in [
        "kai-scheduler-default",
        "admission",
        "binder",
        "kai-operator",
        "pod-grouper",
        "podgroup-controller",
    ] {
        match available(ctx, &ns, d).await {
            Ok(n) if n >= 1 => out.say(format!("Deployment {ns}/{d}: {n} available")),
            Ok(_) => problems.push(format!("Deployment {ns}/{d} has no available replicas")),
            Err(e) => problems.push(e),
        }
    }
    for crd in ["queues.scheduling.run.ai", "podgroups.scheduling.run.ai"] {
        match ctx.cluster.get(&api::CRD, "", crd).await {
            Ok(Some(_)) => out.say(format!("CRD {crd}: present")),
            Ok(None) => problems.push(format!("CRD {crd} not found")),
            Err(e) => problems.push(format!("failed to get CRD {crd}: {e}")),
        }
    }
    if !problems.is_empty() {
        return Verdict::from_problems("KAI scheduler not ready", &problems);
    }
    let slices = ctx.cluster.list(&api::RESOURCE_SLICE, "", "").await;
    let claims = ctx.cluster.list(&api::RESOURCE_CLAIM, "", "").await;
    let (total, used) = match (slices, claims) {
        (Ok(s), Ok(c)) => gpu_devices(&s, &c),
        (Err(e), _) | (_, Err(e)) => {
            return Verdict::Fail(format!("failed to count free GPUs: {e}"));
        }
    };
    let free = total.saturating_sub(used);
    if free < 2 {
        return Verdict::Skip(format!(
            "gang scheduling needs 2 free GPUs; {free} of {total} {GPU_DRIVER} devices are free"
        ));
    }
    let queues = match ctx.cluster.list(&QUEUE, "", "").await {
        Ok(q) => q,
        Err(e) => return Verdict::Fail(format!("failed to list KAI queues: {e}")),
    };
    let Some(queue) = queues
        .iter()
        .find(|q| !str_at(q, "/spec/parentQueue").is_empty())
        .or(queues.first())
        .map(|q| name_of(q).to_string())
    else {
        return Verdict::Fail("no KAI Queue exists to submit the test PodGroup to".into());
    };
    let tns = match test_namespace(ctx, "gang-scheduling-test", "gang-scheduling").await {
        Ok(n) => n,
        Err(e) => return Verdict::Fail(e),
    };
    let verdict = run_gang(ctx, out, &tns, &queue).await;
    remove(ctx, &api::NAMESPACE, "", &tns).await;
    verdict
}

async fn run_gang(ctx: &Ctx<'_>, out: &mut CheckLog, ns: &str, queue: &str) -> Verdict {
    let group = "aicr-gang";
    let pg = json!({
        "apiVersion": "scheduling.run.ai/v2alpha2", "kind": "PodGroup",
        "metadata": {"name": group, "namespace": ns, "labels": ctx.labels("gang-scheduling")},
        "spec": {"minMember": 2, "queue": queue},
    });
    if let Err(e) = ctx.cluster.create(&api::POD_GROUP, ns, pg).await {
        return Verdict::Fail(format!("failed to create PodGroup {ns}/{group}: {e}"));
    }
    let mut names = Vec::new();
    for i in 0..2 {
        let name = format!("{group}-{i}");
        if let Err(e) = ctx
            .cluster
            .create(
                &api::RESOURCE_CLAIM,
                ns,
                gpu_claim(ctx, "gang-scheduling", ns, &name),
            )
            .await
        {
            return Verdict::Fail(format!("failed to create ResourceClaim {ns}/{name}: {e}"));
        }
        // Placed by its claim and the gang scheduler, not by the flags.
        let mut pod = claim_pod(ctx, "gang-scheduling", ns, &name, &name);
        pod["spec"]["schedulerName"] = "kai-scheduler".into();
        pod["spec"]["tolerations"] = json!([{"operator": "Exists"}]);
        pod["spec"]["containers"][0]["command"] = json!(["sh", "-c", "nvidia-smi -L && sleep 30"]);
        pod["metadata"]["annotations"] = json!({"pod-group-name": group});
        pod["metadata"]["labels"]["kai.scheduler/queue"] = queue.into();
        if let Err(e) = ctx.cluster.create(&api::POD, ns, pod).await {
            return Verdict::Fail(format!("failed to create pod {ns}/{name}: {e}"));
        }
        names.push(name);
    }
    let deadline = out.deadline_less(Duration::from_secs(20));
    let placed = api::poll(deadline, Duration::from_secs(2), || async {
        let pods = ctx.cluster.list(&api::POD, ns, "").await.ok()?;
        let running: Vec<String> = pods
            .iter()
            .filter(|p| matches!(str_at(p, "/status/phase"), "Running" | "Succeeded"))
            .map(|p| format!("{} on {}", name_of(p), str_at(p, "/spec/nodeName")))
            .collect();
        (running.len() == names.len()).then_some(running)
    })
    .await;
    match placed {
        Some(running) => {
            for r in &running {
                out.say(format!("  {r}"));
            }
            out.say("Both pods of the gang were scheduled together");
            Verdict::Pass
        }
        None => Verdict::Fail(format!(
            "the pods of PodGroup {ns}/{group} were not all scheduled in time"
        )),
    }
}

/// Metric families missing from a Prometheus exposition text.
pub(crate) fn missing_metrics<'a>(text: &str, names: &[&'a str]) -> Vec<&'a str> {
    names
        .iter()
        .copied()
        .filter(|n| {
            !text.lines().any(|l| {
                l.strip_prefix(n)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
        })
        .collect()
}

/// `accelerator-metrics`: the DCGM exporter serves the core GPU metrics.
pub(crate) async fn accelerator_metrics(ctx: &Ctx<'_>, out: &mut CheckLog) -> Verdict {
    let ns = ctx.component_namespace("gpu-operator", "gpu-operator");
    let path = format!("/api/v1/namespaces/{ns}/services/nvidia-dcgm-exporter:9400/proxy/metrics");
    let text = match ctx.cluster.raw_get(&path).await {
        Ok(t) => t,
        Err(e) => {
            return Verdict::Fail(format!(
                "failed to scrape DCGM exporter {ns}/nvidia-dcgm-exporter:9400/metrics through the API server: {e}"
            ));
        }
    };
    let missing = missing_metrics(&text, &DCGM_METRICS);
    for m in DCGM_METRICS.iter().filter(|m| !missing.contains(m)) {
        if let Some(sample) = text.lines().find(|l| l.starts_with(m)) {
            out.say(sample.to_string());
        }
    }
    if missing.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Fail(format!(
            "DCGM exporter does not export {}",
            missing.join(", ")
        ))
    }
}

/// `ai-service-metrics`: Prometheus has DCGM series and the custom metrics
/// API answers.
pub(crate) async fn ai_service_metrics(ctx: &Ctx<'_>, out: &mut CheckLog) -> Verdict {
    let ns = ctx.component_namespace("kube-prometheus-stack", "monitoring");
    let mut services = Vec::new();
    for selector in ["app.kubernetes.io/name=prometheus", "self-monitor=true"] {
        match ctx.cluster.list(&api::SERVICE, &ns, selector).await {
            Ok(s) => services.extend(s),
            Err(e) => return Verdict::Fail(format!("failed to list Services in {ns}: {e}")),
        }
    }
    let Some(svc) = services.iter().find(|s| {
        s.pointer("/spec/ports")
            .and_then(Value::as_array)
            .is_some_and(|ps| ps.iter().any(|p| p["port"] == 9090))
    }) else {
        return Verdict::Fail(format!(
            "no Prometheus Service with port 9090 in namespace {ns}"
        ));
    };
    let svc = name_of(svc).to_string();
    out.say(format!("Prometheus: {ns}/{svc}:9090"));
    let path = format!(
        "/api/v1/namespaces/{ns}/services/{svc}:9090/proxy/api/v1/query?query=DCGM_FI_DEV_GPU_UTIL"
    );
    let deadline =
        (Instant::now() + Duration::from_secs(120)).min(out.deadline_less(Duration::from_secs(10)));
    let last_error = std::cell::RefCell::new(String::new());
    let series = api::poll(deadline, Duration::from_secs(10), || async {
        match get_json(ctx, &path).await {
            Ok(v) => v
                .pointer("/data/result")
                .and_then(Value::as_array)
                .filter(|r| !r.is_empty())
                .map(Vec::len),
            Err(e) => {
                *last_error.borrow_mut() = e;
                None
            }
        }
    })
    .await;
    let Some(n) = series else {
        let why = last_error.into_inner();
        let why = if why.is_empty() {
            "no series".to_string()
        } else {
            why
        };
        return Verdict::Fail(format!(
            "Prometheus {ns}/{svc} has no DCGM_FI_DEV_GPU_UTIL series ({why})"
        ));
    };
    out.say(format!("DCGM_FI_DEV_GPU_UTIL: {n} series"));
    if let Err(e) = ctx
        .cluster
        .raw_get("/apis/custom.metrics.k8s.io/v1beta1")
        .await
    {
        return Verdict::Fail(format!(
            "the custom metrics API (custom.metrics.k8s.io/v1beta1) does not answer: {e}"
        ));
    }
    out.say("custom.metrics.k8s.io/v1beta1: available");
    Verdict::Pass
}

/// `inference-gateway`: kgateway accepted, the inference Gateway
/// programmed, its CRDs present and its data plane ready.
pub(crate) async fn inference_gateway(ctx: &Ctx<'_>, out: &mut CheckLog) -> Verdict {
    if !ctx.has_component("kgateway") {
        return Verdict::Skip("kgateway is not a component of the recipe".into());
    }
    let mut problems = Vec::new();
    match ctx.cluster.get(&api::GATEWAY_CLASS, "", "kgateway").await {
        Ok(Some(gc)) if condition_true(&gc, "Accepted") => {
            out.say("GatewayClass kgateway: Accepted")
        }
        Ok(Some(_)) => problems.push("GatewayClass kgateway is not Accepted".to_string()),
        Ok(None) => problems.push("GatewayClass kgateway not found".to_string()),
        Err(e) => problems.push(format!("failed to get GatewayClass kgateway: {e}")),
    }
    let (gns, gw) = ("kgateway-system", "inference-gateway");
    match ctx.cluster.get(&api::GATEWAY, gns, gw).await {
        Ok(Some(g)) if condition_true(&g, "Programmed") => {
            out.say(format!("Gateway {gns}/{gw}: Programmed"))
        }
        Ok(Some(_)) => problems.push(format!("Gateway {gns}/{gw} is not Programmed")),
        Ok(None) => problems.push(format!("Gateway {gns}/{gw} not found")),
        Err(e) => problems.push(format!("failed to get Gateway {gns}/{gw}: {e}")),
    }
    for crd in [
        "gateways.gateway.networking.k8s.io",
        "httproutes.gateway.networking.k8s.io",
    ] {
        match ctx.cluster.get(&api::CRD, "", crd).await {
            Ok(Some(_)) => {}
            Ok(None) => problems.push(format!("CRD {crd} not found")),
            Err(e) => problems.push(format!("failed to get CRD {crd}: {e}")),
        }
    }
    let mut pools = false;
    for crd in [
        "inferencepools.inference.networking.k8s.io",
        "inferencepools.inference.networking.x-k8s.io",
    ] {
        if let Ok(Some(_)) = ctx.cluster.get(&api::CRD, "", crd).await {
            pools = true;
        }
    }
    if !pools {
        problems.push(
            "no InferencePool CRD (inference.networking.k8s.io or inference.networking.x-k8s.io)"
                .into(),
        );
    }
    match ctx
        .cluster
        .list(
            &api::ENDPOINT_SLICE,
            gns,
            &format!("kubernetes.io/service-name={gw}"),
        )
        .await
    {
        Ok(slices) => {
            let ready = slices
                .iter()
                .filter_map(|s| s.pointer("/endpoints").and_then(Value::as_array))
                .flatten()
                .filter(|e| e.pointer("/conditions/ready") == Some(&Value::Bool(true)))
                .count();
            if ready > 0 {
                out.say(format!("Gateway data plane: {ready} ready endpoint(s)"));
            } else {
                problems.push(format!(
                    "Gateway {gns}/{gw} has no ready data-plane endpoints"
                ));
            }
        }
        Err(e) => problems.push(format!("failed to list EndpointSlices in {gns}: {e}")),
    }
    Verdict::from_problems("inference gateway not ready", &problems)
}

/// `pod-autoscaling`: GPU metrics reach the metrics APIs, and an HPA on a
/// GPU metric scales a test Deployment up and back down.
pub(crate) async fn pod_autoscaling(ctx: &Ctx<'_>, out: &mut CheckLog) -> Verdict {
    match ctx
        .cluster
        .list(&api::POD, "", "app=nvidia-dcgm-exporter")
        .await
    {
        Ok(p) if !p.is_empty() => {}
        Ok(_) => {
            return Verdict::Skip(
                "no DCGM exporter pods (app=nvidia-dcgm-exporter): GPU metrics are not exported"
                    .into(),
            );
        }
        Err(e) => return Verdict::Fail(format!("failed to look for DCGM exporter pods: {e}")),
    }
    if let Err(e) = ctx
        .cluster
        .raw_get("/apis/custom.metrics.k8s.io/v1beta1")
        .await
    {
        return Verdict::Fail(format!(
            "the custom metrics API (custom.metrics.k8s.io/v1beta1) does not answer: {e}"
        ));
    }
    let gpu_ns = ctx.component_namespace("gpu-operator", "gpu-operator");
    let deadline =
        (Instant::now() + Duration::from_secs(120)).min(out.deadline_less(Duration::from_secs(60)));
    let found = api::poll(deadline, Duration::from_secs(10), || async {
        for ns in [gpu_ns.as_str(), "dynamo-system"] {
            let path = format!(
                "/apis/custom.metrics.k8s.io/v1beta1/namespaces/{ns}/pods/*/gpu_utilization"
            );
            if let Ok(v) = get_json(ctx, &path).await
                && let Some(n) = v["items"].as_array().map(Vec::len).filter(|n| *n > 0)
            {
                return Some((ns.to_string(), n));
            }
        }
        None
    })
    .await;
    let Some((ns, n)) = found else {
        return Verdict::Fail(format!(
            "no gpu_utilization custom metrics for pods in {gpu_ns} or dynamo-system"
        ));
    };
    out.say(format!("custom metric gpu_utilization: {n} pod(s) in {ns}"));
    if let Err(e) = ctx.ensure_namespace().await {
        return Verdict::Fail(e);
    }
    let vns = ctx.namespace();
    let external =
        format!("/apis/external.metrics.k8s.io/v1beta1/namespaces/{vns}/dcgm_gpu_power_usage");
    match get_json(ctx, &external).await {
        Ok(v) if v["items"].as_array().is_some_and(|i| !i.is_empty()) => {
            out.say("external metric dcgm_gpu_power_usage: available");
        }
        Ok(_) => return Verdict::Fail("external metric dcgm_gpu_power_usage has no values".into()),
        Err(e) => return Verdict::Fail(format!("external metric dcgm_gpu_power_usage: {e}")),
    }
    let name = format!("aicr-hpa-{}", &random_hex()[..8]);
    let verdict = run_hpa(ctx, out, vns, &name).await;
    remove(ctx, &api::HPA, vns, &name).await;
    remove(ctx, &api::DEPLOYMENT, vns, &name).await;
    verdict
}

async fn run_hpa(ctx: &Ctx<'_>, out: &mut CheckLog, ns: &str, name: &str) -> Verdict {
    let labels = ctx.labels("pod-autoscaling");
    let mut pod_spec = json!({
        "imagePullSecrets": pull_secrets(ctx),
        "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10",
                        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}],
    });
    ctx.settings
        .scheduling
        .apply(&mut pod_spec, BTreeMap::new());
    let deploy = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec},
        },
    });
    if let Err(e) = ctx.cluster.create(&api::DEPLOYMENT, ns, deploy).await {
        return Verdict::Fail(format!("failed to create Deployment {ns}/{name}: {e}"));
    }
    // A tiny per-pod target makes any GPU power draw ask for the maximum;
    // a huge one brings it back to the minimum.
    let target = |v: &str| json!({"type": "AverageValue", "averageValue": v});
    let hpa = json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": ns, "labels": ctx.labels("pod-autoscaling")},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": 1, "maxReplicas": 2,
            "metrics": [{"type": "External", "external": {
                "metric": {"name": "dcgm_gpu_power_usage"}, "target": target("1m")}}],
            "behavior": {
                "scaleUp": {"stabilizationWindowSeconds": 0},
                "scaleDown": {"stabilizationWindowSeconds": 0,
                              "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]},
            },
        },
    });
    if let Err(e) = ctx.cluster.create(&api::HPA, ns, hpa).await {
        return Verdict::Fail(format!(
            "failed to create HorizontalPodAutoscaler {ns}/{name}: {e}"
        ));
    }
    let now = Instant::now();
    let half = now
        + (out
            .deadline_less(Duration::from_secs(20))
            .saturating_duration_since(now))
            / 2;
    let replicas = |want: i64, deadline: Instant| async move {
        api::poll(deadline, Duration::from_secs(5), || async {
            let h = ctx.cluster.get(&api::HPA, ns, name).await.ok()??;
            (int_at(&h, "/status/desiredReplicas") == Some(want)).then_some(())
        })
        .await
    };
    if replicas(2, half).await.is_none() {
        return Verdict::Fail(format!(
            "HPA {ns}/{name} did not scale up on dcgm_gpu_power_usage"
        ));
    }
    out.say("HPA scaled the test Deployment up to 2 replicas");
    let patch = json!({"spec": {"metrics": [{"type": "External", "external": {
        "metric": {"name": "dcgm_gpu_power_usage"}, "target": target("1G")}}]}});
    if let Err(e) = ctx.cluster.merge_patch(&api::HPA, ns, name, patch).await {
        return Verdict::Fail(format!("failed to update HPA {ns}/{name}: {e}"));
    }
    if replicas(1, out.deadline_less(Duration::from_secs(20)))
        .await
        .is_none()
    {
        return Verdict::Fail(format!("HPA {ns}/{name} did not scale back down"));
    }
    out.say("HPA scaled the test Deployment back down to 1 replica");
    Verdict::Pass
}

/// `cluster-autoscaling`: Karpenter with a GPU NodePool, else the
/// platform's node groups behind the GPU nodes.
pub(crate) async fn cluster_autoscaling(ctx: &Ctx<'_>, out: &mut CheckLog) -> Verdict {
    let karpenter = match ctx
        .cluster
        .list(&api::DEPLOYMENT, "", "app.kubernetes.io/name=karpenter")
        .await
    {
        Ok(k) => k,
        Err(e) => return Verdict::Fail(format!("failed to look for Karpenter: {e}")),
    };
    if let Some(k) = karpenter.first() {
        let kns = str_at(k, "/metadata/namespace");
        if int_at(k, "/status/availableReplicas").unwrap_or(0) < 1 {
            return Verdict::Fail(format!(
                "Karpenter Deployment {kns}/{} has no available replicas",
                name_of(k)
            ));
        }
        out.say(format!("Karpenter: {kns}/{} available", name_of(k)));
        let pools = match ctx.cluster.list(&api::NODE_POOL, "", "").await {
            Ok(p) => p,
            Err(e) => {
                return Verdict::Fail(format!(
                    "failed to list Karpenter NodePools (karpenter.sh/v1): {e}"
                ));
            }
        };
        return match pools
            .iter()
            .find(|p| p.pointer("/spec/limits/nvidia.com~1gpu").is_some())
        {
            Some(p) => {
                let limit = p
                    .pointer("/spec/limits/nvidia.com~1gpu")
                    .unwrap_or(&Value::Null);
                let limit = limit
                    .as_str()
                    .map_or_else(|| limit.to_string(), str::to_string);
                out.say(format!(
                    "NodePool {} limits nvidia.com/gpu to {limit}",
                    name_of(p)
                ));
                Verdict::Pass
            }
            None => Verdict::Fail("no Karpenter NodePool sets an nvidia.com/gpu limit".into()),
        };
    }
    let service = ctx.recipe.criteria.service.as_str();
    let (label, group_label) = match service {
        "eks" => ("nvidia.com/gpu.present=true", "eks.amazonaws.com/nodegroup"),
        "gke" => (
            "cloud.google.com/gke-accelerator",
            "cloud.google.com/gke-nodepool",
        ),
        other => {
            return Verdict::Skip(format!(
                "no Karpenter, and no node-group autoscaling check for service {other:?}"
            ));
        }
    };
    let nodes = match ctx.cluster.list(&api::NODE, "", label).await {
        Ok(n) => n,
        Err(e) => return Verdict::Fail(format!("failed to list GPU nodes: {e}")),
    };
    if nodes.is_empty() {
        return Verdict::Fail(format!("no GPU nodes ({label}) to autoscale"));
    }
    let mut groups: Vec<&str> = nodes
        .iter()
        .map(|n| {
            str_at(
                n,
                &format!("/metadata/labels/{}", group_label.replace('/', "~1")),
            )
        })
        .filter(|g| !g.is_empty())
        .collect();
    groups.sort();
    groups.dedup();
    if groups.is_empty() {
        return Verdict::Fail(format!(
            "GPU nodes carry no {group_label} label: they are not in an autoscalable node group"
        ));
    }
    out.say(format!(
        "GPU node groups ({group_label}): {}",
        groups.join(", ")
    ));
    Verdict::Pass
}

/// Whether a webhook's Service has a ready endpoint.
async fn webhook_live(ctx: &Ctx<'_>, webhook: &Value) -> Result<(), String> {
    let ns = str_at(webhook, "/clientConfig/service/namespace");
    let svc = str_at(webhook, "/clientConfig/service/name");
    if svc.is_empty() {
        return Ok(());
    }
    let slices = ctx
        .cluster
        .list(
            &api::ENDPOINT_SLICE,
            ns,
            &format!("kubernetes.io/service-name={svc}"),
        )
        .await
        .map_err(|e| format!("failed to list endpoints of {ns}/{svc}: {e}"))?;
    let ready = slices
        .iter()
        .filter_map(|s| s.pointer("/endpoints").and_then(Value::as_array))
        .flatten()
        .any(|e| e.pointer("/conditions/ready") == Some(&Value::Bool(true)));
    if ready {
        Ok(())
    } else {
        Err(format!("webhook service {ns}/{svc} has no ready endpoints"))
    }
}

/// `robust-controller`: the AI operator the recipe installs (Dynamo, else
/// Kubeflow Trainer) runs, and its validating webhooks are served.
pub(crate) async fn robust_controller(ctx: &Ctx<'_>, out: &mut CheckLog) -> Verdict {
    let (ns, deployment, webhooks): (String, Option<&str>, &str) =
        if ctx.has_component("dynamo-platform") {
            (
                ctx.component_namespace("dynamo-platform", "dynamo-system"),
                None,
                "dynamo",
            )
        } else if ctx.has_component("kubeflow-trainer") {
            (
                ctx.component_namespace("kubeflow-trainer", "kubeflow"),
                Some("kubeflow-trainer-controller-manager"),
                "validator.trainer.kubeflow.org",
            )
        } else {
            return Verdict::Skip(
                "neither dynamo-platform nor kubeflow-trainer is a component of the recipe".into(),
            );
        };
    let mut problems = Vec::new();
    match deployment {
        Some(d) => match available(ctx, &ns, d).await {
            Ok(n) if n >= 1 => out.say(format!("Deployment {ns}/{d}: {n} available")),
            Ok(_) => problems.push(format!("Deployment {ns}/{d} has no available replicas")),
            Err(e) => problems.push(e),
        },
        None => match ctx.cluster.list(&api::DEPLOYMENT, &ns, "").await {
            Ok(ds) => {
                let ops: Vec<&Value> = ds
                    .iter()
                    .filter(|d| name_of(d).contains("dynamo-operator"))
                    .collect();
                if ops.is_empty() {
                    problems.push(format!("no Dynamo operator Deployment in namespace {ns}"));
                }
                for d in ops {
                    let n = int_at(d, "/status/availableReplicas").unwrap_or(0);
                    if n >= 1 {
                        out.say(format!("Deployment {ns}/{}: {n} available", name_of(d)));
                    } else {
                        problems.push(format!(
                            "Deployment {ns}/{} has no available replicas",
                            name_of(d)
                        ));
                    }
                }
            }
            Err(e) => problems.push(format!("failed to list Deployments in {ns}: {e}")),
        },
    }
    match ctx.cluster.list(&api::VALIDATING_WEBHOOK, "", "").await {
        Ok(all) => {
            let mine: Vec<&Value> = all
                .iter()
                .filter(|w| name_of(w).contains(webhooks))
                .collect();
            if mine.is_empty() {
                problems.push(format!(
                    "no ValidatingWebhookConfiguration matching {webhooks:?}"
                ));
            }
            for cfg in mine {
                for hook in cfg["webhooks"].as_array().into_iter().flatten() {
                    match webhook_live(ctx, hook).await {
                        Ok(()) => out.say(format!(
                            "webhook {} ({}): served",
                            str_at(hook, "/name"),
                            name_of(cfg)
                        )),
                        Err(e) => problems.push(e),
                    }
                }
            }
        }
        Err(e) => problems.push(format!(
            "failed to list ValidatingWebhookConfigurations: {e}"
        )),
    }
    Verdict::from_problems("controller not robust", &problems)
}

/// What makes a pod's GPU access other than through its claim.
pub(crate) fn direct_gpu_access(pod: &Value) -> Vec<String> {
    let mut found = Vec::new();
    for c in pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for k in ["limits", "requests"] {
            if c.pointer(&format!("/resources/{k}/nvidia.com~1gpu"))
                .is_some()
            {
                found.push(format!(
                    "container {} {k} nvidia.com/gpu",
                    str_at(c, "/name")
                ));
            }
        }
    }
    for v in pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let path = str_at(v, "/hostPath/path");
        if path.starts_with("/dev") {
            found.push(format!(
                "hostPath volume {} mounts {path}",
                str_at(v, "/name")
            ));
        }
    }
    found
}

/// `secure-accelerator-access`: a pod pinned to a GPU node gets its GPU
/// only through a DRA claim (no device-plugin limits, no host device mounts)
/// and the claim is allocated.
pub(crate) async fn secure_accelerator_access(ctx: &Ctx<'_>, out: &mut CheckLog) -> Verdict {
    match dra_versions(ctx).await {
        Ok((true, _)) => {}
        Ok(_) => {
            return Verdict::Skip(
                "resource.k8s.io/v1 is not served: GPU access through DRA claims cannot be tested"
                    .into(),
            );
        }
        Err(e) => return Verdict::Fail(format!("failed to discover resource.k8s.io: {e}")),
    }
    let slices = match ctx.cluster.list(&api::RESOURCE_SLICE, "", "").await {
        Ok(s) => s,
        Err(e) => return Verdict::Fail(format!("failed to list ResourceSlices: {e}")),
    };
    let Some(node) = slices
        .iter()
        .filter(|s| str_at(s, "/spec/driver") == GPU_DRIVER)
        .map(|s| str_at(s, "/spec/nodeName"))
        .find(|n| !n.is_empty())
        .map(str::to_string)
    else {
        return Verdict::Skip(format!(
            "no node publishes {GPU_DRIVER} devices through DRA"
        ));
    };
    let ns = match test_namespace(ctx, "dra-test", "secure-accelerator-access").await {
        Ok(n) => n,
        Err(e) => return Verdict::Fail(e),
    };
    let verdict = run_isolation(ctx, out, &ns, &node).await;
    remove(ctx, &api::NAMESPACE, "", &ns).await;
    verdict
}

async fn run_isolation(ctx: &Ctx<'_>, out: &mut CheckLog, ns: &str, node: &str) -> Verdict {
    let name = "isolation-test";
    if let Err(e) = ctx
        .cluster
        .create(
            &api::RESOURCE_CLAIM,
            ns,
            gpu_claim(ctx, "secure-accelerator-access", ns, name),
        )
        .await
    {
        return Verdict::Fail(format!("failed to create ResourceClaim {ns}/{name}: {e}"));
    }
    let mut pod = claim_pod(ctx, "secure-accelerator-access", ns, name, name);
    // Pinned to a GPU node: scheduling flags do not apply.
    pod["spec"]["nodeName"] = node.into();
    pod["spec"]["tolerations"] = json!([{"operator": "Exists"}]);
    if let Err(e) = ctx.cluster.create(&api::POD, ns, pod).await {
        return Verdict::Fail(format!("failed to create pod {ns}/{name}: {e}"));
    }
    let deadline = out.deadline_less(Duration::from_secs(20));
    let Some(p) = wait_for_pod(ctx, ns, name, deadline, finished).await else {
        return Verdict::Fail(format!("pod {ns}/{name} on {node} did not finish in time"));
    };
    let mut problems = direct_gpu_access(&p);
    if str_at(&p, "/status/phase") != "Succeeded" {
        problems.push(format!(
            "pod {ns}/{name} did not succeed ({})",
            str_at(&p, "/status/phase")
        ));
    }
    match ctx.cluster.get(&api::RESOURCE_CLAIM, ns, name).await {
        Ok(Some(c))
            if c.pointer("/status/allocation")
                .is_some_and(|a| !a.is_null()) =>
        {
            out.say(format!("ResourceClaim {name}: allocated on {node}"));
        }
        Ok(_) => problems.push(format!("ResourceClaim {ns}/{name} is not allocated")),
        Err(e) => problems.push(format!("failed to read ResourceClaim {ns}/{name}: {e}")),
    }
    if problems.is_empty() {
        out.say("GPU reached only through the DRA claim: no nvidia.com/gpu resources, no /dev host mounts");
    }
    Verdict::from_problems("GPU access is not isolated", &problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_families_are_matched_by_name() {
        let text = "# HELP DCGM_FI_DEV_GPU_UTIL x\nDCGM_FI_DEV_GPU_UTIL{gpu=\"0\"} 12\nDCGM_FI_DEV_FB_USED 3\nDCGM_FI_DEV_GPU_TEMP_MAX 1\n";
        assert_eq!(
            missing_metrics(text, &DCGM_METRICS),
            ["DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_POWER_USAGE"]
        );
    }

    #[test]
    fn free_gpus_are_published_minus_allocated() {
        let slices = vec![
            json!({"spec": {"driver": GPU_DRIVER, "devices": [{"name": "gpu-0"}, {"name": "gpu-1"}, {"name": "gpu-2"}]}}),
            json!({"spec": {"driver": "other", "devices": [{"name": "x"}]}}),
        ];
        let claims = vec![
            json!({"status": {"allocation": {"devices": {"results": [{"driver": GPU_DRIVER, "device": "gpu-0"}]}}}}),
        ];
        assert_eq!(gpu_devices(&slices, &claims), (3, 1));
    }

    #[test]
    fn direct_access_is_named() {
        let pod = json!({"spec": {
            "containers": [{"name": "a", "resources": {"limits": {"nvidia.com/gpu": "1"}}}],
            "volumes": [{"name": "dev", "hostPath": {"path": "/dev/nvidia0"}}, {"name": "tmp", "hostPath": {"path": "/tmp"}}],
        }});
        assert_eq!(
            direct_gpu_access(&pod),
            [
                "container a limits nvidia.com/gpu",
                "hostPath volume dev mounts /dev/nvidia0"
            ]
        );
    }
}
