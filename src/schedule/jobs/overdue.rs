//! `shipment.overdue`: the promise (plus a grace period) has passed, the parcel is not
//! delivered, and nobody said a word. The promise is the latest one the customer was given: a
//! `shipment.delayed` with a `new_eta` replaces it, so a delay notice re-arms the sweep for the
//! new date instead of nagging about the old one. One event per parcel per promise.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;

use crate::domain::EventType;
use crate::schedule::emit::Synthetic;
use crate::store::OverdueShipment;

/// What the sweep finds, in words, for its report.
pub(super) const FOUND: &str = "parcel(s) past their promise with no word from the carrier";

/// The emission key: the parcel and the promise it missed.
pub(super) fn key(shipment_id: &str, due: DateTime<Utc>) -> String {
    format!("{shipment_id}@{}", due.timestamp_millis())
}

/// The `shipment.overdue` event of one parcel past its promise.
pub(super) fn event(s: &OverdueShipment, now: DateTime<Utc>) -> Synthetic {
    let time = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    let mut data = json!({
        "shipment_id": s.shipment_id,
        "order_id": s.order_id,
        "customer_id": s.customer_id,
        "carrier": s.carrier,
        "promised_by": time(s.due),
        "hours_overdue": (now - s.due).num_hours().max(0),
        "status": s.status,
    });
    if let Some(original) = s.promised_by.filter(|p| *p != s.due) {
        data["original_promised_by"] = json!(time(original));
    }
    if let Some(scan) = s.last_scan_at {
        data["last_scan_at"] = json!(time(scan));
    }
    if let Some(url) = &s.tracking_url {
        data["tracking_url"] = json!(url);
    }
    Synthetic {
        kind: EventType::ShipmentOverdue,
        key: key(&s.shipment_id, s.due),
        subject: s.shipment_id.clone(),
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_names_the_promise_missed_and_keeps_the_original() {
        let s = OverdueShipment {
            shipment_id: "shp-1".into(),
            order_id: "ord-1".into(),
            customer_id: "c-1".into(),
            carrier: Some("CJ".into()),
            due: "2026-11-22T18:00:00Z".parse().unwrap(),
            promised_by: Some("2026-11-20T18:00:00Z".parse().unwrap()),
            last_scan_at: None,
            tracking_url: None,
            status: "delayed".into(),
        };
        let e = event(&s, "2026-11-23T06:30:00Z".parse().unwrap());
        assert_eq!(e.data["promised_by"], "2026-11-22T18:00:00Z");
        assert_eq!(e.data["original_promised_by"], "2026-11-20T18:00:00Z");
        assert_eq!(e.data["hours_overdue"], 12);
        assert_eq!(e.id(), "shipment.overdue:shp-1@1795370400000");
        // The payload is a valid catalogue event.
        crate::domain::Payload::parse(EventType::ShipmentOverdue, &e.data).unwrap();
    }
}
