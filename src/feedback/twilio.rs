//! What Twilio posts back: status callbacks (a message's delivery) and inbound messages (a
//! customer's reply), each signed as Twilio documents.
//!
//! `X-Twilio-Signature` is the base64 HMAC-SHA1, keyed with the account's auth token, of the
//! full URL Twilio called followed by every POST parameter sorted by name, each name then its
//! value, with no separators. The URL is the one forewarn asked for, under `http.public_url`:
//! whatever proxy sits in front, Twilio signed the address it used.

use base64::Engine;
use chrono::{DateTime, Utc};
use ring::hmac;

use super::{DeliveryReport, DeliveryStatus, InboundReply, MessageRef, Refusal};
use crate::domain::{AddressEffect, Channel};
use crate::gateway::{GatewayConfig, TwilioConfig};
use crate::http::PublicUrl;
use crate::secrets::secret_from_env;

/// Where Twilio posts status callbacks; every message asks for it.
pub const STATUS_PATH: &str = "/v1/receipts/twilio";
/// Where the Messaging Service or number's "A message comes in" webhook points.
pub const INBOUND_PATH: &str = "/v1/inbound/twilio";
/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "X-Twilio-Signature";

/// What checking and reading Twilio's requests needs: the SMS gateway's account and token,
/// and the public URL they were signed for.
pub struct TwilioWebhooks {
    key: hmac::Key,
    account_sid: String,
    public_url: Option<PublicUrl>,
}

impl TwilioWebhooks {
    /// For `[gateways.sms] kind = "twilio"`: the token is read as the gateway reads it. `None`
    /// when SMS goes through another provider.
    pub fn from_settings(settings: &crate::config::Settings) -> Result<Option<Self>, String> {
        let GatewayConfig::Twilio(config) = &settings.gateways.sms else {
            return Ok(None);
        };
        Self::new(config, settings.http.public_url.clone()).map(Some)
    }

    fn new(config: &TwilioConfig, public_url: Option<PublicUrl>) -> Result<Self, String> {
        let token = secret_from_env("Twilio auth token", &config.auth_token_env)?;
        Ok(TwilioWebhooks {
            key: hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, token.as_bytes()),
            account_sid: config.account_sid.clone(),
            public_url,
        })
    }

    /// Checks a request to `path_and_query` (as received) with its form `params` against
    /// `signature`, and that it is for this account.
    pub fn verify(
        &self,
        path_and_query: &str,
        params: &[(String, String)],
        signature: Option<&str>,
    ) -> Result<(), Refusal> {
        let public_url = self.public_url.as_ref().ok_or(Refusal::NoPublicUrl)?;
        let given = signature.ok_or(Refusal::Unsigned)?;
        let given = base64::engine::general_purpose::STANDARD
            .decode(given.trim())
            .map_err(|_| Refusal::BadSignature)?;
        let signed = signed_text(&public_url.join(path_and_query), params);
        // Constant time: how long a comparison takes says nothing about the right signature.
        hmac::verify(&self.key, signed.as_bytes(), &given).map_err(|_| Refusal::BadSignature)?;
        match param(params, "AccountSid") {
            Some(sid) if sid != self.account_sid => Err(Refusal::OtherAccount),
            _ => Ok(()),
        }
    }
}

/// `X-Twilio-Signature` for a request to `url` with `params`, keyed with `auth_token`: what
/// Twilio computes, for tests and tools that stand in for it.
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, auth_token.as_bytes());
    let tag = hmac::sign(&key, signed_text(url, params).as_bytes());
    base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
}

