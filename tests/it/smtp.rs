//! E-mail through SMTP: a real SMTP conversation with a sink started by the test, and the
//! received message parsed as a mail client would.

use std::sync::{Arc, Mutex};

use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::helpers::*;

/// A minimal SMTP server (RFC 5321 subset: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT)
/// that keeps each message's envelope and raw data.
/// One message as the sink received it: `MAIL FROM`, `RCPT TO`s and the raw data.
type Received = (String, Vec<String>, Vec<u8>);

#[derive(Clone, Default)]
struct SmtpSink {
    messages: Arc<Mutex<Vec<Received>>>,
}

impl SmtpSink {
    async fn start() -> (SmtpSink, String) {
        let sink = SmtpSink::default();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("smtp://{}", listener.local_addr().unwrap());
        let accepting = sink.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let sink = accepting.clone();
                tokio::spawn(async move { sink.converse(stream).await });
            }
        });
        (sink, url)
    }

    async fn converse(&self, stream: tokio::net::TcpStream) {
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read);
        write.write_all(b"220 sink.test ESMTP\r\n").await.unwrap();
        let (mut from, mut to) = (String::new(), Vec::new());
        let mut line = String::new();
        loop {
            line.clear();
            if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let command = line.trim_end().to_ascii_uppercase();
            let reply: &[u8] = if command.starts_with("EHLO") {
                b"250-sink.test\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
            } else if command.starts_with("HELO") || command.starts_with("NOOP") {
                b"250 OK\r\n"
            } else if command.starts_with("RSET") {
                from.clear();
                to.clear();
                b"250 OK\r\n"
            } else if command.starts_with("MAIL FROM:") {
                from = line.trim_end()[10..].to_owned();
                b"250 OK\r\n"
            } else if command.starts_with("RCPT TO:") {
                to.push(line.trim_end()[8..].to_owned());
                b"250 OK\r\n"
            } else if command == "DATA" {
                write
                    .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .await
                    .unwrap();
                let mut data = Vec::new();
                loop {
                    line.clear();
                    lines.read_line(&mut line).await.unwrap();
                    if line == ".\r\n" {
                        break;
                    }
                    // Dot-unstuffing.
                    let text = line.strip_prefix('.').unwrap_or(&line);
                    data.extend_from_slice(text.as_bytes());
                }
                self.messages
                    .lock()
                    .unwrap()
                    .push((from.clone(), to.clone(), data));
                b"250 OK queued\r\n"
            } else if command == "QUIT" {
                write.write_all(b"221 Bye\r\n").await.unwrap();
                return;
            } else {
                b"502 Command not implemented\r\n"
            };
            write.write_all(reply).await.unwrap();
        }
    }
}

async fn spawn_with_smtp(extra_rules: Option<String>) -> (App, SmtpSink) {
    let (sink, url) = SmtpSink::start().await;
    let app = spawn_app_with(Options {
        own_authoring: extra_rules.is_some(),
        extra_rules,
        extra_config: format!(
            "\n[gateways.email]\nkind = \"smtp\"\nurl = \"{url}\"\nfrom = \"Shoe Shop <care@shop.example>\"\nunsubscribe_url = \"https://shop.example/unsubscribe/{{key}}\"\n"
        ),
        ..Options::default()
    })
    .await;
    (app, sink)
}

/// SMTP with no unsubscribe URL of the operator's: forewarn serves the links.
async fn spawn_with_smtp_and_own_links() -> (App, SmtpSink) {
    let (sink, url) = SmtpSink::start().await;
    let app = spawn_app_with(Options {
        extra_config: format!(
            "\n[gateways.email]\nkind = \"smtp\"\nurl = \"{url}\"\nfrom = \"Shoe Shop <care@shop.example>\"\n"
        ),
        env: crate::unsubscribe::public_url_env(),
        ..Options::default()
    })
    .await;
    (app, sink)
}

fn by_email(i: usize, marketing: bool) -> serde_json::Value {
    let mut event = delayed_event(i);
    event["data"]["customer"]["channels"] = json!(["email"]);
    event["data"]["customer"]["email"] = json!(format!("customer{i}@example.com"));
    event["data"]["customer"]["consent"] = json!({"marketing": marketing});
    event
}

