//! Bundle generation benchmarks on the largest catalog recipe (EKS, H100,
//! inference, Ubuntu, Dynamo: 16 components, 20 folders): values pipeline,
//! manifest rendering and templates for each deployer, and the whole
//! generate-and-write path the CLI runs.

use std::hint::black_box;

use aicr::bundle::manifests::ExternalKustomize;
use aicr::bundle::{self, Deployer, Options};
use aicr::catalog::Catalog;
use aicr::engine;
use aicr::model::criteria::{Criteria, Field};
use criterion::{Criterion, criterion_group, criterion_main};

fn largest_recipe(catalog: &Catalog) -> aicr::model::RecipeResult {
    let mut c = Criteria::default();
    for (f, v) in [
        (Field::Service, "eks"),
        (Field::Accelerator, "h100"),
        (Field::Intent, "inference"),
        (Field::Os, "ubuntu"),
        (Field::Platform, "dynamo"),
    ] {
        c.set(f, v).expect("valid criteria");
    }
    engine::resolve(catalog, &c, None).expect("the recipe resolves")
}

fn bench(c: &mut Criterion) {
    let catalog = Catalog::embedded().expect("embedded catalog");
    let recipe = largest_recipe(catalog);
    for deployer in [Deployer::Helm, Deployer::ArgoCd, Deployer::ArgoCdHelm] {
        let opts = Options {
            deployer,
            ..Options::default()
        };
        c.bench_function(&format!("generate {}", deployer.name()), |b| {
            b.iter(|| {
                bundle::generate(catalog, black_box(&recipe), &opts, &ExternalKustomize)
                    .expect("bundle")
            })
        });
    }
    let opts = Options::default();
    let dir = tempfile::tempdir().expect("tempdir");
    c.bench_function("generate and write helm", |b| {
        b.iter(|| {
            let out =
                bundle::generate(catalog, &recipe, &opts, &ExternalKustomize).expect("bundle");
            bundle::write::write_tree(&out.files, &dir.path().join("bundle")).expect("write")
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
