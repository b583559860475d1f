//! The CloudEvents 1.0 envelope (structured JSON mode) and the catalogue of event types.

use std::fmt;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::limits::{MAX_ATTRIBUTE_BYTES, MAX_TYPE_BYTES};

/// An event's identity: CloudEvents says `source` + `id` are unique, so a second delivery of the
/// same pair is the same event and is processed once.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventKey {
    /// The publishing system, e.g. `shop/checkout`.
    pub source: String,
    /// Unique within `source`.
    pub id: String,
}

impl fmt::Display for EventKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.source, self.id)
    }
}

/// Every event type forewarn understands (SPEC §1), including the synthetic ones its own
/// schedules will emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    /// A customer record was created or changed.
    CustomerUpserted,
    /// A customer withdrew consent for a channel.
    CustomerOptedOut,
    /// An order was placed.
    OrderPlaced,
    /// Items of an order are out of stock.
    OrderBackordered,
    /// An order was cancelled.
    OrderCancelled,
    /// Payment for an order failed.
    OrderPaymentFailed,
    /// A parcel was handed to a carrier.
    ShipmentCreated,
    /// A carrier scan on the way.
    ShipmentInTransit,
    /// The parcel is on the van.
    ShipmentOutForDelivery,
    /// The carrier announced a later delivery.
    ShipmentDelayed,
    /// The parcel is lost, damaged, held, …
    ShipmentException,
    /// The parcel arrived.
    ShipmentDelivered,
    /// An incident began.
    OutageStarted,
    /// An incident changed.
    OutageUpdated,
    /// An incident ended.
    OutageResolved,
    /// An external model scored a customer, shipment or order.
    RiskScored,
    /// Synthetic (forewarn's schedules, or a backend that knows): a parcel is past its promise
    /// and nobody announced a delay.
    ShipmentOverdue,
    /// Synthetic: time to ask a customer how an experience went.
    CsatDue,
    /// Synthetic: an order was placed and no parcel has been created since.
    OrderStalled,
    /// An item is available again: everyone waiting for it hears once.
    InventoryRestocked,
    /// A customer asked to be told when an item is available again.
    StockWatchRequested,
}

impl EventType {
    /// The whole catalogue, in SPEC order.
    pub const ALL: [EventType; 21] = [
        EventType::CustomerUpserted,
        EventType::CustomerOptedOut,
        EventType::OrderPlaced,
        EventType::OrderBackordered,
        EventType::OrderCancelled,
        EventType::OrderPaymentFailed,
        EventType::ShipmentCreated,
        EventType::ShipmentInTransit,
        EventType::ShipmentOutForDelivery,
        EventType::ShipmentDelayed,
        EventType::ShipmentException,
        EventType::ShipmentDelivered,
        EventType::OutageStarted,
        EventType::OutageUpdated,
        EventType::OutageResolved,
        EventType::RiskScored,
        EventType::ShipmentOverdue,
        EventType::CsatDue,
        EventType::OrderStalled,
        EventType::InventoryRestocked,
        EventType::StockWatchRequested,
    ];

    /// The CloudEvents `type`, e.g. `shipment.delayed`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::CustomerUpserted => "customer.upserted",
            EventType::CustomerOptedOut => "customer.opted_out",
            EventType::OrderPlaced => "order.placed",
            EventType::OrderBackordered => "order.backordered",
            EventType::OrderCancelled => "order.cancelled",
            EventType::OrderPaymentFailed => "order.payment_failed",
            EventType::ShipmentCreated => "shipment.created",
            EventType::ShipmentInTransit => "shipment.in_transit",
            EventType::ShipmentOutForDelivery => "shipment.out_for_delivery",
            EventType::ShipmentDelayed => "shipment.delayed",
            EventType::ShipmentException => "shipment.exception",
            EventType::ShipmentDelivered => "shipment.delivered",
            EventType::OutageStarted => "outage.started",
            EventType::OutageUpdated => "outage.updated",
            EventType::OutageResolved => "outage.resolved",
            EventType::RiskScored => "risk.scored",
            EventType::ShipmentOverdue => "shipment.overdue",
            EventType::CsatDue => "csat.due",
            EventType::OrderStalled => "order.stalled",
            EventType::InventoryRestocked => "inventory.restocked",
            EventType::StockWatchRequested => "stock.watch_requested",
        }
    }

    /// Looks a `type` up in the catalogue.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == raw)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A CloudEvent whose envelope is valid and whose type is in the catalogue. `data` is still raw
