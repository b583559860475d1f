//! Incidents for on-call: the list and the announce form; a dry run — how many customers will
//! be told and the first one's message — before the confirm button; each incident's progress
//! as it fans out (the page's script reads `/console/api/incidents/{id}` every second); update
//! and resolve forms. Every announcement is checked as `POST /v1/incidents` checks it and
//! carries the signed-in person's name as `announced_by`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, Json};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::pages::Page;
use super::words::{word, Lang};
use super::{listed, Console, Signed};
use crate::domain::{time_shown, Affected, EntityId, FanoutKind};
use crate::incident::{
    AnnounceError, Announcement, DryRun, FieldError, Resolve, Start, Translation, Translations,
    Update,
};
use crate::store::{FanoutPhase, IncidentProgress};

/// How many incidents the list shows.
const LISTED: usize = 30;

/// The announce form, as posted (and carried over to the confirm form).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub(super) struct StartForm {
    #[serde(skip_serializing)]
    csrf: String,
    #[serde(skip_serializing)]
    incident_id: String,
    title: String,
    services: String,
    regions: String,
    segments: String,
    everyone: String,
    severity: String,
    message: String,
    eta: String,
    title_ko: String,
    message_ko: String,
}

impl StartForm {
    fn start(&self) -> Start {
        let regions = listed(&self.regions);
        let segments = listed(&self.segments);
        let korean = translation(&self.title_ko, &self.message_ko);
        Start {
            incident_id: Some(self.incident_id.trim())
                .filter(|id| !id.is_empty())
                .map(str::to_owned),
            title: self.title.clone(),
            services: listed(&self.services),
            affected: (!segments.is_empty()).then(|| Affected {
                regions: regions.clone(),
                segments,
                customer_ids: Vec::new(),
            }),
            regions,
            severity: self.severity.clone(),
            message: self.message.clone(),
            everyone: self.everyone == "yes",
            eta: Some(self.eta.trim())
                .filter(|e| !e.is_empty())
                .map(str::to_owned),
            translations: korean,
        }
    }
}

/// The update and resolve forms.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct FollowUpForm {
    csrf: String,
    message: String,
    severity: String,
    eta: String,
    message_ko: String,
}

/// Korean words, if any were given.
fn translation(title: &str, message: &str) -> Translations {
    let given = |s: &str| Some(s.trim()).filter(|s| !s.is_empty()).map(str::to_owned);
    let korean = Translation {
        title: given(title),
        message: given(message),
    };
    let mut translations = Translations::new();
    if korean != Translation::default() {
        translations.insert("ko".into(), korean);
    }
    translations
}

pub(super) async fn list(State(console): State<Console>, signed: Signed) -> Response {
    let form = StartForm {
        severity: "major".into(),
        ..StartForm::default()
    };
    list_page(&console, &signed, StatusCode::OK, &form, &[]).await
}

async fn list_page(
    console: &Console,
    signed: &Signed,
    status: StatusCode,
    form: &StartForm,
    errors: &[FieldError],
) -> Response {
    let incidents = match console.inner.store.recent_incidents(LISTED).await {
        Ok(incidents) => incidents,
        Err(e) => return unavailable(console, signed, &e.to_string()),
    };
    let incidents: Vec<Value> = incidents
        .iter()
        .map(|i| {
            json!({
                "id": i.id.as_str(),
                "title": i.title,
                "severity": i.severity,
                "status": i.status.as_str(),
                "started_at": i.started_at.map(time_shown),
            })
        })
        .collect();
    let page = Page {
        template: "incidents",
        nav: "incidents",
        title: word(signed.lang, "nav_incidents").to_owned(),
        data: json!({"incidents": incidents, "form": form, "errors": errors}),
        back: "/console/incidents",
    };
    console.page(signed, status, page)
}

