//! Every object `aicr` sends to the Kubernetes API, judged by the published
//! schemas (kubernetes-validate, strict, for the oldest Kubernetes the
//! catalog supports and the newest the schemas know; the CRD fixtures for
//! custom kinds) and by the API server's name and label rules: see
//! `aicr_test_support::api_objects`. What the client sent is judged, not
//! what the fake stored.
//!
//! Scenarios: the snapshot agent Job with its RBAC (both security
//! profiles), validator Jobs and the objects they are prepared with, the
//! deployment and conformance checks' test pods, claims and PodGroups, the
//! NCCL benchmark's Trainer objects, and documents written to `cm://`.
//! Without the judges' venv (scripts/install-test-tools.sh) the tests skip,
//! and fail under CI=true.

use std::fs;
use std::path::{Path, PathBuf};

use aicr_test_support::api_objects::{judge_sent, sent};
use aicr_test_support::tools::Judge;
use aicr_test_support::{FakeApiServer, fixtures};
use assert_cmd::Command;
use serde_json::{Value, json};

// ------------------------------------------------------------ the drivers

fn aicr_on(api: &FakeApiServer) -> Command {
    let mut c = aicr_test_support::tools::aicr();
    c.env("NO_COLOR", "1")
        .env("KUBECONFIG", api.kubeconfig_path())
        .env("HOME", "/nonexistent");
    c
}

fn write(dir: &Path, rel: &str, text: &str) -> PathBuf {
    let p = dir.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, text).unwrap();
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs `cmd` and asserts it exits 0.
fn succeeds(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "exit {:?}\n{}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
}

const AGENT_SNAPSHOT: &str = "kind: Snapshot\napiVersion: aicr.nvidia.com/v1alpha1\nmetadata:\n    source-node: gpu-1\nmeasurements:\n    - type: OS\n      subtypes:\n        - subtype: release\n          data:\n            ID: ubuntu\n";

/// A snapshot with the readings the validation gate reads.
const SNAPSHOT: &str = "kind: Snapshot
apiVersion: aicr.nvidia.com/v1alpha1
metadata:
  source-node: gpu-1
  timestamp: \"2026-11-28T01:12:40Z\"
  version: dev
measurements:
  - type: OS
    subtypes:
      - subtype: release
        data:
          ID: ubuntu
          VERSION_ID: \"24.04\"
  - type: K8s
    subtypes:
      - subtype: server
        data:
          version: v1.33.5-eks-3025e55
";

/// A recipe with the given validation block and component refs.
fn recipe(validation: &str, components: &str) -> String {
    format!(
        "kind: RecipeResult
apiVersion: aicr.nvidia.com/v1alpha1
criteria:
  service: eks
  accelerator: h100
  intent: training
  os: ubuntu
constraints:
  - name: K8s.server.version
    value: \">= 1.32.4\"
{validation}
componentRefs:
{components}
"
    )
}

/// A `--data` directory whose validator catalog holds `validators` (YAML
/// list items) and whose registry replaces the embedded one with nothing,
/// so no health-check asserts run.
fn data_dir(dir: &Path, validators: &str) -> PathBuf {
    let data = dir.join("data");
    write(
        &data,
        "registry.yaml",
        "apiVersion: aicr.nvidia.com/v1alpha1\nkind: ComponentRegistry\ncomponents: []\n",
    );
    write(
        &data,
        "validators/catalog.yaml",
        &format!(
            "apiVersion: aicr.nvidia.com/v1\nkind: ValidatorCatalog\nmetadata:\n  name: test\nvalidators:\n{validators}"
        ),
    );
    data
}

/// Plays the kubelet: pods whose name starts with one of `prefixes`
/// succeed with `log`.
fn kubelet_runs_pods(api: &FakeApiServer, prefixes: &'static [&'static str], log: &'static str) {
    api.on_create("pods", move |cluster, pod| {
        let name = pod["metadata"]["name"].as_str().unwrap().to_string();
        if !prefixes.iter().any(|p| name.starts_with(p)) {
            return;
        }
        let ns = pod["metadata"]["namespace"].as_str().unwrap().to_string();
        cluster.set_pod_log(&ns, &name, log);
        cluster.update_status("pods", &ns, &name, json!({"phase": "Succeeded"}));
    });
}

