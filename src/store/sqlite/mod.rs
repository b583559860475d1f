//! [`Store`] on SQLite: WAL journal, multi-row statements, one transaction per batch.
//!
//! SQLite allows one writer at a time and sqlx runs each connection on a worker thread, so the
//! cost is per statement, not per row: every write here is a multi-row statement built with
//! `QueryBuilder`, chunked below SQLite's bound-parameter limit.

mod incidents;
mod retention;
mod schedules;

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, Transaction};

use super::{
    from_millis, millis, AttemptRecord, AttemptResult, AttemptSummary, Audience, Changes,
    ClaimedMessage, CurrentState, CustomerTimeline, DecisionNote, DecisionOutcome, EventRecord,
    FallbackInputs, FanoutClaim, FanoutStep, IntakeTx, IssuedCode, OutboxCounts, Refs, Snapshot,
    Store, StoreError, TimelineEvent, TimelineMessage, WaitingMessage,
};
use crate::config::DatabaseSettings;
use crate::domain::{
    day_number, AddressEffect, Category, Channel, CustomerDoc, CustomerId, DayCount, Dimension,
    DiscountCode, EntityId, EventKey, EventType, Experience, ExperienceKind, ExternalScore,
    History, IdempotencyKey, Incident, IncidentStatus, Money, Offer, OptOutScope, OptOuts, Order,
    OrderStatus, Outreach, PastOrder, PastOutreach, Redemption, RiskScores, Shipment,
    ShipmentStatus, EXPERIENCE_DAYS, LATE_SHARE_DAYS,
};

/// SQLite's default `SQLITE_MAX_VARIABLE_NUMBER` is 32766; stay clear of it.
const MAX_BINDS: usize = 30_000;

