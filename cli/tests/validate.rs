//! `aicr validate` through the real binary: the readiness gate on upstream
//! recipes and snapshots (every operator and version edge case), the fleet
//! view, bad input, CTRF output (golden, normalised), every deployment-phase
//! rule against the fake API server, the other checks, validator Jobs,
//! inner-workload scheduling, agent mode, outputs and evidence.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use aicr_test_support::fixtures::{daemonset, deployment};
use aicr_test_support::{FakeApiServer, fixtures, tools, unreachable_kubeconfig};
use assert_cmd::Command;
use serde_json::{Value, json};

// ---------------------------------------------------------------- helpers

/// `aicr` with no cluster reachable unless a test points it at one.
fn aicr() -> Command {
    let mut c = aicr_test_support::tools::aicr();
    c.env("NO_COLOR", "1").env("HOME", "/nonexistent");
    c
}

fn aicr_on(api: &FakeApiServer) -> Command {
    let mut c = aicr();
    c.env("KUBECONFIG", api.kubeconfig_path());
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

/// Our GB200 EKS training recipe with deployment and performance
/// validation (see the fixture's header).
fn gb200_recipe() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/eks-gb200-ubuntu-training-with-validation.yaml")
}

/// A snapshot as upstream writes it (spec snapshot §1.6), with the readings
/// validation reads; `os_release` and `kubelet` vary per test.
fn snapshot(node: &str, kubelet: &str, os_release: &str) -> String {
    format!(
        "kind: Snapshot
apiVersion: aicr.nvidia.com/v1alpha1
metadata:
  source-node: {node}
  timestamp: \"2026-11-28T01:12:40Z\"
  version: dev
measurements:
  - type: SystemD
  - type: OS
    subtypes:
      - subtype: sysctl
        data:
          /proc/sys/kernel/osrelease: 6.8.0-1028-aws
      - subtype: release
        data:
{os_release}
  - type: GPU
    subtypes:
      - subtype: smi
        data:
          cuda-version: \"12.8\"
          driver: 570.86.15
          gpu-count: 8
          gpu.model: NVIDIA H100 80GB HBM3
  - type: K8s
    subtypes:
      - subtype: server
        data:
          goVersion: go1.23.12
          platform: linux/amd64
          version: v1.33.5-eks-3025e55
      - subtype: node
        data:
          kubelet-version: {kubelet}
          source-node: {node}
"
    )
}

const UBUNTU: &str = "          ID: ubuntu\n          VERSION_ID: \"24.04\"";

fn good_snapshot() -> String {
    snapshot("gpu-1", "v1.33.5-eks-3025e55", UBUNTU)
}

/// A recipe with the given constraints (YAML list items), validation block
/// and component refs.
fn recipe(constraints: &str, validation: &str, components: &str) -> String {
    format!(
        "kind: RecipeResult
apiVersion: aicr.nvidia.com/v1alpha1
criteria:
  service: eks
  accelerator: h100
  intent: training
  os: ubuntu
constraints:
{constraints}
{validation}
componentRefs:
{components}
"
    )
}

const GATE: &str = "  - name: K8s.server.version\n    value: \">= 1.32.4\"";

