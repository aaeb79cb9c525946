//! The aggregator's metrics and the chart's alerts and dashboard, judged by
//! the real Prometheus tools rather than by our own reading of them:
//!
//! - `promtool check metrics` on the `/metrics` of a running
//!   `aicr-aggregator` binary in which every metric family has samples;
//! - `promtool check rules` and `promtool test rules` (the unit tests in
//!   `fixtures/prometheusrule-tests.yaml`) on the PrometheusRule that Helm's
//!   own engine renders from `charts/aicr`;
//! - end to end: a real Prometheus scrapes an aggregator fed by a real
//!   `aicr-agent` on a fixture host root and evaluates the chart's rules, a
//!   real Alertmanager receives the aggregator's own alerts; editing the
//!   host's os-release opens drift, restoring it resolves it, and every
//!   query of the chart's Grafana dashboard returns data.
//!
//! The tools come from `scripts/install-test-tools.sh`; without them these
//! tests skip with a message (and fail under `CI=true`). The agent binary is
//! built with cargo when this target directory lacks it. Every process a
//! test starts listens on 127.0.0.1 at a free port, is killed when the test
//! ends, and every wait is bounded.

use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aicr_test_support::tools::{self, Judge};
use serde_json::{Value, json};

use crate::common::Proc;

/// The longest any one condition is waited for.
const WAIT: Duration = Duration::from_secs(60);
const NODE: &str = "aicr-e2e";
const CONSTRAINT: &str = "OS.release.VERSION_ID";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn chart() -> PathBuf {
    repo().join("charts/aicr")
}

// ------------------------------------------------------------ processes