/// Page cache per connection, in KiB (SQLite's default is 2 MiB).
const CACHE_KIB: u32 = 64 * 1024;
/// Memory-mapped reads, in bytes.
const MMAP_BYTES: u64 = 256 * 1024 * 1024;

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Reads the state each claimed message's event was about, as it stands now.
    async fn mark_resolved(&self, claimed: &mut [ClaimedMessage]) -> Result<(), StoreError> {
        let mut states: HashMap<EventKey, CurrentState> = HashMap::new();
        for chunk in claimed.chunks(MAX_BINDS / 2) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "SELECT e.source, e.id, e.type, s.status AS shipment_status, \
                 i.status AS incident_status, o.status AS order_status, \
                 EXISTS (SELECT 1 FROM shipments p \
                     WHERE p.order_id = json_extract(e.data, '$.order_id')) AS order_shipped \
                 FROM events e \
                 LEFT JOIN shipments s ON s.id = json_extract(e.data, '$.shipment_id') \
                 LEFT JOIN incidents i ON i.id = json_extract(e.data, '$.incident_id') \
                 LEFT JOIN orders o ON o.id = json_extract(e.data, '$.order_id') \
                 WHERE (e.source, e.id) IN (VALUES ",
            );
            push_pairs(
                &mut q,
                chunk
                    .iter()
                    .map(|m| (m.event.source.clone(), m.event.id.clone())),
            );
            for row in q.build().persistent(false).fetch_all(&self.pool).await? {
                states.insert(
                    EventKey {
                        source: row.try_get("source")?,
                        id: row.try_get("id")?,
                    },
                    CurrentState {
                        event_type: row.try_get("type")?,
                        shipment_status: row.try_get("shipment_status")?,
                        incident_status: row.try_get("incident_status")?,
                        order_status: row.try_get("order_status")?,
                        order_shipped: row.try_get("order_shipped")?,
                    },
                );
            }
        }
        for message in claimed {
            message.current = states.get(&message.event).cloned();
        }
        Ok(())
    }

    /// Opens (creating if missing) the database file in WAL mode.
    ///
    /// `synchronous = FULL` makes every commit durable before intake acks the batch; at one
    /// commit per batch its cost is small, and an acked event is never lost to a power cut.
    pub async fn connect(settings: &DatabaseSettings) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(&settings.url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(settings.busy_timeout)
            .foreign_keys(true)
            // Keep the hot part of the outbox, events and customers in memory: a page read
            // from the OS costs a syscall on every index probe.
            .pragma("cache_size", format!("-{}", CACHE_KIB))
            .pragma("mmap_size", MMAP_BYTES.to_string());
        let pool = SqlitePoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    /// Applies the migrations in `migrations/sqlite` that have not run yet.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations/sqlite")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    /// The pool, for tools and tests that read state directly.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn begin_intake(&self) -> Result<Box<dyn IntakeTx + '_>, StoreError> {
        // IMMEDIATE takes the write lock up front, so the duplicate check and the writes see
        // the same state even with several forewarn processes on one file.
        Ok(Box::new(SqliteIntakeTx {
            tx: self.pool.begin_with("BEGIN IMMEDIATE").await?,
        }))
    }

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
        let rows = sqlx::query(
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
          RETURNING id, idempotency_key, rule_id, customer_id, channel, content, attempts,
                    ambiguous, created_at, channel_attempts, fallback, event_source,
                    event_id, offer, category, priority, urgency,
                    CAST(json_extract(risk, '$.delay.score') AS REAL) AS risk_delay,
                    CAST(json_extract(risk, '$.churn.score') AS REAL) AS risk_churn,
                    timezone, region",
        )
        .bind(until)
        .bind(now_ms)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
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
            .execute(&self.pool)
            .await?;
        }
        claimed.sort_by(|(p1, u1, m1), (p2, u2, m2)| {
            p2.cmp(p1).then(u2.total_cmp(u1)).then(m1.id.cmp(&m2.id))
        });
        let mut claimed: Vec<ClaimedMessage> = claimed.into_iter().map(|(_, _, m)| m).collect();
        self.mark_resolved(&mut claimed).await?;
        Ok(claimed)
    }

    async fn record_attempts(&self, attempts: &[AttemptRecord]) -> Result<(), StoreError> {
        if attempts.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        // Deferred sends were never attempted: un-count the claim and put them back.
        let (deferred, attempts): (Vec<&AttemptRecord>, Vec<&AttemptRecord>) =
            attempts.iter().partition(|a| {
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
                let (provider_id, error) = match &a.result {
                    AttemptResult::Sent { provider_id }
                    | AttemptResult::Reconciled { provider_id } => {
                        (Some(provider_id.clone()), None)
                    }
                    AttemptResult::Retry { error, .. } | AttemptResult::Failed { error } => {
                        (None, Some(error.clone()))
                    }
                    AttemptResult::Deferred { .. } | AttemptResult::Cancelled { .. } => {
                        (None, None)
                    }
                };
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
                let (status, next, sent_at, provider_id, error) = match &a.result {
                    AttemptResult::Sent { provider_id }
                    | AttemptResult::Reconciled { provider_id } => (
                        "sent",
                        None,
                        Some(millis(a.finished_at)),
                        Some(provider_id.clone()),
                        None,
                    ),
                    AttemptResult::Retry { next_at, error } => (
                        "pending",
                        Some(millis(*next_at)),
                        None,
                        None,
                        Some(error.clone()),
                    ),
                    AttemptResult::Failed { error } => {
                        ("failed", None, None, None, Some(error.clone()))
                    }
                    AttemptResult::Deferred { next_at } => {
                        ("pending", Some(millis(*next_at)), None, None, None)
                    }
                    AttemptResult::Cancelled { reason } => {
                        ("cancelled", None, None, None, Some(reason.clone()))
                    }
                };
                row.push_bind(a.outbox_id)
                    .push_bind(status)
                    .push_bind(next)
                    .push_bind(sent_at)
                    .push_bind(provider_id)
                    .push_bind(error);
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
        Ok(())
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let next: Option<i64> =
            sqlx::query_scalar("SELECT MIN(next_attempt_at) FROM outbox WHERE status = 'pending'")
                .fetch_one(&self.pool)
                .await?;
        next.map(from_millis).transpose()
    }

    async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM outbox GROUP BY status")
            .fetch_all(&self.pool)
            .await?;
        let mut counts = OutboxCounts::default();
        for row in rows {
            let n = u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0);
            match row.try_get::<String, _>("status")?.as_str() {
                "pending" => counts.pending = n,
                "sending" => counts.sending = n,
                "sent" => counts.sent = n,
                "failed" => counts.failed = n,
                "cancelled" => counts.cancelled = n,
                _ => {}
            }
        }
        Ok(counts)
    }

    async fn event_count(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events")
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn fallback_inputs(
        &self,
        event: &EventKey,
        customer_id: &str,
    ) -> Result<FallbackInputs, StoreError> {
        let event = stored_event(&self.pool, event).await?;
        let customer = sqlx::query_scalar::<_, String>("SELECT doc FROM customers WHERE id = ?")
            .bind(customer_id)
            .fetch_optional(&self.pool)
            .await?
            .map(|doc| customer_doc(&doc, customer_id))
            .transpose()?;
        let mut opt_outs = OptOuts::default();
        for row in sqlx::query("SELECT channel, scope FROM opt_outs WHERE customer_id = ?")
            .bind(customer_id)
            .fetch_all(&self.pool)
            .await?
        {
            let (channel, scope) = opt_out_from_row(&row)?;
            opt_outs.record(channel, scope);
        }
        Ok(FallbackInputs {
            event,
            customer,
            opt_outs,
        })
    }

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

    async fn waiting(&self, limit: usize) -> Result<Vec<WaitingMessage>, StoreError> {
        let rows = sqlx::query(
            "SELECT idempotency_key, rule_id, customer_id, content, next_attempt_at FROM outbox \
             WHERE status = 'pending' ORDER BY next_attempt_at, id LIMIT ?1",
        )
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let content: String = row.try_get("content")?;
                Ok(WaitingMessage {
                    key: IdempotencyKey::from_stored(row.try_get("idempotency_key")?),
                    rule_id: row.try_get("rule_id")?,
                    customer_id: row.try_get("customer_id")?,
                    content: serde_json::from_str(&content)
                        .map_err(|e| StoreError::Corrupt(format!("outbox content: {e}")))?,
                    due: from_millis(row.try_get("next_attempt_at")?)?,
                })
            })
            .collect()
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
               LEFT JOIN shipments s ON s.id = json_extract(e.data, '$.shipment_id')
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

    async fn discount_code(&self, code: &DiscountCode) -> Result<Option<IssuedCode>, StoreError> {
        let row = sqlx::query(
            "SELECT code, percent, customer_id, rule_id, idempotency_key, issued_at, expires_at, \
             redeemed_at, redeemed_order_id, voided_at FROM discount_codes WHERE code = ?",
        )
        .bind(code.as_stored())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            let percent: i64 = row.try_get("percent")?;
            Ok(IssuedCode {
                code: DiscountCode::from_stored(row.try_get("code")?),
                percent: u8::try_from(percent)
                    .map_err(|_| StoreError::Corrupt(format!("discount percent {percent}")))?,
                customer_id: row.try_get("customer_id")?,
                rule_id: row.try_get("rule_id")?,
                idempotency_key: row.try_get("idempotency_key")?,
                issued_at: from_millis(row.try_get("issued_at")?)?,
                expires_at: from_millis(row.try_get("expires_at")?)?,
                redeemed_at: opt_time(&row, "redeemed_at")?,
                redeemed_order_id: row.try_get("redeemed_order_id")?,
                voided_at: opt_time(&row, "voided_at")?,
            })
        })
        .transpose()
    }

    async fn redeem_code(
        &self,
        code: &DiscountCode,
        customer_id: Option<&str>,
        order_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Redemption, StoreError> {
        // One statement: two checkouts racing for the same code cannot both win.
        let redeemed = sqlx::query(
            "UPDATE discount_codes SET redeemed_at = ?1, redeemed_order_id = ?2 \
             WHERE code = ?3 AND redeemed_at IS NULL AND voided_at IS NULL AND expires_at > ?1 \
               AND (?4 IS NULL OR customer_id = ?4) \
             RETURNING percent, customer_id",
        )
        .bind(millis(now))
        .bind(order_id)
        .bind(code.as_stored())
        .bind(customer_id)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = redeemed {
            let percent: i64 = row.try_get("percent")?;
            return Ok(Redemption::Redeemed {
                percent: u8::try_from(percent)
                    .map_err(|_| StoreError::Corrupt(format!("discount percent {percent}")))?,
                customer_id: row.try_get("customer_id")?,
            });
        }
        // Not redeemed: say why.
        Ok(match self.discount_code(code).await? {
            None => Redemption::Unknown,
            Some(IssuedCode {
                redeemed_at: Some(at),
                ..
            }) => Redemption::AlreadyRedeemed { at },
            Some(IssuedCode {
                voided_at: Some(at),
                ..
            }) => Redemption::Void { at },
            Some(issued) if issued.expires_at <= now => Redemption::Expired {
                at: issued.expires_at,
            },
            Some(_) => Redemption::OtherCustomer,
        })
    }
}

