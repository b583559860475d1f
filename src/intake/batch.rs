//! The intake loop and one batch's journey: parse → record → decide → commit → dead-letter → ack.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use async_nats::jetstream::consumer::{pull, Consumer};
use async_nats::jetstream::{AckKind, Message};
use chrono::Utc;
use futures::StreamExt;
use metrics::{counter, histogram};
use tokio::sync::{mpsc, oneshot, Notify};

use super::dead_letter::Published;
use super::transaction::{write_batch, Written};
use super::{DeadLetterPublisher, IntakeError};
use crate::authoring::AuthoringHandle;
use crate::domain::Accepted;
use crate::domain::{EventKey, Rejection};
use crate::intake::IntakeSettings;
use crate::metrics as m;
use crate::policy::Policy;
use crate::readiness::Readiness;
use crate::schedule::{Clock, SystemClock};
use crate::shutdown::Shutdown;
use crate::store::{EventRecord, Store, StoreError};

/// What a batch did, for logs, metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// New events committed.
    pub processed: usize,
    /// Redeliveries of events already processed.
    pub duplicates: usize,
    /// Events dead-lettered.
    pub dead_lettered: usize,
    /// Outreach rows written (an existing idempotency key makes a write a no-op).
    pub outreach: usize,
    /// Messages left for redelivery because the batch could not be committed.
    pub redelivered: usize,
}

/// Takes events from the stream into the database.
pub struct Intake {
    store: Arc<dyn Store>,
    authoring: AuthoringHandle,
    dead_letters: DeadLetterPublisher,
    type_prefix: Option<String>,
    settings: IntakeSettings,
    wake: Arc<Notify>,
    /// Notified when a batch writes an incident's fan-out.
    fanout_wake: Option<Arc<Notify>>,
    policy: Policy,
    /// When a batch is received, for its records and its decisions: the wall clock, or a
    /// test's.
    clock: Arc<dyn Clock>,
    /// Told whether each batch committed, for `/readyz`.
    readiness: Readiness,
}

/// Where one message of a batch stands.
enum Fate {
    /// Parsed; index into the accepted list.
    Accepted(usize),
    /// Refused at parsing.
    Rejected(Rejection),
}

impl Intake {
    /// An intake that notifies `wake` when it queues outreach.
    pub fn new(
        store: Arc<dyn Store>,
        authoring: AuthoringHandle,
        dead_letters: DeadLetterPublisher,
        type_prefix: Option<String>,
        settings: IntakeSettings,
        wake: Arc<Notify>,
    ) -> Self {
        Intake {
            store,
            authoring,
            dead_letters,
            type_prefix,
            settings,
            wake,
            fanout_wake: None,
            policy: Policy::none(),
            clock: Arc::new(SystemClock),
            readiness: Readiness::default(),
        }
    }

    /// Reports whether its batches commit to `readiness` (`/readyz`).
    pub fn with_readiness(mut self, readiness: Readiness) -> Self {
        self.readiness = readiness;
        self
    }

    /// Reads "now" from `clock` instead of the wall clock (tests decide at a chosen hour).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Wakes the fan-out worker through `wake` when a batch has an incident's customers to find.
    pub fn with_fanout_wake(mut self, wake: Arc<Notify>) -> Self {
        self.fanout_wake = Some(wake);
        self
    }

