//! Pure domain types: what an event, a customer, a channel and an outreach *are*.
//!
//! Everything here is parsed once at the edge ("parse, don't validate"): a `PhoneE164` is a
//! phone number in E.164 form by construction, so nothing downstream re-checks it. No I/O.

mod accepted;
mod catalogue;
mod channel;
mod contact;
mod customer;
mod event;
mod history;
mod limits;
mod offer;
mod outreach;
mod rejection;
mod shown;
mod state;
mod stock;

pub use accepted::{order_changed_by, order_of, shipment_of, About, Accepted};
pub use catalogue::{
    region_ancestry, Affected, Alternative, AlternativeKind, CustomerRef, DataError, ExceptionKind,
    OptOutScope, OptOutTarget, OrderItem, Payload, Scores, Severity, Store,
};
pub use channel::{Category, Channel};
pub use contact::{
    CustomerId, EmailAddress, EntityId, Locale, Money, PhoneE164, PushToken, TimeZoneName,
};
pub use customer::{Consent, Customer, CustomerDoc, OptOuts, BOUNCED_EMAIL};
pub use event::{CloudEvent, EnvelopeError, EventKey, EventType};
pub use history::{
    day_number, shared_experience_span, DayCount, Dimension, Experience, ExperienceKind,
    ExternalScore, History, PastOrder, PastOutreach, EXPERIENCE_DAYS, LATE_SHARE_DAYS,
};
pub use limits::MAX_DATA_TEXT_BYTES;
pub use offer::{DiscountCode, Offer, Redemption};
pub use outreach::{
    AddressEffect, IdempotencyKey, MessageContent, Outreach, RiskRecord, RiskScores,
};
pub use rejection::{RejectReason, Rejection};
pub use shown::{time_shown, time_shown_in};
pub use state::{
    FanoutKind, Incident, IncidentStatus, Order, OrderStatus, Shipment, ShipmentStatus,
};
pub use stock::{StockWait, WaitsEnded};
