//! The ways forewarn reaches a customer, and the kinds of message it sends.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A delivery channel. Each has its own gateway, address and template parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// Text message to a phone number.
    Sms,
    /// E-mail to an address.
    Email,
    /// Push notification to the customer's app tokens.
    Push,
}

impl Channel {
    /// Every channel, in a stable order.
    pub const ALL: [Channel; 3] = [Channel::Sms, Channel::Email, Channel::Push];

    /// The lower-case name used in config, rules, metrics and file names.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Sms => "sms",
            Channel::Email => "email",
            Channel::Push => "push",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Channel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sms" => Ok(Channel::Sms),
            "email" => Ok(Channel::Email),
            "push" => Ok(Channel::Push),
            other => Err(format!(
                "unknown channel `{other}` (expected sms, email or push)"
            )),
        }
    }
}

/// Why a message is sent, which decides consent and quiet-hour policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// Service information about the customer's own order or account.
    #[default]
    Transactional,
    /// Anything promotional; needs marketing consent.
    Marketing,
}

impl Category {
    /// The lower-case name used in rules and storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Transactional => "transactional",
            Category::Marketing => "marketing",
        }
    }

    /// The category a message of this rule category really is: one that carries a discount is
    /// marketing — for consent, opt-outs, quiet hours, caps and advertising labels — whatever
    /// its rule says.
    pub fn with_offer(self, has_offer: bool) -> Category {
        if has_offer {
            Category::Marketing
        } else {
            self
        }
    }
}

impl FromStr for Category {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "transactional" => Ok(Category::Transactional),
            "marketing" => Ok(Category::Marketing),
            other => Err(format!(
                "unknown category `{other}` (expected transactional or marketing)"
            )),
        }
    }
}
