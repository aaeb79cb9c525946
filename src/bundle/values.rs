//! The per-component value pipeline of a bundle, in the spec's order:
//! catalog values files and recipe overrides (via `hydrate`), `--set`
//! overrides, node-scheduling injection at the registry's paths,
//! `--storage-class`, and finally the `--dynamic` split into static and
//! install-time values. Pure over its inputs; it does not decide which
//! components are bundled nor how values are written out.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

pub use k8s_openapi::api::core::v1::{Taint, Toleration};

use super::set::convert;
use crate::catalog::Catalog;
use crate::hydrate::{self, deep_merge};
use crate::kubernetes::scheduling;
use crate::model::recipe::ComponentRef;
use crate::model::registry::RegistryComponent;

/// Bundle-time scheduling inputs (already parsed).
#[derive(Debug, Clone, PartialEq)]
pub struct Scheduling {
    pub system_selector: BTreeMap<String, String>,
    pub system_tolerations: Vec<Toleration>,
    pub accelerated_selector: BTreeMap<String, String>,
    pub accelerated_tolerations: Vec<Toleration>,
    pub workload_selector: BTreeMap<String, String>,
    pub workload_gate: Option<Taint>,
    pub nodes: u32,
    pub storage_class: Option<String>,
}

impl Default for Scheduling {
    fn default() -> Self {
        Scheduling {
            system_selector: BTreeMap::new(),
            system_tolerations: vec![scheduling::tolerate_all()],
            accelerated_selector: BTreeMap::new(),
            accelerated_tolerations: vec![scheduling::tolerate_all()],
            workload_selector: BTreeMap::new(),
            workload_gate: None,
            nodes: 0,
            storage_class: None,
        }
    }
}

/// A component's values at the end of the pipeline.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ComponentValues {
    /// Everything, before the dynamic split: what manifests render with.
    pub full: Value,
    /// What `values.yaml` (or `static/`) carries.
    pub static_values: Value,
    /// Install-time stubs (`cluster-values.yaml`); an empty map when none.
    pub dynamic: Value,
}

/// Everything one component's pipeline needs besides the catalog.
pub(crate) struct Inputs<'a> {
    pub component: &'a ComponentRef,
    pub registry: Option<&'a RegistryComponent>,
    /// The `--set` pairs that apply to this component (`enabled` included;
    /// it is skipped here).
    pub set: &'a [(String, String)],
    /// Whether `--set <c>:enabled=true` brought back a recipe-disabled
    /// component, so the recipe's own `enabled: false` must not reach it.
    pub re_enabled: bool,
    pub scheduling: &'a Scheduling,
    pub dynamic: &'a [String],
}

/// Run the pipeline. Problems that the spec calls warnings (unloadable
/// values, `--set` paths through non-maps) are logged and the rest goes on.
pub(crate) fn compute(catalog: &Catalog, i: &Inputs) -> ComponentValues {
    let name = &i.component.name;
    let mut values = match hydrate::component_values(catalog, i.component) {
        Ok(v) if v.is_object() => v,
        Ok(_) => {
            tracing::warn!("values of component {name} are not a map; using empty values");
            overrides_only(i.component)
        }
        Err(e) => {
            tracing::warn!("failed to load values for component {name}, using empty values: {e}");
            overrides_only(i.component)
        }
    };
    if i.re_enabled
        && let Some(m) = values.as_object_mut()
        && m.get("enabled") == Some(&Value::Bool(false))
    {
        m.remove("enabled");
    }

    let mut failures = Vec::new();
    for (path, raw) in i.set {
        if path == "enabled" {
            continue;
        }
        if let Err(why) = set_strict(&mut values, path, convert(raw)) {
            failures.push(format!("{path}: {why}"));
        }
    }
    if !failures.is_empty() {
        tracing::warn!(
            "some --set overrides for component {name} were not applied: {}",
            failures.join("; ")
        );
    }

    if let Some(reg) = i.registry {
        inject_scheduling(&mut values, reg, i.scheduling, i.set);
    }

    let full = values.clone();
    let mut dynamic = Value::Object(Map::new());
    for path in i.dynamic {
        let v = take_path(&mut values, path).unwrap_or_else(|| {
            tracing::warn!(
                "dynamic path {path} of component {name} has no default value; the stub is an empty string"
            );
            Value::String(String::new())
        });
        set_lenient(&mut dynamic, path, v);
    }
    ComponentValues {
        full,
        static_values: values,
        dynamic,
    }
}

fn overrides_only(r: &ComponentRef) -> Value {
    let mut v = Value::Object(Map::new());
    if !r.overrides.is_empty() {
        deep_merge(&mut v, &Value::Object(r.overrides.clone()));
    }
    v
}

