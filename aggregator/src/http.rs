//! The plain-HTTP side: Prometheus `/metrics`, `/healthz` (the process and
//! its store work) and `/readyz` (this replica leads, so the Service should
//! route agents and the CLI here).
//!
//! Read-only; it must not change state.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
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

/// OpenMetrics for scrapers that accept it, the classic text format for
/// the rest (`promtool check metrics`, `curl`).
async fn metrics(State(s): State<Shared>, headers: HeaderMap) -> impl IntoResponse {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (content_type, body) = s.hub.metrics().exposition(accept);
    ([(header::CONTENT_TYPE, content_type)], body)
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
