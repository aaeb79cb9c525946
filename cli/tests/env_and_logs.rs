//! What the CLI reference promises about environment variables, log
//! records and usage errors, through the real `aicr` binary: boolean
//! variables read as Go's `strconv.ParseBool` reads them, the JSON record
//! keys, plain text in files and pipes, `AICR_LOG_LEVEL`, the `--data` and
//! `--config` debug/info lines, a bare `aicr`, and defaults shown in help.

use std::fs;
use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

/// The binary with no logging, colour or level settings inherited from the
/// environment the tests run in.
fn aicr() -> Command {
    aicr_test_support::tools::aicr()
}

fn stderr(out: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&out.get_output().stderr).into_owned()
}

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

const TRUE: [&str; 6] = ["1", "t", "T", "TRUE", "true", "True"];
const FALSE: [&str; 6] = ["0", "f", "F", "FALSE", "false", "False"];

#[test]
fn global_boolean_variables_read_as_go_parses_them() {
    for v in TRUE {
        let out = aicr()
            .env("AICR_DEBUG", v)
            .args(["recipe", "--service", "eks"])
            .assert()
            .success();
        assert!(
            stderr(&out).contains("level=INFO module=aicr"),
            "AICR_DEBUG={v} turns on text mode: {}",
            stderr(&out)
        );
        let out = aicr()
            .env("AICR_LOG_JSON", v)
            .args(["recipe", "--service", "eks"])
            .assert()
            .success();
        assert!(
            stderr(&out).starts_with("{\"time\":"),
            "AICR_LOG_JSON={v}: {}",
            stderr(&out)
        );
    }
    // False spellings and an exported empty variable are all "off".
    for v in FALSE.iter().chain(&[""]) {
        for var in ["AICR_DEBUG", "AICR_LOG_JSON"] {
            let out = aicr()
                .env(var, v)
                .args(["recipe", "--service", "eks"])
                .assert()
                .success();
            assert!(
                stderr(&out).starts_with("[cli] "),
                "{var}={v:?} leaves CLI mode: {}",
                stderr(&out)
            );
        }
    }
}

#[test]
fn a_bad_boolean_variable_is_a_usage_error_naming_the_variable() {
    for (var, args) in [
        ("AICR_DEBUG", &["recipe", "--service", "eks"][..]),
        ("AICR_LOG_JSON", &["recipe", "--service", "eks"][..]),
        ("AICR_REQUIRE_GPU", &["snapshot", "--local"][..]),
        ("AICR_REQUIRE_GPU", &["validate", "--no-cluster"][..]),
        (
            "AICR_OIDC_DEVICE_FLOW",
            &["bundle", "-r", "/nonexistent.yaml"][..],
        ),
    ] {
        let out = aicr().env(var, "yes").args(args).assert().code(1);
        let err = stderr(&out);
        assert!(
            err.contains(&format!("invalid value 'yes' for {var}:")),
            "{var}: {err}"
        );
        assert!(!err.contains("for '--"), "names no flag: {err}");
        assert!(out.get_output().stdout.is_empty());
    }
}

#[test]
fn command_boolean_variables_accept_every_spelling() {
    // --require-gpu with --runtime-class is refused, so the refusal shows
    // the variable was read as true; false and empty let the run reach the
    // next check, a --template that needs YAML.
    for v in TRUE {
        aicr()
            .env("AICR_REQUIRE_GPU", v)
            .args(["snapshot", "--runtime-class", "nvidia", "--format", "json"])
            .args(["--template", "report.tmpl"])
            .assert()
            .code(2)
            .stderr(predicate::str::contains("mutually exclusive"));
    }
    for v in FALSE.iter().chain(&[""]) {
        aicr()
            .env("AICR_REQUIRE_GPU", v)
            .args(["snapshot", "--runtime-class", "nvidia", "--format", "json"])
            .args(["--template", "report.tmpl"])
            .assert()
            .code(2)
            .stderr(predicate::str::contains("--template requires YAML format"));
    }
    // validate and bundle parse theirs and go on to the real error.
    for v in ["1", "False", ""] {
        aicr()
            .env("AICR_REQUIRE_GPU", v)
            .args(["validate", "-r", "/nonexistent-recipe.yaml"])
            .args(["-s", "/nonexistent-snapshot.yaml", "--no-cluster"])
            .assert()
            .failure()
            .stderr(predicate::str::contains("AICR_REQUIRE_GPU").not())
            .stderr(predicate::str::contains("/nonexistent-"));
        aicr()
            .env("AICR_OIDC_DEVICE_FLOW", v)
            .args(["bundle", "-r", "/nonexistent-recipe.yaml"])
            .assert()
            .failure()
            .stderr(predicate::str::contains("AICR_OIDC_DEVICE_FLOW").not())
            .stderr(predicate::str::contains("nonexistent-recipe"));
    }
}