/// Voids the discount code of the cancelled outbox row `id`, if it carried one and it is unused:
/// the customer never saw it. (The outbox keeps the code as shown, with dashes.)
async fn void_code_of(
    tx: &mut Transaction<'_, Sqlite>,
    id: i64,
    at_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE discount_codes SET voided_at = ?1 \
         WHERE code = (SELECT replace(json_extract(offer, '$.code'), '-', '') FROM outbox \
                       WHERE id = ?2 AND offer IS NOT NULL) \
           AND redeemed_at IS NULL AND voided_at IS NULL",
    )
    .bind(at_ms)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// An event as recorded, if it still is.
pub(super) async fn stored_event(
    pool: &sqlx::SqlitePool,
    event: &EventKey,
) -> Result<Option<EventRecord>, StoreError> {
    let event_row = sqlx::query(
        "SELECT type, subject, time, customer_id, data, received_at FROM events \
             WHERE source = ? AND id = ?",
    )
    .bind(&event.source)
    .bind(&event.id)
    .fetch_optional(pool)
    .await?;
    event_row
        .map(|row| -> Result<EventRecord, StoreError> {
            let raw_type: String = row.try_get("type")?;
            Ok(EventRecord {
                key: event.clone(),
                event_type: EventType::parse(&raw_type)
                    .ok_or_else(|| StoreError::Corrupt(format!("event type {raw_type}")))?,
                subject: row.try_get("subject")?,
                time: row
                    .try_get::<Option<i64>, _>("time")?
                    .map(from_millis)
                    .transpose()?,
                customer_id: row
                    .try_get::<Option<String>, _>("customer_id")?
                    .map(parse_customer_id)
                    .transpose()?,
                data: row.try_get("data")?,
                received_at: from_millis(row.try_get("received_at")?)?,
            })
        })
        .transpose()
}

fn claimed_from_row(row: &SqliteRow) -> Result<ClaimedMessage, StoreError> {
    let channel: String = row.try_get("channel")?;
    let content: String = row.try_get("content")?;
    Ok(ClaimedMessage {
        id: row.try_get("id")?,
        key: IdempotencyKey::from_stored(row.try_get("idempotency_key")?),
        rule_id: row.try_get("rule_id")?,
        customer_id: row.try_get("customer_id")?,
        channel: Channel::from_str(&channel).map_err(StoreError::Corrupt)?,
        content: serde_json::from_str(&content)
            .map_err(|e| StoreError::Corrupt(format!("outbox content: {e}")))?,
        attempt: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
        ambiguous: row.try_get::<i64, _>("ambiguous")? != 0,
        created_at: from_millis(row.try_get("created_at")?)?,
        channel_attempt: u32::try_from(row.try_get::<i64, _>("channel_attempts")?)
            .unwrap_or(u32::MAX),
        fallback: parse_channels(&row.try_get::<String, _>("fallback")?)?,
        category: Category::from_str(&row.try_get::<String, _>("category")?)
            .map_err(StoreError::Corrupt)?,
        event: EventKey {
            source: row.try_get("event_source")?,
            id: row.try_get("event_id")?,
        },
        offer: row
            .try_get::<Option<String>, _>("offer")?
            .map(|o| {
                serde_json::from_str(&o)
                    .map_err(|e| StoreError::Corrupt(format!("outbox offer: {e}")))
            })
            .transpose()?,
        risk: match (
            row.try_get::<Option<f64>, _>("risk_delay")?,
            row.try_get::<Option<f64>, _>("risk_churn")?,
        ) {
            (Some(delay), Some(churn)) => Some(RiskScores { delay, churn }),
            _ => None,
        },
        timezone: row
            .try_get::<Option<String>, _>("timezone")?
            .map(|z| {
                z.parse::<chrono_tz::Tz>()
                    .map_err(|_| StoreError::Corrupt(format!("outbox timezone {z:?}")))
            })
            .transpose()?,
        region: row.try_get("region")?,
        current: None,
    })
}

/// `["email","push"]` as stored in `outbox.fallback`.
fn parse_channels(raw: &str) -> Result<Vec<Channel>, StoreError> {
    let names: Vec<String> = serde_json::from_str(raw)
        .map_err(|e| StoreError::Corrupt(format!("outbox fallback: {e}")))?;
    names
        .iter()
        .map(|n| Channel::from_str(n).map_err(StoreError::Corrupt))
        .collect()
}

/// An intake batch's transaction on SQLite.
struct SqliteIntakeTx {
    tx: Transaction<'static, Sqlite>,
}

