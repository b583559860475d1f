//! The retention purge on SQLite. Each table is purged in its own short transaction, so intake
//! never waits on the database's single writer for longer than one table's batch.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Sqlite, SqlitePool};

use super::SqliteStore;
use crate::domain::day_number;
use crate::store::{from_millis, millis, PurgeCursor, PurgeReport, RetentionStore, StoreError};

/// Customer fields that identify nobody, kept when a record is purged.
const KEPT_CUSTOMER_FIELDS: [&str; 8] = [
    "id",
    "locale",
    "timezone",
    "region",
    "segment",
    "channels",
    "consent",
    "lifetime_value",
];

/// What a table deleted outright is counted as in [`PurgeReport`].
enum OldRows {
    /// Bad experiences and external risk scores: behaviour about a person.
    Behaviour,
    /// Schedule runs and emissions.
    Schedule,
}

/// Tables whose rows older than the cutoff (`?1`) are deleted outright, at most `?2` a run.
/// External scores are behaviour about a person, and worthless after their validity.
const OLD_ROWS: [(&str, OldRows); 4] = [
    (
        "DELETE FROM customer_experiences WHERE (customer_id, kind, entity, at) IN \
         (SELECT customer_id, kind, entity, at FROM customer_experiences WHERE at < ?1 LIMIT ?2)",
        OldRows::Behaviour,
    ),
    (
        "DELETE FROM risk_scores WHERE (event_source, event_id) IN \
         (SELECT event_source, event_id FROM risk_scores WHERE scored_at < ?1 LIMIT ?2)",
        OldRows::Behaviour,
    ),
    (
        "DELETE FROM schedule_emissions WHERE (kind, key) IN \
         (SELECT kind, key FROM schedule_emissions WHERE emitted_at < ?1 LIMIT ?2)",
        OldRows::Schedule,
    ),
    (
        "DELETE FROM schedule_runs WHERE (schedule, tick) IN \
         (SELECT schedule, tick FROM schedule_runs WHERE tick < ?1 LIMIT ?2)",
        OldRows::Schedule,
    ),
];

#[async_trait]
impl RetentionStore for SqliteStore {
    async fn purge(
        &self,
        cutoff: DateTime<Utc>,
        limit: usize,
        cursor: PurgeCursor,
    ) -> Result<(PurgeReport, PurgeCursor), StoreError> {
        purge(&self.pool, cutoff, limit, cursor).await
    }
}

/// Purges up to `limit` rows per table older than `cutoff`, from `cursor` on.
async fn purge(
    pool: &SqlitePool,
    cutoff: DateTime<Utc>,
    limit: usize,
    cursor: PurgeCursor,
) -> Result<(PurgeReport, PurgeCursor), StoreError> {
    let cutoff = millis(cutoff);
    let limit = limit as i64;
    let mut report = PurgeReport::default();
    let mut next = cursor;
    (report.events, next.events) = EVENTS.run(pool, cutoff, limit, cursor.events).await?;
    (report.messages, next.outbox) = MESSAGES.run(pool, cutoff, limit, cursor.outbox).await?;
    report.notes = notes(pool, cutoff, limit).await?;
    (report.customers, next.customers) = customers(pool, cutoff, limit, cursor.customers).await?;
    let mut full = [
        report.events,
        report.messages,
        report.notes,
        report.customers,
    ]
    .iter()
    .any(|n| *n as i64 >= limit);
    for (sql, kind) in OLD_ROWS {
        let deleted = delete_old(pool, sql, cutoff, limit).await?;
        full |= deleted as i64 >= limit;
        match kind {
            OldRows::Behaviour => report.experiences += deleted,
            OldRows::Schedule => report.schedule_rows += deleted,
        }
    }
    report.more = full;
    Ok((report, next))
}

/// A table purged in key order from a cursor: `select` lists `(key, time, status)` after the
/// cursor, `update` scrubs the keys in `(?2, ?3]` (stamping `?1`), `also` (optional) scrubs
/// what hangs off them in the same range.
struct KeyedPurge {
    select: &'static str,
    update: &'static str,
    also: Option<&'static str>,
}

/// Events in arrival order, up to the first one too young: `data` and the customer id go.
const EVENTS: KeyedPurge = KeyedPurge {
    select: "SELECT seq, received_at, 'final' FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
    update: "UPDATE events SET data = '{}', customer_id = NULL, purged_at = ?1 \
             WHERE seq > ?2 AND seq <= ?3 AND purged_at IS NULL",
    also: None,
};

