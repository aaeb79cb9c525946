//! `aicr diff A B`: two snapshots, reading by reading. Each side is a file,
//! an http(s) URL, a `cm://namespace/name` ConfigMap, or `node/NAME`, the
//! live snapshot the aggregator holds for that node. Exits 0 when they are
//! equal and 1 when they differ, as diff(1) does, so CI can gate on it;
//! trouble keeps its own exit code (2 and up).

use std::path::PathBuf;

use aicr::diff::{self, Ignore};
use aicr::error::{Error, Result};
use aicr::model::snapshot::Snapshot;
use clap::Args;

use crate::args::format::ReportFormat;
use crate::remote::Connection;

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// First snapshot: file, http(s) URL, cm://namespace/name or node/NAME
    pub a: String,
    /// Second snapshot, as the first
    pub b: String,
    /// Leave out readings whose {Type}.{Subtype}.{key} matches this glob
    /// (repeatable; `*` crosses dots, e.g. 'GPU.*.serial*')
    #[arg(long, value_name = "PATTERN", action = clap::ArgAction::Append)]
    pub ignore: Vec<String>,
    /// Output format: text, json or yaml
    #[arg(long, short = 't', default_value = "text", value_parser = aicr::flags::offered(aicr::flags::typed::<ReportFormat>, ReportFormat::NAMES), hide_possible_values = true)]
    pub format: ReportFormat,
    /// Kubeconfig for cm:// sources (default: $KUBECONFIG, in-cluster)
    #[arg(long, short = 'k')]
    pub kubeconfig: Option<PathBuf>,
    /// Aggregator gRPC URL, for node/NAME
    #[arg(long, env = "AICR_AGGREGATOR")]
    pub aggregator: Option<String>,
    #[command(flatten)]
    pub conn: Connection,
}

/// Whether the two snapshots are equal once ignored readings are left out.
pub fn run(a: &DiffArgs) -> Result<bool> {
    let ignore = Ignore::new(&a.ignore)?;
    let first = load(a, &a.a)?;
    let second = load(a, &a.b)?;
    let d = diff::diff(&first, &second, &ignore);
    let text = match a.format {
        ReportFormat::Text => d.text(),
        ReportFormat::Json => {
            let mut s = serde_json::to_string_pretty(&d)
                .map_err(|e| Error::internal(format!("failed to render the diff: {e}")))?;
            s.push('\n');
            s
        }
        ReportFormat::Yaml => aicr::yaml::to_yaml(&d)?,
    };
    aicr::sink::write_local("-", text.as_bytes())?;
    Ok(d.is_empty())
}

fn load(a: &DiffArgs, uri: &str) -> Result<Snapshot> {
    load_any(uri, a.kubeconfig.as_ref(), a.aggregator.as_deref(), &a.conn)
}

/// A snapshot from a file, an http(s) URL, `cm://namespace/name`, or
/// `node/NAME` (the aggregator's live snapshot of that node).
pub fn load_any(
    uri: &str,
    kubeconfig: Option<&PathBuf>,
    aggregator: Option<&str>,
    conn: &Connection,
) -> Result<Snapshot> {
    match uri.strip_prefix("node/") {
        Some("") => Err(Error::invalid(format!(
            "invalid snapshot {uri:?}: node/ needs a node name, e.g. node/gpu-1"
        ))),
        Some(node) => crate::remote::fetch_snapshot(aggregator, conn, node)
            .map_err(|e| e.context(format!("failed to load snapshot from {uri:?}"))),
        None => crate::cmd::recipe::load_snapshot(uri, kubeconfig),
    }
}
