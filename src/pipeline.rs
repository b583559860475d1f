//! ②→⑤ as one function over domain types: events in, state changes and rendered outreach out.
//!
//! No I/O: intake loads a [`Snapshot`] of the state a batch touches, calls [`decide`], and
//! writes the returned [`Plan`] in the same transaction. That keeps every decision testable
//! without a database or a broker, and makes a batch's effect a pure function of its input.

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::domain::{
    day_number, Category, Channel, CloudEvent, Customer, CustomerDoc, CustomerId, CustomerRef,
    Dimension, DiscountCode, EntityId, EventKey, Experience, ExperienceKind, ExternalScore,
    IdempotencyKey, Incident, MessageContent, Offer, OptOuts, Order, Outreach, PastOrder, Payload,
    RejectReason, Rejection, RiskScores, Shipment, ShipmentStatus,
};
use crate::policy::{Policy, QuietHours};
use crate::render::{KoreanAdLabel, Part, Templates};
use crate::risk::features::{experience_of, stated_promise};
use crate::risk::{assess, value_weighted_urgency, RiskAssessment, RiskModel, Subject};
use crate::rules::{key_text, Bindings, Expression, OfferSpec, Rule, RuleSet};
use crate::store::FanoutRequest;
use crate::store::{Changes, DecisionNote, OptOutRecord, Refs, RiskScoreRecord, Snapshot};

/// An event whose envelope and `data` passed the catalogue.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The envelope, with `data` kept whole.
    pub event: CloudEvent,
    /// `data`, typed.
    pub payload: Payload,
}

impl Accepted {
    /// An event as the store recorded it, parsed again: for decisions made after intake (a
    /// fallback channel, an incident's fan-out).
    pub fn from_record(record: &crate::store::EventRecord) -> Result<Accepted, String> {
        let data: Value =
            serde_json::from_str(&record.data).map_err(|e| format!("stored event data: {e}"))?;
        let payload = Payload::parse(record.event_type, &data)
            .map_err(|e| format!("stored event data: {e}"))?;
        Ok(Accepted {
            event: CloudEvent {
                key: record.key.clone(),
                event_type: record.event_type,
                time: record.time,
                subject: record.subject.clone(),
                data,
            },
            payload,
        })
    }
}

/// Why a matching rule produced no message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The rule.
    pub rule_id: String,
    /// The customer, when known.
    pub customer_id: Option<CustomerId>,
    /// The event.
    pub event: EventKey,
    /// A short, stable reason (`no_customer`, `no_usable_channel`, `render_failed`, …).
    pub reason: &'static str,
    /// Details for the log.
    pub detail: String,
}

/// A rule whose expression failed on an event. The rule does not match; the failure is logged
/// and counted, so a CX author sees it without any customer receiving a wrong message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleFailure {
    /// The rule.
    pub rule_id: String,
    /// Where the rule is written.
    pub location: String,
    /// The event.
    pub event: EventKey,
    /// What failed.
    pub message: String,
}

impl RuleFailure {
    /// `at`: the failing expression's place in the rule file.
    fn new(rule: &Rule, at: &Expression, event: &CloudEvent, message: String) -> Self {
        RuleFailure {
            rule_id: rule.id.clone(),
            location: at.location.to_string(),
            event: event.key.clone(),
            message,
        }
    }
}

/// What a batch decided.
#[derive(Debug, Default)]
pub struct Plan {
    /// State changes and outreach to write.
    pub changes: Changes,
    /// Events refused after all (unknown customer); they are dead-lettered, not recorded.
    pub rejected: Vec<(EventKey, Rejection)>,
    /// Rules that matched but sent nothing, and why.
    pub skipped: Vec<Skipped>,
    /// Rules whose expressions failed on an event.
    pub rule_errors: Vec<RuleFailure>,
    /// Outreach sent without the discount its rule offered: an offer is marketing, and the
    /// customer consented to marketing on none of the rule's channels.
    pub withheld_offers: Vec<Skipped>,
}

