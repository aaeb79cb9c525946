//! `aicr snapshot` through the real binary: local collection on a fixture
//! host tree (with and without a cluster), output formats and
//! destinations, templates, and the in-cluster agent Job against the fake
//! API server with the test playing the kubelet.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aicr_test_support::{FakeApiServer, fixtures};
use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::{Value, json};

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

/// A host tree with the files the OS collectors read.
fn host_root() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "proc/cmdline",
        "BOOT_IMAGE=/vmlinuz-6.8.0 ro quiet hugepagesz=1G root=/dev/sda1\n",
    );
    write(d.path(), "proc/sys/kernel/osrelease", "6.8.0-1028-aws\n");
    write(d.path(), "proc/sys/kernel/printk", "4\t4\t1\t7\n");
    write(d.path(), "proc/sys/net/ipv4/ip_forward", "1\n");
    write(
        d.path(),
        "proc/modules",
        "nvidia 1 0 - Live 0x0\nnvidia_uvm 2 0 - Live 0x0\n",
    );
    write(
        d.path(),
        "etc/os-release",
        "ID=ubuntu\nVERSION_ID=\"24.04\"\nPRETTY_NAME=\"Ubuntu 24.04 LTS\"\n",
    );
    d
}

/// `aicr` with no cluster configuration at all.
fn aicr_offline(home: &Path) -> Command {
    let mut c = aicr_test_support::tools::aicr();
    c.env("NO_COLOR", "1")
        .env("HOME", home)
        .env("NODE_NAME", "test-node")
        .env("PATH", "/usr/bin:/bin");
    c
}

fn yaml(bytes: &[u8]) -> Value {
    serde_saphyr::from_str(std::str::from_utf8(bytes).unwrap()).unwrap()
}

fn measurement<'a>(doc: &'a Value, kind: &str) -> &'a Value {
    doc["measurements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["type"] == kind)
        .unwrap_or(&Value::Null)
}

fn subtype<'a>(m: &'a Value, name: &str) -> &'a Value {
    m["subtypes"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["subtype"] == name))
        .map(|s| &s["data"])
        .unwrap_or(&Value::Null)
}

