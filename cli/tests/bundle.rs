//! End-to-end behaviour of `aicr bundle`, `aicr verify` and `aicr skill`
//! through the real binary: golden bundle trees for the three deployers,
//! the generated scripts (bash -n, shellcheck, and deploy.sh run against
//! stub helm/kubectl), YAML and Kubernetes object validity, checksums, the
//! value pipeline, config precedence and every bad input with its exit code.

use std::fs;
use std::path::{Path, PathBuf};

use aicr_test_support::FakeApiServer;
use aicr_test_support::fixtures::{self, EKS_TRAINING};
use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

fn aicr() -> Command {
    let mut c = aicr_test_support::tools::aicr();
    c.env("NO_COLOR", "1");
    c
}

fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("not YAML: {e}\n{text}"))
}

const EKS_DYNAMO: [&str; 10] = [
    "--service",
    "eks",
    "--accelerator",
    "h100",
    "--intent",
    "inference",
    "--os",
    "ubuntu",
    "--platform",
    "dynamo",
];

/// Write a recipe for `criteria` into `dir` and return its path.
fn recipe(dir: &Path, criteria: &[&str]) -> PathBuf {
    let path = dir.join("recipe.yaml");
    aicr()
        .arg("recipe")
        .args(criteria)
        .arg("-o")
        .arg(&path)
        .assert()
        .success();
    path
}

/// Run `aicr bundle -r <recipe> -o <out> <extra>` and return stdout.
fn bundle(recipe: &Path, out: &Path, extra: &[&str]) -> String {
    let a = aicr()
        .arg("bundle")
        .arg("-r")
        .arg(recipe)
        .arg("-o")
        .arg(out)
        .args(extra)
        .assert()
        .success();
    String::from_utf8(a.get_output().stdout.clone()).unwrap()
}

/// The EKS training recipe and its default bundle under `dir`: (recipe,
/// bundle directory).
fn training_bundle(dir: &Path) -> (PathBuf, PathBuf) {
    let r = recipe(dir, &EKS_TRAINING);
    let b = dir.join("bundle");
    bundle(&r, &b, &[]);
    (r, b)
}

/// Whether every line of the bundle's `checksums.txt` holds (`sha256sum -c`).
fn checksums_hold(b: &Path) -> bool {
    std::process::Command::new("sha256sum")
        .args(["-c", "--quiet", "checksums.txt"])
        .current_dir(b)
        .status()
        .unwrap()
        .success()
}

/// Every file under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, d: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The tree with modes, then the named files in full: what a reviewer
/// needs to see of a bundle.
fn golden(dir: &Path, stdout: &str, show: &[&str]) -> String {
    let mut s = String::from("== stdout ==\n");
    s.push_str(&stdout.replace(&dir.display().to_string(), "<OUT>"));
    s.push_str("== tree ==\n");
    for f in files(dir) {
        s.push_str(&format!("{:o} {f}\n", mode(&dir.join(&f))));
    }
    for f in show {
        s.push_str(&format!("== {f} ==\n{}", read(&dir.join(f))));
    }
    s
}

#[test]
fn helm_bundle_golden_tree() {
    let t = tempfile::tempdir().unwrap();
    let r = recipe(t.path(), &EKS_TRAINING);
    let out = t.path().join("bundle");
    let stdout = bundle(&r, &out, &[]);
    insta::assert_snapshot!(
        "helm_bundle",
        golden(
            &out,
            &stdout,
            &[
                "README.md",
                "004-kube-prometheus-stack/upstream.env",
                "004-kube-prometheus-stack/install.sh",
                "007-nodewright-customizations/Chart.yaml",
                "007-nodewright-customizations/install.sh",
                "007-nodewright-customizations/templates/tuning.yaml",
                "008-gpu-operator/values.yaml",
                "008-gpu-operator/cluster-values.yaml",
                "009-gpu-operator-post/Chart.yaml",
                "010-kai-scheduler/upstream.env",
            ]
        )
    );
    insta::assert_snapshot!("helm_deploy_sh", read(&out.join("deploy.sh")));
    insta::assert_snapshot!("helm_undeploy_sh", read(&out.join("undeploy.sh")));
}

#[test]
fn argocd_bundle_golden_tree() {
    let t = tempfile::tempdir().unwrap();
    let r = recipe(t.path(), &EKS_TRAINING);
    let out = t.path().join("bundle");
    let stdout = bundle(
        &r,
        &out,
        &[
            "--deployer",
            "ArgoCD ",
            "--repo",
            "https://github.com/example/gitops.git",
        ],
    );
    insta::assert_snapshot!(
        "argocd_bundle",
        golden(
            &out,
            &stdout,
            &[
                "README.md",
                "app-of-apps.yaml",
                "001-aws-ebs-csi-driver/application.yaml",
                "009-gpu-operator-post/application.yaml",
                "010-kai-scheduler/application.yaml",
            ]
        )
    );
    let app = yaml(&read(&out.join("009-gpu-operator-post/application.yaml")));
    assert_eq!(
        app["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"],
        "8"
    );
    assert_eq!(app["spec"]["source"]["path"], "009-gpu-operator-post");
}

