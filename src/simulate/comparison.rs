//! How a draft differs from what the live rules decided for the same events: each message the
//! replay decides is matched, as it is decided, with the live message for the same event, rule
//! and customer — new, or on another channel, or with another discount — and what is left
//! unmatched at the end was dropped. Only the few samples shown keep their words, so a replay of
//! a million events does not hold a million rendered messages.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use super::report::face_value;
use crate::domain::{MessageContent, Money, Outreach};
use crate::store::DecidedOutreach;

/// How many sample messages each kind of difference keeps.
pub const SAMPLES: usize = 3;

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

impl Decided {
    /// `outreach` with its words.
    pub(super) fn of(outreach: &Outreach) -> Self {
        let text = match &outreach.content {
            MessageContent::Sms { body, .. } => body.clone(),
            MessageContent::Email { subject, text, .. } => {
                format!("{subject}\n\n{}", text.as_deref().unwrap_or(""))
            }
            MessageContent::Push { title, body, .. } => format!("{title}\n{body}"),
        };
        Decided {
            event: outreach.event.to_string(),
            rule_id: outreach.rule_id.clone(),
            customer_id: outreach.customer_id.as_str().to_owned(),
            channel: outreach.content.channel().as_str().to_owned(),
            offer_percent: outreach.offer.as_ref().map(|o| o.percent),
            text,
        }
    }
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
    /// One more; its message is made (rendered words and all) only if it is kept as a sample.
    fn add(&mut self, message: impl FnOnce() -> Decided, live: Option<String>) {
        self.count += 1;
        if self.samples.len() < SAMPLES {
            self.samples.push(Sample {
                message: message(),
                live,
            });
        }
    }
}

/// The live decisions, by event, rule and customer, and which of them the replay has matched.
#[derive(Debug, Clone, Default)]
pub(super) struct Matching {
    live: Vec<DecidedOutreach>,
    by_key: HashMap<(String, String, String), usize>,
    matched: Vec<bool>,
    found: Comparison,
}

impl Matching {
    pub(super) fn new(live: Vec<DecidedOutreach>) -> Self {
        let by_key = live
            .iter()
            .enumerate()
            .map(|(at, l)| {
                let event = format!("{}#{}", l.event.0, l.event.1);
                ((event, l.rule_id.clone(), l.customer_id.clone()), at)
            })
            .collect();
        Matching {
            matched: vec![false; live.len()],
            live,
            by_key,
            found: Comparison::default(),
        }
    }

    /// A message the draft decided: new, or the live one's match, changed or not. `shown` makes
    /// it with its words, for a sample.
    pub(super) fn decided(&mut self, outreach: &Outreach, shown: impl Fn() -> Decided) {
        let key = (
            outreach.event.to_string(),
            outreach.rule_id.clone(),
            outreach.customer_id.as_str().to_owned(),
        );
        let Some(&at) = self.by_key.get(&key) else {
            self.found.new.add(&shown, None);
            return;
        };
        self.matched[at] = true;
        let live = &self.live[at];
        if live.channel != outreach.content.channel().as_str() {
            self.found
                .changed_channel
                .add(&shown, Some(live.channel.clone()));
        }
        let percent = outreach.offer.as_ref().map(|o| o.percent);
        if live.offer_percent != percent {
            let was = live
                .offer_percent
                .map_or("no offer".into(), |p| format!("{p} %"));
            self.found.changed_offer.add(&shown, Some(was));
        }
    }

    /// The comparison: the live messages but those of `skipped` events, what of them was not
    /// matched (dropped), and the face values — the live discounts' on the orders' totals as
    /// the replay left them (`orders`), and the draft's (`draft_face_value`).
    pub(super) fn finish(
        self,
        skipped: &HashSet<(String, String)>,
        orders: &HashMap<String, Money>,
        draft_face_value: BTreeMap<String, i64>,
    ) -> Comparison {
        let mut found = self.found;
        found.draft_face_value = draft_face_value;
        for (l, matched) in self.live.into_iter().zip(self.matched) {
            if skipped.contains(&l.event) {
                continue;
            }
            found.live_messages += 1;
            if let (Some(percent), Some(total)) = (
                l.offer_percent,
                l.order_id.as_ref().and_then(|o| orders.get(o)),
            ) {
                *found
                    .live_face_value
                    .entry(total.currency.clone())
                    .or_default() += face_value(total, percent);
            }
            if !matched {
                let (source, id) = l.event;
                found.dropped.add(
                    || Decided {
                        event: format!("{source}#{id}"),
                        rule_id: l.rule_id,
                        customer_id: l.customer_id,
                        channel: l.channel,
                        offer_percent: l.offer_percent,
                        text: String::new(),
                    },
                    None,
                );
            }
        }
        found
    }
}