pub(super) async fn dry_run(
    State(console): State<Console>,
    signed: Signed,
    Form(form): Form<StartForm>,
) -> Response {
    if let Err(refused) = signed.check_csrf(&console, &form.csrf) {
        return *refused;
    }
    let now = Utc::now();
    let announcement = match Announcement::start(form.start(), &signed.session.who, now) {
        Ok(announcement) => announcement,
        Err(e) => return refused(&console, &signed, &form, e).await,
    };
    let authoring = console.inner.authoring.borrow().clone();
    let store = console.inner.store.as_ref();
    let outcome =
        crate::incident::dry_run(store, &authoring, &console.inner.policy, &announcement, now)
            .await;
    let reach = match outcome {
        Ok(reach) => reach,
        Err(e) => return refused(&console, &signed, &form, e).await,
    };
    let mut data = json!({
        "incident_id": announcement.incident_id.as_str(),
        "hidden": form,
        "nobody": null,
        "customers": 0,
        "who_hears": "",
        "first": null,
    });
    match reach {
        DryRun::Nobody(why) => {
            data["nobody"] = json!(format!("{} {why}.", word(signed.lang, "nobody_would_hear")))
        }
        DryRun::Reaches(reach) => {
            data["customers"] = json!(reach.customers);
            data["who_hears"] = json!(word(signed.lang, who_hears_key(reach.kind)));
            data["first"] = match reach.first {
                None => Value::Null,
                Some(first) => json!({
                    "customer": first.customer_id.as_str(),
                    "nothing": first.nothing_because,
                    "message": first.message.as_ref().map(|m| {
                        let content = serde_json::to_value(&m.content).unwrap_or_default();
                        let text = |k: &str| content[k].as_str().unwrap_or("").to_owned();
                        json!({
                            "channel": m.content.channel().as_str(),
                            "to": crate::store::recipient_shown(&content["to"], false),
                            "rule": m.rule_id,
                            "subject": content.get("subject"),
                            "text": match m.content.channel().as_str() {
                                "email" => text("text"),
                                "push" => format!("{}\n{}", text("title"), text("body")),
                                _ => text("body"),
                            },
                            "held": m.not_before.map(|t| format!(
                                "{} {}", word(signed.lang, "held_until"), time_shown(t))),
                        })
                    }),
                }),
            };
        }
    }
    let page = Page {
        template: "incident_confirm",
        nav: "incidents",
        title: word(signed.lang, "announce").to_owned(),
        data,
        back: "/console/incidents",
    };
    console.page(&signed, StatusCode::OK, page)
}

pub(super) async fn announce(
    State(console): State<Console>,
    signed: Signed,
    Form(form): Form<StartForm>,
) -> Response {
    if let Err(refused) = signed.check_csrf(&console, &form.csrf) {
        return *refused;
    }
    let checked = Announcement::start(form.start(), &signed.session.who, Utc::now());
    match publish(&console, &signed, checked).await {
        Ok(id) => Redirect::to(&format!("/console/incidents/{id}?done=announced")).into_response(),
        Err(e) => refused(&console, &signed, &form, e).await,
    }
}

pub(super) async fn update(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<String>,
    Form(form): Form<FollowUpForm>,
) -> Response {
    if let Err(refused) = signed.check_csrf(&console, &form.csrf) {
        return *refused;
    }
    let given = |s: &str| Some(s.trim()).filter(|s| !s.is_empty()).map(str::to_owned);
    let update = Update {
        message: form.message.clone(),
        severity: given(&form.severity),
        eta: given(&form.eta),
        translations: translation("", &form.message_ko),
    };
    let checked = Announcement::update(&id, update, &signed.session.who, Utc::now());
    follow_up(&console, &signed, &id, checked, "updated").await
}

pub(super) async fn resolve(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<String>,
    Form(form): Form<FollowUpForm>,
) -> Response {
    if let Err(refused) = signed.check_csrf(&console, &form.csrf) {
        return *refused;
    }
    let resolve = Resolve {
        message: form.message.clone(),
        translations: translation("", &form.message_ko),
    };
    let checked = Announcement::resolve(&id, resolve, &signed.session.who);
    follow_up(&console, &signed, &id, checked, "resolved").await
}

async fn follow_up(
    console: &Console,
    signed: &Signed,
    id: &str,
    checked: Result<Announcement, AnnounceError>,
    done: &str,
) -> Response {
    match publish(console, signed, checked).await {
        Ok(id) => Redirect::to(&format!("/console/incidents/{id}?done={done}")).into_response(),
        Err(AnnounceError::Invalid(errors)) => {
            incident_page(
                console,
                signed,
                id,
                StatusCode::UNPROCESSABLE_ENTITY,
                &errors,
                None,
            )
            .await
        }
        Err(e) => {
            let errors = [FieldError {
                field: "incident".into(),
                message: e.to_string(),
            }];
            incident_page(console, signed, id, StatusCode::CONFLICT, &errors, None).await
        }
    }
}

/// Checks against the store and publishes; logs who announced what.
async fn publish(
    console: &Console,
    signed: &Signed,
    checked: Result<Announcement, AnnounceError>,
) -> Result<String, AnnounceError> {
    let mut announcement = checked?;
    announcement
        .check_against(console.inner.store.as_ref())
        .await?;
    let published = console
        .inner
        .announcer
        .publish(&announcement, Utc::now())
        .await?;
    tracing::info!(
        target: "forewarn::audit",
        who = %signed.session.who,
        incident = %published.incident_id,
        event = %published.event_type,
        duplicate = published.duplicate,
        "Announced from the console."
    );
    Ok(published.incident_id)
}

/// The announce form again, with what is wrong.
async fn refused(
    console: &Console,
    signed: &Signed,
    form: &StartForm,
    error: AnnounceError,
) -> Response {
    let (status, errors) = match error {
        AnnounceError::Invalid(errors) => (StatusCode::UNPROCESSABLE_ENTITY, errors),
        other => (
            StatusCode::SERVICE_UNAVAILABLE,
            vec![FieldError {
                field: "announcement".into(),
                message: other.to_string(),
            }],
        ),
    };
    list_page(console, signed, status, form, &errors).await
}