#[test]
fn argocd_helm_bundle_golden_tree() {
    let t = tempfile::tempdir().unwrap();
    let r = recipe(t.path(), &EKS_TRAINING);
    let out = t.path().join("bundle");
    let a = aicr()
        .arg("bundle")
        .arg("-r")
        .arg(&r)
        .arg("-o")
        .arg(&out)
        .args([
            "--deployer",
            "argocd-helm",
            "--dynamic",
            "gpuoperator:driver.version",
            "--repo",
            "https://ignored.example",
        ])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "--repo is ignored with --deployer argocd-helm",
        ));
    let stdout = String::from_utf8(a.get_output().stdout.clone()).unwrap();
    insta::assert_snapshot!(
        "argocd_helm_bundle",
        golden(
            &out,
            &stdout,
            &[
                "Chart.yaml",
                "values.yaml",
                "README.md",
                "templates/aicr-stack.yaml",
                "templates/gpu-operator.yaml",
                "templates/gpu-operator-post.yaml",
            ]
        )
    );
    let root = yaml(&read(&out.join("values.yaml")));
    assert_eq!(root["gpuoperator"]["driver"]["version"], "580.105.08");
    assert_eq!(root["repoURL"], "");
    let stat = yaml(&read(&out.join("static/gpu-operator.yaml")));
    assert!(stat["driver"].get("version").is_none());
}

fn all_bundles(t: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for (i, criteria) in [&EKS_TRAINING[..], &EKS_DYNAMO[..]].iter().enumerate() {
        let d = t.join(format!("r{i}"));
        fs::create_dir_all(&d).unwrap();
        let r = recipe(&d, criteria);
        for deployer in ["helm", "argocd", "argocd-helm"] {
            let o = d.join(deployer);
            bundle(&r, &o, &["--deployer", deployer]);
            out.push(o);
        }
    }
    out
}