/// Plays the Job controller and kubelet: every Job's pod exits 0.
fn kubelet_runs_jobs(api: &FakeApiServer) {
    api.on_create("jobs", |cluster, job| {
        let ns = job["metadata"]["namespace"].as_str().unwrap().to_string();
        let name = job["metadata"]["name"].as_str().unwrap().to_string();
        let pod = fixtures::job_pod(job, 0);
        let pod_name = pod["metadata"]["name"].as_str().unwrap().to_string();
        cluster.insert(pod);
        cluster.set_pod_log(&ns, &pod_name, "ok\n");
        cluster.update_status("jobs", &ns, &name, fixtures::job_complete_status());
    });
}

fn judge() -> Option<Judge> {
    Judge::find()
}

// ---------------------------------------------------------------- tests

#[test]
fn the_snapshot_agent_job_and_its_rbac() {
    let Some(judge) = judge() else { return };
    let api = FakeApiServer::start_blocking();
    api.agent_jobs_write(AGENT_SNAPSHOT);
    api.insert(
        json!({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
        "metadata": {"name": "nvidia"}, "handler": "nvidia"}),
    );
    // Privileged (the default), in a namespace of its own that aicr
    // creates, with every scheduling flag.
    succeeds(aicr_on(&api).args([
        "snapshot",
        "-n",
        "aicr-ns",
        "--node-selector",
        "nodeGroup=gpu",
        "--toleration",
        "dedicated=gpu:NoSchedule",
        "--image-pull-secret",
        "regcred",
        "--image",
        "example.com/aicr:test",
        "--runtime-class",
        "nvidia",
        "--max-nodes-per-entry",
        "5",
    ]));
    // Unprivileged, tolerating everything, kept after the run.
    succeeds(aicr_on(&api).args([
        "snapshot",
        "--privileged=false",
        "--no-cleanup",
        "--job-name",
        "second",
    ]));
    judge_sent(
        &judge,
        &sent(&api),
        &[
            "Namespace",
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "ClusterRole",
            "ClusterRoleBinding",
            "Job",
        ],
    );
}

const NVIDIA_SMI_LOG: &str =
    "| NVIDIA-SMI 580.105.08             Driver Version: 580.105.08     CUDA Version: 13.0     |
GPU_CHECK_SUCCESS
";

#[test]
fn validator_jobs_and_what_they_are_prepared_with() {
    let Some(judge) = judge() else { return };
    let api = FakeApiServer::start_blocking();
    kubelet_runs_jobs(&api);
    kubelet_runs_pods(&api, &["nvidia-smi-verify-"], NVIDIA_SMI_LOG);
    api.insert(fixtures::node("gpu-node-1.ec2.internal").gpus(8).build());
    api.insert(fixtures::node("cpu-node-1").build());
    let dir = tempfile::tempdir().unwrap();
    let data = data_dir(
        dir.path(),
        "  - name: check-nvidia-smi
    phase: deployment
    image: ghcr.io/nvidia/aicr-validators/deployment:latest
    timeout: 20s
    args: [check-nvidia-smi]
  - name: custom-check
    phase: deployment
    description: A team's own check
    image: example.com/team/custom-check:1.0
    timeout: 20s
    args: [custom]
    env:
      - {name: TEAM_SETTING, value: strict}
    resources: {cpu: 500m, memory: 256Mi}
",
    );
    let r = write(
        dir.path(),
        "r.yaml",
        &recipe(
            "validation:\n  deployment:\n    checks: [check-nvidia-smi, custom-check]",
            "  []",
        ),
    );
    let snap = write(dir.path(), "s.yaml", SNAPSHOT);
    succeeds(
        aicr_on(&api)
            .args([
                "validate",
                "--phase",
                "deployment",
                "-r",
                s(&r),
                "-s",
                s(&snap),
            ])
            .args(["--data", s(&data)])
            .args(["--node-selector", "nodeGroup=gpu"])
            .args(["--toleration", "dedicated=gpu:NoSchedule"])
            .args(["--image-pull-secret", "regcred"])
            .args(["--output", "cm://aicr-validation/aicr-report"]),
    );
    judge_sent(
        &judge,
        &sent(&api),
        &[
            "Namespace",
            "ServiceAccount",
            "ClusterRoleBinding",
            "ConfigMap",
            "Job",
            "Pod",
        ],
    );
}

