//! The drift evaluator: the active recipe's constraints indexed by the
//! `{Type}.{Subtype}` scope they read, so a change re-checks only what it
//! can affect, and the pure diff from outcomes to drift events.
//!
//! Pure and synchronous. It must not lock, store or send anything; the hub
//! feeds it readings and hands its events on. Judging a reading is
//! `aicr::constraint::evaluate_with`, so the rules are exactly the CLI's.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

use aicr::constraint::{self, Outcome, Path};
use aicr::error::{Error, Result};
use aicr::model::recipe::Constraint;
use aicr::model::snapshot::{LookupMiss, Reading};
use aicr::proto::DriftEvent;
use aicr::proto::drift_event::Kind;

/// Scopes the aggregator reads from the Kubernetes API once for the whole
/// cluster rather than from each node's agent.
pub fn is_cluster_scope(scope: &str) -> bool {
    matches!(scope, "K8s.server" | "K8s.image" | "K8s.policy") || scope.starts_with("NodeTopology.")
}

/// One constraint, parsed once.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub expected: String,
    pub severity: String,
    pub scope: String,
    /// The one reading key within `scope` the rule reads.
    pub key: String,
    /// Judged once against cluster state, not per node.
    pub cluster: bool,
}

/// The active recipe's constraints and the scope index.
#[derive(Debug, Default)]
pub struct Rules {
    rules: Vec<Rule>,
    by_scope: HashMap<String, Vec<usize>>,
    /// Unique to this set of rules, so outcomes cached under it are never
    /// taken for another recipe's.
    generation: u64,
}

static GENERATIONS: AtomicU64 = AtomicU64::new(1);

impl Rules {
    /// Every top-level constraint of a recipe; a malformed one rejects the
    /// recipe, since a rule we cannot judge would silently never fire.
    /// A later duplicate of a name replaces the earlier one.
    pub fn new(constraints: &[Constraint]) -> Result<Rules> {
        let mut rules: Vec<Rule> = Vec::new();
        for c in constraints {
            constraint::check_syntax(&c.name, &c.value)
                .map_err(|e| Error::invalid(format!("constraint {}: {e}", c.name)))?;
            let path = Path::parse(&c.name).map_err(|e| Error::invalid(e.to_string()))?;
            let scope = path.scope();
            let rule = Rule {
                name: c.name.clone(),
                expected: c.value.clone(),
                severity: c.severity.clone(),
                cluster: is_cluster_scope(&scope),
                key: path.key.to_string(),
                scope,
            };
            match rules.iter_mut().find(|r| r.name == c.name) {
                Some(old) => *old = rule,
                None => rules.push(rule),
            }
        }
        let mut by_scope: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, r) in rules.iter().enumerate() {
            by_scope.entry(r.scope.clone()).or_default().push(i);
        }
        Ok(Rules {
            rules,
            by_scope,
            generation: GENERATIONS.fetch_add(1, Ordering::Relaxed),
        })
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn get(&self, i: usize) -> &Rule {
        &self.rules[i]
    }

    pub fn contains(&self, name: &str) -> bool {
        self.rules.iter().any(|r| r.name == name)
    }

    /// Indices of the rules reading any of `scopes`, in rule order.
    pub fn touched<'a>(&self, scopes: impl IntoIterator<Item = &'a str>) -> Vec<usize> {
        let mut out: Vec<usize> = scopes
            .into_iter()
            .filter_map(|s| self.by_scope.get(s))
            .flatten()
            .copied()
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Rules judged per node.
    pub fn node_rules(&self) -> Vec<usize> {
        (0..self.rules.len())
            .filter(|&i| !self.rules[i].cluster)
            .collect()
    }

    /// Rules judged once for the cluster.
    pub fn cluster_rules(&self) -> Vec<usize> {
        (0..self.rules.len())
            .filter(|&i| self.rules[i].cluster)
            .collect()
    }
}

