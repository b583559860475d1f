//! What incidents need of the database: fan-outs to page through, the customers an incident
//! concerns, and its progress for on-call.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{IntakeTx, StoreError};
use crate::domain::{Affected, CustomerId, EntityId, EventKey, FanoutKind, Incident};

/// An outage event that needs customers found, written by intake with the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanoutRequest {
    /// The incident.
    pub incident_id: EntityId,
    /// The outage event the customers are decided on.
    pub event: EventKey,
    /// Whom it is for.
    pub kind: FanoutKind,
}

/// The customers a fan-out pages through, in customer id order.
#[derive(Debug, Clone)]
pub enum Audience {
    /// Customers the incident affects: a region (`kr` takes in `kr-seoul`), a segment, or a
    /// listed id; everyone when it names nobody in particular.
    Affected(Affected),
    /// Customers who were sent a message about the incident, other than for `except` (the
    /// resolution itself).
    Told {
        /// The incident.
        incident_id: EntityId,
        /// The event whose own messages do not count.
        except: EventKey,
    },
    /// The customers a fan-out ranked and has not sent to yet, most urgent first (the cursor
    /// does not apply: a page's targets are deleted as it is sent).
    Ranked {
        /// The fan-out.
        fanout_id: i64,
    },
}

/// Where a fan-out is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FanoutPhase {
    /// Paging through the audience by id, writing each customer's urgency.
    Rank,
    /// Deciding and queueing the ranked customers, most urgent first.
    Send,
}

impl FanoutPhase {
    /// The name used in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            FanoutPhase::Rank => "rank",
            FanoutPhase::Send => "send",
        }
    }

    /// The phase a stored name means.
    pub fn parse(name: &str) -> Option<FanoutPhase> {
        [FanoutPhase::Rank, FanoutPhase::Send]
            .into_iter()
            .find(|p| p.as_str() == name)
    }
}

/// A fan-out this process holds, where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanoutClaim {
    /// Row id.
    pub id: i64,
    /// The incident.
    pub incident_id: EntityId,
    /// The outage event.
    pub event: EventKey,
    /// Whom it is for.
    pub kind: FanoutKind,
    /// Ranking or sending.
    pub phase: FanoutPhase,
    /// The last customer ranked; `None` before the first page.
    pub cursor: Option<String>,
    /// Every customer of the audience has been ranked.
    pub exhausted: bool,
    /// Customers ranked and not yet decided: the window being sent.
    pub outstanding: u64,
}

/// One page done, to record with its outreach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanoutStep {
    /// The phase after this page.
    pub phase: FanoutPhase,
    /// The last customer ranked.
    pub cursor: Option<String>,
    /// Every customer of the audience has been ranked.
    pub exhausted: bool,
    /// Customers ranked in the page.
    pub ranked: u64,
    /// Customers decided in the page.
    pub customers: u64,
    /// Messages queued in the page.
    pub queued: u64,
    /// The last page: the fan-out is done (or stopped, with `stopped`).
    pub finished: bool,
    /// Why the fan-out stopped before the end (the incident was resolved meanwhile).
    pub stopped: Option<String>,
}

/// A fan-out as on-call sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanoutStatus {
    /// The outage event.
    pub event: EventKey,
    /// Whom it is for.
    pub kind: FanoutKind,
    /// `running`, `done` or `stopped`.
    pub status: String,
    /// Ranking or sending.
    pub phase: FanoutPhase,
    /// Customers ranked so far: the audience, once ranking is over.
    pub ranked: u64,
    /// Customers decided so far.
    pub customers: u64,
    /// Messages queued so far.
    pub queued: u64,
    /// When intake wrote it.
    pub created_at: DateTime<Utc>,
    /// When its last page was done.
    pub finished_at: Option<DateTime<Utc>>,
    /// Why it stopped early, if it did.
    pub detail: Option<String>,
    /// The messages it queued, by where they stand.
    pub messages: MessageCounts,
}

/// An incident's messages by where they stand.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessageCounts {
    /// Queued and due: the dispatcher takes them next.
    pub queued: u64,
    /// Queued for later: the customer's quiet hours, a retry's backoff, a paced gateway.
    pub deferred: u64,
    /// At a gateway now.
    pub sending: u64,
    /// Delivered to the provider.
    pub sent: u64,
    /// Undeliverable on every channel.
    pub failed: u64,
    /// Retracted before they went (the incident was resolved first).
    pub cancelled: u64,
}

impl MessageCounts {
    /// Every message.
    pub fn total(&self) -> u64 {
        self.queued + self.deferred + self.sending + self.sent + self.failed + self.cancelled
    }

    /// Messages whose fate is not settled yet and will be soon (deferred ones wait for their
    /// hour).
    pub fn in_flight(&self) -> u64 {
        self.queued + self.sending
    }
}

/// Everything on-call asks about one incident.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IncidentProgress {
    /// The incident as last announced, when intake has read it.
    pub incident: Option<Incident>,
    /// Its fan-outs, oldest first.
    pub fanouts: Vec<FanoutStatus>,
    /// Its messages, of every event of it.
    pub messages: MessageCounts,
}

