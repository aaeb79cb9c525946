//! Snapshot documents in and out: assembling one from measurements (header
//! and metadata), and rendering it as YAML, JSON or upstream's table.

use std::collections::BTreeMap;

use crate::error::Result;
use crate::model::recipe::API_VERSION;
use crate::model::snapshot::{Measurement, Reading, SNAPSHOT_KIND, Snapshot};
use crate::sink::{self, OutputFormat};
use crate::yaml;

/// Measurement types in the order we write them.
pub(crate) const ORDER: [&str; 5] = ["K8s", "SystemD", "OS", "GPU", "NodeTopology"];

/// A snapshot of `measurements` (put in the canonical order) taken at
/// `started` on `node`.
pub fn assemble(
    mut measurements: Vec<Measurement>,
    node: &str,
    started: std::time::SystemTime,
) -> Snapshot {
    measurements.sort_by_key(|m| {
        ORDER
            .iter()
            .position(|t| *t == m.kind)
            .unwrap_or(ORDER.len())
    });
    let mut metadata = BTreeMap::new();
    metadata.insert(
        "timestamp".to_string(),
        humantime::format_rfc3339_seconds(started).to_string(),
    );
    metadata.insert("version".to_string(), crate::VERSION.to_string());
    metadata.insert("source-node".to_string(), node.to_string());
    Snapshot {
        kind: SNAPSHOT_KIND.into(),
        api_version: API_VERSION.into(),
        metadata,
        measurements,
    }
}

/// Upstream's table rows: Go field names, readings under `.V`, null readings
/// without it.
pub(crate) fn table_rows(snap: &Snapshot) -> Vec<(String, String)> {
    let mut rows = vec![
        ("Header.Kind".to_string(), snap.kind.clone()),
        ("Header.APIVersion".to_string(), snap.api_version.clone()),
    ];
    for (k, v) in &snap.metadata {
        rows.push((format!("Header.Metadata.{k}"), v.clone()));
    }
    for (i, m) in snap.measurements.iter().enumerate() {
        rows.push((format!("Measurements.[{i}].Type"), m.kind.clone()));
        for (j, s) in m.subtypes.iter().enumerate() {
            let p = format!("Measurements.[{i}].Subtypes.[{j}]");
            rows.push((format!("{p}.Name"), s.subtype.clone()));
            for (k, r) in &s.data {
                match r {
                    Reading::Null => rows.push((format!("{p}.Data.{k}"), "<nil>".into())),
                    other => rows.push((format!("{p}.Data.{k}.V"), other.render())),
                }
            }
            for (k, v) in &s.context {
                rows.push((format!("{p}.Context.{k}"), v.clone()));
            }
        }
    }
    rows
}

/// Render a snapshot in an output format.
pub fn render(snap: &Snapshot, format: OutputFormat) -> Result<String> {
    match format {
        OutputFormat::Yaml => yaml::to_yaml(snap),
        OutputFormat::Json => yaml::to_json(snap),
        OutputFormat::Table => Ok(sink::table(table_rows(snap))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::snapshot::Subtype;

    #[test]
    fn assemble_orders_measurements_and_fills_metadata() {
        let ms = vec![
            Measurement {
                kind: "GPU".into(),
                subtypes: vec![],
            },
            Measurement {
                kind: "K8s".into(),
                subtypes: vec![],
            },
            Measurement {
                kind: "OS".into(),
                subtypes: vec![],
            },
        ];
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_000_000);
        let s = assemble(ms, "gpu-1", t);
        let kinds: Vec<&str> = s.measurements.iter().map(|m| m.kind.as_str()).collect();
        assert_eq!(kinds, ["K8s", "OS", "GPU"]);
        assert_eq!(s.metadata["source-node"], "gpu-1");
        assert!(s.metadata["timestamp"].ends_with('Z') && !s.metadata["timestamp"].contains('.'));
    }

    #[test]
    fn table_uses_go_names_and_value_cells() {
        let s = Snapshot {
            kind: "Snapshot".into(),
            measurements: vec![Measurement {
                kind: "K8s".into(),
                subtypes: vec![
                    Subtype::new("server")
                        .with("version", "v1.33")
                        .with("n", Reading::Null),
                ],
            }],
            ..Default::default()
        };
        let t = render(&s, OutputFormat::Table).unwrap();
        assert!(
            t.contains("Measurements.[0].Subtypes.[0].Data.version.V  v1.33"),
            "{t}"
        );
        assert!(
            t.contains("Measurements.[0].Subtypes.[0].Data.n          <nil>"),
            "{t}"
        );
        assert!(t.starts_with("FIELD"));
    }
}