/// What is remembered of a violation while it is open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    pub expected: String,
    pub actual: String,
    pub severity: String,
}

/// Open violations of one node (or of the cluster) by constraint name.
pub type OpenSet = BTreeMap<String, Open>;

/// Judge one rule; `lookup` answers as `Snapshot::lookup` does.
pub fn judge<'r>(
    rule: &Rule,
    lookup: impl FnOnce(&str, &str, &str) -> std::result::Result<&'r Reading, LookupMiss>,
) -> Outcome {
    constraint::evaluate_with(&rule.name, &rule.expected, lookup)
}

fn event(
    kind: Kind,
    node: &str,
    constraint: &str,
    open: &Open,
    reason: String,
    now_ms: i64,
) -> DriftEvent {
    DriftEvent {
        id: 0,
        kind: kind as i32,
        node_name: node.to_string(),
        constraint: constraint.to_string(),
        expected: open.expected.clone(),
        actual: open.actual.clone(),
        severity: open.severity.clone(),
        reason,
        unix_millis: now_ms,
        ..Default::default()
    }
}

/// Compare a fresh outcome with what is open and say what happened: an
/// opened violation, a resolved one, or nothing. A violation whose actual
/// value moves while it stays open is updated in place without an event,
/// so a flapping reading cannot flood the sinks.
pub fn diff(
    node: &str,
    rule: &Rule,
    outcome: &Outcome,
    open: &mut OpenSet,
    now_ms: i64,
) -> Option<DriftEvent> {
    let actual = outcome.actual().unwrap_or_default().to_string();
    if outcome.passed() {
        let was = open.remove(&rule.name)?;
        let now = Open { actual, ..was };
        return Some(event(
            Kind::Resolved,
            node,
            &rule.name,
            &now,
            "constraint met".into(),
            now_ms,
        ));
    }
    let reason = match outcome {
        Outcome::Error { error, .. } => error.to_string(),
        _ => format!("expected {}, got {actual}", rule.expected),
    };
    let current = Open {
        expected: rule.expected.clone(),
        actual,
        severity: rule.severity.clone(),
    };
    match open.get_mut(&rule.name) {
        Some(existing) => {
            *existing = current;
            None
        }
        None => {
            let ev = event(Kind::Opened, node, &rule.name, &current, reason, now_ms);
            open.insert(rule.name.clone(), current);
            Some(ev)
        }
    }
}

/// Resolve open violations of constraints the active recipe no longer has.
pub fn retire(node: &str, rules: &Rules, open: &mut OpenSet, now_ms: i64) -> Vec<DriftEvent> {
    resolve(
        node,
        open,
        |name| !rules.contains(name),
        "constraint no longer in the active recipe",
        now_ms,
    )
}

/// Resolve every open violation of a node that no longer exists.
pub fn resolve_all(node: &str, open: &mut OpenSet, reason: &str, now_ms: i64) -> Vec<DriftEvent> {
    resolve(node, open, |_| true, reason, now_ms)
}