impl SqliteIntakeTx {
    /// The risk history of the customers, carriers and regions the batch may score, from the
    /// oldest time any feature window of the batch reaches.
    async fn load_history(
        &mut self,
        refs: &Refs,
        snapshot: &Snapshot,
    ) -> Result<History, StoreError> {
        let mut history = History::default();
        let (Some(earliest), Some(latest)) = (refs.earliest, refs.latest) else {
            return Ok(history);
        };
        let scored_shipments = refs
            .scored_shipments
            .iter()
            .filter_map(|id| snapshot.shipments.get(id));
        let mut customers: Vec<&str> = refs
            .scored_customers
            .iter()
            .map(CustomerId::as_str)
            .collect();
        let mut lanes: Vec<(Dimension, String)> = refs.lanes.iter().cloned().collect();
        for shipment in scored_shipments {
            customers.extend(shipment.customer_id.as_ref().map(CustomerId::as_str));
            lanes.extend(shipment.carrier.clone().map(|c| (Dimension::Carrier, c)));
            lanes.extend(shipment.region.clone().map(|r| (Dimension::Region, r)));
        }
        customers.sort_unstable();
        customers.dedup();
        lanes.sort();
        lanes.dedup();
        if customers.is_empty() {
            return Ok(history);
        }

        let first_day = day_number(earliest) - LATE_SHARE_DAYS;
        for chunk in lanes.chunks(MAX_BINDS / 3) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "SELECT dimension, key, day, settled, late FROM shipment_outcome_days \
                 WHERE day >= ",
            );
            q.push_bind(first_day)
                .push(" AND (dimension, key) IN (VALUES ");
            push_pairs(
                &mut q,
                chunk
                    .iter()
                    .map(|(dimension, key)| (dimension.as_str().to_owned(), key.clone())),
            );
            for row in q.build().persistent(false).fetch_all(&mut *self.tx).await? {
                let dimension: String = row.try_get("dimension")?;
                let dimension = Dimension::parse(&dimension)
                    .ok_or_else(|| StoreError::Corrupt(format!("lane dimension {dimension:?}")))?;
                history
                    .late_days
                    .entry((dimension, row.try_get("key")?))
                    .or_default()
                    .insert(
                        row.try_get("day")?,
                        DayCount {
                            settled: u32::try_from(row.try_get::<i64, _>("settled")?)
                                .unwrap_or(u32::MAX),
                            late: u32::try_from(row.try_get::<i64, _>("late")?).unwrap_or(u32::MAX),
                        },
                    );
            }
        }

        // Nothing older than the longest window (90 days) before the batch's earliest decision.
        let since = millis(earliest - chrono::Duration::days(EXPERIENCE_DAYS));
        for row in select_in_where(
            &mut self.tx,
            "customer_id, kind, entity, at",
            "customer_experiences",
            &format!("at >= {since} AND"),
            "customer_id",
            &customers,
        )
        .await?
        {
            let kind: String = row.try_get("kind")?;
            history.record_experience(
                &parse_customer_id(row.try_get("customer_id")?)?,
                Experience {
                    kind: ExperienceKind::parse(&kind)
                        .ok_or_else(|| StoreError::Corrupt(format!("experience kind {kind:?}")))?,
                    entity: row.try_get("entity")?,
                    at: from_millis(row.try_get("at")?)?,
                },
            );
        }
        for row in select_in(
            &mut self.tx,
            ORDER_COLUMNS,
            "orders",
            "customer_id",
            &customers,
        )
        .await?
        {
            let order = order_from_row(&row)?;
            if let Some(customer) = order.customer_id.clone() {
                history.record_order(&customer, PastOrder::from_order(&order));
            }
        }
        // The last message before the batch's latest decision, per customer: a customer's
        // outbox grows with every outreach, and only the newest one is a feature.
        for chunk in customers.chunks(MAX_BINDS - 1) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "SELECT o.customer_id, o.created_at, o.status, o.updated_at, d.redeemed_at \
                 FROM outbox o LEFT JOIN discount_codes d \
                   ON d.code = replace(json_extract(o.offer, '$.code'), '-', '') \
                 WHERE o.id IN (SELECT (SELECT id FROM outbox i WHERE i.customer_id = c.value \
                   AND i.created_at < ",
            );
            q.push_bind(millis(latest))
                .push(" ORDER BY i.created_at DESC LIMIT 1) FROM json_each(")
                .push_bind(serde_json::json!(chunk).to_string())
                .push(") c)");
            for row in q.build().persistent(false).fetch_all(&mut *self.tx).await? {
                let customer = parse_customer_id(row.try_get("customer_id")?)?;
                let failed = row.try_get::<String, _>("status")? == "failed";
                history
                    .outreach
                    .entry(customer)
                    .or_default()
                    .push(PastOutreach {
                        created_at: from_millis(row.try_get("created_at")?)?,
                        failed_at: if failed {
                            Some(from_millis(row.try_get("updated_at")?)?)
                        } else {
                            None
                        },
                        redeemed_at: opt_time(&row, "redeemed_at")?,
                    });
            }
        }

        if let Some(since) = refs.marketing_since {
            for row in select_in_where(
                &mut self.tx,
                "customer_id, created_at",
                "outbox",
                &format!(
                    "created_at >= {} AND (category = 'marketing' OR offer IS NOT NULL) \
                     AND status NOT IN ('cancelled', 'failed') AND",
                    millis(since)
                ),
                "customer_id",
                &customers,
            )
            .await?
            {
                let customer = parse_customer_id(row.try_get("customer_id")?)?;
                history
                    .marketing
                    .entry(customer)
                    .or_default()
                    .push(from_millis(row.try_get("created_at")?)?);
            }
        }
        let shipments: Vec<&str> = refs.scored_shipments.iter().map(EntityId::as_str).collect();
        let mut seen = HashSet::new();
        for (column, ids) in [("customer_id", &customers), ("shipment_id", &shipments)] {
            for row in select_in(
                &mut self.tx,
                "event_source, event_id, customer_id, shipment_id, order_id, delay, churn, model, scored_at",
                "risk_scores",
                column,
                ids,
            )
            .await?
            {
                let key: (String, String) = (row.try_get("event_source")?, row.try_get("event_id")?);
                if !seen.insert(key) {
                    continue;
                }
                history.external.push(ExternalScore {
                    customer_id: row
                        .try_get::<Option<String>, _>("customer_id")?
                        .map(parse_customer_id)
                        .transpose()?,
                    shipment_id: row
                        .try_get::<Option<String>, _>("shipment_id")?
                        .map(parse_entity_id)
                        .transpose()?,
                    order_id: row
                        .try_get::<Option<String>, _>("order_id")?
                        .map(parse_entity_id)
                        .transpose()?,
                    delay: row.try_get("delay")?,
                    churn: row.try_get("churn")?,
                    model: row.try_get("model")?,
                    scored_at: from_millis(row.try_get("scored_at")?)?,
                });
            }
        }
        Ok(history)
    }
}

