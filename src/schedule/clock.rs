//! What time it is, injectable: the scheduler asks a [`Clock`], so tests (and `forewarn
//! schedule run --at`) move time instead of waiting for it.

use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::watch;

/// A source of time the scheduler sleeps on.
#[async_trait]
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> DateTime<Utc>;

    /// Returns once [`Clock::now`] is at or after `deadline`.
    async fn sleep_until(&self, deadline: DateTime<Utc>);
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

#[async_trait]
impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    async fn sleep_until(&self, deadline: DateTime<Utc>) {
        // Re-checked after waking: the wall clock may have been stepped meanwhile.
        loop {
            let left = deadline - Utc::now();
            match left.to_std() {
                Ok(d) if !d.is_zero() => tokio::time::sleep(d).await,
                _ => return,
            }
        }
    }
}

/// A clock that moves only when told to: for tests and simulations.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
    moved: watch::Sender<DateTime<Utc>>,
}

impl ManualClock {
    /// Stopped at `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock {
            now: Mutex::new(start),
            moved: watch::channel(start).0,
        }
    }

    /// Moves to `to` (never backwards) and wakes sleepers whose deadline has come.
    pub fn set(&self, to: DateTime<Utc>) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        if to > *now {
            *now = to;
            self.moved.send_replace(to);
        }
    }

    /// Moves forward by `by`.
    pub fn advance(&self, by: chrono::Duration) {
        let to = self.now() + by;
        self.set(to);
    }
}

#[async_trait]
impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn sleep_until(&self, deadline: DateTime<Utc>) {
        let mut moved = self.moved.subscribe();
        // The sender lives as long as the clock, which outlives this borrow.
        let _ = moved.wait_for(|now| *now >= deadline).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_sleeper_wakes_when_the_clock_reaches_its_deadline() {
        let clock = std::sync::Arc::new(ManualClock::new("2026-11-23T10:00:00Z".parse().unwrap()));
        let deadline: DateTime<Utc> = "2026-11-23T10:10:00Z".parse().unwrap();
        let sleeper = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep_until(deadline).await }
        });
        clock.advance(chrono::Duration::minutes(5));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance(chrono::Duration::minutes(5));
        sleeper.await.unwrap();
        assert_eq!(clock.now(), deadline);
    }
}
