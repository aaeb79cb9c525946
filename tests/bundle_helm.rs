//! Every bundle the catalog can produce, judged by the tools that consume
//! it: for every leaf recipe, the local chart folders of `--deployer helm`
//! (defaults, scheduling flags, `--dynamic`) and the root chart of
//! `--deployer argocd-helm` go through Helm's `lint --strict` and render,
//! installed the way `install.sh` installs them (`-f values.yaml -f
//! cluster-values.yaml`); every object they render, and every Argo CD
//! Application of `--deployer argocd`, passes the official Kubernetes
//! schemas (strict) at the recipe's own oldest Kubernetes and the newest,
//! or its published CRD schema.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use aicr::bundle::manifests::ExternalKustomize;
use aicr::bundle::set::DynamicPaths;
use aicr::bundle::{self, Deployer, Options};
use aicr::catalog::Catalog;
use aicr::engine;
use aicr::model::criteria::Criteria;
use aicr::model::recipe::RecipeResult;
use aicr_test_support::tools::{self, Judge};
use serde_json::{Value, json};

fn option_sets() -> Vec<(&'static str, Options)> {
    let dynamic = DynamicPaths::parse(&["gpuoperator:driver.version"]).unwrap();
    vec![
        ("helm", Options::default()),
        (
            "helm, scheduling flags",
            Options {
                scheduling: crate::common::scheduled(),
                ..Options::default()
            },
        ),
        (
            "helm, --dynamic",
            Options {
                dynamic: dynamic.clone(),
                ..Options::default()
            },
        ),
        (
            "argocd-helm",
            Options {
                deployer: Deployer::ArgoCdHelm,
                ..Options::default()
            },
        ),
        (
            "argocd-helm, --dynamic",
            Options {
                deployer: Deployer::ArgoCdHelm,
                dynamic,
                ..Options::default()
            },
        ),
        (
            "argocd",
            Options {
                deployer: Deployer::ArgoCd,
                repo: "https://git.example.com/gitops.git".into(),
                ..Options::default()
            },
        ),
    ]
}

/// The recipe's floor from its `K8s.server.version` constraint (`>= X`),
/// or the catalog-wide floor.
fn oldest_kubernetes(recipe: &RecipeResult) -> String {
    recipe
        .constraints
        .iter()
        .find(|c| c.name == "K8s.server.version")
        .and_then(|c| c.value.trim().strip_prefix(">="))
        .map(|v| v.trim().trim_start_matches('v').to_string())
        .map(|v| {
            if v.matches('.').count() == 1 {
                format!("{v}.0")
            } else {
                v
            }
        })
        .unwrap_or_else(|| "1.25.0".into())
}

/// One chart folder of one bundle, as files.
#[derive(Clone)]
struct ChartDir {
    what: String,
    kube: String,
    files: BTreeMap<String, Vec<u8>>,
    /// `--set` values the user must give (the app-of-apps repository).
    set: Value,
}

