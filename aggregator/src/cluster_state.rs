//! Cluster-level state from the Kubernetes API, kept current by watches:
//! server version (polled), container images (Pods), ClusterPolicy, and
//! Nodes (labels and taints for NodeTopology, node info for `K8s.node`).
//! The readings are the core's (`aicr::kubernetes::measure`), so they match what
//! `aicr snapshot` captures.
//!
//! A watch's view is published only once its initial list is complete, and
//! a re-list replaces the view only when it completes: an unsynced cache is
//! never mistaken for an empty cluster. Objects are stripped to the fields
//! the readings need, which also makes status-only churn invisible. This
//! module must not judge anything; it hands readings to the hub.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use aicr::kubernetes::measure::{
    TopologyNode, cluster_policy_resources, flatten_policy, images_subtype, node_subtype_of,
    topology,
};
use aicr::model::snapshot::Subtype;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    Container, EphemeralContainer, Node, NodeSystemInfo, Pod, PodSpec, Taint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::api::{Api, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::hub::{Hub, NodeObject};

/// Collections are re-read into readings at most this often, so a burst
/// of object changes costs one recomputation.
const DEBOUNCE: Duration = Duration::from_millis(500);
/// A recomputation that took `t` waits at least this many times `t`
/// before the next, so one watch never takes more than about a tenth of
/// a core. It matters for large clusters whose Nodes change all the time:
/// at 10,000 Nodes with a hundred labels each, the NodeTopology readings
/// take about a tenth of a second to build, and a discovery time stamp
/// label changes on some Node every few milliseconds.
const FLUSH_BACKOFF: u32 = 10;
/// How often to look again for a ClusterPolicy CRD that was not installed.
const REDISCOVER: Duration = Duration::from_secs(300);

/// A watched collection as complete lists only.
struct Mirror<T> {
    current: BTreeMap<String, T>,
    pending: Option<BTreeMap<String, T>>,
    synced: bool,
}

impl<T> Default for Mirror<T> {
    fn default() -> Self {
        Mirror {
            current: BTreeMap::new(),
            pending: None,
            synced: false,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Step {
    Nothing,
    Synced,
    Upsert(String),
    Removed(String),
}

fn key<K: Resource>(o: &K) -> String {
    let meta = o.meta();
    match &meta.namespace {
        Some(ns) => format!("{ns}/{}", meta.name.clone().unwrap_or_default()),
        None => meta.name.clone().unwrap_or_default(),
    }
}

impl<T: PartialEq> Mirror<T> {
    fn step<K: Resource>(&mut self, ev: Event<K>, strip: impl Fn(K) -> T) -> Step {
        match ev {
            Event::Init => {
                self.pending = Some(BTreeMap::new());
                Step::Nothing
            }
            Event::InitApply(o) => {
                if let Some(p) = self.pending.as_mut() {
                    p.insert(key(&o), strip(o));
                }
                Step::Nothing
            }
            Event::InitDone => {
                self.current = self.pending.take().unwrap_or_default();
                self.synced = true;
                Step::Synced
            }
            Event::Apply(o) => {
                let k = key(&o);
                let v = strip(o);
                if self.current.get(&k) == Some(&v) {
                    return Step::Nothing;
                }
                self.current.insert(k.clone(), v);
                if self.synced {
                    Step::Upsert(k)
                } else {
                    Step::Nothing
                }
            }
            Event::Delete(o) => {
                let k = key(&o);
                if self.current.remove(&k).is_some() && self.synced {
                    Step::Removed(k)
                } else {
                    Step::Nothing
                }
            }
        }
    }
}

/// One label, `key=value`, shared by every Node that carries it.
type Label = Arc<(String, String)>;

/// A Node as the readings need it, and nothing else. GPU nodes carry a
/// hundred or more labels from feature discovery, nearly all the same
/// across a pool, so each label is held once for every Node that carries
/// it (see [`Labels`]) and a Node keeps one pointer per label. The rest is
/// the few fields the readings use, not a stripped `Node`: the API type's
/// empty fields alone take over a kilobyte, once per Node in the cluster.
#[derive(Debug, PartialEq)]
struct KeptNode {
    name: Box<str>,
    provider_id: Option<Box<str>>,
    taints: Box<[Taint]>,
    /// Boxed: ten strings every Node has, or none before its kubelet
    /// reports.
    info: Option<Box<NodeSystemInfo>>,
    /// Sorted by key, as the API's map hands them over.
    labels: Box<[Label]>,
}

impl KeptNode {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .binary_search_by(|l| l.0.as_str().cmp(key))
            .ok()
            .map(|i| self.labels[i].1.as_str())
    }

    /// The `K8s.node` subtype, read as from the API's Node.
    fn subtype(&self, name: &str) -> Subtype {
        node_subtype_of(name, self.provider_id.as_deref(), self.info.as_deref())
    }
}

impl TopologyNode for KeptNode {
    fn node_name(&self) -> &str {
        &self.name
    }

    fn node_taints(&self) -> &[Taint] {
        &self.taints
    }

    fn node_labels(&self) -> impl Iterator<Item = (&str, &str)> {
        self.labels.iter().map(|l| (l.0.as_str(), l.1.as_str()))
    }
}

/// Every label some Node carries, one copy each. A label no Node holds any
/// more is dropped at the next [`Labels::sweep`], so values that change all
/// the time (discovery time stamps) do not pile up. Only the Node watch
/// uses it; the lock is there because two of the watch's closures borrow
/// it and its future must stay `Send`.
#[derive(Default)]
struct Labels(Mutex<HashSet<Label>>);

impl Labels {
    fn get(&self, label: (String, String)) -> Label {
        let mut set = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(held) = set.get(&label) {
            return held.clone();
        }
        let held = Arc::new(label);
        set.insert(held.clone());
        held
    }

    fn sweep(&self) {
        let mut set = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        set.retain(|l| Arc::strong_count(l) > 1);
    }

    fn keep(&self, n: Node) -> KeptNode {
        let labels = n
            .metadata
            .labels
            .into_iter()
            .flatten()
            .map(|label| self.get(label))
            .collect();
        let (provider_id, taints) = n
            .spec
            .map(|s| (s.provider_id, s.taints))
            .unwrap_or_default();
        KeptNode {
            name: n.metadata.name.unwrap_or_default().into(),
            provider_id: provider_id.map(String::into_boxed_str),
            taints: taints.unwrap_or_default().into(),
            info: n.status.and_then(|s| s.node_info).map(Box::new),
            labels,
        }
    }
}

fn strip_pod(p: Pod) -> Pod {
    let image_only = |c: Container| Container {
        name: c.name,
        image: c.image,
        ..Default::default()
    };
    Pod {
        metadata: ObjectMeta {
            name: p.metadata.name,
            namespace: p.metadata.namespace,
            ..Default::default()
        },
        spec: p.spec.map(|s| PodSpec {
            containers: s.containers.into_iter().map(image_only).collect(),
            init_containers: s
                .init_containers
                .map(|cs| cs.into_iter().map(image_only).collect()),
            ephemeral_containers: s.ephemeral_containers.map(|cs| {
                cs.into_iter()
                    .map(|c| EphemeralContainer {
                        name: c.name,
                        image: c.image,
                        ..Default::default()
                    })
                    .collect()
            }),
            ..Default::default()
        }),
        status: None,
    }
}

/// Start every watch; they run until `cancel`. Each watch asks the API
/// server to end it after `watch_timeout` seconds (then reopens it), which
/// must be below the client's read timeout.
pub fn spawn(
    client: kube::Client,
    hub: Arc<Hub>,
    version_poll: Duration,
    watch_timeout: u32,
    cancel: CancellationToken,
) -> Vec<JoinHandle<()>> {
    hub.watch_node_objects();
    let watch = watcher::Config::default()
        .any_semantic()
        .timeout(watch_timeout);
    vec![
        tokio::spawn(version(
            client.clone(),
            hub.clone(),
            version_poll,
            cancel.clone(),
        )),
        tokio::spawn(nodes(
            client.clone(),
            watch.clone(),
            hub.clone(),
            cancel.clone(),
        )),
        tokio::spawn(pods(
            client.clone(),
            watch.clone(),
            hub.clone(),
            cancel.clone(),
        )),
        tokio::spawn(policy(client, watch, hub, cancel)),
    ]
}

async fn version(client: kube::Client, hub: Arc<Hub>, poll: Duration, cancel: CancellationToken) {
    loop {
        match client.apiserver_version().await {
            Ok(info) => hub.cluster_update(vec![(
                "K8s.server".into(),
                Subtype::new("server")
                    .with("version", info.git_version)
                    .with("platform", info.platform)
                    .with("goVersion", info.go_version),
            )]),
            Err(e) => tracing::warn!("cannot read the server version: {e}"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

/// Follow one resource kind through a watcher into a [`Mirror`]: every
/// change goes to `on_step` at once, and `flush` recomputes readings from
/// the whole (synced) collection at most once per [`DEBOUNCE`].
async fn follow<K, T>(
    api: Api<K>,
    watch: watcher::Config,
    what: &str,
    strip: impl Fn(K) -> T,
    cancel: CancellationToken,
    mut on_step: impl FnMut(&Mirror<T>, &Step),
    mut flush: impl FnMut(&Mirror<T>),
) where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    T: PartialEq,
{
    let mut stream = watcher(api, watch).default_backoff().boxed();
    let mut m: Mirror<T> = Mirror::default();
    let mut dirty = false;
    let mut tick = tokio::time::interval(DEBOUNCE);
    let mut quiet_until = Instant::now();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {
                if dirty && m.synced && Instant::now() >= quiet_until {
                    dirty = false;
                    let started = Instant::now();
                    flush(&m);
                    quiet_until = Instant::now() + started.elapsed() * FLUSH_BACKOFF;
                }
            }
            ev = stream.next() => match ev {
                None => return,
                Some(Err(e)) => tracing::warn!("{what} watch: {e}"),
                Some(Ok(ev)) => {
                    let step = m.step(ev, &strip);
                    if step != Step::Nothing {
                        dirty = true;
                        on_step(&m, &step);
                    }
                }
            },
        }
    }
}

async fn nodes(
    client: kube::Client,
    watch: watcher::Config,
    hub: Arc<Hub>,
    cancel: CancellationToken,
) {
    let labels = Labels::default();
    let object = |k: &str, n: &KeptNode| NodeObject {
        subtype: n.subtype(k),
        pool: hub.pool_of(|key| n.label(key)),
    };
    let on_step = |m: &Mirror<KeptNode>, step: &Step| match step {
        Step::Nothing => {}
        Step::Synced => hub.node_objects_synced(
            m.current
                .iter()
                .map(|(k, n)| (k.clone(), object(k, n)))
                .collect(),
        ),
        Step::Upsert(k) => hub.node_object(k, m.current.get(k).map(|n| object(k, n))),
        Step::Removed(k) => hub.node_object(k, None),
    };
    let flush = |m: &Mirror<KeptNode>| {
        labels.sweep();
        let t = topology(m.current.values(), 0);
        hub.cluster_update(
            t.subtypes
                .into_iter()
                .map(|s| (format!("NodeTopology.{}", s.subtype), s))
                .collect(),
        );
    };
    follow(
        Api::<Node>::all(client),
        watch,
        "node",
        |n| labels.keep(n),
        cancel,
        on_step,
        flush,
    )
    .await;
}

async fn pods(
    client: kube::Client,
    watch: watcher::Config,
    hub: Arc<Hub>,
    cancel: CancellationToken,
) {
    let flush = |m: &Mirror<Pod>| {
        hub.cluster_update(vec![(
            "K8s.image".into(),
            images_subtype(m.current.values()),
        )]);
    };
    follow(
        Api::<Pod>::all(client),
        watch,
        "pod",
        strip_pod,
        cancel,
        |_, _| {},
        flush,
    )
    .await;
}

fn policy_subtype(specs: &BTreeMap<String, Value>) -> Subtype {
    let mut st = Subtype::new("policy");
    for spec in specs.values() {
        flatten_policy("", spec, &mut st.data);
    }
    st
}

async fn policy(
    client: kube::Client,
    watch: watcher::Config,
    hub: Arc<Hub>,
    cancel: CancellationToken,
) {
    let ar = loop {
        match cluster_policy_resources(&client)
            .await
            .map(|r| r.into_iter().next())
        {
            Ok(Some(ar)) => break ar,
            Ok(None) => {
                // No CRD, so no ClusterPolicy: a known, empty reading.
                hub.cluster_update(vec![("K8s.policy".into(), Subtype::new("policy"))]);
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(REDISCOVER) => {}
                }
            }
            Err(e) => {
                tracing::warn!("cannot discover ClusterPolicy: {e}");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(10)) => {}
                }
            }
        }
    };
    let api: Api<DynamicObject> = Api::all_with(client, &ar);
    let spec = |o: DynamicObject| o.data.get("spec").cloned().unwrap_or(Value::Null);
    let flush = |m: &Mirror<Value>| {
        hub.cluster_update(vec![("K8s.policy".into(), policy_subtype(&m.current))]);
    };
    follow(api, watch, "ClusterPolicy", spec, cancel, |_, _| {}, flush).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use aicr::kubernetes::measure::node_subtype;
    use k8s_openapi::api::core::v1::{NodeSpec, NodeStatus};
    use serde_json::json;

    fn node(name: &str, pool: &str) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"pool": pool}, "annotations": {"x": "y"}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap()
    }

    #[test]
    fn mirror_publishes_only_complete_lists() {
        let labels = Labels::default();
        let strip_node = |n| labels.keep(n);
        let mut m: Mirror<KeptNode> = Mirror::default();
        assert_eq!(m.step(Event::Init, strip_node), Step::Nothing);
        assert_eq!(
            m.step(Event::InitApply(node("a", "gpu")), strip_node),
            Step::Nothing
        );
        assert!(
            !m.synced && m.current.is_empty(),
            "a partial list is not the cluster"
        );
        assert_eq!(m.step(Event::InitDone, strip_node), Step::Synced);
        assert_eq!(m.current.len(), 1);
        // A re-list keeps the old view until it completes.
        m.step(Event::Init, strip_node);
        m.step(Event::InitApply(node("b", "gpu")), strip_node);
        assert!(m.current.contains_key("a"));
        m.step(Event::InitDone, strip_node);
        assert!(m.current.contains_key("b") && !m.current.contains_key("a"));
    }

    #[test]
    fn status_churn_is_invisible_after_stripping() {
        let labels = Labels::default();
        let strip_node = |n| labels.keep(n);
        let mut m: Mirror<KeptNode> = Mirror::default();
        m.step(Event::Init, strip_node);
        m.step(Event::InitApply(node("a", "gpu")), strip_node);
        m.step(Event::InitDone, strip_node);
        let mut churned = node("a", "gpu");
        churned.metadata.annotations = Some([("x".to_string(), "z".to_string())].into());
        assert_eq!(m.step(Event::Apply(churned), strip_node), Step::Nothing);
        assert_eq!(
            m.step(Event::Apply(node("a", "cpu")), strip_node),
            Step::Upsert("a".into())
        );
        assert_eq!(
            m.step(Event::Delete(node("a", "cpu")), strip_node),
            Step::Removed("a".into())
        );
    }

    #[test]
    fn labels_are_held_once_and_dropped_with_the_last_node() {
        let labels = Labels::default();
        let a = labels.keep(node("a", "gpu"));
        let b = labels.keep(node("b", "gpu"));
        assert!(Arc::ptr_eq(&a.labels[0], &b.labels[0]));
        assert_eq!((a.label("pool"), a.label("zone")), (Some("gpu"), None));
        let held = |s: &Labels| s.0.lock().unwrap().len();
        drop(a);
        labels.sweep();
        assert_eq!(held(&labels), 1, "b still holds pool=gpu");
        drop(b);
        labels.sweep();
        assert_eq!(held(&labels), 0);
    }

    #[test]
    fn kept_nodes_give_the_topology_and_readings_of_the_api_nodes() {
        let mut gpu = node("gpu-1", "gpu");
        gpu.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("zone".into(), "a".into());
        gpu.spec = Some(NodeSpec {
            taints: Some(vec![Taint {
                key: "nvidia.com/gpu".into(),
                effect: "NoSchedule".into(),
                value: Some("present".into()),
                ..Default::default()
            }]),
            provider_id: Some("aws:///us-east-1a/i-0abc".into()),
            ..Default::default()
        });
        gpu.status = Some(NodeStatus {
            node_info: Some(NodeSystemInfo {
                container_runtime_version: "containerd://2.0.5".into(),
                kernel_version: "6.8.0-1028-aws".into(),
                kubelet_version: "v1.33.5".into(),
                os_image: "Ubuntu 24.04.2 LTS".into(),
                operating_system: "linux".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        let nodes = vec![gpu, node("gpu-2", "gpu"), node("cpu-1", "cpu")];
        let labels = Labels::default();
        let kept: Vec<KeptNode> = nodes.iter().cloned().map(|n| labels.keep(n)).collect();
        assert_eq!(topology(&kept, 0), topology(&nodes, 0));
        for (k, n) in kept.iter().zip(&nodes) {
            let name = n.node_name();
            assert_eq!(k.subtype(name), node_subtype(name, n));
        }
        assert!(
            node_subtype(nodes[0].node_name(), &nodes[0]).data.len() > 5,
            "the GPU node's provider and node info are read"
        );
    }
}
