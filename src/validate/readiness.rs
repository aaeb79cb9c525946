//! The readiness gate: a recipe's top-level constraints judged against one
//! snapshot per node, in-process and before anything touches the cluster.
//!
//! Unlike upstream, the gate fails closed: a constraint whose measurement is
//! missing or cannot be compared fails with a reason naming its path, and a
//! malformed constraint is rejected before any snapshot is read. Readings
//! are compared as the snapshot wrote them (see `model::snapshot::Reading`).
//!
//! Owns the static checks, per-node evaluation and the fleet view (several
//! nodes in one report, disagreements between nodes). Evaluation itself is
//! `constraint::evaluate`; this module must not re-implement it, and it must
//! not do I/O.

use std::collections::BTreeMap;

use crate::constraint::{self, EvalError, Expr, Op, Outcome, Path, Version};
use crate::error::{Error, Result};
use crate::model::recipe::{Constraint, RecipeResult};
use crate::model::snapshot::{SNAPSHOT_KIND, Snapshot};

use super::ctrf::{Report, Status, Test};

/// The suite name readiness tests carry in a fleet report.
pub const SUITE: &str = "readiness";

/// A snapshot and the node it describes.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSnapshot {
    pub node: String,
    /// Where it was read from, for messages.
    pub source: String,
    pub snapshot: Snapshot,
}

impl NodeSnapshot {
    /// Name the node from `metadata.source-node`, else the K8s node
    /// reading, else the file name the snapshot came from.
    pub fn new(source: &str, snapshot: Snapshot) -> NodeSnapshot {
        let from_meta = snapshot
            .metadata
            .get("source-node")
            .filter(|n| !n.trim().is_empty())
            .map(|n| n.trim().to_string());
        let from_reading = || {
            snapshot
                .lookup("K8s", "node", "source-node")
                .ok()
                .map(|r| r.render())
                .filter(|n| !n.trim().is_empty() && n != "<nil>")
        };
        let from_source = || {
            let last = source.rsplit(['/', '\\']).next().unwrap_or(source);
            let stem = last.split('.').next().unwrap_or(last);
            if stem.is_empty() {
                source.to_string()
            } else {
                stem.to_string()
            }
        };
        let node = from_meta.or_else(from_reading).unwrap_or_else(from_source);
        NodeSnapshot {
            node,
            source: source.to_string(),
            snapshot,
        }
    }
}

/// Reject a document that is not a snapshot (a recipe passed as
/// `--snapshot`, say) by its `kind`, before it is parsed as one. Upstream
/// does not look; we do, because a wrong document would otherwise fail
/// every constraint with "not found" or fail to parse with a puzzling error.
pub fn check_snapshot_kind(kind: &str, source: &str) -> Result<()> {
    if kind != SNAPSHOT_KIND {
        let found = if kind.is_empty() {
            "no kind".to_string()
        } else {
            format!("kind {kind:?}")
        };
        return Err(Error::invalid(format!(
            "{source:?} is not a snapshot: it has {found}, expected kind {SNAPSHOT_KIND:?} (capture one with `aicr snapshot`)"
        )));
    }
    Ok(())
}

/// Static checks of the gate's constraints: there must be some, and each
/// must have a valid path and an expression that can ever be decided.
pub fn check_recipe(recipe: &RecipeResult, source: &str) -> Result<()> {
    if recipe.constraints.is_empty() {
        return Err(Error::invalid(format!(
            "recipe {source:?} has no constraints: the readiness gate needs at least one top-level constraint (e.g. K8s.server.version)"
        )));
    }
    for c in &recipe.constraints {
        check_constraint(c).map_err(|e| {
            Error::invalid(format!(
                "recipe {source:?} has a malformed constraint {:?} (value {:?}): {e}",
                c.name, c.value
            ))
        })?;
    }
    Ok(())
}

fn check_constraint(c: &Constraint) -> std::result::Result<(), EvalError> {
    Path::parse(&c.name)?;
    let expr = Expr::parse(&c.value)?;
    // An ordering against a non-version can never be decided; catching it
    // here names the recipe, not a snapshot, as the culprit.
    if matches!(expr.op, Op::Ge | Op::Le | Op::Gt | Op::Lt) {
        Version::parse(expr.value).map_err(|e| {
            EvalError::InvalidExpr(format!(
                "cannot parse expected version {:?}: {e}",
                expr.value
            ))
        })?;
    }
    Ok(())
}

