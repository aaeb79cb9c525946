//! The Snapshot document: measurements of one node or cluster, grouped as
//! `{Type}.{Subtype}.{Key}` readings. Shapes and reading rules only; the
//! collectors that fill it live in the agent crate.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::error::Result;
use crate::yaml::{self, Format};

pub const SNAPSHOT_KIND: &str = "Snapshot";

/// Measurement types a constraint path may name.
pub const MEASUREMENT_TYPES: [&str; 5] = ["K8s", "GPU", "OS", "SystemD", "NodeTopology"];

/// One scalar reading. Floats keep the text they were written with so that
/// `22.10` compares as `22.10`, not as the re-rendered `22.1`.
#[derive(Debug, Clone, PartialEq)]
pub enum Reading {
    Str(String),
    Int(i64),
    Uint(u64),
    Float { value: f64, text: Option<String> },
    Bool(bool),
    Null,
}

impl Reading {
    pub fn float(value: f64) -> Reading {
        Reading::Float { value, text: None }
    }

    /// The reading as constraint evaluation, templates and tables see it.
    /// Null renders as `<nil>` to match upstream's constraint results.
    pub fn render(&self) -> String {
        match self {
            Reading::Str(s) => s.clone(),
            Reading::Int(i) => i.to_string(),
            Reading::Uint(u) => u.to_string(),
            Reading::Float { text: Some(t), .. } => t.clone(),
            Reading::Float { value, .. } => yaml::go_float(*value),
            Reading::Bool(b) => b.to_string(),
            Reading::Null => "<nil>".into(),
        }
    }
}

impl From<&str> for Reading {
    fn from(s: &str) -> Self {
        Reading::Str(s.to_string())
    }
}

impl From<String> for Reading {
    fn from(s: String) -> Self {
        Reading::Str(s)
    }
}

impl From<bool> for Reading {
    fn from(b: bool) -> Self {
        Reading::Bool(b)
    }
}

impl From<i64> for Reading {
    fn from(i: i64) -> Self {
        Reading::Int(i)
    }
}

impl From<u64> for Reading {
    fn from(u: u64) -> Self {
        Reading::Uint(u)
    }
}

impl Serialize for Reading {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Reading::Str(v) => s.serialize_str(v),
            Reading::Int(v) => s.serialize_i64(*v),
            Reading::Uint(v) => s.serialize_u64(*v),
            Reading::Float { value, .. } => s.serialize_f64(*value),
            Reading::Bool(v) => s.serialize_bool(*v),
            Reading::Null => s.serialize_unit(),
        }
    }
}

struct ReadingVisitor;