    /// Decides with quiet hours and caps (none by default).
    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Pulls and processes batches until shutdown; the batch in progress is finished and acked.
    pub async fn run(
        self,
        consumer: Consumer<pull::Config>,
        mut shutdown: Shutdown,
    ) -> Result<(), IntakeError> {
        let batch_size = self.settings.batch_size.max(1);
        let messages = consumer
            .stream()
            // Twice the batch, so a full batch is buffered while the previous one is parsed.
            .max_messages_per_batch(batch_size.saturating_mul(2))
            .max_bytes_per_batch(PULL_BYTES.max(self.dead_letters.max_payload() * 2))
            .messages()
            .await
            .map_err(|e| IntakeError::Setup(format!("cannot start pulling: {e}")))?;
        // `ready_chunks` hands over whatever has already arrived: large batches under load,
        // single events when it is quiet, so batching never adds latency.
        let mut batches = messages.ready_chunks(batch_size);
        // Two batches buffered, two waiting for the database, one committing and one being
        // settled are unacked at once at most.
        let needed = batch_size.saturating_mul(6);
        if i64::try_from(needed).unwrap_or(i64::MAX) > self.settings.max_ack_pending {
            tracing::warn!(
                batch_size,
                max_ack_pending = self.settings.max_ack_pending,
                "intake.max_ack_pending is below 6 x batch_size; intake will stall at the limit."
            );
        }
        tracing::info!(batch_size, "Intake started.");

        // The committer asks for a batch when the database is free for it, and gets
        // everything that arrived while it was busy, parsed in the meantime. A batch cut as
        // soon as its first events arrived and queued behind the commit, as before, held
        // later arrivals back for a commit more: up to three instead of two (measured in the
        // latency bench at 1,000 events/s, the two builds run in turn: p99 53–64 → 30–35 ms
        // on PostgreSQL, 28–35 → 17–21 ms on SQLite). Settling (acks and dead letters)
        // overlaps the next commit.
        let this = Arc::new(self);
        let (to_settle, mut settle_rx) = mpsc::channel::<Decided>(1);
        let (ask, mut asked) = mpsc::channel::<oneshot::Sender<Prepared>>(1);
        let committer = tokio::spawn({
            let this = this.clone();
            async move {
                loop {
                    let (give, take) = oneshot::channel();
                    if ask.send(give).await.is_err() {
                        break;
                    }
                    let Ok(prepared) = take.await else { break };
                    let decided = this.commit(prepared).await;
                    if to_settle.send(decided).await.is_err() {
                        break;
                    }
                }
            }
        });
        let settler = tokio::spawn({
            let this = this.clone();
            async move {
                while let Some(decided) = settle_rx.recv().await {
                    this.settle(decided).await;
                }
            }
        });

        // Parsed and waiting for the database: under two batches' worth, the last filling (in
        // bytes, a pull's worth: one pull of large events makes several batches).
        let mut waiting: VecDeque<Prepared> = VecDeque::new();
        let mut committer_free: Option<oneshot::Sender<Prepared>> = None;
        let mut stopping = false;
        loop {
            if let Some(give) = committer_free.take() {
                match waiting.pop_front() {
                    Some(batch) => {
                        if give.send(batch).is_err() {
                            break;
                        }
                    }
                    None => committer_free = Some(give),
                }
            }
            // Batches already parsed are committed and acked before intake reports stopped.
            if stopping && waiting.is_empty() {
                break;
            }
            let queued: usize = waiting.iter().map(|p| p.messages.len()).sum();
            let queued_bytes: usize = waiting.iter().map(Prepared::bytes).sum();
            tokio::select! {
                biased;
                _ = shutdown.wait(), if !stopping => stopping = true,
                give = asked.recv(), if committer_free.is_none() => match give {
                    Some(give) => committer_free = Some(give),
                    None => break,
                },
                // Tokio's cooperative budget would cut a chunk at 128 messages; the chunk is
                // bounded by `batch_size` anyway, so the budget only shrinks batches.
                chunk = tokio::task::unconstrained(batches.next()),
                    if !stopping && queued < batch_size && queued_bytes < BATCH_BYTES => {
                    let Some(chunk) = chunk else {
                        tracing::warn!("The consumer's message stream ended.");
                        stopping = true;
                        continue;
                    };
                    let mut messages = Vec::with_capacity(chunk.len());
                    for item in chunk {
                        match item {
                            Ok(message) => messages.push(message),
                            Err(e) => tracing::warn!(error = %e, "Pull error; continuing."),
                        }
                    }
                    this.take_in(&mut waiting, messages, batch_size, BATCH_BYTES);
                }
            }
        }
        drop((committer_free, asked));
        let (committed, settled) = tokio::join!(committer, settler);
        if let Err(e) = committed.and(settled) {
            tracing::error!(error = %e, "An intake stage panicked; its batch will be redelivered.");
        }
        tracing::info!("Intake stopped.");
        Ok(())
    }

