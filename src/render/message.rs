//! One message's template context and rendering, the same for outreach, fallbacks, `check`
//! and `preview`: the CloudEvent, the customer, links, the risk scores and the offer, rendered
//! for a channel and addressed.

use serde_json::{json, Map, Value};

use super::{KoreanAdLabel, Part, Templates};
use crate::domain::{
    Accepted, Category, Channel, CloudEvent, Customer, CustomerDoc, Incident, MessageContent,
    Offer, RiskScores,
};

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

/// Renders a template's parts for `channel` in `locale`: how every message is rendered, and
/// how `check` and `preview` try every channel and locale rather than the one a customer gets.
pub fn render_parts(
    input: &RenderInput<'_>,
    templates: &Templates,
    channel: Channel,
    locale: Option<&crate::domain::Locale>,
) -> Result<super::RenderedParts, super::RenderError> {
    let mut context = render_context(input);
    if let Some(locale) = locale {
        translate(&mut context, locale);
    }
    // Per channel: a link from an e-mail unsubscribes from e-mail. A marketing message's link
    // stops marketing; a service message's stops everything on the channel.
    let customer = input.doc.as_object().get("id").and_then(Value::as_str);
    if let (Some(links), Some(customer)) = (templates.unsubscribe(), customer) {
        let scope = if input.is_marketing() {
            crate::domain::OptOutScope::Marketing
        } else {
            crate::domain::OptOutScope::All
        };
        if let Some(map) = context.get_mut("links").and_then(Value::as_object_mut) {
            map.insert(
                "unsubscribe".into(),
                json!(links.url(customer, channel, scope)),
            );
        }
    }
    templates.render(input.template, channel, locale, context)
}

/// `data.translations.<locale>` (else `.<language>`) read in place of `data`'s own fields: an
/// announcement written in several languages (`announce … --message-in ko …`) reads in the
/// customer's.
fn translate(context: &mut Value, locale: &crate::domain::Locale) {
    let Some(data) = context.get_mut("data").and_then(Value::as_object_mut) else {
        return;
    };
    let chosen = data
        .get("translations")
        .and_then(Value::as_object)
        .and_then(|t| t.get(locale.as_str()).or_else(|| t.get(locale.language())))
        .and_then(Value::as_object)
        .cloned();
    for (field, text) in chosen.into_iter().flatten() {
        data.insert(field, text);
    }
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
pub(crate) fn attributes_json(event: &CloudEvent) -> Value {
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
pub(crate) fn incident_json(incident: &Incident) -> Value {
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
