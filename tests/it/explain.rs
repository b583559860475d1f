//! `forewarn explain`: why a customer did or didn't get a message, from the timeline alone.

use serde_json::{json, Value};

use crate::helpers::*;
use crate::quiet_hours::{exception, sms_only, window_around_now};

/// `forewarn explain --customer <customer> <extra…>` against the app's database.
pub(crate) fn explain(app: &App, customer: &str, extra: &[&str]) -> (i32, String) {
    let config = app.config_path();
    let mut args = vec![
        "--config",
        config.to_str().unwrap(),
        "explain",
        "--customer",
        customer,
    ];
    args.extend_from_slice(extra);
    forewarn_cli(app.dir.path(), &args, &[])
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

    let (code, out) = explain(&app, "c-1", &[]);
    assert_eq!(code, 0, "{out}");
    for expected in [
        "customer c-1 (J****, en-US, UTC); consent: sms not given, email not given, push not given, marketing no",
        "shipment.exception (shipment_id shp-1, order_id ord-1)",
        &format!("→ rule shipment-exception-help: SMS to +12*******01 · waiting until {}", end.format("%Y-%m-%d %H:%M UTC")),
        "− rule shipment-exception-help: sent without its offer, no_marketing_consent",
        "… rule shipment-exception-help: held, quiet_hours: sms in the customer's quiet hours",
        "risk · churn ",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    assert!(!out.contains("+12125550001"), "masked by default:\n{out}");

    let (_, revealed) = explain(&app, "c-1", &["--reveal"]);
    assert!(revealed.contains("SMS to +12125550001"), "{revealed}");
    assert!(revealed.contains("(Jamie, en-US"), "{revealed}");

    let (_, json) = explain(&app, "c-1", &["--json"]);
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

    // Only the last stretch of time: nothing in the last second… but everything in a day.
    // (The sleep is the time under test, not synchronisation: `--since` is wall-clock.)
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (_, recent) = explain(&app, "c-1", &["--since", "1s"]);
    assert!(
        recent.contains("nothing decided for this customer yet"),
        "{recent}"
    );
    let (_, day) = explain(&app, "c-1", &["--since", "1d"]);
    assert!(day.contains("shipment.exception"), "{day}");

    let (code, out) = explain(&app, "c-404", &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("customer c-404: not known to forewarn"),
        "{out}"
    );
}

#[tokio::test]
async fn explain_says_when_no_rule_matched_and_why() {
    let app = spawn_app_with(Options {
        dispatch: false,
        own_authoring: true,
        extra_rules: Some(
            "[[rule]]\nid = \"fraud-check\"\non = [\"order.cancelled\"]\n\
             when = \"data.reason == 'fraud'\"\ntemplate = \"payment-retry\"\nchannels = [\"sms\"]\n"
                .into(),
        ),
        ..Options::default()
    })
    .await;
    let mut event = exception(7, "UTC");
    event["type"] = json!("order.cancelled");
    event["data"] = json!({"order_id": "ord-7", "reason": "changed mind",
        "customer": event["data"]["customer"].clone()});
    app.publish(&event).await;
    app.wait_intake_idle().await;
    let (code, out) = explain(&app, "c-7", &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("order.cancelled (order_id ord-7)"), "{out}");
    assert!(
        out.contains("✗ no rule matched: fraud-check: `when` is false"),
        "{out}"
    );
}
