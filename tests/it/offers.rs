//! Discount codes: one per outreach, unique, carried by the message, redeemable once.

use serde_json::{json, Value};

use crate::helpers::*;

/// `(idempotency key, code, customer)` of every issued code.
async fn issued(app: &App) -> Vec<(String, String, String)> {
    app.db
        .codes()
        .await
        .into_iter()
        .map(|c| (c.idempotency_key, c.code, c.customer_id))
        .collect()
}

#[tokio::test]
async fn each_outreach_carries_its_own_code_and_repeats_issue_none() {
    let app = spawn_app().await;
    let n = 40;
    for i in 0..n {
        let event = delayed_event(i);
        app.publish(&event).await;
        // A redelivery of the same event…
        app.publish(&event).await;
        // …and a second notice about the same shipment and time: `once_per` makes it the
        // same outreach, so it must not issue a second code either.
        let mut again = event.clone();
        again["id"] = json!(format!("evt-delay-{i}-again"));
        app.publish(&again).await;
    }
    app.wait_intake_idle().await;
    app.wait_sent(n as u64).await;

    let codes = issued(&app).await;
    assert_eq!(codes.len(), n);
    let mut distinct: Vec<&str> = codes.iter().map(|(_, c, _)| c.as_str()).collect();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), n, "codes must be unique");

    // The message each customer got shows the code stored for that very outreach.
    let sent = app.sandbox("sms");
    assert_each_key_once(&sent, n);
    for message in &sent {
        let key = message["key"].as_str().unwrap();
        let (_, code, customer) = codes.iter().find(|(k, _, _)| k == key).unwrap();
        assert_eq!(message["customer_id"], customer.as_str());
        let shown = format!("{}-{}-{}", &code[..4], &code[4..8], &code[8..]);
        let body = message["body"].as_str().unwrap();
        assert!(body.contains(&format!("15% 할인 코드 {shown}")), "{body}");
    }
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(&format!(
            "forewarn_discount_codes_issued_total{{rule=\"shipment-delay-apology\"}} {n}"
        )),
        "{metrics}"
    );
    // Messages, not decisions: the repeats queued nothing.
    assert!(
        metrics.contains(&format!(
            "forewarn_outreach_total{{rule=\"shipment-delay-apology\",channel=\"sms\",status=\"queued\"}} {n}"
        )),
        "{metrics}"
    );
}

pub async fn redeem(app: &App, code: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{}/v1/discount-codes/{code}/redeem",
            app.http_port
        ))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn a_code_is_redeemed_once_by_its_customer_before_it_expires() {
    let app = spawn_app().await;
    for i in 0..3 {
        app.publish(&delayed_event(i)).await;
    }
    app.wait_intake_idle().await;
    let codes = issued(&app).await;
    let code_of = |customer: &str| {
        codes
            .iter()
            .find(|(_, _, c)| c == customer)
            .map(|(_, code, _)| code.clone())
            .unwrap()
    };
    let (first, second, third) = (code_of("c-0"), code_of("c-1"), code_of("c-2"));

    // Typed the way customers type: lower case, spaces.
    let typed = format!("{} {} {}", &first[..4], &first[4..8], &first[8..]).to_lowercase();
    let (status, body) = redeem(
        &app,
        &typed,
        json!({"customer_id": "c-0", "order_id": "ord-next-1"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["percent"], 15);
    assert_eq!(body["customer_id"], "c-0");

    // Single use.
    let (status, body) = redeem(&app, &first, json!({})).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (409, Some("already_redeemed"))
    );

    // Someone else's code is refused and stays usable by its owner.
    let (status, _) = redeem(&app, &second, json!({"customer_id": "c-0"})).await;
    assert_eq!(status, 403);
    let (status, _) = redeem(&app, &second, json!({"customer_id": "c-1"})).await;
    assert_eq!(status, 200);

    // Expired (the clock moved past `valid_days`).
    app.db.expire_code(&third).await;
    let (status, body) = redeem(&app, &third, json!({})).await;
    assert_eq!((status, body["status"].as_str()), (410, Some("expired")));

    let (status, _) = redeem(&app, "ZZZZ-ZZZZ-ZZZZ", json!({})).await;
    assert_eq!(status, 404);

    let shown: Value = reqwest::get(format!(
        "http://127.0.0.1:{}/v1/discount-codes/{first}",
        app.http_port
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(shown["status"], "redeemed");
    assert_eq!(shown["redeemed_order_id"], "ord-next-1");
    assert_eq!(shown["rule_id"], "shipment-delay-apology");
}

#[tokio::test]
async fn with_an_api_token_configured_the_codes_api_wants_it() {
    let app = spawn_app_with(Options {
        env: vec![
            (
                "FOREWARN_HTTP__API_TOKEN_ENV".into(),
                "TEST_API_TOKEN".into(),
            ),
            ("TEST_API_TOKEN".into(), "checkout-s3cret".into()),
        ],
        ..Options::default()
    })
    .await;
    app.publish(&delayed_event(0)).await;
    app.wait_intake_idle().await;
    let (_, code, _) = issued(&app).await.remove(0);
    let url = format!(
        "http://127.0.0.1:{}/v1/discount-codes/{code}/redeem",
        app.http_port
    );
    let client = reqwest::Client::new();
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(status(client.post(&url).send().await.unwrap()), 401);
    assert_eq!(
        status(client.post(&url).bearer_auth("wrong").send().await.unwrap()),
        401
    );
    // Health and metrics stay open to the operators' tools.
    assert!(app.metrics().await.contains("forewarn_events_total"));
    assert_eq!(
        status(
            client
                .post(&url)
                .bearer_auth("checkout-s3cret")
                .send()
                .await
                .unwrap()
        ),
        200
    );
}
