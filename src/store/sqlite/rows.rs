//! Reading rows back into domain types, and the statement pieces every aggregate builds with.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite, Transaction};

use super::MAX_BINDS;
use crate::domain::{
    About, Channel, CustomerDoc, CustomerId, EntityId, EventKey, EventType, Incident,
    IncidentStatus, Money, OptOutScope, Order, OrderStatus, Shipment, ShipmentStatus,
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

/// A stored customer record (`customers.doc`).
pub(super) fn customer_doc(raw: &str, id: &str) -> Result<CustomerDoc, StoreError> {
    serde_json::from_str(raw)
        .map(CustomerDoc::from_object)
        .map_err(|e| StoreError::Corrupt(format!("customer {id}: {e}")))
}

/// One `opt_outs` row's channel and scope.
pub(super) fn opt_out_from_row(row: &SqliteRow) -> Result<(Channel, OptOutScope), StoreError> {
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

pub(super) fn parse_customer_id(raw: String) -> Result<CustomerId, StoreError> {
    CustomerId::parse(&raw).map_err(|e| StoreError::Corrupt(format!("customer id {raw:?}: {e}")))
}

pub(super) fn parse_entity_id(raw: String) -> Result<EntityId, StoreError> {
    EntityId::parse(&raw).map_err(|e| StoreError::Corrupt(format!("id {raw:?}: {e}")))
}

/// An optional id column.
pub(super) fn opt_entity(row: &SqliteRow, column: &str) -> Result<Option<EntityId>, StoreError> {
    row.try_get::<Option<String>, _>(column)?
        .map(parse_entity_id)
        .transpose()
}

pub(super) fn opt_time(row: &SqliteRow, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    row.try_get::<Option<i64>, _>(column)?
        .map(from_millis)
        .transpose()
}

pub(super) fn order_from_row(row: &SqliteRow) -> Result<Order, StoreError> {
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

pub(super) fn shipment_from_row(row: &SqliteRow) -> Result<Shipment, StoreError> {
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

pub(super) fn incident_from_row(row: &SqliteRow) -> Result<Incident, StoreError> {
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
