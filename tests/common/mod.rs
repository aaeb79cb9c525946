//! What more than one test of the core library builds the same way.

use aicr::bundle::values::Scheduling;
use aicr::kubernetes::scheduling;

/// Every scheduling flag `aicr bundle` takes, set as a user commonly sets
/// them: system and GPU node selectors and tolerations, a workload
/// selector and gate, a node count and a storage class.
pub fn scheduled() -> Scheduling {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    Scheduling {
        system_selector: scheduling::parse_node_selectors(&s(&["nodeGroup=system"])).unwrap(),
        system_tolerations: scheduling::parse_tolerations(&s(&["dedicated=system:NoSchedule"]))
            .unwrap(),
        accelerated_selector: scheduling::parse_node_selectors(&s(&["nodeGroup=gpu-worker"]))
            .unwrap(),
        accelerated_tolerations: scheduling::parse_tolerations(&s(&[
            "nvidia.com/gpu=present:NoSchedule",
        ]))
        .unwrap(),
        workload_selector: scheduling::parse_node_selectors(&s(&["workload=ml"])).unwrap(),
        workload_gate: Some(
            scheduling::parse_taint("aicr.nvidia.com/gate=pending:NoSchedule").unwrap(),
        ),
        nodes: 8,
        storage_class: Some("gp3".into()),
    }
}
