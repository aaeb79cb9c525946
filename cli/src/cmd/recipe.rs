//! `aicr recipe` and `aicr query`: flag wiring, the three criteria modes
//! (snapshot, criteria file, query) and `--config` precedence. The engine
//! work itself is `aicr::engine` / `aicr::hydrate`.

use std::path::PathBuf;

use aicr::catalog::{Catalog, DataSource};
use aicr::error::{Error, ErrorKind, Result, ResultExt};
use aicr::model::config::AicrConfig;
use aicr::model::criteria::{Criteria, Field, OverlayCriteria};
use aicr::model::recipe::{API_VERSION, RecipeResult};
use aicr::model::snapshot::Snapshot;
use aicr::sink::{self, OutputFormat};
use aicr::source::{self, Source};
use aicr::{engine, hydrate, yaml};
use clap::Args;

/// Flags `recipe` and `query` share.
#[derive(Debug, Args)]
pub struct CriteriaArgs {
    /// Kubernetes service: aks, eks, gke, kind, oke (any when unset)
    #[arg(long, value_parser = aicr::flags::offered(aicr::flags::text, Field::Service.values()), hide_possible_values = true)]
    pub service: Option<String>,
    /// GPU type: a100, b200, gb200, h100, l40
    #[arg(long, visible_alias = "gpu", value_parser = aicr::flags::offered(aicr::flags::text, Field::Accelerator.values()), hide_possible_values = true)]
    pub accelerator: Option<String>,
    /// Workload intent: inference, training
    #[arg(long, short = 'i', value_parser = aicr::flags::offered(aicr::flags::text, Field::Intent.values()), hide_possible_values = true)]
    pub intent: Option<String>,
    /// Node OS: amazonlinux, cos, rhel, ubuntu
    #[arg(long, value_parser = aicr::flags::offered(aicr::flags::text, Field::Os.values()), hide_possible_values = true)]
    pub os: Option<String>,
    /// Platform: dynamo, kubeflow
    #[arg(long, value_parser = aicr::flags::offered(aicr::flags::text, Field::Platform.values()), hide_possible_values = true)]
    pub platform: Option<String>,
    /// Number of GPU nodes (values <= 0 are ignored)
    #[arg(long, action = clap::ArgAction::Append, allow_negative_numbers = true)]
    pub nodes: Vec<i64>,
    /// Derive criteria from a snapshot: file, http(s) URL or cm://namespace/name
    #[arg(long, short = 's')]
    pub snapshot: Option<String>,
    /// RecipeCriteria file (YAML or JSON, path or URL)
    #[arg(long, short = 'c')]
    pub criteria: Option<String>,
    /// AICRConfig file or http(s) URL; command-line flags win over it
    #[arg(long)]
    pub config: Option<String>,
    /// External catalog directory layered over the embedded catalog
    #[arg(long, action = clap::ArgAction::Append)]
    pub data: Vec<PathBuf>,
    /// Treat --data as the whole catalog instead of a layer
    #[arg(long, requires = "data")]
    pub data_only: bool,
    /// Output format: yaml, json, table [default: yaml]
    #[arg(long, short = 't', value_parser = aicr::flags::offered(aicr::flags::typed::<OutputFormat>, OutputFormat::NAMES), hide_possible_values = true)]
    pub format: Option<OutputFormat>,
    /// Kubeconfig for cm:// sources and sinks (default: $KUBECONFIG, in-cluster)
    #[arg(long, short = 'k', action = clap::ArgAction::Append)]
    pub kubeconfig: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RecipeArgs {
    #[command(flatten)]
    pub common: CriteriaArgs,
    /// Destination: file, - (stdout, the default) or cm://namespace/name
    #[arg(long, short = 'o')]
    pub output: Option<String>,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    #[command(flatten)]
    pub common: CriteriaArgs,
    /// Dot path into the hydrated recipe, e.g. components.gpu-operator.values.driver.version
    #[arg(long, required = true)]
    pub selector: String,
}

/// Load and validate `--config`.
pub fn load_config(src: &str) -> Result<AicrConfig> {
    let fail = |e: Error| e.input(format!("failed to load config from {src:?}"));
    if src.starts_with("cm://") {
        return Err(Error::invalid(
            "ConfigMap (cm://) sources are not supported by --config; export the ConfigMap data with kubectl get cm <name> -o yaml and pass the resulting file",
        ));
    }
    if src.starts_with("file://") {
        return Err(Error::invalid(
            "file:// URIs are not supported by --config; pass the path directly",
        ));
    }
    let source = Source::parse(src).map_err(fail)?;
    let bytes = source::read_local_or_http(&source).map_err(fail)?;
    let text = yaml::utf8(&bytes).map_err(fail)?;
    let cfg: AicrConfig = yaml::parse(text, source.format(src)).map_err(fail)?;
    cfg.validate().map_err(fail)?;
    Ok(cfg)
}

/// The one line `recipe`, `query` and `bundle` log when a command-line
/// flag replaces a different value from `--config`.
pub fn log_config_override(
    field: &str,
    flag: &str,
    config: &dyn std::fmt::Display,
    value: &dyn std::fmt::Display,
) {
    tracing::info!(
        "CLI flag overriding config value: field={field} flag={flag} config={config} override={value}"
    );
}

/// Pick a value: the flag when given, else the config's when non-empty.
/// Logs when the flag replaces a different config value.
fn pick(field: &str, flag_name: &str, flag: Option<&str>, config: &str) -> Option<String> {
    match flag {
        Some(f) => {
            if !config.is_empty() && config != f {
                log_config_override(field, flag_name, &config, &f);
            }
            Some(f.to_string())
        }
        None => (!config.is_empty()).then(|| config.to_string()),
    }
}

/// Log every criteria field a flag changed from the config's value.
fn log_criteria_overrides(config: &Criteria, resolved: &Criteria, a: &CriteriaArgs) {
    for (field, value) in flag_fields(a) {
        let (before, after) = (config.get(field), resolved.get(field));
        if value.is_some() && before != aicr::model::ANY && before != after {
            log_config_override(
                &format!("spec.recipe.criteria.{}", field.name()),
                &format!("--{}", field.name()),
                &before,
                &after,
            );
        }
    }
    if config.nodes != 0 && a.nodes.last().is_some_and(|&n| n > 0) && config.nodes != resolved.nodes
    {
        log_config_override(
            "spec.recipe.criteria.nodes",
            "--nodes",
            &config.nodes,
            &resolved.nodes,
        );
    }
}

/// Everything `recipe`/`query` need once flags and config are reconciled.
pub struct Resolved {
    pub catalog: CatalogHandle,
    pub recipe: RecipeResult,
    pub format: OutputFormat,
    pub output: String,
}

/// A borrowed embedded catalog or an owned layered one.
pub enum CatalogHandle {
    Embedded(&'static Catalog),
    Owned(Box<Catalog>),
}

impl std::ops::Deref for CatalogHandle {
    type Target = Catalog;
    fn deref(&self) -> &Catalog {
        match self {
            CatalogHandle::Embedded(c) => c,
            CatalogHandle::Owned(c) => c,
        }
    }
}

pub fn open_catalog(data: Option<PathBuf>, data_only: bool) -> Result<CatalogHandle> {
    match data {
        None => Catalog::embedded().map(CatalogHandle::Embedded),
        Some(d) if data_only => {
            Catalog::load(&DataSource::Only(d)).map(|c| CatalogHandle::Owned(Box::new(c)))
        }
        Some(d) => {
            Catalog::load(&DataSource::Layered(d)).map(|c| CatalogHandle::Owned(Box::new(c)))
        }
    }
}

fn flag_fields(a: &CriteriaArgs) -> [(Field, Option<&str>); 5] {
    [
        (Field::Service, a.service.as_deref()),
        (Field::Accelerator, a.accelerator.as_deref()),
        (Field::Intent, a.intent.as_deref()),
        (Field::Os, a.os.as_deref()),
        (Field::Platform, a.platform.as_deref()),
    ]
}

/// Apply explicitly given criteria flags on top of `c`. In snapshot and
/// criteria-file modes every replacement is logged.
fn apply_flags(c: &mut Criteria, a: &CriteriaArgs, log_as: Option<&str>) -> Result<()> {
    for (field, value) in flag_fields(a) {
        if let Some(v) = value {
            let before = c.set(field, v)?;
            if let Some(what) = log_as {
                tracing::info!(
                    "CLI flag overriding {what} value: field={} detected={before} override={}",
                    field.name(),
                    c.get(field)
                );
            }
        }
    }
    if let Some(&n) = a.nodes.last()
        && n > 0
    {
        c.nodes =
            u32::try_from(n).map_err(|_| Error::invalid(format!("invalid nodes count: {n}")))?;
    }
    Ok(())
}

/// Overlay the non-`any` fields of `over` onto `c`.
fn overlay_criteria(c: &mut Criteria, over: &Criteria) {
    for f in Field::ALL {
        if over.get(f) != aicr::model::ANY {
            let _ = c.set(f, over.get(f));
        }
    }
    if over.nodes != 0 {
        c.nodes = over.nodes;
    }
}

pub fn load_snapshot(uri: &str, kubeconfig: Option<&PathBuf>) -> Result<Snapshot> {
    tracing::info!("loading snapshot from: uri={uri}");
    let inner = || -> Result<Snapshot> {
        let source = Source::parse(uri)?;
        let (bytes, format) = crate::kubernetes::read_source(&source, uri, kubeconfig)?;
        Snapshot::parse(yaml::utf8(&bytes)?, format)
    };
    // The cause keeps its kind: a missing ConfigMap is "not found" (3), a
    // denied read "unauthorized" (4); unparsable content is internal (8).
    inner().context(format!("failed to load snapshot from {uri:?}"))
}

fn load_criteria_file(path: &str) -> Result<Criteria> {
    tracing::info!("loading criteria from file: path={path}");
    let inner = || -> Result<Criteria> {
        let source = Source::parse(path)?;
        let bytes = source::read_local_or_http(&source)?;
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct CriteriaDoc {
            #[serde(default)]
            kind: Option<String>,
            #[serde(default)]
            api_version: Option<String>,
            #[serde(default)]
            spec: OverlayCriteria,
        }
        let doc: CriteriaDoc = yaml::parse(yaml::utf8(&bytes)?, source.format(path))?;
        if let Some(k) = doc.kind.filter(|k| k != "RecipeCriteria") {
            return Err(Error::invalid(format!(
                "invalid kind {k:?}, expected \"RecipeCriteria\""
            )));
        }
        if let Some(v) = doc.api_version.filter(|v| v != API_VERSION) {
            return Err(Error::invalid(format!(
                "invalid apiVersion {v:?}, expected {API_VERSION:?}"
            )));
        }
        doc.spec.to_query("criteria spec")
    };
    inner().map_err(|e| match e.kind() {
        ErrorKind::InvalidRequest => e.wrap(
            ErrorKind::Internal,
            format!("failed to load criteria from {path:?}"),
        ),
        _ => e.context(format!("failed to load criteria from {path:?}")),
    })
}

/// Reconcile flags and config, pick the criteria mode and resolve.
pub fn resolve(a: &CriteriaArgs, output_flag: Option<&str>) -> Result<Resolved> {
    let config = a
        .config
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(load_config)
        .transpose()?;
    let section = config.as_ref().map(|c| c.recipe()).unwrap_or_default();
    let kubeconfig = a.kubeconfig.last();

    let format = match pick(
        "spec.recipe.output.format",
        "--format",
        a.format.map(|f| f.to_string()).as_deref(),
        &section.output.format,
    ) {
        Some(name) => name.parse()?,
        None => OutputFormat::Yaml,
    };
    let output = pick(
        "spec.recipe.output.path",
        "--output",
        output_flag,
        &section.output.path,
    )
    .unwrap_or_default();
    let data = match a.data.last() {
        Some(d) => {
            if !section.data.is_empty() && std::path::Path::new(&section.data) != d {
                log_config_override("spec.recipe.data", "--data", &section.data, &d.display());
            }
            Some(d.clone())
        }
        None => (!section.data.is_empty()).then(|| PathBuf::from(&section.data)),
    };
    let catalog = open_catalog(data, a.data_only)?;
    let snapshot_uri = pick(
        "spec.recipe.input.snapshot",
        "--snapshot",
        a.snapshot.as_deref(),
        &section.input.snapshot,
    );

    let config_criteria = config.as_ref().map(|c| c.criteria()).transpose()?.flatten();
    let (criteria, snapshot) = if let Some(uri) = snapshot_uri {
        let snap = load_snapshot(&uri, kubeconfig)?;
        let mut c = engine::criteria_from_snapshot(&snap);
        if let Some(cc) = &config_criteria {
            overlay_criteria(&mut c, cc);
        }
        apply_flags(&mut c, a, Some("snapshot-detected"))?;
        if let Some(cc) = &config_criteria {
            log_criteria_overrides(cc, &c, a);
        }
        tracing::info!("building recipe from snapshot: criteria={c}");
        (c, Some(snap))
    } else if let Some(path) = &a.criteria {
        let mut c = load_criteria_file(path)?;
        apply_flags(&mut c, a, Some("criteria-file"))?;
        tracing::info!("building recipe from criteria file: criteria={c}");
        (c, None)
    } else {
        let mut c = Criteria::default();
        if let Some(cc) = &config_criteria {
            overlay_criteria(&mut c, cc);
        }
        apply_flags(&mut c, a, None)?;
        if let Some(cc) = &config_criteria {
            log_criteria_overrides(cc, &c, a);
        }
        if c.is_unset() {
            return Err(Error::invalid(
                "no criteria provided: specify at least one of --service, --accelerator, --intent, --os, --platform, --nodes, --criteria, --config, or use --snapshot to load from a snapshot file",
            ));
        }
        tracing::info!("building recipe from criteria: criteria={c}");
        (c, None)
    };

    let recipe =
        engine::resolve(&catalog, &criteria, snapshot.as_ref()).map_err(|e| match e.kind() {
            ErrorKind::Internal => e.context("error building recipe"),
            _ => e,
        })?;
    for w in &recipe.metadata.constraint_warnings {
        tracing::warn!(
            "overlay excluded due to constraint failure: overlay={} constraint={} expected={} actual={} reason={}",
            w.overlay,
            w.constraint,
            w.expected,
            w.actual,
            w.reason
        );
    }
    Ok(Resolved {
        catalog,
        recipe,
        format,
        output,
    })
}

/// Render a recipe in the requested format.
pub fn render_recipe(recipe: &RecipeResult, format: OutputFormat) -> Result<String> {
    match format {
        OutputFormat::Yaml => yaml::to_yaml(recipe),
        OutputFormat::Json => yaml::to_json(recipe),
        OutputFormat::Table => {
            let v = serde_json::to_value(recipe).map_err(|e| Error::internal(e.to_string()))?;
            Ok(sink::table(sink::flatten(&v)))
        }
    }
}

pub fn run_recipe(args: &RecipeArgs) -> Result<()> {
    let r = resolve(&args.common, args.output.as_deref())?;
    let text = render_recipe(&r.recipe, r.format)?;
    crate::kubernetes::write_destination(
        &r.output,
        text.as_bytes(),
        "recipe",
        args.common.kubeconfig.last(),
        r.format,
    )
    .context("failed to create output writer")?;
    tracing::info!(
        "recipe generation completed: output={} components={} overlays={}",
        r.output,
        r.recipe.component_refs.len(),
        r.recipe.metadata.applied_overlays.len()
    );
    Ok(())
}

pub fn run_query(args: &QueryArgs) -> Result<()> {
    let r = resolve(&args.common, None)?;
    let json = r.format == OutputFormat::Json;
    let mut doc = hydrate::hydrate(&r.catalog, &r.recipe)?;
    if json {
        hydrate::null_empty_metadata_lists(&mut doc);
    }
    let value = hydrate::select(&doc, &args.selector)?;
    let text = hydrate::render_selection(value, json)?;
    sink::write_local("-", text.as_bytes())
}
