//! The database behind a narrow interface.
//!
//! The pipeline and the dispatcher see only [`Store`] and [`IntakeTx`] and the plain data types
//! below; SQL lives in one module per database (`sqlite` today; PostgreSQL plugs in beside it).
//! An intake batch is one transaction: record the events (learning which are new), load the
//! state they touch, write what the pipeline decided, commit — and only then are they acked.

mod incidents;
mod schedules;
mod sqlite;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{
    AddressEffect, Category, Channel, CustomerDoc, CustomerId, Dimension, DiscountCode, EntityId,
    EventKey, EventType, Experience, ExternalScore, History, IdempotencyKey, Incident,
    MessageContent, Offer, OptOutScope, OptOuts, Order, Outreach, Redemption, RiskScores, Shipment,
};

pub use incidents::{
    Audience, FanoutClaim, FanoutPhase, FanoutRequest, FanoutStatus, FanoutStep, IncidentProgress,
    IncidentStore, MessageCounts,
};
pub use schedules::{
    Emission, OverdueShipment, PurgeCursor, PurgeReport, ResolvedProblem, RunRecord,
    ScheduleStatus, ScheduleStore, StalledOrder, TickClaim, TickOutcome,
};
pub use sqlite::SqliteStore;

/// Database failures. Intake and dispatch retry on any of them; nothing is acked or marked sent
/// until a write succeeds.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed a statement.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations could not be applied.
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// A stored value could not be read back.
    #[error("stored data is not readable: {0}")]
    Corrupt(String),
    /// The URL names a database this build does not support.
    #[error("unsupported database URL `{0}` (expected sqlite://path)")]
    UnsupportedUrl(String),
}

/// An event as recorded for deduplication and the customer timeline.
#[derive(Debug, Clone)]
pub struct EventRecord {
    /// `source` + `id`.
    pub key: EventKey,
    /// Catalogue type.
    pub event_type: EventType,
    /// CloudEvents `subject`.
    pub subject: Option<String>,
    /// CloudEvents `time`.
    pub time: Option<DateTime<Utc>>,
    /// The customer it names directly, if any.
    pub customer_id: Option<CustomerId>,
    /// `data` as JSON text.
    pub data: String,
    /// When forewarn took it from the stream.
    pub received_at: DateTime<Utc>,
}

/// What an intake batch needs loaded.
#[derive(Debug, Clone, Default)]
pub struct Refs {
    /// Customers named by the events.
    pub customers: BTreeSet<CustomerId>,
    /// Orders named by the events.
    pub orders: BTreeSet<EntityId>,
    /// Shipments named by the events (their customers are loaded too).
    pub shipments: BTreeSet<EntityId>,
    /// Incidents named by the events.
    pub incidents: BTreeSet<EntityId>,
    /// Customers some rule may score: their risk history is loaded.
    pub scored_customers: BTreeSet<CustomerId>,
    /// Shipments some rule may score: their customers' history, carrier and region are loaded.
    pub scored_shipments: BTreeSet<EntityId>,
    /// Carriers and regions the events name themselves.
    pub lanes: BTreeSet<(Dimension, String)>,
    /// The earliest decision time in the batch: history older than any window is not loaded.
    pub earliest: Option<DateTime<Utc>>,
    /// The latest decision time in the batch: the last message before it is loaded.
    pub latest: Option<DateTime<Utc>>,
    /// Marketing messages queued since this time are loaded, for frequency caps.
    pub marketing_since: Option<DateTime<Utc>>,
}

/// The stored state an intake batch touches.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Customer records by id.
    pub customers: HashMap<CustomerId, CustomerDoc>,
    /// Opt-outs by customer.
    pub opt_outs: HashMap<CustomerId, OptOuts>,
    /// Orders by id.
    pub orders: HashMap<EntityId, Order>,
    /// Shipments by id.
    pub shipments: HashMap<EntityId, Shipment>,
    /// Incidents by id.
    pub incidents: HashMap<EntityId, Incident>,
    /// What the risk features read.
    pub history: History,
}

