//! The checks' view of the API server: objects as JSON by resource type,
//! discovery probes, raw GETs through the API server (service proxy, metrics
//! APIs), pod logs, and bounded polling.
//!
//! Owns transport and error text only; what an answer means is the checks'
//! business. Nothing here decides pass or fail. Named for the API server
//! it talks to: `crate::kubernetes::measure` is the snapshot's cluster reader.

use std::future::Future;
use std::time::Duration;

use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, LogParams, Patch, PatchParams,
    PostParams, PropagationPolicy,
};
use serde_json::Value;
use tokio::time::Instant;

/// A resource type by group, version and plural.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ResourceType {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
}

impl ResourceType {
    const fn new(
        group: &'static str,
        version: &'static str,
        kind: &'static str,
        plural: &'static str,
        namespaced: bool,
    ) -> ResourceType {
        ResourceType {
            group,
            version,
            kind,
            plural,
            namespaced,
        }
    }

    pub(crate) fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    fn api_resource(&self) -> ApiResource {
        ApiResource {
            group: self.group.into(),
            version: self.version.into(),
            api_version: self.api_version(),
            kind: self.kind.into(),
            plural: self.plural.into(),
        }
    }
}

pub(crate) const NAMESPACE: ResourceType =
    ResourceType::new("", "v1", "Namespace", "namespaces", false);
pub(crate) const NODE: ResourceType = ResourceType::new("", "v1", "Node", "nodes", false);
pub(crate) const POD: ResourceType = ResourceType::new("", "v1", "Pod", "pods", true);
pub(crate) const SERVICE: ResourceType = ResourceType::new("", "v1", "Service", "services", true);
pub(crate) const CONFIG_MAP: ResourceType =
    ResourceType::new("", "v1", "ConfigMap", "configmaps", true);
pub(crate) const SECRET: ResourceType = ResourceType::new("", "v1", "Secret", "secrets", true);
pub(crate) const SERVICE_ACCOUNT: ResourceType =
    ResourceType::new("", "v1", "ServiceAccount", "serviceaccounts", true);
pub(crate) const DEPLOYMENT: ResourceType =
    ResourceType::new("apps", "v1", "Deployment", "deployments", true);
pub(crate) const DAEMON_SET: ResourceType =
    ResourceType::new("apps", "v1", "DaemonSet", "daemonsets", true);
pub(crate) const STATEFUL_SET: ResourceType =
    ResourceType::new("apps", "v1", "StatefulSet", "statefulsets", true);
pub(crate) const JOB: ResourceType = ResourceType::new("batch", "v1", "Job", "jobs", true);
pub(crate) const CLUSTER_ROLE_BINDING: ResourceType = ResourceType::new(
    "rbac.authorization.k8s.io",
    "v1",
    "ClusterRoleBinding",
    "clusterrolebindings",
    false,
);
pub(crate) const CRD: ResourceType = ResourceType::new(
    "apiextensions.k8s.io",
    "v1",
    "CustomResourceDefinition",
    "customresourcedefinitions",
    false,
);
pub(crate) const HPA: ResourceType = ResourceType::new(
    "autoscaling",
    "v2",
    "HorizontalPodAutoscaler",
    "horizontalpodautoscalers",
    true,
);
pub(crate) const ENDPOINT_SLICE: ResourceType = ResourceType::new(
    "discovery.k8s.io",
    "v1",
    "EndpointSlice",
    "endpointslices",
    true,
);
pub(crate) const VALIDATING_WEBHOOK: ResourceType = ResourceType::new(
    "admissionregistration.k8s.io",
    "v1",
    "ValidatingWebhookConfiguration",
    "validatingwebhookconfigurations",
    false,
);
pub(crate) const CLUSTER_POLICY: ResourceType = ResourceType::new(
    "nvidia.com",
    "v1",
    "ClusterPolicy",
    "clusterpolicies",
    false,
);
pub(crate) const SKYHOOK: ResourceType = ResourceType::new(
    "skyhook.nvidia.com",
    "v1alpha1",
    "Skyhook",
    "skyhooks",
    false,
);
pub(crate) const RESOURCE_SLICE: ResourceType = ResourceType::new(
    "resource.k8s.io",
    "v1",
    "ResourceSlice",
    "resourceslices",
    false,
);
pub(crate) const RESOURCE_CLAIM: ResourceType = ResourceType::new(
    "resource.k8s.io",
    "v1",
    "ResourceClaim",
    "resourceclaims",
    true,
);
pub(crate) const POD_GROUP: ResourceType = ResourceType::new(
    "scheduling.run.ai",
    "v2alpha2",
    "PodGroup",
    "podgroups",
    true,
);
pub(crate) const GATEWAY_CLASS: ResourceType = ResourceType::new(
    "gateway.networking.k8s.io",
    "v1",
    "GatewayClass",
    "gatewayclasses",
    false,
);
pub(crate) const GATEWAY: ResourceType = ResourceType::new(
    "gateway.networking.k8s.io",
    "v1",
    "Gateway",
    "gateways",
    true,
);
pub(crate) const NODE_POOL: ResourceType =
    ResourceType::new("karpenter.sh", "v1", "NodePool", "nodepools", false);
