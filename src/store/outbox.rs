//! What the dispatcher needs of the database: claims of due messages under a lease, attempts
//! recorded with the status they lead to, and what a fallback channel is rendered from.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{EventRecord, StoreError};
use crate::domain::{
    AddressEffect, Category, Channel, CustomerDoc, EventKey, IdempotencyKey, MessageContent, Offer,
    OptOuts, RiskScores,
};

/// A message the dispatcher claimed.
#[derive(Debug, Clone)]
pub struct ClaimedMessage {
    /// Outbox row id.
    pub id: i64,
    /// Idempotency key.
    pub key: IdempotencyKey,
    /// The deciding rule.
    pub rule_id: String,
    /// Recipient.
    pub customer_id: String,
    /// The channel.
    pub channel: Channel,
    /// Rendered message.
    pub content: MessageContent,
    /// Attempts including this one.
    pub attempt: u32,
    /// A previous attempt was in flight when its dispatcher stopped: it may have been delivered.
    pub ambiguous: bool,
    /// When the row was queued.
    pub created_at: DateTime<Utc>,
    /// Attempts on the current channel, this one included: each channel has its own budget.
    pub channel_attempt: u32,
    /// Channels still to try after this one, in order.
    pub fallback: Vec<Channel>,
    /// Transactional or marketing.
    pub category: Category,
    /// The event that caused it (to re-render on a fallback channel).
    pub event: EventKey,
    /// The discount it carries, kept when the channel changes.
    pub offer: Option<Offer>,
    /// The risk scores it was decided with, for a re-render on another channel.
    pub risk: Option<RiskScores>,
    /// The customer's time zone when it was decided, for quiet hours.
    pub timezone: Option<chrono_tz::Tz>,
    /// The customer's region when it was decided, for quiet hours.
    pub region: Option<String>,
    /// The state its event was about, as it stands at the claim: the dispatcher retracts
    /// the message if its problem is gone (`policy::retraction`).
    pub current: Option<CurrentState>,
}

/// What the store knows now about the things an outreach's event was about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CurrentState {
    /// The event's type.
    pub event_type: String,
    /// Its shipment's status now, if it names one.
    pub shipment_status: Option<String>,
    /// Its incident's status now.
    pub incident_status: Option<String>,
    /// Its order's status now.
    pub order_status: Option<String>,
    /// Whether a parcel of its order exists now.
    pub order_shipped: bool,
}

/// An outreach moving to its next channel, re-rendered there.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelSwitch {
    /// The new channel.
    pub channel: Channel,
    /// The message rendered for it.
    pub content: MessageContent,
    /// The locale it was rendered in.
    pub locale: String,
    /// Channels left after it.
    pub fallback: Vec<Channel>,
}

/// What a fallback channel is rendered from, as stored now.
#[derive(Debug, Clone)]
pub struct FallbackInputs {
    /// The event, as recorded.
    pub event: Option<EventRecord>,
    /// The customer record as it stands.
    pub customer: Option<CustomerDoc>,
    /// The customer's opt-outs.
    pub opt_outs: OptOuts,
}

/// How an attempt ended, as the outbox records it.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptResult {
    /// Delivered to the provider.
    Sent {
        /// The provider's message id.
        provider_id: String,
    },
    /// An earlier, ambiguous attempt turned out to have been delivered.
    Reconciled {
        /// The provider's message id.
        provider_id: String,
    },
    /// Try again at `next_at`.
    Retry {
        /// When.
        next_at: DateTime<Utc>,
        /// Why this attempt failed.
        error: String,
    },
    /// Not attempted (the gateway's circuit is open): back to pending at `next_at`, the
    /// attempt not counted and not recorded.
    Deferred {
        /// When.
        next_at: DateTime<Utc>,
    },
    /// Give up.
    Failed {
        /// Why.
        error: String,
    },
    /// Not sent, and never will be: its problem is gone. Not an attempt at the gateway.
    Cancelled {
        /// Why.
        reason: String,
    },
}

impl AttemptResult {
    /// The name stored in `attempts.outcome` and used as a metric label.
    pub fn as_str(&self) -> &'static str {
        match self {
            AttemptResult::Sent { .. } => "sent",
            AttemptResult::Reconciled { .. } => "reconciled",
            AttemptResult::Retry { .. } => "retry",
            AttemptResult::Failed { .. } => "failed",
            AttemptResult::Deferred { .. } => "deferred",
            AttemptResult::Cancelled { .. } => "cancelled",
        }
    }
}

