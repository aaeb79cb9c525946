//! Bundles: a recipe rendered into deployable files for Helm (`deploy.sh`
//! and one `install.sh` per `NNN-<component>/` folder), Argo CD (one
//! `Application` per folder) or an Argo CD app-of-apps Helm chart, with
//! `checksums.txt` over everything; and `verify`, which checks such a tree.
//!
//! [`generate`] is a pure function of catalog, recipe and options (the one
//! exception is the kustomize build, behind [`manifests::Kustomize`]); it
//! returns the file tree in memory. [`write::write_tree`] is the only part
//! that touches the output directory. Flag parsing and printing belong to
//! the CLI; this module must not read flags, the environment or stdin.

pub mod checksums;
pub mod gotmpl;
mod goyaml;
pub mod layout;
pub mod manifests;
#[cfg(feature = "trust")]
pub mod oci;
pub mod set;
pub(crate) mod validations;
pub mod values;
#[cfg(feature = "trust")]
pub mod verify;
pub mod write;

mod argocd;
mod helm;
mod lift;
mod render;

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::model::recipe::{ComponentRef, RecipeResult};
use crate::model::registry::{ComponentRegistry, RegistryComponent};
use crate::yaml;
use layout::{Folder, FolderKind, LocalContent};
use manifests::Kustomize;
use set::{DynamicPaths, SetOverrides};
use values::{ComponentValues, Scheduling};

/// How the bundle is deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deployer {
    Helm,
    ArgoCd,
    ArgoCdHelm,
}

impl Deployer {
    /// The spellings [`Deployer::parse`] accepts (in any case), offered to
    /// shell completion.
    pub const NAMES: &'static [&'static str] = &["helm", "argocd", "argocd-helm"];

    /// Case-insensitive, trimmed.
    pub fn parse(s: &str) -> Result<Deployer> {
        match s.trim().to_ascii_lowercase().as_str() {
            "helm" => Ok(Deployer::Helm),
            "argocd" => Ok(Deployer::ArgoCd),
            "argocd-helm" => Ok(Deployer::ArgoCdHelm),
            _ => Err(Error::invalid(format!(
                "invalid deployer type {s:?}: must be one of [argocd argocd-helm helm]"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Deployer::Helm => "helm",
            Deployer::ArgoCd => "argocd",
            Deployer::ArgoCdHelm => "argocd-helm",
        }
    }

    /// What the summary calls the result.
    pub fn describe(self) -> &'static str {
        match self {
            Deployer::Helm => "Helm per-component bundle",
            Deployer::ArgoCd => "Argo CD applications",
            Deployer::ArgoCdHelm => "Argo CD Helm chart app-of-apps",
        }
    }

    /// The deployment steps printed after a local bundle is written.
    pub fn steps(self, dir: &str) -> Vec<String> {
        match self {
            Deployer::Helm => vec![
                format!("cd {dir}"),
                "chmod +x deploy.sh".into(),
                "./deploy.sh".into(),
            ],
            Deployer::ArgoCd => vec![
                "Push the generated files to your GitOps repository".into(),
                format!("kubectl apply -f {dir}/app-of-apps.yaml"),
            ],
            Deployer::ArgoCdHelm => vec![format!("cd {dir}"), "helm install aicr-bundle .".into()],
        }
    }
}

/// Everything the bundle command decided before generation.
#[derive(Debug, Clone)]
pub struct Options {
    pub deployer: Deployer,
    /// Repository baked into Argo CD Applications (plain argocd only).
    pub repo: String,
    pub set: SetOverrides,
    pub dynamic: DynamicPaths,
    pub scheduling: Scheduling,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            deployer: Deployer::Helm,
            repo: String::new(),
            set: SetOverrides::default(),
            dynamic: DynamicPaths::default(),
            scheduling: Scheduling::default(),
        }
    }
}

impl Options {
    /// Checks that need no recipe; run before any work.
    pub fn validate(&self) -> Result<()> {
        if self.deployer == Deployer::ArgoCd && !self.dynamic.is_empty() {
            return Err(Error::invalid(
                "dynamic declarations are not supported with deployer \"argocd\"; use deployer \"argocd-helm\" instead",
            ));
        }
        Ok(())
    }
}

