//! `aicr snapshot`: capture a node and its cluster. Three modes: local
//! collection (`--local` or `AICR_AGENT_MODE=true`, what the agent Job runs),
//! the in-cluster agent Job (default), and the aggregator's live view
//! (`--aggregator`). Flags are validated before anything is deployed or
//! written.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use aicr::agent_job::AgentJob;
use aicr::error::{Error, Result, ResultExt};
use aicr::model::snapshot::Snapshot;
use aicr::sink::{self, OutputFormat};
use aicr::source::{ConfigMapRef, Source};
use aicr::template::Template;
use aicr::{cluster, k8s, scheduling, snapshot_io, yaml};
use clap::Args;

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// Destination: file, - (stdout, the default) or cm://namespace/name
    #[arg(long, short = 'o')]
    pub output: Option<String>,
    /// Output format: yaml, json, table [default: yaml]
    #[arg(long, short = 't', value_parser = aicr::flags::typed::<OutputFormat>)]
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
    /// Agent image
    #[arg(long, env = "AICR_IMAGE", default_value = "ghcr.io/nvidia/aicr:latest")]
    pub image: String,
    /// Image pull secret for the agent (repeatable)
    #[arg(long, action = clap::ArgAction::Append)]
    pub image_pull_secret: Vec<String>,
    /// Name of the agent Job
    #[arg(long, default_value = "aicr")]
    pub job_name: String,
    /// Service account (also names the Role and RoleBinding)
    #[arg(long, default_value = "aicr")]
    pub service_account_name: String,
    /// Node selector for the agent pod, key=value (repeatable)
    #[arg(long, action = clap::ArgAction::Append)]
    pub node_selector: Vec<String>,
    /// Toleration for the agent pod, key=value:effect or key:effect
    /// (repeatable; default: tolerate everything)
    #[arg(long, action = clap::ArgAction::Append)]
    pub toleration: Vec<String>,
    /// How long to wait for the agent Job (e.g. 90s, 10m)
    #[arg(long, default_value = "5m", value_parser = aicr::flags::timeout)]
    pub timeout: Duration,
    /// Keep the Job and RBAC objects for debugging
    #[arg(long)]
    pub no_cleanup: bool,
    /// Run the agent privileged (host namespaces, systemd socket); use
    /// --privileged=false in PSS-restricted namespaces
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub privileged: bool,
    /// Fail unless a GPU is found (agent: request one GPU)
    #[arg(long, env = "AICR_REQUIRE_GPU", value_parser = aicr::flags::EnvBool)]
    pub require_gpu: bool,
    /// RuntimeClass for the agent pod (e.g. nvidia)
    #[arg(long, env = "AICR_RUNTIME_CLASS")]
    pub runtime_class: Option<String>,
    /// Render through a template (path or URL) instead of YAML/JSON: a Go
    /// template with Sprig functions, or Tera when the name ends in .tera
    #[arg(long)]
    pub template: Option<String>,
    /// Cap node lists in NodeTopology entries (0 = unlimited)
    #[arg(long)]
    pub max_nodes_per_entry: Option<u32>,
    /// Read the live snapshot from the aggregator at this URL instead of
    /// collecting (with --node; $AICR_AGGREGATOR when only --node is given)
    #[arg(long, conflicts_with = "local")]
    pub aggregator: Option<String>,
    /// Node whose snapshot the aggregator returns (default: the cluster-level one)
    #[arg(long, conflicts_with = "local")]
    pub node: Option<String>,
    #[command(flatten)]
    pub connection: crate::aggregator::Connection,
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
    if a.require_gpu && a.runtime_class.is_some() {
        return Err(Error::invalid(
            "--require-gpu and --runtime-class are mutually exclusive; prefer --runtime-class, which gives the agent GPU access without reserving a GPU",
        ));
    }
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
    let max_nodes = match a.max_nodes_per_entry {
        Some(n) => n,
        None => match std::env::var("AICR_MAX_NODES_PER_ENTRY") {
            Ok(v) => v.trim().parse().unwrap_or_else(|_| {
                tracing::warn!("invalid AICR_MAX_NODES_PER_ENTRY {v:?} - using 0");
                0
            }),
            Err(_) => 0,
        },
    };
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
    crate::kubeio::write_destination(
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
        let snap = crate::aggregator::fetch_snapshot(a.aggregator.as_deref(), &a.connection, node)?;
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
    let node = snapshot_io::node_name_from_env();
    let client = match k8s::client(kubeconfig.as_deref()).await {
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
            cluster::collect_k8s(client.as_ref(), Some(&node))
        ),
        aicr_agent::collect::collect_node(&opts),
        tokio::time::timeout(
            Duration::from_secs(90),
            cluster::collect_topology(client.as_ref(), max_nodes as usize)
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
    let snap = k8s::block_on(collect_local(
        a.root.clone(),
        a.kubeconfig.last().cloned(),
        plan.max_nodes,
    ))?;
    if a.require_gpu {
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
    let job = AgentJob {
        namespace: a.namespace.clone(),
        image: a.image.clone(),
        image_pull_secrets: a.image_pull_secret.clone(),
        job_name: a.job_name.clone(),
        service_account: a.service_account_name.clone(),
        node_selector,
        tolerations,
        timeout: a.timeout,
        cleanup: !a.no_cleanup,
        privileged: a.privileged,
        require_gpu: a.require_gpu,
        runtime_class: a.runtime_class.clone(),
        max_nodes_per_entry: plan.max_nodes,
        debug: tracing::enabled!(tracing::Level::DEBUG),
        output: agent_output,
    };
    let kubeconfig = a.kubeconfig.last().cloned();
    let text = k8s::block_on(async {
        let client = k8s::client(kubeconfig.as_deref())
            .await
            .map_err(|e| e.context("failed to create Kubernetes client"))?;
        aicr::agent_job::run(&client, &job).await
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
