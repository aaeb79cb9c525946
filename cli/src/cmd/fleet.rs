//! The verbs that only talk to the aggregator: `aicr nodes`, `aicr drift`
//! (constraint violations, or with `--peers` the readings on which nodes
//! differ from their pool) and `aicr watch`. They share the client ([`crate::remote`]), tables and
//! the wording of drift events, so they live together. Documents come back
//! as the JSON of their spec'd shapes; this module prints them.

use std::io::{IsTerminal, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aicr::error::{Error, Result};
use aicr::proto::drift_event::{Kind, Source};
use aicr::proto::list_violations_request::Which;
use aicr::proto::{
    DriftEvent, ListNodesRequest, ListViolationsRequest, NodeInfo, WatchDriftRequest,
};
use aicr::yaml;

use crate::args::format::{TableOrJson, TextOrJson};
use crate::remote::{Connection, call, connect, status_error};
use clap::Args;
use comfy_table::{Table, presets};
use serde_json::{Value, json};
use tonic::Code;

#[derive(Debug, Args)]
pub struct NodesArgs {
    /// Aggregator gRPC URL, e.g. https://aicr-aggregator.aicr:50051
    #[arg(long, env = "AICR_AGGREGATOR")]
    pub aggregator: String,
    #[command(flatten)]
    pub conn: Connection,
    /// Output format: table or json
    #[arg(long, short = 't', default_value = "table", value_parser = aicr::flags::offered(aicr::flags::typed::<TableOrJson>, TableOrJson::NAMES), hide_possible_values = true)]
    pub format: TableOrJson,
}

#[derive(Debug, Args)]
pub struct DriftArgs {
    /// Aggregator gRPC URL
    #[arg(long, env = "AICR_AGGREGATOR")]
    pub aggregator: String,
    #[command(flatten)]
    pub conn: Connection,
    /// Past events (opened, resolved, stale), newest last, instead of what is open now
    #[arg(long)]
    pub history: bool,
    /// Readings on which nodes differ from their pool's majority or
    /// baseline, grouped by reading, instead of constraint violations
    #[arg(long)]
    pub peers: bool,
    /// Most events to show (default 100)
    #[arg(long, default_value_t = 0)]
    pub limit: u32,
    /// Output format: table or json
    #[arg(long, short = 't', default_value = "table", value_parser = aicr::flags::offered(aicr::flags::typed::<TableOrJson>, TableOrJson::NAMES), hide_possible_values = true)]
    pub format: TableOrJson,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Aggregator gRPC URL
    #[arg(long, env = "AICR_AGGREGATOR")]
    pub aggregator: String,
    #[command(flatten)]
    pub conn: Connection,
    /// Replay recorded events after this id first
    #[arg(long, default_value_t = 0)]
    pub since: u64,
    /// Exit after this many events (0: run until interrupted)
    #[arg(long, default_value_t = 0)]
    pub count: u64,
    /// Output format: text (one line per event) or json (one object per line)
    #[arg(long, short = 't', default_value = "text", value_parser = aicr::flags::offered(aicr::flags::typed::<TextOrJson>, TextOrJson::NAMES), hide_possible_values = true)]
    pub format: TextOrJson,
}

pub fn rfc3339(ms: i64) -> String {
    if ms <= 0 {
        return String::new();
    }
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms as u64)).to_string()
}

/// `12s ago`, rounded to what a person reads at a glance.
fn ago(ms: i64, now: SystemTime) -> String {
    if ms <= 0 {
        return "never".into();
    }
    let then = UNIX_EPOCH + Duration::from_millis(ms as u64);
    let secs = now.duration_since(then).unwrap_or_default().as_secs();
    let text = match secs {
        0..=119 => format!("{secs}s"),
        120..=7199 => format!("{}m", secs / 60),
        7200..=172_799 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    };
    format!("{text} ago")
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING)
        .set_content_arrangement(comfy_table::ContentArrangement::Disabled)
        .set_header(header.iter().copied());
    t
}

/// A table of `rows` under `header`, as [`render`] writes it.
pub fn table_text(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut t = table(header);
    for r in rows {
        t.add_row(r);
    }
    render(&t)
}

