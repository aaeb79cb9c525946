//! The checks that need GPU workloads to answer: `check-nvidia-smi` (a
//! probe pod pinned to each idle GPU node) and `nccl-all-reduce-bw` (an
//! all-reduce benchmark through Kubeflow Trainer).
//!
//! The benchmark's pods take the run's inner-workload scheduling; probe
//! pods are pinned with `nodeName` and left alone. What they create is
//! removed afterwards unless `--no-cleanup`. Owns these two checks; must
//! not name other checks.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::validate::api::{self, gpu_nodes, name_of, quantity_count, str_at};
use crate::validate::check::{CheckLog, Ctx, PhaseName, Verdict, dns_label, random_hex};
use crate::validate::pods::{CUDA_IMAGE, log_lines, pod_outcome};

/// How users name the NCCL benchmark image (the CLI reads it, and
/// `--nccl-tests-image`, into the settings); the skip reason points to it.
pub(crate) const NCCL_IMAGE_ENV: &str = "AICR_NCCL_TESTS_IMAGE";

/// Wait for a pod to finish (Succeeded or Failed). `Err` carries why it
/// did not, for the report.
async fn wait_pod(
    ctx: &Ctx<'_>,
    ns: &str,
    name: &str,
    deadline: Instant,
) -> std::result::Result<Value, String> {
    let done = api::poll(deadline, Duration::from_secs(2), || async {
        match ctx.cluster.get(&api::POD, ns, name).await {
            Ok(Some(p)) if matches!(str_at(&p, "/status/phase"), "Succeeded" | "Failed") => {
                Some(Ok(p))
            }
            Ok(None) => Some(Err(format!("pod {ns}/{name} disappeared"))),
            _ => None,
        }
    })
    .await;
    if let Some(r) = done {
        return r;
    }
    let detail = match ctx.cluster.get(&api::POD, ns, name).await {
        Ok(Some(p)) => format!(
            "phase {}, {}",
            str_at(&p, "/status/phase"),
            pod_outcome(&p).1
        ),
        Ok(None) => "gone".to_string(),
        Err(e) => e.to_string(),
    };
    Err(format!("pod {ns}/{name} did not finish in time ({detail})"))
}

async fn delete_quietly(ctx: &Ctx<'_>, res: &api::ResourceType, ns: &str, name: &str) {
    if !ctx.settings.cleanup {
        return;
    }
    if let Err(e) = ctx.cluster.delete(res, ns, name).await {
        tracing::warn!("cleanup: failed to delete {} {ns}/{name}: {e}", res.kind);
    }
}

/// Pods that hold GPUs and have not finished, by node.
fn busy_gpu_nodes(pods: &[Value], gpu_node_names: &[&str]) -> Vec<String> {
    let mut busy: Vec<String> = Vec::new();
    for p in pods {
        if matches!(str_at(p, "/status/phase"), "Succeeded" | "Failed") {
            continue;
        }
        let node = str_at(p, "/spec/nodeName");
        if !gpu_node_names.contains(&node) || busy.iter().any(|b| b == node) {
            continue;
        }
        let wants_gpu = p
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    ["requests", "limits"].iter().any(|k| {
                        quantity_count(c.pointer(&format!("/resources/{k}/nvidia.com~1gpu"))) > 0
                    })
                })
            });
        if wants_gpu {
            busy.push(node.to_string());
        }
    }
    busy
}

