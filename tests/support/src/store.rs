//! The object store: every object the fake holds, the global resourceVersion
//! counter and the history of changes that watches replay. It applies the
//! apiserver's write rules (metadata defaulting, optimistic concurrency, the
//! status subresource split, finalizers, cascading deletion) and knows
//! nothing about HTTP.

use crate::resources::{Catalogue, ResourceType, StorageKey, crd_storage_key};
use crate::status::ApiError;
use crate::validation;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

/// `(namespace, name)`; the namespace is empty for cluster-scoped objects.
type ObjectKey = (String, String);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

/// One committed write, kept so watches can replay from any resourceVersion.
#[derive(Clone, Debug)]
pub(crate) struct Change {
    pub rv: u64,
    pub key: StorageKey,
    pub kind: ChangeKind,
    pub object: Value,
    /// The object before a modification: watches with selectors need it to
    /// tell "stopped matching" from "never matched".
    pub previous: Option<Value>,
}

/// Who is writing decides which admission rules apply: clients get the
/// apiserver's, tests seeding state may write status and skip namespace
/// existence checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Writer {
    Client,
    Test,
}

/// Which part of an existing object an update may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    /// A write to the resource itself: status is kept if it is a subresource.
    Main,
    /// A write to the `status` subresource: only status changes.
    Status,
    /// A test's write: everything the body says.
    Whole,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Propagation {
    Orphan,
    Background,
    Foreground,
}

#[derive(Debug, Default)]
pub(crate) struct DeleteOptions {
    pub propagation: Option<Propagation>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub dry_run: bool,
}

pub(crate) struct Store {
    last_rv: u64,
    objects: HashMap<StorageKey, BTreeMap<ObjectKey, Value>>,
    history: Vec<Change>,
    /// Watches resuming from a resourceVersion below this get `410 Expired`.
    expired_before: u64,
}

impl Store {
    pub fn new() -> Self {
        Store {
            last_rv: 0,
            objects: HashMap::new(),
            history: Vec::new(),
            expired_before: 0,
        }
    }

    pub fn catalogue(&self) -> Catalogue {
        Catalogue::new(
            self.objects
                .get(&crd_storage_key())
                .into_iter()
                .flat_map(BTreeMap::values),
        )
    }

    pub fn last_rv(&self) -> u64 {
        self.last_rv
    }

    pub fn get(&self, rt: &ResourceType, namespace: &str, name: &str) -> Option<Value> {
        self.stored(rt, namespace, name).map(|o| present(rt, o))
    }

    /// Objects of one type in key order (namespace, then name), as etcd lists
    /// them; `None` lists every namespace.
    pub fn list(&self, rt: &ResourceType, namespace: Option<&str>) -> Vec<Value> {
        self.stored_after(rt, namespace, None)
            .map(|o| present(rt, o))
            .collect()
    }

