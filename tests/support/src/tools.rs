//! The real tools that judge what the project emits (Helm's engine,
//! Kubernetes and CRD schemas, Prometheus, Alertmanager, a registry) and the
//! reference corpus beside the checkout, found or reported missing in one
//! place.
//!
//! `scripts/install-test-tools.sh` installs the tools. A test that needs one
//! asks here: outside CI a missing tool skips the test with a line saying
//! what to install; under `CI=true` it fails, so CI can never pass by
//! judging nothing. The corpus (`../shared`) follows the same rule: a
//! fresh clone has none and the tests that compare with it skip, while CI,
//! which always has it, fails without it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Reports something a test needs and lacks: a panic under CI, which
/// always has the tools and the corpus, a loud skip elsewhere.
fn missing<T>(line: &str) -> Option<T> {
    assert!(!in_ci(), "CI=true: {line}");
    eprintln!("SKIPPED: {line}");
    None
}

fn missing_tool<T>(what: &str) -> Option<T> {
    missing(&format!(
        "{what} is not installed; run scripts/install-test-tools.sh (the tests it judges are skipped)"
    ))
}

/// The reference corpus directory (`shared/` beside the checkout), or
/// `None` with a skip message naming `why` when this checkout has none (a
/// fresh clone); under `CI=true` its absence fails the test.
pub fn corpus(why: &str) -> Option<PathBuf> {
    let dir = repo_root().join("../shared");
    if dir.join("reference").is_dir() {
        Some(dir)
    } else {
        missing(&format!(
            "{why}: the reference corpus (../shared beside the checkout) is absent"
        ))
    }
}

/// A Debian-packaged tool on `PATH` (`promtool`, `prometheus`,
/// `prometheus-alertmanager`, `amtool`, `docker-registry`, `shellcheck`).
pub fn system_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .or_else(|| missing_tool(name))
}

/// The Python judges (`tests/support/judge/judge.py`) in the project's
/// tools venv: Helm's engine and the Kubernetes schemas.
pub struct Judge {
    python: PathBuf,
    script: PathBuf,
}

/// Kubernetes versions the schemas know, oldest first; the newest is the
/// newest the pinned kubernetes-validate ships.
pub const NEWEST_KUBERNETES: &str = "1.37.0";

impl Judge {
    pub fn find() -> Option<Judge> {
        let root = repo_root();
        let python = root.join(".tools/venv/bin/python");
        if !python.is_file() {
            return missing_tool(
                "the judges' Python venv (.tools/venv: helm-python-sdk, kubernetes-validate)",
            );
        }
        Some(Judge {
            python,
            script: root.join("tests/support/judge/judge.py"),
        })
    }

    /// The venv's Python (helm-python-sdk, kubernetes-validate, jsonschema,
    /// bcrypt, PyYAML), for tests that need one of those libraries directly.
    pub fn python(&self) -> &Path {
        &self.python
    }

