//! Reading rows back into domain types, and the statement pieces every aggregate builds with.

use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite, Transaction};

use super::MAX_BINDS;
use crate::domain::{About, EventKey, EventType};
pub(crate) use crate::store::rows::{
    customer_doc, incident_from_row, opt_entity, opt_out_from_row, opt_time, order_from_row,
    parse_customer_id, parse_entity_id, shipment_from_row,
};
use crate::store::{from_millis, EventRecord, StoreError};

/// An event as recorded, if it still is.
pub(super) async fn stored_event(
    pool: &sqlx::SqlitePool,
    event: &EventKey,
) -> Result<Option<EventRecord>, StoreError> {
    let event_row = sqlx::query(
        "SELECT type, subject, time, customer_id, data, received_at, shipment_id, order_id, \
         incident_id FROM events WHERE source = ? AND id = ?",
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
                about: About {
                    shipment_id: opt_entity(&row, "shipment_id")?,
                    order_id: opt_entity(&row, "order_id")?,
                    incident_id: opt_entity(&row, "incident_id")?,
                },
            })
        })
        .transpose()
}

pub(super) const SHIPMENT_COLUMNS: &str = "id, order_id, customer_id, carrier, tracking_number, \
    tracking_url, promised_by, new_eta, status, region, last_scan_at, delivered_at, \
    exception_kind, updated_at";
pub(super) const ORDER_COLUMNS: &str =
    "id, customer_id, status, total_minor, currency, promised_by, placed_at, updated_at";
pub(super) const INCIDENT_COLUMNS: &str =
    "id, title, severity, status, affected, started_at, resolved_at, updated_at, peak_severity";

/// Completes a `(x, y) IN (VALUES ` list: `(a, b), (c, d), …)`, every value bound.
pub(super) fn push_pairs(
    q: &mut QueryBuilder<Sqlite>,
    pairs: impl IntoIterator<Item = (String, String)>,
) {
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