#[async_trait]
impl IntakeTx for SqliteIntakeTx {
    async fn record_events(
        &mut self,
        events: &[EventRecord],
    ) -> Result<HashSet<EventKey>, StoreError> {
        // Duplicates are rare, so ask only for them (usually no rows come back) instead of
        // returning every inserted key, then insert the rest.
        let mut known: HashSet<EventKey> = HashSet::new();
        for chunk in events.chunks(MAX_BINDS / 2) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "SELECT source, id FROM events WHERE (source, id) IN (VALUES ",
            );
            push_pairs(
                &mut q,
                chunk
                    .iter()
                    .map(|e| (e.key.source.clone(), e.key.id.clone())),
            );
            for row in q.build().persistent(false).fetch_all(&mut *self.tx).await? {
                known.insert(EventKey {
                    source: row.try_get("source")?,
                    id: row.try_get("id")?,
                });
            }
        }
        let mut fresh = HashSet::with_capacity(events.len());
        let new: Vec<&EventRecord> = events
            .iter()
            .filter(|e| !known.contains(&e.key) && fresh.insert(e.key.clone()))
            .collect();
        for chunk in new.chunks(MAX_BINDS / 8) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO events (source, id, type, subject, time, customer_id, data, \
                 received_at) ",
            );
            insert.push_values(chunk, |mut row, e| {
                row.push_bind(e.key.source.clone())
                    .push_bind(e.key.id.clone())
                    .push_bind(e.event_type.as_str())
                    .push_bind(e.subject.clone())
                    .push_bind(e.time.map(millis))
                    .push_bind(e.customer_id.as_ref().map(|c| c.as_str().to_owned()))
                    .push_bind(e.data.clone())
                    .push_bind(millis(e.received_at));
            });
            insert.build().execute(&mut *self.tx).await?;
        }
        Ok(fresh)
    }

    async fn forget_events(&mut self, keys: &[EventKey]) -> Result<(), StoreError> {
        for key in keys {
            sqlx::query("DELETE FROM events WHERE source = ?1 AND id = ?2")
                .bind(&key.source)
                .bind(&key.id)
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }

    async fn load(&mut self, refs: &Refs) -> Result<Snapshot, StoreError> {
        let mut snapshot = Snapshot::default();
        let shipment_ids: Vec<&str> = refs.shipments.iter().map(EntityId::as_str).collect();
        for row in select_in(
            &mut self.tx,
            SHIPMENT_COLUMNS,
            "shipments",
            "id",
            &shipment_ids,
        )
        .await?
        {
            let shipment = shipment_from_row(&row)?;
            snapshot.shipments.insert(shipment.id.clone(), shipment);
        }
        let order_ids: Vec<&str> = refs.orders.iter().map(EntityId::as_str).collect();
        for row in select_in(&mut self.tx, ORDER_COLUMNS, "orders", "id", &order_ids).await? {
            let order = order_from_row(&row)?;
            snapshot.orders.insert(order.id.clone(), order);
        }
        let incident_ids: Vec<&str> = refs.incidents.iter().map(EntityId::as_str).collect();
        for row in select_in(
            &mut self.tx,
            INCIDENT_COLUMNS,
            "incidents",
            "id",
            &incident_ids,
        )
        .await?
        {
            let incident = incident_from_row(&row)?;
            snapshot.incidents.insert(incident.id.clone(), incident);
        }
        // Every open incident too: it holds marketing back for the customers it affects
        // (`policy::incidents`). Few are open at once; the partial index finds them.
        for row in sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE status = 'open'"
        )))
        .fetch_all(&mut *self.tx)
        .await?
        {
            let incident = incident_from_row(&row)?;
            snapshot
                .incidents
                .entry(incident.id.clone())
                .or_insert(incident);
        }

        // Shipment and order events without a customer still reach the shipment's customer.
        let mut customer_ids: Vec<&str> = refs.customers.iter().map(CustomerId::as_str).collect();
        customer_ids.extend(
            snapshot
                .shipments
                .values()
                .filter_map(|s| s.customer_id.as_ref())
                .chain(
                    snapshot
                        .orders
                        .values()
                        .filter_map(|o| o.customer_id.as_ref()),
                )
                .map(CustomerId::as_str),
        );
        customer_ids.sort_unstable();
        customer_ids.dedup();
        for row in select_in(&mut self.tx, "id, doc", "customers", "id", &customer_ids).await? {
            let id = parse_customer_id(row.try_get("id")?)?;
            let doc: String = row.try_get("doc")?;
            let doc = customer_doc(&doc, id.as_str())?;
            snapshot.customers.insert(id, doc);
        }
        // One read serves both the opt-outs and, with their times, the risk history.
        let mut opt_out_times: HashMap<CustomerId, Vec<DateTime<Utc>>> = HashMap::new();
        for row in select_in(
            &mut self.tx,
            "customer_id, channel, scope, at",
            "opt_outs",
            "customer_id",
            &customer_ids,
        )
        .await?
        {
            let id = parse_customer_id(row.try_get("customer_id")?)?;
            let (channel, scope) = opt_out_from_row(&row)?;
            opt_out_times
                .entry(id.clone())
                .or_default()
                .push(from_millis(row.try_get("at")?)?);
            snapshot
                .opt_outs
                .entry(id)
                .or_insert_with(OptOuts::default)
                .record(channel, scope);
        }
        snapshot.history = self.load_history(refs, &snapshot).await?;
        snapshot.history.opt_outs = opt_out_times;
        Ok(snapshot)
    }

    async fn apply(
        &mut self,
        changes: &Changes,
        now: DateTime<Utc>,
    ) -> Result<HashSet<IdempotencyKey>, StoreError> {
        let tx = &mut self.tx;
        let mut queued = HashSet::with_capacity(changes.outreach.len());
        let now_ms = millis(now);
        incidents::insert_fanouts(tx, &changes.fanouts, now).await?;
        for chunk in changes.customers.chunks(MAX_BINDS / 5) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO customers (id, doc, region, segment, updated_at) ",
            );
            q.push_values(chunk, |mut row, (id, doc)| {
                let object = doc.as_object();
                row.push_bind(id.as_str().to_owned())
                    .push_bind(doc.as_value().to_string())
                    .push_bind(
                        object
                            .get("region")
                            .and_then(|v| v.as_str())
                            .map(str::to_owned),
                    )
                    .push_bind(
                        object
                            .get("segment")
                            .and_then(|v| v.as_str())
                            .map(str::to_owned),
                    )
                    .push_bind(now_ms);
            });
            q.push(
                " ON CONFLICT (id) DO UPDATE SET doc = excluded.doc, region = excluded.region, \
                 segment = excluded.segment, updated_at = excluded.updated_at",
            );
            q.build().execute(&mut **tx).await?;
        }
        for chunk in changes.opt_outs.chunks(MAX_BINDS / 4) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO opt_outs (customer_id, channel, scope, at) ",
            );
            q.push_values(chunk, |mut row, o| {
                row.push_bind(o.customer_id.as_str().to_owned())
                    .push_bind(o.channel.as_str())
                    .push_bind(o.scope.as_str())
                    .push_bind(millis(o.at));
            });
            // The pipeline already merged scopes with what was stored.
            q.push(
                " ON CONFLICT (customer_id, channel) DO UPDATE SET scope = excluded.scope, \
                 at = excluded.at",
            );
            q.build().execute(&mut **tx).await?;
        }
        for chunk in changes.orders.chunks(MAX_BINDS / 8) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT OR REPLACE INTO orders (id, customer_id, status, total_minor, currency, \
                 promised_by, placed_at, updated_at) ",
            );
            q.push_values(chunk, |mut row, o| {
                row.push_bind(o.id.as_str().to_owned())
                    .push_bind(o.customer_id.as_ref().map(|c| c.as_str().to_owned()))
                    .push_bind(o.status.as_str())
                    .push_bind(o.total.as_ref().map(|m| m.minor))
                    .push_bind(o.total.as_ref().map(|m| m.currency.clone()))
                    .push_bind(o.promised_by.map(millis))
                    .push_bind(o.placed_at.map(millis))
                    .push_bind(millis(o.updated_at));
            });
            q.build().execute(&mut **tx).await?;
        }
        for chunk in changes.shipments.chunks(MAX_BINDS / 14) {
            let mut q = QueryBuilder::<Sqlite>::new(format!(
                "INSERT OR REPLACE INTO shipments ({SHIPMENT_COLUMNS}) "
            ));
            q.push_values(chunk, |mut row, s| {
                row.push_bind(s.id.as_str().to_owned())
                    .push_bind(s.order_id.as_ref().map(|o| o.as_str().to_owned()))
                    .push_bind(s.customer_id.as_ref().map(|c| c.as_str().to_owned()))
                    .push_bind(s.carrier.clone())
                    .push_bind(s.tracking_number.clone())
                    .push_bind(s.tracking_url.clone())
                    .push_bind(s.promised_by.map(millis))
                    .push_bind(s.new_eta.map(millis))
                    .push_bind(s.status.as_str())
                    .push_bind(s.region.clone())
                    .push_bind(s.last_scan_at.map(millis))
                    .push_bind(s.delivered_at.map(millis))
                    .push_bind(s.exception_kind.clone())
                    .push_bind(millis(s.updated_at));
            });
            q.build().execute(&mut **tx).await?;
        }
        for chunk in changes.incidents.chunks(MAX_BINDS / 9) {
            let mut q = QueryBuilder::<Sqlite>::new(format!(
                "INSERT OR REPLACE INTO incidents ({INCIDENT_COLUMNS}) "
            ));
            q.push_values(chunk, |mut row, i| {
                row.push_bind(i.id.as_str().to_owned())
                    .push_bind(i.title.clone())
                    .push_bind(i.severity.clone())
                    .push_bind(i.status.as_str())
                    .push_bind(i.affected.to_string())
                    .push_bind(i.started_at.map(millis))
                    .push_bind(i.resolved_at.map(millis))
                    .push_bind(millis(i.updated_at))
                    .push_bind(i.peak_severity.clone());
            });
            q.build().execute(&mut **tx).await?;
        }
        for chunk in changes.experiences.chunks(MAX_BINDS / 4) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO customer_experiences (customer_id, kind, entity, at) ",
            );
            q.push_values(chunk, |mut row, (customer, e)| {
                row.push_bind(customer.as_str().to_owned())
                    .push_bind(e.kind.as_str())
                    .push_bind(e.entity.clone())
                    .push_bind(millis(e.at));
            });
            q.push(" ON CONFLICT DO NOTHING");
            q.build().execute(&mut **tx).await?;
        }
        // One row per (lane, day): several deliveries on one day in a batch add up first, as
        // an upsert may not touch one row twice in a statement.
        let mut settled: std::collections::BTreeMap<(&str, &str, i64), (i64, i64)> =
            std::collections::BTreeMap::new();
        for (dimension, key, day, late) in &changes.settled {
            let count = settled.entry((dimension.as_str(), key, *day)).or_default();
            count.0 += 1;
            count.1 += i64::from(*late);
        }
        let settled: Vec<_> = settled.into_iter().collect();
        for chunk in settled.chunks(MAX_BINDS / 5) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO shipment_outcome_days (dimension, key, day, settled, late) ",
            );
            q.push_values(chunk, |mut row, ((dimension, key, day), (n, late))| {
                row.push_bind(*dimension)
                    .push_bind(key.to_string())
                    .push_bind(*day)
                    .push_bind(*n)
                    .push_bind(*late);
            });
            q.push(
                " ON CONFLICT (dimension, key, day) DO UPDATE SET \
                 settled = settled + excluded.settled, late = late + excluded.late",
            );
            q.build().execute(&mut **tx).await?;
        }
        for chunk in changes.risk_scores.chunks(MAX_BINDS / 9) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO risk_scores (event_source, event_id, customer_id, shipment_id, \
                 order_id, delay, churn, model, scored_at) ",
            );
            q.push_values(chunk, |mut row, r| {
                row.push_bind(r.event.source.clone())
                    .push_bind(r.event.id.clone())
                    .push_bind(r.score.customer_id.as_ref().map(|c| c.as_str().to_owned()))
                    .push_bind(r.score.shipment_id.as_ref().map(|s| s.as_str().to_owned()))
                    .push_bind(r.score.order_id.as_ref().map(|o| o.as_str().to_owned()))
                    .push_bind(r.score.delay)
                    .push_bind(r.score.churn)
                    .push_bind(r.score.model.clone())
                    .push_bind(millis(r.score.scored_at));
            });
            q.push(" ON CONFLICT (event_source, event_id) DO NOTHING");
            q.build().execute(&mut **tx).await?;
        }
        for chunk in changes.outreach.chunks(MAX_BINDS / 24) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO outbox (idempotency_key, rule_id, customer_id, entity, channel, \
                 category, priority, fallback, event_source, event_id, locale, content, status, \
                 attempts, next_attempt_at, created_at, updated_at, offer, risk, urgency, \
                 timezone, region, order_id, incident_id) ",
            );
            let mut encode_error = None;
            q.push_values(chunk, |mut row, o| {
                let content = serde_json::to_string(&o.content).unwrap_or_else(|e| {
                    encode_error = Some(e.to_string());
                    String::new()
                });
                let fallback: Vec<&str> = o.fallback.iter().map(|c| c.as_str()).collect();
                row.push_bind(o.key.as_str().to_owned())
                    .push_bind(o.rule_id.clone())
                    .push_bind(o.customer_id.as_str().to_owned())
                    .push_bind(o.entity.clone())
                    .push_bind(o.content.channel().as_str())
                    .push_bind(o.category.as_str())
                    .push_bind(o.priority)
                    .push_bind(serde_json::json!(fallback).to_string())
                    .push_bind(o.event.source.clone())
                    .push_bind(o.event.id.clone())
                    .push_bind(o.locale.clone())
                    .push_bind(content)
                    .push_bind("pending")
                    .push_bind(0_i64)
                    .push_bind(o.not_before.map_or(now_ms, millis))
                    .push_bind(now_ms)
                    .push_bind(now_ms)
                    .push_bind(o.offer.as_ref().and_then(|f| serde_json::to_string(f).ok()))
                    .push_bind(o.risk.as_ref().map(|r| r.explanation.clone()))
                    .push_bind(o.urgency)
                    .push_bind(o.timezone.clone())
                    .push_bind(o.region.clone())
                    .push_bind(o.order_id.clone())
                    .push_bind(o.incident_id.clone());
            });
            if let Some(error) = encode_error {
                return Err(StoreError::Corrupt(format!("outreach content: {error}")));
            }
            q.push(
                " ON CONFLICT (rule_id, entity, customer_id, channel) DO NOTHING \
                 RETURNING idempotency_key",
            );
            let inserted: Vec<String> = q.build_query_scalar().fetch_all(&mut **tx).await?;
            queued.extend(inserted.into_iter().map(IdempotencyKey::from_stored));
        }
        // Supersession: a message just queued about an order cancels the customer's older,
        // pending, lower-priority ones about the same order — one conversation, the most
        // important word. "Older" by row order, which is event order, even within a batch.
        let newer: Vec<&Outreach> = changes
            .outreach
            .iter()
            .filter(|o| o.order_id.is_some() && queued.contains(&o.key))
            .collect();
        for chunk in newer.chunks(MAX_BINDS / 6) {
            // `newer CROSS JOIN outbox` keeps the batch as the outer loop, each probing the
            // outbox by customer; the other order would scan the whole outbox per batch.
            let mut q = QueryBuilder::<Sqlite>::new(
                "WITH newer(customer_id, order_id, priority, rule_id, entity, channel) AS (",
            );
            q.push_values(chunk, |mut row, o| {
                row.push_bind(o.customer_id.as_str().to_owned())
                    .push_bind(o.order_id.clone())
                    .push_bind(o.priority)
                    .push_bind(o.rule_id.clone())
                    .push_bind(o.entity.clone())
                    .push_bind(o.content.channel().as_str());
            });
            q.push(
                ") SELECT o.id, newer.rule_id FROM newer CROSS JOIN outbox o \
                 WHERE o.customer_id = newer.customer_id AND o.order_id = newer.order_id \
                 AND o.status = 'pending' AND o.priority < newer.priority \
                 AND o.id < (SELECT n.id FROM outbox n WHERE n.rule_id = newer.rule_id \
                     AND n.entity = newer.entity AND n.customer_id = newer.customer_id \
                     AND n.channel = newer.channel)",
            );
            let superseded: Vec<(i64, String)> = q
                .build_query_as()
                .persistent(false)
                .fetch_all(&mut **tx)
                .await?;
            for (id, rule_id) in superseded {
                sqlx::query(
                    "UPDATE outbox SET status = 'cancelled', last_error = ?1, \
                     claimed_until = NULL, updated_at = ?2 WHERE id = ?3 AND status = 'pending'",
                )
                .bind(format!("superseded by rule {rule_id}"))
                .bind(now_ms)
                .bind(id)
                .execute(&mut **tx)
                .await?;
                void_code_of(tx, id, now_ms).await?;
            }
        }
        // Codes for the outreach actually queued (the first of a key, as the outbox kept it):
        // a repeat the outbox ignored issues no code. A clash on the random code itself fails
        // the batch, which is retried with fresh codes.
        let mut unclaimed: HashSet<&IdempotencyKey> = queued.iter().collect();
        let offers: Vec<(&Outreach, &Offer)> = changes
            .outreach
            .iter()
            .filter_map(|o| o.offer.as_ref().map(|offer| (o, offer)))
            .filter(|(o, _)| unclaimed.remove(&o.key))
            .collect();
        for chunk in offers.chunks(MAX_BINDS / 7) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO discount_codes (code, idempotency_key, rule_id, customer_id, \
                 percent, issued_at, expires_at) ",
            );
            q.push_values(chunk, |mut row, (o, offer)| {
                row.push_bind(offer.code.as_stored().to_owned())
                    .push_bind(o.key.as_str().to_owned())
                    .push_bind(o.rule_id.clone())
                    .push_bind(o.customer_id.as_str().to_owned())
                    .push_bind(i64::from(offer.percent))
                    .push_bind(now_ms)
                    .push_bind(millis(offer.expires_at));
            });
            q.build().execute(&mut **tx).await?;
        }
        Ok(queued)
    }

    async fn record_notes(&mut self, notes: &[DecisionNote]) -> Result<(), StoreError> {
        for chunk in notes.chunks(MAX_BINDS / 8) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO decision_notes (customer_id, at, event_source, event_id, rule_id, \
                 outcome, reason, detail) ",
            );
            q.push_values(chunk, |mut row, n| {
                row.push_bind(n.customer_id.as_ref().map(|c| c.as_str().to_owned()))
                    .push_bind(millis(n.at))
                    .push_bind(n.event.source.clone())
                    .push_bind(n.event.id.clone())
                    .push_bind(n.rule_id.clone())
                    .push_bind(n.outcome)
                    .push_bind(n.reason.clone())
                    .push_bind(n.detail.clone());
            });
            q.build().execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    async fn audience_page(
        &mut self,
        audience: &Audience,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<CustomerId>, StoreError> {
        incidents::audience_page(&mut self.tx, audience, after, limit).await
    }

    async fn rank_targets(
        &mut self,
        fanout_id: i64,
        targets: &[(CustomerId, f64)],
    ) -> Result<(), StoreError> {
        incidents::rank_targets(&mut self.tx, fanout_id, targets).await
    }

    async fn take_targets(&mut self, fanout_id: i64, count: usize) -> Result<(), StoreError> {
        incidents::take_targets(&mut self.tx, fanout_id, count).await
    }

    async fn advance_fanout(
        &mut self,
        claim: &FanoutClaim,
        step: &FanoutStep,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        incidents::advance_fanout(&mut self.tx, claim, step, owner, now, lease_until).await
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        self.tx.commit().await?;
        Ok(())
    }
}