/// Polls `check` every 200 ms until it gives `Ok`, for at most [`WAIT`];
/// then fails with its last `Err` (each [`Proc`] still held prints its log
/// as the test unwinds).
fn wait_for<T>(what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        let last = match check() {
            Ok(v) => return v,
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            panic!("timed out after {WAIT:?} waiting for {what}; last: {last}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A port nobody listens on now (the tools need one named up front; a
/// start that loses the race is retried).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .into()
}

/// GET: (status, content type, body).
fn get(url: &str, accept: Option<&str>) -> Result<(u16, String, String), String> {
    let mut req = http().get(url);
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let mut resp = req.call().map_err(|e| format!("GET {url}: {e}"))?;
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    Ok((resp.status().as_u16(), ctype, body))
}

fn get_json(url: &str) -> Result<Value, String> {
    let (code, _, body) = get(url, None)?;
    if code != 200 {
        return Err(format!("GET {url}: HTTP {code}: {body}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("GET {url}: {e}: {body}"))
}

/// Runs a tool to completion: (success, stdout + stderr).
fn run_tool(tool: &Path, args: &[&str], stdin: Option<&str>, dir: &Path) -> (bool, String) {
    let mut child = Command::new(tool)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{} does not start: {e}", tool.display()));
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

// ------------------------------------------------------- our binaries

fn aggregator_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_aicr-aggregator"))
}

/// `aicr-agent` from the same target directory as `aicr-aggregator`;
/// `cargo test --workspace` builds it, `-p aicr-aggregator` alone does not,
/// so it is built here when missing.
fn agent_bin() -> PathBuf {
    let dir = aggregator_bin().parent().unwrap().to_path_buf();
    let bin = dir.join("aicr-agent");
    if !bin.exists() {
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .args([
                "build",
                "--quiet",
                "-p",
                "aicr-agent",
                "--bin",
                "aicr-agent",
            ])
            .current_dir(repo());
        if dir.file_name().is_some_and(|n| n == "release") {
            cargo.arg("--release");
        }
        let status = cargo.status().expect("cargo runs");
        assert!(status.success(), "cargo build -p aicr-agent failed");
    }
    assert!(bin.exists(), "{} is missing", bin.display());
    bin
}

struct Aggregator {
    /// Held so the process lives as long as the test's handle on it.
    _proc: Proc,
    grpc: String,
    http: String,
}

fn start_aggregator(dir: &Path, recipe: &Path, extra: &[&str]) -> Aggregator {
    let mut proc = Proc::spawn(
        "aggregator",
        Command::new(aggregator_bin())
            .args(["--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
            .args(["--insecure", "--trust-node-names", "--no-kube"])
            .arg("--recipe")
            .arg(recipe)
            .args(extra)
            .env("LOG_LEVEL", "info"),
        dir,
    );
    let (grpc, http) = wait_for("the aggregator to listen", || {
        if let Some(status) = proc.exited() {
            panic!("the aggregator exited ({status})");
        }
        let log = proc.log_text();
        let line = log
            .lines()
            .find(|l| l.contains("aggregator listening"))
            .ok_or("no listening line yet")?;
        let field = |k: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .map(str::to_string)
        };
        Ok((field("grpc=").unwrap(), field("http=").unwrap()))
    });
    Aggregator {
        _proc: proc,
        grpc,
        http,
    }
}

impl Aggregator {
    fn metrics(&self) -> String {
        get(&format!("http://{}/metrics", self.http), None)
            .map(|(_, _, body)| body)
            .unwrap_or_default()
    }

    /// Waits until `/metrics` shows `line`.
    fn wait_metric(&self, line: &str) {
        wait_for(&format!("/metrics to show {line}"), || {
            let text = self.metrics();
            if text.contains(line) {
                Ok(())
            } else {
                Err(text)
            }
        });
    }
}

/// A copy of the demo's fixture host (Ubuntu 24.04).
fn host_root(dir: &Path) -> PathBuf {
    host_root_named(dir, "host")
}

fn host_root_named(dir: &Path, name: &str) -> PathBuf {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), &target).unwrap();
            }
        }
    }
    let root = dir.join(name);
    copy(&repo().join("scripts/demo/host-root"), &root);
    root
}

/// Rewrites the host's VERSION_ID the way `scripts/demo.sh` does: a new
/// file renamed over the old one.
fn set_version(root: &Path, version: &str) {
    let file = root.join("etc/os-release");
    let text: String = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| {
            if l.starts_with("VERSION_ID=") {
                format!("VERSION_ID=\"{version}\"\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let new = file.with_extension("new");
    std::fs::write(&new, text).unwrap();
    std::fs::rename(&new, &file).unwrap();
}

fn start_agent(dir: &Path, name: &str, node: &str, grpc: &str, root: &Path) -> Proc {
    Proc::spawn(
        name,
        Command::new(agent_bin())
            .arg("--aggregator")
            .arg(format!("http://{grpc}"))
            .arg("--insecure")
            .arg("--root")
            .arg(root)
            .args(["--node-name", node, "--interval", "1s", "--heartbeat", "1s"])
            .env("LOG_LEVEL", "info"),
        dir,
    )
}

/// The recipe every test runs: the one constraint the fixture host meets
/// until its os-release is edited.
fn recipe(dir: &Path) -> PathBuf {
    crate::common::recipe_file(dir, &[(CONSTRAINT, "24.04", "critical")])
}

// ------------------------------------------------------------ the chart

/// Helm's rendering of the chart: template path -> text.
fn helm_render(judge: &Judge, values: Value) -> Vec<(String, String)> {
    judge
        .helm_render(&chart(), Some(&values), "aicr", "monitoring")
        .unwrap_or_else(|e| panic!("helm cannot render charts/aicr with {values}: {e}"))
}

fn rendered(docs: &[(String, String)], template: &str) -> Value {
    let (_, text) = docs
        .iter()
        .find(|(path, _)| path.ends_with(&format!("templates/{template}")))
        .unwrap_or_else(|| panic!("helm rendered no {template}"));
    aicr::yaml::from_yaml(text).unwrap_or_else(|e| panic!("{template}: {e}\n{text}"))
}

/// The PrometheusRule's `spec` (its groups) as a Prometheus rules file;
/// JSON is YAML, so it is written as JSON.
fn write_rules(judge: &Judge, violation_for: &str, stale_for: &str, path: &Path) {
    let docs = helm_render(
        judge,
        json!({"prometheusRule": {
            "enabled": true, "violationFor": violation_for, "staleFor": stale_for,
        }}),
    );
    let rule = rendered(&docs, "prometheusrule.yaml");
    assert_eq!(rule["kind"], "PrometheusRule");
    std::fs::write(path, serde_json::to_string_pretty(&rule["spec"]).unwrap()).unwrap();
}

/// The dashboard as the chart ships it: the JSON inside the ConfigMap Helm
/// renders.
fn dashboard(judge: &Judge) -> Value {
    let docs = helm_render(judge, json!({"grafanaDashboard": {"enabled": true}}));
    let cm = rendered(&docs, "grafana-dashboard.yaml");
    let text = cm["data"]["aicr.json"]
        .as_str()
        .expect("the ConfigMap holds aicr.json");
    serde_json::from_str(text).unwrap_or_else(|e| panic!("aicr.json: {e}"))
}

/// Every query of the dashboard: (panel title, expr).
fn panel_queries(dashboard: &Value) -> Vec<(String, String)> {
    dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or("?").to_string();
            p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |t| (title.clone(), t["expr"].as_str().unwrap_or("").to_string()))
        })
        .collect()
}

/// Grafana's built-in interval variables, given concrete values the way
/// Grafana would for a 1 s scrape and a short time range.
fn grafana_vars(expr: &str) -> String {
    let out = expr
        .replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "5m");
    assert!(!out.contains('$'), "a Grafana variable is left in {out}");
    out
}

