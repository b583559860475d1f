//! When to try again.

use std::time::Duration;

use crate::outbox::OutboxSettings;

/// Exponential backoff with jitter, bounded by attempts.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// First delay.
    pub base: Duration,
    /// Longest delay.
    pub max: Duration,
    /// Attempts before giving up.
    pub max_attempts: u32,
}

impl RetryPolicy {
    /// The policy `[outbox]` describes.
    pub fn from_settings(settings: &OutboxSettings) -> Self {
        RetryPolicy {
            base: settings.retry_base,
            max: settings.retry_max,
            max_attempts: settings.max_attempts.max(1),
        }
    }

    /// Whether attempt number `attempt` (from 1) was the last one allowed.
    pub fn exhausted(&self, attempt: u32) -> bool {
        attempt >= self.max_attempts
    }

    /// The delay after attempt number `attempt` failed: `base · 2^(attempt-1)`, capped, then
    /// "equal jitter" — half fixed, half random — so retries spread out but never come at once.
    /// A provider's `Retry-After` is a floor.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exponent = attempt.saturating_sub(1).min(30);
        let backoff = self.base.saturating_mul(1 << exponent).min(self.max);
        let half = backoff / 2;
        let jittered = half + half.mul_f64(fastrand::f64());
        jittered.max(retry_after.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_secs(2),
            max: Duration::from_secs(60),
            max_attempts: 5,
        }
    }

    #[test]
    fn delays_double_within_their_jitter_band_up_to_the_cap() {
        let p = policy();
        for _ in 0..100 {
            let first = p.delay(1, None);
            assert!(first >= Duration::from_secs(1) && first <= Duration::from_secs(2));
            let fourth = p.delay(4, None);
            assert!(fourth >= Duration::from_secs(8) && fourth <= Duration::from_secs(16));
            let late = p.delay(20, None);
            assert!(late >= Duration::from_secs(30) && late <= Duration::from_secs(60));
        }
    }

    #[test]
    fn retry_after_is_a_floor() {
        assert!(policy().delay(1, Some(Duration::from_secs(30))) >= Duration::from_secs(30));
    }

    #[test]
    fn the_last_allowed_attempt_exhausts_the_policy() {
        assert!(!policy().exhausted(4));
        assert!(policy().exhausted(5));
    }
}
