//! Applying events to the batch's state: customers, opt-outs, orders, parcels, incidents,
//! external scores and the risk history they feed — in event order, so each decision reads the
//! state as it stood at its own event. Also what a batch must load for that, and who an event
//! is about.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};

use super::{Accepted, Deciding, Plan};
use crate::domain::{
    day_number, order_changed_by, shipment_of, CloudEvent, CustomerId, CustomerRef, Dimension,
    EntityId, Experience, ExperienceKind, ExternalScore, History, Incident, Order, PastOrder,
    Payload, RejectReason, Rejection, Shipment, ShipmentStatus,
};
use crate::policy::Policy;
use crate::render::event_tracking_link;
use crate::risk::features::experience_of;
use crate::rules::RuleSet;
use crate::store::{Changes, FanoutRequest, OptOutRecord, Refs, RiskScoreRecord, Snapshot};

/// What a batch needs loaded before [`decide`](super::decide), given the `now` it will be
/// decided at. Risk history is loaded only for events some rule reacts to: most events (orders
/// placed, scans) are never scored.
pub fn refs_of<'a>(
    events: impl IntoIterator<Item = &'a Accepted>,
    rules: &RuleSet,
    now: DateTime<Utc>,
) -> Refs {
    let mut refs = Refs::default();
    for accepted in events {
        let payload = &accepted.payload;
        if let Some(customer) = payload.customer() {
            refs.customers.insert(customer.id().clone());
        }
        // Shipment events, and `shipment.overdue`, which names a shipment it does not change.
        if let Some(id) = shipment_of(payload) {
            refs.shipments.insert(id.clone());
        }
        if rules.candidates(accepted.event.event_type).next().is_some() {
            let at = decision_time(&accepted.event, now);
            refs.earliest = Some(refs.earliest.map_or(at, |e| e.min(at)));
            refs.latest = Some(refs.latest.map_or(at, |e| e.max(at)));
            if let Some(customer) = payload.customer() {
                refs.scored_customers.insert(customer.id().clone());
            }
            if let Some(id) = shipment_of(payload) {
                refs.scored_shipments.insert(id.clone());
            }
            match payload {
                Payload::ShipmentCreated {
                    carrier, region, ..
                } => {
                    refs.lanes.insert((Dimension::Carrier, carrier.clone()));
                    refs.lanes.insert((Dimension::Region, region.clone()));
                }
                Payload::ShipmentDelayed { carrier, .. } => {
                    refs.lanes.insert((Dimension::Carrier, carrier.clone()));
                }
                _ => {}
            }
        }
        if let Payload::CustomerOptedOut { customer_id, .. } = payload {
            refs.customers.insert(customer_id.clone());
        }
        if let Some(id) = order_changed_by(payload) {
            refs.orders.insert(id.clone());
        }
        if let Some(id) = Incident::id_of(payload) {
            refs.incidents.insert(id.clone());
        }
        if let Payload::InventoryRestocked { sku } = payload {
            refs.skus.insert(sku.clone());
        }
    }
    refs
}

/// What a fan-out page needs loaded: its customers with their risk history, and the incident.
pub fn fanout_refs(
    accepted: &Accepted,
    recipients: &[CustomerId],
    policy: &Policy,
    now: DateTime<Utc>,
) -> Refs {
    let at = decision_time(&accepted.event, now);
    let mut refs = Refs {
        earliest: Some(at),
        latest: Some(at),
        ..Refs::default()
    };
    refs.customers.extend(recipients.iter().cloned());
    refs.scored_customers.extend(recipients.iter().cloned());
    refs.incidents
        .extend(Incident::id_of(&accepted.payload).cloned());
    if policy.caps.binds() {
        refs.marketing_since = Some(now - policy.caps.window());
    }
    refs
}

/// The aggregates a batch touched, written once each when it is decided.
#[derive(Debug, Default)]
pub(super) struct Touched {
    customers: BTreeSet<CustomerId>,
    orders: Vec<EntityId>,
    shipments: Vec<EntityId>,
    incidents: Vec<EntityId>,
}

