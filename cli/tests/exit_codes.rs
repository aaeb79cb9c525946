//! One problem, one exit code: the README's table of situations and codes,
//! row by row, against every command that can meet the row; and the
//! output rules that go with it (nothing written into a file where a
//! directory was asked for, paths quoted once, files under the umask).

use std::path::{Path, PathBuf};

use aicr_test_support::unreachable_kubeconfig;
use assert_cmd::Command;

fn aicr() -> Command {
    let mut c = aicr_test_support::tools::aicr();
    c.env("NO_COLOR", "1");
    c
}

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        let f = Files {
            dir: tempfile::tempdir().unwrap(),
        };
        let out = aicr()
            .args([
                "recipe",
                "--service",
                "eks",
                "--accelerator",
                "h100",
                "--intent",
                "training",
                "--os",
                "ubuntu",
                "-o",
            ])
            .arg(f.path("recipe.yaml"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(
            f.path("snapshot.yaml"),
            "kind: Snapshot\napiVersion: aicr.nvidia.com/v1alpha1\nmeasurements:\n  - type: K8s\n    subtypes:\n      - subtype: server\n        data:\n          version: v1.33.5\n",
        )
        .unwrap();
        std::fs::write(f.path("a-file"), "x").unwrap();
        std::fs::write(f.path("bad-kubeconfig"), "this: [is not a kubeconfig").unwrap();
        f
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `{tmp}` in an argument becomes the temporary directory.
    fn expand(&self, arg: &str) -> String {
        arg.replace("{tmp}", self.dir.path().to_str().unwrap())
    }
}

/// Runs `args` and checks the code and that stderr's error line holds
/// `says`; returns stderr.
fn check(
    f: &Files,
    row: &str,
    args: &[&str],
    env: &[(&str, &str)],
    code: i32,
    says: &str,
) -> String {
    let args: Vec<String> = args.iter().map(|a| f.expand(a)).collect();
    let mut cmd = aicr();
    cmd.args(&args).current_dir(f.dir.path());
    for (k, v) in env {
        cmd.env(k, f.expand(v));
    }
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(
        out.status.code(),
        Some(code),
        "row {row:?}: aicr {}\n{err}",
        args.join(" ")
    );
    assert!(
        err.contains(says),
        "row {row:?}: aicr {}: want {says:?} in\n{err}",
        args.join(" ")
    );
    err
}

#[test]
fn a_missing_local_file_is_3_in_every_command() {
    let f = Files::new();
    let cases: &[&[&str]] = &[
        &["recipe", "-s", "{tmp}/nope.yaml"],
        &["recipe", "-c", "{tmp}/nope.yaml"],
        &["recipe", "--config", "{tmp}/nope.yaml"],
        &["recipe", "--service", "eks", "--data", "{tmp}/nope"],
        &[
            "query",
            "--config",
            "{tmp}/nope.yaml",
            "--selector",
            "components",
        ],
        &[
            "query",
            "--service",
            "eks",
            "--data",
            "{tmp}/nope",
            "--selector",
            "components",
        ],
        &[
            "validate",
            "--no-cluster",
            "-r",
            "{tmp}/nope.yaml",
            "-s",
            "{tmp}/snapshot.yaml",
        ],
        &[
            "validate",
            "--no-cluster",
            "-r",
            "{tmp}/recipe.yaml",
            "-s",
            "{tmp}/nope.yaml",
        ],
        &["bundle", "-r", "{tmp}/nope.yaml", "-o", "{tmp}/out"],
        &["bundle", "--config", "{tmp}/nope.yaml", "-o", "{tmp}/out"],
        &[
            "bundle",
            "-r",
            "{tmp}/recipe.yaml",
            "--data",
            "{tmp}/nope",
            "-o",
            "{tmp}/out",
        ],
        &["snapshot", "--local", "--template", "{tmp}/nope.tmpl"],
        &["snapshot", "--local", "--root", "{tmp}/nope"],
        &["verify", "{tmp}/nope"],
    ];
    for args in cases {
        check(&f, "missing local file", args, &[], 3, "nope");
    }
    assert!(!f.path("out").exists(), "nothing is written on failure");
}

#[test]
fn a_missing_kubeconfig_is_3_in_every_command_and_its_path_is_quoted_once() {
    let f = Files::new();
    let cases: &[&[&str]] = &[
        &["recipe", "-s", "cm://ns/snap"],
        &["recipe", "--service", "eks", "-o", "cm://ns/recipe"],
        &["query", "-s", "cm://ns/snap", "--selector", "components"],
        &["bundle", "-r", "cm://ns/recipe", "-o", "{tmp}/out"],
        &[
            "validate",
            "-r",
            "cm://ns/recipe",
            "-s",
            "{tmp}/snapshot.yaml",
            "--no-cluster",
        ],
        &[
            "validate",
            "-r",
            "{tmp}/recipe.yaml",
            "--phase",
            "deployment",
        ],
        &["snapshot", "-o", "{tmp}/s.yaml"],
    ];
    let missing = "{tmp}/no-kubeconfig";
    for args in cases {
        let mut flagged: Vec<&str> = args.to_vec();
        flagged.extend(["--kubeconfig", missing]);
        let err = check(
            &f,
            "missing kubeconfig (--kubeconfig)",
            &flagged,
            &[],
            3,
            "kubeconfig not found",
        );
        let shown = f.expand(missing);
        assert_eq!(
            err.matches(&shown).count(),
            1,
            "the path once, unquoted twice:\n{err}"
        );
        assert!(!err.contains("'\""), "{err}");
        check(
            &f,
            "missing kubeconfig (KUBECONFIG)",
            args,
            &[("KUBECONFIG", missing)],
            3,
            "no-kubeconfig",
        );
    }
    for args in cases {
        let mut flagged: Vec<&str> = args.to_vec();
        flagged.extend(["--kubeconfig", "{tmp}/bad-kubeconfig"]);
        check(
            &f,
            "unparsable kubeconfig",
            &flagged,
            &[],
            2,
            "invalid kubeconfig",
        );
    }
}

#[test]
fn an_unreachable_cluster_is_6() {
    let f = Files::new();
    let kc = unreachable_kubeconfig();
    let kc = kc.path().to_str().unwrap();
    let cases: &[&[&str]] = &[
        &["recipe", "-s", "cm://ns/snap", "--kubeconfig", kc],
        &[
            "bundle",
            "-r",
            "cm://ns/recipe",
            "-o",
            "{tmp}/out",
            "--kubeconfig",
            kc,
        ],
        &[
            "validate",
            "-r",
            "{tmp}/recipe.yaml",
            "-s",
            "cm://ns/snap",
            "--no-cluster",
            "--kubeconfig",
            kc,
        ],
    ];
    for args in cases {
        check(
            &f,
            "unreachable cluster",
            args,
            &[("AICR_KUBE_TIMEOUT", "2s")],
            6,
            "error:",
        );
    }
}

#[test]
fn a_file_where_a_directory_is_needed_is_2_before_any_work() {
    let f = Files::new();
    let err = check(
        &f,
        "not a directory",
        &["bundle", "-r", "{tmp}/recipe.yaml", "-o", "{tmp}/a-file"],
        &[],
        2,
        "exists and is not a directory",
    );
    assert!(
        !err.contains("generating bundle"),
        "refused only after work:\n{err}"
    );
    assert_eq!(std::fs::read_to_string(f.path("a-file")).unwrap(), "x");
    check(
        &f,
        "not a directory",
        &["verify", "{tmp}/a-file"],
        &[],
        2,
        "is not a directory",
    );
    check(
        &f,
        "not a directory",
        &["snapshot", "--local", "--root", "{tmp}/a-file"],
        &[],
        2,
        "is not a directory",
    );
}

#[test]
fn usage_errors_are_1() {
    let f = Files::new();
    for command in [
        "snapshot",
        "recipe",
        "query",
        "validate",
        "bundle",
        "verify",
        "skill",
        "nodes",
        "drift",
        "watch",
        "completion",
    ] {
        check(
            &f,
            "usage",
            &[command, "--no-such-flag"],
            &[],
            1,
            "--no-such-flag",
        );
    }
    check(
        &f,
        "usage",
        &["trust", "update", "--no-such-flag"],
        &[],
        1,
        "--no-such-flag",
    );
    check(&f, "usage", &["no-such-command"], &[], 1, "no-such-command");
    check(
        &f,
        "usage",
        &["bundle", "--data-only", "-r", "{tmp}/recipe.yaml"],
        &[],
        1,
        "--data",
    );
}

#[test]
fn a_bad_format_is_2_before_any_work_in_every_command() {
    let f = Files::new();
    let unknown = "unknown output format: \"xml\", valid formats are: yaml, json, table";
    let text_or_json = "invalid --format: must be text or json";
    let table_or_json = "invalid --format \"xml\": use table or json";
    // The aggregator is unreachable: the format is refused before any
    // connection is tried.
    let nowhere = ["--aggregator", "http://127.0.0.1:1"];
    for (args, says) in [
        (vec!["recipe", "--service", "eks"], unknown),
        (vec!["snapshot", "--local"], unknown),
        (vec!["verify", "{tmp}"], text_or_json),
        (vec!["watch"], text_or_json),
        (vec!["nodes"], table_or_json),
        (vec!["drift"], table_or_json),
    ] {
        let mut full = args.clone();
        if ["watch", "nodes", "drift"].contains(&args[0]) {
            full.extend(nowhere);
        }
        full.extend(["--format", "xml"]);
        let err = check(&f, "format", &full, &[], 2, says);
        assert_eq!(err.lines().count(), 1, "one line for aicr {full:?}:\n{err}");
    }
}

#[test]
fn bundle_takes_data_only_as_recipe_and_query_do() {
    let f = Files::new();
    let data = f.path("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(
        data.join("registry.yaml"),
        "apiVersion: aicr.nvidia.com/v1alpha1\nkind: ComponentRegistry\ncomponents: []\n",
    )
    .unwrap();
    // Layered over the embedded catalog, a registry alone is enough.
    let layered = [
        "bundle",
        "-r",
        "{tmp}/recipe.yaml",
        "--data",
        "{tmp}/data",
        "-o",
        "{tmp}/layered",
    ];
    check(&f, "--data layered", &layered, &[], 0, "");
    // As the whole catalog, it lacks the overlays: the flag took effect.
    let only = [
        "bundle",
        "-r",
        "{tmp}/recipe.yaml",
        "--data",
        "{tmp}/data",
        "--data-only",
        "-o",
        "{tmp}/only",
    ];
    check(&f, "--data-only", &only, &[], 8, "base.yaml not found");
    assert!(!f.path("only").exists(), "nothing is written on failure");
}

#[test]
fn ctrf_reports_name_the_version_as_every_output_does() {
    let f = Files::new();
    std::fs::write(
        f.path("gate.yaml"),
        "kind: RecipeResult\napiVersion: aicr.nvidia.com/v1alpha1\nconstraints:\n  - name: K8s.server.version\n    value: \">= 1.30\"\ncomponentRefs: []\n",
    )
    .unwrap();
    let out = aicr()
        .args(["validate", "--no-cluster", "-r"])
        .arg(f.path("gate.yaml"))
        .arg("-s")
        .arg(f.path("snapshot.yaml"))
        .args(["--phase", "deployment"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let recipe = std::fs::read_to_string(f.path("recipe.yaml")).unwrap();
    let version = report["results"]["tool"]["version"].as_str().unwrap();
    assert!(version.starts_with('v'), "{version}");
    assert!(
        recipe.contains(&format!("version: {version}")),
        "recipe and report disagree: {version}"
    );
}

#[cfg(unix)]
#[test]
fn output_files_follow_the_umask_and_values_stay_private() {
    use std::os::unix::fs::PermissionsExt;
    let f = Files::new();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let aicr_bin = assert_cmd::cargo::cargo_bin("aicr");
    for (umask, public) in [("022", 0o644), ("077", 0o600)] {
        let dir = f.path(&format!("u{umask}"));
        std::fs::create_dir(&dir).unwrap();
        let script = format!(
            "umask {umask} && {bin} recipe --service eks -o {d}/recipe.yaml && {bin} snapshot --local -o {d}/snap.yaml && {bin} bundle -r {d}/recipe.yaml -o {d}/bundle",
            bin = aicr_bin.display(),
            d = dir.display()
        );
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for file in [
            "recipe.yaml",
            "snap.yaml",
            "bundle/recipe.yaml",
            "bundle/checksums.txt",
            "bundle/README.md",
        ] {
            assert_eq!(mode(&dir.join(file)), public, "umask {umask}: {file}");
        }
        assert_eq!(
            mode(&dir.join("bundle/deploy.sh")),
            0o755 & !u32::from_str_radix(umask, 8).unwrap()
        );
        let values = std::fs::read_dir(dir.join("bundle"))
            .unwrap()
            .map(|e| e.unwrap().path().join("values.yaml"))
            .find(|p| p.exists())
            .unwrap();
        assert_eq!(mode(&values), 0o600, "values carry --set credentials");
    }
}

/// Names the API server would refuse are refused before any cluster is
/// asked (exit 2), so the message is about the name, not the kubeconfig.
#[test]
fn names_the_api_server_would_refuse_are_2_before_the_cluster() {
    let f = Files::new();
    let unreachable = [("KUBECONFIG", "{tmp}/no-kubeconfig")];
    for (args, says) in [
        (
            &["snapshot", "--namespace", "Bad_NS"][..],
            "invalid --namespace",
        ),
        (&["snapshot", "--node-selector", "=x"][..], "is not a label"),
        (&["snapshot", "--image", " "][..], "--image is empty"),
        (
            &[
                "validate",
                "--namespace",
                "UPPER",
                "-r",
                "{tmp}/recipe.yaml",
            ][..],
            "invalid --namespace",
        ),
        (
            &[
                "bundle",
                "-r",
                "{tmp}/recipe.yaml",
                "-o",
                "{tmp}/out",
                "--accelerated-node-selector",
                "k=bad value",
            ][..],
            "is not a label",
        ),
    ] {
        check(
            &f,
            "name the API server would refuse",
            args,
            &unreachable,
            2,
            says,
        );
    }
    assert!(!f.path("out").exists(), "nothing is written on failure");
}
