//! Announcements: what on-call says about an incident, checked once for the CLI and the HTTP
//! API alike, and published as an `outage.*` CloudEvent with a JetStream ack.
//!
//! An announcement goes through the events stream like any backend's event, so intake applies
//! it (the incident's state, the fan-out) in order with everything else, and the stream keeps
//! it if forewarn is down. Its CloudEvents id is derived from the incident (`inc-…:started`,
//! `inc-…:resolved`), so publishing the same start or resolution twice — a retried command, a
//! repeated HTTP call — is one event.

use async_nats::jetstream;
use async_nats::HeaderMap;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::domain::Accepted;
use crate::domain::{
    Affected, CloudEvent, CustomerId, EntityId, EventKey, EventType, IncidentStatus, Payload,
    Severity,
};
use crate::store::{Store, StoreError};

/// Longest title: it goes into SMS and e-mail subjects.
const MAX_TITLE: usize = 120;
/// Longest message on-call may write: templates put it in an SMS, among other words.
const MAX_MESSAGE: usize = 480;

/// One field that is wrong, named as the HTTP body names it (the CLI's flags say the same).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// `title`, `severity`, `affected.customer_ids[3]`, …
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// Why an announcement was not published.
#[derive(Debug, thiserror::Error)]
pub enum AnnounceError {
    /// The announcement is malformed; every problem is listed.
    #[error("{}", .0.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
    /// No incident with this id has been announced (or intake has not read its start yet).
    #[error("incident `{0}` is not known: announce it with `start` first (or wait a moment for forewarn to read the start)")]
    UnknownIncident(String),
    /// The incident is resolved: nothing more to say.
    #[error("incident `{0}` is already resolved")]
    Resolved(String),
    /// NATS did not take the event.
    #[error("could not publish the announcement: {0}")]
    Publish(String),
    /// The database could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An incident begins: the body of `POST /v1/incidents`, and `announce start`'s flags.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Start {
    /// Chosen by on-call; generated (`inc-20261124-3f9a2c`) when absent.
    pub incident_id: Option<String>,
    /// What is wrong, in a few words customers understand.
    #[serde(default)]
    pub title: String,
    /// The services down (`checkout`, `payments`).
    #[serde(default)]
    pub services: Vec<String>,
    /// Where the outage is. When `affected` is absent, customers of these regions are affected.
    #[serde(default)]
    pub regions: Vec<String>,
    /// `minor`, `major` or `critical`.
    #[serde(default)]
    pub severity: String,
    /// What customers are told.
    #[serde(default)]
    pub message: String,
    /// Who is affected: regions (`kr` takes in `kr-seoul`), segments, customer ids.
    pub affected: Option<Affected>,
    /// Every customer is affected (instead of `regions`/`affected`): said explicitly, so an
    /// omission never reaches a million phones.
    #[serde(default)]
    pub everyone: bool,
    /// When it should be fixed: RFC 3339, or a duration from now (`90m`, `2h`).
    pub eta: Option<String>,
    /// The title and message in other languages, by language tag (`ko`, `ko-KR`): each customer
    /// reads their own, else `title` and `message`.
    #[serde(default)]
    pub translations: Translations,
}

/// An announcement's words in other languages, by language tag.
pub type Translations = std::collections::BTreeMap<String, Translation>;

/// The title and message in one language; either may be left to the default.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Translation {
    /// The title in this language.
    pub title: Option<String>,
    /// The message in this language.
    pub message: Option<String>,
}

/// Something changed: the body of `POST /v1/incidents/{id}/updates`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Update {
    /// What customers (and the status page) are told.
    #[serde(default)]
    pub message: String,
    /// A new severity; customers hear the update only if it escalates.
    pub severity: Option<String>,
    /// A new ETA, as for [`Start::eta`].
    pub eta: Option<String>,
    /// The message in other languages, as for [`Start::translations`].
    #[serde(default)]
    pub translations: Translations,
}

/// It is over: the body of `POST /v1/incidents/{id}/resolve`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resolve {
    /// What customers who were told are told now.
    #[serde(default)]
    pub message: String,
    /// The message in other languages, as for [`Start::translations`].
    #[serde(default)]
    pub translations: Translations,
}

/// A checked announcement, ready to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Announcement {
    /// The incident.
    pub incident_id: EntityId,
    /// `outage.started`, `outage.updated` or `outage.resolved`.
    pub event_type: EventType,
    /// Its CloudEvents id.
    pub event_id: String,
    /// Its `data`.
    pub data: Value,
}

