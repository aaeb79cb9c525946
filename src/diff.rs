//! The difference between two snapshots, reading by reading: which
//! `{Type}.{Subtype}.{key}` readings one has and the other lacks, and which
//! both have with different values. Pure: documents in, differences out;
//! loading the snapshots and printing the result belong to the caller.
//!
//! Readings compare by their rendered text, the form constraints and
//! reports see, so a value read back from YAML (`1`) equals the same value
//! sent as a string by an agent (`"1"`). Snapshot metadata (timestamps, the
//! source node) and subtype context are not readings and never differ.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::model::snapshot::Snapshot;

/// Reading paths to leave out, as shell-style globs over
/// `{Type}.{Subtype}.{key}` (`*` crosses dots: `GPU.*.serial*`).
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    set: Option<globset::GlobSet>,
}

impl Ignore {
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Ignore> {
        if patterns.is_empty() {
            return Ok(Ignore::default());
        }
        let mut b = globset::GlobSetBuilder::new();
        for p in patterns {
            let p = p.as_ref();
            let glob = globset::GlobBuilder::new(p)
                .literal_separator(false)
                .build()
                .map_err(|e| {
                    Error::invalid(format!("invalid ignore pattern {p:?}: {}", e.kind()))
                })?;
            b.add(glob);
        }
        let set = b
            .build()
            .map_err(|e| Error::invalid(format!("invalid ignore patterns: {e}")))?;
        Ok(Ignore { set: Some(set) })
    }

    pub fn matches(&self, path: &str) -> bool {
        self.set.as_ref().is_some_and(|s| s.is_match(path))
    }
}

/// What happened to one reading between the first and the second snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "lowercase")]
pub enum Change {
    Added { new: String },
    Removed { old: String },
    Changed { old: String, new: String },
}

/// One differing reading.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    pub measurement: String,
    pub subtype: String,
    pub key: String,
    #[serde(flatten)]
    pub change: Change,
}

impl Difference {
    /// `{Type}.{Subtype}.{key}`, the path constraints and ignores use.
    pub fn path(&self) -> String {
        format!("{}.{}.{}", self.measurement, self.subtype, self.key)
    }
}

/// Every differing reading, ordered by measurement, subtype and key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Diff {
    pub differences: Vec<Difference>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.differences.is_empty()
    }

    /// (added, removed, changed)
    pub fn counts(&self) -> (usize, usize, usize) {
        self.differences
            .iter()
            .fold((0, 0, 0), |(a, r, c), d| match d.change {
                Change::Added { .. } => (a + 1, r, c),
                Change::Removed { .. } => (a, r + 1, c),
                Change::Changed { .. } => (a, r, c + 1),
            })
    }

    /// One line per difference (`+` added, `-` removed, `~` changed) and a
    /// summary line, for people.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for d in &self.differences {
            let line = match &d.change {
                Change::Added { new } => format!("+ {}: {new}\n", d.path()),
                Change::Removed { old } => format!("- {}: {old}\n", d.path()),
                Change::Changed { old, new } => format!("~ {}: {old} -> {new}\n", d.path()),
            };
            out.push_str(&line);
        }
        let (a, r, c) = self.counts();
        match self.differences.len() {
            0 => out.push_str("snapshots are equal\n"),
            n => out.push_str(&format!(
                "{n} difference{} ({a} added, {r} removed, {c} changed)\n",
                if n == 1 { "" } else { "s" }
            )),
        }
        out
    }
}

type Readings = BTreeMap<(String, String, String), String>;

fn readings(s: &Snapshot, ignore: &Ignore) -> Readings {
    let mut out = Readings::new();
    for m in &s.measurements {
        for st in &m.subtypes {
            for (k, v) in &st.data {
                let path = format!("{}.{}.{k}", m.kind, st.subtype);
                if !ignore.matches(&path) {
                    out.insert((m.kind.clone(), st.subtype.clone(), k.clone()), v.render());
                }
            }
        }
    }
    out
}

