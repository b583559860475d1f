//! The example events CX authors keep in `examples/` (`paths.examples`), as `check` and
//! `preview` read them: every valid event with where it is written, and the customers the
//! examples define, so a template is tried with the customer an event really names.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::domain::{CustomerDoc, CustomerRef, Locale};
use chrono::{DateTime, Utc};

use crate::domain::order_of;
use crate::domain::{
    Accepted, CustomerId, History, Incident, Order, PastOrder, RiskScores, Shipment,
};
use crate::pipeline::decision_time;
use crate::render::{attributes_json, incident_json};
use crate::risk::features::{experience_of, stated_promise};
use crate::risk::{assess, RiskAssessment, RiskModel, Subject};
use crate::rules::Bindings;

/// An example event and where it was written.
pub struct Example {
    /// The event, as intake would accept it.
    pub accepted: Accepted,
    /// The file it is written in.
    pub file: PathBuf,
    /// Its line there, from 1.
    pub line: usize,
}

/// Every valid event of `dir/*.jsonl` in file order, and the customers they define.
#[derive(Default)]
pub struct Examples {
    /// The events, in file order.
    pub events: Vec<Example>,
    customers: HashMap<String, CustomerDoc>,
}

impl Examples {
    /// Reads `dir`; a missing folder is no examples. Lines that are not valid events are
    /// skipped: example folders also hold samples of what forewarn refuses.
    pub fn read(dir: &Path) -> anyhow::Result<Self> {
        let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                .collect(),
            Err(_) => Vec::new(),
        };
        files.sort();
        let mut examples = Examples {
            events: Vec::new(),
            customers: HashMap::new(),
        };
        for file in files {
            let text = std::fs::read_to_string(&file)?;
            for (i, line) in text.lines().enumerate() {
                let Some(accepted) = accept(line) else {
                    continue;
                };
                examples.learn_customer(&accepted);
                examples.events.push(Example {
                    accepted,
                    file: file.clone(),
                    line: i + 1,
                });
            }
        }
        Ok(examples)
    }

    /// Merges an event's inline customer (and `customer.upserted`) into what is known.
    fn learn_customer(&mut self, accepted: &Accepted) {
        if let Some(CustomerRef::Inline { id, object }) = accepted.payload.customer() {
            self.customers
                .entry(id.as_str().to_owned())
                .or_default()
                .merge(object);
        }
    }

    /// The customer `accepted` names, as the examples define it; else a sample customer.
    pub fn customer_for(&self, accepted: &Accepted) -> CustomerDoc {
        let named = accepted.payload.customer().and_then(|c| match c {
            CustomerRef::Inline { id, object } => {
                let mut doc = self.customers.get(id.as_str()).cloned().unwrap_or_default();
                doc.merge(object);
                Some(doc)
            }
            CustomerRef::Id(id) => self.customers.get(id.as_str()).cloned(),
        });
        named.unwrap_or_else(|| CustomerDoc::from_object(sample_customer()))
    }
}

/// One line as an accepted event, if it is one.
fn accept(line: &str) -> Option<Accepted> {
    Accepted::parse(line.as_bytes(), None).ok()
}

/// `doc` as it reads in `locale`: the template's locale forced onto the customer, so every
/// locale a template has can be tried with the same customer.
pub fn in_locale(doc: &CustomerDoc, locale: Option<&Locale>) -> CustomerDoc {
    let mut doc = doc.clone();
    if let Some(l) = locale {
        doc.merge(
            json!({"locale": l.as_str()})
                .as_object()
                .expect("a JSON object literal"),
        );
    }
    doc
}

/// The customer used when an event names none the examples know.
fn sample_customer() -> Map<String, Value> {
    json!({"id": "sample", "name": "Sample Customer", "timezone": "UTC"})
        .as_object()
        .cloned()
        .unwrap_or_default()
}

/// The scores of one event on its own, with no history but what the event itself says: for
/// `check` and `preview`, which try rules and templates on example events.
pub(crate) fn example_assessment(
    accepted: &Accepted,
    customer: &CustomerId,
    risk: &RiskModel,
    now: DateTime<Utc>,
) -> RiskAssessment {
    let at = decision_time(&accepted.event, now);
    let shipment = Shipment::apply(None, &accepted.payload, at);
    let mut history = History::default();
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
            order: order_of(&accepted.payload),
            promised_by: stated_promise(&accepted.payload),
        },
        &history,
        risk,
    )
}

/// The bindings rule expressions see for one event on its own (no stored state but what the
/// event itself says, `risk` from [`example_assessment`]): for `check`, which tries
/// expressions on example events.
pub(crate) fn example_bindings<'a>(
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

/// The customer id a customer record holds, or `fallback` for a sample without one.
pub fn customer_id_of(
    doc: &crate::domain::CustomerDoc,
    fallback: &str,
) -> crate::domain::CustomerId {
    doc.as_object()
        .get("id")
        .and_then(serde_json::Value::as_str)
        .and_then(|id| crate::domain::CustomerId::parse(id).ok())
        .or_else(|| crate::domain::CustomerId::parse(fallback).ok())
        .expect("the fallback is a valid customer id")
}
