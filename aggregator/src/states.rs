//! Node state by content. Every distinct `{Type}.{Subtype}` state is held
//! once, as an [`Arc<State>`] shared by every node that reports it, and is
//! freed when the last of those nodes lets go. Ten thousand identical
//! nodes therefore cost one decode and one copy.
//!
//! Distinct states of one scope are still nearly alike (a pool's sysctl
//! readings differ in a handful of keys), so each scope also keeps a
//! shared base and a state holds only where it differs from it. A state's
//! readings are always exactly what its agents sent: the base only decides
//! what is stored once. A base that fits almost nobody (an odd first
//! reporter, or a hostile one) is replaced by the next state that cannot
//! use it. This module must not know about sessions, nodes or pools.
//!
//! A constraint reads one key, so its outcome on a state that holds that
//! key as the base does is the base's outcome: that is computed once per
//! recipe and kept beside the base. Caching per state would not do, since
//! nearly every state is some node's alone (GPU serials, unit PIDs, the
//! host name) while the keys constraints read (driver and OS versions,
//! unit states) are nearly always the base's.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use aicr::constraint::Outcome;
use aicr::model::snapshot::{Reading, Subtype};
use ring::digest::{Context, SHA256};

/// Identifies a subtype's content: equal keys, equal readings. Computed by
/// the aggregator, never taken from the agent.
pub type ContentKey = [u8; 32];

pub fn content_key(kind: &str, name: &str, json: &[u8]) -> ContentKey {
    let mut ctx = Context::new(&SHA256);
    ctx.update(kind.as_bytes());
    ctx.update(&[0]);
    ctx.update(name.as_bytes());
    ctx.update(&[0]);
    ctx.update(json);
    let mut key = [0u8; 32];
    key.copy_from_slice(ctx.finish().as_ref());
    key
}

/// A scope's shared readings, and the constraint outcomes on them.
#[derive(Debug)]
struct Base {
    subtype: Subtype,
    outcomes: Mutex<Outcomes>,
    /// The keys some state on this base holds differently, with how many
    /// states do. A key absent here reads as the base's in every state,
    /// which judging a constraint then learns without touching any of them.
    /// Plain lookups (`Held::get`) do not ask: they would contend on this
    /// one lock from every ingest thread.
    varied: Mutex<HashMap<Box<str>, u32>>,
}

impl Base {
    fn new(subtype: Subtype) -> Arc<Base> {
        Arc::new(Base {
            subtype,
            outcomes: Mutex::default(),
            varied: Mutex::default(),
        })
    }

    fn varies(&self, key: &str) -> bool {
        lock(&self.varied).contains_key(key)
    }
}

/// Where a state's reading of one key comes from.
enum Own<'a> {
    Set(&'a Reading),
    Unset,
    Base,
}

/// A subtype as a shared base and this state's differences from it.
#[derive(Debug)]
struct Held {
    base: Arc<Base>,
    /// Readings this state has that the base lacks or holds differently,
    /// sorted by key. A slice, not a map: a state differs from its base in
    /// a handful of readings (a host name, GPU serials), where a B-tree
    /// leaf would reserve room for eleven.
    set: Box<[(String, Reading)]>,
    /// Base readings this state does not have, sorted.
    unset: Box<[String]>,
    /// This state's context when it differs from the base's.
    context: Option<BTreeMap<String, String>>,
}

impl Held {
    fn whole(st: Arc<Base>) -> Held {
        Held {
            base: st,
            set: Box::new([]),
            unset: Box::new([]),
            context: None,
        }
    }

    fn new(
        base: Arc<Base>,
        set: Vec<(String, Reading)>,
        unset: Vec<String>,
        context: Option<BTreeMap<String, String>>,
    ) -> Held {
        let held = Held {
            base,
            set: set.into_boxed_slice(),
            unset: unset.into_boxed_slice(),
            context,
        };
        let mut varied = lock(&held.base.varied);
        for k in held.own_keys() {
            *varied.entry(k.into()).or_default() += 1;
        }
        drop(varied);
        held
    }

