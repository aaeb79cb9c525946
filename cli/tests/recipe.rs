//! End-to-end behaviour of `aicr recipe` / `aicr query` through the real
//! binary: modes, precedence, outputs, and every bad input the CLI reference
//! names, with its exit code and no partial output.

use std::fs;
use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

fn aicr() -> Command {
    let mut c = aicr_test_support::tools::aicr();
    c.env("NO_COLOR", "1");
    c
}

fn yaml(bytes: &[u8]) -> Value {
    serde_saphyr::from_str(std::str::from_utf8(bytes).unwrap()).unwrap()
}

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

const SNAPSHOT: &str = r#"kind: Snapshot
apiVersion: aicr.nvidia.com/v1alpha1
metadata:
  source-node: gpu-1
  timestamp: "2026-11-28T01:12:40Z"
  version: dev
measurements:
  - type: K8s
    subtypes:
      - subtype: server
        data:
          goVersion: go1.24.6
          platform: linux/amd64
          version: v1.33.5-eks-3025e55
  - type: GPU
    subtypes:
      - subtype: smi
        data:
          gpu.model: NVIDIA H100 80GB HBM3
          gpu-count: 8
  - type: OS
    subtypes:
      - subtype: release
        data:
          ID: ubuntu
          VERSION_ID: "22.04"
      - subtype: sysctl
        data:
          /proc/sys/kernel/osrelease: 6.8.0-1028-aws
"#;

#[test]
fn query_mode_writes_yaml_to_stdout_and_logs_to_stderr() {
    let out = aicr()
        .args([
            "recipe",
            "--service",
            "eks",
            "--gpu",
            "h100",
            "-i",
            "training",
            "--os",
            "ubuntu",
        ])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "[cli] recipe generation completed: output= components=12 overlays=6",
        ));
    let doc = yaml(&out.get_output().stdout);
    assert_eq!(doc["kind"], "RecipeResult");
    assert_eq!(doc["criteria"]["accelerator"], "h100");
    assert_eq!(
        doc["metadata"]["appliedOverlays"].as_array().unwrap().len(),
        6
    );
    let order: Vec<&str> = doc["deploymentOrder"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let pos = |n: &str| order.iter().position(|x| *x == n).unwrap();
    assert!(pos("nodewright-operator") < pos("nodewright-customizations"));
    assert!(pos("nodewright-customizations") < pos("gpu-operator"));
}

#[test]
fn json_and_table_formats() {
    let out = aicr()
        .args(["recipe", "--service", "eks", "--format", "json"])
        .assert()
        .success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(text.contains("\\u003e= "), "HTML-safe escaping: {text}");
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["criteria"]["service"], "eks");
    aicr()
        .args(["recipe", "--service", "eks", "-t", "table"])
        .assert()
        .success()
        .stdout(predicate::str::starts_with("FIELD"))
        .stdout(predicate::str::contains("Criteria.Service"));
}

#[test]
fn output_file_is_written_atomically_and_never_half_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("recipe.yaml");
    aicr()
        .args(["recipe", "--service", "kind", "-o"])
        .arg(&out)
        .assert()
        .success()
        .stdout("");
    assert_eq!(
        yaml(&fs::read(&out).unwrap())["criteria"]["service"],
        "kind"
    );

    let missing = dir.path().join("nope/recipe.yaml");
    aicr()
        .args(["recipe", "--service", "kind", "-o"])
        .arg(&missing)
        .assert()
        .code(8)
        .stderr(predicate::str::contains("failed to create output writer"));
    assert!(!missing.exists());

    // A failing build leaves an existing file untouched and creates none.
    let fresh = dir.path().join("fresh.yaml");
    aicr()
        .args(["recipe", "--service", "nope", "-o"])
        .arg(&fresh)
        .assert()
        .code(2);
    assert!(!fresh.exists());
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temp files left"
    );
}

