//! Live state of one node as its agent reported it: the `{Type}.{Subtype}`
//! readings, the sequence bookkeeping that detects lost updates, and the
//! liveness facts (connected, last seen, stale).
//!
//! Owns the sequence rules of the AgentService stream. It must not evaluate
//! constraints or talk to the network: callers lock a `NodeState`, apply a
//! message, and take the changed scopes to the evaluator.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use aicr::model::snapshot::{Measurement, Subtype};
use tokio_util::sync::CancellationToken;

use crate::evaluator::OpenSet;
use crate::peers::Deviations;
use crate::states::State;

/// Most distinct subtypes one node may hold; a real agent reports a few
/// dozen, so more is a misbehaving or hostile client growing our memory.
pub const MAX_SUBTYPES: usize = 512;

/// One decoded `SubtypeState`.
#[derive(Debug, Clone)]
pub struct Reported {
    pub kind: String,
    pub name: String,
    /// The content, shared with every node reporting the same.
    pub state: Arc<State>,
}

impl Reported {
    /// `{Type}.{Subtype}`, the key the evaluator indexes by.
    pub fn scope(&self) -> String {
        scope(&self.kind, &self.name)
    }
}

/// A scope whose content changed, appeared or vanished, and what it held
/// before (the new content is in the node's readings).
#[derive(Debug, Clone)]
pub struct Changed {
    pub scope: String,
    pub before: Option<Arc<State>>,
}

pub fn scope(kind: &str, subtype: &str) -> String {
    format!("{kind}.{subtype}")
}

/// Why a message was not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejected {
    /// The agent must send a full snapshot; the reason goes into `Resync`.
    Resync(String),
    /// The message breaks a limit; the session ends with this reason.
    Invalid(String),
}

#[derive(Debug)]
pub struct NodeState {
    pub name: String,
    pub agent_version: String,
    pub boot_id: String,
    /// Wall-clock time of the last message, for people and the store.
    pub last_seen_ms: i64,
    /// Monotonic time of the last message, for the stale timer.
    pub last_seen: Instant,
    /// When the readings last changed, the snapshot's timestamp.
    pub updated: SystemTime,
    pub last_seq: u64,
    /// A full snapshot was applied in this session, so updates can follow.
    pub synced: bool,
    /// Some full snapshot was applied since this process started, so the
    /// readings are worth judging even while the agent is away.
    pub reported: bool,
    pub connected: bool,
    pub stale: bool,
    /// Which session owns the node; a newer session supersedes older ones.
    pub session: u64,
    /// Cancelled when the owning session must end (superseded, or this
    /// replica stopped leading).
    pub cancel: CancellationToken,
    pub readings: BTreeMap<String, Reported>,
    /// Constraints this node violates now, as last evaluated.
    pub open: OpenSet,
    /// The pool the node belongs to, once known.
    pub pool: Option<String>,
    /// The node's readings are counted in its pool's tallies.
    pub member: bool,
    /// Readings on which the node differs from its pool now.
    pub deviations: Deviations,
}

impl NodeState {
    pub fn new(name: &str) -> NodeState {
        NodeState {
            name: name.to_string(),
            agent_version: String::new(),
            boot_id: String::new(),
            last_seen_ms: 0,
            last_seen: Instant::now(),
            updated: SystemTime::now(),
            last_seq: 0,
            synced: false,
            reported: false,
            connected: false,
            stale: false,
            session: 0,
            cancel: CancellationToken::new(),
            readings: BTreeMap::new(),
            open: OpenSet::new(),
            pool: None,
            member: false,
            deviations: Deviations::new(),
        }
    }

    pub fn touch(&mut self, now_ms: i64) {
        self.last_seen_ms = now_ms;
        self.last_seen = Instant::now();
    }

