//! The dispatcher: claim due messages, send them, record what happened.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use metrics::{counter, histogram};
use tokio::sync::Notify;

use super::{Fallback, RetryPolicy};
use crate::gateway::{Gateways, OutboundMessage, Reconciliation, SendOutcome};
use crate::metrics as m;
use crate::outbox::OutboxSettings;
use crate::policy::QuietHours;
use crate::shutdown::Shutdown;
use crate::store::{AttemptRecord, AttemptResult, ClaimedMessage, Store, StoreError};
use crate::worker::{self, Next, Worker};

/// What one dispatch step did; lets tests and tools drive the dispatcher step by step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DispatchOutcome {
    /// This many messages were attempted.
    Dispatched(usize),
    /// Nothing was due.
    Empty,
}

/// Sends what the outbox holds.
pub struct Dispatcher {
    store: Arc<dyn Store>,
    gateways: Gateways,
    fallback: Fallback,
    settings: OutboxSettings,
    retry: RetryPolicy,
    wake: Arc<Notify>,
    /// Checked again just before each send: a retry or a fallback can fall in a quiet window.
    quiet: QuietHours,
}

/// Attempts to record the outcome of a batch before leaving it to lease expiry.
const RECORD_TRIES: u32 = 5;

impl Dispatcher {
    /// A dispatcher; `wake` is notified by intake when it queues new outreach.
    pub fn new(
        store: Arc<dyn Store>,
        gateways: Gateways,
        fallback: Fallback,
        settings: OutboxSettings,
        wake: Arc<Notify>,
    ) -> Self {
        let retry = RetryPolicy::from_settings(&settings);
        Dispatcher {
            quiet: QuietHours::none(),
            store,
            gateways,
            fallback,
            settings,
            retry,
            wake,
        }
    }

    /// Claims one batch of due messages, sends them concurrently and records the outcomes.
    pub async fn dispatch_once(&self) -> Result<DispatchOutcome, StoreError> {
        let mut stages = m::Stages::start();
        let claimed = self
            .store
            .claim_due(
                Utc::now(),
                self.settings.claim_lease,
                self.settings.batch_size.max(1),
            )
            .await?;
        if claimed.is_empty() {
            return Ok(DispatchOutcome::Empty);
        }
        stages.lap("dispatch.claim");
        let count = claimed.len();
        let held: Vec<(i64, u32)> = claimed.iter().map(|m| (m.id, m.attempt)).collect();
        let sending = futures::stream::iter(claimed)
            .map(|message| self.attempt(message))
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect::<Vec<AttemptRecord>>();
        let records = self.holding(&held, sending).await;
        stages.lap("dispatch.send");
        let mut tries = 0;
        loop {
            match self.store.record_attempts(&records).await {
                Ok(()) => break,
                Err(e) if tries + 1 < RECORD_TRIES => {
                    tries += 1;
                    tracing::warn!(error = %e, tries, "Could not record attempts; trying again.");
                    tokio::time::sleep(Duration::from_millis(100 << tries)).await;
                }
                // The rows stay `sending`; when their lease expires they are reconciled with
                // the gateway before any resend, so nothing is lost or sent twice here.
                Err(e) => return Err(e),
            }
        }
        stages.lap("dispatch.record");
        Ok(DispatchOutcome::Dispatched(count))
    }

    /// Runs `sending` while keeping the batch's claims (`held`) alive: every third of the claim
    /// lease they are extended by a lease, so another dispatcher does not take a message this
    /// one has yet to send. A failed extension is logged; the claims then expire as they
    /// would have.
    async fn holding<T>(&self, held: &[(i64, u32)], sending: impl Future<Output = T>) -> T {
        let lease = self.settings.claim_lease;
        let every = (lease / 3).max(Duration::from_millis(10));
        tokio::pin!(sending);
        loop {
            tokio::select! {
                done = &mut sending => return done,
                () = tokio::time::sleep(every) => {
                    let until = Utc::now() + chrono::Duration::from_std(lease).unwrap_or_default();
                    if let Err(e) = self.store.extend_claims(held, until).await {
                        tracing::warn!(error = %e, "Could not extend the batch's claims.");
                    }
                }
            }
        }
    }

    /// Holds messages in the customer's quiet hours (none by default).
    pub fn with_quiet_hours(mut self, quiet: QuietHours) -> Self {
        self.quiet = quiet;
        self
    }