// ----------------------------------------------------------------- tests

#[test]
fn promtool_check_metrics_finds_nothing_on_a_busy_aggregator() {
    let Some(promtool) = tools::system_tool("promtool") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let root = host_root(dir);
    set_version(&root, "22.04");
    // Recipe text lands in label values: a constraint whose name has a
    // quote and a backslash (and no reading, so it is violated) must not
    // break the exposition.
    let odd = r#"OS.release.NO"SUCH\KEY"#;
    let recipe = crate::common::recipe_file(
        dir,
        &[(CONSTRAINT, "24.04", "critical"), (odd, "1", "warning")],
    );
    // Alertmanager at a port nobody listens on: the sink drops (counted).
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let agg = start_aggregator(
        dir,
        &recipe,
        &["--stale-after", "2s", "--alertmanager-url", &nowhere],
    );

    // A violating node that reconnects once, then goes silent (stale).
    let agent = start_agent(dir, "agent", NODE, &agg.grpc, &root);
    let violation = format!(
        r#"aicr_constraint_violation{{node="{NODE}",constraint="{CONSTRAINT}",severity="critical"}} 1"#
    );
    agg.wait_metric(&violation);
    agg.wait_metric(
        &format!(r#"aicr_constraint_violation{{node="{NODE}",constraint="OS.release.NO\"SUCH\\KEY",severity="warning"}} 1"#),
    );
    // Two peers in its (default) pool with another swappiness: the node
    // deviates from them on that and on its edited os-release.
    let peer_root = host_root_named(dir, "peer-host");
    std::fs::write(peer_root.join("proc/sys/vm/swappiness"), "10\n").unwrap();
    let peers: Vec<Proc> = ["peer-1", "peer-2"]
        .iter()
        .map(|n| start_agent(dir, n, n, &agg.grpc, &peer_root))
        .collect();
    agg.wait_metric(
        &format!(r#"aicr_peer_deviation{{node="{NODE}",pool="default",reading="OS.sysctl./proc/sys/vm/swappiness"}} 1"#),
    );
    drop(peers);
    drop(agent);
    agg.wait_metric("aicr_agents_connected 0");
    let agent = start_agent(dir, "agent-again", NODE, &agg.grpc, &root);
    agg.wait_metric("aicr_agent_reconnects_total 1");
    drop(agent);
    // A Hello whose node name is no Kubernetes name is refused. The real
    // agent checks its own name before it connects, so a simulated one
    // says it.
    let refused = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let channel = crate::common::sim_agent::channel(&format!("http://{}", agg.grpc)).await;
        crate::common::sim_agent::SimAgent::connect(channel, "Not_A_Node", "")
            .await
            .err()
    });
    assert_eq!(
        refused.map(|s| s.code()),
        Some(tonic::Code::InvalidArgument)
    );
    agg.wait_metric(r#"aicr_agent_rejected_total{reason="bad_node_name"}"#);
    agg.wait_metric(&format!(r#"aicr_node_stale{{node="{NODE}"}} 1"#));
    agg.wait_metric(r#"aicr_sink_dropped_total{sink="alertmanager"}"#);

    // What a plain client (promtool, curl) gets: the classic text format.
    let url = format!("http://{}/metrics", agg.http);
    let (code, ctype, text) = get(&url, None).unwrap();
    assert_eq!(code, 200);
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    // Every family has samples, so promtool judges all of them.
    let families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(families.len() >= 13, "{text}");
    for family in &families {
        let sampled = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .any(|l| l.starts_with(family));
        assert!(sampled, "{family} has no samples:\n{text}");
    }
    let (ok, findings) = run_tool(&promtool, &["check", "metrics"], Some(&text), dir);
    assert!(
        ok && findings.trim().is_empty(),
        "promtool check metrics:\n{findings}\non:\n{text}"
    );

    // Prometheus asks for OpenMetrics and gets it.
    let prometheus_accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let (_, ctype, open) = get(&url, Some(prometheus_accept)).unwrap();
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    assert!(open.ends_with("# EOF\n"), "{open}");
}

#[test]
fn the_charts_alert_rules_pass_promtool_check_and_unit_tests() {
    let (Some(promtool), Some(judge)) = (tools::system_tool("promtool"), Judge::find()) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // The durations the unit tests' eval times are written for.
    write_rules(&judge, "2m", "5m", &dir.join("aicr-rules.yaml"));
    let (ok, out) = run_tool(&promtool, &["check", "rules", "aicr-rules.yaml"], None, dir);
    assert!(ok && out.contains("SUCCESS: 4 rules found"), "{out}");

    let tests = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/prometheusrule-tests.yaml"),
    )
    .unwrap();
    // Every alert the chart defines is under test.
    let rules: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("aicr-rules.yaml")).unwrap())
            .unwrap();
    for rule in rules["groups"][0]["rules"].as_array().unwrap() {
        let name = rule["alert"].as_str().unwrap();
        assert!(
            tests.contains(&format!(
                "alertname: {name}\n        exp_alerts:\n          - "
            )),
            "no promtool test expects {name} to fire"
        );
    }
    std::fs::write(dir.join("tests.yaml"), tests).unwrap();
    let (ok, out) = run_tool(&promtool, &["test", "rules", "tests.yaml"], None, dir);
    assert!(ok, "promtool test rules:\n{out}");
}

#[test]
fn the_grafana_dashboard_ships_in_the_chart() {
    let Some(judge) = Judge::find() else {
        return;
    };
    let docs = helm_render(
        &judge,
        json!({"grafanaDashboard": {
            "enabled": true,
            "labels": {"release": "kube-prometheus-stack"},
            "annotations": {"grafana_folder": "AICR"},
        }}),
    );
    let cm = rendered(&docs, "grafana-dashboard.yaml");
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["metadata"]["namespace"], "monitoring");
    let labels = &cm["metadata"]["labels"];
    assert_eq!(
        labels["grafana_dashboard"], "1",
        "the sidecar's default label"
    );
    assert_eq!(labels["release"], "kube-prometheus-stack");
    assert_eq!(cm["metadata"]["annotations"]["grafana_folder"], "AICR");
    // The label value the sidecar looks for can be changed.
    let docs = helm_render(
        &judge,
        json!({"grafanaDashboard": {"enabled": true, "labels": {"grafana_dashboard": "aicr"}}}),
    );
    let cm = rendered(&docs, "grafana-dashboard.yaml");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "aicr");
    // Off by default.
    let docs = helm_render(&judge, json!({}));
    let off = docs
        .iter()
        .find(|(p, _)| p.ends_with("templates/grafana-dashboard.yaml"))
        .map_or("", |(_, t)| t.as_str());
    assert!(off.trim().is_empty(), "{off}");

    let d = dashboard(&judge);
    assert_eq!(d["uid"], "aicr-drift");
    let mut ids = std::collections::BTreeSet::new();
    let mut titles = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        assert!(
            ids.insert(p["id"].as_i64().unwrap()),
            "duplicate panel id: {p}"
        );
        for k in ["x", "y", "w", "h"] {
            assert!(p["gridPos"][k].is_i64(), "{}: gridPos.{k}", p["title"]);
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{} has no query", p["title"]);
        for t in targets {
            assert!(
                t["expr"].as_str().is_some_and(|e| e.contains("aicr_")),
                "{t}"
            );
        }
        titles.push(p["title"].as_str().unwrap().to_string());
    }
    for want in [
        "Nodes reporting",
        "Stale nodes",
        "Open violations by constraint and node",
        "Drift events",
        "Ingest latency",
        "Evaluation latency",
        "Agent reconnects",
    ] {
        assert!(
            titles.iter().any(|t| t == want),
            "no panel {want}: {titles:?}"
        );
    }
    let vars = d["templating"]["list"].as_array().unwrap();
    assert!(
        vars.iter()
            .any(|v| v["name"] == "datasource" && v["query"] == "prometheus"),
        "{vars:?}"
    );
}

