//! The event catalogue (SPEC §1): what `data` must hold for each event type.
//!
//! Each type has a struct; `serde_path_to_error` turns a deserialisation failure into the path of
//! the offending field, so a dead letter says `data.items[0].unit_price.minor: …` rather than
//! "invalid data". Fields beyond the catalogue are accepted: the raw `data` is kept whole. The
//! shapes `data` is read as are in `data.rs`; this file holds what the rest of forewarn sees.

mod data;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use data::*;

use super::{
    Channel, CustomerId, EmailAddress, EntityId, EventType, Locale, Money, PhoneE164, PushToken,
    TimeZoneName,
};

/// A `data` field that is missing, of the wrong type or out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct DataError {
    /// The field's path, e.g. `data.customer.phone`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl DataError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A customer object as events carry it: only `id` is required; absent fields keep their
/// stored value.
#[derive(Debug, Clone, Deserialize)]
#[allow(dead_code)] // Fields are read for validation; the stored record is the raw JSON.
pub(crate) struct CustomerInput {
    pub(crate) id: CustomerId,
    name: Option<String>,
    locale: Option<Locale>,
    timezone: Option<TimeZoneName>,
    email: Option<EmailAddress>,
    phone: Option<PhoneE164>,
    push_tokens: Option<Vec<PushToken>>,
    channels: Option<Vec<Channel>>,
    consent: Option<ConsentInput>,
    segment: Option<String>,
    region: Option<String>,
    lifetime_value: Option<Money>,
}

#[derive(Debug, Clone, Deserialize)]
#[allow(dead_code)] // Validation only, see `CustomerInput`.
struct ConsentInput {
    sms: Option<bool>,
    email: Option<bool>,
    push: Option<bool>,
    marketing: Option<bool>,
}

/// How an event names its customer.
#[derive(Debug, Clone)]
pub enum CustomerRef {
    /// `data.customer`: a (partial) customer object, upserted before rules run.
    Inline {
        /// Its id.
        id: CustomerId,
        /// The object as sent, validated field by field.
        object: serde_json::Map<String, Value>,
    },
    /// `data.customer_id`: a customer forewarn must already know.
    Id(CustomerId),
}

impl CustomerRef {
    /// The customer's id either way.
    pub fn id(&self) -> &CustomerId {
        match self {
            CustomerRef::Inline { id, .. } | CustomerRef::Id(id) => id,
        }
    }
}

/// An item of an order.
#[derive(Debug, Clone, Deserialize)]
pub struct OrderItem {
    /// Stock keeping unit.
    pub sku: String,
    /// Display name, in the shop's language.
    pub name: String,
    /// Only on `order.placed`.
    pub quantity: Option<u32>,
    /// Only on `order.placed`.
    pub unit_price: Option<Money>,
}

/// Another way to get what was ordered: pick it up in a store, or take a substitute.
#[derive(Debug, Clone, Deserialize)]
pub struct Alternative {
    /// `pickup` or `substitute`.
    pub kind: AlternativeKind,
    /// The item offered.
    pub sku: String,
    /// Its display name.
    pub name: String,
    /// The store, for pickups.
    pub store: Option<Store>,
}

/// The two kinds of alternative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlternativeKind {
    /// The same item, at a nearby store.
    Pickup,
    /// A similar item.
    Substitute,
}

/// A shop's physical store.
#[derive(Debug, Clone, Deserialize)]
pub struct Store {
    /// Store id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Street address.
    pub address: String,
}

/// Which channel an opt-out covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptOutTarget {
    /// Text messages.
    Sms,
    /// E-mail.
    Email,
    /// Push notifications.
    Push,
    /// Every channel.
    All,
}

impl OptOutTarget {
    /// The channels it covers.
    pub fn channels(self) -> &'static [Channel] {
        match self {
            OptOutTarget::Sms => &[Channel::Sms],
            OptOutTarget::Email => &[Channel::Email],
            OptOutTarget::Push => &[Channel::Push],
            OptOutTarget::All => &Channel::ALL,
        }
    }
}

/// What kinds of message an opt-out stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptOutScope {
    /// Marketing only; service messages still go.
    Marketing,
    /// Everything.
    All,
}

impl OptOutScope {
    /// The lower-case name used in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            OptOutScope::Marketing => "marketing",
            OptOutScope::All => "all",
        }
    }
}

