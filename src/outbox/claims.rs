//! A dispatch batch's claims while it is being sent: renewed before they run out, and checked
//! just before each send.
//!
//! A claim is a lease on outbox rows, fenced by the attempt number the claim took. A
//! dispatcher paused for longer than the lease (SIGSTOP, a frozen VM, a machine swapping) wakes
//! up holding a batch another dispatcher may meanwhile have taken over and sent; without a
//! check it would send the rest of its batch too — tried with two processes, 127 of 2,000
//! messages went out twice. So every send first asks whether the claim is still this
//! dispatcher's: while more than half the lease is surely left (by this process's clock,
//! counted from when the claim or its last renewal was asked for) the answer is known without
//! the database; past that, the batch's claims are renewed first, and a claim that could not
//! be renewed was taken over and is left to its new owner.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::store::{ClaimedMessage, Store};

/// The claims of one batch, as this dispatcher holds them.
pub(super) struct BatchClaims {
    store: Arc<dyn Store>,
    lease: Duration,
    /// `(outbox id, attempt)` of every message claimed.
    claims: Vec<(i64, u32)>,
    held: Mutex<Held>,
}

/// What this dispatcher knows of its claims.
struct Held {
    /// Until when the claims not lost are surely still held: a lease from when they were
    /// claimed or last renewed (the moment the request left, not when it came back).
    until: Instant,
    /// Claims another dispatcher took over.
    lost: HashSet<i64>,
}

impl BatchClaims {
    /// The claims on `claimed`, asked for at `asked` for `lease`.
    pub(super) fn new(
        store: Arc<dyn Store>,
        lease: Duration,
        claimed: &[ClaimedMessage],
        asked: Instant,
    ) -> Self {
        BatchClaims {
            store,
            lease,
            claims: claimed.iter().map(|m| (m.id, m.attempt)).collect(),
            held: Mutex::new(Held {
                until: asked + lease,
                lost: HashSet::new(),
            }),
        }
    }

    /// Runs `sending` while renewing the claims every third of the lease, so another
    /// dispatcher does not take a message this one has yet to send.
    pub(super) async fn hold<T>(&self, sending: impl Future<Output = T>) -> T {
        let every = (self.lease / 3).max(Duration::from_millis(10));
        tokio::pin!(sending);
        loop {
            tokio::select! {
                done = &mut sending => return done,
                () = tokio::time::sleep(every) => {
                    // Never wait for the lock here: its holder is a send in `sending`, renewing
                    // already, and it only goes on while `sending` is polled — not while this
                    // waits.
                    if let Ok(mut held) = self.held.try_lock() {
                        self.renew(&mut held).await;
                    }
                }
            }
        }
    }

    /// Whether the claim on outbox row `id` is still this dispatcher's, to be asked just
    /// before sending it. Renews the batch's claims first when less than half the lease is
    /// surely left.
    pub(super) async fn still_ours(&self, id: i64) -> bool {
        let mut held = self.held.lock().await;
        if held.until.saturating_duration_since(Instant::now()) < self.lease / 2 {
            self.renew(&mut held).await;
        }
        !held.lost.contains(&id) && Instant::now() < held.until
    }

    /// Extends every claim not known lost by a lease; those the store did not extend were
    /// taken over. A failed renewal changes nothing: the claims run out as they would have.
    async fn renew(&self, held: &mut Held) {
        let asked = Instant::now();
        let live: Vec<(i64, u32)> = self
            .claims
            .iter()
            .filter(|(id, _)| !held.lost.contains(id))
            .copied()
            .collect();
        let until = Utc::now() + chrono::Duration::from_std(self.lease).unwrap_or_default();
        match self.store.extend_claims(&live, until).await {
            Ok(extended) => {
                let extended: HashSet<i64> = extended.into_iter().collect();
                held.lost.extend(
                    live.iter()
                        .map(|(id, _)| *id)
                        .filter(|id| !extended.contains(id)),
                );
                held.until = asked + self.lease;
            }
            Err(e) => tracing::warn!(error = %e, "Could not extend the batch's claims."),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::{queue_delay_notice, store};
    use crate::store::OutboxStore;

    #[tokio::test]
    async fn after_a_pause_a_claim_still_unclaimed_is_renewed_and_one_taken_over_is_not_ours() {
        let (_dir, sqlite) = store().await;
        let now = Utc::now();
        queue_delay_notice(&sqlite, now).await;
        let store: Arc<dyn Store> = Arc::new(sqlite);
        let lease = Duration::from_secs(10);
        let claimed = store.claim_due(now, lease, 10).await.expect("a claim");
        let id = claimed[0].id;
        // Held up for two leases: by this process's clock the claim ran out long ago.
        let paused = Instant::now()
            .checked_sub(lease * 2)
            .expect("a machine up for longer than that");

        // Nobody took it meanwhile: it is renewed, and still this dispatcher's to send.
        let first = BatchClaims::new(store.clone(), lease, &claimed, paused);
        assert!(first.still_ours(id).await);

        // Once it ran out in the database too, another dispatcher took it over: not ours.
        let later = Utc::now() + chrono::Duration::seconds(30);
        let taken = store.claim_due(later, lease, 10).await.expect("a claim");
        assert_eq!(taken.len(), 1);
        let second = BatchClaims::new(store.clone(), lease, &claimed, paused);
        assert!(!second.still_ours(id).await);
        // The new owner's claim is its own.
        let owner = BatchClaims::new(store.clone(), lease, &taken, Instant::now());
        assert!(owner.still_ours(id).await);
    }

    #[tokio::test]
    async fn a_renewal_falling_due_while_a_send_renews_does_not_wait_for_that_send() {
        let (_dir, sqlite) = store().await;
        queue_delay_notice(&sqlite, Utc::now()).await;
        let lease = Duration::from_secs(2);
        let claimed = sqlite
            .claim_due(Utc::now(), lease, 10)
            .await
            .expect("a claim");
        let writer = sqlite.writer().clone();
        let store: Arc<dyn Store> = Arc::new(sqlite);
        let ran_out = Instant::now()
            .checked_sub(Duration::from_secs(1))
            .expect("a machine up for longer than that");
        let claims = BatchClaims::new(store, lease, &claimed, ran_out);

        // The database's writer is busy for half a lease, so the send's own renewal waits for
        // it while the batch's periodic one (every third of the lease) falls due.
        let busy = writer.acquire().await.expect("the writer");
        tokio::spawn(async move {
            tokio::time::sleep(lease / 2).await;
            drop(busy);
        });
        let ours = tokio::time::timeout(
            Duration::from_secs(10),
            claims.hold(claims.still_ours(claimed[0].id)),
        )
        .await
        .expect("the send goes on once the writer is free");
        assert!(ours);
    }
}