/// The URL, then each parameter's name and value, sorted by name (a repeated name by value).
fn signed_text(url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut text = url.to_owned();
    for (name, value) in sorted {
        text.push_str(name);
        text.push_str(value);
    }
    text
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// A status callback as a receipt; `Ok(None)` for a status forewarn does not track
/// (`canceled`, `scheduled`, …), `Err` naming the missing field.
pub fn status_report(
    params: &[(String, String)],
    at: DateTime<Utc>,
) -> Result<Option<DeliveryReport>, String> {
    let sid = param(params, "MessageSid")
        .or_else(|| param(params, "SmsSid"))
        .filter(|s| !s.is_empty())
        .ok_or("MessageSid is missing")?;
    let raw = param(params, "MessageStatus")
        .or_else(|| param(params, "SmsStatus"))
        .ok_or("MessageStatus is missing")?;
    let status = match raw {
        "accepted" | "queued" | "sending" => DeliveryStatus::Accepted,
        "sent" => DeliveryStatus::Sent,
        "delivered" | "read" => DeliveryStatus::Delivered,
        "undelivered" => DeliveryStatus::Undelivered,
        "failed" => DeliveryStatus::Failed,
        _ => return Ok(None),
    };
    let code = param(params, "ErrorCode").and_then(|c| c.trim().parse::<u64>().ok());
    let error = status.is_failure().then(|| match code {
        // Twilio's own words can quote the number; the reason is stored, so keep only ours.
        Some(code) => format!(
            "twilio {code}: {}",
            crate::gateway::twilio_error_in_words(code)
        ),
        None => format!("twilio: {raw}, without an error code"),
    });
    Ok(Some(DeliveryReport {
        gateway: "twilio",
        channel: Channel::Sms,
        message: MessageRef::ProviderId(sid.to_owned()),
        receipt_id: format!("{sid}/{raw}"),
        status,
        error,
        // The recipient replied STOP to the sender at some point: Twilio will refuse them.
        effect: (code == Some(21610)).then_some(AddressEffect::OptedOut),
        at,
    }))
}

/// An inbound message as a reply; `Err` naming the missing field.
pub fn inbound_reply(
    params: &[(String, String)],
    at: DateTime<Utc>,
) -> Result<InboundReply, String> {
    let message_id = param(params, "MessageSid")
        .or_else(|| param(params, "SmsMessageSid"))
        .filter(|s| !s.is_empty())
        .ok_or("MessageSid is missing")?;
    let from = param(params, "From")
        .filter(|s| !s.is_empty())
        .ok_or("From is missing")?;
    Ok(InboundReply {
        provider: "twilio",
        message_id: message_id.to_owned(),
        channel: Channel::Sms,
        from: from.to_owned(),
        body: param(params, "Body").unwrap_or_default().to_owned(),
        at,
    })
}

/// The TwiML answer to an inbound message: `text` sent back as a reply, or nothing.
pub fn twiml(text: Option<&str>) -> String {
    let head = r#"<?xml version="1.0" encoding="UTF-8"?>"#;
    match text {
        Some(text) => format!(
            "{head}<Response><Message>{}</Message></Response>",
            escape(text)
        ),
        None => format!("{head}<Response/>"),
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_signature_is_twilios_documented_example() {
        // The example of Twilio's request-validation guide (twilio-php's docs): this URL,
        // these parameters, in this order, and auth token 12345 sign to this value.
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let p = params(&[
            ("To", "+18005551212"),
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("From", "+14158675309"),
            ("Digits", "1234"),
        ]);
        assert_eq!(signature("12345", url, &p), "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
    }

    #[test]
    fn a_request_is_refused_if_anything_signed_changed() {
        let webhooks = TwilioWebhooks {
            key: hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, b"tw-s3cret"),
            account_sid: "AC1".into(),
            public_url: Some(PublicUrl::parse("https://forewarn.example").unwrap()),
        };
        let p = params(&[
            ("AccountSid", "AC1"),
            ("MessageSid", "SM1"),
            ("MessageStatus", "delivered"),
        ]);
        let good = signature(
            "tw-s3cret",
            "https://forewarn.example/v1/receipts/twilio",
            &p,
        );
        assert_eq!(webhooks.verify(STATUS_PATH, &p, Some(&good)), Ok(()));
        assert_eq!(
            webhooks.verify("/v1/receipts/twilio?x=1", &p, Some(&good)),
            Err(Refusal::BadSignature)
        );
        let mut tampered = p.clone();
        tampered[2].1 = "undelivered".into();
        assert_eq!(
            webhooks.verify(STATUS_PATH, &tampered, Some(&good)),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            webhooks.verify(STATUS_PATH, &p, None),
            Err(Refusal::Unsigned)
        );
        assert_eq!(
            webhooks.verify(STATUS_PATH, &p, Some("not base64!")),
            Err(Refusal::BadSignature)
        );
        let other = params(&[("AccountSid", "AC2"), ("MessageSid", "SM1")]);
        let signed = signature(
            "tw-s3cret",
            "https://forewarn.example/v1/receipts/twilio",
            &other,
        );
        assert_eq!(
            webhooks.verify(STATUS_PATH, &other, Some(&signed)),
            Err(Refusal::OtherAccount)
        );
        let unknown_base = TwilioWebhooks {
            public_url: None,
            ..webhooks
        };
        assert_eq!(
            unknown_base.verify(STATUS_PATH, &p, Some(&good)),
            Err(Refusal::NoPublicUrl)
        );
    }

    #[test]
    fn callbacks_become_receipts_in_forewarns_words() {
        let at = Utc::now();
        let report = status_report(
            &params(&[
                ("MessageSid", "SM9"),
                ("MessageStatus", "undelivered"),
                ("ErrorCode", "30006"),
                ("To", "+821000000001"),
            ]),
            at,
        )
        .unwrap()
        .unwrap();
        assert_eq!(report.status, DeliveryStatus::Undelivered);
        assert_eq!(report.receipt_id, "SM9/undelivered");
        assert_eq!(
            report.error.as_deref(),
            Some("twilio 30006: the number is a landline or its carrier cannot take SMS")
        );
        let delivered = status_report(
            &params(&[("MessageSid", "SM9"), ("MessageStatus", "delivered")]),
            at,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (delivered.status, delivered.error),
            (DeliveryStatus::Delivered, None)
        );
        assert_eq!(
            status_report(
                &params(&[("MessageSid", "SM9"), ("MessageStatus", "canceled")]),
                at
            ),
            Ok(None)
        );
        assert_eq!(
            status_report(&params(&[("MessageStatus", "sent")]), at),
            Err("MessageSid is missing".to_owned())
        );
    }

    #[test]
    fn twiml_escapes_what_it_carries() {
        assert_eq!(
            twiml(Some("A&B <reply> \"STOP\"")),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Message>A&amp;B &lt;reply&gt; &quot;STOP&quot;</Message></Response>"
        );
        assert_eq!(
            twiml(None),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>"
        );
    }
}