    /// Replace every reading; returns the scopes whose content changed,
    /// appeared or vanished, in scope order.
    pub fn apply_full(
        &mut self,
        seq: u64,
        reported: Vec<Reported>,
    ) -> Result<Vec<Changed>, Rejected> {
        let mut next = BTreeMap::new();
        for r in reported {
            next.insert(r.scope(), r);
        }
        if next.len() > MAX_SUBTYPES {
            return Err(Rejected::Invalid(format!(
                "full snapshot has {} subtypes (max {MAX_SUBTYPES})",
                next.len()
            )));
        }
        let mut changed: BTreeMap<String, Option<Arc<State>>> = BTreeMap::new();
        for (k, r) in &next {
            let old = self.readings.get(k);
            if old.is_none_or(|old| old.state.key() != r.state.key()) {
                changed.insert(k.clone(), old.map(|o| o.state.clone()));
            }
        }
        for (k, old) in &self.readings {
            if !next.contains_key(k) {
                changed.insert(k.clone(), Some(old.state.clone()));
            }
        }
        self.readings = next;
        self.last_seq = seq;
        self.synced = true;
        self.reported = true;
        if !changed.is_empty() {
            self.updated = SystemTime::now();
        }
        Ok(changed
            .into_iter()
            .map(|(scope, before)| Changed { scope, before })
            .collect())
    }

    /// Apply an update that must follow the last applied message directly.
    pub fn apply_update(
        &mut self,
        seq: u64,
        changed: Vec<Reported>,
        removed: &[String],
    ) -> Result<Vec<Changed>, Rejected> {
        if !self.synced {
            return Err(Rejected::Resync(
                "no full snapshot in this session; send one before updates".into(),
            ));
        }
        if seq != self.last_seq.wrapping_add(1) {
            // Everything after the gap is suspect until a full snapshot.
            self.synced = false;
            return Err(Rejected::Resync(format!(
                "sequence gap: expected {}, got {seq}",
                self.last_seq.wrapping_add(1)
            )));
        }
        let added = changed
            .iter()
            .filter(|r| !self.readings.contains_key(&r.scope()))
            .count();
        if self.readings.len() + added > MAX_SUBTYPES {
            return Err(Rejected::Invalid(format!(
                "update would grow the node past {MAX_SUBTYPES} subtypes"
            )));
        }
        let mut scopes: BTreeMap<String, Option<Arc<State>>> = BTreeMap::new();
        for r in changed {
            let k = r.scope();
            let old = self.readings.get(&k);
            if old.is_none_or(|old| old.state.key() != r.state.key()) {
                let before = old.map(|o| o.state.clone());
                scopes.entry(k.clone()).or_insert(before);
                self.readings.insert(k, r);
            }
        }
        for k in removed {
            if let Some(old) = self.readings.remove(k) {
                scopes.entry(k.clone()).or_insert(Some(old.state));
            }
        }
        self.last_seq = seq;
        if !scopes.is_empty() {
            self.updated = SystemTime::now();
        }
        Ok(scopes
            .into_iter()
            .map(|(scope, before)| Changed { scope, before })
            .collect())
    }

    /// A heartbeat names the last seq the agent sent; one ahead of ours
    /// means something was lost on the way.
    pub fn heartbeat(&mut self, seq: u64) -> Result<(), Rejected> {
        if !self.synced {
            return Err(Rejected::Resync(
                "no full snapshot in this session; send one".into(),
            ));
        }
        if seq > self.last_seq {
            self.synced = false;
            return Err(Rejected::Resync(format!(
                "heartbeat at seq {seq} but last applied is {}",
                self.last_seq
            )));
        }
        Ok(())
    }

