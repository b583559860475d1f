//! The retention purge: personal data older than its time leaves the database, a bounded amount
//! per run, going on where the last run stopped.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use super::{from_millis, StoreError};
use crate::domain::day_number;

/// Where the retention purge stopped in each table it walks in key order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PurgeCursor {
    /// `events.seq` purged up to.
    pub events: i64,
    /// `outbox.id` purged up to.
    pub outbox: i64,
    /// `customers.rowid` (SQLite) or `customers.seq` (PostgreSQL) examined up to; wraps
    /// around, since customers change.
    pub customers: i64,
}

/// What a purge removed. Counts of things, never the things.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PurgeReport {
    /// Events whose `data` was removed.
    pub events: u64,
    /// Messages whose content and errors were removed.
    pub messages: u64,
    /// Decision notes deleted (their daily counts kept).
    pub notes: u64,
    /// Customer records reduced to their non-identifying fields.
    pub customers: u64,
    /// Bad-experience rows, external risk scores and customers' replies deleted.
    pub experiences: u64,
    /// Schedule runs and emissions deleted.
    pub schedule_rows: u64,
    /// A table had more to purge than one run may: the next run goes on.
    pub more: bool,
}

impl PurgeReport {
    /// Everything removed.
    pub fn total(&self) -> u64 {
        self.events
            + self.messages
            + self.notes
            + self.customers
            + self.experiences
            + self.schedule_rows
    }
}

/// The database side of retention.
#[async_trait]
pub trait RetentionStore: Send + Sync {
    /// Removes personal data older than `cutoff`, at most `limit` rows per table, from where
    /// the last run stopped.
    async fn purge(
        &self,
        cutoff: DateTime<Utc>,
        limit: usize,
        cursor: PurgeCursor,
    ) -> Result<(PurgeReport, PurgeCursor), StoreError>;
}

// What every backend's purge does, in SQL both read alike (`$n` placeholders in bind order).

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

/// A customer record with only the fields that identify nobody, or `None` when there is
/// nothing to remove (or it is not a JSON object).
pub(crate) fn scrubbed(doc: &str) -> Option<String> {
    let Ok(serde_json::Value::Object(mut fields)) = serde_json::from_str(doc) else {
        return None;
    };
    let before = fields.len();
    fields.retain(|k, _| KEPT_CUSTOMER_FIELDS.contains(&k.as_str()));
    (fields.len() < before).then(|| serde_json::Value::Object(fields).to_string())
}

/// What a table deleted outright is counted as in [`PurgeReport`].
pub(crate) enum OldRows {
    /// Bad experiences and external risk scores: behaviour about a person.
    Behaviour,
    /// Schedule runs and emissions.
    Schedule,
}

impl OldRows {
    /// Adds `deleted` rows to what `report` counts them as.
    pub(crate) fn count(&self, report: &mut PurgeReport, deleted: u64) {
        match self {
            OldRows::Behaviour => report.experiences += deleted,
            OldRows::Schedule => report.schedule_rows += deleted,
        }
    }
}

/// Tables whose rows older than the cutoff (`$1`) are deleted outright, at most `$2` a run.
/// External scores are behaviour about a person, and worthless after their validity; a reply
/// is what the person wrote.
pub(crate) const OLD_ROWS: [(&str, OldRows); 5] = [
    (
        "DELETE FROM customer_experiences WHERE (customer_id, kind, entity, at) IN \
         (SELECT customer_id, kind, entity, at FROM customer_experiences WHERE at < $1 LIMIT $2)",
        OldRows::Behaviour,
    ),
    (
        "DELETE FROM risk_scores WHERE (event_source, event_id) IN \
         (SELECT event_source, event_id FROM risk_scores WHERE scored_at < $1 LIMIT $2)",
        OldRows::Behaviour,
    ),
    (
        "DELETE FROM replies WHERE (provider, message_id, customer_id) IN \
         (SELECT provider, message_id, customer_id FROM replies WHERE received_at < $1 \
          LIMIT $2)",
        OldRows::Behaviour,
    ),
    (
        "DELETE FROM schedule_emissions WHERE (kind, key) IN \
         (SELECT kind, key FROM schedule_emissions WHERE emitted_at < $1 LIMIT $2)",
        OldRows::Schedule,
    ),
    (
        "DELETE FROM schedule_runs WHERE (schedule, tick) IN \
         (SELECT schedule, tick FROM schedule_runs WHERE tick < $1 LIMIT $2)",
        OldRows::Schedule,
    ),
];

/// A table purged in key order from a cursor: `select` lists `(key, time, status)` after the
/// cursor (`$1`, at most `$2`), `update` scrubs the keys in `($2, $3]` (stamping `$1`), `also`
/// (optional) scrubs what hangs off them in the same range.
pub(crate) struct KeyedPurge {
    pub(crate) select: &'static str,
    pub(crate) update: &'static str,
    pub(crate) also: Option<&'static str>,
}

/// Events in arrival order, up to the first one too young: `data` and the customer id go.
pub(crate) const EVENTS: KeyedPurge = KeyedPurge {
    select: "SELECT seq, received_at, 'final' AS status FROM events WHERE seq > $1 \
             ORDER BY seq LIMIT $2",
    update: "UPDATE events SET data = '{}', customer_id = NULL, purged_at = $1 \
             WHERE seq > $2 AND seq <= $3 AND purged_at IS NULL",
    also: None,
};

