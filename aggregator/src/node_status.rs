//! Drift where cluster tooling already looks: the `AICRConformant` Node
//! condition, one policy report per node, and the opt-in drift taint, kept
//! in step with each node's standing by one task on the leader.
//!
//! Owns those writes and nothing else: the hub says which nodes may have
//! changed and what their standing is; `conformance` turns a standing into
//! values. Every write is made only when what it would write differs from
//! what this task last wrote, so heartbeats and unrelated readings cost no
//! API call.
//!
//! - The condition is applied to `nodes/status` with server-side apply:
//!   Node conditions merge by `type`, so no other writer's condition is
//!   touched. `lastTransitionTime` moves only when the status does; the
//!   first write of a term reads it back from the Node.
//! - A new leader reads what is there first (the Node's condition, each
//!   report) and rewrites only what is no longer right, so a failover
//!   costs reads, not a write per node.
//! - Reports are written only for report kinds the API server serves
//!   (discovered, re-checked every minute), owned by their Node so the
//!   cluster deletes them with it; this task deletes them when the hub
//!   forgets the node.
//! - The taint is a read-modify-write of `spec.taints` guarded by the
//!   Node's resourceVersion, because taints are one atomic list that other
//!   controllers write too. A cap on tainted nodes holds across all writes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::conformance::{
    self, CONDITION, Condition, FIELD_MANAGER, MaxTainted, ReportKind, Standing, Wanted,
};
use crate::hub::Hub;
use crate::metrics::{Metrics, SinkLabel};

/// Writes in flight at once: enough to keep up with a fleet's worth after
/// a failover, few enough not to crowd the API server.
const CONCURRENCY: usize = 8;
/// How often missing report CRDs are looked for again, and failed writes
/// retried.
const RECHECK: Duration = Duration::from_secs(60);
const RETRY: Duration = Duration::from_secs(10);

/// Nodes whose standing may have changed since the writer last looked.
#[derive(Default)]
pub struct Dirty {
    names: Mutex<HashSet<String>>,
    notify: Notify,
}

impl Dirty {
    pub fn mark(&self, node: &str) {
        let mut names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        if !names.contains(node) {
            names.insert(node.to_string());
            self.notify.notify_one();
        }
    }

    fn take(&self) -> Vec<String> {
        let mut names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        names.drain().collect()
    }
}

/// The opt-in drift taint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taint {
    /// Lowest violation severity that taints (`conformance::severity_rank`).
    pub severity: String,
    pub max: MaxTainted,
}

/// What to keep on Nodes; all off writes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub condition: bool,
    pub reports: Vec<ReportKind>,
    pub taint: Option<Taint>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            condition: true,
            reports: vec![ReportKind::OpenReports],
            taint: None,
        }
    }
}

impl Settings {
    pub fn any(&self) -> bool {
        self.condition || !self.reports.is_empty() || self.taint.is_some()
    }
}

/// What this task last wrote for one node, this term.
#[derive(Default)]
struct Written {
    uid: String,
    /// The condition and its `lastTransitionTime`.
    condition: Option<(Condition, String)>,
    /// Report bodies by kind, as last written.
    reports: HashMap<ReportKind, Value>,
}

struct Writer {
    client: kube::Client,
    hub: Arc<Hub>,
    settings: Settings,
    metrics: Arc<Metrics>,
    nodes: Api<Node>,
    /// Report kinds the API server serves.
    served: Mutex<HashSet<ReportKind>>,
    written: Mutex<HashMap<String, Written>>,
    /// Nodes whose write failed, to try again.
    retry: Mutex<HashSet<String>>,
}

fn guard<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn apply() -> PatchParams {
    // Force: these fields are this aggregator's alone, whichever replica
    // wrote them last.
    PatchParams::apply(FIELD_MANAGER).force()
}

fn resource(kind: ReportKind) -> ApiResource {
    ApiResource {
        group: kind.group().into(),
        version: kind.version().into(),
        api_version: kind.api_version(),
        kind: kind.kind().into(),
        plural: kind.plural().into(),
    }
}

impl Writer {
    fn reports(&self, kind: ReportKind) -> Api<DynamicObject> {
        Api::all_with(self.client.clone(), &resource(kind))
    }

