//! Peer deviation: the nodes of a pool (same instance type and GPU, by
//! default) should read alike, so a node whose reading differs from what
//! most of its pool reads, or from the pool's pinned baseline, deviates.
//! This catches the drift no recipe names: one node with another kernel
//! parameter, a missing module, a stopped service.
//!
//! For each pool it keeps, per reading (`{Type}.{Subtype}.{key}`), how many
//! members hold each value; a member without the reading counts for
//! "absent". The expected value is the one more than half the members hold.
//! Readings that differ by nature (host names, boot ids, PIDs, timestamps)
//! are never tallied. A pool is judged once it has `min_pool` members and
//! most of the nodes known to be in it have reported since start, so a
//! restarting aggregator does not judge a pool on its first few agents.
//!
//! Pure bookkeeping: it must not lock, store or send anything. The hub
//! tells it what changed; it judges a node's readings into the node's open
//! deviations and the events that opened or resolved, which the hub
//! records and sends.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use aicr::diff::Ignore;
use aicr::error::Result;
use aicr::model::snapshot::{Reading, Snapshot};
use aicr::proto::DriftEvent;
use aicr::proto::drift_event::{Kind, Source};

use crate::state::{Changed, Reported};
use crate::states::State;

/// The tallies are looked up once per reading of every join and change:
/// SipHash's DoS resistance costs a tenth of a join there, and foldhash is
/// still seeded per process. hashbrown's own map, for `entry_ref`.
type FastMap<K, V> = hashbrown::HashMap<K, V, foldhash::fast::RandomState>;

/// The value under `key`, inserted empty if absent, in one lookup. Unlike
/// `entry`, the key is copied only when it is new: these maps are looked up
/// once per reading of every join and change, and almost always hold the
/// key already.
fn entry_mut<'m, V: Default>(map: &'m mut FastMap<String, V>, key: &str) -> &'m mut V {
    map.entry_ref(key).or_default()
}

/// The value that stands for a reading a node does not have.
pub const ABSENT: &str = "(absent)";

/// The pool of nodes without any of the pool labels.
pub const DEFAULT_POOL: &str = "default";

/// Readings that differ between identical nodes, matched against
/// `{Type}.{Subtype}.{key}` (`*` crosses dots and slashes).
pub const BUILT_IN_IGNORE: &[&str] = &[
    "OS.sysctl./proc/sys/kernel/hostname",
    "OS.sysctl./proc/sys/kernel/random/*",
    "OS.sysctl./proc/sys/kernel/ns_last_pid",
    "OS.sysctl./proc/sys/kernel/pty/nr",
    "OS.sysctl./proc/sys/fs/*-nr",
    "OS.sysctl./proc/sys/fs/*-state",
    "OS.sysctl./proc/sys/fs/quota/*",
    "OS.grub.root",
    "SystemD.*PID",
    "SystemD.*Timestamp*",
    "SystemD.*InvocationID",
    "SystemD.*NRestarts",
    "SystemD.*Current",
    "SystemD.*Peak",
    "SystemD.*Bytes",
    "SystemD.*Packets",
    "SystemD.*Operations",
    "SystemD.*NSec",
    "*uuid*",
    "*UUID*",
    "*serial*",
    "*Serial*",
    "*boot_id*",
    "*BootID*",
    "*.hostname",
    "*.bus_id*",
    "*.pci.*",
    "GPU.*temperature*",
    "GPU.*utilization*",
    "GPU.*power.draw*",
    "GPU.*memory.used*",
    "GPU.*memory.free*",
    "GPU.*clocks.*",
];

/// How pools are judged.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Pools with fewer reporting members are not judged by majority.
    pub min_pool: usize,
    ignore: Ignore,
}

impl Settings {
    /// The built-in ignore list plus `extra` patterns.
    pub fn new(min_pool: usize, extra: &[String]) -> Result<Settings> {
        let patterns: Vec<String> = BUILT_IN_IGNORE
            .iter()
            .map(|p| p.to_string())
            .chain(extra.iter().cloned())
            .collect();
        Ok(Settings {
            min_pool: min_pool.max(1),
            ignore: Ignore::new(&patterns)?,
        })
    }

    pub fn ignored(&self, path: &str) -> bool {
        self.ignore.matches(path)
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings::new(3, &[]).expect("the built-in patterns are valid")
    }
}

/// `{Type}.{Subtype}.{key}`.
pub fn path(scope: &str, key: &str) -> String {
    format!("{scope}.{key}")
}

/// A pool's pinned expectations: scope → key → value.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Baseline {
    pub readings: BTreeMap<String, BTreeMap<String, String>>,
    /// "majority" or "snapshot".
    pub source: String,
    pub set_ms: i64,
    pub pool_size: u32,
}

