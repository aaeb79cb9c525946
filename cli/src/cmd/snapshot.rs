//! `aicr snapshot`: capture a node and its cluster. Three modes: local
//! collection (`--local` or `AICR_AGENT_MODE=true`, what the agent Job runs),
//! the in-cluster agent Job (default), and the aggregator's live view
//! (`--aggregator`). Flags are validated before anything is deployed or
//! written.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use aicr::error::{Error, Result, ResultExt};
use aicr::kubernetes::{measure, scheduling};
use aicr::model::snapshot::Snapshot;
use aicr::sink::{self, OutputFormat};
use aicr::source::{ConfigMapRef, Source};
use aicr::template::Template;
use aicr::{snapshot_io, yaml};
use clap::Args;

use crate::args::agent_job::{AgentJobArgs, Placement};

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// Destination: file, - (stdout, the default) or cm://namespace/name
    #[arg(long, short = 'o')]
    pub output: Option<String>,
    /// Output format: yaml, json, table [default: yaml]
    #[arg(long, short = 't', value_parser = aicr::flags::offered(aicr::flags::typed::<OutputFormat>, OutputFormat::NAMES), hide_possible_values = true)]
    pub format: Option<OutputFormat>,
    /// Kubeconfig (default: $KUBECONFIG, ~/.kube/config, in-cluster)
    #[arg(long, short = 'k', action = clap::ArgAction::Append)]
    pub kubeconfig: Vec<PathBuf>,
    /// Collect on this machine instead of deploying the agent Job
    /// (same as AICR_AGENT_MODE=true)
    #[arg(long)]
    pub local: bool,
    /// Host root for local collection (a host filesystem mounted elsewhere)
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
    /// Namespace for the agent's RBAC, Job and default ConfigMap
    #[arg(long, short = 'n', env = "AICR_NAMESPACE", default_value = "default")]
    pub namespace: String,
    #[command(flatten)]
    pub agent: AgentJobArgs,
    /// Image pull secret for the agent (repeatable)
    #[arg(long, action = clap::ArgAction::Append)]
    pub image_pull_secret: Vec<String>,
    /// Node selector for the agent pod, key=value (repeatable)
    #[arg(long, action = clap::ArgAction::Append)]
    pub node_selector: Vec<String>,
    /// Toleration for the agent pod, key=value:effect or key:effect
    /// (repeatable; default: tolerate everything)
    #[arg(long, action = clap::ArgAction::Append)]
    pub toleration: Vec<String>,
    /// Keep the Job and RBAC objects for debugging
    #[arg(long)]
    pub no_cleanup: bool,
    /// Render through a template (path or URL) instead of YAML/JSON: a Go
    /// template with Sprig functions, or Tera when the name ends in .tera
    #[arg(long)]
    pub template: Option<String>,
    /// Read the live snapshot from the aggregator at this URL instead of
    /// collecting (with --node; $AICR_AGGREGATOR when only --node is given)
    #[arg(long, conflicts_with = "local")]
    pub aggregator: Option<String>,
    /// Node whose snapshot the aggregator returns (default: the cluster-level one)
    #[arg(long, conflicts_with = "local")]
    pub node: Option<String>,
    #[command(flatten)]
    pub connection: crate::remote::Connection,
}

/// Everything validated up front.
struct Plan {
    format: OutputFormat,
    output: String,
    template: Option<Template>,
    max_nodes: u32,
}

fn local_mode(a: &SnapshotArgs) -> bool {
    a.local || std::env::var("AICR_AGENT_MODE").is_ok_and(|v| v == "true")
}