/// Incident severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Degraded; most customers unaffected.
    Minor,
    /// A service is down for some customers.
    Major,
    /// A service is down for everyone.
    Critical,
}

impl Severity {
    /// Every severity, mildest first.
    pub const ALL: [Severity; 3] = [Severity::Minor, Severity::Major, Severity::Critical];

    /// The lower-case name used in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Minor => "minor",
            Severity::Major => "major",
            Severity::Critical => "critical",
        }
    }

    /// The severity a stored name means.
    pub fn parse(name: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// What a shipment exception is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExceptionKind {
    /// The carrier lost the parcel.
    Lost,
    /// It arrived or will arrive damaged.
    Damaged,
    /// The address is wrong or incomplete.
    Address,
    /// Held in customs.
    Customs,
    /// Stopped by weather.
    Weather,
    /// Anything else.
    Other,
}

impl ExceptionKind {
    /// The lower-case name used in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            ExceptionKind::Lost => "lost",
            ExceptionKind::Damaged => "damaged",
            ExceptionKind::Address => "address",
            ExceptionKind::Customs => "customs",
            ExceptionKind::Weather => "weather",
            ExceptionKind::Other => "other",
        }
    }
}

/// Who an incident affects.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
pub struct Affected {
    /// Customers in one of these regions, or in a region inside one (`kr` takes in
    /// `kr-seoul`).
    #[serde(default)]
    pub regions: Vec<String>,
    /// Customers whose `segment` is one of these.
    #[serde(default)]
    pub segments: Vec<String>,
    /// These customers.
    #[serde(default)]
    pub customer_ids: Vec<CustomerId>,
}

impl Affected {
    /// Names nobody in particular: then it affects everyone.
    pub fn is_everyone(&self) -> bool {
        self.regions.is_empty() && self.segments.is_empty() && self.customer_ids.is_empty()
    }

    /// Whether the customer `id`, in `region` and `segment`, is among those affected.
    pub fn takes_in(&self, id: &CustomerId, region: Option<&str>, segment: Option<&str>) -> bool {
        self.is_everyone()
            || region.is_some_and(|region| {
                region_ancestry(region).any(|r| self.regions.iter().any(|a| a == r))
            })
            || segment.is_some_and(|s| self.segments.iter().any(|a| a == s))
            || self.customer_ids.contains(id)
    }
}

/// A region and every region it lies in, widest first: `kr-seoul-gangnam` lies in
/// `kr-seoul` and `kr`. Stored with each customer, so the database finds an incident's region
/// by membership without knowing how regions nest.
pub fn region_ancestry(region: &str) -> impl Iterator<Item = &str> {
    region
        .match_indices('-')
        .map(|(i, _)| &region[..i])
        .chain(std::iter::once(region))
}

/// Probabilities from a risk model.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Scores {
    /// Probability the shipment misses its promise.
    pub delay: Option<f64>,
    /// Probability the customer is lost.
    pub churn: Option<f64>,
}

