//! `aicr-aggregator`: flags in, a running aggregator out. Exit codes come
//! from `aicr::ErrorKind::exit_code` (1 for usage errors).

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use aicr::error::{Error, ErrorKind, Result};
use aicr::proto::CollectionSettings;
use aicr_aggregator::conformance::{MaxTainted, ReportKind, TAINT_SEVERITIES};
use aicr_aggregator::ingest::Limits;
use aicr_aggregator::leader::Election;
use aicr_aggregator::node_status::{self, Taint};
use aicr_aggregator::peers;
use aicr_aggregator::server::DEFAULT_POOL_LABELS;
use aicr_aggregator::{Config, TlsFiles};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "aicr-aggregator",
    about = "AICR aggregator: live node snapshots, continuous constraint evaluation and drift alerts",
    version = aicr::VERSION
)]
struct Flags {
    /// gRPC address for agents and the CLI
    #[arg(long, default_value = "0.0.0.0:50051")]
    listen: SocketAddr,
    /// HTTP address for /metrics, /healthz and /readyz
    #[arg(long, default_value = "0.0.0.0:9090")]
    http_listen: SocketAddr,
    /// The active recipe (YAML or JSON RecipeResult); also settable through
    /// the API, and kept in --state-dir
    #[arg(long)]
    recipe: Option<PathBuf>,
    /// Directory for the drift history; without it history lives in memory
    /// and a restart loses it
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Server certificate (PEM)
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Server private key (PEM)
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// CA for client certificates: agents must present one, the CLI may
    #[arg(long, requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Plain-text gRPC; accepted only on a loopback --listen
    #[arg(long)]
    insecure: bool,
    /// Believe the node names agents send (no TokenReview); loopback demos only
    #[arg(long)]
    trust_node_names: bool,
    /// File holding the bearer token CLI calls must carry
    #[arg(long)]
    cli_token_file: Option<PathBuf>,
    /// Kubeconfig (default: $KUBECONFIG, ~/.kube/config, in-cluster)
    #[arg(long, short = 'k')]
    kubeconfig: Option<PathBuf>,
    /// Bound on each Kubernetes API request
    #[arg(long, env = "AICR_KUBE_TIMEOUT", value_name = "DURATION", default_value = "30s", value_parser = aicr::flags::duration)]
    kube_timeout: Duration,
    /// Run without a cluster: no cluster-level state, Events or TokenReview
    #[arg(long)]
    no_kube: bool,
    /// Audience agents' tokens must be issued for (repeatable)
    #[arg(long, action = clap::ArgAction::Append)]
    token_audience: Vec<String>,
    /// Service account agents must run as, NAMESPACE:NAME
    #[arg(long)]
    agent_service_account: Option<String>,
    /// A node whose agent is silent this long is stale
    #[arg(long, default_value = "30s", value_parser = aicr::flags::duration)]
    stale_after: Duration,
    /// Active/passive replicas: only the holder of the lease serves
    #[arg(long)]
    leader_elect: bool,
    #[arg(long, default_value = "aicr-aggregator")]
    lease_name: String,
    /// Namespace of the lease (default: $POD_NAMESPACE, else default)
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    #[arg(long, default_value = "15s", value_parser = aicr::flags::duration)]
    lease_duration: Duration,
    /// This replica's identity (default: $POD_NAME, else the host name)
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Largest agent message, in bytes
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    max_message_bytes: usize,
    /// Sustained messages per second one agent may send
    #[arg(long, default_value_t = 20.0)]
    agent_rate: f64,
    /// Messages one agent may send at once above the rate
    #[arg(long, default_value_t = 40.0)]
    agent_burst: f64,
    /// Alertmanager base URL; alerts are POSTed to URL/api/v2/alerts
    #[arg(long)]
    alertmanager_url: Option<String>,
    /// How often firing alerts are re-sent to Alertmanager
    #[arg(long, default_value = "60s", value_parser = aicr::flags::duration)]
    alertmanager_resend: Duration,
    /// Post Kubernetes Events on Nodes (--kube-events=false to stop)
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    kube_events: bool,
    /// Drift events kept in the history
    #[arg(long, default_value_t = 100_000)]
    history_limit: u64,
    /// Collection interval pushed to agents, seconds (0: the agent's own)
    #[arg(long, default_value_t = 0)]
    collection_interval: u32,
    /// systemd unit agents should report (repeatable; none: the agent's own)
    #[arg(long, action = clap::ArgAction::Append)]
    systemd_unit: Vec<String>,
    /// How often the server version is polled
    #[arg(long, default_value = "60s", value_parser = aicr::flags::duration)]
    version_poll: Duration,
    /// Node label whose value names a node's pool, for peer comparison
    /// (repeatable; default: instance type, then GPU product)
    #[arg(long = "pool-label", value_name = "KEY", action = clap::ArgAction::Append)]
    pool_labels: Vec<String>,
    /// Reading to leave out of peer comparison, as a glob over
    /// {Type}.{Subtype}.{key} (repeatable; adds to the built-in list)
    #[arg(long = "peer-ignore", value_name = "PATTERN", action = clap::ArgAction::Append)]
    peer_ignore: Vec<String>,
    /// Pools with fewer reporting nodes are not judged by majority
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    peer_min_pool: u32,
    /// Keep the AICRConformant condition on every judged Node
    /// (--node-condition=false to stop)
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    node_condition: bool,
    /// Policy reports to keep per node, each only where its CRD is served:
    /// openreports (openreports.io ClusterReport), wgpolicyk8s
    /// (wgpolicyk8s.io/v1alpha2 ClusterPolicyReport), or none
    #[arg(long, value_name = "FORMAT", value_delimiter = ',', default_value = "openreports", value_parser = ["openreports", "wgpolicyk8s", "none"])]
    reports: Vec<String>,
    /// Taint nodes with an open violation at or above this severity
    /// (aicr.nvidia.com/drift=<constraint>:NoSchedule); off by default
    #[arg(long, value_name = "SEVERITY", value_parser = TAINT_SEVERITIES)]
    taint_on_violation: Option<String>,
    /// Most nodes the drift taint may be on at once: a count, or a
    /// percentage of the cluster's nodes (rounded down)
    #[arg(long, value_name = "N|PERCENT", default_value = "10%")]
    max_tainted: MaxTainted,
    /// JSON log lines
    #[arg(long, env = "AICR_LOG_JSON", value_parser = aicr::flags::EnvBool)]
    log_json: bool,
}

