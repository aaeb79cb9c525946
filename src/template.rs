//! Rendering a snapshot through a user template (`aicr snapshot
//! --template`). The file name picks the engine: a name ending in `.tera`
//! is a Tera template; anything else (`.tmpl`, `.tpl`, `.md`, no
//! extension, a URL) is a Go template, as upstream's templates are, with
//! the Sprig functions `bundle::gotmpl` provides.
//!
//! Both engines see the snapshot under upstream's Go field names:
//!
//! | Go template | Tera | content |
//! |---|---|---|
//! | `.Kind`, `.APIVersion` | `Kind`, `APIVersion` | header strings (also under `.Header`) |
//! | `.Metadata` | `Metadata` | map: `timestamp`, `version`, `source-node` |
//! | `.Measurements` | `Measurements` | list; each has `.Type` and `.Subtypes` |
//! | `.Type` | `Type` | `K8s`, `GPU`, `OS`, `SystemD`, `NodeTopology` (Go: `.Type.String` too) |
//! | `.Subtypes` | `Subtypes` | list; each has `.Name`, `.Data`, `.Context` |
//! | `.Name` | `Name` | the subtype's name (`subtype` in the YAML) |
//! | `.Data` | `Data` | map key → reading (`index .Data "gpu.model"`) |
//! | `.Context` | `Context` | map string → string |
//!
//! In a Go template a reading is what upstream's `measurement.Reading` is:
//! it prints as its text (floats as written, null as `<nil>`), `.String`
//! gives that text and `.Any` the typed value (an `int` for `gpu-count`, so
//! `gt (index .Data "gpu-count").Any 0` works), and a present reading is
//! true in `if` even when empty. Numbers are typed as Go structs type them
//! (`DataTypes::Typed`), not as Helm values (all `float64`). In Tera a
//! reading is its plain value.

use serde_json::{Map, Value, json};

use crate::bundle::gotmpl::{self, DataTypes};
use crate::error::{Error, Result};
use crate::model::snapshot::{Reading, Snapshot};

/// Which template language a file is read with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Engine {
    /// Go `text/template` with Sprig (upstream's engine): the default.
    Go,
    /// Tera: files whose name ends in `.tera`.
    Tera,
}

impl Engine {
    /// The engine for a template path or URL: `.tera` is Tera, anything
    /// else Go. A URL's query and fragment are not part of its name.
    pub(crate) fn for_name(name: &str) -> Engine {
        let path = name.split(['?', '#']).next().unwrap_or(name);
        let file = path.rsplit(['/', '\\']).next().unwrap_or(path);
        if file.to_ascii_lowercase().ends_with(".tera") {
            Engine::Tera
        } else {
            Engine::Go
        }
    }

    /// How error messages name the engine.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Engine::Go => "a Go template (any name not ending in .tera)",
            Engine::Tera => "a Tera template (.tera)",
        }
    }
}

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

/// A reading as upstream's Go templates see it: `Any` the typed value
/// (null reads as the string `<nil>`, as upstream reads it), `String` and
/// printing the reading's text.
fn go_reading(r: &Reading) -> Value {
    let any = match r {
        Reading::Float { value, .. } => serde_json::Number::from_f64(*value)
            .map_or_else(|| Value::String(r.render()), Value::Number),
        other => reading_value(other),
    };
    gotmpl::reading(any, r.render())
}

/// The snapshot under Go-style names, maps sorted, each reading made by
/// `reading`.
fn build(snap: &Snapshot, reading: fn(&Reading) -> Value) -> Value {
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
                        .map(|(k, v)| (k.clone(), reading(v)))
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

/// The Tera context: readings are plain scalars.
pub(crate) fn context(snap: &Snapshot) -> Value {
    build(snap, reading_value)
}

/// The Go template data: readings carry `String` and `Any`.
pub(crate) fn go_data(snap: &Snapshot) -> Value {
    build(snap, go_reading)
}

enum Inner {
    Tera(Box<tera::Tera>),
    Go(gotmpl::Template),
}

/// A parsed template, ready to render; parse errors are invalid input.
pub struct Template {
    inner: Inner,
}

const NAME: &str = "snapshot";

fn chain(e: &tera::Error) -> String {
    crate::error::chain(e).replace('\n', " ")
}

fn parse_tera(text: &str) -> std::result::Result<Inner, String> {
    let mut tera = tera::Tera::default();
    tera.autoescape_on(vec![]);
    tera.add_raw_template(NAME, text).map_err(|e| chain(&e))?;
    Ok(Inner::Tera(Box::new(tera)))
}

fn parse_go(name: &str, text: &str) -> std::result::Result<Inner, String> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    gotmpl::Template::parse(base, text)
        .map(Inner::Go)
        .map_err(|e| e.message().replace('\n', " "))
}

