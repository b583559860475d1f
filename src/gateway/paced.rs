//! Pacing: a token bucket (governor) and a bound on requests in flight, around any gateway.
//!
//! Providers publish rate limits (Twilio per sender number, SendGrid per plan, FCM per
//! project); going over them earns 429s and retries. Pacing here keeps the dispatcher under
//! them, so a burst waits in the outbox rather than in a provider's penalty box.

use std::sync::Arc;

use async_trait::async_trait;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::Semaphore;

use super::{Gateway, OutboundMessage, Reconciliation, SendOutcome};
use crate::domain::IdempotencyKey;
use crate::gateway::Pacing;

/// A gateway called no faster than its pacing allows.
pub struct Paced {
    inner: Arc<dyn Gateway>,
    rate: Option<DefaultDirectRateLimiter>,
    in_flight: Option<Semaphore>,
}

impl Paced {
    /// `inner` as is when `pacing` sets nothing.
    pub fn wrap(inner: Arc<dyn Gateway>, pacing: &Pacing) -> Arc<dyn Gateway> {
        if pacing.rate_per_second.is_none() && pacing.concurrency.is_none() {
            return inner;
        }
        let rate = pacing.rate_per_second.map(|per_second| {
            let quota =
                Quota::per_second(per_second).allow_burst(pacing.burst.unwrap_or(per_second));
            RateLimiter::direct(quota)
        });
        Arc::new(Paced {
            inner,
            rate,
            in_flight: pacing.concurrency.map(|n| Semaphore::new(n.get())),
        })
    }
}

#[async_trait]
impl Gateway for Paced {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn send(&self, message: &OutboundMessage<'_>) -> SendOutcome {
        let _permit = match &self.in_flight {
            // The semaphore is never closed, so acquiring only waits.
            Some(semaphore) => semaphore.acquire().await.ok(),
            None => None,
        };
        if let Some(rate) = &self.rate {
            rate.until_ready().await;
        }
        self.inner.send(message).await
    }

    async fn reconcile(&self, key: &IdempotencyKey) -> Reconciliation {
        self.inner.reconcile(key).await
    }
}