pub(crate) const TRAIN_JOB: ResourceType = ResourceType::new(
    "trainer.kubeflow.org",
    "v1alpha1",
    "TrainJob",
    "trainjobs",
    true,
);
pub(crate) const TRAINING_RUNTIME: ResourceType = ResourceType::new(
    "trainer.kubeflow.org",
    "v1alpha1",
    "TrainingRuntime",
    "trainingruntimes",
    true,
);

/// A failed API call, kept with its HTTP code for callers that branch on
/// it (404 means "absent", everything else fails closed).
#[derive(Debug)]
pub(crate) struct ApiError {
    pub code: Option<u16>,
    pub text: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl ApiError {
    pub(crate) fn is_not_found(&self) -> bool {
        self.code == Some(404)
    }

    pub(crate) fn other(text: impl Into<String>) -> ApiError {
        ApiError {
            code: None,
            text: text.into(),
        }
    }
}

impl From<kube::Error> for ApiError {
    fn from(e: kube::Error) -> ApiError {
        match &e {
            kube::Error::Api(s) => {
                let reason = if s.message.is_empty() {
                    s.reason.clone()
                } else {
                    s.message.clone()
                };
                ApiError {
                    code: Some(s.code),
                    text: format!("{reason} (HTTP {})", s.code),
                }
            }
            other => {
                let text = crate::error::chain(other);
                ApiError {
                    code: None,
                    text: text.lines().next().unwrap_or_default().to_string(),
                }
            }
        }
    }
}

pub(crate) type ApiResult<T> = std::result::Result<T, ApiError>;

/// A cloneable handle on the cluster.
#[derive(Clone)]
pub(crate) struct Cluster {
    client: kube::Client,
}

impl Cluster {
    pub(crate) fn new(client: kube::Client) -> Cluster {
        Cluster { client }
    }

    fn api(&self, r: &ResourceType, namespace: Option<&str>) -> Api<DynamicObject> {
        let ar = r.api_resource();
        match namespace {
            Some(ns) if r.namespaced => Api::namespaced_with(self.client.clone(), ns, &ar),
            _ => Api::all_with(self.client.clone(), &ar),
        }
    }

    /// One object; `None` when the API answers 404.
    pub(crate) async fn get(
        &self,
        r: &ResourceType,
        namespace: &str,
        name: &str,
    ) -> ApiResult<Option<Value>> {
        match self.api(r, Some(namespace)).get(name).await {
            Ok(o) => Ok(Some(to_value(o))),
            Err(e) => {
                let e = ApiError::from(e);
                if e.is_not_found() { Ok(None) } else { Err(e) }
            }
        }
    }

    /// One object; 404 is an error like any other.
    pub(crate) async fn fetch(
        &self,
        r: &ResourceType,
        namespace: &str,
        name: &str,
    ) -> ApiResult<Value> {
        Ok(to_value(self.api(r, Some(namespace)).get(name).await?))
    }

    /// Objects of a type in one namespace (`""`: all namespaces or a
    /// cluster-scoped type), optionally by label selector.
    pub(crate) async fn list(
        &self,
        r: &ResourceType,
        namespace: &str,
        labels: &str,
    ) -> ApiResult<Vec<Value>> {
        let ns = (!namespace.is_empty()).then_some(namespace);
        let mut lp = ListParams::default();
        if !labels.is_empty() {
            lp = lp.labels(labels);
        }
        let list = self.api(r, ns).list(&lp).await?;
        Ok(list.items.into_iter().map(to_value).collect())
    }