/// What a batch needs loaded before [`decide`]. Risk history is loaded only for events some
/// rule reacts to: most events (orders placed, scans) are never scored.
/// `now` is the time [`decide`] will be given.
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
        if let Some(id) = subject_shipment(payload) {
            refs.shipments.insert(id.clone());
        }
        if rules.candidates(accepted.event.event_type).next().is_some() {
            let at = decision_time(&accepted.event, now);
            refs.earliest = Some(refs.earliest.map_or(at, |e| e.min(at)));
            refs.latest = Some(refs.latest.map_or(at, |e| e.max(at)));
            if let Some(customer) = payload.customer() {
                refs.scored_customers.insert(customer.id().clone());
            }
            if let Some(id) = subject_shipment(payload) {
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
        if let Some(id) = order_id_of(payload) {
            refs.orders.insert(id.clone());
        }
        if let Some(id) = Incident::id_of(payload) {
            refs.incidents.insert(id.clone());
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

/// The decision time of an event: its own time, never later than now. Risk features read
/// nothing after it.
fn decision_time(event: &CloudEvent, now: DateTime<Utc>) -> DateTime<Utc> {
    event.time.map_or(now, |t| t.min(now))
}

/// The shipment an event is about, including `shipment.overdue`, which changes no state.
fn subject_shipment(payload: &Payload) -> Option<&EntityId> {
    match payload {
        Payload::ShipmentOverdue { shipment_id, .. } => Some(shipment_id),
        other => Shipment::id_of(other),
    }
}

/// The order an event is about: its own, or the one a shipment event names.
fn subject_order(payload: &Payload) -> Option<&EntityId> {
    match payload {
        Payload::ShipmentCreated { order_id, .. }
        | Payload::ShipmentDelayed { order_id, .. }
        | Payload::ShipmentException { order_id, .. }
        | Payload::ShipmentOverdue { order_id, .. }
        | Payload::CsatDue { order_id, .. }
        | Payload::OrderStalled { order_id, .. } => Some(order_id),
        Payload::ShipmentDelivered { order_id, .. } => order_id.as_ref(),
        other => order_id_of(other),
    }
}

/// The order an event changes: order events, and `shipment.created`, which ships it.
fn order_id_of(payload: &Payload) -> Option<&crate::domain::EntityId> {
    match payload {
        Payload::ShipmentCreated { order_id, .. }
        | Payload::OrderPlaced { order_id, .. }
        | Payload::OrderBackordered { order_id, .. }
        | Payload::OrderCancelled { order_id, .. }
        | Payload::OrderPaymentFailed { order_id, .. } => Some(order_id),
        _ => None,
    }
}

/// Applies `events` in order to `snapshot` and decides each one's outreach, scored by `risk`.
pub fn decide(
    events: &[&Accepted],
    mut snapshot: Snapshot,
    rules: &RuleSet,
    templates: &Templates,
    risk: &RiskModel,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Plan {
    let mut plan = Plan::default();
    let mut jobs: Vec<Job<'_>> = Vec::new();
    // Aggregates touched by the batch, written once each at the end.
    let mut touched_customers: BTreeMap<CustomerId, ()> = BTreeMap::new();
    let mut touched_orders = Vec::new();
    let mut touched_shipments = Vec::new();
    let mut touched_incidents = Vec::new();

    for accepted in events {
        let event = &accepted.event;
        let payload = &accepted.payload;
        let at = event.time.unwrap_or(now);

        // 1. The customer: merge an inline object, or require a known one.
        match payload.customer() {
            Some(CustomerRef::Inline { id, object }) => {
                snapshot
                    .customers
                    .entry(id.clone())
                    .or_default()
                    .merge(object);
                touched_customers.insert(id.clone(), ());
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
                continue;
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
        if let Some(id) = order_id_of(payload) {
            let existing = snapshot.orders.remove(id);
            if let Some(order) = Order::apply(existing, payload, at) {
                if let Some(customer) = &order.customer_id {
                    snapshot
                        .history
                        .record_order(customer, PastOrder::from_order(&order));
                }
                touched_orders.push(order.id.clone());
                snapshot.orders.insert(order.id.clone(), order);
            }
        }
        if let Some(id) = Shipment::id_of(payload) {
            let existing = snapshot.shipments.remove(id);
            let was_delivered =
                existing.as_ref().map(|s| s.status) == Some(ShipmentStatus::Delivered);
            if let Some(shipment) = Shipment::apply(existing, payload, at) {
                if !was_delivered {
                    settle(&shipment, &mut snapshot.history, &mut plan.changes);
                }
                touched_shipments.push(shipment.id.clone());
                snapshot.shipments.insert(shipment.id.clone(), shipment);
            }
        }
        // At the decision time, as its own decision reads it (an event stamped in the future
        // counts from now).
        if let (Some(experience), Some(customer)) = (
            experience_of(payload, decision_time(event, now)),
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
                policy.incident_updates,
            );
            if let Some(incident) = Incident::apply(existing, payload, at) {
                // Customers are found outside this batch, page by page (`incident::fanout`);
                // not at all when no rule could send them anything.
                if let Some(kind) = fanout {
                    if rules.candidates(event.event_type).next().is_some() {
                        plan.changes.fanouts.push(FanoutRequest {
                            incident_id: incident.id.clone(),
                            event: event.key.clone(),
                            kind,
                        });
                    }
                }
                touched_incidents.push(incident.id.clone());
                snapshot.incidents.insert(incident.id.clone(), incident);
            }
        }
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

        // 3. Rules: the highest-priority rule whose `when` holds decides. Rendering is deferred
        //    to the parallel pass below, with the state as it stands at this event.
        let Some(first) = rules.candidates(event.event_type).next() else {
            continue;
        };
        // An outage names no customer: those it affects are found page by page.
        if Incident::id_of(payload).is_some() {
            continue;
        }
        let Some(customer_id) = recipient_of(payload, &snapshot) else {
            plan.skipped.push(Skipped {
                rule_id: first.id.clone(),
                customer_id: None,
                event: event.key.clone(),
                reason: "no_customer",
                detail: "the event names no customer forewarn knows".into(),
            });
            continue;
        };
        let decided = decide_for(
            accepted,
            customer_id,
            &mut snapshot,
            rules,
            risk,
            policy,
            now,
            &mut plan,
        );
        jobs.extend(decided);
    }

    render_into(&mut plan, &jobs, templates, &policy.quiet, now);

    plan.changes.customers = touched_customers
        .into_keys()
        .filter_map(|id| snapshot.customers.get(&id).cloned().map(|doc| (id, doc)))
        .collect();
    plan.changes.orders = take_touched(touched_orders, &snapshot.orders);
    plan.changes.shipments = take_touched(touched_shipments, &snapshot.shipments);
    plan.changes.incidents = take_touched(touched_incidents, &snapshot.incidents);
    plan
}

/// The rule that decides for one customer on one event, with the holds of ④, as a job to
/// render; `None` (with the reason in `plan`) when nothing is to be sent.
#[allow(clippy::too_many_arguments)]
fn decide_for<'a>(
    accepted: &'a Accepted,
    customer_id: CustomerId,
    snapshot: &mut Snapshot,
    rules: &'a RuleSet,
    risk: &RiskModel,
    policy: &Policy,
    now: DateTime<Utc>,
    plan: &mut Plan,
) -> Option<Job<'a>> {
    let event = &accepted.event;
    let payload = &accepted.payload;
    let mut candidates = rules.candidates(event.event_type).peekable();
    let first = candidates.peek().copied()?;
    let skip =
        |rule: &Rule, reason: &'static str, customer_id: Option<CustomerId>, detail: String| {
            Skipped {
                rule_id: rule.id.clone(),
                customer_id,
                event: event.key.clone(),
                reason,
                detail,
            }
        };
    let Some(doc) = snapshot.customers.get(&customer_id) else {
        plan.skipped.push(skip(
            first,
            "no_customer",
            Some(customer_id),
            "the customer record is missing".into(),
        ));
        return None;
    };
    // Every decision is scored: the scores are stored with the outreach and order a burst.
    let assessment = assess(
        &subject_of(accepted, &customer_id, snapshot, now),
        &snapshot.history,
        risk,
    );
    let scores = assessment.scores();
    // Built only when a candidate has an expression: most events never pay for it.
    let mut bindings: Option<Bindings> = None;
    let mut bind = || {
        let incident = Incident::id_of(payload)
            .and_then(|id| snapshot.incidents.get(id))
            .map_or(Value::Null, incident_json);
        Bindings::new(
            attributes_json(event),
            &event.data,
            Cow::Borrowed(doc.as_value()),
            Cow::Owned(scores.to_json()),
            Cow::Owned(incident),
            now,
        )
    };
    // The first candidate, best first, whose expressions all hold and evaluate: a rule
    // whose `when`, `once_per` or offer fails does not match, and the next one is tried.
    let mut winner = None;
    // Why each rule tried did not match, for `explain` when none does.
    let mut misses = Vec::new();
    for rule in candidates {
        let outcome = if rule.has_expressions() {
            evaluate_rule(rule, bindings.get_or_insert_with(&mut bind), event, now)
        } else {
            Ok(Some(Decision {
                entity: event_entity(event),
                offer: None,
            }))
        };
        match outcome {
            Ok(Some(decision)) => {
                winner = Some((rule, decision));
                break;
            }
            Ok(None) => misses.push(format!("{}: `when` is false", rule.id)),
            Err(failure) => {
                misses.push(format!("{}: {}", rule.id, failure.message));
                plan.rule_errors.push(failure);
            }
        }
    }
    let Some((rule, Decision { entity, mut offer })) = winner else {
        plan.skipped.push(skip(
            first,
            "no_rule_matched",
            Some(customer_id.clone()),
            misses.join("; "),
        ));
        return None;
    };
    // Marketing held back (an open incident, the frequency cap): a marketing rule sends
    // nothing; a transactional message still goes, without its discount.
    let held = |reason: &'static str, detail: String| Skipped {
        rule_id: rule.id.clone(),
        customer_id: Some(customer_id.clone()),
        event: event.key.clone(),
        reason,
        detail,
    };
    if rule.category.with_offer(offer.is_some()) == Category::Marketing {
        if let Some(incident) = crate::policy::incidents::open_incident_affecting(
            snapshot.incidents.values(),
            &customer_id,
            doc,
        ) {
            let why = held(
                "open_incident",
                format!(
                    "incident {} affects the customer and is not resolved: no marketing until it is",
                    incident.id
                ),
            );
            if hold_back(plan, rule.category, &mut offer, why) {
                return None;
            }
        }
    }
    // Frequency cap, counted in the customer's time — messages queued in the window up to
    // now — whatever the events' own times.
    if policy.caps.binds() && rule.category.with_offer(offer.is_some()) == Category::Marketing {
        let window = policy.caps.window();
        let sent = snapshot.history.marketing_within(&customer_id, now, window);
        if !policy.caps.allows(sent) {
            let why = held(
                "frequency_cap",
                format!(
                    "{sent} marketing message(s) in the last {}; the cap is {}",
                    humantime::format_duration(policy.caps.marketing_window),
                    policy.caps.marketing_max
                ),
            );
            if hold_back(plan, rule.category, &mut offer, why) {
                return None;
            }
        } else {
            snapshot
                .history
                .marketing
                .entry(customer_id.clone())
                .or_default()
                .push(now);
        }
    }
    // An incident's customers hear riskiest and most valuable first; others by churn risk.
    let urgency = if Incident::id_of(payload).is_some() {
        value_weighted_urgency(&assessment, doc, risk)
    } else {
        scores.churn
    };
    Some(Job {
        rule,
        accepted,
        entity,
        offer,
        doc: doc.clone(),
        customer_id: customer_id.clone(),
        opt_outs: snapshot
            .opt_outs
            .get(&customer_id)
            .cloned()
            .unwrap_or_default(),
        tracking: tracking_link(accepted, snapshot),
        risk: assessment,
        urgency,
    })
}

/// Renders every job on all cores and adds the outreach, or why it failed, to `plan`.
fn render_into(
    plan: &mut Plan,
    jobs: &[Job<'_>],
    templates: &Templates,
    quiet: &QuietHours,
    now: DateTime<Utc>,
) {
    for (job, result) in jobs.iter().zip(render_all(jobs, templates, quiet, now)) {
        match result {
            Ok(outreach) => {
                if job.offer.is_some() && outreach.offer.is_none() {
                    plan.withheld_offers.push(Skipped {
                        rule_id: job.rule.id.clone(),
                        customer_id: Some(job.customer_id.clone()),
                        event: job.accepted.event.key.clone(),
                        reason: "no_marketing_consent",
                        detail: "an offer is marketing; the customer has not consented to \
                                 marketing on any of the rule's channels"
                            .into(),
                    });
                }
                plan.changes.outreach.push(outreach)
            }
            Err((reason, detail)) => plan.skipped.push(Skipped {
                rule_id: job.rule.id.clone(),
                customer_id: Some(job.customer_id.clone()),
                event: job.accepted.event.key.clone(),
                reason,
                detail,
            }),
        }
    }
}

/// How urgently each of `recipients` should hear about an outage event: the fan-out's first
/// pass, which orders its second (see [`value_weighted_urgency`]). A customer without a record
/// is left out.
pub fn rank_fanout(
    accepted: &Accepted,
    recipients: &[CustomerId],
    snapshot: &Snapshot,
    risk: &RiskModel,
    now: DateTime<Utc>,
) -> Vec<(CustomerId, f64)> {
    recipients
        .iter()
        .filter_map(|customer| {
            let doc = snapshot.customers.get(customer)?;
            let assessment = assess(
                &subject_of(accepted, customer, snapshot, now),
                &snapshot.history,
                risk,
            );
            Some((
                customer.clone(),
                value_weighted_urgency(&assessment, doc, risk),
            ))
        })
        .collect()
}

/// Decides one outage event for `recipients` — a page of the customers it concerns, found by
/// `incident::fanout` — as [`decide`] decides an event for its own customer, without applying
/// the event again (intake did, once). `snapshot` holds their records and the incident.
#[allow(clippy::too_many_arguments)]
pub fn decide_fanout(
    accepted: &Accepted,
    recipients: &[CustomerId],
    mut snapshot: Snapshot,
    rules: &RuleSet,
    templates: &Templates,
    risk: &RiskModel,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Plan {
    let mut plan = Plan::default();
    let mut jobs = Vec::with_capacity(recipients.len());
    for customer_id in recipients {
        let decided = decide_for(
            accepted,
            customer_id.clone(),
            &mut snapshot,
            rules,
            risk,
            policy,
            now,
            &mut plan,
        );
        jobs.extend(decided);
    }
    render_into(&mut plan, &jobs, templates, &policy.quiet, now);
    plan
}

/// A shipment that has just been delivered counts towards its carrier's and region's late
/// shares on its delivery day; if it came a day or more late, that is a bad experience of its
/// customer even without a delay notice.
fn settle(shipment: &Shipment, history: &mut crate::domain::History, changes: &mut Changes) {
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
    history: &mut crate::domain::History,
    changes: &mut Changes,
) {
    history.record_experience(customer, experience.clone());
    changes.experiences.push((customer.clone(), experience));
}

impl Plan {
    /// What the batch held back, for `forewarn explain`: rules that matched but sent nothing,
    /// offers withheld, and messages queued for the end of quiet hours (those actually queued).
    pub fn notes(
        &self,
        queued: &std::collections::HashSet<IdempotencyKey>,
        at: DateTime<Utc>,
    ) -> Vec<DecisionNote> {
        let note = |s: &Skipped, outcome: &'static str| DecisionNote {
            customer_id: s.customer_id.clone(),
            at,
            event: s.event.clone(),
            rule_id: s.rule_id.clone(),
            outcome,
            reason: s.reason.to_owned(),
            detail: s.detail.clone(),
        };
        let mut notes: Vec<DecisionNote> = self
            .skipped
            .iter()
            .map(|s| note(s, "skipped"))
            .chain(
                self.withheld_offers
                    .iter()
                    .map(|s| note(s, "offer_withheld")),
            )
            .collect();
        notes.extend(
            self.changes
                .outreach
                .iter()
                .filter(|o| queued.contains(&o.key))
                .filter_map(|o| {
                    let release = o.not_before?;
                    Some(DecisionNote {
                        customer_id: Some(o.customer_id.clone()),
                        at,
                        event: o.event.clone(),
                        rule_id: o.rule_id.clone(),
                        outcome: "deferred",
                        reason: "quiet_hours".into(),
                        detail: format!(
                            "{} in the customer's quiet hours; queued for {}",
                            o.content.channel(),
                            release.to_rfc3339()
                        ),
                    })
                }),
        );
        notes
    }
}

/// What `accepted` is about for the risk models, as `snapshot` stands.
fn subject_of<'a>(
    accepted: &'a Accepted,
    customer: &'a CustomerId,
    snapshot: &'a Snapshot,
    now: DateTime<Utc>,
) -> Subject<'a> {
    let payload = &accepted.payload;
    Subject {
        at: decision_time(&accepted.event, now),
        customer,
        shipment: subject_shipment(payload).and_then(|id| snapshot.shipments.get(id)),
        order: subject_order(payload),
        promised_by: stated_promise(payload),
    }
}

