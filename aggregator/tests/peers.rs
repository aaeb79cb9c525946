//! Pools from Node labels, through the fake API server: nodes are grouped
//! by instance type and GPU product, judged only against their own pool,
//! move with their labels, and deviations reach metrics and Node Events
//! under their own names. Baselines follow the leader lease to a standby.

use aicr::model::snapshot::Subtype;
use aicr::proto::drift_event::{Kind, Source};
use aicr::proto::{ListBaselinesRequest, SetBaselineRequest};
use aicr_test_support::{FakeApiServer, fixtures};
use tonic::Code;

use crate::common::sim_agent::{SimAgent, channel, node_readings};
use crate::common::*;

const INSTANCE: &str = "node.kubernetes.io/instance-type";
const PRODUCT: &str = "nvidia.com/gpu.product";
const P5: &str = "p5.48xlarge/NVIDIA-H100-80GB-HBM3";
const RP_FILTER: &str = "/proc/sys/net/ipv4/conf/eth3/rp_filter";

async fn cluster() -> FakeApiServer {
    let api = FakeApiServer::start().await;
    api.set_server_version("v1.33.5");
    for n in ["p5-1", "p5-2", "p5-3"] {
        api.insert(
            fixtures::node(n)
                .label(INSTANCE, "p5.48xlarge")
                .label(PRODUCT, "NVIDIA-H100-80GB-HBM3")
                .build(),
        );
    }
    for n in ["g6-1", "g6-2"] {
        api.insert(fixtures::node(n).label(INSTANCE, "g6.xlarge").build());
    }
    api.insert(fixtures::node("cpu-1").build());
    api
}

/// `node_readings` with one rp_filter value changed.
fn readings(rp_filter: &str) -> Vec<(String, Subtype)> {
    let mut r = node_readings("24.04");
    for (kind, st) in &mut r {
        if kind == "OS" && st.subtype == "sysctl" {
            st.data.insert(RP_FILTER.into(), rp_filter.into());
        }
    }
    r
}