fn plan(a: &SnapshotArgs) -> Result<Plan> {
    a.agent.check()?;
    let format = a.format.unwrap_or_default();
    let output = a.output.clone().unwrap_or_default().trim().to_string();
    let template = match &a.template {
        None => None,
        Some(t) => {
            if format != OutputFormat::Yaml {
                return Err(Error::invalid(
                    "--template requires YAML format; --format must be \"yaml\" or omitted",
                ));
            }
            if output.starts_with("cm://") {
                return Err(Error::invalid(
                    "--template output cannot go to a ConfigMap; use a file or stdout",
                ));
            }
            Some(load_template(t)?)
        }
    };
    if output.starts_with("cm://") {
        ConfigMapRef::parse(&output)?;
    }
    let max_nodes = a.agent.max_nodes();
    Ok(Plan {
        format,
        output,
        template,
        max_nodes,
    })
}

fn load_template(t: &str) -> Result<Template> {
    let text = match Source::parse(t)? {
        Source::Http(u) => aicr::source::fetch_http(&u)?,
        Source::ConfigMap(_) => {
            return Err(Error::invalid(
                "--template must be a file path or http(s) URL",
            ));
        }
        Source::File(p) => {
            let meta = std::fs::metadata(&p)
                .map_err(|_| Error::not_found(format!("template file not found: {t}")))?;
            if meta.is_dir() {
                return Err(Error::invalid(format!("template path is a directory: {t}")));
            }
            aicr::source::read_file(&p)?
        }
    };
    // The name picks the engine: `.tera` is Tera, anything else Go.
    Template::load(t, yaml::utf8(&text)?)
}

/// Write the finished snapshot: template, or format, to the destination.
fn emit(snap: &Snapshot, plan: &Plan, kubeconfig: Option<&PathBuf>) -> Result<()> {
    let text = match &plan.template {
        Some(t) => t.render(snap)?,
        None => snapshot_io::render(snap, plan.format)?,
    };
    crate::kubernetes::write_destination(
        &plan.output,
        text.as_bytes(),
        "snapshot",
        kubeconfig,
        plan.format,
    )
    .context("failed to write snapshot")?;
    if plan.output.starts_with("cm://") {
        tracing::info!("snapshot saved to ConfigMap: uri={}", plan.output);
    } else if !sink::is_stdout(&plan.output) {
        tracing::info!("snapshot saved to file: path={}", plan.output);
    }
    Ok(())
}

pub fn run(a: &SnapshotArgs) -> Result<()> {
    let plan = plan(a)?;
    if a.aggregator.is_some() || a.node.is_some() {
        let node = a.node.as_deref().unwrap_or_default();
        let snap = crate::remote::fetch_snapshot(a.aggregator.as_deref(), &a.connection, node)?;
        return emit(&snap, &plan, a.kubeconfig.last());
    }
    if local_mode(a) {
        run_local(a, &plan)
    } else {
        run_agent_job(a, &plan)
    }
}

/// Collect this node and, when a cluster is reachable, the cluster view.
pub async fn collect_local(root: PathBuf, kubeconfig: Option<PathBuf>, max_nodes: u32) -> Snapshot {
    let started = SystemTime::now();
    let node = node_name_from_env();
    let client = match crate::kubernetes::client(kubeconfig.as_deref()).await {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::debug!("no Kubernetes client: {e}");
            None
        }
    };
    let opts = aicr_agent::collect::CollectOptions {
        root: aicr_agent::collect::Root::new(root),
        ..Default::default()
    };
    let (k8s_m, node_ms, topo) = tokio::join!(
        tokio::time::timeout(
            Duration::from_secs(60),
            measure::collect_k8s(client.as_ref(), Some(&node))
        ),
        aicr_agent::collect::collect_node(&opts),
        tokio::time::timeout(
            Duration::from_secs(90),
            measure::collect_topology(client.as_ref(), max_nodes as usize)
        ),
    );
    let mut ms = node_ms;
    match k8s_m {
        Ok(m) => ms.push(m),
        Err(_) => tracing::warn!("failed to collect K8s - skipping: timed out"),
    }
    match topo {
        Ok(Ok(m)) => ms.push(m),
        Ok(Err(e)) => tracing::warn!("failed to collect NodeTopology - skipping: {e}"),
        Err(_) => tracing::warn!("failed to collect NodeTopology - skipping: timed out"),
    }
    snapshot_io::assemble(ms, &node, started)
}

