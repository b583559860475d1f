//! Quiet hours: a message due while its customer should not be disturbed waits for the window's
//! end in the customer's own time zone — persisted, through restarts — and is never dropped.

use chrono::{DateTime, Duration, NaiveTime, Timelike, Utc};
use serde_json::{json, Value};

use crate::helpers::*;

/// A transactional event for a customer in `zone` (an exception with no offer).
fn exception(i: usize, zone: &str) -> Value {
    json!({
        "specversion": "1.0", "id": format!("evt-exc-{i}"), "source": "test/quiet",
        "type": "shipment.exception", "time": Utc::now().to_rfc3339(),
        "data": {"shipment_id": format!("shp-{i}"), "order_id": format!("ord-{i}"), "kind": "address",
                 "customer": {"id": format!("c-{i}"), "name": "Jamie", "locale": "en-US",
                              "timezone": zone, "phone": format!("+1212555{i:04}"),
                              "channels": ["sms"]}}
    })
}

/// A window from an hour ago to an hour from now, in UTC wall-clock terms, and its end as an
/// instant for a customer in UTC.
fn window_around_now() -> (String, DateTime<Utc>) {
    let now = Utc::now();
    let hm = |t: DateTime<Utc>| format!("{:02}:{:02}", t.hour(), t.minute());
    let end = now + Duration::hours(1);
    let end = end
        .with_time(NaiveTime::from_hms_opt(end.hour(), end.minute(), 0).unwrap())
        .unwrap();
    (format!("{}-{}", hm(now - Duration::hours(1)), hm(end)), end)
}

fn sms_only(window: &str) -> String {
    format!(
        "marketing_sms = \"\"\nmarketing_email = \"\"\nmarketing_push = \"\"\n\
         transactional_sms = \"{window}\"\ntransactional_email = \"\"\ntransactional_push = \"\""
    )
}

async fn next_attempt(app: &App, customer: &str) -> (String, i64) {
    sqlx::query_as("SELECT status, next_attempt_at FROM outbox WHERE customer_id = ?1")
        .bind(customer)
        .fetch_one(app.store.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_message_in_quiet_hours_waits_for_the_end_in_the_customers_zone_and_survives_a_restart() {
    let (window, end) = window_around_now();
    let mut app = spawn_app_with(Options {
        quiet_hours: Some(sms_only(&window)),
        ..Options::default()
    })
    .await;
    // c-1 is in UTC, inside the window; c-2 is twelve hours ahead, outside it.
    app.publish(&exception(1, "UTC")).await;
    app.publish(&exception(2, "Etc/GMT-12")).await;
    app.wait_intake_idle().await;
    app.wait_sent(1).await;

    let sent = app.sandbox("sms");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["customer_id"], "c-2");
    let (status, next) = next_attempt(&app, "c-1").await;
    assert_eq!(status, "pending");
    assert_eq!(
        next,
        end.timestamp_millis(),
        "held until the window's end, {end}"
    );
    assert!(app
        .metrics()
        .await
        .contains("status=\"deferred_quiet_hours\"} 1"));

    // A restart keeps it held, not sent and not lost.
    app.terminate().await;
    let (status, kept) = next_attempt(&app, "c-1").await;
    assert_eq!((status.as_str(), kept), ("pending", end.timestamp_millis()));
    // Released at the window's end: not claimable a second before, claimable at it.
    let lease = std::time::Duration::from_secs(30);
    let before = app.store_claim(end - Duration::seconds(1), lease).await;
    assert!(before.is_empty(), "{before:?}");
    let at_end = app.store_claim(end, lease).await;
    assert_eq!(at_end, ["c-1"]);
}

#[tokio::test]
async fn a_message_queued_before_quiet_hours_is_held_when_the_dispatcher_reaches_it_in_them() {
    let mut app = spawn_app_queueing_only().await;
    app.publish(&exception(1, "UTC")).await;
    app.wait_intake_idle().await;
    let (_, queued_for) = next_attempt(&app, "c-1").await;
    assert!(
        queued_for <= Utc::now().timestamp_millis(),
        "due at once without quiet hours"
    );

    // The night falls (for this test: quiet hours switched on) before the dispatcher runs.
    app.terminate().await;
    let (window, end) = window_around_now();
    app.restart_with(Options {
        quiet_hours: Some(sms_only(&window)),
        ..Options::default()
    })
    .await;
    wait_for("the dispatcher to hold it", || async {
        next_attempt(&app, "c-1").await == ("pending".into(), end.timestamp_millis())
    })
    .await;
    assert!(app.sandbox("sms").is_empty());
    // Held, not attempted: the retry budget is untouched.
    assert_eq!(
        app.scalar("SELECT attempts FROM outbox WHERE customer_id = 'c-1'")
            .await,
        0
    );
}

#[tokio::test]
async fn explain_says_why_a_customer_got_what_they_got() {
    let (window, end) = window_around_now();
    let app = spawn_app_with(Options {
        quiet_hours: Some(sms_only(&window)),
        ..Options::default()
    })
    .await;
    // A lost parcel (15 % off by the shipped rule) for a customer who refused marketing, in
    // their quiet hours: the message waits, without the offer.
    let mut lost = exception(1, "UTC");
    lost["data"]["kind"] = json!("lost");
    lost["data"]["customer"]["consent"] = json!({"marketing": false});
    app.publish(&lost).await;
    app.wait_intake_idle().await;

    let config = app.config_path();
    let config = config.to_str().unwrap();
    let (code, out) = forewarn_cli(
        app.dir.path(),
        &["--config", config, "explain", "--customer", "c-1"],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    for expected in [
        "customer c-1 (J****, en-US, UTC); consent: sms not given, email not given, push not given, marketing no",
        "shipment.exception (shipment_id shp-1, order_id ord-1)",
        &format!("→ rule shipment-exception-help: SMS to +12*******01 · waiting until {}", end.format("%Y-%m-%d %H:%M:%S UTC")),
        "− rule shipment-exception-help: sent without its offer, no_marketing_consent",
        "… rule shipment-exception-help: held, quiet_hours: sms in the customer's quiet hours",
        "risk · churn ",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    assert!(!out.contains("+12125550001"), "masked by default:\n{out}");

    let (_, revealed) = forewarn_cli(
        app.dir.path(),
        &[
            "--config",
            config,
            "explain",
            "--customer",
            "c-1",
            "--reveal",
        ],
        &[],
    );
    assert!(revealed.contains("SMS to +12125550001"), "{revealed}");
    assert!(revealed.contains("(Jamie, en-US"), "{revealed}");

    let (_, json) = forewarn_cli(
        app.dir.path(),
        &["--config", config, "explain", "--customer", "c-1", "--json"],
        &[],
    );
    let json: Value = serde_json::from_str(&json).unwrap();
    let event = &json["events"][0];
    assert_eq!(event["messages"][0]["rule"], "shipment-exception-help");
    assert_eq!(event["messages"][0]["status"], "pending");
    let reasons: Vec<&str> = event["held_back"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["no_marketing_consent", "quiet_hours"]);

    let (code, out) = forewarn_cli(
        app.dir.path(),
        &["--config", config, "explain", "--customer", "c-404"],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("customer c-404: not known to forewarn"),
        "{out}"
    );
}