    /// Processes one batch start to end and acks (or naks) every message in it.
    pub async fn process(&self, messages: Vec<Message>) -> BatchReport {
        let prepared = self.prepare(messages, self.clock.now());
        let decided = self.commit(prepared).await;
        self.settle(decided).await
    }

    /// Parses `messages` into the batches waiting for the database: the last one is filled up
    /// to `batch_size` events and `batch_bytes` of them (its events share its time of receipt),
    /// the rest start new ones, each with at least one event however large.
    pub(super) fn take_in(
        &self,
        waiting: &mut VecDeque<Prepared>,
        messages: Vec<Message>,
        batch_size: usize,
        batch_bytes: usize,
    ) {
        let mut messages = messages.into_iter().peekable();
        if let Some(last) = waiting.back_mut() {
            let filling = cut(
                &mut messages,
                batch_size.saturating_sub(last.messages.len()),
                batch_bytes.saturating_sub(last.bytes()),
            );
            if !filling.is_empty() {
                last.absorb(self.prepare(filling, last.received_at));
            }
        }
        let received_at = self.clock.now();
        while let Some(first) = messages.next() {
            let room = batch_bytes.saturating_sub(first.payload.len());
            let mut batch = vec![first];
            batch.extend(cut(&mut messages, batch_size.saturating_sub(1), room));
            waiting.push_back(self.prepare(batch, received_at));
        }
    }

    /// Stage 1: parse every message and prepare the event records.
    fn prepare(&self, messages: Vec<Message>, received_at: chrono::DateTime<Utc>) -> Prepared {
        let started = Instant::now();
        let mut stages = m::Stages::start();
        let mut accepted: Vec<Accepted> = Vec::with_capacity(messages.len());
        let fates: Vec<Fate> = messages
            .iter()
            .map(|message| match self.parse(&message.payload) {
                Ok(a) => {
                    accepted.push(a);
                    Fate::Accepted(accepted.len() - 1)
                }
                Err(rejection) => Fate::Rejected(rejection),
            })
            .collect();
        let records = accepted
            .iter()
            .map(|a| EventRecord::of(a, received_at))
            .collect();
        stages.lap("intake.parse");
        Prepared {
            messages,
            fates,
            accepted,
            records,
            started,
            received_at,
        }
    }

    /// Stage 2: the batch's transaction.
    pub(super) async fn commit(&self, prepared: Prepared) -> Decided {
        let committed = self
            .transact(&prepared.accepted, &prepared.records, prepared.received_at)
            .await;
        match &committed {
            Ok(outcome) => {
                self.readiness.ok("intake");
                if outcome.outreach > 0 {
                    self.wake.notify_one();
                }
            }
            Err(e) => {
                self.readiness.failed("intake", &e.to_string());
                counter!(m::BATCH_FAILURES).increment(1);
                tracing::warn!(error = %e, events = prepared.accepted.len(), "Batch not committed; it will be redelivered.");
            }
        }
        Decided {
            elapsed: prepared.started.elapsed().as_secs_f64(),
            prepared,
            committed,
        }
    }

