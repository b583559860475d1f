//! One template rendered for one event and customer, on every channel it serves and in the
//! locales asked for, exactly as forewarn would send it: the SMS with its advertising label,
//! encoding and segments; the e-mail's subject, text and HTML; the push notification with the
//! size of the FCM message that carries it. `forewarn preview` prints it; the console shows it
//! as the author types.

use serde::Serialize;

use crate::domain::{Accepted, Category, Channel, CustomerDoc, Locale, Offer, RiskScores};
use crate::render::{event_tracking_link, measure_sms, render_parts, sms_as_sent, Part};
use crate::render::{RenderInput, Templates};

/// FCM refuses a message whose payload exceeds this many bytes.
pub const FCM_MAX_PAYLOAD: usize = 4096;

/// What to preview.
#[derive(Debug, Clone, Copy)]
pub struct Sample<'a> {
    /// The event.
    pub accepted: &'a Accepted,
    /// The customer it goes to.
    pub customer: &'a CustomerDoc,
    /// A discount the message carries, as a rule with `[rule.offer]` sends it.
    pub offer: Option<&'a Offer>,
    /// The risk scores templates read.
    pub risk: RiskScores,
}

/// One channel in one locale.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelPreview {
    /// The channel.
    pub channel: Channel,
    /// The locale asked for (`default` for the files without one).
    pub locale: String,
    /// What was rendered, or where and why it failed (`file:line:col: message`).
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// A channel's message, or why it could not be rendered.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Rendered.
    Rendered(Rendered),
    /// Not rendered.
    Failed {
        /// `file:line:col: message`.
        error: String,
    },
}

/// A rendered message, as sent.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Rendered {
    /// An SMS.
    Sms {
        /// The text as sent (with the advertising label where one is due).
        text: String,
        /// `GSM-7` or `UCS-2`.
        encoding: String,
        /// Characters in the encoding's units.
        units: usize,
        /// Segments the carrier bills.
        segments: usize,
    },
    /// An e-mail.
    Email {
        /// Subject.
        subject: String,
        /// Plain-text part.
        text: Option<String>,
        /// HTML part, when the template has one.
        html: Option<String>,
    },
    /// A push notification.
    Push {
        /// Title.
        title: String,
        /// Body.
        body: String,
        /// The FCM HTTP v1 message's size in bytes, with a typical device token.
        payload_bytes: usize,
        /// FCM's limit.
        payload_limit: usize,
    },
}

/// `template` for `sample`, on every channel it serves, in each of `locales` (`""` for the
/// files without a locale). Rendered as transactional unless the sample carries an offer.
pub fn preview(
    templates: &Templates,
    template: &str,
    sample: Sample<'_>,
    locales: &[String],
) -> Vec<ChannelPreview> {
    let mut previews = Vec::new();
    for channel in Channel::ALL
        .into_iter()
        .filter(|c| templates.serves(template, *c))
    {
        for locale in locales {
            let parsed = Locale::parse(locale).ok();
            let doc = super::examples::in_locale(sample.customer, parsed.as_ref());
            let input = RenderInput {
                rule_id: "preview",
                template,
                accepted: sample.accepted,
                doc: &doc,
                tracking: event_tracking_link(sample.accepted),
                offer: sample.offer,
                risk: Some(sample.risk),
                // A preview has no rule; an offer makes it advertising.
                category: Category::Transactional,
            };
            let outcome = match render_parts(&input, templates, channel, parsed.as_ref()) {
                Ok(mut parts) => {
                    // As sent: advertising to a Korean phone carries its label.
                    let korean = parts.locale.starts_with("ko");
                    let mut take = |part| parts.take(part);
                    Outcome::Rendered(match channel {
                        Channel::Sms => {
                            let body = take(Part::Sms).unwrap_or_default();
                            let text = sms_as_sent(body, &input, templates, korean);
                            let size = measure_sms(&text);
                            Rendered::Sms {
                                encoding: size.encoding.to_string(),
                                units: size.units,
                                segments: size.segments,
                                text,
                            }
                        }
                        Channel::Email => Rendered::Email {
                            subject: take(Part::EmailSubject).unwrap_or_default(),
                            text: take(Part::EmailText),
                            html: take(Part::EmailHtml),
                        },
                        Channel::Push => {
                            let title = take(Part::PushTitle).unwrap_or_default();
                            let body = take(Part::PushBody).unwrap_or_default();
                            Rendered::Push {
                                payload_bytes: fcm_payload_size(&title, &body),
                                payload_limit: FCM_MAX_PAYLOAD,
                                title,
                                body,
                            }
                        }
                    })
                }
                Err(e) => Outcome::Failed {
                    error: e.to_string(),
                },
            };
            previews.push(ChannelPreview {
                channel,
                locale: if locale.is_empty() {
                    "default".into()
                } else {
                    locale.clone()
                },
                outcome,
            });
        }
    }
    previews
}

/// The FCM HTTP v1 message as forewarn sends it, with a device token of the usual length.
fn fcm_payload_size(title: &str, body: &str) -> usize {
    serde_json::json!({"message": {"token": "x".repeat(163),
        "notification": {"title": title, "body": body}}})
    .to_string()
    .len()
}
