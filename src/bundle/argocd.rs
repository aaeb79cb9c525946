//! The Argo CD deployers. `argocd`: one `application.yaml` per folder
//! (multi-source for upstream charts, path-based for local charts) plus
//! `app-of-apps.yaml`. `argocd-helm`: the bundle is itself a Helm chart whose
//! templates are those Applications, with static values under `static/` and
//! install-time overrides in the root `values.yaml`. Folder contents come
//! from `helm::folder_files`; this module owns only the Argo side.

use serde_json::{Map, Value};

use super::helm::{self, chart_source, local_what};
use super::layout::FolderKind;
use super::render;
use super::{Bundle, Plan, values_yaml};
use crate::error::{Error, Result};

/// Used when `--repo` is not given; the notes tell the user to replace it.
pub(super) const PLACEHOLDER_REPO: &str = "https://github.com/YOUR-ORG/YOUR-REPO.git";
const TARGET_REVISION: &str = "main";
const REPO_REQUIRED: &str =
    "repoURL is required: helm install ... --set repoURL=oci://<registry>/<path>/aicr-bundle";

/// Upstream chart coordinates as Argo CD wants them: OCI charts by full
/// reference and verbatim version, HTTP charts with the leading `v` dropped.
fn argo_chart(c: &crate::model::recipe::ComponentRef) -> (String, String, String) {
    let src = chart_source(c);
    if src.oci {
        (src.reference, src.chart, c.version.clone())
    } else {
        let v = c
            .version
            .strip_prefix('v')
            .unwrap_or(&c.version)
            .to_string();
        (src.repo, src.chart, v)
    }
}

pub(super) fn build(plan: &Plan, out: &mut Bundle) -> Result<()> {
    let repo_url = if plan.opts.repo.is_empty() {
        PLACEHOLDER_REPO
    } else {
        plan.opts.repo.as_str()
    };
    for (idx, f) in plan.folders.iter().enumerate() {
        helm::folder_files(plan, idx, out, false)?;
        let c = plan.component(f);
        let mut ctx = render::context();
        ctx.insert("name", &f.name);
        ctx.insert("wave", &f.wave.to_string());
        ctx.insert("namespace", &f.namespace);
        ctx.insert("dir", &f.dir);
        ctx.insert("component", &c.name);
        ctx.insert("repo_url", repo_url);
        ctx.insert("target_revision", TARGET_REVISION);
        let text = match f.kind {
            FolderKind::UpstreamHelm => {
                let (chart_repo, chart, revision) = argo_chart(c);
                ctx.insert("chart_repo", &chart_repo);
                ctx.insert("chart", &chart);
                ctx.insert("revision", &revision);
                ctx.insert("values_ref", &format!("$values/{}/values.yaml", f.dir));
                render::render("application-upstream.yaml", &ctx)?
            }
            FolderKind::LocalHelm => {
                ctx.insert("what", &local_what(f, c));
                render::render("application-local.yaml", &ctx)?
            }
        };
        out.add(format!("{}/application.yaml", f.dir), text, 0o644);
    }
    let mut ctx = helm::readme_context(plan);
    ctx.insert("repo_url", repo_url);
    ctx.insert("target_revision", TARGET_REVISION);
    ctx.insert("placeholder", &plan.opts.repo.is_empty());
    out.add(
        "app-of-apps.yaml",
        render::render("app-of-apps.yaml", &ctx)?,
        0o644,
    );
    out.add(
        "README.md",
        render::render("README-argocd.md", &ctx)?,
        0o644,
    );
    if plan.opts.repo.is_empty() {
        out.notes
            .push("Update app-of-apps.yaml with your repository URL before applying".into());
    }
    Ok(())
}

