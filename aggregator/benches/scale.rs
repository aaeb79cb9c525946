//! Scale benchmark: many simulated agents against one real `aicr-aggregator`
//! process on loopback, in pools the way a GPU cluster has them (Node
//! objects with instance-type and GPU-product labels, served by the test
//! support's fake API server), 1% of nodes deviating from their pool.
//! Prints the figures the design holds the aggregator to: the time for
//! every agent to connect and apply a full snapshot, the aggregator's
//! resident memory per agent split into connection, stream and state,
//! change-to-alert latency for violations and deviations, the time to
//! re-evaluate a changed recipe across every node, and the time for every
//! agent to resync after the aggregator is killed and restarted on the
//! same `--state-dir`.
//!
//! The aggregator runs as its own process so its memory is measured alone;
//! the agents share this process (one tokio task each). Every agent has
//! its own TCP connection, as in a cluster, spread over several loopback
//! source addresses so the ephemeral ports of one address do not run out;
//! the benchmark raises its open-file limit (inherited by the aggregator).
//! Where the hard limit is lower than that and cannot be raised (a
//! container without CAP_SYS_RESOURCE), `AICR_BENCH_AGENTS_PER_CONN`
//! multiplexes several agents' streams over one HTTP/2 connection; the
//! per-connection figure then comes from a run that fits.
//!
//! Settings (environment): `AICR_BENCH_AGENTS` (10000),
//! `AICR_BENCH_AGENTS_PER_CONN` (1), `AICR_BENCH_POOLS`
//! (20), `AICR_BENCH_CHANGES` (2000: a quarter each opening and resolving
//! a violation, opening and resolving a deviation), `AICR_BENCH_CHANGE_RATE`
//! (changes per second, 1000), `AICR_BENCH_HEARTBEAT` (seconds, 10),
//! `AICR_BENCH_PART_BYTES` (the agents' part size, as the aggregator asks;
//! 0 sends every message whole), `AICR_BENCH_NODE_LABELS` (labels on each
//! Node beside the pool's two, as feature discovery leaves them, 100).
//!
//! `cargo bench -p aicr-aggregator --bench scale`

#[path = "../tests/common/sim_agent.rs"]
mod sim_agent;

/// The simulated agents allocate through mimalloc. They build, encode and
/// drop a 34 KiB snapshot per agent; under glibc's allocator they spent
/// almost half their CPU in `malloc` and `free`, by an amount that varied
/// from run to run with the heap's state, and they share the two cores with
/// the aggregator, so that cost showed up as its connect time. The
/// aggregator keeps glibc's allocator (see ARCHITECTURE.md). mimalloc is
/// built without its transparent huge page advice (`no_thp`): with it,
/// most of the simulator's CPU went on the kernel zeroing 2 MiB pages
/// (`clear_page_erms` under tonic's encoder, by perf), which again slowed
/// the aggregator beside it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aicr::model::snapshot::Subtype;
use aicr::proto::agent_message::Body;
use aicr::proto::agent_service_client::AgentServiceClient;
use aicr::proto::aggregator_message::Body as Reply;
use aicr::proto::cluster_service_client::ClusterServiceClient;
use aicr::proto::drift_event::{Kind, Source};
use aicr::proto::{
    AgentMessage, FullSnapshot, Heartbeat, SetRecipeRequest, SubtypeUpdate, WatchDriftRequest,
};
use aicr_test_support::{FakeApiServer, fixtures};
use sim_agent::{hello, message, node_readings, state};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

/// Agents per loopback source address: the ephemeral port range
/// (32768-60999 by default) bounds connections from one address to one
/// server port.
const AGENTS_PER_SOURCE: usize = 20_000;
/// Agents started (and waited for) at once.
const WAVE: usize = 1000;
const POOL_LABELS: [&str; 2] = ["node.kubernetes.io/instance-type", "nvidia.com/gpu.product"];
/// The sysctl the change run flips, and its pool value.
const FLIPPED: &str = "/proc/sys/kernel/setting_0100";

fn env<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn node_name(i: usize) -> String {
    format!("node-{i:06}")
}

