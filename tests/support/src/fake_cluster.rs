//! The state of one fake cluster and the test-side handle to it: seeding and
//! inspecting objects without HTTP, hooks that play controllers and the
//! kubelet, and the knobs that shape how the server answers (denials,
//! latency, version, token reviews, pod logs, the request log).
//!
//! Test-side methods panic on misuse (an unknown resource, a missing
//! object): they are assertions about the test's own setup.

use crate::fixtures;
use crate::resources::{Catalogue, ResourceType, name_matches};
use crate::status::Access;
use crate::store::{Change, ChangeKind, Part, Store, Writer};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// A cheap, cloneable handle to the fake cluster's state. Tests reach it
/// through [`crate::FakeApiServer`] (which dereferences to it); hooks receive
/// it so they can write back.
#[derive(Clone)]
pub struct FakeCluster {
    shared: Arc<Shared>,
}

struct Shared {
    store: Mutex<Store>,
    /// Carries the latest resourceVersion; watches wake on it.
    changed: tokio::sync::watch::Sender<u64>,
    settings: Mutex<Settings>,
    requests: Mutex<Vec<RecordedRequest>>,
    hooks: Mutex<Vec<Hook>>,
}

struct Settings {
    git_version: String,
    latency: Duration,
    denials: Vec<Denial>,
    token_reviews: HashMap<String, Value>,
    pod_logs: HashMap<(String, String), String>,
}

struct Denial {
    resource: String,
    verb: String,
    namespace: Option<String>,
}

impl Denial {
    /// `resource` may name a subresource (`pods/log`); a bare name covers the
    /// main resource only, as RBAC rules do, and `*` covers everything.
    fn covers(&self, access: &Access<'_>) -> bool {
        let (resource, subresource) = match self.resource.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (self.resource.as_str(), None),
        };
        let resource_ok = self.resource == "*"
            || (name_matches(resource, access.group, access.plural, access.kind)
                && subresource == access.subresource);
        resource_ok
            && (self.verb == "*" || self.verb == access.verb)
            && self
                .namespace
                .as_deref()
                .is_none_or(|ns| Some(ns) == access.namespace)
    }
}

type HookFn = Arc<dyn Fn(&FakeCluster, &Value) + Send + Sync>;

struct Hook {
    resource: String,
    on: ChangeKind,
    run: HookFn,
}

/// One HTTP request the server received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// The raw query string, empty when there was none.
    pub query: String,
    pub content_type: Option<String>,
    /// The request body as sent (UTF-8, lossily); empty when there was none.
    pub body: String,
}

impl RecordedRequest {
    /// The body parsed as JSON, when it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
    }

    /// A decoded query parameter.
    pub fn param(&self, key: &str) -> Option<String> {
        form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    }

    /// Whether the request could have changed state.
    pub fn is_write(&self) -> bool {
        matches!(self.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE")
    }
}

/// The user the fake kubeconfig authenticates as; Forbidden messages name it.
pub(crate) const USER: &str = "fake-user";

const DEFAULT_GIT_VERSION: &str = "v1.33.5";