impl Announcement {
    /// Checks a start; `now` dates a relative ETA and the generated id.
    pub fn start(
        start: Start,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Announcement, AnnounceError> {
        let mut errors = Vec::new();
        let incident_id = match &start.incident_id {
            Some(id) => parse_field(&mut errors, "incident_id", EntityId::parse(id)),
            None => EntityId::parse(&generated_id(now)).ok(),
        };
        text(&mut errors, "title", &start.title, MAX_TITLE);
        text(&mut errors, "message", &start.message, MAX_MESSAGE);
        if start.services.is_empty() {
            errors.push(err("services", "name at least one service that is down"));
        }
        listed(&mut errors, "services", &start.services);
        listed(&mut errors, "regions", &start.regions);
        let severity = severity(&mut errors, "severity", &start.severity);
        let eta = start.eta.as_deref().and_then(|e| eta(&mut errors, e, now));
        let translations = translated(&mut errors, &start.translations);
        let affected = start.affected.clone().unwrap_or_else(|| Affected {
            regions: start.regions.clone(),
            ..Affected::default()
        });
        listed(&mut errors, "affected.regions", &affected.regions);
        listed(&mut errors, "affected.segments", &affected.segments);
        let names_someone = !(affected.regions.is_empty()
            && affected.segments.is_empty()
            && affected.customer_ids.is_empty());
        match (names_someone, start.everyone) {
            (false, false) => errors.push(err(
                "affected",
                "say who is affected (regions, segments or customers), or that everyone is",
            )),
            (true, true) => errors.push(err(
                "everyone",
                "everyone cannot be combined with regions, segments or customer ids",
            )),
            _ => {}
        }
        let (Some(incident_id), Some(severity), true) = (incident_id, severity, errors.is_empty())
        else {
            return Err(AnnounceError::Invalid(errors));
        };
        let mut data = Map::new();
        data.insert("incident_id".into(), json!(incident_id.as_str()));
        data.insert("title".into(), json!(start.title.trim()));
        data.insert("services".into(), json!(start.services));
        data.insert("regions".into(), json!(start.regions));
        data.insert("severity".into(), json!(severity.as_str()));
        data.insert("affected".into(), json!(affected));
        data.insert("message".into(), json!(start.message.trim()));
        if let Some(eta) = eta {
            data.insert("eta".into(), json!(rfc3339(eta)));
        }
        if !translations.is_null() {
            data.insert("translations".into(), translations);
        }
        data.insert("announced_by".into(), json!(by));
        Ok(Announcement {
            event_id: format!("{incident_id}:started"),
            incident_id,
            event_type: EventType::OutageStarted,
            data: Value::Object(data),
        })
    }

    /// Checks an update of `incident_id`.
    pub fn update(
        incident_id: &str,
        update: Update,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Announcement, AnnounceError> {
        let mut errors = Vec::new();
        let id = parse_field(&mut errors, "incident_id", EntityId::parse(incident_id));
        text(&mut errors, "message", &update.message, MAX_MESSAGE);
        let severity = update
            .severity
            .as_deref()
            .map(|s| severity(&mut errors, "severity", s));
        let eta = update.eta.as_deref().and_then(|e| eta(&mut errors, e, now));
        let translations = translated(&mut errors, &update.translations);
        let (Some(id), true) = (id, errors.is_empty()) else {
            return Err(AnnounceError::Invalid(errors));
        };
        let mut data = Map::new();
        data.insert("incident_id".into(), json!(id.as_str()));
        if let Some(Some(severity)) = severity {
            data.insert("severity".into(), json!(severity.as_str()));
        }
        data.insert("message".into(), json!(update.message.trim()));
        if let Some(eta) = eta {
            data.insert("eta".into(), json!(rfc3339(eta)));
        }
        if !translations.is_null() {
            data.insert("translations".into(), translations);
        }
        data.insert("announced_by".into(), json!(by));
        Ok(Announcement {
            // Updates have no natural key: each is its own event.
            event_id: format!("{id}:updated:{}", now.timestamp_millis()),
            incident_id: id,
            event_type: EventType::OutageUpdated,
            data: Value::Object(data),
        })
    }

    /// Checks a resolution of `incident_id`.
    pub fn resolve(
        incident_id: &str,
        resolve: Resolve,
        by: &str,
    ) -> Result<Announcement, AnnounceError> {
        let mut errors = Vec::new();
        let id = parse_field(&mut errors, "incident_id", EntityId::parse(incident_id));
        text(&mut errors, "message", &resolve.message, MAX_MESSAGE);
        let translations = translated(&mut errors, &resolve.translations);
        let (Some(id), true) = (id, errors.is_empty()) else {
            return Err(AnnounceError::Invalid(errors));
        };
        let mut data = json!({
            "incident_id": id.as_str(),
            "message": resolve.message.trim(),
            "announced_by": by,
        });
        if !translations.is_null() {
            data["translations"] = translations;
        }
        Ok(Announcement {
            event_id: format!("{id}:resolved"),
            data,
            incident_id: id,
            event_type: EventType::OutageResolved,
        })
    }

    /// Checks the announcement against what forewarn knows: an update or a resolution needs
    /// an incident that was announced, an update an open one (a repeated resolution is let
    /// through: it is the same event). Their `data` gains the incident's title, so templates
    /// can say what the update is about.
    pub async fn check_against(&mut self, store: &dyn Store) -> Result<(), AnnounceError> {
        if self.event_type == EventType::OutageStarted {
            return Ok(());
        }
        let id = self.incident_id.as_str().to_owned();
        let incident = match store.incident(&self.incident_id).await? {
            None => return Err(AnnounceError::UnknownIncident(id)),
            Some(i)
                if i.status == IncidentStatus::Resolved
                    && self.event_type == EventType::OutageUpdated =>
            {
                return Err(AnnounceError::Resolved(id))
            }
            Some(i) => i,
        };
        if let (Some(title), Value::Object(data)) = (incident.title, &mut self.data) {
            data.entry("title").or_insert_with(|| json!(title));
        }
        Ok(())
    }

    /// The event as intake will read it, from `source` at `now`: for dry runs and benchmarks,
    /// which decide without publishing.
    pub fn accepted(&self, source: &str, now: DateTime<Utc>) -> Result<Accepted, AnnounceError> {
        let payload = Payload::parse(self.event_type, &self.data).map_err(|e| {
            AnnounceError::Invalid(vec![FieldError {
                field: e.field,
                message: e.message,
            }])
        })?;
        Ok(Accepted {
            event: CloudEvent {
                key: EventKey {
                    source: source.to_owned(),
                    id: self.event_id.clone(),
                },
                event_type: self.event_type,
                time: Some(now),
                subject: Some(self.incident_id.as_str().to_owned()),
                data: self.data.clone(),
            },
            payload,
        })
    }

    /// The CloudEvent, stamped `now`, from `source`.
    pub fn envelope(&self, source: &str, now: DateTime<Utc>) -> Value {
        json!({
            "specversion": "1.0",
            "id": self.event_id,
            "source": source,
            "type": self.event_type.as_str(),
            "time": rfc3339(now),
            "subject": self.incident_id.as_str(),
            "datacontenttype": "application/json",
            "data": self.data,
        })
    }
}

/// An announcement the stream has taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Published {
    /// The incident.
    pub incident_id: String,
    /// The CloudEvents id.
    pub event_id: String,
    /// Its type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The stream's sequence number; a repeat of the same announcement gets the first one's.
    pub stream_sequence: u64,
    /// True when the stream already had it (the same start or resolution published twice).
    pub duplicate: bool,
}

/// Publishes announcements with a JetStream ack.
#[derive(Clone)]
pub struct Announcer {
    js: jetstream::Context,
    subject_prefix: String,
    source: String,
}

impl Announcer {
    /// Publishes to `<subject_prefix><type>` as `source`.
    pub fn new(js: jetstream::Context, subject_prefix: &str, source: &str) -> Self {
        Announcer {
            js,
            subject_prefix: subject_prefix.to_owned(),
            source: source.to_owned(),
        }
    }

