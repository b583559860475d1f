//! Domain state forewarn keeps for later rules and schedules: orders, shipments, incidents.
//!
//! Each aggregate is loaded once per batch, changed in memory by the batch's events in order,
//! and written back whole — so several events about one shipment in a batch cost one write,
//! and the store never relies on a database's handling of duplicate keys in one statement.

use chrono::{DateTime, Utc};

use super::{CustomerId, EntityId, Money, Payload};

/// Defines a status enum stored as lower-case text.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// The stored text.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Reads the stored text.
            pub fn parse(raw: &str) -> Option<Self> {
                match raw { $($text => Some($name::$variant),)+ _ => None }
            }
        }
    };
}

text_enum!(
    /// Where an order stands.
    OrderStatus {
        /// Placed and paid.
        Placed => "placed",
        /// Waiting for stock.
        Backordered => "backordered",
        /// Cancelled.
        Cancelled => "cancelled",
        /// Payment failed.
        PaymentFailed => "payment_failed",
        /// A parcel of it was handed to a carrier.
        Shipped => "shipped",
    }
);

text_enum!(
    /// Where a parcel stands.
    ShipmentStatus {
        /// Handed to the carrier.
        Created => "created",
        /// Scanned on the way.
        InTransit => "in_transit",
        /// On the van.
        OutForDelivery => "out_for_delivery",
        /// Announced late.
        Delayed => "delayed",
        /// Lost, damaged, held.
        Exception => "exception",
        /// Arrived.
        Delivered => "delivered",
    }
);

text_enum!(
    /// Whether an incident is still going on.
    IncidentStatus {
        /// Ongoing.
        Open => "open",
        /// Over.
        Resolved => "resolved",
    }
);

/// An order as forewarn last heard of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    /// Order id.
    pub id: EntityId,
    /// Who placed it.
    pub customer_id: Option<CustomerId>,
    /// Latest status.
    pub status: OrderStatus,
    /// Order total.
    pub total: Option<Money>,
    /// The delivery promise made at checkout.
    pub promised_by: Option<DateTime<Utc>>,
    /// When the order was placed.
    pub placed_at: Option<DateTime<Utc>>,
    /// When forewarn last changed this record.
    pub updated_at: DateTime<Utc>,
}

/// A parcel as forewarn last heard of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Shipment {
    /// Shipment id.
    pub id: EntityId,
    /// Its order.
    pub order_id: Option<EntityId>,
    /// Its recipient.
    pub customer_id: Option<CustomerId>,
    /// Carrier name.
    pub carrier: Option<String>,
    /// Carrier's tracking number.
    pub tracking_number: Option<String>,
    /// Where the customer can follow it.
    pub tracking_url: Option<String>,
    /// The original promise.
    pub promised_by: Option<DateTime<Utc>>,
    /// The latest announced arrival, after a delay.
    pub new_eta: Option<DateTime<Utc>>,
    /// Latest status.
    pub status: ShipmentStatus,
    /// Destination region.
    pub region: Option<String>,
    /// Time of the last carrier scan.
    pub last_scan_at: Option<DateTime<Utc>>,
    /// When it arrived.
    pub delivered_at: Option<DateTime<Utc>>,
    /// The kind of the last exception.
    pub exception_kind: Option<String>,
    /// When forewarn last changed this record.
    pub updated_at: DateTime<Utc>,
}

/// An incident as on-call last announced it.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    /// Incident id.
    pub id: EntityId,
    /// Headline.
    pub title: Option<String>,
    /// Current severity.
    pub severity: Option<String>,
    /// Open or resolved.
    pub status: IncidentStatus,
    /// Who is affected, as JSON.
    pub affected: serde_json::Value,
    /// When it began.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub resolved_at: Option<DateTime<Utc>>,
    /// When forewarn last changed this record.
    pub updated_at: DateTime<Utc>,
    /// The highest severity it has had: customers hear an update only when it rises above it.
    pub peak_severity: Option<String>,
}

impl Order {
    fn new(id: EntityId, at: DateTime<Utc>) -> Self {
        Order {
            id,
            customer_id: None,
            status: OrderStatus::Placed,
            total: None,
            promised_by: None,
            placed_at: None,
            updated_at: at,
        }
    }