/// One file of a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleFile {
    /// Borrowed when the file is an embedded catalog file verbatim (CRD
    /// manifests of 600 KiB), owned otherwise.
    pub content: Cow<'static, [u8]>,
    pub mode: u32,
}

/// A generated bundle, not yet written.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub deployer: Deployer,
    /// Bundle-relative path → file, `checksums.txt` included.
    pub files: BTreeMap<String, BundleFile>,
    /// Deployer notes, then validation warnings.
    pub notes: Vec<String>,
    /// The recipe after component filtering.
    pub recipe: RecipeResult,
}

impl Bundle {
    fn add(&mut self, path: impl Into<String>, content: impl Into<Vec<u8>>, mode: u32) {
        let content = Cow::Owned(content.into());
        self.files.insert(path.into(), BundleFile { content, mode });
    }

    /// Add a text file, borrowed when it is an embedded catalog file.
    fn add_text(&mut self, path: impl Into<String>, text: Cow<'static, str>, mode: u32) {
        let content = match text {
            Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
            Cow::Owned(s) => Cow::Owned(s.into_bytes()),
        };
        self.files.insert(path.into(), BundleFile { content, mode });
    }
}

/// A local folder's rendered `templates/` files: base name and text.
type Templates = Vec<(String, Cow<'static, str>)>;

/// The shared result of planning, handed to the deployers.
struct Plan<'a> {
    recipe: &'a RecipeResult,
    folders: Vec<Folder>,
    /// By component index of `recipe`.
    values: Vec<ComponentValues>,
    /// Rendered `templates/` files by folder index (local folders only).
    /// Each folder's files are built once ([`helm::folder_files`]), and
    /// its templates move into the bundle then rather than being copied
    /// (a CRD manifest is 600 KiB).
    templates: Vec<RefCell<Templates>>,
    registry: &'a ComponentRegistry,
    opts: &'a Options,
}

impl Plan<'_> {
    fn component(&self, f: &Folder) -> &ComponentRef {
        &self.recipe.component_refs[f.component]
    }

    /// The key a component's install-time values live under in the
    /// argocd-helm root `values.yaml`.
    fn override_key(&self, name: &str) -> String {
        self.registry
            .get(name)
            .and_then(|r| r.value_override_keys.first().cloned())
            .unwrap_or_else(|| name.to_string())
    }
}

/// A values file: a header comment, a document marker, the sorted map.
fn values_yaml(v: &Value, what: &str) -> Result<String> {
    let mut s = format!("# Generated by aicr {} ({what})\n---\n", crate::VERSION);
    if v.as_object().is_some_and(|m| !m.is_empty()) {
        s.push_str(&yaml::to_yaml(v)?);
    }
    Ok(s)
}

/// The `--set` pairs for a component: exact name first, then each
/// override key in registry order; the first match wins.
fn set_for<'s>(
    set: &'s SetOverrides,
    name: &str,
    reg: Option<&RegistryComponent>,
) -> &'s [(String, String)] {
    let mut keys = vec![name];
    if let Some(r) = reg {
        keys.extend(r.value_override_keys.iter().map(String::as_str));
    }
    let mut found: Option<(&str, &[(String, String)])> = None;
    for k in keys {
        if let Some(pairs) = set.get(k) {
            match found {
                None => found = Some((k, pairs)),
                Some((used, _)) => tracing::warn!(
                    "--set overrides under {k:?} are ignored for component {name}: {used:?} is used (one key per component)"
                ),
            }
        }
    }
    found.map(|(_, p)| p).unwrap_or(&[])
}