fn resolve(
    node: &str,
    open: &mut OpenSet,
    which: impl Fn(&str) -> bool,
    reason: &str,
    now_ms: i64,
) -> Vec<DriftEvent> {
    let gone: Vec<String> = open.keys().filter(|k| which(k)).cloned().collect();
    gone.into_iter()
        .filter_map(|name| {
            let was = open.remove(&name)?;
            Some(event(
                Kind::Resolved,
                node,
                &name,
                &was,
                reason.into(),
                now_ms,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aicr::model::snapshot::Subtype;

    fn c(name: &str, value: &str) -> Constraint {
        Constraint {
            name: name.into(),
            value: value.into(),
            severity: "critical".into(),
            ..Default::default()
        }
    }

    fn rules() -> Rules {
        Rules::new(&[
            c("OS.release.VERSION_ID", "== 24.04"),
            c("K8s.server.version", ">= 1.32"),
            c("OS.release.ID", "ubuntu"),
            c("GPU.smi.driver", ">= 570"),
            c("NodeTopology.label.pool", "gpu"),
        ])
        .unwrap()
    }

    #[test]
    fn scope_index_finds_only_rules_reading_a_changed_scope() {
        let r = rules();
        assert_eq!(r.touched(["OS.release"]), [0, 2]);
        assert_eq!(r.touched(["GPU.smi", "OS.release", "GPU.smi"]), [0, 2, 3]);
        assert!(r.touched(["SystemD.containerd.service"]).is_empty());
        assert_eq!(r.cluster_rules(), [1, 4]);
        assert_eq!(r.node_rules(), [0, 2, 3]);
    }

    #[test]
    fn malformed_constraints_reject_the_recipe() {
        let e = Rules::new(&[c("Deployment.gpu-operator.version", ">= 1")]).unwrap_err();
        assert!(
            e.message().contains("Deployment.gpu-operator.version"),
            "{e}"
        );
        assert!(Rules::new(&[c("OS.release.ID", ">= ")]).is_err());
    }

    #[test]
    fn later_duplicates_replace_earlier_ones() {
        let r = Rules::new(&[c("OS.release.ID", "ubuntu"), c("OS.release.ID", "rhel")]).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r.get(0).expected, "rhel");
    }

    fn judge_with(rule: &Rule, st: &Subtype) -> Outcome {
        judge(rule, |_, _, key| st.data.get(key).ok_or(LookupMiss::Key))
    }

    #[test]
    fn diff_opens_updates_and_resolves() {
        let r = rules();
        let rule = r.get(0);
        let mut open = OpenSet::new();
        let bad = Subtype::new("release").with("VERSION_ID", "22.04");
        let ev = diff("n1", rule, &judge_with(rule, &bad), &mut open, 7).unwrap();
        assert_eq!(ev.kind, Kind::Opened as i32);
        assert_eq!(
            (ev.expected.as_str(), ev.actual.as_str()),
            ("== 24.04", "22.04")
        );
        assert_eq!(ev.reason, "expected == 24.04, got 22.04");
        assert_eq!(ev.unix_millis, 7);

        let worse = Subtype::new("release").with("VERSION_ID", "20.04");
        assert!(diff("n1", rule, &judge_with(rule, &worse), &mut open, 8).is_none());
        assert_eq!(open["OS.release.VERSION_ID"].actual, "20.04");

        let good = Subtype::new("release").with("VERSION_ID", "24.04");
        let ev = diff("n1", rule, &judge_with(rule, &good), &mut open, 9).unwrap();
        assert_eq!(ev.kind, Kind::Resolved as i32);
        assert_eq!(ev.actual, "24.04");
        assert!(open.is_empty());
        assert!(diff("n1", rule, &judge_with(rule, &good), &mut open, 10).is_none());
    }

    #[test]
    fn a_missing_reading_is_a_violation_with_the_lookup_reason() {
        let r = rules();
        let rule = r.get(2);
        let mut open = OpenSet::new();
        let empty = Subtype::new("release");
        let ev = diff("n1", rule, &judge_with(rule, &empty), &mut open, 1).unwrap();
        assert_eq!(ev.kind, Kind::Opened as i32);
        assert_eq!(
            ev.reason,
            "value not found in snapshot: OS.release.ID: key not found in subtype"
        );
    }

    #[test]
    fn retire_resolves_constraints_dropped_from_the_recipe() {
        let mut open = OpenSet::new();
        for name in ["OS.release.ID", "OS.kmod.nvidia"] {
            open.insert(
                name.into(),
                Open {
                    expected: "x".into(),
                    actual: "y".into(),
                    severity: String::new(),
                },
            );
        }
        let evs = retire("n1", &rules(), &mut open, 3);
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].constraint, "OS.kmod.nvidia");
        assert_eq!(evs[0].kind, Kind::Resolved as i32);
        assert_eq!(open.len(), 1);
    }
}