#[derive(Debug, Deserialize)]
pub(super) struct Done {
    #[serde(default)]
    done: String,
}

pub(super) async fn show(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<String>,
    axum::extract::Query(done): axum::extract::Query<Done>,
) -> Response {
    let notice = match done.done.as_str() {
        "announced" => Some(word(signed.lang, "notice_announced")),
        "updated" => Some(word(signed.lang, "notice_updated")),
        "resolved" => Some(word(signed.lang, "notice_resolved")),
        _ => None,
    };
    incident_page(&console, &signed, &id, StatusCode::OK, &[], notice).await
}

async fn incident_page(
    console: &Console,
    signed: &Signed,
    id: &str,
    status: StatusCode,
    errors: &[FieldError],
    notice: Option<&str>,
) -> Response {
    let progress = match read_progress(console, id).await {
        Ok(progress) => progress,
        Err(response) => return response,
    };
    let mut data = view(&progress, id, signed.lang);
    data["errors"] = json!(errors);
    data["notice"] = json!(notice);
    let page = Page {
        template: "incident",
        nav: "incidents",
        title: word(signed.lang, "incident").to_owned(),
        data,
        back: "/console/incidents",
    };
    console.page(signed, status, page)
}

/// What the page's script reads every second: the same view the page was rendered from.
pub(super) async fn progress(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<String>,
) -> Response {
    match read_progress(&console, &id).await {
        Ok(progress) => Json(view(&progress, &id, signed.lang)).into_response(),
        Err(response) => response,
    }
}

async fn read_progress(console: &Console, id: &str) -> Result<IncidentProgress, Response> {
    let Ok(id) = EntityId::parse(id) else {
        return Err(StatusCode::NOT_FOUND.into_response());
    };
    console
        .inner
        .store
        .incident_progress(&id, Utc::now())
        .await
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response())
}

/// An incident's progress as the page shows it. Before intake has read the announcement there
/// is nothing yet: the page says it is waiting, and the script keeps asking.
fn view(progress: &IncidentProgress, id: &str, lang: Lang) -> Value {
    let m = &progress.messages;
    let decided: u64 = progress.fanouts.iter().map(|f| f.customers).sum();
    let ranked: u64 = progress.fanouts.iter().map(|f| f.ranked).sum();
    let settled_customers = decided.saturating_sub(m.in_flight());
    let finding = progress
        .fanouts
        .iter()
        .find(|f| f.status == "running" && f.phase == FanoutPhase::Rank);
    let (phase, done) = match (&progress.incident, finding) {
        (None, _) => (word(lang, "phase_waiting").to_owned(), false),
        (_, Some(f)) => (
            format!("{} {}", word(lang, "phase_finding"), f.ranked),
            false,
        ),
        (Some(_), None) if progress.fanouts.is_empty() => {
            (word(lang, "phase_no_fanout").to_owned(), true)
        }
        (Some(_), None) if progress.settled() => (word(lang, "phase_done").to_owned(), true),
        (Some(_), None) => (
            format!(
                "{} {settled_customers} / {ranked}",
                word(lang, "phase_sending")
            ),
            false,
        ),
    };
    let incident = progress.incident.as_ref();
    json!({
        "id": id,
        "title": incident.and_then(|i| i.title.clone()).unwrap_or_default(),
        "severity": incident.and_then(|i| i.severity.clone()).unwrap_or_default(),
        "status": incident.map_or("", |i| i.status.as_str()),
        "open": incident.is_some_and(|i| i.status.as_str() == "open"),
        "phase": phase,
        "done": done,
        "bar_max": ranked.max(1),
        "bar_value": if done { ranked.max(1) } else { settled_customers },
        "counts": {
            "decided": decided,
            "queued": m.queued + m.sending,
            "sent": m.sent,
            "failed": m.failed,
            "deferred": m.deferred,
            "cancelled": m.cancelled,
        },
        "fanouts": progress.fanouts.iter().map(|f| format!(
            "{} · {} · {} {} · {}",
            f.kind.as_str(),
            f.status,
            f.customers,
            word(lang, "customers"),
            time_shown(f.created_at),
        )).collect::<Vec<_>>(),
    })
}

fn who_hears_key(kind: FanoutKind) -> &'static str {
    match kind {
        FanoutKind::Started => "who_hears_started",
        FanoutKind::Escalated => "who_hears_escalated",
        FanoutKind::Resolved => "who_hears_resolved",
    }
}

fn unavailable(console: &Console, signed: &Signed, error: &str) -> Response {
    console.problem(
        signed,
        StatusCode::SERVICE_UNAVAILABLE,
        error,
        "/console/today",
    )
}
