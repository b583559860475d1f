//! HTTP for operators: `/healthz` (the process is up), `/readyz` (NATS and the database are
//! reachable) and `/metrics` (Prometheus text format); and for the shop's checkout, discount
//! codes under `/v1/discount-codes` (see [`offers`]).

mod offers;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tokio::net::TcpListener;

use crate::shutdown::Shutdown;
use crate::store::Store;

/// What the handlers read.
#[derive(Clone)]
pub struct HttpState {
    /// For `/readyz`.
    pub store: Arc<dyn Store>,
    /// For `/readyz`.
    pub nats: async_nats::Client,
    /// For `/metrics`; `None` when another recorder was installed first.
    pub metrics: Option<PrometheusHandle>,
    /// The bearer token `/v1/` requires, when one is configured.
    pub api_token: Option<Arc<str>>,
}

/// The router.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/discount-codes/{code}", get(offers::show))
        .route("/v1/discount-codes/{code}/redeem", post(offers::redeem))
        .with_state(state)
}

/// Serves until shutdown.
pub async fn serve(
    listener: TcpListener,
    state: HttpState,
    mut shutdown: Shutdown,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { shutdown.wait().await })
        .await
}

async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<HttpState>) -> impl IntoResponse {
    let nats_ok = state.nats.connection_state() == async_nats::connection::State::Connected;
    let db = state.store.ping().await;
    let ready = nats_ok && db.is_ok();
    let body = json!({
        "status": if ready { "ready" } else { "not ready" },
        "nats": if nats_ok { "ok".to_owned() } else { format!("{:?}", state.nats.connection_state()) },
        "database": match &db { Ok(()) => "ok".to_owned(), Err(e) => e.to_string() },
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    match &state.metrics {
        Some(handle) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        ),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain")],
            "metrics are served by another forewarn instance in this process\n".to_owned(),
        ),
    }
}