/// `check-nvidia-smi`: run nvidia-smi once on every idle GPU node.
pub(crate) async fn check_nvidia_smi(ctx: &Ctx<'_>, out: &mut CheckLog) -> Verdict {
    let nodes = match ctx.cluster.list(&api::NODE, "", "").await {
        Ok(n) => n,
        Err(e) => return Verdict::Fail(format!("failed to list nodes: {e}")),
    };
    let gpu = gpu_nodes(&nodes);
    if gpu.is_empty() {
        return Verdict::Skip("no GPU nodes found in the cluster".into());
    }
    let names: Vec<&str> = gpu.iter().map(|n| name_of(n)).collect();
    out.say(format!("GPU nodes: {}", names.join(", ")));
    let busy = match ctx.cluster.list(&api::POD, "", "").await {
        Ok(pods) => busy_gpu_nodes(&pods, &names),
        // Unknown occupancy: do not put work on nodes that may be in use.
        Err(e) => {
            tracing::warn!("cannot list pods to check GPU occupancy: {e}");
            names.iter().map(|s| s.to_string()).collect()
        }
    };
    if !busy.is_empty() {
        return Verdict::Skip(format!(
            "GPU nodes busy with existing workloads: [{}]",
            busy.join(", ")
        ));
    }
    if let Err(e) = ctx.ensure_namespace().await {
        return Verdict::Fail(e);
    }
    let ns = ctx.namespace();
    let suffix = &ctx.run_id[ctx.run_id.len().saturating_sub(8)..];
    let mut pods = Vec::new();
    let mut failures = Vec::new();
    for node in &names {
        let pod_name = format!(
            "nvidia-smi-verify-{}-{suffix}",
            dns_label(&node.replace('.', "-"), 40)
        );
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod_name, "namespace": ns, "labels": ctx.labels("check-nvidia-smi")},
            "spec": {
                // Pinned by name: scheduling flags do not apply.
                "nodeName": node,
                "restartPolicy": "Never",
                "tolerations": [{"operator": "Exists"}],
                "imagePullSecrets": ctx.settings.image_pull_secrets.iter().map(|s| json!({"name": s})).collect::<Vec<_>>(),
                "securityContext": {"runAsNonRoot": true, "runAsUser": 1000},
                "containers": [{
                    "name": "nvidia-smi",
                    "image": CUDA_IMAGE,
                    "command": ["sh", "-c", "nvidia-smi && echo GPU_CHECK_SUCCESS"],
                    "resources": {"limits": {"nvidia.com/gpu": "1"}},
                }],
            },
        });
        match ctx.cluster.create(&api::POD, ns, pod).await {
            Ok(_) => pods.push((node.to_string(), pod_name)),
            Err(e) => failures.push(format!("{node}: failed to create pod: {e}")),
        }
    }
    let deadline = out.deadline_less(Duration::from_secs(15));
    for (node, pod) in &pods {
        match wait_pod(ctx, ns, pod, deadline).await {
            Err(e) => failures.push(format!("{node}: {e}")),
            Ok(p) => {
                let log = ctx.cluster.logs(ns, pod).await.unwrap_or_default();
                let missing: Vec<&str> = [
                    "NVIDIA-SMI",
                    "Driver Version:",
                    "CUDA Version:",
                    "GPU_CHECK_SUCCESS",
                ]
                .into_iter()
                .filter(|m| !log.contains(m))
                .collect();
                if str_at(&p, "/status/phase") == "Succeeded" && missing.is_empty() {
                    let header = log
                        .lines()
                        .find(|l| l.contains("Driver Version:"))
                        .map(|l| {
                            l.trim_matches(|c: char| c == '|' || c.is_whitespace())
                                .to_string()
                        })
                        .unwrap_or_default();
                    out.say(format!("  {node}: nvidia-smi OK {header}"));
                } else {
                    failures.push(format!(
                        "{node}: pod {} ended {}, output lacks {missing:?}",
                        pod,
                        str_at(&p, "/status/phase")
                    ));
                }
            }
        }
        delete_quietly(ctx, &api::POD, ns, pod).await;
    }
    if failures.is_empty() {
        out.say(format!(
            "nvidia-smi verified on {} GPU node(s)",
            names.len()
        ));
        Verdict::Pass
    } else {
        for f in &failures {
            out.say(format!("  {f}"));
        }
        Verdict::Fail(format!(
            "nvidia-smi verification failed on {} of {} GPU node(s): {}",
            failures.len(),
            names.len(),
            failures.join("; ")
        ))
    }
}

/// The NCCL threshold from a constraint value such as `>= 300` or
/// `450 GB/s`: operators and spaces stripped, first token as a number.
pub(crate) fn nccl_threshold(expr: &str) -> Option<f64> {
    let t = expr.trim_start_matches(['>', '<', '=', '!', ' ']);
    t.split_whitespace().next()?.parse().ok()
}

/// The out-of-place bus bandwidth (GB/s) of the last result row of
/// `all_reduce_perf` output: rows are `size count type redop root time
/// algbw busbw #wrong ...`.
pub(crate) fn nccl_busbw(log: &str) -> Option<f64> {
    log.lines().rev().find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        if cols.len() >= 8 && cols[0].parse::<u64>().is_ok() {
            cols[7].parse::<f64>().ok()
        } else {
            None
        }
    })
}