#[test]
fn local_snapshot_without_gpu_or_cluster() {
    let root = host_root();
    let home = tempfile::tempdir().unwrap();
    let out = aicr_offline(home.path())
        .args(["snapshot", "--local", "--root"])
        .arg(root.path())
        .assert()
        .success();
    let doc = yaml(&out.get_output().stdout);
    assert_eq!(doc["kind"], "Snapshot");
    assert_eq!(doc["metadata"]["source-node"], "test-node");
    let types: Vec<&str> = doc["measurements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["K8s", "SystemD", "OS", "GPU", "NodeTopology"]);
    let os = measurement(&doc, "OS");
    assert_eq!(subtype(os, "release")["VERSION_ID"], "24.04");
    assert_eq!(subtype(os, "grub")["hugepagesz"], "1G");
    assert!(subtype(os, "grub").get("root").is_none());
    assert_eq!(subtype(os, "kmod")["nvidia_uvm"], true);
    assert_eq!(
        subtype(os, "sysctl")["/proc/sys/kernel/osrelease"],
        "6.8.0-1028-aws"
    );
    assert!(
        subtype(os, "sysctl")
            .get("/proc/sys/net/ipv4/ip_forward")
            .is_none()
    );
    assert_eq!(subtype(measurement(&doc, "GPU"), "smi")["gpu-count"], 0);
    assert_eq!(subtype(measurement(&doc, "K8s"), "server"), &json!({}));
    assert_eq!(
        subtype(measurement(&doc, "NodeTopology"), "summary")["node-count"],
        0
    );

    // The snapshot feeds recipe generation.
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("snap.yaml");
    fs::write(&snap, &out.get_output().stdout).unwrap();
    aicr_offline(home.path())
        .args(["query", "--selector", "criteria.os", "--snapshot"])
        .arg(&snap)
        .assert()
        .success()
        .stdout("ubuntu\n");
}

#[test]
fn agent_mode_env_selects_local_collection() {
    let root = host_root();
    let home = tempfile::tempdir().unwrap();
    aicr_offline(home.path())
        .env("AICR_AGENT_MODE", "true")
        .args(["snapshot", "--format", "json", "--root"])
        .arg(root.path())
        .assert()
        .success()
        .stdout(predicate::str::starts_with("{"));
}

#[test]
fn formats_files_and_templates() {
    let root = host_root();
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out_json = dir.path().join("s.json");
    aicr_offline(home.path())
        .args(["snapshot", "--local", "-t", "json", "-o"])
        .arg(&out_json)
        .arg("--root")
        .arg(root.path())
        .assert()
        .success()
        .stdout("");
    let doc: Value = serde_json::from_slice(&fs::read(&out_json).unwrap()).unwrap();
    assert_eq!(doc["apiVersion"], "aicr.nvidia.com/v1alpha1");

    aicr_offline(home.path())
        .args(["snapshot", "--local", "-t", "table", "--root"])
        .arg(root.path())
        .assert()
        .success()
        .stdout(predicate::str::contains("Header.Kind"))
        .stdout(predicate::str::contains(".Data.VERSION_ID.V"));

    let template = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/templates/snapshot-report.md.tera");
    let out = aicr_offline(home.path())
        .args(["snapshot", "--local", "--template"])
        .arg(&template)
        .arg("--root")
        .arg(root.path())
        .assert()
        .success();
    let report = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(report.contains("# Cluster report: test-node"), "{report}");
    assert!(report.contains("Ubuntu 24.04 LTS"), "{report}");
    assert!(report.contains("Kernel 6.8.0-1028-aws"), "{report}");
    assert!(report.contains("no GPU detected"), "{report}");
    assert!(report.contains("nvidia nvidia_uvm"), "{report}");
}

/// A report written the way upstream's users write Go templates.
const USER_GO_TEMPLATE: &str = r#"{{- /* A user's report, written for upstream aicr */ -}}
{{- $wanted := list "GPU" "OS" -}}
{{- $titles := dict "GPU" "Accelerators" "OS" "Operating system" -}}
{{- $kernel := "" -}}
# {{ .Kind }} of {{ index .Metadata "source-node" | upper }} ({{ .APIVersion }})
{{- range .Measurements }}
{{- if has .Type.String $wanted }}
## {{ index $titles .Type.String | default (printf "%s measurements" .Type) }}
{{- range .Subtypes }}
  {{- if eq .Name "smi" }}
- gpus: {{ index .Data "gpu-count" }}, model: {{ index .Data "gpu.model" | default "none" }}, any: {{ gt (index .Data "gpu-count").Any -1 }}
  {{- else if eq .Name "release" }}
- os: {{ with index .Data "PRETTY_NAME" }}{{ replace " " "_" .String }}{{ else }}unknown{{ end }}
  {{- else if eq .Name "sysctl" }}
    {{- $kernel = (index .Data "/proc/sys/kernel/osrelease").String }}
- kernel: {{ trimSuffix "-aws" $kernel }}, printk: {{ join "/" (splitList "	" (index .Data "/proc/sys/kernel/printk").String) }}
  {{- else if eq .Name "kmod" }}
- modules:{{ range $name, $loaded := .Data }} {{ $name }}={{ $loaded }}{{ end }}
  {{- end }}
{{- end }}
{{- else }}
- skipped {{ .Type }} ({{ len .Subtypes }} subtypes)
{{- end }}
{{- end }}
summary: {{ toJson (dict "node" (index .Metadata "source-node") "kernel" $kernel) }}
month: {{ date "2006-01" 1750000000 }}
year: {{ now | date "2006" }}
"#;

#[test]
fn go_templates_render_a_local_snapshot() {
    let root = host_root();
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("report.md.tmpl");
    fs::write(&template, USER_GO_TEMPLATE).unwrap();
    let out = aicr_offline(home.path())
        .args(["snapshot", "--local", "--template"])
        .arg(&template)
        .arg("--root")
        .arg(root.path())
        .assert()
        .success();
    let report = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    let (body, year) = report.rsplit_once("year: ").unwrap();
    assert_eq!(
        body,
        "# Snapshot of TEST-NODE (aicr.nvidia.com/v1alpha1)
- skipped K8s (4 subtypes)
- skipped SystemD (0 subtypes)
## Operating system
- kernel: 6.8.0-1028, printk: 4/4/1/7
- modules: nvidia=true nvidia_uvm=true
- os: Ubuntu_24.04_LTS
## Accelerators
- gpus: 0, model: none, any: true
- skipped NodeTopology (3 subtypes)
summary: {\"kernel\":\"6.8.0-1028-aws\",\"node\":\"test-node\"}
month: 2025-06
"
    );
    let year: i32 = year.trim().parse().unwrap();
    assert!((2026..2100).contains(&year), "{report}");
}

#[test]
fn the_example_go_template_renders_a_local_snapshot() {
    let root = host_root();
    let home = tempfile::tempdir().unwrap();
    let template = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/templates/snapshot-template.md.tmpl");
    let out = aicr_offline(home.path())
        .args(["snapshot", "--local", "--template"])
        .arg(&template)
        .arg("--root")
        .arg(root.path())
        .assert()
        .success();
    let report = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    for line in [
        "# Cluster report: test-node\n",
        "(Snapshot aicr.nvidia.com/v1alpha1).\n",
        "## Kubernetes\n\n- no cluster data (no Kubernetes API reachable)\n",
        "## GPU\n\n- No GPU detected\n",
        "- Kernel parameters: `BOOT_IMAGE=/vmlinuz-6.8.0` `hugepagesz=1G` `quiet` `ro`\n",
        "- Kernel 6.8.0-1028-aws\n",
        "- NVIDIA kernel modules: nvidia nvidia_uvm\n",
        "- Ubuntu 24.04 LTS\n",
        "## Services\n\n- systemd not reachable\n",
        "- 0 node(s), 0 taint entr(ies), 0 label entr(ies)\n",
    ] {
        assert!(report.contains(line), "missing {line:?} in:\n{report}");
    }
    assert!(!report.contains("<no value>"), "{report}");
}

#[test]
fn the_example_go_template_renders_an_upstream_snapshot() {
    // The agent Job hands back a snapshot upstream wrote: readings come from
    // YAML (gpu-count an int), taint keys include disambiguated ones.
    let upstream = fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/upstream-snapshot.yaml"),
    )
    .unwrap();
    let api = FakeApiServer::start_blocking();
    api.agent_jobs_write(upstream);
    let template = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/templates/snapshot-template.md.tmpl");
    let out = aicr_cluster(&api)
        .args(["snapshot", "--template"])
        .arg(&template)
        .assert()
        .success();
    let report = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    for line in [
        "# Cluster report: gpu-1\n\nCaptured 2026-11-28T01:12:40Z by aicr dev (Snapshot aicr.nvidia.com/v1alpha1).\n",
        "- Server v1.32.9-eks-113cf36 (linux/amd64)\n",
        "- 2 container image(s) running\n",
        "- GPU Operator driver 570.133.20\n",
        "- Node gpu-1: kubelet v1.32.9-eks-113cf36, runtime containerd://1.7.27, provider eks\n",
        "- 8 x NVIDIA H100 80GB HBM3 (Hopper)\n",
        "- Driver 570.86.15, CUDA 12.8, MIG -\n",
        "- Kernel parameters: `console=ttyS0` `nomodule` `panic=1`\n",
        "- 3 node(s), 3 taint entr(ies), 4 label entr(ies)\n",
        "| taint | effect | value | nodes |\n|---|---|---|---|\n\
         | dedicated | NoExecute | gpu | gpu-2 |\n\
         | dedicated | NoSchedule | gpu | gpu-1 |\n\
         | nvidia.com/gpu | NoSchedule | present | gpu-1,gpu-2 |\n",
    ] {
        assert!(report.contains(line), "missing {line:?} in:\n{report}");
    }
}

#[test]
fn bad_flags_and_outputs_fail_cleanly() {
    let root = host_root();
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "bad.tera", "{% for x in %}");
    write(dir.path(), "boom.tera", "{{ Nope.missing }}");
    write(
        dir.path(),
        "bad.tmpl",
        "# {{ .Kind }}\n{{ range .Measurements }}",
    );
    write(dir.path(), "boom.md", "{{ index .Measurements 99 }}");
    let target = dir.path().join("out.md");
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (
            vec![
                "--template".into(),
                dir.path().join("bad.tmpl").display().to_string(),
                "-o".into(),
                target.display().to_string(),
            ],
            2,
            "as a Go template (any name not ending in .tera): template: bad.tmpl:2: unexpected EOF",
        ),
        (
            vec![
                "--template".into(),
                dir.path().join("boom.md").display().to_string(),
                "-o".into(),
                target.display().to_string(),
            ],
            8,
            "failed to execute template: template: boom.md:1: error calling index: index out of range: 99",
        ),
        (
            vec![
                "--template".into(),
                dir.path().join("bad.tera").display().to_string(),
                "-o".into(),
                target.display().to_string(),
            ],
            2,
            "as a Tera template (.tera)",
        ),
        (
            vec![
                "--template".into(),
                dir.path().join("boom.tera").display().to_string(),
                "-o".into(),
                target.display().to_string(),
            ],
            8,
            "failed to execute template",
        ),
        (
            vec!["--template".into(), "/nonexistent.tera".into()],
            3,
            "template file not found",
        ),
        (
            vec!["--template".into(), dir.path().display().to_string()],
            2,
            "directory",
        ),
        (
            vec![
                "--template".into(),
                dir.path().join("bad.tera").display().to_string(),
                "--format".into(),
                "json".into(),
            ],
            2,
            "--template requires YAML format",
        ),
        (
            vec![
                "--require-gpu".into(),
                "--runtime-class".into(),
                "nvidia".into(),
            ],
            2,
            "mutually exclusive",
        ),
        (
            vec!["--format".into(), "xml".into()],
            2,
            "unknown output format",
        ),
        (
            vec!["-o".into(), "cm://bad".into()],
            2,
            "invalid ConfigMap URI",
        ),
        (
            vec![
                "-o".into(),
                dir.path().join("missing/s.yaml").display().to_string(),
            ],
            8,
            "failed to write snapshot",
        ),
        (
            vec![
                "--require-gpu".into(),
                "-o".into(),
                target.display().to_string(),
            ],
            3,
            "--require-gpu was set but no GPU was detected",
        ),
        (
            vec![
                "--namespace".into(),
                "a".into(),
                "--namespace".into(),
                "b".into(),
            ],
            2,
            "can only be specified once",
        ),
    ];
    for (args, code, needle) in cases {
        let out = aicr_offline(home.path())
            .args(["snapshot", "--local", "--root"])
            .arg(root.path())
            .args(&args)
            .assert()
            .code(code);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!target.exists(), "{args:?}: nothing written");
        assert!(!dir.path().join("missing").exists());
    }
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        4,
        "no temp files left behind"
    );
}

