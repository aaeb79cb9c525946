//! Reading the pods that checks start: how a pod ended, how long its
//! container ran, and its log cut to what a report keeps; and the CUDA
//! image probe pods run.
//!
//! Shared by the checks and the validator Jobs, so it must name none of
//! them (nor any other part of `validate`): it reads pod documents and
//! text, never the cluster.

use serde_json::Value;

/// Log lines kept per check, and bytes per line.
pub(crate) const MAX_LOG_LINES: usize = 1000;
pub(crate) const MAX_LINE_BYTES: usize = 512;
/// The image the nvidia-smi probe runs.
pub(crate) const CUDA_IMAGE: &str = "nvcr.io/nvidia/cuda:13.0.0-base-ubuntu22.04";

/// What a finished (or stuck) pod says: exit code (−1 when none) and
/// message, from its first container.
pub(crate) fn pod_outcome(pod: &Value) -> (i64, String) {
    let Some(cs) = pod
        .pointer("/status/containerStatuses/0")
        .filter(|c| c.is_object())
    else {
        return (-1, "no container status available".into());
    };
    if let Some(t) = cs.pointer("/state/terminated") {
        let code = t["exitCode"].as_i64().unwrap_or(-1);
        let message = if t["reason"] == "OOMKilled" {
            "Container OOMKilled".to_string()
        } else {
            t["message"].as_str().unwrap_or("").trim_end().to_string()
        };
        return (code, message);
    }
    if let Some(w) = cs.pointer("/state/waiting") {
        return (
            -1,
            format!(
                "{}: {}",
                w["reason"].as_str().unwrap_or(""),
                w["message"].as_str().unwrap_or("")
            ),
        );
    }
    (-1, "container still running after wait completed".into())
}

/// finishedAt − startedAt of a terminated first container, in ms.
pub(crate) fn container_runtime_ms(pod: &Value) -> u64 {
    let t = |field: &str| {
        pod.pointer(&format!(
            "/status/containerStatuses/0/state/terminated/{field}"
        ))
        .and_then(Value::as_str)
        .and_then(|s| humantime::parse_rfc3339(s).ok())
    };
    match (t("startedAt"), t("finishedAt")) {
        (Some(a), Some(b)) => b
            .duration_since(a)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        _ => 0,
    }
}

/// The last [`MAX_LOG_LINES`] lines, each cut to [`MAX_LINE_BYTES`] bytes
/// at a character boundary with a note of what was dropped.
pub(crate) fn log_lines(log: &str) -> Vec<String> {
    let trimmed = log.trim_end_matches(['\n', '\r']);
    if trimmed.is_empty() {
        return Vec::new();
    }
    let lines: Vec<&str> = trimmed.split('\n').collect();
    let start = lines.len().saturating_sub(MAX_LOG_LINES);
    lines[start..]
        .iter()
        .map(|l| {
            if l.len() <= MAX_LINE_BYTES {
                return l.to_string();
            }
            let mut cut = MAX_LINE_BYTES;
            while !l.is_char_boundary(cut) {
                cut -= 1;
            }
            format!("{}... [truncated {} chars]", &l[..cut], l.len() - cut)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn pod_outcomes() {
        let term = |code: i64, reason: &str, msg: &str| json!({"status": {"containerStatuses": [{"state": {"terminated": {"exitCode": code, "reason": reason, "message": msg}}}]}});
        assert_eq!(pod_outcome(&term(1, "Error", "boom\n")), (1, "boom".into()));
        assert_eq!(
            pod_outcome(&term(137, "OOMKilled", "")),
            (137, "Container OOMKilled".into())
        );
        let waiting = json!({"status": {"containerStatuses": [{"state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"x\""}}}]}});
        assert_eq!(
            pod_outcome(&waiting).1,
            "ImagePullBackOff: Back-off pulling image \"x\""
        );
        assert_eq!(pod_outcome(&json!({})).1, "no container status available");
        let timed = json!({"status": {"containerStatuses": [{"state": {"terminated": {
            "exitCode": 0, "startedAt": "2026-11-28T01:12:29Z", "finishedAt": "2026-11-28T01:12:32Z"}}}]}});
        assert_eq!(container_runtime_ms(&timed), 3000);
        assert_eq!(container_runtime_ms(&waiting), 0);
    }

    #[test]
    fn logs_keep_the_tail_and_cut_long_lines_on_char_boundaries() {
        let many: String = (0..1500).map(|i| format!("line {i}\n")).collect();
        let lines = log_lines(&many);
        assert_eq!(lines.len(), 1000);
        assert_eq!(lines[0], "line 500");
        let long = format!("{}é{}", "a".repeat(511), "b".repeat(100));
        let cut = &log_lines(&long)[0];
        assert!(cut.starts_with(&"a".repeat(511)));
        assert!(cut.ends_with("... [truncated 102 chars]"), "{cut}");
        assert!(log_lines("\n\n").is_empty());
    }
}
