//! What receipts and replies need of the database: the attempt a receipt is about, its
//! delivery state moved forward together with the outreach's next channel in one transaction,
//! the customers a phone number belongs to, and replies with the opt-outs they ask for.

use async_trait::async_trait;

use chrono::{DateTime, Utc};

use super::{ChannelSwitch, ClaimedMessage, StoreError};
use crate::domain::{Channel, CustomerDoc, OptOutScope};
use crate::feedback::{
    DeliveryApplied, DeliveryReport, DeliveryStatus, InboundReply, Keyword, MessageRef,
};

/// The attempt a receipt is about, and its outreach as it stands.
#[derive(Debug, Clone)]
pub struct DeliveryTarget {
    /// Its outbox row.
    pub outbox_id: i64,
    /// Its number.
    pub attempt: u32,
    /// How far its delivery got before this receipt (`DeliveryStatus::rank`).
    pub delivery_rank: Option<i64>,
    /// The provider's id the attempt recorded.
    pub provider_id: Option<String>,
    /// The outreach's row now, for rendering its next channel.
    pub message: ClaimedMessage,
    /// The row is still `sent` by this very attempt: the customer was to get this one, so a
    /// failure moves the outreach on. A row already moved on (or re-sent) is left alone.
    pub carries: bool,
}

impl DeliveryTarget {
    /// Whether `status` tells the attempt something new.
    pub fn moved_by(&self, status: DeliveryStatus) -> bool {
        self.delivery_rank.is_none_or(|rank| rank < status.rank())
    }
}

/// What recording an opt-out did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptOutRecorded {
    /// The provider's receipt of it was recorded before: nothing changed.
    Repeat,
    /// The customer was already opted out as widely.
    Unchanged,
    /// A new opt-out, or a wider one.
    Changed,
}

/// A provider's receipt that is not about delivery (an opt-out it reports), kept once.
#[derive(Debug, Clone, Copy)]
pub struct ReceiptRef<'a> {
    /// The gateway.
    pub provider: &'a str,
    /// The provider's id of it.
    pub receipt_id: &'a str,
    /// What it said (`spamreport`, …).
    pub status: &'a str,
    /// The attempt it is about.
    pub target: &'a DeliveryTarget,
}

/// Receipts and replies.
#[async_trait]
pub trait FeedbackStore: Send + Sync {
    /// The latest attempt through `gateway` that `message` names and the provider took.
    async fn delivery_target(
        &self,
        gateway: &str,
        message: &MessageRef,
    ) -> Result<Option<DeliveryTarget>, StoreError>;

    /// Records `report` against `target`, once (a repeat of its `receipt_id` changes nothing),
    /// moving the attempt's state only forward. A failure the attempt did not know yet moves
    /// the outreach to `switch` if given, else fails it — both only if the row still
    /// [`carries`](DeliveryTarget::carries) the attempt — and records what it teaches about
    /// the address; all in one transaction.
    async fn record_delivery(
        &self,
        report: &DeliveryReport,
        target: &DeliveryTarget,
        switch: Option<&ChannelSwitch>,
    ) -> Result<DeliveryApplied, StoreError>;

    /// Records that `customer_id` opted out of `channel` for `scope` (an `all` is never
    /// narrowed), with the provider's `receipt` of it when there is one.
    async fn record_opt_out(
        &self,
        customer_id: &str,
        channel: Channel,
        scope: OptOutScope,
        at: DateTime<Utc>,
        receipt: Option<&ReceiptRef<'_>>,
    ) -> Result<OptOutRecorded, StoreError>;

    /// The customer's record, if known.
    async fn customer(&self, customer_id: &str) -> Result<Option<CustomerDoc>, StoreError>;

    /// The customers whose record has `phone` (as E.164), by id; at most a hundred.
    async fn customers_with_phone(&self, phone: &str) -> Result<Vec<CustomerDoc>, StoreError>;

    /// Keeps `reply` on the timeline of each of `customers` (none: kept unattributed) and
    /// applies what `keyword` asks on its channel — STOP opts them out, START lifts their
    /// opt-out — in one transaction. `false` when the reply was recorded before: nothing changed.
    async fn record_reply(
        &self,
        reply: &InboundReply,
        keyword: Keyword,
        customers: &[String],
    ) -> Result<bool, StoreError>;
}