    /// Stage 3: dead-letter, ack or nak every message, in order.
    pub(super) async fn settle(&self, decided: Decided) -> BatchReport {
        let Decided {
            prepared,
            mut committed,
            elapsed,
        } = decided;
        let Prepared {
            messages,
            fates,
            accepted,
            ..
        } = prepared;
        let mut stages = m::Stages::start();
        let mut report = BatchReport::default();
        if let Ok(outcome) = &committed {
            report.outreach = outcome.outreach;
        }
        // Every message is now dead-lettered, acked or naked, in order.
        for (message, fate) in messages.iter().zip(&fates) {
            let (event_type, rejection) = match fate {
                Fate::Rejected(r) => ("invalid", Some(r)),
                Fate::Accepted(i) => {
                    let event = &accepted[*i].event;
                    let rejection = committed
                        .as_ref()
                        .ok()
                        .and_then(|o| o.rejected.get(&event.key));
                    (event.event_type.as_str(), rejection)
                }
            };
            if let Some(rejection) = rejection {
                match self.dead_letter(message, rejection).await {
                    Ok(published) => {
                        report.dead_lettered += 1;
                        if published == Published::First {
                            counter!(m::EVENTS, "type" => event_type, "outcome" => "dead_letter")
                                .increment(1);
                            counter!(m::DEAD_LETTERS, "reason" => rejection.reason.as_str())
                                .increment(1);
                        }
                        tracing::info!(reason = rejection.reason.as_str(), error = %rejection.detail, subject = %message.subject, "Event dead-lettered.");
                        ack(message, AckKind::Ack).await;
                    }
                    Err(e) if deliveries(message) >= DEAD_LETTER_DELIVERIES => {
                        report.redelivered += 1;
                        counter!(m::DEAD_LETTERS_DROPPED, "reason" => rejection.reason.as_str())
                            .increment(1);
                        tracing::error!(error = %e, reason = rejection.reason.as_str(), detail = %rejection.detail, subject = %message.subject, deliveries = DEAD_LETTER_DELIVERIES, "Dropping an invalid event: its dead letter could not be published on any delivery.");
                        ack(message, AckKind::Term).await;
                    }
                    Err(e) => {
                        report.redelivered += 1;
                        tracing::warn!(error = %e, "Dead letter not published; the event will be redelivered.");
                        ack(message, AckKind::Nak(Some(self.settings.retry_delay))).await;
                    }
                }
                continue;
            }
            let Fate::Accepted(i) = fate else { continue };
            match &mut committed {
                Err(_) => {
                    report.redelivered += 1;
                    ack(message, AckKind::Nak(Some(self.settings.retry_delay))).await;
                }
                Ok(outcome) => {
                    // The first copy of a new key is the processed one; any other is a duplicate.
                    let outcome_label = if outcome.fresh.remove(&accepted[*i].event.key) {
                        report.processed += 1;
                        histogram!(m::PROCESSING_SECONDS).record(elapsed);
                        "processed"
                    } else {
                        report.duplicates += 1;
                        "duplicate"
                    };
                    counter!(m::EVENTS, "type" => event_type, "outcome" => outcome_label)
                        .increment(1);
                    ack(message, AckKind::Ack).await;
                }
            }
        }
        histogram!(m::BATCH_SIZE).record(messages.len() as f64);
        stages.lap("intake.settle");
        tracing::debug!(?report, seconds = elapsed, "Batch done.");
        report
    }

    /// Envelope, then catalogue.
    fn parse(&self, body: &[u8]) -> Result<Accepted, Rejection> {
        Accepted::parse(body, self.type_prefix.as_deref())
    }

