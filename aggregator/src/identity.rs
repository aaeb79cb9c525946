//! Who may speak for a node. An agent's Hello names a node; an identity
//! check decides whether this caller may write that node's state, so a
//! hostile agent cannot overwrite its neighbours.
//!
//! Two implementations: [`TokenReview`] (production: a projected
//! ServiceAccount token checked by the API server, bound to a pod on the
//! named node) and [`TrustNodeNames`] (local demos on loopback only).
//! This module must not touch node state; it only says yes or no.

use aicr::proto::Hello;
use k8s_openapi::api::authentication::v1::{TokenReview as Review, TokenReviewSpec};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use tonic::Status;

/// The node the kubelet bound the token's pod to (Kubernetes 1.30+).
pub const NODE_NAME_EXTRA: &str = "authentication.kubernetes.io/node-name";
pub const POD_NAME_EXTRA: &str = "authentication.kubernetes.io/pod-name";
pub const POD_UID_EXTRA: &str = "authentication.kubernetes.io/pod-uid";

#[tonic::async_trait]
pub trait NodeIdentity: Send + Sync {
    /// `Ok` when the caller may write `hello.node_name`; otherwise the
    /// status the session ends with.
    async fn verify(&self, hello: &Hello) -> Result<(), Status>;
}

/// Believes every Hello. Only for `--trust-node-names` on loopback.
pub struct TrustNodeNames;

#[tonic::async_trait]
impl NodeIdentity for TrustNodeNames {
    async fn verify(&self, _hello: &Hello) -> Result<(), Status> {
        Ok(())
    }
}

/// Checks `Hello.identity_token` with a TokenReview and requires the pod
/// it was issued to to run on the node the Hello names.
pub struct TokenReview {
    client: kube::Client,
    audiences: Vec<String>,
    /// `system:serviceaccount:NS:NAME` the agent must run as, when set.
    service_account: Option<String>,
}

impl TokenReview {
    /// `service_account` is `NAMESPACE:NAME`.
    pub fn new(
        client: kube::Client,
        audiences: Vec<String>,
        service_account: Option<&str>,
    ) -> TokenReview {
        TokenReview {
            client,
            audiences,
            service_account: service_account.map(|sa| format!("system:serviceaccount:{sa}")),
        }
    }
}

fn first(extra: &std::collections::BTreeMap<String, Vec<String>>, key: &str) -> Option<String> {
    extra
        .get(key)
        .and_then(|v| v.first())
        .filter(|s| !s.is_empty())
        .cloned()
}

#[tonic::async_trait]
impl NodeIdentity for TokenReview {
    async fn verify(&self, hello: &Hello) -> Result<(), Status> {
        if hello.identity_token.is_empty() {
            return Err(Status::unauthenticated(
                "Hello.identity_token is empty: the agent must send its projected ServiceAccount token",
            ));
        }
        let review = Review {
            spec: TokenReviewSpec {
                token: hello.identity_token.clone(),
                audiences: (!self.audiences.is_empty()).then(|| self.audiences.clone()),
            },
            ..Default::default()
        };
        let api: Api<Review> = Api::all(self.client.clone());
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| {
                Status::unavailable(format!("cannot check the agent's token (TokenReview): {e}"))
            })?;
        let status = answer.status.unwrap_or_default();
        if status.authenticated != Some(true) {
            return Err(Status::unauthenticated(format!(
                "agent token rejected: {}",
                status.error.unwrap_or_else(|| "not authenticated".into())
            )));
        }
        let user = status.user.unwrap_or_default();
        let username = user.username.unwrap_or_default();
        if let Some(want) = &self.service_account
            && &username != want
        {
            return Err(Status::permission_denied(format!(
                "agent token belongs to {username:?}, not the agent's service account {want:?}"
            )));
        }
        let extra = user.extra.unwrap_or_default();
        let node = match first(&extra, NODE_NAME_EXTRA) {
            Some(node) => node,
            None => {
                let Some(pod) = first(&extra, POD_NAME_EXTRA) else {
                    return Err(Status::permission_denied(
                        "agent token is not bound to a pod: use a projected ServiceAccount token",
                    ));
                };
                let namespace = username
                    .strip_prefix("system:serviceaccount:")
                    .and_then(|rest| rest.split(':').next())
                    .ok_or_else(|| {
                        Status::permission_denied(format!(
                            "agent token user {username:?} is not a service account"
                        ))
                    })?;
                let found = Api::<Pod>::namespaced(self.client.clone(), namespace)
                    .get(&pod)
                    .await
                    .map_err(|e| {
                        Status::permission_denied(format!("agent pod {namespace}/{pod}: {e}"))
                    })?;
                if let Some(uid) = first(&extra, POD_UID_EXTRA)
                    && found.metadata.uid.as_deref() != Some(uid.as_str())
                {
                    return Err(Status::permission_denied(format!(
                        "agent pod {namespace}/{pod} was replaced since the token was issued"
                    )));
                }
                found.spec.and_then(|s| s.node_name).unwrap_or_default()
            }
        };
        if node != hello.node_name {
            return Err(Status::permission_denied(format!(
                "agent token belongs to a pod on node {node:?}, not {:?}",
                hello.node_name
            )));
        }
        Ok(())
    }
}