fn run_local(a: &SnapshotArgs, plan: &Plan) -> Result<()> {
    // Every collector tolerates a missing file (a host without the tool or
    // module), so a mistyped root would pass for a host with nothing on it.
    if !a.root.exists() {
        return Err(Error::not_found(format!(
            "host root not found: {}",
            a.root.display()
        )));
    }
    if !a.root.is_dir() {
        return Err(Error::invalid(format!(
            "host root {} is not a directory",
            a.root.display()
        )));
    }
    let snap = crate::runtime::block_on(collect_local(
        a.root.clone(),
        a.kubeconfig.last().cloned(),
        plan.max_nodes,
    ))?;
    if a.agent.require_gpu {
        let count = snap
            .measurement("GPU")
            .and_then(|m| m.subtype("smi"))
            .and_then(|s| s.data.get("gpu-count"))
            .and_then(|r| r.render().parse::<i64>().ok())
            .unwrap_or(0);
        if count <= 0 {
            return Err(Error::not_found(
                "--require-gpu was set but no GPU was detected (nvidia-smi not found or returned 0 GPUs)",
            ));
        }
    }
    emit(&snap, plan, a.kubeconfig.last())?;
    tracing::info!("snapshot captured successfully");
    Ok(())
}

fn run_agent_job(a: &SnapshotArgs, plan: &Plan) -> Result<()> {
    aicr::kubernetes::check_namespace(&a.namespace)?;
    let node_selector = scheduling::parse_node_selectors(&a.node_selector)?;
    let tolerations = if a.toleration.is_empty() {
        None
    } else {
        Some(scheduling::parse_tolerations(&a.toleration)?)
    };
    let agent_output = if plan.output.starts_with("cm://") {
        ConfigMapRef::parse(&plan.output)?
    } else {
        ConfigMapRef {
            namespace: a.namespace.clone(),
            name: "aicr-snapshot".into(),
        }
    };
    let place = Placement {
        namespace: a.namespace.clone(),
        image_pull_secrets: a.image_pull_secret.clone(),
        node_selector,
        tolerations,
        cleanup: !a.no_cleanup,
        output: agent_output,
    };
    let job = a.agent.job(place, plan.max_nodes);
    let kubeconfig = a.kubeconfig.last().cloned();
    let text = crate::runtime::block_on(async {
        let client = crate::kubernetes::client(kubeconfig.as_deref())
            .await
            .map_err(|e| e.context("failed to create Kubernetes client"))?;
        aicr::kubernetes::snapshot_job::run(&client, &job).await
    })??;
    if plan.output.starts_with("cm://") {
        tracing::info!("snapshot saved to ConfigMap: uri={}", plan.output);
        return Ok(());
    }
    if plan.template.is_none() && plan.format == OutputFormat::Yaml {
        // The agent's YAML passes through unchanged, as upstream does.
        let mut out = text.into_bytes();
        if sink::is_stdout(&plan.output) {
            out.push(b'\n');
        }
        return sink::write_local(&plan.output, &out).context("failed to write snapshot");
    }
    let snap = Snapshot::parse(&text, yaml::Format::Yaml)
        .context("failed to parse the agent's snapshot")?;
    emit(&snap, plan, kubeconfig.as_ref())
}

/// The node name a local snapshot reports: `NODE_NAME`,
/// `KUBERNETES_NODE_NAME`, `HOSTNAME`, else empty. The downward API sets the
/// first two in a Pod; the environment is the interface here.
fn node_name_from_env() -> String {
    ["NODE_NAME", "KUBERNETES_NODE_NAME", "HOSTNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .unwrap_or_default()
}
