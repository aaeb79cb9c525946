//! Drift on the Nodes themselves, through the fake API server: the
//! `AICRConformant` condition (server-side applied to `nodes/status`, so
//! the kubelet's conditions survive), one OpenReports `ClusterReport` and
//! one wgpolicyk8s `ClusterPolicyReport` per node where their CRDs are
//! served and nothing where they are not, and the opt-in drift taint under
//! its cap. Every object written is judged by the Kubernetes schemas and
//! the published CRD schemas when the judges' venv is present.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aicr::model::snapshot::Subtype;
use aicr_aggregator::Running;
use aicr_aggregator::conformance::{MaxTainted, ReportKind, TAINT_KEY};
use aicr_aggregator::node_status::{Settings, Taint};
use aicr_test_support::api_objects::{Sent, judge_sent, sent};
use aicr_test_support::logs::Captured;
use aicr_test_support::tools::Judge;
use aicr_test_support::{FakeApiServer, fixtures};
use serde_json::{Value, json};

use crate::common::sim_agent::{SimAgent, channel, node_readings};
use crate::common::*;

const VERSION: &str = "OS.release.VERSION_ID";
const CLUSTER_REPORTS: &str = "clusterreports.openreports.io";
const POLICY_REPORTS: &str = "clusterpolicyreports.wgpolicyk8s.io";

fn kubelet_ready() -> Value {
    json!({
        "type": "Ready",
        "status": "True",
        "reason": "KubeletReady",
        "message": "kubelet is posting ready status",
        "lastHeartbeatTime": "2026-12-01T00:00:00Z",
        "lastTransitionTime": "2026-12-01T00:00:00Z",
    })
}

fn release(version: &str) -> Subtype {
    Subtype::new("release")
        .with("ID", "ubuntu")
        .with("VERSION_ID", version)
        .with("PRETTY_NAME", format!("Ubuntu {version} LTS"))
}

/// Serve a report kind's CRD; whether its names match the published CRD
/// is for the schema judge at the end of the tests that write it.
fn install(api: &FakeApiServer, kind: ReportKind) {
    api.register_crd(
        kind.group(),
        kind.version(),
        kind.kind(),
        kind.plural(),
        false,
    );
}

fn conditions(api: &FakeApiServer, node: &str) -> Vec<Value> {
    api.get("nodes", "", node)
        .and_then(|n| n["status"]["conditions"].as_array().cloned())
        .unwrap_or_default()
}

fn conformant(api: &FakeApiServer, node: &str) -> Option<Value> {
    conditions(api, node)
        .into_iter()
        .find(|c| c["type"] == "AICRConformant")
}

/// Wait for the node's AICRConformant condition to have `status`, keeping
/// the agent alive meanwhile.
async fn condition_becomes(
    api: &FakeApiServer,
    agent: Option<&mut SimAgent>,
    node: &str,
    status: &str,
) -> Value {
    let mut agent = agent;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(c) = conformant(api, node).filter(|c| c["status"] == status) {
            return c;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for AICRConformant={status} on {node}; conditions: {:?}",
            conditions(api, node)
        );
        if let Some(a) = agent.as_deref_mut() {
            a.heartbeat().await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn result<'a>(report: &'a Value, rule: &str) -> &'a Value {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == rule)
        .unwrap_or_else(|| panic!("no result for {rule}: {report}"))
}

/// An aggregator on `api` judging `constraints` (stale after 2 s) and
/// keeping both report kinds, with gpu-1's agent reporting Ubuntu 22.04.
async fn gpu_1_judged(
    api: &FakeApiServer,
    dir: &std::path::Path,
    constraints: &[(&str, &str, &str)],
) -> (Running, SimAgent) {
    let mut c = cluster_config(api).await;
    c.stale_after = Duration::from_secs(2);
    c.recipe = Some(recipe_file(dir, constraints));
    c.node_status.reports = vec![ReportKind::OpenReports, ReportKind::PolicyReports];
    let agg = start(c).await;
    let mut agent = SimAgent::connect(channel(&url(&agg)).await, "gpu-1", "")
        .await
        .expect("agent accepted");
    agent.full(node_readings("22.04")).await.unwrap();
    (agg, agent)
}