/// Messages in queue order, up to the first one too young or not yet final: content and
/// errors go, here and in their attempts.
pub(crate) const MESSAGES: KeyedPurge = KeyedPurge {
    select: "SELECT id, created_at, CASE WHEN status IN ('sent', 'failed', 'cancelled') \
             THEN 'final' ELSE status END AS status FROM outbox WHERE id > $1 \
             ORDER BY id LIMIT $2",
    update: "UPDATE outbox SET content = '{}', last_error = NULL, purged_at = $1 \
             WHERE id > $2 AND id <= $3 AND purged_at IS NULL",
    also: Some(
        // `$1` (the stamp) is unused but bound, as for `update`.
        "UPDATE attempts SET error = NULL WHERE outbox_id > $2 AND outbox_id <= $3 \
         AND CAST($1 AS BIGINT) IS NOT NULL",
    ),
};

impl KeyedPurge {
    /// The last key of `rows` (as `select` lists them) that may be purged: rows are taken in
    /// key order up to the first one too young (or not final).
    pub(crate) fn purgeable_through(rows: &[(i64, i64, String)], cutoff: i64) -> Option<i64> {
        rows.iter()
            .take_while(|(_, at, status)| *at < cutoff && status == "final")
            .last()
            .map(|r| r.0)
    }
}

/// A day's notes of one rule, outcome and reason: `(day, rule, outcome, reason)`.
pub(crate) type NoteDay<'a> = (i64, &'a str, &'a str, &'a str);

/// Decision notes `(at, rule, outcome, reason)` counted per day, rule, outcome and reason.
pub(crate) fn note_days<'a>(
    notes: impl IntoIterator<Item = NoteDay<'a>>,
) -> Result<BTreeMap<NoteDay<'a>, i64>, StoreError> {
    let mut counts = BTreeMap::new();
    for (at, rule, outcome, reason) in notes {
        *counts
            .entry((day_number(from_millis(at)?), rule, outcome, reason))
            .or_default() += 1;
    }
    Ok(counts)
}

/// The more flag: any table had at least `limit` rows to purge this run.
pub(crate) fn has_more(counts: &[u64], limit: i64) -> bool {
    counts.iter().any(|n| *n as i64 >= limit)
}

/// [`RetentionStore`] for a backend's store type, the order of the purge written once: events
/// and messages in key order from the cursor ([`KeyedPurge`]), decision notes, customer records,
/// then the tables deleted outright. The backend's module supplies `notes(pool, cutoff, limit)`
/// and `customers(pool, cutoff, limit, after)`, and the store a `begin_write()`.
macro_rules! retention_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::RetentionStore for $store {
            async fn purge(
                &self,
                cutoff: chrono::DateTime<chrono::Utc>,
                limit: usize,
                cursor: $crate::store::PurgeCursor,
            ) -> Result<
                ($crate::store::PurgeReport, $crate::store::PurgeCursor),
                $crate::store::StoreError,
            > {
                use $crate::store::retention::{has_more, EVENTS, MESSAGES, OLD_ROWS};
                let cutoff = $crate::store::millis(cutoff);
                let limit = limit as i64;
                let mut report = $crate::store::PurgeReport::default();
                let mut next = cursor;
                (report.events, next.events) =
                    self.keyed(&EVENTS, cutoff, limit, cursor.events).await?;
                (report.messages, next.outbox) =
                    self.keyed(&MESSAGES, cutoff, limit, cursor.outbox).await?;
                report.notes = notes(self.writer(), cutoff, limit).await?;
                (report.customers, next.customers) =
                    customers(self.writer(), cutoff, limit, cursor.customers).await?;
                let mut more = has_more(
                    &[
                        report.events,
                        report.messages,
                        report.notes,
                        report.customers,
                    ],
                    limit,
                );
                for (sql, kind) in OLD_ROWS {
                    let deleted = sqlx::query(sql)
                        .bind(cutoff)
                        .bind(limit)
                        .execute(self.writer())
                        .await?
                        .rows_affected();
                    more |= has_more(&[deleted], limit);
                    kind.count(&mut report, deleted);
                }
                report.more = more;
                Ok((report, next))
            }
        }

        impl $store {
            /// Scrubs up to `limit` rows of `table` after `after`; returns how many and the new
            /// cursor.
            async fn keyed(
                &self,
                table: &$crate::store::retention::KeyedPurge,
                cutoff: i64,
                limit: i64,
                after: i64,
            ) -> Result<(u64, i64), $crate::store::StoreError> {
                let mut tx = self.begin_write().await?;
                let rows: Vec<(i64, i64, String)> = sqlx::query_as(table.select)
                    .bind(after)
                    .bind(limit)
                    .fetch_all(&mut *tx)
                    .await?;
                let Some(last) =
                    $crate::store::retention::KeyedPurge::purgeable_through(&rows, cutoff)
                else {
                    return Ok((0, after));
                };
                let stamp = $crate::store::millis(chrono::Utc::now());
                let mut purged = 0;
                for (i, sql) in [Some(table.update), table.also]
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    let done = sqlx::query(sql)
                        .bind(stamp)
                        .bind(after)
                        .bind(last)
                        .execute(&mut *tx)
                        .await?;
                    if i == 0 {
                        purged = done.rows_affected();
                    }
                }
                tx.commit().await?;
                Ok((purged, last))
            }
        }
    };
}
pub(crate) use retention_store;