/// The scores of one event for its recipient, with the batch's loaded state and history: what
/// [`decide`] computes for every decision (used alone by the risk benchmark and dry runs).
pub fn assess_event(
    accepted: &Accepted,
    snapshot: &Snapshot,
    risk: &RiskModel,
    now: DateTime<Utc>,
) -> Option<RiskAssessment> {
    let customer = recipient_of(&accepted.payload, snapshot)?;
    Some(assess(
        &subject_of(accepted, &customer, snapshot, now),
        &snapshot.history,
        risk,
    ))
}

/// Holds marketing back for `why`: a marketing rule sends nothing (returns true: skip it); a
/// transactional message loses its offer and still goes.
fn hold_back(plan: &mut Plan, category: Category, offer: &mut Option<Offer>, why: Skipped) -> bool {
    if category == Category::Marketing {
        plan.skipped.push(why);
        return true;
    }
    plan.withheld_offers.push(why);
    *offer = None;
    false
}

/// What a matching rule decided beyond "send": the outreach's entity and its offer.
struct Decision {
    /// `once:<value>` or the event's own identity.
    entity: String,
    offer: Option<Offer>,
}

/// Without `once_per`, each event is its own outreach.
fn event_entity(event: &CloudEvent) -> String {
    format!("event:{}/{}", event.key.source, event.key.id)
}

