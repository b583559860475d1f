//! The fan-out worker: an outage event names no customer, so this finds the ones it concerns
//! and decides each one's message, a page at a time.
//!
//! Two passes in turn over a window of the audience (`[incidents] rank_window` customers), each
//! a page per transaction, so the directory is streamed and never held in memory:
//! 1. **rank**: the next `page_size` customers of the audience after the cursor, in id order;
//!    their records and risk history loaded, each one's urgency — churn risk × value, as the
//!    dispatcher orders a burst — written to `fanout_targets`, and the cursor moved.
//! 2. **send**: the most urgent `page_size` targets left, decided with the same rules, risk and
//!    policy as intake (`pipeline::decide_fanout`), their outreach written in that order and
//!    their targets deleted. When the window is sent, the next one is ranked.
//!
//! The window bounds how long the first message waits (the time to rank it) and keeps a send
//! page's random reads within a set of customers the database has just read; the order is exact
//! within a window.
//!
//! Customers most likely to leave, and most costly to lose, are thus queued first, and the
//! dispatcher (which claims by urgency) reads the outbox in the order it was written instead
//! of hopping across a million rows. A crash loses at most the page in progress, which the
//! next claim does again; the outbox's unique key would absorb a repeat anyway. The dispatcher
//! sends what the pages queue as they commit, paced by each gateway's limits, while later pages
//! are still being decided.
//!
//! Who a page is drawn from (`Audience`): for a start or an escalation, the customers the
//! incident affects; for a resolution, those who were sent a message about it. A start or an
//! escalation stops when the incident is resolved under it (what it queued and has not sent yet
//! is cancelled by the transaction that records the resolution, `policy::retraction`, and the
//! dispatcher's check catches a message claimed meanwhile); a resolution waits while messages about the incident are at a
//! gateway, so it knows who was told.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use metrics::{counter, histogram};
use serde::Deserialize;
use tokio::sync::Notify;

use super::IncidentSettings;
use crate::authoring::AuthoringHandle;
use crate::domain::Accepted;
use crate::domain::{Affected, EventKey, FanoutKind, Incident, IncidentStatus};
use crate::metrics as m;
use crate::pipeline::{self, Deciding};
use crate::policy::Policy;
use crate::schedule::{Clock, SystemClock};
use crate::shutdown::Shutdown;
use crate::store::{Audience, FanoutClaim, FanoutPhase, FanoutStep, Store, StoreError};
use crate::worker::{self, Next, Worker};

/// What one [`FanoutWorker::step`] did; lets tests and tools drive the worker page by page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageReport {
    /// No fan-out is waiting (or every one is held by another process).
    Idle,
    /// A page was ranked, or decided, and committed.
    Page {
        /// The incident.
        incident_id: String,
        /// Whom the fan-out is for.
        kind: FanoutKind,
        /// Which pass the page was.
        phase: FanoutPhase,
        /// Customers ranked or decided.
        customers: usize,
        /// Messages queued.
        queued: usize,
        /// It was the last page.
        finished: bool,
    },
    /// The fan-out ended early, for this reason.
    Stopped(String),
    /// A resolution waits for messages about its incident still at a gateway.
    Waiting,
    /// Another process took the fan-out over while this page was decided; it was rolled back.
    Lost,
}

/// A send page's decisions, as committed: for a simulation, which counts what a fan-out would
/// send the way it counts what intake decides.
#[derive(Debug)]
pub struct DecidedPage {
    /// What was decided for the page's customers.
    pub plan: pipeline::Plan,
    /// The outreach rows written (an existing idempotency key makes a write a no-op).
    pub queued: std::collections::HashSet<crate::domain::IdempotencyKey>,
}

/// Why a page could not be done; the fan-out is handed back and tried again.
#[derive(Debug, thiserror::Error)]
pub enum FanoutError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Finds and decides the customers of outage events.
pub struct FanoutWorker {
    store: Arc<dyn Store>,
    authoring: AuthoringHandle,
    policy: Policy,
    settings: IncidentSettings,
    owner: String,
    /// Notified by intake when it writes a fan-out.
    wake: Arc<Notify>,
    /// Notified when a page queues messages.
    dispatcher: Arc<Notify>,
    /// The fan-out this process holds between pages, handed back at shutdown so a restarted
    /// process need not wait out the lease.
    held: std::sync::Mutex<Option<FanoutClaim>>,
    /// What "now" is for claims, leases and decisions: the wall clock, or a test's.
    clock: Arc<dyn Clock>,
    /// Where each committed send page's decisions go, when someone counts them.
    decided: Option<tokio::sync::mpsc::UnboundedSender<DecidedPage>>,
}