/// The table as text, without the frame's edge padding, so columns start
/// at the margin and lines carry no trailing blanks.
fn render(t: &Table) -> String {
    t.lines()
        .map(|l| {
            let l = l.strip_prefix(' ').unwrap_or(&l).trim_end();
            l.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", text.trim_end())
        .and_then(|_| out.flush())
        .map_err(|e| Error::internal(format!("failed to write output: {e}")))
}

fn status(n: &NodeInfo) -> &'static str {
    if n.stale {
        "stale"
    } else if n.connected {
        "connected"
    } else {
        "disconnected"
    }
}

pub fn nodes_table(nodes: &[NodeInfo], now: SystemTime) -> String {
    let mut t = table(&[
        "NODE",
        "POOL",
        "AGENT",
        "LAST SEEN",
        "STATUS",
        "VIOLATIONS",
        "DEVIATIONS",
    ]);
    for n in nodes {
        t.add_row(vec![
            n.node_name.clone(),
            if n.pool.is_empty() {
                "-".into()
            } else {
                n.pool.clone()
            },
            n.agent_version.clone(),
            ago(n.last_seen_unix_millis, now),
            status(n).to_string(),
            n.open_violations.to_string(),
            n.open_deviations.to_string(),
        ]);
    }
    render(&t)
}

fn node_json(n: &NodeInfo) -> Value {
    json!({
        "node": n.node_name,
        "agentVersion": n.agent_version,
        "lastSeen": rfc3339(n.last_seen_unix_millis),
        "status": status(n),
        "openViolations": n.open_violations,
        "pool": n.pool,
        "openDeviations": n.open_deviations,
        "lastSeq": n.last_seq,
    })
}

pub fn run_nodes(a: &NodesArgs) -> Result<()> {
    let as_table = a.format == TableOrJson::Table;
    let nodes = crate::runtime::block_on(async {
        let mut c = connect(&a.aggregator, &a.conn).await?;
        call("failed to list nodes", c.list_nodes(ListNodesRequest {})).await
    })??
    .nodes;
    if as_table {
        if nodes.is_empty() {
            tracing::info!("no agent has reported to the aggregator yet");
            return Ok(());
        }
        print(&nodes_table(&nodes, SystemTime::now()))
    } else {
        print(&yaml::to_json(
            &nodes.iter().map(node_json).collect::<Vec<_>>(),
        )?)
    }
}

fn kind_word(ev: &DriftEvent) -> &'static str {
    match Kind::try_from(ev.kind) {
        Ok(Kind::Opened) => "OPENED",
        Ok(Kind::Resolved) => "RESOLVED",
        Ok(Kind::Stale) => "STALE",
        _ => "UNKNOWN",
    }
}

fn node_label(ev: &DriftEvent) -> String {
    if ev.node_name.is_empty() {
        "(cluster)".into()
    } else {
        ev.node_name.clone()
    }
}

fn constraint_label(ev: &DriftEvent) -> String {
    if ev.constraint.is_empty() {
        "(agent)".into()
    } else {
        ev.constraint.clone()
    }
}

fn is_deviation(ev: &DriftEvent) -> bool {
    ev.source == Source::Peers as i32
}

fn event_json(ev: &DriftEvent) -> Value {
    let mut v = json!({
        "id": ev.id,
        "event": kind_word(ev),
        "time": rfc3339(ev.unix_millis),
        "node": ev.node_name,
        "constraint": ev.constraint,
        "expected": ev.expected,
        "actual": ev.actual,
        "severity": ev.severity,
        "reason": ev.reason,
    });
    if is_deviation(ev) {
        // A deviation names a reading, not a constraint.
        let m = v.as_object_mut().expect("an object");
        m.remove("constraint");
        m.insert("source".into(), "peers".into());
        m.insert("reading".into(), ev.constraint.clone().into());
        m.insert("pool".into(), ev.pool.clone().into());
        m.insert("agreeing".into(), ev.agreeing.into());
        m.insert("poolSize".into(), ev.pool_size.into());
        m.insert("baseline".into(), ev.baseline.into());
    }
    v
}

/// Open deviations of one reading in one pool.
struct Group<'a> {
    pool: &'a str,
    reading: &'a str,
    events: Vec<&'a DriftEvent>,
}

/// Open deviations grouped by pool and reading, the most widespread first.
fn groups(events: &[DriftEvent]) -> Vec<Group<'_>> {
    let mut by: std::collections::BTreeMap<(&str, &str), Vec<&DriftEvent>> = Default::default();
    for ev in events.iter().filter(|e| is_deviation(e)) {
        by.entry((&ev.pool, &ev.constraint)).or_default().push(ev);
    }
    let mut out: Vec<Group<'_>> = by
        .into_iter()
        .map(|((pool, reading), events)| Group {
            pool,
            reading,
            events,
        })
        .collect();
    out.sort_by_key(|g| std::cmp::Reverse(g.events.len()));
    out
}