    /// One attempt at one message.
    async fn attempt(&self, message: ClaimedMessage) -> AttemptRecord {
        let gateway = self.gateways.for_channel(message.channel);
        let started_at = Utc::now();
        let record = |result: AttemptResult| AttemptRecord {
            outbox_id: message.id,
            attempt: message.attempt,
            gateway: gateway.name().to_owned(),
            started_at,
            finished_at: Utc::now(),
            result,
            channel: message.channel,
            effect: None,
            switch: None,
        };
        // An ambiguous attempt was already let through (it may have been delivered); only a
        // fresh send is retracted or waits.
        let retraction = message
            .current
            .as_ref()
            .and_then(crate::policy::retraction::resolved);
        if let (false, Some(reason)) = (message.ambiguous, retraction) {
            counter!(m::OUTREACH, "rule" => message.rule_id.clone(), "channel" => message.channel.as_str(), "status" => "cancelled")
                .increment(1);
            tracing::info!(key = %message.key, reason, "Retracted before sending: the problem is gone.");
            return record(AttemptResult::Cancelled {
                reason: reason.to_owned(),
            });
        }
        if !message.ambiguous {
            let category = message.category.with_offer(message.offer.is_some());
            if let Some((release, window)) = self.quiet.release_at(
                started_at,
                message.timezone,
                message.region.as_deref(),
                category,
                message.channel,
            ) {
                counter!(m::OUTREACH, "rule" => message.rule_id.clone(), "channel" => message.channel.as_str(), "status" => "deferred_quiet_hours")
                    .increment(1);
                tracing::info!(key = %message.key, %release, %window, "Held for the end of the customer's quiet hours.");
                return record(AttemptResult::Deferred { next_at: release });
            }
        }
        if message.ambiguous {
            match gateway.reconcile(&message.key).await {
                Reconciliation::Delivered(receipt) => {
                    counter!(m::RECONCILED, "channel" => message.channel.as_str()).increment(1);
                    tracing::info!(key = %message.key, "Ambiguous attempt was delivered; not resending.");
                    return record(AttemptResult::Reconciled {
                        provider_id: receipt.provider_id,
                    });
                }
                Reconciliation::NotDelivered => {}
                Reconciliation::Unknown => {
                    counter!(m::AMBIGUOUS_RESENDS, "channel" => message.channel.as_str())
                        .increment(1);
                    tracing::warn!(key = %message.key, "Resending an ambiguous attempt the gateway cannot confirm.");
                }
            }
        }
        let outcome = gateway
            .send(&OutboundMessage {
                key: &message.key,
                rule_id: &message.rule_id,
                customer_id: &message.customer_id,
                category: message.category,
                content: &message.content,
            })
            .await;
        let waited = (Utc::now() - message.created_at)
            .to_std()
            .unwrap_or_default();
        histogram!(m::DISPATCH_SECONDS, "channel" => message.channel.as_str())
            .record(waited.as_secs_f64());
        // Too old to be useful: neither retried nor handed to another channel.
        let expired = waited > self.settings.max_age;
        let mut learnt = None;
        let result = match outcome {
            SendOutcome::Sent(receipt) => AttemptResult::Sent {
                provider_id: receipt.provider_id,
            },
            SendOutcome::Retry { reason, .. } if expired => {
                tracing::error!(key = %message.key, ?waited, %reason, "Giving up: the message is too old to be useful.");
                AttemptResult::Failed {
                    error: format!(
                        "gave up: still undelivered {} after it was queued (outbox.max_age): {reason}",
                        humantime::format_duration(Duration::from_secs(waited.as_secs()))
                    ),
                }
            }
            SendOutcome::Retry { after, reason }
                if !self.retry.exhausted(message.channel_attempt) =>
            {
                let delay = self.retry.delay(message.channel_attempt, after);
                tracing::warn!(key = %message.key, attempt = message.attempt, ?delay, %reason, "Send failed; will retry.");
                AttemptResult::Retry {
                    next_at: Utc::now()
                        + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX),
                    error: reason,
                }
            }
            SendOutcome::Retry { reason, .. } => {
                tracing::error!(key = %message.key, attempt = message.attempt, %reason, "Giving up after the last attempt.");
                AttemptResult::Failed {
                    error: format!(
                        "gave up after {} attempts on {}: {reason}",
                        message.channel_attempt, message.channel
                    ),
                }
            }
            SendOutcome::Deferred { after, reason } => {
                tracing::debug!(key = %message.key, ?after, %reason, "Send deferred.");
                AttemptResult::Deferred {
                    next_at: Utc::now()
                        + chrono::Duration::from_std(after).unwrap_or(chrono::Duration::MAX),
                }
            }
            SendOutcome::Reject { reason, effect } => {
                tracing::error!(key = %message.key, %reason, ?effect, "Gateway rejected the message.");
                learnt = effect;
                AttemptResult::Failed { error: reason }
            }
        };
        let status = match &result {
            AttemptResult::Sent { .. } | AttemptResult::Reconciled { .. } => "sent",
            AttemptResult::Retry { .. } => "retry",
            AttemptResult::Failed { .. } => "failed",
            AttemptResult::Deferred { .. } => "deferred",
            AttemptResult::Cancelled { .. } => "cancelled",
        };
        counter!(m::OUTREACH, "rule" => message.rule_id.clone(), "channel" => message.channel.as_str(), "status" => status)
            .increment(1);
        // A channel that failed for good hands the outreach to the next one, if any is left.
        let switch = match &result {
            AttemptResult::Failed { .. } if !expired => match self.fallback.next(&message).await {
                Ok(switch) => switch,
                Err(reason) => {
                    tracing::error!(key = %message.key, %reason, "No fallback channel could be prepared.");
                    None
                }
            },
            _ => None,
        };
        if let Some(switch) = &switch {
            counter!(m::OUTREACH, "rule" => message.rule_id.clone(), "channel" => switch.channel.as_str(), "status" => "fallback")
                .increment(1);
        }
        AttemptRecord {
            effect: learnt,
            switch,
            ..record(result)
        }
    }

    /// Dispatches until shutdown. Between batches it waits for new outreach, the next due
    /// retry, or the poll interval, whichever comes first; a batch in flight is finished.
    pub async fn run(self, shutdown: Shutdown) {
        tracing::info!(gateways = ?self.gateways, "Dispatcher started.");
        worker::run(self, shutdown).await;
        tracing::info!("Dispatcher stopped.");
    }

    /// How long to sleep when nothing is due: until the next retry, at most the poll interval.
    async fn idle_time(&self) -> Duration {
        match self.store.next_due().await {
            Ok(Some(next)) => (next - Utc::now())
                .to_std()
                .unwrap_or_default()
                .min(self.settings.poll_interval),
            _ => self.settings.poll_interval,
        }
    }
}