    pub(crate) async fn create(
        &self,
        r: &ResourceType,
        namespace: &str,
        object: Value,
    ) -> ApiResult<Value> {
        let obj: DynamicObject =
            serde_json::from_value(object).map_err(|e| ApiError::other(e.to_string()))?;
        Ok(to_value(
            self.api(r, Some(namespace))
                .create(&PostParams::default(), &obj)
                .await?,
        ))
    }

    /// Create, treating "already exists" as done.
    pub(crate) async fn ensure(
        &self,
        r: &ResourceType,
        namespace: &str,
        object: Value,
    ) -> ApiResult<()> {
        match self.create(r, namespace, object).await {
            Err(e) if e.code == Some(409) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Server-side apply with `manager`, forcing ownership.
    pub(crate) async fn apply(
        &self,
        r: &ResourceType,
        namespace: &str,
        name: &str,
        object: Value,
        manager: &str,
    ) -> ApiResult<Value> {
        Ok(to_value(
            self.api(r, Some(namespace))
                .patch(
                    name,
                    &PatchParams::apply(manager).force(),
                    &Patch::Apply(&object),
                )
                .await?,
        ))
    }

    /// A JSON merge patch.
    pub(crate) async fn merge_patch(
        &self,
        r: &ResourceType,
        namespace: &str,
        name: &str,
        patch: Value,
    ) -> ApiResult<Value> {
        Ok(to_value(
            self.api(r, Some(namespace))
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?,
        ))
    }

    /// Delete with foreground propagation; an object already gone is fine.
    pub(crate) async fn delete(
        &self,
        r: &ResourceType,
        namespace: &str,
        name: &str,
    ) -> ApiResult<()> {
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Foreground),
            ..DeleteParams::default()
        };
        match self.api(r, Some(namespace)).delete(name, &dp).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = ApiError::from(e);
                if e.is_not_found() { Ok(()) } else { Err(e) }
            }
        }
    }

    /// The plurals a group-version serves; `None` when it is not served
    /// (404). Any other failure is an error, so callers fail closed on it.
    pub(crate) async fn served(&self, group_version: &str) -> ApiResult<Option<Vec<String>>> {
        let answer = if group_version.contains('/') {
            self.client.list_api_group_resources(group_version).await
        } else {
            self.client.list_core_api_resources(group_version).await
        };
        match answer {
            Ok(list) => Ok(Some(
                list.resources
                    .into_iter()
                    .filter(|r| !r.name.contains('/'))
                    .map(|r| r.name)
                    .collect(),
            )),
            Err(e) => {
                let e = ApiError::from(e);
                if e.is_not_found() { Ok(None) } else { Err(e) }
            }
        }
    }

    /// GET an API server path and return the body text (service proxy,
    /// aggregated metrics APIs).
    pub(crate) async fn raw_get(&self, path: &str) -> ApiResult<String> {
        let req = http::Request::get(path)
            .body(Vec::new())
            .map_err(|e| ApiError::other(format!("invalid request path {path:?}: {e}")))?;
        Ok(self.client.request_text(req).await?)
    }

    /// The first container's log of a pod.
    pub(crate) async fn logs(&self, namespace: &str, pod: &str) -> ApiResult<String> {
        let api: Api<k8s_openapi::api::core::v1::Pod> =
            Api::namespaced(self.client.clone(), namespace);
        Ok(api.logs(pod, &LogParams::default()).await?)
    }

    /// The API server's `gitVersion`, as a reachability probe.
    pub(crate) async fn server_version(&self) -> ApiResult<String> {
        Ok(self.client.apiserver_version().await?.git_version)
    }

    /// Resolve `apiVersion` + `kind` to a resource type through discovery.
    pub(crate) async fn resolve(
        &self,
        api_version: &str,
        kind: &str,
    ) -> ApiResult<Option<Dynamic>> {
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        let gvk = kube::core::GroupVersionKind::gvk(group, version, kind);
        match kube::discovery::pinned_kind(&self.client, &gvk).await {
            Ok((ar, caps)) => Ok(Some(Dynamic {
                ar,
                namespaced: caps.scope == kube::discovery::Scope::Namespaced,
            })),
            // The group-version is served but has no such kind.
            Err(kube::Error::Discovery(_)) => Ok(None),
            Err(e) => {
                let e = ApiError::from(e);
                if e.is_not_found() { Ok(None) } else { Err(e) }
            }
        }
    }

    /// Objects of a discovered type, by optional name, namespace and labels.
    pub(crate) async fn find(
        &self,
        d: &Dynamic,
        namespace: &str,
        name: &str,
        labels: &str,
    ) -> ApiResult<Vec<Value>> {
        let api: Api<DynamicObject> = if d.namespaced && !namespace.is_empty() {
            Api::namespaced_with(self.client.clone(), namespace, &d.ar)
        } else {
            Api::all_with(self.client.clone(), &d.ar)
        };
        if !name.is_empty() {
            return match api.get(name).await {
                Ok(o) => Ok(vec![to_value(o)]),
                Err(e) => {
                    let e = ApiError::from(e);
                    if e.is_not_found() {
                        Ok(Vec::new())
                    } else {
                        Err(e)
                    }
                }
            };
        }
        let mut lp = ListParams::default();
        if !labels.is_empty() {
            lp = lp.labels(labels);
        }
        Ok(api
            .list(&lp)
            .await?
            .items
            .into_iter()
            .map(to_value)
            .collect())
    }
}

