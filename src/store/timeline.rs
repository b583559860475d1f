//! What `forewarn explain` reads of the database: one customer's record, opt-outs, events,
//! messages with every attempt and receipt, what was held back, and what the customer replied.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::{DecisionNote, StoreError};
use crate::domain::{Channel, CustomerDoc, EventKey, IdempotencyKey, OptOutScope};

/// What forewarn knows and did about one customer, for `forewarn explain`.
#[derive(Debug, Clone, Default)]
pub struct CustomerTimeline {
    /// The customer record, if known.
    pub customer: Option<CustomerDoc>,
    /// Opt-outs: channel, scope, when.
    pub opt_outs: Vec<(Channel, OptOutScope, DateTime<Utc>)>,
    /// The events behind the messages and notes.
    pub events: Vec<TimelineEvent>,
    /// Messages queued for the customer, oldest first.
    pub messages: Vec<TimelineMessage>,
    /// What was held back, oldest first.
    pub notes: Vec<DecisionNote>,
    /// What the customer wrote back, oldest first.
    pub replies: Vec<ReplySummary>,
}

/// A reply on a customer's timeline.
#[derive(Debug, Clone)]
pub struct ReplySummary {
    /// The channel it came on.
    pub channel: Channel,
    /// `stop`, `start`, `help` or `other`.
    pub keyword: String,
    /// What they wrote.
    pub body: String,
    /// When it arrived.
    pub at: DateTime<Utc>,
}

/// A provider's receipt for one of a message's attempts.
#[derive(Debug, Clone)]
pub struct ReceiptSummary {
    /// The attempt it is about.
    pub attempt: u32,
    /// What it said (`delivered`, `undelivered`, …).
    pub status: String,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// When it arrived.
    pub at: DateTime<Utc>,
    /// Whether it told the attempt something new (a late or repeated one does not).
    pub applied: bool,
}

/// An event on a customer's timeline.
#[derive(Debug, Clone)]
pub struct TimelineEvent {
    /// Identity.
    pub key: EventKey,
    /// Catalogue type.
    pub event_type: String,
    /// Its own time.
    pub time: Option<DateTime<Utc>>,
    /// When forewarn took it.
    pub received_at: DateTime<Utc>,
    /// `data`.
    pub data: serde_json::Value,
}

/// A message on a customer's timeline, with every attempt.
#[derive(Debug, Clone)]
pub struct TimelineMessage {
    /// Idempotency key.
    pub key: IdempotencyKey,
    /// The rule.
    pub rule_id: String,
    /// The channel it is (now) on.
    pub channel: Channel,
    /// `pending`, `sending`, `sent` or `failed`.
    pub status: String,
    /// The event that caused it.
    pub event: EventKey,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// When it is due, if still pending.
    pub next_attempt_at: DateTime<Utc>,
    /// When the provider took it.
    pub sent_at: Option<DateTime<Utc>>,
    /// The rendered message.
    pub content: serde_json::Value,
    /// Its discount, if any.
    pub offer: Option<serde_json::Value>,
    /// Its risk explanation.
    pub risk: Option<serde_json::Value>,
    /// The last error, if any.
    pub last_error: Option<String>,
    /// Every attempt, in order.
    pub attempts: Vec<AttemptSummary>,
    /// Every receipt, in the order they arrived.
    pub receipts: Vec<ReceiptSummary>,
}

/// One attempt at a gateway, as the timeline shows it.
#[derive(Debug, Clone)]
pub struct AttemptSummary {
    /// 1, 2, …
    pub attempt: u32,
    /// The gateway's name.
    pub gateway: String,
    /// When it started.
    pub at: DateTime<Utc>,
    /// `sent`, `retry`, `failed`, `reconciled`.
    pub outcome: String,
    /// What went wrong, if anything.
    pub error: Option<String>,
    /// How far it got after the provider took it, as receipts said: `delivered`, …
    pub delivery: Option<String>,
    /// When the receipt that said so arrived.
    pub delivery_at: Option<DateTime<Utc>>,
    /// Why it was not delivered, if it was not.
    pub delivery_error: Option<String>,
}

