//! The hub: every node's live state and the cluster-level state in one
//! place, the active recipe, and the path from a change to drift events.
//! Agent sessions, the cluster watchers, the stale sweep and the API all go
//! through it.
//!
//! Locking: one mutex per node, so agents never wait on each other; a node
//! is locked before the cluster state or the Node-object cache, never the
//! other way round. Events are handed to the recorder while the lock that
//! produced them is held, so a node's events are recorded in the order they
//! happened. The hub must not block on I/O: the recorder writes, the sinks
//! deliver.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use aicr::constraint::Outcome;
use aicr::error::Result;
use aicr::model::recipe::RecipeResult;
use aicr::model::snapshot::{LookupMiss, Measurement, Reading, Snapshot, Subtype};
use aicr::proto::drift_event::{Kind, Source};
use aicr::proto::{DriftEvent, NodeInfo};
use aicr::snapshot_io;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::baseline_mirror;
use crate::conformance::{Check, Deviating, Standing};
use crate::evaluator::{self, Open, OpenSet, Rules, is_cluster_scope};
use crate::metrics::Metrics;
use crate::node_status::Dirty;
use crate::peers::{self, Baseline, DEFAULT_POOL, Peers, ReadingId};
use crate::recorder::Input;
use crate::sinks::now_ms;
use crate::state::{Changed, NodeState, Rejected, Reported};
use crate::store::{NodeRecord, Record};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(PoisonError::into_inner)
}

/// Why the hub did not apply an agent message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Ask the agent for a full snapshot.
    Resync(String),
    /// End the session: the message breaks a limit.
    Invalid(String),
    /// A newer session owns the node (or this replica stopped leading).
    Superseded,
}

impl From<Rejected> for Refusal {
    fn from(r: Rejected) -> Self {
        match r {
            Rejected::Resync(s) => Refusal::Resync(s),
            Rejected::Invalid(s) => Refusal::Invalid(s),
        }
    }
}

/// An agent session's claim on its node.
pub struct Session {
    pub node: Arc<Mutex<NodeState>>,
    pub id: u64,
    pub cancel: CancellationToken,
}

/// Cluster-level readings from the Kubernetes API, only for scopes whose
/// watch has completed its initial list: an unsynced cache is unknown, not
/// empty, and rules on it are not judged.
#[derive(Default)]
struct ClusterState {
    subtypes: HashMap<String, Subtype>,
    open: OpenSet,
}

impl ClusterState {
    /// NodeTopology is computed in one piece, so once its summary exists a
    /// missing NodeTopology subtype is a real absence.
    fn known(&self, scope: &str) -> bool {
        self.subtypes.contains_key(scope)
            || (scope.starts_with("NodeTopology.")
                && self.subtypes.contains_key("NodeTopology.summary"))
    }
}

/// What the hub keeps of a Node object: its `K8s.node` subtype and the
/// pool its labels put it in.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeObject {
    pub subtype: Subtype,
    pub pool: String,
}

/// Every Node, from the Node watcher.
#[derive(Default)]
struct NodeObjects {
    watched: bool,
    synced: bool,
    by_name: HashMap<String, NodeObject>,
}

/// Peers of a pool to judge again once the node that moved them is
/// unlocked.
struct PoolRejudge {
    pool: String,
    readings: Vec<ReadingId>,
    everything: bool,
    except: String,
}

pub struct Hub {
    nodes: RwLock<HashMap<String, Arc<Mutex<NodeState>>>>,
    cluster: Mutex<ClusterState>,
    objects: RwLock<NodeObjects>,
    rules: RwLock<Arc<Rules>>,
    recipe: RwLock<Option<Arc<RecipeResult>>>,
    records: UnboundedSender<Input>,
    metrics: Arc<Metrics>,
    stale_after: Duration,
    sessions: AtomicU64,
    leading: AtomicBool,
    peers: Mutex<Peers>,
    /// Node labels whose values name a node's pool, in order.
    pool_labels: Vec<String>,
    /// Where baseline changes are also kept (ConfigMaps, for failover).
    mirror: Mutex<Option<UnboundedSender<baseline_mirror::Change>>>,
    /// Follows `leading`, for whoever must act when leadership changes.
    leadership: watch::Sender<bool>,
    /// Nodes whose standing may have changed, for the writer of Node
    /// conditions, reports and taints; unset when none runs.
    standing_changed: OnceLock<Arc<Dirty>>,
}

fn lookup_readings<'a>(
    readings: &'a BTreeMap<String, Reported>,
    kind: &str,
    subtype: &str,
    key: &str,
) -> std::result::Result<&'a Reading, LookupMiss> {
    match readings.get(&format!("{kind}.{subtype}")) {
        Some(r) => r.state.get(key).ok_or(LookupMiss::Key),
        None => {
            let prefix = format!("{kind}.");
            let has_kind = readings
                .range(prefix.clone()..)
                .next()
                .is_some_and(|(k, _)| k.starts_with(&prefix));
            Err(if has_kind {
                LookupMiss::Subtype
            } else {
                LookupMiss::Type
            })
        }
    }
}

fn stale_marker(node: &str, kind: Kind, reason: String, now_ms: i64) -> DriftEvent {
    DriftEvent {
        kind: kind as i32,
        node_name: node.to_string(),
        reason,
        unix_millis: now_ms,
        ..Default::default()
    }
}

