//! Incidents for on-call tooling — the same announcements as `forewarn announce`, checked the
//! same way (`incident::announce`):
//!
//! - `POST /v1/incidents` (an `incident::Start`) → 202 with the incident id;
//! - `POST /v1/incidents/{id}/updates` (an `incident::Update`) → 202;
//! - `POST /v1/incidents/{id}/resolve` (an `incident::Resolve`) → 202;
//! - `GET /v1/incidents/{id}` → the incident, its fan-outs and its messages by status.
//!
//! Every call needs the bearer token of `http.api_token_env`; without one configured the
//! incidents API refuses everything, since an open door here reaches every customer's phone.
//! 422 lists each invalid field, 404 is an unknown incident, 409 a resolved one.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::{authorized, unauthorized, HttpState};
use crate::domain::EntityId;
use crate::incident::{AnnounceError, Announcement, FieldError, Resolve, Start, Update};
use crate::store::IncidentProgress;

/// Who announced, in the event's `data.announced_by`.
const ANNOUNCED_BY: &str = "api";

pub(super) async fn start(
    State(state): State<HttpState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match request::<Start>(&state, &headers, &body) {
        Ok(start) => announce(&state, Announcement::start(start, ANNOUNCED_BY, Utc::now())).await,
        Err(refused) => *refused,
    }
}

pub(super) async fn update(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    match request::<Update>(&state, &headers, &body) {
        Ok(update) => {
            let checked = Announcement::update(&id, update, ANNOUNCED_BY, Utc::now());
            announce(&state, checked).await
        }
        Err(refused) => *refused,
    }
}

pub(super) async fn resolve(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    match request::<Resolve>(&state, &headers, &body) {
        Ok(resolve) => announce(&state, Announcement::resolve(&id, resolve, ANNOUNCED_BY)).await,
        Err(refused) => *refused,
    }
}

/// The request's body, if it carries the token and is well-formed; else the answer to give.
fn request<T: DeserializeOwned>(
    state: &HttpState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, Box<Response>> {
    if let Some(refused) = refuse(state, headers) {
        return Err(Box::new(refused));
    }
    parse(body)
}

pub(super) async fn show(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(refused) = refuse(&state, &headers) {
        return refused;
    }
    let Ok(id) = EntityId::parse(&id) else {
        return error(AnnounceError::UnknownIncident(id));
    };
    match state.store.incident_progress(&id, Utc::now()).await {
        Ok(progress) if progress.incident.is_none() && progress.fanouts.is_empty() => {
            error(AnnounceError::UnknownIncident(id.as_str().to_owned()))
        }
        Ok(progress) => (StatusCode::OK, Json(progress_json(&progress))).into_response(),
        Err(e) => error(e.into()),
    }
}

/// The incident, its fan-outs and its messages, as `GET /v1/incidents/{id}` answers.
pub(super) fn progress_json(progress: &IncidentProgress) -> Value {
    let m = &progress.messages;
    json!({
        "incident": progress.incident.as_ref().map(|i| json!({
            "id": i.id.as_str(),
            "title": i.title,
            "severity": i.severity,
            "status": i.status.as_str(),
            "started_at": i.started_at,
            "resolved_at": i.resolved_at,
        })),
        "fanouts": progress.fanouts.iter().map(|f| json!({
            "event_id": f.event.id,
            "kind": f.kind.as_str(),
            "status": f.status,
            "phase": f.phase.as_str(),
            "ranked": f.ranked,
            "customers": f.customers,
            "queued": f.queued,
            "created_at": f.created_at,
            "finished_at": f.finished_at,
            "detail": f.detail,
            "messages": counts_json(&f.messages),
        })).collect::<Vec<_>>(),
        "messages": counts_json(m),
        "settled": progress.settled(),
    })
}

fn counts_json(m: &crate::store::MessageCounts) -> Value {
    json!({
        "queued": m.queued, "deferred": m.deferred, "sending": m.sending,
        "sent": m.sent, "failed": m.failed, "cancelled": m.cancelled, "total": m.total(),
    })
}

/// Checks, publishes, answers 202 with what was published.
async fn announce(state: &HttpState, checked: Result<Announcement, AnnounceError>) -> Response {
    let result = async {
        let mut announcement = checked?;
        announcement.check_against(state.store.as_ref()).await?;
        state.announcer.publish(&announcement, Utc::now()).await
    }
    .await;
    match result {
        Ok(published) => {
            let mut body = json!(published);
            body["status"] = json!("accepted");
            body["progress"] = json!(format!("/v1/incidents/{}", published.incident_id));
            (StatusCode::ACCEPTED, Json(body)).into_response()
        }
        Err(e) => error(e),
    }
}

/// 401 without the token, or when no token is configured at all.
fn refuse(state: &HttpState, headers: &HeaderMap) -> Option<Response> {
    let Some(token) = state.api_token.as_deref() else {
        return Some(
            (
                StatusCode::UNAUTHORIZED,
                Json(json!({"status": "unauthorized",
                    "error": "the incidents API needs a token: set http.api_token_env"})),
            )
                .into_response(),
        );
    };
    (!authorized(Some(token), headers)).then(unauthorized)
}

/// A JSON body, or 400/422 naming what is wrong.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Box<Response>> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return Box::new(
                (
                    StatusCode::BAD_REQUEST,
                    Json(json!({"status": "bad_request", "error": format!("not JSON: {inner}")})),
                )
                    .into_response(),
            );
        }
        Box::new(error(AnnounceError::Invalid(vec![FieldError {
            field: if field == "." { "body".into() } else { field },
            message: inner.to_string(),
        }])))
    })
}

fn error(e: AnnounceError) -> Response {
    let (status, body) = match &e {
        AnnounceError::Invalid(errors) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"status": "invalid", "errors": errors}),
        ),
        AnnounceError::UnknownIncident(_) => (
            StatusCode::NOT_FOUND,
            json!({"status": "unknown_incident", "error": e.to_string()}),
        ),
        AnnounceError::Resolved(_) => (
            StatusCode::CONFLICT,
            json!({"status": "resolved", "error": e.to_string()}),
        ),
        AnnounceError::Publish(_) | AnnounceError::Store(_) => {
            tracing::warn!(error = %e, "Announcement not taken.");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"status": "unavailable", "error": e.to_string()}),
            )
        }
    };
    (status, Json(body)).into_response()
}
