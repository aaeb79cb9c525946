//! The recipe engine: criteria (and optionally a snapshot) in, resolved
//! recipe out. Owns overlay matching and ordering, inheritance chains,
//! merging, dependency checks, deployment order and registry defaults.
//! Pure: it reads only the already-parsed [`Catalog`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::catalog::Catalog;
use crate::constraint::{self, Outcome};
use crate::error::{Error, Result};
use crate::model::criteria::Criteria;
use crate::model::recipe::{
    API_VERSION, ComponentRef, Constraint, ConstraintWarning, RECIPE_RESULT_KIND, RecipeMetadata,
    RecipeResult, ResultMetadata, Validation,
};
use crate::model::registry::ComponentRegistry;
use crate::model::snapshot::Snapshot;

/// Resolve the recipe for `criteria`. With a snapshot, overlays whose own
/// constraints fail against it are excluded and reported.
pub fn resolve(
    catalog: &Catalog,
    criteria: &Criteria,
    snapshot: Option<&Snapshot>,
) -> Result<RecipeResult> {
    let base = catalog.base();
    check_dependencies(&base.spec.component_refs)
        .map_err(|e| e.context("base recipe validation failed"))?;

    let mut candidates = matching_overlays(catalog, criteria);
    let mut metadata = ResultMetadata {
        version: crate::VERSION.to_string(),
        ..Default::default()
    };
    if let Some(snap) = snapshot {
        candidates.retain(|o| {
            let warnings = overlay_warnings(o, snap);
            if warnings.is_empty() {
                return true;
            }
            tracing::info!(
                "excluding overlay due to constraint failures: overlay={} failed_constraints={}",
                o.name(),
                warnings.len()
            );
            metadata.excluded_overlays.push(o.name().to_string());
            metadata.constraint_warnings.extend(warnings);
            false
        });
        if !metadata.excluded_overlays.is_empty() {
            tracing::warn!(
                "some overlays were excluded due to constraint failures: {}",
                metadata.excluded_overlays.join(", ")
            );
        }
    }

    let mut spec = Merged::from_base(base);
    let mut applied = vec!["base".to_string()];
    let mut done: HashSet<&str> = HashSet::new();
    for overlay in candidates {
        for member in
            chain(catalog, overlay).map_err(|e| e.context("failed to resolve inheritance chain"))?
        {
            if done.insert(member.name()) {
                spec.merge(member);
                applied.push(member.name().to_string());
            }
        }
    }
    if applied.len() <= 1 {
        tracing::warn!("no environment-specific overlays matched, using base configuration only");
    }

    check_dependencies(&spec.refs).map_err(|e| e.context("merged recipe validation failed"))?;
    let order = deployment_order(&spec.refs)?;
    apply_registry_defaults(&mut spec.refs, catalog.registry());

    metadata.applied_overlays = applied;
    Ok(RecipeResult {
        kind: RECIPE_RESULT_KIND.into(),
        api_version: API_VERSION.into(),
        metadata,
        criteria: criteria.clone(),
        constraints: spec.constraints,
        component_refs: spec.refs,
        deployment_order: order,
        validation: spec.validation,
    })
}

/// Criteria a snapshot implies (upstream v0.11.1 rules): the service from
/// the K8s server version or `service` key, the accelerator from the GPU
/// model, the OS from os-release `ID`. Intent, platform and nodes are never
/// derived. Later measurements overwrite earlier ones.
pub fn criteria_from_snapshot(snap: &Snapshot) -> Criteria {
    use crate::model::criteria::Field;
    let mut c = Criteria::default();
    for m in &snap.measurements {
        for s in &m.subtypes {
            let get = |k: &str| s.data.get(k).map(|r| r.render());
            match (m.kind.as_str(), s.subtype.as_str()) {
                ("K8s", "server") => {
                    if let Some(v) = get("service") {
                        let _ = c.set(Field::Service, &v);
                    }
                    if let Some(v) = get("version") {
                        let svc = if v.contains("-eks-") {
                            Some("eks")
                        } else if v.contains("-gke") {
                            Some("gke")
                        } else if v.contains("-aks") {
                            Some("aks")
                        } else {
                            None
                        };
                        if let Some(svc) = svc {
                            c.service = svc.into();
                        }
                    }
                }
                ("GPU", "smi" | "device") => {
                    let model = get("gpu.model").or_else(|| {
                        (c.accelerator == crate::model::ANY)
                            .then(|| get("model"))
                            .flatten()
                    });
                    if let Some(model) = model {
                        let lower = model.to_ascii_lowercase();
                        if let Some(acc) = ["gb200", "b200", "h100", "a100", "l40"]
                            .into_iter()
                            .find(|a| lower.contains(a))
                        {
                            c.accelerator = acc.into();
                        }
                    }
                }
                ("OS", "release") => {
                    if let Some(v) = get("ID") {
                        let _ = c.set(Field::Os, &v);
                    }
                }
                _ => {}
            }
        }
    }
    c
}

