//! Durable history in an embedded redb database under `--state-dir`: every
//! drift event, the violations and deviations open now, the nodes seen,
//! the recipe set through the API and the pools' pinned baselines. A commit is fsync'ed before its events are announced,
//! so a restart loses nothing a watcher was shown.
//!
//! Owns the on-disk layout only. It must not decide what an event means:
//! the recorder hands it finished records, in order, from one thread.

use std::path::Path;
use std::sync::{PoisonError, RwLock};

use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use aicr::error::{Error, ErrorKind, Result};
use aicr::proto::DriftEvent;
use aicr::proto::drift_event::{Kind, Source};

const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// `node \x1f constraint` → the event that opened it; the stale marker of a
/// node has an empty constraint, a peer deviation is `node \x1f peers \x1f
/// reading` (a reading may be named like a constraint).
const OPEN: TableDefinition<&str, &[u8]> = TableDefinition::new("open");
/// pool → its baseline, JSON.
const BASELINES: TableDefinition<&str, &[u8]> = TableDefinition::new("baselines");
const NODES: TableDefinition<&str, &[u8]> = TableDefinition::new("nodes");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

const RECIPE_KEY: &str = "recipe";
const FILE_NAME: &str = "aggregator.redb";

/// What the store remembers of a node between runs; whether it is stale
/// is its open stale marker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRecord {
    pub agent_version: String,
    pub last_seen_ms: i64,
}

/// One thing to write.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A drift event; the store assigns its id.
    Event(DriftEvent),
    Node(String, NodeRecord),
    /// The node left the cluster: a restart must not bring it back.
    ForgetNode(String),
    Recipe(Vec<u8>),
    /// A pool's baseline as JSON; `None` clears it.
    Baseline(String, Option<Vec<u8>>),
}

pub struct Store {
    /// `None` once closed: shutdown releases the file lock even while stray
    /// tasks still hold the store.
    db: RwLock<Option<Database>>,
    history_limit: u64,
}

fn db_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Internal, format!("state store: {what}: {e}"))
}

/// What an event is about on its node: a constraint, or (kept apart from
/// any constraint of the same name) a reading its peers judged. Open
/// violations are keyed by it here, and the sinks key their series by it.
pub fn subject(ev: &DriftEvent) -> String {
    if ev.source == Source::Peers as i32 {
        format!("peers\u{1f}{}", ev.constraint)
    } else {
        ev.constraint.clone()
    }
}

fn open_key(ev: &DriftEvent) -> String {
    format!("{}\u{1f}{}", ev.node_name, subject(ev))
}

fn decode(bytes: &[u8]) -> Result<DriftEvent> {
    DriftEvent::decode(bytes).map_err(|e| db_err("corrupt event", e))
}