    /// The stored objects of one type in key order, after `after` (a list
    /// page's continue key) when given. Borrowed, so a page of a large
    /// collection copies only the objects it serves.
    pub(crate) fn stored_after<'a>(
        &'a self,
        rt: &ResourceType,
        namespace: Option<&'a str>,
        after: Option<&ObjectKey>,
    ) -> impl Iterator<Item = &'a Value> + 'a {
        let namespaced = rt.namespaced;
        let start = match after {
            Some(key) => Bound::Excluded(key.clone()),
            None => Bound::Unbounded,
        };
        self.objects
            .get(&rt.storage_key())
            .into_iter()
            .flat_map(move |objects| objects.range((start.clone(), Bound::Unbounded)))
            .filter(move |((ns, _), _)| namespace.is_none_or(|want| !namespaced || ns == want))
            .map(|(_, o)| o)
    }

    pub fn changes_after(&self, rv: u64) -> &[Change] {
        let start = self.history.partition_point(|c| c.rv <= rv);
        &self.history[start..]
    }

    pub fn expire_history(&mut self) {
        self.expired_before = self.last_rv;
    }

    /// The oldest resourceVersion a watch may resume from.
    pub fn oldest_watchable(&self) -> u64 {
        self.expired_before
    }

    fn stored(&self, rt: &ResourceType, namespace: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(&rt.storage_key())?
            .get(&object_key(rt, namespace, name))
    }

    fn namespace_exists(&self, namespace: &str) -> bool {
        self.objects
            .get(&(String::new(), "namespaces".into()))
            .is_some_and(|m| m.contains_key(&(String::new(), namespace.into())))
    }

    fn next_rv(&mut self) -> u64 {
        self.last_rv += 1;
        self.last_rv
    }

    fn record(
        &mut self,
        key: StorageKey,
        kind: ChangeKind,
        object: Value,
        previous: Option<Value>,
    ) {
        self.history.push(Change {
            rv: self.last_rv,
            key,
            kind,
            object,
            previous,
        });
    }

    pub fn create(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        mut object: Value,
        writer: Writer,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        check_type(rt, &mut object)?;
        let namespace = scoped(rt, namespace);
        check_namespace(rt, &mut object, namespace)?;
        let rv = self.last_rv + 1;
        let name = match (name_of(&object), meta(&object)["generateName"].as_str()) {
            (Some(name), _) => name.to_string(),
            (None, Some(prefix)) => format!("{prefix}{}", generated_suffix(rv)),
            (None, None) => return Err(validation::required_name(rt)),
        };
        if writer == Writer::Client {
            // Namespace lifecycle admission runs before validation.
            if rt.namespaced && !self.namespace_exists(namespace) {
                return Err(ApiError::namespace_not_found(namespace));
            }
            validation::check_name(rt, &name)?;
            if meta(&object)["resourceVersion"]
                .as_str()
                .is_some_and(|v| !v.is_empty())
            {
                return Err(ApiError::internal(
                    "resourceVersion should not be set on objects to be created",
                ));
            }
            if rt.has_status() && rt.kind != "Node" {
                // Nodes register with their status; everything else starts blank.
                object_mut(&mut object).remove("status");
            }
        }
        validation::check_object(rt, &name, &object)?;
        if self.stored(rt, namespace, &name).is_some() {
            return Err(ApiError::already_exists(rt, &name));
        }
        if object.get("status").is_none()
            && let Some(status) = initial_status(rt, &object)
        {
            object["status"] = status;
        }
        let metadata = meta_mut(&mut object);
        metadata.insert("name".into(), name.clone().into());
        metadata.insert(
            "uid".into(),
            format!("00000000-0000-4000-8000-{rv:012x}").into(),
        );
        metadata.insert("creationTimestamp".into(), now().into());
        metadata.insert("resourceVersion".into(), rv.to_string().into());
        if writer == Writer::Client || !metadata.contains_key("generation") {
            metadata.insert("generation".into(), 1.into());
        }
        metadata.remove("deletionTimestamp");
        if dry_run {
            return Ok(present(rt, &object));
        }
        self.next_rv();
        self.record(rt.storage_key(), ChangeKind::Added, object.clone(), None);
        self.objects
            .entry(rt.storage_key())
            .or_default()
            .insert(object_key(rt, namespace, &name), object.clone());
        Ok(present(rt, &object))
    }

    pub fn update(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        mut object: Value,
        part: Part,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let namespace = scoped(rt, namespace);
        let old = self
            .stored(rt, namespace, name)
            .ok_or_else(|| ApiError::not_found(rt, name))?
            .clone();
        check_type(rt, &mut object)?;
        check_url_name(&object, name)?;
        check_namespace(rt, &mut object, namespace)?;
        let old_rv = &old["metadata"]["resourceVersion"];
        match meta(&object)["resourceVersion"].as_str() {
            Some(rv) if !rv.is_empty() && Some(rv) != old_rv.as_str() => {
                return Err(ApiError::stale(rt, name));
            }
            _ => {}
        }
        let mut new = match part {
            Part::Main => {
                if rt.has_status() {
                    set_or_remove(&mut object, "status", old.get("status"));
                }
                object
            }
            Part::Status => {
                let mut new = old.clone();
                set_or_remove(&mut new, "status", object.get("status"));
                new
            }
            Part::Whole => object,
        };
        for field in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "resourceVersion",
        ] {
            set_or_remove_meta(&mut new, field, old["metadata"].get(field));
        }
        meta_mut(&mut new).insert("name".into(), name.into());
        validation::check_object(rt, name, &new)?;
        let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
        let bump = i64::from(spec_of(rt, &new) != spec_of(rt, &old));
        meta_mut(&mut new).insert("generation".into(), (generation + bump).into());
        if new == old || dry_run {
            return Ok(present(rt, &new));
        }
        let rv = self.next_rv();
        meta_mut(&mut new).insert("resourceVersion".into(), rv.to_string().into());
        let key = object_key(rt, namespace, name);
        if has_deletion_timestamp(&new) && !has_finalizers(&new) {
            // Removing the last finalizer of a deleting object completes the delete.
            self.objects
                .entry(rt.storage_key())
                .or_default()
                .remove(&key);
            self.record(rt.storage_key(), ChangeKind::Deleted, new.clone(), None);
        } else {
            self.objects
                .entry(rt.storage_key())
                .or_default()
                .insert(key, new.clone());
            self.record(
                rt.storage_key(),
                ChangeKind::Modified,
                new.clone(),
                Some(old),
            );
        }
        Ok(present(rt, &new))
    }

    /// Deletes as the API does; returns the object as it ends up: still
    /// present with `deletionTimestamp` while finalizers remain, else gone.
    pub fn delete(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<Value, ApiError> {
        let namespace = scoped(rt, namespace);
        let old = self
            .stored(rt, namespace, name)
            .ok_or_else(|| ApiError::not_found(rt, name))?;
        let old_meta = &old["metadata"];
        for (label, wanted, actual) in [
            ("UID", &options.uid, &old_meta["uid"]),
            (
                "ResourceVersion",
                &options.resource_version,
                &old_meta["resourceVersion"],
            ),
        ] {
            if let Some(wanted) = wanted
                && Some(wanted.as_str()) != actual.as_str()
            {
                let actual = actual.as_str().unwrap_or_default();
                return Err(ApiError::conflict(
                    rt,
                    name,
                    &format!(
                        "Precondition failed: {label} in precondition: {wanted}, {label} in object meta: {actual}"
                    ),
                ));
            }
        }
        if options.dry_run {
            return Ok(present(rt, old));
        }
        // batch/v1 Jobs still default to orphaning their pods.
        let default = if rt.group == "batch" && rt.plural == "jobs" {
            Propagation::Orphan
        } else {
            Propagation::Background
        };
        let propagation = options.propagation.unwrap_or(default);
        let object = self.delete_object(
            &rt.storage_key(),
            &object_key(rt, namespace, name),
            propagation,
        );
        Ok(present(rt, &object))
    }

    /// Removes an object outright, skipping finalizers and dependents: the
    /// test's hand, not the API's.
    pub fn remove(&mut self, rt: &ResourceType, namespace: &str, name: &str) -> Option<Value> {
        let key = object_key(rt, scoped(rt, namespace), name);
        let mut object = self.objects.get_mut(&rt.storage_key())?.remove(&key)?;
        let rv = self.next_rv();
        meta_mut(&mut object).insert("resourceVersion".into(), rv.to_string().into());
        self.record(rt.storage_key(), ChangeKind::Deleted, object.clone(), None);
        Some(present(rt, &object))
    }

    fn delete_object(
        &mut self,
        key: &StorageKey,
        object_key: &ObjectKey,
        propagation: Propagation,
    ) -> Value {
        let Some(mut object) = self
            .objects
            .get(key)
            .and_then(|m| m.get(object_key))
            .cloned()
        else {
            return Value::Null;
        };
        if has_finalizers(&object) {
            if !has_deletion_timestamp(&object) {
                let previous = object.clone();
                let rv = self.next_rv();
                let metadata = meta_mut(&mut object);
                metadata.insert("deletionTimestamp".into(), now().into());
                metadata.insert("deletionGracePeriodSeconds".into(), 0.into());
                metadata.insert("resourceVersion".into(), rv.to_string().into());
                self.objects
                    .entry(key.clone())
                    .or_default()
                    .insert(object_key.clone(), object.clone());
                self.record(
                    key.clone(),
                    ChangeKind::Modified,
                    object.clone(),
                    Some(previous),
                );
            }
            return object;
        }
        self.objects
            .entry(key.clone())
            .or_default()
            .remove(object_key);
        let rv = self.next_rv();
        meta_mut(&mut object).insert("resourceVersion".into(), rv.to_string().into());
        self.record(key.clone(), ChangeKind::Deleted, object.clone(), None);
        for (dependent_key, dependent) in self.dependents(key, &object, propagation) {
            self.delete_object(&dependent_key, &dependent, Propagation::Background);
        }
        object
    }

    /// What goes with a deleted object: a namespace's contents, a CRD's
    /// custom resources, and (unless orphaning) objects it owns. Garbage
    /// collection is immediate here rather than eventual.
    fn dependents(
        &self,
        key: &StorageKey,
        object: &Value,
        propagation: Propagation,
    ) -> Vec<(StorageKey, ObjectKey)> {
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let uid = object["metadata"]["uid"].as_str().unwrap_or_default();
        let is_namespace = *key == (String::new(), "namespaces".to_string());
        let defined = (key == &crd_storage_key()).then(|| {
            let spec = &object["spec"];
            (
                spec["group"].as_str().unwrap_or_default().to_string(),
                spec["names"]["plural"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        });
        let owned = |o: &Value| {
            propagation != Propagation::Orphan
                && o["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid))
        };
        let mut found = Vec::new();
        for (storage, objects) in &self.objects {
            for (object_key, o) in objects {
                if (is_namespace && object_key.0 == name)
                    || defined.as_ref() == Some(storage)
                    || owned(o)
                {
                    found.push((storage.clone(), object_key.clone()));
                }
            }
        }
        found
    }
}

/// The stored object as read through `rt`'s version.
pub(crate) fn present(rt: &ResourceType, object: &Value) -> Value {
    let mut object = object.clone();
    object["apiVersion"] = rt.api_version().into();
    object["kind"] = rt.kind.clone().into();
    object
}

fn scoped<'a>(rt: &ResourceType, namespace: &'a str) -> &'a str {
    if rt.namespaced { namespace } else { "" }
}

fn object_key(rt: &ResourceType, namespace: &str, name: &str) -> ObjectKey {
    (scoped(rt, namespace).to_string(), name.to_string())
}

fn object_mut(object: &mut Value) -> &mut Map<String, Value> {
    object
        .as_object_mut()
        .expect("bodies are decoded as JSON objects")
}

fn meta(object: &Value) -> &Value {
    &object["metadata"]
}

fn meta_mut(object: &mut Value) -> &mut Map<String, Value> {
    let metadata = object_mut(object)
        .entry("metadata")
        .or_insert_with(|| json!({}));
    if !metadata.is_object() {
        *metadata = json!({});
    }
    metadata
        .as_object_mut()
        .expect("metadata was just made an object")
}

fn name_of(object: &Value) -> Option<&str> {
    meta(object)["name"].as_str().filter(|n| !n.is_empty())
}

fn set_or_remove(object: &mut Value, field: &str, value: Option<&Value>) {
    match value {
        Some(v) => {
            object_mut(object).insert(field.into(), v.clone());
        }
        None => {
            object_mut(object).remove(field);
        }
    }
}

fn set_or_remove_meta(object: &mut Value, field: &str, value: Option<&Value>) {
    match value {
        Some(v) => {
            meta_mut(object).insert(field.into(), v.clone());
        }
        None => {
            meta_mut(object).remove(field);
        }
    }
}

fn has_finalizers(object: &Value) -> bool {
    object["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty())
}

fn has_deletion_timestamp(object: &Value) -> bool {
    object["metadata"]["deletionTimestamp"].is_string()
}

/// What the generation counts: everything but metadata, and status too when
/// status is a subresource.
fn spec_of(rt: &ResourceType, object: &Value) -> Value {
    let mut spec = object.clone();
    object_mut(&mut spec).remove("metadata");
    if rt.has_status() {
        object_mut(&mut spec).remove("status");
    }
    spec
}

/// A body naming an object must name the one in the URL.
pub(crate) fn check_url_name(object: &Value, name: &str) -> Result<(), ApiError> {
    match name_of(object) {
        Some(body_name) if body_name != name => Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        ))),
        _ => Ok(()),
    }
}