/// Alerts in Prometheus (`/api/v1/alerts`) named `name`.
fn prometheus_alerts(prom: &str, name: &str) -> Result<Vec<Value>, String> {
    let v = get_json(&format!("http://{prom}/api/v1/alerts"))?;
    Ok(v["data"]["alerts"]
        .as_array()
        .ok_or(format!("no alerts array: {v}"))?
        .iter()
        .filter(|a| a["labels"]["alertname"] == name)
        .cloned()
        .collect())
}

/// Alerts Alertmanager (`/api/v2/alerts`) holds named `name`; resolved
/// alerts (endsAt in the past) are not listed.
fn alertmanager_alerts(am: &str, name: &str) -> Result<Vec<Value>, String> {
    let v = get_json(&format!("http://{am}/api/v2/alerts"))?;
    Ok(v.as_array()
        .ok_or(format!("not an array: {v}"))?
        .iter()
        .filter(|a| a["labels"]["alertname"] == name)
        .cloned()
        .collect())
}

fn on_our_node(a: &Value) -> bool {
    a["labels"]["node"] == NODE && a["labels"]["constraint"] == CONSTRAINT
}

/// Starts a tool that needs its port up front, at a free port, retrying
/// if another process took the port first; ready when `GET /-/ready` says so.
fn start_listening(name: &str, dir: &Path, command: impl Fn(u16) -> Command) -> (Proc, String) {
    for _ in 0..3 {
        let port = free_port();
        let mut proc = Proc::spawn(name, &mut command(port), dir);
        let addr = format!("127.0.0.1:{port}");
        let ready = wait_for(&format!("{name} to be ready"), || {
            if let Some(status) = proc.exited() {
                return Ok(Err(status));
            }
            match get(&format!("http://{addr}/-/ready"), None) {
                Ok((200, _, _)) => Ok(Ok(())),
                other => Err(format!("{other:?}\n{}", proc.tail())),
            }
        });
        match ready {
            Ok(()) => return (proc, addr),
            Err(status) => eprintln!("{name} exited ({status}), retrying\n{}", proc.tail()),
        }
    }
    panic!("{name} did not start");
}

