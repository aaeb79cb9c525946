//! `scripts/demo.sh` end to end with the real binaries, bounded in time:
//! the node is listed, the drift opens and resolves, and nothing is left
//! running or on disk afterwards.
//!
//! The script runs the `aicr`, `aicr-agent` and `aicr-aggregator` binaries
//! from this build's target directory; `cargo test --workspace` builds them
//! all (testing this package alone, build them first:
//! `cargo build -p aicr-cli -p aicr-agent -p aicr-aggregator`).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                found.push(cmd);
            }
        }
    }
    found
}

#[test]
fn the_demo_shows_drift_opening_and_resolving_then_cleans_up() {
    let agent = assert_cmd::cargo::cargo_bin("aicr-agent");
    let bin_dir = agent.parent().unwrap();
    for b in ["aicr", "aicr-agent", "aicr-aggregator"] {
        assert!(
            bin_dir.join(b).exists(),
            "{b} is not built in {}: run `cargo build -p aicr-cli -p aicr-agent -p aicr-aggregator` (cargo test --workspace does)",
            bin_dir.display()
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/demo.sh");
    let out_path = tmp.path().join("demo.out");
    let mut child = Command::new("bash")
        .arg(script)
        .env("AICR_BIN_DIR", bin_dir)
        .env("TMPDIR", tmp.path())
        .env_remove("AICR_AGGREGATOR")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > LIMIT {
            // SIGTERM lets the script's trap stop what it started.
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
            panic!("the demo ran past {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = {
        use std::io::Read;
        let mut s = String::new();
        child.stderr.take().unwrap().read_to_string(&mut s).unwrap();
        s
    };
    let out = std::fs::read_to_string(&out_path).unwrap();
    assert!(status.success(), "demo failed ({status}):\n{out}\n{stderr}");
    let line_with = |words: &[&str]| out.lines().any(|l| words.iter().all(|w| l.contains(w)));
    assert!(
        line_with(&["demo-node", "connected"]),
        "node not listed:\n{out}"
    );
    assert!(
        line_with(&["OPENED", "demo-node", "OS.release.VERSION_ID", "22.04"]),
        "drift did not open:\n{out}"
    );
    assert!(
        line_with(&[
            "RESOLVED",
            "demo-node",
            "OS.release.VERSION_ID",
            "now \"24.04\""
        ]),
        "drift did not resolve:\n{out}"
    );
    assert!(
        stderr.contains("no open drift"),
        "the drift must be gone at the end:\n{stderr}"
    );

    std::fs::remove_file(&out_path).unwrap();
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().flatten().collect();
    assert!(left.is_empty(), "the demo left files behind: {left:?}");
    let needle = tmp.path().to_string_lossy().to_string();
    let running = processes_mentioning(&needle);
    assert!(
        running.is_empty(),
        "the demo left processes running: {running:?}"
    );
}
