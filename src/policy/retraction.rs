//! Retraction: just before a message is sent, is its problem still there? A delay apology for a
//! parcel that has arrived, or an outage notice for an incident already resolved, would be
//! noise — worse, it would tell the customer about a problem they no longer have.

use crate::store::CurrentState;

/// Why the message is no longer needed, if it is not.
pub fn resolved(state: &CurrentState) -> Option<&'static str> {
    let is = |field: &Option<String>, value: &str| field.as_deref() == Some(value);
    match state.event_type.as_str() {
        "shipment.delayed" | "shipment.exception" | "shipment.overdue"
            if is(&state.shipment_status, "delivered") =>
        {
            Some("the parcel was delivered")
        }
        "outage.started" | "outage.updated" if is(&state.incident_status, "resolved") => {
            Some("the incident was resolved")
        }
        "order.backordered" | "order.payment_failed" | "order.stalled"
            if is(&state.order_status, "cancelled") =>
        {
            Some("the order was cancelled")
        }
        "order.stalled" if state.order_shipped || is(&state.order_status, "shipped") => {
            Some("a parcel of the order has left")
        }
        _ => None,
    }
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
