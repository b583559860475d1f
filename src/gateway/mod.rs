//! ⑦ Gateways: the providers that carry a message to a customer.
//!
//! One [`Gateway`] per channel, chosen in config. Every provider answers in the same terms —
//! [`SendOutcome`] — so retry, fallback and pacing live once, in the dispatcher, and a new
//! provider is one new module here.

mod breaker;
mod fcm;
mod http;
mod paced;
mod sandbox;
mod sendgrid;
mod settings;
mod smtp;
mod twilio;
mod webhook;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::config::Settings;
pub use crate::domain::AddressEffect;
use crate::domain::{Category, Channel, IdempotencyKey, MessageContent};

pub use breaker::Breaker;
pub use fcm::{FcmConfig, FcmGateway};
pub use http::install_tls_provider;
pub use paced::Paced;
pub use sandbox::SandboxGateway;
pub use sendgrid::{SendgridConfig, SendgridGateway};
pub use settings::{GatewayConfig, GatewaySettings, Pacing, PacingSettings};
pub use smtp::{SmtpConfig, SmtpGateway};
pub(crate) use twilio::describe as twilio_error_in_words;
pub use twilio::{TwilioConfig, TwilioGateway};
pub use webhook::{
    signature as webhook_signature, WebhookConfig, WebhookGateway,
    IDEMPOTENCY_HEADER as WEBHOOK_IDEMPOTENCY_HEADER, SIGNATURE_HEADER as WEBHOOK_SIGNATURE_HEADER,
    TIMESTAMP_HEADER as WEBHOOK_TIMESTAMP_HEADER,
};

/// A message handed to a gateway.
#[derive(Debug, Clone, Copy)]
pub struct OutboundMessage<'a> {
    /// Idempotency key; providers that accept one get it, so a resend is recognised.
    pub key: &'a IdempotencyKey,
    /// The rule that decided it.
    pub rule_id: &'a str,
    /// The recipient's id (not an address).
    pub customer_id: &'a str,
    /// Marketing mail carries unsubscribe headers: a marketing rule's, or any with an offer.
    pub category: Category,
    /// What to send, with the address.
    pub content: &'a MessageContent,
    /// Forewarn's own one-click unsubscribe link, for a marketing e-mail when forewarn serves
    /// the links (`http.public_url`).
    pub unsubscribe: Option<&'a str>,
}

impl OutboundMessage<'_> {
    /// The `List-Unsubscribe` link of a marketing e-mail (none for service mail): the
    /// operator's own `unsubscribe_url` (`{key}` replaced) when configured, else forewarn's.
    /// Marketing mail without either is refused: mailbox providers require the header.
    pub fn list_unsubscribe(&self, operator_url: Option<&str>) -> Result<Option<String>, String> {
        if self.category != Category::Marketing {
            return Ok(None);
        }
        match (operator_url, self.unsubscribe) {
            (Some(url), _) => Ok(Some(url.replace("{key}", self.key.as_str()))),
            (None, Some(link)) => Ok(Some(link.to_owned())),
            (None, None) => Err("marketing mail needs a one-click unsubscribe link: set \
                 http.public_url (forewarn serves the links) or [gateways.email] unsubscribe_url"
                .into()),
        }
    }
}

/// The provider's proof of acceptance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The provider's message id (Twilio `sid`, SendGrid `X-Message-Id`, …).
    pub provider_id: String,
}

/// How a send ended, in terms the dispatcher acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// Accepted by the provider.
    Sent(Receipt),
    /// A passing failure: try again, not before `after` if the provider said so.
    Retry {
        /// Provider's `Retry-After`, if any.
        after: Option<Duration>,
        /// What happened.
        reason: String,
    },
    /// The request went out and no answer came back (a timeout, a connection dropped
    /// mid-request): retried like [`Retry`](Self::Retry), but the provider may have received
    /// it, so the retry may repeat a message that arrived.
    Unanswered {
        /// What happened.
        reason: String,
    },
    /// Not attempted: the gateway is being left alone (open circuit). Not counted against
    /// the message's retry budget.
    Deferred {
        /// Try again after this long.
        after: Duration,
        /// Why.
        reason: String,
    },
    /// A failure that will not change on retry.
    Reject {
        /// What happened.
        reason: String,
        /// What the failure says about the address, when it says something lasting.
        effect: Option<AddressEffect>,
    },
}

impl SendOutcome {
    /// A final failure with nothing to learn about the address.
    pub fn reject(reason: impl Into<String>) -> Self {
        SendOutcome::Reject {
            reason: reason.into(),
            effect: None,
        }
    }
}

/// What a gateway knows about a message whose attempt was cut off by a crash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reconciliation {
    /// It was delivered; do not resend.
    Delivered(Receipt),
    /// It was not; send it.
    NotDelivered,
    /// The provider cannot say; resend (at-least-once at the provider boundary).
    Unknown,
}

/// A provider for one channel.
#[async_trait]
pub trait Gateway: Send + Sync + 'static {
    /// Name for logs, metrics and attempt records, e.g. `sandbox`.
    fn name(&self) -> &str;

    /// Sends one message. Never panics on a provider's answer; classifies it.
    async fn send(&self, message: &OutboundMessage<'_>) -> SendOutcome;

    /// Asks whether an ambiguous attempt was delivered. Most providers cannot say.
    async fn reconcile(&self, _key: &IdempotencyKey) -> Reconciliation {
        Reconciliation::Unknown
    }
}