#[test]
fn local_snapshot_with_a_cluster() {
    let api = FakeApiServer::start_blocking();
    api.set_server_version("v1.33.5-eks-3025e55");
    api.insert(
        fixtures::node("gpu-1")
            .label("nvidia.com/gpu.present", "true")
            .taint("nvidia.com/gpu", "present", "NoSchedule")
            .provider_id("aws:///us-east-1a/i-1")
            .node_info("kubeletVersion", "v1.33.5")
            .build(),
    );
    api.insert(
        fixtures::node("gpu-2")
            .label("nvidia.com/gpu.present", "true")
            .taint("nvidia.com/gpu", "present", "NoSchedule")
            .build(),
    );
    api.insert(fixtures::cluster_policy_crd());
    api.insert(fixtures::cluster_policy(
        json!({"driver": {"version": "580.105.08", "enabled": true}}),
        "ready",
    ));
    api.insert(
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "nvcr.io/nvidia/gpu-operator:v25.10.1"}]}}),
    );
    let root = host_root();
    let home = tempfile::tempdir().unwrap();
    let out = aicr_offline(home.path())
        .env("KUBECONFIG", api.kubeconfig_path())
        .env("NODE_NAME", "gpu-1")
        .args([
            "snapshot",
            "--local",
            "--max-nodes-per-entry",
            "1",
            "--root",
        ])
        .arg(root.path())
        .assert()
        .success();
    let doc = yaml(&out.get_output().stdout);
    let k8s = measurement(&doc, "K8s");
    assert_eq!(subtype(k8s, "server")["version"], "v1.33.5-eks-3025e55");
    assert_eq!(subtype(k8s, "image")["gpu-operator"], "v25.10.1");
    assert_eq!(subtype(k8s, "policy")["driver.version"], "580.105.08");
    assert_eq!(subtype(k8s, "policy")["driver.enabled"], "true");
    assert_eq!(subtype(k8s, "node")["provider"], "eks");
    let topo = measurement(&doc, "NodeTopology");
    assert_eq!(subtype(topo, "summary")["node-count"], 2);
    assert_eq!(
        subtype(topo, "taint")["nvidia.com/gpu"],
        "NoSchedule|present|gpu-1 (+1 more)"
    );
}