impl<'de> Visitor<'de> for ReadingVisitor {
    type Value = Reading;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a scalar reading")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Reading, E> {
        Ok(Reading::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Reading, E> {
        Ok(Reading::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Reading, E> {
        Ok(i64::try_from(v).map_or(Reading::Uint(v), Reading::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Reading, E> {
        Ok(Reading::float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Reading, E> {
        Ok(Reading::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Reading, E> {
        Ok(Reading::Str(v))
    }
    fn visit_unit<E>(self) -> Result<Reading, E> {
        Ok(Reading::Null)
    }
    fn visit_none<E>(self) -> Result<Reading, E> {
        Ok(Reading::Null)
    }
    // No writer nests values in readings; upstream stringifies them, so we
    // keep them readable instead of failing the whole document.
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Reading, A::Error> {
        let v = serde_json::Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        Ok(Reading::Str(v.to_string()))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Reading, A::Error> {
        let v = serde_json::Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(Reading::Str(v.to_string()))
    }
}

impl<'de> Deserialize<'de> for Reading {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ReadingVisitor)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Subtype {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subtype: String,
    #[serde(default, deserialize_with = "sorted_entries")]
    pub data: BTreeMap<String, Reading>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub context: BTreeMap<String, String>,
}

/// Reads a map by collecting its entries and building the tree in one
/// pass. Snapshots are written sorted, and for sorted entries that costs
/// one comparison per key instead of a search per insert: a node's
/// hundreds of sysctls, for every agent that reports to the aggregator.
/// Of duplicate keys the last wins, as with inserting.
fn sorted_entries<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<BTreeMap<String, Reading>, D::Error> {
    struct Entries;
    impl<'de> Visitor<'de> for Entries {
        type Value = BTreeMap<String, Reading>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a map of readings")
        }

        fn visit_map<A: MapAccess<'de>>(
            self,
            mut map: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            let mut entries: Vec<(String, Reading)> =
                Vec::with_capacity(map.size_hint().unwrap_or(0).min(4096));
            while let Some(entry) = map.next_entry()? {
                entries.push(entry);
            }
            Ok(entries.into_iter().collect())
        }
    }
    d.deserialize_map(Entries)
}

impl Subtype {
    pub fn new(name: impl Into<String>) -> Subtype {
        Subtype {
            subtype: name.into(),
            ..Default::default()
        }
    }

    pub fn with(mut self, key: impl Into<String>, value: impl Into<Reading>) -> Subtype {
        self.data.insert(key.into(), value.into());
        self
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subtypes: Vec<Subtype>,
}

impl Measurement {
    pub fn subtype(&self, name: &str) -> Option<&Subtype> {
        self.subtypes.iter().find(|s| s.subtype == name)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub measurements: Vec<Measurement>,
}

/// Why a reading could not be looked up; the texts are the spec's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupMiss {
    Type,
    Subtype,
    Key,
}

impl fmt::Display for LookupMiss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LookupMiss::Type => "measurement type not found in snapshot",
            LookupMiss::Subtype => "subtype not found in measurement",
            LookupMiss::Key => "key not found in subtype",
        })
    }
}

impl Snapshot {
    pub fn measurement(&self, kind: &str) -> Option<&Measurement> {
        self.measurements.iter().find(|m| m.kind == kind)
    }

    /// First measurement of `kind`, first subtype named `subtype`, exact key.
    pub fn lookup(&self, kind: &str, subtype: &str, key: &str) -> Result<&Reading, LookupMiss> {
        let m = self.measurement(kind).ok_or(LookupMiss::Type)?;
        let s = m.subtype(subtype).ok_or(LookupMiss::Subtype)?;
        s.data.get(key).ok_or(LookupMiss::Key)
    }

    /// Parse a snapshot document. For YAML, float readings keep the digits
    /// they were written with (see [`Reading`]).
    pub fn parse(text: &str, format: Format) -> Result<Snapshot> {
        let mut snap: Snapshot = yaml::parse(text, format)?;
        if format == Format::Yaml {
            // A second, text-only pass recovers the source digits of floats;
            // if it cannot (odd nesting), the typed values still stand.
            if let Ok(raw) = yaml::from_yaml::<RawSnapshot>(text) {
                snap.attach_float_text(raw);
            }
        }
        Ok(snap)
    }

    fn attach_float_text(&mut self, raw: RawSnapshot) {
        for (m, rm) in self.measurements.iter_mut().zip(raw.measurements) {
            for (s, rs) in m.subtypes.iter_mut().zip(rm.subtypes) {
                for (k, v) in s.data.iter_mut() {
                    if let (Reading::Float { text, .. }, Some(RawText(Some(t)))) =
                        (v, rs.data.get(k))
                    {
                        *text = Some(t.clone());
                    }
                }
            }
        }
    }
}

#[derive(Deserialize)]
struct RawSnapshot {
    #[serde(default)]
    measurements: Vec<RawMeasurement>,
}

#[derive(Deserialize)]
struct RawMeasurement {
    #[serde(default)]
    subtypes: Vec<RawSubtype>,
}

#[derive(Deserialize)]
struct RawSubtype {
    #[serde(default)]
    data: BTreeMap<String, RawText>,
}

/// A scalar's source text, asked for as a string so the YAML deserializer
/// hands over plain scalars verbatim.
struct RawText(Option<String>);

impl<'de> Deserialize<'de> for RawText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a scalar")
            }
            fn visit_str<E>(self, v: &str) -> Result<RawText, E> {
                Ok(RawText(Some(v.to_string())))
            }
            fn visit_unit<E>(self) -> Result<RawText, E> {
                Ok(RawText(None))
            }
            fn visit_none<E>(self) -> Result<RawText, E> {
                Ok(RawText(None))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<RawText, D::Error> {
                d.deserialize_str(V)
            }
        }
        // Null cannot be asked for as a string; ask for an option first.
        d.deserialize_option(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_in_any_order_read_as_inserting_them_would() {
        let st: Subtype = serde_json::from_str(
            r#"{"subtype": "sysctl", "data": {"b": "2", "a": 1, "c": true, "a": "last"}}"#,
        )
        .unwrap();
        let want = Subtype::new("sysctl")
            .with("a", "last")
            .with("b", "2")
            .with("c", true);
        assert_eq!(st, want);
        assert!(serde_json::from_str::<Subtype>(r#"{"data": [1]}"#).is_err());
        assert!(
            serde_json::from_str::<Subtype>(r#"{}"#)
                .unwrap()
                .data
                .is_empty()
        );
    }

    const SNAP: &str = r#"
kind: Snapshot
apiVersion: aicr.nvidia.com/v1alpha1
metadata: {source-node: gpu-1}
measurements:
  - type: SystemD
  - type: OS
    subtypes:
      - subtype: release
        data:
          ID: ubuntu
          VERSION_ID: 22.10
          QUOTED: "24.04"
          big: 1234567.0
          none: ~
          flag: true
          count: 8
"#;

    #[test]
    fn float_readings_keep_their_source_digits() {
        let s = Snapshot::parse(SNAP, Format::Yaml).unwrap();
        let r = |k| s.lookup("OS", "release", k).unwrap().render();
        assert_eq!(r("VERSION_ID"), "22.10");
        assert_eq!(r("QUOTED"), "24.04");
        assert_eq!(r("big"), "1234567.0");
        assert_eq!(r("none"), "<nil>");
        assert_eq!(r("flag"), "true");
        assert_eq!(r("count"), "8");
    }

    #[test]
    fn lookup_misses_say_which_level() {
        let s = Snapshot::parse(SNAP, Format::Yaml).unwrap();
        assert_eq!(s.lookup("GPU", "smi", "x").unwrap_err(), LookupMiss::Type);
        assert_eq!(
            s.lookup("OS", "grub", "x").unwrap_err(),
            LookupMiss::Subtype
        );
        assert_eq!(s.lookup("OS", "release", "x").unwrap_err(), LookupMiss::Key);
    }

    #[test]
    fn round_trips_through_yaml_and_json() {
        let s = Snapshot::parse(SNAP, Format::Yaml).unwrap();
        let y = yaml::to_yaml(&s).unwrap();
        let back = Snapshot::parse(&y, Format::Yaml).unwrap();
        assert_eq!(back.measurements.len(), s.measurements.len());
        assert_eq!(
            back.lookup("OS", "release", "QUOTED").unwrap(),
            &Reading::Str("24.04".into())
        );
        let j = yaml::to_json(&s).unwrap();
        let back = Snapshot::parse(&j, Format::Json).unwrap();
        assert_eq!(
            back.lookup("OS", "release", "count").unwrap(),
            &Reading::Int(8)
        );
        assert_eq!(
            back.lookup("OS", "release", "none").unwrap(),
            &Reading::Null
        );
        assert!(back.measurement("SystemD").unwrap().subtypes.is_empty());
    }
}