/// `data` of an event, checked against the catalogue. Variants carry what forewarn's own state
/// needs; rules and templates see the raw `data`.
#[derive(Debug, Clone)]
#[allow(missing_docs)] // Variant fields are the catalogue's, documented in SPEC §1 and the README.
pub enum Payload {
    CustomerUpserted(CustomerRef),
    CustomerOptedOut {
        customer_id: CustomerId,
        channel: OptOutTarget,
        scope: OptOutScope,
    },
    OrderPlaced {
        order_id: EntityId,
        customer: CustomerRef,
        items: Vec<OrderItem>,
        total: Money,
        promised_by: DateTime<Utc>,
    },
    OrderBackordered {
        order_id: EntityId,
        customer: CustomerRef,
        restock_eta: Option<DateTime<Utc>>,
        /// The SKUs of its backordered lines: the customer waits for each.
        skus: Vec<String>,
    },
    OrderCancelled {
        order_id: EntityId,
        customer: CustomerRef,
    },
    OrderPaymentFailed {
        order_id: EntityId,
        customer: CustomerRef,
    },
    ShipmentCreated {
        shipment_id: EntityId,
        order_id: EntityId,
        customer: CustomerRef,
        carrier: String,
        tracking_number: String,
        tracking_url: Option<String>,
        promised_by: DateTime<Utc>,
        region: String,
    },
    ShipmentScanned {
        shipment_id: EntityId,
        at: DateTime<Utc>,
        out_for_delivery: bool,
    },
    ShipmentDelayed {
        shipment_id: EntityId,
        order_id: EntityId,
        customer: CustomerRef,
        carrier: String,
        promised_by: DateTime<Utc>,
        new_eta: DateTime<Utc>,
    },
    ShipmentException {
        shipment_id: EntityId,
        order_id: EntityId,
        customer: CustomerRef,
        kind: ExceptionKind,
    },
    ShipmentDelivered {
        shipment_id: EntityId,
        order_id: Option<EntityId>,
        delivered_at: DateTime<Utc>,
    },
    OutageStarted {
        incident_id: EntityId,
        title: String,
        severity: Severity,
        affected: Affected,
    },
    OutageUpdated {
        incident_id: EntityId,
        severity: Option<Severity>,
    },
    OutageResolved {
        incident_id: EntityId,
    },
    RiskScored {
        customer_id: Option<CustomerId>,
        shipment_id: Option<EntityId>,
        order_id: Option<EntityId>,
        scores: Scores,
        model: String,
    },
    ShipmentOverdue {
        shipment_id: EntityId,
        order_id: EntityId,
        customer: CustomerRef,
        promised_by: DateTime<Utc>,
    },
    CsatDue {
        order_id: EntityId,
        customer: CustomerRef,
    },
    OrderStalled {
        order_id: EntityId,
        customer: CustomerRef,
        placed_at: DateTime<Utc>,
    },
    InventoryRestocked {
        sku: String,
    },
    StockWatchRequested {
        customer: CustomerRef,
        sku: String,
    },
}

