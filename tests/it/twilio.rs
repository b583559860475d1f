//! SMS through Twilio: a local stand-in checks what Twilio checks (path, HTTP Basic, form
//! fields) and answers as Twilio documents, scripted per test.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Router};

use crate::helpers::*;

pub(crate) const SID: &str = "AC00000000000000000000000000000001";
pub(crate) const TOKEN: &str = "tw-s3cret";
/// `base64("AC…01:tw-s3cret")`: what Twilio expects in `Authorization: Basic`.
const BASIC: &str = "Basic QUMwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMTp0dy1zM2NyZXQ=";
pub(crate) const FROM: &str = "+15005550006";

/// One scripted answer: status, `Retry-After`, body, and a delay before answering.
#[derive(Clone)]
pub(crate) struct Answer {
    status: u16,
    retry_after: Option<&'static str>,
    body: &'static str,
    delay: Duration,
}

fn answer(status: u16, body: &'static str) -> Answer {
    Answer {
        status,
        retry_after: None,
        body,
        delay: Duration::ZERO,
    }
}

/// A request as Twilio received it.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    at: Instant,
    account: String,
    authorization: Option<String>,
    content_type: Option<String>,
    pub(crate) form: HashMap<String, String>,
}

#[derive(Clone, Default)]
pub(crate) struct Twilio {
    script: Arc<Mutex<VecDeque<Answer>>>,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Twilio {
    /// Starts the stand-in; answers `script` in order, then 201 to everything.
    pub(crate) async fn start(script: Vec<Answer>) -> (Twilio, String) {
        let twilio = Twilio {
            script: Arc::new(Mutex::new(script.into())),
            ..Twilio::default()
        };
        let app = Router::new()
            .route(
                "/2010-04-01/Accounts/{account}/Messages.json",
                post(messages),
            )
            .with_state(twilio.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (twilio, url)
    }

    pub(crate) fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

async fn messages(
    State(twilio): State<Twilio>,
    Path(account): Path<String>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &header::HeaderValue| v.to_str().ok())
            .map(str::to_owned)
    };
    let n = {
        let mut received = twilio.received.lock().unwrap();
        received.push(Received {
            at: Instant::now(),
            account,
            authorization: text(header::AUTHORIZATION),
            content_type: text(header::CONTENT_TYPE),
            form,
        });
        received.len()
    };
    let next = twilio.script.lock().unwrap().pop_front();
    let Some(answer) = next else {
        let body = format!(r#"{{"sid":"SM{n:032}","status":"queued"}}"#);
        return (StatusCode::CREATED, body).into_response();
    };
    tokio::time::sleep(answer.delay).await;
    let mut response = (
        StatusCode::from_u16(answer.status).unwrap(),
        answer.body.to_owned(),
    )
        .into_response();
    if let Some(seconds) = answer.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, seconds.parse().unwrap());
    }
    response
}

async fn spawn_with_twilio(script: Vec<Answer>) -> (App, Twilio) {
    spawn_with_twilio_retrying(script, "50ms").await
}

async fn spawn_with_twilio_retrying(script: Vec<Answer>, retry_base: &str) -> (App, Twilio) {
    let outbox = format!("retry_base = \"{retry_base}\"\nretry_max = \"2s\"");
    spawn_twilio(script, &outbox, "", Options::default()).await
}

/// Forewarn with the SMS gateway pointed at a stand-in answering `script`: `outbox` lines go
/// into `[outbox]`, `tables` after the gateway's table.
async fn spawn_twilio(
    script: Vec<Answer>,
    outbox: &str,
    tables: &str,
    options: Options,
) -> (App, Twilio) {
    let (twilio, url) = Twilio::start(script).await;
    let app = spawn_app_with(Options {
        extra_config: format!(
            r#"{outbox}

[gateways.sms]
kind = "twilio"
base_url = "{url}"
account_sid = "{SID}"
auth_token_env = "TEST_TWILIO_TOKEN"
from = "{FROM}"
status_callback = "https://forewarn.example/twilio/status"
timeout = "500ms"

{tables}
"#
        ),
        env: vec![("TEST_TWILIO_TOKEN".into(), TOKEN.into())],
        ..options
    })
    .await;
    (app, twilio)
}