/// One opt-out to record.
#[derive(Debug, Clone)]
pub struct OptOutRecord {
    /// Who.
    pub customer_id: CustomerId,
    /// Which channel.
    pub channel: Channel,
    /// Widest scope so far.
    pub scope: OptOutScope,
    /// When.
    pub at: DateTime<Utc>,
}

/// One external risk score to record.
#[derive(Debug, Clone)]
pub struct RiskScoreRecord {
    /// The `risk.scored` event.
    pub event: EventKey,
    /// The score.
    pub score: ExternalScore,
}

/// Everything an intake batch writes, each aggregate once.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    /// Customer records to upsert.
    pub customers: Vec<(CustomerId, CustomerDoc)>,
    /// Opt-outs to upsert.
    pub opt_outs: Vec<OptOutRecord>,
    /// Orders to upsert.
    pub orders: Vec<Order>,
    /// Shipments to upsert.
    pub shipments: Vec<Shipment>,
    /// Incidents to upsert.
    pub incidents: Vec<Incident>,
    /// Risk scores to insert.
    pub risk_scores: Vec<RiskScoreRecord>,
    /// Outreach to queue; an existing (rule, entity, customer, channel) makes an insert a no-op.
    pub outreach: Vec<Outreach>,
    /// Bad experiences to remember.
    pub experiences: Vec<(CustomerId, Experience)>,
    /// Deliveries to count: (carrier or region, name, day, late).
    pub settled: Vec<(Dimension, String, i64, bool)>,
    /// Outage events whose customers are to be found (`incident::fanout`).
    pub fanouts: Vec<FanoutRequest>,
}

/// Why a customer did not get (all of) what a rule decided: for `forewarn explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionNote {
    /// The customer, when known.
    pub customer_id: Option<CustomerId>,
    /// When it was decided.
    pub at: DateTime<Utc>,
    /// The event.
    pub event: EventKey,
    /// The rule.
    pub rule_id: String,
    /// `skipped`, `offer_withheld` or `deferred`.
    pub outcome: &'static str,
    /// A short stable reason (`frequency_cap`, `no_usable_channel`, `quiet_hours`, …).
    pub reason: String,
    /// For people.
    pub detail: String,
}

/// What forewarn knows and did about one customer, for `forewarn explain`.
#[derive(Debug, Clone, Default)]
pub struct CustomerTimeline {
    /// The customer record, if known.
    pub customer: Option<CustomerDoc>,
    /// Opt-outs: channel, scope, when.
    pub opt_outs: Vec<(Channel, OptOutScope, DateTime<Utc>)>,
    /// The events behind the messages and notes.
    pub events: Vec<TimelineEvent>,
    /// Messages queued for the customer, oldest first.
    pub messages: Vec<TimelineMessage>,
    /// What was held back, oldest first.
    pub notes: Vec<DecisionNote>,
}

/// An event on a customer's timeline.
#[derive(Debug, Clone)]
pub struct TimelineEvent {
    /// Identity.
    pub key: EventKey,
    /// Catalogue type.
    pub event_type: String,
    /// Its own time.
    pub time: Option<DateTime<Utc>>,
    /// When forewarn took it.
    pub received_at: DateTime<Utc>,
    /// `data`.
    pub data: serde_json::Value,
}

/// A message on a customer's timeline, with every attempt.
#[derive(Debug, Clone)]
pub struct TimelineMessage {
    /// Idempotency key.
    pub key: IdempotencyKey,
    /// The rule.
    pub rule_id: String,
    /// The channel it is (now) on.
    pub channel: Channel,
    /// `pending`, `sending`, `sent` or `failed`.
    pub status: String,
    /// The event that caused it.
    pub event: EventKey,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// When it is due, if still pending.
    pub next_attempt_at: DateTime<Utc>,
    /// When the provider took it.
    pub sent_at: Option<DateTime<Utc>>,
    /// The rendered message.
    pub content: serde_json::Value,
    /// Its discount, if any.
    pub offer: Option<serde_json::Value>,
    /// Its risk explanation.
    pub risk: Option<serde_json::Value>,
    /// The last error, if any.
    pub last_error: Option<String>,
    /// Every attempt, in order.
    pub attempts: Vec<AttemptSummary>,
}

