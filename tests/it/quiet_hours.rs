//! Quiet hours: a message due while its customer should not be disturbed waits for the window's
//! end in the customer's own time zone — persisted, through restarts — and is never dropped.

use chrono::{DateTime, Duration, NaiveTime, Timelike, Utc};
use serde_json::{json, Value};

use crate::helpers::*;

/// A transactional event for a customer in `zone` (an exception with no offer).
pub(crate) fn exception(i: usize, zone: &str) -> Value {
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
pub(crate) fn window_around_now() -> (String, DateTime<Utc>) {
    let now = Utc::now();
    let hm = |t: DateTime<Utc>| format!("{:02}:{:02}", t.hour(), t.minute());
    let end = now + Duration::hours(1);
    let end = end
        .with_time(NaiveTime::from_hms_opt(end.hour(), end.minute(), 0).unwrap())
        .unwrap();
    (format!("{}-{}", hm(now - Duration::hours(1)), hm(end)), end)
}

pub(crate) fn sms_only(window: &str) -> String {
    format!(
        "marketing_sms = \"\"\nmarketing_email = \"\"\nmarketing_push = \"\"\n\
         transactional_sms = \"{window}\"\ntransactional_email = \"\"\ntransactional_push = \"\""
    )
}

async fn next_attempt(app: &App, customer: &str) -> (String, i64) {
    let message = app.db.outbox_of(customer).await;
    (message.status, message.next_attempt_at)
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
    assert_eq!(app.db.outbox_of("c-1").await.attempts, 0);
}