/// One rule on one event: `None` when `when` is false, an error when an expression fails.
fn evaluate_rule(
    rule: &Rule,
    bindings: &mut Bindings<'_>,
    event: &CloudEvent,
    now: DateTime<Utc>,
) -> Result<Option<Decision>, RuleFailure> {
    let fail = |at: &Expression, message: String| RuleFailure::new(rule, at, event, message);
    if let Some(when) = &rule.when {
        match when.evaluate(bindings) {
            Ok(cel::Value::Bool(true)) => {}
            Ok(cel::Value::Bool(false)) => return Ok(None),
            Ok(other) => {
                return Err(fail(
                    when,
                    format!("`when` gave {other:?}, not true or false"),
                ))
            }
            Err(e) => return Err(fail(when, format!("`when`: {e}"))),
        }
    }
    let entity = match &rule.once_per {
        None => event_entity(event),
        Some(once_per) => {
            let value = once_per
                .evaluate(bindings)
                .map_err(|e| fail(once_per, format!("`once_per`: {e}")))?;
            let text = key_text(&value).ok_or_else(|| {
                fail(
                    once_per,
                    format!("`once_per` gave {value:?}; it must be a string, number or boolean"),
                )
            })?;
            format!("once:{text}")
        }
    };
    let offer = match &rule.offer {
        None => None,
        Some(spec) => offer_percent(spec, bindings)
            .and_then(|percent| issue_offer(percent, spec, now))
            .map_err(|e| fail(&spec.discount_percent, e))?,
    };
    Ok(Some(Decision { entity, offer }))
}

/// Each touched aggregate once, in first-touched order.
fn take_touched<T: Clone>(
    mut ids: Vec<crate::domain::EntityId>,
    map: &std::collections::HashMap<crate::domain::EntityId, T>,
) -> Vec<T> {
    let mut seen = std::collections::HashSet::new();
    ids.retain(|id| seen.insert(id.clone()));
    ids.iter().filter_map(|id| map.get(id).cloned()).collect()
}

/// Who an event is about: its own customer, else the customer of its shipment or order.
fn recipient_of(payload: &Payload, snapshot: &Snapshot) -> Option<CustomerId> {
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

/// One outreach to render: the rule that won and the state as it stood at its event.
struct Job<'a> {
    rule: &'a Rule,
    accepted: &'a Accepted,
    /// The `once_per` value, or the event's own identity.
    entity: String,
    /// The discount issued with it, if any.
    offer: Option<Offer>,
    customer_id: CustomerId,
    doc: CustomerDoc,
    opt_outs: OptOuts,
    tracking: Option<String>,
    /// The decision's scores and why.
    risk: RiskAssessment,
    /// See [`Outreach::urgency`].
    urgency: f64,
}

/// Below this many jobs a second thread costs more than it saves.
const PARALLEL_RENDER_MIN: usize = 64;

/// Renders every job, in order, on all cores: rendering is most of a batch's CPU time, and
/// the database is idle meanwhile.
fn render_all(
    jobs: &[Job<'_>],
    templates: &Templates,
    quiet: &QuietHours,
    now: DateTime<Utc>,
) -> Vec<Result<Outreach, (&'static str, String)>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads < 2 || jobs.len() < PARALLEL_RENDER_MIN {
        return jobs
            .iter()
            .map(|job| outreach_for(job, templates, quiet, now))
            .collect();
    }
    let chunk = jobs.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let mut parts = jobs.chunks(chunk);
        let first = parts.next().unwrap_or_default();
        let handles: Vec<_> = parts
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|job| outreach_for(job, templates, quiet, now))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut results: Vec<_> = first
            .iter()
            .map(|job| outreach_for(job, templates, quiet, now))
            .collect();
        for handle in handles {
            match handle.join() {
                Ok(part) => results.extend(part),
                // A panic while rendering is a bug; re-raise it rather than drop messages.
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        results
    })
}

/// Chooses the channel, renders the message and derives its key.
fn outreach_for(
    job: &Job<'_>,
    templates: &Templates,
    quiet: &QuietHours,
    now: DateTime<Utc>,
) -> Result<Outreach, (&'static str, String)> {
    let (rule, accepted, doc, opt_outs) = (job.rule, job.accepted, &job.doc, &job.opt_outs);
    let event = &accepted.event;
    let customer = Customer::from_doc(doc).map_err(|e| ("customer_unreadable", e.to_string()))?;
    // An offer is marketing: without marketing consent on any channel the customer still hears
    // about their problem, without the discount.
    let mut offer = job.offer.as_ref();
    let (mut usable, mut refused) =
        usable_channels(rule, &customer, opt_outs, templates, offer.is_some());
    if usable.is_empty() && offer.is_some() {
        (usable, refused) = usable_channels(rule, &customer, opt_outs, templates, false);
        if !usable.is_empty() {
            offer = None;
        }
    }
    let Some((&channel, fallback)) = usable.split_first() else {
        return Err(("no_usable_channel", refused.join(", ")));
    };
    let message = RenderInput {
        rule_id: &rule.id,
        template: &rule.template,
        accepted,
        doc,
        tracking: job.tracking.as_deref(),
        offer,
        risk: Some(job.risk.scores()),
        category: rule.category,
    };
    let (content, locale) =
        render_on(&message, &customer, channel, templates).map_err(|e| ("render_failed", e))?;
    let entity = job.entity.clone();
    let zone = customer.timezone.as_ref().map(|z| z.tz());
    let not_before = quiet
        .release_at(
            now,
            zone,
            customer.region.as_deref(),
            rule.category.with_offer(offer.is_some()),
            channel,
        )
        .map(|(release, _)| release);
    Ok(Outreach {
        key: IdempotencyKey::derive(&rule.id, &customer.id, &entity, channel),
        rule_id: rule.id.clone(),
        customer_id: customer.id.clone(),
        entity,
        category: rule.category,
        priority: rule.priority,
        fallback: fallback.to_vec(),
        event: event.key.clone(),
        locale,
        content,
        offer: offer.cloned(),
        risk: Some(job.risk.record()),
        not_before,
        timezone: zone.map(|z| z.name().to_owned()),
        region: customer.region.clone(),
        order_id: subject_order(&accepted.payload).map(|o| o.as_str().to_owned()),
        incident_id: Incident::id_of(&accepted.payload).map(|i| i.as_str().to_owned()),
        urgency: job.urgency,
    })
}