#[test]
fn a_validator_named_in_free_text_still_makes_valid_objects() {
    let Some(judge) = judge() else { return };
    let api = FakeApiServer::start_blocking();
    kubelet_runs_jobs(&api);
    let dir = tempfile::tempdir().unwrap();
    // The Job name is derived from the validator name; its labels must be
    // too, or a real API server refuses the Job (HTTP 422).
    let name = "Team GPU burn-in (nightly, 8 GPUs per node, all nodes of the training pool)";
    let data = data_dir(
        dir.path(),
        &format!(
            "  - name: \"{name}\"\n    phase: deployment\n    image: example.com/team/burn-in:1.0\n    timeout: 20s\n"
        ),
    );
    let r = write(
        dir.path(),
        "r.yaml",
        &recipe(
            &format!("validation:\n  deployment:\n    checks: [\"{name}\"]"),
            "  []",
        ),
    );
    let snap = write(dir.path(), "s.yaml", SNAPSHOT);
    succeeds(
        aicr_on(&api)
            .args([
                "validate",
                "--phase",
                "deployment",
                "-r",
                s(&r),
                "-s",
                s(&snap),
            ])
            .args(["--data", s(&data)]),
    );
    judge_sent(&judge, &sent(&api), &["Job"]);
}

/// The platform the conformance checks look at (as in validate.rs), with
/// the NVIDIA DRA driver added, so each check gets as far as creating its
/// test objects.
fn seed_platform(api: &FakeApiServer) {
    fixtures::platform::kai_scheduler(api);
    fixtures::platform::dra(api, 4);
    fixtures::platform::test_pods(api, &["aicr-dra-"]);
    api.insert(fixtures::namespace("gpu-operator"));
    fixtures::platform::dra_driver(api);
}

#[test]
fn conformance_test_pods_claims_and_pod_groups() {
    let Some(judge) = judge() else { return };
    let api = FakeApiServer::start_blocking();
    seed_platform(&api);
    let dir = tempfile::tempdir().unwrap();
    let r = write(
        dir.path(),
        "r.yaml",
        &recipe(
            "validation:\n  conformance:\n    checks: [dra-support, gang-scheduling, secure-accelerator-access]",
            "  - name: kai-scheduler\n    namespace: kai-scheduler\n  - name: nvidia-dra-driver-gpu\n    namespace: nvidia-dra-driver\n",
        ),
    );
    let snap = write(dir.path(), "s.yaml", SNAPSHOT);
    let out = aicr_on(&api)
        .args([
            "validate",
            "--phase",
            "conformance",
            "-r",
            s(&r),
            "-s",
            s(&snap),
        ])
        .args(["--node-selector", "nodeGroup=gpu"])
        .args(["--toleration", "dedicated=gpu:NoSchedule"])
        .args(["--image-pull-secret", "regcred"])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    for t in report["results"]["tests"].as_array().unwrap() {
        assert_eq!(t["status"], "passed", "{t}");
    }
    judge_sent(
        &judge,
        &sent(&api),
        &["Namespace", "ResourceClaim", "Pod", "PodGroup"],
    );
}

const NCCL_LOG: &str = "#  out-of-place                       in-place
#       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw   busbw #wrong
  8589934592    2147483648     float     sum      -1  32989.0  260.39  488.37      0  32970.0  260.54  488.65      0