    /// Applies an order event; `None` when the payload is not about orders.
    pub fn apply(existing: Option<Order>, payload: &Payload, at: DateTime<Utc>) -> Option<Order> {
        // A parcel leaving moves a known order out of `placed`, so the stalled-order sweep
        // reads only orders still waiting. An unknown order is not made up from its parcel.
        if let Payload::ShipmentCreated { .. } = payload {
            let mut order = existing?;
            if order.status != OrderStatus::Cancelled {
                order.status = OrderStatus::Shipped;
                order.updated_at = at;
            }
            return Some(order);
        }
        let (id, customer, status) = match payload {
            Payload::OrderPlaced {
                order_id, customer, ..
            } => (order_id, customer, OrderStatus::Placed),
            Payload::OrderBackordered {
                order_id, customer, ..
            } => (order_id, customer, OrderStatus::Backordered),
            Payload::OrderCancelled { order_id, customer } => {
                (order_id, customer, OrderStatus::Cancelled)
            }
            Payload::OrderPaymentFailed { order_id, customer } => {
                (order_id, customer, OrderStatus::PaymentFailed)
            }
            _ => return None,
        };
        let mut order = existing.unwrap_or_else(|| Order::new(id.clone(), at));
        order.customer_id = Some(customer.id().clone());
        // A late `order.placed` (redelivered out of order) must not revive a cancelled order.
        if status != OrderStatus::Placed || order.placed_at.is_none() {
            order.status = status;
        }
        if let Payload::OrderPlaced {
            total, promised_by, ..
        } = payload
        {
            order.total = Some(total.clone());
            order.promised_by = Some(*promised_by);
            order.placed_at.get_or_insert(at);
        }
        order.updated_at = at;
        Some(order)
    }
}

impl Shipment {
    fn new(id: EntityId, at: DateTime<Utc>) -> Self {
        Shipment {
            id,
            order_id: None,
            customer_id: None,
            carrier: None,
            tracking_number: None,
            tracking_url: None,
            promised_by: None,
            new_eta: None,
            status: ShipmentStatus::Created,
            region: None,
            last_scan_at: None,
            delivered_at: None,
            exception_kind: None,
            updated_at: at,
        }
    }

    /// The shipment id a payload is about, if any.
    pub fn id_of(payload: &Payload) -> Option<&EntityId> {
        match payload {
            Payload::ShipmentCreated { shipment_id, .. }
            | Payload::ShipmentScanned { shipment_id, .. }
            | Payload::ShipmentDelayed { shipment_id, .. }
            | Payload::ShipmentException { shipment_id, .. }
            | Payload::ShipmentDelivered { shipment_id, .. } => Some(shipment_id),
            _ => None,
        }
    }

    /// Applies a shipment event; `None` when the payload is not about shipments.
    pub fn apply(
        existing: Option<Shipment>,
        payload: &Payload,
        at: DateTime<Utc>,
    ) -> Option<Shipment> {
        let id = Self::id_of(payload)?;
        let mut s = existing.unwrap_or_else(|| Shipment::new(id.clone(), at));
        // Once delivered, later scans (often redelivered or out of order) change nothing.
        let delivered = s.status == ShipmentStatus::Delivered;
        match payload {
            Payload::ShipmentCreated {
                order_id,
                customer,
                carrier,
                tracking_number,
                tracking_url,
                promised_by,
                region,
                ..
            } => {
                s.order_id = Some(order_id.clone());
                s.customer_id = Some(customer.id().clone());
                s.carrier = Some(carrier.clone());
                s.tracking_number = Some(tracking_number.clone());
                s.tracking_url = tracking_url.clone().or(s.tracking_url);
                s.promised_by = Some(*promised_by);
                s.region = Some(region.clone());
            }
            Payload::ShipmentScanned {
                at: scanned_at,
                out_for_delivery,
                ..
            } => {
                s.last_scan_at = Some(s.last_scan_at.map_or(*scanned_at, |t| t.max(*scanned_at)));
                if !delivered {
                    s.status = if *out_for_delivery {
                        ShipmentStatus::OutForDelivery
                    } else if s.status == ShipmentStatus::Delayed {
                        ShipmentStatus::Delayed
                    } else {
                        ShipmentStatus::InTransit
                    };
                }
            }
            Payload::ShipmentDelayed {
                order_id,
                customer,
                carrier,
                promised_by,
                new_eta,
                ..
            } => {
                s.order_id = Some(order_id.clone());
                s.customer_id = Some(customer.id().clone());
                s.carrier = Some(carrier.clone());
                s.promised_by.get_or_insert(*promised_by);
                s.new_eta = Some(*new_eta);
                if !delivered {
                    s.status = ShipmentStatus::Delayed;
                }
            }
            Payload::ShipmentException {
                order_id,
                customer,
                kind,
                ..
            } => {
                s.order_id = Some(order_id.clone());
                s.customer_id = Some(customer.id().clone());
                s.exception_kind = Some(kind.as_str().to_owned());
                if !delivered {
                    s.status = ShipmentStatus::Exception;
                }
            }
            Payload::ShipmentDelivered {
                order_id,
                delivered_at,
                ..
            } => {
                if s.order_id.is_none() {
                    s.order_id = order_id.clone();
                }
                s.delivered_at = Some(*delivered_at);
                s.status = ShipmentStatus::Delivered;
            }
            _ => return None,
        }
        s.updated_at = at;
        Some(s)
    }
}