impl Baseline {
    /// Every reading of `snapshot` that is not ignored, with cluster-level
    /// measurements (`K8s`, `NodeTopology`) left out: peers compare what
    /// agents report.
    pub fn from_snapshot(snapshot: &Snapshot, settings: &Settings, now_ms: i64) -> Baseline {
        let mut readings: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for m in &snapshot.measurements {
            if matches!(m.kind.as_str(), "K8s" | "NodeTopology") {
                continue;
            }
            for st in &m.subtypes {
                let scope = format!("{}.{}", m.kind, st.subtype);
                for (k, v) in &st.data {
                    if !settings.ignored(&path(&scope, k)) {
                        readings
                            .entry(scope.clone())
                            .or_default()
                            .insert(k.clone(), v.render());
                    }
                }
            }
        }
        Baseline {
            readings,
            source: "snapshot".into(),
            set_ms: now_ms,
            pool_size: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.readings.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn to_proto(&self, pool: &str) -> aicr::proto::Baseline {
        aicr::proto::Baseline {
            pool: pool.to_string(),
            readings: self
                .readings
                .iter()
                .flat_map(|(scope, keys)| {
                    keys.iter().map(move |(k, v)| (path(scope, k), v.clone()))
                })
                .collect(),
            source: self.source.clone(),
            set_unix_millis: self.set_ms,
            pool_size: self.pool_size,
        }
    }
}

/// What a reading should be on a node of a pool. It borrows the expected
/// value from the tallies: most verdicts find the node agreeing, and an
/// owned copy is made only for a deviation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// The pool is too small, or has not reported enough since start: keep
    /// whatever is open.
    Unjudged,
    /// No value has a majority (or the reading is not in the baseline):
    /// nothing deviates.
    Free,
    Expect(Expected<&'a str>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected<V = String> {
    pub value: V,
    /// Members holding it; 0 for a baseline.
    pub agreeing: u32,
    pub pool_size: u32,
    pub baseline: bool,
}

/// An open deviation on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deviation {
    pub scope: String,
    pub key: String,
    pub pool: String,
    pub expected: Expected,
    pub actual: String,
}

/// Open deviations of one node by reading path.
pub type Deviations = BTreeMap<String, Deviation>;

impl Expected<&str> {
    /// An owned copy, for a deviation to keep. (Not `to_owned`: that would
    /// shadow `ToOwned::to_owned`, which the derived `Clone` provides and
    /// which returns the borrowed kind.)
    fn owned(&self) -> Expected {
        Expected {
            value: self.value.to_string(),
            agreeing: self.agreeing,
            pool_size: self.pool_size,
            baseline: self.baseline,
        }
    }
}

/// Value counts of one reading over a pool's members; the rest are absent.
#[derive(Debug, Default)]
struct Tally {
    values: FastMap<String, u32>,
    /// The sum of `values`: members that have the reading.
    present: u32,
    /// At least the largest count in `values`, exact after each scan. A
    /// reading unique to each node (one that no ignore pattern names) has
    /// as many values as members; without this bound every join would scan
    /// them all, quadratic in the pool's size.
    top: u32,
    /// The majority value last computed, to notice when it moves.
    majority: Option<String>,
}

impl Tally {
    /// Recompute the majority over `n` members (none when the pool is not
    /// `judged`); whether it moved.
    fn refresh(&mut self, n: u32, judged: bool) -> bool {
        let now = if !judged {
            None
        } else if n.saturating_sub(self.present) * 2 > n {
            Some(ABSENT)
        } else if self.top * 2 <= n {
            None
        } else {
            self.top = self.values.values().copied().max().unwrap_or(0);
            self.values
                .iter()
                .find(|(_, c)| **c * 2 > n)
                .map(|(v, _)| v.as_str())
        };
        if now == self.majority.as_deref() {
            return false;
        }
        self.majority = now.map(str::to_string);
        true
    }
}

/// A reading as node state stores it: scope and key.
pub type ReadingId = (String, String);

#[derive(Debug, Default)]
struct Pool {
    /// Nodes that have reported since start and are tallied.
    members: BTreeSet<String>,
    /// Nodes known to be in the pool, reported or not.
    known: usize,
    /// scope → key → tally.
    tallies: FastMap<String, FastMap<String, Tally>>,
    baseline: Option<Arc<Baseline>>,
}

impl Pool {
    fn judged(&self, min_pool: usize) -> bool {
        let n = self.members.len();
        n >= min_pool && n * 2 > self.known
    }

    /// Recompute the majority of every tallied reading; returns those that
    /// moved.
    fn refresh_all(&mut self, min_pool: usize) -> Vec<ReadingId> {
        let mut moved = Vec::new();
        let judged = self.judged(min_pool);
        let n = self.members.len() as u32;
        for (scope, keys) in &mut self.tallies {
            for (key, t) in keys.iter_mut() {
                if t.refresh(n, judged) {
                    moved.push((scope.clone(), key.clone()));
                }
            }
        }
        moved
    }

    /// The tallies of `scope`, created empty if need be.
    fn scope_mut(&mut self, scope: &str) -> &mut FastMap<String, Tally> {
        entry_mut(&mut self.tallies, scope)
    }

    /// How many readings of `scope` a member is expected to have: those of
    /// the baseline, or those whose majority value is not absence.
    fn expected_present(&self, scope: &str) -> usize {
        match &self.baseline {
            Some(b) => b.readings.get(scope).map_or(0, BTreeMap::len),
            None => self.tallies.get(scope).map_or(0, |keys| {
                keys.values()
                    .filter(|t| t.majority.as_deref().is_some_and(|v| v != ABSENT))
                    .count()
            }),
        }
    }

    /// Readings of `scope` expected present (see
    /// [`Pool::expected_present`]) that `state` lacks.
    fn missing_in(&self, scope: &str, state: Option<&State>, out: &mut Vec<ReadingId>) {
        let lacks = |k: &str| state.is_none_or(|s| s.get(k).is_none());
        let mut push = |k: &String| {
            if lacks(k) {
                out.push((scope.to_string(), k.clone()));
            }
        };
        match &self.baseline {
            Some(b) => b
                .readings
                .get(scope)
                .into_iter()
                .flatten()
                .for_each(|(k, _)| push(k)),
            None => {
                for (k, t) in self.tallies.get(scope).into_iter().flatten() {
                    if t.majority.as_deref().is_some_and(|v| v != ABSENT) {
                        push(k);
                    }
                }
            }
        }
    }

