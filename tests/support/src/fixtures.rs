//! Builders for objects tests commonly seed: namespaces, ConfigMaps, GPU
//! nodes, CRDs, the GPU Operator's ClusterPolicy, and what a Job's
//! controller and kubelet would write (pods, finished status). Each returns
//! plain JSON ready for [`crate::FakeCluster::insert`]; they carry only the
//! fields given plus what k8s-openapi needs to deserialize them.

use crate::store::now;
use serde_json::{Value, json};

pub fn namespace(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name},
        "status": {"phase": "Active"},
    })
}

/// The criteria flags of the README's example recipe (EKS, H100,
/// training, Ubuntu), which the bundle tests render.
pub const EKS_TRAINING: [&str; 8] = [
    "--service",
    "eks",
    "--accelerator",
    "h100",
    "--intent",
    "training",
    "--os",
    "ubuntu",
];

pub fn config_map(namespace: &str, name: &str, data: &[(&str, &str)]) -> Value {
    let data: serde_json::Map<String, Value> = data
        .iter()
        .map(|(k, v)| (k.to_string(), Value::from(*v)))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    })
}

/// Starts a Ready node with no labels or taints, 8 CPUs and 32 GiB, and a
/// complete `nodeInfo` (kubelet v1.33.5, containerd 1.7.27, Ubuntu).
pub fn node(name: &str) -> NodeBuilder {
    let resources = json!({"cpu": "8", "memory": "32Gi", "pods": "110"});
    NodeBuilder {
        object: json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": {}},
            "spec": {},
            "status": {
                "capacity": resources,
                "allocatable": resources,
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                "message": "kubelet is posting ready status"}],
                "nodeInfo": {
                    "architecture": "amd64",
                    "bootID": "",
                    "containerRuntimeVersion": "containerd://1.7.27",
                    "kernelVersion": "6.8.0-1028-aws",
                    "kubeProxyVersion": "v1.33.5",
                    "kubeletVersion": "v1.33.5",
                    "machineID": "",
                    "operatingSystem": "linux",
                    "osImage": "Ubuntu 24.04.2 LTS",
                    "systemUUID": "",
                },
            },
        }),
    }
}

/// A Node under construction; see [`node`].
#[derive(Clone, Debug)]
pub struct NodeBuilder {
    object: Value,
}

impl NodeBuilder {
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.object["metadata"]["labels"][key] = value.into();
        self
    }

    /// Adds a taint; `effect` is `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub fn taint(mut self, key: &str, value: &str, effect: &str) -> Self {
        let mut taint = json!({"key": key, "effect": effect});
        if !value.is_empty() {
            taint["value"] = value.into();
        }
        match self.object["spec"]["taints"].as_array_mut() {
            Some(taints) => taints.push(taint),
            None => self.object["spec"]["taints"] = json!([taint]),
        }
        self
    }

    /// Sets capacity and allocatable `nvidia.com/gpu`.
    pub fn gpus(mut self, count: u32) -> Self {
        for field in ["capacity", "allocatable"] {
            self.object["status"][field]["nvidia.com/gpu"] = count.to_string().into();
        }
        self
    }

    /// Sets `spec.providerID`, e.g. `aws:///us-east-1a/i-0abc`.
    pub fn provider_id(mut self, id: &str) -> Self {
        self.object["spec"]["providerID"] = id.into();
        self
    }

    /// Overrides one `status.nodeInfo` field, e.g. `kubeletVersion`.
    pub fn node_info(mut self, field: &str, value: &str) -> Self {
        self.object["status"]["nodeInfo"][field] = value.into();
        self
    }

    pub fn build(self) -> Value {
        self.object
    }
}

/// A CRD with one served storage version, an open schema and a status
/// subresource.
pub fn crd(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{group}")},
        "spec": {
            "group": group,
            "names": {
                "kind": kind,
                "listKind": format!("{kind}List"),
                "plural": plural,
                "singular": kind.to_lowercase(),
            },
            "scope": if namespaced { "Namespaced" } else { "Cluster" },
            "versions": [{
                "name": version,
                "served": true,
                "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                "subresources": {"status": {}},
            }],
        },
    })
}

/// The GPU Operator's CRD: `clusterpolicies.nvidia.com`, v1, cluster-scoped.
pub fn cluster_policy_crd() -> Value {
    crd(
        "nvidia.com",
        "v1",
        "ClusterPolicy",
        "clusterpolicies",
        false,
    )
}