#[test]
fn prometheus_and_alertmanager_see_real_drift_open_and_resolve() {
    let (Some(prometheus), Some(alertmanager), Some(promtool), Some(judge)) = (
        tools::system_tool("prometheus"),
        tools::system_tool("prometheus-alertmanager"),
        tools::system_tool("promtool"),
        Judge::find(),
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();

    // The chart's rules with the `for:` durations shortened through its
    // values, checked by promtool before Prometheus loads them.
    write_rules(&judge, "1s", "1s", &dir.join("rules.yaml"));
    let (ok, out) = run_tool(&promtool, &["check", "rules", "rules.yaml"], None, dir);
    assert!(ok, "{out}");
    let dashboard = dashboard(&judge);

    // resolve_timeout is Alertmanager's default, spelled out: an alert
    // gone within the test's minute was resolved by the aggregator.
    std::fs::write(
        dir.join("alertmanager.yml"),
        "global:\n  resolve_timeout: 5m\nroute:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n",
    )
    .unwrap();
    let (_am_proc, am) = start_listening("alertmanager", dir, |port| {
        let mut c = Command::new(&alertmanager);
        c.current_dir(dir)
            .args([
                "--config.file",
                "alertmanager.yml",
                "--storage.path",
                "am-data",
            ])
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=");
        c
    });

    let root = host_root(dir);
    let agg = start_aggregator(
        dir,
        &recipe(dir),
        &[
            "--stale-after",
            "30s",
            "--alertmanager-url",
            &format!("http://{am}"),
        ],
    );

    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files: [rules.yaml]\n\
             scrape_configs:\n  - job_name: aicr-aggregator\n    static_configs:\n      - targets: ['{}']\n",
            agg.http
        ),
    )
    .unwrap();
    let (_prom_proc, prom) = start_listening("prometheus", dir, |port| {
        let mut c = Command::new(&prometheus);
        c.current_dir(dir)
            .args(["--config.file=prometheus.yml", "--storage.tsdb.path=tsdb"])
            .arg(format!("--web.listen-address=127.0.0.1:{port}"));
        c
    });

    // The agent reports, is restarted (one reconnect), reports again. A
    // session counts as a reconnect only once the node has reported, so
    // the first agent lives until its snapshot is in, however slow the
    // machine.
    let agent = start_agent(dir, "agent", NODE, &agg.grpc, &root);
    agg.wait_metric(r#"aicr_updates_ingested_total{kind="full"} 1"#);
    drop(agent);
    agg.wait_metric("aicr_agents_connected 0");
    let _agent = start_agent(dir, "agent-again", NODE, &agg.grpc, &root);
    agg.wait_metric("aicr_agent_reconnects_total 1");

    let query = |expr: &str| -> Result<Vec<Value>, String> {
        let url = format!("http://{prom}/api/v1/query");
        let mut resp = http()
            .get(&url)
            .query("query", expr)
            .call()
            .map_err(|e| format!("{expr}: {e}"))?;
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("{expr}: {e}: {body}"))?;
        if v["status"] != "success" {
            return Err(format!("{expr}: {body}"));
        }
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    };
    // Prometheus scrapes the OpenMetrics exposition without errors.
    wait_for("Prometheus to scrape the aggregator", || {
        let v = get_json(&format!("http://{prom}/api/v1/targets"))?;
        let t = &v["data"]["activeTargets"][0];
        if t["health"] == "up" && t["lastError"] == "" {
            Ok(())
        } else {
            Err(v.to_string())
        }
    });
    wait_for("Prometheus to see the reconnect", || {
        let r = query("aicr_agent_reconnects_total == 1")?;
        if r.is_empty() {
            Err("none".into())
        } else {
            Ok(())
        }
    });

    // Drift: the recipe wants 24.04.
    set_version(&root, "22.04");
    let firing = wait_for("Prometheus to fire AICRConstraintViolated", || {
        let alerts = prometheus_alerts(&prom, "AICRConstraintViolated")?;
        alerts
            .iter()
            .find(|a| on_our_node(a) && a["state"] == "firing")
            .cloned()
            .ok_or(format!("{alerts:?}"))
    });
    assert_eq!(firing["labels"]["severity"], "critical", "{firing}");
    assert_eq!(
        firing["annotations"]["summary"],
        format!("Node {NODE} violates {CONSTRAINT}"),
        "{firing}"
    );
    // The aggregator's own alert reaches Alertmanager (Prometheus is not
    // wired to it here, so this is the aggregator's path alone) under the
    // rule's name and labels, so with both wired the two fold into one.
    let a = wait_for("Alertmanager to hold AICRConstraintViolated", || {
        let alerts = alertmanager_alerts(&am, "AICRConstraintViolated")?;
        alerts
            .iter()
            .find(|a| on_our_node(a) && a["status"]["state"] == "active")
            .cloned()
            .ok_or(format!("{alerts:?}"))
    });
    assert_eq!(a["labels"]["severity"], "critical", "{a}");
    let labels: Vec<&String> = a["labels"].as_object().unwrap().keys().collect();
    let rule_labels: Vec<&String> = firing["labels"].as_object().unwrap().keys().collect();
    assert_eq!(
        labels, rule_labels,
        "the aggregator's alert and the rule's differ in labels"
    );

    // Every panel of the dashboard has data while the drift is open.
    for (panel, expr) in panel_queries(&dashboard) {
        let expr = grafana_vars(&expr);
        wait_for(&format!("panel {panel:?} to have data: {expr}"), || {
            let r = query(&expr)?;
            if r.is_empty() {
                Err("empty result".into())
            } else {
                Ok(())
            }
        });
    }

    // Undo: the alert stops in Prometheus and resolves in Alertmanager.
    set_version(&root, "24.04");
    wait_for("AICRConstraintViolated to stop", || {
        let alerts = prometheus_alerts(&prom, "AICRConstraintViolated")?;
        if alerts.iter().any(on_our_node) {
            Err(format!("{alerts:?}"))
        } else {
            Ok(())
        }
    });
    {
        let name = "AICRConstraintViolated";
        wait_for(&format!("Alertmanager to resolve {name}"), || {
            let alerts = alertmanager_alerts(&am, name)?;
            let now = std::time::SystemTime::now();
            let ends = |a: &Value| {
                a["endsAt"]
                    .as_str()
                    .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
            };
            let open: Vec<_> = alerts
                .iter()
                .filter(|a| on_our_node(a))
                .filter(|a| a["status"]["state"] == "active" && ends(a).is_none_or(|t| t > now))
                .collect();
            if open.is_empty() {
                Ok(())
            } else {
                Err(format!("{open:?}"))
            }
        });
    }
}
