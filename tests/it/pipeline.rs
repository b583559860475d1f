//! Events in, state stored, one message out.

use crate::helpers::*;

#[tokio::test]
async fn every_catalogue_event_is_stored_and_a_matching_rule_queues_exactly_one_message() {
    // Everything is queued before anything is sent, so the outcome does not depend on how fast
    // the dispatcher is: two problems the examples later resolve are cancelled by the events
    // that resolve them, before any dispatcher runs.
    // The examples' incidents start and end within seconds; whether a fan-out page runs in
    // between depends on how intake batches them, so they are left out (tests/it/incidents.rs
    // covers fan-outs).
    let no_fanout = Options {
        extra_config: "\n[incidents]\nfanout = false\n".into(),
        ..Options::default()
    };
    let mut app = spawn_app_with(Options {
        dispatch: false,
        ..no_fanout.clone()
    })
    .await;
    let published = app.publish_example("01-shoe-delay.jsonl").await
        + app.publish_example("02-catalogue.jsonl").await
        + app.publish_example("04-more-scenarios.jsonl").await
        + app.publish_example("05-back-in-stock.jsonl").await;
    app.wait_intake_idle().await;
    let counts = app.counts().await;
    assert_eq!((counts.pending, counts.cancelled), (12, 2), "{counts:?}");
    app.terminate().await;
    app.restart_with(no_fanout).await;
    app.wait_sent(12).await;
    assert_eq!(app.counts().await.cancelled, 2);

    // 37 lines, one of them a second delivery of the same shipment.delayed.
    assert_eq!(published, 37);
    let events = app.db.events().await;
    assert_eq!(events.len(), 36);
    let types: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    let catalogue: Vec<&str> = forewarn::domain::EventType::ALL
        .iter()
        .map(|t| t.as_str())
        .collect();
    for t in &catalogue {
        assert!(types.iter().any(|s| s == t), "{t} was not stored");
    }

    // Domain state for later rules and schedules.
    assert_eq!(
        app.db.shipment_eta("shp-771").await,
        // 2026-11-27T09:00:00Z
        Some(("delayed".to_owned(), Some(1_795_770_000_000)))
    );
    let status = |table, id| app.db.status(table, id);
    assert_eq!(
        status(StatusTable::Shipments, "shp-2002").await.as_deref(),
        Some("delivered")
    );
    assert_eq!(
        status(StatusTable::Orders, "ord-2001").await.as_deref(),
        Some("cancelled")
    );
    assert_eq!(
        status(StatusTable::Incidents, "inc-0001").await.as_deref(),
        Some("resolved")
    );
    assert!(app.db.opted_out("c-2003", "sms", "marketing").await);
    let scored = app.db.scored_customers().await;
    assert_eq!(
        scored
            .iter()
            .filter(|c| c.as_deref() == Some("c-2002"))
            .count(),
        1
    );
    // Four customers from customer.upserted, one from an inline object on order.placed.
    assert_eq!(app.db.count(Table::Customers).await, 5);

    // The story: a Korean SMS to 김지수 with the exact new time in Seoul, the store nearby and a
    // discount code of her own (two days late: 15 %).
    let sms = app.sandbox("sms");
    let to_jisoo: Vec<&serde_json::Value> = sms
        .iter()
        .filter(|m| m["customer_id"] == "c-1001")
        .collect();
    assert_eq!(to_jisoo.len(), 1, "{sms:#?}");
    assert_eq!(to_jisoo[0]["rule_id"], "shipment-delay-apology");
    assert_eq!(to_jisoo[0]["to"], "+821012345678");
    let mut codes = app.db.codes().await;
    codes.retain(|c| c.customer_id == "c-1001" && c.percent == 15);
    assert_eq!(codes.len(), 1, "{codes:?}");
    let code = codes.remove(0).code;
    let shown = format!("{}-{}-{}", &code[..4], &code[4..8], &code[8..]);
    assert_eq!(
        to_jisoo[0]["body"],
        format!(
            "(광고)[슈즈샵] 김지수님, 죄송해요. 상품이 약속보다 늦은 11월 27일 (금) 오후 6시에 \
             도착해요. 강남점에서 오늘 픽업도 돼요. 15% 할인 코드 {shown}를 드려요.\n\
             무료거부 080-000-0000"
        )
    );

    // Each rule's winner on each customer's first usable channel: 박민준 prefers SMS; Jamie
    // prefers push, but the exception and survey templates have no push parts, so e-mail.
    let mut sent: Vec<(String, String, String)> = app
        .sandbox_all()
        .iter()
        .map(|m| {
            let field = |k: &str| m[k].as_str().unwrap().to_owned();
            (field("customer_id"), field("rule_id"), field("channel"))
        })
        .collect();
    sent.sort();
    let expected: Vec<(String, String, String)> = [
        ("c-1001", "shipment-delay-apology", "sms"),
        ("c-1002", "back-in-stock", "sms"),
        ("c-1002", "order-backordered-alternatives", "sms"),
        ("c-1002", "order-payment-failed", "sms"),
        ("c-1002", "order-stalled-update", "sms"),
        ("c-1002", "shipment-exception-help", "sms"),
        ("c-1002", "shipment-exception-help", "sms"),
        ("c-1002", "shipment-overdue-checkin", "sms"),
        ("c-1003", "back-in-stock", "sms"),
        ("c-2002", "csat-follow-up", "email"),
        ("c-2002", "order-payment-failed", "push"),
        ("c-2002", "shipment-delay-vip", "push"),
    ]
    .iter()
    .map(|(c, r, ch)| (c.to_string(), r.to_string(), ch.to_string()))
    .collect();
    assert_eq!(sent, expected);
    assert_each_key_once(&app.sandbox_all(), 12);
    // The damaged parcel was delivered and the backordered order cancelled before their
    // messages went out: retracted, with the reason.
    let mut cancelled: Vec<(String, String, String)> = app
        .db
        .outbox()
        .await
        .into_iter()
        .filter(|m| m.status == "cancelled")
        .map(|m| (m.customer_id, m.rule_id, m.last_error.unwrap_or_default()))
        .collect();
    cancelled.sort();
    assert_eq!(
        cancelled,
        [
            (
                "c-2002".to_owned(),
                "shipment-exception-help".to_owned(),
                "cancelled: the parcel was delivered".to_owned()
            ),
            (
                "c-2003".to_owned(),
                "order-backordered-alternatives".to_owned(),
                "cancelled: the order was cancelled".to_owned()
            ),
        ]
    );

    // Offers where the rules give them and the customer consented to marketing (an offer is
    // marketing): 15 % for a two-day delay and a damaged parcel, 20 % for the VIP; none for an
    // address check. c-1002 refused marketing: their lost parcel (15 %) and overdue one (10 %)
    // are still told, without a code.
    let mut offers: Vec<(String, i64)> = app
        .db
        .codes()
        .await
        .into_iter()
        .map(|c| (c.rule_id, c.percent))
        .collect();
    offers.sort();
    assert_eq!(
        offers,
        [
            ("shipment-delay-apology".to_owned(), 15),
            ("shipment-delay-vip".to_owned(), 20),
            ("shipment-exception-help".to_owned(), 15),
        ]
    );
    // Recorded for `explain`, with the reason.
    let mut withheld: Vec<(String, String)> = app
        .db
        .notes()
        .await
        .into_iter()
        .filter(|n| n.outcome == "offer_withheld")
        .map(|n| (n.rule_id, n.reason))
        .collect();
    withheld.sort();
    assert_eq!(
        withheld,
        [
            (
                "shipment-exception-help".to_owned(),
                "no_marketing_consent".to_owned()
            ),
            (
                "shipment-overdue-checkin".to_owned(),
                "no_marketing_consent".to_owned()
            ),
        ]
    );
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

    assert_eq!(app.db.count(Table::Events).await, 1);
    assert_eq!(app.db.count(Table::Outbox).await, 1);
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
    let doc = app.db.customer("c-1001").await;
    assert_eq!(doc["name"], "김지수B");
    assert_eq!(doc["phone"], "+821012345678");
    assert_eq!(doc["channels"], serde_json::json!(["sms", "email"]));
}

#[tokio::test]
async fn events_arriving_while_a_batch_commits_are_taken_together_when_it_is_done() {
    let app = spawn_app_with(Options {
        dispatch: false,
        busy_timeout: "30s",
        ..Options::default()
    })
    .await;
    // The first event's batch waits for the database while fifty more arrive.
    let blocker = app.db.hold_writes().await;
    app.publish(&delayed_event(0)).await;
    wait_for("the first event handed over", || async {
        app.unacked().await == 1
    })
    .await;
    for i in 1..=50 {
        app.publish(&delayed_event(i)).await;
    }
    wait_for("all fifty handed over behind it", || async {
        app.unacked().await == 51
    })
    .await;
    blocker.release().await;
    app.wait_intake_idle().await;
    assert_eq!(app.db.count(Table::Events).await, 51);
    // One batch for the first event, one for everything that waited behind it: none taken
    // early and queued behind the commit as a batch of its own.
    assert_eq!(app.db.event_batches().await, 2);
}
