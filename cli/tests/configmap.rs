//! `cm://` sources and sinks through the real binary against the fake API
//! server over HTTP: the production kube code path, its error mapping onto
//! exit codes, and the rule that nothing is written on failure.

use std::time::Duration;

use aicr_test_support::{FakeApiServer, fixtures, unreachable_kubeconfig};
use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

fn aicr(api: &FakeApiServer) -> Command {
    let mut c = aicr_test_support::tools::aicr();
    c.env("NO_COLOR", "1")
        .env("KUBECONFIG", api.kubeconfig_path());
    c
}

/// A snapshot as the upstream tool stores it: four-space YAML under
/// `snapshot.yaml`, with `format` and `timestamp` keys.
const UPSTREAM_SNAPSHOT: &str = "kind: Snapshot
apiVersion: aicr.nvidia.com/v1alpha1
metadata:
    source-node: ip-10-0-1-12
    timestamp: \"2026-11-28T01:12:40Z\"
    version: dev
measurements:
    - type: K8s
      subtypes:
        - subtype: server
          data:
            goVersion: go1.24.6
            platform: linux/amd64
            version: v1.33.5-eks-3025e55
    - type: SystemD
    - type: OS
      subtypes:
        - subtype: release
          data:
            ID: ubuntu
            VERSION_ID: \"24.04\"
        - subtype: sysctl
          data:
            /proc/sys/kernel/osrelease: 6.8.0-1028-aws
    - type: GPU
      subtypes:
        - subtype: smi
          data:
            driver: 580.105.08
            gpu-count: 8
            gpu.model: NVIDIA H100 80GB HBM3
";

#[test]
fn recipe_written_to_a_configmap_reads_back() {
    let api = FakeApiServer::start_blocking();
    aicr(&api)
        .args([
            "recipe",
            "--service",
            "eks",
            "--intent",
            "training",
            "-o",
            "cm://default/r1",
        ])
        .assert()
        .success()
        .stdout("");
    let cm = api
        .get("configmaps", "default", "r1")
        .expect("ConfigMap written");
    assert_eq!(cm["metadata"]["labels"]["app.kubernetes.io/name"], "aicr");
    assert_eq!(
        cm["metadata"]["labels"]["app.kubernetes.io/component"],
        "Recipe"
    );
    assert_eq!(cm["data"]["format"], "yaml");
    let doc: Value = serde_saphyr::from_str(cm["data"]["recipe.yaml"].as_str().unwrap()).unwrap();
    assert_eq!(doc["kind"], "RecipeResult");
    assert_eq!(doc["criteria"]["intent"], "training");
    let apply = api
        .requests()
        .into_iter()
        .find(|r| r.method == "PATCH")
        .expect("server-side apply");
    assert_eq!(apply.param("fieldManager").as_deref(), Some("aicr"));

    // Writing again replaces the document (idempotent apply).
    aicr(&api)
        .args([
            "recipe",
            "--service",
            "gke",
            "--format",
            "json",
            "-o",
            "cm://default/r1",
        ])
        .assert()
        .success();
    let cm = api.get("configmaps", "default", "r1").unwrap();
    assert_eq!(cm["data"]["format"], "json");
    let doc: Value = serde_json::from_str(cm["data"]["recipe.json"].as_str().unwrap()).unwrap();
    assert_eq!(doc["criteria"]["service"], "gke");

    // And the library reads it back the way later commands will.
    let cm_ref = aicr::source::ConfigMapRef::parse("cm://default/r1").unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (bytes, format) = runtime
        .block_on(async {
            let timeout = aicr::kubernetes::REQUEST_TIMEOUT;
            let client = aicr::kubernetes::client(Some(api.kubeconfig_path()), timeout)
                .await
                .unwrap();
            aicr::kubernetes::read_document(&client, &cm_ref).await
        })
        .unwrap();
    assert_eq!(format, aicr::yaml::Format::Json);
    let back: aicr::model::RecipeResult = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(back.criteria.service, "gke");
}