fn recipe_doc(extra: &[(&str, &str)]) -> serde_json::Value {
    let mut constraints = vec![
        serde_json::json!({"name": "OS.release.VERSION_ID", "value": "== 24.04", "severity": "critical"}),
        serde_json::json!({"name": "OS.release.ID", "value": "ubuntu"}),
        serde_json::json!({"name": "GPU.smi.driver", "value": ">= 570"}),
        serde_json::json!({"name": "GPU.smi.gpu-count", "value": "== 8"}),
        serde_json::json!({"name": "OS.kmod.module_001", "value": "true"}),
        serde_json::json!({"name": "SystemD.containerd.ActiveState", "value": "active"}),
    ];
    for (n, v) in extra {
        constraints.push(serde_json::json!({"name": n, "value": v}));
    }
    serde_json::json!({
        "kind": "RecipeResult",
        "apiVersion": "aicr.nvidia.com/v1alpha1",
        "constraints": constraints,
        "componentRefs": [],
        "deploymentOrder": [],
    })
}

struct Aggregator {
    grpc: SocketAddr,
    http: SocketAddr,
    recipe: PathBuf,
    state: PathBuf,
    kubeconfig: PathBuf,
    child: Option<Child>,
}

impl Aggregator {
    fn new(dir: &Path, kubeconfig: &Path) -> Aggregator {
        let recipe = dir.join("recipe.json");
        std::fs::write(&recipe, serde_json::to_vec(&recipe_doc(&[])).unwrap()).unwrap();
        Aggregator {
            grpc: free_addr(),
            http: free_addr(),
            recipe,
            state: dir.join("state"),
            kubeconfig: kubeconfig.to_path_buf(),
            child: None,
        }
    }