async fn outbox_row(app: &App) -> (String, i64, Option<String>, Option<String>) {
    let m = app.db.only_message().await;
    (m.status, m.attempts, m.provider_id, m.last_error)
}

async fn wait_settled(app: &App) {
    wait_for("the message to be sent or failed", || async {
        let c = app.counts().await;
        c.sent + c.failed >= 1
    })
    .await;
}

#[tokio::test]
async fn twilio_gets_the_documented_request_and_its_sid_is_recorded() {
    let (app, twilio) = spawn_with_twilio(vec![]).await;
    app.publish(&delayed_event(7)).await;
    wait_settled(&app).await;

    let received = twilio.received();
    assert_eq!(received.len(), 1);
    let request = &received[0];
    assert_eq!(request.account, SID);
    assert_eq!(request.authorization.as_deref(), Some(BASIC));
    assert_eq!(
        request.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(request.form["To"], "+821000000007");
    assert_eq!(request.form["From"], FROM);
    assert!(
        // An offer is advertising: a Korean phone gets the label the law requires.
        request.form["Body"].starts_with("(광고)[슈즈샵] 김지수님, 죄송해요.")
            && request.form["Body"].ends_with("\n무료거부 080-000-0000"),
        "{}",
        request.form["Body"]
    );
    assert_eq!(
        request.form["StatusCallback"],
        "https://forewarn.example/twilio/status"
    );
    assert_eq!(request.form.len(), 4, "{:?}", request.form.keys());

    let (status, attempts, provider_id, _) = outbox_row(&app).await;
    assert_eq!((status.as_str(), attempts), ("sent", 1));
    assert_eq!(provider_id.as_deref(), Some(&*format!("SM{:032}", 1)));
    assert!(!app.log().contains(TOKEN), "the token must never be logged");
}

#[tokio::test]
async fn passing_failures_are_retried_until_twilio_accepts_and_one_message_results() {
    let (app, twilio) = spawn_with_twilio(vec![
        answer(503, ""),
        answer(503, r#"{"code":20500,"message":"Internal error"}"#),
    ])
    .await;
    app.publish(&delayed_event(1)).await;
    wait_settled(&app).await;

    assert_eq!(twilio.received().len(), 3);
    let (status, attempts, _, _) = outbox_row(&app).await;
    assert_eq!((status.as_str(), attempts), ("sent", 3));
    let outcomes: Vec<String> = app
        .db
        .attempts()
        .await
        .into_iter()
        .map(|a| a.outcome)
        .collect();
    assert_eq!(outcomes, ["retry", "retry", "sent"]);
}

#[tokio::test]
async fn a_429_waits_at_least_its_retry_after() {
    let (app, twilio) = spawn_with_twilio(vec![Answer {
        retry_after: Some("2"),
        ..answer(429, r#"{"code":20429,"message":"Too Many Requests"}"#)
    }])
    .await;
    app.publish(&delayed_event(1)).await;
    wait_settled(&app).await;

    let received = twilio.received();
    assert_eq!(received.len(), 2);
    let waited = received[1].at - received[0].at;
    assert!(waited >= Duration::from_secs(2), "waited only {waited:?}");
}

#[tokio::test]
async fn an_invalid_number_is_final_and_not_retried() {
    let (app, twilio) = spawn_with_twilio(vec![answer(
        400,
        r#"{"code":21211,"message":"The 'To' number +821000000001 is not a valid phone number.","status":400}"#,
    )])
    .await;
    app.publish(&delayed_event(1)).await;
    wait_settled(&app).await;

    assert_eq!(twilio.received().len(), 1);
    let (status, attempts, _, error) = outbox_row(&app).await;
    assert_eq!((status.as_str(), attempts), ("failed", 1));
    assert_eq!(
        error.as_deref(),
        Some("twilio 21211 (HTTP 400): the To number is not a valid phone number")
    );
}

#[tokio::test]
async fn a_twilio_that_hangs_times_out_and_is_retried() {
    let (app, twilio) = spawn_with_twilio(vec![Answer {
        delay: Duration::from_secs(5),
        ..answer(201, r#"{"sid":"SMlate"}"#)
    }])
    .await;
    app.publish(&delayed_event(1)).await;
    wait_settled(&app).await;

    assert_eq!(twilio.received().len(), 2);
    let (status, attempts, provider_id, _) = outbox_row(&app).await;
    assert_eq!((status.as_str(), attempts), ("sent", 2));
    assert_eq!(provider_id.as_deref(), Some(&*format!("SM{:032}", 2)));
    let first_error = app.db.attempts().await.remove(0).error.unwrap_or_default();
    assert!(first_error.starts_with("timed out"), "{first_error}");
}

#[tokio::test]
async fn twilio_without_its_token_in_the_environment_stops_forewarn_with_the_variable_name() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("forewarn.toml");
    std::fs::write(
        &config,
        format!(
            "[gateways.sms]\nkind = \"twilio\"\naccount_sid = \"{SID}\"\nfrom = \"{FROM}\"\nauth_token_env = \"NOT_SET_TWILIO_TOKEN\"\n\n[http]\nenabled = false\n"
        ),
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_forewarn"))
        .args(["--config", config.to_str().unwrap(), "run"])
        .env_remove("NOT_SET_TWILIO_TOKEN")
        // Its database in the test's folder, not the checkout's.
        .env(
            "FOREWARN_DATABASE__URL",
            format!("sqlite://{}", dir.path().join("forewarn.db").display()),
        )
        .env("FOREWARN_NATS__URL", "nats://127.0.0.1:1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(
        err.contains("environment variable NOT_SET_TWILIO_TOKEN, which is not set"),
        "{err}"
    );
}

#[tokio::test]
async fn a_recipient_who_replied_stop_is_opted_out_and_never_texted_again() {
    let (app, twilio) = spawn_with_twilio(vec![answer(
        400,
        r#"{"code":21610,"message":"Attempt to send to unsubscribed recipient","status":400}"#,
    )])
    .await;
    app.publish(&delayed_event(1)).await;
    wait_settled(&app).await;
    let (status, _, _, error) = outbox_row(&app).await;
    assert_eq!(status, "failed");
    assert!(error.unwrap().starts_with("twilio 21610"));
    assert!(app.db.opted_out("c-1", "sms", "all").await);

    // The next delay for the same customer (another shipment) queues nothing on SMS.
    let mut next = delayed_event(1);
    next["id"] = serde_json::json!("evt-delay-1-second-parcel");
    next["data"]["shipment_id"] = serde_json::json!("shp-1b");
    app.publish(&next).await;
    app.wait_intake_idle().await;
    assert_eq!(app.db.count(Table::Outbox).await, 1);
    assert_eq!(twilio.received().len(), 1);
}

#[tokio::test]
async fn an_invalid_number_falls_back_to_e_mail_with_the_same_offer() {
    let (app, twilio) = spawn_with_twilio(vec![answer(
        400,
        r#"{"code":21211,"message":"The 'To' number is not a valid phone number.","status":400}"#,
    )])
    .await;
    let mut event = delayed_event(1);
    event["data"]["customer"]["channels"] = serde_json::json!(["sms", "email"]);
    event["data"]["customer"]["email"] = serde_json::json!("jisoo@example.com");
    app.publish(&event).await;
    app.wait_sent(1).await;

    assert_eq!(twilio.received().len(), 1);
    let emails = app.sandbox("email");
    assert_eq!(emails.len(), 1);
    let message = app.db.only_message().await;
    let (channel, status, key) = (message.channel, message.status, message.idempotency_key);
    assert_eq!((channel.as_str(), status.as_str()), ("email", "sent"));
    assert_eq!(emails[0]["key"], key.as_str());
    assert_eq!(emails[0]["to"], "jisoo@example.com");
    // The customer sees the code issued with the outreach, not a second one.
    let code = app.db.codes().await.remove(0).code;
    let shown = format!("{}-{}-{}", &code[..4], &code[4..8], &code[8..]);
    assert!(
        emails[0]["text"].as_str().unwrap().contains(&shown),
        "{}",
        emails[0]["text"]
    );
    let attempts: Vec<(String, String)> = app
        .db
        .attempts()
        .await
        .into_iter()
        .map(|a| (a.gateway, a.outcome))
        .collect();
    assert_eq!(
        attempts,
        [
            ("twilio".to_owned(), "failed".to_owned()),
            ("sandbox".to_owned(), "sent".to_owned())
        ]
    );
}

#[tokio::test]
async fn killed_while_a_retry_waits_it_is_sent_once_after_restart() {
    let (mut app, twilio) = spawn_with_twilio_retrying(vec![answer(503, "")], "1500ms").await;
    app.publish(&delayed_event(1)).await;
    wait_for("the first attempt to be recorded", || async {
        app.db.count(Table::Attempts).await == 1
    })
    .await;
    app.kill();
    assert_eq!(outbox_row(&app).await.0, "pending");

    app.restart_with(Options::default()).await;
    wait_settled(&app).await;
    assert_eq!(twilio.received().len(), 2);
    let (status, attempts, _, _) = outbox_row(&app).await;
    assert_eq!((status.as_str(), attempts), ("sent", 2));
}

#[tokio::test]
async fn a_twilio_that_keeps_failing_is_left_alone_then_probed_back() {
    let (app, twilio) = spawn_twilio(
        vec![answer(503, ""); 4],
        "retry_base = \"50ms\"\nretry_max = \"100ms\"\nmax_attempts = 20",
        "[pacing.sms]\nbreaker_failures = 3\nbreaker_cooldown = \"1s\"",
        // One request at a time, so each outcome is known before the next call.
        Options {
            concurrency: 1,
            ..Options::default()
        },
    )
    .await;
    for i in 0..5 {
        app.publish(&delayed_event(i)).await;
    }
    app.wait_sent(5).await;

    // Three failures open the circuit; the probe after the cool-down fails and reopens it;
    // the next probe succeeds and the rest follow: 4 failed requests, 5 good ones.
    let received = twilio.received();
    assert_eq!(received.len(), 9);
    let gap = |a: usize, b: usize| received[b].at - received[a].at;
    assert!(
        gap(2, 3) >= Duration::from_millis(950),
        "probed after {:?}",
        gap(2, 3)
    );
    assert!(
        gap(3, 4) >= Duration::from_millis(950),
        "probed after {:?}",
        gap(3, 4)
    );
    // Deferred sends were not attempts: 9 requests, 9 attempt rows.
    assert_eq!(app.db.count(Table::Attempts).await, 9);
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("forewarn_gateway_circuit_opened_total{gateway=\"twilio\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_message_still_failing_after_max_age_is_given_up_not_retried_forever() {
    let (app, twilio) = spawn_twilio(
        vec![answer(503, ""); 1000],
        "retry_base = \"50ms\"\nretry_max = \"100ms\"\nmax_attempts = 1000\nmax_age = \"700ms\"",
        "[pacing.sms]\nbreaker_failures = 1000",
        Options::default(),
    )
    .await;
    app.publish(&delayed_event(1)).await;
    wait_settled(&app).await;
    let (status, attempts, _, error) = outbox_row(&app).await;
    assert_eq!(status, "failed");
    assert!(attempts > 1);
    let error = error.unwrap();
    assert!(error.starts_with("gave up: still undelivered"), "{error}");
    assert!(error.contains("(outbox.max_age)"), "{error}");
    assert_eq!(twilio.received().len() as i64, attempts);
}

#[tokio::test]
async fn a_stop_reply_opts_out_of_sms_only_and_the_message_falls_back_to_e_mail() {
    let (app, twilio) = spawn_with_twilio(vec![answer(
        400,
        r#"{"code":21610,"message":"Attempt to send to unsubscribed recipient","status":400}"#,
    )])
    .await;
    let mut event = delayed_event(1);
    event["data"]["customer"]["channels"] = serde_json::json!(["sms", "email"]);
    event["data"]["customer"]["email"] = serde_json::json!("jisoo@example.com");
    app.publish(&event).await;
    app.wait_sent(1).await;

    assert_eq!(twilio.received().len(), 1);
    assert_eq!(app.sandbox("email").len(), 1);
    // The refusal was of SMS, whatever channel the outreach moved on to.
    let opt_outs: Vec<String> = app
        .db
        .opt_outs()
        .await
        .into_iter()
        .filter(|o| o.customer_id == "c-1")
        .map(|o| format!("{}:{}", o.channel, o.scope))
        .collect();
    assert_eq!(opt_outs, ["sms:all"]);
}