const AGENT_SNAPSHOT: &str = "kind: Snapshot\napiVersion: aicr.nvidia.com/v1alpha1\nmetadata:\n    source-node: gpu-1\nmeasurements:\n    - type: OS\n      subtypes:\n        - subtype: release\n          data:\n            ID: ubuntu\n";

fn aicr_cluster(api: &FakeApiServer) -> Command {
    let mut c = aicr_test_support::tools::aicr();
    c.env("NO_COLOR", "1")
        .env("KUBECONFIG", api.kubeconfig_path());
    c
}

/// An agent that takes longer than `--kube-timeout` (the client's read
/// timeout), with the Job unchanged meanwhile, is still waited for: the
/// Job watch is renewed before the timeout instead of failing as a dead
/// connection.
#[test]
fn a_job_quieter_than_the_request_timeout_is_still_waited_for() {
    let api = FakeApiServer::start_blocking();
    api.agent_jobs_write_after(AGENT_SNAPSHOT, std::time::Duration::from_secs(5));
    let out = aicr_cluster(&api)
        .env("AICR_KUBE_TIMEOUT", "2s")
        .args(["snapshot", "--timeout", "60s"])
        .assert()
        .success();
    assert_eq!(
        String::from_utf8_lossy(&out.get_output().stdout),
        format!("{AGENT_SNAPSHOT}\n")
    );
}