    /// Runs a batch of requests; one result per request, `Err` carrying
    /// the tool's own message.
    pub fn batch(&self, requests: &[Value]) -> Vec<Result<Value, String>> {
        let mut child = Command::new(&self.python)
            .arg(&self.script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the judge starts");
        let input = serde_json::to_vec(requests).unwrap();
        let mut stdin = child.stdin.take().unwrap();
        // Feed from another thread: a large batch would otherwise fill both
        // pipes and deadlock.
        let feeder = std::thread::spawn(move || stdin.write_all(&input));
        let out = child.wait_with_output().expect("the judge runs");
        feeder.join().unwrap().expect("the judge reads its batch");
        assert!(
            out.status.success(),
            "the judge failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let results: Vec<Value> = serde_json::from_slice(&out.stdout).expect("judge output");
        assert_eq!(results.len(), requests.len());
        results
            .into_iter()
            .map(|r| match r.get("ok") {
                Some(ok) => Ok(ok.clone()),
                None => Err(r["error"].as_str().unwrap_or("?").to_string()),
            })
            .collect()
    }

    fn one(&self, request: Value) -> Result<Value, String> {
        self.batch(&[request]).pop().unwrap()
    }

    /// `helm lint --strict` of a chart directory: the findings of severity
    /// warning or error, as "path: message" lines (empty: clean).
    pub fn helm_lint(
        &self,
        chart: &Path,
        values: Option<&Value>,
        kube_version: &str,
    ) -> Vec<String> {
        let report = self
            .one(json!({
                "op": "helm_lint", "chart": chart, "values": values,
                "strict": true, "kube_version": format!("v{kube_version}"),
            }))
            .unwrap_or_else(|e| panic!("helm lint {}: {e}", chart.display()));
        lint_findings(&report)
    }

    /// Helm's offline render of a chart: template path → text.
    pub fn helm_render(
        &self,
        chart: &Path,
        values: Option<&Value>,
        release: &str,
        namespace: &str,
    ) -> Result<Vec<(String, String)>, String> {
        let out = self.one(json!({
            "op": "helm_render", "chart": chart, "values": values,
            "name": release, "namespace": namespace,
        }))?;
        Ok(out
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect())
    }

    /// Validates objects (YAML stream) against the official schemas of
    /// every version in `versions` (strict) or, for kinds a CRD in `crds`
    /// defines, that CRD's schema. Returns "Kind/name: problem" lines.
    pub fn k8s_validate(&self, yaml: &str, versions: &[&str], crds: &[PathBuf]) -> Vec<String> {
        let out = self
            .one(json!({"op": "k8s_validate", "yaml": yaml, "versions": versions, "crds": crds}))
            .unwrap_or_else(|e| panic!("schema validation could not run: {e}\n{yaml}"));
        schema_findings(&out)
    }

    /// The request for one template rendered by Helm's engine (see
    /// `judge.py`'s `helm_template`), for batching.
    pub fn template_request(
        template: &str,
        values: &Value,
        release: &str,
        namespace: &str,
        chart: &str,
        version: &str,
    ) -> Value {
        json!({
            "op": "helm_template", "template": template, "values": values,
            "name": release, "namespace": namespace,
            "chart_name": chart, "chart_version": version,
        })
    }
}

/// Lint messages at warning (2) or error (3) severity, as "path: message".
pub fn lint_findings(report: &Value) -> Vec<String> {
    report["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["severity"].as_i64().unwrap_or(3) >= 2)
        .map(|m| {
            format!(
                "{}: {}",
                m["path"].as_str().unwrap_or(""),
                m["error"].as_str().unwrap_or("")
            )
        })
        .collect()
}

fn schema_findings(results: &Value) -> Vec<String> {
    results
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| {
            let who = format!(
                "{}/{}",
                r["kind"].as_str().unwrap_or("?"),
                r["name"].as_str().unwrap_or("?")
            );
            r["errors"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |e| format!("{who}: {}", e.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Helm's merge of a values layer over `base` (`-f` files, `--set`): maps
/// merge key by key, a null adds nothing (an empty values file), anything
/// else replaces.
pub fn merge_values(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge_values(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (_, Value::Null) => {}
        (b, o) => *b = o.clone(),
    }
}

/// The published CRD schemas kept as fixtures (`tests/support/crds/`; each
/// file names its source), for [`Judge::k8s_validate`].
pub fn crd_fixtures() -> Vec<PathBuf> {
    let dir = repo_root().join("tests/support/crds");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

/// A project binary (`aicr`, `aicr-agent`, `aicr-aggregator`) that nothing
/// in the developer's shell can steer: every `AICR_*` variable, the
/// Kubernetes, in-cluster, Docker, OIDC-token and logging variables and
/// `NO_COLOR` are removed, and `HOME` is an empty directory of this test
/// process. Tests set back what they mean to test.
pub fn hermetic(bin: &str) -> assert_cmd::Command {
    assert_cmd::Command::from_std(hermetic_std(bin))
}

/// [`hermetic`] as a plain [`std::process::Command`], for a binary a test
/// starts and leaves running.
pub fn hermetic_std(bin: &str) -> std::process::Command {
    static HOME: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let home = HOME.get_or_init(|| tempfile::tempdir().expect("a temporary HOME"));
    let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin(bin));
    const OTHERS: &[&str] = &[
        "KUBECONFIG",
        "KUBERNETES_SERVICE_HOST",
        "KUBERNETES_SERVICE_PORT",
        "NODE_NAME",
        "DOCKER_CONFIG",
        "COSIGN_IDENTITY_TOKEN",
        "SIGSTORE_ID_TOKEN",
        "ACTIONS_ID_TOKEN_REQUEST_URL",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
        "LOG_LEVEL",
        "RUST_LOG",
        "NO_COLOR",
    ];
    for (name, _) in std::env::vars_os() {
        let n = name.to_string_lossy();
        if n.starts_with("AICR_") || OTHERS.contains(&n.as_ref()) {
            c.env_remove(&name);
        }
    }
    c.env("HOME", home.path());
    c
}

/// [`hermetic`] `aicr`.
pub fn aicr() -> assert_cmd::Command {
    hermetic("aicr")
}
