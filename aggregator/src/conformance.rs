//! What the cluster's own tooling is told about a node: the
//! `AICRConformant` Node condition, the per-node policy report (OpenReports
//! `ClusterReport`, or wgpolicyk8s `ClusterPolicyReport` on older
//! clusters) and the opt-in drift taint, all derived from one [`Standing`].
//!
//! Pure: it builds values and plans changes. It must not lock the hub or
//! talk to the API server; `node_status` does the writing, `hub` supplies
//! the standing.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use aicr::constraint::Outcome;
use k8s_openapi::api::core::v1::Taint;
use serde_json::{Value, json};

/// The condition type kept on every judged node.
pub const CONDITION: &str = "AICRConformant";
/// The key of the drift taint.
pub const TAINT_KEY: &str = "aicr.nvidia.com/drift";
/// Owner of every field this module's values are applied with.
pub const FIELD_MANAGER: &str = "aicr-aggregator";
/// The report source, as policy UIs show it.
const SOURCE: &str = "aicr";
/// Condition messages are for people reading `kubectl describe node`; past
/// this the rest is counted, not listed.
const MESSAGE_LIMIT: usize = 1024;

/// How one constraint of the active recipe came out on a node. An
/// outcome that could not be judged (`Outcome::Error`: a reading missing
/// or unparsable) counts as a violation, as it does for drift events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub constraint: String,
    pub expected: String,
    pub severity: String,
    pub outcome: Outcome,
}

impl Check {
    fn actual(&self) -> &str {
        self.outcome.actual().unwrap_or_default()
    }
}

/// An open peer deviation, as the report and condition name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deviating {
    pub reading: String,
    pub pool: String,
    pub expected: String,
    pub actual: String,
    /// Members agreeing with `expected`, of `pool_size`; 0 for a baseline.
    pub agreeing: u32,
    pub pool_size: u32,
    pub baseline: bool,
}

/// Everything the aggregator knows about one node's conformance now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Standing {
    /// The agent reported since this process started, so `checks` hold.
    pub reported: bool,
    pub stale: bool,
    /// Every node-level constraint of the active recipe, by name.
    pub checks: Vec<Check>,
    pub deviations: Vec<Deviating>,
}

impl Standing {
    fn failing(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.outcome.passed())
    }
}

/// The condition's content; the writer adds the times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub status: &'static str,
    pub reason: &'static str,
    pub message: String,
}

