//! The real `aicr-agent` binary over real gRPC on loopback: against a
//! recording fake AgentService (what exactly crosses the wire: Hello, full
//! snapshot, per-subtype updates, Resync, reconnect with a re-read token,
//! the memory ceiling) and against the real aggregator (the node appears,
//! drift opens and resolves as a file under `--root` changes, and the agent
//! comes back after the aggregator restarts).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use aicr::proto::agent_message::Body;
use aicr::proto::agent_service_server::{AgentService, AgentServiceServer};
use aicr::proto::aggregator_message::Body as Reply;
use aicr::proto::cluster_service_client::ClusterServiceClient;
use aicr::proto::drift_event::Kind;
use aicr::proto::{
    AgentMessage, AggregatorMessage, DriftEvent, FullSnapshot, GetSnapshotRequest,
    ListNodesRequest, NodeInfo, Resync, SubtypeUpdate, WatchDriftRequest,
};
use aicr_agent::digest;
use aicr_test_support::Proc;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};

const WAIT: Duration = Duration::from_secs(15);
const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/demo/host-root");

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// A scratch host root (the demo's fixture) plus room for logs and tokens.
struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Host {
        let dir = tempfile::tempdir().unwrap();
        copy_tree(Path::new(FIXTURE), &dir.path().join("root"));
        Host { dir }
    }
    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn set_version(&self, version: &str) {
        let path = self.root().join("etc/os-release");
        let text = std::fs::read_to_string(&path).unwrap();
        let edited: Vec<String> = text
            .lines()
            .map(|l| {
                if l.starts_with("VERSION_ID=") {
                    format!("VERSION_ID=\"{version}\"")
                } else {
                    l.to_string()
                }
            })
            .collect();
        std::fs::write(&path, edited.join("\n") + "\n").unwrap();
    }
}

/// The agent binary as a child process (killed when dropped, its log
/// printed if the test failed), one of several a test may start on a host.
fn start_agent(host: &Host, url: &str, extra: &[&str]) -> Proc {
    Proc::spawn(
        &format!("agent-{}", fastrand::u32(..)),
        Command::new(env!("CARGO_BIN_EXE_aicr-agent"))
            .args(["--aggregator", url, "--insecure", "--root"])
            .arg(host.root())
            .args(extra)
            .env_remove("NODE_NAME")
            .env_remove("AICR_AGGREGATOR")
            .env("LOG_LEVEL", "info"),
        host.dir.path(),
    )
}

// ---------------------------------------------------------------- the fake

/// One agent session as the fake saw it.
struct Seen {
    inbound: Streaming<AgentMessage>,
    reply: mpsc::Sender<Result<AggregatorMessage, Status>>,
    parts: aicr::parts::Assembler,
    /// Part messages received so far.
    parts_seen: usize,
}

/// Hands sessions to the test; answers each with settings first, as the
/// aggregator does, asking for Parts above `part_bytes` (0: never).
struct Recorder {
    sessions: mpsc::Sender<Seen>,
    part_bytes: u32,
}

#[tonic::async_trait]
impl AgentService for Recorder {
    type SessionStream = ReceiverStream<Result<AggregatorMessage, Status>>;

    async fn session(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let (reply, rx) = mpsc::channel(16);
        let settings = aicr::proto::CollectionSettings {
            part_bytes: self.part_bytes,
            ..Default::default()
        };
        reply
            .send(Ok(AggregatorMessage {
                body: Some(Reply::Settings(settings)),
            }))
            .await
            .map_err(|_| Status::unavailable("test over"))?;
        let seen = Seen {
            inbound: request.into_inner(),
            reply,
            parts: aicr::parts::Assembler::default(),
            parts_seen: 0,
        };
        self.sessions
            .send(seen)
            .await
            .map_err(|_| Status::unavailable("test over"))?;
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// A fake aggregator that hands every session to the test.
async fn fake_aggregator() -> (String, mpsc::Receiver<Seen>) {
    fake_aggregator_with_parts(0).await
}

async fn fake_aggregator_with_parts(part_bytes: u32) -> (String, mpsc::Receiver<Seen>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AgentServiceServer::new(Recorder {
                sessions: tx,
                part_bytes,
            }))
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    (url, rx)
}

async fn next_session(sessions: &mut mpsc::Receiver<Seen>) -> Seen {
    tokio::time::timeout(WAIT, sessions.recv())
        .await
        .expect("the agent connects in time")
        .expect("the fake is running")
}

impl Seen {
    /// The next whole message (Parts put back together).
    async fn next(&mut self) -> Body {
        loop {
            let m = tokio::time::timeout(WAIT, self.inbound.message())
                .await
                .expect("the agent sends something in time")
                .expect("the stream is healthy")
                .expect("the stream stays open");
            if matches!(m.body, Some(Body::Part(_))) {
                self.parts_seen += 1;
            }
            if let Some(whole) = self.parts.push(m, 4 << 20).expect("well-formed parts") {
                return whole.body.expect("a message has a body");
            }
        }
    }

