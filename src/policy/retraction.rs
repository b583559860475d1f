//! Retraction: a message whose problem is gone is not sent. A delay apology for a parcel that
//! has arrived, or an outage notice for an incident already resolved, would be noise — worse,
//! it would tell the customer about a problem they no longer have.
//!
//! It happens twice. Intake cancels the messages still waiting about a problem in the very
//! transaction that records its end (the parcel delivered, the order cancelled, the incident
//! resolved), so `explain` says so at once and their codes are voided; and the dispatcher checks
//! once more just before sending ([`resolved`]), for a message claimed while that transaction
//! ran. One table says which ends close which problems, for both.

use crate::domain::{IncidentStatus, OrderStatus, ShipmentStatus};
use crate::store::{Changes, CurrentState};

/// What a problem is about, as the outbox records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum About {
    /// A parcel (`outbox.shipment_id`).
    Shipment,
    /// An order (`outbox.order_id`).
    Order,
    /// An incident (`outbox.incident_id`).
    Incident,
}

impl About {
    /// The outbox column that names it, for the backends' retraction statements.
    pub fn outbox_column(self) -> &'static str {
        match self {
            About::Shipment => "shipment_id",
            About::Order => "order_id",
            About::Incident => "incident_id",
        }
    }
}

/// Problems about a parcel, gone once it is delivered.
const PARCEL_PROBLEMS: &[&str] = &["shipment.delayed", "shipment.exception", "shipment.overdue"];
/// Notices about an incident, gone once it is resolved.
const INCIDENT_NOTICES: &[&str] = &["outage.started", "outage.updated"];
/// Problems about an order, gone once it is cancelled.
const ORDER_PROBLEMS: &[&str] = &["order.backordered", "order.payment_failed", "order.stalled"];
/// An order waiting to ship, no longer waiting once a parcel of it exists.
const ORDER_WAITING: &[&str] = &["order.stalled"];

/// Why a parcel's problems are gone.
pub const DELIVERED: &str = "the parcel was delivered";
/// Why an incident's notices are gone.
pub const INCIDENT_RESOLVED: &str = "the incident was resolved";
/// Why an order's problems are gone.
pub const ORDER_CANCELLED: &str = "the order was cancelled";
/// Why a stalled-order notice is gone.
pub const PARCEL_LEFT: &str = "a parcel of the order has left";

/// A problem a batch saw end: the messages still waiting about any of `ids`, caused by an
/// event of one of `event_types`, are cancelled with `reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// What the ids name.
    pub about: About,
    /// The parcels, orders or incidents whose problem ended.
    pub ids: Vec<String>,
    /// The kinds of event whose messages it makes pointless.
    pub event_types: &'static [&'static str],
    /// Said in `explain` and the outbox: `cancelled: the parcel was delivered`.
    pub reason: &'static str,
}

/// The problems a batch's changes end, at most one resolution of each kind.
pub fn resolutions(changes: &Changes) -> Vec<Resolution> {
    let mut found = vec![
        Resolution {
            about: About::Shipment,
            ids: changes
                .shipments
                .iter()
                .filter(|s| s.status == ShipmentStatus::Delivered)
                .map(|s| s.id.as_str().to_owned())
                .collect(),
            event_types: PARCEL_PROBLEMS,
            reason: DELIVERED,
        },
        Resolution {
            about: About::Incident,
            ids: changes
                .incidents
                .iter()
                .filter(|i| i.status == IncidentStatus::Resolved)
                .map(|i| i.id.as_str().to_owned())
                .collect(),
            event_types: INCIDENT_NOTICES,
            reason: INCIDENT_RESOLVED,
        },
        Resolution {
            about: About::Order,
            ids: changes
                .orders
                .iter()
                .filter(|o| o.status == OrderStatus::Cancelled)
                .map(|o| o.id.as_str().to_owned())
                .collect(),
            event_types: ORDER_PROBLEMS,
            reason: ORDER_CANCELLED,
        },
        Resolution {
            about: About::Order,
            ids: changes
                .shipments
                .iter()
                .filter_map(|s| Some(s.order_id.as_ref()?.as_str().to_owned()))
                .collect(),
            event_types: ORDER_WAITING,
            reason: PARCEL_LEFT,
        },
    ];
    found.retain(|r| !r.ids.is_empty());
    found
}

