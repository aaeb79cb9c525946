//! `aicr snapshot` in a cluster: deploy the agent Job (RBAC, Job), wait for
//! it, fetch the snapshot it wrote to a ConfigMap, and clean up exactly what
//! this run created or updated. Object builders are pure; `run` does the
//! I/O in the spec's order. Nothing here collects data itself.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, Container, EnvVar, EnvVarSource, HostPathVolumeSource,
    LocalObjectReference, Namespace, ObjectFieldSelector, PodSecurityContext, PodSpec,
    PodTemplateSpec, ResourceRequirements, SeccompProfile, SecurityContext, ServiceAccount,
    Toleration, Volume, VolumeMount,
};
use k8s_openapi::api::node::v1::RuntimeClass;
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{
    Api, DeleteParams, ListParams, LogParams, ObjectMeta, PostParams, PropagationPolicy,
    WatchEvent, WatchParams,
};

use crate::error::{Error, ErrorKind, Result};
use crate::kubernetes::api_error;
use crate::kubernetes::scheduling;
use crate::source::ConfigMapRef;

/// Fixed name of the cluster-scoped read-only role (kept for compatibility
/// with the upstream tool, which shares it between runs).
pub(crate) const NODE_READER: &str = "aicr-node-reader";
const APP_LABEL: &str = "app.kubernetes.io/name";

/// Everything the agent Job flags decide.
#[derive(Debug, Clone)]
pub struct AgentJob {
    pub namespace: String,
    pub image: String,
    pub image_pull_secrets: Vec<String>,
    pub job_name: String,
    pub service_account: String,
    pub node_selector: BTreeMap<String, String>,
    /// `None`: tolerate every taint.
    pub tolerations: Option<Vec<Toleration>>,
    pub timeout: Duration,
    /// The bound the client puts on each API request: the Job's watch is
    /// renewed before it (see [`super::watch_timeout`]).
    pub kube_timeout: Duration,
    pub cleanup: bool,
    pub privileged: bool,
    pub require_gpu: bool,
    pub runtime_class: Option<String>,
    pub max_nodes_per_entry: u32,
    pub debug: bool,
    /// Where the agent writes the snapshot.
    pub output: ConfigMapRef,
}

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(str::to_string),
        ..Default::default()
    }
}

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    let v = |x: &[&str]| Some(x.iter().map(|s| s.to_string()).collect());
    PolicyRule {
        api_groups: v(groups),
        resources: v(resources),
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
        .collect()
}

impl AgentJob {
    fn subject(&self) -> Vec<Subject> {
        vec![Subject {
            kind: "ServiceAccount".into(),
            name: self.service_account.clone(),
            namespace: Some(self.namespace.clone()),
            ..Default::default()
        }]
    }

    /// Least privilege: write ConfigMaps and read pods in its namespace.
    pub(crate) fn role(&self) -> Role {
        Role {
            metadata: meta(&self.service_account, Some(&self.namespace)),
            rules: Some(vec![
                rule(
                    &[""],
                    &["configmaps"],
                    &["create", "get", "update", "patch"],
                ),
                rule(&[""], &["pods"], &["get", "list"]),
            ]),
        }
    }