impl FanoutWorker {
    /// A worker that wakes on `wake` and wakes `dispatcher` when it queues messages.
    pub fn new(
        store: Arc<dyn Store>,
        authoring: AuthoringHandle,
        policy: Policy,
        settings: IncidentSettings,
        wake: Arc<Notify>,
        dispatcher: Arc<Notify>,
    ) -> Self {
        FanoutWorker {
            store,
            authoring,
            policy,
            settings,
            owner: crate::schedule::owner_id(),
            wake,
            dispatcher,
            held: std::sync::Mutex::new(None),
            clock: Arc::new(SystemClock),
            decided: None,
        }
    }

    /// Reads "now" from `clock` instead of the wall clock (tests step through leases).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Hands each committed send page's decisions to `decided` (a simulation counts them).
    pub fn reporting_to(
        mut self,
        decided: tokio::sync::mpsc::UnboundedSender<DecidedPage>,
    ) -> Self {
        self.decided = Some(decided);
        self
    }

    /// Claims a fan-out and does its next page.
    pub async fn step(&self) -> Result<PageReport, FanoutError> {
        let now = self.clock.now();
        let Some(claim) = self
            .store
            .claim_fanout(&self.owner, now, self.settings.lease)
            .await?
        else {
            return Ok(PageReport::Idle);
        };
        let report = self.page(&claim, now).await;
        // Anything but a page that moved on hands the fan-out back: another process (or this
        // one, next time) takes it at once instead of after the lease.
        let holding = matches!(
            report,
            Ok(PageReport::Page {
                finished: false,
                ..
            })
        );
        if !holding {
            self.release(&claim).await;
        }
        if let Ok(mut held) = self.held.lock() {
            *held = holding.then_some(claim);
        }
        report
    }

    /// Steps until no fan-out is left to page (waiting ones count as left): for tests, tools
    /// and benchmarks that drive the worker without `run`.
    pub async fn run_until_idle(&self) -> Result<Vec<PageReport>, FanoutError> {
        let mut reports = Vec::new();
        loop {
            match self.step().await? {
                PageReport::Idle => return Ok(reports),
                PageReport::Waiting => {
                    // A message at a gateway: its attempt ends within the claim lease.
                    tokio::time::sleep(WAIT_FOR_SENDS).await;
                    reports.push(PageReport::Waiting);
                }
                report => reports.push(report),
            }
        }
    }

    /// Pages until shutdown; between fan-outs it waits for intake's wake-up or the poll
    /// interval. A page in progress is finished, and the fan-out held is handed back.
    pub async fn run(self, shutdown: Shutdown) {
        tracing::info!(owner = %self.owner, "Fan-out worker started.");
        worker::run(self, shutdown).await;
        tracing::info!("Fan-out worker stopped.");
    }

    /// Hands a fan-out back.
    async fn release(&self, claim: &FanoutClaim) {
        if let Err(e) = self.store.release_fanout(claim, &self.owner).await {
            tracing::warn!(error = %e, "Could not hand a fan-out back; it is free when its lease ends.");
        }
    }

    /// One page of `claim`.
    async fn page(
        &self,
        claim: &FanoutClaim,
        now: DateTime<Utc>,
    ) -> Result<PageReport, FanoutError> {
        let started = Instant::now();
        let Some(record) = self.store.event(&claim.event).await? else {
            return self
                .stop(claim, now, "its outage event is no longer stored")
                .await;
        };
        let accepted = match record.accepted() {
            Ok(accepted) => accepted,
            Err(e) => return self.stop(claim, now, &e).await,
        };
        let Some(incident) = self.store.incident(&claim.incident_id).await? else {
            return self.stop(claim, now, "the incident is not stored").await;
        };
        if claim.kind != FanoutKind::Resolved && incident.status == IncidentStatus::Resolved {
            return self
                .stop(
                    claim,
                    now,
                    "the incident was resolved before everyone was told",
                )
                .await;
        }
        match claim.phase {
            FanoutPhase::Rank => self.rank(claim, &accepted, &incident, now).await,
            FanoutPhase::Send => self.send(claim, &accepted, now, started).await,
        }
    }

