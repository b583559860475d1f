//! What SendGrid posts back: its Event Webhook, a JSON array of events about the mail it took.
//!
//! Signed with ECDSA P-256 over SHA-256: `X-Twilio-Email-Event-Webhook-Signature` is the
//! base64 DER signature of the `X-Twilio-Email-Event-Webhook-Timestamp` header's value followed
//! by the raw body, verified with the public key SendGrid shows for the webhook
//! (`[gateways.email] event_webhook_public_key`). A timestamp more than
//! [`TOLERANCE_SECONDS`] from now is refused: a captured request cannot be replayed later.
//!
//! Events carry the message's `custom_args` as top-level fields, so `outreach_key` names the
//! outreach (mail forewarn did not send has none and is ignored); `sg_event_id` names the
//! event, and a repeat of it changes nothing.

use base64::Engine;
use chrono::{DateTime, Utc};
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};
use serde::Deserialize;
use serde_json::Value;

use super::{DeliveryReport, DeliveryStatus, MessageRef, OptOutReport, Refusal};
use crate::domain::{AddressEffect, Channel, IdempotencyKey, OptOutScope};
use crate::gateway::GatewayConfig;

/// Where SendGrid's Event Webhook is pointed.
pub const EVENTS_PATH: &str = "/v1/receipts/sendgrid";
/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "X-Twilio-Email-Event-Webhook-Signature";
/// The header carrying the signed timestamp.
pub const TIMESTAMP_HEADER: &str = "X-Twilio-Email-Event-Webhook-Timestamp";
/// How far from now a signed timestamp may be.
pub const TOLERANCE_SECONDS: i64 = 600;

/// A P-256 `SubjectPublicKeyInfo` up to the point itself: what SendGrid's base64 key starts
/// with, before the 65 bytes of the uncompressed point `ring` verifies with.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Checks SendGrid's signatures.
pub struct SendgridWebhook {
    key: UnparsedPublicKey<Vec<u8>>,
}

impl SendgridWebhook {
    /// For `[gateways.email] kind = "sendgrid"` with an `event_webhook_public_key`; `None`
    /// otherwise (the endpoint is then not served).
    pub fn from_settings(settings: &crate::config::Settings) -> Result<Option<Self>, String> {
        match &settings.gateways.email {
            GatewayConfig::Sendgrid(config) => config
                .event_webhook_public_key
                .as_deref()
                .map(Self::new)
                .transpose(),
            _ => Ok(None),
        }
    }

    /// From the base64 key SendGrid shows (a P-256 `SubjectPublicKeyInfo`), or a bare
    /// uncompressed point.
    pub fn new(public_key: &str) -> Result<Self, String> {
        let refuse = || {
            "event_webhook_public_key is not a P-256 public key: paste the verification key \
             SendGrid shows for the signed Event Webhook"
                .to_owned()
        };
        let der = base64::engine::general_purpose::STANDARD
            .decode(public_key.trim())
            .map_err(|_| refuse())?;
        let point = match der.strip_prefix(&P256_SPKI_PREFIX[..]) {
            Some(point) => point.to_vec(),
            None => der,
        };
        if point.len() != 65 || point[0] != 0x04 {
            return Err(refuse());
        }
        Ok(SendgridWebhook {
            key: UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point),
        })
    }

    /// Checks `body` against the two headers' values, at `now`.
    pub fn verify(
        &self,
        signature: Option<&str>,
        timestamp: Option<&str>,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), Refusal> {
        let (Some(signature), Some(timestamp)) = (signature, timestamp) else {
            return Err(Refusal::Unsigned);
        };
        let signature = base64::engine::general_purpose::STANDARD
            .decode(signature.trim())
            .map_err(|_| Refusal::BadSignature)?;
        let mut signed = Vec::with_capacity(timestamp.len() + body.len());
        signed.extend_from_slice(timestamp.as_bytes());
        signed.extend_from_slice(body);
        self.key
            .verify(&signed, &signature)
            .map_err(|_| Refusal::BadSignature)?;
        let at: i64 = timestamp
            .trim()
            .parse()
            .map_err(|_| Refusal::BadSignature)?;
        if (now.timestamp() - at).abs() > TOLERANCE_SECONDS {
            return Err(Refusal::Stale);
        }
        Ok(())
    }
}