/// One constraint's result on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConstraintResult {
    pub name: String,
    pub expected: String,
    pub actual: Option<String>,
    pub passed: bool,
    /// Why it failed; empty when it passed.
    pub reason: String,
}

/// A node's readiness: the constraints evaluated, in recipe order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeResult {
    pub node: String,
    pub results: Vec<ConstraintResult>,
}

impl NodeResult {
    pub(crate) fn passed(&self) -> bool {
        self.results.iter().all(|r| r.passed)
    }

    pub(crate) fn first_failure(&self) -> Option<&ConstraintResult> {
        self.results.iter().find(|r| !r.passed)
    }
}

/// Judge one constraint; errors fail closed.
pub(crate) fn judge(c: &Constraint, snapshot: &Snapshot) -> ConstraintResult {
    let outcome = constraint::evaluate(&c.name, &c.value, snapshot);
    let actual = outcome.actual().map(str::to_string);
    let (passed, reason) = match &outcome {
        Outcome::Passed { .. } => (true, String::new()),
        Outcome::Failed { actual } => (
            false,
            format!("{} expected {}, got {actual}", c.name, c.value.trim()),
        ),
        Outcome::Error { error, .. } => (
            false,
            format!("{} expected {}: {error}", c.name, c.value.trim()),
        ),
    };
    ConstraintResult {
        name: c.name.clone(),
        expected: c.value.clone(),
        actual,
        passed,
        reason,
    }
}

/// Evaluate the gate on one node. `stop_at_failure` keeps upstream's
/// single-snapshot behaviour (later constraints are not evaluated); the
/// fleet view evaluates everything so every disagreement shows.
pub(crate) fn evaluate_node(
    constraints: &[Constraint],
    node: &NodeSnapshot,
    stop_at_failure: bool,
) -> NodeResult {
    let mut results = Vec::with_capacity(constraints.len());
    for c in constraints {
        let r = judge(c, &node.snapshot);
        let failed = !r.passed;
        results.push(r);
        if failed && stop_at_failure {
            break;
        }
    }
    NodeResult {
        node: node.node.clone(),
        results,
    }
}

/// Readiness across every node given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fleet {
    pub nodes: Vec<NodeResult>,
}

/// Each distinct reading (`None`: missing) with the nodes that have it.
pub(crate) type Readings = Vec<(Option<String>, Vec<String>)>;

/// Nodes that read different values for the same constraint path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Disagreement {
    pub name: String,
    pub values: Readings,
}

impl Fleet {
    pub fn evaluate(constraints: &[Constraint], nodes: &[NodeSnapshot]) -> Fleet {
        Fleet {
            nodes: nodes
                .iter()
                .map(|n| evaluate_node(constraints, n, false))
                .collect(),
        }
    }

    pub(crate) fn failed_nodes(&self) -> Vec<&NodeResult> {
        self.nodes.iter().filter(|n| !n.passed()).collect()
    }