    /// Publishes and waits for the stream's ack.
    pub async fn publish(
        &self,
        announcement: &Announcement,
        now: DateTime<Utc>,
    ) -> Result<Published, AnnounceError> {
        let body = serde_json::to_vec(&announcement.envelope(&self.source, now))
            .map_err(|e| AnnounceError::Publish(e.to_string()))?;
        let mut headers = HeaderMap::new();
        // The stream drops a second message with the same id within its duplicate window.
        headers.insert("Nats-Msg-Id", announcement.event_id.as_str());
        let subject = format!(
            "{}{}",
            self.subject_prefix,
            announcement.event_type.as_str()
        );
        let ack = self
            .js
            .publish_with_headers(subject, headers, body.into())
            .await
            .map_err(|e| AnnounceError::Publish(e.to_string()))?
            .await
            .map_err(|e| AnnounceError::Publish(e.to_string()))?;
        Ok(Published {
            incident_id: announcement.incident_id.as_str().to_owned(),
            event_id: announcement.event_id.clone(),
            event_type: announcement.event_type.as_str().to_owned(),
            stream_sequence: ack.sequence,
            duplicate: ack.duplicate,
        })
    }
}

/// Reads customer ids, one per line; blank lines and `#` comments are skipped. A bad id is
/// named by its line.
pub fn customer_ids_from(text: &str, file: &str) -> Result<Vec<CustomerId>, AnnounceError> {
    let mut ids = Vec::new();
    let mut errors = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        match CustomerId::parse(line) {
            Ok(id) => ids.push(id),
            Err(e) => errors.push(err(&format!("{file}:{}", n + 1), &e)),
        }
    }
    if errors.is_empty() {
        Ok(ids)
    } else {
        Err(AnnounceError::Invalid(errors))
    }
}