#[test]
fn generated_scripts_pass_bash_n_and_shellcheck() {
    let t = tempfile::tempdir().unwrap();
    let mut scripts = Vec::new();
    for b in all_bundles(t.path()) {
        scripts.extend(
            files(&b)
                .into_iter()
                .filter(|f| f.ends_with(".sh"))
                .map(|f| b.join(f)),
        );
    }
    assert!(scripts.len() > 30, "{scripts:?}");
    for s in &scripts {
        let out = std::process::Command::new("bash")
            .arg("-n")
            .arg(s)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "bash -n {}: {}",
            s.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // bash -n has judged them; shellcheck is a judge like any other tool:
    // skipped loudly where absent, required under CI.
    let Some(shellcheck) = aicr_test_support::tools::system_tool("shellcheck") else {
        return;
    };
    let sc = std::process::Command::new(shellcheck)
        .arg("--severity=style")
        .args(&scripts)
        .output()
        .unwrap();
    assert!(
        sc.status.success(),
        "shellcheck:\n{}",
        String::from_utf8_lossy(&sc.stdout)
    );
}

/// Check one Kubernetes object: typed kinds must deserialize into
/// k8s-openapi types, custom resources need the generic required fields.
fn check_object(doc: &Value, what: &str) {
    use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let kind = doc["kind"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no kind"));
    assert!(doc["apiVersion"].is_string(), "{what}: no apiVersion");
    assert!(
        doc["metadata"]["name"].is_string(),
        "{what}: no metadata.name"
    );
    let typed =
        |r: Result<(), serde_json::Error>| r.unwrap_or_else(|e| panic!("{what}: {kind}: {e}"));
    match kind {
        "ConfigMap" => typed(serde_json::from_value::<ConfigMap>(doc.clone()).map(drop)),
        "DaemonSet" => typed(serde_json::from_value::<DaemonSet>(doc.clone()).map(drop)),
        "Deployment" => typed(serde_json::from_value::<Deployment>(doc.clone()).map(drop)),
        "Service" => typed(serde_json::from_value::<Service>(doc.clone()).map(drop)),
        "Namespace" => typed(serde_json::from_value::<Namespace>(doc.clone()).map(drop)),
        "CustomResourceDefinition" => {
            typed(serde_json::from_value::<CustomResourceDefinition>(doc.clone()).map(drop))
        }
        "Application" => {
            let spec = &doc["spec"];
            assert_eq!(doc["apiVersion"], "argoproj.io/v1alpha1", "{what}");
            assert!(spec["project"].is_string(), "{what}: spec.project");
            assert!(
                spec["destination"]["server"].is_string(),
                "{what}: destination.server"
            );
            assert!(
                spec["destination"]["namespace"].is_string(),
                "{what}: destination.namespace"
            );
            let sources: Vec<&Value> = match (&spec["source"], &spec["sources"]) {
                (Value::Object(_), Value::Null) => vec![&spec["source"]],
                (Value::Null, Value::Array(a)) if !a.is_empty() => a.iter().collect(),
                _ => panic!("{what}: exactly one of spec.source / spec.sources"),
            };
            for s in sources {
                assert!(s["repoURL"].is_string(), "{what}: repoURL");
            }
        }
        _ => {}
    }
}

/// argocd-helm templates are Helm templates; with every action replaced by
/// a placeholder they must still be YAML Applications.
fn strip_actions(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let end = rest[i..].find("}}").unwrap() + i + 2;
        out.push('x');
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[test]
fn generated_yaml_parses_and_objects_deserialize() {
    let t = tempfile::tempdir().unwrap();
    let mut objects = 0;
    for b in all_bundles(t.path()) {
        let chart_bundle = b.join("templates/aicr-stack.yaml").exists();
        for f in files(&b).iter().filter(|f| f.ends_with(".yaml")) {
            let text = read(&b.join(f));
            let text = if chart_bundle && f.starts_with("templates/") {
                strip_actions(&text)
            } else {
                text
            };
            let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
                .unwrap_or_else(|e| panic!("{}/{f}: {e}", b.display()));
            let k8s = f.contains("/templates/")
                || f.ends_with("application.yaml")
                || f == "app-of-apps.yaml"
                || (chart_bundle && f.starts_with("templates/"));
            for d in docs.iter().filter(|d| !d.is_null()) {
                if k8s {
                    check_object(d, &format!("{}/{f}", b.display()));
                    objects += 1;
                } else {
                    assert!(d.is_object(), "{f}: a map");
                }
            }
        }
    }
    assert!(objects > 80, "{objects}");
}

/// Stub `helm` and `kubectl` that log their arguments; `helm` fails the
/// number of times written in `fail-<release>`.
fn stubs(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).unwrap();
    let log = dir.join("calls.log");
    let helm = format!(
        r#"#!/usr/bin/env bash
echo "helm $*" >> '{log}'
if [[ "$1" == upgrade ]]; then
  f='{dir}/fail-'"$3"
  if [[ -f "$f" ]]; then
    n="$(cat "$f")"
    if (( n > 0 )); then echo $((n - 1)) > "$f"; echo "stub failure" >&2; exit 1; fi
  fi
fi
exit 0
"#,
        log = log.display(),
        dir = dir.display()
    );
    let kubectl = format!(
        r#"#!/usr/bin/env bash
echo "kubectl $*" >> '{}'
if [[ "$*" == *"get daemonsets"* ]]; then
  echo daemonset.apps/nvidia-dra-driver-gpu-kubelet-plugin
fi
exit 0
"#,
        log.display()
    );
    for (name, body) in [("helm", helm), ("kubectl", kubectl)] {
        let p = bin.join(name);
        fs::write(&p, body).unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

fn deploy(b: &Path, stub_dir: &Path, args: &[&str]) -> std::process::Output {
    let bin = stubs(stub_dir);
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    std::process::Command::new("bash")
        .arg(b.join("deploy.sh"))
        .args(args)
        .env("PATH", path)
        .env("AICR_RETRY_DELAY", "0")
        .output()
        .unwrap()
}

fn helm_installs(stub_dir: &Path) -> Vec<String> {
    read(&stub_dir.join("calls.log"))
        .lines()
        .filter(|l| l.starts_with("helm upgrade --install"))
        .map(|l| l.split_whitespace().nth(3).unwrap().to_string())
        .collect()
}

#[test]
fn deploy_script_order_retries_best_effort_and_flag_rejection() {
    let t = tempfile::tempdir().unwrap();
    let (_, b) = training_bundle(t.path());
    let order: Vec<String> = files(&b)
        .iter()
        .filter(|f| f.ends_with("/install.sh"))
        .map(|f| f.split('/').next().unwrap()[4..].to_string())
        .collect();

    // Plain run: every folder once, in folder order, with --wait except kai.
    let s1 = t.path().join("s1");
    let out = deploy(&b, &s1, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(helm_installs(&s1), order);
    assert!(stdout.contains("Pre-flight checks passed."), "{stdout}");
    assert!(stdout.contains("Deployment complete."), "{stdout}");
    let log = read(&s1.join("calls.log"));
    assert!(log.contains(
        "helm upgrade --install gpu-operator gpu-operator --repo https://helm.ngc.nvidia.com/nvidia --version v25.10.1"
    ));
    assert!(log.contains("--namespace gpu-operator --create-namespace -f values.yaml -f cluster-values.yaml --wait --timeout 10m"), "{log}");
    assert!(log.contains("helm upgrade --install kai-scheduler oci://ghcr.io/nvidia/kai-scheduler/kai-scheduler --version v0.13.0 --namespace kai-scheduler --create-namespace -f values.yaml -f cluster-values.yaml --timeout 20m"), "{log}");
    assert!(
        log.contains("kubectl rollout restart"),
        "DRA restart: {log}"
    );
    assert!(
        log.contains("kubectl taint nodes --all skyhook.nvidia.com/runtime-required-"),
        "{log}"
    );

    // Two failures of cert-manager are retried; the order holds.
    let s2 = t.path().join("s2");
    fs::create_dir_all(&s2).unwrap();
    fs::write(s2.join("fail-cert-manager"), "2").unwrap();
    let out = deploy(&b, &s2, &["--no-wait"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("RETRY: cert-manager install failed (attempt 1/6), retrying in 0s..."),
        "{stdout}"
    );
    assert!(
        stdout.contains("RETRY: cert-manager install failed (attempt 2/6)"),
        "{stdout}"
    );
    let installs = helm_installs(&s2);
    assert_eq!(installs.iter().filter(|n| *n == "cert-manager").count(), 3);
    assert!(!read(&s2.join("calls.log")).contains("--wait"));

    // Retries exhausted without --best-effort: stop at the failing one.
    let s3 = t.path().join("s3");
    fs::create_dir_all(&s3).unwrap();
    fs::write(s3.join("fail-cert-manager"), "9").unwrap();
    let out = deploy(&b, &s3, &["--retries", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("ERROR: cert-manager install failed after 2 attempts")
    );
    let installs = helm_installs(&s3);
    assert_eq!(installs.last().unwrap(), "cert-manager");
    assert!(!installs.contains(&"gpu-operator".to_string()));

    // With --best-effort the rest still installs and the failure is listed.
    let s4 = t.path().join("s4");
    fs::create_dir_all(&s4).unwrap();
    fs::write(s4.join("fail-cert-manager"), "9").unwrap();
    let out = deploy(&b, &s4, &["--best-effort", "--retries", "0"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("WARNING: cert-manager install failed, continuing (--best-effort)"));
    assert!(stdout.contains("WARNING: the following components failed: cert-manager"));
    assert!(stdout.contains("Deployment completed with non-fatal errors (--best-effort)."));
    assert_eq!(helm_installs(&s4).len(), order.len());

    // Unknown flags and bad --retries values are rejected before any work.
    for (args, msg) in [
        (&["--best-efort"][..], "Error: unknown option: --best-efort"),
        (&["--retries"][..], "Error: --retries requires a value"),
        (
            &["--retries", "-1"][..],
            "Error: --retries requires a non-negative integer",
        ),
    ] {
        let s = t.path().join("s5");
        let out = deploy(&b, &s, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(msg),
            "{args:?}"
        );
        assert!(!s.join("calls.log").exists(), "nothing ran for {args:?}");
    }
}

#[test]
fn undeploy_script_runs_in_reverse_against_stubs() {
    let t = tempfile::tempdir().unwrap();
    let (_, b) = training_bundle(t.path());
    let s = t.path().join("stubs");
    let bin = stubs(&s);
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let out = std::process::Command::new("bash")
        .arg(b.join("undeploy.sh"))
        .args(["--delete-pvcs", "--timeout", "30"])
        .env("PATH", &path)
        .env("AICR_NAMESPACE_WAIT", "0")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Undeployment complete."));
    let log = read(&s.join("calls.log"));
    let uninstalls: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("helm uninstall"))
        .map(|l| l.split_whitespace().nth(2).unwrap())
        .collect();
    assert_eq!(uninstalls.first(), Some(&"prometheus-adapter"));
    assert_eq!(uninstalls.last(), Some(&"aws-ebs-csi-driver"));
    assert!(
        log.contains(
            "helm uninstall gpu-operator -n gpu-operator --timeout 30s --ignore-not-found"
        )
    );
    assert!(log.contains("kubectl delete pvc --all -n monitoring"));
    assert!(
        !log.contains("kubectl delete pvc --all -n kube-system"),
        "protected namespace"
    );
    assert!(!log.contains("kubectl delete namespace kube-system"));
    assert!(log.contains("kubectl delete namespace kai-resource-reservation"));
    let out = std::process::Command::new("bash")
        .arg(b.join("undeploy.sh"))
        .arg("--bogus")
        .env("PATH", &path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Unknown option: --bogus"));
}

#[test]
fn checksums_match_sha256sum_and_tampering_drops_trust_to_unknown() {
    let t = tempfile::tempdir().unwrap();
    let r = recipe(t.path(), &EKS_TRAINING);
    let b = t.path().join("bundle");
    let stdout = bundle(&r, &b, &[]);
    let n = files(&b).len();
    assert!(
        stdout.contains(&format!("Files generated: {n}\n")),
        "{stdout}"
    );
    let sums = read(&b.join("checksums.txt"));
    assert_eq!(sums.lines().count(), n - 1, "every file but itself");
    assert!(sums.contains("  recipe.yaml\n"));
    let out = std::process::Command::new("sha256sum")
        .args(["-c", "--quiet", "checksums.txt"])
        .current_dir(&b)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    aicr()
        .arg("verify")
        .arg(&b)
        .assert()
        .success()
        .stdout(predicate::str::contains(format!("  ✓ Checksums verified ({} files)\n  Trust level: unverified\n\nBundle verification: PASSED", n - 1)));
    let out = aicr()
        .arg("verify")
        .arg(&b)
        .args(["--format", "json"])
        .assert()
        .success();
    let v: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(v["trustLevel"], "unverified");
    assert_eq!(v["checksumsPassed"], true);
    aicr()
        .arg("verify")
        .arg(&b)
        .args(["--min-trust-level", "attested"])
        .assert()
        .code(2)
        .stdout(predicate::str::contains("Bundle verification: FAILED"))
        .stderr(predicate::str::contains(
            "trust level \"unverified\" does not meet minimum \"attested\": no attestation present",
        ));

    fs::write(
        b.join("008-gpu-operator/values.yaml"),
        "driver: {version: evil}\n",
    )
    .unwrap();
    aicr()
        .arg("verify")
        .arg(&b)
        .assert()
        .code(4)
        .stdout(predicate::str::contains(
            "✗ Checksum verification failed\n  Trust level: unknown",
        ))
        .stderr(predicate::str::contains(
            "bundle verification failed: checksum mismatch: 008-gpu-operator/values.yaml",
        ));
    let out = aicr()
        .arg("verify")
        .arg(&b)
        .args(["--format", "json"])
        .assert()
        .code(4);
    let v: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(v["trustLevel"], "unknown");
    aicr()
        .arg("verify")
        .arg(&b)
        .args(["--min-trust-level", "unverified"])
        .assert()
        .code(2);
    aicr()
        .arg("verify")
        .arg(t.path().join("nope"))
        .assert()
        .code(3);
    aicr()
        .arg("verify")
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "bundle directory is required: aicr verify <bundle-dir>",
        ));
    aicr()
        .arg("verify")
        .arg(&b)
        .args(["--format", "xml"])
        .assert()
        .code(2);
    aicr()
        .arg("verify")
        .arg(&b)
        .args(["--min-trust-level", "gold"])
        .assert()
        .code(2);
}

#[test]
fn value_pipeline_follows_the_spec_example() {
    let t = tempfile::tempdir().unwrap();
    let r = recipe(t.path(), &EKS_TRAINING);
    let b = t.path().join("bundle");
    let stdout = bundle(
        &r,
        &b,
        &[
            "--set",
            "gpuoperator:driver.version=580.1",
            "--set",
            "gpuoperator:gds.enabled=true",
            "--set",
            "gpuoperator:foo.count=3",
            "--set",
            "gpuoperator:foo.ratio=0.5",
            "--set",
            "awsebscsidriver:enabled=false",
            "--set",
            "prometheus:prometheus.prometheusSpec.storageSpec.volumeClaimTemplate.spec.storageClassName=mine",
            "--storage-class",
            "gp3",
            "--accelerated-node-selector",
            "nodeGroup=gpu-worker",
            "--accelerated-node-toleration",
            "dedicated=worker-workload:NoSchedule",
            "--accelerated-node-toleration",
            "nvidia.com/gpu:NoExecute",
            "--system-node-selector",
            "nodeGroup=system-worker",
            "--system-node-toleration",
            "dedicated=system-workload:NoSchedule",
            "--nodes",
            "8",
            "--workload-gate",
            "skyhook.nvidia.com/runtime-required=true:NoSchedule",
            "--workload-selector",
            "workload-type=training",
        ],
    );
    assert!(
        !stdout.contains("Note:"),
        "both selectors set: no warnings\n{stdout}"
    );
    assert!(files(&b).iter().all(|f| !f.contains("aws-ebs-csi-driver")));
    let gpu = yaml(&read(&b.join("007-gpu-operator/values.yaml")));
    assert_eq!(gpu["driver"]["version"], 580.1);
    assert_eq!(gpu["gds"]["enabled"], true);
    assert_eq!(gpu["foo"]["count"], 3);
    assert_eq!(gpu["foo"]["ratio"], 0.5);
    assert!(gpu.get("enabled").is_none());
    assert_eq!(
        gpu["operator"]["nodeSelector"]["nodeGroup"],
        "system-worker"
    );
    assert_eq!(
        gpu["operator"]["tolerations"][0],
        serde_json::json!({"key": "dedicated", "operator": "Equal", "value": "system-workload", "effect": "NoSchedule"})
    );
    assert_eq!(gpu["daemonsets"]["nodeSelector"]["nodeGroup"], "gpu-worker");
    let acc = &gpu["daemonsets"]["tolerations"];
    assert_eq!(
        acc[1],
        serde_json::json!({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoExecute"})
    );
    assert_eq!(&gpu["node-feature-discovery"]["worker"]["tolerations"], acc);
    assert!(
        gpu["node-feature-discovery"]["worker"]
            .get("nodeSelector")
            .is_none()
    );
    let nw = yaml(&read(&b.join("005-nodewright-operator/values.yaml")));
    assert_eq!(nw["estimatedNodeCount"], 8);
    assert_eq!(
        nw["controllerManager"]["manager"]["env"]["runtimeRequiredTaint"],
        "skyhook.nvidia.com/runtime-required=true:NoSchedule"
    );
    let kps = yaml(&read(&b.join("003-kube-prometheus-stack/values.yaml")));
    assert_eq!(
        kps["prometheus"]["prometheusSpec"]["storageSpec"]["volumeClaimTemplate"]["spec"]["storageClassName"],
        "mine",
        "--set beats --storage-class on the same path"
    );
    let tuning = read(&b.join("006-nodewright-customizations/templates/tuning.yaml"));
    let cr = yaml(&tuning);
    assert_eq!(
        cr["spec"]["nodeSelectors"]["matchLabels"]["nodeGroup"],
        "gpu-worker"
    );
    assert_eq!(
        cr["spec"]["podNonInterruptLabels"]["matchLabels"]["workload-type"],
        "training"
    );

    // Without scheduling flags every toleration path tolerates everything
    // and the validation warnings are printed after the summary.
    let b2 = t.path().join("plain");
    let stdout = bundle(&r, &b2, &["--storage-class", "gp3"]);
    let gpu = yaml(&read(&b2.join("008-gpu-operator/values.yaml")));
    assert_eq!(
        gpu["daemonsets"]["tolerations"],
        serde_json::json!([{"operator": "Exists"}])
    );
    assert!(gpu["daemonsets"].get("nodeSelector").is_none());
    let kps = yaml(&read(&b2.join("004-kube-prometheus-stack/values.yaml")));
    assert_eq!(
        kps["prometheus"]["prometheusSpec"]["storageSpec"]["volumeClaimTemplate"]["spec"]["storageClassName"],
        "gp3"
    );
    assert!(stdout.contains("\nNote:\n  ⚠ Warning: nodewright-customizations is enabled but --workload-selector is not set. This may cause nodewright to evict running training jobs."), "{stdout}");
    assert!(stdout.contains("To deploy:\n  1. cd "), "{stdout}");
}

/// Run a failing bundle command; it must exit `code` with a one-line
/// error and leave `out` absent.
fn fails(args: &[&str], r: &Path, out: &Path, code: i32, needle: &str) {
    let a = aicr()
        .arg("bundle")
        .arg("-r")
        .arg(r)
        .arg("-o")
        .arg(out)
        .args(args)
        .assert()
        .code(code);
    let stderr = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.contains(needle), "{args:?}: {stderr}");
    assert!(a.get_output().stdout.is_empty(), "{args:?}");
    assert!(!out.exists(), "{args:?} left {}", out.display());
    let parent = out.parent().unwrap();
    let stray: Vec<_> = fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".aicr"))
        .collect();
    assert!(stray.is_empty(), "{args:?} left {stray:?}");
}

#[test]
fn bad_input_exits_2_with_one_line_and_leaves_nothing() {
    let t = tempfile::tempdir().unwrap();
    let r = recipe(t.path(), &EKS_TRAINING);
    let out = t.path().join("out");
    for (args, needle) in [
        (
            &["--set", "nosuch:a=b"][..],
            "unknown component \"nosuch\" in --set",
        ),
        (
            &["--set", "gpuoperator:driver.version"][..],
            "invalid format 'gpuoperator:driver.version': expected 'bundler:path=value'",
        ),
        (
            &["--set", "gpuoperator:=1"][..],
            "path and value cannot be empty",
        ),
        (
            &["--set", "gpuoperator:list[0].x=1"][..],
            "array index syntax is not supported",
        ),
        (
            &[
                "--deployer",
                "argocd",
                "--dynamic",
                "gpuoperator:driver.version",
            ][..],
            "dynamic declarations are not supported with deployer \"argocd\"; use deployer \"argocd-helm\" instead",
        ),
        (
            &["--dynamic", "nosuch:x"][..],
            "unknown component \"nosuch\" in dynamic declaration",
        ),
        (
            &["--dynamic", "gpuoperator:x=1"][..],
            "dynamic declaration does not accept '=value'",
        ),
        (
            &["--deployer", "flux"][..],
            "invalid deployer type \"flux\": must be one of [argocd argocd-helm helm]",
        ),
        (&["--nodes", "-1"][..], "--nodes must be >= 0"),
        (
            &["--system-node-selector", "nokey"][..],
            "expected key=value",
        ),
        (
            &["--accelerated-node-toleration", "a=b:Sometimes"][..],
            "invalid effect",
        ),
        (&["--workload-gate", ":NoSchedule"][..], "--workload-gate"),
        (
            &["--repo", "a", "--repo", "b"][..],
            "flag --repo can only be specified once",
        ),
    ] {
        fails(args, &r, &out, 2, needle);
    }
    fails(
        &[],
        &t.path().join("missing.yaml"),
        &out,
        3,
        "recipe file not found: ",
    );

    let empty = t.path().join("empty.yaml");
    fs::write(
        &empty,
        "kind: RecipeResult\napiVersion: aicr.nvidia.com/v1alpha1\ncomponentRefs: []\n",
    )
    .unwrap();
    fails(
        &[],
        &empty,
        &out,
        2,
        "recipe must contain at least one component reference",
    );

    // An output path under a regular file cannot be created.
    let file = t.path().join("plain-file");
    fs::write(&file, "x").unwrap();
    let a = aicr()
        .arg("bundle")
        .arg("-r")
        .arg(&r)
        .arg("-o")
        .arg(file.join("bundle"))
        .assert()
        .code(2);
    assert!(String::from_utf8_lossy(&a.get_output().stderr).contains("is not writable"));
    aicr()
        .args(["bundle"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--recipe is required"));
}

#[test]
fn rerun_replaces_the_previous_bundle_and_drops_stale_folders() {
    let t = tempfile::tempdir().unwrap();
    let (r, b) = training_bundle(t.path());
    fs::write(b.join("my-notes.txt"), "keep me").unwrap();
    bundle(
        &r,
        &b,
        &[
            "--set",
            "awsebscsidriver:enabled=false",
            "--set",
            "awsefa:enabled=false",
        ],
    );
    let names: Vec<String> = fs::read_dir(&b)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.contains(&"my-notes.txt".to_string()));
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("012-") || n.starts_with("013-")),
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n.starts_with(".aicr")), "{names:?}");
    assert!(checksums_hold(&b), "checksums of the second run hold");
}

/// Every file under `dir`, by relative path, with its inode.
fn inodes(dir: &Path) -> std::collections::BTreeMap<String, u64> {
    use std::os::unix::fs::MetadataExt;
    files(dir)
        .into_iter()
        .map(|rel| {
            let ino = fs::symlink_metadata(dir.join(&rel)).unwrap().ino();
            (rel, ino)
        })
        .collect()
}

#[test]
fn rerun_rewrites_only_the_components_that_changed() {
    let t = tempfile::tempdir().unwrap();
    let (r, b) = training_bundle(t.path());
    let first = inodes(&b);
    bundle(&r, &b, &[]);
    assert_eq!(inodes(&b), first, "an unchanged bundle is left in place");

    bundle(&r, &b, &["--set", "gpuoperator:driver.version=570.86.16"]);
    let second = inodes(&b);
    assert_eq!(
        second.keys().collect::<Vec<_>>(),
        first.keys().collect::<Vec<_>>()
    );
    let rewritten: Vec<&String> = second
        .iter()
        .filter(|(rel, ino)| first[*rel] != **ino)
        .map(|(rel, _)| rel)
        .collect();
    assert!(
        rewritten
            .iter()
            .any(|rel| rel.ends_with("gpu-operator/values.yaml")),
        "{rewritten:?}"
    );
    assert!(
        rewritten.contains(&&"checksums.txt".to_string()),
        "{rewritten:?}"
    );
    assert!(
        rewritten.iter().all(|rel| rel.contains("-gpu-operator")
            || ["checksums.txt", "README.md", "deploy.sh", "undeploy.sh"].contains(&rel.as_str())),
        "only the changed component's folders and the top-level files they feed: {rewritten:?}"
    );
    assert!(checksums_hold(&b));
}

#[test]
fn config_file_drives_bundle_and_flags_win() {
    let t = tempfile::tempdir().unwrap();
    let r = recipe(t.path(), &EKS_TRAINING);
    let cfg = t.path().join("aicr.yaml");
    fs::write(
        &cfg,
        format!(
            "kind: AICRConfig\napiVersion: aicr.nvidia.com/v1alpha1\nmetadata: {{name: c}}\nspec:\n  bundle:\n    input: {{recipe: {}}}\n    output: {{target: {}}}\n    deployment:\n      deployer: argocd\n      repo: https://git.example/repo.git\n      set: [\"gpuoperator:driver.version=570.86.16\"]\n    scheduling:\n      acceleratedNodeSelector: {{nodeGroup: gpu}}\n      nodes: 4\n",
            r.display(),
            t.path().join("from-config").display()
        ),
    )
    .unwrap();
    aicr()
        .args(["bundle", "--config"])
        .arg(&cfg)
        .assert()
        .success();
    let b = t.path().join("from-config");
    let app = read(&b.join("001-aws-ebs-csi-driver/application.yaml"));
    assert!(app.contains("https://git.example/repo.git"));
    let gpu = yaml(&read(&b.join("008-gpu-operator/values.yaml")));
    assert_eq!(gpu["driver"]["version"], "570.86.16");
    assert_eq!(gpu["daemonsets"]["nodeSelector"]["nodeGroup"], "gpu");

    let b2 = t.path().join("flags-win");
    aicr()
        .args(["bundle", "--config"])
        .arg(&cfg)
        .arg("-o")
        .arg(&b2)
        .args(["--deployer", "helm", "--set", "gpuoperator:driver.version=580", "--nodes", "2"])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "CLI flag overriding config value: field=spec.bundle.deployment.deployer flag=--deployer config=argocd override=helm",
        ))
        .stderr(predicate::str::contains("field=spec.bundle.deployment.set flag=--set"));
    let gpu = yaml(&read(&b2.join("008-gpu-operator/values.yaml")));
    assert_eq!(gpu["driver"]["version"], 580);
    let nw = yaml(&read(&b2.join("006-nodewright-operator/values.yaml")));
    assert_eq!(nw["estimatedNodeCount"], 2);
    assert!(b2.join("deploy.sh").exists());
}

#[test]
fn recipe_from_a_configmap() {
    let t = tempfile::tempdir().unwrap();
    let r = recipe(t.path(), &EKS_TRAINING);
    let api = FakeApiServer::start_blocking();
    api.insert(fixtures::config_map(
        "aicr",
        "recipe",
        &[("recipe.yaml", &read(&r))],
    ));
    let b = t.path().join("bundle");
    aicr()
        .env("KUBECONFIG", api.kubeconfig_path())
        .args(["bundle", "-r", "cm://aicr/recipe", "-o"])
        .arg(&b)
        .assert()
        .success();
    assert!(b.join("008-gpu-operator/values.yaml").exists());
    aicr()
        .env("KUBECONFIG", api.kubeconfig_path())
        .args(["bundle", "-r", "cm://aicr/missing", "-o"])
        .arg(t.path().join("none"))
        .assert()
        .code(3);
}

#[test]
fn kustomize_components_use_the_external_tool() {
    let t = tempfile::tempdir().unwrap();
    let r = recipe(t.path(), &EKS_TRAINING);
    let mut doc = yaml(&read(&r));
    doc["componentRefs"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "name": "extra", "namespace": "extra", "type": "Kustomize",
            "source": "https://github.com/org/repo", "path": "deploy", "tag": "v1"
        }));
    let r2 = t.path().join("kustomize.json");
    fs::write(&r2, serde_json::to_string(&doc).unwrap()).unwrap();
    let bin = t.path().join("bin");
    fs::create_dir_all(&bin).unwrap();
    let stub = bin.join("kustomize");
    fs::write(
        &stub,
        "#!/usr/bin/env bash\necho \"# built $*\"\necho 'apiVersion: v1'\necho 'kind: ConfigMap'\necho 'metadata:'\necho '  name: built'\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&stub, fs::Permissions::from_mode(0o755)).unwrap();
    let b = t.path().join("bundle");
    aicr()
        .env(
            "PATH",
            format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        )
        .arg("bundle")
        .arg("-r")
        .arg(&r2)
        .arg("-o")
        .arg(&b)
        .assert()
        .success();
    let m = read(&b.join("014-extra/templates/manifest.yaml"));
    assert!(
        m.starts_with("# built build https://github.com/org/repo//deploy?ref=v1\n"),
        "{m}"
    );
    assert!(b.join("014-extra/Chart.yaml").exists());
}