    /// One line for the error that stops the run: how many nodes failed and
    /// the first reason.
    pub(crate) fn failure_summary(&self) -> Option<String> {
        let failed = self.failed_nodes();
        let first = failed.first()?;
        let reason = first
            .first_failure()
            .map(|r| r.reason.as_str())
            .unwrap_or("");
        let more = if failed.len() > 1 {
            format!(
                " (also failed: {})",
                failed[1..]
                    .iter()
                    .map(|n| n.node.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            String::new()
        };
        Some(format!(
            "readiness check failed on {} of {} nodes: {}: {reason}{more}",
            failed.len(),
            self.nodes.len(),
            first.node
        ))
    }

    /// Constraint paths whose readings differ between nodes, in recipe
    /// order; the distinct readings are listed in order of first sight.
    pub(crate) fn disagreements(&self) -> Vec<Disagreement> {
        let mut by_name: BTreeMap<&str, (usize, Readings)> = BTreeMap::new();
        for node in &self.nodes {
            for (i, r) in node.results.iter().enumerate() {
                let entry = by_name.entry(&r.name).or_insert((i, Vec::new()));
                match entry.1.iter_mut().find(|(v, _)| *v == r.actual) {
                    Some((_, nodes)) => nodes.push(node.node.clone()),
                    None => entry.1.push((r.actual.clone(), vec![node.node.clone()])),
                }
            }
        }
        let mut out: Vec<(usize, Disagreement)> = by_name
            .into_iter()
            .filter(|(_, (_, values))| values.len() > 1)
            .map(|(name, (i, values))| {
                (
                    i,
                    Disagreement {
                        name: name.to_string(),
                        values,
                    },
                )
            })
            .collect();
        out.sort_by_key(|(i, _)| *i);
        out.into_iter().map(|(_, d)| d).collect()
    }

    /// The fleet as report tests: one per node and constraint, the node in
    /// the suite.
    pub fn tests(&self) -> Vec<Test> {
        let mut tests = Vec::new();
        for node in &self.nodes {
            for r in &node.results {
                let observed = format!(
                    "expected {}, got {}",
                    r.expected.trim(),
                    r.actual.as_deref().unwrap_or("(no reading)")
                );
                tests.push(Test {
                    name: r.name.clone(),
                    status: if r.passed {
                        Status::Passed
                    } else {
                        Status::Failed
                    },
                    duration: 0,
                    suite: vec![SUITE.to_string(), node.node.clone()],
                    message: r.reason.clone(),
                    stdout: vec![observed],
                });
            }
        }
        tests
    }

    pub fn report(&self, version: &str, start_ms: u64, now: std::time::SystemTime) -> Report {
        Report::build(version, start_ms, self.tests(), now)
    }
}

impl Disagreement {
    /// `K8s.node.kubelet-version: "v1.33.5" on gpu-1, gpu-2; "v1.32.3" on gpu-3`.
    pub(crate) fn describe(&self) -> String {
        let parts: Vec<String> = self
            .values
            .iter()
            .map(|(v, nodes)| {
                let v = v
                    .as_ref()
                    .map_or_else(|| "(missing)".to_string(), |v| format!("{v:?}"));
                format!("{v} on {}", nodes.join(", "))
            })
            .collect();
        format!("{}: {}", self.name, parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::snapshot::{Measurement, Subtype};

    fn c(name: &str, value: &str) -> Constraint {
        Constraint {
            name: name.into(),
            value: value.into(),
            ..Default::default()
        }
    }

    fn snap(node: &str, k8s: &str, kubelet: &str) -> NodeSnapshot {
        let s = Snapshot {
            kind: "Snapshot".into(),
            metadata: [("source-node".to_string(), node.to_string())].into(),
            measurements: vec![Measurement {
                kind: "K8s".into(),
                subtypes: vec![
                    Subtype::new("server").with("version", k8s),
                    Subtype::new("node").with("kubelet-version", kubelet),
                ],
            }],
            ..Default::default()
        };
        NodeSnapshot::new(&format!("{node}.yaml"), s)
    }

    fn recipe(constraints: Vec<Constraint>) -> RecipeResult {
        let mut r: RecipeResult = crate::yaml::from_yaml(
            "kind: RecipeResult\napiVersion: aicr.nvidia.com/v1alpha1\ncomponentRefs: []\n",
        )
        .unwrap();
        r.constraints = constraints;
        r
    }

    #[test]
    fn static_checks_reject_what_can_never_be_decided() {
        let bad = [
            ("k8s.server.version", ">= 1.32"),
            ("K8s.server", ">= 1.32"),
            ("K8s.server.version", ">= "),
            ("K8s.server.version", "  "),
            ("K8s.server.version", "> ubuntu"),
            ("K8s.server.version", ">= 1.2.3.4"),
        ];
        for (name, value) in bad {
            let e = check_recipe(&recipe(vec![c(name, value)]), "r.yaml").unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidRequest, "{name} {value}");
            assert!(e.message().contains(name), "{e}");
        }
        let e = check_recipe(&recipe(vec![]), "r.yaml").unwrap_err();
        assert!(e.message().contains("has no constraints"), "{e}");
        let good = [
            ("K8s.server.version", ">= v1.32"),
            ("OS.release.ID", "ubuntu"),
            ("OS.release.ID", "== ubuntu-22.04"),
            ("OS.release.ID", "=> 1.2"),
        ];
        for (name, value) in good {
            check_recipe(&recipe(vec![c(name, value)]), "r.yaml").unwrap();
        }
    }

    #[test]
    fn missing_measurements_and_unparsable_readings_fail_closed() {
        let node = snap("gpu-1", "abc", "v1.33.5");
        let r = judge(&c("OS.release.ID", "ubuntu"), &node.snapshot);
        assert!(!r.passed);
        assert_eq!(
            r.reason,
            "OS.release.ID expected ubuntu: value not found in snapshot: OS.release.ID: measurement type not found in snapshot"
        );
        let r = judge(&c("K8s.server.version", ">= 1.32"), &node.snapshot);
        assert!(!r.passed);
        assert!(
            r.reason.starts_with("K8s.server.version expected >= 1.32: evaluation failed: cannot parse actual version \"abc\""),
            "{}",
            r.reason
        );
        assert_eq!(r.actual.as_deref(), Some("abc"));
    }

    #[test]
    fn single_node_stops_at_the_first_failure() {
        let node = snap("gpu-1", "v1.31.0", "v1.31.0");
        let cs = [
            c("K8s.server.version", ">= 1.32"),
            c("K8s.node.kubelet-version", ">= 1.32"),
        ];
        assert_eq!(evaluate_node(&cs, &node, true).results.len(), 1);
        assert_eq!(evaluate_node(&cs, &node, false).results.len(), 2);
        assert_eq!(
            evaluate_node(&cs, &node, true)
                .first_failure()
                .unwrap()
                .reason,
            "K8s.server.version expected >= 1.32, got v1.31.0"
        );
    }

    #[test]
    fn fleet_catches_the_node_that_disagrees() {
        let nodes = [
            snap("gpu-1", "v1.33.5-eks-3025e55", "v1.33.5-eks-3025e55"),
            snap("gpu-2", "v1.33.5-eks-3025e55", "v1.33.5-eks-3025e55"),
            snap("gpu-3", "v1.33.5-eks-3025e55", "v1.32.3-eks-1"),
        ];
        let cs = [
            c("K8s.server.version", ">= 1.32.4"),
            c("K8s.node.kubelet-version", ">= 1.32.4"),
        ];
        let fleet = Fleet::evaluate(&cs, &nodes);
        assert_eq!(fleet.failed_nodes().len(), 1);
        assert_eq!(
            fleet.failure_summary().unwrap(),
            "readiness check failed on 1 of 3 nodes: gpu-3: K8s.node.kubelet-version expected >= 1.32.4, got v1.32.3-eks-1"
        );
        let d = fleet.disagreements();
        assert_eq!(d.len(), 1);
        assert_eq!(
            d[0].describe(),
            "K8s.node.kubelet-version: \"v1.33.5-eks-3025e55\" on gpu-1, gpu-2; \"v1.32.3-eks-1\" on gpu-3"
        );
        let tests = fleet.tests();
        assert_eq!(tests.len(), 6);
        assert_eq!(tests[5].suite, ["readiness", "gpu-3"]);
        assert_eq!(tests[5].status, Status::Failed);
        assert_eq!(tests[0].message, "");
    }

    #[test]
    fn node_names_come_from_metadata_then_readings_then_the_file() {
        let mut s = snap("gpu-1", "v1", "v1").snapshot;
        assert_eq!(NodeSnapshot::new("x/y.yaml", s.clone()).node, "gpu-1");
        s.metadata.insert("source-node".into(), String::new());
        s.measurements[0]
            .subtypes
            .push(Subtype::new("node").with("source-node", "ip-10-0-0-1"));
        // The first `node` subtype wins lookups and has no source-node key.
        assert_eq!(
            NodeSnapshot::new("dir/node-a.yaml", s.clone()).node,
            "node-a"
        );
        s.measurements[0].subtypes.remove(1);
        assert_eq!(NodeSnapshot::new("dir/node-a.yaml", s).node, "ip-10-0-0-1");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn node_reading(value: &str) -> Snapshot {
            Snapshot {
                kind: "Snapshot".into(),
                measurements: vec![Measurement {
                    kind: "K8s".into(),
                    subtypes: vec![Subtype::new("node").with("kubelet-version", value)],
                }],
                ..Default::default()
            }
        }

        fn gate(expr: &str, reading: &str) -> bool {
            judge(&c("K8s.node.kubelet-version", expr), &node_reading(reading)).passed
        }

        fn ver() -> impl Strategy<Value = (u64, u64, u64)> {
            (0u64..40, 0u64..40, 0u64..40)
        }

        fn v3((a, b, c): (u64, u64, u64)) -> String {
            format!("{a}.{b}.{c}")
        }

        proptest! {
            /// Exactly one of `<` and `>=` holds, and it agrees with the
            /// numeric order, whatever prefix or distro suffix the node adds.
            #[test]
            fn ordering_agrees_with_numbers(a in ver(), b in ver(), suffix in "(-eks-[0-9a-f]{7}|\\+k3s1|-1028-aws)?") {
                let reading = format!("v{}{suffix}", v3(a));
                let ge = gate(&format!(">= {}", v3(b)), &reading);
                let lt = gate(&format!("< {}", v3(b)), &reading);
                prop_assert_ne!(ge, lt);
                prop_assert_eq!(ge, a >= b);
            }

            /// A shorter expected version compares only the parts it has.
            #[test]
            fn precision_limits_the_comparison(a in ver()) {
                let reading = v3(a);
                let short = format!("{}.{}", a.0, a.1);
                let major = a.0.to_string();
                let ge = gate(&format!(">= {short}"), &reading);
                let le = gate(&format!("<= {short}"), &reading);
                let gt = gate(&format!("> {short}"), &reading);
                let lt = gate(&format!("< {major}"), &reading);
                prop_assert!(ge && le && !gt && !lt);
            }

            /// `==` in version mode fills missing parts with zero and ignores
            /// suffixes; `!=` is its exact negation.
            #[test]
            fn equality_and_its_negation(a in ver(), b in ver()) {
                let eq = gate(&format!("== {}", v3(b)), &format!("{}-rc.1", v3(a)));
                let ne = gate(&format!("!= {}", v3(b)), &format!("{}-rc.1", v3(a)));
                prop_assert_eq!(eq, a == b);
                prop_assert_ne!(eq, ne);
                let padded = gate(&format!("== {}.{}.0", a.0, a.1), &format!("{}.{}", a.0, a.1));
                prop_assert!(padded);
            }

            /// A reading that is not a version never passes an ordering: the
            /// gate fails closed instead of guessing.
            #[test]
            fn unparsable_readings_fail_closed(word in "[a-z]{1,8}", b in ver(), op in "(>=|<=|>|<)") {
                let r = judge(&c("K8s.node.kubelet-version", &format!("{op} {}", v3(b))), &node_reading(&word));
                prop_assert!(!r.passed);
                prop_assert!(r.reason.contains("evaluation failed"), "{}", r.reason);
            }

            /// A bare value is compared byte for byte after trimming the
            /// reading: no version logic, case matters.
            #[test]
            fn bare_values_are_exact(word in "[a-z][a-z0-9.]{0,10}") {
                let padded = gate(&word, &format!(" {word} "));
                let upper = word.to_uppercase();
                let shouted = gate(&word, &upper);
                let prefixed = gate(&word, &format!("v{word}"));
                prop_assert!(padded);
                prop_assert!(!shouted || upper == word);
                prop_assert!(!prefixed);
            }
        }
    }

    #[test]
    fn wrong_kinds_are_named() {
        let e = check_snapshot_kind("RecipeResult", "r.yaml").unwrap_err();
        assert_eq!(
            e.message(),
            "\"r.yaml\" is not a snapshot: it has kind \"RecipeResult\", expected kind \"Snapshot\" (capture one with `aicr snapshot`)"
        );
        assert!(
            check_snapshot_kind("", "x")
                .unwrap_err()
                .message()
                .contains("no kind")
        );
        check_snapshot_kind("Snapshot", "x").unwrap();
    }
}