/// `nccl-all-reduce-bw`: an all-reduce benchmark across two GPU nodes
/// through Kubeflow Trainer, held to 90% of the recipe's threshold.
pub(crate) async fn nccl_all_reduce_bw(ctx: &Ctx<'_>, out: &mut CheckLog) -> Verdict {
    let Some(expr) = ctx.phase_constraint(PhaseName::Performance, "nccl-all-reduce-bw") else {
        return Verdict::Skip("the recipe sets no nccl-all-reduce-bw constraint in validation.performance.constraints".into());
    };
    let Some(threshold) = nccl_threshold(expr) else {
        return Verdict::Fail(format!(
            "cannot read a bandwidth threshold from nccl-all-reduce-bw {expr:?}"
        ));
    };
    let (service, accelerator) = (
        ctx.recipe.criteria.service.as_str(),
        ctx.recipe.criteria.accelerator.as_str(),
    );
    if !matches!((service, accelerator), ("eks", "h100") | ("gke", "h100")) {
        return Verdict::Skip(format!(
            "the NCCL benchmark has platform settings for eks/h100 and gke/h100 only (recipe: service={service}, accelerator={accelerator})"
        ));
    }
    let nodes = match ctx.cluster.list(&api::NODE, "", "").await {
        Ok(n) => n,
        Err(e) => return Verdict::Fail(format!("failed to list nodes: {e}")),
    };
    let gpu = gpu_nodes(&nodes);
    if gpu.len() < 2 {
        return Verdict::Skip(format!(
            "the NCCL benchmark needs at least 2 schedulable GPU nodes, found {}",
            gpu.len()
        ));
    }
    match ctx.cluster.served(&api::TRAIN_JOB.api_version()).await {
        Ok(Some(p))
            if p.iter().any(|x| x == "trainjobs") && p.iter().any(|x| x == "trainingruntimes") => {}
        Ok(_) => {
            return Verdict::Skip(
                "Kubeflow Trainer is not installed (trainer.kubeflow.org/v1alpha1 TrainJob and TrainingRuntime are not served); install it to run the NCCL benchmark".into(),
            );
        }
        Err(e) => {
            return Verdict::Fail(format!(
                "failed to discover trainer.kubeflow.org/v1alpha1: {e}"
            ));
        }
    }
    let Some(image) = ctx
        .settings
        .nccl_tests_image
        .as_deref()
        .filter(|i| !i.trim().is_empty())
    else {
        return Verdict::Skip(format!(
            "no NCCL benchmark image: set {NCCL_IMAGE_ENV} to an image that provides mpirun and all_reduce_perf (nccl-tests)"
        ));
    };
    if let Err(e) = ctx.ensure_namespace().await {
        return Verdict::Fail(e);
    }
    let gpus = quantity_count(gpu[0].pointer("/status/allocatable/nvidia.com~1gpu"));
    let mut default_selector = BTreeMap::new();
    match service {
        "eks" => {
            let it = str_at(gpu[0], "/metadata/labels/node.kubernetes.io~1instance-type");
            if !it.is_empty() {
                default_selector.insert(
                    "node.kubernetes.io/instance-type".to_string(),
                    it.to_string(),
                );
            }
        }
        _ => {
            default_selector.insert(
                "cloud.google.com/gke-accelerator".to_string(),
                "nvidia-h100-mega-80gb".to_string(),
            );
        }
    }
    let ns = ctx.namespace();
    let name = format!("aicr-nccl-{}", &random_hex()[..8]);
    let mut worker_spec = json!({
        "containers": [{"name": "node", "image": image,
                        "resources": {"limits": {"nvidia.com/gpu": gpus.to_string()}}}],
        "imagePullSecrets": ctx.settings.image_pull_secrets.iter().map(|s| json!({"name": s})).collect::<Vec<_>>(),
    });
    ctx.settings
        .scheduling
        .apply(&mut worker_spec, default_selector.clone());
    let mut launcher_spec = json!({
        "containers": [{"name": "node", "image": image, "command": [
            "mpirun", "--allow-run-as-root", "-np", (2 * gpus).to_string(), "-bind-to", "none",
            "-x", "NCCL_DEBUG=WARN", "all_reduce_perf", "-b", "8", "-e", "8G", "-f", "2", "-g", "1",
        ]}],
        "imagePullSecrets": ctx.settings.image_pull_secrets.iter().map(|s| json!({"name": s})).collect::<Vec<_>>(),
    });
    ctx.settings
        .scheduling
        .apply(&mut launcher_spec, default_selector);
    let labels = ctx.labels("nccl-all-reduce-bw");
    let runtime = json!({
        "apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainingRuntime",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {
            "mlPolicy": {"numNodes": 2, "mpi": {"numProcPerNode": gpus, "mpiImplementation": "OpenMPI", "runLauncherAsNode": false}},
            "template": {"spec": {"replicatedJobs": [
                {"name": "launcher", "replicas": 1, "template": {"spec": {"template": {"spec": launcher_spec}}}},
                {"name": "node", "replicas": 1, "template": {"spec": {"template": {"spec": worker_spec}}}},
            ]}},
        },
    });
    let train_job = json!({
        "apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"runtimeRef": {"apiGroup": "trainer.kubeflow.org", "kind": "TrainingRuntime", "name": name},
                 "trainer": {"numNodes": 2}},
    });
    if let Err(e) = ctx
        .cluster
        .create(&api::TRAINING_RUNTIME, ns, runtime)
        .await
    {
        return Verdict::Fail(format!("failed to create TrainingRuntime {ns}/{name}: {e}"));
    }
    let verdict = run_train_job(ctx, out, ns, &name, train_job, threshold, expr).await;
    delete_quietly(ctx, &api::TRAIN_JOB, ns, &name).await;
    delete_quietly(ctx, &api::TRAINING_RUNTIME, ns, &name).await;
    verdict
}