/// Measurement types in document order, then subtypes in local capture's
/// order within each, so a node's snapshot reads like a local one.
fn subtype_rank(kind: &str, subtype: &str) -> usize {
    let order: &[&str] = match kind {
        "K8s" => &["server", "image", "policy", "node"],
        "NodeTopology" => &["summary", "taint", "label"],
        _ => &[],
    };
    order
        .iter()
        .position(|s| *s == subtype)
        .unwrap_or(order.len())
}

impl Hub {
    pub fn new(
        records: UnboundedSender<Input>,
        metrics: Arc<Metrics>,
        stale_after: Duration,
        peers: peers::Settings,
        pool_labels: Vec<String>,
    ) -> Hub {
        Hub {
            nodes: RwLock::default(),
            cluster: Mutex::default(),
            objects: RwLock::default(),
            rules: RwLock::new(Arc::new(Rules::default())),
            recipe: RwLock::new(None),
            records,
            metrics,
            stale_after,
            sessions: AtomicU64::new(0),
            leading: AtomicBool::new(false),
            peers: Mutex::new(Peers::new(peers)),
            pool_labels,
            mirror: Mutex::new(None),
            leadership: watch::channel(false).0,
            standing_changed: OnceLock::new(),
        }
    }

    /// The nodes whose standing may have changed from now on.
    pub fn follow_standings(&self) -> Arc<Dirty> {
        self.standing_changed.get_or_init(Arc::default).clone()
    }

    fn standing_changed(&self, node: &str) {
        if let Some(d) = self.standing_changed.get() {
            d.mark(node);
        }
    }

    /// Also send every baseline change to `tx`.
    pub fn mirror_baselines(&self, tx: UnboundedSender<baseline_mirror::Change>) {
        *lock(&self.mirror) = Some(tx);
    }

    /// Whether this replica leads, now and as it changes.
    pub fn leadership(&self) -> watch::Receiver<bool> {
        self.leadership.subscribe()
    }

