//! Reading stored rows back into domain types, the same on every backend: each backend's row
//! type answers [`StoredRow`]'s few column reads, and everything above them is written once.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::{from_millis, IssuedCode, StoreError};
use crate::domain::{
    Channel, CustomerDoc, CustomerId, DiscountCode, EntityId, Incident, IncidentStatus, Money,
    OptOutScope, Order, OrderStatus, Shipment, ShipmentStatus,
};

/// A row of any backend, read column by column. Times are Unix milliseconds on every backend.
pub(crate) trait StoredRow {
    /// A text column.
    fn text(&self, column: &str) -> Result<String, StoreError>;
    /// A nullable text column.
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError>;
    /// An integer column.
    fn int(&self, column: &str) -> Result<i64, StoreError>;
    /// A nullable integer column.
    fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError>;

    /// A time column.
    fn time(&self, column: &str) -> Result<DateTime<Utc>, StoreError> {
        from_millis(self.int(column)?)
    }

    /// A nullable time column.
    fn opt_time(&self, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.opt_int(column)?.map(from_millis).transpose()
    }

    /// A nullable id column.
    fn opt_entity(&self, column: &str) -> Result<Option<EntityId>, StoreError> {
        self.opt_text(column)?.map(parse_entity_id).transpose()
    }

    /// A nullable customer id column.
    fn opt_customer(&self, column: &str) -> Result<Option<CustomerId>, StoreError> {
        self.opt_text(column)?.map(parse_customer_id).transpose()
    }
}

macro_rules! stored_row {
    ($row:ty) => {
        impl StoredRow for $row {
            fn text(&self, column: &str) -> Result<String, StoreError> {
                Ok(self.try_get(column)?)
            }
            fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
                Ok(self.try_get(column)?)
            }
            fn int(&self, column: &str) -> Result<i64, StoreError> {
                Ok(self.try_get(column)?)
            }
            fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError> {
                Ok(self.try_get(column)?)
            }
        }
    };
}
stored_row!(SqliteRow);
stored_row!(PgRow);

/// A stored customer record (`customers.doc`).
pub(crate) fn customer_doc(raw: &str, id: &str) -> Result<CustomerDoc, StoreError> {
    serde_json::from_str(raw)
        .map(CustomerDoc::from_object)
        .map_err(|e| StoreError::Corrupt(format!("customer {id}: {e}")))
}

/// One `opt_outs` row's channel and scope.
pub(crate) fn opt_out_from_row(row: &impl StoredRow) -> Result<(Channel, OptOutScope), StoreError> {
    let channel = row.text("channel")?;
    let scope = match row.text("scope")?.as_str() {
        "all" => OptOutScope::All,
        _ => OptOutScope::Marketing,
    };
    Ok((
        Channel::from_str(&channel).map_err(StoreError::Corrupt)?,
        scope,
    ))
}

pub(crate) fn parse_customer_id(raw: String) -> Result<CustomerId, StoreError> {
    CustomerId::parse(&raw).map_err(|e| StoreError::Corrupt(format!("customer id {raw:?}: {e}")))
}

pub(crate) fn parse_entity_id(raw: String) -> Result<EntityId, StoreError> {
    EntityId::parse(&raw).map_err(|e| StoreError::Corrupt(format!("id {raw:?}: {e}")))
}

/// An optional id column (see [`StoredRow::opt_entity`]).
pub(crate) fn opt_entity(
    row: &impl StoredRow,
    column: &str,
) -> Result<Option<EntityId>, StoreError> {
    row.opt_entity(column)
}

/// An optional time column (see [`StoredRow::opt_time`]).
pub(crate) fn opt_time(
    row: &impl StoredRow,
    column: &str,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    row.opt_time(column)
}

pub(crate) fn order_from_row(row: &impl StoredRow) -> Result<Order, StoreError> {
    let status = row.text("status")?;
    let total = match (row.opt_int("total_minor")?, row.opt_text("currency")?) {
        (Some(minor), Some(currency)) => Some(Money { minor, currency }),
        _ => None,
    };
    Ok(Order {
        id: parse_entity_id(row.text("id")?)?,
        customer_id: row.opt_customer("customer_id")?,
        status: OrderStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("order status {status:?}")))?,
        total,
        promised_by: row.opt_time("promised_by")?,
        placed_at: row.opt_time("placed_at")?,
        updated_at: row.time("updated_at")?,
    })
}

pub(crate) fn shipment_from_row(row: &impl StoredRow) -> Result<Shipment, StoreError> {
    let status = row.text("status")?;
    Ok(Shipment {
        id: parse_entity_id(row.text("id")?)?,
        order_id: row.opt_entity("order_id")?,
        customer_id: row.opt_customer("customer_id")?,
        carrier: row.opt_text("carrier")?,
        tracking_number: row.opt_text("tracking_number")?,
        tracking_url: row.opt_text("tracking_url")?,
        promised_by: row.opt_time("promised_by")?,
        new_eta: row.opt_time("new_eta")?,
        status: ShipmentStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("shipment status {status:?}")))?,
        region: row.opt_text("region")?,
        last_scan_at: row.opt_time("last_scan_at")?,
        delivered_at: row.opt_time("delivered_at")?,
        exception_kind: row.opt_text("exception_kind")?,
        updated_at: row.time("updated_at")?,
    })
}

pub(crate) fn incident_from_row(row: &impl StoredRow) -> Result<Incident, StoreError> {
    let status = row.text("status")?;
    let affected = row.text("affected")?;
    Ok(Incident {
        id: parse_entity_id(row.text("id")?)?,
        title: row.opt_text("title")?,
        severity: row.opt_text("severity")?,
        status: IncidentStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("incident status {status:?}")))?,
        affected: serde_json::from_str(&affected)
            .map_err(|e| StoreError::Corrupt(format!("incident affected: {e}")))?,
        started_at: row.opt_time("started_at")?,
        resolved_at: row.opt_time("resolved_at")?,
        updated_at: row.time("updated_at")?,
        peak_severity: row.opt_text("peak_severity")?,
    })
}

/// A `discount_codes` row.
pub(crate) fn issued_code_from_row(row: &impl StoredRow) -> Result<IssuedCode, StoreError> {
    Ok(IssuedCode {
        code: DiscountCode::from_stored(row.text("code")?),
        percent: percent(row.int("percent")?)?,
        customer_id: row.text("customer_id")?,
        rule_id: row.text("rule_id")?,
        idempotency_key: row.text("idempotency_key")?,
        issued_at: row.time("issued_at")?,
        expires_at: row.time("expires_at")?,
        redeemed_at: row.opt_time("redeemed_at")?,
        redeemed_order_id: row.opt_text("redeemed_order_id")?,
        voided_at: row.opt_time("voided_at")?,
    })
}

/// A stored discount percent.
pub(crate) fn percent(stored: i64) -> Result<u8, StoreError> {
    u8::try_from(stored).map_err(|_| StoreError::Corrupt(format!("discount percent {stored}")))
}