";

#[test]
fn the_nccl_benchmark_trainer_objects() {
    let Some(judge) = judge() else { return };
    let api = FakeApiServer::start_blocking();
    for n in ["gpu-1", "gpu-2"] {
        api.insert(
            fixtures::node(n)
                .gpus(8)
                .label("node.kubernetes.io/instance-type", "p5.48xlarge")
                .build(),
        );
    }
    api.register_crd(
        "trainer.kubeflow.org",
        "v1alpha1",
        "TrainJob",
        "trainjobs",
        true,
    );
    api.register_crd(
        "trainer.kubeflow.org",
        "v1alpha1",
        "TrainingRuntime",
        "trainingruntimes",
        true,
    );
    api.on_create("trainjobs", |cluster, tj| {
        let ns = tj["metadata"]["namespace"].as_str().unwrap().to_string();
        let name = tj["metadata"]["name"].as_str().unwrap().to_string();
        let pod = format!("{name}-launcher-0-0");
        cluster.insert(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod, "namespace": ns, "labels": {
                "jobset.sigs.k8s.io/jobset-name": name, "jobset.sigs.k8s.io/replicatedjob-name": "launcher"}},
            "spec": {"containers": [{"name": "node", "image": "x"}]},
            "status": {"phase": "Succeeded"}}));
        cluster.set_pod_log(&ns, &pod, NCCL_LOG);
    });
    let dir = tempfile::tempdir().unwrap();
    let r = write(
        dir.path(),
        "r.yaml",
        &recipe(
            "validation:\n  performance:\n    checks: [nccl-all-reduce-bw]\n    constraints:\n      - name: nccl-all-reduce-bw\n        value: '>= 300'",
            "  []",
        ),
    );
    let snap = write(dir.path(), "s.yaml", SNAPSHOT);
    succeeds(
        aicr_on(&api)
            .env("AICR_NCCL_TESTS_IMAGE", "registry.local/nccl-tests:2.16")
            .args([
                "validate",
                "--phase",
                "performance",
                "-r",
                s(&r),
                "-s",
                s(&snap),
            ])
            .args(["--image-pull-secret", "regcred"])
            .args(["--toleration", "dedicated=gpu:NoSchedule"]),
    );
    judge_sent(&judge, &sent(&api), &["TrainingRuntime", "TrainJob"]);
}

/// A host tree with the files the OS collectors read.
fn host_root() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "proc/cmdline",
        "BOOT_IMAGE=/vmlinuz-6.8.0 ro quiet\n",
    );
    write(d.path(), "proc/sys/kernel/osrelease", "6.8.0-1028-aws\n");
    write(d.path(), "proc/modules", "nvidia 1 0 - Live 0x0\n");
    write(
        d.path(),
        "etc/os-release",
        "ID=ubuntu\nVERSION_ID=\"24.04\"\n",
    );
    d
}

#[test]
fn documents_written_to_config_maps() {
    let Some(judge) = judge() else { return };
    let api = FakeApiServer::start_blocking();
    succeeds(
        aicr_on(&api)
            .args(["recipe"])
            .args(fixtures::EKS_TRAINING)
            .args(["-o", "cm://default/aicr-recipe"]),
    );
    succeeds(aicr_on(&api).args([
        "recipe",
        "--service",
        "gke",
        "--format",
        "json",
        "-o",
        "cm://default/aicr-recipe-json",
    ]));
    let root = host_root();
    succeeds(
        aicr_on(&api)
            .env("NODE_NAME", "gpu-1")
            .env("PATH", "/usr/bin:/bin")
            .args(["snapshot", "--local", "--root"])
            .arg(root.path())
            .args(["-o", "cm://default/aicr-snapshot"]),
    );
    let stored = api.get("configmaps", "default", "aicr-snapshot").unwrap();
    assert!(stored["data"]["snapshot.yaml"].is_string(), "{stored}");
    judge_sent(&judge, &sent(&api), &["ConfigMap"]);
}
