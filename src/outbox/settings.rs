//! `[outbox]`: how the dispatcher claims, sends and retries.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[outbox]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxSettings {
    /// Run the dispatcher in this process. Turn off for intake-only processes.
    pub dispatch: bool,
    /// Most messages claimed at once.
    pub batch_size: usize,
    /// Most messages in flight to gateways at once.
    pub concurrency: usize,
    /// How often an idle dispatcher looks for due messages (new outreach wakes it at once in
    /// the same process).
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// How long a claim holds before another dispatcher may take the message over, treating
    /// the attempt as ambiguous.
    #[serde(with = "humantime_serde")]
    pub claim_lease: Duration,
    /// Attempts per channel before it is given up (and the next channel tried).
    pub max_attempts: u32,
    /// A message not delivered this long after it was queued is given up rather than retried:
    /// news of a delay that arrives days later helps nobody.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// First retry delay; doubled each attempt, with full jitter.
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
    /// Longest retry delay.
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
}

impl Default for OutboxSettings {
    fn default() -> Self {
        OutboxSettings {
            dispatch: true,
            batch_size: 500,
            concurrency: 64,
            poll_interval: Duration::from_millis(500),
            claim_lease: Duration::from_secs(60),
            max_attempts: 8,
            max_age: Duration::from_secs(24 * 3600),
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(600),
        }
    }
}