    fn drop_scope_if_empty(&mut self, scope: &str) {
        if self.tallies.get(scope).is_some_and(FastMap::is_empty) {
            self.tallies.remove(scope);
        }
    }
}

/// What one pool expects of the readings of one scope: the lookups by pool
/// and scope done once for all the keys of a subtype.
struct ScopeView<'a> {
    settings: &'a Settings,
    scope: &'a str,
    ignored: Option<&'a FastMap<String, bool>>,
    pool: &'a Pool,
    tallies: Option<&'a FastMap<String, Tally>>,
    judged: bool,
}

impl<'a> ScopeView<'a> {
    fn verdict(&self, key: &str) -> Verdict<'a> {
        if ignored_in(self.ignored, self.settings, self.scope, key) {
            return Verdict::Free;
        }
        let n = self.pool.members.len() as u32;
        if let Some(b) = &self.pool.baseline {
            return match b.readings.get(self.scope).and_then(|k| k.get(key)) {
                Some(v) => Verdict::Expect(Expected {
                    value: v.as_str(),
                    agreeing: 0,
                    pool_size: n,
                    baseline: true,
                }),
                None => Verdict::Free,
            };
        }
        if !self.judged {
            return Verdict::Unjudged;
        }
        let Some(tally) = self.tallies.and_then(|t| t.get(key)) else {
            // Nobody has it: everyone agrees on its absence.
            return Verdict::Free;
        };
        match tally.majority.as_deref() {
            Some(v) => {
                let agreeing = if v == ABSENT {
                    n.saturating_sub(tally.present)
                } else {
                    tally.values.get(v).copied().unwrap_or(0)
                };
                Verdict::Expect(Expected {
                    value: v,
                    agreeing,
                    pool_size: n,
                    baseline: false,
                })
            }
            None => Verdict::Free,
        }
    }
}

fn value(r: &Reading) -> Cow<'_, str> {
    match r {
        Reading::Str(s) => Cow::Borrowed(s),
        other => Cow::Owned(other.render()),
    }
}

/// What the hub must judge again after a change: readings of the node
/// that changed, and readings whose expectation moved for the whole pool.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rejudge {
    /// Every reading of the node (it joined the pool).
    pub node_all: bool,
    pub node: Vec<ReadingId>,
    pub pool: Vec<ReadingId>,
    /// Every reading of every member (the pool's judging or baseline
    /// changed as a whole).
    pub everything: bool,
}

/// Whether a path is ignored, by scope and key: the glob set is asked
/// once per distinct reading, when it is first tallied, not once per node
/// and change.
#[derive(Debug, Default)]
struct IgnoreCache(FastMap<String, FastMap<String, bool>>);

impl IgnoreCache {
    fn scope(&self, scope: &str) -> Option<&FastMap<String, bool>> {
        self.0.get(scope)
    }

    fn scope_mut(&mut self, scope: &str) -> &mut FastMap<String, bool> {
        entry_mut(&mut self.0, scope)
    }
}

/// Whether `scope.key` is ignored, from the scope's cache where it has
/// been learned.
fn ignored_in(
    cache: Option<&FastMap<String, bool>>,
    settings: &Settings,
    scope: &str,
    key: &str,
) -> bool {
    match cache.and_then(|m| m.get(key)) {
        Some(b) => *b,
        None => settings.ignored(&path(scope, key)),
    }
}

/// Whether `scope.key` is ignored, remembered in the scope's cache.
fn learn_ignored(
    cache: &mut FastMap<String, bool>,
    settings: &Settings,
    scope: &str,
    key: &str,
) -> bool {
    *cache
        .entry_ref(key)
        .or_insert_with(|| settings.ignored(&path(scope, key)))
}

/// Every pool's tallies and baseline.
#[derive(Debug, Default)]
pub struct Peers {
    settings: Settings,
    pools: FastMap<String, Pool>,
    ignored: IgnoreCache,
}