/// JSON here; [`crate::domain::Payload::parse`] checks it against the catalogue.
#[derive(Debug, Clone)]
pub struct CloudEvent {
    /// `source` + `id`.
    pub key: EventKey,
    /// The catalogue type, after `nats.type_prefix` was stripped.
    pub event_type: EventType,
    /// When it happened, by the publisher's clock.
    pub time: Option<DateTime<Utc>>,
    /// The CloudEvents `subject`, usually the entity id.
    pub subject: Option<String>,
    /// The payload, kept whole: fields beyond the catalogue stay visible to rules and templates.
    pub data: Value,
}

/// Why bytes are not a usable CloudEvent. Each variant is a dead-letter reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The body is not a JSON object.
    #[error("body is not JSON: {0}")]
    NotJson(String),
    /// JSON, but not a CloudEvents 1.0 structured-mode event.
    #[error("not a CloudEvents 1.0 event: {0}")]
    NotCloudEvent(String),
    /// A valid envelope whose type is not in the catalogue.
    #[error("unknown event type `{0}`")]
    UnknownType(String),
}

/// `text` for an error message: quoted, and cut to a few dozen characters if longer.
fn quoted(text: &str) -> String {
    const SHOWN: usize = 64;
    match text.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("\"{}…\" ({} bytes)", &text[..cut], text.len()),
        None => format!("\"{text}\""),
    }
}

