//! The agent's side of one AgentService session as pure state: the sequence
//! number and the digest of every subtype the aggregator now holds. It
//! decides what a full snapshot, an update or a heartbeat carries; it does
//! no I/O and knows nothing about timers or reconnects (see `stream`).
//!
//! Sequence numbers are monotonic for the whole session: a full snapshot
//! sent in answer to Resync takes the next number too, so the aggregator
//! never sees a number twice.

use std::collections::BTreeMap;

use aicr::proto::{FullSnapshot, Heartbeat, SubtypeState, SubtypeUpdate};

#[derive(Debug, Default)]
pub struct Session {
    seq: u64,
    /// Scope → digest of what was last sent for it.
    sent: BTreeMap<String, String>,
}

impl Session {
    pub fn new() -> Session {
        Session::default()
    }

    /// The seq of the last full snapshot or update sent (0: none yet).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Everything in `current`; what the aggregator holds afterwards is
    /// exactly this, so later updates are diffed against it.
    pub fn full(&mut self, current: &BTreeMap<String, SubtypeState>) -> FullSnapshot {
        self.seq += 1;
        self.sent = current
            .iter()
            .map(|(k, s)| (k.clone(), s.digest.clone()))
            .collect();
        FullSnapshot {
            seq: self.seq,
            subtypes: current.values().cloned().collect(),
        }
    }

    /// Only the subtypes whose digest differs from what was sent, plus the
    /// scopes that disappeared; `None` (and no seq spent) when nothing did.
    pub fn update(&mut self, current: &BTreeMap<String, SubtypeState>) -> Option<SubtypeUpdate> {
        let changed: Vec<SubtypeState> = current
            .iter()
            .filter(|(k, s)| self.sent.get(*k) != Some(&s.digest))
            .map(|(_, s)| s.clone())
            .collect();
        let removed: Vec<String> = self
            .sent
            .keys()
            .filter(|k| !current.contains_key(*k))
            .cloned()
            .collect();
        if changed.is_empty() && removed.is_empty() {
            return None;
        }
        for k in &removed {
            self.sent.remove(k);
        }
        for s in &changed {
            self.sent.insert(
                crate::digest::scope(&s.r#type, &s.subtype),
                s.digest.clone(),
            );
        }
        self.seq += 1;
        Some(SubtypeUpdate {
            seq: self.seq,
            changed,
            removed,
        })
    }

    pub fn heartbeat(&self, unix_millis: i64) -> Heartbeat {
        Heartbeat {
            seq: self.seq,
            unix_millis,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::{state, states};
    use aicr::model::snapshot::{Measurement, Subtype};

    fn node(version: &str, with_gpu: bool) -> BTreeMap<String, SubtypeState> {
        let mut ms = vec![Measurement {
            kind: "OS".into(),
            subtypes: vec![
                Subtype::new("release").with("VERSION_ID", version),
                Subtype::new("grub").with("iommu", "pt"),
            ],
        }];
        if with_gpu {
            ms.push(Measurement {
                kind: "GPU".into(),
                subtypes: vec![Subtype::new("smi").with("gpu-count", 8i64)],
            });
        }
        states(&ms)
    }

    fn scopes(u: &SubtypeUpdate) -> Vec<String> {
        u.changed
            .iter()
            .map(|s| format!("{}.{}", s.r#type, s.subtype))
            .collect()
    }

    #[test]
    fn only_changed_subtypes_are_sent() {
        let mut s = Session::new();
        let full = s.full(&node("24.04", true));
        assert_eq!((full.seq, full.subtypes.len()), (1, 3));
        assert!(s.update(&node("24.04", true)).is_none());
        assert_eq!(s.seq(), 1, "an empty update spends no seq");

        let u = s.update(&node("22.04", true)).unwrap();
        assert_eq!(u.seq, 2);
        assert_eq!(scopes(&u), ["OS.release"]);
        assert!(u.removed.is_empty());
        assert_eq!(
            u.changed[0].digest,
            state("OS", &Subtype::new("release").with("VERSION_ID", "22.04")).digest
        );
        assert!(s.update(&node("22.04", true)).is_none());

        let u = s.update(&node("22.04", false)).unwrap();
        assert_eq!((u.seq, u.changed.len()), (3, 0));
        assert_eq!(u.removed, ["GPU.smi"]);

        let u = s.update(&node("22.04", true)).unwrap();
        assert_eq!((u.seq, scopes(&u)), (4, vec!["GPU.smi".to_string()]));
        assert!(u.removed.is_empty());
    }

    #[test]
    fn resync_sends_everything_with_the_next_seq() {
        let mut s = Session::new();
        s.full(&node("24.04", true));
        s.update(&node("22.04", true)).unwrap();
        assert_eq!(s.heartbeat(5).seq, 2);

        // Resync: a full snapshot continues the sequence and resets the
        // baseline, so the next change is diffed against it.
        let full = s.full(&node("22.04", true));
        assert_eq!((full.seq, full.subtypes.len()), (3, 3));
        assert_eq!(
            s.heartbeat(6),
            Heartbeat {
                seq: 3,
                unix_millis: 6
            }
        );
        assert!(s.update(&node("22.04", true)).is_none());
        let u = s.update(&node("24.04", true)).unwrap();
        assert_eq!((u.seq, scopes(&u)), (4, vec!["OS.release".to_string()]));
    }

    #[test]
    fn a_new_session_starts_over() {
        let mut old = Session::new();
        old.full(&node("24.04", true));
        old.update(&node("22.04", true)).unwrap();
        let mut s = Session::new();
        assert_eq!(s.heartbeat(0).seq, 0);
        let full = s.full(&node("22.04", true));
        assert_eq!((full.seq, full.subtypes.len()), (1, 3));
    }
}