/// The root `values.yaml` of the chart: dynamic stubs under each
/// component's first override key, plus `repoURL` and `targetRevision`.
fn root_values(plan: &Plan) -> Result<(Value, Vec<String>)> {
    let mut root = Map::new();
    let mut listed = Vec::new();
    for (i, c) in plan.recipe.component_refs.iter().enumerate() {
        let dynamic = &plan.values[i].dynamic;
        if dynamic.as_object().is_none_or(Map::is_empty) {
            continue;
        }
        let key = plan
            .registry
            .get(&c.name)
            .and_then(|r| r.value_override_keys.first())
            .ok_or_else(|| {
                Error::invalid(format!(
                    "component {:?} has no value override key in the registry; --dynamic needs one with --deployer argocd-helm",
                    c.name
                ))
            })?;
        let mut paths = Vec::new();
        leaf_paths(dynamic, "", &mut paths);
        listed.extend(paths.iter().map(|p| format!("{key}.{p}")));
        root.insert(key.clone(), dynamic.clone());
    }
    root.insert("repoURL".into(), Value::String(String::new()));
    root.insert("targetRevision".into(), Value::String(String::new()));
    Ok((Value::Object(root), listed))
}

fn leaf_paths(v: &Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaf_paths(x, &p, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

pub(super) fn build_chart(plan: &Plan, out: &mut Bundle) -> Result<()> {
    if !plan.opts.repo.is_empty() {
        tracing::warn!(
            "--repo is ignored with --deployer argocd-helm; supply the URL at install time via helm install --set repoURL=..."
        );
    }
    let chart_version = super::manifests::chart_version(&plan.recipe.metadata.version);
    for (idx, f) in plan.folders.iter().enumerate() {
        helm::folder_files(plan, idx, out, false)?;
        let c = plan.component(f);
        let mut ctx = render::context();
        ctx.insert("name", &f.name);
        ctx.insert("wave", &f.wave.to_string());
        ctx.insert("namespace", &f.namespace);
        ctx.insert("dir", &f.dir);
        ctx.insert("component", &c.name);
        ctx.insert("key", &plan.override_key(&c.name));
        ctx.insert("repo_required", REPO_REQUIRED);
        let text = match f.kind {
            FolderKind::UpstreamHelm => {
                let static_path = format!("static/{}.yaml", c.name);
                out.add(
                    static_path.clone(),
                    values_yaml(
                        &plan.values[f.component].static_values,
                        &format!("static values of {}", c.name),
                    )?,
                    0o644,
                );
                let (chart_repo, chart, revision) = argo_chart(c);
                ctx.insert("chart_repo", &chart_repo);
                ctx.insert("chart", &chart);
                ctx.insert("revision", &revision);
                ctx.insert("static_path", &static_path);
                render::render("child-upstream.yaml", &ctx)?
            }
            FolderKind::LocalHelm => {
                ctx.insert("what", &local_what(f, c));
                render::render("child-local.yaml", &ctx)?
            }
        };
        out.add(format!("templates/{}.yaml", f.name), text, 0o644);
    }
    let mut ctx = helm::readme_context(plan);
    ctx.insert("chart_version", &chart_version);
    ctx.insert("repo_required", REPO_REQUIRED);
    ctx.insert(
        "description",
        &format!(
            "AICR bundle for {} as an Argo CD app of apps",
            plan.recipe.criteria
        ),
    );
    let (root, dynamic) = root_values(plan)?;
    ctx.insert("dynamic", &dynamic);
    out.add(
        "Chart.yaml",
        render::render("Chart-bundle.yaml", &ctx)?,
        0o644,
    );
    out.add(
        "values.yaml",
        values_yaml(
            &root,
            "install-time values: repoURL, targetRevision and per-component overrides",
        )?,
        0o644,
    );
    out.add(
        "templates/aicr-stack.yaml",
        render::render("aicr-stack.yaml", &ctx)?,
        0o644,
    );
    out.add(
        "README.md",
        render::render("README-argocd-helm.md", &ctx)?,
        0o644,
    );
    Ok(())
}
