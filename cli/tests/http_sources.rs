//! http(s) sources (`--snapshot URL`, `--config URL`, `--criteria URL`)
//! against a local HTTP server: success, non-200 answers, oversized bodies.

use aicr_test_support::StaticHttp;
use assert_cmd::Command;
use predicates::prelude::*;

fn aicr() -> Command {
    let mut c = aicr_test_support::tools::aicr();
    c.env("NO_COLOR", "1");
    c
}

#[test]
fn snapshot_config_and_criteria_over_http() {
    let snapshot = b"kind: Snapshot\nmeasurements:\n  - type: OS\n    subtypes:\n      - subtype: release\n        data: {ID: ubuntu}\n".to_vec();
    let config = b"kind: AICRConfig\napiVersion: aicr.nvidia.com/v1alpha1\nspec:\n  recipe:\n    criteria: {service: kind}\n".to_vec();
    let criteria = br#"{"kind": "RecipeCriteria", "spec": {"service": "aks"}}"#.to_vec();
    let server = StaticHttp::start();
    server.put("/snap.yaml", snapshot);
    server.put("/cfg.yaml", config);
    server.put("/c.json", criteria);
    server.respond("/broken.yaml", 500, b"oops".to_vec());
    server.put("/huge.yaml", vec![b'#'; 10 * 1024 * 1024 + 1]);
    let base = server.url();
    aicr()
        .args([
            "query",
            "--selector",
            "criteria.os",
            "--snapshot",
            &format!("{base}/snap.yaml"),
        ])
        .assert()
        .success()
        .stdout("ubuntu\n");
    aicr()
        .args([
            "query",
            "--selector",
            "criteria.service",
            "--config",
            &format!("{base}/cfg.yaml"),
        ])
        .assert()
        .success()
        .stdout("kind\n");
    aicr()
        .args([
            "query",
            "--selector",
            "criteria.service",
            "-c",
            &format!("{base}/c.json"),
        ])
        .assert()
        .success()
        .stdout("aks\n");
    aicr()
        .args(["recipe", "--snapshot", &format!("{base}/missing.yaml")])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("unexpected HTTP status 404"));
    aicr()
        .args(["recipe", "--snapshot", &format!("{base}/broken.yaml")])
        .assert()
        .code(8)
        .stderr(predicate::str::contains("unexpected HTTP status 500"));
    aicr()
        .args(["recipe", "--config", &format!("{base}/huge.yaml")])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("larger than"));
}
