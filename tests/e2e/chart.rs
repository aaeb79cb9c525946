//! The Helm chart in `charts/aicr`, rendered by Helm's own engine (Helm 4
//! through `helm-python-sdk`; see `scripts/install-test-tools.sh`) with
//! `values.yaml`, with `ci/all-features-values.yaml`, and with each
//! optional feature switched on alone. `helm lint --strict` must be clean
//! at the oldest Kubernetes the chart admits and the newest the schemas
//! know; every rendered object must pass the official Kubernetes schemas
//! (strict: an unknown field is an error) or, for custom resources, the
//! published CRD schema. Then the security properties: the agent has no
//! RBAC and no automounted token and mounts the host read-only; the
//! aggregator's permissions are exactly the listed ones.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use aicr_test_support::tools::{self, Judge};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/aicr");
const RELEASE: &str = "aicr";
const NAMESPACE: &str = "aicr-system";
/// The oldest Kubernetes `Chart.yaml`'s `kubeVersion` admits.
const OLDEST_KUBERNETES: &str = "1.30.0";

fn chart() -> PathBuf {
    PathBuf::from(CHART)
}

/// Helm's engine, or `None` (the test skips; a failure under CI).
fn helm() -> Option<&'static Judge> {
    static JUDGE: OnceLock<Option<Judge>> = OnceLock::new();
    JUDGE.get_or_init(Judge::find).as_ref()
}

