//! Bundle-time rendering of a component's raw manifests: the Helm-like data
//! they see (`.Values.<component>`, `.Release`, `.Chart`), dropping output
//! that holds no object, and stripping `helm.sh/hook*` annotations (folder
//! order replaces hooks). Also the `kustomize build` edge for
//! kustomize-typed components. It does not decide where manifests go.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::gotmpl::Template;
use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::model::recipe::ComponentRef;

/// `.Chart.Version` as Helm wants it: no leading `v`, `0.1.0` when unset.
pub(crate) fn chart_version(version: &str) -> String {
    let v = version.strip_prefix('v').unwrap_or(version);
    if v.is_empty() {
        "0.1.0".into()
    } else {
        v.to_string()
    }
}

/// The text of one of `c`'s manifest files in the catalog.
pub(crate) fn source<'c>(catalog: &'c Catalog, path: &str, c: &ComponentRef) -> Result<&'c str> {
    let text = catalog.text(path).ok_or_else(|| {
        Error::internal(format!(
            "manifest file {path:?} of component {:?} not found in the catalog",
            c.name
        ))
    })?;
    text.map_err(|e| e.context(format!("manifest {path:?}")))
}

/// The data a manifest of `c` sees, as Helm would give it to a chart named
/// after the component and installed as `release`.
pub(crate) fn data(c: &ComponentRef, release: &str, values: &Value) -> Value {
    let mut vals = Map::new();
    vals.insert(c.name.clone(), values.clone());
    let chart = if c.chart.is_empty() {
        &c.name
    } else {
        &c.chart
    };
    serde_json::json!({
        "Values": vals,
        "Release": {"Namespace": c.namespace, "Service": "Helm", "Name": release},
        "Chart": {"Name": chart, "Version": chart_version(&c.version)},
    })
}

/// Render one manifest file of `c` with its final values. `None` when the
/// output holds no YAML object. An embedded file that holds no template
/// and nothing to delete is returned as it is, not copied.
pub(crate) fn render(
    catalog: &Catalog,
    path: &str,
    c: &ComponentRef,
    release: &str,
    values: &Value,
) -> Result<Option<Cow<'static, str>>> {
    let text = source(catalog, path, c)?;
    let out = match super::gotmpl::render_plain_text(text) {
        Some(Cow::Borrowed(_)) => match catalog.embedded_text(path) {
            Some(text) => Cow::Borrowed(text),
            None => Cow::Owned(text.to_string()),
        },
        Some(Cow::Owned(out)) => Cow::Owned(out),
        None => Template::parse(path, text)?
            .render(&data(c, release, values))
            .map_err(|e| {
                e.context(format!(
                    "failed to render manifest for component {:?}",
                    c.name
                ))
            })?
            .into(),
    };
    if !has_object(&out) {
        return Ok(None);
    }
    Ok(Some(strip_hooks(out)))
}

/// Whether any line is more than a comment, a blank or a document marker.
fn has_object(text: &str) -> bool {
    text.lines().any(|l| {
        let t = l.trim();
        !t.is_empty() && !t.starts_with('#') && t != "---" && t != "..."
    })
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_hook_key(line: &str) -> bool {
    let t = line.trim_start().trim_start_matches(['"', '\'']);
    t.starts_with("helm.sh/hook")
}

/// Remove `helm.sh/hook*` entries from `annotations:` blocks, and the block
/// itself when nothing else is left in it. Takes the text by value: most
/// manifests carry no hook, and those (600 KiB CRDs among them) are handed
/// back as they are, with neither a line walk nor a copy.
pub(crate) fn strip_hooks(text: Cow<'static, str>) -> Cow<'static, str> {
    if !text.contains("helm.sh/hook") {
        return text;
    }
    let lines: Vec<&str> = text.lines().collect();
    let mut keep = vec![true; lines.len()];
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.trim() == "annotations:" {
            let base = indent_of(line);
            let mut j = i + 1;
            let mut child = None;
            let mut entries = 0;
            let mut dropping = false;
            while j < lines.len() {
                let l = lines[j];
                let t = l.trim();
                let content = !t.is_empty() && !t.starts_with('#');
                if content && indent_of(l) <= base {
                    break;
                }
                if content {
                    let ind = indent_of(l);
                    if ind == *child.get_or_insert(ind) {
                        dropping = is_hook_key(l);
                        entries += usize::from(!dropping);
                    }
                    keep[j] = !dropping;
                }
                j += 1;
            }
            if entries == 0 {
                keep[i..j].fill(false);
            }
            i = j;
            continue;
        }
        i += 1;
    }
    let mut out: String = lines
        .iter()
        .zip(keep)
        .filter(|(_, k)| *k)
        .map(|(l, _)| format!("{l}\n"))
        .collect();
    if !text.ends_with('\n') {
        out.pop();
    }
    Cow::Owned(out)
}

/// Builds a kustomization at bundle time. The real one runs an external
/// tool; tests substitute their own.
pub trait Kustomize {
    fn build(&self, target: &str) -> Result<String>;
}

/// `kustomize build`, or `kubectl kustomize` when only kubectl is
/// installed.
pub struct ExternalKustomize;

impl Kustomize for ExternalKustomize {
    fn build(&self, target: &str) -> Result<String> {
        let attempts: [(&str, &[&str]); 2] =
            [("kustomize", &["build"]), ("kubectl", &["kustomize"])];
        for (tool, args) in attempts {
            let out = match std::process::Command::new(tool)
                .args(args)
                .arg(target)
                .output()
            {
                Ok(o) => o,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::internal(format!("failed to run {tool}: {e}"))),
            };
            if !out.status.success() {
                let stderr = String::from_utf8_lossy(&out.stderr);
                return Err(Error::internal(format!(
                    "{tool} {} {target} failed: {}",
                    args.join(" "),
                    stderr.lines().next().unwrap_or("").trim()
                )));
            }
            return String::from_utf8(out.stdout)
                .map_err(|_| Error::internal(format!("{tool} output is not UTF-8")));
        }
        Err(Error::internal(format!(
            "kustomize components need the kustomize binary (or kubectl) on PATH to build {target}"
        )))
    }
}