/// Go's `strconv.ParseBool`.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Drop disabled components (recipe `overrides.enabled: false`, or
/// `--set <c>:enabled=false`; `enabled=true` brings a recipe-disabled one
/// back). Returns the filtered copy and the names brought back.
fn filter(
    recipe: &RecipeResult,
    registry: &ComponentRegistry,
    set: &SetOverrides,
) -> Result<(RecipeResult, BTreeSet<String>)> {
    let mut out = recipe.clone();
    let mut re_enabled = BTreeSet::new();
    out.component_refs.retain(|c| {
        let pairs = set_for(set, &c.name, registry.get(&c.name));
        let flag = pairs.iter().find(|(p, _)| p == "enabled").map(|(_, v)| v);
        match flag.map(|v| (v, parse_bool(v))) {
            Some((_, Some(on))) => {
                if on && !c.is_enabled() {
                    re_enabled.insert(c.name.clone());
                }
                on
            }
            Some((raw, None)) => {
                tracing::warn!("ignoring --set {}:enabled={raw}: not a boolean", c.name);
                c.is_enabled()
            }
            None => c.is_enabled(),
        }
    });
    let kept: BTreeSet<&str> = out.component_refs.iter().map(|c| c.name.as_str()).collect();
    out.deployment_order.retain(|n| kept.contains(n.as_str()));
    if out.component_refs.is_empty() {
        return Err(Error::invalid(
            "recipe has no enabled components after filtering",
        ));
    }
    Ok((out, re_enabled))
}

/// `--dynamic` paths by canonical component name; unknown keys fail.
fn resolve_dynamic(
    dynamic: &DynamicPaths,
    registry: &ComponentRegistry,
) -> Result<BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, paths) in dynamic.iter() {
        let reg = registry.lookup_key(key).ok_or_else(|| {
            Error::invalid(format!(
                "unknown component {key:?} in dynamic declaration: not found in component registry"
            ))
        })?;
        out.entry(reg.name.clone())
            .or_default()
            .extend(paths.iter().cloned());
    }
    Ok(out)
}

/// What every use of a recipe's bundle plan starts from: the recipe after
/// component filtering, its folders and each component's final values.
struct Prepared {
    recipe: RecipeResult,
    folders: Vec<Folder>,
    /// By component index of `recipe`.
    values: Vec<ComponentValues>,
}

fn prepare(catalog: &Catalog, recipe: &RecipeResult, opts: &Options) -> Result<Prepared> {
    if recipe.component_refs.is_empty() {
        return Err(Error::invalid(
            "recipe must contain at least one component reference",
        ));
    }
    opts.validate()?;
    let registry = catalog.registry();
    for key in opts.set.keys() {
        if recipe.component(key).is_none() && registry.lookup_key(key).is_none() {
            return Err(Error::invalid(format!(
                "unknown component {key:?} in --set: not found in the recipe or the component registry"
            )));
        }
    }
    let dynamic = resolve_dynamic(&opts.dynamic, registry)?;
    let (filtered, re_enabled) = filter(recipe, registry, &opts.set)?;
    for name in dynamic.keys() {
        match filtered.component(name) {
            None => tracing::warn!(
                "--dynamic paths for component {name} are ignored: it is not in the bundle"
            ),
            Some(c) if c.source.is_empty() || !c.tag.is_empty() || !c.path.is_empty() => {
                return Err(Error::invalid(format!(
                    "--dynamic is not supported for component {name:?}: it has no upstream Helm chart (its manifests are rendered at bundle time)"
                )));
            }
            Some(_) => {}
        }
    }
    let folders = layout::plan(&filtered)?;

    let values: Vec<ComponentValues> = filtered
        .component_refs
        .iter()
        .map(|c| {
            let reg = registry.get(&c.name);
            values::compute(
                catalog,
                &values::Inputs {
                    component: c,
                    registry: reg,
                    set: set_for(&opts.set, &c.name, reg),
                    re_enabled: re_enabled.contains(&c.name),
                    scheduling: &opts.scheduling,
                    dynamic: dynamic.get(&c.name).map(Vec::as_slice).unwrap_or(&[]),
                },
            )
        })
        .collect();
    Ok(Prepared {
        recipe: filtered,
        folders,
        values,
    })
}

/// One catalog manifest as bundle generation renders it.
#[derive(Debug, Clone)]
pub struct ManifestInput {
    pub component: String,
    /// Catalog path of the template.
    pub path: String,
    pub template: String,
    /// The `.Values`/`.Release`/`.Chart` data it is rendered with.
    pub data: Value,
}

