//! E-mail through SendGrid: a local stand-in checks the v3 Mail Send request as SendGrid
//! validates it and answers as SendGrid documents.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

use crate::helpers::*;

const KEY: &str = "SG.test-key";

#[derive(Clone, Default)]
struct Sendgrid {
    received: Arc<Mutex<Vec<(HeaderMap, Value)>>>,
    refuse: bool,
}

async fn mail_send(
    State(sendgrid): State<Sendgrid>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    sendgrid.received.lock().unwrap().push((headers, body));
    if sendgrid.refuse {
        let errors = json!({"errors": [{"message": "The from address does not match a verified Sender Identity.", "field": "from", "help": null}]});
        return (StatusCode::FORBIDDEN, Json(errors)).into_response();
    }
    let mut response = StatusCode::ACCEPTED.into_response();
    response
        .headers_mut()
        .insert("x-message-id", "sg-msg-0001".parse().unwrap());
    response
}

async fn spawn_with_sendgrid(refuse: bool) -> (App, Sendgrid) {
    spawn_sendgrid(refuse, None).await
}

/// Forewarn with e-mail through the stand-in; `webhook_key` is the Event Webhook's public key.
async fn spawn_sendgrid(refuse: bool, webhook_key: Option<&str>) -> (App, Sendgrid) {
    let sendgrid = Sendgrid {
        refuse,
        ..Sendgrid::default()
    };
    let router = Router::new()
        .route("/v3/mail/send", post(mail_send))
        .with_state(sendgrid.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let app = spawn_app_with(Options {
        extra_config: format!(
            "\n[gateways.email]\nkind = \"sendgrid\"\nbase_url = \"{url}\"\napi_key_env = \"TEST_SENDGRID_KEY\"\nfrom = \"Shoe Shop <care@shop.example>\"\n{}",
            webhook_key.map_or(String::new(), |key| format!("event_webhook_public_key = \"{key}\"\n"))
        ),
        // Forewarn's own one-click links: the delay notice carries an offer, so it is
        // advertising and needs one.
        env: [("TEST_SENDGRID_KEY".to_owned(), KEY.to_owned())]
            .into_iter()
            .chain(crate::unsubscribe::public_url_env())
            .collect(),
        ..Options::default()
    })
    .await;
    (app, sendgrid)
}

/// A delay notice for a customer who reads e-mail.
fn delayed_by_email() -> Value {
    let mut event = delayed_event(3);
    event["data"]["customer"]["channels"] = json!(["email"]);
    event["data"]["customer"]["email"] = json!("jisoo@example.com");
    event
}

#[tokio::test]
async fn sendgrid_gets_one_personalization_text_before_html_and_the_key_in_custom_args() {
    let (app, sendgrid) = spawn_with_sendgrid(false).await;
    app.publish(&delayed_by_email()).await;
    app.wait_sent(1).await;

    let received = sendgrid.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    let (headers, body) = &received[0];
    assert_eq!(
        headers[header::AUTHORIZATION].to_str().unwrap(),
        format!("Bearer {KEY}")
    );
    assert_eq!(
        headers[header::CONTENT_TYPE].to_str().unwrap(),
        "application/json"
    );
    assert_eq!(
        body["personalizations"],
        json!([{"to": [{"email": "jisoo@example.com"}]}])
    );
    assert_eq!(
        body["from"],
        json!({"email": "care@shop.example", "name": "Shoe Shop"})
    );
    assert!(body["subject"].as_str().unwrap().starts_with("[슈즈샵]"));
    let types: Vec<&str> = body["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["text/plain", "text/html"]);
    let key = app.db.only_message().await.idempotency_key;
    assert_eq!(
        body["custom_args"],
        json!({"outreach_key": key, "rule": "shipment-delay-apology"})
    );
    let provider_id = app.db.only_message().await.provider_id.unwrap_or_default();
    assert_eq!(provider_id, "sg-msg-0001");
    // The notice carries a discount: advertising, with forewarn's one-click link.
    let link = body["headers"]["List-Unsubscribe"].as_str().unwrap();
    assert!(
        link.starts_with(&format!("<{}/u/", crate::unsubscribe::PUBLIC_URL)),
        "{link}"
    );
    assert_eq!(
        body["headers"]["List-Unsubscribe-Post"],
        "List-Unsubscribe=One-Click"
    );
}

#[tokio::test]
async fn a_refused_message_is_final_on_e_mail_and_falls_back_to_the_next_channel() {
    let (app, sendgrid) = spawn_with_sendgrid(true).await;
    app.publish(&delayed_by_email()).await;
    app.wait_sent(1).await;
    // Tried once on e-mail (a 403 is not retried)…
    assert_eq!(sendgrid.received.lock().unwrap().len(), 1);
    let attempts: Vec<(String, String, Option<String>)> = app
        .db
        .attempts()
        .await
        .into_iter()
        .map(|a| (a.gateway, a.outcome, a.error))
        .collect();
    assert_eq!(
        attempts[0],
        (
            "sendgrid".to_owned(),
            "failed".to_owned(),
            Some(
                "sendgrid HTTP 403: from: The from address does not match a verified Sender Identity."
                    .to_owned()
            )
        )
    );
    // …then the rule's next channel (`channels = ["preferred", "sms", "email"]`) carried it.
    assert_eq!(attempts[1].1, "sent");
    assert_eq!(app.sandbox("sms").len(), 1);
}

/// The Event Webhook's signing key, and its public half as SendGrid's settings page shows it
/// (a base64 P-256 `SubjectPublicKeyInfo`).
fn webhook_keys() -> (EcdsaKeyPair, String) {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    // id-ecPublicKey with prime256v1, then the uncompressed point as a BIT STRING.
    let mut spki = hex_bytes("3059301306072a8648ce3d020106082a8648ce3d030107034200");
    spki.extend_from_slice(pair.public_key().as_ref());
    (pair, base64::engine::general_purpose::STANDARD.encode(spki))
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// Posts `events` as SendGrid does: the signature over `timestamp` followed by the body.
async fn post_events(app: &App, pair: &EcdsaKeyPair, timestamp: i64, events: &Value) -> u16 {
    let body = events.to_string();
    let signature = sign(pair, timestamp, &body);
    post_raw(app, Some((&signature, timestamp)), body).await
}

fn sign(pair: &EcdsaKeyPair, timestamp: i64, body: &str) -> String {
    let signed = format!("{timestamp}{body}");
    let signature = pair.sign(&SystemRandom::new(), signed.as_bytes()).unwrap();
    base64::engine::general_purpose::STANDARD.encode(signature.as_ref())
}

async fn post_raw(app: &App, signed: Option<(&str, i64)>, body: String) -> u16 {
    let mut request = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{}/v1/receipts/sendgrid",
            app.http_port
        ))
        .header("content-type", "application/json");
    if let Some((signature, timestamp)) = signed {
        request = request
            .header("X-Twilio-Email-Event-Webhook-Signature", signature)
            .header(
                "X-Twilio-Email-Event-Webhook-Timestamp",
                timestamp.to_string(),
            );
    }
    request.body(body).send().await.unwrap().status().as_u16()
}

/// Forewarn taking SendGrid's signed events, after one delay notice went by SendGrid: the
/// webhook's signing key, the app, the stand-in, the message's key and the time now.
async fn one_mail_sent() -> (EcdsaKeyPair, App, Sendgrid, String, i64) {
    let (pair, public) = webhook_keys();
    let (app, sendgrid) = spawn_sendgrid(false, Some(&public)).await;
    app.publish(&delayed_by_email()).await;
    app.wait_sent(1).await;
    let key = app.db.only_message().await.idempotency_key;
    (pair, app, sendgrid, key, chrono::Utc::now().timestamp())
}

fn event(kind: &str, id: &str, key: &str) -> Value {
    json!({"email": "jisoo@example.com", "timestamp": 1_795_000_000, "event": kind,
           "sg_event_id": id, "sg_message_id": "sg-msg-0001.filter0001", "outreach_key": key,
           "rule": "shipment-delay-apology"})
}

#[tokio::test]
async fn signed_events_are_kept_once_and_unsigned_tampered_or_stale_ones_refused() {
    let (pair, app, _sendgrid, key, now) = one_mail_sent().await;
    let delivered = json!([
        event("processed", "ev-1", &key),
        event("delivered", "ev-2", &key)
    ]);

    // Tampered: signed for one body, another sent.
    let dropped = json!([event("dropped", "ev-3", &key)]);
    let signature = sign(&pair, now, &delivered.to_string());
    assert_eq!(
        post_raw(&app, Some((&signature, now)), dropped.to_string()).await,
        403
    );
    // Stale: signed eleven minutes ago.
    assert_eq!(post_events(&app, &pair, now - 660, &dropped).await, 403);
    // Unsigned.
    assert_eq!(post_raw(&app, None, dropped.to_string()).await, 403);
    // Signed with another key.
    let (other, _) = webhook_keys();
    assert_eq!(post_events(&app, &other, now, &dropped).await, 403);
    assert_eq!(app.db.attempts().await[0].delivery, None);
    assert_eq!(app.counts().await.sent, 1);

    // Signed as SendGrid signs, twice (SendGrid retries a batch it thinks failed).
    assert_eq!(post_events(&app, &pair, now, &delivered).await, 200);
    assert_eq!(post_events(&app, &pair, now, &delivered).await, 200);
    assert_eq!(
        app.db.attempts().await[0].delivery.as_deref(),
        Some("delivered")
    );
    let metrics = app.metrics().await;
    for line in [
        "forewarn_deliveries_total{rule=\"shipment-delay-apology\",channel=\"email\",status=\"delivered\"} 1",
        "forewarn_receipts_total{gateway=\"sendgrid\",result=\"repeat\"} 2",
    ] {
        assert!(metrics.contains(line), "missing {line} in:\n{metrics}");
    }
}

#[tokio::test]
async fn a_bounce_moves_the_message_on_and_stops_mail_to_that_address_until_another_is_given() {
    let (pair, app, sendgrid, key, now) = one_mail_sent().await;
    let mut bounce = event("bounce", "ev-b", &key);
    bounce["type"] = json!("bounce");
    bounce["reason"] = json!("550 5.1.1 The email account that you tried to reach does not exist");
    assert_eq!(post_events(&app, &pair, now, &json!([bounce])).await, 200);

    // The rule's next channel carries the message, with the same key.
    wait_for("the SMS fallback", || async {
        app.sandbox("sms").len() == 1
    })
    .await;
    assert_eq!(app.sandbox("sms")[0]["key"], key.as_str());
    // The next notice does not try the address that bounced…
    let mut second = delayed_by_email();
    second["id"] = json!("evt-second");
    second["data"]["shipment_id"] = json!("shp-3b");
    second["data"]["order_id"] = json!("ord-3b");
    app.publish(&second).await;
    app.wait_sent(2).await;
    assert_eq!(sendgrid.received.lock().unwrap().len(), 1);
    assert_eq!(app.sandbox("sms").len(), 2);
    // …until the customer's record gives another.
    let mut third = delayed_by_email();
    third["id"] = json!("evt-third");
    third["data"]["shipment_id"] = json!("shp-3c");
    third["data"]["order_id"] = json!("ord-3c");
    third["data"]["customer"]["email"] = json!("jisoo.new@example.com");
    app.publish(&third).await;
    app.wait_sent(3).await;
    let received = sendgrid.received.lock().unwrap().clone();
    assert_eq!(received.len(), 2);
    assert_eq!(
        received[1].1["personalizations"][0]["to"][0]["email"],
        "jisoo.new@example.com"
    );
}

#[tokio::test]
async fn a_spam_report_opts_out_of_marketing_mail_and_an_unsubscribe_of_all_mail() {
    let (pair, app, _sendgrid, key, now) = one_mail_sent().await;
    let opt_outs = || async {
        app.db
            .opt_outs()
            .await
            .into_iter()
            .map(|o| format!("{}:{}:{}", o.customer_id, o.channel, o.scope))
            .collect::<Vec<_>>()
    };
    let spam = json!([event("spamreport", "ev-s", &key)]);
    assert_eq!(post_events(&app, &pair, now, &spam).await, 200);
    assert_eq!(opt_outs().await, ["c-3:email:marketing"]);
    let unsubscribe = json!([event("unsubscribe", "ev-u", &key)]);
    assert_eq!(post_events(&app, &pair, now, &unsubscribe).await, 200);
    assert_eq!(opt_outs().await, ["c-3:email:all"]);
    // A later spam report does not narrow it back.
    let again = json!([event("spamreport", "ev-s2", &key)]);
    assert_eq!(post_events(&app, &pair, now, &again).await, 200);
    assert_eq!(opt_outs().await, ["c-3:email:all"]);
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(
            "forewarn_opt_outs_total{channel=\"email\",scope=\"marketing\",source=\"spamreport\"}"
        ),
        "{metrics}"
    );
}
