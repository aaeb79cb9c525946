//! Shared set-up for the aggregator's end-to-end tests: an in-process
//! aggregator on loopback, CLI-side clients, recipes, HTTP probes.

#![allow(dead_code)]

pub mod sim_agent;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aicr::proto::cluster_service_client::ClusterServiceClient;
use aicr::proto::drift_event::Kind;
use aicr::proto::{
    DriftEvent, ListNodesRequest, ListViolationsRequest, NodeInfo, WatchDriftRequest,
};
use aicr_aggregator::{Config, Running};
pub use aicr_test_support::Proc;
use serde_json::json;
use tonic::Streaming;
use tonic::transport::Channel;

pub const WAIT: Duration = Duration::from_secs(10);

/// Write a RecipeResult with these `(name, value, severity)` constraints.
pub fn recipe_file(dir: &Path, constraints: &[(&str, &str, &str)]) -> PathBuf {
    let cs: Vec<_> = constraints
        .iter()
        .map(|(n, v, s)| json!({"name": n, "value": v, "severity": s}))
        .collect();
    let doc = json!({
        "kind": "RecipeResult",
        "apiVersion": "aicr.nvidia.com/v1alpha1",
        "constraints": cs,
        "componentRefs": [],
        "deploymentOrder": [],
    });
    let path = dir.join("recipe.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    path
}

pub fn url(r: &Running) -> String {
    format!("http://{}", r.grpc_addr)
}

pub async fn client(r: &Running) -> ClusterServiceClient<Channel> {
    ClusterServiceClient::new(sim_agent::channel(&url(r)).await)
}

pub async fn watch(r: &Running) -> Streaming<DriftEvent> {
    client(r)
        .await
        .watch_drift(WatchDriftRequest { since_id: 0 })
        .await
        .expect("watch opens")
        .into_inner()
}

/// The next event on a watch stream.
pub async fn next_event(w: &mut Streaming<DriftEvent>) -> DriftEvent {
    tokio::time::timeout(WAIT, w.message())
        .await
        .expect("an event arrives in time")
        .expect("the watch stream is healthy")
        .expect("the watch stream stays open")
}

/// Skip events until one matches.
pub async fn event_where(
    w: &mut Streaming<DriftEvent>,
    f: impl Fn(&DriftEvent) -> bool,
) -> DriftEvent {
    loop {
        let ev = next_event(w).await;
        if f(&ev) {
            return ev;
        }
    }
}

pub fn is(kind: Kind, node: &str, constraint: &str) -> impl Fn(&DriftEvent) -> bool {
    let (node, constraint) = (node.to_string(), constraint.to_string());
    move |e| e.kind == kind as i32 && e.node_name == node && e.constraint == constraint
}

pub async fn nodes(r: &Running) -> Vec<NodeInfo> {
    client(r)
        .await
        .list_nodes(ListNodesRequest {})
        .await
        .unwrap()
        .into_inner()
        .nodes
}

/// The violations and deviations open now.
pub async fn open_now(r: &Running) -> Vec<DriftEvent> {
    client(r)
        .await
        .list_violations(ListViolationsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .events
}

/// GET an HTTP path of the aggregator: (status, body).
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let url = format!("http://{addr}{path}");
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut resp = agent.get(&url).call().expect("the HTTP listener answers");
        let status = resp.status().as_u16();
        (status, resp.body_mut().read_to_string().unwrap_or_default())
    })
    .await
    .unwrap()
}

/// Poll until `f` holds or the wait runs out.
pub async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// Local defaults with quick timers.
pub fn config() -> Config {
    let mut c = Config::local();
    c.stale_after = Duration::from_secs(30);
    c.version_poll = Duration::from_millis(200);
    c
}

/// [`config`] watching `api`'s cluster, writing no Kubernetes Events (the
/// tests that use it count or judge the other writes).
pub async fn cluster_config(api: &aicr_test_support::FakeApiServer) -> Config {
    let mut c = config();
    c.kube = Some(api.client().await);
    c.kube_events = false;
    c
}

/// A replica that campaigns for the `default/aicr-aggregator` lease (2 s),
/// without Kubernetes Events; the caller gives it the cluster.
pub fn replica(identity: &str) -> Config {
    let mut c = config();
    c.election = Some(aicr_aggregator::leader::Election {
        name: "aicr-aggregator".into(),
        namespace: "default".into(),
        identity: identity.into(),
        lease_duration: Duration::from_secs(2),
    });
    c.kube_events = false;
    c
}

/// Replica `replica-a`, leading, and replica `replica-b` beside it, both
/// on `api`.
pub async fn leader_and_standby(api: &aicr_test_support::FakeApiServer) -> (Running, Running) {
    leader_and_standby_judging(api, None).await
}

/// [`leader_and_standby`], both with `recipe` active.
pub async fn leader_and_standby_judging(
    api: &aicr_test_support::FakeApiServer,
    recipe: Option<PathBuf>,
) -> (Running, Running) {
    let mut ca = replica("replica-a");
    ca.kube = Some(api.client().await);
    ca.recipe = recipe.clone();
    let a = start(ca).await;
    eventually("replica a leads", || async {
        http_get(a.http_addr, "/readyz").await.0 == 200
    })
    .await;
    let mut cb = replica("replica-b");
    cb.kube = Some(api.client().await);
    cb.recipe = recipe;
    (a, start(cb).await)
}

/// Start, retrying while a just-stopped aggregator still holds the port.
pub async fn start(c: Config) -> Running {
    let deadline = Instant::now() + WAIT;
    loop {
        match aicr_aggregator::start(c.clone()).await {
            Ok(r) => return r,
            Err(e) if Instant::now() < deadline && e.message().contains("cannot listen") => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("aggregator failed to start: {e}"),
        }
    }
}
