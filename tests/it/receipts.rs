//! Closing the loop with Twilio: status callbacks and customers' replies, each signed in the
//! test with Twilio's documented algorithm (HMAC-SHA1 of the URL and the sorted parameters,
//! keyed with the auth token) and posted as Twilio posts them.

use serde_json::{json, Value};

use crate::explain::explain;
use crate::helpers::*;
use crate::twilio::{Twilio, FROM, SID, TOKEN};

/// The URL forewarn is reached at from outside; Twilio signs the URLs under it.
const PUBLIC_URL: &str = "https://forewarn.shop.example";

/// Forewarn with SMS through a Twilio stand-in and `http.public_url` set, no callback URL of
/// its own: receipts come to forewarn.
async fn spawn() -> (App, Twilio) {
    let (twilio, url) = Twilio::start(vec![]).await;
    let app = spawn_app_with(Options {
        extra_config: format!(
            r#"
[gateways.sms]
kind = "twilio"
base_url = "{url}"
account_sid = "{SID}"
auth_token_env = "TEST_TWILIO_TOKEN"
from = "{FROM}"
"#
        ),
        env: vec![
            ("TEST_TWILIO_TOKEN".into(), TOKEN.into()),
            ("FOREWARN_HTTP__PUBLIC_URL".into(), format!("{PUBLIC_URL}/")),
            (
                "FOREWARN_UNSUBSCRIBE_SECRET".into(),
                "a-test-secret-of-more-than-32-characters".into(),
            ),
        ],
        ..Options::default()
    })
    .await;
    (app, twilio)
}

fn pairs(params: &[(&str, &str)]) -> Vec<(String, String)> {
    params
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

/// Posts `sent` to `path`, signed as Twilio signs `signed` for `signed_path`; returns the
/// status and body.
async fn post_signed(
    app: &App,
    path: &str,
    sent: &[(String, String)],
    signed_path: &str,
    signed: &[(String, String)],
) -> (u16, String) {
    let signature =
        forewarn::feedback::twilio::signature(TOKEN, &format!("{PUBLIC_URL}{signed_path}"), signed);
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}{path}", app.http_port))
        .header("X-Twilio-Signature", signature)
        .form(sent)
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.text().await.unwrap_or_default(),
    )
}

/// A status callback for `sid`, as Twilio sends one.
async fn callback(app: &App, sid: &str, status: &str, error_code: Option<&str>) -> u16 {
    let mut params = pairs(&[
        ("AccountSid", SID),
        ("ApiVersion", "2010-04-01"),
        ("From", FROM),
        ("MessageSid", sid),
        ("MessageStatus", status),
        ("SmsSid", sid),
        ("SmsStatus", status),
        ("To", "+821000000001"),
    ]);
    if let Some(code) = error_code {
        params.push(("ErrorCode".into(), code.into()));
    }
    let path = "/v1/receipts/twilio";
    post_signed(app, path, &params, path, &params).await.0
}

/// An inbound SMS from `from`, as Twilio sends one; returns the status and the TwiML.
async fn inbound(app: &App, from: &str, body: &str) -> (u16, String) {
    let sid = format!("SMin{:028}", fastrand::u64(..));
    let params = pairs(&[
        ("AccountSid", SID),
        ("Body", body),
        ("From", from),
        ("MessageSid", &sid),
        ("NumMedia", "0"),
        ("To", FROM),
    ]);
    let path = "/v1/inbound/twilio";
    post_signed(app, path, &params, path, &params).await
}

/// A customer who takes SMS first and e-mail after it.
fn delay_with_email(i: usize) -> Value {
    let mut event = delayed_event(i);
    event["data"]["customer"]["channels"] = json!(["sms", "email"]);
    event["data"]["customer"]["email"] = json!("jisoo@example.com");
    event
}

#[tokio::test]
async fn receipts_move_an_attempt_forward_only_once_and_never_back() {
    let (app, twilio) = spawn().await;
    app.publish(&delayed_event(1)).await;
    app.wait_sent(1).await;
    let received = twilio.received();
    assert_eq!(
        received[0].form["StatusCallback"],
        format!("{PUBLIC_URL}/v1/receipts/twilio")
    );
    let sid = app.db.only_message().await.provider_id.unwrap();

    // Twilio calls twice and out of order: delivered (twice), then the `sent` that should
    // have come first (twice).
    for status in ["delivered", "delivered", "sent", "sent"] {
        assert_eq!(callback(&app, &sid, status, None).await, 200, "{status}");
    }
    let attempts = app.db.attempts().await;
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].delivery.as_deref(), Some("delivered"));
    assert_eq!(app.counts().await.sent, 1);

    let (_, out) = explain(&app, "c-1", &[]);
    assert!(out.contains(": sent · delivered "), "{out}");
    let receipts = out
        .lines()
        .find(|l| l.trim_start().starts_with("receipts: "))
        .unwrap_or_else(|| panic!("no receipts line in:\n{out}"));
    let said: Vec<&str> = receipts
        .trim_start()
        .trim_start_matches("receipts: ")
        .split(", ")
        .map(|r| r.split(' ').next().unwrap())
        .collect();
    assert_eq!(said, ["delivered", "sent"], "{receipts}");
    assert!(receipts.ends_with("(changed nothing)"), "{receipts}");

    let metrics = app.metrics().await;
    for line in [
        "forewarn_deliveries_total{rule=\"shipment-delay-apology\",channel=\"sms\",status=\"delivered\"} 1",
        "forewarn_receipts_total{gateway=\"twilio\",result=\"repeat\"} 2",
        "forewarn_receipts_total{gateway=\"twilio\",result=\"behind\"} 1",
    ] {
        assert!(metrics.contains(line), "missing {line} in:\n{metrics}");
    }
    assert!(
        !metrics.contains(
            "forewarn_deliveries_total{rule=\"shipment-delay-apology\",channel=\"sms\",status=\"sent\"}"
        ),
        "a late `sent` counts for nothing"
    );

    // A message forewarn never sent is taken and ignored.
    assert_eq!(callback(&app, "SMunknown", "delivered", None).await, 200);
    assert!(app
        .metrics()
        .await
        .contains("forewarn_receipts_total{gateway=\"twilio\",result=\"unmatched\"} 1"));
}

