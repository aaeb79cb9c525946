//! Peer deviation end to end with the real binaries: an `aicr-aggregator`
//! with a state directory, three `aicr-agent`s on copies of the demo host
//! (one pool: no cluster, so no pool labels), and the `aicr` CLI.
//!
//! One node's sysctl changes → a deviation opens naming that node and the
//! majority value, and resolves when restored; `aicr diff` of two nodes
//! exits 1 naming the key; a baseline is pinned, every node changes → three
//! deviations; the aggregator is killed and restarted on the same state →
//! the baseline and the three open deviations are still there, and nothing
//! resolved or re-opened on the way.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use aicr_test_support::Proc;
use serde_json::Value;

const NODES: [&str; 3] = ["gpu-a", "gpu-b", "gpu-c"];
const SWAPPINESS: &str = "OS.sysctl./proc/sys/vm/swappiness";
const WAIT: Duration = Duration::from_secs(30);

fn bin(name: &str) -> PathBuf {
    let agent = assert_cmd::cargo::cargo_bin("aicr-agent");
    let path = agent.parent().unwrap().join(name);
    assert!(
        path.exists(),
        "{name} is not built in {}: run `cargo build -p aicr-cli -p aicr-agent -p aicr-aggregator` (cargo test --workspace does)",
        path.parent().unwrap().display()
    );
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

fn set_swappiness(root: &Path, v: &str) {
    let f = root.join("proc/sys/vm/swappiness");
    let tmp = f.with_extension("new");
    std::fs::write(&tmp, format!("{v}\n")).unwrap();
    std::fs::rename(tmp, f).unwrap();
}

struct System {
    work: tempfile::TempDir,
    url: String,
    port: u16,
    /// Killed when the test ends, however it ends.
    procs: Vec<Proc>,
}

impl System {
    fn start_aggregator(&mut self) {
        let proc = Proc::spawn(
            "aggregator",
            Command::new(bin("aicr-aggregator"))
                .args(["--listen", &format!("127.0.0.1:{}", self.port)])
                .args([
                    "--http-listen",
                    "127.0.0.1:0",
                    "--insecure",
                    "--trust-node-names",
                ])
                .args(["--no-kube", "--stale-after", "60s"])
                .arg("--state-dir")
                .arg(self.work.path().join("state"))
                .env("LOG_LEVEL", "info"),
            self.work.path(),
        );
        self.procs.push(proc);
    }

    fn start_agent(&mut self, node: &str) {
        let proc = Proc::spawn(
            node,
            Command::new(bin("aicr-agent"))
                .args(["--aggregator", &self.url, "--insecure", "--interval", "1s"])
                .args(["--node-name", node])
                .arg("--root")
                .arg(self.root(node)),
            self.work.path(),
        );
        self.procs.push(proc);
    }

    fn root(&self, node: &str) -> PathBuf {
        self.work.path().join(node)
    }

    fn aicr(&self, args: &[&str]) -> Output {
        Command::new(bin("aicr"))
            .args(args)
            .env("AICR_AGGREGATOR", &self.url)
            .env("NO_COLOR", "1")
            .env("HOME", self.work.path())
            .env_remove("AICR_TOKEN")
            .output()
            .unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.aicr(args);
        assert!(
            out.status.success(),
            "aicr {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    /// The JSON `aicr` printed, or `None` while it fails (the aggregator
    /// is still starting).
    fn try_json(&self, args: &[&str]) -> Option<Value> {
        let out = self.aicr(args);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }

    /// Poll until `ok` holds of `aicr drift --peers -t json`.
    fn wait_peers(&self, what: &str, ok: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        self.wait(what, || {
            let v = self.try_json(&["drift", "--peers", "-t", "json"])?;
            let groups = v.as_array().cloned().unwrap_or_default();
            ok(&groups).then_some(groups)
        })
    }

    fn wait<T>(&self, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            if let Some(t) = f() {
                return t;
            }
            if start.elapsed() > WAIT {
                let nodes = self.aicr(&["nodes", "-t", "json"]);
                panic!(
                    "timed out waiting for {what} (the logs follow)\naicr nodes: {}{}",
                    String::from_utf8_lossy(&nodes.stdout),
                    String::from_utf8_lossy(&nodes.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// All three nodes connected and reporting.
    fn wait_nodes(&self) {
        self.wait("three connected nodes", || {
            let v = self.try_json(&["nodes", "-t", "json"])?;
            let nodes = v.as_array()?;
            (nodes.len() == 3
                && nodes.iter().all(|n| {
                    n["status"] == "connected" && n["pool"] == "default" && n["lastSeq"] != 0
                }))
            .then_some(())
        });
    }
}

fn group<'a>(groups: &'a [Value], reading: &str) -> Option<&'a Value> {
    groups.iter().find(|g| g["reading"] == reading)
}

fn nodes_of(g: &Value) -> Vec<String> {
    let mut n: Vec<String> = g["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node"].as_str().unwrap().to_string())
        .collect();
    n.sort();
    n
}

#[test]
fn a_node_unlike_its_pool_deviates_and_baselines_survive_a_restart() {
    let port = free_port();
    let mut sys = System {
        work: tempfile::tempdir().unwrap(),
        url: format!("http://127.0.0.1:{port}"),
        port,
        procs: Vec::new(),
    };
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/demo/host-root");
    for n in NODES {
        copy_tree(&fixture, &sys.root(n));
    }
    sys.start_aggregator();
    for n in NODES {
        sys.start_agent(n);
    }
    sys.wait_nodes();
    let v = sys.json(&["drift", "--peers", "-t", "json"]);
    assert_eq!(v, Value::Array(vec![]), "identical nodes do not deviate");

    // One node changes: it alone deviates, against the majority value.
    set_swappiness(&sys.root("gpu-b"), "10");
    let groups = sys.wait_peers("gpu-b to deviate", |g| group(g, SWAPPINESS).is_some());
    let g = group(&groups, SWAPPINESS).unwrap();
    assert_eq!(nodes_of(g), ["gpu-b"]);
    assert_eq!(g["expected"], "60");
    assert_eq!(g["pool"], "default");
    assert_eq!(g["poolSize"], 3);
    assert_eq!(g["nodes"][0]["actual"], "10");
    let text = sys.aicr(&["drift", "--peers"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&format!(
            "{SWAPPINESS}: 1 of 3 nodes in pool default differ from \"60\" (the majority, 2 nodes): gpu-b \"10\""
        )),
        "{text}"
    );
    // Constraint drift stays apart from peer drift.
    assert_eq!(sys.json(&["drift", "-t", "json"]), Value::Array(vec![]));

    // aicr diff of the two nodes' live snapshots names the key, exit 1.
    let out = sys.aicr(&["diff", "node/gpu-a", "node/gpu-b", "--ignore", "*hostname*"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let diff = String::from_utf8_lossy(&out.stdout);
    assert!(diff.contains("/proc/sys/vm/swappiness: 60 -> 10"), "{diff}");

    set_swappiness(&sys.root("gpu-b"), "60");
    sys.wait_peers("the deviation to resolve", |g| g.is_empty());

    // Pin the pool; then every node changes at once: no majority sees it,
    // the baseline does.
    let out = sys.aicr(&["baseline", "set", "--pool", "default"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("pool default pinned to") && said.contains("majority of 3 nodes"),
        "{said}"
    );
    for n in NODES {
        set_swappiness(&sys.root(n), "10");
    }
    let groups = sys.wait_peers("three deviations from the baseline", |g| {
        group(g, SWAPPINESS).is_some_and(|g| nodes_of(g).len() == 3)
    });
    let g = group(&groups, SWAPPINESS).unwrap();
    assert_eq!(g["baseline"], true);
    assert_eq!(g["expected"], "60");
    let before: Vec<u64> = g["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_u64().unwrap())
        .collect();

    // Kill the aggregator outright and start it on the same state.
    sys.procs.retain(|p| p.name() != "aggregator");
    sys.start_aggregator();
    sys.wait_nodes();
    // Give the reconnected agents time to resend and be judged.
    std::thread::sleep(Duration::from_secs(3));
    let shown = sys.json(&["baseline", "show", "--pool", "default", "-t", "json"]);
    assert_eq!(shown[0]["pool"], "default");
    assert_eq!(shown[0]["readings"][SWAPPINESS], "60");
    let groups = sys.json(&["drift", "--peers", "-t", "json"]);
    let g = group(groups.as_array().unwrap(), SWAPPINESS).expect("deviations still open");
    let mut after: Vec<u64> = g["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_u64().unwrap())
        .collect();
    after.sort();
    let mut before = before;
    before.sort();
    assert_eq!(after, before, "the same deviations, not re-opened ones");
    let history = sys.json(&["drift", "--peers", "--history", "-t", "json"]);
    let last = history.as_array().unwrap().last().unwrap();
    assert_eq!(
        last["event"], "OPENED",
        "nothing resolved across the restart: {history}"
    );

    // Clearing the baseline judges by majority again: all agree on 10.
    let out = sys.aicr(&["baseline", "clear", "--pool", "default"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    sys.wait_peers("the baseline deviations to resolve", |g| g.is_empty());
    let out = sys.aicr(&["baseline", "clear", "--pool", "default"]);
    assert_eq!(out.status.code(), Some(3), "no baseline left to clear");
}
