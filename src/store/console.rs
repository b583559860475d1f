//! What the console's overview pages read: the incidents on-call has announced lately, and
//! the day's messages by rule, channel and where they stand.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::domain::Incident;

/// How many of one rule's messages on one channel stand where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageTally {
    /// The rule.
    pub rule_id: String,
    /// The channel they are (now) on.
    pub channel: String,
    /// `queued` (due), `held` (waiting for quiet hours, a backoff or pacing), `sending`,
    /// `sent`, `failed` or `cancelled`.
    pub state: &'static str,
    /// How many.
    pub count: u64,
}

/// The states of [`MessageTally::state`], in the order a message goes through them.
pub const TALLY_STATES: [&str; 6] = ["queued", "held", "sending", "sent", "failed", "cancelled"];

/// Reads for the console's overview pages.
#[async_trait]
pub trait ConsoleStore: Send + Sync {
    /// Open incidents first, then the latest changed, at most `limit`.
    async fn recent_incidents(&self, limit: usize) -> Result<Vec<Incident>, StoreError>;

    /// Messages queued since `since`, by rule, channel and state as of `now`.
    async fn message_tallies(
        &self,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<MessageTally>, StoreError>;
}

/// Names the state a message's status and due time put it in.
pub(crate) fn tally_state(status: &str, due_later: bool) -> Result<&'static str, StoreError> {
    Ok(match (status, due_later) {
        ("pending", false) => "queued",
        ("pending", true) => "held",
        ("sending", _) => "sending",
        ("sent", _) => "sent",
        ("failed", _) => "failed",
        ("cancelled", _) => "cancelled",
        (other, _) => return Err(StoreError::Corrupt(format!("outbox status {other:?}"))),
    })
}

/// [`ConsoleStore`] for a backend's store type (with a `pool` field), written once in SQL both
/// backends read alike.
macro_rules! console_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::ConsoleStore for $store {
            async fn recent_incidents(
                &self,
                limit: usize,
            ) -> Result<Vec<$crate::domain::Incident>, $crate::store::StoreError> {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {} FROM incidents \
                     ORDER BY CASE WHEN status = 'open' THEN 0 ELSE 1 END, updated_at DESC \
                     LIMIT $1",
                    $crate::store::rows::INCIDENT_COLUMNS
                )))
                .bind(limit as i64)
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map($crate::store::rows::incident_from_row)
                    .collect()
            }

            async fn message_tallies(
                &self,
                since: chrono::DateTime<chrono::Utc>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<Vec<$crate::store::MessageTally>, $crate::store::StoreError> {
                use sqlx::Row as _;
                let rows = sqlx::query(
                    "SELECT rule_id, channel, status, \
                     CASE WHEN status = 'pending' AND next_attempt_at > $2 THEN 1 ELSE 0 END \
                       AS later, \
                     count(*) AS n \
                     FROM outbox WHERE created_at >= $1 \
                     GROUP BY rule_id, channel, status, later \
                     ORDER BY rule_id, channel",
                )
                .bind($crate::store::millis(since))
                .bind($crate::store::millis(now))
                .fetch_all(&self.pool)
                .await?;
                let mut tallies = Vec::with_capacity(rows.len());
                for row in rows {
                    let status: String = row.try_get("status")?;
                    let later: i32 = row.try_get("later")?;
                    let n: i64 = row.try_get("n")?;
                    tallies.push($crate::store::MessageTally {
                        rule_id: row.try_get("rule_id")?,
                        channel: row.try_get("channel")?,
                        state: $crate::store::console::tally_state(&status, later != 0)?,
                        count: u64::try_from(n).unwrap_or(0),
                    });
                }
                Ok(tallies)
            }
        }
    };
}
pub(crate) use console_store;