impl Touched {
    /// Each touched aggregate once, as the batch left it, into `changes`.
    pub(super) fn write(self, snapshot: &Snapshot, changes: &mut Changes) {
        changes.customers = self
            .customers
            .into_iter()
            .filter_map(|id| snapshot.customers.get(&id).cloned().map(|doc| (id, doc)))
            .collect();
        changes.orders = take_touched(self.orders, &snapshot.orders);
        changes.shipments = take_touched(self.shipments, &snapshot.shipments);
        changes.incidents = take_touched(self.incidents, &snapshot.incidents);
    }
}

/// Applies one event to `snapshot`, noting what it touched and what to write in `plan`. False
/// when the event is refused (it names a customer nobody announced): it is dead-lettered and
/// decides nothing.
pub(super) fn apply_event(
    accepted: &Accepted,
    snapshot: &mut Snapshot,
    touched: &mut Touched,
    deciding: &Deciding<'_>,
    plan: &mut Plan,
) -> bool {
    let event = &accepted.event;
    let payload = &accepted.payload;
    let at = event.time.unwrap_or(deciding.now);

    // 1. The customer: merge an inline object, or require a known one.
    match payload.customer() {
        Some(CustomerRef::Inline { id, object }) => {
            snapshot
                .customers
                .entry(id.clone())
                .or_default()
                .merge(object);
            touched.customers.insert(id.clone());
        }
        Some(CustomerRef::Id(id)) if !snapshot.customers.contains_key(id) => {
            plan.rejected.push((
                event.key.clone(),
                Rejection {
                    reason: RejectReason::UnknownCustomer,
                    detail: format!(
                        "data.customer_id: customer `{id}` is unknown; publish \
                         customer.upserted first or send an inline data.customer object"
                    ),
                },
            ));
            return false;
        }
        _ => {}
    }

    // 2. Domain state.
    if let Payload::CustomerOptedOut {
        customer_id,
        channel,
        scope,
    } = payload
    {
        snapshot
            .history
            .opt_outs
            .entry(customer_id.clone())
            .or_default()
            .push(at);
        let opt_outs = snapshot.opt_outs.entry(customer_id.clone()).or_default();
        for c in channel.channels() {
            opt_outs.record(*c, *scope);
            let widest = opt_outs
                .iter()
                .find(|(ch, _)| ch == c)
                .map_or(*scope, |(_, s)| s);
            plan.changes.opt_outs.push(OptOutRecord {
                customer_id: customer_id.clone(),
                channel: *c,
                scope: widest,
                at,
            });
        }
    }
    if let Some(id) = order_changed_by(payload) {
        let existing = snapshot.orders.remove(id);
        if let Some(order) = Order::apply(existing, payload, at) {
            if let Some(customer) = &order.customer_id {
                snapshot
                    .history
                    .record_order(customer, PastOrder::from_order(&order));
            }
            touched.orders.push(order.id.clone());
            snapshot.orders.insert(order.id.clone(), order);
        }
    }
    if let Some(id) = Shipment::id_of(payload) {
        let existing = snapshot.shipments.remove(id);
        let was_delivered = existing.as_ref().map(|s| s.status) == Some(ShipmentStatus::Delivered);
        if let Some(shipment) = Shipment::apply(existing, payload, at) {
            if !was_delivered {
                settle(&shipment, &mut snapshot.history, &mut plan.changes);
            }
            touched.shipments.push(shipment.id.clone());
            snapshot.shipments.insert(shipment.id.clone(), shipment);
        }
    }
    // At the decision time, as its own decision reads it (an event stamped in the future
    // counts from now).
    if let (Some(experience), Some(customer)) = (
        experience_of(payload, decision_time(event, deciding.now)),
        payload.customer(),
    ) {
        remember(
            customer.id(),
            experience,
            &mut snapshot.history,
            &mut plan.changes,
        );
    }
    if let Some(id) = Incident::id_of(payload) {
        let existing = snapshot.incidents.remove(id);
        let fanout = crate::policy::incidents::fanout_after(
            existing.as_ref(),
            payload,
            deciding.policy.incident_updates,
        );
        if let Some(incident) = Incident::apply(existing, payload, at) {
            // Customers are found outside this batch, page by page (`incident::fanout`);
            // not at all when no rule could send them anything.
            if let Some(kind) = fanout {
                if deciding.rules.candidates(event.event_type).next().is_some() {
                    plan.changes.fanouts.push(FanoutRequest {
                        incident_id: incident.id.clone(),
                        event: event.key.clone(),
                        kind,
                    });
                }
            }
            touched.incidents.push(incident.id.clone());
            snapshot.incidents.insert(incident.id.clone(), incident);
        }
    }
    super::stock::apply(payload, at, snapshot, &mut plan.changes);
    if let Payload::RiskScored {
        customer_id,
        shipment_id,
        order_id,
        scores,
        model,
    } = payload
    {
        let score = ExternalScore {
            customer_id: customer_id.clone(),
            shipment_id: shipment_id.clone(),
            order_id: order_id.clone(),
            delay: scores.delay,
            churn: scores.churn,
            model: model.clone(),
            scored_at: at,
        };
        snapshot.history.external.push(score.clone());
        plan.changes.risk_scores.push(RiskScoreRecord {
            event: event.key.clone(),
            score,
        });
    }
    true
}