/// Overlays whose criteria admit the query, ordered by upstream's score and
/// then by name (upstream's tie order is random; ours is stable).
pub(crate) fn matching_overlays<'c>(
    catalog: &'c Catalog,
    criteria: &Criteria,
) -> Vec<&'c RecipeMetadata> {
    // Matched on the criteria alone: only the overlays that match are
    // decoded.
    let mut found: Vec<(&str, u32)> = catalog
        .overlay_criteria()
        .filter_map(|(name, c)| {
            let c = c.filter(|c| criteria.admits(c))?;
            Some((name, c.score()))
        })
        .collect();
    found.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(b.0)));
    found
        .into_iter()
        .filter_map(|(name, _)| catalog.overlay(name))
        .collect()
}

/// Warnings for every own constraint of `overlay` that does not pass.
fn overlay_warnings(overlay: &RecipeMetadata, snap: &Snapshot) -> Vec<ConstraintWarning> {
    overlay
        .spec
        .constraints
        .iter()
        .filter_map(|c| {
            let outcome = constraint::evaluate(&c.name, &c.value, snap);
            let reason = match &outcome {
                Outcome::Passed { .. } => return None,
                Outcome::Failed { actual } => format!("expected {}, got {actual}", c.value),
                Outcome::Error { error, .. } => error.to_string(),
            };
            Some(ConstraintWarning {
                overlay: overlay.name().to_string(),
                constraint: c.name.clone(),
                expected: c.value.clone(),
                actual: outcome.actual().unwrap_or_default().to_string(),
                reason,
            })
        })
        .collect()
}

/// The inheritance chain of `overlay`, root-most first, `overlay` last; the
/// base itself is not part of it.
fn chain<'c>(catalog: &'c Catalog, overlay: &'c RecipeMetadata) -> Result<Vec<&'c RecipeMetadata>> {
    let mut out = vec![overlay];
    let mut seen: HashSet<&str> = HashSet::from([overlay.name()]);
    let mut cur = overlay;
    loop {
        let parent = cur.spec.base.as_str();
        if parent.is_empty() || parent == "base" {
            break;
        }
        if !seen.insert(parent) {
            return Err(Error::invalid(format!(
                "circular inheritance detected: recipe {parent:?} references itself in inheritance chain"
            )));
        }
        cur = catalog.overlay(parent).ok_or_else(|| {
            Error::invalid(format!(
                "recipe {parent:?} not found (referenced in inheritance chain of {:?})",
                overlay.name()
            ))
        })?;
        out.push(cur);
    }
    out.reverse();
    Ok(out)
}

/// The working spec while overlays are merged in.
#[derive(Debug, Clone, Default)]
pub(crate) struct Merged {
    pub constraints: Vec<Constraint>,
    pub refs: Vec<ComponentRef>,
    pub validation: Option<Validation>,
}

impl Merged {
    pub(crate) fn from_base(base: &RecipeMetadata) -> Merged {
        Merged {
            constraints: base.spec.constraints.clone(),
            refs: base.spec.component_refs.clone(),
            validation: base.spec.validation.clone(),
        }
    }

