//! What a simulation found: per rule and channel, the messages, customers, SMS segments, cost,
//! discount codes and their face value, and those quiet hours would hold; what was suppressed
//! and why; what failed to render or evaluate, with the event; and how it differs from what the
//! live rules decided for the same events.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::Serialize;

use super::comparison::{Comparison, Decided, Matching};
use super::costs::CostSettings;
use crate::domain::{MessageContent, Money, Outreach};
use crate::pipeline::Plan;
use crate::store::DecidedOutreach;

/// What a simulation found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Events replayed and counted.
    pub events: u64,
    /// Earlier events replayed for the state they leave, not counted.
    pub warm_up: u64,
    /// Events in the window whose data the retention purge removed: not replayed.
    pub purged: u64,
    /// Lines or stored events that are not events forewarn takes, with why.
    pub unreadable: Vec<String>,
    /// Incidents' fan-outs to their customers (a start, an escalation, a resolution), each
    /// replayed to its end.
    pub fanouts: u64,
    /// Per rule, then channel.
    pub rules: BTreeMap<String, BTreeMap<String, Tally>>,
    /// Per rule, then reason (`frequency_cap`, `no_marketing_consent`, …): decisions that sent
    /// nothing, or sent without the offer (`offer_withheld: …`).
    pub suppressed: BTreeMap<String, BTreeMap<String, u64>>,
    /// Render failures and expression errors, each with the event that caused it.
    pub failures: Vec<Failure>,
    /// The currency of the cost estimates, when `[costs]` prices anything.
    pub cost_currency: Option<String>,
    /// Against what the live rules decided for the same events; `None` for events from a file.
    pub comparison: Option<Comparison>,
    /// The live decisions each counted message is matched with as it is decided.
    #[serde(skip)]
    matching: Option<Matching>,
}

/// One rule on one channel.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Tally {
    /// Messages.
    pub messages: u64,
    /// The customers they go to; serialized as how many.
    #[serde(rename = "customers", serialize_with = "count")]
    customer_ids: BTreeSet<String>,
    /// SMS segments.
    pub segments: u64,
    /// Estimated cost, when priced.
    pub cost: Option<f64>,
    /// Discount codes issued.
    pub codes: u64,
    /// Their face value (percent × the order's value), per currency, in minor units.
    pub face_value: BTreeMap<String, i64>,
    /// Messages quiet hours would hold.
    pub held: u64,
}

impl Tally {
    /// Distinct customers.
    pub fn customers(&self) -> usize {
        self.customer_ids.len()
    }
}

fn count<S: serde::Serializer>(set: &BTreeSet<String>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(set.len() as u64)
}

/// A render failure or an expression error.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// The rule.
    pub rule_id: String,
    /// The event: `source#id`.
    pub event: String,
    /// `file:line:col: message`.
    pub error: String,
}

impl Report {
    /// An empty report whose costs are estimated in `cost_currency`, if any.
    pub(super) fn new(cost_currency: Option<String>) -> Self {
        Report {
            cost_currency,
            ..Report::default()
        }
    }

    /// Counts one batch's decisions: the outreach it wrote, what it held back, what failed.
    pub(super) fn count(
        &mut self,
        plan: &Plan,
        written: &HashSet<crate::domain::IdempotencyKey>,
        orders: &HashMap<String, Money>,
        costs: &CostSettings,
    ) {
        for outreach in plan
            .changes
            .outreach
            .iter()
            .filter(|o| written.contains(&o.key))
        {
            self.count_message(outreach, orders, costs);
        }
        for skipped in &plan.skipped {
            let event = skipped.event.to_string();
            match skipped.reason {
                "no_rule_matched" => {}
                "render_failed" => self.failures.push(Failure {
                    rule_id: skipped.rule_id.clone(),
                    event,
                    error: skipped.detail.clone(),
                }),
                reason => self.suppress(&skipped.rule_id, reason.to_owned()),
            }
        }
        for withheld in &plan.withheld_offers {
            self.suppress(
                &withheld.rule_id,
                format!("offer_withheld: {}", withheld.reason),
            );
        }
        for failure in &plan.rule_errors {
            self.failures.push(Failure {
                rule_id: failure.rule_id.clone(),
                event: failure.event.to_string(),
                error: format!("{}: {}", failure.location, failure.message),
            });
        }
    }