    /// The keys this state holds differently from its base.
    fn own_keys(&self) -> impl Iterator<Item = &str> {
        self.set
            .iter()
            .map(|(k, _)| k.as_str())
            .chain(self.unset.iter().map(String::as_str))
    }

    fn own(&self, key: &str) -> Own<'_> {
        if let Ok(i) = self.set.binary_search_by(|(k, _)| k.as_str().cmp(key)) {
            return Own::Set(&self.set[i].1);
        }
        if self.unset.binary_search_by(|k| k.as_str().cmp(key)).is_ok() {
            return Own::Unset;
        }
        Own::Base
    }

    fn get(&self, key: &str) -> Option<&Reading> {
        match self.own(key) {
            Own::Set(r) => Some(r),
            Own::Unset => None,
            Own::Base => self.base.subtype.data.get(key),
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut varied = lock(&self.base.varied);
        for k in self.own_keys() {
            if let Some(n) = varied.get_mut(k) {
                *n -= 1;
                if *n == 0 {
                    varied.remove(k);
                }
            }
        }
    }
}

/// Constraint outcomes on one base, for one set of rules.
#[derive(Debug, Default)]
struct Outcomes {
    generation: u64,
    by_rule: Vec<(usize, Outcome)>,
}

/// One distinct subtype state, shared by every node that reports it.
pub struct State {
    key: ContentKey,
    held: Held,
    table: Weak<Table>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").field("held", &self.held).finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl State {
    pub fn key(&self) -> &ContentKey {
        &self.key
    }

    pub fn get(&self, key: &str) -> Option<&Reading> {
        self.held.get(key)
    }

    /// The subtype as the agent sent it.
    pub fn to_subtype(&self) -> Subtype {
        let h = &self.held;
        let base = &h.base.subtype;
        let mut data = base.data.clone();
        for k in h.unset.iter() {
            data.remove(k);
        }
        data.extend(h.set.iter().map(|(k, v)| (k.clone(), v.clone())));
        Subtype {
            subtype: base.subtype.clone(),
            data,
            context: h.context.clone().unwrap_or_else(|| base.context.clone()),
        }
    }

    /// Every reading key, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.readings().map(|(k, _)| k)
    }

    /// Every reading, sorted by key. Walks the base and this state's
    /// differences side by side, all three sorted, so it costs one
    /// comparison per step rather than a lookup per key: a node joining
    /// its pool reads every reading this way.
    pub fn readings(&self) -> impl Iterator<Item = (&str, &Reading)> {
        let h = &self.held;
        let mut base = h.base.subtype.data.iter().peekable();
        let mut set = h.set.iter().peekable();
        let mut unset = h.unset.iter().peekable();
        std::iter::from_fn(move || {
            loop {
                let from_base = match (base.peek(), set.peek()) {
                    (None, None) => return None,
                    (Some(_), None) => true,
                    (None, Some(_)) => false,
                    (Some((b, _)), Some((s, _))) => match b.as_str().cmp(s) {
                        std::cmp::Ordering::Less => true,
                        std::cmp::Ordering::Greater => false,
                        // Set here overrides the base's reading.
                        std::cmp::Ordering::Equal => {
                            base.next();
                            false
                        }
                    },
                };
                if !from_base {
                    return set.next().map(|(k, v)| (k.as_str(), v));
                }
                let (k, v) = base.next()?;
                while unset.next_if(|u| *u < k).is_some() {}
                if unset.next_if(|u| *u == k).is_none() {
                    return Some((k.as_str(), v));
                }
            }
        })
    }

    /// The keys whose readings may differ between `a` and `b`: when both
    /// share a base, only their own differences need looking at.
    pub fn changed_keys<'a>(a: Option<&'a State>, b: Option<&'a State>) -> Vec<&'a str> {
        let mut out: Vec<&str> = match (a, b) {
            (Some(a), Some(b)) if Arc::ptr_eq(&a.held.base, &b.held.base) => {
                a.held.own_keys().chain(b.held.own_keys()).collect()
            }
            _ => a.into_iter().chain(b).flat_map(|s| s.keys()).collect(),
        };
        out.sort_unstable();
        out.dedup();
        out.retain(|k| a.and_then(|s| s.get(k)) != b.and_then(|s| s.get(k)));
        out
    }

    /// The outcome of rule `rule` of rules `generation`, which reads `key`,
    /// on this state: `eval` of the reading (`None` when the state lacks
    /// the key). When the state reads `key` as its base does, `eval` runs
    /// only the first time any state on that base is asked.
    pub fn outcome(
        &self,
        generation: u64,
        rule: usize,
        key: &str,
        eval: impl FnOnce(Option<&Reading>) -> Outcome,
    ) -> Outcome {
        let base = &self.held.base;
        // Asking the base first spares a recipe change a look at each
        // state's own keys, one cache miss per node at fleet size.
        if base.varies(key) {
            match self.held.own(key) {
                Own::Set(r) => return eval(Some(r)),
                Own::Unset => return eval(None),
                Own::Base => {}
            }
        }
        let mut o = lock(&base.outcomes);
        if o.generation != generation {
            o.generation = generation;
            o.by_rule.clear();
        }
        if let Some((_, out)) = o.by_rule.iter().find(|(i, _)| *i == rule) {
            return out.clone();
        }
        let out = eval(base.subtype.data.get(key));
        o.by_rule.push((rule, out.clone()));
        out
    }
}

