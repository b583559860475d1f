//! E-mail through SendGrid's v3 Mail Send API.
//!
//! `POST {base_url}/v3/mail/send`, `Authorization: Bearer <key>`, a JSON body with one
//! personalization, `content` as `text/plain` then `text/html` (SendGrid requires that order),
//! and `custom_args.outreach_key` carrying forewarn's idempotency key (no personal data) so
//! SendGrid's event webhook can be matched to the outreach. 202 means accepted; the message id
//! is the `X-Message-Id` header.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::http::{client, exchange, passing, retry_after};
use super::{Gateway, OutboundMessage, Receipt, SendOutcome};
use crate::domain::MessageContent;
use crate::secrets::secret_from_env;

/// `[gateways.email] kind = "sendgrid"`. The API key is read from the environment variable
/// named by `api_key_env`, never from this file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendgridConfig {
    /// API root.
    #[serde(default = "SendgridConfig::default_base_url")]
    pub base_url: String,
    /// Name of the environment variable holding the API key.
    #[serde(default = "SendgridConfig::default_key_env")]
    pub api_key_env: String,
    /// Sender, `Name <address>` or a bare address, from a domain verified in SendGrid.
    pub from: String,
    /// The operator's own one-click unsubscribe URL for marketing mail, used instead of
    /// forewarn's (`http.public_url`); `{key}` becomes the outreach key. Marketing mail is
    /// refused with neither.
    #[serde(default)]
    pub unsubscribe_url: Option<String>,
    /// The verification key of SendGrid's signed Event Webhook (base64, as its settings page
    /// shows it; a public key, so not a secret). With it, forewarn takes the webhook's events
    /// at `/v1/receipts/sendgrid`; without it that endpoint is not served.
    #[serde(default)]
    pub event_webhook_public_key: Option<String>,
    /// A request not answered in this time is retried.
    #[serde(
        default = "crate::gateway::settings::default_timeout",
        with = "humantime_serde"
    )]
    pub timeout: Duration,
}

impl SendgridConfig {
    fn default_base_url() -> String {
        "https://api.sendgrid.com".into()
    }
    fn default_key_env() -> String {
        "SENDGRID_API_KEY".into()
    }
}

/// The SendGrid gateway.
pub struct SendgridGateway {
    http: reqwest::Client,
    url: String,
    api_key: String,
    from: Value,
    unsubscribe_url: Option<String>,
}

impl SendgridGateway {
    /// Reads the API key from the environment variable the config names.
    pub fn new(config: &SendgridConfig) -> Result<Self, String> {
        let api_key = secret_from_env("SendGrid API key", &config.api_key_env)?;
        Ok(SendgridGateway {
            http: client(config.timeout)?,
            url: format!("{}/v3/mail/send", config.base_url.trim_end_matches('/')),
            api_key,
            from: sender(&config.from)?,
            unsubscribe_url: config.unsubscribe_url.clone(),
        })
    }
}

/// `Shop <care@shop.example>` → `{"name": "Shop", "email": "care@shop.example"}`.
fn sender(raw: &str) -> Result<Value, String> {
    let raw = raw.trim();
    let (name, email) = match (raw.find('<'), raw.strip_suffix('>')) {
        (Some(open), Some(inner)) => (raw[..open].trim(), inner[open + 1..].trim()),
        _ => ("", raw),
    };
    if !email.contains('@') {
        return Err(format!(
            "`from` must be an address such as \"Shop <care@shop.example>\", not `{raw}`"
        ));
    }
    Ok(if name.is_empty() {
        json!({ "email": email })
    } else {
        json!({ "email": email, "name": name.trim_matches('"') })
    })
}

/// The Mail Send body for one message; marketing mail carries RFC 8058 one-click unsubscribe
/// headers built from `unsubscribe_url` (an error without it).
fn body(
    from: &Value,
    unsubscribe_url: Option<&str>,
    message: &OutboundMessage<'_>,
) -> Result<Value, String> {
    let MessageContent::Email {
        to,
        subject,
        text,
        html,
    } = message.content
    else {
        return Err(format!(
            "sendgrid sends e-mail, not {}",
            message.content.channel()
        ));
    };
    // text/plain first, then text/html: SendGrid refuses any other order.
    let mut content = Vec::with_capacity(2);
    if let Some(text) = text {
        content.push(json!({"type": "text/plain", "value": text}));
    }
    if let Some(html) = html {
        content.push(json!({"type": "text/html", "value": html}));
    }
    let mut body = json!({
        "personalizations": [{"to": [{"email": to}]}],
        "from": from,
        "subject": subject,
        "content": content,
        "custom_args": {"outreach_key": message.key.as_str(), "rule": message.rule_id},
    });
    if let Some(link) = message.list_unsubscribe(unsubscribe_url)? {
        body["headers"] = json!({
            "List-Unsubscribe": format!("<{link}>"),
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        });
    }
    Ok(body)
}