/// One attempt at a gateway, as the timeline shows it.
#[derive(Debug, Clone)]
pub struct AttemptSummary {
    /// 1, 2, …
    pub attempt: u32,
    /// The gateway's name.
    pub gateway: String,
    /// When it started.
    pub at: DateTime<Utc>,
    /// `sent`, `retry`, `failed`, `reconciled`.
    pub outcome: String,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

/// A message the dispatcher claimed.
#[derive(Debug, Clone)]
pub struct ClaimedMessage {
    /// Outbox row id.
    pub id: i64,
    /// Idempotency key.
    pub key: IdempotencyKey,
    /// The deciding rule.
    pub rule_id: String,
    /// Recipient.
    pub customer_id: String,
    /// The channel.
    pub channel: Channel,
    /// Rendered message.
    pub content: MessageContent,
    /// Attempts including this one.
    pub attempt: u32,
    /// A previous attempt was in flight when its dispatcher stopped: it may have been delivered.
    pub ambiguous: bool,
    /// When the row was queued.
    pub created_at: DateTime<Utc>,
    /// Attempts on the current channel, this one included: each channel has its own budget.
    pub channel_attempt: u32,
    /// Channels still to try after this one, in order.
    pub fallback: Vec<Channel>,
    /// Transactional or marketing.
    pub category: Category,
    /// The event that caused it (to re-render on a fallback channel).
    pub event: EventKey,
    /// The discount it carries, kept when the channel changes.
    pub offer: Option<Offer>,
    /// The risk scores it was decided with, for a re-render on another channel.
    pub risk: Option<RiskScores>,
    /// The customer's time zone when it was decided, for quiet hours.
    pub timezone: Option<chrono_tz::Tz>,
    /// The customer's region when it was decided, for quiet hours.
    pub region: Option<String>,
    /// The state its event was about, as it stands at the claim: the dispatcher retracts
    /// the message if its problem is gone (`policy::retraction`).
    pub current: Option<CurrentState>,
}

/// What the store knows now about the things an outreach's event was about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CurrentState {
    /// The event's type.
    pub event_type: String,
    /// Its shipment's status now, if it names one.
    pub shipment_status: Option<String>,
    /// Its incident's status now.
    pub incident_status: Option<String>,
    /// Its order's status now.
    pub order_status: Option<String>,
    /// Whether a parcel of its order exists now.
    pub order_shipped: bool,
}

/// An outreach moving to its next channel, re-rendered there.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelSwitch {
    /// The new channel.
    pub channel: Channel,
    /// The message rendered for it.
    pub content: MessageContent,
    /// The locale it was rendered in.
    pub locale: String,
    /// Channels left after it.
    pub fallback: Vec<Channel>,
}

/// What a fallback channel is rendered from, as stored now.
#[derive(Debug, Clone)]
pub struct FallbackInputs {
    /// The event, as recorded.
    pub event: Option<EventRecord>,
    /// The customer record as it stands.
    pub customer: Option<CustomerDoc>,
    /// The customer's opt-outs.
    pub opt_outs: OptOuts,
}

/// How an attempt ended, as the outbox records it.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptResult {
    /// Delivered to the provider.
    Sent {
        /// The provider's message id.
        provider_id: String,
    },
    /// An earlier, ambiguous attempt turned out to have been delivered.
    Reconciled {
        /// The provider's message id.
        provider_id: String,
    },
    /// Try again at `next_at`.
    Retry {
        /// When.
        next_at: DateTime<Utc>,
        /// Why this attempt failed.
        error: String,
    },
    /// Not attempted (the gateway's circuit is open): back to pending at `next_at`, the
    /// attempt not counted and not recorded.
    Deferred {
        /// When.
        next_at: DateTime<Utc>,
    },
    /// Give up.
    Failed {
        /// Why.
        error: String,
    },
    /// Not sent, and never will be: its problem is gone. Not an attempt at the gateway.
    Cancelled {
        /// Why.
        reason: String,
    },
}

