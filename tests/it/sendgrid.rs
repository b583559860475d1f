//! E-mail through SendGrid: a local stand-in checks the v3 Mail Send request as SendGrid
//! validates it and answers as SendGrid documents.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

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
            "\n[gateways.email]\nkind = \"sendgrid\"\nbase_url = \"{url}\"\napi_key_env = \"TEST_SENDGRID_KEY\"\nfrom = \"Shoe Shop <care@shop.example>\"\n"
        ),
        env: vec![("TEST_SENDGRID_KEY".into(), KEY.into())],
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
