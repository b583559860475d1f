//! Reading rows back into domain types, and the statement pieces every aggregate builds with.

use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Sqlite, Transaction};

use super::MAX_BINDS;
use crate::domain::EventKey;
use crate::store::rows::{event_record_from_row, EVENT_COLUMNS};
pub(crate) use crate::store::rows::{
    incident_from_row, order_from_row, parse_customer_id, shipment_from_row, INCIDENT_COLUMNS,
    ORDER_COLUMNS, SHIPMENT_COLUMNS,
};
use crate::store::{EventRecord, StoreError};

/// An event as recorded, if it still is.
pub(super) async fn stored_event(
    pool: &sqlx::SqlitePool,
    event: &EventKey,
) -> Result<Option<EventRecord>, StoreError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE source = ? AND id = ?"
    )))
    .bind(&event.source)
    .bind(&event.id)
    .fetch_optional(pool)
    .await?;
    row.map(|row| event_record_from_row(&row, event))
        .transpose()
}

/// A query that starts with the pairs as a table, `WITH keys(<columns>) AS (VALUES (a, b), …)`,
/// every value bound; the caller goes on with its `SELECT`.
///
/// A list of pairs is joined as a table (`FROM keys CROSS JOIN t WHERE t.x = keys.x AND …`,
/// the keys outermost), never asked with `(x, y) IN (VALUES …)`: SQLite answers that by
/// scanning the whole of `t` and testing each row against the list, so each intake batch and
/// each claim read every event ever received.
pub(super) fn with_keys(
    columns: &str,
    pairs: impl IntoIterator<Item = (String, String)>,
) -> QueryBuilder<Sqlite> {
    let mut q = QueryBuilder::new(format!("WITH keys({columns}) AS (VALUES "));
    let mut list = q.separated(", ");
    for (first, second) in pairs {
        list.push("(")
            .push_bind_unseparated(first)
            .push_unseparated(", ")
            .push_bind_unseparated(second)
            .push_unseparated(")");
    }
    q.push(") ");
    q
}

/// The event keys of `keys` as a `keys(source, id)` table (see [`with_keys`]).
pub(super) fn with_event_keys<'k>(
    keys: impl IntoIterator<Item = &'k crate::domain::EventKey>,
) -> QueryBuilder<Sqlite> {
    with_keys(
        "source, id",
        keys.into_iter().map(|k| (k.source.clone(), k.id.clone())),
    )
}

/// Completes an `IN ` with `(a, b, …)`, every id bound; as many as the caller's chunk holds.
pub(super) fn push_ids(q: &mut QueryBuilder<Sqlite>, ids: &[&str]) {
    q.push("(");
    let mut list = q.separated(", ");
    for id in ids {
        list.push_bind(*id);
    }
    q.push(")");
}

/// `SELECT columns FROM table WHERE key IN (ids…)`, chunked.
pub(super) async fn select_in(
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
pub(super) async fn select_in_where(
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
            "SELECT {columns} FROM {table} WHERE {condition} {key} IN "
        ));
        push_ids(&mut q, chunk);
        rows.extend(q.build().persistent(false).fetch_all(&mut **tx).await?);
    }
    Ok(rows)
}