impl Peers {
    pub fn new(settings: Settings) -> Peers {
        Peers {
            settings,
            ..Default::default()
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn pool_mut(&mut self, pool: &str) -> &mut Pool {
        entry_mut(&mut self.pools, pool)
    }

    /// A node is known to be in `pool` (restored, or connected and not yet
    /// reported).
    pub fn know(&mut self, pool: &str) {
        self.pool_mut(pool).known += 1;
    }

    /// A node known to be in `pool` is gone.
    pub fn unknow(&mut self, pool: &str) {
        if let Some(p) = self.pools.get_mut(pool) {
            p.known = p.known.saturating_sub(1);
            if p.known == 0 && p.members.is_empty() && p.baseline.is_none() {
                self.pools.remove(pool);
            }
        }
    }

    pub fn members(&self, pool: &str) -> Vec<String> {
        self.pools
            .get(pool)
            .map(|p| p.members.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn pool_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.pools.keys().cloned().collect();
        names.sort();
        names
    }

    /// The pool (created if need be), borrowed apart from the settings and
    /// the ignore cache its tallies are kept with.
    fn tally_parts(&mut self, pool: &str) -> (&Settings, &mut Pool, &mut IgnoreCache) {
        self.pool_mut(pool);
        let Peers {
            settings,
            pools,
            ignored,
        } = self;
        let p = pools.get_mut(pool).expect("the pool exists");
        (settings, p, ignored)
    }

    /// Count (or, with `delta` -1, uncount) every reading of `state`.
    fn tally(&mut self, pool: &str, scope: &str, state: &State, delta: i32) {
        let (settings, p, ignored) = self.tally_parts(pool);
        let ignored = ignored.scope_mut(scope);
        let keys = p.scope_mut(scope);
        for (k, v) in state.readings() {
            if !learn_ignored(ignored, settings, scope, k) {
                bump(keys, k, &value(v), delta);
            }
        }
        p.drop_scope_if_empty(scope);
    }

    /// A node's readings changed. `first` is true on its first report in
    /// this pool since start (it becomes a member); `changes` are what
    /// [`crate::state::NodeState::apply_full`] or `apply_update` returned.
    pub fn changed(
        &mut self,
        pool: &str,
        node: &str,
        first: bool,
        changes: &[Changed],
        readings: &BTreeMap<String, Reported>,
    ) -> Rejudge {
        let min_pool = self.settings.min_pool;
        if first {
            for (scope, r) in readings {
                self.tally(pool, scope, &r.state, 1);
            }
            let p = self.pool_mut(pool);
            let was_judged = p.judged(min_pool);
            p.members.insert(node.to_string());
            // One more member moves the absent count of every reading.
            let moved = p.refresh_all(min_pool);
            return Rejudge {
                node_all: true,
                node: Vec::new(),
                everything: was_judged != p.judged(min_pool),
                pool: moved,
            };
        }
        let mut touched: Vec<ReadingId> = Vec::new();
        let (settings, p, ignored) = self.tally_parts(pool);
        for c in changes {
            let after = readings.get(&c.scope).map(|r| &*r.state);
            let before = c.before.as_deref();
            let ignored = ignored.scope_mut(&c.scope);
            let keys = p.scope_mut(&c.scope);
            for k in State::changed_keys(before, after) {
                if learn_ignored(ignored, settings, &c.scope, k) {
                    continue;
                }
                if let Some(v) = before.and_then(|s| s.get(k)) {
                    bump(keys, k, &value(v), -1);
                }
                if let Some(v) = after.and_then(|s| s.get(k)) {
                    bump(keys, k, &value(v), 1);
                }
                touched.push((c.scope.clone(), k.to_string()));
            }
            p.drop_scope_if_empty(&c.scope);
        }
        let n = p.members.len() as u32;
        let judged = p.judged(min_pool);
        let mut moved = Vec::new();
        for (scope, key) in &touched {
            if let Some(t) = p.tallies.get_mut(scope).and_then(|m| m.get_mut(key))
                && t.refresh(n, judged)
            {
                moved.push((scope.clone(), key.clone()));
            }
        }
        Rejudge {
            node_all: false,
            node: touched,
            pool: moved,
            everything: false,
        }
    }

    /// A node leaves `pool` (forgotten, or moved to another pool): its
    /// readings no longer count.
    pub fn leave(
        &mut self,
        pool: &str,
        node: &str,
        readings: &BTreeMap<String, Reported>,
    ) -> Rejudge {
        let min_pool = self.settings.min_pool;
        let member = self
            .pools
            .get_mut(pool)
            .is_some_and(|p| p.members.remove(node));
        if !member {
            return Rejudge::default();
        }
        for (scope, r) in readings {
            self.tally(pool, scope, &r.state, -1);
        }
        let moved = self
            .pools
            .get_mut(pool)
            .expect("the pool exists")
            .refresh_all(min_pool);
        Rejudge {
            pool: moved,
            ..Rejudge::default()
        }
    }

    /// What `pool` expects of the readings of `scope`; `None` for a pool
    /// it does not know.
    fn view<'a>(&'a self, pool: &str, scope: &'a str) -> Option<ScopeView<'a>> {
        Some(self.scope_view(self.pools.get(pool)?, scope))
    }

    fn scope_view<'a>(&'a self, p: &'a Pool, scope: &'a str) -> ScopeView<'a> {
        ScopeView {
            settings: &self.settings,
            scope,
            ignored: self.ignored.scope(scope),
            pool: p,
            tallies: p.tallies.get(scope),
            judged: p.judged(self.settings.min_pool),
        }
    }

    pub fn verdict<'a>(&'a self, pool: &str, scope: &'a str, key: &str) -> Verdict<'a> {
        match self.view(pool, scope) {
            Some(v) => v.verdict(key),
            None if ignored_in(self.ignored.scope(scope), &self.settings, scope, key) => {
                Verdict::Free
            }
            None => Verdict::Unjudged,
        }
    }

    /// Judge every reading a node of `pool` may deviate on: what it
    /// reports, what the pool expects that it lacks, and what is open on
    /// it. Walks the node's states rather than listing their keys: this
    /// runs once per node at start-up and whenever its whole pool is
    /// judged again.
    pub fn judge_node(
        &self,
        pool: &str,
        node: &str,
        readings: &BTreeMap<String, Reported>,
        open: &mut Deviations,
        now_ms: i64,
        out: &mut Vec<DriftEvent>,
    ) {
        let mut rest = Vec::new();
        if let Some(p) = self.pools.get(pool) {
            // Only a judged pool or a baseline expects anything.
            let expecting = p.baseline.is_some() || p.judged(self.settings.min_pool);
            for (scope, r) in readings {
                let view = self.scope_view(p, scope);
                // Readings the pool expects present that the node has: when
                // they are all the pool expects, none is missing, and the
                // node's keys need no lookup.
                let mut covered = 0;
                for (key, actual) in r.state.readings() {
                    let verdict = view.verdict(key);
                    if let Verdict::Expect(e) = &verdict
                        && (e.baseline || e.value != ABSENT)
                    {
                        covered += 1;
                    }
                    out.extend(judge(
                        node,
                        pool,
                        (scope, key),
                        &verdict,
                        Some(actual),
                        open,
                        now_ms,
                    ));
                }
                if expecting && covered != p.expected_present(scope) {
                    p.missing_in(scope, Some(&r.state), &mut rest);
                }
            }
            if expecting {
                // Scopes the pool expects that the node reports nothing of.
                let scopes: Vec<&String> = match &p.baseline {
                    Some(b) => b.readings.keys().collect(),
                    None => p.tallies.keys().collect(),
                };
                for scope in scopes {
                    if !readings.contains_key(scope) {
                        p.missing_in(scope, None, &mut rest);
                    }
                }
            }
        }
        // An open deviation is judged again whatever else holds, so one on
        // a reading that became ignored or left the baseline resolves.
        rest.extend(open.values().map(|d| (d.scope.clone(), d.key.clone())));
        self.judge_readings(pool, node, &rest, readings, open, now_ms, out);
    }

    /// Judge readings `which` of a node of `pool`.
    #[allow(clippy::too_many_arguments)]
    pub fn judge_readings(
        &self,
        pool: &str,
        node: &str,
        which: &[ReadingId],
        readings: &BTreeMap<String, Reported>,
        open: &mut Deviations,
        now_ms: i64,
        out: &mut Vec<DriftEvent>,
    ) {
        for (scope, key) in which {
            let verdict = self.verdict(pool, scope, key);
            let actual = readings.get(scope).and_then(|r| r.state.get(key));
            out.extend(judge(
                node,
                pool,
                (scope, key),
                &verdict,
                actual,
                open,
                now_ms,
            ));
        }
    }

    pub fn baseline(&self, pool: &str) -> Option<Arc<Baseline>> {
        self.pools.get(pool).and_then(|p| p.baseline.clone())
    }

    pub fn baselines(&self) -> Vec<(String, Arc<Baseline>)> {
        let mut out: Vec<(String, Arc<Baseline>)> = self
            .pools
            .iter()
            .filter_map(|(n, p)| p.baseline.clone().map(|b| (n.clone(), b)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Pin `pool` to `baseline` (`None`: judge it by majority again).
    pub fn set_baseline(&mut self, pool: &str, baseline: Option<Baseline>) {
        self.pool_mut(pool).baseline = baseline.map(Arc::new);
    }

    /// The pool's majority as a baseline: every reading with a present
    /// majority value. `None` when the pool is not judged yet.
    pub fn majority_baseline(&self, pool: &str, now_ms: i64) -> Option<Baseline> {
        let p = self.pools.get(pool)?;
        if !p.judged(self.settings.min_pool) {
            return None;
        }
        let mut readings: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (scope, keys) in &p.tallies {
            for (k, t) in keys {
                if let Some(v) = t.majority.as_deref().filter(|v| *v != ABSENT) {
                    readings
                        .entry(scope.clone())
                        .or_default()
                        .insert(k.clone(), v.to_string());
                }
            }
        }
        Some(Baseline {
            readings,
            source: "majority".into(),
            set_ms: now_ms,
            pool_size: p.members.len() as u32,
        })
    }

    /// Reporting members of `pool`.
    pub fn size(&self, pool: &str) -> usize {
        self.pools.get(pool).map_or(0, |p| p.members.len())
    }
}

/// Count (`delta` 1) or uncount (-1) value `v` of reading `key`; a tally
/// left empty and without a majority to remember goes.
fn bump(keys: &mut FastMap<String, Tally>, key: &str, v: &str, delta: i32) {
    let t = entry_mut(keys, key);
    if delta > 0 {
        let c = match t.values.get_mut(v) {
            Some(c) => {
                *c += 1;
                *c
            }
            None => {
                t.values.insert(v.to_string(), 1);
                1
            }
        };
        t.present += 1;
        t.top = t.top.max(c);
    } else if let Some(c) = t.values.get_mut(v) {
        *c -= 1;
        t.present -= 1;
        if *c == 0 {
            t.values.remove(v);
        }
    }
    if t.values.is_empty() && t.majority.is_none() {
        keys.remove(key);
    }
}

/// Compare a node's reading with its verdict and say what happened, as
/// `evaluator::diff` does for constraints: an opened deviation, a resolved
/// one, or nothing (an open one whose values moved is updated in place).
fn judge(
    node: &str,
    pool: &str,
    (scope, key): (&str, &str),
    verdict: &Verdict,
    actual: Option<&Reading>,
    open: &mut Deviations,
    now_ms: i64,
) -> Option<DriftEvent> {
    let actual = actual.map_or(Cow::Borrowed(ABSENT), value);
    let expected = match verdict {
        Verdict::Unjudged => return None,
        Verdict::Free => {
            let why = "the pool no longer agrees on a value";
            return resolve(node, (scope, key), actual, open, why, now_ms);
        }
        Verdict::Expect(e) if e.value == actual => {
            return resolve(
                node,
                (scope, key),
                actual,
                open,
                "matches its peers again",
                now_ms,
            );
        }
        Verdict::Expect(e) => e,
    };
    let reading = path(scope, key);
    let current = Deviation {
        scope: scope.to_string(),
        key: key.to_string(),
        pool: pool.to_string(),
        expected: expected.owned(),
        actual: actual.into_owned(),
    };
    match open.get_mut(&reading) {
        Some(existing) => {
            *existing = current;
            None
        }
        None => {
            let reason = reason(&current);
            let ev = event(Kind::Opened, node, &reading, &current, reason, now_ms);
            open.insert(reading, current);
            Some(ev)
        }
    }
}

/// Close the deviation open on a reading, if any.
fn resolve(
    node: &str,
    (scope, key): (&str, &str),
    actual: Cow<'_, str>,
    open: &mut Deviations,
    why: &str,
    now_ms: i64,
) -> Option<DriftEvent> {
    // Most readings of most nodes: nothing open, nothing to build.
    if open.is_empty() {
        return None;
    }
    let reading = path(scope, key);
    let was = open.remove(&reading)?;
    let now = Deviation {
        actual: actual.into_owned(),
        ..was
    };
    Some(event(
        Kind::Resolved,
        node,
        &reading,
        &now,
        why.into(),
        now_ms,
    ))
}

fn reason(d: &Deviation) -> String {
    if d.expected.baseline {
        format!(
            "baseline of pool {} has {}, the node has {}",
            d.pool, d.expected.value, d.actual
        )
    } else {
        format!(
            "{} of {} nodes in pool {} have {}, the node has {}",
            d.expected.agreeing, d.expected.pool_size, d.pool, d.expected.value, d.actual
        )
    }
}

/// The event for a deviation that opened or resolved.
pub fn event(
    kind: Kind,
    node: &str,
    reading: &str,
    d: &Deviation,
    reason: String,
    now_ms: i64,
) -> DriftEvent {
    DriftEvent {
        id: 0,
        kind: kind as i32,
        node_name: node.to_string(),
        constraint: reading.to_string(),
        expected: d.expected.value.clone(),
        actual: d.actual.clone(),
        severity: "warning".into(),
        reason,
        unix_millis: now_ms,
        source: Source::Peers as i32,
        pool: d.pool.clone(),
        agreeing: d.expected.agreeing,
        pool_size: d.expected.pool_size,
        baseline: d.expected.baseline,
        scope: d.scope.clone(),
    }
}

/// The open deviation an event recorded, for a restart to take up again.
pub fn from_event(ev: &DriftEvent) -> Option<(String, Deviation)> {
    let key = ev.constraint.strip_prefix(&ev.scope)?.strip_prefix('.')?;
    Some((
        ev.constraint.clone(),
        Deviation {
            scope: ev.scope.clone(),
            key: key.to_string(),
            pool: ev.pool.clone(),
            expected: Expected {
                value: ev.expected.clone(),
                agreeing: ev.agreeing,
                pool_size: ev.pool_size,
                baseline: ev.baseline,
            },
            actual: ev.actual.clone(),
        },
    ))
}

/// Resolve every open deviation of a node (deleted, or moved pools).
pub fn resolve_all(
    node: &str,
    open: &mut Deviations,
    reason: &str,
    now_ms: i64,
) -> Vec<DriftEvent> {
    std::mem::take(open)
        .into_iter()
        .map(|(reading, d)| event(Kind::Resolved, node, &reading, &d, reason.into(), now_ms))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::states::{States, content_key};
    use aicr::model::snapshot::Subtype;

    const POOL: &str = "p5/H100";
    const SWAP: (&str, &str) = ("OS.sysctl", "/proc/sys/vm/swappiness");

    /// A node's readings: one sysctl subtype from `pairs`.
    fn readings(states: &States, host: &str, pairs: &[(&str, &str)]) -> BTreeMap<String, Reported> {
        let mut st = Subtype::new("sysctl").with("/proc/sys/kernel/hostname", host);
        for (k, v) in pairs {
            st = st.with(*k, *v);
        }
        let key = content_key("OS", "sysctl", &serde_json::to_vec(&st).unwrap());
        let state = states.intern("OS.sysctl", key, st);
        BTreeMap::from([(
            "OS.sysctl".to_string(),
            Reported {
                kind: "OS".into(),
                name: "sysctl".into(),
                state,
            },
        )])
    }

    fn all(r: &BTreeMap<String, Reported>) -> Vec<Changed> {
        r.keys()
            .map(|s| Changed {
                scope: s.clone(),
                before: None,
            })
            .collect()
    }

    /// A pool of nodes, each joined with `swappiness`.
    struct Fleet {
        states: States,
        peers: Peers,
        nodes: BTreeMap<String, BTreeMap<String, Reported>>,
        open: BTreeMap<String, Deviations>,
    }

    impl Fleet {
        fn new(values: &[&str]) -> Fleet {
            let mut f = Fleet {
                states: States::default(),
                peers: Peers::new(Settings::default()),
                nodes: BTreeMap::new(),
                open: BTreeMap::new(),
            };
            for (i, v) in values.iter().enumerate() {
                let name = format!("n{i}");
                f.peers.know(POOL);
                let r = readings(&f.states, &name, &[(SWAP.1, v)]);
                f.peers.changed(POOL, &name, true, &all(&r), &r);
                f.nodes.insert(name.clone(), r);
                f.open.insert(name, Deviations::new());
            }
            f
        }

        fn set(&mut self, node: &str, pairs: &[(&str, &str)]) -> Rejudge {
            let r = readings(&self.states, node, pairs);
            let before = self.nodes[node]["OS.sysctl"].state.clone();
            let changes = [Changed {
                scope: "OS.sysctl".into(),
                before: Some(before),
            }];
            let out = self.peers.changed(POOL, node, false, &changes, &r);
            self.nodes.insert(node.to_string(), r);
            out
        }

        /// Judge every node on every reading; the events, as
        /// `kind node value`.
        fn judge_all(&mut self) -> Vec<String> {
            let mut events = Vec::new();
            for (name, r) in &self.nodes {
                let open = self.open.get_mut(name).unwrap();
                let mut out = Vec::new();
                self.peers.judge_node(POOL, name, r, open, 1, &mut out);
                for ev in out {
                    let kind = Kind::try_from(ev.kind).unwrap().as_str_name();
                    events.push(format!("{kind} {name} {} {}", ev.constraint, ev.actual));
                }
            }
            events
        }
    }

    #[test]
    fn the_odd_node_out_deviates_and_comes_back() {
        let mut f = Fleet::new(&["60", "60", "60"]);
        assert!(
            f.judge_all().is_empty(),
            "identical nodes, differing host names"
        );
        let r = f.set("n1", &[(SWAP.1, "10")]);
        assert_eq!(r.node, [(SWAP.0.to_string(), SWAP.1.to_string())]);
        assert!(r.pool.is_empty(), "the majority stays 60");
        assert_eq!(
            f.peers.verdict(POOL, SWAP.0, SWAP.1),
            Verdict::Expect(Expected {
                value: "60",
                agreeing: 2,
                pool_size: 3,
                baseline: false
            })
        );
        assert_eq!(
            f.judge_all(),
            ["OPENED n1 OS.sysctl./proc/sys/vm/swappiness 10"]
        );
        let d = &f.open["n1"]["OS.sysctl./proc/sys/vm/swappiness"];
        assert_eq!(
            reason(d),
            "2 of 3 nodes in pool p5/H100 have 60, the node has 10"
        );
        f.set("n1", &[(SWAP.1, "60")]);
        assert_eq!(
            f.judge_all(),
            ["RESOLVED n1 OS.sysctl./proc/sys/vm/swappiness 60"]
        );
    }

    #[test]
    fn absence_is_a_value_like_any_other() {
        let mut f = Fleet::new(&["60", "60", "60"]);
        f.set("n0", &[]);
        f.set("n2", &[(SWAP.1, "60"), ("/proc/sys/vm/extra", "1")]);
        let mut evs = f.judge_all();
        evs.sort();
        assert_eq!(
            evs,
            [
                "OPENED n0 OS.sysctl./proc/sys/vm/swappiness (absent)",
                "OPENED n2 OS.sysctl./proc/sys/vm/extra 1",
            ]
        );
        assert_eq!(
            f.open["n2"]["OS.sysctl./proc/sys/vm/extra"].expected.value,
            ABSENT
        );
    }

    #[test]
    fn majorities_follow_counts_through_a_stale_bound() {
        let mut keys: FastMap<String, Tally> = FastMap::default();
        let k = "k";
        // Five members, each with its own value: no majority, no scan.
        for v in ["a", "b", "c", "d", "e"] {
            bump(&mut keys, k, v, 1);
        }
        let t = keys.get_mut(k).unwrap();
        assert!(!t.refresh(5, true));
        assert_eq!(t.majority, None);
        // Three move to "x": the majority appears.
        for v in ["a", "b", "c"] {
            bump(&mut keys, k, v, -1);
            bump(&mut keys, k, "x", 1);
        }
        let t = keys.get_mut(k).unwrap();
        assert!(t.refresh(5, true));
        assert_eq!(t.majority.as_deref(), Some("x"));
        // Two leave "x": the bound (3) is stale, the scan finds no majority
        // and tightens it.
        for v in ["f", "g"] {
            bump(&mut keys, k, "x", -1);
            bump(&mut keys, k, v, 1);
        }
        let t = keys.get_mut(k).unwrap();
        assert!(t.refresh(5, true), "the majority is gone");
        assert_eq!((t.majority.as_deref(), t.top), (None, 1));
        // Nine more members without the reading: absence is the majority.
        assert!(t.refresh(14, true));
        assert_eq!(t.majority.as_deref(), Some(ABSENT));
        assert_eq!(t.present, 5);
        assert!(t.refresh(14, false), "an unjudged pool expects nothing");
        assert_eq!(t.majority, None);
    }

    #[test]
    fn readings_a_node_lacks_deviate_by_majority_and_by_baseline() {
        let mut f = Fleet::new(&["60", "60", "60"]);
        // n0 stops reporting the whole subtype.
        let before = f.nodes["n0"]["OS.sysctl"].state.clone();
        let changes = [Changed {
            scope: "OS.sysctl".into(),
            before: Some(before),
        }];
        f.peers
            .changed(POOL, "n0", false, &changes, &BTreeMap::new());
        f.nodes.insert("n0".into(), BTreeMap::new());
        assert_eq!(
            f.judge_all(),
            ["OPENED n0 OS.sysctl./proc/sys/vm/swappiness (absent)"]
        );
        // Pinned, n1 loses the reading but keeps the subtype; n0's
        // deviation stays open without a second event.
        let b = f.peers.majority_baseline(POOL, 5).unwrap();
        f.peers.set_baseline(POOL, Some(b));
        f.set("n1", &[]);
        assert_eq!(
            f.judge_all(),
            ["OPENED n1 OS.sysctl./proc/sys/vm/swappiness (absent)"]
        );
        assert!(f.open["n0"].values().all(|d| d.expected.baseline));
    }

    #[test]
    fn small_pools_and_split_pools_are_not_judged() {
        let mut f = Fleet::new(&["60", "10"]);
        assert_eq!(f.peers.verdict(POOL, SWAP.0, SWAP.1), Verdict::Unjudged);
        assert!(f.judge_all().is_empty());
        let mut f = Fleet::new(&["60", "10", "30", "30"]);
        assert_eq!(
            f.peers.verdict(POOL, SWAP.0, SWAP.1),
            Verdict::Free,
            "2 of 4 is no majority"
        );
        assert!(f.judge_all().is_empty());
    }

    #[test]
    fn a_restart_waits_for_most_known_members() {
        let mut f = Fleet::new(&["60", "10", "10"]);
        for _ in 0..4 {
            f.peers.know(POOL);
        }
        assert_eq!(
            f.peers.verdict(POOL, SWAP.0, SWAP.1),
            Verdict::Unjudged,
            "3 of 7 known nodes have reported"
        );
    }

    #[test]
    fn a_moved_majority_rejudges_the_pool() {
        let mut f = Fleet::new(&["60", "60", "10"]);
        assert_eq!(
            f.judge_all(),
            ["OPENED n2 OS.sysctl./proc/sys/vm/swappiness 10"]
        );
        let r = f.set("n0", &[(SWAP.1, "10")]);
        assert_eq!(r.pool.len(), 1, "the majority moved to 10");
        let mut evs = f.judge_all();
        evs.sort();
        assert_eq!(
            evs,
            [
                "OPENED n1 OS.sysctl./proc/sys/vm/swappiness 60",
                "RESOLVED n2 OS.sysctl./proc/sys/vm/swappiness 10",
            ]
        );
    }

    #[test]
    fn a_baseline_catches_a_change_on_every_node() {
        let mut f = Fleet::new(&["60", "60", "60"]);
        let b = f.peers.majority_baseline(POOL, 5).unwrap();
        assert_eq!(b.len(), 1, "host names are not pinned");
        assert_eq!(b.readings["OS.sysctl"][SWAP.1], "60");
        f.peers.set_baseline(POOL, Some(b));
        for n in ["n0", "n1", "n2"] {
            f.set(n, &[(SWAP.1, "10")]);
        }
        assert_eq!(f.judge_all().len(), 3, "all three differ from the baseline");
        assert!(f.open["n0"].values().all(|d| d.expected.baseline));
        f.peers.set_baseline(POOL, None);
        assert_eq!(f.judge_all().len(), 3, "by majority again, all agree");
        assert!(f.open.values().all(BTreeMap::is_empty));
    }

    #[test]
    fn a_leaving_node_no_longer_counts() {
        let mut f = Fleet::new(&["60", "60", "10", "10", "10"]);
        let r = f.nodes["n2"].clone();
        f.peers.leave(POOL, "n2", &r);
        f.peers.unknow(POOL);
        f.nodes.remove("n2");
        let r = f.nodes["n3"].clone();
        let moved = f.peers.leave(POOL, "n3", &r);
        f.peers.unknow(POOL);
        assert!(
            moved.pool.iter().any(|(_, k)| k == SWAP.1),
            "10 lost its majority"
        );
        assert_eq!(f.peers.size(POOL), 3);
    }

    #[test]
    fn baselines_from_snapshots_skip_cluster_readings_and_ignored_keys() {
        let snap: Snapshot = serde_json::from_value(serde_json::json!({
            "kind": "Snapshot",
            "apiVersion": "aicr.nvidia.com/v1alpha1",
            "measurements": [
                {"type": "K8s", "subtypes": [{"subtype": "server", "data": {"version": "v1.33"}}]},
                {"type": "OS", "subtypes": [{"subtype": "sysctl", "data": {
                    "/proc/sys/vm/swappiness": "60",
                    "/proc/sys/kernel/hostname": "gpu-1",
                    "/proc/sys/kernel/random/boot_id": "x"
                }}]}
            ]
        }))
        .unwrap();
        let b = Baseline::from_snapshot(&snap, &Settings::default(), 1);
        assert_eq!(b.len(), 1);
        assert_eq!(
            b.to_proto("p").readings["OS.sysctl./proc/sys/vm/swappiness"],
            "60"
        );
        let custom = Settings::new(3, &["OS.sysctl./proc/sys/vm/*".into()]).unwrap();
        assert!(Baseline::from_snapshot(&snap, &custom, 1).is_empty());
        assert!(Settings::new(3, &["a{".into()]).is_err());
    }

    #[test]
    fn restored_deviations_keep_their_reading() {
        let d = Deviation {
            scope: "SystemD.containerd.service".into(),
            key: "ActiveState".into(),
            pool: POOL.into(),
            expected: Expected {
                value: "active".into(),
                agreeing: 9,
                pool_size: 10,
                baseline: false,
            },
            actual: "failed".into(),
        };
        let ev = event(
            Kind::Opened,
            "n1",
            "SystemD.containerd.service.ActiveState",
            &d,
            String::new(),
            1,
        );
        assert_eq!(
            from_event(&ev),
            Some(("SystemD.containerd.service.ActiveState".into(), d))
        );
    }
}