impl CustomerTimeline {
    /// The timeline as one JSON document (`forewarn explain --json`, the console's customer
    /// page): phone numbers, e-mail addresses and the name masked unless `reveal`.
    pub fn to_json(&self, customer: &str, reveal: bool) -> Value {
        let t = self;
        let mask = |text: &str| masked(text, reveal);
        let events: Vec<Value> = t
            .events
            .iter()
            .map(|e| {
                let messages: Vec<Value> = t
                .messages
                .iter()
                .filter(|m| m.event == e.key)
                .map(|m| {
                    json!({
                        "rule": m.rule_id, "channel": m.channel.as_str(), "status": m.status,
                        "to": recipient_shown(&m.content["to"], reveal), "queued_at": m.created_at,
                        "text": mask(&message_text(&m.content)),
                        "due_at": m.next_attempt_at, "sent_at": m.sent_at, "offer": m.offer,
                        "risk": m.risk, "last_error": m.last_error.as_deref().map(mask),
                        "attempts": m.attempts.iter().map(|a| json!({
                            "attempt": a.attempt, "gateway": a.gateway, "at": a.at,
                            "outcome": a.outcome, "error": a.error.as_deref().map(mask),
                            "delivery": a.delivery, "delivery_at": a.delivery_at,
                            "delivery_error": a.delivery_error.as_deref().map(mask)}))
                            .collect::<Vec<_>>(),
                        "receipts": m.receipts.iter().map(|r| json!({
                            "attempt": r.attempt, "status": r.status, "at": r.at,
                            "applied": r.applied, "error": r.error.as_deref().map(mask)}))
                            .collect::<Vec<_>>(),
                    })
                })
                .collect();
                let notes: Vec<Value> = t
                    .notes
                    .iter()
                    .filter(|n| n.event == e.key)
                    .map(|n| {
                        json!({"rule": n.rule_id, "outcome": n.outcome, "reason": n.reason,
                                "detail": n.detail, "at": n.at})
                    })
                    .collect();
                json!({"source": e.key.source, "id": e.key.id, "type": e.event_type, "time": e.time,
                   "received_at": e.received_at, "messages": messages, "held_back": notes})
            })
            .collect();
        json!({
            "customer": customer,
            "known": t.customer.is_some(),
            "record": t.customer.as_ref().map(|doc| record_json(doc, reveal)),
            "opt_outs": t.opt_outs.iter().map(|(c, s, at)| json!({"channel": c.as_str(),
                "scope": s.as_str(), "at": at})).collect::<Vec<_>>(),
            "events": events,
            "replies": t.replies.iter().map(|r| json!({"channel": r.channel.as_str(),
                "keyword": r.keyword, "body": mask(&r.body), "at": r.at})).collect::<Vec<_>>(),
        })
    }
}

/// What a message said: an SMS's body, an e-mail's subject and text, a push's title and body.
fn message_text(content: &Value) -> String {
    let text = |k: &str| content[k].as_str().unwrap_or("");
    match content["channel"].as_str() {
        Some("email") => format!("{}\n\n{}", text("subject"), text("text")),
        Some("push") => format!("{}\n{}", text("title"), text("body")),
        _ => text("body").to_owned(),
    }
}

/// What the customer record says that explains a decision: contact details masked unless
/// `reveal`.
fn record_json(doc: &CustomerDoc, reveal: bool) -> Value {
    let o = doc.as_object();
    let text = |k: &str| o.get(k).and_then(Value::as_str);
    json!({
        "name": text("name").map(|n| mask_name(n, reveal)),
        "phone": text("phone").map(|p| masked(p, reveal)),
        "email": text("email").map(|e| masked(e, reveal)),
        "locale": text("locale"),
        "timezone": text("timezone"),
        "region": text("region"),
        "segments": o.get("segments"),
        "consent": o.get("consent"),
    })
}

/// Text with phone numbers and e-mail addresses masked, unless revealed.
pub fn masked(text: &str, reveal: bool) -> String {
    if reveal {
        text.to_owned()
    } else {
        crate::telemetry::mask_text(text)
    }
}

/// A name shown as its first letter unless revealed.
pub fn mask_name(name: &str, reveal: bool) -> String {
    if reveal {
        return name.to_owned();
    }
    let mut chars = name.chars();
    chars.next().map_or_else(String::new, |first| {
        format!("{first}{}", "*".repeat(chars.count()))
    })
}

/// Where a message went: a phone number or address masked unless `reveal`, or how many devices.
pub fn recipient_shown(to: &Value, reveal: bool) -> String {
    match to {
        Value::String(to) if reveal => to.clone(),
        Value::String(to) => crate::telemetry::mask_text(to),
        Value::Array(tokens) => format!("{} device(s)", tokens.len()),
        _ => "?".into(),
    }
}

/// Reads for people asking "what happened to this customer, and why".
#[async_trait]
pub trait TimelineStore: Send + Sync {
    /// Everything about one customer since `since`, for `forewarn explain`.
    async fn timeline(
        &self,
        customer_id: &str,
        since: DateTime<Utc>,
    ) -> Result<CustomerTimeline, StoreError>;

    /// The risk explanation stored with the outreach `key` (see `risk::RiskAssessment`).
    async fn outreach_risk(
        &self,
        key: &IdempotencyKey,
    ) -> Result<Option<serde_json::Value>, StoreError>;
}