impl Condition {
    /// A condition as a Node holds it. A status or reason this module
    /// never writes reads as one nothing equals, so it gets rewritten.
    pub fn read(status: &str, reason: &str, message: &str) -> Condition {
        let known = |s: &str, of: &[&'static str]| of.iter().copied().find(|k| *k == s);
        Condition {
            status: known(status, &["True", "False", "Unknown"]).unwrap_or(""),
            reason: known(
                reason,
                &[
                    "Conformant",
                    "ConstraintViolated",
                    "PeerDeviation",
                    "AgentStale",
                ],
            )
            .unwrap_or(""),
            message: message.to_string(),
        }
    }
}

/// `items` joined by "; " within [`MESSAGE_LIMIT`] bytes, the rest counted.
fn listed(head: &str, items: &[String]) -> String {
    let mut out = head.to_string();
    for (i, item) in items.iter().enumerate() {
        let sep = if i == 0 { "" } else { "; " };
        let tail = format!(" and {} more", items.len() - i);
        if out.len() + sep.len() + item.len() + tail.len() > MESSAGE_LIMIT {
            out.push_str(&tail);
            break;
        }
        out.push_str(sep);
        out.push_str(item);
    }
    out
}

fn violation_text(c: &Check) -> String {
    match &c.outcome {
        Outcome::Error { error, .. } => format!("{} ({error})", c.constraint),
        _ => format!(
            "{} (expected {}, actual {})",
            c.constraint,
            c.expected,
            c.actual()
        ),
    }
}

fn deviation_text(d: &Deviating) -> String {
    let against = if d.baseline {
        "baseline".to_string()
    } else {
        format!("{} of {} nodes", d.agreeing, d.pool_size)
    };
    format!(
        "{} ({:?} where pool {} has {:?}, {against})",
        d.reading, d.actual, d.pool, d.expected
    )
}

/// The `AICRConformant` condition for a node: `Unknown` while its agent is
/// stale, `False` with the failing constraints (then deviations) named,
/// else `True`.
pub fn condition(s: &Standing) -> Condition {
    if s.stale {
        return Condition {
            status: "Unknown",
            reason: "AgentStale",
            message: "the aicr agent on this node stopped reporting; its last readings may no longer hold".into(),
        };
    }
    let failing: Vec<String> = s.failing().map(violation_text).collect();
    let deviating: Vec<String> = s.deviations.iter().map(deviation_text).collect();
    if !failing.is_empty() {
        let mut items = failing;
        items.extend(
            deviating
                .iter()
                .map(|d| format!("differs from peers on {d}")),
        );
        return Condition {
            status: "False",
            reason: "ConstraintViolated",
            message: listed("violates ", &items),
        };
    }
    if !deviating.is_empty() {
        return Condition {
            status: "False",
            reason: "PeerDeviation",
            message: listed("differs from its peers on ", &deviating),
        };
    }
    let message = match s.checks.len() {
        0 => "no constraint of the active recipe applies to this node; it agrees with its peers"
            .to_string(),
        n => format!("meets all {n} constraints of the active recipe and agrees with its peers"),
    };
    Condition {
        status: "True",
        reason: "Conformant",
        message,
    }
}

/// The report formats, by the CRDs that define them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReportKind {
    /// `openreports.io/v1alpha1` `ClusterReport`.
    OpenReports,
    /// `wgpolicyk8s.io/v1alpha2` `ClusterPolicyReport`, for clusters that
    /// still run the older CRDs.
    PolicyReports,
}

impl ReportKind {
    pub fn group(self) -> &'static str {
        match self {
            ReportKind::OpenReports => "openreports.io",
            ReportKind::PolicyReports => "wgpolicyk8s.io",
        }
    }

    pub fn version(self) -> &'static str {
        match self {
            ReportKind::OpenReports => "v1alpha1",
            ReportKind::PolicyReports => "v1alpha2",
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            ReportKind::OpenReports => "ClusterReport",
            ReportKind::PolicyReports => "ClusterPolicyReport",
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            ReportKind::OpenReports => "clusterreports",
            ReportKind::PolicyReports => "clusterpolicyreports",
        }
    }

    pub fn api_version(self) -> String {
        format!("{}/{}", self.group(), self.version())
    }
}

/// The report's name for a node: `aicr-<node>`, shortened with a digest
/// where that would pass the 253-character limit on names.
pub fn report_name(node: &str) -> String {
    let name = format!("aicr-{node}");
    if name.len() <= 253 {
        return name;
    }
    let mut head = name[..200].to_string();
    while head.ends_with(['.', '-']) {
        head.pop();
    }
    format!("{head}-{}", crate::name_digest(node))
}

/// Report severities are a fixed set; recipes say `error` or `warning`.
fn report_severity(severity: &str) -> &'static str {
    match severity.to_ascii_lowercase().as_str() {
        "critical" => "critical",
        "error" | "high" => "high",
        "low" => "low",
        "info" => "info",
        _ => "medium",
    }
}