/// Where an attempt leaves its outbox row, as every backend writes it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Settlement {
    /// The row's next status.
    pub(crate) status: &'static str,
    /// When it is due again (a retry or a deferral), in Unix milliseconds.
    pub(crate) next_attempt_at: Option<i64>,
    /// When it was delivered, in Unix milliseconds.
    pub(crate) sent_at: Option<i64>,
    /// The provider's message id.
    pub(crate) provider_id: Option<String>,
    /// Why it is not sent (yet).
    pub(crate) last_error: Option<String>,
}

impl AttemptResult {
    /// The `(provider_id, error)` an `attempts` row records.
    pub(crate) fn recorded(&self) -> (Option<String>, Option<String>) {
        match self {
            AttemptResult::Sent { provider_id } | AttemptResult::Reconciled { provider_id } => {
                (Some(provider_id.clone()), None)
            }
            AttemptResult::Retry { error, .. } | AttemptResult::Failed { error } => {
                (None, Some(error.clone()))
            }
            AttemptResult::Deferred { .. } | AttemptResult::Cancelled { .. } => (None, None),
        }
    }

    /// Where the attempt, finished at `finished_at`, leaves its row.
    pub(crate) fn settlement(&self, finished_at: DateTime<Utc>) -> Settlement {
        let (status, next_attempt_at, sent_at) = match self {
            AttemptResult::Sent { .. } | AttemptResult::Reconciled { .. } => {
                ("sent", None, Some(super::millis(finished_at)))
            }
            AttemptResult::Retry { next_at, .. } | AttemptResult::Deferred { next_at } => {
                ("pending", Some(super::millis(*next_at)), None)
            }
            AttemptResult::Failed { .. } => ("failed", None, None),
            AttemptResult::Cancelled { .. } => ("cancelled", None, None),
        };
        let (provider_id, error) = self.recorded();
        Settlement {
            status,
            next_attempt_at,
            sent_at,
            provider_id,
            last_error: match self {
                AttemptResult::Cancelled { reason } => Some(reason.clone()),
                _ => error,
            },
        }
    }
}

/// One attempt to record.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    /// Outbox row id.
    pub outbox_id: i64,
    /// Attempt number.
    pub attempt: u32,
    /// Gateway name.
    pub gateway: String,
    /// When the request started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// How it ended.
    pub result: AttemptResult,
    /// The channel attempted.
    pub channel: Channel,
    /// What the attempt taught about the address (an opt-out, tokens gone), recorded with it.
    pub effect: Option<AddressEffect>,
    /// The attempt failed for good and the outreach moves to its next channel, in the same
    /// transaction.
    pub switch: Option<ChannelSwitch>,
}

/// Splits `attempts` into those whose claim is still `held` (the outbox ids a backend found
/// `sending` under the claimed attempt number) and the outbox ids of the rest.
pub(crate) fn split_held<'a>(
    attempts: &'a [AttemptRecord],
    held: &std::collections::HashSet<i64>,
) -> (Vec<&'a AttemptRecord>, Vec<i64>) {
    let (kept, stale): (Vec<&AttemptRecord>, Vec<&AttemptRecord>) =
        attempts.iter().partition(|a| held.contains(&a.outbox_id));
    (kept, stale.iter().map(|a| a.outbox_id).collect())
}

/// Counts of outbox rows by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxCounts {
    /// Waiting for a (re)try.
    pub pending: u64,
    /// Claimed, in flight.
    pub sending: u64,
    /// Delivered.
    pub sent: u64,
    /// Given up.
    pub failed: u64,
    /// Retracted or superseded before they were sent.
    pub cancelled: u64,
}

impl OutboxCounts {
    /// Sets the count of messages in `status` (an unknown status is ignored).
    pub(crate) fn set(&mut self, status: &str, n: u64) {
        match status {
            "pending" => self.pending = n,
            "sending" => self.sending = n,
            "sent" => self.sent = n,
            "failed" => self.failed = n,
            "cancelled" => self.cancelled = n,
            _ => {}
        }
    }
}

/// A message queued but not yet due.
#[derive(Debug, Clone)]
pub struct WaitingMessage {
    /// Idempotency key.
    pub key: IdempotencyKey,
    /// The deciding rule.
    pub rule_id: String,
    /// Recipient.
    pub customer_id: String,
    /// What will be sent.
    pub content: MessageContent,
    /// When it is due.
    pub due: DateTime<Utc>,
}

