//! `[relay]`: where outreach events go, and how often the relay looks for them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[relay]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelaySettings {
    /// Off: `forewarn run` publishes no outreach events (another process does, or nobody
    /// reads them; they wait in the database until a relay runs).
    pub enabled: bool,
    /// The JetStream stream, created if missing with the subjects `<subject_prefix>.>`.
    pub stream: String,
    /// Events go to `<subject_prefix>.<status>`: `forewarn.outreach.sent`.
    pub subject_prefix: String,
    /// The CloudEvents `source` of the events.
    pub source: String,
    /// Events published per pass, in order.
    pub batch_size: usize,
    /// How often an idle relay looks for new events.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// How long a process holds the relay before another may take over (a stopped process).
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// How long the stream keeps events (when it is created).
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// How long JetStream remembers an event's id, so one published again after a crash is
    /// stored once (when the stream is created).
    #[serde(with = "humantime_serde")]
    pub duplicate_window: Duration,
}

impl Default for RelaySettings {
    fn default() -> Self {
        RelaySettings {
            enabled: true,
            stream: "FOREWARN_OUTREACH".into(),
            subject_prefix: "forewarn.outreach".into(),
            source: "forewarn".into(),
            batch_size: 500,
            poll_interval: Duration::from_millis(200),
            lease: Duration::from_secs(30),
            max_age: Duration::from_secs(7 * 24 * 3600),
            duplicate_window: Duration::from_secs(10 * 60),
        }
    }
}