/// The report's summary and results, without timestamps: two standings
/// with equal bodies need no write.
pub fn report_body(s: &Standing) -> Value {
    let mut counts = BTreeMap::from([
        ("pass", 0),
        ("fail", 0),
        ("warn", 0),
        ("error", 0),
        ("skip", 0),
    ]);
    let mut results = Vec::new();
    for c in &s.checks {
        let (result, message) = match &c.outcome {
            Outcome::Passed { actual } => (
                "pass",
                format!("{} is {actual} ({})", c.constraint, c.expected),
            ),
            Outcome::Failed { actual } => (
                "fail",
                format!("{}: expected {}, actual {actual}", c.constraint, c.expected),
            ),
            Outcome::Error { error, .. } => ("error", format!("{}: {error}", c.constraint)),
        };
        *counts.entry(result).or_default() += 1;
        results.push(json!({
            "source": SOURCE,
            "policy": "recipe",
            "rule": c.constraint,
            "category": "Constraint",
            "result": result,
            "severity": report_severity(&c.severity),
            "scored": true,
            "message": message,
            "properties": {"expected": c.expected, "actual": c.actual()},
        }));
    }
    for d in &s.deviations {
        *counts.entry("fail").or_default() += 1;
        let mut properties = json!({
            "expected": d.expected,
            "actual": d.actual,
            "pool": d.pool,
        });
        if d.baseline {
            properties["baseline"] = "true".into();
        } else {
            properties["agreeing"] = format!("{} of {}", d.agreeing, d.pool_size).into();
        }
        results.push(json!({
            "source": SOURCE,
            "policy": "peers",
            "rule": d.reading,
            "category": "PeerDeviation",
            "result": "fail",
            "severity": "medium",
            "scored": true,
            "message": format!("differs from its peers on {}", deviation_text(d)),
            "properties": properties,
        }));
    }
    json!({"summary": counts, "results": results})
}

/// Whether a stored report (its `summary` and `results`) says what `body`
/// ([`report_body`]) says, whenever it was stamped.
pub fn same_body(stored: &Value, body: &Value) -> bool {
    let mut results = stored["results"].clone();
    if let Some(rs) = results.as_array_mut() {
        for r in rs {
            if let Some(o) = r.as_object_mut() {
                o.remove("timestamp");
            }
        }
    }
    stored["summary"] == body["summary"] && results == body["results"]
}

/// A whole report for node `node` (uid `uid`), stamped `now`; the Node
/// owns it, so the cluster deletes it with the Node.
pub fn report(kind: ReportKind, node: &str, uid: &str, s: &Standing, now: SystemTime) -> Value {
    let seconds = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut body = report_body(s);
    if let Some(results) = body["results"].as_array_mut() {
        for r in results {
            r["timestamp"] = json!({"seconds": seconds, "nanos": 0});
        }
    }
    let node_ref = json!({"apiVersion": "v1", "kind": "Node", "name": node, "uid": uid});
    let mut r = json!({
        "apiVersion": kind.api_version(),
        "kind": kind.kind(),
        "metadata": {
            "name": report_name(node),
            "labels": {"app.kubernetes.io/managed-by": FIELD_MANAGER},
            "ownerReferences": [node_ref],
        },
        "scope": node_ref,
        "summary": body["summary"],
        "results": body["results"],
    });
    // The report-level source is OpenReports' addition; the older CRD
    // refuses it and has it on each result only.
    if kind == ReportKind::OpenReports {
        r["source"] = SOURCE.into();
    }
    r
}

/// Severity order for `--taint-on-violation`; an unknown name ranks as a
/// warning, the recipe default.
pub fn severity_rank(severity: &str) -> u8 {
    match severity.to_ascii_lowercase().as_str() {
        "info" => 0,
        "error" | "high" => 2,
        "critical" => 3,
        _ => 1,
    }
}

/// The severities `--taint-on-violation` accepts.
pub const TAINT_SEVERITIES: [&str; 3] = ["warning", "error", "critical"];

/// The constraint a node should be tainted for: the first by name whose
/// violation is at least `threshold`. Peer deviations never taint.
pub fn taint_for(s: &Standing, threshold: u8) -> Option<&str> {
    s.failing()
        .filter(|c| severity_rank(&c.severity) >= threshold)
        .map(|c| c.constraint.as_str())
        .min()
}