    fn peers(&self) -> MutexGuard<'_, Peers> {
        lock(&self.peers)
    }

    /// The pool of a node whose labels `label` looks up: the values of the
    /// pool labels it has, joined by `/`; without any, the default pool.
    pub fn pool_of<'a>(&self, label: impl Fn(&str) -> Option<&'a str>) -> String {
        let parts: Vec<&str> = self
            .pool_labels
            .iter()
            .filter_map(|l| label(l))
            .filter(|v| !v.is_empty())
            .collect();
        if parts.is_empty() {
            DEFAULT_POOL.to_string()
        } else {
            parts.join("/")
        }
    }

    /// The pool of node `name`: the default one without a Node watch, the
    /// labels' once the watch has synced, unknown until then.
    fn pool_for(&self, name: &str) -> Option<String> {
        let o = read(&self.objects);
        if !o.watched {
            return Some(DEFAULT_POOL.to_string());
        }
        if !o.synced {
            return None;
        }
        Some(
            o.by_name
                .get(name)
                .map_or_else(|| DEFAULT_POOL.to_string(), |n| n.pool.clone()),
        )
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn emit(&self, events: Vec<DriftEvent>) {
        for ev in events {
            if !ev.node_name.is_empty() {
                self.standing_changed(&ev.node_name);
            }
            // The recorder only goes away at shutdown.
            let _ = self
                .records
                .send(Input::Record(Box::new(Record::Event(ev))));
        }
    }

    fn record(&self, rec: Record) {
        let _ = self.records.send(Input::Record(Box::new(rec)));
    }

    /// Load what a previous run left: known nodes (disconnected, given a
    /// full stale period to come back) and open violations, so reconnecting
    /// agents resolve or keep them instead of opening duplicates.
    pub fn restore(&self, nodes: Vec<(String, NodeRecord)>, open: &[DriftEvent]) {
        let mut map = write(&self.nodes);
        for (name, rec) in nodes {
            let mut n = NodeState::new(&name);
            n.agent_version = rec.agent_version;
            n.last_seen_ms = rec.last_seen_ms;
            map.insert(name, Arc::new(Mutex::new(n)));
        }
        let mut cluster = lock(&self.cluster);
        for ev in open {
            if ev.source == Source::Peers as i32 {
                let node = map
                    .entry(ev.node_name.clone())
                    .or_insert_with(|| Arc::new(Mutex::new(NodeState::new(&ev.node_name))));
                if let Some((reading, d)) = peers::from_event(ev) {
                    lock(node).deviations.insert(reading, d);
                }
                continue;
            }
            let entry = Open {
                expected: ev.expected.clone(),
                actual: ev.actual.clone(),
                severity: ev.severity.clone(),
            };
            if ev.node_name.is_empty() {
                cluster.open.insert(ev.constraint.clone(), entry);
                continue;
            }
            let node = map
                .entry(ev.node_name.clone())
                .or_insert_with(|| Arc::new(Mutex::new(NodeState::new(&ev.node_name))));
            let mut n = lock(node);
            if ev.constraint.is_empty() {
                n.stale = true;
            } else {
                n.open.insert(ev.constraint.clone(), entry);
            }
        }
        drop(cluster);
        // Known members hold a pool back from judging until most of them
        // have reported again.
        for node in map.values() {
            let mut n = lock(node);
            if let Some(pool) = self.pool_for(&n.name) {
                self.peers().know(&pool);
                n.pool = Some(pool);
            }
        }
    }

    /// Baselines a previous run pinned.
    pub fn restore_baselines(&self, baselines: Vec<(String, Baseline)>) {
        let mut peers = self.peers();
        for (pool, b) in baselines {
            peers.set_baseline(&pool, Some(b));
        }
    }

    // ------------------------------------------------------------ recipe

    pub fn recipe(&self) -> Option<Arc<RecipeResult>> {
        read(&self.recipe).clone()
    }

    /// Make `recipe` the active one and judge everything against it;
    /// `persist` records it so a restart keeps it. Returns the number of
    /// constraints.
    pub fn set_recipe(&self, recipe: RecipeResult, persist: bool) -> Result<usize> {
        let rules = Arc::new(Rules::new(&recipe.constraints)?);
        if persist {
            let json =
                serde_json::to_vec(&recipe).map_err(|e| aicr::Error::internal(e.to_string()))?;
            self.record(Record::Recipe(json));
        }
        *write(&self.rules) = rules.clone();
        *write(&self.recipe) = Some(Arc::new(recipe));
        self.metrics.rules.set(rules.len() as i64);
        let started = Instant::now();
        let now = now_ms();
        let node_rules = rules.node_rules();
        for entry in self.entries() {
            let mut n = lock(&entry);
            let name = n.name.clone();
            let mut out = evaluator::retire(&name, &rules, &mut n.open, now);
            if n.reported {
                let objects = read(&self.objects);
                Self::judge_node(&mut n, &rules, &node_rules, &objects, now, &mut out);
            }
            // Reports list passing constraints too.
            self.standing_changed(&name);
            self.emit(out);
        }
        {
            let mut c = lock(&self.cluster);
            let mut out = evaluator::retire("", &rules, &mut c.open, now);
            Self::judge_cluster(&mut c, &rules, &rules.cluster_rules(), now, &mut out);
            self.emit(out);
        }
        self.metrics
            .evaluation_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(rules.len())
    }

    /// Resolve open violations of constraints the active recipe lacks (a
    /// restart with a different `--recipe`).
    pub fn retire_unknown(&self) {
        let rules = read(&self.rules).clone();
        let now = now_ms();
        for entry in self.entries() {
            let mut n = lock(&entry);
            let name = n.name.clone();
            let out = evaluator::retire(&name, &rules, &mut n.open, now);
            self.emit(out);
        }
        let mut c = lock(&self.cluster);
        let out = evaluator::retire("", &rules, &mut c.open, now);
        self.emit(out);
    }

    // ----------------------------------------------------------- judging

    /// How rule `i` comes out on a node; `None` while it cannot be judged
    /// (`K8s.node` before the Node watch has synced).
    fn outcome(
        name: &str,
        readings: &BTreeMap<String, Reported>,
        rules: &Rules,
        i: usize,
        objects: &NodeObjects,
    ) -> Option<Outcome> {
        let rule = rules.get(i);
        if rule.scope == "K8s.node" && objects.watched {
            if !objects.synced {
                return None;
            }
            let st = objects.by_name.get(name).map(|o| &o.subtype);
            return Some(evaluator::judge(rule, |_, _, key| match st {
                Some(s) => s.data.get(key).ok_or(LookupMiss::Key),
                None => Err(LookupMiss::Subtype),
            }));
        }
        Some(match readings.get(&rule.scope) {
            // Nodes reading the key as their scope's base does share one
            // outcome.
            Some(r) => r
                .state
                .outcome(rules.generation(), i, &rule.key, |reading| {
                    evaluator::judge(rule, |_, _, _| reading.ok_or(LookupMiss::Key))
                }),
            None => evaluator::judge(rule, |kind, subtype, key| {
                lookup_readings(readings, kind, subtype, key)
            }),
        })
    }

    fn judge_node(
        n: &mut NodeState,
        rules: &Rules,
        which: &[usize],
        objects: &NodeObjects,
        now: i64,
        out: &mut Vec<DriftEvent>,
    ) {
        let NodeState {
            name,
            readings,
            open,
            ..
        } = n;
        for &i in which {
            let rule = rules.get(i);
            if rule.cluster {
                continue;
            }
            let Some(outcome) = Self::outcome(name, readings, rules, i, objects) else {
                continue;
            };
            if let Some(ev) = evaluator::diff(name, rule, &outcome, open, now) {
                out.push(ev);
            }
        }
    }

    fn judge_cluster(
        c: &mut ClusterState,
        rules: &Rules,
        which: &[usize],
        now: i64,
        out: &mut Vec<DriftEvent>,
    ) {
        for &i in which {
            let rule = rules.get(i);
            if !rule.cluster || !c.known(&rule.scope) {
                continue;
            }
            let st = c.subtypes.get(&rule.scope);
            let outcome = evaluator::judge(rule, |_, _, key| match st {
                Some(s) => s.data.get(key).ok_or(LookupMiss::Key),
                None => Err(LookupMiss::Subtype),
            });
            if let Some(ev) = evaluator::diff("", rule, &outcome, &mut c.open, now) {
                out.push(ev);
            }
        }
    }

    /// Judge a node's readings against its pool: `which` of them, or all
    /// (`None`).
    fn judge_peers(
        n: &mut NodeState,
        peers: &Peers,
        which: Option<&[ReadingId]>,
        now: i64,
        out: &mut Vec<DriftEvent>,
    ) {
        let NodeState {
            name,
            readings,
            deviations,
            pool,
            ..
        } = n;
        let Some(pool) = pool.as_deref() else {
            return;
        };
        match which {
            Some(which) => peers.judge_readings(pool, name, which, readings, deviations, now, out),
            None => peers.judge_node(pool, name, readings, deviations, now, out),
        }
    }

    /// Count a node's changed readings in its pool (all of them when it
    /// joins) and judge what that moved for it. Returns the rest of the
    /// pool to judge again once the node is unlocked.
    fn peers_changed(
        &self,
        n: &mut NodeState,
        changes: &[Changed],
        now: i64,
        out: &mut Vec<DriftEvent>,
    ) -> Option<PoolRejudge> {
        if n.pool.is_none() {
            let pool = self.pool_for(&n.name)?;
            self.peers().know(&pool);
            n.pool = Some(pool);
        }
        let pool = n.pool.clone()?;
        let first = !n.member;
        let joined: Vec<Changed>;
        let changes = if first {
            joined = n
                .readings
                .keys()
                .map(|scope| Changed {
                    scope: scope.clone(),
                    before: None,
                })
                .collect();
            &joined
        } else {
            changes
        };
        n.member = true;
        let mut peers = self.peers();
        let r = peers.changed(&pool, &n.name, first, changes, &n.readings);
        if r.everything || r.node_all {
            // Every reading of the node, the moved ones among them.
            Self::judge_peers(n, &peers, None, now, out);
        } else {
            Self::judge_peers(n, &peers, Some(&r.node), now, out);
            Self::judge_peers(n, &peers, Some(&r.pool), now, out);
        }
        (r.everything || !r.pool.is_empty()).then(|| PoolRejudge {
            pool,
            readings: r.pool,
            everything: r.everything,
            except: n.name.clone(),
        })
    }

    /// Judge a pool's other members again after its expectations moved.
    fn rejudge_pool(&self, job: PoolRejudge) {
        let members = self.peers().members(&job.pool);
        let now = now_ms();
        for name in members {
            if name == job.except {
                continue;
            }
            let Some(entry) = self.entry(&name) else {
                continue;
            };
            let mut n = lock(&entry);
            if n.pool.as_deref() != Some(job.pool.as_str()) {
                continue;
            }
            let peers = self.peers();
            let mut out = Vec::new();
            let which = (!job.everything).then_some(job.readings.as_slice());
            Self::judge_peers(&mut n, &peers, which, now, &mut out);
            drop(peers);
            self.emit(out);
        }
    }

    /// Put a node in the pool its Node object names now, if that moved:
    /// it leaves the old pool (its deviations there resolve) and joins
    /// the new one with all its readings.
    fn reassign_pool(&self, name: &str) {
        let Some(entry) = self.entry(name) else {
            return;
        };
        let Some(new) = self.pool_for(name) else {
            return;
        };
        let mut jobs = Vec::new();
        let mut out = Vec::new();
        let now = now_ms();
        {
            let mut n = lock(&entry);
            if n.pool.as_deref() == Some(new.as_str()) {
                return;
            }
            if let Some(old) = n.pool.clone() {
                jobs.extend(self.leave_pool(&mut n));
                let reason = format!("node moved from pool {old} to {new}");
                out.extend(peers::resolve_all(name, &mut n.deviations, &reason, now));
            }
            self.peers().know(&new);
            n.pool = Some(new);
            if n.reported {
                jobs.extend(self.peers_changed(&mut n, &[], now, &mut out));
            }
        }
        self.emit(out);
        for job in jobs {
            self.rejudge_pool(job);
        }
    }

    /// Take a node out of its pool, so its readings stop counting there.
    /// Returns the rest of the pool to judge again once it is unlocked.
    fn leave_pool(&self, n: &mut NodeState) -> Option<PoolRejudge> {
        let pool = n.pool.take()?;
        let mut peers = self.peers();
        let job = n.member.then(|| {
            let r = peers.leave(&pool, &n.name, &n.readings);
            PoolRejudge {
                pool: pool.clone(),
                readings: r.pool,
                everything: r.everything,
                except: n.name.clone(),
            }
        });
        peers.unknow(&pool);
        n.member = false;
        job
    }

    fn entries(&self) -> Vec<Arc<Mutex<NodeState>>> {
        read(&self.nodes).values().cloned().collect()
    }

    fn entry(&self, name: &str) -> Option<Arc<Mutex<NodeState>>> {
        read(&self.nodes).get(name).cloned()
    }

    /// Note a sign of life; a stale node comes back.
    fn alive(&self, n: &mut NodeState, now: i64) {
        n.touch(now);
        if n.stale {
            n.stale = false;
            let ev = stale_marker(
                &n.name,
                Kind::Resolved,
                "agent is reporting again".into(),
                now,
            );
            self.emit(vec![ev]);
        }
    }

    // ----------------------------------------------------- agent sessions

    pub fn leading(&self) -> bool {
        self.leading.load(Ordering::SeqCst)
    }

    /// Claim `name` for a new session, ending any older one.
    pub fn register(&self, name: &str, agent_version: &str, boot_id: &str) -> Session {
        let id = self.sessions.fetch_add(1, Ordering::SeqCst) + 1;
        let node = {
            let mut map = write(&self.nodes);
            map.entry(name.to_string())
                .or_insert_with(|| Arc::new(Mutex::new(NodeState::new(name))))
                .clone()
        };
        let cancel = CancellationToken::new();
        {
            let mut n = lock(&node);
            n.cancel.cancel();
            n.cancel = cancel.clone();
            if !n.connected {
                self.metrics.agents_connected.inc();
            }
            n.connected = true;
            n.synced = false;
            n.session = id;
            n.agent_version = agent_version.to_string();
            n.boot_id = boot_id.to_string();
            let now = now_ms();
            self.alive(&mut n, now);
            self.record(Record::Node(
                name.to_string(),
                NodeRecord {
                    agent_version: agent_version.to_string(),
                    last_seen_ms: now,
                },
            ));
        }
        Session { node, id, cancel }
    }

    fn owned<'a>(&self, s: &'a Session) -> std::result::Result<MutexGuard<'a, NodeState>, Refusal> {
        let n = lock(&s.node);
        if n.session != s.id || !self.leading() {
            return Err(Refusal::Superseded);
        }
        Ok(n)
    }

    pub fn disconnect(&self, s: &Session) {
        let name = {
            let mut n = lock(&s.node);
            if n.session != s.id || !n.connected {
                return;
            }
            n.connected = false;
            self.metrics.agents_connected.dec();
            n.name.clone()
        };
        // A drained node's agent goes after its Node object.
        self.forget_if_deleted(&name);
    }

    /// Whether the Node watch, synced, lacks `name`.
    fn node_object_deleted(&self, name: &str) -> bool {
        let o = read(&self.objects);
        o.watched && o.synced && !o.by_name.contains_key(name)
    }

    /// Forget a node whose Node object is gone and whose agent is not
    /// connected: its violations and stale marker resolve (alerts and
    /// gauges clear), and it leaves `aicr nodes` and the state store, so
    /// autoscaled GPU pools do not pile up stale nodes. A connected agent
    /// keeps its node; the sweep or its disconnect decides later.
    fn forget_if_deleted(&self, name: &str) {
        if !self.leading() || !self.node_object_deleted(name) {
            return;
        }
        let mut map = write(&self.nodes);
        let Some(entry) = map.get(name).cloned() else {
            return;
        };
        let mut n = lock(&entry);
        if n.connected {
            return;
        }
        let now = now_ms();
        let reason = "node deleted from the cluster";
        let mut out = evaluator::resolve_all(name, &mut n.open, reason, now);
        out.extend(peers::resolve_all(name, &mut n.deviations, reason, now));
        if n.stale {
            out.push(stale_marker(name, Kind::Resolved, reason.into(), now));
        }
        let job = self.leave_pool(&mut n);
        self.emit(out);
        self.record(Record::ForgetNode(name.to_string()));
        drop(n);
        map.remove(name);
        drop(map);
        self.standing_changed(name);
        tracing::info!(node = name, "forgot a deleted node");
        if let Some(job) = job {
            self.rejudge_pool(job);
        }
    }

    pub fn apply_full(
        &self,
        s: &Session,
        seq: u64,
        reported: Vec<Reported>,
    ) -> std::result::Result<(), Refusal> {
        let started = Instant::now();
        let mut n = self.owned(s)?;
        let now = now_ms();
        self.alive(&mut n, now);
        let changes = n.apply_full(seq, reported)?;
        // After a (re)connect nothing says which outcomes still hold.
        let rules = read(&self.rules).clone();
        let mut out = Vec::new();
        {
            let objects = read(&self.objects);
            Self::judge_node(&mut n, &rules, &rules.node_rules(), &objects, now, &mut out);
        }
        let job = self.peers_changed(&mut n, &changes, now, &mut out);
        self.emit(out);
        // Reports carry passing readings too.
        self.standing_changed(&n.name);
        drop(n);
        if let Some(job) = job {
            self.rejudge_pool(job);
        }
        self.metrics
            .evaluation_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(())
    }

    pub fn apply_update(
        &self,
        s: &Session,
        seq: u64,
        changed: Vec<Reported>,
        removed: &[String],
    ) -> std::result::Result<(), Refusal> {
        let started = Instant::now();
        let mut n = self.owned(s)?;
        let now = now_ms();
        self.alive(&mut n, now);
        let changes = n.apply_update(seq, changed, removed)?;
        if changes.is_empty() {
            return Ok(());
        }
        let rules = read(&self.rules).clone();
        let touched = rules.touched(changes.iter().map(|c| c.scope.as_str()));
        let mut out = Vec::new();
        if !touched.is_empty() {
            let objects = read(&self.objects);
            Self::judge_node(&mut n, &rules, &touched, &objects, now, &mut out);
        }
        let job = self.peers_changed(&mut n, &changes, now, &mut out);
        self.emit(out);
        // Reports carry passing readings too.
        self.standing_changed(&n.name);
        drop(n);
        if let Some(job) = job {
            self.rejudge_pool(job);
        }
        self.metrics
            .evaluation_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(())
    }

    pub fn heartbeat(&self, s: &Session, seq: u64) -> std::result::Result<(), Refusal> {
        let mut n = self.owned(s)?;
        self.alive(&mut n, now_ms());
        n.heartbeat(seq)?;
        Ok(())
    }

    /// Mark nodes whose agents have been silent past the stale timeout.
    pub fn sweep_stale(&self) {
        if !self.leading() {
            return;
        }
        let now = now_ms();
        for entry in self.entries() {
            let mut n = lock(&entry);
            if !n.connected && self.node_object_deleted(&n.name) {
                let name = n.name.clone();
                drop(n);
                self.forget_if_deleted(&name);
                continue;
            }
            let silent = n.last_seen.elapsed();
            if n.stale || silent < self.stale_after {
                continue;
            }
            n.stale = true;
            let reason = format!(
                "no message from the agent for {} (stale after {})",
                humantime::format_duration(Duration::from_secs(silent.as_secs())),
                humantime::format_duration(self.stale_after)
            );
            self.emit(vec![stale_marker(&n.name, Kind::Stale, reason, now)]);
        }
    }

    /// This replica now leads: every known node gets a full stale period
    /// to reconnect before it is called stale.
    pub fn take_over(&self) {
        for entry in self.entries() {
            lock(&entry).last_seen = Instant::now();
        }
        self.leading.store(true, Ordering::SeqCst);
        self.leadership.send_replace(true);
        self.metrics.leader.set(1);
    }

    /// This replica stopped leading: end every session so agents reconnect
    /// to the new leader, and forget what they said (they resend it).
    pub fn step_down(&self) {
        self.leading.store(false, Ordering::SeqCst);
        self.leadership.send_replace(false);
        self.metrics.leader.set(0);
        for entry in self.entries() {
            let mut n = lock(&entry);
            n.cancel.cancel();
            if n.connected {
                n.connected = false;
                self.metrics.agents_connected.dec();
            }
            n.synced = false;
        }
    }

    // ------------------------------------------------------ cluster state

    /// New cluster-level readings (`K8s.server`, `K8s.image`, `K8s.policy`,
    /// `NodeTopology.*`), each from a synced watch; rules reading a scope
    /// that changed are judged again.
    pub fn cluster_update(&self, updates: Vec<(String, Subtype)>) {
        let started = Instant::now();
        let mut c = lock(&self.cluster);
        let mut changed = Vec::new();
        for (scope, st) in updates {
            debug_assert!(is_cluster_scope(&scope), "{scope}");
            if c.subtypes.get(&scope) != Some(&st) {
                c.subtypes.insert(scope.clone(), st);
                changed.push(scope);
            }
        }
        if changed.is_empty() {
            return;
        }
        let rules = read(&self.rules).clone();
        let mut touched = rules.touched(changed.iter().map(String::as_str));
        if changed.iter().any(|s| s.starts_with("NodeTopology.")) {
            // A NodeTopology rule on a subtype we do not produce is decided
            // by the topology as a whole.
            touched.extend(
                rules
                    .cluster_rules()
                    .into_iter()
                    .filter(|&i| rules.get(i).scope.starts_with("NodeTopology.")),
            );
            touched.sort_unstable();
            touched.dedup();
        }
        let mut out = Vec::new();
        Self::judge_cluster(&mut c, &rules, &touched, now_ms(), &mut out);
        self.emit(out);
        self.metrics
            .evaluation_seconds
            .observe(started.elapsed().as_secs_f64());
    }

    /// A Node watch will feed `K8s.node`; until it syncs, `K8s.node` rules
    /// are not judged.
    pub fn watch_node_objects(&self) {
        write(&self.objects).watched = true;
    }

    /// The Node watch's complete view (initial list or re-list).
    pub fn node_objects_synced(&self, all: HashMap<String, NodeObject>) {
        let changed: Vec<String> = {
            let mut o = write(&self.objects);
            let first = !o.synced;
            let mut changed: Vec<String> = all
                .iter()
                .filter(|(k, v)| first || o.by_name.get(*k) != Some(v))
                .map(|(k, _)| k.clone())
                .collect();
            changed.extend(o.by_name.keys().filter(|k| !all.contains_key(*k)).cloned());
            o.by_name = all;
            o.synced = true;
            self.metrics.node_objects.set(o.by_name.len() as i64);
            self.metrics.node_lists.inc();
            if first {
                // Known nodes without a Node object changed too: to absent.
                changed.extend(read(&self.nodes).keys().cloned());
                changed.sort();
                changed.dedup();
            }
            changed
        };
        for name in changed {
            self.rejudge_node_object(&name);
            self.forget_if_deleted(&name);
            self.reassign_pool(&name);
        }
    }

    /// One Node changed (`None`: deleted).
    pub fn node_object(&self, name: &str, st: Option<NodeObject>) {
        {
            let mut o = write(&self.objects);
            let same = o.by_name.get(name) == st.as_ref();
            if same {
                return;
            }
            match st {
                Some(st) => o.by_name.insert(name.to_string(), st),
                None => o.by_name.remove(name),
            };
            if !o.synced {
                return;
            }
            self.metrics.node_objects.set(o.by_name.len() as i64);
        }
        self.rejudge_node_object(name);
        self.forget_if_deleted(name);
        self.reassign_pool(name);
    }

    fn rejudge_node_object(&self, name: &str) {
        let Some(entry) = self.entry(name) else {
            return;
        };
        let mut n = lock(&entry);
        if !n.reported {
            return;
        }
        let rules = read(&self.rules).clone();
        let touched = rules.touched(["K8s.node"]);
        if touched.is_empty() {
            return;
        }
        let objects = read(&self.objects);
        let mut out = Vec::new();
        Self::judge_node(&mut n, &rules, &touched, &objects, now_ms(), &mut out);
        self.emit(out);
    }

    // -------------------------------------------------------------- views

    fn cluster_measurements(&self, node: Option<&str>) -> (Vec<Measurement>, Vec<String>) {
        let c = lock(&self.cluster);
        let mut owned: Vec<String> = c.subtypes.keys().cloned().collect();
        let mut by_kind: BTreeMap<String, Vec<Subtype>> = BTreeMap::new();
        for (scope, st) in &c.subtypes {
            let kind = scope.split('.').next().unwrap_or_default();
            by_kind
                .entry(kind.to_string())
                .or_default()
                .push(st.clone());
        }
        if let Some(name) = node {
            let o = read(&self.objects);
            if o.watched && o.synced {
                owned.push("K8s.node".into());
                if let Some(obj) = o.by_name.get(name) {
                    by_kind
                        .entry("K8s".into())
                        .or_default()
                        .push(obj.subtype.clone());
                }
            }
        }
        let ms = by_kind
            .into_iter()
            .map(|(kind, subtypes)| Measurement { kind, subtypes })
            .collect();
        (ms, owned)
    }

    fn merge(mut ms: Vec<Measurement>, more: Vec<Measurement>) -> Vec<Measurement> {
        for m in more {
            match ms.iter_mut().find(|x| x.kind == m.kind) {
                Some(x) => x.subtypes.extend(m.subtypes),
                None => ms.push(m),
            }
        }
        for m in &mut ms {
            let kind = m.kind.clone();
            m.subtypes.sort_by(|a, b| {
                (subtype_rank(&kind, &a.subtype), &a.subtype)
                    .cmp(&(subtype_rank(&kind, &b.subtype), &b.subtype))
            });
        }
        ms
    }

    /// A node's snapshot as local capture would write it: the agent's
    /// readings, with the cluster-level parts from the aggregator's own
    /// watches where it has them. `None` when the node has not reported
    /// since this process started.
    pub fn node_snapshot(&self, name: &str) -> Option<Snapshot> {
        let entry = self.entry(name)?;
        let n = lock(&entry);
        if !n.reported {
            return None;
        }
        let (cluster, owned) = self.cluster_measurements(Some(name));
        let agent = n.measurements(|scope| owned.iter().any(|o| o == scope));
        let ms = Self::merge(agent, cluster);
        Some(snapshot_io::assemble(ms, name, n.updated))
    }

    /// The cluster-level snapshot: the K8s and NodeTopology measurements the
    /// aggregator keeps from its watches.
    pub fn cluster_snapshot(&self) -> Snapshot {
        let (ms, _) = self.cluster_measurements(None);
        snapshot_io::assemble(Self::merge(Vec::new(), ms), "", SystemTime::now())
    }

    /// Node `name`'s conformance now: every node constraint of the active
    /// recipe as it comes out on the node's last readings, and its open
    /// deviations. `None` for a node the hub does not know (never seen, or
    /// forgotten after its Node was deleted).
    pub fn standing(&self, name: &str) -> Option<Standing> {
        let entry = self.entry(name)?;
        let n = lock(&entry);
        let mut s = Standing {
            reported: n.reported,
            stale: n.stale,
            ..Standing::default()
        };
        if n.reported {
            let rules = read(&self.rules).clone();
            let objects = read(&self.objects);
            for i in rules.node_rules() {
                let Some(outcome) = Self::outcome(&n.name, &n.readings, &rules, i, &objects) else {
                    continue;
                };
                let rule = rules.get(i);
                s.checks.push(Check {
                    constraint: rule.name.clone(),
                    expected: rule.expected.clone(),
                    severity: rule.severity.clone(),
                    outcome,
                });
            }
            s.checks.sort_by(|a, b| a.constraint.cmp(&b.constraint));
        }
        s.deviations = n
            .deviations
            .iter()
            .map(|(reading, d)| Deviating {
                reading: reading.clone(),
                pool: d.pool.clone(),
                expected: d.expected.value.clone(),
                actual: d.actual.clone(),
                agreeing: d.expected.agreeing,
                pool_size: d.expected.pool_size,
                baseline: d.expected.baseline,
            })
            .collect();
        Some(s)
    }

    /// Every node the hub knows, by name.
    pub fn node_names(&self) -> Vec<String> {
        read(&self.nodes).keys().cloned().collect()
    }

    /// The cluster's size for caps on what may be done to nodes at once:
    /// its Node objects once watched, else the nodes that reported.
    pub fn cluster_size(&self) -> usize {
        let o = read(&self.objects);
        if o.watched && o.synced {
            o.by_name.len()
        } else {
            read(&self.nodes).len()
        }
    }

    pub fn list_nodes(&self) -> Vec<NodeInfo> {
        let mut out: Vec<NodeInfo> = self
            .entries()
            .iter()
            .map(|e| {
                let n = lock(e);
                NodeInfo {
                    node_name: n.name.clone(),
                    agent_version: n.agent_version.clone(),
                    last_seen_unix_millis: n.last_seen_ms,
                    stale: n.stale,
                    open_violations: n.open.len() as u32,
                    last_seq: n.last_seq,
                    connected: n.connected,
                    pool: n.pool.clone().unwrap_or_default(),
                    open_deviations: n.deviations.len() as u32,
                }
            })
            .collect();
        out.sort_by(|a, b| a.node_name.cmp(&b.node_name));
        out
    }

    // ---------------------------------------------------------- baselines

    /// Pin `pool` to the readings of `snapshot`, or to its current majority
    /// when `None`, and judge its nodes against them from now on.
    pub fn set_baseline(&self, pool: &str, snapshot: Option<&Snapshot>) -> Result<Baseline> {
        let now = now_ms();
        let baseline = {
            let peers = self.peers();
            match snapshot {
                Some(snap) => Baseline::from_snapshot(snap, peers.settings(), now),
                None => peers.majority_baseline(pool, now).ok_or_else(|| {
                    let known = peers.pool_names();
                    let size = peers.size(pool);
                    aicr::Error::new(
                        aicr::error::ErrorKind::NotFound,
                        if size == 0 {
                            format!(
                                "no nodes in pool {pool:?} (pools: {}); pass --from SNAPSHOT to pin a pool before its nodes report",
                                if known.is_empty() { "none yet".to_string() } else { known.join(", ") }
                            )
                        } else {
                            format!(
                                "pool {pool:?} has {size} reporting nodes, too few for a majority (needs {}); pass --from SNAPSHOT instead",
                                peers.settings().min_pool
                            )
                        },
                    )
                })?,
            }
        };
        if baseline.is_empty() {
            return Err(aicr::Error::invalid(
                "the baseline would hold no readings (the snapshot has no node readings, or all are ignored)",
            ));
        }
        let json =
            serde_json::to_vec(&baseline).map_err(|e| aicr::Error::internal(e.to_string()))?;
        let mirror = lock(&self.mirror).clone();
        if mirror.is_some() && json.len() > baseline_mirror::MAX_BYTES {
            return Err(aicr::Error::invalid(format!(
                "the baseline is {} KiB, more than a ConfigMap holds ({} KiB); leave readings out with --peer-ignore",
                json.len() / 1024,
                baseline_mirror::MAX_BYTES / 1024
            )));
        }
        self.record(Record::Baseline(pool.to_string(), Some(json)));
        if let Some(tx) = mirror {
            let _ = tx.send((pool.to_string(), Some(baseline.clone())));
        }
        self.peers().set_baseline(pool, Some(baseline.clone()));
        self.rejudge_pool(PoolRejudge {
            pool: pool.to_string(),
            readings: Vec::new(),
            everything: true,
            except: String::new(),
        });
        Ok(baseline)
    }

    /// Judge `pool` by its majority again; false when it had no baseline.
    pub fn clear_baseline(&self, pool: &str) -> bool {
        if self.peers().baseline(pool).is_none() {
            return false;
        }
        self.record(Record::Baseline(pool.to_string(), None));
        if let Some(tx) = lock(&self.mirror).as_ref() {
            let _ = tx.send((pool.to_string(), None));
        }
        self.peers().set_baseline(pool, None);
        self.rejudge_pool(PoolRejudge {
            pool: pool.to_string(),
            readings: Vec::new(),
            everything: true,
            except: String::new(),
        });
        true
    }

    /// Make `all` the pinned baselines (what the ConfigMaps hold when this
    /// replica starts leading), recording them here, and judge every pool
    /// whose baseline changed.
    pub fn replace_baselines(&self, all: Vec<(String, Baseline)>) {
        let mut changed = Vec::new();
        {
            let mut peers = self.peers();
            let wanted: HashMap<&str, &Baseline> =
                all.iter().map(|(p, b)| (p.as_str(), b)).collect();
            for (pool, _) in peers.baselines() {
                if !wanted.contains_key(pool.as_str()) {
                    peers.set_baseline(&pool, None);
                    self.record(Record::Baseline(pool.clone(), None));
                    changed.push(pool);
                }
            }
            for (pool, b) in &all {
                if peers.baseline(pool).as_deref() != Some(b) {
                    peers.set_baseline(pool, Some(b.clone()));
                    if let Ok(json) = serde_json::to_vec(b) {
                        self.record(Record::Baseline(pool.clone(), Some(json)));
                    }
                    changed.push(pool.clone());
                }
            }
        }
        for pool in changed {
            self.rejudge_pool(PoolRejudge {
                pool,
                readings: Vec::new(),
                everything: true,
                except: String::new(),
            });
        }
    }

    /// Every pinned baseline, or `pool`'s alone.
    pub fn baselines(&self, pool: Option<&str>) -> Vec<(String, Arc<Baseline>)> {
        let mut all = self.peers().baselines();
        if let Some(p) = pool {
            all.retain(|(name, _)| name == p);
        }
        all
    }
}
