//! The shapes `data` is read as, one per catalogue entry: what `Payload::parse` checks each
//! event against, field by field (serde names the failing field). Fields the payload does not
//! keep are still validated; templates read them from the raw `data`.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{Affected, Scores, Severity, Store};
use super::{Alternative, CustomerInput, ExceptionKind, OptOutScope, OptOutTarget, OrderItem};
use crate::domain::{CustomerId, EntityId, Money};

#[derive(Deserialize)]
pub(super) struct OptOutData {
    pub(super) customer_id: CustomerId,
    pub(super) channel: OptOutTarget,
    pub(super) scope: OptOutScope,
}

#[derive(Deserialize)]
pub(super) struct OrderPlacedData {
    pub(super) order_id: EntityId,
    pub(super) customer: Option<CustomerInput>,
    pub(super) items: Vec<OrderItem>,
    pub(super) total: Money,
    pub(super) promised_by: DateTime<Utc>,
}

#[derive(Deserialize)]
pub(super) struct OrderBackorderedData {
    pub(super) order_id: EntityId,
    pub(super) customer: Option<CustomerInput>,
    pub(super) items: Vec<OrderItem>,
    pub(super) restock_eta: Option<DateTime<Utc>>,
    #[allow(dead_code)]
    pub(super) alternatives: Option<Vec<Alternative>>,
}

#[derive(Deserialize)]
pub(super) struct OrderReasonData {
    pub(super) order_id: EntityId,
    pub(super) customer: Option<CustomerInput>,
    #[allow(dead_code)]
    pub(super) reason: String,
}

#[derive(Deserialize)]
pub(super) struct Destination {
    pub(super) region: String,
    #[allow(dead_code)]
    pub(super) postal_code: String,
}

#[derive(Deserialize)]
pub(super) struct ShipmentCreatedData {
    pub(super) shipment_id: EntityId,
    pub(super) order_id: EntityId,
    pub(super) customer: Option<CustomerInput>,
    pub(super) carrier: String,
    pub(super) tracking_number: String,
    pub(super) tracking_url: Option<String>,
    pub(super) promised_by: DateTime<Utc>,
    pub(super) destination: Destination,
}

#[derive(Deserialize)]
pub(super) struct ShipmentScanData {
    pub(super) shipment_id: EntityId,
    pub(super) at: DateTime<Utc>,
}

#[derive(Deserialize)]
pub(super) struct ShipmentDelayedData {
    pub(super) shipment_id: EntityId,
    pub(super) order_id: EntityId,
    pub(super) customer: Option<CustomerInput>,
    pub(super) carrier: String,
    pub(super) promised_by: DateTime<Utc>,
    pub(super) new_eta: DateTime<Utc>,
    /// Read by rules (`data.reason == 'weather'`): text, when present.
    #[allow(dead_code)]
    pub(super) reason: Option<String>,
    #[allow(dead_code)]
    pub(super) alternatives: Option<Vec<Alternative>>,
}

#[derive(Deserialize)]
pub(super) struct ShipmentExceptionData {
    pub(super) shipment_id: EntityId,
    pub(super) order_id: EntityId,
    pub(super) customer: Option<CustomerInput>,
    pub(super) kind: ExceptionKind,
    /// Read by templates: text, when present.
    #[allow(dead_code)]
    pub(super) detail: Option<String>,
    #[allow(dead_code)]
    pub(super) alternatives: Option<Vec<Alternative>>,
}

#[derive(Deserialize)]
pub(super) struct ShipmentDeliveredData {
    pub(super) shipment_id: EntityId,
    pub(super) order_id: Option<EntityId>,
    pub(super) delivered_at: DateTime<Utc>,
}

#[derive(Deserialize)]
pub(super) struct OutageStartedData {
    pub(super) incident_id: EntityId,
    pub(super) title: String,
    #[allow(dead_code)]
    pub(super) services: Vec<String>,
    #[allow(dead_code)]
    pub(super) regions: Vec<String>,
    pub(super) severity: Severity,
    pub(super) affected: Affected,
    #[allow(dead_code)]
    pub(super) message: String,
    #[allow(dead_code)]
    pub(super) eta: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
pub(super) struct OutageUpdatedData {
    pub(super) incident_id: EntityId,
    pub(super) severity: Option<Severity>,
    #[allow(dead_code)]
    pub(super) message: String,
    #[allow(dead_code)]
    pub(super) eta: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
pub(super) struct OutageResolvedData {
    pub(super) incident_id: EntityId,
    #[allow(dead_code)]
    pub(super) message: String,
}

#[derive(Deserialize)]
pub(super) struct RiskScoredData {
    pub(super) customer_id: Option<CustomerId>,
    pub(super) shipment_id: Option<EntityId>,
    pub(super) order_id: Option<EntityId>,
    pub(super) scores: Scores,
    pub(super) model: String,
}

#[derive(Deserialize)]
pub(super) struct ShipmentOverdueData {
    pub(super) shipment_id: EntityId,
    pub(super) order_id: EntityId,
    pub(super) customer: Option<CustomerInput>,
    #[allow(dead_code)] // Validated; templates read it from raw data.
    pub(super) carrier: String,
    pub(super) promised_by: DateTime<Utc>,
    #[allow(dead_code)]
    pub(super) hours_overdue: u32,
    #[allow(dead_code)]
    pub(super) last_scan_at: Option<DateTime<Utc>>,
    #[allow(dead_code)]
    pub(super) alternatives: Option<Vec<Alternative>>,
}

#[derive(Deserialize)]
pub(super) struct CsatDueData {
    pub(super) order_id: EntityId,
    pub(super) customer: Option<CustomerInput>,
    #[allow(dead_code)]
    pub(super) survey_url: String,
    #[allow(dead_code)]
    pub(super) about: CsatTopic,
}

#[derive(Deserialize)]
pub(super) struct OrderStalledData {
    pub(super) order_id: EntityId,
    pub(super) customer: Option<CustomerInput>,
    pub(super) placed_at: DateTime<Utc>,
    #[allow(dead_code)]
    pub(super) hours_waiting: u32,
    #[allow(dead_code)]
    pub(super) promised_by: Option<DateTime<Utc>>,
}

/// What a CSAT follow-up asks about.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum CsatTopic {
    Delivery,
    Delay,
    Exception,
    Outage,
}

/// `data` of `inventory.restocked`.
#[derive(Deserialize)]
pub(super) struct RestockedData {
    pub(super) sku: String,
    #[allow(dead_code)] // Validated; templates read it from raw data.
    pub(super) name: Option<String>,
    #[allow(dead_code)]
    pub(super) quantity: Option<u64>,
    #[allow(dead_code)]
    pub(super) stores: Option<Vec<Store>>,
    #[allow(dead_code)]
    pub(super) available_at: Option<DateTime<Utc>>,
    #[allow(dead_code)]
    pub(super) url: Option<String>,
}

/// `data` of `stock.watch_requested`.
#[derive(Deserialize)]
pub(super) struct WatchData {
    pub(super) customer: Option<CustomerInput>,
    pub(super) sku: String,
    #[allow(dead_code)]
    pub(super) name: Option<String>,
}
