//! What the relay needs of the database: the outreach events triggers wrote in the same
//! transactions as the changes they describe (`outreach_events`), read in order by one process
//! at a time under a lease, and forgotten once JetStream has them.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;

/// The relay's lease name: one process publishes at a time, so events leave in order.
pub(crate) const RELAY_LEASE: &str = "relay:outreach";

/// One change of a message's state, or an opt-out, as a trigger recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutreachEvent {
    /// Its place in the order of changes; also its CloudEvent id and `Nats-Msg-Id`.
    pub seq: i64,
    /// `queued`, `sent`, `delivered`, `failed`, `cancelled`, `opted_out`, `opted_in`.
    pub status: String,
    /// The outreach's key (none for an opt-out).
    pub key: Option<String>,
    /// Its rule.
    pub rule_id: Option<String>,
    /// The customer.
    pub customer_id: String,
    /// The channel.
    pub channel: String,
    /// Why (a failure's or cancellation's reason, the channel it moved from), or an opt-out's
    /// scope.
    pub detail: Option<String>,
    /// When the change happened.
    pub at: DateTime<Utc>,
}

/// The relay's side of the database.
#[async_trait]
pub trait RelayStore: Send + Sync {
    /// Up to `limit` unpublished events, oldest first, if `owner` holds the relay's lease
    /// (taking or extending it until `until`); `None` while another process holds it.
    async fn outreach_events(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Option<Vec<OutreachEvent>>, StoreError>;

    /// Forgets events JetStream acknowledged.
    async fn forget_outreach_events(&self, seqs: &[i64]) -> Result<(), StoreError>;
}

/// [`RelayStore`] for a backend's store type (with `pool`, `begin_write()` and `lease` beside
/// it), written once; `$forget` deletes the `seq`s of a JSON array bound as `$1`, in the
/// backend's own way.
macro_rules! relay_store {
    ($store:ty, forget = $forget:literal) => {
        #[async_trait::async_trait]
        impl $crate::store::RelayStore for $store {
            async fn outreach_events(
                &self,
                owner: &str,
                now: chrono::DateTime<chrono::Utc>,
                until: chrono::DateTime<chrono::Utc>,
                limit: usize,
            ) -> Result<Option<Vec<$crate::store::OutreachEvent>>, $crate::store::StoreError> {
                use $crate::store::rows::StoredRow;
                let mut tx = self.begin_write().await?;
                let lease = $crate::store::relay::RELAY_LEASE;
                if super::lease::acquire(&mut tx, lease, owner, now, until).await?
                    != super::lease::Acquired::Held
                {
                    tx.commit().await?;
                    return Ok(None);
                }
                let rows = sqlx::query(
                    "SELECT seq, status, key, rule_id, customer_id, channel, detail, at \
                     FROM outreach_events ORDER BY seq LIMIT $1",
                )
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                rows.iter()
                    .map(|row| {
                        Ok($crate::store::OutreachEvent {
                            seq: row.int("seq")?,
                            status: row.text("status")?,
                            key: row.opt_text("key")?,
                            rule_id: row.opt_text("rule_id")?,
                            customer_id: row.text("customer_id")?,
                            channel: row.text("channel")?,
                            detail: row.opt_text("detail")?,
                            at: row.time("at")?,
                        })
                    })
                    .collect::<Result<Vec<_>, $crate::store::StoreError>>()
                    .map(Some)
            }

            async fn forget_outreach_events(
                &self,
                seqs: &[i64],
            ) -> Result<(), $crate::store::StoreError> {
                if seqs.is_empty() {
                    return Ok(());
                }
                let mut tx = self.begin_write().await?;
                sqlx::query($forget)
                    .bind(serde_json::json!(seqs).to_string())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }
        }
    };
}
pub(crate) use relay_store;
