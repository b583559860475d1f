//! An outreach: one message, to one customer, on one channel, because of one rule.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Category, Channel, CustomerId, EventKey, Offer};

/// The deterministic key that makes an outreach happen at most once.
///
/// Derived from (rule, customer, entity, channel): a redelivered event, a replayed batch or a
/// retry derives the same key, and the outbox's unique constraint turns the second insert into
/// a no-op. The key is a hash so it has a fixed length and carries no personal data, which lets
/// it travel to providers as a message id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Hex characters kept from the SHA-256 digest: 128 bits, ample against collisions.
    const HEX_LEN: usize = 32;

    /// Derives the key. `entity` is the `once_per` value, or the event's own identity.
    pub fn derive(rule_id: &str, customer: &CustomerId, entity: &str, channel: Channel) -> Self {
        let mut hasher = Sha256::new();
        // A separator that cannot occur in the parts keeps ("a","bc") apart from ("ab","c").
        for part in [rule_id, customer.as_str(), entity, channel.as_str()] {
            hasher.update(part.as_bytes());
            hasher.update([0x1f]);
        }
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let digest = hasher.finalize();
        let mut hex = String::with_capacity(Self::HEX_LEN);
        for byte in digest.iter().take(Self::HEX_LEN / 2) {
            hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
            hex.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
        }
        Self(hex)
    }

    /// A key read back from storage.
    pub fn from_stored(raw: String) -> Self {
        Self(raw)
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The rendered message, per channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "channel", rename_all = "lowercase")]
pub enum MessageContent {
    /// A text message.
    Sms {
        /// Phone number, E.164.
        to: String,
        /// The text.
        body: String,
    },
    /// An e-mail.
    Email {
        /// Address.
        to: String,
        /// Subject line.
        subject: String,
        /// Plain-text part.
        text: Option<String>,
        /// HTML part.
        html: Option<String>,
    },
    /// A push notification.
    Push {
        /// Device tokens.
        to: Vec<String>,
        /// Title.
        title: String,
        /// Body.
        body: String,
    },
}

impl MessageContent {
    /// The channel this content is for.
    pub fn channel(&self) -> Channel {
        match self {
            MessageContent::Sms { .. } => Channel::Sms,
            MessageContent::Email { .. } => Channel::Email,
            MessageContent::Push { .. } => Channel::Push,
        }
    }
}

/// What a permanent failure says about the customer's address on a channel, so it is never
/// tried again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressEffect {
    /// The recipient refused the channel at the provider (Twilio 21610: replied STOP):
    /// recorded as an opt-out from everything on the channel.
    OptedOut,
    /// These push tokens no longer exist (FCM `UNREGISTERED`): removed from the customer.
    Gone(Vec<String>),
    /// Mail to the address bounced: it is marked on the customer (`bounced_email`) and not
    /// used again until the record gives another.
    Bounced,
}

impl std::fmt::Display for AddressEffect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AddressEffect::OptedOut => f.write_str("the recipient opted out of the channel"),
            AddressEffect::Gone(tokens) => {
                write!(f, "{} push token(s) no longer exist", tokens.len())
            }
            AddressEffect::Bounced => f.write_str("the address bounced"),
        }
    }
}

/// A decided, rendered outreach, ready for the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Outreach {
    /// Idempotency key.
    pub key: IdempotencyKey,
    /// The rule that decided it.
    pub rule_id: String,
    /// The recipient.
    pub customer_id: CustomerId,
    /// The `once_per` value or the event identity the key was derived from.
    pub entity: String,
    /// Transactional or marketing.
    pub category: Category,
    /// The rule's priority; the dispatcher sends higher first.
    pub priority: i32,
    /// Channels to try next if this one fails for good, in order.
    pub fallback: Vec<Channel>,
    /// The event that caused it.
    pub event: EventKey,
    /// The locale the template was rendered in.
    pub locale: String,
    /// What to send.
    pub content: MessageContent,
    /// The discount issued with it, if the rule offers one.
    pub offer: Option<Offer>,
    /// The risk scores it was decided with, and their explanation.
    pub risk: Option<RiskRecord>,
    /// Not before this (a quiet window's end in the customer's time zone); `None` is now.
    pub not_before: Option<chrono::DateTime<chrono::Utc>>,
    /// The customer's time zone and region, for quiet hours at send time.
    pub timezone: Option<String>,
    /// See `timezone`.
    pub region: Option<String>,
    /// The order it is about, if any: a newer, more important outreach about the same order
    /// supersedes it while it waits.
    pub order_id: Option<String>,
    /// The incident it is about, if any: its resolution goes to those who were told.
    pub incident_id: Option<String>,
    /// The parcel it is about, if any: its delivery cancels the message while it waits.
    pub shipment_id: Option<String>,
    /// Among messages of one priority, the dispatcher sends higher urgency first: the churn
    /// risk, and for an incident's fan-out the risk weighted by the customer's value.
    pub urgency: f64,
}

/// `risk.delay` and `risk.churn` of one decision, as rules and templates see them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RiskScores {
    /// Probability this shipment misses its promise by a day or more, 0..1.
    pub delay: f64,
    /// Probability this customer is lost after this experience, 0..1.
    pub churn: f64,
}

impl RiskScores {
    /// `{"delay": …, "churn": …}`.
    pub fn to_json(self) -> serde_json::Value {
        serde_json::json!({"delay": self.delay, "churn": self.churn})
    }
}

/// The scores an outreach was decided with, and why: stored with it for the customer timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct RiskRecord {
    /// The scores.
    pub scores: RiskScores,
    /// Whether the delay and the churn score came from an external model (`risk.scored`).
    pub external: [bool; 2],
    /// Models, feature values and contributions as JSON text (see
    /// `risk::RiskAssessment::to_json`): written once per outreach, so built as text.
    pub explanation: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_depends_on_every_part_and_nothing_else() {
        let customer = CustomerId::parse("c-1").unwrap();
        let key = IdempotencyKey::derive("r", &customer, "shp-1", Channel::Sms);
        assert_eq!(
            key,
            IdempotencyKey::derive("r", &customer, "shp-1", Channel::Sms)
        );
        assert_ne!(
            key,
            IdempotencyKey::derive("r", &customer, "shp-1", Channel::Email)
        );
        assert_ne!(
            key,
            IdempotencyKey::derive("r", &customer, "shp-2", Channel::Sms)
        );
        assert_ne!(
            IdempotencyKey::derive("ab", &customer, "c", Channel::Sms),
            IdempotencyKey::derive("a", &customer, "bc", Channel::Sms)
        );
        assert_eq!(key.as_str().len(), 32);
    }
}
