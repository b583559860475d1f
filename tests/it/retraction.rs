//! A message whose problem is gone before it is sent is retracted; a newer, more important one
//! about the same order supersedes a waiting one. Both are cancelled with their reason.

use serde_json::json;

use crate::helpers::*;

async fn status_of(app: &App, event_id: &str) -> (String, Option<String>) {
    let message = app.db.outbox_for_event(event_id).await;
    (message.status, message.last_error)
}

#[tokio::test]
async fn an_apology_for_a_parcel_that_arrived_while_it_waited_is_cancelled_at_once() {
    // No dispatcher: only the delivery's own transaction can cancel the apology.
    let app = spawn_app_queueing_only().await;
    app.publish(&delayed_event(1)).await;
    app.wait_intake_idle().await;
    assert_eq!(status_of(&app, "evt-delay-1").await.0, "pending");
    // The parcel arrives while the apology waits (for quiet hours, a slow gateway, …).
    app.publish(&json!({
        "specversion": "1.0", "id": "evt-delivered-1", "source": "test/carrier",
        "type": "shipment.delivered", "time": "2026-11-23T10:00:00Z",
        "data": {"shipment_id": "shp-1", "delivered_at": "2026-11-23T10:00:00Z"}
    }))
    .await;
    app.wait_intake_idle().await;

    assert_eq!(
        status_of(&app, "evt-delay-1").await,
        (
            "cancelled".into(),
            Some("cancelled: the parcel was delivered".into())
        )
    );
    // What a CX agent reads when the customer asks whether that apology is still coming.
    let (code, told) = crate::explain::explain(&app, "c-1", &[]);
    assert_eq!(code, 0, "{told}");
    assert!(
        told.contains("cancelled: the parcel was delivered"),
        "{told}"
    );
    assert!(!told.contains("waiting until"), "{told}");
    assert!(app
        .metrics()
        .await
        .contains("forewarn_outreach_total{rule=\"shipment-delay-apology\",channel=\"sms\",status=\"cancelled\"} 1"));
    // Its discount code was never seen by the customer: void, and refused at checkout.
    assert_code_void(&app, "evt-delay-1").await;
    assert_eq!(app.db.count(Table::Attempts).await, 0, "not an attempt");
}

/// The code the message of `event_id` carried is void, and checkout refuses it.
async fn assert_code_void(app: &App, event_id: &str) {
    let issued = app.db.code_for_event(event_id).await;
    let (code, voided) = (issued.code, issued.voided_at);
    assert!(voided.is_some(), "{code} is not void");
    let (status, body) = crate::offers::redeem(app, &code, json!({})).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (410, Some("void")),
        "{body}"
    );
}

#[tokio::test]
async fn a_more_important_message_about_the_same_order_supersedes_a_waiting_one() {
    let app = spawn_app_queueing_only().await;
    // A delay apology (priority 50) for order ord-1 waits…
    app.publish(&delayed_event(1)).await;
    app.wait_intake_idle().await;
    // …then the parcel is lost (priority 60, same order): one conversation, the lost parcel.
    let mut lost = delayed_event(1);
    lost["id"] = json!("evt-lost-1");
    lost["type"] = json!("shipment.exception");
    lost["data"]["kind"] = json!("lost");
    app.publish(&lost).await;
    app.wait_intake_idle().await;
    assert_eq!(
        status_of(&app, "evt-delay-1").await,
        (
            "cancelled".into(),
            Some("superseded by rule shipment-exception-help".into())
        )
    );
    assert_eq!(status_of(&app, "evt-lost-1").await.0, "pending");
    assert_code_void(&app, "evt-delay-1").await;

    // A newer but less important message does not supersede the more important one.
    let mut again = delayed_event(1);
    again["id"] = json!("evt-delay-1b");
    again["data"]["new_eta"] = json!("2026-11-28T09:00:00Z");
    app.publish(&again).await;
    app.wait_intake_idle().await;
    assert_eq!(status_of(&app, "evt-lost-1").await.0, "pending");
    assert_eq!(status_of(&app, "evt-delay-1b").await.0, "pending");
}