    /// The batch's transaction: record events, load state, decide, write, commit.
    async fn transact(
        &self,
        accepted: &[Accepted],
        records: &[EventRecord],
        received_at: chrono::DateTime<Utc>,
    ) -> Result<Committed, StoreError> {
        if accepted.is_empty() {
            return Ok(Committed::default());
        }
        // The set in use when the batch is decided; a reload applies from the next batch.
        let authoring = self.authoring.borrow().clone();
        let Written {
            new_keys,
            plan,
            mut queued,
            retracted,
        } = write_batch(
            self.store.as_ref(),
            &authoring,
            &self.policy,
            accepted,
            records,
            received_at,
        )
        .await?;
        let rejected_keys: Vec<EventKey> = plan.rejected.iter().map(|(k, _)| k.clone()).collect();
        if let (false, Some(wake)) = (plan.changes.fanouts.is_empty(), &self.fanout_wake) {
            wake.notify_one();
        }

        for failure in &plan.rule_errors {
            counter!(m::RULE_ERRORS, "rule" => failure.rule_id.clone()).increment(1);
            tracing::warn!(rule = %failure.rule_id, at = %failure.location, event = %failure.event, error = %failure.message, "Rule expression failed; the rule did not match.");
        }
        for withheld in &plan.withheld_offers {
            counter!(m::OFFERS_WITHHELD, "rule" => withheld.rule_id.clone()).increment(1);
            tracing::info!(rule = %withheld.rule_id, customer = withheld.customer_id.as_ref().map_or("", |c| c.as_str()), event = %withheld.event, detail = %withheld.detail, "Offer withheld.");
        }
        for skipped in &plan.skipped {
            if skipped.reason == "no_rule_matched" {
                // Normal: most events need no message. Recorded for `explain`, not counted.
                tracing::debug!(event = %skipped.event, detail = %skipped.detail, "No rule matched.");
                continue;
            }
            counter!(m::OUTREACH, "rule" => skipped.rule_id.clone(), "channel" => "none", "status" => "skipped")
                .increment(1);
            tracing::info!(rule = %skipped.rule_id, customer = skipped.customer_id.as_ref().map_or("", |c| c.as_str()), event = %skipped.event, reason = skipped.reason, detail = %skipped.detail, "Rule matched but nothing was queued.");
        }
        for gone in &retracted {
            counter!(m::OUTREACH, "rule" => gone.rule_id.clone(), "channel" => gone.channel.clone(), "status" => "cancelled")
                .increment(1);
        }
        if !retracted.is_empty() {
            tracing::info!(
                messages = retracted.len(),
                "Retracted waiting messages: their problem is gone."
            );
        }
        // `remove`: two decisions with one key in a batch are one message.
        for outreach in plan
            .changes
            .outreach
            .iter()
            .filter(|o| queued.remove(&o.key))
        {
            counter!(m::OUTREACH, "rule" => outreach.rule_id.clone(), "channel" => outreach.content.channel().as_str(), "status" => "queued")
                .increment(1);
            if let Some(release) = outreach.not_before {
                counter!(m::OUTREACH, "rule" => outreach.rule_id.clone(), "channel" => outreach.content.channel().as_str(), "status" => "deferred_quiet_hours")
                    .increment(1);
                tracing::info!(rule = %outreach.rule_id, customer = %outreach.customer_id, %release, "Queued for the end of the customer's quiet hours.");
            }
            if outreach.offer.is_some() {
                counter!(m::DISCOUNT_CODES_ISSUED, "rule" => outreach.rule_id.clone()).increment(1);
            }
            if let Some(risk) = &outreach.risk {
                let scores = [("delay", risk.scores.delay), ("churn", risk.scores.churn)];
                for ((score, value), external) in scores.into_iter().zip(risk.external) {
                    let source = if external { "external" } else { "builtin" };
                    histogram!(m::RISK_SCORES, "score" => score, "source" => source).record(value);
                }
            }
        }
        let mut fresh_keys = new_keys;
        for key in &rejected_keys {
            fresh_keys.remove(key);
        }
        Ok(Committed {
            fresh: fresh_keys,
            rejected: plan.rejected.into_iter().collect(),
            outreach: plan.changes.outreach.len(),
        })
    }

    /// Publishes a dead letter for `message`.
    async fn dead_letter(
        &self,
        message: &Message,
        rejection: &Rejection,
    ) -> Result<Published, String> {
        let dedup_id = message
            .info()
            .map(|info| format!("{}-{}", info.stream, info.stream_sequence))
            .unwrap_or_else(|_| format!("{:x}", fastrand::u64(..)));
        self.dead_letters
            .publish(
                rejection,
                message.subject.as_str(),
                &dedup_id,
                message.payload.clone(),
            )
            .await
    }
}

