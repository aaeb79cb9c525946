//! The checks implemented in this crate, one module per group, and the
//! `REGISTRY` that maps each catalog name to its phase and function: the
//! one place that decides which catalog entries run in-process.
//!
//! Catalog entries whose image is one of the upstream validator images and
//! whose check the registry knows run in-process; every other entry runs as
//! a validator Job with its own image ([`jobs`]). A check module names
//! [`check`](super::check), [`api`](super::api), [`pods`](super::pods) and
//! the report types, never another check module and never what runs them
//! (`phases`, `runner`); only this registry names them all.

use std::future::Future;
use std::pin::Pin;

use super::check::{CheckLog, Ctx, PhaseName, Validator, Verdict, image_repository};

pub mod conformance;
pub mod deployment;
pub mod gpu;
pub mod jobs;

/// A running check: it borrows the run's context and its own log.
pub(crate) type CheckFuture<'a> = Pin<Box<dyn Future<Output = Verdict> + 'a>>;

/// How the registry calls a check.
pub(crate) type CheckFn = for<'a> fn(&'a Ctx<'a>, &'a mut CheckLog) -> CheckFuture<'a>;

/// A check implemented in this crate.
pub(crate) struct Check {
    /// The catalog name, which an upstream image's first argument selects.
    pub name: &'static str,
    pub phase: PhaseName,
    pub run: CheckFn,
}

/// One registry row; the closure turns the check's `async fn` into a
/// [`CheckFn`].
macro_rules! check {
    ($name:literal, $phase:ident, $f:path) => {
        Check {
            name: $name,
            phase: PhaseName::$phase,
            run: |ctx, log| Box::pin($f(ctx, log)),
        }
    };
}

/// Every in-process check, in catalog order within each phase.
#[rustfmt::skip]
pub(crate) const REGISTRY: &[Check] = &[
    check!("operator-health",            Deployment,  deployment::operator_health),
    check!("expected-resources",         Deployment,  deployment::expected_resources),
    check!("gpu-operator-version",       Deployment,  deployment::gpu_operator_version),
    check!("check-nvidia-smi",           Deployment,  gpu::check_nvidia_smi),
    check!("nccl-all-reduce-bw",         Performance, gpu::nccl_all_reduce_bw),
    check!("dra-support",                Conformance, conformance::dra_support),
    check!("gang-scheduling",            Conformance, conformance::gang_scheduling),
    check!("accelerator-metrics",        Conformance, conformance::accelerator_metrics),
    check!("ai-service-metrics",         Conformance, conformance::ai_service_metrics),
    check!("inference-gateway",          Conformance, conformance::inference_gateway),
    check!("pod-autoscaling",            Conformance, conformance::pod_autoscaling),
    check!("cluster-autoscaling",        Conformance, conformance::cluster_autoscaling),
    check!("robust-controller",          Conformance, conformance::robust_controller),
    check!("secure-accelerator-access",  Conformance, conformance::secure_accelerator_access),
    check!("gpu-operator-health",        Conformance, deployment::gpu_operator_health),
    check!("platform-health",            Conformance, deployment::platform_health),
];

/// The in-process implementation of a catalog entry, if it has one: the
/// image must be an upstream validator image for the entry's phase and the
/// check it selects (first argument, else the name) one the registry knows.
pub(crate) fn native(v: &Validator, phase: PhaseName) -> Option<&'static Check> {
    let repo = image_repository(&v.image);
    if !repo.ends_with(&format!("aicr-validators/{}", phase.as_str())) {
        return None;
    }
    let check = v.args.first().unwrap_or(&v.name);
    REGISTRY
        .iter()
        .find(|c| c.name == check && c.phase == phase)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(image: &str, name: &str, args: &[&str]) -> Validator {
        Validator {
            name: name.into(),
            phase: "deployment".into(),
            image: image.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn upstream_images_run_in_process_others_as_jobs() {
        let native = |v: &Validator, p| native(v, p).map(|c| c.name);
        let up = "ghcr.io/nvidia/aicr-validators/deployment:latest";
        assert_eq!(
            native(
                &v(up, "operator-health", &["operator-health"]),
                PhaseName::Deployment
            ),
            Some("operator-health")
        );
        // A renamed entry still selects its check by argument.
        assert_eq!(
            native(
                &v(up, "my-health", &["operator-health"]),
                PhaseName::Deployment
            ),
            Some("operator-health")
        );
        let mirror = "registry.local:5000/nvidia/aicr-validators/deployment@sha256:abc";
        assert!(native(&v(mirror, "operator-health", &[]), PhaseName::Deployment).is_some());
        assert!(
            native(
                &v("example.com/mine:1", "operator-health", &[]),
                PhaseName::Deployment
            )
            .is_none()
        );
        assert!(native(&v(up, "custom", &["custom"]), PhaseName::Deployment).is_none());
        // The phase must agree with the image.
        assert!(native(&v(up, "dra-support", &[]), PhaseName::Deployment).is_none());
    }
}