impl Template {
    /// Parse `text` with the engine its file name `name` (a path or URL)
    /// selects; a parse error says which engine read it, on one line.
    pub fn load(name: &str, text: &str) -> Result<Template> {
        let engine = Engine::for_name(name);
        let parsed = match engine {
            Engine::Tera => parse_tera(text),
            Engine::Go => parse_go(name, text),
        };
        parsed.map(|inner| Template { inner }).map_err(|e| {
            Error::invalid(format!(
                "failed to parse template {name} as {}: {e}",
                engine.describe()
            ))
        })
    }

    /// A Tera template.
    pub fn parse(text: &str) -> Result<Template> {
        parse_tera(text)
            .map(|inner| Template { inner })
            .map_err(|e| Error::invalid(format!("failed to parse template: {e}")))
    }

    /// Render; errors here come from the data meeting the template.
    pub fn render(&self, snap: &Snapshot) -> Result<String> {
        match &self.inner {
            Inner::Tera(tera) => {
                let ctx = tera::Context::from_value(context(snap)).map_err(|e| {
                    Error::internal(format!("failed to build template context: {e}"))
                })?;
                tera.render(NAME, &ctx).map_err(|e| {
                    Error::internal(format!("failed to execute template: {}", chain(&e)))
                })
            }
            Inner::Go(t) => t
                .render_with(&go_data(snap), DataTypes::Typed)
                .map_err(|e| {
                    Error::internal(format!(
                        "failed to execute template: {}",
                        e.message().replace('\n', " ")
                    ))
                }),
        }
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
                        .with("gpu-count", 8i64)
                        .with("empty", "")
                        .with("ratio", Reading::float(0.5))
                        .with("gone", Reading::Null),
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
    fn the_file_name_picks_the_engine() {
        assert_eq!(Engine::for_name("report.md.tera"), Engine::Tera);
        assert_eq!(Engine::for_name("/x/R.TERA"), Engine::Tera);
        assert_eq!(Engine::for_name("https://h/t.tera?ref=main"), Engine::Tera);
        for go in [
            "snapshot-template.md.tmpl",
            "t.tpl",
            "t",
            "t.tera.tmpl",
            "https://h/t.tmpl#x",
        ] {
            assert_eq!(Engine::for_name(go), Engine::Go, "{go}");
        }
        let t = Template::load("r.md.tmpl", "{{ .Kind }}").unwrap();
        assert!(matches!(t.inner, Inner::Go(_)));
        assert_eq!(t.render(&snap()).unwrap(), "Snapshot");
        // The same text read as Tera is plain text.
        let t = Template::load("r.tera", "{{ .Kind }}");
        assert!(t.is_err(), "Tera has no leading-dot names");
    }

    #[test]
    fn go_templates_see_upstream_fields_and_readings() {
        let t = Template::load(
            "t.tmpl",
            concat!(
                r#"{{ .APIVersion }} {{ index .Metadata "source-node" }} {{ .Header.Kind }}"#,
                r#"{{ range .Measurements }} {{ .Type }}/{{ .Type.String }}"#,
                r#"{{ range .Subtypes }} {{ .Name }}: {{ index .Data "gpu.model" }} x{{ index .Data "gpu-count" }}"#,
                r#" {{ gt (index .Data "gpu-count").Any 7 }} {{ if index .Data "empty" }}set{{ end }}"#,
                r#" {{ index .Data "ratio" }} {{ (index .Data "gone").Any }} {{ len .Context }}"#,
                r#"{{ end }}{{ end }}"#,
            ),
        )
        .unwrap();
        assert_eq!(
            t.render(&snap()).unwrap(),
            "aicr.nvidia.com/v1alpha1 gpu-1 Snapshot GPU/GPU smi: H100 x8 true set 0.5 <nil> 0"
        );
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
        let e = Template::load("dir/bad.tmpl", "a\n{{ if .Kind }}")
            .err()
            .unwrap();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidRequest);
        assert!(
            e.message().starts_with(
                "failed to parse template dir/bad.tmpl as a Go template (any name not ending in .tera): template: bad.tmpl:2:"
            ),
            "{e}"
        );
        assert!(!e.message().contains('\n'));
        let e = Template::load("bad.tera", "{% if %}").err().unwrap();
        assert!(e.message().contains("as a Tera template (.tera)"), "{e}");
        let t = Template::load("t.tmpl", "{{ index .Measurements 5 }}").unwrap();
        let e = t.render(&snap()).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Internal);
        assert!(
            e.message()
                .starts_with("failed to execute template: template: t.tmpl:1:"),
            "{e}"
        );
    }
}
