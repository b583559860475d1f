//! Property-based fuzzing of what hostile input reaches first: the envelope and catalogue
//! parser, the rules' CEL expressions evaluated over arbitrary event data, and the templates
//! rendered with arbitrary strings. Nothing may panic, and every refusal names its field.
//! (The chaos suite sends ten thousand hostile messages through a real nats-server.)

use std::borrow::Cow;
use std::sync::OnceLock;

use forewarn::domain::{Channel, CloudEvent, EnvelopeError, Locale, Payload};
use forewarn::render::Templates;
use forewarn::rules::{Bindings, Expression, RuleSet};
use proptest::prelude::*;
use serde_json::{Map, Value};

use crate::helpers::repo;

/// Any JSON value, a few levels deep: the text arbitrary Unicode.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::from),
        // Text that looks like what the catalogue expects: times, codes, phone numbers.
        "[0-9T:+-Z]{0,25}|[A-Z]{3}|\\+[0-9]{6,16}|(sms|email|push|all)".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..6)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

/// Every well-formed example event in `examples/events`: the bases that mutations start from.
fn examples() -> &'static [Value] {
    static EXAMPLES: OnceLock<Vec<Value>> = OnceLock::new();
    EXAMPLES.get_or_init(|| {
        let mut files: Vec<_> = std::fs::read_dir(repo().join("examples/events"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        files.sort();
        let mut events = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(file).unwrap();
            events.extend(
                text.lines()
                    .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                    .filter(|event| {
                        // Well-formed: the rejected examples are not.
                        CloudEvent::parse(event.to_string().as_bytes(), None)
                            .is_ok_and(|e| Payload::parse(e.event_type, &e.data).is_ok())
                    }),
            );
        }
        assert!(events.len() > 10, "the examples hold events");
        events
    })
}

/// The paths (`["data", "items", "0", "sku"]`) of every value in `value`, itself included.
fn paths(value: &Value, at: Vec<String>, into: &mut Vec<Vec<String>>) {
    match value {
        Value::Object(fields) => {
            for (key, inner) in fields {
                let mut next = at.clone();
                next.push(key.clone());
                paths(inner, next, into);
            }
        }
        Value::Array(items) => {
            for (i, inner) in items.iter().enumerate() {
                let mut next = at.clone();
                next.push(i.to_string());
                paths(inner, next, into);
            }
        }
        _ => {}
    }
    into.push(at);
}

/// `event` with the value at `path` replaced by `with` (removed when `with` is none).
fn mutated(mut event: Value, path: &[String], with: Option<Value>) -> Value {
    let Some((last, parents)) = path.split_last() else {
        return with.unwrap_or(Value::Null);
    };
    let mut at = &mut event;
    for step in parents {
        at = match at {
            Value::Object(fields) => fields.get_mut(step).unwrap(),
            Value::Array(items) => &mut items[step.parse::<usize>().unwrap()],
            _ => unreachable!("paths only run through objects and arrays"),
        };
    }
    match (at, with) {
        (Value::Object(fields), Some(value)) => {
            fields.insert(last.clone(), value);
        }
        (Value::Object(fields), None) => {
            fields.remove(last);
        }
        (Value::Array(items), Some(value)) => items[last.parse::<usize>().unwrap()] = value,
        (Value::Array(items), None) => {
            items.remove(last.parse::<usize>().unwrap());
        }
        _ => unreachable!("paths only run through objects and arrays"),
    }
    event
}

/// An example event with one of its values (anywhere, `data` included) replaced by any JSON
/// or removed.
fn mutated_event() -> impl Strategy<Value = Value> {
    (
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
        prop::option::weighted(0.8, any_json()),
    )
        .prop_map(|(which, where_, with)| {
            let base = which.get(examples()).clone();
            let mut all = Vec::new();
            paths(&base, Vec::new(), &mut all);
            let path = where_.get(&all).clone();
            mutated(base, &path, with)
        })
}

/// The attributes an envelope error may be about.
const ATTRIBUTES: [&str; 8] = [
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "subject",
    "datacontenttype",
    "data_base64",
];

