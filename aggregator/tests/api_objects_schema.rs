//! The objects the aggregator writes to the Kubernetes API (the Events it
//! posts on Nodes, its leader-election Lease) judged as a real API server
//! would: the published schemas, strict, for the oldest Kubernetes the
//! catalog supports and the newest the schemas know, and the API server's
//! own name, label and size rules (see `aicr_test_support::api_objects`).
//! What the client sent is judged, not what the fake stored. Without the
//! judges' venv (scripts/install-test-tools.sh) the test skips, and fails
//! under CI=true.

use std::time::Duration;

use crate::common::sim_agent::{SimAgent, channel, node_readings};
use crate::common::*;
use aicr::model::snapshot::Subtype;
use aicr::proto::drift_event::Kind;
use aicr_aggregator::leader::Election;
use aicr_test_support::api_objects::{judge_sent, sent};
use aicr_test_support::tools::Judge;
use aicr_test_support::{FakeApiServer, fixtures};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_the_lease_are_valid_objects() {
    let Some(judge) = Judge::find() else { return };
    let api = FakeApiServer::start().await;
    api.insert(fixtures::node("gpu-1").build());
    let dir = tempfile::tempdir().unwrap();
    let mut c = config();
    c.kube = Some(api.client().await);
    c.kube_events = true;
    c.stale_after = Duration::from_millis(500);
    c.election = Some(Election {
        name: "aicr-aggregator".into(),
        namespace: "default".into(),
        identity: "aicr-aggregator-7d9c5b-x2x4q".into(),
        lease_duration: Duration::from_secs(2),
    });
    c.recipe = Some(recipe_file(
        dir.path(),
        &[
            ("OS.release.VERSION_ID", "== 24.04", "critical"),
            ("OS.release.PRETTY_NAME", "== Ubuntu 24.04 LTS", ""),
        ],
    ));
    let agg = start(c).await;
    eventually("the replica leads", || async {
        http_get(agg.http_addr, "/readyz").await.0 == 200
    })
    .await;
    let mut w = watch(&agg).await;
    let mut agent = SimAgent::connect(channel(&url(&agg)).await, "gpu-1", "")
        .await
        .expect("agent accepted");
    // A reading in another script: the Event's note, which quotes it,
    // runs past the API server's 1024-byte limit unless cut in bytes.
    let mut readings = node_readings("22.04");
    readings[0].1 = Subtype::new("release")
        .with("ID", "ubuntu")
        .with("VERSION_ID", "22.04")
        .with("PRETTY_NAME", "Убунту 22.04 ".repeat(60));
    agent.full(readings).await.unwrap();
    event_where(&mut w, is(Kind::Opened, "gpu-1", "OS.release.VERSION_ID")).await;
    event_where(&mut w, is(Kind::Opened, "gpu-1", "OS.release.PRETTY_NAME")).await;
    agent
        .update(
            "OS",
            Subtype::new("release")
                .with("ID", "ubuntu")
                .with("VERSION_ID", "24.04")
                .with("PRETTY_NAME", "Ubuntu 24.04 LTS"),
        )
        .await
        .unwrap();
    event_where(&mut w, is(Kind::Resolved, "gpu-1", "OS.release.VERSION_ID")).await;
    event_where(
        &mut w,
        is(Kind::Resolved, "gpu-1", "OS.release.PRETTY_NAME"),
    )
    .await;
    // Silence: the node goes stale.
    event_where(&mut w, is(Kind::Stale, "gpu-1", "")).await;
    // One Event per constraint and transition: two violations on one
    // node are two Events, not one Event seen twice.
    let posted = |reason: &'static str, about: &'static str| {
        let api = &api;
        move || async move {
            api.list("events.events.k8s.io", "default").iter().any(|e| {
                e["regarding"]["name"] == "gpu-1"
                    && e["reason"] == reason
                    && e["note"].as_str().is_some_and(|n| n.contains(about))
            })
        }
    };
    for (reason, about) in [
        ("ConstraintViolated", "OS.release.VERSION_ID"),
        ("ConstraintViolated", "OS.release.PRETTY_NAME"),
        ("ConstraintMet", "OS.release.VERSION_ID"),
        ("ConstraintMet", "OS.release.PRETTY_NAME"),
        ("AgentStale", ""),
    ] {
        eventually(
            &format!("a {reason} Event about {about:?}"),
            posted(reason, about),
        )
        .await;
    }
    drop(agent);
    // A clean shutdown hands the lease back: one more write of it.
    agg.shutdown().await;
    judge_sent(&judge, &sent(&api), &["Event", "Lease"]);
}