impl Payload {
    /// Checks `data` against the catalogue entry of `event_type`.
    pub fn parse(event_type: EventType, data: &Value) -> Result<Self, DataError> {
        if !data.is_object() {
            return Err(DataError::new("data", "must be a JSON object"));
        }
        super::limits::check_data_text(data)?;
        Ok(match event_type {
            EventType::CustomerUpserted => {
                let input: CustomerInput = typed(data, "data")?;
                Payload::CustomerUpserted(CustomerRef::Inline {
                    id: input.id,
                    object: data.as_object().cloned().unwrap_or_default(),
                })
            }
            EventType::CustomerOptedOut => {
                let d: OptOutData = typed(data, "data")?;
                Payload::CustomerOptedOut {
                    customer_id: d.customer_id,
                    channel: d.channel,
                    scope: d.scope,
                }
            }
            EventType::OrderPlaced => {
                let d: OrderPlacedData = typed(data, "data")?;
                for (i, item) in d.items.iter().enumerate() {
                    if item.quantity.is_none() {
                        return Err(DataError::new(
                            format!("data.items[{i}].quantity"),
                            "missing",
                        ));
                    }
                    if item.unit_price.is_none() {
                        return Err(DataError::new(
                            format!("data.items[{i}].unit_price"),
                            "missing",
                        ));
                    }
                }
                Payload::OrderPlaced {
                    order_id: d.order_id,
                    customer: customer_ref(data, d.customer)?,
                    items: d.items,
                    total: d.total,
                    promised_by: d.promised_by,
                }
            }
            EventType::OrderBackordered => {
                let d: OrderBackorderedData = typed(data, "data")?;
                Payload::OrderBackordered {
                    order_id: d.order_id,
                    customer: customer_ref(data, d.customer)?,
                    restock_eta: d.restock_eta,
                    skus: d.items.into_iter().map(|item| item.sku).collect(),
                }
            }
            EventType::OrderCancelled => {
                let d: OrderReasonData = typed(data, "data")?;
                Payload::OrderCancelled {
                    order_id: d.order_id,
                    customer: customer_ref(data, d.customer)?,
                }
            }
            EventType::OrderPaymentFailed => {
                let d: OrderReasonData = typed(data, "data")?;
                Payload::OrderPaymentFailed {
                    order_id: d.order_id,
                    customer: customer_ref(data, d.customer)?,
                }
            }
            EventType::ShipmentCreated => {
                let d: ShipmentCreatedData = typed(data, "data")?;
                Payload::ShipmentCreated {
                    shipment_id: d.shipment_id,
                    order_id: d.order_id,
                    customer: customer_ref(data, d.customer)?,
                    carrier: d.carrier,
                    tracking_number: d.tracking_number,
                    tracking_url: d.tracking_url,
                    promised_by: d.promised_by,
                    region: d.destination.region,
                }
            }
            EventType::ShipmentInTransit | EventType::ShipmentOutForDelivery => {
                let d: ShipmentScanData = typed(data, "data")?;
                Payload::ShipmentScanned {
                    shipment_id: d.shipment_id,
                    at: d.at,
                    out_for_delivery: event_type == EventType::ShipmentOutForDelivery,
                }
            }
            EventType::ShipmentDelayed => {
                let d: ShipmentDelayedData = typed(data, "data")?;
                Payload::ShipmentDelayed {
                    shipment_id: d.shipment_id,
                    order_id: d.order_id,
                    customer: customer_ref(data, d.customer)?,
                    carrier: d.carrier,
                    promised_by: d.promised_by,
                    new_eta: d.new_eta,
                }
            }
            EventType::ShipmentException => {
                let d: ShipmentExceptionData = typed(data, "data")?;
                Payload::ShipmentException {
                    shipment_id: d.shipment_id,
                    order_id: d.order_id,
                    customer: customer_ref(data, d.customer)?,
                    kind: d.kind,
                }
            }
            EventType::ShipmentDelivered => {
                let d: ShipmentDeliveredData = typed(data, "data")?;
                Payload::ShipmentDelivered {
                    shipment_id: d.shipment_id,
                    order_id: d.order_id,
                    delivered_at: d.delivered_at,
                }
            }
            EventType::OutageStarted => {
                let d: OutageStartedData = typed(data, "data")?;
                Payload::OutageStarted {
                    incident_id: d.incident_id,
                    title: d.title,
                    severity: d.severity,
                    affected: d.affected,
                }
            }
            EventType::OutageUpdated => {
                let d: OutageUpdatedData = typed(data, "data")?;
                Payload::OutageUpdated {
                    incident_id: d.incident_id,
                    severity: d.severity,
                }
            }
            EventType::OutageResolved => {
                let d: OutageResolvedData = typed(data, "data")?;
                Payload::OutageResolved {
                    incident_id: d.incident_id,
                }
            }
            EventType::RiskScored => {
                let d: RiskScoredData = typed(data, "data")?;
                if d.customer_id.is_none() && d.shipment_id.is_none() && d.order_id.is_none() {
                    return Err(DataError::new(
                        "data.customer_id",
                        "missing (a score needs customer_id, shipment_id or order_id)",
                    ));
                }
                for (name, score) in [("delay", d.scores.delay), ("churn", d.scores.churn)] {
                    if score.is_some_and(|s| !(0.0..=1.0).contains(&s)) {
                        return Err(DataError::new(
                            format!("data.scores.{name}"),
                            "must be between 0 and 1",
                        ));
                    }
                }
                Payload::RiskScored {
                    customer_id: d.customer_id,
                    shipment_id: d.shipment_id,
                    order_id: d.order_id,
                    scores: d.scores,
                    model: d.model,
                }
            }
            EventType::ShipmentOverdue => {
                let d: ShipmentOverdueData = typed(data, "data")?;
                Payload::ShipmentOverdue {
                    shipment_id: d.shipment_id,
                    order_id: d.order_id,
                    customer: customer_ref(data, d.customer)?,
                    promised_by: d.promised_by,
                }
            }
            EventType::CsatDue => {
                let d: CsatDueData = typed(data, "data")?;
                Payload::CsatDue {
                    order_id: d.order_id,
                    customer: customer_ref(data, d.customer)?,
                }
            }
            EventType::OrderStalled => {
                let d: OrderStalledData = typed(data, "data")?;
                Payload::OrderStalled {
                    order_id: d.order_id,
                    customer: customer_ref(data, d.customer)?,
                    placed_at: d.placed_at,
                }
            }
            EventType::InventoryRestocked => {
                let d: RestockedData = typed(data, "data")?;
                Payload::InventoryRestocked { sku: d.sku }
            }
            EventType::StockWatchRequested => {
                let d: WatchData = typed(data, "data")?;
                Payload::StockWatchRequested {
                    customer: customer_ref(data, d.customer)?,
                    sku: d.sku,
                }
            }
        })
    }