    /// A rank page: the next customers of the audience by id, each with its urgency.
    async fn rank(
        &self,
        claim: &FanoutClaim,
        accepted: &Accepted,
        incident: &Incident,
        now: DateTime<Utc>,
    ) -> Result<PageReport, FanoutError> {
        // Who was told is settled only once nothing about the incident is in flight.
        if claim.kind == FanoutKind::Resolved
            && claim.cursor.is_none()
            && self.store.incident_sending(&claim.incident_id).await? > 0
        {
            return Ok(PageReport::Waiting);
        }
        let audience = audience_of(claim.kind, incident, &claim.event);
        let page_size = self.settings.page_size.max(1);
        let authoring = self.authoring.borrow().clone();
        let mut stages = m::Stages::start();
        let mut tx = self.store.begin_fanout().await?;
        let customers = tx
            .audience_page(&audience, claim.cursor.as_deref(), page_size)
            .await?;
        stages.lap("fanout.rank.read");
        let refs = pipeline::fanout_refs(accepted, &customers, &self.policy, now);
        let snapshot = tx.load(&refs).await?;
        stages.lap("fanout.rank.load");
        let ranked = pipeline::rank_fanout(accepted, &customers, &snapshot, &authoring.risk, now);
        stages.lap("fanout.rank.score");
        tx.rank_targets(claim.id, &ranked).await?;
        let exhausted = customers.len() < page_size;
        let window_full =
            claim.outstanding + ranked.len() as u64 >= self.settings.rank_window.max(1) as u64;
        let step = FanoutStep {
            phase: if exhausted || window_full {
                FanoutPhase::Send
            } else {
                FanoutPhase::Rank
            },
            cursor: customers
                .last()
                .map(|c| c.as_str().to_owned())
                .or_else(|| claim.cursor.clone()),
            exhausted,
            ranked: ranked.len() as u64,
            customers: 0,
            queued: 0,
            finished: false,
            stopped: None,
        };
        let advanced = self.advance(tx, claim, &step, now).await?;
        stages.lap("fanout.rank.write");
        if !advanced {
            return Ok(PageReport::Lost);
        }
        if exhausted {
            tracing::debug!(incident = %claim.incident_id, kind = claim.kind.as_str(), "Fan-out ranked every customer; sending the rest, most urgent first.");
        }
        Ok(PageReport::Page {
            incident_id: claim.incident_id.as_str().to_owned(),
            kind: claim.kind,
            phase: FanoutPhase::Rank,
            customers: customers.len(),
            queued: 0,
            finished: false,
        })
    }

    /// A send page: the most urgent customers left, decided and queued in that order (so the
    /// dispatcher, which claims by urgency, reads the outbox in the order it was written).
    async fn send(
        &self,
        claim: &FanoutClaim,
        accepted: &Accepted,
        now: DateTime<Utc>,
        started: Instant,
    ) -> Result<PageReport, FanoutError> {
        let page_size = self.settings.page_size.max(1);
        let authoring = self.authoring.borrow().clone();
        let mut stages = m::Stages::start();
        let mut tx = self.store.begin_fanout().await?;
        let recipients = tx
            .audience_page(
                &Audience::Ranked {
                    fanout_id: claim.id,
                },
                None,
                page_size,
            )
            .await?;
        stages.lap("fanout.send.read");
        let refs = pipeline::fanout_refs(accepted, &recipients, &self.policy, now);
        let snapshot = tx.load(&refs).await?;
        stages.lap("fanout.send.load");
        let plan = pipeline::decide_fanout(
            accepted,
            &recipients,
            snapshot,
            &Deciding::new(&authoring, &self.policy, now),
        );
        stages.lap("fanout.send.decide");
        let queued = tx.apply(&plan.changes, now).await?;
        // "No rule matched" for every customer of a minor incident would be a million notes
        // saying the same thing; the fan-out's counts say it once.
        let notes: Vec<_> = plan
            .notes(&queued, now)
            .into_iter()
            .filter(|n| n.reason != "no_rule_matched")
            .collect();
        tx.record_notes(&notes).await?;
        tx.take_targets(claim.id, recipients.len()).await?;
        // The window is sent: the next one is ranked, unless the audience is done.
        let window_sent = recipients.len() < page_size;
        let finished = window_sent && claim.exhausted;
        let step = FanoutStep {
            phase: if window_sent && !claim.exhausted {
                FanoutPhase::Rank
            } else {
                FanoutPhase::Send
            },
            cursor: claim.cursor.clone(),
            exhausted: claim.exhausted,
            ranked: 0,
            customers: recipients.len() as u64,
            queued: queued.len() as u64,
            finished,
            stopped: None,
        };
        let advanced = self.advance(tx, claim, &step, now).await?;
        stages.lap("fanout.send.write");
        if !advanced {
            return Ok(PageReport::Lost);
        }
        let kind = claim.kind.as_str();
        if !m::is_replaying() {
            counter!(m::FANOUT_CUSTOMERS, "kind" => kind).increment(step.customers);
            counter!(m::FANOUT_QUEUED, "kind" => kind).increment(step.queued);
            histogram!(m::FANOUT_PAGE_SECONDS).record(started.elapsed().as_secs_f64());
            for failure in &plan.rule_errors {
                counter!(m::RULE_ERRORS, "rule" => failure.rule_id.clone()).increment(1);
            }
        }
        if let Some(failure) = plan.rule_errors.first() {
            tracing::warn!(rule = %failure.rule_id, at = %failure.location, errors = plan.rule_errors.len(), error = %failure.message, "Rule expression failed on an incident's customers; the rule did not match them.");
        }
        if !queued.is_empty() {
            self.dispatcher.notify_one();
        }
        tracing::debug!(incident = %claim.incident_id, kind, customers = step.customers, queued = step.queued, skipped = plan.skipped.len(), "Fan-out page done.");
        if finished {
            tracing::info!(incident = %claim.incident_id, kind, "Fan-out done: every customer decided.");
        }
        let report = PageReport::Page {
            incident_id: claim.incident_id.as_str().to_owned(),
            kind: claim.kind,
            phase: FanoutPhase::Send,
            customers: recipients.len(),
            queued: queued.len(),
            finished,
        };
        if let Some(decided) = &self.decided {
            // Nobody listening any more is the listener's business.
            let _ = decided.send(DecidedPage { plan, queued });
        }
        Ok(report)
    }