fn is_rfc3339_millis_utc(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() == 24
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[23] == b'Z'
        && t[..19]
            .chars()
            .all(|c| c.is_ascii_digit() || "-T:".contains(c))
        && t[20..23].chars().all(|c| c.is_ascii_digit())
}

#[test]
fn json_records_use_the_reference_keys() {
    let out = aicr()
        .args(["--log-json", "recipe", "--service", "eks"])
        .assert()
        .success();
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert!(!lines.is_empty());
    for line in &lines {
        assert!(
            line.starts_with("{\"time\":\"") && line.contains("\",\"level\":\""),
            "time, then level: {line}"
        );
        let v: Value = serde_json::from_str(line).unwrap();
        let obj = v.as_object().unwrap();
        assert!(
            is_rfc3339_millis_utc(obj["time"].as_str().unwrap()),
            "{line}"
        );
        assert_eq!(obj["level"], "INFO", "{line}");
        assert!(obj["msg"].is_string(), "{line}");
        for gone in ["timestamp", "message", "target", "fields", "span", "spans"] {
            assert!(!obj.contains_key(gone), "no {gone}: {line}");
        }
    }
    assert!(
        err.contains("\"msg\":\"recipe generation completed"),
        "{err}"
    );

    // The failure record carries its fields as top-level keys.
    let out = aicr()
        .args(["--log-json", "recipe", "--service", "nope"])
        .assert()
        .code(2);
    let err = stderr(&out);
    let last: Value = serde_json::from_str(err.lines().last().unwrap()).unwrap();
    assert_eq!(last["level"], "ERROR");
    assert_eq!(last["msg"], "command failed");
    assert_eq!(last["exitCode"], 2);
    assert!(last["error"].as_str().unwrap().contains("nope"), "{last}");

    // --debug adds DEBUG records in the same shape (--data logs at debug).
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "registry.yaml",
        "apiVersion: aicr.nvidia.com/v1alpha1\nkind: ComponentRegistry\ncomponents: []\n",
    );
    let out = aicr()
        .args([
            "--log-json",
            "--debug",
            "recipe",
            "--service",
            "eks",
            "--data",
        ])
        .arg(dir.path())
        .assert()
        .success();
    let err = stderr(&out);
    assert!(
        err.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|v| v["level"] == "DEBUG"),
        "{err}"
    );
}

#[test]
fn logs_in_files_and_pipes_carry_no_escape_codes() {
    // An empty --root makes the local collectors degrade and log structured
    // fields (error=...), the ones that used to come out italic and dim.
    let root = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    for mode in [&[][..], &["--debug"][..], &["--log-json"][..]] {
        let out = aicr()
            .args(mode)
            .args(["snapshot", "--local", "--root"])
            .arg(root.path())
            .arg("-o")
            .arg(dir.path().join("s.yaml"))
            .assert()
            .success();
        let err = stderr(&out);
        assert!(
            err.contains("error=") || err.contains("\"error\":"),
            "{mode:?}: {err}"
        );
        assert!(!err.contains('\x1b'), "{mode:?}: {err:?}");
    }
    let out = aicr()
        .args(["recipe", "--service", "nope"])
        .assert()
        .code(2);
    assert!(!stderr(&out).contains('\x1b'));
}

#[test]
fn aicr_log_level_sets_the_level() {
    aicr()
        .env("AICR_LOG_LEVEL", "error")
        .args(["recipe", "--service", "eks"])
        .assert()
        .success()
        .stderr("");
    aicr()
        .env("AICR_LOG_LEVEL", "ERROR")
        .env("LOG_LEVEL", "info")
        .args(["recipe", "--service", "eks"])
        .assert()
        .success()
        .stderr("");
    // Debug lines appear at debug, in CLI mode too.
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "registry.yaml",
        "apiVersion: aicr.nvidia.com/v1alpha1\nkind: ComponentRegistry\ncomponents: []\n",
    );
    aicr()
        .env("AICR_LOG_LEVEL", "debug")
        .args(["recipe", "--service", "eks", "--data"])
        .arg(dir.path())
        .assert()
        .success()
        .stderr(predicate::str::contains("[cli] file source resolved"));
    // The older name still works.
    aicr()
        .env("LOG_LEVEL", "error")
        .args(["recipe", "--service", "eks"])
        .assert()
        .success()
        .stderr("");
}