/// The decision time of an event: its own time, never later than now. Risk features read
/// nothing after it.
pub(crate) fn decision_time(event: &CloudEvent, now: DateTime<Utc>) -> DateTime<Utc> {
    event.time.map_or(now, |t| t.min(now))
}

/// Who an event is about: its own customer, else the customer of its shipment or order.
pub(super) fn recipient_of(payload: &Payload, snapshot: &Snapshot) -> Option<CustomerId> {
    if let Some(customer) = payload.customer() {
        return Some(customer.id().clone());
    }
    if let Some(id) = Shipment::id_of(payload) {
        if let Some(customer) = snapshot
            .shipments
            .get(id)
            .and_then(|s| s.customer_id.clone())
        {
            return Some(customer);
        }
    }
    if let Payload::ShipmentDelivered {
        order_id: Some(order_id),
        ..
    } = payload
    {
        return snapshot
            .orders
            .get(order_id)
            .and_then(|o| o.customer_id.clone());
    }
    None
}

/// A shipment that has just been delivered counts towards its carrier's and region's late
/// shares on its delivery day; if it came a day or more late, that is a bad experience of its
/// customer even without a delay notice.
fn settle(shipment: &Shipment, history: &mut History, changes: &mut Changes) {
    let (Some(delivered), Some(promised)) = (shipment.delivered_at, shipment.promised_by) else {
        return;
    };
    let late = delivered - promised >= chrono::Duration::days(1);
    let day = day_number(delivered);
    for (dimension, key) in [
        (Dimension::Carrier, &shipment.carrier),
        (Dimension::Region, &shipment.region),
    ] {
        if let Some(key) = key {
            history.record_settled(dimension, key, day, late);
            changes.settled.push((dimension, key.clone(), day, late));
        }
    }
    if let (true, Some(customer)) = (late, &shipment.customer_id) {
        let experience = Experience {
            kind: ExperienceKind::Delay,
            entity: shipment.id.as_str().to_owned(),
            at: delivered,
        };
        remember(customer, experience, history, changes);
    }
}

/// Records a bad experience in the batch's history and for the store.
fn remember(
    customer: &CustomerId,
    experience: Experience,
    history: &mut History,
    changes: &mut Changes,
) {
    history.record_experience(customer, experience.clone());
    changes.experiences.push((customer.clone(), experience));
}

/// Each touched aggregate once, in first-touched order.
fn take_touched<T: Clone>(mut ids: Vec<EntityId>, map: &HashMap<EntityId, T>) -> Vec<T> {
    let mut seen = HashSet::new();
    ids.retain(|id| seen.insert(id.clone()));
    ids.iter().filter_map(|id| map.get(id).cloned()).collect()
}

/// The tracking link: the event's own, else its shipment's.
pub(super) fn tracking_link(accepted: &Accepted, snapshot: &Snapshot) -> Option<String> {
    event_tracking_link(accepted)
        .map(str::to_owned)
        .or_else(|| {
            Shipment::id_of(&accepted.payload)
                .and_then(|id| snapshot.shipments.get(id))
                .and_then(|s| s.tracking_url.clone())
        })
}
