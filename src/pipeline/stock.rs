//! Back in stock, as a batch sees it: an order's backordered lines and a customer's own request
//! start waits for SKUs; the order's cancellation or first parcel ends its waits; an item back in
//! stock is decided for everyone waiting for it, once each, and ends their waits. The snapshot
//! holds the stored waits of the SKUs the batch restocks, and the batch's own are added to it,
//! so a restock later in the same batch sees them.

use chrono::{DateTime, Utc};

use crate::domain::{CustomerId, Payload, StockWait, WaitsEnded};
use crate::store::{Changes, Snapshot};

/// Starts or ends the waits `payload` says; the waits for an item back in stock end when it is
/// decided ([`end`]).
pub(super) fn apply(
    payload: &Payload,
    at: DateTime<Utc>,
    snapshot: &mut Snapshot,
    changes: &mut Changes,
) {
    let mut start = |sku: &str, customer_id: &CustomerId, order_id| {
        let wait = StockWait {
            sku: sku.to_owned(),
            customer_id: customer_id.clone(),
            order_id,
            since: at,
        };
        snapshot
            .stock_waits
            .entry(wait.sku.clone())
            .or_default()
            .push(wait.clone());
        changes.stock_waits.push(wait);
    };
    match payload {
        Payload::OrderBackordered {
            order_id,
            customer,
            skus,
            ..
        } => {
            for sku in skus {
                start(sku, customer.id(), Some(order_id.clone()));
            }
        }
        Payload::StockWatchRequested { customer, sku } => start(sku, customer.id(), None),
        Payload::OrderCancelled { order_id, .. } | Payload::ShipmentCreated { order_id, .. } => {
            for waits in snapshot.stock_waits.values_mut() {
                waits.retain(|w| w.order_id.as_ref() != Some(order_id));
            }
            changes
                .waits_ended
                .push(WaitsEnded::Order(order_id.clone()));
        }
        _ => {}
    }
}

/// The customers waiting for `sku`, each once, in the order they started waiting.
pub(super) fn waiting(sku: &str, snapshot: &Snapshot) -> Vec<CustomerId> {
    let mut customers: Vec<CustomerId> = Vec::new();
    for wait in snapshot.stock_waits.get(sku).into_iter().flatten() {
        if !customers.contains(&wait.customer_id) {
            customers.push(wait.customer_id.clone());
        }
    }
    customers
}

/// Ends every wait for `sku`: its customers have been decided for.
pub(super) fn end(sku: &str, snapshot: &mut Snapshot, changes: &mut Changes) {
    snapshot.stock_waits.remove(sku);
    changes.waits_ended.push(WaitsEnded::Sku(sku.to_owned()));
}
