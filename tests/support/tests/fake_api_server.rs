//! The fake API server exercised through `kube::Client` over HTTP, the way
//! product code will use it.

use aicr_test_support::{FakeApiServer, fixtures, unreachable_kubeconfig};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, LogParams, Patch, PatchParams, PostParams,
    WatchEvent, WatchParams,
};
use kube::core::response::Status;
use kube::discovery::{ApiResource, Discovery};
use kube::runtime::watcher;
use serde_json::{Value, json};
use std::time::Duration;

fn config_map(name: &str, data: Value) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": data})).unwrap()
}

fn api_error(result: Result<impl std::fmt::Debug, kube::Error>) -> Box<Status> {
    match result {
        Err(kube::Error::Api(status)) => status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn config_maps_round_trip_through_a_typed_api() {
    let api = FakeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(api.client().await, "default");

    let created = cms
        .create(&PostParams::default(), &config_map("x", json!({"k": "v"})))
        .await
        .unwrap();
    let meta = &created.metadata;
    assert!(meta.uid.is_some() && meta.creation_timestamp.is_some());
    assert_eq!(meta.generation, Some(1));

    let mut fetched = cms.get("x").await.unwrap();
    assert_eq!(fetched.data.as_ref().unwrap()["k"], "v");
    fetched.data = Some([("k".to_string(), "w".to_string())].into());
    let replaced = cms
        .replace("x", &PostParams::default(), &fetched)
        .await
        .unwrap();
    assert_ne!(
        replaced.metadata.resource_version,
        created.metadata.resource_version
    );
    assert_eq!(
        api.get("configmaps", "default", "x").unwrap()["data"]["k"],
        "w"
    );

    let listed = cms.list(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);

    let deleted = cms.delete("x", &DeleteParams::default()).await.unwrap();
    assert!(
        deleted.is_right(),
        "built-ins answer a delete with a Success status"
    );
    let missing = api_error(cms.get("x").await);
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    assert_eq!(missing.message, r#"configmaps "x" not found"#);
}

#[tokio::test]
async fn conflicts_answer_409() {
    let api = FakeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(api.client().await, "default");
    let first = cms
        .create(&PostParams::default(), &config_map("x", json!({})))
        .await
        .unwrap();

    let exists = api_error(
        cms.create(&PostParams::default(), &config_map("x", json!({})))
            .await,
    );
    assert!(exists.is_already_exists());
    assert_eq!(exists.message, r#"configmaps "x" already exists"#);

    api.modify("configmaps", "default", "x", |cm| {
        cm["data"] = json!({"by": "someone else"})
    });
    let stale = api_error(cms.replace("x", &PostParams::default(), &first).await);
    assert!(stale.is_conflict());
    assert_eq!(
        stale.message,
        r#"Operation cannot be fulfilled on configmaps "x": the object has been modified; please apply your changes to the latest version and try again"#
    );
}

#[tokio::test]
async fn denials_answer_403_in_apiserver_words() {
    let api = FakeApiServer::start().await;
    api.deny("configmaps", "create");
    api.deny_in("pods", "list", "kube-system");
    let client = api.client().await;

    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let denied = api_error(
        cms.create(&PostParams::default(), &config_map("x", json!({})))
            .await,
    );
    assert!(denied.is_forbidden());
    assert_eq!(
        denied.message,
        r#"configmaps is forbidden: User "fake-user" cannot create resource "configmaps" in API group "" in the namespace "default""#
    );
    cms.list(&ListParams::default()).await.unwrap();

    let system_pods: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    assert!(api_error(system_pods.list(&ListParams::default()).await).is_forbidden());
    let pods: Api<Pod> = Api::namespaced(client, "default");
    pods.list(&ListParams::default()).await.unwrap();

    api.allow_all();
    cms.create(&PostParams::default(), &config_map("x", json!({})))
        .await
        .unwrap();
}

#[tokio::test]
async fn access_reviews_and_token_reviews_answer_from_the_test() {
    let api = FakeApiServer::start().await;
    api.deny_in("jobs", "create", "aicr");
    let client = api.client().await;
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let ask = |verb: &str, resource: &str, namespace: &str| SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                resource: Some(resource.into()),
                namespace: Some(namespace.into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let denied = reviews
        .create(&PostParams::default(), &ask("create", "jobs", "aicr"))
        .await
        .unwrap();
    assert!(!denied.status.unwrap().allowed);
    let allowed = reviews
        .create(&PostParams::default(), &ask("get", "configmaps", "aicr"))
        .await
        .unwrap();
    assert!(allowed.status.unwrap().allowed);

    api.accept_token(
        "good",
        "system:serviceaccount:aicr:agent",
        &["system:serviceaccounts"],
    );
    let tokens: Api<DynamicObject> = Api::all_with(
        client,
        &ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("authentication.k8s.io", "v1", "TokenReview"),
            "tokenreviews",
        ),
    );
    let review = |token: &str| {
        serde_json::from_value::<DynamicObject>(json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
            "metadata": {}, "spec": {"token": token},
        }))
        .unwrap()
    };
    let good = tokens
        .create(&PostParams::default(), &review("good"))
        .await
        .unwrap();
    assert_eq!(good.data["status"]["authenticated"], true);
    assert_eq!(
        good.data["status"]["user"]["username"],
        "system:serviceaccount:aicr:agent"
    );
    let bad = tokens
        .create(&PostParams::default(), &review("bad"))
        .await
        .unwrap();
    assert_ne!(bad.data["status"]["authenticated"], true);
}

#[tokio::test]
async fn label_and_field_selectors_filter_lists() {
    let api = FakeApiServer::start().await;
    api.insert(
        fixtures::node("gpu-1")
            .label("nvidia.com/gpu.present", "true")
            .label("pool", "a")
            .build(),
    );
    api.insert(
        fixtures::node("gpu-2")
            .label("nvidia.com/gpu.present", "true")
            .label("pool", "b")
            .build(),
    );
    api.insert(fixtures::node("cpu-1").label("pool", "a").build());
    let nodes: Api<Node> = Api::all(api.client().await);
    let names = |list: kube::core::ObjectList<Node>| -> Vec<String> {
        list.items
            .into_iter()
            .map(|n| n.metadata.name.unwrap())
            .collect()
    };

    let gpus = nodes
        .list(&ListParams::default().labels("nvidia.com/gpu.present"))
        .await
        .unwrap();
    assert_eq!(names(gpus), ["gpu-1", "gpu-2"]);
    let pool_a_gpus = ListParams::default().labels("pool in (a),nvidia.com/gpu.present=true");
    assert_eq!(names(nodes.list(&pool_a_gpus).await.unwrap()), ["gpu-1"]);
    let not_b = nodes
        .list(&ListParams::default().labels("pool!=b"))
        .await
        .unwrap();
    assert_eq!(names(not_b), ["cpu-1", "gpu-1"]);
    let cpu = nodes
        .list(&ListParams::default().labels("!nvidia.com/gpu.present"))
        .await
        .unwrap();
    assert_eq!(names(cpu), ["cpu-1"]);
    let by_name = nodes
        .list(&ListParams::default().fields("metadata.name=gpu-2"))
        .await
        .unwrap();
    assert_eq!(names(by_name), ["gpu-2"]);

    let bad = api_error(
        nodes
            .list(&ListParams::default().fields("spec.bogus=x"))
            .await,
    );
    assert_eq!(
        (bad.code, bad.message.as_str()),
        (400, "field label not supported: spec.bogus")
    );
}

#[tokio::test]
async fn lists_page_with_limit_and_continue() {
    let api = FakeApiServer::start().await;
    for i in 0..5 {
        api.insert(fixtures::node(&format!("node-{i}")).build());
    }
    let nodes: Api<Node> = Api::all(api.client().await);
    let mut seen = Vec::new();
    let mut params = ListParams::default().limit(2);
    loop {
        let page = nodes.list(&params).await.unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.into_iter().map(|n| n.metadata.name.unwrap()));
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
    }
    assert_eq!(seen, ["node-0", "node-1", "node-2", "node-3", "node-4"]);

    let metadata_only = nodes.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(metadata_only.items.len(), 5);
}

#[tokio::test]
async fn patches_merge_json_and_apply() {
    let api = FakeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(api.client().await, "default");
    let apply = PatchParams::apply("aicr").force();

    let created = cms
        .patch(
            "snap",
            &apply,
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
                                 "metadata": {"name": "snap", "labels": {"app.kubernetes.io/name": "aicr"}},
                                 "data": {"format": "yaml"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        created.metadata.labels.unwrap()["app.kubernetes.io/name"],
        "aicr"
    );
    let request = api.requests().into_iter().last().unwrap();
    assert_eq!(request.param("fieldManager").as_deref(), Some("aicr"));
    assert_eq!(
        request.content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );

    let applied = cms
        .patch(
            "snap",
            &apply,
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
                                 "metadata": {"name": "snap"}, "data": {"snapshot.yaml": "kind: Snapshot"}})),
        )
        .await
        .unwrap();
    let data = applied.data.unwrap();
    assert_eq!(
        (data["format"].as_str(), data["snapshot.yaml"].as_str()),
        ("yaml", "kind: Snapshot")
    );

    let merged = cms
        .patch(
            "snap",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"format": null}})),
        )
        .await
        .unwrap();
    assert!(!merged.data.unwrap().contains_key("format"));

    let ops: json_patch::Patch =
        serde_json::from_value(json!([{"op": "add", "path": "/data/extra", "value": "1"}]))
            .unwrap();
    let patched = cms
        .patch("snap", &PatchParams::default(), &Patch::Json::<()>(ops))
        .await
        .unwrap();
    assert_eq!(patched.data.unwrap()["extra"], "1");

    let missing = api_error(
        cms.patch("nope", &PatchParams::default(), &Patch::Merge(json!({})))
            .await,
    );
    assert!(missing.is_not_found());
}