impl AttemptResult {
    /// The name stored in `attempts.outcome` and used as a metric label.
    pub fn as_str(&self) -> &'static str {
        match self {
            AttemptResult::Sent { .. } => "sent",
            AttemptResult::Reconciled { .. } => "reconciled",
            AttemptResult::Retry { .. } => "retry",
            AttemptResult::Failed { .. } => "failed",
            AttemptResult::Deferred { .. } => "deferred",
            AttemptResult::Cancelled { .. } => "cancelled",
        }
    }
}

/// One attempt to record.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    /// Outbox row id.
    pub outbox_id: i64,
    /// Attempt number.
    pub attempt: u32,
    /// Gateway name.
    pub gateway: String,
    /// When the request started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// How it ended.
    pub result: AttemptResult,
    /// The channel attempted.
    pub channel: Channel,
    /// What the attempt taught about the address (an opt-out, tokens gone), recorded with it.
    pub effect: Option<AddressEffect>,
    /// The attempt failed for good and the outreach moves to its next channel, in the same
    /// transaction.
    pub switch: Option<ChannelSwitch>,
}

/// Counts of outbox rows by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxCounts {
    /// Waiting for a (re)try.
    pub pending: u64,
    /// Claimed, in flight.
    pub sending: u64,
    /// Delivered.
    pub sent: u64,
    /// Given up.
    pub failed: u64,
    /// Retracted or superseded before they were sent.
    pub cancelled: u64,
}

/// The database operations forewarn needs, and nothing more; those of schedules are in
/// [`ScheduleStore`], those of incidents in [`IncidentStore`].
#[async_trait]
pub trait Store: ScheduleStore + IncidentStore + Send + Sync + 'static {
    /// Starts an intake batch's transaction.
    async fn begin_intake(&self) -> Result<Box<dyn IntakeTx + '_>, StoreError>;

    /// Claims up to `limit` due messages for `lease`: pending rows whose time has come, and
    /// rows whose previous claim expired (marked ambiguous). Higher priority first.
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<ClaimedMessage>, StoreError>;

    /// Records attempts and moves their rows to the resulting status, in one transaction.
    async fn record_attempts(&self, attempts: &[AttemptRecord]) -> Result<(), StoreError>;

    /// The earliest `next_attempt_at` of a pending row, to sleep until then.
    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Outbox rows by status.
    async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError>;

    /// Events recorded.
    async fn event_count(&self) -> Result<u64, StoreError>;

    /// A cheap query, for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;

    /// What re-rendering an outreach on its next channel needs.
    async fn fallback_inputs(
        &self,
        event: &EventKey,
        customer_id: &str,
    ) -> Result<FallbackInputs, StoreError>;

    /// Everything about one customer since `since`, for `forewarn explain`.
    async fn timeline(
        &self,
        customer_id: &str,
        since: DateTime<Utc>,
    ) -> Result<CustomerTimeline, StoreError>;

    /// Messages waiting (quiet hours, retries), soonest first, at most `limit`.
    async fn waiting(&self, limit: usize) -> Result<Vec<WaitingMessage>, StoreError>;

    /// The risk explanation stored with the outreach `key` (see `risk::RiskAssessment`).
    async fn outreach_risk(
        &self,
        key: &IdempotencyKey,
    ) -> Result<Option<serde_json::Value>, StoreError>;

    /// Every outreach decided with risk scores, with what became of it since: for
    /// `forewarn risk export`, the training data of `risk fit`.
    async fn decision_outcomes(
        &self,
        churn_window: chrono::Duration,
    ) -> Result<Vec<DecisionOutcome>, StoreError>;

    /// A discount code as issued, for checkout and support.
    async fn discount_code(&self, code: &DiscountCode) -> Result<Option<IssuedCode>, StoreError>;

    /// Uses a code, once: atomically marks it redeemed unless it is used, expired, unknown or
    /// (when `customer_id` is given) issued to someone else.
    async fn redeem_code(
        &self,
        code: &DiscountCode,
        customer_id: Option<&str>,
        order_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Redemption, StoreError>;
}