    /// Merge one overlay per the recipes spec §3.
    pub(crate) fn merge(&mut self, overlay: &RecipeMetadata) {
        for c in &overlay.spec.constraints {
            match self.constraints.iter_mut().find(|x| x.name == c.name) {
                Some(slot) => *slot = c.clone(),
                None => self.constraints.push(c.clone()),
            }
        }
        self.constraints.sort_by(|a, b| a.name.cmp(&b.name));

        for r in &overlay.spec.component_refs {
            match self.refs.iter_mut().find(|x| x.name == r.name) {
                Some(slot) => merge_ref(slot, r),
                None => self.refs.push(r.clone()),
            }
        }
        self.refs.sort_by(|a, b| a.name.cmp(&b.name));

        if let Some(v) = &overlay.spec.validation {
            match &mut self.validation {
                Some(cur) => cur.merge_from(v),
                None => self.validation = Some(v.clone()),
            }
        }
    }
}

fn merge_ref(dst: &mut ComponentRef, src: &ComponentRef) {
    for (d, s) in [
        (&mut dst.namespace, &src.namespace),
        (&mut dst.chart, &src.chart),
        (&mut dst.kind, &src.kind),
        (&mut dst.source, &src.source),
        (&mut dst.version, &src.version),
        (&mut dst.tag, &src.tag),
        (&mut dst.values_file, &src.values_file),
        (&mut dst.path, &src.path),
        (&mut dst.health_check_asserts, &src.health_check_asserts),
    ] {
        if !s.is_empty() {
            d.clone_from(s);
        }
    }
    // Shallow on purpose: deep merging happens at hydration.
    for (k, v) in &src.overrides {
        dst.overrides.insert(k.clone(), v.clone());
    }
    if !src.patches.is_empty() {
        dst.patches.clone_from(&src.patches);
    }
    if !src.dependency_refs.is_empty() {
        dst.dependency_refs.clone_from(&src.dependency_refs);
    }
    if !src.expected_resources.is_empty() {
        dst.expected_resources.clone_from(&src.expected_resources);
    }
    for m in &src.manifest_files {
        if !dst.manifest_files.contains(m) {
            dst.manifest_files.push(m.clone());
        }
    }
    dst.cleanup |= src.cleanup;
}

/// Every dependency must exist, and the graph must be acyclic. The cycle is
/// reported as the path from the first repeated component back to itself.
pub(crate) fn check_dependencies(refs: &[ComponentRef]) -> Result<()> {
    let index: HashMap<&str, &ComponentRef> = refs.iter().map(|r| (r.name.as_str(), r)).collect();
    for r in refs {
        for d in &r.dependency_refs {
            if !index.contains_key(d.as_str()) {
                return Err(Error::invalid(format!(
                    "component {:?} references unknown dependency {d:?}",
                    r.name
                )));
            }
        }
    }
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Active,
        Done,
    }
    fn visit<'a>(
        name: &'a str,
        index: &HashMap<&'a str, &'a ComponentRef>,
        marks: &mut HashMap<&'a str, Mark>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<&'a str>> {
        match marks.get(name) {
            Some(Mark::Done) => return None,
            Some(Mark::Active) => {
                let from = stack.iter().position(|n| *n == name).unwrap_or(0);
                let mut cycle = stack[from..].to_vec();
                cycle.push(name);
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(name, Mark::Active);
        stack.push(name);
        for d in &index[name].dependency_refs {
            if let Some(c) = visit(d, index, marks, stack) {
                return Some(c);
            }
        }
        stack.pop();
        marks.insert(name, Mark::Done);
        None
    }
    let mut marks = HashMap::new();
    for r in refs {
        let mut stack = Vec::new();
        if let Some(cycle) = visit(&r.name, &index, &mut marks, &mut stack) {
            return Err(Error::invalid(format!(
                "dependency validation failed: circular dependency detected: [{}]",
                cycle.join(" ")
            )));
        }
    }
    Ok(())
}

/// Kahn's algorithm where the alphabetically smallest ready component is
/// always emitted next, so the order is stable and reviewable.
pub(crate) fn deployment_order(refs: &[ComponentRef]) -> Result<Vec<String>> {
    let mut indegree: BTreeMap<&str, usize> = refs
        .iter()
        .map(|r| (r.name.as_str(), r.dependency_refs.len()))
        .collect();
    let mut dependents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for r in refs {
        for d in &r.dependency_refs {
            dependents
                .entry(d.as_str())
                .or_default()
                .push(r.name.as_str());
        }
    }
    let mut ready: BTreeSet<&str> = indegree
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(k, _)| *k)
        .collect();
    let mut order = Vec::with_capacity(refs.len());
    while let Some(next) = ready.pop_first() {
        order.push(next.to_string());
        for dep in dependents.get(next).into_iter().flatten() {
            let n = indegree.get_mut(dep).expect("dependents are components");
            *n -= 1;
            if *n == 0 {
                ready.insert(dep);
            }
        }
    }
    if order.len() != indegree.len() {
        return Err(Error::invalid(
            "cannot determine deployment order: circular dependencies exist",
        ));
    }
    Ok(order)
}

