//! Frequency caps: a customer hears at most two marketing messages a day, whatever number of
//! rules match; an apology beyond the cap still goes, without its discount.

use serde_json::json;

use crate::helpers::*;

/// The `i`-th delay notice for the same customer, each about another parcel.
fn delay_for_one_customer(i: usize) -> serde_json::Value {
    let mut event = delayed_event(0);
    event["id"] = json!(format!("evt-cap-{i}"));
    event["data"]["shipment_id"] = json!(format!("shp-cap-{i}"));
    event
}

#[tokio::test]
async fn a_customer_gets_two_offers_a_day_and_every_apology() {
    let app = spawn_app().await;
    // Two, committed; then two more, which find the first two in the database.
    for i in 0..2 {
        app.publish(&delay_for_one_customer(i)).await;
    }
    app.wait_intake_idle().await;
    for i in 2..4 {
        app.publish(&delay_for_one_customer(i)).await;
    }
    app.wait_intake_idle().await;
    app.wait_sent(4).await;

    assert_eq!(app.db.count(Table::DiscountCodes).await, 2);
    let sent = app.sandbox("sms");
    let with_code = sent
        .iter()
        .filter(|m| m["body"].as_str().unwrap().contains("할인 코드"))
        .count();
    assert_eq!((sent.len(), with_code), (4, 2));
    // Without an offer the apology is not advertising: no label either.
    assert!(sent
        .iter()
        .filter(|m| !m["body"].as_str().unwrap().contains("할인 코드"))
        .all(|m| m["body"].as_str().unwrap().starts_with("[슈즈샵]")));
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("forewarn_offers_withheld_total{rule=\"shipment-delay-apology\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn offers_the_customer_never_saw_do_not_count_against_the_cap() {
    let mut app = spawn_app_queueing_only().await;
    for i in 0..2 {
        app.publish(&delay_for_one_customer(i)).await;
    }
    app.wait_intake_idle().await;
    // Both parcels arrive before the apologies go out: retracted, their codes void.
    for i in 0..2 {
        app.publish(&json!({
            "specversion": "1.0", "id": format!("evt-cap-delivered-{i}"), "source": "test/carrier",
            "type": "shipment.delivered", "time": "2026-11-23T10:00:00Z",
            "data": {"shipment_id": format!("shp-cap-{i}"), "delivered_at": "2026-11-23T10:00:00Z"}
        }))
        .await;
    }
    app.wait_intake_idle().await;
    app.terminate().await;
    app.restart_with(Options::default()).await;
    wait_for("the retractions", || async {
        app.counts().await.cancelled == 2
    })
    .await;

    // Two more delays the same day: the customer has seen no offer yet, so both carry one.
    for i in 2..4 {
        app.publish(&delay_for_one_customer(i)).await;
    }
    app.wait_intake_idle().await;
    app.wait_sent(2).await;
    let sent = app.sandbox("sms");
    let with_code = sent
        .iter()
        .filter(|m| m["body"].as_str().unwrap().contains("할인 코드"))
        .count();
    assert_eq!((sent.len(), with_code), (2, 2));
    assert_eq!(
        app.db
            .codes()
            .await
            .iter()
            .filter(|c| c.voided_at.is_some())
            .count(),
        2
    );
}