/// What the pool expects of the group's nodes, as the newest event says.
fn group_expectation(g: &Group<'_>) -> (String, u32, bool) {
    let newest = g
        .events
        .iter()
        .max_by_key(|e| e.unix_millis)
        .expect("a group has events");
    (newest.expected.clone(), newest.pool_size, newest.baseline)
}

/// `reading: 3 of 128 nodes in pool P differ from "1" (the majority, 125
/// nodes): gpu-7 "0", gpu-9 (absent)`, one line per group.
pub fn peers_text(events: &[DriftEvent]) -> String {
    let mut lines = Vec::new();
    for g in groups(events) {
        let (expected, size, baseline) = group_expectation(&g);
        let of = if size > 0 {
            format!("{} of {size}", g.events.len())
        } else {
            g.events.len().to_string()
        };
        let against = if baseline {
            "the baseline".to_string()
        } else {
            let agreeing = g.events.iter().map(|e| e.agreeing).max().unwrap_or(0);
            format!("the majority, {agreeing} nodes")
        };
        let nodes: Vec<String> = g
            .events
            .iter()
            .map(|e| format!("{} {}", e.node_name, quoted(&e.actual)))
            .collect();
        lines.push(format!(
            "{}: {of} nodes in pool {} differ from {} ({against}): {}",
            g.reading,
            g.pool,
            quoted(&expected),
            nodes.join(", ")
        ));
    }
    lines.join("\n")
}

/// Values in quotes, the absent marker bare.
fn quoted(v: &str) -> String {
    if v == "(absent)" {
        v.to_string()
    } else {
        format!("{v:?}")
    }
}