/// A body must be of the endpoint's kind; missing type fields are filled in.
fn check_type(rt: &ResourceType, object: &mut Value) -> Result<(), ApiError> {
    let expected_version = rt.api_version();
    if let Some(version) = object["apiVersion"]
        .as_str()
        .filter(|v| *v != expected_version)
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({version}) does not match the expected API version ({expected_version})"
        )));
    }
    if let Some(kind) = object["kind"].as_str().filter(|k| *k != rt.kind) {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            rt.kind
        )));
    }
    object["apiVersion"] = expected_version.into();
    object["kind"] = rt.kind.clone().into();
    Ok(())
}

fn check_namespace(rt: &ResourceType, object: &mut Value, namespace: &str) -> Result<(), ApiError> {
    let metadata = meta_mut(object);
    if !rt.namespaced {
        metadata.remove("namespace");
        return Ok(());
    }
    match metadata.get("namespace").and_then(Value::as_str) {
        Some(ns) if !ns.is_empty() && ns != namespace => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => {
            metadata.insert("namespace".into(), namespace.into());
            Ok(())
        }
    }
}

/// Status the apiserver (or a controller a test would not bother to fake)
/// gives a new object: namespaces are Active, pods Pending, CRDs Established.
fn initial_status(rt: &ResourceType, object: &Value) -> Option<Value> {
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Namespace") => Some(json!({"phase": "Active"})),
        ("", "Pod") => Some(json!({"phase": "Pending"})),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            let spec = &object["spec"];
            let mut accepted = spec["names"].clone();
            let kind = accepted["kind"].as_str().unwrap_or_default().to_string();
            accepted
                .as_object_mut()?
                .entry("singular")
                .or_insert_with(|| kind.to_lowercase().into());
            accepted["listKind"] = format!("{kind}List").into();
            let storage = spec["versions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|v| v["storage"].as_bool() == Some(true))
                .or_else(|| spec["versions"].get(0))
                .map(|v| v["name"].clone());
            let at = now();
            Some(json!({
                "acceptedNames": accepted,
                "conditions": [
                    {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                     "message": "no conflicts found", "lastTransitionTime": at},
                    {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                     "message": "the initial names have been accepted", "lastTransitionTime": at},
                ],
                "storedVersions": storage.into_iter().collect::<Vec<_>>(),
            }))
        }
        _ => None,
    }
}

