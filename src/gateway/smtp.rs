//! E-mail through an SMTP relay, with lettre.
//!
//! One `multipart/alternative` message (plain text first, then HTML) or a single part when the
//! template has only one; `Message-ID: <key@sender-domain>` so a resend after a crash carries
//! the same id and mail systems can drop the duplicate; marketing mail carries
//! `List-Unsubscribe` (one-click URL) and `List-Unsubscribe-Post: List-Unsubscribe=One-Click`
//! (RFC 8058), which large mailbox providers require of bulk senders.

use std::time::Duration;

use async_trait::async_trait;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};

use super::{Gateway, OutboundMessage, Receipt, SendOutcome};
use crate::domain::MessageContent;
use crate::secrets::secret_from_env;

/// `[gateways.email] kind = "smtp"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// `smtp://host:port` (plain; add `?tls=required` for STARTTLS) or `smtps://host:port`.
    /// No credentials here: see `username` and `password_env`.
    pub url: String,
    /// Sender, `Name <address>`.
    pub from: String,
    /// SMTP user, if the relay wants one.
    #[serde(default)]
    pub username: Option<String>,
    /// Name of the environment variable holding the SMTP password.
    #[serde(default = "SmtpConfig::default_password_env")]
    pub password_env: String,
    /// The operator's own one-click unsubscribe URL for marketing mail, used instead of
    /// forewarn's (`http.public_url`); `{key}` becomes the outreach key (no personal data in the
    /// link). Marketing mail is refused with neither.
    #[serde(default)]
    pub unsubscribe_url: Option<String>,
    /// A conversation not finished in this time is retried.
    #[serde(
        default = "crate::gateway::settings::default_timeout",
        with = "humantime_serde"
    )]
    pub timeout: Duration,
}

impl SmtpConfig {
    fn default_password_env() -> String {
        "SMTP_PASSWORD".into()
    }
}

/// The SMTP gateway.
pub struct SmtpGateway {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    unsubscribe_url: Option<String>,
}

impl SmtpGateway {
    /// Connects lazily (the pool opens connections on first use); reads the password from the
    /// environment when a username is configured.
    pub fn new(config: &SmtpConfig) -> Result<Self, String> {
        super::http::install_tls_provider();
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|e| format!("`from` = {:?} is not an address: {e}", config.from))?;
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(&config.url)
            .map_err(|e| format!("`url` = {:?}: {e}", config.url))?
            .timeout(Some(config.timeout));
        if let Some(username) = &config.username {
            let password = secret_from_env("SMTP password", &config.password_env)?;
            builder = builder.credentials(Credentials::new(username.clone(), password));
        }
        Ok(SmtpGateway {
            transport: builder.build(),
            from,
            unsubscribe_url: config.unsubscribe_url.clone(),
        })
    }

    /// The message as it goes on the wire, or why it cannot be built (final).
    fn build(&self, message: &OutboundMessage<'_>) -> Result<Message, String> {
        let MessageContent::Email {
            to,
            subject,
            text,
            html,
        } = message.content
        else {
            return Err(format!(
                "smtp sends e-mail, not {}",
                message.content.channel()
            ));
        };
        let to: Mailbox = to
            .parse()
            .map_err(|_| "the recipient address is not valid".to_owned())?;
        let domain = self.from.email.domain().to_owned();
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject.clone())
            .message_id(Some(format!("<{}@{domain}>", message.key)));
        if let Some(link) = message.list_unsubscribe(self.unsubscribe_url.as_deref())? {
            builder = builder
                .raw_header(HeaderValue::new(
                    HeaderName::new_from_ascii_str("List-Unsubscribe"),
                    format!("<{link}>"),
                ))
                .raw_header(HeaderValue::new(
                    HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                    "List-Unsubscribe=One-Click".to_owned(),
                ));
        }
        let built = match (text, html) {
            (Some(text), Some(html)) => builder.multipart(MultiPart::alternative_plain_html(
                text.clone(),
                html.clone(),
            )),
            (Some(text), None) => builder.singlepart(SinglePart::plain(text.clone())),
            (None, Some(html)) => builder.singlepart(SinglePart::html(html.clone())),
            (None, None) => return Err("the e-mail has no body".into()),
        };
        built.map_err(|e| format!("cannot build the e-mail: {e}"))
    }
}

#[async_trait]
impl Gateway for SmtpGateway {
    fn name(&self) -> &str {
        "smtp"
    }

    async fn send(&self, message: &OutboundMessage<'_>) -> SendOutcome {
        let email = match self.build(message) {
            Ok(email) => email,
            Err(reason) => return SendOutcome::reject(reason),
        };
        let message_id = format!("<{}@{}>", message.key, self.from.email.domain());
        match self.transport.send(email).await {
            Ok(_) => SendOutcome::Sent(Receipt {
                provider_id: message_id,
            }),
            // 5xx: the relay refused for good (unknown mailbox, policy).
            Err(e) if e.is_permanent() => SendOutcome::reject(format!("smtp: {e}")),
            // 4xx, timeouts, connection and TLS trouble: try again.
            Err(e) => SendOutcome::Retry {
                after: None,
                reason: format!("smtp: {e}"),
            },
        }
    }
}