/// The GPU Operator's `cluster-policy` object with `spec` and
/// `status.state` (`ready`, `notReady`, `disabled`).
pub fn cluster_policy(spec: Value, state: &str) -> Value {
    json!({
        "apiVersion": "nvidia.com/v1",
        "kind": "ClusterPolicy",
        "metadata": {"name": "cluster-policy"},
        "spec": spec,
        "status": {"state": state, "namespace": "gpu-operator"},
    })
}

/// The status the Job controller writes when a Job succeeds.
pub fn job_complete_status() -> Value {
    let at = now();
    json!({
        "succeeded": 1,
        "startTime": at,
        "completionTime": at,
        "conditions": [
            {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached",
             "lastProbeTime": at, "lastTransitionTime": at},
            {"type": "Complete", "status": "True", "reason": "CompletionsReached",
             "lastProbeTime": at, "lastTransitionTime": at},
        ],
    })
}

/// The status the Job controller writes when a Job fails for `reason`
/// (e.g. `BackoffLimitExceeded`, `DeadlineExceeded`).
pub fn job_failed_status(reason: &str) -> Value {
    let at = now();
    json!({
        "failed": 1,
        "startTime": at,
        "conditions": [
            {"type": "FailureTarget", "status": "True", "reason": reason,
             "lastProbeTime": at, "lastTransitionTime": at},
            {"type": "Failed", "status": "True", "reason": reason,
             "lastProbeTime": at, "lastTransitionTime": at},
        ],
    })
}

/// The pod `job` (as stored, so it has a uid) ran, named `<job>-pod`, with
/// its first container terminated with `exit_code`. Labels and owner
/// reference match the Job controller's, so label lookups by
/// `batch.kubernetes.io/job-name` and cascading deletion both find it.
pub fn job_pod(job: &Value, exit_code: i32) -> Value {
    let name = job["metadata"]["name"].as_str().unwrap_or_default();
    let uid = &job["metadata"]["uid"];
    let spec = job["spec"]["template"]["spec"].clone();
    let container = &spec["containers"][0];
    let at = now();
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": format!("{name}-pod"),
            "namespace": job["metadata"]["namespace"],
            "labels": {
                "batch.kubernetes.io/job-name": name,
                "job-name": name,
                "batch.kubernetes.io/controller-uid": uid,
                "controller-uid": uid,
            },
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid,
                                 "controller": true, "blockOwnerDeletion": true}],
        },
        "spec": spec,
        "status": {
            "phase": if exit_code == 0 { "Succeeded" } else { "Failed" },
            "containerStatuses": [{
                "name": container["name"],
                "image": container["image"],
                "imageID": "",
                "ready": false,
                "restartCount": 0,
                "started": false,
                "state": {"terminated": {
                    "exitCode": exit_code,
                    "reason": if exit_code == 0 { "Completed" } else { "Error" },
                    "startedAt": at,
                    "finishedAt": at,
                }},
            }],
        },
    })
}

/// Relative path → (permission bits, content) of the regular files under a
/// directory, for comparing written trees (bundles, unpacked layers).
pub type FileTree = std::collections::BTreeMap<String, (u32, Vec<u8>)>;

/// Every regular file under `dir`, keyed by its path relative to `dir`.
#[cfg(unix)]
pub fn file_tree(dir: &std::path::Path) -> FileTree {
    fn walk(root: &std::path::Path, d: &std::path::Path, out: &mut FileTree) {
        use std::os::unix::fs::PermissionsExt;
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, (mode, std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = FileTree::new();
    walk(dir, dir, &mut out);
    out
}

/// A Deployment with `available` of `replicas` ready.
pub fn deployment(ns: &str, name: &str, replicas: i64, available: i64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": {}},
        "spec": {"replicas": replicas},
        "status": {"replicas": replicas, "availableReplicas": available},
    })
}

/// A DaemonSet with `ready` of `desired` pods ready.
pub fn daemonset(ns: &str, name: &str, desired: i64, ready: i64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": ns},
        "status": {"desiredNumberScheduled": desired, "numberReady": ready},
    })
}

/// Seeding the AI platform the conformance checks inspect, piece by piece,
/// with the fake playing scheduler, DRA driver and kubelet for the objects
/// the checks create.
pub mod platform {
    use serde_json::json;

    use super::{deployment, namespace};
    use crate::FakeApiServer;

