//! What a simulation found: per rule and channel, the messages, customers, SMS segments, cost,
//! discount codes and their face value, and those quiet hours would hold; what was suppressed
//! and why; what failed to render or evaluate, with the event; and how it differs from what the
//! live rules decided for the same events.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use super::costs::CostSettings;
use crate::domain::{MessageContent, Money, Outreach};
use crate::pipeline::Plan;
use crate::store::DecidedOutreach;

/// How many sample messages each kind of difference keeps.
pub const SAMPLES: usize = 3;

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
    /// Events that start an incident's fan-out (its customers are not replayed).
    pub fanouts_not_replayed: u64,
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
    /// Every counted message decided, for the comparison.
    #[serde(skip)]
    pub(super) decided: Vec<Decided>,
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

/// A message the simulation decided.
#[derive(Debug, Clone, Serialize)]
pub struct Decided {
    /// The event: `source#id`.
    pub event: String,
    /// The rule.
    pub rule_id: String,
    /// The customer.
    pub customer_id: String,
    /// The channel.
    pub channel: String,
    /// Its discount in percent.
    pub offer_percent: Option<u8>,
    /// What it says, as the customer would read it.
    pub text: String,
}

/// How the draft differs from what the live rules decided for the same events.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Comparison {
    /// Messages the live rules decided for these events.
    pub live_messages: u64,
    /// Decided by the draft only.
    pub new: Difference,
    /// Decided by the live rules only.
    pub dropped: Difference,
    /// Decided by both, on another channel.
    pub changed_channel: Difference,
    /// Decided by both, with another discount.
    pub changed_offer: Difference,
    /// The live messages' discounts' face value, per currency, in minor units.
    pub live_face_value: BTreeMap<String, i64>,
    /// The draft's.
    pub draft_face_value: BTreeMap<String, i64>,
}

/// One kind of difference: how many, and a few samples.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Difference {
    /// How many.
    pub count: u64,
    /// The first few: the draft's message (or, for a dropped one, what the live rules sent).
    pub samples: Vec<Sample>,
}

/// A sample of a difference.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// The draft's message, or the live one for a dropped message.
    pub message: Decided,
    /// What the live rules did instead (`sms`, `10 %`), when they did something.
    pub live: Option<String>,
}

impl Difference {
    fn add(&mut self, message: &Decided, live: Option<String>) {
        self.count += 1;
        if self.samples.len() < SAMPLES {
            self.samples.push(Sample {
                message: message.clone(),
                live,
            });
        }
    }
}

impl Report {
    /// Counts one batch's decisions: the outreach it wrote, what it held back, what failed.
    pub(super) fn count(
        &mut self,
        plan: &Plan,
        written: &std::collections::HashSet<crate::domain::IdempotencyKey>,
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
        let channel = outreach.content.channel().as_str().to_owned();
        let tally = self
            .rules
            .entry(outreach.rule_id.clone())
            .or_default()
            .entry(channel.clone())
            .or_default();
        tally.messages += 1;
        tally
            .customer_ids
            .insert(outreach.customer_id.as_str().to_owned());
        let (text, cost) = match &outreach.content {
            MessageContent::Sms { to, body } => {
                let segments = crate::render::measure_sms(body).segments;
                tally.segments += segments as u64;
                (body.clone(), costs.sms(to, segments))
            }
            MessageContent::Email { subject, text, .. } => (
                format!("{subject}\n\n{}", text.as_deref().unwrap_or("")),
                costs.email,
            ),
            MessageContent::Push { title, body, .. } => (format!("{title}\n{body}"), costs.push),
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
        self.decided.push(Decided {
            event: outreach.event.to_string(),
            rule_id: outreach.rule_id.clone(),
            customer_id: outreach.customer_id.as_str().to_owned(),
            channel,
            offer_percent: outreach.offer.as_ref().map(|o| o.percent),
            text,
        });
    }

    /// Compares the counted messages with what the live rules decided for the same events
    /// (`live`, already limited to them).
    pub(super) fn compare(&mut self, live: &[DecidedOutreach], orders: &HashMap<String, Money>) {
        let key = |event: &str, rule: &str, customer: &str| {
            (event.to_owned(), rule.to_owned(), customer.to_owned())
        };
        let live_by_key: HashMap<_, &DecidedOutreach> = live
            .iter()
            .map(|l| {
                let event = format!("{}#{}", l.event.0, l.event.1);
                (key(&event, &l.rule_id, &l.customer_id), l)
            })
            .collect();
        let mut comparison = Comparison {
            live_messages: live.len() as u64,
            ..Comparison::default()
        };
        for l in live {
            if let (Some(percent), Some(total)) = (
                l.offer_percent,
                l.order_id.as_ref().and_then(|o| orders.get(o)),
            ) {
                *comparison
                    .live_face_value
                    .entry(total.currency.clone())
                    .or_default() += face_value(total, percent);
            }
        }
        for tally in self.rules.values().flat_map(BTreeMap::values) {
            for (currency, value) in &tally.face_value {
                *comparison
                    .draft_face_value
                    .entry(currency.clone())
                    .or_default() += value;
            }
        }
        let mut matched = std::collections::HashSet::new();
        for message in &self.decided {
            let k = key(&message.event, &message.rule_id, &message.customer_id);
            match live_by_key.get(&k) {
                None => comparison.new.add(message, None),
                Some(l) => {
                    matched.insert(k);
                    if l.channel != message.channel {
                        comparison
                            .changed_channel
                            .add(message, Some(l.channel.clone()));
                    }
                    if l.offer_percent != message.offer_percent {
                        let was = l
                            .offer_percent
                            .map_or("no offer".into(), |p| format!("{p} %"));
                        comparison.changed_offer.add(message, Some(was));
                    }
                }
            }
        }
        for l in live {
            let event = format!("{}#{}", l.event.0, l.event.1);
            if !matched.contains(&key(&event, &l.rule_id, &l.customer_id)) {
                let shown = Decided {
                    event,
                    rule_id: l.rule_id.clone(),
                    customer_id: l.customer_id.clone(),
                    channel: l.channel.clone(),
                    offer_percent: l.offer_percent,
                    text: String::new(),
                };
                comparison.dropped.add(&shown, None);
            }
        }
        self.comparison = Some(comparison);
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