#[test]
fn invalid_inputs_map_to_documented_exit_codes() {
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["recipe", "--service", "foo"],
            2,
            "invalid service type: foo",
        ),
        (&["recipe", "--os", "windows"], 2, "invalid os type"),
        (&["recipe"], 2, "no criteria provided"),
        (&["recipe", "--nodes", "0"], 2, "no criteria provided"),
        (
            &["recipe", "--service", "eks", "--service", "gke"],
            2,
            "flag --service can only be specified once",
        ),
        (
            &["recipe", "--accelerator", "h100", "--gpu", "h100"],
            2,
            "can only be specified once",
        ),
        (
            &["recipe", "--service", "eks", "--format", "xml"],
            2,
            "unknown output format: \"xml\"",
        ),
        (&["recipe", "--nodes", "many"], 1, "invalid value"),
        (&["recipe", "--bogus"], 1, "--bogus"),
        (&["query", "--service", "eks"], 1, "--selector"),
        (
            &["query", "--service", "eks", "--selector", "components.nope"],
            3,
            "key \"nope\" not found",
        ),
        (
            &[
                "query",
                "--service",
                "eks",
                "--selector",
                "deploymentOrder.0",
            ],
            3,
            "cannot descend into non-map value at \"0\"",
        ),
        (
            &["query", "--service", "eks", "-o", "x", "--selector", "kind"],
            1,
            "-o",
        ),
        (
            &["recipe", "--snapshot", "/nonexistent/snap.yaml"],
            3,
            "failed to load snapshot from \"/nonexistent/snap.yaml\": /nonexistent/snap.yaml: no such file or directory",
        ),
        (
            &["recipe", "--snapshot", "http://127.0.0.1:9/s.yaml"],
            6,
            "failed to load snapshot",
        ),
        (
            &["recipe", "--criteria", "/nonexistent/c.yaml"],
            3,
            "failed to load criteria from",
        ),
        (
            &["recipe", "--config", "cm://ns/cfg"],
            2,
            "not supported by --config",
        ),
        (
            &["recipe", "--config", "file:///x.yaml"],
            2,
            "pass the path directly",
        ),
        (
            &["recipe", "--config", "/nonexistent/c.yaml"],
            3,
            "failed to load config from",
        ),
        (
            &["recipe", "--service", "eks", "--data", "/nonexistent-dir"],
            3,
            "external data directory not found",
        ),
    ];
    for (args, code, needle) in cases {
        let out = aicr().args(*args).assert().code(*code);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        if *code != 0 && *code != 1 {
            assert_eq!(
                stderr.lines().filter(|l| l.starts_with("error:")).count(),
                1,
                "{args:?}: one error line"
            );
            assert!(
                out.get_output().stdout.is_empty(),
                "{args:?}: nothing on stdout"
            );
        }
    }
}

#[test]
fn query_prints_scalars_bare_and_complex_values_as_yaml_or_json() {
    let base = [
        "query",
        "--service",
        "eks",
        "--accelerator",
        "h100",
        "--intent",
        "training",
    ];
    aicr()
        .args(base)
        .args(["--selector", "components.gpu-operator.chart"])
        .assert()
        .success()
        .stdout("gpu-operator\n");
    aicr()
        .args(base)
        .args(["--selector", ".criteria.service", "--format", "json"])
        .assert()
        .success()
        .stdout("\"eks\"\n");
    let out = aicr()
        .args(base)
        .args(["--selector", "criteria"])
        .assert()
        .success();
    let doc = yaml(&out.get_output().stdout);
    assert_eq!(doc["nodes"], 0);
    assert_eq!(doc["os"], "any");
    let out = aicr()
        .args(base)
        .args([
            "--selector",
            "components.kube-prometheus-stack.values.prometheus.prometheusSpec.storageSpec",
        ])
        .assert()
        .success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(
        text.contains("\n    spec:\n"),
        "four-space indentation: {text}"
    );
}

#[test]
fn snapshot_mode_derives_criteria_and_excludes_failing_overlays() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "snap.yaml", SNAPSHOT);
    let out = aicr()
        .args(["recipe", "--intent", "training", "--snapshot"])
        .arg(dir.path().join("snap.yaml"))
        .assert()
        .success()
        .stderr(predicate::str::contains("CLI flag overriding snapshot-detected value: field=intent detected=any override=training"));
    let doc = yaml(&out.get_output().stdout);
    assert_eq!(doc["criteria"]["service"], "eks");
    assert_eq!(doc["criteria"]["accelerator"], "h100");
    assert_eq!(doc["criteria"]["os"], "ubuntu");
    assert_eq!(
        doc["metadata"]["excludedOverlays"][0],
        "h100-eks-ubuntu-training"
    );
    let w = &doc["metadata"]["constraintWarnings"][0];
    assert_eq!(w["constraint"], "OS.release.VERSION_ID");
    assert_eq!(w["actual"], "22.04");
    assert_eq!(w["reason"], "expected 24.04, got 22.04");
    let applied = doc["metadata"]["appliedOverlays"].as_array().unwrap();
    assert_eq!(applied.last().unwrap(), "h100-eks-training");

    // JSON snapshots work the same way, and the derived recipe feeds query.
    let snap: Value = serde_saphyr::from_str(SNAPSHOT).unwrap();
    write(
        dir.path(),
        "snap.json",
        &serde_json::to_string(&snap).unwrap(),
    );
    aicr()
        .args([
            "query",
            "--intent",
            "training",
            "--selector",
            "criteria.accelerator",
            "-s",
        ])
        .arg(dir.path().join("snap.json"))
        .assert()
        .success()
        .stdout("h100\n");
}

