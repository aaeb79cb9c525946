//! Scale benchmark: many simulated agents against one real `aicr-aggregator`
//! process on loopback. Prints the numbers the design holds the aggregator
//! to: agents connected, change-to-alert latency under that load, the
//! aggregator's resident memory, and the time for every agent to resync
//! after the aggregator is killed and restarted on the same `--state-dir`.
//!
//! The aggregator runs as its own process so its memory is measured alone;
//! the agents share this process (one tokio task each). By default every
//! agent has its own TCP connection, as in a cluster;
//! `AICR_BENCH_AGENTS_PER_CONN` multiplexes several agents' streams over one
//! HTTP/2 connection where file descriptors or ports are scarce.
//!
//! Settings (environment): `AICR_BENCH_AGENTS` (10000),
//! `AICR_BENCH_AGENTS_PER_CONN` (1), `AICR_BENCH_CHANGES` (1000, half
//! opening and half resolving a violation), `AICR_BENCH_CHANGE_RATE`
//! (changes per second, 100), `AICR_BENCH_HEARTBEAT` (seconds, 10),
//! `AICR_BENCH_PART_BYTES` (the agents' part size, as the aggregator asks;
//! 0 sends every message whole).
//!
//! `cargo bench -p aicr-aggregator --bench scale`

#[path = "../tests/common/sim_agent.rs"]
mod sim_agent;

use std::collections::HashMap;
use std::net::SocketAddr;
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
use aicr::proto::drift_event::Kind;
use aicr::proto::{AgentMessage, FullSnapshot, Heartbeat, SubtypeUpdate, WatchDriftRequest};
use sim_agent::{hello, message, node_readings, state};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

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

struct Aggregator {
    grpc: SocketAddr,
    http: SocketAddr,
    recipe: PathBuf,
    state: PathBuf,
    child: Option<Child>,
}

impl Aggregator {
    fn new(dir: &Path) -> Aggregator {
        let recipe = dir.join("recipe.json");
        let doc = serde_json::json!({
            "kind": "RecipeResult",
            "apiVersion": "aicr.nvidia.com/v1alpha1",
            "constraints": [
                {"name": "OS.release.VERSION_ID", "value": "== 24.04", "severity": "critical"},
                {"name": "OS.release.ID", "value": "ubuntu"},
                {"name": "GPU.smi.driver", "value": ">= 570"},
                {"name": "GPU.smi.gpu-count", "value": "== 8"},
                {"name": "OS.kmod.nvidia_peermem", "value": "true"},
                {"name": "SystemD.containerd.ActiveState", "value": "active"},
            ],
            "componentRefs": [],
            "deploymentOrder": [],
        });
        std::fs::write(&recipe, serde_json::to_vec(&doc).unwrap()).unwrap();
        Aggregator {
            grpc: free_addr(),
            http: free_addr(),
            recipe,
            state: dir.join("state"),
            child: None,
        }
    }