#[tokio::test]
async fn status_is_a_separate_subresource() {
    let api = FakeApiServer::start().await;
    let jobs: Api<Job> = Api::namespaced(api.client().await, "default");
    let job: Job = serde_json::from_value(json!({
        "metadata": {"name": "j"},
        "spec": {"template": {"spec": {"restartPolicy": "Never",
                                       "containers": [{"name": "c", "image": "busybox"}]}}},
        "status": {"succeeded": 5},
    }))
    .unwrap();
    let created = jobs.create(&PostParams::default(), &job).await.unwrap();
    assert!(
        created.status.is_none(),
        "create drops status for types with a status subresource"
    );

    let ignored = jobs
        .patch(
            "j",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"succeeded": 1}})),
        )
        .await
        .unwrap();
    assert!(ignored.status.is_none());

    let status = jobs
        .patch_status(
            "j",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": fixtures::job_complete_status()})),
        )
        .await
        .unwrap();
    assert_eq!(status.status.unwrap().succeeded, Some(1));
    assert_eq!(
        status.metadata.generation,
        Some(1),
        "status writes leave the generation alone"
    );

    let spec_change = jobs
        .patch(
            "j",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"backoffLimit": 0}})),
        )
        .await
        .unwrap();
    assert_eq!(spec_change.metadata.generation, Some(2));
    assert!(jobs.get_status("j").await.unwrap().status.is_some());
}