    /// The node's readings as snapshot measurements, leaving out the scopes
    /// `skip` says someone else owns.
    pub fn measurements(&self, skip: impl Fn(&str) -> bool) -> Vec<Measurement> {
        let mut by_kind: BTreeMap<&str, Vec<Subtype>> = BTreeMap::new();
        for (k, r) in &self.readings {
            if skip(k) {
                continue;
            }
            by_kind
                .entry(&r.kind)
                .or_default()
                .push(r.state.to_subtype());
        }
        by_kind
            .into_iter()
            .map(|(kind, subtypes)| Measurement {
                kind: kind.to_string(),
                subtypes,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rep(kind: &str, name: &str, digest: &str, v: &str) -> Reported {
        let states = crate::states::States::default();
        let key = crate::states::content_key(kind, name, digest.as_bytes());
        Reported {
            kind: kind.into(),
            name: name.into(),
            state: states.intern(&scope(kind, name), key, Subtype::new(name).with("k", v)),
        }
    }

    fn names(c: &[Changed]) -> Vec<&str> {
        c.iter().map(|c| c.scope.as_str()).collect()
    }

    #[test]
    fn full_snapshot_reports_added_changed_and_removed_scopes() {
        let mut n = NodeState::new("n1");
        let c = n
            .apply_full(
                5,
                vec![rep("OS", "release", "a", "1"), rep("GPU", "smi", "b", "x")],
            )
            .unwrap();
        assert_eq!(names(&c), ["GPU.smi", "OS.release"]);
        let c = n
            .apply_full(
                9,
                vec![
                    rep("OS", "release", "a2", "2"),
                    rep("SystemD", "containerd.service", "c", "y"),
                ],
            )
            .unwrap();
        assert_eq!(
            names(&c),
            ["GPU.smi", "OS.release", "SystemD.containerd.service"]
        );
        assert!(c[0].before.is_some() && c[2].before.is_none());
        assert_eq!(n.last_seq, 9);
        let c = n
            .apply_full(
                1,
                vec![
                    rep("OS", "release", "a2", "2"),
                    rep("SystemD", "containerd.service", "c", "y"),
                ],
            )
            .unwrap();
        assert!(c.is_empty(), "an identical resend changes nothing");
    }

    #[test]
    fn updates_need_a_full_snapshot_and_the_next_seq() {
        let mut n = NodeState::new("n1");
        assert!(matches!(
            n.apply_update(1, vec![rep("OS", "release", "a", "1")], &[]),
            Err(Rejected::Resync(_))
        ));
        n.apply_full(10, vec![rep("OS", "release", "a", "1")])
            .unwrap();
        let c = n
            .apply_update(11, vec![rep("OS", "release", "b", "2")], &[])
            .unwrap();
        assert_eq!(names(&c), ["OS.release"]);
        assert_eq!(
            c[0].before.as_ref().unwrap().get("k").unwrap().render(),
            "1"
        );
        let c = n.apply_update(12, vec![], &["OS.release".into()]).unwrap();
        assert_eq!(names(&c), ["OS.release"]);
        let gap = n.apply_update(14, vec![], &[]).unwrap_err();
        assert_eq!(
            gap,
            Rejected::Resync("sequence gap: expected 13, got 14".into())
        );
        assert!(!n.synced, "after a gap only a full snapshot is accepted");
        assert!(n.apply_update(13, vec![], &[]).is_err());
    }

    #[test]
    fn heartbeats_ahead_of_the_applied_seq_ask_for_resync() {
        let mut n = NodeState::new("n1");
        n.apply_full(3, vec![]).unwrap();
        assert!(n.heartbeat(3).is_ok());
        assert!(
            n.heartbeat(2).is_ok(),
            "a heartbeat overtaken by an update is harmless"
        );
        assert!(matches!(n.heartbeat(4), Err(Rejected::Resync(_))));
    }

    #[test]
    fn subtype_count_is_bounded() {
        let mut n = NodeState::new("n1");
        let many: Vec<Reported> = (0..=MAX_SUBTYPES)
            .map(|i| rep("OS", &format!("s{i}"), "d", "v"))
            .collect();
        assert!(matches!(n.apply_full(1, many), Err(Rejected::Invalid(_))));
        n.apply_full(1, vec![]).unwrap();
        let many: Vec<Reported> = (0..=MAX_SUBTYPES)
            .map(|i| rep("OS", &format!("s{i}"), "d", "v"))
            .collect();
        assert!(matches!(
            n.apply_update(2, many, &[]),
            Err(Rejected::Invalid(_))
        ));
    }

    #[test]
    fn measurements_group_by_type_and_skip_foreign_scopes() {
        let mut n = NodeState::new("n1");
        n.apply_full(
            1,
            vec![
                rep("OS", "release", "a", "1"),
                rep("OS", "kmod", "b", "1"),
                rep("K8s", "server", "c", "v1"),
            ],
        )
        .unwrap();
        let ms = n.measurements(|s| s == "K8s.server");
        assert_eq!(ms.len(), 1);
        assert_eq!(ms[0].kind, "OS");
        assert_eq!(ms[0].subtypes.len(), 2);
    }
}