/// A constraint name as a taint value: label-value syntax, `_` for what a
/// label refuses (`OS.sysctl./proc/sys/vm/swappiness` →
/// `OS.sysctl._proc_sys_vm_swappiness`).
pub fn taint_value(constraint: &str) -> String {
    let v = aicr::kubernetes::label_value(constraint, '_');
    if v.is_empty() { "violation".into() } else { v }
}

/// `--max-tainted`: a count or a percentage of the cluster's nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxTainted {
    Nodes(usize),
    Percent(u8),
}

impl std::str::FromStr for MaxTainted {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is neither a node count nor a percentage such as 10%");
        match s.trim().strip_suffix('%') {
            Some(p) => match p.trim().parse::<u8>() {
                Ok(p) if p <= 100 => Ok(MaxTainted::Percent(p)),
                _ => Err(bad()),
            },
            None => s.trim().parse().map(MaxTainted::Nodes).map_err(|_| bad()),
        }
    }
}

impl MaxTainted {
    /// How many of `nodes` may carry the taint at once. A percentage
    /// rounds down: "never more than" holds even in small clusters.
    pub fn cap(self, nodes: usize) -> usize {
        match self {
            MaxTainted::Nodes(n) => n.min(nodes),
            MaxTainted::Percent(p) => nodes * usize::from(p) / 100,
        }
    }
}

/// A node that wants the taint: its value, and the order in which nodes
/// came to want it (earlier wins a place under the cap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub value: String,
    pub since: u64,
}

/// What to do to one node's taint: set it to a value, or remove it.
pub type TaintChange = (String, Option<String>);

/// Bring `tainted` (node → value now on it) towards `wanted` without ever
/// exceeding `cap` tainted nodes: removals first, then value updates for
/// nodes that stay, then new taints in the order nodes came to want them.
/// If `cap` shrank below what is tainted, the latest are untainted.
pub fn plan_taints(
    wanted: &BTreeMap<String, Wanted>,
    tainted: &BTreeMap<String, String>,
    cap: usize,
) -> Vec<TaintChange> {
    let mut changes = Vec::new();
    let mut kept: Vec<(&String, &Wanted)> = Vec::new();
    for (node, value) in tainted {
        match wanted.get(node) {
            None => changes.push((node.clone(), None)),
            Some(w) => {
                kept.push((node, w));
                if &w.value != value {
                    changes.push((node.clone(), Some(w.value.clone())));
                }
            }
        }
    }
    kept.sort_by_key(|(node, w)| (w.since, *node));
    for (node, _) in kept.iter().skip(cap) {
        changes.retain(|(n, _)| n != *node);
        changes.push(((*node).clone(), None));
    }
    let room = cap.saturating_sub(kept.len());
    let mut newcomers: Vec<(&String, &Wanted)> = wanted
        .iter()
        .filter(|(node, _)| !tainted.contains_key(*node))
        .collect();
    newcomers.sort_by_key(|(node, w)| (w.since, *node));
    changes.extend(
        newcomers
            .into_iter()
            .take(room)
            .map(|(node, w)| (node.clone(), Some(w.value.clone()))),
    );
    changes
}

/// `taints` (a Node's `spec.taints`) with the drift taint set to `value`
/// or removed, every other taint as it was.
pub fn retaint(taints: &[Taint], value: Option<&str>) -> Vec<Taint> {
    let mut out: Vec<Taint> = taints
        .iter()
        .filter(|t| t.key != TAINT_KEY)
        .cloned()
        .collect();
    if let Some(v) = value {
        out.push(Taint {
            key: TAINT_KEY.into(),
            value: Some(v.into()),
            effect: "NoSchedule".into(),
            time_added: None,
        });
    }
    out
}

