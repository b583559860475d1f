//! Scored decisions and the facts that settle them: the training data of `forewarn risk fit`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::domain::IdempotencyKey;

/// One scored decision and the facts that settle its outcomes.
#[derive(Debug, Clone)]
pub struct DecisionOutcome {
    /// The outreach's key.
    pub key: IdempotencyKey,
    /// The rule that decided it.
    pub rule_id: String,
    /// The customer.
    pub customer_id: String,
    /// The decision time (the event's time, else when it was queued).
    pub decided_at: DateTime<Utc>,
    /// The stored explanation: features and scores.
    pub explanation: serde_json::Value,
    /// The promise of the shipment the event was about, if any.
    pub promised_by: Option<DateTime<Utc>>,
    /// When that shipment was delivered, if it was.
    pub delivered_at: Option<DateTime<Utc>>,
    /// Orders the customer placed after the decision, within the churn window.
    pub orders_after: u32,
}

/// Reads for `forewarn risk export`.
#[async_trait]
pub trait OutcomeStore: Send + Sync {
    /// Every outreach decided with risk scores, with what became of it since: for
    /// `forewarn risk export`, the training data of `risk fit`.
    async fn decision_outcomes(
        &self,
        churn_window: chrono::Duration,
    ) -> Result<Vec<DecisionOutcome>, StoreError>;
}

/// [`OutcomeStore`] for a backend's store type (with a `pool` field), written once in SQL
/// both backends read alike.
macro_rules! outcome_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::OutcomeStore for $store {
            async fn decision_outcomes(
                &self,
                churn_window: chrono::Duration,
            ) -> Result<Vec<$crate::store::DecisionOutcome>, $crate::store::StoreError> {
                let rows = sqlx::query(
                    "SELECT o.idempotency_key, o.rule_id, o.customer_id, k.explanation AS risk,
                            COALESCE(e.time, o.created_at) AS decided_at,
                            s.promised_by, s.delivered_at,
                            (SELECT COUNT(*) FROM orders r
                              WHERE r.customer_id = o.customer_id
                                AND r.placed_at > COALESCE(e.time, o.created_at)
                                AND r.placed_at <= COALESCE(e.time, o.created_at) + $1)
                                AS orders_after
                       FROM outbox o
                       JOIN outbox_risk k ON k.outbox_id = o.id
                       LEFT JOIN events e ON e.source = o.event_source AND e.id = o.event_id
                       LEFT JOIN shipments s ON s.id = e.shipment_id
                      ORDER BY o.id",
                )
                .bind(churn_window.num_milliseconds())
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map($crate::store::rows::decision_outcome_from_row)
                    .collect()
            }
        }
    };
}
pub(crate) use outcome_store;