    /// The KAI scheduler: its namespace and six Deployments available, the
    /// Queue and PodGroup APIs, and the default queue under its parent.
    pub fn kai_scheduler(api: &FakeApiServer) {
        api.insert(namespace("kai-scheduler"));
        for d in [
            "kai-scheduler-default",
            "admission",
            "binder",
            "kai-operator",
            "pod-grouper",
            "podgroup-controller",
        ] {
            api.insert(deployment("kai-scheduler", d, 1, 1));
        }
        api.register_crd("scheduling.run.ai", "v2", "Queue", "queues", false);
        api.register_crd(
            "scheduling.run.ai",
            "v2alpha2",
            "PodGroup",
            "podgroups",
            true,
        );
        api.insert(json!({"apiVersion": "scheduling.run.ai/v2", "kind": "Queue", "metadata": {"name": "default-parent"}, "spec": {}}));
        api.insert(json!({"apiVersion": "scheduling.run.ai/v2", "kind": "Queue", "metadata": {"name": "default-queue"}, "spec": {"parentQueue": "default-parent"}}));
    }

    /// Dynamic Resource Allocation: the ResourceSlice and ResourceClaim
    /// APIs, one slice on node gpu-1 with `gpus` devices, and every claim
    /// allocated gpu-0 as soon as it is created.
    pub fn dra(api: &FakeApiServer, gpus: usize) {
        api.register_crd(
            "resource.k8s.io",
            "v1",
            "ResourceSlice",
            "resourceslices",
            false,
        );
        api.register_crd(
            "resource.k8s.io",
            "v1",
            "ResourceClaim",
            "resourceclaims",
            true,
        );
        let devices: Vec<_> = (0..gpus)
            .map(|i| json!({"name": format!("gpu-{i}")}))
            .collect();
        api.insert(
            json!({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice",
            "metadata": {"name": "gpu-1-gpu.nvidia.com"},
            "spec": {"driver": "gpu.nvidia.com", "nodeName": "gpu-1",
                     "pool": {"name": "gpu-1", "generation": 1, "resourceSliceCount": 1},
                     "devices": devices}}),
        );
        api.on_create("resourceclaims", |cluster, claim| {
            let ns = claim["metadata"]["namespace"].as_str().unwrap().to_string();
            let name = claim["metadata"]["name"].as_str().unwrap().to_string();
            cluster.update_status(
                "resourceclaims",
                &ns,
                &name,
                json!({"allocation": {"devices": {"results": [
                {"driver": "gpu.nvidia.com", "pool": "gpu-1", "device": "gpu-0", "request": "gpu"}]}}}),
            );
        });
    }

    /// NVIDIA's DRA driver installed and healthy in `nvidia-dra-driver`:
    /// its controller Deployment and its kubelet plugin on two nodes.
    pub fn dra_driver(api: &FakeApiServer) {
        api.insert(namespace("nvidia-dra-driver"));
        api.insert(deployment(
            "nvidia-dra-driver",
            "nvidia-dra-driver-gpu-controller",
            1,
            1,
        ));
        api.insert(super::daemonset(
            "nvidia-dra-driver",
            "nvidia-dra-driver-gpu-kubelet-plugin",
            2,
            2,
        ));
    }

    /// The checks' test pods: gang pods (`aicr-gang-*`) are scheduled on
    /// gpu-1 and run; `isolation-test` and pods named with one of
    /// `also_succeeding`'s prefixes succeed with an nvidia-smi line in their
    /// log.
    pub fn test_pods(api: &FakeApiServer, also_succeeding: &'static [&'static str]) {
        api.on_create("pods", move |cluster, pod| {
            let ns = pod["metadata"]["namespace"].as_str().unwrap().to_string();
            let name = pod["metadata"]["name"].as_str().unwrap().to_string();
            if name.starts_with("aicr-gang-") {
                cluster.modify("pods", &ns, &name, |p| {
                    p["spec"]["nodeName"] = "gpu-1".into();
                    p["status"]["phase"] = "Running".into();
                });
            } else if name == "isolation-test"
                || also_succeeding.iter().any(|p| name.starts_with(p))
            {
                cluster.set_pod_log(&ns, &name, "GPU 0: NVIDIA H100 80GB HBM3\n");
                cluster.update_status("pods", &ns, &name, json!({"phase": "Succeeded"}));
            }
        });
    }
}
