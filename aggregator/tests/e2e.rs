//! End-to-end behaviour of the aggregator over real gRPC on loopback,
//! driven by simulated agents: drift, history across restarts, staleness,
//! hostile input, identity, rate limits, cluster state, TLS, leader
//! election and alert sinks.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::sim_agent::{self, SimAgent, channel, hello, message, node_readings};
use crate::common::*;
use aicr::model::snapshot::{Snapshot, Subtype};
use aicr::proto::agent_message::Body;
use aicr::proto::aggregator_message::Body as Reply;
use aicr::proto::drift_event::{Kind, Source};
use aicr::proto::{
    AggregatorMessage, DriftEvent, FullSnapshot, GetSnapshotRequest, ListNodesRequest,
    ListViolationsRequest, SetRecipeRequest, SubtypeState, SubtypeUpdate, ValidateRequest,
};
use aicr_aggregator::identity::{NODE_NAME_EXTRA, POD_NAME_EXTRA, POD_UID_EXTRA};
use aicr_aggregator::ingest::Limits;
use aicr_test_support::{FakeApiServer, fixtures};
use serde_json::{Value, json};
use tonic::Code;

fn release(version: &str) -> Subtype {
    Subtype::new("release")
        .with("ID", "ubuntu")
        .with("VERSION_ID", version)
        .with("PRETTY_NAME", format!("Ubuntu {version} LTS"))
}

async fn connect(url: &str, node: &str) -> SimAgent {
    SimAgent::connect(channel(url).await, node, "")
        .await
        .expect("agent accepted")
}

