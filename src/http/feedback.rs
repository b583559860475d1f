//! What providers post back, each signed with the provider's own scheme rather than forewarn's
//! API token (`feedback::twilio`), and refused with 403 when the signature does not match:
//!
//! - `POST /v1/receipts/twilio`: status callbacks → 200 (an unknown message is ignored);
//! - `POST /v1/inbound/twilio`: a customer's SMS → 200 with TwiML, a message for HELP;
//! - `POST /v1/receipts/sendgrid`: the Event Webhook's array → 200 once every event is kept.
//!
//! 404 when the provider is not configured, 400 for a signed request missing a field, 503
//! when the database is unavailable (the provider retries; repeats change nothing).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde_json::json;

use super::HttpState;
use crate::feedback::sendgrid::{self, EmailEvent};
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

pub(super) async fn sendgrid_events(
    State(state): State<HttpState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(webhook) = state.sendgrid.as_ref() else {
        return not_configured(
            "e-mail does not go through SendGrid with an event_webhook_public_key here",
        );
    };
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    if let Err(refusal) = webhook.verify(
        header(sendgrid::SIGNATURE_HEADER),
        header(sendgrid::TIMESTAMP_HEADER),
        &body,
        Utc::now(),
    ) {
        return forbidden("SendGrid", &refusal);
    }
    let events = match sendgrid::events(&body, Utc::now()) {
        Ok(events) => events,
        Err(e) => return bad_request(&e),
    };
    for event in &events {
        let done = match event {
            EmailEvent::Delivery(report) => state.feedback.delivery(report).await.map(|_| ()),
            EmailEvent::OptOut(report) => state.feedback.opt_out(report).await.map(|_| ()),
            EmailEvent::Ignored => Ok(()),
        };
        // SendGrid posts the whole array again; what was kept is a repeat then.
        if let Err(e) = done {
            return unavailable(&e);
        }
    }
    StatusCode::OK.into_response()
}

/// The form parameters of a request Twilio signed; else the answer to give.
fn signed_by_twilio(
    state: &HttpState,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<(String, String)>, Box<Response>> {
    let Some(webhooks): Option<&Arc<TwilioWebhooks>> = state.twilio.as_ref() else {
        return Err(Box::new(not_configured(
            "SMS does not go through Twilio here ([gateways.sms] kind)",
        )));
    };
    let params: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
        .map_err(|e| Box::new(bad_request(&format!("not a form: {e}"))))?;
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let signature = headers
        .get(twilio::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok());
    webhooks
        .verify(path, &params, signature)
        .map_err(|refusal| Box::new(forbidden("Twilio", &refusal)))?;
    Ok(params)
}

fn forbidden(provider: &str, refusal: &crate::feedback::Refusal) -> Response {
    tracing::warn!(provider, %refusal, "Refused a request claiming to come from a provider.");
    (
        StatusCode::FORBIDDEN,
        Json(json!({"status": "forbidden", "error": refusal.to_string()})),
    )
        .into_response()
}

fn not_configured(error: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"status": "not_configured", "error": error})),
    )
        .into_response()
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
