//! The Prometheus metrics the aggregator exports and the one registry that
//! holds them. Everyone updates the handles; only `http` encodes them.
//!
//! Owns metric names, labels, buckets and the two exposition formats:
//! OpenMetrics for scrapers that ask for it (Prometheus does), the classic
//! Prometheus text format (0.0.4) for everyone else (`promtool`, `curl`,
//! older collectors). It must not hold state of its own beyond what
//! Prometheus shows.

use std::fmt::Write as _;

use prometheus_client::encoding::{
    EncodeLabel, EncodeLabelSet, EncodeLabelValue, LabelSetEncoder, LabelValueEncoder,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Content type of [`Metrics::encode`].
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of [`Metrics::encode_text`].
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Constraint names and severities come from the recipe, which anyone
/// allowed to set it writes, so their label values are escaped (the
/// library writes label values verbatim, and one quote would break the
/// whole scrape).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct Violation {
    pub node: String,
    pub constraint: String,
    pub severity: String,
}

impl EncodeLabelSet for Violation {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        for (key, value) in [
            ("node", &self.node),
            ("constraint", &self.constraint),
            ("severity", &self.severity),
        ] {
            (key, Escaped(value)).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

/// One reading on which a node differs from its pool. Reading names come
/// from agents and pool names from node labels, so they are escaped too.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct DeviationLabels {
    pub node: String,
    pub pool: String,
    pub reading: String,
}

impl EncodeLabelSet for DeviationLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        for (key, value) in [
            ("node", &self.node),
            ("pool", &self.pool),
            ("reading", &self.reading),
        ] {
            (key, Escaped(value)).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

/// A label value escaped as both text formats require: `\\`, `\"`, `\n`.
struct Escaped<'a>(&'a str);

impl EncodeLabelValue for Escaped<'_> {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        for c in self.0.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabel {
    pub node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabel {
    pub sink: &'static str,
}

pub struct Metrics {
    registry: Registry,
    /// 1 while `constraint` is violated on `node` (`node` empty: the cluster).
    pub violations: Family<Violation, Gauge>,
    /// 1 while `node` differs from its pool on `reading`.
    pub deviations: Family<DeviationLabels, Gauge>,
    pub stale: Family<NodeLabel, Gauge>,
    pub agents_connected: Gauge,
    /// Distinct `{Type}.{Subtype}` states held; each is shared by every
    /// node reporting it, so far fewer than nodes times subtypes.
    pub subtype_states: Gauge,
    /// Nodes the Node watch holds (0 until its first list completes).
    pub node_objects: Gauge,
    pub ingested: Family<KindLabel, Counter>,
    /// Time to decode and apply one agent message, by kind.
    pub ingest_seconds: Family<KindLabel, Histogram, fn() -> Histogram>,
    /// Sessions opened for a node that had already reported to this
    /// process: a dropped or superseded session coming back.
    pub agent_reconnects: Counter,
    pub rejected: Family<ReasonLabel, Counter>,
    pub throttled: Counter,
    /// Heap trims after bursts of intake (`memory`).
    pub heap_trims: Counter,
    /// Complete Node lists the Node watch received: its first and every
    /// re-list.
    pub node_lists: Counter,
    pub evaluation_seconds: Histogram,
    pub events: Family<KindLabel, Counter>,
    pub sink_dropped: Family<SinkLabel, Counter>,
    pub leader: Gauge,
    pub rules: Gauge,
    /// Nodes carrying the drift taint now.
    pub tainted: Gauge,
    /// Nodes whose violations call for the drift taint but that wait for a
    /// place under `--max-tainted`.
    pub taint_held_back: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// 10 µs to about 2.6 s: one rule or one heartbeat is microseconds, a
/// recipe change across every node or a large full snapshot the slow end.
fn latency_buckets() -> Histogram {
    Histogram::new(exponential_buckets(1e-5, 4.0, 10))
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("aicr");
        let m = Metrics {
            violations: Family::default(),
            deviations: Family::default(),
            stale: Family::default(),
            agents_connected: Gauge::default(),
            subtype_states: Gauge::default(),
            node_objects: Gauge::default(),
            ingested: Family::default(),
            ingest_seconds: Family::new_with_constructor(latency_buckets),
            agent_reconnects: Counter::default(),
            rejected: Family::default(),
            throttled: Counter::default(),
            heap_trims: Counter::default(),
            node_lists: Counter::default(),
            evaluation_seconds: latency_buckets(),
            events: Family::default(),
            sink_dropped: Family::default(),
            leader: Gauge::default(),
            rules: Gauge::default(),
            tainted: Gauge::default(),
            taint_held_back: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "constraint_violation",
            // No quotes or backslashes in help: the two formats escape
            // them differently.
            "1 while the node violates the constraint (an empty node label: a cluster-level constraint)",
            m.violations.clone(),
        );
        registry.register(
            "peer_deviation",
            "1 while the node's reading differs from its pool's majority or baseline",
            m.deviations.clone(),
        );
        registry.register(
            "node_stale",
            "1 while the node's agent has missed its heartbeats",
            m.stale.clone(),
        );
        registry.register(
            "agents_connected",
            "Agent sessions open now",
            m.agents_connected.clone(),
        );
        registry.register(
            "subtype_states",
            "Distinct node states held, each shared by every node that reports it",
            m.subtype_states.clone(),
        );
        registry.register(
            "node_objects",
            "Nodes the Node watch holds, once its first list is complete",
            m.node_objects.clone(),
        );
        registry.register(
            "updates_ingested",
            "Agent messages applied, by kind (full, update, heartbeat)",
            m.ingested.clone(),
        );
        registry.register(
            "ingest_seconds",
            "Time to decode and apply one agent message, by kind (full, update, heartbeat)",
            m.ingest_seconds.clone(),
        );
        registry.register(
            "agent_reconnects",
            "Agent sessions opened for a node that had already reported to this aggregator process",
            m.agent_reconnects.clone(),
        );
        registry.register(
            "agent_rejected",
            "Agent messages or sessions refused, by reason",
            m.rejected.clone(),
        );
        registry.register(
            "agent_throttled",
            "Agent messages delayed by the per-agent rate limit",
            m.throttled.clone(),
        );
        registry.register(
            "heap_trims",
            "Times freed heap memory was handed back to the system after a burst of full snapshots or a Node list",
            m.heap_trims.clone(),
        );
        registry.register(
            "node_lists",
            "Complete Node lists the Node watch received, its first and every re-list",
            m.node_lists.clone(),
        );
        registry.register(
            "evaluation_seconds",
            "Time to evaluate the constraints a change touches and diff the outcomes",
            m.evaluation_seconds.clone(),
        );
        registry.register(
            "drift_events",
            "Drift events recorded, by kind",
            m.events.clone(),
        );
        registry.register(
            "sink_dropped",
            "Events a slow sink could not take, or writes to Nodes that failed, by sink",
            m.sink_dropped.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader lease (or election is off)",
            m.leader.clone(),
        );
        registry.register(
            "recipe_constraints",
            "Constraints in the active recipe",
            m.rules.clone(),
        );
        registry.register(
            "drift_tainted_nodes",
            "Nodes carrying the aicr.nvidia.com/drift taint",
            m.tainted.clone(),
        );
        registry.register(
            "drift_taint_held_back_nodes",
            "Nodes whose violations call for the drift taint but that wait for a place under the cap",
            m.taint_held_back.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The classic Prometheus text format (0.0.4). It differs from
    /// OpenMetrics, for the metrics registered here, in two ways: a
    /// counter's HELP and TYPE name the sample (`x_total`), where
    /// OpenMetrics names the family (`x`), and there is no `# EOF`.
    pub fn encode_text(&self) -> String {
        let open = self.encode();
        let counters: std::collections::HashSet<&str> = open
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.strip_suffix(" counter"))
            .collect();
        let mut out = String::with_capacity(open.len() + 16 * counters.len());
        for line in open.lines() {
            if line == "# EOF" {
                continue;
            }
            let meta = ["# HELP ", "# TYPE "]
                .into_iter()
                .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
            match meta.and_then(|(p, rest)| rest.split_once(' ').map(|(n, tail)| (p, n, tail))) {
                Some((p, name, tail)) if counters.contains(name) => {
                    let _ = writeln!(out, "{p}{name}_total {tail}");
                }
                _ => {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        out
    }

    /// The exposition a client's `Accept` header asks for, with its
    /// content type: OpenMetrics when it is accepted (q > 0), else text.
    pub fn exposition(&self, accept: Option<&str>) -> (&'static str, String) {
        if accept.is_some_and(accepts_openmetrics) {
            (OPENMETRICS, self.encode())
        } else {
            (PROMETHEUS_TEXT, self.encode_text())
        }
    }
}

fn accepts_openmetrics(accept: &str) -> bool {
    accept.split(',').any(|range| {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default();
        let refused = parts.any(|p| {
            p.strip_prefix("q=")
                .and_then(|q| q.parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        media.eq_ignore_ascii_case("application/openmetrics-text") && !refused
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipe_text_in_label_values_is_escaped() {
        let m = Metrics::new();
        m.violations
            .get_or_create(&Violation {
                node: "gpu-1".into(),
                constraint: "a\"b\\c\nd".into(),
                severity: "critical".into(),
            })
            .set(1);
        let want = r#"aicr_constraint_violation{node="gpu-1",constraint="a\"b\\c\nd",severity="critical"} 1"#;
        assert!(m.encode().contains(want), "{}", m.encode());
        assert!(m.encode_text().contains(want), "{}", m.encode_text());
    }

    #[test]
    fn text_format_names_counters_by_their_samples() {
        let m = Metrics::new();
        m.ingested.get_or_create(&KindLabel { kind: "full" }).inc();
        let text = m.encode_text();
        assert!(
            text.contains("# HELP aicr_updates_ingested_total Agent messages applied"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE aicr_updates_ingested_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("aicr_updates_ingested_total{kind=\"full\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE aicr_agent_reconnects_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE aicr_evaluation_seconds histogram\n"),
            "{text}"
        );
        assert!(!text.contains("# EOF"), "{text}");
        assert!(
            m.encode()
                .contains("# TYPE aicr_updates_ingested counter\n")
        );
        assert!(m.encode().ends_with("# EOF\n"));
    }

    #[test]
    fn openmetrics_only_for_clients_that_accept_it() {
        let m = Metrics::new();
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(m.exposition(Some(prometheus)).0, OPENMETRICS);
        assert_eq!(m.exposition(None).0, PROMETHEUS_TEXT);
        assert_eq!(m.exposition(Some("*/*")).0, PROMETHEUS_TEXT);
        assert_eq!(
            m.exposition(Some("text/plain;version=0.0.4")).0,
            PROMETHEUS_TEXT
        );
        assert_eq!(
            m.exposition(Some("application/openmetrics-text; q=0, text/plain"))
                .0,
            PROMETHEUS_TEXT
        );
    }
}
