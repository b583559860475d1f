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
