//! The plain-HTTP side: Prometheus `/metrics`, `/healthz` (the process and
//! its store work) and `/readyz` (this replica leads, so the Service should
//! route agents and the CLI here).
//!
//! Read-only; it must not change state.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::hub::Hub;

#[derive(Clone)]
struct Shared {
    hub: Arc<Hub>,
    healthy: Arc<AtomicBool>,
}

pub fn router(hub: Arc<Hub>, healthy: Arc<AtomicBool>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(Shared { hub, healthy })
}

async fn metrics(State(s): State<Shared>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.hub.metrics().encode(),
    )
}

async fn healthz(State(s): State<Shared>) -> impl IntoResponse {
    if s.healthy.load(Ordering::SeqCst) {
        (StatusCode::OK, "ok\n")
    } else {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "state store failed; see the log\n",
        )
    }
}

async fn readyz(State(s): State<Shared>) -> impl IntoResponse {
    if !s.healthy.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "state store failed\n")
    } else if s.hub.leading() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "standby: not the leader\n")
    }
}
