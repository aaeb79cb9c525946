//! `aicr baseline set|show|clear`: pin a pool of nodes to the readings it
//! should have. A pool without a baseline is judged by its majority, which
//! cannot see a change that reaches every node at once (a bad image
//! roll-out); a pinned pool is judged against its baseline instead. The
//! aggregator keeps baselines with its history, so they survive restarts.

use std::path::PathBuf;

use aicr::error::{Error, ErrorKind, Result};
use aicr::proto::{Baseline, ClearBaselineRequest, ListBaselinesRequest, SetBaselineRequest};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::args::format::ReportFormat;
use crate::cmd::fleet::{print, rfc3339, table_text};
use crate::remote::{Connection, call, connect};

#[derive(Debug, Subcommand)]
pub enum BaselineCommand {
    /// Pin a pool to its nodes' current majority, or to a snapshot's readings
    Set(SetArgs),
    /// Show the pinned baselines (with --pool, that pool's readings)
    Show(ShowArgs),
    /// Unpin a pool: judge it by its majority again
    Clear(ClearArgs),
}

/// Which aggregator, and as whom.
#[derive(Debug, Args)]
pub struct Target {
    /// Aggregator gRPC URL
    #[arg(long, env = "AICR_AGGREGATOR")]
    pub aggregator: String,
    #[command(flatten)]
    pub conn: Connection,
}

#[derive(Debug, Args)]
pub struct SetArgs {
    #[command(flatten)]
    pub target: Target,
    /// The pool, as `aicr nodes` shows it
    #[arg(long)]
    pub pool: String,
    /// Take the readings from this snapshot (file, http(s) URL,
    /// cm://namespace/name or node/NAME) instead of the pool's majority
    #[arg(long, value_name = "SNAPSHOT")]
    pub from: Option<String>,
    /// Kubeconfig for a cm:// snapshot (default: $KUBECONFIG, in-cluster)
    #[arg(long, short = 'k')]
    pub kubeconfig: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub target: Target,
    /// Only this pool, with its readings
    #[arg(long)]
    pub pool: Option<String>,
    /// Output format: text, json or yaml
    #[arg(long, short = 't', default_value = "text", value_parser = aicr::flags::offered(aicr::flags::typed::<ReportFormat>, ReportFormat::NAMES), hide_possible_values = true)]
    pub format: ReportFormat,
}

#[derive(Debug, Args)]
pub struct ClearArgs {
    #[command(flatten)]
    pub target: Target,
    /// The pool to unpin
    #[arg(long)]
    pub pool: String,
}

pub fn run(c: &BaselineCommand) -> Result<()> {
    match c {
        BaselineCommand::Set(a) => set(a),
        BaselineCommand::Show(a) => show(a),
        BaselineCommand::Clear(a) => clear(a),
    }
}

fn set(a: &SetArgs) -> Result<()> {
    let snapshot_json = match &a.from {
        Some(uri) => {
            let snap = crate::cmd::diff::load_any(
                uri,
                a.kubeconfig.as_ref(),
                Some(&a.target.aggregator),
                &a.target.conn,
            )?;
            serde_json::to_vec(&snap)
                .map_err(|e| Error::internal(format!("failed to encode the snapshot: {e}")))?
        }
        None => Vec::new(),
    };
    let req = SetBaselineRequest {
        pool: a.pool.clone(),
        snapshot_json,
    };
    let b = crate::runtime::block_on(async {
        let mut c = connect(&a.target.aggregator, &a.target.conn).await?;
        call("failed to set the baseline", c.set_baseline(req)).await
    })??;
    let from = match &a.from {
        Some(uri) => format!("from {uri}"),
        None => format!("from the majority of {} nodes", b.pool_size),
    };
    print(&format!(
        "pool {} pinned to {} readings {from}",
        b.pool,
        b.readings.len()
    ))
}

fn baseline_json(b: &Baseline, with_readings: bool) -> Value {
    let mut v = json!({
        "pool": b.pool,
        "source": b.source,
        "set": rfc3339(b.set_unix_millis),
        "poolSize": b.pool_size,
        "readings": b.readings.len(),
    });
    if with_readings {
        let sorted: std::collections::BTreeMap<&String, &String> = b.readings.iter().collect();
        v["readings"] = json!(sorted);
    }
    v
}

fn show(a: &ShowArgs) -> Result<()> {
    let req = ListBaselinesRequest {
        pool: a.pool.clone().unwrap_or_default(),
    };
    let baselines = crate::runtime::block_on(async {
        let mut c = connect(&a.target.aggregator, &a.target.conn).await?;
        call("failed to list baselines", c.list_baselines(req)).await
    })??
    .baselines;
    if let Some(pool) = &a.pool
        && baselines.is_empty()
    {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!("pool {pool:?} has no baseline: it is judged by its majority"),
        ));
    }
    let one = a.pool.is_some();
    let docs: Vec<Value> = baselines.iter().map(|b| baseline_json(b, one)).collect();
    match a.format {
        ReportFormat::Json => print(&aicr::yaml::to_json(&docs)?),
        ReportFormat::Yaml => print(&aicr::yaml::to_yaml(&docs)?),
        ReportFormat::Text if baselines.is_empty() => {
            tracing::info!("no pool has a baseline: every pool is judged by its majority");
            Ok(())
        }
        ReportFormat::Text if one => {
            let b = &baselines[0];
            let mut readings: Vec<(&String, &String)> = b.readings.iter().collect();
            readings.sort();
            let rows = readings
                .into_iter()
                .map(|(k, v)| vec![k.clone(), v.clone()])
                .collect();
            print(&format!(
                "pool {} ({}, set {})\n{}",
                b.pool,
                b.source,
                rfc3339(b.set_unix_millis),
                table_text(&["READING", "VALUE"], rows)
            ))
        }
        ReportFormat::Text => {
            let rows = baselines
                .iter()
                .map(|b| {
                    vec![
                        b.pool.clone(),
                        b.readings.len().to_string(),
                        b.source.clone(),
                        rfc3339(b.set_unix_millis),
                    ]
                })
                .collect();
            print(&table_text(&["POOL", "READINGS", "SOURCE", "SET"], rows))
        }
    }
}

fn clear(a: &ClearArgs) -> Result<()> {
    let req = ClearBaselineRequest {
        pool: a.pool.clone(),
    };
    let reply = crate::runtime::block_on(async {
        let mut c = connect(&a.target.aggregator, &a.target.conn).await?;
        call("failed to clear the baseline", c.clear_baseline(req)).await
    })??;
    if !reply.cleared {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!("pool {:?} has no baseline to clear", a.pool),
        ));
    }
    print(&format!(
        "pool {} unpinned: judged by its majority again",
        a.pool
    ))
}
