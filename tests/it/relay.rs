//! Outreach events out: every change of a message's state, and every opt-out, arrives on NATS
//! as a CloudEvent, once, in order — read back from the stream as the shop's CRM would.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::helpers::*;

/// Every event in the outreach stream, in stream order.
async fn stream_events(app: &App) -> Vec<Value> {
    let stream = app
        .js
        .get_stream("FOREWARN_OUTREACH")
        .await
        .expect("forewarn created the stream");
    let last = stream.get_info().await.unwrap().state.last_sequence;
    let mut events = Vec::new();
    for seq in 1..=last {
        let message = stream.get_raw_message(seq).await.unwrap();
        let mut event: Value = serde_json::from_slice(&message.payload).unwrap();
        event["nats_subject"] = json!(message.subject.to_string());
        events.push(event);
    }
    events
}

async fn wait_relayed(app: &App) {
    wait_for("every outreach event to be relayed", || async {
        app.db.count(Table::OutreachEvents).await == 0
    })
    .await;
}

fn relaying_options() -> Options {
    Options {
        extra_config: "\n[relay]\npoll_interval = \"20ms\"\nbatch_size = 7\n".into(),
        ..Options::default()
    }
}

#[tokio::test]
async fn every_message_is_told_queued_then_sent_once_each_in_order_across_a_sigkill() {
    let mut app = spawn_app_with(relaying_options()).await;
    let n = 40;
    for i in 0..n {
        app.publish(&delayed_event(i)).await;
    }
    // Killed mid-way: some events relayed, some written and not yet published, perhaps one
    // published and not yet forgotten.
    wait_for("some messages sent", || async {
        app.counts().await.sent >= 10
    })
    .await;
    app.kill();
    app.restart_with(relaying_options()).await;
    app.wait_sent(n as u64).await;
    wait_relayed(&app).await;

    let events = stream_events(&app).await;
    let mut ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), events.len(), "an event was stored twice");
    let mut per_message: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for event in &events {
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["source"], "forewarn");
        let status = event["data"]["status"].as_str().unwrap();
        assert_eq!(event["type"], format!("forewarn.outreach.{status}"));
        assert_eq!(event["nats_subject"], format!("forewarn.outreach.{status}"));
        assert_eq!(event["data"]["rule"], "shipment-delay-apology");
        assert_eq!(event["data"]["channel"], "sms");
        // Ids and states only: no number, no text.
        let text = event.to_string();
        assert!(!text.contains("+8210"), "{text}");
        assert!(!text.contains("죄송"), "{text}");
        per_message
            .entry(event["data"]["outreach_key"].as_str().unwrap().to_owned())
            .or_default()
            .push(status.to_owned());
    }
    assert_eq!(per_message.len(), n);
    for (key, statuses) in &per_message {
        assert_eq!(statuses, &["queued", "sent"], "{key}");
    }
    let outbox_keys: Vec<String> = app
        .db
        .outbox()
        .await
        .into_iter()
        .map(|m| m.idempotency_key)
        .collect();
    assert!(outbox_keys.iter().all(|k| per_message.contains_key(k)));
}

#[tokio::test]
async fn opt_outs_and_retractions_are_told_too() {
    let app = spawn_app_with(Options {
        dispatch: false,
        ..relaying_options()
    })
    .await;
    app.publish(
        &json!({"specversion": "1.0", "id": "optout-1", "source": "test/crm",
        "type": "customer.opted_out",
        "data": {"customer_id": "c-7", "channel": "email", "scope": "marketing"}}),
    )
    .await;
    // A delay notice, then its parcel delivered before it was sent: retracted at once.
    app.publish(&delayed_event(1)).await;
    app.publish(
        &json!({"specversion": "1.0", "id": "delivered-1", "source": "test/carrier",
        "type": "shipment.delivered",
        "data": {"shipment_id": "shp-1", "delivered_at": "2026-11-26T09:00:00Z"}}),
    )
    .await;
    app.wait_intake_idle().await;
    wait_relayed(&app).await;

    let events = stream_events(&app).await;
    let told: Vec<(String, String, String)> = events
        .iter()
        .map(|e| {
            let data = &e["data"];
            (
                data["status"].as_str().unwrap().to_owned(),
                data["customer_id"].as_str().unwrap().to_owned(),
                data["scope"]
                    .as_str()
                    .or(data["reason"].as_str())
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        told,
        [
            ("opted_out".into(), "c-7".into(), "marketing".into()),
            ("queued".into(), "c-1".into(), String::new()),
            (
                "cancelled".into(),
                "c-1".into(),
                "cancelled: the parcel was delivered".into()
            ),
        ]
    );
}