/// Why `channel` cannot carry `rule`'s message to `customer` now, if it cannot. `with_offer`:
/// a message carrying a discount is marketing for consent and opt-outs, whatever the rule says.
pub fn channel_refusal(
    rule: &Rule,
    customer: &Customer,
    opt_outs: &OptOuts,
    templates: &Templates,
    channel: Channel,
    with_offer: bool,
) -> Option<&'static str> {
    let category = rule.category.with_offer(with_offer);
    if !templates.serves(&rule.template, channel) {
        Some("no template parts")
    } else if !customer.has_address_for(channel) {
        Some("no address")
    } else if opt_outs.blocks(channel, category) {
        Some("opted out")
    } else if !customer.consent.allows(channel, category) {
        Some("no consent")
    } else {
        None
    }
}

/// The channels that may carry the message, best first, and why the others may not.
fn usable_channels(
    rule: &Rule,
    customer: &Customer,
    opt_outs: &OptOuts,
    templates: &Templates,
    with_offer: bool,
) -> (Vec<Channel>, Vec<String>) {
    let mut usable = Vec::new();
    let mut refused = Vec::new();
    for channel in rule.channels_for(customer) {
        match channel_refusal(rule, customer, opt_outs, templates, channel, with_offer) {
            None => usable.push(channel),
            Some(reason) => refused.push(format!("{channel}: {reason}")),
        }
    }
    (usable, refused)
}

/// Everything one message is rendered from: for outreach, fallbacks, `check` and `preview`.
#[derive(Debug, Clone, Copy)]
pub struct RenderInput<'a> {
    /// `rule.id` in the template context.
    pub rule_id: &'a str,
    /// The template folder.
    pub template: &'a str,
    /// Its event.
    pub accepted: &'a Accepted,
    /// The customer record, as templates see it.
    pub doc: &'a CustomerDoc,
    /// `links.tracking`.
    pub tracking: Option<&'a str>,
    /// The discount issued with it.
    pub offer: Option<&'a Offer>,
    /// `risk` in the template context.
    pub risk: Option<RiskScores>,
    /// The rule's category; with an offer the message is marketing whatever it says.
    pub category: Category,
}

impl RenderInput<'_> {
    /// Advertising: a marketing rule, or any message with a discount.
    pub fn is_marketing(&self) -> bool {
        self.category.with_offer(self.offer.is_some()) == Category::Marketing
    }
}

/// Renders the message for `channel` in `customer`'s locale, addressed to them; returns it
/// with the locale used.
pub fn render_on(
    input: &RenderInput<'_>,
    customer: &Customer,
    channel: Channel,
    templates: &Templates,
) -> Result<(MessageContent, String), String> {
    let mut parts = render_parts(input, templates, channel, customer.locale.as_ref())
        .map_err(|e| e.to_string())?;
    let content = match channel {
        Channel::Sms => {
            let to = customer
                .phone
                .as_ref()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default();
            let body = parts.take(Part::Sms).unwrap_or_default();
            let body = sms_as_sent(body, input, templates, KoreanAdLabel::applies_to(&to));
            MessageContent::Sms { to, body }
        }
        Channel::Email => MessageContent::Email {
            to: customer
                .email
                .as_ref()
                .map(|e| e.as_str().to_owned())
                .unwrap_or_default(),
            subject: parts.take(Part::EmailSubject).unwrap_or_default(),
            text: parts.take(Part::EmailText),
            html: parts.take(Part::EmailHtml),
        },
        Channel::Push => MessageContent::Push {
            to: customer
                .push_tokens
                .iter()
                .map(|t| t.as_str().to_owned())
                .collect(),
            title: parts.take(Part::PushTitle).unwrap_or_default(),
            body: parts.take(Part::PushBody).unwrap_or_default(),
        },
    };
    Ok((content, parts.locale))
}

/// An SMS body as it goes out: advertising to a Korean phone carries the label the law
/// requires. `check` and `preview` pass `korean` for Korean-language texts, to measure the real
/// size.
pub fn sms_as_sent(
    body: String,
    input: &RenderInput<'_>,
    templates: &Templates,
    korean: bool,
) -> String {
    match templates.korean_ad_label() {
        Some(label) if korean && input.is_marketing() => label.apply(&body),
        _ => body,
    }
}

/// `discount_percent` on one event: a whole number from 0 to 100 (0 = no offer).
pub fn offer_percent(spec: &OfferSpec, bindings: &mut Bindings<'_>) -> Result<u8, String> {
    let value = spec
        .discount_percent
        .evaluate(bindings)
        .map_err(|e| format!("`discount_percent`: {e}"))?;
    let whole = match value {
        cel::Value::Int(n) => Some(n),
        cel::Value::UInt(n) => i64::try_from(n).ok(),
        cel::Value::Float(f) if f.fract() == 0.0 && f.abs() <= 1e6 => Some(f as i64),
        _ => None,
    };
    whole
        .and_then(|n| u8::try_from(n).ok())
        .filter(|n| *n <= 100)
        .ok_or_else(|| {
            format!("`discount_percent` gave {value:?}; it must be a whole number from 0 to 100")
        })
}

/// A fresh code for `percent` off, valid `spec.valid_days` from `now`; none for 0 %.
/// Random, so it lives in the plan the batch commits, and a retried batch draws anew.
pub fn issue_offer(
    percent: u8,
    spec: &OfferSpec,
    now: DateTime<Utc>,
) -> Result<Option<Offer>, String> {
    if percent == 0 {
        return Ok(None);
    }
    let code = DiscountCode::generate()
        .map_err(|e| format!("no random source for a discount code: {e}"))?;
    Ok(Some(Offer {
        code,
        percent,
        expires_at: now + chrono::Duration::days(i64::from(spec.valid_days)),
    }))
}