/// A parsed batch, on its way to the database.
pub(super) struct Prepared {
    pub(super) messages: Vec<Message>,
    fates: Vec<Fate>,
    accepted: Vec<Accepted>,
    records: Vec<EventRecord>,
    started: Instant,
    received_at: chrono::DateTime<Utc>,
}

impl Prepared {
    /// The events' size as they arrived.
    fn bytes(&self) -> usize {
        self.messages.iter().map(|m| m.payload.len()).sum()
    }

    /// Appends a later chunk's messages to this batch.
    fn absorb(&mut self, more: Prepared) {
        let offset = self.accepted.len();
        self.messages.extend(more.messages);
        self.fates
            .extend(more.fates.into_iter().map(|fate| match fate {
                Fate::Accepted(i) => Fate::Accepted(i + offset),
                rejected => rejected,
            }));
        self.accepted.extend(more.accepted);
        self.records.extend(more.records);
    }
}

/// A batch after its transaction, on its way to be acked.
pub(super) struct Decided {
    prepared: Prepared,
    committed: Result<Committed, StoreError>,
    /// Seconds from arrival to the end of the transaction.
    elapsed: f64,
}

/// What a committed batch produced.
#[derive(Debug, Default)]
struct Committed {
    /// Keys processed for the first time (not dead-lettered).
    fresh: std::collections::HashSet<EventKey>,
    /// Events refused while deciding (unknown customer).
    rejected: HashMap<EventKey, Rejection>,
    /// Outreach rows written.
    outreach: usize,
}

/// The next of `messages`, as many as fit in `count` events and `bytes`.
fn cut(
    messages: &mut std::iter::Peekable<std::vec::IntoIter<Message>>,
    count: usize,
    bytes: usize,
) -> Vec<Message> {
    let mut taken = Vec::new();
    let mut size = 0;
    while taken.len() < count {
        let Some(message) = messages.next_if(|m| size + m.payload.len() <= bytes) else {
            break;
        };
        size += message.payload.len();
        taken.push(message);
    }
    taken
}

/// The most bytes one pull asks for (or two of the server's largest messages, if more). A
/// pull bounded by count alone asked for 4,000 messages: with a backlog of 900 KB events that
/// is gigabytes, far past what the server lets pend for one connection (64 MiB by default),
/// and the server cut forewarn off as a slow consumer for 35–40 s at a time.
const PULL_BYTES: usize = 16 * 1024 * 1024;

/// The most bytes of events one batch carries (or one event, if larger), and waiting for the
/// database at once. Large events make a statement as large as the batch, and a database
/// connection keeps its buffers at the largest message it ever carried: with batches bounded
/// only in count, a backlog of 900 KB events made batches of up to 26 events (23 MB) and the
/// process peaked at 350–501 MB. Small events fill a batch by count long before this.
const BATCH_BYTES: usize = 4 * 1024 * 1024;

/// Deliveries of an invalid event whose dead letter cannot be published before it is dropped
/// (terminated, with an ERROR line and `forewarn_dead_letters_dropped_total`): the stream's
/// redelivery is unlimited, so that a valid event waiting for the database is never lost, and
/// without a bound such an event would be redelivered forever, holding an ack slot.
const DEAD_LETTER_DELIVERIES: i64 = 10;

/// How many times the server has delivered `message`, this time included.
fn deliveries(message: &Message) -> i64 {
    message.info().map_or(1, |info| info.delivered)
}

/// Acks or naks; a failure is logged, and the server's redelivery covers it.
async fn ack(message: &Message, kind: AckKind) {
    if let Err(e) = message.ack_with(kind).await {
        tracing::warn!(error = %e, "Could not acknowledge a message; it will be redelivered.");
    }
}
