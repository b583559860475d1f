//! [`OutcomeStore`] on SQLite.

use async_trait::async_trait;
use sqlx::Row;

use super::rows::opt_time;
use super::SqliteStore;
use crate::domain::IdempotencyKey;
use crate::store::{from_millis, DecisionOutcome, OutcomeStore, StoreError};

#[async_trait]
impl OutcomeStore for SqliteStore {
    async fn decision_outcomes(
        &self,
        churn_window: chrono::Duration,
    ) -> Result<Vec<DecisionOutcome>, StoreError> {
        let rows = sqlx::query(
            "SELECT o.idempotency_key, o.rule_id, o.customer_id, o.risk,
                    COALESCE(e.time, o.created_at) AS decided_at,
                    s.promised_by, s.delivered_at,
                    (SELECT COUNT(*) FROM orders r
                      WHERE r.customer_id = o.customer_id
                        AND r.placed_at > COALESCE(e.time, o.created_at)
                        AND r.placed_at <= COALESCE(e.time, o.created_at) + ?1) AS orders_after
               FROM outbox o
               LEFT JOIN events e ON e.source = o.event_source AND e.id = o.event_id
               LEFT JOIN shipments s ON s.id = e.shipment_id
              WHERE o.risk IS NOT NULL
              ORDER BY o.id",
        )
        .bind(churn_window.num_milliseconds())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let risk: String = row.try_get("risk")?;
                Ok(DecisionOutcome {
                    key: IdempotencyKey::from_stored(row.try_get("idempotency_key")?),
                    rule_id: row.try_get("rule_id")?,
                    customer_id: row.try_get("customer_id")?,
                    decided_at: from_millis(row.try_get("decided_at")?)?,
                    explanation: serde_json::from_str(&risk)
                        .map_err(|e| StoreError::Corrupt(format!("outbox risk: {e}")))?,
                    promised_by: opt_time(row, "promised_by")?,
                    delivered_at: opt_time(row, "delivered_at")?,
                    orders_after: u32::try_from(row.try_get::<i64, _>("orders_after")?)
                        .unwrap_or(u32::MAX),
                })
            })
            .collect()
    }
}