    fn start(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_aicr-aggregator"))
            .args(["--insecure", "--trust-node-names", "--no-kube"])
            .arg("--listen")
            .arg(self.grpc.to_string())
            .arg("--http-listen")
            .arg(self.http.to_string())
            .arg("--recipe")
            .arg(&self.recipe)
            .arg("--state-dir")
            .arg(&self.state)
            .args(["--stale-after", "300s", "--kube-events=false"])
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

    async fn wait_ready(&self) {
        let url = format!("http://{}/readyz", self.http);
        for _ in 0..400 {
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
}

impl Drop for Aggregator {
    fn drop(&mut self) {
        self.kill();
    }
}

enum Cmd {
    SetVersion(&'static str),
}

/// What agents tell the bench.
struct Synced;

fn release(v: &str) -> Subtype {
    Subtype::new("release")
        .with("ID", "ubuntu")
        .with("VERSION_ID", v)
        .with("PRETTY_NAME", format!("Ubuntu {v} LTS"))
}

/// A GPU node's readings at the size a real agent reports them: most of
/// each subtype is the same across a pool, a few readings are the node's
/// own (host name, boot id, GPU serials, unit PIDs), as on real hosts.
fn fleet_readings(i: usize, version: &str) -> Vec<(String, Subtype)> {
    let mut out: Vec<(String, Subtype)> = node_readings(version)
        .into_iter()
        .filter(|(_, s)| {
            !matches!(
                s.subtype.as_str(),
                "release" | "sysctl" | "kmod" | "smi" | "containerd"
            )
        })
        .collect();
    let mut sysctl = Subtype::new("sysctl");
    for n in 0..600 {
        sysctl.data.insert(
            format!("/proc/sys/kernel/setting_{n:04}"),
            format!("{}", n * 7).into(),
        );
    }
    for (k, v) in [
        ("kernel/hostname", format!("node-{i:05}")),
        (
            "kernel/random/boot_id",
            format!("{i:08x}-aaaa-bbbb-cccc-{i:012x}"),
        ),
        (
            "kernel/random/uuid",
            format!("{:08x}-1111-2222-3333-{i:012x}", i * 31),
        ),
        ("kernel/random/entropy_avail", format!("{}", 256 + i % 7)),
    ] {
        sysctl.data.insert(format!("/proc/sys/{k}"), v.into());
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
        smi.data
            .insert(format!("gpu.{g}.serial"), format!("{i:07}{g}").into());
        smi.data.insert(
            format!("gpu.{g}.uuid"),
            format!("GPU-{i:08x}-{g:04x}").into(),
        );
        smi.data.insert(
            format!("gpu.{g}.temperature"),
            format!("{}", 30 + (i + g) % 20).into(),
        );
    }
    out.push(("OS".into(), release(version)));
    out.push(("OS".into(), sysctl));
    out.push(("OS".into(), kmod));
    out.push(("GPU".into(), smi));
    for unit in ["containerd", "kubelet", "nvidia-persistenced"] {
        let mut st = Subtype::new(unit)
            .with("ActiveState", "active")
            .with("SubState", "running")
            .with("MainPID", format!("{}", 1000 + i % 5000))
            .with(
                "ExecMainStartTimestamp",
                format!("Mon 2026-11-23 10:{:02}:00 UTC", i % 60),
            );
        for p in 0..36 {
            st.data
                .insert(format!("Property{p:02}"), format!("setting-{p}").into());
        }
        out.push(("SystemD".into(), st));
    }
    out
}

fn full(i: usize, seq: u64, version: &str) -> AgentMessage {
    message(Body::Full(FullSnapshot {
        seq,
        subtypes: fleet_readings(i, version)
            .iter()
            .map(|(k, s)| state(k, s))
            .collect(),
    }))
}

/// One agent for the life of the bench: connect, full snapshot, heartbeats,
/// updates on command; on any break, back off with jitter, reconnect and
/// resend everything, as the real agent does.
async fn agent(
    i: usize,
    channel: Channel,
    heartbeat: Duration,
    part_bytes: u32,
    mut ctl: mpsc::Receiver<Cmd>,
    synced: mpsc::UnboundedSender<Synced>,
) {
    let node = format!("node-{i:05}");
    let mut version: &'static str = "24.04";
    let mut seq = 0u64;
    let mut backoff = Duration::from_millis(100);
    loop {
        // Room for Hello and every part of the full snapshot: they are
        // queued before the session starts reading.
        let (tx, rx) = mpsc::channel(64);
        seq += 1;
        let full_seq = seq;
        let _ = tx.send(message(Body::Hello(hello(&node, "")))).await;
        send_parts(&tx, full(i, full_seq, version), part_bytes).await;
        let mut client = AgentServiceClient::new(channel.clone());
        let mut replies = match client.session(ReceiverStream::new(rx)).await {
            Ok(r) => r.into_inner(),
            Err(_) => {
                tokio::time::sleep(jitter(i, backoff)).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        let first = tokio::time::Instant::now() + jitter(i, heartbeat);
        let mut tick = tokio::time::interval_at(first, heartbeat);
        let mut awaiting_full = Some(full_seq);
        loop {
            tokio::select! {
                m = replies.message() => match m {
                    Ok(Some(m)) => match m.body {
                        Some(Reply::Ack(a)) if Some(a.seq) == awaiting_full => {
                            awaiting_full = None;
                            backoff = Duration::from_millis(100);
                            let _ = synced.send(Synced);
                        }
                        Some(Reply::Resync(_)) => {
                            seq += 1;
                            send_parts(&tx, full(i, seq, version), part_bytes).await;
                        }
                        _ => {}
                    },
                    _ => break,
                },
                _ = tick.tick() => {
                    let _ = tx.send(message(Body::Heartbeat(Heartbeat { seq, unix_millis: 0 }))).await;
                }
                cmd = ctl.recv() => match cmd {
                    Some(Cmd::SetVersion(v)) => {
                        version = v;
                        seq += 1;
                        let _ = tx.send(message(Body::Update(SubtypeUpdate {
                            seq,
                            changed: vec![state("OS", &release(v))],
                            removed: Vec::new(),
                        }))).await;
                    }
                    None => return,
                },
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

async fn wait_synced(
    rx: &mut mpsc::UnboundedReceiver<Synced>,
    count: &AtomicUsize,
    target: usize,
    limit: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while count.load(Ordering::SeqCst) < target {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(Synced)) => {
                count.fetch_add(1, Ordering::SeqCst);
            }
            _ => return false,
        }
    }
    true
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench());
    // Agent tasks are still reconnecting; leave without waiting for them.
    runtime.shutdown_background();
}

async fn bench() {
    let agents: usize = env("AICR_BENCH_AGENTS", 10_000);
    let per_conn: usize = env("AICR_BENCH_AGENTS_PER_CONN", 1).max(1);
    let changes: usize = env("AICR_BENCH_CHANGES", 1000);
    let rate: f64 = env("AICR_BENCH_CHANGE_RATE", 100.0);
    let heartbeat = Duration::from_secs(env("AICR_BENCH_HEARTBEAT", 10));
    let part_bytes: u32 = env("AICR_BENCH_PART_BYTES", aicr::parts::PART_BYTES);
    let dir = tempfile::tempdir().unwrap();
    let mut agg = Aggregator::new(dir.path());
    agg.start();
    agg.wait_ready().await;
    let url = format!("http://{}", agg.grpc);
    println!(
        "scale: {agents} agents, {} TCP connections ({per_conn} agent(s) per connection), heartbeat every {}s, {} constraints, messages over {part_bytes} bytes in parts",
        agents.div_ceil(per_conn),
        heartbeat.as_secs(),
        6
    );

    let sample = fleet_readings(0, "24.04");
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

    // Connect in waves so the accept queue is not the thing measured.
    let (synced_tx, mut synced_rx) = mpsc::unbounded_channel();
    let synced = Arc::new(AtomicUsize::new(0));
    let mut controls = Vec::with_capacity(agents);
    let started = Instant::now();
    let mut channel = None;
    for i in 0..agents {
        if i % per_conn == 0 {
            channel = Some(
                Endpoint::from_shared(url.clone())
                    .unwrap()
                    .connect_timeout(Duration::from_secs(10))
                    .connect_lazy(),
            );
        }
        let (tx, rx) = mpsc::channel(4);
        controls.push(tx);
        tokio::spawn(agent(
            i,
            channel.clone().unwrap(),
            heartbeat,
            part_bytes,
            rx,
            synced_tx.clone(),
        ));
        let wave_done = (i + 1) % 500 == 0 || i + 1 == agents;
        if wave_done && !wait_synced(&mut synced_rx, &synced, i + 1, Duration::from_secs(120)).await
        {
            println!(
                "only {} of {} agents synced",
                synced.load(Ordering::SeqCst),
                i + 1
            );
            return;
        }
    }
    let connect_time = started.elapsed();
    let (rss, peak) = agg.memory();
    println!(
        "connected + full snapshot applied: {agents} agents in {:.1} s",
        connect_time.as_secs_f64()
    );
    println!("aggregator memory with {agents} agents: RSS {rss:.0} MiB (peak {peak:.0} MiB)");

    // Change-to-alert latency: time from an agent sending a violating (or
    // restoring) update to the drift event arriving on a CLI watch stream.
    let mut cli = ClusterServiceClient::new(
        Endpoint::from_shared(url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
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
    let half = changes / 2;
    let step = agents / half.max(1);
    let targets: Vec<usize> = (0..half).map(|k| (k * step.max(1)) % agents).collect();
    let mut sent: HashMap<(String, i32), Instant> = HashMap::new();
    let gap = Duration::from_secs_f64(1.0 / rate);
    let phase_start = Instant::now();
    for (k, phase) in [("22.04", Kind::Opened), ("24.04", Kind::Resolved)]
        .into_iter()
        .enumerate()
    {
        for (j, &i) in targets.iter().enumerate() {
            let due = phase_start + gap * (k * half + j) as u32;
            tokio::time::sleep_until(due.into()).await;
            sent.insert((format!("node-{i:05}"), phase.1 as i32), Instant::now());
            let _ = controls[i].send(Cmd::SetVersion(phase.0)).await;
        }
    }
    let mut latencies = Vec::with_capacity(sent.len());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while latencies.len() < sent.len() {
        match tokio::time::timeout_at(deadline, ev_rx.recv()).await {
            Ok(Some((ev, at))) => {
                if let Some(t) = sent.get(&(ev.node_name.clone(), ev.kind)) {
                    latencies.push(at.duration_since(*t));
                }
            }
            _ => break,
        }
    }
    latencies.sort();
    println!(
        "change-to-alert latency ({} of {} changes at {rate}/s, fsync'ed before delivery): p50 {}, p99 {}, max {}",
        latencies.len(),
        sent.len(),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default())
    );
    let (rss, peak) = agg.memory();
    println!("aggregator memory after the change run: RSS {rss:.0} MiB (peak {peak:.0} MiB)");

    // Crash and restart on the same state directory; every agent notices,
    // reconnects with jitter and resends its full snapshot.
    synced.store(0, Ordering::SeqCst);
    while synced_rx.try_recv().is_ok() {}
    agg.kill();
    let restarted = Instant::now();
    agg.start();
    let all = wait_synced(&mut synced_rx, &synced, agents, Duration::from_secs(300)).await;
    let resync = restarted.elapsed();
    let (rss, peak) = agg.memory();
    println!(
        "full resync after SIGKILL + restart: {} of {agents} agents in {:.1} s{}",
        synced.load(Ordering::SeqCst),
        resync.as_secs_f64(),
        if all { "" } else { " (incomplete)" }
    );
    println!("aggregator memory after resync: RSS {rss:.0} MiB (peak {peak:.0} MiB)");
    agg.kill();
}