/// 2xx is accepted; 429 and 5xx pass (with `Retry-After`); other 4xx are final, with
/// SendGrid's first error message (which names a field, never the recipient).
fn classify(status: StatusCode, headers: &reqwest::header::HeaderMap, body: &str) -> SendOutcome {
    if status.is_success() {
        let provider_id = headers
            .get("x-message-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        return SendOutcome::Sent(Receipt { provider_id });
    }
    let detail = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| {
            let first = v.get("errors")?.get(0)?.clone();
            let message = first.get("message")?.as_str()?.to_owned();
            Some(match first.get("field").and_then(Value::as_str) {
                Some(field) => format!("{field}: {message}"),
                None => message,
            })
        })
        .unwrap_or_default();
    let reason = if detail.is_empty() {
        format!("sendgrid HTTP {}", status.as_u16())
    } else {
        format!(
            "sendgrid HTTP {}: {}",
            status.as_u16(),
            crate::telemetry::mask_text(&detail)
        )
    };
    if passing(status) {
        SendOutcome::Retry {
            after: retry_after(headers),
            reason,
        }
    } else {
        SendOutcome::reject(reason)
    }
}

#[async_trait]
impl Gateway for SendgridGateway {
    fn name(&self) -> &str {
        "sendgrid"
    }

    async fn send(&self, message: &OutboundMessage<'_>) -> SendOutcome {
        let body = match body(&self.from, self.unsubscribe_url.as_deref(), message) {
            Ok(body) => body,
            Err(reason) => return SendOutcome::reject(reason),
        };
        let request = self
            .http
            .post(&self.url)
            .bearer_auth(&self.api_key)
            .json(&body);
        match exchange(request).await {
            Ok(reply) => classify(reply.status, &reply.headers, reply.text()),
            Err(outcome) => outcome,
        }
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::{HeaderMap, HeaderValue};

    use super::*;
    use crate::domain::IdempotencyKey;

    #[test]
    fn the_sender_is_read_with_or_without_a_name() {
        assert_eq!(
            sender("Shoe Shop <care@shop.example>").unwrap(),
            json!({"email": "care@shop.example", "name": "Shoe Shop"})
        );
        assert_eq!(
            sender("care@shop.example").unwrap(),
            json!({"email": "care@shop.example"})
        );
        assert!(sender("Shoe Shop").is_err());
    }

    #[test]
    fn the_body_puts_text_before_html_and_carries_no_personal_data_in_custom_args() {
        let key = IdempotencyKey::from_stored("0123456789abcdef0123456789abcdef".into());
        let content = MessageContent::Email {
            to: "jisoo@example.com".into(),
            subject: "Late".into(),
            text: Some("plain".into()),
            html: Some("<p>html</p>".into()),
        };
        let message = OutboundMessage {
            category: crate::domain::Category::Transactional,
            key: &key,
            rule_id: "shipment-delay-apology",
            customer_id: "c-1001",
            content: &content,
            unsubscribe: None,
        };
        let body = body(&json!({"email": "care@shop.example"}), None, &message).unwrap();
        assert_eq!(
            body,
            json!({
                "personalizations": [{"to": [{"email": "jisoo@example.com"}]}],
                "from": {"email": "care@shop.example"},
                "subject": "Late",
                "content": [{"type": "text/plain", "value": "plain"},
                            {"type": "text/html", "value": "<p>html</p>"}],
                "custom_args": {"outreach_key": "0123456789abcdef0123456789abcdef",
                                "rule": "shipment-delay-apology"},
            })
        );
    }

    #[test]
    fn answers_are_classified() {
        let mut headers = HeaderMap::new();
        headers.insert("x-message-id", HeaderValue::from_static("abc.123"));
        assert_eq!(
            classify(StatusCode::ACCEPTED, &headers, ""),
            SendOutcome::Sent(Receipt {
                provider_id: "abc.123".into()
            })
        );
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), ""),
            SendOutcome::Retry { .. }
        ));
        assert!(matches!(
            classify(StatusCode::BAD_GATEWAY, &HeaderMap::new(), ""),
            SendOutcome::Retry { .. }
        ));
        let rejected = classify(
            StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            r#"{"errors":[{"message":"Does not contain a valid address.","field":"personalizations.0.to.0.email"}]}"#,
        );
        assert_eq!(
            rejected,
            SendOutcome::reject(
                "sendgrid HTTP 400: personalizations.0.to.0.email: Does not contain a valid address."
            )
        );
    }

    #[test]
    fn marketing_mail_carries_one_click_unsubscribe_headers_or_is_refused() {
        let key = IdempotencyKey::from_stored("0123456789abcdef0123456789abcdef".into());
        let content = MessageContent::Email {
            to: "jisoo@example.com".into(),
            subject: "New season".into(),
            text: Some("plain".into()),
            html: None,
        };
        let message = OutboundMessage {
            key: &key,
            rule_id: "promo",
            customer_id: "c-1001",
            category: crate::domain::Category::Marketing,
            content: &content,
            unsubscribe: None,
        };
        let from = json!({"email": "care@shop.example"});
        let built = body(&from, Some("https://shop.example/u/{key}"), &message).unwrap();
        assert_eq!(
            built["headers"],
            json!({
                "List-Unsubscribe": "<https://shop.example/u/0123456789abcdef0123456789abcdef>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            })
        );
        assert!(body(&from, None, &message)
            .unwrap_err()
            .contains("unsubscribe_url"));
        // Forewarn's own link when the operator has none.
        let own = OutboundMessage {
            unsubscribe: Some("https://forewarn.example/u/abc.def"),
            ..message
        };
        assert_eq!(
            body(&from, None, &own).unwrap()["headers"]["List-Unsubscribe"],
            "<https://forewarn.example/u/abc.def>"
        );
    }
}