#[tokio::test]
async fn the_mail_has_both_parts_and_the_outreach_key_as_message_id() {
    let (app, sink) = spawn_with_smtp(None).await;
    app.publish(&by_email(1, false)).await;
    app.wait_sent(1).await;

    let messages = sink.messages.lock().unwrap().clone();
    assert_eq!(messages.len(), 1);
    let (from, to, data) = &messages[0];
    assert_eq!(from, "<care@shop.example>");
    assert_eq!(to, &["<customer1@example.com>".to_owned()]);
    let mail = mailparse::parse_mail(data).unwrap();
    let header =
        |name: &str| mailparse::MailHeaderMap::get_first_value(mail.headers.as_slice(), name);
    let key = app.db.only_message().await.idempotency_key;
    assert_eq!(header("Message-ID"), Some(format!("<{key}@shop.example>")));
    assert!(header("Subject").unwrap().starts_with("[슈즈샵]"));
    assert_eq!(mail.ctype.mimetype, "multipart/alternative");
    let types: Vec<&str> = mail
        .subparts
        .iter()
        .map(|p| p.ctype.mimetype.as_str())
        .collect();
    assert_eq!(types, ["text/plain", "text/html"]);
    let text = mail.subparts[0].get_body().unwrap();
    assert!(text.contains("김지수님, 안녕하세요."), "{text}");
    let html = mail.subparts[1].get_body().unwrap();
    assert!(html.contains("<strong>"), "{html}");
    // Service mail: no unsubscribe headers.
    assert_eq!(header("List-Unsubscribe"), None);
    let provider_id = app.db.only_message().await.provider_id.unwrap_or_default();
    assert_eq!(provider_id, format!("<{key}@shop.example>"));
}

#[tokio::test]
async fn marketing_mail_carries_one_click_unsubscribe_headers() {
    let rule = r#"
[[rule]]
id = "delay-marketing-test"
on = ["shipment.delayed"]
template = "delay-apology"
channels = ["email"]
category = "marketing"
priority = 99
"#;
    let (app, sink) = spawn_with_smtp(Some(rule.into())).await;
    app.publish(&by_email(2, true)).await;
    app.wait_sent(1).await;

    let messages = sink.messages.lock().unwrap().clone();
    let mail = mailparse::parse_mail(&messages[0].2).unwrap();
    let header =
        |name: &str| mailparse::MailHeaderMap::get_first_value(mail.headers.as_slice(), name);
    let key = app.db.only_message().await.idempotency_key;
    assert_eq!(
        header("List-Unsubscribe"),
        Some(format!("<https://shop.example/unsubscribe/{key}>"))
    );
    assert_eq!(
        header("List-Unsubscribe-Post").as_deref(),
        Some("List-Unsubscribe=One-Click")
    );
}

#[tokio::test]
async fn service_mail_carrying_an_offer_gets_forewarns_own_one_click_link() {
    let (app, sink) = spawn_with_smtp_and_own_links().await;
    // The shipped delay rule is a service message; the discount it carries makes it advertising.
    app.publish(&by_email(3, true)).await;
    app.wait_sent(1).await;
    assert_eq!(app.db.codes().await.len(), 1, "the notice carries an offer");

    let messages = sink.messages.lock().unwrap().clone();
    let mail = mailparse::parse_mail(&messages[0].2).unwrap();
    let header =
        |name: &str| mailparse::MailHeaderMap::get_first_value(mail.headers.as_slice(), name);
    let link = header("List-Unsubscribe").expect("a List-Unsubscribe header");
    let link = link
        .strip_prefix('<')
        .and_then(|l| l.strip_suffix('>'))
        .unwrap_or_else(|| panic!("{link}"));
    assert_eq!(
        header("List-Unsubscribe-Post").as_deref(),
        Some("List-Unsubscribe=One-Click")
    );
    // The same link the text part offers, and it works.
    let text = mail.subparts[0].get_body().unwrap();
    assert!(text.contains(link), "{text}");
    assert_eq!(crate::unsubscribe::one_click(&app, link).await, 200);
    assert!(app.db.opted_out("c-3", "email", "marketing").await);
}
