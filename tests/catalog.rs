//! Checks of our embedded catalog: every file it references exists, every
//! overlay resolves (dependencies and inheritance), criteria are unique,
//! constraints parse, and every leaf of the criteria space resolves.

use std::collections::BTreeMap;

use aicr::catalog::Catalog;
use aicr::constraint;
use aicr::engine;
use aicr::hydrate;
use aicr::model::criteria::{Criteria, Field};

fn catalog() -> &'static Catalog {
    Catalog::embedded().expect("embedded catalog loads")
}

/// The query an overlay's own criteria spell.
fn own_query(name: &str) -> Criteria {
    let o = catalog().overlay(name).unwrap();
    o.spec
        .criteria
        .as_ref()
        .unwrap()
        .to_query("criteria")
        .unwrap_or_else(|e| panic!("overlay {name}: {e}"))
}

#[test]
fn every_overlay_has_canonical_unique_criteria() {
    let mut seen = BTreeMap::new();
    for (name, o) in catalog().overlays() {
        let c = o
            .spec
            .criteria
            .as_ref()
            .unwrap_or_else(|| panic!("{name} has no criteria"));
        for f in Field::ALL {
            let raw = c.get(f);
            assert!(
                raw.is_empty() || raw == "any" || f.values().contains(&raw),
                "{name}: {} {raw:?} is not canonical",
                f.name()
            );
        }
        if let Some(prev) = seen.insert(format!("{c:?}"), name.clone()) {
            panic!("{name} and {prev} share criteria");
        }
    }
    assert!(seen.len() >= 40, "catalog lost overlays: {}", seen.len());
}

#[test]
fn every_overlay_resolves_with_known_dependencies() {
    for name in catalog().overlays().keys() {
        let q = own_query(name);
        let r = engine::resolve(catalog(), &q, None).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            r.metadata.applied_overlays.contains(name),
            "{name} does not apply to its own criteria: {:?}",
            r.metadata.applied_overlays
        );
        assert_eq!(r.deployment_order.len(), r.component_refs.len(), "{name}");
    }
}

#[test]
fn every_referenced_file_exists_and_hydrates() {
    for name in catalog().overlays().keys() {
        let r = engine::resolve(catalog(), &own_query(name), None).unwrap();
        for c in &r.component_refs {
            for f in std::iter::once(&c.values_file)
                .filter(|f| !f.is_empty())
                .chain(&c.manifest_files)
            {
                assert!(
                    catalog().file(f).is_some(),
                    "{name}/{}: missing {f}",
                    c.name
                );
            }
        }
        hydrate::hydrate(catalog(), &r).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn every_constraint_parses() {
    let overlays = catalog()
        .overlays()
        .values()
        .chain(std::iter::once(catalog().base()));
    for o in overlays {
        for c in &o.spec.constraints {
            constraint::check_syntax(&c.name, &c.value)
                .unwrap_or_else(|e| panic!("{}: {}: {e}", o.name(), c.name));
        }
        let phases = o.spec.validation.iter().flat_map(|v| {
            [&v.readiness, &v.deployment, &v.performance, &v.conformance]
                .into_iter()
                .flatten()
        });
        for p in phases {
            for c in &p.constraints {
                constraint::Expr::parse(&c.value)
                    .unwrap_or_else(|e| panic!("{}: {}: {e}", o.name(), c.name));
            }
        }
    }
}

#[test]
fn registry_is_consistent() {
    let reg = catalog().registry();
    let mut keys = BTreeMap::new();
    for c in &reg.components {
        assert!(!c.display_name.is_empty(), "{}", c.name);
        let helm = c
            .helm
            .as_ref()
            .is_some_and(|h| !h.default_repository.is_empty() || !h.default_chart.is_empty());
        let kust = c
            .kustomize
            .as_ref()
            .is_some_and(|k| !k.default_source.is_empty());
        assert!(
            !(helm && kust),
            "{} has both helm and kustomize defaults",
            c.name
        );
        for k in std::iter::once(&c.name).chain(&c.value_override_keys) {
            if let Some(prev) = keys.insert(k.clone(), c.name.clone()) {
                assert_eq!(prev, c.name, "override key {k} used twice");
            }
        }
        if let Some(h) = &c.health_check {
            assert!(
                catalog().file(&h.assert_file).is_some(),
                "{}: {}",
                c.name,
                h.assert_file
            );
        }
    }
    assert!(reg.get("nodewright-operator").is_some());
    assert!(
        reg.get("skyhook-operator").is_none(),
        "seed names are nodewright-*"
    );
}

#[test]
fn every_leaf_combination_resolves() {
    let all = Criteria::every_combination();
    assert_eq!(all.len(), 6 * 6 * 3 * 5 * 3);
    for q in &all {
        let r = engine::resolve(catalog(), q, None).unwrap_or_else(|e| panic!("{q}: {e}"));
        assert_eq!(
            r.metadata.applied_overlays[..2],
            ["base", "monitoring-hpa"],
            "{q}"
        );
    }
}

#[test]
fn new_services_and_accelerators_have_chains() {
    let mut q = Criteria::default();
    q.set(Field::Service, "oke").unwrap();
    q.set(Field::Accelerator, "a100").unwrap();
    q.set(Field::Intent, "training").unwrap();
    let r = engine::resolve(catalog(), &q, None).unwrap();
    assert_eq!(
        r.metadata.applied_overlays,
        [
            "base",
            "monitoring-hpa",
            "oke",
            "oke-training",
            "a100-oke-training"
        ]
    );
    q.set(Field::Service, "eks").unwrap();
    q.set(Field::Accelerator, "l40").unwrap();
    q.set(Field::Intent, "inference").unwrap();
    let r = engine::resolve(catalog(), &q, None).unwrap();
    assert_eq!(
        r.metadata.applied_overlays.last().unwrap(),
        "l40-eks-inference"
    );
}