#[tokio::test]
async fn watcher_sees_the_initial_list_then_changes() {
    let api = FakeApiServer::start().await;
    api.insert(fixtures::config_map("default", "before", &[]));
    let cms: Api<ConfigMap> = Api::namespaced(api.client().await, "default");
    let mut events = watcher(cms.clone(), watcher::Config::default().labels("watched")).boxed();
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(5), events.try_next())
            .await
            .expect("an event within 5s")
            .unwrap()
            .unwrap()
    };

    assert!(matches!(next().await, watcher::Event::Init));
    assert!(
        matches!(next().await, watcher::Event::InitDone),
        "unlabelled objects are not listed"
    );

    let mut labelled = config_map("after", json!({}));
    labelled.metadata.labels = Some([("watched".to_string(), "yes".to_string())].into());
    cms.create(&PostParams::default(), &labelled).await.unwrap();
    let watcher::Event::Apply(added) = next().await else {
        panic!("expected Apply")
    };
    assert_eq!(added.metadata.name.as_deref(), Some("after"));

    api.modify("configmaps", "default", "after", |cm| {
        cm["metadata"]["labels"] = json!({})
    });
    let watcher::Event::Delete(gone) = next().await else {
        panic!("an object leaving the selection is reported deleted")
    };
    assert_eq!(gone.metadata.name.as_deref(), Some("after"));
}