fn sysctl(r: &[(String, Subtype)]) -> Subtype {
    r.iter()
        .find(|(k, s)| k == "OS" && s.subtype == "sysctl")
        .unwrap()
        .1
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_are_judged_against_the_pool_their_labels_name() {
    let api = cluster().await;
    let mut c = config();
    c.kube = Some(api.client().await);
    let agg = start(c).await;
    let mut w = watch(&agg).await;
    let u = url(&agg);
    let mut agents = Vec::new();
    for (node, rp) in [
        ("p5-1", "1"),
        ("p5-2", "2"),
        ("p5-3", "1"),
        ("g6-1", "1"),
        ("g6-2", "2"),
        ("cpu-1", "2"),
    ] {
        let mut a = SimAgent::connect(channel(&u).await, node, "")
            .await
            .unwrap();
        a.full(readings(rp)).await.unwrap();
        agents.push(a);
    }
    let reading = format!("OS.sysctl.{RP_FILTER}");
    let ev = event_where(&mut w, |e| e.source == Source::Peers as i32).await;
    assert_eq!(
        (ev.kind, ev.node_name.as_str(), ev.constraint.as_str()),
        (Kind::Opened as i32, "p5-2", reading.as_str())
    );
    assert_eq!((ev.expected.as_str(), ev.actual.as_str()), ("1", "2"));
    assert_eq!((ev.pool.as_str(), ev.agreeing, ev.pool_size), (P5, 2, 3));
    assert_eq!(ev.scope, "OS.sysctl");
    assert_eq!(ev.severity, "warning");

    eventually("pools listed", || async {
        let ns = nodes(&agg).await;
        let pool = |n: &str| ns.iter().find(|i| i.node_name == n).map(|i| i.pool.clone());
        pool("p5-1").as_deref() == Some(P5)
            && pool("g6-2").as_deref() == Some("g6.xlarge")
            && pool("cpu-1").as_deref() == Some("default")
            && ns
                .iter()
                .find(|i| i.node_name == "p5-2")
                .unwrap()
                .open_deviations
                == 1
    })
    .await;
    // g6.xlarge differs 1:1 but has two nodes, too few to judge; the
    // default pool has one.
    let (_, metrics) = http_get(agg.http_addr, "/metrics").await;
    let series: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("aicr_peer_deviation{"))
        .collect();
    assert_eq!(series.len(), 1, "{metrics}");
    // Six nodes, six subtypes each, two sysctl variants: seven states.
    assert!(metrics.contains("aicr_subtype_states 7\n"), "{metrics}");
    assert!(metrics.contains("aicr_node_objects 6\n"), "{metrics}");
    assert!(
        series[0].contains(r#"node="p5-2""#) && series[0].contains(&format!(r#"pool="{P5}""#)),
        "{metrics}"
    );
    eventually("a PeerDeviation Event on the Node", || async {
        api.list("events.events.k8s.io", "").iter().any(|e| {
            e["regarding"]["name"] == "p5-2"
                && e["reason"] == "PeerDeviation"
                && e["type"] == "Warning"
        })
    })
    .await;
    // ...and the Node's condition says so, while its peers conform.
    let condition = |node: &'static str| {
        let api = &api;
        move || async move {
            api.get("nodes", "", node)
                .and_then(|n| n["status"]["conditions"].as_array().cloned())
                .unwrap_or_default()
                .into_iter()
                .find(|c| c["type"] == "AICRConformant")
                .map(|c| {
                    (
                        c["status"].as_str().unwrap_or_default().to_string(),
                        c["reason"].as_str().unwrap_or_default().to_string(),
                        c["message"].as_str().unwrap_or_default().to_string(),
                    )
                })
        }
    };
    eventually("p5-2 is not conformant, for a peer deviation", || async {
        condition("p5-2")()
            .await
            .is_some_and(|(status, reason, message)| {
                status == "False" && reason == "PeerDeviation" && message.contains(RP_FILTER)
            })
    })
    .await;
    eventually("p5-1 conforms", || async {
        condition("p5-1")()
            .await
            .is_some_and(|(status, _, _)| status == "True")
    })
    .await;

    // A majority baseline pins 1; unknown pools and tiny pools are refused.
    let mut cli = client(&agg).await;
    let b = cli
        .set_baseline(SetBaselineRequest {
            pool: P5.into(),
            snapshot_json: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(b.readings[&reading], "1");
    assert_eq!(b.pool_size, 3);
    for pool in ["nope", "g6.xlarge"] {
        let e = cli
            .set_baseline(SetBaselineRequest {
                pool: pool.into(),
                snapshot_json: Vec::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{pool}: {e:?}");
    }
    let e = cli
        .set_baseline(SetBaselineRequest {
            pool: "\u{7}".into(),
            snapshot_json: Vec::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = cli
        .set_baseline(SetBaselineRequest {
            pool: P5.into(),
            snapshot_json: b"{not json".to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let listed = cli
        .list_baselines(ListBaselinesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .baselines;
    assert_eq!(listed.len(), 1);

    // p5-2 is relabelled into g6.xlarge: its P5 deviation resolves, and
    // g6.xlarge (now 2 against 1) judges g6-1.
    api.modify("nodes", "", "p5-2", |n| {
        n["metadata"]["labels"] = serde_json::json!({INSTANCE: "g6.xlarge"});
    });
    let ev = event_where(&mut w, is(Kind::Resolved, "p5-2", &reading)).await;
    assert!(ev.reason.contains("moved from pool"), "{}", ev.reason);
    let ev = event_where(&mut w, is(Kind::Opened, "g6-1", &reading)).await;
    assert_eq!((ev.pool.as_str(), ev.expected.as_str()), ("g6.xlarge", "2"));

    // An update on a pinned pool's node is judged against the baseline.
    let p5_3 = &mut agents[2];
    let mut st = sysctl(&readings("1"));
    st.data.insert(RP_FILTER.into(), "7".into());
    p5_3.update("OS", st).await.unwrap();
    let ev = event_where(&mut w, is(Kind::Opened, "p5-3", &reading)).await;
    assert!(ev.baseline, "{ev:?}");
    assert_eq!(ev.expected, "1");
    agg.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baselines_follow_the_lease_to_a_standby() {
    let api = FakeApiServer::start().await;
    let (a, b) = leader_and_standby(&api).await;

    let mut agents = Vec::new();
    for node in ["gpu-1", "gpu-2", "gpu-3"] {
        let mut s = SimAgent::connect(channel(&url(&a)).await, node, "")
            .await
            .unwrap();
        s.full(readings("1")).await.unwrap();
        agents.push(s);
    }
    let reading = format!("OS.sysctl.{RP_FILTER}");
    let mut cli = client(&a).await;
    eventually("the pool is judged", || {
        let mut cli = cli.clone();
        async move {
            cli.set_baseline(SetBaselineRequest {
                pool: "default".into(),
                snapshot_json: Vec::new(),
            })
            .await
            .is_ok()
        }
    })
    .await;
    let name = aicr_aggregator::baseline_mirror::config_map_name("aicr-aggregator", "default");
    eventually("the baseline in a ConfigMap", || async {
        api.get("configmaps", "default", &name).is_some_and(|cm| {
            cm["data"]["baseline.json"]
                .as_str()
                .is_some_and(|j| j.contains(RP_FILTER))
        })
    })
    .await;
    let cm = api.get("configmaps", "default", &name).unwrap();
    assert_eq!(cm["metadata"]["labels"]["aicr.nvidia.com/baseline"], "true");
    assert_eq!(
        cm["metadata"]["annotations"]["aicr.nvidia.com/pool"],
        "default"
    );
    drop(agents);

    a.kill().await;
    eventually("replica b takes over", || async {
        http_get(b.http_addr, "/readyz").await.0 == 200
    })
    .await;
    cli = client(&b).await;
    eventually("b holds the baseline", || {
        let mut cli = cli.clone();
        async move {
            cli.list_baselines(ListBaselinesRequest::default())
                .await
                .is_ok_and(|r| r.into_inner().baselines.iter().any(|b| b.pool == "default"))
        }
    })
    .await;
    // Every node rolls out the same change: only the baseline sees it.
    let mut w = watch(&b).await;
    let mut agents = Vec::new();
    for node in ["gpu-1", "gpu-2", "gpu-3"] {
        let mut s = SimAgent::connect(channel(&url(&b)).await, node, "")
            .await
            .unwrap();
        s.full(readings("2")).await.unwrap();
        agents.push(s);
    }
    for node in ["gpu-1", "gpu-2", "gpu-3"] {
        let ev = event_where(&mut w, is(Kind::Opened, node, &reading)).await;
        assert!(ev.baseline && ev.expected == "1", "{ev:?}");
    }
    let cleared = cli
        .clear_baseline(aicr::proto::ClearBaselineRequest {
            pool: "default".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(cleared.cleared);
    eventually("the ConfigMap goes with it", || async {
        api.get("configmaps", "default", &name).is_none()
    })
    .await;
    b.shutdown().await;
}
