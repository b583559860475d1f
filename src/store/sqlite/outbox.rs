//! [`OutboxStore`] on SQLite: claims read pending rows in claim order from a partial index,
//! attempts are recorded with one multi-row insert and one `UPDATE … FROM` per batch.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqlitePool;
use sqlx::{QueryBuilder, Row, Sqlite, Transaction};

use super::codes::void_code_of;
use super::rows::with_event_keys;
use super::{SqliteStore, MAX_BINDS};
use crate::domain::{AddressEffect, EventKey};
use crate::store::outbox::split_held;
use crate::store::rows::{claimed_from_row, current_state_from_row, CLAIMED_COLUMNS};
use crate::store::{
    millis, AttemptRecord, AttemptResult, ClaimedMessage, CurrentState, OutboxStore, StoreError,
};

#[async_trait]
impl OutboxStore for SqliteStore {
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<ClaimedMessage>, StoreError> {
        let now_ms = millis(now);
        let until = now_ms + i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2);
        // SET expressions read the row as it was, so `ambiguous` records whether this row was
        // still `sending` (a claim that expired with its outcome unknown). Pending rows and
        // expired claims are chosen apart, the pending ones read in claim order from the
        // `outbox_ready` index: a claim then costs its LIMIT, not the length of the queue (an
        // incident's fan-out queues a million rows at once).
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE outbox
                SET ambiguous = (status = 'sending'),
                    status = 'sending',
                    attempts = attempts + 1,
                    channel_attempts = channel_attempts + 1,
                    claimed_until = ?1,
                    updated_at = ?2
              WHERE id IN (
                    SELECT id FROM (
                        SELECT * FROM (
                            SELECT id, priority, urgency FROM outbox INDEXED BY outbox_ready
                             WHERE status = 'pending' AND next_attempt_at <= ?2
                             ORDER BY priority DESC, urgency DESC, id LIMIT ?3)
                        UNION ALL
                        SELECT * FROM (
                            SELECT id, priority, urgency FROM outbox
                             WHERE status = 'sending' AND claimed_until <= ?2
                             ORDER BY priority DESC, urgency DESC, id LIMIT ?3))
                     ORDER BY priority DESC, urgency DESC, id
                     LIMIT ?3)
          RETURNING {CLAIMED_COLUMNS}"
        )))
        .bind(until)
        .bind(now_ms)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.writer)
        .await?;
        // Sent in the order they were chosen: priority, then the customers most likely to
        // leave (a burst's urgency), then first queued.
        let mut claimed = Vec::with_capacity(rows.len());
        let mut unreadable = Vec::new();
        for row in &rows {
            let read = || -> Result<_, StoreError> {
                let priority: i64 = row.try_get("priority")?;
                let urgency: f64 = row.try_get("urgency")?;
                Ok((priority, urgency, claimed_from_row(row)?))
            };
            match read() {
                Ok(message) => claimed.push(message),
                Err(e) => unreadable.push((row.try_get::<i64, _>("id")?, e.to_string())),
            }
        }
        // A row that cannot be read would fail every claim that picks it and stall the whole
        // outbox behind it: it is failed on its own, with the reason, and the rest go out.
        for (id, error) in unreadable {
            tracing::error!(outbox_id = id, %error, "An outbox row is unreadable; it is marked failed.");
            sqlx::query(
                "UPDATE outbox SET status = 'failed', last_error = ?1, claimed_until = NULL, \
                 updated_at = ?2 WHERE id = ?3",
            )
            .bind(format!("unreadable: {error}"))
            .bind(now_ms)
            .bind(id)
            .execute(&self.writer)
            .await?;
        }
        claimed.sort_by(|(p1, u1, m1), (p2, u2, m2)| {
            p2.cmp(p1).then(u2.total_cmp(u1)).then(m1.id.cmp(&m2.id))
        });
        let mut claimed: Vec<ClaimedMessage> = claimed.into_iter().map(|(_, _, m)| m).collect();
        mark_resolved(&self.pool, &mut claimed).await?;
        Ok(claimed)
    }

    async fn extend_claims(
        &self,
        claims: &[(i64, u32)],
        until: DateTime<Utc>,
    ) -> Result<Vec<i64>, StoreError> {
        let mut extended = Vec::with_capacity(claims.len());
        for chunk in claims.chunks(MAX_BINDS / 2) {
            let mut q = QueryBuilder::<Sqlite>::new("WITH held(id, attempt) AS (");
            q.push_values(chunk, |mut row, (id, attempt)| {
                row.push_bind(*id).push_bind(i64::from(*attempt));
            });
            q.push(") UPDATE outbox SET claimed_until = ")
                .push_bind(millis(until))
                .push(
                    " FROM held WHERE outbox.id = held.id AND outbox.attempts = held.attempt \
                     AND outbox.status = 'sending' RETURNING outbox.id",
                );
            extended.extend(
                q.build_query_scalar::<i64>()
                    .persistent(false)
                    .fetch_all(&self.writer)
                    .await?,
            );
        }
        Ok(extended)
    }

    async fn record_attempts(&self, attempts: &[AttemptRecord]) -> Result<Vec<i64>, StoreError> {
        if attempts.is_empty() {
            return Ok(Vec::new());
        }
        // The write lock up front: the check of who holds each claim stays true until commit.
        let mut tx = self.begin_write().await?;
        let (attempts, taken_over) = still_held(&mut tx, attempts).await?;
        // Deferred sends were never attempted: un-count the claim and put them back.
        let (deferred, attempts): (Vec<&AttemptRecord>, Vec<&AttemptRecord>) =
            attempts.into_iter().partition(|a| {
                matches!(
                    a.result,
                    AttemptResult::Deferred { .. } | AttemptResult::Cancelled { .. }
                )
            });
        for a in &deferred {
            // Cancelled: nothing was attempted either; the row ends with its reason.
            if let AttemptResult::Cancelled { reason } = &a.result {
                sqlx::query(
                    "UPDATE outbox SET status = 'cancelled', last_error = ?1, \
                     attempts = attempts - 1, channel_attempts = channel_attempts - 1, \
                     claimed_until = NULL, ambiguous = 0, updated_at = ?2 WHERE id = ?3",
                )
                .bind(format!("cancelled: {reason}"))
                .bind(millis(a.finished_at))
                .bind(a.outbox_id)
                .execute(&mut *tx)
                .await?;
                void_code_of(&mut tx, a.outbox_id, millis(a.finished_at)).await?;
            }
            if let AttemptResult::Deferred { next_at } = a.result {
                sqlx::query(
                    "UPDATE outbox SET status = 'pending', next_attempt_at = ?1, \
                     attempts = attempts - 1, channel_attempts = channel_attempts - 1, \
                     claimed_until = NULL, ambiguous = 0, updated_at = ?2 WHERE id = ?3",
                )
                .bind(millis(next_at))
                .bind(millis(a.finished_at))
                .bind(a.outbox_id)
                .execute(&mut *tx)
                .await?;
            }
        }
        for chunk in attempts.chunks(MAX_BINDS / 8) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO attempts (outbox_id, attempt, gateway, started_at, finished_at, \
                 outcome, provider_id, error) ",
            );
            insert.push_values(chunk, |mut row, a| {
                let (provider_id, error) = a.result.recorded();
                row.push_bind(a.outbox_id)
                    .push_bind(i64::from(a.attempt))
                    .push_bind(a.gateway.clone())
                    .push_bind(millis(a.started_at))
                    .push_bind(millis(a.finished_at))
                    .push_bind(a.result.as_str())
                    .push_bind(provider_id)
                    .push_bind(error);
            });
            insert.push(" ON CONFLICT (outbox_id, attempt) DO NOTHING");
            insert.build().execute(&mut *tx).await?;

            // One UPDATE … FROM a VALUES list moves every row to its new status.
            let mut update = QueryBuilder::<Sqlite>::new(
                "WITH result(id, status, next_attempt_at, sent_at, provider_id, last_error) AS (",
            );
            update.push_values(chunk, |mut row, a| {
                let settled = a.result.settlement(a.finished_at);
                row.push_bind(a.outbox_id)
                    .push_bind(settled.status)
                    .push_bind(settled.next_attempt_at)
                    .push_bind(settled.sent_at)
                    .push_bind(settled.provider_id)
                    .push_bind(settled.last_error);
            });
            update.push(
                ") UPDATE outbox SET
                     status = result.status,
                     next_attempt_at = COALESCE(result.next_attempt_at, outbox.next_attempt_at),
                     sent_at = COALESCE(result.sent_at, outbox.sent_at),
                     provider_id = COALESCE(result.provider_id, outbox.provider_id),
                     last_error = result.last_error,
                     claimed_until = NULL,
                     ambiguous = 0,
                     updated_at = ",
            );
            update.push_bind(millis(Utc::now()));
            update.push(" FROM result WHERE outbox.id = result.id");
            // The CTE's header names the VALUES columns, which SQLite would call column1….
            update.build().execute(&mut *tx).await?;
        }
        // An outreach moving to its next channel: re-rendered content, a fresh retry budget,
        // due now. The key stays: it names the outreach, whatever carries it.
        for (a, switch) in attempts
            .iter()
            .filter_map(|a| a.switch.as_ref().map(|s| (a, s)))
        {
            let content = serde_json::to_string(&switch.content)
                .map_err(|e| StoreError::Corrupt(format!("outreach content: {e}")))?;
            let fallback: Vec<&str> = switch.fallback.iter().map(|c| c.as_str()).collect();
            let moved = sqlx::query(
                "UPDATE outbox SET channel = ?1, content = ?2, locale = ?3, fallback = ?4, \
                 status = 'pending', channel_attempts = 0, next_attempt_at = ?5, updated_at = ?5 \
                 WHERE id = ?6",
            )
            .bind(switch.channel.as_str())
            .bind(content)
            .bind(&switch.locale)
            .bind(serde_json::json!(fallback).to_string())
            .bind(millis(a.finished_at))
            .bind(a.outbox_id)
            .execute(&mut *tx)
            .await;
            match moved {
                Ok(_) => {}
                // The same rule already queued this entity on that channel for this customer:
                // that message stands; this one stays failed.
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {}
                Err(e) => return Err(e.into()),
            }
        }
        // Push tokens the provider no longer knows leave the customer's record, so no later
        // outreach tries them (and push stops being a usable channel when none is left).
        for (a, tokens) in attempts.iter().filter_map(|a| match &a.effect {
            Some(AddressEffect::Gone(tokens)) => Some((a, tokens)),
            _ => None,
        }) {
            let gone = serde_json::json!(tokens).to_string();
            sqlx::query(
                "UPDATE customers SET doc = json_set(doc, '$.push_tokens', \
                   json((SELECT json_group_array(value) FROM json_each(doc, '$.push_tokens') \
                     WHERE value NOT IN (SELECT value FROM json_each(?1))))) \
                 WHERE id = (SELECT customer_id FROM outbox WHERE id = ?2) \
                   AND json_type(doc, '$.push_tokens') = 'array'",
            )
            .bind(gone)
            .bind(a.outbox_id)
            .execute(&mut *tx)
            .await?;
        }
        for a in attempts
            .iter()
            .filter(|a| a.effect == Some(AddressEffect::Bounced))
        {
            mark_bounced(&mut tx, a.outbox_id).await?;
        }
        // A recipient who refused the channel at the provider (STOP) is opted out of it, in
        // the same transaction as the attempt that learnt it: no later outreach tries it. The
        // channel is the attempt's: the row may already have moved on to its fallback.
        for a in attempts
            .iter()
            .filter(|a| a.effect == Some(AddressEffect::OptedOut))
        {
            sqlx::query(
                "INSERT INTO opt_outs (customer_id, channel, scope, at) \
                 SELECT customer_id, ?3, 'all', ?1 FROM outbox WHERE id = ?2 \
                 ON CONFLICT (customer_id, channel) DO UPDATE SET scope = 'all', at = excluded.at",
            )
            .bind(millis(a.finished_at))
            .bind(a.outbox_id)
            .bind(a.channel.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(taken_over)
    }
}