/// Opts customer `$1` out of everything on channel `$2` at `$3`: what a STOP says, whether the
/// customer replied it or the provider reports it (Twilio's 21610).
pub(crate) const OPT_OUT_OF_ALL: &str = "INSERT INTO opt_outs (customer_id, channel, scope, at) \
     VALUES ($1, $2, 'all', $3) ON CONFLICT (customer_id, channel) \
     DO UPDATE SET scope = 'all', at = excluded.at";

/// [`FeedbackStore`] for a backend's store type (with `pool`, `begin_write()` and
/// `outbox::mark_bounced` beside it), written once in SQL both backends read alike; `$phone` is the backend's expression for a
/// customer's phone number, the one its `customers_by_phone` index is on.
macro_rules! feedback_store {
    ($store:ty, phone = $phone:literal) => {
        #[async_trait::async_trait]
        impl $crate::store::FeedbackStore for $store {
            async fn delivery_target(
                &self,
                gateway: &str,
                message: &$crate::feedback::MessageRef,
            ) -> Result<Option<$crate::store::DeliveryTarget>, $crate::store::StoreError> {
                use $crate::feedback::MessageRef;
                use $crate::store::rows::{claimed_from_row, StoredRow, CLAIMED_COLUMNS};
                let (sql, named) = match message {
                    MessageRef::ProviderId(id) => (
                        "SELECT outbox_id, attempt, delivery_rank, provider_id FROM attempts \
                         WHERE provider_id = $1 AND gateway = $2 \
                         ORDER BY attempt DESC LIMIT 1",
                        id.as_str(),
                    ),
                    MessageRef::Key(key) => (
                        "SELECT a.outbox_id, a.attempt, a.delivery_rank, a.provider_id \
                         FROM outbox o JOIN attempts a ON a.outbox_id = o.id \
                         WHERE o.idempotency_key = $1 AND a.gateway = $2 \
                           AND a.outcome IN ('sent', 'reconciled') \
                         ORDER BY a.attempt DESC LIMIT 1",
                        key.as_str(),
                    ),
                };
                let Some(attempt) = sqlx::query(sql)
                    .bind(named)
                    .bind(gateway)
                    .fetch_optional(&self.pool)
                    .await?
                else {
                    return Ok(None);
                };
                let provider_id = attempt.opt_text("provider_id")?;
                let outbox_id = attempt.int("outbox_id")?;
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {CLAIMED_COLUMNS}, status, provider_id FROM outbox WHERE id = $1"
                )))
                .bind(outbox_id)
                .fetch_one(&self.pool)
                .await?;
                let number = attempt.int("attempt")?;
                Ok(Some($crate::store::DeliveryTarget {
                    outbox_id,
                    attempt: u32::try_from(number).unwrap_or(u32::MAX),
                    delivery_rank: attempt.opt_int("delivery_rank")?,
                    carries: row.text("status")? == "sent"
                        && provider_id.is_some()
                        && row.opt_text("provider_id")? == provider_id
                        && row.int("attempts")? == number,
                    provider_id,
                    message: claimed_from_row(&row)?,
                }))
            }

            async fn record_delivery(
                &self,
                report: &$crate::feedback::DeliveryReport,
                target: &$crate::store::DeliveryTarget,
                switch: Option<&$crate::store::ChannelSwitch>,
            ) -> Result<$crate::feedback::DeliveryApplied, $crate::store::StoreError> {
                use $crate::feedback::DeliveryApplied;
                let at = $crate::store::millis(report.at);
                let mut tx = self.begin_write().await?;
                let fresh = sqlx::query(
                    "INSERT INTO receipts (provider, receipt_id, outbox_id, attempt, status, \
                     error, received_at, applied) VALUES ($1, $2, $3, $4, $5, $6, $7, 1) \
                     ON CONFLICT (provider, receipt_id) DO NOTHING",
                )
                .bind(report.gateway)
                .bind(&report.receipt_id)
                .bind(target.outbox_id)
                .bind(i64::from(target.attempt))
                .bind(report.status.as_str())
                .bind(&report.error)
                .bind(at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if fresh == 0 {
                    return Ok(DeliveryApplied::Repeat);
                }
                let rank = report.status.rank();
                let moved = sqlx::query(
                    "UPDATE attempts SET delivery = $1, delivery_rank = $2, delivery_at = $3, \
                     delivery_error = $4 WHERE outbox_id = $5 AND attempt = $6 \
                     AND (delivery_rank IS NULL OR delivery_rank < $7)",
                )
                .bind(report.status.as_str())
                .bind(rank)
                .bind(at)
                .bind(&report.error)
                .bind(target.outbox_id)
                .bind(i64::from(target.attempt))
                .bind(rank)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if moved == 0 {
                    sqlx::query(
                        "UPDATE receipts SET applied = 0 WHERE provider = $1 AND receipt_id = $2",
                    )
                    .bind(report.gateway)
                    .bind(&report.receipt_id)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    return Ok(DeliveryApplied::Behind);
                }
                let mut applied = DeliveryApplied::Recorded;
                if report.status.is_failure() {
                    if report.effect == Some($crate::domain::AddressEffect::Bounced) {
                        // The backend's own statement, under the lock its intake takes.
                        super::outbox::mark_bounced(&mut tx, target.outbox_id).await?;
                    }
                    if report.effect == Some($crate::domain::AddressEffect::OptedOut) {
                        sqlx::query($crate::store::feedback::OPT_OUT_OF_ALL)
                            .bind(&target.message.customer_id)
                            .bind(report.channel.as_str())
                            .bind(at)
                            .execute(&mut *tx)
                            .await?;
                    }
                    let why = format!(
                        "{} on {}: {}",
                        report.status.as_str(),
                        report.channel,
                        report.error.as_deref().unwrap_or("no reason given")
                    );
                    // Only the row that still carries this attempt moves: one already on its
                    // next channel, or sent again since, is not moved twice.
                    let carries = "id = $1 AND status = 'sent' AND provider_id = $2 \
                                   AND attempts = $3";
                    if let Some(switch) = switch {
                        let content = serde_json::to_string(&switch.content).map_err(|e| {
                            $crate::store::StoreError::Corrupt(format!("outreach content: {e}"))
                        })?;
                        let fallback: Vec<&str> =
                            switch.fallback.iter().map(|c| c.as_str()).collect();
                        // The same rule may already have this entity on that channel for the
                        // customer: that message stands, and this one fails.
                        let moved = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "UPDATE outbox SET channel = $4, content = $5, locale = $6, \
                             fallback = $7, status = 'pending', channel_attempts = 0, \
                             next_attempt_at = $8, updated_at = $8, last_error = $9 \
                             WHERE {carries} AND NOT EXISTS (SELECT 1 FROM outbox other \
                               WHERE other.rule_id = outbox.rule_id \
                                 AND other.entity = outbox.entity \
                                 AND other.customer_id = outbox.customer_id \
                                 AND other.channel = $4)"
                        )))
                        .bind(target.outbox_id)
                        .bind(&target.provider_id)
                        .bind(i64::from(target.attempt))
                        .bind(switch.channel.as_str())
                        .bind(content)
                        .bind(&switch.locale)
                        .bind(serde_json::json!(fallback).to_string())
                        .bind(at)
                        .bind(&why)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                        if moved == 1 {
                            applied = DeliveryApplied::FellBack(switch.channel);
                        }
                    }
                    if applied == DeliveryApplied::Recorded {
                        let failed = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "UPDATE outbox SET status = 'failed', last_error = $4, \
                             updated_at = $5 WHERE {carries}"
                        )))
                        .bind(target.outbox_id)
                        .bind(&target.provider_id)
                        .bind(i64::from(target.attempt))
                        .bind(&why)
                        .bind(at)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                        if failed == 1 {
                            applied = DeliveryApplied::Failed;
                        }
                    }
                }
                tx.commit().await?;
                Ok(applied)
            }

            async fn record_opt_out(
                &self,
                customer_id: &str,
                channel: $crate::domain::Channel,
                scope: $crate::domain::OptOutScope,
                at: chrono::DateTime<chrono::Utc>,
                receipt: Option<&$crate::store::ReceiptRef<'_>>,
            ) -> Result<$crate::store::OptOutRecorded, $crate::store::StoreError> {
                use $crate::store::OptOutRecorded;
                let at = $crate::store::millis(at);
                let mut tx = self.begin_write().await?;
                if let Some(receipt) = receipt {
                    let fresh = sqlx::query(
                        "INSERT INTO receipts (provider, receipt_id, outbox_id, attempt, \
                         status, received_at, applied) VALUES ($1, $2, $3, $4, $5, $6, 1) \
                         ON CONFLICT (provider, receipt_id) DO NOTHING",
                    )
                    .bind(receipt.provider)
                    .bind(receipt.receipt_id)
                    .bind(receipt.target.outbox_id)
                    .bind(i64::from(receipt.target.attempt))
                    .bind(receipt.status)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if fresh == 0 {
                        return Ok(OptOutRecorded::Repeat);
                    }
                }
                let changed = sqlx::query(
                    "INSERT INTO opt_outs (customer_id, channel, scope, at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (customer_id, channel) \
                     DO UPDATE SET scope = excluded.scope, at = excluded.at \
                     WHERE opt_outs.scope = 'marketing' AND excluded.scope = 'all'",
                )
                .bind(customer_id)
                .bind(channel.as_str())
                .bind(scope.as_str())
                .bind(at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                tx.commit().await?;
                Ok(if changed == 0 {
                    OptOutRecorded::Unchanged
                } else {
                    OptOutRecorded::Changed
                })
            }

            async fn customer(
                &self,
                customer_id: &str,
            ) -> Result<Option<$crate::domain::CustomerDoc>, $crate::store::StoreError> {
                let doc: Option<String> =
                    sqlx::query_scalar("SELECT doc FROM customers WHERE id = $1")
                        .bind(customer_id)
                        .fetch_optional(&self.pool)
                        .await?;
                doc.map(|doc| $crate::store::rows::customer_doc(&doc, customer_id))
                    .transpose()
            }

            async fn customers_with_phone(
                &self,
                phone: &str,
            ) -> Result<Vec<$crate::domain::CustomerDoc>, $crate::store::StoreError> {
                use $crate::store::rows::{customer_doc, StoredRow};
                let rows = sqlx::query(concat!(
                    "SELECT id, doc FROM customers WHERE ",
                    $phone,
                    " = $1 ORDER BY id LIMIT 100"
                ))
                .bind(phone)
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|row| customer_doc(&row.text("doc")?, &row.text("id")?))
                    .collect()
            }

            async fn record_reply(
                &self,
                reply: &$crate::feedback::InboundReply,
                keyword: $crate::feedback::Keyword,
                customers: &[String],
            ) -> Result<bool, $crate::store::StoreError> {
                use $crate::feedback::Keyword;
                let at = $crate::store::millis(reply.at);
                let unknown = [String::new()];
                let ids = if customers.is_empty() {
                    &unknown[..]
                } else {
                    customers
                };
                let mut tx = self.begin_write().await?;
                let mut fresh = false;
                for id in ids {
                    fresh |= sqlx::query(
                        "INSERT INTO replies (provider, message_id, customer_id, channel, \
                         keyword, body, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                         ON CONFLICT (provider, message_id, customer_id) DO NOTHING",
                    )
                    .bind(reply.provider)
                    .bind(&reply.message_id)
                    .bind(id)
                    .bind(reply.channel.as_str())
                    .bind(keyword.as_str())
                    .bind(&reply.body)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                        == 1;
                }
                if !fresh {
                    return Ok(false);
                }
                for id in customers {
                    let statement = match keyword {
                        Keyword::Stop => $crate::store::feedback::OPT_OUT_OF_ALL,
                        Keyword::Start => {
                            "DELETE FROM opt_outs WHERE customer_id = $1 AND channel = $2 \
                             AND at <= $3"
                        }
                        Keyword::Help | Keyword::Other => continue,
                    };
                    sqlx::query(statement)
                        .bind(id)
                        .bind(reply.channel.as_str())
                        .bind(at)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(true)
            }
        }
    };
}
pub(crate) use feedback_store;
