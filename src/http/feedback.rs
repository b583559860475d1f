//! What providers post back, each signed with the provider's own scheme rather than forewarn's
//! API token (`feedback::twilio`), and refused with 403 when the signature does not match:
//!
//! - `POST /v1/receipts/twilio`: status callbacks → 200 (an unknown message is ignored);
//! - `POST /v1/inbound/twilio`: a customer's SMS → 200 with TwiML, a message for HELP.
//!
//! 404 when SMS does not go through Twilio, 400 for a signed request missing a field, 503
//! when the database is unavailable (the provider retries).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde_json::json;

use super::HttpState;
use crate::feedback::twilio::{self, TwilioWebhooks};

pub(super) async fn twilio_receipt(
    State(state): State<HttpState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = match signed_by_twilio(&state, &uri, &headers, &body) {
        Ok(params) => params,
        Err(refused) => return *refused,
    };
    let report = match twilio::status_report(&params, Utc::now()) {
        Ok(Some(report)) => report,
        // A status forewarn does not track: taken, and nothing to do.
        Ok(None) => return StatusCode::OK.into_response(),
        Err(e) => return bad_request(&e),
    };
    match state.feedback.delivery(&report).await {
        Ok(_) => StatusCode::OK.into_response(),
        Err(e) => unavailable(&e),
    }
}

pub(super) async fn twilio_inbound(
    State(state): State<HttpState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = match signed_by_twilio(&state, &uri, &headers, &body) {
        Ok(params) => params,
        Err(refused) => return *refused,
    };
    let reply = match twilio::inbound_reply(&params, Utc::now()) {
        Ok(reply) => reply,
        Err(e) => return bad_request(&e),
    };
    match state.feedback.reply(&reply).await {
        Ok(answer) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
            twilio::twiml(answer.as_deref()),
        )
            .into_response(),
        Err(e) => unavailable(&e),
    }
}

/// The form parameters of a request Twilio signed; else the answer to give.
fn signed_by_twilio(
    state: &HttpState,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<(String, String)>, Box<Response>> {
    let Some(webhooks): Option<&Arc<TwilioWebhooks>> = state.twilio.as_ref() else {
        return Err(Box::new(
            (
                StatusCode::NOT_FOUND,
                Json(json!({"status": "not_configured",
                            "error": "SMS does not go through Twilio here ([gateways.sms] kind)"})),
            )
                .into_response(),
        ));
    };
    let params: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
        .map_err(|e| Box::new(bad_request(&format!("not a form: {e}"))))?;
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let signature = headers
        .get(twilio::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok());
    webhooks
        .verify(path, &params, signature)
        .map_err(|refusal| {
            tracing::warn!(path, %refusal, "Refused a request claiming to come from Twilio.");
            Box::new(
                (
                    StatusCode::FORBIDDEN,
                    Json(json!({"status": "forbidden", "error": refusal.to_string()})),
                )
                    .into_response(),
            )
        })?;
    Ok(params)
}

fn bad_request(error: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"status": "bad_request", "error": error})),
    )
        .into_response()
}

fn unavailable(error: &crate::store::StoreError) -> Response {
    tracing::warn!(%error, "Could not record what a provider sent back; it will retry.");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"status": "error", "error": "the database is unavailable; retry"})),
    )
        .into_response()
}