#[tokio::test]
async fn watches_replay_from_a_resource_version_and_expire() {
    let api = FakeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(api.client().await, "default");
    let list = cms.list(&ListParams::default()).await.unwrap();
    let from = list.metadata.resource_version.unwrap();
    cms.create(&PostParams::default(), &config_map("a", json!({})))
        .await
        .unwrap();
    cms.delete("a", &DeleteParams::default()).await.unwrap();

    let events: Vec<_> = cms
        .watch(&WatchParams::default().timeout(1), &from)
        .await
        .unwrap()
        .take(2)
        .try_collect()
        .await
        .unwrap();
    assert!(matches!(
        events[..],
        [WatchEvent::Added(_), WatchEvent::Deleted(_)]
    ));

    api.expire_watch_history();
    let mut expired = cms
        .watch(&WatchParams::default(), &from)
        .await
        .unwrap()
        .boxed();
    let Some(Ok(WatchEvent::Error(status))) = expired.next().await else {
        panic!("expected a watch error")
    };
    assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
}

#[tokio::test]
async fn discovery_follows_crds_registered_while_running() {
    let api = FakeApiServer::start().await;
    let client = api.client().await;

    let before = Discovery::new(client.clone()).run().await.unwrap();
    assert!(before.has_group("apps") && !before.has_group("nvidia.com"));

    api.register_crd(
        "nvidia.com",
        "v1",
        "ClusterPolicy",
        "clusterpolicies",
        false,
    );
    for discovery in [
        Discovery::new(client.clone()).run().await.unwrap(),
        Discovery::new(client.clone())
            .run_aggregated()
            .await
            .unwrap(),
    ] {
        let group = discovery
            .get("nvidia.com")
            .expect("the CRD's group is discovered");
        let (resource, caps) = group.recommended_kind("ClusterPolicy").unwrap();
        assert_eq!(resource.plural, "clusterpolicies");
        assert_eq!(caps.scope, kube::discovery::Scope::Cluster);
        assert!(
            discovery
                .get("")
                .unwrap()
                .recommended_kind("ConfigMap")
                .is_some()
        );
        assert!(!discovery.has_group("kyverno.io"));
    }

    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.git_version, "v1.33.5");
    api.set_server_version("v1.33.5-eks-3025e55");
    let eks = client.apiserver_version().await.unwrap();
    assert_eq!(
        (eks.git_version.as_str(), eks.minor.as_str()),
        ("v1.33.5-eks-3025e55", "33+")
    );
}

