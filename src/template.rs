//! Rendering a snapshot through a user template (`aicr snapshot
//! --template`). Templates are Tera; the context uses the upstream Go field
//! names (`Kind`, `Measurements[].Subtypes[].Data`, ...) so templates read
//! like the upstream ones. Readings are plain scalars rendered as text.

use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
use crate::model::snapshot::{Reading, Snapshot};

fn reading_value(r: &Reading) -> Value {
    match r {
        Reading::Str(s) => Value::String(s.clone()),
        Reading::Int(i) => Value::from(*i),
        Reading::Uint(u) => Value::from(*u),
        Reading::Bool(b) => Value::Bool(*b),
        // Floats and null print as their reading text (`22.10`, `<nil>`).
        other => Value::String(other.render()),
    }
}

/// The template context: the snapshot under Go-style names, maps sorted.
pub fn context(snap: &Snapshot) -> Value {
    let metadata: Map<String, Value> = snap
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let measurements: Vec<Value> = snap
        .measurements
        .iter()
        .map(|m| {
            let subtypes: Vec<Value> = m
                .subtypes
                .iter()
                .map(|s| {
                    let data: Map<String, Value> = s
                        .data
                        .iter()
                        .map(|(k, v)| (k.clone(), reading_value(v)))
                        .collect();
                    json!({"Name": s.subtype, "Data": data, "Context": s.context})
                })
                .collect();
            json!({"Type": m.kind, "Subtypes": subtypes})
        })
        .collect();
    json!({
        "Kind": snap.kind,
        "APIVersion": snap.api_version,
        "Metadata": metadata,
        "Header": {"Kind": snap.kind, "APIVersion": snap.api_version, "Metadata": metadata},
        "Measurements": measurements,
    })
}

/// A parsed template, ready to render; parse errors are invalid input.
pub struct Template {
    tera: tera::Tera,
}

const NAME: &str = "snapshot";

fn chain(e: &tera::Error) -> String {
    crate::error::chain(e).replace('\n', " ")
}

impl Template {
    pub fn parse(text: &str) -> Result<Template> {
        let mut tera = tera::Tera::default();
        tera.autoescape_on(vec![]);
        tera.add_raw_template(NAME, text)
            .map_err(|e| Error::invalid(format!("failed to parse template: {}", chain(&e))))?;
        Ok(Template { tera })
    }

    /// Render; errors here come from the data meeting the template.
    pub fn render(&self, snap: &Snapshot) -> Result<String> {
        let ctx = tera::Context::from_value(context(snap))
            .map_err(|e| Error::internal(format!("failed to build template context: {e}")))?;
        self.tera
            .render(NAME, &ctx)
            .map_err(|e| Error::internal(format!("failed to execute template: {}", chain(&e))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::snapshot::{Measurement, Subtype};

    fn snap() -> Snapshot {
        Snapshot {
            kind: "Snapshot".into(),
            api_version: "aicr.nvidia.com/v1alpha1".into(),
            metadata: [("source-node".to_string(), "gpu-1".to_string())].into(),
            measurements: vec![Measurement {
                kind: "GPU".into(),
                subtypes: vec![
                    Subtype::new("smi")
                        .with("gpu.model", "H100")
                        .with("gpu-count", 8i64),
                ],
            }],
        }
    }

    #[test]
    fn renders_go_style_names() {
        let t = Template::parse(
            "{{ Metadata[\"source-node\"] }}:{% for m in Measurements %}{% for s in m.Subtypes %}{{ s.Data[\"gpu.model\"] }}x{{ s.Data[\"gpu-count\"] }}{% endfor %}{% endfor %}",
        )
        .unwrap();
        assert_eq!(t.render(&snap()).unwrap(), "gpu-1:H100x8");
    }

    #[test]
    fn parse_and_render_errors_are_classified() {
        assert_eq!(
            Template::parse("{% if %}").err().unwrap().kind(),
            crate::ErrorKind::InvalidRequest
        );
        let t = Template::parse("{{ Nope.field }}").unwrap();
        assert_eq!(
            t.render(&snap()).unwrap_err().kind(),
            crate::ErrorKind::Internal
        );
    }
}