/// The gateway of each channel.
#[derive(Clone)]
pub struct Gateways {
    sms: Arc<dyn Gateway>,
    email: Arc<dyn Gateway>,
    push: Arc<dyn Gateway>,
}

/// `sms=twilio email=smtp push=sandbox`: which provider serves each channel, for logs.
impl std::fmt::Display for Gateways {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sms={} email={} push={}",
            self.sms.name(),
            self.email.name(),
            self.push.name()
        )
    }
}

impl std::fmt::Debug for Gateways {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateways")
            .field("sms", &self.sms.name())
            .field("email", &self.email.name())
            .field("push", &self.push.name())
            .finish()
    }
}

/// A gateway that could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("gateway for {channel}: {message}")]
pub struct GatewayError {
    /// Its channel.
    pub channel: Channel,
    /// What failed.
    pub message: String,
}

impl Gateways {
    /// Builds each channel's gateway from `[gateways.<channel>]`.
    pub fn from_settings(settings: &Settings) -> Result<Self, GatewayError> {
        let build = |channel: Channel,
                     config: &GatewayConfig|
         -> Result<Arc<dyn Gateway>, GatewayError> {
            let refuse = |message: String| GatewayError { channel, message };
            if let Some((kind, only, words)) = single_channel(config) {
                if only != channel {
                    return Err(refuse(format!(
                        "`{kind}` sends {words} only; use it in [gateways.{only}]"
                    )));
                }
            }
            Ok(match config {
                GatewayConfig::Sandbox => Arc::new(
                    SandboxGateway::open(settings.sandbox_dir(), channel).map_err(|e| {
                        refuse(format!(
                            "cannot open the sandbox file in {}: {e}",
                            settings.sandbox_dir().display()
                        ))
                    })?,
                ),
                GatewayConfig::Twilio(c) => Arc::new(
                    TwilioGateway::new(c, settings.http.public_url.as_ref()).map_err(refuse)?,
                ),
                GatewayConfig::Sendgrid(c) => Arc::new(SendgridGateway::new(c).map_err(refuse)?),
                GatewayConfig::Smtp(c) => Arc::new(SmtpGateway::new(c).map_err(refuse)?),
                GatewayConfig::Fcm(c) => Arc::new(FcmGateway::new(c).map_err(refuse)?),
                GatewayConfig::Webhook(c) => Arc::new(WebhookGateway::new(c).map_err(refuse)?),
            })
        };
        let pacing = &settings.pacing;
        for (channel, limits) in [
            (Channel::Sms, &pacing.sms),
            (Channel::Email, &pacing.email),
            (Channel::Push, &pacing.push),
        ] {
            // A claimed batch must be sent well within its lease, or another process takes
            // the rest over as ambiguous and may send them twice.
            if let Some(rate) = limits.rate_per_second {
                let batch_seconds = settings.outbox.batch_size as f64 / f64::from(rate.get());
                if batch_seconds > settings.outbox.claim_lease.as_secs_f64() / 2.0 {
                    tracing::warn!(
                        %channel,
                        batch_seconds,
                        claim_lease = ?settings.outbox.claim_lease,
                        "pacing.{channel}.rate_per_second sends one outbox batch in more than half \
                         the claim lease; lower outbox.batch_size or raise outbox.claim_lease."
                    );
                }
            }
        }
        Ok(Gateways {
            sms: Breaker::wrap(
                Paced::wrap(build(Channel::Sms, &settings.gateways.sms)?, &pacing.sms),
                &pacing.sms,
            ),
            email: Breaker::wrap(
                Paced::wrap(
                    build(Channel::Email, &settings.gateways.email)?,
                    &pacing.email,
                ),
                &pacing.email,
            ),
            push: Breaker::wrap(
                Paced::wrap(build(Channel::Push, &settings.gateways.push)?, &pacing.push),
                &pacing.push,
            ),
        })
    }

    /// The gateway for `channel`.
    pub fn for_channel(&self, channel: Channel) -> &Arc<dyn Gateway> {
        match channel {
            Channel::Sms => &self.sms,
            Channel::Email => &self.email,
            Channel::Push => &self.push,
        }
    }
}

/// The one channel a provider carries, with its kind and how to say the channel; `None` for
/// those that carry any.
fn single_channel(config: &GatewayConfig) -> Option<(&'static str, Channel, &'static str)> {
    match config {
        GatewayConfig::Twilio(_) => Some(("twilio", Channel::Sms, "SMS")),
        GatewayConfig::Sendgrid(_) => Some(("sendgrid", Channel::Email, "e-mail")),
        GatewayConfig::Smtp(_) => Some(("smtp", Channel::Email, "e-mail")),
        GatewayConfig::Fcm(_) => Some(("fcm", Channel::Push, "push")),
        GatewayConfig::Sandbox | GatewayConfig::Webhook(_) => None,
    }
}

/// The sandbox file of `channel` in `dir`: `outbox/sms.jsonl`.
pub fn sandbox_file(dir: &Path, channel: Channel) -> std::path::PathBuf {
    dir.join(format!("{}.jsonl", channel.as_str()))
}
