//! What the Kubernetes API says about a cluster, as snapshot measurements:
//! `K8s` (server version, images, ClusterPolicy, this node) and
//! `NodeTopology` (taints and labels across all nodes). The encodings are
//! pure functions over API objects; the async functions only fetch. Used
//! by `aicr snapshot` and the aggregator's cluster-level state.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, NodeSystemInfo, Pod, Taint};
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::discovery::Discovery;
use serde_json::Value;

use crate::error::Result;
use crate::kubernetes::api_error;
use crate::model::snapshot::{Measurement, Reading, Subtype};
use crate::yaml;

/// `registry/path/name:tag@digest` → (`name`, `tag`), `latest` by default.
pub(crate) fn image_name_tag(image: &str) -> Option<(String, String)> {
    let last = image.rsplit('/').next()?;
    let last = last.split('@').next().unwrap_or(last);
    if last.is_empty() {
        return None;
    }
    Some(match last.rsplit_once(':') {
        Some((n, t)) => (n.to_string(), t.to_string()),
        None => (last.to_string(), "latest".to_string()),
    })
}

/// The `image` subtype: every container image of every pod, name → tag,
/// later occurrences winning.
pub fn images_subtype<'a>(pods: impl IntoIterator<Item = &'a Pod>) -> Subtype {
    let mut st = Subtype::new("image");
    for pod in pods {
        let Some(spec) = &pod.spec else { continue };
        let images = spec
            .containers
            .iter()
            .map(|c| c.image.as_deref())
            .chain(
                spec.init_containers
                    .iter()
                    .flatten()
                    .map(|c| c.image.as_deref()),
            )
            .chain(
                spec.ephemeral_containers
                    .iter()
                    .flatten()
                    .map(|c| c.image.as_deref()),
            );
        for image in images.flatten().filter(|i| !i.is_empty()) {
            if let Some((n, t)) = image_name_tag(image) {
                st.data.insert(n, Reading::Str(t));
            }
        }
    }
    st
}

/// Flatten a ClusterPolicy `spec` into dotted keys with string values:
/// lists become compact JSON, null becomes `<nil>`, empty maps/lists vanish.
pub fn flatten_policy(prefix: &str, v: &Value, out: &mut BTreeMap<String, Reading>) {
    let key = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                flatten_policy(&key(k), v, out);
            }
        }
        Value::Array(a) if a.is_empty() => {}
        Value::Array(_) => {
            out.insert(prefix.to_string(), Reading::Str(sorted_json(v)));
        }
        Value::String(s) => {
            out.insert(prefix.to_string(), Reading::Str(s.clone()));
        }
        Value::Bool(b) => {
            out.insert(prefix.to_string(), Reading::Str(b.to_string()));
        }
        Value::Number(n) => {
            let text = match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => i.to_string(),
                (_, Some(u), _) => u.to_string(),
                (_, _, Some(f)) => yaml::go_float(f),
                _ => n.to_string(),
            };
            out.insert(prefix.to_string(), Reading::Str(text));
        }
        Value::Null => {
            out.insert(prefix.to_string(), Reading::Str("<nil>".into()));
        }
    }
}

/// Compact JSON with object keys sorted, whatever serde_json's map order.
fn sorted_json(v: &Value) -> String {
    fn sort(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let sorted: BTreeMap<&String, Value> =
                    m.iter().map(|(k, v)| (k, sort(v))).collect();
                Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
            }
            Value::Array(a) => Value::Array(a.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    sort(v).to_string()
}

/// The `node` subtype for the node this process runs on.
pub fn node_subtype(name: &str, node: &Node) -> Subtype {
    node_subtype_of(
        name,
        node.spec.as_ref().and_then(|s| s.provider_id.as_deref()),
        node.status.as_ref().and_then(|s| s.node_info.as_ref()),
    )
}

/// The `node` subtype from the only parts of a Node it reads, for callers
/// that keep Nodes in a leaner form.
pub fn node_subtype_of(
    name: &str,
    provider_id: Option<&str>,
    info: Option<&NodeSystemInfo>,
) -> Subtype {
    let mut st = Subtype::new("node").with("source-node", name);
    let mut put = |k: &str, v: &str| {
        if !v.is_empty() {
            st.data.insert(k.to_string(), Reading::Str(v.to_string()));
        }
    };
    let provider_id = provider_id.unwrap_or_default();
    put("provider-id", provider_id);
    if !provider_id.is_empty() {
        let scheme = provider_id
            .split("://")
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let provider = match scheme.as_str() {
            "aws" => "eks",
            "gce" => "gke",
            "azure" => "aks",
            "oci" => "oke",
            other => other,
        };
        put("provider", provider);
    }
    if let Some(info) = info {
        put("container-runtime-id", &info.container_runtime_version);
        if let Some((n, v)) = info.container_runtime_version.split_once("://") {
            put("container-runtime-name", n);
            put("container-runtime-version", v);
        }
        put("kubelet-version", &info.kubelet_version);
        put("kernel-version", &info.kernel_version);
        put("operating-system", &info.operating_system);
        put("os-image", &info.os_image);
    }
    st
}

/// `prefix` then the nodes' names, sorted, comma-separated, capped at `max`
/// (0 = all).
fn node_list(prefix: &str, names: &mut Vec<&str>, max: usize) -> String {
    names.sort_unstable();
    names.dedup();
    let shown = if max > 0 {
        names.len().min(max)
    } else {
        names.len()
    };
    let mut out = String::with_capacity(
        prefix.len() + names[..shown].iter().map(|n| n.len() + 1).sum::<usize>() + 16,
    );
    out.push_str(prefix);
    for (i, n) in names[..shown].iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(n);
    }
    if shown < names.len() {
        out.push_str(&format!(" (+{} more)", names.len() - shown));
    }
    out
}

