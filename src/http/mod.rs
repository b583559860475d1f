//! HTTP for operators: `/healthz` (the process is up), `/readyz` (NATS and the database are
//! reachable) and `/metrics` (Prometheus text format); for the shop's checkout, discount codes
//! under `/v1/discount-codes` (see `offers`); for on-call tooling, incidents under
//! `/v1/incidents` (see `incidents`); for providers, delivery receipts and customers' replies
//! under `/v1/receipts/` and `/v1/inbound/` (see `feedback`); for customers, one-click
//! unsubscribe under `/u/` (see `unsubscribe`); for CX and on-call, the console under
//! `/console/` (see `crate::console`). `/openapi.json` describes `/v1/`.

mod feedback;
mod incidents;
mod offers;
mod settings;
mod unsubscribe;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

pub use settings::{HttpSettings, PublicUrl};

use crate::shutdown::Shutdown;
use crate::store::Store;

/// What the handlers read.
#[derive(Clone)]
pub struct HttpState {
    /// For `/readyz`.
    pub store: Arc<dyn Store>,
    /// For `/readyz`.
    pub nats: async_nats::Client,
    /// For `/readyz`: whether intake and the dispatcher are committing.
    pub readiness: crate::readiness::Readiness,
    /// For `/metrics`; `None` when another recorder was installed first.
    pub metrics: Option<PrometheusHandle>,
    /// The bearer token `/v1/` requires, when one is configured (incidents always need one).
    pub api_token: Option<Arc<str>>,
    /// Publishes incidents' announcements.
    pub announcer: crate::incident::Announcer,
    /// Acts on receipts and replies.
    pub feedback: crate::feedback::Feedback,
    /// Checks Twilio's signatures; `None` when SMS goes through another provider.
    pub twilio: Option<Arc<crate::feedback::twilio::TwilioWebhooks>>,
    /// Checks SendGrid's signatures; `None` unless e-mail goes through SendGrid with the
    /// webhook's key configured.
    pub sendgrid: Option<Arc<crate::feedback::sendgrid::SendgridWebhook>>,
    /// Reads one-click unsubscribe links; `None` without `http.public_url`.
    pub unsubscribe: Option<Arc<crate::feedback::UnsubscribeLinks>>,
    /// The console at `/console/`; `None` when `[console] enabled` is off.
    pub console: Option<crate::console::Console>,
}

/// The router.
pub fn router(state: HttpState) -> Router {
    let console = state.console.clone();
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/discount-codes/{code}", get(offers::show))
        .route("/v1/discount-codes/{code}/redeem", post(offers::redeem))
        .route("/v1/incidents", post(incidents::start))
        .route("/v1/incidents/{id}", get(incidents::show))
        .route("/v1/incidents/{id}/updates", post(incidents::update))
        .route("/v1/incidents/{id}/resolve", post(incidents::resolve))
        .route(
            crate::feedback::twilio::STATUS_PATH,
            post(feedback::twilio_receipt),
        )
        .route(
            crate::feedback::twilio::INBOUND_PATH,
            post(feedback::twilio_inbound),
        )
        .route(
            crate::feedback::sendgrid::EVENTS_PATH,
            post(feedback::sendgrid_events),
        )
        .route(
            "/u/{token}",
            get(unsubscribe::page).post(unsubscribe::one_click),
        )
        .route("/openapi.json", get(openapi))
        .with_state(state);
    match console {
        Some(console) => router.nest("/console", console.router()),
        None => router,
    }
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

/// Whether the request carries `token` as its bearer token (`None`: none is required).
/// Digests are compared, so the time a comparison takes says nothing about the token.
fn authorized(token: Option<&str>, headers: &HeaderMap) -> bool {
    let Some(token) = token else {
        return true;
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    Sha256::digest(given.as_bytes()) == Sha256::digest(token.as_bytes())
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        Json(json!({"status": "unauthorized"})),
    )
        .into_response()
}

/// The OpenAPI 3.1 description of `/v1/`, written by hand beside the handlers.
async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
}

async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<HttpState>) -> impl IntoResponse {
    let nats_ok = state.nats.connection_state() == async_nats::connection::State::Connected;
    let db = state.store.ping().await;
    let stalled = state.readiness.stalled(crate::readiness::GRACE);
    let ready = nats_ok && db.is_ok() && stalled.is_empty();
    let mut body = json!({
        "status": if ready { "ready" } else { "not ready" },
        "nats": match state.nats.connection_state() {
            async_nats::connection::State::Connected => "ok",
            async_nats::connection::State::Disconnected => "disconnected",
            async_nats::connection::State::Pending => "connecting",
        },
        "database": match &db { Ok(()) => "ok".to_owned(), Err(e) => e.to_string() },
    });
    for part in stalled {
        body[part.part] = json!(format!(
            "failing to commit for {} s: {}",
            part.seconds, part.error
        ));
    }
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