/// What `kustomize build` is pointed at for a kustomize-typed component.
pub(crate) fn kustomize_target(c: &ComponentRef) -> String {
    let mut t = if c.source.is_empty() {
        c.path.clone()
    } else if c.path.is_empty() {
        c.source.clone()
    } else {
        format!("{}//{}", c.source.trim_end_matches('/'), c.path)
    };
    if !c.tag.is_empty() && !c.source.is_empty() {
        t.push_str("?ref=");
        t.push_str(&c.tag);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_annotations_are_stripped_and_empty_blocks_dropped() {
        let src = "metadata:\n  annotations:\n    # why\n    \"helm.sh/hook\": post-install\n    helm.sh/hook-weight: \"10\"\n  labels:\n    a: b\n";
        assert_eq!(strip_hooks(src.into()), "metadata:\n  labels:\n    a: b\n");
        let src = "metadata:\n  annotations:\n    helm.sh/hook: x\n    keep: \"1\"\n  name: n\n";
        assert_eq!(
            strip_hooks(src.into()),
            "metadata:\n  annotations:\n    keep: \"1\"\n  name: n\n"
        );
        let src = "data:\n  annotations: not-a-block\n";
        assert_eq!(strip_hooks(src.into()), src);
    }

    #[test]
    fn catalog_manifests_render_with_final_values() {
        let catalog = Catalog::embedded().unwrap();
        let c = ComponentRef {
            name: "nodewright-customizations".into(),
            namespace: "skyhook".into(),
            ..Default::default()
        };
        let values = serde_json::json!({
            "accelerator": "h100", "intent": "training", "service": "eks",
            "acceleratedTolerations": [{"operator": "Exists"}],
            "workloadSelector": {"workload-type": "training"},
        });
        let out = render(
            catalog,
            "components/nodewright-customizations/manifests/tuning.yaml",
            &c,
            "nodewright-customizations",
            &values,
        )
        .unwrap()
        .unwrap();
        assert!(!out.contains("helm.sh/hook"), "{out}");
        let doc: serde_json::Value = crate::yaml::from_yaml(&out).unwrap();
        assert_eq!(doc["kind"], "Skyhook");
        assert_eq!(doc["metadata"]["namespace"], "skyhook");
        assert_eq!(
            doc["spec"]["podNonInterruptLabels"]["matchLabels"]["workload-type"],
            "training"
        );
        assert!(doc["spec"].get("nodeSelectors").is_none());

        let off = serde_json::json!({"enabled": false});
        let none = render(
            catalog,
            "components/nodewright-customizations/manifests/tuning.yaml",
            &c,
            "x",
            &off,
        )
        .unwrap();
        assert!(none.is_none());
        let e = render(catalog, "components/nope.yaml", &c, "x", &off).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Internal);
    }

    #[test]
    fn plain_embedded_manifests_are_borrowed_not_copied() {
        let catalog = Catalog::embedded().unwrap();
        let path = "components/kgateway-crds/manifests/gateway-api-crds.yaml";
        let c = ComponentRef {
            name: "kgateway-crds".into(),
            ..Default::default()
        };
        let out = render(catalog, path, &c, "kgateway-crds", &serde_json::json!({}))
            .unwrap()
            .unwrap();
        assert!(out.len() > 100_000, "the large CRD file: {}", out.len());
        assert!(
            matches!(out, Cow::Borrowed(t) if std::ptr::eq(t, catalog.embedded_text(path).unwrap())),
            "handed out as the embedded text itself"
        );
    }

    #[test]
    fn kustomize_targets() {
        let mut c = ComponentRef {
            source: "https://github.com/org/repo".into(),
            path: "deploy/overlay".into(),
            tag: "v1.2.0".into(),
            ..Default::default()
        };
        assert_eq!(
            kustomize_target(&c),
            "https://github.com/org/repo//deploy/overlay?ref=v1.2.0"
        );
        c.source.clear();
        assert_eq!(kustomize_target(&c), "deploy/overlay");
        assert_eq!(chart_version("v1.2.0"), "1.2.0");
        assert_eq!(chart_version(""), "0.1.0");
    }
}