#[test]
fn skill_prints_installs_and_refuses_to_clobber() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path();
    let out = aicr()
        .env("HOME", home)
        .args(["skill", "--agent", "claude-code", "--stdout"])
        .assert()
        .success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(
        text.starts_with("---\nname: aicr\ndescription: |\n"),
        "{text}"
    );
    assert!(text.contains("user_invocable: true\n---\n\n# AICR CLI (v"));
    for needle in [
        "## Prerequisites",
        "### `aicr bundle [flags]`",
        "- `--recipe` (-r) — Recipe: file path, http(s) URL or cm://namespace/name",
        "- `--nodes` [int]",
        "- `--set` [strings]",
        "### `aicr verify [BUNDLE_DIR] [flags]`",
        "- `--format` — Report format: text or json (default: `text`)",
        "- `--selector` — Dot path into the hydrated recipe, e.g. components.gpu-operator.values.driver.version **required**",
        "- `--debug` [bool] — Debug logging: key=value lines with time, level and source (env: `AICR_DEBUG`)\n",
        "## Criteria Values",
        "- `service`: aks, eks, gke, kind, oke",
        "## Workflow Examples",
        "## Error Handling",
        "## Best Practices",
    ] {
        assert!(text.contains(needle), "missing {needle:?}");
    }
    assert!(!text.contains("### `aicr skill"));
    assert!(!text.contains("### `aicr completion"));
    assert!(!text.contains("`--help`"));
    let codex = aicr()
        .env("HOME", home)
        .args(["skill", "--agent", "codex", "--stdout"])
        .assert()
        .success();
    assert!(!String::from_utf8_lossy(&codex.get_output().stdout).contains("user_invocable"));

    let target = home.join(".claude/skills/aicr/SKILL.md");
    aicr()
        .env("HOME", home)
        .args(["skill", "--agent", "claude-code"])
        .assert()
        .success()
        .stdout(format!("{}\n", target.display()));
    assert_eq!(read(&target), text);
    assert_eq!(mode(&target), aicr::sink::under_umask(0o644));
    fs::write(&target, "old").unwrap();
    aicr()
        .env("HOME", home)
        .args(["skill", "--agent", "claude-code"])
        .write_stdin("y\n")
        .assert()
        .code(2)
        .stderr(predicate::str::contains(format!(
            "skill file already exists: {} (use --force to overwrite, or remove it first)",
            target.display()
        )));
    assert_eq!(read(&target), "old");
    aicr()
        .env("HOME", home)
        .args(["skill", "--agent", "claude-code", "--force"])
        .assert()
        .success();
    assert_eq!(read(&target), text);

    fs::remove_file(&target).unwrap();
    std::os::unix::fs::symlink(home.join("elsewhere"), &target).unwrap();
    aicr()
        .env("HOME", home)
        .args(["skill", "--agent", "claude-code", "--force"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("through a symlink"));
    assert!(!home.join("elsewhere").exists());
    aicr()
        .env("HOME", home)
        .args(["skill", "--agent", "cursor"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "unsupported agent type \"cursor\": must be one of [claude-code codex]",
        ));
}