/// Messages in queue order, up to the first one too young or not yet final: content and
/// errors go, here and in their attempts.
const MESSAGES: KeyedPurge = KeyedPurge {
    select: "SELECT id, created_at, CASE WHEN status IN ('sent', 'failed', 'cancelled') \
             THEN 'final' ELSE status END FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
    update: "UPDATE outbox SET content = '{}', last_error = NULL, purged_at = ?1 \
             WHERE id > ?2 AND id <= ?3 AND purged_at IS NULL",
    also: Some("UPDATE attempts SET error = NULL WHERE outbox_id > ?2 AND outbox_id <= ?3"),
};

impl KeyedPurge {
    /// Scrubs up to `limit` rows after `after`; returns how many and the new cursor.
    async fn run(
        &self,
        pool: &SqlitePool,
        cutoff: i64,
        limit: i64,
        after: i64,
    ) -> Result<(u64, i64), StoreError> {
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        let rows: Vec<(i64, i64, String)> = sqlx::query_as(self.select)
            .bind(after)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
        let Some(last) = rows
            .iter()
            .take_while(|(_, at, status)| *at < cutoff && status == "final")
            .last()
            .map(|r| r.0)
        else {
            return Ok((0, after));
        };
        let stamp = millis(Utc::now());
        let purged = sqlx::query(self.update)
            .bind(stamp)
            .bind(after)
            .bind(last)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if let Some(also) = self.also {
            sqlx::query(also)
                .bind(stamp)
                .bind(after)
                .bind(last)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok((purged, last))
    }
}

/// Decision notes: counted per day, rule, outcome and reason, then deleted.
async fn notes(pool: &SqlitePool, cutoff: i64, limit: i64) -> Result<u64, StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let notes: Vec<(i64, i64, String, String, String)> = sqlx::query_as(
        "SELECT id, at, rule_id, outcome, reason FROM decision_notes WHERE at < ? \
         ORDER BY id LIMIT ?",
    )
    .bind(cutoff)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    if notes.is_empty() {
        return Ok(0);
    }
    let mut counts: BTreeMap<(i64, &str, &str, &str), i64> = BTreeMap::new();
    for (_, at, rule, outcome, reason) in &notes {
        *counts
            .entry((day_number(from_millis(*at)?), rule, outcome, reason))
            .or_default() += 1;
    }
    for ((day, rule, outcome, reason), n) in counts {
        sqlx::query(
            "INSERT INTO decision_note_days (day, rule_id, outcome, reason, count) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (day, rule_id, outcome, reason) \
             DO UPDATE SET count = count + excluded.count",
        )
        .bind(day)
        .bind(rule)
        .bind(outcome)
        .bind(reason)
        .bind(n)
        .execute(&mut *tx)
        .await?;
    }
    let mut q = QueryBuilder::<Sqlite>::new("DELETE FROM decision_notes WHERE id IN (");
    let mut ids = q.separated(", ");
    for (id, ..) in &notes {
        ids.push_bind(id);
    }
    q.push(")");
    let deleted = q.build().execute(&mut *tx).await?.rows_affected();
    tx.commit().await?;
    Ok(deleted)
}

/// Customer records, a window of the table per run, wrapping around (records change, so no
/// order brings the old ones first): those untouched since `cutoff` keep only the fields that
/// identify nobody.
async fn customers(
    pool: &SqlitePool,
    cutoff: i64,
    limit: i64,
    after: i64,
) -> Result<(u64, i64), StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let rows: Vec<(i64, String, i64)> = sqlx::query_as(
        "SELECT rowid, doc, updated_at FROM customers WHERE rowid > ? ORDER BY rowid LIMIT ?",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    let next = match rows.last() {
        Some((rowid, ..)) if rows.len() as i64 == limit => *rowid,
        _ => 0,
    };
    let mut purged = 0;
    for (rowid, doc, updated_at) in &rows {
        if *updated_at >= cutoff {
            continue;
        }
        let Ok(serde_json::Value::Object(mut fields)) = serde_json::from_str(doc) else {
            continue;
        };
        let before = fields.len();
        fields.retain(|k, _| KEPT_CUSTOMER_FIELDS.contains(&k.as_str()));
        if fields.len() == before {
            continue;
        }
        sqlx::query("UPDATE customers SET doc = ? WHERE rowid = ?")
            .bind(serde_json::Value::Object(fields).to_string())
            .bind(rowid)
            .execute(&mut *tx)
            .await?;
        purged += 1;
    }
    tx.commit().await?;
    Ok((purged, next))
}

/// Runs a `DELETE … LIMIT` statement taking the cutoff and the limit.
async fn delete_old(
    pool: &SqlitePool,
    sql: &'static str,
    cutoff: i64,
    limit: i64,
) -> Result<u64, StoreError> {
    Ok(sqlx::query(sql)
        .bind(cutoff)
        .bind(limit)
        .execute(pool)
        .await?
        .rows_affected())
}
