//! The aggregator verbs through the real `aicr` binary: an in-process
//! aggregator on loopback fed by simulated agents, then `aicr nodes`,
//! `snapshot --aggregator`, `drift`, `watch` and `validate --aggregator`,
//! with their exit codes.

#[path = "../../aggregator/tests/common/sim_agent.rs"]
mod sim_agent;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use aicr::model::snapshot::{Snapshot, Subtype};
use aicr_aggregator::{Config, Running};
use assert_cmd::Command;
use serde_json::{Value, json};
use sim_agent::{SimAgent, channel, node_readings};

const TOKEN: &str = "t0ken";

fn recipe_file(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("recipe.json");
    let doc = json!({
        "kind": "RecipeResult",
        "apiVersion": "aicr.nvidia.com/v1alpha1",
        "constraints": [{"name": "OS.release.VERSION_ID", "value": "== 24.04", "severity": "critical"}],
        "componentRefs": [],
        "deploymentOrder": [],
    });
    std::fs::write(&path, serde_json::to_vec(&doc).unwrap()).unwrap();
    path
}

async fn aggregator(recipe: &Path) -> Running {
    let mut c = Config::local();
    c.recipe = Some(recipe.to_path_buf());
    c.cli_token = Some(TOKEN.into());
    aicr_aggregator::start(c)
        .await
        .expect("the aggregator starts")
}

fn url(r: &Running) -> String {
    format!("http://{}", r.grpc_addr)
}

fn aicr(home: &Path) -> Command {
    let mut c = aicr_test_support::tools::aicr();
    c.env("NO_COLOR", "1")
        .env("HOME", home)
        .env("AICR_TOKEN", TOKEN);
    c
}

