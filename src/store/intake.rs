//! What intake needs of the database: one transaction per batch that records the events
//! (de-duplicating redeliveries), loads the state they touch and writes what was decided.

use std::collections::{BTreeSet, HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{FanoutRequest, StoreError};
use crate::domain::{
    About, Accepted, Channel, CloudEvent, CustomerDoc, CustomerId, Dimension, EntityId, EventKey,
    EventType, Experience, ExternalScore, History, IdempotencyKey, Incident, OptOutScope, OptOuts,
    Order, Outreach, Payload, Shipment, StockWait, WaitsEnded,
};
use crate::policy::retraction::Resolution;

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
    /// The shipment, order and incident it is about.
    pub about: About,
}

impl EventRecord {
    /// An accepted event as intake records it, taken from the stream at `received_at`.
    pub fn of(accepted: &Accepted, received_at: DateTime<Utc>) -> Self {
        EventRecord {
            key: accepted.event.key.clone(),
            event_type: accepted.event.event_type,
            subject: accepted.event.subject.clone(),
            time: accepted.event.time,
            customer_id: accepted.payload.customer().map(|c| c.id().clone()),
            data: accepted.event.data.to_string(),
            received_at,
            about: accepted.about(),
        }
    }

    /// The event as recorded, parsed again: for decisions made after intake (a fallback
    /// channel, an incident's fan-out).
    pub fn accepted(&self) -> Result<Accepted, String> {
        let data: serde_json::Value =
            serde_json::from_str(&self.data).map_err(|e| format!("stored event data: {e}"))?;
        let payload = Payload::parse(self.event_type, &data)
            .map_err(|e| format!("stored event data: {e}"))?;
        Ok(Accepted {
            event: CloudEvent {
                key: self.key.clone(),
                event_type: self.event_type,
                time: self.time,
                subject: self.subject.clone(),
                data,
            },
            payload,
        })
    }
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
    /// The loaded history serves decisions from here to `latest` only: what all of them count
    /// is loaded as a count (`History::shared_experiences`).
    pub earliest: Option<DateTime<Utc>>,
    /// The latest decision time in the batch: the last message before it is loaded.
    pub latest: Option<DateTime<Utc>>,
    /// Marketing messages queued since this time are loaded, for frequency caps.
    pub marketing_since: Option<DateTime<Utc>>,
    /// Items back in stock: who waits for them is loaded, with their records and history.
    pub skus: BTreeSet<String>,
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
    /// Who waits for each SKU the batch restocks (and the waits its own events start).
    pub stock_waits: HashMap<String, Vec<StockWait>>,
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
    /// Customers now waiting for an item.
    pub stock_waits: Vec<StockWait>,
    /// Waits that are over: an order's, or everyone's for an item back in stock.
    pub waits_ended: Vec<WaitsEnded>,
}

/// The orders and the items whose waits a batch ended, each once: what both backends delete.
pub(crate) fn ended_waits(ended: &[WaitsEnded]) -> (Vec<String>, Vec<String>) {
    let mut orders = BTreeSet::new();
    let mut skus = BTreeSet::new();
    for wait in ended {
        match wait {
            WaitsEnded::Order(order) => orders.insert(order.as_str().to_owned()),
            WaitsEnded::Sku(sku) => skus.insert(sku.clone()),
        };
    }
    (orders.into_iter().collect(), skus.into_iter().collect())
}

/// A waiting message intake cancelled because its problem ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retracted {
    /// The rule that queued it.
    pub rule_id: String,
    /// Its channel (`sms`, `email`, `push`).
    pub channel: String,
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

/// Where intake batches begin.
#[async_trait]
pub trait IntakeStore: Send + Sync {
    /// Starts an intake batch's transaction.
    async fn begin_intake(&self) -> Result<Box<dyn IntakeTx + '_>, StoreError>;
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

    /// Cancels the messages still waiting about problems the batch saw end (the parcel
    /// delivered, the order cancelled, the incident resolved; see `policy::retraction`), and
    /// voids their unused codes. Run after [`IntakeTx::apply`], so a message queued earlier in
    /// the same batch is cancelled too. A message being sent right now is left to the
    /// dispatcher's own check.
    async fn retract(
        &mut self,
        resolutions: &[Resolution],
        now: DateTime<Utc>,
    ) -> Result<Vec<Retracted>, StoreError>;

    /// Records why outreach was held back.
    async fn record_notes(&mut self, notes: &[DecisionNote]) -> Result<(), StoreError>;

    /// Commits.
    async fn commit(self: Box<Self>) -> Result<(), StoreError>;
}