/// A type found through discovery.
#[derive(Debug, Clone)]
pub(crate) struct Dynamic {
    ar: ApiResource,
    namespaced: bool,
}

fn to_value(o: DynamicObject) -> Value {
    serde_json::to_value(o).unwrap_or(Value::Null)
}

/// Poll `probe` until it yields a value or `deadline` passes, backing off
/// from 100 ms up to `max_interval`.
pub(crate) async fn poll<T, F, Fut>(
    deadline: Instant,
    max_interval: Duration,
    mut probe: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let mut wait = Duration::from_millis(100);
    loop {
        if let Some(v) = probe().await {
            return Some(v);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        tokio::time::sleep(wait.min(deadline - now)).await;
        wait = (wait * 2).min(max_interval);
    }
}

/// Small JSON accessors for status fields.
pub(crate) fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

pub(crate) fn int_at(v: &Value, pointer: &str) -> Option<i64> {
    let x = v.pointer(pointer)?;
    x.as_i64()
        .or_else(|| x.as_str().and_then(|s| s.parse().ok()))
}

pub(crate) fn name_of(v: &Value) -> &str {
    str_at(v, "/metadata/name")
}

/// A condition of `type` has status `True`.
pub(crate) fn condition_true(v: &Value, kind: &str) -> bool {
    v.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == kind && c["status"] == "True")
        })
}

/// A Kubernetes quantity as a count (`"8"`, `8`); fractional or suffixed
/// quantities are not device counts and read as zero.
pub(crate) fn quantity_count(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

/// Nodes that can take GPU work: schedulable, with allocatable GPUs.
pub(crate) fn gpu_nodes(nodes: &[Value]) -> Vec<&Value> {
    nodes
        .iter()
        .filter(|n| n.pointer("/spec/unschedulable") != Some(&Value::Bool(true)))
        .filter(|n| quantity_count(n.pointer("/status/allocatable/nvidia.com~1gpu")) > 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn gpu_nodes_must_be_schedulable_and_have_gpus() {
        let nodes = vec![
            json!({"metadata": {"name": "a"}, "status": {"allocatable": {"nvidia.com/gpu": "8"}}}),
            json!({"metadata": {"name": "b"}, "spec": {"unschedulable": true}, "status": {"allocatable": {"nvidia.com/gpu": "8"}}}),
            json!({"metadata": {"name": "c"}, "status": {"allocatable": {"cpu": "8"}}}),
            json!({"metadata": {"name": "d"}, "status": {"allocatable": {"nvidia.com/gpu": "0"}}}),
        ];
        let names: Vec<&str> = gpu_nodes(&nodes).into_iter().map(name_of).collect();
        assert_eq!(names, ["a"]);
    }

    #[test]
    fn conditions_and_fields() {
        let v =
            json!({"status": {"conditions": [{"type": "Accepted", "status": "True"}], "n": "3"}});
        assert!(condition_true(&v, "Accepted"));
        assert!(!condition_true(&v, "Programmed"));
        assert_eq!(int_at(&v, "/status/n"), Some(3));
        assert_eq!(str_at(&v, "/status/missing"), "");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn poll_gives_up_at_the_deadline() {
        let deadline = Instant::now() + Duration::from_millis(250);
        let mut calls = 0;
        let got: Option<()> = poll(deadline, Duration::from_millis(50), || {
            calls += 1;
            async { None }
        })
        .await;
        assert!(got.is_none());
        assert!(calls >= 3, "{calls}");
    }
}