/// Renders a template's parts for `channel` in `locale`: how every message is rendered, and
/// how `check` and `preview` try every channel and locale rather than the one a customer gets.
pub fn render_parts(
    input: &RenderInput<'_>,
    templates: &Templates,
    channel: Channel,
    locale: Option<&crate::domain::Locale>,
) -> Result<crate::render::RenderedParts, crate::render::RenderError> {
    templates.render(input.template, channel, locale, render_context(input))
}

/// The scores of one event on its own, with no history but what the event itself says: for
/// `check` and `preview`, which try rules and templates on example events.
pub fn example_assessment(
    accepted: &Accepted,
    customer: &CustomerId,
    risk: &RiskModel,
    now: DateTime<Utc>,
) -> RiskAssessment {
    let at = decision_time(&accepted.event, now);
    let shipment = Shipment::apply(None, &accepted.payload, at);
    let mut history = crate::domain::History::default();
    if let Some(order) = Order::apply(None, &accepted.payload, at) {
        history.record_order(customer, PastOrder::from_order(&order));
    }
    if let Some(experience) = experience_of(&accepted.payload, at) {
        history.record_experience(customer, experience);
    }
    assess(
        &Subject {
            at,
            customer,
            shipment: shipment.as_ref(),
            order: subject_order(&accepted.payload),
            promised_by: stated_promise(&accepted.payload),
        },
        &history,
        risk,
    )
}

/// The bindings rule expressions see for one event on its own (no stored state but what the
/// event itself says, `risk` from [`example_assessment`]): for `check`, which tries
/// expressions on example events.
pub fn example_bindings<'a>(
    accepted: &'a Accepted,
    customer: &'a CustomerDoc,
    risk: RiskScores,
    now: DateTime<Utc>,
) -> Bindings<'a> {
    let at = accepted.event.time.unwrap_or(now);
    let incident =
        Incident::apply(None, &accepted.payload, at).map_or(Value::Null, |i| incident_json(&i));
    Bindings::new(
        attributes_json(&accepted.event),
        &accepted.event.data,
        Cow::Borrowed(customer.as_value()),
        Cow::Owned(risk.to_json()),
        Cow::Owned(incident),
        now,
    )
}

/// The CloudEvent as rules and templates see it: `id`, `source`, `type`, `time`, `subject`,
/// `data`.
fn envelope_json(event: &CloudEvent) -> Value {
    let mut envelope = attributes_json(event);
    if let Value::Object(map) = &mut envelope {
        map.insert("data".into(), event.data.clone());
    }
    envelope
}

/// The envelope without `data`: rule bindings add `data` only if `event` is read.
fn attributes_json(event: &CloudEvent) -> Value {
    let mut envelope = Map::new();
    envelope.insert("id".into(), json!(event.key.id));
    envelope.insert("source".into(), json!(event.key.source));
    envelope.insert("type".into(), json!(event.event_type.as_str()));
    if let Some(time) = event.time {
        envelope.insert("time".into(), json!(time.to_rfc3339()));
    }
    if let Some(subject) = &event.subject {
        envelope.insert("subject".into(), json!(subject));
    }
    Value::Object(envelope)
}

/// An incident as rules see it.
fn incident_json(incident: &Incident) -> Value {
    json!({
        "id": incident.id.as_str(),
        "title": incident.title,
        "severity": incident.severity,
        "status": incident.status.as_str(),
        "affected": incident.affected,
    })
}

/// The event's own tracking link (`data.tracking_url`), if it carries one.
pub fn event_tracking_link(accepted: &Accepted) -> Option<&str> {
    accepted
        .event
        .data
        .get("tracking_url")
        .and_then(Value::as_str)
}

/// The tracking link: the event's own, else its shipment's.
fn tracking_link(accepted: &Accepted, snapshot: &Snapshot) -> Option<String> {
    event_tracking_link(accepted)
        .map(str::to_owned)
        .or_else(|| {
            Shipment::id_of(&accepted.payload)
                .and_then(|id| snapshot.shipments.get(id))
                .and_then(|s| s.tracking_url.clone())
        })
}