/// Why the message is no longer needed, if it is not: the dispatcher's check just before a
/// send.
pub fn resolved(state: &CurrentState) -> Option<&'static str> {
    let is = |field: &Option<String>, value: &str| field.as_deref() == Some(value);
    let kind = state.event_type.as_str();
    if PARCEL_PROBLEMS.contains(&kind) && is(&state.shipment_status, "delivered") {
        return Some(DELIVERED);
    }
    if INCIDENT_NOTICES.contains(&kind) && is(&state.incident_status, "resolved") {
        return Some(INCIDENT_RESOLVED);
    }
    if ORDER_PROBLEMS.contains(&kind) && is(&state.order_status, "cancelled") {
        return Some(ORDER_CANCELLED);
    }
    if ORDER_WAITING.contains(&kind) && (state.order_shipped || is(&state.order_status, "shipped"))
    {
        return Some(PARCEL_LEFT);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(event_type: &str, shipment: Option<&str>, incident: Option<&str>) -> CurrentState {
        CurrentState {
            event_type: event_type.into(),
            shipment_status: shipment.map(str::to_owned),
            incident_status: incident.map(str::to_owned),
            order_status: None,
            order_shipped: false,
        }
    }

    fn payload(kind: &str, data: serde_json::Value) -> crate::domain::Payload {
        let kind = crate::domain::EventType::parse(kind).expect("a known type");
        crate::domain::Payload::parse(kind, &data).expect("a valid payload")
    }

    #[test]
    fn a_batch_ends_the_problems_its_deliveries_cancellations_and_resolutions_end() {
        use crate::domain::{Incident, Order, Shipment};
        use serde_json::json;
        let at: chrono::DateTime<chrono::Utc> = "2026-11-23T10:00:00Z".parse().unwrap();
        let delivered = payload(
            "shipment.delivered",
            json!({"shipment_id": "shp-1", "delivered_at": "2026-11-23T10:00:00Z"}),
        );
        let moving = payload(
            "shipment.delayed",
            json!({"shipment_id": "shp-2", "order_id": "ord-2", "customer_id": "c-1",
                   "carrier": "CJ", "promised_by": "2026-11-25T09:00:00Z",
                   "new_eta": "2026-11-27T09:00:00Z"}),
        );
        let cancelled = payload(
            "order.cancelled",
            json!({"order_id": "ord-3", "customer_id": "c-1", "reason": "customer_request"}),
        );
        let resolved = payload(
            "outage.resolved",
            json!({"incident_id": "inc-1", "message": "Fixed."}),
        );
        let changes = Changes {
            shipments: [delivered, moving]
                .iter()
                .filter_map(|p| Shipment::apply(None, p, at))
                .collect(),
            orders: Order::apply(None, &cancelled, at).into_iter().collect(),
            incidents: Incident::apply(None, &resolved, at).into_iter().collect(),
            ..Changes::default()
        };
        let found: Vec<(About, Vec<String>, &str)> = resolutions(&changes)
            .into_iter()
            .map(|r| (r.about, r.ids, r.reason))
            .collect();
        assert_eq!(
            found,
            [
                (About::Shipment, vec!["shp-1".to_owned()], DELIVERED),
                (About::Incident, vec!["inc-1".to_owned()], INCIDENT_RESOLVED),
                (About::Order, vec!["ord-3".to_owned()], ORDER_CANCELLED),
                (About::Order, vec!["ord-2".to_owned()], PARCEL_LEFT),
            ]
        );
        // A batch that ends nothing asks the store nothing.
        assert!(resolutions(&Changes::default()).is_empty());
    }

    #[test]
    fn a_problem_that_is_gone_retracts_its_message_and_one_that_is_not_keeps_it() {
        assert_eq!(
            resolved(&state("shipment.delayed", Some("delivered"), None)),
            Some("the parcel was delivered")
        );
        assert_eq!(
            resolved(&state("shipment.delayed", Some("delayed"), None)),
            None
        );
        assert_eq!(
            resolved(&state("outage.started", None, Some("resolved"))),
            Some("the incident was resolved")
        );
        // The resolution notice itself is about a resolved incident, and must go.
        assert_eq!(
            resolved(&state("outage.resolved", None, Some("resolved"))),
            None
        );
        assert_eq!(resolved(&state("csat.due", Some("delivered"), None)), None);
    }

    #[test]
    fn a_stalled_order_notice_is_retracted_once_a_parcel_leaves_or_the_order_is_cancelled() {
        let stalled = |status: &str, shipped: bool| CurrentState {
            order_status: Some(status.into()),
            order_shipped: shipped,
            ..state("order.stalled", None, None)
        };
        assert_eq!(resolved(&stalled("placed", false)), None);
        assert_eq!(
            resolved(&stalled("shipped", true)),
            Some("a parcel of the order has left")
        );
        // A parcel reported before its order (events out of order) counts too.
        assert_eq!(
            resolved(&stalled("placed", true)),
            Some("a parcel of the order has left")
        );
        assert_eq!(
            resolved(&stalled("cancelled", false)),
            Some("the order was cancelled")
        );
    }
}