impl Store {
    /// The database in `dir` (created if missing), or an in-memory one when
    /// no directory is given.
    pub fn open(dir: Option<&Path>, history_limit: u64) -> Result<Store> {
        let db = match dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| {
                    Error::new(
                        ErrorKind::InvalidRequest,
                        format!("--state-dir {}: {e}", dir.display()),
                    )
                })?;
                Database::create(dir.join(FILE_NAME)).map_err(|e| {
                    Error::new(
                        ErrorKind::Unavailable,
                        format!(
                            "cannot open state store in {}: {e} (is another aggregator using this --state-dir?)",
                            dir.display()
                        ),
                    )
                })?
            }
            None => Database::builder()
                .create_with_backend(redb::backends::InMemoryBackend::new())
                .map_err(|e| db_err("in-memory database", e))?,
        };
        let txn = db.begin_write().map_err(|e| db_err("begin", e))?;
        {
            txn.open_table(EVENTS).map_err(|e| db_err("events", e))?;
            txn.open_table(OPEN).map_err(|e| db_err("open", e))?;
            txn.open_table(NODES).map_err(|e| db_err("nodes", e))?;
            txn.open_table(META).map_err(|e| db_err("meta", e))?;
            txn.open_table(BASELINES)
                .map_err(|e| db_err("baselines", e))?;
        }
        txn.commit().map_err(|e| db_err("commit", e))?;
        Ok(Store {
            db: RwLock::new(Some(db)),
            history_limit: history_limit.max(1),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&Database) -> Result<T>) -> Result<T> {
        let guard = self.db.read().unwrap_or_else(PoisonError::into_inner);
        match guard.as_ref() {
            Some(db) => f(db),
            None => Err(Error::new(ErrorKind::Unavailable, "state store is closed")),
        }
    }

    /// Close the database; later calls fail.
    pub fn close(&self) {
        self.db
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    /// Write a batch in one durable transaction; returns its events with
    /// their ids, in order.
    pub fn commit(&self, batch: Vec<Record>) -> Result<Vec<DriftEvent>> {
        self.with(|db| self.commit_in(db, batch))
    }

    fn commit_in(&self, db: &Database, batch: Vec<Record>) -> Result<Vec<DriftEvent>> {
        let txn = db.begin_write().map_err(|e| db_err("begin", e))?;
        let mut written = Vec::new();
        {
            let mut events = txn.open_table(EVENTS).map_err(|e| db_err("events", e))?;
            let mut open = txn.open_table(OPEN).map_err(|e| db_err("open", e))?;
            let mut nodes = txn.open_table(NODES).map_err(|e| db_err("nodes", e))?;
            let mut meta = txn.open_table(META).map_err(|e| db_err("meta", e))?;
            let mut baselines = txn
                .open_table(BASELINES)
                .map_err(|e| db_err("baselines", e))?;
            let mut next = match events.last().map_err(|e| db_err("events", e))? {
                Some((k, _)) => k.value() + 1,
                None => 1,
            };
            for rec in batch {
                match rec {
                    Record::Event(mut ev) => {
                        ev.id = next;
                        next += 1;
                        let bytes = ev.encode_to_vec();
                        events
                            .insert(ev.id, bytes.as_slice())
                            .map_err(|e| db_err("write event", e))?;
                        let key = open_key(&ev);
                        if ev.kind == Kind::Resolved as i32 {
                            open.remove(key.as_str()).map_err(|e| db_err("open", e))?;
                        } else {
                            open.insert(key.as_str(), bytes.as_slice())
                                .map_err(|e| db_err("open", e))?;
                        }
                        written.push(ev);
                    }
                    Record::Node(name, rec) => {
                        let bytes = serde_json::to_vec(&rec).map_err(|e| db_err("node", e))?;
                        nodes
                            .insert(name.as_str(), bytes.as_slice())
                            .map_err(|e| db_err("write node", e))?;
                    }
                    Record::ForgetNode(name) => {
                        nodes
                            .remove(name.as_str())
                            .map_err(|e| db_err("forget node", e))?;
                    }
                    Record::Recipe(json) => {
                        meta.insert(RECIPE_KEY, json.as_slice())
                            .map_err(|e| db_err("write recipe", e))?;
                    }
                    Record::Baseline(pool, Some(json)) => {
                        baselines
                            .insert(pool.as_str(), json.as_slice())
                            .map_err(|e| db_err("write baseline", e))?;
                    }
                    Record::Baseline(pool, None) => {
                        baselines
                            .remove(pool.as_str())
                            .map_err(|e| db_err("clear baseline", e))?;
                    }
                }
            }
            let len = events.len().map_err(|e| db_err("events", e))?;
            for _ in self.history_limit..len {
                events.pop_first().map_err(|e| db_err("prune", e))?;
            }
        }
        txn.commit().map_err(|e| db_err("commit", e))?;
        Ok(written)
    }

    /// The events of every violation (and stale node) open now, oldest first.
    pub fn open_events(&self) -> Result<Vec<DriftEvent>> {
        self.with(|db| {
            let txn = db.begin_read().map_err(|e| db_err("begin", e))?;
            let table = txn.open_table(OPEN).map_err(|e| db_err("open", e))?;
            let mut out = Vec::new();
            for row in table.iter().map_err(|e| db_err("open", e))? {
                let (_, v) = row.map_err(|e| db_err("open", e))?;
                out.push(decode(v.value())?);
            }
            out.sort_by_key(|e| e.id);
            Ok(out)
        })
    }

    /// Events with an id above `after`, oldest first, at most `limit`.
    pub fn after(&self, after: u64, limit: usize) -> Result<Vec<DriftEvent>> {
        self.with(|db| {
            let txn = db.begin_read().map_err(|e| db_err("begin", e))?;
            let table = txn.open_table(EVENTS).map_err(|e| db_err("events", e))?;
            let mut out = Vec::new();
            for row in table
                .range(after.saturating_add(1)..)
                .map_err(|e| db_err("events", e))?
                .take(limit)
            {
                let (_, v) = row.map_err(|e| db_err("events", e))?;
                out.push(decode(v.value())?);
            }
            Ok(out)
        })
    }

    /// The last `limit` events that `keep` accepts, oldest first.
    pub fn recent(
        &self,
        limit: usize,
        keep: impl Fn(&DriftEvent) -> bool,
    ) -> Result<Vec<DriftEvent>> {
        self.with(|db| {
            let txn = db.begin_read().map_err(|e| db_err("begin", e))?;
            let table = txn.open_table(EVENTS).map_err(|e| db_err("events", e))?;
            let mut out = Vec::new();
            for row in table.iter().map_err(|e| db_err("events", e))?.rev() {
                if out.len() >= limit {
                    break;
                }
                let (_, v) = row.map_err(|e| db_err("events", e))?;
                let ev = decode(v.value())?;
                if keep(&ev) {
                    out.push(ev);
                }
            }
            out.reverse();
            Ok(out)
        })
    }

    pub fn nodes(&self) -> Result<Vec<(String, NodeRecord)>> {
        self.with(|db| {
            let txn = db.begin_read().map_err(|e| db_err("begin", e))?;
            let table = txn.open_table(NODES).map_err(|e| db_err("nodes", e))?;
            let mut out = Vec::new();
            for row in table.iter().map_err(|e| db_err("nodes", e))? {
                let (k, v) = row.map_err(|e| db_err("nodes", e))?;
                let rec: NodeRecord =
                    serde_json::from_slice(v.value()).map_err(|e| db_err("corrupt node", e))?;
                out.push((k.value().to_string(), rec));
            }
            Ok(out)
        })
    }

    /// Every pool's baseline, as JSON.
    pub fn baselines(&self) -> Result<Vec<(String, Vec<u8>)>> {
        self.with(|db| {
            let txn = db.begin_read().map_err(|e| db_err("begin", e))?;
            let table = txn
                .open_table(BASELINES)
                .map_err(|e| db_err("baselines", e))?;
            let mut out = Vec::new();
            for row in table.iter().map_err(|e| db_err("baselines", e))? {
                let (k, v) = row.map_err(|e| db_err("baselines", e))?;
                out.push((k.value().to_string(), v.value().to_vec()));
            }
            Ok(out)
        })
    }

    /// The recipe last set through the API, as JSON.
    pub fn recipe(&self) -> Result<Option<Vec<u8>>> {
        self.with(|db| {
            let txn = db.begin_read().map_err(|e| db_err("begin", e))?;
            let table = txn.open_table(META).map_err(|e| db_err("meta", e))?;
            Ok(table
                .get(RECIPE_KEY)
                .map_err(|e| db_err("meta", e))?
                .map(|v| v.value().to_vec()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: Kind, node: &str, constraint: &str) -> Record {
        Record::Event(DriftEvent {
            kind: kind as i32,
            node_name: node.into(),
            constraint: constraint.into(),
            ..Default::default()
        })
    }

    #[test]
    fn events_get_ids_and_open_violations_follow_them() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(Some(dir.path()), 100).unwrap();
            let out = s
                .commit(vec![
                    ev(Kind::Opened, "n1", "OS.release.ID"),
                    ev(Kind::Opened, "n2", "OS.release.ID"),
                    ev(Kind::Stale, "n2", ""),
                    Record::Node(
                        "n1".into(),
                        NodeRecord {
                            agent_version: "v1".into(),
                            last_seen_ms: 5,
                        },
                    ),
                    Record::Recipe(b"{}".to_vec()),
                ])
                .unwrap();
            assert_eq!(out.iter().map(|e| e.id).collect::<Vec<_>>(), [1, 2, 3]);
            s.commit(vec![ev(Kind::Resolved, "n1", "OS.release.ID")])
                .unwrap();
        }
        let s = Store::open(Some(dir.path()), 100).unwrap();
        let open = s.open_events().unwrap();
        assert_eq!(open.iter().map(|e| e.id).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(s.after(0, 10).unwrap().len(), 4);
        assert_eq!(s.after(2, 1).unwrap()[0].id, 3);
        assert_eq!(
            s.recent(2, |_| true)
                .unwrap()
                .iter()
                .map(|e| e.id)
                .collect::<Vec<_>>(),
            [3, 4]
        );
        assert_eq!(s.nodes().unwrap()[0].1.agent_version, "v1");
        assert_eq!(s.recipe().unwrap().as_deref(), Some(&b"{}"[..]));
        s.commit(vec![
            Record::Baseline("p1".into(), Some(b"{\"a\":1}".to_vec())),
            Record::Baseline("p2".into(), Some(b"{}".to_vec())),
            Record::Baseline("p2".into(), None),
        ])
        .unwrap();
        assert_eq!(
            s.baselines().unwrap(),
            [("p1".to_string(), b"{\"a\":1}".to_vec())]
        );
        let next = s.commit(vec![ev(Kind::Opened, "n3", "x")]).unwrap();
        assert_eq!(next[0].id, 5, "ids continue after a restart");
        s.commit(vec![Record::ForgetNode("n1".into())]).unwrap();
        assert!(s.nodes().unwrap().is_empty(), "a forgotten node stays gone");
    }

    #[test]
    fn a_deviation_and_a_constraint_on_the_same_reading_are_apart() {
        let s = Store::open(None, 10).unwrap();
        let mut peer = DriftEvent {
            kind: Kind::Opened as i32,
            node_name: "n1".into(),
            constraint: "OS.release.ID".into(),
            source: Source::Peers as i32,
            ..Default::default()
        };
        s.commit(vec![
            ev(Kind::Opened, "n1", "OS.release.ID"),
            Record::Event(peer.clone()),
        ])
        .unwrap();
        assert_eq!(s.open_events().unwrap().len(), 2);
        peer.kind = Kind::Resolved as i32;
        s.commit(vec![Record::Event(peer)]).unwrap();
        let open = s.open_events().unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].source, Source::Constraint as i32);
    }

    #[test]
    fn history_is_pruned_but_open_violations_are_kept() {
        let s = Store::open(None, 3).unwrap();
        s.commit(vec![ev(Kind::Opened, "n1", "a")]).unwrap();
        for i in 0..5 {
            s.commit(vec![
                ev(Kind::Opened, &format!("m{i}"), "b"),
                ev(Kind::Resolved, &format!("m{i}"), "b"),
            ])
            .unwrap();
        }
        let all = s.after(0, 100).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].id, 9);
        assert_eq!(s.open_events().unwrap()[0].id, 1);
    }

    #[test]
    fn a_second_store_on_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _a = Store::open(Some(dir.path()), 10).unwrap();
        let e = Store::open(Some(dir.path()), 10).err().unwrap();
        assert!(e.message().contains("another aggregator"), "{e}");
    }
}
