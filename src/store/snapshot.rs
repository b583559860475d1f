//! What an intake batch (or a fan-out page) loads before it decides, written once for every
//! backend: which customers, orders, shipments and incidents its events touch, and the risk
//! history of those it may score, from the oldest time any feature window reaches. Each backend
//! answers the few set-wise reads of [`BatchReads`] in its own SQL.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Refs, Snapshot, StoreError};
use crate::domain::{
    day_number, shared_experience_span, Channel, CustomerDoc, CustomerId, DayCount, Dimension,
    EntityId, Experience, ExternalScore, History, Incident, OptOutScope, OptOuts, Order, PastOrder,
    PastOutreach, Shipment, StockWait, EXPERIENCE_DAYS, LATE_SHARE_DAYS,
};
use crate::metrics::Stages;

/// One stored opt-out.
pub(crate) struct StoredOptOut {
    pub(crate) customer: CustomerId,
    pub(crate) channel: Channel,
    pub(crate) scope: OptOutScope,
    pub(crate) at: DateTime<Utc>,
}

/// Settled deliveries of one lane on one day.
pub(crate) struct LaneDay {
    pub(crate) lane: (Dimension, String),
    pub(crate) day: i64,
    pub(crate) count: DayCount,
}

/// Which stored bad experiences a batch reads one by one: those at or after `since`, except
/// those in `shared` (every decision of the batch counts them; the store counts them instead,
/// [`BatchReads::shared_experiences`]) and those of the same kind and entity as one there.
/// The experiences of a shipment or an incident the batch names are read whole: the batch's
/// own events may add to them in memory.
pub(crate) struct ExperienceReads<'a> {
    /// The oldest any decision of the batch looks back to.
    pub(crate) since: DateTime<Utc>,
    /// After the first, up to and including the second (`shared_experience_span`).
    pub(crate) shared: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// What the batch's events are about.
    pub(crate) named: Named<'a>,
}

/// The shipments and incidents a batch's events are about, whose experiences its own events
/// may add to.
#[derive(Clone, Copy)]
pub(crate) struct Named<'a> {
    /// Shipments: their delays, exceptions and overdues.
    pub(crate) shipments: &'a [&'a str],
    /// Incidents: their outages.
    pub(crate) incidents: &'a [&'a str],
}

/// The reads a batch's transaction answers, each for a whole set of ids at once.
#[async_trait]
pub(crate) trait BatchReads: Send {
    /// Shipments by id.
    async fn shipments(&mut self, ids: &[&str]) -> Result<Vec<Shipment>, StoreError>;
    /// Orders by id.
    async fn orders(&mut self, ids: &[&str]) -> Result<Vec<Order>, StoreError>;
    /// Incidents by id, and every open one.
    async fn incidents(&mut self, ids: &[&str]) -> Result<Vec<Incident>, StoreError>;
    /// Customer records by id.
    async fn customers(
        &mut self,
        ids: &[&str],
    ) -> Result<Vec<(CustomerId, CustomerDoc)>, StoreError>;
    /// The opt-outs of these customers.
    async fn opt_outs(&mut self, customers: &[&str]) -> Result<Vec<StoredOptOut>, StoreError>;
    /// Settled deliveries of these lanes from `first_day` on.
    async fn lane_days(
        &mut self,
        first_day: i64,
        lanes: &[(Dimension, String)],
    ) -> Result<Vec<LaneDay>, StoreError>;
    /// Bad experiences of these customers, as `reads` says which.
    async fn experiences(
        &mut self,
        reads: &ExperienceReads<'_>,
        customers: &[&str],
    ) -> Result<Vec<(CustomerId, Experience)>, StoreError>;
    /// Per customer with any, the distinct (kind, entity) experiences in `span` (after the
    /// first time, up to the second) about shipments and incidents not `named`.
    async fn shared_experiences(
        &mut self,
        span: (DateTime<Utc>, DateTime<Utc>),
        named: Named<'_>,
        customers: &[&str],
    ) -> Result<Vec<(CustomerId, usize)>, StoreError>;
    /// Every order of these customers.
    async fn orders_of(&mut self, customers: &[&str]) -> Result<Vec<Order>, StoreError>;
    /// Each customer's last message queued before `before`.
    async fn last_outreach(
        &mut self,
        before: DateTime<Utc>,
        customers: &[&str],
    ) -> Result<Vec<(CustomerId, PastOutreach)>, StoreError>;
    /// When marketing (or an offer) was queued for these customers since `since`, and not
    /// cancelled or failed.
    async fn marketing(
        &mut self,
        since: DateTime<Utc>,
        customers: &[&str],
    ) -> Result<Vec<(CustomerId, DateTime<Utc>)>, StoreError>;
    /// Who waits for these SKUs (`stock_waits`).
    async fn stock_waits(&mut self, skus: &[&str]) -> Result<Vec<StockWait>, StoreError>;
    /// External risk scores about these customers, or about these shipments; each once.
    async fn risk_scores(
        &mut self,
        customers: &[&str],
        shipments: &[&str],
    ) -> Result<Vec<ExternalScore>, StoreError>;
}