/// The template context of SPEC §3. Keys are present only when there is a value, so strict
/// mode turns a template's use of something the event lacks into an error.
fn render_context(input: &RenderInput<'_>) -> Value {
    let event = &input.accepted.event;

    let mut links = Map::new();
    if let Some(tracking) = input.tracking {
        links.insert("tracking".into(), json!(tracking));
    }
    // Built by hand: `json!` would re-serialise the nested values instead of cloning them.
    let mut context = Map::with_capacity(5);
    context.insert("customer".into(), input.doc.as_value().clone());
    context.insert("event".into(), envelope_json(event));
    context.insert("data".into(), event.data.clone());
    context.insert("rule".into(), json!({"id": input.rule_id}));
    context.insert("links".into(), Value::Object(links));
    if let Some(risk) = input.risk {
        context.insert("risk".into(), risk.to_json());
    }
    if let Some(offer) = input.offer {
        context.insert(
            "offer".into(),
            json!({"code": offer.code.to_string(), "percent": offer.percent,
                   "expires_at": offer.expires_at.to_rfc3339()}),
        );
    }
    Value::Object(context)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::{CustomerDoc, IncidentStatus};

    /// Templates and rules written to a temporary folder, loaded as forewarn loads them.
    fn authoring(rules: &str) -> (Templates, RuleSet) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("templates/t")).unwrap();
        std::fs::write(
            dir.path().join("templates/t/sms.hbs"),
            "{{rule.id}}: hi {{customer.name}}{{#if offer}} {{offer.percent}}% off with {{offer.code}}{{/if}}",
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("rules")).unwrap();
        std::fs::write(dir.path().join("rules/r.toml"), rules).unwrap();
        let templates = Templates::load(&dir.path().join("templates")).unwrap();
        let rules = RuleSet::load(&dir.path().join("rules"), &templates).unwrap();
        (templates, rules)
    }

    fn rule(id: &str, priority: i32, extra: &str) -> String {
        format!(
            "[[rule]]\nid = \"{id}\"\non = [\"shipment.delayed\"]\ntemplate = \"t\"\nchannels = [\"sms\"]\npriority = {priority}\n{extra}\n"
        )
    }

    fn delayed(id: &str, shipment: &str, reason: &str, days_late: i64) -> Accepted {
        let body = json!({"specversion": "1.0", "id": id, "source": "test", "type": "shipment.delayed",
            "data": {"shipment_id": shipment, "order_id": "o-1", "customer_id": "c-1", "carrier": "CJ",
                     "promised_by": "2026-11-25T09:00:00Z", "new_eta": "2026-11-27T09:00:00Z",
                     "reason": reason, "days_late": days_late}});
        let event = CloudEvent::parse(body.to_string().as_bytes(), None).unwrap();
        let payload = Payload::parse(event.event_type, &event.data).unwrap();
        Accepted { event, payload }
    }

    fn snapshot() -> Snapshot {
        snapshot_of(
            json!({"id": "c-1", "name": "Jamie", "phone": "+12125550142",
                           "segment": "vip", "consent": {"marketing": true}}),
        )
    }

    /// A snapshot that knows customer `c-1` as `doc`.
    fn snapshot_of(doc: serde_json::Value) -> Snapshot {
        let mut snapshot = Snapshot::default();
        snapshot.customers.insert(
            CustomerId::parse("c-1").unwrap(),
            CustomerDoc::from_object(doc.as_object().unwrap().clone()),
        );
        snapshot
    }

    /// Decides `events` with the embedded risk model.
    fn plan_for(
        events: &[Accepted],
        snapshot: Snapshot,
        (rules, templates): (&RuleSet, &Templates),
        policy: &Policy,
        now: DateTime<Utc>,
    ) -> Plan {
        let refs: Vec<&Accepted> = events.iter().collect();
        decide(
            &refs,
            snapshot,
            rules,
            templates,
            &RiskModel::embedded(),
            policy,
            now,
        )
    }

    fn run(rules: &str, events: &[Accepted]) -> Plan {
        let (templates, rules) = authoring(rules);
        plan_for(
            events,
            snapshot(),
            (&rules, &templates),
            &Policy::none(),
            Utc::now(),
        )
    }

    fn bodies(plan: &Plan) -> Vec<String> {
        plan.changes
            .outreach
            .iter()
            .map(|o| match &o.content {
                MessageContent::Sms { body, .. } => body.clone(),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    fn keys(plan: &Plan) -> Vec<&str> {
        plan.changes
            .outreach
            .iter()
            .map(|o| o.key.as_str())
            .collect()
    }

    #[test]
    fn a_rule_whose_condition_is_false_sends_nothing() {
        let plan = run(
            &rule("weather-only", 50, "when = \"data.reason == 'weather'\""),
            &[delayed("e1", "s1", "backlog", 1)],
        );
        assert!(plan.changes.outreach.is_empty());
        assert!(plan.rule_errors.is_empty());
    }

    #[test]
    fn the_highest_priority_rule_whose_condition_holds_wins() {
        let rules = [
            rule(
                "vip-big-delay",
                90,
                "when = \"customer.segment == 'vip' && data.days_late + 1 > 3\"",
            ),
            rule("any-delay", 10, ""),
            rule("weather", 50, "when = \"data.reason == 'weather'\""),
        ]
        .join("\n");
        let plan = run(
            &rules,
            &[
                delayed("e1", "s1", "weather", 1),
                delayed("e2", "s2", "backlog", 5),
                delayed("e3", "s3", "backlog", 1),
            ],
        );
        assert_eq!(
            bodies(&plan),
            [
                "weather: hi Jamie",
                "vip-big-delay: hi Jamie",
                "any-delay: hi Jamie"
            ]
        );
    }

    #[test]
    fn a_failing_condition_does_not_match_and_is_reported() {
        let rules = [
            rule("broken", 90, "when = \"data.no_such_field > 1\""),
            rule("fallback", 10, ""),
        ]
        .join("\n");
        let plan = run(&rules, &[delayed("e1", "s1", "backlog", 1)]);
        assert_eq!(bodies(&plan), ["fallback: hi Jamie"]);
        assert_eq!(plan.rule_errors.len(), 1);
        assert_eq!(plan.rule_errors[0].rule_id, "broken");
        assert!(
            plan.rule_errors[0].location.ends_with("r.toml:7:8"),
            "at the expression: {}",
            plan.rule_errors[0].location
        );
    }

    #[test]
    fn once_per_gives_two_events_about_one_shipment_the_same_key() {
        let plan = run(
            &rule("per-shipment", 50, "once_per = \"data.shipment_id\""),
            &[
                delayed("e1", "s1", "backlog", 1),
                delayed("e2", "s1", "weather", 2),
                delayed("e3", "s2", "backlog", 1),
            ],
        );
        let keys = keys(&plan);
        assert_eq!(keys.len(), 3);
        assert_eq!(
            keys[0], keys[1],
            "same shipment, same key: the outbox keeps one"
        );
        assert_ne!(keys[0], keys[2]);
        assert_eq!(plan.changes.outreach[0].entity, "once:s1");
    }

    #[test]
    fn without_once_per_each_event_is_its_own_outreach() {
        let plan = run(
            &rule("per-event", 50, ""),
            &[
                delayed("e1", "s1", "backlog", 1),
                delayed("e2", "s1", "backlog", 1),
            ],
        );
        let keys = keys(&plan);
        assert_ne!(keys[0], keys[1]);
    }

    #[test]
    fn an_offer_issues_a_code_for_the_computed_percent_valid_for_its_days() {
        let now = Utc::now();
        let (templates, rules) = authoring(&rule(
            "sorry",
            50,
            "[rule.offer]\ndiscount_percent = \"data.days_late >= 3 ? 20 : 10\"\nvalid_days = 14",
        ));
        let events = [
            delayed("e1", "s1", "backlog", 1),
            delayed("e2", "s2", "backlog", 4),
        ];
        let plan = plan_for(
            &events,
            snapshot(),
            (&rules, &templates),
            &Policy::none(),
            now,
        );
        let offers: Vec<&Offer> = plan
            .changes
            .outreach
            .iter()
            .map(|o| o.offer.as_ref().unwrap())
            .collect();
        assert_eq!(offers[0].percent, 10);
        assert_eq!(offers[1].percent, 20);
        assert_ne!(offers[0].code, offers[1].code);
        assert_eq!(offers[0].expires_at, now + chrono::Duration::days(14));
        assert_eq!(
            bodies(&plan)[1],
            format!("sorry: hi Jamie 20% off with {}", offers[1].code)
        );
    }

    #[test]
    fn zero_percent_means_no_offer_and_a_bad_percent_means_no_match() {
        let plan = run(
            &rule(
                "maybe",
                50,
                "[rule.offer]\ndiscount_percent = \"data.reason == 'weather' ? 15 : 0\"",
            ),
            &[delayed("e1", "s1", "backlog", 1)],
        );
        assert_eq!(bodies(&plan), ["maybe: hi Jamie"]);
        assert!(plan.changes.outreach[0].offer.is_none());

        let rules = [
            rule(
                "greedy",
                50,
                "[rule.offer]\ndiscount_percent = \"data.days_late * 100\"",
            ),
            rule("plain", 10, ""),
        ]
        .join("\n");
        let plan = run(&rules, &[delayed("e1", "s1", "backlog", 2)]);
        // Like a failing `when`: the rule does not match and the next one is tried.
        assert_eq!(bodies(&plan), ["plain: hi Jamie"]);
        assert!(
            plan.rule_errors[0]
                .message
                .contains("whole number from 0 to 100"),
            "{:?}",
            plan.rule_errors
        );
    }

    #[test]
    fn an_offer_is_marketing_so_without_consent_the_message_goes_without_it() {
        let (templates, rules) =
            authoring(&rule("sorry", 50, "[rule.offer]\ndiscount_percent = 15"));
        let events = [delayed("e1", "s1", "backlog", 1)];
        let no_consent = snapshot_of(json!({"id": "c-1", "name": "Jamie",
            "phone": "+12125550142", "consent": {"marketing": false}}));
        let authored = (&rules, &templates);
        let plan = plan_for(&events, no_consent, authored, &Policy::none(), Utc::now());
        // The apology still goes, on the transactional terms of its rule, without a code.
        assert_eq!(bodies(&plan), ["sorry: hi Jamie"]);
        assert!(plan.changes.outreach[0].offer.is_none());
        assert_eq!(plan.withheld_offers.len(), 1);
        assert_eq!(plan.withheld_offers[0].reason, "no_marketing_consent");

        // With consent, the same decision carries the code.
        let plan = plan_for(&events, snapshot(), authored, &Policy::none(), Utc::now());
        assert!(plan.changes.outreach[0].offer.is_some());
        assert!(plan.withheld_offers.is_empty());
    }

    #[test]
    fn only_advertising_to_a_korean_phone_carries_the_korean_ad_label() {
        let (templates, rules) = authoring(
            &[
                rule(
                    "sorry",
                    50,
                    "when = \"data.reason == 'weather'\"\n[rule.offer]\ndiscount_percent = 10",
                ),
                rule("plain", 10, ""),
            ]
            .join("\n"),
        );
        let templates = templates.with_korean_ad_label(crate::render::KoreanAdLabel {
            sender: "슈즈샵".into(),
            opt_out: "무료거부 080-123-4567".into(),
        });
        let decide_for = |phone: &str, reason: &str| {
            let snapshot = snapshot_of(json!({"id": "c-1", "name": "Jamie", "phone": phone,
                                              "consent": {"marketing": true}}));
            let events = [delayed("e1", "s1", reason, 1)];
            let plan = plan_for(
                &events,
                snapshot,
                (&rules, &templates),
                &Policy::none(),
                Utc::now(),
            );
            bodies(&plan).remove(0)
        };
        let code_free = |body: String| body.split(" 10%").next().unwrap().to_owned();
        // An offer to a Korean phone: labelled, with the sender and the free opt-out line.
        let ad = decide_for("+821012345678", "weather");
        assert!(ad.starts_with("(광고)슈즈샵 sorry: hi Jamie"), "{ad}");
        assert!(ad.ends_with("\n무료거부 080-123-4567"), "{ad}");
        // No offer, or not a Korean phone: as written.
        assert_eq!(decide_for("+821012345678", "backlog"), "plain: hi Jamie");
        assert_eq!(
            code_free(decide_for("+12125550142", "weather")),
            "sorry: hi Jamie"
        );
    }

    /// A marketing rule for `reason == 'promo'` (priority 90), and a transactional apology
    /// with 10 % off for everything else.
    fn promotion_and_apology() -> (Templates, RuleSet) {
        authoring(
            &[
                rule(
                    "promo",
                    90,
                    "category = \"marketing\"\nwhen = \"data.reason == 'promo'\"",
                ),
                rule("sorry", 50, "[rule.offer]\ndiscount_percent = 10"),
            ]
            .join("\n"),
        )
    }

    #[test]
    fn an_open_incident_holds_marketing_back_from_the_customers_it_affects() {
        let now = Utc::now();
        let (templates, rules) = promotion_and_apology();
        let incident = |status| crate::domain::Incident {
            id: EntityId::parse("inc-1").unwrap(),
            title: Some("Checkout down".into()),
            severity: Some("major".into()),
            status,
            affected: json!({"regions": ["kr"]}),
            started_at: Some(now),
            resolved_at: None,
            updated_at: now,
            peak_severity: None,
        };
        let run_with = |region: &str, status, reason: &str| {
            let mut snapshot = snapshot_of(json!({"id": "c-1", "name": "Jamie",
                "phone": "+12125550142", "region": region, "consent": {"marketing": true}}));
            snapshot
                .incidents
                .insert(EntityId::parse("inc-1").unwrap(), incident(status));
            let events = [delayed("e1", "s1", reason, 1)];
            plan_for(
                &events,
                snapshot,
                (&rules, &templates),
                &Policy::none(),
                now,
            )
        };
        // In Seoul, under the open incident: no promotion, and the apology without its code.
        let plan = run_with("kr-seoul", IncidentStatus::Open, "promo");
        assert!(plan.changes.outreach.is_empty());
        assert_eq!(plan.skipped[0].reason, "open_incident");
        assert!(
            plan.skipped[0].detail.contains("incident inc-1"),
            "{}",
            plan.skipped[0].detail
        );
        let plan = run_with("kr-seoul", IncidentStatus::Open, "backlog");
        assert_eq!(bodies(&plan), ["sorry: hi Jamie"]);
        assert!(plan.changes.outreach[0].offer.is_none());
        assert_eq!(plan.withheld_offers[0].reason, "open_incident");
        // Elsewhere, or once it is resolved: as usual.
        let plan = run_with("us-ny", IncidentStatus::Open, "backlog");
        assert!(plan.changes.outreach[0].offer.is_some());
        let plan = run_with("kr-seoul", IncidentStatus::Resolved, "promo");
        assert_eq!(bodies(&plan), ["promo: hi Jamie"]);
    }

    #[test]
    fn marketing_beyond_the_cap_is_skipped_and_an_offer_beyond_it_is_withheld() {
        let now = Utc::now();
        let policy = Policy {
            caps: crate::policy::CapSettings::default(),
            ..Policy::none()
        };
        let (templates, rules) = promotion_and_apology();
        let run_with = |hours_ago: &[i64], reason: &str| {
            let mut snapshot = snapshot();
            snapshot.history.marketing.insert(
                CustomerId::parse("c-1").unwrap(),
                hours_ago
                    .iter()
                    .map(|h| now - chrono::Duration::hours(*h))
                    .collect(),
            );
            let events = [delayed("e1", "s1", reason, 1)];
            plan_for(&events, snapshot, (&rules, &templates), &policy, now)
        };
        // Two in the last 24 hours: the marketing rule is skipped, and the next rule does
        // not take over — the cap is on the customer, not the rule.
        let plan = run_with(&[1, 23], "promo");
        assert!(plan.changes.outreach.is_empty());
        assert_eq!(plan.skipped[0].reason, "frequency_cap");
        // One of them 25 hours ago: the window has rolled past it.
        let plan = run_with(&[1, 25], "promo");
        assert_eq!(bodies(&plan), ["promo: hi Jamie"]);
        // The transactional apology still goes, without its discount.
        let plan = run_with(&[1, 23], "backlog");
        assert_eq!(bodies(&plan), ["sorry: hi Jamie"]);
        assert!(plan.changes.outreach[0].offer.is_none());
        assert_eq!(plan.withheld_offers[0].reason, "frequency_cap");
        // Within one batch, the third offer is the one withheld.
        let events: Vec<Accepted> = (0..3)
            .map(|i| delayed(&format!("e{i}"), &format!("s{i}"), "backlog", 1))
            .collect();
        let plan = plan_for(&events, snapshot(), (&rules, &templates), &policy, now);
        let offers: Vec<bool> = plan
            .changes
            .outreach
            .iter()
            .map(|o| o.offer.is_some())
            .collect();
        assert_eq!(offers, [true, true, false]);
    }
}