    pub(crate) fn role_binding(&self) -> RoleBinding {
        RoleBinding {
            metadata: meta(&self.service_account, Some(&self.namespace)),
            subjects: Some(self.subject()),
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "Role".into(),
                name: self.service_account.clone(),
            },
        }
    }

    /// Read-only across the cluster: nodes, pods, GPU Operator policies.
    pub(crate) fn cluster_role(&self) -> ClusterRole {
        ClusterRole {
            metadata: meta(NODE_READER, None),
            rules: Some(vec![
                rule(&[""], &["nodes"], &["get", "list"]),
                rule(&[""], &["pods"], &["get", "list"]),
                rule(&["nvidia.com"], &["clusterpolicies"], &["get", "list"]),
            ]),
            ..Default::default()
        }
    }

    pub(crate) fn cluster_role_binding(&self) -> ClusterRoleBinding {
        ClusterRoleBinding {
            metadata: meta(NODE_READER, None),
            subjects: Some(self.subject()),
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "ClusterRole".into(),
                name: NODE_READER.into(),
            },
        }
    }

    /// The Job exactly as the spec lays it out, so an upstream image and
    /// ours both run it.
    pub(crate) fn job(&self) -> Job {
        let labels = BTreeMap::from([(APP_LABEL.to_string(), "aicr".to_string())]);
        let mut args = Vec::new();
        if self.debug {
            args.extend(["--debug".to_string(), "--log-json".to_string()]);
        }
        args.extend([
            "snapshot".to_string(),
            "-o".to_string(),
            self.output.to_string(),
        ]);
        let mut env = vec![
            EnvVar {
                name: "AICR_AGENT_MODE".into(),
                value: Some("true".into()),
                ..Default::default()
            },
            EnvVar {
                name: "AICR_LOG_PREFIX".into(),
                value: Some("agent".into()),
                ..Default::default()
            },
            EnvVar {
                name: "NODE_NAME".into(),
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        field_path: "spec.nodeName".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ];
        if self.max_nodes_per_entry > 0 {
            env.push(EnvVar {
                name: "AICR_MAX_NODES_PER_ENTRY".into(),
                value: Some(self.max_nodes_per_entry.to_string()),
                ..Default::default()
            });
        }
        if self.runtime_class.is_some() {
            env.push(EnvVar {
                name: "NVIDIA_VISIBLE_DEVICES".into(),
                value: Some("all".into()),
                ..Default::default()
            });
        }
        let mut mounts = vec![VolumeMount {
            name: "tmp".into(),
            mount_path: "/tmp".into(),
            ..Default::default()
        }];
        let mut volumes = vec![Volume {
            name: "tmp".into(),
            empty_dir: Some(Default::default()),
            ..Default::default()
        }];
        let mut container = Container {
            name: "aicr".into(),
            image: Some(self.image.clone()),
            command: Some(vec!["aicr".into()]),
            args: Some(args),
            env: Some(env),
            ..Default::default()
        };
        let mut pod = PodSpec {
            service_account_name: Some(self.service_account.clone()),
            restart_policy: Some("Never".into()),
            node_selector: (!self.node_selector.is_empty()).then(|| self.node_selector.clone()),
            tolerations: Some(
                self.tolerations
                    .clone()
                    .unwrap_or_else(|| vec![scheduling::tolerate_all()]),
            ),
            image_pull_secrets: (!self.image_pull_secrets.is_empty()).then(|| {
                self.image_pull_secrets
                    .iter()
                    .map(|n| LocalObjectReference { name: n.clone() })
                    .collect()
            }),
            runtime_class_name: self.runtime_class.clone(),
            ..Default::default()
        };
        if self.privileged {
            pod.host_pid = Some(true);
            pod.host_network = Some(true);
            pod.host_ipc = Some(true);
            pod.security_context = Some(PodSecurityContext {
                run_as_user: Some(0),
                run_as_group: Some(0),
                fs_group: Some(0),
                fs_group_change_policy: Some("OnRootMismatch".into()),
                ..Default::default()
            });
            container.security_context = Some(SecurityContext {
                privileged: Some(true),
                run_as_user: Some(0),
                run_as_group: Some(0),
                allow_privilege_escalation: Some(true),
                capabilities: Some(Capabilities {
                    add: Some(vec!["SYS_ADMIN".into(), "SYS_CHROOT".into()]),
                    ..Default::default()
                }),
                ..Default::default()
            });
            let mut limits = vec![
                ("cpu", "2"),
                ("memory", "8Gi"),
                ("ephemeral-storage", "4Gi"),
            ];
            if self.require_gpu {
                limits.push(("nvidia.com/gpu", "1"));
            }
            container.resources = Some(ResourceRequirements {
                requests: Some(quantities(&[
                    ("cpu", "1"),
                    ("memory", "4Gi"),
                    ("ephemeral-storage", "2Gi"),
                ])),
                limits: Some(quantities(&limits)),
                ..Default::default()
            });
            mounts.push(VolumeMount {
                name: "run-systemd".into(),
                mount_path: "/run/systemd".into(),
                read_only: Some(true),
                ..Default::default()
            });
            mounts.push(VolumeMount {
                name: "host-os-release".into(),
                mount_path: "/etc/os-release".into(),
                read_only: Some(true),
                ..Default::default()
            });
            volumes.push(Volume {
                name: "run-systemd".into(),
                host_path: Some(HostPathVolumeSource {
                    path: "/run/systemd".into(),
                    type_: Some("Directory".into()),
                }),
                ..Default::default()
            });
            volumes.push(Volume {
                name: "host-os-release".into(),
                host_path: Some(HostPathVolumeSource {
                    path: "/etc/os-release".into(),
                    type_: Some("File".into()),
                }),
                ..Default::default()
            });
        } else {
            let seccomp = Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..Default::default()
            });
            pod.security_context = Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(65534),
                run_as_group: Some(65534),
                fs_group: Some(65534),
                seccomp_profile: seccomp.clone(),
                ..Default::default()
            });
            container.security_context = Some(SecurityContext {
                privileged: Some(false),
                run_as_non_root: Some(true),
                run_as_user: Some(65534),
                run_as_group: Some(65534),
                allow_privilege_escalation: Some(false),
                read_only_root_filesystem: Some(true),
                capabilities: Some(Capabilities {
                    drop: Some(vec!["ALL".into()]),
                    ..Default::default()
                }),
                seccomp_profile: seccomp,
                ..Default::default()
            });
            container.resources = Some(ResourceRequirements {
                requests: Some(quantities(&[
                    ("cpu", "100m"),
                    ("memory", "256Mi"),
                    ("ephemeral-storage", "256Mi"),
                ])),
                limits: Some(quantities(&[
                    ("cpu", "500m"),
                    ("memory", "512Mi"),
                    ("ephemeral-storage", "512Mi"),
                ])),
                ..Default::default()
            });
        }
        container.volume_mounts = Some(mounts);
        pod.containers = vec![container];
        pod.volumes = Some(volumes);
        Job {
            metadata: ObjectMeta {
                labels: Some(labels.clone()),
                ..meta(&self.job_name, Some(&self.namespace))
            },
            spec: Some(JobSpec {
                completions: Some(1),
                parallelism: Some(1),
                completion_mode: Some("NonIndexed".into()),
                backoff_limit: Some(0),
                ttl_seconds_after_finished: Some(3600),
                active_deadline_seconds: Some(18000),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels),
                        ..Default::default()
                    }),
                    spec: Some(pod),
                },
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// What this run created or updated, so cleanup touches nothing else.
#[derive(Debug, Default)]
struct Owned {
    service_account: bool,
    role: bool,
    role_binding: bool,
    cluster_role: bool,
    cluster_role_binding: bool,
    job: bool,
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// Deploy, wait, fetch, clean up. Returns the snapshot YAML the agent wrote.
pub async fn run(client: &kube::Client, job: &AgentJob) -> Result<String> {
    let mut owned = Owned::default();
    let result = deploy_and_wait(client, job, &mut owned).await;
    if job.cleanup {
        cleanup(client, job, &owned).await;
    }
    result
}

async fn deploy_and_wait(
    client: &kube::Client,
    job: &AgentJob,
    owned: &mut Owned,
) -> Result<String> {
    preflight(client, &job.namespace).await?;
    if let Some(rc) = &job.runtime_class {
        let api: Api<RuntimeClass> = Api::all(client.clone());
        api.get(rc).await.map_err(|e| {
            if is_status(&e, 404) {
                Error::not_found(format!(
                    "RuntimeClass {rc:?} not found in cluster; the GPU Operator may not be installed yet. Use --node-selector to target GPU nodes instead"
                ))
            } else {
                api_error(e, &format!("failed to get RuntimeClass {rc}"))
            }
        })?;
    }
    let pp = PostParams::default();
    let ns_api: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".into(),
                "aicr".into(),
            )])),
            ..meta(&job.namespace, None)
        },
        ..Default::default()
    };
    create_or_keep(ns_api.create(&pp, &ns).await, "namespace")?;

    let sa_api: Api<ServiceAccount> = Api::namespaced(client.clone(), &job.namespace);
    let sa = ServiceAccount {
        metadata: meta(&job.service_account, Some(&job.namespace)),
        ..Default::default()
    };
    owned.service_account = create_or_keep(sa_api.create(&pp, &sa).await, "service account")?;

    owned.role = upsert(Api::namespaced(client.clone(), &job.namespace), &job.role()).await?;
    owned.role_binding = upsert(
        Api::namespaced(client.clone(), &job.namespace),
        &job.role_binding(),
    )
    .await?;
    owned.cluster_role = upsert(Api::all(client.clone()), &job.cluster_role()).await?;
    owned.cluster_role_binding =
        upsert(Api::all(client.clone()), &job.cluster_role_binding()).await?;

    let jobs: Api<Job> = Api::namespaced(client.clone(), &job.namespace);
    replace_job(&jobs, job).await?;
    owned.job = true;

    if let Err(e) = wait(&jobs, job).await {
        print_agent_logs(client, &job.namespace).await;
        return Err(e.context("job failed"));
    }
    fetch(client, &job.output).await
}

