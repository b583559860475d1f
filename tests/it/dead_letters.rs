//! Bad input is dead-lettered with its reason, and forewarn keeps going.

use async_nats::jetstream;

use crate::helpers::*;

#[tokio::test]
async fn each_dead_letter_reason_arrives_on_its_subject_with_headers_and_processing_continues() {
    let app = spawn_app().await;
    app.publish_example("01-shoe-delay.jsonl").await;
    app.wait_intake_idle().await;
    let bad = std::fs::read_to_string(repo().join("examples/events/03-rejected.jsonl")).unwrap();
    for line in bad.lines() {
        app.publish_raw("events.from.a.backend", line.as_bytes().to_vec())
            .await;
    }
    // A good event after the bad ones is still processed.
    app.publish(&delayed_event(7)).await;
    app.wait_intake_idle().await;
    app.wait_sent(2).await;

    let dlq = app.js.get_stream("FOREWARN_DLQ").await.unwrap();
    let info = dlq.get_info().await.unwrap();
    assert_eq!(info.state.messages, 5);
    let mut seen = Vec::new();
    for sequence in 1..=5 {
        let message = dlq.get_raw_message(sequence).await.unwrap();
        let header = |name: &str| {
            message
                .headers
                .get(name)
                .map(|v| v.as_str().to_owned())
                .unwrap_or_else(|| panic!("dead letter {sequence} lacks {name}"))
        };
        assert_eq!(header("Forewarn-Original-Subject"), "events.from.a.backend");
        seen.push((message.subject.to_string(), header("Forewarn-Error")));
        // The body is the original bytes, untouched.
        let original = bad.lines().nth((sequence - 1) as usize).unwrap();
        assert_eq!(message.payload.as_ref(), original.as_bytes());
    }
    let expect = [
        ("forewarn.dlq.not_json", "body is not JSON"),
        ("forewarn.dlq.not_cloudevent", "`specversion` is missing"),
        ("forewarn.dlq.unknown_type", "`return.requested`"),
        ("forewarn.dlq.invalid_data", "data.new_eta: missing"),
        ("forewarn.dlq.unknown_customer", "`c-9999` is unknown"),
    ];
    for ((subject, error), (want_subject, want_error)) in seen.iter().zip(expect) {
        assert_eq!(subject, want_subject);
        assert!(error.contains(want_error), "{subject}: {error}");
    }
    // Dead-lettered events are not recorded as processed.
    let events = app.db.events().await;
    assert!(
        events.iter().all(|e| !e.id.starts_with("evt-02")),
        "{:?}",
        events.iter().map(|e| &e.id).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn an_unknown_customer_is_processed_once_the_customer_is_known() {
    let app = spawn_app().await;
    let mut event = delayed_event(3);
    let customer = event["data"]["customer"].take();
    event["data"].as_object_mut().unwrap().remove("customer");
    event["data"]["customer_id"] = "c-3".into();
    app.publish(&event).await;
    app.wait_intake_idle().await;
    assert_eq!(app.counts().await.pending + app.counts().await.sent, 0);

    // The backend fixes its order of publishing and replays the event.
    app.publish(
        &serde_json::json!({"specversion":"1.0","id":"evt-c3","source":"shop/crm",
        "type":"customer.upserted","data": customer}),
    )
    .await;
    app.publish(&event).await;
    app.wait_intake_idle().await;
    app.wait_sent(1).await;

    let mut consumer = app
        .js
        .get_stream("FOREWARN_DLQ")
        .await
        .unwrap()
        .get_consumer::<jetstream::consumer::pull::Config>("none")
        .await;
    assert!(consumer.is_err(), "no consumer was made on the DLQ");
    let _ = consumer.as_mut();
    let dlq = app.js.get_stream("FOREWARN_DLQ").await.unwrap();
    assert_eq!(dlq.get_info().await.unwrap().state.messages, 1);
}

/// A bad body that fits the server's payload limit no longer fits with the dead letter's
/// headers: it is cut to fit, the cut said in a header, and the original acked — not
/// redelivered forever.
#[tokio::test]
async fn a_bad_body_just_under_the_payload_limit_is_dead_lettered_cut_to_fit() {
    let app = spawn_app().await;
    let limit = app.js.client().server_info().max_payload;
    let body = vec![b'x'; limit - 40];
    app.publish_raw("events.from.a.backend", body.clone()).await;
    app.publish(&delayed_event(7)).await;
    app.wait_intake_idle().await;

    let dlq = app.js.get_stream("FOREWARN_DLQ").await.unwrap();
    let message = dlq.get_raw_message(1).await.unwrap();
    assert_eq!(message.subject.as_str(), "forewarn.dlq.not_json");
    let truncated = message
        .headers
        .get("Forewarn-Truncated")
        .expect("the cut is said")
        .as_str()
        .to_owned();
    assert_eq!(truncated, body.len().to_string());
    assert!(message.payload.len() < body.len());
    assert!(
        body.starts_with(&message.payload),
        "the body's start, untouched"
    );
    assert_eq!(
        dlq.get_info().await.unwrap().state.messages,
        1,
        "dead-lettered once"
    );
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("forewarn_dead_letters_total{reason=\"not_json\"} 1"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("dead_letters"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// With no dead-letter stream to publish to, an invalid event is redelivered a bounded number
/// of times, then dropped with an ERROR line and a metric — it does not hold an ack slot
/// forever.
#[tokio::test]
async fn an_invalid_event_whose_dead_letter_cannot_be_published_is_dropped_after_ten_deliveries() {
    let app = spawn_app().await;
    app.js.delete_stream("FOREWARN_DLQ").await.unwrap();
    app.publish_raw("events.from.a.backend", b"{not json".to_vec())
        .await;
    app.publish(&delayed_event(7)).await;
    // Idle alone can be seen between two deliveries (a nak's delay): wait for the drop itself.
    wait_for("the invalid event to be dropped", || async {
        app.metrics()
            .await
            .contains("forewarn_dead_letters_dropped_total{reason=\"not_json\"} 1")
    })
    .await;
    app.wait_intake_idle().await;
    app.wait_sent(1).await;

    let dropped = app.logged("Dropping an invalid event");
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert!(dropped[0].contains("ERROR") && dropped[0].contains("not_json"));
    assert!(
        app.unacked().await == 0,
        "dropped, not waiting for another delivery"
    );
}
