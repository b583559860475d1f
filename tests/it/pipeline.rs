//! Events in, state stored, one message out.

use crate::helpers::*;

#[tokio::test]
async fn every_catalogue_event_is_stored_and_a_matching_rule_queues_exactly_one_message() {
    let app = spawn_app().await;
    let published = app.publish_example("01-shoe-delay.jsonl").await
        + app.publish_example("02-catalogue.jsonl").await;
    app.wait_intake_idle().await;
    app.wait_sent(4).await;

    // 21 lines, one of them a second delivery of the same shipment.delayed.
    assert_eq!(published, 21);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM events").await, 20);
    let types: Vec<String> = sqlx::query_scalar("SELECT DISTINCT type FROM events ORDER BY type")
        .fetch_all(app.store.pool())
        .await
        .unwrap();
    let catalogue: Vec<&str> = forewarn::domain::EventType::ALL
        .iter()
        .map(|t| t.as_str())
        .collect();
    for t in &catalogue {
        assert!(types.iter().any(|s| s == t), "{t} was not stored");
    }

    // Domain state for later rules and schedules.
    let (status, new_eta): (String, i64) =
        sqlx::query_as("SELECT status, new_eta FROM shipments WHERE id = 'shp-771'")
            .fetch_one(app.store.pool())
            .await
            .unwrap();
    assert_eq!(status, "delayed");
    assert_eq!(new_eta, 1_795_770_000_000); // 2026-11-27T09:00:00Z
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM shipments WHERE id = 'shp-2002' AND status = 'delivered'")
            .await,
        1
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM orders WHERE id = 'ord-2001' AND status = 'cancelled'")
            .await,
        1
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM incidents WHERE id = 'inc-0001' AND status = 'resolved'")
            .await,
        1
    );
    assert_eq!(app.scalar("SELECT COUNT(*) FROM opt_outs WHERE customer_id = 'c-2003' AND channel = 'sms' AND scope = 'marketing'").await, 1);
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM risk_scores WHERE customer_id = 'c-2002'")
            .await,
        1
    );
    // Two customers from customer.upserted, one from an inline object on order.placed.
    assert_eq!(app.scalar("SELECT COUNT(*) FROM customers").await, 3);

    // The story: one Korean SMS to 김지수 with the pickup alternative and the discount.
    let sms = app.sandbox("sms");
    assert_eq!(sms.len(), 1, "{sms:#?}");
    assert_eq!(sms[0]["customer_id"], "c-1001");
    assert_eq!(sms[0]["rule_id"], "shipment-delay-apology");
    assert_eq!(sms[0]["to"], "+821012345678");
    let body = sms[0]["body"].as_str().unwrap();
    assert!(body.contains("김지수님"), "{body}");
    assert!(body.contains("11월 27일"), "{body}");
    assert!(body.contains("강남점(서울 강남구 테헤란로 1)"), "{body}");
    assert!(body.contains("10% 할인"), "{body}");

    // Jamie prefers push: the payment rule's template has push parts, the exception rule's
    // does not, so it falls to e-mail.
    let push = app.sandbox("push");
    assert_eq!(push.len(), 1);
    assert_eq!(push[0]["rule_id"], "order-payment-failed");
    let email = app.sandbox("email");
    let rules: Vec<&str> = email
        .iter()
        .map(|e| e["rule_id"].as_str().unwrap())
        .collect();
    assert_eq!(email.len(), 2, "{rules:?}");
    assert!(rules.contains(&"shipment-exception-help"));
    assert!(rules.contains(&"order-backordered-alternatives"));
    assert_each_key_once(&app.sandbox_all(), 4);
}

#[tokio::test]
async fn the_same_event_published_twice_yields_one_outreach() {
    let app = spawn_app().await;
    let event = delayed_event(1);
    // Back to back (likely one batch), then again after the first was processed.
    app.publish(&event).await;
    app.publish(&event).await;
    app.wait_intake_idle().await;
    app.wait_sent(1).await;
    app.publish(&event).await;
    app.wait_intake_idle().await;

    assert_eq!(app.scalar("SELECT COUNT(*) FROM events").await, 1);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM outbox").await, 1);
    let counts = app.counts().await;
    assert_eq!((counts.pending, counts.sending), (0, 0));
    assert_each_key_once(&app.sandbox_all(), 1);
}

#[tokio::test]
async fn a_customer_announced_earlier_is_found_by_id_and_partial_updates_keep_other_fields() {
    let app = spawn_app().await;
    app.publish_example("01-shoe-delay.jsonl").await;
    app.wait_intake_idle().await;
    // The CRM later sends only a new name: the phone and preferences must survive.
    app.publish(&serde_json::json!({
        "specversion": "1.0", "id": "evt-rename", "source": "shop/crm",
        "type": "customer.upserted", "data": {"id": "c-1001", "name": "김지수B"}
    }))
    .await;
    app.wait_intake_idle().await;
    let doc: String = sqlx::query_scalar("SELECT doc FROM customers WHERE id = 'c-1001'")
        .fetch_one(app.store.pool())
        .await
        .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(doc["name"], "김지수B");
    assert_eq!(doc["phone"], "+821012345678");
    assert_eq!(doc["channels"], serde_json::json!(["sms", "email"]));
}