/// Create; an existing object counts as success (not ours to clean up).
fn create_or_keep<T>(r: std::result::Result<T, kube::Error>, what: &str) -> Result<bool> {
    match r {
        Ok(_) => Ok(true),
        Err(e) if is_status(&e, 409) => Ok(false),
        Err(e) => Err(api_error(e, &format!("failed to create {what}"))),
    }
}

/// Create, or replace an existing object of the same name.
async fn upsert<K>(api: Api<K>, obj: &K) -> Result<bool>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    match api.create(&PostParams::default(), obj).await {
        Ok(_) => Ok(true),
        Err(e) if is_status(&e, 409) => {
            let current = api
                .get(&name)
                .await
                .map_err(|e| api_error(e, &format!("failed to get {name}")))?;
            let mut next = obj.clone();
            next.meta_mut().resource_version = current.meta().resource_version.clone();
            api.replace(&name, &PostParams::default(), &next)
                .await
                .map_err(|e| api_error(e, &format!("failed to update {name}")))?;
            Ok(true)
        }
        Err(e) => Err(api_error(e, &format!("failed to create {name}"))),
    }
}

async fn replace_job(jobs: &Api<Job>, job: &AgentJob) -> Result<()> {
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        ..Default::default()
    };
    match jobs.delete(&job.job_name, &dp).await {
        Ok(_) => {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                match jobs.get_opt(&job.job_name).await {
                    Ok(None) => break,
                    Ok(Some(_)) if tokio::time::Instant::now() >= deadline => {
                        return Err(Error::new(
                            ErrorKind::Timeout,
                            "timeout waiting for Job deletion",
                        ));
                    }
                    Ok(Some(_)) => tokio::time::sleep(Duration::from_millis(500)).await,
                    Err(e) => return Err(api_error(e, "failed to get Job")),
                }
            }
        }
        Err(e) if is_status(&e, 404) => {}
        Err(e) => return Err(api_error(e, "failed to delete previous Job")),
    }
    jobs.create(&PostParams::default(), &job.job())
        .await
        .map_err(|e| api_error(e, "failed to create Job"))?;
    Ok(())
}

