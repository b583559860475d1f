//! Channel choice and rendering: each decided job goes out on the first of its rule's channels
//! the customer can be reached on (address, consent, opt-outs, template parts), rendered in
//! their locale, held to the end of quiet hours where they apply. An offer is marketing: with
//! no marketing consent anywhere the message goes without it.

use chrono::{DateTime, Utc};

use super::{Accepted, Deciding, Plan, Skipped};
use crate::domain::{
    order_of, shipment_of, Channel, Customer, CustomerDoc, CustomerId, IdempotencyKey, Incident,
    Offer, OptOuts, Outreach,
};
use crate::policy::QuietHours;
use crate::render::{render_on, RenderInput, Templates};
use crate::risk::RiskAssessment;
use crate::rules::Rule;

/// One outreach to render: the rule that won and the state as it stood at its event.
pub(super) struct Job<'a> {
    pub(super) rule: &'a Rule,
    pub(super) accepted: &'a Accepted,
    /// The `once_per` value, or the event's own identity.
    pub(super) entity: String,
    /// The discount issued with it, if any.
    pub(super) offer: Option<Offer>,
    pub(super) customer_id: CustomerId,
    pub(super) doc: CustomerDoc,
    pub(super) opt_outs: OptOuts,
    pub(super) tracking: Option<String>,
    /// The decision's scores and why.
    pub(super) risk: RiskAssessment,
    /// See [`Outreach::urgency`].
    pub(super) urgency: f64,
}

/// Renders every job on all cores and adds the outreach, or why it failed, to `plan`.
pub(super) fn render_into(plan: &mut Plan, jobs: &[Job<'_>], deciding: &Deciding<'_>) {
    let (templates, quiet, now) = (deciding.templates, &deciding.policy.quiet, deciding.now);
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
        order_id: order_of(&accepted.payload).map(|o| o.as_str().to_owned()),
        incident_id: Incident::id_of(&accepted.payload).map(|i| i.as_str().to_owned()),
        shipment_id: shipment_of(&accepted.payload).map(|s| s.as_str().to_owned()),
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
    } else if channel == Channel::Email && customer.email_bounced {
        Some("address bounced")
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