fn yaml_file(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    aicr::yaml::from_yaml(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn defaults() -> Value {
    yaml_file(&chart().join("values.yaml"))
}

fn with(overrides: Value) -> Value {
    let mut v = defaults();
    tools::merge_values(&mut v, &overrides);
    v
}

fn all_features() -> Value {
    with(yaml_file(&chart().join("ci/all-features-values.yaml")))
}

/// Each optional feature switched on alone, by name.
fn each_feature_alone() -> Vec<(&'static str, Value)> {
    vec![
        (
            "recipe.content",
            with(
                json!({"recipe": {"content": "kind: RecipeResult\napiVersion: aicr.nvidia.com/v1alpha1\n"}}),
            ),
        ),
        (
            "recipe.existingConfigMap",
            with(json!({"recipe": {"existingConfigMap": "my-recipe"}})),
        ),
        (
            "tls.clientAuth",
            with(json!({"tls": {"clientAuth": {"enabled": true}}})),
        ),
        (
            "tls.certManager",
            with(json!({"tls": {"certManager": {"enabled": true}}})),
        ),
        (
            "serviceMonitor",
            with(json!({"serviceMonitor": {"enabled": true}})),
        ),
        (
            "prometheusRule",
            with(json!({"prometheusRule": {"enabled": true}})),
        ),
        (
            "networkPolicy",
            with(json!({"networkPolicy": {"enabled": true}})),
        ),
        (
            "grafanaDashboard",
            with(json!({"grafanaDashboard": {"enabled": true}})),
        ),
        (
            "aggregator.alertmanagerUrl",
            with(json!({"aggregator": {"alertmanagerUrl": "http://am:9093"}})),
        ),
        (
            "agent.runtimeClassName",
            with(json!({"agent": {"runtimeClassName": "nvidia"}})),
        ),
        (
            "aggregator.nodeStatus.taintOnViolation",
            with(json!({"aggregator": {"nodeStatus": {"taintOnViolation": "warning"}}})),
        ),
        (
            "aggregator.nodeStatus.reports.policyReports",
            with(json!({"aggregator": {"nodeStatus": {"reports": {"policyReports": true}}}})),
        ),
        (
            "nothing on Nodes",
            with(
                json!({"aggregator": {"nodeStatus": {"condition": false, "reports": {"openReports": false}}}}),
            ),
        ),
        (
            "single aggregator",
            with(json!({"aggregator": {"replicas": 1, "leaderElection": {"enabled": false}}})),
        ),
    ]
}

/// Every template rendered by Helm with `values`: (template file, document
/// text).
fn render(helm: &Judge, values: &Value) -> Result<Vec<(String, String)>, String> {
    let mut docs = Vec::new();
    for (file, text) in helm.helm_render(&chart(), Some(values), RELEASE, NAMESPACE)? {
        for doc in text.split("\n---\n") {
            let meaningful = doc.lines().any(|l| {
                !l.trim().is_empty() && !l.trim_start().starts_with('#') && l.trim() != "---"
            });
            if meaningful {
                docs.push((file.clone(), doc.to_string()));
            }
        }
    }
    Ok(docs)
}

/// The rendered objects, keyed by (kind, name).
struct Objects(BTreeMap<(String, String), Value>);

impl Objects {
    fn of(helm: &Judge, values: &Value) -> Objects {
        let mut map = BTreeMap::new();
        for (file, doc) in render(helm, values).unwrap() {
            let v: Value = aicr::yaml::from_yaml(&doc)
                .unwrap_or_else(|e| panic!("{file} does not render to YAML: {e}\n{doc}"));
            let kind = v["kind"]
                .as_str()
                .unwrap_or_else(|| panic!("{file}: no kind"));
            assert!(v["apiVersion"].is_string(), "{file}: no apiVersion");
            let name = v["metadata"]["name"]
                .as_str()
                .unwrap_or_else(|| panic!("{file}: {kind} has no name"));
            let key = (kind.to_string(), name.to_string());
            let shown = format!("{kind}/{name}");
            assert!(map.insert(key, v).is_none(), "{file}: {shown} twice");
        }
        Objects(map)
    }

    fn get(&self, kind: &str, name: &str) -> &Value {
        self.0
            .get(&(kind.to_string(), name.to_string()))
            .unwrap_or_else(|| panic!("no {kind}/{name} among {:?}", self.0.keys()))
    }

    fn kinds(&self, kind: &str) -> Vec<&Value> {
        self.0
            .iter()
            .filter(|((k, _), _)| k == kind)
            .map(|(_, v)| v)
            .collect()
    }

    fn typed<T: DeserializeOwned>(&self, kind: &str, name: &str) -> T {
        serde_json::from_value(self.get(kind, name).clone()).unwrap()
    }

    fn names(&self) -> BTreeSet<String> {
        self.0.keys().map(|(k, n)| format!("{k}/{n}")).collect()
    }
}

/// Every object against the official schemas (strict) at the oldest and
/// newest Kubernetes, custom resources against their published CRDs; then
/// what the schemas cannot say about our own custom resources.
fn check_schemas(helm: &Judge, objects: &Objects) {
    let stream: Vec<String> = objects
        .0
        .values()
        .map(|v| aicr::yaml::to_yaml(v).unwrap())
        .collect();
    let findings = helm.k8s_validate(
        &stream.join("---\n"),
        &[OLDEST_KUBERNETES, tools::NEWEST_KUBERNETES],
        &tools::crd_fixtures(),
    );
    assert!(
        findings.is_empty(),
        "schema findings:\n{}",
        findings.join("\n")
    );
    for ((kind, _), v) in &objects.0 {
        match kind.as_str() {
            "ServiceMonitor" => {
                let ep = &v["spec"]["endpoints"][0];
                assert_eq!(
                    (&ep["port"], &ep["path"]),
                    (&json!("http"), &json!("/metrics"))
                );
            }
            "PrometheusRule" => {
                for g in v["spec"]["groups"].as_array().unwrap() {
                    for r in g["rules"].as_array().unwrap() {
                        let summary = r["annotations"]["summary"].as_str().unwrap_or_default();
                        assert!(!summary.contains("{{ \""), "unrendered escape: {summary}");
                    }
                }
            }
            "Issuer" => {
                let spec = v["spec"].as_object().unwrap();
                assert!(
                    spec.contains_key("selfSigned") || spec.contains_key("ca"),
                    "{v}"
                );
            }
            "DaemonSet" | "Deployment" | "Service" | "ServiceAccount" | "ConfigMap"
            | "ClusterRole" | "ClusterRoleBinding" | "Role" | "RoleBinding" | "NetworkPolicy"
            | "Certificate" => {}
            other => panic!("the chart renders an unexpected kind {other}"),
        }
    }
}

fn pod(objects: &Objects, kind: &str, name: &str) -> PodSpec {
    let spec = &objects.get(kind, name)["spec"]["template"]["spec"];
    serde_json::from_value(spec.clone()).unwrap()
}

fn container(p: &PodSpec) -> &Container {
    assert_eq!(p.containers.len(), 1);
    &p.containers[0]
}

fn args(c: &Container) -> Vec<String> {
    c.args.clone().unwrap_or_default()
}

fn arg(c: &Container, flag: &str) -> Option<String> {
    args(c)
        .iter()
        .find_map(|a| a.strip_prefix(&format!("{flag}=")).map(str::to_string))
}

/// (apiGroup, resource, verb) triples a rule list grants.
fn grants(rules: &[PolicyRule]) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for r in rules {
        assert!(r.resource_names.is_none() && r.non_resource_urls.is_none());
        for g in r.api_groups.clone().unwrap_or_default() {
            for res in r.resources.clone().unwrap_or_default() {
                for v in &r.verbs {
                    out.insert((g.clone(), res.clone(), v.clone()));
                }
            }
        }
    }
    out
}

fn triples(list: &[(&str, &str, &str)]) -> BTreeSet<(String, String, String)> {
    list.iter()
        .map(|(g, r, v)| (g.to_string(), r.to_string(), v.to_string()))
        .collect()
}

fn check_agent(objects: &Objects, values: &Value) {
    let agent_sa = format!("{RELEASE}-agent");
    let sa: ServiceAccount = objects.typed("ServiceAccount", &agent_sa);
    assert_eq!(sa.automount_service_account_token, Some(false));
    for kind in ["RoleBinding", "ClusterRoleBinding"] {
        for b in objects.kinds(kind) {
            for s in b["subjects"].as_array().into_iter().flatten() {
                assert_ne!(s["name"], agent_sa, "the agent must have no RBAC binding");
            }
        }
    }

    let p = pod(objects, "DaemonSet", &agent_sa);
    assert_eq!(p.service_account_name.as_deref(), Some(agent_sa.as_str()));
    assert_eq!(p.automount_service_account_token, Some(false));
    assert_ne!(p.host_network, Some(true));
    assert_ne!(p.host_pid, Some(true));
    assert_eq!(
        serde_json::to_value(&p.tolerations).unwrap(),
        values["agent"]["tolerations"]
    );

    let volumes = p.volumes.clone().unwrap_or_default();
    let host_paths: BTreeMap<String, String> = volumes
        .iter()
        .filter_map(|v| {
            v.host_path
                .as_ref()
                .map(|h| (v.name.clone(), h.path.clone()))
        })
        .collect();
    assert_eq!(
        host_paths.values().cloned().collect::<BTreeSet<_>>(),
        BTreeSet::from(["/".to_string(), "/run/systemd".to_string()])
    );
    let c = container(&p);
    let sc = c.security_context.clone().unwrap();
    assert_ne!(sc.privileged, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.capabilities.unwrap().drop, Some(vec!["ALL".to_string()]));
    let mounts = c.volume_mounts.clone().unwrap_or_default();
    for m in &mounts {
        assert_eq!(m.read_only, Some(true), "{} must be read-only", m.name);
    }
    for name in host_paths.keys() {
        assert!(mounts.iter().any(|m| &m.name == name), "{name} unmounted");
    }
    let host_root = mounts.iter().find(|m| m.name == "host-root").unwrap();
    assert_eq!(host_root.mount_path, "/host");
    assert_eq!(arg(c, "--root").as_deref(), Some("/host"));
    let systemd = mounts.iter().find(|m| m.name == "host-systemd").unwrap();
    assert_eq!(systemd.mount_path, "/host/run/systemd");

    let identity = volumes.iter().find(|v| v.projected.is_some()).unwrap();
    let source = identity
        .projected
        .as_ref()
        .unwrap()
        .sources
        .as_ref()
        .unwrap()[0]
        .service_account_token
        .clone()
        .unwrap();
    assert_eq!(
        Some(source.audience.as_deref().unwrap()),
        values["agent"]["tokenAudience"].as_str()
    );
    let mount = mounts.iter().find(|m| m.name == identity.name).unwrap();
    assert_eq!(
        arg(c, "--identity-token-file"),
        Some(format!("{}/{}", mount.mount_path, source.path))
    );
    let ca = volumes.iter().find(|v| v.name == "aggregator-ca").unwrap();
    let items = ca.secret.as_ref().unwrap().items.clone().unwrap();
    assert_eq!(
        items.iter().map(|i| i.key.as_str()).collect::<Vec<_>>(),
        ["ca.crt"],
        "agents must not receive the aggregator's private key"
    );

    let node_name = c
        .env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .find(|e| e.name == "NODE_NAME")
        .unwrap();
    assert_eq!(
        node_name.value_from.unwrap().field_ref.unwrap().field_path,
        "spec.nodeName"
    );
    assert!(c.resources.as_ref().unwrap().limits.is_some());

    let port = values["aggregator"]["grpcPort"].as_u64().unwrap();
    assert_eq!(
        arg(c, "--aggregator"),
        Some(format!(
            "https://{RELEASE}-aggregator.{NAMESPACE}.svc:{port}"
        ))
    );
    assert!(!args(c).contains(&"--insecure".to_string()));
}

fn check_aggregator(objects: &Objects, values: &Value) {
    let name = format!("{RELEASE}-aggregator");
    let role: ClusterRole = objects.typed("ClusterRole", &name);
    let mut want = triples(&[
        ("", "nodes", "get"),
        ("", "nodes", "list"),
        ("", "nodes", "watch"),
        ("", "pods", "get"),
        ("", "pods", "list"),
        ("", "pods", "watch"),
        ("nvidia.com", "clusterpolicies", "get"),
        ("nvidia.com", "clusterpolicies", "list"),
        ("nvidia.com", "clusterpolicies", "watch"),
        ("authentication.k8s.io", "tokenreviews", "create"),
        ("events.k8s.io", "events", "create"),
        ("events.k8s.io", "events", "patch"),
    ]);
    // What each Node-status feature adds, and only when it is on.
    let node_status = &values["aggregator"]["nodeStatus"];
    let on = |v: &Value| v == &json!(true) || v.as_str().is_some_and(|s| !s.is_empty());
    if on(&node_status["condition"]) {
        want.extend(triples(&[("", "nodes/status", "patch")]));
    }
    if on(&node_status["taintOnViolation"]) {
        want.extend(triples(&[("", "nodes", "patch")]));
    }
    for (value, group, plural) in [
        ("openReports", "openreports.io", "clusterreports"),
        ("policyReports", "wgpolicyk8s.io", "clusterpolicyreports"),
    ] {
        if on(&node_status["reports"][value]) {
            for verb in ["get", "create", "patch", "delete"] {
                want.extend(triples(&[(group, plural, verb)]));
            }
        }
    }
    assert_eq!(grants(&role.rules.unwrap_or_default()), want);
    let binding: ClusterRoleBinding = objects.typed("ClusterRoleBinding", &name);
    assert_eq!(binding.role_ref.name, name);
    let subjects = binding.subjects.unwrap();
    assert_eq!(
        (
            subjects.len(),
            subjects[0].name.as_str(),
            subjects[0].namespace.as_deref()
        ),
        (1, name.as_str(), Some(NAMESPACE))
    );
    let lease_role = format!("{name}-leader");
    let role: Role = objects.typed("Role", &lease_role);
    assert_eq!(role.metadata.namespace.as_deref(), Some(NAMESPACE));
    assert_eq!(
        grants(&role.rules.unwrap_or_default()),
        triples(&[
            ("coordination.k8s.io", "leases", "get"),
            ("coordination.k8s.io", "leases", "create"),
            ("coordination.k8s.io", "leases", "update"),
            ("", "configmaps", "list"),
            ("", "configmaps", "patch"),
            ("", "configmaps", "delete"),
        ])
    );

    let deploy: Deployment = objects.typed("Deployment", &name);
    let spec = deploy.spec;
    assert_eq!(
        spec.replicas.map(i64::from),
        values["aggregator"]["replicas"].as_i64()
    );
    assert_eq!(spec.strategy.unwrap().type_.as_deref(), Some("Recreate"));
    let p = pod(objects, "Deployment", &name);
    let psc = p.security_context.clone().unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert!(psc.run_as_user.is_some_and(|u| u != 0));
    let c = container(&p);
    let a = args(c);
    for flag in ["--leader-elect", "--log-json"] {
        assert!(a.contains(&flag.to_string()), "{flag} missing: {a:?}");
    }
    assert!(
        !a.iter()
            .any(|x| x == "--insecure" || x == "--trust-node-names")
    );
    assert!(arg(c, "--tls-cert").is_some() && arg(c, "--tls-key").is_some());
    let pool_labels: Vec<&String> = a
        .iter()
        .filter(|x| x.starts_with("--pool-label="))
        .collect();
    assert_eq!(
        pool_labels,
        [
            "--pool-label=node.kubernetes.io/instance-type",
            "--pool-label=nvidia.com/gpu.product"
        ],
        "{a:?}"
    );
    assert_eq!(arg(c, "--peer-min-pool").as_deref(), Some("3"));
    assert_eq!(
        arg(c, "--node-condition"),
        Some(node_status["condition"].to_string())
    );
    let mut reports = Vec::new();
    if on(&node_status["reports"]["openReports"]) {
        reports.push("openreports");
    }
    if on(&node_status["reports"]["policyReports"]) {
        reports.push("wgpolicyk8s");
    }
    let reports = if reports.is_empty() {
        "none".to_string()
    } else {
        reports.join(",")
    };
    assert_eq!(arg(c, "--reports"), Some(reports));
    assert_eq!(
        arg(c, "--taint-on-violation").as_deref(),
        node_status["taintOnViolation"]
            .as_str()
            .filter(|s| !s.is_empty())
    );
    let max = &node_status["maxTainted"];
    assert_eq!(
        arg(c, "--max-tainted"),
        Some(max.as_str().map_or_else(|| max.to_string(), str::to_string))
    );
    assert_eq!(
        arg(c, "--token-audience").as_deref(),
        values["agent"]["tokenAudience"].as_str()
    );
    assert_eq!(
        arg(c, "--agent-service-account"),
        Some(format!("{NAMESPACE}:{RELEASE}-agent"))
    );
    let ports: BTreeMap<String, i32> = c
        .ports
        .clone()
        .unwrap()
        .into_iter()
        .map(|p| (p.name.unwrap(), p.container_port))
        .collect();
    let svc: Service = objects.typed("Service", &name);
    for sp in svc.spec.unwrap().ports.unwrap() {
        let port_name = sp.name.unwrap();
        assert_eq!(
            i64::from(sp.port),
            values["aggregator"][format!("{port_name}Port")]
                .as_i64()
                .unwrap()
        );
        assert!(ports.contains_key(&port_name), "{port_name} not on the pod");
    }
    let probe = c.readiness_probe.clone().unwrap().http_get.unwrap();
    assert_eq!(probe.path.as_deref(), Some("/readyz"));
    let env: Vec<String> = c.env.clone().unwrap().into_iter().map(|e| e.name).collect();
    assert!(env.contains(&"POD_NAMESPACE".to_string()));
}

#[test]
fn default_values_render_a_least_privilege_install() {
    let Some(helm) = helm() else { return };
    let values = defaults();
    let objects = Objects::of(helm, &values);
    check_schemas(helm, &objects);
    check_agent(&objects, &values);
    check_aggregator(&objects, &values);
    let names = objects.names();
    for optional in [
        "ServiceMonitor",
        "PrometheusRule",
        "NetworkPolicy",
        "Certificate",
        "ConfigMap",
    ] {
        assert!(
            !names.iter().any(|n| n.starts_with(&format!("{optional}/"))),
            "{optional} is off by default: {names:?}"
        );
    }
    let p = pod(&objects, "Deployment", "aicr-aggregator");
    let c = container(&p);
    assert_eq!(
        arg(c, "--cli-token-file").as_deref(),
        Some("/etc/aicr/cli/token")
    );
    assert_eq!(arg(c, "--recipe"), None);
    assert_eq!(c.image.as_deref(), Some("aicr:0.1.0"));
}

#[test]
fn every_optional_feature_renders_and_stays_least_privilege() {
    let Some(helm) = helm() else { return };
    let values = all_features();
    let objects = Objects::of(helm, &values);
    check_schemas(helm, &objects);
    check_agent(&objects, &values);
    check_aggregator(&objects, &values);
    let names = objects.names();
    for want in [
        "ServiceMonitor/aicr-aggregator",
        "PrometheusRule/aicr-drift",
        "NetworkPolicy/aicr-aggregator",
        "NetworkPolicy/aicr-agent",
        "Certificate/aicr-ca",
        "Certificate/aicr-aggregator",
        "Certificate/aicr-agent",
        "Issuer/aicr-selfsigned",
        "Issuer/aicr-ca",
        "ConfigMap/aicr-recipe",
    ] {
        assert!(names.contains(want), "{want} missing from {names:?}");
    }

    // The recipe reaches the aggregator as the file --recipe names.
    let cm: ConfigMap = objects.typed("ConfigMap", "aicr-recipe");
    let recipe = &cm.data.unwrap()["recipe.yaml"];
    assert_eq!(recipe, values["recipe"]["content"].as_str().unwrap());
    let parsed: aicr::model::recipe::RecipeResult = aicr::yaml::from_yaml(recipe).unwrap();
    assert_eq!(parsed.constraints.len(), 1);
    let p = pod(&objects, "Deployment", "aicr-aggregator");
    let c = container(&p);
    let mount = c
        .volume_mounts
        .clone()
        .unwrap()
        .into_iter()
        .find(|m| m.name == "recipe")
        .unwrap();
    assert_eq!(
        arg(c, "--recipe"),
        Some(format!("{}/recipe.yaml", mount.mount_path))
    );
    assert_eq!(
        arg(c, "--tls-client-ca").as_deref(),
        Some("/etc/aicr/tls/ca.crt")
    );
    assert!(arg(c, "--alertmanager-url").is_some());
    assert_eq!(
        arg(c, "--peer-ignore").as_deref(),
        Some("OS.sysctl./proc/sys/net/*"),
        "globs reach the aggregator unexpanded"
    );

    // mTLS: the agents present the client certificate cert-manager issues.
    let agent = pod(&objects, "DaemonSet", "aicr-agent");
    let ac = container(&agent);
    assert_eq!(
        arg(ac, "--tls-cert").as_deref(),
        Some("/etc/aicr/client/tls.crt")
    );
    assert_eq!(
        ac.image.as_deref(),
        Some("registry.example.com/aicr:0.1.0-test")
    );
    assert!(args(ac).contains(&"--systemd-unit=kubelet.service".to_string()));
    let client = objects.get("Certificate", "aicr-agent");
    assert_eq!(
        client["spec"]["secretName"],
        values["tls"]["clientAuth"]["agentSecretName"]
    );
    assert_eq!(client["spec"]["usages"], json!(["client auth"]));
    let server = objects.get("Certificate", "aicr-aggregator");
    assert_eq!(server["spec"]["secretName"], values["tls"]["secretName"]);
    let dns = server["spec"]["dnsNames"].as_array().unwrap();
    assert!(
        dns.contains(&json!(format!("aicr-aggregator.{NAMESPACE}.svc"))),
        "{dns:?}"
    );

    // Agents (and the extra peers) reach gRPC; only Prometheus reaches /metrics.
    let np: NetworkPolicy = objects.typed("NetworkPolicy", "aicr-aggregator");
    let ingress = np.spec.unwrap().ingress.unwrap();
    assert_eq!(ingress.len(), 2);
    let grpc_from = ingress[0].from.clone().unwrap();
    assert_eq!(grpc_from.len(), 2);
    assert_eq!(
        grpc_from[0]
            .pod_selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap()["app.kubernetes.io/component"],
        "agent"
    );
    let agent_np: NetworkPolicy = objects.typed("NetworkPolicy", "aicr-agent");
    assert!(
        agent_np.spec.unwrap().ingress.is_none(),
        "nothing may reach an agent"
    );

    let rule = objects.get("PrometheusRule", "aicr-drift");
    let first = &rule["spec"]["groups"][0]["rules"][0];
    assert!(
        first["expr"]
            .as_str()
            .unwrap()
            .contains("aicr_constraint_violation")
    );
    // Helm must leave Prometheus's own template text for Prometheus.
    let summary = first["annotations"]["summary"].as_str().unwrap();
    assert!(summary.contains("{{ $labels.constraint }}"), "{summary}");
}

#[test]
fn unsafe_combinations_refuse_to_render() {
    let Some(helm) = helm() else { return };
    let mut v = defaults();
    v["aggregator"]["leaderElection"]["enabled"] = json!(false);
    let e = render(helm, &v).unwrap_err();
    assert!(e.contains("leaderElection"), "{e}");
    v["aggregator"]["replicas"] = json!(1);
    let objects = Objects::of(helm, &v);
    assert!(!objects.names().contains("Role/aicr-aggregator-leader"));
    let p = pod(&objects, "Deployment", "aicr-aggregator");
    assert!(!args(container(&p)).contains(&"--leader-elect".to_string()));

    let mut v = defaults();
    v["cliToken"]["secretName"] = json!("");
    let e = render(helm, &v).unwrap_err();
    assert!(e.contains("cliToken.secretName"), "{e}");
    v["tls"]["clientAuth"]["enabled"] = json!(true);
    let objects = Objects::of(helm, &v);
    let p = pod(&objects, "Deployment", "aicr-aggregator");
    assert_eq!(arg(container(&p), "--cli-token-file"), None);

    // A severity the aggregator does not know would crash-loop it.
    let mut v = defaults();
    v["aggregator"]["nodeStatus"]["taintOnViolation"] = json!("severe");
    let e = render(helm, &v).unwrap_err();
    assert!(e.contains("taintOnViolation"), "{e}");
}

#[test]
fn helm_lint_strict_is_clean_for_every_feature_alone_and_together() {
    let Some(helm) = helm() else { return };
    let mut sets = vec![("defaults", defaults()), ("all features", all_features())];
    sets.extend(each_feature_alone());
    for (name, values) in &sets {
        for kube in [OLDEST_KUBERNETES, tools::NEWEST_KUBERNETES] {
            let findings = helm.helm_lint(&chart(), Some(values), kube);
            assert!(
                findings.is_empty(),
                "helm lint --strict ({name}, Kubernetes {kube}):\n{}",
                findings.join("\n")
            );
        }
    }
}

#[test]
fn each_feature_alone_renders_objects_the_schemas_accept() {
    let Some(helm) = helm() else { return };
    for (name, values) in each_feature_alone() {
        let objects = Objects::of(helm, &values);
        check_schemas(helm, &objects);
        check_agent(&objects, &values);
        if values["aggregator"]["leaderElection"]["enabled"] == json!(true) {
            check_aggregator(&objects, &values);
        }
        assert!(objects.0.len() >= 7, "{name}: {:?}", objects.names());
    }
}