/// Why an outage event sends forewarn through the customer directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FanoutKind {
    /// An incident began: everyone it affects.
    Started,
    /// Its severity rose: everyone it affects, once per severity.
    Escalated,
    /// It is over: those who were told about it.
    Resolved,
}

impl FanoutKind {
    /// The lower-case name used in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            FanoutKind::Started => "started",
            FanoutKind::Escalated => "escalated",
            FanoutKind::Resolved => "resolved",
        }
    }

    /// The kind a stored name means.
    pub fn parse(name: &str) -> Option<FanoutKind> {
        [
            FanoutKind::Started,
            FanoutKind::Escalated,
            FanoutKind::Resolved,
        ]
        .into_iter()
        .find(|k| k.as_str() == name)
    }
}

impl Incident {
    /// Its severity, if announced.
    pub fn severity(&self) -> Option<super::Severity> {
        self.severity.as_deref().and_then(super::Severity::parse)
    }

    /// The highest severity it has had (the current one for a record older than the peak).
    pub fn peak(&self) -> Option<super::Severity> {
        self.peak_severity
            .as_deref()
            .and_then(super::Severity::parse)
            .max(self.severity())
    }

    /// The incident id a payload is about, if any.
    pub fn id_of(payload: &Payload) -> Option<&EntityId> {
        match payload {
            Payload::OutageStarted { incident_id, .. }
            | Payload::OutageUpdated { incident_id, .. }
            | Payload::OutageResolved { incident_id } => Some(incident_id),
            _ => None,
        }
    }

    /// Applies an outage event; `None` when the payload is not about incidents.
    pub fn apply(
        existing: Option<Incident>,
        payload: &Payload,
        at: DateTime<Utc>,
    ) -> Option<Incident> {
        let id = Self::id_of(payload)?;
        let mut incident = existing.unwrap_or_else(|| Incident {
            id: id.clone(),
            title: None,
            severity: None,
            status: IncidentStatus::Open,
            affected: serde_json::Value::Null,
            started_at: None,
            resolved_at: None,
            updated_at: at,
            peak_severity: None,
        });
        match payload {
            Payload::OutageStarted {
                title,
                severity,
                affected,
                ..
            } => {
                incident.title = Some(title.clone());
                incident.severity = Some(severity.as_str().to_owned());
                incident.affected = serde_json::to_value(affected).unwrap_or_default();
                incident.started_at.get_or_insert(at);
            }
            Payload::OutageUpdated { severity, .. } => {
                if let Some(severity) = severity {
                    incident.severity = Some(severity.as_str().to_owned());
                }
            }
            Payload::OutageResolved { .. } => {
                incident.status = IncidentStatus::Resolved;
                incident.resolved_at = Some(at);
            }
            _ => return None,
        }
        let current = incident.severity();
        let stored_peak = incident
            .peak_severity
            .as_deref()
            .and_then(super::Severity::parse);
        if current > stored_peak {
            incident.peak_severity = current.map(|s| s.as_str().to_owned());
        }
        incident.updated_at = at;
        Some(incident)
    }
}