    fn suppress(&mut self, rule: &str, reason: String) {
        *self
            .suppressed
            .entry(rule.to_owned())
            .or_default()
            .entry(reason)
            .or_default() += 1;
    }

    fn count_message(
        &mut self,
        outreach: &Outreach,
        orders: &HashMap<String, Money>,
        costs: &CostSettings,
    ) {
        let channel = outreach.content.channel().as_str();
        let tally = self
            .rules
            .entry(outreach.rule_id.clone())
            .or_default()
            .entry(channel.to_owned())
            .or_default();
        tally.messages += 1;
        tally
            .customer_ids
            .insert(outreach.customer_id.as_str().to_owned());
        let cost = match &outreach.content {
            MessageContent::Sms { to, body } => {
                let segments = crate::render::measure_sms(body).segments;
                tally.segments += segments as u64;
                costs.sms(to, segments)
            }
            MessageContent::Email { .. } => costs.email,
            MessageContent::Push { .. } => costs.push,
        };
        if let Some(cost) = cost {
            *tally.cost.get_or_insert(0.0) += cost;
        }
        if outreach.not_before.is_some() {
            tally.held += 1;
        }
        if let Some(offer) = &outreach.offer {
            tally.codes += 1;
            if let Some(total) = outreach.order_id.as_ref().and_then(|o| orders.get(o)) {
                *tally.face_value.entry(total.currency.clone()).or_default() +=
                    face_value(total, offer.percent);
            }
        }
        if let Some(matching) = &mut self.matching {
            matching.decided(outreach, || Decided::of(outreach));
        }
    }

    /// Compares each counted message, as it is decided, with what the live rules decided for
    /// the same events (`live`).
    pub(super) fn compare_with(&mut self, live: Vec<DecidedOutreach>) {
        self.matching = Some(Matching::new(live));
    }

    /// Ends the comparison: what the live rules decided that the draft did not, and the
    /// discounts' face values. The live messages of events that were not replayed (`skipped`:
    /// unreadable) are left out.
    pub(super) fn finish_comparison(
        &mut self,
        skipped: &HashSet<(String, String)>,
        orders: &HashMap<String, Money>,
    ) {
        let Some(matching) = self.matching.take() else {
            return;
        };
        let mut draft_face_value: BTreeMap<String, i64> = BTreeMap::new();
        for tally in self.rules.values().flat_map(BTreeMap::values) {
            for (currency, value) in &tally.face_value {
                *draft_face_value.entry(currency.clone()).or_default() += value;
            }
        }
        self.comparison = Some(matching.finish(skipped, orders, draft_face_value));
    }

    /// Whether anything failed to render or evaluate: `simulate` exits 1.
    pub fn failed(&self) -> bool {
        !self.failures.is_empty()
    }
}

/// `₩12,000 + $3.50`, from minor units per currency.
pub fn money_shown(values: &BTreeMap<String, i64>) -> String {
    values
        .iter()
        .map(|(currency, minor)| {
            let locale = crate::render::FormatLocale::for_tag(Some("en-US"));
            crate::render::format_money(*minor, currency, locale)
                .unwrap_or_else(|_| format!("{minor} {currency} (minor units)"))
        })
        .collect::<Vec<_>>()
        .join(" + ")
}

/// A discount's face value: `percent` of the order's total, in its minor units, rounded down.
pub fn face_value(total: &Money, percent: u8) -> i64 {
    let value = i128::from(total.minor) * i128::from(percent) / 100;
    i64::try_from(value).unwrap_or(i64::MAX)
}