/// Every catalog manifest [`generate`] renders for `recipe` and `opts`,
/// with its data, unrendered. The test suite hands these to Helm's engine
/// to judge `gotmpl` against it.
pub fn manifest_inputs(
    catalog: &Catalog,
    recipe: &RecipeResult,
    opts: &Options,
) -> Result<Vec<ManifestInput>> {
    let p = prepare(catalog, recipe, opts)?;
    let mut out = Vec::new();
    for f in &p.folders {
        if f.kind == FolderKind::UpstreamHelm || f.content != LocalContent::Manifests {
            continue;
        }
        let c = &p.recipe.component_refs[f.component];
        for path in &c.manifest_files {
            out.push(ManifestInput {
                component: c.name.clone(),
                path: path.clone(),
                template: manifests::source(catalog, path, c)?.to_string(),
                data: manifests::data(c, &f.name, &p.values[f.component].full),
            });
        }
    }
    Ok(out)
}

/// Render the bundle for `recipe` in memory.
pub fn generate(
    catalog: &Catalog,
    recipe: &RecipeResult,
    opts: &Options,
    kustomize: &dyn Kustomize,
) -> Result<Bundle> {
    let registry = catalog.registry();
    let Prepared {
        recipe: filtered,
        folders,
        values,
    } = prepare(catalog, recipe, opts)?;

    let names: Vec<&str> = layout::order(&filtered)
        .into_iter()
        .map(|i| filtered.component_refs[i].name.as_str())
        .collect();
    let s = &opts.scheduling;
    let warnings = validations::run(
        registry,
        &names,
        &validations::Context {
            criteria: &filtered.criteria,
            workload_selector_set: !s.workload_selector.is_empty(),
            accelerated_selector_set: !s.accelerated_selector.is_empty(),
        },
    )?;

    let mut templates = Vec::with_capacity(folders.len());
    for f in &folders {
        templates.push(local_templates(catalog, &filtered, f, &values, kustomize)?);
    }
    // A chart with no templates is one Helm refuses to lint and installs as
    // nothing; manifests that render no object under these values get no
    // folder at all.
    let mut skipped = Vec::new();
    let (folders, templates): (Vec<Folder>, Vec<_>) = folders
        .into_iter()
        .zip(templates)
        .filter(|(f, t)| {
            let empty = f.content == LocalContent::Manifests && t.is_empty();
            if empty {
                skipped.push(format!(
                    "{}: its manifests render no object with these values; no folder is written",
                    f.name
                ));
            }
            !empty
        })
        .unzip();
    let folders = layout::renumber(folders);

    let plan = Plan {
        recipe: &filtered,
        folders,
        values,
        templates: templates.into_iter().map(RefCell::new).collect(),
        registry,
        opts,
    };
    let mut bundle = Bundle {
        deployer: opts.deployer,
        files: BTreeMap::new(),
        notes: Vec::new(),
        recipe: filtered.clone(),
    };
    match opts.deployer {
        Deployer::Helm => helm::build(&plan, &mut bundle)?,
        Deployer::ArgoCd => argocd::build(&plan, &mut bundle)?,
        Deployer::ArgoCdHelm => argocd::build_chart(&plan, &mut bundle)?,
    }
    bundle.notes.extend(skipped);
    bundle.notes.extend(warnings);

    for path in catalog.paths().filter(|p| catalog.is_external(p)) {
        if let Some(bytes) = catalog.file(path) {
            bundle.add(format!("data/{path}"), bytes, 0o644);
        }
    }
    let sums = checksums::render_with(
        bundle.files.iter().map(|(p, f)| (p.as_str(), &*f.content)),
        crate::catalog::embedded_digest,
    );
    bundle.add(checksums::FILE, sums, 0o644);
    Ok(bundle)
}