    fn failed(&self, node: &str, sink: &'static str, what: &str, e: &kube::Error) {
        self.metrics
            .sink_dropped
            .get_or_create(&SinkLabel { sink })
            .inc();
        tracing::warn!("failed to write the {what} of node {node}: {e}");
        guard(&self.retry).insert(node.to_string());
    }

    /// Look for the report CRDs not yet found; true when one appeared.
    async fn discover(&self) -> bool {
        let mut appeared = false;
        for &kind in &self.settings.reports {
            if guard(&self.served).contains(&kind) {
                continue;
            }
            let served = match self
                .client
                .list_api_group_resources(&kind.api_version())
                .await
            {
                Ok(list) => list.resources.iter().any(|r| r.name == kind.plural()),
                Err(e) => {
                    if status_code(&e) != Some(404) {
                        tracing::warn!("discovery of {} failed: {e}", kind.api_version());
                    }
                    false
                }
            };
            if served {
                tracing::info!(
                    "writing {} reports per node ({})",
                    kind.kind(),
                    kind.api_version()
                );
                guard(&self.served).insert(kind);
                appeared = true;
            } else {
                tracing::debug!(
                    "{} is not served; no {} is written",
                    kind.api_version(),
                    kind.kind()
                );
            }
        }
        appeared
    }

    fn served(&self) -> Vec<ReportKind> {
        let served = guard(&self.served);
        self.settings
            .reports
            .iter()
            .copied()
            .filter(|k| served.contains(k))
            .collect()
    }

    /// Bring one node's condition and reports in line with its standing
    /// (`None`: the hub forgot the node).
    async fn sync(&self, node: &str, standing: Option<&Standing>) {
        match standing {
            Some(s) => self.sync_known(node, s).await,
            None => self.forget(node).await,
        }
    }

    /// The hub forgot the node (its Node is gone): so go its reports.
    async fn forget(&self, node: &str) {
        guard(&self.written).remove(node);
        for kind in self.served() {
            match self
                .reports(kind)
                .delete(&conformance::report_name(node), &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(e) if status_code(&e) == Some(404) => {}
                Err(e) => self.failed(node, "node-reports", "report", &e),
            }
        }
    }

    /// The node's uid and this task's record of it, reading the Node once
    /// per term. `None` when the Node does not exist.
    async fn entry(&self, node: &str) -> Option<(String, Option<(Condition, String)>)> {
        if let Some(w) = guard(&self.written).get(node) {
            return Some((w.uid.clone(), w.condition.clone()));
        }
        let n = match self.nodes.get(node).await {
            Ok(n) => n,
            Err(e) if status_code(&e) == Some(404) => return None,
            Err(e) => {
                self.failed(node, "node-condition", "Node object read", &e);
                return None;
            }
        };
        let uid = n.metadata.uid.clone().unwrap_or_default();
        // What a previous term (or replica) left: a new leader rewrites
        // nothing that is still right, and the transition time holds
        // while the status does.
        let previous = n
            .status
            .and_then(|s| s.conditions)
            .into_iter()
            .flatten()
            .find(|c| c.type_ == CONDITION)
            .map(|c| {
                (
                    Condition::read(
                        &c.status,
                        c.reason.as_deref().unwrap_or_default(),
                        c.message.as_deref().unwrap_or_default(),
                    ),
                    c.last_transition_time
                        .and_then(|t| serde_json::to_value(t).ok())
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                )
            });
        guard(&self.written).insert(
            node.to_string(),
            Written {
                uid: uid.clone(),
                condition: previous.clone(),
                reports: HashMap::new(),
            },
        );
        Some((uid, previous))
    }