/// One SelfSubjectAccessReview per permission the deployment needs; every
/// denial is listed so the admin can grant them in one go.
async fn preflight(client: &kube::Client, ns: &str) -> Result<()> {
    let rows: [(&str, &str, bool); 9] = [
        ("create", "serviceaccounts", true),
        ("create", "roles", true),
        ("create", "rolebindings", true),
        ("create", "jobs", true),
        ("get", "configmaps", true),
        ("list", "configmaps", true),
        ("create", "clusterroles", false),
        ("create", "clusterrolebindings", false),
        ("delete", "jobs", true),
    ];
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let mut missing = Vec::new();
    for (verb, resource, namespaced) in rows {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(verb.into()),
                    resource: Some(resource.into()),
                    namespace: namespaced.then(|| ns.to_string()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let answer = api.create(&PostParams::default(), &review).await.map_err(|e| {
            let err = api_error(e, "permission check failed");
            if err.kind() == ErrorKind::Unavailable || err.kind() == ErrorKind::Timeout {
                Error::new(
                    err.kind(),
                    format!("cannot reach Kubernetes API server (check VPN, the cluster endpoint in your kubeconfig, and firewalls): {err}"),
                )
            } else {
                Error::new(ErrorKind::Unauthorized, err.to_string())
            }
        })?;
        if !answer.status.is_some_and(|s| s.allowed) {
            let scope = if namespaced {
                format!("namespace {ns:?}")
            } else {
                "cluster".into()
            };
            missing.push(format!("  - {verb} {resource} ({scope})"));
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Unauthorized,
            format!(
                "insufficient permissions to deploy agent; missing required permissions:\n{}",
                missing.join("\n")
            ),
        ))
    }
}

fn job_outcome(job: &Job) -> Option<Result<()>> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    for c in conditions {
        if c.status != "True" {
            continue;
        }
        match c.type_.as_str() {
            "Complete" => return Some(Ok(())),
            "Failed" => {
                return Some(Err(Error::internal(format!(
                    "job failed: {} {}",
                    c.reason.clone().unwrap_or_default(),
                    c.message.clone().unwrap_or_default()
                ))));
            }
            _ => {}
        }
    }
    None
}

