//! Folder planning shared by every deployer: deployment order, the
//! classification of each component (upstream Helm chart, manifest-only,
//! kustomize, mixed) and the numbered `NNN-<name>/` folders that result.
//! Pure over the recipe; it writes nothing and renders nothing.

use std::collections::BTreeSet;

use crate::error::{Error, Result};
use crate::model::recipe::{ComponentRef, RecipeResult};

/// The two folder shapes; local folders carry `Chart.yaml` + `templates/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FolderKind {
    UpstreamHelm,
    LocalHelm,
}

/// What fills a local folder's `templates/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LocalContent {
    None,
    Manifests,
    Kustomize,
}

/// One `NNN-<name>/` folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Folder {
    /// `NNN-<name>`.
    pub dir: String,
    /// Folder name without the number; also the Helm release and the Argo
    /// Application name.
    pub name: String,
    /// Index into the recipe's `componentRefs`.
    pub component: usize,
    pub namespace: String,
    pub kind: FolderKind,
    pub content: LocalContent,
    /// 0-based position (the Argo sync wave).
    pub wave: usize,
}

impl Folder {
    pub(crate) fn is_post(&self, component_name: &str) -> bool {
        self.name != component_name
    }
}

/// Component indices in deployment order: names listed in
/// `deploymentOrder` first, in that order; the rest by name. Without a
/// `deploymentOrder`, recipe order.
pub(crate) fn order(recipe: &RecipeResult) -> Vec<usize> {
    let refs = &recipe.component_refs;
    if recipe.deployment_order.is_empty() {
        return (0..refs.len()).collect();
    }
    let mut out: Vec<usize> = Vec::with_capacity(refs.len());
    for name in &recipe.deployment_order {
        if let Some(i) = refs.iter().position(|c| &c.name == name)
            && !out.contains(&i)
        {
            out.push(i);
        }
    }
    let mut rest: Vec<usize> = (0..refs.len()).filter(|i| !out.contains(i)).collect();
    rest.sort_by(|a, b| refs[*a].name.cmp(&refs[*b].name));
    out.extend(rest);
    out
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains('/') || name.contains('\\') || name.contains("..") {
        return Err(Error::invalid(format!(
            "invalid component name {name:?}: must be non-empty and contain no '/', '\\' or '..'"
        )));
    }
    Ok(())
}

fn is_kustomize(c: &ComponentRef) -> bool {
    !c.tag.is_empty() || !c.path.is_empty()
}

/// Folders numbered and waved by their position, after some were dropped.
pub(crate) fn renumber(folders: Vec<Folder>) -> Vec<Folder> {
    folders
        .into_iter()
        .enumerate()
        .map(|(wave, f)| Folder {
            dir: format!("{:03}-{}", wave + 1, f.name),
            wave,
            ..f
        })
        .collect()
}

/// Plan the folders for the (already filtered) recipe.
pub(crate) fn plan(recipe: &RecipeResult) -> Result<Vec<Folder>> {
    let refs = &recipe.component_refs;
    let mut names = BTreeSet::new();
    for c in refs {
        check_name(&c.name)?;
        if !names.insert(c.name.as_str()) {
            return Err(Error::invalid(format!(
                "component {:?} appears more than once in the recipe",
                c.name
            )));
        }
    }
    let mut folders = Vec::new();
    for idx in order(recipe) {
        let c = &refs[idx];
        let mut push = |name: String, kind, content| {
            let wave = folders.len();
            folders.push(Folder {
                dir: format!("{:03}-{name}", wave + 1),
                name,
                component: idx,
                namespace: if c.namespace.is_empty() {
                    "default".to_string()
                } else {
                    c.namespace.clone()
                },
                kind,
                content,
                wave,
            });
        };
        let has_manifests = !c.manifest_files.is_empty();
        if is_kustomize(c) {
            if has_manifests {
                return Err(Error::invalid(format!(
                    "component {:?} has both kustomize (Tag/Path) and raw manifests; use one",
                    c.name
                )));
            }
            push(
                c.name.clone(),
                FolderKind::LocalHelm,
                LocalContent::Kustomize,
            );
        } else if c.source.is_empty() {
            if !has_manifests {
                return Err(Error::invalid(format!(
                    "component {:?} has nothing to install: no chart source, no kustomize path or tag, no manifests",
                    c.name
                )));
            }
            push(
                c.name.clone(),
                FolderKind::LocalHelm,
                LocalContent::Manifests,
            );
        } else {
            push(c.name.clone(), FolderKind::UpstreamHelm, LocalContent::None);
            if has_manifests {
                let post = format!("{}-post", c.name);
                if names.contains(post.as_str()) {
                    return Err(Error::invalid(format!(
                        "component {post:?} collides with the post-install folder of mixed component {:?}",
                        c.name
                    )));
                }
                push(post, FolderKind::LocalHelm, LocalContent::Manifests);
            }
        }
    }
    Ok(folders)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comp(name: &str, source: &str, manifests: &[&str]) -> ComponentRef {
        ComponentRef {
            name: name.into(),
            namespace: format!("ns-{name}"),
            source: source.into(),
            manifest_files: manifests.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn recipe(refs: Vec<ComponentRef>, order: &[&str]) -> RecipeResult {
        RecipeResult {
            kind: "RecipeResult".into(),
            api_version: "aicr.nvidia.com/v1alpha1".into(),
            metadata: Default::default(),
            criteria: Default::default(),
            constraints: vec![],
            component_refs: refs,
            deployment_order: order.iter().map(|s| s.to_string()).collect(),
            validation: None,
        }
    }

    #[test]
    fn mixed_components_get_a_post_folder_and_shift_the_rest() {
        let r = recipe(
            vec![
                comp("z-last", "https://x", &[]),
                comp("gpu-operator", "https://x", &["m.yaml"]),
                comp("custom", "", &["c.yaml"]),
                comp("a-extra", "https://x", &[]),
            ],
            &["custom", "gpu-operator", "z-last"],
        );
        let f = plan(&r).unwrap();
        let dirs: Vec<&str> = f.iter().map(|f| f.dir.as_str()).collect();
        assert_eq!(
            dirs,
            [
                "001-custom",
                "002-gpu-operator",
                "003-gpu-operator-post",
                "004-z-last",
                "005-a-extra"
            ]
        );
        assert_eq!(f[0].kind, FolderKind::LocalHelm);
        assert_eq!(f[2].kind, FolderKind::LocalHelm);
        assert_eq!(f[2].namespace, "ns-gpu-operator");
        assert_eq!(f[2].wave, 2);
        assert!(f[2].is_post("gpu-operator"));
    }

    #[test]
    fn bad_components_are_rejected() {
        for (refs, needle) in [
            (
                vec![comp("a/b", "https://x", &[])],
                "invalid component name",
            ),
            (vec![comp("", "https://x", &[])], "invalid component name"),
            (vec![comp("empty", "", &[])], "nothing to install"),
            (
                vec![
                    comp("x", "https://x", &["m.yaml"]),
                    comp("x-post", "https://y", &[]),
                ],
                "collides",
            ),
            (
                vec![ComponentRef {
                    path: "k".into(),
                    ..comp("k", "", &["m.yaml"])
                }],
                "both kustomize",
            ),
        ] {
            let e = plan(&recipe(refs, &[])).unwrap_err();
            assert!(e.to_string().contains(needle), "{e}");
            assert_eq!(e.kind(), crate::ErrorKind::InvalidRequest);
        }
    }
}