/// Run a command off the async runtime that serves the aggregator.
async fn run(mut c: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || c.timeout(Duration::from_secs(60)).output().unwrap())
        .await
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn release(v: &str) -> Subtype {
    Subtype::new("release")
        .with("ID", "ubuntu")
        .with("VERSION_ID", v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_snapshot_drift_watch_and_validate_through_the_binary() {
    let home = tempfile::tempdir().unwrap();
    let recipe = recipe_file(home.path());
    let agg = aggregator(&recipe).await;
    let u = url(&agg);
    let mut a = SimAgent::connect(channel(&u).await, "gpu-1", "")
        .await
        .unwrap();
    a.full(node_readings("24.04")).await.unwrap();
    let mut b = SimAgent::connect(channel(&u).await, "gpu-2", "")
        .await
        .unwrap();
    b.full(node_readings("22.04")).await.unwrap();

    // aicr nodes: a table, one row per node.
    let mut c = aicr(home.path());
    c.args(["nodes", "--aggregator", &u]);
    let out = run(c).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    for col in [
        "NODE",
        "POOL",
        "AGENT",
        "LAST SEEN",
        "STATUS",
        "VIOLATIONS",
        "DEVIATIONS",
    ] {
        assert!(lines[0].contains(col), "{table}");
    }
    let row = |n: &str| {
        lines
            .iter()
            .find(|l| l.trim_start().starts_with(n))
            .unwrap()
            .to_string()
    };
    assert!(
        row("gpu-1").contains("v0.1.0-sim") && row("gpu-1").contains("connected"),
        "{table}"
    );
    assert!(row("gpu-1").contains("s ago"), "{table}");
    let cells = |n: &str| {
        row(n)
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    // Without a Node watch every node is in the default pool; two nodes
    // are too few to judge by majority.
    let gpu2 = cells("gpu-2");
    assert_eq!(gpu2[1], "default", "{table}");
    assert_eq!(gpu2[gpu2.len() - 2..], ["1", "0"], "{table}");

    let mut c = aicr(home.path());
    c.env("AICR_AGGREGATOR", &u).args(["nodes", "-t", "json"]);
    let out = run(c).await;
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[1]["node"], "gpu-2");
    assert_eq!(listed[1]["openViolations"], 1);
    assert_eq!(listed[1]["pool"], "default");
    assert_eq!(listed[1]["openDeviations"], 0);

    // aicr snapshot --aggregator: the same document as local capture.
    let mut c = aicr(home.path());
    c.args([
        "snapshot",
        "--aggregator",
        &u,
        "--node",
        "gpu-1",
        "-t",
        "json",
    ]);
    let out = run(c).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let snap = Snapshot::parse(&text(&out.stdout), aicr::yaml::Format::Json).unwrap();
    assert_eq!(
        (snap.kind.as_str(), snap.api_version.as_str()),
        ("Snapshot", "aicr.nvidia.com/v1alpha1")
    );
    assert_eq!(snap.metadata["source-node"], "gpu-1");
    assert_eq!(
        snap.lookup("OS", "release", "VERSION_ID").unwrap().render(),
        "24.04"
    );
    let file = home.path().join("gpu-1.yaml");
    let mut c = aicr(home.path());
    c.env("AICR_AGGREGATOR", &u)
        .args(["snapshot", "--node", "gpu-1", "-o"])
        .arg(&file);
    let out = run(c).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let yaml = std::fs::read_to_string(&file).unwrap();
    let again = Snapshot::parse(&yaml, aicr::yaml::Format::Yaml).unwrap();
    assert_eq!(again.measurements, snap.measurements);

    // aicr diff node/A node/B: two live snapshots, reading by reading.
    let mut c = aicr(home.path());
    c.args(["diff", "--aggregator", &u, "node/gpu-1", "node/gpu-2"]);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "~ OS.release.PRETTY_NAME: Ubuntu 24.04 LTS -> Ubuntu 22.04 LTS\n\
         ~ OS.release.VERSION_ID: 24.04 -> 22.04\n\
         2 differences (0 added, 0 removed, 2 changed)\n"
    );
    let mut c = aicr(home.path());
    c.env("AICR_AGGREGATOR", &u)
        .args(["diff", "node/gpu-1", "node/gpu-1"]);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut c = aicr(home.path());
    c.args([
        "diff",
        "--aggregator",
        &u,
        "node/gpu-1",
        "node/no-such-node",
    ]);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));

    // aicr drift: what is open now; --history: what happened.
    let mut c = aicr(home.path());
    c.args(["drift", "--aggregator", &u]);
    let out = run(c).await;
    let open = text(&out.stdout);
    assert!(
        open.contains("gpu-2") && open.contains("OS.release.VERSION_ID") && open.contains("22.04"),
        "{open}"
    );
    assert!(!open.contains("gpu-1"), "{open}");

    b.update("OS", release("24.04")).await.unwrap();
    a.update("OS", release("20.04")).await.unwrap();
    let mut c = aicr(home.path());
    c.args(["drift", "--history", "-t", "json", "--aggregator", &u]);
    let history: Value = serde_json::from_slice(&run(c).await.stdout).unwrap();
    let kinds: Vec<(&str, &str)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["event"].as_str().unwrap(), e["node"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("OPENED", "gpu-2"),
            ("RESOLVED", "gpu-2"),
            ("OPENED", "gpu-1")
        ]
    );

    // aicr watch: replay after an id, one readable line per event.
    let mut c = aicr(home.path());
    c.args(["watch", "--aggregator", &u, "--since", "1", "--count", "2"]);
    let out = run(c).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines = text(&out.stdout);
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].contains("RESOLVED  gpu-2  OS.release.VERSION_ID  now \"24.04\""),
        "{lines:?}"
    );
    assert!(
        lines[1].contains("OPENED    gpu-1  OS.release.VERSION_ID  expected \"== 24.04\", actual \"20.04\"  [critical]"),
        "{lines:?}"
    );
    assert!(
        !lines[1].contains('\x1b'),
        "no colour when stdout is not a terminal"
    );

    // ... and live: events arrive while the command runs.
    let bin = assert_cmd::cargo::cargo_bin("aicr");
    let mut child = std::process::Command::new(bin)
        .args(["watch", "--aggregator", &u, "--count", "1", "-t", "json"])
        .env("AICR_TOKEN", TOKEN)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        line
    });
    let started = Instant::now();
    let mut flip = true;
    while !reader.is_finished() && started.elapsed() < Duration::from_secs(20) {
        b.update("OS", release(if flip { "22.04" } else { "24.04" }))
            .await
            .unwrap();
        flip = !flip;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let line = reader.await.unwrap();
    let ev: Value = serde_json::from_str(&line).expect("one JSON event per line");
    assert_eq!(ev["node"], "gpu-2");
    assert!(child.wait().unwrap().success());

    // aicr validate --aggregator: a CTRF report with a suite per node.
    let mut c = aicr(home.path());
    c.args(["validate", "--aggregator", &u, "-r"]).arg(&recipe);
    let out = run(c).await;
    assert_eq!(
        out.status.code(),
        Some(8),
        "a failing node fails validation: {}",
        text(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["reportFormat"], "CTRF");
    let suites: Vec<&Value> = report["results"]["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["suite"][1])
        .collect();
    assert_eq!(suites, [&json!("gpu-1"), &json!("gpu-2")]);
    agg.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregator_failures_map_onto_the_exit_code_table() {
    let home = tempfile::tempdir().unwrap();
    let recipe = recipe_file(home.path());
    let agg = aggregator(&recipe).await;
    let u = url(&agg);

    // (arguments, extra environment, exit code, what stderr says)
    type Case<'a> = (Vec<&'a str>, Option<(&'a str, &'a str)>, i32, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec!["snapshot", "--aggregator", &u, "--node", "nope"],
            None,
            3,
            "unknown to the aggregator",
        ),
        (
            vec!["nodes", "--aggregator", &u],
            Some(("AICR_TOKEN", "wrong")),
            4,
            "aggregator refused the call",
        ),
        (
            vec!["nodes", "--aggregator", "http://127.0.0.1:1"],
            None,
            6,
            "cannot reach the aggregator",
        ),
        (
            vec!["nodes", "--aggregator", "ftp://x"],
            None,
            2,
            "must be an http:// or https:// URL",
        ),
        (
            vec!["snapshot", "--node", "gpu-1"],
            None,
            2,
            "no aggregator given",
        ),
        (
            vec!["drift", "--aggregator", "https://127.0.0.1:1"],
            None,
            2,
            "needs --aggregator-ca",
        ),
        (vec!["nodes"], None, 1, "--aggregator"),
        // A token never crosses the network in plain text; loopback (a
        // port-forward) may.
        (
            vec!["nodes", "--aggregator", "http://10.255.255.1:50051"],
            Some(("AICR_TOKEN", "secret")),
            2,
            "refusing to send the token in plain text",
        ),
        (
            vec![
                "nodes",
                "--aggregator",
                "http://aggregator.example:50051",
                "--token",
                "t",
            ],
            None,
            2,
            "refusing to send the token in plain text",
        ),
        (
            vec![
                "nodes",
                "--aggregator",
                "http://localhost:1",
                "--token",
                "t",
            ],
            None,
            6,
            "cannot reach the aggregator",
        ),
    ];
    for (args, env, code, message) in cases {
        let mut c = aicr(home.path());
        c.args(&args);
        if let Some((k, v)) = env {
            c.env(k, v);
        }
        let out = run(c).await;
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(message),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    agg.shutdown().await;
}
