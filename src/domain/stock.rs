//! Back in stock: who is waiting for an item, and the catalogue's word that it is available
//! again. A customer waits for a SKU while an order of theirs has it backordered, or since they
//! asked to be told (`stock.watch_requested`); `inventory.restocked` reaches each of them once.

use chrono::{DateTime, Utc};

use super::{CustomerId, EntityId};

/// A customer waiting for a SKU: through a backordered order, or on their own request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StockWait {
    /// The item.
    pub sku: String,
    /// Who waits.
    pub customer_id: CustomerId,
    /// The order that has it backordered; none for a watch the customer asked for.
    pub order_id: Option<EntityId>,
    /// Since when.
    pub since: DateTime<Utc>,
}

/// Waits that are over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitsEnded {
    /// The order was cancelled, or a parcel of it left: its backordered lines wait no more.
    Order(EntityId),
    /// The item is back, and everyone waiting for it has been decided for.
    Sku(String),
}