crate::store::outbox::outbox_reads!(SqliteStore);

/// Marks the address the message of outbox row `id` went to as bounced on its customer's
/// record (`domain::customer::BOUNCED_EMAIL`): no e-mail goes to it again.
pub(super) async fn mark_bounced(
    tx: &mut Transaction<'static, Sqlite>,
    id: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE customers SET doc = json_set(doc, '$.bounced_email', \
           (SELECT json_extract(content, '$.to') FROM outbox WHERE id = ?1)) \
         WHERE id = (SELECT customer_id FROM outbox WHERE id = ?1)",
    )
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Splits `attempts` into those whose claim is still held (the row `sending` under the claimed
/// attempt number) and the outbox ids of the rest.
async fn still_held<'a>(
    tx: &mut Transaction<'static, Sqlite>,
    attempts: &'a [AttemptRecord],
) -> Result<(Vec<&'a AttemptRecord>, Vec<i64>), StoreError> {
    let mut held = HashSet::with_capacity(attempts.len());
    for chunk in attempts.chunks(MAX_BINDS / 2) {
        let mut q = QueryBuilder::<Sqlite>::new("WITH claim(id, attempt) AS (");
        q.push_values(chunk, |mut row, a| {
            row.push_bind(a.outbox_id).push_bind(i64::from(a.attempt));
        });
        q.push(
            ") SELECT outbox.id FROM claim CROSS JOIN outbox \
             WHERE outbox.id = claim.id AND outbox.attempts = claim.attempt \
               AND outbox.status = 'sending'",
        );
        held.extend(
            q.build_query_scalar::<i64>()
                .persistent(false)
                .fetch_all(&mut **tx)
                .await?,
        );
    }
    Ok(split_held(attempts, &held))
}