/// [`TimelineStore`] for a backend's store type (with a `pool` field), written once: a
/// customer's story is a handful of indexed probes in SQL both backends read alike (`$n`
/// placeholders in bind order), and its rows decode through [`super::rows::StoredRow`].
macro_rules! timeline_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::TimelineStore for $store {
            async fn timeline(
                &self,
                customer_id: &str,
                since: chrono::DateTime<chrono::Utc>,
            ) -> Result<$crate::store::CustomerTimeline, $crate::store::StoreError> {
                use $crate::store::rows::{
                    attempt_summary_from_row, note_from_row, opt_out_from_row,
                    receipt_summary_from_row, reply_summary_from_row, timeline_event_from_row,
                    timeline_message_from_row, StoredRow,
                };
                let since = $crate::store::millis(since);
                let mut timeline = $crate::store::CustomerTimeline {
                    customer: $crate::store::FeedbackStore::customer(self, customer_id).await?,
                    ..Default::default()
                };
                for row in
                    sqlx::query("SELECT channel, scope, at FROM opt_outs WHERE customer_id = $1")
                        .bind(customer_id)
                        .fetch_all(&self.pool)
                        .await?
                {
                    let (channel, scope) = opt_out_from_row(&row)?;
                    timeline.opt_outs.push((channel, scope, row.time("at")?));
                }
                let messages = sqlx::query(
                    "SELECT o.id, o.idempotency_key, o.rule_id, o.channel, o.status, \
                     o.event_source, o.event_id, o.created_at, o.next_attempt_at, o.sent_at, \
                     o.content, o.offer, r.explanation AS risk, o.last_error \
                     FROM outbox o LEFT JOIN outbox_risk r ON r.outbox_id = o.id \
                     WHERE o.customer_id = $1 AND o.created_at >= $2 \
                     ORDER BY o.created_at, o.id",
                )
                .bind(customer_id)
                .bind(since)
                .fetch_all(&self.pool)
                .await?;
                // A customer has few messages and events: one indexed probe each.
                for row in &messages {
                    let mut message = timeline_message_from_row(row)?;
                    for attempt in sqlx::query(
                        "SELECT attempt, gateway, started_at, outcome, error, delivery, \
                         delivery_at, delivery_error FROM attempts \
                         WHERE outbox_id = $1 ORDER BY attempt",
                    )
                    .bind(row.int("id")?)
                    .fetch_all(&self.pool)
                    .await?
                    {
                        message.attempts.push(attempt_summary_from_row(&attempt)?);
                    }
                    for receipt in sqlx::query(
                        "SELECT attempt, status, error, received_at, applied FROM receipts \
                         WHERE outbox_id = $1 ORDER BY received_at",
                    )
                    .bind(row.int("id")?)
                    .fetch_all(&self.pool)
                    .await?
                    {
                        message.receipts.push(receipt_summary_from_row(&receipt)?);
                    }
                    timeline.messages.push(message);
                }
                for row in sqlx::query(
                    "SELECT customer_id, at, event_source, event_id, rule_id, outcome, reason, \
                     detail FROM decision_notes WHERE customer_id = $1 AND at >= $2 \
                     ORDER BY at, id",
                )
                .bind(customer_id)
                .bind(since)
                .fetch_all(&self.pool)
                .await?
                {
                    timeline.notes.push(note_from_row(&row)?);
                }
                for row in sqlx::query(
                    "SELECT channel, keyword, body, received_at FROM replies \
                     WHERE customer_id = $1 AND received_at >= $2 \
                     ORDER BY received_at",
                )
                .bind(customer_id)
                .bind(since)
                .fetch_all(&self.pool)
                .await?
                {
                    timeline.replies.push(reply_summary_from_row(&row)?);
                }
                let mut keys: Vec<$crate::domain::EventKey> = timeline
                    .messages
                    .iter()
                    .map(|m| m.event.clone())
                    .chain(timeline.notes.iter().map(|n| n.event.clone()))
                    .collect();
                keys.sort_by(|a, b| (&a.source, &a.id).cmp(&(&b.source, &b.id)));
                keys.dedup();
                for key in &keys {
                    let row = sqlx::query(
                        "SELECT source, id, type, time, received_at, data FROM events \
                         WHERE source = $1 AND id = $2",
                    )
                    .bind(&key.source)
                    .bind(&key.id)
                    .fetch_optional(&self.pool)
                    .await?;
                    if let Some(row) = row {
                        timeline.events.push(timeline_event_from_row(&row)?);
                    }
                }
                timeline
                    .events
                    .sort_by_key(|e| (e.time.unwrap_or(e.received_at), e.received_at));
                Ok(timeline)
            }

            async fn outreach_risk(
                &self,
                key: &$crate::domain::IdempotencyKey,
            ) -> Result<Option<serde_json::Value>, $crate::store::StoreError> {
                let raw: Option<Option<String>> =
                    sqlx::query_scalar(
                        "SELECT r.explanation FROM outbox o \
                         LEFT JOIN outbox_risk r ON r.outbox_id = o.id \
                         WHERE o.idempotency_key = $1",
                    )
                        .bind(key.as_str())
                        .fetch_optional(&self.pool)
                        .await?;
                raw.flatten()
                    .map(|text| {
                        serde_json::from_str(&text).map_err(|e| {
                            $crate::store::StoreError::Corrupt(format!("outbox risk: {e}"))
                        })
                    })
                    .transpose()
            }
        }
    };
}
pub(crate) use timeline_store;
