//! The retention purge on PostgreSQL (what goes, and in which order, is in `store::retention`).
//! Each table is purged in its own short transaction; the schedule's lease keeps one purge
//! running at a time across processes.

use sqlx::PgPool;

use super::PgStore;
use crate::store::retention::{note_days, scrubbed};
use crate::store::StoreError;

crate::store::retention::retention_store!(PgStore);

/// Decision notes: counted per day, rule, outcome and reason, then deleted.
async fn notes(pool: &PgPool, cutoff: i64, limit: i64) -> Result<u64, StoreError> {
    let mut tx = pool.begin().await?;
    let notes: Vec<(i64, i64, String, String, String)> = sqlx::query_as(
        "SELECT id, at, rule_id, outcome, reason FROM decision_notes WHERE at < $1 \
         ORDER BY id LIMIT $2",
    )
    .bind(cutoff)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    if notes.is_empty() {
        return Ok(0);
    }
    let days: Vec<_> = note_days(
        notes
            .iter()
            .map(|(_, at, rule, outcome, reason)| (*at, &**rule, &**outcome, &**reason)),
    )?
    .into_iter()
    .collect();
    sqlx::query(
        "INSERT INTO decision_note_days (day, rule_id, outcome, reason, count) \
         SELECT * FROM UNNEST($1::int8[], $2::text[], $3::text[], $4::text[], $5::int8[]) \
         ON CONFLICT (day, rule_id, outcome, reason) \
         DO UPDATE SET count = decision_note_days.count + excluded.count",
    )
    .bind(days.iter().map(|((day, ..), _)| *day).collect::<Vec<_>>())
    .bind(days.iter().map(|((_, r, ..), _)| *r).collect::<Vec<_>>())
    .bind(days.iter().map(|((_, _, o, _), _)| *o).collect::<Vec<_>>())
    .bind(
        days.iter()
            .map(|((.., reason), _)| *reason)
            .collect::<Vec<_>>(),
    )
    .bind(days.iter().map(|(_, n)| *n).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    let deleted = sqlx::query("DELETE FROM decision_notes WHERE id = ANY($1)")
        .bind(notes.iter().map(|(id, ..)| *id).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(deleted)
}

/// Customer records, a window of the table per run in `seq` order, wrapping around: those
/// untouched since `cutoff` keep only the fields that identify nobody.
async fn customers(
    pool: &PgPool,
    cutoff: i64,
    limit: i64,
    after: i64,
) -> Result<(u64, i64), StoreError> {
    let mut tx = pool.begin().await?;
    let rows: Vec<(i64, String, i64)> = sqlx::query_as(
        "SELECT seq, doc, updated_at FROM customers WHERE seq > $1 ORDER BY seq LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    let next = match rows.last() {
        Some((seq, ..)) if rows.len() as i64 == limit => *seq,
        _ => 0,
    };
    let mut purged = 0;
    for (seq, doc, _) in rows.iter().filter(|(_, _, at)| *at < cutoff) {
        let Some(doc) = scrubbed(doc) else { continue };
        sqlx::query("UPDATE customers SET doc = $1 WHERE seq = $2")
            .bind(doc)
            .bind(seq)
            .execute(&mut *tx)
            .await?;
        purged += 1;
    }
    tx.commit().await?;
    Ok((purged, next))
}
