//! The webhook gateway: a receiver verifies every request with the shared secret.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::helpers::*;

const SECRET: &str = "whsec-0123456789abcdef";

#[derive(Clone, Default)]
struct Receiver {
    received: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
}

async fn hook(
    State(receiver): State<Receiver>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    receiver.received.lock().unwrap().push((headers, body));
    (StatusCode::OK, r#"{"id":"hook-42"}"#)
}

/// What a receiver does: HMAC-SHA256 over "<timestamp>.<raw body>" with the shared secret.
fn verify(headers: &HeaderMap, body: &[u8]) -> bool {
    let timestamp = headers["forewarn-timestamp"].to_str().unwrap();
    let given = headers["forewarn-signature"].to_str().unwrap();
    let Some(hex_mac) = given.strip_prefix("v1=") else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    mac.verify_slice(&hex::decode(hex_mac).unwrap()).is_ok()
}

#[tokio::test]
async fn every_webhook_request_is_verifiable_with_the_shared_secret() {
    let receiver = Receiver::default();
    let router = Router::new()
        .route("/hooks/forewarn", post(hook))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/forewarn", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let app = spawn_app_with(Options {
        extra_config: format!(
            "\n[gateways.sms]\nkind = \"webhook\"\nurl = \"{url}\"\nsecret_env = \"TEST_WEBHOOK_SECRET\"\n"
        ),
        env: vec![("TEST_WEBHOOK_SECRET".into(), SECRET.into())],
        ..Options::default()
    })
    .await;
    for i in 0..3 {
        app.publish(&delayed_event(i)).await;
    }
    app.wait_sent(3).await;

    let received = receiver.received.lock().unwrap().clone();
    assert_eq!(received.len(), 3);
    for (headers, body) in &received {
        assert!(verify(headers, body), "signature does not verify");
        let now = chrono::Utc::now().timestamp();
        let timestamp: i64 = headers["forewarn-timestamp"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((now - timestamp).abs() < 60, "stale timestamp");
        let json: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(json["channel"], "sms");
        assert_eq!(json["rule_id"], "shipment-delay-apology");
        assert_eq!(
            headers["forewarn-idempotency-key"].to_str().unwrap(),
            json["key"]
        );
        assert!(json["message"]["body"]
            .as_str()
            .unwrap()
            .starts_with("(광고)[슈즈샵]"));
        assert!(json["message"]["to"].as_str().unwrap().starts_with("+8210"));
        // A tampered body does not verify.
        let mut tampered = body.to_vec();
        tampered[10] ^= 1;
        assert!(!verify(headers, &tampered));
    }
    let ids: Vec<String> = app
        .db
        .outbox()
        .await
        .into_iter()
        .filter_map(|m| m.provider_id)
        .collect();
    assert_eq!(ids, ["hook-42", "hook-42", "hook-42"]);
}