fn stdout_json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The report text with what changes between runs (clock, durations of
/// checks that ran, version) replaced, keeping the document's own layout
/// and key order for golden comparison.
fn normalized(text: &str) -> String {
    let report: Value = serde_json::from_str(text).unwrap();
    // Synthesized entries always take 0 ms; checks that ran take what they take.
    let mut synthesized = report["results"]["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            t["suite"][0] == "readiness"
                || t["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("skipped"))
        })
        .collect::<Vec<_>>()
        .into_iter();
    let mut out = String::new();
    for line in text.lines() {
        let key = line.trim_start().split(':').next().unwrap_or("");
        let indent = &line[..line.len() - line.trim_start().len()];
        let comma = if line.ends_with(',') { "," } else { "" };
        let replaced = match key {
            "\"timestamp\"" => Some("<timestamp>"),
            "\"version\"" => Some("<version>"),
            "\"start\"" => Some("<start>"),
            "\"stop\"" => Some("<stop>"),
            "\"duration\"" if !synthesized.next().unwrap() => Some("<ms>"),
            _ => None,
        };
        match replaced {
            Some(v) => out.push_str(&format!("{indent}{key}: \"{v}\"{comma}\n")),
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

fn text(out: &std::process::Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn statuses(report: &Value) -> Vec<(String, String)> {
    report["results"]["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn test_named<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["results"]["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no test {name} in {report}"))
}

// ------------------------------------------------- readiness and no-cluster

#[test]
fn no_cluster_report_matches_the_reference_output_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let snap = write(dir.path(), "snapshot.yaml", &good_snapshot());
    let out = aicr()
        .args(["validate", "--no-cluster", "--phase", "deployment", "-r"])
        .arg(gb200_recipe())
        .args(["-s", s(&snap)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    let v = stdout_json(&out);
    // The reference binary's text (spec §9.4) with this run's clock and version.
    let test = |name: &str| {
        format!(
            "      {{\n        \"name\": \"{name}\",\n        \"status\": \"skipped\",\n        \"duration\": 0,\n        \"suite\": [\n          \"deployment\"\n        ],\n        \"message\": \"skipped - no-cluster mode\"\n      }}"
        )
    };
    let expected = format!(
        "{{\n  \"reportFormat\": \"CTRF\",\n  \"specVersion\": \"0.0.1\",\n  \"timestamp\": \"{}\",\n  \"generatedBy\": \"aicr\",\n  \"results\": {{\n    \"tool\": {{\n      \"name\": \"aicr\",\n      \"version\": \"{}\"\n    }},\n    \"summary\": {{\n      \"tests\": 4,\n      \"passed\": 0,\n      \"failed\": 0,\n      \"skipped\": 4,\n      \"pending\": 0,\n      \"other\": 0,\n      \"start\": {},\n      \"stop\": {}\n    }},\n    \"tests\": [\n{}\n    ]\n  }}\n}}\n",
        v["timestamp"].as_str().unwrap(),
        v["results"]["tool"]["version"].as_str().unwrap(),
        v["results"]["summary"]["start"],
        v["results"]["summary"]["stop"],
        [
            "operator-health",
            "expected-resources",
            "gpu-operator-version",
            "check-nvidia-smi"
        ]
        .map(test)
        .join(",\n")
    );
    assert_eq!(text, expected);
}

#[test]
fn no_cluster_all_phases_golden() {
    let dir = tempfile::tempdir().unwrap();
    let snap = write(dir.path(), "snapshot.yaml", &good_snapshot());
    let out = aicr()
        .args(["validate", "--no-cluster", "-r"])
        .arg(gb200_recipe())
        .args(["-s", s(&snap)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    insta::assert_snapshot!("no_cluster_all_phases", normalized(&text(&out)));
}

/// The fixture stands in for upstream's example with validation: on the
/// same snapshot both yield the same report in every phase.
#[test]
fn the_gb200_fixture_validates_as_the_upstream_example_does() {
    let Some(shared) = tools::corpus("upstream GB200 example with validation") else {
        return;
    };
    let upstream = shared.join(
        "reference/aicr-v0.11.1/examples/recipes/eks-gb200-ubuntu-training-with-validation.yaml",
    );
    let dir = tempfile::tempdir().unwrap();
    let snap = write(dir.path(), "snapshot.yaml", &good_snapshot());
    let report = |recipe: &Path| {
        let out = aicr()
            .args(["validate", "--no-cluster", "-r"])
            .arg(recipe)
            .args(["-s", s(&snap)])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        normalized(&text(&out))
    };
    assert_eq!(report(&gb200_recipe()), report(&upstream));
}

#[test]
fn every_upstream_example_recipe_passes_the_gate_on_a_matching_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let snap = write(dir.path(), "snapshot.yaml", &good_snapshot());
    let Some(shared) = tools::corpus("upstream example recipes") else {
        return;
    };
    let examples = shared.join("reference/aicr-v0.11.1/examples/recipes");
    let mut seen = 0;
    for entry in fs::read_dir(examples).unwrap() {
        let path = entry.unwrap().path();
        let out = aicr()
            .args(["validate", "--no-cluster", "--phase", "conformance", "-r"])
            .arg(&path)
            .args(["-s", s(&snap)])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {}",
            path.display(),
            stderr(&out)
        );
        let v = stdout_json(&out);
        assert_eq!(v["results"]["summary"]["skipped"], 11, "{}", path.display());
        seen += 1;
    }
    assert_eq!(seen, 4);
}

#[test]
fn a_failed_constraint_stops_everything_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let snap = write(
        dir.path(),
        "snapshot.yaml",
        &snapshot(
            "gpu-1",
            "v1.33.5",
            "          ID: debian\n          VERSION_ID: \"12\"",
        ),
    );
    let report = dir.path().join("report.json");
    let out = aicr()
        .args(["validate", "--no-cluster", "-r"])
        .arg(gb200_recipe())
        .args(["-s", s(&snap), "-o", s(&report)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(8));
    assert!(out.stdout.is_empty());
    assert!(!report.exists());
    assert!(
        stderr(&out).contains("error: validation failed: readiness check failed: OS.release.ID expected ubuntu, got debian"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn fail_on_error_false_does_not_hide_a_failed_gate() {
    let dir = tempfile::tempdir().unwrap();
    let snap = write(
        dir.path(),
        "snapshot.yaml",
        &snapshot("gpu-1", "v1.33.5", "          ID: debian"),
    );
    let out = aicr()
        .args(["validate", "--no-cluster", "--fail-on-error=false", "-r"])
        .arg(gb200_recipe())
        .args(["-s", s(&snap)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(8));
}

#[test]
fn a_missing_measurement_fails_closed_naming_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let snap = write(
        dir.path(),
        "snapshot.yaml",
        "kind: Snapshot\napiVersion: aicr.nvidia.com/v1alpha1\nmeasurements:\n  - type: OS\n    subtypes:\n      - subtype: release\n        data:\n          ID: ubuntu\n",
    );
    let out = aicr()
        .args(["validate", "--no-cluster", "-r"])
        .arg(gb200_recipe())
        .args(["-s", s(&snap)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(8));
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    assert!(
        err.contains("readiness check failed: K8s.server.version expected >= 1.32.4: value not found in snapshot: K8s.server.version: measurement type not found in snapshot"),
        "{err}"
    );
}

/// Every operator and version rule of the constraint grammar, judged by the
/// binary on a snapshot reading written as YAML.
#[test]
fn operator_and_version_edge_cases() {
    let cases: &[(&str, &str, bool)] = &[
        (">= 1.32.4", "v1.33.5-eks-3025e55", true),
        (">= 1.32.4", "v1.32.3", false),
        (">= 1.32.4", "1.32.4-rc.1", true),
        (">=1.32.4", "1.32.4", true),
        ("> 1.32", "v1.32.9", false),
        ("> 1.32", "v1.33.0", true),
        ("<= 1.32", "1.32.9", true),
        ("< 1.33", "1.33.0", false),
        ("< 6", "5.15.0-1.el9", true),
        (">= 6.8", "6.8.0-1028-aws", true),
        (">= 6.8.1", "6.8.0-1028-aws", false),
        ("== 1.32", "1.32.4", false),
        ("== 1.32.0", "\"1.32\"", true),
        ("== v1.32.4", "1.32.4-gke.100", true),
        ("!= 1.32.4", "1.32.4-rc1", false),
        ("!= 1.32.4", "1.32.5", true),
        ("== 24.04", "\"24.4\"", true),
        ("24.04", "\"24.4\"", false),
        ("1.32.4", "v1.32.4", false),
        ("== ubuntu", "Ubuntu", false),
        ("!= ubuntu", "rhel", true),
        ("== ubuntu-22.04", "ubuntu-22.04", true),
        ("ubuntu", "\" ubuntu \"", true),
        ("=1.2", "=1.2", true),
        // Compared as the snapshot wrote it: an unquoted 22.10 is "22.10".
        ("22.10", "22.10", true),
        ("== 22.10", "22.10", true),
        ("true", "true", true),
        ("8", "8", true),
        // Unparsable actual versions and null readings fail closed.
        (">= 1.32", "abc", false),
        (">= 1.0", "~", false),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (i, (expr, reading, pass)) in cases.iter().enumerate() {
        let snap = write(
            dir.path(),
            &format!("s{i}.yaml"),
            &snapshot("gpu-1", "v1.33.5", &format!("          X: {reading}")),
        );
        let r = write(
            dir.path(),
            &format!("r{i}.yaml"),
            &recipe(
                &format!("  - name: OS.release.X\n    value: '{expr}'"),
                "",
                "  []",
            ),
        );
        let out = aicr()
            .args([
                "validate",
                "--no-cluster",
                "--phase",
                "deployment",
                "-r",
                s(&r),
                "-s",
                s(&snap),
            ])
            .output()
            .unwrap();
        let want = if *pass { 0 } else { 8 };
        assert_eq!(
            out.status.code(),
            Some(want),
            "{expr:?} against {reading}: {}",
            stderr(&out)
        );
    }
}

// ------------------------------------------------------------ fleet view

fn fleet_recipe(dir: &Path) -> PathBuf {
    write(
        dir,
        "fleet-recipe.yaml",
        &recipe(
            &format!(
                "{GATE}\n  - name: K8s.node.kubelet-version\n    value: \">= 1.33\"\n  - name: OS.release.ID\n    value: ubuntu"
            ),
            "",
            "  []",
        ),
    )
}

#[test]
fn fleet_directory_catches_the_node_with_an_older_kubelet() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = dir.path().join("nodes");
    write(
        &nodes,
        "gpu-1.yaml",
        &snapshot("gpu-1", "v1.33.5-eks-3025e55", UBUNTU),
    );
    write(
        &nodes,
        "gpu-2.yaml",
        &snapshot("gpu-2", "v1.33.5-eks-3025e55", UBUNTU),
    );
    write(
        &nodes,
        "gpu-3.yaml",
        &snapshot("gpu-3", "v1.32.9-eks-113cf36", UBUNTU),
    );
    write(&nodes, "README.md", "not a snapshot");
    let report = dir.path().join("report.json");
    let out = aicr()
        .args(["validate", "--no-cluster", "--phase", "deployment", "-r"])
        .arg(fleet_recipe(dir.path()))
        .args(["-s", s(&nodes), "-o", s(&report)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(8));
    let err = stderr(&out);
    assert!(
        err.contains("validation failed: readiness check failed on 1 of 3 nodes: gpu-3: K8s.node.kubelet-version expected >= 1.33, got v1.32.9-eks-113cf36"),
        "{err}"
    );
    assert!(
        err.contains("nodes disagree on K8s.node.kubelet-version: \"v1.33.5-eks-3025e55\" on gpu-1, gpu-2; \"v1.32.9-eks-113cf36\" on gpu-3"),
        "{err}"
    );
    insta::assert_snapshot!(
        "fleet_older_kubelet",
        normalized(&fs::read_to_string(&report).unwrap())
    );
}

#[test]
fn repeated_snapshots_form_a_fleet_that_passes() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.yaml", &snapshot("gpu-1", "v1.33.5", UBUNTU));
    let b = write(dir.path(), "b.yaml", &snapshot("gpu-2", "v1.34.0", UBUNTU));
    let out = aicr()
        .args(["validate", "--no-cluster", "--phase", "performance", "-r"])
        .arg(fleet_recipe(dir.path()))
        .args(["-s", s(&a), "-s", s(&b)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = stdout_json(&out);
    let tests = v["results"]["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 3 * 2 + 1);
    assert_eq!(tests[3]["suite"], json!(["readiness", "gpu-2"]));
    assert_eq!(tests[3]["status"], "passed");
    assert_eq!(tests[6]["name"], "nccl-all-reduce-bw");
    assert_eq!(tests[6]["message"], "skipped - no-cluster mode");
    assert!(stderr(&out).contains("nodes disagree on K8s.node.kubelet-version"));
}

// ---------------------------------------------------------------- bad input

/// Invalid input: exit 2, one error line, nothing on stdout, no report.
fn assert_bad_input(args: &[&str], want: &str) {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let out = aicr()
        .arg("validate")
        .args(args)
        .args(["-o", s(&report)])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(out.stdout.is_empty(), "{args:?}");
    assert!(!report.exists(), "{args:?}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(errors[0].contains(want), "{args:?}: {err}");
}

#[test]
fn bad_input_is_rejected_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let snap = write(dir.path(), "snapshot.yaml", &good_snapshot());
    let recipe_ok = gb200_recipe();
    let recipe_ok = s(&recipe_ok);
    let no_constraints = write(dir.path(), "nc.yaml", &recipe("  []", "", "  []"));
    let malformed = write(
        dir.path(),
        "bad.yaml",
        &recipe("  - name: K8s.server.version\n    value: '>= '", "", "  []"),
    );
    let unversioned = write(
        dir.path(),
        "bad2.yaml",
        &recipe(
            "  - name: k8s.server.version\n    value: '>= 1.32'",
            "",
            "  []",
        ),
    );
    let empty_dir = dir.path().join("empty");
    fs::create_dir_all(&empty_dir).unwrap();
    let twins = dir.path().join("twins");
    write(&twins, "a.yaml", &good_snapshot());
    write(&twins, "b.yaml", &good_snapshot());
    let garbage = write(dir.path(), "garbage.yaml", "kind: [unclosed\n");
    let snap = s(&snap);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["-s", snap], "--recipe is required"),
        (
            vec!["-r", recipe_ok, "-s", snap, "--phase", "readiness"],
            "invalid phase \"readiness\": must be one of: deployment, performance, conformance, all",
        ),
        (
            vec!["-r", s(&no_constraints), "-s", snap],
            "has no constraints",
        ),
        (
            vec!["-r", s(&malformed), "-s", snap],
            "malformed constraint \"K8s.server.version\"",
        ),
        (
            vec!["-r", s(&unversioned), "-s", snap],
            "invalid measurement type",
        ),
        (
            vec!["-r", recipe_ok, "-s", recipe_ok],
            "is not a snapshot: it has kind \"RecipeResult\"",
        ),
        (
            vec!["-r", snap, "-s", snap],
            "not a recipe: kind \"Snapshot\"",
        ),
        (vec!["-r", s(&garbage), "-s", snap], "failed to load recipe"),
        (
            vec!["-r", recipe_ok, "-s", s(&garbage)],
            "failed to load snapshot",
        ),
        (
            vec!["-r", recipe_ok, "-s", s(&empty_dir)],
            "holds no *.yaml",
        ),
        (
            vec!["-r", recipe_ok, "-s", s(&twins)],
            "both describe node \"gpu-1\"",
        ),
        (
            vec!["-r", recipe_ok, "-s", snap, "--toleration", "dedicated=gpu"],
            "expected key=value:effect or key:effect",
        ),
        (
            vec![
                "-r",
                recipe_ok,
                "-s",
                snap,
                "--no-cluster",
                "--node-selector",
                "gpu",
            ],
            "expected key=value",
        ),
        (
            vec!["-r", recipe_ok, "-r", recipe_ok, "-s", snap],
            "flag --recipe can only be specified once",
        ),
        (
            vec!["-r", recipe_ok, "--no-cluster"],
            "--no-cluster needs --snapshot",
        ),
        (
            vec!["-r", recipe_ok, "-s", "ftp://x/s.yaml"],
            "unsupported URI scheme",
        ),
    ];
    for (args, want) in cases {
        assert_bad_input(&args, want);
    }
}

#[test]
fn output_directory_must_exist_before_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let snap = write(dir.path(), "snapshot.yaml", &good_snapshot());
    let out = aicr()
        .args(["validate", "--no-cluster", "-r"])
        .arg(gb200_recipe())
        .args(["-s", s(&snap), "-o", "/nonexistent/dir/report.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("does not exist"));
}

#[test]
fn report_goes_to_a_file_atomically_and_is_json_whatever_the_extension() {
    let dir = tempfile::tempdir().unwrap();
    let snap = write(dir.path(), "snapshot.yaml", &good_snapshot());
    let report = dir.path().join("report.yaml");
    let out = aicr()
        .args(["validate", "--no-cluster", "-r"])
        .arg(gb200_recipe())
        .args(["-s", s(&snap), "-o", s(&report)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    let text = fs::read_to_string(&report).unwrap();
    assert!(text.ends_with("}\n"));
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["results"]["summary"]["tests"], 16);
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".aicr-"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn evidence_dir_is_created_and_left_empty_when_nothing_ran() {
    let dir = tempfile::tempdir().unwrap();
    let snap = write(dir.path(), "snapshot.yaml", &good_snapshot());
    let evidence = dir.path().join("evidence");
    let out = aicr()
        .args(["validate", "--no-cluster", "--phase", "conformance", "-r"])
        .arg(gb200_recipe())
        .args(["-s", s(&snap), "--evidence-dir", s(&evidence)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(evidence.is_dir());
    assert_eq!(fs::read_dir(&evidence).unwrap().count(), 0);
}

#[test]
fn an_unreachable_cluster_is_an_infrastructure_failure_without_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let snap = write(dir.path(), "snapshot.yaml", &good_snapshot());
    let kc = unreachable_kubeconfig();
    let out = aicr()
        .env("KUBECONFIG", kc.path())
        .env("AICR_KUBE_TIMEOUT", "2s")
        .args(["validate", "--phase", "deployment", "-r"])
        .arg(gb200_recipe())
        .args(["-s", s(&snap)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(8), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out).contains("failed to reach the Kubernetes API server"),
        "{}",
        stderr(&out)
    );
}

// ------------------------------------------------ the fake cluster: seeds

/// The sixteen catalog checks with every budget cut to `timeout`; the
/// images stay the upstream ones, so the checks still run in-process.
fn fast_catalog(timeout: &str, extra: &str) -> String {
    let checks = [
        ("deployment", "operator-health"),
        ("deployment", "expected-resources"),
        ("deployment", "gpu-operator-version"),
        ("deployment", "check-nvidia-smi"),
        ("performance", "nccl-all-reduce-bw"),
        ("conformance", "dra-support"),
        ("conformance", "gang-scheduling"),
        ("conformance", "accelerator-metrics"),
        ("conformance", "ai-service-metrics"),
        ("conformance", "inference-gateway"),
        ("conformance", "pod-autoscaling"),
        ("conformance", "cluster-autoscaling"),
        ("conformance", "robust-controller"),
        ("conformance", "secure-accelerator-access"),
        ("conformance", "gpu-operator-health"),
        ("conformance", "platform-health"),
    ];
    let mut text = String::from(
        "apiVersion: aicr.nvidia.com/v1\nkind: ValidatorCatalog\nmetadata:\n  name: test\nvalidators:\n",
    );
    for (phase, name) in checks {
        text.push_str(&format!(
            "  - name: {name}\n    phase: {phase}\n    image: ghcr.io/nvidia/aicr-validators/{phase}:latest\n    timeout: {timeout}\n    args: [{name}]\n"
        ));
    }
    text.push_str(extra);
    text
}

/// A `--data` directory: short check budgets, and registry entries that
/// replace the embedded ones (components listed here lose their
/// health-check asserts, so each rule is tested on its own).
fn test_data(
    dir: &Path,
    timeout: &str,
    plain_components: &[&str],
    extra_validators: &str,
) -> PathBuf {
    let data = dir.join("data");
    let mut registry = String::from(
        "apiVersion: aicr.nvidia.com/v1alpha1\nkind: ComponentRegistry\ncomponents:\n",
    );
    if plain_components.is_empty() {
        registry = registry.replace("components:\n", "components: []\n");
    }
    for c in plain_components {
        registry.push_str(&format!("  - name: {c}\n"));
    }
    write(&data, "registry.yaml", &registry);
    write(
        &data,
        "validators/catalog.yaml",
        &fast_catalog(timeout, extra_validators),
    );
    data
}

fn skyhook(name: &str, status: Option<&str>) -> Value {
    let mut v = json!({
        "apiVersion": "skyhook.nvidia.com/v1alpha1", "kind": "Skyhook",
        "metadata": {"name": name}, "spec": {},
    });
    if let Some(st) = status {
        v["status"] = json!({"status": st});
    }
    v
}

fn register_skyhook_crd(api: &FakeApiServer) {
    api.register_crd(
        "skyhook.nvidia.com",
        "v1alpha1",
        "Skyhook",
        "skyhooks",
        false,
    );
}

/// The deployment-rule recipe: gpu-operator with declared resources,
/// Nodewright tuning, the DRA driver, and a disabled component.
fn rules_recipe(dir: &Path, nodewright: &str) -> PathBuf {
    let components = format!(
        "  - name: gpu-operator
    namespace: gpu-operator
    expectedResources:
      - {{kind: Deployment, name: gpu-operator, namespace: gpu-operator}}
      - {{kind: DaemonSet, name: nvidia-device-plugin-daemonset, namespace: gpu-operator}}
{nodewright}  - name: nvidia-dra-driver-gpu
    namespace: nvidia-dra-driver
  - name: cert-manager
    namespace: cert-manager
    overrides:
      enabled: false
    expectedResources:
      - {{kind: Deployment, name: cert-manager, namespace: cert-manager}}
"
    );
    write(
        dir,
        "rules-recipe.yaml",
        &recipe(
            GATE,
            "validation:\n  deployment:\n    checks: [expected-resources]",
            &components,
        ),
    )
}

const NODEWRIGHT: &str = "  - name: nodewright-customizations
    namespace: skyhook
    manifestFiles:
      - components/nodewright-customizations/manifests/tuning.yaml
";

/// Everything the rules recipe expects, healthy, plus a Skyhook CR the
/// recipe does not name (another tenant's, failing).
fn seed_healthy(api: &FakeApiServer) {
    for ns in ["gpu-operator", "skyhook", "nvidia-dra-driver"] {
        api.insert(fixtures::namespace(ns));
    }
    api.insert(deployment("gpu-operator", "gpu-operator", 1, 1));
    api.insert(daemonset(
        "gpu-operator",
        "nvidia-device-plugin-daemonset",
        2,
        2,
    ));
    register_skyhook_crd(api);
    api.insert(skyhook("tuning", Some("complete")));
    api.insert(skyhook("other-tenant", Some("erroring")));
    api.insert(fixtures::cluster_policy_crd());
    api.insert(fixtures::cluster_policy(json!({}), "ready"));
    api.insert(daemonset(
        "nvidia-dra-driver",
        "nvidia-dra-driver-gpu-kubelet-plugin",
        2,
        2,
    ));
    api.insert(daemonset(
        "nvidia-dra-driver",
        "nvidia-dra-driver-gpu-controller-ds",
        1,
        0,
    ));
}

struct Rules {
    _dir: tempfile::TempDir,
    recipe: PathBuf,
    snapshot: PathBuf,
    data: PathBuf,
}

fn rules(nodewright: &str) -> Rules {
    let dir = tempfile::tempdir().unwrap();
    Rules {
        recipe: rules_recipe(dir.path(), nodewright),
        snapshot: write(dir.path(), "snapshot.yaml", &good_snapshot()),
        data: test_data(
            dir.path(),
            "30s",
            &["nodewright-customizations", "nvidia-dra-driver-gpu"],
            "",
        ),
        _dir: dir,
    }
}

/// Run the deployment phase against `api`; returns exit code and report.
fn run_deployment(api: &FakeApiServer, r: &Rules, extra: &[&str]) -> (i32, Value, String) {
    let (code, report, err, _) = run_deployment_text(api, r, extra);
    (code, report, err)
}

fn run_deployment_text(
    api: &FakeApiServer,
    r: &Rules,
    extra: &[&str],
) -> (i32, Value, String, String) {
    let out = aicr_on(api)
        .args([
            "validate",
            "--phase",
            "deployment",
            "-r",
            s(&r.recipe),
            "-s",
            s(&r.snapshot),
        ])
        .args(["--data", s(&r.data)])
        .args(extra)
        .output()
        .unwrap();
    let code = out.status.code().unwrap();
    (code, stdout_json(&out), stderr(&out), text(&out))
}

fn message(report: &Value, name: &str) -> String {
    test_named(report, name)["message"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn stdout_lines(report: &Value, name: &str) -> Vec<String> {
    test_named(report, name)["stdout"]
        .as_array()
        .map(|a| a.iter().map(|l| l.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

// ---------------------------------------- deployment rules, fake cluster

#[test]
fn healthy_cluster_passes_every_signal_without_writing() {
    let api = FakeApiServer::start_blocking();
    seed_healthy(&api);
    let r = rules(NODEWRIGHT);
    api.clear_requests();
    let (code, report, err, raw) = run_deployment_text(&api, &r, &[]);
    assert_eq!(code, 0, "{err}\n{report}");
    let writes: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|q| q.is_write())
        .collect();
    assert!(
        writes.is_empty(),
        "deployment readiness must be read-only: {writes:?}"
    );
    insta::assert_snapshot!("deployment_healthy", normalized(&raw));
}

#[test]
fn unhealthy_resources_and_namespaces_fail_with_reasons() {
    let api = FakeApiServer::start_blocking();
    seed_healthy(&api);
    api.insert(deployment("gpu-operator", "gpu-operator", 2, 1));
    api.insert(daemonset(
        "gpu-operator",
        "nvidia-device-plugin-daemonset",
        3,
        1,
    ));
    api.insert(skyhook("tuning", Some("in_progress")));
    api.insert(fixtures::cluster_policy(json!({}), "notReady"));
    api.insert(daemonset(
        "nvidia-dra-driver",
        "nvidia-dra-driver-gpu-kubelet-plugin",
        2,
        1,
    ));
    api.modify("namespaces", "", "skyhook", |ns| {
        ns["status"]["phase"] = "Terminating".into()
    });
    let r = rules(NODEWRIGHT);
    let (code, report, _) = run_deployment(&api, &r, &[]);
    assert_eq!(code, 8);
    assert_eq!(
        message(&report, "expected-resources"),
        "[NOT_FOUND] expected resource check failed: 6 issue(s):
  namespace skyhook: phase=Terminating (want Active)
  Deployment gpu-operator/gpu-operator (gpu-operator): [INTERNAL] not healthy: 1/2 replicas available
  DaemonSet gpu-operator/nvidia-device-plugin-daemonset (gpu-operator): [INTERNAL] not healthy: 1/3 pods ready
  [INTERNAL] 1 of 1 expected Nodewright(s) not ready:
  Nodewright tuning: status=in_progress (want complete)
  [INTERNAL] ClusterPolicy state=notReady (want ready)
  [INTERNAL] DaemonSet nvidia-dra-driver/nvidia-dra-driver-gpu-kubelet-plugin: not healthy: 1/2 pods ready"
    );
    assert_eq!(
        stdout_lines(&report, "expected-resources")[0],
        "  Namespace gpu-operator: Active"
    );
    assert!(stdout_lines(&report, "expected-resources").contains(&"Failed resources:".to_string()));
}

#[test]
fn missing_resources_and_namespaces_are_named() {
    let api = FakeApiServer::start_blocking();
    seed_healthy(&api);
    api.delete("deployments", "gpu-operator", "gpu-operator");
    api.delete("namespaces", "", "nvidia-dra-driver");
    let r = rules(NODEWRIGHT);
    let (code, report, _) = run_deployment(&api, &r, &[]);
    assert_eq!(code, 8);
    let m = message(&report, "expected-resources");
    assert!(
        m.contains(
            "namespace nvidia-dra-driver: namespaces \"nvidia-dra-driver\" not found (HTTP 404)"
        ),
        "{m}"
    );
    assert!(
        m.contains("Deployment gpu-operator/gpu-operator (gpu-operator): [NOT_FOUND] not found: deployments.apps \"gpu-operator\" not found (HTTP 404)"),
        "{m}"
    );
}

#[test]
fn signals_whose_crd_is_not_registered_are_skipped() {
    let api = FakeApiServer::start_blocking();
    for ns in ["gpu-operator", "skyhook", "nvidia-dra-driver"] {
        api.insert(fixtures::namespace(ns));
    }
    api.insert(deployment("gpu-operator", "gpu-operator", 1, 1));
    api.insert(daemonset(
        "gpu-operator",
        "nvidia-device-plugin-daemonset",
        1,
        1,
    ));
    api.insert(daemonset(
        "nvidia-dra-driver",
        "nvidia-dra-driver-gpu-kubelet-plugin",
        1,
        1,
    ));
    let r = rules(NODEWRIGHT);
    let (code, report, err) = run_deployment(&api, &r, &[]);
    assert_eq!(code, 0, "{err}\n{report}");
    let lines = stdout_lines(&report, "expected-resources");
    assert!(
        lines.contains(
            &"  Nodewright: skyhook.nvidia.com/v1alpha1 not registered, skipping".to_string()
        ),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"  ClusterPolicy: nvidia.com/v1 not registered, skipping".to_string()),
        "{lines:?}"
    );
}

#[test]
fn a_registered_crd_without_its_cr_is_a_failure() {
    let api = FakeApiServer::start_blocking();
    seed_healthy(&api);
    api.delete("clusterpolicies", "", "cluster-policy");
    api.delete("skyhooks", "", "tuning");
    let r = rules(NODEWRIGHT);
    let (code, report, _) = run_deployment(&api, &r, &[]);
    assert_eq!(code, 8);
    let m = message(&report, "expected-resources");
    assert!(
        m.contains("[NOT_FOUND] failed to get ClusterPolicy cluster-policy (gpu-operator installed but CR missing?): clusterpolicies.nvidia.com \"cluster-policy\" not found (HTTP 404)"),
        "{m}"
    );
    assert!(
        m.contains(
            "Nodewright tuning: not found (recipe declared it but the cluster has no such CR)"
        ),
        "{m}"
    );
}

#[test]
fn forbidden_reads_fail_closed() {
    let api = FakeApiServer::start_blocking();
    seed_healthy(&api);
    api.deny("skyhooks", "get");
    api.deny("clusterpolicies", "get");
    api.deny("daemonsets", "list");
    let r = rules(NODEWRIGHT);
    let (code, report, _) = run_deployment(&api, &r, &[]);
    assert_eq!(code, 8);
    let m = message(&report, "expected-resources");
    assert!(m.contains("Nodewright tuning: failed to get: "), "{m}");
    assert!(m.contains("(HTTP 403)"), "{m}");
    assert!(
        m.contains("failed to get ClusterPolicy cluster-policy"),
        "{m}"
    );
    assert!(
        m.contains("failed to list DaemonSets in namespace nvidia-dra-driver"),
        "{m}"
    );
}

#[test]
fn nodewright_without_extractable_names_fails_closed() {
    let api = FakeApiServer::start_blocking();
    seed_healthy(&api);
    let dir = tempfile::tempdir().unwrap();
    let mut r = rules(
        "  - name: nodewright-customizations
    namespace: skyhook
    manifestFiles:
      - components/nodewright-customizations/manifests/templated.yaml
",
    );
    let data = test_data(
        dir.path(),
        "30s",
        &["nodewright-customizations", "nvidia-dra-driver-gpu"],
        "",
    );
    write(
        &data,
        "components/nodewright-customizations/manifests/templated.yaml",
        "---\napiVersion: skyhook.nvidia.com/v1alpha1\nkind: Skyhook\nmetadata:\n  name: {{ .Values.name }}\n",
    );
    r.data = data;
    let (code, report, _) = run_deployment(&api, &r, &[]);
    assert_eq!(code, 8);
    let m = message(&report, "expected-resources");
    assert!(
        m.contains("[INVALID_REQUEST] no Nodewright CR names could be extracted from component nodewright-customizations manifestFiles=[components/nodewright-customizations/manifests/templated.yaml]"),
        "{m}"
    );
}

#[test]
fn upstream_skyhook_customizations_name_is_accepted() {
    let api = FakeApiServer::start_blocking();
    seed_healthy(&api);
    api.insert(skyhook("gb200-tuning", Some("complete")));
    let dir = tempfile::tempdir().unwrap();
    let mut r = rules(
        "  - name: skyhook-customizations
    namespace: skyhook
    manifestFiles:
      - components/skyhook-customizations/manifests/tuning.yaml
",
    );
    let data = test_data(
        dir.path(),
        "30s",
        &["skyhook-customizations", "nvidia-dra-driver-gpu"],
        "",
    );
    write(
        &data,
        "components/skyhook-customizations/manifests/tuning.yaml",
        "apiVersion: skyhook.nvidia.com/v1alpha1\nkind: Skyhook\nmetadata:\n  name: gb200-tuning\nspec: {}\n",
    );
    r.data = data;
    let (code, report, err) = run_deployment(&api, &r, &[]);
    assert_eq!(code, 0, "{err}\n{report}");
    assert!(
        stdout_lines(&report, "expected-resources")
            .contains(&"  Nodewright gb200-tuning: complete".to_string())
    );
}

#[test]
fn dra_kubelet_plugin_is_found_by_suffix_and_must_be_unique() {
    let api = FakeApiServer::start_blocking();
    seed_healthy(&api);
    api.delete(
        "daemonsets",
        "nvidia-dra-driver",
        "nvidia-dra-driver-gpu-kubelet-plugin",
    );
    api.insert(daemonset(
        "nvidia-dra-driver",
        "my-dra-kubelet-plugin",
        3,
        3,
    ));
    let r = rules(NODEWRIGHT);
    let (code, report, err) = run_deployment(&api, &r, &[]);
    assert_eq!(code, 0, "{err}\n{report}");
    assert!(
        stdout_lines(&report, "expected-resources")
            .contains(&"  DaemonSet nvidia-dra-driver/my-dra-kubelet-plugin: healthy".to_string())
    );

    api.insert(daemonset("nvidia-dra-driver", "other-kubelet-plugin", 1, 1));
    let (code, report, _) = run_deployment(&api, &r, &[]);
    assert_eq!(code, 8);
    assert!(message(&report, "expected-resources").contains(
        "[INVALID_REQUEST] ambiguous: 2 DaemonSets in namespace nvidia-dra-driver match kubelet-plugin role suffix \"-kubelet-plugin\": [my-dra-kubelet-plugin, other-kubelet-plugin]"
    ));

    api.delete("daemonsets", "nvidia-dra-driver", "my-dra-kubelet-plugin");
    api.delete("daemonsets", "nvidia-dra-driver", "other-kubelet-plugin");
    let (code, report, _) = run_deployment(&api, &r, &[]);
    assert_eq!(code, 8);
    assert!(message(&report, "expected-resources").contains(
        "[NOT_FOUND] no kubelet-plugin DaemonSet (name suffix \"-kubelet-plugin\") found in namespace nvidia-dra-driver (DaemonSets in namespace: [nvidia-dra-driver-gpu-controller-ds])"
    ));

    api.insert(daemonset(
        "nvidia-dra-driver",
        "nvidia-dra-driver-gpu-kubelet-plugin",
        0,
        0,
    ));
    let (code, report, _) = run_deployment(&api, &r, &[]);
    assert_eq!(code, 8);
    assert!(
        message(&report, "expected-resources")
            .contains("no ready kubelet-plugin pods scheduled (0/0 pods ready)")
    );
}

#[test]
fn catalog_health_checks_run_natively() {
    let api = FakeApiServer::start_blocking();
    api.insert(fixtures::namespace("gpu-operator"));
    api.insert(deployment("gpu-operator", "gpu-operator", 1, 1));
    api.insert(fixtures::cluster_policy_crd());
    api.insert(fixtures::cluster_policy(json!({}), "ready"));
    let dir = tempfile::tempdir().unwrap();
    // No expectedResources: the registry's checks/gpu-operator/health-check.yaml decides.
    let r = write(
        dir.path(),
        "r.yaml",
        &recipe(
            GATE,
            "validation:\n  deployment:\n    checks: [expected-resources]",
            "  - name: gpu-operator\n    namespace: gpu-operator\n",
        ),
    );
    let snap = write(dir.path(), "s.yaml", &good_snapshot());
    let data = test_data(dir.path(), "8s", &[], "");
    let run = || {
        let out = aicr_on(&api)
            .args([
                "validate",
                "--phase",
                "deployment",
                "-r",
                s(&r),
                "-s",
                s(&snap),
                "--data",
                s(&data),
            ])
            .output()
            .unwrap();
        (out.status.code().unwrap(), stdout_json(&out))
    };
    let (code, report) = run();
    assert_eq!(code, 0, "{report}");
    assert!(
        stdout_lines(&report, "expected-resources")
            .contains(&"  gpu-operator: chainsaw health check passed".to_string())
    );

    api.insert(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "nvidia-driver-abc", "namespace": "gpu-operator"},
        "spec": {"containers": [{"name": "c", "image": "x"}]}, "status": {"phase": "Pending"}}));
    let (code, report) = run();
    assert_eq!(code, 8);
    let m = message(&report, "expected-resources");
    assert!(
        m.contains("gpu-operator: chainsaw health check failed:\nstep validate-all-pods-healthy: error Pod gpu-operator/*: Pod nvidia-driver-abc matches the error condition"),
        "{m}"
    );
}

#[test]
fn disabled_components_are_not_checked() {
    let api = FakeApiServer::start_blocking();
    seed_healthy(&api);
    let r = rules(NODEWRIGHT);
    let (code, report, _) = run_deployment(&api, &r, &[]);
    assert_eq!(code, 0);
    let lines = stdout_lines(&report, "expected-resources").join("\n");
    assert!(!lines.contains("cert-manager"), "{lines}");
}

// ------------------------------------------- other checks, fake cluster

const NVIDIA_SMI_LOG: &str =
    "+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 580.105.08             Driver Version: 580.105.08     CUDA Version: 13.0     |
+-----------------------------------------------------------------------------------------+
GPU_CHECK_SUCCESS
";

/// Plays the kubelet for pods whose name starts with `prefix`: records
/// them and lets them succeed with `log`.
fn kubelet_runs_pods(
    api: &FakeApiServer,
    prefix: &'static str,
    log: &'static str,
) -> Arc<Mutex<Vec<Value>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    api.on_create("pods", move |cluster, pod| {
        let name = pod["metadata"]["name"].as_str().unwrap().to_string();
        if !name.starts_with(prefix) {
            return;
        }
        let ns = pod["metadata"]["namespace"].as_str().unwrap().to_string();
        record.lock().unwrap().push(pod.clone());
        cluster.set_pod_log(&ns, &name, log);
        cluster.update_status("pods", &ns, &name, json!({"phase": "Succeeded"}));
    });
    seen
}

fn gpu_operator_pod(phase: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "gpu-operator-abc", "namespace": "gpu-operator", "labels": {"app": "gpu-operator"}},
        "spec": {"containers": [{"name": "c", "image": "nvcr.io/nvidia/gpu-operator:v25.3.0"}]},
        "status": {"phase": phase}})
}

fn deployment_checks_recipe(dir: &Path, checks: &str, constraint: &str) -> PathBuf {
    write(
        dir,
        "deploy-recipe.yaml",
        &recipe(
            GATE,
            &format!(
                "validation:\n  deployment:\n    checks: [{checks}]\n    constraints:\n      - name: Deployment.gpu-operator.version\n        value: '{constraint}'"
            ),
            "  - name: gpu-operator\n    namespace: gpu-operator\n",
        ),
    )
}

#[test]
fn operator_version_and_nvidia_smi_checks_look_at_the_cluster() {
    let api = FakeApiServer::start_blocking();
    api.insert(gpu_operator_pod("Running"));
    let mut d = deployment("gpu-operator", "gpu-operator", 1, 1);
    d["metadata"]["labels"]["app.kubernetes.io/version"] = "v25.3.0".into();
    api.insert(d);
    api.insert(fixtures::node("gpu-node-1.ec2.internal").gpus(8).build());
    api.insert(fixtures::node("cpu-node-1").build());
    let pods = kubelet_runs_pods(&api, "nvidia-smi-verify-", NVIDIA_SMI_LOG);
    let dir = tempfile::tempdir().unwrap();
    let r = deployment_checks_recipe(
        dir.path(),
        "operator-health, gpu-operator-version, check-nvidia-smi",
        ">= v24.6.0",
    );
    let snap = write(dir.path(), "s.yaml", &good_snapshot());
    let out = aicr_on(&api)
        .args([
            "validate",
            "--phase",
            "deployment",
            "-r",
            s(&r),
            "-s",
            s(&snap),
        ])
        .args([
            "--toleration",
            "dedicated=gpu:NoSchedule",
            "--node-selector",
            "nodeGroup=gpu",
        ])
        .output()
        .unwrap();
    let report = stdout_json(&out);
    assert_eq!(out.status.code(), Some(0), "{}\n{report}", stderr(&out));
    insta::assert_snapshot!("deployment_checks_pass", normalized(&text(&out)));
    let pods = pods.lock().unwrap();
    assert_eq!(pods.len(), 1, "one probe per GPU node");
    let spec = &pods[0]["spec"];
    assert_eq!(spec["nodeName"], "gpu-node-1.ec2.internal");
    assert_eq!(
        spec["tolerations"],
        json!([{"operator": "Exists"}]),
        "pinned pods ignore --toleration"
    );
    assert!(
        spec.get("nodeSelector").is_none(),
        "pinned pods ignore --node-selector"
    );
    assert_eq!(
        spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"],
        "1"
    );
    assert!(
        api.list("pods", "aicr-validation").is_empty(),
        "probe pods are cleaned up"
    );
    assert_eq!(
        api.get("namespaces", "", "aicr-validation").unwrap()["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "aicr"
    );
}

#[test]
fn operator_checks_fail_on_what_they_find() {
    let api = FakeApiServer::start_blocking();
    api.insert(gpu_operator_pod("Pending"));
    let mut d = deployment("gpu-operator", "gpu-operator", 1, 1);
    d["spec"]["template"] =
        json!({"spec": {"containers": [{"image": "nvcr.io/nvidia/gpu-operator:24.3.0-ubi9"}]}});
    api.insert(d);
    let dir = tempfile::tempdir().unwrap();
    let r = deployment_checks_recipe(
        dir.path(),
        "operator-health, gpu-operator-version",
        ">= v24.6.0",
    );
    let snap = write(dir.path(), "s.yaml", &good_snapshot());
    let out = aicr_on(&api)
        .args([
            "validate",
            "--phase",
            "deployment",
            "-r",
            s(&r),
            "-s",
            s(&snap),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(8));
    let report = stdout_json(&out);
    assert_eq!(
        message(&report, "operator-health"),
        "no gpu-operator pod is Running (0/1)"
    );
    assert_eq!(
        message(&report, "gpu-operator-version"),
        "GPU Operator version v24.3.0 does not satisfy >= v24.6.0"
    );
    assert_eq!(
        stdout_lines(&report, "gpu-operator-version"),
        [
            "Detected GPU Operator version: v24.3.0",
            "Constraint: >= v24.6.0 → false"
        ]
    );
}

#[test]
fn nvidia_smi_skips_without_idle_gpu_nodes() {
    let api = FakeApiServer::start_blocking();
    api.insert(fixtures::node("cpu-node-1").build());
    let dir = tempfile::tempdir().unwrap();
    let r = deployment_checks_recipe(dir.path(), "check-nvidia-smi", ">= v1");
    let snap = write(dir.path(), "s.yaml", &good_snapshot());
    let run = || {
        let out = aicr_on(&api)
            .args([
                "validate",
                "--phase",
                "deployment",
                "-r",
                s(&r),
                "-s",
                s(&snap),
            ])
            .output()
            .unwrap();
        (out.status.code().unwrap(), stdout_json(&out))
    };
    let (code, report) = run();
    assert_eq!(code, 0);
    assert_eq!(
        statuses(&report),
        [("check-nvidia-smi".to_string(), "skipped".to_string())]
    );
    assert_eq!(
        message(&report, "check-nvidia-smi"),
        "no GPU nodes found in the cluster"
    );

    api.insert(fixtures::node("gpu-1").gpus(8).build());
    api.insert(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "training-0", "namespace": "default"},
        "spec": {"nodeName": "gpu-1", "containers": [{"name": "t", "image": "x", "resources": {"limits": {"nvidia.com/gpu": "8"}}}]},
        "status": {"phase": "Running"}}));
    let (code, report) = run();
    assert_eq!(code, 0);
    assert_eq!(
        message(&report, "check-nvidia-smi"),
        "GPU nodes busy with existing workloads: [gpu-1]"
    );
}

#[test]
fn a_failed_phase_skips_the_later_ones() {
    let api = FakeApiServer::start_blocking();
    let dir = tempfile::tempdir().unwrap();
    let snap = write(dir.path(), "s.yaml", &good_snapshot());
    // Short budgets: the recipe's health-check asserts give up quickly.
    let data = test_data(dir.path(), "6s", &[], "");
    let run = |extra: &[&str]| {
        aicr_on(&api)
            .args(["validate", "-r"])
            .arg(gb200_recipe())
            .args(["-s", s(&snap), "--data", s(&data)])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(8));
    assert!(stderr(&out).contains("error: validation failed: one or more phases did not pass"));
    insta::assert_snapshot!(
        "deployment_failed_later_phases_skipped",
        normalized(&text(&out))
    );
    let out = run(&["--fail-on-error=false"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

// ------------------------------------------------------ validator Jobs

/// Plays the Job controller and kubelet for validator Jobs: records each
/// Job, gives it a pod that ends with `exit` (`oom`: killed for memory)
/// and `log`, and marks the Job finished.
fn kubelet_runs_jobs(
    api: &FakeApiServer,
    exit: i32,
    oom: bool,
    log: &'static str,
) -> Arc<Mutex<Vec<Value>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    api.on_create("jobs", move |cluster, job| {
        record.lock().unwrap().push(job.clone());
        let ns = job["metadata"]["namespace"].as_str().unwrap().to_string();
        let name = job["metadata"]["name"].as_str().unwrap().to_string();
        let mut pod = fixtures::job_pod(job, exit);
        let term = &mut pod["status"]["containerStatuses"][0]["state"]["terminated"];
        if oom {
            term["reason"] = "OOMKilled".into();
        } else if exit == 1 {
            term["message"] = "[INTERNAL] custom check failed: widget missing\n".into();
        }
        let pod_name = pod["metadata"]["name"].as_str().unwrap().to_string();
        cluster.insert(pod);
        cluster.set_pod_log(&ns, &pod_name, log);
        let status = if exit == 0 {
            fixtures::job_complete_status()
        } else {
            fixtures::job_failed_status("BackoffLimitExceeded")
        };
        cluster.update_status("jobs", &ns, &name, status);
    });
    seen
}

const CUSTOM_CHECK: &str = "  - name: custom-check
    phase: deployment
    description: A team's own check
    image: example.com/team/custom-check:1.0
    timeout: 20s
    args: [custom]
    env:
      - {name: TEAM_SETTING, value: strict}
";

fn custom_check_run(api: &FakeApiServer, extra: &[&str]) -> (i32, Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let data = test_data(dir.path(), "30s", &[], CUSTOM_CHECK);
    let r = write(
        dir.path(),
        "r.yaml",
        &recipe(
            GATE,
            "validation:\n  deployment:\n    checks: [custom-check]",
            "  []",
        ),
    );
    let snap = write(dir.path(), "s.yaml", &good_snapshot());
    let out = aicr_on(api)
        .args([
            "validate",
            "--phase",
            "deployment",
            "-r",
            s(&r),
            "-s",
            s(&snap),
            "--data",
            s(&data),
        ])
        .args(extra)
        .output()
        .unwrap();
    (out.status.code().unwrap(), stdout_json(&out), stderr(&out))
}

#[test]
fn a_custom_image_runs_as_a_validator_job_with_the_orchestrator_rules() {
    let api = FakeApiServer::start_blocking();
    let jobs = kubelet_runs_jobs(&api, 0, false, "widget ok\nall good\n");
    let (code, report, err) = custom_check_run(
        &api,
        &[
            "--node-selector",
            "nodeGroup=gpu",
            "--toleration",
            "dedicated=gpu:NoSchedule",
            "--toleration",
            "nvidia.com/gpu:NoExecute",
            "--image-pull-secret",
            "regcred",
        ],
    );
    assert_eq!(code, 0, "{err}\n{report}");
    let t = test_named(&report, "custom-check");
    assert_eq!(t["status"], "passed");
    assert_eq!(t["suite"], json!(["deployment"]));
    assert_eq!(t["stdout"], json!(["widget ok", "all good"]));

    let jobs = jobs.lock().unwrap();
    let job = &jobs[0];
    let name = job["metadata"]["name"].as_str().unwrap();
    assert!(
        name.starts_with("aicr-custom-check-") && name.len() == "aicr-custom-check-".len() + 8,
        "{name}"
    );
    let labels = &job["metadata"]["labels"];
    assert_eq!(labels["aicr.nvidia.com/validator"], "custom-check");
    assert_eq!(labels["aicr.nvidia.com/phase"], "deployment");
    assert_eq!(labels["aicr.nvidia.com/job-type"], "validation");
    let spec = &job["spec"];
    assert_eq!(spec["activeDeadlineSeconds"], 20);
    assert_eq!(spec["backoffLimit"], 0);
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "aicr-validator");
    assert_eq!(
        pod["tolerations"],
        json!([{"operator": "Exists"}]),
        "the orchestrator tolerates everything"
    );
    assert!(
        pod.get("nodeSelector").is_none(),
        "the orchestrator is never pinned by --node-selector"
    );
    assert_eq!(
        pod["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["preference"]
            ["matchExpressions"][0],
        json!({"key": "nvidia.com/gpu.present", "operator": "DoesNotExist"})
    );
    assert_eq!(pod["imagePullSecrets"], json!([{"name": "regcred"}]));
    let c = &pod["containers"][0];
    assert_eq!(c["image"], "example.com/team/custom-check:1.0");
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
    assert_eq!(c["args"], json!(["custom"]));
    let env: Vec<(String, Value)> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e.get("value").cloned().unwrap_or(Value::Null),
            )
        })
        .collect();
    let names: Vec<&str> = env.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "AICR_SNAPSHOT_PATH",
            "AICR_RECIPE_PATH",
            "AICR_VALIDATOR_NAME",
            "AICR_VALIDATOR_PHASE",
            "AICR_RUN_ID",
            "AICR_NAMESPACE",
            "AICR_NODE_SELECTOR",
            "AICR_TOLERATIONS",
            "TEAM_SETTING"
        ]
    );
    assert_eq!(env[6].1, "nodeGroup=gpu");
    assert_eq!(
        env[7].1,
        "dedicated=gpu:NoSchedule,nvidia.com/gpu:NoExecute"
    );
    assert_eq!(env[8].1, "strict");

    // Preparation happened and was cleaned up; the namespace stays.
    let run_id = labels["aicr.nvidia.com/run-id"].as_str().unwrap();
    let deleted: Vec<String> = api
        .requests()
        .into_iter()
        .filter(|q| q.method == "DELETE")
        .map(|q| q.path)
        .collect();
    for path in [
        format!("/apis/batch/v1/namespaces/aicr-validation/jobs/{name}"),
        "/api/v1/namespaces/aicr-validation/serviceaccounts/aicr-validator".to_string(),
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/aicr-validator".to_string(),
        format!("/api/v1/namespaces/aicr-validation/configmaps/aicr-snapshot-{run_id}"),
        format!("/api/v1/namespaces/aicr-validation/configmaps/aicr-recipe-{run_id}"),
        format!("/api/v1/namespaces/aicr-validation/configmaps/aicr-ctrf-{run_id}-deployment"),
    ] {
        assert!(deleted.contains(&path), "{path} not deleted: {deleted:?}");
    }
    assert!(
        api.get("clusterrolebindings", "", "aicr-validator")
            .is_none()
    );
    assert!(api.get("namespaces", "", "aicr-validation").is_some());
}

#[test]
fn phase_reports_are_published_for_runs_with_validator_jobs() {
    let api = FakeApiServer::start_blocking();
    let jobs = kubelet_runs_jobs(&api, 0, false, "ok\n");
    let (code, report, err) = custom_check_run(&api, &["--no-cleanup"]);
    assert_eq!(code, 0, "{err}");
    let run_id = jobs.lock().unwrap()[0]["metadata"]["labels"]["aicr.nvidia.com/run-id"]
        .as_str()
        .unwrap()
        .to_string();
    let name = format!("aicr-ctrf-{run_id}-deployment");
    let cm = api
        .get("configmaps", "aicr-validation", &name)
        .expect("the phase report ConfigMap is kept with --no-cleanup");
    let labels = &cm["metadata"]["labels"];
    assert_eq!(labels["aicr.nvidia.com/phase"], "deployment");
    assert_eq!(labels["aicr.nvidia.com/report-type"], "ctrf");
    assert_eq!(labels["aicr.nvidia.com/run-id"], run_id.as_str());
    assert_eq!(labels["app.kubernetes.io/managed-by"], "aicr");
    let stored = cm["data"]["report.json"].as_str().unwrap();
    assert!(!stored.ends_with('\n'));
    let stored: Value = serde_json::from_str(stored).unwrap();
    assert_eq!(stored["results"]["tests"], report["results"]["tests"]);
    let applied = api.requests().into_iter().any(|q| {
        q.method == "PATCH"
            && q.path.ends_with(&format!("/configmaps/{name}"))
            && q.param("fieldManager").as_deref() == Some("aicr-validator")
    });
    assert!(applied, "server-side applied by aicr-validator");
}

#[test]
fn validator_job_exit_codes_map_to_statuses_and_other_fails_the_run() {
    let api = FakeApiServer::start_blocking();
    kubelet_runs_jobs(&api, 137, true, "");
    let (code, report, err) = custom_check_run(&api, &[]);
    assert_eq!(code, 8, "{err}");
    let t = test_named(&report, "custom-check");
    assert_eq!(
        (t["status"].as_str(), t["message"].as_str()),
        (Some("other"), Some("Container OOMKilled"))
    );
    assert!(err.contains("validation failed: one or more phases did not pass"));
    let (code, _, _) = custom_check_run(&api, &["--fail-on-error=false"]);
    assert_eq!(code, 0);

    let api = FakeApiServer::start_blocking();
    kubelet_runs_jobs(&api, 1, false, "checking widget\n");
    let (code, report, _) = custom_check_run(&api, &[]);
    assert_eq!(code, 8);
    let t = test_named(&report, "custom-check");
    assert_eq!(t["status"], "failed");
    assert_eq!(
        t["message"],
        "[INTERNAL] custom check failed: widget missing"
    );

    let api = FakeApiServer::start_blocking();
    kubelet_runs_jobs(
        &api,
        2,
        false,
        "level=INFO msg=SKIP reason=\"no widgets\"\n",
    );
    let (code, report, _) = custom_check_run(&api, &[]);
    assert_eq!(code, 0);
    assert_eq!(test_named(&report, "custom-check")["status"], "skipped");
}

#[test]
fn a_refused_validator_job_is_other() {
    let api = FakeApiServer::start_blocking();
    api.deny("jobs", "patch");
    let (code, report, _) = custom_check_run(&api, &[]);
    assert_eq!(code, 8);
    let t = test_named(&report, "custom-check");
    assert_eq!(t["status"], "other");
    assert_eq!(t["duration"], 0, "a Job that never ran took no time");
    assert!(
        t["message"]
            .as_str()
            .unwrap()
            .starts_with("failed to deploy Job: failed to apply Job with prefix custom-check: "),
        "{t}"
    );
}

/// An entry with an upstream validator image whose check the CLI does not
/// implement: it runs as a validator Job under the upstream image name.
const MIRRORED_CHECK: &str = "  - name: mirrored-check
    phase: deployment
    image: ghcr.io/nvidia/aicr-validators/deployment:latest
    timeout: 20s
    args: [team-probe]
";

#[test]
fn validator_image_flags_and_their_variables_rewrite_validator_job_images() {
    let api = FakeApiServer::start_blocking();
    let jobs = kubelet_runs_jobs(&api, 0, false, "ok\n");
    let dir = tempfile::tempdir().unwrap();
    let data = test_data(dir.path(), "30s", &[], MIRRORED_CHECK);
    let r = write(
        dir.path(),
        "r.yaml",
        &recipe(
            GATE,
            "validation:\n  deployment:\n    checks: [mirrored-check]",
            "  []",
        ),
    );
    let snap = write(dir.path(), "s.yaml", &good_snapshot());
    // Each run's validator Job: its container's image and pull policy.
    let run = |env: &[(&str, &str)], flags: &[&str]| {
        let mut c = aicr_on(&api);
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c
            .args(["validate", "--phase", "deployment", "-r", s(&r), "-s"])
            .args([s(&snap), "--data", s(&data)])
            .args(flags)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let job = jobs.lock().unwrap().pop().expect("a validator Job");
        let c = &job["spec"]["template"]["spec"]["containers"][0];
        (
            c["image"].as_str().unwrap().to_string(),
            c["imagePullPolicy"].as_str().unwrap().to_string(),
        )
    };
    let pair = |image: &str, policy: &str| (image.to_string(), policy.to_string());

    assert_eq!(
        run(&[], &[]),
        pair("ghcr.io/nvidia/aicr-validators/deployment:latest", "Always")
    );
    assert_eq!(
        run(
            &[],
            &[
                "--validator-image-registry",
                "mirror.local/ai",
                "--validator-image-tag",
                "v0.11.1"
            ]
        ),
        pair(
            "mirror.local/ai/aicr-validators/deployment:v0.11.1",
            "IfNotPresent"
        )
    );
    let env = [
        ("AICR_VALIDATOR_IMAGE_REGISTRY", "env.mirror.io/nv"),
        ("AICR_VALIDATOR_IMAGE_TAG", "v1"),
    ];
    assert_eq!(
        run(&env, &[]),
        pair(
            "env.mirror.io/nv/aicr-validators/deployment:v1",
            "IfNotPresent"
        ),
        "the variables still work"
    );
    assert_eq!(
        run(&env, &["--validator-image-registry", "flag.mirror.io/x"]),
        pair(
            "flag.mirror.io/x/aicr-validators/deployment:v1",
            "IfNotPresent"
        ),
        "a flag wins over its variable"
    );
}

#[test]
fn help_lists_the_image_flags_with_their_variables() {
    let out = aicr().args(["validate", "--help"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out).split_whitespace().collect::<Vec<_>>().join(" ");
    for (flag, var) in [
        (
            "--validator-image-registry",
            "AICR_VALIDATOR_IMAGE_REGISTRY",
        ),
        ("--validator-image-tag", "AICR_VALIDATOR_IMAGE_TAG"),
        ("--nccl-tests-image", "AICR_NCCL_TESTS_IMAGE"),
    ] {
        let at = help
            .find(&format!("{flag} <"))
            .unwrap_or_else(|| panic!("{flag} missing from:\n{help}"));
        let entry = &help[at..];
        let entry = &entry[..entry[2..].find(" --").map_or(entry.len(), |e| e + 2)];
        assert!(entry.contains(&format!("[env: {var}")), "{entry}");
    }
}

// ------------------------------------- performance and conformance checks

fn conformance_recipe(dir: &Path, checks: &str, components: &str) -> PathBuf {
    write(
        dir,
        "conformance-recipe.yaml",
        &recipe(
            GATE,
            &format!(
                "validation:\n  performance:\n    checks: [nccl-all-reduce-bw]\n    constraints:\n      - name: nccl-all-reduce-bw\n        value: '>= 300'\n  conformance:\n    checks: [{checks}]"
            ),
            components,
        ),
    )
}

const ALL_CONFORMANCE: &str = "dra-support, gang-scheduling, accelerator-metrics, ai-service-metrics, inference-gateway, pod-autoscaling, cluster-autoscaling, robust-controller, secure-accelerator-access, gpu-operator-health, platform-health";

#[test]
fn checks_skip_or_fail_closed_on_a_bare_cluster() {
    let api = FakeApiServer::start_blocking();
    let dir = tempfile::tempdir().unwrap();
    let r = conformance_recipe(dir.path(), ALL_CONFORMANCE, "  []");
    let snap = write(dir.path(), "s.yaml", &good_snapshot());
    let data = test_data(dir.path(), "20s", &[], "");
    let evidence = dir.path().join("evidence");
    let out = aicr_on(&api)
        .args([
            "validate",
            "--phase",
            "performance",
            "--phase",
            "conformance",
            "-r",
            s(&r),
            "-s",
            s(&snap),
        ])
        .args(["--data", s(&data), "--evidence-dir", s(&evidence)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(8), "{}", stderr(&out));
    insta::assert_snapshot!(
        "bare_cluster_performance_conformance",
        normalized(&text(&out))
    );
    // Evidence only for requirements whose checks ran (not skipped).
    let mut files: Vec<String> = fs::read_dir(&evidence)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "accelerator-metrics.md",
            "cluster-autoscaling.md",
            "index.md"
        ]
    );
    let md = fs::read_to_string(evidence.join("accelerator-metrics.md")).unwrap();
    assert!(md.contains("Result: **FAILED**"), "{md}");
}

#[test]
fn dra_test_pods_take_the_scheduling_flags() {
    let api = FakeApiServer::start_blocking();
    fixtures::platform::dra(&api, 2);
    fixtures::platform::dra_driver(&api);
    let pods = kubelet_runs_pods(&api, "aicr-dra-", "GPU 0: NVIDIA H100 80GB HBM3\n");
    let dir = tempfile::tempdir().unwrap();
    let r = conformance_recipe(
        dir.path(),
        "dra-support",
        "  - name: nvidia-dra-driver-gpu\n    namespace: nvidia-dra-driver\n",
    );
    let snap = write(dir.path(), "s.yaml", &good_snapshot());
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
        .args([
            "--node-selector",
            "nodeGroup=gpu",
            "--toleration",
            "dedicated=gpu:NoSchedule",
        ])
        .output()
        .unwrap();
    let report = stdout_json(&out);
    assert_eq!(out.status.code(), Some(0), "{}\n{report}", stderr(&out));
    assert_eq!(test_named(&report, "dra-support")["status"], "passed");
    let pods = pods.lock().unwrap();
    let spec = &pods[0]["spec"];
    assert_eq!(spec["nodeSelector"], json!({"nodeGroup": "gpu"}));
    assert_eq!(
        spec["tolerations"],
        json!([{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}])
    );
    assert_eq!(
        spec["resourceClaims"][0]["resourceClaimName"],
        pods[0]["metadata"]["name"]
    );
    assert!(
        api.list("resourceclaims", "aicr-validation").is_empty(),
        "claims are cleaned up"
    );
}

const NCCL_LOG: &str = "#  out-of-place                       in-place
#       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw   busbw #wrong
     1048576        262144     float     sum      -1    55.10   19.03   35.68      0    54.20   19.35   36.27      0
  8589934592    2147483648     float     sum      -1  32989.0  260.39  488.37      0  32970.0  260.54  488.65      0
# Avg bus bandwidth    : 262.02
";

#[test]
fn nccl_bandwidth_runs_through_kubeflow_trainer() {
    let api = FakeApiServer::start_blocking();
    for n in ["gpu-1", "gpu-2"] {
        api.insert(
            fixtures::node(n)
                .gpus(8)
                .label("node.kubernetes.io/instance-type", "p5.48xlarge")
                .build(),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let r = conformance_recipe(dir.path(), "platform-health", "  []");
    let snap = write(dir.path(), "s.yaml", &good_snapshot());
    let run = || {
        let out = aicr_on(&api)
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
            .output()
            .unwrap();
        (out.status.code().unwrap(), stdout_json(&out), stderr(&out))
    };
    let (code, report, _) = run();
    assert_eq!(code, 0);
    assert_eq!(
        message(&report, "nccl-all-reduce-bw"),
        "Kubeflow Trainer is not installed (trainer.kubeflow.org/v1alpha1 TrainJob and TrainingRuntime are not served); install it to run the NCCL benchmark"
    );

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
    let runtimes = Arc::new(Mutex::new(Vec::new()));
    let record = runtimes.clone();
    api.on_create("trainingruntimes", move |_, rt| {
        record.lock().unwrap().push(rt.clone())
    });
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
    let out = aicr_on(&api)
        .env_remove("AICR_NCCL_TESTS_IMAGE")
        .args([
            "validate",
            "--phase",
            "performance",
            "-r",
            s(&r),
            "-s",
            s(&snap),
        ])
        .output()
        .unwrap();
    assert_eq!(
        message(&stdout_json(&out), "nccl-all-reduce-bw"),
        "no NCCL benchmark image: set AICR_NCCL_TESTS_IMAGE to an image that provides mpirun and all_reduce_perf (nccl-tests)"
    );
    let (code, report, err) = run();
    assert_eq!(code, 0, "{err}\n{report}");
    let t = test_named(&report, "nccl-all-reduce-bw");
    assert_eq!(t["status"], "passed");
    assert_eq!(
        stdout_lines(&report, "nccl-all-reduce-bw")[1..],
        [
            "NCCL All Reduce bandwidth: 488.37 GB/s",
            "Constraint: >= 300 → true"
        ]
    );
    // --nccl-tests-image names the image as the variable does.
    let out = aicr_on(&api)
        .args(["validate", "--phase", "performance", "-r", s(&r), "-s"])
        .args([s(&snap), "--nccl-tests-image", "registry.local/flag-nccl:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let flagged = runtimes.lock().unwrap()[1].clone();
    assert_eq!(
        flagged["spec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
            ["containers"][0]["image"],
        "registry.local/flag-nccl:1"
    );
    let rt = &runtimes.lock().unwrap()[0];
    let launcher = &rt["spec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]
        ["spec"];
    assert_eq!(
        launcher["containers"][0]["image"],
        "registry.local/nccl-tests:2.16"
    );
    let worker = &rt["spec"]["template"]["spec"]["replicatedJobs"][1]["template"]["spec"]["template"]
        ["spec"];
    assert_eq!(
        worker["nodeSelector"],
        json!({"node.kubernetes.io/instance-type": "p5.48xlarge"})
    );
    assert_eq!(worker["tolerations"], json!([{"operator": "Exists"}]));
    assert!(api.list("trainjobs", "aicr-validation").is_empty());
}

// ------------------------------------------------- agent mode and sinks

#[test]
fn without_a_snapshot_the_agent_job_captures_one() {
    let api = FakeApiServer::start_blocking();
    api.agent_jobs_write(good_snapshot());
    let dir = tempfile::tempdir().unwrap();
    let gate_only = write(dir.path(), "r.yaml", &recipe(GATE, "", "  []"));
    let out = aicr_on(&api)
        .args(["validate", "--phase", "deployment", "-r"])
        .arg(&gate_only)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("capturing one with the agent Job in aicr-validation"),
        "{err}"
    );
    assert!(
        err.contains("readiness constraint passed: name=K8s.server.version"),
        "{err}"
    );
    let created: Vec<String> = api
        .requests()
        .into_iter()
        .filter(|q| q.method == "POST")
        .map(|q| q.path)
        .collect();
    assert!(
        created
            .iter()
            .any(|p| p == "/apis/batch/v1/namespaces/aicr-validation/jobs"),
        "{created:?}"
    );
}

/// The agent Jobs the fake API server was asked to create, as sent.
fn agent_jobs_sent(api: &FakeApiServer) -> Vec<Value> {
    api.requests()
        .into_iter()
        .filter(|q| {
            q.method == "POST" && q.path == "/apis/batch/v1/namespaces/aicr-validation/jobs"
        })
        .map(|q| serde_json::from_str(&q.body).unwrap())
        .collect()
}

#[test]
fn the_agent_job_takes_the_flags_aicr_snapshot_takes() {
    let api = FakeApiServer::start_blocking();
    api.agent_jobs_write(good_snapshot());
    api.insert(
        json!({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
        "metadata": {"name": "nvidia"}, "handler": "nvidia"}),
    );
    let dir = tempfile::tempdir().unwrap();
    let gate_only = write(dir.path(), "r.yaml", &recipe(GATE, "", "  []"));
    let validate = |flags: &[&str]| {
        aicr_on(&api)
            .args(["validate", "--phase", "deployment", "-r", s(&gate_only)])
            .args(flags)
            .output()
            .unwrap()
    };

    // Before, validate always ran the agent privileged with no RuntimeClass.
    let out = validate(&[
        "--privileged=false",
        "--runtime-class",
        "nvidia",
        "--max-nodes-per-entry",
        "3",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let job = agent_jobs_sent(&api)
        .pop()
        .expect("an agent Job was created");
    assert_eq!(
        job["metadata"]["name"], "aicr-validate",
        "validate's own default"
    );
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["runtimeClassName"], "nvidia");
    assert!(pod.get("hostPID").is_none(), "{pod}");
    assert_eq!(pod["securityContext"]["runAsUser"], 65534);
    let env: Vec<(&str, &str)> = pod["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| Some((e["name"].as_str()?, e["value"].as_str()?)))
        .collect();
    assert!(env.contains(&("AICR_MAX_NODES_PER_ENTRY", "3")), "{env:?}");
    assert!(env.contains(&("NVIDIA_VISIBLE_DEVICES", "all")), "{env:?}");

    // The defaults are what validate always used; the variable works too.
    let out = aicr_on(&api)
        .env("AICR_RUNTIME_CLASS", "nvidia")
        .args(["validate", "--phase", "deployment", "-r", s(&gate_only)])
        .args(["--job-name", "capture"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let job = agent_jobs_sent(&api).pop().unwrap();
    assert_eq!(job["metadata"]["name"], "capture");
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["runtimeClassName"], "nvidia");
    assert_eq!(pod["hostPID"], true);
    assert_eq!(pod["containers"][0]["securityContext"]["privileged"], true);

    // As in snapshot, both routes to a GPU at once are refused up front.
    api.clear_requests();
    let out = validate(&["--require-gpu", "--runtime-class", "nvidia"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("mutually exclusive"),
        "{}",
        stderr(&out)
    );
    assert!(api.requests().is_empty(), "nothing was sent");
    // With a snapshot given, no agent Job runs and its flags do not matter.
    let snap = write(dir.path(), "s.yaml", &good_snapshot());
    let out = validate(&["-s", s(&snap), "--require-gpu", "--runtime-class", "nvidia"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn report_can_go_to_a_configmap() {
    let api = FakeApiServer::start_blocking();
    api.insert(fixtures::namespace("reports"));
    let dir = tempfile::tempdir().unwrap();
    let snap = write(dir.path(), "s.yaml", &good_snapshot());
    let out = aicr_on(&api)
        .args(["validate", "--no-cluster", "--phase", "deployment", "-r"])
        .arg(gb200_recipe())
        .args(["-s", s(&snap), "-o", "cm://reports/validation"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    let cm = api.get("configmaps", "reports", "validation").unwrap();
    let v: Value = serde_json::from_str(cm["data"]["report.json"].as_str().unwrap()).unwrap();
    assert_eq!(v["reportFormat"], "CTRF");
    assert_eq!(v["results"]["summary"]["skipped"], 4);
}

#[test]
fn a_recipe_with_nothing_to_check_is_skipped_not_passed() {
    let api = FakeApiServer::start_blocking();
    let dir = tempfile::tempdir().unwrap();
    let r = write(
        dir.path(),
        "r.yaml",
        &recipe(
            GATE,
            "validation:\n  deployment:\n    checks: [expected-resources]\n  conformance:\n    checks: [platform-health]",
            "  - name: my-tool\n  - name: cert-manager\n    namespace: cert-manager\n    overrides: {enabled: false}\n",
        ),
    );
    let snap = write(dir.path(), "s.yaml", &good_snapshot());
    let out = aicr_on(&api)
        .args([
            "validate",
            "--phase",
            "deployment",
            "--phase",
            "conformance",
            "-r",
            s(&r),
            "-s",
            s(&snap),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = stdout_json(&out);
    assert_eq!(
        statuses(&report),
        [
            ("expected-resources".to_string(), "skipped".to_string()),
            ("platform-health".to_string(), "skipped".to_string())
        ]
    );
    assert!(message(&report, "expected-resources").starts_with("nothing to check"));
}

#[test]
fn an_interrupt_cancels_the_run_and_removes_what_it_created() {
    let api = FakeApiServer::start_blocking();
    let dir = tempfile::tempdir().unwrap();
    let data = test_data(dir.path(), "30s", &[], CUSTOM_CHECK);
    let r = write(
        dir.path(),
        "r.yaml",
        &recipe(
            GATE,
            "validation:\n  deployment:\n    checks: [custom-check]",
            "  []",
        ),
    );
    let snap = write(dir.path(), "s.yaml", &good_snapshot());
    // Nobody runs the Job: the run waits until interrupted.
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("aicr"))
        .env("NO_COLOR", "1")
        .env("KUBECONFIG", api.kubeconfig_path())
        .args([
            "validate",
            "--phase",
            "deployment",
            "-r",
            s(&r),
            "-s",
            s(&snap),
            "--data",
            s(&data),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while api.list("jobs", "aicr-validation").is_empty() {
        assert!(
            started.elapsed().as_secs() < 20,
            "the validator Job never appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(8), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out).contains("validation cancelled by SIGINT"),
        "{}",
        stderr(&out)
    );
    assert!(api.list("jobs", "aicr-validation").is_empty());
    assert!(
        api.get("clusterrolebindings", "", "aicr-validator")
            .is_none()
    );
}

#[test]
fn cncf_submission_collects_evidence_from_the_checks() {
    let api = FakeApiServer::start_blocking();
    let dir = tempfile::tempdir().unwrap();
    let evidence = dir.path().join("evidence");
    let data = test_data(dir.path(), "20s", &[], "");
    let out = aicr_on(&api)
        .args([
            "validate",
            "--cncf-submission",
            "--evidence-dir",
            s(&evidence),
        ])
        .args(["-f", "metrics", "-f", "operator", "--data", s(&data)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(8), "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "no CTRF document in submission mode");
    let err = stderr(&out);
    assert!(
        err.contains("evidence section accelerator-metrics failed"),
        "{err}"
    );
    assert!(
        err.contains("evidence section robust-controller skipped"),
        "{err}"
    );
    assert!(
        err.contains("error: one or more evidence sections failed"),
        "{err}"
    );
    let md = fs::read_to_string(evidence.join("accelerator-metrics.md")).unwrap();
    assert!(md.contains("## ai-service-metrics"), "{md}");
    assert!(evidence.join("index.md").is_file());
    assert!(!evidence.join("robust-operator.md").exists());
}

#[test]
fn cncf_submission_flags_are_checked() {
    assert_bad_input(
        &["--cncf-submission"],
        "--cncf-submission requires --evidence-dir",
    );
    assert_bad_input(
        &["--feature", "dra", "--no-cluster"],
        "--feature requires --cncf-submission",
    );
    assert_bad_input(
        &[
            "--cncf-submission",
            "--evidence-dir",
            "/tmp/x",
            "-f",
            "gpus",
        ],
        "unknown feature \"gpus\"",
    );
}

/// A cluster where the AI platform is healthy: GPU Operator, KAI scheduler,
/// kgateway, Kubeflow Trainer, Karpenter and the DRA driver, with the test
/// playing the scheduler and kubelet for the checks' test pods.
fn seed_platform(api: &FakeApiServer) {
    for ns in ["gpu-operator", "kgateway-system", "kubeflow", "karpenter"] {
        api.insert(fixtures::namespace(ns));
    }
    // GPU Operator
    let mut op = deployment("gpu-operator", "gpu-operator", 1, 1);
    op["metadata"]["labels"]["app.kubernetes.io/name"] = "gpu-operator".into();
    api.insert(op);
    api.insert(fixtures::cluster_policy_crd());
    api.insert(fixtures::cluster_policy(json!({}), "ready"));
    api.insert(daemonset("gpu-operator", "nvidia-dcgm-exporter", 2, 2));
    fixtures::platform::kai_scheduler(api);
    fixtures::platform::dra(api, 3);
    fixtures::platform::test_pods(api, &[]);
    // kgateway and the inference Gateway
    api.register_crd(
        "gateway.networking.k8s.io",
        "v1",
        "GatewayClass",
        "gatewayclasses",
        false,
    );
    api.register_crd(
        "gateway.networking.k8s.io",
        "v1",
        "Gateway",
        "gateways",
        true,
    );
    api.register_crd(
        "gateway.networking.k8s.io",
        "v1",
        "HTTPRoute",
        "httproutes",
        true,
    );
    api.register_crd(
        "inference.networking.k8s.io",
        "v1",
        "InferencePool",
        "inferencepools",
        true,
    );
    api.register_crd(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        true,
    );
    let accepted = |kind: &str| json!({"conditions": [{"type": kind, "status": "True"}]});
    api.insert(
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
        "metadata": {"name": "kgateway"}, "spec": {}, "status": accepted("Accepted")}),
    );
    api.insert(json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "inference-gateway", "namespace": "kgateway-system"}, "spec": {}, "status": accepted("Programmed")}));
    let slice = |ns: &str, svc: &str| {
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{svc}-abcde"), "namespace": ns, "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.9"], "conditions": {"ready": true}}]})
    };
    api.insert(slice("kgateway-system", "inference-gateway"));
    // Kubeflow Trainer and its webhook
    api.insert(deployment(
        "kubeflow",
        "kubeflow-trainer-controller-manager",
        1,
        1,
    ));
    api.register_crd(
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        false,
    );
    api.insert(json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "validator.trainer.kubeflow.org"},
        "webhooks": [{"name": "validator.trainjob.trainer.kubeflow.org",
                      "clientConfig": {"service": {"namespace": "kubeflow", "name": "kubeflow-trainer-controller-manager"}}}]}));
    api.insert(slice("kubeflow", "kubeflow-trainer-controller-manager"));
    // Karpenter with a GPU NodePool
    let mut k = deployment("karpenter", "karpenter", 2, 2);
    k["metadata"]["labels"]["app.kubernetes.io/name"] = "karpenter".into();
    api.insert(k);
    api.register_crd("karpenter.sh", "v1", "NodePool", "nodepools", false);
    api.insert(
        json!({"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": {"name": "gpu"},
        "spec": {"limits": {"nvidia.com/gpu": "16"}}}),
    );
}

#[test]
fn conformance_checks_pass_on_a_healthy_platform() {
    let api = FakeApiServer::start_blocking();
    seed_platform(&api);
    let dir = tempfile::tempdir().unwrap();
    let r = conformance_recipe(
        dir.path(),
        "gang-scheduling, inference-gateway, cluster-autoscaling, robust-controller, secure-accelerator-access, gpu-operator-health, platform-health",
        "  - name: gpu-operator
    namespace: gpu-operator
    expectedResources:
      - {kind: Deployment, name: gpu-operator}
  - name: kai-scheduler
    namespace: kai-scheduler
  - name: kgateway
    namespace: kgateway-system
  - name: kubeflow-trainer
    namespace: kubeflow
",
    );
    let snap = write(dir.path(), "s.yaml", &good_snapshot());
    let evidence = dir.path().join("evidence");
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
        .args(["--evidence-dir", s(&evidence)])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stderr(&out),
        text(&out)
    );
    insta::assert_snapshot!("healthy_platform_conformance", normalized(&text(&out)));
    // Test namespaces and claims are gone; evidence for each requirement.
    assert!(api.list("namespaces", "").iter().all(|n| {
        let name = n["metadata"]["name"].as_str().unwrap();
        !name.starts_with("dra-test-") && !name.starts_with("gang-scheduling-test-")
    }));
    let index = fs::read_to_string(evidence.join("index.md")).unwrap();
    for f in [
        "gang-scheduling.md",
        "inference-gateway.md",
        "cluster-autoscaling.md",
        "robust-operator.md",
        "secure-accelerator-access.md",
    ] {
        assert!(index.contains(f), "{f} missing from {index}");
        assert!(
            fs::read_to_string(evidence.join(f))
                .unwrap()
                .contains("Result: **PASSED**")
        );
    }
}

#[test]
fn health_checks_beyond_asserts_run_the_chainsaw_binary() {
    let api = FakeApiServer::start_blocking();
    api.insert(fixtures::namespace("tools"));
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    let script = write(
        &bin,
        "chainsaw",
        "#!/bin/sh\necho \"ran: chainsaw $1 $2 $(ls \"$3\") $4\"\necho \"kubeconfig set: ${KUBECONFIG:+yes}\"\nexit ${CHAINSAW_EXIT:-1}\n",
    );
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let asserts = "apiVersion: chainsaw.kyverno.io/v1alpha1\nkind: Test\nmetadata:\n  name: t\nspec:\n  steps:\n    - try:\n        - script:\n            content: kubectl get pods\n";
    let r = write(
        dir.path(),
        "r.yaml",
        &recipe(
            GATE,
            "validation:\n  deployment:\n    checks: [expected-resources]",
            &format!(
                "  - name: my-tool\n    namespace: tools\n    healthCheckAsserts: {}\n",
                serde_json::to_string(asserts).unwrap()
            ),
        ),
    );
    let snap = write(dir.path(), "s.yaml", &good_snapshot());
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let run = |exit: &str| {
        let out = aicr_on(&api)
            .env("PATH", &path)
            .env("CHAINSAW_EXIT", exit)
            .args([
                "validate",
                "--phase",
                "deployment",
                "-r",
                s(&r),
                "-s",
                s(&snap),
            ])
            .output()
            .unwrap();
        (out.status.code().unwrap(), stdout_json(&out))
    };
    let (code, report) = run("1");
    assert_eq!(code, 8);
    let m = message(&report, "expected-resources");
    assert!(
        m.contains("my-tool: chainsaw health check failed:\nran: chainsaw test --test-dir chainsaw-test.yaml --no-color\nkubeconfig set: yes\nerror: chainsaw exited with exit status: 1"),
        "{m}"
    );
    let (code, report) = run("0");
    assert_eq!(code, 0, "{report}");
    assert!(
        stdout_lines(&report, "expected-resources")
            .contains(&"  my-tool: chainsaw health check passed".to_string())
    );
}