/// The state the events of `keys` are about, as it stands now (after [`with_event_keys`]).
pub(super) const CURRENT_STATES: &str = "SELECT e.source, e.id, e.type, \
     s.status AS shipment_status, i.status AS incident_status, o.status AS order_status, \
     EXISTS (SELECT 1 FROM shipments p WHERE p.order_id = e.order_id) AS order_shipped \
     FROM keys CROSS JOIN events e \
     LEFT JOIN shipments s ON s.id = e.shipment_id \
     LEFT JOIN incidents i ON i.id = e.incident_id \
     LEFT JOIN orders o ON o.id = e.order_id \
     WHERE e.source = keys.source AND e.id = keys.id";

/// Reads the state each claimed message's event was about, as it stands now.
async fn mark_resolved(
    pool: &SqlitePool,
    claimed: &mut [ClaimedMessage],
) -> Result<(), StoreError> {
    let mut states: HashMap<EventKey, CurrentState> = HashMap::new();
    for chunk in claimed.chunks(MAX_BINDS / 2) {
        let mut q = with_event_keys(chunk.iter().map(|m| &m.event));
        q.push(CURRENT_STATES);
        for row in q.build().persistent(false).fetch_all(pool).await? {
            let (key, state) = current_state_from_row(&row)?;
            states.insert(key, state);
        }
    }
    for message in claimed {
        message.current = states.get(&message.event).cloned();
    }
    Ok(())
}