impl CloudEvent {
    /// Parses a message body. `type_prefix` (e.g. `com.shop.`) is removed from `type` first.
    pub fn parse(body: &[u8], type_prefix: Option<&str>) -> Result<Self, EnvelopeError> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| EnvelopeError::NotJson(e.to_string()))?;
        let Value::Object(mut envelope) = value else {
            return Err(EnvelopeError::NotCloudEvent(
                "the body must be a JSON object".into(),
            ));
        };
        let text = |name: &str, limit: usize| -> Result<String, EnvelopeError> {
            match envelope.get(name) {
                Some(Value::String(s)) if s.len() > limit => {
                    Err(EnvelopeError::NotCloudEvent(format!(
                        "`{name}` is {} bytes long; at most {limit} are accepted",
                        s.len()
                    )))
                }
                Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
                Some(Value::String(_)) => Err(EnvelopeError::NotCloudEvent(format!(
                    "`{name}` must not be empty"
                ))),
                Some(_) => Err(EnvelopeError::NotCloudEvent(format!(
                    "`{name}` must be a string"
                ))),
                None => Err(EnvelopeError::NotCloudEvent(format!(
                    "required attribute `{name}` is missing"
                ))),
            }
        };
        let version = text("specversion", MAX_ATTRIBUTE_BYTES)?;
        if version != "1.0" {
            return Err(EnvelopeError::NotCloudEvent(format!(
                "`specversion` is {}, expected \"1.0\"",
                quoted(&version)
            )));
        }
        let id = text("id", MAX_ATTRIBUTE_BYTES)?;
        let source = text("source", MAX_ATTRIBUTE_BYTES)?;
        let raw_type = text("type", MAX_TYPE_BYTES)?;
        let time = match envelope.get("time") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(
                DateTime::parse_from_rfc3339(s)
                    .map_err(|e| {
                        EnvelopeError::NotCloudEvent(format!("`time` is not RFC 3339: {e}"))
                    })?
                    .with_timezone(&Utc),
            ),
            Some(_) => {
                return Err(EnvelopeError::NotCloudEvent(
                    "`time` must be an RFC 3339 string".into(),
                ))
            }
        };
        if let Some(content_type) = envelope.get("datacontenttype").and_then(Value::as_str) {
            if !content_type.starts_with("application/json") && !content_type.ends_with("+json") {
                return Err(EnvelopeError::NotCloudEvent(format!(
                    "`datacontenttype` is {}; forewarn reads JSON data only",
                    quoted(content_type)
                )));
            }
        }
        if envelope.contains_key("data_base64") {
            return Err(EnvelopeError::NotCloudEvent(
                "`data_base64` is not supported; send `data` as JSON".into(),
            ));
        }
        let subject = match envelope.get("subject") {
            None | Some(Value::Null) => None,
            Some(_) => Some(text("subject", MAX_ATTRIBUTE_BYTES)?),
        };
        let type_name = match type_prefix {
            Some(prefix) if !prefix.is_empty() => {
                raw_type.strip_prefix(prefix).unwrap_or(&raw_type)
            }
            _ => &raw_type,
        };
        let event_type = EventType::parse(type_name)
            .ok_or_else(|| EnvelopeError::UnknownType(raw_type.clone()))?;
        Ok(CloudEvent {
            key: EventKey { source, id },
            event_type,
            time,
            subject,
            data: envelope.remove("data").unwrap_or(Value::Null),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(body: &str) -> Result<CloudEvent, EnvelopeError> {
        CloudEvent::parse(body.as_bytes(), Some("com.shop."))
    }

    #[test]
    fn a_structured_cloudevent_is_parsed_with_its_prefix_stripped() {
        let event = parse(
            r#"{"specversion":"1.0","id":"e1","source":"shop","type":"com.shop.shipment.delayed",
                "time":"2026-11-23T18:15:00+09:00","data":{"x":1}}"#,
        )
        .unwrap();
        assert_eq!(event.event_type, EventType::ShipmentDelayed);
        assert_eq!(
            event.time.unwrap().to_rfc3339(),
            "2026-11-23T09:15:00+00:00"
        );
        assert_eq!(event.data["x"], 1);
    }

    #[test]
    fn each_envelope_problem_has_its_own_reason() {
        assert!(matches!(parse("{nope"), Err(EnvelopeError::NotJson(_))));
        assert!(matches!(parse("[1]"), Err(EnvelopeError::NotCloudEvent(_))));
        let no_source = r#"{"specversion":"1.0","id":"e1","type":"order.placed"}"#;
        assert_eq!(
            parse(no_source).unwrap_err().to_string(),
            "not a CloudEvents 1.0 event: required attribute `source` is missing"
        );
        let old = r#"{"specversion":"0.3","id":"e1","source":"s","type":"order.placed"}"#;
        assert!(matches!(parse(old), Err(EnvelopeError::NotCloudEvent(_))));
        let unknown = r#"{"specversion":"1.0","id":"e1","source":"s","type":"order.teleported"}"#;
        assert_eq!(
            parse(unknown).unwrap_err(),
            EnvelopeError::UnknownType("order.teleported".into())
        );
    }

    #[test]
    fn an_attribute_too_long_or_not_text_is_refused_by_its_length_without_echoing_it() {
        let envelope = |id: &str, subject: Value| {
            json!({"specversion": "1.0", "id": id, "source": "s", "type": "order.placed",
                   "subject": subject})
            .to_string()
        };
        let long = "x".repeat(200_000);
        let error = parse(&envelope(&long, json!("o-1")))
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "not a CloudEvents 1.0 event: `id` is 200000 bytes long; at most 256 are accepted"
        );
        let error = parse(&envelope("e1", json!(long))).unwrap_err().to_string();
        assert!(error.contains("`subject` is 200000 bytes long"), "{error}");
        let error = parse(&envelope("e1", json!(42))).unwrap_err().to_string();
        assert!(error.contains("`subject` must be a string"), "{error}");
        let long_type = json!({"specversion": "1.0", "id": "e1", "source": "s",
                               "type": format!("order.{}", "x".repeat(300))});
        let error = parse(&long_type.to_string()).unwrap_err().to_string();
        assert!(
            error.contains("`type` is 306 bytes long; at most 128"),
            "{error}"
        );
        let version = json!({"specversion": "x".repeat(200), "id": "e1", "source": "s",
                             "type": "order.placed"});
        let error = parse(&version.to_string()).unwrap_err().to_string();
        assert!(error.len() < 200, "{error}");
        // At the limit, and with no subject at all, it is an event.
        assert!(parse(&envelope(&"x".repeat(256), Value::Null)).is_ok());
    }
}