    /// Records a page in its transaction and commits, unless another process took the
    /// fan-out over (false: the page is rolled back).
    async fn advance(
        &self,
        mut tx: Box<dyn crate::store::FanoutTx + '_>,
        claim: &FanoutClaim,
        step: &FanoutStep,
        now: DateTime<Utc>,
    ) -> Result<bool, FanoutError> {
        let lease_until = now + chrono::Duration::from_std(self.settings.lease).unwrap_or_default();
        if !tx
            .advance_fanout(claim, step, &self.owner, now, lease_until)
            .await?
        {
            tracing::warn!(incident = %claim.incident_id, "Another process took this fan-out over; the page is left to it.");
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Ends a fan-out early, for `why`.
    async fn stop(
        &self,
        claim: &FanoutClaim,
        now: DateTime<Utc>,
        why: &str,
    ) -> Result<PageReport, FanoutError> {
        let mut tx = self.store.begin_fanout().await?;
        let step = FanoutStep {
            phase: claim.phase,
            cursor: claim.cursor.clone(),
            exhausted: claim.exhausted,
            ranked: 0,
            customers: 0,
            queued: 0,
            finished: true,
            stopped: Some(why.to_owned()),
        };
        if tx
            .advance_fanout(claim, &step, &self.owner, now, now)
            .await?
        {
            tx.commit().await?;
            tracing::info!(incident = %claim.incident_id, kind = claim.kind.as_str(), reason = why, "Fan-out stopped.");
        }
        Ok(PageReport::Stopped(why.to_owned()))
    }
}

/// Whom a fan-out of `kind` pages through, for the outage `event` of `incident`: those it
/// affects, or for a resolution those who were sent a message about it.
pub fn audience_of(kind: FanoutKind, incident: &Incident, event: &EventKey) -> Audience {
    match kind {
        FanoutKind::Started | FanoutKind::Escalated => {
            Audience::Affected(Affected::deserialize(&incident.affected).unwrap_or_default())
        }
        FanoutKind::Resolved => Audience::Told {
            incident_id: incident.id.clone(),
            except: event.clone(),
        },
    }
}

/// How long a resolution waits before it looks again for messages still at a gateway.
const WAIT_FOR_SENDS: Duration = Duration::from_millis(200);

#[async_trait::async_trait]
impl Worker for FanoutWorker {
    async fn work(&mut self) -> Next {
        match self.step().await {
            Ok(PageReport::Page { .. } | PageReport::Stopped(_) | PageReport::Lost) => Next::Now,
            Ok(PageReport::Waiting) => Next::After(WAIT_FOR_SENDS),
            Ok(PageReport::Idle) => Next::After(self.settings.poll_interval),
            Err(e) => {
                tracing::warn!(error = %e, "Fan-out page failed; trying again.");
                Next::After(self.settings.poll_interval)
            }
        }
    }

    fn wake(&self) -> Option<&Notify> {
        Some(&self.wake)
    }

    async fn stopped(&mut self) {
        let held = self.held.lock().ok().and_then(|mut held| held.take());
        if let Some(claim) = held {
            self.release(&claim).await;
        }
    }
}