/// The `templates/` files of a local folder: rendered manifests (with
/// unique base names) or the kustomize build.
fn local_templates(
    catalog: &Catalog,
    recipe: &RecipeResult,
    f: &Folder,
    values: &[ComponentValues],
    kustomize: &dyn Kustomize,
) -> Result<Templates> {
    let c = &recipe.component_refs[f.component];
    match (f.kind, f.content) {
        (FolderKind::UpstreamHelm, _) | (_, LocalContent::None) => Ok(Vec::new()),
        (_, LocalContent::Kustomize) => {
            let target = manifests::kustomize_target(c);
            let out = kustomize
                .build(&target)
                .map_err(|e| e.context(format!("component {:?}", c.name)))?;
            Ok(vec![(
                "manifest.yaml".into(),
                manifests::strip_hooks(Cow::Owned(out)),
            )])
        }
        (_, LocalContent::Manifests) => {
            let mut out: Templates = Vec::new();
            for path in &c.manifest_files {
                let base = path.rsplit('/').next().unwrap_or(path).to_string();
                if out.iter().any(|(b, _)| *b == base) {
                    return Err(Error::invalid(format!(
                        "component {:?} has two manifests named {base:?}; manifest base names must be unique",
                        c.name
                    )));
                }
                if let Some(text) =
                    manifests::render(catalog, path, c, &f.name, &values[f.component].full)?
                {
                    out.push((base, text));
                }
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine;
    use crate::model::criteria::{Criteria, Field};

    #[test]
    fn every_offered_deployer_parses_to_its_own_name() {
        for n in Deployer::NAMES {
            assert_eq!(Deployer::parse(n).map(Deployer::name).ok(), Some(*n));
        }
    }

    struct NoKustomize;
    impl Kustomize for NoKustomize {
        fn build(&self, target: &str) -> Result<String> {
            Ok(format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-{}\n",
                target.len()
            ))
        }
    }

    fn eks_training() -> RecipeResult {
        let mut c = Criteria::default();
        for (f, v) in [
            (Field::Service, "eks"),
            (Field::Accelerator, "h100"),
            (Field::Intent, "training"),
            (Field::Os, "ubuntu"),
        ] {
            c.set(f, v).unwrap();
        }
        engine::resolve(Catalog::embedded().unwrap(), &c, None).unwrap()
    }

    fn build_bundle(recipe: &RecipeResult, opts: &Options) -> Result<Bundle> {
        generate(Catalog::embedded().unwrap(), recipe, opts, &NoKustomize)
    }

    #[test]
    fn helm_bundle_has_the_seed_layout() {
        let b = build_bundle(&eks_training(), &Options::default()).unwrap();
        for p in [
            "README.md",
            "deploy.sh",
            "undeploy.sh",
            "recipe.yaml",
            "checksums.txt",
            "001-aws-ebs-csi-driver/upstream.env",
            "007-nodewright-customizations/Chart.yaml",
            "007-nodewright-customizations/templates/tuning.yaml",
            "008-gpu-operator/install.sh",
            "009-gpu-operator-post/templates/dcgm-exporter.yaml",
            "010-kai-scheduler/upstream.env",
        ] {
            assert!(b.files.contains_key(p), "{p}: {:?}", b.files.keys());
        }
        assert_eq!(b.files["deploy.sh"].mode, 0o755);
        assert_eq!(b.files["001-aws-ebs-csi-driver/values.yaml"].mode, 0o600);
        let env =
            String::from_utf8(b.files["010-kai-scheduler/upstream.env"].content.to_vec()).unwrap();
        assert_eq!(
            env,
            "CHART='oci://ghcr.io/nvidia/kai-scheduler/kai-scheduler'\nREPO=''\nVERSION='v0.13.0'\n"
        );
        assert_eq!(b.notes.len(), 2, "{:?}", b.notes);
    }

    #[test]
    fn manifests_that_render_nothing_get_no_folder() {
        let mut c = Criteria::default();
        for (f, v) in [
            (Field::Service, "kind"),
            (Field::Accelerator, "h100"),
            (Field::Intent, "training"),
        ] {
            c.set(f, v).unwrap();
        }
        let r = engine::resolve(Catalog::embedded().unwrap(), &c, None).unwrap();
        let b = build_bundle(&r, &Options::default()).unwrap();
        assert!(
            b.files.keys().all(|k| !k.contains("gpu-operator-post")),
            "{:?}",
            b.files.keys()
        );
        assert!(
            b.notes
                .iter()
                .any(|n| n.starts_with("gpu-operator-post: its manifests render no object")),
            "{:?}",
            b.notes
        );
        let dirs: BTreeSet<&str> = b
            .files
            .keys()
            .filter_map(|k| k.split_once('/').map(|(d, _)| d))
            .filter(|d| d.as_bytes()[0].is_ascii_digit())
            .collect();
        let numbers: Vec<usize> = dirs.iter().map(|d| d[..3].parse().unwrap()).collect();
        assert_eq!(numbers, (1..=dirs.len()).collect::<Vec<_>>(), "{dirs:?}");
    }

    #[test]
    fn set_enabled_filters_and_unknown_keys_fail() {
        let r = eks_training();
        let opts = Options {
            set: SetOverrides::parse(&["awsebscsidriver:enabled=false"]).unwrap(),
            ..Options::default()
        };
        let b = build_bundle(&r, &opts).unwrap();
        assert!(b.files.keys().all(|k| !k.contains("aws-ebs-csi-driver")));
        assert!(
            !b.recipe
                .deployment_order
                .iter()
                .any(|n| n == "aws-ebs-csi-driver")
        );

        let opts = Options {
            set: SetOverrides::parse(&["nosuch:a=b"]).unwrap(),
            ..Options::default()
        };
        let e = build_bundle(&r, &opts).unwrap_err();
        assert!(
            e.to_string().contains("unknown component \"nosuch\""),
            "{e}"
        );

        let mut none = r.clone();
        none.component_refs.clear();
        assert_eq!(
            build_bundle(&none, &Options::default())
                .unwrap_err()
                .to_string(),
            "recipe must contain at least one component reference"
        );
    }

    #[test]
    fn dynamic_rules() {
        let r = eks_training();
        let opts = Options {
            deployer: Deployer::ArgoCd,
            dynamic: DynamicPaths::parse(&["gpuoperator:driver.version"]).unwrap(),
            ..Options::default()
        };
        assert!(
            build_bundle(&r, &opts)
                .unwrap_err()
                .to_string()
                .contains("use deployer \"argocd-helm\"")
        );
        let opts = Options {
            dynamic: DynamicPaths::parse(&["nosuch:x"]).unwrap(),
            ..Options::default()
        };
        assert!(
            build_bundle(&r, &opts)
                .unwrap_err()
                .to_string()
                .contains("in dynamic declaration")
        );
        let opts = Options {
            dynamic: DynamicPaths::parse(&["nodewrightcustomizations:x"]).unwrap(),
            ..Options::default()
        };
        assert!(
            build_bundle(&r, &opts)
                .unwrap_err()
                .to_string()
                .contains("no upstream Helm chart")
        );
        let opts = Options {
            dynamic: DynamicPaths::parse(&["gpuoperator:driver.version"]).unwrap(),
            ..Options::default()
        };
        let b = build_bundle(&r, &opts).unwrap();
        let cv = String::from_utf8(
            b.files["008-gpu-operator/cluster-values.yaml"]
                .content
                .to_vec(),
        )
        .unwrap();
        assert!(cv.contains("version:"), "{cv}");
        let post = String::from_utf8(
            b.files["009-gpu-operator-post/cluster-values.yaml"]
                .content
                .to_vec(),
        )
        .unwrap();
        assert_eq!(cv, post);
    }

    #[test]
    fn kustomize_components_become_local_charts() {
        let mut r = eks_training();
        r.component_refs.push(ComponentRef {
            name: "extra".into(),
            namespace: "extra".into(),
            source: "https://github.com/org/repo".into(),
            path: "deploy".into(),
            tag: "v1".into(),
            ..Default::default()
        });
        let b = build_bundle(&r, &Options::default()).unwrap();
        let m = &b.files["014-extra/templates/manifest.yaml"];
        assert!(String::from_utf8_lossy(&m.content).contains("kind: ConfigMap"));
        assert!(b.files.contains_key("014-extra/Chart.yaml"));
    }
}
