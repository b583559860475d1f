//! One-click unsubscribe (RFC 8058) served by forewarn: the link a message carries, followed
//! by a real HTTP client as a mailbox provider or a person would.

use serde_json::{json, Value};

use crate::helpers::*;

/// The URL forewarn is reached at from outside.
pub(crate) const PUBLIC_URL: &str = "https://forewarn.shop.example";

/// The environment that makes forewarn serve its own links.
pub(crate) fn public_url_env() -> Vec<(String, String)> {
    vec![
        ("FOREWARN_HTTP__PUBLIC_URL".into(), PUBLIC_URL.into()),
        (
            "FOREWARN_UNSUBSCRIBE_SECRET".into(),
            "a-test-secret-of-more-than-32-characters".into(),
        ),
    ]
}

/// `link` (under [`PUBLIC_URL`]) at the app's own address.
fn local(app: &App, link: &str) -> String {
    let path = link
        .strip_prefix(PUBLIC_URL)
        .unwrap_or_else(|| panic!("{link} is not under {PUBLIC_URL}"));
    format!("http://127.0.0.1:{}{path}", app.http_port)
}

/// What a mailbox provider does with `List-Unsubscribe-Post`: one POST, form-encoded.
pub(crate) async fn one_click(app: &App, link: &str) -> u16 {
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(local(app, link))
        .form(&[("List-Unsubscribe", "One-Click")])
        .send()
        .await
        .unwrap();
    assert!(response.headers().get("set-cookie").is_none());
    assert!(response.headers().get("location").is_none());
    response.status().as_u16()
}

/// A delay notice for a customer reachable by e-mail only.
fn by_email(i: usize) -> Value {
    let mut event = delayed_event(i);
    let customer = event["data"]["customer"].as_object_mut().unwrap();
    customer.remove("phone");
    customer.insert("channels".into(), json!(["email"]));
    customer.insert("email".into(), json!("jisoo@example.com"));
    event
}

/// The link the e-mail's text part carries.
fn link_in(email: &Value) -> String {
    let text = email["text"].as_str().unwrap();
    let start = text
        .find(PUBLIC_URL)
        .unwrap_or_else(|| panic!("no link in:\n{text}"));
    text[start..].split_whitespace().next().unwrap().to_owned()
}

/// Forewarn serving its own links, after one delay notice went by e-mail: the app, and the
/// link the e-mail carries.
async fn one_mail_sent() -> (App, String) {
    let app = spawn_app_with(Options {
        env: public_url_env(),
        ..Options::default()
    })
    .await;
    app.publish(&by_email(1)).await;
    app.wait_sent(1).await;
    let link = link_in(&app.sandbox("email")[0]);
    (app, link)
}

#[tokio::test]
async fn a_one_click_post_opts_the_customer_out_and_an_edited_link_is_refused() {
    let (app, link) = one_mail_sent().await;

    // A token edited by one character, anywhere in it, is refused and changes nothing.
    let token_at = link.rfind('/').unwrap() + 1;
    for i in [token_at, token_at + 7, link.len() - 1] {
        let mut edited = link.clone().into_bytes();
        edited[i] = if edited[i] == b'x' { b'y' } else { b'x' };
        let edited = String::from_utf8(edited).unwrap();
        assert_eq!(one_click(&app, &edited).await, 404, "{edited}");
    }
    // A POST without RFC 8058's body is not a one-click unsubscribe.
    let bare = reqwest::Client::new()
        .post(local(&app, &link))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status().as_u16(), 400);
    // Opening the link changes nothing either: scanners open every link in a message.
    let page = reqwest::get(local(&app, &link)).await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.unwrap();
    assert!(app.db.opt_outs().await.is_empty());
    // The page asks, in the customer's language, with a button that posts the one-click body.
    assert!(html.contains("<html lang=\"ko\">"), "{html}");
    assert!(
        html.contains("마케팅 이메일을 더 이상 받지 않으시겠어요?"),
        "{html}"
    );
    assert!(
        html.contains("<form method=\"post\"><input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\"><button type=\"submit\">수신 거부</button></form>"),
        "{html}"
    );

    // The real thing: the customer is out of marketing e-mail, and only that.
    assert_eq!(one_click(&app, &link).await, 200);
    let opt_outs: Vec<String> = app
        .db
        .opt_outs()
        .await
        .into_iter()
        .map(|o| format!("{}:{}:{}", o.customer_id, o.channel, o.scope))
        .collect();
    assert_eq!(opt_outs, ["c-1:email:marketing"]);
    // Again (a provider retrying) is the same.
    assert_eq!(one_click(&app, &link).await, 200);
    assert_eq!(app.db.opt_outs().await.len(), 1);

    // The next delay notice still reaches them by e-mail, as a service message: without the
    // offer, and without a one-click link to marketing.
    let mut second = by_email(1);
    second["id"] = json!("evt-second");
    second["data"]["shipment_id"] = json!("shp-1b");
    second["data"]["order_id"] = json!("ord-1b");
    app.publish(&second).await;
    app.wait_sent(2).await;
    let emails = app.sandbox("email");
    assert_eq!(emails.len(), 2);
    let second_text = emails[1]["text"].as_str().unwrap();
    assert!(!second_text.contains("할인 코드"), "{second_text}");
    assert_ne!(
        link_in(&emails[1]),
        link,
        "a service message's link stops all e-mail"
    );
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(
            "forewarn_opt_outs_total{channel=\"email\",scope=\"marketing\",source=\"one_click\"} 1"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_multipart_one_click_post_is_understood_too() {
    let (app, link) = one_mail_sent().await;
    let boundary = "forewarn-test-boundary";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--{boundary}--\r\n"
    );
    let response = reqwest::Client::new()
        .post(local(&app, &link))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(app.db.opted_out("c-1", "email", "marketing").await);
}

#[tokio::test]
async fn a_public_url_without_the_link_secret_stops_forewarn_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = forewarn_cli(
        dir.path(),
        &["run"],
        &[
            ("FOREWARN_HTTP__PUBLIC_URL", PUBLIC_URL),
            (
                "FOREWARN_DATABASE__URL",
                &format!("sqlite://{}", dir.path().join("forewarn.db").display()),
            ),
            ("FOREWARN_NATS__URL", "nats://127.0.0.1:1"),
            (
                "FOREWARN_PATHS__RULES",
                &repo().join("rules").display().to_string(),
            ),
            (
                "FOREWARN_PATHS__TEMPLATES",
                &repo().join("templates").display().to_string(),
            ),
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FOREWARN_UNSUBSCRIBE_SECRET, which is not set"),
        "{out}"
    );
}