#[test]
fn malformed_snapshot_is_an_error_with_the_uri() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "bad.yaml",
        "measurements: [\n  - type: OS\n   bad indent",
    );
    aicr()
        .args(["recipe", "--snapshot"])
        .arg(dir.path().join("bad.yaml"))
        .assert()
        .code(8)
        .stderr(predicate::str::contains("failed to load snapshot from"));
}

#[test]
fn criteria_file_mode_with_flag_overrides() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "c.yaml",
        "kind: RecipeCriteria\napiVersion: aicr.nvidia.com/v1alpha1\nspec: {service: eks, accelerator: h100, intent: training}\n",
    );
    let out = aicr()
        .args(["recipe", "--os", "ubuntu", "-c"])
        .arg(dir.path().join("c.yaml"))
        .assert()
        .success();
    let doc = yaml(&out.get_output().stdout);
    assert_eq!(doc["criteria"]["os"], "ubuntu");
    assert_eq!(
        doc["metadata"]["appliedOverlays"]
            .as_array()
            .unwrap()
            .last()
            .unwrap(),
        "h100-eks-ubuntu-training"
    );

    write(dir.path(), "bad.yaml", "kind: Nope\nspec: {}\n");
    aicr()
        .args(["recipe", "-c"])
        .arg(dir.path().join("bad.yaml"))
        .assert()
        .code(8)
        .stderr(predicate::str::contains(
            "invalid kind \"Nope\", expected \"RecipeCriteria\"",
        ));
}

#[test]
fn config_file_mode_and_precedence() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("from-config.json");
    write(
        dir.path(),
        "aicr.yaml",
        &format!(
            "kind: AICRConfig\napiVersion: aicr.nvidia.com/v1alpha1\nmetadata: {{name: t}}\nspec:\n  recipe:\n    criteria: {{service: eks, accelerator: h100, intent: training}}\n    output: {{path: {}, format: json}}\n",
            out_path.display()
        ),
    );
    let cfg = dir.path().join("aicr.yaml");
    aicr()
        .args(["recipe", "--config"])
        .arg(&cfg)
        .assert()
        .success()
        .stdout("");
    let doc: Value = serde_json::from_slice(&fs::read(&out_path).unwrap()).unwrap();
    assert_eq!(doc["criteria"]["intent"], "training");

    // A flag replaces one field and keeps the others; -o - wins over the path.
    let out = aicr()
        .args([
            "recipe",
            "--service",
            "gke",
            "--os",
            "cos",
            "-o",
            "-",
            "--config",
        ])
        .arg(&cfg)
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "CLI flag overriding config value: field=spec.recipe.output.path flag=--output",
        ));
    let doc: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(
        (
            doc["criteria"]["service"].as_str(),
            doc["criteria"]["accelerator"].as_str()
        ),
        (Some("gke"), Some("h100"))
    );

    // query honours the config's format.
    aicr()
        .args(["query", "--selector", "criteria.service", "--config"])
        .arg(&cfg)
        .assert()
        .success()
        .stdout("\"eks\"\n");

    write(
        dir.path(),
        "strict.yaml",
        "kind: AICRConfig\napiVersion: aicr.nvidia.com/v1alpha1\nspec:\n  recipe:\n    critera: {service: eks}\n",
    );
    aicr()
        .args(["recipe", "--config"])
        .arg(dir.path().join("strict.yaml"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("critera"));
}