/// One event, as forewarn acts on it.
#[derive(Debug, Clone, PartialEq)]
pub enum EmailEvent {
    /// How far a message got.
    Delivery(DeliveryReport),
    /// The customer asked for no more (a spam report, SendGrid's own unsubscribe link).
    OptOut(OptOutReport),
    /// Opens, clicks, deferrals, and mail forewarn did not send.
    Ignored,
}

/// The fields of an event forewarn reads.
#[derive(Debug, Deserialize)]
struct Event {
    event: String,
    sg_event_id: Option<String>,
    outreach_key: Option<String>,
    custom_args: Option<Value>,
    reason: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// The events of a webhook body, each read; `Err` when the body is not SendGrid's JSON array.
pub fn events(body: &[u8], at: DateTime<Utc>) -> Result<Vec<EmailEvent>, String> {
    let events: Vec<Event> =
        serde_json::from_slice(body).map_err(|e| format!("not SendGrid's event array: {e}"))?;
    Ok(events.into_iter().map(|e| read(e, at)).collect())
}

fn read(event: Event, at: DateTime<Utc>) -> EmailEvent {
    let key = event.outreach_key.clone().or_else(|| {
        event
            .custom_args
            .as_ref()
            .and_then(|args| args.get("outreach_key"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    let Some(key) = key.filter(|k| !k.is_empty()) else {
        return EmailEvent::Ignored;
    };
    let message = MessageRef::Key(IdempotencyKey::from_stored(key.clone()));
    let receipt_id = event
        .sg_event_id
        .clone()
        .unwrap_or_else(|| format!("{key}/{}", event.event));
    // A bounce's reason quotes the server, which may quote the address: masked, and short.
    let reason = event
        .reason
        .as_deref()
        .map(|r| crate::telemetry::mask_text(&r.chars().take(200).collect::<String>()));
    let delivery = |status, effect| {
        EmailEvent::Delivery(DeliveryReport {
            gateway: "sendgrid",
            channel: Channel::Email,
            message: message.clone(),
            receipt_id: receipt_id.clone(),
            status,
            error: (status == DeliveryStatus::Failed).then(|| match &reason {
                Some(reason) => format!("sendgrid {}: {reason}", event.event),
                None => format!("sendgrid {}", event.event),
            }),
            effect,
            at,
        })
    };
    let opt_out = |scope| {
        EmailEvent::OptOut(OptOutReport {
            gateway: "sendgrid",
            message: message.clone(),
            receipt_id: receipt_id.clone(),
            event: event.event.clone(),
            channel: Channel::Email,
            scope,
            at,
        })
    };
    match event.event.as_str() {
        "processed" => delivery(DeliveryStatus::Accepted, None),
        "delivered" => delivery(DeliveryStatus::Delivered, None),
        // A block is the receiving server refusing this message (reputation, content), not
        // the address: it fails the message and leaves the address be.
        "bounce" if event.kind.as_deref() == Some("blocked") => {
            delivery(DeliveryStatus::Failed, None)
        }
        "bounce" => delivery(DeliveryStatus::Failed, Some(AddressEffect::Bounced)),
        "dropped" => delivery(DeliveryStatus::Failed, None),
        "spamreport" => opt_out(OptOutScope::Marketing),
        "unsubscribe" | "group_unsubscribe" => opt_out(OptOutScope::All),
        _ => EmailEvent::Ignored,
    }
}

#[cfg(test)]
mod tests {
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

    use super::*;

    /// A key pair, and its public half as SendGrid shows it.
    fn keys() -> (EcdsaKeyPair, String) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(pair.public_key().as_ref());
        let shown = base64::engine::general_purpose::STANDARD.encode(spki);
        (pair, shown)
    }

    fn sign(pair: &EcdsaKeyPair, timestamp: &str, body: &[u8]) -> String {
        let mut signed = timestamp.as_bytes().to_vec();
        signed.extend_from_slice(body);
        let signature = pair.sign(&SystemRandom::new(), &signed).unwrap();
        base64::engine::general_purpose::STANDARD.encode(signature.as_ref())
    }

    #[test]
    fn only_the_body_and_timestamp_signed_with_the_key_pass_and_only_while_fresh() {
        let (pair, shown) = keys();
        let webhook = SendgridWebhook::new(&shown).unwrap();
        let now = Utc::now();
        let ts = now.timestamp().to_string();
        let body = br#"[{"event":"delivered"}]"#;
        let good = sign(&pair, &ts, body);
        assert_eq!(webhook.verify(Some(&good), Some(&ts), body, now), Ok(()));
        assert_eq!(
            webhook.verify(Some(&good), Some(&ts), br#"[{"event":"dropped"}]"#, now),
            Err(Refusal::BadSignature)
        );
        let later = (now.timestamp() + 1).to_string();
        assert_eq!(
            webhook.verify(Some(&good), Some(&later), body, now),
            Err(Refusal::BadSignature)
        );
        let (other, _) = keys();
        assert_eq!(
            webhook.verify(Some(&sign(&other, &ts, body)), Some(&ts), body, now),
            Err(Refusal::BadSignature)
        );
        let old = (now.timestamp() - TOLERANCE_SECONDS - 1).to_string();
        assert_eq!(
            webhook.verify(Some(&sign(&pair, &old, body)), Some(&old), body, now),
            Err(Refusal::Stale)
        );
        assert_eq!(
            webhook.verify(None, Some(&ts), body, now),
            Err(Refusal::Unsigned)
        );
        assert!(SendgridWebhook::new("bm90IGEga2V5").is_err());
    }

    #[test]
    fn events_are_read_by_what_they_mean_for_the_outreach() {
        let at = Utc::now();
        let body = br#"[
            {"event":"delivered","sg_event_id":"e1","outreach_key":"k1","email":"a@b.example"},
            {"event":"bounce","type":"bounce","sg_event_id":"e2","outreach_key":"k1",
             "reason":"550 5.1.1 <jisoo@example.com>: user unknown"},
            {"event":"bounce","type":"blocked","sg_event_id":"e3","outreach_key":"k1"},
            {"event":"dropped","sg_event_id":"e4","outreach_key":"k1","reason":"Bounced Address"},
            {"event":"spamreport","sg_event_id":"e5","outreach_key":"k1"},
            {"event":"group_unsubscribe","sg_event_id":"e6","outreach_key":"k1"},
            {"event":"open","sg_event_id":"e7","outreach_key":"k1"},
            {"event":"delivered","sg_event_id":"e8"}
        ]"#;
        let read = events(body, at).unwrap();
        let summary: Vec<String> = read
            .iter()
            .map(|e| match e {
                EmailEvent::Delivery(d) => format!(
                    "{} {:?} {}",
                    d.status.as_str(),
                    d.effect,
                    d.error.as_deref().unwrap_or("-")
                ),
                EmailEvent::OptOut(o) => format!("opt-out {}", o.scope.as_str()),
                EmailEvent::Ignored => "ignored".into(),
            })
            .collect();
        assert_eq!(
            summary,
            [
                "delivered None -",
                "failed Some(Bounced) sendgrid bounce: 550 5.1.1 <j***@example.com>: user unknown",
                "failed None sendgrid bounce",
                "failed None sendgrid dropped: Bounced Address",
                "opt-out marketing",
                "opt-out all",
                "ignored",
                "ignored",
            ]
        );
        assert!(events(b"{}", at).is_err());
    }
}
