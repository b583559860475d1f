//! `[gateways.<channel>]` and `[pacing.<channel>]`: which provider sends each channel, and how
//! fast. Each provider's own settings live in its file.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[gateways]`: one provider per channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewaySettings {
    /// `[gateways.sms]`.
    pub sms: GatewayConfig,
    /// `[gateways.email]`.
    pub email: GatewayConfig,
    /// `[gateways.push]`.
    pub push: GatewayConfig,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        GatewaySettings {
            sms: GatewayConfig::Sandbox,
            email: GatewayConfig::Sandbox,
            push: GatewayConfig::Sandbox,
        }
    }
}

/// A gateway, chosen by `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum GatewayConfig {
    /// Appends each message to `<paths.outbox>/<channel>.jsonl`; needs no credentials.
    Sandbox,
    /// Twilio's Messages API (SMS only).
    Twilio(super::twilio::TwilioConfig),
    /// SendGrid's v3 Mail Send API (e-mail only).
    Sendgrid(super::sendgrid::SendgridConfig),
    /// A signed JSON POST to your own endpoint (any channel).
    Webhook(super::webhook::WebhookConfig),
    /// An SMTP relay (e-mail only).
    Smtp(super::smtp::SmtpConfig),
    /// Firebase Cloud Messaging HTTP v1 (push only).
    Fcm(super::fcm::FcmConfig),
}

/// `[pacing]`: per-channel limits, to stay inside each provider's rate limits and keep a burst
/// (an outage notice to a million customers) from being throttled into retries.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PacingSettings {
    /// `[pacing.sms]`.
    pub sms: Pacing,
    /// `[pacing.email]`.
    pub email: Pacing,
    /// `[pacing.push]`.
    pub push: Pacing,
}

/// Limits for one gateway. No rate or concurrency set means as fast as `outbox.concurrency`
/// allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pacing {
    /// Sustained requests per second (a token bucket).
    pub rate_per_second: Option<std::num::NonZeroU32>,
    /// Requests allowed at once above the sustained rate. Default: one second's worth.
    pub burst: Option<std::num::NonZeroU32>,
    /// Requests in flight to this gateway at most.
    pub concurrency: Option<std::num::NonZeroUsize>,
    /// Consecutive passing failures (timeouts, 5xx, 429) that open the circuit: the gateway
    /// is left alone for `breaker_cooldown`, then probed with one request.
    pub breaker_failures: std::num::NonZeroU32,
    /// How long an open circuit waits before probing.
    #[serde(with = "humantime_serde")]
    pub breaker_cooldown: Duration,
}

impl Default for Pacing {
    fn default() -> Self {
        Pacing {
            rate_per_second: None,
            burst: None,
            concurrency: None,
            breaker_failures: std::num::NonZeroU32::new(5).expect("5 is not zero"),
            breaker_cooldown: Duration::from_secs(30),
        }
    }
}

/// How long a provider may take to answer one request before it is retried, unless its
/// `timeout` says otherwise.
pub(crate) fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