/// The translations as the event carries them (`{"ko": {"title", "message"}}`, tags in their
/// canonical form), each text checked as the default is; `Null` when there are none. An update
/// or a resolution may translate the incident's title too, which it carries from the start.
fn translated(errors: &mut Vec<FieldError>, translations: &Translations) -> Value {
    let mut out = Map::new();
    for (tag, words) in translations {
        let field = format!("translations.{tag}");
        let Some(locale) = parse_field(errors, &field, crate::domain::Locale::parse(tag)) else {
            continue;
        };
        let mut entry = Map::new();
        if let Some(title) = &words.title {
            text(errors, &format!("{field}.title"), title, MAX_TITLE);
            entry.insert("title".into(), json!(title.trim()));
        }
        if let Some(message) = &words.message {
            text(errors, &format!("{field}.message"), message, MAX_MESSAGE);
            entry.insert("message".into(), json!(message.trim()));
        }
        if entry.is_empty() {
            errors.push(err(&field, "give a title or a message in this language"));
        }
        out.insert(locale.as_str().to_owned(), Value::Object(entry));
    }
    if out.is_empty() {
        Value::Null
    } else {
        Value::Object(out)
    }
}

fn err(field: &str, message: &str) -> FieldError {
    FieldError {
        field: field.to_owned(),
        message: message.to_owned(),
    }
}

fn parse_field<T>(
    errors: &mut Vec<FieldError>,
    field: &str,
    parsed: Result<T, String>,
) -> Option<T> {
    parsed.map_err(|e| errors.push(err(field, &e))).ok()
}

/// Required text of at most `max` characters.
fn text(errors: &mut Vec<FieldError>, field: &str, value: &str, max: usize) {
    let length = value.trim().chars().count();
    if length == 0 {
        errors.push(err(field, "must not be empty"));
    } else if length > max {
        errors.push(err(field, &format!("{length} characters; at most {max}")));
    }
}

/// Names in a list must not be blank.
fn listed(errors: &mut Vec<FieldError>, field: &str, values: &[String]) {
    for (i, value) in values.iter().enumerate() {
        if value.trim().is_empty() {
            errors.push(err(&format!("{field}[{i}]"), "must not be empty"));
        }
    }
}

fn severity(errors: &mut Vec<FieldError>, field: &str, value: &str) -> Option<Severity> {
    let parsed = Severity::parse(value.trim());
    if parsed.is_none() {
        errors.push(err(
            field,
            &format!("`{value}` is not a severity: minor, major or critical"),
        ));
    }
    parsed
}