#[tokio::test]
async fn a_request_twilio_did_not_sign_as_documented_is_refused_and_changes_nothing() {
    let (app, _twilio) = spawn().await;
    app.publish(&delay_with_email(1)).await;
    app.wait_sent(1).await;
    let sid = app.db.only_message().await.provider_id.unwrap();
    let path = "/v1/receipts/twilio";
    let undelivered = pairs(&[
        ("AccountSid", SID),
        ("ErrorCode", "30006"),
        ("MessageSid", &sid),
        ("MessageStatus", "undelivered"),
    ]);

    // Signed for one body, sent with another.
    let mut tampered = undelivered.clone();
    tampered[1].1 = "30005".into();
    assert_eq!(
        post_signed(&app, path, &tampered, path, &undelivered)
            .await
            .0,
        403
    );
    // Signed for another URL (the inbound endpoint), sent here.
    let other = "/v1/inbound/twilio";
    assert_eq!(
        post_signed(&app, path, &undelivered, other, &undelivered)
            .await
            .0,
        403
    );
    // Signed with another account's token.
    let forged = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}{path}", app.http_port))
        .header(
            "X-Twilio-Signature",
            forewarn::feedback::twilio::signature(
                "not-the-token",
                &format!("{PUBLIC_URL}{path}"),
                &undelivered,
            ),
        )
        .form(&undelivered)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403);
    // No signature at all.
    let unsigned = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}{path}", app.http_port))
        .form(&undelivered)
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status().as_u16(), 403);
    // A STOP nobody signed opts nobody out.
    let stop = pairs(&[
        ("AccountSid", SID),
        ("Body", "STOP"),
        ("From", "+821000000001"),
        ("MessageSid", "SMx"),
    ]);
    let inbound = "/v1/inbound/twilio";
    assert_eq!(post_signed(&app, inbound, &stop, path, &stop).await.0, 403);

    assert_eq!(app.db.attempts().await[0].delivery, None);
    assert_eq!(app.db.count(Table::Outbox).await, 1);
    assert_eq!(app.counts().await.sent, 1);
    assert!(app.sandbox("email").is_empty());
    assert!(app.db.opt_outs().await.is_empty());
    assert!(
        app.logged("Refused a request claiming to come from a provider")
            .len()
            >= 5
    );

    // The same request, signed as Twilio signs it, goes through.
    assert_eq!(
        post_signed(&app, path, &undelivered, path, &undelivered)
            .await
            .0,
        200
    );
    app.wait_sent(1).await;
    wait_for("the e-mail fallback", || async {
        app.sandbox("email").len() == 1
    })
    .await;
}

