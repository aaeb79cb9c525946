//! The real `aicr-aggregator` binary's environment and log records: `AICR_LOG_JSON`
//! read as Go's `strconv.ParseBool` reads it (empty means unset, a bad value
//! names the variable), JSON records in the shape all three binaries share
//! (`time`, `level`, `msg`, then fields), and `AICR_LOG_LEVEL`.

use std::process::{Command, Output};

/// Arguments that make the binary fail fast on a flag problem it logs.
const FAILING: &[&str] = &["--no-kube", "--cli-token-file", "/nonexistent-token-file"];
/// What that logged error says.
const ERROR_TEXT: &str = "/nonexistent-token-file";

fn run(env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_aicr-aggregator"));
    for var in [
        "AICR_LOG_JSON",
        "AICR_LOG_LEVEL",
        "LOG_LEVEL",
        "NO_COLOR",
        "KUBECONFIG",
    ] {
        c.env_remove(var);
    }
    c.envs(env.iter().copied()).args(FAILING).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn log_json_variable_reads_go_booleans() {
    for v in ["1", "t", "T", "TRUE", "true", "True"] {
        let out = run(&[("AICR_LOG_JSON", v)]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "AICR_LOG_JSON={v}: {err}");
        let line = err.lines().last().unwrap();
        let rec: serde_json::Value = serde_json::from_str(line).unwrap();
        let keys: Vec<&str> = rec
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert!(line.starts_with("{\"time\":\""), "{line}");
        for k in ["time", "level", "msg"] {
            assert!(keys.contains(&k), "{k} in {line}");
        }
        for gone in ["timestamp", "message", "fields", "target"] {
            assert!(!keys.contains(&gone), "no {gone} in {line}");
        }
        assert_eq!(rec["level"], "ERROR");
        assert!(rec["msg"].as_str().unwrap().contains(ERROR_TEXT), "{line}");
        let time = rec["time"].as_str().unwrap();
        assert!(
            time.len() == 24 && time.ends_with('Z') && time.as_bytes()[19] == b'.',
            "RFC 3339, milliseconds, UTC: {time}"
        );
    }
    for v in ["0", "f", "F", "FALSE", "false", "False", ""] {
        let out = run(&[("AICR_LOG_JSON", v)]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "AICR_LOG_JSON={v:?}: {err}");
        assert!(!err.starts_with('{') && err.contains(ERROR_TEXT), "{err}");
        assert!(!err.contains('\x1b'), "no escapes in a pipe: {err:?}");
    }
}

#[test]
fn a_bad_log_json_value_names_the_variable() {
    let out = run(&[("AICR_LOG_JSON", "yes")]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("invalid value 'yes' for AICR_LOG_JSON:"),
        "{err}"
    );
    assert!(!err.contains("'--log-json'"), "{err}");
}

#[test]
fn aicr_log_level_sets_the_level() {
    let out = run(&[("AICR_LOG_LEVEL", "off"), ("LOG_LEVEL", "info")]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr(&out), "");
    let out = run(&[("LOG_LEVEL", "off")]);
    assert_eq!(stderr(&out), "");
}