impl ChartDir {
    fn write(&self, dir: &Path) {
        for (rel, content) in &self.files {
            let p = dir.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
    }

    /// What `install.sh` passes: `-f values.yaml -f cluster-values.yaml`.
    fn install_values(&self) -> Value {
        let mut v = json!({});
        for f in ["values.yaml", "cluster-values.yaml"] {
            if let Some(bytes) = self.files.get(f) {
                let layer: Value = aicr::yaml::from_yaml(std::str::from_utf8(bytes).unwrap())
                    .unwrap_or(Value::Null);
                tools::merge_values(&mut v, &layer);
            }
        }
        tools::merge_values(&mut v, &self.set);
        v
    }
}

/// Every distinct chart folder (and every distinct Argo CD Application
/// file) over every leaf recipe and option set.
fn distinct_outputs() -> (Vec<ChartDir>, Vec<(String, String)>) {
    let catalog = Catalog::embedded().unwrap();
    let mut recipes = BTreeMap::new();
    for criteria in Criteria::every_combination() {
        let r = engine::resolve(catalog, &criteria, None).unwrap();
        let key = serde_json::to_string(&(&r.component_refs, &r.deployment_order, &r.constraints))
            .unwrap();
        recipes.entry(key).or_insert((format!("{criteria:?}"), r));
    }
    let mut charts: BTreeMap<String, ChartDir> = BTreeMap::new();
    let mut applications = BTreeMap::new();
    for (criteria, recipe) in recipes.values() {
        let kube = oldest_kubernetes(recipe);
        for (label, opts) in option_sets() {
            let b = bundle::generate(catalog, recipe, &opts, &ExternalKustomize)
                .unwrap_or_else(|e| panic!("{label} bundle of {criteria}: {e}"));
            let chart_roots: BTreeSet<String> = b
                .files
                .keys()
                .filter_map(|p| p.strip_suffix("Chart.yaml"))
                .map(str::to_string)
                .collect();
            for root in chart_roots {
                let files: BTreeMap<String, Vec<u8>> = b
                    .files
                    .iter()
                    .filter_map(|(p, f)| {
                        let rel = p.strip_prefix(&root)?;
                        // A root chart owns only its own files, not the
                        // component folders beside them.
                        let own = !root.is_empty()
                            || rel == "Chart.yaml"
                            || rel == "values.yaml"
                            || rel.starts_with("templates/");
                        own.then(|| (rel.to_string(), f.content.to_vec()))
                    })
                    .collect();
                let key = format!("{kube}\n{files:?}");
                // The argocd-helm root chart is installed as its README
                // says: with the repository it was pushed to.
                let set = if root.is_empty() {
                    json!({"repoURL": "oci://registry.example.com/gitops/aicr-bundle"})
                } else {
                    json!({})
                };
                charts.entry(key).or_insert_with(|| ChartDir {
                    what: format!("{label}: {root}Chart.yaml of {criteria}"),
                    kube: kube.clone(),
                    files,
                    set,
                });
            }
            if opts.deployer == Deployer::ArgoCd {
                for (p, f) in &b.files {
                    let text = String::from_utf8(f.content.to_vec()).unwrap();
                    if p.ends_with(".yaml") && text.contains("kind: Application") {
                        applications
                            .entry(text)
                            .or_insert_with(|| format!("{label}: {p} of {criteria}"));
                    }
                }
            }
        }
    }
    (
        charts.into_values().collect(),
        applications.into_iter().map(|(t, w)| (w, t)).collect(),
    )
}

#[test]
fn every_bundle_chart_lints_renders_and_passes_the_schemas() {
    let Some(judge) = Judge::find() else { return };
    let (charts, applications) = distinct_outputs();
    assert!(charts.len() >= 10, "too few charts: {}", charts.len());
    let tmp = tempfile::tempdir().unwrap();
    let mut requests = Vec::new();
    for (i, c) in charts.iter().enumerate() {
        let dir = tmp.path().join(i.to_string());
        c.write(&dir);
        let values = c.install_values();
        for kube in [c.kube.as_str(), tools::NEWEST_KUBERNETES] {
            requests.push(json!({
                "op": "helm_lint", "chart": dir, "values": values, "strict": true,
                "kube_version": format!("v{kube}"),
            }));
        }
        requests.push(json!({
            "op": "helm_render", "chart": dir, "values": values,
            "name": c.files.get("Chart.yaml").map(|_| format!("chart-{i}")).unwrap(),
            "namespace": "aicr-bundle",
        }));
    }
    let verdicts = judge.batch(&requests);
    let mut problems = Vec::new();
    let mut rendered: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (c, chunk) in charts.iter().zip(verdicts.chunks(3)) {
        for (lint, kube) in chunk[..2]
            .iter()
            .zip([c.kube.as_str(), tools::NEWEST_KUBERNETES])
        {
            match lint {
                Ok(report) => problems.extend(
                    tools::lint_findings(report)
                        .into_iter()
                        .map(|f| format!("{} (lint, {kube}): {f}", c.what)),
                ),
                Err(e) => problems.push(format!("{} (lint, {kube}): {e}", c.what)),
            }
        }
        match &chunk[2] {
            Ok(out) => {
                for text in out.as_object().unwrap().values() {
                    rendered
                        .entry(c.kube.clone())
                        .or_default()
                        .push(text.as_str().unwrap().to_string());
                }
            }
            Err(e) => problems.push(format!("{} (render): {e}", c.what)),
        }
    }
    for (_, text) in &applications {
        rendered
            .entry("1.25.0".into())
            .or_default()
            .push(text.clone());
    }
    let crds = tools::crd_fixtures();
    for (kube, docs) in &rendered {
        let distinct: BTreeSet<&String> = docs.iter().collect();
        let stream = distinct
            .into_iter()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n---\n");
        problems.extend(
            judge
                .k8s_validate(&stream, &[kube.as_str(), tools::NEWEST_KUBERNETES], &crds)
                .into_iter()
                .map(|f| format!("schema (Kubernetes {kube}): {f}")),
        );
    }
    eprintln!(
        "{} distinct bundle charts and {} Argo CD Applications judged by Helm and the schemas",
        charts.len(),
        applications.len()
    );
    assert!(
        problems.is_empty(),
        "{} findings:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