    /// The next message that is not a heartbeat; heartbeats seen on the
    /// way must carry `seq`.
    async fn next_after_heartbeats(&mut self, seq: u64) -> Body {
        loop {
            match self.next().await {
                Body::Heartbeat(h) => assert_eq!(h.seq, seq, "heartbeats repeat the last seq"),
                other => return other,
            }
        }
    }

    async fn send(&self, body: Reply) {
        self.reply
            .send(Ok(AggregatorMessage { body: Some(body) }))
            .await
            .unwrap();
    }
}

fn full(b: Body) -> FullSnapshot {
    match b {
        Body::Full(f) => f,
        other => panic!("expected a full snapshot, got {other:?}"),
    }
}

fn update(b: Body) -> SubtypeUpdate {
    match b {
        Body::Update(u) => u,
        other => panic!("expected an update, got {other:?}"),
    }
}

fn scopes(states: &[aicr::proto::SubtypeState]) -> Vec<String> {
    states
        .iter()
        .map(|s| digest::scope(&s.r#type, &s.subtype))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_changes_cross_the_wire_and_resync_gets_everything() {
    let host = Host::new();
    let token = host.path("token");
    std::fs::write(&token, "token-1\n").unwrap();
    let (url, mut sessions) = fake_aggregator().await;
    let _agent = start_agent(
        &host,
        &url,
        &[
            "--node-name",
            "node-a",
            "--interval",
            "1s",
            "--heartbeat",
            "1s",
            "--identity-token-file",
            token.to_str().unwrap(),
        ],
    );

    let mut s = next_session(&mut sessions).await;
    let Body::Hello(hello) = s.next().await else {
        panic!("the first message must be Hello");
    };
    assert_eq!(hello.node_name, "node-a");
    assert_eq!(hello.identity_token, "token-1");
    assert_eq!(hello.boot_id, "8b2c1d9e-4f3a-4c52-9d1e-6a7b8c9d0e1f");
    assert!(!hello.agent_version.is_empty());

    let first = full(s.next().await);
    assert_eq!(first.seq, 1);
    let all = scopes(&first.subtypes);
    for want in ["OS.grub", "OS.kmod", "OS.release", "OS.sysctl", "GPU.smi"] {
        assert!(
            all.contains(&want.to_string()),
            "{want} missing from {all:?}"
        );
    }
    for st in &first.subtypes {
        assert!(
            ["SystemD", "OS", "GPU"].contains(&st.r#type.as_str()),
            "the agent must not report {}",
            st.r#type
        );
        assert_eq!(st.digest, digest::digest(&st.subtype_json));
    }

    // Nothing but counters changes: only heartbeats for a few intervals.
    let uuid = host.root().join("proc/sys/kernel/random/uuid");
    let quiet = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < quiet {
        std::fs::write(&uuid, format!("{:032x}\n", fastrand::u128(..))).unwrap();
        std::fs::write(
            host.root().join("proc/sys/fs/file-nr"),
            format!("{} 0 9223372036854775807\n", fastrand::u16(..)),
        )
        .unwrap();
        let left = quiet
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(300));
        if let Ok(m) = tokio::time::timeout(left, s.inbound.message()).await {
            let body = m.unwrap().unwrap().body.unwrap();
            assert!(
                matches!(body, Body::Heartbeat(ref h) if h.seq == 1),
                "unchanged host, yet the agent sent {body:?}"
            );
        }
    }

    std::fs::write(host.root().join("proc/sys/vm/swappiness"), "10\n").unwrap();
    let u = update(s.next_after_heartbeats(1).await);
    assert_eq!(u.seq, 2);
    assert_eq!(scopes(&u.changed), ["OS.sysctl"]);
    assert!(u.removed.is_empty());
    let sysctl: serde_json::Value = serde_json::from_slice(&u.changed[0].subtype_json).unwrap();
    assert_eq!(sysctl["data"]["/proc/sys/vm/swappiness"], "10");

    s.send(Reply::Resync(Resync {
        reason: "test".into(),
    }))
    .await;
    let again = full(s.next_after_heartbeats(2).await);
    assert_eq!(again.seq, 3, "the sequence continues through a resync");
    assert_eq!(scopes(&again.subtypes), all);

    std::fs::remove_file(host.root().join("proc/modules")).unwrap();
    let u = update(s.next_after_heartbeats(3).await);
    assert_eq!((u.seq, u.changed.len()), (4, 0));
    assert_eq!(u.removed, ["OS.kmod"]);

    // The aggregator drops the session; the agent comes back with the
    // token as it is now and starts the sequence over.
    std::fs::write(&token, "token-2").unwrap();
    s.reply
        .send(Err(Status::unavailable("restarting")))
        .await
        .unwrap();
    let mut s = next_session(&mut sessions).await;
    let Body::Hello(hello) = s.next().await else {
        panic!("a new session starts with Hello");
    };
    assert_eq!(hello.identity_token, "token-2");
    let f = full(s.next().await);
    assert_eq!(f.seq, 1);
    assert!(!scopes(&f.subtypes).contains(&"OS.kmod".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_settings_change_the_interval() {
    let host = Host::new();
    let (url, mut sessions) = fake_aggregator().await;
    let _agent = start_agent(
        &host,
        &url,
        &[
            "--node-name",
            "node-b",
            "--interval",
            "1h",
            "--heartbeat",
            "1h",
        ],
    );
    let mut s = next_session(&mut sessions).await;
    assert!(matches!(s.next().await, Body::Hello(_)));
    assert_eq!(full(s.next().await).seq, 1);
    s.send(Reply::Settings(aicr::proto::CollectionSettings {
        interval_seconds: 1,
        ..Default::default()
    }))
    .await;
    // Give the agent a moment to take the settings before the change.
    tokio::time::sleep(Duration::from_millis(300)).await;
    host.set_version("22.04");
    let u = update(s.next().await);
    assert_eq!(
        (u.seq, scopes(&u.changed)),
        (2, vec!["OS.release".to_string()])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_messages_go_in_parts_when_the_aggregator_asks() {
    let host = Host::new();
    let (url, mut sessions) = fake_aggregator_with_parts(1024).await;
    let _agent = start_agent(&host, &url, &["--node-name", "node-p", "--heartbeat", "1h"]);
    let mut s = next_session(&mut sessions).await;
    assert!(matches!(s.next().await, Body::Hello(_)));
    assert_eq!(s.parts_seen, 0, "Hello goes whole, before settings arrive");
    let f = full(s.next().await);
    assert_eq!(f.seq, 1);
    assert!(scopes(&f.subtypes).contains(&"OS.release".to_string()));
    let json: usize = f.subtypes.iter().map(|st| st.subtype_json.len()).sum();
    assert!(
        s.parts_seen > json / 1024,
        "{json} bytes of readings in {} parts of at most 1 KiB",
        s.parts_seen
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_memory_ceiling_the_agent_exits_with_a_clear_line() {
    let host = Host::new();
    let (url, mut sessions) = fake_aggregator().await;
    let mut agent = start_agent(&host, &url, &["--node-name", "node-c", "--max-rss", "1Mi"]);
    let _s = next_session(&mut sessions).await;
    let code = agent.exit(WAIT).await.code();
    let log = agent.log_text();
    assert_eq!(code, Some(8), "{log}");
    assert!(log.contains("exceeds --max-rss 1 MiB"), "{log}");
    assert!(log.contains("DaemonSet restarts"), "{log}");
}

#[test]
fn plain_text_is_refused_off_loopback() {
    let out = Command::new(env!("CARGO_BIN_EXE_aicr-agent"))
        .args([
            "--aggregator",
            "http://10.1.2.3:50051",
            "--insecure",
            "--node-name",
            "n",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
    let out = Command::new(env!("CARGO_BIN_EXE_aicr-agent"))
        .args(["--aggregator", "http://127.0.0.1:50051", "--node-name", "n"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--insecure"));
}

#[test]
fn a_host_root_that_is_not_a_directory_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let file = t.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    for root in [t.path().join("nope"), file] {
        let out = Command::new(env!("CARGO_BIN_EXE_aicr-agent"))
            .args(["--aggregator", "http://127.0.0.1:50051", "--insecure"])
            .args(["--node-name", "n", "--root"])
            .arg(&root)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("is not a directory"), "{err}");
    }
}

#[test]
fn a_node_name_the_aggregator_would_refuse_is_refused_at_start() {
    let out = Command::new(env!("CARGO_BIN_EXE_aicr-agent"))
        .args(["--aggregator", "http://127.0.0.1:50051", "--insecure"])
        .args(["--node-name", "Node_1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("\"Node_1\" is not a Kubernetes node name"),
        "{err}"
    );
}

// ------------------------------------------------------- the real aggregator

fn recipe(dir: &Path) -> PathBuf {
    let doc = serde_json::json!({
        "kind": "RecipeResult",
        "apiVersion": "aicr.nvidia.com/v1alpha1",
        "constraints": [
            {"name": "OS.release.VERSION_ID", "value": "24.04", "severity": "critical"},
            {"name": "OS.sysctl./proc/sys/kernel/osrelease", "value": ">= 6.8"},
        ],
        "componentRefs": [],
        "deploymentOrder": [],
    });
    let path = dir.join("recipe.json");
    std::fs::write(&path, serde_json::to_vec(&doc).unwrap()).unwrap();
    path
}

async fn start_aggregator(c: aicr_aggregator::Config) -> aicr_aggregator::Running {
    let deadline = Instant::now() + WAIT;
    loop {
        match aicr_aggregator::start(c.clone()).await {
            Ok(r) => return r,
            // A just-stopped aggregator may hold the port for a moment.
            Err(e) if Instant::now() < deadline => {
                eprintln!("aggregator not started yet: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("aggregator failed to start: {e}"),
        }
    }
}

async fn cli(url: &str) -> ClusterServiceClient<Channel> {
    ClusterServiceClient::connect(url.to_string())
        .await
        .unwrap()
}

async fn node(url: &str, name: &str) -> Option<NodeInfo> {
    let mut c = ClusterServiceClient::connect(url.to_string()).await.ok()?;
    let nodes = c
        .list_nodes(ListNodesRequest {})
        .await
        .ok()?
        .into_inner()
        .nodes;
    nodes.into_iter().find(|n| n.node_name == name)
}

async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for: {what}");
}

async fn next_event(w: &mut Streaming<DriftEvent>) -> DriftEvent {
    tokio::time::timeout(WAIT, w.message())
        .await
        .expect("a drift event in time")
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_follows_the_host_root_and_the_agent_outlives_an_aggregator_restart() {
    let host = Host::new();
    let mut config = aicr_aggregator::Config::local();
    config.recipe = Some(recipe(host.dir.path()));
    let agg = start_aggregator(config.clone()).await;
    let url = format!("http://{}", agg.grpc_addr);
    let mut agent = start_agent(
        &host,
        &url,
        &["--node-name", "gpu-node-1", "--interval", "1s"],
    );

    eventually("the node is listed as connected", || async {
        node(&url, "gpu-node-1")
            .await
            .is_some_and(|n| n.connected && n.last_seq >= 1)
    })
    .await;
    let info = node(&url, "gpu-node-1").await.unwrap();
    assert_eq!(info.open_violations, 0, "{info:?}");
    let snap = cli(&url)
        .await
        .get_snapshot(GetSnapshotRequest {
            node_name: "gpu-node-1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .json;
    let snap: aicr::model::snapshot::Snapshot = serde_json::from_slice(&snap).unwrap();
    assert_eq!(
        snap.lookup("OS", "release", "VERSION_ID").unwrap().render(),
        "24.04"
    );

    let mut w = cli(&url)
        .await
        .watch_drift(WatchDriftRequest { since_id: 0 })
        .await
        .unwrap()
        .into_inner();
    host.set_version("22.04");
    let ev = next_event(&mut w).await;
    assert_eq!(
        (ev.kind, ev.node_name.as_str(), ev.constraint.as_str()),
        (Kind::Opened as i32, "gpu-node-1", "OS.release.VERSION_ID")
    );
    assert_eq!(
        (ev.actual.as_str(), ev.severity.as_str()),
        ("22.04", "critical")
    );
    host.set_version("24.04");
    let ev = next_event(&mut w).await;
    assert_eq!(
        (ev.kind, ev.constraint.as_str(), ev.actual.as_str()),
        (Kind::Resolved as i32, "OS.release.VERSION_ID", "24.04")
    );
    drop(w);

    let addr = agg.grpc_addr;
    agg.shutdown().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(agent.running(), "the agent outlives its aggregator");
    config.listen = addr;
    let agg = start_aggregator(config).await;
    eventually(
        "the agent reconnects to the restarted aggregator",
        || async { node(&url, "gpu-node-1").await.is_some_and(|n| n.connected) },
    )
    .await;
    // The agent logs the reconnection once the aggregator acknowledges its
    // first full snapshot, a moment after the node shows as connected.
    eventually("the agent logs the reconnection", || async {
        agent.log_text().contains("reconnected")
    })
    .await;
    agg.shutdown().await;
}