/// Loads the state a batch touches (see `IntakeTx::load`). Each group of reads is timed as a
/// stage of its own (`load.entities`, `load.customers`, … in `forewarn_stage_seconds`): which
/// of them grows with the history a database holds is what a slow load needs answered first.
pub(crate) async fn load(reads: &mut impl BatchReads, refs: &Refs) -> Result<Snapshot, StoreError> {
    let mut stages = Stages::start();
    let mut snapshot = Snapshot::default();
    let ids = |set: &std::collections::BTreeSet<EntityId>| -> Vec<String> {
        set.iter().map(|id| id.as_str().to_owned()).collect()
    };
    let (shipments, orders, incidents) = (
        ids(&refs.shipments),
        ids(&refs.orders),
        ids(&refs.incidents),
    );
    for shipment in reads.shipments(&as_strs(&shipments)).await? {
        snapshot.shipments.insert(shipment.id.clone(), shipment);
    }
    for order in reads.orders(&as_strs(&orders)).await? {
        snapshot.orders.insert(order.id.clone(), order);
    }
    // Every open incident too: it holds marketing back for the customers it affects
    // (`policy::incidents`).
    for incident in reads.incidents(&as_strs(&incidents)).await? {
        snapshot.incidents.insert(incident.id.clone(), incident);
    }
    let skus: Vec<&str> = refs.skus.iter().map(String::as_str).collect();
    if !skus.is_empty() {
        for wait in reads.stock_waits(&skus).await? {
            snapshot
                .stock_waits
                .entry(wait.sku.clone())
                .or_default()
                .push(wait);
        }
    }
    stages.lap("load.entities");

    // Shipment and order events without a customer still reach the shipment's customer, and
    // an item back in stock the customers waiting for it.
    let mut customer_ids: Vec<String> = refs
        .customers
        .iter()
        .map(|c| c.as_str().to_owned())
        .collect();
    customer_ids.extend(
        snapshot
            .shipments
            .values()
            .filter_map(|s| s.customer_id.as_ref())
            .chain(
                snapshot
                    .orders
                    .values()
                    .filter_map(|o| o.customer_id.as_ref()),
            )
            .chain(waiting_customers(&snapshot))
            .map(|c| c.as_str().to_owned()),
    );
    customer_ids.sort_unstable();
    customer_ids.dedup();
    let customer_ids = as_strs(&customer_ids);
    snapshot.customers = reads.customers(&customer_ids).await?.into_iter().collect();
    // One read serves both the opt-outs and, with their times, the risk history.
    let mut opt_out_times: HashMap<CustomerId, Vec<DateTime<Utc>>> = HashMap::new();
    for opt_out in reads.opt_outs(&customer_ids).await? {
        opt_out_times
            .entry(opt_out.customer.clone())
            .or_default()
            .push(opt_out.at);
        snapshot
            .opt_outs
            .entry(opt_out.customer)
            .or_insert_with(OptOuts::default)
            .record(opt_out.channel, opt_out.scope);
    }
    stages.lap("load.customers");
    snapshot.history = load_history(reads, refs, &snapshot, stages).await?;
    snapshot.history.opt_outs = opt_out_times;
    Ok(snapshot)
}

