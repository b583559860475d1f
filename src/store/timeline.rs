//! What `forewarn explain` reads of the database: one customer's record, opt-outs, events,
//! messages with every attempt, and what was held back.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

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