#[test]
fn skill_prompts_on_a_terminal() {
    // `script` gives the command a pseudo-terminal as stdin.
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let target = t.path().join(".codex/skills/aicr/SKILL.md");
    fs::create_dir_all(target.parent().unwrap()).unwrap();
    fs::write(&target, "old").unwrap();
    let bin = assert_cmd::cargo::cargo_bin("aicr");
    for (answer, replaced) in [("n", false), ("YES", true)] {
        fs::write(&target, "old").unwrap();
        let out = std::process::Command::new("script")
            .args([
                "-qec",
                &format!("{} skill --agent codex", bin.display()),
                "/dev/null",
            ])
            .env("HOME", t.path())
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin
                    .take()
                    .unwrap()
                    .write_all(format!("{answer}\n").as_bytes())?;
                c.wait_with_output()
            })
            .unwrap();
        let screen = String::from_utf8_lossy(&out.stdout);
        assert!(screen.contains("overwrite? [y/N]: "), "{screen}");
        assert_eq!(read(&target) != "old", replaced, "{answer}: {screen}");
    }
}

#[test]
fn external_data_is_copied_checksummed_and_reported_by_verify() {
    let t = tempfile::tempdir().unwrap();
    let r = recipe(t.path(), &EKS_TRAINING);
    let data = t.path().join("data");
    fs::create_dir_all(data.join("components/gpu-operator")).unwrap();
    fs::write(
        data.join("registry.yaml"),
        "apiVersion: aicr.nvidia.com/v1alpha1\nkind: ComponentRegistry\ncomponents: []\n",
    )
    .unwrap();
    fs::write(
        data.join("components/gpu-operator/values-eks-training.yaml"),
        "driver:\n  version: 999.1.2\n",
    )
    .unwrap();
    let b = t.path().join("bundle");
    bundle(&r, &b, &["--data", data.to_str().unwrap()]);
    assert_eq!(
        read(&b.join("data/registry.yaml")),
        read(&data.join("registry.yaml"))
    );
    let sums = read(&b.join("checksums.txt"));
    assert!(sums.contains("  data/components/gpu-operator/values-eks-training.yaml\n"));
    let gpu = yaml(&read(&b.join("008-gpu-operator/values.yaml")));
    assert_eq!(gpu["driver"]["version"], "999.1.2", "the --data layer wins");
    let out = aicr()
        .arg("verify")
        .arg(&b)
        .args(["--format", "json"])
        .assert()
        .success();
    let v: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(v["hasExternalData"], true);
    assert_eq!(v["trustLevel"], "unverified");
}