#[tokio::test]
async fn custom_resources_are_reachable_dynamically_once_installed() {
    let api = FakeApiServer::start().await;
    let client = api.client().await;
    let gvk = kube::api::GroupVersionKind::gvk("nvidia.com", "v1", "ClusterPolicy");
    let resource = ApiResource::from_gvk_with_plural(&gvk, "clusterpolicies");
    let policies: Api<DynamicObject> = Api::all_with(client.clone(), &resource);

    let not_installed = api_error(policies.list(&ListParams::default()).await);
    assert_eq!(not_installed.code, 404);
    assert_eq!(
        not_installed.message,
        "the server could not find the requested resource"
    );

    let crds: Api<CustomResourceDefinition> = Api::all(client);
    let crd: CustomResourceDefinition =
        serde_json::from_value(fixtures::cluster_policy_crd()).unwrap();
    let installed = crds.create(&PostParams::default(), &crd).await.unwrap();
    let established = installed.status.unwrap().conditions.unwrap();
    assert!(
        established
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
    );

    api.insert(fixtures::cluster_policy(
        json!({"driver": {"enabled": true}}),
        "ready",
    ));
    let policy = policies.get("cluster-policy").await.unwrap();
    assert_eq!(policy.data["status"]["state"], "ready");
    assert_eq!(policy.data["spec"]["driver"]["enabled"], true);
    let listed = policies.list(&ListParams::default()).await.unwrap();
    assert_eq!(
        listed.items[0].types.as_ref().unwrap().kind,
        "ClusterPolicy"
    );

    let strategic = policies
        .patch(
            "cluster-policy",
            &PatchParams::default(),
            &Patch::Strategic(json!({})),
        )
        .await;
    assert_eq!(
        api_error(strategic).code,
        415,
        "custom resources refuse strategic merge"
    );

    crds.delete("clusterpolicies.nvidia.com", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(api_error(policies.get("cluster-policy").await).code, 404);
}

#[tokio::test]
async fn latency_trips_client_read_timeouts() {
    let api = FakeApiServer::start().await;
    let mut config = api.config().await;
    config.read_timeout = Some(Duration::from_millis(200));
    let cms: Api<ConfigMap> = Api::namespaced(kube::Client::try_from(config).unwrap(), "default");

    api.set_latency(Duration::from_secs(2));
    let slow = cms.list(&ListParams::default()).await;
    assert!(
        slow.is_err() && !matches!(slow, Err(kube::Error::Api(_))),
        "{slow:?}"
    );

    api.set_latency(Duration::ZERO);
    cms.list(&ListParams::default()).await.unwrap();
}

#[tokio::test]
async fn unreachable_servers_refuse_connections() {
    let kubeconfig = unreachable_kubeconfig();
    let loaded = kube::config::Kubeconfig::read_from(kubeconfig.path()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(loaded, &Default::default())
        .await
        .unwrap();
    let nodes: Api<Node> = Api::all(kube::Client::try_from(config).unwrap());
    let refused = nodes.list(&ListParams::default()).await;
    assert!(
        refused.is_err() && !matches!(refused, Err(kube::Error::Api(_))),
        "{refused:?}"
    );
}

#[tokio::test]
async fn hooks_play_the_job_controller_and_kubelet() {
    let api = FakeApiServer::start().await;
    api.insert(fixtures::namespace("aicr"));
    api.on_create("jobs", |cluster, job| {
        let name = job["metadata"]["name"].as_str().unwrap();
        let pod = cluster.insert(fixtures::job_pod(job, 0));
        cluster.set_pod_log(
            "aicr",
            pod["metadata"]["name"].as_str().unwrap(),
            "line 1\nline 2\n",
        );
        cluster.update_status("jobs", "aicr", name, fixtures::job_complete_status());
    });
    let client = api.client().await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "aicr");
    let job = json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "aicr"},
        "spec": {"template": {"spec": {"restartPolicy": "Never",
                                       "containers": [{"name": "aicr", "image": "ghcr.io/nvidia/aicr:latest"}]}}},
    });
    jobs.patch(
        "aicr",
        &PatchParams::apply("aicr").force(),
        &Patch::Apply(job),
    )
    .await
    .unwrap();

    let done = jobs.get("aicr").await.unwrap().status.unwrap();
    assert!(
        done.conditions
            .unwrap()
            .iter()
            .any(|c| c.type_ == "Complete" && c.status == "True")
    );
    let pods: Api<Pod> = Api::namespaced(client, "aicr");
    let found = pods
        .list(&ListParams::default().labels("batch.kubernetes.io/job-name=aicr"))
        .await
        .unwrap();
    let pod_name = found.items[0].metadata.name.clone().unwrap();
    let tail = LogParams {
        tail_lines: Some(1),
        ..LogParams::default()
    };
    assert_eq!(pods.logs(&pod_name, &tail).await.unwrap(), "line 2\n");

    let foreground = DeleteParams::foreground();
    jobs.delete("aicr", &foreground).await.unwrap();
    assert!(
        api.get("pods", "aicr", &pod_name).is_none(),
        "owned pods go with their Job"
    );
}

