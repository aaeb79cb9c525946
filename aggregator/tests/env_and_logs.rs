//! The real `aicr-aggregator` binary's environment and log records, checked as
//! every binary's are (`aicr_test_support::logs`), and flags it refuses.

use aicr_test_support::logs::FailingRun;

/// Arguments that make the binary fail fast on a problem it logs.
const FAILING: FailingRun = FailingRun {
    bin: "aicr-aggregator",
    args: &["--no-kube", "--cli-token-file", "/nonexistent-token-file"],
    error_text: "/nonexistent-token-file",
};

#[test]
fn log_json_variable_reads_go_booleans() {
    FAILING.check_log_json_reads_go_booleans();
}

#[test]
fn a_bad_log_json_value_names_the_variable() {
    FAILING.check_bad_log_json_names_the_variable();
}

#[test]
fn aicr_log_level_sets_the_level() {
    FAILING.check_log_level();
}

/// The flags for what is kept on Nodes refuse, with one line naming the
/// flag, what the aggregator could not act on.
#[test]
fn node_status_flags_refuse_values_they_cannot_act_on() {
    for (args, code, says) in [
        (&["--max-tainted=ten"][..], 1, "--max-tainted"),
        (&["--max-tainted=150%"][..], 1, "--max-tainted"),
        (
            &["--taint-on-violation=severe"][..],
            1,
            "--taint-on-violation",
        ),
        (&["--reports=junit"][..], 1, "--reports"),
        (&["--reports=none,openreports"][..], 2, "--reports"),
    ] {
        let out = aicr_test_support::tools::hermetic("aicr-aggregator")
            .args(["--no-kube", "--insecure", "--listen", "127.0.0.1:0"])
            .args(["--http-listen", "127.0.0.1:0"])
            .args(args)
            .timeout(std::time::Duration::from_secs(10))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// Settings that would spin a loop, starve every agent or drop what must
/// be kept are refused at start (exit 2), each with one line naming the
/// flag; the aggregator never starts listening with them.
#[test]
fn settings_that_would_spin_starve_or_drop_are_refused() {
    for (args, says) in [
        (&["--agent-rate=-1"][..], "--agent-rate"),
        (&["--agent-rate=0"][..], "--agent-rate"),
        (&["--agent-rate=NaN"][..], "--agent-rate"),
        (&["--agent-burst=0.5"][..], "--agent-burst"),
        (&["--max-message-bytes=0"][..], "--max-message-bytes"),
        (&["--history-limit=0"][..], "--history-limit"),
        (&["--alertmanager-resend=0s"][..], "--alertmanager-resend"),
        (&["--version-poll=0"][..], "--version-poll"),
        (&["--alertmanager-url=ftp://x"][..], "--alertmanager-url"),
        (
            &["--alertmanager-url=alertmanager:9093"][..],
            "--alertmanager-url",
        ),
        (&["--pool-label="][..], "--pool-label"),
        (&["--pool-label=Bad Key"][..], "--pool-label"),
    ] {
        let out = aicr_test_support::tools::hermetic("aicr-aggregator")
            .args(["--no-kube", "--trust-node-names", "--insecure"])
            .args(["--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
            .args(args)
            .timeout(std::time::Duration::from_secs(10))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!err.contains("listening"), "{args:?} started: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
}

/// The aggregator's watches outlive a quiet cluster: each asks the API
/// server to end it before `--kube-timeout` (the client's read timeout)
/// would take the silence for a dead connection, and reopens it. Nothing
/// is logged, and a Node added after the quiet spell still arrives.
#[test]
fn quiet_watches_outlive_the_request_timeout() {
    use std::time::{Duration, Instant};

    let api = aicr_test_support::FakeApiServer::start_blocking();
    api.insert(aicr_test_support::fixtures::node("gpu-1").build());
    let http = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let aggregator = crate::common::Proc::spawn(
        "aggregator",
        aicr_test_support::tools::hermetic_std("aicr-aggregator")
            .args([
                "--insecure",
                "--trust-node-names",
                "--listen",
                "127.0.0.1:0",
            ])
            .args(["--http-listen", &http.to_string(), "--kube-timeout", "2s"])
            .arg("--kubeconfig")
            .arg(api.kubeconfig_path()),
        dir.path(),
    );
    let metrics = || {
        ureq::get(&format!("http://{http}/metrics"))
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_to_string().ok())
            .unwrap_or_default()
    };
    let wait_for = |line: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !metrics().lines().any(|l| l == line) {
            assert!(Instant::now() < deadline, "no {line:?} in /metrics");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for("aicr_node_objects 1");
    // Three read timeouts of silence.
    std::thread::sleep(Duration::from_secs(6));
    api.insert(aicr_test_support::fixtures::node("gpu-2").build());
    wait_for("aicr_node_objects 2");
    let text = aggregator.log_text();
    assert!(!text.contains("watch:"), "a watch failed:\n{text}");
}
