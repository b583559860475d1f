//! Frequency caps: however many rules match, a customer hears at most so many marketing
//! messages — any message with a discount counts — in a rolling window. Transactional messages
//! are not capped (a customer must hear about their own order), only deduplicated by their
//! rules' `once_per` and the outbox's keys.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[caps]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CapSettings {
    /// Marketing messages per customer per window, across all rules. 0 allows none.
    pub marketing_max: u32,
    /// The rolling window.
    #[serde(with = "humantime_serde")]
    pub marketing_window: Duration,
}

impl Default for CapSettings {
    fn default() -> Self {
        CapSettings {
            marketing_max: 2,
            marketing_window: Duration::from_secs(24 * 3600),
        }
    }
}

impl CapSettings {
    /// No cap: for tests and benchmarks that decide many messages for one customer.
    pub fn off() -> Self {
        CapSettings {
            marketing_max: u32::MAX,
            ..CapSettings::default()
        }
    }

    /// Whether the cap can ever hold a message back (not for [`CapSettings::off`]): otherwise
    /// there is no need to read what was sent.
    pub fn binds(&self) -> bool {
        self.marketing_max != u32::MAX
    }

    /// The window as chrono's duration.
    pub fn window(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.marketing_window).unwrap_or(chrono::Duration::MAX)
    }

    /// Whether one more marketing message fits after `sent` in the window.
    pub fn allows(&self, sent: usize) -> bool {
        (sent as u64) < u64::from(self.marketing_max)
    }
}

/// Everything ④ decides with: quiet hours, caps, and when incidents are announced.
#[derive(Debug, Clone)]
pub struct Policy {
    /// When messages may go.
    pub quiet: super::QuietHours,
    /// How many marketing messages may go.
    pub caps: CapSettings,
    /// When an incident's update is announced to customers again.
    pub incident_updates: super::incidents::UpdateNotice,
}

impl Policy {
    /// No quiet hours and no caps.
    pub fn none() -> Self {
        Policy {
            quiet: super::QuietHours::none(),
            caps: CapSettings::off(),
            incident_updates: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_allows_two_marketing_messages_a_day() {
        let caps = CapSettings::default();
        assert!(caps.allows(0) && caps.allows(1));
        assert!(!caps.allows(2));
        assert_eq!(caps.window(), chrono::Duration::hours(24));
        assert!(CapSettings::off().allows(1_000_000));
        assert!(caps.binds() && !CapSettings::off().binds());
    }
}
