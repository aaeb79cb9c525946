//! The Prometheus metrics the aggregator exports and the one registry that
//! holds them. Everyone updates the handles; only `http` encodes them.
//!
//! Owns metric names, labels and buckets. It must not hold state of its own
//! beyond what Prometheus shows.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Violation {
    pub node: String,
    pub constraint: String,
    pub severity: String,
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
    pub stale: Family<NodeLabel, Gauge>,
    pub agents_connected: Gauge,
    pub ingested: Family<KindLabel, Counter>,
    pub rejected: Family<ReasonLabel, Counter>,
    pub throttled: Counter,
    pub evaluation_seconds: Histogram,
    pub events: Family<KindLabel, Counter>,
    pub sink_dropped: Family<SinkLabel, Counter>,
    pub leader: Gauge,
    pub rules: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("aicr");
        let m = Metrics {
            violations: Family::default(),
            stale: Family::default(),
            agents_connected: Gauge::default(),
            ingested: Family::default(),
            rejected: Family::default(),
            throttled: Counter::default(),
            // 10 µs to about 2.6 s: one rule is microseconds, a recipe
            // change across every node is the slow end.
            evaluation_seconds: Histogram::new(exponential_buckets(1e-5, 4.0, 10)),
            events: Family::default(),
            sink_dropped: Family::default(),
            leader: Gauge::default(),
            rules: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "constraint_violation",
            "1 while the node violates the constraint (node=\"\" for cluster-level constraints)",
            m.violations.clone(),
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
            "updates_ingested",
            "Agent messages applied, by kind (full, update, heartbeat)",
            m.ingested.clone(),
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
            "Events a slow sink could not take, by sink",
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
        Metrics { registry, ..m }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