/// The readings that differ from `a` to `b`, leaving out ignored paths.
pub fn diff(a: &Snapshot, b: &Snapshot, ignore: &Ignore) -> Diff {
    let (old, new) = (readings(a, ignore), readings(b, ignore));
    let mut differences = Vec::new();
    let mut push = |(m, s, k): &(String, String, String), change| {
        differences.push(Difference {
            measurement: m.clone(),
            subtype: s.clone(),
            key: k.clone(),
            change,
        })
    };
    for (path, before) in &old {
        match new.get(path) {
            None => push(
                path,
                Change::Removed {
                    old: before.clone(),
                },
            ),
            Some(after) if after != before => push(
                path,
                Change::Changed {
                    old: before.clone(),
                    new: after.clone(),
                },
            ),
            Some(_) => {}
        }
    }
    for (path, after) in &new {
        if !old.contains_key(path) {
            push(path, Change::Added { new: after.clone() });
        }
    }
    differences.sort_by(|x, y| {
        (&x.measurement, &x.subtype, &x.key).cmp(&(&y.measurement, &y.subtype, &y.key))
    });
    Diff { differences }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::snapshot::{Measurement, Reading, Subtype};

    fn snap(readings: &[(&str, &str, &str, Reading)]) -> Snapshot {
        let mut s = Snapshot::default();
        for (m, st, k, v) in readings {
            let mi = match s.measurements.iter().position(|x| x.kind == *m) {
                Some(i) => i,
                None => {
                    s.measurements.push(Measurement {
                        kind: m.to_string(),
                        subtypes: vec![],
                    });
                    s.measurements.len() - 1
                }
            };
            let meas = &mut s.measurements[mi];
            match meas.subtypes.iter_mut().find(|x| x.subtype == *st) {
                Some(sub) => {
                    sub.data.insert(k.to_string(), v.clone());
                }
                None => meas.subtypes.push(Subtype::new(*st).with(*k, v.clone())),
            }
        }
        s
    }

    #[test]
    fn added_removed_and_changed_readings_are_named_in_path_order() {
        let a = snap(&[
            ("OS", "sysctl", "/proc/sys/kernel/a", "1".into()),
            ("OS", "sysctl", "/proc/sys/kernel/gone", "x".into()),
            ("GPU", "smi", "driver", "550".into()),
        ]);
        let b = snap(&[
            ("OS", "sysctl", "/proc/sys/kernel/a", "0".into()),
            ("GPU", "smi", "driver", "550".into()),
            ("SystemD", "kubelet.service", "ActiveState", "active".into()),
        ]);
        let d = diff(&a, &b, &Ignore::default());
        let paths: Vec<String> = d.differences.iter().map(Difference::path).collect();
        assert_eq!(
            paths,
            [
                "OS.sysctl./proc/sys/kernel/a",
                "OS.sysctl./proc/sys/kernel/gone",
                "SystemD.kubelet.service.ActiveState"
            ]
        );
        assert_eq!(d.counts(), (1, 1, 1));
        assert_eq!(
            d.text().lines().collect::<Vec<_>>(),
            [
                "~ OS.sysctl./proc/sys/kernel/a: 1 -> 0",
                "- OS.sysctl./proc/sys/kernel/gone: x",
                "+ SystemD.kubelet.service.ActiveState: active",
                "3 differences (1 added, 1 removed, 1 changed)"
            ]
        );
    }

    #[test]
    fn values_compare_as_rendered_and_metadata_is_not_a_reading() {
        let mut a = snap(&[("OS", "grub", "hugepages", Reading::Int(8))]);
        let mut b = snap(&[("OS", "grub", "hugepages", "8".into())]);
        a.metadata
            .insert("timestamp".into(), "2026-01-01T00:00:00Z".into());
        b.metadata
            .insert("timestamp".into(), "2026-02-01T00:00:00Z".into());
        let d = diff(&a, &b, &Ignore::default());
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(d.text(), "snapshots are equal\n");
    }

    #[test]
    fn ignore_globs_cross_dots_and_bad_ones_are_invalid_input() {
        let a = snap(&[
            ("GPU", "smi", "gpu.0.serial", "A1".into()),
            ("OS", "release", "ID", "ubuntu".into()),
        ]);
        let b = snap(&[
            ("GPU", "smi", "gpu.0.serial", "B2".into()),
            ("OS", "release", "ID", "rhel".into()),
        ]);
        let d = diff(&a, &b, &Ignore::new(&["GPU.*serial"]).unwrap());
        assert_eq!(d.differences.len(), 1);
        assert_eq!(d.differences[0].path(), "OS.release.ID");
        let e = Ignore::new(&["GPU.[smi"]).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidRequest);
        assert!(
            e.message()
                .starts_with("invalid ignore pattern \"GPU.[smi\""),
            "{}",
            e.message()
        );
    }

    #[test]
    fn json_names_the_change_and_both_values() {
        let a = snap(&[("K8s", "server", "version", "v1.33.1".into())]);
        let b = snap(&[("K8s", "server", "version", "v1.33.5".into())]);
        let v = serde_json::to_value(diff(&a, &b, &Ignore::default())).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"differences": [{
                "measurement": "K8s", "subtype": "server", "key": "version",
                "change": "changed", "old": "v1.33.1", "new": "v1.33.5"
            }]})
        );
    }
}