impl Drop for State {
    fn drop(&mut self) {
        let Some(table) = self.table.upgrade() else {
            return;
        };
        let mut by_key = lock(&table.by_key);
        // A state interned again under this key after our last holder let
        // go is alive; leave it.
        if by_key.get(&self.key).is_some_and(|w| w.strong_count() == 0) {
            by_key.remove(&self.key);
        }
    }
}

#[derive(Default)]
struct Table {
    by_key: Mutex<HashMap<ContentKey, Weak<State>>>,
    /// The shared base of each `{Type}.{Subtype}`.
    bases: Mutex<HashMap<String, Arc<Base>>>,
}

/// Every live distinct state, by content key.
#[derive(Default, Clone)]
pub struct States {
    table: Arc<Table>,
}

impl States {
    /// The live state with this content, if some node holds it.
    pub fn lookup(&self, key: &ContentKey) -> Option<Arc<State>> {
        lock(&self.table.by_key).get(key).and_then(Weak::upgrade)
    }

    /// Distinct states held now.
    pub fn len(&self) -> usize {
        lock(&self.table.by_key).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The shared state for `st` (reported under `scope`, with content
    /// `key`): the one already held, or a new one.
    pub fn intern(&self, scope: &str, key: ContentKey, st: Subtype) -> Arc<State> {
        if let Some(s) = self.lookup(&key) {
            return s;
        }
        let state = Arc::new(State {
            key,
            held: self.hold(scope, st),
            table: Arc::downgrade(&self.table),
        });
        let mut by_key = lock(&self.table.by_key);
        // Another session may have interned the same content meanwhile;
        // both are correct, the first stays shared.
        if let Some(existing) = by_key.get(&key).and_then(Weak::upgrade) {
            drop(by_key);
            return existing;
        }
        by_key.insert(key, Arc::downgrade(&state));
        state
    }

    /// Hold `st` as the scope's base plus differences; one that differs in
    /// more than half its readings is stored whole.
    fn hold(&self, scope: &str, st: Subtype) -> Held {
        let base = {
            let mut bases = lock(&self.table.bases);
            match bases.get(scope) {
                Some(b) => b.clone(),
                None => {
                    let own = Base::new(st);
                    bases.insert(scope.to_string(), own.clone());
                    return Held::whole(own);
                }
            }
        };
        // Both sides are sorted: one walk finds what differs.
        let mut set = Vec::new();
        let mut unset: Vec<String> = Vec::new();
        let mut theirs = base.subtype.data.iter().peekable();
        for (k, v) in &st.data {
            while let Some((gone, _)) = theirs.next_if(|(b, _)| *b < k) {
                unset.push(gone.clone());
            }
            match theirs.next_if(|(b, _)| *b == k) {
                Some((_, same)) if same == v => {}
                _ => {
                    set.push((k.clone(), v.clone()));
                }
            }
        }
        unset.extend(theirs.map(|(k, _)| k.clone()));
        if set.len() + unset.len() > st.data.len() / 2 {
            let own = Base::new(st);
            let mut bases = lock(&self.table.bases);
            // A base held by the map and at most one state serves nobody:
            // let this state's readings serve the ones after it.
            if bases
                .get(scope)
                .is_some_and(|b| Arc::ptr_eq(b, &base) && Arc::strong_count(b) <= 3)
            {
                bases.insert(scope.to_string(), own.clone());
            }
            return Held::whole(own);
        }
        let context = (st.context != base.subtype.context).then_some(st.context);
        Held::new(base, set, unset, context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sysctl(host: &str, extra: Option<&str>) -> Subtype {
        let mut st = Subtype::new("sysctl");
        for n in 0..20 {
            st.data.insert(format!("k{n:02}"), "same".into());
        }
        st.data.insert("hostname".into(), host.into());
        if let Some(e) = extra {
            st.data.insert(e.into(), "only here".into());
        }
        st
    }

    fn key(st: &Subtype) -> ContentKey {
        content_key("OS", "sysctl", &serde_json::to_vec(st).unwrap())
    }

    fn intern(states: &States, st: Subtype) -> Arc<State> {
        states.intern("OS.sysctl", key(&st), st)
    }

    #[test]
    fn states_share_a_base_and_keep_their_own_differences() {
        let states = States::default();
        let a = intern(&states, sysctl("a", None));
        let mut b_in = sysctl("b", Some("extra"));
        b_in.data.remove("k05");
        let b = intern(&states, b_in.clone());
        assert!(Arc::ptr_eq(&a.held.base, &b.held.base));
        assert_eq!(b.held.set.len(), 2, "hostname and extra");
        assert_eq!(&*b.held.unset, ["k05".to_string()]);
        assert_eq!(b.get("hostname").unwrap().render(), "b");
        assert_eq!(a.get("hostname").unwrap().render(), "a");
        assert!(b.get("k05").is_none());
        assert_eq!(b.get("k06").unwrap().render(), "same");
        assert_eq!(b.to_subtype(), b_in, "exactly what the agent sent");
        assert_eq!(b.keys().count(), b_in.data.len());
        let walked: Vec<(&str, &Reading)> = b.readings().collect();
        let sent: Vec<(&str, &Reading)> = b_in.data.iter().map(|(k, v)| (k.as_str(), v)).collect();
        assert_eq!(
            walked, sent,
            "the merge walk yields what the agent sent, in order"
        );
        assert_eq!(
            State::changed_keys(Some(&a), Some(&b)),
            ["extra", "hostname", "k05"]
        );
        assert_eq!(State::changed_keys(None, Some(&a)).len(), 21);
    }

    #[test]
    fn equal_content_is_one_state_freed_with_its_last_holder() {
        let states = States::default();
        let a = intern(&states, sysctl("a", None));
        let again = intern(&states, sysctl("a", None));
        assert!(Arc::ptr_eq(&a, &again), "one state per content");
        assert_eq!(states.len(), 1);
        let b = intern(&states, sysctl("b", None));
        assert_eq!(states.len(), 2);
        drop(a);
        assert_eq!(states.len(), 2, "a is still held");
        drop(again);
        assert_eq!(states.len(), 1, "the last holder let go");
        assert!(states.lookup(b.key()).is_some());
    }

    #[test]
    fn outcomes_on_the_base_are_computed_once_per_rules_generation() {
        let states = States::default();
        let a = intern(&states, sysctl("a", None));
        let b = intern(&states, sysctl("b", None));
        assert!(!Arc::ptr_eq(&a, &b), "two states on one base");
        let mut calls = 0;
        // Rule 0 reads k03, rule 1 the host name, rule 2 a key nobody has.
        let mut judge = |s: &State, generation: u64, rule: usize| {
            let key = ["k03", "hostname", "missing"][rule];
            s.outcome(generation, rule, key, |r| {
                calls += 1;
                Outcome::Passed {
                    actual: r.map(Reading::render).unwrap_or_default(),
                }
            })
        };
        for s in [&a, &b, &a] {
            assert_eq!(judge(s, 1, 0).actual(), Some("same"));
        }
        // The first state is the base, so its host name is cached there;
        // b's own value is judged each time it is asked.
        assert_eq!(judge(&a, 1, 1).actual(), Some("a"));
        assert_eq!(judge(&a, 1, 1).actual(), Some("a"));
        assert_eq!(judge(&b, 1, 1).actual(), Some("b"));
        assert_eq!(judge(&b, 1, 1).actual(), Some("b"));
        assert_eq!(judge(&b, 1, 2).actual(), Some(""));
        assert_eq!(judge(&a, 1, 2).actual(), Some(""));
        judge(&b, 2, 0);
        assert_eq!(
            calls,
            1 + 1 + 2 + 1 + 1,
            "k03 once on the base, the base's host name once, b's each time, the missing key once on the base, k03 again for a new recipe"
        );
    }

    #[test]
    fn a_key_a_state_lacks_is_judged_as_missing_not_as_the_base_has_it() {
        let states = States::default();
        let _a = intern(&states, sysctl("a", None));
        let mut lacking = sysctl("b", None);
        lacking.data.remove("k07");
        let b = intern(&states, lacking);
        let seen = b.outcome(1, 0, "k07", |r| Outcome::Passed {
            actual: format!("{:?}", r.map(Reading::render)),
        });
        assert_eq!(seen.actual(), Some("None"));
    }

    #[test]
    fn a_base_that_fits_nobody_is_replaced() {
        let states = States::default();
        let mut odd = Subtype::new("sysctl");
        odd.data.insert("x".into(), "y".into());
        let first = intern(&states, odd);
        drop(first);
        let b = intern(&states, sysctl("b", None));
        assert!(b.held.set.is_empty(), "b is stored whole");
        let c = intern(&states, sysctl("c", None));
        assert!(
            Arc::ptr_eq(&b.held.base, &c.held.base),
            "b became the base c shares"
        );
        assert_eq!(c.held.set.len(), 1);
    }

    #[test]
    fn a_base_knows_which_keys_its_states_hold_differently_while_they_live() {
        let states = States::default();
        let a = intern(&states, sysctl("a", None));
        let base = a.held.base.clone();
        assert!(!base.varies("hostname"), "a is the base itself");
        let b = intern(&states, sysctl("b", Some("extra")));
        let mut c_in = sysctl("c", None);
        c_in.data.remove("k05");
        let c = intern(&states, c_in);
        assert!(base.varies("hostname") && base.varies("extra") && base.varies("k05"));
        assert!(!base.varies("k03"));
        drop(b);
        assert!(base.varies("hostname"), "c still holds its own host name");
        assert!(!base.varies("extra"), "only b had it");
        assert_eq!(c.get("hostname").unwrap().render(), "c");
        assert!(c.get("k05").is_none());
        drop(c);
        assert!(lock(&base.varied).is_empty(), "{:?}", lock(&base.varied));
    }

    #[test]
    fn content_keys_cover_type_name_and_bytes() {
        let k = content_key("OS", "sysctl", b"{}");
        assert_eq!(k, content_key("OS", "sysctl", b"{}"));
        assert_ne!(k, content_key("OS", "grub", b"{}"));
        assert_ne!(k, content_key("OS", "sysctl", b"{ }"));
    }
}
