//! `aicr query`: the hydrated recipe tree (values files deep-merged with
//! overrides) and the dot-path selector over it. Pure over the catalog.

use serde_json::{Map, Value};

use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::model::recipe::{ComponentRef, RecipeResult};
use crate::yaml;

/// Deep merge: maps merge recursively, anything else in `src` replaces
/// `dst` (lists replace lists, `null` replaces anything).
pub(crate) fn deep_merge(dst: &mut Value, src: &Value) {
    match (dst, src) {
        (Value::Object(d), Value::Object(s)) => {
            for (k, v) in s {
                match d.get_mut(k) {
                    Some(slot) if slot.is_object() && v.is_object() => deep_merge(slot, v),
                    _ => {
                        d.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (d, s) => *d = s.clone(),
    }
}

fn load_values(catalog: &Catalog, path: &str, what: &str) -> Result<Option<Value>> {
    let v = catalog
        .values_file(path)
        .map_err(|e| e.context(format!("failed to read {what} {path:?}")))?;
    Ok(v.map(|v| (*v).clone()))
}

/// A component's effective Helm values: its base values file, the recipe's
/// values file on top (when different), then the inline overrides.
pub(crate) fn component_values(catalog: &Catalog, r: &ComponentRef) -> Result<Value> {
    let mut values = Value::Object(Map::new());
    if !r.values_file.is_empty() {
        let base_path = format!("components/{}/values.yaml", r.name);
        if r.values_file == base_path {
            values = load_values(catalog, &base_path, "values file")?.ok_or_else(|| {
                Error::internal(format!(
                    "failed to read values file {base_path:?}: file not found"
                ))
            })?;
        } else {
            if let Some(v) = load_values(catalog, &base_path, "values file")? {
                values = v;
            }
            let overlay =
                load_values(catalog, &r.values_file, "overlay values file")?.ok_or_else(|| {
                    Error::internal(format!(
                        "failed to read overlay values file {:?}: file not found",
                        r.values_file
                    ))
                })?;
            deep_merge(&mut values, &overlay);
        }
    }
    if !r.overrides.is_empty() {
        deep_merge(&mut values, &Value::Object(r.overrides.clone()));
    }
    Ok(values)
}

fn put(m: &mut Map<String, Value>, k: &str, v: &str) {
    if !v.is_empty() {
        m.insert(k.into(), Value::String(v.into()));
    }
}

fn strings(v: &[String]) -> Value {
    Value::Array(v.iter().cloned().map(Value::String).collect())
}

/// The hydrated document `query` selects from.
pub fn hydrate(catalog: &Catalog, recipe: &RecipeResult) -> Result<Value> {
    let mut components = Map::new();
    for r in &recipe.component_refs {
        let mut c = Map::new();
        put(&mut c, "chart", &r.chart);
        if !r.dependency_refs.is_empty() {
            c.insert("dependencyRefs".into(), strings(&r.dependency_refs));
        }
        c.insert("name".into(), Value::String(r.name.clone()));
        put(&mut c, "namespace", &r.namespace);
        put(&mut c, "path", &r.path);
        c.insert("source".into(), Value::String(r.source.clone()));
        put(&mut c, "tag", &r.tag);
        c.insert("type".into(), Value::String(r.kind.clone()));
        let values = component_values(catalog, r).map_err(|e| {
            e.context(format!(
                "failed to hydrate values for component {:?}",
                r.name
            ))
            .context("failed to hydrate recipe")
        })?;
        if values.as_object().is_none_or(|m| !m.is_empty()) {
            c.insert("values".into(), values);
        }
        put(&mut c, "version", &r.version);
        components.insert(r.name.clone(), Value::Object(c));
    }

    let mut doc = Map::new();
    doc.insert(
        "apiVersion".into(),
        Value::String(recipe.api_version.clone()),
    );
    doc.insert("components".into(), Value::Object(components));
    if !recipe.constraints.is_empty() {
        doc.insert(
            "constraints".into(),
            serde_json::to_value(&recipe.constraints).map_err(json_err)?,
        );
    }
    let mut criteria = serde_json::to_value(&recipe.criteria).map_err(json_err)?;
    criteria["nodes"] = Value::from(recipe.criteria.nodes);
    doc.insert("criteria".into(), criteria);
    doc.insert("deploymentOrder".into(), strings(&recipe.deployment_order));
    doc.insert("kind".into(), Value::String(recipe.kind.clone()));
    let md = &recipe.metadata;
    let mut meta = Map::new();
    meta.insert("appliedOverlays".into(), strings(&md.applied_overlays));
    meta.insert(
        "constraintWarnings".into(),
        serde_json::to_value(&md.constraint_warnings).map_err(json_err)?,
    );
    meta.insert("excludedOverlays".into(), strings(&md.excluded_overlays));
    meta.insert("version".into(), Value::String(md.version.clone()));
    doc.insert("metadata".into(), Value::Object(meta));
    Ok(Value::Object(doc))
}

fn json_err(e: serde_json::Error) -> Error {
    Error::internal(format!("failed to encode recipe: {e}"))
}

/// Upstream's JSON encoding writes the two snapshot-mode lists as `null`
/// when empty (YAML writes `[]`); apply that before selecting for JSON.
pub fn null_empty_metadata_lists(doc: &mut Value) {
    if let Some(meta) = doc.get_mut("metadata").and_then(Value::as_object_mut) {
        for key in ["constraintWarnings", "excludedOverlays"] {
            if meta
                .get(key)
                .and_then(Value::as_array)
                .is_some_and(Vec::is_empty)
            {
                meta.insert(key.into(), Value::Null);
            }
        }
    }
}

/// Walk a dot-path: one leading `.` is optional, empty selects everything,
/// no escaping or indexing.
pub fn select<'v>(doc: &'v Value, selector: &str) -> Result<&'v Value> {
    let sel = selector.strip_prefix('.').unwrap_or(selector);
    if sel.is_empty() {
        return Ok(doc);
    }
    let mut cur = doc;
    for seg in sel.split('.') {
        let Value::Object(m) = cur else {
            return Err(Error::not_found(format!(
                "selector {sel:?}: cannot descend into non-map value at {seg:?}"
            )));
        };
        cur = m.get(seg).ok_or_else(|| {
            let mut keys: Vec<&str> = m.keys().map(String::as_str).collect();
            keys.sort_unstable();
            Error::not_found(format!(
                "selector {sel:?}: key {seg:?} not found, available keys: {}",
                keys.join(", ")
            ))
        })?;
    }
    Ok(cur)
}

/// How `query` prints a selected value: scalars bare, the rest as YAML with
/// four-space indentation, or everything as JSON.
pub fn render_selection(v: &Value, json: bool) -> Result<String> {
    if json {
        return yaml::to_json(v);
    }
    Ok(match v {
        Value::String(s) => format!("{s}\n"),
        Value::Bool(b) => format!("{b}\n"),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => format!("{i}\n"),
            (_, Some(u), _) => format!("{u}\n"),
            (_, _, Some(f)) => format!("{}\n", yaml::go_float(f)),
            _ => format!("{n}\n"),
        },
        Value::Null => "null\n".into(),
        other => yaml::to_yaml_indent(other, 4)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deep_merge_replaces_lists_and_nulls() {
        let mut d = json!({"a": {"b": 1, "l": [1, 2]}, "n": {"x": 1}});
        deep_merge(&mut d, &json!({"a": {"c": 2, "l": [3]}, "n": null}));
        assert_eq!(d, json!({"a": {"b": 1, "c": 2, "l": [3]}, "n": null}));
    }

    #[test]
    fn selector_walks_maps_only() {
        let doc = json!({"a": {"b": [1], "c": "x"}});
        assert_eq!(select(&doc, ".a.c").unwrap(), "x");
        assert_eq!(select(&doc, "").unwrap(), &doc);
        let e = select(&doc, "a.b.0").unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"selector "a.b.0": cannot descend into non-map value at "0""#
        );
        let e = select(&doc, "a.zz").unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"selector "a.zz": key "zz" not found, available keys: b, c"#
        );
        assert_eq!(e.kind(), crate::ErrorKind::NotFound);
        assert!(select(&doc, "..").is_err());
    }

    #[test]
    fn scalars_print_bare() {
        assert_eq!(
            render_selection(&json!("580.105.08"), false).unwrap(),
            "580.105.08\n"
        );
        assert_eq!(render_selection(&json!(1e6), false).unwrap(), "1e+06\n");
        assert_eq!(render_selection(&json!(0), false).unwrap(), "0\n");
        assert_eq!(render_selection(&json!("x"), true).unwrap(), "\"x\"\n");
        let y = render_selection(&json!({"a": {"b": 1}}), false).unwrap();
        assert_eq!(y, "a:\n    b: 1\n");
    }
}
