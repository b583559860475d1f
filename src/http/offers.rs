//! Discount codes for the shop's checkout: look one up, redeem it once.
//!
//! `GET /v1/discount-codes/{code}` → the code and its state.
//! `POST /v1/discount-codes/{code}/redeem` with an optional JSON body
//! `{"customer_id": "c-1001", "order_id": "ord-2002"}` → 200 redeemed, 409 used before,
//! 410 expired, 403 issued to another customer, 404 unknown. The code is read as customers
//! type it (case, spaces and dashes do not matter).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;

use super::{authorized, unauthorized, HttpState};
use crate::domain::{DiscountCode, Redemption};

/// The optional body of a redemption.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedeemRequest {
    /// Refuse the code unless it was issued to this customer.
    customer_id: Option<String>,
    /// Recorded with the redemption.
    order_id: Option<String>,
}

fn unknown() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"status": "unknown"}))).into_response()
}

fn unavailable(e: impl std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "discount code lookup failed");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"status": "error", "error": "the database is unavailable; retry"})),
    )
        .into_response()
}

pub(super) async fn show(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Response {
    if !authorized(state.api_token.as_deref(), &headers) {
        return unauthorized();
    }
    let Some(code) = DiscountCode::parse(&raw) else {
        return unknown();
    };
    match state.store.discount_code(&code).await {
        Ok(Some(issued)) => {
            let status = if issued.redeemed_at.is_some() {
                "redeemed"
            } else if issued.voided_at.is_some() {
                "void"
            } else if issued.expires_at <= Utc::now() {
                "expired"
            } else {
                "active"
            };
            let mut body = json!(issued);
            body["status"] = json!(status);
            (StatusCode::OK, Json(body)).into_response()
        }
        Ok(None) => unknown(),
        Err(e) => unavailable(e),
    }
}

pub(super) async fn redeem(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    body: Bytes,
) -> Response {
    if !authorized(state.api_token.as_deref(), &headers) {
        return unauthorized();
    }
    let request: RedeemRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RedeemRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(request) => request,
            Err(e) => {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(json!({"status": "bad_request", "error": e.to_string()})),
                )
                    .into_response()
            }
        }
    };
    let Some(code) = DiscountCode::parse(&raw) else {
        return unknown();
    };
    let outcome = state
        .store
        .redeem_code(
            &code,
            request.customer_id.as_deref(),
            request.order_id.as_deref(),
            Utc::now(),
        )
        .await;
    let (status, body) = match outcome {
        Ok(Redemption::Redeemed {
            percent,
            customer_id,
        }) => {
            metrics::counter!(crate::metrics::DISCOUNT_CODES_REDEEMED).increment(1);
            (
                StatusCode::OK,
                json!({"status": "redeemed", "code": code, "percent": percent,
                       "customer_id": customer_id}),
            )
        }
        Ok(Redemption::AlreadyRedeemed { at }) => (
            StatusCode::CONFLICT,
            json!({"status": "already_redeemed", "redeemed_at": at}),
        ),
        Ok(Redemption::Expired { at }) => (
            StatusCode::GONE,
            json!({"status": "expired", "expired_at": at}),
        ),
        Ok(Redemption::Void { at }) => (
            StatusCode::GONE,
            json!({"status": "void", "voided_at": at,
                   "error": "the message carrying this code was cancelled before it was sent"}),
        ),
        Ok(Redemption::OtherCustomer) => {
            (StatusCode::FORBIDDEN, json!({"status": "other_customer"}))
        }
        Ok(Redemption::Unknown) => return unknown(),
        Err(e) => return unavailable(e),
    };
    (status, Json(body)).into_response()
}