#[tokio::test]
async fn namespaces_gate_creation_and_take_their_contents_along() {
    let api = FakeApiServer::start().await;
    let client = api.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "aicr-validation");
    let missing = api_error(
        cms.create(&PostParams::default(), &config_map("x", json!({})))
            .await,
    );
    assert_eq!(
        (missing.code, missing.message.as_str()),
        (404, r#"namespaces "aicr-validation" not found"#)
    );

    let namespaces: Api<Namespace> = Api::all(client);
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "aicr-validation"}})).unwrap();
    let created = namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    assert_eq!(created.status.unwrap().phase.as_deref(), Some("Active"));
    cms.create(&PostParams::default(), &config_map("x", json!({})))
        .await
        .unwrap();

    namespaces
        .delete("aicr-validation", &DeleteParams::default())
        .await
        .unwrap();
    assert!(api.list("configmaps", "aicr-validation").is_empty());
}

#[tokio::test]
async fn invalid_objects_answer_422() {
    let api = FakeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(api.client().await, "default");
    let invalid = api_error(
        cms.create(&PostParams::default(), &config_map("Bad_Name", json!({})))
            .await,
    );
    assert!(invalid.is_invalid());
    assert!(invalid.message.starts_with(
        r#"ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain"#
    ));

    let huge = "x".repeat(1024 * 1024 + 1);
    let too_big = api_error(
        cms.create(
            &PostParams::default(),
            &config_map("big", json!({"k": huge})),
        )
        .await,
    );
    assert_eq!(too_big.code, 422);
    assert!(api.requests().iter().any(|r| r.is_write()));
    assert!(
        api.list("configmaps", "default").is_empty(),
        "nothing invalid was stored"
    );
}

#[test]
fn blocking_start_serves_synchronous_tests() {
    let api = FakeApiServer::start_blocking();
    api.insert(fixtures::config_map("default", "seeded", &[("k", "v")]));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let value = runtime.block_on(async {
        let cms: Api<ConfigMap> = Api::default_namespaced(api.client().await);
        cms.get("seeded").await.unwrap().data.unwrap()["k"].clone()
    });
    assert_eq!(value, "v");
    assert!(
        api.requests().iter().all(|r| !r.is_write()),
        "reading wrote nothing"
    );
}

#[tokio::test]
async fn streaming_list_watchers_get_initial_events() {
    let api = FakeApiServer::start().await;
    api.insert(fixtures::config_map("default", "existing", &[]));
    let cms: Api<ConfigMap> = Api::namespaced(api.client().await, "default");
    let config = watcher::Config::default().streaming_lists();
    let mut events = watcher(cms, config).boxed();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let event = tokio::time::timeout(Duration::from_secs(5), events.try_next())
            .await
            .expect("an event within 5s")
            .unwrap()
            .unwrap();
        seen.push(event);
    }
    assert!(matches!(
        &seen[..],
        [watcher::Event::Init, watcher::Event::InitApply(cm), watcher::Event::InitDone]
            if cm.metadata.name.as_deref() == Some("existing")
    ));
}

#[tokio::test]
async fn finalizers_hold_deletes_and_collections_delete_by_selector() {
    let api = FakeApiServer::start().await;
    let deleted = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = deleted.clone();
    api.on_delete("configmaps", move |_, cm| {
        record
            .lock()
            .unwrap()
            .push(cm["metadata"]["name"].as_str().unwrap().to_string());
    });
    let cms: Api<ConfigMap> = Api::namespaced(api.client().await, "default");
    let mut held = config_map("held", json!({}));
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cms.create(&PostParams::default(), &held).await.unwrap();

    let pending = cms.delete("held", &DeleteParams::default()).await.unwrap();
    let marked = pending.left().expect("a held object is returned");
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert!(cms.get_opt("held").await.unwrap().is_some());
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(cms.get_opt("held").await.unwrap().is_none());

    for (name, tier) in [("a", "gpu"), ("b", "gpu"), ("c", "cpu")] {
        let mut cm = config_map(name, json!({}));
        cm.metadata.labels = Some([("tier".to_string(), tier.to_string())].into());
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }
    let removed = cms
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("tier=gpu"),
        )
        .await
        .unwrap()
        .left()
        .unwrap();
    assert_eq!(removed.items.len(), 2);
    assert_eq!(*deleted.lock().unwrap(), ["held", "a", "b"]);
    assert_eq!(api.list("ConfigMap", "default").len(), 1);
}