const SHIPMENT_COLUMNS: &str = "id, order_id, customer_id, carrier, tracking_number, \
    tracking_url, promised_by, new_eta, status, region, last_scan_at, delivered_at, \
    exception_kind, updated_at";
const ORDER_COLUMNS: &str =
    "id, customer_id, status, total_minor, currency, promised_by, placed_at, updated_at";
const INCIDENT_COLUMNS: &str =
    "id, title, severity, status, affected, started_at, resolved_at, updated_at, peak_severity";

/// Completes a `(x, y) IN (VALUES ` list: `(a, b), (c, d), …)`, every value bound.
fn push_pairs(q: &mut QueryBuilder<Sqlite>, pairs: impl IntoIterator<Item = (String, String)>) {
    let mut list = q.separated(", ");
    for (first, second) in pairs {
        list.push("(")
            .push_bind_unseparated(first)
            .push_unseparated(", ")
            .push_bind_unseparated(second)
            .push_unseparated(")");
    }
    q.push(")");
}

/// `SELECT columns FROM table WHERE key IN (ids…)`, chunked.
async fn select_in(
    tx: &mut Transaction<'static, Sqlite>,
    columns: &str,
    table: &str,
    key: &str,
    ids: &[&str],
) -> Result<Vec<SqliteRow>, StoreError> {
    select_in_where(tx, columns, table, "", key, ids).await
}