/// The customers waiting for an item the batch restocks: each may be told.
fn waiting_customers(snapshot: &Snapshot) -> impl Iterator<Item = &CustomerId> {
    snapshot
        .stock_waits
        .values()
        .flatten()
        .map(|wait| &wait.customer_id)
}

/// The risk history of the customers, carriers and regions the batch may score.
async fn load_history(
    reads: &mut impl BatchReads,
    refs: &Refs,
    snapshot: &Snapshot,
    mut stages: Stages,
) -> Result<History, StoreError> {
    let mut history = History::default();
    let (Some(earliest), Some(latest)) = (refs.earliest, refs.latest) else {
        return Ok(history);
    };
    let scored_shipments = refs
        .scored_shipments
        .iter()
        .filter_map(|id| snapshot.shipments.get(id));
    let mut customers: Vec<&str> = refs
        .scored_customers
        .iter()
        .map(CustomerId::as_str)
        .collect();
    customers.extend(waiting_customers(snapshot).map(CustomerId::as_str));
    let mut lanes: Vec<(Dimension, String)> = refs.lanes.iter().cloned().collect();
    for shipment in scored_shipments {
        customers.extend(shipment.customer_id.as_ref().map(CustomerId::as_str));
        lanes.extend(shipment.carrier.clone().map(|c| (Dimension::Carrier, c)));
        lanes.extend(shipment.region.clone().map(|r| (Dimension::Region, r)));
    }
    customers.sort_unstable();
    customers.dedup();
    lanes.sort();
    lanes.dedup();
    if customers.is_empty() {
        return Ok(history);
    }

    let first_day = day_number(earliest) - LATE_SHARE_DAYS;
    for day in reads.lane_days(first_day, &lanes).await? {
        history
            .late_days
            .entry(day.lane)
            .or_default()
            .insert(day.day, day.count);
    }
    stages.lap("load.lanes");
    // Nothing older than the longest window (90 days) before the batch's earliest decision;
    // what every decision counts, counted by the store: a customer's 90 days may hold hundreds.
    let shipments: Vec<&str> = refs.shipments.iter().map(EntityId::as_str).collect();
    let incidents: Vec<&str> = refs.incidents.iter().map(EntityId::as_str).collect();
    let experiences = ExperienceReads {
        since: earliest - chrono::Duration::days(EXPERIENCE_DAYS),
        shared: shared_experience_span(earliest, latest),
        named: Named {
            shipments: &shipments,
            incidents: &incidents,
        },
    };
    if let Some(span) = experiences.shared {
        for (customer, count) in reads
            .shared_experiences(span, experiences.named, &customers)
            .await?
        {
            history.shared_experiences.insert(customer, count);
        }
    }
    for (customer, experience) in reads.experiences(&experiences, &customers).await? {
        history.record_experience(&customer, experience);
    }
    stages.lap("load.experiences");
    for order in reads.orders_of(&customers).await? {
        if let Some(customer) = order.customer_id.clone() {
            history.record_order(&customer, PastOrder::from_order(&order));
        }
    }
    stages.lap("load.orders");
    // The last message before the batch's latest decision, per customer: a customer's
    // outbox grows with every outreach, and only the newest one is a feature.
    for (customer, outreach) in reads.last_outreach(latest, &customers).await? {
        history.outreach.entry(customer).or_default().push(outreach);
    }
    if let Some(since) = refs.marketing_since {
        for (customer, at) in reads.marketing(since, &customers).await? {
            history.marketing.entry(customer).or_default().push(at);
        }
    }
    stages.lap("load.outreach");
    let shipments: Vec<&str> = refs.scored_shipments.iter().map(EntityId::as_str).collect();
    history.external = reads.risk_scores(&customers, &shipments).await?;
    stages.lap("load.scores");
    Ok(history)
}

fn as_strs(owned: &[String]) -> Vec<&str> {
    owned.iter().map(String::as_str).collect()
}