/// What the NodeTopology measurement reads of a Node. `aicr snapshot`
/// passes the API's `Node`s; the aggregator keeps its Nodes in a leaner
/// form (a GPU node carries a hundred or more discovery labels) and
/// implements this for that.
pub trait TopologyNode {
    fn node_name(&self) -> &str;
    fn node_taints(&self) -> &[Taint];
    fn node_labels(&self) -> impl Iterator<Item = (&str, &str)>;
}

impl TopologyNode for Node {
    fn node_name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }

    fn node_taints(&self) -> &[Taint] {
        self.spec
            .as_ref()
            .and_then(|s| s.taints.as_deref())
            .unwrap_or_default()
    }

    fn node_labels(&self) -> impl Iterator<Item = (&str, &str)> {
        self.metadata
            .labels
            .iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// The NodeTopology measurement: taints by (key, effect, value) and labels
/// by (key, value), each with the nodes carrying them; `max` caps the node
/// lists (0 = unlimited). Everything is borrowed from the nodes until the
/// readings are rendered, so a large cluster costs no copy per label.
pub fn topology<'a, N: TopologyNode + 'a>(
    nodes: impl IntoIterator<Item = &'a N>,
    max: usize,
) -> Measurement {
    // Node names arrive sorted from the API and the aggregator, so lists
    // sorted once at the end cost far less than ordered sets.
    type Holders<'a> = Vec<&'a str>;
    let mut taints: BTreeMap<&str, BTreeMap<(&str, &str), Holders>> = BTreeMap::new();
    let mut labels: BTreeMap<&str, BTreeMap<&str, Holders>> = BTreeMap::new();
    let mut count = 0_i64;
    for node in nodes {
        count += 1;
        let name = node.node_name();
        for t in node.node_taints() {
            taints
                .entry(t.key.as_str())
                .or_default()
                .entry((t.effect.as_str(), t.value.as_deref().unwrap_or_default()))
                .or_default()
                .push(name);
        }
        for (k, v) in node.node_labels() {
            labels
                .entry(k)
                .or_default()
                .entry(v)
                .or_default()
                .push(name);
        }
    }
    let mut taint = Subtype::new("taint");
    for (key, pairs) in &mut taints {
        if pairs.len() == 1 {
            let ((effect, value), names) = pairs.iter_mut().next().expect("one pair");
            taint.data.insert(
                key.to_string(),
                Reading::Str(node_list(&format!("{effect}|{value}|"), names, max)),
            );
        } else {
            // Same key and effect with different values collide on one key;
            // iterating in order keeps the value that sorts last.
            for ((effect, value), names) in pairs.iter_mut() {
                taint.data.insert(
                    format!("{key}.{effect}"),
                    Reading::Str(node_list(&format!("{value}|"), names, max)),
                );
            }
        }
    }
    let mut label = Subtype::new("label");
    for (key, values) in &mut labels {
        let single = values.len() == 1;
        for (value, names) in values.iter_mut() {
            let k = if single {
                key.to_string()
            } else {
                format!("{key}.{value}")
            };
            label
                .data
                .insert(k, Reading::Str(node_list(&format!("{value}|"), names, max)));
        }
    }
    let summary = Subtype::new("summary")
        .with("node-count", count)
        .with("taint-count", taint.data.len() as i64)
        .with("label-count", label.data.len() as i64);
    Measurement {
        kind: "NodeTopology".into(),
        subtypes: vec![summary, taint, label],
    }
}

/// The K8s measurement. Without a client every part is empty; a failing
/// part is logged and left empty (the server part then has null readings).
pub async fn collect_k8s(client: Option<&kube::Client>, node_name: Option<&str>) -> Measurement {
    let empty = |n: &str| Subtype::new(n);
    let Some(client) = client else {
        tracing::warn!("kubernetes client unavailable - returning empty K8s measurement");
        return Measurement {
            kind: "K8s".into(),
            subtypes: vec![
                empty("server"),
                empty("image"),
                empty("policy"),
                empty("node"),
            ],
        };
    };
    let server = match client.apiserver_version().await {
        Ok(info) => Subtype::new("server")
            .with("version", info.git_version)
            .with("platform", info.platform)
            .with("goVersion", info.go_version),
        Err(e) => {
            tracing::warn!(
                "failed to collect server - skipping: {}",
                api_error(e, "GET /version")
            );
            let mut st = Subtype::new("server");
            for k in ["version", "platform", "goVersion"] {
                st.data.insert(k.into(), Reading::Null);
            }
            st
        }
    };
    let image = match Api::<Pod>::all(client.clone())
        .list(&ListParams::default())
        .await
    {
        Ok(list) => images_subtype(&list.items),
        Err(e) => {
            tracing::warn!(
                "failed to collect image - skipping: {}",
                api_error(e, "list pods")
            );
            empty("image")
        }
    };
    let policy = collect_policy(client).await;
    let node = match node_name.filter(|n| !n.is_empty()) {
        None => {
            tracing::warn!("failed to collect node - skipping: node name not set in environment");
            empty("node")
        }
        Some(name) => match Api::<Node>::all(client.clone()).get(name).await {
            Ok(n) => node_subtype(name, &n),
            Err(e) => {
                tracing::warn!(
                    "failed to collect node - skipping: {}",
                    api_error(e, &format!("get node {name}"))
                );
                empty("node")
            }
        },
    };
    Measurement {
        kind: "K8s".into(),
        subtypes: vec![server, image, policy, node],
    }
}

/// Every served resource of kind `ClusterPolicy`, in any API group
/// (subresources excluded).
pub async fn cluster_policy_resources(
    client: &kube::Client,
) -> std::result::Result<Vec<ApiResource>, kube::Error> {
    let discovery = Discovery::new(client.clone()).run().await?;
    Ok(discovery
        .groups()
        .flat_map(|g| g.recommended_resources())
        .map(|(ar, _)| ar)
        .filter(|ar| ar.kind == "ClusterPolicy" && !ar.plural.contains('/'))
        .collect())
}

async fn collect_policy(client: &kube::Client) -> Subtype {
    let mut st = Subtype::new("policy");
    let resources = match cluster_policy_resources(client).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(
                "failed to collect policy - skipping: {}",
                api_error(e, "discovery")
            );
            return st;
        }
    };
    for ar in resources {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        let Ok(list) = api.list(&ListParams::default()).await else {
            continue;
        };
        for obj in list.items {
            match obj.data.get("spec") {
                Some(spec) => flatten_policy("", spec, &mut st.data),
                None => tracing::warn!(
                    "ClusterPolicy {} has no spec - skipping",
                    obj.metadata.name.unwrap_or_default()
                ),
            }
        }
    }
    st
}

