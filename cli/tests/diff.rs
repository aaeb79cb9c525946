//! `aicr diff A B` through the binary: exit 0 when equal, 1 when the
//! snapshots differ (naming each changed reading), 2 and up for trouble.

use std::path::{Path, PathBuf};

use aicr_test_support::tools::aicr;
use serde_json::Value;

fn snapshot(dir: &Path, name: &str, sysctl: &str, extra: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "kind: Snapshot
apiVersion: aicr.nvidia.com/v1alpha1
metadata:
  timestamp: \"2026-12-0{}T00:00:00Z\"
  source-node: {name}
measurements:
  - type: OS
    subtypes:
      - subtype: sysctl
        data:
          /proc/sys/kernel/sched_autogroup_enabled: \"{sysctl}\"
          /proc/sys/vm/swappiness: \"60\"
{extra}  - type: GPU
    subtypes:
      - subtype: smi
        data:
          driver-version: 570.86.15
          gpu.0.serial: \"{}\"
",
            name.len() % 9,
            name.len()
        ),
    )
    .unwrap();
    path
}

#[test]
fn equal_snapshots_exit_0_whatever_their_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let a = snapshot(dir.path(), "a.yaml", "1", "");
    let b = snapshot(dir.path(), "bb.yaml", "1", "");
    // Only the serials (and metadata) differ; the serials are ignored.
    aicr()
        .args(["diff", "--ignore", "GPU.*serial*"])
        .arg(&a)
        .arg(&b)
        .assert()
        .code(0)
        .stdout("snapshots are equal\n");
}

#[test]
fn differing_snapshots_exit_1_and_name_each_reading() {
    let dir = tempfile::tempdir().unwrap();
    let a = snapshot(dir.path(), "a.yaml", "1", "");
    let b = snapshot(
        dir.path(),
        "b.yaml",
        "0",
        "      - subtype: kmod\n        data:\n          nvidia_peermem: loaded\n",
    );
    let out = aicr().arg("diff").arg(&a).arg(&b).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "+ OS.kmod.nvidia_peermem: loaded\n\
         ~ OS.sysctl./proc/sys/kernel/sched_autogroup_enabled: 1 -> 0\n\
         2 differences (1 added, 0 removed, 1 changed)\n"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("error"),
        "a difference is not an error: {err}"
    );

    // Swapped, the addition is a removal; JSON and YAML say the same.
    let out = aicr()
        .args(["diff", "--format", "json"])
        .arg(&b)
        .arg(&a)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let diffs = v["differences"].as_array().unwrap();
    assert_eq!(diffs.len(), 2);
    assert_eq!(diffs[0]["change"], "removed");
    assert_eq!(diffs[0]["old"], "loaded");
    assert_eq!(diffs[1]["key"], "/proc/sys/kernel/sched_autogroup_enabled");
    assert_eq!(
        (diffs[1]["old"].as_str(), diffs[1]["new"].as_str()),
        (Some("0"), Some("1"))
    );
    let out = aicr()
        .args(["diff", "-t", "yaml"])
        .arg(&a)
        .arg(&b)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let y: Value = serde_saphyr::from_str(std::str::from_utf8(&out.stdout).unwrap()).unwrap();
    assert_eq!(y["differences"], json_of(&a, &b)["differences"]);
}

fn json_of(a: &Path, b: &Path) -> Value {
    let out = aicr()
        .args(["diff", "-t", "json"])
        .arg(a)
        .arg(b)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn trouble_is_not_a_difference() {
    let dir = tempfile::tempdir().unwrap();
    let a = snapshot(dir.path(), "a.yaml", "1", "");
    let garbage = dir.path().join("garbage.yaml");
    std::fs::write(&garbage, "kind: [unclosed\n").unwrap();
    let missing = dir.path().join("missing.yaml");
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (
            vec![a.display().to_string(), missing.display().to_string()],
            3,
            "failed to load snapshot from",
        ),
        (
            vec![a.display().to_string(), garbage.display().to_string()],
            8,
            "failed to load snapshot from",
        ),
        (
            vec![
                "--ignore".into(),
                "GPU.[smi".into(),
                a.display().to_string(),
                a.display().to_string(),
            ],
            2,
            "invalid ignore pattern \"GPU.[smi\"",
        ),
        (
            vec![
                "--format".into(),
                "xml".into(),
                a.display().to_string(),
                a.display().to_string(),
            ],
            2,
            "invalid --format: must be text, json or yaml",
        ),
        (
            vec![a.display().to_string(), "node/gpu-1".into()],
            2,
            "no aggregator given",
        ),
        (
            vec![a.display().to_string(), "node/".into()],
            2,
            "node/ needs a node name",
        ),
        (
            vec![
                "--aggregator".into(),
                "http://127.0.0.1:1".into(),
                a.display().to_string(),
                "node/gpu-1".into(),
            ],
            6,
            "failed to load snapshot from \"node/gpu-1\"",
        ),
    ];
    for (args, code, says) in cases {
        let out = aicr().arg("diff").args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout");
        // One error line, the last, saying what went wrong.
        let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
        assert_eq!(errors.len(), 1, "{args:?}: {err}");
        assert!(err.trim_end().ends_with(errors[0]), "{args:?}: {err}");
        assert!(errors[0].contains(says), "{args:?}: want {says:?} in {err}");
    }
}