    async fn sync_known(&self, node: &str, s: &Standing) {
        if !s.reported && !s.stale {
            return;
        }
        let Some((uid, previous)) = self.entry(node).await else {
            return;
        };
        if self.settings.condition {
            let c = conformance::condition(s);
            if previous.as_ref().map(|(p, _)| p) != Some(&c) {
                let now = rfc3339(SystemTime::now());
                let transition = match &previous {
                    Some((p, at)) if p.status == c.status && !at.is_empty() => at.clone(),
                    _ => now.clone(),
                };
                let patch = json!({
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {"name": node},
                    "status": {"conditions": [{
                        "type": CONDITION,
                        "status": c.status,
                        "reason": c.reason,
                        "message": c.message,
                        "lastTransitionTime": transition,
                        "lastHeartbeatTime": now,
                    }]},
                });
                match self
                    .nodes
                    .patch_status(node, &apply(), &Patch::Apply(patch))
                    .await
                {
                    Ok(_) => {
                        if let Some(w) = guard(&self.written).get_mut(node) {
                            w.condition = Some((c, transition));
                        }
                    }
                    Err(e) if status_code(&e) == Some(404) => {
                        guard(&self.written).remove(node);
                        return;
                    }
                    Err(e) => self.failed(node, "node-condition", "condition", &e),
                }
            }
        }
        if !s.reported {
            return;
        }
        let body = conformance::report_body(s);
        let name = conformance::report_name(node);
        for kind in self.served() {
            let known = guard(&self.written)
                .get(node)
                .and_then(|w| w.reports.get(&kind).map(|b| b == &body));
            let same = match known {
                Some(same) => same,
                // First look this term: what a previous leader wrote may
                // still be right.
                None => match self.reports(kind).get_opt(&name).await {
                    Ok(Some(stored)) => conformance::same_body(&stored.data, &body),
                    Ok(None) => false,
                    Err(e) => {
                        self.failed(node, "node-reports", "report read", &e);
                        continue;
                    }
                },
            };
            if same {
                if let Some(w) = guard(&self.written).get_mut(node) {
                    w.reports.insert(kind, body.clone());
                }
                continue;
            }
            let report = conformance::report(kind, node, &uid, s, SystemTime::now());
            match self
                .reports(kind)
                .patch(&name, &apply(), &Patch::Apply(report))
                .await
            {
                Ok(_) => {
                    if let Some(w) = guard(&self.written).get_mut(node) {
                        w.reports.insert(kind, body.clone());
                    }
                }
                Err(e) if status_code(&e) == Some(404) => {
                    // The CRD went away; look for it again later.
                    tracing::debug!("{} is no longer served", kind.api_version());
                    guard(&self.served).remove(&kind);
                }
                Err(e) => self.failed(node, "node-reports", "report", &e),
            }
        }
    }
}

/// The drift taint's bookkeeping for one term.
struct Taints {
    settings: Taint,
    threshold: u8,
    /// Nodes that should carry the taint, in the order they came to.
    wanted: BTreeMap<String, Wanted>,
    /// Nodes that carry it now, with its value.
    tainted: BTreeMap<String, String>,
    arrivals: u64,
}

impl Taints {
    fn new(settings: Taint) -> Taints {
        Taints {
            threshold: conformance::severity_rank(&settings.severity),
            settings,
            wanted: BTreeMap::new(),
            tainted: BTreeMap::new(),
            arrivals: 0,
        }
    }

    /// What the cluster carries now: a previous term's taints count
    /// against the cap.
    async fn load(&mut self, nodes: &Api<Node>) -> Result<(), kube::Error> {
        let list = nodes.list(&ListParams::default()).await?;
        self.tainted = list
            .items
            .iter()
            .filter_map(|n| {
                let value = conformance::drift_taint(n.spec.as_ref()?.taints.as_ref()?)?;
                Some((n.metadata.name.clone()?, value))
            })
            .collect();
        Ok(())
    }

    fn note(&mut self, node: &str, standing: Option<&Standing>) {
        let want = standing
            .and_then(|s| conformance::taint_for(s, self.threshold))
            .map(conformance::taint_value);
        match want {
            Some(value) => {
                let since = match self.wanted.get(node) {
                    Some(w) => w.since,
                    None => {
                        self.arrivals += 1;
                        self.arrivals
                    }
                };
                self.wanted
                    .insert(node.to_string(), Wanted { value, since });
            }
            None => {
                self.wanted.remove(node);
            }
        }
    }