/// Five characters from the apiserver's generateName alphabet, derived from
/// the resourceVersion so names are unique and runs reproducible.
fn generated_suffix(seed: u64) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut n = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..5)
        .map(|_| {
            let c = ALPHABET[(n % ALPHABET.len() as u64) as usize] as char;
            n /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

/// RFC 3339 at whole seconds, as `metav1.Time` serializes.
pub(crate) fn now() -> String {
    jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
        .expect("the current time is representable")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (Store, Catalogue) {
        let mut store = Store::new();
        let catalogue = store.catalogue();
        let ns = catalogue.by_name("namespaces").unwrap();
        store
            .create(
                ns,
                "",
                json!({"metadata": {"name": "default"}}),
                Writer::Test,
                false,
            )
            .unwrap();
        (store, catalogue)
    }

    #[test]
    fn create_fills_metadata_and_counts_versions() {
        let (mut store, catalogue) = setup();
        let cm = catalogue.by_name("configmaps").unwrap();
        let created = store
            .create(
                cm,
                "default",
                json!({"metadata": {"name": "a"}}),
                Writer::Client,
                false,
            )
            .unwrap();
        assert_eq!(created["apiVersion"], "v1");
        assert_eq!(created["metadata"]["namespace"], "default");
        assert_eq!(created["metadata"]["resourceVersion"], "2");
        assert_eq!(created["metadata"]["generation"], 1);
        assert!(created["metadata"]["uid"].is_string());
        let again = store.create(
            cm,
            "default",
            json!({"metadata": {"name": "a"}}),
            Writer::Client,
            false,
        );
        assert_eq!(again.unwrap_err().code, 409);
        let elsewhere = store.create(
            cm,
            "nope",
            json!({"metadata": {"name": "a"}}),
            Writer::Client,
            false,
        );
        assert_eq!(elsewhere.unwrap_err().code, 404);
    }

    #[test]
    fn main_updates_keep_status_and_no_ops_keep_the_version() {
        let (mut store, catalogue) = setup();
        let job = catalogue.by_name("jobs").unwrap();
        let body = json!({"metadata": {"name": "j"}, "spec": {"x": 1}, "status": {"active": 1}});
        let created = store
            .create(job, "default", body, Writer::Test, false)
            .unwrap();
        let mut edited = created.clone();
        edited["status"] = json!({"succeeded": 1});
        let same = store
            .update(job, "default", "j", edited, Part::Main, false)
            .unwrap();
        assert_eq!(same, created);
        let mut edited = created.clone();
        edited["spec"]["x"] = 2.into();
        let updated = store
            .update(job, "default", "j", edited, Part::Main, false)
            .unwrap();
        assert_eq!(updated["metadata"]["generation"], 2);
        assert_eq!(updated["status"], json!({"active": 1}));
        let stale = store.update(job, "default", "j", created, Part::Main, false);
        assert_eq!(stale.unwrap_err().code, 409);
    }

    #[test]
    fn finalizers_hold_deletion_until_removed() {
        let (mut store, catalogue) = setup();
        let cm = catalogue.by_name("configmaps").unwrap();
        let body = json!({"metadata": {"name": "f", "finalizers": ["example.com/keep"]}});
        store
            .create(cm, "default", body, Writer::Client, false)
            .unwrap();
        let pending = store
            .delete(cm, "default", "f", &DeleteOptions::default())
            .unwrap();
        assert!(pending["metadata"]["deletionTimestamp"].is_string());
        let mut released = store.get(cm, "default", "f").unwrap();
        released["metadata"]["finalizers"] = json!([]);
        store
            .update(cm, "default", "f", released, Part::Main, false)
            .unwrap();
        assert!(store.get(cm, "default", "f").is_none());
    }

    #[test]
    fn deleting_cascades_to_owned_objects_and_namespace_contents() {
        let (mut store, catalogue) = setup();
        let job = catalogue.by_name("jobs").unwrap();
        let pod = catalogue.by_name("pods").unwrap();
        let owner = store
            .create(
                job,
                "default",
                json!({"metadata": {"name": "j"}}),
                Writer::Client,
                false,
            )
            .unwrap();
        let owned = json!({"metadata": {"name": "p", "ownerReferences": [{"uid": owner["metadata"]["uid"]}]}});
        store
            .create(pod, "default", owned, Writer::Client, false)
            .unwrap();
        store
            .delete(job, "default", "j", &DeleteOptions::default())
            .unwrap();
        assert!(
            store.get(pod, "default", "p").is_some(),
            "jobs orphan by default"
        );
        let background = DeleteOptions {
            propagation: Some(Propagation::Background),
            ..DeleteOptions::default()
        };
        let owner = store
            .create(
                job,
                "default",
                json!({"metadata": {"name": "j"}}),
                Writer::Client,
                false,
            )
            .unwrap();
        let mut repointed = store.get(pod, "default", "p").unwrap();
        repointed["metadata"]["ownerReferences"][0]["uid"] = owner["metadata"]["uid"].clone();
        store
            .update(pod, "default", "p", repointed, Part::Main, false)
            .unwrap();
        store.delete(job, "default", "j", &background).unwrap();
        assert!(store.get(pod, "default", "p").is_none());

        let ns = catalogue.by_name("namespaces").unwrap();
        store
            .create(
                pod,
                "default",
                json!({"metadata": {"name": "q"}}),
                Writer::Client,
                false,
            )
            .unwrap();
        store.delete(ns, "", "default", &background).unwrap();
        assert!(store.get(pod, "default", "q").is_none());
    }

    #[test]
    fn history_replays_after_a_version() {
        let (mut store, catalogue) = setup();
        let cm = catalogue.by_name("configmaps").unwrap();
        for name in ["a", "b"] {
            store
                .create(
                    cm,
                    "default",
                    json!({"metadata": {"name": name}}),
                    Writer::Client,
                    false,
                )
                .unwrap();
        }
        let after: Vec<u64> = store.changes_after(2).iter().map(|c| c.rv).collect();
        assert_eq!(after, [3]);
        store.expire_history();
        assert_eq!(store.oldest_watchable(), 3);
    }
}