fn instance(flags: &Flags) -> String {
    flags.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "aicr-aggregator".into());
        format!("{host}-{}", std::process::id())
    })
}

async fn config(flags: Flags) -> Result<Config> {
    let kube = if flags.no_kube {
        None
    } else {
        let needed = !flags.trust_node_names || flags.leader_elect;
        match aicr::kubernetes::client(flags.kubeconfig.as_deref(), flags.kube_timeout).await {
            Ok(c) => Some(c),
            Err(e) if !needed && flags.kubeconfig.is_none() => {
                tracing::warn!("running without a cluster: {e}");
                None
            }
            Err(e) => return Err(e),
        }
    };
    let cli_token = match &flags.cli_token_file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .map_err(|e| Error::invalid(format!("--cli-token-file {}: {e}", p.display())))?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let identity = instance(&flags);
    let peers = peers::Settings::new(flags.peer_min_pool as usize, &flags.peer_ignore)
        .map_err(|e| Error::invalid(format!("--peer-ignore: {}", e.message())))?;
    let reports = report_kinds(&flags.reports)?;
    let pool_labels = if flags.pool_labels.is_empty() {
        DEFAULT_POOL_LABELS.map(String::from).to_vec()
    } else {
        flags.pool_labels
    };
    Ok(Config {
        listen: flags.listen,
        http_listen: flags.http_listen,
        recipe: flags.recipe,
        state_dir: flags.state_dir,
        tls: flags
            .tls_cert
            .zip(flags.tls_key)
            .map(|(cert, key)| TlsFiles {
                cert,
                key,
                client_ca: flags.tls_client_ca,
            }),
        insecure: flags.insecure,
        trust_node_names: flags.trust_node_names,
        cli_token,
        kube,
        token_audiences: flags.token_audience,
        agent_service_account: flags.agent_service_account,
        stale_after: flags.stale_after,
        election: flags.leader_elect.then(|| Election {
            name: flags.lease_name,
            namespace: flags.lease_namespace,
            identity: identity.clone(),
            lease_duration: flags.lease_duration,
        }),
        limits: Limits {
            rate: flags.agent_rate,
            burst: flags.agent_burst,
            ..Limits::default()
        },
        max_message_bytes: flags.max_message_bytes,
        alertmanager: flags.alertmanager_url,
        alert_resend: flags.alertmanager_resend,
        kube_events: flags.kube_events,
        history_limit: flags.history_limit,
        settings: CollectionSettings {
            interval_seconds: flags.collection_interval,
            systemd_units: flags.systemd_unit,
            // The transport's to choose; the server sets it.
            part_bytes: 0,
        },
        version_poll: flags.version_poll,
        kube_timeout: flags.kube_timeout,
        pool_labels,
        peers,
        instance: identity,
        node_status: node_status::Settings {
            condition: flags.node_condition,
            reports,
            taint: flags.taint_on_violation.map(|severity| Taint {
                severity,
                max: flags.max_tainted,
            }),
        },
    })
}

fn report_kinds(names: &[String]) -> Result<Vec<ReportKind>> {
    if names.iter().any(|n| n == "none") {
        if names.len() > 1 {
            return Err(Error::invalid(
                "--reports: none cannot be combined with a report format",
            ));
        }
        return Ok(Vec::new());
    }
    let mut kinds: Vec<ReportKind> = names
        .iter()
        .map(|n| match n.as_str() {
            "wgpolicyk8s" => ReportKind::PolicyReports,
            _ => ReportKind::OpenReports,
        })
        .collect();
    kinds.sort();
    kinds.dedup();
    Ok(kinds)
}

async fn terminated() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

async fn run(flags: Flags) -> Result<()> {
    let running = aicr_aggregator::start(config(flags).await?).await?;
    terminated().await;
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(())
}

fn main() -> ExitCode {
    let flags = match Flags::try_parse() {
        Ok(f) => f,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let filter = aicr::logfmt::level_filter(false, |k| std::env::var(k).ok());
    let color = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(color && !flags.log_json)
        .with_writer(std::io::stderr);
    if flags.log_json {
        builder.event_format(aicr::logfmt::Json).init();
    } else {
        builder.init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("failed to start the async runtime: {e}");
            return ExitCode::from(ErrorKind::Internal.exit_code() as u8);
        }
    };
    match runtime.block_on(run(flags)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{}", e.message());
            ExitCode::from(e.kind().exit_code() as u8)
        }
    }
}