/// The outbox: the dispatcher's side of the database.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Claims up to `limit` due messages for `lease`: pending rows whose time has come, and
    /// rows whose previous claim expired (marked ambiguous). Higher priority first.
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<ClaimedMessage>, StoreError>;

    /// Keeps claims this process still works on, `(outbox id, attempt)` as claimed, until
    /// `until`: a batch that takes longer than the claim lease (a slow or paced gateway) is not
    /// claimed again, and sent twice, by another dispatcher. A claim that was taken over (its
    /// attempt number moved on) is left alone. Returns the outbox ids it extended: the claims
    /// still this process's.
    async fn extend_claims(
        &self,
        claims: &[(i64, u32)],
        until: DateTime<Utc>,
    ) -> Result<Vec<i64>, StoreError>;

    /// Records attempts and moves their rows to the resulting status, in one transaction.
    ///
    /// Only attempts whose claim is still held are recorded: the row is still `sending` under
    /// the attempt number it was claimed with. A dispatcher that was paused past its lease
    /// finds its rows taken over by another, whose outcome stands; the stale outcomes are left
    /// out, and their outbox ids returned.
    async fn record_attempts(&self, attempts: &[AttemptRecord]) -> Result<Vec<i64>, StoreError>;
}

/// What the outbox answers without changing it: when the next message is due, counts, what
/// waits, and what re-rendering on another channel needs.
#[async_trait]
pub trait OutboxReads: Send + Sync {
    /// The earliest `next_attempt_at` of a pending row, to sleep until then.
    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Outbox rows by status.
    async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError>;

    /// Messages waiting (quiet hours, retries), soonest first, at most `limit`.
    async fn waiting(&self, limit: usize) -> Result<Vec<WaitingMessage>, StoreError>;

    /// What re-rendering an outreach on its next channel needs.
    async fn fallback_inputs(
        &self,
        event: &EventKey,
        customer_id: &str,
    ) -> Result<FallbackInputs, StoreError>;
}

/// [`OutboxReads`] for a backend's store type (with a `pool` field), written once in SQL both
/// backends read alike.
macro_rules! outbox_reads {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::OutboxReads for $store {
            async fn next_due(
                &self,
            ) -> Result<Option<chrono::DateTime<chrono::Utc>>, $crate::store::StoreError> {
                let next: Option<i64> = sqlx::query_scalar(
                    "SELECT MIN(next_attempt_at) FROM outbox WHERE status = 'pending'",
                )
                .fetch_one(&self.pool)
                .await?;
                next.map($crate::store::from_millis).transpose()
            }

            async fn outbox_counts(
                &self,
            ) -> Result<$crate::store::OutboxCounts, $crate::store::StoreError> {
                use sqlx::Row;
                let rows =
                    sqlx::query("SELECT status, COUNT(*) AS n FROM outbox GROUP BY status")
                        .fetch_all(&self.pool)
                        .await?;
                let mut counts = $crate::store::OutboxCounts::default();
                for row in rows {
                    let status: String = row.try_get("status")?;
                    counts.set(&status, u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0));
                }
                Ok(counts)
            }

            async fn waiting(
                &self,
                limit: usize,
            ) -> Result<Vec<$crate::store::WaitingMessage>, $crate::store::StoreError> {
                let rows = sqlx::query(
                    "SELECT idempotency_key, rule_id, customer_id, content, next_attempt_at                      FROM outbox WHERE status = 'pending' ORDER BY next_attempt_at, id LIMIT $1",
                )
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map($crate::store::rows::waiting_from_row).collect()
            }

            async fn fallback_inputs(
                &self,
                event: &$crate::domain::EventKey,
                customer_id: &str,
            ) -> Result<$crate::store::FallbackInputs, $crate::store::StoreError> {
                use $crate::store::rows::opt_out_from_row;
                // The event and the customer as any reader of them gets them.
                let event = $crate::store::IncidentStore::event(self, event).await?;
                let customer = $crate::store::FeedbackStore::customer(self, customer_id).await?;
                let mut opt_outs = $crate::domain::OptOuts::default();
                for row in
                    sqlx::query("SELECT channel, scope FROM opt_outs WHERE customer_id = $1")
                        .bind(customer_id)
                        .fetch_all(&self.pool)
                        .await?
                {
                    let (channel, scope) = opt_out_from_row(&row)?;
                    opt_outs.record(channel, scope);
                }
                Ok($crate::store::FallbackInputs {
                    event,
                    customer,
                    opt_outs,
                })
            }
        }
    };
}
pub(crate) use outbox_reads;