    fn start(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_aicr-aggregator"))
            .args(["--insecure", "--trust-node-names"])
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--listen")
            .arg(self.grpc.to_string())
            .arg("--http-listen")
            .arg(self.http.to_string())
            .arg("--recipe")
            .arg(&self.recipe)
            .arg("--state-dir")
            .arg(&self.state)
            // The fake API server shares this process with the simulated
            // agents: writes to Nodes (Events, conditions, reports) would
            // be the simulator's CPU, not the aggregator's.
            .args(["--stale-after", "600s", "--kube-events=false"])
            .args(["--node-condition=false", "--reports=none"])
            .env("LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("the aggregator binary starts");
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// (VmRSS, VmHWM) in MiB.
    fn memory(&self) -> (f64, f64) {
        let pid = self.child.as_ref().map_or(0, Child::id);
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
                .unwrap_or(0.0)
                / 1024.0
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    fn cpu(&self) -> f64 {
        cpu_seconds(&self.child.as_ref().map_or(0, Child::id).to_string())
    }

    async fn wait_ready(&self) {
        let url = format!("http://{}/readyz", self.http);
        for _ in 0..2400 {
            let u = url.clone();
            let ok = tokio::task::spawn_blocking(move || {
                ureq::get(&u)
                    .call()
                    .is_ok_and(|r| r.status().as_u16() == 200)
            })
            .await
            .unwrap();
            if ok {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the aggregator did not become ready");
    }

    /// Wait until `/metrics` holds `line`, for at most ten minutes.
    async fn wait_for_metric(&self, line: &str, what: &str) {
        let url = format!("http://{}/metrics", self.http);
        let want = format!("{line}\n");
        for _ in 0..6000 {
            let u = url.clone();
            let text = tokio::task::spawn_blocking(move || {
                ureq::get(&u)
                    .call()
                    .ok()
                    .and_then(|mut r| r.body_mut().read_to_string().ok())
                    .unwrap_or_default()
            })
            .await
            .unwrap();
            if text.contains(&want) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the aggregator did not {what}");
    }
}

impl Drop for Aggregator {
    fn drop(&mut self) {
        self.kill();
    }
}

enum Cmd {
    SetVersion(&'static str),
    SetFlipped(&'static str),
}

/// What agents tell the bench.
enum Progress {
    /// The session is open and the aggregator answered Hello.
    Opened,
    /// A full snapshot was acknowledged.
    Synced,
}

fn release(v: &str) -> Subtype {
    Subtype::new("release")
        .with("ID", "ubuntu")
        .with("VERSION_ID", v)
        .with("PRETTY_NAME", format!("Ubuntu {v} LTS"))
}

/// Whether node `i` is one of the 1% that deviate from their pool.
fn deviant(i: usize) -> bool {
    i % 100 == 7
}

/// The readings every node has alike, formatted once. Formatting them
/// for each agent (about a thousand keys and values) cost the simulator as
/// much CPU as the aggregator spent ingesting them, on the cores the two
/// share; a node's own readings are added to a clone.
struct Shared {
    /// 600 settings.
    sysctl: Subtype,
    /// 150 modules.
    kmod: Subtype,
    /// Driver, CUDA, GPU count and 22 fields of each of 8 GPUs.
    smi: Subtype,
    /// A unit's state and 36 properties.
    unit: Subtype,
}

fn shared() -> &'static Shared {
    static SHARED: std::sync::OnceLock<Shared> = std::sync::OnceLock::new();
    SHARED.get_or_init(|| {
        let mut sysctl = Subtype::new("sysctl");
        for n in 0..600 {
            sysctl.data.insert(
                format!("/proc/sys/kernel/setting_{n:04}"),
                format!("{}", n * 7).into(),
            );
        }
        let mut kmod = Subtype::new("kmod");
        for n in 0..150 {
            kmod.data.insert(format!("module_{n:03}"), true.into());
        }
        let mut smi = Subtype::new("smi")
            .with("driver", "570.133.20")
            .with("cuda-version", "12.8")
            .with("gpu-count", 8i64);
        for g in 0..8 {
            for f in 0..22 {
                smi.data
                    .insert(format!("gpu.{g}.field-{f:02}"), format!("value-{f}").into());
            }
        }
        let mut unit = Subtype::new("unit")
            .with("ActiveState", "active")
            .with("SubState", "running");
        for p in 0..36 {
            unit.data
                .insert(format!("Property{p:02}"), format!("setting-{p}").into());
        }
        Shared {
            sysctl,
            kmod,
            smi,
            unit,
        }
    })
}

/// A node's sysctl readings: 600 shared settings (one differs on a
/// deviant node, `FLIPPED` as the change run sets it) and the few that
/// are every host's own.
fn sysctl(i: usize, flipped: &str) -> Subtype {
    let mut st = shared().sysctl.clone();
    if deviant(i) {
        st.data
            .insert("/proc/sys/kernel/setting_0042".into(), "999".into());
    }
    st.data.insert(FLIPPED.into(), flipped.into());
    for (k, v) in [
        ("kernel/hostname", node_name(i)),
        (
            "kernel/random/boot_id",
            format!("{i:08x}-aaaa-bbbb-cccc-{i:012x}"),
        ),
    ] {
        st.data.insert(format!("/proc/sys/{k}"), v.into());
    }
    st
}

const FLIPPED_VALUE: &str = "700";

/// A GPU node's readings at the size a real agent reports them: most of
/// each subtype is the same across a pool, a few readings are the node's
/// own (host name, boot id, GPU serials, unit PIDs), as on real hosts.
fn fleet_readings(i: usize, version: &str, flipped: &str) -> Vec<(String, Subtype)> {
    let mut out: Vec<(String, Subtype)> = node_readings(version)
        .into_iter()
        .filter(|(_, s)| {
            !matches!(
                s.subtype.as_str(),
                "release" | "sysctl" | "kmod" | "smi" | "containerd"
            )
        })
        .collect();
    let shared = shared();
    let mut smi = shared.smi.clone();
    for g in 0..8 {
        smi.data
            .insert(format!("gpu.{g}.serial"), format!("{i:07}{g}").into());
        smi.data.insert(
            format!("gpu.{g}.uuid"),
            format!("GPU-{i:08x}-{g:04x}").into(),
        );
    }
    out.push(("OS".into(), release(version)));
    out.push(("OS".into(), sysctl(i, flipped)));
    out.push(("OS".into(), shared.kmod.clone()));
    out.push(("GPU".into(), smi));
    for unit in ["containerd", "kubelet", "nvidia-persistenced"] {
        let mut st = shared.unit.clone();
        st.subtype = unit.to_string();
        st.data
            .insert("MainPID".into(), format!("{}", 1000 + i % 5000).into());
        st.data.insert(
            "ExecMainStartTimestamp".into(),
            format!("Mon 2026-11-23 10:{:02}:00 UTC", i % 60).into(),
        );
        out.push(("SystemD".into(), st));
    }
    out
}

fn full(i: usize, seq: u64, version: &str, flipped: &str) -> AgentMessage {
    message(Body::Full(FullSnapshot {
        seq,
        subtypes: fleet_readings(i, version, flipped)
            .iter()
            .map(|(k, s)| state(k, s))
            .collect(),
    }))
}

/// One agent for the life of the bench: open a session with Hello, send
/// the full snapshot once `go` says so, then heartbeats and updates on
/// command; on any break, back off with jitter, reconnect and resend
/// everything, as the real agent does.
async fn agent(
    i: usize,
    channel: Channel,
    heartbeat: Duration,
    part_bytes: u32,
    mut go: watch::Receiver<bool>,
    mut ctl: mpsc::Receiver<Cmd>,
    progress: mpsc::UnboundedSender<Progress>,
) {
    let node = node_name(i);
    let mut version: &'static str = "24.04";
    let mut flipped: &'static str = FLIPPED_VALUE;
    let mut seq = 0u64;
    let mut backoff = Duration::from_millis(100);
    loop {
        let (tx, rx) = mpsc::channel(64);
        let _ = tx.send(message(Body::Hello(hello(&node, "")))).await;
        let mut client = AgentServiceClient::new(channel.clone());
        let mut replies = match client.session(ReceiverStream::new(rx)).await {
            Ok(r) => r.into_inner(),
            Err(_) => {
                tokio::time::sleep(jitter(i, backoff)).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        // The aggregator answers Hello with the collection settings.
        if !matches!(replies.message().await, Ok(Some(_))) {
            tokio::time::sleep(jitter(i, backoff)).await;
            continue;
        }
        let _ = progress.send(Progress::Opened);
        if go.wait_for(|g| *g).await.is_err() {
            return;
        }
        seq += 1;
        let mut awaiting_full = Some(seq);
        send_parts(&tx, full(i, seq, version, flipped), part_bytes).await;
        let first = tokio::time::Instant::now() + jitter(i, heartbeat);
        let mut tick = tokio::time::interval_at(first, heartbeat);
        loop {
            tokio::select! {
                m = replies.message() => match m {
                    Ok(Some(m)) => match m.body {
                        Some(Reply::Ack(a)) if Some(a.seq) == awaiting_full => {
                            awaiting_full = None;
                            backoff = Duration::from_millis(100);
                            let _ = progress.send(Progress::Synced);
                        }
                        Some(Reply::Resync(_)) => {
                            seq += 1;
                            send_parts(&tx, full(i, seq, version, flipped), part_bytes).await;
                        }
                        _ => {}
                    },
                    _ => break,
                },
                _ = tick.tick() => {
                    let _ = tx.send(message(Body::Heartbeat(Heartbeat { seq, unix_millis: 0 }))).await;
                }
                cmd = ctl.recv() => {
                    let changed = match cmd {
                        Some(Cmd::SetVersion(v)) => {
                            version = v;
                            state("OS", &release(v))
                        }
                        Some(Cmd::SetFlipped(v)) => {
                            flipped = v;
                            state("OS", &sysctl(i, v))
                        }
                        None => return,
                    };
                    seq += 1;
                    // A whole sysctl subtype is over 20 KiB: in Parts, as
                    // the real agent sends every message.
                    let update = message(Body::Update(SubtypeUpdate {
                        seq,
                        changed: vec![changed],
                        removed: Vec::new(),
                    }));
                    send_parts(&tx, update, part_bytes).await;
                }
            }
        }
        tokio::time::sleep(jitter(i, Duration::from_secs(1))).await;
    }
}

/// What the real agent does with the part size the aggregator's settings
/// name (`aicr::parts::PART_BYTES`; `AICR_BENCH_PART_BYTES=0` sends whole).
async fn send_parts(tx: &mpsc::Sender<AgentMessage>, m: AgentMessage, part_bytes: u32) {
    for piece in aicr::parts::split(m, part_bytes) {
        let _ = tx.send(piece).await;
    }
}

/// A spread-out delay in [0, max) that differs per agent.
fn jitter(i: usize, max: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    // A fresh RandomState is randomly keyed: enough randomness for jitter.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_usize(i);
    max.mul_f64((h.finish() % 10_000) as f64 / 10_000.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Count `want` progress reports up to `target`, for at most `limit`.
async fn wait_for(
    rx: &mut mpsc::UnboundedReceiver<Progress>,
    count: &AtomicUsize,
    want: fn(&Progress) -> bool,
    target: usize,
    limit: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while count.load(Ordering::SeqCst) < target {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(p)) if want(&p) => {
                count.fetch_add(1, Ordering::SeqCst);
            }
            Ok(Some(_)) => {}
            _ => return false,
        }
    }
    true
}

/// CPU time (user + system, all threads) a process has used, in seconds,
/// from `/proc/PID/stat`; its clock ticks are USER_HZ, 100 on Linux.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name, which may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let field = |n: usize| {
        rest.split_whitespace()
            .nth(n)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    (field(11) + field(12)) / 100.0
}

/// Where the CPU went in a phase: the aggregator's share against the
/// simulator's (this process), which run on the same cores here.
fn cpu_split(what: &str, agg: (f64, f64), sim: (f64, f64), wall: Duration) {
    println!(
        "  CPU during {what}: aggregator {:.1} s, simulated agents {:.1} s, over {:.1} s on {} cores",
        agg.1 - agg.0,
        sim.1 - sim.0,
        wall.as_secs_f64(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a filter that excludes us means skip.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if !args.is_empty() && !args.iter().any(|a| "scale".contains(a.as_str())) {
        return;
    }
    // One descriptor per connection in each process (the aggregator
    // inherits the limit), plus room.
    let agents: u64 = env("AICR_BENCH_AGENTS", 10_000);
    let per_conn: u64 = env("AICR_BENCH_AGENTS_PER_CONN", 1).max(1);
    let want = agents.div_ceil(per_conn) + 10_000;
    if let Err(e) = rlimit::setrlimit(rlimit::Resource::NOFILE, want, want) {
        let soft = rlimit::increase_nofile_limit(want).unwrap_or(0);
        println!("cannot raise the open-file limit to {want} ({e}); it is {soft}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench());
    // Agent tasks are still reconnecting; leave without waiting for them.
    runtime.shutdown_background();
}

/// A fake API server holding one Node per agent, labelled into pools.
async fn cluster(agents: usize, pools: usize, labels: usize) -> FakeApiServer {
    let api = FakeApiServer::start().await;
    api.set_server_version("v1.33.5");
    for i in 0..agents {
        let p = i % pools;
        let mut node = fixtures::node(&node_name(i))
            .label(POOL_LABELS[0], &format!("p{p}.48xlarge"))
            .label(POOL_LABELS[1], "NVIDIA-H100-80GB-HBM3");
        for (k, v) in discovered_labels(i, labels) {
            node = node.label(&k, &v);
        }
        api.insert(node.build());
    }
    api
}

/// Labels the way node-feature-discovery and GPU feature discovery leave
/// them on a GPU node: mostly the same across a pool (CPU flags, kernel,
/// OS, driver and CUDA versions), a few unique to each node (host name,
/// discovery time stamp, zone).
fn discovered_labels(i: usize, n: usize) -> Vec<(String, String)> {
    let unique = [
        ("kubernetes.io/hostname".to_string(), node_name(i)),
        (
            "nvidia.com/gfd.timestamp".to_string(),
            (1_700_000_000 + i).to_string(),
        ),
        (
            "topology.kubernetes.io/zone".to_string(),
            format!("us-east-1{}", ["a", "b", "c"][i % 3]),
        ),
    ];
    let shared = (0..).map(|k| match k % 4 {
        0 => (
            format!("feature.node.kubernetes.io/cpu-cpuid.FLAG{k}"),
            "true".to_string(),
        ),
        1 => (
            format!("feature.node.kubernetes.io/kernel-config.OPT{k}"),
            "true".to_string(),
        ),
        2 => (
            format!("nvidia.com/gpu.attribute{k}"),
            "535.129.03".to_string(),
        ),
        _ => (
            format!("feature.node.kubernetes.io/pci-10de.sriov{k}"),
            "false".to_string(),
        ),
    });
    unique.into_iter().chain(shared).take(n).collect()
}

fn source(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 1, 1 + (i / AGENTS_PER_SOURCE) as u8))
}

async fn bench() {
    let agents: usize = env("AICR_BENCH_AGENTS", 10_000);
    let per_conn: usize = env("AICR_BENCH_AGENTS_PER_CONN", 1).max(1);
    let connections = agents.div_ceil(per_conn);
    let pools: usize = env("AICR_BENCH_POOLS", 20).max(1);
    let changes: usize = env("AICR_BENCH_CHANGES", 2000);
    let rate: f64 = env("AICR_BENCH_CHANGE_RATE", 1000.0);
    let heartbeat = Duration::from_secs(env("AICR_BENCH_HEARTBEAT", 10));
    let part_bytes: u32 = env("AICR_BENCH_PART_BYTES", aicr::parts::PART_BYTES);
    let labels: usize = env("AICR_BENCH_NODE_LABELS", 100);
    let dir = tempfile::tempdir().unwrap();
    let api = cluster(agents, pools, labels).await;
    let mut agg = Aggregator::new(dir.path(), api.kubeconfig_path());
    agg.start();
    agg.wait_ready().await;
    // The Node watch lists every Node before agents arrive, so the idle
    // figure holds the Node mirror and the rest is the agents' own.
    let listing = Instant::now();
    agg.wait_for_metric(
        &format!("aicr_node_objects {agents}"),
        &format!("list {agents} Nodes"),
    )
    .await;
    println!(
        "Node watch listed {agents} Nodes in {:.1} s",
        listing.elapsed().as_secs_f64()
    );
    // The idle figure is the settled one: after the heap trim that follows
    // the list (`memory`), as it stays until agents arrive.
    agg.wait_for_metric(
        "aicr_heap_trims_total 1",
        "trim its heap after the Node list",
    )
    .await;
    let url = format!("http://{}", agg.grpc);
    println!(
        "scale: {agents} agents in {pools} pools of {} nodes ({} deviating), {connections} TCP connections ({per_conn} agent(s) each) from {} loopback addresses, heartbeat every {}s, messages over {part_bytes} bytes in parts",
        agents / pools,
        (0..agents).filter(|i| deviant(*i)).count(),
        connections.div_ceil(AGENTS_PER_SOURCE),
        heartbeat.as_secs(),
    );
    let sample = fleet_readings(0, "24.04", FLIPPED_VALUE);
    let bytes: usize = sample
        .iter()
        .map(|(k, s)| state(k, s).subtype_json.len())
        .sum();
    let readings: usize = sample.iter().map(|(_, s)| s.data.len()).sum();
    println!(
        "per node: {} subtypes, {readings} readings, {:.1} KiB of JSON (a few readings unique to each node)",
        sample.len(),
        bytes as f64 / 1024.0
    );
    let (rss0, _) = agg.memory();

    // Connections first, so their cost is measured alone.
    let started = Instant::now();
    let cpu_before = (agg.cpu(), cpu_seconds("self"));
    let mut channels = Vec::with_capacity(connections);
    for wave in (0..connections).collect::<Vec<_>>().chunks(WAVE) {
        let connects = wave.iter().map(|&i| {
            let ep = Endpoint::from_shared(url.clone())
                .unwrap()
                .local_address(Some(source(i)))
                .connect_timeout(Duration::from_secs(30));
            async move { ep.connect().await }
        });
        for c in futures::future::join_all(connects).await {
            match c {
                Ok(c) => channels.push(c),
                Err(e) => {
                    println!(
                        "only {} of {connections} connections opened: {e:?}",
                        channels.len()
                    );
                    return;
                }
            }
        }
    }
    let (rss1, _) = agg.memory();
    let connections_open = started.elapsed();

    // Then one session per agent, Hello answered, no state yet.
    let (progress_tx, mut progress_rx) = mpsc::unbounded_channel();
    let (go_tx, go_rx) = watch::channel(false);
    let opened = Arc::new(AtomicUsize::new(0));
    let mut controls = Vec::with_capacity(agents);
    for i in 0..agents {
        let (tx, rx) = mpsc::channel(4);
        controls.push(tx);
        tokio::spawn(agent(
            i,
            channels[i / per_conn].clone(),
            heartbeat,
            part_bytes,
            go_rx.clone(),
            rx,
            progress_tx.clone(),
        ));
        if ((i + 1) % WAVE == 0 || i + 1 == agents)
            && !wait_for(
                &mut progress_rx,
                &opened,
                |p| matches!(p, Progress::Opened),
                i + 1,
                Duration::from_secs(120),
            )
            .await
        {
            println!(
                "only {} of {} sessions opened",
                opened.load(Ordering::SeqCst),
                i + 1
            );
            return;
        }
    }
    let (rss2, _) = agg.memory();
    let sessions_open = started.elapsed();

    // Then every full snapshot.
    let synced = Arc::new(AtomicUsize::new(0));
    go_tx.send_replace(true);
    if !wait_for(
        &mut progress_rx,
        &synced,
        |p| matches!(p, Progress::Synced),
        agents,
        Duration::from_secs(600),
    )
    .await
    {
        println!(
            "only {} of {agents} agents synced",
            synced.load(Ordering::SeqCst)
        );
        return;
    }
    let connect_time = started.elapsed();
    let (rss3, peak) = agg.memory();
    println!(
        "connected + full snapshot applied: {agents} agents in {:.1} s (connections {:.1} s, then sessions {:.1} s, then full snapshots {:.1} s)",
        connect_time.as_secs_f64(),
        connections_open.as_secs_f64(),
        (sessions_open - connections_open).as_secs_f64(),
        (connect_time - sessions_open).as_secs_f64(),
    );
    cpu_split(
        "connect",
        (cpu_before.0, agg.cpu()),
        (cpu_before.1, cpu_seconds("self")),
        connect_time,
    );
    let per = |mib: f64, n: usize| mib * 1024.0 / n as f64;
    println!(
        "aggregator memory with {agents} agents: RSS {rss3:.0} MiB (peak {peak:.0} MiB), {:.1} KiB per agent; per connection {:.1} KiB, per stream {:.1} KiB, state per node {:.1} KiB (idle aggregator {rss0:.0} MiB)",
        per(rss3 - rss0, agents),
        per(rss1 - rss0, connections),
        per(rss2 - rss1, agents),
        per(rss3 - rss2, agents),
    );

    let mut cli = ClusterServiceClient::new(
        Endpoint::from_shared(url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap(),
    )
    .max_decoding_message_size(256 * 1024 * 1024);
    // Every deviant node's deviation, recorded and listed: the time from
    // the last full snapshot's acknowledgement to the last of them.
    let expected = (0..agents).filter(|i| deviant(*i)).count();
    let mut open_deviations = 0;
    while started.elapsed() < connect_time + Duration::from_secs(120) {
        open_deviations = cli
            .list_violations(aicr::proto::ListViolationsRequest {
                history: false,
                limit: 10_000,
                which: aicr::proto::list_violations_request::Which::Peers as i32,
            })
            .await
            .map(|r| r.into_inner().events.len())
            .unwrap_or(0);
        if open_deviations >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "open deviations: {open_deviations} of {expected}, listed {:.1} s after the last full snapshot was acknowledged",
        (started.elapsed() - connect_time).as_secs_f64()
    );

    // Change-to-alert latency: from an agent sending an update to the
    // drift event arriving on a CLI watch stream; violations (os-release)
    // and deviations (one sysctl) interleaved.
    let mut watch = cli
        .watch_drift(WatchDriftRequest { since_id: 0 })
        .await
        .unwrap()
        .into_inner();
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(ev)) = watch.message().await {
            let _ = ev_tx.send((ev, Instant::now()));
        }
    });
    let quarter = (changes / 4).max(1);
    let step = (agents / (2 * quarter)).max(1);
    // Distinct nodes, none of them deviant already.
    let targets: Vec<usize> = (0..2 * quarter)
        .map(|k| (k * step) % agents)
        .filter(|i| !deviant(*i))
        .collect();
    let (violating, deviating) = targets.split_at(targets.len() / 2);
    let mut sent: HashMap<(String, i32, i32), Instant> = HashMap::new();
    let gap = Duration::from_secs_f64(1.0 / rate);
    let phase_start = Instant::now();
    let mut n = 0u32;
    for (open, kind) in [(true, Kind::Opened), (false, Kind::Resolved)] {
        for (&v, &d) in violating.iter().zip(deviating) {
            for (i, source, cmd) in [
                (
                    v,
                    Source::Constraint,
                    Cmd::SetVersion(if open { "22.04" } else { "24.04" }),
                ),
                (
                    d,
                    Source::Peers,
                    Cmd::SetFlipped(if open { "5" } else { FLIPPED_VALUE }),
                ),
            ] {
                tokio::time::sleep_until((phase_start + gap * n).into()).await;
                n += 1;
                sent.insert((node_name(i), kind as i32, source as i32), Instant::now());
                let _ = controls[i].send(cmd).await;
            }
        }
    }
    let mut by_source: HashMap<i32, Vec<Duration>> = HashMap::new();
    let mut got = 0;
    let total = sent.len();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while got < total {
        match tokio::time::timeout_at(deadline, ev_rx.recv()).await {
            Ok(Some((ev, at))) => {
                if let Some(t) = sent.remove(&(ev.node_name.clone(), ev.kind, ev.source)) {
                    by_source
                        .entry(ev.source)
                        .or_default()
                        .push(at.duration_since(t));
                    got += 1;
                }
            }
            _ => break,
        }
    }
    for (source, name) in [
        (Source::Constraint, "violation"),
        (Source::Peers, "deviation"),
    ] {
        let mut l = by_source.remove(&(source as i32)).unwrap_or_default();
        l.sort();
        println!(
            "change-to-alert latency, {name} ({} changes at {rate}/s in all, fsync'ed before delivery): p50 {}, p99 {}, max {}",
            l.len(),
            ms(percentile(&l, 0.5)),
            ms(percentile(&l, 0.99)),
            ms(l.last().copied().unwrap_or_default())
        );
    }
    if !sent.is_empty() {
        println!("{} changes raised no event within 60 s", sent.len());
    }

    // A recipe change, judged across every node: one more constraint.
    let recipe = recipe_doc(&[("GPU.smi.cuda-version", ">= 12.0")]);
    let t = Instant::now();
    let set = cli
        .set_recipe(SetRecipeRequest {
            recipe_json: serde_json::to_vec(&recipe).unwrap(),
        })
        .await;
    println!(
        "recipe change re-evaluated across {agents} nodes: {} ({})",
        ms(t.elapsed()),
        match set {
            Ok(r) => format!("{} constraints", r.into_inner().constraints),
            Err(e) => format!("failed: {e}"),
        }
    );
    let (rss, peak) = agg.memory();
    println!("aggregator memory after the change run: RSS {rss:.0} MiB (peak {peak:.0} MiB)");

    // Crash and restart on the same state directory; every agent notices,
    // reconnects with jitter and resends its full snapshot.
    synced.store(0, Ordering::SeqCst);
    while progress_rx.try_recv().is_ok() {}
    agg.kill();
    let restarted = Instant::now();
    let sim_before = cpu_seconds("self");
    agg.start();
    let all = wait_for(
        &mut progress_rx,
        &synced,
        |p| matches!(p, Progress::Synced),
        agents,
        Duration::from_secs(600),
    )
    .await;
    let resync = restarted.elapsed();
    let (rss, peak) = agg.memory();
    let resync_cpu = (0.0, agg.cpu());
    println!(
        "full resync after SIGKILL + restart: {} of {agents} agents in {:.1} s{}",
        synced.load(Ordering::SeqCst),
        resync.as_secs_f64(),
        if all { "" } else { " (incomplete)" }
    );
    cpu_split(
        "resync",
        resync_cpu,
        (sim_before, cpu_seconds("self")),
        resync,
    );
    println!("aggregator memory after resync: RSS {rss:.0} MiB (peak {peak:.0} MiB)");
    // What stays: once intake has been quiet long enough for the trim
    // after the burst (`memory`) to have run.
    tokio::time::sleep(aicr_aggregator::memory::QUIET * 3).await;
    let (rss, _) = agg.memory();
    println!("aggregator memory settled after resync: RSS {rss:.0} MiB");
    agg.kill();
}
