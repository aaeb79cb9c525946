//! Readiness-gate benchmark: the constraints of the largest recipe the
//! catalog resolves, judged against 1,000 node snapshots (the fleet view).
//! Target: under 100 ms on one core.

use std::hint::black_box;

use aicr::catalog::Catalog;
use aicr::constraint::{Expr, Path};
use aicr::engine;
use aicr::model::criteria::Criteria;
use aicr::model::recipe::RecipeResult;
use aicr::model::snapshot::{Measurement, Snapshot, Subtype};
use aicr::validate::NodeSnapshot;
use aicr::validate::readiness::Fleet;
use criterion::{Criterion, criterion_group, criterion_main};

/// Every leaf of the criteria space resolved; the one with most constraints.
fn largest_recipe() -> RecipeResult {
    let catalog = Catalog::embedded().unwrap();
    Criteria::every_combination()
        .iter()
        .map(|q| engine::resolve(catalog, q, None).unwrap())
        .max_by_key(|r| r.constraints.len())
        .unwrap()
}

/// A node that reads, for every constraint, the value it names (so most
/// constraints pass, as on a healthy fleet) plus the usual other readings.
fn node(recipe: &RecipeResult, i: usize) -> NodeSnapshot {
    let mut snap = Snapshot {
        kind: "Snapshot".into(),
        api_version: "aicr.nvidia.com/v1alpha1".into(),
        metadata: [("source-node".to_string(), format!("gpu-{i:04}"))].into(),
        measurements: Vec::new(),
    };
    for c in &recipe.constraints {
        let path = Path::parse(&c.name).unwrap();
        let expr = Expr::parse(&c.value).unwrap();
        // Every 97th node runs an older build of whatever is versioned.
        let value = if i.is_multiple_of(97) && expr.version {
            "0.1.0".to_string()
        } else {
            expr.value.to_string()
        };
        let m = match snap
            .measurements
            .iter_mut()
            .position(|m| m.kind == path.kind)
        {
            Some(p) => &mut snap.measurements[p],
            None => {
                snap.measurements.push(Measurement {
                    kind: path.kind.into(),
                    subtypes: Vec::new(),
                });
                snap.measurements.last_mut().unwrap()
            }
        };
        match m.subtypes.iter_mut().find(|s| s.subtype == path.subtype) {
            Some(s) => {
                s.data.insert(path.key.into(), value.into());
            }
            None => m
                .subtypes
                .push(Subtype::new(path.subtype).with(path.key, value)),
        }
    }
    for m in &mut snap.measurements {
        for s in &mut m.subtypes {
            for k in 0..20 {
                s.data
                    .insert(format!("extra-{k}"), format!("value-{k}").into());
            }
        }
    }
    NodeSnapshot::new(&format!("gpu-{i:04}.yaml"), snap)
}

fn bench(c: &mut Criterion) {
    let recipe = largest_recipe();
    let nodes: Vec<NodeSnapshot> = (0..1000).map(|i| node(&recipe, i)).collect();
    let name = format!(
        "readiness_{}_constraints_x_1000_nodes",
        recipe.constraints.len()
    );
    c.bench_function(&name, |b| {
        b.iter(|| black_box(Fleet::evaluate(&recipe.constraints, &nodes)))
    });
    let fleet = Fleet::evaluate(&recipe.constraints, &nodes);
    c.bench_function("readiness_report_1000_nodes", |b| {
        b.iter(|| {
            black_box(
                fleet
                    .report("bench", 0, std::time::SystemTime::now())
                    .to_json()
                    .unwrap(),
            )
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