/// `SELECT columns FROM table WHERE condition key IN (ids…)`, chunked; `condition` is empty
/// or ends in `AND`.
async fn select_in_where(
    tx: &mut Transaction<'static, Sqlite>,
    columns: &str,
    table: &str,
    condition: &str,
    key: &str,
    ids: &[&str],
) -> Result<Vec<SqliteRow>, StoreError> {
    let mut rows = Vec::new();
    for chunk in ids.chunks(MAX_BINDS) {
        let mut q = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {columns} FROM {table} WHERE {condition} {key} IN ("
        ));
        let mut list = q.separated(", ");
        for id in chunk {
            list.push_bind(*id);
        }
        q.push(")");
        rows.extend(q.build().persistent(false).fetch_all(&mut **tx).await?);
    }
    Ok(rows)
}

/// A stored customer record (`customers.doc`).
fn customer_doc(raw: &str, id: &str) -> Result<CustomerDoc, StoreError> {
    serde_json::from_str(raw)
        .map(CustomerDoc::from_object)
        .map_err(|e| StoreError::Corrupt(format!("customer {id}: {e}")))
}

/// One `opt_outs` row's channel and scope.
fn opt_out_from_row(row: &SqliteRow) -> Result<(Channel, OptOutScope), StoreError> {
    let channel: String = row.try_get("channel")?;
    let scope = match row.try_get::<String, _>("scope")?.as_str() {
        "all" => OptOutScope::All,
        _ => OptOutScope::Marketing,
    };
    Ok((
        Channel::from_str(&channel).map_err(StoreError::Corrupt)?,
        scope,
    ))
}

