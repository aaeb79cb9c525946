//! Recipe engine benchmarks: catalog parsing, resolution of every leaf
//! combination of the criteria space, and query hydration of each.

use std::hint::black_box;

use aicr::catalog::{Catalog, DataSource};
use aicr::engine;
use aicr::hydrate;
use aicr::model::criteria::Criteria;
use criterion::{Criterion, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    c.bench_function("catalog_parse_embedded", |b| {
        b.iter(|| black_box(Catalog::load(&DataSource::Embedded).unwrap()))
    });
    let catalog = Catalog::embedded().unwrap();
    let all = Criteria::every_combination();
    c.bench_function(&format!("resolve_all_{}_leaves", all.len()), |b| {
        b.iter(|| {
            for q in &all {
                black_box(engine::resolve(catalog, q, None).unwrap());
            }
        })
    });
    let recipes: Vec<_> = all
        .iter()
        .map(|q| engine::resolve(catalog, q, None).unwrap())
        .collect();
    c.bench_function(&format!("hydrate_all_{}_leaves", recipes.len()), |b| {
        b.iter(|| {
            for r in &recipes {
                black_box(hydrate::hydrate(catalog, r).unwrap());
            }
        })
    });
    let one = Criteria {
        service: "eks".into(),
        accelerator: "h100".into(),
        intent: "training".into(),
        os: "ubuntu".into(),
        ..Default::default()
    };
    c.bench_function("resolve_eks_h100_training_ubuntu", |b| {
        b.iter(|| black_box(engine::resolve(catalog, &one, None).unwrap()))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