    /// The customer the event names, if its type names one.
    pub fn customer(&self) -> Option<&CustomerRef> {
        match self {
            Payload::CustomerUpserted(c)
            | Payload::OrderPlaced { customer: c, .. }
            | Payload::OrderBackordered { customer: c, .. }
            | Payload::OrderCancelled { customer: c, .. }
            | Payload::OrderPaymentFailed { customer: c, .. }
            | Payload::ShipmentCreated { customer: c, .. }
            | Payload::ShipmentDelayed { customer: c, .. }
            | Payload::ShipmentException { customer: c, .. }
            | Payload::ShipmentOverdue { customer: c, .. }
            | Payload::CsatDue { customer: c, .. }
            | Payload::OrderStalled { customer: c, .. }
            | Payload::StockWatchRequested { customer: c, .. } => Some(c),
            _ => None,
        }
    }
}

/// Deserialises `value` into `T`, naming the failing field under `root`.
fn typed<T: DeserializeOwned>(value: &Value, root: &str) -> Result<T, DataError> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let base = if path == "." {
            root.to_owned()
        } else {
            format!("{root}.{path}")
        };
        // serde quotes the value it refused: a 200 KB string would be copied whole into the
        // dead letter's header and the log line.
        let message = clipped(&err.inner().to_string());
        // serde reports a missing field at its parent; name the field itself.
        match message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.strip_suffix('`'))
        {
            Some(field) => DataError::new(format!("{base}.{field}"), "missing"),
            None => DataError::new(base, message),
        }
    })
}

/// `message` cut to [`MESSAGE_CHARS`] characters, the cut said.
fn clipped(message: &str) -> String {
    match message.char_indices().nth(MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}… ({} bytes in all)", &message[..cut], message.len()),
        None => message.to_owned(),
    }
}

/// The longest a data error's message gets, in characters.
const MESSAGE_CHARS: usize = 200;