#[test]
fn agent_job_deploys_waits_fetches_and_cleans_up() {
    let api = FakeApiServer::start_blocking();
    api.agent_jobs_write(AGENT_SNAPSHOT);
    // A service account that existed before the run is not ours to delete.
    api.insert(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "aicr", "namespace": "default"}}));
    let out = aicr_cluster(&api)
        .args([
            "snapshot",
            "--node-selector",
            "nodeGroup=gpu",
            "--image-pull-secret",
            "regcred",
            "--image",
            "example.com/aicr:test",
        ])
        .assert()
        .success();
    let stdout = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert_eq!(
        stdout,
        format!("{AGENT_SNAPSHOT}\n"),
        "agent YAML passes through unchanged"
    );

    let created: Vec<String> = api
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.path)
        .collect();
    assert!(
        created
            .iter()
            .any(|p| p.ends_with("/namespaces/default/jobs")),
        "{created:?}"
    );
    assert!(
        created.iter().any(|p| p.ends_with("/clusterroles")),
        "{created:?}"
    );
    let job_body = api
        .requests()
        .into_iter()
        .find(|r| r.method == "DELETE" && r.path.ends_with("/jobs/aicr"))
        .expect("Job cleaned up");
    assert!(job_body.path.contains("/namespaces/default/"));
    assert!(api.get("jobs", "default", "aicr").is_none());
    assert!(api.get("roles", "default", "aicr").is_none());
    assert!(
        api.get("clusterrolebindings", "", "aicr-node-reader")
            .is_none()
    );
    assert!(
        api.get("serviceaccounts", "default", "aicr").is_some(),
        "pre-existing SA kept"
    );
    assert!(
        api.get("configmaps", "default", "aicr-snapshot").is_some(),
        "result ConfigMap kept"
    );
}