fn custom_data(dir: &Path) {
    write(
        dir,
        "registry.yaml",
        "apiVersion: aicr.nvidia.com/v1alpha1\nkind: ComponentRegistry\ncomponents:\n  - name: my-operator\n    displayName: my-operator\n    helm:\n      defaultRepository: https://my-charts.example.com\n      defaultChart: myrepo/my-operator\n      defaultVersion: v1.0.0\n      defaultNamespace: my-ns\n  - name: cert-manager\n    displayName: cert-manager\n    helm:\n      defaultRepository: https://charts.jetstack.io\n      defaultChart: jetstack/cert-manager\n      defaultNamespace: certs-custom\n",
    );
    write(dir, "components/my-operator/values.yaml", "replicas: 2\n");
    write(
        dir,
        "overlays/my-custom-overlay.yaml",
        "kind: RecipeMetadata\napiVersion: aicr.nvidia.com/v1alpha1\nmetadata: {name: my-custom-overlay}\nspec:\n  base: eks-training\n  criteria: {service: eks, intent: training}\n  componentRefs:\n    - name: my-operator\n      type: Helm\n      valuesFile: components/my-operator/values.yaml\n      dependencyRefs: [cert-manager]\n",
    );
}

#[test]
fn external_data_layers_registry_overlays_and_values() {
    let dir = tempfile::tempdir().unwrap();
    custom_data(dir.path());
    let out = aicr()
        .args([
            "recipe",
            "--service",
            "eks",
            "--intent",
            "training",
            "--format",
            "json",
            "--data",
        ])
        .arg(dir.path())
        .assert()
        .success();
    let doc: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let applied: Vec<&str> = doc["metadata"]["appliedOverlays"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        applied,
        [
            "base",
            "monitoring-hpa",
            "eks",
            "eks-training",
            "my-custom-overlay"
        ]
    );
    let refs = doc["componentRefs"].as_array().unwrap();
    let mine = refs.iter().find(|r| r["name"] == "my-operator").unwrap();
    assert_eq!(mine["namespace"], "my-ns");
    assert_eq!(mine["chart"], "my-operator");
    assert_eq!(mine["source"], "https://my-charts.example.com");
    assert_eq!(mine["version"], "v1.0.0");
    let cm = refs.iter().find(|r| r["name"] == "cert-manager").unwrap();
    assert_eq!(
        cm["namespace"], "certs-custom",
        "external registry entry replaces the embedded one"
    );
    aicr()
        .args([
            "query",
            "--service",
            "eks",
            "--intent",
            "training",
            "--selector",
            "components.my-operator.values.replicas",
            "--data",
        ])
        .arg(dir.path())
        .assert()
        .success()
        .stdout("2\n");
}

#[test]
fn external_data_safety_rules() {
    type Setup = fn(&Path);
    let cases: &[(&str, Setup, &str)] = &[
        (
            "missing registry",
            |d| write(d, "overlays/x.yaml", "kind: RecipeMetadata\n"),
            "registry.yaml is required",
        ),
        (
            "symlink",
            |d| {
                custom_data(d);
                std::os::unix::fs::symlink(
                    "/etc/passwd",
                    d.join("components/my-operator/link.yaml"),
                )
                .unwrap();
            },
            "symlinks not allowed: components/my-operator/link.yaml",
        ),
        (
            "dot-dot",
            |d| {
                custom_data(d);
                write(d, "overlays/foo..bar.yaml", "kind: RecipeMetadata\n");
            },
            "path traversal detected",
        ),
        (
            "oversized",
            |d| {
                custom_data(d);
                let f = fs::File::create(d.join("components/my-operator/huge.yaml")).unwrap();
                f.set_len(10 * 1024 * 1024 + 1).unwrap();
            },
            "file too large (10485761 bytes, max 10485760)",
        ),
        (
            "malformed overlay",
            |d| {
                custom_data(d);
                write(d, "overlays/broken.yaml", "spec: [unclosed\n");
            },
            "failed to parse overlays/broken.yaml",
        ),
        (
            "malformed registry",
            |d| write(d, "registry.yaml", "components: {{{\n"),
            "failed to parse external registry",
        ),
        (
            "not a directory",
            |d| write(d, "registry.yaml", ""),
            "not a directory",
        ),
    ];
    for (name, setup, needle) in cases {
        let dir = tempfile::tempdir().unwrap();
        setup(dir.path());
        let data = if *name == "not a directory" {
            dir.path().join("registry.yaml")
        } else {
            dir.path().to_path_buf()
        };
        let out = aicr()
            .args(["recipe", "--service", "eks", "--data"])
            .arg(&data)
            .assert()
            .code(8);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr);
        assert!(
            stderr.contains("failed to initialize data provider")
                || stderr.contains("failed to load metadata store"),
            "{name}: {stderr}"
        );
        assert!(stderr.contains(needle), "{name}: {stderr}");
    }
}

