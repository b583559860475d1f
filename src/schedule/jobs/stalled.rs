//! `order.stalled`: placed, paid, and no parcel created within `after`. The customer hears
//! before they start wondering; one event per order.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;

use crate::domain::EventType;
use crate::schedule::emit::Synthetic;
use crate::store::StalledOrder;

/// What the sweep finds, in words, for its report.
pub(super) const FOUND: &str = "order(s) placed with no parcel created";

/// The `order.stalled` event of one order.
pub(super) fn event(o: &StalledOrder, now: DateTime<Utc>) -> Synthetic {
    let time = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    let mut data = json!({
        "order_id": o.order_id,
        "customer_id": o.customer_id,
        "placed_at": time(o.placed_at),
        "hours_waiting": (now - o.placed_at).num_hours().max(0),
    });
    if let Some(promise) = o.promised_by {
        data["promised_by"] = json!(time(promise));
    }
    if let Some(total) = &o.total {
        data["total"] = json!({"minor": total.minor, "currency": total.currency});
    }
    Synthetic {
        kind: EventType::OrderStalled,
        key: o.order_id.clone(),
        subject: o.order_id.clone(),
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_says_how_long_the_order_has_waited() {
        let o = StalledOrder {
            order_id: "ord-9".into(),
            customer_id: "c-1".into(),
            placed_at: "2026-11-20T09:00:00Z".parse().unwrap(),
            promised_by: Some("2026-11-24T18:00:00Z".parse().unwrap()),
            total: None,
        };
        let e = event(&o, "2026-11-23T09:30:00Z".parse().unwrap());
        assert_eq!(e.data["hours_waiting"], 72);
        assert_eq!(e.id(), "order.stalled:ord-9");
        crate::domain::Payload::parse(EventType::OrderStalled, &e.data).unwrap();
    }
}