/// An RFC 3339 time, or a duration from `now`; never in the past.
fn eta(errors: &mut Vec<FieldError>, value: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let parsed = DateTime::parse_from_rfc3339(value.trim())
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            humantime::parse_duration(value.trim())
                .ok()
                .and_then(|d| chrono::Duration::from_std(d).ok())
                .map(|d| now + d)
        });
    match parsed {
        None => errors.push(err(
            "eta",
            &format!("`{value}` is neither an RFC 3339 time nor a duration like 90m or 2h"),
        )),
        Some(t) if t < now => errors.push(err("eta", "is in the past")),
        Some(_) => {}
    }
    parsed.filter(|t| *t >= now)
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `inc-<date>-<6 hex>`: sortable by day, short enough to say on a call.
fn generated_id(now: DateTime<Utc>) -> String {
    format!(
        "inc-{}-{:06x}",
        now.format("%Y%m%d"),
        fastrand::u32(..0x100_0000)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-11-24T03:00:00Z".parse().unwrap()
    }

    fn start() -> Start {
        Start {
            title: "Checkout is down".into(),
            services: vec!["checkout".into()],
            regions: vec!["kr".into()],
            severity: "major".into(),
            message: "Orders can't be placed right now.".into(),
            eta: Some("2h".into()),
            ..Start::default()
        }
    }

    #[test]
    fn a_start_becomes_an_outage_started_event_the_catalogue_accepts() {
        let a = Announcement::start(start(), "oncall", now()).unwrap();
        assert_eq!(a.event_type, EventType::OutageStarted);
        assert!(a.incident_id.as_str().starts_with("inc-20261124-"));
        assert_eq!(a.event_id, format!("{}:started", a.incident_id));
        assert_eq!(
            a.data["affected"]["regions"],
            json!(["kr"]),
            "regions are who is affected"
        );
        assert_eq!(a.data["eta"], "2026-11-24T05:00:00Z");
        let payload = crate::domain::Payload::parse(a.event_type, &a.data);
        assert!(payload.is_ok(), "{payload:?}");
    }

    #[test]
    fn every_problem_of_a_start_is_named_by_its_field() {
        let bad = Start {
            title: " ".into(),
            severity: "catastrophic".into(),
            eta: Some("yesterday".into()),
            regions: Vec::new(),
            ..start()
        };
        let Err(AnnounceError::Invalid(errors)) = Announcement::start(bad, "oncall", now()) else {
            panic!("accepted");
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["title", "severity", "eta", "affected"]);
        assert!(errors[1].message.contains("minor, major or critical"));
    }

    #[test]
    fn everyone_must_be_said_and_cannot_be_mixed_with_a_selection() {
        let everyone = Start {
            regions: Vec::new(),
            everyone: true,
            ..start()
        };
        let a = Announcement::start(everyone, "oncall", now()).unwrap();
        assert_eq!(
            a.data["affected"],
            json!({"regions": [], "segments": [], "customer_ids": []})
        );
        let both = Start {
            everyone: true,
            ..start()
        };
        assert!(matches!(
            Announcement::start(both, "oncall", now()),
            Err(AnnounceError::Invalid(e)) if e[0].field == "everyone"
        ));
    }

    #[test]
    fn an_eta_in_the_past_is_refused_and_an_update_without_severity_is_fine() {
        let past = Update {
            message: "Still on it".into(),
            eta: Some("2026-11-24T02:00:00Z".into()),
            ..Update::default()
        };
        assert!(matches!(
            Announcement::update("inc-1", past, "oncall", now()),
            Err(AnnounceError::Invalid(e)) if e[0].field == "eta" && e[0].message == "is in the past"
        ));
        let plain = Update {
            message: "Still on it".into(),
            ..Update::default()
        };
        let a = Announcement::update("inc-1", plain, "oncall", now()).unwrap();
        assert!(a.data.get("severity").is_none());
        assert!(crate::domain::Payload::parse(a.event_type, &a.data).is_ok());
    }

    #[test]
    fn a_customers_file_names_the_line_of_a_bad_id() {
        let ids = customer_ids_from("c-1\n\n# vip\nc-2  # note\n", "ids.txt").unwrap();
        assert_eq!(ids.len(), 2);
        let long = "c".repeat(200);
        let Err(AnnounceError::Invalid(errors)) =
            customer_ids_from(&format!("c-1\n{long}\n"), "ids.txt")
        else {
            panic!("accepted");
        };
        assert_eq!(errors[0].field, "ids.txt:2");
    }

    #[test]
    fn words_in_other_languages_are_checked_and_carried_under_their_canonical_tag() {
        let mut words = start();
        words.translations.insert(
            "ko-kr".into(),
            Translation {
                title: Some("결제 장애".into()),
                message: Some("카드 결제가 되지 않아요.".into()),
            },
        );
        let a = Announcement::start(words, "oncall", now()).unwrap();
        assert_eq!(
            a.data["translations"],
            json!({"ko-KR": {"title": "결제 장애", "message": "카드 결제가 되지 않아요."}})
        );
        // A tag that is not a language, and a language with nothing in it, name their field.
        let mut bad = start();
        bad.translations
            .insert("korean!".into(), Translation::default());
        bad.translations.insert("ko".into(), Translation::default());
        let Err(AnnounceError::Invalid(errors)) = Announcement::start(bad, "oncall", now()) else {
            panic!("refused")
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["translations.ko", "translations.korean!"],
            "{errors:?}"
        );
        // Without translations the event carries none.
        let plain = Announcement::start(start(), "oncall", now()).unwrap();
        assert!(plain.data.get("translations").is_none());
    }
}
