//! `[costs]`: what a message costs, for the estimates `forewarn simulate` prints. Providers bill
//! an SMS per segment at a price that depends on the country it goes to; e-mail and push per
//! message. No prices are built in: a price forewarn made up would be a wrong bill.
//!
//! ```toml
//! [costs]
//! currency = "USD"
//! email = 0.0009
//! push = 0
//! [costs.sms_per_segment]
//! "+1" = 0.0083      # the longest prefix of the number wins
//! "+82" = 0.0250
//! default = 0.0500
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `[costs]`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CostSettings {
    /// The currency of every price here (`USD`); the estimates are printed in it.
    pub currency: Option<String>,
    /// Per SMS segment, by the recipient's number prefix (`+82`); `default` for the rest.
    pub sms_per_segment: BTreeMap<String, f64>,
    /// Per e-mail.
    pub email: Option<f64>,
    /// Per push notification.
    pub push: Option<f64>,
}

impl CostSettings {
    /// Whether any price is configured.
    pub fn priced(&self) -> bool {
        !self.sms_per_segment.is_empty() || self.email.is_some() || self.push.is_some()
    }

    /// An SMS of `segments` to `to`: the price of the longest matching prefix, else
    /// `default`; `None` when neither is configured.
    pub fn sms(&self, to: &str, segments: usize) -> Option<f64> {
        let per_segment = self
            .sms_per_segment
            .iter()
            .filter(|(prefix, _)| prefix.starts_with('+') && to.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, price)| *price)
            .or_else(|| self.sms_per_segment.get("default").copied())?;
        Some(per_segment * segments as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_prefix_prices_an_sms_per_segment() {
        let costs = CostSettings {
            currency: Some("USD".into()),
            sms_per_segment: [
                ("+1", 0.01),
                ("+82", 0.02),
                ("+8210", 0.03),
                ("default", 0.05),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
            email: Some(0.001),
            push: None,
        };
        assert_eq!(costs.sms("+12125550142", 2), Some(0.02));
        assert_eq!(costs.sms("+821012345678", 3), Some(0.09));
        assert_eq!(costs.sms("+82212345678", 1), Some(0.02));
        assert_eq!(costs.sms("+447700900123", 1), Some(0.05));
        assert_eq!(CostSettings::default().sms("+1", 1), None);
        assert!(costs.priced() && !CostSettings::default().priced());
    }
}