/// gpu-1, violating VERSION_ID, reports a second violation (ID): once the
/// condition's message names it, the condition, still False.
async fn second_violation(api: &FakeApiServer, agent: &mut SimAgent) -> Value {
    agent
        .update("OS", release("22.04").with("ID", "debian"))
        .await
        .unwrap();
    eventually("the message names both violations", || async {
        conformant(api, "gpu-1").is_some_and(|c| {
            c["message"]
                .as_str()
                .is_some_and(|m| m.contains("OS.release.ID (expected == ubuntu, actual debian)"))
        })
    })
    .await;
    let c = conformant(api, "gpu-1").unwrap();
    assert_eq!(c["status"], "False");
    c
}

/// gpu-1's report of kind `reports` once it counts `pass` and `fail`.
async fn report_counts(api: &FakeApiServer, reports: &str, pass: u32, fail: u32) -> Value {
    eventually(
        &format!("{reports} of gpu-1: {pass} pass, {fail} fail"),
        || async {
            api.get(reports, "", "aicr-gpu-1")
                .is_some_and(|r| r["summary"]["pass"] == pass && r["summary"]["fail"] == fail)
        },
    )
    .await;
    api.get(reports, "", "aicr-gpu-1").unwrap()
}

/// Writes to the node's status and to report objects so far.
fn status_and_report_writes(api: &FakeApiServer) -> usize {
    api.requests()
        .iter()
        .filter(|r| r.is_write())
        .filter(|r| {
            r.path.ends_with("/nodes/gpu-1/status")
                || r.path.contains("/clusterreports")
                || r.path.contains("/clusterpolicyreports")
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_condition_and_reports_follow_drift_and_leave_other_writers_alone() {
    let api = FakeApiServer::start().await;
    api.insert(fixtures::node("gpu-1").build());
    api.update_status(
        "nodes",
        "",
        "gpu-1",
        json!({"conditions": [kubelet_ready()]}),
    );
    let uid = api.get("nodes", "", "gpu-1").unwrap()["metadata"]["uid"].clone();
    install(&api, ReportKind::OpenReports);
    install(&api, ReportKind::PolicyReports);
    let dir = tempfile::tempdir().unwrap();
    let (agg, mut agent) = gpu_1_judged(
        &api,
        dir.path(),
        &[
            (VERSION, "== 24.04", "error"),
            ("OS.release.ID", "== ubuntu", "warning"),
        ],
    )
    .await;

    // Drift opens: False, naming the constraint and both values.
    let violated = condition_becomes(&api, Some(&mut agent), "gpu-1", "False").await;
    assert_eq!(violated["reason"], "ConstraintViolated");
    let message = violated["message"].as_str().unwrap();
    assert!(
        message.contains("OS.release.VERSION_ID (expected == 24.04, actual 22.04)"),
        "{message}"
    );
    assert!(!message.contains("OS.release.ID"), "{message}");
    assert_eq!(conditions(&api, "gpu-1")[0], kubelet_ready());
    for reports in [CLUSTER_REPORTS, POLICY_REPORTS] {
        let r = report_counts(&api, reports, 1, 1).await;
        assert_eq!(r["scope"]["name"], "gpu-1");
        assert_eq!(r["metadata"]["ownerReferences"][0]["uid"], uid);
        let v = result(&r, VERSION);
        assert_eq!(v["result"], "fail");
        assert_eq!(v["severity"], "high");
        assert_eq!(v["properties"]["expected"], "== 24.04");
        assert_eq!(v["properties"]["actual"], "22.04");
        assert_eq!(result(&r, "OS.release.ID")["result"], "pass");
    }

    // Heartbeats and readings no constraint reads write nothing.
    let before = status_and_report_writes(&api);
    let sysctl = Subtype::new("sysctl").with("/proc/sys/vm/swappiness", "10");
    agent.update("OS", sysctl).await.unwrap();
    for _ in 0..6 {
        agent.heartbeat().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status_and_report_writes(&api), before);

    // A second violation changes the message, not the transition time
    // (which has whole seconds: wait past one so a new one would show).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    agent.heartbeat().await;
    let both = second_violation(&api, &mut agent).await;
    assert_eq!(both["lastTransitionTime"], violated["lastTransitionTime"]);

    // Resolved: True, a new transition time, the results pass.
    agent.heartbeat().await;
    agent.update("OS", release("24.04")).await.unwrap();
    let met = condition_becomes(&api, Some(&mut agent), "gpu-1", "True").await;
    assert_eq!(met["reason"], "Conformant");
    assert_ne!(met["lastTransitionTime"], violated["lastTransitionTime"]);
    assert_eq!(conditions(&api, "gpu-1")[0], kubelet_ready());
    for reports in [CLUSTER_REPORTS, POLICY_REPORTS] {
        report_counts(&api, reports, 2, 0).await;
    }

    // The agent goes silent: Unknown, the report kept as last known.
    drop(agent);
    let stale = condition_becomes(&api, None, "gpu-1", "Unknown").await;
    assert_eq!(stale["reason"], "AgentStale");
    assert_eq!(conditions(&api, "gpu-1")[0], kubelet_ready());
    assert!(api.get(CLUSTER_REPORTS, "", "aicr-gpu-1").is_some());

    // The Node goes: so do its reports.
    api.delete("nodes", "", "gpu-1");
    for reports in [CLUSTER_REPORTS, POLICY_REPORTS] {
        eventually(&format!("{reports} of the deleted node gone"), || async {
            api.get(reports, "", "aicr-gpu-1").is_none()
        })
        .await;
    }
    agg.shutdown().await;
    if let Some(judge) = Judge::find() {
        judge_sent(
            &judge,
            &sent(&api),
            &["Node", "ClusterReport", "ClusterPolicyReport"],
        );
    }
}

// One thread, so every task the aggregator spawns logs to the subscriber
// this test sets.
#[tokio::test(flavor = "current_thread")]
async fn without_the_report_crds_nothing_is_written_and_nothing_complains() {
    let logs = Captured::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let api = FakeApiServer::start().await;
    api.insert(fixtures::node("gpu-1").build());
    let dir = tempfile::tempdir().unwrap();
    let (agg, mut agent) = gpu_1_judged(&api, dir.path(), &[(VERSION, "== 24.04", "error")]).await;
    condition_becomes(&api, Some(&mut agent), "gpu-1", "False").await;
    agg.shutdown().await;

    let requests = api.requests();
    for group in [
        "/apis/openreports.io/v1alpha1",
        "/apis/wgpolicyk8s.io/v1alpha2",
    ] {
        assert!(
            requests
                .iter()
                .any(|r| r.method == "GET" && r.path == group),
            "{group} was not looked up"
        );
        let touched: Vec<_> = requests
            .iter()
            .filter(|r| r.path.starts_with(&format!("{group}/")))
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        assert!(touched.is_empty(), "{touched:?}");
    }
    let text = logs.text();
    assert!(text.contains("is not served"), "{text}");
    let complaints: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect();
    assert!(complaints.is_empty(), "{complaints:#?}");
}

fn drift_taints(api: &FakeApiServer) -> Vec<(String, Value)> {
    api.list("nodes", "")
        .into_iter()
        .filter_map(|n| {
            let t = n["spec"]["taints"]
                .as_array()?
                .iter()
                .find(|t| t["key"] == TAINT_KEY)?
                .clone();
            Some((n["metadata"]["name"].as_str()?.to_string(), t))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drift_taint_never_covers_more_nodes_than_its_cap() {
    let api = Arc::new(FakeApiServer::start().await);
    let names: Vec<String> = (0..10).map(|i| format!("gpu-{i}")).collect();
    for n in &names {
        api.insert(
            fixtures::node(n)
                .taint("nvidia.com/gpu", "present", "NoSchedule")
                .build(),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let mut c = cluster_config(&api).await;
    c.recipe = Some(recipe_file(
        dir.path(),
        &[
            (VERSION, "== 24.04", "error"),
            ("OS.release.ID", "== rhel", "warning"),
        ],
    ));
    c.node_status = Settings {
        condition: false,
        reports: Vec::new(),
        taint: Some(Taint {
            severity: "error".into(),
            max: MaxTainted::Percent(20),
        }),
    };
    let agg = start(c).await;

    // Watch the whole time: the cap must hold at every moment, not only
    // at the end.
    let most = Arc::new(Mutex::new(0usize));
    let sampler = {
        let (api, most) = (api.clone(), most.clone());
        tokio::spawn(async move {
            loop {
                let n = drift_taints(&api).len();
                {
                    let mut m = most.lock().unwrap();
                    *m = (*m).max(n);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    let mut agents = Vec::new();
    for n in &names {
        let mut a = SimAgent::connect(channel(&url(&agg)).await, n, "")
            .await
            .unwrap();
        a.full(node_readings("22.04")).await.unwrap();
        agents.push(a);
    }
    eventually("two nodes tainted", || async {
        drift_taints(&api).len() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let tainted = drift_taints(&api);
    assert_eq!(tainted.len(), 2, "{tainted:?}");
    let (_, metrics) = http_get(agg.http_addr, "/metrics").await;
    assert!(
        metrics.contains("aicr_drift_tainted_nodes 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("aicr_drift_taint_held_back_nodes 8\n"),
        "{metrics}"
    );
    for (_, t) in &tainted {
        // The error-severity violation, not the warning one.
        assert_eq!(
            *t,
            json!({"key": TAINT_KEY, "value": VERSION, "effect": "NoSchedule"})
        );
    }
    for n in api.list("nodes", "") {
        assert!(
            n["spec"]["taints"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["key"] == "nvidia.com/gpu"),
            "another writer's taint was lost: {n}"
        );
    }

    // The taints as the Nodes now carry them pass the Node schema.
    if let Some(judge) = Judge::find() {
        let stored: Vec<Sent> = api
            .list("nodes", "")
            .into_iter()
            .map(|n| Sent {
                how: format!("taints of {}", n["metadata"]["name"]),
                object: json!({
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {"name": n["metadata"]["name"]},
                    "spec": {"taints": n["spec"]["taints"]},
                }),
            })
            .collect();
        judge_sent(&judge, &stored, &["Node"]);
    }

    // The tainted nodes are mended: they are untainted and two others,
    // still violating, take their places.
    let first: Vec<String> = tainted.iter().map(|(n, _)| n.clone()).collect();
    for a in agents.iter_mut().filter(|a| first.contains(&a.node)) {
        a.update("OS", release("24.04")).await.unwrap();
    }
    eventually("two other nodes tainted", || async {
        let now = drift_taints(&api);
        now.len() == 2 && now.iter().all(|(n, _)| !first.contains(n))
    })
    .await;

    // Every node mended: no drift taint is left.
    for a in &mut agents {
        a.update("OS", release("24.04")).await.unwrap();
    }
    // While the cap hands taints on, removals can be written before the
    // additions planned with them: a moment without drift taints is not
    // the end, a moment that lasts is.
    eventually("no drift taint", || async {
        if !drift_taints(&api).is_empty() {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        drift_taints(&api).is_empty()
    })
    .await;
    sampler.abort();
    assert_eq!(*most.lock().unwrap(), 2, "the cap was passed");
    for n in api.list("nodes", "") {
        assert_eq!(n["spec"]["taints"].as_array().unwrap().len(), 1, "{n}");
    }
    agg.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_writes_and_a_new_leader_rewrites_only_what_changed() {
    let api = FakeApiServer::start().await;
    api.insert(fixtures::node("gpu-1").build());
    install(&api, ReportKind::OpenReports);
    let dir = tempfile::tempdir().unwrap();
    let recipe = recipe_file(
        dir.path(),
        &[
            (VERSION, "== 24.04", "error"),
            ("OS.release.ID", "== ubuntu", "warning"),
        ],
    );
    let (a, b) = leader_and_standby_judging(&api, Some(recipe)).await;
    let writes = || status_and_report_writes(&api);
    let mut agent = SimAgent::connect(channel(&url(&a)).await, "gpu-1", "")
        .await
        .unwrap();
    agent.full(node_readings("22.04")).await.unwrap();
    let first = condition_becomes(&api, Some(&mut agent), "gpu-1", "False").await;
    eventually("the report written", || async {
        api.get(CLUSTER_REPORTS, "", "aicr-gpu-1").is_some()
    })
    .await;
    // The standby has the same Node and the same writer; it stays quiet.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(writes(), 2, "one condition and one report");
    drop(agent);

    a.kill().await;
    eventually("replica b takes over", || async {
        http_get(b.http_addr, "/readyz").await.0 == 200
    })
    .await;
    let mut agent = SimAgent::connect(channel(&url(&b)).await, "gpu-1", "")
        .await
        .unwrap();
    agent.full(node_readings("22.04")).await.unwrap();
    eventually("b judges gpu-1", || async {
        nodes(&b)
            .await
            .iter()
            .any(|n| n.node_name == "gpu-1" && n.open_violations == 1)
    })
    .await;
    // What a stood-down leader wrote is still right: nothing is rewritten.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(writes(), 2);

    // A second violation: the condition's message changes, its status and
    // transition time do not.
    let second = second_violation(&api, &mut agent).await;
    assert_ne!(second["lastHeartbeatTime"], first["lastHeartbeatTime"]);
    assert_eq!(second["lastTransitionTime"], first["lastTransitionTime"]);
    b.shutdown().await;
}
