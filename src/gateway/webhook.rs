//! A signed JSON POST to the shop's own endpoint, for any channel: how a shop plugs in a
//! provider forewarn does not speak, or its own app's inbox.
//!
//! Body: `{"key", "rule_id", "customer_id", "channel", "message": {…}}` where `message` is the
//! rendered content (`to`, `body` / `subject`,`text`,`html` / `title`,`body`). Headers:
//! `Forewarn-Timestamp` (Unix seconds), `Forewarn-Signature: v1=<hex>` with
//! `HMAC-SHA256(secret, "<timestamp>.<body>")`, and `Forewarn-Idempotency-Key` (the outreach
//! key, the same on every retry). The receiver recomputes the signature over the raw body and
//! refuses a stale timestamp. 2xx is accepted (a JSON `id` in the answer is kept as the
//! provider id); 429 and 5xx are retried, honouring `Retry-After`; other 4xx are final.

use std::time::Duration;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Sha256;

use super::http::{client, exchange, passing, retry_after};
use super::{Gateway, OutboundMessage, Receipt, SendOutcome};
use crate::secrets::secret_from_env;

/// `kind = "webhook"`: each message is POSTed as JSON to `url`, signed with HMAC-SHA256 using
/// the secret in the environment variable `secret_env`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The endpoint.
    pub url: String,
    /// Name of the environment variable holding the shared secret.
    #[serde(default = "WebhookConfig::default_secret_env")]
    pub secret_env: String,
    /// A request not answered in this time is retried.
    #[serde(
        default = "crate::gateway::settings::default_timeout",
        with = "humantime_serde"
    )]
    pub timeout: Duration,
}

impl WebhookConfig {
    fn default_secret_env() -> String {
        "FOREWARN_WEBHOOK_SECRET".into()
    }
}

/// Header carrying the signature.
pub const SIGNATURE_HEADER: &str = "Forewarn-Signature";
/// Header carrying the signed timestamp.
pub const TIMESTAMP_HEADER: &str = "Forewarn-Timestamp";
/// Header carrying the outreach key.
pub const IDEMPOTENCY_HEADER: &str = "Forewarn-Idempotency-Key";

/// The webhook gateway.
pub struct WebhookGateway {
    http: reqwest::Client,
    url: String,
    secret: String,
}

impl WebhookGateway {
    /// Reads the secret from the environment variable the config names.
    pub fn new(config: &WebhookConfig) -> Result<Self, String> {
        let secret = secret_from_env("webhook secret", &config.secret_env)?;
        if secret.len() < 16 {
            return Err(format!(
                "the webhook secret in {} is shorter than 16 characters",
                config.secret_env
            ));
        }
        Ok(WebhookGateway {
            http: client(config.timeout)?,
            url: config.url.clone(),
            secret,
        })
    }
}

/// `v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

#[async_trait]
impl Gateway for WebhookGateway {
    fn name(&self) -> &str {
        "webhook"
    }

    async fn send(&self, message: &OutboundMessage<'_>) -> SendOutcome {
        let mut content = match serde_json::to_value(message.content) {
            Ok(content) => content,
            Err(e) => return SendOutcome::reject(format!("cannot encode the message: {e}")),
        };
        if let Value::Object(map) = &mut content {
            map.remove("channel");
        }
        let body = json!({
            "key": message.key.as_str(),
            "rule_id": message.rule_id,
            "customer_id": message.customer_id,
            "channel": message.content.channel().as_str(),
            "message": content,
        })
        .to_string();
        let timestamp = chrono::Utc::now().timestamp();
        let request = self
            .http
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(
                SIGNATURE_HEADER,
                signature(&self.secret, timestamp, body.as_bytes()),
            )
            .header(IDEMPOTENCY_HEADER, message.key.as_str())
            .body(body);
        let reply = match exchange(request).await {
            Ok(reply) => reply,
            Err(outcome) => return outcome,
        };
        if reply.status.is_success() {
            let provider_id = serde_json::from_str::<Value>(reply.text())
                .ok()
                .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_default();
            return SendOutcome::Sent(Receipt { provider_id });
        }
        let reason = format!("webhook HTTP {}", reply.status.as_u16());
        if passing(reply.status) {
            SendOutcome::Retry {
                after: retry_after(&reply.headers),
                reason,
            }
        } else {
            SendOutcome::reject(reason)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_covers_the_timestamp_and_the_body() {
        let a = signature("0123456789abcdef", 1_795_000_000, b"{}");
        assert!(a.starts_with("v1=") && a.len() == 3 + 64, "{a}");
        assert_ne!(a, signature("0123456789abcdef", 1_795_000_001, b"{}"));
        assert_ne!(a, signature("0123456789abcdef", 1_795_000_000, b"{ }"));
        assert_ne!(a, signature("fedcba9876543210", 1_795_000_000, b"{}"));
        // RFC 4231 test case 2, as a check that this is plain HMAC-SHA256.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