async fn run_train_job(
    ctx: &Ctx<'_>,
    out: &mut CheckLog,
    ns: &str,
    name: &str,
    train_job: Value,
    threshold: f64,
    expr: &str,
) -> Verdict {
    if let Err(e) = ctx.cluster.create(&api::TRAIN_JOB, ns, train_job).await {
        return Verdict::Fail(format!("failed to create TrainJob {ns}/{name}: {e}"));
    }
    out.say(format!("TrainJob {ns}/{name} created"));
    let selector = format!(
        "jobset.sigs.k8s.io/jobset-name={name},jobset.sigs.k8s.io/replicatedjob-name=launcher"
    );
    let deadline = out.deadline_less(Duration::from_secs(30));
    let launcher = api::poll(deadline, Duration::from_secs(5), || async {
        let pods = ctx.cluster.list(&api::POD, ns, &selector).await.ok()?;
        pods.into_iter()
            .find(|p| matches!(str_at(p, "/status/phase"), "Succeeded" | "Failed"))
    })
    .await;
    let Some(pod) = launcher else {
        return Verdict::Fail(format!(
            "the NCCL launcher pod of TrainJob {ns}/{name} did not finish in time"
        ));
    };
    let pod_name = name_of(&pod).to_string();
    let log = match ctx.cluster.logs(ns, &pod_name).await {
        Ok(l) => l,
        Err(e) => return Verdict::Fail(format!("failed to read launcher logs ({pod_name}): {e}")),
    };
    let Some(bw) = nccl_busbw(&log) else {
        out.lines
            .extend(log_lines(&log).into_iter().rev().take(20).rev());
        return Verdict::Fail(format!(
            "no all_reduce_perf results in launcher pod {pod_name} (phase {})",
            str_at(&pod, "/status/phase")
        ));
    };
    let ok = bw >= 0.9 * threshold;
    out.say(format!("NCCL All Reduce bandwidth: {bw:.2} GB/s"));
    out.say(format!("Constraint: {} → {ok}", expr.trim()));
    if ok {
        Verdict::Pass
    } else {
        Verdict::Fail(format!(
            "NCCL All Reduce bus bandwidth {bw:.2} GB/s is below 90% of {threshold} GB/s"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nccl_output_parsing() {
        assert_eq!(nccl_threshold(">= 300"), Some(300.0));
        assert_eq!(nccl_threshold("450 GB/s"), Some(450.0));
        assert_eq!(nccl_threshold(">= fast"), None);
        let log = "# nThread 1\n#  size  count  type redop root  time algbw busbw #wrong  time algbw busbw #wrong\n\
                   1048576  262144 float sum -1  55.1  19.03  35.68  0  54.2 19.3 36.2 0\n\
                   8589934592 2147483648 float sum -1 32989 260.39 488.37 0 32970 260.5 488.5 0\n\
                   # Avg bus bandwidth    : 250.1\n";
        assert_eq!(nccl_busbw(log), Some(488.37));
        assert_eq!(nccl_busbw("no results"), None);
    }

    #[test]
    fn busy_nodes_are_those_with_running_gpu_pods() {
        let pods = vec![
            json!({"spec": {"nodeName": "g1", "containers": [{"resources": {"limits": {"nvidia.com/gpu": "1"}}}]}, "status": {"phase": "Running"}}),
            json!({"spec": {"nodeName": "g2", "containers": [{"resources": {"limits": {"nvidia.com/gpu": "1"}}}]}, "status": {"phase": "Succeeded"}}),
            json!({"spec": {"nodeName": "g2", "containers": [{"resources": {}}]}, "status": {"phase": "Running"}}),
            json!({"spec": {"nodeName": "c1", "containers": [{"resources": {"requests": {"nvidia.com/gpu": "1"}}}]}, "status": {"phase": "Running"}}),
        ];
        assert_eq!(busy_gpu_nodes(&pods, &["g1", "g2"]), ["g1"]);
    }
}
