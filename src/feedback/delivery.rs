//! Delivery receipts: what a provider says became of a message after it took it.
//!
//! A provider accepting a message (the gateway's *sent*) is not the customer getting it: the
//! carrier may find the handset gone, the number a landline. Receipts say so, late, twice and
//! out of order. Each attempt keeps the furthest state reported — a state only moves forward
//! ([`DeliveryStatus::rank`]) — and a receipt that says the message will never arrive hands the
//! outreach to the rule's next channel, as a failure at send time does.

use chrono::{DateTime, Utc};

use crate::domain::{AddressEffect, Channel, IdempotencyKey, OptOutScope};

/// How far a message got, as a provider's receipt reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// The provider queued it (Twilio `accepted`, `queued`, `sending`).
    Accepted,
    /// Handed to the carrier (Twilio `sent`); no word from the handset yet.
    Sent,
    /// On the customer's device (Twilio `delivered`, `read`; SendGrid `delivered`).
    Delivered,
    /// The carrier could not deliver it (Twilio `undelivered`).
    Undelivered,
    /// The provider gave up on it (Twilio `failed`; SendGrid `dropped`, `bounce`).
    Failed,
}

impl DeliveryStatus {
    /// Every status, in rank order.
    pub const ALL: [DeliveryStatus; 5] = [
        DeliveryStatus::Accepted,
        DeliveryStatus::Sent,
        DeliveryStatus::Delivered,
        DeliveryStatus::Undelivered,
        DeliveryStatus::Failed,
    ];

    /// How far along: a receipt of a lower or equal rank than the attempt's changes nothing.
    /// The three endings share the top rank: the first one reported stands.
    pub fn rank(self) -> i64 {
        match self {
            DeliveryStatus::Accepted => 1,
            DeliveryStatus::Sent => 2,
            DeliveryStatus::Delivered | DeliveryStatus::Undelivered | DeliveryStatus::Failed => 3,
        }
    }

    /// The stored name, also the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Accepted => "accepted",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Undelivered => "undelivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    /// Reads a stored name.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// The message will never arrive on this channel.
    pub fn is_failure(self) -> bool {
        matches!(self, DeliveryStatus::Undelivered | DeliveryStatus::Failed)
    }
}

/// One receipt, verified and read.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryReport {
    /// The gateway that sent the message, as its attempts record it (`twilio`).
    pub gateway: &'static str,
    /// The channel that gateway carries.
    pub channel: Channel,
    /// Which message it is about.
    pub message: MessageRef,
    /// The provider's id of this receipt, the same on a repeat: receipts are kept once each.
    pub receipt_id: String,
    /// What it says.
    pub status: DeliveryStatus,
    /// Why it failed, in words, without personal data.
    pub error: Option<String>,
    /// What the failure says about the address, when it says something lasting.
    pub effect: Option<AddressEffect>,
    /// When forewarn received it.
    pub at: DateTime<Utc>,
}

/// How a provider names the message a receipt is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageRef {
    /// Its own id for it, as the gateway recorded it when the message was taken (Twilio's
    /// `MessageSid`).
    ProviderId(String),
    /// Forewarn's outreach key, which the gateway handed over with the message (SendGrid's
    /// `custom_args.outreach_key`).
    Key(IdempotencyKey),
}

impl std::fmt::Display for MessageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MessageRef::ProviderId(id) => write!(f, "provider id {id}"),
            MessageRef::Key(key) => write!(f, "outreach key {key}"),
        }
    }
}

/// An opt-out a provider reports (a spam report, an unsubscribe link its own footer carried).
#[derive(Debug, Clone, PartialEq)]
pub struct OptOutReport {
    /// The gateway that sent the message it is about.
    pub gateway: &'static str,
    /// The message, whose customer opts out.
    pub message: MessageRef,
    /// The provider's id of this report: a repeat changes nothing.
    pub receipt_id: String,
    /// What the provider called it (`spamreport`, `unsubscribe`, …).
    pub event: String,
    /// The channel opted out of.
    pub channel: Channel,
    /// Of what.
    pub scope: OptOutScope,
    /// When forewarn received it.
    pub at: DateTime<Utc>,
}

/// What a receipt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryApplied {
    /// No attempt has this provider id (another system's message, or one purged).
    Unmatched,
    /// This receipt was received before; nothing changed.
    Repeat,
    /// The attempt already knew as much or more (a late `sent` after `delivered`).
    Behind,
    /// The attempt's delivery state moved forward.
    Recorded,
    /// It will never arrive: the outreach moved on to this channel, due now.
    FellBack(Channel),
    /// It will never arrive and no channel is left: the message is failed.
    Failed,
}

impl DeliveryApplied {
    /// The metric label.
    pub fn as_str(&self) -> &'static str {
        match self {
            DeliveryApplied::Unmatched => "unmatched",
            DeliveryApplied::Repeat => "repeat",
            DeliveryApplied::Behind => "behind",
            DeliveryApplied::Recorded => "recorded",
            DeliveryApplied::FellBack(_) => "fell_back",
            DeliveryApplied::Failed => "failed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endings_outrank_everything_and_each_other_not_at_all() {
        use DeliveryStatus::*;
        assert!(Accepted.rank() < Sent.rank());
        assert!(Sent.rank() < Delivered.rank());
        assert_eq!(Delivered.rank(), Undelivered.rank());
        assert_eq!(Delivered.rank(), Failed.rank());
        for status in DeliveryStatus::ALL {
            assert_eq!(DeliveryStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(
            DeliveryStatus::ALL
                .into_iter()
                .filter(|s| s.is_failure())
                .collect::<Vec<_>>(),
            [Undelivered, Failed]
        );
    }
}