#[test]
fn agent_job_spec_follows_the_flags() {
    let api = FakeApiServer::start_blocking();
    api.agent_jobs_write(AGENT_SNAPSHOT);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.json");
    aicr_cluster(&api)
        .args([
            "snapshot",
            "--no-cleanup",
            "--toleration",
            "dedicated=gpu:NoSchedule",
            "--privileged=false",
            "--max-nodes-per-entry",
            "5",
            "-n",
            "aicr-ns",
            "--format",
            "json",
            "-o",
        ])
        .arg(&out)
        .assert()
        .success();
    let doc: Value = serde_json::from_slice(&fs::read(&out).unwrap()).unwrap();
    assert_eq!(
        doc["measurements"][0]["type"], "OS",
        "--format json re-serializes the agent's YAML"
    );
    let job = api
        .get("jobs", "aicr-ns", "aicr")
        .expect("--no-cleanup keeps the Job");
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(
        pod["tolerations"],
        json!([{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}])
    );
    assert_eq!(pod["securityContext"]["runAsUser"], 65534);
    assert!(pod.get("hostPID").is_none());
    let c = &pod["containers"][0];
    assert_eq!(
        c["args"],
        json!(["snapshot", "-o", "cm://aicr-ns/aicr-snapshot"])
    );
    let env: Vec<&str> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(env.contains(&"AICR_MAX_NODES_PER_ENTRY"));
    assert!(api.get("roles", "aicr-ns", "aicr").is_some());
    let ns = api.get("namespaces", "", "aicr-ns").unwrap();
    assert_eq!(
        ns["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "aicr"
    );

    // Default: privileged, tolerate everything.
    aicr_cluster(&api)
        .args(["snapshot", "--no-cleanup", "--job-name", "second"])
        .assert()
        .success();
    let job = api.get("jobs", "default", "second").unwrap();
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["tolerations"], json!([{"operator": "Exists"}]));
    assert_eq!(pod["hostPID"], true);
    assert_eq!(pod["containers"][0]["securityContext"]["privileged"], true);
}

#[test]
fn agent_job_failures() {
    // RBAC denied in the pre-flight: exit 4, nothing deployed.
    let api = FakeApiServer::start_blocking();
    api.deny("clusterroles", "create");
    aicr_cluster(&api)
        .args(["snapshot"])
        .assert()
        .code(4)
        .stderr(predicate::str::contains(
            "insufficient permissions to deploy agent",
        ))
        .stderr(predicate::str::contains("create clusterroles (cluster)"));
    assert!(
        api.requests()
            .iter()
            .all(|r| !(r.method == "POST" && r.path.ends_with("/jobs")))
    );

    // The Job never finishes: timeout, exit 5, cleaned up.
    let api = FakeApiServer::start_blocking();
    aicr_cluster(&api)
        .args(["snapshot", "--timeout", "1s"])
        .assert()
        .code(5)
        .stderr(predicate::str::contains("job completion timeout"));
    assert!(api.get("jobs", "default", "aicr").is_none());

    // The Job fails: exit 8 with the agent's log.
    let api = FakeApiServer::start_blocking();
    let seen = Arc::new(AtomicUsize::new(0));
    let s2 = seen.clone();
    api.on_create("jobs", move |cluster, job| {
        s2.fetch_add(1, Ordering::SeqCst);
        let mut pod = fixtures::job_pod(job, 1);
        pod["metadata"]["labels"]["app.kubernetes.io/name"] = json!("aicr");
        cluster.insert(pod);
        cluster.set_pod_log("default", "aicr-pod", "collector exploded");
        cluster.update_status(
            "jobs",
            "default",
            "aicr",
            fixtures::job_failed_status("BackoffLimitExceeded"),
        );
    });
    aicr_cluster(&api)
        .args(["snapshot"])
        .assert()
        .code(8)
        .stderr(predicate::str::contains("BackoffLimitExceeded"))
        .stderr(predicate::str::contains(
            "--- agent logs ---\ncollector exploded",
        ));
    assert_eq!(seen.load(Ordering::SeqCst), 1);

    // No ConfigMap written by the agent: exit 8.
    let api = FakeApiServer::start_blocking();
    api.on_create("jobs", |cluster, job| {
        let name = job["metadata"]["name"].as_str().unwrap().to_string();
        cluster.update_status("jobs", "default", &name, fixtures::job_complete_status());
    });
    aicr_cluster(&api)
        .args(["snapshot"])
        .assert()
        .code(8)
        .stderr(predicate::str::contains("failed to retrieve snapshot"));

    // Unreachable cluster: exit 6.
    let kc = aicr_test_support::unreachable_kubeconfig();
    let mut c = aicr_test_support::tools::aicr();
    c.env("NO_COLOR", "1").env("KUBECONFIG", kc.path());
    c.args(["snapshot"])
        .assert()
        .code(6)
        .stderr(predicate::str::contains(
            "cannot reach Kubernetes API server",
        ));

    // RuntimeClass missing: exit 3.
    let api = FakeApiServer::start_blocking();
    aicr_cluster(&api)
        .args(["snapshot", "--runtime-class", "nvidia"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains(
            "RuntimeClass \"nvidia\" not found",
        ));
}