impl FakeCluster {
    /// A cluster holding the namespaces every cluster starts with.
    pub(crate) fn new() -> Self {
        let cluster = FakeCluster {
            shared: Arc::new(Shared {
                store: Mutex::new(Store::new()),
                changed: tokio::sync::watch::Sender::new(0),
                settings: Mutex::new(Settings {
                    git_version: DEFAULT_GIT_VERSION.into(),
                    latency: Duration::ZERO,
                    denials: Vec::new(),
                    token_reviews: HashMap::new(),
                    pod_logs: HashMap::new(),
                }),
                requests: Mutex::new(Vec::new()),
                hooks: Mutex::new(Vec::new()),
            }),
        };
        for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            cluster.insert(fixtures::namespace(name));
        }
        cluster
    }

    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.shared.store)
    }

    fn settings(&self) -> MutexGuard<'_, Settings> {
        lock(&self.shared.settings)
    }

    pub(crate) fn catalogue(&self) -> Catalogue {
        self.store().catalogue()
    }

    pub(crate) fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.changed.subscribe()
    }

    /// Runs a store operation, then wakes watches and runs hooks for what it
    /// changed, with no lock held so hooks may write back.
    pub(crate) fn write<T>(&self, operation: impl FnOnce(&mut Store) -> T) -> T {
        let (result, changes, last_rv) = {
            let mut store = self.store();
            let before = store.last_rv();
            let result = operation(&mut store);
            let changes: Vec<Change> = store.changes_after(before).to_vec();
            (result, changes, store.last_rv())
        };
        if changes.is_empty() {
            return result;
        }
        self.shared.changed.send_replace(last_rv);
        for change in changes {
            let (group, plural) = &change.key;
            let kind = change.object["kind"].as_str().unwrap_or_default();
            let hooks: Vec<HookFn> = lock(&self.shared.hooks)
                .iter()
                .filter(|h| h.on == change.kind && name_matches(&h.resource, group, plural, kind))
                .map(|h| h.run.clone())
                .collect();
            for hook in hooks {
                hook(self, &change.object);
            }
        }
        result
    }

    fn resource(&self, name: &str) -> ResourceType {
        match self.catalogue().by_name(name) {
            Ok(rt) => rt.clone(),
            Err(e) => panic!("{e}"),
        }
    }

    /// Stores `object` (creating or replacing it) with every field it has,
    /// status included, resolving its type from `apiVersion` and `kind`.
    /// Namespaced objects without a namespace go to `default`; the namespace
    /// need not exist. Returns the object as stored.
    pub fn insert(&self, object: Value) -> Value {
        let api_version = object["apiVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let kind = object["kind"].as_str().unwrap_or_default().to_string();
        let catalogue = self.catalogue();
        let Some(rt) = catalogue.by_api_version_kind(&api_version, &kind) else {
            panic!(
                "the fake API server serves no {kind} in {api_version:?}; register its CRD first"
            )
        };
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let result = self.write(|store| {
            if store.get(rt, &namespace, &name).is_some() {
                store.update(rt, &namespace, &name, object, Part::Whole, false)
            } else {
                store.create(rt, &namespace, object, Writer::Test, false)
            }
        });
        result.unwrap_or_else(|e| {
            panic!(
                "cannot insert {kind} {name:?}: {}",
                e.to_status()["message"]
            )
        })
    }

    /// One object. `resource` is a plural (`configmaps`), a plural with its
    /// group (`jobs.batch`) or a kind (`ConfigMap`); `namespace` is `""` for
    /// cluster-scoped objects.
    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        let rt = self.resource(resource);
        self.store().get(&rt, namespace, name)
    }

    /// Objects of a type in one namespace, or in all when `namespace` is `""`.
    pub fn list(&self, resource: &str, namespace: &str) -> Vec<Value> {
        let rt = self.resource(resource);
        let namespace = (!namespace.is_empty()).then_some(namespace);
        self.store().list(&rt, namespace)
    }

    /// Edits a stored object in place (any field, status included) as one
    /// write with a new resourceVersion. Panics if it does not exist.
    pub fn modify(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        edit: impl FnOnce(&mut Value),
    ) -> Value {
        let rt = self.resource(resource);
        let result = self.write(|store| {
            let mut object = store.get(&rt, namespace, name)?;
            edit(&mut object);
            Some(store.update(&rt, namespace, name, object, Part::Whole, false))
        });
        match result {
            Some(Ok(object)) => object,
            Some(Err(e)) => panic!(
                "cannot modify {resource} {name:?}: {}",
                e.to_status()["message"]
            ),
            None => panic!("cannot modify {resource} {name:?}: it does not exist"),
        }
    }

    /// Replaces an object's status, as a controller would.
    pub fn update_status(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        status: Value,
    ) -> Value {
        self.modify(resource, namespace, name, |object| {
            object["status"] = status
        })
    }

    /// Removes an object at once, ignoring finalizers and owned objects.
    pub fn delete(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        let rt = self.resource(resource);
        self.write(|store| store.remove(&rt, namespace, name))
    }

    /// Installs a CRD (a CustomResourceDefinition object, so it is also
    /// visible through the API) with a status subresource; registering
    /// another version of the same CRD adds that version.
    pub fn register_crd(
        &self,
        group: &str,
        version: &str,
        kind: &str,
        plural: &str,
        namespaced: bool,
    ) {
        let name = format!("{plural}.{group}");
        let crd = fixtures::crd(group, version, kind, plural, namespaced);
        let Some(existing) = self.get("customresourcedefinitions", "", &name) else {
            self.insert(crd);
            return;
        };
        let known = existing["spec"]["versions"]
            .as_array()
            .is_some_and(|vs| vs.iter().any(|v| v["name"] == version));
        if !known {
            self.modify("customresourcedefinitions", "", &name, |object| {
                let mut added = crd["spec"]["versions"][0].clone();
                added["storage"] = false.into();
                if let Some(versions) = object["spec"]["versions"].as_array_mut() {
                    versions.push(added);
                }
            });
        }
    }

    fn add_hook(
        &self,
        resource: &str,
        on: ChangeKind,
        hook: impl Fn(&FakeCluster, &Value) + Send + Sync + 'static,
    ) {
        lock(&self.shared.hooks).push(Hook {
            resource: resource.into(),
            on,
            run: Arc::new(hook),
        });
    }

    /// Plays the kubelet for `aicr`'s snapshot agent Jobs: when one is
    /// created, "the agent" writes `snapshot` (YAML) to the `cm://` URI that
    /// is the Job's last argument and the Job completes.
    pub fn agent_jobs_write(&self, snapshot: impl Into<String>) {
        self.agent_jobs_write_after(snapshot, std::time::Duration::ZERO);
    }

    /// [`agent_jobs_write`](Self::agent_jobs_write), with the agent taking
    /// `delay` to finish (and the Job staying unchanged meanwhile).
    pub fn agent_jobs_write_after(&self, snapshot: impl Into<String>, delay: std::time::Duration) {
        let snapshot: String = snapshot.into();
        self.on_create("jobs", move |cluster, job| {
            let ns = job["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let name = job["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let uri = job["spec"]["template"]["spec"]["containers"][0]["args"]
                .as_array()
                .and_then(|a| a.last())
                .and_then(Value::as_str)
                .expect("the agent Job's last argument is its output URI");
            let (cm_ns, cm_name) = uri
                .trim_start_matches("cm://")
                .split_once('/')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .expect("the output URI is cm://NAMESPACE/NAME");
            let (cluster, snapshot) = (cluster.clone(), snapshot.clone());
            let finish = move || {
                cluster.insert(crate::fixtures::config_map(
                    &cm_ns,
                    &cm_name,
                    &[("snapshot.yaml", &snapshot), ("format", "yaml")],
                ));
                cluster.update_status("jobs", &ns, &name, crate::fixtures::job_complete_status());
            };
            if delay.is_zero() {
                finish();
            } else {
                std::thread::spawn(move || {
                    std::thread::sleep(delay);
                    finish();
                });
            }
        });
    }

    /// Runs `hook` after each object of `resource` is created, by a client
    /// or by the test, with the object as stored. Hooks play the controllers
    /// and kubelet the fake lacks (complete a Job, start its pod). A hook
    /// runs before the triggering request is answered, so its writes are
    /// visible to the client's next call; spawn a thread from it for effects
    /// that should come later.
    pub fn on_create(
        &self,
        resource: &str,
        hook: impl Fn(&FakeCluster, &Value) + Send + Sync + 'static,
    ) {
        self.add_hook(resource, ChangeKind::Added, hook);
    }

    /// Runs `hook` after each object of `resource` is gone (not merely
    /// marked for deletion).
    pub fn on_delete(
        &self,
        resource: &str,
        hook: impl Fn(&FakeCluster, &Value) + Send + Sync + 'static,
    ) {
        self.add_hook(resource, ChangeKind::Deleted, hook);
    }

    /// Answers `verb` on `resource` with 403 Forbidden in every namespace;
    /// access reviews report it as denied. `resource` is a plural, a
    /// `plural.group`, a kind, `plural/subresource` or `*`; `verb` is a
    /// Kubernetes verb (`get`, `list`, `watch`, `create`, `update`, `patch`,
    /// `delete`, `deletecollection`) or `*`.
    pub fn deny(&self, resource: &str, verb: &str) {
        self.settings().denials.push(Denial {
            resource: resource.into(),
            verb: verb.into(),
            namespace: None,
        });
    }

    /// Like [`FakeCluster::deny`], for one namespace only.
    pub fn deny_in(&self, resource: &str, verb: &str, namespace: &str) {
        self.settings().denials.push(Denial {
            resource: resource.into(),
            verb: verb.into(),
            namespace: Some(namespace.into()),
        });
    }

    /// Lifts every denial.
    pub fn allow_all(&self) {
        self.settings().denials.clear();
    }

    pub(crate) fn is_denied(&self, access: &Access<'_>) -> bool {
        self.settings().denials.iter().any(|d| d.covers(access))
    }

    /// Delays every response by `latency` (zero turns it off), so clients
    /// with timeouts can be made to hit them.
    pub fn set_latency(&self, latency: Duration) {
        self.settings().latency = latency;
    }

    pub(crate) fn latency(&self) -> Duration {
        self.settings().latency
    }

    /// The `gitVersion` `/version` reports, e.g. `v1.33.5-eks-3025e55`.
    pub fn set_server_version(&self, git_version: &str) {
        self.settings().git_version = git_version.into();
    }

    pub(crate) fn git_version(&self) -> String {
        self.settings().git_version.clone()
    }

    /// Makes TokenReviews of `token` authenticate as `username` in `groups`;
    /// any other token is reported unauthenticated.
    pub fn accept_token(&self, token: &str, username: &str, groups: &[&str]) {
        let status = json!({
            "authenticated": true,
            "user": {"username": username, "groups": groups},
        });
        self.settings().token_reviews.insert(token.into(), status);
    }

    /// As [`Self::accept_token`], with the `extra` user info a bound
    /// ServiceAccount token carries, e.g.
    /// `("authentication.kubernetes.io/node-name", "gpu-1")`.
    pub fn accept_token_with_extra(
        &self,
        token: &str,
        username: &str,
        groups: &[&str],
        extra: &[(&str, &str)],
    ) {
        let mut info = serde_json::Map::new();
        for (k, v) in extra {
            info.insert((*k).to_string(), json!([v]));
        }
        let status = json!({
            "authenticated": true,
            "user": {"username": username, "groups": groups, "extra": info},
        });
        self.settings().token_reviews.insert(token.into(), status);
    }

    pub(crate) fn token_review_status(&self, token: &str) -> Value {
        self.settings()
            .token_reviews
            .get(token)
            .cloned()
            .unwrap_or_else(|| json!({"user": {}, "error": "invalid bearer token"}))
    }

    /// The text `GET …/pods/{pod}/log` returns.
    pub fn set_pod_log(&self, namespace: &str, pod: &str, log: &str) {
        self.settings()
            .pod_logs
            .insert((namespace.into(), pod.into()), log.into());
    }

    pub(crate) fn pod_log(&self, namespace: &str, pod: &str) -> String {
        self.settings()
            .pod_logs
            .get(&(namespace.into(), pod.into()))
            .cloned()
            .unwrap_or_default()
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Forgets the requests received so far (e.g. after seeding through a client).
    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }

    pub(crate) fn record_request(&self, request: RecordedRequest) {
        lock(&self.shared.requests).push(request);
    }

    /// Makes watches that resume from any resourceVersion issued so far fail
    /// with `410 Expired`, as after etcd compaction, so clients must re-list.
    pub fn expire_watch_history(&self) {
        self.store().expire_history();
    }
}

/// A panicking test or hook must not wedge the server for the tests after it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