/// Wait for Complete or Failed, watching from the last seen version, and
/// reading the Job again each time the watch ends (it is asked to end
/// before the client's read timeout).
async fn wait(jobs: &Api<Job>, job: &AgentJob) -> Result<()> {
    let (name, timeout) = (job.job_name.as_str(), job.timeout);
    let fut = async {
        loop {
            let current = jobs
                .get(name)
                .await
                .map_err(|e| api_error(e, "failed to get Job"))?;
            if let Some(outcome) = job_outcome(&current) {
                return outcome;
            }
            let rv = current
                .metadata
                .resource_version
                .clone()
                .unwrap_or_else(|| "0".into());
            let wp = WatchParams::default()
                .fields(&format!("metadata.name={name}"))
                .timeout(super::watch_timeout(job.kube_timeout));
            let mut stream = jobs
                .watch(&wp, &rv)
                .await
                .map_err(|e| api_error(e, "failed to watch Job"))?
                .boxed();
            while let Some(ev) = stream
                .try_next()
                .await
                .map_err(|e| api_error(e, "failed to watch Job"))?
            {
                match ev {
                    WatchEvent::Added(j) | WatchEvent::Modified(j) => {
                        if let Some(outcome) = job_outcome(&j) {
                            return outcome;
                        }
                    }
                    WatchEvent::Deleted(_) => {
                        return Err(Error::internal("the Job was deleted while waiting"));
                    }
                    WatchEvent::Bookmark(_) | WatchEvent::Error(_) => {}
                }
            }
        }
    };
    tokio::time::timeout(timeout, fut).await.map_err(|_| {
        Error::new(
            ErrorKind::Timeout,
            format!(
                "job completion timeout after {} (raise --timeout)",
                humantime::format_duration(timeout)
            ),
        )
    })?
}

async fn print_agent_logs(client: &kube::Client, ns: &str) {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), ns);
    let Ok(list) = pods
        .list(&ListParams::default().labels(&format!("{APP_LABEL}=aicr")))
        .await
    else {
        return;
    };
    let Some(name) = list.items.first().and_then(|p| p.metadata.name.clone()) else {
        return;
    };
    if let Ok(log) = pods.logs(&name, &LogParams::default()).await {
        eprintln!("--- agent logs ---\n{}\n--- end logs ---", log.trim_end());
    }
}

async fn fetch(client: &kube::Client, cm: &ConfigMapRef) -> Result<String> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &cm.namespace);
    // The agent should have written it, so its absence is our failure (8),
    // not something the user named that does not exist.
    let obj = api.get(&cm.name).await.map_err(|e| {
        api_error(
            e,
            &format!("failed to get ConfigMap {}/{}", cm.namespace, cm.name),
        )
        .wrap(ErrorKind::Internal, "failed to retrieve snapshot")
    })?;
    obj.data
        .and_then(|mut d| d.remove("snapshot.yaml"))
        .ok_or_else(|| {
            Error::internal(format!(
                "failed to retrieve snapshot: ConfigMap {}/{} does not contain 'snapshot.yaml' key",
                cm.namespace, cm.name
            ))
        })
}

/// Delete what this run created or updated; failures are one warning.
async fn cleanup(client: &kube::Client, job: &AgentJob, owned: &Owned) {
    let ns = job.namespace.as_str();
    let dp = DeleteParams::default();
    let mut failures = Vec::new();
    let mut note = |what: &str, r: std::result::Result<(), kube::Error>| {
        if let Err(e) = r
            && !is_status(&e, 404)
        {
            failures.push(format!("{what}: {}", api_error(e, "delete")));
        }
    };
    if owned.job {
        let fg = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Foreground),
            ..Default::default()
        };
        let api: Api<Job> = Api::namespaced(client.clone(), ns);
        note("job", api.delete(&job.job_name, &fg).await.map(|_| ()));
    }
    if owned.service_account {
        let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
        note(
            "serviceaccount",
            api.delete(&job.service_account, &dp).await.map(|_| ()),
        );
    }
    if owned.role {
        let api: Api<Role> = Api::namespaced(client.clone(), ns);
        note(
            "role",
            api.delete(&job.service_account, &dp).await.map(|_| ()),
        );
    }
    if owned.role_binding {
        let api: Api<RoleBinding> = Api::namespaced(client.clone(), ns);
        note(
            "rolebinding",
            api.delete(&job.service_account, &dp).await.map(|_| ()),
        );
    }
    if owned.cluster_role {
        let api: Api<ClusterRole> = Api::all(client.clone());
        note(
            "clusterrole",
            api.delete(NODE_READER, &dp).await.map(|_| ()),
        );
    }
    if owned.cluster_role_binding {
        let api: Api<ClusterRoleBinding> = Api::all(client.clone());
        note(
            "clusterrolebinding",
            api.delete(NODE_READER, &dp).await.map(|_| ()),
        );
    }
    if !failures.is_empty() {
        tracing::warn!(
            "cleanup failed - resources may remain in cluster: failed to delete {} resource(s): {}",
            failures.len(),
            failures.join("; ")
        );
    }
}
