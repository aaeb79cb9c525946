//! `aicr-agent`: flags in, a node agent streaming to the aggregator out.
//! Exit codes follow `aicr::ErrorKind::exit_code` (1 for usage errors, 2
//! for a bad flag combination, 8 when the memory ceiling is hit).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use aicr::ErrorKind;
use aicr_agent::collect::{CollectOptions, Root};
use aicr_agent::rss;
use aicr_agent::stream::{self, Config, Exit, Target, TlsFiles};
use clap::Parser;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "aicr-agent",
    about = "AICR node agent: streams this node's OS, systemd and GPU state to the aggregator",
    version = aicr::VERSION
)]
struct Flags {
    /// Aggregator gRPC URL: https://HOST:PORT, or http://127.0.0.1:PORT with --insecure
    #[arg(long, env = "AICR_AGGREGATOR")]
    aggregator: String,
    /// This node's name (default: $NODE_NAME, else the host name)
    #[arg(long, env = "NODE_NAME")]
    node_name: Option<String>,
    /// Host root the collectors read under (in a pod, a read-only mount of the host's /)
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// Collection interval when the aggregator sets none; changes are also
    /// picked up from systemd and GPU events in between
    #[arg(long, default_value = "30s", value_parser = aicr::flags::interval)]
    interval: Duration,
    /// Heartbeat interval
    #[arg(long, default_value = "5s", value_parser = aicr::flags::interval)]
    heartbeat: Duration,
    /// CA certificate (PEM) that signed the aggregator's certificate (default: system roots)
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// Client certificate (PEM), for an aggregator that requires mTLS
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Client private key (PEM)
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Plain-text gRPC; accepted only for an http:// loopback aggregator
    #[arg(long)]
    insecure: bool,
    /// Projected ServiceAccount token proving this pod's node; re-read on every connect
    #[arg(long)]
    identity_token_file: Option<PathBuf>,
    /// Exit (so the DaemonSet restarts the agent) when resident memory exceeds this; 0 for no limit
    #[arg(long, default_value = "64Mi", value_parser = rss::parse_size)]
    max_rss: u64,
    /// systemd unit to report (repeatable; default containerd, docker, kubelet; the aggregator may override)
    #[arg(long = "systemd-unit")]
    systemd_units: Vec<String>,
    /// JSON log lines
    #[arg(long, env = "AICR_LOG_JSON", value_parser = aicr::flags::EnvBool)]
    log_json: bool,
}

/// The kernel's name for this host, lowercased as the kubelet does for node
/// names.
fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
}

/// The host's boot ID, read under the host root first so a pod reports the
/// node's boot, not its own view.
fn boot_id(root: &Root) -> String {
    const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";
    [root.join(BOOT_ID), Path::new(BOOT_ID).to_path_buf()]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn config(flags: Flags) -> Result<Config, String> {
    let tls = TlsFiles {
        ca: flags.tls_ca,
        cert: flags.tls_cert,
        key: flags.tls_key,
    };
    let target = Target::new(&flags.aggregator, tls, flags.insecure)?;
    let node_name = flags
        .node_name
        .filter(|n| !n.trim().is_empty())
        .or_else(host_name)
        .ok_or("cannot tell this node's name: pass --node-name or set NODE_NAME")?;
    // The aggregator refuses any other name, and would be asked again and
    // again; say so once, at start.
    if !aicr::flags::is_node_name(&node_name) {
        return Err(format!(
            "node name {node_name:?} is not a Kubernetes node name (lowercase letters, digits, '-' and '.'); pass --node-name or set NODE_NAME"
        ));
    }
    // Collectors take a missing file for a host without that tool or
    // module, so a root that is not there (a hostPath mount gone wrong)
    // would be reported as a bare host; refuse it, and the DaemonSet shows
    // the crash loop instead.
    if !flags.root.is_dir() {
        return Err(format!(
            "host root {} is not a directory (mount the host's / there, read-only)",
            flags.root.display()
        ));
    }
    let root = Root::new(flags.root);
    let mut collect = CollectOptions {
        root: root.clone(),
        ..CollectOptions::default()
    };
    if !flags.systemd_units.is_empty() {
        collect.systemd_units = flags.systemd_units;
    }
    Ok(Config {
        target,
        node_name,
        boot_id: boot_id(&root),
        token_file: flags.identity_token_file,
        collect,
        interval: flags.interval,
        heartbeat: flags.heartbeat,
        max_rss: flags.max_rss,
    })
}

async fn terminated(token: CancellationToken) {
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
    tracing::info!("shutting down");
    token.cancel();
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
    aicr_agent::logging::init(flags.log_json);
    let cfg = match config(flags) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(ErrorKind::InvalidRequest.exit_code() as u8);
        }
    };
    // One thread does all the async work; the few blocking collector calls
    // get a small, bounded pool. This keeps the agent's footprint flat.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(4)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("failed to start the async runtime: {e}");
            return ExitCode::from(ErrorKind::Internal.exit_code() as u8);
        }
    };
    tracing::info!(
        aggregator = cfg.target.url(),
        node = cfg.node_name,
        root = %cfg.collect.root.path().display(),
        interval = %humantime::format_duration(cfg.interval),
        "starting"
    );
    let exit = runtime.block_on(async {
        let token = CancellationToken::new();
        tokio::spawn(terminated(token.clone()));
        stream::run(cfg, token).await
    });
    match exit {
        Exit::Shutdown => ExitCode::SUCCESS,
        Exit::MemoryLimit(line) => {
            tracing::error!("{line}");
            ExitCode::from(ErrorKind::Internal.exit_code() as u8)
        }
    }
}