#[tokio::test]
async fn an_undelivered_sms_falls_back_to_e_mail_once_with_the_same_code() {
    let (app, twilio) = spawn().await;
    app.publish(&delay_with_email(1)).await;
    app.wait_sent(1).await;
    let sms = app.db.only_message().await;
    let sid = sms.provider_id.clone().unwrap();

    // Twilio reports the failure twice, then the final `failed` and a late `sent`.
    for (status, code) in [
        ("undelivered", Some("30006")),
        ("undelivered", Some("30006")),
        ("failed", Some("30006")),
        ("sent", None),
    ] {
        assert_eq!(callback(&app, &sid, status, code).await, 200, "{status}");
    }
    wait_for("the e-mail fallback to be sent", || async {
        let m = app.db.only_message().await;
        m.channel == "email" && m.status == "sent"
    })
    .await;

    assert_eq!(twilio.received().len(), 1);
    let emails = app.sandbox("email");
    assert_eq!(emails.len(), 1, "one e-mail, whatever Twilio repeated");
    let message = app.db.only_message().await;
    assert_eq!(message.idempotency_key, sms.idempotency_key);
    assert_eq!(emails[0]["key"], message.idempotency_key.as_str());
    let code = app.db.codes().await.remove(0).code;
    let shown = format!("{}-{}-{}", &code[..4], &code[4..8], &code[8..]);
    assert!(
        emails[0]["text"].as_str().unwrap().contains(&shown),
        "{}",
        emails[0]["text"]
    );
    let attempts: Vec<(String, String, Option<String>)> = app
        .db
        .attempts()
        .await
        .into_iter()
        .map(|a| (a.gateway, a.outcome, a.delivery))
        .collect();
    assert_eq!(
        attempts,
        [
            ("twilio".into(), "sent".into(), Some("undelivered".into())),
            ("sandbox".into(), "sent".into(), None),
        ]
    );

    let (_, out) = explain(&app, "c-1", &[]);
    assert!(
        out.contains(": sent · undelivered ")
            && out.contains(
                "(twilio 30006: the number is a landline or its carrier cannot take SMS)"
            ),
        "{out}"
    );
    assert!(out.contains("attempt 2 via sandbox"), "{out}");
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("forewarn_receipts_total{gateway=\"twilio\",result=\"fell_back\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_undelivered_sms_with_no_channel_left_is_failed_with_the_reason() {
    let (app, _twilio) = spawn().await;
    app.publish(&delayed_event(1)).await;
    app.wait_sent(1).await;
    let sid = app.db.only_message().await.provider_id.unwrap();
    assert_eq!(
        callback(&app, &sid, "undelivered", Some("30003")).await,
        200
    );
    let message = app.db.only_message().await;
    assert_eq!(message.status, "failed");
    assert_eq!(
        message.last_error.as_deref(),
        Some("undelivered on sms: twilio 30003: the handset is unreachable")
    );
}

#[tokio::test]
async fn stop_start_and_help_replies_do_what_they_say_in_the_customers_language() {
    let (app, twilio) = spawn().await;
    let phone = "+821000000001";
    app.publish(&delay_with_email(1)).await;
    app.wait_sent(1).await;
    assert_eq!(twilio.received().len(), 1);

    // STOP (in Korean): no TwiML message, and SMS is off for the customer.
    let (status, twiml) = inbound(&app, phone, " 수신거부 ").await;
    assert_eq!(status, 200);
    assert_eq!(
        twiml,
        r#"<?xml version="1.0" encoding="UTF-8"?><Response/>"#
    );
    assert!(app.db.opted_out("c-1", "sms", "all").await);

    // The next delay notice goes by e-mail.
    let mut second = delay_with_email(1);
    second["id"] = json!("evt-delay-1-second");
    second["data"]["shipment_id"] = json!("shp-1b");
    second["data"]["order_id"] = json!("ord-1b");
    app.publish(&second).await;
    app.wait_sent(2).await;
    assert_eq!(twilio.received().len(), 1);
    assert_eq!(app.sandbox("email").len(), 1);

    // START: SMS again.
    let (status, _) = inbound(&app, phone, "Start").await;
    assert_eq!(status, 200);
    assert!(app.db.opt_outs().await.is_empty());
    let mut third = delay_with_email(1);
    third["id"] = json!("evt-delay-1-third");
    third["data"]["shipment_id"] = json!("shp-1c");
    third["data"]["order_id"] = json!("ord-1c");
    app.publish(&third).await;
    app.wait_sent(3).await;
    assert_eq!(twilio.received().len(), 2);

    // HELP: answered from the sms-help template, in Korean for this Korean customer.
    let (status, twiml) = inbound(&app, phone, "help").await;
    assert_eq!(status, 200);
    let korean = std::fs::read_to_string(repo().join("templates/sms-help/sms.ko.hbs")).unwrap();
    assert_eq!(
        twiml,
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Message>{}</Message></Response>"#,
            korean.trim()
        )
    );
    // A stranger's HELP is answered in the default language.
    let (_, stranger) = inbound(&app, "+15551230000", "HELP").await;
    assert!(stranger.contains("Reply STOP to stop them"), "{stranger}");

    // Anything else is kept for CX.
    inbound(&app, phone, "where is my parcel? call me on +821099998888").await;
    let (_, out) = explain(&app, "c-1", &[]);
    for expected in [
        "replied 수신거부 by SMS at ",
        ": opted out of SMS",
        "replied Start by SMS at ",
        ": opted back in to SMS",
        "replied help by SMS at ",
        "replied by SMS at ",
        "\"where is my parcel? call me on +82********88\"",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    let metrics = app.metrics().await;
    for keyword in ["stop", "start", "other"] {
        let line = format!("forewarn_replies_total{{channel=\"sms\",keyword=\"{keyword}\"}} 1");
        assert!(metrics.contains(&line), "missing {line} in:\n{metrics}");
    }
    assert!(metrics.contains("forewarn_replies_total{channel=\"sms\",keyword=\"help\"} 2"));
    assert!(
        !app.log().contains(phone),
        "the sender's number is masked in the log"
    );
}

#[tokio::test]
async fn without_twilio_as_the_sms_gateway_its_endpoints_are_not_there() {
    let app = spawn_app().await;
    let response = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{}/v1/inbound/twilio",
            app.http_port
        ))
        .form(&[("Body", "STOP"), ("From", "+821000000001")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
}