#[test]
fn upstream_snapshot_in_a_configmap_feeds_recipe_and_query() {
    let api = FakeApiServer::start_blocking();
    api.insert(fixtures::config_map(
        "gpu-operator",
        "aicr-snapshot",
        &[
            ("snapshot.yaml", UPSTREAM_SNAPSHOT),
            ("format", "yaml"),
            ("timestamp", "2026-11-28T01:12:46Z"),
        ],
    ));
    let out = aicr(&api)
        .args([
            "recipe",
            "--intent",
            "training",
            "--format",
            "json",
            "--snapshot",
            "cm://gpu-operator/aicr-snapshot",
        ])
        .assert()
        .success();
    let doc: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(doc["criteria"]["service"], "eks");
    assert_eq!(doc["criteria"]["accelerator"], "h100");
    assert_eq!(
        doc["metadata"]["appliedOverlays"]
            .as_array()
            .unwrap()
            .last()
            .unwrap(),
        "h100-eks-ubuntu-training"
    );
    assert!(doc["metadata"].get("excludedOverlays").is_none());
    aicr(&api)
        .args([
            "query",
            "--intent",
            "training",
            "--selector",
            "criteria.os",
            "-s",
            "cm://gpu-operator/aicr-snapshot",
        ])
        .assert()
        .success()
        .stdout("ubuntu\n");
    // An explicit --kubeconfig wins over KUBECONFIG.
    aicr(&api)
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .args([
            "query",
            "--intent",
            "training",
            "--selector",
            "criteria.os",
            "-s",
            "cm://gpu-operator/aicr-snapshot",
            "--kubeconfig",
        ])
        .arg(api.kubeconfig_path())
        .assert()
        .success();
}

#[test]
fn configmap_failures_map_to_exit_codes() {
    let api = FakeApiServer::start_blocking();
    api.insert(fixtures::config_map(
        "default",
        "empty",
        &[("unrelated", "x")],
    ));
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["recipe", "--snapshot", "cm://default"],
            2,
            "invalid ConfigMap URI",
        ),
        (
            &["recipe", "--service", "eks", "-o", "cm://Default/x"],
            2,
            "invalid ConfigMap URI",
        ),
        (
            &["recipe", "--snapshot", "cm://default/missing"],
            3,
            "failed to get ConfigMap default/missing",
        ),
        (
            &["recipe", "--snapshot", "cm://default/empty"],
            3,
            "has no snapshot or recipe data",
        ),
    ];
    for (args, code, needle) in cases {
        let out = aicr(&api).args(*args).assert().code(*code);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    assert!(api.get("configmaps", "Default", "x").is_none());
}

#[test]
fn rbac_denial_is_exit_4_and_writes_nothing() {
    let api = FakeApiServer::start_blocking();
    api.deny("configmaps", "patch");
    aicr(&api)
        .args(["recipe", "--service", "eks", "-o", "cm://default/denied"])
        .assert()
        .code(4)
        .stderr(predicate::str::contains(
            "failed to write ConfigMap default/denied",
        ))
        .stderr(predicate::str::contains("forbidden"));
    assert!(api.get("configmaps", "default", "denied").is_none());
    api.insert(fixtures::config_map(
        "default",
        "snap",
        &[("snapshot.yaml", UPSTREAM_SNAPSHOT)],
    ));
    api.deny("configmaps", "get");
    aicr(&api)
        .args(["recipe", "--snapshot", "cm://default/snap"])
        .assert()
        .code(4);
}

#[test]
fn slow_api_is_exit_5() {
    let api = FakeApiServer::start_blocking();
    api.insert(fixtures::config_map(
        "default",
        "snap",
        &[("snapshot.yaml", UPSTREAM_SNAPSHOT)],
    ));
    api.set_latency(Duration::from_secs(3));
    aicr(&api)
        .env("AICR_KUBE_TIMEOUT", "1s")
        .args(["recipe", "--snapshot", "cm://default/snap"])
        .assert()
        .code(5)
        .stderr(predicate::str::contains("did not answer in time"));
    aicr(&api)
        .env("AICR_KUBE_TIMEOUT", "1s")
        .args(["recipe", "--service", "eks", "-o", "cm://default/slow"])
        .assert()
        .code(5);
}

#[test]
fn unreachable_api_is_exit_6() {
    let kc = unreachable_kubeconfig();
    let mut c = aicr_test_support::tools::aicr();
    c.env("NO_COLOR", "1")
        .env("KUBECONFIG", kc.path())
        .args(["recipe", "--snapshot", "cm://default/snap"])
        .assert()
        .code(6)
        .stderr(predicate::str::contains("unreachable"));
}

#[test]
fn invalid_kubeconfig_is_invalid_input() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("kubeconfig");
    std::fs::write(&bad, "this: [is not a kubeconfig").unwrap();
    let mut c = aicr_test_support::tools::aicr();
    c.env("NO_COLOR", "1")
        .args(["recipe", "--snapshot", "cm://default/snap", "--kubeconfig"])
        .arg(&bad)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("invalid kubeconfig"));
}