/// Parses `body` as intake does; a refusal must name what it refuses.
fn parse_names_every_refusal(body: &[u8]) -> Result<(), TestCaseError> {
    match CloudEvent::parse(body, None) {
        Err(EnvelopeError::NotJson(_)) => {}
        Err(EnvelopeError::UnknownType(name)) => prop_assert!(name.len() <= 128),
        Err(EnvelopeError::NotCloudEvent(why)) => prop_assert!(
            why.contains("JSON object")
                || ATTRIBUTES
                    .iter()
                    .any(|attribute| why.contains(&format!("`{attribute}`"))),
            "{why}"
        ),
        Ok(event) => {
            if let Err(refused) = Payload::parse(event.event_type, &event.data) {
                prop_assert!(
                    refused.field == "data" || refused.field.starts_with("data."),
                    "{refused}"
                );
                prop_assert!(!refused.message.is_empty());
                // Quoted input is cut: a dead letter's header and a log line stay short.
                prop_assert!(refused.to_string().len() < 600, "{refused}");
            }
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn any_bytes_are_parsed_or_refused_without_a_panic(body in prop::collection::vec(any::<u8>(), 0..2048)) {
        parse_names_every_refusal(&body)?;
    }

    #[test]
    fn an_event_with_any_value_changed_is_accepted_or_refused_naming_its_field(event in mutated_event()) {
        parse_names_every_refusal(event.to_string().as_bytes())?;
    }
}

/// The repository's rules and templates, loaded once.
fn authoring() -> &'static (RuleSet, Templates) {
    static AUTHORING: OnceLock<(RuleSet, Templates)> = OnceLock::new();
    AUTHORING.get_or_init(|| {
        let templates = Templates::load(&repo().join("templates")).unwrap();
        let rules = RuleSet::load(&repo().join("rules"), &templates).unwrap();
        (rules, templates)
    })
}

/// Every CEL expression of the repository's rules.
fn expressions() -> Vec<&'static Expression> {
    let (rules, _) = authoring();
    rules
        .rules()
        .iter()
        .flat_map(|rule| {
            [
                rule.when.as_ref(),
                rule.once_per.as_ref(),
                rule.offer.as_ref().map(|offer| &offer.discount_percent),
            ]
        })
        .flatten()
        .collect()
}

/// Any JSON object.
fn any_object() -> impl Strategy<Value = Value> {
    prop::collection::btree_map("[a-z_]{1,12}", any_json(), 0..8)
        .prop_map(|fields| Value::Object(fields.into_iter().collect()))
}

proptest! {
    #[test]
    fn every_rule_expression_evaluates_over_any_data_without_a_panic(
        data in prop_oneof![any_object(), mutated_event().prop_map(|e| e["data"].clone())],
        customer in any_object(),
        risk in any_json(),
    ) {
        let attributes = serde_json::json!({"id": "e-1", "source": "fuzz", "type": "shipment.delayed"});
        let incident = Value::Null;
        for expression in expressions() {
            let mut bindings = Bindings::new(
                attributes.clone(),
                &data,
                Cow::Borrowed(&customer),
                Cow::Borrowed(&risk),
                Cow::Borrowed(&incident),
                chrono::Utc::now(),
            );
            // A type error or a missing field is an error value, never a panic.
            let _ = expression.evaluate(&mut bindings);
        }
    }
}

/// `value` with every string in it replaced, in turn, by one of `texts` — all but times and
/// currency codes, which helpers format and are refused (as errors) when they are not.
fn with_texts(value: &Value, texts: &[String], next: &mut usize) -> Value {
    match value {
        Value::String(text)
            if chrono::DateTime::parse_from_rfc3339(text).is_ok()
                || (text.len() == 3 && text.chars().all(|c| c.is_ascii_uppercase())) =>
        {
            value.clone()
        }
        Value::String(_) => {
            *next += 1;
            Value::String(texts[*next % texts.len()].clone())
        }
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| with_texts(v, texts, next)).collect())
        }
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(key, v)| (key.clone(), with_texts(v, texts, next)))
                .collect::<Map<_, _>>(),
        ),
        other => other.clone(),
    }
}

/// Each template with the example events of the types its rules are on.
fn template_events() -> Vec<(&'static str, Vec<&'static Value>)> {
    let (rules, templates) = authoring();
    templates
        .names()
        .map(|name| {
            let events = examples()
                .iter()
                .filter(|event| {
                    rules.rules().iter().any(|rule| {
                        rule.template == name
                            && rule
                                .on
                                .iter()
                                .any(|t| Some(t.as_str()) == event["type"].as_str())
                    })
                })
                .collect();
            (name, events)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn every_template_renders_any_text_on_every_channel_and_locale_without_a_panic(
        texts in prop::collection::vec(any::<String>(), 1..6),
    ) {
        let (_, templates) = authoring();
        let customer = examples()
            .iter()
            .find(|event| event["type"] == "customer.upserted")
            .map(|event| event["data"].clone())
            .unwrap();
        let mut rendered = 0;
        for (name, events) in template_events() {
            for base in events {
                let mut next = 0;
                let event = with_texts(base, &texts, &mut next);
                let context = serde_json::json!({
                    "customer": with_texts(&customer, &texts, &mut next),
                    "event": event, "data": event["data"], "rule": {"id": texts[0]},
                    "links": {"tracking": texts[texts.len() - 1]},
                    "offer": {"code": texts[0], "percent": 10,
                              "expires_at": "2026-12-31T00:00:00Z"},
                });
                for channel in [Channel::Sms, Channel::Email, Channel::Push] {
                    if !templates.serves(name, channel) {
                        continue;
                    }
                    for locale in templates.locales(name).iter().map(|l| Locale::parse(l).ok()) {
                        let parts = templates.render(name, channel, locale.as_ref(), context.clone());
                        // Any text renders: it is data, never template syntax.
                        prop_assert!(parts.is_ok(), "{name} {channel}: {}", parts.err().unwrap());
                        rendered += 1;
                    }
                }
            }
        }
        prop_assert!(rendered > 50, "{rendered} renders");
    }
}