/// Resolves `data.customer` / `data.customer_id` into a [`CustomerRef`].
fn customer_ref(data: &Value, inline: Option<CustomerInput>) -> Result<CustomerRef, DataError> {
    let by_id: Option<CustomerId> = match data.get("customer_id") {
        None | Some(Value::Null) => None,
        Some(raw) => Some(
            serde_json::from_value(raw.clone())
                .map_err(|e| DataError::new("data.customer_id", e.to_string()))?,
        ),
    };
    match (inline, by_id) {
        (Some(input), by_id) => {
            if by_id.as_ref().is_some_and(|id| *id != input.id) {
                return Err(DataError::new(
                    "data.customer_id",
                    "differs from data.customer.id",
                ));
            }
            let object = data
                .get("customer")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            Ok(CustomerRef::Inline {
                id: input.id,
                object,
            })
        }
        (None, Some(id)) => Ok(CustomerRef::Id(id)),
        (None, None) => Err(DataError::new(
            "data.customer_id",
            "missing (send data.customer_id or an inline data.customer object)",
        )),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_region_lies_in_every_region_its_name_extends() {
        let ancestry: Vec<&str> = region_ancestry("kr-seoul-gangnam").collect();
        assert_eq!(ancestry, ["kr", "kr-seoul", "kr-seoul-gangnam"]);
        assert_eq!(region_ancestry("kr").collect::<Vec<_>>(), ["kr"]);
        let id = CustomerId::parse("c-1").unwrap();
        let korea = Affected {
            regions: vec!["kr".into()],
            ..Affected::default()
        };
        assert!(korea.takes_in(&id, Some("kr-seoul"), None));
        assert!(
            !korea.takes_in(&id, Some("krx"), None),
            "a prefix ends at a dash"
        );
        assert!(!korea.takes_in(&id, None, None));
        assert!(
            Affected::default().takes_in(&id, None, None),
            "nobody named: everyone"
        );
    }

    use serde_json::json;

    use super::*;

    fn delayed() -> Value {
        json!({"shipment_id":"shp-1","order_id":"ord-1","customer_id":"c-1","carrier":"CJ",
               "promised_by":"2026-11-25T09:00:00Z","new_eta":"2026-11-27T09:00:00Z"})
    }

    #[test]
    fn a_missing_field_is_named_by_its_path() {
        let mut data = delayed();
        data.as_object_mut().unwrap().remove("new_eta");
        let err = Payload::parse(EventType::ShipmentDelayed, &data).unwrap_err();
        assert_eq!(err.field, "data.new_eta");
        assert_eq!(err.message, "missing");
    }

    #[test]
    fn a_nested_field_of_the_wrong_type_is_named_by_its_path() {
        let data = json!({"order_id":"o","customer_id":"c","promised_by":"2026-11-25T09:00:00Z",
            "total":{"minor":100,"currency":"KRW"},
            "items":[{"sku":"S","name":"n","quantity":1,"unit_price":{"minor":"lots","currency":"KRW"}}]});
        let err = Payload::parse(EventType::OrderPlaced, &data).unwrap_err();
        assert_eq!(err.field, "data.items[0].unit_price.minor");
    }

    #[test]
    fn text_the_catalogue_names_must_be_text_and_money_must_be_in_range() {
        let mut data = delayed();
        data["reason"] = json!(42);
        let err = Payload::parse(EventType::ShipmentDelayed, &data).unwrap_err();
        assert_eq!(err.field, "data.reason");
        data["reason"] = json!("weather");
        assert!(Payload::parse(EventType::ShipmentDelayed, &data).is_ok());

        let order = |minor: Value| {
            json!({"order_id":"o","customer_id":"c","promised_by":"2026-11-25T09:00:00Z",
                   "total":{"minor":minor,"currency":"KRW"},"items":[]})
        };
        for refused in [json!(-1), json!(i64::MAX), json!(MAX_MINOR_FOR_TESTS + 1)] {
            let err = Payload::parse(EventType::OrderPlaced, &order(refused.clone())).unwrap_err();
            assert_eq!(err.field, "data.total.minor", "{refused}");
            assert!(err.message.contains("out of range"), "{}", err.message);
        }
        assert!(Payload::parse(EventType::OrderPlaced, &order(json!(0))).is_ok());
        assert!(Payload::parse(EventType::OrderPlaced, &order(json!(MAX_MINOR_FOR_TESTS))).is_ok());
    }

    #[test]
    fn a_refused_value_is_quoted_in_the_error_only_in_part() {
        // serde quotes a string it refused: `invalid type: string "xxx…", expected i64`.
        let data = json!({"order_id":"o","customer_id":"c","promised_by":"2026-11-25T09:00:00Z",
            "total":{"minor":"x".repeat(4_000),"currency":"KRW"},"items":[]});
        let err = Payload::parse(EventType::OrderPlaced, &data).unwrap_err();
        assert_eq!(err.field, "data.total.minor");
        assert!(
            err.message.starts_with("invalid type: string \"xxx"),
            "{}",
            err.message
        );
        assert!(err.message.len() < 400, "{} bytes", err.message.len());
        assert!(err.message.ends_with("bytes in all)"), "the cut is said");
    }

    const MAX_MINOR_FOR_TESTS: i64 = crate::domain::contact::MAX_MINOR;

    #[test]
    fn an_invalid_inline_phone_is_refused_with_its_path() {
        let mut data = delayed();
        data["customer"] = json!({"id":"c-1","phone":"010-1234"});
        let err = Payload::parse(EventType::ShipmentDelayed, &data).unwrap_err();
        assert_eq!(err.field, "data.customer.phone");
    }

    #[test]
    fn fields_beyond_the_catalogue_are_accepted() {
        let mut data = delayed();
        data["warehouse"] = json!("ICN-2");
        assert!(Payload::parse(EventType::ShipmentDelayed, &data).is_ok());
    }

    #[test]
    fn an_event_that_needs_a_customer_must_name_one() {
        let mut data = delayed();
        data.as_object_mut().unwrap().remove("customer_id");
        let err = Payload::parse(EventType::ShipmentDelayed, &data).unwrap_err();
        assert_eq!(err.field, "data.customer_id");
    }

    #[test]
    fn risk_scores_must_be_probabilities() {
        let data = json!({"customer_id":"c-1","scores":{"churn":1.4},"model":"m"});
        let err = Payload::parse(EventType::RiskScored, &data).unwrap_err();
        assert_eq!(err.field, "data.scores.churn");
    }
}