/// Fill what the recipe left empty from the registry entry of the same name.
pub(crate) fn apply_registry_defaults(refs: &mut [ComponentRef], registry: &ComponentRegistry) {
    fn fill(slot: &mut String, default: &str) {
        if slot.is_empty() && !default.is_empty() {
            *slot = default.to_string();
        }
    }
    for r in refs {
        let Some(entry) = registry.get(&r.name) else {
            continue;
        };
        let kustomize = entry
            .kustomize
            .as_ref()
            .filter(|k| !k.default_source.is_empty());
        if r.kind.is_empty() {
            r.kind = if kustomize.is_some() {
                "Kustomize"
            } else {
                "Helm"
            }
            .into();
        }
        match r.kind.as_str() {
            "Helm" => {
                if let Some(h) = &entry.helm {
                    fill(&mut r.source, &h.default_repository);
                    fill(&mut r.version, &h.default_version);
                    fill(&mut r.namespace, &h.default_namespace);
                    let chart = h.default_chart.rsplit('/').next().unwrap_or_default();
                    fill(&mut r.chart, chart);
                }
            }
            "Kustomize" => {
                if let Some(k) = &entry.kustomize {
                    fill(&mut r.source, &k.default_source);
                    fill(&mut r.tag, &k.default_tag);
                    fill(&mut r.path, &k.default_path);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comp(name: &str, deps: &[&str]) -> ComponentRef {
        ComponentRef {
            name: name.into(),
            dependency_refs: deps.iter().map(|d| d.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn snapshot_criteria_follow_upstream_rules() {
        use crate::model::snapshot::{Measurement, Subtype};
        let snap = Snapshot {
            measurements: vec![
                Measurement {
                    kind: "K8s".into(),
                    subtypes: vec![Subtype::new("server").with("version", "v1.33.5-eks-3025e55")],
                },
                Measurement {
                    kind: "GPU".into(),
                    subtypes: vec![Subtype::new("smi").with("gpu.model", "NVIDIA H100 80GB HBM3")],
                },
                Measurement {
                    kind: "OS".into(),
                    subtypes: vec![Subtype::new("release").with("ID", "ubuntu")],
                },
            ],
            ..Default::default()
        };
        let c = criteria_from_snapshot(&snap);
        assert_eq!(
            c.to_string(),
            "criteria(service=eks, accelerator=h100, os=ubuntu)"
        );
        let gb = Snapshot {
            measurements: vec![Measurement {
                kind: "GPU".into(),
                subtypes: vec![Subtype::new("device").with("model", "NVIDIA GB200")],
            }],
            ..Default::default()
        };
        assert_eq!(criteria_from_snapshot(&gb).accelerator, "gb200");
        assert!(criteria_from_snapshot(&Snapshot::default()).is_unset());
    }

    #[test]
    fn order_emits_smallest_ready_first() {
        let refs = vec![
            comp("gpu-operator", &["cert-manager", "kube-prometheus-stack"]),
            comp("cert-manager", &[]),
            comp("kube-prometheus-stack", &[]),
            comp("k8s-ephemeral-storage-metrics", &["kube-prometheus-stack"]),
            comp("aws-efa", &[]),
        ];
        assert_eq!(
            deployment_order(&refs).unwrap(),
            [
                "aws-efa",
                "cert-manager",
                "kube-prometheus-stack",
                "gpu-operator",
                "k8s-ephemeral-storage-metrics"
            ]
        );
    }

    #[test]
    fn duplicate_dependencies_are_harmless() {
        let refs = vec![comp("a", &["b", "b"]), comp("b", &[])];
        assert_eq!(deployment_order(&refs).unwrap(), ["b", "a"]);
    }

    #[test]
    fn cycles_and_unknown_dependencies_are_named() {
        let e = check_dependencies(&[comp("a", &["b"]), comp("b", &["a"])]).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("circular dependency detected: [a b a]"),
            "{e}"
        );
        let e = check_dependencies(&[comp("a", &["a"])]).unwrap_err();
        assert!(e.to_string().ends_with("[a a]"), "{e}");
        let e = check_dependencies(&[comp("a", &["zz"])]).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"component "a" references unknown dependency "zz""#
        );
        assert_eq!(e.kind(), crate::ErrorKind::InvalidRequest);
    }

    #[test]
    fn ref_merge_follows_field_rules() {
        let mut a = comp("x", &["d1"]);
        a.version = "1".into();
        a.manifest_files = vec!["m1".into(), "m2".into()];
        a.overrides = serde_json::json!({"a": {"b": 1, "c": 2}, "top": 1})
            .as_object()
            .unwrap()
            .clone();
        a.cleanup = true;
        let mut b = comp("x", &[]);
        b.source = "s".into();
        b.manifest_files = vec!["m2".into(), "m3".into()];
        b.overrides = serde_json::json!({"a": {"d": 3}})
            .as_object()
            .unwrap()
            .clone();
        merge_ref(&mut a, &b);
        assert_eq!(a.version, "1");
        assert_eq!(a.source, "s");
        assert_eq!(a.dependency_refs, ["d1"], "empty list does not replace");
        assert_eq!(a.manifest_files, ["m1", "m2", "m3"]);
        assert_eq!(
            serde_json::Value::Object(a.overrides),
            serde_json::json!({"a": {"d": 3}, "top": 1})
        );
        assert!(a.cleanup, "cleanup is sticky");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// A random DAG: component i may only depend on components < i.
        fn dag() -> impl Strategy<Value = Vec<ComponentRef>> {
            (1usize..12).prop_flat_map(|n| {
                proptest::collection::vec(
                    proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
                    n,
                )
                .prop_map(move |deps| {
                    deps.iter()
                        .enumerate()
                        .map(|(i, ds)| {
                            let names: Vec<String> = if i == 0 {
                                vec![]
                            } else {
                                ds.iter().map(|d| format!("c{:02}", d.index(i))).collect()
                            };
                            ComponentRef {
                                name: format!("c{i:02}"),
                                dependency_refs: names,
                                ..Default::default()
                            }
                        })
                        .collect()
                })
            })
        }

        proptest! {
            #[test]
            fn order_is_a_topological_permutation(refs in dag()) {
                let order = deployment_order(&refs).unwrap();
                prop_assert_eq!(order.len(), refs.len());
                let pos: HashMap<&str, usize> = order.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
                for r in &refs {
                    for d in &r.dependency_refs {
                        prop_assert!(pos[d.as_str()] < pos[r.name.as_str()]);
                    }
                }
                prop_assert!(check_dependencies(&refs).is_ok());
            }

            #[test]
            fn order_ignores_input_order(refs in dag(), seed in any::<u64>()) {
                let mut shuffled = refs.clone();
                let len = shuffled.len();
                shuffled.rotate_left((seed as usize) % len);
                prop_assert_eq!(deployment_order(&refs).unwrap(), deployment_order(&shuffled).unwrap());
            }

            #[test]
            fn merge_keeps_refs_sorted_and_unique(names in proptest::collection::vec("[a-e]", 0..10)) {
                let mut m = Merged::default();
                let overlay = RecipeMetadata {
                    spec: crate::model::recipe::RecipeSpec {
                        component_refs: names.iter().map(|n| comp(n, &[])).collect(),
                        constraints: names.iter().map(|n| Constraint { name: n.clone(), value: "1".into(), ..Default::default() }).collect(),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                m.merge(&overlay);
                m.merge(&overlay);
                let got: Vec<&str> = m.refs.iter().map(|r| r.name.as_str()).collect();
                let want: Vec<&str> = names.iter().map(String::as_str).collect::<BTreeSet<_>>().into_iter().collect();
                prop_assert_eq!(&got, &want);
                let cs: Vec<&str> = m.constraints.iter().map(|c| c.name.as_str()).collect();
                prop_assert_eq!(cs, want);
            }
        }
    }
}