#[async_trait::async_trait]
impl Worker for Dispatcher {
    async fn work(&mut self) -> Next {
        match self.dispatch_once().await {
            // A full batch: more is probably due.
            Ok(DispatchOutcome::Dispatched(n)) if n >= self.settings.batch_size.max(1) => Next::Now,
            // A partial batch took everything that was due. Claiming again at once would only
            // queue for the database's writer to find nothing (on SQLite, a writer every other
            // step needs); what arrives meanwhile wakes the dispatcher, and what falls due
            // (a fallback queued just now, a retry) is found by `idle_time`.
            Ok(DispatchOutcome::Dispatched(_) | DispatchOutcome::Empty) => {
                Next::After(self.idle_time().await)
            }
            Err(e) => {
                tracing::warn!(error = %e, "Dispatch failed; retrying after the poll interval.");
                Next::After(self.settings.poll_interval)
            }
        }
    }

    fn wake(&self) -> Option<&Notify> {
        Some(&self.wake)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::store::test_support::{delayed, intake, outreach, store};
    use crate::store::Changes;

    #[tokio::test]
    async fn a_step_sends_what_is_due_and_records_it_and_the_next_finds_nothing_to_do() {
        let (dir, store) = store().await;
        let event = delayed();
        let queued = Changes {
            outreach: vec![outreach(&event, None)],
            ..Changes::default()
        };
        intake(&store, &event, queued, Utc::now()).await;

        let mut settings = Settings::default();
        settings.paths.outbox = dir.path().join("outbox");
        let store: Arc<dyn Store> = Arc::new(store);
        let authoring = crate::authoring::load(&settings).expect("the shipped rules");
        let (_keep, authoring) = tokio::sync::watch::channel(Arc::new(authoring));
        let mut dispatcher = Dispatcher::new(
            store.clone(),
            Gateways::from_settings(&settings).expect("sandbox gateways"),
            Fallback::new(store.clone(), authoring),
            settings.outbox.clone(),
            Arc::new(Notify::new()),
        );

        assert_eq!(
            dispatcher.dispatch_once().await.expect("a step"),
            DispatchOutcome::Dispatched(1)
        );
        let counts = store.outbox_counts().await.expect("counts");
        assert_eq!((counts.sent, counts.pending, counts.sending), (1, 0, 0));
        let sandbox = std::fs::read_to_string(dir.path().join("outbox/sms.jsonl")).expect("sent");
        let sent: Vec<serde_json::Value> = sandbox
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0]["key"], outreach(&event, None).key.as_str());
        assert_eq!(sent[0]["body"], "Your parcel is late.");

        // Nothing is due now: the worker loop is told to idle, at most its poll interval.
        assert_eq!(
            dispatcher.dispatch_once().await.expect("a step"),
            DispatchOutcome::Empty
        );
        match Worker::work(&mut dispatcher).await {
            Next::After(idle) => assert!(idle <= settings.outbox.poll_interval),
            other => panic!("an idle dispatcher should wait, not {other:?}"),
        }
    }
}