/// The drift taint's value on a Node's `spec.taints`, if it has one.
pub fn drift_taint(taints: &[Taint]) -> Option<String> {
    taints
        .iter()
        .find(|t| t.key == TAINT_KEY)
        .map(|t| t.value.clone().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn names<V>(m: &BTreeMap<String, V>) -> BTreeSet<&str> {
        m.keys().map(String::as_str).collect()
    }

    fn check(name: &str, outcome: Outcome, severity: &str) -> Check {
        Check {
            constraint: name.into(),
            expected: ">= 570".into(),
            severity: severity.into(),
            outcome,
        }
    }

    fn pass() -> Outcome {
        Outcome::Passed {
            actual: "550".into(),
        }
    }

    fn fail() -> Outcome {
        Outcome::Failed {
            actual: "550".into(),
        }
    }

    fn error(why: &str) -> Outcome {
        Outcome::Error {
            actual: None,
            error: aicr::constraint::EvalError::NotFound(why.into()),
        }
    }

    fn deviating() -> Deviating {
        Deviating {
            reading: "OS.sysctl./proc/sys/vm/swappiness".into(),
            pool: "p5".into(),
            expected: "60".into(),
            actual: "10".into(),
            agreeing: 2,
            pool_size: 3,
            baseline: false,
        }
    }

    #[test]
    fn the_condition_follows_stale_then_violations_then_deviations() {
        let mut s = Standing {
            reported: true,
            checks: vec![check("GPU.smi.driver", pass(), "error")],
            ..Default::default()
        };
        let c = condition(&s);
        assert_eq!((c.status, c.reason), ("True", "Conformant"));
        assert!(c.message.contains("all 1 constraints"), "{}", c.message);

        s.deviations.push(deviating());
        let c = condition(&s);
        assert_eq!((c.status, c.reason), ("False", "PeerDeviation"));
        assert!(c.message.contains("swappiness"), "{}", c.message);
        assert!(c.message.contains("2 of 3 nodes"), "{}", c.message);

        s.checks.push(check("OS.release.VERSION_ID", fail(), ""));
        let c = condition(&s);
        assert_eq!((c.status, c.reason), ("False", "ConstraintViolated"));
        assert!(
            c.message
                .starts_with("violates OS.release.VERSION_ID (expected >= 570, actual 550)"),
            "{}",
            c.message
        );
        assert!(!c.message.contains("GPU.smi.driver"), "{}", c.message);

        s.stale = true;
        let c = condition(&s);
        assert_eq!((c.status, c.reason), ("Unknown", "AgentStale"));
    }

    #[test]
    fn long_condition_messages_count_what_does_not_fit() {
        let s = Standing {
            reported: true,
            checks: (0..200)
                .map(|i| check(&format!("OS.sysctl.key{i:03}"), fail(), ""))
                .collect(),
            ..Default::default()
        };
        let m = condition(&s).message;
        assert!(m.len() <= MESSAGE_LIMIT, "{}", m.len());
        assert!(m.contains("OS.sysctl.key000"));
        let more: usize = m
            .rsplit_once(" and ")
            .and_then(|(_, t)| t.strip_suffix(" more"))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(m.matches("OS.sysctl.key").count() + more, 200, "{m}");
    }

    #[test]
    fn reports_count_and_describe_every_result() {
        let s = Standing {
            reported: true,
            checks: vec![
                check("GPU.smi.driver", pass(), "error"),
                check("OS.release.VERSION_ID", fail(), "warning"),
                check("OS.kmod.nvidia", error("reading not found"), ""),
            ],
            deviations: vec![deviating()],
            ..Default::default()
        };
        let r = report(ReportKind::OpenReports, "gpu-1", "u-1", &s, UNIX_EPOCH);
        assert_eq!(r["apiVersion"], "openreports.io/v1alpha1");
        assert_eq!(r["kind"], "ClusterReport");
        assert_eq!(r["metadata"]["name"], "aicr-gpu-1");
        assert_eq!(r["metadata"]["ownerReferences"][0]["uid"], "u-1");
        assert_eq!(r["scope"]["kind"], "Node");
        assert_eq!(
            r["summary"],
            json!({"pass": 1, "fail": 2, "warn": 0, "error": 1, "skip": 0})
        );
        let results = r["results"].as_array().unwrap();
        assert_eq!(results.len(), 4);
        assert_eq!(results[0]["result"], "pass");
        assert_eq!(results[0]["severity"], "high");
        assert_eq!(results[1]["result"], "fail");
        assert_eq!(results[1]["properties"]["actual"], "550");
        assert_eq!(results[1]["severity"], "medium");
        assert_eq!(results[2]["result"], "error");
        assert_eq!(results[3]["category"], "PeerDeviation");
        assert_eq!(results[3]["properties"]["agreeing"], "2 of 3");
        assert_eq!(results[3]["timestamp"], json!({"seconds": 0, "nanos": 0}));
        let p = report(ReportKind::PolicyReports, "gpu-1", "u-1", &s, UNIX_EPOCH);
        assert_eq!(p["apiVersion"], "wgpolicyk8s.io/v1alpha2");
        assert_eq!(p["kind"], "ClusterPolicyReport");
        assert_eq!(p["results"], r["results"]);
        assert_eq!(r["source"], "aicr");
        assert!(p.get("source").is_none());
    }

    #[test]
    fn a_stored_report_or_condition_is_recognised_whatever_its_stamp() {
        let s = Standing {
            reported: true,
            checks: vec![check("OS.release.VERSION_ID", fail(), "error")],
            ..Default::default()
        };
        let stored = report(
            ReportKind::OpenReports,
            "gpu-1",
            "u-1",
            &s,
            SystemTime::now(),
        );
        assert!(same_body(&stored, &report_body(&s)));
        let mut mended = s.clone();
        mended.checks[0].outcome = pass();
        assert!(!same_body(&stored, &report_body(&mended)));

        let c = condition(&s);
        assert_eq!(
            Condition::read("False", "ConstraintViolated", &c.message),
            c
        );
        assert_ne!(Condition::read("False", "SomeoneElses", &c.message), c);
        assert_ne!(
            Condition::read("Maybe", "ConstraintViolated", &c.message),
            c
        );
    }

    #[test]
    fn report_names_stay_valid_for_the_longest_node_names() {
        assert_eq!(report_name("gpu-1"), "aicr-gpu-1");
        let long = format!("{}.{}", "a".repeat(200), "b".repeat(52));
        let name = report_name(&long);
        assert!(name.len() <= 253, "{}", name.len());
        assert!(name.starts_with("aicr-aaa"));
        assert_ne!(name, report_name(&format!("{long}c")));
    }

    #[test]
    fn taint_values_are_label_values() {
        assert_eq!(
            taint_value("OS.release.VERSION_ID"),
            "OS.release.VERSION_ID"
        );
        assert_eq!(
            taint_value("OS.sysctl./proc/sys/vm/swappiness"),
            "OS.sysctl._proc_sys_vm_swappiness"
        );
        let long = taint_value(&format!("GPU.smi.{}", "x".repeat(100)));
        assert_eq!(long.len(), 63);
        assert_eq!(taint_value("///"), "violation");
        assert_eq!(taint_value("K8s.node./x-"), "K8s.node._x");
    }

    #[test]
    fn taints_go_to_the_first_violation_at_or_above_the_threshold() {
        let s = Standing {
            reported: true,
            checks: vec![
                check("B.x.y", fail(), "warning"),
                check("C.x.y", error("gone"), "error"),
                check("A.x.y", pass(), "error"),
            ],
            deviations: vec![deviating()],
            ..Default::default()
        };
        assert_eq!(taint_for(&s, severity_rank("warning")), Some("B.x.y"));
        assert_eq!(taint_for(&s, severity_rank("error")), Some("C.x.y"));
        assert_eq!(taint_for(&s, severity_rank("critical")), None);
        let only_deviation = Standing {
            deviations: vec![deviating()],
            ..Default::default()
        };
        assert_eq!(taint_for(&only_deviation, 0), None);
    }

    #[test]
    fn max_tainted_parses_counts_and_percentages_and_rounds_down() {
        assert_eq!("10%".parse(), Ok(MaxTainted::Percent(10)));
        assert_eq!("3".parse(), Ok(MaxTainted::Nodes(3)));
        assert!("101%".parse::<MaxTainted>().is_err());
        assert!("ten".parse::<MaxTainted>().is_err());
        assert!("-1".parse::<MaxTainted>().is_err());
        assert_eq!(MaxTainted::Percent(10).cap(25), 2);
        assert_eq!(MaxTainted::Percent(10).cap(9), 0);
        assert_eq!(MaxTainted::Nodes(5).cap(3), 3);
    }

    fn wanted(list: &[(&str, &str, u64)]) -> BTreeMap<String, Wanted> {
        list.iter()
            .map(|(n, v, since)| {
                (
                    n.to_string(),
                    Wanted {
                        value: v.to_string(),
                        since: *since,
                    },
                )
            })
            .collect()
    }

    fn apply(tainted: &mut BTreeMap<String, String>, changes: &[TaintChange]) {
        for (n, v) in changes {
            match v {
                Some(v) => tainted.insert(n.clone(), v.clone()),
                None => tainted.remove(n),
            };
        }
    }

    #[test]
    fn the_taint_plan_never_passes_the_cap_and_fills_freed_places_in_order() {
        let all: Vec<(String, String, u64)> = (0..10)
            .map(|i| (format!("n{i}"), "A".to_string(), 10 - i as u64))
            .collect();
        let list: Vec<(&str, &str, u64)> = all
            .iter()
            .map(|(n, v, s)| (n.as_str(), v.as_str(), *s))
            .collect();
        let mut tainted = BTreeMap::new();
        let w = wanted(&list);
        let changes = plan_taints(&w, &tainted, 2);
        apply(&mut tainted, &changes);
        // Earliest to want it first: n9 (since 1), n8 (since 2).
        assert_eq!(names(&tainted), BTreeSet::from(["n8", "n9"]));
        assert!(plan_taints(&w, &tainted, 2).is_empty());

        // n9 resolves: its taint goes and the next in line takes the place.
        let mut w2 = w.clone();
        w2.remove("n9");
        let changes = plan_taints(&w2, &tainted, 2);
        apply(&mut tainted, &changes);
        assert_eq!(names(&tainted), BTreeSet::from(["n7", "n8"]));

        // A different violation on a tainted node changes the value only.
        w2.get_mut("n8").unwrap().value = "B".into();
        let changes = plan_taints(&w2, &tainted, 2);
        assert_eq!(changes, vec![("n8".to_string(), Some("B".to_string()))]);
        apply(&mut tainted, &changes);

        // The cap shrinks: the latest comer is untainted.
        let changes = plan_taints(&w2, &tainted, 1);
        apply(&mut tainted, &changes);
        assert_eq!(names(&tainted), BTreeSet::from(["n8"]));

        // Everything resolves.
        let changes = plan_taints(&BTreeMap::new(), &tainted, 1);
        apply(&mut tainted, &changes);
        assert!(tainted.is_empty());
    }

    #[test]
    fn retainting_keeps_every_other_taint() {
        let other = Taint {
            key: "nvidia.com/gpu".into(),
            value: Some("present".into()),
            effect: "NoSchedule".into(),
            time_added: None,
        };
        let t = retaint(std::slice::from_ref(&other), Some("OS.release.ID"));
        assert_eq!(t.len(), 2);
        assert_eq!(drift_taint(&t).as_deref(), Some("OS.release.ID"));
        let t = retaint(&t, Some("GPU.smi.driver"));
        assert_eq!(t.len(), 2);
        assert_eq!(drift_taint(&t).as_deref(), Some("GPU.smi.driver"));
        let t = retaint(&t, None);
        assert_eq!(t, vec![other]);
        assert_eq!(drift_taint(&t), None);
    }
}