fn inject_scheduling(
    values: &mut Value,
    reg: &RegistryComponent,
    s: &Scheduling,
    set: &[(String, String)],
) {
    let selector = |m: &BTreeMap<String, String>| {
        Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        )
    };
    let tolerations = |t: &[Toleration]| serde_json::to_value(t).unwrap_or(Value::Null);
    let mut put = |paths: &[String], v: &Value| {
        for p in paths {
            set_lenient(values, p, v.clone());
        }
    };

    if let Some(ns) = &reg.node_scheduling {
        for (paths, sel, tol) in [
            (&ns.system, &s.system_selector, &s.system_tolerations),
            (
                &ns.accelerated,
                &s.accelerated_selector,
                &s.accelerated_tolerations,
            ),
        ] {
            let Some(paths) = paths else { continue };
            if !sel.is_empty() {
                put(&paths.node_selector_paths, &selector(sel));
            }
            put(&paths.toleration_paths, &tolerations(tol));
        }
        if let (Some(acc), Some(gate)) = (&ns.accelerated, &s.workload_gate) {
            put(&acc.taint_str_paths, &convert(&taint_string(gate)));
            put(
                &acc.taint_paths,
                &serde_json::to_value(gate).unwrap_or(Value::Null),
            );
        }
        if s.nodes > 0 {
            put(&ns.node_count_paths, &Value::from(s.nodes));
        }
    }
    if !s.workload_selector.is_empty()
        && let Some(w) = reg
            .pod_scheduling
            .as_ref()
            .and_then(|p| p.workload.as_ref())
    {
        put(&w.workload_selector_paths, &selector(&s.workload_selector));
    }
    if let Some(sc) = &s.storage_class {
        let explicit: Vec<&str> = set.iter().map(|(p, _)| p.as_str()).collect();
        let paths: Vec<String> = reg
            .storage_class_paths
            .iter()
            .filter(|p| !explicit.contains(&p.as_str()))
            .cloned()
            .collect();
        put(&paths, &convert(sc));
    }
}

/// A taint as the string charts take: `key=value:effect` or `key:effect`.
pub(crate) fn taint_string(t: &Taint) -> String {
    match t.value.as_deref() {
        Some(v) if !v.is_empty() => format!("{}={v}:{}", t.key, t.effect),
        _ => format!("{}:{}", t.key, t.effect),
    }
}

