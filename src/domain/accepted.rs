//! An event that passed the catalogue: its envelope, its typed `data`, and what it is about.

use super::{CloudEvent, EntityId, Incident, Payload, Rejection, Shipment};

/// An event whose envelope and `data` passed the catalogue.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The envelope, with `data` kept whole.
    pub event: CloudEvent,
    /// `data`, typed.
    pub payload: Payload,
}

impl Accepted {
    /// Reads one event: the envelope (a `type` starting with `type_prefix` loses it), then
    /// `data` against the catalogue — as intake reads what the stream delivers.
    pub fn parse(body: &[u8], type_prefix: Option<&str>) -> Result<Accepted, Rejection> {
        let event = CloudEvent::parse(body, type_prefix)?;
        let payload = Payload::parse(event.event_type, &event.data)?;
        Ok(Accepted { event, payload })
    }

    /// The shipment, order and incident the event is about.
    pub fn about(&self) -> About {
        About {
            shipment_id: shipment_of(&self.payload).cloned(),
            order_id: order_of(&self.payload).cloned(),
            incident_id: Incident::id_of(&self.payload).cloned(),
        }
    }
}

/// What an event is about, stored with it at intake: later questions ("is its parcel
/// delivered now?", "was its promise kept?") join on these instead of reading `data` again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct About {
    /// The parcel.
    pub shipment_id: Option<EntityId>,
    /// The order: its own, or its parcel's.
    pub order_id: Option<EntityId>,
    /// The incident.
    pub incident_id: Option<EntityId>,
}

/// The shipment an event is about, including `shipment.overdue`, which changes no state.
pub fn shipment_of(payload: &Payload) -> Option<&EntityId> {
    match payload {
        Payload::ShipmentOverdue { shipment_id, .. } => Some(shipment_id),
        other => Shipment::id_of(other),
    }
}

/// The order an event is about: its own, or the one a shipment event names.
pub fn order_of(payload: &Payload) -> Option<&EntityId> {
    match payload {
        Payload::ShipmentCreated { order_id, .. }
        | Payload::ShipmentDelayed { order_id, .. }
        | Payload::ShipmentException { order_id, .. }
        | Payload::ShipmentOverdue { order_id, .. }
        | Payload::CsatDue { order_id, .. }
        | Payload::OrderStalled { order_id, .. } => Some(order_id),
        Payload::ShipmentDelivered { order_id, .. } => order_id.as_ref(),
        other => order_changed_by(other),
    }
}

/// The order an event changes: order events, and `shipment.created`, which ships it.
pub fn order_changed_by(payload: &Payload) -> Option<&EntityId> {
    match payload {
        Payload::ShipmentCreated { order_id, .. }
        | Payload::OrderPlaced { order_id, .. }
        | Payload::OrderBackordered { order_id, .. }
        | Payload::OrderCancelled { order_id, .. }
        | Payload::OrderPaymentFailed { order_id, .. } => Some(order_id),
        _ => None,
    }
}
