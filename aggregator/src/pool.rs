//! Structural sharing of readings across nodes. The nodes of a pool report
//! nearly the same sysctl, kernel modules, grub, GPU and systemd readings,
//! differing in a handful of keys (host name, boot id, serials, PIDs). Each
//! `{Type}.{Subtype}` keeps one shared base; a node holds the base plus only
//! the readings where it differs. That is what fits ten thousand live
//! snapshots in the memory budget.
//!
//! A node's readings are always exactly what its own agent sent: the base
//! only decides what is stored once. A base that fits almost nobody (an odd
//! first reporter, or a hostile one) is replaced by the next node that
//! cannot use it. This module must not know about sessions or constraints.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

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

/// One node's subtype: a shared base and this node's differences.
#[derive(Debug, Clone)]
pub struct Held {
    base: Arc<Subtype>,
    /// Readings this node has that the base lacks or holds differently.
    set: BTreeMap<String, Reading>,
    /// Base readings this node does not have, sorted.
    unset: Box<[String]>,
    /// This node's context when it differs from the base's.
    context: Option<BTreeMap<String, String>>,
}

impl Held {
    fn whole(st: Arc<Subtype>) -> Held {
        Held {
            base: st,
            set: BTreeMap::new(),
            unset: Box::new([]),
            context: None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Reading> {
        if let Some(r) = self.set.get(key) {
            return Some(r);
        }
        if self.unset.binary_search_by(|k| k.as_str().cmp(key)).is_ok() {
            return None;
        }
        self.base.data.get(key)
    }

    /// The subtype as the agent sent it.
    pub fn to_subtype(&self) -> Subtype {
        let mut data = self.base.data.clone();
        for k in self.unset.iter() {
            data.remove(k);
        }
        data.extend(self.set.iter().map(|(k, v)| (k.clone(), v.clone())));
        Subtype {
            subtype: self.base.subtype.clone(),
            data,
            context: self
                .context
                .clone()
                .unwrap_or_else(|| self.base.context.clone()),
        }
    }
}

/// The shared bases, one per `{Type}.{Subtype}`.
#[derive(Default)]
pub struct Pool {
    bases: Mutex<HashMap<String, Arc<Subtype>>>,
}

impl Pool {
    /// Hold `st` (reported under `scope`) as the scope's base plus
    /// differences; a node that differs in more than half its readings is
    /// stored whole.
    pub fn hold(&self, scope: &str, st: Subtype) -> Held {
        let base = {
            let mut bases = self.bases.lock().unwrap_or_else(PoisonError::into_inner);
            match bases.get(scope) {
                Some(b) => b.clone(),
                None => {
                    let own = Arc::new(st);
                    bases.insert(scope.to_string(), own.clone());
                    return Held::whole(own);
                }
            }
        };
        let mut set = BTreeMap::new();
        for (k, v) in &st.data {
            if base.data.get(k) != Some(v) {
                set.insert(k.clone(), v.clone());
            }
        }
        let unset: Vec<String> = base
            .data
            .keys()
            .filter(|k| !st.data.contains_key(*k))
            .cloned()
            .collect();
        if set.len() + unset.len() > st.data.len() / 2 {
            let own = Arc::new(st);
            let mut bases = self.bases.lock().unwrap_or_else(PoisonError::into_inner);
            // A base held by the map and at most one node serves nobody:
            // let this node's readings serve the ones after it.
            if bases
                .get(scope)
                .is_some_and(|b| Arc::ptr_eq(b, &base) && Arc::strong_count(b) <= 3)
            {
                bases.insert(scope.to_string(), own.clone());
            }
            return Held::whole(own);
        }
        let context = (st.context != base.context).then_some(st.context);
        Held {
            base,
            set,
            unset: unset.into_boxed_slice(),
            context,
        }
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

    #[test]
    fn nodes_share_a_base_and_keep_their_own_differences() {
        let pool = Pool::default();
        let a = pool.hold("OS.sysctl", sysctl("a", None));
        let mut b_in = sysctl("b", Some("extra"));
        b_in.data.remove("k05");
        let b = pool.hold("OS.sysctl", b_in.clone());
        assert!(Arc::ptr_eq(&a.base, &b.base));
        assert_eq!(b.set.len(), 2, "hostname and extra");
        assert_eq!(&*b.unset, ["k05".to_string()]);
        assert_eq!(b.get("hostname").unwrap().render(), "b");
        assert_eq!(a.get("hostname").unwrap().render(), "a");
        assert!(b.get("k05").is_none());
        assert_eq!(b.get("k06").unwrap().render(), "same");
        assert_eq!(b.to_subtype(), b_in, "exactly what the agent sent");
    }

    #[test]
    fn a_base_that_fits_nobody_is_replaced() {
        let pool = Pool::default();
        let mut odd = Subtype::new("sysctl");
        odd.data.insert("x".into(), "y".into());
        let first = pool.hold("OS.sysctl", odd);
        drop(first);
        let b = pool.hold("OS.sysctl", sysctl("b", None));
        assert!(b.set.is_empty(), "b is stored whole");
        let c = pool.hold("OS.sysctl", sysctl("c", None));
        assert!(Arc::ptr_eq(&b.base, &c.base), "b became the base c shares");
        assert_eq!(c.set.len(), 1);
    }

    #[test]
    fn content_keys_cover_type_name_and_bytes() {
        let k = content_key("OS", "sysctl", b"{}");
        assert_eq!(k, content_key("OS", "sysctl", b"{}"));
        assert_ne!(k, content_key("OS", "grub", b"{}"));
        assert_ne!(k, content_key("OS", "sysctl", b"{ }"));
    }
}