/// A message queued but not yet due.
#[derive(Debug, Clone)]
pub struct WaitingMessage {
    /// Idempotency key.
    pub key: IdempotencyKey,
    /// The deciding rule.
    pub rule_id: String,
    /// Recipient.
    pub customer_id: String,
    /// What will be sent.
    pub content: MessageContent,
    /// When it is due.
    pub due: DateTime<Utc>,
}

/// One scored decision and the facts that settle its outcomes.
#[derive(Debug, Clone)]
pub struct DecisionOutcome {
    /// The outreach's key.
    pub key: IdempotencyKey,
    /// The rule that decided it.
    pub rule_id: String,
    /// The customer.
    pub customer_id: String,
    /// The decision time (the event's time, else when it was queued).
    pub decided_at: DateTime<Utc>,
    /// The stored explanation: features and scores.
    pub explanation: serde_json::Value,
    /// The promise of the shipment the event was about, if any.
    pub promised_by: Option<DateTime<Utc>>,
    /// When that shipment was delivered, if it was.
    pub delivered_at: Option<DateTime<Utc>>,
    /// Orders the customer placed after the decision, within the churn window.
    pub orders_after: u32,
}

/// A stored discount code.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IssuedCode {
    /// The code.
    pub code: DiscountCode,
    /// Percent off.
    pub percent: u8,
    /// Who it was issued to.
    pub customer_id: String,
    /// The rule that offered it.
    pub rule_id: String,
    /// The outreach that carried it.
    pub idempotency_key: String,
    /// When.
    pub issued_at: DateTime<Utc>,
    /// Refused after this.
    pub expires_at: DateTime<Utc>,
    /// When it was used, if it was.
    pub redeemed_at: Option<DateTime<Utc>>,
    /// The order it was used on.
    pub redeemed_order_id: Option<String>,
    /// When it was voided: its message was cancelled before it was sent.
    pub voided_at: Option<DateTime<Utc>>,
}

/// One intake batch's transaction. Dropping it without `commit` rolls back.
#[async_trait]
pub trait IntakeTx: Send {
    /// Records events; returns the keys that were new. A key already stored (a redelivery) is
    /// left out, and so is a second copy within the batch.
    async fn record_events(
        &mut self,
        events: &[EventRecord],
    ) -> Result<HashSet<EventKey>, StoreError>;

    /// Removes events recorded earlier in this transaction (they were dead-lettered after
    /// all), so their redelivery is processed again.
    async fn forget_events(&mut self, keys: &[EventKey]) -> Result<(), StoreError>;

    /// Loads the state the batch touches. Customers of the named shipments and orders are
    /// loaded too.
    async fn load(&mut self, refs: &Refs) -> Result<Snapshot, StoreError>;

    /// Writes the batch's changes. Returns the keys of the outreach actually queued: a repeat
    /// the unique constraint turned into a no-op is not among them, so metrics count messages,
    /// not decisions.
    async fn apply(
        &mut self,
        changes: &Changes,
        now: DateTime<Utc>,
    ) -> Result<HashSet<IdempotencyKey>, StoreError>;

    /// Records why outreach was held back.
    async fn record_notes(&mut self, notes: &[DecisionNote]) -> Result<(), StoreError>;

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

    /// Commits.
    async fn commit(self: Box<Self>) -> Result<(), StoreError>;
}

/// Opens the store a URL names and applies pending migrations.
pub async fn connect(
    settings: &crate::config::DatabaseSettings,
) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if settings.url.starts_with("sqlite:") {
        let store = SqliteStore::connect(settings).await?;
        store.migrate().await?;
        Ok(std::sync::Arc::new(store))
    } else {
        Err(StoreError::UnsupportedUrl(settings.url.clone()))
    }
}

/// Unix milliseconds, the stored form of every time.
pub(crate) fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The inverse of [`millis`].
pub(crate) fn from_millis(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {ms} out of range")))
}