/// Set a dot path, creating missing maps; an existing non-map on the way
/// is an error (the `--set` rule).
pub(crate) fn set_strict(root: &mut Value, path: &str, v: Value) -> Result<(), String> {
    let segs: Vec<&str> = path.split('.').collect();
    let mut cur = root;
    for (i, seg) in segs.iter().enumerate() {
        let Value::Object(m) = cur else {
            return Err(format!("{:?} is not a map", segs[..i].join(".")));
        };
        if i == segs.len() - 1 {
            m.insert((*seg).to_string(), v);
            return Ok(());
        }
        cur = m
            .entry((*seg).to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    Ok(())
}

/// Set a dot path, replacing any non-map on the way with a map (the
/// scheduling-injection rule).
pub(crate) fn set_lenient(root: &mut Value, path: &str, v: Value) {
    let segs: Vec<&str> = path.split('.').collect();
    let mut cur = root;
    for (i, seg) in segs.iter().enumerate() {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        let Value::Object(m) = cur else { return };
        if i == segs.len() - 1 {
            m.insert((*seg).to_string(), v);
            return;
        }
        cur = m
            .entry((*seg).to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
}

/// Remove and return the value at a dot path, if every step exists.
pub(crate) fn take_path(root: &mut Value, path: &str) -> Option<Value> {
    let (parent, leaf) = match path.rsplit_once('.') {
        Some((p, l)) => (Some(p), l),
        None => (None, path),
    };
    let mut cur = root;
    if let Some(p) = parent {
        for seg in p.split('.') {
            cur = cur.as_object_mut()?.get_mut(seg)?;
        }
    }
    cur.as_object_mut()?.remove(leaf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubernetes::scheduling::{parse_taint, parse_tolerations};
    use crate::model::registry::{NodeScheduling, SchedulingPaths};
    use serde_json::json;

    fn gpu_registry() -> RegistryComponent {
        RegistryComponent {
            name: "gpu-operator".into(),
            node_scheduling: Some(NodeScheduling {
                system: Some(SchedulingPaths {
                    node_selector_paths: vec!["operator.nodeSelector".into()],
                    toleration_paths: vec!["operator.tolerations".into()],
                    ..Default::default()
                }),
                accelerated: Some(SchedulingPaths {
                    node_selector_paths: vec!["daemonsets.nodeSelector".into()],
                    toleration_paths: vec![
                        "daemonsets.tolerations".into(),
                        "node-feature-discovery.worker.tolerations".into(),
                    ],
                    taint_str_paths: vec!["gate".into()],
                    ..Default::default()
                }),
                node_count_paths: vec!["count".into()],
            }),
            storage_class_paths: vec!["sc.a".into(), "sc.b".into()],
            ..Default::default()
        }
    }

    fn run(
        values: Value,
        set: &[(&str, &str)],
        s: &Scheduling,
        dynamic: &[&str],
    ) -> ComponentValues {
        let catalog = Catalog::embedded().unwrap();
        let r = ComponentRef {
            name: "gpu-operator".into(),
            overrides: values.as_object().unwrap().clone(),
            ..Default::default()
        };
        let set: Vec<(String, String)> = set
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let dynamic: Vec<String> = dynamic.iter().map(|s| s.to_string()).collect();
        let reg = gpu_registry();
        compute(
            catalog,
            &Inputs {
                component: &r,
                registry: Some(&reg),
                set: &set,
                re_enabled: false,
                scheduling: s,
                dynamic: &dynamic,
            },
        )
    }

    #[test]
    fn set_converts_types_skips_enabled_and_survives_bad_paths() {
        let v = run(
            json!({"driver": {"version": "570"}, "flat": 1}),
            &[
                ("driver.version", "580.1"),
                ("enabled", "true"),
                ("flat.x", "1"),
                ("foo.count", "3"),
            ],
            &Scheduling::default(),
            &[],
        );
        assert_eq!(v.full["driver"]["version"], json!(580.1));
        assert_eq!(v.full["foo"]["count"], json!(3));
        assert_eq!(v.full["flat"], json!(1), "strict: non-map stays");
        assert!(v.full.get("enabled").is_none());
    }

    #[test]
    fn scheduling_defaults_tolerate_everything_and_skip_selectors() {
        let v = run(json!({}), &[], &Scheduling::default(), &[]);
        let exists = json!([{"operator": "Exists"}]);
        assert_eq!(v.full["operator"]["tolerations"], exists);
        assert_eq!(v.full["daemonsets"]["tolerations"], exists);
        assert_eq!(
            v.full["node-feature-discovery"]["worker"]["tolerations"],
            exists
        );
        assert!(v.full["daemonsets"].get("nodeSelector").is_none());
        assert!(v.full.get("count").is_none());
        assert!(v.full.get("sc").is_none());
    }

    #[test]
    fn scheduling_flags_land_at_registry_paths_over_set() {
        let s = Scheduling {
            system_selector: [("nodeGroup".to_string(), "sys".to_string())].into(),
            accelerated_selector: [("nodeGroup".to_string(), "gpu".to_string())].into(),
            accelerated_tolerations: parse_tolerations(&["dedicated=w:NoSchedule".into()]).unwrap(),
            workload_gate: Some(parse_taint("k=v:NoSchedule").unwrap()),
            nodes: 8,
            storage_class: Some("gp3".into()),
            ..Scheduling::default()
        };
        let v = run(
            json!({"operator": "not-a-map"}),
            &[("daemonsets.nodeSelector.x", "y"), ("sc.b", "mine")],
            &s,
            &[],
        );
        assert_eq!(
            v.full["operator"]["nodeSelector"],
            json!({"nodeGroup": "sys"})
        );
        assert_eq!(
            v.full["daemonsets"]["nodeSelector"],
            json!({"nodeGroup": "gpu"})
        );
        assert_eq!(
            v.full["node-feature-discovery"]["worker"]["tolerations"],
            json!([{"key": "dedicated", "operator": "Equal", "value": "w", "effect": "NoSchedule"}])
        );
        assert!(
            v.full["node-feature-discovery"]["worker"]
                .get("nodeSelector")
                .is_none()
        );
        assert_eq!(v.full["gate"], json!("k=v:NoSchedule"));
        assert_eq!(v.full["count"], json!(8));
        assert_eq!(v.full["sc"], json!({"a": "gp3", "b": "mine"}));
    }

    #[test]
    fn dynamic_paths_move_out_with_stubs() {
        let v = run(
            json!({"driver": {"version": "580", "x": 1}}),
            &[],
            &Scheduling::default(),
            &["driver.version", "cluster.name"],
        );
        assert_eq!(
            v.dynamic,
            json!({"driver": {"version": "580"}, "cluster": {"name": ""}})
        );
        assert_eq!(v.static_values["driver"], json!({"x": 1}));
        assert_eq!(v.full["driver"]["version"], json!("580"));
    }

    #[test]
    fn path_helpers() {
        let mut v = json!({"a": {"b": 1}});
        assert!(set_strict(&mut v, "a.b.c", json!(2)).is_err());
        set_lenient(&mut v, "a.b.c", json!(2));
        assert_eq!(v, json!({"a": {"b": {"c": 2}}}));
        assert_eq!(take_path(&mut v, "a.b.c"), Some(json!(2)));
        assert_eq!(take_path(&mut v, "a.zz.c"), None);
    }
}