    /// Apply the plan; a node that changed under us is retried next round.
    async fn reconcile(&mut self, nodes: &Api<Node>, cluster_size: usize, w: &Writer) {
        let cap = self.settings.max.cap(cluster_size);
        for (node, value) in conformance::plan_taints(&self.wanted, &self.tainted, cap) {
            match set_taint(nodes, &node, value.as_deref()).await {
                Ok(()) => {
                    match value {
                        Some(v) => self.tainted.insert(node, v),
                        None => self.tainted.remove(&node),
                    };
                }
                Err(e) if status_code(&e) == Some(404) => {
                    self.tainted.remove(&node);
                    self.wanted.remove(&node);
                }
                Err(e) => w.failed(&node, "node-taints", "taint", &e),
            }
        }
        let held_back = self
            .wanted
            .keys()
            .filter(|n| !self.tainted.contains_key(*n))
            .count();
        w.metrics.tainted.set(self.tainted.len() as i64);
        w.metrics.taint_held_back.set(held_back as i64);
    }
}

/// Set (or remove) the drift taint on one Node, leaving every other taint
/// as it is; a write that lost a race with another writer reads again.
async fn set_taint(nodes: &Api<Node>, node: &str, value: Option<&str>) -> Result<(), kube::Error> {
    let mut attempts = 0;
    loop {
        let n = nodes.get(node).await?;
        let current = n
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        let wanted = conformance::retaint(&current, value);
        if wanted == current {
            return Ok(());
        }
        let patch = json!({
            "metadata": {"resourceVersion": n.metadata.resource_version},
            "spec": {"taints": wanted},
        });
        match nodes
            .patch(node, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Err(e) if status_code(&e) == Some(409) && attempts < 3 => attempts += 1,
            other => return other.map(|_| ()),
        }
    }
}

/// Run the writer until `cancel`; it acts only while this replica leads.
pub fn spawn(
    client: kube::Client,
    hub: Arc<Hub>,
    settings: Settings,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) -> JoinHandle<()> {
    let dirty = hub.follow_standings();
    let mut leading = hub.leadership();
    let writer = Writer {
        nodes: Api::all(client.clone()),
        client,
        hub,
        settings,
        metrics,
        served: Mutex::default(),
        written: Mutex::default(),
        retry: Mutex::default(),
    };
    tokio::spawn(async move {
        loop {
            while !*leading.borrow_and_update() {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = leading.changed() => if r.is_err() { return },
                }
            }
            // A new term: what this replica wrote before may have been
            // overwritten by another leader since.
            guard(&writer.written).clear();
            guard(&writer.served).clear();
            writer.discover().await;
            let mut taints = writer.settings.taint.clone().map(Taints::new);
            if let Some(t) = &mut taints
                && let Err(e) = t.load(&writer.nodes).await
            {
                tracing::warn!("could not read which nodes carry the drift taint: {e}");
            }
            for name in writer.hub.node_names() {
                dirty.mark(&name);
            }
            let start = tokio::time::Instant::now();
            let mut recheck = tokio::time::interval_at(start + RECHECK, RECHECK);
            let mut retry = tokio::time::interval_at(start + RETRY, RETRY);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = leading.changed() => {
                        if r.is_err() { return }
                        if !*leading.borrow() {
                            // The next leader counts for itself.
                            writer.metrics.tainted.set(0);
                            writer.metrics.taint_held_back.set(0);
                            break;
                        }
                    }
                    _ = dirty.notify.notified() => {}
                    _ = recheck.tick() => {
                        if writer.discover().await {
                            for name in writer.hub.node_names() {
                                dirty.mark(&name);
                            }
                        }
                    }
                    _ = retry.tick() => {
                        let again: Vec<String> = guard(&writer.retry).drain().collect();
                        for name in again {
                            dirty.mark(&name);
                        }
                    }
                }
                let batch = dirty.take();
                if batch.is_empty() {
                    continue;
                }
                // Each standing once: the taint and the writes read the same.
                let standings: Vec<(String, Option<Standing>)> = batch
                    .into_iter()
                    .map(|name| {
                        let s = writer.hub.standing(&name);
                        (name, s)
                    })
                    .collect();
                if let Some(t) = &mut taints {
                    for (name, s) in &standings {
                        t.note(name, s.as_ref());
                    }
                }
                if writer.settings.condition || !writer.settings.reports.is_empty() {
                    futures::stream::iter(&standings)
                        .for_each_concurrent(CONCURRENCY, |(name, s)| writer.sync(name, s.as_ref()))
                        .await;
                }
                if let Some(t) = &mut taints {
                    t.reconcile(&writer.nodes, writer.hub.cluster_size(), &writer)
                        .await;
                }
            }
        }
    })
}