fn parse_customer_id(raw: String) -> Result<CustomerId, StoreError> {
    CustomerId::parse(&raw).map_err(|e| StoreError::Corrupt(format!("customer id {raw:?}: {e}")))
}

fn parse_entity_id(raw: String) -> Result<EntityId, StoreError> {
    EntityId::parse(&raw).map_err(|e| StoreError::Corrupt(format!("id {raw:?}: {e}")))
}

fn opt_time(row: &SqliteRow, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    row.try_get::<Option<i64>, _>(column)?
        .map(from_millis)
        .transpose()
}

fn order_from_row(row: &SqliteRow) -> Result<Order, StoreError> {
    let status: String = row.try_get("status")?;
    let total = match (
        row.try_get::<Option<i64>, _>("total_minor")?,
        row.try_get::<Option<String>, _>("currency")?,
    ) {
        (Some(minor), Some(currency)) => Some(Money { minor, currency }),
        _ => None,
    };
    Ok(Order {
        id: parse_entity_id(row.try_get("id")?)?,
        customer_id: row
            .try_get::<Option<String>, _>("customer_id")?
            .map(parse_customer_id)
            .transpose()?,
        status: OrderStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("order status {status:?}")))?,
        total,
        promised_by: opt_time(row, "promised_by")?,
        placed_at: opt_time(row, "placed_at")?,
        updated_at: from_millis(row.try_get("updated_at")?)?,
    })
}

fn shipment_from_row(row: &SqliteRow) -> Result<Shipment, StoreError> {
    let status: String = row.try_get("status")?;
    Ok(Shipment {
        id: parse_entity_id(row.try_get("id")?)?,
        order_id: row
            .try_get::<Option<String>, _>("order_id")?
            .map(parse_entity_id)
            .transpose()?,
        customer_id: row
            .try_get::<Option<String>, _>("customer_id")?
            .map(parse_customer_id)
            .transpose()?,
        carrier: row.try_get("carrier")?,
        tracking_number: row.try_get("tracking_number")?,
        tracking_url: row.try_get("tracking_url")?,
        promised_by: opt_time(row, "promised_by")?,
        new_eta: opt_time(row, "new_eta")?,
        status: ShipmentStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("shipment status {status:?}")))?,
        region: row.try_get("region")?,
        last_scan_at: opt_time(row, "last_scan_at")?,
        delivered_at: opt_time(row, "delivered_at")?,
        exception_kind: row.try_get("exception_kind")?,
        updated_at: from_millis(row.try_get("updated_at")?)?,
    })
}

fn incident_from_row(row: &SqliteRow) -> Result<Incident, StoreError> {
    let status: String = row.try_get("status")?;
    let affected: String = row.try_get("affected")?;
    Ok(Incident {
        id: parse_entity_id(row.try_get("id")?)?,
        title: row.try_get("title")?,
        severity: row.try_get("severity")?,
        status: IncidentStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("incident status {status:?}")))?,
        affected: serde_json::from_str(&affected)
            .map_err(|e| StoreError::Corrupt(format!("incident affected: {e}")))?,
        started_at: opt_time(row, "started_at")?,
        resolved_at: opt_time(row, "resolved_at")?,
        updated_at: from_millis(row.try_get("updated_at")?)?,
        peak_severity: row.try_get("peak_severity")?,
    })
}
