//! `csat.due`: `after` a problem the customer was told about was resolved (the parcel of a
//! delay, an exception or an overdue notice arrived), ask one short question with a link.
//! Only customers who were actually sent a message about the problem are asked, once per order.

use chrono::SecondsFormat;
use serde_json::json;

use super::SurveyUrl;
use crate::domain::EventType;
use crate::schedule::emit::Synthetic;
use crate::store::ResolvedProblem;

/// What the sweep finds, in words, for its report.
pub(super) const FOUND: &str = "customer(s) asked how a resolved problem went";

/// The `csat.due` question about one resolved problem.
pub(super) fn event(p: &ResolvedProblem, survey_url: &SurveyUrl) -> Synthetic {
    Synthetic {
        kind: EventType::CsatDue,
        key: format!("{}/{}", p.customer_id, p.order_id),
        subject: p.order_id.clone(),
        data: json!({
            "order_id": p.order_id,
            "customer_id": p.customer_id,
            "shipment_id": p.shipment_id,
            "about": p.about,
            "resolved_at": p.resolved_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            "survey_url": survey_url.for_order(&p.order_id, &p.customer_id),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_carries_the_survey_link_for_its_order() {
        let p = ResolvedProblem {
            customer_id: "c-1".into(),
            order_id: "ord-1".into(),
            shipment_id: "shp-1".into(),
            resolved_at: "2026-11-20T10:00:00Z".parse().unwrap(),
            about: "delay",
        };
        let url = SurveyUrl::parse("https://shop.example/survey?order={order_id}").unwrap();
        let e = event(&p, &url);
        assert_eq!(
            e.data["survey_url"],
            "https://shop.example/survey?order=ord-1"
        );
        assert_eq!(e.id(), "csat.due:c-1/ord-1");
        crate::domain::Payload::parse(EventType::CsatDue, &e.data).unwrap();
    }
}
