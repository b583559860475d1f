//! ②→⑤ by stage, over domain types, with no I/O: events in, state changes and rendered outreach
//! out.
//!
//! Intake loads a [`Snapshot`] of the state a batch touches, calls [`decide`], and writes the
//! returned [`Plan`] in the same transaction; the incident fan-out does the same per page with
//! [`decide_fanout`]. That keeps every decision testable without a database or a broker, and
//! makes a batch's effect a pure function of its input.
//!
//! - `state`: applying each event to the batch's state, in order; what a batch must load.
//! - `decision`: the one per-customer decision loop — rule, risk, holds — every path uses.
//! - `channels`: channel choice and rendering of what was decided; `offers`: the discount.

mod channels;
mod decision;
mod offers;
mod state;
mod stock;
#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};

use crate::authoring::Authoring;
use crate::domain::{
    Accepted, CloudEvent, CustomerId, EventKey, IdempotencyKey, Incident, Payload, Rejection,
};
use crate::policy::Policy;
use crate::render::Templates;
use crate::risk::{assess, value_weighted_urgency, RiskAssessment, RiskModel};
use crate::rules::{Expression, Rule, RuleSet};
use crate::store::{Changes, DecisionNote, Snapshot};

pub use channels::channel_refusal;
pub use offers::{issue_offer, offer_percent};
pub(crate) use state::decision_time;
pub use state::{fanout_refs, refs_of};

/// What every decision is made with: the rules, templates and risk model in force, the
/// policy, and the time of deciding.
#[derive(Debug, Clone, Copy)]
pub struct Deciding<'a> {
    /// The rules that decide.
    pub rules: &'a RuleSet,
    /// The templates messages are rendered from.
    pub templates: &'a Templates,
    /// The risk models that score each decision.
    pub risk: &'a RiskModel,
    /// Quiet hours, caps and incident policy.
    pub policy: &'a Policy,
    /// Now, as the decision sees it.
    pub now: DateTime<Utc>,
}

impl<'a> Deciding<'a> {
    /// Deciding with an authored set (rules, templates, risk model) under `policy` at `now`.
    pub fn new(authoring: &'a Authoring, policy: &'a Policy, now: DateTime<Utc>) -> Self {
        Deciding {
            rules: &authoring.rules,
            templates: &authoring.templates,
            risk: &authoring.risk,
            policy,
            now,
        }
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
                            crate::domain::time_shown_in(release, o.timezone.as_deref())
                        ),
                    })
                }),
        );
        notes
    }
}

/// Applies `events` in order to `snapshot` and decides each one's outreach.
pub fn decide(events: &[&Accepted], mut snapshot: Snapshot, deciding: &Deciding<'_>) -> Plan {
    let mut plan = Plan::default();
    let mut jobs = Vec::new();
    let mut touched = state::Touched::default();
    for accepted in events {
        let event = &accepted.event;
        let payload = &accepted.payload;
        // 1, 2. The customer and the domain state.
        if !state::apply_event(accepted, &mut snapshot, &mut touched, deciding, &mut plan) {
            continue;
        }

        // 3. Rules: the highest-priority rule whose `when` holds decides. Rendering is deferred
        //    to the parallel pass below, with the state as it stands at this event.
        let Some(first) = deciding.rules.candidates(event.event_type).next() else {
            continue;
        };
        // An outage names no customer: those it affects are found page by page.
        if Incident::id_of(payload).is_some() {
            continue;
        }
        // Nor does an item back in stock: those waiting for it hear, each once.
        let recipients = if let Payload::InventoryRestocked { sku } = payload {
            let waiting = stock::waiting(sku, &snapshot);
            stock::end(sku, &mut snapshot, &mut plan.changes);
            waiting
        } else if let Some(customer_id) = state::recipient_of(payload, &snapshot) {
            vec![customer_id]
        } else {
            plan.skipped.push(Skipped {
                rule_id: first.id.clone(),
                customer_id: None,
                event: event.key.clone(),
                reason: "no_customer",
                detail: "the event names no customer forewarn knows".into(),
            });
            continue;
        };
        for customer_id in recipients {
            jobs.extend(decision::decide_for(
                accepted,
                customer_id,
                &mut snapshot,
                deciding,
                &mut plan,
            ));
        }
    }
    channels::render_into(&mut plan, &jobs, deciding);
    touched.write(&snapshot, &mut plan.changes);
    plan
}

/// Decides one outage event for `recipients` — a page of the customers it concerns, found by
/// `incident::fanout` — as [`decide`] decides an event for its own customer, without applying
/// the event again (intake did, once). `snapshot` holds their records and the incident.
pub fn decide_fanout(
    accepted: &Accepted,
    recipients: &[CustomerId],
    mut snapshot: Snapshot,
    deciding: &Deciding<'_>,
) -> Plan {
    let mut plan = Plan::default();
    let mut jobs = Vec::with_capacity(recipients.len());
    for customer_id in recipients {
        jobs.extend(decision::decide_for(
            accepted,
            customer_id.clone(),
            &mut snapshot,
            deciding,
            &mut plan,
        ));
    }
    channels::render_into(&mut plan, &jobs, deciding);
    plan
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
                &decision::subject_of(accepted, customer, snapshot, now),
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

/// The scores of one event for its recipient, with the batch's loaded state and history: what
/// [`decide`] computes for every decision (used alone by the risk benchmark and dry runs).
pub fn assess_event(
    accepted: &Accepted,
    snapshot: &Snapshot,
    risk: &RiskModel,
    now: DateTime<Utc>,
) -> Option<RiskAssessment> {
    let customer = state::recipient_of(&accepted.payload, snapshot)?;
    Some(assess(
        &decision::subject_of(accepted, &customer, snapshot, now),
        &snapshot.history,
        risk,
    ))
}