fn peers_json(events: &[DriftEvent]) -> Value {
    Value::Array(
        groups(events)
            .iter()
            .map(|g| {
                let (expected, size, baseline) = group_expectation(g);
                json!({
                    "pool": g.pool,
                    "reading": g.reading,
                    "expected": expected,
                    "baseline": baseline,
                    "poolSize": size,
                    "nodes": g.events.iter().map(|e| json!({
                        "node": e.node_name,
                        "actual": e.actual,
                        "since": rfc3339(e.unix_millis),
                        "id": e.id,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

pub fn open_table(events: &[DriftEvent], now: SystemTime) -> String {
    let mut t = table(&[
        "NODE",
        "CONSTRAINT",
        "EXPECTED",
        "ACTUAL",
        "SEVERITY",
        "SINCE",
    ]);
    for ev in events {
        t.add_row(vec![
            node_label(ev),
            constraint_label(ev),
            ev.expected.clone(),
            if ev.constraint.is_empty() {
                "stale".into()
            } else {
                ev.actual.clone()
            },
            ev.severity.clone(),
            ago(ev.unix_millis, now),
        ]);
    }
    render(&t)
}

pub fn history_table(events: &[DriftEvent]) -> String {
    let mut t = table(&[
        "ID",
        "TIME",
        "EVENT",
        "NODE",
        "CONSTRAINT",
        "EXPECTED",
        "ACTUAL",
    ]);
    for ev in events {
        t.add_row(vec![
            ev.id.to_string(),
            rfc3339(ev.unix_millis),
            kind_word(ev).to_string(),
            node_label(ev),
            constraint_label(ev),
            ev.expected.clone(),
            ev.actual.clone(),
        ]);
    }
    render(&t)
}

pub fn run_drift(a: &DriftArgs) -> Result<()> {
    let as_table = a.format == TableOrJson::Table;
    let req = ListViolationsRequest {
        history: a.history,
        limit: a.limit,
        which: if a.peers {
            Which::Peers
        } else {
            Which::Constraints
        } as i32,
    };
    let events = crate::runtime::block_on(async {
        let mut c = connect(&a.aggregator, &a.conn).await?;
        call("failed to list drift", c.list_violations(req)).await
    })??
    .events;
    if !as_table {
        if a.peers && !a.history {
            return print(&yaml::to_json(&peers_json(&events))?);
        }
        return print(&yaml::to_json(
            &events.iter().map(event_json).collect::<Vec<_>>(),
        )?);
    }
    if events.is_empty() {
        tracing::info!(
            "{}",
            match (a.history, a.peers) {
                (true, false) => "no drift recorded",
                (true, true) => "no peer deviation recorded",
                (false, false) => "no open drift: every node meets the active recipe",
                (false, true) => "no open peer deviation: every judged node reads like its pool",
            }
        );
        return Ok(());
    }
    if a.peers && !a.history {
        return print(&peers_text(&events));
    }
    if a.history {
        print(&history_table(&events))
    } else {
        print(&open_table(&events, SystemTime::now()))
    }
}

/// One line per event, readable at a glance; `color` adds ANSI colour to
/// the event word.
pub fn event_line(ev: &DriftEvent, color: bool) -> String {
    let word = kind_word(ev);
    let shown = if color {
        let code = match Kind::try_from(ev.kind) {
            Ok(Kind::Opened) => "31",
            Ok(Kind::Resolved) => "32",
            Ok(Kind::Stale) => "33",
            _ => "0",
        };
        format!("\x1b[1;{code}m{word:<8}\x1b[0m")
    } else {
        format!("{word:<8}")
    };
    let detail = match Kind::try_from(ev.kind) {
        Ok(Kind::Opened) if is_deviation(ev) => format!(
            "{}  differs from pool {}: expected {} ({}), actual {}",
            ev.constraint,
            ev.pool,
            quoted(&ev.expected),
            if ev.baseline {
                "baseline".to_string()
            } else {
                format!("{} of {} nodes", ev.agreeing, ev.pool_size)
            },
            quoted(&ev.actual)
        ),
        Ok(Kind::Opened) => format!(
            "{}  expected {:?}, actual {:?}",
            ev.constraint, ev.expected, ev.actual
        ),
        Ok(Kind::Resolved) if is_deviation(ev) => format!(
            "{}  matches pool {} again: {}",
            ev.constraint,
            ev.pool,
            quoted(&ev.actual)
        ),
        Ok(Kind::Resolved) if ev.constraint.is_empty() => ev.reason.clone(),
        Ok(Kind::Resolved) => format!("{}  now {:?}", ev.constraint, ev.actual),
        _ => ev.reason.clone(),
    };
    let severity = if ev.severity.is_empty() || ev.kind != Kind::Opened as i32 {
        String::new()
    } else {
        format!("  [{}]", ev.severity)
    };
    format!(
        "{}  {shown}  {}  {detail}{severity}",
        rfc3339(ev.unix_millis),
        node_label(ev)
    )
}

pub fn run_watch(a: &WatchArgs) -> Result<()> {
    let json = a.format == TextOrJson::Json;
    let color = !json
        && std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    crate::runtime::block_on(async {
        let mut client = connect(&a.aggregator, &a.conn).await?;
        let mut last = a.since;
        let mut shown = 0u64;
        let mut streamed = false;
        loop {
            match client
                .watch_drift(WatchDriftRequest { since_id: last })
                .await
            {
                Ok(s) => {
                    streamed = true;
                    let mut stream = s.into_inner();
                    loop {
                        match stream.message().await {
                            Ok(Some(ev)) => {
                                last = ev.id;
                                let line = if json {
                                    event_json(&ev).to_string()
                                } else {
                                    event_line(&ev, color)
                                };
                                print(&line)?;
                                shown += 1;
                                if a.count > 0 && shown >= a.count {
                                    return Ok(());
                                }
                            }
                            Ok(None) => break,
                            Err(s) if s.code() == Code::Unavailable => break,
                            Err(s) => return Err(status_error(s, "drift stream failed")),
                        }
                    }
                }
                Err(s) if !streamed || s.code() != Code::Unavailable => {
                    return Err(status_error(s, "failed to watch drift"));
                }
                Err(_) => {}
            }
            // The aggregator restarted or failed over: resume after the
            // last event shown, so nothing is missed or repeated.
            tracing::warn!("lost the aggregator's drift stream; reconnecting");
            tokio::time::sleep(Duration::from_secs(1)).await;
            if let Ok(c) = connect(&a.aggregator, &a.conn).await {
                client = c;
            }
        }
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: Kind, node: &str, constraint: &str) -> DriftEvent {
        DriftEvent {
            id: 7,
            kind: kind as i32,
            node_name: node.into(),
            constraint: constraint.into(),
            expected: "== 24.04".into(),
            actual: "22.04".into(),
            severity: "critical".into(),
            reason: "agent is reporting again".into(),
            unix_millis: 1_700_000_000_000,
            ..Default::default()
        }
    }

    fn dev(node: &str, actual: &str) -> DriftEvent {
        DriftEvent {
            kind: Kind::Opened as i32,
            node_name: node.into(),
            constraint: "OS.sysctl./proc/sys/vm/swappiness".into(),
            expected: "60".into(),
            actual: actual.into(),
            severity: "warning".into(),
            source: Source::Peers as i32,
            pool: "p5/H100".into(),
            agreeing: 125,
            pool_size: 128,
            unix_millis: 1_700_000_000_000,
            ..Default::default()
        }
    }

    #[test]
    fn deviations_group_by_reading_and_name_the_majority() {
        let events = [
            dev("gpu-7", "10"),
            dev("gpu-9", "(absent)"),
            ev(Kind::Opened, "gpu-1", "OS.release.ID"),
            dev("gpu-3", "30"),
        ];
        assert_eq!(
            peers_text(&events),
            "OS.sysctl./proc/sys/vm/swappiness: 3 of 128 nodes in pool p5/H100 differ from \"60\" (the majority, 125 nodes): gpu-7 \"10\", gpu-9 (absent), gpu-3 \"30\""
        );
        let j = peers_json(&events);
        assert_eq!(j[0]["nodes"].as_array().unwrap().len(), 3);
        assert_eq!(j[0]["poolSize"], 128);
        assert_eq!(
            event_line(&events[0], false),
            "2023-11-14T22:13:20Z  OPENED    gpu-7  OS.sysctl./proc/sys/vm/swappiness  differs from pool p5/H100: expected \"60\" (125 of 128 nodes), actual \"10\"  [warning]"
        );
        let e = event_json(&events[1]);
        assert_eq!(e["reading"], "OS.sysctl./proc/sys/vm/swappiness");
        assert!(e.get("constraint").is_none());
    }

    #[test]
    fn event_lines_read_at_a_glance() {
        assert_eq!(
            event_line(&ev(Kind::Opened, "gpu-1", "OS.release.VERSION_ID"), false),
            "2023-11-14T22:13:20Z  OPENED    gpu-1  OS.release.VERSION_ID  expected \"== 24.04\", actual \"22.04\"  [critical]"
        );
        assert_eq!(
            event_line(&ev(Kind::Resolved, "", "K8s.server.version"), false),
            "2023-11-14T22:13:20Z  RESOLVED  (cluster)  K8s.server.version  now \"22.04\""
        );
        assert_eq!(
            event_line(&ev(Kind::Resolved, "gpu-1", ""), false),
            "2023-11-14T22:13:20Z  RESOLVED  gpu-1  agent is reporting again"
        );
        let colored = event_line(&ev(Kind::Stale, "gpu-1", ""), true);
        assert!(colored.contains("\x1b[1;33mSTALE   \x1b[0m"), "{colored:?}");
    }

    #[test]
    fn node_tables_start_at_the_margin() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let n = |name: &str, stale, connected, v| NodeInfo {
            node_name: name.into(),
            agent_version: "v0.1.0".into(),
            last_seen_unix_millis: 990_000,
            stale,
            open_violations: v,
            last_seq: 3,
            connected,
            pool: if stale {
                String::new()
            } else {
                "p5/H100".into()
            },
            open_deviations: 1,
        };
        let t = nodes_table(
            &[n("gpu-1", false, true, 0), n("gpu-22", true, false, 2)],
            now,
        );
        assert_eq!(
            t,
            "NODE    POOL     AGENT   LAST SEEN  STATUS     VIOLATIONS  DEVIATIONS\n\
             gpu-1   p5/H100  v0.1.0  10s ago    connected  0           1\n\
             gpu-22  -        v0.1.0  10s ago    stale      2           1"
        );
    }

    #[test]
    fn ages_round_like_kubectl() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let ms = |s: u64| ((1_000_000 - s) * 1000) as i64;
        assert_eq!(ago(ms(5), now), "5s ago");
        assert_eq!(ago(ms(600), now), "10m ago");
        assert_eq!(ago(ms(3 * 3600), now), "3h ago");
        assert_eq!(ago(ms(3 * 86_400), now), "3d ago");
        assert_eq!(ago(0, now), "never");
    }
}
