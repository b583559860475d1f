//! The retention purge on SQLite (what goes, and in which order, is in `store::retention`).
//! Each table is purged in its own short transaction, so intake never waits on the database's
//! single writer for longer than one table's batch.

use sqlx::{QueryBuilder, Sqlite, SqlitePool};

use super::SqliteStore;
use crate::store::retention::{note_days, scrubbed};
use crate::store::StoreError;

crate::store::retention::retention_store!(SqliteStore);

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
    let days = note_days(
        notes
            .iter()
            .map(|(_, at, rule, outcome, reason)| (*at, &**rule, &**outcome, &**reason)),
    )?;
    for ((day, rule, outcome, reason), n) in days {
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
    for (rowid, doc, _) in rows.iter().filter(|(_, _, at)| *at < cutoff) {
        let Some(doc) = scrubbed(doc) else { continue };
        sqlx::query("UPDATE customers SET doc = ? WHERE rowid = ?")
            .bind(doc)
            .bind(rowid)
            .execute(&mut *tx)
            .await?;
        purged += 1;
    }
    tx.commit().await?;
    Ok((purged, next))
}