#[test]
fn data_debug_logs_name_each_file_source_and_registry_merge() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "registry.yaml",
        "apiVersion: aicr.nvidia.com/v1alpha1\nkind: ComponentRegistry\ncomponents:\n  - name: my-operator\n    displayName: my-operator\n    helm:\n      defaultRepository: https://my-charts.example.com\n      defaultChart: myrepo/my-operator\n      defaultVersion: v1.0.0\n  - name: cert-manager\n    displayName: cert-manager\n    helm:\n      defaultRepository: https://charts.jetstack.io\n      defaultChart: jetstack/cert-manager\n      defaultNamespace: certs-custom\n",
    );
    write(
        dir.path(),
        "components/my-operator/values.yaml",
        "replicas: 2\n",
    );
    write(
        dir.path(),
        "components/cert-manager/values.yaml",
        "installCRDs: true\n",
    );
    let out = aicr()
        .args(["--debug", "recipe", "--service", "eks", "--data"])
        .arg(dir.path())
        .assert()
        .success();
    let err = stderr(&out);
    for needle in [
        "file source resolved: path=components/my-operator/values.yaml source=external",
        "file source resolved: path=components/cert-manager/values.yaml source=external (replaces the embedded file)",
        "file source resolved: path=overlays/base.yaml source=embedded",
        "registry component added by external data: name=my-operator",
        "registry component overridden by external data: name=cert-manager",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    assert!(
        !err.contains("path=components/my-operator/values.yaml source=external (replaces"),
        "a new file replaces nothing"
    );
    // Not at the default level.
    let out = aicr()
        .args(["recipe", "--service", "eks", "--data"])
        .arg(dir.path())
        .assert()
        .success();
    assert!(!stderr(&out).contains("file source resolved"));
}

#[test]
fn recipe_config_logs_every_field_a_flag_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write(
        &data,
        "registry.yaml",
        "apiVersion: aicr.nvidia.com/v1alpha1\nkind: ComponentRegistry\ncomponents: []\n",
    );
    write(
        dir.path(),
        "aicr.yaml",
        &format!(
            "kind: AICRConfig\napiVersion: aicr.nvidia.com/v1alpha1\nmetadata: {{name: t}}\nspec:\n  recipe:\n    criteria: {{service: eks, accelerator: h100, intent: training, os: ubuntu, nodes: 4}}\n    output: {{format: json}}\n    data: {}\n",
            data.display()
        ),
    );
    let other = dir.path().join("other");
    write(
        &other,
        "registry.yaml",
        "apiVersion: aicr.nvidia.com/v1alpha1\nkind: ComponentRegistry\ncomponents: []\n",
    );
    let out = aicr()
        .args([
            "recipe",
            "--service",
            "gke",
            "--intent",
            "inference",
            "--os",
            "cos",
            "--nodes",
            "8",
            "--gpu",
            "h100",
            "--format",
            "yaml",
            "--data",
        ])
        .arg(&other)
        .arg("--config")
        .arg(dir.path().join("aicr.yaml"))
        .assert()
        .success();
    let err = stderr(&out);
    for needle in [
        "[cli] CLI flag overriding config value: field=spec.recipe.criteria.service flag=--service config=eks override=gke",
        "field=spec.recipe.criteria.intent flag=--intent config=training override=inference",
        "field=spec.recipe.criteria.os flag=--os config=ubuntu override=cos",
        "field=spec.recipe.criteria.nodes flag=--nodes config=4 override=8",
        "field=spec.recipe.output.format flag=--format config=json override=yaml",
        &format!(
            "field=spec.recipe.data flag=--data config={} override={}",
            data.display(),
            other.display()
        ),
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    // A flag that repeats the config's value overrides nothing.
    assert!(!err.contains("criteria.accelerator"), "{err}");
}

#[test]
fn no_arguments_prints_help_to_stderr_as_a_usage_error() {
    let out = aicr().assert().code(1);
    assert!(out.get_output().stdout.is_empty());
    let err = stderr(&out);
    assert!(err.contains("Usage: aicr"), "{err}");
    assert!(err.contains("Commands:"), "{err}");
}

#[test]
fn help_shows_the_format_and_deployer_defaults() {
    let help = |args: &[&str]| {
        let out = aicr().args(args).assert().success();
        let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    for cmd in ["recipe", "query", "snapshot"] {
        let text = help(&[cmd, "--help"]);
        assert!(
            text.contains("--format <FORMAT> Output format: yaml, json, table [default: yaml]"),
            "{cmd}: {text}"
        );
    }
    let text = help(&["bundle", "--help"]);
    assert!(
        text.contains("--deployer <DEPLOYER> Deployer: helm, argocd, argocd-helm [default: helm]"),
        "{text}"
    );
}
