//! The real `aicr-agent` binary's environment and log records, checked as
//! every binary's are (`aicr_test_support::logs`).

use aicr_test_support::logs::FailingRun;

/// Arguments that make the binary fail fast on a problem it logs.
const FAILING: FailingRun = FailingRun {
    bin: "aicr-agent",
    args: &[
        "--aggregator",
        "http://10.1.2.3:50051",
        "--insecure",
        "--node-name",
        "n",
    ],
    error_text: "loopback",
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
