//! Push through FCM HTTP v1: a local token endpoint verifies the signed JWT-bearer grant as
//! Google's does, and a local FCM checks the bearer token and message shape.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Json, Router};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};

use crate::helpers::*;

const ACCESS_TOKEN: &str = "ya29.test-access-token";

/// A send as FCM received it: the `Authorization` header and the JSON body.
type Send = (Option<String>, Value);

#[derive(Clone, Default)]
struct Google {
    /// Keeps the test's key file until the test ends.
    _keys: Option<Arc<tempfile::TempDir>>,
    token_url: Arc<Mutex<String>>,
    grants: Arc<Mutex<Vec<Value>>>,
    sends: Arc<Mutex<Vec<Send>>>,
}

/// Verifies the assertion as Google does: RS256 over "header.claims" with the account's
/// public key, the right issuer, audience (the token URI) and scope.
async fn token(
    State(google): State<Google>,
    Form(form): Form<std::collections::HashMap<String, String>>,
) -> Response {
    assert_eq!(
        form["grant_type"],
        "urn:ietf:params:oauth:grant-type:jwt-bearer"
    );
    let jwt = &form["assertion"];
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3);
    let public = STANDARD
        .decode(
            std::fs::read_to_string(repo().join("tests/fixtures/fcm-service-account.pub.der.b64"))
                .unwrap()
                .trim(),
        )
        .unwrap();
    let key = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        public,
    );
    let signed = format!("{}.{}", parts[0], parts[1]);
    let verified = key
        .verify(
            signed.as_bytes(),
            &URL_SAFE_NO_PAD.decode(parts[2]).unwrap(),
        )
        .is_ok();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    let audience = google.token_url.lock().unwrap().clone();
    let ok = verified
        && header["alg"] == "RS256"
        && header["kid"] == "test-key-1"
        && claims["iss"] == "forewarn@forewarn-test.iam.gserviceaccount.com"
        && claims["scope"] == "https://www.googleapis.com/auth/firebase.messaging"
        && claims["aud"] == audience.as_str()
        && claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap() <= 3600;
    google.grants.lock().unwrap().push(claims);
    if !ok {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant"})),
        )
            .into_response();
    }
    Json(json!({"access_token": ACCESS_TOKEN, "expires_in": 3599, "token_type": "Bearer"}))
        .into_response()
}

async fn send(
    State(google): State<Google>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let auth = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap().to_owned());
    google
        .sends
        .lock()
        .unwrap()
        .push((auth.clone(), body.clone()));
    if auth.as_deref() != Some(&*format!("Bearer {ACCESS_TOKEN}")) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": {"status": "UNAUTHENTICATED"}})),
        )
            .into_response();
    }
    if body["message"]["token"] == "fcm-dead" {
        let error = json!({"error": {"code": 404, "message": "Requested entity was not found.",
            "status": "NOT_FOUND", "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
            "errorCode": "UNREGISTERED"}]}});
        return (StatusCode::NOT_FOUND, Json(error)).into_response();
    }
    let n = google.sends.lock().unwrap().len();
    Json(json!({"name": format!("projects/forewarn-test/messages/{n}")})).into_response()
}

async fn spawn_with_fcm() -> (App, Google) {
    let keys = tempfile::tempdir().unwrap();
    let file = keys.path().join("service-account.json");
    let google = Google {
        _keys: Some(Arc::new(keys)),
        ..Google::default()
    };
    let router = Router::new()
        .route("/token", post(token))
        .route("/v1/projects/forewarn-test/messages:send", post(send))
        .with_state(google.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let token_url = format!("{base}/token");
    *google.token_url.lock().unwrap() = token_url.clone();
    // The key file, pointing at the local token endpoint as a real one points at Google's.
    let text = std::fs::read_to_string(repo().join("tests/fixtures/fcm-service-account.json"))
        .unwrap()
        .replace("TOKEN_URI", &token_url);
    std::fs::write(&file, text).unwrap();
    let app = spawn_app_with(Options {
        extra_config: format!(
            "\n[gateways.push]\nkind = \"fcm\"\nbase_url = \"{base}\"\nproject_id = \"forewarn-test\"\ncredentials_file = \"{}\"\n",
            file.display()
        ),
        ..Options::default()
    })
    .await;
    (app, google)
}

fn by_push(i: usize, tokens: &[&str], channels: &[&str]) -> Value {
    let mut event = delayed_event(i);
    event["data"]["customer"]["push_tokens"] = json!(tokens);
    event["data"]["customer"]["channels"] = json!(channels);
    event
}

#[tokio::test]
async fn fcm_gets_a_verified_token_once_then_one_message_per_device() {
    let (app, google) = spawn_with_fcm().await;
    app.publish(&by_push(1, &["fcm-a", "fcm-b"], &["push"]))
        .await;
    app.wait_sent(1).await;
    app.publish(&by_push(2, &["fcm-c"], &["push"])).await;
    app.wait_sent(2).await;

    // One token exchange, cached for the second message.
    assert_eq!(google.grants.lock().unwrap().len(), 1);
    let sends = google.sends.lock().unwrap().clone();
    assert_eq!(sends.len(), 3);
    for (auth, body) in &sends {
        assert_eq!(auth.as_deref(), Some(&*format!("Bearer {ACCESS_TOKEN}")));
        let message = &body["message"];
        assert_eq!(message["notification"]["title"], "배송이 늦어지고 있어요");
        assert!(message["notification"]["body"]
            .as_str()
            .unwrap()
            .contains("도착해요"));
        assert_eq!(message["data"]["rule"], "shipment-delay-apology");
        assert_eq!(message["data"]["outreach_key"].as_str().unwrap().len(), 32);
    }
    let tokens: Vec<&str> = sends
        .iter()
        .map(|(_, b)| b["message"]["token"].as_str().unwrap())
        .collect();
    assert_eq!(tokens, ["fcm-a", "fcm-b", "fcm-c"]);
}

#[tokio::test]
async fn an_unregistered_token_is_removed_and_the_message_falls_back() {
    let (app, google) = spawn_with_fcm().await;
    app.publish(&by_push(1, &["fcm-dead"], &["push", "sms"]))
        .await;
    app.wait_sent(1).await;

    assert_eq!(google.sends.lock().unwrap().len(), 1);
    let doc = app.db.customer("c-1").await;
    assert_eq!(doc["push_tokens"], json!([]));
    assert_eq!(app.sandbox("sms").len(), 1);
    let error = app.db.attempts().await.remove(0).error.unwrap_or_default();
    assert_eq!(error, "fcm: every device token is unregistered");
}