/// List every node, 500 per page, following continue tokens.
pub(crate) async fn list_nodes(client: &kube::Client) -> Result<Vec<Node>> {
    let api: Api<Node> = Api::all(client.clone());
    let mut out = Vec::new();
    let mut params = ListParams::default().limit(500);
    loop {
        let page = api
            .list(&params)
            .await
            .map_err(|e| api_error(e, "failed to list nodes"))?;
        out.extend(page.items);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    Ok(out)
}

/// The NodeTopology measurement, or an error when nodes cannot be listed
/// (the caller then leaves the measurement out).
pub async fn collect_topology(client: Option<&kube::Client>, max: usize) -> Result<Measurement> {
    match client {
        None => {
            tracing::warn!("kubernetes client unavailable - returning empty topology measurement");
            Ok(topology::<Node>([], max))
        }
        Some(c) => Ok(topology(&list_nodes(c).await?, max)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(v: Value) -> Node {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn image_references_reduce_to_name_and_tag() {
        let cases = [
            (
                "nvcr.io/nvidia/gpu-operator:v25.3.0",
                ("gpu-operator", "v25.3.0"),
            ),
            ("registry.k8s.io/pause", ("pause", "latest")),
            (
                "docker.io/library/nginx:1.27@sha256:abcd",
                ("nginx", "1.27"),
            ),
            ("localhost:5001/aicr:local", ("aicr", "local")),
        ];
        for (image, (n, t)) in cases {
            assert_eq!(
                image_name_tag(image),
                Some((n.to_string(), t.to_string())),
                "{image}"
            );
        }
    }

    #[test]
    fn later_images_win() {
        let pods: Vec<Pod> = serde_json::from_value(json!([
            {"spec": {"containers": [{"name": "a", "image": "x/app:1"}], "initContainers": [{"name": "i", "image": "x/app:2"}]}},
            {"spec": {"containers": [{"name": "b", "image": ""}]}}
        ]))
        .unwrap();
        let st = images_subtype(&pods);
        assert_eq!(st.data["app"].render(), "2");
        assert_eq!(st.data.len(), 1);
    }

    #[test]
    fn policy_flattening_rules() {
        let mut out = BTreeMap::new();
        flatten_policy(
            "",
            &json!({"driver": {"enabled": true, "rdma": {"enabled": false}, "version": "580.105.08", "empty": {}},
                    "toolkit": {"env": [{"value": "/etc/c.toml", "name": "CONTAINERD_CONFIG"}], "none": []},
                    "n": 3, "f": 0.5, "z": null}),
            &mut out,
        );
        let get = |k: &str| out[k].render();
        assert_eq!(get("driver.enabled"), "true");
        assert_eq!(get("driver.rdma.enabled"), "false");
        assert_eq!(
            get("toolkit.env"),
            r#"[{"name":"CONTAINERD_CONFIG","value":"/etc/c.toml"}]"#
        );
        assert_eq!(
            (get("n"), get("f"), get("z")),
            ("3".into(), "0.5".into(), "<nil>".into())
        );
        assert!(!out.contains_key("toolkit.none") && !out.contains_key("driver.empty"));
        assert!(out.values().all(|r| matches!(r, Reading::Str(_))));
    }

    #[test]
    fn node_facts() {
        let n = node(json!({
            "metadata": {"name": "gpu-1"},
            "spec": {"providerID": "aws:///us-east-1a/i-0abc"},
            "status": {"nodeInfo": {"containerRuntimeVersion": "containerd://1.7.27", "kubeletVersion": "v1.33.5",
                "kernelVersion": "6.8.0-1028-aws", "operatingSystem": "linux", "osImage": "Ubuntu 24.04 LTS",
                "architecture": "amd64", "bootID": "", "kubeProxyVersion": "", "machineID": "", "systemUUID": ""}}
        }));
        let st = node_subtype("gpu-1", &n);
        let get = |k: &str| st.data[k].render();
        assert_eq!(get("provider"), "eks");
        assert_eq!(get("container-runtime-name"), "containerd");
        assert_eq!(get("container-runtime-version"), "1.7.27");
        assert_eq!(get("kubelet-version"), "v1.33.5");
        assert!(!st.data.contains_key("bogus"));
    }

    #[test]
    fn topology_encodings() {
        let nodes = vec![
            node(
                json!({"metadata": {"name": "gpu-2", "labels": {"pool": "gpu", "zone": "a"}},
                "spec": {"taints": [{"key": "nvidia.com/gpu", "effect": "NoSchedule", "value": "present"},
                                     {"key": "dedicated", "effect": "NoExecute", "value": "gpu"}]}}),
            ),
            node(
                json!({"metadata": {"name": "gpu-1", "labels": {"pool": "gpu", "zone": "b"}},
                "spec": {"taints": [{"key": "nvidia.com/gpu", "effect": "NoSchedule", "value": "present"},
                                     {"key": "dedicated", "effect": "NoSchedule", "value": "system"}]}}),
            ),
            node(json!({"metadata": {"name": "cpu-1", "labels": {"pool": "cpu"}}})),
        ];
        let m = topology(&nodes, 0);
        let st = |n: &str| m.subtype(n).unwrap();
        assert_eq!(
            st("taint").data["nvidia.com/gpu"].render(),
            "NoSchedule|present|gpu-1,gpu-2"
        );
        assert_eq!(
            st("taint").data["dedicated.NoExecute"].render(),
            "gpu|gpu-2"
        );
        assert_eq!(
            st("taint").data["dedicated.NoSchedule"].render(),
            "system|gpu-1"
        );
        assert_eq!(st("label").data["pool.gpu"].render(), "gpu|gpu-1,gpu-2");
        assert_eq!(st("label").data["pool.cpu"].render(), "cpu|cpu-1");
        assert_eq!(st("label").data["zone.a"].render(), "a|gpu-2");
        assert_eq!(st("summary").data["node-count"], Reading::Int(3));
        assert_eq!(st("summary").data["taint-count"], Reading::Int(3));
        assert_eq!(st("summary").data["label-count"], Reading::Int(4));
        let capped = topology(&nodes, 1);
        assert_eq!(
            capped.subtype("taint").unwrap().data["nvidia.com/gpu"].render(),
            "NoSchedule|present|gpu-1 (+1 more)"
        );
    }
}
