//! Health, readiness and metrics.

use crate::helpers::*;

#[tokio::test]
async fn health_readiness_and_metrics_are_served() {
    let app = spawn_app().await;
    app.publish(&delayed_event(1)).await;
    app.publish_raw("events.x", b"not json".to_vec()).await;
    app.wait_intake_idle().await;
    app.wait_sent(1).await;

    let base = format!("http://127.0.0.1:{}", app.http_port);
    let client = reqwest::Client::new();
    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready: serde_json::Value = client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["nats"], "ok");
    assert_eq!(ready["database"], "ok");

    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for expected in [
        r#"forewarn_events_total{type="shipment.delayed",outcome="processed"} 1"#,
        r#"forewarn_dead_letters_total{reason="not_json"} 1"#,
        r#"forewarn_outreach_total{rule="shipment-delay-apology",channel="sms",status="queued"} 1"#,
        r#"forewarn_outreach_total{rule="shipment-delay-apology",channel="sms",status="sent"} 1"#,
        "forewarn_event_processing_seconds_bucket",
    ] {
        assert!(
            metrics.contains(expected),
            "missing {expected} in:\n{metrics}"
        );
    }
}

#[tokio::test]
async fn logs_never_show_a_full_phone_number() {
    let app = spawn_app().await;
    let mut event = delayed_event(5);
    // No SMS template part for this customer's only channel: the skip is logged with details.
    event["data"]["customer"]["channels"] = serde_json::json!(["push"]);
    event["data"]["customer"]["email"] = "jisoo.kim@example.com".into();
    app.publish(&event).await;
    app.publish_raw("events.x", br#"{"specversion":"1.0","id":"e","source":"s","type":"shipment.delayed","data":{"customer":{"id":"c","phone":"+821099998888","email":"leak@example.com"}}}"#.to_vec()).await;
    app.wait_intake_idle().await;
    app.wait_sent(1).await;
    let log = app.log();
    assert!(!log.contains("+821099998888"), "{log}");
    assert!(!log.contains("leak@example.com"), "{log}");
    assert!(!log.contains("+8210"), "{log}");
}
