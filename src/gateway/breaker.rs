//! A circuit breaker around a gateway: after a run of passing failures (timeouts, 5xx, 429) it
//! stops calling the provider for a cool-down, then lets one probe through; the probe's
//! success closes it, its failure opens it again.
//!
//! Without it, a provider outage turns every due message into a request that times out, a
//! retry budget spent, and a provider hammered while it recovers. While open, messages are
//! *deferred*: put back with the remaining cool-down, their retry budget untouched.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{Gateway, OutboundMessage, Reconciliation, SendOutcome};
use crate::domain::IdempotencyKey;
use crate::gateway::Pacing;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Calls go through; counts passing failures in a row.
    Closed { failures: u32 },
    /// No calls until then.
    Open { until: Instant },
    /// One probe is in flight; others wait.
    Probing,
}

/// A gateway behind a circuit breaker.
pub struct Breaker {
    inner: Arc<dyn Gateway>,
    threshold: u32,
    cooldown: Duration,
    state: Mutex<State>,
}

/// What the breaker lets a call do.
enum Admission {
    Call { probe: bool },
    Wait(Duration),
}

impl Breaker {
    /// Wraps `inner` with the breaker settings of `pacing`.
    pub fn wrap(inner: Arc<dyn Gateway>, pacing: &Pacing) -> Arc<dyn Gateway> {
        Arc::new(Breaker {
            inner,
            threshold: pacing.breaker_failures.get(),
            cooldown: pacing.breaker_cooldown,
            state: Mutex::new(State::Closed { failures: 0 }),
        })
    }

    fn admit(&self) -> Admission {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match *state {
            State::Closed { .. } => Admission::Call { probe: false },
            State::Open { until } => {
                let now = Instant::now();
                if now >= until {
                    *state = State::Probing;
                    Admission::Call { probe: true }
                } else {
                    Admission::Wait(until - now)
                }
            }
            // Others wait for the probe's verdict, a short while.
            State::Probing => Admission::Wait(self.cooldown.min(Duration::from_secs(1))),
        }
    }

    fn record(&self, outcome: &SendOutcome, probe: bool) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let passing_failure = matches!(
            outcome,
            SendOutcome::Retry { .. } | SendOutcome::Unanswered { .. }
        );
        let next = match (*state, passing_failure) {
            (_, false) => State::Closed { failures: 0 },
            (State::Probing, true) if probe => State::Open {
                until: Instant::now() + self.cooldown,
            },
            (State::Closed { failures }, true) if failures + 1 >= self.threshold => State::Open {
                until: Instant::now() + self.cooldown,
            },
            (State::Closed { failures }, true) => State::Closed {
                failures: failures + 1,
            },
            (other, true) => other,
        };
        if matches!(next, State::Open { .. }) && !matches!(*state, State::Open { .. }) {
            metrics::counter!(crate::metrics::CIRCUIT_OPENED, "gateway" => self.inner.name().to_owned())
                .increment(1);
            tracing::warn!(gateway = self.inner.name(), cooldown = %humantime::format_duration(self.cooldown), "Gateway keeps failing; circuit open, probing again after the cool-down.");
        }
        if matches!(next, State::Closed { .. }) && probe {
            tracing::info!(
                gateway = self.inner.name(),
                "Gateway answered the probe; circuit closed."
            );
        }
        *state = next;
    }
}

#[async_trait]
impl Gateway for Breaker {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn send(&self, message: &OutboundMessage<'_>) -> SendOutcome {
        match self.admit() {
            Admission::Wait(after) => SendOutcome::Deferred {
                after,
                reason: format!("{} circuit open", self.inner.name()),
            },
            Admission::Call { probe } => {
                let outcome = self.inner.send(message).await;
                self.record(&outcome, probe);
                outcome
            }
        }
    }

    async fn reconcile(&self, key: &IdempotencyKey) -> Reconciliation {
        self.inner.reconcile(key).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::domain::{Category, MessageContent};

    /// Fails with 503 until told otherwise; counts calls.
    struct Flaky {
        calls: AtomicU32,
        healthy: std::sync::atomic::AtomicBool,
    }

    #[async_trait]
    impl Gateway for Flaky {
        fn name(&self) -> &str {
            "flaky"
        }
        async fn send(&self, _: &OutboundMessage<'_>) -> SendOutcome {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.healthy.load(Ordering::SeqCst) {
                SendOutcome::Sent(super::super::Receipt {
                    provider_id: "ok".into(),
                })
            } else {
                SendOutcome::Retry {
                    after: None,
                    reason: "HTTP 503".into(),
                }
            }
        }
    }

    #[tokio::test]
    async fn opens_after_the_threshold_defers_then_probes_back() {
        let flaky = Arc::new(Flaky {
            calls: AtomicU32::new(0),
            healthy: false.into(),
        });
        let breaker = Breaker::wrap(
            flaky.clone(),
            &Pacing {
                breaker_failures: std::num::NonZeroU32::new(3).unwrap(),
                breaker_cooldown: Duration::from_millis(100),
                ..Pacing::default()
            },
        );
        let key = IdempotencyKey::from_stored("k".into());
        let content = MessageContent::Sms {
            to: "+12125550142".into(),
            body: "hi".into(),
        };
        let message = OutboundMessage {
            key: &key,
            rule_id: "r",
            customer_id: "c",
            category: Category::Transactional,
            content: &content,
            unsubscribe: None,
        };
        for _ in 0..3 {
            assert!(matches!(
                breaker.send(&message).await,
                SendOutcome::Retry { .. }
            ));
        }
        // Open: the provider is not called.
        for _ in 0..10 {
            assert!(matches!(
                breaker.send(&message).await,
                SendOutcome::Deferred { .. }
            ));
        }
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 3);
        // After the cool-down one probe goes through; it fails, so the circuit reopens.
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(matches!(
            breaker.send(&message).await,
            SendOutcome::Retry { .. }
        ));
        assert!(matches!(
            breaker.send(&message).await,
            SendOutcome::Deferred { .. }
        ));
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 4);
        // The provider recovers: the next probe closes the circuit.
        flaky.healthy.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(matches!(breaker.send(&message).await, SendOutcome::Sent(_)));
        assert!(matches!(breaker.send(&message).await, SendOutcome::Sent(_)));
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 6);
    }
}
