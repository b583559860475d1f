//! The per-customer decision: which rule decides for one customer on one event, scored by the
//! risk models, with the holds of ④ (open incidents, frequency caps). Intake, the incident
//! fan-out and dry runs all decide through [`decide_for`].

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::channels::Job;
use super::offers::{issue_offer, offer_percent};
use super::state::{decision_time, tracking_link};
use super::{Accepted, Deciding, Plan, RuleFailure, Skipped};
use crate::domain::{order_of, shipment_of, Category, CloudEvent, CustomerId, Incident, Offer};
use crate::render::{attributes_json, incident_json};
use crate::risk::features::stated_promise;
use crate::risk::{assess, value_weighted_urgency, Subject};
use crate::rules::{key_text, Bindings, Expression, Rule};
use crate::store::Snapshot;

/// The rule that decides for one customer on one event, with the holds of ④, as a job to
/// render; `None` (with the reason in `plan`) when nothing is to be sent.
pub(super) fn decide_for<'a>(
    accepted: &'a Accepted,
    customer_id: CustomerId,
    snapshot: &mut Snapshot,
    deciding: &Deciding<'a>,
    plan: &mut Plan,
) -> Option<Job<'a>> {
    let Deciding {
        rules,
        risk,
        policy,
        now,
        ..
    } = *deciding;
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

/// What `accepted` is about for the risk models, as `snapshot` stands.
pub(super) fn subject_of<'a>(
    accepted: &'a Accepted,
    customer: &'a CustomerId,
    snapshot: &'a Snapshot,
    now: DateTime<Utc>,
) -> Subject<'a> {
    let payload = &accepted.payload;
    Subject {
        at: decision_time(&accepted.event, now),
        customer,
        shipment: shipment_of(payload).and_then(|id| snapshot.shipments.get(id)),
        order: order_of(payload),
        promised_by: stated_promise(payload),
    }
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
                    format!(
                        "`when` gave {}, not true or false",
                        crate::rules::shown(&other)
                    ),
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
                    format!(
                        "`once_per` gave {}; it must be a string, number or boolean",
                        crate::rules::shown(&value)
                    ),
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