impl IncidentProgress {
    /// Whether every fan-out is over and every message due has been attempted.
    pub fn settled(&self) -> bool {
        self.fanouts.iter().all(|f| f.status != "running") && self.messages.in_flight() == 0
    }

    /// The fan-out of one announcement, by its event id.
    pub fn fanout(&self, event_id: &str) -> Option<&FanoutStatus> {
        self.fanouts.iter().find(|f| f.event.id == event_id)
    }
}

impl FanoutStatus {
    /// Whether it is over and every message it queued that is due has been attempted.
    pub fn settled(&self) -> bool {
        self.status != "running" && self.messages.in_flight() == 0
    }
}

impl FanoutStep {
    /// The fan-out's status once this page is recorded.
    pub(crate) fn status(&self) -> &'static str {
        match (self.finished, &self.stopped) {
            (_, Some(_)) => "stopped",
            (true, None) => "done",
            (false, None) => "running",
        }
    }

    /// Whether the fan-out ends with this page.
    pub(crate) fn ends(&self) -> bool {
        self.finished || self.stopped.is_some()
    }
}

impl MessageCounts {
    /// Adds `n` messages in `status`, `later` of them (if pending) not due yet.
    pub(crate) fn add(&mut self, status: &str, n: u64, later: u64) -> Result<(), StoreError> {
        match status {
            "pending" => {
                self.deferred += later;
                self.queued += n.saturating_sub(later);
            }
            "sending" => self.sending += n,
            "sent" => self.sent += n,
            "failed" => self.failed += n,
            "cancelled" => self.cancelled += n,
            other => return Err(StoreError::Corrupt(format!("outbox status {other:?}"))),
        }
        Ok(())
    }
}

impl IncidentProgress {
    /// Counts `n` messages of the event `event_id` in `status` (`later` of them not due yet),
    /// in the incident's total and in its fan-out's.
    pub(crate) fn count_messages(
        &mut self,
        event_id: &str,
        status: &str,
        n: u64,
        later: u64,
    ) -> Result<(), StoreError> {
        self.messages.add(status, n, later)?;
        if let Some(fanout) = self.fanouts.iter_mut().find(|f| f.event.id == event_id) {
            fanout.messages.add(status, n, later)?;
        }
        Ok(())
    }
}

/// A fan-out page's transaction: an intake transaction (the page's outreach is written the way
/// intake writes it) that also reads the audience and moves the fan-out's cursor, so the page
/// and its outreach commit together or not at all.
#[async_trait]
pub trait FanoutTx: IntakeTx {
    /// The next `limit` customers of `audience` after `after`, in id order: one fan-out page.
    async fn audience_page(
        &mut self,
        audience: &Audience,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<CustomerId>, StoreError>;

    /// Writes ranked customers of fan-out `fanout_id`: (customer, urgency).
    async fn rank_targets(
        &mut self,
        fanout_id: i64,
        targets: &[(CustomerId, f64)],
    ) -> Result<(), StoreError>;

    /// Removes the `count` most urgent targets of fan-out `fanout_id` — the page
    /// `Audience::Ranked` read in this transaction: they were decided.
    async fn take_targets(&mut self, fanout_id: i64, count: usize) -> Result<(), StoreError>;

    /// Records a fan-out page, with its outreach in this transaction, if `claim` is still
    /// `owner`'s and still at its cursor; false (write nothing, roll back) when another
    /// process took it over. Extends the lease to `lease_until`.
    async fn advance_fanout(
        &mut self,
        claim: &FanoutClaim,
        step: &FanoutStep,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
}

/// The database side of incidents.
#[async_trait]
pub trait IncidentStore: Send + Sync {
    /// Starts a fan-out page's transaction.
    async fn begin_fanout(&self) -> Result<Box<dyn FanoutTx + '_>, StoreError>;

    /// Takes the oldest running fan-out nobody holds (or whose holder's lease ran out) for
    /// `owner` until `now + lease`.
    async fn claim_fanout(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<FanoutClaim>, StoreError>;

    /// Hands a fan-out back unfinished (shutdown, a failed page) so any process may take it
    /// at once.
    async fn release_fanout(&self, claim: &FanoutClaim, owner: &str) -> Result<(), StoreError>;

    /// An event as recorded (the outage event a fan-out decides on), if it still is.
    async fn event(&self, key: &EventKey) -> Result<Option<super::EventRecord>, StoreError>;

    /// An incident, as intake last applied it.
    async fn incident(&self, id: &EntityId) -> Result<Option<Incident>, StoreError>;

    /// How many customers an audience takes in now.
    async fn audience_count(&self, audience: &Audience) -> Result<u64, StoreError>;

    /// Messages about the incident being sent right now: a resolution waits for them, to know
    /// who was told.
    async fn incident_sending(&self, incident_id: &EntityId) -> Result<u64, StoreError>;

    /// Fan-outs and message counts of an incident, as of `now`.
    async fn incident_progress(
        &self,
        id: &EntityId,
        now: DateTime<Utc>,
    ) -> Result<IncidentProgress, StoreError>;
}