fn resync(m: Option<Result<AggregatorMessage, tonic::Status>>) -> String {
    match m {
        Some(Ok(AggregatorMessage {
            body: Some(Reply::Resync(r)),
        })) => r.reason,
        other => panic!("expected Resync, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_opens_when_a_watched_value_changes_and_resolves_when_restored() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config();
    c.recipe = Some(recipe_file(
        dir.path(),
        &[
            ("OS.release.VERSION_ID", "== 24.04", "critical"),
            ("GPU.smi.driver", ">= 570", ""),
        ],
    ));
    let agg = start(c).await;
    let mut w = watch(&agg).await;
    let mut a = connect(&url(&agg), "gpu-1").await;
    a.full(node_readings("24.04")).await.unwrap();

    // A change to a subtype no constraint reads opens nothing.
    a.update(
        "SystemD",
        Subtype::new("containerd").with("ActiveState", "failed"),
    )
    .await
    .unwrap();
    a.update("OS", release("22.04")).await.unwrap();
    let ev = next_event(&mut w).await;
    assert!(
        is(Kind::Opened, "gpu-1", "OS.release.VERSION_ID")(&ev),
        "{ev:?}"
    );
    assert_eq!(
        (ev.expected.as_str(), ev.actual.as_str()),
        ("== 24.04", "22.04")
    );
    assert_eq!(ev.severity, "critical");

    let (code, metrics) = http_get(agg.http_addr, "/metrics").await;
    assert_eq!(code, 200);
    let gauge = r#"aicr_constraint_violation{node="gpu-1",constraint="OS.release.VERSION_ID",severity="critical"} 1"#;
    assert!(metrics.contains(gauge), "{metrics}");
    assert!(metrics.contains("aicr_agents_connected 1"), "{metrics}");
    assert!(
        metrics.contains(r#"aicr_updates_ingested_total{kind="update"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("aicr_evaluation_seconds_count"),
        "{metrics}"
    );

    let info = &nodes(&agg).await[0];
    assert_eq!(
        (
            info.node_name.as_str(),
            info.open_violations,
            info.connected
        ),
        ("gpu-1", 1, true)
    );

    a.update("OS", release("24.04")).await.unwrap();
    let ev = next_event(&mut w).await;
    assert!(
        is(Kind::Resolved, "gpu-1", "OS.release.VERSION_ID")(&ev),
        "{ev:?}"
    );
    assert_eq!(ev.actual, "24.04");
    let (_, metrics) = http_get(agg.http_addr, "/metrics").await;
    assert!(!metrics.contains(gauge), "{metrics}");

    let open = open_now(&agg).await;
    assert!(open.is_empty(), "{open:?}");
    agg.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_validation_and_recipes_through_the_cli_api() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config();
    c.recipe = Some(recipe_file(
        dir.path(),
        &[("OS.release.VERSION_ID", "== 24.04", "")],
    ));
    let agg = start(c).await;
    let mut a = connect(&url(&agg), "gpu-1").await;
    a.full(node_readings("24.04")).await.unwrap();
    let mut b = connect(&url(&agg), "gpu-2").await;
    b.full(node_readings("22.04")).await.unwrap();
    let mut cli = client(&agg).await;

    let json = cli
        .get_snapshot(GetSnapshotRequest {
            node_name: "gpu-1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .json;
    let snap: Snapshot = serde_json::from_slice(&json).unwrap();
    assert_eq!(snap.kind, "Snapshot");
    assert_eq!(snap.metadata["source-node"], "gpu-1");
    let kinds: Vec<&str> = snap.measurements.iter().map(|m| m.kind.as_str()).collect();
    assert_eq!(kinds, ["SystemD", "OS", "GPU"]);
    assert_eq!(
        snap.lookup("GPU", "smi", "gpu-count").unwrap().render(),
        "8"
    );
    let missing = cli
        .get_snapshot(GetSnapshotRequest {
            node_name: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    let report: Value = serde_json::from_slice(
        &cli.validate(ValidateRequest::default())
            .await
            .unwrap()
            .into_inner()
            .json,
    )
    .unwrap();
    assert_eq!(report["reportFormat"], "CTRF");
    let summary = &report["results"]["summary"];
    assert_eq!(
        (summary["tests"].as_u64(), summary["failed"].as_u64()),
        (Some(2), Some(1))
    );
    let failed: Vec<&Value> = report["results"]["tests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["status"] == "failed")
        .collect();
    assert_eq!(failed[0]["suite"], json!(["readiness", "gpu-2"]));

    // A new recipe through the API re-judges every node at once.
    let mut w = watch(&agg).await;
    let recipe = json!({
        "kind": "RecipeResult", "apiVersion": "aicr.nvidia.com/v1alpha1",
        "constraints": [{"name": "GPU.smi.driver", "value": ">= 580"}],
        "componentRefs": [], "deploymentOrder": [],
    });
    let n = cli
        .set_recipe(SetRecipeRequest {
            recipe_json: serde_json::to_vec(&recipe).unwrap(),
        })
        .await
        .unwrap()
        .into_inner()
        .constraints;
    assert_eq!(n, 1);
    let mut seen = Vec::new();
    for _ in 0..3 {
        let e = next_event(&mut w).await;
        seen.push((e.kind, e.node_name, e.constraint));
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            (
                Kind::Opened as i32,
                "gpu-1".to_string(),
                "GPU.smi.driver".to_string()
            ),
            (
                Kind::Opened as i32,
                "gpu-2".to_string(),
                "GPU.smi.driver".to_string()
            ),
            (
                Kind::Resolved as i32,
                "gpu-2".to_string(),
                "OS.release.VERSION_ID".to_string()
            ),
        ]
    );
    let bad = cli
        .set_recipe(SetRecipeRequest {
            recipe_json: br#"{"kind":"RecipeResult","apiVersion":"x","constraints":[{"name":"Disk.x.y","value":"1"}]}"#.to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    agg.shutdown().await;
}

/// GPU readings every node shares apart from its own serial; `driver` is
/// the key the constraints below read.
fn smi_with(serial: &str, driver: &str) -> Subtype {
    let mut smi = Subtype::new("smi")
        .with("driver", driver)
        .with("gpu.0.serial", serial);
    for f in 0..10 {
        smi.data
            .insert(format!("gpu.0.field-{f}"), format!("value-{f}").into());
    }
    smi
}

/// Outcomes on the readings nodes share are reused across nodes (states
/// module); a node that holds the constraint's key differently must still
/// be judged on its own value, through a recipe change and its updates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_sharing_readings_are_each_judged_on_their_own_value() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config();
    c.recipe = Some(recipe_file(dir.path(), &[("GPU.smi.driver", ">= 570", "")]));
    let agg = start(c).await;
    let mut w = watch(&agg).await;
    let mut agents = Vec::new();
    for (node, driver) in [("a", "570.1"), ("b", "570.1"), ("c", "550.2")] {
        let mut agent = connect(&url(&agg), node).await;
        let mut readings = node_readings("24.04");
        readings.retain(|(_, st)| st.subtype != "smi");
        readings.push(("GPU".into(), smi_with(&format!("serial-{node}"), driver)));
        agent.full(readings).await.unwrap();
        agents.push(agent);
    }
    // Peer deviations on the same reading come on the same stream.
    let driver = "GPU.smi.driver";
    let judged = |e: &DriftEvent| e.source == Source::Constraint as i32 && e.constraint == driver;
    let ev = event_where(&mut w, judged).await;
    assert_eq!((ev.kind, ev.node_name.as_str()), (Kind::Opened as i32, "c"));

    // a and b now fail on the reading they share; c still fails on its own.
    let recipe = json!({
        "kind": "RecipeResult", "apiVersion": "aicr.nvidia.com/v1alpha1",
        "constraints": [{"name": driver, "value": ">= 575"}],
        "componentRefs": [], "deploymentOrder": [],
    });
    client(&agg)
        .await
        .set_recipe(SetRecipeRequest {
            recipe_json: serde_json::to_vec(&recipe).unwrap(),
        })
        .await
        .unwrap();
    let mut opened = Vec::new();
    for _ in 0..2 {
        let e = event_where(&mut w, judged).await;
        assert_eq!((e.kind, e.actual.as_str()), (Kind::Opened as i32, "570.1"));
        opened.push(e.node_name);
    }
    opened.sort();
    assert_eq!(opened, ["a", "b"]);

    // c's own value moves past the bar, then a's; b alone stays open.
    for (i, node) in [(2, "c"), (0, "a")] {
        agents[i]
            .update("GPU", smi_with(&format!("serial-{node}"), "580.3"))
            .await
            .unwrap();
        let e = event_where(&mut w, judged).await;
        assert!(is(Kind::Resolved, node, driver)(&e), "{e:?}");
    }
    let open = open_now(&agg).await;
    let open: Vec<(&str, &str)> = open
        .iter()
        .filter(|e| judged(e))
        .map(|e| (e.node_name.as_str(), e.actual.as_str()))
        .collect();
    assert_eq!(open, [("b", "570.1")]);
    agg.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_survives_a_restart_and_agents_reconnect_with_full_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config();
    c.recipe = Some(recipe_file(
        dir.path(),
        &[("OS.release.VERSION_ID", "== 24.04", "")],
    ));
    c.state_dir = Some(dir.path().join("state"));
    let first = start(c.clone()).await;
    let url = url(&first);
    let mut w = watch(&first).await;
    let mut a = connect(&url, "gpu-1").await;
    a.full(node_readings("22.04")).await.unwrap();
    let opened = next_event(&mut w).await;
    assert!(is(Kind::Opened, "gpu-1", "OS.release.VERSION_ID")(&opened));
    drop(w);

    c.listen = first.grpc_addr;
    first.kill().await;
    // The agent sees its session end and reconnects once the port is back.
    assert!(!matches!(a.next().await, Some(Ok(_))));
    let second = start(c).await;

    let mut cli = client(&second).await;
    let history = cli
        .list_violations(ListViolationsRequest {
            history: true,
            limit: 0,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(
        history,
        vec![opened.clone()],
        "history is kept across the restart"
    );
    let listed = nodes(&second).await;
    assert_eq!(listed.len(), 1);
    assert!(
        !listed[0].connected,
        "known from the store, not yet reconnected"
    );

    let mut w = watch(&second).await;
    let mut back = None;
    for _ in 0..100 {
        match SimAgent::connect(channel(&url).await, "gpu-1", "").await {
            Ok(agent) => {
                back = Some(agent);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let mut b = back.expect("the agent reconnects");
    b.full(node_readings("22.04")).await.unwrap();
    assert!(nodes(&second).await[0].connected);
    // Still violated after the restart: nothing new is opened.
    b.update("OS", release("24.04")).await.unwrap();
    let resolved = next_event(&mut w).await;
    assert!(
        is(Kind::Resolved, "gpu-1", "OS.release.VERSION_ID")(&resolved),
        "{resolved:?}"
    );
    assert_eq!(resolved.id, opened.id + 1);
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_goes_stale_when_its_agent_stops_heartbeating() {
    let mut c = config();
    c.stale_after = Duration::from_millis(400);
    let agg = start(c).await;
    let mut w = watch(&agg).await;
    let mut quiet = connect(&url(&agg), "quiet").await;
    quiet.full(node_readings("24.04")).await.unwrap();
    let mut chatty = connect(&url(&agg), "chatty").await;
    chatty.full(node_readings("24.04")).await.unwrap();
    let beats = tokio::spawn(async move {
        for _ in 0..20 {
            chatty.heartbeat().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        chatty
    });
    let started = Instant::now();
    let ev = next_event(&mut w).await;
    assert!(
        is(Kind::Stale, "quiet", "")(&ev),
        "only the silent node goes stale: {ev:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(
        ev.reason.contains("no message from the agent"),
        "{}",
        ev.reason
    );
    let listed = nodes(&agg).await;
    let q = listed.iter().find(|n| n.node_name == "quiet").unwrap();
    let ch = listed.iter().find(|n| n.node_name == "chatty").unwrap();
    assert!(q.stale && !ch.stale);
    let (_, metrics) = http_get(agg.http_addr, "/metrics").await;
    assert!(
        metrics.contains(r#"aicr_node_stale{node="quiet"} 1"#),
        "{metrics}"
    );

    quiet.heartbeat().await;
    let ev = next_event(&mut w).await;
    assert!(is(Kind::Resolved, "quiet", "")(&ev), "{ev:?}");
    assert!(!nodes(&agg).await.iter().any(|n| n.stale));
    drop(beats.await.unwrap());
    agg.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_are_refused_without_harming_other_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config();
    c.max_message_bytes = 64 * 1024;
    c.recipe = Some(recipe_file(
        dir.path(),
        &[("OS.release.VERSION_ID", "== 24.04", "")],
    ));
    let agg = start(c).await;
    let mut w = watch(&agg).await;
    let mut good = connect(&url(&agg), "good").await;
    good.full(node_readings("24.04")).await.unwrap();

    let mut big = connect(&url(&agg), "big").await;
    let mut huge = Subtype::new("sysctl");
    for i in 0..4000 {
        huge.data
            .insert(format!("/proc/sys/key/{i:05}"), "x".repeat(40).into());
    }
    let err = big.full(vec![("OS".into(), huge)]).await.unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err}");

    good.update("OS", release("22.04")).await.unwrap();
    let ev = next_event(&mut w).await;
    assert!(
        is(Kind::Opened, "good", "OS.release.VERSION_ID")(&ev),
        "{ev:?}"
    );
    let missing = client(&agg)
        .await
        .get_snapshot(GetSnapshotRequest {
            node_name: "big".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        missing.code(),
        Code::NotFound,
        "nothing of the oversized message was kept"
    );
    agg.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_on_the_wire_and_malformed_documents_harm_no_one() {
    let agg = start(config()).await;
    let mut good = connect(&url(&agg), "good").await;
    good.full(node_readings("24.04")).await.unwrap();

    let addr = agg.grpc_addr;
    tokio::task::spawn_blocking(move || {
        for junk in [
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            (0..65536u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect(),
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x04\xff\xff\xff\xff\xff\xff\xff".to_vec(),
        ] {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = s.write_all(&junk);
            let mut sink = Vec::new();
            // The server answers or hangs up; either way it moves on.
            let _ = s.read_to_end(&mut sink);
        }
    })
    .await
    .unwrap();

    let mut bad = connect(&url(&agg), "bad").await;
    bad.send(message(Body::Full(FullSnapshot {
        seq: 1,
        subtypes: vec![SubtypeState {
            r#type: "OS".into(),
            subtype: "release".into(),
            subtype_json: b"{not json".to_vec(),
            digest: "d".into(),
        }],
    })))
    .await;
    let err = bad.next().await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("not a Subtype"), "{err}");

    // Parts that break the protocol end only their own session.
    let part = |chunk: &[u8], last| {
        message(Body::Part(aicr::proto::Part {
            chunk: chunk.to_vec(),
            last,
        }))
    };
    for (name, msgs, want) in [
        (
            "garbled",
            vec![part(b"\xff\xff\xff", true)],
            "do not decode",
        ),
        (
            "interleaved",
            vec![
                part(b"\x12", false),
                message(Body::Heartbeat(Default::default())),
            ],
            "between the parts",
        ),
        (
            "endless",
            vec![
                part(&vec![0; 3 << 20], false),
                part(&vec![0; 2 << 20], false),
            ],
            "exceeds",
        ),
    ] {
        let mut a = connect(&url(&agg), name).await;
        for m in msgs {
            a.send(m).await;
        }
        let err = a.next().await.unwrap().unwrap_err();
        assert!(
            matches!(err.code(), Code::InvalidArgument | Code::OutOfRange),
            "{name}: {err}"
        );
        assert!(err.message().contains(want), "{name}: {err}");
    }

    good.update("OS", release("24.10")).await.unwrap();
    assert_eq!(http_get(agg.http_addr, "/healthz").await.0, 200);
    assert_eq!(nodes(&agg).await.len(), 5);
    agg.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_snapshots_arrive_in_parts_and_apply_whole() {
    let agg = start(config()).await;
    let mut a = connect(&url(&agg), "big").await;
    let mut readings = node_readings("24.04");
    let mut sysctl = Subtype::new("sysctl");
    for i in 0..3000 {
        sysctl.data.insert(
            format!("/proc/sys/net/ipv4/neigh/eth{i}/gc_stale_time"),
            "60".into(),
        );
    }
    readings.retain(|(_, st)| st.subtype != "sysctl");
    readings.push(("OS".into(), sysctl));
    // ~200 KiB of readings: many parts of at most `PART_BYTES` each.
    a.full(readings).await.unwrap();
    let json = client(&agg)
        .await
        .get_snapshot(GetSnapshotRequest {
            node_name: "big".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .json;
    let snap: Snapshot = serde_json::from_slice(&json).unwrap();
    let got = snap
        .measurement("OS")
        .and_then(|m| m.subtype("sysctl"))
        .unwrap();
    assert_eq!(got.data.len(), 3000);
    a.update("OS", release("22.04")).await.unwrap();
    agg.shutdown().await;
}

/// A counter without labels, as the aggregator exports it now.
async fn counter(addr: std::net::SocketAddr, name: &str) -> Option<u64> {
    let (_, metrics) = http_get(addr, "/metrics").await;
    let prefix = format!("{name} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

async fn heap_trims(addr: std::net::SocketAddr) -> Option<u64> {
    counter(addr, "aicr_heap_trims_total").await
}

/// Freed heap goes back to the system once a burst of full snapshots is
/// over, once per burst, and never while no snapshot arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heap_is_trimmed_once_after_a_burst_of_full_snapshots() {
    use aicr_aggregator::memory::QUIET;
    let agg = start(config()).await;
    tokio::time::sleep(QUIET * 2).await;
    assert_eq!(heap_trims(agg.http_addr).await, Some(0), "no burst yet");
    let mut agents = Vec::new();
    for node in ["gpu-1", "gpu-2", "gpu-3"] {
        let mut a = connect(&url(&agg), node).await;
        a.full(node_readings("24.04")).await.unwrap();
        agents.push(a);
    }
    eventually("a trim after the burst", || async {
        heap_trims(agg.http_addr).await == Some(1)
    })
    .await;
    tokio::time::sleep(QUIET * 2).await;
    assert_eq!(heap_trims(agg.http_addr).await, Some(1), "once per burst");
    agg.shutdown().await;
}

/// A complete Node list is a burst too: the response holds every Node
/// object whole, and the watch keeps a few fields of each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heap_is_trimmed_once_after_the_node_list() {
    use aicr_aggregator::memory::QUIET;
    let api = FakeApiServer::start().await;
    for i in 0..50 {
        api.insert(fixtures::node(&format!("gpu-{i}")).build());
    }
    let agg = start(cluster_config(&api).await).await;
    eventually(
        "the Node list counted and the heap trimmed after it",
        || async {
            counter(agg.http_addr, "aicr_node_lists_total").await == Some(1)
                && heap_trims(agg.http_addr).await == Some(1)
        },
    )
    .await;
    tokio::time::sleep(QUIET * 2).await;
    assert_eq!(heap_trims(agg.http_addr).await, Some(1), "once per list");
    agg.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_before_hello_and_sequence_gaps_are_answered_with_resync() {
    let agg = start(config()).await;
    let update = |seq| {
        message(Body::Update(SubtypeUpdate {
            seq,
            changed: vec![sim_agent::state("OS", &release("24.04"))],
            removed: Vec::new(),
        }))
    };
    let mut a = SimAgent::open(channel(&url(&agg)).await, "gpu-1", Some(update(1)))
        .await
        .unwrap();
    assert!(resync(a.next().await).contains("Hello"));
    a.send(message(Body::Hello(hello("gpu-1", "")))).await;
    assert!(matches!(
        a.next().await,
        Some(Ok(AggregatorMessage {
            body: Some(Reply::Settings(_))
        }))
    ));
    a.send(update(1)).await;
    assert!(resync(a.next().await).contains("full snapshot"));
    a.seq = 4;
    a.full(node_readings("24.04")).await.unwrap();
    a.seq += 1;
    a.push_update("OS", release("22.04")).await;
    assert_eq!(resync(a.next().await), "sequence gap: expected 6, got 7");
    a.push_update("OS", release("22.04")).await;
    assert!(
        resync(a.next().await).contains("full snapshot"),
        "after a gap only a full snapshot counts"
    );
    a.resend_full().await.unwrap();
    a.update("OS", release("24.04")).await.unwrap();
    a.seq += 3;
    a.heartbeat().await;
    assert!(resync(a.next().await).contains("heartbeat at seq"));

    // A client that never says Hello is cut off after a few tries.
    let mut rude = SimAgent::open(channel(&url(&agg)).await, "x", Some(update(1)))
        .await
        .unwrap();
    rude.send(update(2)).await;
    rude.send(update(3)).await;
    resync(rude.next().await);
    resync(rude.next().await);
    let err = rude.next().await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    let (_, metrics) = http_get(agg.http_addr, "/metrics").await;
    assert!(
        metrics.contains(r#"aicr_agent_rejected_total{reason="resync"} 4"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"aicr_agent_rejected_total{reason="before_hello"} 4"#),
        "{metrics}"
    );
    agg.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_agent_is_throttled_without_starving_others() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config();
    c.limits = Limits {
        rate: 100.0,
        burst: 5.0,
        ..Limits::default()
    };
    c.recipe = Some(recipe_file(
        dir.path(),
        &[("OS.release.VERSION_ID", "== 24.04", "")],
    ));
    let agg = start(c).await;
    let mut w = watch(&agg).await;
    let mut flood = connect(&url(&agg), "flood").await;
    flood.full(node_readings("24.04")).await.unwrap();
    let mut calm = connect(&url(&agg), "calm").await;
    calm.full(node_readings("24.04")).await.unwrap();

    let flooding = tokio::spawn(async move {
        let started = Instant::now();
        for i in 0..100i64 {
            flood
                .update(
                    "GPU",
                    Subtype::new("smi").with("driver", "570").with("i", i),
                )
                .await
                .unwrap();
        }
        started.elapsed()
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = Instant::now();
    calm.update("OS", release("22.04")).await.unwrap();
    let ev = next_event(&mut w).await;
    let latency = sent.elapsed();
    assert!(
        is(Kind::Opened, "calm", "OS.release.VERSION_ID")(&ev),
        "{ev:?}"
    );
    assert!(
        latency < Duration::from_millis(500),
        "the calm agent waited {latency:?}"
    );
    let took = flooding.await.unwrap();
    assert!(
        took >= Duration::from_millis(800),
        "100 updates at 100/s took only {took:?}"
    );
    let (_, metrics) = http_get(agg.http_addr, "/metrics").await;
    assert!(
        !metrics.contains("aicr_agent_throttled_total 0"),
        "{metrics}"
    );
    agg.shutdown().await;
}

async fn fake_cluster() -> FakeApiServer {
    let api = FakeApiServer::start().await;
    api.set_server_version("v1.33.5");
    api.insert(fixtures::node("gpu-1").label("pool", "gpu").build());
    api.insert(fixtures::node("gpu-2").label("pool", "gpu").build());
    api
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_cannot_claim_another_nodes_identity() {
    let api = fake_cluster().await;
    let sa = "system:serviceaccount:aicr:aicr-agent";
    let groups = ["system:serviceaccounts"];
    api.accept_token_with_extra("tok-a", sa, &groups, &[(NODE_NAME_EXTRA, "gpu-1")]);
    api.insert(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "agent-xyz", "namespace": "aicr"},
        "spec": {"nodeName": "gpu-2", "containers": [{"name": "agent", "image": "aicr:1"}]},
    }));
    let uid = api.get("pods", "aicr", "agent-xyz").unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut pod_extra = vec![(POD_NAME_EXTRA, "agent-xyz")];
    if !uid.is_empty() {
        pod_extra.push((POD_UID_EXTRA, uid.as_str()));
    }
    api.accept_token_with_extra("tok-pod", sa, &groups, &pod_extra);
    api.accept_token_with_extra(
        "tok-other-sa",
        "system:serviceaccount:default:intruder",
        &groups,
        &[(NODE_NAME_EXTRA, "gpu-1")],
    );
    let mut c = cluster_config(&api).await;
    c.trust_node_names = false;
    c.agent_service_account = Some("aicr:aicr-agent".into());
    let agg = start(c).await;
    let ch = channel(&url(&agg)).await;

    let mut real = SimAgent::connect(ch.clone(), "gpu-1", "tok-a")
        .await
        .unwrap();
    real.full(node_readings("24.04")).await.unwrap();

    let err = SimAgent::connect(ch.clone(), "gpu-2", "tok-a")
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message().contains("node \"gpu-1\", not \"gpu-2\""),
        "{err}"
    );
    // Hijacking gpu-1's own session with its name but no valid token fails too.
    for (token, code) in [
        ("", Code::Unauthenticated),
        ("forged", Code::Unauthenticated),
        ("tok-other-sa", Code::PermissionDenied),
    ] {
        let err = SimAgent::connect(ch.clone(), "gpu-1", token)
            .await
            .err()
            .unwrap();
        assert_eq!(err.code(), code, "{token}: {err}");
    }
    // Without node-name in the token, the pod it names decides.
    assert!(
        SimAgent::connect(ch.clone(), "gpu-2", "tok-pod")
            .await
            .is_ok()
    );
    let err = SimAgent::connect(ch.clone(), "gpu-1", "tok-pod")
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), Code::PermissionDenied);

    // The honest agent's session and state are untouched.
    real.update("OS", release("24.10")).await.unwrap();
    let snap: Snapshot = serde_json::from_slice(
        &client(&agg)
            .await
            .get_snapshot(GetSnapshotRequest {
                node_name: "gpu-1".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .json,
    )
    .unwrap();
    assert_eq!(
        snap.lookup("OS", "release", "VERSION_ID").unwrap().render(),
        "24.10"
    );
    let (_, metrics) = http_get(agg.http_addr, "/metrics").await;
    assert!(
        metrics.contains(r#"aicr_agent_rejected_total{reason="identity"} 5"#),
        "{metrics}"
    );
    agg.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_level_state_comes_from_the_api_server_watches() {
    let api = fake_cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config();
    c.kube = Some(api.client().await);
    c.recipe = Some(recipe_file(
        dir.path(),
        &[
            ("K8s.server.version", ">= 1.32", "critical"),
            ("K8s.node.kubelet-version", ">= 1.33", ""),
            ("NodeTopology.summary.node-count", ">= 2", ""),
        ],
    ));
    let agg = start(c).await;
    let mut w = watch(&agg).await;
    let mut a = connect(&url(&agg), "gpu-1").await;
    a.full(node_readings("24.04")).await.unwrap();
    let mut cli = client(&agg).await;

    eventually("cluster state synced", || {
        let mut cli = cli.clone();
        async move {
            let json = cli
                .get_snapshot(GetSnapshotRequest::default())
                .await
                .unwrap()
                .into_inner()
                .json;
            let s: Snapshot = serde_json::from_slice(&json).unwrap();
            s.lookup("K8s", "server", "version").is_ok()
                && s.lookup("NodeTopology", "summary", "node-count")
                    .is_ok_and(|r| r.render() == "2")
                && s.measurement("K8s")
                    .and_then(|m| m.subtype("policy"))
                    .is_some()
                && s.measurement("K8s")
                    .and_then(|m| m.subtype("image"))
                    .is_some()
        }
    })
    .await;
    let json = cli
        .get_snapshot(GetSnapshotRequest {
            node_name: "gpu-1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .json;
    let snap: Snapshot = serde_json::from_slice(&json).unwrap();
    let kinds: Vec<&str> = snap.measurements.iter().map(|m| m.kind.as_str()).collect();
    assert_eq!(kinds, ["K8s", "SystemD", "OS", "GPU", "NodeTopology"]);
    let k8s: Vec<&str> = snap.measurements[0]
        .subtypes
        .iter()
        .map(|s| s.subtype.as_str())
        .collect();
    assert_eq!(k8s, ["server", "image", "policy", "node"]);
    assert_eq!(
        snap.lookup("K8s", "node", "kubelet-version")
            .unwrap()
            .render(),
        "v1.33.5"
    );
    assert_eq!(
        snap.lookup("K8s", "server", "version").unwrap().render(),
        "v1.33.5"
    );

    api.set_server_version("v1.31.4");
    let ev = event_where(&mut w, is(Kind::Opened, "", "K8s.server.version")).await;
    assert_eq!(ev.actual, "v1.31.4");

    api.modify("nodes", "", "gpu-1", |n| {
        n["status"]["nodeInfo"]["kubeletVersion"] = "v1.32.9".into();
    });
    let ev = event_where(
        &mut w,
        is(Kind::Opened, "gpu-1", "K8s.node.kubelet-version"),
    )
    .await;
    assert_eq!(ev.actual, "v1.32.9");
    api.delete("nodes", "", "gpu-2");
    event_where(
        &mut w,
        is(Kind::Opened, "", "NodeTopology.summary.node-count"),
    )
    .await;

    eventually("an Event on the Node", || async {
        api.list("events.events.k8s.io", "").iter().any(|e| {
            e["regarding"]["kind"] == "Node"
                && e["regarding"]["name"] == "gpu-1"
                && e["reason"] == "ConstraintViolated"
                && e["type"] == "Warning"
        })
    })
    .await;
    agg.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_nodes_are_forgotten_once_their_agents_are_gone() {
    let api = fake_cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config();
    c.kube = Some(api.client().await);
    c.recipe = Some(recipe_file(
        dir.path(),
        &[("OS.release.VERSION_ID", "== 24.04", "critical")],
    ));
    let agg = start(c).await;
    let mut w = watch(&agg).await;
    let mut one = connect(&url(&agg), "gpu-1").await;
    one.full(node_readings("24.04")).await.unwrap();
    let mut two = connect(&url(&agg), "gpu-2").await;
    two.full(node_readings("22.04")).await.unwrap();
    event_where(&mut w, is(Kind::Opened, "gpu-2", "OS.release.VERSION_ID")).await;

    // Deleted while its agent still reports: kept (a drain is in progress).
    api.delete("nodes", "", "gpu-2");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(nodes(&agg).await.len(), 2);

    // The agent goes too: its violation resolves and the node is forgotten.
    drop(two);
    let ev = event_where(&mut w, is(Kind::Resolved, "gpu-2", "OS.release.VERSION_ID")).await;
    assert_eq!(ev.reason, "node deleted from the cluster");
    eventually("gpu-2 forgotten", || async {
        nodes(&agg).await.iter().all(|n| n.node_name != "gpu-2")
    })
    .await;
    let (_, metrics) = http_get(agg.http_addr, "/metrics").await;
    assert!(!metrics.contains(r#"node="gpu-2""#), "{metrics}");

    // Agent gone first, Node object deleted later: forgotten on the delete.
    drop(one);
    eventually("gpu-1 disconnected", || async {
        nodes(&agg)
            .await
            .iter()
            .any(|n| n.node_name == "gpu-1" && !n.connected)
    })
    .await;
    api.delete("nodes", "", "gpu-1");
    eventually("gpu-1 forgotten", || async { nodes(&agg).await.is_empty() }).await;
    agg.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsynced_watch_is_unknown_not_an_empty_cluster() {
    let api = fake_cluster().await;
    // Pods cannot be listed: the image watch never completes its list.
    api.deny("pods", "list");
    let dir = tempfile::tempdir().unwrap();
    let mut c = cluster_config(&api).await;
    c.recipe = Some(recipe_file(
        dir.path(),
        &[
            ("K8s.image.gpu-operator", ">= v25.3.0", ""),
            ("K8s.server.version", ">= 1.34", ""),
        ],
    ));
    let agg = start(c).await;
    let mut w = watch(&agg).await;
    let open = || open_now(&agg);
    eventually("the server version judged", || async {
        open()
            .await
            .iter()
            .any(|e| e.constraint == "K8s.server.version")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let now = open().await;
    assert_eq!(
        now.len(),
        1,
        "nothing is judged on an image list never seen: {now:?}"
    );
    let json = client(&agg)
        .await
        .get_snapshot(GetSnapshotRequest::default())
        .await
        .unwrap()
        .into_inner()
        .json;
    let snap: Snapshot = serde_json::from_slice(&json).unwrap();
    assert!(snap.measurement("K8s").unwrap().subtype("image").is_none());

    // Once the list succeeds, an empty image list is a real answer.
    api.allow_all();
    let ev = event_where(&mut w, is(Kind::Opened, "", "K8s.image.gpu-operator")).await;
    assert!(ev.reason.contains("not found"), "{}", ev.reason);
    agg.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_agent_supersedes_its_old_session() {
    let agg = start(config()).await;
    let mut old = connect(&url(&agg), "gpu-1").await;
    old.full(node_readings("24.04")).await.unwrap();
    let mut new = connect(&url(&agg), "gpu-1").await;
    let err = old.next().await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.message().contains("superseded"), "{err}");
    new.full(node_readings("24.04")).await.unwrap();
    let listed = nodes(&agg).await;
    assert_eq!(listed.len(), 1);
    assert!(listed[0].connected);
    let (_, metrics) = http_get(agg.http_addr, "/metrics").await;
    assert!(metrics.contains("aicr_agents_connected 1"), "{metrics}");
    drop(new);
    eventually("the node shows as disconnected", || async {
        !nodes(&agg).await[0].connected
    })
    .await;
    agg.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_serves_and_a_standby_takes_over_when_it_stops_renewing() {
    let api = FakeApiServer::start().await;
    let (a, b) = leader_and_standby(&api).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (code, body) = http_get(b.http_addr, "/readyz").await;
    assert_eq!((code, body.trim()), (503, "standby: not the leader"));
    assert_eq!(http_get(b.http_addr, "/healthz").await.0, 200);
    let err = SimAgent::connect(channel(&url(&b)).await, "gpu-1", "")
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), Code::Unavailable);
    let err = client(&b)
        .await
        .list_nodes(ListNodesRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);

    let mut agent = connect(&url(&a), "gpu-1").await;
    agent.full(node_readings("24.04")).await.unwrap();
    let lease = api.get("leases", "default", "aicr-aggregator").unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "replica-a");

    let killed = Instant::now();
    a.kill().await;
    assert!(
        !matches!(agent.next().await, Some(Ok(_))),
        "the old leader's session ends"
    );
    eventually("replica b takes over", || async {
        http_get(b.http_addr, "/readyz").await.0 == 200
    })
    .await;
    let failover = killed.elapsed();
    assert!(
        failover >= Duration::from_millis(1500),
        "took over before the lease ran out: {failover:?}"
    );
    let lease = api.get("leases", "default", "aicr-aggregator").unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "replica-b");
    assert_eq!(lease["spec"]["leaseTransitions"], 1);

    // The agent reconnects (through the Service, here: to b) with full state.
    let mut again = connect(&url(&b), "gpu-1").await;
    again.full(node_readings("24.04")).await.unwrap();
    assert_eq!(nodes(&b).await[0].node_name, "gpu-1");
    b.shutdown().await;
    // A clean shutdown hands the lease back at once.
    let lease = api.get("leases", "default", "aicr-aggregator").unwrap();
    assert!(lease["spec"]["holderIdentity"].is_null(), "{lease}");
}

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
            IsCa, KeyPair,
        };
        let dir = tempfile::tempdir().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "aicr test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose, stem: &str| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(names).unwrap();
            p.distinguished_name.push(DnType::CommonName, stem);
            p.extended_key_usages = vec![usage];
            let cert = p.signed_by(&key, &ca).unwrap();
            std::fs::write(dir.path().join(format!("{stem}.crt")), cert.pem()).unwrap();
            std::fs::write(dir.path().join(format!("{stem}.key")), key.serialize_pem()).unwrap();
        };
        leaf(
            vec!["127.0.0.1".into(), "localhost".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
            "server",
        );
        leaf(
            vec!["agent".into()],
            ExtendedKeyUsagePurpose::ClientAuth,
            "client",
        );
        std::fs::write(dir.path().join("ca.crt"), ca.pem()).unwrap();
        Pki { dir }
    }

    fn path(&self, f: &str) -> std::path::PathBuf {
        self.dir.path().join(f)
    }

    fn read(&self, f: &str) -> Vec<u8> {
        std::fs::read(self.path(f)).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_is_required_of_agents_and_the_cli_needs_a_token_or_a_certificate() {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let pki = Pki::new();
    let mut c = config();
    c.insecure = false;
    c.cli_token = Some("s3cret".into());
    c.tls = Some(aicr_aggregator::TlsFiles {
        cert: pki.path("server.crt"),
        key: pki.path("server.key"),
        client_ca: Some(pki.path("ca.crt")),
    });
    let agg = start(c).await;
    let url = format!("https://{}", agg.grpc_addr);
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pki.read("ca.crt")));
    let with_cert = tls.clone().identity(Identity::from_pem(
        pki.read("client.crt"),
        pki.read("client.key"),
    ));
    let plain = sim_agent::endpoint(&url)
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mutual = sim_agent::endpoint(&url)
        .tls_config(with_cert)
        .unwrap()
        .connect()
        .await
        .unwrap();

    let err = SimAgent::connect(plain.clone(), "gpu-1", "")
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");
    let mut a = SimAgent::connect(mutual.clone(), "gpu-1", "")
        .await
        .unwrap();
    a.full(node_readings("24.04")).await.unwrap();

    use aicr::proto::cluster_service_client::ClusterServiceClient;
    let err = ClusterServiceClient::new(plain.clone())
        .list_nodes(ListNodesRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let mut req = tonic::Request::new(ListNodesRequest {});
    req.metadata_mut()
        .insert("authorization", "Bearer wrong".parse().unwrap());
    let err = ClusterServiceClient::new(plain.clone())
        .list_nodes(req)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let mut req = tonic::Request::new(ListNodesRequest {});
    req.metadata_mut()
        .insert("authorization", "Bearer s3cret".parse().unwrap());
    let listed = ClusterServiceClient::new(plain)
        .list_nodes(req)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.nodes.len(), 1);
    let by_cert = ClusterServiceClient::new(mutual)
        .list_nodes(ListNodesRequest {})
        .await;
    assert!(by_cert.is_ok(), "a client certificate also admits the CLI");
    agg.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_receives_firing_and_resolved_alerts() {
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let store = received.clone();
    let app = axum::Router::new().route(
        "/api/v2/alerts",
        axum::routing::post(move |body: String| {
            let store = store.clone();
            async move {
                let alerts: Value = serde_json::from_str(&body).unwrap_or_default();
                store
                    .lock()
                    .unwrap()
                    .extend(alerts.as_array().cloned().unwrap_or_default());
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let am = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let mut c = config();
    c.alertmanager = Some(format!("http://{am}/"));
    c.recipe = Some(recipe_file(
        dir.path(),
        &[("OS.release.VERSION_ID", "== 24.04", "critical")],
    ));
    let agg = start(c).await;
    let mut a = connect(&url(&agg), "gpu-1").await;
    a.full(node_readings("22.04")).await.unwrap();
    let firing = |v: &Value| {
        v["labels"]["alertname"] == "AICRConstraintViolated" && v["labels"]["node"] == "gpu-1"
    };
    eventually("a firing alert", || async {
        received
            .lock()
            .unwrap()
            .iter()
            .any(|v| firing(v) && v.get("endsAt").is_none())
    })
    .await;
    let alert = received
        .lock()
        .unwrap()
        .iter()
        .find(|v| firing(v))
        .cloned()
        .unwrap();
    assert_eq!(alert["labels"]["severity"], "critical");
    assert_eq!(alert["labels"]["constraint"], "OS.release.VERSION_ID");
    assert_eq!(alert["annotations"]["actual"], "22.04");
    a.update("OS", release("24.04")).await.unwrap();
    eventually("the alert resolved", || async {
        received
            .lock()
            .unwrap()
            .iter()
            .any(|v| firing(v) && v.get("endsAt").is_some())
    })
    .await;
    agg.shutdown().await;
}

#[test]
fn unsafe_configurations_are_refused() {
    let mut c = aicr_aggregator::Config::local();
    c.listen = "0.0.0.0:50051".parse().unwrap();
    let e = c.check().unwrap_err();
    assert!(
        e.message()
            .contains("--insecure is accepted only for loopback"),
        "{e}"
    );
    let mut c = aicr_aggregator::Config::local();
    c.trust_node_names = false;
    assert!(c.check().unwrap_err().message().contains("TokenReview"));
    let mut c = aicr_aggregator::Config::local();
    c.insecure = false;
    assert!(
        c.check()
            .unwrap_err()
            .message()
            .contains("no TLS configured")
    );
    let mut c = aicr_aggregator::Config::local();
    c.insecure = false;
    c.tls = Some(aicr_aggregator::TlsFiles {
        cert: "c".into(),
        key: "k".into(),
        client_ca: None,
    });
    assert!(
        c.check()
            .unwrap_err()
            .message()
            .contains("--cli-token-file")
    );
}

#[tokio::test]
async fn bundles_stream_back_as_file_chunks() {
    let agg = start(config()).await;
    let mut cli = client(&agg).await;
    let catalog = aicr::catalog::Catalog::embedded().unwrap();
    let q = aicr::model::Criteria {
        service: "eks".into(),
        intent: "training".into(),
        ..Default::default()
    };
    let recipe = aicr::engine::resolve(catalog, &q, None).unwrap();
    let mut stream = cli
        .bundle(aicr::proto::BundleRequest {
            recipe_json: serde_json::to_vec(&recipe).unwrap(),
            deployer: "helm".into(),
            set: vec!["gpuoperator:driver.version=570.86.16".into()],
        })
        .await
        .unwrap()
        .into_inner();
    let mut files = std::collections::BTreeMap::new();
    let mut saw_last = false;
    while let Some(chunk) = stream.message().await.unwrap() {
        assert!(!saw_last, "nothing after the last chunk");
        saw_last = chunk.last;
        files.insert(chunk.path, chunk.data);
    }
    assert!(saw_last);
    for f in [
        "deploy.sh",
        "undeploy.sh",
        "recipe.yaml",
        "checksums.txt",
        "README.md",
    ] {
        assert!(files.contains_key(f), "{f} in {:?}", files.keys());
    }
    let gpu = files
        .iter()
        .find(|(p, _)| p.ends_with("-gpu-operator/values.yaml"))
        .expect("gpu-operator values");
    assert!(String::from_utf8_lossy(gpu.1).contains("570.86.16"));

    let bad = cli
        .bundle(aicr::proto::BundleRequest {
            recipe_json: serde_json::to_vec(&recipe).unwrap(),
            deployer: "flux".into(),
            set: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    agg.shutdown().await;
}
