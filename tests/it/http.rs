//! Health, readiness and metrics.

use std::time::Duration;

use crate::helpers::*;

/// `/readyz`'s status and body.
async fn readiness(app: &App) -> (u16, serde_json::Value) {
    let response = reqwest::get(format!("http://127.0.0.1:{}/readyz", app.http_port))
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

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

/// The database answers pings but every intake commit fails (another writer holds it): after
/// the grace period the process says it is not ready, naming intake; once commits go through
/// again it is ready, and the event is processed.
#[tokio::test]
async fn readiness_says_not_ready_while_intake_cannot_commit_and_ready_once_it_can() {
    let app = spawn_app_with(Options {
        busy_timeout: "200ms",
        ..Options::default()
    })
    .await;
    assert_eq!(readiness(&app).await.0, 200);
    let blocker = app.db.hold_writes().await;
    app.publish(&delayed_event(1)).await;
    wait_within(
        "not ready, naming intake",
        Duration::from_secs(60),
        || async {
            let (status, body) = readiness(&app).await;
            status == 503
                && body["database"] == "ok"
                && body["intake"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("failing to commit for"))
        },
    )
    .await;
    blocker.release().await;
    wait_for("ready again", || async { readiness(&app).await.0 == 200 }).await;
    app.wait_sent(1).await;
    let log = app.log();
    assert_eq!(
        log.matches("Failing to commit; reported not ready").count(),
        log.matches("Committing again after failing").count(),
        "each change of state logged once"
    );
    assert!(log.contains("Committing again after failing"));
}

/// NATS goes away: the process says it is not ready, naming NATS, and says so once in its log
/// at WARN.
#[tokio::test]
async fn losing_nats_is_a_warning_and_makes_the_process_not_ready() {
    let mut app = spawn_app().await;
    app.nats.stop();
    wait_for("not ready, naming NATS", || async {
        let (status, body) = readiness(&app).await;
        status == 503 && body["nats"] != "ok"
    })
    .await;
    wait_for("the loss logged", || async {
        app.log().contains("Lost the connection to NATS")
    })
    .await;
    let lost = app.logged("Lost the connection to NATS");
    assert_eq!(lost.len(), 1, "once per loss: {lost:?}");
    assert!(lost[0].contains("WARN"), "{}", lost[0]);
}
