//! What `forewarn simulate` reads of the live database — and only reads: the stored events, in
//! the order intake took them, and the outreach the live rules decided for them.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;

/// A stored event as intake recorded it.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// Its place in the order intake took events.
    pub seq: i64,
    /// CloudEvents `source`.
    pub source: String,
    /// CloudEvents `id`.
    pub id: String,
    /// Catalogue type.
    pub event_type: String,
    /// CloudEvents `subject`.
    pub subject: Option<String>,
    /// CloudEvents `time`.
    pub time: Option<DateTime<Utc>>,
    /// `data` as JSON text.
    pub data: String,
    /// When intake took it: the time it was decided as of.
    pub received_at: DateTime<Utc>,
}

/// A message the live rules decided.
#[derive(Debug, Clone, PartialEq)]
pub struct DecidedOutreach {
    /// The event that caused it: `source`, `id`.
    pub event: (String, String),
    /// The rule.
    pub rule_id: String,
    /// The customer.
    pub customer_id: String,
    /// The channel it is (now) on.
    pub channel: String,
    /// Its discount in percent, if it carries one.
    pub offer_percent: Option<u8>,
    /// The order it is about, if any.
    pub order_id: Option<String>,
}

/// A customer's opt-out as the live database holds it: the widest scope per channel, and when
/// it was last widened.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveOptOut {
    /// The customer.
    pub customer_id: String,
    /// The channel.
    pub channel: crate::domain::Channel,
    /// Everything on it, or marketing only.
    pub scope: crate::domain::OptOutScope,
    /// When.
    pub at: DateTime<Utc>,
}

/// Reads for `forewarn simulate`.
#[async_trait]
pub trait ReplayStore: Send + Sync {
    /// Up to `limit` events after `after_seq` that were taken before `until`, in the order
    /// intake took them; events whose data the retention purge removed are left out.
    async fn stored_events(
        &self,
        after_seq: i64,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// The last place in intake's order taken so far (0 when no event is stored): how far a
    /// replay of everything has to go.
    async fn last_seq(&self) -> Result<i64, StoreError>;

    /// Every opt-out the live database holds, oldest first: those that came from a STOP reply,
    /// an unsubscribe link or a provider's report are not events, and a replay applies them
    /// as of their time.
    async fn opt_outs(&self) -> Result<Vec<LiveOptOut>, StoreError>;

    /// How many events the retention purge emptied among those taken in `[from, to)`.
    async fn purged_events(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<u64, StoreError>;

    /// The outreach decided for events taken in `[from, to)` whose data is still stored (the
    /// ones a replay reads), by intake or by an incident's fan-out, in the order queued.
    async fn decided_outreach(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<DecidedOutreach>, StoreError>;
}

/// [`ReplayStore`] for a backend's store type (with a `pool` field), written once in SQL both
/// backends read alike.
macro_rules! replay_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::ReplayStore for $store {
            async fn stored_events(
                &self,
                after_seq: i64,
                until: chrono::DateTime<chrono::Utc>,
                limit: usize,
            ) -> Result<Vec<$crate::store::StoredEvent>, $crate::store::StoreError> {
                use sqlx::Row as _;
                let rows = sqlx::query(
                    "SELECT seq, source, id, type, subject, time, data, received_at \
                     FROM events WHERE seq > $1 AND received_at < $2 AND purged_at IS NULL \
                     ORDER BY seq LIMIT $3",
                )
                .bind(after_seq)
                .bind($crate::store::millis(until))
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|row| {
                        Ok($crate::store::StoredEvent {
                            seq: row.try_get("seq")?,
                            source: row.try_get("source")?,
                            id: row.try_get("id")?,
                            event_type: row.try_get("type")?,
                            subject: row.try_get("subject")?,
                            time: row
                                .try_get::<Option<i64>, _>("time")?
                                .map($crate::store::from_millis)
                                .transpose()?,
                            data: row.try_get("data")?,
                            received_at: $crate::store::from_millis(
                                row.try_get("received_at")?,
                            )?,
                        })
                    })
                    .collect()
            }

            async fn last_seq(&self) -> Result<i64, $crate::store::StoreError> {
                let last: Option<i64> = sqlx::query_scalar("SELECT max(seq) FROM events")
                    .fetch_one(&self.pool)
                    .await?;
                Ok(last.unwrap_or(0))
            }

            async fn opt_outs(
                &self,
            ) -> Result<Vec<$crate::store::LiveOptOut>, $crate::store::StoreError> {
                use sqlx::Row as _;
                let rows = sqlx::query(
                    "SELECT customer_id, channel, scope, at FROM opt_outs ORDER BY at",
                )
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|row| {
                        let (channel, scope) = $crate::store::rows::opt_out_from_row(row)?;
                        Ok($crate::store::LiveOptOut {
                            customer_id: row.try_get("customer_id")?,
                            channel,
                            scope,
                            at: $crate::store::from_millis(row.try_get("at")?)?,
                        })
                    })
                    .collect()
            }

            async fn purged_events(
                &self,
                from: chrono::DateTime<chrono::Utc>,
                to: chrono::DateTime<chrono::Utc>,
            ) -> Result<u64, $crate::store::StoreError> {
                let n: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM events \
                     WHERE received_at >= $1 AND received_at < $2 AND purged_at IS NOT NULL",
                )
                .bind($crate::store::millis(from))
                .bind($crate::store::millis(to))
                .fetch_one(&self.pool)
                .await?;
                Ok(u64::try_from(n).unwrap_or(0))
            }

            async fn decided_outreach(
                &self,
                from: chrono::DateTime<chrono::Utc>,
                to: chrono::DateTime<chrono::Utc>,
            ) -> Result<Vec<$crate::store::DecidedOutreach>, $crate::store::StoreError> {
                use sqlx::Row as _;
                let rows = sqlx::query(
                    // A message is queued when its event is taken, or by the fan-out after it.
                    "SELECT event_source, event_id, rule_id, customer_id, channel, offer, order_id \
                     FROM outbox o WHERE created_at >= $1 AND EXISTS (SELECT 1 FROM events e \
                     WHERE e.source = o.event_source AND e.id = o.event_id \
                     AND e.received_at >= $1 AND e.received_at < $2 AND e.purged_at IS NULL) \
                     ORDER BY id",
                )
                .bind($crate::store::millis(from))
                .bind($crate::store::millis(to))
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|row| {
                        let offer: Option<String> = row.try_get("offer")?;
                        let offer_percent = offer
                            .and_then(|o| serde_json::from_str::<serde_json::Value>(&o).ok())
                            .and_then(|o| o["percent"].as_u64())
                            .and_then(|p| u8::try_from(p).ok());
                        Ok($crate::store::DecidedOutreach {
                            event: (row.try_get("event_source")?, row.try_get("event_id")?),
                            rule_id: row.try_get("rule_id")?,
                            customer_id: row.try_get("customer_id")?,
                            channel: row.try_get("channel")?,
                            offer_percent,
                            order_id: row.try_get("order_id")?,
                        })
                    })
                    .collect()
            }
        }
    };
}
pub(crate) use replay_store;