#[test]
fn external_dependency_errors_are_invalid_input() {
    let dir = tempfile::tempdir().unwrap();
    custom_data(dir.path());
    write(
        dir.path(),
        "overlays/my-custom-overlay.yaml",
        "kind: RecipeMetadata\nmetadata: {name: my-custom-overlay}\nspec:\n  criteria: {service: eks}\n  componentRefs:\n    - name: my-operator\n      dependencyRefs: [ghost]\n",
    );
    aicr()
        .args(["recipe", "--service", "eks", "--data"])
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "component \"my-operator\" references unknown dependency \"ghost\"",
        ));
    write(
        dir.path(),
        "overlays/my-custom-overlay.yaml",
        "kind: RecipeMetadata\nmetadata: {name: my-custom-overlay}\nspec:\n  base: nowhere\n  criteria: {service: eks}\n",
    );
    aicr()
        .args(["recipe", "--service", "eks", "--data"])
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "failed to resolve inheritance chain",
        ));
}

/// Each shell judges its own script: bash completes with it, zsh and fish
/// parse it (skipped loudly where they are absent; CI installs them).
#[test]
fn completion_scripts_for_every_shell() {
    let t = tempfile::tempdir().unwrap();
    let script = |shell: &str| {
        let out = aicr().args(["completion", shell]).assert().success();
        let path = t.path().join(format!("aicr.{shell}"));
        std::fs::write(&path, &out.get_output().stdout).unwrap();
        path
    };
    let bash = script("bash");
    for (line, want) in [
        ("aicr rec", "recipe"),
        ("aicr recipe --acc", "--accelerator"),
        ("aicr bundle --deployer ", "argocd-helm"),
        ("aicr recipe --format ", "table"),
        ("aicr validate --phase ", "conformance"),
        ("aicr recipe --service ", "eks"),
        ("aicr query --gpu ", "h100"),
        ("aicr skill --agent ", "codex"),
    ] {
        let words: Vec<&str> = line.split(' ').collect();
        let program = format!(
            "source {}; COMP_WORDS=({}); COMP_CWORD={}; _aicr aicr {} {}; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            bash.display(),
            words
                .iter()
                .map(|w| format!("'{w}'"))
                .collect::<Vec<_>>()
                .join(" "),
            words.len() - 1,
            words.last().map_or("''".to_string(), |w| format!("'{w}'")),
            words[words.len() - 2],
        );
        let out = std::process::Command::new("bash")
            .args(["-c", &program])
            .output()
            .unwrap();
        let offered = String::from_utf8_lossy(&out.stdout);
        assert!(
            offered.lines().any(|l| l == want),
            "{line:?} offers {offered:?}"
        );
    }
    for (shell, check) in [("zsh", "-n"), ("fish", "--no-execute")] {
        let path = script(shell);
        let Some(bin) = aicr_test_support::tools::system_tool(shell) else {
            continue;
        };
        let out = std::process::Command::new(bin)
            .arg(check)
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{shell} {check}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let pwsh = script("pwsh");
    assert!(
        std::fs::read_to_string(pwsh)
            .unwrap()
            .contains("Register-ArgumentCompleter")
    );
    aicr().args(["completion", "tcsh"]).assert().code(1);
}

#[test]
fn logging_modes() {
    aicr()
        .args(["--log-json", "recipe", "--service", "eks"])
        .assert()
        .success()
        .stderr(predicate::str::contains("\"level\":\"INFO\""));
    aicr()
        .args(["--debug", "recipe", "--service", "eks"])
        .assert()
        .success()
        .stderr(predicate::str::contains("level=INFO module=aicr"));
    aicr()
        .env("LOG_LEVEL", "error")
        .args(["recipe", "--service", "eks"])
        .assert()
        .success()
        .stderr("");
    aicr()
        .args(["-v"])
        .assert()
        .success()
        .stdout(predicate::str::contains("aicr v"));
}
