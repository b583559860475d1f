//! Incidents. So far: a customer under an open incident gets no marketing until it is resolved.

use serde_json::json;

use crate::helpers::*;

fn outage(kind: &str, id: &str, data: serde_json::Value) -> serde_json::Value {
    json!({"specversion": "1.0", "id": id, "source": "test/status", "type": kind,
           "time": "2026-11-23T09:00:00Z", "data": data})
}

/// A delay for customer `c-{i}` in `region`, consenting to marketing (so it carries a code).
fn delay_in(i: usize, region: &str) -> serde_json::Value {
    let mut event = delayed_event(i);
    event["data"]["customer"]["region"] = json!(region);
    event
}

#[tokio::test]
async fn no_marketing_reaches_a_customer_under_an_open_incident_until_it_is_resolved() {
    let app = spawn_app().await;
    app.publish(&outage(
        "outage.started",
        "inc-1-started",
        json!({"incident_id": "inc-1", "title": "Payments down", "services": ["payments"],
               "regions": ["kr-seoul"], "severity": "major", "affected": {"regions": ["kr"]},
               "message": "Card payments fail."}),
    ))
    .await;
    app.wait_intake_idle().await;
    // Seoul is under it; New York is not.
    app.publish(&delay_in(1, "kr-seoul")).await;
    app.publish(&delay_in(2, "us-ny")).await;
    app.wait_intake_idle().await;
    app.wait_sent(2).await;
    let codes: Vec<String> =
        sqlx::query_scalar("SELECT customer_id FROM discount_codes ORDER BY customer_id")
            .fetch_all(app.store.pool())
            .await
            .unwrap();
    assert_eq!(codes, ["c-2"]);
    let (reason, detail): (String, String) = sqlx::query_as(
        "SELECT reason, detail FROM decision_notes WHERE customer_id = 'c-1' \
         AND outcome = 'offer_withheld'",
    )
    .fetch_one(app.store.pool())
    .await
    .unwrap();
    assert_eq!(reason, "open_incident");
    assert!(detail.contains("incident inc-1"), "{detail}");

    // Resolved: the next apology carries its code again.
    app.publish(&outage(
        "outage.resolved",
        "inc-1-resolved",
        json!({"incident_id": "inc-1", "message": "Payments work again."}),
    ))
    .await;
    app.wait_intake_idle().await;
    let mut again = delay_in(1, "kr-seoul");
    again["id"] = json!("evt-delay-1-again");
    again["data"]["shipment_id"] = json!("shp-1b");
    app.publish(&again).await;
    app.wait_intake_idle().await;
    app.wait_sent(3).await;
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM discount_codes WHERE customer_id = 'c-1'")
            .await,
        1
    );
}
