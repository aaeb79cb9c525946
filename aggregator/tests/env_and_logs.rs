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
