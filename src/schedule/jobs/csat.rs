//! `csat.due`: `after` a problem the customer was told about was resolved (the parcel of a
//! delay, an exception or an overdue notice arrived), ask one short question with a link.
//! Only customers who were actually sent a message about the problem are asked, once per order.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;

use super::{before, emit_found, JobContext, JobError, JobReport, SurveyUrl};
use crate::domain::EventType;
use crate::schedule::emit::Synthetic;
use crate::store::ResolvedProblem;

pub(super) async fn run(
    ctx: &JobContext,
    now: DateTime<Utc>,
    after: Duration,
    lookback: Duration,
    survey_url: &SurveyUrl,
    batch: usize,
) -> Result<JobReport, JobError> {
    let resolved_before = before(now, after);
    let found = ctx
        .store
        .resolved_problems(resolved_before, before(resolved_before, lookback), batch)
        .await?;
    let events = found.iter().map(|p| event(p, survey_url)).collect();
    emit_found(
        ctx,
        now,
        events,
        batch,
        "customer(s) asked how a resolved problem went",
    )
    .await
}

fn event(p: &ResolvedProblem, survey_url: &SurveyUrl) -> Synthetic {
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
