//! [`TimelineStore`] on SQLite: one customer's story, read with a few indexed probes.

use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Row, Sqlite};

use super::rows::{customer_doc, opt_out_from_row, opt_time, parse_customer_id, push_pairs};
use super::{SqliteStore, MAX_BINDS};
use crate::domain::{Channel, EventKey, IdempotencyKey};
use crate::store::{
    from_millis, millis, AttemptSummary, CustomerTimeline, DecisionNote, StoreError, TimelineEvent,
    TimelineMessage, TimelineStore,
};

#[async_trait]
impl TimelineStore for SqliteStore {
    async fn timeline(
        &self,
        customer_id: &str,
        since: DateTime<Utc>,
    ) -> Result<CustomerTimeline, StoreError> {
        let since = millis(since);
        let mut timeline = CustomerTimeline {
            customer: sqlx::query_scalar::<_, String>("SELECT doc FROM customers WHERE id = ?")
                .bind(customer_id)
                .fetch_optional(&self.pool)
                .await?
                .map(|doc| customer_doc(&doc, customer_id))
                .transpose()?,
            ..CustomerTimeline::default()
        };
        for row in sqlx::query("SELECT channel, scope, at FROM opt_outs WHERE customer_id = ?")
            .bind(customer_id)
            .fetch_all(&self.pool)
            .await?
        {
            let (channel, scope) = opt_out_from_row(&row)?;
            timeline
                .opt_outs
                .push((channel, scope, from_millis(row.try_get("at")?)?));
        }
        let rows = sqlx::query(
            "SELECT id, idempotency_key, rule_id, channel, status, event_source, event_id, \
             created_at, next_attempt_at, sent_at, content, offer, risk, last_error FROM outbox \
             WHERE customer_id = ?1 AND created_at >= ?2 ORDER BY created_at, id",
        )
        .bind(customer_id)
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        let json = |raw: Option<String>| -> Result<Option<serde_json::Value>, StoreError> {
            raw.map(|t| {
                serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(format!("outbox: {e}")))
            })
            .transpose()
        };
        let mut ids = Vec::new();
        for row in &rows {
            ids.push(row.try_get::<i64, _>("id")?);
            let channel: String = row.try_get("channel")?;
            timeline.messages.push(TimelineMessage {
                key: IdempotencyKey::from_stored(row.try_get("idempotency_key")?),
                rule_id: row.try_get("rule_id")?,
                channel: Channel::from_str(&channel).map_err(StoreError::Corrupt)?,
                status: row.try_get("status")?,
                event: EventKey {
                    source: row.try_get("event_source")?,
                    id: row.try_get("event_id")?,
                },
                created_at: from_millis(row.try_get("created_at")?)?,
                next_attempt_at: from_millis(row.try_get("next_attempt_at")?)?,
                sent_at: opt_time(row, "sent_at")?,
                content: json(row.try_get("content")?)?.unwrap_or_default(),
                offer: json(row.try_get("offer")?)?,
                risk: json(row.try_get("risk")?)?,
                last_error: row.try_get("last_error")?,
                attempts: Vec::new(),
            });
        }
        // A customer has few messages: one indexed probe each.
        for (message, id) in timeline.messages.iter_mut().zip(&ids) {
            for row in sqlx::query(
                "SELECT attempt, gateway, started_at, outcome, error FROM attempts \
                 WHERE outbox_id = ?1",
            )
            .bind(id)
            .fetch_all(&self.pool)
            .await?
            {
                message.attempts.push(AttemptSummary {
                    attempt: u32::try_from(row.try_get::<i64, _>("attempt")?).unwrap_or(u32::MAX),
                    gateway: row.try_get("gateway")?,
                    at: from_millis(row.try_get("started_at")?)?,
                    outcome: row.try_get("outcome")?,
                    error: row.try_get("error")?,
                });
            }
        }
        for message in &mut timeline.messages {
            message.attempts.sort_by_key(|a| a.attempt);
        }
        for row in sqlx::query(
            "SELECT at, event_source, event_id, rule_id, outcome, reason, detail FROM \
             decision_notes WHERE customer_id = ?1 AND at >= ?2 ORDER BY at, id",
        )
        .bind(customer_id)
        .bind(since)
        .fetch_all(&self.pool)
        .await?
        {
            let outcome = match row.try_get::<String, _>("outcome")?.as_str() {
                "skipped" => "skipped",
                "offer_withheld" => "offer_withheld",
                _ => "deferred",
            };
            timeline.notes.push(DecisionNote {
                customer_id: Some(parse_customer_id(customer_id.to_owned())?),
                at: from_millis(row.try_get("at")?)?,
                event: EventKey {
                    source: row.try_get("event_source")?,
                    id: row.try_get("event_id")?,
                },
                rule_id: row.try_get("rule_id")?,
                outcome,
                reason: row.try_get("reason")?,
                detail: row.try_get("detail")?,
            });
        }
        let mut keys: Vec<&EventKey> = timeline
            .messages
            .iter()
            .map(|m| &m.event)
            .chain(timeline.notes.iter().map(|n| &n.event))
            .collect();
        keys.sort_by(|a, b| (&a.source, &a.id).cmp(&(&b.source, &b.id)));
        keys.dedup();
        for chunk in keys.chunks(MAX_BINDS / 2) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "SELECT source, id, type, time, received_at, data FROM events \
                 WHERE (source, id) IN (VALUES ",
            );
            push_pairs(
                &mut q,
                chunk.iter().map(|k| (k.source.clone(), k.id.clone())),
            );
            for row in q.build().fetch_all(&self.pool).await? {
                let data: String = row.try_get("data")?;
                timeline.events.push(TimelineEvent {
                    key: EventKey {
                        source: row.try_get("source")?,
                        id: row.try_get("id")?,
                    },
                    event_type: row.try_get("type")?,
                    time: opt_time(&row, "time")?,
                    received_at: from_millis(row.try_get("received_at")?)?,
                    data: serde_json::from_str(&data)
                        .map_err(|e| StoreError::Corrupt(format!("event data: {e}")))?,
                });
            }
        }
        timeline
            .events
            .sort_by_key(|e| (e.time.unwrap_or(e.received_at), e.received_at));
        Ok(timeline)
    }

    async fn outreach_risk(
        &self,
        key: &IdempotencyKey,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let raw: Option<Option<String>> =
            sqlx::query_scalar("SELECT risk FROM outbox WHERE idempotency_key = ?1")
                .bind(key.as_str())
                .fetch_optional(&self.pool)
                .await?;
        raw.flatten()
            .map(|text| {
                serde_json::from_str(&text)
                    .map_err(|e| StoreError::Corrupt(format!("outbox risk: {e}")))
            })
            .transpose()
    }
}
